//! gRPC clusters in `harness run --envoy`. The filter's gRPC calls need HTTP/2 and trailers,
//! and Envoy picks a cluster's protocol in its configuration, before any call: a cluster is
//! played over gRPC when the scenario (`upstreams` or an `upstream` step) gives it a route
//! that is a gRPC method path, `/package.Service/Method`, or an answer that sets a `grpc_*`
//! field. Such a cluster gets the HTTP/2 server (`servers::grpc`) and Envoy's cluster speaks
//! HTTP/2 to it. A cluster can be both: Envoy sends its http calls over HTTP/2 as well, and
//! the server answers them with the script's status, headers and body, as the HTTP/1.1 one
//! does (a `reset` there is an HTTP/2 stream reset after the headers).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use serde_json::{Value, json};

use super::loopback::{SeenCall, Shared};
use crate::scenario::model::{Action, Scenario, Script, Status};
use crate::servers::grpc::{GrpcServer, Handler, Request};

/// Whether `path` is a gRPC method path: `/SERVICE/METHOD`, the service name qualified by its
/// package (`probe.Probe`), both made of identifiers (so `/.well-known/jwks.json` is not).
fn method_path(path: &str) -> bool {
    let identifier = |s: &str| {
        s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let mut parts = path.split('/');
    let (empty, service, method) = (parts.next(), parts.next(), parts.next());
    empty == Some("")
        && service.is_some_and(|s| s.contains('.') && s.split('.').all(identifier))
        && method.is_some_and(identifier)
        && parts.next().is_none()
}

/// The clusters `s` plays over gRPC.
pub(super) fn clusters(s: &Scenario) -> BTreeSet<String> {
    let steps = s.steps.iter().filter_map(|step| match &step.action {
        Some(Action::Upstream(routes)) => Some(routes),
        _ => None,
    });
    let mut out = BTreeSet::new();
    for routes in [&s.upstreams].into_iter().chain(steps) {
        for (cluster, paths) in routes {
            let grpc = paths.iter().any(|(path, script)| {
                method_path(path)
                    || match script {
                        Script::One(a) => a.is_grpc(),
                        Script::Many(list) => list.iter().any(|a| a.is_grpc()),
                    }
            });
            if grpc {
                out.insert(cluster.clone());
            }
        }
    }
    out
}

/// Why `s` cannot run with its gRPC clusters played over HTTP/2, if it cannot: a `:status`
/// that is not three digits (HTTP/2 cannot carry it), or `reset` for an http call (over
/// HTTP/2 a reset stream, not HTTP/1.1's body cut short).
pub(super) fn unsupported(s: &Scenario) -> Option<String> {
    let grpc = clusters(s);
    let steps = s.steps.iter().filter_map(|step| match &step.action {
        Some(Action::Upstream(routes)) => Some(routes),
        _ => None,
    });
    for routes in [&s.upstreams].into_iter().chain(steps) {
        for (path, script) in routes
            .iter()
            .filter(|(c, _)| grpc.contains(*c))
            .flat_map(|(_, p)| p)
        {
            let answers = match script {
                Script::One(a) => std::slice::from_ref(a),
                Script::Many(list) => list.as_slice(),
            };
            for a in answers {
                if matches!(&a.status, Some(Status::Raw(raw)) if !three_digits(raw.as_slice())) {
                    return Some("a status that is not three digits on a gRPC cluster (HTTP/2 cannot send it)".into());
                }
                if a.fail.as_deref() == Some("reset") && !method_path(path) {
                    return Some(
                        "a reset http answer on a gRPC cluster (HTTP/2 resets the stream instead)"
                            .into(),
                    );
                }
            }
        }
    }
    None
}

fn three_digits(status: &[u8]) -> bool {
    status.len() == 3 && status.iter().all(u8::is_ascii_digit)
}

/// Starts the HTTP/2 server of gRPC cluster `cluster`: it records each call and answers from
/// the cluster's script.
pub(super) fn server(shared: Arc<Mutex<Shared>>, cluster: String) -> Result<GrpcServer> {
    let handler: Arc<Handler> = Arc::new(move |r: &Request| {
        let mut shared = shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        shared.calls.push(SeenCall {
            cluster: cluster.clone(),
            target: r.path.clone(),
            headers: r.headers.clone(),
        });
        shared.clusters.answer(&cluster, &r.path)
    });
    GrpcServer::start(handler)
}

/// Makes Envoy's clusters named in `grpc` speak HTTP/2 (prior knowledge) to their server.
pub(super) fn http2(config: &mut Value, grpc: &BTreeSet<String>) {
    let Some(clusters) = config["static_resources"]["clusters"].as_array_mut() else {
        return;
    };
    for cluster in clusters {
        if cluster["name"].as_str().is_some_and(|n| grpc.contains(n)) {
            cluster["typed_extension_protocol_options"] = json!({
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}}
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::load::parse;

    #[test]
    fn grpc_clusters_have_a_method_path_or_a_grpc_answer() {
        let s = parse(json!({"name": "n", "config": "", "steps": [
        {"upstream": {"later": {"/x": {"grpc_message": "m"}}}}],
        "upstreams": {
            "method": {"/pkg.Service/Method": {"status": 503}},
            "field": {"/x": [{"status": 200}, {"grpc_status": 7}]},
            "http": {"/v1/keys": {"status": 200}, "/a.b": {}, "/a.b/c/d": {}}
        }}))
        .unwrap();
        let names: Vec<_> = clusters(&s).into_iter().collect();
        assert_eq!(names, ["field", "later", "method"]);
    }

    #[test]
    fn what_http2_cannot_play_is_skipped() {
        let scenario = |upstreams: Value| {
            parse(json!({"name": "n", "config": "", "steps": [], "upstreams": upstreams})).unwrap()
        };
        let ok = scenario(
            json!({"g": {"/p.S/M": {"fail": "reset"}, "/x": {"status": 200}},
                                 "http": {"/x": [{"fail": "reset"}, {"status": "2x0"}]}}),
        );
        assert_eq!(unsupported(&ok), None);
        let reset = scenario(json!({"g": {"/p.S/M": {}, "/x": {"fail": "reset"}}}));
        assert!(unsupported(&reset).is_some_and(|why| why.contains("reset")));
        let raw = scenario(json!({"g": {"/p.S/M": [{}, {"status": "2x0"}]}}));
        assert!(unsupported(&raw).is_some_and(|why| why.contains("three digits")));
    }
}
