//! Issuers with their own keys (a provider's `tenants`): the tenant a token's unverified
//! `iss` names in the provider's issuer template (`https://kc.example.com/realms/{realm}`),
//! checked against the allow-list and the allowed characters before anything is fetched,
//! and the tenant's own issuer and fetch paths, the template with the tenant in place.
//!
//! A tenant is a non-empty run of at most `max_length` unreserved URI characters (letters,
//! digits, `-`, `.`, `_`, `~`), never `.` or `..`: put into a URL path it is one literal
//! segment (no `/`, no percent-encoding, no dot segment), so no tenant can address another
//! document.

use crate::jose::claims::ClaimError;
use serde_json::{Map, Value};

/// A provider's tenants, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenants {
    /// The placeholder's name, without braces (`realm`).
    pub name: String,
    /// The issuer template around the placeholder.
    prefix: String,
    suffix: String,
    /// The tenants allowed, exactly (case matters); empty: any tenant of allowed characters.
    pub allow: Vec<String>,
    pub max_length: usize,
    /// Most tenants whose key sets one worker holds at once.
    pub max_tenants: usize,
}

/// What a tenant is made of: URI's unreserved characters.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

impl Tenants {
    /// `issuer`: the template with exactly one `{name}` placeholder; `None` otherwise.
    pub fn new(
        issuer: &str,
        allow: Vec<String>,
        [max_length, max_tenants]: [usize; 2],
    ) -> Option<Self> {
        let (prefix, after) = issuer.split_once('{')?;
        let (name, suffix) = after.split_once('}')?;
        if suffix.contains(['{', '}']) || name.is_empty() {
            return None;
        }
        Some(Tenants {
            name: name.to_string(),
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
            allow,
            max_length,
            max_tenants,
        })
    }

    /// Whether `tenant` is one this provider serves: unreserved characters, length, not a
    /// dot segment, and listed when there is a list.
    pub fn allows(&self, tenant: &str) -> bool {
        !tenant.is_empty()
            && tenant.len() <= self.max_length
            && tenant != "."
            && tenant != ".."
            && tenant.bytes().all(unreserved)
            && (self.allow.is_empty() || self.allow.iter().any(|t| t == tenant))
    }

    /// The tenant that `iss` names in the template, if it is one this provider serves.
    pub fn of<'i>(&self, iss: &'i str) -> Option<&'i str> {
        let tenant = iss
            .strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())?;
        self.allows(tenant).then_some(tenant)
    }

    /// The tenant of a token's (unverified) claims: its `iss` must name one this provider
    /// serves, and a claim named as the placeholder (Entra's `tid`), if the token has one,
    /// must be that tenant too.
    pub fn select<'c>(&self, claims: &'c Map<String, Value>) -> Result<&'c str, ClaimError> {
        let tenant = match claims.get("iss") {
            None => return Err(ClaimError::Missing("iss")),
            Some(Value::String(iss)) => self.of(iss),
            Some(_) => None,
        };
        match (tenant, claims.get(self.name.as_str())) {
            (Some(t), None) => Ok(t),
            (Some(t), Some(Value::String(claimed))) if claimed == t => Ok(t),
            _ => Err(ClaimError::Unexpected("iss")),
        }
    }
}

/// `template` (an issuer, a fetch path: one `{name}` placeholder) with `tenant` in place of
/// the placeholder.
pub fn fill(template: &str, tenant: &str) -> String {
    match template
        .split_once('{')
        .and_then(|(a, b)| Some((a, b.split_once('}')?.1)))
    {
        Some((before, after)) => [before, tenant, after].concat(),
        None => template.to_string(),
    }
}

#[cfg(test)]
mod tests;
