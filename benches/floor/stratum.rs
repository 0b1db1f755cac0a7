//! The Stratum lines the bench's pool and miners exchange, and the two
//! byte searches they need. Shaped as real ones: a ~1 KiB job with a
//! 12-branch merkle path, submits of a cgminer-like miner.

use std::io::Write;

/// The job every miner works on.
pub const JOB_ID: &str = "1f3a";

/// Subscribe and authorize, sent back to back as miners do.
pub const HANDSHAKE: &[u8] = b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"bmminer/2.0.0\"]}\n\
    {\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"alice.rig1\",\"x\"]}\n";

/// A realistic job: ~1 KiB with a 12-branch merkle path.
pub fn notify_line() -> String {
    let hex = |seed: u32, len: usize| -> String {
        (0..len).map(|i| char::from(b"0123456789abcdef"[((seed as usize * 7 + i * 13) ^ i) % 16])).collect()
    };
    let branches: Vec<String> = (0..12).map(|b| format!("\"{}\"", hex(b, 64))).collect();
    format!(
        "{{\"id\":null,\"method\":\"mining.notify\",\"params\":[\"{JOB_ID}\",\"{}\",\"{}\",\"{}\",[{}],\
         \"20000000\",\"17034219\",\"6b04a37f\",true]}}\n",
        hex(100, 64),
        hex(101, 118),
        hex(102, 170),
        branches.join(",")
    )
}

/// Appends a submit with request id `id` (and a nonce of its own) to `out`.
pub fn submit_line(out: &mut Vec<u8>, id: u64) {
    let _ = writeln!(
        out,
        "{{\"id\":{id},\"method\":\"mining.submit\",\"params\":[\"alice.rig1\",\"{JOB_ID}\",\"{:08x}\",\"6b04a382\",\"{:08x}\"]}}",
        id as u32,
        (id >> 32) as u32 ^ 0x8c75_0600,
    );
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The raw id of a request line, assuming `"id":` comes before `params`.
pub fn raw_id(line: &[u8]) -> &[u8] {
    let Some(at) = find(line, b"\"id\":") else { return b"null" };
    let rest = &line[at + 5..];
    let end = rest.iter().position(|&b| b == b',' || b == b'}').unwrap_or(rest.len());
    rest[..end].trim_ascii()
}

/// What a line says about the submit it answers: `Some(true)` accepted,
/// `Some(false)` refused, `None` not an answer (a job, a difficulty).
pub fn verdict(line: &[u8]) -> Option<bool> {
    if find(line, b"\"result\":true").is_some() {
        Some(true)
    } else if find(line, b"\"result\"").is_some() || find(line, b"\"error\":[").is_some() {
        Some(false)
    } else {
        None
    }
}
