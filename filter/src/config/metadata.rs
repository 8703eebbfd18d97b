//! `resource_metadata`: RFC 9728 protected-resource metadata, served by the filter.

use super::read::Node;
use super::{ConfigError, ResourceMetadata, canonical_path, err, fields, is_qdtext, split_uri};
use crate::http::authority;
use serde_json::Value;

pub(super) fn compile_metadata(node: &Node) -> Result<ResourceMetadata, ConfigError> {
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
    ] = &node.fields(&fields::RESOURCE_METADATA)?;
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
    let served: String = path.or_default()?;
    canonical_path(&served, path.path())?;
    // Written by the serializer that writes the key cache's records (`serde_json::to_vec`):
    // `Value`'s `Display` (`to_string`) would bring a second writer, the pretty printer and
    // an `io::Error` with a message into the module (2.6 KB). It cannot fail.
    let Ok(document) = serde_json::to_string(&Value::Object(document)) else {
        return err(node.path.clone(), "cannot be written as JSON");
    };
    Ok(ResourceMetadata {
        url: format!("{}{served}", url.trim_end_matches('/')),
        path: served,
        document,
    })
}
