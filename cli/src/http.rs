//! A tiny HTTP/1.1 server for `/metrics` and `/status`: one thread, one
//! connection at a time, `Connection: close`. Scrapes are small and rare;
//! this is not a web framework and does not try to be one.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A response body and its content type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub text: String,
}

impl Body {
    /// Prometheus text exposition format.
    pub fn metrics(text: String) -> Self {
        Self { content_type: "text/plain; version=0.0.4; charset=utf-8", text }
    }

    /// JSON.
    pub fn json(value: &serde_json::Value) -> Self {
        let mut text =
            serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        text.push('\n');
        Self { content_type: "application/json", text }
    }
}

/// Answers a path (`/metrics`, `/status`); `None` is a 404.
pub type Handler = Arc<dyn Fn(&str) -> Option<Body> + Send + Sync>;

/// A running status server; stops when dropped.
pub struct StatusServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for StatusServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusServer").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// Longest request head read.
const MAX_HEAD: usize = 8 << 10;
/// How long a client may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

impl StatusServer {
    /// Binds `addr` and serves `handler` on a thread of its own.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn start(addr: SocketAddr, handler: Handler) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new().name(format!("ekv-status-{}", addr.port())).spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    match conn {
                        Ok(s) => {
                            if let Err(e) = serve(s, &handler) {
                                tracing::debug!(error = %e, "status request failed");
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "status accept failed"),
                    }
                }
            })?
        };
        tracing::info!(%addr, "status server listening (/metrics, /status)");
        Ok(Self { addr, stop, thread: Some(thread) })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept with a connection of our own.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(if wake.is_ipv4() {
                [127, 0, 0, 1].into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        let woke = TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok();
        if let Some(t) = self.thread.take() {
            if woke {
                let _ = t.join();
            }
        }
    }
}

fn serve(mut s: TcpStream, handler: &Handler) -> std::io::Result<()> {
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return respond(
                &mut s,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request head too large\n",
                true,
            );
        }
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = target.split('?').next().unwrap_or_default();
    let with_body = method != "HEAD";
    if method != "GET" && method != "HEAD" {
        return respond(&mut s, "405 Method Not Allowed", "text/plain", "only GET and HEAD\n", with_body);
    }
    let result = match path {
        "/" => Some(Body {
            content_type: "text/plain; charset=utf-8",
            text: "ekv status server: /metrics (Prometheus), /status (JSON)\n".into(),
        }),
        p => handler(p),
    };
    match result {
        Some(body) => respond(&mut s, "200 OK", body.content_type, &body.text, with_body),
        None => {
            respond(&mut s, "404 Not Found", "text/plain", "not found: try /metrics or /status\n", with_body)
        }
    }
}

fn respond(
    s: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
    with_body: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    if with_body {
        s.write_all(body.as_bytes())?;
    }
    s.flush()?;
    let _ = s.shutdown(Shutdown::Write);
    Ok(())
}

/// GETs `path` from a status server; returns the status code and body.
#[cfg(test)]
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response"))?;
    Ok((code, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_paths_and_404s_and_stops() {
        let handler: Handler =
            Arc::new(|p: &str| (p == "/metrics").then(|| Body::metrics("ekv_up 1\n".into())));
        let server = StatusServer::start("127.0.0.1:0".parse().unwrap(), handler).unwrap();
        let addr = server.addr();
        assert_eq!(get(addr, "/metrics").unwrap(), (200, "ekv_up 1\n".into()));
        assert_eq!(get(addr, "/nope").unwrap().0, 404);
        drop(server);
        assert!(TcpStream::connect(addr).is_err(), "the listener is closed after drop");
    }
}
