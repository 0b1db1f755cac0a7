//! public-pool's habits, as seen on the wire from the built-in solo
//! default's kind of pool, played by the checking pool: it grants version
//! mask `1fffe000` whatever was asked, never answers
//! `mining.suggest_difficulty` or `mining.extranonce.subscribe`, answers a
//! `suggest_difficulty` with a null id with an error that carries a null id,
//! and sends the same job again with `clean_jobs` on each difficulty change.
//! A miner with a long solo login mines through the proxy against it.

mod common;

use std::time::Duration;

use common::miner::{HashingMiner, MinerOptions};
use common::pool::{CheckingPool, PoolOptions, VersionRolling};
use common::*;
use serde_json::json;

const T: Duration = DEFAULT_TIMEOUT;
const LOGIN: &str = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.rig1";

#[test]
fn public_pool_habits_keep_working() {
    let pool = CheckingPool::start(PoolOptions {
        version_rolling: VersionRolling::GrantAll(0x1fff_e000),
        answer_suggest_difficulty: false,
        null_id_suggest_error: true,
        answer_extranonce_subscribe: false,
        clean_job_on_difficulty: true,
        ..PoolOptions::default()
    });
    // The unanswered requests are given up after this: the session goes on.
    let proxy = Daemon::start(pool.addr(), &[("LOKA_POOL_ANSWER_TIMEOUT", "1s")]);
    let opts = MinerOptions { extranonce_subscribe: true, ..MinerOptions::default() };
    let mut m = HashingMiner::connect_with(proxy.addr, opts).unwrap();
    // The miner asks for less than the pool grants: the proxy narrows it.
    let granted = m.configure(0x00ff_e000).expect("configure answered");
    assert_eq!(granted & !0x00ff_e000, 0, "granted {granted:08x}, asked 00ffe000");
    assert!(m.subscribe("bitaxe/2.6.0").is_some());
    assert!(m.authorize(LOGIN, "x"));
    // Requests the pool never answers, and a notification it answers with
    // an error of null id.
    m.conn.send_json(&json!({"id": 50, "method": "mining.suggest_difficulty", "params": [0.0001]})).unwrap();
    m.conn
        .send_json(&json!({"id": null, "method": "mining.suggest_difficulty", "params": [0.00015]}))
        .unwrap();
    let asked = std::time::Instant::now();
    let mut mined = 0;
    // Shares on until the requests have been given up, and one more.
    while asked.elapsed() < Duration::from_millis(1500) || mined < 3 {
        let report = m.mine(1, T);
        assert_eq!(report.accepted(), 1, "{:?}\n{}", report.rejected_codes(), proxy.log_text());
        mined += 1;
        assert!(mined < 1000, "mining never took 1.5 s");
    }
    // Each difficulty change comes with the same job again, clean.
    let notifies = |m: &HashingMiner| m.messages.iter().filter(|v| v["method"] == "mining.notify").count();
    for difficulty in [0.0002, 0.0001] {
        let before = notifies(&m);
        assert_eq!(pool.set_difficulty_all(difficulty), 1);
        // The new difficulty and the job sent again with it reach the miner
        // before it mines on: a share found at the old one may be too easy.
        let deadline = std::time::Instant::now() + T;
        while notifies(&m) == before {
            assert!(m.pump(deadline), "the job never came again");
        }
        assert_eq!(m.difficulty, difficulty);
        let report = m.mine(2, T);
        assert_eq!(report.accepted(), 2, "{:?}", report.rejected_codes());
    }
    let state = pool.state();
    assert_eq!(state.connections.len(), 1, "one pool connection throughout");
    // Both reached the pool, the null-id one last.
    assert_eq!(state.connections[0].suggested_difficulty, Some(0.00015));
    let rolled = pool.submits().iter().filter(|s| s.params.as_array().is_some_and(|p| p.len() == 6)).count();
    assert!(rolled > 0, "no share rolled version bits");
    // The pool's two errors of null id reached the proxy (counted as
    // answers to no request of its own) and stop there, costing nothing.
    let unmatched = proxy.metric("stratum_pool_answers_unmatched_total");
    assert_eq!(unmatched, Some(2.0), "{}", proxy.http_get("/metrics").1);
    assert_eq!(proxy.metric("stratum_protocol_parse_errors_total"), Some(0.0));
    // The pool's error of null id is the proxy's to swallow, not the miner's.
    let stray = m.messages.iter().find(|v| v["id"].is_null() && !v["error"].is_null());
    assert!(stray.is_none(), "{stray:?}");
    let log = proxy.log_text();
    assert!(!log.contains("WARN") && !log.contains("disconnected"), "{log}");
    // The log shortens the login for a person; the metrics keep it whole.
    assert!(log.contains("authorized as bc1qar0s…f5mdq.rig1"), "{log}");
    let accepted = proxy.metric(&format!("stratum_worker_shares_accepted_total{{worker=\"{LOGIN}\"}}"));
    assert_eq!(accepted, Some(f64::from(mined + 4)));
}
