//! `[pool]` and its `[[pool.fallback]]` tables: the pools the proxy may use,
//! in priority order, and the knobs that decide when it moves between them.
//!
//! Invariant, once [`Pool::validate`] has passed: no two pools share a name
//! (a name identifies a pool in the books and the metrics), there are at
//! most [`MAX_FALLBACKS`] fallbacks, and every failover knob is in bounds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, HostPort, Interval, Plain, Secret, TimeOfDay, secs};

/// Most `[[pool.fallback]]` tables. Each one is dialled in turn while the
/// pools before it are down, so a long list only delays the moment miners
/// learn that every pool is gone.
pub const MAX_FALLBACKS: usize = 8;

/// Most consecutive failures `failover_after` may wait for.
const MAX_FAILOVER_AFTER: u32 = 100;

/// Longest `notify_timeout` and `retry_max`: a pool silent or unreachable
/// for longer is down, whatever the settings say.
const MAX_SILENCE: Duration = Duration::from_secs(3600);

/// Longest `switch_back_after`.
const MAX_SWITCH_BACK: Duration = Duration::from_secs(86_400);

/// Longest separator, in characters (bytes: a [`Plain`] is ASCII).
const MAX_SEPARATOR_CHARS: usize = 4;

/// `[pool]`: where shares go, and how to fail over when that pool is down.
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
    /// Time without a `mining.notify` after which a pool counts as down.
    pub notify_timeout: Interval,
    /// Consecutive failures of a pool before sessions move to the next one
    /// (a refused connection moves at once).
    pub failover_after: u32,
    /// Longest wait between reconnects: the cap of the exponential back-off.
    pub retry_max: Interval,
    /// Time a higher-priority pool must stay healthy before sessions move
    /// back to it.
    pub switch_back_after: Interval,
    /// When the books' day starts, `HH:MM` UTC (the pool's settlement time).
    pub settlement: TimeOfDay,
    /// Answer shares the proxy's own check finds certainly invalid (low
    /// difficulty, duplicate, bad version) itself instead of forwarding them.
    pub reject_invalid: bool,
    /// `[[pool.fallback]]`: pools to use while this one is down, in priority
    /// order. Last, so that TOML writes them after the plain keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<Fallback>,
}

/// `[[pool.fallback]]`: a pool to use while those before it are down. The
/// keys mean what they mean in `[pool]`; the failover knobs are `[pool]`'s.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fallback {
    /// Pool address, `host:port`; required.
    pub address: HostPort,
    /// A name for logs, metrics and the books; required, and unique among
    /// all pools.
    pub name: Plain,
    /// Pool account that logins are rewritten to; empty (the default)
    /// passes logins through.
    #[serde(default)]
    pub username: Plain,
    /// Password sent upstream for rewritten logins; unset passes the miner's.
    /// Shown as [`MASK`](super::MASK) everywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Separators: account{0}user{1}worker; `[".", "_"]` by default.
    #[serde(default = "default_separator")]
    pub separator: [Plain; 2],
}

/// One pool the proxy may use, primary first.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolTarget {
    /// Pool address, `host:port`.
    pub address: HostPort,
    /// The pool's name in logs, metrics and the books.
    pub name: Plain,
    /// Pool account that logins are rewritten to; empty passes them through.
    pub username: Plain,
    /// Password sent upstream for rewritten logins; unset passes the miner's.
    pub password: Option<Secret>,
    /// Separators: account{0}user{1}worker.
    pub separator: [Plain; 2],
}

fn plain(s: &str) -> Plain {
    Plain(s.into())
}

fn default_separator() -> [Plain; 2] {
    [plain("."), plain("_")]
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            address: HostPort::new("solo.ckpool.org", 3333),
            name: plain("ckpool-solo"),
            username: Plain::default(),
            password: None,
            separator: default_separator(),
            max_line_bytes: 64 * 1024,
            connect_timeout: secs(10),
            answer_timeout: secs(30),
            notify_timeout: secs(180),
            failover_after: 2,
            retry_max: secs(60),
            switch_back_after: secs(120),
            settlement: TimeOfDay(0),
            reject_invalid: false,
            fallback: Vec::new(),
        }
    }
}

impl From<&Fallback> for PoolTarget {
    fn from(f: &Fallback) -> Self {
        PoolTarget {
            address: f.address.clone(),
            name: f.name.clone(),
            username: f.username.clone(),
            password: f.password.clone(),
            separator: f.separator.clone(),
        }
    }
}

/// The key of `field` in the pool at `index` of [`Pool::targets`]:
/// `pool.name`, `pool.fallback[0].name`, …
fn key(index: usize, field: &str) -> String {
    match index.checked_sub(1) {
        None => format!("pool.{field}"),
        Some(n) => format!("pool.fallback[{n}].{field}"),
    }
}

impl Pool {
    /// The primary, then the fallbacks in order.
    pub(super) fn targets(&self) -> Vec<PoolTarget> {
        let primary = PoolTarget {
            address: self.address.clone(),
            name: self.name.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            separator: self.separator.clone(),
        };
        std::iter::once(primary).chain(self.fallback.iter().map(PoolTarget::from)).collect()
    }

    /// Checks what single values cannot: bounds, separator lengths, the
    /// number of fallbacks and that every pool has a name of its own.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| Err(ConfigError::Invalid { key, message });
        if !(1024..=16 << 20).contains(&self.max_line_bytes) {
            return invalid("pool.max_line_bytes".into(), "must be between 1024 and 16777216".into());
        }
        for (field, d, max) in [
            ("connect_timeout", self.connect_timeout, None),
            ("answer_timeout", self.answer_timeout, None),
            ("notify_timeout", self.notify_timeout, Some(MAX_SILENCE)),
            ("retry_max", self.retry_max, Some(MAX_SILENCE)),
            ("switch_back_after", self.switch_back_after, Some(MAX_SWITCH_BACK)),
        ] {
            if d.0.is_zero() {
                return invalid(key(0, field), "must be longer than 0".into());
            }
            if let Some(max) = max.filter(|max| d.0 > *max) {
                return invalid(key(0, field), format!("must be at most {}", Interval(max)));
            }
        }
        if !(1..=MAX_FAILOVER_AFTER).contains(&self.failover_after) {
            return invalid(key(0, "failover_after"), format!("must be between 1 and {MAX_FAILOVER_AFTER}"));
        }
        if self.fallback.len() > MAX_FALLBACKS {
            return invalid(
                "pool.fallback".into(),
                format!("at most {MAX_FALLBACKS} fallback pools, not {}", self.fallback.len()),
            );
        }
        let targets = self.targets();
        for (i, target) in targets.iter().enumerate() {
            if target.separator.iter().any(|s| s.0.len() > MAX_SEPARATOR_CHARS) {
                return invalid(
                    key(i, "separator"),
                    format!("each separator must be at most {MAX_SEPARATOR_CHARS} characters"),
                );
            }
            if let Some(first) = targets.iter().take(i).position(|other| other.name == target.name) {
                return invalid(
                    key(i, "name"),
                    format!(
                        "{:?} is already the name of {}; each pool needs its own, since the name \
                         identifies it in the books and the metrics",
                        target.name.0,
                        key(first, "name")
                    ),
                );
            }
        }
        Ok(())
    }
}
