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
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
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
}

impl Default for MinerOptions {
    fn default() -> MinerOptions {
        MinerOptions { repeat_submit_id: Some(4), roll_version: true }
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
    /// Answer.
    pub outcome: ShareOutcome,
}

/// Result of [`HashingMiner::mine`].
#[derive(Clone, Debug, Default)]
pub struct MineReport {
    /// Shares in submit order with their answers.
    pub shares: Vec<SubmittedShare>,
    /// Hashes computed.
    pub hashes: u64,
    /// Wall time spent.
    pub elapsed: Duration,
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
    /// Newest job.
    pub job: Option<Job>,
    /// Every message (JSON) received, in order.
    pub messages: Vec<Value>,
    /// Login used for submits (from the last authorize).
    pub login: String,
    next_id: u64,
    en2_counter: u64,
    /// Responses received but not yet claimed (id, message).
    responses: VecDeque<Value>,
}

impl HashingMiner {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> io::Result<HashingMiner> {
        Self::connect_with(addr, MinerOptions::default())
    }

    /// Connects to `addr` with options.
    pub fn connect_with(addr: SocketAddr, opts: MinerOptions) -> io::Result<HashingMiner> {
        Ok(HashingMiner {
            conn: ScriptedMiner::connect(addr)?,
            opts,
            extranonce1: None,
            extranonce2_size: 0,
            difficulty: 1.0,
            version_mask: None,
            job: None,
            messages: Vec::new(),
            login: String::new(),
            next_id: 1,
            en2_counter: 0,
            responses: VecDeque::new(),
        })
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Reads one message before `deadline` and applies it. `false` on timeout/close.
    pub fn pump(&mut self, deadline: Instant) -> bool {
        match self.conn.recv_outcome(deadline) {
            ReadOutcome::Line(l) => {
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    self.apply(v);
                }
                true
            }
            _ => false,
        }
    }

    /// Applies one message if it is already readable, without waiting.
    pub fn poll(&mut self) -> bool {
        match self.conn.poll_outcome() {
            ReadOutcome::Line(l) => {
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    self.apply(v);
                }
                true
            }
            _ => false,
        }
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
            Some("mining.ping") => {
                let _ = self.conn.send_json(&json!({"id": v["id"], "result": "pong", "error": null}));
            }
            Some("client.get_version") => {
                let _ = self
                    .conn
                    .send_json(&json!({"id": v["id"], "result": "loka-test-miner/1.0", "error": null}));
            }
            Some(_) => {}
            None => self.responses.push_back(v),
        }
    }

    /// Waits for the response with `id` (first in, first out for repeated ids).
    pub fn wait_response(&mut self, id: &Value, deadline: Instant) -> Option<Value> {
        loop {
            if let Some(pos) = self.responses.iter().position(|r| r.get("id") == Some(id)) {
                return self.responses.remove(pos);
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
        self.wait_response(&id, Instant::now() + timeout)
    }

    /// `mining.subscribe [agent]`; records extranonce1/size. Returns the response.
    pub fn subscribe(&mut self, agent: &str) -> Option<Value> {
        self.subscribe_with(json!([agent]))
    }

    /// `mining.subscribe` with arbitrary params (session id, 4-param form).
    pub fn subscribe_with(&mut self, params: Value) -> Option<Value> {
        let r = self.request("mining.subscribe", params, super::DEFAULT_TIMEOUT)?;
        let res = &r["result"];
        if let Some(en1) = res[1].as_str().and_then(hex_decode) {
            self.extranonce1 = Some(en1);
        }
        if let Some(n) = res[2].as_u64() {
            self.extranonce2_size = n as usize;
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
        match self.send_submit(Value::Array(params)) {
            Ok(id) => match self.wait_response(&id, Instant::now() + timeout) {
                Some(r) => outcome_of(&r),
                None => ShareOutcome::NoAnswer,
            },
            Err(_) => ShareOutcome::NoAnswer,
        }
    }

    /// Hashes until `n_shares` valid shares for the current job and difficulty
    /// are found and submitted, then collects their answers. Follows new jobs,
    /// difficulty and extranonce changes meanwhile. Bounded by `timeout`.
    pub fn mine(&mut self, n_shares: usize, timeout: Duration) -> MineReport {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut report = MineReport::default();
        let mut pending: VecDeque<usize> = VecDeque::new(); // indexes into report.shares
        // Template state.
        struct Work {
            job_id: String,
            en1: Vec<u8>,
            difficulty: f64,
            mask: Option<u32>,
            target: [u8; 32],
            target_top: u32,
            hasher: share::HeaderHasher,
            en2: Vec<u8>,
            vbits: Option<u32>,
            nonce: u64,
        }
        let mut work: Option<Work> = None;
        let mut found = 0usize;
        'outer: while found < n_shares && Instant::now() < deadline {
            // Drain what has arrived (1 ms poll) and collect answers.
            while self.poll() {}
            self.collect_answers(&mut report, &mut pending);
            if self.job.is_none() || self.extranonce1.is_none() {
                if !self.pump(deadline) {
                    break;
                }
                continue;
            }
            let job = self.job.clone().expect("job");
            let en1 = self.extranonce1.clone().expect("en1");
            let stale = work.as_ref().is_none_or(|w| {
                w.job_id != job.job_id
                    || w.en1 != en1
                    || w.difficulty != self.difficulty
                    || w.mask != self.version_mask
                    || w.nonce > u64::from(u32::MAX)
            });
            if stale {
                self.en2_counter += 1;
                let mut en2 = self.en2_counter.to_be_bytes().to_vec();
                let size = self.extranonce2_size;
                en2 = if size <= 8 { en2[8 - size..].to_vec() } else { [vec![0; size - 8], en2].concat() };
                let job_version = parse_u32_hex(&job.version).unwrap_or(0x2000_0000);
                let mask = self.version_mask.filter(|_| self.opts.roll_version);
                let vbits = mask.map(|m| deposit_bits(self.en2_counter as u32, m));
                let version = match vbits {
                    Some(b) => (job_version & !mask.unwrap_or(0)) | b,
                    None => job_version,
                };
                let Ok(root) = share::merkle_root(&job, &en1, &en2) else {
                    break;
                };
                let Ok(header) =
                    share::build_header(version, &job.prevhash, &root, &job.ntime, &job.nbits, "00000000")
                else {
                    break;
                };
                let Some(target) = share::target_for_difficulty(self.difficulty) else {
                    break;
                };
                work = Some(Work {
                    job_id: job.job_id.clone(),
                    en1,
                    difficulty: self.difficulty,
                    mask: self.version_mask,
                    target,
                    target_top: u32::from_be_bytes([target[0], target[1], target[2], target[3]]),
                    hasher: share::HeaderHasher::new(&header),
                    en2,
                    vbits,
                    nonce: 0,
                });
            }
            let w = work.as_mut().expect("work");
            // Hash a chunk, then poll the socket again.
            let end = (w.nonce + 50_000).min(u64::from(u32::MAX) + 1);
            let first_nonce = w.nonce;
            while w.nonce < end {
                let nonce = w.nonce as u32;
                w.nonce += 1;
                let state = w.hasher.hash_state(nonce);
                // Fast reject on the top 32 bits, exact compare otherwise.
                let top = state[7].swap_bytes();
                if top > w.target_top {
                    continue;
                }
                let mut hash = share::state_to_bytes(&state);
                hash.reverse();
                if hash > w.target {
                    continue;
                }
                let en2_hex = hex_encode(&w.en2);
                let nonce_hex = format!("{nonce:08x}");
                let vbits_hex = w.vbits.map(|b| format!("{b:08x}"));
                // Self-check with the pool's algorithm.
                debug_assert!(
                    share::check_share(
                        &job,
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
                let mut params = vec![
                    json!(self.login),
                    json!(job.job_id),
                    json!(en2_hex),
                    json!(job.ntime),
                    json!(nonce_hex),
                ];
                if let Some(vb) = &vbits_hex {
                    params.push(json!(vb));
                }
                let params = Value::Array(params);
                let difficulty = w.difficulty;
                let Ok(id) = self.send_submit(params.clone()) else {
                    break 'outer;
                };
                report.shares.push(SubmittedShare {
                    id,
                    params,
                    job_id: job.job_id.clone(),
                    extranonce2: en2_hex,
                    ntime: job.ntime.clone(),
                    nonce: nonce_hex,
                    version_bits: vbits_hex,
                    difficulty,
                    outcome: ShareOutcome::NoAnswer,
                });
                pending.push_back(report.shares.len() - 1);
                found += 1;
                if found >= n_shares {
                    break;
                }
            }
            report.hashes += w.nonce - first_nonce;
        }
        // Collect the remaining answers.
        while !pending.is_empty() {
            self.collect_answers(&mut report, &mut pending);
            if pending.is_empty() || !self.pump(deadline) {
                break;
            }
        }
        self.collect_answers(&mut report, &mut pending);
        report.elapsed = start.elapsed();
        report
    }

    /// Matches queued responses to pending submits, first in first out per id.
    fn collect_answers(&mut self, report: &mut MineReport, pending: &mut VecDeque<usize>) {
        let mut i = 0;
        while i < pending.len() {
            let idx = pending[i];
            let id = report.shares[idx].id.clone();
            // Only the oldest pending submit with this id may take the answer.
            if pending.iter().take(i).any(|&j| report.shares[j].id == id) {
                i += 1;
                continue;
            }
            if let Some(pos) = self.responses.iter().position(|r| r.get("id") == Some(&id)) {
                let r = self.responses.remove(pos).expect("response");
                report.shares[idx].outcome = outcome_of(&r);
                pending.remove(i);
            } else {
                i += 1;
            }
        }
    }
}
