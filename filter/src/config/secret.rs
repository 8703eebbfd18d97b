//! Secrets given by reference: `{"env": "NAME"}` in place of an inline secret (`local_jwks`,
//! a fetch header's value, a DPoP nonce secret) is the text of that environment variable of
//! the VM, read once at configure time. In a wasm VM `std::env::var` is WASI's `environ_get`, which Envoy answers
//! from the plugin's `vm_config.environment_variables` (`host_env_keys`, `key_values`).
//!
//! A secret's value never appears in an error: errors name the variable and the JSON path.
//! A file path form is not offered: Envoy gives a wasm VM no filesystem (no WASI preopen),
//! so `path_open` could never succeed there.

use super::read::Node;
use super::{ConfigError, err, fields};
use serde_json::Value;

/// Where `{"env": NAME}` is looked up: the variable's text, `None` when it is unset (or not
/// UTF-8).
pub type Env<'e> = dyn Fn(&str) -> Option<String> + 'e;

/// The VM's own environment (in wasm: the host's `environ_get`).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A value given inline, or the text of an environment variable.
pub(super) enum Given<'a> {
    Inline(Node<'a>),
    /// The variable's text (never shown), the path of its `env` field and what errors about
    /// the text begin with (`environment variable NAME: `).
    Env {
        text: String,
        at: String,
        from: String,
    },
}

/// `node` as given: `{"env": NAME}` (an object with an `env` member, and no other) is the
/// variable's text, which must be set and not empty; anything else is the node itself.
pub(super) fn given<'a>(node: &Node<'a>, env: &Env) -> Result<Given<'a>, ConfigError> {
    let Value::Object(map) = node.value else {
        return Ok(Given::Inline(node.clone()));
    };
    if !map.contains_key("env") {
        return Ok(Given::Inline(node.clone()));
    }
    let [field] = &node.fields(&fields::SECRET)?;
    let name: String = field.req()?;
    let valid = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return err(
            field.path(),
            "must be an environment variable name: letters, digits and '_', not starting with a digit",
        );
    }
    let (at, from) = (field.path(), format!("environment variable {name}"));
    match env(&name) {
        Some(text) if !text.is_empty() => Ok(Given::Env {
            text,
            at,
            from: from + ": ",
        }),
        Some(_) => err(at, from + " is empty"),
        None => err(
            at,
            from + " is not set in the VM (or not UTF-8); in Envoy, list it in \
                    vm_config.environment_variables",
        ),
    }
}
