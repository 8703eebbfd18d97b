//! A loopback HTTP/2 server (h2c, prior knowledge) for `harness run --envoy`: it plays a
//! cluster's scripted answers to Envoy's gRPC client (and to http calls on the same cluster,
//! which Envoy then also sends over HTTP/2). A gRPC request gets the answer as
//! `host::grpc::wire` makes it (status, metadata, length-prefixed messages, trailers); any
//! other request the answer's status, headers and body. It answers on the request's headers,
//! without waiting for its messages (it reads and drops them). One thread runs a
//! current-thread tokio runtime for all its connections; `stop` ends it and them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow};
use bytes::Bytes;
use h2::server::SendResponse;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;

use crate::host::HeaderMap;
use crate::host::grpc::wire;
use crate::host::upstream::Answer;

/// Connections Envoy may open at once, and then some.
const BACKLOG: u32 = 64;

/// A request as the handler sees it: `:path`, and the headers with `:authority` as `host`.
pub struct Request {
    pub path: String,
    pub headers: Vec<(String, String)>,
}

/// What answers a request.
pub type Handler = dyn Fn(&Request) -> Answer + Send + Sync;

pub struct GrpcServer {
    pub port: u16,
    stop: Arc<Notify>,
    thread: std::thread::JoinHandle<()>,
}

impl GrpcServer {
    /// Listens on 127.0.0.1 (a free port) and serves every request with `handler`.
    pub fn start(handler: Arc<Handler>) -> Result<GrpcServer> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let listener = {
            let _inside = runtime.enter();
            let socket = TcpSocket::new_v4()?;
            socket.bind(([127, 0, 0, 1], 0).into())?;
            socket.listen(BACKLOG)?
        };
        let port = listener.local_addr()?.port();
        let stop = Arc::new(Notify::new());
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            if let Ok((stream, _)) = accepted {
                                tokio::spawn(connection(stream, handler.clone()));
                            }
                        }
                        _ = stopped.notified() => return,
                    }
                }
            });
            // Dropping the runtime drops every connection and answer still under way.
        });
        Ok(GrpcServer { port, stop, thread })
    }

    pub fn stop(self) {
        self.stop.notify_one();
        let _ = self.thread.join();
    }
}

/// Serves one connection until the client closes it, or an answer closes it (`close`).
async fn connection(stream: TcpStream, handler: Arc<Handler>) {
    let _ = stream.set_nodelay(true);
    let Ok(mut connection) = h2::server::handshake(stream).await else {
        return;
    };
    let closing = Arc::new(Notify::new());
    loop {
        tokio::select! {
            next = connection.accept() => {
                let Some(Ok((request, respond))) = next else { return };
                let (parts, mut body) = request.into_parts();
                tokio::spawn(async move {
                    while let Some(Ok(chunk)) = body.data().await {
                        let _ = body.flow_control().release_capacity(chunk.len());
                    }
                });
                let mut headers = vec![(
                    "host".to_string(),
                    parts.uri.authority().map(|a| a.to_string()).unwrap_or_default(),
                )];
                headers.extend(parts.headers.iter().map(|(k, v)| {
                    (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())
                }));
                let grpc = parts
                    .headers
                    .get("content-type")
                    .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
                let request = Request { path: parts.uri.path().to_string(), headers };
                let answer = handler(&request);
                tokio::spawn(play(answer, grpc, respond, closing.clone()));
            }
            // Dropping the connection closes it.
            _ = closing.notified() => return,
        }
    }
}

/// Plays `answer` on one stream (a gRPC one if `grpc`).
async fn play(answer: Answer, grpc: bool, mut respond: SendResponse<Bytes>, closing: Arc<Notify>) {
    let delay_ms = match &answer {
        Answer::Respond { delay_ms, .. }
        | Answer::Reset { delay_ms }
        | Answer::Close { delay_ms } => *delay_ms,
        Answer::Hang | Answer::Unreachable => 0,
    };
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    match answer {
        Answer::Respond { .. } => {
            if send(&answer, grpc, &mut respond).await.is_err() {
                respond.send_reset(h2::Reason::PROTOCOL_ERROR);
            }
        }
        // Held until the server stops.
        Answer::Hang => std::future::pending().await,
        // The stream is reset (RST_STREAM) without an answer. (Headers sent just before
        // would be dropped with it: h2 clears what the stream has not sent yet.)
        Answer::Reset { .. } => respond.send_reset(h2::Reason::INTERNAL_ERROR),
        // The runner skips `unreachable` (a loopback server always connects).
        Answer::Close { .. } | Answer::Unreachable => closing.notify_one(),
    }
}

/// Sends an answer: gRPC framing for a gRPC request, else the status, headers and body.
async fn send(answer: &Answer, grpc: bool, respond: &mut SendResponse<Bytes>) -> Result<()> {
    let mut wired = wire(answer).ok_or_else(|| anyhow!("not a response"))?;
    if !grpc && let Answer::Respond { headers, body, .. } = answer {
        wired.headers = headers.clone();
        wired.data = vec![(0, body.clone())];
        wired.data.retain(|(_, part)| !part.is_empty());
        wired.trailers = None;
    }
    let status = StatusCode::from_bytes(&wired.status)?;
    let mut head = Response::builder().status(status).body(())?;
    *head.headers_mut() = header_map(&wired.headers)?;
    let ends = wired.data.is_empty() && wired.trailers.is_none();
    let mut stream = respond.send_response(head, ends)?;
    let parts = wired.data.len();
    for (i, (delay_ms, part)) in wired.data.into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let last = i + 1 == parts && wired.trailers.is_none();
        stream.send_data(Bytes::from(part), last)?;
    }
    if let Some(trailers) = wired.trailers {
        stream.send_trailers(header_map(&trailers)?)?;
    }
    Ok(())
}

fn header_map(pairs: &HeaderMap) -> Result<http::HeaderMap> {
    let mut map = http::HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name)?,
            HeaderValue::from_bytes(value)?,
        );
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::host::grpc::{GrpcReply, frame};

    /// One request over HTTP/2: status, `content-type`, data, trailers.
    async fn exchange(port: u16, content_type: &str) -> Result<(u16, String, Vec<u8>, String)> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        let (client, connection) = h2::client::handshake(tcp).await?;
        tokio::spawn(connection);
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://probe:{port}/p.S/M"))
            .header("content-type", content_type)
            .body(())?;
        let (response, _) = client.ready().await?.send_request(request, true)?;
        let response = response.await?;
        let status = response.status().as_u16();
        let content_type = response.headers()["content-type"].to_str()?.to_string();
        let mut body = response.into_body();
        let mut data = Vec::new();
        while let Some(chunk) = body.data().await {
            data.extend(chunk?);
        }
        let trailers = body.trailers().await?.unwrap_or_default();
        let mut names: Vec<String> = trailers
            .iter()
            .map(|(k, v)| format!("{k}={}", v.to_str().unwrap_or("?")))
            .collect();
        names.sort();
        Ok((status, content_type, data, names.join(" ")))
    }

    #[test]
    fn answers_grpc_with_framing_and_trailers_and_other_requests_plainly() -> Result<()> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seeing = seen.clone();
        let handler: Arc<Handler> = Arc::new(move |r: &Request| {
            seeing
                .lock()
                .unwrap()
                .push((r.path.clone(), r.headers[0].clone()));
            Answer::Respond {
                status: b"200".to_vec(),
                headers: vec![(b"content-type".to_vec(), b"text/plain".to_vec())],
                body: b"plain".to_vec(),
                delay_ms: 0,
                grpc: Some(GrpcReply {
                    messages: Some(vec![(0, b"a".to_vec()), (10, b"bc".to_vec())]),
                    trailing_metadata: vec![(b"x-t".to_vec(), b"1".to_vec())],
                    ..GrpcReply::default()
                }),
            }
        });
        let server = GrpcServer::start(handler)?;
        let port = server.port;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let grpc = runtime.block_on(exchange(port, "application/grpc"))?;
        let plain = runtime.block_on(exchange(port, "text/plain"))?;
        server.stop();
        let framed = [frame(b"a"), frame(b"bc")].concat();
        let trailers = "grpc-status=0 x-t=1".to_string();
        assert_eq!(grpc, (200, "application/grpc".into(), framed, trailers));
        assert_eq!(
            plain,
            (200, "text/plain".into(), b"plain".to_vec(), String::new())
        );
        let host = ("host".to_string(), format!("probe:{port}"));
        assert_eq!(seen.lock().unwrap()[0], ("/p.S/M".to_string(), host));
        Ok(())
    }
}
