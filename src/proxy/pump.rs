//! The per-miner loop: waits for readiness, then reads, handles and writes
//! without an `.await` in between, so every session shares one read buffer
//! and one outbox.
//!
//! Invariants: the shared outbox is cleared before a session uses it, so no
//! session ever sends what another left behind; a readiness wait is kept
//! across turns until it fires or is no longer wanted.

use std::future::Future;
use std::net::TcpStream;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use async_io::{ReadableOwned, WritableOwned};
use smol::Timer;
use smol::future;

use super::{Buffers, DRAIN_TIMEOUT, End, Failure, MAX_QUEUED_BYTES, Proxy, Socket, frame_failure};
use crate::frame::{Got, Reader, Writer};
use crate::session::{Flow, Outbox, Session};
use crate::stats::Peer;
use crate::upstream::Upstream;

impl Proxy {
    /// Moves lines both ways until the session ends.
    pub(super) async fn pump(
        &self,
        link: &mut Link<'_>,
        session: &mut Session,
        early: &[u8],
        handshake_deadline: Instant,
    ) -> Result<End, Failure> {
        let mut closing: Option<End> = None;
        let mut drain_deadline: Option<Instant> = None;
        {
            let now = Instant::now();
            let mut bufs = self.buffers.borrow_mut();
            // The outbox is shared: never send what a failed session left in it.
            bufs.out.to_miner.clear();
            bufs.out.to_pool.clear();
            for line in early.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                session.on_miner_line(line, &mut link.up, now, &mut bufs.out).map_err(Failure::Session)?;
            }
            self.flush(link, &mut bufs.out)?;
        }
        // One timer and one stop listener for the whole session: re-creating
        // them on every wake-up costs the reactor several system calls.
        let mut timer = Timer::at(handshake_deadline);
        let mut armed = handshake_deadline;
        let mut stop = std::pin::pin!(self.stopping.recv());
        let mut waits = Waits::default();
        loop {
            let now = Instant::now();
            while let Some(p) = link.up.overdue(now) {
                session.given_up(p);
            }
            if self.stopping.is_closed() && drain_deadline.is_none() {
                drain_deadline = Some(now + DRAIN_TIMEOUT);
                closing.get_or_insert(End::Shutdown);
            }
            if let Some(end) = closing {
                // No answer comes from a pool that closed its side.
                let answered = !link.up.has_pending_shares() || link.pool_gone;
                if answered && (link.miner_w.pending() == 0 || link.miner_gone) {
                    return Ok(end);
                }
                let deadline = *drain_deadline.get_or_insert(now + DRAIN_TIMEOUT);
                if now >= deadline {
                    return Ok(end);
                }
            }
            let deadline = match (drain_deadline, session.handshake_done()) {
                (Some(d), _) => d,
                (None, false) => handshake_deadline,
                (None, true) => session.last_line() + self.config.server.idle_timeout.0,
            };
            if now >= deadline {
                return Ok(if session.handshake_done() { End::IdleTimeout } else { End::HandshakeTimeout });
            }
            let read_miner = closing.is_none() && link.pool_w.pending() < MAX_QUEUED_BYTES;
            let read_pool = !link.pool_gone && (link.miner_w.pending() < MAX_QUEUED_BYTES || link.miner_gone);
            let write_miner = link.miner_w.pending() > 0 && !link.miner_gone;
            let write_pool = link.pool_w.pending() > 0 && !link.pool_gone;
            let watch_stop = drain_deadline.is_none();
            // The idle deadline moves with every line; the timer is re-armed
            // only when it would fire too late, or has fired early.
            if deadline < armed || now >= armed {
                timer.set_at(deadline);
                armed = deadline;
            }
            keep(&mut waits.miner_read, read_miner, || link.miner.clone().readable_owned());
            keep(&mut waits.pool_read, read_pool, || link.pool.clone().readable_owned());
            keep(&mut waits.miner_write, write_miner, || link.miner.clone().writable_owned());
            keep(&mut waits.pool_write, write_pool, || link.pool.clone().writable_owned());
            let fired = future::poll_fn(|cx| {
                let mut fired = poll_slot(&mut waits.miner_read, cx, MINER_READ)
                    | poll_slot(&mut waits.pool_read, cx, POOL_READ)
                    | poll_slot(&mut waits.miner_write, cx, WRITE)
                    | poll_slot(&mut waits.pool_write, cx, WRITE);
                if Pin::new(&mut timer).poll(cx).is_ready() {
                    fired |= WOKEN;
                }
                if watch_stop && stop.as_mut().poll(cx).is_ready() {
                    fired |= WOKEN;
                }
                if fired == 0 { Poll::Pending } else { Poll::Ready(fired) }
            })
            .await;
            let (read_miner, read_pool) = (fired & MINER_READ != 0, fired & POOL_READ != 0);
            let now = Instant::now();
            let mut bufs = self.buffers.borrow_mut();
            let Buffers { read, out } = &mut *bufs;
            out.to_miner.clear();
            out.to_pool.clear();
            if read_miner {
                let got = link.miner_r.read_lines(link.miner.get_ref(), read, |line| {
                    session.on_miner_line(line, &mut link.up, now, out)
                });
                match got.map_err(frame_failure(Peer::Miner))? {
                    Got::Eof => {
                        link.miner_gone = true;
                        closing = Some(End::MinerClosed);
                    }
                    Got::Data(n) => self.stats.miner.bytes_received.add(n as u64),
                    Got::WouldBlock => {}
                }
            }
            if read_pool {
                // A reconnect does not stop the read: answers after it in the
                // same read still go to the miner and into the books.
                let mut reconnect = false;
                let got = link.pool_r.read_lines(link.pool.get_ref(), read, |line| {
                    reconnect |= session.on_pool_line(line, &mut link.up, now, out)? == Flow::Reconnect;
                    Ok(())
                });
                if reconnect && closing.is_none() {
                    closing = Some(End::Reconnect);
                }
                match got.map_err(frame_failure(Peer::Pool))? {
                    // What the miner has not taken yet still goes out before
                    // the session closes (within the drain time).
                    Got::Eof => {
                        link.pool_gone = true;
                        closing = Some(End::PoolClosed);
                    }
                    Got::Data(n) => self.stats.pool.bytes_received.add(n as u64),
                    Got::WouldBlock => {}
                }
            }
            self.flush(link, out)?;
        }
    }

    /// Sends what the session queued, then whatever is pending.
    fn flush(&self, link: &mut Link<'_>, out: &mut Outbox) -> Result<(), Failure> {
        for (bytes, peer) in [(&mut out.to_pool, Peer::Pool), (&mut out.to_miner, Peer::Miner)] {
            if bytes.is_empty() {
                continue;
            }
            let traffic = self.stats.traffic(peer);
            traffic.messages_sent.add(bytes.iter().filter(|&&b| b == b'\n').count() as u64);
            traffic.bytes_sent.add(bytes.len() as u64);
            let sent = match peer {
                Peer::Pool if link.pool_gone => Ok(0),
                Peer::Pool => link.pool_w.send(link.pool.get_ref(), bytes),
                Peer::Miner if link.miner_gone => Ok(0),
                Peer::Miner => link.miner_w.send(link.miner.get_ref(), bytes),
            };
            bytes.clear();
            sent.map_err(|e| Failure::Io(peer, e))?;
        }
        if link.pool_w.pending() > 0 && !link.pool_gone {
            link.pool_w.flush(link.pool.get_ref()).map_err(|e| Failure::Io(Peer::Pool, e))?;
        }
        if link.miner_w.pending() > 0 && !link.miner_gone {
            link.miner_w.flush(link.miner.get_ref()).map_err(|e| Failure::Io(Peer::Miner, e))?;
        }
        Ok(())
    }
}

/// Readiness waits kept across turns of the loop: dropping a pending wait and
/// making a new one costs the reactor an `epoll_ctl` each time.
#[derive(Default)]
struct Waits {
    miner_read: Option<ReadableOwned<TcpStream>>,
    pool_read: Option<ReadableOwned<TcpStream>>,
    miner_write: Option<WritableOwned<TcpStream>>,
    pool_write: Option<WritableOwned<TcpStream>>,
}

/// What woke the loop: bits of [`Waits`] and the rest.
const MINER_READ: u8 = 1;
const POOL_READ: u8 = 2;
const WRITE: u8 = 4;
const WOKEN: u8 = 8;

/// Keeps a wait while it is wanted, drops it when not.
fn keep<F>(slot: &mut Option<F>, wanted: bool, make: impl FnOnce() -> F) {
    if !wanted {
        *slot = None;
    } else if slot.is_none() {
        *slot = Some(make());
    }
}

/// Polls a kept wait; `bit` when it completed (and is cleared), else 0.
fn poll_slot<F: Future + Unpin>(slot: &mut Option<F>, cx: &mut Context<'_>, bit: u8) -> u8 {
    let done = slot.as_mut().is_some_and(|wait| Pin::new(wait).poll(cx).is_ready());
    if done {
        *slot = None;
        bit
    } else {
        0
    }
}

/// One miner, its pool connection and what is in flight between them.
pub(super) struct Link<'a> {
    pub(super) miner: &'a Socket,
    pub(super) pool: &'a Socket,
    pub(super) miner_r: Reader,
    pub(super) pool_r: Reader,
    pub(super) miner_w: Writer,
    pub(super) pool_w: Writer,
    pub(super) up: Upstream,
    pub(super) miner_gone: bool,
    pub(super) pool_gone: bool,
}
