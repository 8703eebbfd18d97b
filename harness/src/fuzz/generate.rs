//! Generating a case from the corpus: requests mutated from the scenarios' (bytes in every
//! field, header sets, tokens), answers mutated from the routes', workers interleaved through
//! paused requests, awaits and cancels, and virtual time jumps.

use serde_json::Value;

use super::case::{Action, BACKEND, Case};
use super::corpus::{Base, Corpus};
use super::mutate::{self, Rng};
use crate::host::Request;
use crate::scenario::bytes::Bytes;

/// The marker value of spoofed identity headers (the identity oracle looks for it upstream).
pub const SPOOF: &[u8] = b"fuzz-spoof";

const METHODS: &[&[u8]] = &[
    b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"get", b"",
];

/// Virtual time jumps: around the usual timeouts, cooldowns and cache lifetimes. Long ones
/// are rare.
const JUMPS_MS: &[u64] = &[0, 1, 100, 999, 4_999, 5_000, 5_001, 30_000, 31_000, 120_000];
const LONG_JUMPS_MS: &[u64] = &[600_001, 3_600_000];

/// Jumps from this long on are stalls (the event loop stuck, or the clock stepping forward:
/// one tick per VM at the end, as Envoy does), shorter ones advances (every tick on the way,
/// and this filter ticks every 100 ms on every VM: an hour's advance is 36,000 ticks a VM,
/// which made the fuzzer spend nine tenths of its time ticking). 10 s is above every default
/// deadline the filter keeps by its ticks (a fetch's 5 s `timeout_ms`, an introspection's
/// 2 s, etcd's 1 s), so the jumps around those (999 ms, 4,999 to 5,001 ms) still see each
/// tick on the way, as in a live Envoy; the jumps beyond (a 30 s cooldown, cache lifetimes,
/// an hour) are the scale of a suspended worker or a clock step, where the filter sees the
/// whole jump on one tick. Requests awaited still run every tick while they wait.
pub const STALL_FROM_MS: u64 = 10_000;

/// The share of cases whose configuration is mutated.
pub const CONFIG_PERCENT: usize = 10;

/// Case `n` of `seed`: the same numbers always give the same case.
pub fn case(corpus: &Corpus, seed: u64, n: u64) -> Case {
    let mut rng = Rng::new(seed, n);
    let base_index = rng.below(corpus.bases.len());
    let base = &corpus.bases[base_index];
    let workers = [1, 1, 1, 2, 2, 3][rng.below(6)];
    let mut routes = Vec::new();
    for (cluster, path, good) in &base.routes {
        if rng.chance(25) {
            routes.push((
                cluster.clone(),
                path.clone(),
                mutate::answer(&mut rng, good, &corpus.dict),
            ));
        }
    }
    // The main upstream's answers too: filters read response headers and bodies.
    if rng.chance(25) {
        let answer = mutate::answer(&mut rng, br#"{"message":"ok"}"#, &corpus.dict);
        routes.push((BACKEND.into(), "*".into(), answer));
    }
    // Near-valid configurations (a member dropped, duplicated or retyped), and the host's
    // property values.
    let config = match base.json.get("config") {
        Some(c) if rng.chance(CONFIG_PERCENT) => mutate::config(&mut rng, c).map(|(c, _)| c),
        _ => None,
    };
    let mut properties = Vec::new();
    if let Some(Value::Object(given)) = base.json.get("properties") {
        for (name, value) in given {
            if rng.chance(15) {
                let Ok(bytes) = crate::scenario::bytes::from_json(value) else {
                    continue;
                };
                let mutated = mutate::bytes(&mut rng, bytes.as_slice(), &corpus.dict);
                properties.push((name.clone(), Bytes::to_json(&mutated)));
            }
        }
    }
    let mut actions = Vec::new();
    let mut open: Vec<String> = Vec::new();
    let mut sent = 0;
    for _ in 0..1 + rng.below(8) {
        let roll = rng.below(100);
        if roll < 60 || actions.is_empty() {
            let request = request(&mut rng, corpus, base);
            let id = rng.chance(30).then(|| format!("r{sent}"));
            sent += 1;
            open.extend(id.clone());
            actions.push(Action::Request {
                worker: rng.below(workers),
                id,
                request,
                check: None,
            });
        } else if roll < 75 {
            let jumps = if rng.chance(5) {
                LONG_JUMPS_MS
            } else {
                JUMPS_MS
            };
            let ms = jumps[rng.below(jumps.len())];
            actions.push(if ms >= STALL_FROM_MS {
                Action::Stall { ms }
            } else {
                Action::Advance { ms }
            });
        } else if roll < 85 && !base.routes.is_empty() {
            let (cluster, path, good) = &base.routes[rng.below(base.routes.len())];
            actions.push(Action::Upstream {
                cluster: cluster.clone(),
                path: path.clone(),
                answer: answer_or_good(&mut rng, good, corpus),
            });
        } else if !open.is_empty() {
            let id = open.remove(rng.below(open.len()));
            actions.push(if roll < 93 {
                Action::Await { id }
            } else {
                Action::Cancel { id }
            });
        }
    }
    actions.extend(open.into_iter().map(|id| Action::Await { id }));
    Case {
        base: base_index,
        workers,
        routes,
        config,
        properties,
        actions,
    }
}

/// A hostile answer, or now and then the good one again (recovery after garbage).
fn answer_or_good(rng: &mut Rng, good: &[u8], corpus: &Corpus) -> Value {
    if rng.chance(30) {
        serde_json::json!({"body": Bytes::to_json(good)})
    } else {
        mutate::answer(rng, good, &corpus.dict)
    }
}

/// A request from the scenarios (mostly the base's own), with mutations.
fn request(rng: &mut Rng, corpus: &Corpus, base: &Base) -> Request {
    let other = rng.pick(&corpus.bases).unwrap_or(base);
    let from = if rng.chance(80) { base } else { other };
    let mut r = rng.pick(&from.requests).cloned().unwrap_or(Request {
        method: b"GET".to_vec(),
        path: b"/".to_vec(),
        authority: b"api.test".to_vec(),
        headers: Vec::new(),
        body: None,
        properties: Default::default(),
    });
    let dict = &corpus.dict;
    if rng.chance(15) {
        r.method = match rng.below(2) {
            0 => METHODS[rng.below(METHODS.len())].to_vec(),
            _ => mutate::bytes(rng, &r.method, dict),
        };
    }
    if rng.chance(30) {
        r.path = mutate::bytes(rng, &r.path, dict);
    }
    if rng.chance(10) {
        r.authority = mutate::bytes(rng, &r.authority, dict);
    }
    for _ in 0..rng.below(4) {
        edit_headers(rng, corpus, base, &mut r);
    }
    if rng.chance(10) {
        r.body = Some(mutate::bytes(rng, r.body.as_deref().unwrap_or(b"{}"), dict));
    }
    r
}

fn edit_headers(rng: &mut Rng, corpus: &Corpus, base: &Base, r: &mut Request) {
    let dict = &corpus.dict;
    let n = r.headers.len();
    match rng.below(8) {
        0 | 1 => {
            let token = rng.pick(&corpus.tokens).cloned().unwrap_or_default();
            let token = if rng.chance(80) {
                mutate::token(rng, &token, &corpus.tokens, dict)
            } else {
                token
            };
            let (name, value) = match rng.below(4) {
                0 => (
                    b"cookie".to_vec(),
                    [b"session=".as_slice(), &token].concat(),
                ),
                1 => (rng.pick(dict).cloned().unwrap_or_default(), token),
                _ => {
                    let prefixes: [&[u8]; 6] = [
                        b"Bearer ",
                        b"Bearer ",
                        b"bearer ",
                        b"Bearer  ",
                        b"Basic ",
                        b"",
                    ];
                    let prefix = prefixes[rng.below(prefixes.len())];
                    (b"authorization".to_vec(), [prefix, &token].concat())
                }
            };
            r.headers.push((name, value));
        }
        2 if n > 0 => {
            let i = rng.below(n);
            r.headers[i].1 = mutate::bytes(rng, &r.headers[i].1, dict);
        }
        3 if n > 0 => {
            let i = rng.below(n);
            r.headers[i].0 = mutate::bytes(rng, &r.headers[i].0, dict);
        }
        4 if n > 0 => {
            let i = rng.below(n);
            r.headers.push(r.headers[i].clone());
        }
        5 if n > 0 => {
            r.headers.remove(rng.below(n));
        }
        6 if !base.identity.is_empty() => {
            let name = base.identity[rng.below(base.identity.len())].clone();
            let value = if rng.chance(50) {
                SPOOF.to_vec()
            } else {
                [SPOOF, &mutate::bytes(rng, b"", dict)].concat()
            };
            r.headers.push((name, value));
        }
        _ => {
            let name = rng
                .pick(dict)
                .cloned()
                .unwrap_or_else(|| b"x-fuzz".to_vec());
            let value = mutate::bytes(rng, b"value", dict);
            r.headers.push((name, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::corpus::Base;
    use serde_json::json;

    fn corpus() -> Corpus {
        let get = |path: &str, auth: &str| Request {
            method: b"GET".to_vec(),
            path: path.as_bytes().to_vec(),
            authority: b"api.test".to_vec(),
            headers: vec![(b"authorization".to_vec(), auth.as_bytes().to_vec())],
            body: None,
            properties: Default::default(),
        };
        Corpus {
            bases: vec![Base {
                name: "b".into(),
                file: "b.json".into(),
                dir: ".".into(),
                json: json!({"config": {}}),
                requests: vec![get("/a", "Bearer e30.e30.c2ln"), get("/b", "x")],
                routes: vec![("idp".into(), "/k".into(), b"{\"keys\":[]}".to_vec())],
                identity: vec![b"x-user".to_vec()],
            }],
            tokens: vec![b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln".to_vec()],
            dict: vec![b"/a".to_vec(), b"x-api-token".to_vec()],
            skipped: Vec::new(),
        }
    }

    #[test]
    fn deterministic_for_a_seed() {
        let corpus = corpus();
        let first: Vec<Case> = (0..50).map(|n| case(&corpus, 7, n)).collect();
        let again: Vec<Case> = (0..50).map(|n| case(&corpus, 7, n)).collect();
        assert_eq!(first, again);
        let other: Vec<Case> = (0..50).map(|n| case(&corpus, 8, n)).collect();
        assert_ne!(first, other);
        assert_ne!(first[0], first[1], "cases of one seed differ");
    }

    #[test]
    fn long_jumps_are_stalls_and_short_ones_advances() {
        let corpus = corpus();
        let (mut advances, mut stalls) = (0, 0);
        for n in 0..2_000 {
            for a in case(&corpus, 1, n).actions {
                match a {
                    Action::Advance { ms } => {
                        assert!(ms < STALL_FROM_MS, "advance {ms}");
                        advances += 1;
                    }
                    Action::Stall { ms } => {
                        assert!(ms >= STALL_FROM_MS, "stall {ms}");
                        stalls += 1;
                    }
                    _ => {}
                }
            }
        }
        assert!(
            advances > 100 && stalls > 50,
            "{advances} advances, {stalls} stalls"
        );
    }

    #[test]
    fn every_paused_request_is_awaited_or_cancelled() {
        let corpus = corpus();
        for n in 0..200 {
            let c = case(&corpus, 1, n);
            for a in &c.actions {
                if let Action::Request { id: Some(id), .. } = a {
                    assert!(c.actions.iter().any(|b| matches!(b,
                        Action::Await { id: i } | Action::Cancel { id: i } if i == id)));
                }
            }
        }
    }
}
