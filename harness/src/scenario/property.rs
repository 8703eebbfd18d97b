//! Property paths as scenarios write them. Segments are joined by `.`
//! (`source.address`, `xds.route_name`); a segment that holds a dot (a filter-metadata
//! namespace such as `envoy.filters.http.lua`) is written as a JSON string in brackets:
//! `metadata.filter_metadata["envoy.filters.http.lua"].user`. A path without `[` is split at
//! every `.`, as it always was, so older files read the same.

/// The segments of `path`, or why it cannot be read.
pub fn segments(path: &str) -> Result<Vec<String>, String> {
    if !path.contains('[') {
        return Ok(path.split('.').map(String::from).collect());
    }
    let bad = |why: &str| Err(format!("property path {path:?}: {why}"));
    let mut out = Vec::new();
    let mut rest = path;
    loop {
        if let Some(quoted) = rest.strip_prefix('[') {
            let mut strings = serde_json::Deserializer::from_str(quoted).into_iter::<String>();
            let Some(Ok(segment)) = strings.next() else {
                return bad(r#"write a bracketed segment as ["a JSON string"]"#);
            };
            let Some(after) = quoted.get(strings.byte_offset()..) else {
                return bad("a bracketed segment is not closed");
            };
            let Some(after) = after.strip_prefix(']') else {
                return bad(r#"a bracketed segment ends with "]""#);
            };
            out.push(segment);
            rest = after;
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let (segment, after) = rest.split_at(end);
            if segment.contains(']') {
                return bad(r#"a "]" outside brackets"#);
            }
            out.push(segment.to_string());
            rest = after;
        }
        if rest.is_empty() {
            return Ok(out);
        }
        if let Some(after) = rest.strip_prefix('.') {
            if after.is_empty() {
                return bad("it ends with a dot");
            }
            rest = after;
        } else if !rest.starts_with('[') {
            return bad(r#"after a bracketed segment comes ".", "[" or the end"#);
        }
    }
}

/// `path` as the host keys it (and `proxy_get_property` asks for it): segments joined by NUL.
pub fn host_key(path: &str) -> Result<Vec<u8>, String> {
    Ok(segments(path)?.join("\0").into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_paths_split_at_every_dot_and_brackets_keep_dots() {
        assert_eq!(host_key("xds.route_name").unwrap(), b"xds\0route_name");
        // Old files: any key without a bracket reads as before, even odd ones.
        assert_eq!(host_key("a..b").unwrap(), b"a\0\0b");
        assert_eq!(
            segments(r#"metadata.filter_metadata["envoy.filters.http.lua"].user"#).unwrap(),
            [
                "metadata",
                "filter_metadata",
                "envoy.filters.http.lua",
                "user"
            ]
        );
        assert_eq!(
            segments(r#"a["b.c"]["d\"]"]"#).unwrap(),
            ["a", "b.c", "d\"]"]
        );
        assert_eq!(segments(r#"["x.y"]"#).unwrap(), ["x.y"]);
        for bad in [
            r#"a["b"#,
            r#"a[b]"#,
            r#"a["b"]c"#,
            r#"a["b"]."#,
            r#"a]["b"]"#,
        ] {
            let err = segments(bad).unwrap_err();
            assert!(err.starts_with("property path"), "{bad}: {err}");
        }
    }
}
