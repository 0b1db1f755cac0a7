//! The per-miner loop: waits for readiness, then reads, handles and writes
//! without an `.await` in between, so every session shares one read buffer
//! and one outbox.
//!
//! Invariants: the shared outbox is cleared before a session uses it, so no
//! session ever sends what another left behind; a socket is read again
//! without waiting until a read comes back short or would block (its
//! readiness stays set until then, see [`crate::rt`]).
//!
//! Backpressure, queue by queue: the miner is read only while the bytes for
//! the pool, the bytes for the miner (its own requests may be answered
//! locally) and the requests in flight are all under their pause marks; the
//! pool is read only while the bytes for the miner are. So each queue holds
//! at most its mark plus what one read produces ([`MAX_QUEUED_BYTES`] plus a
//! 16 KiB read, grown by at most the login rewrite), and a peer that takes
//! nothing for `server.write_timeout` ends its session.

use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::rt::{Direction, Timer};
use smol::future;
use smol::stream::Stream;

use super::{Attached, Buffers, DRAIN_TIMEOUT, End, Failure, MAX_QUEUED_BYTES, Proxy, Socket, frame_failure};
use crate::frame::{Got, Reader, Writer};
use crate::pools::Choice;
use crate::session::{Flow, Outbox, Session, SessionError};
use crate::stats::Peer;
use crate::upstream::{PAUSE_PENDING, Upstream};

impl Proxy {
    /// Moves lines both ways until the session ends. `first` (the lines
    /// the pool gets first) is freed once queued, not kept for the life of
    /// the connection.
    pub(super) async fn pump(
        &self,
        link: &mut Link<'_>,
        session: &mut Session,
        first: Vec<u8>,
        handshake_deadline: Instant,
        seed: u64,
    ) -> Result<End, Failure> {
        let mut closing: Option<End> = None;
        let mut drain_deadline: Option<Instant> = None;
        {
            let mut bufs = self.buffers.borrow_mut();
            // The outbox is shared: never send what a failed session left in it.
            bufs.out.to_miner.clear();
            bufs.out.to_pool.clear();
            bufs.out.to_pool.extend_from_slice(&first);
            drop(first);
            self.flush(link, &mut bufs.out, Instant::now())?;
        }
        // One timer and one stop listener for the whole session, kept
        // across wake-ups (a timer is moved only when it must fire earlier).
        let mut timer = Timer::at(handshake_deadline);
        let mut armed = handshake_deadline;
        let mut stop = std::pin::pin!(self.stopping.recv());
        let mut changed = Box::pin(self.pools.changed());
        // Both only ever close. Once a listener has been polled (and holds
        // this task's waker), its channel's closed flag, one atomic load,
        // says whether it fired: polling an event listener takes a lock,
        // and this runs at every wake-up, twice per share.
        // (Again whenever the pump is polled with another waker.)
        let (mut stop_listening, mut change_listening) = (false, false);
        let mut listening_waker: Option<std::task::Waker> = None;
        // A pool of higher priority is up: move to it at this time.
        let mut switch_at = None;
        let mut pools_changed = true;
        loop {
            let now = Instant::now();
            if pools_changed {
                pools_changed = false;
                if link.pool.is_none() && self.pools.pick() != Choice::Wait {
                    // A pool is back: sessions without one come back to it
                    // spread over a second, not all in the same instant.
                    // Not before the wait a pool's reconnect asked for.
                    let at = (now + crate::pools::spread(seed, OFFLINE_SPREAD))
                        .max(link.not_before.unwrap_or(now));
                    link.retry_at = Some(link.retry_at.map_or(at, |was| was.min(at)));
                }
                switch_at = match (&link.pool, self.move_target(session)) {
                    (Some(_), Some(target)) => Some(self.pools.switch_at(target, seed)),
                    _ => None,
                };
            }
            if link.pool.is_none() && link.retry_at.is_some_and(|at| now >= at) {
                return Ok(End::PoolsChanged);
            }
            // A move waits for every answer the miner waits for (a pending
            // authorize must not be answered with an error), and only a
            // session that can move does wake up for it.
            let switch_due =
                switch_at.filter(|_| closing.is_none() && session.keepable() && link.up.in_flight() == 0);
            if switch_due.is_some_and(|at| now >= at) {
                return Ok(End::SwitchBack);
            }
            // Each connection has an upstream of its own: its last job (or
            // the connect) starts the wait for the next.
            // Read where used, not kept across waits: this future lives
            // as long as the session.
            let (answer_timeout, write_timeout) =
                (self.config.pool.answer_timeout.0, self.config.server.write_timeout.0);
            let notify_timeout = self.pools.failover.notify_timeout;
            let work_deadline = (link.pool.is_some() && closing.is_none())
                .then(|| link.up.last_notify().unwrap_or(link.connected_at) + notify_timeout);
            if work_deadline.is_some_and(|at| now >= at) {
                return Err(Failure::NoWork(notify_timeout));
            }
            self.expire(link, session, now, answer_timeout)?;
            for (waiting, peer) in [(link.miner_waiting, Peer::Miner), (link.pool_waiting, Peer::Pool)] {
                if waiting.is_some_and(|since| now >= since + write_timeout) {
                    self.stats.write_stalls.inc();
                    return Err(Failure::Stalled(peer));
                }
            }
            if self.stopping.is_closed() && drain_deadline.is_none() {
                drain_deadline = Some(now + DRAIN_TIMEOUT);
                closing.get_or_insert(End::Shutdown);
            }
            if let Some(end) = closing {
                // No answer comes from a pool that closed its side.
                let answered = !link.up.has_pending_shares() || link.pool_gone;
                // A miner sent back to the gateway is answered until it
                // goes (real firmware does at once), so no share it sent
                // meanwhile goes unanswered.
                let left = end != End::Reconnect || link.miner_gone;
                if answered && left && (link.miner_w.pending() == 0 || link.miner_gone) {
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
            // Wake for whichever comes first: the session's own deadline, an
            // answer overdue, or a peer that stopped reading.
            let wake = [
                link.up.oldest_sent().map(|sent| sent + answer_timeout),
                link.miner_waiting.map(|since| since + write_timeout),
                link.pool_waiting.map(|since| since + write_timeout),
                work_deadline,
                link.pool.as_ref().and(switch_due),
                link.pool.is_none().then_some(link.retry_at).flatten(),
            ]
            .into_iter()
            .flatten()
            .fold(deadline, Instant::min);
            let read_miner = (closing.is_none() || closing == Some(End::Reconnect) && !link.miner_gone)
                && link.pool_w.pending() < MAX_QUEUED_BYTES
                && link.miner_w.pending() < MAX_QUEUED_BYTES
                && link.up.in_flight() < PAUSE_PENDING;
            let read_pool = !link.pool_gone && (link.miner_w.pending() < MAX_QUEUED_BYTES || link.miner_gone);
            let write_miner = link.miner_w.pending() > 0 && !link.miner_gone;
            let write_pool = link.pool_w.pending() > 0 && !link.pool_gone;
            let pool = link.pool.as_ref().map(|p| &p.socket);
            let watch_stop = drain_deadline.is_none();
            // The idle deadline moves with every line; the timer is re-armed
            // only when it would fire too late, or has fired early.
            if wake < armed || now >= armed {
                timer.set_at(wake);
                armed = wake;
            }
            let fired = future::poll_fn(|cx| {
                // Readiness is a flag on each socket (no system call): ready
                // until a read or write sees the socket drained or full.
                // Only a wanted direction is polled: a waiting task is woken
                // by nothing it would not act on.
                let mut fired = 0;
                if !listening_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    (stop_listening, change_listening) = (false, false);
                    listening_waker = Some(cx.waker().clone());
                }
                for (wanted, socket, dir, bit) in [
                    (read_miner, Some(link.miner), Direction::Read, MINER_READ),
                    (write_miner, Some(link.miner), Direction::Write, WRITE),
                    (read_pool, pool, Direction::Read, POOL_READ),
                    (write_pool, pool, Direction::Write, WRITE),
                ] {
                    let Some(socket) = socket.filter(|_| wanted) else { continue };
                    if socket.poll_ready(dir, cx).is_ready() {
                        fired |= bit;
                    }
                }
                if Pin::new(&mut timer).poll(cx).is_ready() {
                    fired |= WOKEN;
                }
                if watch_stop {
                    if self.stopping.is_closed() {
                        fired |= WOKEN;
                    } else if !stop_listening {
                        match stop.as_mut().poll(cx) {
                            Poll::Ready(_) => fired |= WOKEN,
                            Poll::Pending => stop_listening = true,
                        }
                    }
                }
                if changed.is_closed() {
                    fired |= CHANGED;
                } else if !change_listening {
                    match changed.as_mut().poll_next(cx) {
                        Poll::Ready(_) => fired |= CHANGED,
                        Poll::Pending => change_listening = true,
                    }
                }
                if fired == 0 { Poll::Pending } else { Poll::Ready(fired) }
            })
            .await;
            let (read_miner, read_pool) = (fired & MINER_READ != 0, fired & POOL_READ != 0);
            if fired & CHANGED != 0 {
                changed = Box::pin(self.pools.changed());
                change_listening = false;
                pools_changed = true;
            }
            let now = Instant::now();
            let mut bufs = self.buffers.borrow_mut();
            let Buffers { read, out } = &mut *bufs;
            out.to_miner.clear();
            out.to_pool.clear();
            if read_miner {
                let got = link
                    .miner_r
                    .read_lines(link.miner, read, |line| session.on_miner_line(line, &mut link.up, now, out));
                match got.map_err(frame_failure(Peer::Miner))? {
                    Got::Eof => {
                        link.miner_gone = true;
                        if closing != Some(End::Reconnect) {
                            closing = Some(End::MinerClosed);
                        }
                    }
                    Got::Data(n) => self.stats.miner.bytes_received.add(n as u64),
                    Got::WouldBlock => {}
                }
            }
            if let (true, Some(pool)) = (read_pool, &link.pool) {
                // A reconnect does not stop the read: answers after it in the
                // same read still go to the miner and into the books.
                let (mut reconnect, mut later) = (false, false);
                let got = link.pool_r.read_lines(&pool.socket, read, |line| {
                    match session.on_pool_line(line, &mut link.up, now, out)? {
                        Flow::Reconnect => reconnect = true,
                        Flow::ReconnectLater => later = true,
                        Flow::Continue => {}
                    }
                    Ok(())
                });
                if reconnect && closing.is_none() {
                    closing = Some(End::Reconnect);
                }
                if later && closing.is_none() {
                    closing = Some(End::ReconnectLater);
                }
                match got.map_err(frame_failure(Peer::Pool))? {
                    // What the miner has not taken yet still goes out before
                    // the session closes (within the drain time).
                    Got::Eof => {
                        link.pool_gone = true;
                        // A pool that asked for the reconnect and closed did
                        // not fail: it restarts or balances its load.
                        if !matches!(closing, Some(End::Reconnect | End::ReconnectLater)) {
                            closing = Some(End::PoolClosed);
                        }
                    }
                    Got::Data(n) => self.stats.pool.bytes_received.add(n as u64),
                    Got::WouldBlock => {}
                }
                if !link.working
                    && link.up.last_notify().is_some()
                    && let Some(pool) = &link.pool
                {
                    link.working = true;
                    self.pools.working(pool.index, now);
                }
            }
            self.flush(link, out, now)?;
        }
    }

    /// Gives up on requests unanswered for `timeout`. One the pool must
    /// answer means the pool stalled: every share in flight gets an error
    /// answer, and the session ends.
    fn expire(
        &self,
        link: &mut Link<'_>,
        session: &mut Session,
        now: Instant,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let mut stalled = None;
        while let Some(p) = link.up.overdue(now, timeout) {
            if p.request.must_be_answered() {
                stalled = Some(p);
                break;
            }
            session.given_up(p);
        }
        let Some(first) = stalled else {
            return Ok(());
        };
        let mut bufs = self.buffers.borrow_mut();
        let out = &mut bufs.out;
        out.to_miner.clear();
        out.to_pool.clear();
        for p in std::iter::once(first).chain(link.up.drain_pending()) {
            session.lost(p, out);
        }
        // As much as the miner takes now; the session ends either way.
        let _ = self.flush(link, out, now);
        Err(Failure::Session(SessionError::PoolStalled))
    }

    /// Sends what the session queued, then whatever is pending, and notes
    /// since when each peer has taken nothing of what waits for it.
    pub(super) fn flush(&self, link: &mut Link<'_>, out: &mut Outbox, now: Instant) -> Result<(), Failure> {
        let before = (link.miner_w.pending(), link.pool_w.pending());
        let mut took = (false, false);
        for (bytes, peer) in [(&mut out.to_pool, Peer::Pool), (&mut out.to_miner, Peer::Miner)] {
            if bytes.is_empty() {
                continue;
            }
            self.stats.traffic(peer).sent(bytes);
            let sent = match peer {
                Peer::Pool => match &link.pool {
                    Some(pool) if !link.pool_gone => link.pool_w.send(&pool.socket, bytes),
                    _ => Ok(0),
                },
                Peer::Miner if link.miner_gone => Ok(0),
                Peer::Miner => link.miner_w.send(link.miner, bytes),
            };
            bytes.clear();
            let sent = sent.map_err(|e| Failure::Io(peer, e))?;
            match peer {
                Peer::Pool => took.1 |= sent > 0 && before.1 > 0,
                Peer::Miner => took.0 |= sent > 0 && before.0 > 0,
            }
        }
        if let (true, false, Some(pool)) = (link.pool_w.pending() > 0, link.pool_gone, &link.pool) {
            took.1 |= link.pool_w.flush(&pool.socket).map_err(|e| Failure::Io(Peer::Pool, e))? > 0;
        }
        if link.miner_w.pending() > 0 && !link.miner_gone {
            took.0 |= link.miner_w.flush(link.miner).map_err(|e| Failure::Io(Peer::Miner, e))? > 0;
        }
        link.miner_waiting = waiting(link.miner_waiting, link.miner_w.pending(), took.0, now);
        link.pool_waiting = waiting(link.pool_waiting, link.pool_w.pending(), took.1, now);
        Ok(())
    }
}

/// What woke the loop: which socket is ready, and the rest.
const MINER_READ: u8 = 1;
const POOL_READ: u8 = 2;
const WRITE: u8 = 4;
const WOKEN: u8 = 8;
const CHANGED: u8 = 16;

/// Sessions without a pool come back to one that is back within this.
pub(super) const OFFLINE_SPREAD: Duration = Duration::from_secs(1);

/// Since when a peer has taken nothing of the bytes waiting for it: `None`
/// when nothing waits, restarted whenever it takes some.
fn waiting(since: Option<Instant>, pending: usize, took: bool, now: Instant) -> Option<Instant> {
    match since {
        _ if pending == 0 => None,
        Some(since) if !took => Some(since),
        _ => Some(now),
    }
}

/// One miner, its pool connection and what is in flight between them.
pub(super) struct Link<'a> {
    pub(super) miner: &'a Socket,
    /// The pool connection; `None` between two.
    pub(super) pool: Option<Attached<'a>>,
    pub(super) miner_r: Reader,
    pub(super) pool_r: Reader,
    pub(super) miner_w: Writer,
    pub(super) pool_w: Writer,
    pub(super) up: Upstream,
    pub(super) miner_gone: bool,
    pub(super) pool_gone: bool,
    /// Since when the miner has taken none of the bytes waiting for it.
    pub(super) miner_waiting: Option<Instant>,
    /// Since when the pool has taken none of the bytes waiting for it.
    pub(super) pool_waiting: Option<Instant>,
    /// When the pool connection was made (its work is due from then on).
    pub(super) connected_at: Instant,
    /// Whether the pool has sent work on this connection.
    pub(super) working: bool,
    /// Without a pool: when to try again, while some pool seems usable.
    pub(super) retry_at: Option<Instant>,
    /// Without a pool: no new pool connection before this (the wait a
    /// pool's `client.reconnect` asked for).
    pub(super) not_before: Option<Instant>,
}
