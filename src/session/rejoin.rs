//! A session that outlives its pool connection: what the proxy says to a new
//! upstream on the miner's behalf, and what the miner is told so that it
//! mines the new pool's work without reconnecting.
//!
//! The order, on a new connection (the same pool again, or another one):
//! 1. upstream, under the proxy's own ids and answered to nobody:
//!    `mining.configure` (when the miner rolls version bits),
//!    `mining.subscribe`, `mining.extranonce.subscribe` (when the miner sent
//!    it), `mining.authorize` for each login, rewritten for that pool, and
//!    the miner's last `mining.suggest_difficulty`;
//! 2. on the subscribe answer, the miner gets `mining.set_extranonce` when it
//!    subscribed to extranonce changes, or else `client.reconnect` (with no
//!    host: back to the gateway itself, never to a pool);
//! 3. the pool's difficulty and jobs go to the miner as usual, the first job
//!    marked `clean_jobs` so the miner drops the old pool's work.
//!
//! Invariant: while there is no pool connection, and for jobs of a connection
//! that was replaced, the proxy answers shares itself as stale: no share is
//! dropped unanswered, and none goes to a pool that did not send its job.

use std::time::Instant;

use super::{Outbox, Rejoin, Session, forward, splice};
use crate::stratum::{self, Envelope, items};
use crate::upstream::Name;
use crate::upstream::{Request, Upstream};

/// Stratum code of a share the proxy answers as stale itself.
const STALE: i32 = 21;

/// Appends `{"id":ID,"method":METHOD,"params":PARAMS}\n`.
fn push_request(out: &mut Vec<u8>, id: u64, method: &str, params: &[u8]) {
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(stratum::Decimal::unsigned(id).as_bytes());
    out.extend_from_slice(b",\"method\":\"");
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(b"\",\"params\":");
    out.extend_from_slice(params);
    out.extend_from_slice(b"}\n");
}

impl Session {
    /// The pool in use (an index into the rules' pools).
    pub fn pool(&self) -> usize {
        self.pool
    }

    /// Sets the pool a new session starts on.
    pub fn start_on(&mut self, pool: usize) {
        self.pool = pool;
    }

    /// Keeps the session with the pool it started on (a `CONNECT` named it).
    pub fn pin(&mut self) {
        self.home = Some(self.pool);
    }

    /// The pool a `CONNECT` named, if one did.
    pub fn home(&self) -> Option<usize> {
        self.home
    }

    /// Whether the pool, on this connection, refused a login of the miner
    /// and authorized none.
    pub fn refused_only(&self) -> bool {
        self.refused_here && !self.authorized_here
    }

    /// Whether the session can move to a new upstream connection: the miner
    /// has its extranonce (its handshake went through) and is not leaving.
    pub fn keepable(&self) -> bool {
        self.miner_extranonce.is_some() && !self.reconnecting
    }

    /// The pool connection is gone: until the next one, the proxy answers
    /// the miner's requests itself.
    pub fn go_offline(&mut self) {
        self.offline = true;
        self.rejoin = Rejoin::Settled;
    }

    /// Starts over on a new connection to pool `pool`: queues, under the
    /// proxy's own ids, what the miner's handshake asked of the old one.
    pub fn rejoin(&mut self, pool: usize, up: &mut Upstream, now: Instant, out: &mut Outbox) {
        self.pool = pool;
        self.offline = false;
        self.authorized_here = false;
        self.refused_here = false;
        let mut params = Vec::with_capacity(128);
        if let Some(mask) = self.miner_mask.filter(|_| self.miner_granted.is_some())
            && let Ok(id) = up.track(None, Request::Configure { miner_mask: Some(mask) }, now)
        {
            params.extend_from_slice(b"[[\"version-rolling\"],{\"version-rolling.mask\":\"");
            params.extend_from_slice(&super::pool::format_mask(mask)[1..9]);
            params.extend_from_slice(b"\",\"version-rolling.min-bit-count\":2}]");
            push_request(&mut out.to_pool, id, "mining.configure", &params);
        }
        if let Ok(id) = up.track(None, Request::Subscribe, now) {
            params.clear();
            params.push(b'[');
            if let Some(agent) = &self.agent {
                stratum::push_str(&mut params, agent);
            }
            params.push(b']');
            push_request(&mut out.to_pool, id, "mining.subscribe", &params);
        }
        if self.takes_extranonce
            && let Ok(id) = up.track(None, Request::Other, now)
        {
            push_request(&mut out.to_pool, id, "mining.extranonce.subscribe", b"[]");
        }
        let logins: Vec<Name> =
            if self.authorized.is_empty() { self.asked.clone() } else { self.authorized.clone() };
        for login in logins {
            let Some(params) = self.authorize_params(&login) else { continue };
            if let Ok(id) = up.track(None, Request::Authorize { login }, now) {
                push_request(&mut out.to_pool, id, "mining.authorize", &params);
            }
        }
        if let Some(suggested) = self.suggested.clone()
            && let Ok(id) = up.track(None, Request::Other, now)
        {
            push_request(&mut out.to_pool, id, "mining.suggest_difficulty", &suggested);
        }
        self.rejoin = Rejoin::Subscribing(Vec::new());
    }

    /// `[name, password]` to authorize `login` on the session's pool: the
    /// name rewritten for that pool, its password for a rewritten name,
    /// else the miner's own; `None` when the login cannot be rewritten.
    fn authorize_params(&self, login: &str) -> Option<Vec<u8>> {
        let name = self.upstream_login(login).ok()?;
        let mut params = Vec::with_capacity(96);
        params.push(b'[');
        match &name {
            Some(name) => params.extend_from_slice(name.as_bytes()),
            None => stratum::push_str(&mut params, login),
        }
        params.push(b',');
        match (name.as_ref().and(self.upstream_password()), &self.miner_password) {
            (Some(password), _) => params.extend_from_slice(password.as_bytes()),
            (None, Some(password)) => stratum::push_str(&mut params, password),
            (None, None) => params.extend_from_slice(b"\"x\""),
        }
        params.push(b']');
        Some(params)
    }

    /// A new session's first lines, `first`, made for another pool than
    /// the one they were written for (it could not be reached): each
    /// `mining.authorize` is written again for pool `pool`, under its
    /// proxy id; the other lines do not depend on the pool. A login that
    /// cannot be rewritten for that pool is answered with an error in
    /// `to_miner` and not sent.
    pub fn retarget(
        &mut self,
        pool: usize,
        first: &[u8],
        up: &mut Upstream,
        to_miner: &mut Vec<u8>,
    ) -> Vec<u8> {
        self.pool = pool;
        let mut out = Vec::with_capacity(first.len() + 64);
        for line in first.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let env = Envelope::parse(line).ok();
            let login = env.as_ref().filter(|e| e.method() == Some("mining.authorize")).and_then(|e| {
                let id = crate::upstream::parse_proxy_id(e.id()?)?;
                match up.pending_request(id)? {
                    Request::Authorize { login } => Some((id, login.clone())),
                    _ => None,
                }
            });
            let Some((id, login)) = login else {
                forward(&mut out, line);
                continue;
            };
            match self.authorize_params(&login) {
                Some(params) => push_request(&mut out, id, "mining.authorize", &params),
                None => {
                    let answered = up.answer(stratum::Decimal::unsigned(id).as_bytes());
                    if let Some(miner_id) = answered.and_then(|p| p.miner_id) {
                        stratum::write_error(
                            to_miner,
                            Some(&miner_id),
                            super::UNAUTHORIZED,
                            "Invalid worker name",
                        );
                    }
                }
            }
        }
        out
    }

    /// The new upstream answered the proxy's subscribe: the miner gets the
    /// new extranonce, or is asked to reconnect when it cannot take one.
    /// Returns whether the session goes on.
    pub(super) fn rejoined(&mut self, up: &Upstream, out: &mut Outbox) -> bool {
        let Rejoin::Subscribing(held) = std::mem::replace(&mut self.rejoin, Rejoin::Working) else {
            return true;
        };
        let Some(new) = up.extranonce_shared() else {
            // The pool refused the subscribe: the miner must start over.
            return self.send_back(out);
        };
        if self.miner_extranonce.as_ref() != Some(&new) {
            if !self.takes_extranonce {
                return self.send_back(out);
            }
            out.to_miner
                .extend_from_slice(b"{\"id\":null,\"method\":\"mining.set_extranonce\",\"params\":[\"");
            out.to_miner.extend_from_slice(new.extranonce1.as_bytes());
            out.to_miner.extend_from_slice(b"\",");
            out.to_miner
                .extend_from_slice(stratum::Decimal::unsigned(new.extranonce2_size.into()).as_bytes());
            out.to_miner.extend_from_slice(b"]}\n");
            self.miner_extranonce = Some(new);
        }
        if !held.is_empty() {
            self.pass_job(&held, up.has_difficulty(), out);
        }
        true
    }

    /// The new upstream changed the version mask: the miner gets the new
    /// one, or is asked to reconnect when it may no longer roll.
    pub(super) fn regranted(&mut self, mask: Option<u32>, out: &mut Outbox) -> bool {
        if self.miner_granted == mask {
            return true;
        }
        let Some(mask) = mask else {
            return self.send_back(out);
        };
        self.miner_granted = Some(mask);
        out.to_miner.extend_from_slice(b"{\"id\":null,\"method\":\"mining.set_version_mask\",\"params\":[");
        out.to_miner.extend_from_slice(&super::pool::format_mask(mask));
        out.to_miner.extend_from_slice(b"]}\n");
        true
    }

    /// Asks the miner to reconnect to the gateway (no host: the address it
    /// connected to); only answers still reach it.
    fn send_back(&mut self, out: &mut Outbox) -> bool {
        log::info!("miner {}: cannot take the new pool's extranonce; asked to reconnect", self.peer);
        out.to_miner.extend_from_slice(b"{\"id\":null,\"method\":\"client.reconnect\",\"params\":[]}\n");
        self.reconnecting = true;
        self.offline = true;
        self.rejoin = Rejoin::Settled;
        false
    }

    /// A `mining.notify` from the pool: held until the miner has the new
    /// extranonce, and marked clean when it is the new pool's first job.
    /// A new pool that set no difficulty before its first job works at 1
    /// (Stratum's default): the miner is told so, or it would go on at the
    /// old pool's.
    pub(super) fn pass_job(&mut self, line: &[u8], difficulty_set: bool, out: &mut Outbox) {
        match &mut self.rejoin {
            Rejoin::Settled => forward(&mut out.to_miner, line),
            Rejoin::Subscribing(held) => {
                held.clear();
                held.extend_from_slice(line);
            }
            Rejoin::Working => {
                self.rejoin = Rejoin::Settled;
                if !difficulty_set {
                    out.to_miner.extend_from_slice(
                        b"{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[1]}\n",
                    );
                }
                let Ok(env) = Envelope::parse(line) else { return };
                let clean = env.param_items().last();
                match clean {
                    Some((span, v)) if v != b"true" => {
                        splice(&mut out.to_miner, line, &mut [(span, b"true")])
                    }
                    _ => forward(&mut out.to_miner, line),
                }
            }
        }
    }

    /// Whether the session waits for the new upstream's subscribe answer.
    pub(super) fn subscribing(&self) -> bool {
        matches!(self.rejoin, Rejoin::Subscribing(_))
    }

    /// Answers a request while there is no pool connection: a share is
    /// stale (its job's pool is gone), anything else gets an error. Not a
    /// bad line: the miner did nothing wrong.
    pub(super) fn answer_offline(&mut self, env: &Envelope<'_>, now: Instant, out: &mut Outbox) {
        if env.method() == Some("mining.submit") {
            let login = items(env.params().unwrap_or(b"[]")).next().and_then(|(_, v)| stratum::text(v));
            let login = crate::worker::display_login(login.as_deref().unwrap_or(""));
            self.answer_stale(env, &login, 0.0, now, out);
            return;
        }
        if env.has_id() {
            stratum::write_error(&mut out.to_miner, env.id(), super::OTHER, "No pool connection");
        }
    }

    /// Answers a share as stale and books it so.
    pub(super) fn answer_stale(
        &mut self,
        env: &Envelope<'_>,
        login: &str,
        difficulty: f64,
        now: Instant,
        out: &mut Outbox,
    ) {
        self.stats.shares_submitted.inc();
        self.count(super::Verdict::Stale, login, difficulty, None, now);
        stratum::write_error(&mut out.to_miner, env.id(), STALE, "Stale share: job from a previous pool");
    }
}
