//! One HTTP stream through the filter, as Envoy's connection manager drives it: request
//! headers and body, the main upstream's answer (scripted, or an echo), response headers and
//! body, local replies, a client that goes away, and the outcome.

use super::lifecycle::broken_outcome;
use super::*;

impl Proxy {
    /// Sends a request to `worker`; returns its id. Its outcome may come later (paused).
    pub fn send(&mut self, worker: usize, request: &Request) -> usize {
        let id = self.requests.len();
        let worker = worker.min(self.boot.workers - 1);
        let now = self.world.borrow().now_ms;
        let usable = self
            .vms
            .get_mut(&VmId::Worker(worker))
            .filter(|vm| vm.broken.is_none() && self.configured);
        let Some(vm) = usable else {
            self.requests.push(Tracked {
                worker,
                context: 0,
                outcome: Some(broken_outcome(now)),
                sent_ms: now,
                done_ms: now,
            });
            return id;
        };
        let ctx = vm.next_context;
        vm.next_context += 1;
        let mut headers = vec![
            (b":authority".to_vec(), request.authority.clone()),
            (b":path".to_vec(), request.path.clone()),
            (b":method".to_vec(), request.method.clone()),
            (b":scheme".to_vec(), b"http".to_vec()),
        ];
        headers.extend(
            request
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone())),
        );
        envoy::request_headers(&mut headers, request.body.as_deref(), id as u64);
        let body = request.body.as_deref().unwrap_or_default();
        let stream = Stream {
            client_framed: envoy::framed(&headers, body),
            request_headers: headers,
            request_body: request.body.clone().unwrap_or_default(),
            properties: request.properties.clone(),
            ..Stream::default()
        };
        vm.store.data_mut().streams.insert(ctx, stream);
        self.requests.push(Tracked {
            worker,
            context: ctx,
            outcome: None,
            sent_ms: now,
            done_ms: now,
        });
        let created = self.call(
            VmId::Worker(worker),
            Phase::Callback,
            ctx,
            "proxy_on_context_create",
            &[ctx, ROOT],
        );
        if created.is_some() {
            self.headers(worker, ctx, Direction::Request);
            self.settle(worker);
        } else {
            // The filter failed to make the stream's context (the Rust SDK panics when the
            // root context makes no HTTP context): the VM has failed, and Envoy's
            // `onRequestHeaders` answers the request with its empty 503 (`CHECK_FAIL_HTTP`),
            // as it does every later one on this worker.
            self.fail_request(worker, ctx);
        }
        id
    }

    /// The client goes away: a request still open ends (Envoy then runs `on_log`, `on_done`,
    /// `on_delete` and cancels the stream's http calls). Returns false if it had ended.
    pub fn cancel(&mut self, id: usize) -> bool {
        let Some(r) = self.requests.get(id).filter(|r| r.outcome.is_none()) else {
            return false;
        };
        let (worker, ctx) = (r.worker, r.context);
        let outcome = Outcome::unanswered("cancelled");
        self.finish(worker, ctx, outcome);
        self.settle(worker);
        true
    }

    /// Acts on what the last callbacks asked for: local responses, closes, continues.
    pub(super) fn settle(&mut self, worker: usize) {
        loop {
            let Some(vm) = self.vms.get(&VmId::Worker(worker)) else {
                return;
            };
            let next = vm
                .store
                .data()
                .streams
                .iter()
                .find(|(_, s)| {
                    s.local_response.is_some()
                        || s.closed
                        || s.continue_requested.iter().any(|c| *c)
                        || s.tcp.as_ref().is_some_and(|t| t.continue_downstream)
                })
                .map(|(ctx, _)| *ctx);
            let Some(ctx) = next else { return };
            let Some(stream) = self.stream(worker, ctx) else {
                return;
            };
            if stream.tcp.is_some() {
                self.settle_tcp(worker, ctx);
                continue;
            }
            if let Some(local) = stream.local_response.take() {
                self.local_reply(worker, ctx, local);
            } else if stream.closed {
                let outcome = Outcome::unanswered("reset");
                self.finish(worker, ctx, outcome);
            } else {
                let dir = if stream.continue_requested[0] {
                    Direction::Request
                } else {
                    Direction::Response
                };
                stream.continue_requested[dir as usize] = false;
                match stream.stage[dir as usize] {
                    Stage::Headers => self.body(worker, ctx, dir, false),
                    Stage::Body => self.passed(worker, ctx, dir),
                    Stage::NotStarted | Stage::Passed => {}
                }
            }
        }
    }

    /// A local reply goes back through the filter's response callbacks as Envoy renders it
    /// (`envoy::local_reply`); sent while the response is already in the filter, it replaces
    /// that response at once.
    pub(super) fn local_reply(&mut self, worker: usize, ctx: u32, local: LocalResponse) {
        let now = self.world.borrow().now_ms;
        let Some(stream) = self.stream(worker, ctx) else {
            return;
        };
        let (headers, body) = envoy::local_reply(
            local.status,
            local.headers,
            local.body,
            local.grpc_status,
            &stream.request_headers,
        );
        stream.stage[Direction::Request as usize] = Stage::Passed;
        stream.by = "local";
        stream.details = Some(envoy::local_reply_details(&local.details));
        if stream.stage[Direction::Response as usize] == Stage::NotStarted {
            stream.response_headers = headers;
            stream.response_body = body;
            return self.headers(worker, ctx, Direction::Response);
        }
        let outcome = Outcome {
            status: local.status as u16,
            headers: envoy::downstream(headers, &body, now),
            body,
            upstream: stream.upstream.take(),
            upstream_body: stream.upstream_body.take(),
            by: "local",
            details: stream.details.take(),
        };
        self.finish(worker, ctx, outcome);
    }

    /// Whether stream `ctx` stops here: it is gone, or a local reply or close waits.
    pub(super) fn interrupted(&mut self, worker: usize, ctx: u32) -> bool {
        self.stream(worker, ctx)
            .is_none_or(|s| s.local_response.is_some() || s.closed)
    }

    /// Calls `dir`'s callback `name` for stream `ctx`; `None` when the stream stops (a trap,
    /// a local reply, a close), else whether the filter paused.
    pub(super) fn step(
        &mut self,
        worker: usize,
        ctx: u32,
        dir: Direction,
        name: &str,
        args: &[u32],
    ) -> Option<bool> {
        if let Some(s) = self.stream(worker, ctx) {
            s.continue_requested[dir as usize] = false;
        }
        let action = self.call(VmId::Worker(worker), Phase::Callback, ctx, name, args)?;
        if self.interrupted(worker, ctx) {
            return None;
        }
        Some(action.unwrap_or(0) != 0)
    }

    /// `dir`'s headers go through the filter (`end_of_stream` when there is no body); then its
    /// body, unless the filter paused.
    pub(super) fn headers(&mut self, worker: usize, ctx: u32, dir: Direction) {
        let Some(s) = self.stream(worker, ctx) else {
            return;
        };
        s.stage[dir as usize] = Stage::Headers;
        // What comes from a peer arrives as data first; Envoy's own answers (a local reply,
        // the router's 503 or 504) are handed over whole.
        let streamed = dir == Direction::Request || s.by == "upstream";
        let (name, n, eos) = match dir {
            Direction::Request => (
                "proxy_on_request_headers",
                s.request_headers.len(),
                s.request_body.is_empty(),
            ),
            Direction::Response => (
                "proxy_on_response_headers",
                s.response_headers.len(),
                s.response_body.is_empty(),
            ),
        };
        let args = [ctx, n as u32, u32::from(eos)];
        match self.step(worker, ctx, dir, name, &args) {
            Some(false) => self.body(worker, ctx, dir, streamed),
            // With `allow_on_headers_stop_iteration` a pause is Envoy's StopIteration: only
            // the headers wait; the body still goes through the filter as it arrives, and
            // the headers go on with the first body callback that continues.
            Some(true) if self.boot.stop_iteration && !eos => {
                if let Some(s) = self.stream(worker, ctx) {
                    s.held[dir as usize] = true;
                }
                self.body(worker, ctx, dir, streamed);
            }
            // Otherwise (StopAllIterationAndWatermark) everything waits for
            // `proxy_continue_stream`.
            _ => {}
        }
    }

    /// `dir`'s body goes through the filter as Envoy hands it over: `streamed` (from the
    /// client or the upstream, the headers went on at once or are held), as data
    /// (`end_of_stream` false) then a final call (empty, or with the whole body if the filter
    /// paused, buffering); else (a local reply, or after paused headers) in one final call.
    /// Held headers go on with the first call that continues: as they are then, if that is
    /// the data call (later changes to them reach no one).
    pub(super) fn body(&mut self, worker: usize, ctx: u32, dir: Direction, streamed: bool) {
        let name = match dir {
            Direction::Request => "proxy_on_request_body",
            Direction::Response => "proxy_on_response_body",
        };
        let Some(s) = self.stream(worker, ctx) else {
            return;
        };
        let len = match dir {
            Direction::Request => s.request_body.len(),
            Direction::Response => s.response_body.len(),
        } as u32;
        if len == 0 {
            return self.passed(worker, ctx, dir);
        }
        s.stage[dir as usize] = Stage::Body;
        let last = if streamed {
            let Some(paused) = self.step(worker, ctx, dir, name, &[ctx, len, 0]) else {
                return;
            };
            if paused {
                len
            } else {
                let Some(s) = self.stream(worker, ctx) else {
                    return;
                };
                let (buffer, headers) = match dir {
                    Direction::Request => (&mut s.request_body, &s.request_headers),
                    Direction::Response => (&mut s.response_body, &s.response_headers),
                };
                let chunk = std::mem::take(buffer);
                if std::mem::take(&mut s.held[dir as usize]) {
                    s.released[dir as usize] = Some(headers.clone());
                }
                s.passed_body[dir as usize].extend(chunk);
                0
            }
        } else {
            len
        };
        if self.step(worker, ctx, dir, name, &[ctx, last, 1]) == Some(false) {
            self.passed(worker, ctx, dir);
        }
    }

    /// The filter let `dir` through: the request goes upstream, the response to the client.
    pub(super) fn passed(&mut self, worker: usize, ctx: u32, dir: Direction) {
        let now = self.world.borrow().now_ms;
        let Some(s) = self.stream(worker, ctx) else {
            return;
        };
        s.stage[dir as usize] = Stage::Passed;
        if dir == Direction::Request {
            return self.upstream(worker, ctx);
        }
        let mut body = std::mem::take(&mut s.passed_body[1]);
        body.extend(std::mem::take(&mut s.response_body));
        let headers = match s.released[1].take() {
            Some(released) => released,
            None => std::mem::take(&mut s.response_headers),
        };
        let status = headers
            .iter()
            .find(|(k, _)| k == b":status")
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(200);
        let outcome = Outcome {
            status,
            headers: envoy::downstream(headers, &body, now),
            body,
            upstream: s.upstream.take(),
            upstream_body: s.upstream_body.take(),
            by: s.by,
            details: s.details.take(),
        };
        self.finish(worker, ctx, outcome);
    }

    /// The request reaches the upstream (with the route's timeout header), with the body the
    /// filter let through. Its answer comes
    /// from the scenario's `backend` script (after its delay; Envoy's 504 at the route's
    /// timeout, its 503 for a connection that fails or closes), else at once as a JSON echo
    /// of the request; then it goes back through the filter.
    pub(super) fn upstream(&mut self, worker: usize, ctx: u32) {
        let now = self.world.borrow().now_ms;
        let Some(stream) = self.stream(worker, ctx) else {
            return;
        };
        let mut upstream = stream.released[0]
            .take()
            .unwrap_or_else(|| stream.request_headers.clone());
        let mut body = std::mem::take(&mut stream.passed_body[0]);
        body.extend(&stream.request_body);
        let misframed = stream.client_framed && !envoy::framed(&upstream, &body);
        let length = body.len();
        stream.upstream_body = Some(body);
        upstream.push((
            b"x-envoy-expected-rq-timeout-ms".to_vec(),
            envoy::ROUTE_TIMEOUT_MS.to_string().into_bytes(),
        ));
        stream.upstream = Some(upstream.clone());
        if misframed {
            let declared = upstream
                .iter()
                .find(|(k, _)| k == b"content-length")
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            self.world.borrow_mut().violations.push(format!(
                "worker {worker}: the request went upstream with content-length: {declared} and a body of {length} bytes (Envoy sends both as they are)"
            ));
        }
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let get = |name: &[u8]| {
            upstream
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| lossy(v))
                .unwrap_or_default()
        };
        let scripted = self.world.borrow_mut().backend.next(&get(b":path"));
        let delivery = match scripted {
            Some(answer) => match answer.deliver(now, envoy::ROUTE_TIMEOUT_MS) {
                // A reset of the main upstream, before or during its answer, is Envoy's 503.
                reset if reset.headers.is_none() => Answer::Close {
                    delay_ms: reset.at_ms - now,
                }
                .deliver(now, envoy::ROUTE_TIMEOUT_MS),
                delivery => delivery,
            },
            None => {
                // The echo is JSON text: bytes that are not UTF-8 show as U+FFFD there (the
                // outcome keeps the exact bytes the upstream received).
                // An HTTP/1 upstream gets `:authority` as `host`.
                let host = (String::from("host"), get(b":authority"));
                let plain: Vec<(String, String)> = std::iter::once(host)
                    .chain(
                        upstream
                            .iter()
                            .filter(|(k, _)| !k.starts_with(b":"))
                            .map(|(k, v)| (lossy(k), lossy(v))),
                    )
                    .collect();
                let echo = crate::servers::upstream::echo(
                    &get(b":method"),
                    &get(b":path"),
                    plain.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                );
                let body = echo.to_string().into_bytes();
                let headers = vec![
                    (b":status".to_vec(), b"200".to_vec()),
                    (b"content-type".to_vec(), b"application/json".to_vec()),
                    (
                        b"content-length".to_vec(),
                        body.len().to_string().into_bytes(),
                    ),
                ];
                Delivery {
                    at_ms: now,
                    headers: Some(headers),
                    body,
                    by_envoy: false,
                }
            }
        };
        let mut delivery = delivery;
        if !delivery.by_envoy {
            let took = (delivery.at_ms - now).to_string().into_bytes();
            if let Some(headers) = delivery.headers.as_mut() {
                headers.push((b"x-envoy-upstream-service-time".to_vec(), took));
            }
        }
        if delivery.at_ms <= now {
            return self.respond(worker, ctx, delivery);
        }
        self.world
            .borrow_mut()
            .schedule(VmId::Worker(worker), ctx, delivery, Callout::Backend);
    }

    /// The main upstream's answer (or Envoy's in its place) enters the filter's response
    /// path.
    pub(super) fn respond(&mut self, worker: usize, ctx: u32, delivery: Delivery) {
        let Some(stream) = self.stream(worker, ctx) else {
            return;
        };
        stream.by = if delivery.by_envoy {
            "envoy"
        } else {
            "upstream"
        };
        stream.details = Some(
            match delivery.by_envoy {
                true => envoy::response_code_details(&String::from_utf8_lossy(&delivery.body)),
                false => envoy::VIA_UPSTREAM,
            }
            .to_string(),
        );
        stream.response_headers = delivery.headers.unwrap_or_default();
        stream.response_body = delivery.body;
        self.headers(worker, ctx, Direction::Response);
    }

    /// The stream ends: its outcome is recorded, what was on the way to it is dropped (not its
    /// http calls, which belong to the root context), and the filter
    /// hears `on_log`, `on_done`, `on_delete`, in that order (as Envoy calls them).
    pub(super) fn finish(&mut self, worker: usize, ctx: u32, outcome: Outcome) {
        let now = self.world.borrow().now_ms;
        // Newest first: the request ending is almost always a recent one (and a long run
        // would otherwise scan every request before it).
        if let Some(r) = self
            .requests
            .iter_mut()
            .rev()
            .find(|r| r.worker == worker && r.context == ctx)
        {
            r.outcome = Some(outcome);
            r.done_ms = now;
        }
        // What was on the way to this stream goes with it: its upstream's answer, its gRPC
        // calls. Not its http calls: Envoy makes them on the root context, which keeps them,
        // and their answers come there (the Rust SDK finds no caller and drops them).
        self.world.borrow_mut().pending.retain(|p| {
            p.vm != VmId::Worker(worker) || p.context != ctx || matches!(p.callout, Callout::Http)
        });
        for name in ["proxy_on_log", "proxy_on_done", "proxy_on_delete"] {
            if self
                .call(VmId::Worker(worker), Phase::Callback, ctx, name, &[ctx])
                .is_none()
            {
                return;
            }
        }
        if let Some(vm) = self.vms.get_mut(&VmId::Worker(worker)) {
            vm.store.data_mut().streams.remove(&ctx);
        }
    }
}
