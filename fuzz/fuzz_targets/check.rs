//! Any job and any share through the local share check: `Template::from_notify`
//! on any bytes, then `Template::hash` on any grant and share strings, never
//! a panic. When a share hashes, the result is a function of the share:
//! hashing it again, or with its hex in upper case (as some firmware sends
//! it), gives the same hash; and the share test is monotonic: a hash that
//! meets a difficulty meets any smaller one.
//!
//! Input layout: 17 bytes of numbers, then text split at `\n`:
//!
//! ```text
//! extranonce2_size: u32 LE | mask flag: u8 (odd: a mask) | version_mask: u32 LE
//! | difficulty: f64 LE bits
//! notify params \n extranonce1 \n extranonce2 \n ntime \n nonce [\n version_bits]
//! ```
//!
//! The seeds in `fuzz/seeds/check` are the genesis block and block 881423
//! in this layout.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loka_stratum::check::target::meets_difficulty;
use loka_stratum::check::{Grant, Share, Template};

fuzz_target!(|data: &[u8]| {
    let Some((size, rest)) = data.split_first_chunk::<4>() else { return };
    let Some((&flag, rest)) = rest.split_first() else { return };
    let Some((mask, rest)) = rest.split_first_chunk::<4>() else { return };
    let Some((difficulty, rest)) = rest.split_first_chunk::<8>() else { return };
    let mut parts = rest.split(|&b| b == b'\n');
    let Some(params) = parts.next() else { return };
    let Ok(template) = Template::from_notify(params) else { return };
    let _ = format!("{template:?}");
    // Share fields reach the check as `&str`; anything else never gets there.
    let fields: Vec<String> = parts.map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    let field = |i: usize| fields.get(i).map_or("", String::as_str);
    let grant = Grant {
        extranonce1: field(0),
        extranonce2_size: u32::from_le_bytes(*size),
        version_mask: (flag & 1 == 1).then(|| u32::from_le_bytes(*mask)),
    };
    let share = Share {
        extranonce2: field(1),
        ntime: field(2),
        nonce: field(3),
        version_bits: fields.get(4).map(String::as_str),
    };
    let Ok(hashed) = template.hash(&grant, &share) else { return };
    assert_eq!(template.hash(&grant, &share), Ok(hashed), "hashing again differs");

    // Every field was read as hex, so upper case is the same share.
    let upper: Vec<String> = fields.iter().map(|f| f.to_ascii_uppercase()).collect();
    let up = |i: usize| upper.get(i).map_or("", String::as_str);
    let grant_upper = Grant { extranonce1: up(0), ..grant };
    let share_upper = Share {
        extranonce2: up(1),
        ntime: up(2),
        nonce: up(3),
        version_bits: upper.get(4).map(String::as_str),
    };
    assert_eq!(template.hash(&grant_upper, &share_upper), Ok(hashed), "upper-case hex differs");

    let d = f64::from_le_bytes(*difficulty);
    // d / 2 of the smallest subnormal is 0, which no hash meets by definition.
    if meets_difficulty(&hashed.hash, d) && d / 2.0 > 0.0 {
        assert!(meets_difficulty(&hashed.hash, d / 2.0), "meets {d:e} but not {:e}", d / 2.0);
    }
    if !meets_difficulty(&hashed.hash, d) && d.is_finite() && d > 0.0 && (d * 2.0).is_finite() {
        assert!(!meets_difficulty(&hashed.hash, d * 2.0), "misses {d:e} but meets {:e}", d * 2.0);
    }
});
