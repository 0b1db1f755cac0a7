//! A worker's last day of work, in a fixed-capacity ring of five-minute
//! buckets: what the status page draws as a sparkline, what its 1 h and 24 h
//! hashrates are computed from, and what tells "hashing", "late" and "down"
//! apart for the page and the alerts.
//!
//! Invariant: a [`Ring`] is [`RING_BYTES`] whatever the miner does. Buckets are
//! numbered by unix time (`secs / BUCKET_SECS`), so a ring restored from the
//! books after a restart lines up with the one that was lost, and a bucket
//! older than [`BUCKETS`] is never read.

use std::time::Duration;

/// Length of one bucket, in seconds.
pub const BUCKET_SECS: u64 = 300;
/// Buckets kept: 24 hours of five-minute buckets.
pub const BUCKETS: usize = 288;
/// Span of a ring, in seconds.
pub const SPAN_SECS: u64 = BUCKET_SECS * BUCKETS as u64;
/// Shortest time a rate is divided by, in seconds.
pub const MIN_RATE_SECS: u64 = 60;
/// Bytes one ring takes.
pub const RING_BYTES: usize = std::mem::size_of::<Ring>();
const _: () = assert!(RING_BYTES <= 1800, "a ring stays under 1.8 KiB");

/// Fewest shares in the last day before a worker's usual interval is
/// trusted; with fewer, only `worker_down_after` decides.
pub const MIN_SHARES_FOR_INTERVAL: u64 = 4;
/// A worker is late after this many usual intervals without a share.
pub const LATE_INTERVALS: u64 = 3;
/// ... and down after this many (or `worker_down_after`, whichever is longer).
pub const DOWN_INTERVALS: u64 = 5;
/// A worker is never late sooner than this after its last share.
pub const MIN_LATE: Duration = Duration::from_secs(60);

/// Accepted difficulty and share count per five-minute bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Ring {
    /// Number of the newest bucket written (unix secs / [`BUCKET_SECS`]).
    newest: u64,
    /// Accepted difficulty per bucket, at `number % BUCKETS`.
    difficulty: [f32; BUCKETS],
    /// Accepted shares per bucket (saturating).
    shares: [u16; BUCKETS],
}

impl Default for Ring {
    fn default() -> Self {
        Ring { newest: 0, difficulty: [0.0; BUCKETS], shares: [0; BUCKETS] }
    }
}

/// How a worker is doing, from the time since its last share against its
/// usual share interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Shares come as usual.
    Hashing,
    /// Longer than usual without a share.
    Late,
    /// No share for `worker_down_after` or [`DOWN_INTERVALS`] usual intervals.
    Down,
}

impl State {
    /// The label on the page, in the JSON and in the metrics.
    pub fn label(self) -> &'static str {
        match self {
            State::Hashing => "hashing",
            State::Late => "late",
            State::Down => "down",
        }
    }
}

impl Ring {
    /// Adds one accepted share of `difficulty` found at unix second `at`.
    /// A share older than the ring's span, or not finite and positive, is
    /// not added.
    pub fn add(&mut self, at: u64, difficulty: f64, shares: u32) {
        if !(difficulty.is_finite() && difficulty > 0.0) {
            return;
        }
        let n = at / BUCKET_SECS;
        if n > self.newest {
            // Clear the buckets skipped over, at most the whole ring.
            let skipped = (n - self.newest).min(BUCKETS as u64);
            for k in 0..skipped {
                let slot = ((n - k) % BUCKETS as u64) as usize;
                self.difficulty[slot] = 0.0;
                self.shares[slot] = 0;
            }
            self.newest = n;
        } else if self.newest - n >= BUCKETS as u64 {
            return;
        }
        let slot = (n % BUCKETS as u64) as usize;
        self.difficulty[slot] += difficulty as f32;
        self.shares[slot] = self.shares[slot].saturating_add(u16::try_from(shares).unwrap_or(u16::MAX));
    }

    /// The buckets of the last day as seen at unix second `now`, oldest
    /// first: (accepted difficulty, shares) per bucket, the last one the
    /// bucket `now` is in.
    pub fn buckets(&self, now: u64) -> impl Iterator<Item = (f64, u64)> + '_ {
        let current = now / BUCKET_SECS;
        (0..BUCKETS as u64).rev().map(move |back| {
            let n = current.saturating_sub(back);
            let slot = (n % BUCKETS as u64) as usize;
            let live = back <= current && n <= self.newest && self.newest - n < BUCKETS as u64;
            if live { (f64::from(self.difficulty[slot]), u64::from(self.shares[slot])) } else { (0.0, 0) }
        })
    }

    /// Accepted difficulty and shares in the buckets that overlap the last
    /// `span` seconds before `now` (whole buckets).
    pub fn sum(&self, now: u64, span: u64) -> (f64, u64) {
        let take = span.div_ceil(BUCKET_SECS).clamp(1, BUCKETS as u64) as usize;
        self.buckets(now).skip(BUCKETS - take).fold((0.0, 0), |(d, s), (bd, bs)| (d + bd, s + bs))
    }

    /// Hashes per second over the last `span` seconds before `now`: the
    /// buckets overlapping it divided by the time they cover, which starts
    /// no earlier than `covered_since` (the start of what is known: the
    /// process start, or the oldest share the books still had).
    pub fn rate(&self, now: u64, span: u64, covered_since: u64) -> f64 {
        let (difficulty, _) = self.sum(now, span);
        let take = span.div_ceil(BUCKET_SECS).clamp(1, BUCKETS as u64);
        let first = (now / BUCKET_SECS + 1).saturating_sub(take) * BUCKET_SECS;
        // At least a minute: right after the start (or a clock stepped back
        // before `covered_since`) one share must not read as a huge rate.
        let seconds = now.saturating_sub(first.max(covered_since)).max(MIN_RATE_SECS);
        crate::check::target::hashes(difficulty) / seconds as f64
    }

    /// Hashes per second over the `n` whole buckets before the one `now`
    /// is in (the current bucket is still filling).
    pub fn whole_rate(&self, now: u64, n: usize) -> f64 {
        let n = n.clamp(1, BUCKETS - 1);
        let difficulty = self.buckets(now).skip(BUCKETS - 1 - n).take(n).fold(0.0, |a, (d, _)| a + d);
        crate::check::target::hashes(difficulty) / (n as u64 * BUCKET_SECS) as f64
    }

    /// The start (unix seconds) of the oldest bucket of the last day with
    /// a share in it.
    pub fn first_share(&self, now: u64) -> Option<u64> {
        let current = now / BUCKET_SECS;
        let back = self.buckets(now).position(|(_, s)| s > 0)?;
        Some((current + 1 - (BUCKETS - back) as u64) * BUCKET_SECS)
    }

    /// The usual time between two shares over the last day: from the
    /// first share (the oldest bucket with one, or `first`, unix seconds,
    /// when that is later: a bucket starts up to five minutes before its
    /// first share) to the `last` share, once there were
    /// [`MIN_SHARES_FOR_INTERVAL`]. A silence after the last share does not
    /// stretch it.
    pub fn usual_interval(&self, now: u64, first: Option<u64>, last: u64) -> Option<Duration> {
        let bucket = self.first_share(now)?;
        let first = first.map_or(bucket, |f| f.max(bucket));
        let (_, shares) = self.sum(now, SPAN_SECS);
        (shares >= MIN_SHARES_FOR_INTERVAL)
            .then(|| Duration::from_secs(last.saturating_sub(first) / (shares - 1)))
    }
}

/// One worker's last day as the books kept it, for `Workers::restore`.
#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    /// The login.
    pub login: String,
    /// Unix second of its last accepted share.
    pub last: u64,
    /// (bucket number, accepted difficulty, shares) per bucket of
    /// [`BUCKET_SECS`].
    pub buckets: Vec<(u64, f64, u32)>,
}

/// When a worker is down: after `down_after`, or [`DOWN_INTERVALS`] usual
/// intervals when those are longer (a slow rig is not down for being slow).
pub fn down_after(usual: Option<Duration>, down_after: Duration) -> Duration {
    usual.map_or(down_after, |u| down_after.max(u.saturating_mul(DOWN_INTERVALS as u32)))
}

/// A worker's state after `quiet` without a share.
pub fn state(quiet: Duration, usual: Option<Duration>, down: Duration) -> State {
    let late = usual.map_or(down / 2, |u| MIN_LATE.max(u.saturating_mul(LATE_INTERVALS as u32)));
    if quiet >= down {
        State::Down
    } else if quiet >= late.min(down) {
        State::Late
    } else {
        State::Hashing
    }
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
