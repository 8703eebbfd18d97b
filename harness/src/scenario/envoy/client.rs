//! The HTTP/1.1 client that sends the scenario's requests to Envoy, and the connections
//! held open one per Envoy worker.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};

use super::process::{Envoy, READY_TIMEOUT};
use crate::host::{HeaderMap, Request};

/// How long a request may take in Envoy before it counts as unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Sends `r` on a new connection and reads the whole answer: status, headers, body.
pub(super) fn exchange(port: u16, r: &Request) -> Result<(u16, HeaderMap, Vec<u8>)> {
    exchange_on(TcpStream::connect(("127.0.0.1", port))?, r)
}

/// Sends `r` on `stream` and reads the whole answer.
pub(super) fn exchange_on(mut stream: TcpStream, r: &Request) -> Result<(u16, HeaderMap, Vec<u8>)> {
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    let mut out = Vec::new();
    for part in [
        &r.method[..],
        b" ",
        &r.path,
        b" HTTP/1.1\r\nhost: ",
        &r.authority,
        b"\r\n",
    ] {
        out.extend(part);
    }
    for (k, v) in &r.headers {
        for part in [&k[..], b": ", v, b"\r\n"] {
            out.extend(part);
        }
    }
    let has_length = r
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case(b"content-length"));
    if let (Some(body), false) = (&r.body, has_length) {
        out.extend(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend(b"\r\n");
    out.extend(r.body.as_deref().unwrap_or_default());
    stream.write_all(&out)?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    let status = String::from_utf8_lossy(&line)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no answer (the connection closed)"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_until(b'\n', &mut line)?;
        let text = line.strip_suffix(b"\r\n").unwrap_or(&line);
        if text.is_empty() {
            break;
        }
        let at = text.iter().position(|b| *b == b':').unwrap_or(text.len());
        let value = text.get(at + 1..).unwrap_or_default();
        let value = value.strip_prefix(b" ").unwrap_or(value);
        headers.push((text[..at].to_ascii_lowercase(), value.to_vec()));
    }
    let length = headers
        .iter()
        .find(|(k, _)| k == b"content-length")
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<usize>().ok());
    let chunked = headers
        .iter()
        .any(|(k, v)| k == b"transfer-encoding" && v.eq_ignore_ascii_case(b"chunked"));
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body)?;
        }
        None if chunked => loop {
            line.clear();
            reader.read_until(b'\n', &mut line)?;
            let size = std::str::from_utf8(&line)?.trim();
            let size = usize::from_str_radix(size.split(';').next().unwrap_or(size), 16)?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend(&chunk[..size]);
        },
        None => {
            reader.read_to_end(&mut body)?;
        }
    }
    Ok((status, headers, body))
}

/// The connection held on worker `w`, opened (again) if need be. Envoy's listener has
/// `exact_balance`: a new connection goes to a worker with the fewest connections, so
/// with the others each holding one it lands on a worker of its own; the worker's
/// listener stats must show one connection on each, or the run fails.
pub(super) fn hold<'a>(
    held: &'a mut [Option<TcpStream>],
    w: usize,
    envoy: &Envoy,
) -> Result<&'a TcpStream> {
    if held[w].is_none() {
        let port = envoy.port.ok_or_else(|| anyhow!("Envoy is not running"))?;
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        let open = held.iter().filter(|h| h.is_some()).count() + 1;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let active = envoy.worker_connections()?;
            let spread = active.values().filter(|n| **n == 1).count() == open
                && active.values().all(|n| *n <= 1);
            if spread {
                break;
            }
            if Instant::now() >= deadline {
                bail!("held connections are not one per worker: {active:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        held[w] = Some(stream);
    }
    held[w]
        .as_ref()
        .ok_or_else(|| anyhow!("no connection on worker {w}"))
}
