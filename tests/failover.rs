//! Pools that fail (issue 10): scripted pools on 127.0.0.1 that die, refuse,
//! hang without sending work, answer nothing, and come back; real miners
//! that keep mining through it, their logins rewritten for the pool in use,
//! no share lost, double-booked or sent to the wrong pool.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::miner::{HashingMiner, MinerOptions, ShareOutcome};
use common::pool::{CheckingPool, PoolOptions};
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

/// Starts the proxy with `pools` (name, address, account), the first being
/// the primary, and `knobs` added to `[pool]`.
fn proxy(pools: &[(&str, SocketAddr, &str)], knobs: &str) -> Daemon {
    proxy_and_config(pools, knobs).0
}

/// [`proxy`], and the config file it runs with.
fn proxy_and_config(pools: &[(&str, SocketAddr, &str)], knobs: &str) -> (Daemon, std::path::PathBuf) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("loka-failover-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (name, addr, account) = pools[0];
    let mut text =
        format!("[pool]\nname = \"{name}\"\naddress = \"{addr}\"\nusername = \"{account}\"\n{knobs}\n");
    for (name, addr, account) in &pools[1..] {
        text += &format!(
            "\n[[pool.fallback]]\nname = \"{name}\"\naddress = \"{addr}\"\nusername = \"{account}\"\n"
        );
    }
    let path = dir.join("loka.toml");
    std::fs::write(&path, text).unwrap();
    let daemon = Daemon::start_with(
        &["-c", path.to_str().unwrap(), "start", "-b", "127.0.0.1:0"],
        &[("LOKA_STORE_COMMIT_INTERVAL", "100ms")],
    );
    (daemon, path)
}

/// A miner that takes new extranonces, with its own ids for every submit.
fn miner(proxy: &Daemon, login: &str, takes_extranonce: bool) -> HashingMiner {
    let opts =
        MinerOptions { repeat_submit_id: None, extranonce_subscribe: takes_extranonce, ..Default::default() };
    let mut m = HashingMiner::connect_with(proxy.addr, opts).unwrap();
    m.subscribe("failover-test/1.0").expect("subscribed");
    assert!(m.authorize(login, "x"));
    m
}

/// An address on 127.0.0.1 where nothing listens.
fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn accepted(s: &common::miner::SubmittedShare) -> bool {
    s.outcome == ShareOutcome::Accepted
}

/// Every share the miner sent got an answer (none silently dropped), up to
/// the one the run stopped at (the miner stops listening there).
fn all_answered(report: &common::miner::MineReport) {
    let upto = report.matched.map_or(report.shares.len(), |i| i + 1);
    let shares = &report.shares[..upto];
    assert!(shares.iter().all(|s| s.outcome != ShareOutcome::NoAnswer), "{shares:?}");
}

#[test]
fn a_primary_that_dies_moves_miners_to_the_fallback_within_seconds() {
    let primary = CheckingPool::start(PoolOptions::default());
    let fallback = CheckingPool::start(PoolOptions::default());
    let proxy = proxy(&[("main", primary.addr(), "acct1"), ("backup", fallback.addr(), "acct2")], "");
    let mut m = miner(&proxy, "alice.rig1", true);
    assert_eq!(m.mine(2, T).accepted(), 2);
    assert_eq!(primary.authorized(0), ["acct1.alice_rig1"]);
    let first_en1 = m.extranonce1.clone();
    assert_eq!(proxy.metric("stratum_pool_active{pool=\"main\"}"), Some(1.0));

    primary.kill();
    let died = Instant::now();
    let report = m.mine_until(died + T, accepted);
    let share = report.matched_share().expect("a share accepted on the fallback");
    let took = share.answered_at.unwrap() - died;
    eprintln!("first share accepted on the fallback {took:?} after the primary died");
    assert!(took < Duration::from_secs(10), "first share on the fallback after {took:?}");
    assert!(!report.closed, "the miner's session survived");
    all_answered(&report);
    // Logged in on the fallback with its own account; new extranonce given.
    assert_eq!(fallback.authorized(0), ["acct2.alice_rig1"]);
    assert_ne!(m.extranonce1, first_en1, "the miner took the fallback's extranonce");
    assert_eq!(fallback.extranonce1(0), m.extranonce1);
    // Every share that reached the fallback was its own: it rejected none.
    assert_eq!(fallback.stats().rejected, 0);
    assert!(proxy.wait_metric("stratum_pool_active{pool=\"backup\"}", 1.0, T));
    assert_eq!(proxy.metric("stratum_pool_failovers_total{pool=\"main\"}"), Some(1.0));
    assert_eq!(proxy.metric("stratum_pool_state{pool=\"main\",state=\"down\"}"), Some(1.0));
    let (code, body) = proxy.http_get("/health");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("backup"), "/health names the pool in use: {body}");
    // One log line for the pool going down, not one per retry.
    assert!(proxy.wait_log("pool main is down", T).is_some());
    // No share double-booked: the proxy's count is the pools' count.
    let both = (primary.stats().accepted + fallback.stats().accepted) as f64;
    assert!(proxy.wait_metric("stratum_shares_accepted_total", both, T), "{both}");
}

#[test]
fn a_miner_that_cannot_take_a_new_extranonce_comes_back_through_the_gateway() {
    let primary = CheckingPool::start(PoolOptions::default());
    let fallback = CheckingPool::start(PoolOptions::default());
    let proxy = proxy(&[("main", primary.addr(), ""), ("backup", fallback.addr(), "")], "");
    let mut m = miner(&proxy, "bob", false);
    assert_eq!(m.mine(1, T).accepted(), 1);
    primary.kill();
    let died = Instant::now();
    let report = m.mine_until(died + T, accepted);
    assert!(report.closed, "sent away");
    assert_eq!(m.reconnects, [Value::Array(vec![])], "client.reconnect to the gateway itself (no host)");
    // Every share sent before the miner read its reconnect was answered
    // (this test miner keeps mining after it; real firmware leaves at once).
    let told = m.reconnected_at.unwrap();
    let before: Vec<_> = report.shares.iter().filter(|s| s.submitted_at < told).collect();
    assert!(before.iter().all(|s| s.outcome != ShareOutcome::NoAnswer), "{before:?}");
    // It reconnects to the gateway, which sends it to the fallback.
    let mut m = miner(&proxy, "bob", false);
    let report = m.mine_until(Instant::now() + T, accepted);
    assert!(report.matched.is_some());
    assert!(Instant::now() - died < Duration::from_secs(10));
    assert_eq!(fallback.authorized(0), ["bob"]);
}

#[test]
fn new_sessions_skip_a_pool_that_refuses() {
    let fallback = CheckingPool::start(PoolOptions::default());
    let proxy = proxy(&[("main", closed_port(), ""), ("backup", fallback.addr(), "")], "");
    let mut m = miner(&proxy, "carol", true);
    assert_eq!(m.mine(1, T).accepted(), 1);
    assert_eq!(fallback.authorized(0), ["carol"]);
    assert!(proxy.wait_metric("stratum_pool_state{pool=\"main\",state=\"down\"}", 1.0, T));
    // Probes retry it (1 s, 2 s, ...); the journal gets one line for the
    // change, not one per retry.
    let failures = "stratum_upstream_connect_failures_total{pool=\"main\"}";
    assert!(proxy.wait_metric(failures, 3.0, T), "probes retry a pool that is down");
    assert_eq!(proxy.log_text().matches("pool main is down").count(), 1, "{}", proxy.log_text());
}

#[test]
fn health_is_503_only_when_no_pool_is_reachable() {
    let fallback = CheckingPool::start(PoolOptions::default());
    let proxy = proxy(&[("main", closed_port(), ""), ("backup", fallback.addr(), "")], "");
    let (code, body) = proxy.http_get("/health");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("backup"), "{body}");
    let none = proxy_with_no_pool();
    let (code, body) = none.http_get("/health");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("main") && body.contains("backup"), "names every pool: {body}");
}

fn proxy_with_no_pool() -> Daemon {
    proxy(&[("main", closed_port(), ""), ("backup", closed_port(), "")], "")
}

#[test]
fn a_pool_that_sends_no_work_is_left() {
    let primary = CheckingPool::start(PoolOptions { send_work: false, ..PoolOptions::default() });
    let fallback = CheckingPool::start(PoolOptions::default());
    let proxy = proxy(
        &[("main", primary.addr(), ""), ("backup", fallback.addr(), "")],
        "notify_timeout = \"1s\"\nswitch_back_after = \"1h\"",
    );
    let mut m = miner(&proxy, "dave", true);
    let report = m.mine_until(Instant::now() + T, accepted);
    assert!(report.matched.is_some(), "mining on the fallback");
    assert_eq!(fallback.authorized(0), ["dave"]);
    assert!(proxy.wait_log("sent no work", T).is_some());
}

#[test]
fn a_pool_that_answers_nothing_is_left() {
    let primary = CheckingPool::start(PoolOptions { silent: true, ..PoolOptions::default() });
    let fallback = CheckingPool::start(PoolOptions::default());
    let proxy = proxy(
        &[("main", primary.addr(), ""), ("backup", fallback.addr(), "")],
        "answer_timeout = \"1s\"\nswitch_back_after = \"1h\"",
    );
    // The first miner's subscribe goes unanswered: it gets an error and its
    // session ends (it has nothing to keep); the pool is down from then on.
    let opts = MinerOptions { repeat_submit_id: None, extranonce_subscribe: true, ..Default::default() };
    let mut first = HashingMiner::connect_with(proxy.addr, opts).unwrap();
    let _ = first.subscribe("x");
    assert!(proxy.wait_metric("stratum_pool_state{pool=\"main\",state=\"down\"}", 1.0, T));
    let mut m = miner(&proxy, "erin", true);
    assert_eq!(m.mine(1, T).accepted(), 1);
    assert_eq!(fallback.authorized(0), ["erin"]);
}

#[test]
fn shares_of_the_old_pool_are_answered_stale_and_never_sent_to_the_new_one() {
    // Both pools number their jobs 1, 2, ...: the old job ids exist again.
    let opts = PoolOptions { job_id_start: Some(1), ..PoolOptions::default() };
    let primary = CheckingPool::start(opts.clone());
    let fallback = CheckingPool::start(opts);
    let proxy = proxy(&[("main", primary.addr(), ""), ("backup", fallback.addr(), "")], "");
    let mut m = miner(&proxy, "frank", true);
    let report = m.mine(2, T);
    assert_eq!(report.accepted(), 2);
    let old = report.shares[1].params.clone();
    primary.kill();
    assert!(m.mine_until(Instant::now() + T, accepted).matched.is_some());
    let id = m.send_submit(old.clone()).unwrap();
    let answer = m.wait_response(&id, Instant::now() + T).expect("answered");
    assert_eq!(answer["error"][0], 21, "stale: {answer}");
    // It never reached the fallback, which rejected nothing.
    assert_eq!(m.mine(1, T).accepted(), 1);
    let nonce = &old[4];
    assert!(fallback.submits().iter().all(|s| s.params[4] != *nonce || s.params[2] != old[2]));
    assert_eq!(fallback.stats().rejected, 0);
}

#[test]
fn miners_move_back_to_the_primary_once_it_stayed_up_for_the_window() {
    let primary = CheckingPool::start(PoolOptions::default());
    let addr = primary.addr();
    let fallback = CheckingPool::start(PoolOptions::default());
    let proxy = proxy(
        &[("main", addr, "acct1"), ("backup", fallback.addr(), "acct2")],
        "switch_back_after = \"2s\"\nretry_max = \"1s\"",
    );
    let mut miners: Vec<_> = (0..3).map(|i| miner(&proxy, &format!("gina.rig{i}"), true)).collect();
    for m in &mut miners {
        assert_eq!(m.mine(1, T).accepted(), 1);
    }
    primary.kill();
    for m in &mut miners {
        assert!(m.mine_until(Instant::now() + T, accepted).matched.is_some());
    }
    assert_eq!(fallback.open_connections().len(), 3);
    // The primary comes back on its address; probes find it, and after the
    // window every miner is moved back, none of them closed.
    let primary = CheckingPool::start_at(addr, PoolOptions::default()).unwrap();
    assert!(proxy.wait_log("pool main sends work again", T).is_some());
    assert!(proxy.wait_metric("stratum_pool_active{pool=\"main\"}", 1.0, T));
    let back = Instant::now();
    for m in &mut miners {
        let report = m.mine_until(back + T, |s| accepted(s) && !from_fallback(&fallback, s));
        assert!(!report.closed);
        all_answered(&report);
    }
    let mut logins: Vec<String> =
        primary.logins().iter().filter(|l| l.accepted).map(|l| l.login.clone()).collect();
    logins.sort();
    logins.dedup();
    assert_eq!(logins, ["acct1.gina_rig0", "acct1.gina_rig1", "acct1.gina_rig2"]);
    assert!(primary.stats().accepted >= 3);
    assert!(fallback.wait_for(|s| s.connections.iter().all(|c| c.closed), T), "the fallback is let go");
    assert_eq!(fallback.stats().rejected + primary.stats().rejected, 0);
}

/// Whether a share went over a connection of the fallback (by the
/// extranonce1 it was built with).
fn from_fallback(fallback: &CheckingPool, share: &common::miner::SubmittedShare) -> bool {
    (0..fallback.connection_count())
        .any(|c| fallback.extranonce1(c).as_deref() == Some(&share.extranonce1[..]))
}

#[test]
fn the_books_split_each_pools_reward_by_the_work_done_on_that_pool() {
    let primary = CheckingPool::start(PoolOptions::default());
    let fallback = CheckingPool::start(PoolOptions::default());
    let (proxy, config) =
        proxy_and_config(&[("main", primary.addr(), ""), ("backup", fallback.addr(), "")], "");
    // hank mines on the primary only and leaves; ivy stays through the
    // failover and mines on both.
    let mut hank = miner(&proxy, "hank", true);
    assert_eq!(hank.mine(3, T).accepted(), 3);
    drop(hank);
    let mut ivy = miner(&proxy, "ivy", true);
    assert_eq!(ivy.mine(2, T).accepted(), 2);
    primary.kill();
    assert!(ivy.mine_until(Instant::now() + T, accepted).matched.is_some());
    assert_eq!(ivy.mine(2, T).accepted(), 2);
    let on_backup = fallback.stats().accepted;
    let total = (primary.stats().accepted + on_backup) as f64;
    assert!(proxy.wait_metric("stratum_shares_accepted_total", total, T));
    let store = proxy.dir.join("books.redb");
    let cli = |args: &[&str]| {
        let mut all = vec!["-c", config.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = common::cli::run(&all, &[("LOKA_STORE_PATH", store.to_str().unwrap())]);
        let text = common::cli::text(&out);
        assert!(out.status.success(), "{all:?}: {text}");
        text
    };
    let day =
        String::from_utf8(std::process::Command::new("date").args(["-u", "+%F"]).output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
    // The books commit every 100 ms: wait until they hold every share.
    let deadline = Instant::now() + T;
    let booked = |name: &str| -> Option<u64> {
        let table = cli(&["workers", "--date", &day]);
        let row = table.lines().find(|l| l.split_whitespace().next() == Some(name))?;
        row.split_whitespace().nth(2)?.parse().ok()
    };
    while booked("ivy").unwrap_or(0) + booked("hank").unwrap_or(0) < total as u64 {
        assert!(Instant::now() < deadline, "{}", cli(&["workers", "--date", &day]));
        std::thread::yield_now();
    }
    cli(&["earnings", "add", "--pool", "backup", "--date", &day, "--reward", "1000"]);
    let split = cli(&["distribute", "--pool", "backup", "--date", &day]);
    let sats = |split: &str, login: &str| -> Option<u64> {
        let row = split.lines().find(|l| l.split_whitespace().next() == Some(login))?;
        row.split_whitespace().last()?.parse().ok()
    };
    assert_eq!(sats(&split, "ivy"), Some(1000), "only ivy worked on backup: {split}");
    assert_eq!(sats(&split, "hank"), None, "{split}");
    cli(&["earnings", "add", "--pool", "main", "--date", &day, "--reward", "1000"]);
    let split = cli(&["distribute", "--pool", "main", "--date", &day]);
    let (h, i) = (sats(&split, "hank").unwrap(), sats(&split, "ivy").unwrap());
    assert_eq!(h + i, 1000, "{split}");
    assert!(h > i, "hank did 3 of main's 4 shares: {split}");
}

/// CPU time (user + system) the process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

#[test]
fn a_session_whose_move_must_wait_does_not_hold_up_the_gateway() {
    // The fallback never answers suggest_difficulty: a session that sent
    // one cannot move back while that request is in flight (30 s).
    let primary = CheckingPool::start(PoolOptions::default());
    let addr = primary.addr();
    let fallback =
        CheckingPool::start(PoolOptions { answer_suggest_difficulty: false, ..PoolOptions::default() });
    let proxy = proxy(
        &[("main", addr, ""), ("backup", fallback.addr(), "")],
        "switch_back_after = \"1s\"\nretry_max = \"1s\"",
    );
    let mut m = miner(&proxy, "jack", true);
    assert_eq!(m.mine(1, T).accepted(), 1);
    primary.kill();
    assert!(m.mine_until(Instant::now() + T, accepted).matched.is_some());
    m.conn.send_line(r#"{"id":99,"method":"mining.suggest_difficulty","params":[0.001]}"#).unwrap();
    assert!(
        fallback
            .wait_for(|s| s.connections.iter().any(|c| c.received.iter().any(|l| l.contains("suggest"))), T)
    );
    let _primary = CheckingPool::start_at(addr, PoolOptions::default()).unwrap();
    assert!(proxy.wait_log("pool main is up again", T).is_some());
    // The move is due and must wait: the gateway sleeps meanwhile (a busy
    // loop would use a whole CPU) and serves other miners at once.
    let before = cpu_ticks(proxy.pid());
    let mut other = miner(&proxy, "kate", true);
    assert_eq!(other.mine(1, T).accepted(), 1);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        other.poll();
        std::thread::sleep(Duration::from_millis(50));
    }
    let used = cpu_ticks(proxy.pid()) - before;
    assert!(used < 100, "the daemon used {used} ticks in about 2 s: a busy loop");
}

#[test]
fn first_lines_are_rewritten_for_the_pool_they_go_to() {
    let fallback = CheckingPool::start(PoolOptions::default());
    let proxy = proxy(&[("main", closed_port(), "acct1"), ("backup", fallback.addr(), "acct2")], "");
    // Subscribe and authorize in one write, before any pool is known down.
    for _ in 0..3 {
        let mut s = common::miner::ScriptedMiner::connect(proxy.addr).unwrap();
        s.send_raw(
            b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]}\n\
              {\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"lena.rig\",\"x\"]}\n",
        )
        .unwrap();
        let _ = s.recv_response(&serde_json::json!(2), T);
    }
    let logins: Vec<String> = fallback.logins().iter().map(|l| l.login.clone()).collect();
    assert!(!logins.is_empty());
    assert!(logins.iter().all(|l| l == "acct2.lena_rig"), "{logins:?}");
}

#[test]
fn a_login_the_pool_refuses_does_not_take_the_pool_down() {
    let refuse_bad: common::pool::LoginFilter = std::sync::Arc::new(|login: &str, _: &str| login != "bad");
    let primary =
        CheckingPool::start(PoolOptions { authorize_filter: Some(refuse_bad), ..PoolOptions::default() });
    let fallback = CheckingPool::start(PoolOptions::default());
    let proxy =
        proxy(&[("main", primary.addr(), ""), ("backup", fallback.addr(), "")], "notify_timeout = \"1s\"");
    let mut good = miner(&proxy, "good", true);
    assert_eq!(good.mine(1, T).accepted(), 1);
    // The pool sends authorized workers a job every 200 ms (a pool's pace
    // scaled to the 1 s notify timeout).
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                primary.new_job(false);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        // No work ever comes to the refused login: its session ends, the
        // pool stays up for everyone else.
        let opts = MinerOptions { repeat_submit_id: None, extranonce_subscribe: true, ..Default::default() };
        let mut bad = HashingMiner::connect_with(proxy.addr, opts).unwrap();
        bad.subscribe("x").unwrap();
        assert!(!bad.authorize("bad", "x"));
        assert!(bad.conn.expect_closed(T));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(
        proxy.metric("stratum_pool_state{pool=\"main\",state=\"up\"}"),
        Some(1.0),
        "{}",
        proxy.log_text()
    );
    assert!(fallback.logins().is_empty());
    assert_eq!(good.mine(1, T).accepted(), 1);
}

#[test]
fn a_connect_session_stays_with_the_pool_it_named() {
    let primary = CheckingPool::start(PoolOptions::default());
    let fallback = CheckingPool::start(PoolOptions::default());
    let proxy =
        proxy(&[("main", primary.addr(), ""), ("backup", fallback.addr(), "")], "switch_back_after = \"1s\"");
    let mut on_main = miner(&proxy, "mo", true);
    assert_eq!(on_main.mine(1, T).accepted(), 1);
    assert_eq!(proxy.metric("stratum_pool_state{pool=\"main\",state=\"up\"}"), Some(1.0));
    // CONNECT to the fallback: Stratum to that pool, and no move to the
    // primary, though it is up and of higher priority.
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::net::TcpStream::connect(proxy.addr).unwrap();
    write!(s, "CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", fallback.addr()).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    while line != "\r\n" {
        line.clear();
        r.read_line(&mut line).unwrap();
    }
    // The rest is Stratum: hand the socket to a miner.
    let opts = MinerOptions { repeat_submit_id: None, extranonce_subscribe: true, ..Default::default() };
    let mut m = HashingMiner::from_stream(common::miner::ScriptedMiner::from_stream(s).unwrap(), opts);
    m.subscribe("via-connect").unwrap();
    assert!(m.authorize("nia", "x"));
    let report = m.mine_until(Instant::now() + Duration::from_secs(3), |_| false);
    assert!(report.accepted() >= 1);
    assert!(!report.closed && m.reconnects.is_empty());
    assert!(!m.messages.iter().any(|v| v["method"] == "mining.set_extranonce"), "not moved");
    assert_eq!(fallback.authorized(0), ["nia"]);
}

#[test]
fn a_login_the_new_pool_refuses_does_not_take_it_down() {
    let primary = CheckingPool::start(PoolOptions::default());
    let only_others: common::pool::LoginFilter = std::sync::Arc::new(|login: &str, _: &str| login != "pat");
    let fallback =
        CheckingPool::start(PoolOptions { authorize_filter: Some(only_others), ..PoolOptions::default() });
    let proxy =
        proxy(&[("main", primary.addr(), ""), ("backup", fallback.addr(), "")], "notify_timeout = \"1s\"");
    let mut m = miner(&proxy, "pat", true);
    assert_eq!(m.mine(1, T).accepted(), 1);
    primary.kill();
    // On the fallback its login is refused and no work comes: the session
    // ends, and the fallback is not blamed for the miner's login.
    assert!(m.conn.expect_closed(T));
    assert_eq!(fallback.logins().iter().filter(|l| !l.accepted).count(), 1);
    assert!(proxy.wait_log("miner", T).is_some());
    assert_eq!(
        proxy.metric("stratum_pool_state{pool=\"backup\",state=\"down\"}"),
        Some(0.0),
        "{}",
        proxy.log_text()
    );
}

#[test]
fn a_miner_that_leaves_at_once_after_a_reconnect_costs_no_cpu_while_its_share_drains() {
    // The pool never answers submits: the share stays in flight through
    // the whole drain (3 s) after the pool's client.reconnect.
    let pool = CheckingPool::start(PoolOptions { answer_submits: false, ..PoolOptions::default() });
    let proxy = proxy(&[("main", pool.addr(), "")], "");
    let mut m = miner(&proxy, "quinn", true);
    let mut submitted = 0;
    let deadline = Instant::now() + T;
    while submitted == 0 && Instant::now() < deadline {
        submitted = m.mine_until(Instant::now() + Duration::from_millis(300), |_| false).shares.len();
    }
    assert!(submitted > 0 && pool.wait_for_submits(1, T));
    let before = cpu_ticks(proxy.pid());
    pool.send_to_all(&common::pool::reconnect_line("", 0, 0));
    assert!(m.conn.recv_method("client.reconnect", T).is_some());
    m.conn.close();
    assert!(proxy.wait_log("disconnected", T).is_some());
    let used = cpu_ticks(proxy.pid()) - before;
    assert!(used < 100, "the daemon used {used} ticks while the share drained: a busy loop");
}

/// A pool's `client.reconnect` with a wait (`[host, port, 2]`): the pool's
/// connection closes, the miner's stays, the proxy says so and opens the
/// next one no sooner than the wait; the miner then mines on, its shares
/// accepted.
#[test]
fn a_reconnect_with_a_wait_reopens_the_pool_after_it() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = proxy(&[("main", pool.addr(), "")], "");
    let mut m = miner(&proxy, "rex", true);
    assert_eq!(m.mine(1, T).accepted(), 1);
    let notifies = |m: &HashingMiner| m.messages.iter().filter(|v| v["method"] == "mining.notify").count();
    let before = notifies(&m);
    let asked = Instant::now();
    // As ckpool and public-pool do: the reconnect, then the connection closed.
    pool.send_to_all(&common::pool::reconnect_line("pool.example", 3333, 2));
    pool.close_all();
    let log = proxy.wait_log("pool main asked to reconnect in 2 s; its connection reopens then", T);
    assert!(log.is_some(), "{}", proxy.log_text());
    assert!(pool.wait_for_connections(2, T));
    let waited = asked.elapsed();
    assert!(waited >= Duration::from_secs(2), "reconnected after {waited:?}");
    // The new connection's work reaches the miner (after its new extranonce)
    // before it mines on: a share of the old job would be answered stale.
    let deadline = Instant::now() + T;
    while notifies(&m) == before {
        assert!(m.pump(deadline), "no work after the reconnect:\n{}", proxy.log_text());
    }
    assert_eq!(m.mine(2, T).accepted(), 2, "{}", proxy.log_text());
    assert!(!proxy.log_text().contains("disconnected"), "{}", proxy.log_text());
}
