//! The local share check, as a pool does it (PROTOCOL.md, "Checking a
//! share"): rebuild the coinbase, the merkle root and the 80-byte header of a
//! submitted share and hash it, then judge the hash against the share and
//! network targets.
//!
//! Pure functions over a job and a share; no I/O. A job is parsed once into a
//! [`Template`] that keeps what every share of the job shares: the SHA-256
//! state after `coinb1`, `coinb2` as bytes, the merkle branches and the
//! header fields. A share then costs hashing the extranonces and `coinb2`,
//! one double hash per branch, and the header.
//!
//! Invariant: a share gets [`Verdict::Valid`] only when its header, built
//! from the job the pool sent, the extranonce1 it granted, and the fields the
//! miner submitted, hashes at or below the share target of its job's
//! difficulty; no input can make the check panic.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use sha2::{Digest, Sha256};

use crate::stratum::{self, items};

pub mod target;
#[cfg(test)]
mod tests;

/// Distinct jobs [`Templates`] finds again for other sessions, at most.
pub const MAX_SHARED_TEMPLATES: usize = 64;

/// Most merkle branches a job may carry (a block of 2^32 transactions).
pub const MAX_BRANCHES: usize = 32;
/// Longest extranonce (1 or 2) the check handles, in bytes.
pub const MAX_EXTRANONCE_BYTES: usize = 32;

/// What the proxy concluded about a share on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The header hash meets the share target of its job.
    Valid,
    /// The header hash is above the share target.
    LowDifficulty,
    /// The same job, extranonce2, ntime, nonce and version were already
    /// found valid in this job's life.
    Duplicate,
    /// The job is unknown (never sent, cleaned, pushed out) or expired.
    Stale,
    /// Version bits outside the mask granted to the miner.
    BadVersion,
    /// A field is missing, not hex, or of the wrong length, or the session
    /// has no extranonce to build the coinbase with.
    Malformed,
}

impl Verdict {
    /// Every verdict, in label order.
    pub const ALL: [Verdict; 6] = [
        Verdict::Valid,
        Verdict::LowDifficulty,
        Verdict::Duplicate,
        Verdict::Stale,
        Verdict::BadVersion,
        Verdict::Malformed,
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::LowDifficulty => "low_difficulty",
            Verdict::Duplicate => "duplicate",
            Verdict::Stale => "stale",
            Verdict::BadVersion => "bad_version",
            Verdict::Malformed => "malformed",
        }
    }

    /// Position in [`Verdict::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the miner did work that is wrong (a failing hashboard or
    /// firmware): everything but valid and stale shares.
    pub fn is_hardware_error(self) -> bool {
        !matches!(self, Verdict::Valid | Verdict::Stale)
    }

    /// Shares found wrong over all checked, from counts by verdict (index in
    /// [`Verdict::ALL`]); stale ones are not the miner's fault but count in
    /// the whole. A failing hashboard shows here.
    pub fn hardware_error_ratio(checked: &[u64; 6]) -> f64 {
        let all: u64 = checked.iter().sum();
        let wrong: u64 =
            Verdict::ALL.iter().filter(|v| v.is_hardware_error()).map(|v| checked[v.index()]).sum();
        if all == 0 { 0.0 } else { wrong as f64 / all as f64 }
    }
}

/// Why a `mining.notify` cannot be checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobError(
    /// The field that is missing or malformed.
    pub &'static str,
);

impl core::fmt::Display for JobError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "mining.notify field {} is missing or malformed", self.0)
    }
}

impl std::error::Error for JobError {}

/// What one job fixes for all its shares, parsed and partly hashed once.
#[derive(Clone)]
pub struct Template {
    /// SHA-256 state after `coinb1`.
    after_coinb1: Sha256,
    coinb2: Box<[u8]>,
    branches: Box<[[u8; 32]]>,
    version: u32,
    /// The previous block hash in header byte order.
    prevhash: [u8; 32],
    nbits: u32,
    /// The network target of `nbits`, `None` when it encodes none.
    network: Option<[u8; 32]>,
}

impl core::fmt::Debug for Template {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Template")
            .field("coinb2_bytes", &self.coinb2.len())
            .field("branches", &self.branches.len())
            .field("version", &format_args!("{:08x}", self.version))
            .field("nbits", &format_args!("{:08x}", self.nbits))
            .finish_non_exhaustive()
    }
}

/// What the pool granted the session a share was found on.
#[derive(Debug, Clone, Copy)]
pub struct Grant<'a> {
    /// Extranonce1, as the pool's hex string.
    pub extranonce1: &'a str,
    /// Bytes of extranonce2 the miner rolls.
    pub extranonce2_size: u32,
    /// The version mask in force, `None` without version rolling.
    pub version_mask: Option<u32>,
}

/// The fields of a `mining.submit` the check reads, as the miner sent them.
#[derive(Debug, Clone, Copy)]
pub struct Share<'a> {
    /// Extranonce2, hex.
    pub extranonce2: &'a str,
    /// Block time, 8 hex digits.
    pub ntime: &'a str,
    /// Nonce, 8 hex digits.
    pub nonce: &'a str,
    /// Version bits (BIP 310), 8 hex digits, when sent.
    pub version_bits: Option<&'a str>,
}

/// A share hashed against its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hashed {
    /// sha256d of the header (read as a little-endian number).
    pub hash: [u8; 32],
    /// Whether the hash meets the network target: a block.
    pub block: bool,
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes hex `text` into `out`, which must be exactly half its length.
fn decode_into(text: &[u8], out: &mut [u8]) -> Option<()> {
    if text.len() != out.len() * 2 {
        return None;
    }
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(())
}

/// Decodes hex `text` of any even length into a new buffer.
fn decode(text: &str) -> Option<Box<[u8]>> {
    let mut out = vec![0u8; text.len() / 2].into_boxed_slice();
    decode_into(text.as_bytes(), &mut out)?;
    Some(out)
}

/// Exactly 8 hex digits as a big-endian `u32` (the Stratum convention).
fn hex8(text: &str) -> Option<u32> {
    let mut bytes = [0u8; 4];
    decode_into(text.as_bytes(), &mut bytes)?;
    Some(u32::from_be_bytes(bytes))
}

/// Feeds the bytes of hex `text` to `hasher` without a buffer the size of it.
fn hash_hex(hasher: &mut Sha256, text: &str) -> Option<()> {
    let mut chunk = [0u8; 64];
    for part in text.as_bytes().chunks(128) {
        let bytes = chunk.get_mut(..part.len() / 2)?;
        decode_into(part, bytes)?;
        hasher.update(bytes);
    }
    text.len().is_multiple_of(2).then_some(())
}

/// Double SHA-256.
pub fn sha256d(data: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(data)).into()
}

impl Template {
    /// Parses the params of a `mining.notify`: `[job_id, prevhash, coinb1,
    /// coinb2, [branch…], version, nbits, ntime, …, clean_jobs]` (extra
    /// fields some pools put before `clean_jobs` are ignored).
    pub fn from_notify(params: &[u8]) -> Result<Template, JobError> {
        let mut fields: [Option<&[u8]>; 7] = [None; 7];
        for (slot, (_, value)) in fields.iter_mut().zip(items(params).skip(1)) {
            *slot = Some(value);
        }
        let text =
            |i: usize, name: &'static str| fields[i].and_then(stratum::plain_str).ok_or(JobError(name));
        let mut prevhash = [0u8; 32];
        decode_into(text(0, "prevhash")?.as_bytes(), &mut prevhash).ok_or(JobError("prevhash"))?;
        // The notify's prevhash has each 4-byte word byte-swapped.
        for word in prevhash.chunks_exact_mut(4) {
            word.reverse();
        }
        let mut after_coinb1 = Sha256::new();
        hash_hex(&mut after_coinb1, text(1, "coinb1")?).ok_or(JobError("coinb1"))?;
        let coinb2 = decode(text(2, "coinb2")?).ok_or(JobError("coinb2"))?;
        let list = fields[3].filter(|v| v.starts_with(b"[")).ok_or(JobError("merkle_branch"))?;
        let mut branches: heapless::Vec<[u8; 32], MAX_BRANCHES> = heapless::Vec::new();
        for (_, value) in items(list) {
            let mut branch = [0u8; 32];
            let hex = stratum::plain_str(value).ok_or(JobError("merkle_branch"))?;
            decode_into(hex.as_bytes(), &mut branch).ok_or(JobError("merkle_branch"))?;
            branches.push(branch).map_err(|_| JobError("merkle_branch"))?;
        }
        let branches = branches.as_slice().into();
        let version = hex8(text(4, "version")?).ok_or(JobError("version"))?;
        let nbits = hex8(text(5, "nbits")?).ok_or(JobError("nbits"))?;
        hex8(text(6, "ntime")?).ok_or(JobError("ntime"))?;
        Ok(Template {
            after_coinb1,
            coinb2,
            branches,
            version,
            prevhash,
            nbits,
            network: target::network_target(nbits),
        })
    }

    /// The block version a share's header carries: `(job & !mask) | (bits &
    /// mask)`. Bits outside the granted mask are [`Verdict::BadVersion`],
    /// unless they are the job's own: some firmware sends the whole rolled
    /// version, which gives the same header.
    fn version_of(&self, bits: Option<&str>, mask: Option<u32>) -> Result<u32, Verdict> {
        let Some(bits) = bits else {
            return Ok(self.version);
        };
        let bits = hex8(bits).ok_or(Verdict::Malformed)?;
        let mask = mask.unwrap_or(0);
        let outside = bits & !mask;
        if outside != 0 && outside != self.version & !mask {
            return Err(Verdict::BadVersion);
        }
        Ok((self.version & !mask) | (bits & mask))
    }

    /// Builds and hashes the header of `share`; `Err` with
    /// [`Verdict::Malformed`] or [`Verdict::BadVersion`] when it cannot be built.
    pub fn hash(&self, grant: &Grant<'_>, share: &Share<'_>) -> Result<Hashed, Verdict> {
        let version = self.version_of(share.version_bits, grant.version_mask)?;
        let ntime = hex8(share.ntime).ok_or(Verdict::Malformed)?;
        let nonce = hex8(share.nonce).ok_or(Verdict::Malformed)?;
        let mut en = [0u8; 2 * MAX_EXTRANONCE_BYTES];
        let en1_len = grant.extranonce1.len() / 2;
        let en2_len = usize::try_from(grant.extranonce2_size).map_err(|_| Verdict::Malformed)?;
        let (en1, rest) = en.split_at_mut(en1_len.min(MAX_EXTRANONCE_BYTES));
        let en2 = rest.get_mut(..en2_len).filter(|_| en2_len <= MAX_EXTRANONCE_BYTES);
        let en2 = en2.ok_or(Verdict::Malformed)?;
        decode_into(grant.extranonce1.as_bytes(), en1).ok_or(Verdict::Malformed)?;
        decode_into(share.extranonce2.as_bytes(), en2).ok_or(Verdict::Malformed)?;
        let mut coinbase = self.after_coinb1.clone();
        coinbase.update(&en[..en1_len + en2_len]);
        coinbase.update(&self.coinb2);
        let mut root: [u8; 32] = Sha256::digest(coinbase.finalize()).into();
        let mut pair = [0u8; 64];
        for branch in &self.branches {
            pair[..32].copy_from_slice(&root);
            pair[32..].copy_from_slice(branch);
            root = sha256d(&pair);
        }
        let mut header = [0u8; 80];
        header[..4].copy_from_slice(&version.to_le_bytes());
        header[4..36].copy_from_slice(&self.prevhash);
        header[36..68].copy_from_slice(&root);
        header[68..72].copy_from_slice(&ntime.to_le_bytes());
        header[72..76].copy_from_slice(&self.nbits.to_le_bytes());
        header[76..].copy_from_slice(&nonce.to_le_bytes());
        let hash = sha256d(&header);
        let block = self.network.is_some_and(|t| target::meets_target(&hash, &t));
        Ok(Hashed { hash, block })
    }
}

/// Templates shared by the sessions whose pool sent the same job: a pool
/// sends one job to every connection, so it is parsed once and its coinbase
/// kept once, however many miners there are.
///
/// Keyed by the SHA-256 of the notify's params (so no two different jobs can
/// meet); holds only weak references: a template lives as long as a session
/// keeps its job. At most [`MAX_SHARED_TEMPLATES`] keys, the oldest forgotten
/// first (a forgotten job is only parsed again).
#[derive(Debug, Default)]
pub struct Templates {
    recent: RefCell<VecDeque<([u8; 32], Weak<Template>)>>,
}

impl Templates {
    /// The template of the job in `params` (a `mining.notify`'s params),
    /// shared with any session that has it.
    pub fn get(&self, params: &[u8]) -> Result<Rc<Template>, JobError> {
        let key: [u8; 32] = Sha256::digest(params).into();
        let mut recent = self.recent.borrow_mut();
        if let Some(template) = recent.iter().find(|(k, _)| *k == key).and_then(|(_, t)| t.upgrade()) {
            return Ok(template);
        }
        let template = Rc::new(Template::from_notify(params)?);
        recent.retain(|(_, t)| t.strong_count() > 0);
        if recent.len() >= MAX_SHARED_TEMPLATES {
            recent.pop_front();
        }
        recent.push_back((key, Rc::downgrade(&template)));
        Ok(template)
    }

    /// Keys held (live or not yet pruned).
    pub fn len(&self) -> usize {
        self.recent.borrow().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.recent.borrow().is_empty()
    }
}
