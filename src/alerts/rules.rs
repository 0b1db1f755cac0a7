//! The rules that turn counts into alerts: a worker down or back, a
//! hashrate drop, a pool down, a failover, a block found.
//!
//! Pure state, no I/O: [`Rules`] is shown what the proxy sees now and says
//! what changed. Invariant: one alert per change of state, never one per
//! look: a worker raises `worker_down` once when it goes down and
//! `worker_back` once when a share comes again; a drop re-arms only once
//! the hashrate is well back. Its memory is one entry per worker shown to
//! it, and workers no longer shown are forgotten.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::config::Event;
use crate::history::State;
use crate::pools::{Health, Pools};
use crate::stats::WorkerView;
use crate::worker::{Login, OVERFLOW_WORKER};

/// The 24-hour average needs at least this much history before a drop
/// below it means anything.
pub const DROP_MIN_HISTORY: Duration = Duration::from_secs(2 * 3600);
/// A drop is judged on 30 minutes of whole buckets that all lie after the
/// start: a gateway that was off is not a rig that slowed down.
pub const DROP_MIN_UPTIME: Duration = Duration::from_secs(35 * 60);
/// A drop is judged only for a worker expected to send at least this many
/// shares in 30 minutes: with fewer, chance alone moves the rate by half.
pub const DROP_MIN_SHARES: u64 = 20;
/// A worker whose hashrate dropped is re-armed once its 30-minute rate is
/// back above the threshold times this.
const DROP_REARM: f64 = 1.2;

/// One alert, as every sink gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// What happened.
    pub event: Event,
    /// The worker's login or the pool's name.
    pub subject: String,
    /// One sentence for a person.
    pub message: String,
    /// Unix second it was noticed.
    pub at: u64,
    /// The worker's hashrate (H/s) when it matters: its 30-minute rate for
    /// a drop, its 24-hour average when it goes down, its 10-minute rate
    /// when it is back.
    pub hashrate: Option<f64>,
}

/// What the rules remember of one worker.
#[derive(Debug, Clone, Copy)]
struct Seen {
    state: State,
    dropped: bool,
}

/// What the rules remember between two looks.
#[derive(Debug, Default)]
pub struct Rules {
    workers: HashMap<Login, Seen>,
    /// Each pool's health and failover count at the last look.
    pools: Vec<(Health, u64)>,
    blocks: u64,
}

/// A hashrate for a person: `12.3 TH/s`.
pub fn human_rate(rate: f64) -> String {
    let units = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s"];
    // Not `max(0.0)`: that keeps -0.0, which prints as "-0.00".
    let mut v = if rate > 0.0 { rate } else { 0.0 };
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < units.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.2} {}", units[unit])
}

impl Rules {
    /// Rules that start knowing the pools' current health and blocks found,
    /// so nothing from before is alerted.
    pub fn new(pools: &Pools, blocks: u64) -> Rules {
        let pools = pools.entries().iter().map(|e| (e.health(), e.failovers.get())).collect();
        Rules { workers: HashMap::new(), pools, blocks }
    }

    /// Looks at every worker (`covered`: history known; `uptime`: since the
    /// start); pushes an alert for each change. A worker seen for the first
    /// time only sets its state: one already down at start raises nothing.
    pub fn workers(
        &mut self,
        views: &[WorkerView],
        (covered, uptime): (Duration, Duration),
        drop_below: f64,
        at: u64,
        out: &mut Vec<Alert>,
    ) {
        let mut kept: HashMap<Login, Seen> = HashMap::with_capacity(views.len());
        for v in views.iter().filter(|v| v.login.as_str() != OVERFLOW_WORKER) {
            let mut seen = match self.workers.get(&v.login) {
                None => Seen { state: v.state, dropped: false },
                Some(seen) => *seen,
            };
            let mut say = |event, message: String, hashrate| {
                out.push(Alert { event, subject: v.login.to_string(), message, at, hashrate });
            };
            // The message is read by a person: a long login keeps its rig.
            let shown = crate::web::page::short_login(&v.login);
            let was_down = seen.state == State::Down;
            if !was_down && v.state == State::Down {
                let quiet = v.last_share.map(|t| at.saturating_sub(t as u64));
                let mut m = format!("worker {shown} is down: no share");
                match quiet {
                    Some(q) => {
                        let _ = write!(m, " for {}", human_duration(q));
                    }
                    None => m.push_str(" since the gateway started"),
                }
                say(Event::WorkerDown, m, Some(v.hashrate_24h));
            } else if was_down && v.state != State::Down {
                say(Event::WorkerBack, format!("worker {shown} is back"), Some(v.hashrate_10m));
            }
            seen.state = v.state;
            let judged = v.state != State::Down
                && covered >= DROP_MIN_HISTORY
                && uptime >= DROP_MIN_UPTIME
                && v.usual_interval.is_some_and(|u| u > 0 && 1800 / u >= DROP_MIN_SHARES);
            let threshold = drop_below * v.hashrate_24h;
            if judged && !seen.dropped && v.hashrate_30m < threshold {
                seen.dropped = true;
                let m = format!(
                    "worker {shown} hashes {} over 30 minutes, below {:.0} % of its 24-hour average {}",
                    human_rate(v.hashrate_30m),
                    drop_below * 100.0,
                    human_rate(v.hashrate_24h)
                );
                say(Event::HashrateDrop, m, Some(v.hashrate_30m));
            } else if seen.dropped && v.hashrate_30m >= (threshold * DROP_REARM).min(v.hashrate_24h) {
                seen.dropped = false;
            }
            kept.insert(v.login.clone(), seen);
        }
        self.workers = kept;
    }

    /// Looks at the pools: a pool newly down, and miners moved off the
    /// pool they were on.
    pub fn pools(&mut self, pools: &Pools, at: u64, out: &mut Vec<Alert>) {
        let entries = pools.entries();
        self.pools.resize(entries.len(), (Health::Unknown, 0));
        let active = pools.active().map(|i| entries[i].target.name.as_str());
        for (e, seen) in entries.iter().zip(self.pools.iter_mut()) {
            let (health, failovers) = (e.health(), e.failovers.get());
            let name = &e.target.name;
            if health == Health::Down && seen.0 != Health::Down {
                let message = format!("pool {name} ({}) is down", e.target.address);
                out.push(Alert {
                    event: Event::PoolDown,
                    subject: name.clone(),
                    message,
                    at,
                    hashrate: None,
                });
            }
            if failovers > seen.1 {
                let to = active.map_or("no pool (every pool is down)".to_string(), |a| format!("pool {a}"));
                let message = format!("miners moved from pool {name} to {to}");
                out.push(Alert {
                    event: Event::Failover,
                    subject: name.clone(),
                    message,
                    at,
                    hashrate: None,
                });
            }
            *seen = (health, failovers);
        }
    }

    /// Looks at the blocks found: one alert per look that found more, naming
    /// the last (on mainnet two blocks within seconds do not happen).
    pub fn blocks(&mut self, found: u64, last: Option<(&str, &str)>, at: u64, out: &mut Vec<Alert>) {
        if found <= self.blocks {
            self.blocks = found;
            return;
        }
        let new = found - self.blocks;
        self.blocks = found;
        let (worker, hash) = last.unwrap_or(("?", "?"));
        let mut message = format!("block found by {}: {hash}", crate::web::page::short_login(worker));
        if new > 1 {
            let _ = write!(message, " ({new} blocks since the last look)");
        }
        out.push(Alert {
            event: Event::BlockFound,
            subject: worker.to_string(),
            message,
            at,
            hashrate: None,
        });
    }
}

/// A duration for a person: `12 min`, `3 h 5 min`, `2 d 4 h`.
pub fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
