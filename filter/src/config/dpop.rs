//! A provider's `dpop`: DPoP-bound tokens (RFC 9449).

use super::read::Node;
use super::{ConfigError, compile_algorithms, err, fields};
use crate::policy::dpop::DpopPolicy;

pub(super) fn compile_dpop(node: &Node) -> Result<DpopPolicy, ConfigError> {
    let [mode, algorithms, iat_offset_s, iat_leeway_s, origin] = &node.fields(&fields::DPOP)?;
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
    Ok(DpopPolicy {
        default_algorithms,
        ..DpopPolicy::new(
            mode.or_default()?,
            algorithms,
            iat_offset_s.within()?,
            iat_leeway_s.within()?,
            origin,
        )
    })
}
