//! The JSON Schema (`schema/jwt_filter.schema.json`) and the configuration reference
//! (`docs/configuration.md`), generated from the tables of `fields.rs` (native builds only).
//! `make schema` writes both (`filter/examples/schema.rs`); `filter/tests/schema.rs` fails
//! when the files on disk differ from what these functions return.

use super::fields::{OBJECTS, Object, Preset, SHARED, Spec, Ty};
use serde_json::Value;
use std::fmt::Write;

/// Where the generated files go, relative to the workspace root.
pub const SCHEMA_FILE: &str = "schema/jwt_filter.schema.json";
pub const REFERENCE_FILE: &str = "docs/configuration.md";

const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// A JSON value whose objects keep the order they are built in (serde_json's map, without
/// its `preserve_order` feature, sorts its keys).
enum J {
    Object(Vec<(String, J)>),
    Plain(Value),
}

fn plain(value: impl Into<Value>) -> J {
    J::Plain(value.into())
}

/// A JSON text of the tables (a fragment, a shown default), or an error naming it.
fn parse(text: &str, what: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("{what}: {e}"))
}

/// The JSON Schema, as written to `SCHEMA_FILE`.
pub fn schema() -> Result<String, String> {
    let mut root = None;
    let mut defs = Vec::new();
    for object in OBJECTS {
        let compiled = object_schema(object)?;
        if object.def.is_empty() {
            root = Some((object, compiled));
        } else {
            defs.push((object.def.to_string(), J::Object(compiled)));
        }
    }
    for (name, fragment) in SHARED {
        defs.push((name.to_string(), J::Plain(parse(fragment, name)?)));
    }
    let Some((object, compiled)) = root else {
        return Err("no top-level object in fields::OBJECTS".into());
    };
    let mut members = vec![
        ("$schema".to_string(), plain(DIALECT)),
        ("title".to_string(), plain(object.title)),
        ("description".to_string(), plain(object.doc)),
    ];
    // The object's own title and description were put first; the rest follows.
    members.extend(
        compiled
            .into_iter()
            .filter(|(k, _)| k != "title" && k != "description"),
    );
    members.push(("$defs".to_string(), J::Object(defs)));
    let mut out = String::new();
    write_json(&J::Object(members), 0, &mut out);
    out.push('\n');
    Ok(out)
}

/// An object of the tables: closed to unknown fields, its fields, its constraints.
fn object_schema(object: &Object) -> Result<Vec<(String, J)>, String> {
    let mut members = vec![
        ("title".to_string(), plain(object.title)),
        ("description".to_string(), plain(object.doc)),
        ("type".to_string(), plain("object")),
        ("additionalProperties".to_string(), plain(false)),
    ];
    let required: Vec<&str> = object
        .fields
        .iter()
        .filter(|f| f.about.required)
        .map(|f| f.name)
        .collect();
    if !required.is_empty() {
        members.push(("required".to_string(), plain(required)));
    }
    let mut properties = Vec::new();
    for spec in object.fields {
        properties.push((spec.name.to_string(), J::Object(property(spec)?)));
    }
    members.push(("properties".to_string(), J::Object(properties)));
    if let Some(text) = object.constraints {
        let Value::Object(map) = parse(text, object.def)? else {
            return Err(format!("{}: constraints must be an object", object.def));
        };
        members.extend(map.into_iter().map(|(k, v)| (k, J::Plain(v))));
    }
    Ok(members)
}

/// A field: title, description, its type's schema, then its default.
fn property(spec: &Spec) -> Result<Vec<(String, J)>, String> {
    // Editors show the description, not the bounds: an integer's are repeated in it.
    let description = match (spec.about.ty, *spec.preset) {
        (Ty::Int, Preset::Int { min, max, .. }) => {
            format!("{} ({min} to {max}).", spec.about.doc.trim_end_matches('.'))
        }
        _ => spec.about.doc.to_string(),
    };
    let mut members = vec![
        ("title".to_string(), plain(spec.name)),
        ("description".to_string(), plain(description)),
    ];
    match spec.about.ty {
        Ty::Bool => members.push(("type".into(), plain("boolean"))),
        Ty::Str => members.push(("type".into(), plain("string"))),
        Ty::Enum(names) => members.push(("enum".into(), plain(names.to_vec()))),
        Ty::Int => {
            let Preset::Int { min, max, .. } = *spec.preset else {
                return Err(format!("{}: an integer needs its bounds", spec.name));
            };
            members.push(("type".into(), plain("integer")));
            members.push(("minimum".into(), plain(min)));
            members.push(("maximum".into(), plain(max)));
        }
        Ty::Json(text) => {
            let Value::Object(map) = parse(text, spec.name)? else {
                return Err(format!("{}: a type must be a schema object", spec.name));
            };
            members.extend(map.into_iter().map(|(k, v)| (k, J::Plain(v))));
        }
    }
    if let Some(default) = default_value(spec)? {
        members.push(("default".into(), J::Plain(default)));
    }
    Ok(members)
}

/// A field's default as JSON: the table's, or the one the reader computes.
fn default_value(spec: &Spec) -> Result<Option<Value>, String> {
    Ok(match *spec.preset {
        Preset::Int { default, .. } => Some(default.into()),
        Preset::Bool(b) => Some(b.into()),
        Preset::Text(s) => Some(s.into()),
        Preset::List(items) => Some(items.to_vec().into()),
        Preset::None => match spec.about.shown {
            Some(text) => Some(parse(text, spec.name)?),
            None => None,
        },
    })
}

/// Pretty JSON, two spaces a level, arrays of scalars on one line.
fn write_json(value: &J, depth: usize, out: &mut String) {
    match value {
        J::Object(members) => {
            let refs: Vec<(&str, Node)> = members
                .iter()
                .map(|(k, v)| (k.as_str(), Node::J(v)))
                .collect();
            write_object(&refs, depth, out);
        }
        J::Plain(v) => write_value(v, depth, out),
    }
}

enum Node<'a> {
    J(&'a J),
    V(&'a Value),
}

fn write_object(members: &[(&str, Node)], depth: usize, out: &mut String) {
    if members.is_empty() {
        out.push_str("{}");
        return;
    }
    out.push_str("{\n");
    for (i, (key, value)) in members.iter().enumerate() {
        indent(depth + 1, out);
        out.push_str(&Value::from(*key).to_string());
        out.push_str(": ");
        match value {
            Node::J(j) => write_json(j, depth + 1, out),
            Node::V(v) => write_value(v, depth + 1, out),
        }
        if i + 1 < members.len() {
            out.push(',');
        }
        out.push('\n');
    }
    indent(depth, out);
    out.push('}');
}

fn write_value(value: &Value, depth: usize, out: &mut String) {
    match value {
        Value::Object(map) => {
            let refs: Vec<(&str, Node)> =
                map.iter().map(|(k, v)| (k.as_str(), Node::V(v))).collect();
            write_object(&refs, depth, out);
        }
        Value::Array(items) if items.iter().any(|v| v.is_object() || v.is_array()) => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                indent(depth + 1, out);
                write_value(item, depth + 1, out);
                if i + 1 < items.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            indent(depth, out);
            out.push(']');
        }
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(Value::to_string).collect();
            out.push('[');
            out.push_str(&parts.join(", "));
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn indent(depth: usize, out: &mut String) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

// ---- The reference ----

/// The configuration reference, as written to `REFERENCE_FILE`.
pub fn reference() -> Result<String, String> {
    let mut out = String::new();
    out.push_str("# Configuration reference\n\n");
    out.push_str(
        "<!-- Generated by `make schema` from filter/src/config/fields.rs; edit that file, not this one. -->\n\n",
    );
    out.push_str(
        "Every object of the configuration, every field with its type, default and meaning. The \
         filter reads its defaults and bounds from the same table (`filter/src/config/fields.rs`) \
         that this page and the JSON Schema (`schema/jwt_filter.schema.json`) are generated from. \
         Every object refuses unknown fields; the first problem is reported with its JSON path. \
         docs/policies.md explains how the fields work together.\n",
    );
    for object in OBJECTS {
        let heading = if object.def.is_empty() {
            "Top level"
        } else {
            object.def
        };
        let _ = write!(out, "\n## {heading}\n\n{}\n\n", escape(object.doc));
        out.push_str("| field | type | default | meaning |\n|---|---|---|---|\n");
        for spec in object.fields {
            let default = if spec.about.required {
                "required".to_string()
            } else {
                match default_value(spec)? {
                    Some(v) => format!("`{v}`"),
                    None => "none".to_string(),
                }
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                spec.name,
                escape(&type_name(spec)?),
                escape(&default),
                escape(spec.about.doc)
            );
        }
    }
    out.push_str("\n## Value types\n\nTypes that several fields share (the `$defs` of the JSON Schema that are not objects above).\n");
    for (name, fragment) in SHARED {
        let value = parse(fragment, name)?;
        let about = ["description", "$comment"]
            .iter()
            .find_map(|k| value.get(*k).and_then(Value::as_str))
            .unwrap_or("");
        let _ = write!(out, "\n### {name}\n\n");
        if !about.is_empty() {
            let _ = writeln!(out, "{}\n", escape(about));
        }
        let _ = writeln!(out, "Type: {}.", escape(&describe(&value)));
    }
    Ok(out)
}

/// A field's type in words, with its bounds.
fn type_name(spec: &Spec) -> Result<String, String> {
    Ok(match spec.about.ty {
        Ty::Bool => "boolean".into(),
        Ty::Str => "string".into(),
        Ty::Int => match *spec.preset {
            Preset::Int { min, max, .. } => format!("integer, {min} to {max}"),
            _ => "integer".into(),
        },
        Ty::Enum(names) => names
            .iter()
            .map(|n| format!("`\"{n}\"`"))
            .collect::<Vec<_>>()
            .join(", "),
        Ty::Json(text) => describe(&parse(text, spec.name)?),
    })
}

/// A JSON Schema fragment in words (`$ref`s link to their section).
fn describe(schema: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
        let name = target.trim_start_matches("#/$defs/");
        parts.push(format!("[{name}](#{name})"));
    }
    if let Some(names) = schema.get("enum").and_then(Value::as_array) {
        let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        parts.push(names.join(", "));
    }
    if let Some(value) = schema.get("const") {
        parts.push(format!("`{value}`"));
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    for t in &types {
        let word = match *t {
            "array" => {
                let items = schema.get("items").map_or("values".to_string(), describe);
                let least = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
                let most = schema.get("maxItems").and_then(Value::as_u64);
                match (least, most) {
                    (0, None) => format!("list of {items}"),
                    (1, None) => format!("non-empty list of {items}"),
                    (l, Some(m)) => format!("list of {l} to {m} {items}"),
                    (l, None) => format!("list of at least {l} {items}"),
                }
            }
            "integer" => match (
                schema.get("minimum").and_then(Value::as_u64),
                schema.get("maximum").and_then(Value::as_u64),
            ) {
                (Some(0), Some(u64::MAX)) | (None, None) => "integer".into(),
                (Some(l), Some(m)) => format!("integer, {l} to {m}"),
                _ => "integer".into(),
            },
            "string" if schema.get("minLength").and_then(Value::as_u64) == Some(1) => {
                "non-empty string".into()
            }
            "object" => match schema.get("additionalProperties") {
                Some(Value::Object(values)) => {
                    format!("object of {}", describe(&Value::Object(values.clone())))
                }
                _ => "object".into(),
            },
            other => other.into(),
        };
        parts.push(word);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(list) = schema.get(key).and_then(Value::as_array) {
            let branches: Vec<String> = list
                .iter()
                .map(describe)
                .filter(|s| !s.is_empty())
                .collect();
            if !branches.is_empty() && types.is_empty() {
                parts.push(branches.join(" or "));
            }
        }
    }
    if let Some(list) = schema.get("allOf").and_then(Value::as_array)
        && parts.is_empty()
    {
        let branches: Vec<String> = list
            .iter()
            .map(describe)
            .filter(|s| !s.is_empty())
            .collect();
        parts.push(branches.join(", "));
    }
    if parts.is_empty() && schema.get("pattern").is_some() {
        parts.push("string".into());
    }
    if parts.is_empty() {
        "any JSON value".into()
    } else {
        parts.join(" or ")
    }
}

/// Text for one Markdown table cell.
fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
