//! The .deb under a real systemd: `.ci/systemd-boot` boots a Debian bookworm
//! container (`systemd-nspawn`, systemd as its PID 1, sharing this host's
//! loopback), copies the packages in, and runs this test with
//! `--ignored`. It drives the container with `nsenter -t <PID 1> -a …`, as an
//! administrator would with a shell on the gateway, and plays the pool and
//! the miners itself on 127.0.0.1.
//!
//! Environment (set by `.ci/systemd-boot`):
//! - `LOKA_BOOT_PID`: the container's PID 1, as the host sees it;
//! - `LOKA_BOOT_DEB`, `LOKA_BOOT_DEB_NEWER`: the package and a newer version
//!   of it, as paths inside the container.
//!
//! The unit runs as shipped (`WatchdogSec=30s`, `RestartSec=5s`), so the
//! watchdog step takes about 40 s; the ports are moved to free ones with a
//! drop-in, the way a user moves them.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::cli::accepted;
use common::*;

const CONFIG: &str = "/etc/loka-stratum/loka-stratum.toml";
const UNIT: &str = "loka-stratum.service";

/// The container, driven through `nsenter`.
struct Container {
    pid: String,
}

impl Container {
    fn from_env() -> Container {
        let pid = std::env::var("LOKA_BOOT_PID").expect("LOKA_BOOT_PID: run this through .ci/systemd-boot");
        Container { pid }
    }

    /// Runs `script` with `sh -c` in the container; (exit code, stdout and
    /// stderr). Bounded: killed after `timeout`.
    fn run(&self, script: &str, timeout: Duration) -> (i32, String) {
        let mut child = Command::new("nsenter")
            .args(["-t", &self.pid, "-a", "sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nsenter");
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = std::io::read_to_string(out).unwrap_or_default();
            text.push_str(&std::io::read_to_string(err).unwrap_or_default());
            text
        });
        let deadline = Instant::now() + timeout;
        let code = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`{script}` in the container took more than {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        (code, reader.join().unwrap())
    }

    /// Writes `bytes` to `path` in the container.
    fn put(&self, path: &str, bytes: &[u8]) {
        let mut child = Command::new("nsenter")
            .args(["-t", &self.pid, "-a", "sh", "-c", &format!("cat > {path}")])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nsenter");
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "writing {path} in the container took more than 30 s");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(status.success(), "writing {path} in the container failed");
    }

    /// Runs `script`, which must succeed; its output.
    fn ok(&self, script: &str) -> String {
        let (code, text) = self.run(script, Duration::from_secs(120));
        assert_eq!(code, 0, "`{script}` failed:\n{text}");
        text
    }

    /// One property of the service (`systemctl show -p NAME --value`).
    fn prop(&self, name: &str) -> String {
        self.ok(&format!("systemctl show -p {name} --value {UNIT}")).trim().to_string()
    }

    /// Waits until `check` holds on the service's properties.
    fn wait_for(&self, what: &str, timeout: Duration, mut check: impl FnMut(&Container) -> bool) {
        let deadline = Instant::now() + timeout;
        while !check(self) {
            assert!(Instant::now() < deadline, "not within {timeout:?}: {what}\n{}", self.journal(""));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `systemctl VERB UNIT`'s one-word answer (`is-active`, `is-enabled`),
    /// whatever its exit code.
    fn state(&self, verb: &str, unit: &str) -> String {
        self.run(&format!("systemctl {verb} {unit}"), Duration::from_secs(10)).1.trim().to_string()
    }

    /// When the socket unit last became active (monotonic µs): unchanged
    /// means its ports never closed.
    fn socket_since(&self) -> String {
        self.ok("systemctl show -p ActiveEnterTimestampMonotonic --value loka-stratum.socket")
            .trim()
            .to_string()
    }

    /// The unit's journal since the test began, with `options`.
    fn journal(&self, options: &str) -> String {
        self.run(&format!("journalctl -u {UNIT} -o cat --no-pager {options}"), Duration::from_secs(30)).1
    }
}

/// A free port on 127.0.0.1 (bound and let go: the socket unit takes it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// What a miner that reconnects in a loop saw.
#[derive(Debug, Default)]
struct Reconnects {
    /// Connections tried.
    attempts: usize,
    /// Refused (nobody listening): the failure socket activation prevents.
    refused: usize,
    /// Connected and answered `mining.subscribe`.
    answered: usize,
    /// Anything else (closed before the answer, timed out), with its cause.
    other: Vec<String>,
    /// Longest time from connect to the answer.
    longest_wait: Duration,
}

/// Connects, subscribes and hangs up, over and over, until `stop`.
fn reconnect_loop(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<Reconnects> {
    std::thread::spawn(move || {
        let mut seen = Reconnects::default();
        while !stop.load(Ordering::Relaxed) {
            seen.attempts += 1;
            let started = Instant::now();
            let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    seen.refused += 1;
                    continue;
                }
                Err(e) => {
                    seen.other.push(format!("connect: {e}"));
                    continue;
                }
            };
            stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let sent =
                stream.write_all(b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"loop/1.0\"]}\n");
            let mut line = String::new();
            match sent.and_then(|_| BufReader::new(&stream).read_line(&mut line)) {
                Ok(n) if n > 0 && line.contains("\"result\"") => {
                    seen.answered += 1;
                    answered.fetch_add(1, Ordering::Relaxed);
                    seen.longest_wait = seen.longest_wait.max(started.elapsed());
                }
                Ok(_) => seen.other.push(format!("answer: {line:?}")),
                Err(e) => seen.other.push(format!("answer: {e}")),
            }
        }
        seen
    })
}

/// Runs `action` while a miner reconnects in a loop; what the miner saw.
fn with_reconnecting_miner(addr: SocketAddr, action: impl FnOnce()) -> Reconnects {
    let (stop, answered) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let miner = reconnect_loop(addr, stop.clone(), answered.clone());
    // The loop must be answered before the action and again after it, so its
    // attempts surely span the whole action.
    let answers_past = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while answered.load(Ordering::Relaxed) < n {
            assert!(Instant::now() < deadline, "the reconnecting miner got no answers");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    answers_past(10);
    action();
    answers_past(answered.load(Ordering::Relaxed) + 10);
    stop.store(true, Ordering::Relaxed);
    miner.join().unwrap()
}

/// The day of the books 0.1.0 wrote (`tests/fixtures/books-schema1.md`).
const FIXTURE_DAY: &str = "2026-11-29";

/// Checks that the books 0.1.0 left are there, through the running
/// daemon's control socket: the fixture's workers on its day (plus what
/// `alice.rig1` mined today, if today is that day), earning and split.
fn assert_old_books(c: &Container, mined_today: u64) {
    let today = c.ok("date -u +%F").trim().to_string();
    let extra = if today == FIXTURE_DAY { mined_today } else { 0 };
    let table = c.ok(&format!("loka-stratum workers --date {FIXTURE_DAY}"));
    assert_eq!(accepted(&table, "alice.rig1"), Some(6 + extra), "{table}");
    assert_eq!(accepted(&table, "bob"), Some(3), "{table}");
    let earnings = c.ok("loka-stratum earnings list");
    assert!(
        earnings.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == [FIXTURE_DAY, "harness_pool", "110000", "-"]),
        "{earnings}"
    );
    let split = c.ok(&format!("loka-stratum distributions --date {FIXTURE_DAY}"));
    for (who, sats) in [("alice.rig1", "73333"), ("bob", "36667"), ("alice", "73333")] {
        assert!(
            split.lines().any(|l| l.split_whitespace().next() == Some(who) && l.trim_end().ends_with(sats)),
            "{who} {sats}: {split}"
        );
    }
}

/// Mines `n` shares as `login` through the gateway; all must be accepted.
fn mine(addr: SocketAddr, login: &str, n: usize) -> HashingMiner {
    let mut miner = HashingMiner::connect(addr).unwrap();
    assert!(miner.subscribe("cpuminer/2.5.1").is_some());
    assert!(miner.authorize(login, "x"));
    let report = miner.mine(n, Duration::from_secs(60));
    assert_eq!(report.accepted(), n, "{:?}", report.rejected_codes());
    miner
}

#[test]
#[ignore = "needs a booted container: run by .ci/systemd-boot"]
fn the_deb_under_a_real_systemd() {
    let began = Instant::now();
    let c = Container::from_env();
    let deb = std::env::var("LOKA_BOOT_DEB").unwrap();
    let newer = std::env::var("LOKA_BOOT_DEB_NEWER").unwrap();
    let step = |name: &str| eprintln!("[{:5.1} s] {name}", began.elapsed().as_secs_f64());

    step("an older install's books: the file 0.1.0 wrote, where it left it");
    // DynamicUser= keeps the state directory under /var/lib/private, owned
    // by the UID of the run that made it (another one than the next run's),
    // reached through a symlink.
    let old_uid = 61999;
    c.ok(&format!(
        "install -d -m 0700 /var/lib/private && install -d -m 0700 -o {old_uid} -g {old_uid} \
         /var/lib/private/loka-stratum && ln -sfn private/loka-stratum /var/lib/loka-stratum"
    ));
    let fixture =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/books-schema1.redb")).unwrap();
    let books = "/var/lib/private/loka-stratum/loka-stratum.redb";
    c.put(books, &fixture);
    c.ok(&format!("chown {old_uid}:{old_uid} {books} && chmod 0600 {books}"));

    step("install: enabled, not started");
    let out = c.ok(&format!("DEBIAN_FRONTEND=noninteractive apt-get install -y {deb} 2>&1"));
    assert!(out.contains("enabled, not started"), "{out}");
    for unit in [UNIT, "loka-stratum.socket"] {
        assert_eq!(c.state("is-enabled", unit), "enabled");
        assert_eq!(c.state("is-active", unit), "inactive");
    }
    // Ordered after the clock is synchronized (a Pi has no hardware clock),
    // the network, and the sockets it is handed.
    let after = c.prop("After");
    for unit in ["time-sync.target", "network-online.target", "loka-stratum.socket"] {
        assert!(after.split_whitespace().any(|u| u == unit), "After= lacks {unit}: {after}");
    }
    assert!(c.prop("Requires").contains("loka-stratum.socket"));

    step("configure: the pool, and the ports moved to free ones");
    let pool = CheckingPool::start(PoolOptions::default());
    let (stratum, metrics) = (free_port(), free_port());
    let (sa, ma): (SocketAddr, SocketAddr) =
        (format!("127.0.0.1:{stratum}").parse().unwrap(), format!("127.0.0.1:{metrics}").parse().unwrap());
    c.ok(&format!(
        "sed -i -e 's|^address = \"solo.ckpool.org:3333\"|address = \"{}\"|' \
         -e 's|^bind_address = \"0.0.0.0:3333\"|bind_address = \"{sa}\"|' \
         -e 's|^bind_address = \"0.0.0.0:9090\"|bind_address = \"{ma}\"|' {CONFIG}",
        pool.addr()
    ));
    c.ok(&format!("grep -q '^address = \"{}\"' {CONFIG}", pool.addr()));
    c.ok(&format!(
        "mkdir -p /etc/systemd/system/loka-stratum.socket.d && printf '%s\\n' '[Socket]' 'ListenStream=' \
         'ListenStream={sa}' 'ListenStream={ma}' > /etc/systemd/system/loka-stratum.socket.d/ports.conf"
    ));
    c.ok("systemctl daemon-reload");

    step("start, as the README says");
    c.ok(&format!("systemctl enable --now {UNIT}"));
    assert_eq!(c.prop("ActiveState"), "active");
    c.wait_for("Status= from sd_notify", Duration::from_secs(10), |c| {
        c.prop("StatusText").contains("miners")
    });
    let log = c.journal("");
    assert!(log.contains(&format!("listening on {sa} (socket from systemd)")), "{log}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_request(ma, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").0 != 200 {
        assert!(Instant::now() < deadline, "/health never 200:\n{}", c.journal(""));
        std::thread::sleep(Duration::from_millis(100));
    }

    step("mine through it");
    let miner = mine(sa, "alice.rig1", 4);
    assert!(pool.wait_for(|s| s.accepted() == 4, Duration::from_secs(10)));
    c.wait_for("Status= counts the shares", Duration::from_secs(40), |c| {
        c.prop("StatusText").contains("shares 4 accepted")
    });

    step("the books: written by the dynamic user under /var/lib/loka-stratum");
    let pid = c.prop("MainPID");
    let uid = c.ok(&format!("awk '/^Uid:/ {{ print $2 }}' /proc/{pid}/status")).trim().to_string();
    let uid_n: u32 = uid.parse().unwrap();
    // systemd's DynamicUser= range.
    assert!((61184..=65519).contains(&uid_n), "uid {uid}");
    assert_eq!(c.ok("readlink /var/lib/loka-stratum").trim(), "private/loka-stratum");
    let owner =
        c.ok("stat -c '%u %a' /var/lib/private/loka-stratum /var/lib/private/loka-stratum/loka-stratum.redb");
    assert_eq!(owner.lines().collect::<Vec<_>>(), [format!("{uid} 700"), format!("{uid} 600")], "{owner}");
    // Through the daemon's control socket, as `sudo loka-stratum workers`
    // (which commits what is queued first).
    let today = c.ok("date -u +%F").trim().to_string();
    let before = if today == FIXTURE_DAY { 6 } else { 0 };
    let workers = c.ok("loka-stratum workers");
    assert_eq!(accepted(&workers, "alice.rig1"), Some(before + 4), "{workers}");

    step("the old books: migrated once, intact, extended by the new shares, checked, backed up");
    let log = c.journal("");
    assert_eq!(log.matches("books migrated from schema 1 to 3").count(), 1, "{log}");
    assert_old_books(&c, 4);
    let check = c.ok("loka-stratum books check");
    assert!(check.contains("schema 3, the current one") && check.contains("no problems found"), "{check}");
    // The README's nightly backup, by hand.
    let backup = c.ok("loka-stratum books backup /var/backups/loka-stratum.redb");
    assert!(backup.contains("from the running daemon") && backup.contains("no problems found"), "{backup}");
    let copy = c.ok("loka-stratum books check /var/backups/loka-stratum.redb");
    assert!(copy.contains("schema 3, the current one"), "{copy}");

    step("restore the backup, as the README says");
    drop(miner);
    c.ok(&format!("loka-stratum earnings add --date {FIXTURE_DAY} --pool harness_pool --reward 1"));
    c.ok(&format!(
        "systemctl stop {UNIT} && install -m 0600 -o \"$(stat -c %u /var/lib/private/loka-stratum)\" \
         /var/backups/loka-stratum.redb /var/lib/private/loka-stratum/loka-stratum.redb && systemctl start {UNIT}"
    ));
    assert_eq!(c.prop("ActiveState"), "active");
    // Two starts in a few seconds so far: count from here.
    c.ok(&format!("systemctl reset-failed {UNIT}"));
    // The reward typed in after the backup is gone again; the rest is there.
    assert_old_books(&c, 4);
    assert_eq!(accepted(&c.ok("loka-stratum workers"), "alice.rig1"), Some(before + 4));
    let miner = mine(sa, "alice.rig1", 1);
    assert_eq!(accepted(&c.ok("loka-stratum workers"), "alice.rig1"), Some(before + 5));

    step("the journal: nothing at warning or above");
    let warnings = c.journal("-p warning");
    assert!(warnings.trim().is_empty() || warnings.trim() == "-- No entries --", "warnings:\n{warnings}");

    step("restart while a miner reconnects in a loop: no refusal");
    drop(miner);
    let old_pid = c.prop("MainPID");
    let socket_since = c.socket_since();
    let seen = with_reconnecting_miner(sa, || {
        c.ok(&format!("systemctl restart {UNIT}"));
    });
    eprintln!("restart: {seen:?}");
    assert_ne!(c.prop("MainPID"), old_pid);
    assert_eq!(c.socket_since(), socket_since, "the socket unit was restarted");
    assert_eq!(seen.refused, 0, "{seen:?}");
    // The loop has one connection open at a time, so at most one can be the
    // connection the old process had accepted when SIGTERM came: it is closed
    // unanswered (the miner reconnects). Every other one waited and was served.
    assert!(seen.attempts >= 3 && seen.answered >= seen.attempts - 1, "{seen:?}");

    step("upgrade to a newer .deb while the miner reconnects: the edited config stays, no refusal");
    let old_pid = c.prop("MainPID");
    let seen = with_reconnecting_miner(sa, || {
        let out = c.ok(&format!("DEBIAN_FRONTEND=noninteractive apt-get install -y {newer} 2>&1"));
        assert!(out.contains("Unpacking loka-stratum") && !out.contains("enabled, not started"), "{out}");
    });
    eprintln!("upgrade: {seen:?}");
    assert_eq!(seen.refused, 0, "{seen:?}");
    assert!(seen.answered >= seen.attempts.saturating_sub(1), "{seen:?}");
    assert!(c.ok("dpkg-query -W -f '${Version}' loka-stratum").ends_with("-2"));
    c.ok(&format!("grep -q '^address = \"{}\"' {CONFIG}", pool.addr()));
    assert_ne!(c.prop("MainPID"), old_pid, "the upgrade restarts a running service");
    assert_old_books(&c, 5);
    assert_eq!(c.journal("").matches("books migrated").count(), 1, "migrated once, not at the upgrade");
    assert_eq!(c.socket_since(), socket_since, "the upgrade restarted the socket unit");
    assert_eq!(c.prop("ActiveState"), "active");
    mine(sa, "bob.rig2", 2);
    assert_eq!(accepted(&c.ok("loka-stratum workers"), "bob.rig2"), Some(2));
    // The same .deb again (a reinstall goes through the upgrade path too).
    let out = c.ok(&format!("DEBIAN_FRONTEND=noninteractive apt-get install -y --reinstall {newer} 2>&1"));
    assert!(out.contains("Unpacking loka-stratum"), "{out}");
    c.ok(&format!("grep -q '^address = \"{}\"' {CONFIG}", pool.addr()));
    assert_eq!(c.prop("ActiveState"), "active");
    assert_old_books(&c, 5);
    assert_eq!(accepted(&c.ok("loka-stratum workers"), "bob.rig2"), Some(2));

    step("a stalled executor: the watchdog kills it and systemd restarts it");
    // The unit gives up after 5 starts in 30 s (StartLimitBurst=); this test
    // has started it 4 times since the restore. reset-failed zeroes the count,
    // as an administrator would after restarting it by hand this often.
    c.ok(&format!("systemctl reset-failed {UNIT}"));
    c.ok(&format!(
        "mkdir -p /etc/systemd/system/{UNIT}.d && printf '%s\\n' '[Service]' 'Environment=LOKA_DEBUG_STALL=1' \
         > /etc/systemd/system/{UNIT}.d/stall.conf && systemctl daemon-reload && systemctl restart {UNIT}"
    ));
    let (stalled, restarts) = (c.prop("MainPID"), c.prop("NRestarts").parse::<u32>().unwrap());
    c.ok(&format!("systemctl kill -s USR2 {UNIT}"));
    let stalled_at = Instant::now();
    c.wait_for("a restart after the watchdog", Duration::from_secs(90), |c| {
        c.prop("NRestarts").parse::<u32>().unwrap() > restarts && c.prop("ActiveState") == "active"
    });
    eprintln!("watchdog: killed and restarted {:.1} s after the stall", stalled_at.elapsed().as_secs_f64());
    assert_ne!(c.prop("MainPID"), stalled);
    let log = c.journal("");
    assert!(log.contains("Watchdog timeout"), "{log}");
    c.ok(&format!(
        "rm /etc/systemd/system/{UNIT}.d/stall.conf && systemctl daemon-reload && systemctl restart {UNIT}"
    ));

    step("stop: clean, within the grace time, with a miner connected");
    let _miner = mine(sa, "carol.rig3", 1);
    let stopping = Instant::now();
    c.ok(&format!("systemctl stop {UNIT}"));
    let took = stopping.elapsed();
    eprintln!("stop: {took:?}");
    assert!(took < Duration::from_secs(15), "TimeoutStopSec is 15 s; stop took {took:?}");
    assert_eq!(c.prop("Result"), "success");
    assert_eq!(c.prop("ExecMainStatus"), "0");
    assert!(c.journal("-n 20").contains("stopped with"), "{}", c.journal("-n 20"));
    // The socket stays: the next connection starts the service again.
    assert_eq!(c.state("is-active", "loka-stratum.socket"), "active");
    mine(sa, "dave.rig4", 1);
    assert_eq!(c.prop("ActiveState"), "active");

    step("a config that cannot start: the journal says why, and after 5 tries the ports close");
    c.ok(&format!("echo 'bogus = 1' >> {CONFIG} && systemctl reset-failed {UNIT}"));
    let failing = Instant::now();
    let (code, _) = c.run(&format!("systemctl restart {UNIT}"), Duration::from_secs(60));
    assert_ne!(code, 0);
    c.wait_for("the socket unit to give up", Duration::from_secs(120), |c| {
        c.state("is-active", "loka-stratum.socket") == "failed"
    });
    eprintln!(
        "crash loop: ports closed {:.1} s after the first failed start",
        failing.elapsed().as_secs_f64()
    );
    assert_eq!(
        c.ok("systemctl show -p Result --value loka-stratum.socket").trim(),
        "service-start-limit-hit"
    );
    let refused = TcpStream::connect_timeout(&sa, Duration::from_secs(5)).map_err(|e| e.kind());
    assert_eq!(
        refused.err(),
        Some(std::io::ErrorKind::ConnectionRefused),
        "miners must be refused, to fail over"
    );
    let errors = c.journal("-p err");
    assert!(
        errors.contains(&format!("error: config file {CONFIG}: line")) && errors.contains("bogus"),
        "{errors}"
    );

    step("giving up is not for good: fixed, it comes back on its own within a minute or so");
    let retry = c.ok("systemctl show -p ActiveState --value loka-stratum-retry.service");
    assert_eq!(retry.trim(), "activating", "OnFailure= started the retry unit");
    c.ok(&format!("sed -i '/^bogus = 1$/d' {CONFIG}"));
    c.wait_for("the service back without a command", Duration::from_secs(120), |c| {
        c.prop("ActiveState") == "active" && c.state("is-active", "loka-stratum.socket") == "active"
    });
    eprintln!("retry: serving again {:.1} s after the first failed start", failing.elapsed().as_secs_f64());
    mine(sa, "erin.rig5", 1);
    step("done");
}
