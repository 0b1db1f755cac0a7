//! `GET /api/status` and `GET /api/workers`: the gateway and its workers as
//! JSON, for Home Assistant's REST sensor, `jq` and other dashboards. The
//! field names are stable (listed in the README); new fields may be added.
//!
//! Serialized with `serde-json-core` into a fixed buffer per object, so a
//! login of any content is escaped, a value that is not finite is `null`,
//! and nothing grows but the output itself.

use serde::Serialize;

use super::PoolRow;
use crate::stats::WorkerView;

/// Largest JSON object of one worker or of the status, in bytes.
const MAX_OBJECT_BYTES: usize = 4096;

/// Worker counts by state in `/api/status`.
#[derive(Serialize)]
pub struct StateCounts {
    /// Workers known.
    pub total: usize,
    /// Workers hashing.
    pub hashing: usize,
    /// Workers late.
    pub late: usize,
    /// Workers down.
    pub down: usize,
}

/// The last block in `/api/status`.
#[derive(Serialize)]
pub struct BlockJson<'a> {
    /// The worker that found it.
    pub worker: &'a str,
    /// The block hash.
    pub hash: &'a str,
    /// Unix seconds.
    pub at: u64,
}

/// `/api/status`.
#[derive(Serialize)]
pub struct StatusJson<'a> {
    /// The gateway's name.
    pub name: &'a str,
    /// The program's version.
    pub version: &'a str,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// Sum of the workers' 10-minute hashrates, H/s.
    pub hashrate: f64,
    /// Miner connections open now.
    pub connections: i64,
    /// Workers by state.
    pub workers: StateCounts,
    /// Shares accepted since start.
    pub accepted: u64,
    /// Shares rejected since start.
    pub rejected: u64,
    /// Stale shares since start.
    pub stale: u64,
    /// Blocks found since start.
    pub blocks_found: u64,
    /// The last block found, ever.
    pub last_block: Option<BlockJson<'a>>,
    /// The pools, in priority order.
    pub pools: &'a [PoolRow<'a>],
}

/// A worker in `/api/workers`.
#[derive(Serialize)]
struct WorkerJson<'a> {
    login: &'a str,
    state: &'a str,
    hashrate_10m: f64,
    hashrate_1h: f64,
    hashrate_24h: f64,
    accepted: u64,
    rejected: u64,
    stale: u64,
    best_share: f64,
    last_share: Option<u64>,
    usual_interval: Option<u64>,
    down_after: u64,
}

/// Appends `value` as JSON to `out`; `false` if it did not fit a buffer.
fn push(out: &mut String, value: &impl Serialize) -> bool {
    let mut buf = [0u8; MAX_OBJECT_BYTES];
    match serde_json_core::to_slice(value, &mut buf) {
        Ok(n) => {
            // serde-json-core writes UTF-8 (escaped strings of valid `str`s).
            out.push_str(std::str::from_utf8(&buf[..n]).unwrap_or("null"));
            true
        }
        Err(_) => {
            out.push_str("null");
            false
        }
    }
}

/// `/api/status` into `out`.
pub fn status(out: &mut String, status: &StatusJson<'_>) {
    out.clear();
    push(out, status);
    out.push('\n');
}

/// `/api/workers` into `out`: an array, sorted by login.
pub fn workers(out: &mut String, views: &[WorkerView]) {
    out.clear();
    out.push('[');
    for (i, v) in views.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let w = WorkerJson {
            login: &v.login,
            state: v.state.label(),
            hashrate_10m: v.hashrate_10m,
            hashrate_1h: v.hashrate_1h,
            hashrate_24h: v.hashrate_24h,
            accepted: v.accepted,
            rejected: v.rejected,
            stale: v.stale,
            best_share: v.best_share,
            last_share: v.last_share.map(|t| t as u64),
            usual_interval: v.usual_interval,
            down_after: v.down_after,
        };
        push(out, &w);
    }
    out.push_str("]\n");
}
