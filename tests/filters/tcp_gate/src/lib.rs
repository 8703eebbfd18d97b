//! A network (TCP) filter for the harness's TCP steps: it counts bytes, holds the client's
//! data until enough has come, prepends a greeting to what goes upstream, upper-cases what
//! comes back, holds data until its next tick, and closes a connection on a forbidden word.
//!
//! Plugin configuration: `key=value` lines (unknown keys are refused):
//! - `forbidden=WORD`: client data containing WORD closes the connection (not passed on),
//!   with `proxy_close_stream(Downstream)`, or `(Upstream)` with `close_with=upstream`;
//! - `min=N`: client data is held (paused) until N bytes have come (or the client's FIN);
//! - `prefix=TEXT`: TEXT is prepended to the first data passed upstream;
//! - `upper=true`: the upstream's data reaches the client upper-cased;
//! - `min_up=N`: the upstream's data is held (paused) until N bytes have come;
//! - `pause_new=true`: the new connection is paused until the root's second tick after it
//!   (ticks every second: one to two seconds), which resumes it with
//!   `proxy_continue_stream(Downstream)`;
//! - `hold=WORD`: client data starting with WORD is held until the root's second tick after
//!   it, which resumes it with `proxy_continue_stream(Downstream)` (two ticks, so that the
//!   hold lasts at least a second whenever it starts: a scenario through Envoy, whose ticks
//!   run on the real clock, checks what is held before it is resumed).
//!
//! Logs each callback at info (`tcp_gate: ...`); counts `tcp_gate_connections`,
//! `tcp_gate_downstream_bytes` and `tcp_gate_upstream_bytes` (bytes passed on).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, RootContext, StreamContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MetricType, PeerType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { config: Rc::new(Config::default()), held: Rc::default() })
    });
}}

#[derive(Default)]
struct Config {
    forbidden: Option<String>,
    close_upstream: bool,
    min: usize,
    prefix: Option<String>,
    upper: bool,
    min_up: usize,
    pause_new: bool,
    hold: Option<String>,
}

fn log(message: &str) {
    let _ = hostcalls::log(LogLevel::Info, &format!("tcp_gate: {message}"));
}

fn count(name: &str, by: usize) {
    if let Ok(id) = hostcalls::define_metric(MetricType::Counter, name) {
        let _ = hostcalls::increment_metric(id, by as i64);
    }
}

/// The IP part of an address property (`127.0.0.1:PORT`), or `none`.
fn ip_of(path: &[&str]) -> String {
    let value = hostcalls::get_property(path.to_vec()).ok().flatten().unwrap_or_default();
    let text = String::from_utf8_lossy(&value).into_owned();
    match text.rsplit_once(':') {
        Some((ip, _)) => ip.to_string(),
        None if text.is_empty() => "none".into(),
        None => text,
    }
}

struct Root {
    config: Rc<Config>,
    /// Connections held, with the ticks seen since.
    held: Rc<RefCell<Vec<(u32, u32)>>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let text = self.get_plugin_configuration().unwrap_or_default();
        let mut config = Config::default();
        for line in String::from_utf8_lossy(&text).lines() {
            let line = line.trim_start();
            if line.trim_end().is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                log(&format!("refused: {line:?} is not key=value"));
                return false;
            };
            match key {
                "forbidden" => config.forbidden = Some(value.to_string()),
                "close_with" => config.close_upstream = value == "upstream",
                "min" => match value.parse() {
                    Ok(n) => config.min = n,
                    Err(_) => {
                        log("refused: min is not a number");
                        return false;
                    }
                },
                "prefix" => config.prefix = Some(value.to_string()),
                "upper" => config.upper = value == "true",
                "pause_new" => config.pause_new = value == "true",
                "min_up" => match value.parse() {
                    Ok(n) => config.min_up = n,
                    Err(_) => {
                        log("refused: min_up is not a number");
                        return false;
                    }
                },
                "hold" => config.hold = Some(value.to_string()),
                other => {
                    log(&format!("refused: unknown key {other:?}"));
                    return false;
                }
            }
        }
        if config.hold.is_some() || config.pause_new {
            self.set_tick_period(Duration::from_secs(1));
        }
        self.config = Rc::new(config);
        true
    }

    fn on_tick(&mut self) {
        let mut due = Vec::new();
        self.held.borrow_mut().retain_mut(|(ctx, ticks)| {
            *ticks += 1;
            if *ticks >= 2 {
                due.push(*ctx);
            }
            *ticks < 2
        });
        for ctx in due {
            if hostcalls::set_effective_context(ctx).is_ok() {
                log("tick: resuming a held connection");
                let _ = hostcalls::resume_downstream();
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::StreamContext)
    }

    fn create_stream_context(&self, context_id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(Gate {
            id: context_id,
            config: self.config.clone(),
            held: self.held.clone(),
            prefixed: false,
            done: false,
        }))
    }
}

struct Gate {
    id: u32,
    config: Rc<Config>,
    held: Rc<RefCell<Vec<(u32, u32)>>>,
    prefixed: bool,
    done: bool,
}

impl Context for Gate {
    fn on_done(&mut self) -> bool {
        self.done = true;
        log("done");
        true
    }
}

impl StreamContext for Gate {
    fn on_new_connection(&mut self) -> Action {
        count("tcp_gate_connections", 1);
        log(&format!("new connection from {}", ip_of(&["source", "address"])));
        if self.config.pause_new {
            log("pausing the new connection");
            self.held.borrow_mut().push((self.id, 0));
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_downstream_data(&mut self, size: usize, end_of_stream: bool) -> Action {
        log(&format!("downstream {size} bytes end_of_stream={end_of_stream}"));
        let data = hostcalls::get_buffer(BufferType::DownstreamData, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&data);
        if let Some(word) = &self.config.forbidden
            && text.contains(word.as_str())
        {
            log("forbidden word: closing the connection");
            let _ = match self.config.close_upstream {
                true => hostcalls::close_upstream(),
                false => hostcalls::close_downstream(),
            };
            return Action::Pause;
        }
        if let Some(word) = &self.config.hold
            && text.starts_with(word.as_str())
        {
            log("holding until the second tick");
            self.held.borrow_mut().push((self.id, 0));
            return Action::Pause;
        }
        if size < self.config.min && !end_of_stream {
            log(&format!("holding {size} of {} bytes", self.config.min));
            return Action::Pause;
        }
        if let Some(prefix) = &self.config.prefix
            && !self.prefixed
            && size > 0
        {
            self.prefixed = true;
            let _ = hostcalls::set_buffer(BufferType::DownstreamData, 0, 0, prefix.as_bytes());
        }
        count("tcp_gate_downstream_bytes", size);
        Action::Continue
    }

    fn on_downstream_close(&mut self, peer: PeerType) {
        self.held.borrow_mut().retain(|(c, _)| *c != self.id);
        log(&format!("downstream closed peer={peer:?}"));
    }

    fn on_upstream_data(&mut self, size: usize, end_of_stream: bool) -> Action {
        log(&format!(
            "upstream {size} bytes end_of_stream={end_of_stream} from {}",
            ip_of(&["upstream", "address"])
        ));
        if size < self.config.min_up && !end_of_stream {
            log(&format!("holding {size} of {} upstream bytes", self.config.min_up));
            return Action::Pause;
        }
        if self.config.upper && size > 0 {
            let data = hostcalls::get_buffer(BufferType::UpstreamData, 0, size)
                .ok()
                .flatten()
                .unwrap_or_default();
            let _ = hostcalls::set_buffer(BufferType::UpstreamData, 0, size, &data.to_ascii_uppercase());
        }
        count("tcp_gate_upstream_bytes", size);
        Action::Continue
    }

    fn on_upstream_close(&mut self, peer: PeerType) {
        log(&format!("upstream closed peer={peer:?}"));
    }

    fn on_log(&mut self) {
        log(&format!("log (after done: {})", self.done));
    }
}
