//! Miner-side clients: [`ScriptedMiner`] (raw lines) and [`HashingMiner`]
//! (a small, real CPU miner).

use super::share::{self, Job, hex_decode, hex_encode, parse_u32_hex};
use super::{LineReader, ReadOutcome};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A line-based Stratum client driven step by step by a test.
pub struct ScriptedMiner {
    stream: TcpStream,
    reader: LineReader,
    /// Every line received so far, in order.
    pub received: Vec<String>,
}

impl ScriptedMiner {
    /// Connects to `addr` (5 s connect timeout).
    pub fn connect(addr: SocketAddr) -> io::Result<ScriptedMiner> {
        Self::from_stream(TcpStream::connect_timeout(&addr, Duration::from_secs(5))?)
    }

    /// Speaks Stratum on a connection already open (e.g. after a `CONNECT`).
    pub fn from_stream(stream: TcpStream) -> io::Result<ScriptedMiner> {
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        let reader = LineReader::new(stream.try_clone()?);
        Ok(ScriptedMiner { stream, reader, received: Vec::new() })
    }

    /// Local address of the connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr()
    }

    /// Sends `line` followed by `\n` (unless it already ends with one).
    pub fn send_line(&mut self, line: &str) -> io::Result<()> {
        let mut data = line.as_bytes().to_vec();
        if !line.ends_with('\n') {
            data.push(b'\n');
        }
        self.stream.write_all(&data)?;
        self.stream.flush()
    }

    /// Sends raw bytes as they are (no newline added).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Serialises `v` and sends it as one line.
    pub fn send_json(&mut self, v: &Value) -> io::Result<()> {
        self.send_line(&v.to_string())
    }

    /// Next line before `deadline`, or why there is none.
    pub fn recv_outcome(&mut self, deadline: Instant) -> ReadOutcome {
        let r = self.reader.read_line(deadline);
        if let ReadOutcome::Line(l) = &r {
            self.received.push(l.clone());
        }
        r
    }

    /// A line if one is readable without waiting.
    pub fn poll_outcome(&mut self) -> ReadOutcome {
        let r = self.reader.poll_line();
        if let ReadOutcome::Line(l) = &r {
            self.received.push(l.clone());
        }
        r
    }

    /// Next line within `timeout` (`None` on timeout or close).
    pub fn recv_line(&mut self, timeout: Duration) -> Option<String> {
        match self.recv_outcome(Instant::now() + timeout) {
            ReadOutcome::Line(l) => Some(l),
            _ => None,
        }
    }

    /// Next line parsed as JSON within `timeout`; non-JSON lines are skipped.
    pub fn recv_json(&mut self, timeout: Duration) -> Option<Value> {
        self.recv_until(|_| true, timeout)
    }

    /// First JSON message matching `pred` within `timeout`; others are skipped
    /// (but kept in [`ScriptedMiner::received`]).
    pub fn recv_until<F: FnMut(&Value) -> bool>(&mut self, mut pred: F, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv_outcome(deadline) {
                ReadOutcome::Line(l) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&l)
                        && pred(&v)
                    {
                        return Some(v);
                    }
                }
                _ => return None,
            }
        }
    }

    /// The response (a message without `method`) whose id equals `id`.
    pub fn recv_response(&mut self, id: &Value, timeout: Duration) -> Option<Value> {
        self.recv_until(|v| v.get("method").is_none() && v.get("id") == Some(id), timeout)
    }

    /// The first notification/request with the given method.
    pub fn recv_method(&mut self, method: &str, timeout: Duration) -> Option<Value> {
        self.recv_until(|v| v["method"] == method, timeout)
    }

    /// True if the peer closes (EOF or reset) within `timeout`; lines received
    /// meanwhile are recorded.
    pub fn expect_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv_outcome(deadline) {
                ReadOutcome::Line(_) => continue,
                ReadOutcome::Closed => return true,
                ReadOutcome::Timeout => return false,
            }
        }
    }

    /// Another handle on the socket, for raw writes that bypass the reader.
    pub fn stream_clone(&self) -> TcpStream {
        self.stream.try_clone().expect("clone a socket")
    }

    /// Closes the connection.
    pub fn close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// How a [`HashingMiner`] numbers and builds submits.
#[derive(Clone, Debug)]
pub struct MinerOptions {
    /// `Some(n)`: every submit uses id `n` (cpuminer uses 4); `None`: increasing ids.
    pub repeat_submit_id: Option<u64>,
    /// Roll version bits when version rolling was granted (6-param submits).
    pub roll_version: bool,
    /// Send `mining.extranonce.subscribe` right after the subscribe answer
    /// (NiceHash style); its answer lands in
    /// [`HashingMiner::extranonce_subscribe_answer`].
    pub extranonce_subscribe: bool,
}

impl Default for MinerOptions {
    fn default() -> MinerOptions {
        MinerOptions { repeat_submit_id: Some(4), roll_version: true, extranonce_subscribe: false }
    }
}

/// Verdict on one submitted share, as the miner saw it.
#[derive(Clone, Debug, PartialEq)]
pub enum ShareOutcome {
    /// `result: true`.
    Accepted,
    /// An error answer (or `result: false`, code 0).
    Rejected(i64, String),
    /// No answer arrived before the deadline.
    NoAnswer,
}

impl ShareOutcome {
    /// The error code, if rejected.
    pub fn code(&self) -> Option<i64> {
        match self {
            ShareOutcome::Rejected(c, _) => Some(*c),
            _ => None,
        }
    }
}

/// A share the miner submitted.
#[derive(Clone, Debug)]
pub struct SubmittedShare {
    /// Request id used.
    pub id: Value,
    /// The full params array sent.
    pub params: Value,
    /// Job id.
    pub job_id: String,
    /// Extranonce1 the share was built with.
    pub extranonce1: Vec<u8>,
    /// Extranonce2 hex.
    pub extranonce2: String,
    /// Ntime hex.
    pub ntime: String,
    /// Nonce hex.
    pub nonce: String,
    /// Version bits hex (6-param submit).
    pub version_bits: Option<String>,
    /// Difficulty the miner believed in when it found the share.
    pub difficulty: f64,
    /// When it was sent.
    pub submitted_at: Instant,
    /// When its answer was read off the socket (`None` while unanswered).
    pub answered_at: Option<Instant>,
    /// Answer.
    pub outcome: ShareOutcome,
}

/// Result of [`HashingMiner::mine`] and [`HashingMiner::mine_until`].
#[derive(Clone, Debug, Default)]
pub struct MineReport {
    /// Shares in submit order with their answers.
    pub shares: Vec<SubmittedShare>,
    /// Hashes computed.
    pub hashes: u64,
    /// Wall time spent.
    pub elapsed: Duration,
    /// [`HashingMiner::mine_until`]: index in `shares` of the share whose
    /// answer met the predicate (`None`: deadline or close came first).
    pub matched: Option<usize>,
    /// The peer closed the connection (EOF or reset) during the run.
    pub closed: bool,
}

impl MineReport {
    /// Accepted shares.
    pub fn accepted(&self) -> usize {
        self.shares.iter().filter(|s| s.outcome == ShareOutcome::Accepted).count()
    }

    /// Rejection codes, in order.
    pub fn rejected_codes(&self) -> Vec<i64> {
        self.shares.iter().filter_map(|s| s.outcome.code()).collect()
    }

    /// Shares without an answer.
    pub fn unanswered(&self) -> usize {
        self.shares.iter().filter(|s| s.outcome == ShareOutcome::NoAnswer).count()
    }

    /// The share that met [`HashingMiner::mine_until`]'s predicate.
    pub fn matched_share(&self) -> Option<&SubmittedShare> {
        self.matched.and_then(|i| self.shares.get(i))
    }
}

/// Parses a Stratum error (`[code, msg, data]` or `{code, message}`).
pub fn parse_error(err: &Value) -> (i64, String) {
    if let Some(a) = err.as_array() {
        (
            a.first().and_then(Value::as_i64).unwrap_or(0),
            a.get(1).and_then(Value::as_str).unwrap_or("").to_owned(),
        )
    } else {
        (err["code"].as_i64().unwrap_or(0), err["message"].as_str().unwrap_or("").to_owned())
    }
}

fn outcome_of(resp: &Value) -> ShareOutcome {
    if !resp["error"].is_null() {
        let (c, m) = parse_error(&resp["error"]);
        ShareOutcome::Rejected(c, m)
    } else if resp["result"] == json!(true) {
        ShareOutcome::Accepted
    } else {
        ShareOutcome::Rejected(0, "result not true".into())
    }
}

/// Deposits the low bits of `value` into the set bits of `mask` (pdep).
fn deposit_bits(mut value: u32, mask: u32) -> u32 {
    let mut out = 0;
    let mut m = mask;
    while m != 0 && value != 0 {
        let bit = m & m.wrapping_neg();
        if value & 1 != 0 {
            out |= bit;
        }
        value >>= 1;
        m &= m - 1;
    }
    out
}

/// Nonces hashed between two looks at the socket.
const NONCES_PER_POLL: u64 = 50_000;

/// One header being searched: a job with one extranonce1, extranonce2,
/// difficulty and version. Any change to those makes a new `Work`.
struct Work {
    job: Job,
    en1: Vec<u8>,
    en2: Vec<u8>,
    difficulty: f64,
    mask: Option<u32>,
    vbits: Option<u32>,
    target: [u8; 32],
    target_top: u32,
    hasher: share::HeaderHasher,
    /// Next nonce to try; past `u32::MAX` the work is spent.
    nonce: u64,
}

impl Work {
    /// Hashes up to `budget` nonces; returns the first that meets the target
    /// and how many were hashed.
    fn search(&mut self, budget: u64) -> (Option<u32>, u64) {
        let first = self.nonce;
        let end = (self.nonce + budget).min(u64::from(u32::MAX) + 1);
        while self.nonce < end {
            let nonce = self.nonce as u32;
            self.nonce += 1;
            let state = self.hasher.hash_state(nonce);
            // Fast reject on the top 32 bits, exact compare otherwise.
            if state[7].swap_bytes() > self.target_top {
                continue;
            }
            let mut hash = share::state_to_bytes(&state);
            hash.reverse();
            if hash <= self.target {
                return (Some(nonce), self.nonce - first);
            }
        }
        (None, self.nonce - first)
    }
}

/// Shares and answers of one mining run.
struct Run {
    start: Instant,
    report: MineReport,
    /// Indexes into `report.shares` still waiting for an answer.
    pending: VecDeque<usize>,
    /// Indexes answered since the caller last looked.
    answered: Vec<usize>,
    work: Option<Work>,
}

/// A real CPU miner: follows the pool's messages and hashes for valid shares.
pub struct HashingMiner {
    /// The underlying line client.
    pub conn: ScriptedMiner,
    /// Options.
    pub opts: MinerOptions,
    /// Extranonce1 from subscribe / set_extranonce.
    pub extranonce1: Option<Vec<u8>>,
    /// Extranonce2 size.
    pub extranonce2_size: usize,
    /// Current difficulty (1 until told otherwise).
    pub difficulty: f64,
    /// Granted version-rolling mask (`None` = no rolling).
    pub version_mask: Option<u32>,
    /// Newest job (a new notify replaces it, clean or not).
    pub job: Option<Job>,
    /// Every message (JSON) received, in order.
    pub messages: Vec<Value>,
    /// Params of every `client.reconnect` received, in order.
    pub reconnects: Vec<Value>,
    /// When the first `client.reconnect` was read.
    pub reconnected_at: Option<Instant>,
    /// The answer to `mining.extranonce.subscribe`, once it came.
    pub extranonce_subscribe_answer: Option<Value>,
    /// Answers to requests the miner stopped waiting for (a submit left
    /// pending when a run ended, a request that timed out), in arrival order.
    pub late_answers: Vec<Value>,
    /// Login used for submits (from the last authorize).
    pub login: String,
    next_id: u64,
    en2_counter: u64,
    /// Id of the `mining.extranonce.subscribe` still unanswered.
    extranonce_subscribe_id: Option<Value>,
    /// Ids of requests no one waits for any more, oldest first: their
    /// answers go to `late_answers`, so a later request with a repeated id
    /// (cpuminer's submit id 4) does not take an older request's answer.
    abandoned: VecDeque<Value>,
    /// Responses received but not yet claimed, with their arrival time.
    responses: VecDeque<(Instant, Value)>,
}

impl HashingMiner {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> io::Result<HashingMiner> {
        Self::connect_with(addr, MinerOptions::default())
    }

    /// Connects to `addr` with options.
    pub fn connect_with(addr: SocketAddr, opts: MinerOptions) -> io::Result<HashingMiner> {
        Ok(Self::from_stream(ScriptedMiner::connect(addr)?, opts))
    }

    /// Mines over a connection already open (e.g. after a `CONNECT`).
    pub fn from_stream(conn: ScriptedMiner, opts: MinerOptions) -> HashingMiner {
        HashingMiner {
            conn,
            opts,
            extranonce1: None,
            extranonce2_size: 0,
            difficulty: 1.0,
            version_mask: None,
            job: None,
            messages: Vec::new(),
            reconnects: Vec::new(),
            reconnected_at: None,
            extranonce_subscribe_answer: None,
            late_answers: Vec::new(),
            login: String::new(),
            next_id: 1,
            en2_counter: 0,
            extranonce_subscribe_id: None,
            abandoned: VecDeque::new(),
            responses: VecDeque::new(),
        }
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Reads one line (waiting until `deadline`, or not at all for `None`)
    /// and applies it if it is JSON.
    fn read_one(&mut self, deadline: Option<Instant>) -> ReadOutcome {
        let r = match deadline {
            Some(d) => self.conn.recv_outcome(d),
            None => self.conn.poll_outcome(),
        };
        if let ReadOutcome::Line(l) = &r
            && let Ok(v) = serde_json::from_str::<Value>(l)
        {
            self.apply(v);
        }
        r
    }

    /// Reads one message before `deadline` and applies it. `false` on timeout/close.
    pub fn pump(&mut self, deadline: Instant) -> bool {
        matches!(self.read_one(Some(deadline)), ReadOutcome::Line(_))
    }

    /// Applies one message if it is already readable, without waiting.
    pub fn poll(&mut self) -> bool {
        matches!(self.read_one(None), ReadOutcome::Line(_))
    }

    fn apply(&mut self, v: Value) {
        self.messages.push(v.clone());
        let params = &v["params"];
        match v.get("method").and_then(Value::as_str) {
            Some("mining.notify") => {
                if let Some(job) = Job::from_notify_params(params) {
                    self.job = Some(job);
                }
            }
            Some("mining.set_difficulty") => {
                if let Some(d) = params[0].as_f64() {
                    self.difficulty = d;
                }
            }
            Some("mining.set_extranonce") => {
                if let Some(en1) = params[0].as_str().and_then(hex_decode) {
                    self.extranonce1 = Some(en1);
                }
                if let Some(n) = params[1].as_u64() {
                    self.extranonce2_size = n as usize;
                }
            }
            Some("mining.set_version_mask") => {
                if let Some(m) = params[0].as_str().and_then(parse_u32_hex) {
                    self.version_mask = Some(m);
                }
            }
            Some("client.reconnect") => {
                self.reconnects.push(params.clone());
                self.reconnected_at.get_or_insert_with(Instant::now);
            }
            Some("mining.ping") => {
                let _ = self.conn.send_json(&json!({"id": v["id"], "result": "pong", "error": null}));
            }
            Some("client.get_version") => {
                let _ = self
                    .conn
                    .send_json(&json!({"id": v["id"], "result": "loka-test-miner/1.0", "error": null}));
            }
            Some(_) => {}
            None => {
                let id = v.get("id").cloned().unwrap_or(Value::Null);
                if self.extranonce_subscribe_id.as_ref() == Some(&id) {
                    self.extranonce_subscribe_id = None;
                    self.extranonce_subscribe_answer = Some(v);
                } else if let Some(pos) = self.abandoned.iter().position(|a| *a == id) {
                    self.abandoned.remove(pos);
                    self.late_answers.push(v);
                } else {
                    self.responses.push_back((Instant::now(), v));
                }
            }
        }
    }

    /// Waits for the response with `id` (first in, first out for repeated ids).
    pub fn wait_response(&mut self, id: &Value, deadline: Instant) -> Option<Value> {
        loop {
            if let Some(pos) = self.responses.iter().position(|(_, r)| r.get("id") == Some(id)) {
                return self.responses.remove(pos).map(|(_, r)| r);
            }
            if !self.pump(deadline) {
                return None;
            }
        }
    }

    /// Sends a request with a fresh integer id and waits for its response.
    pub fn request(&mut self, method: &str, params: Value, timeout: Duration) -> Option<Value> {
        let id = json!(self.take_id());
        self.conn.send_json(&json!({"id": id, "method": method, "params": params})).ok()?;
        let r = self.wait_response(&id, Instant::now() + timeout);
        if r.is_none() {
            self.abandoned.push_back(id);
        }
        r
    }

    /// `mining.subscribe [agent]`; records extranonce1/size. Returns the response.
    pub fn subscribe(&mut self, agent: &str) -> Option<Value> {
        self.subscribe_with(json!([agent]))
    }

    /// `mining.subscribe` with arbitrary params (session id, 4-param form).
    /// With [`MinerOptions::extranonce_subscribe`], then sends
    /// `mining.extranonce.subscribe` without waiting for its answer.
    pub fn subscribe_with(&mut self, params: Value) -> Option<Value> {
        let r = self.request("mining.subscribe", params, super::DEFAULT_TIMEOUT)?;
        let res = &r["result"];
        if let Some(en1) = res[1].as_str().and_then(hex_decode) {
            self.extranonce1 = Some(en1);
        }
        if let Some(n) = res[2].as_u64() {
            self.extranonce2_size = n as usize;
        }
        if self.opts.extranonce_subscribe {
            let id = json!(self.take_id());
            let line = json!({"id": id, "method": "mining.extranonce.subscribe", "params": []});
            self.conn.send_json(&line).ok()?;
            self.extranonce_subscribe_id = Some(id);
        }
        Some(r)
    }

    /// `mining.authorize`; true if the result is `true`.
    pub fn authorize(&mut self, login: &str, password: &str) -> bool {
        self.login = login.to_owned();
        self.request("mining.authorize", json!([login, password]), super::DEFAULT_TIMEOUT)
            .is_some_and(|r| r["result"] == json!(true))
    }

    /// `mining.configure` asking for version rolling with `mask`; returns the
    /// granted mask (also stored), `None` if refused or unknown.
    pub fn configure(&mut self, mask: u32) -> Option<u32> {
        let params = json!([
            ["version-rolling"],
            {"version-rolling.mask": format!("{mask:08x}"), "version-rolling.min-bit-count": 2}
        ]);
        let r = self.request("mining.configure", params, super::DEFAULT_TIMEOUT)?;
        let res = &r["result"];
        self.version_mask = if res["version-rolling"] == json!(true) {
            res["version-rolling.mask"].as_str().and_then(parse_u32_hex)
        } else {
            None
        };
        self.version_mask
    }

    /// Waits until a job, extranonce1 and difficulty are known.
    pub fn wait_for_work(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.job.is_none() || self.extranonce1.is_none() {
            if !self.pump(deadline) {
                return false;
            }
        }
        true
    }

    /// Sends a `mining.submit` with the given params (5 or 6 strings) and the
    /// configured id policy, without waiting. Returns the id used.
    pub fn send_submit(&mut self, params: Value) -> io::Result<Value> {
        let id = match self.opts.repeat_submit_id {
            Some(n) => json!(n),
            None => json!(self.take_id()),
        };
        self.conn.send_json(&json!({"params": params, "id": id, "method": "mining.submit"}))?;
        Ok(id)
    }

    /// Submits a share and waits for its answer.
    pub fn submit(&mut self, share: &SubmittedShare, timeout: Duration) -> ShareOutcome {
        let mut params = vec![
            json!(self.login),
            json!(share.job_id),
            json!(share.extranonce2),
            json!(share.ntime),
            json!(share.nonce),
        ];
        if let Some(vb) = &share.version_bits {
            params.push(json!(vb));
        }
        let Ok(id) = self.send_submit(Value::Array(params)) else {
            return ShareOutcome::NoAnswer;
        };
        match self.wait_response(&id, Instant::now() + timeout) {
            Some(r) => outcome_of(&r),
            None => {
                self.abandoned.push_back(id);
                ShareOutcome::NoAnswer
            }
        }
    }

    /// Hashes until `n_shares` valid shares for the current job and difficulty
    /// are found and submitted, then collects their answers. Follows new jobs,
    /// difficulty and extranonce changes meanwhile. Bounded by `timeout`.
    pub fn mine(&mut self, n_shares: usize, timeout: Duration) -> MineReport {
        let mut run = self.start_run();
        let deadline = run.start + timeout;
        while run.report.shares.len() < n_shares && Instant::now() < deadline {
            if !self.mining_step(&mut run, deadline) {
                return self.finish_run(run);
            }
        }
        // Collect the remaining answers.
        self.collect_answers(&mut run);
        while !run.pending.is_empty() {
            match self.read_one(Some(deadline)) {
                ReadOutcome::Line(_) => self.collect_answers(&mut run),
                ReadOutcome::Closed => {
                    run.report.closed = true;
                    break;
                }
                ReadOutcome::Timeout => break,
            }
        }
        self.finish_run(run)
    }

    /// Mines without a share quota, for tests across a pool switch: hashes
    /// the newest job with the current extranonce and difficulty, submits
    /// every share found, keeps going on rejected, stale or unanswered
    /// shares, and picks up new work (and extranonces) as it arrives. Returns
    /// as soon as an answered share meets `pred` ([`MineReport::matched`]),
    /// when the peer closes ([`MineReport::closed`]), or at `deadline`.
    ///
    /// `pred` sees each share once, when its answer arrives, with
    /// `answered_at` set. Answers are matched first in first out per id, so
    /// if the peer may drop a submit, use increasing ids
    /// (`repeat_submit_id: None`) to keep answers with their shares.
    pub fn mine_until<F: FnMut(&SubmittedShare) -> bool>(
        &mut self,
        deadline: Instant,
        mut pred: F,
    ) -> MineReport {
        let mut run = self.start_run();
        while Instant::now() < deadline {
            let open = self.mining_step(&mut run, deadline);
            let answered = std::mem::take(&mut run.answered);
            if let Some(i) = answered.into_iter().find(|&i| pred(&run.report.shares[i])) {
                run.report.matched = Some(i);
                break;
            }
            if !open {
                break;
            }
        }
        self.finish_run(run)
    }

    fn start_run(&mut self) -> Run {
        Run {
            start: Instant::now(),
            report: MineReport::default(),
            pending: VecDeque::new(),
            answered: Vec::new(),
            work: None,
        }
    }

    /// Ends a run: submits still unanswered are abandoned (their answers, if
    /// any, go to `late_answers`).
    fn finish_run(&mut self, mut run: Run) -> MineReport {
        for i in run.pending.drain(..) {
            self.abandoned.push_back(run.report.shares[i].id.clone());
        }
        run.report.elapsed = run.start.elapsed();
        run.report
    }

    /// One step of a run: applies every message already readable, matches
    /// answers, then hashes one chunk of the current work and submits the
    /// share it finds (or, with no work to hash, waits for one message until
    /// `deadline`). `false` once the connection is closed.
    fn mining_step(&mut self, run: &mut Run, deadline: Instant) -> bool {
        let closed = loop {
            match self.read_one(None) {
                ReadOutcome::Line(_) => continue,
                ReadOutcome::Timeout => break false,
                ReadOutcome::Closed => break true,
            }
        };
        self.collect_answers(run);
        if closed {
            run.report.closed = true;
            return false;
        }
        if run.work.as_ref().is_none_or(|w| !self.is_current(w)) {
            run.work = self.new_work();
        }
        let Some(work) = run.work.as_mut() else {
            // No job, no extranonce yet, or a job that does not build.
            if let ReadOutcome::Closed = self.read_one(Some(deadline)) {
                run.report.closed = true;
                return false;
            }
            self.collect_answers(run);
            return true;
        };
        let (found, hashed) = work.search(NONCES_PER_POLL);
        run.report.hashes += hashed;
        let Some(nonce) = found else {
            return true;
        };
        let share = self.share_for(work, nonce);
        match self.send_submit(share.params.clone()) {
            Ok(id) => {
                run.report.shares.push(SubmittedShare { id, submitted_at: Instant::now(), ..share });
                run.pending.push_back(run.report.shares.len() - 1);
                true
            }
            Err(_) => {
                run.report.closed = true;
                false
            }
        }
    }

    /// Whether `w` still hashes the newest job with the current extranonce,
    /// difficulty and mask, and has nonces left.
    fn is_current(&self, w: &Work) -> bool {
        self.job.as_ref() == Some(&w.job)
            && self.extranonce1.as_ref() == Some(&w.en1)
            && w.en2.len() == self.extranonce2_size
            && w.difficulty == self.difficulty
            && w.mask == self.version_mask
            && w.nonce <= u64::from(u32::MAX)
    }

    /// Work for the newest job with a fresh extranonce2 (`None` without a
    /// job or extranonce1, or if the job does not build a header).
    fn new_work(&mut self) -> Option<Work> {
        let job = self.job.clone()?;
        let en1 = self.extranonce1.clone()?;
        self.en2_counter += 1;
        let counter = self.en2_counter.to_be_bytes();
        let size = self.extranonce2_size;
        let en2 = if size <= 8 {
            counter[8 - size..].to_vec()
        } else {
            [vec![0; size - 8], counter.to_vec()].concat()
        };
        let job_version = parse_u32_hex(&job.version).unwrap_or(0x2000_0000);
        let mask = self.version_mask.filter(|_| self.opts.roll_version);
        let vbits = mask.map(|m| deposit_bits(self.en2_counter as u32, m));
        let version = match (vbits, mask) {
            (Some(b), Some(m)) => (job_version & !m) | b,
            _ => job_version,
        };
        let root = share::merkle_root(&job, &en1, &en2).ok()?;
        let header =
            share::build_header(version, &job.prevhash, &root, &job.ntime, &job.nbits, "00000000").ok()?;
        let target = share::target_for_difficulty(self.difficulty)?;
        Some(Work {
            en1,
            en2,
            difficulty: self.difficulty,
            mask: self.version_mask,
            vbits,
            target,
            target_top: u32::from_be_bytes([target[0], target[1], target[2], target[3]]),
            hasher: share::HeaderHasher::new(&header),
            nonce: 0,
            job,
        })
    }

    /// The share `nonce` makes for `w` (not yet sent: id null, no answer).
    fn share_for(&self, w: &Work, nonce: u32) -> SubmittedShare {
        let job = &w.job;
        let en2_hex = hex_encode(&w.en2);
        let nonce_hex = format!("{nonce:08x}");
        let vbits_hex = w.vbits.map(|b| format!("{b:08x}"));
        // Self-check with the pool's algorithm.
        debug_assert!(
            share::check_share(
                job,
                &w.en1,
                &w.en2,
                &job.ntime,
                &nonce_hex,
                vbits_hex.as_deref(),
                w.mask.unwrap_or(0),
                w.difficulty
            )
            .is_ok()
        );
        let mut params =
            vec![json!(self.login), json!(job.job_id), json!(en2_hex), json!(job.ntime), json!(nonce_hex)];
        if let Some(vb) = &vbits_hex {
            params.push(json!(vb));
        }
        SubmittedShare {
            id: Value::Null,
            params: Value::Array(params),
            job_id: job.job_id.clone(),
            extranonce1: w.en1.clone(),
            extranonce2: en2_hex,
            ntime: job.ntime.clone(),
            nonce: nonce_hex,
            version_bits: vbits_hex,
            difficulty: w.difficulty,
            submitted_at: Instant::now(),
            answered_at: None,
            outcome: ShareOutcome::NoAnswer,
        }
    }

    /// Matches queued responses to pending submits, first in first out per id.
    fn collect_answers(&mut self, run: &mut Run) {
        let mut i = 0;
        while i < run.pending.len() {
            let idx = run.pending[i];
            let id = run.report.shares[idx].id.clone();
            // Only the oldest pending submit with this id may take the answer.
            if run.pending.iter().take(i).any(|&j| run.report.shares[j].id == id) {
                i += 1;
                continue;
            }
            let Some(pos) = self.responses.iter().position(|(_, r)| r.get("id") == Some(&id)) else {
                i += 1;
                continue;
            };
            let Some((at, r)) = self.responses.remove(pos) else {
                i += 1;
                continue;
            };
            let share = &mut run.report.shares[idx];
            share.outcome = outcome_of(&r);
            share.answered_at = Some(at);
            run.pending.remove(i);
            run.answered.push(idx);
        }
    }
}
