//! The pools the proxy may use, in priority order (the primary first), and
//! what it knows of each one's health: which pool new sessions go to, when a
//! pool that failed is tried again, and when sessions move back to a pool of
//! higher priority.
//!
//! Pure state, no I/O: sessions and probes report what happened
//! ([`Pools::working`], [`Pools::failed`], [`Pools::recovering`]) and ask
//! where to go ([`Pools::pick`]). Every change of a pool's state is logged
//! once and wakes whoever waits in [`Pools::changed`]; retries are not
//! logged.
//!
//! Invariants: a pool is never given up for good (a pool that is down is
//! probed again after its backoff, which never exceeds `retry_max`); a pool
//! counts as up again only after a probe found it sending work, and sessions
//! move back to it only after it stayed so for `switch_back_after`.

use std::cell::Cell;
use std::time::{Duration, Instant};

use smol::channel::{Receiver, Sender};

use crate::config::HostPort;
use crate::stats::{Counter, Gauge};
use crate::worker::Rewriter;

/// First wait before a pool that went down is probed again; doubled on each
/// failed probe up to `retry_max`.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest spread of the sessions moving back to a pool of higher priority
/// (each waits a share of it of its own), so the pool is not hit by every
/// miner in the same instant.
pub const MAX_SWITCH_SPREAD: Duration = Duration::from_secs(30);

/// Losses of one pool this close together are one failure.
pub const INCIDENT: Duration = Duration::from_secs(1);

/// How the proxy reacts to a pool that fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Failover {
    /// No `mining.notify` for this long means the pool is down.
    pub notify_timeout: Duration,
    /// Lost connections in a row before the pool is taken for down.
    pub failover_after: u32,
    /// Cap of the backoff between probes of a pool that is down.
    pub retry_max: Duration,
    /// How long a pool must stay healthy before sessions move back to it.
    pub switch_back_after: Duration,
}

impl Default for Failover {
    fn default() -> Self {
        Failover {
            notify_timeout: Duration::from_secs(180),
            failover_after: 2,
            retry_max: Duration::from_secs(60),
            switch_back_after: Duration::from_secs(120),
        }
    }
}

/// One pool the proxy may use: where it is and how logins are sent to it.
#[derive(Debug)]
pub struct Target {
    /// The name in logs, metrics and the books.
    pub name: String,
    /// `host:port`.
    pub address: HostPort,
    /// Rewrites logins to this pool's account.
    pub rewriter: Rewriter,
    /// Password sent upstream for rewritten logins.
    pub password: Option<String>,
}

/// What the proxy thinks of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not tried yet.
    Unknown,
    /// Sending work.
    Up,
    /// Lost connections lately, fewer than `failover_after` in a row.
    Failing,
    /// Taken for down: only probes try it, at `retry_at`.
    Down,
    /// A probe found it sending work again, since this long; sessions use
    /// it only when no pool is up.
    Recovering,
}

impl Health {
    /// The word in logs, metrics and `status`.
    pub fn label(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Failing => "failing",
            Health::Down => "down",
            Health::Recovering => "recovering",
        }
    }
}

/// Why a pool connection was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// The connection was refused: nothing listens there.
    Refused,
    /// Connecting failed otherwise, or timed out.
    Unreachable,
    /// The pool closed the connection, or it broke.
    Closed,
    /// The pool sent a line the proxy cannot read.
    Garbage,
    /// The pool left a request it must answer unanswered.
    Stalled,
    /// The pool sent no work for `notify_timeout`.
    NoWork,
}

impl Loss {
    /// Whether this alone shows the pool is down: retrying it at once would
    /// only cost the miners more time.
    fn is_decisive(self) -> bool {
        matches!(self, Loss::Refused | Loss::Stalled | Loss::NoWork)
    }
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Loss::Refused => "connection refused",
            Loss::Unreachable => "unreachable",
            Loss::Closed => "connection lost",
            Loss::Garbage => "sent a line the proxy cannot read",
            Loss::Stalled => "left a request unanswered",
            Loss::NoWork => "sent no work (pool.notify_timeout)",
        })
    }
}

/// Where a session should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Connect to this pool.
    Use(usize),
    /// Every pool is down: wait for [`Pools::changed`].
    Wait,
}

/// One pool's health and counts.
#[derive(Debug)]
pub struct Entry {
    /// Where it is.
    pub target: Target,
    health: Cell<Health>,
    /// Since when it has been in its state.
    since: Cell<Instant>,
    failures: Cell<u32>,
    /// When the current incident began: the first loss of a connection
    /// made before it.
    incident: Cell<Option<Instant>>,
    backoff: Cell<Duration>,
    retry_at: Cell<Instant>,
    /// Sessions connected to it now.
    pub connected: Gauge,
    /// Sessions that connected to it after losing a pool connection.
    pub reconnects: Counter,
    /// Connection attempts that failed.
    pub connect_failures: Counter,
    /// Times it went down while in use, so that sessions moved elsewhere.
    pub failovers: Counter,
    /// Time it was the pool new sessions go to, before `active_since`.
    active_for: Cell<Duration>,
    /// A login (as sent upstream) and password the pool authorized lately,
    /// for probes: a pool may send work only to an authorized worker.
    login: std::cell::RefCell<Option<(String, Option<String>)>>,
}

impl Entry {
    /// Its health now.
    pub fn health(&self) -> Health {
        self.health.get()
    }

    /// Since when it has been in its state.
    pub fn since(&self) -> Instant {
        self.since.get()
    }

    /// When a pool that is down is probed next.
    pub fn retry_at(&self) -> Instant {
        self.retry_at.get()
    }

    /// Notes a login the pool authorized (as sent upstream), for probes.
    pub fn remember_login(&self, name: &str, password: Option<&str>) {
        let mut login = self.login.borrow_mut();
        if login.as_ref().is_none_or(|(n, _)| n != name) {
            *login = Some((name.to_string(), password.map(str::to_string)));
        }
    }

    /// The login and password a probe authorizes with: the account alone
    /// when logins are rewritten, else the last login the pool authorized.
    pub fn probe_login(&self) -> Option<(String, String)> {
        let password = self.target.password.clone();
        if let Some((name, miner_password)) = self.login.borrow().clone() {
            // The password goes with the login, as the sessions send it:
            // the configured one only for rewritten logins.
            let rewritten = !self.target.rewriter.account().is_empty();
            let password = if rewritten { password.or(miner_password) } else { miner_password };
            return Some((name, password.unwrap_or_else(|| "x".into())));
        }
        let account = self.target.rewriter.account();
        (!account.is_empty()).then(|| (account.to_string(), password.unwrap_or_else(|| "x".into())))
    }
}

/// Every pool, and the one in use.
#[derive(Debug)]
pub struct Pools {
    entries: Vec<Entry>,
    /// The failover settings.
    pub failover: Failover,
    /// The pool new sessions go to, and since when.
    active: Cell<(Option<usize>, Instant)>,
    /// Closed (and replaced) on every change of state: a broadcast. Never
    /// sent on: the pump reads "changed" from the closed flag alone.
    changed: std::cell::RefCell<(Sender<()>, Receiver<()>)>,
    rng: Cell<u64>,
}

impl Pools {
    /// The pools in priority order (the primary first; at least one).
    pub fn new(targets: Vec<Target>, failover: Failover, now: Instant) -> Pools {
        let entries = targets
            .into_iter()
            .map(|target| Entry {
                target,
                health: Cell::new(Health::Unknown),
                since: Cell::new(now),
                failures: Cell::new(0),
                incident: Cell::new(None),
                backoff: Cell::new(FIRST_RETRY),
                retry_at: Cell::new(now),
                connected: Gauge::default(),
                reconnects: Counter::default(),
                connect_failures: Counter::default(),
                failovers: Counter::default(),
                active_for: Cell::new(Duration::ZERO),
                login: std::cell::RefCell::new(None),
            })
            .collect::<Vec<_>>();
        // The wall clock's nanoseconds and the process id: gateways started
        // alike still draw different jitter (`now.elapsed()` here is ~0).
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = mix(clock ^ u64::from(std::process::id()) << 32);
        let pools = Pools {
            active: Cell::new((None, now)),
            entries,
            failover,
            changed: std::cell::RefCell::new(smol::channel::bounded(1)),
            rng: Cell::new(seed | 1),
        };
        pools.refresh(now);
        pools
    }

    /// One pool (`pool.invalid:3333`, named `pool`) whose logins are
    /// rewritten by `rewriter`: for tests and benchmarks of sessions.
    pub fn single(rewriter: Rewriter, password: Option<String>) -> Pools {
        let target =
            Target { name: "pool".into(), address: HostPort::new("pool.invalid", 3333), rewriter, password };
        Pools::new(vec![target], Failover::default(), Instant::now())
    }

    /// Every pool, in priority order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Pool `i` (`i` comes from [`Pools::pick`] or [`Pools::by_address`]).
    pub fn get(&self, i: usize) -> &Entry {
        &self.entries[i.min(self.entries.len() - 1)]
    }

    /// The pool whose address is `target` (`host:port`, as in a `CONNECT`).
    pub fn by_address(&self, target: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.target.address.matches(target))
    }

    /// Where a new session goes: the first pool up (or not known to be
    /// failing), else the first one recovering; else nowhere yet.
    pub fn pick(&self) -> Choice {
        let usable = |h: Health| matches!(h, Health::Up | Health::Unknown | Health::Failing);
        let found = self
            .entries
            .iter()
            .position(|e| usable(e.health.get()))
            .or_else(|| self.entries.iter().position(|e| e.health.get() == Health::Recovering));
        found.map_or(Choice::Wait, Choice::Use)
    }

    /// Whether sessions may use pool `i` now (not down).
    pub fn usable(&self, i: usize) -> bool {
        self.get(i).health.get() != Health::Down
    }

    /// The pool new sessions go to, if any.
    pub fn active(&self) -> Option<usize> {
        self.active.get().0
    }

    /// Whether a session on pool `on` should move to a pool of higher
    /// priority: `Some(pool)` once that one is up (it stayed healthy for
    /// `switch_back_after`).
    pub fn better_than(&self, on: usize) -> Option<usize> {
        self.entries[..on.min(self.entries.len())].iter().position(|e| e.health.get() == Health::Up)
    }

    /// When a session should move back to a better pool: a share of
    /// [`MAX_SWITCH_SPREAD`] (or a quarter of the window, when shorter) after
    /// that pool came up, chosen by the session's `seed`.
    pub fn switch_at(&self, better: usize, seed: u64) -> Instant {
        let over = MAX_SWITCH_SPREAD.min(self.failover.switch_back_after / 4);
        self.get(better).since() + spread(seed, over)
    }

    /// A session has work from pool `i`: it is up, unless probes are still
    /// watching it recover.
    pub fn working(&self, i: usize, now: Instant) {
        let e = self.get(i);
        e.failures.set(0);
        e.backoff.set(FIRST_RETRY);
        if matches!(e.health.get(), Health::Unknown | Health::Failing) {
            self.set(i, Health::Up, now, None);
        }
    }

    /// A connection to pool `i` failed for `loss`; `since` is when it was
    /// made (`None`: it never was). The pool is taken for down at once on
    /// a decisive loss, else after `failover_after` in a row; then it is
    /// probed again after its backoff.
    pub fn failed(&self, i: usize, loss: Loss, now: Instant, since: Option<Instant>) {
        let e = self.get(i);
        if matches!(loss, Loss::Refused | Loss::Unreachable) {
            e.connect_failures.inc();
        }
        match e.health.get() {
            Health::Down => {}
            Health::Recovering => self.down(i, loss, now),
            _ => {
                // Connections the pool drops together (made before the
                // incident began, lost within a second of it) are one
                // failure, not one each; a connection made since that fails
                // again is a new failure.
                let same = match (e.incident.get(), since) {
                    (Some(start), Some(since)) => {
                        since <= start
                            && now.saturating_duration_since(start) < INCIDENT
                            && e.failures.get() > 0
                    }
                    _ => false,
                };
                if !same {
                    e.incident.set(Some(now));
                }
                let failures = e.failures.get() + u32::from(!same);
                e.failures.set(failures);
                if loss.is_decisive() || failures >= self.failover.failover_after {
                    self.down(i, loss, now);
                } else if e.health.get() != Health::Failing {
                    self.set(i, Health::Failing, now, Some(loss));
                }
            }
        }
    }

    /// A probe of pool `i` failed: it stays down, and waits longer.
    pub fn probe_failed(&self, i: usize, now: Instant) {
        let e = self.get(i);
        e.connect_failures.inc();
        self.schedule(i, now);
    }

    /// A probe found pool `i` sending work: it is recovering, and up once it
    /// stays healthy for `switch_back_after`.
    pub fn recovering(&self, i: usize, now: Instant) {
        if self.get(i).health.get() == Health::Down {
            self.set(i, Health::Recovering, now, None);
        }
    }

    /// Pool `i` stayed healthy through the window (or a session has work
    /// from it and nothing better is up): up.
    pub fn recovered(&self, i: usize, now: Instant) {
        let e = self.get(i);
        e.failures.set(0);
        e.backoff.set(FIRST_RETRY);
        if e.health.get() != Health::Up {
            self.set(i, Health::Up, now, None);
        }
    }

    /// The login and password a probe of pool `i` authorizes with (see
    /// [`Entry::probe_login`]); for a pool that passes logins through and
    /// has authorized none yet, a login another such pool authorized (solo
    /// pools take the same payout address).
    pub fn probe_login(&self, i: usize) -> Option<(String, String)> {
        self.get(i).probe_login().or_else(|| {
            let passes = |e: &&Entry| e.target.rewriter.account().is_empty();
            if !passes(&self.get(i)) {
                return None;
            }
            self.entries.iter().filter(passes).find_map(|e| {
                let (name, password) = e.login.borrow().clone()?;
                Some((name, password.unwrap_or_else(|| "x".into())))
            })
        })
    }

    /// A receiver that completes (with an error) at the next change.
    pub fn changed(&self) -> Receiver<()> {
        self.changed.borrow().1.clone()
    }

    /// Seconds each pool has been the one new sessions go to.
    pub fn active_seconds(&self, i: usize, now: Instant) -> f64 {
        let (active, since) = self.active.get();
        let mut total = self.get(i).active_for.get();
        if active == Some(i) {
            total += now.saturating_duration_since(since);
        }
        total.as_secs_f64()
    }

    fn down(&self, i: usize, loss: Loss, now: Instant) {
        // The backoff goes on growing for a pool that flaps; work resets it.
        self.schedule(i, now);
        let was_active = self.active() == Some(i);
        self.set(i, Health::Down, now, Some(loss));
        if was_active && self.active().is_some_and(|now| now != i) {
            self.get(i).failovers.inc();
        }
    }

    /// Sets the next probe of pool `i` after its backoff with jitter (half
    /// to all of it), and doubles the backoff up to `retry_max`.
    fn schedule(&self, i: usize, now: Instant) {
        let e = self.get(i);
        let backoff = e.backoff.get().min(self.failover.retry_max);
        let half = backoff / 2;
        let jitter = Duration::from_nanos(self.random() % (half.as_nanos() as u64).max(1));
        e.retry_at.set(now + half + jitter);
        e.backoff.set((backoff * 2).min(self.failover.retry_max));
    }

    fn set(&self, i: usize, health: Health, now: Instant, loss: Option<Loss>) {
        let e = self.get(i);
        let was = e.health.replace(health);
        e.since.set(now);
        let name = &e.target.name;
        match (health, loss) {
            (Health::Down, Some(loss)) => {
                let wait = e.retry_at.get().saturating_duration_since(now).as_secs_f64();
                log::warn!("pool {name} is down ({loss}); next try in {wait:.1}s");
            }
            (Health::Failing, Some(loss)) => log::warn!("pool {name} failing ({loss}); retrying"),
            (Health::Recovering, _) => log::info!(
                "pool {name} sends work again; in use again after {}s healthy",
                self.failover.switch_back_after.as_secs()
            ),
            (Health::Up, _) if was == Health::Unknown => log::info!("pool {name} is up"),
            (Health::Up, _) => log::info!("pool {name} is up again (was {})", was.label()),
            _ => {}
        }
        self.refresh(now);
        // Wake every waiter: close the channel they hold, hand out a new one.
        let mut changed = self.changed.borrow_mut();
        changed.0.close();
        *changed = smol::channel::bounded(1);
    }

    /// Recomputes the pool in use; logs a move.
    fn refresh(&self, now: Instant) {
        let (was, since) = self.active.get();
        let now_active = match self.pick() {
            Choice::Use(i) => Some(i),
            Choice::Wait => None,
        };
        if was == now_active {
            return;
        }
        if let Some(was) = was {
            let e = self.get(was);
            e.active_for.set(e.active_for.get() + now.saturating_duration_since(since));
        }
        self.active.set((now_active, now));
        match (was, now_active) {
            (_, Some(i)) if self.entries.len() > 1 => {
                log::info!("new sessions go to pool {}", self.get(i).target.name)
            }
            (Some(_), None) => log::warn!("no pool is reachable; miners wait for one to come back"),
            _ => {}
        }
    }

    /// A pseudo-random number (xorshift): jitter, not secrets.
    fn random(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        x
    }
}

/// A share of `over` of the session's own, picked by `seed`.
pub fn spread(seed: u64, over: Duration) -> Duration {
    let nanos = over.as_nanos() as u64;
    Duration::from_nanos(if nanos == 0 { 0 } else { mix(seed) % nanos })
}

/// Spreads a seed over 64 bits (splitmix64's finaliser).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
