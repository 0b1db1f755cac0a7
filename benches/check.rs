//! What the local share check costs (`src/check/`): per share, rebuilding
//! the coinbase, the merkle root and the header, sha256d and the difficulty
//! test; once per job, parsing the `mining.notify` params into a `Template`.
//!
//! Run with `cargo bench --bench check`. Two jobs, both with 12 merkle
//! branches (a block of 2049 to 4096 transactions): a ~200 B coinbase, as
//! most pools send, and one whose coinb2 is 40 KiB, as a pool that pays its
//! miners in the coinbase can send. SHA-256 takes the same time whatever the
//! bytes, so the jobs are filler of the right lengths, not real blocks (the
//! unit tests in `src/check/tests.rs` check the hashes on real ones).

use std::time::{Duration, Instant};

use divan::{Bencher, black_box};
use loka_stratum::check::{Grant, Share, Template, Verdict, target};
use loka_stratum::upstream::{MAX_SEEN_SHARES, Upstream};

fn main() {
    divan::main();
}

/// Extranonce1 as a pool grants it: 4 bytes, with 8 for extranonce2.
const EXTRANONCE1: &str = "f1ad9a67";
const EXTRANONCE2_BYTES: u32 = 8;
/// The coinbase of block 881423 up to its extranonces (59 B).
const COINB1: &str = "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff3d030f730d000469c19a6704830cee220c";
const BRANCHES: usize = 12;
/// A share difficulty a small ASIC gets from a pool.
const DIFFICULTY: f64 = 65_536.0;

/// The jobs measured.
#[derive(Debug, Clone, Copy)]
enum Coinbase {
    /// coinb1 59 B + extranonces 12 B + coinb2 129 B = 200 B.
    Small200B,
    /// coinb2 of 40 KiB.
    Coinb2_40KiB,
}

impl core::fmt::Display for Coinbase {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Coinbase::Small200B => "200B_coinbase",
            Coinbase::Coinb2_40KiB => "40KiB_coinb2",
        })
    }
}

impl Coinbase {
    const ALL: [Coinbase; 2] = [Coinbase::Small200B, Coinbase::Coinb2_40KiB];

    fn coinb2_bytes(self) -> usize {
        match self {
            Coinbase::Small200B => 129,
            Coinbase::Coinb2_40KiB => 40 * 1024,
        }
    }

    /// The `mining.notify` params of the job, as the session hands them to
    /// `Template::from_notify`.
    fn notify(self) -> String {
        // Filler that is not all one byte, so nothing can shortcut it.
        let coinb2: String = (0..self.coinb2_bytes()).map(|i| format!("{:02x}", (i * 7 + 3) % 251)).collect();
        let branches: Vec<String> =
            (0..BRANCHES).map(|b| format!("\"{}\"", format!("{:02x}", 0x10 + b).repeat(32))).collect();
        let prevhash = "8a6ac9e3fe15ca70f8995e21434cb64ac4d2b5e10001543b0000000000000000";
        format!(
            r#"["bench","{prevhash}","{COINB1}","{coinb2}",[{}],"20000000","17029a8a","679ac169",true]"#,
            branches.join(",")
        )
    }

    fn template(self) -> Template {
        Template::from_notify(self.notify().as_bytes()).expect("bench notify parses")
    }
}

const GRANT: Grant<'static> =
    Grant { extranonce1: EXTRANONCE1, extranonce2_size: EXTRANONCE2_BYTES, version_mask: Some(0x1fff_e000) };
const SHARE: Share<'static> = Share {
    extranonce2: "b660000000000000",
    ntime: "679ac169",
    nonce: "ff05fb02",
    version_bits: Some("0e596000"),
};

/// Once per job: parse the notify params and hash coinb1.
#[divan::bench(args = Coinbase::ALL)]
fn from_notify(bencher: Bencher, coinbase: Coinbase) {
    let notify = coinbase.notify();
    bencher.bench_local(|| Template::from_notify(black_box(notify.as_bytes())));
}

/// Once per share: `Template::hash` and the difficulty test.
#[divan::bench(args = Coinbase::ALL)]
fn share(bencher: Bencher, coinbase: Coinbase) {
    let template = coinbase.template();
    assert!(template.hash(&GRANT, &SHARE).is_ok(), "bench share hashes");
    bencher.bench_local(|| {
        let hashed = black_box(&template).hash(black_box(&GRANT), black_box(&SHARE));
        hashed.map(|h| target::meets_difficulty(&h.hash, black_box(DIFFICULTY)))
    });
}

/// The whole `Upstream::judge` of a 200 B coinbase share: job lookup, hash,
/// difficulty test and the duplicate memory. The difficulty is so small that
/// every share is valid, and each nonce is new; the job's memory is filled
/// to one short of the bound first, so each share scans all of it, as in a
/// session that found that many valid shares in one job.
#[divan::bench]
fn judge_200b(bencher: Bencher) {
    let now = Instant::now();
    let mut up = Upstream::new(Duration::from_secs(600));
    up.set_extranonce(EXTRANONCE1, EXTRANONCE2_BYTES);
    // Targets at or above 2^256 (difficulty at most 2^-32): any hash meets them.
    up.set_difficulty(1e-12);
    up.set_version_mask(GRANT.version_mask);
    up.on_notify("bench", true, Some(std::rc::Rc::new(Coinbase::Small200B.template())), now);
    let mut nonce = 0u32;
    let mut next = || {
        nonce += 1;
        format!("{nonce:08x}")
    };
    let judge = |up: &Upstream, nonce: &str| {
        let share = Share { nonce, ..SHARE };
        up.judge("bench", &share, now)
    };
    for _ in 1..MAX_SEEN_SHARES {
        let judged = judge(&up, &next());
        up.remember("bench", &judged);
    }
    assert_eq!(up.seen_count(), MAX_SEEN_SHARES - 1, "every warm-up share valid");
    bencher.with_inputs(&mut next).bench_local_refs(|nonce| judge(&up, nonce).verdict);
    assert_eq!(judge(&up, &next()).verdict, Verdict::Valid, "shares stay valid, not duplicates");
}
