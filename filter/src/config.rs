//! The plugin configuration: JSON in, a compiled `Config` out, or an error naming the JSON
//! path of the first problem (`providers.auth0.audiences: must not be empty`).
//!
//! Everything is checked here, once: unknown fields, wrong types, dangling provider names,
//! empty audiences, unsupported algorithms. A typo must never silently open an endpoint.

use crate::authz::{Authorization, ClaimCheck, ClaimPath, ProviderRequirement, Requirement};
use crate::claims::{ClaimRules, normalize_typ};
use crate::extract::TokenSource;
use crate::json;
use crate::jwks::{KeySet, Origin};
use crate::rules::{Matcher, PathMatch, Rule, normalize};
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// Largest configuration accepted.
const MAX_CONFIG_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct Config {
    pub realm: String,
    pub mode: Mode,
    pub unmatched: Unmatched,
    pub max_token_bytes: usize,
    /// Verified tokens kept per worker (0 turns the cache off).
    pub jwt_cache_size: usize,
    /// Use the host's `verify_signature` where it exists (Envoy); false forces the
    /// in-wasm verifiers.
    pub host_crypto: bool,
    /// Providers in name order; requirements refer to them by index.
    pub providers: Vec<Provider>,
    pub rules: Vec<Rule>,
    /// Every header the filter writes on success; removed from every incoming request so
    /// that no client can forge them.
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
    pub path: String,
    pub timeout_ms: u64,
    pub cache_duration_s: u64,
    pub cooldown_s: u64,
    pub stale_max_s: u64,
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    /// Decide, log and count, but let every request through.
    Report,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
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

// ---- The JSON shape. Every struct refuses unknown fields. ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_realm")]
    realm: String,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    unmatched: Unmatched,
    #[serde(default = "default_max_token_bytes")]
    max_token_bytes: usize,
    #[serde(default = "default_jwt_cache_size")]
    jwt_cache_size: usize,
    #[serde(default = "default_true")]
    host_crypto: bool,
    providers: BTreeMap<String, RawProvider>,
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    issuer: String,
    audiences: Vec<String>,
    remote_jwks: Option<RawFetch>,
    local_jwks: Option<Value>,
    discovery: Option<RawFetch>,
    #[serde(default = "default_algorithms")]
    algorithms: Vec<String>,
    #[serde(default = "default_clock_skew")]
    clock_skew_s: u64,
    max_token_age_s: Option<u64>,
    require_typ: Option<String>,
    token_sources: Option<Vec<RawSource>>,
    #[serde(default)]
    forward: bool,
    forward_payload_header: Option<String>,
    #[serde(default)]
    claim_to_headers: Vec<RawClaimHeader>,
}

/// `remote_jwks` (with `uri`) and `discovery` (without) share their fetch settings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFetch {
    cluster: String,
    uri: Option<String>,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_cache_duration")]
    cache_duration_s: u64,
    #[serde(default = "default_cooldown")]
    cooldown_s: u64,
    #[serde(default = "default_stale_max")]
    stale_max_s: u64,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    header: Option<String>,
    prefix: Option<String>,
    query: Option<String>,
    cookie: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaimHeader {
    claim: RawClaimPath,
    header: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawClaimPath {
    Dotted(String),
    Names(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match")]
    matcher: RawMatch,
    requires: Option<RawRequirement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    path: Option<String>,
    prefix: Option<String>,
    methods: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequirement {
    provider: Option<String>,
    any: Option<Vec<RawRequirement>>,
    all: Option<Vec<RawRequirement>>,
    scopes: Option<Vec<String>>,
    scopes_any: Option<Vec<String>>,
    scope_claim: Option<RawClaimPath>,
    claims: Option<Vec<RawClaimCheck>>,
    allow_missing: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaimCheck {
    claim: RawClaimPath,
    equals: Option<Value>,
    includes: Option<Vec<Value>>,
    includes_any: Option<Vec<Value>>,
}

fn default_realm() -> String {
    "api".into()
}
fn default_max_token_bytes() -> usize {
    8192
}
fn default_jwt_cache_size() -> usize {
    1000
}
fn default_true() -> bool {
    true
}
fn default_algorithms() -> Vec<String> {
    vec!["RS256".into()]
}
fn default_clock_skew() -> u64 {
    5
}
fn default_timeout_ms() -> u64 {
    5000
}
fn default_cache_duration() -> u64 {
    600
}
fn default_cooldown() -> u64 {
    30
}
fn default_stale_max() -> u64 {
    86_400
}
fn default_max_body() -> usize {
    1 << 20
}

// ---- Compilation ----

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
        let raw: RawConfig = serde_path_to_error::deserialize(value).or_else(|e| {
            let path = e.path().to_string();
            err(path, e.into_inner().to_string())
        })?;
        compile(raw)
    }

    pub fn provider_index(&self, name: &str) -> Option<usize> {
        self.providers.iter().position(|p| p.name == name)
    }
}

fn compile(raw: RawConfig) -> Result<Config, ConfigError> {
    if raw.realm.is_empty() || !raw.realm.bytes().all(|b| is_qdtext(b) && b != b'\\') {
        return err(
            "realm",
            "must be non-empty printable ASCII without '\"' or '\\'",
        );
    }
    if !(256..=65_536).contains(&raw.max_token_bytes) {
        return err("max_token_bytes", "must be between 256 and 65536");
    }
    if raw.jwt_cache_size > 100_000 {
        return err("jwt_cache_size", "must be at most 100000");
    }
    if raw.providers.is_empty() {
        return err("providers", "must name at least one provider");
    }
    let names: Vec<&String> = raw.providers.keys().collect();
    let mut providers = Vec::new();
    for (name, p) in &raw.providers {
        providers.push(compile_provider(name, p, &format!("providers.{name}"))?);
    }
    let identity_headers = identity_headers(&providers)?;
    let mut rules = Vec::new();
    for (i, r) in raw.rules.iter().enumerate() {
        let path = format!("rules[{i}]");
        let requires = match &r.requires {
            None => None,
            Some(req) => Some(compile_requirement(
                req,
                &names,
                &format!("{path}.requires"),
            )?),
        };
        rules.push(Rule {
            matcher: compile_match(&r.matcher, &format!("{path}.match"))?,
            requires,
        });
    }
    Ok(Config {
        realm: raw.realm,
        mode: raw.mode,
        unmatched: raw.unmatched,
        max_token_bytes: raw.max_token_bytes,
        jwt_cache_size: raw.jwt_cache_size,
        host_crypto: raw.host_crypto,
        providers,
        rules,
        identity_headers,
    })
}

fn compile_provider(name: &str, p: &RawProvider, path: &str) -> Result<Provider, ConfigError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        return err(path, "provider names use letters, digits, '-' and '_' only");
    }
    if p.issuer.is_empty() {
        return err(format!("{path}.issuer"), "must not be empty");
    }
    if p.audiences.is_empty() {
        return err(format!("{path}.audiences"), "must not be empty");
    }
    if let Some(i) = p.audiences.iter().position(String::is_empty) {
        return err(format!("{path}.audiences[{i}]"), "must not be empty");
    }
    let algorithms = compile_algorithms(&p.algorithms, &format!("{path}.algorithms"))?;
    let keys = compile_keys(p, &algorithms, path)?;
    if p.clock_skew_s > 300 {
        return err(format!("{path}.clock_skew_s"), "must be at most 300");
    }
    let require_typ = match &p.require_typ {
        Some(t) if t.is_empty() => return err(format!("{path}.require_typ"), "must not be empty"),
        t => t.as_deref().map(normalize_typ),
    };
    let token_sources = match &p.token_sources {
        None => vec![TokenSource::bearer()],
        Some(list) if list.is_empty() => {
            return err(format!("{path}.token_sources"), "must not be empty");
        }
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, s)| compile_source(s, &format!("{path}.token_sources[{i}]")))
            .collect::<Result<_, _>>()?,
    };
    let forward_payload_header = match &p.forward_payload_header {
        None => None,
        Some(h) => Some(identity_header(
            h,
            &format!("{path}.forward_payload_header"),
        )?),
    };
    let mut claim_to_headers = Vec::new();
    for (i, c) in p.claim_to_headers.iter().enumerate() {
        let at = format!("{path}.claim_to_headers[{i}]");
        claim_to_headers.push((
            claim_path(&c.claim, &format!("{at}.claim"))?,
            identity_header(&c.header, &format!("{at}.header"))?,
        ));
    }
    Ok(Provider {
        name: name.to_string(),
        algorithms,
        claims: ClaimRules {
            issuer: p.issuer.clone(),
            audiences: p.audiences.clone(),
            clock_skew_s: p.clock_skew_s,
            max_token_age_s: p.max_token_age_s,
            require_typ,
        },
        keys,
        token_sources,
        forward: p.forward,
        forward_payload_header,
        claim_to_headers,
    })
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
        let alg: Algorithm = name.parse().or_else(|_| {
            err(
                format!("{path}[{i}]"),
                format!("unsupported algorithm '{name}' (supported: RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA HS256 HS384 HS512)"),
            )
        })?;
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    let hmac = algorithms.iter().filter(|a| is_hmac(**a)).count();
    if hmac != 0 && hmac != algorithms.len() {
        return err(
            path,
            "HMAC and public-key algorithms cannot be mixed in one provider",
        );
    }
    Ok(algorithms)
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn compile_keys(
    p: &RawProvider,
    algorithms: &[Algorithm],
    path: &str,
) -> Result<KeySource, ConfigError> {
    let hmac = algorithms.iter().any(|a| is_hmac(*a));
    match (&p.remote_jwks, &p.local_jwks, &p.discovery) {
        (Some(remote), None, None) => {
            let at = format!("{path}.remote_jwks");
            if hmac {
                return err(at, "HMAC algorithms need their secret in local_jwks");
            }
            let Some(uri) = &remote.uri else {
                return err(format!("{at}.uri"), "missing");
            };
            let Some((authority, uri_path)) = split_uri(uri) else {
                return err(format!("{at}.uri"), "must be an absolute http(s) URI");
            };
            Ok(KeySource::Remote(compile_fetch(
                remote, authority, uri_path, &at,
            )?))
        }
        (None, Some(local), None) => {
            let at = format!("{path}.local_jwks");
            let Value::Object(doc) = local else {
                return err(at, "must be a JWKS object {\"keys\": [...]}");
            };
            let loaded = KeySet::from_object(doc, Origin::Config).or_else(|e| err(&at, e))?;
            if let Some(why) = loaded.dropped.first() {
                return err(at, format!("unusable {why}"));
            }
            let set = loaded.set;
            if let Some(i) = set
                .keys()
                .iter()
                .position(|k| !algorithms.iter().any(|a| k.fits(*a)))
            {
                return err(
                    format!("{at}.keys[{i}]"),
                    "fits none of the provider's algorithms",
                );
            }
            Ok(KeySource::Local(set))
        }
        (None, None, Some(discovery)) => {
            let at = format!("{path}.discovery");
            if hmac {
                return err(at, "HMAC algorithms need their secret in local_jwks");
            }
            if discovery.uri.is_some() {
                return err(
                    format!("{at}.uri"),
                    "discovery starts from the issuer; use remote_jwks for a fixed URI",
                );
            }
            let well_known = format!(
                "{}/.well-known/openid-configuration",
                p.issuer.trim_end_matches('/')
            );
            let Some((authority, uri_path)) = split_uri(&well_known) else {
                return err(
                    format!("{path}.issuer"),
                    "must be an http(s) URL for discovery",
                );
            };
            Ok(KeySource::Discovery(compile_fetch(
                discovery, authority, uri_path, &at,
            )?))
        }
        _ => err(
            path,
            "needs exactly one of remote_jwks, local_jwks, discovery",
        ),
    }
}

fn compile_fetch(
    raw: &RawFetch,
    authority: &str,
    path: &str,
    at: &str,
) -> Result<Fetch, ConfigError> {
    if raw.cluster.is_empty() {
        return err(format!("{at}.cluster"), "must not be empty");
    }
    let checks = [
        ("timeout_ms", raw.timeout_ms, 1, 60_000),
        ("cache_duration_s", raw.cache_duration_s, 1, 7 * 86_400),
        ("cooldown_s", raw.cooldown_s, 0, 3_600),
        ("stale_max_s", raw.stale_max_s, 0, 7 * 86_400),
        ("max_body_bytes", raw.max_body_bytes as u64, 1_024, 16 << 20),
    ];
    for (name, value, min, max) in checks {
        if !(min..=max).contains(&value) {
            return err(
                format!("{at}.{name}"),
                format!("must be between {min} and {max}"),
            );
        }
    }
    Ok(Fetch {
        cluster: raw.cluster.clone(),
        authority: authority.to_string(),
        path: path.to_string(),
        timeout_ms: raw.timeout_ms,
        cache_duration_s: raw.cache_duration_s,
        cooldown_s: raw.cooldown_s,
        stale_max_s: raw.stale_max_s,
        max_body_bytes: raw.max_body_bytes,
    })
}

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

fn compile_source(s: &RawSource, path: &str) -> Result<TokenSource, ConfigError> {
    let named = |n: &String, what: &str| {
        if n.is_empty() || !n.bytes().all(is_tchar) {
            err(format!("{path}.{what}"), "must be a non-empty token")
        } else {
            Ok(n.clone())
        }
    };
    match (&s.header, &s.query, &s.cookie) {
        (Some(h), None, None) => {
            let name = named(h, "header")?.to_ascii_lowercase();
            let prefix = match &s.prefix {
                Some(p) => p.clone(),
                None if name == "authorization" => "Bearer ".into(),
                None => String::new(),
            };
            Ok(TokenSource::Header { name, prefix })
        }
        (None, Some(q), None) if s.prefix.is_none() => Ok(TokenSource::Query(named(q, "query")?)),
        (None, None, Some(c)) if s.prefix.is_none() => Ok(TokenSource::Cookie(named(c, "cookie")?)),
        _ => err(
            path,
            "needs exactly one of header (with optional prefix), query, cookie",
        ),
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
    if RESERVED.contains(&lower.as_str()) {
        return err(path, format!("'{lower}' cannot carry identity"));
    }
    Ok(lower)
}

/// All identity headers, which must not collide with a header carrying a token.
fn identity_headers(providers: &[Provider]) -> Result<Vec<String>, ConfigError> {
    let mut headers: Vec<String> = Vec::new();
    for p in providers {
        let written = p
            .forward_payload_header
            .iter()
            .chain(p.claim_to_headers.iter().map(|(_, h)| h));
        for h in written {
            let carries_token = providers
                .iter()
                .flat_map(|q| &q.token_sources)
                .any(|s| matches!(s, TokenSource::Header { name, .. } if name == h));
            if carries_token {
                return err(
                    format!("providers.{}", p.name),
                    format!("header '{h}' both carries tokens and identity"),
                );
            }
            if !headers.contains(h) {
                headers.push(h.clone());
            }
        }
    }
    Ok(headers)
}

fn claim_path(raw: &RawClaimPath, path: &str) -> Result<ClaimPath, ConfigError> {
    let compiled = match raw {
        RawClaimPath::Dotted(s) => ClaimPath::dotted(s),
        RawClaimPath::Names(names) => ClaimPath(names.clone()),
    };
    if compiled.0.is_empty() || compiled.0.iter().any(String::is_empty) {
        return err(path, "claim names must not be empty");
    }
    Ok(compiled)
}

fn compile_match(m: &RawMatch, path: &str) -> Result<Matcher, ConfigError> {
    let (p, kind) = match (&m.path, &m.prefix) {
        (Some(p), None) => (p, "path"),
        (None, Some(p)) => (p, "prefix"),
        _ => return err(path, "needs exactly one of path, prefix"),
    };
    match normalize(p) {
        Some(n) if n == *p => {}
        Some(n) => {
            return err(
                format!("{path}.{kind}"),
                format!("is not normalised (requests would be matched as '{n}')"),
            );
        }
        None => {
            return err(
                format!("{path}.{kind}"),
                "must be an absolute path without '..' above the root or encoded separators",
            );
        }
    }
    let methods = m.methods.clone().unwrap_or_default();
    if m.methods.as_ref().is_some_and(Vec::is_empty) {
        return err(
            format!("{path}.methods"),
            "must not be empty (leave it out to match any method)",
        );
    }
    if let Some(i) = methods
        .iter()
        .position(|x| x.is_empty() || !x.bytes().all(|b| b.is_ascii_uppercase()))
    {
        return err(
            format!("{path}.methods[{i}]"),
            "methods are upper-case names such as GET",
        );
    }
    let path_match = if kind == "path" {
        PathMatch::Exact(p.clone())
    } else {
        PathMatch::Prefix(p.clone())
    };
    Ok(Matcher {
        path: path_match,
        methods,
    })
}

fn compile_requirement(
    r: &RawRequirement,
    names: &[&String],
    path: &str,
) -> Result<Requirement, ConfigError> {
    let has_authz = r.scopes.is_some()
        || r.scopes_any.is_some()
        || r.scope_claim.is_some()
        || r.claims.is_some()
        || r.allow_missing.is_some();
    let group = |list: &Vec<RawRequirement>, kind: &str| -> Result<Vec<Requirement>, ConfigError> {
        if has_authz {
            return err(
                path,
                format!(
                    "'{kind}' cannot carry authorization fields; put them on each provider requirement"
                ),
            );
        }
        if list.is_empty() {
            return err(format!("{path}.{kind}"), "must not be empty");
        }
        list.iter()
            .enumerate()
            .map(|(i, r)| compile_requirement(r, names, &format!("{path}.{kind}[{i}]")))
            .collect()
    };
    match (&r.provider, &r.any, &r.all) {
        (Some(name), None, None) => {
            let Some(provider) = names.iter().position(|n| *n == name) else {
                return err(
                    format!("{path}.provider"),
                    format!("unknown provider '{name}'"),
                );
            };
            Ok(Requirement::Provider(ProviderRequirement {
                provider,
                allow_missing: r.allow_missing.unwrap_or(false),
                authorization: compile_authorization(r, path)?,
            }))
        }
        (None, Some(list), None) => Ok(Requirement::Any(group(list, "any")?)),
        (None, None, Some(list)) => Ok(Requirement::All(group(list, "all")?)),
        _ => err(path, "needs exactly one of provider, any, all"),
    }
}

fn compile_authorization(r: &RawRequirement, path: &str) -> Result<Authorization, ConfigError> {
    let scope_list = |list: &Option<Vec<String>>, name: &str| -> Result<Vec<String>, ConfigError> {
        let list = list.clone().unwrap_or_default();
        if let Some(i) = list.iter().position(|s| {
            s.is_empty() || !s.bytes().all(|b| is_qdtext(b) && b != b' ' && b != b'\\')
        }) {
            return err(
                format!("{path}.{name}[{i}]"),
                "a scope is a non-empty printable token without spaces, '\"' or '\\'",
            );
        }
        Ok(list)
    };
    let scope_claim = match &r.scope_claim {
        None => ClaimPath::dotted("scope"),
        Some(c) => claim_path(c, &format!("{path}.scope_claim"))?,
    };
    let mut claims = Vec::new();
    for (i, c) in r.claims.iter().flatten().enumerate() {
        let at = format!("{path}.claims[{i}]");
        let claim = claim_path(&c.claim, &format!("{at}.claim"))?;
        claims.push(match (&c.equals, &c.includes, &c.includes_any) {
            (Some(v), None, None) => ClaimCheck::Equals(claim, v.clone()),
            (None, Some(v), None) if !v.is_empty() => ClaimCheck::Includes(claim, v.clone()),
            (None, None, Some(v)) if !v.is_empty() => ClaimCheck::IncludesAny(claim, v.clone()),
            _ => {
                return err(
                    at,
                    "needs exactly one of equals, includes (non-empty), includes_any (non-empty)",
                );
            }
        });
    }
    Ok(Authorization {
        scope_claim,
        scopes: scope_list(&r.scopes, "scopes")?,
        scopes_any: scope_list(&r.scopes_any, "scopes_any")?,
        claims,
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

#[cfg(test)]
mod tests;
