//! Lines from a hostile miner and a hostile pool, interleaved, through one
//! session: no panic, and what it sends the pool is always whole lines.
#![no_main]

use std::rc::Rc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use loka_stratum::session::{Outbox, Rules, Session};
use loka_stratum::stats::Stats;
use loka_stratum::upstream::Upstream;
use loka_stratum::worker::Rewriter;

fuzz_target!(|data: &[u8]| {
    let rules = Rc::new(Rules { rewriter: Rewriter::new("acct", [".", "_"]), password: Some("x".into()), max_logins: 16 });
    let mut session = Session::new("127.0.0.1:1".parse().unwrap(), rules, Rc::new(Stats::default()), Instant::now());
    let mut up = Upstream::new(Duration::from_secs(600));
    let mut out = Outbox::default();
    let now = Instant::now();
    // The first byte of each line says who sent it.
    for line in data.split(|&b| b == b'\n') {
        let Some((&who, line)) = line.split_first() else { continue };
        let result = if who & 1 == 0 {
            session.on_miner_line(line, &mut up, now, &mut out)
        } else {
            session.on_pool_line(line, &mut up, now, &mut out).map(drop)
        };
        if result.is_err() {
            break;
        }
    }
    assert!(out.to_pool.is_empty() || out.to_pool.ends_with(b"\n"));
    assert!(out.to_miner.is_empty() || out.to_miner.ends_with(b"\n"));
});
