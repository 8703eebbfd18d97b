//! A provider's `dpop`: DPoP-bound tokens (RFC 9449).

use super::read::{FromJson, Node};
use super::{ConfigError, compile_algorithms, err, fields};
use crate::policy::dpop::{DpopPolicy, EtcdStore};

pub(super) fn compile_dpop(node: &Node) -> Result<DpopPolicy, ConfigError> {
    let [
        mode,
        algorithms,
        iat_offset_s,
        iat_leeway_s,
        origin,
        replay_store,
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
    Ok(DpopPolicy {
        default_algorithms,
        store,
        ..DpopPolicy::new(
            mode.or_default()?,
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
    let visible = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
    };
    let cluster: String = cluster.req()?;
    if cluster.is_empty() {
        return err(node.child("cluster"), "must not be empty");
    }
    let authority = match authority.get::<String>()? {
        None => cluster.clone(),
        Some(a) if visible(&a, 255) => a,
        Some(_) => {
            return err(
                authority.path(),
                "must be 1 to 255 printable ASCII characters, no spaces",
            );
        }
    };
    let key_prefix: String = prefix.or_default()?;
    if !visible(&key_prefix, 128) {
        return err(
            prefix.path(),
            "must be 1 to 128 printable ASCII characters, no spaces",
        );
    }
    let LocalOnly(local_only) = on_unavailable.or_default()?;
    Ok(EtcdStore {
        cluster,
        authority,
        prefix: key_prefix,
        timeout_ms: timeout_ms.within()?,
        local_only,
    })
}

/// `on_unavailable`: whether the local cache alone decides when etcd does not answer.
#[derive(Clone, Copy)]
struct LocalOnly(bool);

impl FromJson<'_> for LocalOnly {
    fn from_json(node: &Node) -> Result<Self, ConfigError> {
        node.variant(&[("deny", LocalOnly(false)), ("local_only", LocalOnly(true))])
    }
}
