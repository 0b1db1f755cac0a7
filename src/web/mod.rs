//! The HTTP endpoint on `[metrics] bind_address`, served from the same
//! executor as the proxy: `/metrics` (and the original's
//! `/metrics/prometheus`), `/health`, the status page at `/` ([`page`]) and
//! the JSON at `/api/status` and `/api/workers` ([`api`]). The renderers
//! write into buffers and know nothing of sockets.
//!
//! Deliberately tiny: GET and HEAD only, one request per connection, at most
//! [`MAX_REQUEST_BYTES`] read within [`REQUEST_TIMEOUT`], at most
//! [`MAX_CLIENTS`] at once. Anything malformed gets `400` and costs only its
//! own connection.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use smol::LocalExecutor;
use smol::io::{AsyncReadExt, AsyncWriteExt};

use crate::alerts::outbox::Outbox;
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

pub mod api;
pub mod page;

/// A pool as the page and `/api/status` show it (serialized as is).
#[derive(serde::Serialize)]
pub struct PoolRow<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its address, `host:port`.
    pub address: String,
    /// `unknown`, `up`, `failing`, `down` or `recovering`.
    pub state: &'a str,
    /// Whether new sessions go there.
    pub active: bool,
    /// Upstream connections open to it.
    pub connected: u64,
}

/// What the endpoint serves from.
pub struct Endpoint {
    stats: Rc<Stats>,
    process: Process,
    pools: Rc<Pools>,
    outbox: Rc<Outbox>,
    /// The gateway's name (`[alerts] name`).
    name: String,
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
    /// An endpoint reporting `stats`, the state of `pools` and the alerts
    /// of `outbox`, for the gateway called `name`.
    pub fn new(
        stats: Rc<Stats>,
        process: Process,
        pools: Rc<Pools>,
        outbox: Rc<Outbox>,
        name: String,
    ) -> Self {
        Endpoint {
            stats,
            process,
            pools,
            outbox,
            name,
            clients: Cell::new(0),
            probe: RefCell::new(None),
            page: RefCell::new(String::new()),
        }
    }

    /// Serves HTTP clients until the listener fails.
    pub async fn serve(self: Rc<Self>, listener: crate::rt::TcpListener, ex: Rc<LocalExecutor<'static>>) {
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
                let served = crate::net::within(REQUEST_TIMEOUT, me.clone().answer(stream), || {
                    io::ErrorKind::TimedOut.into()
                });
                if let Err(e) = served.await {
                    log::debug!("metrics client {peer}: {e}");
                }
                me.clients.set(me.clients.get() - 1);
            })
            .detach();
        }
    }

    async fn answer(self: Rc<Self>, mut stream: crate::rt::TcpStream) -> io::Result<()> {
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
        const TEXT: &str = "text/plain; charset=utf-8";
        let (status, content_type, body, head_only) = match request {
            Request::Bad => ("400 Bad Request", TEXT, "bad request\n".to_string(), false),
            Request::NotAllowed => ("405 Method Not Allowed", TEXT, "only GET and HEAD\n".to_string(), false),
            Request::Get { path, head } => {
                let path = path.split('?').next().unwrap_or(path);
                match path {
                    "/metrics" | "/metrics/prometheus" => {
                        ("200 OK", "text/plain; version=0.0.4; charset=utf-8", self.render_metrics(), head)
                    }
                    "/health" => {
                        let (status, body) = self.health().await;
                        (status, TEXT, body, head)
                    }
                    "/" => ("200 OK", "text/html; charset=utf-8", self.render_page(), head),
                    "/api/status" => ("200 OK", "application/json", self.render_status(), head),
                    "/api/workers" => ("200 OK", "application/json", self.render_workers(), head),
                    _ => ("404 Not Found", TEXT, "not found\n".to_string(), head),
                }
            }
        };
        // No script may run on any answer, whatever a login contains.
        let header = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; img-src data:\r\n\
             X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
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

    /// Renders the metrics, reusing one buffer's capacity between scrapes.
    fn render_metrics(&self) -> String {
        let mut page = self.page.borrow_mut();
        page.clear();
        metrics::render(&mut page, &self.stats, &self.pools, &self.process, Instant::now());
        metrics::render_alerts(&mut page, &self.outbox);
        page.clone()
    }

    /// The pools as the page and the JSON show them, in priority order.
    fn pool_rows(&self) -> Vec<PoolRow<'_>> {
        let active = self.pools.active();
        let entries = self.pools.entries().iter().enumerate();
        entries
            .map(|(i, e)| PoolRow {
                name: e.target.name.as_str(),
                address: e.target.address.to_string(),
                state: e.health().label(),
                active: active == Some(i),
                connected: e.connected.get().max(0) as u64,
            })
            .collect()
    }

    fn uptime(&self) -> u64 {
        (crate::clock::unix_f64() - self.process.start_time).max(0.0) as u64
    }

    /// The status page.
    fn render_page(&self) -> String {
        let now = crate::clock::unix_secs();
        let views = self.stats.workers.view(Instant::now(), now);
        let workers = views
            .into_iter()
            .map(|v| {
                let points =
                    self.stats.workers.sparkline(&v.login, now, crate::history::BUCKETS / page::SPARK_POINTS);
                (v, points.unwrap_or_default())
            })
            .collect();
        let pools = self.pool_rows();
        let last_block = self
            .stats
            .last_block
            .borrow()
            .as_ref()
            .map(|(w, h, at)| (w.to_string(), h.to_string(), *at as u64));
        let p = page::Page {
            name: &self.name,
            uptime: self.uptime(),
            connections: self.stats.connections_active.get(),
            pools,
            workers,
            last_block,
            now,
        };
        let mut out = String::new();
        page::render(&mut out, &p);
        out
    }

    /// `/api/status`.
    fn render_status(&self) -> String {
        let views = self.stats.workers.view(Instant::now(), crate::clock::unix_secs());
        let count = |s: crate::history::State| views.iter().filter(|v| v.state == s).count();
        let pools = self.pool_rows();
        let last = self.stats.last_block.borrow();
        let s = &self.stats;
        let status = api::StatusJson {
            name: &self.name,
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: self.uptime(),
            // Not `sum()`: an empty float sum is -0.0.
            hashrate: views.iter().fold(0.0, |a, v| a + v.hashrate_10m),
            connections: s.connections_active.get(),
            workers: api::StateCounts {
                total: views.len(),
                hashing: count(crate::history::State::Hashing),
                late: count(crate::history::State::Late),
                down: count(crate::history::State::Down),
            },
            accepted: s.shares_accepted.get(),
            rejected: s.shares_rejected.get(),
            stale: s.shares_stale.get(),
            blocks_found: s.blocks_found.get(),
            last_block: last.as_ref().map(|(w, h, at)| api::BlockJson { worker: w, hash: h, at: *at as u64 }),
            pools: &pools,
        };
        let mut out = String::new();
        api::status(&mut out, &status);
        out
    }

    /// `/api/workers`.
    fn render_workers(&self) -> String {
        let views = self.stats.workers.view(Instant::now(), crate::clock::unix_secs());
        let mut out = String::new();
        api::workers(&mut out, &views);
        out
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
        crate::rt::connect_host(pool.host(), pool.port()).await.map(drop).map_err(|e| e.to_string())
    };
    crate::net::within(PROBE_TIMEOUT, connect, || "timed out".to_string()).await
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
