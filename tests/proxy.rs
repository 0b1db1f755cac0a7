//! The real binary between real-hashing or scripted miners and a pool that
//! checks every share, all on 127.0.0.1 port 0.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const T: Duration = DEFAULT_TIMEOUT;
const ACCOUNT: &str = "bc1qtestaccount";

fn proxy_for(pool: &CheckingPool) -> Daemon {
    Daemon::start(pool.addr(), &[("LOKA_POOL_USERNAME", ACCOUNT)])
}

#[test]
fn hashing_miner_gets_every_valid_share_accepted_under_the_pool_account() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = proxy_for(&pool);
    let mut miner = HashingMiner::connect(proxy.addr).unwrap();
    assert!(miner.subscribe("cpuminer/2.5.1").is_some());
    assert!(miner.authorize("alice.rig1", "x"));
    let report = miner.mine(8, Duration::from_secs(30));
    assert_eq!(report.accepted(), 8, "{:?}", report.rejected_codes());
    assert!(pool.wait_for(|s| s.accepted() == 8, T));
    let logins = pool.logins();
    assert_eq!(logins[0].login, format!("{ACCOUNT}.alice_rig1"));
    assert!(pool.submits().iter().all(|s| s.login == format!("{ACCOUNT}.alice_rig1")));
    // The miner's repeated id 4 never reaches the pool: each submit goes
    // upstream under an id of the proxy's own, unique on the connection.
    let ids: std::collections::HashSet<u64> = pool.submits().iter().filter_map(|s| s.id.as_u64()).collect();
    assert_eq!(ids.len(), 8, "{:?}", pool.submits().iter().map(|s| &s.id).collect::<Vec<_>>());
    assert!(report.shares.len() == 8);
    let worker = "stratum_worker_shares_accepted_total{worker=\"alice.rig1\"}";
    assert!(proxy.wait_metric(worker, 8.0, T), "{}", proxy.http_get("/metrics").1);
    assert_eq!(proxy.metric("stratum_shares_accepted_total"), Some(8.0));
    assert_eq!(proxy.metric("stratum_shares_rejected_total"), Some(0.0));
    assert!(proxy.wait_log("authorized as alice.rig1", T).is_some());
}

#[test]
fn version_rolling_granted_shares_are_accepted() {
    let pool = CheckingPool::start(PoolOptions {
        version_rolling: VersionRolling::Grant(0x1fffe000),
        ..Default::default()
    });
    let proxy = proxy_for(&pool);
    let opts = MinerOptions { roll_version: true, ..Default::default() };
    let mut miner = HashingMiner::connect_with(proxy.addr, opts).unwrap();
    // bmminer order: configure first, then subscribe and authorize.
    assert_eq!(miner.configure(0x1fffe000), Some(0x1fffe000));
    miner.subscribe("bmminer/2.0.0").unwrap();
    assert!(miner.authorize("bob", "x"));
    let report = miner.mine(5, Duration::from_secs(30));
    assert_eq!(report.accepted(), 5, "{:?}", report.rejected_codes());
    assert!(report.shares.iter().all(|s| s.version_bits.is_some()));
    assert_eq!(pool.logins()[0].login, format!("{ACCOUNT}.bob_default"));
}

#[test]
fn version_rolling_refused_or_unknown_tells_the_miner_false() {
    for rolling in [VersionRolling::Refuse, VersionRolling::Unknown] {
        let pool = CheckingPool::start(PoolOptions { version_rolling: rolling, ..Default::default() });
        let proxy = proxy_for(&pool);
        let mut miner = ScriptedMiner::connect(proxy.addr).unwrap();
        miner
            .send_line(r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"ffffffff"}]}"#)
            .unwrap();
        let answer = miner.recv_response(&json!(1), T).expect("configure answer");
        assert_eq!(answer["result"]["version-rolling"], json!(false), "{answer}");
        assert_eq!(answer["error"], Value::Null);
    }
}

#[test]
fn solo_pool_logins_pass_through_and_ids_come_back_untouched() {
    // Upstream every request carries the proxy's own id (1, 2, … on each
    // pool connection); the miner gets its own ids back, byte for byte.
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[]);
    let mut miner = ScriptedMiner::connect(proxy.addr).unwrap();
    // Authorize before subscribe, sent back to back, with string, int and odd ids.
    let auth = r#"{"id":"auth-1","method":"mining.authorize","params":["bc1qsolominer.rig","x"]}"#;
    let sub = r#"{"id": 7 ,"method":"mining.subscribe","params":["bitaxe/2.4","s1"]}"#;
    miner.send_raw(format!("{auth}\n{sub}\r\n").as_bytes()).unwrap();
    let a = miner.recv_response(&json!("auth-1"), T).expect("authorize answer");
    assert_eq!(a["result"], json!(true));
    let s = miner.recv_response(&json!(7), T).expect("subscribe answer");
    assert!(s["result"][1].is_string());
    assert!(pool.wait_for(|st| st.connections.first().is_some_and(|c| c.received.len() >= 2), T));
    let received = pool.received(0);
    assert_eq!(received[0], auth.replace(r#""auth-1""#, "1"));
    assert_eq!(received[1], sub.replace("\"id\": 7 ,", "\"id\": 2 ,"));
    assert_eq!(pool.logins()[0].login, "bc1qsolominer.rig");
    // A null-id notification from the miner goes upstream under a proxy id
    // (so its answer cannot be mistaken for another's); the miner asked for
    // no answer and gets none.
    miner.send_line(r#"{"id":null,"method":"mining.extranonce.subscribe","params":[]}"#).unwrap();
    miner.send_line(r#"{"id":"after","method":"mining.suggest_difficulty","params":[1]}"#).unwrap();
    assert!(pool.wait_for(|st| st.connections[0].received.len() >= 4, T));
    assert_eq!(pool.received(0)[2], r#"{"id":3,"method":"mining.extranonce.subscribe","params":[]}"#);
    miner.recv_response(&json!("after"), T).expect("answer to the next request");
    assert!(
        miner.received.iter().all(|l| !l.contains(r#""id":null,"result""#) && !l.contains(r#""id":3"#)),
        "{:?}",
        miner.received
    );
}

#[test]
fn subscribe_forms_and_every_pool_message_reach_the_miner_intact() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = proxy_for(&pool);
    let mut miner = ScriptedMiner::connect(proxy.addr).unwrap();
    miner
        .send_line(
            r#"{"id":1,"method":"mining.subscribe","params":["cgminer/4.12","","pool.example","3333"]}"#,
        )
        .unwrap();
    miner.recv_response(&json!(1), T).expect("4-param subscribe answered");
    miner.send_line(r#"{"id":2,"method":"mining.authorize","params":["carol.r2","x"]}"#).unwrap();
    miner.recv_response(&json!(2), T).expect("authorize answered");
    miner.send_line(r#"{"id":3,"method":"mining.suggest_difficulty","params":[0.001]}"#).unwrap();
    miner.recv_response(&json!(3), T).expect("suggest_difficulty answered");
    // Version rolling granted, so the pool's later masks reach the miner.
    miner
        .send_line(r#"{"id":4,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"1fffe000"}]}"#)
        .unwrap();
    assert_eq!(
        miner.recv_response(&json!(4), T).expect("configure answered")["result"]["version-rolling"],
        json!(true)
    );
    let lines = [
        r#"{"id":null,"method":"mining.set_difficulty","params":[0.000123]}"#,
        r#"{"id":null,"method":"mining.set_extranonce","params":["0badf00d",4]}"#,
        r#"{"id":null,"method":"mining.set_version_mask","params":["1fffe000"]}"#,
        r#"{"id":null,"method":"client.show_message","params":["maintenance at noon"]}"#,
        r#"{"id":"v1","method":"client.get_version","params":[]}"#,
        r#"{"id":"p1","method":"mining.ping","params":[]}"#,
        r#"{"id":null,"method":"pool.custom_notice","params":{"x":1}}"#,
    ];
    for line in lines {
        pool.send(0, line).unwrap();
        let got = miner.recv_until(|v| v.get("method").is_some(), T).expect("forwarded");
        assert_eq!(got, serde_json::from_str::<Value>(line).unwrap());
        assert_eq!(miner.received.last().map(String::as_str), Some(line));
    }
    // The miner answers the pool's requests; the answers reach the pool.
    miner.send_line(r#"{"id":"p1","result":"pong","error":null}"#).unwrap();
    assert!(pool.wait_for(|s| s.connections[0].received.iter().any(|l| l.contains("pong")), T));
}

#[test]
fn unknown_methods_get_the_pools_error_and_the_session_goes_on() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = proxy_for(&pool);
    let mut miner = HashingMiner::connect(proxy.addr).unwrap();
    miner.subscribe("x").unwrap();
    assert!(miner.authorize("dave", "x"));
    let answer = miner.request("mining.frobnicate", json!([1, "two"]), T).expect("answer");
    assert_eq!(answer["error"][0], json!(20));
    assert_eq!(miner.mine(2, Duration::from_secs(30)).accepted(), 2);
}

#[test]
fn notify_of_40_kib_arrives_intact_and_its_shares_are_accepted() {
    let pool = CheckingPool::start(PoolOptions { coinb2_extra_bytes: 20 * 1024, ..Default::default() });
    let proxy = proxy_for(&pool);
    let mut miner = HashingMiner::connect(proxy.addr).unwrap();
    miner.subscribe("x").unwrap();
    assert!(miner.authorize("erin", "x"));
    assert!(miner.wait_for_work(T));
    let sent = pool.sent(0);
    let notify = sent.iter().rev().find(|l| l.contains("mining.notify")).expect("pool sent a notify");
    assert!(notify.len() > 40 * 1024, "{}", notify.len());
    assert!(miner.conn.received.iter().any(|l| l == notify), "notify changed on the way");
    assert_eq!(miner.mine(2, Duration::from_secs(30)).accepted(), 2);
}

#[test]
fn stale_and_rejected_shares_are_counted_per_worker() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = proxy_for(&pool);
    let mut miner = HashingMiner::connect(proxy.addr).unwrap();
    miner.subscribe("x").unwrap();
    assert!(miner.authorize("frank.a", "x"));
    assert!(miner.wait_for_work(T));
    // A login gets its own series at its first accepted share.
    assert_eq!(miner.mine(1, Duration::from_secs(30)).accepted(), 1);
    // Unknown job: stale.
    let id = miner.send_submit(json!(["frank.a", "nosuchjob", "00000000", "5f5e1000", "00000000"])).unwrap();
    let answer = miner.wait_response(&id, std::time::Instant::now() + T).unwrap();
    assert_eq!(answer["error"][0], json!(21));
    // Impossible difficulty: rejected as low difficulty.
    pool.set_difficulty_all(1e12);
    let deadline = std::time::Instant::now() + T;
    while miner.difficulty != 1e12 {
        assert!(miner.pump(deadline), "set_difficulty not forwarded");
    }
    let job = miner.job.clone().unwrap();
    let id = miner.send_submit(json!(["frank.a", job.job_id, "00000001", job.ntime, "00000000"])).unwrap();
    let answer = miner.wait_response(&id, std::time::Instant::now() + T).unwrap();
    assert_eq!(answer["error"][0], json!(23), "{answer}");
    let stale = "stratum_worker_shares_stale_total{worker=\"frank.a\"}";
    assert!(proxy.wait_metric(stale, 1.0, T), "{}", proxy.http_get("/metrics").1);
    let low = "stratum_worker_shares_rejected_total{worker=\"frank.a\",reason=\"low-difficulty\"}";
    assert!(proxy.wait_metric(low, 1.0, T), "{}", proxy.http_get("/metrics").1);
    assert_eq!(proxy.metric("stratum_stale_shares_total"), Some(1.0));
}

#[test]
fn pool_disconnect_ends_only_that_miner() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = proxy_for(&pool);
    let mut a = HashingMiner::connect(proxy.addr).unwrap();
    a.subscribe("a").unwrap();
    assert!(a.authorize("a", "x"));
    let mut b = HashingMiner::connect(proxy.addr).unwrap();
    b.subscribe("b").unwrap();
    assert!(b.authorize("b", "x"));
    assert!(pool.wait_for_connections(2, T));
    // The pool's last words reach the miner before the session closes.
    pool.send(0, r#"{"id":null,"method":"client.show_message","params":["bye"]}"#).unwrap();
    pool.close(0);
    assert!(a.conn.recv_method("client.show_message", T).is_some());
    assert!(a.conn.expect_closed(T));
    assert_eq!(b.mine(2, Duration::from_secs(30)).accepted(), 2);
    // The miner comes back and mines on a new upstream.
    let mut a2 = HashingMiner::connect(proxy.addr).unwrap();
    a2.subscribe("a").unwrap();
    assert!(a2.authorize("a", "x"));
    assert_eq!(a2.mine(1, Duration::from_secs(30)).accepted(), 1);
    assert!(proxy.wait_metric("stratum_upstream_reconnects_total{pool=\"ckpool-solo\"}", 1.0, T));
}

#[test]
fn pool_garbage_ends_that_session_not_the_process() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = proxy_for(&pool);
    let mut a = ScriptedMiner::connect(proxy.addr).unwrap();
    a.send_line(r#"{"id":1,"method":"mining.subscribe","params":[]}"#).unwrap();
    a.recv_response(&json!(1), T).unwrap();
    pool.send(0, "\u{1}\u{2}\u{3} not json at all").unwrap();
    assert!(a.expect_closed(T));
    assert!(proxy.wait_log("pool sent", T).is_some());
    let mut b = HashingMiner::connect(proxy.addr).unwrap();
    b.subscribe("b").unwrap();
    assert!(b.authorize("b", "x"));
    assert_eq!(b.mine(1, Duration::from_secs(30)).accepted(), 1);
}

#[test]
fn client_reconnect_brings_the_miner_back_to_the_proxy() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = proxy_for(&pool);
    let mut miner = ScriptedMiner::connect(proxy.addr).unwrap();
    miner.send_line(r#"{"id":1,"method":"mining.subscribe","params":[]}"#).unwrap();
    miner.recv_response(&json!(1), T).unwrap();
    pool.send(0, r#"{"id":null,"method":"client.reconnect","params":["elsewhere.example",3333,0]}"#).unwrap();
    let msg = miner.recv_method("client.reconnect", T).expect("reconnect forwarded");
    assert_eq!(msg["params"], json!([]), "must never point the miner elsewhere");
    assert!(miner.expect_closed(T));
}
