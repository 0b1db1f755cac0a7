//! The writer thread: owns the open books, commits queued events in batches
//! every `commit_interval` and on shutdown, and runs CLI commands between
//! batches (committing first, so answers include every share queued).
//!
//! Runs off the executor thread, so a slow fsync never stalls a share.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::db::{Books, StoreError};
use super::{Day, Event};

/// A message to the writer.
#[derive(Debug)]
pub enum Msg {
    /// Something to record.
    Event(Event),
    /// A CLI command, answered on the channel.
    Command(Command, smol::channel::Sender<Result<String, String>>),
    /// Commit what is queued and stop.
    Shutdown,
}

/// What the CLI asks of the books.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Workers' totals for a day (today when `None`).
    Workers(Option<Day>),
    /// Records a reward.
    EarningsAdd {
        /// The day.
        day: Day,
        /// The pool (the configured one when `None`).
        pool: Option<String>,
        /// Reward in satoshis.
        reward: u64,
        /// Hashrate the pool reported, hashes per second.
        hashrate: Option<f64>,
    },
    /// Lists rewards.
    EarningsList,
    /// Computes, stores and shows a day's split.
    Distribute {
        /// The day.
        day: Day,
        /// The pool (the configured one when `None`).
        pool: Option<String>,
    },
    /// Shows stored splits.
    Distributions(Option<Day>),
}

impl Command {
    /// One line for the control socket.
    pub fn to_line(&self) -> String {
        let opt = |d: &Option<Day>| d.map_or("-".to_string(), |d| d.to_string());
        let name = |p: &Option<String>| p.clone().unwrap_or_else(|| "-".into());
        match self {
            Command::Workers(d) => format!("workers {}", opt(d)),
            Command::EarningsAdd { day, pool, reward, hashrate } => {
                format!(
                    "earnings-add {day} {} {reward} {}",
                    name(pool),
                    hashrate.map_or("-".into(), |h| h.to_string())
                )
            }
            Command::EarningsList => "earnings-list".into(),
            Command::Distribute { day, pool } => format!("distribute {day} {}", name(pool)),
            Command::Distributions(d) => format!("distributions {}", opt(d)),
        }
    }

    /// Parses [`Command::to_line`]'s output.
    pub fn from_line(line: &str) -> Result<Command, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let day = |s: &str| s.parse::<Day>();
        let opt_day = |s: &str| if s == "-" { Ok(None) } else { day(s).map(Some) };
        let name = |s: &str| if s == "-" { None } else { Some(s.to_string()) };
        match words.as_slice() {
            ["workers", d] => Ok(Command::Workers(opt_day(d)?)),
            ["earnings-add", d, pool, reward, rate] => Ok(Command::EarningsAdd {
                day: day(d)?,
                pool: name(pool),
                reward: reward.parse().map_err(|_| format!("bad reward {reward:?}"))?,
                hashrate: if *rate == "-" {
                    None
                } else {
                    Some(rate.parse().map_err(|_| format!("bad hashrate {rate:?}"))?)
                },
            }),
            ["earnings-list"] => Ok(Command::EarningsList),
            ["distribute", d, pool] => Ok(Command::Distribute { day: day(d)?, pool: name(pool) }),
            ["distributions", d] => Ok(Command::Distributions(opt_day(d)?)),
            _ => Err(format!("unknown command {line:?}")),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Runs `command` against `books`; the text to print.
pub fn execute(books: &mut Books, command: &Command) -> Result<String, StoreError> {
    let now = unix_now();
    let setting = books.setting().clone();
    let pool = |p: &Option<String>| p.clone().unwrap_or_else(|| setting.pool.clone());
    match command {
        Command::Workers(day) => {
            let today = Day::of(now, setting.settlement);
            let day = day.unwrap_or(today);
            // Today's hashrate is over the part of the day that has passed.
            let secs =
                if day == today { now.saturating_sub(day.start(setting.settlement)).max(1) } else { 86_400 };
            let rows = books.day_totals(day)?;
            let mut out = format!("workers on {day} (pool {})\n", setting.pool);
            let _ = writeln!(
                out,
                "{:<32} {:<20} {:>9} {:>9} {:>7} {:>16} {:>12}  LAST SEEN",
                "LOGIN", "MINER", "ACCEPTED", "REJECTED", "STALE", "DIFFICULTY", "HASHRATE"
            );
            for (login, miner, t, last) in rows {
                let rate = crate::status::hashrate(t.difficulty * 4_294_967_296.0 / secs as f64);
                let last = last.map_or("-".into(), |l| {
                    format!("{} ago", crate::status::age(now.saturating_sub(l) as f64))
                });
                let rejected: u64 = t.rejected.iter().sum();
                let _ = writeln!(
                    out,
                    "{login:<32} {miner:<20} {:>9} {rejected:>9} {:>7} {:>16.4} {rate:>12}  {last}",
                    t.accepted, t.stale, t.difficulty
                );
            }
            Ok(out)
        }
        Command::EarningsAdd { day, pool: p, reward, hashrate } => {
            let p = pool(p);
            books.add_earning(*day, &p, *reward, *hashrate)?;
            Ok(format!("recorded {reward} sats for pool {p} on {day}\n"))
        }
        Command::EarningsList => {
            let mut out =
                format!("{:<10} {:<20} {:>14} {:>14}\n", "DATE", "POOL", "REWARD SATS", "POOL HASHRATE");
            for (day, p, reward, rate) in books.earnings()? {
                let rate = rate.map_or("-".into(), crate::status::hashrate);
                let _ = writeln!(out, "{day} {p:<20} {reward:>14} {rate:>14}");
            }
            Ok(out)
        }
        Command::Distribute { day, pool: p } => {
            books.distribute(*day, &pool(p), now)?;
            books.render_distributions(Some(*day))
        }
        Command::Distributions(day) => books.render_distributions(*day),
    }
}

/// Counters the writer keeps for the metrics page.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Commits done.
    pub commits: AtomicU64,
    /// Events committed.
    pub events: AtomicU64,
    /// Commits that failed (their events are lost, and counted here).
    pub failed_events: AtomicU64,
}

/// Starts the writer thread.
pub fn spawn(
    mut books: Books,
    rx: Receiver<Msg>,
    interval: Duration,
    stats: Arc<WriterStats>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("books".into()).spawn(move || {
        let mut batch: Vec<Event> = Vec::new();
        let mut due = Instant::now() + interval;
        let flush = |books: &mut Books, batch: &mut Vec<Event>| {
            if batch.is_empty() {
                return;
            }
            match books.commit(batch, unix_now()) {
                Ok(()) => {
                    stats.commits.fetch_add(1, Ordering::Relaxed);
                    stats.events.fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    log::error!("books: commit of {} events failed: {e}", batch.len());
                    stats.failed_events.fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
            }
            batch.clear();
        };
        loop {
            match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
                Ok(Msg::Event(e)) => {
                    batch.push(e);
                    // Under a steady stream of events the timeout never fires:
                    // commit on schedule anyway.
                    if Instant::now() >= due {
                        flush(&mut books, &mut batch);
                        due = Instant::now() + interval;
                    }
                }
                Ok(Msg::Shutdown) => {
                    while let Ok(Msg::Event(e)) = rx.try_recv() {
                        batch.push(e);
                    }
                    flush(&mut books, &mut batch);
                    log::debug!("books: final commit done");
                    return;
                }
                Ok(Msg::Command(cmd, reply)) => {
                    flush(&mut books, &mut batch);
                    let answer = execute(&mut books, &cmd).map_err(|e| e.to_string());
                    let _ = reply.send_blocking(answer);
                }
                Err(RecvTimeoutError::Timeout) => {
                    flush(&mut books, &mut batch);
                    due = Instant::now() + interval;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    flush(&mut books, &mut batch);
                    log::debug!("books: final commit done");
                    return;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        let day: Day = "2026-11-25".parse().unwrap();
        for cmd in [
            Command::Workers(None),
            Command::Workers(Some(day)),
            Command::EarningsAdd { day, pool: Some("ocean".into()), reward: 123, hashrate: Some(1.5e12) },
            Command::EarningsAdd { day, pool: None, reward: 0, hashrate: None },
            Command::EarningsList,
            Command::Distribute { day, pool: None },
            Command::Distributions(Some(day)),
        ] {
            assert_eq!(Command::from_line(&cmd.to_line()).unwrap(), cmd);
        }
        assert!(Command::from_line("drop tables").is_err());
    }
}
