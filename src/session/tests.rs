//! Session logic driven line by line with real Stratum lines.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::*;
use crate::pools::Pools;
use crate::stats::Stats;
use crate::upstream::Upstream;
use crate::worker::Rewriter;

struct Rig {
    session: Session,
    up: Upstream,
    out: Outbox,
    stats: Rc<Stats>,
    now: Instant,
}

impl Rig {
    fn new(account: &str, password: Option<&str>) -> Rig {
        let rules = Rules {
            pools: Rc::new(Pools::single(Rewriter::new(account, [".", "_"]), password.map(Into::into))),
            max_logins: 16,
            reject_invalid: false,
            templates: Default::default(),
        };
        let stats = Rc::new(Stats::default());
        let now = Instant::now();
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        Rig {
            session: Session::new(peer, Rc::new(rules), stats.clone(), now),
            up: Upstream::new(Duration::from_secs(600)),
            out: Outbox::default(),
            stats,
            now,
        }
    }

    fn miner(&mut self, line: &str) -> Result<(), SessionError> {
        self.session.on_miner_line(line.as_bytes(), &mut self.up, self.now, &mut self.out)
    }

    fn pool(&mut self, line: &str) -> Result<Flow, SessionError> {
        self.session.on_pool_line(line.as_bytes(), &mut self.up, self.now, &mut self.out)
    }

    fn take(buf: &mut Vec<u8>) -> Vec<String> {
        let text = String::from_utf8(std::mem::take(buf)).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    /// Sends a miner line and returns the proxy id it went upstream under.
    fn sent(&mut self, line: &str) -> u64 {
        self.miner(line).unwrap();
        let text = std::str::from_utf8(&self.out.to_pool).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        last["id"].as_u64().unwrap()
    }

    /// The pool answers proxy id `id` with `result` and `error` (raw JSON).
    fn answer(&mut self, id: u64, result: &str, error: &str) -> Result<Flow, SessionError> {
        self.pool(&format!(r#"{{"id":{id},"result":{result},"error":{error}}}"#))
    }

    fn sent_to_pool(&mut self) -> Vec<String> {
        Self::take(&mut self.out.to_pool)
    }

    fn sent_to_miner(&mut self) -> Vec<String> {
        Self::take(&mut self.out.to_miner)
    }

    /// Subscribes, authorizes `login` and receives one job `j1`.
    fn ready(&mut self, login: &str) {
        self.miner(r#"{"id":1,"method":"mining.subscribe","params":["bmminer/2.0.0"]}"#).unwrap();
        self.miner(&format!(r#"{{"id":2,"method":"mining.authorize","params":["{login}","x"]}}"#)).unwrap();
        self.pool(r#"{"id":1,"result":[[["mining.notify","ae6812eb4cd7735a302a8a9dd95cf71f"]],"08000002",4],"error":null}"#).unwrap();
        self.pool(r#"{"id":2,"result":true,"error":null}"#).unwrap();
        self.pool(&format!(
            r#"{{"id":null,"method":"mining.set_difficulty","params":[{TEST_DIFFICULTY:e}]}}"#
        ))
        .unwrap();
        self.pool(NOTIFY_J1).unwrap();
        self.sent_to_pool();
        self.sent_to_miner();
    }
}

const NOTIFY_J1: &str = r#"{"params":["j1","6dd02427ddcba6abc6f0aaabf16d72ced43e701fa23a47566c1f50c412851af0","0100","0a63",[],"20000000","17034219","6b04a37f",true],"id":null,"method":"mining.notify"}"#;

/// The difficulty `Rig::ready` sets: about one hash in four is a share.
const TEST_DIFFICULTY: f64 = 1e-9;

/// Mines a share of the job in `notify` for the session [`Rig::ready`]
/// builds (extranonce1 08000002, 4-byte extranonce2, no version rolling)
/// whose hash `wanted` takes; each call mines a new one.
fn mine(notify: &str, wanted: impl Fn(&crate::check::Hashed) -> bool) -> (String, String) {
    use crate::check::{Grant, Share, Template};
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let en2 = format!("{:08x}", NEXT.fetch_add(1, Ordering::Relaxed));
    let notify: serde_json::Value = serde_json::from_str(notify).unwrap();
    let template = Template::from_notify(notify["params"].to_string().as_bytes()).unwrap();
    let grant = Grant { extranonce1: "08000002", extranonce2_size: 4, version_mask: None };
    let nonce = (0u32..)
        .map(|n| format!("{n:08x}"))
        .find(|nonce| {
            let share = Share { extranonce2: &en2, ntime: "6b04a382", nonce, version_bits: None };
            wanted(&template.hash(&grant, &share).unwrap())
        })
        .unwrap();
    (en2, nonce)
}

fn submit_line(id: &str, login: &str, job: &str, (en2, nonce): (String, String)) -> String {
    format!(
        r#"{{"params":["{login}","{job}","{en2}","6b04a382","{nonce}"],"id":{id},"method":"mining.submit"}}"#
    )
}

/// A share of [`NOTIFY_J1`] that is valid at [`TEST_DIFFICULTY`].
fn submit(id: &str, login: &str, job: &str) -> String {
    let valid = |h: &crate::check::Hashed| crate::check::target::meets_difficulty(&h.hash, TEST_DIFFICULTY);
    submit_line(id, login, job, mine(NOTIFY_J1, valid))
}

/// A share of [`NOTIFY_J1`] above the share target of [`TEST_DIFFICULTY`].
fn low_submit(id: &str, login: &str, job: &str) -> String {
    let low = |h: &crate::check::Hashed| !crate::check::target::meets_difficulty(&h.hash, TEST_DIFFICULTY);
    submit_line(id, login, job, mine(NOTIFY_J1, low))
}

#[test]
fn rewrites_authorize_and_submit_keeping_everything_else() {
    let mut rig = Rig::new("bc1qacct", None);
    rig.miner(r#"{"id":"x","method":"mining.authorize","params":["alice.rig1","pw"]}"#).unwrap();
    // Upstream, every request carries the proxy's own id.
    assert_eq!(
        rig.sent_to_pool(),
        vec![r#"{"id":1,"method":"mining.authorize","params":["bc1qacct.alice_rig1","pw"]}"#]
    );
    let share = submit("7", "bob", "j");
    rig.miner(&share).unwrap();
    let upstream = share.replace(r#""bob""#, r#""bc1qacct.bob_default""#).replace(r#""id":7"#, r#""id":2"#);
    assert_eq!(rig.sent_to_pool(), vec![upstream]);
    // The answer goes back under the miner's id, byte for byte.
    rig.answer(1, "true", "null").unwrap();
    assert_eq!(rig.sent_to_miner(), vec![r#"{"id":"x","result":true,"error":null}"#]);
}

#[test]
fn password_is_replaced_only_when_configured() {
    let mut rig = Rig::new("acct", Some("d=64"));
    rig.miner(r#"{"id":1,"method":"mining.authorize","params":["a.b", "x,diff=1"]}"#).unwrap();
    assert_eq!(
        rig.sent_to_pool(),
        vec![r#"{"id":1,"method":"mining.authorize","params":["acct.a_b", "d=64"]}"#]
    );
}

#[test]
fn passes_logins_through_without_account() {
    let mut rig = Rig::new("", None);
    let line = r#"{"id": 2, "method": "mining.authorize", "params": ["bc1qminer.w1", "x"]}"#;
    rig.miner(line).unwrap();
    assert_eq!(rig.sent_to_pool(), vec![line.replace("\"id\": 2", "\"id\": 1")]);
}

#[test]
fn authorize_before_subscribe_and_back_to_back() {
    let mut rig = Rig::new("acct", None);
    rig.miner(r#"{"id":2,"method":"mining.authorize","params":["a","x"]}"#).unwrap();
    rig.miner(r#"{"id":1,"method":"mining.subscribe","params":[]}"#).unwrap();
    assert_eq!(rig.sent_to_pool().len(), 2);
    assert!(rig.session.handshake_done());
    rig.answer(2, r#"[[],"aa",8]"#, "null").unwrap();
    rig.answer(1, "true", "null").unwrap();
    assert_eq!(rig.session.login(), Some("a"));
    assert_eq!(rig.up.extranonce().unwrap().extranonce2_size, 8);
    assert_eq!(
        rig.sent_to_miner(),
        vec![r#"{"id":1,"result":[[],"aa",8],"error":null}"#, r#"{"id":2,"result":true,"error":null}"#]
    );
}

#[test]
fn repeated_submit_ids_are_counted_once_each() {
    let mut rig = Rig::new("", None);
    rig.ready("w");
    let ids: Vec<u64> = (0..3).map(|_| rig.sent(&submit("4", "w", "j1"))).collect();
    rig.answer(ids[0], "true", "null").unwrap();
    rig.answer(ids[1], "null", r#"[23,"Low difficulty share",null]"#).unwrap();
    rig.answer(ids[2], "null", r#"[22,"Duplicate share",null]"#).unwrap();
    // Answered already: dropped and counted, not counted as a share.
    rig.answer(ids[0], "true", "null").unwrap();
    assert_eq!(rig.session.tally(), Tally { accepted: 1, rejected: 2, stale: 0, disputed: 0 });
    assert_eq!(rig.stats.shares_duplicate.get(), 1);
    assert_eq!(rig.stats.answers_unmatched.get(), 1);
    let sent = rig.sent_to_miner();
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|l| l.starts_with(r#"{"id":4,"#)), "{sent:?}");
}

#[test]
fn stale_shares() {
    let mut rig = Rig::new("", None);
    rig.ready("w");
    let id = rig.sent(&submit("5", "w", "nope"));
    rig.answer(id, "null", r#"[21,"Job not found",null]"#).unwrap();
    let id = rig.sent(&submit("6", "w", "j1"));
    rig.answer(id, "null", r#"[21,"Stale",null]"#).unwrap();
    // Known when submitted, but the pool cleaned jobs: the pool judges.
    let id = rig.sent(&submit("7", "w", "j1"));
    rig.answer(id, "true", "null").unwrap();
    rig.pool(&NOTIFY_J1.replace("\"j1\"", "\"j2\"")).unwrap();
    let id = rig.sent(&submit("8", "w", "j1"));
    rig.answer(id, "false", "null").unwrap();
    assert_eq!(rig.session.tally(), Tally { accepted: 1, rejected: 0, stale: 3, disputed: 0 });
}

#[test]
fn expired_jobs_are_stale() {
    let mut rig = Rig::new("", None);
    rig.ready("w");
    rig.now += Duration::from_secs(601);
    let id = rig.sent(&submit("5", "w", "j1"));
    rig.answer(id, "null", r#"[20,"Other",null]"#).unwrap();
    assert_eq!(rig.session.tally().stale, 1);
}

#[test]
fn configure_gets_what_the_pool_grants() {
    let configure = r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"1fffe000","version-rolling.min-bit-count":2}]}"#;
    // Granted within the miner's mask: forwarded verbatim.
    let mut rig = Rig::new("", None);
    rig.miner(configure).unwrap();
    let answer =
        r#"{"id":1,"result":{"version-rolling":true,"version-rolling.mask":"1fffe000"},"error":null}"#;
    rig.pool(answer).unwrap();
    assert_eq!(rig.sent_to_miner(), vec![answer]);
    assert_eq!(rig.up.version_mask(), Some(0x1fffe000));
    // The pool grants more than asked: narrowed.
    let mut rig = Rig::new("", None);
    rig.miner(configure).unwrap();
    rig.pool(r#"{"id":1,"result":{"version-rolling":true,"version-rolling.mask":"ffffffff"},"error":null}"#)
        .unwrap();
    assert_eq!(
        rig.sent_to_miner(),
        vec![r#"{"id":1,"result":{"version-rolling":true,"version-rolling.mask":"1fffe000"},"error":null}"#]
    );
    // The pool refuses: the miner hears false.
    let mut rig = Rig::new("", None);
    rig.miner(configure).unwrap();
    rig.pool(r#"{"id":1,"result":{"version-rolling":false},"error":null}"#).unwrap();
    assert_eq!(rig.sent_to_miner(), vec![r#"{"id":1,"result":{"version-rolling":false},"error":null}"#]);
    assert_eq!(rig.up.version_mask(), None);
    // The pool does not know the method: the miner hears false, not an error.
    let mut rig = Rig::new("", None);
    rig.miner(configure).unwrap();
    rig.pool(r#"{"id":1,"result":null,"error":[20,"Unknown method",null]}"#).unwrap();
    assert_eq!(rig.sent_to_miner(), vec![r#"{"id":1,"result":{"version-rolling":false},"error":null}"#]);
}

#[test]
fn set_version_mask_is_narrowed_or_dropped() {
    // No version rolling granted: the miner must not hear of a mask.
    let mut rig = Rig::new("", None);
    rig.pool(r#"{"id":null,"method":"mining.set_version_mask","params":["00c00000"]}"#).unwrap();
    assert!(rig.sent_to_miner().is_empty());
    assert_eq!(rig.up.version_mask(), None);
    // Granted 00c00000 of what the miner asked: later masks are narrowed to it.
    rig.miner(r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"00c00000"}]}"#)
        .unwrap();
    rig.pool(r#"{"id":1,"result":{"version-rolling":true,"version-rolling.mask":"1fffe000"},"error":null}"#)
        .unwrap();
    assert!(rig.sent_to_miner()[0].contains("\"00c00000\""));
    rig.pool(r#"{"id":null,"method":"mining.set_version_mask","params":["1fffe000"]}"#).unwrap();
    assert_eq!(
        rig.sent_to_miner(),
        vec![r#"{"id":null,"method":"mining.set_version_mask","params":["00c00000"]}"#]
    );
    assert_eq!(rig.up.version_mask(), Some(0x00c00000));
}

#[test]
fn a_grant_with_nothing_in_common_is_a_refusal() {
    let mut rig = Rig::new("", None);
    rig.miner(r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"0000e000"}]}"#)
        .unwrap();
    rig.pool(r#"{"id":1,"result":{"version-rolling":true,"version-rolling.mask":"1f000000"},"error":null}"#)
        .unwrap();
    assert_eq!(rig.sent_to_miner(), vec![r#"{"id":1,"result":{"version-rolling":false},"error":null}"#]);
    rig.miner(r#"{"id":2,"method":"mining.configure","params":[["version-rolling"],{}]}"#).unwrap();
    rig.pool(r#"{"id":2,"result":null,"error":null}"#).unwrap();
    assert_eq!(rig.sent_to_miner(), vec![r#"{"id":2,"result":{"version-rolling":false},"error":null}"#]);
}

/// A reconnect with a wait keeps the miner: nothing is sent to it, and the
/// wait is bounded; without one (or with 0) the miner is told to reconnect.
#[test]
fn a_reconnect_wait_is_kept_bounded_for_the_proxy() {
    let mut rig = Rig::new("", None);
    rig.ready("w");
    let line = |wait: &str| {
        format!(r#"{{"id":null,"method":"client.reconnect","params":["pool.example",3333,{wait}]}}"#)
    };
    assert_eq!(rig.pool(&line("10")), Ok(Flow::ReconnectLater));
    let wait = rig.session.take_reconnect_wait().unwrap();
    assert_eq!((wait.honoured(), wait.to_string()), (std::time::Duration::from_secs(10), "10 s".into()));
    assert_eq!(rig.session.take_reconnect_wait(), None, "taken once");
    assert_eq!(rig.pool(&line("86400")), Ok(Flow::ReconnectLater));
    let wait = rig.session.take_reconnect_wait().unwrap();
    assert_eq!(wait.honoured(), std::time::Duration::from_secs(MAX_RECONNECT_WAIT_SECS));
    assert_eq!(wait.to_string(), "300 s (it asked for 86400 s)");
    // A string or a fraction, as some pools send it.
    assert_eq!(rig.pool(&line("\"2.5\"")), Ok(Flow::ReconnectLater));
    assert_eq!(rig.session.take_reconnect_wait().map(|w| w.asked), Some(3));
    assert!(rig.sent_to_miner().is_empty());
    assert_eq!(rig.pool(&line("0")), Ok(Flow::Reconnect));
    assert_eq!(rig.sent_to_miner(), vec![r#"{"id":null,"method":"client.reconnect","params":[]}"#]);
}

#[test]
fn answers_after_a_reconnect_still_count_and_reach_the_miner() {
    let mut rig = Rig::new("", None);
    rig.ready("w");
    let a = rig.sent(&submit("4", "w", "j1"));
    let b = rig.sent(&submit("4", "w", "j1"));
    assert_eq!(rig.pool(r#"{"id":null,"method":"client.reconnect","params":[]}"#), Ok(Flow::Reconnect));
    rig.answer(a, "true", "null").unwrap();
    rig.pool(NOTIFY_J1).unwrap();
    rig.answer(b, "true", "null").unwrap();
    assert_eq!(rig.session.tally().accepted, 2);
    let sent = rig.sent_to_miner();
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert!(sent.iter().all(|l| !l.contains("mining.notify")));
    assert!(!rig.up.has_pending_shares());
}

#[test]
fn shares_are_booked_under_their_own_authorized_login() {
    let mut rig = Rig::new("", None);
    rig.ready("rig.a");
    rig.miner(r#"{"id":3,"method":"mining.authorize","params":["rig.b","x"]}"#).unwrap();
    rig.pool(r#"{"id":3,"result":true,"error":null}"#).unwrap();
    rig.miner(r#"{"id":4,"method":"mining.authorize","params":["rig.c","x"]}"#).unwrap();
    rig.pool(r#"{"id":4,"result":false,"error":[24,"Unauthorized",null]}"#).unwrap();
    for (id, login) in [("5", "rig.a"), ("6", "rig.b"), ("7", "rig.c")] {
        rig.miner(&submit(id, login, "j1")).unwrap();
        rig.pool(&format!(r#"{{"id":{id},"result":true,"error":null}}"#)).unwrap();
    }
    let rows = rig.stats.workers.snapshot(rig.now);
    let accepted = |w: &str| rows.iter().find(|r| r.0.as_str() == w).map(|r| r.1.accepted);
    assert_eq!(accepted("rig.a"), Some(1));
    // rig.c was refused: its share goes to the login authorized last.
    assert_eq!(accepted("rig.b"), Some(2));
    assert_eq!(accepted("rig.c"), None);
}

#[test]
fn suggest_difficulty_left_unanswered_does_not_take_a_shares_answer() {
    let mut rig = Rig::new("", None);
    rig.ready("w");
    rig.sent(r#"{"id":4,"method":"mining.suggest_difficulty","params":[0.5]}"#);
    let share = rig.sent(&submit("4", "w", "j1"));
    rig.answer(share, "true", "null").unwrap();
    assert_eq!(rig.session.tally().accepted, 1);
}

#[test]
fn the_answer_to_another_request_never_becomes_a_shares_verdict() {
    // The forgery of issue 8: requests the pool answers `true` share an id
    // with a share the pool rejects. Answered in either order, with the
    // miner's id or the proxy's, each share gets its own verdict.
    for method in ["mining.extranonce.subscribe", "mining.suggest_difficulty", "mining.multi_version", "x.y"]
    {
        let mut rig = Rig::new("", None);
        rig.ready("w");
        for n in 0..10 {
            let other = rig.sent(&format!(r#"{{"id":4,"method":"{method}","params":[1]}}"#));
            let share = rig.sent(&submit("4", "w", "j1"));
            let (first, second) = if n % 2 == 0 { (other, share) } else { (share, other) };
            let verdict = |id| {
                if id == share { ("null", r#"[23,"Low difficulty share",null]"#) } else { ("true", "null") }
            };
            let (r, e) = verdict(first);
            rig.answer(first, r, e).unwrap();
            // Answers to ids the proxy never issued match nothing.
            rig.pool(r#"{"id":"4","result":true,"error":null}"#).unwrap();
            rig.pool(r#"{"id":1000000,"result":true,"error":null}"#).unwrap();
            let (r, e) = verdict(second);
            rig.answer(second, r, e).unwrap();
        }
        assert_eq!(
            rig.session.tally(),
            Tally { accepted: 0, rejected: 10, stale: 0, disputed: 0 },
            "{method}"
        );
        let rows = rig.stats.workers.snapshot(rig.now);
        assert_eq!(rows[0].1.difficulty_accepted, 0.0);
        assert_eq!(rig.stats.answers_unmatched.get(), 20);
        // Each answer reached the miner under its id, and no forged one did.
        assert_eq!(rig.sent_to_miner().len(), 20);
    }
}

#[test]
fn requests_without_an_id_are_booked_but_not_answered() {
    let mut rig = Rig::new("", None);
    rig.ready("w");
    let null_id = rig.sent(&submit("null", "w", "j1"));
    let no_id =
        rig.sent(r#"{"method":"mining.submit","params":["w","j1","00000000","6b04a382","8c750600"]}"#);
    let sent = rig.sent_to_pool();
    assert!(sent[0].contains(&format!(r#""id":{null_id},"#)), "{sent:?}");
    assert!(sent[1].starts_with(&format!(r#"{{"id":{no_id},"method""#)), "{sent:?}");
    rig.answer(null_id, "true", "null").unwrap();
    rig.answer(no_id, "null", r#"[23,"Low difficulty share",null]"#).unwrap();
    assert_eq!(rig.session.tally(), Tally { accepted: 1, rejected: 1, stale: 0, disputed: 0 });
    assert!(rig.sent_to_miner().is_empty());
}

#[test]
fn requests_in_flight_are_bounded() {
    let mut rig = Rig::new("", None);
    rig.ready("w");
    for n in 0..crate::upstream::MAX_PENDING {
        rig.miner(&submit(&n.to_string(), "w", "j1")).unwrap();
    }
    assert_eq!(rig.sent_to_pool().len(), crate::upstream::MAX_PENDING);
    // One more is answered by the proxy, not queued, and counts as a bad line.
    rig.miner(&submit("\"over\"", "w", "j1")).unwrap();
    assert!(rig.sent_to_pool().is_empty());
    assert_eq!(
        rig.sent_to_miner(),
        vec![r#"{"id":"over","result":null,"error":[20,"Too many requests in flight",null]}"#]
    );
    assert_eq!(rig.stats.requests_refused.get(), 1);
}

#[test]
fn a_stalled_pool_gets_the_shares_in_flight_answered() {
    let mut rig = Rig::new("", None);
    rig.ready("w");
    rig.sent(&submit("\"a\"", "w", "j1"));
    rig.sent(r#"{"id":9,"method":"mining.suggest_difficulty","params":[8]}"#);
    let pending: Vec<_> = rig.up.drain_pending().collect();
    for p in pending {
        rig.session.abandon(p, &mut rig.out);
    }
    assert_eq!(
        rig.sent_to_miner(),
        vec![r#"{"id":"a","result":null,"error":[20,"Pool did not answer",null]}"#]
    );
    assert_eq!(rig.stats.shares_unanswered.get(), 1);
}

#[test]
fn a_connection_authorizes_a_bounded_number_of_logins() {
    let mut rig = Rig::new("acct", None);
    for n in 0..16 {
        rig.sent(&format!(r#"{{"id":{n},"method":"mining.authorize","params":["w{n}","x"]}}"#));
    }
    // The same login again is fine; a seventeenth is answered by the proxy.
    rig.sent(r#"{"id":"again","method":"mining.authorize","params":["w3","x"]}"#);
    assert_eq!(rig.sent_to_pool().len(), 17);
    rig.miner(r#"{"id":"x","method":"mining.authorize","params":["w16","x"]}"#).unwrap();
    assert!(rig.sent_to_pool().is_empty());
    assert_eq!(
        rig.sent_to_miner(),
        vec![r#"{"id":"x","result":null,"error":[24,"Too many workers on one connection",null]}"#]
    );
}

#[test]
fn local_answers_count_as_bad_lines() {
    // With an account set, "!!!" cannot be rewritten: every submit is
    // answered by the proxy, so a miner that ignores that is closed.
    let mut rig = Rig::new("acct", None);
    for n in 1..MAX_BAD_LINES {
        rig.miner(&submit(&n.to_string(), "!!!", "j1")).unwrap();
    }
    assert_eq!(rig.miner(&submit("0", "!!!", "j1")), Err(SessionError::TooManyBadLines));
    assert!(rig.sent_to_pool().is_empty());
}

#[test]
fn unusable_pool_difficulties_are_ignored_and_counted() {
    let mut rig = Rig::new("", None);
    rig.ready("w");
    for d in ["0", "-1", "1e999", "-1e999", "\"64\"", "null"] {
        rig.pool(&format!(r#"{{"id":null,"method":"mining.set_difficulty","params":[{d}]}}"#)).unwrap();
        assert!(rig.sent_to_miner().is_empty(), "{d} reached the miner");
    }
    assert_eq!(rig.stats.pool_bad_difficulty.get(), 6);
    rig.pool(NOTIFY_J1).unwrap();
    let id = rig.sent(&submit("5", "w", "j1"));
    rig.answer(id, "true", "null").unwrap();
    let rows = rig.stats.workers.snapshot(rig.now);
    let w = rows.iter().find(|r| r.0.as_str() == "w").unwrap();
    assert_eq!(w.1.difficulty_accepted, TEST_DIFFICULTY, "the last usable difficulty stands");
}

#[test]
fn keys_that_hide_from_the_proxy_are_refused_not_forwarded() {
    let mut rig = Rig::new("acct", None);
    for line in [
        r#"{"id":1,"method":"mining.authorize","params":["a","x"],"p\u0061rams":["evil","x"]}"#,
        r#"{"id":1,"m\u0065thod":"mining.authorize","params":["evil","x"]}"#,
        r#"{"id":1,"method":"mining.authorize","params":["a","x"],"params":["evil","x"]}"#,
        r#"{"id":1,"id":2,"method":"mining.submit","params":["evil","j1","00000000","6b04a382","8c750600"]}"#,
    ] {
        rig.miner(line).unwrap();
        assert!(rig.sent_to_pool().is_empty(), "{line}");
        assert!(rig.sent_to_miner()[0].contains("-32700"));
    }
}

#[test]
fn bad_miner_lines_get_errors_then_close() {
    let mut rig = Rig::new("", None);
    rig.miner("{not json").unwrap();
    rig.miner(r#"{"id":9,"method":"mining.submit","params":["w","j",1,2,3]}"#).unwrap();
    rig.miner(r#"{"id":10,"method":"mining.authorize","params":[]}"#).unwrap();
    rig.miner(r#"{"id":11,"method":"mining.submit","params":"w"}"#).unwrap();
    rig.miner(r#"{"id":12}"#).unwrap();
    let replies = rig.sent_to_miner();
    assert_eq!(replies[0], r#"{"id":null,"result":null,"error":[-32700,"Parse error",null]}"#);
    assert_eq!(replies[1], r#"{"id":9,"result":null,"error":[-32602,"Invalid params",null]}"#);
    assert!(replies[2].starts_with(r#"{"id":10,"#));
    assert!(replies[3].starts_with(r#"{"id":11,"#));
    assert!(replies[4].contains("-32600"));
    assert!(rig.sent_to_pool().is_empty());
    assert_eq!(rig.stats.parse_errors.get(), 5);
    assert_eq!(rig.miner("\u{1}\u{2}binary"), Err(SessionError::MinerGarbage));
    for _ in 5..MAX_BAD_LINES - 1 {
        rig.miner("nope").unwrap();
    }
    assert_eq!(rig.miner("nope"), Err(SessionError::TooManyBadLines));
}

#[test]
fn unusable_login_is_refused_locally() {
    let mut rig = Rig::new("acct", None);
    rig.miner(r#"{"id":3,"method":"mining.authorize","params":["!!!","x"]}"#).unwrap();
    assert!(rig.sent_to_pool().is_empty());
    assert_eq!(
        rig.sent_to_miner(),
        vec![r#"{"id":3,"result":null,"error":[24,"Invalid worker name",null]}"#]
    );
}

#[test]
fn unknown_methods_and_pool_requests_pass_both_ways() {
    let mut rig = Rig::new("", None);
    for line in [
        r#"{"id":5,"method":"mining.extranonce.subscribe","params":[]}"#,
        r#"{"id":6,"method":"mining.multi_version","params":[1]}"#,
        r#"{"id":7,"method":"mining.suggest_difficulty","params":[512]}"#,
        r#"{"id":8,"method":"x.custom","params":{"a":1}}"#,
    ] {
        rig.miner(line).unwrap();
    }
    assert_eq!(rig.sent_to_pool().len(), 4);
    assert!(rig.sent_to_miner().is_empty());
    for line in [
        r#"{"id":"p1","method":"mining.ping","params":[]}"#,
        r#"{"id":9,"method":"client.get_version","params":[]}"#,
        r#"{"id":null,"method":"client.show_message","params":["hello"]}"#,
        r#"{"id":null,"method":"mining.set_extranonce","params":["0badf00d",4]}"#,
    ] {
        rig.pool(line).unwrap();
        assert_eq!(rig.sent_to_miner(), vec![line]);
    }
    // The pool's answer to multi_version (proxy id 2) reaches the miner as 6.
    rig.answer(2, "null", r#"[20,"Unknown method",null]"#).unwrap();
    assert_eq!(rig.sent_to_miner(), vec![r#"{"id":6,"result":null,"error":[20,"Unknown method",null]}"#]);
    assert_eq!(rig.up.extranonce().unwrap().extranonce1.as_str(), "0badf00d");
    rig.miner(r#"{"id":"p1","result":"pong","error":null}"#).unwrap();
    assert_eq!(rig.sent_to_pool().len(), 1);
}

#[test]
fn reconnect_keeps_the_miner_with_the_proxy() {
    let mut rig = Rig::new("", None);
    let flow = rig.pool(r#"{"id":null,"method":"client.reconnect","params":["evil.example",3333,0]}"#);
    assert_eq!(flow, Ok(Flow::Reconnect));
    assert_eq!(rig.sent_to_miner(), vec![r#"{"id":null,"method":"client.reconnect","params":[]}"#]);
}

#[test]
fn pool_garbage_ends_the_session() {
    let mut rig = Rig::new("", None);
    assert!(matches!(rig.pool("<html>"), Err(SessionError::PoolJson(_))));
    assert_eq!(rig.pool("\u{0}\u{0}"), Err(SessionError::PoolGarbage));
}

#[test]
fn replays_the_cpuminer_fixture() {
    // The recording has cpuminer's ids; the proxy sends its own upstream, so
    // the pool's answers are replayed under the proxy id of the request they
    // answered (ckpool answers in order), and must reach the miner as recorded.
    let text = include_str!("../../tests/fixtures/cpuminer-ckpool.txt");
    let mut rig = Rig::new("", None);
    let mut submits = 0;
    let mut in_flight: std::collections::VecDeque<(String, u64)> = Default::default();
    let id_of = |json: &str| serde_json::from_str::<serde_json::Value>(json).unwrap()["id"].to_string();
    for line in text.lines() {
        let (who, json) = line.split_once(' ').unwrap();
        let json = json.trim();
        let env = crate::stratum::Envelope::parse(json.as_bytes()).unwrap();
        if who == "miner>" {
            let proxy_id = rig.sent(json);
            let span = env.id_span().unwrap();
            let upstream = format!("{}{proxy_id}{}", &json[..span.start], &json[span.end..]);
            assert_eq!(rig.sent_to_pool(), vec![upstream]);
            in_flight.push_back((id_of(json), proxy_id));
            submits += json.contains("mining.submit") as u64;
        } else if env.is_response() {
            let at = in_flight.iter().position(|(id, _)| *id == id_of(json)).unwrap();
            let (_, proxy_id) = in_flight.remove(at).unwrap();
            let span = env.id_span().unwrap();
            rig.pool(&format!("{}{proxy_id}{}", &json[..span.start], &json[span.end..])).unwrap();
            assert_eq!(rig.sent_to_miner(), vec![json]);
        } else {
            rig.pool(json).unwrap();
            assert_eq!(rig.sent_to_miner(), vec![json]);
        }
    }
    let answered = text.lines().filter(|l| l.starts_with("pool<") && l.contains("\"id\":4")).count() as u64;
    assert_eq!(rig.session.tally().accepted, answered);
    assert!(submits >= answered && answered > 0);
    // cpuminer's real shares pass the proxy's own check: none is disputed.
    let valid = rig.stats.shares_checked[crate::check::Verdict::Valid.index()].get();
    assert_eq!((valid, rig.session.tally().disputed), (submits, 0));
    assert_eq!(rig.up.difficulty(), 0.0001);
}

#[test]
fn escaped_logins_are_read_as_text_and_spliced_by_their_raw_span() {
    let mut rig = Rig::new("acct", None);
    rig.miner(r#"{"id":1,"method":"mining.authorize","params":["al\"ice\u0041.r1","x"]}"#).unwrap();
    assert_eq!(
        rig.sent_to_pool(),
        vec![r#"{"id":1,"method":"mining.authorize","params":["acct.aliceA_r1","x"]}"#]
    );
    rig.pool(r#"{"id":1,"result":true,"error":null}"#).unwrap();
    assert_eq!(rig.session.login(), Some("al\"iceA.r1"));
}

#[test]
fn an_id_too_long_to_keep_is_refused_not_forwarded() {
    let mut rig = Rig::new("", None);
    rig.ready("w");
    let long_id = format!("\"{}\"", "i".repeat(crate::upstream::MAX_ID_BYTES));
    rig.miner(&submit(&long_id, "w", "j1")).unwrap();
    assert!(rig.sent_to_pool().is_empty());
    let reply = rig.sent_to_miner();
    assert!(
        reply[0].starts_with(&format!(r#"{{"id":{long_id},"#)) && reply[0].contains("-32600"),
        "{reply:?}"
    );
    // One byte shorter fits, and its answer comes back under it.
    let fits = format!("\"{}\"", "i".repeat(crate::upstream::MAX_ID_BYTES - 2));
    let id = rig.sent(&submit(&fits, "w", "j1"));
    rig.answer(id, "true", "null").unwrap();
    assert_eq!(rig.sent_to_miner(), vec![format!(r#"{{"id":{fits},"result":true,"error":null}}"#)]);
}

fn checked(rig: &Rig, verdict: crate::check::Verdict) -> u64 {
    rig.stats.shares_checked[verdict.index()].get()
}

/// A share the pool accepts but the proxy's check refuses is disputed: it
/// reaches the miner as the pool said, but is never counted as accepted.
#[test]
fn shares_the_check_refuses_are_disputed_not_accepted() {
    use crate::check::Verdict as Check;
    let mut rig = Rig::new("", None);
    rig.ready("w");
    // A valid share first: its acceptance gives the worker its own series
    // (only the pool's word does, so junk logins cannot take series), and
    // its check, made before, is counted there once it has one.
    let valid = rig.sent(&submit("5", "w", "j1"));
    rig.answer(valid, "true", "null").unwrap();
    let low = rig.sent(&low_submit("1", "w", "j1"));
    let bad_version = rig.sent(&submit("2", "w", "j1").replace(r#""]"#, r#"","1fffe000"]"#));
    let malformed = rig.sent(&submit("3", "w", "j1").replace(r#""6b04a382""#, r#""6b04a3""#));
    let stale = rig.sent(&submit("4", "w", "gone"));
    for id in [low, bad_version, malformed, stale] {
        rig.answer(id, "true", "null").unwrap();
    }
    assert_eq!(rig.sent_to_miner().len(), 5, "the pool's answers reach the miner");
    assert_eq!(rig.session.tally(), Tally { accepted: 1, rejected: 0, stale: 0, disputed: 4 });
    assert_eq!((rig.stats.shares_accepted.get(), rig.stats.shares_disputed.get()), (1, 4));
    for (verdict, n) in [
        (Check::Valid, 1),
        (Check::LowDifficulty, 1),
        (Check::BadVersion, 1),
        (Check::Malformed, 1),
        (Check::Stale, 1),
        (Check::Duplicate, 0),
    ] {
        assert_eq!(checked(&rig, verdict), n, "{verdict:?}");
    }
    let rows = rig.stats.workers.snapshot(rig.now);
    let w = &rows.iter().find(|r| r.0.as_str() == "w").unwrap().1;
    assert_eq!((w.accepted, w.disputed, w.difficulty_accepted), (1, 4, TEST_DIFFICULTY));
    assert_eq!(w.hardware_error_ratio(), 3.0 / 5.0);
    assert_eq!(w.checked[Check::Valid.index()], 1);
    assert!(rows.iter().all(|(login, _, _)| login.as_str() != "_other"), "nothing counted under _other");
    // The same valid share again is a duplicate, and the pool's word on a
    // valid share stands: rejected is rejected.
    let line = submit("6", "w", "j1");
    let first = rig.sent(&line);
    let again = rig.sent(&line);
    rig.answer(first, "null", r#"[23,"Low difficulty share",null]"#).unwrap();
    rig.answer(again, "true", "null").unwrap();
    assert_eq!(checked(&rig, Check::Duplicate), 1);
    assert_eq!(rig.session.tally(), Tally { accepted: 1, rejected: 1, stale: 0, disputed: 5 });
    let rows = rig.stats.workers.snapshot(rig.now);
    let w = &rows.iter().find(|r| r.0.as_str() == "w").unwrap().1;
    assert!(w.best_ever >= TEST_DIFFICULTY, "the best share is the hash's own difficulty");
}

/// With `reject_invalid`, shares the check is certain of are answered by the
/// proxy with the pool's codes and never reach the pool; a rig with a
/// failing board is not disconnected for them.
#[test]
fn reject_invalid_answers_certain_failures_locally() {
    let mut rig = Rig::new("", None);
    rig.session = Session::new(
        "127.0.0.1:5000".parse().unwrap(),
        Rc::new(Rules {
            pools: Rc::new(Pools::single(Rewriter::new("", [".", "_"]), None)),
            max_logins: 16,
            reject_invalid: true,
            templates: Default::default(),
        }),
        rig.stats.clone(),
        rig.now,
    );
    rig.ready("w");
    for i in 0..(MAX_BAD_LINES + 4) {
        rig.miner(&low_submit(&i.to_string(), "w", "j1")).unwrap();
    }
    assert!(rig.sent_to_pool().is_empty());
    let answers = rig.sent_to_miner();
    assert_eq!(answers.len(), MAX_BAD_LINES as usize + 4);
    assert!(answers[0].contains(r#"[23,"Low difficulty share",null]"#), "{answers:?}");
    let line = submit("\"d\"", "w", "j1");
    let id = rig.sent(&line);
    rig.miner(&line.replace(r#""id":"d""#, r#""id":"d2""#)).unwrap();
    rig.miner(&submit("\"v\"", "w", "j1").replace(r#""]"#, r#"","00000001"]"#)).unwrap();
    let answers = rig.sent_to_miner();
    assert!(answers[0].starts_with(r#"{"id":"d2","result":null,"error":[22,"#), "{answers:?}");
    assert!(answers[1].starts_with(r#"{"id":"v","result":null,"error":[20,"#), "{answers:?}");
    // A share under the id of a request still waiting for the pool (cpuminer
    // sends every share as id 4) goes to the pool: an answer of the proxy's
    // own would overtake the pool's.
    let low_after = rig.sent(&low_submit("\"d\"", "w", "j1"));
    assert!(rig.sent_to_miner().is_empty());
    // Stale and valid shares still go to the pool, which decides.
    rig.sent(&submit("7", "w", "nope"));
    rig.answer(id, "true", "null").unwrap();
    rig.answer(low_after, "null", r#"[23,"Low difficulty share",null]"#).unwrap();
    let answers = rig.sent_to_miner();
    assert_eq!(answers.len(), 2, "in order, each under its id: {answers:?}");
    assert!(answers[1].contains("[23,"), "{answers:?}");
    assert_eq!(rig.session.tally().accepted, 1);
    assert_eq!(rig.session.tally().rejected, MAX_BAD_LINES as u64 + 7);
}

/// A share whose hash meets the job's network target is a block: counted,
/// kept for the page, and reported once (not again as a duplicate).
#[test]
fn blocks_are_found_and_counted() {
    let mut rig = Rig::new("", None);
    rig.ready("w");
    let easy = NOTIFY_J1.replace("17034219", "2000ffff").replace(r#""j1""#, r#""jb""#);
    rig.pool(&easy).unwrap();
    let block = mine(&easy, |h| h.block && crate::check::target::meets_difficulty(&h.hash, TEST_DIFFICULTY));
    let line = submit_line("1", "w", "jb", block);
    let ids = [rig.sent(&line), rig.sent(&line)];
    let not_block =
        mine(&easy, |h| !h.block && crate::check::target::meets_difficulty(&h.hash, TEST_DIFFICULTY));
    rig.sent(&submit_line("2", "w", "jb", not_block));
    assert_eq!(rig.stats.blocks_found.get(), 1);
    let last = rig.stats.last_block.borrow().clone().unwrap();
    assert_eq!((last.0.as_str(), last.1.len()), ("w", 64));
    // The worker's own count, once the pool's acceptance gave it a series.
    rig.answer(ids[0], "true", "null").unwrap();
    rig.answer(ids[1], "null", r#"[22,"Duplicate share",null]"#).unwrap();
    let rows = rig.stats.workers.snapshot(rig.now);
    assert_eq!((rows[0].0.as_str(), rows[0].1.blocks), ("w", 1));
}

/// A job the check cannot parse still goes to the miner; its shares are
/// malformed for the check, and the pool decides.
#[test]
fn unparseable_jobs_are_forwarded_and_counted() {
    let mut rig = Rig::new("", None);
    rig.ready("w");
    let bad = NOTIFY_J1.replace(r#""j1""#, r#""jx""#).replace("0a63", "0a6");
    rig.pool(&bad).unwrap();
    assert_eq!(rig.sent_to_miner(), vec![bad]);
    assert_eq!(rig.stats.pool_bad_jobs.get(), 1);
    rig.sent(&submit("1", "w", "jx"));
    assert_eq!(checked(&rig, crate::check::Verdict::Malformed), 1);
}

#[path = "rejoin_tests.rs"]
mod rejoin_tests;

#[test]
fn the_ascii_fast_path_of_is_text_agrees_with_the_byte_by_byte_rule() {
    let slow =
        |line: &[u8]| !line.iter().any(|&b| b < 0x20 && b != b'\t') && core::str::from_utf8(line).is_ok();
    // Every byte value at every position of lines around the word size,
    // among plain text and among multi-byte UTF-8.
    for len in 0..20 {
        for at in 0..len {
            for b in 0..=255u8 {
                for base in [b'a', 0xc3] {
                    let mut line = vec![base; len];
                    if base == 0xc3 {
                        // "é" pairs where they fit.
                        for pair in line.chunks_mut(2) {
                            if pair.len() == 2 {
                                pair[1] = 0xa9;
                            } else {
                                pair[0] = b'e';
                            }
                        }
                    }
                    line[at] = b;
                    assert_eq!(is_text(&line), slow(&line), "{line:02x?}");
                }
            }
        }
    }
    assert!(plain_ascii(br#"{"id":4,"method":"mining.submit","params":["a.b","1f","00","5e","01"]}"#));
    assert!(!plain_ascii("é".as_bytes()) && is_text("é".as_bytes()));
    assert!(!is_text(b"tab\tok but\x01 not") && is_text(b"tab\tok"));
}

#[test]
fn display_login_copies_printable_ascii_whole_and_filters_the_rest() {
    use crate::worker::{MAX_LOGIN_BYTES, display_login};
    assert_eq!(
        display_login("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.rig1").as_str(),
        "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.rig1"
    );
    assert_eq!(display_login("a\u{7}b\u{85}c\u{7f}d").as_str(), "abcd");
    assert_eq!(display_login("rig-é").as_str(), "rig-é");
    let long = "x".repeat(MAX_LOGIN_BYTES + 5);
    assert_eq!(display_login(&long).len(), MAX_LOGIN_BYTES);
}

/// A login longer than the books keep (128 bytes) is cut for the books and
/// logs only: its shares go to the pool under the same worker name its
/// authorize did, made from the login as sent, and are not refused.
#[test]
fn a_long_login_submits_under_the_name_it_authorized() {
    let mut rig = Rig::new("acct", None);
    let login = format!("{}alice.rig1", "!".repeat(128));
    rig.ready(&login);
    rig.miner(&format!(r#"{{"id":3,"method":"mining.authorize","params":["{login}","x"]}}"#)).unwrap();
    let authorize = rig.sent_to_pool();
    assert!(authorize[0].contains(r#""acct.alice_rig1""#), "{authorize:?}");
    let share = submit("4", &login, "j1");
    rig.miner(&share).unwrap();
    assert_eq!(rig.sent_to_miner(), Vec::<String>::new(), "refused locally");
    let upstream = rig.sent_to_pool();
    assert!(upstream[0].contains(r#""acct.alice_rig1""#), "{upstream:?}");
    assert_eq!(rig.stats.shares_submitted.get(), 1);
}

/// Shares of a login the connection never authorized (firmware that
/// submits under another spelling) are booked under the login authorized
/// last, however many come.
#[test]
fn shares_under_another_spelling_count_for_the_authorized_login() {
    let mut rig = Rig::new("", None);
    rig.ready("rig.a");
    for id in 5..9 {
        let proxy_id = rig.sent(&submit(&id.to_string(), "RIG.A", "j1"));
        rig.answer(proxy_id, "true", "null").unwrap();
    }
    let rows = rig.stats.workers.snapshot(rig.now);
    let accepted = |w: &str| rows.iter().find(|r| r.0.as_str() == w).map(|r| r.1.accepted);
    assert_eq!(accepted("rig.a"), Some(4));
    assert_eq!(accepted("RIG.A"), None);
}
