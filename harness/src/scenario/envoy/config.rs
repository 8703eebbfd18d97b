//! Envoy's configuration for a scenario: listeners, routes, clusters, the filter.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, anyhow};
use serde_json::{Value, json};

use super::unsupported::{Refusals, filter_metadata, route_names};
use crate::scenario::model::Scenario;

/// The name of the listener for requests with their own route name: this, then the name.
pub(super) const ROUTE_LISTENER: &str = "route:";

/// The access log's format: the request's `x-request-id` (which the harness sends with
/// each request whose details are expected), then the response-code details.
pub(super) const ACCESS_LOG_FORMAT: &str = "%REQ(X-REQUEST-ID)% %RESPONSE_CODE_DETAILS%\n";

/// Envoy's configuration (JSON, which Envoy reads as YAML): a listener whose route goes to
/// the main upstream through the filter (paths that refuse connections to the `refusing`
/// port), the scenario's clusters, admin on port 0, and an access log at `access_log`
/// (`ACCESS_LOG_FORMAT`).
#[expect(
    clippy::too_many_arguments,
    reason = "the replay's inputs (scenario, plugin configuration, environment, module, ports, refusals, access log), each read once"
)]
pub(super) fn envoy_config(
    s: &Scenario,
    plugin_config: &Value,
    env: &[(String, String)],
    wasm: &Path,
    ports: &BTreeMap<Option<String>, u16>,
    refusals: &Refusals,
    refusing: u16,
    access_log: &Path,
) -> Result<Value> {
    let cluster = |name: &str, port: u16| {
        json!({
            "name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}
        })
    };
    let backend_port = ports
        .get(&None)
        .copied()
        .ok_or_else(|| anyhow!("no main upstream"))?;
    let mut clusters = vec![cluster("harness_backend", backend_port)];
    let to = |refuses: bool| {
        if refuses {
            "harness_refusing"
        } else {
            "harness_backend"
        }
    };
    let mut routes: Vec<Value> = refusals
        .paths
        .iter()
        .map(|(path, refuses)| json!({"match": {"path": path}, "route": {"cluster": to(*refuses)}}))
        .collect();
    routes.push(json!({"match": {"prefix": "/"}, "route": {"cluster": to(refusals.rest)}}));
    let (main_route, other_routes) = route_names(s).map_err(|why| anyhow!(why))?;
    if refusals.routes_to_refusal() {
        clusters.push(cluster("harness_refusing", refusing));
    }
    for (name, port) in ports {
        if let Some(name) = name {
            clusters.push(cluster(name, *port));
        }
    }
    let text = |v: &Value| match v {
        Value::String(t) => t.clone(),
        other => other.to_string(),
    };
    let mut vm_config = json!({
        "vm_id": s.vm_id, "runtime": "envoy.wasm.runtime.v8",
        "code": {"local": {"filename": wasm}}
    });
    if let Some(v) = &s.vm_config {
        vm_config["configuration"] =
            json!({"@type": "type.googleapis.com/google.protobuf.StringValue", "value": text(v)});
    }
    // The scenario's environment, as literal pairs (host_env_keys would copy Envoy's own).
    if !env.is_empty() {
        let pairs: serde_json::Map<String, Value> = (env.iter())
            .map(|(name, value)| (name.clone(), json!(value)))
            .collect();
        vm_config["environment_variables"] = json!({ "key_values": pairs });
    }
    let mut plugin = json!({
        "name": "harness", "root_id": s.root_id, "vm_config": vm_config,
        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": text(plugin_config)}
    });
    if s.allow_on_headers_stop_iteration {
        plugin["allow_on_headers_stop_iteration"] = json!(true);
    }
    if s.is_tcp() {
        return Ok(tcp_config(plugin, backend_port));
    }
    let filter = json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": plugin
        }
    });
    // Filter metadata the scenario gives as properties: written before the wasm filter runs.
    let metadata = filter_metadata(s).map_err(|why| anyhow!(why))?;
    let mut http_filters = Vec::new();
    if !metadata.is_empty() {
        let entries: Vec<Value> = (metadata.iter())
            .map(|(namespace, values)| json!({"metadata_namespace": namespace, "value": values}))
            .collect();
        http_filters.push(json!({
            "name": "envoy.filters.http.set_metadata",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.set_metadata.v3.Config",
                "metadata": entries
            }
        }));
    }
    http_filters.push(filter);
    http_filters.push(
        json!({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}),
    );
    // The same listener for each route name (the same plugin, so the same root context).
    let listener = |name: String, route: Option<&String>| {
        let mut routes = routes.clone();
        if let Some(route) = route {
            for r in &mut routes {
                r["name"] = json!(route);
            }
        }
        let mut listener = json!({
            "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            // Each new connection to a worker with the fewest: see `client::hold`.
            "connection_balance_config": {"exact_balance": {}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "ingress",
                    "access_log": [{"name": "envoy.access_loggers.file", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                        "path": access_log,
                        "log_format": {"text_format_source": {"inline_string": ACCESS_LOG_FORMAT}}}}],
                    "route_config": {"name": "local", "virtual_hosts": [{"name": "all", "domains": ["*"],
                        "routes": routes}]},
                    "http_filters": http_filters
                }
            }]}]
        });
        // Its stats as `listener.main.worker_N.*` (else under the configured port, 0).
        if name == "main" {
            listener["stat_prefix"] = json!("main");
        }
        listener
    };
    let listeners: Vec<Value> = std::iter::once(listener("main".into(), main_route.as_ref()))
        .chain(
            other_routes
                .iter()
                .map(|route| listener(format!("{ROUTE_LISTENER}{route}"), Some(route))),
        )
        .collect();
    Ok(json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": listeners, "clusters": clusters}
    }))
}

/// A TCP scenario's configuration: one listener, `main`, whose filter chain is the filter
/// as `envoy.filters.network.wasm`, then `tcp_proxy` to the loopback upstream at `port`.
fn tcp_config(plugin: Value, port: u16) -> Value {
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "main",
                "stat_prefix": "main",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [
                    {"name": "envoy.filters.network.wasm", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
                        "config": plugin}},
                    {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                        "stat_prefix": "tcp", "cluster": "harness_tcp"}}
                ]}]
            }],
            "clusters": [{
                "name": "harness_tcp", "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "harness_tcp", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}
            }]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::load::parse;

    #[test]
    fn the_plugin_config_carries_allow_on_headers_stop_iteration_when_set() {
        let ports = BTreeMap::from([(None, 1000)]);
        let plugin = |extra: Value| {
            let mut s = json!({"name": "n", "config": "", "steps": []});
            s.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let config = envoy_config(
                &parse(s).unwrap(),
                &json!(""),
                &[],
                Path::new("f.wasm"),
                &ports,
                &Refusals::default(),
                1001,
                Path::new("access.log"),
            )
            .unwrap();
            config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
                ["typed_config"]["http_filters"][0]["typed_config"]["config"]
                .clone()
        };
        let config = envoy_config(
            &parse(json!({"name": "n", "config": "", "steps": []})).unwrap(),
            &json!(""),
            &[],
            Path::new("f.wasm"),
            &ports,
            &Refusals::default(),
            1001,
            Path::new("/w/access.log"),
        )
        .unwrap();
        let hcm = &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        let log = &hcm["access_log"][0]["typed_config"];
        assert_eq!(log["path"], json!("/w/access.log"));
        assert_eq!(
            log["log_format"]["text_format_source"]["inline_string"],
            json!("%REQ(X-REQUEST-ID)% %RESPONSE_CODE_DETAILS%\n")
        );
        let on = plugin(json!({"allow_on_headers_stop_iteration": true}));
        assert_eq!(on["allow_on_headers_stop_iteration"], json!(true));
        assert_eq!(on["name"], json!("harness"));
        let off = plugin(json!({}));
        assert_eq!(off.get("allow_on_headers_stop_iteration"), None);
        assert_eq!(off["name"], json!("harness"));
    }

    #[test]
    fn the_scenario_env_becomes_key_values_of_the_vm_config() {
        let s = parse(json!({"name": "n", "config": "", "steps": []})).unwrap();
        let ports = BTreeMap::from([(None, 1000)]);
        let vm = |env: &[(String, String)]| {
            let config = envoy_config(
                &s,
                &json!(""),
                env,
                Path::new("f.wasm"),
                &ports,
                &Refusals::default(),
                1001,
                Path::new("/w/access.log"),
            )
            .unwrap();
            config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
                ["typed_config"]["http_filters"][0]["typed_config"]["config"]["vm_config"]
                .clone()
        };
        assert_eq!(vm(&[]).get("environment_variables"), None);
        let env = [("JWKS".to_string(), "{\"keys\":[]}".to_string())];
        assert_eq!(
            vm(&env)["environment_variables"],
            json!({"key_values": {"JWKS": "{\"keys\":[]}"}})
        );
    }

    #[test]
    fn a_tcp_scenario_is_the_network_filter_before_tcp_proxy() {
        let s = parse(json!({"name": "n", "config": "min=1", "steps": [{"tcp": {"connect": {}}}]}))
            .unwrap();
        let ports = BTreeMap::from([(None, 1234)]);
        let config = envoy_config(
            &s,
            &json!("min=1"),
            &[],
            Path::new("f.wasm"),
            &ports,
            &Refusals::default(),
            1001,
            Path::new("access.log"),
        )
        .unwrap();
        let listener = &config["static_resources"]["listeners"][0];
        assert_eq!(listener["name"], json!("main"));
        let filters = &listener["filter_chains"][0]["filters"];
        assert_eq!(filters[0]["name"], json!("envoy.filters.network.wasm"));
        assert_eq!(
            filters[0]["typed_config"]["config"]["configuration"]["value"],
            json!("min=1")
        );
        assert_eq!(filters[1]["name"], json!("envoy.filters.network.tcp_proxy"));
        assert_eq!(filters[1]["typed_config"]["cluster"], json!("harness_tcp"));
        let cluster = &config["static_resources"]["clusters"][0];
        assert_eq!(
            cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                ["port_value"],
            json!(1234)
        );
    }
}
