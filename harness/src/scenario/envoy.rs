//! `harness run --envoy`: a scenario through a real Envoy instead of the harness's host. The
//! filter runs in Envoy (V8) with the scenario's configuration; its clusters and the main
//! route's upstream are loopback servers answering from the same scripts (`unreachable`: a
//! port that refuses connections); `xds.route_name` properties are route names; requests go
//! over TCP; expectations are checked against what comes back, what the servers saw, Envoy's
//! `/stats` and its log. Virtual time becomes real waits, up to a bound. A scenario that
//! cannot run this way is skipped with the reason, never passed.

mod client;
mod config;
mod grpc;
mod loopback;
mod play;
mod process;
mod tcp;
mod unsupported;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow};
use serde_json::Value;

use super::load::Loaded;
use super::run::{build_clusters, build_routes, environment, mint_tokens, with_jwks};
use crate::host::upstream::{Clusters, Routes};
use crate::keys::KeyRing;
use config::envoy_config;
use loopback::{Refusing, Server, Shared};
use play::Play;
use process::Envoy;
use unsupported::{refusals, unsupported};

/// How a scenario went (in Envoy, or in the harness, which never skips).
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail(String),
    /// It cannot run in Envoy: why.
    Skip(String),
}

/// Runs scenarios through Envoy; keeps generated keys across them.
pub struct EnvoyRunner {
    envoy: PathBuf,
    wasm: PathBuf,
    work: PathBuf,
    keys: KeyRing,
    runs: usize,
}

impl EnvoyRunner {
    pub fn new(envoy: &Path, wasm: &Path, work: &Path) -> Result<EnvoyRunner> {
        std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
        Ok(EnvoyRunner {
            envoy: envoy.to_path_buf(),
            wasm: std::fs::canonicalize(wasm)
                .with_context(|| format!("reading {}", wasm.display()))?,
            work: work.to_path_buf(),
            keys: KeyRing::default(),
            runs: 0,
        })
    }

    pub fn run(&mut self, loaded: &Loaded) -> Verdict {
        if let Some(why) =
            unsupported(&loaded.scenario).or_else(|| grpc::unsupported(&loaded.scenario))
        {
            return Verdict::Skip(why);
        }
        self.runs += 1;
        let dir = self.work.join(format!("scenario-{}", self.runs));
        match self.try_run(loaded, &dir) {
            Ok(verdict) => verdict,
            Err(e) => Verdict::Fail(format!("{e:#} (Envoy's log: {})", dir.display())),
        }
    }

    fn try_run(&mut self, loaded: &Loaded, dir: &Path) -> Result<Verdict> {
        let s = &loaded.scenario;
        std::fs::create_dir_all(dir)?;
        let clusters = build_clusters(
            &s.upstreams,
            &mut self.keys,
            &loaded.dir,
            Clusters::default(),
        )?;
        let mut backend = Routes::default();
        build_routes(&s.backend, &mut self.keys, &loaded.dir, &mut backend)?;
        let names = clusters.names();
        let shared = Arc::new(Mutex::new(Shared {
            clusters,
            backend,
            calls: Vec::new(),
            upstream: Vec::new(),
        }));
        let refusals = refusals(s).map_err(|why| anyhow!(why))?;
        let refusing = Refusing::new()?;
        let mut servers = Vec::new();
        let mut ports = BTreeMap::new();
        // A TCP scenario's upstream is a loopback TCP peer the steps script.
        let tcp_upstream = match s.is_tcp() {
            true => Some(tcp::Upstream::start()?),
            false => None,
        };
        if let Some(upstream) = &tcp_upstream {
            ports.insert(None, upstream.port);
        }
        let grpc_clusters = grpc::clusters(s);
        let mut grpc_servers = Vec::new();
        for name in names.iter().map(Some).chain([None]) {
            if name.is_some_and(|n| refusals.clusters.contains(n)) {
                ports.insert(name.cloned(), refusing.port);
                continue;
            }
            if let Some(name) = name.filter(|n| grpc_clusters.contains(*n)) {
                let server = grpc::server(shared.clone(), name.clone())?;
                ports.insert(Some(name.clone()), server.port);
                grpc_servers.push(server);
                continue;
            }
            if name.is_none() && tcp_upstream.is_some() {
                continue;
            }
            let server = Server::start(shared.clone(), name.cloned())?;
            ports.insert(name.cloned(), server.port);
            servers.push(server);
        }
        let plugin_config = match &s.config {
            Value::String(text) => Value::String(text.clone()),
            other => {
                Value::String(with_jwks(other.clone(), &mut self.keys, &loaded.dir)?.to_string())
            }
        };
        let env = environment(&s.env, &mut self.keys, &loaded.dir)?;
        let mut config = envoy_config(
            s,
            &plugin_config,
            &env,
            &self.wasm,
            &ports,
            &refusals,
            refusing.port,
            &dir.join("access.log"),
        )?;
        grpc::http2(&mut config, &grpc_clusters);
        let config_path = dir.join("envoy.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
        let mut envoy = Envoy::start(&self.envoy, &config_path, dir, s)?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as u64;
        let tokens = mint_tokens(&mut self.keys, loaded, now_ms)?;
        let mut run = Play::new(
            loaded,
            &mut self.keys,
            shared,
            tokens,
            &mut envoy,
            refusals.clusters,
            tcp_upstream.as_ref(),
        );
        let verdict = run.play();
        envoy.stop();
        if let Some(upstream) = tcp_upstream {
            upstream.stop();
        }
        for server in servers {
            server.stop();
        }
        for server in grpc_servers {
            server.stop();
        }
        verdict
    }
}
