//! Path templates (`/tenants/{tenant}/orders/{rest=**}`): literal segments, `{name}` for
//! exactly one non-empty segment, and a final `**` or `{name=**}` for the rest (zero or more
//! segments). A template is matched against each reading of a request path (`path::read`),
//! as the other path matchers are; what it captures is the segment text of that reading,
//! percent-decoded.

use crate::http::path::{self, fold};

/// How characters are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Sensitive,
    /// As case-insensitive routers compare (`path::fold`): Express by default, Spring and
    /// ASP.NET when configured, IIS.
    Insensitive,
}

/// Most captures one template may hold.
pub const MAX_CAPTURES: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    /// Whether the template ends in `**` (captured as the last name when `{name=**}`).
    rest: bool,
    /// The capture names, in order (the rest's last when it is named).
    names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Capture,
}

/// Why a template is not accepted (a configuration error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    NotAbsolute,
    EmptySegment,
    /// `**` anywhere but in the last segment.
    RestNotLast,
    BadName(String),
    Duplicate(String),
    /// `{`, `}` or `*` inside a literal segment, or a `{name=...}` other than `=**`.
    BadSegment(String),
    TooManyCaptures,
}

impl TemplateError {
    pub fn message(&self) -> String {
        match self {
            TemplateError::NotAbsolute => "must start with '/'".into(),
            TemplateError::EmptySegment => "must not have empty segments".into(),
            TemplateError::RestNotLast => "'**' may only be the last segment".into(),
            TemplateError::BadName(n) => {
                format!("'{n}' is not a capture name (letters, digits and '_')")
            }
            TemplateError::Duplicate(n) => format!("'{n}' is captured twice"),
            TemplateError::BadSegment(s) => {
                format!("segment '{s}' is neither literal nor '{{name}}', '{{name=**}}' or '**'")
            }
            TemplateError::TooManyCaptures => format!("more than {MAX_CAPTURES} captures"),
        }
    }
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let body = text.strip_prefix('/').ok_or(TemplateError::NotAbsolute)?;
        let mut template = Template {
            parts: Vec::new(),
            rest: false,
            names: Vec::new(),
        };
        for segment in body.split('/') {
            if template.rest {
                return Err(TemplateError::RestNotLast);
            }
            if segment.is_empty() {
                return Err(TemplateError::EmptySegment);
            }
            if segment == "**" {
                template.rest = true;
                continue;
            }
            let Some(inner) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
                if segment.contains(['{', '}', '*']) {
                    return Err(TemplateError::BadSegment(segment.into()));
                }
                template.parts.push(Part::Literal(segment.into()));
                continue;
            };
            let (name, rest) = match inner.split_once('=') {
                Some((name, "**")) => (name, true),
                Some(_) => return Err(TemplateError::BadSegment(segment.into())),
                None => (inner, false),
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(TemplateError::BadName(name.into()));
            }
            if template.names.iter().any(|n| n == name) {
                return Err(TemplateError::Duplicate(name.into()));
            }
            if template.names.len() == MAX_CAPTURES {
                return Err(TemplateError::TooManyCaptures);
            }
            template.names.push(name.into());
            if rest {
                template.rest = true;
            } else {
                template.parts.push(Part::Capture);
            }
        }
        Ok(template)
    }

    /// The capture names, in the order `matches` returns their values.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The template with every capture written as `x` (the rest left out): a path that the
    /// configuration checks is written as the filter reads requests.
    pub fn sample(&self) -> String {
        let mut out = String::new();
        for part in &self.parts {
            out.push('/');
            out.push_str(match part {
                Part::Literal(l) => l,
                Part::Capture => "x",
            });
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }

    /// The captured values if `path` (one reading of a request, `/`-separated segments)
    /// matches; literals are compared as `case` says, captures kept as sent and decoded.
    pub fn matches(&self, path: &str, case: Case) -> Option<Vec<String>> {
        let mut segments = path.strip_prefix('/')?.split('/');
        let mut values = Vec::with_capacity(self.names.len());
        for part in &self.parts {
            let segment = segments.next()?;
            match part {
                Part::Literal(l) => {
                    let same = match case {
                        Case::Sensitive => segment == l,
                        Case::Insensitive => segment.chars().map(fold).eq(l.chars().map(fold)),
                    };
                    if !same {
                        return None;
                    }
                }
                Part::Capture if segment.is_empty() => return None,
                Part::Capture => values.push(path::decode_text(segment)?),
            }
        }
        let rest: Vec<&str> = segments.collect();
        if !self.rest {
            return rest.is_empty().then_some(values);
        }
        if self.names.len() > values.len() {
            values.push(path::decode_text(&rest.join("/"))?);
        }
        Some(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(template: &str, path: &str) -> Option<Vec<String>> {
        Template::parse(template)
            .unwrap()
            .matches(path, Case::Sensitive)
    }

    #[test]
    fn literals_captures_and_the_rest() {
        let t = "/tenants/{tenant}/orders";
        assert_eq!(
            matches(t, "/tenants/acme/orders"),
            Some(vec!["acme".into()])
        );
        assert_eq!(matches(t, "/tenants//orders"), None);
        assert_eq!(matches(t, "/tenants/acme/orders/1"), None);
        assert_eq!(matches(t, "/tenants/acme"), None);
        assert_eq!(matches(t, "/Tenants/acme/orders"), None);
        let insensitive = Template::parse(t).unwrap();
        assert_eq!(
            insensitive.matches("/TENANTS/Acme/orders", Case::Insensitive),
            Some(vec!["Acme".into()])
        );
        let t = "/tenants/{tenant}/{rest=**}";
        assert_eq!(
            matches(t, "/tenants/acme/a/b"),
            Some(vec!["acme".into(), "a/b".into()])
        );
        assert_eq!(
            matches(t, "/tenants/acme"),
            Some(vec!["acme".into(), "".into()])
        );
        assert_eq!(matches("/files/**", "/files"), Some(vec![]));
        assert_eq!(matches("/files/**", "/files/x/y"), Some(vec![]));
        assert_eq!(matches("/files/**", "/filesx"), None);
        assert_eq!(matches("/**", "/"), Some(vec![]));
    }

    #[test]
    fn captures_are_decoded() {
        // Readings that keep escapes of unreserved characters still capture the value.
        assert_eq!(matches("/t/{id}", "/t/%61cme"), Some(vec!["acme".into()]));
    }

    #[test]
    fn bad_templates_are_refused() {
        for (t, e) in [
            ("tenants", TemplateError::NotAbsolute),
            ("/a//b", TemplateError::EmptySegment),
            ("/a/", TemplateError::EmptySegment),
            ("/", TemplateError::EmptySegment),
            ("/**/a", TemplateError::RestNotLast),
            ("/{x=**}/a", TemplateError::RestNotLast),
            ("/{}", TemplateError::BadName("".into())),
            ("/{a-b}", TemplateError::BadName("a-b".into())),
            ("/{a}/{a}", TemplateError::Duplicate("a".into())),
            ("/{a}/{a=**}", TemplateError::Duplicate("a".into())),
            ("/a{b}", TemplateError::BadSegment("a{b}".into())),
            ("/*", TemplateError::BadSegment("*".into())),
            ("/{a=*}", TemplateError::BadSegment("{a=*}".into())),
        ] {
            assert_eq!(Template::parse(t), Err(e), "{t}");
        }
        let many: String = (0..=MAX_CAPTURES).map(|i| format!("/{{c{i}}}")).collect();
        assert_eq!(Template::parse(&many), Err(TemplateError::TooManyCaptures));
        assert_eq!(
            TemplateError::Duplicate("a".into()).message(),
            "'a' is captured twice"
        );
    }
}
