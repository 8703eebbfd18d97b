//! A provider's `tenants`: issuers with their own keys, read against the provider's issuer
//! template and its one remote key source.

use super::read::{Field, Node};
use super::{ConfigError, KeySource, err, fields};
use crate::policy::tenants::Tenants;

const ONE_PLACEHOLDER: &str = "tenants need one issuer with one {name} placeholder";

/// `tenants`, given the provider's `issuer` field and its issuers.
pub(super) fn compile_tenants(
    node: &Node,
    issuer: &Field,
    issuers: &[String],
) -> Result<Tenants, ConfigError> {
    let [allow, max_length, max_tenants] = &node.fields(&fields::TENANTS)?;
    let limits = [max_length.within()?, max_tenants.within()?];
    let list: Vec<String> = allow.get()?.unwrap_or_default();
    if allow.has() && list.is_empty() {
        return err(allow.path(), "must not be empty");
    }
    let ([template], ..) = (issuers, 0) else {
        return err(issuer.path(), ONE_PLACEHOLDER);
    };
    let Some(mut tenants) = Tenants::new(template, Vec::new(), limits) else {
        return err(issuer.path(), ONE_PLACEHOLDER);
    };
    if let Some(i) = list.iter().position(|t| !tenants.allows(t)) {
        return err(
            format!("{}[{i}]", allow.path()),
            "not a tenant (unreserved characters, max_length, not '.' or '..')",
        );
    }
    tenants.allow = list;
    Ok(tenants)
}

/// The key source of a provider with `tenants`: one `remote_jwks` or `discovery` whose
/// path holds the placeholder once, so that each tenant has its own documents.
pub(super) fn check_tenant_keys(
    node: &Node,
    tenants: &Tenants,
    keys: &[KeySource],
) -> Result<(), ConfigError> {
    let fits = match keys {
        [KeySource::Remote(f) | KeySource::Discovery(f)] => {
            Tenants::new(&f.path, Vec::new(), [0, 0]).is_some_and(|t| t.name == tenants.name)
        }
        _ => false,
    };
    match fits {
        true => Ok(()),
        false => node.err(
            "tenants need one remote_jwks or discovery whose path names the issuer's placeholder once",
        ),
    }
}

#[cfg(test)]
mod tests;
