//! Requests whose token may be in a form body (`{"body": ...}` sources): the stream waits
//! for its body, within a size and a time bound, and is then decided with it.
//!
//! Envoy delivers a body to a filter whose request headers are paused only when the plugin
//! sets `allow_on_headers_stop_iteration` (Envoy 1.35 and later); otherwise it holds the
//! body back until the filter resumes, and the headers would go upstream before the
//! decision. So the filter never resumes to get the body: without that setting, such
//! requests end with 408 after `BODY_WAIT_MS`, and the log says why.

use super::{Host, Level, Next, Waiting, Worker};
use crate::config::ProviderId;
use crate::decision::outcome::{Pass, Stop};
use crate::jose::verify::SignatureVerifier;
use crate::policy::response::Failure;

/// How long a stream may take to deliver the body its decision needs.
pub const BODY_WAIT_MS: u64 = 30_000;

impl<H: Host, V: SignatureVerifier> Worker<H, V> {
    /// Whether the current stream's request must be decided with its body (the request is
    /// read only when some provider reads tokens from bodies).
    pub(super) fn wants_body(&self) -> bool {
        self.authenticator.reads_bodies()
            && self
                .authenticator
                .wants_body(&self.host.request(), self.route_name().as_deref())
    }

    /// Starts waiting for the current stream's body; refused at once (413) when its
    /// `content-length` says it is larger than the filter reads.
    pub(super) fn read_body(&self, context: u32) -> Next {
        let declared = self
            .host
            .request()
            .header_values("content-length")
            .next()
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.config().max_body_bytes as u64) {
            return self.refuse_body(Failure::BodyTooLarge, None);
        }
        // The clock first: no borrow is alive during a host call.
        let deadline_ms = self.host.now_ms() + BODY_WAIT_MS;
        self.streams.borrow_mut().reading.push(Waiting {
            context,
            deadline_ms,
        });
        Next::ReadBody
    }

    /// `size` bytes of stream `context`'s request body have arrived (the whole body when
    /// `end_of_stream`). A stream that waits for keys stays paused; one whose decision is
    /// made goes on.
    pub fn on_request_body(&self, context: u32, size: usize, end_of_stream: bool) -> Next {
        if (self.streams.borrow().waiting.iter()).any(|w| w.context == context)
            || self.stores.waits(context)
        {
            return Next::Wait;
        }
        if !(self.streams.borrow().reading.iter()).any(|w| w.context == context) {
            return Next::Continue;
        }
        if size > self.config().max_body_bytes {
            (self.streams.borrow_mut().reading).retain(|w| w.context != context);
            return self.refuse_body(Failure::BodyTooLarge, None);
        }
        if !end_of_stream {
            return Next::ReadBody;
        }
        (self.streams.borrow_mut().reading).retain(|w| w.context != context);
        let body = self.host.request_body(size);
        self.streams.borrow_mut().bodies.push((context, body));
        self.handle(context, None, Some(context))
    }

    /// Ends the streams whose body did not come in time (408).
    pub(super) fn end_slow_bodies(&self, now_ms: u64) {
        let late: Vec<u32> = {
            let mut streams = self.streams.borrow_mut();
            let late = streams
                .reading
                .iter()
                .filter(|w| now_ms >= w.deadline_ms)
                .map(|w| w.context)
                .collect();
            streams.reading.retain(|w| now_ms < w.deadline_ms);
            late
        };
        for context in late {
            if !self.body_timeout_logged.replace(true) {
                self.host.log(
                    Level::Warn,
                    format_args!(
                        "a request body that may carry the token did not arrive in {} s; \
                         Envoy delivers it only with allow_on_headers_stop_iteration: true",
                        BODY_WAIT_MS / 1000
                    ),
                );
            }
            if self.host.enter(context)
                && self.refuse_body(Failure::BodyTimeout, None) == Next::Continue
            {
                self.host.resume();
            }
        }
    }

    /// The answer for a body the filter will not read, or a proof the replay store refused
    /// (enforce mode), or the request going on with what it would have been refused for
    /// (report mode).
    pub(super) fn refuse_body(&self, failure: Failure, provider: Option<ProviderId>) -> Next {
        let request = self.host.request();
        match self
            .authenticator
            .refused(&request, Stop::refuse(failure, provider))
        {
            Ok(Pass::Forward {
                changes, reported, ..
            }) => self.allow(&changes, reported.as_deref()),
            Err(Stop::Refuse(refusal)) => self.refuse(&request, &refusal),
            // `refused` only lets a refusal through (report mode) or keeps it.
            Ok(Pass::Serve(_)) | Err(Stop::Keys(_) | Stop::Introspect(_)) => Next::Answered,
        }
    }
}
