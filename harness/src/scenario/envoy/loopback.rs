//! The loopback servers that play the scenario's clusters and main upstream over HTTP/1.1,
//! what they saw, and the port that refuses connections.

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Result;

use crate::host::HeaderMap;
use crate::host::upstream::{Answer, Clusters, Routes};
use crate::servers::http::{self, Reply};

/// A call a cluster saw: its name, target and headers.
pub(super) struct SeenCall {
    pub(super) cluster: String,
    pub(super) target: String,
    pub(super) headers: Vec<(String, String)>,
}

/// What the loopback servers share with the run.
pub(super) struct Shared {
    pub(super) clusters: Clusters,
    pub(super) backend: Routes,
    /// Every call a cluster server received: (cluster, path).
    pub(super) calls: Vec<SeenCall>,
    /// The headers and body of every request the main upstream received, in order.
    pub(super) upstream: Vec<(HeaderMap, Vec<u8>)>,
}

/// A loopback server for a cluster (`Some(name)`) or the main route's upstream (`None`).
pub(super) struct Server {
    pub(super) port: u16,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Server {
    pub(super) fn start(shared: Arc<Mutex<Shared>>, cluster: Option<String>) -> Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let handler: Arc<http::Handler> =
            Arc::new(move |r: &http::Request| answer(&shared, cluster.as_deref(), r));
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let handler = handler.clone();
                std::thread::spawn(move || http::connection(stream, handler.as_ref()));
            }
        });
        Ok(Server { port, stop, thread })
    }

    /// Stops accepting (a last connection wakes the accept loop); open connections end with
    /// the process.
    pub(super) fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        let _ = self.thread.join();
    }
}

/// A loopback port that refuses connections: the local end of a connection this process
/// holds, bound (no one else takes the port) and not listening (a connection to it is
/// refused, as to a host that is down).
pub(super) struct Refusing {
    pub(super) port: u16,
    _ends: (TcpStream, TcpStream),
}

impl Refusing {
    pub(super) fn new() -> Result<Refusing> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let client = TcpStream::connect(listener.local_addr()?)?;
        let (server, _) = listener.accept()?;
        Ok(Refusing {
            port: client.local_addr()?.port(),
            _ends: (client, server),
        })
    }
}

/// A server's reply to `r`: the script's answer (the main upstream's default is the echo).
fn answer(shared: &Mutex<Shared>, cluster: Option<&str>, r: &http::Request) -> Reply {
    let Ok(mut shared) = shared.lock() else {
        return Reply::Reset;
    };
    let answer = match cluster {
        Some(name) => {
            shared.calls.push(SeenCall {
                cluster: name.to_string(),
                target: r.target.clone(),
                headers: r.headers.clone(),
            });
            Some(shared.clusters.answer(name, &r.target))
        }
        None => {
            let mut seen: HeaderMap = vec![
                (b":authority".to_vec(), header(r, "host").into_bytes()),
                (b":path".to_vec(), r.target.clone().into_bytes()),
                (b":method".to_vec(), r.method.clone().into_bytes()),
                (b":scheme".to_vec(), b"http".to_vec()),
            ];
            seen.extend(r.raw_headers.iter().filter(|(k, _)| k != b"host").cloned());
            shared.upstream.push((seen, r.body.clone()));
            shared.backend.next(&r.target)
        }
    };
    // The harness's echo, with the same headers (no `connection`, say).
    let answer = answer.unwrap_or_else(|| {
        let echo = crate::servers::upstream::echo(
            &r.method,
            &r.target,
            r.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        Answer::Respond {
            status: b"200".to_vec(),
            headers: vec![(b"content-type".to_vec(), b"application/json".to_vec())],
            body: echo.to_string().into_bytes(),
            delay_ms: 0,
            grpc: None,
        }
    });
    match answer {
        Answer::Respond {
            status,
            headers,
            body,
            delay_ms,
            ..
        } => {
            let mut head = b"HTTP/1.1 ".to_vec();
            head.extend(&status);
            head.extend(b" X\r\n");
            for (k, v) in headers.iter().filter(|(k, _)| k != b"content-length") {
                head.extend(k);
                head.extend(b": ");
                head.extend(v);
                head.extend(b"\r\n");
            }
            head.extend(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
            head.extend(body);
            delayed(
                delay_ms,
                Reply::Raw {
                    bytes: head,
                    close: false,
                },
            )
        }
        Answer::Hang => Reply::Hold,
        // Headers promising more than is sent, then the connection closes: a reset mid-answer.
        Answer::Reset { delay_ms } => delayed(
            delay_ms,
            Reply::Raw {
                bytes: b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npart".to_vec(),
                close: true,
            },
        ),
        Answer::Close { delay_ms } => delayed(
            delay_ms,
            Reply::Raw {
                bytes: Vec::new(),
                close: true,
            },
        ),
        // Envoy is sent to the refusing port for these (`refusals`): never asked here.
        Answer::Unreachable => Reply::Reset,
    }
}

fn delayed(ms: u64, reply: Reply) -> Reply {
    Reply::Delayed(Duration::from_millis(ms), Box::new(reply))
}

fn header(r: &http::Request, name: &str) -> String {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusing_port_refuses() {
        let refusing = Refusing::new().unwrap();
        let e = TcpStream::connect(("127.0.0.1", refusing.port)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}
