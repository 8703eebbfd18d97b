//! A provider's `introspection`: opaque tokens checked at an RFC 7662 endpoint, and how the
//! filter authenticates to it.

use super::read::{Field, Node};
use super::secret::{Env, Given, given};
use super::{ConfigError, err, fields, split_uri};
use serde_json::Value;

/// Where and how a provider's tokens are introspected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Introspection {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    /// The `authorization` header of every call (`Basic ...` or `Bearer ...`), if any.
    /// Never logged.
    pub authorization: Option<String>,
    pub timeout_ms: u64,
    pub cache_ttl_s: u64,
    pub inactive_ttl_s: u64,
    pub max_body_bytes: usize,
}

pub(super) fn compile_introspection(node: &Node, env: &Env) -> Result<Introspection, ConfigError> {
    let [
        cluster,
        uri,
        client_id,
        client_secret,
        bearer,
        timeout_ms,
        cache_ttl_s,
        inactive_ttl_s,
        max_body_bytes,
    ] = &node.fields(&fields::INTROSPECTION)?;
    let cluster_name: String = cluster.req()?;
    if cluster_name.is_empty() {
        return err(cluster.path(), "must not be empty");
    }
    let text: String = uri.req()?;
    let Some((authority, path)) = split_uri(&text) else {
        return err(uri.path(), "must be an absolute http(s) URI");
    };
    let id: Option<String> = client_id.get()?;
    let secret = secret_text(client_secret, env)?;
    let authorization = match (id, secret, secret_text(bearer, env)?) {
        (None, None, None) => None,
        (None, None, Some(token)) => {
            if token.is_empty()
                || !token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
            {
                return err(bearer.path(), "must be a token68 (RFC 9110 section 11.2)");
            }
            Some(format!("Bearer {token}"))
        }
        (Some(id), Some(secret), None) if !id.is_empty() && !secret.is_empty() => {
            let pair = format!("{}:{}", form_encode(&id), form_encode(&secret));
            let encoded = crate::jose::base64url::encode_padded(pair.as_bytes());
            Some(format!("Basic {encoded}"))
        }
        (Some(_), Some(_), None) => {
            return node.err("client_id and client_secret must not be empty");
        }
        (_, _, Some(_)) => return err(bearer.path(), "excludes client_id and client_secret"),
        (Some(_), None, None) => return err(client_secret.path(), "missing (client_id needs it)"),
        (None, Some(_), None) => return err(client_id.path(), "missing (client_secret needs it)"),
    };
    Ok(Introspection {
        cluster: cluster_name,
        authority: authority.to_string(),
        path: path.to_string(),
        authorization,
        timeout_ms: timeout_ms.within()?,
        cache_ttl_s: cache_ttl_s.within()?,
        inactive_ttl_s: inactive_ttl_s.within()?,
        max_body_bytes: max_body_bytes.within()?,
    })
}

/// A secret field: a string, or `{"env": NAME}`'s text.
fn secret_text(field: &Field, env: &Env) -> Result<Option<String>, ConfigError> {
    let Some(node) = field.get::<Node>()? else {
        return Ok(None);
    };
    match given(&node, env)? {
        Given::Inline(node) => match node.value {
            Value::String(text) => Ok(Some(text.clone())),
            _ => node.err("must be a string or {\"env\": NAME}"),
        },
        Given::Env { text, .. } => Ok(Some(text)),
    }
}

/// `application/x-www-form-urlencoded` (the WHATWG URL standard's serializer): letters,
/// digits and `*-._` as they are, space as `+`, every other byte `%XX`.
pub fn form_encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                for nibble in [b >> 4, b & 15] {
                    out.push(HEX.get(usize::from(nibble)).map_or('0', |h| char::from(*h)));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_keeps_only_the_unreserved_set() {
        assert_eq!(form_encode("a Z-9._*"), "a+Z-9._*");
        assert_eq!(form_encode("p@ss:w/rd+%~"), "p%40ss%3Aw%2Frd%2B%25%7E");
        assert_eq!(form_encode("é"), "%C3%A9");
    }
}
