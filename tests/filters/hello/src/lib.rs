//! The example filter of the harness's guide (harness/README.md, "Your first scenario"): it
//! adds a response header to every answer and refuses `/admin` itself.
//!
//! - Plugin configuration: the header's name, as plain text (default `x-hello`).
//! - The header's value: the VM's environment variable `HELLO_GREETING` (Envoy's
//!   `vm_config.environment_variables`), else `world`.
//! - A path under `/admin`: a local 403 with body `forbidden: PATH`.
//! - Logs `hello: PATH` at info for each request; counts `hello_requests`.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { header: String::new() })
    });
}}

struct Root {
    header: String,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let name = String::from_utf8_lossy(&config).trim().to_ascii_lowercase();
        self.header = if name.is_empty() {
            "x-hello".into()
        } else {
            name
        };
        true
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Hello {
            header: self.header.clone(),
        }))
    }
}

struct Hello {
    header: String,
}

impl Context for Hello {}

impl HttpContext for Hello {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if let Ok(id) = hostcalls::define_metric(MetricType::Counter, "hello_requests") {
            let _ = hostcalls::increment_metric(id, 1);
        }
        let path =
            hostcalls::get_map_value_bytes(proxy_wasm::types::MapType::HttpRequestHeaders, ":path")
                .ok()
                .flatten()
                .unwrap_or_default();
        let path = String::from_utf8_lossy(&path).into_owned();
        let _ = hostcalls::log(LogLevel::Info, &format!("hello: {path}"));
        if path == "/admin" || path.starts_with("/admin/") {
            let body = format!("forbidden: {path}");
            self.send_http_response(403, vec![], Some(body.as_bytes()));
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        let greeting = std::env::var("HELLO_GREETING").unwrap_or_else(|_| "world".into());
        let _ = hostcalls::add_map_value(
            proxy_wasm::types::MapType::HttpResponseHeaders,
            &self.header,
            &greeting,
        );
        Action::Continue
    }
}
