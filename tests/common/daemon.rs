//! Runs the real `loka-stratum` binary for a test: on 127.0.0.1 port 0,
//! pointed at a pool on 127.0.0.1, with its log lines collected so a test can
//! wait (with a deadline) for what it prints.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_loka-stratum");

/// A command that runs the binary under test.
///
/// Normally that is [`BIN`], run directly. For ARM builds, `.ci/arm` sets:
/// - `$LOKA_TEST_BIN`: a cross-built binary to run instead of [`BIN`], so the
///   host's tests (native speed, real hashing) drive an ARM daemon;
/// - `$LOKA_TEST_RUNNER`: the emulator to run it with, split on whitespace,
///   e.g. `qemu-aarch64 -L /usr/aarch64-linux-gnu`. Cargo's
///   `CARGO_TARGET_<TRIPLE>_RUNNER` only runs the test binary itself under
///   qemu; a daemon it spawns needs the emulator named again, because no
///   binfmt_misc handler is assumed.
pub fn bin_command() -> Command {
    let bin = std::env::var_os("LOKA_TEST_BIN").filter(|b| !b.is_empty()).unwrap_or_else(|| BIN.into());
    let runner = std::env::var("LOKA_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(emulator) => {
            let mut cmd = Command::new(emulator);
            cmd.args(words).arg(bin);
            cmd
        }
        None => Command::new(bin),
    }
}

/// [`bin_command`] as systemd's socket activation starts it: `sockets`
/// duplicated to descriptors 3, 4, …, `$LISTEN_FDS` set, and `$LISTEN_PID`
/// set to the process's own pid by a shell that then execs the daemon (the
/// pid is known only after the fork; `exec` keeps it). Arguments added to the
/// command go to the daemon.
pub fn activated_command(sockets: &[&std::net::TcpListener]) -> Command {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let daemon = bin_command();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "LISTEN_PID=$$ exec \"$@\"", "sh"]).arg(daemon.get_program()).args(daemon.get_args());
    cmd.env("LISTEN_FDS", sockets.len().to_string()).env_remove("LISTEN_FDNAMES");
    let fds: Vec<i32> = sockets.iter().map(|s| s.as_raw_fd()).collect();
    // SAFETY: between fork and exec the closure calls only fcntl and dup2,
    // which are async-signal-safe, and reads the copied descriptor numbers.
    unsafe {
        cmd.pre_exec(move || {
            // First out of the way (a socket may itself be descriptor 3 or
            // 4), close-on-exec; then down to 3, 4, … (dup2 clears the flag).
            let mut high = [0i32; 8];
            for (i, fd) in fds.iter().enumerate() {
                high[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 64);
                if high[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, fd) in high[..fds.len()].iter().enumerate() {
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd
}

/// A running daemon.
pub struct Daemon {
    child: Child,
    /// Where miners connect.
    pub addr: SocketAddr,
    /// Where the metrics endpoint listens.
    pub metrics: SocketAddr,
    log: Arc<(Mutex<Vec<String>>, Condvar)>,
    /// A directory of this daemon's own (its books live here unless the test
    /// set `LOKA_STORE_PATH`); removed on drop.
    pub dir: std::path::PathBuf,
}

/// Extracts the address after `marker` in a log line.
fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest.find(|c: char| c == ',' || c == '/' || c.is_whitespace()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

impl Daemon {
    /// Starts `loka-stratum start` against `pool` with extra env settings.
    pub fn start(pool: SocketAddr, env: &[(&str, &str)]) -> Daemon {
        Self::start_with(&["start", "-b", "127.0.0.1:0", "-p", &pool.to_string()], env)
    }

    /// Starts the binary with `args` (which must make it listen on port 0).
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::start_prepared(args, env, |_| {})
    }

    /// Starts `loka-stratum start` against `pool` with its descriptor limit
    /// (soft and hard `RLIMIT_NOFILE`) set to `nofile`.
    pub fn start_with_nofile(pool: SocketAddr, env: &[(&str, &str)], nofile: u64) -> Daemon {
        let args = ["start", "-b", "127.0.0.1:0", "-p", &pool.to_string()];
        Self::start_prepared(&args, env, |cmd| {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit { rlim_cur: nofile as libc::rlim_t, rlim_max: nofile as libc::rlim_t };
            // SAFETY: setrlimit is async-signal-safe and touches no memory of
            // the parent; the closure only reads a copied value.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        })
    }

    /// The daemon's process id (the emulator's, under `$LOKA_TEST_RUNNER`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// [`Daemon::start_with`], with `prepare` applied to the command last
    /// (e.g. a `pre_exec` that sets resource limits).
    pub fn start_prepared(args: &[&str], env: &[(&str, &str)], prepare: impl FnOnce(&mut Command)) -> Daemon {
        Self::start_from(bin_command(), args, env, prepare)
    }

    /// Starts the binary with `args` as systemd's socket activation would:
    /// `sockets` become descriptors 3, 4, … with `$LISTEN_FDS` and
    /// `$LISTEN_PID` set. The caller keeps its own copies open, as systemd
    /// does, so connections made while no daemon runs wait in the backlog.
    pub fn start_activated(
        sockets: &[&std::net::TcpListener],
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        Self::start_from(activated_command(sockets), args, env, |_| {})
    }

    fn start_from(
        mut cmd: Command,
        args: &[&str],
        env: &[(&str, &str)],
        prepare: impl FnOnce(&mut Command),
    ) -> Daemon {
        cmd.args(args)
            .env("RUST_LOG", "debug")
            .env("LOKA_METRICS_BIND_ADDRESS", "127.0.0.1:0")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Each daemon keeps its books in a directory of its own.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("loka-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        cmd.env("LOKA_STORE_PATH", dir.join("books.redb"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        prepare(&mut cmd);
        let mut child = cmd.spawn().expect("spawn loka-stratum");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let (lines, cv) = &*sink;
                lines.lock().unwrap().push(line);
                cv.notify_all();
            }
        });
        let mut daemon = Daemon {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            metrics: "0.0.0.0:0".parse().unwrap(),
            log,
            dir,
        };
        let listening = daemon.wait_log("listening on ", Duration::from_secs(10));
        let metrics = daemon.wait_log("metrics on http://", Duration::from_secs(10));
        match (listening, metrics) {
            (Some(l), Some(m)) => {
                daemon.addr = addr_after(&l, "listening on ").expect("listen address");
                daemon.metrics = addr_after(&m, "metrics on http://").expect("metrics address");
            }
            _ => panic!("daemon did not start; log:\n{}", daemon.log_text()),
        }
        daemon
    }

    /// The daemon's resident memory now, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until a log line contains `needle`; returns it.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_log_n(needle, 1, timeout)
    }

    /// Waits until `n` log lines contain `needle`; returns the last.
    pub fn wait_log_n(&self, needle: &str, n: usize, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lines, cv) = &*self.log;
        let mut guard = lines.lock().unwrap();
        loop {
            let found: Vec<&String> = guard.iter().filter(|l| l.contains(needle)).collect();
            if found.len() >= n {
                return found.last().map(|s| s.to_string());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            guard = cv.wait_timeout(guard, left).unwrap().0;
        }
    }

    /// Everything logged so far.
    pub fn log_text(&self) -> String {
        self.log.0.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM and waits (bounded) for the exit.
    pub fn terminate(mut self, timeout: Duration) -> Option<(ExitStatus, Duration)> {
        self.signal("TERM");
        self.wait_exit(timeout)
    }

    /// Sends a signal (`TERM`, `INT`, `KILL`) to the daemon.
    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status();
    }

    /// Waits (bounded) for the process to exit: its status and the time waited.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<(ExitStatus, Duration)> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some((status, started.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// `GET path` on the metrics endpoint: (status code, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_request(self.metrics, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"))
    }

    /// One sample of the metrics page: the value of the line starting `series `.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.http_get("/metrics");
        body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// Waits until `metric(series)` equals `value`.
    pub fn wait_metric(&self, series: &str, value: f64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.metric(series) == Some(value) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends raw `request` to `addr` and reads the whole answer: (status, body).
pub fn http_request(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect http");
    s.write_all(request.as_bytes()).unwrap();
    http_answer(s)
}

/// Reads the whole answer to a request already sent on `s` (waiting 10 s at
/// most for each read): (status, body).
pub fn http_answer(mut s: TcpStream) -> (u16, String) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}
