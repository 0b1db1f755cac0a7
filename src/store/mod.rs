//! The books: pools, miners, workers, shares per worker per day, earnings
//! and their distribution, in one embedded `redb` file.
//!
//! The proxy never waits for the books: it hands [`Event`]s to a bounded
//! lock-free queue ([`queue::Recorder`], no system call per event); a writer
//! thread ([`writer`]), asleep in between, commits them in batches every
//! `commit_interval` and on shutdown. In `store.mode = "ram"`
//! the commits land in memory ([`ram`]) and the whole file is written every
//! `flush_interval` and on shutdown. What reaches the storage is counted
//! ([`backend`]). The CLI reaches the books
//! through the daemon's control socket ([`control`]) while it runs, and opens
//! the file itself ([`db::Books`]) when it does not.
//!
//! Every event names the pool it happened on by its index in
//! [`db::Setting::pools`] (0 is the primary, then the fallbacks in priority
//! order); the books file it under that pool's name, so each pool's reward is
//! split by the work done on that pool.
//!
//! Invariants: a share is added to its day exactly once, in the commit that
//! records it; a distribution's satoshis add up exactly to the day's reward.

use std::fmt;

pub mod backend;
pub mod control;
pub mod db;
pub mod integrity;
mod migrate;
pub mod queue;
pub mod ram;
pub mod split;
pub mod writer;

/// Events waiting for the writer, at most; more are dropped and counted.
/// The queue's slots are allocated up front (about 240 KiB on 64-bit: 232
/// bytes an event, 8 for its slot's stamp); the writer takes them into its
/// batch when half are used ([`queue::HIGH_WATER`]), at a command, and when
/// a commit is due. A home gateway queues a few dozen shares per commit
/// interval.
pub const EVENT_QUEUE: usize = 1024;

/// Earliest time the books believe a clock: 2024-01-01 00:00 UTC, in unix
/// seconds. A Raspberry Pi has no hardware clock and boots at 1970 (or at the
/// time fake-hwclock saved) until NTP sets it; events stamped before this are
/// counted and not booked, rather than booked on a day decades ago.
pub const CLOCK_FLOOR_SECS: u64 = 1_704_067_200;

/// A UTC day (or settlement day), as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub u32);

impl Day {
    /// The day a unix time (seconds) falls in, with the day starting
    /// `settlement` seconds after midnight UTC.
    pub fn of(unix_secs: u64, settlement: u32) -> Day {
        Day((unix_secs.saturating_sub(u64::from(settlement)) / 86_400) as u32)
    }

    /// Seconds since the epoch at the start of this day.
    pub fn start(self, settlement: u32) -> u64 {
        u64::from(self.0) * 86_400 + u64::from(settlement)
    }
}

impl fmt::Display for Day {
    /// `YYYY-MM-DD` (proleptic Gregorian; Howard Hinnant's civil_from_days).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let z = i64::from(self.0) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl std::str::FromStr for Day {
    type Err = String;

    /// Parses `YYYY-MM-DD` (days_from_civil).
    fn from_str(s: &str) -> Result<Day, String> {
        let bad = || format!("{s:?} is not a date (YYYY-MM-DD)");
        let mut parts = s.split('-');
        let (Some(y), Some(m), Some(d), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let (y, m, d): (i64, i64, i64) =
            (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
        if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
            return Err(bad());
        }
        let y2 = if m <= 2 { y - 1 } else { y };
        let era = y2.div_euclid(400);
        let yoe = y2.rem_euclid(400);
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let day = Day(u32::try_from(days).map_err(|_| bad())?);
        // Reject 2026-02-31 and the like: the round trip must agree.
        if day.to_string() != format!("{y:04}-{m:02}-{d:02}") {
            return Err(bad());
        }
        Ok(day)
    }
}

/// How a share ended, as the books keep it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Accepted at this difficulty.
    Accepted(f64),
    /// Rejected with this reason index (see [`crate::stats::Reason::ALL`]).
    Rejected(u8),
    /// Stale.
    Stale,
    /// Accepted by the pool, found invalid by the proxy's check: never in
    /// the day's accepted totals or the split.
    Disputed,
}

impl Outcome {
    /// False for an accepted share whose difficulty is not finite and
    /// positive: such a share would poison the day's sum and the split, so
    /// the books never add it.
    pub fn is_believable(self) -> bool {
        match self {
            Outcome::Accepted(d) => d.is_finite() && d > 0.0,
            Outcome::Rejected(_) | Outcome::Stale | Outcome::Disputed => true,
        }
    }
}

/// What the proxy's own check found of a share, as the books keep it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckNote {
    /// The verdict, as its index in [`crate::check::Verdict::ALL`].
    pub verdict: u8,
    /// The difficulty the share is worth when valid.
    pub difficulty: f64,
    /// The difficulty its hash achieved; 0 when it was not hashed.
    pub achieved: f64,
}

/// Something the books must record.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A pool connection was opened.
    PoolConnected {
        /// The pool, as its index in [`db::Setting::pools`].
        pool: u8,
        /// Unix seconds.
        at: u64,
    },
    /// A worker was authorized.
    WorkerSeen {
        /// The login.
        login: String,
        /// The miner's address.
        address: String,
        /// The miner's user agent from `mining.subscribe`.
        agent: String,
        /// The pool it works on, as its index in [`db::Setting::pools`].
        pool: u8,
        /// Unix seconds.
        at: u64,
    },
    /// A share the pool answered.
    Share {
        /// The login (inline: no allocation per share).
        login: crate::worker::Login,
        /// What the pool said.
        outcome: Outcome,
        /// What the proxy's own check found, when it checked the share.
        check: Option<CheckNote>,
        /// The pool it went to, as its index in [`db::Setting::pools`].
        pool: u8,
        /// Unix milliseconds.
        at_ms: u64,
    },
    /// A share that met the network target.
    Block {
        /// The login (inline).
        login: crate::worker::Login,
        /// The block hash, display order.
        hash: heapless::String<64>,
        /// The difficulty the hash achieved.
        difficulty: f64,
        /// The pool it went to, as its index in [`db::Setting::pools`].
        pool: u8,
        /// Unix milliseconds.
        at_ms: u64,
    },
}

impl Event {
    /// When it happened, in unix seconds.
    pub fn unix_secs(&self) -> u64 {
        match self {
            Event::PoolConnected { at, .. } | Event::WorkerSeen { at, .. } => *at,
            Event::Share { at_ms, .. } | Event::Block { at_ms, .. } => at_ms / 1000,
        }
    }
}

/// The miner (user part) of a login: everything before the first `.`.
pub fn miner_of(login: &str) -> &str {
    login.split('.').next().unwrap_or(login)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        for (text, n) in [("1970-01-01", 0), ("2000-02-29", 11_016), ("2026-11-25", 20_782)] {
            let d: Day = text.parse().unwrap();
            assert_eq!(d, Day(n), "{text}");
            assert_eq!(d.to_string(), text);
        }
        for n in (0..40_000).step_by(37) {
            assert_eq!(Day(n).to_string().parse::<Day>().unwrap(), Day(n));
        }
        for bad in ["2026-02-30", "2026-13-01", "26-1-1x", "", "2026-11", "1969-12-31"] {
            assert!(bad.parse::<Day>().is_err(), "{bad}");
        }
    }

    #[test]
    fn settlement_shifts_the_day() {
        let midnight = Day(20_417).start(0);
        assert_eq!(Day::of(midnight, 0), Day(20_417));
        assert_eq!(Day::of(midnight + 3600, 7200), Day(20_416));
        assert_eq!(Day::of(midnight + 7200, 7200), Day(20_417));
    }
}
