//! A provider's `revocation`: the revocation list it fetches and the receiver of pushed
//! revocations (`keys::revocation` holds what they bring; `decision/worker/revocations.rs`
//! fetches and receives).

use super::fetch::compile_fetch_headers;
use super::provider::audience_list;
use super::read::{FromJson, Node};
use super::secret::Env;
use super::{ConfigError, Fetch, err, fields, split_uri};

/// What a provider's tokens are checked against besides their signature and claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub list: Option<RevocationList>,
    /// Whether tokens pass unchecked against the list while none is usable.
    pub allow_unavailable: bool,
    pub receiver: Option<Receiver>,
}

/// The revocation list's fetch and bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationList {
    /// How it is fetched: `cache_duration_s` is `refresh_s`, `max_body_bytes` is
    /// `max_bytes`; the key-set fields (`cooldown_s`, `stale_max_s`, `max_keys`) are unused.
    pub fetch: Fetch,
    pub max_age_s: u64,
    pub max_entries: usize,
}

/// Where pushed revocations are received, and how they are checked and kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receiver {
    pub path: String,
    pub audiences: Vec<String>,
    pub iat_window_s: u64,
    pub max_entries: usize,
    pub entry_lifetime_s: u64,
}

#[derive(Clone, Copy)]
struct Allow(bool);

impl FromJson<'_> for Allow {
    fn from_json(node: &Node) -> Result<Self, ConfigError> {
        node.variant(&[("deny", Allow(false)), ("allow", Allow(true))])
    }
}

/// `providers.<name>.revocation`; `audiences` are the provider's (the receiver's default).
pub(super) fn compile_revocation(
    node: &Node,
    audiences: &[String],
    env: &Env,
) -> Result<Revocation, ConfigError> {
    let [list, on_unavailable, receiver] = &node.fields(&fields::REVOCATION)?;
    let list = match list.get::<Node>()? {
        None => None,
        Some(node) => {
            let [
                cluster,
                uri,
                headers,
                timeout_ms,
                refresh_s,
                max_age_s,
                max_entries,
                max_bytes,
            ] = &node.fields(&fields::REVOCATION_LIST)?;
            let cluster: String = cluster.req()?;
            let text: String = uri.req()?;
            let Some((authority, path)) = split_uri(&text) else {
                return err(uri.path(), "must be an absolute http(s) URI");
            };
            if cluster.is_empty() {
                return err(node.child("cluster"), "must not be empty");
            }
            Some(RevocationList {
                fetch: Fetch {
                    jwks_cluster: cluster.clone(),
                    cluster,
                    authority: authority.to_string(),
                    path: path.to_string(),
                    fallback_path: None,
                    headers: compile_fetch_headers(headers, env)?,
                    timeout_ms: timeout_ms.within()?,
                    cache_duration_s: refresh_s.within()?,
                    cooldown_s: 0,
                    stale_max_s: 0,
                    max_body_bytes: max_bytes.within()?,
                    max_keys: 0,
                    jwt_svid: false,
                },
                max_age_s: max_age_s.within()?,
                max_entries: max_entries.within()?,
            })
        }
    };
    let receiver = match receiver.get::<Node>()? {
        None => None,
        Some(node) => {
            let [path, given, iat_window_s, max_entries, entry_lifetime_s] =
                &node.fields(&fields::REVOCATION_RECEIVER)?;
            let text: String = path.req()?;
            if !text.starts_with('/')
                || !text.bytes().all(|b| b.is_ascii_graphic())
                || text.contains('?')
            {
                return err(
                    path.path(),
                    "must be a path: '/' then printable ASCII, no query",
                );
            }
            let audiences = match given.get::<Vec<String>>()? {
                Some(list) => audience_list(list, &given.path())?,
                None => audiences.to_vec(),
            };
            Some(Receiver {
                path: text,
                audiences,
                iat_window_s: iat_window_s.within()?,
                max_entries: max_entries.within()?,
                entry_lifetime_s: entry_lifetime_s.within()?,
            })
        }
    };
    let Allow(allow_unavailable) = on_unavailable.or_default()?;
    Ok(Revocation {
        list,
        allow_unavailable,
        receiver,
    })
}
