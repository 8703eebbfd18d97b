//! `resource_metadata`: RFC 9728 protected-resource metadata, served by the filter: one
//! document for every host (an object), or one per resource (a list), each served on its
//! resource's host at its path-suffixed well-known URL (RFC 9728 section 3.1).

use super::read::Node;
use super::{ConfigError, ResourceMetadata, canonical_path, err, fields, is_qdtext, split_uri};
use crate::http::authority;
use serde_json::Value;

/// The most documents in the list form.
pub const MAX_DOCUMENTS: usize = 64;

pub(super) fn compile_metadata(node: &Node) -> Result<Vec<ResourceMetadata>, ConfigError> {
    let Value::Array(items) = node.value else {
        return Ok(vec![compile_document(node, false)?]);
    };
    if items.is_empty() || items.len() > MAX_DOCUMENTS {
        return node.err(format!(
            "must be one document or a list of 1 to {MAX_DOCUMENTS}"
        ));
    }
    let mut documents: Vec<ResourceMetadata> = Vec::with_capacity(items.len());
    for (i, value) in items.iter().enumerate() {
        let node = Node {
            value,
            path: format!("{}[{i}]", node.path),
        };
        let document = compile_document(&node, true)?;
        if documents
            .iter()
            .any(|d| d.authority == document.authority && d.prefix == document.prefix)
        {
            return node.err("names the same resource as an earlier document");
        }
        if documents
            .iter()
            .any(|d| d.authority == document.authority && d.path == document.path)
        {
            return node.err("is served at the same path on the same host as an earlier document");
        }
        documents.push(document);
    }
    Ok(documents)
}

/// One document; `per_host`: served and named on its resource's host only.
fn compile_document(node: &Node, per_host: bool) -> Result<ResourceMetadata, ConfigError> {
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
    let parts = split_uri(&url)
        .and_then(|(a, p)| Some((authority::read(a).ok()?, a, p)))
        .filter(|_| !url.contains(['?', '#']) && quotable);
    let Some((read_authority, written_authority, resource_path)) = parts else {
        return err(
            resource.path(),
            "must be an http(s) URL without query or fragment",
        );
    };
    // RFC 9728 section 3.1: the well-known path, then the resource's path (none for a host).
    let prefix = resource_path.trim_end_matches('/');
    canonical_path(
        if prefix.is_empty() { "/" } else { prefix },
        resource.path(),
    )?;
    let served = match path.get::<String>()? {
        Some(served) => served,
        None => format!("{}{prefix}", fields::METADATA_PATH),
    };
    canonical_path(&served, path.path())?;
    let (scheme, default_port) = match url.starts_with("https://") {
        true => ("https://", 443),
        false => ("http://", 80),
    };
    // `https://a:443` is `https://a`.
    let read_authority = authority::Authority {
        port: read_authority.port.filter(|p| *p != default_port),
        ..read_authority
    };
    // Written by the serializer that writes the key cache's records (`serde_json::to_vec`):
    // `Value`'s `Display` (`to_string`) would bring a second writer, the pretty printer and
    // an `io::Error` with a message into the module (2.6 KB). It cannot fail.
    let Ok(document) = serde_json::to_string(&Value::Object(document)) else {
        return err(node.path.clone(), "cannot be written as JSON");
    };
    Ok(ResourceMetadata {
        url: format!("{scheme}{written_authority}{served}"),
        path: served,
        document,
        authority: per_host.then_some(read_authority),
        default_port,
        prefix: prefix.into(),
    })
}
