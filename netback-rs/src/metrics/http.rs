//! The HTTP endpoint: `GET /metrics` (and `HEAD`) answered with the latest snapshot,
//! rendered by [`super::render`]. Requests are bounded in size and time; anything
//! malformed gets a 4xx answer and a closed connection, never a panic.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::expo::render;
use super::publish::SnapshotCell;

/// Largest request head the server reads.
const MAX_REQUEST: usize = 8192;
/// Connections served at once; more get 503.
const MAX_CONNECTIONS: usize = 16;
/// Read/write timeout per connection.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The HTTP endpoint: `GET /metrics` (and `HEAD`), one short-lived thread per connection.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` (e.g. `127.0.0.1:9101`; port 0 picks a free port) and serves
    /// the latest snapshot of `cell`.
    pub fn start(addr: &str, cell: SnapshotCell) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("metrics-accept".into())
            .spawn({
                let stop = stop.clone();
                move || accept_loop(&listener, &cell, &stop)
            })?;
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept call.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts connections until `stop`, each served on its own thread, at most
/// [`MAX_CONNECTIONS`] at once (the others get 503).
fn accept_loop(listener: &TcpListener, cell: &SnapshotCell, stop: &AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                log::debug!("metrics: accept: {e}");
                // E.g. EMFILE: do not spin.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::AcqRel);
            let mut s = stream;
            let _ = s.set_write_timeout(Some(IO_TIMEOUT));
            let _ = respond(&mut s, 503, "Service Unavailable", "busy\n", false);
            continue;
        }
        let (cell, active2) = (cell.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("metrics-conn".into())
            .spawn(move || {
                if let Err(e) = handle(stream, &cell) {
                    log::debug!("metrics: connection: {e}");
                }
                active2.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            active.fetch_sub(1, Ordering::AcqRel);
            log::warn!("metrics: cannot spawn a connection thread: {e}");
        }
    }
}

fn respond(
    s: &mut TcpStream,
    code: u16,
    reason: &str,
    body: &str,
    head_only: bool,
) -> io::Result<()> {
    let ctype = if code == 200 {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut msg = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        msg.push_str(body);
    }
    s.write_all(msg.as_bytes())?;
    s.flush()
}

/// Reads one request head and answers it.
fn handle(mut s: TcpStream, cell: &SnapshotCell) -> io::Result<()> {
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = match read_head(&mut s)? {
        Head::Complete(h) => h,
        Head::TooLarge => {
            return respond(
                &mut s,
                431,
                "Request Header Fields Too Large",
                "request too large\n",
                false,
            )
        }
        Head::Cut => return Ok(()),
    };
    let (head_only, path) = match request_line(&head) {
        Ok(r) => r,
        Err((code, reason, body)) => return respond(&mut s, code, reason, body, false),
    };
    let (code, reason, body) = page(&path, cell);
    respond(&mut s, code, reason, &body, head_only)?;
    let _ = s.shutdown(Shutdown::Write);
    Ok(())
}

/// What [`read_head`] got.
enum Head {
    /// Up to and including the blank line ending the head.
    Complete(Vec<u8>),
    /// [`MAX_REQUEST`] bytes without the end of a head.
    TooLarge,
    /// The client closed before the end of a head.
    Cut,
}

fn read_head(s: &mut TcpStream) -> io::Result<Head> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return Ok(Head::Complete(buf));
        }
        if buf.len() >= MAX_REQUEST {
            return Ok(Head::TooLarge);
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(Head::Cut);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A refusal: status code, reason phrase, body.
type Refusal = (u16, &'static str, &'static str);

/// Checks the request line; returns (`HEAD` rather than `GET`, the path without query).
fn request_line(head: &[u8]) -> Result<(bool, String), Refusal> {
    const MALFORMED: Refusal = (400, "Bad Request", "malformed request line\n");
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = String::from_utf8_lossy(&head[..line_end]);
    let mut parts = line.trim_end().split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(MALFORMED);
    };
    if parts.next().is_some() || !version.starts_with("HTTP/1.") {
        return Err(MALFORMED);
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return Err((405, "Method Not Allowed", "only GET and HEAD\n"));
    }
    let path = target.split('?').next().unwrap_or("");
    Ok((head_only, path.to_string()))
}

/// The answer for `path`: status code, reason phrase, body.
fn page(path: &str, cell: &SnapshotCell) -> (u16, &'static str, String) {
    match path {
        "/metrics" => match cell.latest() {
            Some(snap) => (200, "OK", render(&snap)),
            None => (503, "Service Unavailable", "no snapshot yet\n".into()),
        },
        "/" => (200, "OK", "netback: metrics at /metrics\n".into()),
        _ => (404, "Not Found", "not found; try /metrics\n".into()),
    }
}
