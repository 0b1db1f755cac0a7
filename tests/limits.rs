//! Limits and bad input: long lines, invalid JSON, garbage, connection caps,
//! timeouts, HTTP on the Stratum port, and shutdown.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const T: Duration = DEFAULT_TIMEOUT;

fn subscribed(proxy: &Daemon) -> ScriptedMiner {
    let mut m = ScriptedMiner::connect(proxy.addr).unwrap();
    m.send_line(r#"{"id":1,"method":"mining.subscribe","params":["t"]}"#).unwrap();
    m.recv_response(&json!(1), T).expect("subscribed");
    m
}

#[test]
fn an_overlong_miner_line_closes_only_that_session() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[]);
    let mut other = HashingMiner::connect(proxy.addr).unwrap();
    other.subscribe("o").unwrap();
    assert!(other.authorize("other", "x"));
    let mut bad = subscribed(&proxy);
    let peer = bad.local_addr().unwrap();
    let long = format!(r#"{{"id":2,"method":"mining.authorize","params":["{}","x"]}}"#, "a".repeat(5000));
    bad.send_line(&long).unwrap();
    assert!(bad.expect_closed(T));
    let log = proxy.wait_log(&format!("miner {peer} disconnected"), T).expect("disconnect logged");
    assert!(log.contains("over the limit") && log.contains("bytes"), "{log}");
    // Nothing of it reached the pool.
    assert!(pool.received(1).iter().all(|l| !l.contains("aaaa")));
    assert_eq!(other.mine(1, Duration::from_secs(30)).accepted(), 1);
}

#[test]
fn an_overlong_pool_line_closes_that_session_without_truncating() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[("LOKA_POOL_MAX_LINE_BYTES", "2048")]);
    let mut m = subscribed(&proxy);
    let long = format!(r#"{{"id":null,"method":"client.show_message","params":["{}"]}}"#, "b".repeat(3000));
    pool.send(0, &long).unwrap();
    // That pool connection is given up (issue 10: a line the proxy cannot
    // read means the pool is lost); the miner, which did not subscribe to
    // extranonce changes, is asked to reconnect to the gateway and closed.
    assert!(m.expect_closed(T));
    assert!(m.received.iter().all(|l| !l.contains("bbbb")), "part of the long line was forwarded");
    assert!(m.received.iter().any(|l| l.contains("client.reconnect")), "{:?}", m.received);
    let log = proxy.wait_log("finding another pool connection", T).unwrap();
    assert!(log.contains("pool sent a line of"), "{log}");
}

#[test]
fn invalid_json_gets_an_error_and_garbage_closes() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[]);
    let mut m = subscribed(&proxy);
    m.send_line(r#"{"id":2,"method":"mining.authorize","params":["w","x"]"#).unwrap();
    let err = m.recv_until(|v| v.get("error").is_some_and(|e| !e.is_null()), T).expect("parse error answer");
    assert_eq!(err["error"][0], json!(-32700));
    m.send_line(r#"{"id":3,"method":"mining.submit","params":["w",1,2,3,4]}"#).unwrap();
    let err = m.recv_response(&json!(3), T).expect("invalid params answer");
    assert_eq!(err["error"][0], json!(-32602));
    // Still serving after bad lines.
    m.send_line(r#"{"id":4,"method":"mining.authorize","params":["w","x"]}"#).unwrap();
    assert_eq!(m.recv_response(&json!(4), T).unwrap()["result"], json!(true));
    assert!(proxy.wait_metric("stratum_protocol_parse_errors_total", 2.0, T));
    m.send_raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n").unwrap();
    assert!(m.expect_closed(T));
}

/// Firmware that tries TLS first (bfgminer): a ClientHello at the door is
/// closed at once (not at the handshake timeout), counted, and logged once
/// per address at info, never as a warning; the plain Stratum it falls back
/// to is served; garbage that is not TLS still warns.
#[test]
fn a_tls_probe_is_closed_at_once_and_noted_once() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[("LOKA_SERVER_HANDSHAKE_TIMEOUT", "120s")]);
    // A TLS 1.2 record carrying a ClientHello, as firmware sends it: no newline.
    let mut hello = vec![0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03];
    hello.resize(205, 0x5a);
    for _ in 0..3 {
        let mut m = ScriptedMiner::connect(proxy.addr).unwrap();
        m.send_raw(&hello).unwrap();
        assert!(m.expect_closed(T), "a TLS probe waits for the handshake timeout");
    }
    assert!(proxy.wait_metric("stratum_tls_probes_total", 3.0, T), "{}", proxy.http_get("/metrics").1);
    let mut m = subscribed(&proxy);
    m.send_line(r#"{"id":2,"method":"mining.authorize","params":["w","x"]}"#).unwrap();
    assert_eq!(m.recv_response(&json!(2), T).unwrap()["result"], json!(true));
    let log = proxy.log_text();
    assert_eq!(log.matches("tried TLS; this port speaks plain Stratum").count(), 1, "{log}");
    // Only the miner that spoke Stratum is logged as connected at info.
    let infos = log.lines().filter(|l| l.contains(" INFO ") && l.contains(" connected")).count();
    assert_eq!(infos, 1, "{log}");
    assert!(!log.contains("WARN"), "{log}");
    let mut junk = ScriptedMiner::connect(proxy.addr).unwrap();
    junk.send_raw(b"\x01\x02\x03 not tls\n").unwrap();
    assert!(junk.expect_closed(T));
    assert!(
        proxy.wait_log("miner sent binary data", T).is_some_and(|l| l.contains("WARN")),
        "{}",
        proxy.log_text()
    );
    assert_eq!(proxy.metric("stratum_tls_probes_total"), Some(3.0));
}

#[test]
fn max_connections_is_enforced() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[("LOKA_SERVER_MAX_CONNECTIONS", "2")]);
    let _a = subscribed(&proxy);
    let _b = subscribed(&proxy);
    let mut c = ScriptedMiner::connect(proxy.addr).unwrap();
    assert!(c.expect_closed(T));
    assert!(proxy.wait_log("server.max_connections", T).is_some());
    assert_eq!(proxy.metric("stratum_connections_refused_total"), Some(1.0));
}

#[test]
fn per_address_limit_is_enforced() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[("LOKA_LIMITER_CONNECTIONS", "1")]);
    let _a = subscribed(&proxy);
    let mut b = ScriptedMiner::connect(proxy.addr).unwrap();
    assert!(b.expect_closed(T));
    assert!(proxy.wait_log("limiter.connections", T).is_some());
}

#[test]
fn silent_and_half_open_connections_time_out() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(
        pool.addr(),
        &[("LOKA_SERVER_HANDSHAKE_TIMEOUT", "300ms"), ("LOKA_SERVER_IDLE_TIMEOUT", "600ms")],
    );
    let mut silent = ScriptedMiner::connect(proxy.addr).unwrap();
    let mut partial = ScriptedMiner::connect(proxy.addr).unwrap();
    partial.send_raw(br#"{"id":1,"method":"mining.subscribe""#).unwrap();
    let mut subscribed_only = subscribed(&proxy);
    assert!(silent.expect_closed(T));
    assert!(partial.expect_closed(T));
    assert!(subscribed_only.expect_closed(T));
    // A miner that finished its handshake stays until it is idle too long.
    let mut idle = HashingMiner::connect(proxy.addr).unwrap();
    idle.subscribe("i").unwrap();
    assert!(idle.authorize("idle", "x"));
    assert!(idle.conn.expect_closed(T));
    assert!(proxy.wait_log("idle timeout", T).is_some());
    assert!(proxy.wait_metric("stratum_connection_timeouts_total", 4.0, T));
}

#[test]
fn connect_is_only_granted_for_the_configured_pool() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[]);
    // Another target: 403 and closed.
    let (status, _) = http_request(proxy.addr, "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n");
    assert_eq!(status, 403);
    let (status, _) = http_request(proxy.addr, "CONNECT example.com:443 HTTP/1.1\r\n\r\n");
    assert_eq!(status, 403);
    // Plain HTTP: 400.
    let (status, body) = http_request(proxy.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 400, "{body}");
    // The pool itself: 200, then Stratum to that pool.
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    write!(s, "CONNECT {} HTTP/1.1\r\nHost: {}\r\n\r\n", pool.addr(), pool.addr()).unwrap();
    s.write_all(b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"via-connect\"]}\n").unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let mut line = String::new();
    while line != "\r\n" {
        line.clear();
        r.read_line(&mut line).unwrap();
    }
    line.clear();
    r.read_line(&mut line).unwrap();
    let answer: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(answer["id"], json!(1));
    assert!(answer["result"][1].is_string());
    assert_eq!(proxy.metric("stratum_http_connect_requests_total{result=\"refused\"}"), Some(2.0));
    assert_eq!(proxy.metric("stratum_http_connect_requests_total{result=\"allowed\"}"), Some(1.0));
}

/// A pool that answers subscribe and authorize at once but holds each submit
/// answer until the test releases it.
fn holding_pool() -> (std::net::SocketAddr, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (got_submit, submitted) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut w = s.try_clone().unwrap();
        for line in BufReader::new(s).lines() {
            let Ok(line) = line else { return };
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let answer = match v["method"].as_str() {
                Some("mining.subscribe") => {
                    json!({"id": v["id"], "result": [[], "00000001", 4], "error": null})
                }
                Some("mining.submit") => {
                    got_submit.send(()).unwrap();
                    if released.recv_timeout(T).is_err() {
                        return;
                    }
                    json!({"id": v["id"], "result": true, "error": null})
                }
                _ => json!({"id": v["id"], "result": true, "error": null}),
            };
            if writeln!(w, "{answer}").is_err() {
                return;
            }
        }
    });
    (addr, submitted, release)
}

#[test]
fn sigterm_finishes_answers_in_flight_and_exits_zero_quickly() {
    let (pool, submitted, release) = holding_pool();
    let proxy = Daemon::start(pool, &[]);
    let mut m = subscribed(&proxy);
    m.send_line(r#"{"id":2,"method":"mining.authorize","params":["w","x"]}"#).unwrap();
    m.recv_response(&json!(2), T).unwrap();
    m.send_line(r#"{"id":3,"method":"mining.submit","params":["w","j","00000000","5f5e1000","00000000"]}"#)
        .unwrap();
    submitted.recv_timeout(T).expect("pool got the submit");
    let mut proxy = proxy;
    let started = Instant::now();
    proxy.signal("TERM");
    assert!(proxy.wait_log("finishing answers in flight", T).is_some());
    // The pool answers after the signal; the miner must still get it.
    release.send(()).unwrap();
    let answer = m.recv_response(&json!(3), T).expect("answer in flight delivered");
    assert_eq!(answer["result"], json!(true));
    let (status, _) = proxy.wait_exit(Duration::from_secs(8)).expect("exited");
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // New connections are refused once stopping.
    assert!(TcpStream::connect(proxy.addr).is_err());
}

#[test]
fn logs_name_address_and_worker() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[]);
    let mut m = HashingMiner::connect(proxy.addr).unwrap();
    let me = m.conn.local_addr().unwrap();
    m.subscribe("x").unwrap();
    assert!(m.authorize("gina.rig", "x"));
    assert!(proxy.wait_log(&format!("miner {me} connected"), T).is_some());
    assert!(proxy.wait_log(&format!("miner {me} authorized as gina.rig"), T).is_some());
    m.conn.close();
    let line = proxy.wait_log(&format!("miner {me} disconnected (gina.rig)"), T).expect("disconnect log");
    assert!(line.contains("accepted 0"), "{line}");
}

#[test]
fn unreachable_pool_closes_the_miner_with_a_log() {
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let proxy = Daemon::start(addr, &[]);
    let mut m = ScriptedMiner::connect(proxy.addr).unwrap();
    m.send_line(r#"{"id":1,"method":"mining.subscribe","params":[]}"#).unwrap();
    assert!(m.expect_closed(T));
    assert!(proxy.wait_log("unreachable", T).is_some());
    let (status, body) = proxy.http_get("/health");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no pool reachable"));
    // Reading the whole answer must not hang either.
    let mut s = TcpStream::connect(proxy.metrics).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(b"GET /health HTTP/1.0\r\n\r\n").unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    assert!(all.starts_with("HTTP/1.1 503"));
}

#[test]
fn per_address_limit_defaults_to_64() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[]);
    let mut open = Vec::new();
    for _ in 0..64 {
        open.push(ScriptedMiner::connect(proxy.addr).unwrap());
    }
    assert!(proxy.wait_metric("stratum_connections_active", 64.0, T), "{}", proxy.log_text());
    let mut over = ScriptedMiner::connect(proxy.addr).unwrap();
    assert!(over.expect_closed(T));
    assert!(proxy.wait_log("limiter.connections", T).is_some());
    assert_eq!(proxy.metric("stratum_connections_refused_total"), Some(1.0));
    // The 64 are still served.
    let m = open.last_mut().unwrap();
    m.send_line(r#"{"id":1,"method":"mining.subscribe","params":["t"]}"#).unwrap();
    assert!(m.recv_response(&json!(1), T).is_some());
}

/// CPU time the process has used: user plus system, from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name (which may hold spaces) start at field 3.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

#[test]
fn out_of_descriptors_backs_off_logs_once_and_recovers() {
    // 48 descriptors: the daemon's own (about 16) and room for ~30 sockets.
    const NOFILE: u64 = 48;
    // How long CPU time is measured while the listener is exhausted.
    const WINDOW: Duration = Duration::from_secs(2);
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start_with_nofile(pool.addr(), &[], NOFILE);
    let warning = proxy.wait_log("descriptor limit", T).expect("descriptor budget logged at start");
    assert!(
        warning.contains(&format!("descriptor limit {NOFILE} allows about 8 miners"))
            && warning.contains("server.max_connections is 1000")
            && warning.contains("raise LimitNOFILE"),
        "{warning}"
    );
    // Each connection that says nothing costs the daemon one descriptor; more
    // connections than descriptors must exhaust it (the rest wait in the
    // listen backlog, which the kernel completes on its own).
    let held: Vec<TcpStream> =
        (0..NOFILE + 16).map(|_| TcpStream::connect_timeout(&proxy.addr, T).unwrap()).collect();
    proxy.wait_log("accepting miners failed", T).expect("accept failure logged");
    let exhausted = Instant::now();
    let cpu_before = cpu_time(proxy.pid());
    // A measurement window, not synchronisation: the listener stays readable
    // the whole time, so a loop without back-off would burn CPU here.
    std::thread::sleep(WINDOW);
    let cpu = cpu_time(proxy.pid()) - cpu_before;
    assert!(cpu < WINDOW / 10, "used {cpu:?} of CPU in {WINDOW:?} while out of descriptors");
    let failures = proxy.log_text().matches("accepting miners failed").count();
    assert_eq!(failures, 1, "{}", proxy.log_text());

    // Once the connections close, it serves again.
    drop(held);
    let recovered = proxy.wait_log("accepting miners again", T).expect("recovery logged");
    let episode = exhausted.elapsed();
    let mut m = HashingMiner::connect(proxy.addr).unwrap();
    m.subscribe("after").unwrap();
    assert!(m.authorize("after", "x"));
    assert_eq!(m.mine(1, Duration::from_secs(30)).accepted(), 1);
    // Back-off: retries grow to one a second (25 ms, 50 ms, … 1 s), so an
    // episode of a few seconds sees a handful of errors, not ten a second.
    let errors = proxy.metric("stratum_accept_errors_total{listener=\"miners\"}").expect("metric");
    let most = episode.as_secs_f64() + 8.0;
    println!("out of descriptors: {cpu:?} CPU in {WINDOW:?}; {errors} accept errors in {episode:?}");
    assert!(errors >= 1.0 && errors <= most, "{errors} accept errors in {episode:?}; {recovered}");
    assert_eq!(proxy.log_text().matches("accepting miners failed").count(), 1);
}

#[test]
fn allow_list_refuses_other_addresses_and_counts_them() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[("LOKA_SERVER_ALLOW", "127.0.0.2/32")]);
    let mut m = ScriptedMiner::connect(proxy.addr).unwrap();
    let me = m.local_addr().unwrap();
    // Admitted, this would open a pool connection; refused, it cannot.
    let _ = m.send_line(r#"{"id":1,"method":"mining.subscribe","params":["t"]}"#);
    assert!(m.expect_closed(T));
    let line = proxy.wait_log(&format!("refusing miner {me}"), T).expect("refusal logged");
    assert!(line.contains("server.allow"), "{line}");
    assert_eq!(proxy.metric("stratum_connections_not_allowed_total"), Some(1.0));
    assert_eq!(proxy.metric("stratum_connections_refused_total"), Some(1.0));
    assert_eq!(proxy.metric("stratum_connections_total"), Some(0.0));
    // A flood is counted in full but logged once.
    for _ in 0..20 {
        let mut m = ScriptedMiner::connect(proxy.addr).unwrap();
        assert!(m.expect_closed(T));
    }
    assert!(proxy.wait_metric("stratum_connections_not_allowed_total", 21.0, T));
    assert_eq!(proxy.log_text().matches("not in server.allow").count(), 1, "{}", proxy.log_text());
    assert_eq!(pool.connection_count(), 0, "a refused miner reached the pool");
}

#[test]
fn allow_list_admits_its_prefix_also_for_ipv4_mapped_peers() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = Daemon::start(pool.addr(), &[("LOKA_SERVER_ALLOW", "10.0.0.0/8, 127.0.0.0/8")]);
    let mut m = subscribed(&proxy);
    m.send_line(r#"{"id":2,"method":"mining.authorize","params":["w","x"]}"#).unwrap();
    assert_eq!(m.recv_response(&json!(2), T).unwrap()["result"], json!(true));
    assert_eq!(proxy.metric("stratum_connections_not_allowed_total"), Some(0.0));
    // An IPv6 listener on the mapped loopback sees 127.0.0.1 as ::ffff:127.0.0.1.
    let pool = CheckingPool::start(PoolOptions::default());
    let args = ["start", "-b", "[::ffff:127.0.0.1]:0", "-p", &pool.addr().to_string()];
    let proxy = Daemon::start_with(&args, &[("LOKA_SERVER_ALLOW", "127.0.0.0/8")]);
    let mut m = subscribed(&proxy);
    let line = proxy.wait_log("connected", T).unwrap();
    assert!(line.contains("::ffff:127.0.0.1"), "{line}");
    m.send_line(r#"{"id":2,"method":"mining.authorize","params":["w","x"]}"#).unwrap();
    assert_eq!(m.recv_response(&json!(2), T).unwrap()["result"], json!(true));
}
