//! gRPC as Envoy's gRPC client (`source/common/grpc/async_client_impl.cc`) hands it to a
//! filter. A scripted answer becomes what its server sends over HTTP/2 ([`Wire`], which the
//! `--envoy` runner's gRPC server sends as is), and that becomes the filter's events, in
//! Envoy's order: initial metadata, each message, trailing metadata, close. A unary call
//! (`proxy_grpc_call`) sees only the outcome: its last message, or the close's status.

use super::upstream::Answer;
use super::{HeaderMap, envoy};

/// What a gRPC answer sets beyond an HTTP answer's status, headers and body (scenario fields
/// `grpc_*`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GrpcReply {
    /// Not a gRPC answer at all (scenario field `plain_http`): the status, headers and body
    /// go as written, without framing, `content-type: application/grpc` or `grpc-status`, as
    /// a plain HTTP server answers a gRPC request. The other fields are unset.
    pub plain: bool,
    /// `grpc-status` (default 0).
    pub status: Option<u32>,
    pub message: Option<Vec<u8>>,
    /// Response headers beyond `:status` and `content-type`.
    pub initial_metadata: HeaderMap,
    /// The messages, each with the time before it is sent; `None`: the answer's body, as one
    /// message (always one if the status is 0, as a unary server sends).
    pub messages: Option<Vec<(u64, Vec<u8>)>>,
    /// Trailers beyond `grpc-status` and `grpc-message`.
    pub trailing_metadata: HeaderMap,
}

/// An HTTP/2 answer to a gRPC request as the server sends it.
#[derive(Clone, Debug, PartialEq)]
pub struct Wire {
    pub status: Vec<u8>,
    pub headers: HeaderMap,
    /// Data, each part sent after its delay: a length-prefixed message (or a plain body, for a
    /// non-200 answer).
    pub data: Vec<(u64, Vec<u8>)>,
    /// `None`: the headers (and data) end the stream: no trailers.
    pub trailers: Option<HeaderMap>,
}

/// What the filter receives on a gRPC call or stream, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `proxy_on_grpc_receive_initial_metadata` (header map 4).
    InitialMetadata(HeaderMap),
    /// `proxy_on_grpc_receive` (buffer 5).
    Message(Vec<u8>),
    /// `proxy_on_grpc_receive_trailing_metadata` (header map 5).
    TrailingMetadata(HeaderMap),
    /// `proxy_on_grpc_close` with the status; the message is `proxy_get_status`'s.
    Close { status: u32, message: Vec<u8> },
}

/// A message with gRPC's 5-byte prefix: no compression, big-endian length.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend((message.len() as u32).to_be_bytes());
    out.extend(message);
    out
}

/// The messages of `data`, or `None` if it is not whole frames, or a frame's flags are not 0
/// or 1 (compressed) (Envoy's `Grpc::Decoder`: INTERNAL).
fn unframe(mut data: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.first().is_some_and(|flags| flags & !1 != 0) {
            return None;
        }
        let length = u32::from_be_bytes(data.get(1..5)?.try_into().ok()?) as usize;
        out.push(data.get(5..5 + length)?.to_vec());
        data = &data[5 + length..];
    }
    Some(out)
}

/// What a server playing `answer` sends to a gRPC request: a 200 with gRPC framing and
/// trailers (trailers-only, the headers ending the stream, when there is no initial metadata
/// and no message, as gRPC servers do), or a non-200 answer as it is (a `grpc_status` then
/// in its headers). `None`: the answer is not a response (a failure).
pub fn wire(answer: &Answer) -> Option<Wire> {
    let Answer::Respond {
        status,
        headers,
        body,
        grpc,
        ..
    } = answer
    else {
        return None;
    };
    let reply = grpc.clone().unwrap_or_default();
    if reply.plain {
        let data = (!body.is_empty()).then(|| (0, body.clone()));
        return Some(Wire {
            status: status.clone(),
            headers: headers.clone(),
            data: data.into_iter().collect(),
            trailers: None,
        });
    }
    let mut end = vec![(
        b"grpc-status".to_vec(),
        reply.status.unwrap_or(0).to_string().into_bytes(),
    )];
    if let Some(message) = &reply.message {
        end.push((b"grpc-message".to_vec(), message.clone()));
    }
    end.extend(reply.trailing_metadata.iter().cloned());
    let mut headers = headers.clone();
    headers.retain(|(k, _)| k != b"content-length");
    if status != b"200" {
        if grpc.is_some() {
            headers.extend(end);
        }
        let data = (!body.is_empty()).then(|| (0, body.clone()));
        return Some(Wire {
            status: status.clone(),
            headers,
            data: data.into_iter().collect(),
            trailers: None,
        });
    }
    headers.retain(|(k, _)| k != b"content-type");
    headers.insert(0, (b"content-type".to_vec(), b"application/grpc".to_vec()));
    headers.extend(reply.initial_metadata.iter().cloned());
    let messages = match reply.messages {
        Some(messages) => messages,
        None if reply.status.unwrap_or(0) == 0 || !body.is_empty() => vec![(0, body.clone())],
        None => Vec::new(),
    };
    if messages.is_empty() && reply.initial_metadata.is_empty() {
        headers.extend(end);
        return Some(Wire {
            status: status.clone(),
            headers,
            data: Vec::new(),
            trailers: None,
        });
    }
    Some(Wire {
        status: status.clone(),
        headers,
        data: messages.iter().map(|(ms, m)| (*ms, frame(m))).collect(),
        trailers: Some(end),
    })
}

/// Envoy's gRPC status for an HTTP status (`Grpc::Utility::httpToGrpcStatus`).
fn from_http(status: &[u8]) -> u32 {
    match status {
        b"200" => 0,
        b"400" => 13,
        b"401" => 16,
        b"403" => 7,
        b"404" => 12,
        b"429" | b"502" | b"503" | b"504" => 14,
        _ => 2,
    }
}

fn get(map: &HeaderMap, name: &[u8]) -> Option<Vec<u8>> {
    map.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// Envoy's close message: the status message, then the stream's response-code details in
/// braces; the details alone for an empty message (`enhancedGrpcMessage`).
fn enhanced(message: &[u8], details: &str) -> Vec<u8> {
    match (message.is_empty(), details.is_empty()) {
        (true, _) => details.as_bytes().to_vec(),
        (false, true) => message.to_vec(),
        (false, false) => [message, b"{", details.as_bytes(), b"}"].concat(),
    }
}

/// Envoy's `streamError`: empty trailing metadata, then a close with `status` and no message
/// but the details.
fn stream_error(status: u32, details: &str) -> [Event; 2] {
    [
        Event::TrailingMetadata(Vec::new()),
        Event::Close {
            status,
            message: enhanced(b"", details),
        },
    ]
}

/// The events Envoy's `AsyncStreamImpl` makes of `wire` (`onHeaders`, `onData`,
/// `onTrailers`, `streamError`), each with its time after the headers; `details` are the
/// response-code details.
fn receive(wire: &Wire, details: &str) -> Vec<(u64, Event)> {
    let status = |map: &HeaderMap| {
        get(map, b"grpc-status").and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
    };
    let close = |map: &HeaderMap| Event::Close {
        // No grpc-status: UNKNOWN.
        status: status(map).unwrap_or(2),
        message: enhanced(&get(map, b"grpc-message").unwrap_or_default(), details),
    };
    let both = |ms: u64, events: [Event; 2]| events.map(|e| (ms, e));
    let error = |ms: u64, code: u32| both(ms, stream_error(code, details));
    let mut all = vec![(b":status".to_vec(), wire.status.clone())];
    all.extend(wire.headers.iter().cloned());
    let ends = wire.trailers.is_none() && wire.data.is_empty();
    let empty = (0, Event::InitialMetadata(Vec::new()));
    if wire.status != b"200" {
        let mut out = vec![empty];
        if ends && status(&all).is_some() {
            out.extend(both(0, [Event::TrailingMetadata(all.clone()), close(&all)]));
        } else {
            out.extend(error(0, from_http(&wire.status)));
        }
        return out;
    }
    if ends {
        let trailers = [Event::TrailingMetadata(all.clone()), close(&all)];
        return [empty].into_iter().chain(both(0, trailers)).collect();
    }
    let mut out = vec![(0, Event::InitialMetadata(all))];
    let mut ms = 0;
    for (delay, part) in &wire.data {
        ms += delay;
        let Some(messages) = unframe(part) else {
            out.extend(error(ms, 13));
            return out;
        };
        out.extend(messages.into_iter().map(|m| (ms, Event::Message(m))));
    }
    match &wire.trailers {
        Some(trailers) => out.extend(both(
            ms,
            [Event::TrailingMetadata(trailers.clone()), close(trailers)],
        )),
        // The data ended the stream without trailers: UNKNOWN.
        None => out.extend(error(ms, 2)),
    }
    out
}

/// What a filter receives for `answer` to a gRPC request made at `now_ms`, and when, with a
/// timeout for a call (a stream has none in Envoy). `None`: nothing, ever (a stream to a
/// hanging server).
pub fn events(answer: &Answer, now_ms: u64, timeout_ms: Option<u64>) -> Option<Vec<(u64, Event)>> {
    let delay_ms = match answer {
        Answer::Respond { delay_ms, .. }
        | Answer::Reset { delay_ms }
        | Answer::Close { delay_ms } => *delay_ms,
        Answer::Hang => u64::MAX,
        Answer::Unreachable => 0,
    };
    // Envoy's own answers reach a gRPC request as a trailers-only 200 (its local reply):
    // UNAVAILABLE with the reason, then its details.
    let by_envoy = |reason: &str| {
        let wire = Wire {
            status: b"200".to_vec(),
            headers: vec![
                (b"content-type".to_vec(), b"application/grpc".to_vec()),
                (b"grpc-status".to_vec(), b"14".to_vec()),
                (b"grpc-message".to_vec(), reason.as_bytes().to_vec()),
            ],
            data: Vec::new(),
            trailers: None,
        };
        receive(&wire, envoy::response_code_details(reason))
    };
    let deadline = timeout_ms.map(|t| now_ms.saturating_add(t));
    if let Some(timeout) = timeout_ms
        && delay_ms >= timeout
    {
        return Some(at(now_ms.saturating_add(timeout), by_envoy(envoy::TIMEOUT)));
    }
    let at_ms = now_ms.checked_add(delay_ms)?;
    let events = match answer {
        Answer::Respond { status, .. }
            if status.len() != 3 || !status.iter().all(u8::is_ascii_digit) =>
        {
            by_envoy(envoy::PROTOCOL_ERROR)
        }
        Answer::Respond { .. } => receive(&wire(answer)?, envoy::VIA_UPSTREAM),
        Answer::Hang => return None,
        // Over HTTP/2 the server resets the stream before its headers go out.
        Answer::Reset { .. } => by_envoy(envoy::REMOTE_RESET),
        Answer::Close { .. } => by_envoy(envoy::CONNECTION_TERMINATION),
        Answer::Unreachable => by_envoy(envoy::CONNECTION_FAILURE),
    };
    let mut events = at(at_ms, events);
    // The call's timeout after the headers (late messages): Envoy resets the stream.
    if let Some(deadline) = deadline
        && events.iter().any(|(ms, _)| *ms >= deadline)
    {
        events.retain(|(ms, _)| *ms < deadline);
        let late = stream_error(13, envoy::response_code_details(envoy::TIMEOUT));
        events.extend(late.map(|e| (deadline, e)));
    }
    Some(events)
}

/// `events`, `at_ms` after their offsets.
fn at(at_ms: u64, events: Vec<(u64, Event)>) -> Vec<(u64, Event)> {
    events
        .into_iter()
        .map(|(ms, e)| (at_ms.saturating_add(ms), e))
        .collect()
}

/// A unary call's outcome: its reply, or the close's status and message.
pub type Unary = Result<Vec<u8>, (u32, Vec<u8>)>;

/// What a unary call's filter gets of `events` (Envoy's `AsyncRequestImpl`), and when: the
/// last message on status 0 (`Ok(reply)`), else the close's status and message; status 0
/// without a message is INTERNAL with no message.
pub fn unary(events: Vec<(u64, Event)>) -> (u64, Unary) {
    let mut reply = None;
    for (ms, event) in events {
        match event {
            Event::Message(m) => reply = Some(m),
            Event::Close { status: 0, .. } => return (ms, reply.ok_or((13, Vec::new()))),
            Event::Close { status, message } => return (ms, Err((status, message))),
            _ => {}
        }
    }
    (0, Err((13, Vec::new())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn respond(status: &str, body: &str, grpc: Option<GrpcReply>) -> Answer {
        Answer::Respond {
            status: status.as_bytes().to_vec(),
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            delay_ms: 10,
            grpc,
        }
    }

    fn names(map: &HeaderMap) -> Vec<&[u8]> {
        map.iter().map(|(k, _)| k.as_slice()).collect()
    }

    fn only(events: Vec<(u64, Event)>) -> Vec<Event> {
        events.into_iter().map(|(_, e)| e).collect()
    }

    #[test]
    fn a_reply_is_headers_messages_trailers_and_a_unary_call_gets_the_last_message() {
        let reply = GrpcReply {
            messages: Some(vec![(0, b"a".to_vec()), (30, b"bc".to_vec())]),
            trailing_metadata: vec![(b"x-t".to_vec(), b"1".to_vec())],
            ..GrpcReply::default()
        };
        let got = events(&respond("200", "", Some(reply)), 100, Some(50)).unwrap();
        let times: Vec<u64> = got.iter().map(|(ms, _)| *ms).collect();
        assert_eq!(times, [110, 110, 140, 140, 140]);
        let events = only(got.clone());
        let Event::InitialMetadata(initial) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(names(initial), [&b":status"[..], b"content-type"]);
        assert_eq!(
            events[1..3],
            [
                Event::Message(b"a".to_vec()),
                Event::Message(b"bc".to_vec())
            ]
        );
        let Event::TrailingMetadata(trailers) = &events[3] else {
            panic!("{events:?}")
        };
        assert_eq!(names(trailers), [&b"grpc-status"[..], b"x-t"]);
        let close = Event::Close {
            status: 0,
            message: b"via_upstream".to_vec(),
        };
        assert_eq!(events[4], close);
        assert_eq!(unary(got), (140, Ok(b"bc".to_vec())));
    }

    #[test]
    fn errors_are_trailers_only_and_non_200_answers_map_their_status() {
        let abort = GrpcReply {
            status: Some(7),
            message: Some(b"no".to_vec()),
            ..GrpcReply::default()
        };
        let got = events(&respond("200", "", Some(abort)), 0, None).unwrap();
        assert_eq!(got[0], (10, Event::InitialMetadata(Vec::new())));
        assert_eq!(unary(got).1, Err((7, b"no{via_upstream}".to_vec())));
        let got = events(&respond("503", "busy", None), 0, None).unwrap();
        assert_eq!(got[1].1, Event::TrailingMetadata(Vec::new()));
        assert_eq!(unary(got).1, Err((14, b"via_upstream".to_vec())));
        let late = events(&respond("200", "x", None), 0, Some(5)).unwrap();
        assert_eq!(
            unary(late),
            (
                5,
                Err((14, b"upstream request timeout{response_timeout}".to_vec()))
            )
        );
        assert_eq!(events(&Answer::Hang, 0, None), None);
        let none = GrpcReply {
            messages: Some(Vec::new()),
            initial_metadata: vec![(b"x-i".to_vec(), b"1".to_vec())],
            ..GrpcReply::default()
        };
        let got = events(&respond("200", "", Some(none)), 0, None).unwrap();
        assert_eq!(unary(got).1, Err((13, Vec::new())));
    }

    #[test]
    fn a_plain_http_answer_to_a_grpc_call_fails_it() {
        let plain = || GrpcReply {
            plain: true,
            ..GrpcReply::default()
        };
        // As sent: no framing, no content-type or grpc-status added.
        let wired = wire(&respond("200", "not grpc", Some(plain()))).unwrap();
        assert_eq!(wired.data, [(0, b"not grpc".to_vec())]);
        assert_eq!((wired.headers.len(), wired.trailers), (0, None));
        // A body that is not gRPC frames: INTERNAL.
        let got = events(&respond("200", "not grpc", Some(plain())), 0, None).unwrap();
        assert_eq!(unary(got).1, Err((13, b"via_upstream".to_vec())));
        // Headers alone, no grpc-status: UNKNOWN.
        let got = events(&respond("200", "", Some(plain())), 0, None).unwrap();
        assert_eq!(unary(got).1, Err((2, b"via_upstream".to_vec())));
        // A frame with flags other than compression: INTERNAL.
        let mut framed = frame(b"ok");
        framed[0] = 0x80;
        assert_eq!(unframe(&framed), None);
        assert_eq!(unframe(&frame(b"ok")), Some(vec![b"ok".to_vec()]));
        // Without it the same answer is a gRPC success carrying the body.
        let got = events(&respond("200", "not grpc", None), 0, None).unwrap();
        assert_eq!(unary(got).1, Ok(b"not grpc".to_vec()));
    }
}
