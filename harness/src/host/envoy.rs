//! What Envoy itself adds around a filter (measured in Envoy 1.40, `tests/e2e/ENVOY-FACTS.md`):
//! the request headers its connection manager sets before the filters, the headers of its
//! local replies, what the client gets after the filters, and the bodies of the answers it
//! makes up when an upstream fails.

use super::HeaderMap;

/// The route's timeout (Envoy's default, 15 s): the upstream sees it as
/// `x-envoy-expected-rq-timeout-ms`, and an answer later than that is Envoy's 504.
pub const ROUTE_TIMEOUT_MS: u64 = 15_000;

/// Envoy's body when a connection to an upstream cannot be made.
pub const CONNECTION_FAILURE: &str = "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure";
/// Envoy's body when the upstream closes the connection before answering.
pub const CONNECTION_TERMINATION: &str = "upstream connect error or disconnect/reset before headers. reset reason: connection termination";
/// Envoy's body when the upstream's answer does not parse (a `:status` that is not three
/// digits, say).
pub const PROTOCOL_ERROR: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: protocol error";
/// Envoy's body when the upstream does not answer in time.
pub const TIMEOUT: &str = "upstream request timeout";
/// Envoy's answer when the upstream reset the stream (HTTP/2 `RST_STREAM`) before answering.
pub const REMOTE_RESET: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: remote reset";

/// The headers the connection manager adds to a request before the filters see it, after the
/// client's: `content-length` for a body sent without one, `x-forwarded-proto`, and an
/// `x-request-id` unless the client sent one (loopback clients are internal: theirs is kept).
pub fn request_headers(headers: &mut HeaderMap, body: Option<&[u8]>, request_number: u64) {
    let has = |h: &HeaderMap, name: &[u8]| h.iter().any(|(k, _)| k == name);
    if let Some(body) = body
        && !has(headers, b"content-length")
        && !has(headers, b"transfer-encoding")
    {
        headers.push((
            b"content-length".to_vec(),
            body.len().to_string().into_bytes(),
        ));
    }
    headers.retain(|(k, _)| k != b"x-forwarded-proto");
    headers.push((b"x-forwarded-proto".to_vec(), b"http".to_vec()));
    if !has(headers, b"x-request-id") {
        headers.push((
            b"x-request-id".to_vec(),
            request_id(request_number).into_bytes(),
        ));
    }
}

/// Whether every `content-length` in `headers` is the length of `body` (true when there is
/// none: Envoy then sends the body chunked). Envoy forwards a filter's changed body with the
/// `content-length` the filter left: the upstream reads that many bytes, or waits for more.
pub fn framed(headers: &HeaderMap, body: &[u8]) -> bool {
    let length = body.len().to_string().into_bytes();
    headers
        .iter()
        .filter(|(k, _)| k == b"content-length")
        .all(|(_, v)| *v == length)
}

/// A version-4 UUID made from `n` (the same run gives the same ids).
pub fn request_id(n: u64) -> String {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let (a, b) = (mix(n.wrapping_add(0x9e37_79b9_7f4a_7c15)), mix(!n));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48 & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// The response headers (with `:status`) and body of a local reply, as the filters see them.
/// A gRPC status on a gRPC request (`content-type: application/grpc...`) makes a trailers-only
/// answer: 200, `content-type: application/grpc`, `grpc-status`, `grpc-message` (the body
/// given), no body. Otherwise the status, the filter's headers, then, for a body,
/// `content-length` and `content-type: text/plain` unless the filter set one.
pub fn local_reply(
    status: u32,
    headers: HeaderMap,
    body: Vec<u8>,
    grpc_status: Option<u32>,
    request: &HeaderMap,
) -> (HeaderMap, Vec<u8>) {
    let grpc_request = request
        .iter()
        .any(|(k, v)| k == b"content-type" && v.starts_with(b"application/grpc"));
    if let (Some(code), true) = (grpc_status, grpc_request) {
        let mut out = vec![
            (b":status".to_vec(), b"200".to_vec()),
            (b"content-type".to_vec(), b"application/grpc".to_vec()),
            (b"grpc-status".to_vec(), code.to_string().into_bytes()),
        ];
        if !body.is_empty() {
            out.push((b"grpc-message".to_vec(), body));
        }
        out.extend(headers);
        return (out, Vec::new());
    }
    let mut out = vec![(b":status".to_vec(), status.to_string().into_bytes())];
    let typed = headers.iter().any(|(k, _)| k == b"content-type");
    out.extend(headers);
    if !body.is_empty() {
        out.push((
            b"content-length".to_vec(),
            body.len().to_string().into_bytes(),
        ));
        if !typed {
            out.push((b"content-type".to_vec(), b"text/plain".to_vec()));
        }
    }
    (out, body)
}

/// What the client gets after the filters: the pseudo-headers go, `date` and `server: envoy`
/// are set, and an answer without `content-length` gets `content-length: 0` when it has no
/// body.
pub fn downstream(mut headers: HeaderMap, body: &[u8], now_ms: u64) -> HeaderMap {
    headers.retain(|(k, _)| !k.starts_with(b":") && k != b"date" && k != b"server");
    headers.push((b"date".to_vec(), http_date(now_ms).into_bytes()));
    headers.push((b"server".to_vec(), b"envoy".to_vec()));
    if body.is_empty() && !headers.iter().any(|(k, _)| k == b"content-length") {
        headers.push((b"content-length".to_vec(), b"0".to_vec()));
    }
    headers
}

/// Envoy's answer to a request whose filter's VM failed: 503, empty, no content-type.
pub fn failed_vm(now_ms: u64) -> HeaderMap {
    downstream(Vec::new(), &[], now_ms)
}

/// The response-code details of a local reply the filter sent with `details`: Envoy's wasm
/// host turns every whitespace character (space, tab, form feed, vertical tab, CR, LF) into
/// `_` (`StringUtil::replaceAllEmptySpace`) before the stream records them.
pub fn local_reply_details(details: &str) -> String {
    details
        .chars()
        .map(|c| match c {
            ' ' | '\t' | '\u{c}' | '\u{b}' | '\n' | '\r' => '_',
            c => c,
        })
        .collect()
}

/// The response-code details of an answer from the upstream.
pub const VIA_UPSTREAM: &str = "via_upstream";

/// The response-code details of an answer Envoy made with `reason` as its body (Envoy adds
/// them to a gRPC close's message).
pub fn response_code_details(reason: &str) -> &'static str {
    [
        (TIMEOUT, "response_timeout"),
        (
            CONNECTION_FAILURE,
            "upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}",
        ),
        (
            CONNECTION_TERMINATION,
            "upstream_reset_before_response_started{connection_termination}",
        ),
        (
            PROTOCOL_ERROR,
            "upstream_reset_before_response_started{protocol_error}",
        ),
        (
            REMOTE_RESET,
            "upstream_reset_before_response_started{remote_reset}",
        ),
    ]
    .into_iter()
    .find(|(text, _)| *text == reason)
    .map_or("", |(_, details)| details)
}

/// RFC 9110 IMF-fixdate: `Thu, 01 Jan 2026 00:00:00 GMT`.
pub fn http_date(now_ms: u64) -> String {
    let secs = now_ms / 1000;
    let days = (secs / 86_400) as i64;
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {h:02}:{m:02}:{s:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[month as usize - 1]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn dates_and_ids() {
        assert_eq!(
            http_date(1_767_225_600_000),
            "Thu, 01 Jan 2026 00:00:00 GMT"
        );
        assert_eq!(
            http_date(1_803_987_296_000),
            "Tue, 02 Mar 2027 11:34:56 GMT"
        );
        let id = request_id(7);
        assert_eq!(
            (id.len(), &id[14..15], id == request_id(7)),
            (36, "4", true)
        );
        assert_ne!(request_id(7), request_id(8));
    }

    #[test]
    fn local_replies_as_envoy_renders_them() {
        let (h, b) = local_reply(401, map(&[("x-a", "1")]), b"no".to_vec(), None, &vec![]);
        let expected = map(&[
            (":status", "401"),
            ("x-a", "1"),
            ("content-length", "2"),
            ("content-type", "text/plain"),
        ]);
        assert_eq!((h, b), (expected, b"no".to_vec()));
        let grpc = map(&[("content-type", "application/grpc")]);
        let (h, b) = local_reply(200, vec![], b"m".to_vec(), Some(7), &grpc);
        let expected = map(&[
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", "7"),
            ("grpc-message", "m"),
        ]);
        assert_eq!((h, b), (expected, vec![]));
        let (h, _) = local_reply(200, vec![], b"m".to_vec(), Some(7), &vec![]);
        let plain = map(&[
            (":status", "200"),
            ("content-length", "1"),
            ("content-type", "text/plain"),
        ]);
        assert_eq!(h, plain);
        let failed = map(&[
            ("date", "Thu, 01 Jan 2026 00:00:00 GMT"),
            ("server", "envoy"),
            ("content-length", "0"),
        ]);
        assert_eq!(failed_vm(1_767_225_600_000), failed);
    }

    #[test]
    fn local_reply_details_have_whitespace_as_underscores() {
        assert_eq!(
            local_reply_details("jwt_filter_denied{expired}"),
            "jwt_filter_denied{expired}"
        );
        assert_eq!(
            local_reply_details("a b\tc\nd\re\u{b}f\u{c}g\u{a0}h"),
            "a_b_c_d_e_f_g\u{a0}h"
        );
        assert_eq!(local_reply_details(""), "");
    }
}
