//! The writer thread: owns the open books, commits queued events in batches
//! every `commit_interval` and on shutdown, and runs CLI commands between
//! batches (committing first, so answers include every share queued).
//!
//! Runs off the executor thread, so a slow fsync never stalls a share.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::db::{Booked, Books, StoreError};
use super::{CLOCK_FLOOR_SECS, Day, EVENT_QUEUE, Event};
use crate::worker::OVERFLOW_WORKER;

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
            log::error!(
                "{}; proxying goes on, events are counted and dropped until the books can be written",
                chain(e)
            );
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
    /// Whether events are being turned away for an unset clock (logged once).
    clock_unset: bool,
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
                stats.succeeded();
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
        if let (Some(day), Some(books)) = (booked.cap_reached, &self.books) {
            log::warn!(
                "books: {day} reached store.max_new_workers_per_day ({}): shares of further new logins that day are booked under {OVERFLOW_WORKER}",
                books.setting().max_new_workers_per_day
            );
        }
    }

    /// Runs a CLI command, committing what is queued first.
    fn command(&mut self, batch: &mut Vec<Event>, cmd: &Command) -> Result<String, String> {
        self.flush(batch);
        match self.books() {
            Some(books) => execute(books, cmd).map_err(|e| chain(&e)),
            None => Err("the books cannot be opened now; see the daemon's log".into()),
        }
    }
}

/// Starts the writer thread on the books `first` opened (or the error it
/// gave); `open` opens them again after a failure. While the books cannot be
/// written the writer keeps taking events (counting them lost) and tries to
/// open them again every `interval`.
pub fn spawn(
    first: Result<Books, StoreError>,
    open: Opener,
    rx: Receiver<Msg>,
    interval: Duration,
    stats: Arc<WriterStats>,
) -> std::io::Result<JoinHandle<()>> {
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
    let mut writer = Writer { books, open, stats, clock_unset: false };
    std::thread::Builder::new().name("books".into()).spawn(move || {
        let mut batch: Vec<Event> = Vec::new();
        let mut due = Instant::now() + interval;
        loop {
            match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
                Ok(Msg::Event(e)) => {
                    batch.push(e);
                    // Under a steady stream of events the timeout never fires:
                    // commit on schedule anyway, and early under a flood.
                    if Instant::now() >= due || batch.len() >= MAX_BATCH_EVENTS {
                        writer.flush(&mut batch);
                        due = Instant::now() + interval;
                    }
                }
                Ok(Msg::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                    drain(&rx, &mut batch);
                    writer.flush(&mut batch);
                    log::debug!("books: final commit done");
                    return;
                }
                Ok(Msg::Command(cmd, reply)) => {
                    let answer = writer.command(&mut batch, &cmd);
                    let _ = reply.send_blocking(answer);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if batch.is_empty() {
                        // Nothing to commit: still reopen failed books, so
                        // a command finds them open.
                        writer.books();
                    }
                    writer.flush(&mut batch);
                    due = Instant::now() + interval;
                }
            }
        }
    })
}

/// Takes every message still queued at shutdown: events join the final
/// batch, commands are told the daemon is stopping. A command or a second
/// `Shutdown` in the queue does not end the drain; only an empty queue does.
fn drain(rx: &Receiver<Msg>, batch: &mut Vec<Event>) {
    while let Ok(msg) = rx.try_recv() {
        match msg {
            Msg::Event(e) => batch.push(e),
            Msg::Command(_, reply) => {
                let _ = reply.send_blocking(Err("the daemon is stopping".into()));
            }
            Msg::Shutdown => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Outcome;
    use crate::store::db::Setting;
    use crate::worker::display_login;
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc::{SyncSender, sync_channel};
    use std::sync::{Mutex, PoisonError};

    /// Storage that fills up on demand: while `full`, every write, growth
    /// and sync fails with ENOSPC, as on an SD card with no space left.
    #[derive(Debug, Clone, Default)]
    struct Flaky {
        bytes: Arc<Mutex<Vec<u8>>>,
        full: Arc<AtomicBool>,
    }

    impl Flaky {
        fn check(&self) -> std::io::Result<()> {
            if self.full.load(Ordering::Relaxed) {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            Ok(())
        }

        fn bytes(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
            self.bytes.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    impl redb::StorageBackend for Flaky {
        fn len(&self) -> std::io::Result<u64> {
            Ok(self.bytes().len() as u64)
        }

        fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
            let bytes = self.bytes();
            let at = offset as usize;
            let from = bytes.get(at..at + out.len()).ok_or(std::io::ErrorKind::UnexpectedEof)?;
            out.copy_from_slice(from);
            Ok(())
        }

        fn set_len(&self, len: u64) -> std::io::Result<()> {
            if len as usize > self.bytes().len() {
                self.check()?;
            }
            self.bytes().resize(len as usize, 0);
            Ok(())
        }

        fn sync_data(&self) -> std::io::Result<()> {
            self.check()
        }

        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.check()?;
            let mut bytes = self.bytes();
            let at = offset as usize;
            let to = bytes.get_mut(at..at + data.len()).ok_or(std::io::ErrorKind::UnexpectedEof)?;
            to.copy_from_slice(data);
            Ok(())
        }
    }

    fn setting() -> Setting {
        Setting {
            pool: "p".into(),
            address: "p.example:3333".into(),
            username: String::new(),
            settlement: 0,
            keep_raw_secs: 172_800,
            max_new_workers_per_day: 64,
        }
    }

    fn share(login: &str) -> Msg {
        let at_ms = unix_now() * 1000;
        Msg::Event(Event::Share { login: display_login(login), outcome: Outcome::Accepted(1.0), at_ms })
    }

    /// Asks the writer for `login`'s accepted count today (the command
    /// commits what is queued first, so it is also the test's sync point).
    fn accepted(tx: &SyncSender<Msg>, login: &str) -> Result<u64, String> {
        let (reply, answer) = smol::channel::bounded(1);
        tx.send(Msg::Command(Command::Workers(Some(Day::of(unix_now(), 0))), reply)).unwrap();
        let text = answer.recv_blocking().unwrap()?;
        let row = text.lines().find(|l| l.split_whitespace().next() == Some(login));
        Ok(row.and_then(|r| r.split_whitespace().nth(2)?.parse().ok()).unwrap_or(0))
    }

    /// A full disk: proxying is not the writer's business, but it must keep
    /// taking events (counting them lost), report the books not writable,
    /// and book again once space is back, on a reopened database.
    #[test]
    fn a_full_disk_loses_only_what_came_while_it_was_full() {
        let disk = Flaky::default();
        let stats = Arc::new(WriterStats::default());
        let first = Books::on_backend(disk.clone(), setting());
        let reopen = disk.clone();
        let open: Opener = Box::new(move || Books::on_backend(reopen.clone(), setting()));
        let (tx, rx) = sync_channel(EVENT_QUEUE);
        let writer = spawn(first, open, rx, Duration::from_secs(3600), stats.clone()).unwrap();
        for _ in 0..3 {
            tx.send(share("ann")).unwrap();
        }
        assert_eq!(accepted(&tx, "ann"), Ok(3));
        assert!(stats.writable());

        disk.full.store(true, Ordering::Relaxed);
        for _ in 0..5 {
            tx.send(share("ann")).unwrap();
            assert!(accepted(&tx, "ann").is_err());
        }
        assert!(!stats.writable());
        assert_eq!(stats.failed_events.load(Ordering::Relaxed), 5);
        assert!(stats.write_errors.load(Ordering::Relaxed) >= 5);

        disk.full.store(false, Ordering::Relaxed);
        tx.send(share("ann")).unwrap();
        assert_eq!(accepted(&tx, "ann"), Ok(4));
        assert!(stats.writable());
        tx.send(Msg::Shutdown).unwrap();
        writer.join().unwrap();
    }

    /// Everything queued when the writer stops is committed, even past a
    /// command or a second shutdown in the queue; the command is answered.
    #[test]
    fn shutdown_drains_past_commands() {
        let disk = Flaky::default();
        let stats = Arc::new(WriterStats::default());
        let first = Books::on_backend(disk.clone(), setting());
        let reopen = disk.clone();
        let open: Opener = Box::new(move || Books::on_backend(reopen.clone(), setting()));
        let (tx, rx) = sync_channel(EVENT_QUEUE);
        // Queued before the writer runs: it meets Shutdown first.
        tx.send(share("bo")).unwrap();
        tx.send(Msg::Shutdown).unwrap();
        tx.send(share("bo")).unwrap();
        let (reply, answer) = smol::channel::bounded(1);
        tx.send(Msg::Command(Command::EarningsList, reply)).unwrap();
        tx.send(share("bo")).unwrap();
        tx.send(Msg::Shutdown).unwrap();
        tx.send(share("bo")).unwrap();
        let writer = spawn(first, open, rx, Duration::from_secs(3600), stats.clone()).unwrap();
        writer.join().unwrap();
        assert_eq!(answer.recv_blocking().unwrap(), Err("the daemon is stopping".into()));
        assert_eq!(stats.events.load(Ordering::Relaxed), 4);
        let mut books = Books::on_backend(disk, setting()).unwrap();
        let text = execute(&mut books, &Command::Workers(Some(Day::of(unix_now(), 0)))).unwrap();
        assert!(
            text.lines().any(|l| l.starts_with("bo ") && l.split_whitespace().nth(2) == Some("4")),
            "{text}"
        );
    }

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
