//! Reading the configuration's JSON: values that know their path, objects that refuse
//! unknown fields and name each field once (`Node::fields`), and typed fields with serde's
//! wording for type errors (`rules: invalid type: map, expected a sequence`).

use super::fields::{Preset, Spec};
use super::{ConfigError, err};
use crate::jose::json::Quoted;
use serde_json::{Map, Value};

/// A JSON value and its path in the configuration (`providers.auth0.audiences[0]`; empty at
/// the root, which errors show as `.`).
#[derive(Clone)]
pub struct Node<'a> {
    pub value: &'a Value,
    pub path: String,
}

impl<'a> Node<'a> {
    pub fn root(value: &'a Value) -> Self {
        Node {
            value,
            path: String::new(),
        }
    }

    /// The path of a field of this object.
    pub fn child(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    pub fn err<T>(&self, message: impl Into<String>) -> Result<T, ConfigError> {
        err(
            if self.path.is_empty() {
                "."
            } else {
                &self.path
            },
            message,
        )
    }

    pub fn invalid_type<T>(&self, expected: &str) -> Result<T, ConfigError> {
        self.err(format!(
            "invalid type: {}, expected {expected}",
            unexpected(self.value)
        ))
    }

    pub fn map(&self) -> Result<&'a Map<String, Value>, ConfigError> {
        match self.value {
            Value::Object(map) => Ok(map),
            _ => self.invalid_type("a map"),
        }
    }

    /// This value as an object with only the fields of `specs` (a table of `fields.rs`), one
    /// `Field` for each, in order. Callers destructure the array, so that a field listed but
    /// never read is an unused variable (an error under `-D warnings`): `let [a, b] =
    /// &node.fields(&fields::X)?;`.
    pub fn fields<const N: usize>(
        &'a self,
        specs: &'static [Spec; N],
    ) -> Result<[Field<'a>; N], ConfigError> {
        self.only(specs)?;
        Ok(specs.each_ref().map(|spec| Field {
            name: spec.name,
            spec,
            object: self,
        }))
    }

    /// This value as an object without fields other than those of `specs`.
    fn only(&self, specs: &[Spec]) -> Result<(), ConfigError> {
        let map = self.map()?;
        match map
            .keys()
            .find(|k| !specs.iter().any(|s| s.name == k.as_str()))
        {
            Some(name) => {
                let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
                err(
                    self.child(name),
                    format!("unknown field `{name}`, expected {}", one_of(&names)),
                )
            }
            None => Ok(()),
        }
    }

    /// This value as an object of headers (name: value, in name order): names are tokens
    /// (lower-cased here), none of `reserved` (lower-case; refused with `name_error`), at
    /// most `max` of them; values printable ASCII or tab, at most `max_value` bytes.
    pub fn header_map(
        &self,
        reserved: &[&str],
        name_error: &'static str,
        max: usize,
        max_value: usize,
    ) -> Result<Vec<(String, String)>, ConfigError> {
        let map = self.map()?;
        if map.len() > max {
            return self.err(format!("at most {max} headers"));
        }
        let mut out = Vec::with_capacity(map.len());
        for (name, value) in map {
            let at = self.child(name);
            let name = name.to_ascii_lowercase();
            if name.is_empty()
                || !name.bytes().all(super::is_tchar)
                || reserved.contains(&name.as_str())
            {
                return err(at, name_error);
            }
            let Value::String(value) = value else {
                return err(at, "must be a string");
            };
            if value.len() > max_value
                || !value
                    .bytes()
                    .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
            {
                return err(at, "must be printable ASCII");
            }
            out.push((name, value.clone()));
        }
        Ok(out)
    }

    /// The error for an object that does not give exactly one of `fields`.
    pub fn exactly_one<T>(&self, fields: &[&Field]) -> Result<T, ConfigError> {
        let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
        self.err(format!("needs exactly one of {}", names.join(", ")))
    }

    /// This value as a string naming one of `variants`.
    pub fn variant<T: Copy>(&self, variants: &[(&str, T)]) -> Result<T, ConfigError> {
        let Value::String(name) = self.value else {
            return self.invalid_type("a string");
        };
        match variants.iter().find(|(n, _)| n == name) {
            Some((_, v)) => Ok(*v),
            None => {
                let names: Vec<&str> = variants.iter().map(|(n, _)| *n).collect();
                self.err(format!(
                    "unknown variant `{name}`, expected {}",
                    one_of(&names)
                ))
            }
        }
    }
}

/// A field of an object read with `Node::fields`: its name, and the object where it is
/// looked up when read.
pub struct Field<'a> {
    pub name: &'static str,
    /// Its line in the table: default and bounds.
    spec: &'static Spec,
    object: &'a Node<'a>,
}

impl<'a> Field<'a> {
    /// Its path in the configuration.
    pub fn path(&self) -> String {
        self.object.child(self.name)
    }

    fn value(&self) -> Option<&'a Value> {
        self.object.value.get(self.name)
    }

    fn node(&self) -> Option<Node<'a>> {
        self.value().map(|value| Node {
            value,
            path: self.path(),
        })
    }

    /// Whether an optional field is given (absent and null are not).
    pub fn has(&self) -> bool {
        self.value().is_some_and(|v| !v.is_null())
    }

    /// A required field.
    pub fn req<T: FromJson<'a>>(&self) -> Result<T, ConfigError> {
        match self.node() {
            Some(node) => T::from_json(&node),
            None => self.object.err(format!("missing field `{}`", self.name)),
        }
    }

    /// An optional field: absent or null is `None`.
    pub fn get<T: FromJson<'a>>(&self) -> Result<Option<T>, ConfigError> {
        self.node()
            .filter(|node| !node.value.is_null())
            .map(|node| T::from_json(&node))
            .transpose()
    }

    /// A field with a default when absent (null is a type error, as for serde's defaults).
    pub fn or<T: FromJson<'a>>(&self, default: T) -> Result<T, ConfigError> {
        self.node().map_or(Ok(default), |node| T::from_json(&node))
    }

    /// A field with the table's default when absent (null is a type error, as for serde's
    /// defaults).
    pub fn or_default<T: for<'b> FromJson<'b>>(&self) -> Result<T, ConfigError> {
        match self.node() {
            Some(node) => T::from_json(&node),
            None => self.preset(),
        }
    }

    /// The table's default, read as the field would be.
    pub fn preset<T: for<'b> FromJson<'b>>(&self) -> Result<T, ConfigError> {
        let node = self.preset_node();
        T::from_json(&Node {
            value: &node.value,
            path: node.path,
        })
    }

    /// The table's default as a JSON value at this field's path (apart from `preset`, which
    /// is instantiated for each type read, to keep the module small).
    #[inline(never)]
    fn preset_node(&self) -> PresetNode {
        PresetNode {
            value: match *self.spec.preset {
                Preset::None => Value::Null,
                Preset::Int { default, .. } => Value::from(default),
                Preset::Bool(b) => Value::Bool(b),
                Preset::Text(s) => Value::from(s),
                Preset::List(items) => Value::from(items.to_vec()),
            },
            path: self.path(),
        }
    }

    /// A number field with the table's default, within the table's bounds: "must be
    /// between {min} and {max}".
    pub fn within<T>(&self) -> Result<T, ConfigError>
    where
        T: for<'b> FromJson<'b> + Bounded,
    {
        let (value, min, max) = self.bounded()?;
        if value < min || value > max {
            return err(self.path(), format!("must be between {min} and {max}"));
        }
        Ok(value)
    }

    /// A number field with the table's default, at most the table's bound (its least is
    /// 0): "must be at most {max}".
    pub fn at_most<T>(&self) -> Result<T, ConfigError>
    where
        T: for<'b> FromJson<'b> + Bounded,
    {
        let (value, min, max) = self.bounded()?;
        if value < min || value > max {
            return err(self.path(), format!("must be at most {max}"));
        }
        Ok(value)
    }

    /// The value (or the default) and the bounds.
    fn bounded<T>(&self) -> Result<(T, T, T), ConfigError>
    where
        T: for<'b> FromJson<'b> + Bounded,
    {
        let Preset::Int { default, min, max } = *self.spec.preset else {
            return err(self.path(), "has no bounds in the table");
        };
        let value = match self.node() {
            Some(node) => T::from_json(&node)?,
            None => T::from_u32(default),
        };
        Ok((value, T::from_u32(min), T::from_u32(max)))
    }
}

/// A field's default as JSON, and the field's path.
struct PresetNode {
    value: Value,
    path: String,
}

/// The integer types of bounded fields (the table holds their bounds as `u32`).
pub trait Bounded: PartialOrd + std::fmt::Display + Sized {
    fn from_u32(n: u32) -> Self;
}

impl Bounded for u64 {
    fn from_u32(n: u32) -> Self {
        n.into()
    }
}

impl Bounded for usize {
    fn from_u32(n: u32) -> Self {
        usize::try_from(n).unwrap_or(usize::MAX)
    }
}

/// A value read from JSON, checked against its type (and, for domain types, its rules).
pub trait FromJson<'a>: Sized {
    fn from_json(node: &Node<'a>) -> Result<Self, ConfigError>;
}

/// Any value, to be read further where it is used.
impl<'a> FromJson<'a> for Node<'a> {
    fn from_json(node: &Node<'a>) -> Result<Self, ConfigError> {
        Ok(node.clone())
    }
}

impl FromJson<'_> for Value {
    fn from_json(node: &Node) -> Result<Self, ConfigError> {
        Ok(node.value.clone())
    }
}

impl FromJson<'_> for String {
    fn from_json(node: &Node) -> Result<Self, ConfigError> {
        match node.value {
            Value::String(s) => Ok(s.clone()),
            _ => node.invalid_type("a string"),
        }
    }
}

impl FromJson<'_> for bool {
    fn from_json(node: &Node) -> Result<Self, ConfigError> {
        match node.value {
            Value::Bool(b) => Ok(*b),
            _ => node.invalid_type("a boolean"),
        }
    }
}

impl FromJson<'_> for u64 {
    fn from_json(node: &Node) -> Result<Self, ConfigError> {
        match node.value.as_u64() {
            Some(n) => Ok(n),
            None if node.value.is_i64() => node.err(format!(
                "invalid value: {}, expected u64",
                unexpected(node.value)
            )),
            None => node.invalid_type("u64"),
        }
    }
}

impl FromJson<'_> for usize {
    fn from_json(node: &Node) -> Result<Self, ConfigError> {
        let n = u64::from_json(node)?;
        n.try_into().or_else(|_| {
            node.err(format!(
                "invalid value: {}, expected usize",
                unexpected(node.value)
            ))
        })
    }
}

impl<'a, T: FromJson<'a>> FromJson<'a> for Vec<T> {
    fn from_json(node: &Node<'a>) -> Result<Self, ConfigError> {
        let Value::Array(items) = node.value else {
            return node.invalid_type("a sequence");
        };
        items
            .iter()
            .enumerate()
            .map(|(i, value)| {
                T::from_json(&Node {
                    value,
                    path: format!("{}[{i}]", node.path),
                })
            })
            .collect()
    }
}

/// How serde names a value it did not expect.
fn unexpected(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) if n.is_f64() => format!("floating point `{n}`"),
        Value::Number(n) => format!("integer `{n}`"),
        Value::String(s) => format!("string {}", Quoted(s)),
        Value::Array(_) => "sequence".into(),
        Value::Object(_) => "map".into(),
    }
}

/// "one of `a`, `b`, `c`".
fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    format!("one of {}", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read<T: for<'a> FromJson<'a>>(value: &Value) -> Result<T, String> {
        T::from_json(&Node {
            value,
            path: "x".into(),
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn type_errors_use_serde_wording() {
        assert_eq!(read::<u64>(&json!(7)), Ok(7));
        assert_eq!(
            read::<u64>(&json!(-1)).unwrap_err(),
            "x: invalid value: integer `-1`, expected u64"
        );
        assert_eq!(
            read::<u64>(&json!(1.5)).unwrap_err(),
            "x: invalid type: floating point `1.5`, expected u64"
        );
        assert_eq!(
            read::<String>(&json!(null)).unwrap_err(),
            "x: invalid type: null, expected a string"
        );
        assert_eq!(
            read::<bool>(&json!("yes")).unwrap_err(),
            "x: invalid type: string \"yes\", expected a boolean"
        );
        assert_eq!(
            read::<Vec<String>>(&json!(["a", true])).unwrap_err(),
            "x[1]: invalid type: boolean `true`, expected a string"
        );
    }

    #[test]
    fn objects_refuse_unknown_fields_and_name_missing_ones() {
        use crate::config::fields::Ty;
        fn spec(name: &'static str, preset: Preset) -> Spec {
            Spec {
                name,
                preset: Box::leak(Box::new(preset)),
                #[cfg(not(target_arch = "wasm32"))]
                about: crate::config::fields::About {
                    ty: Ty::Int,
                    doc: "",
                    required: false,
                    shown: None,
                },
            }
        }
        let int = |default, min, max| Preset::Int { default, min, max };
        let only_a: &'static [Spec; 1] = Box::leak(Box::new([spec("a", Preset::None)]));
        let abc: &'static [Spec; 3] = Box::leak(Box::new([
            spec("a", int(5, 2, 3)),
            spec("b", Preset::None),
            spec("c", int(9, 0, 10)),
        ]));
        let value = json!({"a": 1, "b": null});
        let node = Node::root(&value);
        assert_eq!(
            node.fields(only_a).err().unwrap().to_string(),
            "b: unknown field `b`, expected one of `a`"
        );
        let [a, b, c] = &node.fields(abc).unwrap();
        assert_eq!(a.req::<u64>(), Ok(1));
        assert_eq!(b.get::<u64>(), Ok(None));
        assert!(!b.has());
        assert_eq!(c.or::<u64>(9), Ok(9));
        assert_eq!(c.or_default::<u64>(), Ok(9));
        assert_eq!(c.within::<u64>(), Ok(9));
        assert!(b.or::<u64>(9).is_err());
        assert_eq!(
            c.req::<u64>().unwrap_err().to_string(),
            ".: missing field `c`"
        );
        assert_eq!(
            a.within::<u64>().unwrap_err().to_string(),
            "a: must be between 2 and 3"
        );
        assert_eq!(
            a.at_most::<u64>().unwrap_err().to_string(),
            "a: must be at most 3"
        );
        assert_eq!(
            node.exactly_one::<()>(&[a, c]).unwrap_err().to_string(),
            ".: needs exactly one of a, c"
        );
    }
}
