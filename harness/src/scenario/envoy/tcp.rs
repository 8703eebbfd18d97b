//! TCP scenarios through Envoy: the client's connection to the listener (the network filter
//! in front of `tcp_proxy`) and the loopback upstream `tcp_proxy` connects to, each end
//! recording what it received and whether its connection ended; the steps write, send a FIN
//! (`shutdown(Write)`) or abort (a reset: `SO_LINGER` 0, then close).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

/// What one end received.
#[derive(Default)]
struct Seen {
    received: Vec<u8>,
    eof: bool,
    aborted: bool,
}

/// One end of a TCP connection, read by a thread of its own.
pub(super) struct End {
    /// `None` once aborted.
    stream: Option<TcpStream>,
    seen: Arc<Mutex<Seen>>,
    reader: Option<JoinHandle<()>>,
}

impl End {
    fn new(stream: TcpStream) -> Result<End> {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut reading = stream.try_clone()?;
        let shared = seen.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 16384];
            loop {
                let n = reading.read(&mut buf).unwrap_or(0);
                let Ok(mut seen) = shared.lock() else { return };
                if n == 0 {
                    seen.eof = true;
                    return;
                }
                seen.received
                    .extend_from_slice(buf.get(..n).unwrap_or_default());
            }
        });
        Ok(End {
            stream: Some(stream),
            seen,
            reader: Some(reader),
        })
    }

    /// A client's connection to `port`.
    pub(super) fn connect(port: u16) -> Result<End> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        End::new(stream)
    }

    /// Sends `data`, then a FIN with `end_of_stream`.
    pub(super) fn send(&mut self, data: &[u8], end_of_stream: bool) -> Result<()> {
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| anyhow!("the connection was aborted"))?;
        if !data.is_empty() {
            stream.write_all(data)?;
        }
        if end_of_stream {
            stream.shutdown(Shutdown::Write)?;
        }
        Ok(())
    }

    /// Aborts the connection: a reset (`SO_LINGER` 0, then the last descriptor closed).
    pub(super) fn abort(&mut self) -> Result<()> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.aborted = true;
        }
        let Some(stream) = self.stream.take() else {
            return Ok(());
        };
        socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
        // The reader's blocked read returns at once, and its descriptor goes with it.
        let _ = stream.shutdown(Shutdown::Read);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        // Closing the last descriptor sends the reset.
        drop(stream);
        Ok(())
    }

    /// What it received so far, and whether its connection ended (or it aborted it).
    pub(super) fn seen(&self) -> (Vec<u8>, bool) {
        self.seen.lock().map_or((Vec::new(), false), |s| {
            (s.received.clone(), s.eof || s.aborted)
        })
    }
}

/// The loopback upstream of a TCP scenario: every connection Envoy makes to it, in order.
pub(super) struct Upstream {
    pub(super) port: u16,
    ends: Arc<Mutex<Vec<End>>>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Upstream {
    pub(super) fn start() -> Result<Upstream> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let ends: Arc<Mutex<Vec<End>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (accepted, stopping) = (ends.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let _ = stream.set_nodelay(true);
                if let (Ok(end), Ok(mut ends)) = (End::new(stream), accepted.lock()) {
                    ends.push(end);
                }
            }
        });
        Ok(Upstream {
            port,
            ends,
            stop,
            thread,
        })
    }

    /// How many connections it accepted.
    pub(super) fn accepted(&self) -> usize {
        self.ends.lock().map_or(0, |e| e.len())
    }

    /// Runs `f` on connection `index`, waiting up to `wait` for Envoy to make it.
    pub(super) fn with<T>(
        &self,
        index: usize,
        wait: Duration,
        f: impl FnOnce(&mut End) -> Result<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + wait;
        loop {
            {
                let mut ends = self.ends.lock().map_err(|_| anyhow!("a reader panicked"))?;
                if let Some(end) = ends.get_mut(index) {
                    return f(end);
                }
            }
            if Instant::now() >= deadline {
                return Err(anyhow!(
                    "no upstream connection: Envoy made none to the upstream"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What connection `index` received, and whether it ended (none: nothing, open).
    pub(super) fn seen(&self, index: usize) -> (Vec<u8>, bool) {
        self.ends
            .lock()
            .ok()
            .and_then(|ends| ends.get(index).map(End::seen))
            .unwrap_or_default()
    }

    /// Stops accepting (a last connection wakes the accept loop).
    pub(super) fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        let _ = self.thread.join();
    }
}
