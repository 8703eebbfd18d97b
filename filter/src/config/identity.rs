//! Identity headers: the headers the filter writes on success, checked across providers.

use super::{ConfigError, Provider, err, is_tchar};
use crate::http::spelling::same_upstream_name;
use crate::policy::extract::TokenSource;

/// A header the filter writes: a lower-case token that no client or proxy relies on.
pub(super) fn identity_header(name: &str, path: &str) -> Result<String, ConfigError> {
    let lower = name.to_ascii_lowercase();
    const RESERVED: [&str; 10] = [
        "authorization",
        "cookie",
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "te",
        "upgrade",
        "proxy-authorization",
    ];
    if lower.is_empty() || !lower.bytes().all(is_tchar) {
        return err(path, "must be a valid header name");
    }
    if RESERVED.iter().any(|r| same_upstream_name(r, &lower)) {
        return err(path, format!("'{lower}' cannot carry identity"));
    }
    Ok(lower)
}

/// All identity headers, which must not collide with a header carrying a token, nor with
/// another provider's spelling of the same name (as upstreams fold names:
/// `same_upstream_name`). `provider_header`, written for every provider, must also be a
/// header no provider writes a claim into.
pub(super) fn identity_headers(
    providers: &[Provider],
    provider_header: Option<&str>,
) -> Result<Vec<String>, ConfigError> {
    let mut headers: Vec<String> = Vec::new();
    let carries_token = |h: &str| {
        providers
            .iter()
            .flat_map(|q| &q.token_sources)
            .any(|s| matches!(s, TokenSource::Header { name, .. } if same_upstream_name(name, h)))
    };
    for p in providers {
        let written = p
            .forward_payload_header
            .iter()
            .chain(p.claim_to_headers.iter().map(|(_, h)| h));
        for h in written {
            if carries_token(h) {
                return err(
                    format!("providers.{}", p.name),
                    format!("header '{h}' both carries tokens and identity"),
                );
            }
            match headers.iter().find(|known| same_upstream_name(known, h)) {
                None => headers.push(h.clone()),
                Some(known) if known == h => {}
                Some(known) => {
                    return err(
                        format!("providers.{}", p.name),
                        format!(
                            "header '{h}' is spelled '{known}' by another provider (upstreams read both as one name)"
                        ),
                    );
                }
            }
        }
    }
    if let Some(h) = provider_header {
        if carries_token(h) {
            return err(
                "provider_header",
                format!("header '{h}' both carries tokens and identity"),
            );
        }
        if let Some(known) = headers.iter().find(|known| same_upstream_name(known, h)) {
            return err(
                "provider_header",
                format!("header '{h}' is also written by a provider (as '{known}')"),
            );
        }
        headers.push(h.to_string());
    }
    Ok(headers)
}
