//! A fuzz case: a base scenario's setup, answer overrides and actions. It runs as a scenario,
//! and the same scenario, written to a file, reproduces a finding.

use serde_json::{Map, Value, json};

use crate::host::Request;
use crate::scenario::bytes::Bytes;

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// With an `id` the request is left paused (`"wait": false`) and awaited by a later
    /// [`Action::Await`]; without one it is waited for. `check` adds expectations on its
    /// outcome (the identity oracle's).
    Request {
        worker: usize,
        id: Option<String>,
        request: Request,
        check: Option<Value>,
    },
    /// The clock moves `ms`, every tick and answer on the way running at its time.
    Advance {
        ms: u64,
    },
    /// The event loop stalls for `ms` (a scenario's `stall`): the clock jumps, then what fell
    /// due runs and each VM ticks once.
    Stall {
        ms: u64,
    },
    /// Replaces the answers of one route.
    Upstream {
        cluster: String,
        path: String,
        answer: Value,
    },
    Await {
        id: String,
    },
    Cancel {
        id: String,
    },
}

/// The name `routes` gives the main route's upstream (no cluster can be named so).
pub const BACKEND: &str = "";

#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// Which corpus base (scenario) gives the configuration and upstreams.
    pub base: usize,
    pub workers: usize,
    /// Answers replaced before the start: (cluster, path, answer); the cluster `BACKEND`
    /// is the main route's upstream (the scenario's `backend`).
    pub routes: Vec<(String, String, Value)>,
    /// The configuration instead of the base's (a mutated one).
    pub config: Option<Value>,
    /// Property values replaced: (scenario property name, value as scenario JSON).
    pub properties: Vec<(String, Value)>,
    pub actions: Vec<Action>,
}

impl Case {
    /// The scenario that runs this case: `base`'s setup (configuration, upstreams, clock,
    /// host options) with the overrides, one step per action. Every request must finish.
    pub fn scenario(&self, base: &Value, name: &str, description: &str) -> Value {
        let mut s = Map::new();
        s.insert("name".into(), json!(name));
        s.insert("description".into(), json!(description));
        for key in [
            "config",
            "vm_config",
            "verify_signature",
            "start",
            "log_level",
            "upstreams",
            "backend",
            "properties",
            "allow_on_headers_stop_iteration",
            "env",
        ] {
            if let Some(v) = base.get(key) {
                s.insert(key.into(), v.clone());
            }
        }
        s.insert("workers".into(), json!(self.workers));
        if let Some(config) = &self.config {
            s.insert("config".into(), config.clone());
        }
        for (name, value) in &self.properties {
            let properties = s.entry("properties").or_insert_with(|| json!({}));
            properties[name.as_str()] = value.clone();
        }
        for (cluster, path, answer) in &self.routes {
            let (field, cluster) = match cluster.as_str() {
                BACKEND => ("backend", None),
                cluster => ("upstreams", Some(cluster)),
            };
            let routes = s.entry(field).or_insert_with(|| json!({}));
            let routes = match cluster {
                Some(cluster) => &mut routes[cluster],
                None => routes,
            };
            routes[path.as_str()] = answer.clone();
        }
        let steps: Vec<Value> = self.actions.iter().map(|a| self.step(a)).collect();
        s.insert("steps".into(), Value::Array(steps));
        Value::Object(s)
    }

    fn step(&self, action: &Action) -> Value {
        let finished = || json!({"pending": false});
        match action {
            Action::Request {
                worker,
                id,
                request,
                check,
            } => {
                let mut r = json!({
                    "method": Bytes::to_json(&request.method),
                    "path": Bytes::to_json(&request.path),
                    "authority": Bytes::to_json(&request.authority),
                    "worker": worker,
                });
                if !request.headers.is_empty() {
                    let pairs: Vec<Value> = request
                        .headers
                        .iter()
                        .map(|(k, v)| json!([Bytes::to_json(k), Bytes::to_json(v)]))
                        .collect();
                    r["headers"] = Value::Array(pairs);
                }
                if let Some(body) = &request.body {
                    r["body"] = Bytes::to_json(body);
                }
                match id {
                    Some(id) => {
                        r["id"] = json!(id);
                        r["wait"] = json!(false);
                        json!({ "request": r })
                    }
                    None => json!({"request": r, "expect": with(finished(), check)}),
                }
            }
            Action::Advance { ms } => json!({"advance": format!("{ms}ms")}),
            Action::Stall { ms } => json!({"stall": format!("{ms}ms")}),
            Action::Upstream {
                cluster,
                path,
                answer,
            } => json!({"upstream": {cluster.as_str(): {path.as_str(): answer}}}),
            Action::Await { id } => {
                json!({"await": id, "expect": with(finished(), self.check_of(id))})
            }
            Action::Cancel { id } => json!({ "cancel": id }),
        }
    }

    /// The extra expectations of the paused request `id`.
    fn check_of(&self, id: &str) -> &Option<Value> {
        self.actions
            .iter()
            .find_map(|a| match a {
                Action::Request {
                    id: Some(i), check, ..
                } if i == id => Some(check),
                _ => None,
            })
            .unwrap_or(&None)
    }

    /// The indices of the request actions, in the order they send (outcome `n` is theirs).
    pub fn request_actions(&self) -> Vec<usize> {
        (0..self.actions.len())
            .filter(|i| matches!(self.actions[*i], Action::Request { .. }))
            .collect()
    }

    /// Removes action `i`, and with a paused request the steps that name it.
    pub fn without(&self, i: usize) -> Case {
        let mut case = self.clone();
        let removed = case.actions.remove(i);
        if let Action::Request { id: Some(id), .. } = removed {
            case.actions.retain(
                |a| !matches!(a, Action::Await { id: i } | Action::Cancel { id: i } if *i == id),
            );
        }
        case
    }
}

fn with(mut expect: Value, check: &Option<Value>) -> Value {
    if let (Some(Value::Object(extra)), Value::Object(map)) = (check, &mut expect) {
        map.extend(extra.clone());
    }
    expect
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::load;

    fn request(path: &str, headers: &[(&[u8], &[u8])]) -> Request {
        Request {
            method: b"GET".to_vec(),
            path: path.as_bytes().to_vec(),
            authority: b"api.test".to_vec(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect(),
            body: None,
            properties: Default::default(),
        }
    }

    #[test]
    fn writes_a_scenario_that_parses_back() {
        let case = Case {
            base: 0,
            workers: 2,
            routes: vec![
                ("idp".into(), "/k".into(), json!({"fail": "hang"})),
                (
                    BACKEND.into(),
                    "*".into(),
                    json!({"body": {"$bytes": "/w=="}}),
                ),
            ],
            config: None,
            properties: vec![("source.address".into(), json!("10.0.0.1:5"))],
            actions: vec![
                Action::Request {
                    worker: 1,
                    id: Some("r0".into()),
                    request: request("/a${x}", &[(b"x-a", b"\xff")]),
                    check: Some(json!({"upstream_headers": {"x-a": null}})),
                },
                Action::Advance { ms: 5 },
                Action::Stall { ms: 600_001 },
                Action::Cancel { id: "r0".into() },
                Action::Await { id: "r0".into() },
            ],
        };
        let base = json!({"config": {"a": 1}, "upstreams": {"idp": {"/j": {"status": 500}}}});
        let written = case.scenario(&base, "n", "d");
        assert_eq!(written["upstreams"]["idp"]["/k"], json!({"fail": "hang"}));
        assert_eq!(written["upstreams"]["idp"]["/j"], json!({"status": 500}));
        // The main upstream's answer goes to `backend`, never to a cluster.
        assert_eq!(written["backend"]["*"], json!({"body": {"$bytes": "/w=="}}));
        assert_eq!(written["properties"]["source.address"], json!("10.0.0.1:5"));
        assert_eq!(written["upstreams"].get(BACKEND), None);
        assert_eq!(
            written["steps"][0]["request"]["path"],
            json!({"$bytes": "L2Eke3h9"})
        );
        assert_eq!(
            written["steps"][4]["expect"]["upstream_headers"],
            json!({"x-a": null})
        );
        // A stall replays as a stall (one tick per VM), an advance as an advance.
        assert_eq!(written["steps"][1], json!({"advance": "5ms"}));
        assert_eq!(written["steps"][2], json!({"stall": "600001ms"}));
        let parsed = load::parse(written).unwrap();
        assert_eq!(parsed.steps.len(), 5);
        assert!(
            matches!(&parsed.steps[2].action, Some(crate::scenario::model::Action::Stall(s)) if s == "600001ms")
        );
        assert_eq!(parsed.workers, Some(2));
        let fewer = case.without(0);
        assert_eq!(
            fewer.actions,
            vec![Action::Advance { ms: 5 }, Action::Stall { ms: 600_001 }]
        );
    }
}
