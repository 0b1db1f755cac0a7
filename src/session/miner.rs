//! The miner's requests the proxy rewrites or books: `mining.authorize` and
//! `mining.submit`, and the login rewrite both share.

use std::ops::Range;
use std::time::Instant;

use super::{INVALID_PARAMS, Outbox, Session, SessionError, UNAUTHORIZED, Verdict, forward, quoted, splice};
use crate::stratum::{self, Envelope};
use crate::upstream::{JobState, Request, Upstream};
use crate::worker::{NameError, display_login};

impl Session {
    /// Appends `line` with the login param (at `login_span`, reading `login`)
    /// rewritten, and the password (at `password`) replaced when configured.
    /// On a rewrite error the miner has been answered.
    fn rewrite_login(
        &self,
        env: &Envelope<'_>,
        login_span: Range<usize>,
        login: &str,
        password: Option<Range<usize>>,
        out: &mut Outbox,
    ) -> Result<(), NameError> {
        let line = env.line();
        let Some(upstream) = self.rules.rewriter.upstream(login) else {
            forward(&mut out.to_pool, line);
            return Ok(());
        };
        let name = match upstream {
            Ok(name) => quoted(&name),
            Err(e) => {
                stratum::write_error(&mut out.to_miner, env.id(), UNAUTHORIZED, "Invalid worker name");
                return Err(e);
            }
        };
        let mut pass = heapless::String::<130>::new();
        match (password, self.rules.password.as_deref()) {
            (Some(span), Some(p)) if pass.push('"').and(pass.push_str(p)).and(pass.push('"')).is_ok() => {
                splice(&mut out.to_pool, line, &[(login_span, name.as_bytes()), (span, pass.as_bytes())])
            }
            _ => splice(&mut out.to_pool, line, &[(login_span, name.as_bytes())]),
        }
        Ok(())
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
        self.stats.auth_attempts.inc();
        if self.rewrite_login(env, login_span, &login, second.map(|(span, _)| span), out).is_err() {
            self.stats.auth_failures.inc();
            log::warn!("miner {} login {:?} has no usable user name", self.peer, login);
            return Ok(());
        }
        let login = display_login(&login);
        self.track(env, Request::Authorize { login }, up, now);
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
        self.stats.shares_submitted.inc();
        let (state, difficulty) = up.job_state(job_id, now);
        let stale = state != JobState::Live;
        if self.rewrite_login(env, login_span, &login, None, out).is_err() {
            self.count(Verdict::Rejected(i64::from(UNAUTHORIZED)), &login, difficulty, now);
            return Ok(());
        }
        let request = Request::Submit { login: display_login(&login), stale, difficulty };
        if env.has_id() {
            self.track(env, request, up, now);
        } else {
            self.stats.shares_unanswered.inc();
        }
        Ok(())
    }
}
