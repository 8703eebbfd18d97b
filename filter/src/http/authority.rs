//! The authority (`:authority`; HTTP/1's `Host`), read one way wherever a decision uses it:
//! the request's, for rules with `hosts` (rules.rs) and for the URI a DPoP proof's `htu`
//! must equal (dpop.rs); the `htu`'s own; and the configuration's `dpop.origin` and
//! `resource_metadata.resource` (config.rs).
//!
//! Upstreams read one authority differently: Express's `req.hostname` keeps what is before
//! the first `:` (so `admin.example.test:` and `admin.example.test:80:80` are
//! `admin.example.test`) and keeps a `user@`; Python's `urlsplit` drops the userinfo and
//! brackets; the WHATWG URL parser decodes `%2e` and reads names that end in a number as
//! IPv4 addresses (`0x7f.1` is `127.0.0.1`); nginx's `$host` drops everything from the first
//! `:` and one trailing dot. So what all of them read the same way is normalised, and what
//! they do not is refused (`AuthorityError`), never read as some name that no rule names:
//! - normalised: the name in lower case; an empty port dropped (RFC 3986 allows it); a port's
//!   leading zeros. A trailing dot is kept: rules.rs reads such a name both ways;
//! - refused: an empty or absent authority; several (a `,`, as Envoy joins two `Host`
//!   headers; more than one `:authority` or `host` value; a `host` that reads differently
//!   from `:authority`); userinfo (`@`); percent-encoding; brackets around anything but an
//!   IPv6 literal (an IPvFuture or a zone included); a character outside RFC 3986's
//!   reg-name (whitespace, `\`, `/`, `?`, `#`, controls, anything not ASCII: IDNA is not
//!   applied, so a name is compared as written, `xn--` form included); a name that ends in a
//!   number but is not a dotted-decimal IPv4 address (`0x7f.1`, `127.1`, `010.0.0.1`); an
//!   empty label (`.a.test`, `a..test`: nginx refuses them, DNS has none); a port
//!   that is not digits, `0` or above 65535 (`+80`, ` 80`, `80:80`); more than
//!   `MAX_AUTHORITY_BYTES`.
//!
//! Pure functions: no panics, nothing logged.

use crate::http::request::Request;

/// The longest authority read (a DNS name is at most 253 bytes; this leaves room for a port
/// and for names that are not DNS names, and bounds the work).
pub const MAX_AUTHORITY_BYTES: usize = 512;

/// An authority as read: the host (lower case; an IPv6 literal in its brackets) and the
/// port, when one is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub host: String,
    pub port: Option<u16>,
}

impl Authority {
    /// As `host[:port]`, the port left out when it is `default_port`.
    pub fn to_text(&self, default_port: u16) -> String {
        match self.port {
            Some(port) if port != default_port => format!("{}:{port}", self.host),
            _ => self.host.clone(),
        }
    }
}

/// Why an authority is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorityError {
    /// None, or an empty one.
    Missing,
    /// A `,`, more than one value, or a `host` header that reads differently from
    /// `:authority`.
    Several,
    /// `user@host`.
    Userinfo,
    /// Percent-encoding.
    Escape,
    /// Brackets around something that is not an IPv6 literal, or stray brackets.
    Brackets,
    /// A character outside RFC 3986's reg-name.
    Character,
    /// A name that ends in a number but is not a dotted-decimal IPv4 address.
    Number,
    /// An empty label: a leading dot, or two dots in a row.
    EmptyLabel,
    /// A port that is not 1 to 65535 in digits.
    Port,
    TooLong,
}

/// The description a refusal gives the client (fixed text).
pub const AMBIGUOUS: &str = "Ambiguous request authority";
/// The description when the request has no authority.
pub const MISSING: &str = "Missing request authority";

impl AuthorityError {
    /// What the client is told.
    pub fn description(self) -> &'static str {
        match self {
            AuthorityError::Missing => MISSING,
            _ => AMBIGUOUS,
        }
    }

    /// Why, for the log (fixed text, no request data).
    pub fn message(self) -> &'static str {
        match self {
            AuthorityError::Missing => "no authority",
            AuthorityError::Several => "several authorities",
            AuthorityError::Userinfo => "authority with userinfo",
            AuthorityError::Escape => "percent-encoded authority",
            AuthorityError::Brackets => "brackets around something that is not an IPv6 address",
            AuthorityError::Character => "character outside an authority's grammar",
            AuthorityError::Number => "host name that ends in a number but is not an IPv4 address",
            AuthorityError::EmptyLabel => "host name with an empty label",
            AuthorityError::Port => "port that is not 1 to 65535",
            AuthorityError::TooLong => "authority too long",
        }
    }
}

/// The request's authority: its one `:authority` (or, without one, its one `host`), which a
/// `host` header, when there is one too, must read the same as.
pub fn of_request(req: &Request) -> Result<Authority, AuthorityError> {
    let mut authorities = req.header_values(":authority");
    let mut hosts = req.header_values("host");
    let (authority, host) = (authorities.next(), hosts.next());
    if authorities.next().is_some() || hosts.next().is_some() {
        return Err(AuthorityError::Several);
    }
    match (authority, host) {
        (None, None) => Err(AuthorityError::Missing),
        (Some(one), None) | (None, Some(one)) => read(one),
        (Some(authority), Some(host)) => {
            let read_authority = read(authority)?;
            if read(host)? != read_authority {
                return Err(AuthorityError::Several);
            }
            Ok(read_authority)
        }
    }
}

/// Reads one authority, `host[:port]` (RFC 3986 section 3.2 without userinfo).
pub fn read(text: &str) -> Result<Authority, AuthorityError> {
    if text.is_empty() {
        return Err(AuthorityError::Missing);
    }
    if text.len() > MAX_AUTHORITY_BYTES {
        return Err(AuthorityError::TooLong);
    }
    // The refusals that name what an upstream would read differently come first.
    if text.contains(',') {
        return Err(AuthorityError::Several);
    }
    if text.contains('@') {
        return Err(AuthorityError::Userinfo);
    }
    if text.contains('%') {
        return Err(AuthorityError::Escape);
    }
    let (host, port) = match text.strip_prefix('[') {
        Some(literal) => {
            let (address, after) = literal.split_once(']').ok_or(AuthorityError::Brackets)?;
            if !is_ipv6(address) {
                return Err(AuthorityError::Brackets);
            }
            if after.contains(['[', ']']) {
                return Err(AuthorityError::Brackets);
            }
            let port = match after {
                "" => None,
                after => Some(after.strip_prefix(':').ok_or(AuthorityError::Brackets)?),
            };
            (format!("[{}]", address.to_ascii_lowercase()), port)
        }
        None => {
            if text.contains(['[', ']']) {
                return Err(AuthorityError::Brackets);
            }
            let (name, port) = match text.split_once(':') {
                Some((name, port)) => (name, Some(port)),
                None => (text, None),
            };
            (reg_name(name)?, port)
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(digits) => Some(port_number(digits).ok_or(AuthorityError::Port)?),
    };
    Ok(Authority { host, port })
}

/// A port: digits (leading zeros allowed), 1 to 65535.
pub fn port_number(digits: &str) -> Option<u16> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value = digits.bytes().try_fold(0u16, |n, b| {
        n.checked_mul(10)?.checked_add(u16::from(b - b'0'))
    })?;
    (value != 0).then_some(value)
}

/// A reg-name in lower case: RFC 3986's characters but `%` and `,` (refused before), not
/// empty, no empty label but a trailing dot's, and dotted-decimal when it ends in a number.
fn reg_name(name: &str) -> Result<String, AuthorityError> {
    if name.is_empty() {
        return Err(AuthorityError::Missing);
    }
    let allowed = |b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b';'
                    | b'='
            )
    };
    if !name.bytes().all(allowed) {
        return Err(AuthorityError::Character);
    }
    // As the WHATWG URL parser does: one trailing dot does not count.
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.split('.').any(str::is_empty) {
        return Err(AuthorityError::EmptyLabel);
    }
    if ends_in_a_number(bare) && !is_dotted_decimal(bare) {
        return Err(AuthorityError::Number);
    }
    Ok(name.to_ascii_lowercase())
}

/// The WHATWG URL parser's "ends in a number": the last label is digits, or `0x` and hex
/// digits; it then reads the name as an IPv4 address (in decimal, octal or hex).
fn ends_in_a_number(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    hex || (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
}

/// RFC 3986's `IPv6address`: eight groups of one to four hex digits, the last two of which
/// may be an IPv4 address in dotted decimal, or fewer around one `::`.
fn is_ipv6(text: &str) -> bool {
    let (head, tail, compressed) = match text.split_once("::") {
        Some((head, tail)) => (head, tail, true),
        None => (text, "", false),
    };
    if tail.contains("::") {
        return false;
    }
    // How many groups `part` holds; an IPv4 address (two groups) only at the very end.
    let groups = |part: &str, ends: bool| -> Option<usize> {
        if part.is_empty() {
            return Some(0);
        }
        let mut count = 0;
        let mut pieces = part.split(':').peekable();
        while let Some(piece) = pieces.next() {
            let last = pieces.peek().is_none();
            if ends && last && piece.contains('.') {
                count += is_dotted_decimal(piece).then_some(2)?;
            } else if (1..=4).contains(&piece.len()) && piece.bytes().all(|b| b.is_ascii_hexdigit())
            {
                count += 1;
            } else {
                return None;
            }
        }
        Some(count)
    };
    match (groups(head, !compressed), groups(tail, true)) {
        (Some(h), Some(t)) if compressed => h + t <= 7,
        (Some(h), _) => h == 8,
        _ => false,
    }
}

/// Four decimal numbers of 0 to 255 without leading zeros, which every reader reads alike.
fn is_dotted_decimal(name: &str) -> bool {
    let mut parts = 0;
    for part in name.split('.') {
        parts += 1;
        let number_ok = !part.is_empty()
            && part.len() <= 3
            && part.bytes().all(|b| b.is_ascii_digit())
            && (part == "0" || !part.starts_with('0'))
            && part.parse::<u16>().is_ok_and(|n| n <= 255);
        if !number_ok {
            return false;
        }
    }
    parts == 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> (String, Option<u16>) {
        let a = read(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        (a.host, a.port)
    }

    fn name(host: &str, port: Option<u16>) -> (String, Option<u16>) {
        (host.to_string(), port)
    }

    #[test]
    fn plain_names_and_ports_are_read() {
        assert_eq!(ok("admin.example.test"), name("admin.example.test", None));
        assert_eq!(
            ok("admin.example.test:8443"),
            name("admin.example.test", Some(8443))
        );
        assert_eq!(ok("localhost"), name("localhost", None));
        assert_eq!(ok("my_service"), name("my_service", None));
        assert_eq!(ok("192.0.2.1:80"), name("192.0.2.1", Some(80)));
        assert_eq!(ok("0.0.0.0"), name("0.0.0.0", None));
        assert_eq!(ok("xn--dmin-moa.test"), name("xn--dmin-moa.test", None));
        // Sub-delims are in RFC 3986's reg-name: read as the (other) name they spell.
        assert_eq!(ok("a!$&'()*+;=.test"), name("a!$&'()*+;=.test", None));
        // Labels that merely contain digits, or hex that does not start with 0x.
        assert_eq!(ok("api.v2"), name("api.v2", None));
        assert_eq!(ok("1.2.3.ab"), name("1.2.3.ab", None));
    }

    #[test]
    fn case_is_folded() {
        assert_eq!(ok("ADMIN.Example.TEST"), name("admin.example.test", None));
        assert_eq!(ok("[::ABCD]"), name("[::abcd]", None));
    }

    #[test]
    fn an_empty_port_is_dropped_and_leading_zeros_are_read() {
        assert_eq!(ok("admin.example.test:"), name("admin.example.test", None));
        assert_eq!(ok("[::1]:"), name("[::1]", None));
        assert_eq!(
            ok("admin.example.test:0080"),
            name("admin.example.test", Some(80))
        );
        assert_eq!(ok("a.test:65535"), name("a.test", Some(65535)));
        assert_eq!(ok("a.test:1"), name("a.test", Some(1)));
    }

    #[test]
    fn a_trailing_dot_is_kept() {
        assert_eq!(ok("admin.example.test."), name("admin.example.test.", None));
        assert_eq!(ok("192.0.2.1.:8080"), name("192.0.2.1.", Some(8080)));
    }

    #[test]
    fn ipv6_literals_are_read_in_lower_case() {
        assert_eq!(ok("[::1]:8080"), name("[::1]", Some(8080)));
        assert_eq!(ok("[0:0:0:0:0:0:0:1]"), name("[0:0:0:0:0:0:0:1]", None));
        assert_eq!(ok("[2001:DB8::0001]"), name("[2001:db8::0001]", None));
        assert_eq!(
            ok("[::ffff:192.0.2.1]:443"),
            name("[::ffff:192.0.2.1]", Some(443))
        );
    }

    #[test]
    fn ipv6_literals_follow_rfc_3986s_grammar() {
        for good in [
            "::",
            "::1",
            "1::",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1::8",
            "fe80::abcd:EF01",
            "1:2:3:4:5:6:192.0.2.1",
            "::192.0.2.1",
            "1::192.0.2.1",
        ] {
            assert!(is_ipv6(good), "{good}");
            assert!(good.parse::<std::net::Ipv6Addr>().is_ok(), "{good}");
        }
        for bad in [
            "",
            ":",
            ":1",
            "1:",
            ":::",
            "1:::2",
            "::1::",
            "1::2::3",
            "1:2:3:4:5:6:7",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7:8::",
            "::1:2:3:4:5:6:7:8",
            "12345::",
            "g::",
            "1:2:3:4:5:6:7:192.0.2.1",
            "192.0.2.1::",
            "::192.0.2.1:1",
            "::256.0.0.1",
            "::01.0.0.1",
            "::1.2.3",
            "v1.fe",
            "admin.example.test",
        ] {
            assert!(!is_ipv6(bad), "{bad}");
            assert!(bad.parse::<std::net::Ipv6Addr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn missing_or_empty_is_refused() {
        assert_eq!(read(""), Err(AuthorityError::Missing));
        assert_eq!(read(":80"), Err(AuthorityError::Missing));
        assert_eq!(read(":"), Err(AuthorityError::Missing));
    }

    #[test]
    fn several_authorities_are_refused() {
        for text in [
            "admin.example.test,public.example.test",
            "public.example.test, admin.example.test",
            "a.test,",
            ",a.test",
        ] {
            assert_eq!(read(text), Err(AuthorityError::Several), "{text}");
        }
    }

    #[test]
    fn userinfo_is_refused() {
        for text in [
            "x@admin.example.test",
            "admin.example.test@public.example.test",
            "user:pass@a.test",
            "@a.test",
            "[::1]@a.test",
        ] {
            assert_eq!(read(text), Err(AuthorityError::Userinfo), "{text}");
        }
    }

    #[test]
    fn percent_encoding_is_refused() {
        for text in [
            "admin%2eexample.test",
            "%61dmin.example.test",
            "a.test:%38%30",
            "[::1%25eth0]",
        ] {
            assert_eq!(read(text), Err(AuthorityError::Escape), "{text}");
        }
    }

    #[test]
    fn brackets_around_anything_but_an_ipv6_literal_are_refused() {
        for text in [
            "[admin.example.test]",
            "[admin.example.test]:443",
            "[127.0.0.1]",
            "[v1.fe]",
            "[]",
            "[::1",
            "::1]",
            "a[b].test",
            "[::1]x",
            "[::1]]",
            "[1:::2]",
            "[::1::]",
            "[::1]:80]",
            "a.test:[80]",
        ] {
            assert_eq!(read(text), Err(AuthorityError::Brackets), "{text}");
        }
    }

    #[test]
    fn characters_outside_the_grammar_are_refused() {
        for text in [
            "admin.example.test ",
            " admin.example.test",
            "admin .example.test",
            "admin\t.test",
            "admin.example.test\\",
            "admin\\.example.test",
            "a.test/x",
            "a.test?x",
            "a.test#x",
            "a\u{0}.test",
            "a\u{7f}.test",
            "a\"b.test",
            "a<b.test",
            "a|b.test",
            "a^b.test",
            "\u{e4}dmin.test",
            "\u{ff41}dmin.test",
        ] {
            assert_eq!(read(text), Err(AuthorityError::Character), "{text:?}");
        }
    }

    #[test]
    fn names_that_end_in_a_number_must_be_dotted_decimal() {
        for text in [
            "0x7f.1",
            "127.1",
            "2130706433",
            "010.0.0.1",
            "127.0.0.01",
            "256.0.0.1",
            "1.2.3.4.5",
            "example.123",
            "a.0x",
            "a.0XFF",
            "127.0.0.0x1.",
        ] {
            assert_eq!(read(text), Err(AuthorityError::Number), "{text}");
        }
    }

    #[test]
    fn empty_labels_are_refused() {
        for text in [
            ".admin.test",
            "admin..test",
            "admin.test..",
            "..",
            ".",
            "1..2.3",
            ".:80",
        ] {
            assert_eq!(read(text), Err(AuthorityError::EmptyLabel), "{text}");
        }
    }

    #[test]
    fn ports_must_be_digits_from_1_to_65535() {
        for text in [
            "a.test:0",
            "a.test:00",
            "a.test:65536",
            "a.test:99999999999999999999",
            "a.test:+80",
            "a.test:-80",
            "a.test: 80",
            "a.test:80 ",
            "a.test:80:80",
            "a.test::80",
            "a.test:x",
            "a.test:8o",
            "[::1]:0",
            "[::1]:http",
        ] {
            assert_eq!(read(text), Err(AuthorityError::Port), "{text:?}");
        }
        assert_eq!(port_number("443"), Some(443));
        assert_eq!(port_number("00443"), Some(443));
        assert_eq!(port_number(""), None);
    }

    #[test]
    fn length_is_bounded() {
        let long = "a".repeat(MAX_AUTHORITY_BYTES);
        assert_eq!(ok(&long).0, long);
        let longer = "a".repeat(MAX_AUTHORITY_BYTES + 1);
        assert_eq!(read(&longer), Err(AuthorityError::TooLong));
    }

    #[test]
    fn the_request_has_exactly_one_authority() {
        let with = |headers: &[(&str, &str)]| of_request(&Request::new("GET", "/", headers));
        assert_eq!(
            with(&[(":authority", "A.test:")]),
            Ok(Authority {
                host: "a.test".into(),
                port: None
            })
        );
        assert_eq!(with(&[]), Err(AuthorityError::Missing));
        assert_eq!(with(&[(":authority", "")]), Err(AuthorityError::Missing));
        assert_eq!(
            with(&[(":authority", "a.test"), (":authority", "a.test")]),
            Err(AuthorityError::Several)
        );
        assert_eq!(
            with(&[("host", "a.test"), ("host", "b.test")]),
            Err(AuthorityError::Several)
        );
        // A `host` next to `:authority` must read the same.
        assert_eq!(
            with(&[(":authority", "a.test"), ("host", "b.test")]),
            Err(AuthorityError::Several)
        );
        assert_eq!(
            with(&[(":authority", "a.test"), ("host", "A.TEST:")]).map(|a| a.host),
            Ok("a.test".to_string())
        );
        assert_eq!(
            with(&[(":authority", "a.test"), ("host", "x@a.test")]),
            Err(AuthorityError::Userinfo)
        );
        // Without `:authority`, the `host` header.
        assert_eq!(
            with(&[("host", "b.test:8080")]),
            Ok(Authority {
                host: "b.test".into(),
                port: Some(8080)
            })
        );
    }

    #[test]
    fn to_text_leaves_out_the_default_port() {
        let a = read("A.test:443").unwrap();
        assert_eq!(a.to_text(443), "a.test");
        assert_eq!(a.to_text(80), "a.test:443");
        assert_eq!(read("[::1]").unwrap().to_text(80), "[::1]");
    }

    #[test]
    fn every_error_has_fixed_text() {
        assert_eq!(AuthorityError::Missing.description(), MISSING);
        for e in [
            AuthorityError::Several,
            AuthorityError::Userinfo,
            AuthorityError::Escape,
            AuthorityError::Brackets,
            AuthorityError::Character,
            AuthorityError::Number,
            AuthorityError::EmptyLabel,
            AuthorityError::Port,
            AuthorityError::TooLong,
        ] {
            assert_eq!(e.description(), AMBIGUOUS);
            assert!(!e.message().is_empty());
        }
    }
}
