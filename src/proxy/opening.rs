//! The opening of a miner's session: the front door (HTTP answered, a
//! `CONNECT` for the configured pool let through), the miner's lines up to its
//! first valid request, and the pool connection dialled for it.
//!
//! Invariant: no pool connection is opened for a miner that has not sent a
//! valid Stratum request (or a `CONNECT` naming the pool), so garbage from
//! the LAN never reaches the pool or gets the gateway's address banned.

use std::io;
use std::time::{Duration, Instant};

use crate::rt::Timer;
use smol::future::FutureExt;

use super::{Attached, End, Failure, Proxy, Socket, frame_failure};
use crate::config::HostPort;
use crate::frame::{Got, Reader, Writer};
use crate::http::{self, Front};
use crate::pools::Loss;
use crate::session::{Outbox, Session};
use crate::stats::Peer;
use crate::upstream::Upstream;

/// Connects to the pool within `timeout`.
pub(super) async fn connect(address: &HostPort, timeout: Duration) -> io::Result<Socket> {
    let attempt = crate::rt::connect_host(address.host(), address.port());
    crate::net::within(timeout, attempt, || io::ErrorKind::TimedOut.into()).await
}

/// Whether `bytes` begin a TLS handshake record (a ClientHello): content
/// type 22, protocol version 3.x (SSL 3.0 to TLS 1.3 all say 3.1 to 3.4).
fn is_tls_hello(bytes: &[u8]) -> bool {
    matches!(bytes, [0x16, 0x03, 0x00..=0x04, ..])
}

/// Writes a short canned answer, as much as the socket takes now.
pub(super) fn answer(socket: &Socket, bytes: &[u8]) {
    let _ = Writer::default().send(socket, bytes);
}

impl Proxy {
    /// Reads until the first line; answers HTTP; returns the Stratum lines
    /// already read (each ending in `\n`), or how the connection ended.
    pub(super) async fn front_door(
        &self,
        miner: &Socket,
        reader: &mut Reader,
        deadline: Instant,
    ) -> Result<Result<(Vec<u8>, Option<usize>), End>, Failure> {
        let mut early = Vec::new();
        loop {
            if let Err(end) = self.read_more(miner, reader, &mut early, deadline).await? {
                return Ok(Err(end));
            }
            // bfgminer and other firmware try TLS first, then plain Stratum:
            // closed at once, they fall back without waiting for a timeout.
            if is_tls_hello(if early.is_empty() { reader.unfinished() } else { &early }) {
                self.stats.tls_probes.inc();
                return Ok(Err(End::TlsProbe));
            }
            if early.is_empty() {
                continue;
            }
            let first_end = early.iter().position(|&b| b == b'\n').unwrap_or(early.len());
            match http::classify(&early[..first_end]) {
                Front::Stratum => return Ok(Ok((early, None))),
                Front::Http => {
                    self.stats.traffic(Peer::Miner).messages_received.inc();
                    answer(miner, http::BAD_REQUEST);
                    return Ok(Err(End::HttpAnswered));
                }
                Front::Connect(target) => {
                    let Some(index) = self.pools.by_address(target) else {
                        self.stats.http_connect_refused.inc();
                        log::warn!("refusing CONNECT to {target:?}: not a configured pool");
                        answer(miner, http::FORBIDDEN);
                        return Ok(Err(End::HttpAnswered));
                    };
                    // The request ends at the first empty line; Stratum follows.
                    let blank = early
                        .windows(2)
                        .position(|w| w == b"\n\n" || w == b"\n\r")
                        .map(|at| at + 1)
                        .and_then(|at| early[at..].iter().position(|&b| b == b'\n').map(|nl| at + nl + 1));
                    if let Some(stratum_start) = blank {
                        early.drain(..stratum_start);
                        return Ok(Ok((early, Some(index))));
                    }
                    if early.len() > 8 * 1024 {
                        answer(miner, http::BAD_REQUEST);
                        return Ok(Err(End::HttpAnswered));
                    }
                }
            }
        }
    }

    /// Feeds the miner's lines to its session until one is a request that
    /// goes upstream; answers bad lines meanwhile. Returns what to send the
    /// pool first, or how the connection ended.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn first_request(
        &self,
        miner: &Socket,
        reader: &mut Reader,
        miner_w: &mut Writer,
        session: &mut Session,
        up: &mut Upstream,
        mut lines: Vec<u8>,
        deadline: Instant,
    ) -> Result<Result<Vec<u8>, End>, Failure> {
        let mut out = Outbox::default();
        loop {
            let now = Instant::now();
            for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                session.on_miner_line(line, up, now, &mut out).map_err(Failure::Session)?;
            }
            lines.clear();
            if !out.to_miner.is_empty() {
                self.stats.miner.sent(&out.to_miner);
                miner_w.send(miner, &out.to_miner).map_err(|e| Failure::Io(Peer::Miner, e))?;
                out.to_miner.clear();
            }
            if !out.to_pool.is_empty() {
                return Ok(Ok(out.to_pool));
            }
            // Refusals are bounded by the bad-line limit, so this stays small.
            if let Err(end) = self.read_more(miner, reader, &mut lines, deadline).await? {
                return Ok(Err(end));
            }
            if miner_w.pending() > 0 {
                miner_w.flush(miner).map_err(|e| Failure::Io(Peer::Miner, e))?;
            }
        }
    }

    /// Waits until the miner sends something or `deadline` passes, then
    /// appends the complete lines it sent to `lines`, each ending in `\n`.
    async fn read_more(
        &self,
        miner: &Socket,
        reader: &mut Reader,
        lines: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<Result<(), End>, Failure> {
        async {
            miner.readable().await;
        }
        .or(async {
            Timer::at(deadline).await;
        })
        .await;
        if Instant::now() >= deadline {
            return Ok(Err(End::HandshakeTimeout));
        }
        let got = {
            let mut bufs = self.buffers.borrow_mut();
            reader.read_lines(miner, &mut bufs.read, |line| {
                lines.extend_from_slice(line);
                lines.push(b'\n');
                Ok(())
            })
        };
        match got.map_err(frame_failure(Peer::Miner))? {
            Got::Eof => Ok(Err(End::MinerClosed)),
            Got::Data(n) => {
                self.stats.miner.bytes_received.add(n as u64);
                Ok(Ok(()))
            }
            Got::WouldBlock => Ok(Ok(())),
        }
    }

    /// Connects a new session to pool `index` (`None`: every pool is down);
    /// a `CONNECT` gets its HTTP answer. A pool that fails to connect is
    /// noted.
    pub(super) async fn open_pool(
        &self,
        miner: &Socket,
        index: Option<usize>,
        via_connect: bool,
    ) -> Result<Attached<'_>, Failure> {
        let result = match index {
            Some(index) => self.dial(index).await.map_err(|(loss, e)| (index, loss, e)),
            None => {
                Err((0, Loss::Refused, io::Error::new(io::ErrorKind::NotConnected, "every pool is down")))
            }
        };
        match result {
            Ok(pool) => {
                if via_connect {
                    self.stats.http_connect_allowed.inc();
                    answer(miner, http::CONNECT_OK);
                }
                if self.stats.upstream_lost.get() > 0 {
                    self.stats.upstream_lost.set(self.stats.upstream_lost.get() - 1);
                    self.pools.get(pool.index).reconnects.inc();
                }
                Ok(pool)
            }
            Err((i, loss, e)) => {
                if index.is_some() {
                    self.pools.failed(i, loss, Instant::now(), None);
                }
                if via_connect {
                    answer(miner, http::BAD_GATEWAY);
                }
                Err(Failure::PoolUnreachable(self.pools.get(i).target.address.to_string(), e))
            }
        }
    }

    /// Connects to pool `index` and counts the connection.
    pub(super) async fn dial(&self, index: usize) -> Result<Attached<'_>, (Loss, io::Error)> {
        let cfg = &self.config;
        let entry = self.pools.get(index);
        let socket = match connect(&entry.target.address, cfg.pool.connect_timeout.0).await {
            Ok(socket) => socket,
            Err(e) => {
                let loss = if e.kind() == io::ErrorKind::ConnectionRefused {
                    Loss::Refused
                } else {
                    Loss::Unreachable
                };
                log::debug!("pool {} ({}): {e}", entry.target.name, entry.target.address);
                return Err((loss, e));
            }
        };
        let _ = socket.get_ref().set_nodelay(true);
        self.stats.upstream_connected.inc();
        entry.connected.inc();
        let at =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.stats.record(crate::store::Event::PoolConnected { pool: index as u8, at });
        Ok(Attached { socket, index, proxy: self })
    }
}
