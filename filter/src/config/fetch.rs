//! `remote_jwks` and `discovery`: where and how keys (or the discovery document) are fetched.

use super::read::{Field, Node};
use super::secret::{Env, Given, given};
use super::{ConfigError, Fetch, err, fields, is_tchar};
use serde_json::Value;

/// `remote_jwks`, or `discovery` (given the provider's `issuer` field and its issuers): they
/// share their fetch settings, and each refuses the other's own fields with a hint.
pub(super) fn compile_fetch(
    node: &Node,
    discovery: Option<(&Field, &[String], bool)>,
    env: &Env,
) -> Result<Fetch, ConfigError> {
    let [
        cluster,
        uri,
        timeout_ms,
        cache_duration_s,
        cooldown_s,
        stale_max_s,
        max_body_bytes,
        max_keys,
        headers,
        metadata_uri,
        jwks_cluster,
    ] = &node.fields(&fields::FETCH)?;
    let (authority, path, fallback_path) = match discovery {
        None => {
            for field in [metadata_uri, jwks_cluster] {
                if field.has() {
                    return err(
                        field.path(),
                        "belongs to discovery; remote_jwks fetches its uri",
                    );
                }
            }
            let Some(text) = uri.get::<String>()? else {
                return err(uri.path(), "missing");
            };
            let Some((authority, path)) = split_uri(&text) else {
                return err(uri.path(), "must be an absolute http(s) URI");
            };
            (authority.to_string(), path.to_string(), None)
        }
        Some((issuer, issuers, templated)) => {
            let [literal] = issuers else {
                return err(issuer.path(), "discovery needs exactly one issuer");
            };
            if literal.contains('{') && !templated {
                return err(
                    issuer.path(),
                    "discovery needs a literal issuer, without placeholders",
                );
            }
            if uri.has() {
                return err(
                    uri.path(),
                    "discovery starts from the issuer; use remote_jwks for a fixed URI",
                );
            }
            let Some((issuer_authority, issuer_path)) = split_uri(literal) else {
                return err(issuer.path(), "must be an http(s) URL for discovery");
            };
            match metadata_uri.get::<String>()? {
                // A full metadata URL: that document only.
                Some(text) => {
                    let Some((authority, path)) = split_uri(&text) else {
                        return err(metadata_uri.path(), "must be an absolute http(s) URI");
                    };
                    (authority.to_string(), path.to_string(), None)
                }
                // As Express: OpenID Connect's document, then RFC 8414's (its well-known
                // part inserted before the issuer's path).
                None => {
                    let issuer_path = issuer_path.trim_end_matches('/');
                    (
                        issuer_authority.to_string(),
                        format!("{issuer_path}/.well-known/openid-configuration"),
                        Some(format!(
                            "/.well-known/oauth-authorization-server{issuer_path}"
                        )),
                    )
                }
            }
        }
    };
    let cluster_name: String = cluster.req()?;
    if cluster_name.is_empty() {
        return err(cluster.path(), "must not be empty");
    }
    let extra_headers = compile_fetch_headers(headers, env)?;
    let mut fetch = Fetch {
        jwks_cluster: cluster_name.clone(),
        cluster: cluster_name,
        authority,
        path,
        fallback_path,
        headers: extra_headers,
        timeout_ms: timeout_ms.within()?,
        cache_duration_s: cache_duration_s.within()?,
        cooldown_s: cooldown_s.within()?,
        stale_max_s: stale_max_s.within()?,
        max_body_bytes: max_body_bytes.within()?,
        max_keys: max_keys.within()?,
        jwt_svid: false,
    };
    // Discovery only (refused above in remote_jwks): the cluster for the jwks_uri it finds.
    if let Some(name) = jwks_cluster.get::<String>()? {
        if name.is_empty() {
            return err(jwks_cluster.path(), "must not be empty");
        }
        fetch.jwks_cluster = name;
    }
    Ok(fetch)
}

/// A fetch's `headers` (a key set's, a revocation list's): names that are not the call's
/// own, values printable ASCII, inline or `{"env": NAME}`.
pub(super) fn compile_fetch_headers(
    headers: &Field,
    env: &Env,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut extra_headers = Vec::new();
    if let Some(listed) = headers.get::<Node>()? {
        for (name, value) in listed.map()? {
            let at = listed.child(name);
            let name = name.to_ascii_lowercase();
            if name.is_empty()
                || !name.bytes().all(is_tchar)
                || RESERVED_FETCH_HEADERS.contains(&name.as_str())
            {
                return err(
                    at,
                    "must be a header name other than the request's own (:method, :path, content-length, ...)",
                );
            }
            // A value may come from the environment (an API key): errors never show it.
            let node = Node { value, path: at };
            let (value, at, from) = match given(&node, env)? {
                Given::Inline(node) => match node.value {
                    Value::String(value) => (value.clone(), node.path, String::new()),
                    _ => return node.err("must be a string or {\"env\": NAME}"),
                },
                Given::Env { text, at, from } => (text, at, from),
            };
            if !value
                .bytes()
                .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
            {
                return err(at, from + "must be printable ASCII");
            }
            extra_headers.push((name, value));
        }
    }
    Ok(extra_headers)
}

/// Headers a fetch's `headers` may not set: the call's own, and framing.
pub(super) const RESERVED_FETCH_HEADERS: [&str; 7] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "keep-alive",
    "accept",
];

/// Splits `http(s)://authority/path?query` into authority and path (`/` when empty).
pub fn split_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => rest
            .split_at_checked(i)
            .filter(|(_, p)| p.starts_with('/'))?,
        None => (rest, "/"),
    };
    let valid = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
        && path.bytes().all(|b| b.is_ascii_graphic());
    valid.then_some((authority, path))
}
