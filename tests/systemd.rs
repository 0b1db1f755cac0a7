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
