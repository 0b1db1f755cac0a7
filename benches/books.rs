//! What the books cost an SD card: commits and bytes written per hour by a
//! gateway with 10 miners, each submitting one share every 3 s (a 100 TH/s
//! ASIC at difficulty 65536), with the default 5 s commit interval.
//!
//! `cargo bench --bench books` runs for 60 s (`LOKA_BENCH_SECS` to change)
//! and scales the figures to an hour. Bytes are the daemon's `write_bytes`
//! from `/proc/PID/io` (what reached the block layer), so run it on a real
//! disk, not tmpfs: the books go under `target/`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_loka-stratum");
const MINERS: usize = 10;
const SHARE_EVERY: Duration = Duration::from_secs(3);

/// A pool that accepts everything at once.
fn pool() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind pool");
    let addr = listener.local_addr().expect("pool addr");
    thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(conn) = conn else { continue };
            thread::spawn(move || {
                let mut out = conn.try_clone().expect("clone");
                for line in BufReader::new(conn).lines() {
                    let Ok(line) = line else { return };
                    let id = line
                        .split("\"id\":")
                        .nth(1)
                        .and_then(|r| r.split([',', '}']).next())
                        .unwrap_or("null");
                    let answer = if line.contains("mining.subscribe") {
                        format!("{{\"id\":{id},\"result\":[[],\"{n:08x}\",4],\"error\":null}}\n")
                    } else {
                        format!("{{\"id\":{id},\"result\":true,\"error\":null}}\n")
                    };
                    let mut msg = answer;
                    if line.contains("mining.authorize") {
                        msg.push_str(
                            "{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[65536]}\n",
                        );
                        msg.push_str(&format!("{{\"id\":null,\"method\":\"mining.notify\",\"params\":[\"j1\",\"{}\",\"01\",\"02\",[],\"20000000\",\"1d00ffff\",\"5f5e1000\",true]}}\n", "0".repeat(64)));
                    }
                    if out.write_all(msg.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn write_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("write_bytes: ")?.trim().parse().ok()))
        .unwrap_or(0)
}

fn metric(addr: SocketAddr, name: &str) -> f64 {
    let Ok(mut s) = TcpStream::connect(addr) else { return 0.0 };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
    let mut text = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut text);
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let secs: u64 = std::env::var("LOKA_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(if quick {
        4
    } else {
        60
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/books-bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let pool = pool();
    let mut child = Command::new(BIN)
        .args(["start", "-b", "127.0.0.1:0", "-p", &pool.to_string(), "-u", "bc1qbench"])
        .env("LOKA_STORE_PATH", dir.join("books.redb"))
        .env("LOKA_METRICS_BIND_ADDRESS", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start loka-stratum");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut proxy, mut metrics) = (None, None);
    while proxy.is_none() || metrics.is_none() {
        let line = rx.recv_timeout(Duration::from_secs(10)).expect("daemon start line");
        let after = |m: &str| -> Option<SocketAddr> {
            let rest = &line[line.find(m)? + m.len()..];
            rest.split([',', '/', ' ']).next()?.parse().ok()
        };
        proxy = proxy.or(after("listening on "));
        metrics = metrics.or(after("metrics on http://"));
    }
    let (proxy, metrics) = (proxy.expect("proxy"), metrics.expect("metrics"));
    let pid = child.id();
    let before = write_bytes(pid);
    let started = Instant::now();
    let miners: Vec<_> = (0..MINERS)
        .map(|i| {
            thread::spawn(move || {
                let s = TcpStream::connect(proxy).expect("connect");
                let mut r = BufReader::new(s.try_clone().expect("clone"));
                let mut w = s;
                let hello = format!(
                    "{{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"bench\"]}}\n{{\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"m{i}.rig\",\"x\"]}}\n"
                );
                w.write_all(hello.as_bytes()).expect("hello");
                let mut line = String::new();
                let mut n = 0u32;
                let deadline = Instant::now() + Duration::from_secs(secs);
                // Stagger the miners across the 3 s period.
                thread::sleep(SHARE_EVERY * i as u32 / MINERS as u32);
                while Instant::now() < deadline {
                    let submit = format!("{{\"id\":4,\"method\":\"mining.submit\",\"params\":[\"m{i}.rig\",\"j1\",\"00000000\",\"5f5e1000\",\"{n:08x}\"]}}\n");
                    if w.write_all(submit.as_bytes()).is_err() {
                        break;
                    }
                    n += 1;
                    thread::sleep(SHARE_EVERY);
                }
                let _ = r.read_line(&mut line);
                n
            })
        })
        .collect();
    let shares: u32 = miners.into_iter().map(|m| m.join().unwrap_or(0)).sum();
    // Let the last interval commit.
    thread::sleep(Duration::from_secs(6));
    let elapsed = started.elapsed().as_secs_f64();
    let commits = metric(metrics, "stratum_store_commits_total");
    let events = metric(metrics, "stratum_store_events_committed_total");
    let bytes = write_bytes(pid).saturating_sub(before);
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();
    let size = std::fs::metadata(dir.join("books.redb")).map(|m| m.len()).unwrap_or(0);
    let per_hour = 3600.0 / elapsed;
    println!(
        "loka-stratum books bench: {MINERS} miners, one share every {SHARE_EVERY:?} each, {secs} s{}",
        if quick { " (smoke run; use --bench)" } else { "" }
    );
    println!("  shares submitted {shares}, events committed {events}, commits {commits}, in {elapsed:.1} s");
    println!("  commits per hour   {:>10.0}", commits * per_hour);
    println!(
        "  bytes per hour     {:>10.0}  ({:.1} MiB)",
        bytes as f64 * per_hour,
        bytes as f64 * per_hour / 1048576.0
    );
    println!("  bytes per commit   {:>10.0}", if commits > 0.0 { bytes as f64 / commits } else { 0.0 });
    println!("  file size at end   {size:>10}");
    let _ = std::fs::remove_dir_all(&dir);
}
