//! A provider's key source: exactly one of `remote_jwks`, `local_jwks`, `discovery`.

use super::read::{Field, Node};
use super::{ConfigError, KeySource, compile_fetch, err};
use crate::jose::alg::Algorithm;
use crate::jose::jwks::{KeySet, Origin};
use serde_json::Value;

/// The keys from exactly one of `remote_jwks`, `local_jwks` and `discovery`.
pub(super) fn compile_keys(
    node: &Node,
    issuer: &Field,
    [remote_jwks, local_jwks, discovery]: [&Field; 3],
    issuers: &[String],
    algorithms: &[Algorithm],
) -> Result<KeySource, ConfigError> {
    let hmac = algorithms.iter().any(|a| a.is_hmac());
    let given = (
        remote_jwks.get::<Node>()?,
        local_jwks.get::<Node>()?,
        discovery.get::<Node>()?,
    );
    match given {
        (Some(remote), None, None) => {
            if hmac {
                return remote.err("HMAC algorithms need their secret in local_jwks");
            }
            Ok(KeySource::Remote(compile_fetch(&remote, None)?))
        }
        (None, Some(local), None) => {
            let Value::Object(doc) = local.value else {
                return local.err("must be a JWKS object {\"keys\": [...]}");
            };
            let loaded = KeySet::from_object(doc, Origin::Config).or_else(|e| local.err(e))?;
            if let Some(why) = loaded.dropped.first() {
                return local.err(format!("unusable {why}"));
            }
            let set = loaded.set;
            if let Some(i) = set
                .keys()
                .iter()
                .position(|k| !algorithms.iter().any(|a| k.fits(*a)))
            {
                return err(
                    format!("{}.keys[{i}]", local.path),
                    "fits none of the provider's algorithms",
                );
            }
            Ok(KeySource::Local(set))
        }
        (None, None, Some(found)) => {
            if hmac {
                return found.err("HMAC algorithms need their secret in local_jwks");
            }
            Ok(KeySource::Discovery(compile_fetch(
                &found,
                Some((issuer, issuers)),
            )?))
        }
        _ => node.exactly_one(&[remote_jwks, local_jwks, discovery]),
    }
}
