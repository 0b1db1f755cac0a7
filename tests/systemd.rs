//! The daemon under systemd: sd_notify over a real datagram socket, and
//! journald-style log lines when `JOURNAL_STREAM` names our stderr.

mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::daemon::bin_command;
use common::*;

const T: Duration = DEFAULT_TIMEOUT;

/// Collects datagrams until `want` has been seen (or the deadline passes).
fn collect_until(sock: &UnixDatagram, got: &mut Vec<String>, want: &str, deadline: Instant) -> bool {
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if got.iter().any(|m| m.contains(want)) {
            return true;
        }
        sock.set_read_timeout(Some(
            deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)),
        ))
        .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got.iter().any(|m| m.contains(want))
}

#[test]
fn notifies_ready_status_watchdog_and_stopping() {
    let dir = std::env::temp_dir().join(format!("loka-notify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let pool = CheckingPool::start(PoolOptions::default());
    let mut proxy =
        Daemon::start(pool.addr(), &[("NOTIFY_SOCKET", path.to_str().unwrap()), ("WATCHDOG_USEC", "200000")]);
    let mut got = Vec::new();
    let deadline = Instant::now() + T;
    assert!(collect_until(&sock, &mut got, "READY=1", deadline), "{got:?}");
    assert!(collect_until(&sock, &mut got, "STATUS=", deadline), "{got:?}");
    // Pings keep coming from the executor: at 100 ms, three within a second or so.
    let pings = |got: &Vec<String>| got.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    while pings(&got) < 3 && Instant::now() < deadline {
        collect_until(&sock, &mut got, "never", Instant::now() + Duration::from_millis(150));
    }
    assert!(pings(&got) >= 3, "{got:?}");
    let status = got.iter().find(|m| m.starts_with("STATUS=")).unwrap();
    assert!(status.contains("miners") && !status.contains('\n'), "{status}");
    proxy.signal("TERM");
    assert!(collect_until(&sock, &mut got, "STOPPING=1", Instant::now() + T), "{got:?}");
    let (status, _) = proxy.wait_exit(T).expect("exit");
    assert!(status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_notify_socket_nothing_breaks() {
    // Daemon::start removes NOTIFY_SOCKET; a bad one is logged and ignored.
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[("NOTIFY_SOCKET", "not-a-socket-path")]);
    let mut m = HashingMiner::connect(proxy.addr).unwrap();
    m.subscribe("x").unwrap();
    assert!(m.authorize("n", "x"));
}

#[test]
fn journald_gets_priorities_and_no_timestamps() {
    let dir = std::env::temp_dir().join(format!("loka-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("stderr.log");
    let file = std::fs::File::create(&log).unwrap();
    let meta = file.metadata().unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let status = bin_command()
        .args(["start", "-b", "127.0.0.1:0", "-p", "127.0.0.1:1"])
        .env("JOURNAL_STREAM", &stream)
        .env("LOKA_METRICS_BIND_ADDRESS", "127.0.0.1:0")
        .env("LOKA_STORE_PATH", dir.join("books.redb"))
        .env("LOKA_SERVER_HANDSHAKE_TIMEOUT", "1s")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn();
    let mut child = status.unwrap();
    let deadline = Instant::now() + T;
    let mut text = String::new();
    while Instant::now() < deadline && !text.contains("metrics on") {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    let line = text.lines().find(|l| l.contains("listening on")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.starts_with("<6>"), "{line}");
    // env_logger's own format starts with "[2026-…"; journald adds its own time.
    assert!(!line.contains("[20") && !line.contains(" INFO "), "{line}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two listeners on 127.0.0.1 port 0, as a socket unit would hold them:
/// Stratum first, then metrics.
fn held_sockets() -> (std::net::TcpListener, std::net::TcpListener) {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (bind(), bind())
}

/// A request sent on a connection made while no daemon serves the port: it
/// waits in the backlog. Returns the stream, to read the answer later.
fn queued_health_request(metrics: std::net::SocketAddr) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(metrics).expect("a held socket queues, never refuses");
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s
}

/// Socket activation as systemd does it (`LISTEN_FDS`): the daemon serves
/// the sockets it is given instead of binding its own, and while the holder
/// keeps them open, a miner that connects between one daemon's exit and the
/// next one's start waits and is served: a restart refuses no one.
#[test]
fn socket_activation_serves_miners_who_connect_while_no_daemon_runs() {
    let pool = CheckingPool::start(PoolOptions::default());
    let (stratum, metrics) = held_sockets();
    let (sa, ma) = (stratum.local_addr().unwrap(), metrics.local_addr().unwrap());
    let (sa_text, ma_text, pool_text) = (sa.to_string(), ma.to_string(), pool.addr().to_string());
    let args = ["start", "-b", &sa_text, "-p", &pool_text];
    let env = [("LOKA_METRICS_BIND_ADDRESS", ma_text.as_str())];

    // Before the first daemon: both ports already take connections.
    let mut early = HashingMiner::connect(sa).unwrap();
    let early_http = queued_health_request(ma);
    let first = Daemon::start_activated(&[&stratum, &metrics], &args, &env);
    assert_eq!((first.addr, first.metrics), (sa, ma), "{}", first.log_text());
    assert!(first.log_text().contains("(socket from systemd)"), "{}", first.log_text());
    assert!(early.subscribe("cpuminer/2.5.1").is_some());
    assert!(early.authorize("alice.rig1", "x"));
    assert_eq!(early.mine(2, Duration::from_secs(30)).accepted(), 2);
    assert_eq!(http_answer(early_http).0, 200);

    // Stop it; connect while no daemon runs; start the next on the same sockets.
    let (status, _) = first.terminate(T).expect("the first daemon exits");
    assert!(status.success());
    let mut between = HashingMiner::connect(sa).expect("no refusal between two daemons");
    let between_http = queued_health_request(ma);
    let second = Daemon::start_activated(&[&stratum, &metrics], &args, &env);
    assert!(between.subscribe("cpuminer/2.5.1").is_some(), "{}", second.log_text());
    assert!(between.authorize("bob.rig2", "x"));
    assert_eq!(between.mine(2, Duration::from_secs(30)).accepted(), 2);
    assert_eq!(http_answer(between_http).0, 200);
    assert!(pool.wait_for(|s| s.accepted() == 4, T));
    assert!(!second.log_text().contains("systemd passed"), "{}", second.log_text());
}

/// A socket at an address the config does not name (the config was edited,
/// the socket unit was not) is still served, since systemd holds it open,
/// and the journal says which addresses differ.
#[test]
fn a_socket_at_another_address_than_the_config_is_served_with_a_warning() {
    let pool = CheckingPool::start(PoolOptions::default());
    let (stratum, metrics) = held_sockets();
    let (sa, ma) = (stratum.local_addr().unwrap(), metrics.local_addr().unwrap());
    let pool_text = pool.addr().to_string();
    // The config asks for other ports (1 and 2) than the sockets have.
    let args = ["start", "-b", "127.0.0.1:1", "-p", &pool_text];
    let d = Daemon::start_activated(
        &[&stratum, &metrics],
        &args,
        &[("LOKA_METRICS_BIND_ADDRESS", "127.0.0.1:2")],
    );
    assert_eq!((d.addr, d.metrics), (sa, ma));
    let warning = d.wait_log("server.bind_address is 127.0.0.1:1", T).expect("a warning");
    assert!(warning.contains(&format!("serving miners on {sa}")), "{warning}");
    assert!(d.wait_log("metrics.bind_address is 127.0.0.1:2", T).is_some());
    let mut miner = HashingMiner::connect(sa).unwrap();
    assert!(miner.subscribe("cpuminer/2.5.1").is_some());
}

/// Starts the daemon with `sockets` passed as systemd passes them, its
/// Stratum and metrics addresses set to `stratum` and `metrics`, and its
/// pool on a closed port; it must stop at once with a failure. Its stderr.
fn failed_activated_start(
    name: &str,
    sockets: &[&std::net::TcpListener],
    stratum: &str,
    metrics: &str,
) -> String {
    let dir = cli::temp_dir(name);
    let out = common::daemon::activated_command(sockets)
        .args(["start", "-b", stratum, "-p", "127.0.0.1:1"])
        .env("LOKA_STORE_PATH", dir.join("books.redb"))
        .env("LOKA_METRICS_BIND_ADDRESS", metrics)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{text}");
    text
}

/// A descriptor that is not a listening TCP socket stops the daemon at start
/// with a message naming it; it never serves a file or a connected socket.
#[test]
fn a_passed_descriptor_that_is_not_a_listener_stops_the_daemon_with_its_name() {
    let (stratum, _metrics) = held_sockets();
    let connected = std::net::TcpStream::connect(stratum.local_addr().unwrap()).unwrap();
    // A connected (not listening) TCP socket, passed as if it were one.
    let not_listening = std::net::TcpListener::from(std::os::fd::OwnedFd::from(connected));
    let text = failed_activated_start("activation-bad-fd", &[&not_listening], "127.0.0.1:0", "127.0.0.1:0");
    assert!(
        text.contains("descriptor 3 (unknown) passed by systemd is not a listening TCP socket"),
        "{text}"
    );
}

/// More sockets than the daemon serves (a unit that lists a third address)
/// stop it with a message naming the one left over: connections to a socket
/// that systemd holds and nobody accepts on would wait forever.
#[test]
fn a_socket_left_over_stops_the_daemon_naming_it() {
    let (stratum, metrics) = held_sockets();
    let (extra, _) = held_sockets();
    let (sa, ma, xa) =
        (stratum.local_addr().unwrap(), metrics.local_addr().unwrap(), extra.local_addr().unwrap());
    let (sa, ma) = (sa.to_string(), ma.to_string());
    let text = failed_activated_start("activation-extra", &[&stratum, &metrics, &extra], &sa, &ma);
    assert!(
        text.contains("more sockets than loka-stratum serves") && text.contains(&xa.to_string()),
        "{text}"
    );
}

/// Under journald, the error that stops the daemon (here a bad config) is
/// written at error priority, so `journalctl -p err` says why it would not
/// start; on a terminal it stays a plain line.
#[test]
fn a_fatal_error_reaches_the_journal_at_error_priority() {
    let dir = cli::temp_dir("journal-fatal");
    let config = dir.join("bad.toml");
    std::fs::write(&config, "[server]\nbogus = 1\n").unwrap();
    let log = dir.join("stderr.log");
    let file = std::fs::File::create(&log).unwrap();
    let meta = file.metadata().unwrap();
    let out = bin_command()
        .args(["-c", config.to_str().unwrap(), "start"])
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdin(Stdio::null())
        .stderr(file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.starts_with("<3>error: config file ") && text.contains("line 2, key server.bogus"),
        "{text}"
    );
    let plain = bin_command().args(["-c", config.to_str().unwrap(), "start"]).output().unwrap();
    assert!(String::from_utf8_lossy(&plain.stderr).starts_with("error: config file "));
}
