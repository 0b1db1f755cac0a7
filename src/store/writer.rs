//! The writer thread: owns the open books, commits queued events in batches
//! every `commit_interval` and on shutdown, and runs CLI commands between
//! batches (committing first, so answers include every share queued).
//!
//! Runs off the executor thread, so a slow fsync never stalls a share. It
//! sleeps until a commit (or RAM mode's save) is due, unless the queue
//! ([`super::queue`]) wakes it: for a message, or for events past its
//! high-water mark; a share on its own never wakes it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc::TryRecvError;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::db::{Booked, Books, StoreError};
use super::queue::Inbox;
use super::ram::Keeper;
use super::{CLOCK_FLOOR_SECS, Day, EVENT_QUEUE, Event};
use crate::check::Verdict;
use crate::check::target::hashes;
use crate::worker::OVERFLOW_WORKER;

/// A message to the writer (events go on the queue, not here).
#[derive(Debug)]
pub enum Msg {
    /// A CLI command, answered on the channel.
    Command(Command, smol::channel::Sender<Result<String, String>>),
    /// `books backup`: the books file's bytes as of a commit of everything
    /// queued, answered on the channel.
    Snapshot(smol::channel::Sender<Result<Vec<u8>, String>>),
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
        /// The pool (the primary when `None`).
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
        /// The pool (the primary when `None`).
        pool: Option<String>,
    },
    /// Shows stored splits.
    Distributions(Option<Day>),
    /// `books check`: redb's integrity check and the books' invariants.
    Check,
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
            Command::Check => "check".into(),
        }
    }

    /// Whether the command writes to the books (rather than only reading).
    pub fn changes_books(&self) -> bool {
        matches!(self, Command::EarningsAdd { .. } | Command::Distribute { .. })
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
            ["check"] => Ok(Command::Check),
            _ => Err(format!("unknown command {line:?}")),
        }
    }
}

use crate::clock::unix_secs as unix_now;

/// Runs `command` against `books`; the text to print.
pub fn execute(books: &mut Books, command: &Command) -> Result<String, StoreError> {
    let now = unix_now();
    let setting = books.setting().clone();
    let pool = |p: &Option<String>| p.clone().unwrap_or_else(|| setting.primary().name.clone());
    match command {
        Command::Workers(day) => {
            let today = Day::of(now, setting.settlement);
            let day = day.unwrap_or(today);
            // Today's hashrate is over the part of the day that has passed.
            let secs =
                if day == today { now.saturating_sub(day.start(setting.settlement)).max(1) } else { 86_400 };
            let rows = books.day_totals(day)?;
            let checks = books.day_checks(day)?;
            let best: HashMap<String, f64> =
                books.best_shares()?.into_iter().map(|(login, d, _)| (login, d)).collect();
            // A worker's day is its work on every pool, summed.
            let pools = books.day_pools(day)?;
            let mut out = match pools.as_slice() {
                [] => format!("workers on {day} (no shares on any pool)\n"),
                [one] => format!("workers on {day} (pool {one})\n"),
                all => format!("workers on {day} (pools {}, summed)\n", all.join(", ")),
            };
            // Shortened logins are at most 39 characters wide.
            let shown: Vec<String> = rows.iter().map(|r| crate::web::page::short_login(&r.0)).collect();
            let w = shown.iter().map(|s| s.chars().count()).fold(32, usize::max);
            let _ = writeln!(
                out,
                "{:<w$} {:<20} {:>9} {:>9} {:>7} {:>16} {:>12} {:>9} {:>12} {:>6} {:>10} {:>10}  LAST SEEN",
                "LOGIN",
                "MINER",
                "ACCEPTED",
                "REJECTED",
                "STALE",
                "DIFFICULTY",
                "HASHRATE",
                "VALID",
                "TRUE RATE",
                "HW ERR",
                "BEST DAY",
                "BEST EVER"
            );
            let rate = |difficulty: f64| crate::status::hashrate(hashes(difficulty) / secs as f64);
            for ((login, miner, t, last), shown) in rows.into_iter().zip(shown) {
                let last = last.map_or("-".into(), |l| {
                    format!("{} ago", crate::status::age(now.saturating_sub(l) as f64))
                });
                let rejected: u64 = t.rejected.iter().sum();
                let c = checks.get(&login).copied().unwrap_or_default();
                let best_ever = best.get(&login).copied().unwrap_or(0.0);
                let _ = writeln!(
                    out,
                    "{shown:<w$} {miner:<20} {:>9} {rejected:>9} {:>7} {:>16} {:>12} {:>9} {:>12} {:>5.1}% {:>10} {:>10}  {last}",
                    t.accepted,
                    t.stale,
                    crate::status::difficulty_sum(t.difficulty),
                    rate(t.difficulty),
                    c.checked[Verdict::Valid.index()],
                    rate(c.valid_difficulty),
                    c.hardware_error_ratio() * 100.0,
                    crate::status::difficulty(c.best),
                    crate::status::difficulty(best_ever),
                );
            }
            let disputed: u64 = checks.values().map(|c| c.disputed).sum();
            if disputed > 0 {
                let _ =
                    writeln!(out, "{disputed} shares the pool accepted failed the proxy's check: not booked");
            }
            let blocks = books.blocks()?;
            if !blocks.is_empty() {
                let _ = writeln!(out, "\nBLOCKS FOUND ({})", blocks.len());
                for b in blocks.iter().rev().take(20) {
                    let ago = crate::status::age(now.saturating_sub(b.at_ms / 1000) as f64);
                    let login = crate::web::page::short_login(&b.login);
                    let _ = writeln!(out, "  {ago} ago  {login:<32} pool {}  {}", b.pool, b.hash);
                }
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
            let pool = pool(p);
            books.distribute(*day, &pool, now)?;
            // The split just made; `distributions` lists every pool's.
            books.render_distributions(Some(*day), Some(&pool))
        }
        Command::Distributions(day) => books.render_distributions(*day, None),
        Command::Check => books.check()?.verdict(),
    }
}

/// Events in one batch, at most: a flood of shares commits early rather than
/// piling up in memory for a whole `commit_interval`.
pub const MAX_BATCH_EVENTS: usize = 4 * EVENT_QUEUE;

/// Counters the writer keeps for the metrics page.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Commits done.
    pub commits: AtomicU64,
    /// Events committed.
    pub events: AtomicU64,
    /// Events lost because their commit failed or the books could not be
    /// opened (they are dropped, not kept: memory stays bounded).
    pub failed_events: AtomicU64,
    /// Commits and opens of the books that failed.
    pub write_errors: AtomicU64,
    /// Events not booked because they were stamped before the clock was set.
    pub clock_unset: AtomicU64,
    /// Accepted shares not booked because their difficulty was not finite and positive.
    pub bad_difficulty: AtomicU64,
    /// Accepted shares of new logins past the day's cap, booked under `_other`.
    pub over_cap: AtomicU64,
    /// Times the writer thread woke from its sleep: for a commit or save
    /// due, a message, or a queue past its high-water mark; never per event.
    pub wakeups: AtomicU64,
    /// What the books wrote to their storage.
    pub io: Arc<super::backend::StoreIo>,
    /// 0 until the books were first opened, then [`WRITABLE`] or [`FAILING`].
    state: AtomicU8,
}

const WRITABLE: u8 = 1;
const FAILING: u8 = 2;

impl WriterStats {
    /// Whether the books opened and the last commit succeeded.
    pub fn writable(&self) -> bool {
        self.state.load(Ordering::Relaxed) == WRITABLE
    }

    /// Counts a failed commit or open; logs the first of a run of failures
    /// only, so a full disk gives one line, not one per commit interval.
    pub fn failed(&self, e: &StoreError) {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        if self.state.swap(FAILING, Ordering::Relaxed) != FAILING {
            let what = match e {
                StoreError::Save { .. } => "the books stay in memory, and the save is tried again",
                _ => "proxying goes on, events are counted and dropped until the books can be written",
            };
            log::error!("{}; {what}", chain(e));
        }
    }

    /// Records a successful commit (or the first open); logs when it ends a
    /// run of failures.
    pub fn succeeded(&self) {
        if self.state.swap(WRITABLE, Ordering::Relaxed) == FAILING {
            log::warn!("books: writable again");
        }
    }
}

/// `e` and its causes, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

/// Opens the books again after a failure.
pub type Opener = Box<dyn FnMut() -> Result<Books, StoreError> + Send>;

/// The writer thread's state: the books while they can be written, and how
/// to open them again when they cannot.
struct Writer {
    books: Option<Books>,
    open: Opener,
    stats: Arc<WriterStats>,
    /// In RAM mode: the file the books are saved to, how often, and when next.
    keeper: Option<Saving>,
    /// Whether events are being turned away for an unset clock (logged once).
    clock_unset: bool,
    /// Whether an event named a pool past the configured ones (logged once).
    unknown_pool: bool,
}

impl Writer {
    /// The open books, opening them again if the last commit failed: redb
    /// refuses every write after an I/O error until the file is reopened.
    /// Opening proves little (a full disk still opens), so only the next
    /// successful commit counts as writable again.
    fn books(&mut self) -> Option<&mut Books> {
        if self.books.is_none() {
            match (self.open)() {
                Ok(books) => self.books = Some(books),
                Err(e) => self.stats.failed(&e),
            }
        }
        self.books.as_mut()
    }

    /// Commits `batch` and empties it, whatever the outcome.
    fn flush(&mut self, batch: &mut Vec<Event>) {
        if batch.is_empty() {
            return;
        }
        let lost = batch.len() as u64;
        let result = self.books().map(|books| books.commit(batch, unix_now()));
        batch.clear();
        let stats = self.stats.clone();
        match result {
            Some(Ok(booked)) => {
                match &mut self.keeper {
                    // In memory a commit proves nothing about the file.
                    Some(saving) => saving.committed(),
                    None => stats.succeeded(),
                }
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats.events.fetch_add(booked.events, Ordering::Relaxed);
                stats.clock_unset.fetch_add(booked.clock_unset, Ordering::Relaxed);
                stats.bad_difficulty.fetch_add(booked.bad_difficulty, Ordering::Relaxed);
                stats.over_cap.fetch_add(booked.over_cap, Ordering::Relaxed);
                self.note(&booked);
            }
            Some(Err(e)) => {
                stats.failed(&e);
                stats.failed_events.fetch_add(lost, Ordering::Relaxed);
                self.books = None;
            }
            None => {
                stats.failed_events.fetch_add(lost, Ordering::Relaxed);
            }
        }
    }

    /// In RAM mode, commits what is queued and writes the books to their
    /// file when a commit landed since the last save. A failed save is
    /// tried again at the next commit interval, not a whole flush interval
    /// later. Returns the failure, if the save failed.
    fn save(&mut self, batch: &mut Vec<Event>) -> Option<StoreError> {
        self.keeper.as_ref()?;
        self.flush(batch);
        let saving = self.keeper.as_mut()?;
        let started = Instant::now();
        let result = saving.save();
        saving.due =
            Instant::now() + if result.is_err() { saving.retry.min(saving.every) } else { saving.every };
        match result {
            Ok(Some(path)) => {
                self.stats.succeeded();
                log::debug!("books: saved to {} in {:?}", path.display(), started.elapsed());
                None
            }
            Ok(None) => None,
            Err(e) => {
                self.stats.failed(&e);
                Some(e)
            }
        }
    }

    /// Logs what a commit turned away, once per episode.
    fn note(&mut self, booked: &Booked) {
        if booked.clock_unset > 0 && !self.clock_unset {
            self.clock_unset = true;
            log::warn!(
                "books: the clock reads {}, before {}: events are counted, not booked, until it is set",
                Day::of(unix_now(), 0),
                Day::of(CLOCK_FLOOR_SECS, 0)
            );
        } else if booked.clock_unset == 0 && booked.events > 0 && self.clock_unset {
            self.clock_unset = false;
            log::info!("books: the clock is set; booking again");
        }
        if booked.unknown_pool > 0 && !self.unknown_pool {
            self.unknown_pool = true;
            log::error!(
                "books: {} events named a pool index past the configured pools; booked under the primary (logged once)",
                booked.unknown_pool
            );
        }
        if let (Some(day), Some(books)) = (booked.cap_reached, &self.books) {
            log::warn!(
                "books: {day} reached store.max_new_workers_per_day ({}): shares of further new logins that day are booked under {OVERFLOW_WORKER}",
                books.setting().max_new_workers_per_day
            );
        }
    }

    /// The books file's bytes for a backup, after committing what is queued:
    /// in RAM mode the image in memory, else the file as the last commit
    /// left it (the writer is the only one that commits, and it is here).
    fn snapshot(&mut self, batch: &mut Vec<Event>) -> Result<Vec<u8>, String> {
        self.flush(batch);
        if let Some(saving) = &self.keeper
            && let Some(keeper) = saving.keeper().as_ref()
        {
            return Ok(keeper.ram().with_image(|image| image.to_vec()));
        }
        let Some(books) = self.books() else {
            return Err("the books cannot be opened now; see the daemon's log".into());
        };
        let path = books.path().to_path_buf();
        std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    }

    /// Runs a CLI command, committing what is queued first. In RAM mode a
    /// command that changes the books (a reward, a split) is written to the
    /// file at once: a hand-typed entry is not left to the next flush.
    fn command(&mut self, batch: &mut Vec<Event>, cmd: &Command) -> Result<String, String> {
        self.flush(batch);
        let answer = match self.books() {
            Some(books) => execute(books, cmd).map_err(|e| chain(&e)),
            None => Err("the books cannot be opened now; see the daemon's log".into()),
        };
        if *cmd == Command::Check && answer.is_err() {
            // A failed integrity check leaves redb without its allocator
            // state: open the books again (and hold their lock) at once.
            self.books = None;
            self.books();
        }
        let Ok(text) = answer else { return answer };
        if !cmd.changes_books() {
            return Ok(text);
        }
        if let Some(saving) = &mut self.keeper {
            saving.committed();
        }
        match self.save(batch) {
            None => Ok(text),
            Some(e) => Ok(format!(
                "{text}warning: kept in memory, not yet written to the books' file ({}); the save is tried again\n",
                chain(&e)
            )),
        }
    }
}

/// RAM mode's saving: the books in memory and their file (shared with the
/// opener, which loads them), how often they are written, and when next.
#[derive(Debug)]
pub struct Saving {
    keeper: Arc<Mutex<Option<Keeper>>>,
    every: Duration,
    /// How soon a failed save is tried again (the commit interval).
    retry: Duration,
    due: Instant,
}

impl Saving {
    /// Saves the books that `keeper` holds once loaded every `every`, and
    /// at shutdown; a failed save again after `retry`.
    pub fn new(keeper: Arc<Mutex<Option<Keeper>>>, every: Duration, retry: Duration) -> Saving {
        Saving { keeper, every, retry, due: Instant::now() + every }
    }

    fn keeper(&self) -> std::sync::MutexGuard<'_, Option<Keeper>> {
        self.keeper.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn committed(&self) {
        if let Some(keeper) = self.keeper().as_mut() {
            keeper.committed();
        }
    }

    /// Saves if there is something new: the file written, or `None`.
    fn save(&self) -> Result<Option<std::path::PathBuf>, StoreError> {
        let mut keeper = self.keeper();
        let Some(keeper) = keeper.as_mut() else { return Ok(None) };
        Ok(keeper.save()?.then(|| keeper.path().to_path_buf()))
    }
}

/// Starts the writer thread on the books `first` opened (or the error it
/// gave); `open` opens them again after a failure. While the books cannot be
/// written the writer keeps taking events (counting them lost) and tries to
/// open them again every `interval`. With `saving` (RAM mode) the books are
/// also written whole to their file on its schedule and at shutdown. The
/// thread returns whether everything was written at the end (false only
/// when RAM mode's last save failed).
pub fn spawn(
    first: Result<Books, StoreError>,
    open: Opener,
    inbox: Inbox,
    interval: Duration,
    stats: Arc<WriterStats>,
    saving: Option<Saving>,
) -> std::io::Result<JoinHandle<bool>> {
    let books = match first {
        Ok(books) => {
            stats.succeeded();
            Some(books)
        }
        Err(e) => {
            stats.failed(&e);
            None
        }
    };
    let mut writer = Writer { books, open, stats, keeper: saving, clock_unset: false, unknown_pool: false };
    let attach = inbox.attach();
    let handle = std::thread::Builder::new().name("books".into()).spawn(move || {
        let mut batch: Vec<Event> = Vec::new();
        let mut due = Instant::now() + interval;
        loop {
            // Events first: a message behind them finds them in the batch.
            inbox.rearm();
            if writer.take(&inbox, &mut batch) {
                due = Instant::now() + interval;
            }
            loop {
                match inbox.message() {
                    // The events recorded before the message was sent are
                    // queued by now: a command's answer includes them.
                    Ok(Msg::Command(cmd, reply)) => {
                        if writer.take(&inbox, &mut batch) {
                            due = Instant::now() + interval;
                        }
                        let answer = writer.command(&mut batch, &cmd);
                        let _ = reply.send_blocking(answer);
                    }
                    Ok(Msg::Snapshot(reply)) => {
                        if writer.take(&inbox, &mut batch) {
                            due = Instant::now() + interval;
                        }
                        let image = writer.snapshot(&mut batch);
                        let _ = reply.send_blocking(image);
                    }
                    Ok(Msg::Shutdown) | Err(TryRecvError::Disconnected) => {
                        return writer.finish(&inbox, batch);
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
            if writer.keeper.as_ref().is_some_and(|s| Instant::now() >= s.due) {
                writer.save(&mut batch);
                due = Instant::now() + interval;
            } else if Instant::now() >= due {
                if batch.is_empty() {
                    // Nothing to commit: still reopen failed books, so a
                    // command finds them open.
                    writer.books();
                }
                writer.flush(&mut batch);
                due = Instant::now() + interval;
            }
            // An unpark since the queue was last looked at returns at once.
            let next = writer.keeper.as_ref().map_or(due, |s| s.due.min(due));
            std::thread::park_timeout(next.saturating_duration_since(Instant::now()));
            writer.stats.wakeups.fetch_add(1, Ordering::Relaxed);
        }
    })?;
    attach.to(handle.thread().clone());
    Ok(handle)
}

impl Writer {
    /// Moves the queued events into `batch`, committing early when it
    /// reaches [`MAX_BATCH_EVENTS`] (a flood); whether it committed. Takes a
    /// queue's worth at most, so a flood faster than the commits cannot keep
    /// the writer from its messages and its schedule.
    fn take(&mut self, inbox: &Inbox, batch: &mut Vec<Event>) -> bool {
        let mut committed = false;
        for _ in 0..EVENT_QUEUE {
            let Some(event) = inbox.event() else { break };
            batch.push(event);
            if batch.len() >= MAX_BATCH_EVENTS {
                self.flush(batch);
                committed = true;
            }
        }
        committed
    }

    /// Stops: commits every event queued (recorders are turned away from
    /// here on, counted as dropped), answers the messages left, and in RAM
    /// mode saves the books a last time. Whether everything was written.
    fn finish(mut self, inbox: &Inbox, mut batch: Vec<Event>) -> bool {
        inbox.close();
        drain(inbox, &mut batch);
        self.flush(&mut batch);
        // Closed before the last save, so the file is saved as redb leaves
        // it closed: it opens without a repair.
        self.books = None;
        if let Some(e) = self.save(&mut batch) {
            log::error!("books: the last save failed: {}; the books since the last save are lost", chain(&e));
            return false;
        }
        log::debug!("books: final commit done");
        true
    }
}

/// Takes everything still queued at shutdown: events join the final batch,
/// commands are told the daemon is stopping. A command or a second
/// `Shutdown` among the messages does not end the drain; only empty queues do.
fn drain(inbox: &Inbox, batch: &mut Vec<Event>) {
    while let Ok(msg) = inbox.message() {
        match msg {
            Msg::Command(_, reply) => {
                let _ = reply.send_blocking(Err("the daemon is stopping".into()));
            }
            Msg::Snapshot(reply) => {
                let _ = reply.send_blocking(Err("the daemon is stopping".into()));
            }
            Msg::Shutdown => {}
        }
    }
    // The queue is closed: this ends.
    while let Some(event) = inbox.event() {
        batch.push(event);
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
