//! Settings: built-in defaults, a TOML file, `LOKA_<SECTION>_<KEY>`
//! environment variables and command-line flags, in rising precedence,
//! turned into one validated [`Config`] in one step.
//!
//! Invariant: a `Config` that exists is valid. Every value is checked while
//! it is read (addresses have ports, durations have units, names need no JSON
//! escaping), so an error names the file, line and key, or the variable.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod alerts;
mod pool;
mod values;

pub use alerts::{Alerts, Broker, Event, Format, MAX_SINKS, Sink, Webhook};
pub use pool::{Fallback, MAX_FALLBACKS, Pool, PoolTarget};
pub use values::{BindAddr, HostPort, Interval, MASK, Plain, Prefix, Secret, TimeOfDay};

/// The commented example that `loka-stratum init` writes.
pub const EXAMPLE: &str = include_str!("example.toml");

/// `[server]`: where miners connect.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Stratum listen address.
    pub bind_address: BindAddr,
    /// Who may connect: address prefixes; empty lets anyone in.
    pub allow: Vec<Prefix>,
    /// Most miner connections open at once.
    pub max_connections: usize,
    /// Longest line accepted from a miner, in bytes.
    pub max_line_bytes: usize,
    /// Time a new connection has to send subscribe and authorize.
    pub handshake_timeout: Interval,
    /// Time a miner may stay silent before its session is closed.
    pub idle_timeout: Interval,
    /// Time a peer (miner or pool) may take none of the bytes queued for it
    /// before its session is closed.
    pub write_timeout: Interval,
    /// Distinct logins one connection may authorize.
    pub max_logins: usize,
}

/// `[limiter]`: per-source limits and lifetimes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limiter {
    /// Most connections open at once from one IP address.
    pub connections: usize,
    /// Lifetime of a job: shares for older jobs count as stale.
    pub jobs: Interval,
    /// How long recent shares (five-minute buckets per worker) are kept.
    pub submissions: Interval,
}

/// `[metrics]`: the HTTP endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Metrics listen address.
    pub bind_address: BindAddr,
}

/// `[store]`: the books.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Store {
    /// Path of the redb file.
    pub path: PathBuf,
    /// Where the books live while the daemon runs.
    pub mode: StoreMode,
    /// Time between batched commits: in `file` mode, each is one durable
    /// write of the file (one fsync); a power cut loses at most this much.
    pub commit_interval: Interval,
    /// In `ram` mode, time between writes of the whole books to `path`
    /// (also written on SIGTERM); a power cut or crash loses at most this
    /// much. Unused in `file` mode.
    pub flush_interval: Interval,
    /// New logins given rows of their own in the books per day, at most;
    /// shares of later ones are booked under `_other`.
    pub max_new_workers_per_day: u32,
}

/// `store.mode`: where the books live while the daemon runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreMode {
    /// In the redb file at `store.path`, committed every `commit_interval`.
    #[default]
    File,
    /// In memory, written whole to `store.path` every `flush_interval` and
    /// on SIGTERM: for a read-only root, or books on a USB SSD elsewhere.
    Ram,
}

impl FromStr for StoreMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "file" => Ok(StoreMode::File),
            "ram" => Ok(StoreMode::Ram),
            _ => Err(format!("{s:?} is not a store mode: \"file\" or \"ram\"")),
        }
    }
}

/// All settings.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`.
    pub server: Server,
    /// `[pool]` and its `[[pool.fallback]]` tables.
    pub pool: Pool,
    /// `[limiter]`.
    pub limiter: Limiter,
    /// `[metrics]`.
    pub metrics: Metrics,
    /// `[store]`.
    pub store: Store,
    /// `[alerts]`: thresholds shared by every sink.
    pub alerts: Alerts,
    /// `[[alert]]`: where alerts go. Last, so that TOML writes the tables
    /// of this array after every plain table.
    #[serde(rename = "alert", default, skip_serializing_if = "Vec::is_empty")]
    pub alert: Vec<Sink>,
}

fn secs(n: u64) -> Interval {
    Interval(Duration::from_secs(n))
}

impl Default for Server {
    fn default() -> Self {
        Server {
            bind_address: BindAddr(SocketAddr::from(([0, 0, 0, 0], 3333))),
            allow: Vec::new(),
            max_connections: 1000,
            max_line_bytes: 4096,
            handshake_timeout: secs(30),
            idle_timeout: secs(1800),
            write_timeout: secs(30),
            max_logins: 16,
        }
    }
}

impl Server {
    /// Whether `allow` lets a peer at `ip` connect.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|prefix| prefix.contains(ip))
    }
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter { connections: 64, jobs: secs(600), submissions: secs(172_800) }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics { bind_address: BindAddr(SocketAddr::from(([0, 0, 0, 0], 9090))) }
    }
}

impl Default for Store {
    fn default() -> Self {
        // systemd's StateDirectory=; else the installed gateway's state
        // directory when it exists (so the CLI finds the daemon's books);
        // else the working directory.
        let installed = Path::new("/var/lib/loka-stratum");
        let dir = match std::env::var_os("STATE_DIRECTORY") {
            // StateDirectory= may list several, separated by ':'.
            Some(dirs) => PathBuf::from(dirs.to_string_lossy().split(':').next().unwrap_or(".")),
            None if installed.is_dir() => installed.to_path_buf(),
            None => PathBuf::from("."),
        };
        Store {
            path: dir.join("loka-stratum.redb"),
            mode: StoreMode::File,
            commit_interval: secs(120),
            flush_interval: secs(3600),
            max_new_workers_per_day: 64,
        }
    }
}

/// Why settings could not be loaded.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a bad key or value.
    File {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line, column and key.
        message: String,
    },
    /// An environment variable or flag has a bad name or value.
    Override {
        /// The variable (`LOKA_POOL_ADDRESS`) or flag (`--pool`).
        name: String,
        /// What is wrong.
        message: String,
    },
    /// Settings that are each valid but do not fit together.
    Invalid {
        /// The key, `section.key` (`pool.fallback[1].name` in a table of an
        /// array).
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "cannot read config file {}: {source}", path.display())
            }
            ConfigError::File { path, message } => {
                write!(f, "config file {}: {}", path.display(), message.trim_end())
            }
            ConfigError::Override { name, message } => write!(f, "{name}: {message}"),
            ConfigError::Invalid { key, message } => write!(f, "setting {key}: {message}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// `line N, key section.key: message` for an error at byte `span` of `text`.
/// In the second `[[pool.fallback]]` table the key is
/// `pool.fallback[1].key`; on a table's header line, the table itself.
fn locate(text: &str, span: Option<std::ops::Range<usize>>, message: &str) -> String {
    let Some(span) = span else {
        return message.to_string();
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line_no = before.matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    // The header's own line counts: a missing key is reported there.
    let section = table_at(text, line_no);
    let own = line.split('=').next().map(str::trim).filter(|k| !k.is_empty() && !k.starts_with('['));
    let key = if line.contains('=') { own } else { open_array_key(before).or(own) };
    match (section, key) {
        (Some(section), _) if header(line).is_some() => format!("line {line_no}, key {section}: {message}"),
        (Some(section), Some(key)) => format!("line {line_no}, key {section}.{key}: {message}"),
        (None, Some(key)) => format!("line {line_no}, key {key}: {message}"),
        _ => format!("line {line_no}: {message}"),
    }
}

/// A table header line, `[name]` or `[[name]]` (then `true`: a table of an
/// array), with spaces around the name's dots dropped.
fn header(line: &str) -> Option<(String, bool)> {
    let line = line.trim();
    let ((name, rest), array) = match line.strip_prefix("[[") {
        Some(inner) => (inner.split_once("]]")?, true),
        None => (line.strip_prefix('[')?.split_once(']')?, false),
    };
    // `["a"],` in a multi-line array of arrays is not a header.
    let rest = rest.trim_start();
    if !(rest.is_empty() || rest.starts_with('#')) {
        return None;
    }
    Some((name.split('.').map(str::trim).collect::<Vec<_>>().join("."), array))
}

/// The table that line `line_no` (from 1) of `text` belongs to, as a key:
/// `pool`, or `pool.fallback[1]` in the second `[[pool.fallback]]` table.
fn table_at(text: &str, line_no: usize) -> Option<String> {
    let headers: Vec<(String, bool)> = text.lines().take(line_no).filter_map(header).collect();
    let (name, array) = headers.last()?;
    if !array {
        return Some(name.clone());
    }
    let index = headers.iter().filter(|(other, array)| *array && other == name).count().saturating_sub(1);
    Some(format!("{name}[{index}]"))
}

/// The key of a multi-line array still open at the end of `before` (an
/// error in its third element is on a line of its own, without the key).
fn open_array_key(before: &str) -> Option<&str> {
    let mut depth = 0;
    for line in before.lines().rev() {
        depth += line.matches('[').count() as i64 - line.matches(']').count() as i64;
        if let Some((key, _)) = line.split_once('=') {
            let key = key.trim();
            let bare =
                !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
            return (depth > 0 && bare).then_some(key);
        }
        if header(line).is_some() {
            return None;
        }
    }
    None
}

fn parse_as<T: FromStr<Err = String>>(value: &str) -> Result<T, String> {
    value.parse()
}

fn parse_count<T: FromStr>(value: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("{value:?} is not a whole number"))
}

impl Config {
    /// Reads `path` (or takes the defaults when `None`) and applies the
    /// environment, without validating cross-field limits yet.
    pub fn load(
        path: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        config.apply_env(env)?;
        Ok(config)
    }

    /// Applies the `LOKA_*` settings among `env`.
    fn apply_env(&mut self, env: impl Iterator<Item = (String, String)>) -> Result<(), ConfigError> {
        for (name, value) in env {
            if let Some(key) = name.strip_prefix("LOKA_") {
                self.set_env(&name, key, &value)?;
            }
        }
        Ok(())
    }

    /// Parses a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Config::from_toml(&text).map_err(|message| ConfigError::File { path: path.into(), message })
    }

    /// Parses TOML text; the error names line and key.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e: toml::de::Error| locate(text, e.span(), e.message()))
    }

    /// Applies one `LOKA_SECTION_KEY` variable; `key` is `SECTION_KEY`.
    fn set_env(&mut self, name: &str, key: &str, value: &str) -> Result<(), ConfigError> {
        let key = key.to_ascii_lowercase();
        let (section, field) = key.split_once('_').unwrap_or((&key, ""));
        let bad = |message: String| ConfigError::Override { name: name.into(), message };
        match (section, field) {
            ("server", "bind_address") => self.server.bind_address = parse_as(value).map_err(bad)?,
            ("server", "allow") => {
                let items = value.split(',').map(str::trim).filter(|item| !item.is_empty());
                self.server.allow = items.map(parse_as).collect::<Result<_, _>>().map_err(bad)?;
            }
            ("server", "max_connections") => self.server.max_connections = parse_count(value).map_err(bad)?,
            ("server", "max_line_bytes") => self.server.max_line_bytes = parse_count(value).map_err(bad)?,
            ("server", "handshake_timeout") => {
                self.server.handshake_timeout = parse_as(value).map_err(bad)?
            }
            ("server", "idle_timeout") => self.server.idle_timeout = parse_as(value).map_err(bad)?,
            ("server", "write_timeout") => self.server.write_timeout = parse_as(value).map_err(bad)?,
            ("server", "max_logins") => self.server.max_logins = parse_count(value).map_err(bad)?,
            ("pool", "address") => self.pool.address = parse_as(value).map_err(bad)?,
            ("pool", "name") => self.pool.name = parse_as(value).map_err(bad)?,
            ("pool", "username") => self.pool.username = parse_as(value).map_err(bad)?,
            ("pool", "password") => self.pool.password = Some(parse_as(value).map_err(bad)?),
            ("pool", "separator") => {
                let (a, b) = value
                    .split_once(',')
                    .ok_or_else(|| bad("expected two separators joined by a comma, e.g. \".,_\"".into()))?;
                self.pool.separator = [parse_as(a).map_err(bad)?, parse_as(b).map_err(bad)?];
            }
            ("pool", "max_line_bytes") => self.pool.max_line_bytes = parse_count(value).map_err(bad)?,
            ("pool", "connect_timeout") => self.pool.connect_timeout = parse_as(value).map_err(bad)?,
            ("pool", "answer_timeout") => self.pool.answer_timeout = parse_as(value).map_err(bad)?,
            ("pool", "notify_timeout") => self.pool.notify_timeout = parse_as(value).map_err(bad)?,
            ("pool", "failover_after") => self.pool.failover_after = parse_count(value).map_err(bad)?,
            ("pool", "retry_max") => self.pool.retry_max = parse_as(value).map_err(bad)?,
            ("pool", "switch_back_after") => self.pool.switch_back_after = parse_as(value).map_err(bad)?,
            ("pool", "settlement") => self.pool.settlement = parse_as(value).map_err(bad)?,
            ("pool", "reject_invalid") => {
                self.pool.reject_invalid =
                    value.parse().map_err(|_| bad(format!("{value:?} is not true or false")))?
            }
            ("limiter", "connections") => self.limiter.connections = parse_count(value).map_err(bad)?,
            ("limiter", "jobs") => self.limiter.jobs = parse_as(value).map_err(bad)?,
            ("limiter", "submissions") => self.limiter.submissions = parse_as(value).map_err(bad)?,
            ("metrics", "bind_address") => self.metrics.bind_address = parse_as(value).map_err(bad)?,
            ("store", "path") => self.store.path = value.into(),
            ("store", "mode") => self.store.mode = parse_as(value).map_err(bad)?,
            ("store", "commit_interval") => self.store.commit_interval = parse_as(value).map_err(bad)?,
            ("store", "flush_interval") => self.store.flush_interval = parse_as(value).map_err(bad)?,
            ("store", "max_new_workers_per_day") => {
                self.store.max_new_workers_per_day = parse_count(value).map_err(bad)?
            }
            ("alerts", "worker_down_after") => {
                self.alerts.worker_down_after = parse_as(value).map_err(bad)?
            }
            ("alerts", "hashrate_drop_below") => {
                self.alerts.hashrate_drop_below =
                    value.parse().map_err(|_| bad(format!("{value:?} is not a number")))?
            }
            ("alerts", "name") => self.alerts.name = parse_as(value).map_err(bad)?,
            ("alert", _) => {
                return Err(bad("alert sinks are set in the config file only, as [[alert]]".into()));
            }
            // A list of tables has no natural variable names; LOKA_POOL_*
            // sets the primary only.
            ("pool", field) if field.starts_with("fallback") => {
                return Err(bad(
                    "fallback pools are set in the config file only, as [[pool.fallback]]".into()
                ));
            }
            ("server" | "pool" | "limiter" | "metrics" | "store" | "alerts", _) => {
                return Err(bad(format!("unknown setting {section}.{field}")));
            }
            // Other LOKA_ variables (LOKA_LOG, …) are not settings.
            _ => {}
        }
        Ok(())
    }

    /// Checks limits that single values cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| Err(ConfigError::Invalid { key: key.into(), message });
        if !(256..=1 << 20).contains(&self.server.max_line_bytes) {
            return invalid("server.max_line_bytes", "must be between 256 and 1048576".into());
        }
        if self.server.max_connections == 0 {
            return invalid("server.max_connections", "must be at least 1".into());
        }
        if !(1..=256).contains(&self.server.max_logins) {
            return invalid("server.max_logins", "must be between 1 and 256".into());
        }
        if self.limiter.connections == 0 {
            return invalid("limiter.connections", "must be at least 1".into());
        }
        if self.store.max_new_workers_per_day == 0 {
            return invalid("store.max_new_workers_per_day", "must be at least 1".into());
        }
        for (key, d) in [
            ("server.handshake_timeout", self.server.handshake_timeout),
            ("server.idle_timeout", self.server.idle_timeout),
            ("server.write_timeout", self.server.write_timeout),
            ("limiter.jobs", self.limiter.jobs),
            ("store.commit_interval", self.store.commit_interval),
            ("store.flush_interval", self.store.flush_interval),
        ] {
            if d.0.is_zero() {
                return invalid(key, "must be longer than 0".into());
            }
        }
        self.pool.validate()?;
        self.alerts.validate(&self.alert)
    }

    /// The pools the proxy may use: index 0 is `[pool]`, then each
    /// `[[pool.fallback]]` in the order the file lists them.
    pub fn pools(&self) -> Vec<PoolTarget> {
        self.pool.targets()
    }

    /// The effective settings as TOML, safe to print: every pool's password
    /// shows as [`MASK`].
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render settings: {e}\n"))
    }
}

#[cfg(test)]
mod tests;
