//! Self-test of the test harness: HashingMiner/ScriptedMiner against
//! CheckingPool directly (no proxy), and the share checker on known vectors.

mod common;

use common::pool::{reconnect_line, set_difficulty_line};
use common::{
    CheckingPool, HashingMiner, MinerOptions, PoolOptions, ScriptedMiner, ShareOutcome, SubmitOutcome,
    VersionRolling,
};
use serde_json::{Value, json};
use std::io;
use std::net::TcpStream;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn connected_miner(pool: &CheckingPool, login: &str) -> HashingMiner {
    let mut m = HashingMiner::connect(pool.addr()).expect("connect");
    assert!(m.subscribe("cpuminer/2.5.1").is_some());
    assert!(m.authorize(login, "x"));
    assert!(m.wait_for_work(T));
    m
}

#[test]
fn shares_accepted_with_repeated_ids() {
    let pool = CheckingPool::start(PoolOptions::default());
    let mut m = connected_miner(&pool, "user.w1");
    let report = m.mine(5, T);
    assert_eq!(report.accepted(), 5, "{report:?}");
    assert!(report.shares.iter().all(|s| s.id == json!(4) && s.version_bits.is_none()));
    assert!(pool.wait_for(|s| s.accepted() == 5, T));
    let st = pool.state();
    assert!(st.submits.iter().all(|s| s.login == "user.w1" && s.difficulty == 0.0001));
    assert_eq!(st.logins[0].login, "user.w1");
    assert_eq!(st.logins[0].password, "x");
    // Raw lines recorded byte for byte.
    let rx = pool.received(0);
    assert!(rx[0].contains("mining.subscribe"));
    assert!(rx.iter().filter(|l| l.contains("\"id\":4")).count() == 5);
}

#[test]
fn increasing_ids_and_work_after_authorize_reply() {
    let pool = CheckingPool::start(PoolOptions { work_before_authorize_reply: false, ..Default::default() });
    let opts = MinerOptions { repeat_submit_id: None, ..Default::default() };
    let mut m = HashingMiner::connect_with(pool.addr(), opts).unwrap();
    m.subscribe("bmminer/2.0.0").unwrap();
    assert!(m.authorize("w", "p"));
    let report = m.mine(3, T);
    assert_eq!(report.accepted(), 3, "{report:?}");
    let ids: Vec<&Value> = report.shares.iter().map(|s| &s.id).collect();
    assert!(ids.windows(2).all(|w| w[0].as_u64() < w[1].as_u64()));
}

#[test]
fn version_rolling_granted() {
    let pool = CheckingPool::start(PoolOptions {
        version_rolling: VersionRolling::Grant(0x1fffe000),
        ..Default::default()
    });
    let mut m = HashingMiner::connect(pool.addr()).unwrap();
    assert_eq!(m.configure(0x00ffff00), Some(0x00ffe000));
    m.subscribe("bitaxe").unwrap();
    assert!(m.authorize("w", "x"));
    let report = m.mine(4, T);
    assert_eq!(report.accepted(), 4, "{report:?}");
    assert!(report.shares.iter().all(|s| s.version_bits.as_deref().is_some_and(|b| b != "00000000")));
    assert!(pool.submits().iter().all(|s| s.params.as_array().unwrap().len() == 6));
    // Bits outside the mask are refused.
    let mut bad = report.shares[0].clone();
    bad.version_bits = Some("e0000000".into());
    assert_eq!(m.submit(&bad, T).code(), Some(20));
}

#[test]
fn version_rolling_refused_and_unknown() {
    let pool =
        CheckingPool::start(PoolOptions { version_rolling: VersionRolling::Refuse, ..Default::default() });
    let mut m = HashingMiner::connect(pool.addr()).unwrap();
    assert_eq!(m.configure(0xffffffff), None);
    let pool2 =
        CheckingPool::start(PoolOptions { version_rolling: VersionRolling::Unknown, ..Default::default() });
    let mut s = ScriptedMiner::connect(pool2.addr()).unwrap();
    s.send_line(r#"{"id":"cfg","method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"ffffffff"}]}"#)
        .unwrap();
    let r = s.recv_response(&json!("cfg"), T).unwrap();
    assert_eq!(r["error"], json!([20, "Unknown method", null]));
}

#[test]
fn rejections_low_diff_duplicate_stale_unauthorized() {
    let pool = CheckingPool::start(PoolOptions::default());
    let mut m = connected_miner(&pool, "user.w1");
    let report = m.mine(1, T);
    assert_eq!(report.accepted(), 1);
    let share = report.shares[0].clone();
    // Duplicate.
    assert_eq!(m.submit(&share, T).code(), Some(22));
    // Garbage nonce at huge difficulty.
    pool.send(0, &set_difficulty_line(1e12)).unwrap();
    pool.new_job(false);
    assert!(m.pump(std::time::Instant::now() + T)); // set_difficulty
    assert!(m.pump(std::time::Instant::now() + T)); // notify
    let job = m.job.clone().unwrap();
    let mut garbage = share.clone();
    garbage.job_id = job.job_id.clone();
    garbage.ntime = job.ntime.clone();
    garbage.nonce = "deadbeef".into();
    assert_eq!(m.submit(&garbage, T).code(), Some(23));
    // Stale after clean_jobs.
    pool.new_job(true);
    assert_eq!(m.submit(&garbage, T).code(), Some(21));
    // Unauthorized login on a valid job.
    let job = m.job.clone().unwrap();
    garbage.job_id = job.job_id;
    m.login = "someone.else".into();
    assert_eq!(m.submit(&garbage, T).code(), Some(24));
    let codes: Vec<Option<i64>> = pool.submits().iter().map(|s| s.outcome.code()).collect();
    assert_eq!(codes, vec![None, Some(22), Some(23), Some(21), Some(24)]);
}

#[test]
fn big_notify_arrives_intact_and_is_minable() {
    let pool = CheckingPool::start(PoolOptions { coinb2_extra_bytes: 20 * 1024, ..Default::default() });
    let mut m = connected_miner(&pool, "w");
    let pool_job = pool.current_job().unwrap();
    let mut mine_job = m.job.clone().unwrap();
    assert!(mine_job.coinb2.len() > 40 * 1024);
    mine_job.clean_jobs = pool_job.clean_jobs;
    assert_eq!(mine_job, pool_job);
    let notify = m.conn.received.iter().find(|l| l.contains("\"method\":\"mining.notify\"")).unwrap();
    // 20 KiB of extra coinbase bytes = 40 KiB more hex on the line.
    assert!(notify.len() > 40 * 1024, "{}", notify.len());
    assert_eq!(m.mine(2, T).accepted(), 2);
}

#[test]
fn follows_new_jobs_and_difficulty_while_mining() {
    let pool = CheckingPool::start(PoolOptions::default());
    let mut m = connected_miner(&pool, "w");
    assert_eq!(m.mine(1, T).accepted(), 1);
    pool.set_difficulty_all(0.00005);
    let job = pool.new_job(true);
    let r = m.mine(2, T);
    assert_eq!(r.accepted(), 2, "{r:?}");
    assert!(r.shares.iter().all(|s| s.job_id == job.job_id && s.difficulty == 0.00005));
}

#[test]
fn pool_protocol_details() {
    let pool = CheckingPool::start(PoolOptions {
        authorize_filter: Some(std::sync::Arc::new(|login: &str, _: &str| login.starts_with("good"))),
        ..Default::default()
    });
    let mut a = ScriptedMiner::connect(pool.addr()).unwrap();
    let mut b = ScriptedMiner::connect(pool.addr()).unwrap();
    // String id, 2- and 4-param subscribe, ids echoed.
    a.send_line(r#"{"id":"abc","method":"mining.subscribe","params":["x","sess"]}"#).unwrap();
    let ra = a.recv_response(&json!("abc"), T).unwrap();
    b.send_line(r#"{"id":null,"method":"mining.subscribe","params":["x",null,"host",3333]}"#).unwrap();
    let rb = b.recv_response(&Value::Null, T).unwrap();
    assert_ne!(ra["result"][1], rb["result"][1], "distinct extranonce1");
    assert_eq!(ra["result"][2], json!(4));
    // Unknown method does not close.
    a.send_line(r#"{"id":7,"method":"mining.frobnicate","params":[]}"#).unwrap();
    assert_eq!(a.recv_response(&json!(7), T).unwrap()["error"][0], json!(20));
    a.send_line(r#"{"id":8,"method":"mining.extranonce.subscribe","params":[]}"#).unwrap();
    assert_eq!(a.recv_response(&json!(8), T).unwrap()["result"], json!(true));
    a.send_line(r#"{"id":9,"method":"mining.suggest_difficulty","params":[512]}"#).unwrap();
    assert_eq!(a.recv_response(&json!(9), T).unwrap()["result"], json!(true));
    // Login filter.
    a.send_line(r#"{"id":10,"method":"mining.authorize","params":["bad.w","x"]}"#).unwrap();
    assert_eq!(a.recv_response(&json!(10), T).unwrap()["error"][0], json!(24));
    a.send_line(r#"{"id":11,"method":"mining.authorize","params":["good.w","x"]}"#).unwrap();
    assert!(a.recv_method("mining.set_difficulty", T).is_some());
    assert!(a.recv_method("mining.notify", T).is_some());
    assert_eq!(a.recv_response(&json!(11), T).unwrap()["result"], json!(true));
    assert!(pool.wait_for(|s| s.logins.len() == 2 && s.connections.len() == 2, T));
    assert_eq!(pool.state().connections[0].suggested_difficulty, Some(512.0));
    assert_eq!(pool.received(0)[0], r#"{"id":"abc","method":"mining.subscribe","params":["x","sess"]}"#);
    // Pushed lines and closing.
    assert_eq!(pool.send_to_all(&reconnect_line("127.0.0.1", 1, 0)), 2);
    assert!(b.recv_method("client.reconnect", T).is_some());
    assert!(a.recv_method("client.reconnect", T).is_some());
    pool.send(0, "garbage not json").unwrap();
    assert_eq!(a.recv_line(T).as_deref(), Some("garbage not json"));
    pool.close_all();
    assert!(a.expect_closed(T));
    assert!(b.expect_closed(T));
    assert!(pool.wait_for(|s| s.open_connections() == 0, T));
}

#[test]
fn pool_notices_miner_disconnect_and_accepts_again() {
    let pool = CheckingPool::start(PoolOptions::default());
    let mut a = ScriptedMiner::connect(pool.addr()).unwrap();
    assert!(pool.wait_for_connections(1, T));
    a.close();
    assert!(pool.wait_for(|s| s.connections[0].closed, T));
    let mut m = connected_miner(&pool, "again");
    assert_eq!(m.mine(1, T).accepted(), 1);
    assert_eq!(pool.stats().accepted, 1);
    assert_eq!(pool.submits()[0].outcome, SubmitOutcome::Accepted);
    let _ = ShareOutcome::NoAnswer;
}

#[test]
fn miner_answers_ping_and_pool_records_it() {
    let pool = CheckingPool::start(PoolOptions::default());
    let mut m = connected_miner(&pool, "w");
    pool.send(0, r#"{"id":"ping-1","method":"mining.ping","params":[]}"#).unwrap();
    assert!(m.pump(std::time::Instant::now() + T));
    assert!(pool.wait_for(
        |s| { s.connections[0].received.iter().any(|l| l.contains("ping-1") && l.contains("pong")) },
        T
    ));
}

/// Methods of the lines a pool received on connection `conn`, in order.
fn received_methods(pool: &CheckingPool, conn: usize) -> Vec<String> {
    pool.received(conn)
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["method"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn killed_pool_refuses_connects_and_ends_its_connections() {
    let pool = CheckingPool::start(PoolOptions::default());
    let addr = pool.addr();
    let mut idle = ScriptedMiner::connect(addr).unwrap();
    let mut m = connected_miner(&pool, "user.w1");
    assert_eq!(m.mine(1, T).accepted(), 1);
    assert_eq!(pool.open_connections(), vec![0, 1]);
    pool.kill();
    assert!(pool.is_killed());
    // Synchronous: the port refuses as soon as kill returns.
    let err = TcpStream::connect_timeout(&addr, T).expect_err("a killed pool refuses");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    assert!(idle.expect_closed(T));
    assert!(m.conn.expect_closed(T));
    // What the pool recorded outlives it; a second kill (and drop) is harmless.
    assert!(pool.open_connections().is_empty());
    assert_eq!(pool.authorized(1), vec!["user.w1".to_owned()]);
    assert_eq!((pool.accepted_on(0), pool.accepted_on(1)), (0, 1));
    pool.kill();
    assert_eq!(pool.connection_count(), 2, "the wake-up connect is not recorded");
}

#[test]
fn mining_run_ends_when_the_pool_dies_under_it() {
    let pool = CheckingPool::start(PoolOptions::default());
    let mut m = connected_miner(&pool, "w");
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(pool.wait_for(|st| st.accepted() >= 2, T));
            pool.kill();
        });
        let r = m.mine_until(common::deadline_after(T), |_| false);
        assert!(r.closed, "{r:?}");
        assert_eq!(r.matched, None);
        // The pool accepted two of its shares; the kill may beat the second
        // answer to the miner, so only the first answer is sure to arrive.
        assert!(r.shares.len() >= 2 && r.accepted() >= 1, "{r:?}");
        assert!(r.elapsed < T);
    });
}

#[test]
fn killed_pool_comes_back_on_the_same_port() {
    let first = CheckingPool::start(PoolOptions::default());
    let addr = first.addr();
    let mut m = connected_miner(&first, "w");
    assert_eq!(m.mine(1, T).accepted(), 1);
    let first_en1 = first.extranonce1(0).unwrap();
    first.kill();
    assert!(m.conn.expect_closed(T));
    // The miner still holds its end: the old pool's socket is half closed
    // (FIN_WAIT2), not gone, and the port can be bound again.
    let second = CheckingPool::start_at(addr, PoolOptions::default()).expect("rebind after kill");
    assert_eq!(second.addr(), addr);
    let mut m2 = connected_miner(&second, "w");
    assert_ne!(m2.extranonce1.as_deref(), Some(first_en1.as_slice()), "a new instance, a new extranonce1");
    assert_eq!(m2.mine(1, T).accepted(), 1);
    // Again with the old pool's end in TIME_WAIT: it closed first, the
    // miner closed after.
    second.kill();
    assert!(m2.conn.expect_closed(T));
    drop(m2);
    drop(m);
    let third = CheckingPool::start_at(addr, PoolOptions::default()).expect("rebind after TIME_WAIT");
    assert_eq!(connected_miner(&third, "w").mine(1, T).accepted(), 1);
}

#[test]
fn every_pool_instance_hands_out_its_own_extranonce1_and_job_ids() {
    let pools: Vec<CheckingPool> = (0..4).map(|_| CheckingPool::start(PoolOptions::default())).collect();
    let mut en1s = std::collections::HashSet::new();
    let mut job_ids = std::collections::HashSet::new();
    for pool in &pools {
        for _ in 0..3 {
            let mut s = ScriptedMiner::connect(pool.addr()).unwrap();
            s.send_line(r#"{"id":1,"method":"mining.subscribe","params":[]}"#).unwrap();
            let r = s.recv_response(&json!(1), T).unwrap();
            assert!(en1s.insert(r["result"][1].as_str().unwrap().to_owned()), "{r}");
        }
        assert!(job_ids.insert(pool.current_job().unwrap().job_id));
    }
}

#[test]
fn job_id_start_makes_two_pools_reuse_job_ids() {
    let opts = PoolOptions { job_id_start: Some(1), ..Default::default() };
    let a = CheckingPool::start(opts.clone());
    let b = CheckingPool::start(opts);
    let (ja, jb) = (a.current_job().unwrap(), b.current_job().unwrap());
    assert_eq!((ja.job_id.as_str(), jb.job_id.as_str()), ("1", "1"));
    assert_ne!(ja, jb, "same id, different work");
    let mut ma = connected_miner(&a, "w");
    let mut mb = connected_miner(&b, "w");
    assert_eq!((a.new_job(true).job_id, b.new_job(true).job_id), ("2".to_owned(), "2".to_owned()));
    for m in [&mut ma, &mut mb] {
        let r = m.mine(1, T);
        assert_eq!(r.accepted(), 1, "{r:?}");
        assert_eq!(r.shares[0].job_id, "2");
    }
}

#[test]
fn pool_without_work_answers_but_sends_no_notify_until_resumed() {
    let pool = CheckingPool::start(PoolOptions { send_work: false, ..Default::default() });
    let mut m = HashingMiner::connect(pool.addr()).unwrap();
    assert!(m.subscribe("x").is_some());
    assert!(m.authorize("w", "x"));
    // The pool sends its work before the authorize answer: a notify would be here.
    assert_eq!(m.difficulty, 0.0001, "set_difficulty still comes");
    assert!(m.job.is_none());
    pool.new_job(true);
    // Anything new_job sent was written before this request is answered.
    assert!(m.request("mining.extranonce.subscribe", json!([]), T).is_some());
    assert!(m.job.is_none());
    assert!(!m.messages.iter().any(|v| v["method"] == "mining.notify"));
    assert_eq!(pool.state().connections[0].notifies, 0);
    pool.pause_work(false);
    let job = pool.new_job(true);
    assert!(m.wait_for_work(T));
    assert_eq!(m.job.as_ref().map(|j| j.job_id.clone()), Some(job.job_id.clone()));
    assert_eq!(m.mine(1, T).accepted(), 1);
    // Paused again at run time.
    pool.pause_work(true);
    let unsent = pool.new_job(true);
    assert!(m.request("mining.extranonce.subscribe", json!([]), T).is_some());
    assert_eq!(m.job.as_ref().map(|j| j.job_id.clone()), Some(job.job_id));
    assert_eq!(pool.current_job().unwrap().job_id, unsent.job_id);
    assert_eq!(pool.state().connections[0].notifies, 1);
}

#[test]
fn silent_pool_reads_and_answers_nothing() {
    let pool = CheckingPool::start(PoolOptions { silent: true, ..Default::default() });
    let mut s = ScriptedMiner::connect(pool.addr()).unwrap();
    s.send_line(r#"{"id":1,"method":"mining.subscribe","params":[]}"#).unwrap();
    s.send_line(r#"{"id":2,"method":"mining.authorize","params":["w","x"]}"#).unwrap();
    // A pool that answers has answered line 1 before it records line 2.
    assert!(pool.wait_for(|st| st.connections.first().is_some_and(|c| c.received.len() == 2), T));
    assert!(pool.sent(0).is_empty());
    let quiet = s.recv_outcome(std::time::Instant::now() + Duration::from_millis(200));
    assert_eq!(quiet, common::ReadOutcome::Timeout);
    assert!(pool.logins().is_empty());
    assert_eq!(pool.send_to_all(&set_difficulty_line(1.0)), 0);
    assert!(pool.send(0, "anything").is_err());
    assert_eq!(pool.open_connections(), vec![0]);
}

#[test]
fn miner_sends_extranonce_subscribe_only_when_asked() {
    let pool = CheckingPool::start(PoolOptions::default());
    let opts = MinerOptions { extranonce_subscribe: true, ..Default::default() };
    let mut m = HashingMiner::connect_with(pool.addr(), opts).unwrap();
    assert!(m.subscribe("nicehash-style").is_some());
    assert!(m.authorize("w", "x"));
    assert_eq!(
        received_methods(&pool, 0),
        ["mining.subscribe", "mining.extranonce.subscribe", "mining.authorize"]
    );
    assert_eq!(m.extranonce_subscribe_answer.as_ref().map(|a| &a["result"]), Some(&json!(true)));
    let plain = connected_miner(&pool, "w2");
    assert_eq!(received_methods(&pool, 1), ["mining.subscribe", "mining.authorize"]);
    assert!(plain.extranonce_subscribe_answer.is_none());
}

#[test]
fn miner_builds_shares_with_the_new_extranonce_and_records_reconnect() {
    let pool = CheckingPool::start(PoolOptions::default());
    let mut m = connected_miner(&pool, "w");
    assert_eq!(m.mine(1, T).accepted(), 1);
    // The pool checks the extranonce2 length exactly, and at this difficulty
    // a share hashed with a wrong extranonce1 passes about once in 400 000.
    pool.send(0, r#"{"id":null,"method":"mining.set_extranonce","params":["f00dcafe",6]}"#).unwrap();
    let job = pool.new_job(true);
    assert!(m.pump(common::deadline_after(T))); // set_extranonce
    assert!(m.pump(common::deadline_after(T))); // notify
    let r = m.mine(3, T);
    assert_eq!(r.accepted(), 3, "{r:?}");
    for s in &r.shares {
        assert_eq!(s.extranonce1, [0xf0, 0x0d, 0xca, 0xfe]);
        assert_eq!(s.extranonce2.len(), 12);
        assert_eq!(s.job_id, job.job_id);
    }
    // Only the extranonce2 size changes, for the same job, in the middle of
    // a run: shares in flight may be refused (20), later ones are built anew.
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(pool.wait_for(|st| st.accepted() >= 5, T));
            pool.send(0, r#"{"id":null,"method":"mining.set_extranonce","params":["f00dcafe",8]}"#).unwrap();
        });
        let r = m.mine_until(common::deadline_after(T), |s| {
            s.outcome == ShareOutcome::Accepted && s.extranonce2.len() == 16
        });
        let s = r.matched_share().expect("an accepted share with the new size");
        assert_eq!(s.job_id, job.job_id);
    });
    pool.send(0, &reconnect_line("127.0.0.1", 1, 0)).unwrap();
    assert!(m.request("mining.extranonce.subscribe", json!([]), T).is_some());
    assert_eq!(m.reconnects, vec![json!(["127.0.0.1", 1, 0])]);
}

#[test]
fn mine_until_keeps_going_through_rejects_and_stops_on_its_predicate() {
    let pool = CheckingPool::start(PoolOptions::default());
    let mut m = connected_miner(&pool, "w");
    // Every share from an unauthorized login is rejected (24).
    m.login = "intruder".into();
    let mut rejected = 0;
    let r = m.mine_until(common::deadline_after(T), |s| {
        rejected += usize::from(s.outcome.code() == Some(24));
        rejected == 3
    });
    assert!(r.matched.is_some(), "{r:?}");
    assert_eq!(r.rejected_codes().iter().filter(|&&c| c == 24).count(), 3);
    assert_eq!(r.accepted(), 0);
    // First accepted share after a point in time, as a failover test measures it.
    m.login = "w".into();
    let since = std::time::Instant::now();
    let r = m.mine_until(common::deadline_after(T), |s| s.outcome == ShareOutcome::Accepted);
    let s = r.matched_share().expect("an accepted share");
    assert!(s.submitted_at >= since && s.answered_at.is_some_and(|a| a >= s.submitted_at));
    assert!(!r.closed);
    assert!(r.rejected_codes().is_empty(), "late answers of the first run stay there: {r:?}");
    // Nothing accepted: the run ends at its deadline.
    let r = m.mine_until(common::deadline_after(Duration::from_millis(300)), |_| false);
    assert_eq!((r.matched, r.closed), (None, false));
}

#[test]
fn an_answer_that_comes_after_its_wait_does_not_go_to_the_next_submit() {
    let pool = CheckingPool::start(PoolOptions::default());
    let mut m = connected_miner(&pool, "w");
    let r = m.mine(1, T);
    assert_eq!(r.accepted(), 1);
    // Submitted again (a duplicate, 22) with id 4, and not waited for.
    assert_eq!(m.submit(&r.shares[0], Duration::ZERO), ShareOutcome::NoAnswer);
    // The next share also uses id 4; the 22 arrives first and is not its answer.
    let r = m.mine(1, T);
    assert_eq!(r.shares[0].outcome, ShareOutcome::Accepted, "{r:?}");
    assert_eq!(m.late_answers.len(), 1);
    assert_eq!(m.late_answers[0]["error"][0], json!(22));
}

mod share_tests {
    use crate::common::share::*;
    use serde_json::Value;

    fn display_to_notify_prevhash(display: &str) -> String {
        let mut internal = hex_decode(display).unwrap();
        internal.reverse();
        for w in internal.chunks_mut(4) {
            w.reverse();
        }
        hex_encode(&internal)
    }

    #[test]
    fn block_125552_header_hash() {
        let prev =
            display_to_notify_prevhash("00000000000008a3a41b85b8b29ad444def299fee21793cd8b9e567eab02cd81");
        let mut root =
            hex_decode("2b12fcf1b09288fcaff797d71e950e71ae42b91e8bdb2304758dfcffc2b620e3").unwrap();
        root.reverse();
        let root: [u8; 32] = root.try_into().unwrap();
        let header = build_header(1, &prev, &root, "4dd7f5c7", "1a44b9f2", "9546a142").unwrap();
        let hash = sha256d(&header);
        assert_eq!(display_hash(&hash), "00000000000000001e8d6829a8a21adc5d38d0a473b144b6765798e61f98bd1d");
        // That hash is worth about 3.6e10 difficulty.
        assert!(hash_meets_difficulty(&hash, 1e10));
        assert!(!hash_meets_difficulty(&hash, 1e11));
        let d = hash_difficulty(&hash);
        assert!(d > 3e10 && d < 4e10, "{d}");
    }

    #[test]
    fn targets() {
        let diff1 = target_for_difficulty(1.0).unwrap();
        assert_eq!(hex_encode(&diff1), "00000000ffff0000000000000000000000000000000000000000000000000000");
        assert_eq!(
            hex_encode(&target_for_difficulty(2.0).unwrap()),
            "000000007fff8000000000000000000000000000000000000000000000000000"
        );
        assert_eq!(
            hex_encode(&target_for_difficulty(65536.0).unwrap()),
            "000000000000ffff000000000000000000000000000000000000000000000000"
        );
        // 0.5 doubles the target.
        assert_eq!(
            hex_encode(&target_for_difficulty(0.5).unwrap()),
            "00000001fffe0000000000000000000000000000000000000000000000000000"
        );
        // Fractional difficulty gives a target above diff-1 and is floor-exact:
        // 0.0001 = m * 2^e; check against f64 to ~15 significant digits.
        let t = target_for_difficulty(0.0001).unwrap();
        assert!(t > diff1);
        let tv = t.iter().fold(0f64, |a, &b| a * 256.0 + b as f64);
        let expect = 65535.0 * 2f64.powi(208) / 0.0001;
        assert!((tv / expect - 1.0).abs() < 1e-12, "{tv} vs {expect}");
        // floor(0xFFFF*2^208 / 3) is exact: 0x5555 << 208.
        assert_eq!(
            hex_encode(&target_for_difficulty(3.0).unwrap()),
            "0000000055550000000000000000000000000000000000000000000000000000"
        );
        // Tiny difficulty clamps, huge difficulty gives a tiny target.
        assert_eq!(target_for_difficulty(1e-12).unwrap(), [0xff; 32]);
        assert_eq!(target_for_difficulty(1e300).unwrap(), [0; 32]);
        assert!(target_for_difficulty(0.0).is_none());
        assert!(target_for_difficulty(f64::NAN).is_none());
    }

    fn sample_job() -> Job {
        Job {
            job_id: "1".into(),
            prevhash: "6dd02427ddcba6abc6f0aaabf16d72ced43e701fa23a47566c1f50c412851af0".into(),
            coinb1: "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff330300350c00047fa3046b04cf6acb300c".into(),
            coinb2: "0a636b706f6f6c2d6c68720b2f6c6f6b612d626172732fffffffff0140be4025000000001976a91422ddd9233f44ac2e9f183ec755adf134c12cdbf188ac00000000".into(),
            merkle_branch: vec![hex_encode(&[7u8; 32])],
            version: "20000000".into(),
            nbits: "17034219".into(),
            ntime: "6b04a37f".into(),
            clean_jobs: true,
        }
    }

    #[test]
    fn any_nonce_passes_tiny_difficulty_and_fails_huge() {
        let job = sample_job();
        let en1 = [1, 2, 3, 4];
        let en2 = [0, 0, 0, 9];
        for nonce in ["00000000", "deadbeef", "12345678"] {
            assert!(check_share(&job, &en1, &en2, "6b04a37f", nonce, None, 0, 1e-12).is_ok());
            assert!(matches!(
                check_share(&job, &en1, &en2, "6b04a37f", nonce, None, 0, 1e15),
                Err(ShareError::LowDifficulty { .. })
            ));
        }
    }

    #[test]
    fn version_rolling_rules() {
        let job = sample_job();
        let en1 = [1, 2, 3, 4];
        let en2 = [0, 0, 0, 9];
        let mask = 0x1fffe000;
        assert!(check_share(&job, &en1, &en2, "6b04a37f", "00000000", Some("00002000"), mask, 1e-12).is_ok());
        assert_eq!(
            check_share(&job, &en1, &en2, "6b04a37f", "00000000", Some("00001000"), mask, 1e-12),
            Err(ShareError::VersionBitsOutsideMask { bits: 0x1000, mask })
        );
        // Rolled bits change the hash.
        let a = check_share(&job, &en1, &en2, "6b04a37f", "00000000", None, mask, 1e-12).unwrap();
        let b = check_share(&job, &en1, &en2, "6b04a37f", "00000000", Some("00002000"), mask, 1e-12).unwrap();
        assert_ne!(a, b);
        assert_eq!(rolled_version(0x20000000, Some("1fffe000"), mask).unwrap(), 0x3fffe000);
    }

    #[test]
    fn notify_roundtrip() {
        let job = sample_job();
        let v: Value = serde_json::from_str(&job.notify_line()).unwrap();
        assert_eq!(Job::from_notify_params(&v["params"]).unwrap(), job);
    }

    #[test]
    fn header_hasher_matches_sha256d() {
        let mut header = [0u8; 80];
        for (i, b) in header.iter_mut().enumerate() {
            *b = (i * 37 + 11) as u8;
        }
        let mut hasher = HeaderHasher::new(&header);
        for nonce in [0u32, 1, 0xdeadbeef, u32::MAX] {
            header[76..80].copy_from_slice(&nonce.to_le_bytes());
            assert_eq!(hasher.hash(nonce), sha256d(&header));
        }
    }
}

/// The browser helper against pages served locally: it must see what a
/// reader sees, and it must be able to fail.
mod browser_tests {
    use crate::common::browser::{PageServer, chromium_in, render};

    const HEAD: &str = r#"<!doctype html><html><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1"><title>t</title></head>"#;

    fn page(body: &str) -> String {
        format!("{HEAD}<body>{body}</body></html>")
    }

    #[test]
    fn escaped_login_is_text_and_a_sparkline_is_painted_with_no_console_errors() {
        let drawn = r##"<svg width="120" height="30" viewBox="0 0 120 30"><polyline points="0,25 40,5 80,20 120,2"
            fill="none" stroke="#0a7" stroke-width="2"/></svg>"##;
        let unstroked = r#"<svg width="120" height="30"><polyline points="0,25 40,5 80,20 120,2"
            fill="none" stroke="none"/></svg>"#;
        let empty = r#"<svg width="120" height="30"><polyline points="" stroke="black"/></svg>"#;
        let ok = page(&format!(
            "<table><tr><td>&lt;script&gt;alert(1)&lt;/script&gt;</td><td>{drawn}</td></tr></table>{unstroked}{empty}"
        ));
        let server = PageServer::start(&[("/", &ok)]);
        let r = render(&server.url("/"));
        eprintln!("render took {:?}; ignored: {:?}", r.elapsed, r.ignored);
        assert_eq!(r.status, 200);
        assert!(r.console_errors.is_empty(), "{:?}", r.console_errors);
        assert!(r.text.contains("<script>alert(1)</script>"), "{}", r.text);
        assert!(r.dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!r.dom.contains("<script"), "{}", r.dom);
        assert_eq!(r.svgs.len(), 3, "{:?}", r.svgs);
        assert!(r.svgs[0].painted && r.svgs[0].lines == 1 && r.svgs[0].width == 120.0, "{:?}", r.svgs[0]);
        // The detector can say no: a line with no stroke, a line with no points.
        assert!(!r.svgs[1].painted && !r.svgs[2].painted, "{:?}", r.svgs);
        assert_eq!(r.layout_width, 390.0);
        assert!(r.scroll_width <= r.layout_width);
        assert!(r.screenshot.starts_with(b"\x89PNG\r\n\x1a\n"));
    }

    #[test]
    fn console_error_uncaught_exception_and_a_missing_image_are_console_errors() {
        let logged = page(r#"<p>x</p><script>console.log("fine"); console.error("boom")</script>"#);
        let thrown = page(r#"<p>x</p><script>throw new Error("xyz")</script>"#);
        let missing = page(r#"<p>x</p><img src="/missing.png" alt="m">"#);
        let server = PageServer::start(&[("/logged", &logged), ("/thrown", &thrown), ("/missing", &missing)]);

        let r = render(&server.url("/logged"));
        assert_eq!(r.console_errors, ["console.error: boom"]);
        assert_eq!(r.console_other, ["log: fine"]);

        let r = render(&server.url("/thrown"));
        assert_eq!(r.console_errors.len(), 1, "{:?}", r.console_errors);
        assert!(r.console_errors[0].starts_with("uncaught: Error: xyz"), "{:?}", r.console_errors);

        let r = render(&server.url("/missing"));
        assert_eq!(r.console_errors.len(), 1, "{:?}", r.console_errors);
        let e = &r.console_errors[0];
        assert!(e.starts_with("network: ") && e.contains("404") && e.contains("/missing.png"), "{e}");
        assert!(server.requests().contains(&"/missing.png".to_string()));
    }

    #[test]
    #[should_panic(expected = "chromium not found: run `bash .ci/install`")]
    fn a_missing_chromium_is_a_failure_with_the_fix() {
        chromium_in(Some("/nonexistent".into()), std::path::Path::new("/nonexistent/chromium"));
    }
}
