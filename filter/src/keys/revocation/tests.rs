use super::*;
use serde_json::json;

fn claims(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

const NOW: u64 = 1_700_000_000;

#[test]
fn a_list_revokes_by_jti_sid_sub_and_time() {
    let list = br#"{"revoked": [{"jti": "j1"}, {"sid": "s1"}, {"sub": "u1"},
        {"sub": "u2", "issued_before": 1700000000}], "issued_before": 1600000000}"#;
    let r = parse_list(list, 10).unwrap();
    let token = |c: Value| r.matches(&claims(c));
    assert!(token(json!({"jti": "j1", "iat": NOW})));
    assert!(token(json!({"sid": "s1", "iat": NOW})));
    assert!(token(json!({"sub": "u1", "iat": NOW + 100})));
    assert!(token(json!({"sub": "u2", "iat": NOW - 1})));
    assert!(!token(json!({"sub": "u2", "iat": NOW})));
    // Everything issued before the global time.
    assert!(token(json!({"sub": "other", "iat": 1_599_999_999})));
    assert!(!token(
        json!({"sub": "other", "jti": "j2", "sid": "s2", "iat": NOW})
    ));
    // Without iat, a time-bound entry fails closed.
    assert!(token(json!({"sub": "u2"})));
    assert!(token(json!({"sub": "other"})));
    // Values of another type never match.
    assert!(!token(json!({"jti": ["j1"], "sid": 1, "iat": NOW})));
}

#[test]
fn a_list_is_strict_and_refused_whole() {
    for bad in [
        &br#"[]"#[..],
        br#"{}"#,
        br#"{"revoked": {}}"#,
        br#"{"revoked": [], "extra": 1}"#,
        br#"{"revoked": [], "issued_before": -1}"#,
        br#"{"revoked": [], "issued_before": 0}"#,
        br#"{"revoked": [], "issued_before": "1"}"#,
        br#"{"revoked": [{"jti": "j1"}, {"jti": "j2", "note": "x"}]}"#,
        br#"{"revoked": [{"jti": "j1", "sid": "s1"}]}"#,
        br#"{"revoked": [{"jti": "j1", "issued_before": 5}]}"#,
        br#"{"revoked": [{"sid": "s1", "issued_before": 5}]}"#,
        br#"{"revoked": [{"jti": ""}]}"#,
        br#"{"revoked": [{"jti": 5}]}"#,
        br#"{"revoked": [{}]}"#,
        br#"{"revoked": ["j1"]}"#,
        br#"{"revoked": [{"jti": "a", "jti": "b"}]}"#,
    ] {
        assert!(
            parse_list(bad, 10).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    assert!(parse_list(br#"{"revoked": []}"#, 10).unwrap().is_empty());
}

#[test]
fn a_list_over_its_bound_is_refused_with_its_count_only() {
    let list = br#"{"revoked": [{"jti": "secret-1"}, {"jti": "secret-2"}, {"jti": "secret-3"}]}"#;
    let error = parse_list(list, 2).unwrap_err();
    assert_eq!(error, "3 entries, more than max_entries 2");
    assert_eq!(parse_list(list, 3).unwrap().len(), 3);
    let bad = br#"{"revoked": [{"jti": "secret-1", "x": "secret-2"}]}"#;
    assert!(!parse_list(bad, 3).unwrap_err().contains("secret"));
}

fn receiver() -> Vec<String> {
    vec!["client-1".to_string()]
}

fn expect(audiences: &[String]) -> Expect<'_> {
    Expect {
        audiences,
        now: NOW,
        window_s: 300,
        skew_s: 5,
    }
}

fn logout() -> Value {
    json!({"iss": "https://issuer.test/", "aud": "client-1", "iat": NOW, "jti": "l1",
           "sid": "s1", "sub": "u1", "events": {BACKCHANNEL_LOGOUT: {}}})
}

#[test]
fn a_logout_token_names_a_session_or_a_subject() {
    let audiences = receiver();
    let event = check_event(Pushes::Logout, &claims(logout()), &expect(&audiences)).unwrap();
    assert_eq!(
        event,
        Event {
            jti: "l1".into(),
            iat: NOW,
            sid: Some("s1".into()),
            sub: None
        }
    );
    let mut by_sub = logout();
    by_sub.as_object_mut().unwrap().remove("sid");
    let event = check_event(Pushes::Logout, &claims(by_sub), &expect(&audiences)).unwrap();
    assert_eq!((event.sid, event.sub), (None, Some("u1".into())));
}

/// Each rule of Back-Channel Logout 1.0 section 2.6, one change each.
#[test]
fn a_logout_token_is_checked_per_its_spec() {
    let audiences = receiver();
    let refused = |change: &dyn Fn(&mut Map<String, Value>)| {
        let mut c = claims(logout());
        change(&mut c);
        check_event(Pushes::Logout, &c, &expect(&audiences)).unwrap_err()
    };
    assert_eq!(
        refused(&|c| {
            c.insert("aud".into(), json!("other"));
        }),
        "aud does not name this receiver"
    );
    assert_eq!(
        refused(&|c| {
            c.remove("iat");
        }),
        "iat missing or out of window"
    );
    assert_eq!(
        refused(&|c| {
            c.insert("iat".into(), json!(NOW - 301));
        }),
        "iat missing or out of window"
    );
    assert_eq!(
        refused(&|c| {
            c.insert("iat".into(), json!(NOW + 301));
        }),
        "iat missing or out of window"
    );
    assert_eq!(
        refused(&|c| {
            c.insert("exp".into(), json!(NOW - 6));
        }),
        "token is expired"
    );
    assert_eq!(
        refused(&|c| {
            c.remove("jti");
        }),
        "jti missing or invalid"
    );
    assert_eq!(
        refused(&|c| {
            c.insert("jti".into(), json!("a\nb"));
        }),
        "jti missing or invalid"
    );
    assert_eq!(
        refused(&|c| {
            c.remove("events");
        }),
        "events missing"
    );
    assert_eq!(
        refused(&|c| {
            c.insert("events".into(), json!({SESSION_REVOKED: {}}));
        }),
        "no back-channel logout event"
    );
    assert_eq!(
        refused(&|c| {
            c.insert("events".into(), json!({BACKCHANNEL_LOGOUT: "yes"}));
        }),
        "event is not an object"
    );
    assert_eq!(
        refused(&|c| {
            c.insert("nonce".into(), json!("n"));
        }),
        "nonce not allowed"
    );
    assert_eq!(
        refused(&|c| {
            c.remove("sid");
            c.remove("sub");
        }),
        "neither sid nor sub"
    );
    assert_eq!(
        refused(&|c| {
            c.insert("sid".into(), json!(5));
        }),
        "sid or sub invalid"
    );
}

fn set(event: &str, subject: Value) -> Value {
    json!({"iss": "https://issuer.test/", "aud": "client-1", "iat": NOW, "jti": "e1",
           "events": {event: {"subject": subject}}})
}

#[test]
fn security_event_tokens_revoke_sessions_and_subjects() {
    let audiences = receiver();
    let check = |c: Value| check_event(Pushes::Set, &claims(c), &expect(&audiences));
    let session = check(set(
        SESSION_REVOKED,
        json!({"format": "opaque", "id": "s9"}),
    ))
    .unwrap();
    assert_eq!((session.sid, session.sub), (Some("s9".into()), None));
    let user = json!({"format": "iss_sub", "iss": "https://issuer.test/", "sub": "u9"});
    let all = check(set(SESSION_REVOKED, user.clone())).unwrap();
    assert_eq!((all.sid, all.sub), (None, Some("u9".into())));
    let changed = check(set(CREDENTIAL_CHANGE, user)).unwrap();
    assert_eq!((changed.sid, changed.sub), (None, Some("u9".into())));
    // Shared Signals' sub_id at the top level.
    let mut top = set(SESSION_REVOKED, json!(null));
    top["events"][SESSION_REVOKED] = json!({});
    top["sub_id"] = json!({"format": "opaque", "id": "s8"});
    assert_eq!(check(top).unwrap().sid, Some("s8".into()));
    // Refused: another issuer's subject, an unknown format, no supported event, no subject.
    let other = json!({"format": "iss_sub", "iss": "https://other.test/", "sub": "u9"});
    assert!(check(set(CREDENTIAL_CHANGE, other)).is_err());
    assert!(
        check(set(
            SESSION_REVOKED,
            json!({"format": "email", "email": "a@b"})
        ))
        .is_err()
    );
    assert_eq!(
        check(set(
            "https://example.test/other",
            json!({"format": "opaque", "id": "s"})
        ))
        .unwrap_err(),
        "no supported event"
    );
    let mut bare = set(SESSION_REVOKED, json!(null));
    bare["events"][SESSION_REVOKED] = json!({});
    assert_eq!(check(bare).unwrap_err(), "neither sid nor sub");
    // A SET is checked like a logout token for aud, iat and jti.
    let mut late = set(SESSION_REVOKED, json!({"format": "opaque", "id": "s9"}));
    late["iat"] = json!(NOW - 1000);
    assert!(check(late).is_err());
}

#[test]
fn pushed_revocations_are_recorded_bounded_and_replay_checked() {
    let event = Event {
        jti: "l1".into(),
        iat: NOW,
        sid: Some("s1".into()),
        sub: None,
    };
    let bounds = (3600, 300, 4);
    let once = Pushed::default().with(&event, NOW, bounds).unwrap();
    let read = Pushed::decode(&once.encode()).unwrap();
    assert_eq!(read, once);
    assert!(
        read.revoked()
            .matches(&claims(json!({"sid": "s1", "iat": NOW})))
    );
    assert!(
        !read
            .revoked()
            .matches(&claims(json!({"sid": "s2", "iat": NOW})))
    );
    // The same jti again: a replay, until it is forgotten.
    assert_eq!(
        once.clone().with(&event, NOW + 10, bounds),
        Err(Refused::Replayed)
    );
    assert!(once.clone().with(&event, NOW + 301, bounds).is_ok());
    // A subject: its tokens issued until now, not later ones.
    let by_sub = Event {
        jti: "l2".into(),
        sid: None,
        sub: Some("u1".into()),
        ..event.clone()
    };
    let twice = once.clone().with(&by_sub, NOW, bounds).unwrap();
    let revoked = Pushed::decode(&twice.encode()).unwrap().revoked();
    assert!(revoked.matches(&claims(json!({"sub": "u1", "iat": NOW}))));
    assert!(!revoked.matches(&claims(json!({"sub": "u1", "iat": NOW + 1}))));
    // Full: refused, not recorded; expired entries make room.
    let third = Event {
        jti: "l3".into(),
        ..by_sub.clone()
    };
    assert_eq!(twice.clone().with(&third, NOW, bounds), Err(Refused::Full));
    assert!(twice.clone().with(&third, NOW + 3601, bounds).is_ok());
    // Records of another shape are not read.
    assert_eq!(Pushed::decode(b"s x 1 v\n"), None);
    assert_eq!(Pushed::decode(b"s 1\n"), None);
    assert_eq!(Pushed::decode(b"").unwrap(), Pushed::default());
}
