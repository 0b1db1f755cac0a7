//! [`CheckingPool`]: a scripted Stratum V1 pool that checks every share for real.
//!
//! A pool can also misbehave on purpose, for failover tests: be killed
//! ([`CheckingPool::kill`]: its port refuses and every connection ends), come
//! back on the same port ([`CheckingPool::start_at`]), hang without sending
//! work ([`PoolOptions::send_work`], [`CheckingPool::pause_work`]) or answer
//! nothing at all ([`PoolOptions::silent`]). Each instance hands out its own
//! extranonce1 values, so a miner that changed pools can tell.

use super::share::{self, Job, ShareError, hex_decode, hex_encode, parse_u32_hex};
use super::{LineReader, ReadOutcome};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How the pool answers `mining.configure`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionRolling {
    /// Grant version rolling with `pool_mask & miner_mask`.
    Grant(u32),
    /// Grant this mask whatever the miner asked (public-pool grants
    /// `1fffe000` to every request).
    GrantAll(u32),
    /// Answer `{"version-rolling":false}`.
    Refuse,
    /// Answer error `[20,"Unknown method",null]`, like pools without BIP 310.
    Unknown,
}

/// Decides whether a `(login, password)` pair is authorized.
pub type LoginFilter = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// Behaviour of a [`CheckingPool`].
#[derive(Clone)]
pub struct PoolOptions {
    /// Extranonce2 size announced in the subscribe answer.
    pub extranonce2_size: usize,
    /// Difficulty sent after the first authorize of each connection.
    pub difficulty: f64,
    /// Answer to `mining.configure`.
    pub version_rolling: VersionRolling,
    /// Extra coinbase bytes (as padding outputs) appended to coinb2, to make
    /// big notify lines; the line grows by about twice this (hex).
    pub coinb2_extra_bytes: usize,
    /// Number of merkle branches in generated jobs.
    pub merkle_branches: usize,
    /// If set, logins for which it returns false are refused.
    pub authorize_filter: Option<LoginFilter>,
    /// Send set_difficulty + notify before the authorize answer (ckpool does).
    pub work_before_authorize_reply: bool,
    /// Answer `mining.suggest_difficulty` (when its id is not null).
    pub answer_suggest_difficulty: bool,
    /// Answer every `mining.suggest_difficulty` with an error that carries
    /// a null id (public-pool does so for one sent with a null id; the proxy
    /// never sends a null id, so this answers whatever id came).
    pub null_id_suggest_error: bool,
    /// Answer `mining.extranonce.subscribe` (public-pool never does).
    pub answer_extranonce_subscribe: bool,
    /// [`CheckingPool::set_difficulty_all`] also sends the current job again
    /// with `clean_jobs` (public-pool does on every difficulty change).
    pub clean_job_on_difficulty: bool,
    /// Answer `mining.submit`; `false` records submits and never answers
    /// them (a pool that stalled).
    pub answer_submits: bool,
    /// Network target of generated jobs (`nbits`, 8 hex digits).
    pub nbits: &'static str,
    /// Accept every submit without checking it (a lax or lying pool).
    pub accept_all: bool,
    /// Send `mining.notify` at all; `false` is a pool that answers
    /// subscribe, authorize and configure (and sends set_difficulty) but never
    /// sends work. [`CheckingPool::pause_work`] changes it at run time.
    pub send_work: bool,
    /// Accept connections and read (and record) lines, but never write a
    /// byte and never act on what was read: a pool that answers nothing.
    pub silent: bool,
    /// `Some(n)`: job ids are decimal numbers counting from `n` ("1", "2",
    /// ... for `Some(1)`), so two pools started alike reuse the same ids.
    /// `None`: ids unique to this pool instance.
    pub job_id_start: Option<u64>,
}

impl Default for PoolOptions {
    fn default() -> PoolOptions {
        PoolOptions {
            extranonce2_size: 4,
            difficulty: 0.0001,
            version_rolling: VersionRolling::Grant(0x1fff_e000),
            coinb2_extra_bytes: 0,
            merkle_branches: 2,
            authorize_filter: None,
            work_before_authorize_reply: true,
            answer_suggest_difficulty: true,
            null_id_suggest_error: false,
            answer_extranonce_subscribe: true,
            clean_job_on_difficulty: false,
            answer_submits: true,
            nbits: "17034219",
            accept_all: false,
            send_work: true,
            silent: false,
            job_id_start: None,
        }
    }
}

/// Outcome of one `mining.submit`.
#[derive(Clone, Debug, PartialEq)]
pub enum SubmitOutcome {
    /// `result: true`.
    Accepted,
    /// Error `[code, message, null]`.
    Rejected(i64, String),
}

impl SubmitOutcome {
    /// True for [`SubmitOutcome::Accepted`].
    pub fn is_accepted(&self) -> bool {
        matches!(self, SubmitOutcome::Accepted)
    }

    /// The error code, if rejected.
    pub fn code(&self) -> Option<i64> {
        match self {
            SubmitOutcome::Accepted => None,
            SubmitOutcome::Rejected(c, _) => Some(*c),
        }
    }
}

/// One `mining.submit` as the pool saw and judged it.
#[derive(Clone, Debug)]
pub struct SubmitRecord {
    /// Connection index.
    pub conn: usize,
    /// Request id as received.
    pub id: Value,
    /// Full params array as received.
    pub params: Value,
    /// Worker login (params[0]).
    pub login: String,
    /// Job id (params[1]).
    pub job_id: String,
    /// Difficulty the share was checked against (0 if not reached).
    pub difficulty: f64,
    /// Achieved share difficulty (0 if not computed).
    pub share_difficulty: f64,
    /// Verdict.
    pub outcome: SubmitOutcome,
}

/// One `mining.authorize`.
#[derive(Clone, Debug, PartialEq)]
pub struct LoginRecord {
    /// Connection index.
    pub conn: usize,
    /// Login (params[0]).
    pub login: String,
    /// Password (params[1], empty if absent).
    pub password: String,
    /// Whether the pool authorized it.
    pub accepted: bool,
}

/// Per-connection state.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// Index in accept order, starting at 0.
    pub index: usize,
    /// Peer address.
    pub peer: SocketAddr,
    /// Extranonce1 of this connection.
    pub extranonce1: Vec<u8>,
    /// Extranonce2 size of this connection.
    pub extranonce2_size: usize,
    /// Params of the last `mining.subscribe`, if any.
    pub subscribe_params: Option<Value>,
    /// Params of the last `mining.configure`, if any.
    pub configure_params: Option<Value>,
    /// Logins authorized on this connection.
    pub authorized: Vec<String>,
    /// Negotiated version-rolling mask (0 = none).
    pub version_mask: u32,
    /// Current difficulty (last `mining.set_difficulty` sent).
    pub difficulty: f64,
    /// Last `mining.suggest_difficulty` value.
    pub suggested_difficulty: Option<f64>,
    /// Valid jobs sent on this connection with the difficulty in force then.
    pub jobs: HashMap<String, (Job, f64)>,
    /// Accepted share keys, for duplicate detection.
    pub accepted_keys: HashSet<String>,
    /// Raw lines received, byte for byte (without the newline).
    pub received: Vec<String>,
    /// Raw lines sent.
    pub sent: Vec<String>,
    /// Whether the connection receives work: set by its first accepted
    /// authorize, even while work is paused.
    pub got_work: bool,
    /// Number of `mining.notify` lines sent on this connection.
    pub notifies: usize,
    /// The connection has ended.
    pub closed: bool,
}

/// Everything the pool recorded; [`CheckingPool::state`] returns a snapshot.
#[derive(Clone, Debug, Default)]
pub struct PoolState {
    /// Connections in accept order.
    pub connections: Vec<ConnInfo>,
    /// All submits, in arrival order.
    pub submits: Vec<SubmitRecord>,
    /// All authorizes, in arrival order.
    pub logins: Vec<LoginRecord>,
    /// The job new connections get.
    pub current_job: Option<Job>,
    /// Every job the pool generated.
    pub jobs: Vec<Job>,
}

impl PoolState {
    /// Number of accepted submits.
    pub fn accepted(&self) -> usize {
        self.submits.iter().filter(|s| s.outcome.is_accepted()).count()
    }

    /// Number of rejected submits.
    pub fn rejected(&self) -> usize {
        self.submits.len() - self.accepted()
    }

    /// Number of connections still open.
    pub fn open_connections(&self) -> usize {
        self.connections.iter().filter(|c| !c.closed).count()
    }

    /// Number of accepted submits on connection `conn`.
    pub fn accepted_on(&self, conn: usize) -> usize {
        self.submits.iter().filter(|s| s.conn == conn && s.outcome.is_accepted()).count()
    }
}

/// Counters summarising a [`PoolState`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolStats {
    /// Connections accepted so far.
    pub connections: usize,
    /// Connections still open.
    pub open_connections: usize,
    /// Accepted shares.
    pub accepted: usize,
    /// Rejected shares.
    pub rejected: usize,
    /// Sum of difficulty of accepted shares.
    pub accepted_difficulty: f64,
    /// Authorize requests seen.
    pub logins: usize,
}

/// One accepted connection's socket: writes go through the mutex, while
/// `closer` (a clone) can shut it down even when a writer is blocked.
struct Socket {
    write: Mutex<TcpStream>,
    closer: TcpStream,
}

type Writer = Arc<Socket>;

struct Inner {
    opts: PoolOptions,
    state: Mutex<PoolState>,
    changed: Condvar,
    writers: Mutex<Vec<Writer>>,
    /// Connection threads, joined by [`CheckingPool::kill`].
    conn_threads: Mutex<Vec<JoinHandle<()>>>,
    stop: AtomicBool,
    /// No `mining.notify` is sent while set ([`PoolOptions::send_work`]).
    work_paused: AtomicBool,
    rng: AtomicU64,
    job_seq: AtomicU64,
    /// High 16 bits of every extranonce1 (and job id) of this instance;
    /// distinct for every instance in the process.
    en1_base: u32,
}

/// Pools started so far in this process: makes each instance's `en1_base`
/// distinct.
static POOL_INSTANCES: AtomicU32 = AtomicU32::new(0);

/// The high 16 bits of extranonce1 for the next pool instance: a per-process
/// offset from the clock (so test processes differ too, usually) plus an odd
/// step per instance, so 65536 instances of one process never share one.
fn next_en1_base() -> u32 {
    static OFFSET: OnceLock<u32> = OnceLock::new();
    let offset = *OFFSET.get_or_init(|| {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| (d.as_nanos() >> 16) as u32).unwrap_or(0)
    });
    let instance = POOL_INSTANCES.fetch_add(1, Ordering::Relaxed);
    (offset.wrapping_add(instance.wrapping_mul(0x9e37)) & 0xffff) << 16
}

/// A scripted Stratum V1 pool on std threads, bound to 127.0.0.1:0
/// ([`CheckingPool::start`]) or to a given address ([`CheckingPool::start_at`]).
///
/// One thread per connection. Every `mining.submit` is checked for real, in
/// this order: params shape (20), subscribed (25), job sent on this
/// connection and not cleared by a clean notify (21), login authorized on
/// this connection (24), extranonce2 length (20), duplicate (22), version
/// bits within the negotiated mask (20), share hash against
/// `min(difficulty when the job was sent, current difficulty)` (23).
/// Lines pushed with [`CheckingPool::send`] update that state too (a pushed
/// notify becomes a valid job, a pushed set_difficulty changes difficulty).
/// Received lines are recorded verbatim, minus the `\n` / `\r\n` terminator.
pub struct CheckingPool {
    inner: Arc<Inner>,
    addr: SocketAddr,
    /// `None` once killed.
    accept_thread: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A `mining.set_difficulty` line.
pub fn set_difficulty_line(difficulty: f64) -> String {
    json!({"id": null, "method": "mining.set_difficulty", "params": [difficulty]}).to_string()
}

/// A `client.reconnect` line (id null, like ckpool).
pub fn reconnect_line(host: &str, port: u16, wait_seconds: u64) -> String {
    json!({"id": null, "method": "client.reconnect", "params": [host, port, wait_seconds]}).to_string()
}

fn response(id: &Value, result: Value) -> String {
    json!({"id": id, "result": result, "error": null}).to_string()
}

fn error_response(id: &Value, code: i64, msg: &str) -> String {
    json!({"id": id, "result": null, "error": [code, msg, null]}).to_string()
}

fn push_varint(out: &mut Vec<u8>, n: usize) {
    if n < 0xfd {
        out.push(n as u8);
    } else if n <= 0xffff {
        out.push(0xfd);
        out.extend_from_slice(&(n as u16).to_le_bytes());
    } else {
        out.push(0xfe);
        out.extend_from_slice(&(n as u32).to_le_bytes());
    }
}

impl Inner {
    fn random(&self) -> u64 {
        // splitmix64
        let mut z = self.rng.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn random_bytes(&self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.random() as u8).collect()
    }

    fn make_job(&self, clean: bool) -> Job {
        let seq = self.job_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let ntime = now_secs() as u32;
        let height: u32 = 880_000 + seq as u32;
        // coinbase tx: version, 1 input, null prevout, script = height push,
        // time push, extranonce1 ‖ extranonce2, tag push; sequence; outputs.
        let tag = b"/loka-test/";
        let mut script_head = vec![0x03];
        script_head.extend_from_slice(&height.to_le_bytes()[..3]);
        script_head.push(0x04);
        script_head.extend_from_slice(&ntime.to_le_bytes());
        let mut script_tail = vec![tag.len() as u8];
        script_tail.extend_from_slice(tag);
        let script_len = script_head.len() + 4 + self.opts.extranonce2_size + script_tail.len();
        let mut coinb1 =
            hex_decode("01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff")
                .expect("static hex");
        push_varint(&mut coinb1, script_len);
        coinb1.extend_from_slice(&script_head);
        let mut coinb2 = script_tail;
        coinb2.extend_from_slice(&[0xff; 4]);
        // Outputs: one P2WPKH payout, plus P2WSH payouts as padding.
        let pad_outputs = self.opts.coinb2_extra_bytes.div_ceil(43);
        push_varint(&mut coinb2, 1 + pad_outputs);
        coinb2.extend_from_slice(&312_500_000u64.to_le_bytes());
        coinb2.extend_from_slice(&[0x16, 0x00, 0x14]);
        coinb2.extend(self.random_bytes(20));
        for _ in 0..pad_outputs {
            coinb2.extend_from_slice(&546u64.to_le_bytes());
            coinb2.extend_from_slice(&[0x22, 0x00, 0x20]);
            coinb2.extend(self.random_bytes(32));
        }
        coinb2.extend_from_slice(&[0; 4]);
        let job_id = match self.opts.job_id_start {
            Some(start) => start.wrapping_add(seq - 1).to_string(),
            None => format!("{:08x}{:08x}", self.en1_base, seq),
        };
        Job {
            job_id,
            prevhash: hex_encode(&{
                let mut p = self.random_bytes(32);
                // Look like a real block hash: leading zero bytes (last word after swap).
                p[28..32].copy_from_slice(&[0; 4]);
                p
            }),
            coinb1: hex_encode(&coinb1),
            coinb2: hex_encode(&coinb2),
            merkle_branch: (0..self.opts.merkle_branches)
                .map(|_| hex_encode(&self.random_bytes(32)))
                .collect(),
            version: "20000000".into(),
            nbits: self.opts.nbits.into(),
            ntime: format!("{ntime:08x}"),
            clean_jobs: clean,
        }
    }

    fn new_job(&self, clean: bool) -> Job {
        let job = self.make_job(clean);
        let mut st = lock(&self.state);
        st.current_job = Some(job.clone());
        st.jobs.push(job.clone());
        drop(st);
        self.changed.notify_all();
        job
    }

    fn current_job_or_new(&self) -> Job {
        if let Some(j) = lock(&self.state).current_job.clone() {
            return j;
        }
        self.new_job(true)
    }

    fn writer(&self, conn: usize) -> Option<Writer> {
        lock(&self.writers).get(conn).cloned()
    }

    /// Sends a line on a connection, tracking notify/difficulty/mask/extranonce.
    fn send(&self, conn: usize, line: &str) -> io::Result<()> {
        if self.opts.silent {
            return Err(io::Error::other("a silent pool sends nothing"));
        }
        let w =
            self.writer(conn).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such connection"))?;
        let mut stream = lock(&w.write);
        {
            let mut st = lock(&self.state);
            let c = &mut st.connections[conn];
            if c.closed {
                return Err(io::Error::new(io::ErrorKind::NotConnected, "connection closed"));
            }
            observe_outgoing(c, line);
            c.sent.push(line.to_owned());
        }
        self.changed.notify_all();
        let mut data = Vec::with_capacity(line.len() + 1);
        data.extend_from_slice(line.as_bytes());
        data.push(b'\n');
        stream.write_all(&data)?;
        stream.flush()
    }

    fn mark_closed(&self, conn: usize) {
        if let Some(w) = self.writer(conn) {
            let _ = w.closer.shutdown(Shutdown::Both);
        }
        if let Some(c) = lock(&self.state).connections.get_mut(conn) {
            c.closed = true;
        }
        self.changed.notify_all();
    }
}

/// Updates connection state from a line the pool sends.
fn observe_outgoing(c: &mut ConnInfo, line: &str) {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return;
    };
    let params = &v["params"];
    match v["method"].as_str() {
        Some("mining.notify") => {
            c.notifies += 1;
            if let Some(job) = Job::from_notify_params(params) {
                if job.clean_jobs {
                    c.jobs.clear();
                }
                c.jobs.insert(job.job_id.clone(), (job, c.difficulty));
            }
        }
        Some("mining.set_difficulty") => {
            if let Some(d) = params[0].as_f64() {
                c.difficulty = d;
            }
        }
        Some("mining.set_version_mask") => {
            if let Some(m) = params[0].as_str().and_then(parse_u32_hex) {
                c.version_mask = m;
            }
        }
        Some("mining.set_extranonce") => {
            if let (Some(en1), Some(size)) = (params[0].as_str().and_then(hex_decode), params[1].as_u64()) {
                c.extranonce1 = en1;
                c.extranonce2_size = size as usize;
            }
        }
        _ => {}
    }
}

impl CheckingPool {
    /// Binds 127.0.0.1:0 and starts accepting connections.
    pub fn start(opts: PoolOptions) -> CheckingPool {
        Self::start_at("127.0.0.1:0".parse().expect("static addr"), opts).expect("bind pool listener")
    }

    /// Binds `addr` and starts accepting connections: with the address of a
    /// killed pool, brings a pool back on the same port. Std's listener sets
    /// `SO_REUSEADDR` on Unix, so the old pool's connections (in TIME_WAIT or
    /// still half open) do not keep the port.
    pub fn start_at(addr: SocketAddr, opts: PoolOptions) -> io::Result<CheckingPool> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
            ^ (u64::from(addr.port()) << 32);
        let inner = Arc::new(Inner {
            state: Mutex::new(PoolState::default()),
            changed: Condvar::new(),
            writers: Mutex::new(Vec::new()),
            conn_threads: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            work_paused: AtomicBool::new(!opts.send_work),
            rng: AtomicU64::new(seed),
            job_seq: AtomicU64::new(0),
            en1_base: next_en1_base(),
            opts,
        });
        inner.new_job(true);
        let accept_inner = inner.clone();
        let accept_thread = std::thread::Builder::new()
            .name("checking-pool-accept".into())
            .spawn(move || accept_loop(accept_inner, listener))?;
        Ok(CheckingPool { inner, addr, accept_thread: Mutex::new(Some(accept_thread)) })
    }

    /// Kills the pool, as if its process died: stops accepting and closes the
    /// listener (connects are refused), shuts down every connection (peers
    /// read EOF) and joins every thread. When it returns the port refuses
    /// connections. What the pool recorded stays readable. Idempotent; drop
    /// does the same.
    pub fn kill(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        let accept_thread = lock(&self.accept_thread).take();
        if let Some(t) = accept_thread {
            // Wake the blocking accept; the thread owns the listener and
            // closes it when it returns.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = t.join();
        }
        self.close_all();
        let threads = std::mem::take(&mut *lock(&self.inner.conn_threads));
        for t in threads {
            let _ = t.join();
        }
    }

    /// Whether [`CheckingPool::kill`] ran.
    pub fn is_killed(&self) -> bool {
        self.inner.stop.load(Ordering::SeqCst)
    }

    /// Stops (`true`) or resumes (`false`) sending `mining.notify`: while
    /// paused, [`CheckingPool::new_job`] makes the job without sending it and
    /// a first authorize gets set_difficulty only. Resuming sends nothing by
    /// itself; call `new_job` to push work. [`CheckingPool::send`] and
    /// [`CheckingPool::send_to_all`] send what they are given regardless.
    pub fn pause_work(&self, paused: bool) {
        self.inner.work_paused.store(paused, Ordering::SeqCst);
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The options the pool runs with.
    pub fn options(&self) -> &PoolOptions {
        &self.inner.opts
    }

    /// A snapshot of everything recorded.
    pub fn state(&self) -> PoolState {
        lock(&self.inner.state).clone()
    }

    /// Summary counters.
    pub fn stats(&self) -> PoolStats {
        let st = lock(&self.inner.state);
        PoolStats {
            connections: st.connections.len(),
            open_connections: st.open_connections(),
            accepted: st.accepted(),
            rejected: st.rejected(),
            accepted_difficulty: st
                .submits
                .iter()
                .filter(|s| s.outcome.is_accepted())
                .map(|s| s.difficulty)
                .sum(),
            logins: st.logins.len(),
        }
    }

    /// All submits so far, with outcomes.
    pub fn submits(&self) -> Vec<SubmitRecord> {
        lock(&self.inner.state).submits.clone()
    }

    /// All authorizes so far.
    pub fn logins(&self) -> Vec<LoginRecord> {
        lock(&self.inner.state).logins.clone()
    }

    /// Raw lines received on connection `conn` (empty if unknown).
    pub fn received(&self, conn: usize) -> Vec<String> {
        lock(&self.inner.state).connections.get(conn).map(|c| c.received.clone()).unwrap_or_default()
    }

    /// Raw lines sent on connection `conn` (empty if unknown).
    pub fn sent(&self, conn: usize) -> Vec<String> {
        lock(&self.inner.state).connections.get(conn).map(|c| c.sent.clone()).unwrap_or_default()
    }

    /// Number of connections accepted so far.
    pub fn connection_count(&self) -> usize {
        lock(&self.inner.state).connections.len()
    }

    /// Extranonce1 of connection `conn`.
    pub fn extranonce1(&self, conn: usize) -> Option<Vec<u8>> {
        lock(&self.inner.state).connections.get(conn).map(|c| c.extranonce1.clone())
    }

    /// Indexes of the connections still open, in accept order.
    pub fn open_connections(&self) -> Vec<usize> {
        lock(&self.inner.state).connections.iter().filter(|c| !c.closed).map(|c| c.index).collect()
    }

    /// Logins authorized on connection `conn` (empty if unknown).
    pub fn authorized(&self, conn: usize) -> Vec<String> {
        lock(&self.inner.state).connections.get(conn).map(|c| c.authorized.clone()).unwrap_or_default()
    }

    /// Number of accepted submits on connection `conn`.
    pub fn accepted_on(&self, conn: usize) -> usize {
        lock(&self.inner.state).accepted_on(conn)
    }

    /// The job new connections receive.
    pub fn current_job(&self) -> Option<Job> {
        lock(&self.inner.state).current_job.clone()
    }

    /// Waits until `cond(state)` holds, at most `timeout`. Returns whether it held.
    pub fn wait_for<F: FnMut(&PoolState) -> bool>(&self, mut cond: F, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.inner.state);
        loop {
            if cond(&st) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self.inner.changed.wait_timeout(st, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Waits until at least `n` connections were accepted.
    pub fn wait_for_connections(&self, n: usize, timeout: Duration) -> bool {
        self.wait_for(|s| s.connections.len() >= n, timeout)
    }

    /// Waits until at least `n` submits were judged.
    pub fn wait_for_submits(&self, n: usize, timeout: Duration) -> bool {
        self.wait_for(|s| s.submits.len() >= n, timeout)
    }

    /// Sends a raw line (no newline needed) on connection `conn`. Notify,
    /// set_difficulty, set_version_mask and set_extranonce lines update what
    /// the pool accepts on that connection.
    pub fn send(&self, conn: usize, line: &str) -> io::Result<()> {
        self.inner.send(conn, line)
    }

    /// Sends a raw line on every open connection; returns how many got it.
    pub fn send_to_all(&self, line: &str) -> usize {
        let n = lock(&self.inner.writers).len();
        (0..n).filter(|&i| self.inner.send(i, line).is_ok()).count()
    }

    /// Makes a new job and sends it to every open connection that has work
    /// (unless work is paused: then the job is only made current).
    pub fn new_job(&self, clean: bool) -> Job {
        let job = self.inner.new_job(clean);
        if self.inner.work_paused.load(Ordering::SeqCst) {
            return job;
        }
        let line = job.notify_line();
        let targets: Vec<usize> = lock(&self.inner.state)
            .connections
            .iter()
            .filter(|c| c.got_work && !c.closed)
            .map(|c| c.index)
            .collect();
        for i in targets {
            let _ = self.inner.send(i, &line);
        }
        job
    }

    /// Sends `mining.set_difficulty` to every open connection.
    pub fn set_difficulty_all(&self, difficulty: f64) -> usize {
        let sent = self.send_to_all(&set_difficulty_line(difficulty));
        if self.options().clean_job_on_difficulty
            && let Some(mut job) = self.current_job()
        {
            job.clean_jobs = true;
            self.send_to_all(&job.notify_line());
        }
        sent
    }

    /// Closes connection `conn`.
    pub fn close(&self, conn: usize) {
        self.inner.mark_closed(conn);
    }

    /// Closes every connection (new connections are still accepted).
    pub fn close_all(&self) {
        let n = lock(&self.inner.writers).len();
        for i in 0..n {
            self.inner.mark_closed(i);
        }
    }
}

impl Drop for CheckingPool {
    fn drop(&mut self) {
        self.kill();
    }
}

fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    for stream in listener.incoming() {
        if inner.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
        let (Ok(read_half), Ok(closer)) = (stream.try_clone(), stream.try_clone()) else {
            continue;
        };
        let peer = stream.peer_addr().unwrap_or_else(|_| "0.0.0.0:0".parse().expect("addr"));
        // Lock order everywhere: writers, then state.
        let mut writers = lock(&inner.writers);
        let index = writers.len();
        writers.push(Arc::new(Socket { write: Mutex::new(stream), closer }));
        {
            let mut st = lock(&inner.state);
            // 0x0101 is odd, so the low 16 bits differ for 65536 connections.
            let en1 = inner.en1_base | u32::from(0x0101u16.wrapping_mul(index as u16 + 1));
            st.connections.push(ConnInfo {
                index,
                peer,
                extranonce1: en1.to_be_bytes().to_vec(),
                extranonce2_size: inner.opts.extranonce2_size,
                subscribe_params: None,
                configure_params: None,
                authorized: Vec::new(),
                version_mask: 0,
                difficulty: inner.opts.difficulty,
                suggested_difficulty: None,
                jobs: HashMap::new(),
                accepted_keys: HashSet::new(),
                received: Vec::new(),
                sent: Vec::new(),
                got_work: false,
                notifies: 0,
                closed: false,
            });
        }
        drop(writers);
        inner.changed.notify_all();
        let conn_inner = inner.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("checking-pool-conn-{index}"))
            .spawn(move || conn_loop(conn_inner, index, read_half));
        match spawned {
            Ok(t) => lock(&inner.conn_threads).push(t),
            Err(_) => inner.mark_closed(index),
        }
    }
}

fn conn_loop(inner: Arc<Inner>, conn: usize, read_half: TcpStream) {
    let mut reader = LineReader::new(read_half);
    loop {
        if inner.stop.load(Ordering::SeqCst) {
            break;
        }
        match reader.read_line(Instant::now() + Duration::from_millis(200)) {
            ReadOutcome::Timeout => continue,
            ReadOutcome::Closed => break,
            ReadOutcome::Line(line) => {
                {
                    let mut st = lock(&inner.state);
                    let c = &mut st.connections[conn];
                    if c.closed {
                        break;
                    }
                    c.received.push(line.clone());
                }
                inner.changed.notify_all();
                if inner.opts.silent {
                    continue;
                }
                for out in handle_line(&inner, conn, &line) {
                    if inner.send(conn, &out).is_err() {
                        break;
                    }
                }
            }
        }
    }
    inner.mark_closed(conn);
}

/// Handles one received line; returns the lines to send, in order.
fn handle_line(inner: &Inner, conn: usize, line: &str) -> Vec<String> {
    let Ok(msg) = serde_json::from_str::<Value>(line) else {
        return Vec::new();
    };
    let Some(method) = msg.get("method").and_then(Value::as_str) else {
        // A response to a pool request (e.g. mining.ping): just recorded.
        return Vec::new();
    };
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
    let opts = &inner.opts;
    match method {
        "mining.subscribe" => {
            let mut st = lock(&inner.state);
            let c = &mut st.connections[conn];
            c.subscribe_params = Some(params);
            let sid = format!("{:08x}", conn + 1);
            vec![response(
                &id,
                json!([
                    [["mining.set_difficulty", sid], ["mining.notify", sid]],
                    hex_encode(&c.extranonce1),
                    c.extranonce2_size
                ]),
            )]
        }
        "mining.authorize" => {
            let login = params[0].as_str().unwrap_or("").to_owned();
            let password = params[1].as_str().unwrap_or("").to_owned();
            let accepted = opts.authorize_filter.as_ref().is_none_or(|f| f(&login, &password));
            let first_work = {
                let mut st = lock(&inner.state);
                st.logins.push(LoginRecord { conn, login: login.clone(), password, accepted });
                let c = &mut st.connections[conn];
                if accepted && !c.authorized.contains(&login) {
                    c.authorized.push(login);
                }
                let first = accepted && !c.got_work;
                if first {
                    c.got_work = true;
                }
                first
            };
            let reply = if accepted {
                response(&id, json!(true))
            } else {
                error_response(&id, 24, "Unauthorized worker")
            };
            if !first_work {
                return vec![reply];
            }
            let mut work = vec![set_difficulty_line(opts.difficulty)];
            if !inner.work_paused.load(Ordering::SeqCst) {
                let mut job = inner.current_job_or_new();
                job.clean_jobs = true;
                work.push(job.notify_line());
            }
            if opts.work_before_authorize_reply {
                work.into_iter().chain(std::iter::once(reply)).collect()
            } else {
                std::iter::once(reply).chain(work).collect()
            }
        }
        "mining.configure" => {
            lock(&inner.state).connections[conn].configure_params = Some(params.clone());
            let exts: Vec<String> = params[0]
                .as_array()
                .map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            match opts.version_rolling {
                VersionRolling::Unknown => vec![error_response(&id, 20, "Unknown method")],
                VersionRolling::Refuse => {
                    let mut r = Map::new();
                    for e in &exts {
                        r.insert(e.clone(), json!(false));
                    }
                    r.insert("version-rolling".into(), json!(false));
                    vec![response(&id, Value::Object(r))]
                }
                VersionRolling::Grant(pool_mask) | VersionRolling::GrantAll(pool_mask) => {
                    let mut r = Map::new();
                    for e in &exts {
                        if e != "version-rolling" {
                            r.insert(e.clone(), json!(false));
                        }
                    }
                    if exts.iter().any(|e| e == "version-rolling") {
                        let miner_mask = params[1]["version-rolling.mask"]
                            .as_str()
                            .and_then(parse_u32_hex)
                            .unwrap_or(0xffff_ffff);
                        let mask = match opts.version_rolling {
                            VersionRolling::GrantAll(_) => pool_mask,
                            _ => pool_mask & miner_mask,
                        };
                        lock(&inner.state).connections[conn].version_mask = mask;
                        r.insert("version-rolling".into(), json!(true));
                        r.insert("version-rolling.mask".into(), json!(format!("{mask:08x}")));
                    }
                    vec![response(&id, Value::Object(r))]
                }
            }
        }
        "mining.submit" => {
            let (outcome, record) = judge_submit(inner, conn, &id, &params);
            {
                let mut st = lock(&inner.state);
                st.submits.push(record);
            }
            inner.changed.notify_all();
            match outcome {
                _ if !opts.answer_submits => Vec::new(),
                SubmitOutcome::Accepted => vec![response(&id, json!(true))],
                SubmitOutcome::Rejected(code, msg) => vec![error_response(&id, code, &msg)],
            }
        }
        "mining.extranonce.subscribe" if opts.answer_extranonce_subscribe => vec![response(&id, json!(true))],
        "mining.extranonce.subscribe" => Vec::new(),
        "mining.suggest_difficulty" => {
            lock(&inner.state).connections[conn].suggested_difficulty = params[0].as_f64();
            if opts.null_id_suggest_error {
                vec![error_response(&Value::Null, 20, "Unknown method")]
            } else if opts.answer_suggest_difficulty && !id.is_null() {
                vec![response(&id, json!(true))]
            } else {
                Vec::new()
            }
        }
        _ => vec![error_response(&id, 20, "Unknown method")],
    }
}

/// Checks a submit against the connection's state; records accepted keys.
fn judge_submit(inner: &Inner, conn: usize, id: &Value, params: &Value) -> (SubmitOutcome, SubmitRecord) {
    let mut st = lock(&inner.state);
    let c = &mut st.connections[conn];
    let p: Vec<Option<&str>> =
        params.as_array().map(|a| a.iter().map(Value::as_str).collect()).unwrap_or_default();
    let mut record = SubmitRecord {
        conn,
        id: id.clone(),
        params: params.clone(),
        login: p.first().copied().flatten().unwrap_or("").to_owned(),
        job_id: p.get(1).copied().flatten().unwrap_or("").to_owned(),
        difficulty: 0.0,
        share_difficulty: 0.0,
        outcome: SubmitOutcome::Accepted,
    };
    let reject = |code: i64, msg: &str| SubmitOutcome::Rejected(code, msg.to_owned());
    let accept_all = inner.opts.accept_all;
    let outcome = (|| {
        if accept_all {
            return SubmitOutcome::Accepted;
        }
        if !(p.len() == 5 || p.len() == 6) || p.iter().any(Option::is_none) {
            return reject(20, "Invalid params");
        }
        let p: Vec<&str> = p.iter().map(|s| s.unwrap_or("")).collect();
        if c.subscribe_params.is_none() {
            return reject(25, "Not subscribed");
        }
        let Some((job, job_diff)) = c.jobs.get(p[1]).cloned() else {
            return reject(21, "Job not found");
        };
        if !c.authorized.iter().any(|l| l == p[0]) {
            return reject(24, "Unauthorized worker");
        }
        let Some(en2) = hex_decode(p[2]) else {
            return reject(20, "Invalid extranonce2");
        };
        if en2.len() != c.extranonce2_size {
            return reject(20, "Invalid extranonce2 length");
        }
        let vbits = p.get(5).copied();
        let key = format!(
            "{}/{}/{}/{}/{}",
            p[1],
            p[2].to_ascii_lowercase(),
            p[3].to_ascii_lowercase(),
            p[4].to_ascii_lowercase(),
            vbits.unwrap_or("").to_ascii_lowercase()
        );
        if c.accepted_keys.contains(&key) {
            return reject(22, "Duplicate share");
        }
        let difficulty = job_diff.min(c.difficulty);
        record.difficulty = difficulty;
        match share::check_share(&job, &c.extranonce1, &en2, p[3], p[4], vbits, c.version_mask, difficulty) {
            Ok(hash) => {
                record.share_difficulty = share::hash_difficulty(&hash);
                c.accepted_keys.insert(key);
                SubmitOutcome::Accepted
            }
            Err(ShareError::LowDifficulty { hash }) => {
                record.share_difficulty = share::hash_difficulty(&hash);
                reject(23, "Low difficulty share")
            }
            Err(ShareError::VersionBitsOutsideMask { .. }) => reject(20, "Invalid version bits"),
            Err(e) => reject(20, &e.to_string()),
        }
    })();
    record.outcome = outcome.clone();
    (outcome, record)
}
