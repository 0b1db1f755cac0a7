//! The miner's requests the proxy rewrites or books: `mining.authorize` and
//! `mining.submit`, and the login rewrite both share.

use std::ops::Range;
use std::time::Instant;

use super::{
    DUPLICATE, INVALID_PARAMS, LOW_DIFFICULTY, OTHER, Outbox, Quoted, Session, SessionError, UNAUTHORIZED,
    Verdict, quoted,
};
use crate::check::{self, Share};
use crate::store::CheckNote;
use crate::stratum::{self, Envelope};
use crate::upstream::{JobState, Name, Request, Upstream};

impl Session {
    /// The login as the pool must see it: `Ok(None)` when logins pass
    /// through, `Err(())` when it cannot be rewritten.
    pub(super) fn upstream_login(&self, login: &str) -> Result<Option<Quoted>, ()> {
        match self.rules.pools.get(self.pool).target.rewriter.upstream(login) {
            None => Ok(None),
            // Cannot be None: upstream names fit the quoted capacity.
            Some(Ok(name)) => quoted(&name).map(Some).ok_or(()),
            Some(Err(_)) => Err(()),
        }
    }

    /// The configured password as a JSON string, when one replaces the miner's.
    pub(super) fn upstream_password(&self) -> Option<Quoted> {
        self.rules.pools.get(self.pool).target.password.as_deref().and_then(quoted)
    }

    pub(super) fn authorize(
        &mut self,
        env: &Envelope<'_>,
        up: &mut Upstream,
        now: Instant,
        out: &mut Outbox,
    ) -> Result<(), SessionError> {
        let mut it = env.param_items();
        let (first, second) = (it.next(), it.next());
        let Some((login_span, login)) = first.and_then(|(span, v)| Some((span, stratum::text(v)?))) else {
            return self.refuse(out, env.id(), INVALID_PARAMS, "Invalid params");
        };
        self.authorize_sent = true;
        self.miner_password =
            second.clone().and_then(|(_, v)| stratum::text(v)).map(|p| p.chars().take(256).collect());
        self.stats.auth_attempts.inc();
        let Ok(name) = self.upstream_login(&login) else {
            self.stats.auth_failures.inc();
            log::warn!("miner {} login {:?} has no usable user name", self.peer, login);
            return self.answer_locally(out, env.id(), UNAUTHORIZED, "Invalid worker name");
        };
        let login = self.name(&login);
        // Each login may add rows to the books: a connection gets a few.
        if !self.asked.contains(&login) {
            if self.asked.len() >= self.rules.max_logins {
                self.stats.auth_failures.inc();
                log::warn!(
                    "miner {} asked to authorize more than {} logins",
                    self.peer,
                    self.rules.max_logins
                );
                return self.answer_locally(
                    out,
                    env.id(),
                    UNAUTHORIZED,
                    "Too many workers on one connection",
                );
            }
            super::push_login(&mut self.asked, &login);
        }
        let password = name.as_ref().and(self.upstream_password());
        let mut edits: heapless::Vec<(Range<usize>, &[u8]), 2> = heapless::Vec::new();
        if let Some(name) = &name {
            let _ = edits.push((login_span, name.as_bytes()));
        }
        if let (Some((span, _)), Some(password)) = (second, &password) {
            let _ = edits.push((span, password.as_bytes()));
        }
        self.send_upstream(env, Request::Authorize { login }, &edits, up, now, out)?;
        Ok(())
    }

    pub(super) fn submit(
        &mut self,
        env: &Envelope<'_>,
        up: &mut Upstream,
        now: Instant,
        out: &mut Outbox,
    ) -> Result<(), SessionError> {
        let mut fields: heapless::Vec<(Range<usize>, &[u8]), 6> = heapless::Vec::new();
        for (span, value) in env.param_items() {
            if !value.starts_with(b"\"") || fields.push((span, value)).is_err() {
                return self.refuse(out, env.id(), INVALID_PARAMS, "Invalid params");
            }
        }
        let login = fields.first().and_then(|(span, v)| Some((span.clone(), stratum::text(v)?)));
        let (Some((login_span, login)), true) = (login, fields.len() >= 5) else {
            return self.refuse(out, env.id(), INVALID_PARAMS, "Invalid params");
        };
        // A job id with escapes is no job the pool sent: it counts as unknown.
        let job_id = fields.get(1).and_then(|&(_, v)| stratum::plain_str(v)).unwrap_or("");
        // A field with escapes is no hex: it makes the share malformed.
        let field = |i: usize| fields.get(i).map(|&(_, v)| stratum::plain_str(v).unwrap_or("\\"));
        let share = Share {
            extranonce2: field(2).unwrap_or(""),
            ntime: field(3).unwrap_or(""),
            nonce: field(4).unwrap_or(""),
            version_bits: field(5),
        };
        // The pool's name is made from the login as sent (as the authorize
        // made it); the books and logs get its display form.
        let upstream = self.upstream_login(&login);
        let login = self.name(&login);
        let Ok(name) = upstream else {
            self.stats.shares_submitted.inc();
            let difficulty = up.job_state(job_id, now).1;
            self.count(Verdict::Rejected(i64::from(UNAUTHORIZED)), &login, difficulty, None, now);
            return self.answer_locally(out, env.id(), UNAUTHORIZED, "Invalid worker name");
        };
        let judged = up.judge(job_id, &share, now);
        let (stale, difficulty) = (judged.state != JobState::Live, judged.difficulty);
        // A job of a connection that was replaced: its pool is not this one.
        if up.from_replaced(job_id, &judged, now) {
            self.answer_stale(env, &login, difficulty, now, out);
            return Ok(());
        }
        // An answer of the proxy's own must not overtake the pool's answer
        // to an earlier request under the same id (cpuminer sends every
        // share as id 4): then the share goes to the pool, which refuses it.
        let overtakes = env.id().filter(|_| env.has_id()).is_some_and(|id| up.awaits(id));
        if self.rules.reject_invalid
            && !overtakes
            && let Some((code, message)) = certainly_invalid(judged.verdict)
        {
            // Answered like the pool would, without counting as a bad line:
            // a failing hashboard must not get its miner disconnected.
            let deferred = self.checked(&login, &judged, now);
            self.stats.shares_submitted.inc();
            let note = CheckNote {
                verdict: judged.verdict.index() as u8,
                difficulty,
                achieved: judged.achieved().unwrap_or(0.0),
            };
            self.count(Verdict::Rejected(i64::from(code)), &login, difficulty, Some(note), now);
            if let Some(check) = deferred {
                self.stats.workers.checked(self.worker(&login), &check, now);
            }
            stratum::write_error(&mut out.to_miner, env.id(), code, message);
            return Ok(());
        }
        let mut edits: heapless::Vec<(Range<usize>, &[u8]), 1> = heapless::Vec::new();
        if let Some(name) = &name {
            let _ = edits.push((login_span, name.as_bytes()));
        }
        let request = Request::Submit {
            login: Name::clone(&login),
            stale,
            difficulty,
            checked: judged.verdict,
            achieved: judged.achieved().unwrap_or(0.0),
            deferred: None,
        };
        // A submit the proxy refused (id too long, too many in flight) was
        // answered with an error and is no share: it gets no verdict, and is
        // not remembered (the same share again is no duplicate).
        if self.send_upstream(env, request, &edits, up, now, out)? {
            up.remember(job_id, &judged);
            let deferred = self.checked(&login, &judged, now);
            up.defer_check(deferred);
            self.stats.shares_submitted.inc();
        }
        Ok(())
    }
}

/// The error a pool answers a share with that the check is certain of:
/// the share itself is wrong, whatever the pool's state.
fn certainly_invalid(verdict: check::Verdict) -> Option<(i32, &'static str)> {
    match verdict {
        check::Verdict::LowDifficulty => Some((LOW_DIFFICULTY, "Low difficulty share")),
        check::Verdict::Duplicate => Some((DUPLICATE as i32, "Duplicate share")),
        check::Verdict::BadVersion => Some((OTHER, "Invalid version bits")),
        check::Verdict::Valid | check::Verdict::Stale | check::Verdict::Malformed => None,
    }
}
