//! Simulated upstream clusters: per cluster and path, scripted answers taken in turn.

use std::collections::BTreeMap;

use super::grpc::GrpcReply;
use super::{HeaderMap, envoy};

/// One scripted answer of a cluster route.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// An HTTP answer after `delay_ms` of virtual time (Envoy times it out if that is longer
    /// than the call's timeout). `status` is the `:status` value as delivered (one that is
    /// not three digits is Envoy's 502). `grpc`: what it adds for a gRPC request.
    Respond {
        status: Vec<u8>,
        headers: HeaderMap,
        body: Vec<u8>,
        delay_ms: u64,
        grpc: Option<GrpcReply>,
    },
    /// Accepts the request and never answers: Envoy answers 504 at the call's timeout.
    Hang,
    /// The stream is reset after the answer had started (headers sent, then the connection
    /// closes mid-body): the filter's callback sees no headers at all.
    Reset { delay_ms: u64 },
    /// The connection closes before any answer: Envoy answers 503 itself.
    Close { delay_ms: u64 },
    /// The connection fails: Envoy answers 503 itself, at once.
    Unreachable,
}

/// What the filter receives for a call, and when.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub at_ms: u64,
    /// `None`: the call failed (`on_http_call_response` with zero headers).
    pub headers: Option<HeaderMap>,
    pub body: Vec<u8>,
    /// Envoy made this answer itself (a timeout, a connection that failed or closed).
    pub by_envoy: bool,
}

impl Answer {
    /// The delivery of this answer to a call made at `now_ms` with `timeout_ms`.
    pub fn deliver(&self, now_ms: u64, timeout_ms: u64) -> Delivery {
        let envoy = |status: u16, body: &str| Delivery {
            at_ms: now_ms,
            headers: Some(vec![
                (b":status".to_vec(), status.to_string().into_bytes()),
                (
                    b"content-length".to_vec(),
                    body.len().to_string().into_bytes(),
                ),
                (b"content-type".to_vec(), b"text/plain".to_vec()),
            ]),
            body: body.as_bytes().to_vec(),
            by_envoy: true,
        };
        let timed_out = Delivery {
            at_ms: now_ms + timeout_ms,
            ..envoy(504, envoy::TIMEOUT)
        };
        match self {
            Answer::Respond { delay_ms, .. }
            | Answer::Reset { delay_ms }
            | Answer::Close { delay_ms }
                if *delay_ms >= timeout_ms =>
            {
                timed_out
            }
            Answer::Hang => timed_out,
            // Envoy's codec refuses a status line without a three-digit code: 502.
            Answer::Respond {
                status, delay_ms, ..
            } if status.len() != 3 || !status.iter().all(u8::is_ascii_digit) => Delivery {
                at_ms: now_ms + delay_ms,
                ..envoy(502, envoy::PROTOCOL_ERROR)
            },
            Answer::Respond {
                status,
                headers,
                body,
                delay_ms,
                ..
            } => {
                let mut all = vec![(b":status".to_vec(), status.clone())];
                all.extend(headers.iter().cloned());
                if !headers.iter().any(|(n, _)| n == b"content-length") {
                    all.push((
                        b"content-length".to_vec(),
                        body.len().to_string().into_bytes(),
                    ));
                }
                Delivery {
                    at_ms: now_ms + delay_ms,
                    headers: Some(all),
                    body: body.clone(),
                    by_envoy: false,
                }
            }
            Answer::Reset { delay_ms } => Delivery {
                at_ms: now_ms + delay_ms,
                headers: None,
                body: Vec::new(),
                by_envoy: false,
            },
            Answer::Close { delay_ms } => Delivery {
                at_ms: now_ms + delay_ms,
                ..envoy(503, envoy::CONNECTION_TERMINATION)
            },
            Answer::Unreachable => envoy(503, envoy::CONNECTION_FAILURE),
        }
    }
}

/// Answers given in turn; the last one repeats.
#[derive(Clone, Debug, PartialEq)]
struct Script {
    answers: Vec<Answer>,
    used: usize,
}

/// Scripted answers by path (`*` matches any path without its own script).
#[derive(Clone, Debug, Default)]
pub struct Routes {
    scripts: BTreeMap<String, Script>,
    /// Answers asked for, scripted or not.
    asked: usize,
}

impl Routes {
    /// Replaces the script of `path`.
    pub fn set(&mut self, path: &str, answers: Vec<Answer>) {
        self.scripts
            .insert(path.to_string(), Script { answers, used: 0 });
    }

    /// The next answer for `path` (exact path, then without the query, then `*`), if one is
    /// scripted.
    pub fn next(&mut self, path: &str) -> Option<Answer> {
        self.asked += 1;
        let bare = path.split('?').next().unwrap_or(path);
        let key = [path, bare, "*"]
            .into_iter()
            .find(|k| self.scripts.contains_key(*k))?;
        let script = self.scripts.get_mut(key)?;
        let i = script.used.min(script.answers.len().saturating_sub(1));
        script.used += 1;
        script.answers.get(i).cloned()
    }

    /// These routes (a setup's) as they stand after a start with `boot` left `after`: the
    /// scripts the start took answers from keep their place. `None` when that start is not
    /// this one's: other paths (another route would match), or other answers on a path the
    /// start used. A start that asked these routes nothing goes with any.
    pub fn resume(&self, boot: &Routes, after: &Routes) -> Option<Routes> {
        if after.asked == boot.asked {
            return Some(self.clone());
        }
        if !self.scripts.keys().eq(boot.scripts.keys()) {
            return None;
        }
        let mut routes = self.clone();
        for (path, used) in after.scripts.iter().filter(|(_, s)| s.used > 0) {
            if self.scripts.get(path)?.answers != boot.scripts.get(path)?.answers {
                return None;
            }
            routes.scripts.insert(path.clone(), used.clone());
        }
        Some(routes)
    }
}

/// The clusters a filter may call, each with its routes.
#[derive(Clone, Debug, Default)]
pub struct Clusters {
    routes: BTreeMap<String, Routes>,
}

impl Clusters {
    /// Declares `cluster` (a cluster without routes answers 404 to everything).
    pub fn declare(&mut self, cluster: &str) {
        self.routes.entry(cluster.to_string()).or_default();
    }

    /// The routes of `cluster`, declaring it.
    pub fn routes(&mut self, cluster: &str) -> &mut Routes {
        self.routes.entry(cluster.to_string()).or_default()
    }

    /// The clusters' names.
    pub fn names(&self) -> Vec<String> {
        self.routes.keys().cloned().collect()
    }

    /// [`Routes::resume`] for every cluster (the same clusters, or `None`).
    pub fn resume(&self, boot: &Clusters, after: &Clusters) -> Option<Clusters> {
        if !self.routes.keys().eq(boot.routes.keys()) {
            return None;
        }
        let mut clusters = Clusters::default();
        for (name, routes) in &self.routes {
            let resumed = routes.resume(boot.routes.get(name)?, after.routes.get(name)?)?;
            clusters.routes.insert(name.clone(), resumed);
        }
        Some(clusters)
    }

    pub fn knows(&self, cluster: &str) -> bool {
        self.routes.contains_key(cluster)
    }

    /// The next answer for a request to `cluster` `path`, else 404.
    pub fn answer(&mut self, cluster: &str, path: &str) -> Answer {
        let scripted = self.routes.get_mut(cluster).and_then(|r| r.next(path));
        scripted.unwrap_or(Answer::Respond {
            status: b"404".to_vec(),
            headers: Vec::new(),
            body: b"not found".to_vec(),
            delay_ms: 0,
            grpc: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(status: u16, delay_ms: u64) -> Answer {
        Answer::Respond {
            status: status.to_string().into_bytes(),
            headers: vec![],
            body: b"x".to_vec(),
            delay_ms,
            grpc: None,
        }
    }

    #[test]
    fn answers_in_turn_last_repeats_and_lookup_order() {
        let mut c = Clusters::default();
        c.routes("idp").set("/a", vec![ok(500, 0), ok(200, 0)]);
        c.routes("idp").set("*", vec![ok(201, 0)]);
        c.declare("empty");
        let status = |a: Answer| match a {
            Answer::Respond { status, .. } => status,
            _ => Vec::new(),
        };
        assert_eq!(status(c.answer("idp", "/a?x=1")), b"500");
        assert_eq!(status(c.answer("idp", "/a")), b"200");
        assert_eq!(status(c.answer("idp", "/a")), b"200");
        assert_eq!(status(c.answer("idp", "/b")), b"201");
        assert_eq!(status(c.answer("empty", "/b")), b"404");
        assert!(c.knows("empty") && !c.knows("other"));
    }

    #[test]
    fn a_start_resumes_with_other_routes_only_where_it_asked_nothing() {
        let mut boot = Routes::default();
        boot.set("/k", vec![ok(200, 0)]);
        let mut other = boot.clone();
        other.set("*", vec![ok(500, 0)]);
        other.set("/k", vec![ok(503, 0)]);
        // A start that asked nothing: any routes go, as they are.
        let resumed = other.resume(&boot, &boot.clone()).unwrap();
        assert_eq!(resumed.scripts, other.scripts);
        // A start that asked (even a path without a script): the paths must be the same and
        // the answers it took too.
        let mut after = boot.clone();
        assert_eq!(after.next("/x"), None);
        assert!(other.resume(&boot, &after).is_none());
        let mut same_paths = boot.clone();
        same_paths.set("/k", vec![ok(503, 0)]);
        assert!(same_paths.resume(&boot, &after).is_some());
        assert!(after.next("/k").is_some());
        assert!(same_paths.resume(&boot, &after).is_none());
    }

    #[test]
    fn deliveries_follow_envoy() {
        let d = ok(200, 100).deliver(1000, 5000);
        assert_eq!(d.at_ms, 1100);
        assert_eq!(
            d.headers.as_ref().unwrap()[0],
            (b":status".to_vec(), b"200".to_vec())
        );
        let late = ok(200, 6000).deliver(1000, 5000);
        assert_eq!(
            (late.at_ms, late.headers.unwrap()[0].1.as_slice()),
            (6000, &b"504"[..])
        );
        assert_eq!(Answer::Hang.deliver(0, 300).at_ms, 300);
        assert_eq!(Answer::Reset { delay_ms: 0 }.deliver(7, 300).headers, None);
        let unreachable = Answer::Unreachable.deliver(7, 300);
        assert_eq!(
            (
                unreachable.headers.unwrap()[0].1.as_slice(),
                unreachable.body.len()
            ),
            (&b"503"[..], 98)
        );
        let closed = Answer::Close { delay_ms: 5 }.deliver(7, 300);
        assert_eq!(
            (
                closed.at_ms,
                closed.headers.unwrap()[0].1.as_slice(),
                closed.body.len()
            ),
            (12, &b"503"[..], 95)
        );
    }
}
