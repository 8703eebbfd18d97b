//! A minimal HTTP/1.1 server for the demo servers: a thread per connection, keep-alive,
//! `content-length` or chunked request bodies (up to 1 MiB in all), nothing else. Loopback
//! demo traffic only.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

const MAX_BODY: usize = 1 << 20;
const MAX_HEAD_LINES: usize = 200;

pub struct Request {
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    /// Header names lowercased, in order (bytes that are not UTF-8 as U+FFFD).
    pub headers: Vec<(String, String)>,
    /// The same headers with their values' bytes as sent.
    pub raw_headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// What answers a request.
pub type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

pub enum Reply {
    Respond {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// Keep the connection open and never answer.
    Hold,
    /// Answer after a delay (the connection's thread sleeps; other connections are served).
    Delayed(std::time::Duration, Box<Reply>),
    /// Abort the connection without answering: a TCP reset (RST) where the platform allows
    /// it (Linux), else a plain close.
    Reset,
    /// These bytes as they are (a whole answer, or part of one), then the connection closes
    /// if `close`.
    Raw { bytes: Vec<u8>, close: bool },
}

impl Reply {
    pub fn json(status: u16, body: &serde_json::Value) -> Reply {
        Reply::Respond {
            status,
            content_type: "application/json",
            body: body.to_string().into_bytes(),
        }
    }

    pub fn text(status: u16, body: &str) -> Reply {
        Reply::Respond {
            status,
            content_type: "text/plain",
            body: body.as_bytes().to_vec(),
        }
    }
}

/// Accepts connections forever, each served on its own thread by `handler`.
pub fn serve(listener: TcpListener, handler: Arc<Handler>) {
    for stream in listener.incoming().flatten() {
        let handler = handler.clone();
        std::thread::spawn(move || connection(stream, handler.as_ref()));
    }
}

/// Serves one connection's requests with `handler` until it closes.
pub fn connection(stream: TcpStream, handler: &Handler) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let request = match read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(why) => {
                let _ = write_reply(&mut writer, 400, "text/plain", why.as_bytes(), true);
                return;
            }
        };
        let close = request
            .headers
            .iter()
            .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
        let mut reply = handler(&request);
        while let Reply::Delayed(delay, inner) = reply {
            std::thread::sleep(delay);
            reply = *inner;
        }
        match reply {
            Reply::Delayed(..) => return,
            Reply::Reset => {
                reset(&writer);
                return;
            }
            Reply::Respond {
                status,
                content_type,
                body,
            } => {
                if write_reply(&mut writer, status, content_type, &body, close).is_err() || close {
                    return;
                }
            }
            Reply::Raw { bytes, close } => {
                if writer.write_all(&bytes).is_err() || close {
                    return;
                }
            }
            Reply::Hold => loop {
                std::thread::park();
            },
        }
    }
}

/// Makes the close of `stream` a reset: `SO_LINGER` on with a zero timeout (Linux; std has
/// no stable setter, so the C library's `setsockopt`, which std links anyway).
#[cfg(target_os = "linux")]
fn reset(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Linger {
        onoff: i32,
        linger: i32,
    }
    unsafe extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const Linger, len: u32) -> i32;
    }
    const SOL_SOCKET: i32 = 1;
    const SO_LINGER: i32 = 13;
    let linger = Linger {
        onoff: 1,
        linger: 0,
    };
    // SAFETY: a valid open socket descriptor and a pointer to a live `struct linger` of the
    // size given; setsockopt only reads it.
    let _ = unsafe {
        setsockopt(
            stream.as_raw_fd(),
            SOL_SOCKET,
            SO_LINGER,
            &linger,
            std::mem::size_of::<Linger>() as u32,
        )
    };
}

#[cfg(not(target_os = "linux"))]
fn reset(stream: &TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Reads one request; `Ok(None)` when the peer closed the connection between requests.
/// A line of the head, without its line end (header values may carry any bytes).
fn read_line(reader: &mut impl BufRead) -> Result<Option<Vec<u8>>, String> {
    let mut bytes = Vec::new();
    if reader
        .read_until(b'\n', &mut bytes)
        .map_err(|e| e.to_string())?
        == 0
    {
        return Ok(None);
    }
    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        bytes.pop();
    }
    Ok(Some(bytes))
}

fn read_request(reader: &mut impl BufRead) -> Result<Option<Request>, String> {
    let Some(line) = read_line(reader)? else {
        return Ok(None);
    };
    let line = String::from_utf8_lossy(&line);
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err("bad request line".into());
    };
    let (method, target) = (method.to_string(), target.to_string());
    let (mut headers, mut raw_headers) = (Vec::new(), Vec::new());
    loop {
        let line = read_line(reader)?.ok_or("connection closed in the headers")?;
        if line.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEAD_LINES {
            return Err("too many headers".into());
        }
        let colon = line
            .iter()
            .position(|b| *b == b':')
            .ok_or("bad header line")?;
        let name = line[..colon].trim_ascii().to_ascii_lowercase();
        let value = line[colon + 1..].trim_ascii().to_vec();
        headers.push((
            String::from_utf8_lossy(&name).into_owned(),
            String::from_utf8_lossy(&value).into_owned(),
        ));
        raw_headers.push((name, value));
    }
    let body = match headers.iter().find(|(k, _)| k == "transfer-encoding") {
        Some((_, coding)) if coding.eq_ignore_ascii_case("chunked") => read_chunked(reader)?,
        Some(_) => return Err("only the chunked transfer coding is supported".into()),
        None => {
            let length = match headers.iter().find(|(k, _)| k == "content-length") {
                Some((_, v)) => v.parse::<usize>().map_err(|_| "bad content-length")?,
                None => 0,
            };
            if length > MAX_BODY {
                return Err("body too large".into());
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).map_err(|e| e.to_string())?;
            body
        }
    };
    Ok(Some(Request {
        method,
        target,
        headers,
        raw_headers,
        body,
    }))
}

/// A chunked body (RFC 9112 section 7.1): sizes in hex (extensions ignored), then the
/// trailer section, which is read and dropped. At most `MAX_BODY` bytes in all.
fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or("connection closed in a chunk size")?;
        let line = String::from_utf8_lossy(&line);
        let hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(hex, 16).map_err(|_| "bad chunk size")?;
        if size == 0 {
            break;
        }
        if body.len() + size > MAX_BODY {
            return Err("body too large".into());
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .map_err(|e| e.to_string())?;
        let end = read_line(reader)?.ok_or("connection closed after a chunk")?;
        if !end.is_empty() {
            return Err("chunk longer than its size".into());
        }
    }
    for _ in 0..MAX_HEAD_LINES {
        let line = read_line(reader)?.ok_or("connection closed in the trailers")?;
        if line.is_empty() {
            return Ok(body);
        }
    }
    Err("too many trailers".into())
}

fn write_reply(
    w: &mut impl Write,
    status: u16,
    content_type: &str,
    body: &[u8],
    close: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let connection = if close { "close" } else { "keep-alive" };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: {connection}\r\n\r\n",
        body.len()
    );
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keep_alive_and_chunked_requests() {
        let raw = b"POST /admin/mode HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nfailGET /a?b=1 HTTP/1.1\r\nX-A: 1\r\n\r\n";
        let mut reader = BufReader::new(&raw[..]);
        let first = read_request(&mut reader).unwrap().unwrap();
        assert_eq!(
            (
                first.method.as_str(),
                first.target.as_str(),
                first.body.as_slice()
            ),
            ("POST", "/admin/mode", &b"fail"[..])
        );
        let second = read_request(&mut reader).unwrap().unwrap();
        assert_eq!(
            (second.target.as_str(), second.headers[0].clone()),
            ("/a?b=1", ("x-a".into(), "1".into()))
        );
        assert!(read_request(&mut reader).unwrap().is_none());
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let mut reader = BufReader::new(&chunked[..]);
        assert_eq!(read_request(&mut reader).unwrap().unwrap().body, b"abcde");
        assert_eq!(read_request(&mut reader).unwrap().unwrap().method, "GET");
        // A chunk longer than its size, a size that is not hex, a cut-off body.
        for bad in [&b"2\r\nabc\r\n0\r\n\r\n"[..], b"zz\r\n", b"5\r\nab"] {
            let raw = [
                &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
                bad,
            ]
            .concat();
            assert!(read_request(&mut BufReader::new(&raw[..])).is_err());
        }
        let gzip = b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert!(read_request(&mut BufReader::new(&gzip[..])).is_err());
        let mut out = Vec::new();
        write_reply(&mut out, 503, "text/plain", b"down", false).unwrap();
        assert!(
            String::from_utf8(out)
                .unwrap()
                .starts_with("HTTP/1.1 503 Service Unavailable\r\n")
        );
    }

    #[test]
    fn delayed_and_reset_replies_over_a_socket() {
        use std::io::Read;
        use std::time::{Duration, Instant};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            serve(
                listener,
                Arc::new(|r: &Request| match r.target.as_str() {
                    "/slow" => Reply::Delayed(
                        Duration::from_millis(300),
                        Box::new(Reply::text(200, "late")),
                    ),
                    _ => Reply::Reset,
                }),
            )
        });
        let ask = |path: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).map(|_| out)
        };
        let t0 = Instant::now();
        let slow = String::from_utf8(ask("/slow").unwrap()).unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(300));
        assert!(
            slow.starts_with("HTTP/1.1 200 OK\r\n") && slow.ends_with("late"),
            "{slow}"
        );
        let err = ask("/reset").expect_err("a reset, not an answer or a clean close");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    }
}
