//! Two small loopback demo servers for `make run` and the Envoy end-to-end tests: an identity
//! provider (`harness idp`) and an echoing upstream (`harness upstream`); and the HTTP/2
//! server that plays gRPC clusters for `harness run --envoy`.

pub(crate) mod grpc;
pub(crate) mod http;
pub mod idp;
pub mod upstream;

use std::io::Write;
use std::net::TcpListener;

use anyhow::{Result, anyhow, bail};

/// Binds `listen` (loopback only), installs the SIGTERM/SIGINT handler, and prints the one
/// readiness line `listening on ADDR`.
fn start(listen: &str) -> Result<TcpListener> {
    let addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|e| anyhow!("--listen {listen}: {e}"))?;
    if !addr.ip().is_loopback() {
        bail!("--listen {listen}: only loopback addresses are allowed");
    }
    let listener =
        TcpListener::bind(addr).map_err(|e| anyhow!("cannot listen on {listen}: {e}"))?;
    ctrlc::set_handler(|| std::process::exit(0))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", listener.local_addr()?)?;
    out.flush()?;
    Ok(listener)
}
