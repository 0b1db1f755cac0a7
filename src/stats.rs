//! Process-wide counters, kept in plain `Cell`s on the one executor thread.
//!
//! Counting is a load and a store: no atomics, no locks. Everything that
//! counts runs on the executor thread, which is why `Stats` is `!Sync`.

use std::cell::Cell;

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(Cell<u64>);

impl Counter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.set(self.0.get().wrapping_add(n));
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(Cell<i64>);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.set(self.0.get() + 1);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.0.set(self.0.get() - 1);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.get()
    }
}

/// Which side of the proxy a message crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A miner connected to the proxy.
    Miner,
    /// The pool the proxy connected to.
    Pool,
}

/// Message and byte counters for one direction and peer.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Lines received from this peer.
    pub messages_received: Counter,
    /// Lines sent to this peer.
    pub messages_sent: Counter,
    /// Bytes received from this peer.
    pub bytes_received: Counter,
    /// Bytes sent to this peer.
    pub bytes_sent: Counter,
}

/// Everything the proxy counts.
#[derive(Debug, Default)]
pub struct Stats {
    /// Miner connections open now.
    pub connections_active: Gauge,
    /// Miner connections accepted since start.
    pub connections_total: Counter,
    /// Connections that ended on an error (bad input, I/O error, pool failure).
    pub connection_errors: Counter,
    /// Connections closed by the handshake or idle timeout.
    pub connection_timeouts: Counter,
    /// Connections refused because a limit was reached.
    pub connections_refused: Counter,
    /// Traffic with miners.
    pub miner: Traffic,
    /// Traffic with pools.
    pub pool: Traffic,
    /// Lines that were not valid Stratum JSON or had wrong param types.
    pub parse_errors: Counter,
    /// `mining.authorize` requests forwarded.
    pub auth_attempts: Counter,
    /// `mining.authorize` requests the pool refused (or the proxy could not rewrite).
    pub auth_failures: Counter,
    /// `mining.notify` messages received from pools.
    pub jobs_received: Counter,
    /// `mining.submit` requests forwarded.
    pub shares_submitted: Counter,
    /// Shares the pool accepted.
    pub shares_accepted: Counter,
    /// Shares the pool rejected (not counting stale ones).
    pub shares_rejected: Counter,
    /// Shares for an unknown or expired job.
    pub shares_stale: Counter,
    /// Shares the pool called duplicates (also counted as rejected).
    pub shares_duplicate: Counter,
    /// Submits whose answer never came (pool closed, or answer lost).
    pub shares_unanswered: Counter,
    /// Upstream connections open now.
    pub upstream_connected: Gauge,
    /// Upstream connection attempts that failed.
    pub upstream_failures: Counter,
    /// `CONNECT` requests let through to the pool.
    pub http_connect_allowed: Counter,
    /// `CONNECT` requests refused.
    pub http_connect_refused: Counter,
}

impl Stats {
    /// The traffic counters of `peer`.
    pub fn traffic(&self, peer: Peer) -> &Traffic {
        match peer {
            Peer::Miner => &self.miner,
            Peer::Pool => &self.pool,
        }
    }
}
