//! Each binding rule, by a request that breaks only that rule.

use super::*;
use crate::jose::base64url;
use crate::jose::jwks;
use crate::jose::verify::InWasm;
use crate::testkit::{NOW, public_jwk, sign};
use serde_json::json;

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2ln";

fn jwk() -> Value {
    let mut jwk = public_jwk("ec256", "-");
    jwk.as_object_mut().map(|o| o.remove("kid"));
    jwk
}

fn thumbprint() -> String {
    base64url::encode(&jwks::proof_key(&jwk()).unwrap().1)
}

fn sha256_b64(bytes: &[u8]) -> String {
    base64url::encode(&jwks::sha256(bytes))
}

fn proof() -> String {
    sign(
        "ec256",
        &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk()}),
        &json!({"htm": "GET", "htu": "https://api.test/x", "iat": NOW, "jti": "j", "ath": sha256_b64(TOKEN.as_bytes())}),
    )
}

fn request(authorization: &str, proofs: &[&str]) -> Request {
    let mut headers = vec![
        (":scheme", "https"),
        (":authority", "api.test"),
        ("authorization", authorization),
    ];
    headers.extend(proofs.iter().map(|p| ("dpop", *p)));
    Request::new("GET", "/x", &headers)
}

fn dpop_request() -> Request {
    request(&format!("DPoP {TOKEN}"), &[&proof()])
}

fn policy(mode: DpopMode) -> DpopPolicy {
    DpopPolicy::new(mode, DpopPolicy::algorithms(), 300, 30, None)
}

fn claims(cnf: Value) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("sub".into(), json!("u1"));
    if !cnf.is_null() {
        claims.insert("cnf".into(), cnf);
    }
    claims
}

/// A connection whose client certificate has this digest.
struct Certificate([u8; 32]);

impl Connection for Certificate {
    fn peer_certificate_sha256(&self) -> Option<[u8; 32]> {
        Some(self.0)
    }
}

fn token_check(
    cnf: Value,
    scheme: Scheme,
    req: &Request,
    mtls: MtlsMode,
    connection: &dyn Connection,
) -> Result<Option<ProofUse>, Failure> {
    let claims = claims(cnf);
    let dpop = policy(DpopMode::Allowed);
    check_token(
        &Presented {
            claims: &claims,
            token: TOKEN,
            scheme,
        },
        &BindingCheck {
            req,
            connection,
            now: NOW,
            dpop: &dpop,
            mtls,
            max_proof_bytes: 8192,
            verifier: &InWasm,
        },
    )
}

fn description(failure: Failure) -> String {
    match failure {
        Failure::InvalidToken { description, .. } | Failure::InvalidRequest(description) => {
            description
        }
        Failure::InvalidDpopProof(d) => format!("proof: {d}"),
        other => format!("{other:?}"),
    }
}

#[test]
fn request_rules_before_any_token_is_verified() {
    let bearer = request(&format!("Bearer {TOKEN}"), &[]);
    let bearer_with_proof = request(&format!("Bearer {TOKEN}"), &[&proof()]);
    let no_proof = request(&format!("DPoP {TOKEN}"), &[]);
    let two = request(&format!("DPoP {TOKEN}"), &[&proof(), &proof()]);
    let comma = request(
        &format!("DPoP {TOKEN}"),
        &[&format!("{},{}", proof(), proof())],
    );
    let cases: [(Scheme, &Request, DpopMode, Result<(), &str>); 9] = [
        (Scheme::Bearer, &bearer, DpopMode::Allowed, Ok(())),
        (Scheme::Bearer, &bearer, DpopMode::Disabled, Ok(())),
        (Scheme::Dpop, &dpop_request(), DpopMode::Allowed, Ok(())),
        (
            Scheme::Bearer,
            &bearer,
            DpopMode::Required,
            Err("DPoP-bound token required: use the DPoP authentication scheme"),
        ),
        (
            Scheme::Dpop,
            &dpop_request(),
            DpopMode::Disabled,
            Err("The DPoP authentication scheme is not accepted"),
        ),
        (
            Scheme::Bearer,
            &bearer_with_proof,
            DpopMode::Allowed,
            Err("DPoP proof requires the DPoP authentication scheme, not Bearer"),
        ),
        (
            Scheme::Dpop,
            &no_proof,
            DpopMode::Allowed,
            Err("Missing DPoP proof"),
        ),
        (
            Scheme::Dpop,
            &two,
            DpopMode::Required,
            Err("Multiple DPoP proofs"),
        ),
        (
            Scheme::Dpop,
            &comma,
            DpopMode::Allowed,
            Err("Multiple DPoP proofs"),
        ),
    ];
    for (scheme, req, mode, want) in cases {
        let got = check_request(scheme, req, &policy(mode)).map_err(description);
        assert_eq!(got, want.map_err(str::to_string), "{scheme:?} {mode:?}");
    }
    // A proof sent with Bearer to a provider with DPoP disabled is none of its business.
    assert!(
        check_request(
            Scheme::Bearer,
            &bearer_with_proof,
            &policy(DpopMode::Disabled)
        )
        .is_ok()
    );
}

#[test]
fn a_dpop_request_needs_an_authority_read_as_one_host_unless_an_origin_is_set() {
    let on = |authorities: &[&str], origin: Option<&str>| {
        let mut headers = vec![(":scheme", "https")];
        headers.extend(authorities.iter().map(|a| (":authority", *a)));
        let token = format!("DPoP {TOKEN}");
        let proof = proof();
        headers.extend([("authorization", token.as_str()), ("dpop", proof.as_str())]);
        let req = Request::new("GET", "/x", &headers);
        let policy = DpopPolicy::new(
            DpopMode::Allowed,
            DpopPolicy::algorithms(),
            300,
            30,
            origin.map(String::from),
        );
        check_request(Scheme::Dpop, &req, &policy).map_err(description)
    };
    assert_eq!(on(&["API.test:"], None), Ok(()));
    for authorities in [
        &["x@api.test"][..],
        &["api%2etest"],
        &["[api.test]"],
        &["api.test,api.test"],
        &["api.test", "api.test"],
    ] {
        assert_eq!(
            on(authorities, None),
            Err("Ambiguous request authority".to_string()),
            "{authorities:?}"
        );
    }
    assert_eq!(on(&[], None), Err("Missing request authority".to_string()));
    // With `dpop.origin`, the request's authority is not compared: not read.
    assert_eq!(on(&["x@api.test"], Some("https://api.test")), Ok(()));
    // Bearer requests never read it.
    let bearer = Request::new("GET", "/x", &[(":authority", "x@api.test")]);
    assert_eq!(
        check_request(Scheme::Bearer, &bearer, &policy(DpopMode::Allowed)),
        Ok(())
    );
}

#[test]
fn a_dpop_bound_token_needs_the_dpop_scheme_and_its_key() {
    let bound = json!({ "jkt": thumbprint() });
    let bearer = request(&format!("Bearer {TOKEN}"), &[]);
    let got = token_check(
        bound.clone(),
        Scheme::Bearer,
        &bearer,
        MtlsMode::Allowed,
        &NoCertificate,
    );
    assert_eq!(
        got.map_err(description),
        Err("DPoP-bound token requires the DPoP authentication scheme, not Bearer".into())
    );
    let got = token_check(
        bound,
        Scheme::Dpop,
        &dpop_request(),
        MtlsMode::Allowed,
        &NoCertificate,
    );
    assert!(matches!(got, Ok(Some(ProofUse { until_s, .. })) if until_s == NOW + 301));
    let other_key = json!({ "jkt": sha256_b64(b"another key") });
    let got = token_check(
        other_key,
        Scheme::Dpop,
        &dpop_request(),
        MtlsMode::Allowed,
        &NoCertificate,
    );
    assert_eq!(
        got.map_err(description),
        Err("JWT Access Token confirmation mismatch".into())
    );
    let unbound = token_check(
        Value::Null,
        Scheme::Dpop,
        &dpop_request(),
        MtlsMode::Allowed,
        &NoCertificate,
    );
    assert_eq!(
        unbound.map_err(description),
        Err("JWT Access Token has no jkt confirmation claim".into())
    );
    // The proof itself is checked (here: for another token).
    let for_another_token = request("DPoP other.token.here", &[&proof()]);
    let bound = claims(json!({ "jkt": thumbprint() }));
    let dpop = policy(DpopMode::Allowed);
    let got = check_token(
        &Presented {
            claims: &bound,
            token: "other.token.here",
            scheme: Scheme::Dpop,
        },
        &BindingCheck {
            req: &for_another_token,
            connection: &NoCertificate,
            now: NOW,
            dpop: &dpop,
            mtls: MtlsMode::Allowed,
            max_proof_bytes: 8192,
            verifier: &InWasm,
        },
    );
    assert_eq!(
        got.map_err(description),
        Err("proof: DPoP Proof 'ath' mismatch".into())
    );
}

#[test]
fn a_certificate_bound_token_needs_that_certificate() {
    let digest = [7u8; 32];
    let bound = json!({ "x5t#S256": crate::jose::base64url::encode(&digest) });
    let bearer = request(&format!("Bearer {TOKEN}"), &[]);
    let check = |cnf: Value, mtls, connection: &dyn Connection| {
        token_check(cnf, Scheme::Bearer, &bearer, mtls, connection).map_err(description)
    };
    assert_eq!(
        check(bound.clone(), MtlsMode::Allowed, &Certificate(digest)),
        Ok(None)
    );
    assert_eq!(
        check(bound.clone(), MtlsMode::Allowed, &Certificate([8; 32])),
        Err("Certificate-bound token does not match the client certificate".into())
    );
    assert_eq!(
        check(bound.clone(), MtlsMode::Allowed, &NoCertificate),
        Err("Certificate-bound token requires a client certificate".into())
    );
    assert_eq!(
        check(bound, MtlsMode::Required, &Certificate(digest)),
        Ok(None)
    );
    assert_eq!(
        check(Value::Null, MtlsMode::Required, &Certificate(digest)),
        Err("Certificate-bound token required".into())
    );
    assert_eq!(
        check(Value::Null, MtlsMode::Allowed, &NoCertificate),
        Ok(None)
    );
}

#[test]
fn a_token_bound_both_ways_needs_both_proofs() {
    let digest = [7u8; 32];
    let both = json!({ "jkt": thumbprint(), "x5t#S256": crate::jose::base64url::encode(&digest) });
    let with_cert = token_check(
        both.clone(),
        Scheme::Dpop,
        &dpop_request(),
        MtlsMode::Allowed,
        &Certificate(digest),
    );
    assert!(matches!(with_cert, Ok(Some(_))));
    let without = token_check(
        both,
        Scheme::Dpop,
        &dpop_request(),
        MtlsMode::Allowed,
        &NoCertificate,
    );
    assert_eq!(
        without.map_err(description),
        Err("Certificate-bound token requires a client certificate".into())
    );
}

#[test]
fn a_binding_the_filter_cannot_check_is_refused() {
    let bearer = request(&format!("Bearer {TOKEN}"), &[]);
    for (cnf, want) in [
        (json!("jkt"), "Invalid 'cnf' confirmation claim"),
        (json!([]), "Invalid 'cnf' confirmation claim"),
        (json!({}), "Invalid 'cnf' confirmation claim"),
        (
            json!({"jwk": {"kty": "EC"}}),
            "Unsupported confirmation method in 'cnf'",
        ),
        (
            json!({"kid": "k1"}),
            "Unsupported confirmation method in 'cnf'",
        ),
        (
            json!({"x5t#S256": "abc", "extra": 1}),
            "Unsupported confirmation method in 'cnf'",
        ),
        (json!({"jkt": 5}), "Malformed 'jkt' confirmation claim"),
        (json!({"jkt": ""}), "Malformed 'jkt' confirmation claim"),
        (
            json!({"x5t#S256": null}),
            "Malformed 'x5t#S256' confirmation claim",
        ),
    ] {
        let got = token_check(
            cnf.clone(),
            Scheme::Bearer,
            &bearer,
            MtlsMode::Allowed,
            &NoCertificate,
        );
        assert_eq!(got.map_err(description), Err(want.to_string()), "{cnf}");
    }
}

#[test]
fn the_dpop_scheme_is_recognised_in_any_case() {
    assert!(uses_dpop_scheme(&request("dpop x", &[])));
    assert!(uses_dpop_scheme(&request("DPoP x", &[])));
    assert!(!uses_dpop_scheme(&request("Bearer x", &[])));
    assert!(!uses_dpop_scheme(&request("DPoPx", &[])));
    // The scheme reads as extraction reads it: a tab after it too.
    assert!(uses_dpop_scheme(&request("DPoP\tx", &[])));
}
