//! The HTTP endpoint on `[metrics] bind_address`: `/metrics` (and the
//! original's `/metrics/prometheus`) and `/health`, served from the same
//! executor as the proxy.
//!
//! Deliberately tiny: GET and HEAD only, one request per connection, at most
//! [`MAX_REQUEST_BYTES`] read within [`REQUEST_TIMEOUT`], at most
//! [`MAX_CLIENTS`] at once. Anything malformed gets `400` and costs only its
//! own connection.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{LocalExecutor, Timer};

use crate::config::HostPort;
use crate::metrics::{self, Process};
use crate::pools::{Choice, Health, Pools};
use crate::stats::Stats;

/// Longest request head read, in bytes.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Time a client has to send its request and take the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Most HTTP clients served at once; more are closed at once.
pub const MAX_CLIENTS: usize = 16;
/// How long a pool reachability probe result is trusted.
const PROBE_TTL: Duration = Duration::from_secs(10);
/// Time allowed for a reachability probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What the endpoint serves from.
pub struct Endpoint {
    stats: Rc<Stats>,
    process: Process,
    pools: Rc<Pools>,
    clients: Cell<usize>,
    /// The last reachability probe: the pool found, or why none was.
    probe: RefCell<Option<(Instant, Result<usize, String>)>>,
    page: RefCell<String>,
}

/// A parsed request line.
#[derive(Debug, PartialEq, Eq)]
enum Request<'a> {
    Get { path: &'a str, head: bool },
    NotAllowed,
    Bad,
}

fn parse_request(head: &[u8]) -> Request<'_> {
    let Ok(text) = std::str::from_utf8(head) else {
        return Request::Bad;
    };
    let line = text.split("\r\n").next().unwrap_or("");
    let mut words = line.split(' ');
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some(m), Some(path), Some(v), None) if v.starts_with("HTTP/1.") && path.starts_with('/') => {
            match m {
                "GET" => Request::Get { path, head: false },
                "HEAD" => Request::Get { path, head: true },
                m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => Request::NotAllowed,
                _ => Request::Bad,
            }
        }
        _ => Request::Bad,
    }
}

impl Endpoint {
    /// An endpoint reporting `stats` and the state of `pools`.
    pub fn new(stats: Rc<Stats>, process: Process, pools: Rc<Pools>) -> Self {
        Endpoint {
            stats,
            process,
            pools,
            clients: Cell::new(0),
            probe: RefCell::new(None),
            page: RefCell::new(String::new()),
        }
    }

    /// Serves HTTP clients until the listener fails.
    pub async fn serve(self: Rc<Self>, listener: async_net::TcpListener, ex: Rc<LocalExecutor<'static>>) {
        loop {
            let errors = &self.stats.metrics_accept_errors;
            let (stream, peer) = crate::net::next_connection(&listener, "metrics clients", errors).await;
            if self.clients.get() >= MAX_CLIENTS {
                log::debug!("metrics client {peer} refused: {MAX_CLIENTS} already connected");
                continue;
            }
            self.clients.set(self.clients.get() + 1);
            let me = self.clone();
            ex.spawn(async move {
                let served = me.clone().answer(stream).or(async {
                    Timer::after(REQUEST_TIMEOUT).await;
                    Err(io::ErrorKind::TimedOut.into())
                });
                if let Err(e) = served.await {
                    log::debug!("metrics client {peer}: {e}");
                }
                me.clients.set(me.clients.get() - 1);
            })
            .detach();
        }
    }

    async fn answer(self: Rc<Self>, mut stream: async_net::TcpStream) -> io::Result<()> {
        let mut head = [0u8; MAX_REQUEST_BYTES];
        let mut len = 0;
        let complete = loop {
            let n = stream.read(&mut head[len..]).await?;
            if n == 0 {
                break false;
            }
            len += n;
            if head[..len].windows(4).any(|w| w == b"\r\n\r\n")
                || head[..len].windows(2).any(|w| w == b"\n\n")
            {
                break true;
            }
            if len == head.len() {
                break false;
            }
        };
        let request = if complete { parse_request(&head[..len]) } else { Request::Bad };
        let (status, body, head_only) = match request {
            Request::Bad => ("400 Bad Request", "bad request\n".to_string(), false),
            Request::NotAllowed => ("405 Method Not Allowed", "only GET and HEAD\n".to_string(), false),
            Request::Get { path, head } => {
                let path = path.split('?').next().unwrap_or(path);
                match path {
                    "/metrics" | "/metrics/prometheus" => ("200 OK", self.render_metrics(), head),
                    "/health" => {
                        let (status, body) = self.health().await;
                        (status, body, head)
                    }
                    "/" => ("200 OK", "loka-stratum: see /metrics and /health\n".to_string(), head),
                    _ => ("404 Not Found", "not found\n".to_string(), head),
                }
            }
        };
        let content_type = if body.starts_with("# HELP") {
            "text/plain; version=0.0.4; charset=utf-8"
        } else {
            "text/plain; charset=utf-8"
        };
        let header = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(header.as_bytes()).await?;
        if !head_only {
            stream.write_all(body.as_bytes()).await?;
        }
        stream.flush().await?;
        let _ = stream.shutdown(std::net::Shutdown::Write);
        Ok(())
    }

    /// Renders the page, reusing one buffer's capacity between scrapes.
    fn render_metrics(&self) -> String {
        let mut page = self.page.borrow_mut();
        page.clear();
        metrics::render(&mut page, &self.stats, &self.pools, &self.process, Instant::now());
        page.clone()
    }

    /// `200` naming the pool in use while one is reachable, `503` with the
    /// reasons otherwise. A pool with live upstream connections is
    /// reachable; without any, the pools not known to be down are tried in
    /// priority order (the result is kept for [`PROBE_TTL`]); when every
    /// pool is down (the proxy's own probes say so) none is.
    async fn health(&self) -> (&'static str, String) {
        let pools = &self.pools;
        let live = |i: usize| pools.get(i).connected.get() > 0;
        let in_use =
            pools.active().filter(|&i| live(i)).or_else(|| (0..pools.entries().len()).find(|&i| live(i)));
        if let Some(i) = in_use {
            let e = pools.get(i);
            let n = e.connected.get();
            return ("200 OK", format!("ok: pool {} in use, {n} upstream connections\n", e.target.name));
        }
        let down = |e: &crate::pools::Entry| {
            format!("{} ({}): {}", e.target.name, e.target.address, e.health().label())
        };
        if pools.pick() == Choice::Wait {
            let reasons: Vec<String> = pools.entries().iter().map(down).collect();
            return ("503 Service Unavailable", format!("no pool reachable: {}\n", reasons.join("; ")));
        }
        let cached =
            self.probe.borrow().as_ref().filter(|(at, _)| at.elapsed() < PROBE_TTL).map(|(_, r)| r.clone());
        let result = match cached {
            Some(result) => result,
            None => {
                let mut result = Err(Vec::new());
                for (i, e) in pools.entries().iter().enumerate() {
                    if e.health() == Health::Down {
                        if let Err(reasons) = &mut result {
                            reasons.push(down(e));
                        }
                        continue;
                    }
                    match probe(&e.target.address).await {
                        Ok(()) => {
                            result = Ok(i);
                            break;
                        }
                        Err(why) => {
                            if let Err(reasons) = &mut result {
                                reasons.push(format!("{} ({}): {why}", e.target.name, e.target.address));
                            }
                        }
                    }
                }
                let result = result.map_err(|reasons| reasons.join("; "));
                *self.probe.borrow_mut() = Some((Instant::now(), result.clone()));
                result
            }
        };
        match result {
            Ok(i) => {
                let e = pools.get(i);
                ("200 OK", format!("ok: pool {} ({}) reachable\n", e.target.name, e.target.address))
            }
            Err(e) => ("503 Service Unavailable", format!("no pool reachable: {e}\n")),
        }
    }
}

/// Opens and closes one TCP connection to the pool.
async fn probe(pool: &HostPort) -> Result<(), String> {
    let connect = async {
        async_net::TcpStream::connect((pool.host(), pool.port())).await.map(drop).map_err(|e| e.to_string())
    };
    connect
        .or(async {
            Timer::after(PROBE_TIMEOUT).await;
            Err("timed out".to_string())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Request::Get { path: "/metrics", head: false }
        );
        assert_eq!(
            parse_request(b"HEAD /health HTTP/1.0\r\n\r\n"),
            Request::Get { path: "/health", head: true }
        );
        assert_eq!(parse_request(b"POST /metrics HTTP/1.1\r\n\r\n"), Request::NotAllowed);
        assert_eq!(parse_request(b"GET metrics HTTP/1.1\r\n\r\n"), Request::Bad);
        assert_eq!(parse_request(b"\x16\x03\x01"), Request::Bad);
        assert_eq!(parse_request(b"GET / HTTP/1.1 extra\r\n\r\n"), Request::Bad);
    }
}
