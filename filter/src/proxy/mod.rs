//! The proxy-wasm adapter: moves bytes between the host and the core's `Worker`, which
//! decides requests and drives key fetches. Nothing here decides.
//!
//! A panic here kills the VM and fails every later request on its worker, so the crate's
//! lints (`[lints.clippy]` in `filter/Cargo.toml`) refuse the constructs that can panic, as
//! they do in every layer, and `clippy.toml` the SDK calls that can.

mod abi;
mod host;
mod metrics;
mod plugin;
mod shared;
mod bench_stage;

use crate::decision::worker::Next;
use crate::policy::response::{Failure, deny};
use bench_stage::{STAGE, Stage};
use host::LogLevel;
use plugin::Plugin;
use std::rc::Rc;
use std::time::Duration;

mod exports;

/// What a stream callback tells the host: go on, or hold the stream.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub enum Action {
    Continue = 0,
    Pause = 1,
}

/// How often each worker syncs keys from shared data, resumes waiting requests and
/// refreshes aging key sets.
const TICK: Duration = Duration::from_millis(100);

struct Root {
    id: u32,
    plugin: Option<Rc<Plugin>>,
}

impl Root {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize) {
        if let Some(plugin) = &self.plugin {
            call_response(plugin, token, headers, body);
        }
    }
}

/// Hands the answer to call `token` to the worker, read no further than it needs.
fn call_response(plugin: &Plugin, token: u32, headers: usize, body_size: usize) {
    let limit = plugin.answer_limit(token);
    let answer = host::call_response(headers, body_size.min(limit));
    plugin.on_call_response(token, answer.status, &answer.body, answer.etag.as_deref());
}

impl Root {
    fn on_configure(&mut self) -> bool {
        let bytes = host::plugin_configuration();
        match plugin::configure(self.id, &bytes) {
            Ok(plugin) => {
                self.plugin = Some(Rc::new(plugin));
                host::set_tick_period(TICK);
                true
            }
            Err(e) => {
                host::log(LogLevel::Error, &format!("invalid configuration: {e}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(plugin) = &self.plugin {
            plugin.host().refresh_log_level();
            plugin.on_tick();
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Stream> {
        let plugin = self.plugin.clone()?;
        Some(Stream {
            id: context_id,
            plugin,
            headers: Next::Continue,
            body_size: 0,
        })
    }
}

struct Stream {
    id: u32,
    plugin: Rc<Plugin>,
    /// What the request headers led to: the body and trailers go on at once only when the
    /// request did.
    headers: Next,
    /// The size of the request body the host reported last.
    body_size: usize,
}

impl Stream {
    /// Request data after the headers: the worker decides only for a stream it paused.
    fn on_request_data(&mut self, end_of_stream: bool) -> Action {
        match self.headers {
            Next::Continue => Action::Continue,
            Next::Answered => Action::Pause,
            Next::Wait | Next::ReadBody => action(self.plugin.on_request_body(
                self.id,
                self.body_size,
                end_of_stream,
            )),
        }
    }
}

fn action(next: Next) -> Action {
    match next {
        Next::Continue => Action::Continue,
        Next::Wait | Next::Answered | Next::ReadBody => Action::Pause,
    }
}

impl Stream {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize) {
        call_response(&self.plugin, token, headers, body);
    }

    fn on_done(&mut self) {
        self.plugin.on_stream_done(self.id);
    }

    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        match STAGE {
            Stage::Everything => {}
            Stage::Context => return Action::Continue,
            Stage::Time => {
                std::hint::black_box(host::now_ms());
                return Action::Continue;
            }
            Stage::Request => {
                std::hint::black_box((host::now_ms(), host::request()));
                return Action::Continue;
            }
            Stage::Decision | Stage::DecisionWithoutSignature => {
                let _ = std::hint::black_box(self.plugin.decide(host::now_ms()));
                return Action::Continue;
            }
            Stage::Refusal => {
                let request = host::request();
                std::hint::black_box(host::now_ms());
                host::reply(&deny(
                    &self.plugin.config().realm,
                    &Failure::Missing,
                    &request,
                ));
                return Action::Pause;
            }
        }
        self.headers = self.plugin.on_request(self.id, end_of_stream);
        action(self.headers)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.body_size = body_size;
        self.on_request_data(end_of_stream)
    }

    fn on_http_request_trailers(&mut self) -> Action {
        self.on_request_data(true)
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in self.plugin.response_headers(self.id) {
            host::add_response_header(&name, &value);
        }
        Action::Continue
    }
}
