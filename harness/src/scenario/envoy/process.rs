//! A running Envoy: starting it and waiting until it is ready, stopping it, its log and
//! what its admin port's `/stats` says.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use super::client::exchange;
use super::config::ROUTE_LISTENER;
use crate::host::Request;
use crate::scenario::model::Scenario;

pub(super) const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running Envoy (or one that refused its configuration).
pub(super) struct Envoy {
    child: Child,
    log: PathBuf,
    /// The access log (`config::ACCESS_LOG_FORMAT`).
    access_log: PathBuf,
    admin: u16,
    /// The listener's port; `None` when Envoy refused the configuration and exited.
    pub(super) port: Option<u16>,
    /// The ports of the listeners for requests with their own route name, by that name.
    pub(super) route_ports: BTreeMap<String, u16>,
}

impl Envoy {
    pub(super) fn start(binary: &Path, config: &Path, dir: &Path, s: &Scenario) -> Result<Envoy> {
        let log = dir.join("envoy.log");
        let admin_path = dir.join("admin-address");
        let _ = std::fs::remove_file(&admin_path);
        let level = s.log_level.clone().unwrap_or_else(|| "trace".into());
        let child = Command::new(binary)
            .arg("-c")
            .arg(config)
            .args(["--disable-hot-restart", "--concurrency"])
            .arg(s.workers.unwrap_or(1).to_string())
            .arg("--admin-address-path")
            .arg(&admin_path)
            // The access log is read back for response-code details: flushed at once.
            .args(["--file-flush-interval-msec", "20"])
            .args(["-l", "info", "--component-log-level"])
            .arg(format!("wasm:{level}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut envoy = Envoy {
            child,
            log,
            access_log: dir.join("access.log"),
            admin: 0,
            port: None,
            route_ports: BTreeMap::new(),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if envoy.child.try_wait()?.is_some() {
                return Ok(envoy);
            }
            let address = std::fs::read_to_string(&admin_path).unwrap_or_default();
            if let Some(port) = address
                .trim()
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
            {
                envoy.admin = port;
                if get(port, "/ready").is_ok_and(|(status, _)| status == 200) {
                    let (_, body) = get(port, "/listeners?format=json")?;
                    let listeners: Value = serde_json::from_slice(&body)?;
                    for status in listeners["listener_statuses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        let port = status["local_address"]["socket_address"]["port_value"]
                            .as_u64()
                            .ok_or_else(|| anyhow!("no listener port in /listeners"))?
                            as u16;
                        match status["name"].as_str().unwrap_or_default() {
                            "main" => envoy.port = Some(port),
                            name => {
                                if let Some(route) = name.strip_prefix(ROUTE_LISTENER) {
                                    envoy.route_ports.insert(route.to_string(), port);
                                }
                            }
                        }
                    }
                    envoy
                        .port
                        .ok_or_else(|| anyhow!("no main listener in /listeners"))?;
                    return Ok(envoy);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        envoy.stop();
        bail!("Envoy was not ready within {READY_TIMEOUT:?}")
    }

    /// Envoy's whole process stops (SIGSTOP) for `by` of real time, then goes on (SIGCONT):
    /// a `stall` step, the one way to stall a real Envoy's event loops. The monotonic clock
    /// Envoy's timers run on keeps going while it is stopped.
    pub(super) fn stall(&mut self, by: Duration) -> Result<()> {
        let pid = self.child.id().to_string();
        let signal = |name: &str| -> Result<()> {
            let status = Command::new("kill")
                .args([name, pid.as_str()])
                .status()
                .with_context(|| format!("kill {name} {pid}"))?;
            if !status.success() {
                bail!("kill {name} {pid}: {status}");
            }
            Ok(())
        };
        signal("-STOP")?;
        std::thread::sleep(by);
        signal("-CONT")
    }

    pub(super) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The response-code details the access log shows for the request sent with
    /// `x-request-id: request_id` (the last such line), waiting up to `wait` for Envoy to
    /// write it.
    pub(super) fn details(&self, request_id: &str, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            let text = std::fs::read(&self.access_log).unwrap_or_default();
            let found = String::from_utf8_lossy(&text)
                .lines()
                .rev()
                .find_map(|line| {
                    let (id, details) = line.split_once(' ')?;
                    (id == request_id).then(|| details.to_string())
                });
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The filter's log lines as `[level] message`, and the VM failures Envoy logged.
    pub(super) fn log(&self) -> (Vec<String>, Vec<String>) {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let (mut lines, mut failures) = (Vec::new(), Vec::new());
        for line in text.lines() {
            // A stream's line names the plugin and VM (`wasm log NAME VM_ID: ...`), a root
            // context's does not (`wasm log: ...`).
            if let Some(at) = line.find("wasm log") {
                // Envoy's level names, as proxy-wasm's.
                let level = match line.split("][").nth(2).unwrap_or("info") {
                    "warning" => "warn",
                    level => level,
                };
                let rest = &line[at + "wasm log".len()..];
                let message = rest.split_once(": ").map_or(rest, |(_, m)| m);
                lines.push(format!("[{level}] {message}"));
            } else if line.contains("Function: ") && line.contains(" failed") {
                failures.push(line.to_string());
            } else if !line.starts_with('[')
                && let Some(last) = lines.last_mut()
            {
                // A message over several lines (a panic's) continues without a prefix.
                last.push('\n');
                last.push_str(line);
            }
        }
        (lines, failures)
    }

    /// Open connections on the main listener by Envoy worker.
    pub(super) fn worker_connections(&self) -> Result<BTreeMap<String, i64>> {
        let prefix = "listener.main.worker_";
        let (_, body) = get(self.admin, "/stats?filter=downstream_cx_active")?;
        let text = String::from_utf8_lossy(&body).into_owned();
        Ok(text
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .filter_map(|l| l.split_once(".downstream_cx_active: "))
            .map(|(worker, n)| (worker.to_string(), n.trim().parse().unwrap_or(0)))
            .collect())
    }

    /// `wasmcustom.*` stats: name → value (histograms have none).
    pub(super) fn metrics(&self) -> Result<BTreeMap<String, Option<i64>>> {
        let (_, body) = get(self.admin, "/stats?filter=%5Ewasmcustom%5C.")?;
        let text = String::from_utf8_lossy(&body).into_owned();
        Ok(text
            .lines()
            .filter_map(|l| l.strip_prefix("wasmcustom."))
            .filter_map(|l| l.split_once(": "))
            .map(|(name, value)| (name.to_string(), value.trim().parse().ok()))
            .collect())
    }
}

/// A GET to Envoy's admin port: status and body.
fn get(port: u16, target: &str) -> Result<(u16, Vec<u8>)> {
    let request = Request {
        method: b"GET".to_vec(),
        path: target.as_bytes().to_vec(),
        authority: b"admin".to_vec(),
        headers: Vec::new(),
        body: None,
        properties: BTreeMap::new(),
    };
    let (status, _, body) = exchange(port, &request)?;
    Ok((status, body))
}
