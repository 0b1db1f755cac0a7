//! Probes of a pool that is down: one task per pool, idle while its pool is
//! usable. When the pool is down, it connects after the pool's backoff,
//! subscribes and authorizes like a miner would, and waits for work; once
//! work comes, it keeps that connection and watches it for
//! `pool.switch_back_after` before the pool counts as up again (sessions
//! then move back to it).
//!
//! Invariant: a probe sends nothing but its handshake and never a share, and
//! holds at most one connection to its pool; a failed probe is logged at
//! debug level only (the pool's change of state is logged by
//! [`crate::pools`]).

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::rt::Timer;
use smol::future::FutureExt;

use super::{Proxy, Socket};
use crate::frame::{self, Got, Reader, Writer};
use crate::pools::{Health, Loss};
use crate::stratum::{self, Envelope};

/// What a probe connection showed.
enum Seen {
    /// The pool sent work.
    Work,
    /// The pool answered the subscribe (no login to authorize with, so no
    /// work can be asked for).
    Subscribed,
    /// Nothing yet.
    Nothing,
}

impl Proxy {
    /// Watches pool `index` for as long as the proxy runs.
    pub(super) async fn watch(self: Rc<Self>, index: usize) {
        loop {
            let entry = self.pools.get(index);
            let changed = self.pools.changed();
            let now = Instant::now();
            let wait_until = match entry.health() {
                Health::Down if now >= entry.retry_at() => None,
                Health::Down => Some(entry.retry_at()),
                // Not down: nothing to do until something changes.
                _ => Some(now + Duration::from_secs(24 * 3600)),
            };
            if let Some(at) = wait_until {
                async {
                    let _ = changed.recv().await;
                }
                .or(async {
                    Timer::at(at).await;
                })
                .await;
                continue;
            }
            match self.probe(index).await {
                Ok(()) => {}
                Err(e) => {
                    log::debug!("probe of pool {}: {e}", entry.target.name);
                    if entry.health() == Health::Down {
                        self.pools.probe_failed(index, Instant::now());
                    } else {
                        self.pools.failed(index, Loss::Closed, Instant::now(), None);
                    }
                }
            }
        }
    }

    /// One probe: connect, handshake, wait for work, then watch the
    /// connection through the window. `Ok` when the pool came up, or when
    /// something else settled its state meanwhile.
    async fn probe(&self, index: usize) -> io::Result<()> {
        let entry = self.pools.get(index);
        let timeout = self.config.pool.connect_timeout.0 + self.config.pool.answer_timeout.0;
        let socket =
            super::opening::connect(&entry.target.address, self.config.pool.connect_timeout.0).await?;
        let mut hello = Vec::with_capacity(256);
        hello.extend_from_slice(
            b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"loka-stratum-probe\"]}\n",
        );
        let login = self.pools.probe_login(index);
        if let Some((name, password)) = &login {
            hello.extend_from_slice(b"{\"id\":2,\"method\":\"mining.authorize\",\"params\":[");
            stratum::push_str(&mut hello, name);
            hello.push(b',');
            stratum::push_str(&mut hello, password);
            hello.extend_from_slice(b"]}\n");
        }
        let mut writer = Writer::default();
        writer.send(&socket, &hello)?;
        let mut reader = Reader::new(self.config.pool.max_line_bytes);
        let mut buf = frame::read_buffer(self.config.pool.max_line_bytes);
        let deadline = Instant::now() + timeout;
        // Up to the first job (or the subscribe answer, without a login).
        loop {
            let seen = self.probe_read(&socket, &mut reader, &mut writer, &mut buf, deadline).await?;
            match seen {
                Seen::Work => break,
                Seen::Subscribed if login.is_none() => break,
                Seen::Subscribed | Seen::Nothing => {}
            }
        }
        let since = Instant::now();
        self.pools.recovering(index, since);
        let window = self.pools.failover.switch_back_after;
        let notify_timeout = self.pools.failover.notify_timeout;
        let mut work_at = since;
        loop {
            if entry.health() != Health::Recovering {
                return Ok(());
            }
            let now = Instant::now();
            if now >= since + window {
                self.pools.recovered(index, now);
                return Ok(());
            }
            let deadline = (since + window).min(work_at + notify_timeout);
            match self.probe_read(&socket, &mut reader, &mut writer, &mut buf, deadline).await {
                Ok(Seen::Work) => work_at = Instant::now(),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut && Instant::now() >= since + window => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    self.pools.failed(index, Loss::NoWork, Instant::now(), None);
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads what the pool sent by `deadline`: whether it was work.
    async fn probe_read(
        &self,
        socket: &Socket,
        reader: &mut Reader,
        writer: &mut Writer,
        buf: &mut [u8],
        deadline: Instant,
    ) -> io::Result<Seen> {
        let changed = self.pools.changed();
        async {
            socket.readable().await;
        }
        .or(async {
            let _ = changed.recv().await;
        })
        .or(async {
            Timer::at(deadline).await;
        })
        .await;
        if Instant::now() >= deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let mut seen = Seen::Nothing;
        let mut pong = Vec::new();
        let got = reader.read_lines(socket, buf, |line| {
            let Ok(env) = Envelope::parse(line) else {
                return Err(());
            };
            match env.method() {
                Some("mining.notify") => seen = Seen::Work,
                Some("mining.ping") if env.has_id() => {
                    stratum::write_result(&mut pong, env.id(), b"\"pong\"");
                }
                None if env.id() == Some(b"1")
                    && stratum::error_code(env.error()).is_none()
                    && !matches!(seen, Seen::Work) =>
                {
                    seen = Seen::Subscribed;
                }
                _ => {}
            }
            Ok(())
        });
        match got {
            Ok(Got::Eof) => Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(Got::Data(_) | Got::WouldBlock) => {
                if !pong.is_empty() {
                    writer.send(socket, &pong)?;
                }
                Ok(seen)
            }
            Err(frame::FrameError::Io(e)) => Err(e),
            Err(_) => {
                Err(io::Error::new(io::ErrorKind::InvalidData, "the pool sent a line that is not JSON"))
            }
        }
    }
}
