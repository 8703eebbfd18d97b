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
    let hmac = rules.algorithms.iter().any(|a| a.is_hmac());
    let given = (
        remote_jwks.get::<Node>()?,
        local_jwks.get::<Node>()?,
        discovery.get::<Node>()?,
    );
    let mut fetch = match given {
        (Some(remote), None, None) => {
            if hmac {
                return remote.err("HMAC algorithms need their secret in local_jwks");
            }
            KeySource::Remote(compile_fetch(&remote, None, rules.env)?)
        }
        (None, Some(local), None) => return compile_local(&local, rules).map(KeySource::Local),
        (None, None, Some(found)) => {
            if hmac {
                return found.err("HMAC algorithms need their secret in local_jwks");
            }
            KeySource::Discovery(compile_fetch(
                &found,
                Some((rules.issuer, rules.issuers)),
                rules.env,
            )?)
        }
        _ => return node.exactly_one(&[remote_jwks, local_jwks, discovery]),
    };
    if let KeySource::Remote(f) | KeySource::Discovery(f) = &mut fetch {
        f.jwt_svid = rules.jwt_svid;
    }
    Ok(fetch)
}

/// `local_jwks`: a JWKS object, the same as JSON text, or `{"env": NAME}` holding the text.
/// Every key must be usable and fit one of the provider's algorithms.
fn compile_local(local: &Node, rules: &KeyRules) -> Result<KeySet, ConfigError> {
    // The document, where errors point, what they begin with, and whether its keys have
    // their own paths (an inline object's do).
    let (doc, at, from, inline): (Map<String, Value>, String, String, bool) =
        match given(local, rules.env)? {
            Given::Inline(node) => match node.value {
                Value::Object(map) => (map.clone(), node.path.clone(), String::new(), true),
                Value::String(text) => (
                    json::parse_object(text.as_bytes())
                        .or_else(|e| node.err(format!("not a JWKS: {e}")))?,
                    node.path.clone(),
                    String::new(),
                    false,
                ),
                _ => {
                    return node.err(
                    "must be a JWKS object {\"keys\": [...]}, its JSON text, or {\"env\": NAME}",
                );
                }
            },
            Given::Env { name, text } => {
                let at = format!("{}.env", local.path);
                let from = format!("environment variable {name}: ");
                let doc = json::parse_object(text.as_bytes())
                    .or_else(|e| err(&at, format!("{from}not a JWKS: {e}")))?;
                (doc, at, from, false)
            }
        };
    let accept = Accept {
        max_keys: MAX_KEYS,
        jwt_svid: rules.jwt_svid,
    };
    let loaded = KeySet::from_object_accepting(&doc, Origin::Config, accept)
        .or_else(|e| err(&at, format!("{from}{e}")))?;
    if let Some(why) = loaded.dropped.first() {
        return err(&at, format!("{from}unusable {why}"));
    }
    let set = loaded.set;
    if let Some(i) = set
        .keys()
        .iter()
        .position(|k| !rules.algorithms.iter().any(|a| k.fits(*a)))
    {
        return match inline {
            true => err(
                format!("{at}.keys[{i}]"),
                "fits none of the provider's algorithms",
            ),
            false => err(
                at,
                format!("{from}key {i} fits none of the provider's algorithms"),
            ),
        };
    }
    Ok(set)
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
