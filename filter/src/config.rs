//! The plugin configuration: JSON in, a compiled `Config` out, or an error naming the JSON
//! path of the first problem (`providers.auth0.audiences: must not be empty`).
//!
//! Everything is checked here, once: unknown fields, wrong types, dangling provider names,
//! empty audiences, unsupported algorithms. A typo must never silently open an endpoint.

use crate::http::authority;
use crate::http::path::{self, PathParameters};
pub use crate::http::spelling::same_upstream_name;
use crate::jose::alg::Algorithm;
use crate::jose::claims::{ClaimRules, Issuers, normalize_typ};
use crate::jose::json;
use crate::jose::jwks::{self, KeySet, Origin};
pub use crate::policy::authz::ProviderId;
use crate::policy::authz::{
    Authorization, ClaimCheck, ClaimPath, ProviderRequirement, Requirement,
};
use crate::policy::binding::MtlsMode;
use crate::policy::dpop::{self, DpopMode, DpopPolicy};
use crate::policy::extract::TokenSource;
use crate::policy::rules::{HostPattern, Matcher, PathMatch, Rule};
use crate::policy::template::Template;
use read::{Field, FromJson, Node};
use serde_json::Value;
use std::fmt;

/// Largest configuration accepted.
const MAX_CONFIG_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct Config {
    pub realm: String,
    pub mode: Mode,
    pub unmatched: Unmatched,
    pub max_token_bytes: usize,
    /// Most bytes of a request body read for a token (`{"body": ...}` sources); a larger
    /// body is refused with 413.
    pub max_body_bytes: usize,
    /// Verified tokens kept per worker (0 turns the cache off).
    pub jwt_cache_size: usize,
    /// Use the host's `verify_signature` where it exists (Envoy); false forces the
    /// in-wasm verifiers.
    pub host_crypto: bool,
    /// Path parameters (`;x`): refused, or stripped before matching.
    pub path_parameters: PathParameters,
    pub cors_preflight: CorsPreflight,
    pub resource_metadata: Option<ResourceMetadata>,
    /// Providers in name order; requirements refer to them by index.
    pub providers: Vec<Provider>,
    pub rules: Vec<Rule>,
    /// Every header the filter writes on success (lower-case); removed from every incoming
    /// request, in every spelling an upstream reads as the same name (`same_upstream_name`),
    /// so that no client can forge them.
    pub identity_headers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub algorithms: Vec<Algorithm>,
    pub claims: ClaimRules,
    pub keys: KeySource,
    pub token_sources: Vec<TokenSource>,
    pub forward: bool,
    pub forward_payload_header: Option<String>,
    pub claim_to_headers: Vec<(ClaimPath, String)>,
    /// Claims copied into stream properties (for Envoy's access log and later filters).
    pub claim_to_properties: Vec<(ClaimPath, String)>,
    /// DPoP-bound tokens (RFC 9449).
    pub dpop: DpopPolicy,
    /// Certificate-bound tokens (RFC 8705).
    pub mtls: MtlsMode,
}

#[derive(Debug, Clone)]
pub enum KeySource {
    Local(KeySet),
    Remote(Fetch),
    /// OIDC discovery: `fetch` addresses `{issuer}/.well-known/openid-configuration`.
    Discovery(Fetch),
}

/// Where and how keys (or the discovery document) are fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub cluster: String,
    pub authority: String,
    /// The JWKS (`remote_jwks`) or the first metadata document to try (`discovery`).
    pub path: String,
    /// Discovery only: the metadata document to try when the first fails (RFC 8414's, on
    /// the same authority).
    pub fallback_path: Option<String>,
    /// Discovery only: the cluster for the `jwks_uri` it finds (`cluster` by default).
    pub jwks_cluster: String,
    /// Extra request headers on every fetch (an API key, a `host` that replaces
    /// `:authority`). Never logged.
    pub headers: Vec<(String, String)>,
    pub timeout_ms: u64,
    pub cache_duration_s: u64,
    pub cooldown_s: u64,
    pub stale_max_s: u64,
    pub max_body_bytes: usize,
    /// Most keys a fetched set may hold (`jwks::MAX_KEYS` by default, at most
    /// `jwks::MAX_KEYS_BOUND`); a larger set is refused whole and the last good one serves.
    pub max_keys: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Enforce,
    /// Decide, log and count, but let every request through.
    Report,
}

/// RFC 9728 protected-resource metadata, served by the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceMetadata {
    /// Where it is served (`GET`, any host).
    pub path: String,
    /// The JSON document.
    pub document: String,
    /// Its URL, for 401 challenges: the resource without a trailing slash, then the path.
    pub url: String,
}

const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// What happens to a CORS preflight (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CorsPreflight {
    /// Like any other request.
    #[default]
    Authenticate,
    /// Goes upstream unchecked (identity headers still stripped), as `jwt_authn`'s
    /// `bypass_cors_preflight`.
    Pass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unmatched {
    #[default]
    Deny,
    Allow,
}

/// A configuration error: the JSON path and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn err<T>(path: impl Into<String>, message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        path: path.into(),
        message: message.into(),
    })
}

// ---- Compilation: each JSON object is read (unknown fields refused) and checked at once. ----

impl Config {
    /// Parses and validates a configuration.
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        if bytes.len() > MAX_CONFIG_BYTES {
            return err(
                ".",
                format!("configuration larger than {MAX_CONFIG_BYTES} bytes"),
            );
        }
        let value = json::parse(bytes).or_else(|e| err(".", e))?;
        compile(&Node::root(&value))
    }

    /// The provider `id` names (ids come from this configuration only).
    pub fn provider(&self, id: ProviderId) -> &Provider {
        &self.providers[id.0]
    }

    /// Adapts the configuration to a VM that verifies every signature in wasm (the host has
    /// no `verify_signature`, or `host_crypto` is false): default DPoP lists lose ES512
    /// (`DpopPolicy::for_wasm_verifier`). Returns the providers that still allow an
    /// algorithm such a VM cannot verify (ES512, for tokens or DPoP proofs), whose tokens
    /// it will refuse, for the adapter to say so in its log.
    pub fn for_wasm_verifier(&mut self) -> Vec<String> {
        for provider in &mut self.providers {
            provider.dpop.for_wasm_verifier();
        }
        self.providers
            .iter()
            .filter(|p| {
                p.algorithms
                    .iter()
                    .chain(&p.dpop.algorithms)
                    .any(|a| !crate::jose::verify::in_wasm(*a))
            })
            .map(|p| p.name.clone())
            .collect()
    }
}

impl FromJson<'_> for Mode {
    fn from_json(node: &Node) -> Result<Self, ConfigError> {
        node.variant(&[("enforce", Mode::Enforce), ("report", Mode::Report)])
    }
}

impl FromJson<'_> for CorsPreflight {
    fn from_json(node: &Node) -> Result<Self, ConfigError> {
        node.variant(&[
            ("authenticate", CorsPreflight::Authenticate),
            ("pass", CorsPreflight::Pass),
        ])
    }
}

impl FromJson<'_> for DpopMode {
    fn from_json(node: &Node) -> Result<Self, ConfigError> {
        node.variant(&[
            ("allowed", DpopMode::Allowed),
            ("required", DpopMode::Required),
            ("disabled", DpopMode::Disabled),
        ])
    }
}

impl FromJson<'_> for MtlsMode {
    fn from_json(node: &Node) -> Result<Self, ConfigError> {
        node.variant(&[
            ("allowed", MtlsMode::Allowed),
            ("required", MtlsMode::Required),
        ])
    }
}

impl FromJson<'_> for Unmatched {
    fn from_json(node: &Node) -> Result<Self, ConfigError> {
        node.variant(&[("deny", Unmatched::Deny), ("allow", Unmatched::Allow)])
    }
}

impl FromJson<'_> for PathParameters {
    fn from_json(node: &Node) -> Result<Self, ConfigError> {
        node.variant(&[
            ("reject", PathParameters::Reject),
            ("strip", PathParameters::Strip),
        ])
    }
}

/// A claim: `"org.id"` (dotted) or `["https://example.com/roles"]` (names as they are).
impl FromJson<'_> for ClaimPath {
    fn from_json(node: &Node) -> Result<Self, ConfigError> {
        let compiled = match node.value {
            Value::String(s) => ClaimPath::dotted(s),
            Value::Array(_) => ClaimPath(Vec::from_json(node)?),
            _ => return node.invalid_type("a string or a sequence of strings"),
        };
        if compiled.0.is_empty() || compiled.0.iter().any(String::is_empty) {
            return node.err("claim names must not be empty");
        }
        Ok(compiled)
    }
}

fn compile(root: &Node) -> Result<Config, ConfigError> {
    let [
        schema,
        realm,
        cors_preflight,
        resource_metadata,
        mode,
        unmatched,
        path_parameters,
        max_token_bytes,
        max_body_bytes,
        jwt_cache_size,
        host_crypto,
        providers,
        rules,
    ] = &root.fields(&[
        "$schema",
        "realm",
        "cors_preflight",
        "resource_metadata",
        "mode",
        "unmatched",
        "path_parameters",
        "max_token_bytes",
        "max_body_bytes",
        "jwt_cache_size",
        "host_crypto",
        "providers",
        "rules",
    ])?;
    // The JSON Schema the file follows, for editors: read only to refuse a non-string.
    let _: Option<String> = schema.get()?;
    let realm_text: String = realm.or("api".into())?;
    if realm_text.is_empty() || !realm_text.bytes().all(|b| is_qdtext(b) && b != b'\\') {
        return err(
            realm.path(),
            "must be non-empty printable ASCII without '\"' or '\\'",
        );
    }
    let mode = mode.or(Mode::default())?;
    let unmatched = unmatched.or(Unmatched::default())?;
    let path_parameters = path_parameters.or(PathParameters::default())?;
    let cors_preflight = cors_preflight.or(CorsPreflight::default())?;
    let resource_metadata = resource_metadata
        .get::<Node>()?
        .map(|node| compile_metadata(&node))
        .transpose()?;
    let max_token_bytes = max_token_bytes.within(8192, 256, 65_536)?;
    let max_body_bytes = max_body_bytes.within(65_536, 1024, 1_048_576)?;
    let cache_size: usize = jwt_cache_size.or(1000)?;
    if cache_size > 100_000 {
        return err(jwt_cache_size.path(), "must be at most 100000");
    }
    let host_crypto = host_crypto.or(true)?;
    // serde_json's map (without its `preserve_order` feature) keeps keys in order: providers
    // come in name order.
    let listed: Node = providers.req()?;
    let raw_providers = listed.map()?;
    if raw_providers.is_empty() {
        return err(providers.path(), "must name at least one provider");
    }
    let names: Vec<&String> = raw_providers.keys().collect();
    let mut providers = Vec::new();
    for (name, value) in raw_providers {
        let node = Node {
            value,
            path: listed.child(name),
        };
        providers.push(compile_provider(name, &node)?);
    }
    let identity_headers = identity_headers(&providers)?;
    let mut compiled_rules = Vec::new();
    for node in rules.req::<Vec<Node>>()? {
        let [r#match, requires] = &node.fields(&["match", "requires"])?;
        let matcher = compile_match(&r#match.req()?)?;
        let captures = match &matcher.path {
            PathMatch::Template(t) => t.names(),
            PathMatch::Exact(_) | PathMatch::Prefix(_) => &[],
        };
        let requires = match requires.get::<Node>()? {
            None => None,
            Some(req) => Some(compile_requirement(&req, &names, captures)?),
        };
        compiled_rules.push(Rule { matcher, requires });
    }
    Ok(Config {
        realm: realm_text,
        mode,
        unmatched,
        max_token_bytes,
        max_body_bytes,
        jwt_cache_size: cache_size,
        host_crypto,
        path_parameters,
        cors_preflight,
        resource_metadata,
        providers,
        rules: compiled_rules,
        identity_headers,
    })
}

fn compile_metadata(node: &Node) -> Result<ResourceMetadata, ConfigError> {
    let [
        path,
        resource,
        jwks_uri,
        resource_name,
        resource_documentation,
        resource_policy_uri,
        resource_tos_uri,
        authorization_servers,
        scopes_supported,
        bearer_methods_supported,
        resource_signing_alg_values_supported,
        authorization_details_types_supported,
        dpop_signing_alg_values_supported,
        tls_client_certificate_bound_access_tokens,
        dpop_bound_access_tokens_required,
    ] = &node.fields(&[
        "path",
        "resource",
        "jwks_uri",
        "resource_name",
        "resource_documentation",
        "resource_policy_uri",
        "resource_tos_uri",
        "authorization_servers",
        "scopes_supported",
        "bearer_methods_supported",
        "resource_signing_alg_values_supported",
        "authorization_details_types_supported",
        "dpop_signing_alg_values_supported",
        "tls_client_certificate_bound_access_tokens",
        "dpop_bound_access_tokens_required",
    ])?;
    // All but `path` are RFC 9728's, copied into the document as given.
    let mut document = serde_json::Map::new();
    let strings = [
        resource,
        jwks_uri,
        resource_name,
        resource_documentation,
        resource_policy_uri,
        resource_tos_uri,
    ];
    for field in strings {
        if let Some(value) = field.get::<String>()? {
            if value.is_empty() {
                return err(field.path(), "must not be empty");
            }
            document.insert(field.name.into(), Value::String(value));
        }
    }
    let lists = [
        authorization_servers,
        scopes_supported,
        bearer_methods_supported,
        resource_signing_alg_values_supported,
        authorization_details_types_supported,
        dpop_signing_alg_values_supported,
    ];
    for field in lists {
        if let Some(list) = field.get::<Vec<String>>()? {
            if list.is_empty() || list.iter().any(String::is_empty) {
                return err(
                    field.path(),
                    "must be a non-empty list of non-empty strings",
                );
            }
            document.insert(field.name.into(), list.into());
        }
    }
    let flags = [
        tls_client_certificate_bound_access_tokens,
        dpop_bound_access_tokens_required,
    ];
    for field in flags {
        if let Some(flag) = field.get::<bool>()? {
            document.insert(field.name.into(), Value::Bool(flag));
        }
    }
    let url: String = resource.req()?;
    let quotable = url.bytes().all(|b| is_qdtext(b) && b != b'\\');
    // Its authority is read as requests' are (`authority::read`).
    let readable = split_uri(&url).is_some_and(|(a, _)| authority::read(a).is_ok());
    if !readable || url.contains(['?', '#']) || !quotable {
        return err(
            resource.path(),
            "must be an http(s) URL without query or fragment",
        );
    }
    let served = path.or(METADATA_PATH.to_string())?;
    canonical_path(&served, path.path())?;
    Ok(ResourceMetadata {
        url: format!("{}{served}", url.trim_end_matches('/')),
        path: served,
        document: Value::Object(document).to_string(),
    })
}

fn compile_provider(name: &str, node: &Node) -> Result<Provider, ConfigError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        return node.err("provider names use letters, digits, '-' and '_' only");
    }
    let [
        issuer,
        audiences,
        remote_jwks,
        local_jwks,
        discovery,
        algorithms,
        clock_skew_s,
        max_token_age_s,
        require_typ,
        token_sources,
        forward,
        forward_payload_header,
        claim_to_headers,
        claim_to_properties,
        dpop,
        mtls,
    ] = &node.fields(&[
        "issuer",
        "audiences",
        "remote_jwks",
        "local_jwks",
        "discovery",
        "algorithms",
        "clock_skew_s",
        "max_token_age_s",
        "require_typ",
        "token_sources",
        "forward",
        "forward_payload_header",
        "claim_to_headers",
        "claim_to_properties",
        "dpop",
        "mtls",
    ])?;
    let issuers = compile_issuers(issuer)?;
    let audiences = audience_list(audiences.req()?, &audiences.path())?;
    let algorithms = compile_algorithms(
        &algorithms.or(vec!["RS256".to_string()])?,
        &algorithms.path(),
    )?;
    let keys = compile_keys(
        node,
        issuer,
        [remote_jwks, local_jwks, discovery],
        &issuers.0,
        &algorithms,
    )?;
    let skew = clock_skew_s.or(5)?;
    if skew > 300 {
        return err(clock_skew_s.path(), "must be at most 300");
    }
    let require_typ = match require_typ.get::<String>()? {
        Some(t) if t.is_empty() => return err(require_typ.path(), "must not be empty"),
        t => t.as_deref().map(normalize_typ),
    };
    let token_sources = match token_sources.get::<Vec<Node>>()? {
        None => vec![TokenSource::bearer()],
        Some(list) if list.is_empty() => {
            return err(token_sources.path(), "must not be empty");
        }
        Some(list) => list.iter().map(compile_source).collect::<Result<_, _>>()?,
    };
    let forward_payload_header = match forward_payload_header.get::<String>()? {
        None => None,
        Some(h) => Some(identity_header(&h, &forward_payload_header.path())?),
    };
    let mut headers: Vec<(ClaimPath, String)> = Vec::new();
    for node in claim_to_headers.or(Vec::<Node>::new())? {
        let [claim, header] = &node.fields(&["claim", "header"])?;
        let name = identity_header(&header.req::<String>()?, &header.path())?;
        // Two values for one header: which one a later filter reads would depend on it.
        // Two spellings an upstream folds into one name (`x-user`, `x_user`) are one header.
        let earlier = forward_payload_header
            .iter()
            .chain(headers.iter().map(|(_, h)| h))
            .find(|h| same_upstream_name(h, &name));
        match earlier {
            Some(h) if *h == name => {
                return err(header.path(), format!("'{name}' is written twice"));
            }
            Some(h) => {
                return err(
                    header.path(),
                    format!(
                        "'{name}' is written twice (as '{h}': upstreams read both as one name)"
                    ),
                );
            }
            None => {}
        }
        headers.push((claim.req()?, name));
    }
    let mut properties = Vec::new();
    for node in claim_to_properties.or(Vec::<Node>::new())? {
        let [claim, property] = &node.fields(&["claim", "property"])?;
        let name: String = property.req()?;
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if !valid {
            return err(
                property.path(),
                "must be 1 to 64 letters, digits, '_', '-' or '.'",
            );
        }
        properties.push((claim.req()?, name));
    }
    Ok(Provider {
        name: name.to_string(),
        algorithms,
        claims: ClaimRules {
            issuer: issuers,
            audiences,
            clock_skew_s: skew,
            max_token_age_s: max_token_age_s.get()?,
            require_typ,
        },
        keys,
        token_sources,
        forward: forward.or(false)?,
        forward_payload_header,
        claim_to_headers: headers,
        claim_to_properties: properties,
        dpop: match dpop.get::<Node>()? {
            None => DpopPolicy::default(),
            Some(node) => compile_dpop(&node)?,
        },
        mtls: match mtls.get::<Node>()? {
            None => MtlsMode::default(),
            Some(node) => {
                let [mode] = &node.fields(&["mode"])?;
                mode.req()?
            }
        },
    })
}

fn compile_dpop(node: &Node) -> Result<DpopPolicy, ConfigError> {
    let [mode, algorithms, iat_offset_s, iat_leeway_s, origin] = &node.fields(&[
        "mode",
        "algorithms",
        "iat_offset_s",
        "iat_leeway_s",
        "origin",
    ])?;
    let defaults = DpopPolicy::default();
    let default_algorithms = !algorithms.has();
    let algorithms = match algorithms.get::<Vec<String>>()? {
        None => defaults.algorithms,
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
            match dpop::normalize_uri(&given).filter(|_| bare) {
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
            mode.or(defaults.mode)?,
            algorithms,
            iat_offset_s.within(defaults.iat_offset_s, 1, 3600)?,
            iat_leeway_s.within(defaults.iat_leeway_s, 0, 300)?,
            origin,
        )
    })
}

/// A list of audiences: not empty, and no empty one.
fn audience_list(audiences: Vec<String>, path: &str) -> Result<Vec<String>, ConfigError> {
    if audiences.is_empty() {
        return err(path, "must not be empty");
    }
    if let Some(i) = audiences.iter().position(String::is_empty) {
        return err(format!("{path}[{i}]"), "must not be empty");
    }
    Ok(audiences)
}

fn compile_algorithms(names: &[String], path: &str) -> Result<Vec<Algorithm>, ConfigError> {
    if names.is_empty() {
        return err(path, "must not be empty");
    }
    let mut algorithms = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if name.eq_ignore_ascii_case("none") {
            return err(format!("{path}[{i}]"), "'none' is never accepted");
        }
        let alg = Algorithm::parse(name).map_or_else(
            || {
                let supported = Algorithm::ALL.map(Algorithm::name).join(" ");
                err(
                    format!("{path}[{i}]"),
                    format!("unsupported algorithm '{name}' (supported: {supported})"),
                )
            },
            Ok,
        )?;
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    let hmac = algorithms.iter().filter(|a| a.is_hmac()).count();
    if hmac != 0 && hmac != algorithms.len() {
        return err(
            path,
            "HMAC and public-key algorithms cannot be mixed in one provider",
        );
    }
    Ok(algorithms)
}

/// `issuer`: one issuer or a list, each an exact URL but for `{claim}` placeholders.
fn compile_issuers(issuer: &Field) -> Result<Issuers, ConfigError> {
    let node: Node = issuer.req()?;
    let list: Vec<String> = match node.value {
        Value::String(s) => vec![s.clone()],
        Value::Array(_) => Vec::from_json(&node)?,
        _ => return node.invalid_type("a string or a sequence of strings"),
    };
    if list.is_empty() {
        return node.err("must not be empty");
    }
    for (i, issuer) in list.iter().enumerate() {
        let at = || match node.value {
            Value::String(_) => node.path.clone(),
            _ => format!("{}[{i}]", node.path),
        };
        if issuer.is_empty() {
            return err(at(), "must not be empty");
        }
        if let Some(why) = placeholder_problem(issuer) {
            return err(at(), why);
        }
    }
    Ok(Issuers(list))
}

/// What is wrong with the `{claim}` placeholders of an issuer, if anything.
fn placeholder_problem(issuer: &str) -> Option<&'static str> {
    let mut rest = issuer;
    while let Some((literal, after)) = rest.split_once('{') {
        if literal.contains('}') {
            return Some("has a '}' without '{'");
        }
        let Some((name, next)) = after.split_once('}') else {
            return Some("has a '{' without '}'");
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Some("placeholders are claim names such as {tid}");
        }
        rest = next;
    }
    rest.contains('}').then_some("has a '}' without '{'")
}

/// The keys from exactly one of `remote_jwks`, `local_jwks` and `discovery`.
fn compile_keys(
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

/// `remote_jwks`, or `discovery` (given the provider's `issuer` field and its issuers): they
/// share their fetch settings, and each refuses the other's own fields with a hint.
fn compile_fetch(
    node: &Node,
    discovery: Option<(&Field, &[String])>,
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
    ] = &node.fields(&[
        "cluster",
        "uri",
        "timeout_ms",
        "cache_duration_s",
        "cooldown_s",
        "stale_max_s",
        "max_body_bytes",
        "max_keys",
        "headers",
        "metadata_uri",
        "jwks_cluster",
    ])?;
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
        Some((issuer, issuers)) => {
            let [literal] = issuers else {
                return err(issuer.path(), "discovery needs exactly one issuer");
            };
            if literal.contains('{') {
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
            let Value::String(value) = value else {
                return err(at, "must be a string");
            };
            if !value
                .bytes()
                .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
            {
                return err(at, "must be printable ASCII");
            }
            extra_headers.push((name, value.clone()));
        }
    }
    let mut fetch = Fetch {
        jwks_cluster: cluster_name.clone(),
        cluster: cluster_name,
        authority,
        path,
        fallback_path,
        headers: extra_headers,
        timeout_ms: timeout_ms.within(5000, 1, 60_000)?,
        cache_duration_s: cache_duration_s.within(600, 1, 7 * 86_400)?,
        cooldown_s: cooldown_s.within(30, 0, 3_600)?,
        stale_max_s: stale_max_s.within(86_400, 0, 7 * 86_400)?,
        max_body_bytes: max_body_bytes.within(1 << 20, 1_024, 16 << 20)?,
        max_keys: max_keys.within(jwks::MAX_KEYS, 1, jwks::MAX_KEYS_BOUND)?,
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

/// Headers a fetch's `headers` may not set: the call's own, and framing.
const RESERVED_FETCH_HEADERS: [&str; 7] = [
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
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], &rest[i..]),
        Some(_) => return None,
        None => (rest, "/"),
    };
    let valid = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
        && path.bytes().all(|b| b.is_ascii_graphic());
    valid.then_some((authority, path))
}

fn compile_source(node: &Node) -> Result<TokenSource, ConfigError> {
    let [header, prefix, query, cookie, body] =
        &node.fields(&["header", "prefix", "query", "cookie", "body"])?;
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

/// A header the filter writes: a lower-case token that no client or proxy relies on.
fn identity_header(name: &str, path: &str) -> Result<String, ConfigError> {
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
/// `same_upstream_name`).
fn identity_headers(providers: &[Provider]) -> Result<Vec<String>, ConfigError> {
    let mut headers: Vec<String> = Vec::new();
    for p in providers {
        let written = p
            .forward_payload_header
            .iter()
            .chain(p.claim_to_headers.iter().map(|(_, h)| h));
        for h in written {
            let carries_token = providers.iter().flat_map(|q| &q.token_sources).any(
                |s| matches!(s, TokenSource::Header { name, .. } if same_upstream_name(name, h)),
            );
            if carries_token {
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
    Ok(headers)
}

fn compile_match(node: &Node) -> Result<Matcher, ConfigError> {
    let [path, prefix, path_template, methods, hosts, route] = &node.fields(&[
        "path",
        "prefix",
        "path_template",
        "methods",
        "hosts",
        "route",
    ])?;
    let chosen = (
        path.get::<String>()?,
        prefix.get::<String>()?,
        path_template.get::<String>()?,
    );
    let (matched, field, written) = match chosen {
        (Some(p), None, None) => (PathMatch::Exact(p.clone()), path, p),
        (None, Some(p), None) => (PathMatch::Prefix(p.clone()), prefix, p),
        (None, None, Some(t)) => {
            let template =
                Template::parse(&t).or_else(|e| err(path_template.path(), e.message()))?;
            let sample = template.sample();
            (PathMatch::Template(template), path_template, sample)
        }
        _ => return node.exactly_one(&[path, prefix, path_template]),
    };
    canonical_path(&written, field.path())?;
    let method_names = non_empty_list(methods, "match any method")?;
    if let Some(i) = method_names
        .iter()
        .position(|x| x.is_empty() || !x.bytes().all(|b| b.is_ascii_uppercase()))
    {
        return err(
            format!("{}[{i}]", methods.path()),
            "methods are upper-case names such as GET",
        );
    }
    let host_patterns = non_empty_list(hosts, "match any host")?
        .iter()
        .enumerate()
        .map(|(i, h)| {
            host_pattern(h).ok_or_else(|| ConfigError {
                path: format!("{}[{i}]", hosts.path()),
                message: "must be a host name such as api.example.com or *.example.com, with an optional :port".into(),
            })
        })
        .collect::<Result<_, _>>()?;
    let routes = non_empty_list(route, "match any route")?;
    if let Some(i) = routes
        .iter()
        .position(|r| r.is_empty() || r.chars().any(char::is_control))
    {
        return err(
            format!("{}[{i}]", route.path()),
            "must be a non-empty route name",
        );
    }
    Ok(Matcher {
        path: matched,
        methods: method_names,
        hosts: host_patterns,
        routes,
    })
}

/// Paths in the configuration are written as the filter reads requests, without
/// parameters (`at` names the field).
fn canonical_path(written: &str, at: String) -> Result<(), ConfigError> {
    match path::read(written, PathParameters::Reject) {
        Ok(readings) if readings.canonical.as_str() == written => Ok(()),
        Ok(readings) => err(
            at,
            format!(
                "is not normalised (requests would be matched as '{}')",
                readings.canonical.as_str()
            ),
        ),
        Err(e) => err(at, format!("is not a safe path: {}", e.message())),
    }
}

/// A list of strings that, when given, must not be empty (`without` says what leaving it
/// out means).
fn non_empty_list(field: &Field, without: &str) -> Result<Vec<String>, ConfigError> {
    match field.get::<Vec<String>>()? {
        Some(list) if list.is_empty() => err(
            field.path(),
            format!("must not be empty (leave it out to {without})"),
        ),
        list => Ok(list.unwrap_or_default()),
    }
}

/// `api.example.com`, `*.example.com` or either with `:port`; names are lower-cased.
fn host_pattern(text: &str) -> Option<HostPattern> {
    let lower = text.to_ascii_lowercase();
    let (name, port) = match lower.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (lower.as_str(), None),
    };
    // A port as a request's is read (`authority::port_number`): 1 to 65535.
    let port = match port {
        Some(digits) if digits.len() <= 5 => Some(authority::port_number(digits)?),
        Some(_) => return None,
        None => None,
    };
    let (wildcard, labels) = match name.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    let label_ok = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if labels.len() > 253 || !labels.split('.').all(label_ok) {
        return None;
    }
    Some(HostPattern {
        name: if wildcard {
            format!(".{labels}")
        } else {
            labels.to_string()
        },
        wildcard,
        port,
    })
}

fn compile_requirement(
    node: &Node,
    names: &[&String],
    captures: &[String],
) -> Result<Requirement, ConfigError> {
    // The first three choose the kind of requirement; the rest, the authorization, belong
    // to a provider requirement only.
    let [provider, any, all, authorization @ ..] = &node.fields(&[
        "provider",
        "any",
        "all",
        "scopes",
        "scopes_any",
        "scope_claim",
        "claims",
        "allow_missing",
        "audiences",
    ])?;
    let has_authz = authorization.iter().any(Field::has);
    let [
        scopes,
        scopes_any,
        scope_claim,
        claims,
        allow_missing,
        audiences,
    ] = authorization;
    let group = |list: Vec<Node>, kind: &Field| -> Result<Vec<Requirement>, ConfigError> {
        if has_authz {
            return node.err(format!(
                "'{}' cannot carry authorization fields; put them on each provider requirement",
                kind.name
            ));
        }
        if list.is_empty() {
            return err(kind.path(), "must not be empty");
        }
        list.iter()
            .map(|r| compile_requirement(r, names, captures))
            .collect()
    };
    let named: Option<String> = provider.get()?;
    match (named, any.get()?, all.get()?) {
        (Some(name), None, None) => {
            let Some(index) = names.iter().position(|n| **n == name) else {
                return err(provider.path(), format!("unknown provider '{name}'"));
            };
            Ok(Requirement::Provider(ProviderRequirement {
                provider: ProviderId(index),
                allow_missing: allow_missing.or(false)?,
                audiences: audiences
                    .get::<Vec<String>>()?
                    .map(|list| audience_list(list, &audiences.path()))
                    .transpose()?,
                authorization: compile_authorization(
                    [scopes, scopes_any, scope_claim, claims],
                    captures,
                )?,
            }))
        }
        (None, Some(list), None) => Ok(Requirement::Any(group(list, any)?)),
        (None, None, Some(list)) => Ok(Requirement::All(group(list, all)?)),
        _ => node.exactly_one(&[provider, any, all]),
    }
}

fn compile_authorization(
    [scopes, scopes_any, scope_claim, claims]: [&Field; 4],
    captures: &[String],
) -> Result<Authorization, ConfigError> {
    let scope_list = |field: &Field| -> Result<Vec<String>, ConfigError> {
        let list: Vec<String> = field.get()?.unwrap_or_default();
        if let Some(i) = list.iter().position(|s| {
            s.is_empty() || !s.bytes().all(|b| is_qdtext(b) && b != b' ' && b != b'\\')
        }) {
            return err(
                format!("{}[{i}]", field.path()),
                "a scope is a non-empty printable token without spaces, '\"' or '\\'",
            );
        }
        Ok(list)
    };
    let scope_claim = scope_claim
        .get()?
        .unwrap_or_else(|| ClaimPath::dotted("scope"));
    let claims = claims
        .get::<Vec<Node>>()?
        .unwrap_or_default()
        .iter()
        .map(|node| compile_claim_check(node, captures))
        .collect::<Result<_, _>>()?;
    Ok(Authorization {
        scope_claim,
        scopes: scope_list(scopes)?,
        scopes_any: scope_list(scopes_any)?,
        claims,
    })
}

/// A claim check: the claim, and exactly one of the rest.
fn compile_claim_check(node: &Node, captures: &[String]) -> Result<ClaimCheck, ConfigError> {
    let [claim, checks @ ..] = &node.fields(&[
        "claim",
        "equals",
        "includes",
        "includes_any",
        "equals_param",
        "includes_param",
        "equals_header",
        "present",
        "prefix",
        "not_includes",
    ])?;
    let claim: ClaimPath = claim.req()?;
    let given: Vec<&Field> = checks.iter().filter(|f| f.has()).collect();
    let [check] = given[..] else {
        return node.exactly_one(&checks.each_ref());
    };
    let [
        equals,
        includes,
        includes_any,
        equals_param,
        includes_param,
        equals_header,
        present,
        prefix,
        not_includes,
    ] = checks;
    let at = check.path();
    let non_empty = |list: Vec<Value>| -> Result<Vec<Value>, ConfigError> {
        match list.is_empty() {
            true => err(&at, "must not be empty"),
            false => Ok(list),
        }
    };
    let capture = |field: &Field| -> Result<usize, ConfigError> {
        let name: String = field.req()?;
        captures.iter().position(|n| *n == name).map_or_else(
            || {
                err(
                    &at,
                    format!("'{name}' is not captured by this rule's path_template"),
                )
            },
            Ok,
        )
    };
    // Exactly one is given: the last is the one left.
    Ok(if equals.has() {
        ClaimCheck::Equals(claim, equals.req()?)
    } else if includes.has() {
        ClaimCheck::Includes(claim, non_empty(includes.req()?)?)
    } else if includes_any.has() {
        ClaimCheck::IncludesAny(claim, non_empty(includes_any.req()?)?)
    } else if not_includes.has() {
        ClaimCheck::NotIncludes(claim, non_empty(not_includes.req()?)?)
    } else if equals_param.has() {
        ClaimCheck::EqualsParam(claim, capture(equals_param)?)
    } else if includes_param.has() {
        ClaimCheck::IncludesParam(claim, capture(includes_param)?)
    } else if equals_header.has() {
        let name: String = equals_header.req()?;
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return err(at, "must be a header name");
        }
        ClaimCheck::EqualsHeader(claim, name.to_ascii_lowercase())
    } else if present.has() {
        ClaimCheck::Present(claim, present.req()?)
    } else {
        let text: String = prefix.req()?;
        if text.is_empty() {
            return err(at, "must not be empty");
        }
        ClaimCheck::Prefix(claim, text)
    })
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Printable ASCII other than `"`: safe inside a quoted-string.
fn is_qdtext(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'"'
}

mod read;
#[cfg(test)]
mod tests;
