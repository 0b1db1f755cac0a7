//! Load: a thousand miners connected and mining through one proxy at once,
//! with zero protocol errors (issue 8, point 11). Loopback only, every wait
//! bounded.

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::*;

/// Miners connected at once.
const MINERS: usize = 1000;
/// A difficulty at which a hashing miner finds a share in a few dozen hashes.
const EASY: f64 = 1e-8;

/// Raises this process's soft descriptor limit to its hard limit: a thousand
/// miners cost the test two thousand descriptors (miners and pool side) and
/// the daemon, which inherits the limit, two thousand more.
fn raise_descriptor_limit() -> libc::rlim_t {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

#[test]
fn a_thousand_miners_mine_through_one_proxy_without_a_protocol_error() {
    let limit = raise_descriptor_limit();
    assert!(limit >= 5000, "this test needs 5000 descriptors; the hard limit is {limit}");
    let pool = CheckingPool::start(PoolOptions { difficulty: EASY, ..Default::default() });
    let proxy = Daemon::start(
        pool.addr(),
        &[
            ("LOKA_LIMITER_CONNECTIONS", "1000"),
            ("LOKA_SERVER_MAX_CONNECTIONS", "1000"),
            ("RUST_LOG", "info"),
        ],
    );
    // Every miner connects, then all mine at once, then all stay connected
    // until the proxy's gauges have been read.
    let (connected, mined, release) = (
        Arc::new(Barrier::new(MINERS + 1)),
        Arc::new(Barrier::new(MINERS + 1)),
        Arc::new(Barrier::new(MINERS + 1)),
    );
    let miners: Vec<_> = (0..MINERS)
        .map(|i| {
            let addr = proxy.addr;
            let (connected, mined, release) = (connected.clone(), mined.clone(), release.clone());
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || {
                    let miner = HashingMiner::connect(addr);
                    connected.wait();
                    let accepted = miner.ok().map(|mut m| {
                        let ok =
                            m.subscribe("load").is_some() && m.authorize(&format!("bc1qload.rig{i}"), "x");
                        let accepted = if ok { m.mine(2, Duration::from_secs(120)).accepted() } else { 0 };
                        (m, accepted)
                    });
                    mined.wait();
                    release.wait();
                    accepted.map_or(0, |(_, n)| n)
                })
                .expect("spawn a miner thread")
        })
        .collect();
    connected.wait();
    mined.wait();
    assert_eq!(proxy.metric("stratum_connections_active"), Some(MINERS as f64));
    assert_eq!(pool.state().open_connections(), MINERS);
    release.wait();
    let accepted: usize = miners.into_iter().map(|m| m.join().unwrap_or(0)).sum();
    assert_eq!(accepted, 2 * MINERS, "{}", proxy.log_text());
    assert!(proxy.wait_metric("stratum_shares_accepted_total", (2 * MINERS) as f64, DEFAULT_TIMEOUT));
    for series in [
        "stratum_protocol_parse_errors_total",
        "stratum_connection_errors_total",
        "stratum_connections_refused_total",
        "stratum_shares_rejected_total",
        "stratum_shares_unanswered_total",
        "stratum_pool_answers_unmatched_total",
        "stratum_requests_refused_total",
    ] {
        assert_eq!(proxy.metric(series), Some(0.0), "{series}");
    }
    assert_eq!(pool.stats().accepted, 2 * MINERS);
}
