//! What the books cost an SD card: bytes written and fsyncs per hour, at the
//! default settings, for three gateways run side by side:
//!
//! - 10 miners, each submitting one share every 3 s (a 100 TH/s ASIC at
//!   difficulty 65536);
//! - 100 miners at the same pace, each a login of its own
//!   (`store.max_new_workers_per_day` raised so every one gets its rows: the
//!   books' worst case);
//! - the same two on books that have aged: a year of days for every worker
//!   and the last 48 h of recent shares already in the file (written through
//!   the library before the daemon starts), as a gateway's books look after
//!   a year, with deeper B-trees than a fresh file's;
//! - an idle gateway: its pool connected, no miner.
//!
//! `cargo bench --bench books` measures each over a window that starts right
//! after a commit (the first, which books the pool and the workers, is left
//! out) and ends right after the first commit past `LOKA_BENCH_SECS` (default
//! 600 s), so it spans whole commit intervals; the figures are scaled to an
//! hour. Bytes are given twice: `write_bytes` of the daemon from
//! `/proc/PID/io` (what it handed the block layer: the books' pages and
//! nothing else it writes), and the books' own count of bytes handed to
//! their file (`stratum_store_bytes_written_total`). Fsyncs are the books'
//! count of `fdatasync` calls on the file (`stratum_store_syncs_total`;
//! `strace -f -c -e trace=fsync,fdatasync` agrees). Run it on a real disk,
//! not tmpfs: the books go under `target/books-bench/` (`LOKA_BENCH_DIR` to
//! change). Settings in the environment reach the daemons, so
//! `LOKA_STORE_COMMIT_INTERVAL=5s` measures another interval.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it is a short
//! smoke run with a 1 s commit interval; its figures mean nothing.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use loka_stratum::store::db::Books;
use loka_stratum::store::{CheckNote, Event, Outcome};

const BIN: &str = env!("CARGO_BIN_EXE_loka-stratum");
const SHARE_EVERY: Duration = Duration::from_secs(3);

/// Share difficulty the pool sets: 2^-33, a target above every hash, so
/// every share the miners make up passes the proxy's own check and is
/// booked as valid, as a real miner's would be.
const DIFFICULTY: &str = "1.1641532182693481e-10";

/// A new job every this long, as a real pool sends (the proxy takes a pool
/// silent for `pool.notify_timeout`, 3 minutes, as dead).
const NEW_JOB_EVERY: Duration = Duration::from_secs(30);

/// A `mining.notify` for job `j{n}`.
fn notify(n: u64) -> String {
    format!(
        "{{\"id\":null,\"method\":\"mining.notify\",\"params\":[\"j{n}\",\"{}\",\"01\",\"02\",[],\"20000000\",\"1d00ffff\",\"5f5e1000\",false]}}\n",
        "0".repeat(64)
    )
}

/// A pool that accepts everything at once and sends a new job every
/// [`NEW_JOB_EVERY`].
fn pool() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind pool");
    let addr = listener.local_addr().expect("pool addr");
    thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(conn) = conn else { continue };
            let out = std::sync::Arc::new(std::sync::Mutex::new(conn.try_clone().expect("clone")));
            let jobs = out.clone();
            thread::spawn(move || {
                for job in 2.. {
                    thread::sleep(NEW_JOB_EVERY);
                    let Ok(mut out) = jobs.lock() else { return };
                    if out.write_all(notify(job).as_bytes()).is_err() {
                        return;
                    }
                }
            });
            thread::spawn(move || {
                for line in BufReader::new(conn).lines() {
                    let Ok(line) = line else { return };
                    let id = line
                        .split("\"id\":")
                        .nth(1)
                        .and_then(|r| r.split([',', '}']).next())
                        .unwrap_or("null");
                    let mut msg = if line.contains("mining.subscribe") {
                        format!("{{\"id\":{id},\"result\":[[],\"{n:08x}\",4],\"error\":null}}\n")
                    } else {
                        format!("{{\"id\":{id},\"result\":true,\"error\":null}}\n")
                    };
                    if line.contains("mining.authorize") {
                        msg.push_str(&format!(
                            "{{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[{DIFFICULTY}]}}\n"
                        ));
                        msg.push_str(&notify(1));
                    }
                    let Ok(mut out) = out.lock() else { return };
                    if out.write_all(msg.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn write_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("write_bytes: ")?.trim().parse().ok()))
        .unwrap_or(0)
}

/// The books' counters, read from `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    commits: f64,
    events: f64,
    bytes: f64,
    syncs: f64,
    /// Miners connected, and shares the proxy's check found valid.
    connected: f64,
    valid: f64,
    /// `write_bytes` from `/proc/PID/io`.
    disk: u64,
}

fn counters(metrics: SocketAddr, pid: u32) -> Counters {
    let mut text = String::new();
    if let Ok(mut s) = TcpStream::connect(metrics) {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
        let _ = std::io::Read::read_to_string(&mut s, &mut text);
    }
    let metric = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
    };
    Counters {
        commits: metric("stratum_store_commits_total"),
        events: metric("stratum_store_events_committed_total"),
        bytes: metric("stratum_store_bytes_written_total"),
        syncs: metric("stratum_store_syncs_total"),
        connected: metric("stratum_connections_active"),
        valid: metric("stratum_shares_checked_total{result=\"valid\"}"),
        disk: write_bytes(pid),
    }
}

/// Polls until a commit lands (the commit counter moves) or `limit` passes.
fn next_commit(metrics: SocketAddr, pid: u32, after: f64, limit: Duration) -> Option<(Counters, Instant)> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let c = counters(metrics, pid);
        if c.commits > after {
            return Some((c, Instant::now()));
        }
        thread::sleep(Duration::from_millis(100));
    }
    None
}

/// What one gateway wrote over the window.
struct Figures {
    label: String,
    shares: u64,
    window: f64,
    delta: Counters,
    file_size: u64,
}

fn miner(proxy: SocketAddr, i: usize, of: usize, stop: mpsc::Receiver<()>) -> u64 {
    let s = TcpStream::connect(proxy).expect("connect");
    let mut w = s.try_clone().expect("clone");
    // Drain the answers so the proxy never waits on a full socket, and keep
    // the newest job, as a miner works on it.
    let job = std::sync::Arc::new(std::sync::Mutex::new(String::from("j1")));
    let newest = job.clone();
    thread::spawn(move || {
        let mut r = BufReader::new(s);
        let mut line = String::new();
        while r.read_line(&mut line).is_ok_and(|n| n > 0) {
            if let Some(rest) = line.split("\"mining.notify\",\"params\":[\"").nth(1)
                && let (Some(id), Ok(mut job)) = (rest.split('"').next(), newest.lock())
            {
                *job = id.to_string();
            }
            line.clear();
        }
    });
    let hello = format!(
        "{{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"bench\"]}}\n{{\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"m{i}.rig\",\"x\"]}}\n"
    );
    w.write_all(hello.as_bytes()).expect("hello");
    // Stagger the miners across the 3 s period.
    if stop.recv_timeout(SHARE_EVERY * i as u32 / of as u32).is_ok() {
        return 0;
    }
    let mut n = 0u64;
    loop {
        let job = job.lock().map(|j| j.clone()).unwrap_or_default();
        let submit = format!(
            "{{\"id\":4,\"method\":\"mining.submit\",\"params\":[\"m{i}.rig\",\"{job}\",\"00000000\",\"5f5e1000\",\"{n:08x}\"]}}\n"
        );
        if w.write_all(submit.as_bytes()).is_err() {
            return n;
        }
        n += 1;
        if !matches!(stop.recv_timeout(SHARE_EVERY), Err(mpsc::RecvTimeoutError::Timeout)) {
            return n;
        }
    }
}

/// Writes a year of days and 48 h of recent shares for `miners` workers
/// (`m{i}.rig`, one share a day and one per five minutes: the rows a real
/// year leaves, not its share count) into a new books file at `path`.
fn age(path: &Path, miners: usize) {
    let mut config = loka_stratum::config::Config::default();
    config.store.max_new_workers_per_day = u32::MAX;
    let mut books = Books::open(path, loka_stratum::daemon::books_setting(&config)).expect("books to age");
    let now = loka_stratum::clock::unix_secs();
    let logins: Vec<_> =
        (0..miners).map(|i| loka_stratum::worker::display_login(&format!("m{i}.rig"))).collect();
    let check = Some(CheckNote { verdict: 0, difficulty: 65536.0, achieved: 70000.0 });
    let share = |login: &loka_stratum::worker::Login, at: u64| Event::Share {
        login: login.clone(),
        outcome: Outcome::Accepted(65536.0 * 100.0),
        check,
        pool: 0,
        at_ms: at * 1000,
    };
    let mut events = Vec::new();
    for day in (2..=365).rev() {
        events.extend(logins.iter().map(|l| share(l, now - day * 86_400)));
    }
    for bucket in (1..=576).rev() {
        events.extend(logins.iter().map(|l| share(l, now - bucket * 300)));
    }
    for batch in events.chunks(4096) {
        books.commit(batch, now).expect("aged books");
    }
}

fn gateway(label: &str, miners: usize, aged: bool, secs: u64, quick: bool, dir: &Path) -> Figures {
    let dir = dir.join(label);
    std::fs::create_dir_all(&dir).expect("bench dir");
    if aged {
        age(&dir.join("books.redb"), miners);
    }
    let pool = pool();
    let mut cmd = Command::new(BIN);
    cmd.args(["start", "-b", "127.0.0.1:0", "-p", &pool.to_string(), "-u", "bc1qbench"])
        .env("LOKA_STORE_PATH", dir.join("books.redb"))
        .env("LOKA_METRICS_BIND_ADDRESS", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped());
    if miners > 64 {
        // Every bench miner comes from 127.0.0.1: lift the per-address
        // limit, and give every login its rows.
        cmd.env("LOKA_LIMITER_CONNECTIONS", (miners + 10).to_string());
        cmd.env("LOKA_STORE_MAX_NEW_WORKERS_PER_DAY", miners.to_string());
    }
    if quick {
        cmd.env("LOKA_STORE_COMMIT_INTERVAL", "1s");
    }
    let mut child = cmd.spawn().expect("start loka-stratum");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    let name = label.to_string();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // Trouble shows: a figure taken while miners were cut off
            // would mean nothing.
            if line.contains(" WARN ") || line.contains(" ERROR ") {
                eprintln!("[{name}] {line}");
            }
            let _ = tx.send(line);
        }
    });
    let (mut proxy, mut metrics) = (None, None);
    while proxy.is_none() || metrics.is_none() {
        let line = rx.recv_timeout(Duration::from_secs(10)).expect("daemon start line");
        let after = |m: &str| -> Option<SocketAddr> {
            let rest = &line[line.find(m)? + m.len()..];
            rest.split([',', '/', ' ']).next()?.parse().ok()
        };
        proxy = proxy.or(after("listening on "));
        metrics = metrics.or(after("metrics on http://"));
    }
    let (proxy, metrics) = (proxy.expect("proxy"), metrics.expect("metrics"));
    let pid = child.id();
    let stops: Vec<_> = (0..miners)
        .map(|i| {
            let (stop, rx) = mpsc::channel::<()>();
            (stop, thread::spawn(move || miner(proxy, i, miners, rx)))
        })
        .collect();
    // The window opens right after a commit: the first one (pool and
    // workers booked) when there are miners, the start when idle.
    let limit = Duration::from_secs(secs.max(600) + 120);
    let (start, t0) = if miners > 0 {
        next_commit(metrics, pid, 0.0, limit).expect("a first commit")
    } else {
        // Let the start settle: the pool connection is booked at the first
        // commit (within 150 s: the default interval is 120 s), if at all.
        let settle = Duration::from_secs(if quick { 3 } else { 150 });
        let settled = next_commit(metrics, pid, 0.0, settle);
        settled.unwrap_or_else(|| (counters(metrics, pid), Instant::now()))
    };
    thread::sleep(Duration::from_secs(secs));
    let (end, t1) = if miners > 0 {
        let now = counters(metrics, pid);
        next_commit(metrics, pid, now.commits, limit).expect("a commit after the window")
    } else {
        (counters(metrics, pid), Instant::now())
    };
    // A figure taken while the miners were cut off would mean nothing.
    assert_eq!(end.connected, miners as f64, "{label}: miners were disconnected");
    let shares: u64 = stops
        .into_iter()
        .map(|(stop, m)| {
            let _ = stop.send(());
            m.join().unwrap_or(0)
        })
        .collect::<Vec<_>>()
        .into_iter()
        .sum();
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();
    let file_size = std::fs::metadata(dir.join("books.redb")).map(|m| m.len()).unwrap_or(0);
    let delta = Counters {
        commits: end.commits - start.commits,
        events: end.events - start.events,
        bytes: end.bytes - start.bytes,
        syncs: end.syncs - start.syncs,
        connected: end.connected,
        valid: end.valid - start.valid,
        disk: end.disk.saturating_sub(start.disk),
    };
    Figures { label: label.into(), shares, window: (t1 - t0).as_secs_f64(), delta, file_size }
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let secs: u64 = std::env::var("LOKA_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(if quick {
        3
    } else {
        600
    });
    let dir = std::env::var_os("LOKA_BENCH_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/books-bench"), Into::into);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let gateways = [
        ("10 miners", 10, false),
        ("100 miners", 100, false),
        ("10, aged", 10, true),
        ("100, aged", 100, true),
    ];
    let runs: Vec<_> = gateways
        .into_iter()
        .chain([("idle", 0, false)])
        .map(|(label, miners, aged)| {
            let dir = dir.clone();
            thread::spawn(move || gateway(label, miners, aged, secs, quick, &dir))
        })
        .collect();
    let figures: Vec<Figures> = runs.into_iter().map(|r| r.join().expect("bench run")).collect();
    println!(
        "loka-stratum books bench: default settings, one share every {SHARE_EVERY:?} per miner, window ≥ {secs} s{}",
        if quick { " (smoke run, 1 s commits; use --bench)" } else { "" }
    );
    println!(
        "{:<11} {:>8} {:>8} {:>8} {:>8} {:>11} {:>11} {:>10} {:>10} {:>11} {:>10}",
        "gateway",
        "window",
        "commits",
        "events",
        "valid",
        "commits/h",
        "fsyncs/h",
        "MiB/h disk",
        "MiB/h file",
        "B/commit",
        "file size"
    );
    for f in &figures {
        let per_hour = if f.window > 0.0 { 3600.0 / f.window } else { 0.0 };
        let d = f.delta;
        let per_commit = if d.commits > 0.0 { d.bytes / d.commits } else { 0.0 };
        println!(
            "{:<11} {:>7.0}s {:>8} {:>8} {:>8} {:>11.0} {:>11.0} {:>10.2} {:>10.2} {:>11.0} {:>10}",
            f.label,
            f.window,
            d.commits,
            d.events,
            d.valid,
            d.commits * per_hour,
            d.syncs * per_hour,
            d.disk as f64 * per_hour / 1048576.0,
            d.bytes * per_hour / 1048576.0,
            per_commit,
            f.file_size
        );
    }
    let shares: Vec<String> = figures.iter().map(|f| format!("{} {}", f.label, f.shares)).collect();
    println!("  shares submitted over the whole run: {}", shares.join(", "));
    println!(
        "  disk: write_bytes of /proc/PID/io; file: bytes the books handed their file; fsyncs: fdatasync on it"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
