//! A session moved to a new upstream connection: what the new pool is
//! asked, what the miner is told, and how shares of the old jobs are
//! answered.

use super::*;

/// The new pool's subscribe answer, with another extranonce1.
const NEW_SUBSCRIBED: &str = r#"[[["mining.notify","x"]],"0badcafe",4]"#;

/// A rig whose pool connection was just replaced: returns the lines sent to
/// the new pool.
fn moved(rig: &mut Rig, takes_extranonce: bool) -> Vec<String> {
    if takes_extranonce {
        let id = rig.sent(r#"{"id":7,"method":"mining.extranonce.subscribe","params":[]}"#);
        rig.answer(id, "true", "null").unwrap();
        rig.sent_to_miner();
        rig.sent_to_pool();
    }
    assert!(rig.session.keepable());
    for pending in rig.up.drain_pending() {
        rig.session.lost(pending, &mut rig.out);
    }
    rig.up = rig.up.successor(rig.now);
    rig.session.go_offline();
    rig.session.rejoin(0, &mut rig.up, rig.now, &mut rig.out);
    rig.sent_to_pool()
}

/// Whether the share (en2, nonce) of the job in `notify` meets the rig's
/// difficulty.
fn meets(notify: &str, en2: &str, nonce: &str) -> bool {
    use crate::check::{Grant, Share, Template};
    let notify = json(notify);
    let template = Template::from_notify(notify["params"].to_string().as_bytes()).unwrap();
    let grant = Grant { extranonce1: "08000002", extranonce2_size: 4, version_mask: None };
    let share = Share { extranonce2: en2, ntime: "6b04a382", nonce, version_bits: None };
    crate::check::target::meets_difficulty(&template.hash(&grant, &share).unwrap().hash, TEST_DIFFICULTY)
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap()
}

#[test]
fn the_new_pool_is_asked_what_the_miner_asked_the_old_one() {
    let mut rig = Rig::new("acct", Some("secret"));
    rig.ready("alice.rig1");
    rig.sent(r#"{"id":9,"method":"mining.suggest_difficulty","params":[512]}"#);
    rig.answer(3, "true", "null").unwrap();
    rig.sent_to_miner();
    rig.sent_to_pool();
    let sent: Vec<_> = moved(&mut rig, true).iter().map(|l| json(l)).collect();
    let methods: Vec<_> = sent.iter().map(|v| v["method"].as_str().unwrap().to_string()).collect();
    assert_eq!(
        methods,
        ["mining.subscribe", "mining.extranonce.subscribe", "mining.authorize", "mining.suggest_difficulty"]
    );
    assert_eq!(sent[3]["params"], serde_json::json!([512]));
    assert_eq!(sent[0]["params"], serde_json::json!(["bmminer/2.0.0"]));
    assert_eq!(sent[2]["params"], serde_json::json!(["acct.alice_rig1", "secret"]), "rewritten for the pool");
    // Ids are the new connection's own, from 1.
    assert_eq!(sent[0]["id"], 1);
    // Nothing goes to the miner for these answers but the new extranonce.
    rig.answer(1, NEW_SUBSCRIBED, "null").unwrap();
    rig.answer(2, "true", "null").unwrap();
    rig.answer(3, "true", "null").unwrap();
    rig.answer(4, "true", "null").unwrap();
    let told = rig.sent_to_miner();
    assert_eq!(told, [r#"{"id":null,"method":"mining.set_extranonce","params":["0badcafe",4]}"#]);
}

#[test]
fn the_first_job_of_the_new_pool_is_clean_and_waits_for_the_extranonce() {
    let mut rig = Rig::new("", None);
    rig.ready("bc1qminer.rig");
    let sent = moved(&mut rig, true);
    assert_eq!(
        json(&sent[2])["params"],
        serde_json::json!(["bc1qminer.rig", "x"]),
        "the miner's own password"
    );
    // A job before the subscribe answer is held back, then goes out clean.
    let job = NOTIFY_J1.replace("\"j1\"", "\"n1\"").replace("true]", "false]");
    rig.pool(&job).unwrap();
    assert!(rig.sent_to_miner().is_empty(), "held until the miner has the new extranonce");
    rig.answer(1, NEW_SUBSCRIBED, "null").unwrap();
    let told = rig.sent_to_miner();
    assert_eq!(told.len(), 3, "{told:?}");
    assert_eq!(json(&told[0])["method"], "mining.set_extranonce");
    // The new pool set no difficulty: Stratum's default, 1, not the old one.
    assert_eq!(told[1], r#"{"id":null,"method":"mining.set_difficulty","params":[1]}"#);
    let notify = json(&told[2]);
    assert_eq!(notify["params"][0], "n1");
    assert_eq!(notify["params"][8], true, "marked clean");
    // Later jobs pass as they are.
    rig.pool(&job.replace("\"n1\"", "\"n2\"")).unwrap();
    assert_eq!(json(&rig.sent_to_miner()[0])["params"][8], false);
}

#[test]
fn a_miner_that_cannot_take_an_extranonce_is_sent_back_to_the_gateway() {
    let mut rig = Rig::new("", None);
    rig.ready("alice");
    moved(&mut rig, false);
    let flow = rig.answer(1, NEW_SUBSCRIBED, "null").unwrap();
    assert_eq!(flow, Flow::Reconnect);
    let told = rig.sent_to_miner();
    assert_eq!(told, [r#"{"id":null,"method":"client.reconnect","params":[]}"#], "no host: the gateway");
    // The same extranonce again needs no reconnect.
    let mut rig = Rig::new("", None);
    rig.ready("alice");
    moved(&mut rig, false);
    let flow = rig.answer(1, r#"[[["mining.notify","x"]],"08000002",4]"#, "null").unwrap();
    assert_eq!(flow, Flow::Continue);
    assert!(rig.sent_to_miner().is_empty());
}

#[test]
fn shares_of_the_old_pool_are_stale_offline_and_after_the_move() {
    let mut rig = Rig::new("", None);
    rig.ready("alice");
    // A share in flight when the pool went away is answered as lost.
    let id = rig.sent(&submit_line("5", "alice", "j1", mine(NOTIFY_J1, |_| true)));
    assert!(id > 0);
    rig.sent_to_pool();
    moved(&mut rig, true);
    let told = rig.sent_to_miner();
    assert_eq!(told.len(), 1);
    assert_eq!(json(&told[0])["id"], 5);
    assert!(json(&told[0])["error"].is_array());
    assert_eq!(rig.stats.shares_unanswered.get(), 1);
    // Offline: a share is answered stale by the proxy, nothing goes upstream.
    rig.session.go_offline();
    rig.miner(&submit_line("6", "alice", "j1", mine(NOTIFY_J1, |_| true))).unwrap();
    rig.miner(r#"{"id":8,"method":"mining.suggest_difficulty","params":[1]}"#).unwrap();
    assert!(rig.sent_to_pool().is_empty());
    let told: Vec<_> = rig.sent_to_miner().iter().map(|l| json(l)).collect();
    assert_eq!(told[0]["id"], 6);
    assert_eq!(told[0]["error"][0], 21);
    assert_eq!(told[1]["id"], 8);
    assert_eq!(rig.stats.shares_stale.get(), 1);
    // Back on a pool whose job ids collide with the old one's: a share of
    // the old j1 is no share of the new j1, and is answered stale.
    rig.session.rejoin(0, &mut rig.up, rig.now, &mut rig.out);
    rig.sent_to_pool();
    rig.answer(1, r#"[[["mining.notify","x"]],"08000002",4]"#, "null").unwrap();
    let other = NOTIFY_J1.replace("6dd02427", "7dd02427");
    rig.pool(&format!(r#"{{"id":null,"method":"mining.set_difficulty","params":[{TEST_DIFFICULTY:e}]}}"#))
        .unwrap();
    rig.pool(&other).unwrap();
    rig.sent_to_miner();
    // A share of the old j1 whose hash for the new j1 misses the target
    // (at the rig's tiny difficulty a quarter of random hashes meet it).
    let old_share = std::iter::repeat_with(|| mine(NOTIFY_J1, |_| true))
        .find(|(en2, nonce)| !meets(&other, en2, nonce))
        .unwrap();
    rig.miner(&submit_line("9", "alice", "j1", old_share)).unwrap();
    let told: Vec<_> = rig.sent_to_miner().iter().map(|l| json(l)).collect();
    assert!(rig.sent_to_pool().is_empty(), "never sent to the new pool");
    assert_eq!(told[0]["error"][0], 21);
    assert_eq!(rig.stats.shares_stale.get(), 2);
    // A share of the new j1 goes to the new pool.
    rig.miner(&submit_line(
        "10",
        "alice",
        "j1",
        mine(&other, |h| crate::check::target::meets_difficulty(&h.hash, TEST_DIFFICULTY)),
    ))
    .unwrap();
    assert_eq!(rig.sent_to_pool().len(), 1);
}

#[test]
fn first_lines_written_for_one_pool_are_rewritten_for_another() {
    let mut rig = Rig::new("acct", Some("secret"));
    rig.miner(r#"{"id":1,"method":"mining.subscribe","params":["cgminer/4.12"]}"#).unwrap();
    rig.miner(r#"{"id":"a","method":"mining.authorize","params":["olga.rig2","pw"]}"#).unwrap();
    let first = std::mem::take(&mut rig.out.to_pool);
    let mut to_miner = Vec::new();
    let again = rig.session.retarget(0, &first, &mut rig.up, &mut to_miner);
    assert!(to_miner.is_empty());
    let lines: Vec<_> = std::str::from_utf8(&again).unwrap().lines().map(json).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["method"], "mining.subscribe");
    assert_eq!(lines[0]["id"], 1, "same proxy ids: the requests in flight stay as they are");
    assert_eq!(lines[1]["id"], 2);
    assert_eq!(lines[1]["params"], serde_json::json!(["acct.olga_rig2", "secret"]));
    // Its answer still goes to the miner under the miner's id.
    rig.answer(2, "true", "null").unwrap();
    assert_eq!(json(&rig.sent_to_miner()[0])["id"], "a");
}
