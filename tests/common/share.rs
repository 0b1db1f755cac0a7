//! Share checking exactly as a pool does it (PROTOCOL.md, "Checking a share").

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::fmt;

/// Double SHA-256 of `data`.
pub fn sha256d(data: &[u8]) -> [u8; 32] {
    let first: [u8; 32] = Sha256::digest(data).into();
    Sha256::digest(first).into()
}

/// Lower-case hex encoding of `bytes`.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// Decodes a hex string (either case). `None` on odd length or a non-hex digit.
pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2).map(|p| Some((nibble(p[0])? << 4) | nibble(p[1])?)).collect()
}

/// Parses an 8-digit hex string as a big-endian `u32` (the Stratum convention
/// for version, nbits, ntime, nonce, version bits and masks).
pub fn parse_u32_hex(s: &str) -> Option<u32> {
    if s.len() != 8 {
        return None;
    }
    let bytes = hex_decode(s)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// A `mining.notify` job.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    /// Job id (opaque string).
    pub job_id: String,
    /// Previous block hash as sent in `mining.notify` (64 hex, word-swapped).
    pub prevhash: String,
    /// Coinbase part before the extranonces (hex).
    pub coinb1: String,
    /// Coinbase part after the extranonces (hex).
    pub coinb2: String,
    /// Merkle branch hashes (hex, 32 bytes each).
    pub merkle_branch: Vec<String>,
    /// Block version (8 hex, big-endian).
    pub version: String,
    /// Encoded network target (8 hex).
    pub nbits: String,
    /// Block time (8 hex).
    pub ntime: String,
    /// Whether older jobs are invalidated.
    pub clean_jobs: bool,
}

impl Job {
    /// Parses the `params` array of a `mining.notify`. Tolerates extra fields
    /// inserted before `clean_jobs` (the last element is taken as `clean_jobs`).
    pub fn from_notify_params(params: &Value) -> Option<Job> {
        let p = params.as_array()?;
        if p.len() < 9 {
            return None;
        }
        let s = |i: usize| p[i].as_str().map(str::to_owned);
        Some(Job {
            job_id: s(0)?,
            prevhash: s(1)?,
            coinb1: s(2)?,
            coinb2: s(3)?,
            merkle_branch: p[4]
                .as_array()?
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()?,
            version: s(5)?,
            nbits: s(6)?,
            ntime: s(7)?,
            clean_jobs: p[p.len() - 1].as_bool()?,
        })
    }

    /// The `params` array of a `mining.notify` for this job.
    pub fn notify_params(&self) -> Value {
        json!([
            self.job_id,
            self.prevhash,
            self.coinb1,
            self.coinb2,
            self.merkle_branch,
            self.version,
            self.nbits,
            self.ntime,
            self.clean_jobs
        ])
    }

    /// A complete `mining.notify` line (without the trailing newline).
    pub fn notify_line(&self) -> String {
        json!({"id": null, "method": "mining.notify", "params": self.notify_params()}).to_string()
    }
}

/// Why a share failed [`check_share`].
#[derive(Clone, Debug, PartialEq)]
pub enum ShareError {
    /// A field is not valid hex or has the wrong length.
    BadField(&'static str),
    /// Version bits set outside the negotiated mask.
    VersionBitsOutsideMask {
        /// Submitted version bits.
        bits: u32,
        /// Negotiated mask.
        mask: u32,
    },
    /// The difficulty is not a positive finite number.
    BadDifficulty,
    /// The header hash is above the share target.
    LowDifficulty {
        /// The header hash (sha256d, internal byte order).
        hash: [u8; 32],
    },
}

impl fmt::Display for ShareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShareError::BadField(name) => write!(f, "bad field {name}"),
            ShareError::VersionBitsOutsideMask { bits, mask } => {
                write!(f, "version bits {bits:08x} outside mask {mask:08x}")
            }
            ShareError::BadDifficulty => write!(f, "bad difficulty"),
            ShareError::LowDifficulty { hash } => {
                write!(f, "low difficulty share (hash {})", display_hash(hash))
            }
        }
    }
}

/// A hash in the usual display order (byte-reversed hex).
pub fn display_hash(hash: &[u8; 32]) -> String {
    let mut h = *hash;
    h.reverse();
    hex_encode(&h)
}

/// Coinbase = coinb1 ‖ extranonce1 ‖ extranonce2 ‖ coinb2.
pub fn coinbase(job: &Job, extranonce1: &[u8], extranonce2: &[u8]) -> Result<Vec<u8>, ShareError> {
    let mut cb = hex_decode(&job.coinb1).ok_or(ShareError::BadField("coinb1"))?;
    cb.extend_from_slice(extranonce1);
    cb.extend_from_slice(extranonce2);
    cb.extend(hex_decode(&job.coinb2).ok_or(ShareError::BadField("coinb2"))?);
    Ok(cb)
}

/// Merkle root: sha256d(coinbase), then root = sha256d(root ‖ branch) per branch.
pub fn merkle_root(job: &Job, extranonce1: &[u8], extranonce2: &[u8]) -> Result<[u8; 32], ShareError> {
    let mut root = sha256d(&coinbase(job, extranonce1, extranonce2)?);
    for b in &job.merkle_branch {
        let b = hex_decode(b).ok_or(ShareError::BadField("merkle_branch"))?;
        if b.len() != 32 {
            return Err(ShareError::BadField("merkle_branch"));
        }
        let mut buf = [0u8; 64];
        buf[..32].copy_from_slice(&root);
        buf[32..].copy_from_slice(&b);
        root = sha256d(&buf);
    }
    Ok(root)
}

/// The 80-byte header: version LE32 ‖ prevhash (each 4-byte word of the
/// notify hex byte-swapped) ‖ root ‖ ntime LE32 ‖ nbits LE32 ‖ nonce LE32.
pub fn build_header(
    version: u32,
    prevhash: &str,
    merkle_root: &[u8; 32],
    ntime: &str,
    nbits: &str,
    nonce: &str,
) -> Result<[u8; 80], ShareError> {
    let prev = hex_decode(prevhash).ok_or(ShareError::BadField("prevhash"))?;
    if prev.len() != 32 {
        return Err(ShareError::BadField("prevhash"));
    }
    let ntime = parse_u32_hex(ntime).ok_or(ShareError::BadField("ntime"))?;
    let nbits = parse_u32_hex(nbits).ok_or(ShareError::BadField("nbits"))?;
    let nonce = parse_u32_hex(nonce).ok_or(ShareError::BadField("nonce"))?;
    let mut h = [0u8; 80];
    h[0..4].copy_from_slice(&version.to_le_bytes());
    for (i, w) in prev.chunks(4).enumerate() {
        for j in 0..4 {
            h[4 + i * 4 + j] = w[3 - j];
        }
    }
    h[36..68].copy_from_slice(merkle_root);
    h[68..72].copy_from_slice(&ntime.to_le_bytes());
    h[72..76].copy_from_slice(&nbits.to_le_bytes());
    h[76..80].copy_from_slice(&nonce.to_le_bytes());
    Ok(h)
}

/// Block version used in the header: `(job_version & !mask) | (bits & mask)`;
/// bits outside `mask` are an error. `None` means no version rolling.
pub fn rolled_version(job_version: u32, version_bits: Option<&str>, mask: u32) -> Result<u32, ShareError> {
    match version_bits {
        None => Ok(job_version),
        Some(s) => {
            let bits = parse_u32_hex(s).ok_or(ShareError::BadField("version_bits"))?;
            if bits & !mask != 0 {
                return Err(ShareError::VersionBitsOutsideMask { bits, mask });
            }
            Ok((job_version & !mask) | (bits & mask))
        }
    }
}

/// Share target for `difficulty` as a big-endian 256-bit number:
/// floor(0xFFFF << 208 / difficulty), exact for any positive finite f64,
/// clamped to 2^256 - 1. `None` if the difficulty is not positive and finite.
pub fn target_for_difficulty(difficulty: f64) -> Option<[u8; 32]> {
    if !(difficulty.is_finite() && difficulty > 0.0) {
        return None;
    }
    // difficulty = m * 2^e exactly.
    let bits = difficulty.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64;
    let frac = bits & ((1u64 << 52) - 1);
    let (m, e) = if exp == 0 { (frac, -1074i64) } else { (frac | (1u64 << 52), exp - 1075) };
    // target = floor(floor((0xFFFF << max(0, 208 - e)) / m) >> max(0, e - 208)).
    let shl = (208 - e).max(0) as usize;
    let shr = (e - 208).max(0) as usize;
    // Little-endian u32 limbs.
    let n_limbs = (shl + 16) / 32 + 2;
    let mut num = vec![0u32; n_limbs];
    let v = 0xFFFFu64 << (shl % 32);
    num[shl / 32] = v as u32;
    num[shl / 32 + 1] = (v >> 32) as u32;
    let mut rem: u128 = 0;
    for limb in num.iter_mut().rev() {
        let cur = (rem << 32) | *limb as u128;
        *limb = (cur / m as u128) as u32;
        rem = cur % m as u128;
    }
    // Shift right by shr.
    let (ws, bs) = (shr / 32, shr % 32);
    let q: Vec<u32> = (0..num.len())
        .map(|i| {
            let lo = num.get(i + ws).copied().unwrap_or(0) as u64;
            let hi = num.get(i + ws + 1).copied().unwrap_or(0) as u64;
            (((hi << 32) | lo) >> bs) as u32
        })
        .collect();
    if q.iter().skip(8).any(|&l| l != 0) {
        return Some([0xff; 32]);
    }
    let mut out = [0u8; 32];
    for i in 0..8 {
        let l = q.get(i).copied().unwrap_or(0);
        out[28 - i * 4..32 - i * 4].copy_from_slice(&l.to_be_bytes());
    }
    Some(out)
}

/// Whether `hash` (sha256d output, read as a little-endian 256-bit number)
/// is at or below the share target for `difficulty`.
pub fn hash_meets_difficulty(hash: &[u8; 32], difficulty: f64) -> bool {
    match target_for_difficulty(difficulty) {
        Some(target) => {
            let mut be = *hash;
            be.reverse();
            be <= target
        }
        None => false,
    }
}

/// Approximate share difficulty achieved by `hash` (diff-1 target / hash).
pub fn hash_difficulty(hash: &[u8; 32]) -> f64 {
    let mut v = 0f64;
    for b in hash.iter().rev() {
        v = v * 256.0 + *b as f64;
    }
    let diff1 = 65535.0 * 2f64.powi(208);
    if v == 0.0 { f64::INFINITY } else { diff1 / v }
}

/// Checks a share exactly as a pool does; returns the header hash on success.
#[allow(clippy::too_many_arguments)]
pub fn check_share(
    job: &Job,
    extranonce1: &[u8],
    extranonce2: &[u8],
    ntime: &str,
    nonce: &str,
    version_bits: Option<&str>,
    version_mask: u32,
    difficulty: f64,
) -> Result<[u8; 32], ShareError> {
    let target = target_for_difficulty(difficulty).ok_or(ShareError::BadDifficulty)?;
    let job_version = parse_u32_hex(&job.version).ok_or(ShareError::BadField("version"))?;
    let version = rolled_version(job_version, version_bits, version_mask)?;
    let root = merkle_root(job, extranonce1, extranonce2)?;
    let header = build_header(version, &job.prevhash, &root, ntime, &job.nbits, nonce)?;
    let hash = sha256d(&header);
    let mut be = hash;
    be.reverse();
    if be <= target { Ok(hash) } else { Err(ShareError::LowDifficulty { hash }) }
}

const SHA256_IV: [u32; 8] =
    [0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19];

/// Fast sha256d of 80-byte headers that differ only in the nonce: the first
/// 64 bytes are compressed once (midstate), then two compressions per nonce
/// with sha2's optimised block function. Written to stay fast in debug builds.
#[derive(Clone, Debug)]
pub struct HeaderHasher {
    midstate: [u32; 8],
    tail: [u8; 64],
    second: [u8; 64],
}

impl HeaderHasher {
    /// Prepares hashing of `header` (bytes 76..80, the nonce, are replaced per call).
    pub fn new(header: &[u8; 80]) -> HeaderHasher {
        let mut midstate = SHA256_IV;
        let mut first = [0u8; 64];
        first.copy_from_slice(&header[..64]);
        sha2::block_api::compress256(&mut midstate, &[first]);
        let mut tail = [0u8; 64];
        tail[..16].copy_from_slice(&header[64..80]);
        tail[16] = 0x80;
        tail[56..64].copy_from_slice(&(80u64 * 8).to_be_bytes());
        let mut second = [0u8; 64];
        second[32] = 0x80;
        second[56..64].copy_from_slice(&(32u64 * 8).to_be_bytes());
        HeaderHasher { midstate, tail, second }
    }

    /// Final SHA-256 state words of sha256d(header with `nonce`). The hash
    /// bytes are the words big-endian; `state[7].swap_bytes()` is the top 32
    /// bits of the hash read as a little-endian 256-bit number.
    pub fn hash_state(&mut self, nonce: u32) -> [u32; 8] {
        let n = nonce.to_le_bytes();
        self.tail[12] = n[0];
        self.tail[13] = n[1];
        self.tail[14] = n[2];
        self.tail[15] = n[3];
        let mut s = self.midstate;
        sha2::block_api::compress256(&mut s, std::slice::from_ref(&self.tail));
        let hi =
            (u128::from(s[0]) << 96) | (u128::from(s[1]) << 64) | (u128::from(s[2]) << 32) | u128::from(s[3]);
        let lo =
            (u128::from(s[4]) << 96) | (u128::from(s[5]) << 64) | (u128::from(s[6]) << 32) | u128::from(s[7]);
        let mut block = self.second;
        block[..16].copy_from_slice(&hi.to_be_bytes());
        block[16..32].copy_from_slice(&lo.to_be_bytes());
        let mut out = SHA256_IV;
        sha2::block_api::compress256(&mut out, std::slice::from_ref(&block));
        out
    }

    /// sha256d of the header with `nonce` (written little-endian at 76..80).
    pub fn hash(&mut self, nonce: u32) -> [u8; 32] {
        state_to_bytes(&self.hash_state(nonce))
    }
}

/// SHA-256 state words to digest bytes.
pub fn state_to_bytes(state: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, w) in state.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
    }
    out
}
