//! The writer against storage that fills up, shutdown draining, its sleep
//! between commits, and the control socket's command lines.

use super::*;
use crate::store::Outcome;
use crate::store::db::{PoolSetting, Setting};
use crate::store::queue::{self, HIGH_WATER, Recorder};
use crate::worker::display_login;
use std::sync::atomic::AtomicBool;
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
    let pool = PoolSetting { name: "p".into(), address: "p.example:3333".into(), username: String::new() };
    Setting { pools: vec![pool], settlement: 0, keep_raw_secs: 172_800, max_new_workers_per_day: 64 }
}

fn share(login: &str) -> Event {
    let at_ms = unix_now() * 1000;
    Event::Share { login: display_login(login), outcome: Outcome::Accepted(1.0), check: None, pool: 0, at_ms }
}

/// Asks the writer for `login`'s accepted count today (the command
/// commits what is queued first, so it is also the test's sync point).
fn accepted(tx: &Recorder, login: &str) -> Result<u64, String> {
    let (reply, answer) = smol::channel::bounded(1);
    assert!(tx.send(Msg::Command(Command::Workers(Some(Day::of(unix_now(), 0))), reply)));
    let text = answer.recv_blocking().unwrap()?;
    let row = text.lines().find(|l| l.split_whitespace().next() == Some(login));
    Ok(row.and_then(|r| r.split_whitespace().nth(2)?.parse().ok()).unwrap_or(0))
}

/// Books on `disk`, and the opener the writer reopens them with.
fn books_on(disk: &Flaky) -> (Result<Books, StoreError>, Opener) {
    let reopen = disk.clone();
    (
        Books::on_backend(disk.clone(), setting()),
        Box::new(move || Books::on_backend(reopen.clone(), setting())),
    )
}

/// A full disk: proxying is not the writer's business, but it must keep
/// taking events (counting them lost), report the books not writable,
/// and book again once space is back, on a reopened database.
#[test]
fn a_full_disk_loses_only_what_came_while_it_was_full() {
    let disk = Flaky::default();
    let stats = Arc::new(WriterStats::default());
    let (first, open) = books_on(&disk);
    let (tx, rx) = queue::new();
    let writer = spawn(first, open, rx, Duration::from_secs(3600), stats.clone(), None).unwrap();
    for _ in 0..3 {
        assert!(tx.record(share("ann")));
    }
    assert_eq!(accepted(&tx, "ann"), Ok(3));
    assert!(stats.writable());

    disk.full.store(true, Ordering::Relaxed);
    for _ in 0..5 {
        assert!(tx.record(share("ann")));
        assert!(accepted(&tx, "ann").is_err());
    }
    assert!(!stats.writable());
    assert_eq!(stats.failed_events.load(Ordering::Relaxed), 5);
    assert!(stats.write_errors.load(Ordering::Relaxed) >= 5);

    disk.full.store(false, Ordering::Relaxed);
    assert!(tx.record(share("ann")));
    assert_eq!(accepted(&tx, "ann"), Ok(4));
    assert!(stats.writable());
    tx.stop();
    writer.join().unwrap();
}

/// Everything queued when the writer stops is committed, even past a
/// command or a second shutdown in the queue; the command is answered.
#[test]
fn shutdown_drains_past_commands() {
    let disk = Flaky::default();
    let stats = Arc::new(WriterStats::default());
    let (first, open) = books_on(&disk);
    let (tx, rx) = queue::new();
    // Queued before the writer runs: it meets Shutdown first.
    assert!(tx.record(share("bo")));
    assert!(tx.send(Msg::Shutdown));
    assert!(tx.record(share("bo")));
    let (reply, answer) = smol::channel::bounded(1);
    assert!(tx.send(Msg::Command(Command::EarningsList, reply)));
    assert!(tx.record(share("bo")));
    assert!(tx.send(Msg::Shutdown));
    assert!(tx.record(share("bo")));
    let writer = spawn(first, open, rx, Duration::from_secs(3600), stats.clone(), None).unwrap();
    writer.join().unwrap();
    assert_eq!(answer.recv_blocking().unwrap(), Err("the daemon is stopping".into()));
    assert_eq!(stats.events.load(Ordering::Relaxed), 4);
    // Once it stopped, the queue turns events away: the proxy counts them.
    assert!(!tx.record(share("bo")));
    let mut books = Books::on_backend(disk, setting()).unwrap();
    let text = execute(&mut books, &Command::Workers(Some(Day::of(unix_now(), 0)))).unwrap();
    assert!(text.lines().any(|l| l.starts_with("bo ") && l.split_whitespace().nth(2) == Some("4")), "{text}");
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

/// The `workers` listing sums each login's day over every pool and says
/// which pools it summed; `distribute --pool` splits that pool's reward.
#[test]
fn workers_sum_every_pool_and_distribute_takes_one() {
    let pool =
        |name: &str| PoolSetting { name: name.into(), address: format!("{name}:3333"), username: "u".into() };
    let mut books =
        Books::in_memory(Setting { pools: vec![pool("main"), pool("backup")], ..setting() }).unwrap();
    let now = unix_now();
    let day = Day::of(now, 0);
    let share = |login: &str, pool: u8, d: f64| Event::Share {
        login: display_login(login),
        outcome: Outcome::Accepted(d),
        check: None,
        pool,
        at_ms: now * 1000,
    };
    let listing = |books: &mut Books| execute(books, &Command::Workers(Some(day))).unwrap();
    assert!(listing(&mut books).starts_with(&format!("workers on {day} (no shares on any pool)\n")));
    books.commit(&[share("ann", 1, 1.0)], now).unwrap();
    assert!(listing(&mut books).starts_with(&format!("workers on {day} (pool backup)\n")));
    books.commit(&[share("ann", 0, 1.0), share("ann", 0, 1.0), share("bo", 0, 2.0)], now).unwrap();
    let text = listing(&mut books);
    assert!(text.starts_with(&format!("workers on {day} (pools main, backup, summed)\n")), "{text}");
    let ann: Vec<&str> = text.lines().filter(|l| l.starts_with("ann ")).collect();
    assert_eq!(ann.len(), 1, "{text}");
    assert_eq!(ann[0].split_whitespace().nth(2), Some("3"), "{text}");

    let add = |pool: Option<&str>, reward| Command::EarningsAdd {
        day,
        pool: pool.map(Into::into),
        reward,
        hashrate: None,
    };
    execute(&mut books, &add(Some("backup"), 500)).unwrap();
    let split = execute(&mut books, &Command::Distribute { day, pool: Some("backup".into()) }).unwrap();
    assert!(split.contains("pool backup: reward 500 sats"), "{split}");
    assert!(
        split.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["ann", "1.0000", "500"]),
        "{split}"
    );
    assert!(!split.contains("bo"), "{split}");
    // Without --pool: the primary.
    execute(&mut books, &add(None, 40)).unwrap();
    let split = execute(&mut books, &Command::Distribute { day, pool: None }).unwrap();
    assert!(split.contains("pool main: reward 40 sats"), "{split}");
    let err = execute(&mut books, &add(Some("bakup"), 1)).unwrap_err().to_string();
    assert!(err.contains("pool bakup is not configured (pools: main, backup)"), "{err}");
}

/// Shares below the high-water mark never wake the writer: they wait in the
/// queue until a commit is due or a command comes, which takes them all.
#[test]
fn shares_below_the_high_water_mark_leave_the_writer_asleep() {
    let disk = Flaky::default();
    let stats = Arc::new(WriterStats::default());
    let (first, open) = books_on(&disk);
    let (tx, rx) = queue::new();
    let writer = spawn(first, open, rx, Duration::from_secs(3600), stats.clone(), None).unwrap();
    for _ in 0..HIGH_WATER - 1 {
        assert!(tx.record(share("cy")));
    }
    assert_eq!(tx.unparks(), 0, "a share woke the writer");
    assert_eq!(accepted(&tx, "cy"), Ok(HIGH_WATER as u64 - 1));
    assert_eq!(tx.unparks(), 1, "only the command woke the writer");
    assert_eq!(stats.commits.load(Ordering::Relaxed), 1, "the command's commit, and no other");
    // Its start and the command (one wake-up for both, or none when they
    // came before it first slept); a polling writer would count hundreds.
    let woke = stats.wakeups.load(Ordering::Relaxed);
    assert!(woke <= 2, "the writer woke {woke} times");
    tx.stop();
    assert!(writer.join().unwrap());
}

/// Past the high-water mark the writer wakes on its own and takes the
/// queue: a flood four times the queue goes through with no command and an
/// hour's interval, committed early at MAX_BATCH_EVENTS, with a wake-up per
/// crossing of the mark, not per event.
#[test]
fn a_flood_wakes_the_writer_at_the_high_water_mark() {
    let disk = Flaky::default();
    let stats = Arc::new(WriterStats::default());
    let (first, open) = books_on(&disk);
    let (tx, rx) = queue::new();
    let writer = spawn(first, open, rx, Duration::from_secs(3600), stats.clone(), None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = 0;
    while sent <= MAX_BATCH_EVENTS {
        if tx.record(share("dee")) {
            sent += 1;
        } else {
            // Full: the writer, woken at the mark, has not taken it yet.
            assert!(Instant::now() < deadline, "the writer never took a full queue ({sent} sent)");
            std::thread::yield_now();
        }
    }
    let unparks = tx.unparks();
    assert!(
        (1..=2 * (MAX_BATCH_EVENTS / HIGH_WATER) as u64 + 2).contains(&unparks),
        "{unparks} wake-ups for {sent} events"
    );
    tx.stop();
    assert!(writer.join().unwrap());
    assert_eq!(stats.events.load(Ordering::Relaxed), sent as u64);
    assert_eq!(stats.commits.load(Ordering::Relaxed), 2, "early at MAX_BATCH_EVENTS, then at shutdown");
}
