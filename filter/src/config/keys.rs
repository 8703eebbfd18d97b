//! A provider's key sources: exactly one of `remote_jwks`, `local_jwks`, `discovery`, or a
//! list of them in `key_sources` whose keys are all trusted.

use super::read::{Field, Node};
use super::secret::{Env, Given, given};
use super::{ConfigError, Fetch, KeySource, compile_fetch, err, fields};
use crate::jose::alg::Algorithm;
use crate::jose::json;
use crate::jose::jwks::{Accept, KeySet, MAX_KEYS, Origin};
use serde_json::{Map, Value};

/// Most sources in one provider's `key_sources` (a token waiting for keys names them in a
/// bit set).
pub const MAX_KEY_SOURCES: usize = 8;

/// What every key source of a provider is read against.
pub(super) struct KeyRules<'c, 'e> {
    /// The provider's `issuer` field and its issuers (discovery starts from them).
    pub issuer: &'c Field<'c>,
    pub issuers: &'c [String],
    pub algorithms: &'c [Algorithm],
    /// Keys published for JWT-SVIDs are accepted (the provider's `jwt_svid`).
    pub jwt_svid: bool,
    pub env: &'c Env<'e>,
    /// The issuer is a template for `tenants`: discovery starts from each tenant's issuer.
    pub templated: bool,
}

/// The key sources of a provider: one of `remote_jwks`, `local_jwks`, `discovery`, or the
/// list `key_sources`.
pub(super) fn compile_keys(
    node: &Node,
    [remote_jwks, local_jwks, discovery, key_sources]: [&Field; 4],
    rules: &KeyRules,
) -> Result<Vec<KeySource>, ConfigError> {
    let single = [remote_jwks, local_jwks, discovery]
        .iter()
        .filter(|f| f.has())
        .count();
    match (single, key_sources.get::<Vec<Node>>()?) {
        (1, None) => Ok(vec![compile_source(
            node,
            [remote_jwks, local_jwks, discovery],
            rules,
        )?]),
        (0, Some(list)) => {
            if list.is_empty() {
                return err(key_sources.path(), "must not be empty");
            }
            if list.len() > MAX_KEY_SOURCES {
                return err(
                    key_sources.path(),
                    format!("at most {MAX_KEY_SOURCES} key sources"),
                );
            }
            let mut sources: Vec<KeySource> = Vec::new();
            for item in &list {
                let [remote, local, found] = &item.fields(&fields::KEY_SOURCE)?;
                let source = compile_source(item, [remote, local, found], rules)?;
                if let Some(fetch) = source.fetch()
                    && sources
                        .iter()
                        .any(|s| s.fetch().is_some_and(|f| same_document(f, fetch)))
                {
                    return item.err("fetches the same document as an earlier key source");
                }
                sources.push(source);
            }
            Ok(sources)
        }
        _ => node.exactly_one(&[remote_jwks, local_jwks, discovery, key_sources]),
    }
}

/// Whether two fetches read the same key set (or discovery document).
fn same_document(a: &Fetch, b: &Fetch) -> bool {
    (&a.cluster, &a.authority, &a.path) == (&b.cluster, &b.authority, &b.path)
}

/// One key source: exactly one of the three fields of `node`.
fn compile_source(
    node: &Node,
    [remote_jwks, local_jwks, discovery]: [&Field; 3],
    rules: &KeyRules,
) -> Result<KeySource, ConfigError> {
    let given = (
        remote_jwks.get::<Node>()?,
        local_jwks.get::<Node>()?,
        discovery.get::<Node>()?,
    );
    let (fetched, discovered) = match given {
        (None, Some(local), None) => return compile_local(&local, rules).map(KeySource::Local),
        (Some(remote), None, None) => (remote, false),
        (None, None, Some(found)) => (found, true),
        _ => return node.exactly_one(&[remote_jwks, local_jwks, discovery]),
    };
    if rules.algorithms.iter().any(|a| a.is_hmac()) {
        return fetched.err("HMAC algorithms need their secret in local_jwks");
    }
    let issuer = discovered.then_some((rules.issuer, rules.issuers, rules.templated));
    let mut fetch = compile_fetch(&fetched, issuer, rules.env)?;
    fetch.jwt_svid = rules.jwt_svid;
    Ok(match discovered {
        true => KeySource::Discovery(fetch),
        false => KeySource::Remote(fetch),
    })
}

/// `local_jwks`: a JWKS object, the same as JSON text, or `{"env": NAME}` holding the text.
/// Every key must be usable and fit one of the provider's algorithms.
fn compile_local(local: &Node, rules: &KeyRules) -> Result<KeySet, ConfigError> {
    // The document's text (none for an object), where errors point and what they begin with.
    let (text, at, from) = match given(local, rules.env)? {
        Given::Inline(node) => match node.value {
            Value::Object(map) => return local_set(map, &node.path, "", true, rules),
            Value::String(text) => (text.clone(), node.path, String::new()),
            _ => {
                return node.err(
                    "must be a JWKS object {\"keys\": [...]}, its JSON text, or {\"env\": NAME}",
                );
            }
        },
        Given::Env { text, at, from } => (text, at, from),
    };
    match json::parse_object(text.as_bytes()) {
        Ok(doc) => local_set(&doc, &at, &from, false, rules),
        Err(e) => err(at, format!("{from}not a JWKS: {e}")),
    }
}

/// The key set of a local JWKS document `doc`, which errors place at `at` and begin with
/// `from`; `inline`: its keys have their own paths (`<at>.keys[i]`).
fn local_set(
    doc: &Map<String, Value>,
    at: &str,
    from: &str,
    inline: bool,
    rules: &KeyRules,
) -> Result<KeySet, ConfigError> {
    let accept = Accept {
        max_keys: MAX_KEYS,
        jwt_svid: rules.jwt_svid,
    };
    let fail = |message: String| ConfigError::new(at.to_string(), format!("{from}{message}"));
    let loaded = KeySet::from_object_accepting(doc, Origin::Config, accept).map_err(fail)?;
    if let Some(why) = loaded.dropped.first() {
        return Err(fail(format!("unusable {why}")));
    }
    let set = loaded.set;
    let unfit = (set.keys().iter()).position(|k| !rules.algorithms.iter().any(|a| k.fits(*a)));
    match unfit {
        Some(i) if inline => err(
            format!("{at}.keys[{i}]"),
            "fits none of the provider's algorithms",
        ),
        Some(i) => Err(fail(format!(
            "key {i} fits none of the provider's algorithms"
        ))),
        None => Ok(set),
    }
}

impl KeySource {
    /// How a remote source is fetched (none for a local set).
    pub fn fetch(&self) -> Option<&Fetch> {
        match self {
            KeySource::Local(_) => None,
            KeySource::Remote(f) | KeySource::Discovery(f) => Some(f),
        }
    }
}
