//! Micro benchmarks of the per-line hot path, on real lines recorded from
//! cpuminer against ckpool (`tests/fixtures/cpuminer-ckpool.txt`).
//!
//! Run with `cargo bench --bench hot_path`. The allocation counters come from
//! divan's `AllocProfiler`: once warm, a share round trip allocates nothing.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use divan::{AllocProfiler, Bencher, black_box};
use loka_stratum::history::BUCKETS;
use loka_stratum::metrics::{self, Process};
use loka_stratum::pools::Pools;
use loka_stratum::session::{Outbox, Rules, Session};
use loka_stratum::stats::{ShareOutcome, Stats};
use loka_stratum::stratum::Envelope;
use loka_stratum::upstream::Upstream;
use loka_stratum::web::page;
use loka_stratum::worker::Rewriter;

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

const SUBSCRIBE: &str = r#"{"id": 1, "method": "mining.subscribe", "params": ["cpuminer/2.5.1"]}"#;
const SUBSCRIBED: &str = r#"{"result":[[["mining.notify","6b04a380"]],"80a3046b",8],"id":1,"error":null}"#;
const AUTHORIZE: &str = r#"{"id": 2, "method": "mining.authorize", "params": ["user.w1", "x,diff=0.0001"]}"#;
const AUTHORIZED: &str = r#"{"result":true,"error":null,"id":2}"#;
/// So low that every hash meets it: each submit below is a valid share.
const DIFFICULTY: &str = r#"{"params":[1e-12],"id":null,"method":"mining.set_difficulty"}"#;
const NOTIFY: &str = r#"{"params":["6b04a37f00000003","51d37d5c7e3b09a141225925fefafed1005473269988f5666abcf6c5b4118b0d","01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff330301350c000482a3046b04375755130c","0a636b706f6f6c2d6c68720b2f6c6f6b612d626172732fffffffff0140be4025000000001976a91422ddd9233f44ac2e9f183ec755adf134c12cdbf188ac00000000",[],"20000000","17034219","6b04a382",false],"id":null,"method":"mining.notify"}"#;
const SUBMIT: &str = r#"{"method": "mining.submit", "params": ["user.w1", "6b04a37f00000003", "0000000000000000", "6b04a382", "8c750600"], "id":4}"#;
/// A submit around its nonce (each round trip sends a new share: the proxy
/// checks every share and would count the same one again as a duplicate).
const SUBMIT_NONCE: (&str, &str) = (
    r#"{"method": "mining.submit", "params": ["user.w1", "6b04a37f00000003", "0000000000000000", "6b04a382", ""#,
    r#""], "id":4}"#,
);
/// The same job, cleaning the ones before: sent every [`SHARES_PER_JOB`] shares.
const NOTIFY_CLEAN: &str = r#"{"params":["6b04a37f00000003","51d37d5c7e3b09a141225925fefafed1005473269988f5666abcf6c5b4118b0d","01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff330301350c000482a3046b04375755130c","0a636b706f6f6c2d6c68720b2f6c6f6b612d626172732fffffffff0140be4025000000001976a91422ddd9233f44ac2e9f183ec755adf134c12cdbf188ac00000000",[],"20000000","17034219","6b04a382",true],"id":null,"method":"mining.notify"}"#;
/// Shares per job in the round trip (below the duplicate memory's bound).
const SHARES_PER_JOB: u32 = 1000;
/// The pool's answer, to the id the proxy sent the submit under (`{}`).
const ACCEPTED: (&str, &str) = (r#"{"result":true,"error":null,"id":"#, "}");

fn main() {
    divan::main();
}

#[divan::bench]
fn parse_submit() -> usize {
    let env = Envelope::parse(black_box(SUBMIT.as_bytes())).expect("valid submit");
    env.params().map_or(0, <[u8]>::len)
}

#[divan::bench]
fn parse_notify() -> usize {
    let env = Envelope::parse(black_box(NOTIFY.as_bytes())).expect("valid notify");
    env.params().map_or(0, <[u8]>::len)
}

/// A session past its handshake, as the proxy holds one per miner.
struct Rig {
    session: Session,
    up: Upstream,
    out: Outbox,
    now: Instant,
    /// The next proxy id the session will send upstream.
    next_id: u64,
    answer: Vec<u8>,
    /// The next share's nonce, and the submit line built around it.
    nonce: u32,
    submit: Vec<u8>,
}

impl Rig {
    /// Subscribed, authorized (logins rewritten to `account`), with one job.
    fn ready(account: &str) -> Rig {
        let rules = Rules {
            pools: Rc::new(Pools::single(Rewriter::new(account, [".", "_"]), None)),
            max_logins: 16,
            reject_invalid: false,
            templates: Default::default(),
        };
        let now = Instant::now();
        let peer: SocketAddr = "127.0.0.1:5000".parse().expect("address");
        let mut rig = Rig {
            session: Session::new(peer, Rc::new(rules), Rc::new(Stats::default()), now),
            up: Upstream::new(Duration::from_secs(600)),
            out: Outbox::default(),
            now,
            next_id: 3,
            answer: Vec::with_capacity(64),
            nonce: 0,
            submit: Vec::with_capacity(SUBMIT.len()),
        };
        for line in [SUBSCRIBE, AUTHORIZE] {
            rig.miner(line);
        }
        for line in [SUBSCRIBED, AUTHORIZED, DIFFICULTY, NOTIFY] {
            rig.pool(line);
        }
        rig.clear();
        rig
    }

    fn miner(&mut self, line: &str) {
        let handled = self.session.on_miner_line(line.as_bytes(), &mut self.up, self.now, &mut self.out);
        handled.expect("miner line handled");
    }

    fn pool(&mut self, line: &str) {
        let flow = self.session.on_pool_line(line.as_bytes(), &mut self.up, self.now, &mut self.out);
        black_box(flow.expect("pool line handled"));
    }

    /// The miner submits a new valid share; a fresh job comes every
    /// [`SHARES_PER_JOB`] shares.
    fn submit_next(&mut self) {
        use std::io::Write;
        self.nonce += 1;
        if self.nonce.is_multiple_of(SHARES_PER_JOB) {
            self.pool(NOTIFY_CLEAN);
        }
        self.submit.clear();
        let _ = write!(self.submit, "{}{:08x}{}", SUBMIT_NONCE.0, self.nonce, SUBMIT_NONCE.1);
        let handled = self.session.on_miner_line(&self.submit, &mut self.up, self.now, &mut self.out);
        handled.expect("miner line handled");
    }

    /// The pool accepts the share sent last (under the next proxy id).
    fn accept_last(&mut self) {
        use std::io::Write;
        self.answer.clear();
        let _ = write!(self.answer, "{}{}{}", ACCEPTED.0, self.next_id, ACCEPTED.1);
        self.next_id += 1;
        let flow = self.session.on_pool_line(&self.answer, &mut self.up, self.now, &mut self.out);
        black_box(flow.expect("pool line handled"));
    }

    /// Empties the outbox, keeping its capacity (as the proxy does).
    fn clear(&mut self) {
        self.out.to_miner.clear();
        self.out.to_pool.clear();
    }
}

/// A submit from the miner and the pool's answer to it, with logins passed
/// through (`pass_through`) or rewritten to an account.
#[divan::bench(args = ["pass_through", "bc1qaccount"])]
fn share_round_trip(bencher: Bencher, account: &str) {
    let mut rig = Rig::ready(if account == "pass_through" { "" } else { account });
    bencher.bench_local(|| {
        rig.submit_next();
        rig.accept_last();
        rig.clear();
    });
    // Every share checked valid and accepted: none disputed.
    assert_eq!(rig.session.tally().accepted, rig.next_id - 3);
}

/// A job from the pool, forwarded to the miner.
#[divan::bench]
fn notify_forward(bencher: Bencher) {
    let mut rig = Rig::ready("bc1qaccount");
    bencher.bench_local(|| {
        rig.pool(NOTIFY);
        rig.clear();
    });
}

/// The whole metrics page with ten workers' books.
#[divan::bench]
fn metrics_render_10_workers(bencher: Bencher) {
    let stats = Stats::default();
    let now = Instant::now();
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    for w in 0..10 {
        let login = format!("bc1qaccount.rig{w}");
        for _ in 0..100 {
            stats.workers.record(&login, ShareOutcome::Accepted(65536.0), now, unix);
        }
        stats.workers.record(&login, ShareOutcome::Rejected(23), now, unix);
        stats.workers.record(&login, ShareOutcome::Stale, now, unix);
    }
    for ms in [1, 3, 8, 40] {
        stats.submit_duration.observe(Duration::from_millis(ms));
    }
    let process = Process { start_time: unix };
    let pools = Pools::single(Rewriter::new("", [".", "_"]), None);
    let mut page = String::new();
    bencher.bench_local(|| {
        page.clear();
        metrics::render(&mut page, &stats, &pools, &process, now);
        page.len()
    });
}

/// What a worker costs on the heap once it mines: its series, its day of
/// history (a ring of 288 five-minute buckets) and its map entries. 256
/// logins (the series cap) with one accepted share each: divide the bytes
/// allocated by 256.
#[divan::bench]
fn workers_256_with_history(bencher: Bencher) {
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let logins: Vec<String> =
        (0..256).map(|w| format!("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.rig{w}")).collect();
    bencher.bench_local(|| {
        let stats = Stats::default();
        let now = Instant::now();
        for login in &logins {
            stats.workers.record(login, ShareOutcome::Accepted(1.0), now, unix);
        }
        stats
    });
}

/// The status page with 64 workers, each with a day of history: the views,
/// the sparklines and the HTML.
#[divan::bench]
fn status_page_64_workers(bencher: Bencher) {
    let stats = Stats::default();
    let now = Instant::now();
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    for w in 0..64 {
        let login = format!("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.rig{w}");
        for k in 0..288 {
            let at = unix - 86_400 + k * 300;
            stats.workers.record(&login, ShareOutcome::Accepted(65536.0), now, at as f64);
        }
    }
    let mut out = String::new();
    bencher.bench_local(|| {
        let views = stats.workers.view(now, unix);
        let workers = views
            .into_iter()
            .map(|v| {
                let points = stats.workers.sparkline(&v.login, unix, BUCKETS / page::SPARK_POINTS);
                (v, points.unwrap_or_default())
            })
            .collect();
        let p = page::Page {
            name: "bench",
            uptime: 86_400,
            connections: 64,
            pools: Vec::new(),
            workers,
            last_block: None,
            now: unix,
        };
        page::render(&mut out, &p);
        out.len()
    });
    assert!(out.len() <= page::MAX_PAGE_BYTES);
}
