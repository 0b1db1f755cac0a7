//! The processes under test (the relay, the proxy, and the tools that watch
//! them) and what `/proc` says about them: CPU time, memory, CPU affinity,
//! tracers.
//!
//! Invariant: every child is killed when its handle drops, when the
//! watchdog fires, and when the bench process dies however it dies (each
//! child gets `PR_SET_PDEATHSIG`, and children are spawned from the main
//! thread only, whose end is the signal).

use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use crate::Failure;

/// Pids of the children alive, for the watchdog.
static ALIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Kills every child still alive (the watchdog's last act).
pub fn kill_all() {
    if let Ok(pids) = ALIVE.lock() {
        for &pid in pids.iter() {
            signal(pid, libc::SIGKILL);
        }
    }
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory effects; a stale pid at worst gets ESRCH.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// A child process, killed when this drops; its stdout and stderr lines
/// come through `output`.
pub struct Spawned {
    child: Child,
    pub output: Receiver<String>,
}

impl Spawned {
    /// Spawns `cmd`; the child dies with the bench.
    pub fn new(mut cmd: Command, name: &str) -> Result<Spawned, Failure> {
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {name} ({:?}): {e}", cmd.get_program()))?;
        if let Ok(mut pids) = ALIVE.lock() {
            pids.push(child.id());
        }
        let (tx, output) = mpsc::channel();
        let out = child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>);
        let err = child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>);
        // Drains both for the whole run, so the child never blocks on a pipe.
        for stream in [out, err].into_iter().flatten() {
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let _ = tx.send(line);
                }
            });
        }
        Ok(Spawned { child, output })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig`, then waits up to `timeout` for the exit.
    pub fn stop(&mut self, sig: i32, timeout: Duration) -> Result<ExitStatus, Failure> {
        signal(self.pid(), sig);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) => thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(format!("wait for pid {}: {e}", self.pid())),
            }
        }
        let last: Vec<String> = self.output.try_iter().collect();
        Err(format!(
            "pid {} did not exit within {timeout:?} of signal {sig}; its last output: {last:?}",
            self.pid()
        ))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(mut pids) = ALIVE.lock() {
            let pid = self.child.id();
            pids.retain(|&p| p != pid);
        }
    }
}

/// A relay or proxy process serving miners on `addr`.
pub struct Server {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub pid: u32,
    process: Spawned,
}

impl Server {
    /// Spawns `cmd` and waits up to `timeout` for an output line from which
    /// `address` takes the listening address.
    pub fn start(
        cmd: Command,
        name: &'static str,
        timeout: Duration,
        address: impl Fn(&str) -> Option<SocketAddr>,
    ) -> Result<Server, Failure> {
        let mut process = Spawned::new(cmd, name)?;
        let pid = process.pid();
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match process.output.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = address(&line) {
                        return Ok(Server { name, addr, pid, process });
                    }
                }
                Err(_) => {
                    let status = process.child.try_wait().ok().flatten();
                    return Err(format!("{name} printed no address within {timeout:?} (exit: {status:?})"));
                }
            }
        }
    }

    /// Sends `sig`, then waits up to `timeout` for the exit.
    pub fn stop(mut self, sig: i32, timeout: Duration) -> Result<ExitStatus, Failure> {
        self.process.stop(sig, timeout).map_err(|e| format!("{}: {e}", self.name))
    }

    pub fn status_kib(&self, field: &str) -> Result<u64, Failure> {
        status_kib(self.pid, field)
    }

    pub fn cpu(&self) -> Result<CpuReading, Failure> {
        cpu_reading(self.pid)
    }
}

/// The address in a line such as `... listening on 127.0.0.1:4321, pool ...`.
pub fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest.find(|c: char| c == ',' || c == '/' || c.is_whitespace()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

// ------------------------------------------------------------------ /proc

fn read(path: &str) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| format!("read {path}: {e}"))
}

fn field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
}

/// A `kB` field of `/proc/PID/status` (VmRSS, VmHWM, …).
pub fn status_kib(pid: u32, name: &str) -> Result<u64, Failure> {
    let status = read(&format!("/proc/{pid}/status"))?;
    field(&status, name)
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))
}

fn tasks(pid: u32) -> Result<Vec<u32>, Failure> {
    let dir = format!("/proc/{pid}/task");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("read {dir}: {e}"))?;
    Ok(entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
}

/// What the threads of a process spent: CPU time, and how often they were
/// scheduled in (each wake-up of a sleeping thread is one).
#[derive(Clone, Copy, Default)]
pub struct Cpu {
    pub ns: u64,
    pub runs: u64,
}

impl Cpu {
    pub fn add(&mut self, other: Cpu) {
        self.ns += other.ns;
        self.runs += other.runs;
    }
}

/// A reading of [`Cpu`] for each thread of a process.
pub struct CpuReading {
    /// (thread id, thread name, what it spent), by thread id.
    threads: Vec<(u32, String, Cpu)>,
}

impl CpuReading {
    fn total(&self) -> Cpu {
        let mut total = Cpu::default();
        self.threads.iter().for_each(|t| total.add(t.2));
        total
    }

    /// What was spent since `before`; whether a thread came or went in
    /// between (what a thread that ended spent is lost).
    pub fn since(&self, before: &CpuReading) -> (Cpu, bool) {
        let (now, then) = (self.total(), before.total());
        let spent = Cpu { ns: now.ns.saturating_sub(then.ns), runs: now.runs.saturating_sub(then.runs) };
        let ids = |r: &CpuReading| r.threads.iter().map(|t| t.0).collect::<Vec<_>>();
        (spent, ids(self) != ids(before))
    }

    /// What each thread present in both readings spent since `before`,
    /// added into `by_name` by thread name.
    pub fn add_by_name(&self, before: &CpuReading, by_name: &mut Vec<(String, Cpu)>) {
        for (tid, name, now) in &self.threads {
            let Some((_, _, then)) = before.threads.iter().find(|t| t.0 == *tid) else { continue };
            let spent = Cpu { ns: now.ns.saturating_sub(then.ns), runs: now.runs.saturating_sub(then.runs) };
            match by_name.iter_mut().find(|(n, _)| n == name) {
                Some((_, cpu)) => cpu.add(spent),
                None => by_name.push((name.clone(), spent)),
            }
        }
    }
}

/// Reads `/proc/PID/task/*/schedstat`: its first field is nanoseconds on a
/// CPU, exact (the scheduler's clock, unlike the tick-granular utime+stime
/// of `/proc/PID/stat`); its third the times the thread was scheduled in.
pub fn cpu_reading(pid: u32) -> Result<CpuReading, Failure> {
    let mut ids = tasks(pid)?;
    ids.sort_unstable();
    let mut threads = Vec::with_capacity(ids.len());
    for tid in ids {
        let task = format!("/proc/{pid}/task/{tid}");
        // A thread may end between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(format!("{task}/schedstat")) else { continue };
        let name = std::fs::read_to_string(format!("{task}/comm")).unwrap_or_default();
        let fields: Vec<u64> = stat.split_whitespace().filter_map(|v| v.parse().ok()).collect();
        if let [ns, _, runs] = fields[..] {
            threads.push((tid, name.trim().to_string(), Cpu { ns, runs }));
        }
    }
    Ok(CpuReading { threads })
}

/// `Cpus_allowed_list` of every thread of a process, deduplicated.
pub fn cpus_allowed(pid: u32) -> Result<String, Failure> {
    let mut lists = Vec::new();
    for tid in tasks(pid)? {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")) else { continue };
        let list = field(&status, "Cpus_allowed_list").unwrap_or("?").to_string();
        if !lists.contains(&list) {
            lists.push(list);
        }
    }
    Ok(lists.join(" / "))
}

/// Whether every thread of `pid` is traced (ptrace-attached).
pub fn all_traced(pid: u32) -> Result<bool, Failure> {
    for tid in tasks(pid)? {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")) else { continue };
        if field(&status, "TracerPid").is_none_or(|t| t == "0") {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The lowest CPU this process may run on.
pub fn first_allowed_cpu() -> Result<usize, Failure> {
    // SAFETY: the set is a plain bitmask on the stack, passed with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(format!("sched_getaffinity: {}", io::Error::last_os_error()));
        }
        (0..libc::CPU_SETSIZE as usize).find(|&cpu| libc::CPU_ISSET(cpu, &set)).ok_or("no CPU allowed".into())
    }
}

/// Pins the calling thread, and so every thread and child it starts later,
/// to `cpu`.
pub fn pin_to(cpu: usize) -> Result<(), Failure> {
    // SAFETY: the set is a plain bitmask on the stack, passed with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(format!("pin to CPU {cpu}: {}", io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Sets the soft fd limit to the hard one (children inherit it); returns
/// the soft limit in force.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    lim.rlim_cur
}

/// Whether `program` runs at all (`program --version`).
pub fn available(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
