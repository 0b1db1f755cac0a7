//! Lines from a hostile miner and a hostile pool, interleaved, through one
//! session, checked against an oracle that tracks every request the session
//! sends upstream:
//! - every request goes upstream under an id never used before on the
//!   connection;
//! - a pool answer changes the share counts only when its id is one the
//!   proxy sent and not yet answered, and then by exactly one verdict for
//!   that request: accepted or disputed (the proxy's own check refused it)
//!   exactly when the pool accepted it;
//! - the answer reaches the miner under the miner's own id, byte for byte,
//!   and not at all when the miner sent no id;
//! - requests in flight and jobs stay within their bounds, and what one line
//!   makes the session write is bounded by that line;
//! - at the end every share has exactly one verdict: submitted = accepted +
//!   rejected + stale + disputed + unanswered (with `reject_invalid` on,
//!   chosen by the input's first byte, some are rejected by the proxy).
//!
//! Input: lines; the first byte of each says who acts. Even: the rest is a
//! miner line. `4k+1`: the rest is a raw pool line. `4k+3`: the pool answers
//! the request chosen by the next byte with the verdict chosen by the byte
//! after (so matching answers are easy for the fuzzer to find).
#![no_main]

use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use loka_stratum::pools::Pools;
use loka_stratum::session::{Outbox, Rules, Session, Verdict};
use loka_stratum::stats::Stats;
use loka_stratum::stratum::{self, Envelope};
use loka_stratum::upstream::{MAX_JOBS, MAX_PENDING, Upstream};
use loka_stratum::worker::Rewriter;

/// What the oracle knows of a request the session sent upstream.
struct Sent {
    submit: bool,
    /// The miner's raw id, `None` when it sent none or `null`.
    miner_id: Option<Vec<u8>>,
}

/// Share counts, as the session's stats show them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Counts {
    accepted: u64,
    rejected: u64,
    stale: u64,
    disputed: u64,
    unanswered: u64,
}

fn counts(stats: &Stats) -> Counts {
    Counts {
        accepted: stats.shares_accepted.get(),
        rejected: stats.shares_rejected.get(),
        stale: stats.shares_stale.get(),
        disputed: stats.shares_disputed.get(),
        unanswered: stats.shares_unanswered.get(),
    }
}

fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty())
}

/// The decimal proxy id of an answer, as the proxy writes ids.
fn proxy_id(raw: &[u8]) -> Option<u64> {
    let canonical = !raw.is_empty() && raw.len() <= 20 && raw[0] != b'0' && raw.iter().all(u8::is_ascii_digit);
    canonical.then(|| std::str::from_utf8(raw).ok()?.parse().ok()).flatten()
}

const VERDICTS: [(&str, &str); 6] = [
    ("true", "null"),
    ("null", r#"[23,"Low difficulty share",null]"#),
    ("null", r#"[21,"Job not found",null]"#),
    ("false", "null"),
    ("null", r#"[22,"Duplicate share",null]"#),
    ("true", r#"[20,"Other",null]"#),
];

fuzz_target!(|data: &[u8]| {
    let rules = Rc::new(Rules {
        pools: Rc::new(Pools::single(Rewriter::new("acct", [".", "_"]), Some("x".into()))),
        max_logins: 16,
        reject_invalid: data.first().is_some_and(|b| b & 1 == 1),
        templates: Default::default(),
    });
    let stats = Rc::new(Stats::default());
    let now = Instant::now();
    let mut session = Session::new("127.0.0.1:1".parse().unwrap(), rules, stats.clone(), now);
    let mut up = Upstream::new(Duration::from_secs(600));
    let mut out = Outbox::default();
    let mut sent: HashMap<u64, Sent> = HashMap::new();
    let mut ever: HashSet<u64> = HashSet::new();
    let mut order: Vec<u64> = Vec::new();
    for op in data.split(|&b| b == b'\n') {
        let Some((&who, rest)) = op.split_first() else { continue };
        out.to_miner.clear();
        out.to_pool.clear();
        if who & 1 == 0 {
            let result = session.on_miner_line(rest, &mut up, now, &mut out);
            let miner_id = Envelope::parse(rest).ok().and_then(|e| e.id().filter(|_| e.has_id()).map(<[u8]>::to_vec));
            for line in lines(&out.to_pool) {
                let env = Envelope::parse(line).expect("the session sends valid JSON upstream");
                if !env.has_id() {
                    // A miner's answer to a pool request passes as it is.
                    assert!(env.is_response() && line == rest.strip_suffix(b"\r").unwrap_or(rest));
                    continue;
                }
                let id = proxy_id(env.id().unwrap_or_default());
                if env.is_response() {
                    continue;
                }
                let id = id.expect("a request goes upstream under a proxy id");
                assert!(ever.insert(id), "proxy id {id} used twice");
                let submit = env.method() == Some("mining.submit");
                sent.insert(id, Sent { submit, miner_id: miner_id.clone() });
                order.push(id);
            }
            // One line makes the session write a bounded amount.
            assert!(out.to_pool.len() <= 2 * rest.len() + 600, "{} from {}", out.to_pool.len(), rest.len());
            assert!(out.to_miner.len() <= rest.len() + 200);
            if result.is_err() {
                break;
            }
        } else {
            let line: Vec<u8> = if who & 3 == 3 {
                let (pick, verdict) = (rest.first().copied().unwrap_or(0), rest.get(1).copied().unwrap_or(0));
                let Some(&id) = order.get(pick as usize % order.len().max(1)) else { continue };
                let (result, error) = VERDICTS[verdict as usize % VERDICTS.len()];
                format!(r#"{{"id":{id},"result":{result},"error":{error}}}"#).into_bytes()
            } else {
                rest.to_vec()
            };
            let before = counts(&stats);
            let unmatched = stats.answers_unmatched.get();
            let env = Envelope::parse(&line).ok();
            if session.on_pool_line(&line, &mut up, now, &mut out).is_err() {
                // Garbage or invalid JSON from the pool ends the session
                // before the line means anything.
                assert_eq!(before, counts(&stats));
                break;
            }
            let after = counts(&stats);
            let answer = env.filter(|e| e.is_response());
            let target = answer.as_ref().and_then(|e| e.id()).and_then(proxy_id).and_then(|id| sent.remove(&id));
            match (answer, target) {
                (Some(env), Some(request)) if request.submit => {
                    let verdict = Verdict::of(false, env.result(), env.error());
                    let moved = (
                        after.accepted - before.accepted,
                        after.rejected - before.rejected,
                        after.stale - before.stale,
                        after.disputed - before.disputed,
                    );
                    match verdict {
                        Verdict::Accepted => assert!(moved == (1, 0, 0, 0) || moved == (0, 0, 0, 1), "{moved:?}"),
                        Verdict::Stale => assert_eq!(moved, (0, 0, 1, 0)),
                        Verdict::Rejected(_) => {
                            assert!(moved == (0, 1, 0, 0) || moved == (0, 0, 1, 0), "{moved:?}")
                        }
                        Verdict::Disputed(_) => unreachable!("the pool's word alone is never disputed"),
                    }
                    check_answer(&out, request.miner_id.as_deref());
                }
                (Some(_), Some(request)) => {
                    assert_eq!(before, after, "a non-share answer moved the share counts");
                    check_answer(&out, request.miner_id.as_deref());
                }
                (Some(_), None) => {
                    assert_eq!(before, after, "an answer to no request moved the share counts");
                    assert_eq!(stats.answers_unmatched.get(), unmatched + 1);
                    assert!(out.to_miner.is_empty(), "an unmatched answer reached the miner");
                }
                (None, _) => assert_eq!(before, after, "a pool request moved the share counts"),
            }
        }
        assert!(up.in_flight() <= MAX_PENDING);
        assert!(up.job_count() <= MAX_JOBS);
        order.retain(|id| sent.contains_key(id));
    }
    for pending in up.drain_pending() {
        session.given_up(pending);
    }
    let end = counts(&stats);
    assert_eq!(
        stats.shares_submitted.get(),
        end.accepted + end.rejected + end.stale + end.disputed + end.unanswered,
        "a share without exactly one verdict: {end:?}"
    );
    assert!(out.to_pool.is_empty() || out.to_pool.ends_with(b"\n"));
    assert!(out.to_miner.is_empty() || out.to_miner.ends_with(b"\n"));
});

/// A matched answer reaches the miner under its own id, or not at all.
fn check_answer(out: &Outbox, miner_id: Option<&[u8]>) {
    let to_miner: Vec<&[u8]> = lines(&out.to_miner).collect();
    match miner_id {
        None => assert!(to_miner.is_empty(), "an answer reached a miner that asked for none"),
        Some(id) => {
            assert_eq!(to_miner.len(), 1);
            let env = Envelope::parse(to_miner[0]).expect("valid JSON to the miner");
            assert_eq!(env.id(), Some(id), "the answer went back under another id");
            let _ = stratum::error_code(env.error());
        }
    }
}
