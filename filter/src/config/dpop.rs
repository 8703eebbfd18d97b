//! A provider's `dpop`: DPoP-bound tokens (RFC 9449).

use super::read::Node;
use super::secret::{Env, Given, given};
use super::{ConfigError, compile_algorithms, err, fields};
use crate::policy::dpop::nonce::{MAX_SECRETS, MIN_SECRET_BYTES, Nonces};
use crate::policy::dpop::{DpopMode, DpopPolicy, EtcdStore};

/// `dpop.nonce`: its secrets (inline or from the environment), never shown in an error.
fn compile_nonce(node: &Node, env: &Env) -> Result<Nonces, ConfigError> {
    let [secrets, lifetime_s] = &node.fields(&fields::NONCE)?;
    let list: Vec<Node> = secrets.req()?;
    if list.is_empty() || list.len() > MAX_SECRETS {
        return err(secrets.path(), "must list 1 to 4 secrets");
    }
    let mut keys = Vec::with_capacity(list.len());
    for item in &list {
        let (text, at, from) = match given(item, env)? {
            Given::Env { text, at, from } => (text, at, from),
            Given::Inline(Node {
                value: serde_json::Value::String(text),
                path,
            }) => (text.clone(), path, String::new()),
            Given::Inline(node) => return node.err("must be a string or {\"env\": NAME}"),
        };
        if text.len() < MIN_SECRET_BYTES {
            return err(
                at,
                from + "must be at least 32 bytes (HMAC-SHA256's key length)",
            );
        }
        keys.push(text.into_bytes());
    }
    Ok(Nonces::new(keys, lifetime_s.within()?))
}

pub(super) fn compile_dpop(node: &Node, env: &Env) -> Result<DpopPolicy, ConfigError> {
    let [
        mode,
        algorithms,
        iat_offset_s,
        iat_leeway_s,
        origin,
        replay_store,
        nonce,
    ] = &node.fields(&fields::DPOP)?;
    let default_algorithms = !algorithms.has();
    // The default, every public-key algorithm, is `DpopPolicy`'s own (the table shows it).
    let algorithms = match algorithms.get::<Vec<String>>()? {
        None => DpopPolicy::algorithms(),
        Some(names) => {
            let list = compile_algorithms(&names, &algorithms.path())?;
            if list.iter().any(|a| a.is_hmac()) {
                return err(
                    algorithms.path(),
                    "DPoP proofs use public-key algorithms only",
                );
            }
            list
        }
    };
    let origin = match origin.get::<String>()? {
        None => None,
        Some(given) => {
            // The origin alone, `scheme://host[:port]`: normalised, without the root path.
            let bare = given
                .split_once(':')
                .and_then(|(_, rest)| rest.strip_prefix("//"))
                .is_some_and(|rest| !rest.contains(['/', '?', '#']));
            match crate::policy::dpop::normalize_uri(&given).filter(|_| bare) {
                Some(n) => Some(n.trim_end_matches('/').to_string()),
                None => {
                    return err(
                        origin.path(),
                        "must be an http(s) origin: scheme://host[:port], no path",
                    );
                }
            }
        }
    };
    let store = match replay_store.get::<Node>()? {
        None => None,
        Some(node) => {
            let [etcd] = &node.fields(&fields::REPLAY_STORE)?;
            Some(compile_etcd(&etcd.req()?)?)
        }
    };
    let mode = mode.or_default()?;
    let nonce = match nonce.get::<Node>()? {
        None => None,
        Some(_) if mode == DpopMode::Disabled => {
            return err(nonce.path(), "nonces need DPoP: mode is disabled");
        }
        Some(node) => Some(compile_nonce(&node, env)?),
    };
    Ok(DpopPolicy {
        default_algorithms,
        store,
        nonce,
        ..DpopPolicy::new(
            mode,
            algorithms,
            iat_offset_s.within()?,
            iat_leeway_s.within()?,
            origin,
        )
    })
}

/// `dpop.replay_store.etcd`.
fn compile_etcd(node: &Node) -> Result<EtcdStore, ConfigError> {
    let [cluster, authority, prefix, timeout_ms, on_unavailable] = &node.fields(&fields::ETCD)?;
    let cluster: String = cluster.req()?;
    let authority = authority
        .get::<String>()?
        .unwrap_or_else(|| cluster.clone());
    let prefix: String = prefix.or_default()?;
    for (value, name) in [
        (&cluster, "cluster"),
        (&authority, "authority"),
        (&prefix, "prefix"),
    ] {
        if value.is_empty() || value.len() > 255 || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return err(
                node.child(name),
                "must be 1 to 255 printable ASCII characters, no spaces",
            );
        }
    }
    let local_only = match on_unavailable.or_default::<String>()?.as_str() {
        "deny" => false,
        "local_only" => true,
        other => {
            return err(
                on_unavailable.path(),
                format!("unknown variant `{other}`, expected `deny` or `local_only`"),
            );
        }
    };
    Ok(EtcdStore {
        cluster,
        authority,
        prefix,
        timeout_ms: timeout_ms.within()?,
        local_only,
    })
}
