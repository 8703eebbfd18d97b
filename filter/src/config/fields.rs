//! The configuration described once: every object the reader reads, every field of each
//! (name, type, default, bounds, meaning), in the order the reader destructures them.
//!
//! The reader (`config.rs` and the files beside it) takes its field names, defaults and
//! bounds from these tables; natively, the JSON Schema (`schema/jwt_filter.schema.json`) and
//! the configuration reference (`docs/configuration.md`) are generated from them
//! (`config::generate`, `make schema`), and `filter/tests/schema.rs` fails when the files on
//! disk are not what they would generate. Types, meanings and the JSON Schema fragments are
//! native-only: in the wasm build `field` drops them at compile time, so the module carries
//! names, defaults and bounds only.

use crate::jose::jwks;

/// A field of an object: what the reader needs (name, default, bounds) and, natively, what
/// the schema and the reference need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spec {
    pub name: &'static str,
    /// The value an absent field takes (`Preset::None`: none, or one the reader computes,
    /// shown natively by `shown`). A reference, so that the many fields without one share
    /// one `Preset::None` and a line of the table is 12 bytes in the module.
    pub preset: &'static Preset,
    #[cfg(not(target_arch = "wasm32"))]
    pub about: About,
}

/// A field's default, and for integers its bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Preset {
    None,
    /// An integer: its default, and the least and greatest values accepted.
    Int {
        default: u32,
        min: u32,
        max: u32,
    },
    Bool(bool),
    /// A string (or the name of an enum's variant).
    Text(&'static str),
    List(&'static [&'static str]),
}

/// What the schema and the reference say of a field (native builds only).
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct About {
    pub ty: Ty,
    pub doc: &'static str,
    pub required: bool,
    /// The default the reader computes, as JSON, when `preset` cannot hold it.
    pub shown: Option<&'static str>,
}

/// A field's type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ty {
    Bool,
    /// An integer within the bounds of its `Preset::Int`.
    Int,
    Str,
    /// A string naming one of these.
    Enum(&'static [&'static str]),
    /// Anything else, as a JSON Schema fragment (`$ref`s name `$defs`).
    Json(&'static str),
}

/// An object read from a table (native builds only): its `$defs` name (empty for the top
/// level), title, meaning, fields, and the JSON Schema constraints across its fields.
#[cfg(not(target_arch = "wasm32"))]
pub struct Object {
    pub def: &'static str,
    pub title: &'static str,
    pub doc: &'static str,
    pub fields: &'static [Spec],
    pub constraints: Option<&'static str>,
}

/// A field: `ty` and `doc` are kept in native builds only.
#[cfg_attr(target_arch = "wasm32", allow(unused_variables))]
const fn field(name: &'static str, ty: Ty, doc: &'static str) -> Spec {
    Spec {
        name,
        preset: &Preset::None,
        #[cfg(not(target_arch = "wasm32"))]
        about: About {
            ty,
            doc,
            required: false,
            shown: None,
        },
    }
}

impl Spec {
    /// The reader refuses the object without it (`missing field`).
    const fn required(self) -> Spec {
        #[cfg(not(target_arch = "wasm32"))]
        let mut this = self;
        #[cfg(not(target_arch = "wasm32"))]
        {
            this.about.required = true;
        }
        #[cfg(target_arch = "wasm32")]
        let this = self;
        this
    }

    /// Its default (for an integer, with its bounds: `int!`).
    const fn preset(mut self, preset: &'static Preset) -> Spec {
        self.preset = preset;
        self
    }

    /// A default the reader computes, as the schema and the reference show it (JSON).
    #[cfg_attr(target_arch = "wasm32", allow(unused_variables))]
    const fn shown(self, json: &'static str) -> Spec {
        #[cfg(not(target_arch = "wasm32"))]
        let mut this = self;
        #[cfg(not(target_arch = "wasm32"))]
        {
            this.about.shown = Some(json);
        }
        #[cfg(target_arch = "wasm32")]
        let this = self;
        this
    }
}

/// An integer field's `Preset`: default, least, greatest.
macro_rules! int {
    ($default:expr, $min:expr, $max:expr) => {
        &Preset::Int {
            default: $default,
            min: $min,
            max: $max,
        }
    };
}

/// Where the protected-resource metadata document is served by default.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// jwt_filter configuration
pub static ROOT: [Spec; 18] = [
    field(
        "$schema",
        Ty::Str,
        "The JSON Schema this file follows, for editors. The filter ignores it.",
    ),
    field(
        "realm",
        Ty::Json(r#"{"type":"string","pattern":"^[ !#-\\[\\]-~]+$"}"#),
        r#"Realm of the WWW-Authenticate challenges: non-empty printable ASCII without '"' or '\'."#,
    ).preset(&Preset::Text("api")),
    field(
        "cors_preflight",
        Ty::Enum(&["authenticate", "pass"]),
        r#""authenticate": a CORS preflight is decided like any request. "pass": a preflight (OPTIONS with Origin and Access-Control-Request-Method, no method override naming another method, a path the filter can read) goes upstream unchecked, identity headers still stripped (jwt_authn's bypass_cors_preflight)."#,
    ).preset(&Preset::Text("authenticate")),
    field(
        "resource_metadata",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/resource_metadata"},{"type":"array","minItems":1,"maxItems":64,"items":{"$ref":"#/$defs/resource_metadata"}}]}"##),
        r#"RFC 9728 protected-resource metadata. One document (an object): the filter answers GET on its path itself (before any rule, on every host), and every 401 challenge names it (resource_metadata="<scheme>://<authority><path>"). A list of 1 to 64 documents, one per resource (per host, or per path prefix of a host, as MCP servers need): each is served on its resource's host only, and a 401 names the document of the request's host whose resource is the longest prefix of the request's path (none if no resource covers it). Default: none."#,
    ),
    field(
        "mode",
        Ty::Enum(&["enforce", "report"]),
        r#""enforce": deny what fails. "report": decide and log/count what would be denied (jwt_filter_report_would_deny), but let every request through (identity headers are still stripped)."#,
    ).preset(&Preset::Text("enforce")),
    field(
        "unmatched",
        Ty::Enum(&["deny", "allow"]),
        r#""deny": a request no rule matches (under any of its readings) gets 403 access_denied. "allow": it passes unchecked."#,
    ).preset(&Preset::Text("deny")),
    field(
        "path_parameters",
        Ty::Enum(&["reject", "strip"]),
        r#""reject": a path with ';' gets 403 access_denied. "strip": each segment's ';...' is removed before matching (as servlet containers do) and the path forwarded unchanged; '.' or '..' with parameters ('..;') is refused either way."#,
    ).preset(&Preset::Text("reject")),
    field(
        "max_token_bytes",
        Ty::Int,
        "Longer tokens are refused before any decoding.",
    ).preset(int!(8192, 256, 65536)),
    field(
        "max_body_bytes",
        Ty::Int,
        r#"Most bytes of a form body read for a token ({"body": ...} sources); a larger body is refused with 413."#,
    ).preset(int!(65536, 1024, 1048576)),
    field(
        "jwt_cache_size",
        Ty::Int,
        "Verified tokens kept per worker; 0 turns the cache off.",
    ).preset(int!(1000, 0, 100000)),
    field(
        "host_crypto",
        Ty::Bool,
        "Use the host's verify_signature (Envoy) for RS*/ES*; false forces the in-wasm verifiers.",
    ).preset(&Preset::Bool(true)),
    field(
        "provider_stats",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/provider_stats"}]}"##),
        "Counters per provider besides the filter's own (which stay as they are): jwt_filter_<prefix>_<provider>_verified for each request a provider's token passed, jwt_filter_<prefix>_<provider>_denied_<reason> for each refusal concerning it. Default: none (each adds a host call per request).",
    ),
    field(
        "providers",
        Ty::Json(r##"{"type":"object","minProperties":1,"propertyNames":{"pattern":"^[A-Za-z0-9_-]+$"},"additionalProperties":{"$ref":"#/$defs/provider"}}"##),
        "Required: name -> provider (names: letters, digits, '-', '_'). At least one.",
    ).required(),
    field(
        "rules",
        Ty::Json(r##"{"type":"array","items":{"$ref":"#/$defs/rule"}}"##),
        "Required: route rules, first match wins (every rule a request reaches under any of its readings must pass).",
    ).required(),
    field(
        "denials",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/denials"}]}"##),
        "Denials of your own shape (docs/denials.md): a body (problem+json or a template), extra headers, per kind of refusal a status where the standards allow one, and a redirect to log in for browsers. The WWW-Authenticate challenge, Retry-After and gRPC answers stay as they are. Default: the Express JSON body.",
    ),
    field(
        "failure_property",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/property"}]}"##),
        r#"A stream property (Envoy's filter state wasm.<name>) that receives each refusal, also in report mode, as JSON: {"reason", "error", "message", "status", "provider"} (the reason is the metric label; no token or claim value). Default: none."#,
    ),
    field(
        "provider_property",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/property"}]}"##),
        "A stream property (Envoy's filter state wasm.<name>) that receives the name of the provider whose token the request passed with (names joined with ',' when a rule needed several). Default: none.",
    ),
    field(
        "provider_header",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/identity_header"}]}"##),
        "A request header that receives the same names upstream; an identity header: removed from every incoming request first, in every spelling an upstream reads as the same name. Default: none.",
    ),
];

/// resource metadata
pub static RESOURCE_METADATA: [Spec; 15] = [
    field(
        "path",
        Ty::Json(r##"{"$ref":"#/$defs/rule_path"}"##),
        "Where the document is served (GET, query ignored). Default: /.well-known/oauth-protected-resource followed by the resource's path, as RFC 9728 section 3.1 builds the URL (https://api.example.com/mcp is served at /.well-known/oauth-protected-resource/mcp).",
    ),
    field(
        "resource",
        Ty::Json(r#"{"type":"string","pattern":"^https?://[A-Za-z0-9._:\\[\\]-]+(/[!$->@-\\[\\]-~]*)?$"}"#),
        "Required: the resource identifier, an http(s) URL without query or fragment.",
    ).required(),
    field(
        "jwks_uri",
        Ty::Json(r##"{"$ref":"#/$defs/metadata_string"}"##),
        "The resource's own JWKS URL.",
    ),
    field(
        "resource_name",
        Ty::Json(r##"{"$ref":"#/$defs/metadata_string"}"##),
        "A human-readable name.",
    ),
    field(
        "resource_documentation",
        Ty::Json(r##"{"$ref":"#/$defs/metadata_string"}"##),
        "A URL of developer documentation.",
    ),
    field(
        "resource_policy_uri",
        Ty::Json(r##"{"$ref":"#/$defs/metadata_string"}"##),
        "A URL of the data-use policy.",
    ),
    field(
        "resource_tos_uri",
        Ty::Json(r##"{"$ref":"#/$defs/metadata_string"}"##),
        "A URL of the terms of service.",
    ),
    field(
        "authorization_servers",
        Ty::Json(r##"{"$ref":"#/$defs/metadata_list"}"##),
        "Issuer identifiers of the authorization servers.",
    ),
    field(
        "scopes_supported",
        Ty::Json(r##"{"$ref":"#/$defs/metadata_list"}"##),
        "Scopes used in authorization requests for this resource.",
    ),
    field(
        "bearer_methods_supported",
        Ty::Json(r##"{"$ref":"#/$defs/metadata_list"}"##),
        "How bearer tokens may be sent (header, body, query).",
    ),
    field(
        "resource_signing_alg_values_supported",
        Ty::Json(r##"{"$ref":"#/$defs/metadata_list"}"##),
        "Algorithms the resource signs responses with.",
    ),
    field(
        "authorization_details_types_supported",
        Ty::Json(r##"{"$ref":"#/$defs/metadata_list"}"##),
        "Rich authorization request types.",
    ),
    field(
        "dpop_signing_alg_values_supported",
        Ty::Json(r##"{"$ref":"#/$defs/metadata_list"}"##),
        "DPoP proof algorithms.",
    ),
    field(
        "tls_client_certificate_bound_access_tokens",
        Ty::Json(r#"{"type":["boolean","null"]}"#),
        "Whether mTLS-bound tokens are supported.",
    ),
    field(
        "dpop_bound_access_tokens_required",
        Ty::Json(r#"{"type":["boolean","null"]}"#),
        "Whether DPoP-bound tokens are required.",
    ),
];

/// provider
pub static PROVIDER: [Spec; 23] = [
    field(
        "issuer",
        Ty::Json(r##"{"anyOf":[{"$ref":"#/$defs/issuer"},{"type":"array","minItems":1,"items":{"$ref":"#/$defs/issuer"}}]}"##),
        "Required: one issuer or a list; the token's iss must equal one exactly (a trailing slash matters), but for {claim} placeholders, each standing for that string claim of the same token (one non-empty run of characters without '/'). With discovery, one http(s) URL without placeholders.",
    ).required(),
    field(
        "audiences",
        Ty::Json(r#"{"type":"array","minItems":1,"items":{"type":"string","minLength":1}}"#),
        "Required, non-empty: the token's aud (a string or an array of strings) must contain one of them, exactly.",
    ).required(),
    field(
        "remote_jwks",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/remote_jwks"}]}"##),
        "Keys fetched from a JWKS URI through an Envoy cluster, shared by all workers, refreshed, and kept serving (stale) while the key server is down.",
    ),
    field(
        "local_jwks",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/local_jwks"}]}"##),
        r#"An inline JWKS {"keys": [...]}, the same as JSON text, or {"env": "NAME"}: the JSON text in that environment variable of the VM, read at configure time (Envoy's vm_config.environment_variables; a file path is not offered: Envoy gives a wasm VM no filesystem). Checked at configure time: every key must be usable and fit one of the provider's algorithms. oct keys (HMAC secrets, at least as long as the hash) are accepted only here."#,
    ),
    field(
        "discovery",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/discovery"}]}"##),
        "OpenID discovery: the filter fetches {issuer}/.well-known/openid-configuration from cluster, requires its issuer to equal the provider's, then fetches its jwks_uri through the same cluster. The same fields as remote_jwks, without uri.",
    ),
    field(
        "algorithms",
        Ty::Json(r##"{"type":"array","minItems":1,"items":{"$ref":"#/$defs/algorithm"},"anyOf":[{"items":{"$ref":"#/$defs/public_key_algorithm"}},{"items":{"$ref":"#/$defs/hmac_algorithm"}}]}"##),
        "The only algorithms accepted. HMAC (HS*) only with a local_jwks secret, never mixed with public-key algorithms; 'none' is refused in any spelling. ES512 is verified by the host's verify_signature only: where signatures are verified in wasm, ES512 tokens are refused (the log says so at configure time).",
    ).preset(&Preset::List(&["RS256"])),
    field(
        "clock_skew_s",
        Ty::Int,
        "Tolerance in seconds for exp, nbf, iat.",
    ).preset(int!(5, 0, 300)),
    field(
        "max_token_age_s",
        Ty::Json(r#"{"type":["integer","null"],"minimum":0,"maximum":18446744073709551615}"#),
        "If set, iat is required and must be within this many seconds. Default: none.",
    ),
    field(
        "require_typ",
        Ty::Json(r#"{"type":["string","null"],"minLength":1}"#),
        r#"If set, the header typ must match (case-insensitive, 'application/' optional); "at+jwt" is RFC 9068 strict mode and also requires sub, client_id, jti, iat. Default: none."#,
    ),
    field(
        "token_sources",
        Ty::Json(r##"{"type":["array","null"],"minItems":1,"items":{"$ref":"#/$defs/token_source"}}"##),
        "Where the token may be, in order.",
    ).shown(r#"[{"header":"authorization"}]"#),
    field(
        "forward",
        Ty::Bool,
        "Keep the token in the request upstream (default: remove it from its header, query, cookie or form body).",
    ).preset(&Preset::Bool(false)),
    field(
        "forward_payload_header",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/identity_header"}]}"##),
        "Header that receives the token's payload (base64url); removed from every incoming request first, in every spelling an upstream reads as the same name. Default: none.",
    ),
    field(
        "claim_to_headers",
        Ty::Json(r##"{"type":"array","items":{"$ref":"#/$defs/claim_to_header"}}"##),
        r#"Claims copied into request headers on success: strings as is, numbers and booleans printed, arrays of those joined with ',' when every element is non-empty, without ',' or '"' and without whitespace at either end (otherwise the array is not written: its list would read back as other elements); objects and values with control characters are not written. The headers are removed from every incoming request first, in every spelling an upstream reads as the same name (case, and '_', '.' or any other symbol for '-')."#,
    ).preset(&Preset::List(&[])),
    field(
        "claim_to_properties",
        Ty::Json(r##"{"type":"array","items":{"$ref":"#/$defs/claim_to_property"}}"##),
        "Claims copied into stream properties on success (set_property: Envoy's filter state wasm.<property>, for its access log and later filters), written as for claim_to_headers (arrays included).",
    ).preset(&Preset::List(&[])),
    field(
        "dpop",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/dpop"}]}"##),
        "DPoP-bound tokens (RFC 9449): the Authorization: DPoP scheme with one DPoP proof header. A token whose cnf.jkt binds it to a key is refused without a proof by that key, whatever the mode.",
    )
    .shown(r#"{"mode":"allowed"}"#),
    field(
        "mtls",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/mtls"}]}"##),
        r#"Certificate-bound tokens (RFC 8705): a token whose cnf["x5t#S256"] binds it to a client certificate is refused unless the connection presents that certificate, whatever the mode."#,
    )
    .shown(r#"{"mode":"allowed"}"#),
    field(
        "max_lifetime_s",
        Ty::Json(r#"{"type":["integer","null"],"minimum":1,"maximum":18446744073709551615}"#),
        "jwt_authn's max_lifetime: exp must be less than this many seconds from now (exp - now < max_lifetime_s, without clock skew, as jwt_authn), so that no token stays usable longer. Unlike max_token_age_s, which bounds now - iat. Default: none.",
    ),
    field(
        "subjects",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/subject"},{"type":"array","minItems":1,"items":{"$ref":"#/$defs/subject"}}]}"##),
        "jwt_authn's subjects: the token's sub must be a string that matches this pattern (or one of these): exact, prefix, suffix or contains, optionally ignore_case. No regex. Default: none (any sub).",
    ),
    field(
        "jwt_svid",
        Ty::Bool,
        r#"SPIFFE JWT-SVIDs: keys published with use "jwt-svid" (a SPIFFE bundle's JWT authorities, each with a kid) verify tokens too, and every token must be a JWT-SVID: sub a SPIFFE ID (spiffe://trust-domain/path, the SPIFFE ID syntax), typ JWT or JOSE when present (aud and exp are required anyway). algorithms may then name RS*, PS*, ES256, ES384, ES512 only."#,
    ).preset(&Preset::Bool(false)),
    field(
        "key_sources",
        Ty::Json(r##"{"type":["array","null"],"minItems":1,"maxItems":8,"items":{"$ref":"#/$defs/key_source"}}"##),
        "Several key sources whose keys are all trusted, instead of one remote_jwks, local_jwks or discovery (key rollover across two key servers): each is fetched, cached and refreshed on its own. A token's kid is looked up in every source's keys; an unknown kid refetches every remote source whose cooldown allows; while a source is down, the keys of the others still verify (a token whose key is in none of the sources that answer is refused 503 while a source is down, else 401). 1 to 8 sources, no two fetching the same document.",
    ),
    field(
        "revocation",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/revocation"}]}"##),
        "Revoked tokens of this provider (docs/revocation.md): a revocation list fetched through a cluster and shared by all workers, and a receiver path for pushed revocations (OpenID back-channel logout tokens, RFC 8417 Security Event Tokens). Checked after the signature, on every request, verified-token cache hits included. Default: none (nothing is looked up).",
    ),
    field(
        "tenants",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/tenants"}]}"##),
        "Issuers with their own keys: the issuer is one template with one {name} placeholder (https://kc.example.com/realms/{realm}), and each tenant the token's iss names there has its own key set, fetched on first use through the one remote_jwks or discovery whose path holds the same {name} (discovery: {issuer}/.well-known/openid-configuration of the tenant's issuer). A tenant that is not allowed is refused (401, Unexpected 'iss' value) before any fetch. Default: none (one key set for all issuers).",
    ),
    field(
        "introspection",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/introspection"}]}"##),
        "Opaque tokens checked by OAuth 2.0 token introspection (RFC 7662) instead of keys: the filter POSTs the token to the endpoint and accepts it only if the answer says active: true and its claims pass the provider's checks (exp required and in the future, iss if present equal to an issuer, aud, then the rule's scopes and claims). A token shaped as a JWS (three base64url parts) is never sent: such a provider refuses it, and a JWT provider on the same route takes it. Answers are cached for all workers by a keyed hash of the token (never the token).",
    ),
];

/// introspection (a provider's `introspection`)
pub static INTROSPECTION: [Spec; 9] = [
    field(
        "cluster",
        Ty::Json(r#"{"type":"string","minLength":1}"#),
        "Required: the Envoy cluster that reaches the introspection endpoint.",
    ).required(),
    field(
        "uri",
        Ty::Json(r##"{"$ref":"#/$defs/http_uri"}"##),
        "Required: the introspection endpoint, absolute http(s); its path and :authority are used.",
    ).required(),
    field(
        "client_id",
        Ty::Json(r#"{"type":["string","null"],"minLength":1}"#),
        "With client_secret: HTTP Basic client authentication (RFC 6749 section 2.3.1: both form-urlencoded, then base64).",
    ),
    field(
        "client_secret",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"type":"string","minLength":1},{"$ref":"#/$defs/env"}]}"##),
        r#"The client's secret, or {"env": "NAME"}; never logged."#,
    ),
    field(
        "bearer",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"type":"string","pattern":"^[A-Za-z0-9._~+/=-]+$"},{"$ref":"#/$defs/env"}]}"##),
        r#"Instead of client_id and client_secret: a bearer token sent as Authorization: Bearer, or {"env": "NAME"}; never logged."#,
    ),
    field(
        "timeout_ms",
        Ty::Int,
        "Timeout of one introspection call in milliseconds; a request waits at most this long (plus one second on other workers), then gets 503.",
    ).preset(int!(2000, 1, 60000)),
    field(
        "cache_ttl_s",
        Ty::Int,
        "Longest time an active answer is used, in seconds; never past the answer's exp.",
    ).preset(int!(300, 1, 86400)),
    field(
        "inactive_ttl_s",
        Ty::Int,
        "How long an inactive answer is used, in seconds (keep it short: a token may become active only by being issued, which gives a new token).",
    ).preset(int!(10, 1, 3600)),
    field(
        "max_body_bytes",
        Ty::Int,
        "Largest introspection answer accepted, in bytes; a larger one is a failure (503).",
    ).preset(int!(16384, 256, 1048576)),
];

/// revocation (a provider's `revocation`; its own tables, read by `config/revocation.rs`)
pub static REVOCATION: [Spec; 3] = [
    field(
        "list",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/revocation_list"}]}"##),
        "A revocation list (its JSON format: docs/revocation.md) fetched through a cluster, refreshed, conditionally (ETag, If-None-Match), parsed by the worker that fetches it and shared with all workers.",
    ),
    field(
        "on_unavailable",
        Ty::Enum(&["deny", "allow"]),
        "What a token of this provider gets while no list is loaded yet, or the list is older than list.max_age_s: deny (503 with Retry-After, as keys that are not available) or allow (the weaker mode: tokens are accepted unchecked against the list; pushed revocations still apply).",
    ).preset(&Preset::Text("deny")),
    field(
        "receiver",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/revocation_receiver"}]}"##),
        "A path the filter answers itself for pushed revocations: POSTs of OpenID back-channel logout tokens (form logout_token=...) and RFC 8935 pushed Security Event Tokens (application/secevent+jwt, CAEP session-revoked and credential-change), signed by this provider's keys.",
    ),
];

/// revocation list
pub static REVOCATION_LIST: [Spec; 8] = [
    field(
        "cluster",
        Ty::Json(r#"{"type":"string","minLength":1}"#),
        "Required: the Envoy cluster that reaches the list's server.",
    ).required(),
    field(
        "uri",
        Ty::Json(r##"{"$ref":"#/$defs/http_uri"}"##),
        "Required: the list's URI, absolute http(s); its path and :authority are used.",
    ).required(),
    field(
        "headers",
        Ty::Json(r##"{"type":["object","null"],"propertyNames":{"pattern":"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"},"additionalProperties":{"anyOf":[{"type":"string","pattern":"^[\\t -~]*$"},{"$ref":"#/$defs/env"}]}}"##),
        "Extra request headers on every fetch, as remote_jwks.headers.",
    ),
    field(
        "timeout_ms",
        Ty::Int,
        "Timeout of one fetch in milliseconds.",
    ).preset(int!(5000, 1, 60000)),
    field(
        "refresh_s",
        Ty::Int,
        "How often the list is fetched again, in seconds (with If-None-Match when the server sent an ETag; a 304 keeps the list and counts as fresh). A revocation reaches every worker within about this long.",
    ).preset(int!(30, 1, 86400)),
    field(
        "max_age_s",
        Ty::Int,
        "How long a list stays usable since it was last fetched or confirmed (304), in seconds; past it, on_unavailable applies.",
    ).preset(int!(300, 1, 604800)),
    field(
        "max_entries",
        Ty::Int,
        "Most entries a list may hold. A larger list is refused whole, logged with its count, and the last good list keeps serving.",
    ).preset(int!(10000, 1, 100000)),
    field(
        "max_bytes",
        Ty::Int,
        "Largest list accepted, in bytes; a larger one is refused whole, and the last good list keeps serving.",
    ).preset(int!(1048576, 1024, 8388608)),
];

/// revocation receiver
pub static REVOCATION_RECEIVER: [Spec; 5] = [
    field(
        "path",
        Ty::Json(r#"{"type":"string","pattern":"^/[!-~]*$"}"#),
        "Required: the request path (without query) whose POSTs the filter answers itself; unique among providers, and not the resource metadata path.",
    ).required(),
    field(
        "audiences",
        Ty::Json(r#"{"type":["array","null"],"minItems":1,"items":{"type":"string","minLength":1}}"#),
        "The aud a pushed token must name (one of these): the client id the identity provider sends logouts for. Default: the provider's audiences.",
    ),
    field(
        "iat_window_s",
        Ty::Int,
        "How far a pushed token's iat may be from now, either way, in seconds; its jti is remembered that long (and refused if seen again).",
    ).preset(int!(300, 1, 3600)),
    field(
        "max_entries",
        Ty::Int,
        "Most pushed revocations and remembered jtis kept at once (shared by all workers); when full, a push is answered 503 and not recorded.",
    ).preset(int!(10000, 1, 100000)),
    field(
        "entry_lifetime_s",
        Ty::Int,
        "How long a pushed revocation is kept, in seconds: the longest lifetime of this provider's tokens (a token issued before the revocation expires before it is forgotten).",
    ).preset(int!(86400, 60, 2592000)),
];

/// tenants
pub static TENANTS: [Spec; 3] = [
    field(
        "allow",
        Ty::Json(r#"{"type":["array","null"],"minItems":1,"items":{"type":"string","minLength":1}}"#),
        "The tenants allowed, exactly (case matters). Default: none (any tenant: anyone can then make the filter fetch any tenant's documents; a worker holds max_tenants at once). Every tenant, listed or not, is 1 to max_length unreserved URI characters (letters, digits, '-', '.', '_', '~'), never '.' or '..': one literal path segment, without '/', percent-encoding or dot segments.",
    ),
    field(
        "max_length",
        Ty::Int,
        "The longest tenant, in bytes.",
    ).preset(int!(64, 1, 255)),
    field(
        "max_tenants",
        Ty::Int,
        "Most tenants whose key sets one worker holds at once; one more evicts the least recently used (its shared record stays until it expires and is re-adopted if the tenant comes back).",
    ).preset(int!(16, 1, 256)),
];

/// key source (an element of key_sources)
pub static KEY_SOURCE: [Spec; 3] = [
    field(
        "remote_jwks",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/remote_jwks"}]}"##),
        "Keys fetched from a JWKS URI, as the provider's remote_jwks.",
    ),
    field(
        "local_jwks",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/local_jwks"}]}"##),
        "An inline key set, as the provider's local_jwks.",
    ),
    field(
        "discovery",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/discovery"}]}"##),
        "OpenID discovery from the provider's issuer, as the provider's discovery.",
    ),
];

/// subject pattern
pub static SUBJECT: [Spec; 5] = [
    field(
        "exact",
        Ty::Json(r#"{"type":["string","null"],"minLength":1}"#),
        "sub equals this.",
    ),
    field(
        "prefix",
        Ty::Json(r#"{"type":["string","null"],"minLength":1}"#),
        "sub starts with this.",
    ),
    field(
        "suffix",
        Ty::Json(r#"{"type":["string","null"],"minLength":1}"#),
        "sub ends with this.",
    ),
    field(
        "contains",
        Ty::Json(r#"{"type":["string","null"],"minLength":1}"#),
        "sub contains this.",
    ),
    field(
        "ignore_case",
        Ty::Bool,
        "Compare ASCII letters without regard to case.",
    )
    .preset(&Preset::Bool(false)),
];

/// secret from the environment
pub static SECRET: [Spec; 1] = [
    field(
        "env",
        Ty::Json(r#"{"type":"string","pattern":"^[A-Za-z_][A-Za-z0-9_]*$"}"#),
        "Required: the name of an environment variable of the VM (Envoy's vm_config.environment_variables), read once at configure time. Unset or empty, it refuses the configuration (the error names the variable, never a value).",
    ).required(),
];

/// fetch settings
pub static FETCH: [Spec; 11] = [
    field(
        "cluster",
        Ty::Json(r#"{"type":"string","minLength":1}"#),
        "Required: the Envoy cluster that reaches the key server.",
    ).required(),
    field(
        "uri",
        Ty::Json(r#"{"type":["string","null"]}"#),
        "remote_jwks only (required there): the JWKS URI, absolute http(s); its path and :authority are used.",
    ),
    field(
        "timeout_ms",
        Ty::Int,
        "Timeout of one fetch in milliseconds.",
    ).preset(int!(5000, 1, 60000)),
    field(
        "cache_duration_s",
        Ty::Int,
        "How long fetched keys are used before a refresh, in seconds.",
    ).preset(int!(600, 1, 604800)),
    field(
        "cooldown_s",
        Ty::Int,
        "Least time between two fetches (after a failure, or a refetch for an unknown kid), in seconds.",
    ).preset(int!(30, 0, 3600)),
    field(
        "stale_max_s",
        Ty::Int,
        "How long expired keys keep serving while the key server fails, in seconds.",
    ).preset(int!(86400, 0, 604800)),
    field(
        "max_body_bytes",
        Ty::Int,
        "Largest key set (or discovery document) accepted, in bytes.",
    ).preset(int!(1048576, 1024, 16777216)),
    field(
        "max_keys",
        Ty::Int,
        "Most keys a fetched key set may hold. A larger set is refused whole, logged with its count, and the last good set keeps serving: every VM checks every key of a set it adopts in one callback (an RSA-2048 key up to 5 million wasm instructions, a P-256 key up to 12 million, a P-384 key about 85 million).",
    ).preset(int!(jwks::MAX_KEYS as u32, 1, jwks::MAX_KEYS_BOUND as u32)),
    field(
        "headers",
        Ty::Json(r##"{"type":["object","null"],"propertyNames":{"pattern":"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"},"additionalProperties":{"anyOf":[{"type":"string","pattern":"^[\\t -~]*$"},{"$ref":"#/$defs/env"}]}}"##),
        r#"Extra request headers on every fetch (name: value), as jwks-rsa's requestHeaders; a value may be {"env": "NAME"} (an API key from the VM's environment, read at configure time); a host entry replaces :authority; values printable ASCII, never logged; the call's own and framing headers (content-length, transfer-encoding, connection, upgrade, te, keep-alive, accept, pseudo-headers) cannot be set."#,
    ),
    field(
        "metadata_uri",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/http_uri"}]}"##),
        "discovery only: a full metadata URL (absolute http(s)), read instead of the well-known documents.",
    ),
    field(
        "jwks_cluster",
        Ty::Json(r#"{"type":["string","null"],"minLength":1}"#),
        "discovery only: the cluster for the jwks_uri the document names (default: cluster).",
    ),
];

/// token source
pub static TOKEN_SOURCE: [Spec; 5] = [
    field(
        "header",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/token"}]}"##),
        "A request header that carries the token (names are case-insensitive).",
    ),
    field(
        "prefix",
        Ty::Json(r#"{"type":["string","null"],"pattern":"^[ -~]{0,64}$"}"#),
        r#"With header only: the text before the token, compared case-insensitively, at most 64 printable ASCII characters. Default: "Bearer " for authorization, none otherwise."#,
    ),
    field(
        "query",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/token"}]}"##),
        "A query parameter that carries the token (e.g. access_token).",
    ),
    field(
        "cookie",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/token"}]}"##),
        "A cookie that carries the token.",
    ),
    field(
        "body",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/token"}]}"##),
        "A field of an application/x-www-form-urlencoded request body (not GET or HEAD) that carries the token. The body is read only on routes whose rule requires this provider, up to max_body_bytes; in Envoy the plugin needs allow_on_headers_stop_iteration: true.",
    ),
];

/// claim to header
pub static CLAIM_TO_HEADER: [Spec; 2] = [
    field(
        "claim",
        Ty::Json(r##"{"$ref":"#/$defs/claim_path"}"##),
        r#"The claim to copy: a dotted path ("org.id") or a list of literal names (["https://example.com/roles"])."#,
    ).required(),
    field(
        "header",
        Ty::Json(r##"{"$ref":"#/$defs/identity_header"}"##),
        "The header that receives it (lower-cased).",
    ).required(),
];

/// provider stats
pub static PROVIDER_STATS: [Spec; 1] = [
    field(
        "prefix",
        Ty::Json(r#"{"type":"string","pattern":"^[a-z][a-z0-9_]{0,31}$"}"#),
        "The word that follows jwt_filter in the counters' names, before the provider's name: a lower-case letter, then up to 31 lower-case letters, digits or '_'. One per filter configuration in an Envoy, so that two filters' counters stay apart.",
    ).preset(&Preset::Text("provider")),
];

/// claim to property
pub static CLAIM_TO_PROPERTY: [Spec; 2] = [
    field(
        "claim",
        Ty::Json(r##"{"$ref":"#/$defs/claim_path"}"##),
        r#"The claim to copy: a dotted path ("org.id") or a list of literal names."#,
    )
    .required(),
    field(
        "property",
        Ty::Json(r#"{"type":"string","pattern":"^[A-Za-z0-9_.-]{1,64}$"}"#),
        "The stream property that receives it: 1 to 64 letters, digits, '_', '-' or '.'.",
    )
    .required(),
];

/// dpop
pub static DPOP: [Spec; 7] = [
    field(
        "mode",
        Ty::Enum(&["allowed", "required", "disabled"]),
        "allowed: DPoP and Bearer, challenges offer both; required: DPoP only; disabled: Bearer only (a DPoP-bound token is then always refused).",
    ).preset(&Preset::Text("allowed")),
    field(
        "algorithms",
        Ty::Json(r##"{"type":["array","null"],"minItems":1,"items":{"$ref":"#/$defs/public_key_algorithm"}}"##),
        "Algorithms a proof may use: public-key ones only. The default is every one; where signatures are verified in wasm (no host verify_signature, or host_crypto false), the default leaves out ES512, which only the host verifies.",
    ).shown(r#"["RS256","RS384","RS512","PS256","PS384","PS512","ES256","ES384","ES512","ES256K","EdDSA"]"#),
    field(
        "iat_offset_s",
        Ty::Int,
        "How old a proof's iat may be, in seconds.",
    ).preset(int!(300, 1, 3600)),
    field(
        "iat_leeway_s",
        Ty::Int,
        "How far in the future a proof's iat may be, in seconds; also the clock skew for a proof's exp and nbf when it has them (exp must be after now - iat_leeway_s, nbf at most now + iat_leeway_s).",
    ).preset(int!(30, 0, 300)),
    field(
        "origin",
        Ty::Json(r#"{"type":["string","null"],"pattern":"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@]+$"}"#),
        "scheme://host[:port] that clients sign in htu, when a TLS terminator in front of the proxy makes :scheme and :authority differ; no path.",
    ),
    field(
        "replay_store",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/replay_store"}]}"##),
        "A replay store every gateway of a fleet shares, asked after the replay cache of this Envoy: a proof accepted by one gateway is then refused by all. Default: none (each Envoy's own cache only).",
    ),
    field(
        "nonce",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/nonce"}]}"##),
        "Server nonces (RFC 9449 sections 8 and 9): every proof must carry a nonce this provider issued (401 use_dpop_nonce with a fresh one in DPoP-Nonce otherwise), and a proof's replay window ends with its nonce's. Default: none (no nonce asked for).",
    ),
];

/// nonce
pub static NONCE: [Spec; 2] = [
    field(
        "secrets",
        Ty::Json(r##"{"type":"array","minItems":1,"maxItems":4,"items":{"anyOf":[{"type":"string","minLength":32},{"$ref":"#/$defs/env"}]}}"##),
        r#"Required: 1 to 4 secrets of at least 32 bytes each (HMAC-SHA256's key length), inline or {"env": "NAME"}; the first signs the nonces, every one is accepted (a rollover). Gateways with the same secrets and lifetime_s accept each other's nonces, with no shared state."#,
    ).required(),
    field(
        "lifetime_s",
        Ty::Int,
        "The longest a nonce is accepted, in seconds: nonces are issued per slot of lifetime_s / 2 and accepted in their slot and the next, so for between lifetime_s / 2 and lifetime_s after their issue (plus iat_leeway_s for a gateway whose clock runs ahead).",
    ).preset(int!(60, 10, 3600)),
];

/// replay store
pub static REPLAY_STORE: [Spec; 1] = [field(
    "etcd",
    Ty::Json(r##"{"$ref":"#/$defs/etcd"}"##),
    "Required: etcd (v3.4 or later) through its HTTP/JSON gateway.",
)
.required()];

/// etcd
pub static ETCD: [Spec; 5] = [
    field(
        "cluster",
        Ty::Json(r#"{"type":"string","pattern":"^[!-~]{1,255}$"}"#),
        "Required: the Envoy cluster that reaches etcd's client URLs (every member; HTTP/1.1 or HTTP/2, TLS and client certificates in its transport socket).",
    )
    .required(),
    field(
        "authority",
        Ty::Json(r#"{"type":["string","null"],"pattern":"^[!-~]{1,255}$"}"#),
        "The :authority of the calls to etcd. Default: the cluster's name.",
    ),
    field(
        "prefix",
        Ty::Json(r#"{"type":"string","pattern":"^[!-~]{1,255}$"}"#),
        "Prepended to every key the filter writes (printable ASCII, no spaces): one prefix per fleet, or per etcd shared with other applications.",
    )
    .preset(&Preset::Text("/jwt_filter/dpop/")),
    field(
        "timeout_ms",
        Ty::Int,
        "How long a request waits for etcd's answer, in milliseconds (a lease grant, when one is needed, gets as long again).",
    )
    .preset(int!(1000, 10, 10000)),
    field(
        "on_unavailable",
        Ty::Enum(&["deny", "local_only"]),
        "When etcd does not answer in time, answers an error or has no quorum: deny refuses the request (503 temporarily_unavailable with Retry-After, fail closed); local_only lets it through on this Envoy's replay cache alone (a replay to another gateway then passes) and counts it in jwt_filter_dpop_store_failed.",
    )
    .preset(&Preset::Text("deny")),
];

/// mtls
pub static MTLS: [Spec; 1] = [
    field(
        "mode",
        Ty::Enum(&["allowed", "required"]),
        "allowed: certificate-bound tokens need their certificate, others pass; required: only tokens bound to the connection's client certificate.",
    ).required(),
];

/// rule
pub static RULE: [Spec; 2] = [
    field(
        "match",
        Ty::Json(r##"{"$ref":"#/$defs/match"}"##),
        "Required: which requests the rule is for.",
    )
    .required(),
    field(
        "requires",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/requirement"}]}"##),
        "What a request must present on this route. Absent (or null): the route is public.",
    ),
];

/// match
pub static MATCH: [Spec; 6] = [
    field(
        "path",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/rule_path"}]}"##),
        "The exact path, written as the filter reads requests: decoded (/a b, not /a%20b), no '.' or '..' segments, no '//' or ';'.",
    ),
    field(
        "prefix",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/rule_path"}]}"##),
        "A path prefix, written as the filter reads requests: decoded, no '.' or '..' segments, no '//' or ';'.",
    ),
    field(
        "path_template",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/path_template"}]}"##),
        "Literal segments, {name} (exactly one non-empty segment) and a final {name=**} or ** (the rest); what it captures can be compared with claims (equals_param, includes_param). Literal segments are written as the filter reads requests.",
    ),
    field(
        "methods",
        Ty::Json(
            r#"{"type":["array","null"],"minItems":1,"items":{"type":"string","pattern":"^[A-Z]+$"}}"#,
        ),
        "Upper-case method names such as GET. Leave it out to match any method.",
    ),
    field(
        "hosts",
        Ty::Json(
            r#"{"type":["array","null"],"minItems":1,"items":{"type":"string","pattern":"^(\\*\\.)?[A-Za-z0-9-]{1,63}(\\.[A-Za-z0-9-]{1,63})*(:[0-9]{1,5})?$"}}"#,
        ),
        "Host patterns compared with the request's authority, case-insensitively: api.example.com or *.example.com (one or more labels in front), each with an optional :port (1 to 65535; without one, any port). When some rule has hosts, a request whose authority is not one host (userinfo, percent-encoding, brackets around a name, several values, a bad port...) is refused with 400. Leave it out to match any host.",
    ),
    field(
        "route",
        Ty::Json(
            r#"{"type":["array","null"],"minItems":1,"items":{"type":"string","pattern":"^[^\\u0000-\\u001f\\u007f-\\u009f]+$"}}"#,
        ),
        "Envoy route names (the route Envoy chose: xds.route_name, else route_name). Where the host tells none, the rule never matches. Leave it out to match any route.",
    ),
];

/// requirement
pub static REQUIREMENT: [Spec; 11] = [
    field(
        "provider",
        Ty::Json(r#"{"type":["string","null"]}"#),
        "The name of a provider (a key of providers) whose valid token this requirement needs.",
    ),
    field(
        "any",
        Ty::Json(r##"{"type":["array","null"],"minItems":1,"items":{"$ref":"#/$defs/requirement"}}"##),
        "One of these must pass (if none does, the answer is the failure that got furthest).",
    ),
    field(
        "all",
        Ty::Json(r##"{"type":["array","null"],"minItems":1,"items":{"$ref":"#/$defs/requirement"}}"##),
        "Every one of these must pass.",
    ),
    field(
        "scopes",
        Ty::Json(r##"{"type":["array","null"],"items":{"$ref":"#/$defs/scope"}}"##),
        "Scopes the token must all have (in scope_claim).",
    ),
    field(
        "scopes_any",
        Ty::Json(r##"{"type":["array","null"],"items":{"$ref":"#/$defs/scope"}}"##),
        "Scopes of which the token must have at least one.",
    ),
    field(
        "scope_claim",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/claim_path"}]}"##),
        r#"The claim holding the scopes ("permissions" is common): a space-separated string or an array."#,
    ).preset(&Preset::Text("scope")),
    field(
        "claims",
        Ty::Json(r##"{"type":["array","null"],"items":{"$ref":"#/$defs/claim_check"}}"##),
        "Claim checks, all of which must pass.",
    ),
    field(
        "allow_missing",
        Ty::Json(r#"{"type":["boolean","null"]}"#),
        "Optional authentication: a request without a token passes anonymously; a bad token still fails.",
    ).preset(&Preset::Bool(false)),
    field(
        "audiences",
        Ty::Json(r#"{"type":["array","null"],"minItems":1,"items":{"type":"string","minLength":1}}"#),
        "Replaces the provider's audiences for this requirement (Envoy's provider_and_audiences).",
    ),
    field(
        "acr_values",
        Ty::Json(r##"{"type":["array","null"],"minItems":1,"maxItems":16,"items":{"$ref":"#/$defs/scope"}}"##),
        "Step-up (RFC 9470): the token's acr claim must be one of these, else 401 insufficient_user_authentication with acr_values in the challenge. Values: non-empty printable, no spaces, '\"' or '\\'.",
    ),
    field(
        "max_age_s",
        Ty::Json(r#"{"type":["integer","null"],"minimum":0,"maximum":31536000}"#),
        "Step-up (RFC 9470): the token's auth_time must be at most this many seconds old (with the provider's clock skew), else 401 insufficient_user_authentication with max_age in the challenge.",
    ),
];

/// claim check
pub static CLAIM_CHECK: [Spec; 10] = [
    field(
        "claim",
        Ty::Json(r##"{"$ref":"#/$defs/claim_path"}"##),
        r#"The claim checked: a dotted path ("org.id") or a list of literal names."#,
    )
    .required(),
    field(
        "equals",
        Ty::Json("{}"),
        "The claim must equal this JSON value (not null).",
    ),
    field(
        "includes",
        Ty::Json(r#"{"type":["array","null"],"minItems":1}"#),
        "The claim (an array, or a string of space-separated words) must include every one of these values.",
    ),
    field(
        "includes_any",
        Ty::Json(r#"{"type":["array","null"],"minItems":1}"#),
        "The claim must include at least one of these values.",
    ),
    field(
        "equals_param",
        Ty::Json(r#"{"type":["string","null"]}"#),
        "A name the rule's path_template captures: the claim (a string, or a number) must equal the captured value.",
    ),
    field(
        "includes_param",
        Ty::Json(r#"{"type":["string","null"]}"#),
        "A name the rule's path_template captures: the claim (an array, or space-separated words) must include the captured value.",
    ),
    field(
        "equals_header",
        Ty::Json(r#"{"type":["string","null"],"pattern":"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"}"#),
        "A header the request must carry exactly once, whose value must equal the claim.",
    ),
    field(
        "present",
        Ty::Json(r#"{"type":["boolean","null"]}"#),
        "Whether the claim must be there (not null) or must not.",
    ),
    field(
        "prefix",
        Ty::Json(r#"{"type":["string","null"],"minLength":1}"#),
        "The claim must be a string starting with this.",
    ),
    field(
        "not_includes",
        Ty::Json(r#"{"type":["array","null"],"minItems":1}"#),
        "The claim must be absent, or an array or string with none of these values.",
    ),
];

/// denials
pub static DENIALS: [Spec; 5] = [
    field(
        "format",
        Ty::Enum(&["json", "problem+json", "html", "text"]),
        r#"The body's content type and escaping. "json" (application/json): the Express body {"error", "message"}, or template. "problem+json" (application/problem+json): RFC 9457 {"type": "about:blank", "title": the status's phrase, "status", "detail": the description, "error": the error code}, or template. "html" (text/html; charset=utf-8) and "text" (text/plain; charset=utf-8): template, required."#,
    ).preset(&Preset::Text("json")),
    field(
        "template",
        Ty::Json(r#"{"type":["string","null"],"maxLength":4096}"#),
        "A body of your own, at most 4096 bytes, with up to 16 placeholders: {error} (the error code), {description}, {realm}, {request_id} (the request's x-request-id, at most 128 bytes, else empty), {status}. Values are escaped for format: as a JSON string's characters for json and problem+json (the template must be JSON once filled: placeholders but {status} go between quotes), as HTML entities for html, control characters dropped for text. Any other {name} is refused; other braces are text.",
    ),
    field(
        "headers",
        Ty::Json(r##"{"$ref":"#/$defs/denial_headers"}"##),
        "Extra headers on every denial (name: value).",
    ),
    field(
        "redirect",
        Ty::Json(r#"{"type":["string","null"],"pattern":"^(https?://[!-~]+|/([!-.0-~][!-~]*)?)$","maxLength":4096}"#),
        "For a browser's page request (GET or HEAD whose Accept names text/html) refused as missing, invalid or expired: a 302 to this Location instead (with the challenge, cache-control: no-store and the extra headers, no body); never for gRPC. An absolute http(s) URL or a path (not //), printable ASCII without spaces; {url} in it is the original URL (scheme, authority, path; the query too unless a provider reads tokens from the query), percent-encoded.",
    ),
    field(
        "kinds",
        Ty::Json(r##"{"anyOf":[{"type":"null"},{"$ref":"#/$defs/denial_kinds"}]}"##),
        "Per kind of refusal: what differs from the above.",
    ),
];

/// denial
pub static DENIAL: [Spec; 4] = [
    field(
        "status",
        Ty::Json(r#"{"type":["integer","null"],"enum":[null,400,401,403,404,408,413,415,503]}"#),
        "The status: only access_denied has a choice (403, or 404 to hide that the resource exists); every other kind keeps its own, which may be written (a 401 carries the challenge and makes clients authenticate again, RFC 6750 asks 403 and 400, a 503 with Retry-After is what clients retry).",
    ),
    field(
        "format",
        Ty::Json(r#"{"type":["string","null"],"enum":[null,"json","problem+json","html","text"]}"#),
        "As denials.format, for this kind (default: the top level's). With format or template, the kind's body is its own (format's own body, or template); without, the top level's.",
    ),
    field(
        "template",
        Ty::Json(r#"{"type":["string","null"],"maxLength":4096}"#),
        "As denials.template, for this kind.",
    ),
    field(
        "headers",
        Ty::Json(r##"{"$ref":"#/$defs/denial_headers"}"##),
        "Extra headers for this kind; they replace the top level's of the same name.",
    ),
];

/// denial kinds
pub static DENIAL_KINDS: [Spec; 12] = [
    field(
        "missing",
        Ty::Json(r##"{"$ref":"#/$defs/denial_401"}"##),
        "No token (401).",
    ),
    field(
        "invalid",
        Ty::Json(r##"{"$ref":"#/$defs/denial_401"}"##),
        "A token refused for another reason than its age (401 invalid_token).",
    ),
    field(
        "expired",
        Ty::Json(r##"{"$ref":"#/$defs/denial_401"}"##),
        "An expired token (401 invalid_token).",
    ),
    field(
        "insufficient_scope",
        Ty::Json(
            r##"{"anyOf":[{"type":"null"},{"allOf":[{"$ref":"#/$defs/denial"}],"properties":{"status":{"enum":[null,403]}}}]}"##,
        ),
        "A missing scope or a failed claim check (403).",
    ),
    field(
        "invalid_request",
        Ty::Json(
            r##"{"anyOf":[{"type":"null"},{"allOf":[{"$ref":"#/$defs/denial"}],"properties":{"status":{"enum":[null,400]}}}]}"##,
        ),
        "A malformed request (400 invalid_request).",
    ),
    field(
        "unavailable",
        Ty::Json(
            r##"{"anyOf":[{"type":"null"},{"allOf":[{"$ref":"#/$defs/denial"}],"properties":{"status":{"enum":[null,503]}}}]}"##,
        ),
        "No keys, or the DPoP replay cache full (503, Retry-After).",
    ),
    field(
        "access_denied",
        Ty::Json(
            r##"{"anyOf":[{"type":"null"},{"allOf":[{"$ref":"#/$defs/denial"}],"properties":{"status":{"enum":[null,403,404]}}}]}"##,
        ),
        "No rule matches, or an unsafe path (403, or 404).",
    ),
    field(
        "invalid_dpop_proof",
        Ty::Json(r##"{"$ref":"#/$defs/denial_401"}"##),
        "A bad or replayed DPoP proof (401).",
    ),
    field(
        "body_too_large",
        Ty::Json(
            r##"{"anyOf":[{"type":"null"},{"allOf":[{"$ref":"#/$defs/denial"}],"properties":{"status":{"enum":[null,413]}}}]}"##,
        ),
        "A form body that may carry the token is over max_body_bytes (413).",
    ),
    field(
        "body_timeout",
        Ty::Json(
            r##"{"anyOf":[{"type":"null"},{"allOf":[{"$ref":"#/$defs/denial"}],"properties":{"status":{"enum":[null,408]}}}]}"##,
        ),
        "A form body that may carry the token did not arrive in time (408).",
    ),
    field(
        "encoded_body",
        Ty::Json(
            r##"{"anyOf":[{"type":"null"},{"allOf":[{"$ref":"#/$defs/denial"}],"properties":{"status":{"enum":[null,415]}}}]}"##,
        ),
        "A compressed form body that may carry the token (415).",
    ),
    field(
        "insufficient_user_authentication",
        Ty::Json(r##"{"$ref":"#/$defs/denial_401"}"##),
        "A token whose user did not authenticate as the requirement asks (401, RFC 9470 step-up).",
    ),
];

/// Every object read from a table, with its title, meaning and the constraints across its fields (JSON Schema).
#[cfg(not(target_arch = "wasm32"))]
pub static OBJECTS: &[Object] = &[
    Object {
        def: "",
        title: "jwt_filter configuration",
        doc: r#"The JSON configuration of the jwt_filter proxy-wasm filter (docs/configuration.md; how the fields work together: docs/policies.md). Every object refuses unknown fields and every field has one type. An optional field written as null counts as absent where the filter reads it so (the key sources, require_typ, max_token_age_s, token_sources, forward_payload_header, a token source's names and prefix, match.path/prefix/methods, a rule's requires, the requirement fields other than allow_missing, a claim check's operators); a field with a default refuses null."#,
        fields: &ROOT,
        constraints: Some(
            r#"{
  "$comment": "Generated by make schema from filter/src/config/fields.rs, the table the filter's reader takes its fields, defaults and bounds from; filter/tests/schema.rs fails when this file is stale. What this schema cannot express, and the parser refuses: a requirement naming a provider that does not exist; a header written with identity (forward_payload_header, claim_to_headers) that is also a header some provider reads tokens from; one provider writing one header twice (two claim_to_headers entries, or one and forward_payload_header); the key material of local_jwks (every key must be usable: canonical base64url, a point on its curve, RSA 2048 to 4096 bits and not weak, no kid shared by two keys, no symmetric and asymmetric keys together, an oct secret at least as long as its hash, and each key must fit one of the provider's algorithms); a rule path that is not in the form the filter reads requests in (decoded, no '.' or '..' segments, no '//', no ';', no query, nothing path.rs refuses); integers written with a fraction part (5.0 is an integer to JSON Schema, not to the parser); duplicate object keys, nesting deeper than 32 levels and a configuration larger than 1 MiB (refused by the filter's JSON reader before the schema's rules apply)."
}"#,
        ),
    },
    Object {
        def: "resource_metadata",
        title: "resource metadata",
        doc: "RFC 9728 protected-resource metadata: resource (required) and the other RFC 9728 fields, served as a JSON document at path.",
        fields: &RESOURCE_METADATA,
        constraints: None,
    },
    Object {
        def: "provider",
        title: "provider",
        doc: "An issuer whose tokens are accepted, where its keys come from (or its introspection endpoint), and where its tokens are read from. Exactly one of remote_jwks, local_jwks, discovery, key_sources, introspection.",
        fields: &PROVIDER,
        constraints: Some(
            r##"{
  "allOf": [
    {
      "$comment": "Exactly one key source that is not null: one branch per source, each passing when its source is given.",
      "oneOf": [
        {
          "title": "remote_jwks",
          "required": [
            "remote_jwks"
          ],
          "properties": {
            "remote_jwks": {
              "type": "object"
            }
          }
        },
        {
          "title": "local_jwks",
          "required": [
            "local_jwks"
          ],
          "properties": {
            "local_jwks": {
              "type": [
                "object",
                "string"
              ]
            }
          }
        },
        {
          "title": "discovery",
          "required": [
            "discovery"
          ],
          "properties": {
            "discovery": {
              "type": "object"
            }
          }
        },
        {
          "title": "key_sources",
          "required": [
            "key_sources"
          ],
          "properties": {
            "key_sources": {
              "type": "array"
            }
          }
        },
        {
          "title": "introspection",
          "required": [
            "introspection"
          ],
          "properties": {
            "introspection": {
              "type": "object"
            }
          }
        }
      ]
    },
    {
      "$comment": "HMAC algorithms need their secret in local_jwks.",
      "if": {
        "required": [
          "algorithms"
        ],
        "properties": {
          "algorithms": {
            "type": "array",
            "contains": {
              "$ref": "#/$defs/hmac_algorithm"
            }
          }
        }
      },
      "then": {
        "properties": {
          "remote_jwks": {
            "type": "null"
          },
          "discovery": {
            "type": "null"
          }
        }
      }
    },
    {
      "$comment": "Discovery starts from the issuer: {issuer}/.well-known/openid-configuration must be an http(s) URI (with tenants, the issuer is a template: the parser checks it).",
      "if": {
        "required": [
          "discovery"
        ],
        "properties": {
          "discovery": {
            "type": "object"
          },
          "tenants": {
            "type": "null"
          }
        }
      },
      "then": {
        "properties": {
          "issuer": {
            "$comment": "Exactly one issuer, without placeholders.",
            "anyOf": [
              {
                "$ref": "#/$defs/discovery_issuer"
              },
              {
                "type": "array",
                "maxItems": 1,
                "items": {
                  "$ref": "#/$defs/discovery_issuer"
                }
              }
            ]
          }
        }
      }
    }
  ]
}"##,
        ),
    },
    Object {
        def: "tenants",
        title: "tenants",
        doc: "A provider's tenants: which values of its issuer's {name} placeholder are issuers with their own keys, and how many key sets a worker holds.",
        fields: &TENANTS,
        constraints: None,
    },
    Object {
        def: "key_source",
        title: "key source",
        doc: "One of a provider's key_sources: exactly one of remote_jwks, local_jwks, discovery, each as the provider's own field of that name.",
        fields: &KEY_SOURCE,
        constraints: Some(
            r#"{"$comment":"Exactly one source that is not null (one branch each).","oneOf":[{"title":"remote_jwks","required":["remote_jwks"],"properties":{"remote_jwks":{"type":"object"}}},{"title":"local_jwks","required":["local_jwks"],"properties":{"local_jwks":{"type":["object","string"]}}},{"title":"discovery","required":["discovery"],"properties":{"discovery":{"type":"object"}}}]}"#,
        ),
    },
    Object {
        def: "subject",
        title: "subject pattern",
        doc: r#"Exactly one of {"exact": s}, {"prefix": s}, {"suffix": s}, {"contains": s} (Envoy's StringMatcher without safe_regex: the module has no regex engine), and optionally "ignore_case": true."#,
        fields: &SUBJECT,
        constraints: Some(
            r#"{"$comment":"Exactly one pattern that is not null (one branch each).","oneOf":[{"title":"exact","required":["exact"],"properties":{"exact":{"type":"string"}}},{"title":"prefix","required":["prefix"],"properties":{"prefix":{"type":"string"}}},{"title":"suffix","required":["suffix"],"properties":{"suffix":{"type":"string"}}},{"title":"contains","required":["contains"],"properties":{"contains":{"type":"string"}}}]}"#,
        ),
    },
    Object {
        def: "env",
        title: "secret from the environment",
        doc: r#"{"env": "NAME"} in place of a secret (local_jwks, a fetch header's value, a DPoP nonce secret): the value of that environment variable of the VM, read once at configure time through WASI environ_get. In Envoy, the plugin's vm_config.environment_variables gives them: host_env_keys (copied from Envoy's own environment) or key_values; Istio's WasmPlugin vmConfig.env likewise."#,
        fields: &SECRET,
        constraints: None,
    },
    Object {
        def: "fetch",
        title: "fetch settings",
        doc: "How keys (or the discovery document) are fetched, shared by remote_jwks and discovery.",
        fields: &FETCH,
        constraints: None,
    },
    Object {
        def: "token_source",
        title: "token source",
        doc: r#"Exactly one of {"header": name, "prefix": "Bearer "} (prefix compared case-insensitively; default "Bearer " for authorization, none otherwise), {"query": name}, {"cookie": name}, {"body": field} (a form-encoded request body, RFC 6750 section 2.2)."#,
        fields: &TOKEN_SOURCE,
        constraints: Some(
            r#"{
  "$comment": "Exactly one of header, query, cookie, body that is not null (one branch each); prefix with header only.",
  "oneOf": [
    {
      "title": "header",
      "required": [
        "header"
      ],
      "properties": {
        "header": {
          "type": "string"
        }
      }
    },
    {
      "title": "query",
      "required": [
        "query"
      ],
      "properties": {
        "query": {
          "type": "string"
        },
        "prefix": {
          "type": "null"
        }
      }
    },
    {
      "title": "cookie",
      "required": [
        "cookie"
      ],
      "properties": {
        "cookie": {
          "type": "string"
        },
        "prefix": {
          "type": "null"
        }
      }
    },
    {
      "title": "body",
      "required": [
        "body"
      ],
      "properties": {
        "body": {
          "type": "string"
        },
        "prefix": {
          "type": "null"
        }
      }
    }
  ]
}"#,
        ),
    },
    Object {
        def: "claim_to_header",
        title: "claim to header",
        doc: r#"{"claim": "sub", "header": "x-user-id"}."#,
        fields: &CLAIM_TO_HEADER,
        constraints: None,
    },
    Object {
        def: "provider_stats",
        title: "provider stats",
        doc: r#"{"prefix": "edge"}: per-provider counters named jwt_filter_edge_<provider>_verified and jwt_filter_edge_<provider>_denied_<reason>; {} names them jwt_filter_provider_<provider>_verified and jwt_filter_provider_<provider>_denied_<reason>."#,
        fields: &PROVIDER_STATS,
        constraints: None,
    },
    Object {
        def: "claim_to_property",
        title: "claim to property",
        doc: r#"{"claim": "sub", "property": "jwt_sub"}."#,
        fields: &CLAIM_TO_PROPERTY,
        constraints: None,
    },
    Object {
        def: "dpop",
        title: "dpop",
        doc: "DPoP-bound tokens (RFC 9449): which schemes are accepted, and what a proof may use.",
        fields: &DPOP,
        constraints: None,
    },
    Object {
        def: "nonce",
        title: "nonce",
        doc: "Stateless server nonces: the base64url of a time slot and a truncated HMAC-SHA256 of it under the first secret (docs/security.md, \"Server nonces\").",
        fields: &NONCE,
        constraints: None,
    },
    Object {
        def: "replay_store",
        title: "replay store",
        doc: r#"{"etcd": {...}}: the store every gateway of a fleet shares (docs/security.md, "The fleet-wide replay store")."#,
        fields: &REPLAY_STORE,
        constraints: None,
    },
    Object {
        def: "etcd",
        title: "etcd",
        doc: "etcd's HTTP/JSON gateway: each proof is written once (a transaction that creates its key only if it has no create_revision yet, under a lease that outlives the proof's window); a proof whose key exists is a replay.",
        fields: &ETCD,
        constraints: None,
    },
    Object {
        def: "revocation",
        title: "revocation",
        doc: "A provider's revoked tokens: a list fetched through a cluster, pushed revocations received on a path, or both (docs/revocation.md).",
        fields: &REVOCATION,
        constraints: None,
    },
    Object {
        def: "revocation_list",
        title: "revocation list",
        doc: "Where the revocation list is fetched, how often, and its bounds.",
        fields: &REVOCATION_LIST,
        constraints: None,
    },
    Object {
        def: "revocation_receiver",
        title: "revocation receiver",
        doc: "The path that receives pushed revocations, and how pushed tokens are checked and kept.",
        fields: &REVOCATION_RECEIVER,
        constraints: None,
    },
    Object {
        def: "mtls",
        title: "mtls",
        doc: "mode: allowed (bound tokens need their certificate, unbound ones pass) or required (only tokens bound to the connection's certificate).",
        fields: &MTLS,
        constraints: None,
    },
    Object {
        def: "introspection",
        title: "introspection",
        doc: "RFC 7662 token introspection for opaque tokens: where the endpoint is, how the filter authenticates to it (client_id and client_secret, or bearer, or neither), and how long answers are cached.",
        fields: &INTROSPECTION,
        constraints: Some(
            r##"{
  "$comment": "client_id and client_secret go together; bearer excludes them.",
  "dependentRequired": {
    "client_id": [
      "client_secret"
    ],
    "client_secret": [
      "client_id"
    ]
  },
  "if": {
    "required": [
      "bearer"
    ],
    "properties": {
      "bearer": {
        "type": [
          "string",
          "object"
        ]
      }
    }
  },
  "then": {
    "properties": {
      "client_id": {
        "type": "null"
      },
      "client_secret": {
        "type": "null"
      }
    }
  }
}"##,
        ),
    },
    Object {
        def: "rule",
        title: "rule",
        doc: r#"{"match": {...}, "requires": {...}}; without requires the route is public."#,
        fields: &RULE,
        constraints: None,
    },
    Object {
        def: "match",
        title: "match",
        doc: "Exactly one of path (exact), prefix or path_template, and optional methods, hosts and route; all that are given must hold. Like Envoy's prefix, /api/public also matches /api/publicity.",
        fields: &MATCH,
        constraints: Some(
            r#"{"$comment":"Exactly one of path, prefix, path_template that is not null (one branch each).","oneOf":[{"title":"path","required":["path"],"properties":{"path":{"type":"string"}}},{"title":"prefix","required":["prefix"],"properties":{"prefix":{"type":"string"}}},{"title":"path_template","required":["path_template"],"properties":{"path_template":{"type":"string"}}}]}"#,
        ),
    },
    Object {
        def: "requirement",
        title: "requirement",
        doc: r#"Exactly one of: {"provider": name, ...authorization}; {"any": [requirement, ...]} (one must pass); {"all": [requirement, ...]} (every one must pass). Authorization fields belong to provider requirements only."#,
        fields: &REQUIREMENT,
        constraints: Some(
            r##"{
  "$comment": "Exactly one of provider, any, all that is not null (one branch each); any and all without authorization fields.",
  "oneOf": [
    {
      "title": "provider requirement",
      "required": [
        "provider"
      ],
      "properties": {
        "provider": {
          "type": "string"
        },
        "allow_missing": {
          "type": "boolean"
        }
      }
    },
    {
      "title": "any",
      "required": [
        "any"
      ],
      "properties": {
        "any": {
          "type": "array"
        }
      },
      "allOf": [
        {
          "$ref": "#/$defs/no_authorization"
        }
      ]
    },
    {
      "title": "all",
      "required": [
        "all"
      ],
      "properties": {
        "all": {
          "type": "array"
        }
      },
      "allOf": [
        {
          "$ref": "#/$defs/no_authorization"
        }
      ]
    }
  ]
}"##,
        ),
    },
    Object {
        def: "claim_check",
        title: "claim check",
        doc: r#"{"claim": c, op: v} with exactly one operator: equals, includes (every value), includes_any (at least one), not_includes, present, prefix, or, bound to the request, equals_param, includes_param (a value the rule's path_template captured), equals_header; a string claim counts as its space-separated words."#,
        fields: &CLAIM_CHECK,
        constraints: Some(
            r#"{"$comment":"Exactly one operator that is not null (one branch each).","oneOf":[{"title":"equals","required":["equals"],"properties":{"equals":{"not":{"type":"null"}}}},{"title":"includes","required":["includes"],"properties":{"includes":{"type":"array"}}},{"title":"includes_any","required":["includes_any"],"properties":{"includes_any":{"type":"array"}}},{"title":"not_includes","required":["not_includes"],"properties":{"not_includes":{"type":"array"}}},{"title":"present","required":["present"],"properties":{"present":{"type":"boolean"}}},{"title":"prefix","required":["prefix"],"properties":{"prefix":{"type":"string"}}},{"title":"equals_param","required":["equals_param"],"properties":{"equals_param":{"type":"string"}}},{"title":"includes_param","required":["includes_param"],"properties":{"includes_param":{"type":"string"}}},{"title":"equals_header","required":["equals_header"],"properties":{"equals_header":{"type":"string"}}}]}"#,
        ),
    },
    Object {
        def: "denials",
        title: "denials",
        doc: r#"Denials of your own shape (docs/denials.md). What no configuration changes: the WWW-Authenticate challenge, Retry-After, a 401 or a 503 status, the answer to a gRPC call."#,
        fields: &DENIALS,
        constraints: Some(
            r#"{"$comment":"html and text need a template.","if":{"required":["format"],"properties":{"format":{"enum":["html","text"]}}},"then":{"required":["template"],"properties":{"template":{"type":"string"}}}}"#,
        ),
    },
    Object {
        def: "denial",
        title: "denial",
        doc: "What differs for one kind of refusal: its status (access_denied only), body, headers.",
        fields: &DENIAL,
        constraints: None,
    },
    Object {
        def: "denial_kinds",
        title: "denial kinds",
        doc: "Kinds of refusal, each named as its metric but body_too_large, body_timeout and encoded_body (counted as invalid_request).",
        fields: &DENIAL_KINDS,
        constraints: None,
    },
];

/// The `$defs` that are not objects read from a table: value types shared by several fields, and the key sources' refinements of `fetch`.
#[cfg(not(target_arch = "wasm32"))]
pub static SHARED: &[(&str, &str)] = &[
    (
        "remote_jwks",
        r##"{
  "title": "remote_jwks",
  "description": "The fields of fetch, with uri required; metadata_uri and jwks_cluster belong to discovery.",
  "allOf": [
    {
      "$ref": "#/$defs/fetch"
    }
  ],
  "required": [
    "uri"
  ],
  "properties": {
    "uri": {
      "title": "uri",
      "description": "Required: the JWKS URI, absolute http(s); its path and :authority are used.",
      "$ref": "#/$defs/http_uri"
    },
    "metadata_uri": {
      "description": "Not allowed: it belongs to discovery; remote_jwks fetches its uri.",
      "type": "null"
    },
    "jwks_cluster": {
      "description": "Not allowed: it belongs to discovery; remote_jwks fetches its uri through cluster.",
      "type": "null"
    }
  }
}"##,
    ),
    (
        "discovery",
        r##"{
  "title": "discovery",
  "description": "The fields of remote_jwks without uri: discovery starts from the issuer.",
  "allOf": [
    {
      "$ref": "#/$defs/fetch"
    }
  ],
  "properties": {
    "uri": {
      "description": "Not allowed: discovery starts from the issuer; use remote_jwks for a fixed URI.",
      "type": "null"
    }
  }
}"##,
    ),
    (
        "http_uri",
        r#"{
  "title": "http(s) URI",
  "description": "An absolute http:// or https:// URI: an authority of letters, digits and '-._:[]', then optionally a path of printable ASCII without spaces (no '?' before the path).",
  "type": "string",
  "pattern": "^https?://[A-Za-z0-9._:\\[\\]-]+(/[!-~]*)?$"
}"#,
    ),
    (
        "jwks",
        r##"{
  "title": "JWKS",
  "description": "A JSON Web Key Set (RFC 7517): {\"keys\": [...]}, 1 to 64 keys, every one usable.",
  "type": "object",
  "required": [
    "keys"
  ],
  "properties": {
    "keys": {
      "title": "keys",
      "description": "The keys, 1 to 64; a key that is unusable refuses the configuration (the filter names it and says why).",
      "type": "array",
      "minItems": 1,
      "maxItems": 64,
      "items": {
        "$ref": "#/$defs/jwk"
      }
    }
  }
}"##,
    ),
    (
        "local_jwks",
        r##"{
  "title": "local_jwks",
  "description": "A JWKS object, the same as JSON text, or {\"env\": \"NAME\"} (the JSON text in that environment variable).",
  "anyOf": [
    {
      "$ref": "#/$defs/jwks"
    },
    {
      "type": "string",
      "minLength": 1
    },
    {
      "$ref": "#/$defs/env"
    }
  ]
}"##,
    ),
    (
        "jwk",
        r##"{
  "title": "JWK",
  "description": "A public key (RSA, EC P-256/P-384/P-521/secp256k1, OKP Ed25519) or an HMAC secret (oct). Other members are ignored.",
  "$comment": "The key material itself is checked by the filter only.",
  "type": "object",
  "required": [
    "kty"
  ],
  "properties": {
    "kty": {
      "title": "kty",
      "description": "Key type: RSA (2048 to 4096 bits), EC (crv P-256, P-384, P-521 or secp256k1, with x and y, each exactly the curve's size), OKP (crv Ed25519, with x), oct (an HMAC secret k, at least as long as the hash; local_jwks only).",
      "enum": [
        "RSA",
        "EC",
        "OKP",
        "oct"
      ]
    },
    "kid": {
      "title": "kid",
      "description": "Key id (at most 256 bytes, unique in the set): a token naming it is verified with this key only.",
      "type": "string"
    },
    "use": {
      "title": "use",
      "description": "If present, \"sig\" (or \"jwt-svid\" with a kid, where the provider sets jwt_svid).",
      "enum": [
        "sig",
        "jwt-svid"
      ]
    },
    "key_ops": {
      "title": "key_ops",
      "description": "If present, must include \"verify\".",
      "type": "array",
      "contains": {
        "const": "verify"
      }
    },
    "alg": {
      "title": "alg",
      "description": "If present, the key verifies this algorithm only, and must fit it. ES521, a common misspelling, reads as ES512 (on keys only).",
      "anyOf": [
        {
          "$ref": "#/$defs/algorithm"
        },
        {
          "const": "ES521"
        }
      ]
    }
  }
}"##,
    ),
    (
        "algorithm",
        r##"{
  "title": "algorithm",
  "anyOf": [
    {
      "$ref": "#/$defs/public_key_algorithm"
    },
    {
      "$ref": "#/$defs/hmac_algorithm"
    }
  ]
}"##,
    ),
    (
        "public_key_algorithm",
        r#"{
  "enum": [
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "ES256K",
    "EdDSA"
  ]
}"#,
    ),
    ("hmac_algorithm", r#"{"enum":["HS256","HS384","HS512"]}"#),
    (
        "token",
        r#"{
  "title": "token",
  "description": "An HTTP token (RFC 7230 tchar): letters, digits and !#$%&'*+-.^_`|~.",
  "type": "string",
  "pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
}"#,
    ),
    (
        "identity_header",
        r##"{
  "title": "identity header",
  "description": "A header the filter writes on success: a valid header name, not authorization, cookie, host or another hop-by-hop or framing header (in any spelling: content_type is content-type), nor a header that carries tokens. Removed from every incoming request first, in every spelling an upstream reads as the same name: case, and '_', '.' or any other symbol for '-' (X_User_Id for x-user-id).",
  "allOf": [
    {
      "$ref": "#/$defs/token"
    }
  ],
  "not": {
    "pattern": "^([Aa][Uu][Tt][Hh][Oo][Rr][Ii][Zz][Aa][Tt][Ii][Oo][Nn]|[Cc][Oo][Oo][Kk][Ii][Ee]|[Hh][Oo][Ss][Tt]|[Cc][Oo][Nn][Tt][Ee][Nn][Tt][-!#$%&'*+.^_`|~][Ll][Ee][Nn][Gg][Tt][Hh]|[Cc][Oo][Nn][Tt][Ee][Nn][Tt][-!#$%&'*+.^_`|~][Tt][Yy][Pp][Ee]|[Tt][Rr][Aa][Nn][Ss][Ff][Ee][Rr][-!#$%&'*+.^_`|~][Ee][Nn][Cc][Oo][Dd][Ii][Nn][Gg]|[Cc][Oo][Nn][Nn][Ee][Cc][Tt][Ii][Oo][Nn]|[Tt][Ee]|[Uu][Pp][Gg][Rr][Aa][Dd][Ee]|[Pp][Rr][Oo][Xx][Yy][-!#$%&'*+.^_`|~][Aa][Uu][Tt][Hh][Oo][Rr][Ii][Zz][Aa][Tt][Ii][Oo][Nn])$"
  }
}"##,
    ),
    (
        "claim_path",
        r#"{
  "title": "claim",
  "description": "A dotted path into nested objects (\"org.id\") or a list of literal names, for claims whose names contain dots ([\"https://example.com/roles\"]). No name may be empty.",
  "anyOf": [
    {
      "type": "string",
      "pattern": "^[^.]+(\\.[^.]+)*$"
    },
    {
      "type": "array",
      "minItems": 1,
      "items": {
        "type": "string",
        "minLength": 1
      }
    }
  ]
}"#,
    ),
    (
        "path_template",
        r#"{
  "title": "path template",
  "$comment": "The segments' syntax only; the filter also refuses a name captured twice, more than 16 captures, and literal segments not in canonical form (filter/src/template.rs, path.rs).",
  "type": "string",
  "pattern": "^(/([^/{}*]+|\\{[A-Za-z0-9_]+\\}))*(/(\\*\\*|\\{[A-Za-z0-9_]+=\\*\\*\\}))?$",
  "minLength": 2
}"#,
    ),
    (
        "discovery_issuer",
        r##"{"title":"discovery issuer","allOf":[{"$ref":"#/$defs/http_uri"},{"pattern":"^[^{]*$"}]}"##,
    ),
    (
        "issuer",
        r#"{
  "title": "issuer",
  "description": "An issuer: exact, but for {claim} placeholders (claim names: letters, digits, '_').",
  "type": "string",
  "minLength": 1,
  "pattern": "^([^{}]|\\{[A-Za-z0-9_]+\\})*$"
}"#,
    ),
    (
        "metadata_list",
        r#"{
  "title": "metadata list",
  "type": [
    "array",
    "null"
  ],
  "minItems": 1,
  "items": {
    "type": "string",
    "minLength": 1
  }
}"#,
    ),
    (
        "metadata_string",
        r#"{"title":"metadata string","type":["string","null"],"minLength":1}"#,
    ),
    (
        "rule_path",
        r#"{
  "title": "rule path",
  "$comment": "Only the start is checked here; the filter also requires the path's canonical form (filter/src/path.rs).",
  "type": "string",
  "pattern": "^/([^/][\\s\\S]*)?$"
}"#,
    ),
    (
        "no_authorization",
        r#"{
  "$comment": "'any' and 'all' cannot carry authorization fields: put them on each provider requirement. Every authorization field of a requirement is listed here as null.",
  "properties": {
    "scopes": {
      "type": "null"
    },
    "scopes_any": {
      "type": "null"
    },
    "scope_claim": {
      "type": "null"
    },
    "claims": {
      "type": "null"
    },
    "allow_missing": {
      "type": "null"
    },
    "audiences": {
      "type": "null"
    }
  }
}"#,
    ),
    (
        "property",
        r#"{
  "title": "property",
  "description": "A stream property name: 1 to 64 letters, digits, '_', '-' or '.'.",
  "type": "string",
  "pattern": "^[A-Za-z0-9_.-]{1,64}$"
}"#,
    ),
    (
        "denial_headers",
        r#"{
  "title": "denial headers",
  "description": "Up to 16 headers (name: value): valid names, not one the filter or the host sets on a denial (content-type, content-length, cache-control, www-authenticate, retry-after, location, accept-encoding, grpc-status, grpc-message, hop-by-hop); values printable ASCII (or tab), at most 1024 bytes.",
  "type": ["object", "null"],
  "maxProperties": 16,
  "propertyNames": {"pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", "not": {"pattern": "^([Cc][Oo][Nn][Tt][Ee][Nn][Tt]-[Tt][Yy][Pp][Ee]|[Cc][Oo][Nn][Tt][Ee][Nn][Tt]-[Ll][Ee][Nn][Gg][Tt][Hh]|[Cc][Aa][Cc][Hh][Ee]-[Cc][Oo][Nn][Tt][Rr][Oo][Ll]|[Ww][Ww][Ww]-[Aa][Uu][Tt][Hh][Ee][Nn][Tt][Ii][Cc][Aa][Tt][Ee]|[Rr][Ee][Tt][Rr][Yy]-[Aa][Ff][Tt][Ee][Rr]|[Ll][Oo][Cc][Aa][Tt][Ii][Oo][Nn]|[Aa][Cc][Cc][Ee][Pp][Tt]-[Ee][Nn][Cc][Oo][Dd][Ii][Nn][Gg]|[Gg][Rr][Pp][Cc]-[Ss][Tt][Aa][Tt][Uu][Ss]|[Gg][Rr][Pp][Cc]-[Mm][Ee][Ss][Ss][Aa][Gg][Ee]|[Tt][Rr][Aa][Nn][Ss][Ff][Ee][Rr]-[Ee][Nn][Cc][Oo][Dd][Ii][Nn][Gg]|[Cc][Oo][Nn][Nn][Ee][Cc][Tt][Ii][Oo][Nn]|[Uu][Pp][Gg][Rr][Aa][Dd][Ee]|[Tt][Ee]|[Kk][Ee][Ee][Pp]-[Aa][Ll][Ii][Vv][Ee]|[Tt][Rr][Aa][Ii][Ll][Ee][Rr]|[Pp][Rr][Oo][Xx][Yy]-[Cc][Oo][Nn][Nn][Ee][Cc][Tt][Ii][Oo][Nn])$"}},
  "additionalProperties": {"type": "string", "maxLength": 1024, "pattern": "^[\\t -~]*$"}
}"#,
    ),
    (
        "denial_401",
        r##"{
  "title": "a 401 denial",
  "anyOf": [
    {"type": "null"},
    {"allOf": [{"$ref": "#/$defs/denial"}], "properties": {"status": {"enum": [null, 401]}}}
  ]
}"##,
    ),
    (
        "scope",
        r#"{
  "title": "scope",
  "description": "A non-empty printable token without spaces, '\"' or '\\'.",
  "type": "string",
  "pattern": "^[!#-\\[\\]-~]+$"
}"#,
    ),
];

/// The tables against the reader: what they say of defaults and variants is what it does.
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))] // the tables' native-only parts
mod tests {
    use super::*;
    use crate::config::tests::QUICKSTART;
    use crate::config::{Config, KeySource};
    use crate::policy::dpop::DpopPolicy;
    use crate::policy::extract::TokenSource;
    use serde_json::{Value, json};

    fn parse(edit: impl FnOnce(&mut Value)) -> Result<Config, String> {
        let mut config: Value = serde_json::from_str(QUICKSTART).unwrap();
        edit(&mut config);
        Config::parse(config.to_string().as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn names_are_unique_and_bounds_hold_their_defaults() {
        for object in OBJECTS {
            assert!(!object.doc.is_empty(), "{} has no meaning", object.def);
            for (i, spec) in object.fields.iter().enumerate() {
                assert!(!spec.about.doc.is_empty(), "{} has no meaning", spec.name);
                assert!(
                    object.fields[..i].iter().all(|s| s.name != spec.name),
                    "{}.{} twice",
                    object.def,
                    spec.name
                );
                match (spec.about.ty, *spec.preset) {
                    (Ty::Int, Preset::Int { default, min, max }) => {
                        assert!(min <= default && default <= max, "{}", spec.name)
                    }
                    (Ty::Int, _) => panic!("{}: an integer without bounds", spec.name),
                    (_, Preset::Int { .. }) => panic!("{}: bounds on a non-integer", spec.name),
                    (Ty::Enum(names), Preset::Text(default)) => {
                        assert!(names.contains(&default), "{}", spec.name)
                    }
                    _ => {}
                }
            }
        }
    }

    /// The variants each enum field's reader accepts are the table's.
    #[test]
    fn enum_variants_are_the_readers() {
        let places: [(&[Spec], &str); 3] = [
            (&ROOT, ""),
            (&DPOP, "/providers/auth0/dpop"),
            (&MTLS, "/providers/auth0/mtls"),
        ];
        let mut seen = 0;
        for (table, at) in places {
            for spec in table {
                let Ty::Enum(names) = spec.about.ty else {
                    continue;
                };
                let error = parse(|c| {
                    if let Some(object) = at.strip_prefix("/providers/auth0/") {
                        c["providers"]["auth0"][object] = json!({});
                    }
                    c.pointer_mut(at).unwrap()[spec.name] = json!("nonesuch");
                })
                .unwrap_err();
                let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                assert!(
                    error.ends_with(&format!(
                        "unknown variant `nonesuch`, expected one of {}",
                        quoted.join(", ")
                    )),
                    "{}: {error}",
                    spec.name
                );
                seen += 1;
            }
        }
        assert_eq!(seen, 6);
    }

    /// The defaults the reader computes are the ones the tables show.
    #[test]
    fn shown_defaults_are_the_readers() {
        let config = parse(|_| {}).unwrap();
        let provider = &config.providers[0];
        let shown = |table: &[Spec], name: &str| -> Value {
            let spec = table.iter().find(|s| s.name == name).unwrap();
            serde_json::from_str(spec.about.shown.unwrap()).unwrap()
        };
        assert_eq!(
            shown(&PROVIDER, "token_sources"),
            json!([{"header": "authorization"}])
        );
        assert_eq!(provider.token_sources, [TokenSource::bearer()]);
        let explicit =
            parse(|c| c["providers"]["auth0"]["token_sources"] = shown(&PROVIDER, "token_sources"))
                .unwrap();
        assert_eq!(explicit.providers[0].token_sources, provider.token_sources);
        let algorithms: Vec<&str> = DpopPolicy::algorithms()
            .into_iter()
            .map(|a| a.name())
            .collect();
        assert_eq!(shown(&DPOP, "algorithms"), json!(algorithms));
        assert_eq!(provider.dpop, DpopPolicy::default());
        let empty = parse(|c| c["providers"]["auth0"]["dpop"] = json!({})).unwrap();
        assert_eq!(empty.providers[0].dpop, DpopPolicy::default());
        for object in ["dpop", "mtls"] {
            let given =
                parse(|c| c["providers"]["auth0"][object] = shown(&PROVIDER, object)).unwrap();
            assert_eq!(given.providers[0].dpop, provider.dpop);
            assert_eq!(given.providers[0].mtls, provider.mtls);
        }
        let [KeySource::Remote(fetch)] = provider.keys.as_slice() else {
            panic!("remote_jwks")
        };
        assert_eq!(fetch.max_keys, crate::jose::jwks::MAX_KEYS);
    }
}
