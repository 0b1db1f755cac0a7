//! The pool side of a session: what one upstream connection has granted
//! (extranonce, difficulty, version mask), the jobs it sent, and the requests
//! sent to it that still wait for an answer.
//!
//! This is the narrow interface between a miner [`Session`](crate::session::Session)
//! and its pool: a session registers a request with [`Upstream::track`] and
//! sends it upstream under the proxy's own id, asks about jobs with
//! [`Upstream::job_state`], and hands pool answers back through
//! [`Upstream::answer`]. Today each miner has its own upstream (1:1); a later
//! shared mode would hand out extranonce1 slices here without touching sessions.
//!
//! Invariants: every request that goes upstream carries an id the proxy
//! issued, unique on the connection (a counter), so an answer belongs to at
//! most one request and no id a miner chooses can move a verdict; an answer
//! whose id was never issued, or was answered already, matches nothing. At
//! most [`MAX_PENDING`] requests and [`MAX_JOBS`] jobs are kept.

use std::collections::{HashSet, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::check::{Grant, Hashed, Share, Template, Verdict, target};
use crate::stats::Checked;

/// Most requests waiting for an answer on one upstream; more are refused.
pub const MAX_PENDING: usize = 256;
/// Requests in flight above which the proxy stops reading the miner, so the
/// lines of one more read still fit under [`MAX_PENDING`] in normal use.
pub const PAUSE_PENDING: usize = MAX_PENDING / 2;
/// Most jobs remembered per upstream; older ones count as unknown.
pub const MAX_JOBS: usize = 64;
/// Longest request id a miner may use, in bytes (it is kept to answer it).
pub const MAX_ID_BYTES: usize = 64;
/// Longest job id tracked, in bytes.
pub const MAX_JOB_ID_BYTES: usize = 64;

/// A miner's request id, kept byte for byte to put back on the answer.
pub type MinerId = heapless::Vec<u8, MAX_ID_BYTES>;

/// A login as the books and logs show it ([`crate::worker::display_login`]),
/// shared: the session's lists and every request in flight for it hold the
/// same one, so a request in flight carries no copy of its login and an
/// idle session keeps no login-sized buffer.
pub type Name = Rc<str>;

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
        /// The login as the miner sent it, in display form.
        login: Name,
    },
    /// `mining.submit`.
    Submit {
        /// The login as the miner sent it, in display form.
        login: Name,
        /// Whether the job was unknown or expired when submitted.
        stale: bool,
        /// The difficulty of the share's job.
        difficulty: f64,
        /// What the proxy's own check found.
        checked: Verdict,
        /// The difficulty the share's hash achieved (0 when not hashed).
        achieved: f64,
        /// The check, for the worker's series once the pool's answer has
        /// given it one (`None`: already counted).
        deferred: Option<Checked>,
    },
    /// `mining.configure`, with the version mask the miner asked for.
    Configure {
        /// The miner's `version-rolling.mask`, when it asked for version rolling.
        miner_mask: Option<u32>,
    },
    /// Anything else (`mining.suggest_difficulty`, unknown methods).
    Other,
}

impl Request {
    /// Whether a pool that leaves this request unanswered has stalled. Pools
    /// may ignore the others (ckpool never answers `mining.suggest_difficulty`).
    pub fn must_be_answered(&self) -> bool {
        matches!(self, Request::Subscribe | Request::Authorize { .. } | Request::Submit { .. })
    }
}

/// A request sent upstream and not yet answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// The id the proxy sent it under.
    pub proxy_id: u64,
    /// The miner's own id, `None` when it sent none (or `null`): then its
    /// answer is booked but not passed on.
    pub miner_id: Option<MinerId>,
    /// What was asked.
    pub request: Request,
    /// When it was sent.
    pub sent: Instant,
}

/// Why a request cannot be sent upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackError {
    /// [`MAX_PENDING`] requests already wait for an answer.
    Full,
    /// The miner's id is longer than [`MAX_ID_BYTES`].
    IdTooLong,
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

/// How long the job ids of a replaced connection are remembered: miners
/// send shares of old work for a few seconds after new work reaches them.
pub const RETIRED_FOR: Duration = Duration::from_secs(120);

/// Valid shares remembered per upstream to tell duplicates, over all its
/// jobs. Past it, the oldest job's memory is given up and its shares count as
/// stale from then on: a duplicate is never forgotten while its job lives.
pub const MAX_SEEN_SHARES: usize = 4096;

/// What a job's shares are checked against.
#[derive(Debug)]
enum Work {
    /// The parsed job, and the first 8 bytes of the hashes of the valid
    /// shares seen for it.
    Checkable { template: Rc<Template>, seen: HashSet<u64> },
    /// The pool's notify could not be parsed: its shares are malformed.
    Unparsed,
    /// Expired, or its duplicate memory given up: its shares are stale.
    Forgotten,
}

#[derive(Debug)]
struct Job {
    id: heapless::String<MAX_JOB_ID_BYTES>,
    received: Instant,
    /// The difficulty in force when the job arrived: `set_difficulty`
    /// applies to the jobs sent after it.
    difficulty: f64,
    /// The extranonce in force when the job arrived: a `set_extranonce`
    /// applies from the next job on.
    extranonce: Option<Rc<Extranonce>>,
    /// The version mask in force when the job arrived.
    version_mask: Option<u32>,
    work: Work,
}

impl Job {
    /// Gives the job's memory up; returns how many shares it remembered.
    fn forget(&mut self) -> usize {
        let seen = match &self.work {
            Work::Checkable { seen, .. } => seen.len(),
            Work::Unparsed | Work::Forgotten => return 0,
        };
        self.work = Work::Forgotten;
        seen
    }
}

/// The proxy's own judgement of a share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judged {
    /// The verdict.
    pub verdict: Verdict,
    /// Whether the job was live, unknown or expired.
    pub state: JobState,
    /// The difficulty the share is worth: its job's, or the current one when
    /// that is lower and only it is met (cgminer applies a new difficulty to
    /// work it already has); the current one for a job not known.
    pub difficulty: f64,
    /// The header hash, when the share could be hashed.
    pub hashed: Option<Hashed>,
}

impl Judged {
    /// The difficulty the share's hash achieved; `None` when it was not
    /// hashed, or is a duplicate (its first copy achieved it).
    pub fn achieved(&self) -> Option<f64> {
        let hashed = self.hashed.filter(|_| self.verdict != Verdict::Duplicate)?;
        Some(target::difficulty_of(&hashed.hash))
    }

    /// The key a valid share is remembered by.
    fn key(&self) -> Option<u64> {
        let hashed = self.hashed.filter(|_| self.verdict == Verdict::Valid)?;
        let mut key = [0u8; 8];
        key.copy_from_slice(&hashed.hash[..8]);
        Some(u64::from_le_bytes(key))
    }
}

/// A job id as 64 bits (FNV-1a): what is remembered of the job ids of a
/// replaced connection. Two ids that collide only make a share of one be
/// taken for the other's, which the check then settles.
fn job_key(job_id: &str) -> u64 {
    job_id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Makes room for one more in `queue`, doubling from one slot instead of
/// from the four a first push makes: a connection's queues mostly hold one
/// or two entries of a few hundred bytes each, and there is one set per
/// connection.
fn room_for_one<T>(queue: &mut VecDeque<T>) {
    if queue.len() == queue.capacity() {
        queue.reserve_exact(queue.capacity().max(1));
    }
}

/// The id the proxy sent, from the raw bytes of an answer's `id`: a decimal
/// integer exactly as the proxy wrote it (no sign, no leading zero).
pub(crate) fn parse_proxy_id(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || raw.len() > 20 || (raw[0] == b'0') || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    core::str::from_utf8(raw).ok()?.parse().ok()
}

/// State of one upstream pool connection.
#[derive(Debug)]
pub struct Upstream {
    /// Shared with the jobs that arrived while it was in force.
    extranonce: Option<Rc<Extranonce>>,
    difficulty: Option<f64>,
    version_mask: Option<u32>,
    jobs: VecDeque<Job>,
    /// Valid shares remembered over all jobs, at most [`MAX_SEEN_SHARES`].
    seen: usize,
    /// Ordered by `proxy_id` (issued in rising order, removed anywhere).
    pending: VecDeque<Pending>,
    /// Whether `pending` has emptied once (see [`Upstream::answer`]).
    settled: bool,
    next_id: u64,
    job_lifetime: Duration,
    /// Job ids of the previous upstream connection(s) and when they were
    /// retired, newest last: a share for one of them is stale here, never
    /// sent to this pool.
    /// (By [`job_key`]: 8 bytes each instead of 64.)
    retired: VecDeque<(u64, Instant)>,
    /// The last [`MAX_JOBS`] job ids this connection sent, cleared ones too
    /// (by [`job_key`]).
    recent: VecDeque<u64>,
    /// When the last `mining.notify` arrived.
    last_notify: Option<Instant>,
}

impl Upstream {
    /// A fresh upstream whose jobs expire after `job_lifetime`.
    pub fn new(job_lifetime: Duration) -> Self {
        Upstream {
            extranonce: None,
            difficulty: None,
            version_mask: None,
            jobs: VecDeque::new(),
            seen: 0,
            pending: VecDeque::new(),
            settled: false,
            next_id: 1,
            job_lifetime,
            retired: VecDeque::new(),
            recent: VecDeque::new(),
            last_notify: None,
        }
    }

    /// The state for a new connection that replaces this one (another pool,
    /// or the same one again): nothing granted, no jobs, nothing in flight;
    /// the job ids this connection sent (and those retired before it, for
    /// [`RETIRED_FOR`]) are remembered as retired, at most [`MAX_JOBS`].
    pub fn successor(&self, now: Instant) -> Upstream {
        let mut next = Upstream::new(self.job_lifetime);
        let kept = self.retired.iter().filter(|(_, at)| now.saturating_duration_since(*at) < RETIRED_FOR);
        next.retired = kept.cloned().collect();
        for &key in &self.recent {
            if next.retired.len() >= MAX_JOBS {
                next.retired.pop_front();
            }
            next.retired.push_back((key, now));
        }
        next
    }

    /// Starts the retired ids' time over: they are kept for [`RETIRED_FOR`]
    /// from when this connection was made, however long the session had
    /// none (old work reaches the miner's pool only from then on).
    pub fn restart_retired(&mut self, now: Instant) {
        for (_, at) in &mut self.retired {
            *at = now;
        }
    }

    /// Whether a share of `job_id` belongs to a connection this one
    /// replaced: its id was retired lately, and this connection has no such
    /// job, or has one the share is not valid for (pools reuse ids: a pool
    /// that restarts counts from 1 again). A job the check cannot read gives
    /// no answer either way: the pool decides.
    pub fn from_replaced(&self, job_id: &str, judged: &Judged, now: Instant) -> bool {
        let key = job_key(job_id);
        let retired =
            self.retired.iter().any(|(k, at)| *k == key && now.saturating_duration_since(*at) < RETIRED_FOR);
        retired
            && match self.job(job_id).map(|j| &j.work) {
                None => true,
                Some(Work::Checkable { .. }) => judged.verdict != Verdict::Valid,
                Some(Work::Unparsed | Work::Forgotten) => false,
            }
    }

    /// When the last `mining.notify` arrived, if one did.
    pub fn last_notify(&self) -> Option<Instant> {
        self.last_notify
    }

    /// Registers a request about to go upstream and returns the id to send
    /// it under. `miner_id` is the miner's raw id (`None` for none or `null`).
    pub fn track(
        &mut self,
        miner_id: Option<&[u8]>,
        request: Request,
        now: Instant,
    ) -> Result<u64, TrackError> {
        let miner_id = match miner_id {
            Some(id) => Some(MinerId::from_slice(id).map_err(|_| TrackError::IdTooLong)?),
            None => None,
        };
        if self.pending.len() >= MAX_PENDING {
            return Err(TrackError::Full);
        }
        let proxy_id = self.next_id;
        self.next_id += 1;
        // A miner that submits one share at a time (the usual case) never
        // needs more than two (its subscribe and authorize come together).
        room_for_one(&mut self.pending);
        self.pending.push_back(Pending { proxy_id, miner_id, request, sent: now });
        Ok(proxy_id)
    }

    /// Gives the share tracked last the check to count for its worker once
    /// the pool has answered (see [`Request::Submit`]'s `deferred`).
    pub fn defer_check(&mut self, check: Option<Checked>) {
        if let Some(Pending { request: Request::Submit { deferred, .. }, .. }) = self.pending.back_mut() {
            *deferred = check;
        }
    }

    /// Requests waiting for an answer.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Takes the request sent under `proxy_id` (the raw id of a pool's
    /// answer); `None` when the proxy never issued it or it was answered.
    pub fn answer(&mut self, proxy_id: &[u8]) -> Option<Pending> {
        let id = parse_proxy_id(proxy_id)?;
        let at = self.pending.binary_search_by_key(&id, |p| p.proxy_id).ok()?;
        let taken = self.pending.remove(at);
        // The handshake (subscribe, authorize, configure) often comes in
        // one burst; a miner that then submits one share at a time needs
        // one slot. So the first time the queue empties, its room goes back
        // to one (once: a miner that keeps several in flight is not made to
        // reallocate per share).
        if self.pending.is_empty() && !self.settled {
            self.settled = true;
            self.pending.shrink_to(1);
        }
        taken
    }

    /// Counts every request in flight as sent `now`: they were queued
    /// before the connection that carries them was made.
    pub fn restamp(&mut self, now: Instant) {
        for p in &mut self.pending {
            p.sent = now;
        }
    }

    /// The request sent under `proxy_id`, while it waits for its answer.
    pub fn pending_request(&self, proxy_id: u64) -> Option<&Request> {
        let at = self.pending.binary_search_by_key(&proxy_id, |p| p.proxy_id).ok()?;
        self.pending.get(at).map(|p| &p.request)
    }

    /// When the oldest request in flight was sent.
    pub fn oldest_sent(&self) -> Option<Instant> {
        // Requests are tracked in the order sent, with a monotonic clock.
        self.pending.front().map(|p| p.sent)
    }

    /// Takes one request unanswered for longer than `timeout`.
    pub fn overdue(&mut self, now: Instant, timeout: Duration) -> Option<Pending> {
        let first = self.pending.front()?;
        if now.saturating_duration_since(first.sent) > timeout { self.pending.pop_front() } else { None }
    }

    /// Takes every pending request (the upstream is going away).
    pub fn drain_pending(&mut self) -> impl Iterator<Item = Pending> + '_ {
        self.pending.drain(..)
    }

    /// Whether a share still waits for its answer.
    pub fn has_pending_shares(&self) -> bool {
        self.pending.iter().any(|p| matches!(p.request, Request::Submit { .. }))
    }

    /// Jobs remembered (at most [`MAX_JOBS`]).
    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    /// Records a `mining.notify` and what its shares are checked against
    /// (`None` when it could not be parsed). Memory stays bounded: at most
    /// [`MAX_JOBS`] jobs, and only jobs within their lifetime keep a template.
    pub fn on_notify(
        &mut self,
        job_id: &str,
        clean_jobs: bool,
        template: Option<Rc<Template>>,
        now: Instant,
    ) {
        self.last_notify = Some(now);
        let key = job_key(job_id);
        if !self.recent.contains(&key) {
            if self.recent.len() >= MAX_JOBS {
                self.recent.pop_front();
            }
            self.recent.push_back(key);
        }
        if clean_jobs {
            self.jobs.clear();
            self.seen = 0;
        }
        if self.jobs.len() >= MAX_JOBS
            && let Some(mut oldest) = self.jobs.pop_front()
        {
            self.seen -= oldest.forget();
        }
        for job in &mut self.jobs {
            if now.saturating_duration_since(job.received) > self.job_lifetime {
                self.seen -= job.forget();
            }
        }
        if let Ok(id) = heapless::String::try_from(job_id) {
            // A session that just joined holds one job; the queue settles
            // at what one block's jobs need (at most MAX_JOBS).
            room_for_one(&mut self.jobs);
            let work = match template {
                Some(template) => Work::Checkable { template, seen: HashSet::new() },
                None => Work::Unparsed,
            };
            self.jobs.push_back(Job {
                id,
                received: now,
                difficulty: self.difficulty(),
                extranonce: self.extranonce.clone(),
                version_mask: self.version_mask,
                work,
            });
        }
        // Release what a burst of jobs grew, so idle sessions stay small.
        if self.jobs.capacity() > 2 * MAX_JOBS {
            self.jobs.shrink_to(MAX_JOBS);
        }
    }

    fn job(&self, job_id: &str) -> Option<&Job> {
        self.jobs.iter().rev().find(|j| j.id == job_id)
    }

    /// Whether `job_id` can still be submitted, and the difficulty its
    /// shares are worth (the current one for a job not known).
    pub fn job_state(&self, job_id: &str, now: Instant) -> (JobState, f64) {
        self.state_of(self.job(job_id), now)
    }

    fn state_of(&self, job: Option<&Job>, now: Instant) -> (JobState, f64) {
        match job {
            None => (JobState::Unknown, self.difficulty()),
            Some(job) if now.saturating_duration_since(job.received) > self.job_lifetime => {
                (JobState::Expired, job.difficulty)
            }
            Some(job) => (JobState::Live, job.difficulty),
        }
    }

    /// Checks a share of `job_id` as a pool would (see [`crate::check`]).
    /// Pure: a valid share is remembered (so that it is a duplicate when it
    /// comes again) only by [`Upstream::remember`], once it was sent on.
    pub fn judge(&self, job_id: &str, share: &Share<'_>, now: Instant) -> Judged {
        let job = self.job(job_id);
        let (state, difficulty) = self.state_of(job, now);
        let mut judged = Judged { verdict: Verdict::Stale, state, difficulty, hashed: None };
        let Some(job) = job.filter(|_| state == JobState::Live) else {
            return judged;
        };
        let (template, seen) = match &job.work {
            Work::Checkable { template, seen } => (template, seen),
            Work::Forgotten => return judged,
            Work::Unparsed => {
                judged.verdict = Verdict::Malformed;
                return judged;
            }
        };
        let Some(extranonce) = job.extranonce.as_ref().or(self.extranonce.as_ref()) else {
            judged.verdict = Verdict::Malformed;
            return judged;
        };
        // Bits granted when the job came or since are the miner's to roll.
        let version_mask = match (job.version_mask, self.version_mask) {
            (None, None) => None,
            (then, now) => Some(then.unwrap_or(0) | now.unwrap_or(0)),
        };
        let grant = Grant {
            extranonce1: &extranonce.extranonce1,
            extranonce2_size: extranonce.extranonce2_size,
            version_mask,
        };
        let hashed = match template.hash(&grant, share) {
            Ok(hashed) => hashed,
            Err(verdict) => {
                judged.verdict = verdict;
                return judged;
            }
        };
        judged.hashed = Some(hashed);
        let current = self.difficulty();
        judged.verdict = if target::meets_difficulty(&hashed.hash, difficulty) {
            Verdict::Valid
        } else if current < difficulty && target::meets_difficulty(&hashed.hash, current) {
            judged.difficulty = current;
            Verdict::Valid
        } else {
            Verdict::LowDifficulty
        };
        if judged.key().is_some_and(|key| seen.contains(&key)) {
            judged.verdict = Verdict::Duplicate;
        }
        judged
    }

    /// Remembers a share [`Upstream::judge`] found valid, once it was sent
    /// on; past [`MAX_SEEN_SHARES`] the oldest job with shares remembered is
    /// forgotten (its shares are stale from then on).
    pub fn remember(&mut self, job_id: &str, judged: &Judged) {
        let Some(key) = judged.key() else { return };
        let Some(job) = self.jobs.iter_mut().rev().find(|j| j.id == job_id) else { return };
        if let Work::Checkable { seen, .. } = &mut job.work
            && seen.insert(key)
        {
            self.seen += 1;
        }
        while self.seen > MAX_SEEN_SHARES {
            let Some(oldest) = self
                .jobs
                .iter_mut()
                .find(|j| matches!(&j.work, Work::Checkable { seen, .. } if !seen.is_empty()))
            else {
                break;
            };
            self.seen -= oldest.forget();
        }
    }

    /// Valid shares remembered to tell duplicates.
    pub fn seen_count(&self) -> usize {
        self.seen
    }

    /// Whether a request the miner sent under `miner_id` still waits for
    /// the pool's answer (an answer of the proxy's own must not overtake it).
    pub fn awaits(&self, miner_id: &[u8]) -> bool {
        self.pending.iter().any(|p| p.miner_id.as_deref() == Some(miner_id))
    }

    /// Records the extranonce from a subscribe answer or `mining.set_extranonce`.
    pub fn set_extranonce(&mut self, extranonce1: &str, extranonce2_size: u32) {
        if let Ok(extranonce1) = heapless::String::try_from(extranonce1) {
            self.extranonce = Some(Rc::new(Extranonce { extranonce1, extranonce2_size }));
        }
    }

    /// The extranonce granted, once subscribed.
    pub fn extranonce(&self) -> Option<&Extranonce> {
        self.extranonce.as_deref()
    }

    /// The extranonce granted, shared.
    pub fn extranonce_shared(&self) -> Option<Rc<Extranonce>> {
        self.extranonce.clone()
    }

    /// Records `mining.set_difficulty`.
    pub fn set_difficulty(&mut self, difficulty: f64) {
        self.difficulty = Some(difficulty);
    }

    /// Whether the pool has set a difficulty on this connection.
    pub fn has_difficulty(&self) -> bool {
        self.difficulty.is_some()
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
#[path = "upstream_tests.rs"]
mod tests;
