//! A gateway no LAN device can knock over, and books no miner can inflate:
//! forged verdicts, peers that never read, garbage, hidden keys, unusable
//! pool numbers, a pool that stalls, a miner that vanishes, and a thousand
//! miners at once. Each test names the point of issue 8 it holds.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const T: Duration = DEFAULT_TIMEOUT;
const ACCOUNT: &str = "bc1qgatewayaccount";

/// Subscribes and authorizes `login`; returns the job id and ntime of the
/// pool's latest job.
fn subscribe_and_authorize(m: &mut ScriptedMiner, login: &str) -> (String, String) {
    m.send_line(r#"{"id":1,"method":"mining.subscribe","params":["t"]}"#).unwrap();
    m.recv_response(&json!(1), T).expect("subscribed");
    m.send_line(&format!(r#"{{"id":2,"method":"mining.authorize","params":["{login}","x"]}}"#)).unwrap();
    assert_eq!(m.recv_response(&json!(2), T).expect("authorized")["result"], json!(true));
    let notified =
        |l: &String| serde_json::from_str::<Value>(l).ok().filter(|v| v["method"] == "mining.notify");
    let job = match m.received.iter().rev().find_map(notified) {
        Some(job) => job,
        None => m.recv_method("mining.notify", T).expect("a job"),
    };
    (job["params"][0].as_str().unwrap().to_owned(), job["params"][7].as_str().unwrap().to_owned())
}

/// 8.1: requests the pool answers `true` share the miner's id with shares the
/// pool rejects; none of those answers may be booked as a share's verdict.
#[test]
fn an_id_shared_with_another_request_cannot_forge_an_accepted_share() {
    // At difficulty 1e6 no share of a random nonce is valid: the pool rejects all.
    let pool = CheckingPool::start(PoolOptions { difficulty: 1e6, ..Default::default() });
    let proxy = Daemon::start(pool.addr(), &[]);
    let mut m = ScriptedMiner::connect(proxy.addr).unwrap();
    let (job_id, ntime) = subscribe_and_authorize(&mut m, "bc1qminer.rig");
    for (n, method) in
        ["mining.extranonce.subscribe", "mining.suggest_difficulty", "mining.multi_version", "x.y"]
            .iter()
            .cycle()
            .take(10)
            .enumerate()
    {
        m.send_line(&format!(r#"{{"id":4,"method":"{method}","params":[1]}}"#)).unwrap();
        let submit = json!({"id": 4, "method": "mining.submit",
            "params": ["bc1qminer.rig", job_id, format!("{n:08x}"), ntime, "00000000"]});
        m.send_json(&submit).unwrap();
    }
    assert!(pool.wait_for(|s| s.submits.len() == 10, T));
    assert!(proxy.wait_metric("stratum_shares_rejected_total", 10.0, T), "{}", proxy.http_get("/metrics").1);
    assert_eq!(pool.stats().accepted, 0);
    assert_eq!(proxy.metric("stratum_shares_accepted_total"), Some(0.0));
    let worker = r#"stratum_worker_difficulty_accepted_total{worker="bc1qminer.rig"}"#;
    assert_eq!(proxy.metric(worker).unwrap_or(0.0), 0.0);
    // The miner got all twenty answers, each under its own id 4.
    let answers = m.received.iter().filter(|l| l.contains(r#""id":4"#) && !l.contains("method")).count();
    assert!(answers <= 20);
}

/// 8.2: a miner that never reads while its pool keeps talking: the proxy
/// stops reading the pool once a bounded queue waits for the miner, and
/// closes the session within `server.write_timeout`; memory stays flat.
#[test]
fn a_miner_that_never_reads_is_bounded_then_closed() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[("LOKA_SERVER_WRITE_TIMEOUT", "1s")]);
    let mut m = ScriptedMiner::connect(proxy.addr).unwrap();
    subscribe_and_authorize(&mut m, "bc1qminer.rig");
    let before = proxy.rss_kib();
    // 32 KiB lines, up to 64 MiB, to a miner that reads none of them.
    let line =
        json!({"id": null, "method": "client.show_message", "params": ["x".repeat(32 << 10)]}).to_string();
    let started = Instant::now();
    let mut sent = 0usize;
    while sent < 64 << 20 && started.elapsed() < T && pool.send(0, &line).is_ok() {
        sent += line.len();
    }
    assert!(sent < 64 << 20, "the proxy took 64 MiB for a miner that reads nothing");
    let log = proxy.wait_log("stopped reading", T).unwrap_or_else(|| panic!("{}", proxy.log_text()));
    assert!(log.contains("miner stopped reading (server.write_timeout)"), "{log}");
    assert_eq!(proxy.metric("stratum_write_stalls_total"), Some(1.0));
    let grown = proxy.rss_kib().saturating_sub(before);
    assert!(grown < 8 * 1024, "the proxy grew by {grown} KiB for {sent} bytes sent");
}

/// 8.2: a miner that floods valid submits and never reads the answers is
/// stopped (requests in flight are bounded; what the proxy must answer
/// itself counts as bad lines) and memory stays flat.
#[test]
fn a_miner_that_floods_without_reading_is_bounded_then_closed() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[("LOKA_SERVER_WRITE_TIMEOUT", "1s")]);
    let mut m = ScriptedMiner::connect(proxy.addr).unwrap();
    let (job_id, ntime) = subscribe_and_authorize(&mut m, "bc1qminer.rig");
    let before = proxy.rss_kib();
    let submit = json!({"id": 9, "method": "mining.submit",
        "params": ["bc1qminer.rig", job_id, "00000001", ntime, "00000000"]});
    let batch = format!("{submit}\n").repeat(64);
    let mut stream = m.stream_clone();
    stream.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let started = Instant::now();
    let mut sent = 0usize;
    while sent < 64 << 20 && started.elapsed() < T {
        match stream.write(batch.as_bytes()) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(sent < 64 << 20, "the proxy read 64 MiB from a miner that reads nothing");
    assert!(m.expect_closed(T));
    let log = proxy.wait_log("disconnected", T).unwrap();
    assert!(log.contains("invalid lines") || log.contains("stopped reading"), "{log}");
    let grown = proxy.rss_kib().saturating_sub(before);
    assert!(grown < 8 * 1024, "the proxy grew by {grown} KiB for {sent} bytes sent");
}

/// 8.2, as found: with `pool.username` set, submits under a login that
/// cannot be rewritten are answered by the proxy itself; a miner that sends
/// them without reading is closed at the bad-line limit, not buffered.
#[test]
fn locally_answered_submits_close_a_miner_that_never_reads() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[("LOKA_POOL_USERNAME", ACCOUNT)]);
    let m = ScriptedMiner::connect(proxy.addr).unwrap();
    let before = proxy.rss_kib();
    let submit = r#"{"id":9,"method":"mining.submit","params":["!!!","j","00000001","6b04a382","00000000"]}"#;
    let batch = format!("{submit}\n").repeat(256);
    let mut stream = m.stream_clone();
    stream.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut sent = 0usize;
    let started = Instant::now();
    while sent < 64 << 20 && started.elapsed() < T {
        match stream.write(batch.as_bytes()) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(sent < 64 << 20, "the proxy read 64 MiB from a miner that reads nothing");
    let log = proxy.wait_log("disconnected", T).unwrap();
    assert!(log.contains("16 invalid lines"), "{log}");
    let grown = proxy.rss_kib().saturating_sub(before);
    assert!(grown < 8 * 1024, "the proxy grew by {grown} KiB");
    // Nothing of it reached the pool: no pool connection was even opened.
    assert_eq!(pool.connection_count(), 0);
}

/// 8.3: lines that are not valid Stratum requests open no pool connection;
/// the first valid request does.
#[test]
fn garbage_opens_no_pool_connection() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[]);
    for garbage in ["{not json", r#"{"id":1}"#, r#"{"id":1,"method":"mining.submit","params":"x"}"#, "[1,2]"]
    {
        let mut conns: Vec<ScriptedMiner> =
            (0..5).map(|_| ScriptedMiner::connect(proxy.addr).unwrap()).collect();
        for m in &mut conns {
            m.send_line(garbage).unwrap();
            let answer = m.recv_json(T).expect("an error answer");
            assert!(answer["error"].is_array(), "{answer}");
        }
    }
    assert!(proxy.wait_metric("stratum_protocol_parse_errors_total", 20.0, T));
    assert_eq!(pool.connection_count(), 0, "garbage opened pool connections");
    let mut m = ScriptedMiner::connect(proxy.addr).unwrap();
    m.send_line("{oops").unwrap();
    m.send_line(r#"{"id":1,"method":"mining.subscribe","params":["t"]}"#).unwrap();
    m.recv_response(&json!(1), T).expect("subscribed");
    assert_eq!(pool.connection_count(), 1);
    assert_eq!(pool.received(0).len(), 1, "only the valid request reached the pool");
}

/// 8.5: a member hidden behind an escaped key, or given twice, never
/// reaches the pool: the pool must never see a login that was not rewritten.
#[test]
fn keys_the_proxy_would_read_differently_never_reach_the_pool() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[("LOKA_POOL_USERNAME", ACCOUNT)]);
    let mut m = ScriptedMiner::connect(proxy.addr).unwrap();
    subscribe_and_authorize(&mut m, "alice");
    for (n, line) in [
        r#"{"id":10,"method":"mining.authorize","params":["bob","x"],"p\u0061rams":["evil","x"]}"#,
        r#"{"id":11,"m\u0065thod":"mining.authorize","params":["evil","x"]}"#,
        r#"{"id":12,"method":"mining.authorize","params":["bob","x"],"params":["evil","x"]}"#,
        r#"{"id":13,"method":"mining.authorize","method":"mining.authorize","params":["evil","x"]}"#,
    ]
    .iter()
    .enumerate()
    {
        m.send_line(line).unwrap();
        let answer = m.recv_until(|v| v["error"].is_array(), T).expect("refused");
        assert_eq!(answer["error"][0], json!(-32700), "line {n}: {answer}");
    }
    // The session goes on, and every login the pool saw was rewritten.
    m.send_line(r#"{"id":20,"method":"mining.authorize","params":["carol","x"]}"#).unwrap();
    assert_eq!(m.recv_response(&json!(20), T).unwrap()["result"], json!(true));
    let logins: Vec<String> = pool.logins().into_iter().map(|l| l.login).collect();
    assert!(logins.iter().all(|l| l.starts_with(ACCOUNT)), "{logins:?}");
    assert!(pool.received(0).iter().all(|l| !l.contains("evil")));
}

/// 8.8: a difficulty that is not finite and positive is refused, counted and
/// never reaches the miner or the books; shares keep the last usable one.
#[test]
fn unusable_pool_difficulties_are_refused_and_counted() {
    let pool = CheckingPool::start(PoolOptions { difficulty: 0.0001, ..Default::default() });
    let proxy = Daemon::start(pool.addr(), &[]);
    let mut miner = HashingMiner::connect(proxy.addr).unwrap();
    miner.subscribe("t").unwrap();
    assert!(miner.authorize("bc1qminer.rig", "x"));
    assert_eq!(miner.mine(1, Duration::from_secs(30)).accepted(), 1);
    for d in ["0", "-1", "1e999", "-0.0", "\"512\""] {
        pool.send(0, &format!(r#"{{"id":null,"method":"mining.set_difficulty","params":[{d}]}}"#)).unwrap();
    }
    assert!(proxy.wait_metric("stratum_pool_bad_difficulty_total", 5.0, T));
    // The session goes on; the miner never heard of those numbers. (The test
    // pool judges by what it sent last, so it sends a usable one again.)
    pool.set_difficulty_all(0.0002);
    let job = pool.new_job(true);
    // Mine only once the new difficulty and job have arrived: a share found
    // meanwhile for the cleaned job would be the test's race, not the proxy's.
    let deadline = Instant::now() + T;
    while miner.job.as_ref().is_none_or(|j| j.job_id != job.job_id) {
        assert!(miner.pump(deadline), "the new job did not arrive");
    }
    assert_eq!(miner.mine(1, Duration::from_secs(30)).accepted(), 1);
    let difficulties: Vec<&String> =
        miner.conn.received.iter().filter(|l| l.contains(r#""method":"mining.set_difficulty""#)).collect();
    assert!(difficulties.iter().all(|l| l.contains("0.0001") || l.contains("0.0002")), "{difficulties:?}");
    let worker = r#"stratum_worker_difficulty_accepted_total{worker="bc1qminer.rig"}"#;
    let accepted = r#"stratum_worker_shares_accepted_total{worker="bc1qminer.rig"}"#;
    assert!(proxy.wait_metric(accepted, 2.0, T), "{}", proxy.http_get("/metrics").1);
    // Booked at 0.0001 and 0.0002: none of the unusable numbers counted.
    assert!((proxy.metric(worker).unwrap() - 0.0003).abs() < 1e-12);
}

/// 11: a pool that stalls with a submit in flight: the miner gets an error
/// answer within `pool.answer_timeout`, and the session leaves that pool
/// connection; the share is counted as unanswered, never as accepted.
#[test]
fn a_pool_that_stalls_with_a_submit_in_flight_answers_then_closes() {
    let pool = CheckingPool::start(PoolOptions { answer_submits: false, ..Default::default() });
    let proxy = Daemon::start(pool.addr(), &[("LOKA_POOL_ANSWER_TIMEOUT", "500ms")]);
    let mut m = ScriptedMiner::connect(proxy.addr).unwrap();
    let (job_id, ntime) = subscribe_and_authorize(&mut m, "bc1qminer.rig");
    m.send_json(&json!({"id": "s1", "method": "mining.submit",
        "params": ["bc1qminer.rig", job_id, "00000001", ntime, "00000000"]}))
        .unwrap();
    let started = Instant::now();
    let answer = m
        .recv_response(&json!("s1"), T)
        .unwrap_or_else(|| panic!("no answer: {:?}\n{}", m.received, proxy.log_text()));
    assert_eq!(answer["error"][0], json!(20), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    // The stalled pool is given up (issue 10). This miner never sent
    // mining.extranonce.subscribe, so it cannot be moved to a new pool
    // connection: it is asked to reconnect to the gateway, and closed.
    assert!(m.recv_method("client.reconnect", T).is_some(), "{:?}", m.received);
    assert!(m.expect_closed(T));
    assert!(proxy.wait_log("pool left a request unanswered", T).is_some());
    assert!(proxy.wait_metric("stratum_shares_unanswered_total", 1.0, T));
    assert_eq!(proxy.metric("stratum_shares_accepted_total"), Some(0.0));
}

/// 11: a miner that vanishes with submits in flight: their answers still
/// reach the books, and the pool connection is closed after them.
#[test]
fn a_miner_that_vanishes_with_submits_in_flight_still_gets_them_booked() {
    // At this difficulty about one nonce in forty makes a share.
    let pool = CheckingPool::start(PoolOptions { difficulty: EASY, ..Default::default() });
    let proxy = Daemon::start(pool.addr(), &[]);
    let mut miner = HashingMiner::connect(proxy.addr).unwrap();
    miner.subscribe("t").unwrap();
    assert!(miner.authorize("bc1qminer.rig", "x"));
    assert!(miner.wait_for_work(T));
    let job = pool.current_job().unwrap();
    let en1 = pool.extranonce1(0).unwrap();
    // Three shares, valid at the pool's tiny difficulty, sent with the close.
    let mut batch = String::new();
    for n in 0..3u32 {
        let share = find_share(&job, &en1, n);
        batch.push_str(&format!(
            "{}\n",
            json!({"id": n + 10, "method": "mining.submit",
            "params": ["bc1qminer.rig", job.job_id, share.0, job.ntime, share.1]})
        ));
    }
    let mut stream = miner.conn.stream_clone();
    stream.write_all(batch.as_bytes()).unwrap();
    stream.shutdown(std::net::Shutdown::Both).unwrap();
    drop(miner);
    assert!(pool.wait_for(|s| s.submits.len() == 3, T));
    assert!(proxy.wait_metric("stratum_shares_accepted_total", 3.0, T), "{}", proxy.log_text());
    assert!(pool.wait_for(|s| s.connections[0].closed, T), "the pool connection was left open");
}

/// A difficulty at which a share is quick to find by brute force.
const EASY: f64 = 1e-8;

/// Finds a share (extranonce2 hex, nonce hex) valid at [`EASY`] for `job`.
fn find_share(job: &Job, en1: &[u8], n: u32) -> (String, String) {
    let en2 = n.to_be_bytes().to_vec();
    let difficulty = EASY;
    (0u32..)
        .map(|nonce| format!("{nonce:08x}"))
        .find(|nonce| check_share(job, en1, &en2, &job.ntime, nonce, None, 0, difficulty).is_ok())
        .map(|nonce| (hex_encode(&en2), nonce))
        .expect("a nonce")
}

/// A second SIGTERM while a session still waits for its pool's answer (the
/// grace time after the first) ends the wait: the daemon stops at once,
/// cleanly, instead of ignoring the signal.
#[test]
fn a_second_sigterm_stops_waiting_for_open_sessions() {
    let pool = CheckingPool::start(PoolOptions { answer_submits: false, ..Default::default() });
    let mut proxy = Daemon::start(pool.addr(), &[("LOKA_POOL_ANSWER_TIMEOUT", "60s")]);
    let mut m = ScriptedMiner::connect(proxy.addr).unwrap();
    let (job_id, ntime) = subscribe_and_authorize(&mut m, "bc1qminer.rig");
    m.send_json(&json!({"id": "s1", "method": "mining.submit",
        "params": ["bc1qminer.rig", job_id, "00000001", ntime, "00000000"]}))
        .unwrap();
    assert!(pool.wait_for_submits(1, T));
    proxy.signal("TERM");
    assert!(proxy.wait_log("received SIGTERM", T).is_some(), "{}", proxy.log_text());
    // The share is still in flight: the session waits out its drain time.
    assert!(proxy.wait_exit(Duration::from_millis(200)).is_none(), "{}", proxy.log_text());
    proxy.signal("TERM");
    let (status, _) = proxy.wait_exit(T).expect("the daemon exits after the second SIGTERM");
    assert!(status.success(), "{status:?}\n{}", proxy.log_text());
    assert!(proxy.wait_log("second stop signal", T).is_some(), "{}", proxy.log_text());
}
