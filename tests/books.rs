//! The books: the CLI against a running and a stopped daemon, crash safety
//! (kill -9 after a commit, SIGTERM before one) and refusing foreign files.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::cli::accepted;
use common::daemon::bin_command;
use common::*;

const T: Duration = DEFAULT_TIMEOUT;

fn cli(store: &Path, args: &[&str]) -> Output {
    bin_command().args(args).env("LOKA_STORE_PATH", store).output().expect("run loka-stratum")
}

fn ok(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

fn today() -> String {
    let out = Command::new("date").args(["-u", "+%F"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A daemon on `pool` that commits once an hour, with three shares of
/// `login` accepted and queued, none committed yet; its books file.
fn three_queued(pool: &CheckingPool, login: &str) -> (Daemon, std::path::PathBuf) {
    let proxy = Daemon::start(pool.addr(), &[("LOKA_STORE_COMMIT_INTERVAL", "1h")]);
    let store = proxy.dir.join("books.redb");
    mine(&proxy, login, 3);
    let accepted = format!("stratum_worker_shares_accepted_total{{worker=\"{login}\"}}");
    assert!(proxy.wait_metric(&accepted, 3.0, T));
    assert_eq!(proxy.metric("stratum_store_commits_total"), Some(0.0));
    (proxy, store)
}

fn mine(proxy: &Daemon, login: &str, n: usize) {
    let mut m = HashingMiner::connect(proxy.addr).unwrap();
    m.subscribe("bitaxe/2.4").unwrap();
    assert!(m.authorize(login, "x"));
    assert_eq!(m.mine(n, Duration::from_secs(30)).accepted(), n);
}

#[test]
fn cli_works_through_a_running_daemon_and_on_the_file_when_stopped() {
    let pool = CheckingPool::start(PoolOptions::default());
    let mut proxy = Daemon::start(pool.addr(), &[("LOKA_STORE_COMMIT_INTERVAL", "200ms")]);
    let store = proxy.dir.join("books.redb");
    mine(&proxy, "ann.r1", 3);
    mine(&proxy, "ann.r2", 1);
    mine(&proxy, "bo", 2);
    let table = ok(&cli(&store, &["workers"]));
    assert_eq!(accepted(&table, "ann.r1"), Some(3), "{table}");
    assert_eq!(accepted(&table, "ann.r2"), Some(1), "{table}");
    assert_eq!(accepted(&table, "bo"), Some(2), "{table}");
    assert!(table.contains("ann "), "miner column: {table}");

    let day = today();
    ok(&cli(&store, &["earnings", "add", "--date", &day, "--reward", "1000003", "--hashrate", "2e12"]));
    assert!(ok(&cli(&store, &["earnings", "list"])).contains("1000003"));
    let split = ok(&cli(&store, &["distribute", "--date", &day]));
    let section = |from: &str, to: &str| -> u64 {
        split
            .lines()
            .skip_while(|l| !l.trim_start().starts_with(from))
            .skip(1)
            .take_while(|l| !l.trim_start().starts_with(to))
            .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
            .sum()
    };
    assert_eq!(section("WORKER", "MINER"), 1_000_003, "{split}");
    assert_eq!(section("MINER", "\u{0}"), 1_000_003, "{split}");
    // Errors come back through the control socket too.
    let out = cli(&store, &["distribute", "--date", "2020-01-01"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no earnings for pool"), "{out:?}");
    // Idempotent: the same day again gives the same split.
    assert_eq!(ok(&cli(&store, &["distribute", "--date", &day])), split);

    proxy.signal("TERM");
    let (status, _) = proxy.wait_exit(Duration::from_secs(8)).expect("stopped");
    assert!(status.success());
    // Stopped: the CLI opens the file itself and sees the same books.
    let table = ok(&cli(&store, &["workers", "--date", &day]));
    assert_eq!(accepted(&table, "ann.r1"), Some(3), "{table}");
    assert_eq!(ok(&cli(&store, &["distributions", "--date", &day])), split);
}

/// A private copy of `tests/fixtures/NAME` as `dir/books.redb`.
fn fixture_copy(name: &str, dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let store = dir.join("books.redb");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name), &store).unwrap();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o600)).unwrap();
    store
}

/// The rows of a CLI table after its header line (`header` starts it),
/// split on whitespace, up to a blank line.
fn rows(text: &str, header: &str) -> Vec<Vec<String>> {
    let lines = text.lines().skip_while(|l| !l.trim_start().starts_with(header)).skip(1);
    lines
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

/// The books 0.1.0 wrote (`tests/fixtures/books-schema1.md`) show exactly
/// what that version showed, through every CLI command: checked as they
/// are first (schema 1, nothing migrated by a check), then migrated by the
/// first command that opens them, which says so; the day distributes again
/// to the same satoshis, and the migrated books check out.
#[test]
fn books_written_by_0_1_0_show_the_same_books() {
    let dir = std::env::temp_dir().join(format!("loka-books-v010-{}", std::process::id()));
    let store = fixture_copy("books-schema1.redb", &dir);
    let check = ok(&cli(&store, &["books", "check"]));
    assert!(
        check.contains("schema 1: this version migrates it") && check.contains("no problems found"),
        "{check}"
    );
    let check = ok(&cli(&store, &["books", "check", store.to_str().unwrap()]));
    assert!(check.contains("schema 1:"), "a check migrated the books: {check}");

    let out = cli(&store, &["workers", "--date", "2026-11-29"]);
    let table = ok(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(log.matches("books migrated from schema 1 to 3").count(), 1, "{log}");
    let workers: Vec<Vec<String>> = rows(&table, "LOGIN").into_iter().map(|r| r[..5].to_vec()).collect();
    assert_eq!(workers, [["alice.rig1", "alice", "6", "0", "1"], ["bob", "bob", "3", "0", "0"]], "{table}");
    assert!(table.contains("(pool harness_pool)"), "{table}");
    let earnings = ok(&cli(&store, &["earnings", "list"]));
    assert_eq!(rows(&earnings, "DATE"), [["2026-11-29", "harness_pool", "110000", "-"]], "{earnings}");

    let split = ok(&cli(&store, &["distributions"]));
    assert!(split.starts_with("2026-11-29 pool harness_pool: reward 110000 sats"), "{split}");
    let sats = |header: &str| -> Vec<(String, String)> {
        rows(&split, header)
            .into_iter()
            .take_while(|r| r[0] != "MINER")
            .map(|r| (r[0].clone(), r.last().unwrap().clone()))
            .collect()
    };
    let pairs = |v: [(&str, &str); 2]| v.map(|(a, b)| (a.to_string(), b.to_string())).to_vec();
    assert_eq!(sats("WORKER"), pairs([("alice.rig1", "73333"), ("bob", "36667")]), "{split}");
    // Share difficulty 2^-20 each: sums with significant digits, not 0.0000.
    let difficulty: Vec<String> = rows(&split, "WORKER").iter().take(2).map(|r| r[1].clone()).collect();
    assert_eq!(difficulty, ["5.72e-6", "2.86e-6"], "{split}");
    let diffs: Vec<String> = rows(&table, "LOGIN").iter().map(|r| r[5].clone()).collect();
    assert_eq!(diffs, ["5.72e-6", "2.86e-6"], "{table}");
    assert_eq!(sats("MINER"), pairs([("alice", "73333"), ("bob", "36667")]), "{split}");
    let again = ok(&cli(&store, &["distribute", "--date", "2026-11-29", "--pool", "harness_pool"]));
    assert_eq!(again, split, "the day distributed again");
    assert_eq!(ok(&cli(&store, &["distributions"])), split);

    let check = ok(&cli(&store, &["books", "check"]));
    assert!(check.contains("schema 3, the current one") && check.contains("no problems found"), "{check}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `books backup FILE` while the daemon runs: a copy through the control
/// socket that holds every share queued (the commit interval is an hour),
/// private, checked, and opening as books of its own; while it is stopped,
/// a copy of the file. `books check` goes through the daemon too.
#[test]
fn books_backup_while_running_and_while_stopped() {
    use std::os::unix::fs::PermissionsExt;
    let pool = CheckingPool::start(PoolOptions::default());
    let (mut proxy, store) = three_queued(&pool, "bak.rig1");
    let nightly = proxy.dir.join("nightly.redb");
    std::fs::write(&nightly, b"last night's copy").unwrap();
    let out = ok(&cli(&store, &["books", "backup", nightly.to_str().unwrap()]));
    assert!(out.contains("from the running daemon") && out.contains("no problems found"), "{out}");
    assert!(out.contains(&format!("books at {}", nightly.display())), "{out}");
    let mode = std::fs::metadata(&nightly).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!proxy.dir.join("nightly.redb.tmp").exists());
    assert_eq!(accepted(&ok(&cli(&nightly, &["workers"])), "bak.rig1"), Some(3));
    let check = ok(&cli(&store, &["books", "check"]));
    assert!(check.contains("schema 3, the current one") && check.contains("no problems found"), "{check}");
    // Never over the books themselves, nor over what is not a file.
    for (dest, why) in [(&store, "the books themselves"), (&proxy.dir, "not a regular file")] {
        let out = cli(&store, &["books", "backup", dest.to_str().unwrap()]);
        assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains(why), "{out:?}");
    }
    // The daemon's file is locked: checking it by name says who holds it.
    let out = cli(&store, &["books", "check", store.to_str().unwrap()]);
    assert!(!out.status.success());

    mine(&proxy, "bak.rig1", 1);
    proxy.signal("TERM");
    assert!(proxy.wait_exit(T).expect("stopped").0.success());
    let out = ok(&cli(&store, &["books", "backup", nightly.to_str().unwrap()]));
    assert!(out.contains("from the file (no daemon running)"), "{out}");
    assert_eq!(accepted(&ok(&cli(&nightly, &["workers"])), "bak.rig1"), Some(4));
}

/// Backs the books at `store` up over an earlier backup at `nightly`, which
/// must fail and leave the earlier one (and no temporary file); its stderr.
fn backup_fails_and_keeps(store: &Path, nightly: &Path) -> String {
    std::fs::write(nightly, b"last night's copy").unwrap();
    let out = cli(store, &["books", "backup", nightly.to_str().unwrap()]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read(nightly).unwrap(), b"last night's copy");
    assert!(!nightly.with_extension("redb.tmp").exists());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A backup that does not check out replaces nothing: the earlier backup
/// stays, no temporary file is left, and the command fails saying why.
/// `books check` on damaged books fails with the damage named.
#[test]
fn a_bad_copy_replaces_no_backup_and_damage_is_named() {
    let dir = std::env::temp_dir().join(format!("loka-books-badcopy-{}", std::process::id()));
    let store = fixture_copy("books-schema1.redb", &dir);
    std::fs::write(&store, b"this is not a database, it is a shopping list\n".repeat(100)).unwrap();
    let nightly = dir.join("nightly.redb");
    let err = backup_fails_and_keeps(&store, &nightly);
    assert!(err.contains("nightly.redb"), "{err}");
    let out = cli(&store, &["books", "check"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(store.to_str().unwrap()) && err.contains("Not a redb database"), "{err}");

    // Damage in a page of the tables: redb's own check finds it.
    let store = fixture_copy("books-schema1.redb", &dir);
    let mut bytes = std::fs::read(&store).unwrap();
    bytes[16384 + 100..16384 + 108].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef]);
    std::fs::write(&store, bytes).unwrap();
    let out = cli(&store, &["books", "check"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PROBLEM: redb integrity check") && err.contains("1 problem(s) found"), "{err}");
    // Its copy replaces no backup either.
    let err = backup_fails_and_keeps(&store, &nightly);
    assert!(err.contains("the copy is damaged, so it replaces nothing"), "{err}");
    // A temporary file of that name left behind, even a symlink, is
    // replaced, never written through.
    let store = fixture_copy("books-schema1.redb", &dir);
    let victim = dir.join("victim.conf");
    std::fs::write(&victim, b"keep me").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("nightly.redb.tmp")).unwrap();
    ok(&cli(&store, &["books", "backup", nightly.to_str().unwrap()]));
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    assert!(std::fs::symlink_metadata(&nightly).unwrap().file_type().is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kill_9_after_a_commit_loses_nothing_committed() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[("LOKA_STORE_COMMIT_INTERVAL", "100ms")]);
    let store = proxy.dir.join("books.redb");
    mine(&proxy, "kim", 4);
    // 4 shares (each with its check), the worker and the pool connection,
    // all committed.
    assert!(
        proxy.wait_metric("stratum_store_events_committed_total", 6.0, T),
        "{}",
        proxy.http_get("/metrics").1
    );
    proxy.signal("KILL");
    let mut proxy = proxy;
    proxy.wait_exit(T).expect("killed");
    let table = ok(&cli(&store, &["workers"]));
    assert_eq!(accepted(&table, "kim"), Some(4), "{table}");
}

#[test]
fn sigterm_commits_what_is_queued() {
    let pool = CheckingPool::start(PoolOptions::default());
    // No commit would happen for an hour: only the shutdown commit can save them.
    let (mut proxy, store) = three_queued(&pool, "lee");
    proxy.signal("TERM");
    let (status, _) = proxy.wait_exit(T).expect("stopped");
    assert!(status.success());
    let table = ok(&cli(&store, &["workers"]));
    assert_eq!(accepted(&table, "lee"), Some(3), "{table}");
}

#[test]
fn a_foreign_file_is_refused_with_its_path() {
    let dir = std::env::temp_dir().join(format!("loka-books-foreign-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = dir.join("books.redb");
    std::fs::write(&store, b"this is not a database, it is a shopping list\n".repeat(100)).unwrap();
    let out = cli(&store, &["workers"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(store.to_str().unwrap()), "{err}");
    let pool = CheckingPool::start(PoolOptions::default());
    let mut child = bin_command()
        .args(["start", "-b", "127.0.0.1:0", "-p", &pool.addr().to_string()])
        .env("LOKA_STORE_PATH", &store)
        .env("LOKA_METRICS_BIND_ADDRESS", "127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: a daemon that wrongly starts on the file is killed, and fails.
    let deadline = std::time::Instant::now() + T;
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(store.to_str().unwrap()) && err.contains("books"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_books_commands_get_clear_errors() {
    let dir = std::env::temp_dir().join(format!("loka-books-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = dir.join("books.redb");
    for (args, want) in [
        (&["distribute", "--date", "2026-02-30"][..], "not a date"),
        (&["distribute", "--date", "2026-01-01"], "no books at"),
        (&["earnings", "add", "--date", "2026-01-01", "--reward", "-5"], "reward"),
        (&["earnings", "add", "--date", "2026-01-01", "--reward", "5", "--pool", "two words"], "pool"),
    ] {
        let out = cli(&store, args);
        assert!(!out.status.success(), "{args:?}");
        let err = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sets the daemon's file size limit (soft; the hard one stays unlimited):
/// its writes past `bytes` fail with EFBIG, as on a full disk, even as root.
fn limit_file_size(proxy: &Daemon, bytes: libc::rlim_t) {
    let limit = libc::rlimit { rlim_cur: bytes, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: prlimit only reads `limit`; a null old-limit pointer is allowed.
    let rc = unsafe {
        libc::prlimit(proxy.pid() as libc::pid_t, libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut())
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// The disk fills up under a running daemon: every share is still proxied
/// and accepted, the failure is logged once and shown on the metrics page,
/// events that come meanwhile are counted lost, and once there is space
/// again the books are reopened and written.
#[test]
fn a_full_disk_stops_the_books_not_the_mining() {
    use std::os::unix::process::CommandExt;
    let pool = CheckingPool::start(PoolOptions::default());
    let addr = pool.addr().to_string();
    let env = [("LOKA_STORE_COMMIT_INTERVAL", "100ms")];
    let proxy = Daemon::start_prepared(&["start", "-b", "127.0.0.1:0", "-p", &addr], &env, |cmd| {
        // SAFETY: only async-signal-safe calls between fork and exec. An
        // ignored SIGXFSZ stays ignored across exec, so a write past the
        // limit fails with EFBIG instead of killing the daemon.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                Ok(())
            });
        }
    });
    let store = proxy.dir.join("books.redb");
    let mut m = HashingMiner::connect(proxy.addr).unwrap();
    m.subscribe("bitaxe/2.4").unwrap();
    assert!(m.authorize("dee", "x"));
    assert_eq!(m.mine(2, Duration::from_secs(30)).accepted(), 2);
    assert_eq!(accepted(&ok(&cli(&store, &["workers"])), "dee"), Some(2));
    assert_eq!(proxy.metric("stratum_store_writable"), Some(1.0));

    // Full: nothing past the first 4 KiB of any file can be written. Three
    // rounds of shares, each failing its own commit.
    limit_file_size(&proxy, 4096);
    for round in 1..=3 {
        assert_eq!(m.mine(2, Duration::from_secs(30)).accepted(), 2);
        let lost = 2.0 * f64::from(round);
        let failed = || proxy.metric("stratum_store_events_failed_total");
        assert!(proxy.wait_metric("stratum_store_events_failed_total", lost, T), "{:?}", failed());
        assert_eq!(proxy.metric("stratum_store_writable"), Some(0.0));
    }
    assert!(proxy.metric("stratum_store_write_errors_total").unwrap() >= 3.0);

    // Space again: the next commit goes through on reopened books.
    limit_file_size(&proxy, libc::RLIM_INFINITY);
    assert_eq!(m.mine(3, Duration::from_secs(30)).accepted(), 3);
    assert!(proxy.wait_metric("stratum_store_writable", 1.0, T), "{}", proxy.log_text());
    assert_eq!(accepted(&ok(&cli(&store, &["workers"])), "dee"), Some(5));
    assert_eq!(pool.stats().accepted, 11);
    let log = proxy.log_text();
    assert_eq!(log.matches("proxying goes on").count(), 1, "{log}");
    assert_eq!(log.matches("books: writable again").count(), 1, "{log}");
}

/// `store.mode = "ram"`: commits land in memory (the CLI sees them through
/// the daemon) and the file is not touched until SIGTERM writes it whole;
/// the file then opens as ordinary books with everything booked.
#[test]
fn ram_mode_writes_the_books_only_at_shutdown_when_no_flush_is_due() {
    let pool = CheckingPool::start(PoolOptions::default());
    let dir = std::env::temp_dir().join(format!("loka-books-ram-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = dir.join("books.redb");
    let env = [
        ("LOKA_STORE_MODE", "ram"),
        ("LOKA_STORE_COMMIT_INTERVAL", "100ms"),
        ("LOKA_STORE_FLUSH_INTERVAL", "1h"),
        ("LOKA_STORE_PATH", store.to_str().unwrap()),
    ];
    let mut proxy = Daemon::start(pool.addr(), &env);
    mine(&proxy, "rae", 3);
    // 3 shares, the worker and the pool connection, committed in memory.
    assert!(proxy.wait_metric("stratum_store_events_committed_total", 5.0, T), "{}", proxy.log_text());
    assert_eq!(accepted(&ok(&cli(&store, &["workers"])), "rae"), Some(3));
    assert_eq!(proxy.metric("stratum_store_bytes_written_total"), Some(0.0));
    assert_eq!(proxy.metric("stratum_store_syncs_total"), Some(0.0));
    assert_eq!(std::fs::metadata(&store).unwrap().len(), 0, "the file is untouched while running");
    assert!(proxy.log_text().contains("books in memory, written to"), "{}", proxy.log_text());
    // A reward typed in is written to the file at once, not at the next flush.
    ok(&cli(&store, &["earnings", "add", "--date", &today(), "--reward", "4321"]));
    let copy = dir.join("copy.redb");
    std::fs::copy(&store, &copy).unwrap();
    assert!(ok(&cli(&copy, &["earnings", "list"])).contains("4321"));
    assert_eq!(accepted(&ok(&cli(&copy, &["workers"])), "rae"), Some(3));
    // A backup comes from the books in memory; the file stays as it was.
    let size = std::fs::metadata(&store).unwrap().len();
    mine(&proxy, "rae", 1);
    let backup = dir.join("backup.redb");
    let out = ok(&cli(&store, &["books", "backup", backup.to_str().unwrap()]));
    assert!(out.contains("from the running daemon"), "{out}");
    assert_eq!(accepted(&ok(&cli(&backup, &["workers"])), "rae"), Some(4));
    let check = ok(&cli(&store, &["books", "check"]));
    assert!(check.contains("schema 3, the current one") && check.contains("no problems found"), "{check}");
    assert_eq!(std::fs::metadata(&store).unwrap().len(), size);
    proxy.signal("TERM");
    let (status, _) = proxy.wait_exit(T).expect("stopped");
    assert!(status.success());
    assert!(std::fs::metadata(&store).unwrap().len() > 0);
    assert_eq!(accepted(&ok(&cli(&store, &["workers"])), "rae"), Some(4));
    // Started again in RAM mode, it loads them and adds to them.
    let mut proxy = Daemon::start(pool.addr(), &env);
    mine(&proxy, "rae", 1);
    assert_eq!(accepted(&ok(&cli(&store, &["workers"])), "rae"), Some(5));
    proxy.signal("TERM");
    proxy.wait_exit(T).expect("stopped");
    assert_eq!(accepted(&ok(&cli(&store, &["workers"])), "rae"), Some(5));
    let _ = std::fs::remove_dir_all(&dir);
}

/// In RAM mode a migration is saved like a commit: 0.1.0's books, loaded,
/// migrated and stopped with no share in between, are schema 3 on disk.
#[test]
fn ram_mode_saves_a_migration() {
    // A pool that is not there: no connection to book either.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dir = std::env::temp_dir().join(format!("loka-books-rammig-{}", std::process::id()));
    let store = fixture_copy("books-schema1.redb", &dir);
    let env = [("LOKA_STORE_MODE", "ram"), ("LOKA_STORE_PATH", store.to_str().unwrap())];
    let mut proxy = Daemon::start(gone, &env);
    assert!(proxy.wait_log("books migrated from schema 1 to 3", T).is_some(), "{}", proxy.log_text());
    proxy.signal("TERM");
    assert!(proxy.wait_exit(T).expect("stopped").0.success());
    let check = ok(&cli(&store, &["books", "check", store.to_str().unwrap()]));
    assert!(check.contains("schema 3, the current one") && check.contains("no problems found"), "{check}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// In RAM mode the books are written every `store.flush_interval`: after
/// `kill -9` the file holds what the last flush saved, and opens.
#[test]
fn ram_mode_flushes_on_schedule_and_kill_9_keeps_the_last_flush() {
    let pool = CheckingPool::start(PoolOptions::default());
    let env = [
        ("LOKA_STORE_MODE", "ram"),
        ("LOKA_STORE_COMMIT_INTERVAL", "100ms"),
        ("LOKA_STORE_FLUSH_INTERVAL", "300ms"),
    ];
    let proxy = Daemon::start(pool.addr(), &env);
    let store = proxy.dir.join("books.redb");
    mine(&proxy, "ray", 2);
    assert!(proxy.wait_metric("stratum_store_events_committed_total", 4.0, T), "{}", proxy.log_text());
    // The file, read through a copy (the daemon holds the file itself),
    // gets the shares from a scheduled flush, with no shutdown.
    let copy = proxy.dir.join("copy.redb");
    let flushed =
        || std::fs::copy(&store, &copy).is_ok() && accepted(&ok(&cli(&copy, &["workers"])), "ray") == Some(2);
    let deadline = std::time::Instant::now() + T;
    while !flushed() {
        assert!(std::time::Instant::now() < deadline, "never flushed: {}", proxy.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(proxy.metric("stratum_store_bytes_written_total").unwrap() > 0.0);
    assert!(proxy.metric("stratum_store_syncs_total").unwrap() >= 2.0);
    proxy.signal("KILL");
    let mut proxy = proxy;
    proxy.wait_exit(T).expect("killed");
    assert!(!proxy.dir.join("books.redb.tmp").exists());
    assert_eq!(accepted(&ok(&cli(&store, &["workers"])), "ray"), Some(2));
}

/// In RAM mode a save the disk refuses costs nothing booked: the books stay
/// in memory, the failure is logged once and shown on the metrics page, a
/// reward typed in meanwhile is answered with a warning, the save is tried
/// again and goes through once there is space; a last save that fails at
/// SIGTERM is logged and the exit status says so.
#[test]
fn ram_mode_survives_a_full_disk_and_says_when_books_are_lost() {
    use std::os::unix::process::CommandExt;
    let pool = CheckingPool::start(PoolOptions::default());
    let addr = pool.addr().to_string();
    let env = [
        ("LOKA_STORE_MODE", "ram"),
        ("LOKA_STORE_COMMIT_INTERVAL", "100ms"),
        ("LOKA_STORE_FLUSH_INTERVAL", "1h"),
    ];
    let start = || {
        Daemon::start_prepared(&["start", "-b", "127.0.0.1:0", "-p", &addr], &env, |cmd| {
            // SAFETY: only async-signal-safe calls between fork and exec; an
            // ignored SIGXFSZ makes writes past the limit fail with EFBIG.
            unsafe {
                cmd.pre_exec(|| {
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    Ok(())
                });
            }
        })
    };
    let mut proxy = start();
    let store = proxy.dir.join("books.redb");
    mine(&proxy, "fay", 2);
    limit_file_size(&proxy, 4096);
    let out = ok(&cli(&store, &["earnings", "add", "--date", &today(), "--reward", "777"]));
    assert!(out.contains("recorded 777") && out.contains("warning: kept in memory"), "{out}");
    assert_eq!(proxy.metric("stratum_store_writable"), Some(0.0));
    assert!(proxy.log_text().contains("the books stay in memory"), "{}", proxy.log_text());
    // Still served from memory; then space again: the retry (every commit
    // interval) writes the file.
    assert_eq!(accepted(&ok(&cli(&store, &["workers"])), "fay"), Some(2));
    limit_file_size(&proxy, libc::RLIM_INFINITY);
    assert!(proxy.wait_metric("stratum_store_writable", 1.0, T), "{}", proxy.log_text());
    let copy = proxy.dir.join("copy.redb");
    std::fs::copy(&store, &copy).unwrap();
    assert!(ok(&cli(&copy, &["earnings", "list"])).contains("777"));
    // Full again at shutdown: the last save fails, loudly.
    mine(&proxy, "fay", 1);
    limit_file_size(&proxy, 4096);
    proxy.signal("TERM");
    let (status, _) = proxy.wait_exit(T).expect("stopped");
    assert!(!status.success(), "{}", proxy.log_text());
    assert!(proxy.log_text().contains("the last save failed"), "{}", proxy.log_text());
    assert_eq!(accepted(&ok(&cli(&store, &["workers"])), "fay"), Some(2), "the file is the last one saved");
}
