//! Exercises the host's ABI areas, driven by request headers (see probe/scenarios/):
//! - `x-probe-call: CLUSTER PATH`: http call from the stream; the answer's status (or
//!   `failed`) and body length are added as request headers, then the request resumes
//!   (counted in `probe_call_answers`; a call that failed without headers is `failed`,
//!   unless `x-probe-read-failed` makes it read the absent headers anyway); with `x-probe-then-continue` the stream goes on at
//!   once without waiting.
//! - `x-probe-shared-set: KEY=VALUE`, `x-probe-shared-get: KEY` (adds `x-probe-shared`);
//!   `x-probe-cas: KEY` writes twice with the same CAS (adds `x-probe-cas-result`).
//! - `x-probe-enqueue: MSG` enqueues on queue `q`, which the root registered; the owner's
//!   `on_queue_ready` moves it to shared data `queue_last`.
//! - `x-probe-property`: adds `x-probe-url-path` from the `request.url_path` property;
//!   `x-probe-get-property: A.B`: adds `x-probe-property-hex`, the bytes of property `A.B`
//!   in hex (segments joined by `|` instead when one holds a dot: `A|B.C|D`).
//! - `x-probe-verify: garbage|empty`: calls `verify_signature`; adds `x-probe-verified`.
//! - `x-probe-local: STATUS` (`x-probe-twice: 1` sends a second one), `x-probe-panic: 1`.
//! - `x-probe-trace: KEY`: the stream's callbacks (with sizes and `end_of_stream`) are
//!   recorded in order and written to shared data `KEY` as they happen, up to `on_log`,
//!   `on_done` and the context's deletion (`delete`), so a later request reads the sequence
//!   (of a stream still open, too).
//! - `x-probe-hold: 1`: `on_http_request_headers` returns `Pause` (nothing resumes it; with
//!   `allow_on_headers_stop_iteration` the body callbacks may let the request go on).
//! - `x-probe-body: MODE`: `on_http_request_body` returns `Pause` (buffering) until the end of
//!   the stream, then reads the whole body (traced as `read=BODY`) and: `buffer`: continues
//!   (or stays paused while an `x-probe-call` is out; its answer resumes the request);
//!   `replace=NEW`: makes the body `NEW` and `content-length` its length, then continues;
//!   `swap=NEW`: makes the body `NEW` (leaving `content-length` as it was), then continues;
//!   `local=STATUS`: sends a local response (`x-probe-local: body`, body `local`);
//!   `late`: every body callback continues, and the last adds request header `x-probe-late`.
//! - `x-probe-names: 1`: adds request header `x-probe-request-names` (the names of the
//!   request headers the filter sees, in order) and response header
//!   `x-probe-response-names` (the same for the response).
//! - `x-probe-get-status: 1` with `x-probe-call`: adds `x-probe-call-status`, what
//!   `proxy_get_status` answers in `on_http_call_response` (`CODE MESSAGE`).
//! - `x-probe-grpc: CLUSTER`: a gRPC call (`probe.Probe/Call`, message `ping`, 2 s); the
//!   answer's status, message (`proxy_get_status`) and body length are added as request
//!   headers `x-probe-grpc-status`, `x-probe-grpc-message`, `x-probe-grpc-body-len`, then
//!   the request resumes.
//! - `x-probe-grpc-stream: CLUSTER`: opens a gRPC stream (`probe.Probe/Stream`, metadata
//!   `x-probe-meta: 1`) and sends `ping`; `x-probe-grpc-stream-mode` then: `send` (the
//!   default: the stream stays open), `end` (the message ends the stream), `close`
//!   (`proxy_grpc_close` after it), `cancel` (`proxy_grpc_cancel` after it, then a second
//!   cancel and a send, and the request goes on at once). What the stream receives is
//!   written, as it happens, to shared data `grpc_stream` (`initial(NAMES)`,
//!   `message(TEXT)`, `trailing(NAMES)`, `close(CODE MESSAGE)`, with the results of the
//!   calls, `cancel=Ok` ...); on close a `send` stream is closed too (`close=RESULT`), and the
//!   request goes on with request header `x-probe-grpc-stream-events` holding the sequence.
//! - `x-probe-grpc-local: CODE` (7, 16, else 13): a gRPC local response (`send_grpc_response`, message
//!   `probe says no`).
//! - `x-probe-pause-response: CLUSTER PATH`: `on_http_response_headers` makes that http
//!   call and pauses the response; the answer adds response header `x-probe-resumed` (its
//!   status) and resumes it.
//! - Always: counter `probe_requests`, gauge `probe_gauge` = 7, histogram `probe_histogram`
//!   (one value per request), adds `x-probe-added`, removes
//!   `x-probe-remove-me`, adds response header `x-probe-response`, logs the path at debug.
//!
//! Root: plugin configuration `reject` refuses it; `no-http-context`: the root makes no HTTP
//! context (`create_http_context` returns `None`: the SDK panics in `proxy_on_context_create`);
//! `tick` sets a 1 s tick that counts
//! `probe_ticks` and, on the first tick, calls `idp /root` from the root context, storing the
//! answer's status in shared data `root_status`.

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, GrpcStatusCode, LogLevel, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { ticks: 0, no_http_context: false }) });
}}

struct Root {
    ticks: u32,
    /// Plugin configuration `no-http-context`.
    no_http_context: bool,
}

fn status_of(ctx: &dyn Context) -> String {
    ctx.get_http_call_response_header(":status")
        .unwrap_or_else(|| "failed".into())
}

impl Context for Root {
    fn on_http_call_response(&mut self, _: u32, _: usize, _: usize, _: usize) {
        let _ = self.set_shared_data("root_status", Some(status_of(self).as_bytes()), None);
    }
}

impl Root {
    /// Moves the queue's messages into shared data `queue_last`.
    fn drain(&self, queue: u32) {
        while let Ok(Some(item)) = self.dequeue_shared_queue(queue) {
            let _ = self.set_shared_data("queue_last", Some(&item), None);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let config = String::from_utf8_lossy(&config);
        if config.contains("tick") {
            self.set_tick_period(Duration::from_secs(1));
        }
        self.register_shared_queue("q");
        self.no_http_context = config.contains("no-http-context");
        !config.contains("reject")
    }
    fn on_queue_ready(&mut self, queue: u32) {
        self.drain(queue);
    }
    fn on_tick(&mut self) {
        self.ticks += 1;
        if let Ok(id) = hostcalls::define_metric(MetricType::Counter, "probe_ticks") {
            let _ = hostcalls::increment_metric(id, 1);
        }
        if self.ticks == 1 {
            let headers = vec![
                (":method", "GET"),
                (":path", "/root"),
                (":authority", "idp"),
            ];
            let _ = self.dispatch_http_call("idp", headers, None, vec![], Duration::from_secs(1));
        }
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        if self.no_http_context {
            return None;
        }
        Some(Box::new(Probe::default()))
    }
}

#[derive(Default)]
struct Probe {
    /// `x-probe-trace`: the shared-data key the callbacks are written to, and them so far.
    trace: Option<String>,
    events: Vec<String>,
    /// `x-probe-names`: report the response header names too.
    names: bool,
    /// `x-probe-pause-response`: the call to make from the response headers; then whether
    /// its answer is awaited there.
    pause_response: Option<String>,
    response_paused: bool,
    /// `x-probe-body`: what the request body callbacks do.
    body_mode: Option<String>,
    /// An `x-probe-call` from the request headers is not answered yet.
    call_pending: bool,
    /// `x-probe-grpc-stream`: the mode, and what the stream received so far.
    stream_mode: String,
    stream_events: Vec<String>,
}

/// The names of a gRPC stream's metadata map, joined by `,`.
fn metadata_names(map: Vec<(String, Vec<u8>)>) -> String {
    let names: Vec<String> = map.into_iter().map(|(name, _)| name).collect();
    names.join(",")
}

impl Probe {
    /// Records what the gRPC stream received, in shared data `grpc_stream`.
    fn stream_event(&mut self, event: String) {
        self.stream_events.push(event);
        let events = self.stream_events.join(" ");
        let _ = hostcalls::set_shared_data("grpc_stream", Some(events.as_bytes()), None);
    }

    /// Opens the `x-probe-grpc-stream` stream to `cluster` and sends `ping`.
    fn open_stream(&mut self, cluster: &str) -> Action {
        self.stream_mode = self
            .get_http_request_header("x-probe-grpc-stream-mode")
            .unwrap_or("send".into());
        let metadata = vec![("x-probe-meta", &b"1"[..])];
        let token = match self.open_grpc_stream(cluster, "probe.Probe", "Stream", metadata) {
            Ok(token) => token,
            Err(status) => {
                let body = format!("grpc stream: {status:?}");
                self.send_http_response(500, vec![], Some(body.as_bytes()));
                return Action::Pause;
            }
        };
        let end = self.stream_mode == "end";
        let sent = hostcalls::send_grpc_stream_message(token, Some(b"ping"), end);
        self.stream_event(format!("send={sent:?}"));
        match self.stream_mode.as_str() {
            "close" => {
                let closed = hostcalls::close_grpc_stream(token);
                self.stream_event(format!("close={closed:?}"));
            }
            "cancel" => {
                let cancelled = hostcalls::cancel_grpc_stream(token);
                let again = hostcalls::cancel_grpc_stream(token);
                let sent = hostcalls::send_grpc_stream_message(token, Some(b"late"), false);
                self.stream_event(format!(
                    "cancel={cancelled:?} cancel={again:?} send={sent:?}"
                ));
                return Action::Continue;
            }
            _ => {}
        }
        Action::Pause
    }

    /// Records a callback and stores the sequence so far in shared data.
    fn record(&mut self, event: String) {
        let Some(key) = &self.trace else { return };
        self.events.push(event);
        let _ = hostcalls::set_shared_data(key, Some(self.events.join(" ").as_bytes()), None);
    }
}

fn header_names(map: MapType) -> String {
    let names: Vec<String> = hostcalls::get_map(map)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    names.join(",")
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.record("delete".into());
    }
}

impl Context for Probe {
    fn on_http_call_response(&mut self, _: u32, headers: usize, body_size: usize, _: usize) {
        if let Ok(id) = hostcalls::define_metric(MetricType::Counter, "probe_call_answers") {
            let _ = hostcalls::increment_metric(id, 1);
        }
        if self.response_paused {
            self.add_http_response_header("x-probe-resumed", &status_of(self));
            self.resume_http_response();
            return;
        }
        self.call_pending = false;
        let read_anyway = self
            .get_http_request_header("x-probe-read-failed")
            .is_some();
        let status = if headers == 0 && !read_anyway {
            "failed".to_string()
        } else {
            status_of(self)
        };
        self.add_http_request_header("x-probe-status", &status);
        self.add_http_request_header("x-probe-body-len", &body_size.to_string());
        if self.get_http_request_header("x-probe-get-status").is_some() {
            let (code, message) = self.get_grpc_status();
            let status = match message {
                Some(message) if !message.is_empty() => format!("{code} {message}"),
                _ => code.to_string(),
            };
            self.add_http_request_header("x-probe-call-status", &status);
        }
        self.resume_http_request();
    }

    fn on_grpc_call_response(&mut self, _: u32, status_code: u32, response_size: usize) {
        let (_, message) = self.get_grpc_status();
        self.add_http_request_header("x-probe-grpc-status", &status_code.to_string());
        self.add_http_request_header("x-probe-grpc-message", &message.unwrap_or_default());
        self.add_http_request_header("x-probe-grpc-body-len", &response_size.to_string());
        self.resume_http_request();
    }

    fn on_grpc_stream_initial_metadata(&mut self, _: u32, _: u32) {
        let names = metadata_names(self.get_grpc_stream_initial_metadata());
        self.stream_event(format!("initial({names})"));
    }

    fn on_grpc_stream_message(&mut self, _: u32, size: usize) {
        let message = self.get_grpc_stream_message(0, size).unwrap_or_default();
        self.stream_event(format!("message({})", String::from_utf8_lossy(&message)));
    }

    fn on_grpc_stream_trailing_metadata(&mut self, _: u32, _: u32) {
        let names = metadata_names(self.get_grpc_stream_trailing_metadata());
        self.stream_event(format!("trailing({names})"));
    }

    fn on_grpc_stream_close(&mut self, token: u32, status_code: u32) {
        let (_, message) = self.get_grpc_status();
        let message = message.unwrap_or_default();
        self.stream_event(format!("close({status_code} {message})"));
        if self.stream_mode == "send" {
            let closed = hostcalls::close_grpc_stream(token);
            self.stream_event(format!("close={closed:?}"));
        }
        let events = self.stream_events.join(" ");
        self.add_http_request_header("x-probe-grpc-stream-events", &events);
        self.resume_http_request();
    }

    fn on_done(&mut self) -> bool {
        self.record("done".into());
        true
    }
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        self.trace = self.get_http_request_header("x-probe-trace");
        self.pause_response = self.get_http_request_header("x-probe-pause-response");
        self.body_mode = self.get_http_request_header("x-probe-body");
        self.record(format!("request_headers(eos={end_of_stream})"));
        if self.get_http_request_header("x-probe-names").is_some() {
            self.names = true;
            let names = header_names(MapType::HttpRequestHeaders);
            self.add_http_request_header("x-probe-request-names", &names);
        }
        if let Ok(id) = hostcalls::define_metric(MetricType::Counter, "probe_requests") {
            let _ = hostcalls::increment_metric(id, 1);
        }
        if let Ok(id) = hostcalls::define_metric(MetricType::Gauge, "probe_gauge") {
            let _ = hostcalls::record_metric(id, 7);
        }
        let path = self.get_http_request_header(":path").unwrap_or_default();
        log::debug!("probe request path={path}");
        self.add_http_request_header("x-probe-added", "yes");
        self.set_http_request_header("x-probe-remove-me", None);
        if self.get_http_request_header("x-probe-panic").is_some() {
            panic!("probe panic on request");
        }
        if let Some(status) = self.get_http_request_header("x-probe-local") {
            let status = status.parse().unwrap_or(500);
            self.send_http_response(status, vec![("x-probe-local", "1")], Some(b"local"));
            if self.get_http_request_header("x-probe-twice").is_some() {
                self.send_http_response(500, vec![], None);
            }
            return Action::Pause;
        }
        if let Some(code) = self.get_http_request_header("x-probe-grpc-local") {
            let code = match code.as_str() {
                "7" => GrpcStatusCode::PermissionDenied,
                "16" => GrpcStatusCode::Unauthenticated,
                _ => GrpcStatusCode::Internal,
            };
            self.send_grpc_response(code, Some("probe says no"), vec![]);
            return Action::Pause;
        }
        if let Some(cluster) = self.get_http_request_header("x-probe-grpc-stream") {
            return self.open_stream(&cluster);
        }
        if let Some(cluster) = self.get_http_request_header("x-probe-grpc") {
            let timeout = Duration::from_secs(2);
            return match self.dispatch_grpc_call(
                &cluster,
                "probe.Probe",
                "Call",
                vec![],
                Some(b"ping"),
                timeout,
            ) {
                Ok(_) => Action::Pause,
                Err(status) => {
                    let body = format!("grpc dispatch: {status:?}");
                    self.send_http_response(500, vec![], Some(body.as_bytes()));
                    Action::Pause
                }
            };
        }
        if let Some(kv) = self.get_http_request_header("x-probe-shared-set") {
            let (k, v) = kv.split_once('=').unwrap_or((&kv, ""));
            let _ = self.set_shared_data(k, Some(v.as_bytes()), None);
        }
        if let Some(k) = self.get_http_request_header("x-probe-cas") {
            let _ = self.set_shared_data(&k, Some(b"zero"), None);
            let (_, cas) = self.get_shared_data(&k);
            let first = self.set_shared_data(&k, Some(b"first"), cas);
            let stale = self.set_shared_data(&k, Some(b"second"), cas);
            self.add_http_request_header("x-probe-cas-result", &format!("{first:?} {stale:?}"));
        }
        if let Some(msg) = self.get_http_request_header("x-probe-enqueue") {
            let result = match self.resolve_shared_queue("", "q") {
                Some(q) => format!("{:?}", self.enqueue_shared_queue(q, Some(msg.as_bytes()))),
                None => "no queue".into(),
            };
            self.add_http_request_header("x-probe-enqueued", &result);
        }
        if self.get_http_request_header("x-probe-property").is_some() {
            let path = self
                .get_property(vec!["request", "url_path"])
                .unwrap_or_default();
            self.add_http_request_header("x-probe-url-path", &String::from_utf8_lossy(&path));
        }
        if let Some(path) = self.get_http_request_header("x-probe-get-property") {
            // Segments joined by `|` when one holds a dot (`metadata|filter_metadata|a.b|k`).
            let separator = if path.contains('|') { '|' } else { '.' };
            let segments = path.split(separator).collect();
            let value = self.get_property(segments).unwrap_or_default();
            let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
            self.add_http_request_header("x-probe-property-hex", &hex);
        }
        if let Ok(id) = hostcalls::define_metric(MetricType::Histogram, "probe_histogram") {
            let _ = hostcalls::record_metric(id, 5);
        }
        if let Some(k) = self.get_http_request_header("x-probe-shared-get") {
            let (value, cas) = self.get_shared_data(&k);
            let value = value
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or("none".into());
            self.add_http_request_header(
                "x-probe-shared",
                &format!("{value} cas={}", cas.is_some()),
            );
        }
        if let Some(kind) = self.get_http_request_header("x-probe-verify") {
            let args: &[u8] = if kind == "garbage" {
                &[0x0a, 0x09]
            } else {
                b"\x0a\x06sha256"
            };
            let result = match hostcalls::call_foreign_function("verify_signature", Some(args)) {
                Ok(bytes) => format!(
                    "ok {}",
                    String::from_utf8_lossy(&bytes.unwrap_or_default())
                        .trim_matches(|c: char| !c.is_ascii_graphic())
                ),
                Err(status) => format!("{status:?}"),
            };
            self.add_http_request_header("x-probe-verified", &result);
        }
        if let Some(target) = self.get_http_request_header("x-probe-call") {
            let (cluster, path) = target.split_once(' ').unwrap_or((&target, "/"));
            let mut headers = vec![(":method", "GET"), (":path", path)];
            if self
                .get_http_request_header("x-probe-no-authority")
                .is_none()
            {
                headers.push((":authority", "probe"));
            }
            let then_continue = self
                .get_http_request_header("x-probe-then-continue")
                .is_some();
            return match self.dispatch_http_call(
                cluster,
                headers,
                None,
                vec![],
                Duration::from_secs(2),
            ) {
                Ok(_) if then_continue => Action::Continue,
                Ok(_) => {
                    self.call_pending = true;
                    Action::Pause
                }
                Err(status) => {
                    self.send_http_response(
                        500,
                        vec![],
                        Some(format!("dispatch: {status:?}").as_bytes()),
                    );
                    Action::Pause
                }
            };
        }
        if self.get_http_request_header("x-probe-hold").is_some() {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.record(format!("request_body({size},eos={end_of_stream})"));
        let Some(mode) = self.body_mode.clone() else {
            return Action::Continue;
        };
        if mode == "late" {
            if end_of_stream {
                self.add_http_request_header("x-probe-late", "1");
            }
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        self.record(format!("read={}", String::from_utf8_lossy(&body)));
        if let Some(new) = mode.strip_prefix("replace=") {
            self.set_http_request_body(0, size, new.as_bytes());
            self.set_http_request_header("content-length", Some(&new.len().to_string()));
        } else if let Some(new) = mode.strip_prefix("swap=") {
            self.set_http_request_body(0, size, new.as_bytes());
        } else if let Some(status) = mode.strip_prefix("local=") {
            let status = status.parse().unwrap_or(500);
            self.send_http_response(status, vec![("x-probe-local", "body")], Some(b"local"));
            return Action::Pause;
        }
        if self.call_pending {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        self.record(format!("response_headers(eos={end_of_stream})"));
        if self.names {
            let names = header_names(MapType::HttpResponseHeaders);
            self.add_http_response_header("x-probe-response-names", &names);
        }
        self.add_http_response_header("x-probe-response", "1");
        if let Some(target) = self.pause_response.take() {
            let (cluster, path) = target.split_once(' ').unwrap_or((&target, "/"));
            let headers = vec![(":method", "GET"), (":path", path), (":authority", "probe")];
            let timeout = Duration::from_secs(2);
            if self
                .dispatch_http_call(cluster, headers, None, vec![], timeout)
                .is_ok()
            {
                self.response_paused = true;
                return Action::Pause;
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.record(format!("response_body({size},eos={end_of_stream})"));
        Action::Continue
    }

    fn on_log(&mut self) {
        self.record("log".into());
    }
}
