//! Two small loopback demo servers for `make run` and the Envoy end-to-end tests: an identity
//! provider (`harness idp`) and an echoing upstream (`harness upstream`).

pub mod idp;
pub mod upstream;

use std::io::Write;

use anyhow::{Result, anyhow, bail};
use tiny_http::{Header, Response, Server};

/// Binds `listen` (loopback only), installs the SIGTERM/SIGINT handler, and prints the one
/// readiness line `listening on ADDR`.
fn start(listen: &str) -> Result<Server> {
    let addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|e| anyhow!("--listen {listen}: {e}"))?;
    if !addr.ip().is_loopback() {
        bail!("--listen {listen}: only loopback addresses are allowed");
    }
    let server = Server::http(addr).map_err(|e| anyhow!("cannot listen on {listen}: {e}"))?;
    ctrlc::set_handler(|| std::process::exit(0))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| anyhow!("not an IP listener"))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {bound}")?;
    out.flush()?;
    Ok(server)
}

fn json_response(status: u16, body: &serde_json::Value) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_data(body.to_string().into_bytes())
        .with_status_code(status)
        .with_header(header("content-type", "application/json"))
}

fn text_response(status: u16, body: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_data(body.as_bytes().to_vec())
        .with_status_code(status)
        .with_header(header("content-type", "text/plain"))
}

fn header(name: &str, value: &str) -> Header {
    // Both parts are ASCII constants here, so this cannot fail.
    Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap_or_else(|()| unreachable!())
}
