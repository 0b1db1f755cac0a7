//! The metrics endpoint after a real mining run: exact counts per worker,
//! valid exposition format (checked by promtool), /health, and bad HTTP.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::daemon::bin_command;
use common::*;
use serde_json::json;

const T: Duration = DEFAULT_TIMEOUT;

/// Mines `n` shares as `login`, then submits one duplicate and one stale share.
fn mining_run(proxy: &Daemon, login: &str, n: usize) {
    let mut m = HashingMiner::connect(proxy.addr).unwrap();
    m.subscribe("bitaxe/2.4").unwrap();
    assert!(m.authorize(login, "x"));
    let report = m.mine(n, Duration::from_secs(30));
    assert_eq!(report.accepted(), n);
    let dup = report.shares[0].clone();
    assert_eq!(m.submit(&dup, T).code(), Some(22));
    let id = m.send_submit(json!([login, "gone", "00000000", "5f5e1000", "00000000"])).unwrap();
    let answer = m.wait_response(&id, std::time::Instant::now() + T).unwrap();
    assert_eq!(answer["error"][0], json!(21));
}

#[test]
fn metrics_match_what_the_pool_decided_per_worker() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[("LOKA_POOL_USERNAME", "acct")]);
    mining_run(&proxy, "ann.r1", 3);
    mining_run(&proxy, "ben", 2);
    let accepted = pool.stats().accepted as f64;
    assert_eq!(accepted, 5.0);
    assert!(proxy.wait_metric("stratum_shares_accepted_total", accepted, T));
    let m = |s: &str| proxy.metric(s);
    assert_eq!(m("stratum_worker_shares_accepted_total{worker=\"ann.r1\"}"), Some(3.0));
    assert_eq!(m("stratum_worker_shares_accepted_total{worker=\"ben\"}"), Some(2.0));
    assert_eq!(m("stratum_worker_shares_rejected_total{worker=\"ann.r1\",reason=\"duplicate\"}"), Some(1.0));
    assert_eq!(m("stratum_worker_shares_stale_total{worker=\"ben\"}"), Some(1.0));
    assert_eq!(m("stratum_shares_rejected_total"), Some(2.0));
    assert_eq!(m("stratum_duplicate_shares_total"), Some(2.0));
    assert_eq!(m("stratum_stale_shares_total"), Some(2.0));
    assert_eq!(m("stratum_shares_submitted_total"), Some(9.0));
    assert_eq!(m("stratum_authentication_attempts_total"), Some(2.0));
    assert_eq!(m("stratum_submit_duration_seconds_count"), Some(9.0));
    let difficulty = pool.stats().accepted_difficulty;
    let got = m("stratum_worker_difficulty_accepted_total{worker=\"ann.r1\"}").unwrap()
        + m("stratum_worker_difficulty_accepted_total{worker=\"ben\"}").unwrap();
    assert!((got - difficulty).abs() < 1e-9, "{got} vs {difficulty}");
    assert!(m("stratum_worker_hashrate_hashes_per_second{worker=\"ann.r1\"}").unwrap() > 0.0);
    assert!(m("stratum_worker_last_share_timestamp_seconds{worker=\"ben\"}").unwrap() > 1.7e9);
    assert!(m("process_resident_memory_bytes").unwrap() > 0.0);
    assert_eq!(m(&format!("stratum_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))), Some(1.0));
    let (status, alias) = proxy.http_get("/metrics/prometheus");
    assert_eq!(status, 200);
    assert!(alias.contains("stratum_connections_total"));
}

#[test]
fn promtool_accepts_the_page() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[]);
    mining_run(&proxy, "we\"ird\\name", 1);
    let (status, page) = proxy.http_get("/metrics");
    assert_eq!(status, 200);
    assert!(page.contains("worker=\"we\\\"ird\\\\name\""), "{page}");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed by .ci/install (Debian package prometheus)");
    child.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn malformed_http_gets_400_and_the_endpoint_keeps_serving() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[]);
    for bad in
        ["\u{16}\u{3}\u{1}garbage\r\n\r\n", "GET\r\n\r\n", "GET /metrics\r\n\r\n", "get /x HTTP/1.1\r\n\r\n"]
    {
        let (status, _) = http_request(proxy.metrics, bad);
        assert_eq!(status, 400, "{bad:?}");
    }
    let (status, _) = http_request(proxy.metrics, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status, 405);
    let (status, _) = proxy.http_get("/nope");
    assert_eq!(status, 404);
    // An endless header is cut off at the size bound, not read forever.
    let mut s = TcpStream::connect(proxy.metrics).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let _ = s.write_all(format!("GET /metrics HTTP/1.1\r\nX: {}", "a".repeat(20_000)).as_bytes());
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 400"), "{answer}");
    // A client that says nothing is dropped; others are served meanwhile.
    let _silent = TcpStream::connect(proxy.metrics).unwrap();
    let (status, body) = proxy.http_get("/health");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("ok"));
}

#[test]
fn status_prints_workers_and_fails_clearly_when_not_running() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[]);
    mining_run(&proxy, "hal.rig9", 2);
    // Found through the settings, as a user on the gateway would run it.
    let out = bin_command()
        .arg("status")
        .env("LOKA_METRICS_BIND_ADDRESS", proxy.metrics.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("pool ckpool-solo"), "{text}");
    let row = text.lines().find(|l| l.starts_with("hal.rig9")).expect("worker row");
    let cols: Vec<&str> = row.split_whitespace().collect();
    // State, accepted, rejected, stale.
    assert_eq!(&cols[1..5], ["hashing", "2", "1", "1"], "{row}");
    assert!(row.contains("H/s") && row.contains("ago"), "{row}");
    // Not running: a clear message and a non-zero exit.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = bin_command().args(["status", "--url", &format!("http://{dead}")]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not running") && err.contains(&dead.to_string()), "{err}");
}

/// 300 logins authorize and get only a stale share each, one connection
/// apiece; then a real rig mines. The flood counts under `_other` and takes
/// no series, and no rows of its own in the books; the rig gets both.
#[test]
fn a_flood_of_logins_does_not_take_the_series_of_real_rigs() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[("LOKA_STORE_COMMIT_INTERVAL", "100ms")]);
    const FLOOD: usize = 300;
    for i in 0..FLOOD {
        let login = format!("flood{i}");
        let mut m = HashingMiner::connect(proxy.addr).unwrap();
        m.subscribe("flooder/1.0").unwrap();
        assert!(m.authorize(&login, "x"));
        let id = m.send_submit(json!([login, "gone", "00000000", "5f5e1000", "00000000"])).unwrap();
        let answer = m.wait_response(&id, std::time::Instant::now() + T).unwrap();
        assert_eq!(answer["error"][0], json!(21));
    }
    let mut rig = HashingMiner::connect(proxy.addr).unwrap();
    rig.subscribe("bitaxe/2.4").unwrap();
    assert!(rig.authorize("ann.rig1", "x"));
    assert_eq!(rig.mine(3, Duration::from_secs(30)).accepted(), 3);
    assert!(proxy.wait_metric("stratum_worker_shares_accepted_total{worker=\"ann.rig1\"}", 3.0, T));
    let m = |s: &str| proxy.metric(s);
    assert_eq!(m("stratum_worker_shares_stale_total{worker=\"_other\"}"), Some(FLOOD as f64));
    assert_eq!(m("stratum_worker_shares_stale_total{worker=\"flood0\"}"), None);
    let (_, page) = proxy.http_get("/metrics");
    let series = page.lines().filter(|l| l.starts_with("stratum_worker_shares_stale_total{")).count();
    assert_eq!(series, 2, "{page}");
    let out =
        bin_command().arg("workers").env("LOKA_STORE_PATH", proxy.dir.join("books.redb")).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    let rows: Vec<Vec<&str>> = table.lines().skip(2).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert_eq!((rows[0][0], rows[0][4]), ("_other", "300"), "{table}");
    assert_eq!((rows[1][0], rows[1][2]), ("ann.rig1", "3"), "{table}");
}
