//! The pool side of a session: what one upstream connection has granted
//! (extranonce, difficulty, version mask), the jobs it sent, and the requests
//! sent to it that still wait for an answer.
//!
//! This is the narrow interface between a miner [`Session`](crate::session::Session)
//! and its pool: a session registers requests with [`Upstream::track`], asks
//! about jobs with [`Upstream::job_state`], and hands pool answers back through
//! [`Upstream::answer`]. Today each miner has its own upstream (1:1); a later
//! shared mode would hand out extranonce1 slices here without touching sessions.
//!
//! Invariants: answers are matched first-in first-out per raw id, because ids
//! are not unique (cpuminer sends every submit with id 4); at most
//! [`MAX_PENDING`] requests and [`MAX_JOBS`] jobs are kept.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::worker::Login;

/// Most requests waiting for an answer on one upstream; older ones are dropped.
pub const MAX_PENDING: usize = 256;
/// Most jobs remembered per upstream; older ones count as unknown.
pub const MAX_JOBS: usize = 64;
/// Longest request id tracked, in bytes. Longer ids are forwarded, not tracked.
pub const MAX_ID_BYTES: usize = 64;
/// Longest job id tracked, in bytes.
pub const MAX_JOB_ID_BYTES: usize = 64;
/// A request unanswered for this long is given up on.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// A request that is not a share, unanswered for this long, is taken for one
/// the pool will never answer (ckpool ignores `mining.suggest_difficulty`), so
/// it cannot take the answer of a later request with the same id.
pub const OTHER_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Extranonce granted by the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extranonce {
    /// Extranonce1, as the pool's hex string.
    pub extranonce1: heapless::String<64>,
    /// Bytes of extranonce2 the miner rolls.
    pub extranonce2_size: u32,
}

/// What a tracked request was, with what is needed to count its answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `mining.subscribe`.
    Subscribe,
    /// `mining.authorize` for this login.
    Authorize {
        /// The login as the miner sent it.
        login: Login,
    },
    /// `mining.submit`.
    Submit {
        /// The login as the miner sent it.
        login: Login,
        /// Whether the job was unknown or expired when submitted.
        stale: bool,
        /// The difficulty of the share's job.
        difficulty: f64,
    },
    /// `mining.configure`, with the version mask the miner asked for.
    Configure {
        /// The miner's `version-rolling.mask`, when it asked for version rolling.
        miner_mask: Option<u32>,
    },
    /// Anything else that has an id.
    Other,
}

/// A request sent upstream and not yet answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    id: heapless::Vec<u8, MAX_ID_BYTES>,
    /// What was asked.
    pub request: Request,
    /// When it was sent.
    pub sent: Instant,
}

/// Whether a submitted job id is one the pool will still take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Known and not expired.
    Live,
    /// Never seen, dropped by `clean_jobs`, or pushed out by newer jobs.
    Unknown,
    /// Older than the job lifetime.
    Expired,
}

#[derive(Debug)]
struct Job {
    id: heapless::String<MAX_JOB_ID_BYTES>,
    received: Instant,
    /// The difficulty in force when the job arrived: `set_difficulty`
    /// applies to the jobs sent after it.
    difficulty: f64,
}

/// State of one upstream pool connection.
#[derive(Debug)]
pub struct Upstream {
    extranonce: Option<Extranonce>,
    difficulty: Option<f64>,
    version_mask: Option<u32>,
    jobs: VecDeque<Job>,
    pending: VecDeque<Pending>,
    job_lifetime: Duration,
}

impl Upstream {
    /// A fresh upstream whose jobs expire after `job_lifetime`.
    pub fn new(job_lifetime: Duration) -> Self {
        Upstream {
            extranonce: None,
            difficulty: None,
            version_mask: None,
            jobs: VecDeque::new(),
            pending: VecDeque::new(),
            job_lifetime,
        }
    }

    /// Registers a request sent upstream. Returns a request given up on: the
    /// oldest one, dropped to make room, or this one when its id is longer
    /// than [`MAX_ID_BYTES`] and cannot be tracked.
    pub fn track(&mut self, id: &[u8], request: Request, now: Instant) -> Option<Pending> {
        let Ok(id) = heapless::Vec::from_slice(id) else {
            return Some(Pending { id: heapless::Vec::new(), request, sent: now });
        };
        let dropped = if self.pending.len() >= MAX_PENDING { self.pending.pop_front() } else { None };
        self.pending.push_back(Pending { id, request, sent: now });
        dropped
    }

    /// Takes the oldest pending request with this raw id, passing over
    /// non-share requests older than [`OTHER_ANSWER_TIMEOUT`] (which are
    /// dropped: their answer is not coming).
    pub fn answer(&mut self, id: &[u8], now: Instant) -> Option<Pending> {
        self.pending.retain(|p| {
            p.id != id
                || matches!(p.request, Request::Submit { .. })
                || now.saturating_duration_since(p.sent) <= OTHER_ANSWER_TIMEOUT
        });
        let at = self.pending.iter().position(|p| p.id == id)?;
        self.pending.remove(at)
    }

    /// Takes one request unanswered for longer than [`ANSWER_TIMEOUT`].
    pub fn overdue(&mut self, now: Instant) -> Option<Pending> {
        let first = self.pending.front()?;
        if now.saturating_duration_since(first.sent) > ANSWER_TIMEOUT {
            self.pending.pop_front()
        } else {
            None
        }
    }

    /// Takes every pending request (the upstream is going away).
    pub fn drain_pending(&mut self) -> impl Iterator<Item = Pending> + '_ {
        self.pending.drain(..)
    }

    /// Whether a share still waits for its answer.
    pub fn has_pending_shares(&self) -> bool {
        self.pending.iter().any(|p| matches!(p.request, Request::Submit { .. }))
    }

    /// Records a `mining.notify`.
    pub fn on_notify(&mut self, job_id: &str, clean_jobs: bool, now: Instant) {
        if clean_jobs {
            self.jobs.clear();
        }
        if self.jobs.len() >= MAX_JOBS {
            self.jobs.pop_front();
        }
        if let Ok(id) = heapless::String::try_from(job_id) {
            let difficulty = self.difficulty();
            self.jobs.push_back(Job { id, received: now, difficulty });
        }
        // Release what a burst of jobs grew, so idle sessions stay small.
        if self.jobs.capacity() > 2 * MAX_JOBS {
            self.jobs.shrink_to(MAX_JOBS);
        }
    }

    /// Whether `job_id` can still be submitted, and the difficulty its
    /// shares are worth (the current one for a job not known).
    pub fn job_state(&self, job_id: &str, now: Instant) -> (JobState, f64) {
        match self.jobs.iter().rev().find(|j| j.id == job_id) {
            None => (JobState::Unknown, self.difficulty()),
            Some(job) if now.saturating_duration_since(job.received) > self.job_lifetime => {
                (JobState::Expired, job.difficulty)
            }
            Some(job) => (JobState::Live, job.difficulty),
        }
    }

    /// Records the extranonce from a subscribe answer or `mining.set_extranonce`.
    pub fn set_extranonce(&mut self, extranonce1: &str, extranonce2_size: u32) {
        if let Ok(extranonce1) = heapless::String::try_from(extranonce1) {
            self.extranonce = Some(Extranonce { extranonce1, extranonce2_size });
        }
    }

    /// The extranonce granted, once subscribed.
    pub fn extranonce(&self) -> Option<&Extranonce> {
        self.extranonce.as_ref()
    }

    /// Records `mining.set_difficulty`.
    pub fn set_difficulty(&mut self, difficulty: f64) {
        self.difficulty = Some(difficulty);
    }

    /// The current share difficulty (1 until the pool says otherwise).
    pub fn difficulty(&self) -> f64 {
        self.difficulty.unwrap_or(1.0)
    }

    /// Records the version mask in force for the miner.
    pub fn set_version_mask(&mut self, mask: Option<u32>) {
        self.version_mask = mask;
    }

    /// The version mask in force for the miner, `None` without version rolling.
    pub fn version_mask(&self) -> Option<u32> {
        self.version_mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_ids_answer_in_order() {
        let now = Instant::now();
        let mut up = Upstream::new(Duration::from_secs(600));
        up.track(b"4", Request::Other, now);
        up.track(b"5", Request::Subscribe, now);
        up.track(b"4", Request::Configure { miner_mask: None }, now);
        assert_eq!(up.answer(b"4", now).unwrap().request, Request::Other);
        assert_eq!(up.answer(b"4", now).unwrap().request, Request::Configure { miner_mask: None });
        assert!(up.answer(b"4", now).is_none());
        assert_eq!(up.answer(b"5", now).unwrap().request, Request::Subscribe);
    }

    #[test]
    fn an_unanswered_request_does_not_take_a_later_answer() {
        let t0 = Instant::now();
        let mut up = Upstream::new(Duration::from_secs(600));
        up.track(b"4", Request::Other, t0);
        let later = t0 + OTHER_ANSWER_TIMEOUT + Duration::from_secs(1);
        let submit = Request::Submit { login: Default::default(), stale: false, difficulty: 1.0 };
        up.track(b"4", submit.clone(), later);
        assert_eq!(up.answer(b"4", later).unwrap().request, submit);
        assert!(!up.has_pending_shares());
    }

    #[test]
    fn pending_is_bounded() {
        let now = Instant::now();
        let mut up = Upstream::new(Duration::from_secs(600));
        for _ in 0..MAX_PENDING {
            assert!(up.track(b"1", Request::Other, now).is_none());
        }
        assert!(up.track(b"1", Request::Other, now).is_some());
        // Too long to track: handed back at once, so the caller can count it.
        let long = up.track(&[b'1'; MAX_ID_BYTES + 1], Request::Subscribe, now).unwrap();
        assert_eq!(long.request, Request::Subscribe);
    }

    #[test]
    fn jobs_expire_and_clean() {
        let t0 = Instant::now();
        let mut up = Upstream::new(Duration::from_secs(10));
        up.on_notify("a", false, t0);
        up.on_notify("b", false, t0);
        assert_eq!(up.job_state("a", t0).0, JobState::Live);
        assert_eq!(up.job_state("a", t0 + Duration::from_secs(11)).0, JobState::Expired);
        up.on_notify("c", true, t0);
        assert_eq!(up.job_state("a", t0).0, JobState::Unknown);
        assert_eq!(up.job_state("c", t0).0, JobState::Live);
        for i in 0..MAX_JOBS {
            up.on_notify(&i.to_string(), false, t0);
        }
        assert_eq!(up.job_state("c", t0).0, JobState::Unknown);
    }

    #[test]
    fn shares_are_worth_the_difficulty_of_their_job() {
        let t0 = Instant::now();
        let mut up = Upstream::new(Duration::from_secs(600));
        up.set_difficulty(8.0);
        up.on_notify("old", false, t0);
        up.set_difficulty(64.0);
        assert_eq!(up.job_state("old", t0), (JobState::Live, 8.0));
        up.on_notify("new", false, t0);
        assert_eq!(up.job_state("new", t0), (JobState::Live, 64.0));
        assert_eq!(up.job_state("gone", t0), (JobState::Unknown, 64.0));
    }

    #[test]
    fn overdue_answers_are_given_up() {
        let t0 = Instant::now();
        let mut up = Upstream::new(Duration::from_secs(10));
        up.track(b"1", Request::Other, t0);
        assert!(up.overdue(t0 + ANSWER_TIMEOUT).is_none());
        assert!(up.overdue(t0 + ANSWER_TIMEOUT + Duration::from_secs(1)).is_some());
        assert!(up.overdue(t0 + ANSWER_TIMEOUT * 2).is_none());
    }
}
