//! Minimising a failing case: drop actions, answer overrides, the mutated configuration and
//! property values, workers, headers and bodies,
//! plain method, path and authority, halve header names and values and the path; keep each
//! change that still fails the same way, until none does or the budget of runs is spent.

use super::case::{Action, Case};
use crate::host::Request;

/// The smallest case found that `fails`, trying at most `budget` candidates.
pub fn shrink(mut case: Case, budget: usize, mut fails: impl FnMut(&Case) -> bool) -> Case {
    let mut left = budget;
    'outer: while left > 0 {
        for candidate in candidates(&case) {
            if left == 0 {
                break 'outer;
            }
            left -= 1;
            if fails(&candidate) {
                case = candidate;
                continue 'outer;
            }
        }
        break;
    }
    case
}

/// Every one-step simplification of `case`, biggest first.
fn candidates(case: &Case) -> Vec<Case> {
    let mut out: Vec<Case> = (0..case.actions.len())
        .rev()
        .map(|i| case.without(i))
        .collect();
    for i in 0..case.routes.len() {
        let mut c = case.clone();
        c.routes.remove(i);
        out.push(c);
    }
    if case.config.is_some() {
        out.push(Case {
            config: None,
            ..case.clone()
        });
    }
    for i in 0..case.properties.len() {
        let mut c = case.clone();
        c.properties.remove(i);
        out.push(c);
    }
    if case.workers > 1 {
        let mut c = case.clone();
        c.workers = 1;
        for a in &mut c.actions {
            if let Action::Request { worker, .. } = a {
                *worker = 0;
            }
        }
        out.push(c);
    }
    for i in case.request_actions() {
        let Action::Request { request, .. } = &case.actions[i] else {
            continue;
        };
        for simpler in simpler_requests(request) {
            let mut c = case.clone();
            if let Action::Request { request, .. } = &mut c.actions[i] {
                *request = simpler;
            }
            out.push(c);
        }
    }
    out
}

fn simpler_requests(r: &Request) -> Vec<Request> {
    let mut out = Vec::new();
    let mut with = |edit: &dyn Fn(&mut Request)| {
        let mut s = r.clone();
        edit(&mut s);
        if s != *r {
            out.push(s);
        }
    };
    for i in 0..r.headers.len() {
        with(&|s| {
            s.headers.remove(i);
        });
    }
    with(&|s| s.body = None);
    with(&|s| s.method = b"GET".to_vec());
    with(&|s| s.path = b"/".to_vec());
    with(&|s| s.authority = b"api.test".to_vec());
    for i in 0..r.headers.len() {
        for half in halves(&r.headers[i].0) {
            with(&|s| s.headers[i].0 = half.clone());
        }
        for half in halves(&r.headers[i].1) {
            with(&|s| s.headers[i].1 = half.clone());
        }
    }
    for half in halves(&r.path) {
        with(&|s| s.path = half.clone());
    }
    out
}

/// The two halves of `value` (none when it is a single byte or empty).
fn halves(value: &[u8]) -> Vec<Vec<u8>> {
    if value.len() < 2 {
        return Vec::new();
    }
    let mid = value.len() / 2;
    vec![value[..mid].to_vec(), value[mid..].to_vec()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&[u8], &[u8])]) -> Action {
        Action::Request {
            worker: 1,
            id: None,
            request: Request {
                method: b"POST".to_vec(),
                path: b"/some/path".to_vec(),
                authority: b"api.test".to_vec(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .collect(),
                body: Some(b"body".to_vec()),
                properties: Default::default(),
            },
            check: None,
        }
    }

    fn has_ff(case: &Case) -> bool {
        case.actions.iter().any(|a| {
            matches!(a, Action::Request { request, .. }
                if request.headers.iter().any(|(_, v)| v.contains(&0xff)))
        })
    }

    #[test]
    fn shrinks_to_the_one_byte_that_fails() {
        let case = Case {
            base: 0,
            workers: 3,
            routes: vec![("idp".into(), "/".into(), serde_json::json!({"status": 500}))],
            config: Some(serde_json::json!({"a": 1})),
            properties: vec![("a.b".into(), serde_json::json!("x"))],
            actions: vec![
                request(&[(b"x-a", b"1")]),
                Action::Advance { ms: 10 },
                request(&[(b"x-b", b"ok"), (b"x-cc", b"abc\xffdefgh"), (b"x-d", b"2")]),
                Action::Advance { ms: 20 },
            ],
        };
        assert!(has_ff(&case));
        let small = shrink(case, 1000, has_ff);
        assert_eq!(small.workers, 1);
        assert!(small.routes.is_empty());
        assert!(small.config.is_none() && small.properties.is_empty());
        assert_eq!(small.actions.len(), 1);
        let Action::Request {
            request, worker, ..
        } = &small.actions[0]
        else {
            panic!("{small:?}")
        };
        assert_eq!(*worker, 0);
        assert_eq!(request.headers, vec![(b"x".to_vec(), b"\xff".to_vec())]);
        assert_eq!(
            (
                request.method.as_slice(),
                request.path.as_slice(),
                request.body.as_ref()
            ),
            (&b"GET"[..], &b"/"[..], None)
        );
    }

    #[test]
    fn stops_at_the_budget() {
        let case = Case {
            base: 0,
            workers: 1,
            routes: Vec::new(),
            config: None,
            properties: Vec::new(),
            actions: vec![request(&[(b"x", b"\xff")]), Action::Advance { ms: 1 }],
        };
        let mut runs = 0;
        let same = shrink(case.clone(), 0, |_| {
            runs += 1;
            true
        });
        assert_eq!((same, runs), (case, 0));
    }
}
