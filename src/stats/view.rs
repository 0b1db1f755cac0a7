//! What the page, the JSON and the alerts show of each worker: its state
//! (hashing, late, down), its rates over 10 minutes, an hour and a day, and
//! its sparkline, from the counts and the history ring that [`Workers`]
//! keeps; and the day restored from the books at start.

use std::time::{Duration, Instant};

use super::{WorkerStats, Workers};
use crate::history::{self, Restored, Ring};
use crate::stats::OVERFLOW_WORKER;
use crate::worker::{Login, display_login};

/// What the page, the JSON and the alerts show of one worker.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerView {
    /// The login, whole.
    pub login: Login,
    /// Hashing, late or down.
    pub state: history::State,
    /// Hashes per second over the last 10 minutes, 1 hour and 24 hours.
    pub hashrate_10m: f64,
    /// See `hashrate_10m`.
    pub hashrate_1h: f64,
    /// See `hashrate_10m`.
    pub hashrate_24h: f64,
    /// Shares accepted since the start.
    pub accepted: u64,
    /// Shares rejected since the start.
    pub rejected: u64,
    /// Stale shares since the start.
    pub stale: u64,
    /// Highest difficulty a share achieved, ever.
    pub best_share: f64,
    /// Unix time of the last share the pool answered.
    pub last_share: Option<f64>,
    /// The usual time between two shares, in seconds, when known.
    pub usual_interval: Option<u64>,
    /// Seconds without a share after which this worker counts as down.
    pub down_after: u64,
    /// Hashes per second over the last six whole five-minute buckets.
    pub hashrate_30m: f64,
}

impl Workers {
    /// Unix second since which the per-worker history is complete.
    pub fn covered_since(&self) -> u64 {
        self.covered_since.get()
    }

    /// Restores the last day of each worker from the books (see
    /// [`Restored`]): the logins seen last get series first, at most
    /// [`MAX_WORKER_SERIES`](super::MAX_WORKER_SERIES); `covered_since` is the oldest share the books
    /// still had (unix seconds), from when the history counts as complete.
    pub fn restore(&self, mut rows: Vec<Restored>, covered_since: u64, now: Instant, unix_now: u64) {
        rows.sort_by_key(|r| std::cmp::Reverse(r.last));
        self.covered_since.set(self.covered_since.get().min(covered_since));
        for row in rows {
            let last = row.last.min(unix_now);
            // As if the last share had come when it came, for the idle rule
            // (an instant before boot cannot be had: then the start).
            let at = now.checked_sub(Duration::from_secs(unix_now - last)).unwrap_or(now);
            let down_after = self.down_after.get();
            let fill = |w: &mut WorkerStats, ring: &mut Ring| {
                for &(bucket, difficulty, shares) in &row.buckets {
                    ring.add(bucket * history::BUCKET_SECS, difficulty, shares);
                }
                let first = row.buckets.iter().map(|b| b.0 * history::BUCKET_SECS).min();
                w.first_accepted = match (w.first_accepted, first) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                w.last_accepted_unix = Some(w.last_accepted_unix.map_or(last, |t| t.max(last)));
                let usual = ring.usual_interval(last, w.first_accepted, last);
                let quiet = Duration::from_secs(unix_now - last);
                w.down_at_start = quiet >= history::down_after(usual, down_after);
                w.last_share = Some(w.last_share.map_or(last as f64, |t| t.max(last as f64)));
                w.last_accepted = Some(w.last_accepted.map_or(at, |t| t.max(at)));
            };
            self.with(&row.login, true, at, fill);
        }
    }

    /// What the page, the JSON and the alerts show of every worker, sorted
    /// by login (`_other` among them once it has counted anything). A
    /// worker is down after `worker_down_after` without an accepted share
    /// (or [`history::DOWN_INTERVALS`] usual intervals, when longer),
    /// counted on the monotonic clock (a clock step makes no worker late or
    /// down) from its last accepted share or the process start, whichever
    /// is later: a restart gives the rigs time to come back, except those
    /// already down before it. The usual interval is measured over the day
    /// before the last share, so it holds still while the worker is quiet.
    pub fn view(&self, now: Instant, unix_now: u64) -> Vec<WorkerView> {
        let down_after = self.down_after.get();
        let map = self.map.borrow();
        let rings = self.rings.borrow();
        let other = self.other.borrow();
        let other_ring = self.other_ring.borrow();
        let own = map.iter().filter_map(|(login, w)| Some((login, w, &**rings.get(login)?)));
        let overflow = display_login(OVERFLOW_WORKER);
        let rest = (!other.is_empty()).then_some((&overflow, &*other, &*other_ring));
        let covered = self.covered_since.get();
        let mut rows: Vec<WorkerView> = own
            .chain(rest)
            .map(|(login, w, ring)| {
                let last = w.last_accepted_unix;
                let usual = last.and_then(|last| ring.usual_interval(last, w.first_accepted, last));
                let down = history::down_after(usual, down_after);
                let since = w.last_accepted.map_or(self.origin, |t| t.max(self.origin));
                let quiet = now.saturating_duration_since(since);
                let state = if w.down_at_start && w.accepted == 0 {
                    history::State::Down
                } else {
                    history::state(quiet, usual, down)
                };
                WorkerView {
                    login: login.clone(),
                    state,
                    hashrate_10m: w.hashrate(now, self.origin),
                    hashrate_1h: ring.rate(unix_now, 3600, covered),
                    hashrate_24h: ring.rate(unix_now, history::SPAN_SECS, covered),
                    accepted: w.accepted,
                    rejected: w.rejected.iter().sum(),
                    stale: w.stale,
                    best_share: w.best_ever,
                    last_share: w.last_share,
                    usual_interval: usual.map(|u| u.as_secs()),
                    down_after: down.as_secs(),
                    hashrate_30m: ring.whole_rate(unix_now, 6),
                }
            })
            .collect();
        rows.sort_by(|a, b| a.login.cmp(&b.login));
        rows
    }

    /// The hashrate of `login` in each five-minute bucket of the last day,
    /// oldest first, averaged over `per_point` buckets per point (at most
    /// [`history::BUCKETS`] / `per_point` points); `None` for a login
    /// without a series.
    pub fn sparkline(&self, login: &str, unix_now: u64, per_point: usize) -> Option<Vec<f32>> {
        let key = display_login(login);
        let per_point = per_point.clamp(1, history::BUCKETS);
        let points = |ring: &Ring| {
            let buckets: Vec<(f64, u64)> = ring.buckets(unix_now).collect();
            let span = (history::BUCKET_SECS * per_point as u64) as f64;
            let rate = |chunk: &[(f64, u64)]| {
                (crate::check::target::hashes(chunk.iter().fold(0.0, |a, b| a + b.0)) / span) as f32
            };
            buckets.chunks(per_point).map(rate).collect()
        };
        if key.as_str() == OVERFLOW_WORKER {
            return Some(points(&self.other_ring.borrow()));
        }
        self.rings.borrow().get(&key).map(|ring| points(ring))
    }
}
