//! The authority matrix: tricky `:authority` values × how common upstream stacks read the
//! host (testkit/src/authorities.rs) × the filter's verdict under rules that name hosts (an
//! admin host that needs a scope, an API host that needs a token, a public catch-all). No
//! authority may be allowed at some level of credentials (none, a token, a token with the
//! scope) while a stack routes it to a host that needs more; each verdict is also exact
//! (which pins what is normalised and what is refused, 400 `invalid_request`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::unreachable,
    reason = "test code: a panic fails the test, and never runs in the VM"
)]

use jwt_filter::config::Config;
use jwt_filter::decision::authenticator::{Authenticator, FixedKeys, Pass, Stop};
use jwt_filter::http::request::Request;
use jwt_filter::jose::jwks::{KeySet, Origin};
use jwt_filter::jose::verify::InWasm;
use jwt_filter_testkit::authorities::HOST_MODELS;
use jwt_filter_testkit::families::Need;
use jwt_filter_testkit::keys::{self, NOW};
use serde_json::{Value, json};

/// The credentials a request carries (a `Need` it satisfies up to).
const LEVELS: [Need; 3] = [Need::Nothing, Need::Token, Need::Scope];

/// The upstream's hosts and what each needs; any other host is the public default.
const HOSTS: [(&str, Need); 2] = [
    ("admin.example.test", Need::Scope),
    ("api.example.test", Need::Token),
];

/// What the upstream needs for a request its stack reads as `host`.
fn host_need(host: &str) -> Need {
    HOSTS
        .iter()
        .find(|(h, _)| *h == host)
        .map_or(Need::Nothing, |h| h.1)
}

fn config() -> Value {
    json!({
        "realm": "api",
        "providers": {"auth0": {
            "issuer": "https://issuer.test/", "audiences": ["https://api.test"],
            "remote_jwks": {"cluster": "idp", "uri": "http://idp.test/.well-known/jwks.json"}
        }},
        "rules": [
            {"match": {"hosts": ["admin.example.test"], "prefix": "/"},
             "requires": {"provider": "auth0", "scopes": ["admin"]}},
            {"match": {"hosts": ["api.example.test"], "prefix": "/"},
             "requires": {"provider": "auth0"}},
            {"match": {"prefix": "/"}}
        ]
    })
}

struct Filter {
    authenticator: Authenticator<InWasm>,
    keys: FixedKeys,
}

impl Filter {
    fn new() -> Self {
        let config = Config::parse(config().to_string().as_bytes()).unwrap();
        let jwks = json!({"keys": [keys::public_jwk("rsa-a", "a")]}).to_string();
        let set = KeySet::parse(jwks.as_bytes(), Origin::Remote).unwrap().set;
        Filter {
            authenticator: Authenticator::new(config, InWasm),
            keys: FixedKeys {
                set,
                refetch_allowed: false,
            },
        }
    }

    /// Status and error code for `GET /x` with `headers` and credentials of `level`.
    fn verdict(&self, headers: &[(&str, &str)], level: Need) -> (u16, Option<String>) {
        let scope = match level {
            Need::Scope => "admin",
            _ => "read",
        };
        let claims = json!({"iss": "https://issuer.test/", "aud": "https://api.test",
                            "sub": "u", "scope": scope, "exp": NOW + 3600});
        let bearer = format!(
            "Bearer {}",
            keys::sign("rsa-a", &json!({"alg": "RS256", "kid": "a"}), &claims)
        );
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if level != Need::Nothing {
            all.push(("authorization", &bearer));
        }
        let req = Request::new("GET", "/x", &all);
        match self.authenticator.decide(&req, NOW, &self.keys) {
            Ok(Pass::Forward { .. }) => (200, None),
            Err(Stop::Refuse(refusal)) => {
                let reply = self.authenticator.reply(&req, &refusal);
                let body: Value = serde_json::from_str(&reply.body).unwrap();
                (reply.status, body["error"].as_str().map(String::from))
            }
            other => panic!("unexpected decision {other:?}"),
        }
    }
}

/// What a request gets at each level (none, a token, a token with the scope).
type Verdicts = [u16; 3];
const ADMIN: Verdicts = [401, 403, 200];
const API: Verdicts = [401, 200, 200];
const PUBLIC: Verdicts = [200, 200, 200];
const REFUSED: Verdicts = [400, 400, 400];

/// Authorities and the filter's verdicts for them.
const CASES: &[(&str, Verdicts)] = &[
    // Well-formed: the rule of the host named.
    ("admin.example.test", ADMIN),
    ("api.example.test", API),
    ("www.example.test", PUBLIC),
    ("admin.example.test:443", ADMIN),
    ("admin.example.test:8443", ADMIN),
    ("[::1]:8080", PUBLIC),
    ("[::1]", PUBLIC),
    ("[2001:db8::1]:443", PUBLIC),
    ("192.0.2.1:8080", PUBLIC),
    ("localhost", PUBLIC),
    // Normalised: case, an empty port, a port's leading zeros.
    ("ADMIN.Example.TEST", ADMIN),
    ("admin.example.test:", ADMIN),
    ("Admin.Example.Test:", ADMIN),
    ("admin.example.test:0443", ADMIN),
    ("[0:0::1]:08080", PUBLIC),
    // A trailing dot: read as sent (public) and without it (admin); both must pass.
    ("admin.example.test.", ADMIN),
    ("admin.example.test.:443", ADMIN),
    ("api.example.test.", API),
    // Other names, read as such by every stack.
    ("admin.example.test.evil", PUBLIC),
    ("xadmin.example.test", PUBLIC),
    ("admin-example.test", PUBLIC),
    ("admin.example.test;x", PUBLIC),
    ("admin.example.test*", PUBLIC),
    ("xn--admin-example-test", PUBLIC),
    // Refused: userinfo.
    ("x@admin.example.test", REFUSED),
    ("www.example.test@admin.example.test", REFUSED),
    ("admin.example.test@www.example.test", REFUSED),
    ("www.example.test:443@admin.example.test", REFUSED),
    ("@admin.example.test", REFUSED),
    // Refused: percent-encoding.
    ("admin%2eexample.test", REFUSED),
    ("%61dmin.example.test", REFUSED),
    ("admin.example.test%00", REFUSED),
    ("admin.example.test:%34%34%33", REFUSED),
    // Refused: brackets around something that is not an IPv6 literal.
    ("[admin.example.test]", REFUSED),
    ("[admin.example.test]:443", REFUSED),
    ("[192.0.2.1]", REFUSED),
    ("[v1.admin]", REFUSED),
    ("[::1%25eth0]", REFUSED),
    ("[::1]admin.example.test", REFUSED),
    ("admin.example.test]", REFUSED),
    // Refused: several hosts (Envoy joins two Host headers with a comma).
    ("admin.example.test,www.example.test", REFUSED),
    ("www.example.test,admin.example.test", REFUSED),
    ("www.example.test, admin.example.test", REFUSED),
    // Refused: ports that are not 1 to 65535 in digits.
    ("admin.example.test:80:80", REFUSED),
    ("www.example.test:80:admin.example.test", REFUSED),
    ("admin.example.test:x", REFUSED),
    ("admin.example.test:0", REFUSED),
    ("admin.example.test:65536", REFUSED),
    ("admin.example.test:+80", REFUSED),
    ("admin.example.test: 80", REFUSED),
    ("admin.example.test:80 ", REFUSED),
    ("admin.example.test::80", REFUSED),
    // Refused: characters outside RFC 3986's reg-name.
    ("admin.example.test\\", REFUSED),
    ("admin.example.test\\x", REFUSED),
    ("admin.example.test/x", REFUSED),
    ("admin.example.test?x", REFUSED),
    ("admin.example.test#x", REFUSED),
    ("admin.example.test ", REFUSED),
    (" admin.example.test", REFUSED),
    ("admin.example.test\t", REFUSED),
    ("admin .example.test", REFUSED),
    ("admin\u{0}.example.test", REFUSED),
    ("\u{e4}dmin.example.test", REFUSED),
    ("\u{ff41}dmin.example.test", REFUSED),
    ("admin\u{3002}example.test", REFUSED),
    ("admin.example.test|", REFUSED),
    // Refused: empty labels, names that end in a number but are not dotted-decimal.
    (".admin.example.test", REFUSED),
    ("admin..example.test", REFUSED),
    ("admin.example.test..", REFUSED),
    ("0x7f.1", REFUSED),
    ("2130706433", REFUSED),
    ("127.1", REFUSED),
    ("010.0.0.1", REFUSED),
    ("admin.example.123", REFUSED),
    // Refused: empty, or no host.
    ("", REFUSED),
    (":443", REFUSED),
];

fn error_for(status: u16) -> Option<String> {
    match status {
        200 => None,
        400 => Some("invalid_request".into()),
        401 => Some("unauthorized".into()),
        403 => Some("insufficient_scope".into()),
        _ => panic!("{status}"),
    }
}

/// Where a verdict at some level is 200 while a stack routes the authority to a host that
/// needs more.
fn bypasses(filter: &Filter, headers: &[(&str, &str)], host_value: &str) -> Vec<String> {
    let mut found = Vec::new();
    for level in LEVELS {
        if filter.verdict(headers, level).0 != 200 {
            continue;
        }
        for (name, read) in &HOST_MODELS {
            if let Some(host) = read(host_value)
                && host_need(&host) > level
            {
                found.push(format!(
                    "{host_value:?} allowed with {level:?}, but {name} reads {host:?}"
                ));
            }
        }
    }
    found
}

#[test]
fn no_authority_is_allowed_below_what_some_stack_routes_it_to() {
    let filter = Filter::new();
    let mut wrong = Vec::new();
    let mut found = Vec::new();
    for (authority, want) in CASES {
        let headers = [(":authority", *authority)];
        for (level, status) in LEVELS.iter().zip(want) {
            let got = filter.verdict(&headers, *level);
            let expected = (*status, error_for(*status));
            if got != expected {
                wrong.push(format!(
                    "{authority:?} with {level:?}: {got:?}, expected {expected:?}"
                ));
            }
        }
        found.extend(bypasses(&filter, &headers, authority));
    }
    assert!(found.is_empty(), "bypasses:\n{}", found.join("\n"));
    assert!(wrong.is_empty(), "verdicts:\n{}", wrong.join("\n"));
    assert!(CASES.len() >= 70, "{}", CASES.len());
}

#[test]
fn several_values_or_none_are_refused() {
    let filter = Filter::new();
    let refused = (400, Some("invalid_request".to_string()));
    for headers in [
        // No authority: a stack would pick its default host, which may be any of them.
        &[][..],
        &[
            (":authority", "www.example.test"),
            (":authority", "admin.example.test"),
        ],
        &[
            (":authority", "admin.example.test"),
            (":authority", "admin.example.test"),
        ],
        // A `host` header next to `:authority` (HTTP/2) that names another host.
        &[
            (":authority", "www.example.test"),
            ("host", "admin.example.test"),
        ],
        &[("host", "www.example.test"), ("host", "admin.example.test")],
    ] {
        for level in LEVELS {
            assert_eq!(
                filter.verdict(headers, level),
                refused,
                "{headers:?} {level:?}"
            );
        }
    }
    // One that reads the same is not a disagreement; a `host` alone is the authority.
    let admin = |headers: &[(&str, &str)]| LEVELS.map(|level| filter.verdict(headers, level).0);
    assert_eq!(
        admin(&[
            (":authority", "admin.example.test"),
            ("host", "ADMIN.example.test:")
        ]),
        ADMIN
    );
    assert_eq!(admin(&[("host", "admin.example.test")]), ADMIN);
}

/// The models read the examples the way their stacks do, so that the matrix can
/// catch a bypass: each refused example is routed to the admin host by at least one stack.
#[test]
fn stack_models_read_the_known_attacks() {
    let read = |name: &str, host: &str| {
        let (_, model) = HOST_MODELS.iter().find(|m| m.0.starts_with(name)).unwrap();
        model(host)
    };
    let admin = Some("admin.example.test".to_string());
    // An empty port: Express, WHATWG, Python, Go, Tomcat and nginx read the name.
    for stack in [
        "node express",
        "node WHATWG",
        "python urllib",
        "go",
        "java",
        "nginx",
    ] {
        assert_eq!(read(stack, "admin.example.test:"), admin, "{stack}");
    }
    // Userinfo: WHATWG and Python drop it; Go refuses it; Express keeps it in the name.
    assert_eq!(read("node WHATWG", "x@admin.example.test"), admin);
    assert_eq!(read("python urllib", "x@admin.example.test"), admin);
    assert_eq!(read("go", "x@admin.example.test"), None);
    assert_eq!(
        read("node express", "x@admin.example.test"),
        Some("x@admin.example.test".into())
    );
    // Percent-encoding: WHATWG decodes it.
    assert_eq!(read("node WHATWG", "admin%2eexample.test"), admin);
    // Brackets around a name: Go's SplitHostPort and Python take them off.
    assert_eq!(read("go", "[admin.example.test]:443"), admin);
    assert_eq!(read("python urllib", "[admin.example.test]"), admin);
    assert_eq!(read("node WHATWG", "[admin.example.test]"), None);
    // A second port, or anything after the first `:`: Express, Python and nginx.
    for stack in ["node express", "python urllib", "nginx"] {
        assert_eq!(read(stack, "admin.example.test:80:80"), admin, "{stack}");
        assert_eq!(read(stack, "admin.example.test:x"), admin, "{stack}");
    }
    // `\` ends the authority for WHATWG; a trailing dot is dropped by nginx and Django.
    assert_eq!(read("node WHATWG", "admin.example.test\\x"), admin);
    assert_eq!(read("nginx", "admin.example.test."), admin);
    assert_eq!(read("python django", "admin.example.test."), admin);
    // Names that end in a number are IPv4 addresses to WHATWG.
    assert_eq!(read("node WHATWG", "0x7f.1"), Some("127.0.0.1".into()));
    assert_eq!(read("node WHATWG", "2130706433"), Some("127.0.0.1".into()));
    assert_eq!(read("node WHATWG", "010.0.0.1"), Some("8.0.0.1".into()));
    // Case: every stack compares names ignoring it.
    for (name, model) in &HOST_MODELS {
        assert_eq!(model("ADMIN.Example.TEST"), admin, "{name}");
    }
    // The refusals close real gaps: most refused cases are read as the admin or API host by
    // at least one stack (the others are refused by a stack, or name no one host).
    let mut admin_somewhere = 0;
    for (authority, verdicts) in CASES {
        if *verdicts == REFUSED
            && HOST_MODELS
                .iter()
                .any(|(_, m)| m(authority).is_some_and(|h| host_need(&h) > Need::Nothing))
        {
            admin_somewhere += 1;
        }
    }
    assert!(admin_somewhere >= 20, "{admin_somewhere}");
}
