//! A rule's `requires`: the requirement tree, its authorization and claim checks.

use super::read::{Field, Node};
use super::{ConfigError, ProviderId, audience_list, err, fields, is_qdtext, is_tchar};
use crate::policy::authz::{
    Authorization, ClaimCheck, ClaimPath, ProviderRequirement, Requirement, StepUp,
};
use serde_json::Value;

pub(super) fn compile_requirement(
    node: &Node,
    names: &[&String],
    captures: &[String],
) -> Result<Requirement, ConfigError> {
    // The first three choose the kind of requirement; the rest, the authorization, belong
    // to a provider requirement only.
    let [provider, any, all, authorization @ ..] = &node.fields(&fields::REQUIREMENT)?;
    let has_authz = authorization.iter().any(Field::has);
    let [
        scopes,
        scopes_any,
        scope_claim,
        claims,
        allow_missing,
        audiences,
        acr_values,
        max_age_s,
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
                allow_missing: allow_missing.or_default()?,
                audiences: audiences
                    .get::<Vec<String>>()?
                    .map(|list| audience_list(list, &audiences.path()))
                    .transpose()?,
                step_up: StepUp {
                    acr_values: match token_list(acr_values, "an acr value")? {
                        list if list.is_empty() && acr_values.has() => {
                            return err(acr_values.path(), "must not be empty");
                        }
                        list => list,
                    },
                    max_age_s: match max_age_s.get::<u64>()? {
                        Some(s) if s > 31_536_000 => {
                            return err(max_age_s.path(), "must be at most 31536000");
                        }
                        s => s,
                    },
                },
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

/// A list of space-free printable tokens (scopes, acr values), each non-empty; absent: none.
fn token_list(field: &Field, what: &str) -> Result<Vec<String>, ConfigError> {
    let list: Vec<String> = field.get()?.unwrap_or_default();
    if let Some(i) = list
        .iter()
        .position(|s| s.is_empty() || !s.bytes().all(|b| is_qdtext(b) && b != b' ' && b != b'\\'))
    {
        return err(
            format!("{}[{i}]", field.path()),
            format!("{what} is a non-empty printable token without spaces, '\"' or '\\'"),
        );
    }
    Ok(list)
}

pub(super) fn compile_authorization(
    [scopes, scopes_any, scope_claim, claims]: [&Field; 4],
    captures: &[String],
) -> Result<Authorization, ConfigError> {
    let scope_claim = match scope_claim.get()? {
        Some(claim) => claim,
        None => scope_claim.preset()?,
    };
    let claims = claims
        .get::<Vec<Node>>()?
        .unwrap_or_default()
        .iter()
        .map(|node| compile_claim_check(node, captures))
        .collect::<Result<_, _>>()?;
    Ok(Authorization {
        scope_claim,
        scopes: token_list(scopes, "a scope")?,
        scopes_any: token_list(scopes_any, "a scope")?,
        claims,
    })
}

/// A claim check: the claim, and exactly one of the rest.
pub(super) fn compile_claim_check(
    node: &Node,
    captures: &[String],
) -> Result<ClaimCheck, ConfigError> {
    let [claim, checks @ ..] = &node.fields(&fields::CLAIM_CHECK)?;
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
