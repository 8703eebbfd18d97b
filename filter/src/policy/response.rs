//! The filter's local replies: denials (RFC 6750 challenges with the Express body shape
//! `{"error": code, "message": description}`) and the documents it serves. Descriptions say what failed and never carry
//! token or key material (they are built from fixed strings and claim names only).
//!
//! A gRPC call gets an explicit gRPC status instead, and the description alone as the body,
//! which Envoy sends as `grpc-message` (in a trailers-only answer with HTTP status 200).

use crate::http::request::Request;
use std::borrow::Cow;

/// Why a request was refused; also the metric and log label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Missing,
    Invalid,
    Expired,
    InsufficientScope,
    InvalidRequest,
    Unavailable,
    AccessDenied,
    InvalidDpopProof,
    InsufficientUserAuthentication,
    UseDpopNonce,
    Revoked,
}

impl Reason {
    pub const ALL: [Reason; 11] = [
        Reason::Missing,
        Reason::Invalid,
        Reason::Expired,
        Reason::InsufficientScope,
        Reason::InvalidRequest,
        Reason::Unavailable,
        Reason::AccessDenied,
        Reason::InvalidDpopProof,
        Reason::InsufficientUserAuthentication,
        Reason::UseDpopNonce,
        Reason::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Invalid => "invalid",
            Reason::Expired => "expired",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::InvalidRequest => "invalid_request",
            Reason::Unavailable => "unavailable",
            Reason::AccessDenied => "access_denied",
            Reason::InvalidDpopProof => "invalid_dpop_proof",
            Reason::InsufficientUserAuthentication => "insufficient_user_authentication",
            Reason::UseDpopNonce => "use_dpop_nonce",
            Reason::Revoked => "token_revoked",
        }
    }

    /// The response-code details of a refusal for this reason (Envoy's
    /// `%RESPONSE_CODE_DETAILS%`): `jwt_filter_denied{<label>}`, as `jwt_authn` writes
    /// `jwt_authn_access_denied{<message>}`, with the metric label (no whitespace, which
    /// Envoy would turn into `_`) so that the access log and the counters name a refusal
    /// alike.
    pub fn details(self) -> &'static str {
        match self {
            Reason::Missing => "jwt_filter_denied{missing}",
            Reason::Invalid => "jwt_filter_denied{invalid}",
            Reason::Expired => "jwt_filter_denied{expired}",
            Reason::InsufficientScope => "jwt_filter_denied{insufficient_scope}",
            Reason::InvalidRequest => "jwt_filter_denied{invalid_request}",
            Reason::Unavailable => "jwt_filter_denied{unavailable}",
            Reason::AccessDenied => "jwt_filter_denied{access_denied}",
            Reason::InvalidDpopProof => "jwt_filter_denied{invalid_dpop_proof}",
            Reason::InsufficientUserAuthentication => {
                "jwt_filter_denied{insufficient_user_authentication}"
            }
            Reason::UseDpopNonce => "jwt_filter_denied{use_dpop_nonce}",
            Reason::Revoked => "jwt_filter_denied{token_revoked}",
        }
    }
}

/// The response-code details of the protected-resource metadata document the filter serves.
pub const METADATA_DETAILS: &str = "jwt_filter_served{resource_metadata}";

/// The response-code details of a revocation receiver's answers: a push recorded, or not.
pub const PUSH_RECEIVED_DETAILS: &str = "jwt_filter_revocation{received}";
pub const PUSH_REFUSED_DETAILS: &str = "jwt_filter_revocation{refused}";

/// Why a check failed: what every policy check returns, and what a refusal carries up to
/// the reply (`deny`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Missing,
    InvalidRequest(String),
    InvalidToken {
        description: String,
        expired: bool,
    },
    /// `scopes` is `Some` for missing scopes (it becomes the `scope` attribute) and `None`
    /// for a failed claim check.
    InsufficientScope {
        description: String,
        scopes: Option<Vec<String>>,
    },
    Unavailable {
        retry_after_s: u64,
    },
    AccessDenied,
    /// A valid token whose user did not authenticate as the requirement asks (RFC 9470):
    /// 401 with the `acr_values` and `max_age` the client must meet.
    InsufficientUserAuthentication {
        description: &'static str,
        acr_values: Vec<String>,
        max_age_s: Option<u64>,
    },
    /// A DPoP proof that fails a check of RFC 9449 (or was seen before).
    InvalidDpopProof(&'static str),
    /// A DPoP proof without the server nonce it needs, or with one no longer (or never)
    /// accepted (RFC 9449 section 9): 401 `use_dpop_nonce` with `nonce`, a fresh one, in
    /// `DPoP-Nonce`.
    UseDpopNonce {
        description: &'static str,
        nonce: String,
    },
    /// The DPoP replay cache cannot take the proof now (full of live proofs, or shared
    /// data refused the write), or the fleet's replay store did not answer: `message` says
    /// which.
    ReplayCacheFull {
        retry_after_s: u64,
        message: &'static str,
    },
    /// A valid token that its provider's revocation list or a pushed revocation revokes
    /// (401 `invalid_token`; the description never says which entry matched).
    Revoked,
    /// The provider's revocation list is not usable (none yet, or too old) and its
    /// `on_unavailable` is `deny`.
    RevocationUnavailable {
        retry_after_s: u64,
    },
    /// A form body that may carry the token is larger than the filter reads (413).
    BodyTooLarge,
    /// A form body that may carry the token did not arrive in time (408).
    BodyTimeout,
    /// A form body that may carry the token is compressed (`content-encoding`), which the
    /// filter does not inflate (415, with `Accept-Encoding: identity` as RFC 7694 asks).
    EncodedBody,
}

/// A token refused for another reason than its age (401 `invalid_token`).
pub(crate) fn invalid_token(description: &str) -> Failure {
    Failure::InvalidToken {
        description: description.to_string(),
        expired: false,
    }
}

/// The message of a 503 for a DPoP proof the replay cache cannot take.
pub const REPLAY_CACHE_FULL: &str = "DPoP replay cache is full";
/// The message of a 503 for a DPoP proof the fleet's replay store did not answer for.
pub const REPLAY_STORE_UNAVAILABLE: &str = "DPoP replay store is unavailable";

/// gRPC status codes the filter answers with.
pub const GRPC_INVALID_ARGUMENT: u32 = 3;
pub const GRPC_PERMISSION_DENIED: u32 = 7;
pub const GRPC_UNAVAILABLE: u32 = 14;
pub const GRPC_UNAUTHENTICATED: u32 = 16;

impl Failure {
    pub fn reason(&self) -> Reason {
        match self {
            Failure::Missing => Reason::Missing,
            Failure::InvalidRequest(_)
            | Failure::BodyTooLarge
            | Failure::BodyTimeout
            | Failure::EncodedBody => Reason::InvalidRequest,
            Failure::InvalidToken { expired: true, .. } => Reason::Expired,
            Failure::InvalidToken { .. } => Reason::Invalid,
            Failure::InsufficientScope { .. } => Reason::InsufficientScope,
            Failure::Unavailable { .. }
            | Failure::ReplayCacheFull { .. }
            | Failure::RevocationUnavailable { .. } => Reason::Unavailable,
            Failure::Revoked => Reason::Revoked,
            Failure::AccessDenied => Reason::AccessDenied,
            Failure::InvalidDpopProof(_) => Reason::InvalidDpopProof,
            Failure::UseDpopNonce { .. } => Reason::UseDpopNonce,
            Failure::InsufficientUserAuthentication { .. } => {
                Reason::InsufficientUserAuthentication
            }
        }
    }

    /// The HTTP status of the reply (a gRPC call gets it as well, next to its gRPC status).
    pub fn status(&self) -> u16 {
        match self {
            Failure::Missing
            | Failure::InvalidToken { .. }
            | Failure::Revoked
            | Failure::InvalidDpopProof(_)
            | Failure::UseDpopNonce { .. }
            | Failure::InsufficientUserAuthentication { .. } => 401,
            Failure::InvalidRequest(_) => 400,
            Failure::InsufficientScope { .. } | Failure::AccessDenied => 403,
            Failure::Unavailable { .. }
            | Failure::ReplayCacheFull { .. }
            | Failure::RevocationUnavailable { .. } => 503,
            Failure::BodyTooLarge => 413,
            Failure::BodyTimeout => 408,
            Failure::EncodedBody => 415,
        }
    }

    fn grpc_status(&self) -> u32 {
        match self {
            Failure::Missing
            | Failure::InvalidToken { .. }
            | Failure::Revoked
            | Failure::InvalidDpopProof(_)
            | Failure::UseDpopNonce { .. }
            | Failure::InsufficientUserAuthentication { .. } => GRPC_UNAUTHENTICATED,
            Failure::InvalidRequest(_)
            | Failure::BodyTooLarge
            | Failure::BodyTimeout
            | Failure::EncodedBody => GRPC_INVALID_ARGUMENT,
            Failure::InsufficientScope { .. } | Failure::AccessDenied => GRPC_PERMISSION_DENIED,
            Failure::Unavailable { .. }
            | Failure::ReplayCacheFull { .. }
            | Failure::RevocationUnavailable { .. } => GRPC_UNAVAILABLE,
        }
    }

    /// How far the request got: when alternatives all fail, the answer reports the one
    /// that got furthest (a valid token lacking a scope says more than a missing token).
    pub fn rank(&self) -> u8 {
        match self {
            Failure::Missing => 0,
            Failure::AccessDenied => 1,
            Failure::Unavailable { .. }
            | Failure::ReplayCacheFull { .. }
            | Failure::RevocationUnavailable { .. } => 2,
            Failure::InvalidToken { .. }
            | Failure::Revoked
            | Failure::InvalidDpopProof(_)
            | Failure::UseDpopNonce { .. } => 3,
            Failure::InsufficientScope { .. } | Failure::InsufficientUserAuthentication { .. } => 4,
            Failure::InvalidRequest(_)
            | Failure::BodyTooLarge
            | Failure::BodyTimeout
            | Failure::EncodedBody => 5,
        }
    }
}

/// A local reply: what the filter answers instead of forwarding the request (a denial, or
/// a document it serves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// Header names are lower-case: the filter's own are static, configured ones
    /// (`denials.headers`) owned.
    pub headers: Vec<(Cow<'static, str>, String)>,
    pub body: String,
    /// For a gRPC call: the gRPC status (the body is then the description alone).
    pub grpc_status: Option<u32>,
    /// The response-code details the host records (Envoy's `%RESPONSE_CODE_DETAILS%`):
    /// `Reason::details`, or `METADATA_DETAILS`. Never whitespace.
    pub details: &'static str,
    /// Stream properties to set before the reply is sent (`failure_property`): Envoy's
    /// filter state, which its access log reads after the reply.
    pub properties: Vec<(String, String)>,
}

impl Reply {
    /// A JSON document that clients may cache for an hour, recorded with `details`.
    pub fn json(body: &str, details: &'static str) -> Reply {
        Reply {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("cache-control".into(), "max-age=3600".into()),
            ],
            body: body.to_string(),
            grpc_status: None,
            details,
            properties: Vec::new(),
        }
    }

    /// Adds the `scope` attribute naming `scopes` (RFC 6750 section 3) to a 401 challenge
    /// that has none; nothing when `scopes` is empty.
    pub fn add_scope(&mut self, scopes: &[String]) {
        if self.status != 401 || scopes.is_empty() {
            return;
        }
        for (name, value) in &mut self.headers {
            if *name == "www-authenticate" && !value.contains(" scope=\"") {
                value.push_str(&format!(", scope=\"{}\"", quoted(&scopes.join(" "))));
            }
        }
    }

    /// The value of header `name`, if the reply has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Adds RFC 9728's `resource_metadata` parameter (the URL of the protected-resource
    /// metadata) to a 401 challenge.
    pub fn add_resource_metadata(&mut self, url: &str) {
        if self.status != 401 {
            return;
        }
        for (name, value) in &mut self.headers {
            if name == "www-authenticate" {
                value.push_str(&format!(", resource_metadata=\"{url}\""));
            }
        }
    }

    /// Adds the DPoP challenge (RFC 9449 section 7.1) naming the proof algorithms `algs`.
    /// `Bearer` stays first unless `dpop_only`; the error (if any) moves into the DPoP
    /// challenge when `error_in_dpop` (the request used the DPoP scheme, or its proof
    /// failed), and stays with `Bearer` otherwise.
    pub fn add_dpop_challenge(&mut self, algs: &str, error_in_dpop: bool, dpop_only: bool) {
        for (name, value) in &mut self.headers {
            if name != "www-authenticate" {
                continue;
            }
            // The common answer: the Bearer challenge as it is, then DPoP's.
            if !dpop_only && !error_in_dpop {
                value.reserve(algs.len() + 13);
                for part in [", DPoP algs=\"", algs, "\""] {
                    value.push_str(part);
                }
                continue;
            }
            // `Bearer realm="..."` and then the error's parameters, if any.
            let Some(realm_end) = value
                .split_once('"')
                .and_then(|(before, rest)| rest.find('"').map(|e| before.len() + 1 + e + 1))
            else {
                continue;
            };
            let (bearer, error) = value.split_at(realm_end);
            let realm = bearer.strip_prefix("Bearer ").unwrap_or(bearer);
            *value = if dpop_only {
                format!("DPoP {realm}, algs=\"{algs}\"{error}")
            } else {
                format!("{bearer}, DPoP algs=\"{algs}\"{error}")
            };
        }
    }
}

/// Whether Envoy answers `req` as a gRPC call: its `content-type` is `application/grpc`,
/// alone or followed by `+` or `;` (gRPC-Web's `application/grpc-web` is plain HTTP).
pub fn is_grpc(req: &Request) -> bool {
    const GRPC: &str = "application/grpc";
    req.header_values("content-type").next().is_some_and(|ct| {
        ct.get(..GRPC.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(GRPC))
            && matches!(ct.as_bytes().get(GRPC.len()), None | Some(b'+' | b';'))
    })
}

impl Failure {
    /// The answer's error code and description: the body's `error` and `message`, the
    /// challenge's `error` and `error_description` (the description made safe for a
    /// quoted-string and bounded: `quoted`).
    pub fn error_and_message(&self) -> (&'static str, Cow<'_, str>) {
        let (code, message): (&'static str, &str) = match self {
            Failure::Missing => ("unauthorized", "Authentication required"),
            Failure::InvalidRequest(d) => ("invalid_request", d),
            Failure::InvalidToken { description: d, .. } => ("invalid_token", d),
            Failure::InsufficientScope { description: d, .. } => ("insufficient_scope", d),
            Failure::Unavailable { .. } => {
                ("temporarily_unavailable", "Signing keys are not available")
            }
            Failure::AccessDenied => ("access_denied", "Access denied"),
            Failure::ReplayCacheFull { message, .. } => ("temporarily_unavailable", message),
            Failure::Revoked => ("invalid_token", "Token has been revoked"),
            Failure::RevocationUnavailable { .. } => (
                "temporarily_unavailable",
                "Revocation list is not available",
            ),
            // Not RFC 6750 errors, so no challenge: the request never got as far as its token.
            Failure::BodyTooLarge => (
                "invalid_request",
                "Request body is too large to search for an access token",
            ),
            Failure::BodyTimeout => ("invalid_request", "Request body did not arrive in time"),
            Failure::EncodedBody => (
                "invalid_request",
                "Compressed form bodies are not read for an access token",
            ),
            Failure::InvalidDpopProof(d) => ("invalid_dpop_proof", d),
            Failure::UseDpopNonce { description: d, .. } => ("use_dpop_nonce", d),
            Failure::InsufficientUserAuthentication { description: d, .. } => {
                ("insufficient_user_authentication", d)
            }
        };
        (code, quoted(message))
    }
}

/// The answer to `req` for `failure`.
pub fn deny(realm: &str, failure: &Failure, req: &Request) -> Reply {
    let (code, message) = failure.error_and_message();
    let challenge =
        || format!("Bearer realm=\"{realm}\", error=\"{code}\", error_description=\"{message}\"");
    let www_authenticate = match failure {
        Failure::Missing => Some(format!("Bearer realm=\"{realm}\"")),
        Failure::InvalidRequest(_)
        | Failure::InvalidToken { .. }
        | Failure::Revoked
        | Failure::InvalidDpopProof(_)
        | Failure::UseDpopNonce { .. } => Some(challenge()),
        Failure::InsufficientScope { scopes, .. } => {
            let mut value = challenge();
            if let Some(scopes) = scopes {
                value.push_str(&format!(", scope=\"{}\"", quoted(&scopes.join(" "))));
            }
            Some(value)
        }
        Failure::InsufficientUserAuthentication {
            acr_values,
            max_age_s,
            ..
        } => {
            let mut value = challenge();
            if !acr_values.is_empty() {
                value.push_str(&format!(
                    ", acr_values=\"{}\"",
                    quoted(&acr_values.join(" "))
                ));
            }
            if let Some(max_age) = max_age_s {
                value.push_str(&format!(", max_age=\"{max_age}\""));
            }
            Some(value)
        }
        Failure::Unavailable { .. }
        | Failure::AccessDenied
        | Failure::ReplayCacheFull { .. }
        | Failure::RevocationUnavailable { .. }
        | Failure::BodyTooLarge
        | Failure::BodyTimeout
        | Failure::EncodedBody => None,
    };
    let grpc = is_grpc(req);
    let mut headers: Vec<(Cow<'static, str>, String)> = Vec::with_capacity(4);
    // Envoy sets gRPC's own content-type; a second one would confuse clients.
    if !grpc {
        headers.push(("content-type".into(), "application/json".to_string()));
    }
    headers.push(("cache-control".into(), "no-store".to_string()));
    if let Some(value) = www_authenticate {
        headers.push(("www-authenticate".into(), value));
    }
    if let Failure::Unavailable { retry_after_s }
    | Failure::ReplayCacheFull { retry_after_s, .. }
    | Failure::RevocationUnavailable { retry_after_s } = failure
    {
        headers.push(("retry-after".into(), retry_after_s.to_string()));
    }
    match failure {
        Failure::EncodedBody => headers.push(("accept-encoding".into(), "identity".to_string())),
        Failure::UseDpopNonce { nonce, .. } => headers.push(("dpop-nonce".into(), nonce.clone())),
        _ => {}
    }
    let body = match grpc {
        true => message.into_owned(),
        false => json_body(code, &message),
    };
    Reply {
        status: failure.status(),
        headers,
        body,
        grpc_status: grpc.then(|| failure.grpc_status()),
        details: failure.reason().details(),
        properties: Vec::new(),
    }
}

/// The JSON body of a denial, as Express's error handler writes it. Written by hand: the
/// code is a fixed identifier and a `quoted` message has nothing JSON would escape (no `"`,
/// `\` or control character), and serde's serializer costs more than the rest of a
/// missing-token answer.
fn json_body(code: &str, message: &str) -> String {
    let mut body = String::with_capacity(message.len() + code.len() + 24);
    for part in [r#"{"error":""#, code, r#"","message":""#, message, r#""}"#] {
        body.push_str(part);
    }
    body
}

/// Makes a description safe inside an RFC 7230 quoted-string: `"` becomes `'`, `\` becomes
/// `/`, control characters are dropped, and the length is bounded.
fn quoted(text: &str) -> Cow<'_, str> {
    let safe = |b: u8| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\';
    if text.len() <= 200 && text.bytes().all(safe) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .filter(|c| !c.is_control())
            .map(|c| match c {
                '"' => '\'',
                '\\' => '/',
                c => c,
            })
            .take(200)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http() -> Request {
        Request::default()
    }

    #[test]
    fn quoted_strings_replace_quotes_and_backslashes_and_drop_controls() {
        let every_ascii: String = (0u8..128).map(char::from).collect();
        let want: String = (0x20u8..0x7f)
            .map(|b| match b {
                b'"' => '\'',
                b'\\' => '/',
                b => char::from(b),
            })
            .collect();
        assert_eq!(quoted(&every_ascii), want);
        assert_eq!(quoted("plain text, kept as is"), "plain text, kept as is");
        assert_eq!(quoted(&"x".repeat(300)).len(), 200);
        assert_eq!(quoted("é\u{7f}\"e"), "é'e");
    }

    #[test]
    fn the_json_body_is_what_a_json_serializer_writes_for_any_quoted_message() {
        let every_char: String = (0u32..0x800).filter_map(char::from_u32).collect();
        for message in [
            every_char.as_str(),
            "é\u{7f}\"e\\",
            "Authentication required",
        ] {
            let message = quoted(message);
            let want = serde_json::json!({"error": "invalid_token", "message": message});
            assert_eq!(json_body("invalid_token", &message), want.to_string());
        }
    }

    fn header<'d>(d: &'d Reply, name: &str) -> Option<&'d str> {
        d.header(name)
    }

    #[test]
    fn missing_token_is_a_bare_challenge() {
        let d = deny("api", &Failure::Missing, &http());
        assert_eq!(d.status, 401);
        assert_eq!(header(&d, "www-authenticate"), Some("Bearer realm=\"api\""));
        assert_eq!(header(&d, "content-type"), Some("application/json"));
        assert_eq!(
            d.body,
            r#"{"error":"unauthorized","message":"Authentication required"}"#
        );
    }

    #[test]
    fn invalid_token_names_the_error_and_sanitises_quotes() {
        let d = deny(
            "api",
            &Failure::InvalidToken {
                description: "bad \"x\" \\ \r\n".into(),
                expired: false,
            },
            &http(),
        );
        assert_eq!(d.status, 401);
        assert_eq!(
            header(&d, "www-authenticate"),
            Some("Bearer realm=\"api\", error=\"invalid_token\", error_description=\"bad 'x' / \"")
        );
        assert_eq!(
            d.body,
            r#"{"error":"invalid_token","message":"bad 'x' / "}"#
        );
        let expired = Failure::InvalidToken {
            description: "e".into(),
            expired: true,
        };
        assert_eq!(expired.reason(), Reason::Expired);
        assert_eq!(deny("api", &expired, &http()).status, 401);
    }

    #[test]
    fn insufficient_scope_carries_the_scope_attribute_only_for_scopes() {
        let scoped = Failure::InsufficientScope {
            description: "Insufficient Scope".into(),
            scopes: Some(vec!["read:messages".into(), "write:messages".into()]),
        };
        let d = deny("api", &scoped, &http());
        assert_eq!(d.status, 403);
        assert_eq!(
            header(&d, "www-authenticate"),
            Some(
                "Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"Insufficient Scope\", scope=\"read:messages write:messages\""
            )
        );
        let claim = Failure::InsufficientScope {
            description: "Unexpected 'role' value".into(),
            scopes: None,
        };
        let d = deny("api", &claim, &http());
        assert_eq!(d.status, 403);
        assert!(!header(&d, "www-authenticate").unwrap().contains("scope=\""));
    }

    #[test]
    fn other_statuses() {
        let d = deny(
            "api",
            &Failure::InvalidRequest("More than one method used for authentication".into()),
            &http(),
        );
        assert_eq!(d.status, 400);
        assert!(
            header(&d, "www-authenticate")
                .unwrap()
                .contains("error=\"invalid_request\"")
        );
        let d = deny("api", &Failure::AccessDenied, &http());
        assert_eq!((d.status, header(&d, "www-authenticate")), (403, None));
        assert_eq!(
            d.body,
            r#"{"error":"access_denied","message":"Access denied"}"#
        );
        let d = deny("api", &Failure::Unavailable { retry_after_s: 7 }, &http());
        assert_eq!((d.status, header(&d, "retry-after")), (503, Some("7")));
        assert!(d.body.contains("temporarily_unavailable"));
    }

    #[test]
    fn grpc_calls_get_a_grpc_status_and_the_sentence() {
        let grpc = |ct: &str| Request::new("POST", "/pkg.Svc/Call", &[("content-type", ct)]);
        let cases = [
            (Failure::Missing, 401, 16, "Authentication required"),
            (
                Failure::InvalidToken {
                    description: "Unexpected 'aud' value".into(),
                    expired: false,
                },
                401,
                16,
                "Unexpected 'aud' value",
            ),
            (
                Failure::InsufficientScope {
                    description: "Insufficient Scope".into(),
                    scopes: Some(vec!["a".into()]),
                },
                403,
                7,
                "Insufficient Scope",
            ),
            (Failure::AccessDenied, 403, 7, "Access denied"),
            (Failure::InvalidRequest("bad".into()), 400, 3, "bad"),
            (
                Failure::Unavailable { retry_after_s: 1 },
                503,
                14,
                "Signing keys are not available",
            ),
        ];
        for (failure, status, code, message) in cases {
            let d = deny("api", &failure, &grpc("application/grpc"));
            assert_eq!(
                (d.status, d.grpc_status, d.body.as_str()),
                (status, Some(code), message)
            );
            assert_eq!(header(&d, "content-type"), None);
            let http = deny("api", &failure, &http());
            assert_eq!(http.grpc_status, None);
            assert!(http.body.starts_with("{\"error\":"));
        }
        for ct in ["application/grpc+proto", "Application/GRPC;charset=utf-8"] {
            assert_eq!(
                deny("api", &Failure::Missing, &grpc(ct)).grpc_status,
                Some(16),
                "{ct}"
            );
        }
        for ct in [
            "application/grpc-web",
            "application/grpcx",
            "application/json",
        ] {
            assert_eq!(
                deny("api", &Failure::Missing, &grpc(ct)).grpc_status,
                None,
                "{ct}"
            );
        }
    }

    #[test]
    fn only_401_challenges_name_the_resource_metadata() {
        let url = "https://api.test/.well-known/oauth-protected-resource";
        let mut d = deny("api", &Failure::Missing, &http());
        d.add_resource_metadata(url);
        assert_eq!(
            header(&d, "www-authenticate"),
            Some(
                "Bearer realm=\"api\", resource_metadata=\"https://api.test/.well-known/oauth-protected-resource\""
            )
        );
        let mut d = deny("api", &Failure::AccessDenied, &http());
        d.add_resource_metadata(url);
        assert_eq!(header(&d, "www-authenticate"), None);
        let scoped = Failure::InsufficientScope {
            description: "Insufficient Scope".into(),
            scopes: None,
        };
        let mut d = deny("api", &scoped, &http());
        d.add_resource_metadata(url);
        assert!(
            !header(&d, "www-authenticate")
                .unwrap()
                .contains("resource_metadata")
        );
    }
}
