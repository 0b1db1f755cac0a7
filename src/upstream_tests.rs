//! Requests matched to answers by the proxy's ids, jobs, and the share check's
//! memory of valid shares.

use super::*;

use crate::check::{Share, Template};

fn submit() -> Request {
    Request::Submit {
        login: Default::default(),
        stale: false,
        difficulty: 1.0,
        checked: Verdict::Valid,
        achieved: 0.0,
        deferred: None,
    }
}

#[test]
fn answers_match_only_the_id_the_proxy_issued() {
    let now = Instant::now();
    let mut up = Upstream::new(Duration::from_secs(600));
    // The miner's ids repeat and collide; the proxy's do not.
    let a = up.track(Some(b"4"), Request::Other, now).unwrap();
    let b = up.track(Some(b"4"), submit(), now).unwrap();
    let c = up.track(None, Request::Subscribe, now).unwrap();
    assert!(a < b && b < c);
    // Out of order, and only once each.
    let got = up.answer(b.to_string().as_bytes()).unwrap();
    assert_eq!((got.request, got.miner_id.as_deref()), (submit(), Some(&b"4"[..])));
    assert!(up.answer(b.to_string().as_bytes()).is_none());
    assert_eq!(up.answer(c.to_string().as_bytes()).unwrap().miner_id, None);
    assert_eq!(up.answer(a.to_string().as_bytes()).unwrap().request, Request::Other);
    // Ids never issued, or not written as the proxy writes them.
    for raw in [&b"99"[..], b"0", b"\"4\"", b"01", b"1.0", b"-1", b"null", b"", b"184467440737095516150"] {
        assert!(up.answer(raw).is_none(), "{:?}", String::from_utf8_lossy(raw));
    }
}

#[test]
fn pending_is_bounded_and_ids_are_kept_whole() {
    let now = Instant::now();
    let mut up = Upstream::new(Duration::from_secs(600));
    for _ in 0..MAX_PENDING {
        up.track(Some(b"1"), Request::Other, now).unwrap();
    }
    assert_eq!(up.track(Some(b"1"), submit(), now), Err(TrackError::Full));
    assert_eq!(up.in_flight(), MAX_PENDING);
    let mut up = Upstream::new(Duration::from_secs(600));
    let long = [b'7'; MAX_ID_BYTES + 1];
    assert_eq!(up.track(Some(&long), submit(), now), Err(TrackError::IdTooLong));
    let id = up.track(Some(&long[..MAX_ID_BYTES]), submit(), now).unwrap();
    assert_eq!(up.answer(id.to_string().as_bytes()).unwrap().miner_id.unwrap().len(), MAX_ID_BYTES);
}

#[test]
fn jobs_expire_and_clean() {
    let t0 = Instant::now();
    let mut up = Upstream::new(Duration::from_secs(10));
    up.on_notify("a", false, None, t0);
    up.on_notify("b", false, None, t0);
    assert_eq!(up.job_state("a", t0).0, JobState::Live);
    assert_eq!(up.job_state("a", t0 + Duration::from_secs(11)).0, JobState::Expired);
    up.on_notify("c", true, None, t0);
    assert_eq!(up.job_state("a", t0).0, JobState::Unknown);
    assert_eq!(up.job_state("c", t0).0, JobState::Live);
    for i in 0..MAX_JOBS {
        up.on_notify(&i.to_string(), false, None, t0);
    }
    assert_eq!(up.job_state("c", t0).0, JobState::Unknown);
}

#[test]
fn shares_are_worth_the_difficulty_of_their_job() {
    let t0 = Instant::now();
    let mut up = Upstream::new(Duration::from_secs(600));
    up.set_difficulty(8.0);
    up.on_notify("old", false, None, t0);
    up.set_difficulty(64.0);
    assert_eq!(up.job_state("old", t0), (JobState::Live, 8.0));
    up.on_notify("new", false, None, t0);
    assert_eq!(up.job_state("new", t0), (JobState::Live, 64.0));
    assert_eq!(up.job_state("gone", t0), (JobState::Unknown, 64.0));
}

const NOTIFY: &str = r#"["j","00000000000000000000000000000000000000000000000000000000000000ff","0100","0a63",[],"20000000","17034219","6b04a37f",true]"#;

fn share(nonce: &str) -> Share<'_> {
    Share { extranonce2: "00000000", ntime: "6b04a382", nonce, version_bits: None }
}

/// An upstream with job `j` at `difficulty`: 1e-300 makes every hash valid.
fn checking(difficulty: f64) -> Upstream {
    let mut up = Upstream::new(Duration::from_secs(600));
    up.set_extranonce("08000002", 4);
    up.set_difficulty(difficulty);
    up.on_notify("j", true, Template::from_notify(NOTIFY.as_bytes()).ok().map(Rc::new), Instant::now());
    up
}

/// Sends (judges and remembers) a share; its verdict.
fn send(up: &mut Upstream, nonce: &str) -> Verdict {
    let judged = up.judge("j", &share(nonce), Instant::now());
    up.remember("j", &judged);
    judged.verdict
}

#[test]
fn duplicates_are_never_forgotten_while_their_job_lives() {
    let mut up = checking(1e-300);
    let nonces: Vec<String> = (0..=MAX_SEEN_SHARES as u32).map(|n| format!("{n:08x}")).collect();
    for nonce in &nonces {
        assert_eq!(send(&mut up, nonce), Verdict::Valid);
    }
    // Judging alone remembers nothing; sending does.
    let mut fresh = checking(1e-300);
    assert_eq!(fresh.judge("j", &share("00000000"), Instant::now()).verdict, Verdict::Valid);
    assert_eq!(fresh.judge("j", &share("00000000"), Instant::now()).verdict, Verdict::Valid);
    assert_eq!(send(&mut fresh, "00000000"), Verdict::Valid);
    assert_eq!(send(&mut fresh, "00000000"), Verdict::Duplicate);
    // Past the bound the job's memory is given up, and with it the job:
    // replaying its shares again and again never makes them valid.
    assert!(up.seen_count() <= MAX_SEEN_SHARES);
    for _ in 0..3 {
        for nonce in &nonces {
            assert_ne!(send(&mut up, nonce), Verdict::Valid, "{nonce} counted twice");
        }
    }
    // A new job starts a new memory.
    up.on_notify("j", false, Template::from_notify(NOTIFY.as_bytes()).ok().map(Rc::new), Instant::now());
    assert_eq!(send(&mut up, "00000000"), Verdict::Valid);
    assert_eq!(send(&mut up, "00000000"), Verdict::Duplicate);
    assert_eq!(up.seen_count(), 1);
}

#[test]
fn a_job_keeps_the_extranonce_and_difficulty_it_came_with() {
    let mut up = checking(1e-300);
    let before = up.judge("j", &share("0000002a"), Instant::now());
    // A new extranonce applies from the next job on.
    up.set_extranonce("ffffffff", 4);
    assert_eq!(up.judge("j", &share("0000002a"), Instant::now()), before);
    up.on_notify("k", false, Template::from_notify(NOTIFY.as_bytes()).ok().map(Rc::new), Instant::now());
    let k = up.judge("k", &share("0000002a"), Instant::now());
    assert_ne!(k.hashed, before.hashed, "job k is hashed with the new extranonce1");
    // A share of an old job that meets only a lower difficulty set since
    // is valid, worth the lower one.
    let mut up = checking(1e300);
    assert_eq!(up.judge("j", &share("0000002a"), Instant::now()).verdict, Verdict::LowDifficulty);
    up.set_difficulty(1e-300);
    let judged = up.judge("j", &share("0000002a"), Instant::now());
    assert_eq!((judged.verdict, judged.difficulty), (Verdict::Valid, 1e-300));
    // A higher difficulty set since does not raise what the job asks.
    let mut up = checking(1e-300);
    up.set_difficulty(1e300);
    let judged = up.judge("j", &share("0000002a"), Instant::now());
    assert_eq!((judged.verdict, judged.difficulty), (Verdict::Valid, 1e-300));
}

#[test]
fn overdue_answers_are_given_up() {
    let t0 = Instant::now();
    let limit = Duration::from_secs(30);
    let mut up = Upstream::new(Duration::from_secs(10));
    up.track(Some(b"1"), Request::Other, t0).unwrap();
    up.track(Some(b"2"), submit(), t0 + Duration::from_secs(5)).unwrap();
    assert!(up.overdue(t0 + limit, limit).is_none());
    assert_eq!(up.overdue(t0 + limit + Duration::from_secs(1), limit).unwrap().request, Request::Other);
    assert!(up.overdue(t0 + limit + Duration::from_secs(1), limit).is_none());
    assert_eq!(up.overdue(t0 + limit * 2, limit).unwrap().request, submit());
    assert_eq!(up.in_flight(), 0);
}

#[test]
fn retired_job_ids_are_bounded_and_forgotten_in_time() {
    let t0 = Instant::now();
    let mut up = Upstream::new(Duration::from_secs(600));
    // A pool that floods job ids: only the last MAX_JOBS are kept.
    for i in 0..10 * MAX_JOBS {
        up.on_notify(&format!("j{i}"), i % 7 == 0, None, t0);
    }
    let judged = up.judge("none", &share("0000002a"), t0);
    // Moves one after another keep at most MAX_JOBS retired ids.
    let mut next = up.successor(t0);
    for _ in 0..5 {
        next.on_notify("x", true, None, t0);
        next = next.successor(t0);
    }
    assert_eq!(next.retired.len(), MAX_JOBS);
    let newest = format!("j{}", 10 * MAX_JOBS - 1);
    assert!(next.from_replaced(&newest, &judged, t0), "the newest ids are kept");
    assert!(!next.from_replaced("j0", &judged, t0), "the oldest are dropped");
    // Retired ids are forgotten after RETIRED_FOR, counted from the new
    // connection.
    let later = t0 + RETIRED_FOR;
    assert!(!next.from_replaced(&newest, &judged, later));
    next.restart_retired(later);
    assert!(next.from_replaced(&newest, &judged, later));
}
