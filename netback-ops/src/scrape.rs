//! Fetching the daemon's metrics endpoint: one HTTP/1.1 `GET`, bounded in time and size.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::exposition::{parse_exposition, ParseError, Sample};

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The URL is not `[http://]host:port[/path]`.
    #[error("bad metrics URL {0:?} (expected http://HOST:PORT/metrics)")]
    Url(String),
    /// Connecting, sending or receiving failed.
    #[error("{url}: {source}")]
    Io {
        /// The URL.
        url: String,
        /// The error.
        source: io::Error,
    },
    /// The server answered something other than 200.
    #[error("{url}: HTTP status {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status line.
        status: String,
    },
    /// The answer is not an HTTP response or the body not the text format.
    #[error("{url}: {what}")]
    Malformed {
        /// The URL.
        url: String,
        /// What is wrong.
        what: Malformed,
    },
}

/// What is wrong with a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// The header never ends (`\r\n\r\n`).
    #[error("no HTTP header end")]
    NoHeaderEnd,
    /// The status line is not `HTTP/1.x ...`.
    #[error("not an HTTP/1 response")]
    NotHttp1,
    /// `Transfer-Encoding` (chunked) is not implemented.
    #[error("chunked responses are not supported")]
    Chunked,
    /// The body is not UTF-8.
    #[error("body is not UTF-8")]
    NotUtf8,
    /// The body is not the text exposition format.
    #[error(transparent)]
    Exposition(#[from] ParseError),
}

/// Largest response [`scrape`] accepts.
const MAX_RESPONSE: u64 = 64 << 20;

/// Splits `[http://]host:port[/path]` into (host:port, path); the path defaults to
/// `/metrics`.
pub fn split_url(url: &str) -> Result<(String, String), ScrapeError> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    if rest.contains("://") || rest.is_empty() {
        return Err(ScrapeError::Url(url.to_string()));
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    if host.is_empty() || !host.contains(':') {
        return Err(ScrapeError::Url(url.to_string()));
    }
    Ok((host.to_string(), path.to_string()))
}

/// GETs the exposition at `url` and parses it.
pub fn scrape(url: &str, timeout: Duration) -> Result<Vec<Sample>, ScrapeError> {
    let resp = get(url, timeout)?;
    parse_response(&resp).map_err(|e| match e {
        Answer::Status(status) => ScrapeError::Status {
            url: url.to_string(),
            status,
        },
        Answer::Malformed(what) => ScrapeError::Malformed {
            url: url.to_string(),
            what,
        },
    })
}

/// Sends the request and reads the whole response (up to [`MAX_RESPONSE`] bytes).
fn get(url: &str, timeout: Duration) -> Result<Vec<u8>, ScrapeError> {
    let (host, path) = split_url(url)?;
    let io_err = |source| ScrapeError::Io {
        url: url.to_string(),
        source,
    };
    let addr = host
        .to_socket_addrs()
        .map_err(io_err)?
        .next()
        .ok_or_else(|| ScrapeError::Url(url.to_string()))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(io_err)?;
    s.set_read_timeout(Some(timeout)).map_err(io_err)?;
    s.set_write_timeout(Some(timeout)).map_err(io_err)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    )
    .map_err(io_err)?;
    let mut resp = Vec::new();
    s.take(MAX_RESPONSE)
        .read_to_end(&mut resp)
        .map_err(io_err)?;
    Ok(resp)
}

/// A response that is not a usable 200.
#[derive(Debug, PartialEq)]
enum Answer {
    Status(String),
    Malformed(Malformed),
}

/// Checks the head of a complete response and parses its body.
fn parse_response(resp: &[u8]) -> Result<Vec<Sample>, Answer> {
    let bad = Answer::Malformed;
    let head_end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(bad(Malformed::NoHeaderEnd))?;
    let head = String::from_utf8_lossy(&resp[..head_end]);
    let status = head.lines().next().unwrap_or("");
    let mut it = status.split(' ');
    if !it.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(bad(Malformed::NotHttp1));
    }
    if it.next() != Some("200") {
        return Err(Answer::Status(status.to_string()));
    }
    if head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:"))
    {
        return Err(bad(Malformed::Chunked));
    }
    let body = std::str::from_utf8(&resp[head_end + 4..]).map_err(|_| bad(Malformed::NotUtf8))?;
    parse_exposition(body).map_err(|e| bad(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn urls() {
        assert_eq!(
            split_url("http://127.0.0.1:9101/metrics").unwrap(),
            ("127.0.0.1:9101".into(), "/metrics".into())
        );
        assert_eq!(
            split_url("localhost:1").unwrap(),
            ("localhost:1".into(), "/metrics".into())
        );
        for bad in ["https://x:1/", "", "http://", "host/metrics"] {
            assert!(split_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn responses() {
        let ok = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\na 1\n").unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].value, 1.0);
        for (resp, want) in [
            (&b"HTTP/1.1 200 OK\r\n"[..], Malformed::NoHeaderEnd),
            (b"SPDY 200\r\n\r\n", Malformed::NotHttp1),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Malformed::Chunked,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n\xff 1", Malformed::NotUtf8),
        ] {
            assert_eq!(parse_response(resp), Err(Answer::Malformed(want)));
        }
        assert!(matches!(
            parse_response(b"HTTP/1.1 200 OK\r\n\r\nx y\n"),
            Err(Answer::Malformed(Malformed::Exposition(_)))
        ));
        assert_eq!(
            parse_response(b"HTTP/1.1 503 Service Unavailable\r\n\r\nno snapshot yet\n"),
            Err(Answer::Status("HTTP/1.1 503 Service Unavailable".into()))
        );
    }

    /// A one-shot server answering `resp` to the first connection; returns its URL.
    fn serve_once(resp: &'static [u8]) -> (String, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/m", l.local_addr().unwrap());
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 512];
            while !req.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "request cut short");
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(resp).unwrap();
            String::from_utf8(req).unwrap()
        });
        (url, t)
    }

    #[test]
    fn scrape_over_tcp() {
        let (url, t) = serve_once(b"HTTP/1.1 200 OK\r\n\r\nm{vif=\"vif1.0\"} 42\n");
        let s = scrape(&url, Duration::from_secs(5)).unwrap();
        assert_eq!(s[0].label("vif"), Some("vif1.0"));
        assert_eq!(s[0].value, 42.0);
        let req = t.join().unwrap();
        assert!(req.starts_with("GET /m HTTP/1.1\r\n"), "{req}");

        let (url, t) = serve_once(b"HTTP/1.0 404 Not Found\r\n\r\n");
        let e = scrape(&url, Duration::from_secs(5)).unwrap_err();
        t.join().unwrap();
        assert_eq!(
            e.to_string(),
            format!("{url}: HTTP status HTTP/1.0 404 Not Found")
        );
    }
}
