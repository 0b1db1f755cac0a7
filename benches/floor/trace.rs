//! Figures that need a tool watching the process: system calls per share
//! (`strace -f -c`, all threads) and instructions per share (callgrind, a
//! count that does not move with the machine's load).

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::Failure;
use crate::miner::Miner;
use crate::process::{Server, Spawned, all_traced};

/// Longest wait for strace to attach to every thread, or to write its table.
const STRACE_TIMEOUT: Duration = Duration::from_secs(20);

/// System calls a process made while it forwarded `shares` shares.
pub struct Syscalls {
    pub shares: usize,
    pub total: u64,
    /// Per call, most frequent first.
    pub rows: Vec<(String, u64)>,
}

impl Syscalls {
    pub fn per_share(&self, name: &str) -> f64 {
        let calls = if name == "total" {
            self.total
        } else {
            self.rows.iter().find(|(n, _)| n == name).map_or(0, |r| r.1)
        };
        calls as f64 / self.shares as f64
    }

    /// `recvfrom 2.00, sendto 2.00, …, write (3 in all)`: each call per
    /// share, or in all when too rare to show per share.
    pub fn breakdown(&self) -> String {
        let per = |calls: u64| calls as f64 / self.shares as f64;
        let row = |(name, calls): &(String, u64)| match per(*calls) {
            p if p >= 0.01 => format!("{name} {p:.2}"),
            _ => format!("{name} ({calls} in all)"),
        };
        self.rows.iter().map(row).collect::<Vec<_>>().join(", ")
    }
}

/// Attaches `strace -f -c` to `server` (every thread, and threads it starts),
/// waits until it is attached, runs `shares` round trips through `miner`,
/// and reads strace's table. Nothing is subtracted.
pub fn syscalls(server: &Server, miner: &mut Miner, shares: usize, dir: &Path) -> Result<Syscalls, Failure> {
    let table = dir.join(format!("strace-{}.txt", server.name));
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-c", "-q", "-o"]).arg(&table).args(["-p", &server.pid.to_string()]);
    let mut strace = Spawned::new(cmd, "strace")?;
    let deadline = Instant::now() + STRACE_TIMEOUT;
    while !all_traced(server.pid)? {
        if Instant::now() > deadline {
            let said: Vec<String> = strace.output.try_iter().collect();
            return Err(format!(
                "strace did not attach to {} within {STRACE_TIMEOUT:?}: {said:?}",
                server.name
            ));
        }
        thread::sleep(Duration::from_millis(5));
    }
    miner.round_trips(shares).map_err(|e| format!("{} under strace: {e}", server.name))?;
    strace.stop(libc::SIGINT, STRACE_TIMEOUT)?;
    let text = std::fs::read_to_string(&table).map_err(|e| format!("read {}: {e}", table.display()))?;
    let mut rows = parse_strace_table(&text);
    let total = rows
        .iter()
        .position(|(n, _)| n == "total")
        .map(|i| rows.remove(i).1)
        .ok_or_else(|| format!("no total in strace's table: {text}"))?;
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(Syscalls { shares, total, rows })
}

/// Rows of `strace -c`'s table as (syscall, calls). A row is
/// `% time, seconds, usecs/call, calls, [errors], syscall`: the errors
/// column is blank when there were none, so calls is the fourth field and
/// the name the last.
fn parse_strace_table(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let calls = fields.get(3)?.parse().ok()?;
            Some((fields.last()?.to_string(), calls))
        })
        .collect()
}

/// Starts a server under a runner (valgrind and its arguments).
pub type Start<'a> = &'a dyn Fn(&[String]) -> Result<Server, Failure>;

/// Instructions a fresh process executed, as callgrind counts them, for a
/// run of `shares` round trips (startup, one miner's handshake and its
/// departure included). `start` starts the server under the given runner.
pub fn instructions(
    start: Start,
    name: &str,
    shares: usize,
    dir: &Path,
    timeout: Duration,
) -> Result<u64, Failure> {
    let out = dir.join(format!("callgrind-{name}-{shares}.out"));
    let runner = ["valgrind", "--tool=callgrind", "-q"].map(String::from);
    let runner = [&runner[..], &[format!("--callgrind-out-file={}", out.display())]].concat();
    let server = start(&runner)?;
    let mut miner = Miner::join(server.addr, timeout).map_err(|e| format!("{name} under callgrind: {e}"))?;
    miner.round_trips(shares).map_err(|e| format!("{name} under callgrind: {e}"))?;
    drop(miner);
    server.stop(libc::SIGTERM, timeout)?;
    let text = std::fs::read_to_string(&out).map_err(|e| format!("read {}: {e}", out.display()))?;
    // `summary:` is the total over the run; `totals:` the same when the
    // file holds one part.
    ["summary:", "totals:"]
        .iter()
        .find_map(|key| {
            text.lines().find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse().ok())
        })
        .ok_or_else(|| format!("no instruction total in {}", out.display()))
}
