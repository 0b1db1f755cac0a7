//! `[pool]`: the pool the proxy sends shares to.

use serde::{Deserialize, Serialize};

use super::{HostPort, Interval, Plain, Secret, TimeOfDay, secs};

/// `[pool]`: where shares go.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pool {
    /// Pool address, `host:port`.
    pub address: HostPort,
    /// A name for logs, metrics and the books.
    pub name: Plain,
    /// Pool account that logins are rewritten to; empty passes logins through.
    pub username: Plain,
    /// Password sent upstream for rewritten logins; unset passes the miner's.
    /// Shown as [`MASK`](super::MASK) everywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Separators: account{0}user{1}worker.
    pub separator: [Plain; 2],
    /// Longest line accepted from the pool, in bytes.
    pub max_line_bytes: usize,
    /// Time allowed to connect to the pool.
    pub connect_timeout: Interval,
    /// Time the pool has to answer a subscribe, authorize or submit before
    /// the session counts it as stalled and closes.
    pub answer_timeout: Interval,
    /// When the books' day starts, `HH:MM` UTC (the pool's settlement time).
    pub settlement: TimeOfDay,
    /// Answer shares the proxy's own check finds certainly invalid (low
    /// difficulty, duplicate, bad version) itself instead of forwarding them.
    pub reject_invalid: bool,
}

fn plain(s: &str) -> Plain {
    Plain(s.into())
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            address: HostPort::new("solo.ckpool.org", 3333),
            name: plain("ckpool-solo"),
            username: Plain::default(),
            password: None,
            separator: [plain("."), plain("_")],
            max_line_bytes: 64 * 1024,
            connect_timeout: secs(10),
            answer_timeout: secs(30),
            settlement: TimeOfDay(0),
            reject_invalid: false,
        }
    }
}
