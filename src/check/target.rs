//! Targets: whether a header hash meets a share difficulty or the network's
//! `nbits`, and the difficulty a hash achieved.
//!
//! Hashes are sha256d output bytes, read as a little-endian 256-bit number
//! (PROTOCOL.md, "Checking a share"). The share test is exact for every
//! positive finite difficulty: no rounding of the target.

/// Little-endian 64-bit limbs of a sha256d output read as a little-endian number.
fn limbs(hash: &[u8; 32]) -> [u64; 4] {
    let mut out = [0u64; 4];
    for (limb, chunk) in out.iter_mut().zip(hash.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        *limb = u64::from_le_bytes(word);
    }
    out
}

/// Whether `hash` is at or below the share target of `difficulty`,
/// `floor(0xFFFF·2^208 / difficulty)`; false for a difficulty that is not
/// positive and finite.
///
/// An integer is at or below the floor of a real exactly when it is at or
/// below the real, so the test is `hash · difficulty <= 0xFFFF·2^208`, done
/// in integers with the difficulty as `m · 2^e` (its exact f64 value).
pub fn meets_difficulty(hash: &[u8; 32], difficulty: f64) -> bool {
    if !(difficulty.is_finite() && difficulty > 0.0) {
        return false;
    }
    let bits = difficulty.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1u64 << 52) - 1);
    let (m, e) = if exponent == 0 { (fraction, -1074) } else { (fraction | (1u64 << 52), exponent - 1075) };
    // product = hash · m, 320 bits.
    let mut product = [0u64; 5];
    let mut carry = 0u128;
    for (slot, limb) in product.iter_mut().zip(limbs(hash)) {
        let wide = u128::from(limb) * u128::from(m) + carry;
        *slot = wide as u64;
        carry = wide >> 64;
    }
    product[4] = carry as u64;
    // Compare product · 2^e with 0xFFFF · 2^208, i.e. product with 0xFFFF · 2^k.
    let k = 208 - e;
    if k < 0 {
        // product · 2^-k <= 0xFFFF  <=>  product <= 0xFFFF >> -k.
        let bound = if k <= -16 { 0 } else { 0xFFFFu64 >> -k };
        return product[1..].iter().all(|&l| l == 0) && product[0] <= bound;
    }
    let k = k as u32;
    if k + 16 > 320 {
        // 0xFFFF · 2^k needs more than 320 bits: larger than any product.
        return true;
    }
    let mut bound = [0u64; 5];
    let (word, shift) = ((k / 64) as usize, k % 64);
    let wide = 0xFFFFu128 << shift;
    bound[word] = wide as u64;
    if let Some(next) = bound.get_mut(word + 1) {
        *next = (wide >> 64) as u64;
    }
    // Little-endian limbs: compare from the most significant.
    product.iter().rev().cmp(bound.iter().rev()) != core::cmp::Ordering::Greater
}

/// The network target encoded by `nbits` (Bitcoin's compact form), as
/// big-endian bytes; `None` for a negative or overflowing encoding, which no
/// hash can meet.
pub fn network_target(nbits: u32) -> Option<[u8; 32]> {
    let size = (nbits >> 24) as usize;
    let mantissa = nbits & 0x007f_ffff;
    if nbits & 0x0080_0000 != 0 && mantissa != 0 {
        return None;
    }
    let mut target = [0u8; 32];
    let bytes = mantissa.to_be_bytes(); // bytes[1..4] are the mantissa
    for (i, &b) in bytes[1..].iter().enumerate() {
        // Byte i of the mantissa weighs 256^(size - 1 - i); bytes below
        // 256^0 are shifted out, bytes above 256^31 overflow.
        let Some(weight) = size.checked_sub(1 + i) else {
            continue;
        };
        match 31usize.checked_sub(weight) {
            Some(at) => target[at] = b,
            None if b != 0 => return None,
            None => {}
        }
    }
    Some(target)
}

/// Whether `hash` is at or below a big-endian `target`.
pub fn meets_target(hash: &[u8; 32], target: &[u8; 32]) -> bool {
    hash.iter().rev().cmp(target.iter()) != core::cmp::Ordering::Greater
}

/// The difficulty `hash` achieved: `0xFFFF·2^208 / hash` (infinite for a
/// zero hash). Approximate, for best shares and logs.
pub fn difficulty_of(hash: &[u8; 32]) -> f64 {
    let value = hash.iter().rev().fold(0f64, |v, &b| v * 256.0 + f64::from(b));
    65_535.0 * 2f64.powi(208) / value
}

/// Hashes a sum of share difficulties stands for: each difficulty-1 share
/// is 2^32 hashes on average. Divide by seconds for a hashrate.
pub fn hashes(difficulty: f64) -> f64 {
    difficulty * 4_294_967_296.0
}

/// Display form of a hash: byte-reversed lower-case hex, as block explorers
/// show block hashes.
pub fn display_hex(hash: &[u8; 32]) -> heapless::String<64> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = heapless::String::new();
    for &b in hash.iter().rev() {
        // Cannot fail: 32 bytes are 64 digits.
        let _ = out.push(char::from(DIGITS[usize::from(b >> 4)]));
        let _ = out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}
