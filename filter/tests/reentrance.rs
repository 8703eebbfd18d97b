//! A host that calls back into the worker from inside its own host calls (which Envoy and
//! the harness never do: they defer such callbacks) must not make the worker panic: the
//! borrows of its cells never overlap, and where one must stay alive across a host call
//! (the remote key sets) a callback finds it busy and fails closed. Every host call here
//! runs a tick, a decision, a key-server answer and a stream's end, one level deep.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::unreachable,
    reason = "test code: a panic fails the test, and never runs in the VM"
)]

use jwt_filter::config::{Config, ProviderId};
use jwt_filter::decision::worker::{Host, Level, Metric, Next, Worker};
use jwt_filter::http::request::{HeaderChanges, Request};
use jwt_filter::jose::verify::InWasm;
use jwt_filter::keys::shared::{SetError, SharedData};
use jwt_filter::policy::response::Reply;
use jwt_filter_testkit::keys::{public_jwk, sign};
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};

const ISSUER: &str = "https://issuer.test/";
const NOW_MS: u64 = 1_700_000_000_000;

struct Reentrant {
    worker: Weak<Worker<Reentrant, InWasm>>,
    data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    request: Request,
    jwks: String,
    /// Whether a callback runs now (callbacks do not nest deeper than one level).
    inside: Cell<bool>,
    reentered: Cell<u32>,
    next_token: Cell<u32>,
    /// The statuses sent (200 when a request went upstream).
    answers: RefCell<Vec<u16>>,
}

impl Reentrant {
    /// Calls back into the worker, as a host that re-entered the VM would.
    fn reenter(&self) {
        if self.inside.replace(true) {
            return;
        }
        if let Some(worker) = self.worker.upgrade() {
            self.reentered.set(self.reentered.get() + 1);
            worker.on_tick();
            let _ = worker.decide(NOW_MS);
            let token = self.next_token.get();
            let limit = worker.answer_limit(token);
            let body = &self.jwks.as_bytes()[..self.jwks.len().min(limit)];
            worker.on_call_response(token, Some(200), body, None);
            worker.on_stream_done(7);
        }
        self.inside.set(false);
    }
}

impl SharedData for Reentrant {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.reenter();
        self.data.borrow().get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        self.reenter();
        let mut data = self.data.borrow_mut();
        let current = data.get(key).map_or(0, |(_, c)| *c);
        if cas != 0 && data.contains_key(key) && cas != current {
            return Err(SetError::CasMismatch);
        }
        data.insert(key.to_string(), (value.to_vec(), current + 1));
        Ok(())
    }
}

impl Host for Reentrant {
    fn now_ms(&self) -> u64 {
        self.reenter();
        NOW_MS
    }
    fn log(&self, _: Level, _: std::fmt::Arguments<'_>) {
        self.reenter();
    }
    fn count(&self, _: Metric, _: u64) {
        self.reenter();
    }
    fn key_age(&self, _: ProviderId, _: u64) {
        self.reenter();
    }
    fn shared(&self) -> &dyn SharedData {
        self
    }
    fn request(&self) -> Request {
        self.reenter();
        self.request.clone()
    }
    fn enter(&self, _: u32) -> bool {
        self.reenter();
        true
    }
    fn apply(&self, _: &HeaderChanges) {
        self.reenter();
    }
    fn property(&self, _: &[&str]) -> Option<Vec<u8>> {
        self.reenter();
        None
    }
    fn reply(&self, reply: &Reply) {
        self.reenter();
        self.answers.borrow_mut().push(reply.status);
    }
    fn resume(&self) {
        self.reenter();
        self.answers.borrow_mut().push(200);
    }
    fn request_body(&self, _: usize) -> Vec<u8> {
        self.reenter();
        Vec::new()
    }
    fn dispatch(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &[(String, String)],
        _: u64,
    ) -> Result<u32, String> {
        self.reenter();
        let token = self.next_token.get() + 1;
        self.next_token.set(token);
        Ok(token)
    }
}

fn worker(token: &str) -> Rc<Worker<Reentrant, InWasm>> {
    let config = json!({
        "providers": {"idp": {
            "issuer": ISSUER, "audiences": ["api"], "algorithms": ["ES256"],
            "remote_jwks": {"cluster": "idp", "uri": "http://idp.test/jwks", "timeout_ms": 1000}
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider": "idp"}}]
    });
    let config = Config::parse(config.to_string().as_bytes()).unwrap();
    let authorization = format!("Bearer {token}");
    let request = Request::from_pairs(&[
        (b":method", b"GET"),
        (b":path", b"/api"),
        (b":authority", b"api.test"),
        (b"authorization", authorization.as_bytes()),
    ]);
    let jwks = json!({"keys": [public_jwk("ec256", "a")]}).to_string();
    Rc::new_cyclic(|weak| {
        let host = Reentrant {
            worker: weak.clone(),
            data: RefCell::new(HashMap::new()),
            request,
            jwks,
            inside: Cell::new(false),
            reentered: Cell::new(0),
            next_token: Cell::new(0),
            answers: RefCell::new(Vec::new()),
        };
        Worker::new(host, 0, config, InWasm)
    })
}

fn token(aud: &str) -> String {
    let claims = json!({"iss": ISSUER, "aud": aud, "sub": "u",
                        "exp": NOW_MS / 1000 + 3600, "iat": NOW_MS / 1000});
    sign("ec256", &json!({"alg": "ES256", "kid": "a"}), &claims)
}

/// A request, its key fetch, the key server's answer and ticks, with callbacks from inside
/// every host call: no panic, and a token for another audience is never let through.
#[test]
fn callbacks_from_inside_host_calls_never_panic() {
    for (aud, may_pass) in [("api", true), ("other", false)] {
        let w = worker(&token(aud));
        let first = w.on_request(7, true);
        let jwks = w.host().jwks.clone();
        let token = w.host().next_token.get();
        w.on_call_response(token, Some(200), jwks.as_bytes(), None);
        for _ in 0..3 {
            w.on_tick();
        }
        let again = w.on_request(8, true);
        w.on_stream_done(7);
        w.on_stream_done(8);
        assert!(w.host().reentered.get() > 0);
        let answers = w.host().answers.borrow();
        let passed = first == Next::Continue || again == Next::Continue || answers.contains(&200);
        assert!(
            may_pass || !passed,
            "{aud}: {first:?} {again:?} {answers:?}"
        );
    }
}
