//! How the filter reads a request path, and how other upstreams may read the same bytes.
//!
//! Upstreams disagree about paths: servlet containers strip path parameters (`;x=1`), Express
//! and Django neither resolve `..` nor merge `//`, Express matches escapes of unreserved
//! characters undecoded, Windows trims trailing dots. `read` returns every structural reading
//! of a path (the filter's own, canonical one first); the rules must allow the request under
//! each of them. What no reading can describe safely (encoded separators, controls, malformed
//! or double encoding, look-alikes of separators, `..;`) is a `PathError`: refused.

use super::fold_table::FOLDS;
/// The Unicode version `fold` follows (`fold_table.rs`'s).
pub use super::fold_table::UNICODE_VERSION as FOLD_UNICODE_VERSION;

/// What to do with path parameters (`/api/x;jsessionid=1`), which servlet containers strip
/// before routing and most other upstreams keep as part of the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathParameters {
    /// Any `;` in the path is refused.
    #[default]
    Reject,
    /// Matched without its parameters; a rule the segment reaches with them must also pass.
    Strip,
}

/// Longest path (without the query) read; longer ones are refused.
pub const MAX_PATH_BYTES: usize = 8192;

/// Why a path cannot be read safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not an origin-form path: empty, `*`, an absolute URI, or `//` (a host to some parsers).
    NotOrigin,
    /// `#` in the path: a fragment to most parsers, part of the path to Go's.
    Fragment,
    TooLong,
    /// A control character (NUL included), raw or percent-encoded.
    Control,
    /// A backslash, raw or percent-encoded: a separator on Windows and to WHATWG URLs.
    Backslash,
    /// `%` not followed by two hex digits (`%u002e`, `%zz`, a trailing `%`).
    BadEscape,
    /// `%2F` or `%3B`: a separator that some upstreams decode before splitting.
    EncodedSeparator,
    /// `%25`: decoded twice by some upstreams.
    EncodedPercent,
    /// Decoded bytes that are not UTF-8 (overlong forms such as `%c0%ae`, stray bytes).
    NotUtf8,
    /// A character that Unicode compatibility mapping or Windows best-fit turns into one of
    /// `/ \ . % ; ? #` (fullwidth `．`, `／`, one-dot leader, ...).
    Lookalike,
    /// A segment of dots and spaces other than `.` and `..`, or a segment before the last
    /// ending in a dot or space: Windows trims those, so `.. ` would climb.
    TrailingDotOrSpace,
    /// `.` or `..` with path parameters (`..;x`): servlet containers resolve it.
    DotWithParameters,
    /// Path parameters while `path_parameters` is `reject`.
    Parameters,
    /// `..` above the root.
    AboveRoot,
}

impl PathError {
    pub fn message(&self) -> &'static str {
        match self {
            PathError::NotOrigin => "not a path starting with a single '/'",
            PathError::Fragment => "'#' in the path",
            PathError::TooLong => "path too long",
            PathError::Control => "control character in the path",
            PathError::Backslash => "backslash in the path",
            PathError::BadEscape => "malformed percent-encoding",
            PathError::EncodedSeparator => "encoded '/' or ';'",
            PathError::EncodedPercent => "encoded '%' (double encoding)",
            PathError::NotUtf8 => "percent-encoding that is not UTF-8",
            PathError::Lookalike => "a character that reads as a separator or dot",
            PathError::TrailingDotOrSpace => "a segment that Windows would trim into another",
            PathError::DotWithParameters => "'.' or '..' with path parameters",
            PathError::Parameters => "path parameters (';')",
            PathError::AboveRoot => "'..' above the root",
        }
    }
}

/// A path as one reading resolves it: starts with `/`, no query; segments are decoded text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedPath(String);

impl NormalizedPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments between slashes (`/a/b/` gives `a`, `b`, ``).
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.get(1..).unwrap_or_default().split('/')
    }

    /// This path, then the shorter forms lenient routers also match to it: without a trailing
    /// slash (Express, Spring before 6), then without the last segment's trailing dots and
    /// spaces (Windows), then without its extension (Spring's suffix patterns: `x.json` is `x`).
    pub fn lenient_forms(&self) -> impl Iterator<Item = &str> {
        let full = self.as_str();
        let no_slash = match full.strip_suffix('/') {
            Some(s) if !s.is_empty() => s,
            _ => full,
        };
        let last_start = no_slash.rfind('/').map_or(0, |i| i + 1);
        let trimmed_len = last_start
            + no_slash
                .get(last_start..)
                .unwrap_or_default()
                .trim_end_matches(['.', ' '])
                .len();
        let trimmed = no_slash.get(..trimmed_len).unwrap_or(no_slash);
        let last = trimmed.get(last_start..).unwrap_or_default();
        let stem = match last.char_indices().skip(1).find(|(_, c)| *c == '.') {
            Some((dot, _)) => trimmed.get(..last_start + dot).unwrap_or(trimmed),
            None => trimmed,
        };
        let mut forms = vec![full];
        for form in [no_slash, trimmed, stem] {
            if form.len() > 1 && !forms.contains(&form) {
                forms.push(form);
            }
        }
        forms.into_iter()
    }
}

/// One structural reading of a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub path: NormalizedPath,
    /// Whether the request must land on a rule under this reading. False for readings that
    /// keep path parameters while `path_parameters` is `strip` (the operator declared that
    /// the upstream strips them) and for those that keep escapes of unreserved characters
    /// (clients that over-encode, `%7E` for `~`, are common; RFC 3986 makes them equal): a
    /// rule they reach adds to the checks, but no rule reached is not a refusal.
    pub binding: bool,
}

/// The structural readings of a request path, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readings {
    /// The filter's own reading: parameters as configured, every escape decoded, `.` and
    /// `..` resolved, `//` merged.
    pub canonical: NormalizedPath,
    /// The other readings.
    pub others: Vec<Reading>,
}

impl Readings {
    /// Every reading, canonical first.
    pub fn all(&self) -> impl Iterator<Item = (&NormalizedPath, bool)> {
        std::iter::once((&self.canonical, true))
            .chain(self.others.iter().map(|r| (&r.path, r.binding)))
    }
}

/// How one reading treats each feature of the path.
#[derive(Clone, Copy)]
struct Variant {
    strip_parameters: bool,
    decode_unreserved: bool,
    resolve_dots: bool,
    merge_slashes: bool,
}

impl Variant {
    fn canonical(strip_parameters: bool) -> Self {
        Variant {
            strip_parameters,
            decode_unreserved: true,
            resolve_dots: true,
            merge_slashes: true,
        }
    }
}

/// One segment, decoded each way a variant may need it.
struct Segment {
    /// Parameters removed, every escape decoded.
    name: String,
    /// Parameters removed, escapes of unreserved characters kept.
    name_literal: String,
    /// Parameters kept, every escape decoded.
    with_parameters: String,
    /// Parameters kept, escapes of unreserved characters kept.
    with_parameters_literal: String,
    /// `.` or `..` once decoded (`%2e%2e` included).
    dots: Option<Dots>,
}

impl Segment {
    fn text(&self, variant: Variant) -> &str {
        match (variant.strip_parameters, variant.decode_unreserved) {
            (true, true) => &self.name,
            (true, false) => &self.name_literal,
            (false, true) => &self.with_parameters,
            (false, false) => &self.with_parameters_literal,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dots {
    One,
    Two,
}

/// Reads a raw `:path` (query ignored) every way the upstreams in the module comment could.
pub fn read(raw: &str, parameters: PathParameters) -> Result<Readings, PathError> {
    let path = raw.split('?').next().unwrap_or_default();
    if let Some(readings) = plain(path) {
        return Ok(readings);
    }
    read_segments(path, parameters)
}

/// The readings of a path that has none of the features readings differ on or that are
/// refused: only unreserved characters and `/`, no empty segment but a trailing one, no
/// segment of dots, no dot ending a segment but the last. Its one reading is itself (what
/// `read_segments` finds too, without the work: most paths are plain).
fn plain(path: &str) -> Option<Readings> {
    let rest = path.strip_prefix('/')?;
    if path.len() > MAX_PATH_BYTES {
        return None;
    }
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        let empty = segment.is_empty();
        let plain = segment.bytes().all(is_unreserved)
            && (last || !empty)
            && (empty || segment.bytes().any(|b| b != b'.'))
            && (last || !segment.ends_with('.'));
        if !plain {
            return None;
        }
    }
    Some(Readings {
        canonical: NormalizedPath(path.to_string()),
        others: Vec::new(),
    })
}

/// `read` for any path: each segment decoded every way, then every variant resolved.
fn read_segments(path: &str, parameters: PathParameters) -> Result<Readings, PathError> {
    if !path.starts_with('/') || path.starts_with("//") {
        return Err(PathError::NotOrigin);
    }
    if path.contains('#') {
        return Err(PathError::Fragment);
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    let raw_segments: Vec<&str> = path.get(1..).unwrap_or_default().split('/').collect();
    let last = raw_segments.len().saturating_sub(1);
    let unreserved_escapes = has_unreserved_escape(path);
    let mut segments = Vec::with_capacity(raw_segments.len());
    for (i, raw_segment) in raw_segments.iter().enumerate() {
        let (raw_name, has_parameters) = match raw_segment.split_once(';') {
            Some((name, _)) => (name, true),
            None => (*raw_segment, false),
        };
        let name = decode(raw_name, true)?;
        let dots = match name.as_str() {
            "." => Some(Dots::One),
            ".." => Some(Dots::Two),
            _ => None,
        };
        if has_parameters {
            if dots.is_some() {
                return Err(PathError::DotWithParameters);
            }
            if parameters == PathParameters::Reject {
                return Err(PathError::Parameters);
            }
        }
        let only_dots_and_spaces = !name.is_empty() && name.chars().all(|c| c == '.' || c == ' ');
        let trims = i < last && name.ends_with(['.', ' ']);
        if dots.is_none() && (only_dots_and_spaces || trims) {
            return Err(PathError::TrailingDotOrSpace);
        }
        // Each text decoded once; the same text again where the path lacks the feature.
        let with_parameters = if has_parameters {
            decode(raw_segment, true)?
        } else {
            name.clone()
        };
        let (name_literal, with_parameters_literal) = if unreserved_escapes {
            (decode(raw_name, false)?, decode(raw_segment, false)?)
        } else {
            (name.clone(), with_parameters.clone())
        };
        segments.push(Segment {
            name,
            name_literal,
            with_parameters,
            with_parameters_literal,
            dots,
        });
    }

    // A variant that flips a feature the path does not have reads it like another one.
    let features = [
        segments
            .iter()
            .any(|s| s.name.len() != s.with_parameters.len()),
        unreserved_escapes,
        segments.iter().any(|s| s.dots.is_some()),
        segments.iter().rev().skip(1).any(|s| s.name.is_empty()),
    ];
    let strip = parameters == PathParameters::Strip;
    let canonical = resolve(&segments, Variant::canonical(strip))?;
    let mut others: Vec<Reading> = Vec::new();
    for bits in 1u8..16 {
        let flipped = |n: usize| bits & (1 << n) != 0;
        if (0..features.len()).any(|n| flipped(n) && !features.get(n).copied().unwrap_or(false)) {
            continue;
        }
        let variant = Variant {
            strip_parameters: strip != flipped(0),
            decode_unreserved: !flipped(1),
            resolve_dots: !flipped(2),
            merge_slashes: !flipped(3),
        };
        let path = resolve(&segments, variant)?;
        if path != canonical && !others.iter().any(|r| r.path == path) {
            others.push(Reading {
                path,
                binding: !flipped(0) && !flipped(1),
            });
        }
    }
    Ok(Readings { canonical, others })
}

/// The path one variant makes of the segments.
fn resolve(segments: &[Segment], variant: Variant) -> Result<NormalizedPath, PathError> {
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    let mut trailing = false;
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if variant.resolve_dots {
            match segment.dots {
                Some(Dots::One) => {
                    trailing = last;
                    continue;
                }
                Some(Dots::Two) => {
                    out.pop().ok_or(PathError::AboveRoot)?;
                    trailing = last;
                    continue;
                }
                None => {}
            }
        }
        let text = segment.text(variant);
        if text.is_empty() && (last || variant.merge_slashes) {
            trailing = last;
            continue;
        }
        out.push(text);
    }
    let mut path = String::with_capacity(
        segments
            .iter()
            .map(|s| s.with_parameters_literal.len() + 1)
            .sum(),
    );
    for s in &out {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() || trailing {
        path.push('/');
    }
    Ok(NormalizedPath(path))
}

/// Decodes percent-escapes (keeping those of unreserved characters as sent unless
/// `decode_unreserved`), refusing what `PathError` names.
fn decode(raw: &str, decode_unreserved: bool) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let value = match bytes.get(i + 1..i + 3) {
            Some([hi, lo]) => hex_value(*hi)
                .zip(hex_value(*lo))
                .map(|(hi, lo)| hi << 4 | lo),
            _ => None,
        }
        .ok_or(PathError::BadEscape)?;
        match value {
            b'/' | b';' => return Err(PathError::EncodedSeparator),
            b'%' => return Err(PathError::EncodedPercent),
            _ if is_unreserved(value) && !decode_unreserved => {
                out.extend_from_slice(bytes.get(i..i + 3).unwrap_or_default());
            }
            _ => out.push(value),
        }
        i += 3;
    }
    let text = String::from_utf8(out).map_err(|_| PathError::NotUtf8)?;
    for c in text.chars() {
        if c.is_control() {
            return Err(PathError::Control);
        }
        if c == '\\' {
            return Err(PathError::Backslash);
        }
        if is_lookalike(c) {
            return Err(PathError::Lookalike);
        }
    }
    Ok(text)
}

/// The text of one segment of a reading with every escape decoded (a reading's segments
/// keep only escapes of unreserved characters, and only when it reads them literally).
pub fn decode_text(segment: &str) -> Option<String> {
    if !segment.contains('%') {
        return Some(segment.to_string());
    }
    decode(segment, true).ok()
}

/// The value of one hex digit.
pub fn hex_value(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

/// RFC 3986 `unreserved`.
pub fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn has_unreserved_escape(path: &str) -> bool {
    path.as_bytes().windows(3).any(|w| match w {
        [b'%', hi, lo] => hex_value(*hi)
            .zip(hex_value(*lo))
            .is_some_and(|(hi, lo)| is_unreserved(hi << 4 | lo)),
        _ => false,
    })
}

/// Characters that NFKC or Windows best-fit mapping turn into `/ \ . % ; ? #` (or a run of
/// dots): fullwidth and small forms, dot leaders, slash and backslash operators.
fn is_lookalike(c: char) -> bool {
    matches!(
        c,
        '\u{FF0F}' // fullwidth solidus
            | '\u{FF3C}' // fullwidth reverse solidus
            | '\u{FF0E}' // fullwidth full stop
            | '\u{FF05}' // fullwidth percent
            | '\u{FF1B}' // fullwidth semicolon
            | '\u{FF1F}' // fullwidth question mark
            | '\u{FF03}' // fullwidth number sign
            | '\u{FE52}' // small full stop
            | '\u{FE68}' // small reverse solidus
            | '\u{FE6A}' // small percent
            | '\u{FE54}' // small semicolon
            | '\u{FE56}' // small question mark
            | '\u{FE5F}' // small number sign
            | '\u{2024}' // one dot leader
            | '\u{2025}' // two dot leader
            | '\u{2026}' // ellipsis
            | '\u{2215}' // division slash
            | '\u{2044}' // fraction slash
            | '\u{29F5}' // reverse solidus operator
            | '\u{29F8}' // big solidus
            | '\u{29F9}' // big reverse solidus
    )
}

/// A character as case-insensitive routers compare it: fullwidth ASCII forms as ASCII, then
/// the lower case of the upper case (Java's `equalsIgnoreCase`: `ſ` is `s`, the Kelvin sign
/// is `k`, dotted `İ` is `i`).
///
/// Read from `fold_table.rs`, generated from the standard library's case conversions by
/// `make unicode` (`http::generate`, which holds the definition with them): the conversions'
/// own tables would weigh 24 KB in the module. `path/tests.rs` checks that this is that
/// definition for every character.
pub fn fold(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    let n = u32::from(c);
    // The last run starting at or before `c`; `c` folds by its delta if it is one of the
    // run's characters (runs do not overlap).
    let run = FOLDS
        .partition_point(|&(key, _)| key >> 8 <= n)
        .checked_sub(1)
        .and_then(|i| FOLDS.get(i));
    let Some(&(key, delta)) = run else {
        return c;
    };
    let offset = n.wrapping_sub(key >> 8);
    let stride = 1 + (key & 1);
    let count = (key >> 1 & 0x7F) + 1;
    if offset % stride != 0 || offset / stride >= count {
        return c;
    }
    char::from_u32(n.wrapping_add_signed(delta)).unwrap_or(c)
}

#[cfg(test)]
mod tests;
