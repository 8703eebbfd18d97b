//! A provider's `token_sources`: where its tokens are read from.

use super::read::{Field, Node};
use super::{ConfigError, err, fields, is_tchar};
use crate::policy::extract::TokenSource;

pub(super) fn compile_source(node: &Node) -> Result<TokenSource, ConfigError> {
    let [header, prefix, query, cookie, body] = &node.fields(&fields::TOKEN_SOURCE)?;
    let named = |field: &Field| -> Result<Option<String>, ConfigError> {
        match field.get::<String>()? {
            Some(n) if n.is_empty() || !n.bytes().all(is_tchar) => {
                err(field.path(), "must be a non-empty token")
            }
            n => Ok(n),
        }
    };
    let given_prefix: Option<String> = prefix.get()?;
    if given_prefix
        .as_ref()
        .is_some_and(|p| p.len() > 64 || !p.bytes().all(|b| (b' '..=b'~').contains(&b)))
    {
        return err(
            prefix.path(),
            "must be at most 64 printable ASCII characters",
        );
    }
    let named = [named(header)?, named(query)?, named(cookie)?, named(body)?];
    match named {
        [Some(h), None, None, None] => {
            let name = h.to_ascii_lowercase();
            let prefix = match given_prefix {
                Some(p) => p,
                None if name == "authorization" => "Bearer ".into(),
                None => String::new(),
            };
            Ok(TokenSource::Header { name, prefix })
        }
        [None, Some(q), None, None] if given_prefix.is_none() => Ok(TokenSource::Query(q)),
        [None, None, Some(c), None] if given_prefix.is_none() => Ok(TokenSource::Cookie(c)),
        [None, None, None, Some(b)] if given_prefix.is_none() => Ok(TokenSource::Body(b)),
        _ => node.err(format!(
            "needs exactly one of {} (with optional {}), {}, {}, {}",
            header.name, prefix.name, query.name, cookie.name, body.name
        )),
    }
}
