//! Why a scenario cannot run in Envoy: what Envoy does not offer or cannot be told apart
//! (`unsupported`), the route names it serves as properties, the refusals `unreachable`
//! answers need, and the requests its HTTP/1 codec refuses itself.

use std::collections::{BTreeMap, BTreeSet};

use crate::scenario::bytes::Bytes;
use crate::scenario::model::{Action, RequestSpec, Scenario, Script, Step};
use crate::time::parse_millis;

/// The most real time a scenario may ask to wait (advances, stalls, answer delays).
const MAX_WAIT_MS: i64 = 3_000;

/// Why `s` cannot run in Envoy, if it cannot.
pub(super) fn unsupported(s: &Scenario) -> Option<String> {
    if s.start.is_some() {
        return Some("a fixed start time (Envoy runs on the real clock)".into());
    }
    if let Err(why) = route_names(s) {
        return Some(why);
    }
    if let Err(why) = filter_metadata(s) {
        return Some(why);
    }
    if !s.verify_signature {
        return Some("verify_signature false (Envoy always offers it)".into());
    }
    if let Err(why) = refusals(s) {
        return Some(why);
    }
    let scripts = s
        .upstreams
        .values()
        .flat_map(|r| r.values())
        .chain(s.backend.values());
    for script in scripts {
        let answers = match script {
            Script::One(a) => std::slice::from_ref(a),
            Script::Many(list) => list.as_slice(),
        };
        for a in answers {
            let delay = a
                .delay
                .as_deref()
                .map(parse_millis)
                .transpose()
                .ok()
                .flatten();
            if delay.unwrap_or(0) > MAX_WAIT_MS {
                return Some(format!(
                    "an answer delayed beyond {MAX_WAIT_MS} ms of real time"
                ));
            }
        }
    }
    if s.backend.values().any(|script| match script {
        Script::One(a) => a.fail.as_deref() == Some("hang"),
        Script::Many(list) => list.iter().any(|a| a.fail.as_deref() == Some("hang")),
    }) {
        return Some("a hanging main upstream (Envoy's 15 s route timeout)".into());
    }
    if s.is_tcp() {
        if s.workers.unwrap_or(1) > 1 {
            return Some(
                "a TCP scenario with several workers (its connections' workers are Envoy's choice)"
                    .into(),
            );
        }
        let own_properties = (s.steps.iter()).any(|st| match &st.action {
            Some(Action::Tcp(t)) => t.connect.as_ref().is_some_and(|c| !c.properties.is_empty()),
            _ => false,
        });
        if own_properties || !s.properties.is_empty() {
            return Some("properties given to a TCP connection (Envoy has its own)".into());
        }
    }
    let mut waited = 0;
    let workers = s.workers.unwrap_or(1);
    for step in &s.steps {
        match &step.action {
            Some(Action::Cancel(_) | Action::Crash(_) | Action::Reload(_)) => {
                return Some("cancel, crash or reload steps".into());
            }
            Some(Action::Restart) => return Some("restart steps".into()),
            _ => {}
        }
        if let Some(r) = step.request() {
            if refused_by_codec(r) {
                return Some("a request Envoy's HTTP/1 codec refuses before any filter".into());
            }

            if workers > 1 && r.properties.contains_key(ROUTE_NAME) {
                return Some(format!("{ROUTE_NAME} of a request with several workers"));
            }
        }
        if let Some(Action::Advance(by) | Action::Stall(by)) = &step.action {
            waited += parse_millis(by).unwrap_or(i64::MAX);
            if waited > MAX_WAIT_MS {
                return Some(format!("advancing beyond {MAX_WAIT_MS} ms of real time"));
            }
        }
        if let Some(e) = &step.expect
            && (e.violations.is_some() || e.took_ms.is_some() || e.properties.is_some())
        {
            return Some(
                "violations, took_ms or properties expectations (not observable in Envoy)".into(),
            );
        }
    }
    None
}

/// The property Envoy serves from its configuration: the route's name.
pub(super) const ROUTE_NAME: &str = "xds.route_name";

/// The route names `s` gives as properties: the scenario's (`None`: routes without a name),
/// and those of single requests, each served by a listener of its own whose routes carry it.
/// Envoy serves every other property itself (tests/e2e/ENVOY-FACTS.md): `Err` with why.
pub(super) fn route_names(s: &Scenario) -> Result<(Option<String>, BTreeSet<String>), String> {
    let name = |properties: &BTreeMap<String, Bytes>, scenario: bool| {
        let served = |k: &String| k == ROUTE_NAME || (scenario && metadata_segments(k).is_some());
        if !properties.keys().all(served) {
            return Err(format!(
                "properties other than {ROUTE_NAME} (Envoy serves its own: the connection's, its node's; route_name only after routing; no custom names)"
            ));
        }
        properties
            .get(ROUTE_NAME)
            .map(|v| {
                String::from_utf8(v.as_slice().to_vec())
                    .map_err(|_| format!("a {ROUTE_NAME} that is not UTF-8"))
            })
            .transpose()
    };
    let main = name(&s.properties, true)?;
    let mut others = BTreeSet::new();
    for r in s.steps.iter().filter_map(Step::request) {
        if let Some(route) = name(&r.properties, false)?
            && Some(&route) != main.as_ref()
        {
            others.insert(route);
        }
    }
    Ok((main, others))
}

/// Dynamic metadata by namespace, then key: what Envoy's `set_metadata` filter, before the
/// wasm filter, writes for every request, and the filter reads as
/// `metadata.filter_metadata[NAMESPACE].KEY` (Envoy serves a string value as its bytes).
pub(super) type FilterMetadata = BTreeMap<String, BTreeMap<String, String>>;

/// A path `metadata` `filter_metadata` NAMESPACE KEY: the namespace and key.
fn metadata_segments(path: &str) -> Option<(String, String)> {
    let segments = crate::scenario::property::segments(path).ok()?;
    match <[String; 4]>::try_from(segments).ok()? {
        [m, f, namespace, key] if m == "metadata" && f == "filter_metadata" => {
            Some((namespace, key))
        }
        _ => None,
    }
}

/// The scenario's properties that are filter metadata (`route_names` refuses any other but
/// the route name): values must be UTF-8, and only the scenario's, not a request's (the
/// `set_metadata` filter writes the same for every request of a listener).
pub(super) fn filter_metadata(s: &Scenario) -> Result<FilterMetadata, String> {
    let mut out = FilterMetadata::new();
    for (path, value) in &s.properties {
        let Some((namespace, key)) = metadata_segments(path) else {
            continue;
        };
        let value = String::from_utf8(value.as_slice().to_vec())
            .map_err(|_| format!("a filter metadata property that is not UTF-8 ({path})"))?;
        out.entry(namespace).or_default().insert(key, value);
    }
    Ok(out)
}

/// Whether every answer of `script` is `unreachable` (`Some(true)`), none is
/// (`Some(false)`), or some are (`None`).
fn refuses(script: &Script) -> Option<bool> {
    let answers = match script {
        Script::One(a) => std::slice::from_ref(a),
        Script::Many(list) => list.as_slice(),
    };
    let count = answers
        .iter()
        .filter(|a| a.fail.as_deref() == Some("unreachable"))
        .count();
    match count {
        0 => Some(false),
        n if n == answers.len() => Some(true),
        _ => None,
    }
}

/// Where Envoy meets a port that refuses connections, for `unreachable` answers. Envoy
/// connects before it sends a request, so a refusal is a property of where it connects: a
/// whole cluster, or main upstream paths the route sends to a refusing cluster.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Refusals {
    /// Clusters whose every answer is `unreachable`, `*` among their paths.
    pub(super) clusters: BTreeSet<String>,
    /// Main upstream paths routed apart from the rest: path → whether it refuses.
    pub(super) paths: BTreeMap<String, bool>,
    /// Whether the main upstream's other paths refuse (`*` is `unreachable`).
    pub(super) rest: bool,
}

impl Refusals {
    /// Whether the main route needs the refusing cluster.
    pub(super) fn routes_to_refusal(&self) -> bool {
        self.rest || self.paths.values().any(|r| *r)
    }
}

/// The refusals `s` needs, kept the same through its `upstream` and `backend` steps; `Err`
/// with why when Envoy cannot refuse connections that way.
pub(super) fn refusals(s: &Scenario) -> Result<Refusals, String> {
    let refuses = |script: &Script| {
        refuses(script).ok_or_else(|| {
            "answers in turn that are unreachable only sometimes (a refused connection is seen by no server: the turn cannot be told)".to_string()
        })
    };
    let clusters = |routes: &BTreeMap<String, BTreeMap<String, Script>>| {
        let mut down = BTreeSet::new();
        for (name, paths) in routes {
            let refusing = paths.values().map(refuses).collect::<Result<Vec<_>, _>>()?;
            if refusing.iter().all(|r| *r) && paths.contains_key("*") {
                down.insert(name.clone());
            } else if refusing.iter().any(|r| *r) {
                return Err("an unreachable answer for some paths of a cluster (Envoy connects before it sends the path: a cluster refuses all calls or none; script `*` to refuse all)".to_string());
            }
        }
        Ok(down)
    };
    let mut routes = s.upstreams.clone();
    let down = clusters(&routes)?;
    let rest = s
        .backend
        .get("*")
        .map(refuses)
        .transpose()?
        .unwrap_or(false);
    let mut paths = BTreeMap::new();
    for (path, script) in s.backend.iter().filter(|(p, _)| *p != "*") {
        if refuses(script)? != rest {
            paths.insert(path.clone(), !rest);
        }
    }
    let refusal = Refusals {
        clusters: down,
        paths,
        rest,
    };
    // Envoy routes on the path without its query, the harness on the path as sent first.
    let by_query = |paths: &BTreeMap<String, Script>| paths.keys().any(|p| p.contains('?'));
    if refusal.routes_to_refusal()
        && (by_query(&s.backend) || refusal.paths.keys().any(|p| !p.starts_with('/')))
    {
        return Err("an unreachable main upstream path beside paths scripted with a query, or not starting with `/`".into());
    }
    for step in &s.steps {
        match &step.action {
            Some(Action::Upstream(more)) => {
                for (name, paths) in more {
                    let entry = routes.entry(name.clone()).or_default();
                    entry.extend(paths.iter().map(|(p, s)| (p.clone(), s.clone())));
                }
                if clusters(&routes)? != refusal.clusters {
                    return Err("a cluster that starts or stops refusing connections midway".into());
                }
            }
            Some(Action::Backend(more)) => {
                if refusal.routes_to_refusal() && by_query(more) {
                    return Err(
                        "an unreachable main upstream path beside paths scripted with a query"
                            .into(),
                    );
                }
                for (path, script) in more {
                    let routed = refusal.paths.get(path).copied().unwrap_or(refusal.rest);
                    if refuses(script)? != routed {
                        return Err(
                            "a main upstream path that starts or stops refusing connections midway"
                                .into(),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    Ok(refusal)
}

/// Whether Envoy's HTTP/1 codec answers 400 to `r` itself (tests/e2e/ENVOY-FACTS.md): a
/// method, path or authority with bytes outside visible ASCII, `#`, a path not starting with
/// `/`; a header name that is not a token, a value with NUL, CR or LF.
fn refused_by_codec(r: &RequestSpec) -> bool {
    let visible = |b: &Bytes| {
        b.as_slice()
            .iter()
            .all(|c| c.is_ascii_graphic() && *c != b'#')
    };
    let token = |b: &Bytes| {
        !b.as_slice().is_empty()
            && b.as_slice()
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(c))
    };
    let value = |b: &Bytes| !b.as_slice().iter().any(|c| matches!(c, 0 | b'\r' | b'\n'));
    !visible(&r.method)
        || !visible(&r.path)
        || !visible(&r.authority)
        || !r.path.as_slice().starts_with(b"/")
        || r.headers.0.iter().any(|(k, v)| !token(k) || !value(v))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::{Value, json};

    use super::*;
    use crate::scenario::envoy::config::envoy_config;
    use crate::scenario::load::parse;

    #[test]
    fn unreachable_answers_become_refusing_clusters_and_routes_or_a_skip() {
        let down = json!({"fail": "unreachable"});
        let refusals_of = |extra: Value| {
            let mut s = json!({"name": "n", "config": "", "steps": []});
            s.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            refusals(&parse(s).unwrap())
        };
        let r = refusals_of(json!({
            "upstreams": {"idp": {"/ok": {}}, "down": {"*": down}},
            "backend": {"/down": [down, down], "/ok": {}}
        }))
        .unwrap();
        assert_eq!(r.clusters, BTreeSet::from(["down".to_string()]));
        assert_eq!(r.paths, BTreeMap::from([("/down".to_string(), true)]));
        assert!(!r.rest && r.routes_to_refusal());
        let r = refusals_of(json!({"backend": {"*": down, "/ok": {}}})).unwrap();
        assert_eq!(r.paths, BTreeMap::from([("/ok".to_string(), false)]));
        assert!(r.rest);
        assert_eq!(refusals_of(json!({})).unwrap(), Refusals::default());
        for skipped in [
            json!({"upstreams": {"idp": {"/ok": {}, "/down": down}}}),
            json!({"upstreams": {"idp": {"/down": down}}}),
            json!({"upstreams": {"idp": {"*": [down, {}]}}}),
            json!({"backend": {"/down": down, "/a?x=1": {}}}),
            json!({"backend": {"/down": down},
                   "steps": [{"backend": {"/other": down}}]}),
            json!({"upstreams": {"idp": {"*": down}},
                   "steps": [{"upstream": {"idp": {"*": {}}}}]}),
        ] {
            assert!(refusals_of(skipped.clone()).is_err(), "{skipped}");
        }
        let config = envoy_config(
            &parse(json!({"name": "n", "config": "", "steps": []})).unwrap(),
            &json!(""),
            &[],
            Path::new("f.wasm"),
            &BTreeMap::from([(None, 1000)]),
            &refusals_of(json!({"backend": {"/down": down}})).unwrap(),
            1001,
            Path::new("access.log"),
        )
        .unwrap();
        let hcm = &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        let routes = &hcm["route_config"]["virtual_hosts"][0]["routes"];
        assert_eq!(routes[0]["match"]["path"], json!("/down"));
        assert_eq!(routes[0]["route"]["cluster"], json!("harness_refusing"));
        assert_eq!(routes[1]["route"]["cluster"], json!("harness_backend"));
        let refusing = &config["static_resources"]["clusters"][1];
        assert_eq!(refusing["name"], json!("harness_refusing"));
    }

    #[test]
    fn route_names_are_served_by_routes_and_listeners_other_properties_skip() {
        let scenario = parse(json!({
            "name": "n", "config": "", "properties": {"xds.route_name": "main"},
            "steps": [{"request": {"path": "/"}},
                      {"request": {"path": "/", "properties": {"xds.route_name": "r2"}}},
                      {"request": {"path": "/", "properties": {"xds.route_name": "main"}}}]
        }))
        .unwrap();
        assert_eq!(
            route_names(&scenario).unwrap(),
            (Some("main".into()), BTreeSet::from(["r2".to_string()]))
        );
        let config = envoy_config(
            &scenario,
            &json!(""),
            &[],
            Path::new("f.wasm"),
            &BTreeMap::from([(None, 1000)]),
            &Refusals::default(),
            1001,
            Path::new("access.log"),
        )
        .unwrap();
        let listeners = &config["static_resources"]["listeners"];
        let route = |i: usize| {
            let hcm = &listeners[i]["filter_chains"][0]["filters"][0]["typed_config"];
            (
                listeners[i]["name"].clone(),
                hcm["route_config"]["virtual_hosts"][0]["routes"][0]["name"].clone(),
            )
        };
        assert_eq!(route(0), (json!("main"), json!("main")));
        assert_eq!(listeners[0]["stat_prefix"], json!("main"));
        assert_eq!(
            listeners[1]["connection_balance_config"],
            json!({"exact_balance": {}})
        );
        assert_eq!(route(1), (json!("route:r2"), json!("r2")));
        assert_eq!(listeners.as_array().unwrap().len(), 2);
        for properties in [
            json!({"route_name": "main"}),
            json!({"xds.route_name": {"$bytes": "/w=="}}),
            json!({r#"metadata.filter_metadata["a.b"].k"#: "v"}),
        ] {
            let s = json!({"name": "n", "config": "", "steps": [
                {"request": {"path": "/", "properties": properties}}]});
            assert!(route_names(&parse(s).unwrap()).is_err(), "{properties}");
        }
    }

    #[test]
    fn filter_metadata_properties_are_played_by_set_metadata() {
        let scenario = parse(json!({
            "name": "n", "config": "",
            "properties": {
                r#"metadata.filter_metadata["envoy.filters.http.lua"].user"#: "alice",
                r#"metadata.filter_metadata["envoy.filters.http.lua"]["x.y"]"#: "1",
                "xds.route_name": "main"
            },
            "steps": [{"request": {"path": "/"}}]
        }))
        .unwrap();
        assert_eq!(unsupported(&scenario), None);
        let metadata = filter_metadata(&scenario).unwrap();
        assert_eq!(
            metadata,
            BTreeMap::from([(
                "envoy.filters.http.lua".to_string(),
                BTreeMap::from([
                    ("user".to_string(), "alice".to_string()),
                    ("x.y".to_string(), "1".to_string())
                ])
            )])
        );
        let config = envoy_config(
            &scenario,
            &json!(""),
            &[],
            Path::new("f.wasm"),
            &BTreeMap::from([(None, 1000)]),
            &Refusals::default(),
            1001,
            Path::new("access.log"),
        )
        .unwrap();
        let hcm = &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        let filters = &hcm["http_filters"];
        assert_eq!(filters[0]["name"], json!("envoy.filters.http.set_metadata"));
        assert_eq!(
            filters[0]["typed_config"]["metadata"],
            json!([{"metadata_namespace": "envoy.filters.http.lua",
                    "value": {"user": "alice", "x.y": "1"}}])
        );
        assert_eq!(filters[1]["name"], json!("envoy.filters.http.wasm"));
        // Other metadata paths, bytes, and a request's own are skipped.
        for properties in [
            json!({"metadata.filter_metadata.lua": "v"}),
            json!({r#"metadata.filter_metadata["a.b"].k"#: {"$bytes": "/w=="}}),
        ] {
            let s = parse(json!({"name": "n", "config": "", "properties": properties,
                                 "steps": [{"request": {"path": "/"}}]}))
            .unwrap();
            assert!(unsupported(&s).is_some(), "{properties}");
        }
    }
}
