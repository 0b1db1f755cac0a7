//! loka-stratum against the floor of a 1:1 proxy: a bare relay (one thread,
//! epoll, read and write; `floor/relay.rs`), both measured in one run, side
//! by side, against the targets of issue 16.
//!
//! Run with `cargo bench --bench floor`. Without `--bench` (as `cargo test
//! --all-targets` runs it) it does a smoke run: small sizes, the debug
//! binary, no strace, valgrind or qemu; its figures mean nothing and only
//! errors fail it.
//!
//! Everything runs on one CPU (the first allowed, 0 here, or `$LOKA_BENCH_CPU`): this process pins
//! itself before it starts a thread, so its pool and miners, and the relay
//! and the proxy it spawns, inherit the pin; the output shows each
//! process's `Cpus_allowed_list`. The pool is one epoll thread and the
//! miners are driven from the main thread, so the bench's own side of each
//! round trip is a handful of system calls. Every wait is bounded, a
//! watchdog kills everything after the run's limit, and children die with
//! this process however it ends.

#[path = "floor/arm.rs"]
mod arm;
#[path = "floor/figures.rs"]
mod figures;
#[path = "floor/miner.rs"]
mod miner;
#[path = "floor/pool.rs"]
mod pool;
#[path = "floor/process.rs"]
mod process;
#[path = "floor/relay.rs"]
mod relay;
#[path = "floor/report.rs"]
mod report;
#[path = "floor/stratum.rs"]
mod stratum;
#[path = "floor/table.rs"]
mod table;
#[path = "floor/trace.rs"]
mod trace;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use figures::{fleet, latency, start_proxy, start_relay};
use miner::Miner;
use process::{available, cpus_allowed, pin_to, raise_fd_limit};
use report::Report;

/// The bench failed: what was being done, and why.
type Failure = String;

/// The binary under test (release under `cargo bench`, debug under `cargo test`).
const BIN: &str = env!("CARGO_BIN_EXE_loka-stratum");
/// Longest wait for a server to start or a miner to get a reply, natively.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The same under valgrind or qemu, which start slowly.
const SLOW_TIMEOUT: Duration = Duration::from_secs(120);

/// How much work each figure gets.
pub struct Sizes {
    pub full: bool,
    /// Latency: blocks per path, round trips per block.
    pub blocks: usize,
    pub block: usize,
    pub idle_miners: usize,
    /// Bursts in which every idle miner submits once.
    pub bursts: usize,
    /// Round trips under strace; 0 skips the figure.
    pub strace_shares: usize,
    /// Round trips of the two callgrind runs; `None` skips the figure.
    pub callgrind_shares: Option<[usize; 2]>,
    /// Latency blocks and block size under qemu; `None` skips it.
    pub qemu: Option<(usize, usize)>,
    /// Pause before memory is read.
    pub settle: Duration,
    pub watchdog: Duration,
}

const FULL: Sizes = Sizes {
    full: true,
    blocks: 20,
    block: 1000,
    idle_miners: 1000,
    bursts: 10,
    strace_shares: 2000,
    callgrind_shares: Some([500, 2500]),
    qemu: Some((5, 200)),
    settle: Duration::from_millis(500),
    watchdog: Duration::from_secs(15 * 60),
};

const SMOKE: Sizes = Sizes {
    full: false,
    blocks: 2,
    block: 50,
    idle_miners: 20,
    bursts: 2,
    strace_shares: 0,
    callgrind_shares: None,
    qemu: None,
    settle: Duration::from_millis(100),
    watchdog: Duration::from_secs(120),
};

fn main() -> ExitCode {
    // The relay is this binary run again; nothing else happens first.
    if std::env::args().nth(1).as_deref() == Some("--relay") {
        relay::main();
        return ExitCode::FAILURE;
    }
    let sizes = if std::env::args().any(|a| a == "--bench") { &FULL } else { &SMOKE };
    let dir = std::env::temp_dir().join(format!("loka-floor-{}", std::process::id()));
    let result = run(sizes, &dir);
    process::kill_all();
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Kills every child and exits if the run takes longer than `limit`.
fn watchdog(limit: Duration) {
    thread::spawn(move || {
        thread::sleep(limit);
        eprintln!("floor bench failed: still running after {limit:?}");
        process::kill_all();
        std::process::exit(2);
    });
}

/// The CPU everything runs on: `$LOKA_BENCH_CPU`, or the lowest allowed
/// (0 unless a cpuset says otherwise).
fn bench_cpu() -> Result<usize, Failure> {
    match std::env::var("LOKA_BENCH_CPU") {
        Ok(v) => v.trim().parse().map_err(|_| format!("LOKA_BENCH_CPU={v:?} is not a CPU number")),
        Err(_) => process::first_allowed_cpu(),
    }
}

fn progress(what: &str) {
    eprintln!("floor: {what}");
}

fn run(sizes: &Sizes, dir: &Path) -> Result<(), Failure> {
    let started = Instant::now();
    let cpu = bench_cpu()?;
    pin_to(cpu)?;
    watchdog(sizes.watchdog);
    let fds = raise_fd_limit();
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let mut report = Report::new(sizes, cpu);

    let pool = pool::Pool::start().map_err(|e| format!("bench pool: {e}"))?;
    let relay = start_relay(&[], &exe, pool.addr, TIMEOUT)?;
    let proxy = start_proxy(&[], Path::new(BIN), pool.addr, dir, TIMEOUT)?;
    thread::sleep(sizes.settle);
    report.idle_kib = [relay.status_kib("VmRSS")?, proxy.status_kib("VmRSS")?];

    // Each idle miner costs 2 fds here (miner and pool side), 2 in the server.
    let miners = sizes.idle_miners.min(fds.saturating_sub(64) as usize / 2);
    progress(&format!("{miners} idle miners through loka-stratum, then {} bursts", sizes.bursts));
    report.fleets[1] = Some(fleet(&proxy, miners, sizes.bursts, sizes.settle, TIMEOUT)?);
    progress(&format!("{miners} idle miners through the relay, then {} bursts", sizes.bursts));
    report.fleets[0] = Some(fleet(&relay, miners, sizes.bursts, sizes.settle, TIMEOUT)?);
    if miners < sizes.idle_miners {
        report.notes.push(format!("the fd limit ({fds}) allows {miners} of {} miners", sizes.idle_miners));
    }

    progress(&format!("latency: {} blocks of {} round trips per path", sizes.blocks, sizes.block));
    report.trips = Some(latency(pool.addr, [&relay, &proxy], sizes.blocks, sizes.block, TIMEOUT)?);
    // After the runs, so every thread the proxy starts is there to be seen.
    report.pinned = [("bench", std::process::id()), ("relay", relay.pid), ("loka-stratum", proxy.pid)]
        .into_iter()
        .map(|(name, pid)| Ok((name, cpus_allowed(pid)?)))
        .collect::<Result<_, Failure>>()?;

    if sizes.strace_shares > 0 {
        if available("strace") {
            for (i, server) in [&relay, &proxy].into_iter().enumerate() {
                progress(&format!("{} under strace: {} round trips", server.name, sizes.strace_shares));
                let mut miner = Miner::join(server.addr, TIMEOUT)?;
                miner.round_trips(100)?;
                report.syscalls[i] = Some(trace::syscalls(server, &mut miner, sizes.strace_shares, dir)?);
            }
        } else {
            report.skipped.push("system calls per share: strace not found".into());
        }
    }
    drop(relay);
    drop(proxy);

    if let Some([n1, n2]) = sizes.callgrind_shares {
        if available("valgrind") {
            let relay = |runner: &[String]| start_relay(runner, &exe, pool.addr, SLOW_TIMEOUT);
            let proxy = |runner: &[String]| start_proxy(runner, Path::new(BIN), pool.addr, dir, SLOW_TIMEOUT);
            let starts: [(&str, trace::Start); 2] = [("relay", &relay), ("loka-stratum", &proxy)];
            for (i, (name, start)) in starts.into_iter().enumerate() {
                let mut counts = [0; 2];
                for (count, n) in counts.iter_mut().zip([n1, n2]) {
                    progress(&format!("{name} under callgrind: {n} round trips"));
                    *count = trace::instructions(start, name, n, dir, SLOW_TIMEOUT)?;
                }
                report.instructions[i] = Some(counts);
            }
        } else {
            report.skipped.push("instructions per share: valgrind not found".into());
        }
    }

    if let Some((blocks, block)) = sizes.qemu {
        progress("aarch64 under qemu");
        report.arm = Some(arm::run(&target_dir(), pool.addr, dir, blocks, block, SLOW_TIMEOUT)?);
    }

    report.took = started.elapsed();
    report.print();
    let errors: usize = report.fleets.iter().flatten().map(|f| f.burst.errors()).sum();
    if !sizes.full && errors > 0 {
        return Err(format!("{errors} submits of the miners at once were not accepted"));
    }
    Ok(())
}

/// Cargo's target directory: the one above the binary under test's profile.
fn target_dir() -> PathBuf {
    let bin = Path::new(BIN);
    bin.parent().and_then(Path::parent).map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
}
