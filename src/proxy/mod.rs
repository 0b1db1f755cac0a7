//! The I/O around sessions: the Stratum listener and one task per miner that
//! moves bytes between the miner and its own pool connection.
//!
//! Each task waits for readiness, then reads, handles and writes without an
//! `.await` in between, so all tasks share one read buffer and one outbox.
//! Session logic lives in [`crate::session`]; nothing here interprets lines.
//!
//! Invariants: a `RefCell` borrow never lives across an `.await`; a miner's
//! connection counts are released on every exit path (a drop guard).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use smol::LocalExecutor;
use smol::channel::Receiver;

use crate::config::Config;
use crate::frame::{self, FrameError, Reader, Writer};
use crate::net;
use crate::pools::{Choice, Failover, Health, Loss, Pools, Target};
use crate::session::{Outbox, Rules, Session, SessionError};
use crate::stats::{Peer, Stats};
use crate::upstream::Upstream;
use crate::worker::Rewriter;

mod opening;
mod probe;
mod pump;

use pump::Link;

/// Bytes queued for a slow peer before the proxy stops reading what feeds it.
const MAX_QUEUED_BYTES: usize = 256 * 1024;
/// Time a closing session waits for the pool to answer shares in flight.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// A socket registered with the reactor.
type Socket = crate::rt::TcpStream;

/// Why a session ended normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    MinerClosed,
    PoolClosed,
    Reconnect,
    Shutdown,
    HandshakeTimeout,
    IdleTimeout,
    HttpAnswered,
    /// The miner opened with a TLS ClientHello.
    TlsProbe,
    /// The pool asked for a reconnect after a wait.
    ReconnectLater,
    /// A pool of higher priority is back: the session moves to it.
    SwitchBack,
    /// Without a pool, the pools' health changed: try again.
    PoolsChanged,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            End::MinerClosed => "miner closed the connection",
            End::PoolClosed => "pool closed the connection",
            End::Reconnect => "pool asked for a reconnect",
            End::Shutdown => "shutting down",
            End::HandshakeTimeout => "handshake timeout",
            End::IdleTimeout => "idle timeout",
            End::HttpAnswered => "HTTP request answered",
            End::TlsProbe => "tried TLS; this port speaks plain Stratum",
            End::ReconnectLater => "pool asked to reconnect later",
            End::SwitchBack => "moving to a pool of higher priority",
            End::PoolsChanged => "a pool may be back",
        })
    }
}

/// Why a session failed.
#[derive(Debug)]
enum Failure {
    Io(Peer, io::Error),
    TooLong(Peer, usize),
    Session(SessionError),
    /// No pool could be connected to (the last error).
    PoolUnreachable(String, io::Error),
    /// The pool sent no `mining.notify` for `pool.notify_timeout`.
    NoWork(Duration),
    /// The peer took none of the bytes queued for it for `server.write_timeout`.
    Stalled(Peer),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = |p: &Peer| if *p == Peer::Miner { "miner" } else { "pool" };
        match self {
            Failure::Io(p, e) => write!(f, "{} connection failed: {e}", side(p)),
            Failure::TooLong(p, n) => {
                write!(f, "{} sent a line of {n}+ bytes, over the limit", side(p))
            }
            Failure::Session(e) => e.fmt(f),
            Failure::PoolUnreachable(a, e) => write!(f, "pool {a} unreachable: {e}"),
            Failure::NoWork(d) => write!(f, "pool sent no work for {}s (pool.notify_timeout)", d.as_secs()),
            Failure::Stalled(p) => write!(f, "{} stopped reading (server.write_timeout)", side(p)),
        }
    }
}

fn frame_failure(peer: Peer) -> impl Fn(FrameError<SessionError>) -> Failure {
    move |e| match e {
        FrameError::TooLong { size } => Failure::TooLong(peer, size),
        FrameError::Io(e) => Failure::Io(peer, e),
        FrameError::Line(e) => Failure::Session(e),
    }
}

/// Buffers shared by every session on the thread.
struct Buffers {
    read: Vec<u8>,
    out: Outbox,
}

/// The state shared by the listener and every miner task.
pub struct Proxy {
    config: Config,
    rules: Rc<Rules>,
    stats: Rc<Stats>,
    buffers: RefCell<Buffers>,
    per_ip: RefCell<HashMap<IpAddr, usize>>,
    /// The pools sessions may use, and their health.
    pools: Rc<Pools>,
    /// One log line per minute for each kind of [`Refusal`].
    refusal_log: [net::Throttle; 3],
    /// Addresses whose TLS attempt was logged at info (the newest
    /// [`TLS_NOTED`]); later ones are logged at debug.
    tls_noted: RefCell<std::collections::VecDeque<IpAddr>>,
    /// Closed when the daemon stops, never sent on: the pump reads it from
    /// the closed flag alone.
    stopping: Receiver<()>,
}

/// Addresses remembered as having tried TLS, at most.
const TLS_NOTED: usize = 64;

/// How often a refusal of one kind is logged under a flood.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Why a connection is closed as soon as it is accepted.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// Its address is in no prefix of `server.allow`.
    NotAllowed,
    /// `server.max_connections` are open.
    Full(i64),
    /// `limiter.connections` are open from its address.
    PerAddress(usize),
}

impl Refusal {
    /// Its slot in `Proxy::refusal_log`.
    fn slot(self) -> usize {
        match self {
            Refusal::NotAllowed => 0,
            Refusal::Full(_) => 1,
            Refusal::PerAddress(_) => 2,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotAllowed => f.write_str("its address is not in server.allow"),
            Refusal::Full(n) => write!(f, "{n} connections open (server.max_connections)"),
            Refusal::PerAddress(n) => {
                write!(f, "{n} connections open from its address (limiter.connections)")
            }
        }
    }
}

/// Releases a connection's counts when its task ends, however it ends.
struct Admitted<'a> {
    proxy: &'a Proxy,
    ip: IpAddr,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.proxy.stats.connections_active.dec();
        let mut per_ip = self.proxy.per_ip.borrow_mut();
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// A pool connection, counted as live (for its pool and in all) while it is held.
pub(super) struct Attached<'a> {
    /// The socket.
    pub(super) socket: Socket,
    /// Which pool (an index into the proxy's pools).
    pub(super) index: usize,
    proxy: &'a Proxy,
}

impl Attached<'_> {
    /// The pool it is connected to.
    pub(super) fn target(&self) -> &Target {
        &self.proxy.pools.get(self.index).target
    }
}

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        self.proxy.stats.upstream_connected.dec();
        self.proxy.pools.get(self.index).connected.dec();
    }
}

impl Proxy {
    /// A proxy for `config`; sessions stop when `stopping` is closed.
    pub fn new(config: Config, stats: Rc<Stats>, stopping: Receiver<()>) -> Self {
        let pools = Rc::new(Pools::new(targets(&config), failover(&config), Instant::now()));
        let rules = Rules {
            pools: pools.clone(),
            max_logins: config.server.max_logins,
            reject_invalid: config.pool.reject_invalid,
            templates: Default::default(),
        };
        let max_line = config.server.max_line_bytes.max(config.pool.max_line_bytes);
        Proxy {
            rules: Rc::new(rules),
            stats,
            buffers: RefCell::new(Buffers { read: frame::read_buffer(max_line), out: Outbox::default() }),
            per_ip: RefCell::new(HashMap::new()),
            refusal_log: [const { net::Throttle::new(REFUSAL_LOG_INTERVAL) }; 3],
            tls_noted: RefCell::default(),
            pools,
            stopping,
            config,
        }
    }

    /// The pools sessions may use, and their health.
    pub fn pools(&self) -> &Rc<Pools> {
        &self.pools
    }

    /// Accepts miners until the listener fails; each gets its own task.
    pub async fn accept(
        self: Rc<Self>,
        listener: crate::rt::TcpListener,
        ex: Rc<LocalExecutor<'static>>,
    ) -> io::Result<()> {
        for index in 0..self.pools.entries().len() {
            ex.spawn(self.clone().watch(index)).detach();
        }
        loop {
            let (stream, peer) =
                net::next_connection(&listener, "miners", &self.stats.miner_accept_errors).await;
            if !self.admit(peer) {
                continue;
            }
            let proxy = self.clone();
            ex.spawn(async move { proxy.serve_miner(stream, peer).await }).detach();
        }
    }

    /// Checks `server.allow` and the connection limits; counts the
    /// connection in when it may stay. Refusals are counted each, logged at
    /// most once a minute per kind (a flood must not fill the journal).
    fn admit(&self, peer: SocketAddr) -> bool {
        let active = self.stats.connections_active.get();
        let from_ip = self.per_ip.borrow().get(&peer.ip()).copied().unwrap_or(0);
        let refusal = if !self.config.server.allows(peer.ip()) {
            self.stats.connections_not_allowed.inc();
            Some(Refusal::NotAllowed)
        } else if active >= self.config.server.max_connections as i64 {
            Some(Refusal::Full(active))
        } else if from_ip >= self.config.limiter.connections {
            Some(Refusal::PerAddress(from_ip))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.stats.connections_refused.inc();
            let throttle = &self.refusal_log[refusal.slot()];
            match throttle.pass(Instant::now()) {
                Some(0) => log::warn!("refusing miner {peer}: {refusal}"),
                Some(held) => log::warn!(
                    "refusing miner {peer}: {refusal} ({held} more refused for this reason since the last such line)"
                ),
                None => {}
            }
            return false;
        }
        self.stats.connections_active.inc();
        self.stats.connections_total.inc();
        *self.per_ip.borrow_mut().entry(peer.ip()).or_default() += 1;
        true
    }

    async fn serve_miner(self: Rc<Self>, miner: Socket, peer: SocketAddr) {
        let _admitted = Admitted { proxy: &self, ip: peer.ip() };
        let _ = miner.get_ref().set_nodelay(true);
        // Logged at info once the miner has spoken Stratum: a TLS probe or
        // an HTTP request is not news (see `run`).
        log::debug!("miner {peer} connected");
        let now = Instant::now();
        let mut session = Session::new(peer, self.rules.clone(), self.stats.clone(), now);
        let result = self.run(&miner, &mut session).await;
        let who = crate::web::page::short_login(session.login().unwrap_or("-"));
        let t = session.tally();
        let shares = format!("accepted {}, rejected {}, stale {}", t.accepted, t.rejected, t.stale);
        match result {
            Ok(end @ (End::HandshakeTimeout | End::IdleTimeout)) => {
                self.stats.connection_timeouts.inc();
                log::info!("miner {peer} disconnected ({who}): {end}; {shares}");
            }
            Ok(End::TlsProbe) => {
                let mut noted = self.tls_noted.borrow_mut();
                if noted.contains(&peer.ip()) {
                    log::debug!("miner {peer} tried TLS again");
                } else {
                    // Once per address: firmware that tries TLS on every
                    // connect is normal, not news.
                    log::info!("miner {peer} tried TLS; this port speaks plain Stratum");
                    if noted.len() == TLS_NOTED {
                        noted.pop_front();
                    }
                    noted.push_back(peer.ip());
                }
            }
            Ok(end) => log::info!("miner {peer} disconnected ({who}): {end}; {shares}"),
            Err(e) => {
                self.stats.connection_errors.inc();
                log::warn!("miner {peer} disconnected ({who}): {e}; {shares}");
            }
        }
    }

    /// Every await in here is boxed: a future is as large as its largest
    /// wait (and keeps a slot for each local that lived across one, even
    /// once moved out), and these (opening, dialling, the pump) are entered
    /// once per connection, so boxing costs an allocation per connection
    /// while every idle session's task keeps only the state it is waiting
    /// in: the [`Link`].
    async fn run(&self, miner: &Socket, session: &mut Session) -> Result<End, Failure> {
        let (mut link, mut first, handshake_deadline) = match Box::pin(self.open(miner, session)).await? {
            Ok(opened) => opened,
            Err(end) => return Ok(end),
        };
        let result = loop {
            let result = Box::pin(self.pump(
                &mut link,
                session,
                std::mem::take(&mut first),
                handshake_deadline,
                seed(session.peer()),
            ))
            .await;
            // The pool asked for a reconnect after a wait (and may have
            // closed or reset its side since): not its failure. A session
            // that can be kept waits without a pool; one that cannot (its
            // subscribe unanswered) ends, and its miner comes back.
            let asked =
                matches!(result, Ok(End::ReconnectLater | End::PoolClosed) | Err(Failure::Io(Peer::Pool, _)));
            if let Some(wait) = asked.then(|| session.take_reconnect_wait()).flatten() {
                if !session.keepable() || link.miner_gone || self.stopping.is_closed() {
                    break Ok(End::ReconnectLater);
                }
                if let Some(pool) = &link.pool {
                    let name = &self.pools.get(pool.index).target.name;
                    log::info!(
                        "miner {}: pool {name} asked to reconnect in {wait}; its connection reopens then",
                        session.peer()
                    );
                }
                self.detach(&mut link, session)?;
                // Spread as after any loss: the pool's miners do not all
                // come back in the same instant.
                let at = Instant::now()
                    + wait.honoured()
                    + crate::pools::spread(seed(session.peer()), pump::OFFLINE_SPREAD);
                (link.retry_at, link.not_before) = (Some(at), Some(at));
                continue;
            }
            let loss = loss_of(&result);
            // A pool that sends no work to (or closes) a session whose
            // logins it never authorized may only be refusing that miner's
            // login: not the pool's fault, and that session ends.
            let excused = matches!(loss, Some(Loss::NoWork | Loss::Closed)) && session.refused_only();
            let blamed = loss.filter(|_| !excused);
            if let (Some(loss), Some(pool)) = (blamed, &link.pool) {
                self.pools.failed(pool.index, loss, Instant::now(), Some(link.connected_at));
            }
            let moving = matches!(result, Ok(End::SwitchBack | End::PoolsChanged));
            if blamed.is_none() && !moving {
                break result;
            }
            if !session.keepable() || link.miner_gone || self.stopping.is_closed() {
                break result;
            }
            if matches!(result, Ok(End::SwitchBack)) {
                // Make before break: the pool in use stays until the better
                // one has answered the connect.
                let Some(target) = self.move_target(session) else { continue };
                match Box::pin(self.dial(target)).await {
                    Ok(pool) => {
                        if let Some(old) = &link.pool {
                            let (from, to) = (&self.pools.get(old.index).target.name, &pool.target().name);
                            log::info!("miner {}: moving from pool {from} back to pool {to}", session.peer());
                        }
                        self.detach(&mut link, session)?;
                        first = self.attach(&mut link, session, pool);
                    }
                    Err((loss, _)) => self.pools.failed(target, loss, Instant::now(), None),
                }
                continue;
            }
            if let Some(pool) = &link.pool {
                let name = &self.pools.get(pool.index).target.name;
                let why = match &result {
                    Err(e) => e.to_string(),
                    Ok(end) => end.to_string(),
                };
                log::info!("miner {}: pool {name}: {why}; finding another pool connection", session.peer());
                self.detach(&mut link, session)?;
            }
            first = Box::pin(self.reattach(&mut link, session)).await;
        };
        if link.pool.is_some() && loss_of(&result).is_some() {
            self.stats.upstream_lost.set(self.stats.upstream_lost.get() + 1);
        }
        for pending in link.up.drain_pending() {
            session.given_up(pending);
        }
        result
    }

    /// A new session up to its pool: the front door (HTTP, CONNECT, TLS
    /// probes), the miner's first request, the pool dialled; the link, the
    /// lines the pool gets first, and the handshake deadline. `Err(end)`
    /// when the session ended before it had a pool.
    async fn open<'a>(
        &'a self,
        miner: &'a Socket,
        session: &mut Session,
    ) -> Result<Result<(Link<'a>, Vec<u8>, Instant), End>, Failure> {
        let peer = session.peer();
        let cfg = &self.config;
        let started = Instant::now();
        let handshake_deadline = started + cfg.server.handshake_timeout.0;
        let mut miner_r = Reader::new(cfg.server.max_line_bytes);
        let (early, via_connect) = match self.front_door(miner, &mut miner_r, handshake_deadline).await? {
            Ok(front) => front,
            Err(end) => return Ok(Err(end)),
        };
        log::info!("miner {peer} connected");
        // A CONNECT asks for a pool by name: it gets its answer (200 or
        // 502) before any Stratum, and the session stays with that pool
        // when it can. Otherwise a pool is dialled only once the miner has
        // sent a valid request, so garbage costs no pool connection (a pool
        // may ban the gateway's address for those). Either way the pool is
        // chosen first: the miner's logins are rewritten for it.
        let index = match (via_connect, self.pools.pick()) {
            (Some(index), _) | (None, Choice::Use(index)) => Some(index),
            (None, Choice::Wait) => None,
        };
        let pool = match via_connect {
            Some(_) => Some(self.open_pool(miner, index, true).await?),
            None => None,
        };
        session.start_on(index.unwrap_or(0));
        if via_connect.is_some() {
            session.pin();
        }
        let mut up = Upstream::new(cfg.limiter.jobs.0);
        let mut miner_w = Writer::default();
        let first = self
            .first_request(miner, &mut miner_r, &mut miner_w, session, &mut up, early, handshake_deadline)
            .await;
        let mut first = match first {
            Ok(Ok(first)) => first,
            Ok(Err(end)) => return Ok(Err(end)),
            Err(e) => return Err(e),
        };
        let pool = match pool {
            Some(pool) => pool,
            None => self.open_new(miner, session, &mut up, &mut first, index).await?,
        };
        // The pool's time to answer starts now, not when the miner asked.
        up.restamp(Instant::now());
        log::debug!("miner {peer}: connected to pool {}", self.pools.get(pool.index).target.name);
        let link = Link {
            miner,
            pool: Some(pool),
            miner_r,
            pool_r: Reader::new(cfg.pool.max_line_bytes),
            miner_w,
            pool_w: Writer::default(),
            up,
            miner_gone: false,
            pool_gone: false,
            miner_waiting: None,
            pool_waiting: None,
            connected_at: Instant::now(),
            working: false,
            retry_at: None,
            not_before: None,
        };
        Ok(Ok((link, first, handshake_deadline)))
    }

    /// Connects a new session to pool `index`, or while that fails to the
    /// next best pool, with `first` (its first lines) rewritten for it.
    async fn open_new<'a>(
        &'a self,
        miner: &Socket,
        session: &mut Session,
        up: &mut Upstream,
        first: &mut Vec<u8>,
        mut index: Option<usize>,
    ) -> Result<Attached<'a>, Failure> {
        let mut tries = self.pools.entries().len() * 2;
        loop {
            // The handshake may have taken a while: the pool chosen then may
            // be down by now.
            if let (Some(i), Choice::Use(best)) = (index, self.pools.pick())
                && !self.pools.usable(i)
            {
                self.retarget(miner, session, up, first, best);
                index = Some(best);
            }
            let failure = match self.open_pool(miner, index, false).await {
                Ok(pool) => return Ok(pool),
                Err(failure) => failure,
            };
            tries -= 1;
            let next = match self.pools.pick() {
                Choice::Use(next) if tries > 0 && !self.stopping.is_closed() => next,
                _ => return Err(failure),
            };
            if next != session.pool() {
                self.retarget(miner, session, up, first, next);
            }
            index = Some(next);
        }
    }

    /// Rewrites a new session's first lines for pool `index`; logins that
    /// cannot be rewritten for it are answered to the miner.
    fn retarget(
        &self,
        miner: &Socket,
        session: &mut Session,
        up: &mut Upstream,
        first: &mut Vec<u8>,
        index: usize,
    ) {
        let mut to_miner = Vec::new();
        *first = session.retarget(index, first, up, &mut to_miner);
        if !to_miner.is_empty() {
            self.stats.miner.sent(&to_miner);
            opening::answer(miner, &to_miner);
        }
    }

    /// The pool a session should move to once it can: its own pool (a
    /// `CONNECT` named it) when that is up again, else a pool of higher
    /// priority that is up.
    fn move_target(&self, session: &Session) -> Option<usize> {
        match session.home() {
            Some(home) => {
                (home != session.pool() && self.pools.get(home).health() == Health::Up).then_some(home)
            }
            None => self.pools.better_than(session.pool()),
        }
    }

    /// Lets the pool connection go: what waits for its answer is answered
    /// to the miner as lost; the session answers for itself until the next.
    fn detach(&self, link: &mut Link<'_>, session: &mut Session) -> Result<(), Failure> {
        let mut bufs = self.buffers.borrow_mut();
        let out = &mut bufs.out;
        out.to_miner.clear();
        out.to_pool.clear();
        for pending in link.up.drain_pending() {
            session.lost(pending, out);
        }
        link.pool = None;
        link.pool_gone = true;
        link.pool_r = Reader::new(self.config.pool.max_line_bytes);
        link.pool_w = Writer::default();
        link.pool_waiting = None;
        link.up = link.up.successor(Instant::now());
        session.go_offline();
        self.flush(link, out, Instant::now())
    }

    /// Puts a new pool connection in place of none; returns what to send
    /// it to rejoin.
    fn attach<'a>(&'a self, link: &mut Link<'a>, session: &mut Session, pool: Attached<'a>) -> Vec<u8> {
        let now = Instant::now();
        let index = pool.index;
        self.pools.get(index).reconnects.inc();
        link.pool = Some(pool);
        link.pool_gone = false;
        link.connected_at = now;
        link.working = false;
        link.retry_at = None;
        // The miner was not written to while the pool was dialled.
        link.miner_waiting = link.miner_waiting.map(|_| now);
        link.up.restart_retired(now);
        let mut out = Outbox::default();
        session.rejoin(index, &mut link.up, now, &mut out);
        out.to_pool
    }

    /// Dials the best pool for a session without one (its own pool first,
    /// for a `CONNECT`), and returns what to send it to rejoin; nothing
    /// while no pool can be had (the session then waits, offline, for a
    /// change or `link.retry_at`).
    async fn reattach<'a>(&'a self, link: &mut Link<'a>, session: &mut Session) -> Vec<u8> {
        link.retry_at = None;
        link.not_before = None;
        for _ in 0..self.pools.entries().len() * 2 + 1 {
            if self.stopping.is_closed() {
                return Vec::new();
            }
            let home = session.home().filter(|&h| self.pools.usable(h));
            let index = match (home, self.pools.pick()) {
                (Some(index), _) | (None, Choice::Use(index)) => index,
                (None, Choice::Wait) => return Vec::new(),
            };
            match self.dial(index).await {
                Ok(pool) => return self.attach(link, session, pool),
                Err((loss, _)) => self.pools.failed(index, loss, Instant::now(), None),
            }
        }
        link.retry_at = Some(Instant::now() + crate::pools::FIRST_RETRY);
        Vec::new()
    }
}

/// What a session's end says about its pool, when it was the pool's doing.
fn loss_of(result: &Result<End, Failure>) -> Option<Loss> {
    match result {
        Ok(End::PoolClosed) | Err(Failure::Io(Peer::Pool, _)) => Some(Loss::Closed),
        Err(
            Failure::TooLong(Peer::Pool, _)
            | Failure::Session(SessionError::PoolGarbage | SessionError::PoolJson(_)),
        ) => Some(Loss::Garbage),
        Err(Failure::Stalled(Peer::Pool) | Failure::Session(SessionError::PoolStalled)) => {
            Some(Loss::Stalled)
        }
        Err(Failure::NoWork(_)) => Some(Loss::NoWork),
        _ => None,
    }
}

/// A number of the miner's own, to spread sessions' moves in time.
fn seed(peer: SocketAddr) -> u64 {
    let ip = match peer.ip() {
        IpAddr::V4(ip) => u64::from(u32::from(ip)),
        IpAddr::V6(ip) => u128::from(ip) as u64,
    };
    ip << 16 ^ u64::from(peer.port())
}

/// Every configured pool, the primary first.
fn targets(config: &Config) -> Vec<Target> {
    config
        .pools()
        .into_iter()
        .map(|p| Target {
            rewriter: Rewriter::new(&p.username.0, [&p.separator[0].0, &p.separator[1].0]),
            password: p.password.map(|p| p.0),
            name: p.name.0,
            address: p.address,
        })
        .collect()
}

/// The failover settings of `config`.
fn failover(config: &Config) -> Failover {
    let p = &config.pool;
    Failover {
        notify_timeout: p.notify_timeout.0,
        failover_after: p.failover_after,
        retry_max: p.retry_max.0,
        switch_back_after: p.switch_back_after.0,
    }
}
