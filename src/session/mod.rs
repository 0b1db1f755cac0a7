//! One miner's session: what each line from the miner or its pool means, what
//! to send where, and what to count.
//!
//! Pure logic: [`Session::on_miner_line`] and [`Session::on_pool_line`] take a
//! line and append what must be sent to an [`Outbox`]; they do no I/O. Every
//! line is forwarded (unknown methods included) except where the proxy must
//! answer itself: invalid JSON or params from the miner, a login that cannot
//! be rewritten, too many logins or requests in flight, and a pool that
//! refuses version rolling. Each request goes upstream under an id the proxy
//! issues ([`Upstream::track`]); the answer goes back to the miner under the
//! miner's own id, byte for byte.
//!
//! Invariants: each `mining.submit` forwarded is counted exactly once as
//! accepted, rejected, stale or unanswered, on the answer to its own proxy
//! id, so no id a miner picks can give it another request's verdict; every
//! answer the proxy writes itself counts as a bad line, so a miner that makes
//! the proxy talk is closed after [`MAX_BAD_LINES`].

use std::net::SocketAddr;
use std::ops::Range;
use std::rc::Rc;
use std::time::Instant;

use crate::stats::{Peer, Stats};
use crate::stratum::{self, Envelope, JsonError, items};
use crate::upstream::{Pending, Request, Upstream};

mod ids;
mod miner;
mod pool;
mod rejoin;
#[cfg(test)]
mod tests;
use crate::pools::Pools;
use crate::upstream::Extranonce;
use crate::upstream::Name;
use crate::worker::shown;

/// Invalid lines, and requests the proxy answered itself, tolerated from one
/// miner before its connection is closed.
pub const MAX_BAD_LINES: u32 = 16;

/// JSON-RPC code for a line that is not JSON.
pub const PARSE_ERROR: i32 = -32700;
/// JSON-RPC code for a JSON object that is not a request.
pub const INVALID_REQUEST: i32 = -32600;
/// JSON-RPC code for params of the wrong shape or type.
pub const INVALID_PARAMS: i32 = -32602;
/// Stratum code for a worker the pool will not know.
pub const UNAUTHORIZED: i32 = 24;
/// Stratum code for any other failure.
pub const OTHER: i32 = 20;
/// Stratum code for a share whose job is unknown.
pub const JOB_NOT_FOUND: i64 = 21;
/// Stratum code for a duplicate share.
pub const DUPLICATE: i64 = 22;
/// Stratum code for a share above the share target.
pub const LOW_DIFFICULTY: i32 = 23;

/// Miner methods whose params the proxy reads (and so checks).
const UNDERSTOOD: [&str; 5] = [
    "mining.subscribe",
    "mining.authorize",
    "mining.submit",
    "mining.configure",
    "mining.suggest_difficulty",
];

/// What the proxy does with miners' names, passwords and shares; one for
/// all sessions.
#[derive(Debug)]
pub struct Rules {
    /// The pools a session may use, each with its login rewrite and password.
    pub pools: Rc<Pools>,
    /// Distinct logins one connection may ask the pool to authorize.
    pub max_logins: usize,
    /// Answer shares the check finds certainly invalid instead of the pool.
    pub reject_invalid: bool,
    /// Parsed jobs, shared by the sessions their pool sent them to.
    pub templates: crate::check::Templates,
}

/// Bytes to send, appended by the session, drained by the I/O loop.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Lines for the miner.
    pub to_miner: Vec<u8>,
    /// Lines for the pool.
    pub to_pool: Vec<u8>,
}

/// What the I/O loop should do after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// Send what is queued, then close: the pool asked the miner to reconnect.
    Reconnect,
    /// The pool asked for a reconnect after a wait
    /// ([`Session::take_reconnect_wait`]): its connection closes, the
    /// miner's stays, and a new pool connection opens after the wait.
    ReconnectLater,
}

/// The longest `client.reconnect` wait honoured, in seconds: a pool asking
/// for more gets this (a miner without work for longer would be down).
pub const MAX_RECONNECT_WAIT_SECS: u64 = 300;

/// The wait a pool's `client.reconnect` asked for, in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectWait {
    /// Seconds asked (saturated).
    pub asked: u32,
}

impl ReconnectWait {
    /// The wait kept: what was asked, at most [`MAX_RECONNECT_WAIT_SECS`].
    pub fn honoured(self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.asked).min(MAX_RECONNECT_WAIT_SECS))
    }
}

impl core::fmt::Display for ReconnectWait {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match u64::from(self.asked) {
            asked if asked > MAX_RECONNECT_WAIT_SECS => {
                write!(f, "{MAX_RECONNECT_WAIT_SECS} s (it asked for {asked} s)")
            }
            asked => write!(f, "{asked} s"),
        }
    }
}

/// Why a session must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// The miner sent bytes that are not text.
    MinerGarbage,
    /// The miner sent too many invalid lines.
    TooManyBadLines,
    /// The pool sent bytes that are not text.
    PoolGarbage,
    /// The pool sent a line that is not a JSON object.
    PoolJson(JsonError),
    /// The pool left a request it must answer unanswered too long.
    PoolStalled,
}

impl core::fmt::Display for SessionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SessionError::MinerGarbage => f.write_str("miner sent binary data"),
            SessionError::TooManyBadLines => write!(f, "miner sent {MAX_BAD_LINES} invalid lines"),
            SessionError::PoolGarbage => f.write_str("pool sent binary data"),
            SessionError::PoolJson(e) => write!(f, "pool sent invalid JSON: {e}"),
            SessionError::PoolStalled => f.write_str("pool left a request unanswered (pool.answer_timeout)"),
        }
    }
}

impl std::error::Error for SessionError {}

/// Share outcomes of one session.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Accepted by the pool.
    pub accepted: u64,
    /// Rejected by the pool, stale ones excluded.
    pub rejected: u64,
    /// Submitted for an unknown or expired job.
    pub stale: u64,
    /// Accepted by the pool but found invalid by the proxy's check.
    pub disputed: u64,
}

/// Where a session is in moving to a new upstream connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rejoin {
    /// On its pool, nothing to redo.
    Settled,
    /// Subscribed again upstream; the pool's answer decides whether the
    /// miner gets a new extranonce or must reconnect. The pool's last job
    /// meanwhile waits here.
    Subscribing(Vec<u8>),
    /// The miner has its new extranonce: the next job goes to it as a clean one.
    Working,
}

/// One miner connection's state.
#[derive(Debug)]
pub struct Session {
    peer: SocketAddr,
    rules: Rc<Rules>,
    stats: Rc<Stats>,
    /// The login the pool authorized last.
    login: Option<Name>,
    /// Every login the pool authorized on this connection (farm proxies and
    /// multi-worker rigs authorize several).
    authorized: Vec<Name>,
    /// Every distinct login sent to the pool to authorize, at most
    /// `rules.max_logins` of them.
    asked: Vec<Name>,
    /// The last login met that is in neither list, so that its shares
    /// share one copy too.
    other_name: Option<Name>,
    agent: Option<Box<str>>,
    /// The password the miner authorized with last, to authorize again on
    /// a new connection when logins pass through.
    miner_password: Option<String>,
    /// The version mask the miner asked for in `mining.configure`.
    miner_mask: Option<u32>,
    /// Whether the miner was told it may roll version bits.
    rolling: bool,
    /// The pool asked for a reconnect: only answers still go to the miner.
    reconnecting: bool,
    /// Seconds the pool asked to wait before its connection is reopened
    /// (0: none asked).
    reconnect_wait: u32,
    /// The pool in use (an index into `rules.pools`).
    pool: usize,
    /// The pool a `CONNECT` named: the session goes back to it, and to no
    /// other pool of higher priority.
    home: Option<usize>,
    /// The params of the miner's last `mining.suggest_difficulty`, to
    /// suggest it again to a new pool.
    suggested: Option<Box<[u8]>>,
    /// The extranonce the miner was last given, once it has one.
    miner_extranonce: Option<Rc<Extranonce>>,
    /// The version mask the miner was last given, when it may roll.
    miner_granted: Option<u32>,
    /// The miner sent `mining.extranonce.subscribe`: it takes a new
    /// extranonce without reconnecting.
    takes_extranonce: bool,
    /// Where the session is in moving to a new upstream connection.
    rejoin: Rejoin,
    /// No pool connection: requests are answered by the proxy.
    offline: bool,
    /// On this pool connection: a login was authorized, a login was refused.
    authorized_here: bool,
    refused_here: bool,
    subscribed: bool,
    authorize_sent: bool,
    bad_lines: u32,
    last_line: Instant,
    tally: Tally,
}

/// Adds a login to a session's list with room for just it: a connection
/// has one login or a handful, and the first push of a `Vec` would make room
/// for four.
fn push_login(list: &mut Vec<Name>, login: &Name) {
    list.reserve_exact(1);
    list.push(Name::clone(login));
}

/// The line without a trailing `\r`; `None` for a blank line, which is
/// skipped without a word (some firmware sends keep-alive newlines).
fn significant(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    (!line.iter().all(u8::is_ascii_whitespace)).then_some(line)
}

/// Text is UTF-8 without control bytes other than tab.
fn is_text(line: &[u8]) -> bool {
    plain_ascii(line) || !line.iter().any(|&b| b < 0x20 && b != b'\t') && core::str::from_utf8(line).is_ok()
}

/// Every byte is from 0x20 to 0x7f (so text), checked eight at a time: the
/// common case of every Stratum line, which then skips the UTF-8 pass.
fn plain_ascii(line: &[u8]) -> bool {
    const LOW: u64 = 0x2020_2020_2020_2020;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut words = line.chunks_exact(8);
    for chunk in &mut words {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        // A byte under 0x20 borrows into its high bit (the classic "has a
        // byte less than n" test); a byte of 0x80 or more has it already.
        if (w.wrapping_sub(LOW) & !w | w) & HIGH != 0 {
            return false;
        }
    }
    words.remainder().iter().all(|&b| (0x20..0x80).contains(&b))
}

/// Appends `line` with the byte ranges in `edits` (disjoint, in any order)
/// replaced.
fn splice(out: &mut Vec<u8>, line: &[u8], edits: &mut [(Range<usize>, &[u8])]) {
    edits.sort_unstable_by_key(|(range, _)| range.start);
    let mut at = 0;
    for (range, with) in edits.iter() {
        out.extend_from_slice(line.get(at..range.start).unwrap_or_default());
        out.extend_from_slice(with);
        at = range.end;
    }
    out.extend_from_slice(line.get(at..).unwrap_or_default());
    out.push(b'\n');
}

fn forward(out: &mut Vec<u8>, line: &[u8]) {
    out.extend_from_slice(line);
    out.push(b'\n');
}

/// A JSON string of a name or password the proxy sends upstream.
type Quoted = heapless::String<{ crate::worker::MAX_UPSTREAM_NAME + 2 }>;

/// `"text"` for a text that needs no escaping; `None` when it is longer than
/// the longest upstream name.
fn quoted(text: &str) -> Option<Quoted> {
    let mut q = Quoted::new();
    q.push('"').and(q.push_str(text)).and(q.push('"')).ok()?;
    Some(q)
}

impl Session {
    /// A session for a miner connected from `peer`.
    pub fn new(peer: SocketAddr, rules: Rc<Rules>, stats: Rc<Stats>, now: Instant) -> Self {
        Session {
            peer,
            rules,
            stats,
            login: None,
            authorized: Vec::new(),
            asked: Vec::new(),
            other_name: None,
            agent: None,
            miner_password: None,
            miner_mask: None,
            rolling: false,
            reconnecting: false,
            reconnect_wait: 0,
            pool: 0,
            home: None,
            suggested: None,
            miner_extranonce: None,
            miner_granted: None,
            takes_extranonce: false,
            rejoin: Rejoin::Settled,
            offline: false,
            authorized_here: false,
            refused_here: false,
            subscribed: false,
            authorize_sent: false,
            bad_lines: 0,
            last_line: now,
            tally: Tally::default(),
        }
    }

    /// The miner's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The login the pool authorized, if any.
    pub fn login(&self) -> Option<&str> {
        self.login.as_deref()
    }

    /// `login` in display form, as the session's own copy when it has one:
    /// a login it asked the pool to authorize, or the one other login it
    /// met last (firmware that submits under another spelling). So the
    /// shares of a login allocate nothing; a login that is not printable
    /// ASCII is filtered into a stack copy first.
    fn name(&mut self, login: &str) -> Name {
        let wanted = shown(login);
        let wanted = &*wanted;
        let known = self.authorized.iter().chain(&self.asked).chain(&self.login).chain(&self.other_name);
        if let Some(n) = known.into_iter().find(|n| &***n == wanted) {
            return Name::clone(n);
        }
        let name = Name::from(wanted);
        self.other_name = Some(Name::clone(&name));
        name
    }

    /// Share outcomes so far.
    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// Whether the miner has sent both subscribe and authorize.
    pub fn handshake_done(&self) -> bool {
        self.subscribed && self.authorize_sent
    }

    /// When the miner last sent a line.
    pub fn last_line(&self) -> Instant {
        self.last_line
    }

    /// The wait a pool's `client.reconnect` asked for, once.
    pub fn take_reconnect_wait(&mut self) -> Option<ReconnectWait> {
        let asked = std::mem::take(&mut self.reconnect_wait);
        (asked > 0).then_some(ReconnectWait { asked })
    }

    /// Handles one line from the miner (without its `\n`).
    pub fn on_miner_line(
        &mut self,
        line: &[u8],
        up: &mut Upstream,
        now: Instant,
        out: &mut Outbox,
    ) -> Result<(), SessionError> {
        let Some(line) = significant(line) else {
            return Ok(());
        };
        self.last_line = now;
        let traffic = self.stats.traffic(Peer::Miner);
        traffic.messages_received.inc();
        if !is_text(line) {
            return Err(SessionError::MinerGarbage);
        }
        let env = match Envelope::parse(line) {
            Ok(env) => env,
            Err(_) => return self.refuse(out, None, PARSE_ERROR, "Parse error"),
        };
        let Some(method) = env.method() else {
            if env.is_response() {
                // The miner answers a pool request (mining.ping, client.get_version).
                forward(&mut out.to_pool, line);
                return Ok(());
            }
            return self.refuse(out, env.id(), INVALID_REQUEST, "Invalid request");
        };
        if self.offline {
            self.answer_offline(&env, now, out);
            return Ok(());
        }
        let params = env.params().unwrap_or(b"[]");
        let understood = UNDERSTOOD.contains(&method);
        if understood && env.params().is_some() && !params.starts_with(b"[") {
            return self.refuse(out, env.id(), INVALID_PARAMS, "Invalid params");
        }
        match method {
            "mining.subscribe" => {
                let agent = items(params).next().and_then(|(_, v)| stratum::text(v));
                self.agent = agent
                    .map(|a| a.chars().filter(|c| !c.is_control()).take(64).collect::<String>())
                    .filter(|a| a.len() <= 64)
                    .map(String::into_boxed_str);
                self.subscribed |= self.send_upstream(&env, Request::Subscribe, &[], up, now, out)?;
            }
            "mining.authorize" => return self.authorize(&env, up, now, out),
            "mining.submit" => return self.submit(&env, up, now, out),
            "mining.configure" => {
                let Some(miner_mask) = requested_mask(params) else {
                    return self.refuse(out, env.id(), INVALID_PARAMS, "Invalid params");
                };
                if self.send_upstream(&env, Request::Configure { miner_mask }, &[], up, now, out)? {
                    self.miner_mask = miner_mask;
                }
            }
            "mining.suggest_difficulty" => {
                let first = items(params).next().map(|(_, v)| v);
                let numeric = first.is_some_and(|v| {
                    stratum::number(v).is_some()
                        || stratum::plain_str(v).is_some_and(|s| s.parse::<f64>().is_ok())
                });
                if !numeric {
                    return self.refuse(out, env.id(), INVALID_PARAMS, "Invalid params");
                }
                self.suggested = (params.len() <= 64).then(|| params.into());
                self.send_upstream(&env, Request::Other, &[], up, now, out)?;
            }
            "mining.extranonce.subscribe" => {
                self.takes_extranonce = true;
                self.send_upstream(&env, Request::Other, &[], up, now, out)?;
            }
            _ => {
                self.send_upstream(&env, Request::Other, &[], up, now, out)?;
            }
        }
        Ok(())
    }

    /// Gives up on a request that will never be answered: counts a share as
    /// unanswered and tells the miner, when it asked with an id.
    pub fn abandon(&self, pending: Pending, out: &mut Outbox) {
        if let Request::Submit { .. } = pending.request
            && let Some(id) = pending.miner_id.as_deref()
        {
            stratum::write_error(&mut out.to_miner, Some(id), OTHER, "Pool did not answer");
        }
        self.given_up(pending);
    }

    /// Answers a request whose pool connection is gone: a share as
    /// unanswered, anything else the miner asked with an error.
    pub fn lost(&self, pending: Pending, out: &mut Outbox) {
        if !matches!(pending.request, Request::Submit { .. })
            && let Some(id) = pending.miner_id.as_deref()
        {
            stratum::write_error(&mut out.to_miner, Some(id), OTHER, "Pool connection lost");
        }
        self.abandon(pending, out);
    }

    /// Counts a request whose answer will never be matched.
    pub fn given_up(&self, pending: Pending) {
        if let Request::Submit { login, deferred, .. } = pending.request {
            self.stats.shares_unanswered.inc();
            if let Some(check) = deferred {
                self.stats.workers.checked(self.worker(&login), &check, pending.sent);
            }
        }
    }

    /// Answers the miner with an error for a line that is not valid Stratum,
    /// and counts it.
    fn refuse(
        &mut self,
        out: &mut Outbox,
        id: Option<&[u8]>,
        code: i32,
        message: &str,
    ) -> Result<(), SessionError> {
        self.stats.parse_errors.inc();
        self.answer_locally(out, id, code, message)
    }

    /// Answers a request with an error instead of the pool, and counts it as
    /// a bad line: a miner cannot make the proxy write without end.
    fn answer_locally(
        &mut self,
        out: &mut Outbox,
        id: Option<&[u8]>,
        code: i32,
        message: &str,
    ) -> Result<(), SessionError> {
        self.stats.requests_refused.inc();
        self.bad_lines += 1;
        stratum::write_error(&mut out.to_miner, id, code, message);
        if self.bad_lines >= MAX_BAD_LINES {
            return Err(SessionError::TooManyBadLines);
        }
        Ok(())
    }
}

/// How the pool judged one share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted.
    Accepted,
    /// Rejected with this Stratum error code.
    Rejected(i64),
    /// Submitted for an unknown or expired job, or rejected as such.
    Stale,
    /// Accepted by the pool, but the proxy's check found the share invalid
    /// (with this verdict): it is not booked.
    Disputed(crate::check::Verdict),
}

impl Verdict {
    /// Judges an answer to a submit: `stale` says whether the job was already
    /// unknown or expired when the share was submitted.
    pub fn of(stale: bool, result: Option<&[u8]>, error: Option<&[u8]>) -> Verdict {
        let code = stratum::error_code(error);
        let accepted = code.is_none() && result.and_then(stratum::boolean) == Some(true);
        match (accepted, code) {
            (true, _) => Verdict::Accepted,
            (false, Some(JOB_NOT_FOUND)) => Verdict::Stale,
            (false, _) if stale => Verdict::Stale,
            (false, code) => Verdict::Rejected(code.unwrap_or(20)),
        }
    }
}

/// The version mask a `mining.configure` asks for: `Some(None)` when it does
/// not ask for version rolling, `None` when its params are malformed.
fn requested_mask(params: &[u8]) -> Option<Option<u32>> {
    let mut it = items(params);
    let (_, extensions) = it.next()?;
    if !extensions.starts_with(b"[") {
        return None;
    }
    let wants = items(extensions).any(|(_, e)| stratum::plain_str(e) == Some("version-rolling"));
    if !wants {
        return Some(None);
    }
    let mut mask = None;
    if let Some((_, options)) = it.next() {
        stratum::members(options, |key, span| {
            if key == b"version-rolling.mask" {
                mask = options.get(span).and_then(stratum::plain_str).and_then(stratum::hex_u32);
            }
        });
    }
    // A miner that asks without a mask takes whatever the pool grants.
    Some(Some(mask.unwrap_or(u32::MAX)))
}
