//! End-to-end figures of the release binary against the design targets:
//! memory per idle miner, latency added per share round trip, and CPU per
//! forwarded share.
//!
//! Run with `cargo bench --bench proxy`. Without `--bench` (as `cargo test
//! --all-targets` runs it) it does a small smoke run of the same steps.
//!
//! A fast pool runs in this process on std threads (one per connection); the
//! proxy is the real `loka-stratum` binary on 127.0.0.1 port 0. Every socket
//! has a read timeout and a watchdog kills everything after
//! [`WATCHDOG_TIMEOUT`], so a failure ends in an error, never a hang.

use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

// The floor bench's job line and byte searches, and its fd limit: one copy
// for both benches (each uses only part of those modules).
#[allow(dead_code)]
#[path = "floor/process.rs"]
mod process;
#[allow(dead_code)]
#[path = "floor/stratum.rs"]
mod stratum;

use process::raise_fd_limit;
use stratum::{JOB_ID, find, notify_line, raw_id};

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_loka-stratum");
/// Account the proxy rewrites logins to, so the rewrite path is measured.
const ACCOUNT: &str = "bc1qbench";
/// Longest wait for any one line from a socket.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the proxy to print its addresses.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The whole run is killed after this.
const WATCHDOG_TIMEOUT: Duration = Duration::from_secs(180);
/// Time given to the proxy to settle before memory is read.
const SETTLE: Duration = Duration::from_millis(300);
/// Submits a pipelining miner sends before reading their answers.
const WINDOW_SUBMITS: usize = 100;

/// Design targets.
const TARGET_KIB_PER_MINER: f64 = 8.0;
const TARGET_ADDED_LATENCY_US: f64 = 20.0;
const TARGET_CPU_US_PER_SHARE: f64 = 4.0;

/// How much work each figure gets.
struct Sizes {
    idle_miners: usize,
    round_trips: usize,
    pipelining_miners: usize,
    pipelined_shares: usize,
}

const FULL: Sizes =
    Sizes { idle_miners: 500, round_trips: 20_000, pipelining_miners: 4, pipelined_shares: 200_000 };
const SMOKE: Sizes =
    Sizes { idle_miners: 20, round_trips: 200, pipelining_miners: 2, pipelined_shares: 2_000 };

/// The bench failed: what was being done, and why.
type Failure = String;

fn fail<T>(what: &str, e: impl std::fmt::Display) -> Result<T, Failure> {
    Err(format!("{what}: {e}"))
}

/// The proxy's pid, for the watchdog.
static PROXY_PID: OnceLock<u32> = OnceLock::new();

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let done = Arc::new(AtomicBool::new(false));
    watchdog(done.clone());
    let result = run(if full { &FULL } else { &SMOKE });
    done.store(true, Ordering::SeqCst);
    if let Err(e) = result {
        eprintln!("proxy bench failed: {e}");
        std::process::exit(1);
    }
}

/// Kills the proxy and exits if the run takes longer than [`WATCHDOG_TIMEOUT`].
fn watchdog(done: Arc<AtomicBool>) {
    thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < WATCHDOG_TIMEOUT {
            if done.load(Ordering::SeqCst) {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        eprintln!("proxy bench failed: still running after {WATCHDOG_TIMEOUT:?}");
        if let Some(&pid) = PROXY_PID.get() {
            signal(pid, libc::SIGKILL);
        }
        std::process::exit(2);
    });
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory effects; a stale pid at worst gets ESRCH.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

fn run(sizes: &Sizes) -> Result<(), Failure> {
    let fds = raise_fd_limit();
    // Each idle miner costs 2 fds here (miner and pool side) and 2 in the proxy.
    let idle_miners = sizes.idle_miners.min((fds.saturating_sub(64) / 2) as usize);
    let pool = Pool::start()?;
    let proxy = Proxy::start(pool.addr)?;
    let tick = clock_ticks_per_second();

    let memory = idle_memory(&proxy, idle_miners)?;
    let relay = Relay::start(pool.addr)?;
    let latency = added_latency(&proxy, pool.addr, &relay, sizes.round_trips)?;
    let cpu = cpu_per_share(&proxy, sizes.pipelining_miners, sizes.pipelined_shares, tick)?;
    proxy.terminate()?;

    let added_median = us(median(&latency.proxied)) - us(median(&latency.direct));
    let relay_median = us(median(&latency.relayed)) - us(median(&latency.direct));
    let per_share = |ticks: u64| ticks as f64 * 1e6 / tick as f64 / latency.proxied.len().max(1) as f64;
    let one_at_a_time_us = per_share(latency.proxy_ticks);
    let relay_cpu_us = per_share(latency.relay_ticks);

    let mode = if sizes.round_trips == FULL.round_trips { "full" } else { "smoke" };
    println!("loka-stratum proxy bench ({mode} run, release binary, -u {ACCOUNT})");
    println!();
    println!(
        "memory:  VmRSS {} KiB before, {} KiB after {} idle miners \
         (each subscribed, authorized, sent a ~1 KiB notify)",
        memory.before_kib, memory.after_kib, memory.miners
    );
    if memory.miners < sizes.idle_miners {
        println!("         (fd limit {fds} allows only {} of {} miners)", memory.miners, sizes.idle_miners);
    }
    println!("latency: {} sequential submit round trips per path (TCP_NODELAY)", latency.direct.len());
    for (name, t) in [
        ("direct to pool", &latency.direct),
        ("plain relay", &latency.relayed),
        ("loka-stratum", &latency.proxied),
    ] {
        println!("         {name:<15} median {:>7.1} µs   p99 {:>7.1} µs", us(median(t)), us(p99(t)));
    }
    println!(
        "cpu:     {} shares from {} pipelining miners (window {WINDOW_SUBMITS}) in {:.2} s ({:.0} shares/s); \
         proxy utime+stime {} ticks at {tick} Hz",
        cpu.shares,
        cpu.miners,
        cpu.wall.as_secs_f64(),
        cpu.shares as f64 / cpu.wall.as_secs_f64(),
        cpu.ticks,
    );
    println!(
        "         one at a time (the latency run): {} ticks for {} shares, {} ticks while idle; \
         plain relay {} ticks",
        latency.proxy_ticks,
        latency.proxied.len(),
        latency.idle_ticks,
        latency.relay_ticks,
    );
    println!();

    let row = |name: &str, value: String, target: Option<f64>, unit: &str| {
        let (target, verdict) = match target {
            Some(t) => (format!("<= {t} {unit}"), if value_of(&value) <= t { "ok" } else { "OVER" }),
            None => ("-".into(), ""),
        };
        println!("| {name:<46} | {value:>12} | {target:>10} | {verdict:<4} |");
    };
    println!("| {:<46} | {:>12} | {:>10} | {:<4} |", "figure", "measured", "target", "");
    println!("|{:-<48}|{:->14}|{:->12}|{:-<6}|", "", "", "", "");
    row(
        &format!("memory per idle miner ({} miners)", memory.miners),
        format!("{:.2} KiB", memory.kib_per_miner),
        Some(TARGET_KIB_PER_MINER),
        "KiB",
    );
    row(
        "added latency per share round trip, median",
        format!("{added_median:.1} µs"),
        Some(TARGET_ADDED_LATENCY_US),
        "µs",
    );
    row("  plain relay for comparison, median", format!("{relay_median:.1} µs"), None, "");
    row("round trip via loka-stratum, p99", format!("{:.1} µs", us(p99(&latency.proxied))), None, "");
    row("  direct to pool, p99", format!("{:.1} µs", us(p99(&latency.direct))), None, "");
    row(
        &format!("CPU per forwarded share ({} pipelining miners)", cpu.miners),
        format!("{:.2} µs", cpu.us_per_share),
        Some(TARGET_CPU_US_PER_SHARE),
        "µs",
    );
    row("CPU per forwarded share, one at a time", format!("{one_at_a_time_us:.2} µs"), None, "");
    row("  plain relay for comparison", format!("{relay_cpu_us:.2} µs"), None, "");
    Ok(())
}

/// The number at the start of a formatted figure.
fn value_of(figure: &str) -> f64 {
    figure.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(f64::INFINITY)
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

// ---------------------------------------------------------------- the pool

/// A fast pool: answers subscribe, authorize (then sends a difficulty and one
/// job) and accepts every submit at once, without checking it.
struct Pool {
    addr: SocketAddr,
}

impl Pool {
    fn start() -> Result<Pool, Failure> {
        let listener = TcpListener::bind("127.0.0.1:0").or_else(|e| fail("bind pool", e))?;
        let addr = listener.local_addr().or_else(|e| fail("pool address", e))?;
        let next_en1 = Arc::new(AtomicU32::new(0x0800_0000));
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let en1 = next_en1.fetch_add(1, Ordering::Relaxed);
                // Small stacks: there is one thread per proxied miner.
                let _ = thread::Builder::new().stack_size(64 * 1024).spawn(move || {
                    let _ = serve_pool_connection(stream, en1);
                });
            }
        });
        Ok(Pool { addr })
    }
}

fn serve_pool_connection(stream: TcpStream, en1: u32) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let notify = notify_line();
    let mut reader = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
    let mut writer = BufWriter::with_capacity(64 * 1024, stream);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let id = raw_id(&line);
        writer.write_all(b"{\"id\":")?;
        writer.write_all(id)?;
        if find(&line, b"\"mining.subscribe\"").is_some() {
            writeln!(writer, ",\"result\":[[],\"{en1:08x}\",4],\"error\":null}}")?;
        } else if find(&line, b"\"mining.authorize\"").is_some() {
            writer.write_all(b",\"result\":true,\"error\":null}\n")?;
            writer.write_all(b"{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[65536]}\n")?;
            writer.write_all(notify.as_bytes())?;
        } else {
            writer.write_all(b",\"result\":true,\"error\":null}\n")?;
        }
        // Answer a pipelined batch in one write, a single request at once.
        if reader.buffer().is_empty() {
            writer.flush()?;
        }
    }
}

// --------------------------------------------------------------- the relay

/// A plain byte relay on blocking std threads (two per connection): the
/// floor any proxy pays for an extra hop on this machine.
struct Relay {
    addr: SocketAddr,
    /// Kernel ids of the copying threads, for their CPU time.
    threads: Arc<Mutex<Vec<libc::pid_t>>>,
}

impl Relay {
    fn start(target: SocketAddr) -> Result<Relay, Failure> {
        let listener = TcpListener::bind("127.0.0.1:0").or_else(|e| fail("bind relay", e))?;
        let addr = listener.local_addr().or_else(|e| fail("relay address", e))?;
        let threads = Arc::new(Mutex::new(Vec::new()));
        let tids = threads.clone();
        thread::spawn(move || {
            for miner in listener.incoming() {
                let Ok(miner) = miner else { continue };
                let Ok(pool) = TcpStream::connect_timeout(&target, READ_TIMEOUT) else { continue };
                let (Ok(miner2), Ok(pool2)) = (miner.try_clone(), pool.try_clone()) else { continue };
                let _ = miner.set_nodelay(true).and(pool.set_nodelay(true));
                for (from, to) in [(miner, pool), (pool2, miner2)] {
                    let tids = tids.clone();
                    thread::spawn(move || {
                        // SAFETY: gettid has no memory effects.
                        tids.lock().map(|mut t| t.push(unsafe { libc::gettid() })).ok();
                        pipe(from, to)
                    });
                }
            }
        });
        Ok(Relay { addr, threads })
    }

    /// utime + stime of the copying threads, in clock ticks.
    fn cpu_ticks(&self) -> Result<u64, Failure> {
        let tids = self.threads.lock().map_err(|_| "relay thread list poisoned")?.clone();
        tids.iter().map(|tid| stat_ticks(&format!("/proc/self/task/{tid}/stat"))).sum()
    }
}

/// Copies `from` to `to` until either side ends.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0; 64 * 1024];
    while let Ok(n @ 1..) = io::Read::read(&mut from, &mut buf) {
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

// --------------------------------------------------------------- the proxy

/// The running binary.
struct Proxy {
    child: Child,
    addr: SocketAddr,
    pid: u32,
}

fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest.find(|c: char| c == ',' || c == '/' || c.is_whitespace()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

impl Proxy {
    fn start(pool: SocketAddr) -> Result<Proxy, Failure> {
        // The books go to a directory of the bench's own, as a real gateway's
        // would go to its state directory (their commits are part of the cost).
        let books = std::env::temp_dir().join(format!("loka-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&books);
        std::fs::create_dir_all(&books).or_else(|e| fail("create the books directory", e))?;
        let mut child = Command::new(BIN)
            .env("LOKA_STORE_PATH", books.join("books.redb"))
            .args(["start", "-b", "127.0.0.1:0", "-p", &pool.to_string(), "-u", ACCOUNT])
            .env("RUST_LOG", "info")
            .env("LOKA_METRICS_BIND_ADDRESS", "127.0.0.1:0")
            .env("LOKA_SERVER_MAX_CONNECTIONS", "10000")
            .env("LOKA_LIMITER_CONNECTIONS", "10000")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .or_else(|e| fail(&format!("spawn {BIN}"), e))?;
        let pid = child.id();
        let _ = PROXY_PID.set(pid);
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = mpsc::channel();
        // Drains the log for the whole run so the proxy never blocks on it.
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut proxy = Proxy { child, addr: "0.0.0.0:0".parse().map_err(|_| "addr")?, pid };
        match wait_line(&rx, "listening on ", START_TIMEOUT) {
            Some(line) => proxy.addr = addr_after(&line, "listening on ").ok_or("no listen address")?,
            None => return Err("proxy did not print its listening address".into()),
        }
        // The rest of the log is not needed; the thread keeps draining it.
        thread::spawn(move || while rx.recv().is_ok() {});
        Ok(proxy)
    }

    fn status_kib(&self, field: &str) -> Result<u64, Failure> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .or_else(|e| fail("read proxy status", e))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| format!("no {field} in /proc/{}/status", self.pid))
    }

    /// utime + stime in clock ticks.
    fn cpu_ticks(&self) -> Result<u64, Failure> {
        stat_ticks(&format!("/proc/{}/stat", self.pid))
    }

    /// SIGTERM, then a bounded wait for the exit.
    fn terminate(mut self) -> Result<(), Failure> {
        signal(self.pid, libc::SIGTERM);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(10));
        }
        Err("proxy did not exit within 10 s of SIGTERM".into())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime from a `/proc/.../stat` file, in clock ticks.
fn stat_ticks(path: &str) -> Result<u64, Failure> {
    let stat = std::fs::read_to_string(path).or_else(|e| fail(&format!("read {path}"), e))?;
    // Fields after the command name, which ends at the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or("bad stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let get = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok()).ok_or("bad stat field");
    Ok(get(14)? + get(15)?)
}

fn wait_line(rx: &Receiver<String>, needle: &str, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()?;
        if line.contains(needle) {
            return Some(line);
        }
    }
}

// --------------------------------------------------------------- the miner

/// A miner on a blocking socket with a read timeout.
struct Miner {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    line: String,
}

fn submit_line(out: &mut Vec<u8>, id: u64) {
    let _ = writeln!(
        out,
        "{{\"id\":{id},\"method\":\"mining.submit\",\"params\":[\"alice.rig1\",\"{JOB_ID}\",\"{:08x}\",\"6b04a382\",\"8c750600\"]}}",
        id as u32
    );
}

impl Miner {
    fn connect(addr: SocketAddr) -> Result<Miner, Failure> {
        let stream = TcpStream::connect_timeout(&addr, READ_TIMEOUT).or_else(|e| fail("connect", e))?;
        stream.set_nodelay(true).or_else(|e| fail("nodelay", e))?;
        stream.set_read_timeout(Some(READ_TIMEOUT)).or_else(|e| fail("read timeout", e))?;
        stream.set_write_timeout(Some(READ_TIMEOUT)).or_else(|e| fail("write timeout", e))?;
        let writer = stream.try_clone().or_else(|e| fail("clone socket", e))?;
        Ok(Miner { reader: BufReader::new(stream), writer, line: String::new() })
    }

    /// Sends subscribe and authorize back to back, without waiting.
    fn start_handshake(&mut self) -> Result<(), Failure> {
        self.send(
            b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"bmminer/2.0.0\"]}\n\
              {\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"alice.rig1\",\"x\"]}\n",
        )
    }

    /// Reads until the job arrives (after the authorize answer).
    fn finish_handshake(&mut self) -> Result<(), Failure> {
        self.read_until("mining.notify")
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.writer.write_all(bytes).or_else(|e| fail("miner write", e))
    }

    /// Reads one line into `self.line`.
    fn read_line(&mut self) -> Result<&str, Failure> {
        self.line.clear();
        match self.reader.read_line(&mut self.line) {
            Ok(0) => Err("connection closed".into()),
            Ok(_) => Ok(&self.line),
            Err(e) => fail("miner read", e),
        }
    }

    fn read_until(&mut self, needle: &str) -> Result<(), Failure> {
        while !self.read_line()?.contains(needle) {}
        Ok(())
    }

    /// Reads lines until the answer to a submit; fails on a rejection.
    fn read_accept(&mut self) -> Result<(), Failure> {
        loop {
            let line = self.read_line()?;
            if line.contains("\"result\":true") {
                return Ok(());
            }
            if line.contains("\"result\"") || line.contains("\"error\":[") {
                return Err(format!("share not accepted: {}", line.trim_end()));
            }
        }
    }

    /// One submit and its answer; returns the round trip.
    fn round_trip(&mut self, id: u64, buf: &mut Vec<u8>) -> Result<Duration, Failure> {
        buf.clear();
        submit_line(buf, id);
        let started = Instant::now();
        self.send(buf)?;
        self.read_accept()?;
        Ok(started.elapsed())
    }
}

// ----------------------------------------------------------------- figures

struct Memory {
    miners: usize,
    before_kib: u64,
    after_kib: u64,
    kib_per_miner: f64,
}

/// VmRSS growth of the proxy per idle, authorized miner.
fn idle_memory(proxy: &Proxy, miners: usize) -> Result<Memory, Failure> {
    // One miner first, so the shared read buffer and lazy statics are paid
    // before the baseline and not spread over the idle miners.
    let mut warm = Miner::connect(proxy.addr)?;
    warm.start_handshake()?;
    warm.finish_handshake().map_err(|e| format!("warm-up miner: {e}"))?;
    drop(warm);
    thread::sleep(SETTLE);
    let before_kib = proxy.status_kib("VmRSS")?;
    let mut idle = Vec::with_capacity(miners);
    for i in 0..miners {
        let mut m = Miner::connect(proxy.addr).map_err(|e| format!("idle miner {i}: {e}"))?;
        m.start_handshake().map_err(|e| format!("idle miner {i}: {e}"))?;
        idle.push(m);
    }
    for (i, m) in idle.iter_mut().enumerate() {
        m.finish_handshake().map_err(|e| format!("idle miner {i} handshake: {e}"))?;
    }
    thread::sleep(SETTLE);
    let after_kib = proxy.status_kib("VmRSS")?;
    drop(idle);
    let kib_per_miner = after_kib.saturating_sub(before_kib) as f64 / miners as f64;
    Ok(Memory { miners, before_kib, after_kib, kib_per_miner })
}

/// Sorted submit round trips per path, and the proxy's CPU time for its own.
struct Latency {
    direct: Vec<Duration>,
    relayed: Vec<Duration>,
    proxied: Vec<Duration>,
    /// Proxy CPU ticks while its own round trips ran.
    proxy_ticks: u64,
    /// Proxy CPU ticks while the other paths ran (it should be idle).
    idle_ticks: u64,
    /// The plain relay's CPU ticks while its round trips ran.
    relay_ticks: u64,
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `sorted` must be sorted.
fn median(sorted: &[Duration]) -> Duration {
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// `sorted` must be sorted.
fn p99(sorted: &[Duration]) -> Duration {
    sorted.get(sorted.len() * 99 / 100).copied().unwrap_or_default()
}

/// Sequential submit round trips, direct, through the plain relay and
/// through the proxy, interleaved in blocks so drift in the machine's load
/// hits all three alike.
fn added_latency(
    proxy: &Proxy,
    pool: SocketAddr,
    relay: &Relay,
    round_trips: usize,
) -> Result<Latency, Failure> {
    const BLOCK: usize = 1000;
    let names = ["direct", "relayed", "proxied"];
    let mut miners = [Miner::connect(pool)?, Miner::connect(relay.addr)?, Miner::connect(proxy.addr)?];
    for (m, name) in miners.iter_mut().zip(names) {
        m.start_handshake()?;
        m.finish_handshake().map_err(|e| format!("{name} handshake: {e}"))?;
    }
    let mut buf = Vec::with_capacity(256);
    let mut times: [Vec<Duration>; 3] = Default::default();
    let mut id = 0;
    // Warm up every path.
    for _ in 0..BLOCK.min(round_trips) {
        for (m, name) in miners.iter_mut().zip(names) {
            id += 1;
            m.round_trip(id, &mut buf).map_err(|e| format!("{name} warm-up: {e}"))?;
        }
    }
    // Proxy CPU is counted over its own blocks only.
    let mut proxy_ticks = 0;
    let mut idle_ticks = 0;
    let mut relay_ticks = 0;
    while times[0].len() < round_trips {
        let n = BLOCK.min(round_trips - times[0].len());
        for (path, ((m, t), name)) in miners.iter_mut().zip(&mut times).zip(names).enumerate() {
            let before = (proxy.cpu_ticks()?, relay.cpu_ticks()?);
            for _ in 0..n {
                id += 1;
                t.push(m.round_trip(id, &mut buf).map_err(|e| format!("{name}: {e}"))?);
            }
            let spent = proxy.cpu_ticks()? - before.0;
            match path {
                1 => relay_ticks += relay.cpu_ticks()? - before.1,
                2 => proxy_ticks += spent,
                _ => {}
            }
            if path != 2 {
                idle_ticks += spent;
            }
        }
    }
    for t in &mut times {
        t.sort();
    }
    let [direct, relayed, proxied] = times;
    Ok(Latency { direct, relayed, proxied, proxy_ticks, idle_ticks, relay_ticks })
}

struct Cpu {
    miners: usize,
    shares: usize,
    ticks: u64,
    wall: Duration,
    us_per_share: f64,
}

/// Proxy CPU time per share while `miners` pipeline `shares` submits in total.
fn cpu_per_share(proxy: &Proxy, miners: usize, shares: usize, tick: u64) -> Result<Cpu, Failure> {
    let per_miner = shares / miners;
    let mut ready = Vec::with_capacity(miners);
    for _ in 0..miners {
        let mut m = Miner::connect(proxy.addr)?;
        m.start_handshake()?;
        m.finish_handshake()?;
        ready.push(m);
    }
    let before = proxy.cpu_ticks()?;
    let started = Instant::now();
    let workers: Vec<_> = ready
        .into_iter()
        .enumerate()
        .map(|(i, mut m)| {
            thread::spawn(move || -> Result<(), Failure> {
                let mut batch = Vec::with_capacity(WINDOW_SUBMITS * 128);
                let mut sent = 0;
                while sent < per_miner {
                    let n = WINDOW_SUBMITS.min(per_miner - sent);
                    batch.clear();
                    for k in 0..n {
                        submit_line(&mut batch, (sent + k) as u64);
                    }
                    m.send(&batch)?;
                    for _ in 0..n {
                        m.read_accept().map_err(|e| format!("pipelining miner {i}: {e}"))?;
                    }
                    sent += n;
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "pipelining miner panicked")??;
    }
    let wall = started.elapsed();
    let ticks = proxy.cpu_ticks()? - before;
    let shares = per_miner * miners;
    let us_per_share = ticks as f64 * 1e6 / tick as f64 / shares as f64;
    Ok(Cpu { miners, shares, ticks, wall, us_per_share })
}
