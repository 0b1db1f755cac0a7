//! The check against real mainnet blocks (rebuilt as Stratum jobs) and
//! targets worked out by hand. Random shares against an independent checker
//! are in `tests/check.rs`.

use super::target::{difficulty_of, display_hex, meets_difficulty, meets_target, network_target};
use super::*;

/// `mining.notify` params for a job.
fn notify(
    prevhash: &str,
    coinb1: &str,
    coinb2: &str,
    branches: &[&str],
    version: &str,
    nbits: &str,
) -> String {
    let branches: Vec<String> = branches.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        r#"["job","{prevhash}","{coinb1}","{coinb2}",[{}],"{version}","{nbits}","5f5e1000",true]"#,
        branches.join(",")
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

/// The genesis block's coinbase, split around a 4 + 2 byte extranonce.
const GENESIS_COINB1: &str =
    "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4d04";
const GENESIS_COINB2: &str = "455468652054696d65732030332f4a616e2f32303039204368616e63656c6c6f72206f6e206272696e6b206f66207365636f6e64206261696c6f757420666f722062616e6b73ffffffff0100f2052a01000000434104678afdb0fe5548271967f1a67130b7105cd6a828e03909a67962e0ea1f61deb649f6bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5fac00000000";
const GENESIS_HASH: &str = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f";

fn genesis() -> Template {
    let zero = "0".repeat(64);
    Template::from_notify(
        notify(&zero, GENESIS_COINB1, GENESIS_COINB2, &[], "00000001", "1d00ffff").as_bytes(),
    )
    .unwrap()
}

const GENESIS_GRANT: Grant<'static> =
    Grant { extranonce1: "ffff001d", extranonce2_size: 2, version_mask: None };
const GENESIS_SHARE: Share<'static> =
    Share { extranonce2: "0104", ntime: "495fab29", nonce: "7c2bac1d", version_bits: None };

#[test]
fn the_genesis_block_is_a_block() {
    let hashed = genesis().hash(&GENESIS_GRANT, &GENESIS_SHARE).unwrap();
    assert_eq!(display_hex(&hashed.hash).as_str(), GENESIS_HASH);
    assert!(hashed.block);
    // Its hash achieved difficulty 2536.43 (worked out with Python's integers).
    assert!(meets_difficulty(&hashed.hash, 2536.0) && meets_difficulty(&hashed.hash, 2536.42));
    assert!(!meets_difficulty(&hashed.hash, 2536.43) && !meets_difficulty(&hashed.hash, 2537.0));
    assert!((difficulty_of(&hashed.hash) - 2536.4263).abs() < 1e-3);
    // Upper-case hex from firmware reads the same.
    let upper = Share { nonce: "7C2BAC1D", ..GENESIS_SHARE };
    assert_eq!(genesis().hash(&GENESIS_GRANT, &upper).unwrap(), hashed);
    // Another nonce is no block and (overwhelmingly likely) no share.
    let other = Share { nonce: "7c2bac1e", ..GENESIS_SHARE };
    let hashed = genesis().hash(&GENESIS_GRANT, &other).unwrap();
    assert!(!hashed.block && !meets_difficulty(&hashed.hash, 1.0));
}

/// Block 881423 (2025-01-30, 1514 transactions, version 0x2e596000 rolled
/// under mask 0x1fffe000): coinbase without witness, its 11-hash branch,
/// from 256foundation/mujina's test data; hash checked with Python.
const B881423_COINB1: &str = "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff3d030f730d000469c19a6704830cee220c";
const B881423_COINB2: &str = "0a41706f6c6c6f192f6d696e65642062792032353620466f756e646174696f6e2fffffffff0275aac01200000000160014c64b1b9283ba1ea86bb9e7b696b0c8f68dad04000000000000000000266a24aa21a9edb395560ab72068c2afb1d7e6c7db26b813482089d2c4d2471b9036c5e826140600000000";
const B881423_BRANCHES: [&str; 11] = [
    "4282357ab0a2f4e8e562c8c5eae1d63b559068f9072374b72e26b88ac841908f",
    "c2bbae90d06f8025ade3516ca2e42d79318b6e56fccb9609df85a654a8341068",
    "cbb30084acbcb5ce6d5436e853bc612466df0c00702be6f51d47072f1a5d0480",
    "bb092e533f70b79246fc9e4bdc9b81ac8332e56f2651e3b237a150d6d807b081",
    "0d32959988733447cb340326a1fe4d3c2cff5d636e32a4e08c3fc5a234f6f6bc",
    "8ba3477940924a90067cff3dd30bc46916cf4c2f73fb6229b8f8197b83b6ddb9",
    "3fe97cc5dec1cddd66c9d3780888c145c12418590cd983c4871b1bf03fabbf9e",
    "bd1c6a3bcd0ebaa0eca54d9c802540f312c7705435601d776b4f59bb52cff67d",
    "8638c10190b8f4f558bafdbb57f46226c349a83f229f431143ae75e425fb5cbd",
    "6d6f4eae41cccb21a7c97ac496d9f89b8a4f772389b76f7691519dda38264221",
    "82dad7a1e2613af0e61f77f03d6208c83e72f917dade4235cc35e37ee3ad6e3f",
];
/// Its previous block hash as `mining.notify` carries it (4-byte words swapped).
const B881423_PREV: &str = "8a6ac9e3fe15ca70f8995e21434cb64ac4d2b5e10001543b0000000000000000";
const B881423_HASH: &str = "0000000000000000000269d52c24ea451225613aab095d90d771d4e29aa96cdd";

fn block_881423() -> Template {
    let params =
        notify(B881423_PREV, B881423_COINB1, B881423_COINB2, &B881423_BRANCHES, "20000000", "17029a8a");
    Template::from_notify(params.as_bytes()).unwrap()
}

const ROLLING: Grant<'static> =
    Grant { extranonce1: "f1ad9a67", extranonce2_size: 8, version_mask: Some(0x1fff_e000) };
const B881423_SHARE: Share<'static> = Share {
    extranonce2: "b660000000000000",
    ntime: "679ac169",
    nonce: "ff05fb02",
    version_bits: Some("0e596000"),
};

#[test]
fn a_version_rolled_mainnet_block_is_rebuilt_from_its_job() {
    let hashed = block_881423().hash(&ROLLING, &B881423_SHARE).unwrap();
    assert_eq!(display_hex(&hashed.hash).as_str(), B881423_HASH);
    assert!(hashed.block);
    // Difficulty 116627841100297 (Python's integers).
    assert!(meets_difficulty(&hashed.hash, 116_627_841_100_297.0));
    assert!(!meets_difficulty(&hashed.hash, 116_627_841_100_298.0));
    // Bits outside the granted mask, or rolling that was never granted.
    let outside = Share { version_bits: Some("4e596000"), ..B881423_SHARE };
    assert_eq!(block_881423().hash(&ROLLING, &outside), Err(Verdict::BadVersion));
    let ungranted = Grant { version_mask: None, ..ROLLING };
    assert_eq!(block_881423().hash(&ungranted, &B881423_SHARE), Err(Verdict::BadVersion));
    // The whole rolled version (as some firmware sends it) is the same header.
    let whole = Share { version_bits: Some("2e596000"), ..B881423_SHARE };
    assert_eq!(block_881423().hash(&ROLLING, &whole).unwrap(), hashed);
    // A narrower mask that still holds the bits gives the same header.
    let narrow = Grant { version_mask: Some(0x0fff_e000), ..ROLLING };
    assert_eq!(block_881423().hash(&narrow, &B881423_SHARE).unwrap(), hashed);
    // One extranonce2 byte changed moves the merkle root: not the block.
    let moved = Share { extranonce2: "b660000000000001", ..B881423_SHARE };
    assert!(!block_881423().hash(&ROLLING, &moved).unwrap().block);
}

#[test]
fn the_merkle_root_is_built_from_first_principles() {
    // A coinbase and branches of our own: root = sha256d(sha256d(cb) ‖ b1) … by hand.
    let coinbase = unhex("0102030405060708aabbccdd0000000011223344");
    let (coinb1, rest) = coinbase.split_at(8);
    let (en, coinb2) = rest.split_at(8);
    let b1 = sha256d(b"first sibling");
    let b2 = sha256d(b"second sibling");
    let mut root = sha256d(&coinbase);
    for b in [b1, b2] {
        root = sha256d(&[root, b].concat());
    }
    let version = 0x2000_0000u32;
    let prev_internal = sha256d(b"previous block");
    let mut header = Vec::new();
    header.extend_from_slice(&version.to_le_bytes());
    header.extend_from_slice(&prev_internal);
    header.extend_from_slice(&root);
    header.extend_from_slice(&0x6500_0000u32.to_le_bytes());
    header.extend_from_slice(&0x207f_ffffu32.to_le_bytes());
    header.extend_from_slice(&0x0000_002au32.to_le_bytes());
    let expected = sha256d(&header);
    // The notify carries the previous hash with each 4-byte word swapped.
    let prev_notify: Vec<u8> = prev_internal.chunks(4).flat_map(|w| w.iter().rev().copied()).collect();
    let params = notify(
        &hex(&prev_notify),
        &hex(coinb1),
        &hex(coinb2),
        &[&hex(&b1), &hex(&b2)],
        "20000000",
        "207fffff",
    );
    let template = Template::from_notify(params.as_bytes()).unwrap();
    let grant = Grant { extranonce1: &hex(&en[..4]), extranonce2_size: 4, version_mask: None };
    let share =
        Share { extranonce2: &hex(&en[4..]), ntime: "65000000", nonce: "0000002a", version_bits: None };
    let hashed = template.hash(&grant, &share).unwrap();
    assert_eq!(hashed.hash, expected);
    // nbits 207fffff (regtest) takes half of all hashes as blocks.
    assert_eq!(hashed.block, meets_target(&expected, &network_target(0x207f_ffff).unwrap()));
}

#[test]
fn real_headers_hash_to_their_block_hashes() {
    // (header, block hash): 840000 (version 0x2a5fe000) and 705601
    // (0x2000e004), both version-rolled; checked with Python.
    let cases = [
        (
            "00e05f2aab948491071265ad552351d0ad625745668da54b0172010000000000000000004f89a5d73bd4d4887f25981fe81892ccafda10c27f52d6f3dd28183a7c411b03b7072366194203177d9863ea",
            "0000000000000000000320283a032748cef8227873ff4872689bf23f1cda83a5",
        ),
        (
            "04e0002099be406e55cfc87242a9e4db93c822bdc7e17fefdf370d000000000000000000eba036bca22654014f363f3019d0f08b3cdf6b2747ab57eff2e6dc1da266bc0392d96d6108040e176c6624cd",
            "0000000000000000000567617f2101a979d04cff2572a081aa5f29e30800ab75",
        ),
    ];
    for (header, expected) in cases {
        let header = unhex(header);
        let hash = sha256d(&header);
        assert_eq!(display_hex(&hash).as_str(), expected);
        let nbits = u32::from_le_bytes(header[72..76].try_into().unwrap());
        assert!(meets_target(&hash, &network_target(nbits).unwrap()));
        // A hash one above the target is not a block.
        let mut above = network_target(nbits).unwrap();
        above[31] = above[31].wrapping_add(1);
        above.reverse();
        assert!(!meets_target(&above, &network_target(nbits).unwrap()));
    }
}

/// A little-endian hash of the big-endian number `be`.
fn le(mut be: [u8; 32]) -> [u8; 32] {
    be.reverse();
    be
}

#[test]
fn share_targets_are_exact() {
    let mut t1 = [0u8; 32];
    t1[4] = 0xff;
    t1[5] = 0xff;
    assert!(meets_difficulty(&le(t1), 1.0));
    let mut above = t1;
    above[31] = 1;
    assert!(!meets_difficulty(&le(above), 1.0));
    // Difficulty 2: 0x00000000_7fff8000_00…
    let mut half = [0u8; 32];
    half[4..7].copy_from_slice(&[0x7f, 0xff, 0x80]);
    assert!(meets_difficulty(&le(half), 2.0));
    let mut over = half;
    over[31] = 1;
    assert!(!meets_difficulty(&le(over), 2.0));
    // Difficulty 0.5 doubles the target; 3 gives 0x5555 repeating, floored.
    let mut double = [0u8; 32];
    double[3..6].copy_from_slice(&[0x01, 0xff, 0xfe]);
    assert!(meets_difficulty(&le(double), 0.5) && !meets_difficulty(&le(double), 0.51));
    let mut third = [0u8; 32];
    third[4..6].copy_from_slice(&[0x55, 0x55]);
    assert!(meets_difficulty(&le(third), 3.0));
    third[31] = 1;
    assert!(!meets_difficulty(&le(third), 3.0));
    // Extremes: every hash meets a tiny difficulty, only zero meets a huge one.
    assert!(meets_difficulty(&[0xff; 32], 1e-300) && meets_difficulty(&[0xff; 32], f64::MIN_POSITIVE / 4.0));
    assert!(meets_difficulty(&[0; 32], 1e300) && !meets_difficulty(&le(t1), 1e300));
    let mut one = [0u8; 32];
    one[0] = 1;
    assert!(!meets_difficulty(&one, 1e300));
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(!meets_difficulty(&[0; 32], bad));
    }
}

#[test]
fn network_targets_follow_the_compact_encoding() {
    let be = |n: u128, shift_bytes: usize| {
        let mut out = [0u8; 32];
        let bytes = n.to_be_bytes();
        // The lowest byte of n lands at index 31 - shift_bytes.
        for (i, b) in bytes.iter().enumerate().filter(|(_, b)| **b != 0) {
            out[16 + i - shift_bytes] = *b;
        }
        out
    };
    assert_eq!(network_target(0x1d00_ffff), Some(be(0xffff, 26)));
    assert_eq!(network_target(0x0312_3456), Some(be(0x12_3456, 0)));
    assert_eq!(network_target(0x0212_3456), Some(be(0x1234, 0)));
    assert_eq!(network_target(0x0100_3456), Some([0; 32]));
    let mut top = [0u8; 32];
    top[0] = 1;
    assert_eq!(network_target(0x2200_0001), Some(top));
    assert_eq!(network_target(0x2300_0001), None, "overflow");
    assert_eq!(network_target(0x0492_3456), None, "negative");
    let regtest = network_target(0x207f_ffff).unwrap();
    assert_eq!(&regtest[..4], &[0x7f, 0xff, 0xff, 0]);
}

#[test]
fn malformed_shares_and_jobs_are_values() {
    let t = genesis();
    for share in [
        Share { extranonce2: "01", ..GENESIS_SHARE },
        Share { extranonce2: "010400", ..GENESIS_SHARE },
        Share { extranonce2: "01g4", ..GENESIS_SHARE },
        Share { ntime: "495fab2", ..GENESIS_SHARE },
        Share { nonce: "", ..GENESIS_SHARE },
        Share { nonce: "+c2bac1d", ..GENESIS_SHARE },
        Share { version_bits: Some("xyz"), ..GENESIS_SHARE },
    ] {
        assert_eq!(t.hash(&GENESIS_GRANT, &share), Err(Verdict::Malformed), "{share:?}");
    }
    for grant in [
        Grant { extranonce1: "ffff001", ..GENESIS_GRANT },
        Grant { extranonce2_size: 3, ..GENESIS_GRANT },
        Grant { extranonce2_size: u32::MAX, ..GENESIS_GRANT },
    ] {
        assert_eq!(t.hash(&grant, &GENESIS_SHARE), Err(Verdict::Malformed), "{grant:?}");
    }
    let zero = "0".repeat(64);
    for (params, field) in [
        ("[]".to_string(), "prevhash"),
        (notify(&zero[1..], "00", "00", &[], "00000001", "1d00ffff"), "prevhash"),
        (notify(&zero, "0", "00", &[], "00000001", "1d00ffff"), "coinb1"),
        (notify(&zero, "00", "zz", &[], "00000001", "1d00ffff"), "coinb2"),
        (notify(&zero, "00", "00", &["00"], "00000001", "1d00ffff"), "merkle_branch"),
        (notify(&zero, "00", "00", &[], "1", "1d00ffff"), "version"),
        (notify(&zero, "00", "00", &[], "00000001", "1d00ffffff"), "nbits"),
        (
            format!(r#"["j","{zero}","00","00","notalist","00000001","1d00ffff","00000000",true]"#),
            "merkle_branch",
        ),
    ] {
        assert_eq!(Template::from_notify(params.as_bytes()).unwrap_err(), JobError(field), "{params}");
    }
    let too_deep: Vec<String> = (0..=MAX_BRANCHES).map(|_| zero.clone()).collect();
    let refs: Vec<&str> = too_deep.iter().map(String::as_str).collect();
    let params = notify(&zero, "00", "00", &refs, "00000001", "1d00ffff");
    assert_eq!(Template::from_notify(params.as_bytes()).unwrap_err(), JobError("merkle_branch"));
    // Fields some pools add before clean_jobs are ignored.
    let extra = format!(r#"["j","{zero}","00","00",[],"00000001","1d00ffff","00000000","extra",1,true]"#);
    assert!(Template::from_notify(extra.as_bytes()).is_ok());
}

#[test]
fn sessions_share_the_template_of_the_same_job() {
    let templates = Templates::default();
    let zero = "0".repeat(64);
    let job = |n: u32| notify(&zero, &format!("{n:08x}"), "00", &[], "20000000", "1d00ffff");
    let a = templates.get(job(1).as_bytes()).unwrap();
    let b = templates.get(job(1).as_bytes()).unwrap();
    assert!(std::rc::Rc::ptr_eq(&a, &b), "one parse, one copy for every session");
    let c = templates.get(job(2).as_bytes()).unwrap();
    assert!(!std::rc::Rc::ptr_eq(&a, &c));
    assert_eq!(templates.get(b"[]").unwrap_err(), JobError("prevhash"));
    // Bounded however many jobs come, and a job no session holds is dropped.
    drop((a, b, c));
    let held: Vec<_> =
        (0..3 * MAX_SHARED_TEMPLATES as u32).map(|n| templates.get(job(n).as_bytes()).unwrap()).collect();
    assert!(templates.len() <= MAX_SHARED_TEMPLATES);
    drop(held);
    let _ = templates.get(job(7).as_bytes()).unwrap();
    assert_eq!(templates.len(), 1, "dead entries are pruned");
}
