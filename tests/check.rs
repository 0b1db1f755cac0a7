//! The proxy's own share check: its verdicts against an independent checker
//! (tests/common/share.rs, exact big-integer targets) on thousands of random
//! shares, and the check end to end through the real binary: verdicts in the
//! metrics, blocks found, disputed shares kept out of the books, and
//! `reject_invalid`.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::share::{self, Job, ShareError, hex_encode};
use common::*;
use loka_stratum::check::{Share, Template, Verdict};
use loka_stratum::upstream::Upstream;
use serde_json::json;

const T: Duration = DEFAULT_TIMEOUT;

/// A small xorshift generator: the same shares every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The network target of `nbits` as big-endian bytes, written out here
/// independently of the proxy: mantissa × 256^(size − 3).
fn reference_network_target(nbits: u32) -> [u8; 32] {
    let size = (nbits >> 24) as i32;
    let mantissa = nbits & 0x007f_ffff;
    let mut target = [0u8; 32];
    for (i, byte) in mantissa.to_be_bytes()[1..].iter().enumerate() {
        let weight = size - 1 - i as i32;
        if (0..32).contains(&weight) {
            target[31 - weight as usize] = *byte;
        }
    }
    target
}

/// What the reference says of one share: the verdict, and the hash when it
/// could be hashed.
fn reference(
    job: &Job,
    en1: &[u8],
    en2_size: usize,
    fields: [&str; 3],
    vbits: Option<&str>,
    mask: u32,
    difficulty: f64,
) -> (Verdict, Option<[u8; 32]>) {
    let [en2, ntime, nonce] = fields;
    let Some(en2) = share::hex_decode(en2).filter(|e| e.len() == en2_size) else {
        // The reference checks version bits before anything else.
        return match share::rolled_version(0, vbits, mask) {
            Err(ShareError::VersionBitsOutsideMask { .. }) => (Verdict::BadVersion, None),
            _ => (Verdict::Malformed, None),
        };
    };
    match share::check_share(job, en1, &en2, ntime, nonce, vbits, mask, difficulty) {
        Ok(hash) => (Verdict::Valid, Some(hash)),
        Err(ShareError::LowDifficulty { hash }) => (Verdict::LowDifficulty, Some(hash)),
        Err(ShareError::VersionBitsOutsideMask { .. }) => (Verdict::BadVersion, None),
        Err(_) => (Verdict::Malformed, None),
    }
}

#[test]
fn verdicts_match_a_reference_checker_on_random_shares() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut seen_verdicts = [0usize; 6];
    let mut blocks = 0;
    let now = Instant::now();
    for round in 0..60 {
        let mut up = Upstream::new(Duration::from_secs(600));
        let en1 = rng.bytes(4);
        let en2_size = 1 + rng.below(8) as usize;
        up.set_extranonce(&hex_encode(&en1), en2_size as u32);
        let mask = match rng.below(3) {
            0 => None,
            1 => Some(0x1fff_e000),
            _ => Some(rng.next() as u32 & 0x1fff_e000 | 0x0000_e000),
        };
        up.set_version_mask(mask);
        let difficulty = *rng.pick(&[1e-9, 3.7e-9, 2.5e-10, 1.3e-8, 0.6e-9]);
        up.set_difficulty(difficulty);
        // One job with a 40 KiB coinbase, the others small.
        let coinb2_len = if round == 7 { 40 * 1024 } else { rng.below(300) as usize };
        let coinb1_len = rng.below(120) as usize;
        let job = Job {
            job_id: format!("job{round}"),
            prevhash: hex_encode(&rng.bytes(32)),
            coinb1: hex_encode(&rng.bytes(coinb1_len)),
            coinb2: hex_encode(&rng.bytes(coinb2_len)),
            merkle_branch: (0..rng.below(7)).map(|_| hex_encode(&rng.bytes(32))).collect(),
            version: format!("{:08x}", 0x2000_0000 | (rng.next() as u32 & 0x0000_0fff)),
            nbits: rng.pick(&["207fffff", "2000ffff", "1f00ffff", "17034219", "1d00ffff"]).to_string(),
            ntime: "65a1b2c3".into(),
            clean_jobs: true,
        };
        let params = job.notify_params().to_string();
        let template = Template::from_notify(params.as_bytes()).expect("a job the pool could send");
        up.on_notify(&job.job_id, true, Some(std::rc::Rc::new(template)), now);
        let network = reference_network_target(share::parse_u32_hex(&job.nbits).unwrap());
        let mut valid_keys: HashSet<(String, String, String, Option<String>)> = HashSet::new();
        let mut earlier: Vec<[String; 4]> = Vec::new();
        for _ in 0..100 {
            let mut en2 = hex_encode(&rng.bytes(en2_size));
            let mut ntime = format!("{:08x}", rng.next() as u32);
            let mut nonce = format!("{:08x}", rng.next() as u32);
            let mut vbits = mask.map(|m| format!("{:08x}", rng.next() as u32 & m));
            let mut job_id = job.job_id.clone();
            match rng.below(20) {
                0 => en2 = hex_encode(&rng.bytes(en2_size + 1)),
                1 => ntime.truncate(7),
                2 => nonce.replace_range(0..1, "g"),
                3 => vbits = Some(format!("{:08x}", rng.next() as u32 | 0x4000_0000)),
                4 => job_id = "gone".into(),
                5 | 6 if !earlier.is_empty() => {
                    // Resubmit an earlier share, byte for byte.
                    let [a, b, c, d] = rng.pick(&earlier).clone();
                    (en2, ntime, nonce) = (a, b, c);
                    vbits = (!d.is_empty()).then_some(d);
                }
                _ => {}
            }
            let submitted =
                Share { extranonce2: &en2, ntime: &ntime, nonce: &nonce, version_bits: vbits.as_deref() };
            let judged = up.judge(&job_id, &submitted, now);
            up.remember(&job_id, &judged);
            let (mut expected, hash) = if job_id != job.job_id {
                (Verdict::Stale, None)
            } else {
                let fields = [en2.as_str(), ntime.as_str(), nonce.as_str()];
                reference(&job, &en1, en2_size, fields, vbits.as_deref(), mask.unwrap_or(0), difficulty)
            };
            if expected == Verdict::Valid
                && !valid_keys.insert((en2.clone(), ntime.clone(), nonce.clone(), vbits.clone()))
            {
                expected = Verdict::Duplicate;
            }
            let what =
                format!("round {round} share {en2}/{ntime}/{nonce}/{vbits:?} at difficulty {difficulty}");
            assert_eq!(judged.verdict, expected, "{what}");
            assert_eq!(judged.hashed.map(|h| h.hash), hash, "{what}");
            if let (Some(h), Some(hash)) = (judged.hashed, hash) {
                let mut be = hash;
                be.reverse();
                assert_eq!(h.block, be <= network, "{what}: block");
                blocks += usize::from(h.block && expected != Verdict::Duplicate);
            }
            seen_verdicts[expected.index()] += 1;
            earlier.push([en2, ntime, nonce, vbits.unwrap_or_default()]);
        }
    }
    // Every verdict was exercised, with blocks among them.
    let [valid, low, duplicate, stale, bad_version, malformed] = seen_verdicts;
    assert!(valid > 300 && low > 300, "{seen_verdicts:?}");
    assert!(duplicate > 20 && stale > 50 && bad_version > 50 && malformed > 100, "{seen_verdicts:?}");
    assert!(blocks > 50, "{blocks} blocks");
}

fn proxy_for(pool: &CheckingPool, env: &[(&str, &str)]) -> Daemon {
    let mut all = vec![("LOKA_POOL_USERNAME", "bc1qcheck"), ("LOKA_STORE_COMMIT_INTERVAL", "200ms")];
    all.extend_from_slice(env);
    Daemon::start(pool.addr(), &all)
}

/// Sends a share and waits for its answer's error code (`None`: accepted).
fn submit(miner: &mut HashingMiner, params: serde_json::Value) -> Option<i64> {
    let id = miner.send_submit(params).unwrap();
    let answer = miner.wait_response(&id, Instant::now() + T).expect("an answer");
    answer["error"].get(0).and_then(serde_json::Value::as_i64)
}

/// `loka-stratum workers` for the daemon's books, through its control
/// socket: the command reaches the writer behind every event queued before it.
fn workers(proxy: &Daemon) -> String {
    let store = proxy.dir.join("books.redb");
    let out = cli::run(&["workers"], &[("LOKA_STORE_PATH", store.to_str().unwrap())]);
    assert!(out.status.success(), "{}", cli::text(&out));
    cli::text(&out)
}

fn worker_metric(proxy: &Daemon, name: &str, worker: &str, result: Option<&str>) -> f64 {
    let labels = match result {
        Some(r) => format!("{{worker=\"{worker}\",result=\"{r}\"}}"),
        None => format!("{{worker=\"{worker}\"}}"),
    };
    proxy.metric(&format!("{name}{labels}")).unwrap_or(-1.0)
}

/// Valid, low-difficulty, duplicate and stale shares of a version-rolling
/// miner, as the pool judges them and as the proxy's check does.
#[test]
fn every_share_is_checked_and_the_verdicts_agree_with_the_pool() {
    let pool = CheckingPool::start(PoolOptions { merkle_branches: 5, ..Default::default() });
    let proxy = proxy_for(&pool, &[]);
    let opts = MinerOptions { roll_version: true, ..Default::default() };
    let mut miner = HashingMiner::connect_with(proxy.addr, opts).unwrap();
    assert_eq!(miner.configure(0x1fffe000), Some(0x1fffe000));
    miner.subscribe("bmminer/2.0.0").unwrap();
    assert!(miner.authorize("carol.rig", "x"));
    let report = miner.mine(6, Duration::from_secs(30));
    assert_eq!(report.accepted(), 6, "{:?}", report.rejected_codes());
    // The first share again: the pool says duplicate, and so does the check.
    let first = &report.shares[0];
    let mut again =
        vec![json!("carol.rig"), json!(first.job_id), json!(first.extranonce2), json!(first.ntime)];
    again.push(json!(first.nonce));
    if let Some(bits) = &first.version_bits {
        again.push(json!(bits));
    }
    assert_eq!(submit(&mut miner, json!(again)), Some(22));
    // A nonce that misses the target, and a job that never was.
    let job = miner.job.clone().unwrap();
    let mut low = None;
    for n in 0..64u32 {
        let nonce = format!("{n:08x}");
        let en2 = "0000ffff";
        let en1 = miner.extranonce1.clone().unwrap();
        let hashed = share::check_share(
            &job,
            &en1,
            &share::hex_decode(en2).unwrap(),
            &job.ntime,
            &nonce,
            None,
            0,
            miner.difficulty,
        );
        if matches!(hashed, Err(ShareError::LowDifficulty { .. })) {
            low = Some(json!(["carol.rig", job.job_id, en2, job.ntime, nonce]));
            break;
        }
    }
    assert_eq!(submit(&mut miner, low.expect("a low share among 64 nonces")), Some(23));
    assert_eq!(submit(&mut miner, json!(["carol.rig", "nope", "00000000", job.ntime, "00000000"])), Some(21));
    let checked =
        |result: &str| proxy.metric(&format!("stratum_shares_checked_total{{result=\"{result}\"}}"));
    assert!(proxy.wait_metric("stratum_shares_checked_total{result=\"stale\"}", 1.0, T));
    assert_eq!(checked("valid"), Some(6.0), "{}", proxy.http_get("/metrics").1);
    assert_eq!((checked("duplicate"), checked("low_difficulty")), (Some(1.0), Some(1.0)));
    assert_eq!((checked("bad_version"), checked("malformed")), (Some(0.0), Some(0.0)));
    assert_eq!(proxy.metric("stratum_shares_disputed_total"), Some(0.0));
    // The first share's check waited for its acceptance to give the worker
    // a series: all six count for the worker, none under _other.
    assert_eq!(worker_metric(&proxy, "stratum_worker_shares_checked_total", "carol.rig", Some("valid")), 6.0);
    assert_eq!(worker_metric(&proxy, "stratum_worker_shares_checked_total", "_other", Some("valid")), -1.0);
    // Best share: the highest difficulty the pool computed for its shares.
    let best = pool.submits().iter().map(|s| s.share_difficulty).fold(0.0, f64::max);
    let shown = worker_metric(&proxy, "stratum_worker_best_share_difficulty", "carol.rig", None);
    assert!((shown - best).abs() <= best * 1e-9, "{shown} vs {best}");
    assert!(
        worker_metric(&proxy, "stratum_worker_hashrate_checked_hashes_per_second", "carol.rig", None) > 0.0
    );
    // 2 wrong of 9 checked (stale is not the rig's fault, but counts in the whole).
    let ratio = worker_metric(&proxy, "stratum_worker_hardware_error_ratio", "carol.rig", None);
    assert!((ratio - 2.0 / 9.0).abs() < 1e-9, "{ratio}");
}

/// A share that meets the job's network target is a block: logged at error
/// level with its hash, counted, and kept in the books.
#[test]
fn a_block_is_logged_counted_and_booked() {
    // nbits 1f00ffff: every share at the pool's difficulty 0.0001 is a block.
    let pool = CheckingPool::start(PoolOptions { nbits: "1f00ffff", ..Default::default() });
    let proxy = proxy_for(&pool, &[]);
    let mut miner = HashingMiner::connect(proxy.addr).unwrap();
    miner.subscribe("bitaxe/2.4").unwrap();
    assert!(miner.authorize("dora.lucky", "x"));
    assert_eq!(miner.mine(2, Duration::from_secs(30)).accepted(), 2);
    assert!(proxy.wait_metric("stratum_blocks_found_total", 2.0, T), "{}", proxy.http_get("/metrics").1);
    let line = proxy.wait_log("BLOCK FOUND by worker dora.lucky", T).expect("a block log line");
    let hash = line.split("block hash ").nth(1).and_then(|r| r.split(',').next()).unwrap();
    assert!(hash.len() == 64 && hash.starts_with("0000"), "{line}");
    assert!(line.contains("ERROR"), "highest level: {line}");
    let page = proxy.http_get("/metrics").1;
    let series = format!("stratum_last_block_timestamp_seconds{{worker=\"dora.lucky\",hash=\"{hash}\"}}");
    assert!(page.contains(&series), "{page}");
    // The command reaches the books' writer behind the events it queued.
    let table = workers(&proxy);
    assert!(table.contains("BLOCKS FOUND (2)") && table.contains(hash), "{table}");
    let status = cli::text(&cli::run(&["status", "--url", &format!("http://{}", proxy.metrics)], &[]));
    assert!(status.contains("BLOCKS FOUND: 2"), "{status}");
    // After a restart the page and `status` still show the last block (the
    // count is of this run), and the best share ever is kept.
    let best = proxy.metric("stratum_worker_best_share_difficulty{worker=\"dora.lucky\"}").unwrap();
    let mut proxy = proxy;
    proxy.signal("TERM");
    assert!(proxy.wait_exit(T).expect("stopped").0.success());
    let store = proxy.dir.join("books.redb");
    let again = proxy_for(&pool, &[("LOKA_STORE_PATH", store.to_str().unwrap())]);
    let status = cli::text(&cli::run(&["status", "--url", &format!("http://{}", again.metrics)], &[]));
    assert!(status.contains("blocks found: 0; last ") && status.contains(hash), "{status}");
    let mut miner = HashingMiner::connect(again.addr).unwrap();
    miner.subscribe("bitaxe/2.4").unwrap();
    assert!(miner.authorize("dora.lucky", "x"));
    assert_eq!(miner.mine(1, Duration::from_secs(30)).accepted(), 1);
    let newest = pool.submits().last().unwrap().share_difficulty;
    let shown = again.metric("stratum_worker_best_share_difficulty{worker=\"dora.lucky\"}").unwrap();
    let expected = best.max(newest);
    assert!((shown - expected).abs() <= expected * 1e-9, "{shown}: the best share ever survives a restart");
}

/// A pool that accepts anything does not make the books pay for junk: the
/// shares the proxy's check refuses are disputed, not booked.
#[test]
fn shares_a_lax_pool_accepts_but_the_check_refuses_are_not_booked() {
    let pool = CheckingPool::start(PoolOptions { accept_all: true, ..Default::default() });
    let proxy = proxy_for(&pool, &[]);
    let mut miner = HashingMiner::connect(proxy.addr).unwrap();
    miner.subscribe("x").unwrap();
    assert!(miner.authorize("eve.junk", "x"));
    assert_eq!(miner.mine(1, Duration::from_secs(30)).accepted(), 1);
    let job = miner.job.clone().unwrap();
    for n in 0..5u32 {
        // Version bits outside any mask: all bad_version.
        let junk = json!(["eve.junk", job.job_id, format!("{n:08x}"), job.ntime, "00000000", "ffffffff"]);
        assert_eq!(submit(&mut miner, junk), None, "the lax pool accepts");
    }
    assert!(proxy.wait_metric("stratum_shares_disputed_total", 5.0, T), "{}", proxy.http_get("/metrics").1);
    assert_eq!(proxy.metric("stratum_shares_accepted_total"), Some(1.0));
    assert_eq!(worker_metric(&proxy, "stratum_worker_shares_disputed_total", "eve.junk", None), 5.0);
    assert!(proxy.wait_log("the pool accepted a share the proxy found", T).is_some());
    let table = workers(&proxy);
    let row = table.lines().find(|l| l.starts_with("eve.junk")).unwrap_or_default();
    assert_eq!(row.split_whitespace().nth(2), Some("1"), "one share booked: {table}");
    assert!(table.contains("5 shares the pool accepted failed"), "{table}");
}

/// With `reject_invalid`, the proxy answers shares it is certain of itself
/// and the pool never sees them.
#[test]
fn reject_invalid_keeps_certain_failures_from_the_pool() {
    let pool = CheckingPool::start(PoolOptions::default());
    let proxy = proxy_for(&pool, &[("LOKA_POOL_REJECT_INVALID", "true")]);
    let mut miner = HashingMiner::connect(proxy.addr).unwrap();
    miner.subscribe("x").unwrap();
    assert!(miner.authorize("fay", "x"));
    let report = miner.mine(2, Duration::from_secs(30));
    assert_eq!(report.accepted(), 2);
    let s = &report.shares[1];
    let dup = json!(["fay", s.job_id, s.extranonce2, s.ntime, s.nonce]);
    assert_eq!(submit(&mut miner, dup), Some(22));
    let job = miner.job.clone().unwrap();
    let outside = json!(["fay", job.job_id, "00000001", job.ntime, "00000000", "ffffffff"]);
    assert_eq!(submit(&mut miner, outside), Some(20));
    assert_eq!(pool.submits().len(), 2, "the pool saw only the valid shares");
    // Not a bad line: the miner mines on.
    assert_eq!(miner.mine(1, Duration::from_secs(30)).accepted(), 1);
}
