//! Process-wide counters, kept in plain `Cell`s on the one executor thread.
//!
//! Counting is a load and a store: no atomics, no locks. Everything that
//! counts runs on the executor thread, which is why `Stats` is `!Sync`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use std::sync::Arc;

use crate::check::Verdict;
use crate::history::Ring;
use crate::store::Event;
use crate::store::queue::Recorder;
use crate::store::writer::WriterStats;
use crate::worker::{Login, display_login, shown};

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

impl Traffic {
    /// Counts `bytes` (whole lines) sent to this peer.
    pub fn sent(&self, bytes: &[u8]) {
        self.messages_sent.add(bytes.iter().filter(|&&b| b == b'\n').count() as u64);
        self.bytes_sent.add(bytes.len() as u64);
    }
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
    /// Connections refused: a limit was reached or `server.allow` left them out.
    pub connections_refused: Counter,
    /// Connections refused because their address is not in `server.allow`.
    pub connections_not_allowed: Counter,
    /// Failed accepts on the Stratum listener (out of descriptors and the like).
    pub miner_accept_errors: Counter,
    /// Failed accepts on the metrics listener.
    pub metrics_accept_errors: Counter,
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
    /// `mining.submit` requests that got a verdict coming: forwarded, or
    /// answered by the proxy with a share error (unusable login, `reject_invalid`).
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
    /// Shares the proxy checked itself, by verdict (index in [`Verdict::ALL`]).
    pub shares_checked: [Counter; 6],
    /// Shares the pool accepted that the proxy's check found invalid: not booked.
    pub shares_disputed: Counter,
    /// Shares whose hash met the network target of their job.
    pub blocks_found: Counter,
    /// The last block found: (worker, block hash, unix seconds).
    pub last_block: RefCell<Option<(Login, heapless::String<64>, f64)>>,
    /// `mining.notify` messages whose fields could not be parsed for the check.
    pub pool_bad_jobs: Counter,
    /// Requests the proxy answered itself instead of the pool (unusable
    /// login, too many logins or requests in flight, invalid lines).
    pub requests_refused: Counter,
    /// Pool answers whose id the proxy never sent (or already matched): dropped.
    pub answers_unmatched: Counter,
    /// `mining.set_difficulty` values that are not finite and positive: ignored.
    pub pool_bad_difficulty: Counter,
    /// Sessions closed because a peer took none of the bytes queued for it
    /// within `server.write_timeout`.
    pub write_stalls: Counter,
    /// Upstream connections open now.
    pub upstream_connected: Gauge,
    /// `CONNECT` requests let through to the pool.
    pub http_connect_allowed: Counter,
    /// `CONNECT` requests refused.
    pub http_connect_refused: Counter,
    /// Connections that opened with a TLS ClientHello (firmware trying TLS
    /// before plain Stratum).
    pub tls_probes: Counter,
    /// Sessions a pool ended whose miners have not come back yet (the next
    /// sessions count as reconnects of their pools).
    pub upstream_lost: Cell<u64>,
    /// Submit round trips: forwarded to the pool's answer.
    pub submit_duration: Histogram,
    /// Per-worker share books.
    pub workers: Workers,
    /// Where events for the books go, when the books are open.
    pub recorder: RefCell<Option<Recorder>>,
    /// Events the books could not take (the writer fell behind).
    pub store_dropped: Counter,
    /// The writer's own counters, when the books are open.
    pub store: std::cell::OnceCell<Arc<WriterStats>>,
}

impl Stats {
    /// Hands `event` to the books without blocking; counts it when it cannot.
    pub fn record(&self, event: Event) {
        if let Some(recorder) = self.recorder.borrow().as_ref()
            && !recorder.record(event)
        {
            self.store_dropped.inc();
        }
    }

    /// The traffic counters of `peer`.
    pub fn traffic(&self, peer: Peer) -> &Traffic {
        match peer {
            Peer::Miner => &self.miner,
            Peer::Pool => &self.pool,
        }
    }
}

/// Most workers given their own metrics series; the others share [`OVERFLOW_WORKER`].
pub const MAX_WORKER_SERIES: usize = 256;
/// A worker without an accepted share for this long gives its series up to
/// a new worker that needs one (see [`Workers`]).
pub const SERIES_IDLE: Duration = Duration::from_secs(86_400);
pub use crate::worker::OVERFLOW_WORKER;
/// Least time between two log lines about one worker's disputed shares.
pub const DISPUTE_LOG_INTERVAL: Duration = Duration::from_secs(3600);
/// Length of the sliding window for per-worker hashrate.
pub const HASHRATE_WINDOW: Duration = Duration::from_secs(600);
/// Buckets in the hashrate window.
const WINDOW_BUCKETS: usize = 10;

/// Why the pool rejected a share, as a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Code 22.
    Duplicate,
    /// Code 23.
    LowDifficulty,
    /// Code 24.
    Unauthorized,
    /// Code 25.
    NotSubscribed,
    /// Code 21 when not counted as stale, 20, or anything else.
    Other,
}

impl Reason {
    /// Every reason, in label order.
    pub const ALL: [Reason; 5] = [
        Reason::Duplicate,
        Reason::LowDifficulty,
        Reason::Unauthorized,
        Reason::NotSubscribed,
        Reason::Other,
    ];

    /// The reason for a Stratum error code.
    pub fn of(code: i64) -> Reason {
        match code {
            22 => Reason::Duplicate,
            23 => Reason::LowDifficulty,
            24 => Reason::Unauthorized,
            25 => Reason::NotSubscribed,
            _ => Reason::Other,
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Duplicate => "duplicate",
            Reason::LowDifficulty => "low-difficulty",
            Reason::Unauthorized => "unauthorized",
            Reason::NotSubscribed => "not-subscribed",
            Reason::Other => "other",
        }
    }
}

/// Share books of one worker.
#[derive(Debug, Default, Clone)]
pub struct WorkerStats {
    /// Shares accepted.
    pub accepted: u64,
    /// Shares rejected, by [`Reason`] (index in [`Reason::ALL`]).
    pub rejected: [u64; 5],
    /// Stale shares.
    pub stale: u64,
    /// Sum of the difficulty of accepted shares.
    pub difficulty_accepted: f64,
    /// Unix time of the last share the pool answered, in seconds.
    pub last_share: Option<f64>,
    /// When the last accepted share came.
    last_accepted: Option<Instant>,
    /// Unix second of the first accepted share known (this process's, or
    /// the start of the oldest bucket restored from the books).
    first_accepted: Option<u64>,
    /// Unix second of the last accepted share.
    last_accepted_unix: Option<u64>,
    /// Restored from the books already down (no share for its down time
    /// before the start): down until its next accepted share.
    down_at_start: bool,
    /// Accepted difficulty per window bucket, with the bucket's number.
    window: [(u64, f64); WINDOW_BUCKETS],
    /// Shares the proxy checked, by verdict (index in [`Verdict::ALL`]).
    pub checked: [u64; 6],
    /// Shares the pool accepted that the check found invalid.
    pub disputed: u64,
    /// Blocks found.
    pub blocks: u64,
    /// Highest difficulty a share of this worker achieved, ever (seeded from the books).
    pub best_ever: f64,
    /// Highest difficulty achieved on the books' day `.0`.
    pub best_day: (u32, f64),
    /// Difficulty of locally valid shares per window bucket, with the bucket's number.
    valid_window: [(u64, f64); WINDOW_BUCKETS],
    /// When a disputed share of this worker was last logged.
    dispute_logged: Option<Instant>,
}

/// One share as the proxy's own check judged it, for the per-worker counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Checked {
    /// The verdict.
    pub verdict: Verdict,
    /// The difficulty of the share's job (what a valid share is worth).
    pub difficulty: f64,
    /// The difficulty the share's hash achieved, when it could be hashed
    /// (duplicates excluded).
    pub achieved: Option<f64>,
    /// Whether it is a block.
    pub block: bool,
    /// The books' day it was found on.
    pub day: u32,
}

/// Bucket number of `now` in a hashrate window starting at `origin`.
fn bucket(now: Instant, origin: Instant) -> u64 {
    let bucket_len = HASHRATE_WINDOW.as_secs() / WINDOW_BUCKETS as u64;
    now.saturating_duration_since(origin).as_secs() / bucket_len
}

/// Adds `difficulty` to the current bucket of `window`.
fn add_to_window(window: &mut [(u64, f64); WINDOW_BUCKETS], difficulty: f64, now: Instant, origin: Instant) {
    let n = bucket(now, origin);
    let slot = &mut window[(n % WINDOW_BUCKETS as u64) as usize];
    if slot.0 != n {
        *slot = (n, 0.0);
    }
    slot.1 += difficulty;
}

/// Hashes per second over the last [`HASHRATE_WINDOW`] of `window`: each
/// difficulty-1 share stands for 2^32 hashes.
fn window_rate(window: &[(u64, f64); WINDOW_BUCKETS], now: Instant, origin: Instant) -> f64 {
    let current = bucket(now, origin);
    let sum: f64 = window
        .iter()
        .filter(|(n, _)| current.saturating_sub(*n) < WINDOW_BUCKETS as u64)
        .map(|(_, d)| d)
        // Not `sum()`: an empty float sum is -0.0, which prints as "-0".
        .fold(0.0, |a, b| a + b);
    // Before a whole window has passed, divide by the time there was.
    let span = now.saturating_duration_since(origin).min(HASHRATE_WINDOW).as_secs_f64().max(1.0);
    crate::check::target::hashes(sum) / span
}

impl WorkerStats {
    /// Hashes per second over the last [`HASHRATE_WINDOW`], from accepted
    /// difficulty.
    pub fn hashrate(&self, now: Instant, origin: Instant) -> f64 {
        window_rate(&self.window, now, origin)
    }

    /// Hashes per second over the last [`HASHRATE_WINDOW`], from the
    /// difficulty of the shares the proxy itself found valid: the true
    /// hashrate, right even while the pool is slow to answer.
    pub fn checked_hashrate(&self, now: Instant, origin: Instant) -> f64 {
        window_rate(&self.valid_window, now, origin)
    }

    /// See [`Verdict::hardware_error_ratio`].
    pub fn hardware_error_ratio(&self) -> f64 {
        Verdict::hardware_error_ratio(&self.checked)
    }

    fn add_accepted(&mut self, difficulty: f64, now: Instant, origin: Instant) {
        add_to_window(&mut self.window, difficulty, now, origin);
        self.accepted += 1;
        self.difficulty_accepted += difficulty;
        self.last_accepted = Some(now);
    }

    fn add_checked(&mut self, check: &Checked, now: Instant, origin: Instant) {
        self.checked[check.verdict.index()] += 1;
        if check.verdict == Verdict::Valid {
            add_to_window(&mut self.valid_window, check.difficulty, now, origin);
        }
        self.blocks += u64::from(check.block);
        if let Some(achieved) = check.achieved {
            self.best_ever = self.best_ever.max(achieved);
            if self.best_day.0 != check.day {
                self.best_day = (check.day, 0.0);
            }
            self.best_day.1 = self.best_day.1.max(achieved);
        }
    }

    /// Adds the counts of `gone` (a series given up) to these.
    fn absorb(&mut self, gone: &WorkerStats) {
        self.accepted += gone.accepted;
        for (slot, n) in self.rejected.iter_mut().zip(gone.rejected) {
            *slot += n;
        }
        self.stale += gone.stale;
        self.difficulty_accepted += gone.difficulty_accepted;
        for (slot, n) in self.checked.iter_mut().zip(gone.checked) {
            *slot += n;
        }
        self.disputed += gone.disputed;
        self.blocks += gone.blocks;
        self.best_ever = self.best_ever.max(gone.best_ever);
        self.last_share = match (self.last_share, gone.last_share) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        // Its hashrate window is empty: it was idle for SERIES_IDLE.
    }

    fn is_empty(&self) -> bool {
        self.accepted == 0
            && self.stale == 0
            && self.disputed == 0
            && self.rejected.iter().all(|n| *n == 0)
            && self.checked.iter().all(|n| *n == 0)
    }
}

/// How one share ended, for the books.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ShareOutcome {
    /// Accepted at this difficulty.
    Accepted(f64),
    /// Rejected with this Stratum code.
    Rejected(i64),
    /// Stale.
    Stale,
    /// Accepted by the pool, found invalid by the proxy's check: not booked.
    Disputed,
}

/// Latency buckets of `stratum_submit_duration_seconds`, in seconds.
pub const SUBMIT_BUCKETS: [f64; 12] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// A histogram of submit round trips.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations at or below each bound of [`SUBMIT_BUCKETS`] (not cumulative).
    pub buckets: [Counter; SUBMIT_BUCKETS.len()],
    /// Sum of all observations, in seconds.
    pub sum: Cell<f64>,
    /// Number of observations.
    pub count: Counter,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = SUBMIT_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].inc();
        }
        self.sum.set(self.sum.get() + secs);
        self.count.inc();
    }
}

/// Per-worker counts for the metrics page, in at most [`MAX_WORKER_SERIES`]
/// series plus [`OVERFLOW_WORKER`].
///
/// Series go to workers that mine: a login gets its own series at its first
/// accepted share, if one is free; until then, and when none is, its shares
/// count under `_other`. So a flood of logins that never get a share
/// accepted cannot take the series of the real rigs. When all are taken, the
/// series of the worker idle longest, if idle for [`SERIES_IDLE`], is given
/// up to the newcomer.
///
/// Counters stay monotonic: a series given up has its counts added to
/// `_other` at that moment, so each counter summed over all series never
/// decreases. The given-up series itself disappears (Prometheus marks it
/// stale); if that login comes back it starts again from 0, which
/// Prometheus reads as a counter reset of that series, and `_other` shows
/// the moved counts as one step.
#[derive(Debug)]
pub struct Workers {
    map: RefCell<HashMap<Login, WorkerStats>>,
    other: RefCell<WorkerStats>,
    /// The last day of each series, for the page and the alerts: exactly
    /// the logins of `map`, and `_other`'s.
    rings: RefCell<HashMap<Login, Box<Ring>>>,
    other_ring: RefCell<Ring>,
    /// Unix second since which the rings are complete: the process start,
    /// or the oldest share the books still had when they were restored.
    covered_since: Cell<u64>,
    /// `[alerts] worker_down_after`.
    down_after: Cell<Duration>,
    /// All-time best shares from the books, for logins without a series yet.
    seeds: RefCell<HashMap<Login, f64>>,
    /// Seconds after midnight UTC when the books' day starts.
    settlement: Cell<u32>,
    origin: Instant,
    /// Series given up to a newcomer.
    pub evicted: Counter,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            map: RefCell::new(HashMap::new()),
            other: RefCell::new(WorkerStats::default()),
            rings: RefCell::new(HashMap::new()),
            other_ring: RefCell::new(Ring::default()),
            covered_since: Cell::new(crate::clock::unix_secs()),
            down_after: Cell::new(Duration::from_secs(600)),
            seeds: RefCell::new(HashMap::new()),
            settlement: Cell::new(0),
            origin: Instant::now(),
            evicted: Counter::default(),
        }
    }
}

impl Workers {
    /// Records one share of `login`.
    pub fn record(&self, login: &str, outcome: ShareOutcome, now: Instant, unix_now: f64) {
        let earns = matches!(outcome, ShareOutcome::Accepted(_));
        self.with(login, earns, now, |w, ring| {
            match outcome {
                ShareOutcome::Accepted(d) => {
                    w.add_accepted(d, now, self.origin);
                    w.first_accepted.get_or_insert(unix_now as u64);
                    w.last_accepted_unix = Some(unix_now as u64);
                    ring.add(unix_now as u64, d, 1);
                }
                ShareOutcome::Rejected(code) => {
                    let i = Reason::ALL.iter().position(|r| *r == Reason::of(code)).unwrap_or(4);
                    w.rejected[i] += 1;
                }
                ShareOutcome::Stale => w.stale += 1,
                ShareOutcome::Disputed => w.disputed += 1,
            }
            w.last_share = Some(unix_now);
        });
    }

    /// Records what the proxy's own check found of one share of `login`.
    /// Only a share the pool accepted earns a series: until then the checks
    /// count under `_other`, so junk logins cannot take series.
    pub fn checked(&self, login: &str, check: &Checked, now: Instant) {
        self.with(login, false, now, |w, _| w.add_checked(check, now, self.origin));
    }

    /// Whether a disputed share of `login` should be logged now: once an
    /// hour per worker, so a failing rig cannot flood the journal.
    pub fn dispute_log_due(&self, login: &str, now: Instant) -> bool {
        let mut due = false;
        self.with(login, false, now, |w, _| {
            due = w.dispute_logged.is_none_or(|t| now.saturating_duration_since(t) >= DISPUTE_LOG_INTERVAL);
            if due {
                w.dispute_logged = Some(now);
            }
        });
        due
    }

    /// Whether `login` has a series of its own.
    pub fn has_series(&self, login: &str) -> bool {
        self.map.borrow().contains_key(&*shown(login))
    }

    /// True hashrate of `w` (a row of [`Workers::snapshot`]); see
    /// [`WorkerStats::checked_hashrate`].
    pub fn checked_hashrate(&self, w: &WorkerStats, now: Instant) -> f64 {
        w.checked_hashrate(now, self.origin)
    }

    /// Sets how long a worker may go without a share before it is down
    /// (`[alerts] worker_down_after`; see [`Workers::view`]).
    pub fn set_down_after(&self, down_after: Duration) {
        self.down_after.set(down_after);
    }

    /// Sets when the books' day starts, in seconds after midnight UTC.
    pub fn set_settlement(&self, settlement: u32) {
        self.settlement.set(settlement);
    }

    /// The books' day of unix time `secs`.
    pub fn day_of(&self, secs: u64) -> u32 {
        crate::store::Day::of(secs, self.settlement.get()).0
    }

    /// The books' day now.
    pub fn today(&self) -> u32 {
        self.day_of(crate::clock::unix_secs())
    }

    /// Seeds the all-time best share of logins from the books, for the
    /// series they get (at most [`MAX_WORKER_SERIES`] are kept, the best first).
    pub fn seed_best(&self, mut best: Vec<(String, f64)>) {
        best.sort_by(|a, b| b.1.total_cmp(&a.1));
        best.truncate(MAX_WORKER_SERIES);
        let mut seeds = self.seeds.borrow_mut();
        seeds.clear();
        seeds.extend(best.into_iter().map(|(login, d)| (display_login(&login), d)));
    }

    /// Runs `update` on the series of `login`: its own when it has one, or
    /// gets one now (`earns`: it just did real work), else `_other`.
    fn with(&self, login: &str, earns: bool, now: Instant, update: impl FnOnce(&mut WorkerStats, &mut Ring)) {
        let key = shown(login);
        let key = &*key;
        let mut map = self.map.borrow_mut();
        // A worker with its series already (every share after its first):
        // one lookup in each map, no key copied.
        if let Some(w) = map.get_mut(key)
            && let Some(ring) = self.rings.borrow_mut().get_mut(key)
        {
            update(w, ring);
            return;
        }
        let mut other = self.other.borrow_mut();
        let own = key != OVERFLOW_WORKER
            && (map.contains_key(key) || earns && self.make_room(&mut map, &mut other, now));
        if own {
            let key = display_login(key);
            let mut rings = self.rings.borrow_mut();
            let ring = rings.entry(key.clone()).or_default();
            let w = map.entry(key).or_insert_with_key(|key| WorkerStats {
                best_ever: self.seeds.borrow_mut().remove(key).unwrap_or(0.0),
                ..WorkerStats::default()
            });
            update(w, ring);
        } else {
            update(&mut other, &mut self.other_ring.borrow_mut());
        }
    }

    /// Whether a new series fits, giving up the series idle longest if it
    /// has been idle for [`SERIES_IDLE`] and none is free.
    fn make_room(
        &self,
        map: &mut HashMap<Login, WorkerStats>,
        other: &mut WorkerStats,
        now: Instant,
    ) -> bool {
        if map.len() < MAX_WORKER_SERIES {
            return true;
        }
        let idle =
            |w: &WorkerStats| w.last_accepted.map_or(Duration::MAX, |t| now.saturating_duration_since(t));
        let Some(key) = map
            .iter()
            .filter(|(_, w)| idle(w) >= SERIES_IDLE)
            .max_by_key(|(_, w)| idle(w))
            .map(|(k, _)| k.clone())
        else {
            return false;
        };
        if let Some(gone) = map.remove(&key) {
            other.absorb(&gone);
            self.rings.borrow_mut().remove(&key);
            self.evicted.inc();
        }
        true
    }

    /// Every worker's counts with its hashrate, sorted by login; `_other`
    /// among them once it has counted anything.
    pub fn snapshot(&self, now: Instant) -> Vec<(Login, WorkerStats, f64)> {
        let map = self.map.borrow();
        let other = self.other.borrow();
        let mut rows: Vec<_> =
            map.iter().map(|(k, v)| (k.clone(), v.clone(), v.hashrate(now, self.origin))).collect();
        if !other.is_empty() {
            rows.push((display_login(OVERFLOW_WORKER), other.clone(), other.hashrate(now, self.origin)));
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    }
}

mod view;
pub use view::WorkerView;

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
