//! The identity-header matrix: spellings of the headers the filter writes (case, `_`/`-`,
//! other symbols, duplicates, empty values) × how upstream stacks key header names
//! (testkit/src/header_names.rs) × the ways a request goes upstream (a public route, a verified
//! token, report mode with a refused token, no rule with `unmatched: allow`, a passed CORS
//! preflight). No stack may read, under the name of an identity header, a value the filter
//! did not write; what the filter writes must arrive; and names that no stack reads as an
//! identity are left alone.
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
use jwt_filter::decision::authenticator::{Authenticator, FixedKeys, Pass};
use jwt_filter::http::request::{HeaderChanges, Request};
use jwt_filter::jose::jwks::{KeySet, Origin};
use jwt_filter::jose::verify::InWasm;
use jwt_filter_testkit::header_names::{STACKS, forwarded, reads};
use jwt_filter_testkit::keys::{self, NOW};
use serde_json::{Value, json};

/// The headers the filter writes, as configured.
const IDENTITIES: [&str; 3] = ["x-user-id", "x-roles", "x-jwt-payload"];

/// Spellings a client may send for `x-user-id` (and, by the same pattern, the others).
const SPELLINGS: [&str; 14] = [
    "x-user-id",
    "X-User-Id",
    "X-USER-ID",
    "x_user_id",
    "X_User_Id",
    "X_USER_ID",
    "x-user_id",
    "x_user-id",
    "x.user.id",
    "X.User-Id",
    "x~user~id",
    "x+user*id",
    "x|user'id",
    "X^User`Id",
];

/// Names near an identity that no modelled stack reads as one: left alone.
const NEAR: [&str; 5] = [
    "x-user-ids",
    "xuserid",
    "x--user-id",
    "x-user-i",
    "x_user_idd",
];

fn config(mode: &str, unmatched: &str, cors: &str) -> Value {
    json!({
        "mode": mode,
        "unmatched": unmatched,
        "cors_preflight": cors,
        "providers": {"auth0": {
            "issuer": "https://issuer.test/", "audiences": ["https://api.test"],
            "remote_jwks": {"cluster": "idp", "uri": "http://idp.test/.well-known/jwks.json"},
            "claim_to_headers": [{"claim": "sub", "header": "x-user-id"},
                                 {"claim": "roles", "header": "X-Roles"}],
            "forward_payload_header": "x-jwt-payload"
        }},
        "rules": [
            {"match": {"prefix": "/api/public"}},
            {"match": {"prefix": "/api/private"}, "requires": {"provider": "auth0"}}
        ]
    })
}

struct Filter {
    authenticator: Authenticator<InWasm>,
    keys: FixedKeys,
}

impl Filter {
    fn new(config: &Value) -> Self {
        let jwks = json!({"keys": [keys::public_jwk("rsa-a", "a")]}).to_string();
        Filter {
            authenticator: Authenticator::new(
                Config::parse(config.to_string().as_bytes()).unwrap(),
                InWasm,
            ),
            keys: FixedKeys {
                set: KeySet::parse(jwks.as_bytes(), Origin::Remote).unwrap().set,
                refetch_allowed: false,
            },
        }
    }

    /// The changes for a request that goes upstream; `None` when it is refused.
    fn changes(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
    ) -> Option<HeaderChanges> {
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        match self
            .authenticator
            .decide(&Request::new(method, path, &pairs), NOW, &self.keys)
        {
            Ok(Pass::Forward { changes, .. }) => Some(changes),
            _ => None,
        }
    }
}

fn bearer(claims: &Value) -> String {
    format!(
        "Bearer {}",
        keys::sign("rsa-a", &json!({"alg": "RS256", "kid": "a"}), claims)
    )
}

fn good_claims() -> Value {
    json!({"iss": "https://issuer.test/", "aud": "https://api.test", "sub": "user-1",
           "roles": ["user", "ops"], "exp": NOW + 3600})
}

/// `spelling` of `x-user-id` carried over to `identity` (same case and separators).
fn respell(spelling: &str, identity: &str) -> Option<String> {
    let template = "x-user-id";
    if identity.len() != template.len() {
        // Other lengths: keep the case pattern of the first letter and the separators.
        let sep = spelling.chars().find(|c| !c.is_ascii_alphanumeric())?;
        let upper = spelling.starts_with(|c: char| c.is_ascii_uppercase());
        let out: String = identity
            .chars()
            .map(|c| if c == '-' { sep } else { c })
            .collect();
        return Some(if upper { out.to_ascii_uppercase() } else { out });
    }
    Some(
        spelling
            .chars()
            .zip(identity.chars())
            .map(|(s, i)| {
                if !s.is_ascii_alphanumeric() {
                    s
                } else if s.is_ascii_uppercase() {
                    i.to_ascii_uppercase()
                } else {
                    i
                }
            })
            .collect(),
    )
}

/// One way a request reaches the upstream.
struct Path {
    name: &'static str,
    config: Value,
    method: &'static str,
    path: &'static str,
    /// Headers that make it go (a token, a preflight's).
    extra: Vec<(String, String)>,
    /// What the filter writes on this path: (identity, value).
    written: Vec<(&'static str, String)>,
}

fn paths() -> Vec<Path> {
    let token = bearer(&good_claims());
    let payload = token.split('.').nth(1).unwrap_or_default().to_string();
    let expired = bearer(
        &json!({"iss": "https://issuer.test/", "aud": "https://api.test",
                                 "sub": "admin", "exp": NOW - 3600}),
    );
    let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    vec![
        Path {
            name: "public route",
            config: config("enforce", "deny", "authenticate"),
            method: "GET",
            path: "/api/public/x",
            extra: Vec::new(),
            written: Vec::new(),
        },
        Path {
            name: "verified token",
            config: config("enforce", "deny", "authenticate"),
            method: "GET",
            path: "/api/private/x",
            extra: h(&[("Authorization", &token)]),
            written: vec![
                ("x-user-id", "user-1".to_string()),
                ("x-roles", "user,ops".to_string()),
                ("x-jwt-payload", payload),
            ],
        },
        Path {
            name: "report mode, expired token",
            config: config("report", "deny", "authenticate"),
            method: "GET",
            path: "/api/private/x",
            extra: h(&[("Authorization", &expired)]),
            written: Vec::new(),
        },
        Path {
            name: "report mode, no token",
            config: config("report", "deny", "authenticate"),
            method: "GET",
            path: "/api/private/x",
            extra: Vec::new(),
            written: Vec::new(),
        },
        Path {
            name: "no rule, unmatched allow",
            config: config("enforce", "allow", "authenticate"),
            method: "GET",
            path: "/elsewhere",
            extra: Vec::new(),
            written: Vec::new(),
        },
        Path {
            name: "CORS preflight passed",
            config: config("enforce", "deny", "pass"),
            method: "OPTIONS",
            path: "/api/private/x",
            extra: h(&[
                ("Origin", "https://app.test"),
                ("Access-Control-Request-Method", "GET"),
            ]),
            written: Vec::new(),
        },
    ]
}

/// Requests that spoof identities: each spelling alone, twice, with an empty value, next
/// to the genuine spelling, and all spellings at once; plus the near names.
fn spoofs() -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    for identity in IDENTITIES {
        for spelling in SPELLINGS {
            let Some(name) = respell(spelling, identity) else {
                continue;
            };
            let one = |v: &str| (name.clone(), v.to_string());
            out.push(vec![one("admin")]);
            out.push(vec![one("admin"), one("root")]);
            out.push(vec![one("")]);
            out.push(vec![(identity.to_string(), "admin".into()), one("root")]);
            out.push(vec![one("root"), (identity.to_uppercase(), "admin".into())]);
        }
    }
    let all: Vec<(String, String)> = IDENTITIES
        .iter()
        .flat_map(|i| SPELLINGS.iter().filter_map(|s| respell(s, i)))
        .map(|n| (n, "admin".to_string()))
        .collect();
    out.push(all);
    out
}

/// For one request: what every stack reads under every identity, against what the filter
/// wrote. Returns the failures.
fn check(
    path: &Path,
    filter: &Filter,
    spoof: &[(String, String)],
    strip: impl Fn(&HeaderChanges) -> Vec<String>,
) -> Vec<String> {
    let mut headers = spoof.to_vec();
    headers.extend(path.extra.iter().cloned());
    headers.extend(NEAR.iter().map(|n| (n.to_string(), "near".to_string())));
    let Some(changes) = filter.changes(path.method, path.path, &headers) else {
        return vec![format!("{}: refused {spoof:?}", path.name)];
    };
    let upstream = forwarded(&headers, &strip(&changes), &changes.set);
    let mut failures = Vec::new();
    for stack in &STACKS {
        for identity in IDENTITIES {
            let want: Vec<&str> = path
                .written
                .iter()
                .filter(|(i, _)| *i == identity)
                .map(|(_, v)| v.as_str())
                .collect();
            let got = reads(stack, &upstream, identity);
            if got != want {
                failures.push(format!(
                    "{} / {}: {identity} reads {got:?}, the filter wrote {want:?}; sent {spoof:?}",
                    path.name, stack.name
                ));
            }
        }
    }
    for near in NEAR {
        if !upstream.iter().any(|(n, v)| n == near && v == "near") {
            failures.push(format!("{}: {near} was stripped", path.name));
        }
    }
    failures
}

#[test]
fn no_stack_reads_an_identity_the_filter_did_not_write() {
    let spoofs = spoofs();
    let mut cases = 0;
    let mut failures = Vec::new();
    for path in paths() {
        let filter = Filter::new(&path.config);
        // Without a spoof, too: what the filter writes arrives.
        for spoof in std::iter::once(Vec::new()).chain(spoofs.iter().cloned()) {
            failures.extend(check(&path, &filter, &spoof, |c| c.remove.clone()));
            cases += STACKS.len() * IDENTITIES.len();
        }
    }
    assert!(cases > 10_000, "only {cases} cases");
    assert!(
        failures.is_empty(),
        "{} of {cases} readings fail, e.g.:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
}

#[test]
fn the_matrix_catches_a_filter_that_strips_exact_names_only() {
    // The filter before issue 29: only the configured spelling (any case) is removed.
    let exact_only = |c: &HeaderChanges| {
        c.remove
            .iter()
            .filter(|n| IDENTITIES.contains(&n.as_str()))
            .cloned()
            .collect::<Vec<_>>()
    };
    let path = &paths()[0];
    let filter = Filter::new(&path.config);
    let spoof = vec![("X_User_Id".to_string(), "admin".to_string())];
    let failures = check(path, &filter, &spoof, exact_only);
    assert!(
        failures.iter().any(|f| f.contains("CGI/WSGI")),
        "{failures:?}"
    );
    // Go does not fold `_`: it never read this spoof, stripped or not.
    assert!(!failures.iter().any(|f| f.contains("Go net/http")));
    assert!(check(path, &filter, &spoof, |c| c.remove.clone()).is_empty());
}

#[test]
fn removals_name_each_received_spelling_once() {
    let path = &paths()[0];
    let filter = Filter::new(&path.config);
    let spoof: Vec<(String, String)> = ["X_User_Id", "x_user_id", "X-User-Id", "x.user.id"]
        .iter()
        .map(|n| (n.to_string(), "admin".to_string()))
        .collect();
    let changes = filter.changes("GET", "/api/public", &spoof).unwrap();
    assert_eq!(changes.remove, ["x_user_id", "x-user-id", "x.user.id"]);
    // Nothing to remove, nothing listed.
    let plain = vec![("accept".to_string(), "*/*".to_string())];
    assert!(
        filter
            .changes("GET", "/api/public", &plain)
            .unwrap()
            .remove
            .is_empty()
    );
}
