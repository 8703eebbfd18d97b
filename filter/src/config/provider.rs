//! A provider (`providers.<name>`): its issuers, audiences, algorithms, claims, token
//! sources and the headers and properties it writes.

use super::keys::KeyRules;
use super::read::{Field, FromJson, Node};
use super::secret::Env;
use super::tenants::{check_tenant_keys, compile_tenants};
use super::{
    ConfigError, Provider, compile_dpop, compile_introspection, compile_keys, compile_revocation,
    compile_source, err, fields, identity_header, is_property_name,
};
use crate::http::spelling::same_upstream_name;
use crate::jose::alg::Algorithm;
use crate::jose::claims::{ClaimRules, Compare, Issuers, Subject, normalize_typ};
use crate::policy::authz::ClaimPath;
use crate::policy::binding::MtlsMode;
use crate::policy::dpop::DpopPolicy;
use crate::policy::extract::TokenSource;
use serde_json::Value;

pub(super) fn compile_provider(
    name: &str,
    node: &Node,
    env: &Env,
) -> Result<Provider, ConfigError> {
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
        max_lifetime_s,
        subjects,
        jwt_svid,
        key_sources,
        revocation,
        tenants,
        introspection,
    ] = &node.fields(&fields::PROVIDER)?;
    let issuers = compile_issuers(issuer)?;
    let tenants = match tenants.get::<Node>()? {
        None => None,
        Some(given) => Some(compile_tenants(&given, issuer, &issuers.0)?),
    };
    let audiences = audience_list(audiences.req()?, &audiences.path())?;
    let algorithms =
        compile_algorithms(&algorithms.or_default::<Vec<String>>()?, &algorithms.path())?;
    let jwt_svid: bool = jwt_svid.or_default()?;
    // JWT-SVID section 2.1: RS*, ES256/384/512 and PS* only.
    if jwt_svid
        && let Some(alg) = algorithms
            .iter()
            .find(|a| a.is_hmac() || matches!(a, Algorithm::ES256K | Algorithm::EdDSA))
    {
        return err(
            format!("{}.algorithms", node.path),
            format!("{alg} is not a JWT-SVID algorithm (RS*, PS*, ES256, ES384, ES512)"),
        );
    }
    // An introspection provider has no keys: its tokens are opaque.
    let introspection = match introspection.get::<Node>()? {
        Some(given) => {
            if let Some(other) = [remote_jwks, local_jwks, discovery, key_sources]
                .into_iter()
                .find(|f| f.has())
            {
                return err(other.path(), "a provider with introspection has no keys");
            }
            Some(Box::new(compile_introspection(&given, env)?))
        }
        None => None,
    };
    let keys = match introspection {
        Some(_) => Vec::new(),
        None => compile_keys(
            node,
            [remote_jwks, local_jwks, discovery, key_sources],
            &KeyRules {
                issuer,
                issuers: &issuers.0,
                algorithms: &algorithms,
                jwt_svid,
                env,
                templated: tenants.is_some(),
            },
        )?,
    };
    if let Some(tenants) = &tenants {
        check_tenant_keys(node, tenants, &keys)?;
    }
    let lifetime: Option<u64> = max_lifetime_s.get()?;
    if lifetime == Some(0) {
        return err(max_lifetime_s.path(), "must be at least 1");
    }
    let subjects = match subjects.get::<Node>()? {
        None => Vec::new(),
        Some(given) => match given.value {
            Value::Array(_) => {
                let items = Vec::<Node>::from_json(&given)?;
                if items.is_empty() {
                    return given.err("must not be empty");
                }
                let mut subjects = Vec::new();
                for item in &items {
                    subjects.push(compile_subject(item)?);
                }
                subjects
            }
            _ => vec![compile_subject(&given)?],
        },
    };
    let skew = clock_skew_s.at_most()?;
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
        let [claim, header] = &node.fields(&fields::CLAIM_TO_HEADER)?;
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
        let [claim, property] = &node.fields(&fields::CLAIM_TO_PROPERTY)?;
        let name: String = property.req()?;
        if !is_property_name(&name) {
            return err(
                property.path(),
                "must be 1 to 64 letters, digits, '_', '-' or '.'",
            );
        }
        properties.push((claim.req()?, name));
    }
    let revocation = match revocation.get::<Node>()? {
        None => None,
        Some(node) => Some(compile_revocation(&node, &audiences, env)?),
    };
    Ok(Provider {
        name: name.to_string(),
        algorithms,
        claims: ClaimRules {
            issuer: issuers,
            audiences,
            clock_skew_s: skew,
            max_token_age_s: max_token_age_s.get()?,
            require_typ,
            max_lifetime_s: lifetime,
            subjects,
            jwt_svid,
        },
        keys,
        introspection,
        token_sources,
        forward: forward.or_default()?,
        forward_payload_header,
        claim_to_headers: headers,
        claim_to_properties: properties,
        dpop: match dpop.get::<Node>()? {
            None => DpopPolicy::default(),
            Some(node) => compile_dpop(&node, env)?,
        },
        mtls: match mtls.get::<Node>()? {
            None => MtlsMode::default(),
            Some(node) => {
                let [mode] = &node.fields(&fields::MTLS)?;
                mode.req()?
            }
        },
        revocation,
        tenants,
    })
}

/// A `subjects` pattern: exactly one of `exact`, `prefix`, `suffix`, `contains`, not empty.
fn compile_subject(node: &Node) -> Result<Subject, ConfigError> {
    let [exact, prefix, suffix, contains, ignore_case] = &node.fields(&fields::SUBJECT)?;
    let ignore_case: bool = ignore_case.or_default()?;
    let mut found = None;
    for (field, how) in [
        (exact, Compare::Exact),
        (prefix, Compare::Prefix),
        (suffix, Compare::Suffix),
        (contains, Compare::Contains),
    ] {
        let Some(text) = field.get::<String>()? else {
            continue;
        };
        if text.is_empty() {
            return err(field.path(), "must not be empty");
        }
        if found.is_some() {
            return node.exactly_one(&[exact, prefix, suffix, contains]);
        }
        let text = if ignore_case {
            text.to_ascii_lowercase()
        } else {
            text
        };
        found = Some(Subject {
            how,
            text,
            ignore_case,
        });
    }
    match found {
        Some(subject) => Ok(subject),
        None => node.exactly_one(&[exact, prefix, suffix, contains]),
    }
}

/// A list of audiences: not empty, and no empty one.
pub(super) fn audience_list(
    audiences: Vec<String>,
    path: &str,
) -> Result<Vec<String>, ConfigError> {
    if audiences.is_empty() {
        return err(path, "must not be empty");
    }
    if let Some(i) = audiences.iter().position(String::is_empty) {
        return err(format!("{path}[{i}]"), "must not be empty");
    }
    Ok(audiences)
}

pub(super) fn compile_algorithms(
    names: &[String],
    path: &str,
) -> Result<Vec<Algorithm>, ConfigError> {
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
pub(super) fn compile_issuers(issuer: &Field) -> Result<Issuers, ConfigError> {
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
pub(super) fn placeholder_problem(issuer: &str) -> Option<&'static str> {
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
