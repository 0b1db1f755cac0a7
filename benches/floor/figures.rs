//! How each figure is measured, on any pair of servers (the bare relay and
//! the proxy, natively or under an emulator): starting them, round trips
//! one at a time, and a fleet of idle miners that then submit all at once.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use crate::Failure;
use crate::miner::{Burst, Fleet, Miner};
use crate::process::{Cpu, Server, addr_after, cpu_reading};

/// Account the proxy rewrites logins to, so the rewrite path is measured.
const ACCOUNT: &str = "bc1qbench";

/// `program` run through `runner` (an emulator or valgrind and their
/// arguments), or directly when `runner` is empty.
fn command(runner: &[String], program: &Path) -> Command {
    match runner.split_first() {
        Some((tool, args)) => {
            let mut cmd = Command::new(tool);
            cmd.args(args).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// The bare relay (`program --relay POOL`), which prints its address.
pub fn start_relay(
    runner: &[String],
    program: &Path,
    pool: SocketAddr,
    timeout: Duration,
) -> Result<Server, Failure> {
    let mut cmd = command(runner, program);
    cmd.args(["--relay", &pool.to_string()]);
    Server::start(cmd, "relay", timeout, |line| line.trim().parse().ok())
}

/// `loka-stratum start` against `pool` on 127.0.0.1 port 0, its books in
/// a new directory under `dir` (one per process: the books file is locked).
pub fn start_proxy(
    runner: &[String],
    program: &Path,
    pool: SocketAddr,
    dir: &Path,
    timeout: Duration,
) -> Result<Server, Failure> {
    static STARTED: AtomicU32 = AtomicU32::new(0);
    let books = dir.join(format!("books-{}", STARTED.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&books).map_err(|e| format!("create {}: {e}", books.display()))?;
    let mut cmd = command(runner, program);
    // The operator's own settings stay out of the bench.
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|n| n.starts_with("LOKA_")) {
            cmd.env_remove(name);
        }
    }
    cmd.args(["start", "-b", "127.0.0.1:0", "-p", &pool.to_string(), "-u", ACCOUNT])
        .env("LOKA_STORE_PATH", books.join("books.redb"))
        .env("LOKA_METRICS_BIND_ADDRESS", "127.0.0.1:0")
        .env("LOKA_SERVER_MAX_CONNECTIONS", "10000")
        .env("LOKA_LIMITER_CONNECTIONS", "10000")
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID");
    Server::start(cmd, "loka-stratum", timeout, |line| addr_after(line, "listening on "))
}

/// Round trips of one path, sorted, and what its server and the bench
/// spent on them.
#[derive(Default)]
pub struct Trips {
    pub samples: Vec<Duration>,
    /// The path's server over its own blocks (nothing for direct).
    pub cpu: Cpu,
    /// The path's server over the other paths' blocks: background work
    /// (timers), which should be about nothing.
    pub idle_cpu: Cpu,
    /// The bench itself (pool and miner) over the path's blocks.
    pub bench_cpu: Cpu,
    /// `cpu` by thread name.
    pub by_thread: Vec<(String, Cpu)>,
    /// Whether a thread of the server came or went during a block.
    pub threads_changed: bool,
}

impl Trips {
    pub fn median(&self) -> Duration {
        self.samples.get(self.samples.len() / 2).copied().unwrap_or_default()
    }

    pub fn p99(&self) -> Duration {
        self.samples.get(self.samples.len() * 99 / 100).copied().unwrap_or_default()
    }

    pub fn per_share(&self, cpu: Cpu) -> PerShare {
        PerShare::of(cpu, self.samples.len())
    }
}

/// CPU time and wake-ups per share.
pub struct PerShare {
    pub us: f64,
    pub wakeups: f64,
}

impl PerShare {
    pub fn of(cpu: Cpu, shares: usize) -> PerShare {
        let shares = shares.max(1) as f64;
        PerShare { us: cpu.ns as f64 / 1e3 / shares, wakeups: cpu.runs as f64 / shares }
    }
}

/// Sequential submit round trips direct to the pool, through `servers[0]`
/// and through `servers[1]`: `blocks` blocks of `block` each per path, the
/// order rotated each block, so drift in the machine's load hits all three
/// alike. One block per path first, to warm up, not counted.
pub fn latency(
    pool: SocketAddr,
    servers: [&Server; 2],
    blocks: usize,
    block: usize,
    timeout: Duration,
) -> Result<[Trips; 3], Failure> {
    let names = ["direct", servers[0].name, servers[1].name];
    let addrs = [pool, servers[0].addr, servers[1].addr];
    let mut miners = Vec::new();
    for (addr, name) in addrs.iter().zip(names) {
        let mut m = Miner::join(*addr, timeout).map_err(|e| format!("{name} miner: {e}"))?;
        m.round_trips(block).map_err(|e| format!("{name} warm-up: {e}"))?;
        miners.push(m);
    }
    let bench = std::process::id();
    let mut paths: [Trips; 3] = Default::default();
    for b in 0..blocks {
        for k in 0..3 {
            let path = (b + k) % 3;
            let before = [servers[0].cpu()?, servers[1].cpu()?, cpu_reading(bench)?];
            for _ in 0..block {
                let t = miners[path].round_trip().map_err(|e| format!("{}: {e}", names[path]))?;
                paths[path].samples.push(t);
            }
            let (spent, _) = cpu_reading(bench)?.since(&before[2]);
            paths[path].bench_cpu.add(spent);
            for s in 0..2 {
                let after = servers[s].cpu()?;
                let (spent, changed) = after.since(&before[s]);
                let p = &mut paths[s + 1];
                if path == s + 1 {
                    p.cpu.add(spent);
                    after.add_by_name(&before[s], &mut p.by_thread);
                    p.threads_changed |= changed;
                } else {
                    p.idle_cpu.add(spent);
                }
            }
        }
    }
    for p in &mut paths {
        p.samples.sort_unstable();
    }
    Ok(paths)
}

/// Memory per idle miner, then all of them submitting at once.
pub struct FleetFigures {
    pub miners: usize,
    pub before_kib: u64,
    pub after_kib: u64,
    pub burst: Burst,
    /// The server over the bursts.
    pub cpu: Cpu,
    /// The bench itself (pool and miners) over the bursts.
    pub bench_cpu: Cpu,
}

impl FleetFigures {
    pub fn kib_per_miner(&self) -> f64 {
        self.after_kib.saturating_sub(self.before_kib) as f64 / self.miners.max(1) as f64
    }

    pub fn shares_per_second(&self) -> f64 {
        self.burst.accepted as f64 / self.burst.wall.as_secs_f64().max(1e-9)
    }

    pub fn per_share(&self, cpu: Cpu) -> PerShare {
        PerShare::of(cpu, self.burst.accepted)
    }
}

/// VmRSS of `server` before and after `miners` miners joined (each
/// subscribed, authorized and got its job, so each has its own pool
/// connection); then `rounds` bursts in which every miner submits once.
pub fn fleet(
    server: &Server,
    miners: usize,
    rounds: usize,
    settle: Duration,
    timeout: Duration,
) -> Result<FleetFigures, Failure> {
    // One miner first, so buffers shared by all sessions and lazy statics
    // are paid before the baseline, not spread over the idle miners.
    drop(Miner::join(server.addr, timeout).map_err(|e| format!("{} warm-up miner: {e}", server.name))?);
    thread::sleep(settle);
    let before_kib = server.status_kib("VmRSS")?;
    let mut fleet = Fleet::join(server.addr, miners, timeout).map_err(|e| format!("{}: {e}", server.name))?;
    thread::sleep(settle);
    let after_kib = server.status_kib("VmRSS")?;
    let bench = std::process::id();
    let before = [server.cpu()?, cpu_reading(bench)?];
    let mut burst = Burst::default();
    for round in 0..rounds {
        burst.add(&fleet.burst(round as u64 + 1, timeout)?);
    }
    let (bench_cpu, _) = cpu_reading(bench)?.since(&before[1]);
    let (cpu, _) = server.cpu()?.since(&before[0]);
    Ok(FleetFigures { miners: fleet.len(), before_kib, after_kib, burst, cpu, bench_cpu })
}
