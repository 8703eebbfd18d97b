//! The plugin configuration: JSON in, a compiled `Config` out, or an error naming the JSON
//! path of the first problem (`providers.auth0.audiences: must not be empty`).
//!
//! Everything is checked here, once: unknown fields, wrong types, dangling provider names,
//! empty audiences, unsupported algorithms. A typo must never silently open an endpoint.

use crate::http::authority::Authority;
use crate::http::path::PathParameters;
pub use crate::http::spelling::same_upstream_name;
use crate::jose::alg::Algorithm;
use crate::jose::claims::ClaimRules;
use crate::jose::json;
use crate::jose::jwks::{Accept, KeySet};
use crate::policy::authz::ClaimPath;
pub use crate::policy::authz::ProviderId;
use crate::policy::binding::MtlsMode;
use crate::policy::denials::Denials;
use crate::policy::dpop::{DpopMode, DpopPolicy};
use crate::policy::extract::TokenSource;
use crate::policy::rules::{PathMatch, Rule};
use crate::policy::tenants::Tenants;
use read::{FromJson, Node};
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
    /// The prefix of the per-provider counters, when they are on.
    pub provider_stats: Option<String>,
    /// Path parameters (`;x`): refused, or stripped before matching.
    pub path_parameters: PathParameters,
    pub cors_preflight: CorsPreflight,
    /// RFC 9728 documents (none, one for every host, or one per resource).
    pub resource_metadata: Vec<ResourceMetadata>,
    /// Providers in name order; requirements refer to them by index.
    pub providers: Vec<Provider>,
    pub rules: Vec<Rule>,
    /// Every header the filter writes on success (lower-case); removed from every incoming
    /// request, in every spelling an upstream reads as the same name (`same_upstream_name`),
    /// so that no client can forge them.
    pub identity_headers: Vec<String>,
    /// Denials of the operator's own shape (`None`: the standard answers).
    pub denials: Option<Denials>,
    /// The stream property that receives each refusal (`policy::denials::failure_record`).
    pub failure_property: Option<String>,
    /// The stream property and the request header that receive the names of the providers
    /// whose tokens a request passed with (the header is an identity header).
    pub provider_property: Option<String>,
    pub provider_header: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub algorithms: Vec<Algorithm>,
    pub claims: ClaimRules,
    /// Where its keys come from: one source, or several (`key_sources`) whose keys are all
    /// trusted, each fetched and cached on its own (at most `keys::MAX_KEY_SOURCES`).
    pub keys: Vec<KeySource>,
    /// Opaque tokens checked at an RFC 7662 endpoint (then `keys` is empty).
    pub introspection: Option<Box<Introspection>>,
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
    /// Issuers with their own keys (`tenants`): each tenant its own key set.
    pub tenants: Option<Tenants>,
    /// Revoked tokens: a list, pushed revocations (`None`: nothing is looked up).
    pub revocation: Option<Revocation>,
}

impl Provider {
    /// Where pushed revocations for this provider are received, if anywhere.
    pub fn receiver(&self) -> Option<&Receiver> {
        self.revocation.as_ref()?.receiver.as_ref()
    }
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
    /// Keys published for JWT-SVIDs (`use: "jwt-svid"`) are accepted: the provider's
    /// `jwt_svid`.
    pub jwt_svid: bool,
}

impl Fetch {
    /// What a key set fetched here may hold.
    pub fn accept(&self) -> Accept {
        Accept {
            max_keys: self.max_keys,
            jwt_svid: self.jwt_svid,
        }
    }
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
    /// Where it is served (`GET`, query ignored).
    pub path: String,
    /// The JSON document.
    pub document: String,
    /// Its URL, for 401 challenges: the resource's scheme and authority, then the path.
    pub url: String,
    /// The resource's authority, the one host it is served and named on (the list form);
    /// `None` for every host (the one-document form).
    pub authority: Option<Authority>,
    /// The port `authority` means when it names none (443 for https, 80 for http).
    pub default_port: u16,
    /// The resource's path without a trailing `/` (empty for a whole host): a 401 on a
    /// request under it names this document.
    pub prefix: String,
}

impl ResourceMetadata {
    /// Whether this document is served on, and named for, a request to `to` (the
    /// request's authority, when it has one that reads as one host).
    pub fn on_host(&self, to: Option<&Authority>) -> bool {
        match (&self.authority, to) {
            (None, _) => true,
            (Some(ours), Some(to)) => {
                ours.host == to.host
                    && ours.port.unwrap_or(self.default_port)
                        == to.port.unwrap_or(self.default_port)
            }
            (Some(_), None) => false,
        }
    }

    /// Whether `path` (without its query) is this document's resource or under it.
    pub fn covers(&self, path: &str) -> bool {
        path.strip_prefix(self.prefix.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

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

/// A configuration error: the JSON path and what is wrong there. Boxed, so that the
/// `Result`s the reader passes up are one word wider than their value, not six (moving
/// them is most of the reader's code in the module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(Box<ErrorAt>);

/// Where a configuration error is, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorAt {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError(Box::new(ErrorAt {
            path: path.into(),
            message: message.into(),
        }))
    }
}

impl std::ops::Deref for ConfigError {
    type Target = ErrorAt;

    fn deref(&self) -> &ErrorAt {
        &self.0
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn err<T>(path: impl Into<String>, message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError::new(path, message))
}

// ---- Compilation: each JSON object is read (unknown fields refused) and checked at once. ----

impl Config {
    /// Parses and validates a configuration; `{"env": NAME}` secrets come from the VM's
    /// environment (`secret::process_env`).
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        Self::parse_with_env(bytes, &secret::process_env)
    }

    /// Parses and validates a configuration whose `{"env": NAME}` secrets `env` looks up.
    pub fn parse_with_env(bytes: &[u8], env: &Env) -> Result<Config, ConfigError> {
        if bytes.len() > MAX_CONFIG_BYTES {
            return err(
                ".",
                format!("configuration larger than {MAX_CONFIG_BYTES} bytes"),
            );
        }
        let value = json::parse(bytes).or_else(|e| err(".", e))?;
        compile(&Node::root(&value), env)
    }

    /// The provider `id` names (ids come from this configuration only).
    #[expect(
        clippy::indexing_slicing,
        reason = "every ProviderId is made from an index into this list (config::requirement, \
                  the authenticator and the worker enumerate `providers`), which never changes"
    )]
    pub fn provider(&self, id: ProviderId) -> &Provider {
        &self.providers[id.0]
    }

    /// The longest a DPoP proof stays in the replay cache, over the providers that accept
    /// proofs (the cache's geometry covers it).
    pub fn replay_span_s(&self) -> u64 {
        (self.providers.iter())
            .filter(|p| p.dpop.mode != crate::policy::dpop::DpopMode::Disabled)
            .map(|p| p.dpop.replay_span_s())
            .max()
            .unwrap_or(0)
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

fn compile(root: &Node, env: &Env) -> Result<Config, ConfigError> {
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
        provider_stats,
        providers,
        rules,
        denials,
        failure_property,
        provider_property,
        provider_header,
    ] = &root.fields(&fields::ROOT)?;
    // The JSON Schema the file follows, for editors: read only to refuse a non-string.
    let _: Option<String> = schema.get()?;
    let realm_text: String = realm.or_default()?;
    if realm_text.is_empty() || !realm_text.bytes().all(|b| is_qdtext(b) && b != b'\\') {
        return err(
            realm.path(),
            "must be non-empty printable ASCII without '\"' or '\\'",
        );
    }
    let mode = mode.or_default()?;
    let unmatched = unmatched.or_default()?;
    let path_parameters = path_parameters.or_default()?;
    let cors_preflight = cors_preflight.or_default()?;
    let resource_metadata = match resource_metadata.get::<Node>()? {
        Some(node) => compile_metadata(&node)?,
        None => Vec::new(),
    };
    let max_token_bytes = max_token_bytes.within()?;
    let max_body_bytes = max_body_bytes.within()?;
    let cache_size: usize = jwt_cache_size.at_most()?;
    let host_crypto = host_crypto.or_default()?;
    let provider_stats = match provider_stats.get::<Node>()? {
        None => None,
        Some(node) => {
            let [prefix] = &node.fields(&fields::PROVIDER_STATS)?;
            let prefix: String = prefix.or_default()?;
            let valid = prefix.len() <= 32
                && prefix
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_lowercase())
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                return err(
                    node.child("prefix"),
                    "must be a lower-case letter, then up to 31 lower-case letters, digits or '_'",
                );
            }
            Some(prefix)
        }
    };
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
        let provider = compile_provider(name, &node, env)?;
        // A receiver's path is one provider's, and not the metadata document's.
        if let Some(r) = provider
            .revocation
            .as_ref()
            .and_then(|r| r.receiver.as_ref())
            && (providers
                .iter()
                .any(|p: &Provider| p.receiver().is_some_and(|o| o.path == r.path))
                || resource_metadata.iter().any(|m| m.path == r.path))
        {
            return err(
                node.child("revocation") + "/receiver/path",
                "is another provider's receiver or the resource metadata path",
            );
        }
        providers.push(provider);
    }
    let provider_header = provider_header
        .get::<String>()?
        .map(|h| identity_header(&h, &provider_header.path()))
        .transpose()?;
    let identity_headers = identity_headers(&providers, provider_header.as_deref())?;
    // A redirect's original URL never carries a token read from the query.
    let keep_query = !providers
        .iter()
        .flat_map(|p| &p.token_sources)
        .any(|s| matches!(s, TokenSource::Query(_)));
    let denials = denials
        .get::<Node>()?
        .map(|node| compile_denials(&node, keep_query))
        .transpose()?;
    let mut compiled_rules = Vec::new();
    for node in rules.req::<Vec<Node>>()? {
        let [r#match, requires] = &node.fields(&fields::RULE)?;
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
        provider_stats,
        path_parameters,
        cors_preflight,
        resource_metadata,
        providers,
        rules: compiled_rules,
        identity_headers,
        denials,
        failure_property: property(failure_property)?,
        provider_property: property(provider_property)?,
        provider_header,
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

mod denials;
mod dpop;
mod fetch;
pub mod fields;
#[cfg(not(target_arch = "wasm32"))]
pub mod generate;
mod identity;
mod introspection;
mod keys;
mod metadata;
mod provider;
mod read;
mod requirement;
mod revocation;
mod rules;
pub mod secret;
mod source;
mod tenants;
#[cfg(test)]
mod tests;
// What `tests.rs` (`use super::*`) names besides this file's own imports.
#[cfg(test)]
use crate::{jose::claims::Issuers, policy::authz::Requirement, policy::rules::HostPattern};

use denials::{compile_denials, is_property_name, property};
use dpop::compile_dpop;
use fetch::compile_fetch;
pub use fetch::split_uri;
use identity::{identity_header, identity_headers};
use introspection::compile_introspection;
pub use introspection::{Introspection, form_encode};
pub use keys::MAX_KEY_SOURCES;
use keys::compile_keys;
use metadata::compile_metadata;
use provider::{audience_list, compile_algorithms, compile_provider};
use requirement::compile_requirement;
use revocation::compile_revocation;
pub use revocation::{Receiver, Revocation, RevocationList};
use rules::{canonical_path, compile_match};
pub use secret::Env;
use source::compile_source;
