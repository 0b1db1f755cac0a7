//! The pool's side of a session: answers matched to requests, jobs,
//! difficulty, extranonce, version mask and `client.reconnect`.

use std::time::Instant;

use crate::check::{self, target};
use crate::stats::Checked;
use crate::upstream::Judged;

use super::ids::answer_miner;
use super::{DUPLICATE, Flow, Outbox, Session, SessionError, Verdict, forward, is_text, significant, splice};
use crate::clock::unix_f64 as unix_now;
use crate::stats::{Peer, Reason, ShareOutcome};
use crate::store::{CheckNote, Event, Outcome};
use crate::stratum::{self, Envelope, items};
use crate::upstream::{MinerId, Pending, Request, Upstream};
use crate::worker::display_login;

impl Session {
    /// The worker a share of `login` counts for: the submit's own login
    /// when the pool authorized it on this connection, else the login
    /// authorized last (firmware that submits with another spelling), else
    /// the submit's.
    pub(super) fn worker<'a>(&'a self, login: &'a str) -> &'a str {
        if self.authorized.iter().any(|l| &**l == login) {
            login
        } else {
            self.login.as_deref().unwrap_or(login)
        }
    }

    /// Counts what the proxy's own check found of one share, for the
    /// process and the worker (the books get it with the share's outcome);
    /// logs and books a block. A worker without a series of its own yet
    /// gets the check once the pool has answered (an accepted share gives it
    /// one): the check is returned to be counted then.
    pub(super) fn checked(&mut self, login: &str, judged: &Judged, now: Instant) -> Option<Checked> {
        let worker = self.worker(login);
        let verdict = judged.verdict;
        self.stats.shares_checked[verdict.index()].inc();
        let achieved = judged.achieved();
        let block = judged.hashed.filter(|_| achieved.is_some()).filter(|h| h.block);
        let unix_now = unix_now();
        let day = self.stats.workers.day_of(unix_now as u64);
        let check = Checked { verdict, difficulty: judged.difficulty, achieved, block: block.is_some(), day };
        let deferred = if self.stats.workers.has_series(worker) {
            self.stats.workers.checked(worker, &check, now);
            None
        } else {
            Some(check)
        };
        if let Some(h) = block {
            let worker = display_login(worker);
            let hash = target::display_hex(&h.hash);
            log::error!(
                "BLOCK FOUND by worker {} (miner {}): block hash {hash}, share difficulty {:.0}",
                crate::web::page::short_login(&worker),
                self.peer,
                achieved.unwrap_or(0.0)
            );
            self.stats.blocks_found.inc();
            *self.stats.last_block.borrow_mut() = Some((worker.clone(), hash.clone(), unix_now));
            let at_ms = (unix_now * 1000.0) as u64;
            self.stats.record(Event::Block {
                login: worker,
                hash,
                difficulty: achieved.unwrap_or(0.0),
                pool: self.pool as u8,
                at_ms,
            });
        }
        deferred
    }

    /// Counts one share outcome, for the process and for the worker (see
    /// [`Session::worker`]).
    pub(super) fn count(
        &mut self,
        verdict: Verdict,
        login: &str,
        difficulty: f64,
        check: Option<CheckNote>,
        now: Instant,
    ) {
        let worker = display_login(self.worker(login));
        let outcome = match verdict {
            Verdict::Accepted => ShareOutcome::Accepted(difficulty),
            Verdict::Rejected(code) => ShareOutcome::Rejected(code),
            Verdict::Stale => ShareOutcome::Stale,
            Verdict::Disputed(_) => ShareOutcome::Disputed,
        };
        let unix_now = unix_now();
        self.stats.workers.record(&worker, outcome, now, unix_now);
        let kept = match outcome {
            ShareOutcome::Accepted(d) => Outcome::Accepted(d),
            ShareOutcome::Rejected(code) => {
                Outcome::Rejected(Reason::ALL.iter().position(|r| *r == Reason::of(code)).unwrap_or(4) as u8)
            }
            ShareOutcome::Stale => Outcome::Stale,
            ShareOutcome::Disputed => Outcome::Disputed,
        };
        match verdict {
            Verdict::Accepted => {
                self.stats.shares_accepted.inc();
                self.tally.accepted += 1;
            }
            Verdict::Rejected(code) => {
                self.stats.shares_rejected.inc();
                if code == DUPLICATE {
                    self.stats.shares_duplicate.inc();
                }
                self.tally.rejected += 1;
            }
            Verdict::Stale => {
                self.stats.shares_stale.inc();
                self.tally.stale += 1;
            }
            Verdict::Disputed(local) => {
                self.stats.shares_disputed.inc();
                self.tally.disputed += 1;
                if self.stats.workers.dispute_log_due(&worker, now) {
                    log::warn!(
                        "worker {} (miner {}): the pool accepted a share the proxy found {}; \
                         not booked (logged once an hour per worker)",
                        crate::web::page::short_login(&worker),
                        self.peer,
                        local.label()
                    );
                }
            }
        }
        // Last, so the login moves into the event instead of being copied.
        let at_ms = (unix_now * 1000.0) as u64;
        self.stats.record(Event::Share { login: worker, outcome: kept, check, pool: self.pool as u8, at_ms });
    }

    /// Handles one line from the pool (without its `\n`).
    pub fn on_pool_line(
        &mut self,
        line: &[u8],
        up: &mut Upstream,
        now: Instant,
        out: &mut Outbox,
    ) -> Result<Flow, SessionError> {
        let Some(line) = significant(line) else {
            return Ok(Flow::Continue);
        };
        self.stats.traffic(Peer::Pool).messages_received.inc();
        if !is_text(line) {
            return Err(SessionError::PoolGarbage);
        }
        let env = Envelope::parse(line).map_err(SessionError::PoolJson)?;
        if env.is_response() {
            // Only the request sent under this id can take this answer.
            let Some(pending) = env.id().and_then(|id| up.answer(id)) else {
                self.stats.answers_unmatched.inc();
                log::debug!("miner {}: pool answered an id the proxy never sent; dropped", self.peer);
                return Ok(Flow::Continue);
            };
            return Ok(self.on_answer(&env, pending, up, now, out));
        }
        if self.reconnecting {
            // Only answers to what is in flight still reach the miner.
            return Ok(Flow::Continue);
        }
        let params = env.params().unwrap_or(b"[]");
        match env.method() {
            Some("mining.notify") => {
                let job_id = items(params).next().and_then(|(_, v)| stratum::plain_str(v));
                let clean = items(params).last().and_then(|(_, v)| stratum::boolean(v));
                if let Some(job_id) = job_id {
                    self.stats.jobs_received.inc();
                    let template = self
                        .rules
                        .templates
                        .get(params)
                        .inspect_err(|e| {
                            self.stats.pool_bad_jobs.inc();
                            log::warn!("miner {}: pool job {job_id:?} cannot be checked: {e}", self.peer);
                        })
                        .ok();
                    up.on_notify(job_id, clean.unwrap_or(false), template, now);
                }
                self.pass_job(line, up.has_difficulty(), out);
                return Ok(Flow::Continue);
            }
            Some("mining.set_difficulty") => {
                let first = items(params).next().and_then(|(_, v)| stratum::number(v));
                match first {
                    Some(d) if d.is_finite() && d > 0.0 => up.set_difficulty(d),
                    // 0, negative, 1e999 or not a number: no share is worth
                    // that, and the miner must not be told it.
                    _ => {
                        self.stats.pool_bad_difficulty.inc();
                        log::warn!("miner {}: pool sent an unusable difficulty; ignored", self.peer);
                        return Ok(Flow::Continue);
                    }
                }
            }
            Some("mining.set_extranonce") => {
                let mut it = items(params).map(|(_, v)| v);
                let en1 = it.next().and_then(stratum::plain_str);
                let size = it.next().and_then(stratum::typed::<u32>);
                if let (Some(en1), Some(size)) = (en1, size) {
                    up.set_extranonce(en1, size);
                    self.miner_extranonce = up.extranonce_shared();
                }
            }
            Some("mining.set_version_mask") => return Ok(self.on_set_version_mask(&env, up, out)),
            Some("client.reconnect") => {
                // [host, port, wait seconds]: with a wait, the pool's
                // connection closes now and reopens after it (bounded); the
                // miner's stays, answered by the proxy meanwhile.
                // A number or a numeric string, whole seconds rounded up.
                let wait = items(params).nth(2).and_then(|(_, v)| {
                    stratum::number(v).or_else(|| stratum::plain_str(v)?.trim().parse::<f64>().ok())
                });
                if let Some(wait) = wait.filter(|w| w.is_finite() && *w > 0.0) {
                    self.reconnect_wait = wait.ceil().min(f64::from(u32::MAX)) as u32;
                    return Ok(Flow::ReconnectLater);
                }
                // Never send the miner elsewhere: it reconnects to the proxy,
                // which opens a fresh connection to the configured pool.
                log::info!("pool asked miner {} to reconnect; closing the session", self.peer);
                out.to_miner.extend_from_slice(b"{\"id\":");
                out.to_miner.extend_from_slice(env.id().unwrap_or(b"null"));
                out.to_miner.extend_from_slice(b",\"method\":\"client.reconnect\",\"params\":[]}\n");
                self.reconnecting = true;
                self.offline = true;
                return Ok(Flow::Reconnect);
            }
            _ => {}
        }
        forward(&mut out.to_miner, line);
        Ok(Flow::Continue)
    }

    fn on_answer(
        &mut self,
        env: &Envelope<'_>,
        pending: Pending,
        up: &mut Upstream,
        now: Instant,
        out: &mut Outbox,
    ) -> Flow {
        let miner_id = pending.miner_id.as_ref();
        let ok = stratum::error_code(env.error()).is_none()
            && env.result().and_then(stratum::boolean) == Some(true);
        match pending.request {
            Request::Subscribe => {
                let mut it = env.result().map(items).into_iter().flatten().skip(1);
                let en1 = it.next().and_then(|(_, v)| stratum::plain_str(v));
                let size = it.next().and_then(|(_, v)| stratum::typed::<u32>(v));
                if let (Some(en1), Some(size)) = (en1, size) {
                    up.set_extranonce(en1, size);
                }
                if miner_id.is_some() {
                    self.miner_extranonce = up.extranonce_shared();
                } else if self.subscribing() && !self.rejoined(up, out) {
                    return Flow::Reconnect;
                }
            }
            Request::Authorize { login } => {
                self.authorized_here |= ok;
                self.refused_here |= !ok;
                if ok {
                    log::info!("miner {} authorized as {}", self.peer, crate::web::page::short_login(&login));
                    if let Ok(name) = self.upstream_login(&login) {
                        let name = name.as_deref().map_or(&*login, |q| q.trim_matches('"'));
                        self.rules.pools.get(self.pool).remember_login(name, self.miner_password.as_deref());
                    }
                    // A handful per connection at most: farm proxies and
                    // multi-worker rigs; beyond that the last one stands in.
                    if self.authorized.len() < self.rules.max_logins && !self.authorized.contains(&login) {
                        super::push_login(&mut self.authorized, &login);
                    }
                    let at = unix_now() as u64;
                    self.stats.record(Event::WorkerSeen {
                        login: login.to_string(),
                        address: self.peer.to_string(),
                        agent: self.agent.as_deref().unwrap_or("").to_string(),
                        pool: self.pool as u8,
                        at,
                    });
                    self.login = Some(login);
                } else {
                    self.stats.auth_failures.inc();
                    log::warn!(
                        "miner {} authorization refused for {}",
                        self.peer,
                        crate::web::page::short_login(&login)
                    );
                }
            }
            Request::Submit { stale, login, difficulty, checked, achieved, deferred } => {
                let verdict = match Verdict::of(stale, env.result(), env.error()) {
                    // The books count only shares both sides find valid.
                    Verdict::Accepted if checked != check::Verdict::Valid => Verdict::Disputed(checked),
                    verdict => verdict,
                };
                self.stats.submit_duration.observe(now.saturating_duration_since(pending.sent));
                let note = CheckNote { verdict: checked.index() as u8, difficulty, achieved };
                self.count(verdict, &login, difficulty, Some(note), now);
                if let Some(check) = deferred {
                    self.stats.workers.checked(self.worker(&login), &check, now);
                }
            }
            Request::Configure { miner_mask } => {
                self.on_configure_answer(env, miner_id, miner_mask, up, out);
                if miner_id.is_some() {
                    self.miner_granted = up.version_mask().filter(|_| self.rolling);
                } else if !self.regranted(up.version_mask().filter(|_| self.rolling), out) {
                    return Flow::Reconnect;
                }
                return Flow::Continue;
            }
            Request::Other => {}
        }
        answer_miner(out, env, miner_id, None);
        Flow::Continue
    }

    /// Gives the miner exactly the version rolling the pool granted, within
    /// the mask the miner asked for; `false` when the pool refused or failed.
    fn on_configure_answer(
        &mut self,
        env: &Envelope<'_>,
        miner_id: Option<&MinerId>,
        miner_mask: Option<u32>,
        up: &mut Upstream,
        out: &mut Outbox,
    ) -> Flow {
        let line = env.line();
        let Some(miner_mask) = miner_mask else {
            answer_miner(out, env, miner_id, None);
            return Flow::Continue;
        };
        let result = env.result().filter(|_| stratum::error_code(env.error()).is_none());
        let mut said = None;
        let mut mask_span = None;
        if let Some(result) = result {
            stratum::members(result, |key, span| match key {
                b"version-rolling" => said = result.get(span).and_then(stratum::boolean),
                b"version-rolling.mask" => mask_span = Some(span),
                _ => {}
            });
        }
        let pool_mask = result
            .zip(mask_span.clone())
            .and_then(|(r, span)| r.get(span))
            .and_then(stratum::plain_str)
            .and_then(stratum::hex_u32);
        match (said, pool_mask) {
            (Some(true), Some(pool_mask)) if pool_mask & miner_mask != 0 => {
                let mask = pool_mask & miner_mask;
                up.set_version_mask(Some(mask));
                self.rolling = true;
                if mask == pool_mask {
                    answer_miner(out, env, miner_id, None);
                } else {
                    // The pool granted bits the miner did not ask for: narrow them.
                    let base = result.map_or(0, |r| r.as_ptr() as usize - line.as_ptr() as usize);
                    let span = mask_span.unwrap_or(0..0);
                    let hex = format_mask(mask);
                    answer_miner(out, env, miner_id, Some((base + span.start..base + span.end, &hex)));
                }
            }
            // The pool said no in so many words: its answer (with any other
            // extensions it answered) goes through as it is.
            (Some(false), _) => {
                up.set_version_mask(None);
                self.rolling = false;
                answer_miner(out, env, miner_id, None);
            }
            // An error, no answer for version rolling, no mask, or nothing in
            // common with the miner's mask: the miner must not roll.
            _ => {
                up.set_version_mask(None);
                self.rolling = false;
                if let Some(id) = miner_id {
                    stratum::write_result(&mut out.to_miner, Some(id), br#"{"version-rolling":false}"#);
                }
            }
        }
        Flow::Continue
    }

    /// `mining.set_version_mask`: the miner gets the new mask narrowed to what
    /// it asked for, and nothing when it may not roll.
    fn on_set_version_mask(&mut self, env: &Envelope<'_>, up: &mut Upstream, out: &mut Outbox) -> Flow {
        let line = env.line();
        let first = env.param_items().next();
        let pool_mask = first.as_ref().and_then(|(_, v)| stratum::plain_str(v)).and_then(stratum::hex_u32);
        let (Some(pool_mask), Some(miner_mask), true) = (pool_mask, self.miner_mask, self.rolling) else {
            log::debug!("miner {}: set_version_mask dropped (no version rolling granted)", self.peer);
            return Flow::Continue;
        };
        let mask = pool_mask & miner_mask;
        up.set_version_mask(Some(mask));
        self.miner_granted = Some(mask);
        if mask == pool_mask {
            forward(&mut out.to_miner, line);
        } else if let Some((span, _)) = first {
            splice(&mut out.to_miner, line, &mut [(span, &format_mask(mask))]);
        }
        Flow::Continue
    }
}

/// `"xxxxxxxx"`: a version mask as a quoted 8-digit hex string.
pub(super) fn format_mask(mask: u32) -> [u8; 10] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'"'; 10];
    for (i, slot) in out[1..9].iter_mut().enumerate() {
        *slot = HEX[((mask >> (28 - 4 * i)) & 0xf) as usize];
    }
    out
}
