//! Refuses every request the way a JWT filter refuses a request without a token: the scenario
//! suite must fail against it.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;
impl Context for Root {}
impl RootContext for Root {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Deny))
    }
}

struct Deny;
impl Context for Deny {}
impl HttpContext for Deny {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        self.send_http_response(
            401,
            vec![
                ("www-authenticate", "Bearer realm=\"api\""),
                ("content-type", "application/json"),
            ],
            Some(br#"{"error":"unauthorized","message":"Authentication required"}"#),
        );
        Action::Pause
    }
}
