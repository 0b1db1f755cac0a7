//! The redb file: tables, one batched commit, and the queries behind the CLI.
//!
//! Invariants: a file is only used if it is a redb database that is empty or
//! carries this program's schema mark; anything else is refused with its path.
//! What is booked is believable: no event stamped before [`CLOCK_FLOOR_SECS`],
//! no accepted share whose difficulty is not finite and positive, and no
//! share ever replacing another (a bucket of recent shares is only added to).
//! Every commit rewrites as few pages as it can (an SD card wears by them):
//! recent shares go to the last buckets of one table, pruning happens an
//! hour's worth at a time, and an open of current books writes no page.
//! A login gets rows of its own (worker, miner,
//! its day totals) from its first accepted share on, at most
//! `max_new_workers_per_day` new logins a day; shares of logins without rows
//! are booked under [`OVERFLOW_WORKER`], so a day's totals always add up to
//! what the pool decided. Every row of work is keyed by the pool it went to
//! ([`Setting::pools`]); an event naming no configured pool is booked under
//! the primary and counted, never dropped.

// Table layouts are tuples by design: redb stores them without a codec of ours.
#![allow(clippy::type_complexity)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
};

use super::backend::{Counted, StoreIo};
use super::split::split;
use super::{CLOCK_FLOOR_SECS, CheckNote, Day, Event, Outcome, miner_of};
use crate::history::{self, Restored};
use crate::worker::OVERFLOW_WORKER;

/// Version of the table layout (see [`super::migrate`] for each step).
pub(super) const SCHEMA: u64 = 3;

pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// name -> (address, username, first connected, last connected)
const POOLS: TableDefinition<&str, (String, String, u64, u64)> = TableDefinition::new("pools");
/// miner -> (first seen, last seen)
const MINERS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("miners");
/// A worker's row: (miner, pool, first seen, last seen, last address, user agent).
pub(super) type WorkerRow = (String, String, u64, u64, String, String);
/// login -> [`WorkerRow`]
pub(super) const WORKERS: TableDefinition<&str, WorkerRow> = TableDefinition::new("workers");
/// A row of share totals: (accepted, accepted difficulty, rejected by
/// reason, stale), as [`DayTotals`].
pub(super) type TotalsRow = (u64, f64, [u64; 5], u64);
/// (day, pool, login) -> [`TotalsRow`]
pub(super) const DAYS: TableDefinition<(u32, &str, &str), TotalsRow> = TableDefinition::new("shares_by_day");
/// Schemas 1 and 2: a row per share, (unix ms, sequence) -> (login, pool,
/// outcome 0 accepted / 1 rejected / 2 stale / 3 disputed, reason or 0,
/// difficulty). Folded into [`RECENT`] by the migration to schema 3.
pub(super) const RAW: TableDefinition<(u64, u64), (String, String, u8, u8, f64)> =
    TableDefinition::new("shares_recent");
/// (bucket: unix seconds / [`RECENT_SECS`], pool, login) -> [`TotalsRow`].
/// Schema 3. Laid out as the per-day table, so redb's code for that table
/// serves both (the ARM binary has a size budget).
pub(super) const RECENT: TableDefinition<(u32, &str, &str), TotalsRow> =
    TableDefinition::new("shares_by_5min");
/// Width of a bucket of recent shares: the page's history buckets, so a
/// restart restores the charts exactly.
pub const RECENT_SECS: u64 = history::BUCKET_SECS;
/// Recent shares are pruned when the oldest bucket is this far past the
/// retention: one pruning an hour, not a page rewritten at the table's
/// start by every commit.
const PRUNE_EVERY_SECS: u64 = 3600;
/// (day, pool) -> (reward sats, hashrate the pool reported)
pub(super) const EARNINGS: TableDefinition<(u32, &str), (u64, Option<f64>)> =
    TableDefinition::new("earnings");
/// (day, pool, login) -> (miner, accepted difficulty, sats)
pub(super) const SPLITS: TableDefinition<(u32, &str, &str), (String, f64, u64)> =
    TableDefinition::new("distributions");
/// (day, pool) -> (reward, gateway hashrate, pool hashrate, computed at)
pub(super) const SPLIT_DAYS: TableDefinition<(u32, &str), (u64, f64, Option<f64>, u64)> =
    TableDefinition::new("distribution_days");
/// (day, pool, login) -> (checked by verdict, valid difficulty, best achieved, disputed). Schema 2.
pub(super) const CHECKS: TableDefinition<(u32, &str, &str), ([u64; 6], f64, f64, u64)> =
    TableDefinition::new("checks_by_day");
/// login -> (highest difficulty a share ever achieved, unix ms). Schema 2.
pub(super) const BEST: TableDefinition<&str, (f64, u64)> = TableDefinition::new("best_shares");
/// (unix ms, sequence) -> (login, pool, block hash, difficulty achieved). Schema 2.
pub(super) const BLOCKS: TableDefinition<(u64, u64), (String, String, String, f64)> =
    TableDefinition::new("blocks");

/// Blocks kept, at most; the oldest go first. Never reached on mainnet; a
/// test pool with an easy `nbits` makes every share a block.
pub const MAX_BLOCKS: u64 = 10_000;

/// Why the books failed.
#[derive(Debug)]
pub enum StoreError {
    /// The file could not be opened or created.
    Open {
        /// The file.
        path: PathBuf,
        /// What redb (or the file system) said.
        source: redb::Error,
    },
    /// Books in memory could not be written to their file.
    Save {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The file is a redb database of something else.
    Foreign(PathBuf),
    /// The books are of a schema newer than this program knows: written by
    /// a later version, left untouched.
    Newer {
        /// The file.
        path: PathBuf,
        /// The file's schema.
        found: u64,
    },
    /// A read or write failed.
    Io(redb::Error),
    /// A command cannot be carried out.
    Refused(String),
}

impl StoreError {
    /// Whether the operating system refused a read or write (read-only,
    /// full, missing device, no permission): worth retrying later, unlike a
    /// foreign, locked or corrupt file, which redb reports without an OS
    /// error code.
    pub fn is_storage(&self) -> bool {
        match self {
            StoreError::Open { source, .. } | StoreError::Io(source) => {
                matches!(source, redb::Error::Io(e) if e.raw_os_error().is_some())
            }
            StoreError::Save { source, .. } => source.raw_os_error().is_some(),
            StoreError::Foreign(_) | StoreError::Newer { .. } | StoreError::Refused(_) => false,
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Open { path, .. } => write!(f, "cannot open the books at {}", path.display()),
            StoreError::Save { path, .. } => write!(f, "cannot write the books to {}", path.display()),
            StoreError::Foreign(path) => write!(f, "{} is not a loka-stratum store", path.display()),
            StoreError::Newer { path, found } => write!(
                f,
                "{} holds books of schema {found}, from a newer loka-stratum (this one knows schemas 1 to {SCHEMA}): left as they are; upgrade loka-stratum",
                path.display()
            ),
            StoreError::Io(_) => f.write_str("books: a read or write failed"),
            StoreError::Refused(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Open { source, .. } | StoreError::Io(source) => Some(source),
            StoreError::Save { source, .. } => Some(source),
            StoreError::Foreign(_) | StoreError::Newer { .. } | StoreError::Refused(_) => None,
        }
    }
}

pub(super) fn io(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Io(e.into())
}

/// Largest reward the books take, in satoshis: every bitcoin there will ever
/// be (21 million × 10^8). Below 2^53, so a reward is exact in an `f64` and
/// the split's sums stay far from `u64::MAX`.
pub const MAX_REWARD_SATS: u64 = 2_100_000_000_000_000;

/// Authorizations remembered for logins that have no row yet, at most; the
/// oldest is forgotten first (its worker row then starts without address and
/// user agent until the next authorization).
const MAX_PENDING_LOGINS: usize = 256;

/// A pool the gateway may send work to, as the books know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSetting {
    /// The pool's name: what its books are kept under.
    pub name: String,
    /// The pool's address.
    pub address: String,
    /// The pool account.
    pub username: String,
}

/// What the books know of the gateway's configuration.
#[derive(Debug, Clone)]
pub struct Setting {
    /// Every configured pool: the primary first, then the fallbacks in
    /// priority order. An event's `pool` is an index into this list. The
    /// books refuse a list that is empty, longer than [`MAX_POOLS`] or that
    /// names a pool twice.
    pub pools: Vec<PoolSetting>,
    /// Seconds after midnight UTC when a day starts.
    pub settlement: u32,
    /// How long recent shares (five-minute buckets) are kept, in seconds.
    pub keep_raw_secs: u64,
    /// New logins given rows of their own per day, at most.
    pub max_new_workers_per_day: u32,
}

/// Pools a setting may list, at most: an event names its pool in a `u8`.
pub const MAX_POOLS: usize = 256;

impl Setting {
    /// The primary pool. Panics on an empty list, which [`Books`] refuses
    /// to open with.
    pub fn primary(&self) -> &PoolSetting {
        &self.pools[0]
    }

    /// The pool an event's index names, if it is configured.
    pub fn pool(&self, index: u8) -> Option<&PoolSetting> {
        self.pools.get(usize::from(index))
    }

    /// Whether `name` is a configured pool.
    fn has_pool(&self, name: &str) -> bool {
        self.pools.iter().any(|p| p.name == name)
    }

    /// The configured pools' names, `, `-separated.
    fn pool_names(&self) -> String {
        let names: Vec<&str> = self.pools.iter().map(|p| p.name.as_str()).collect();
        names.join(", ")
    }

    /// The pool an event's index names; the primary, counted in `booked`,
    /// when the index is past the list (a caller's bug: the work is still
    /// booked rather than lost).
    fn resolve(&self, index: u8, booked: &mut Booked) -> &PoolSetting {
        self.pool(index).unwrap_or_else(|| {
            booked.unknown_pool += 1;
            self.primary()
        })
    }

    /// Why the books cannot be kept with this setting, if they cannot.
    fn refusal(&self) -> Option<String> {
        if self.pools.is_empty() {
            return Some("the books need at least one pool".into());
        }
        if self.pools.len() > MAX_POOLS {
            return Some(format!("the books keep at most {MAX_POOLS} pools, not {}", self.pools.len()));
        }
        let dup =
            self.pools.iter().enumerate().find(|(i, p)| self.pools[..*i].iter().any(|q| q.name == p.name));
        dup.map(|(_, p)| {
            format!("pool name {:?} is given twice; each pool's books need their own name", p.name)
        })
    }
}

/// What one commit booked, and what it turned away.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Booked {
    /// Events booked.
    pub events: u64,
    /// Events stamped before [`CLOCK_FLOOR_SECS`] (clock not set yet): not booked.
    pub clock_unset: u64,
    /// Accepted shares whose difficulty is not finite and positive: not booked.
    pub bad_difficulty: u64,
    /// Accepted shares of new logins past the day's cap: booked under
    /// [`OVERFLOW_WORKER`].
    pub over_cap: u64,
    /// The day whose cap this commit reached first, once per day (to log it).
    pub cap_reached: Option<Day>,
    /// Events whose pool index is past [`Setting::pools`]: booked under the
    /// primary pool.
    pub unknown_pool: u64,
}

/// A day's totals for one worker.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DayTotals {
    /// Accepted shares.
    pub accepted: u64,
    /// Sum of accepted difficulty.
    pub difficulty: f64,
    /// Rejected shares by reason.
    pub rejected: [u64; 5],
    /// Stale shares.
    pub stale: u64,
}

impl DayTotals {
    /// Adds another row's totals (the same worker on another pool).
    pub(super) fn merge(&mut self, other: &DayTotals) {
        self.accepted += other.accepted;
        self.difficulty += other.difficulty;
        for (slot, n) in self.rejected.iter_mut().zip(other.rejected) {
            *slot += n;
        }
        self.stale += other.stale;
    }

    /// Adds one share (callers drop accepted shares of a bad difficulty first,
    /// see [`Outcome::is_believable`]).
    pub fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Accepted(d) => {
                self.accepted += 1;
                self.difficulty += d;
            }
            Outcome::Rejected(r) => self.rejected[usize::from(r).min(4)] += 1,
            Outcome::Stale => self.stale += 1,
            // Counted with the day's checks, never as accepted.
            Outcome::Disputed => {}
        }
    }
}

/// A day's checks of one worker: what the proxy's own sha256d check found.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CheckTotals {
    /// Shares by verdict (index in [`crate::check::Verdict::ALL`]).
    pub checked: [u64; 6],
    /// Sum of the job difficulty of valid shares: the true hashrate's base.
    pub valid_difficulty: f64,
    /// Highest difficulty a share achieved.
    pub best: f64,
    /// Shares the pool accepted that the check found invalid.
    pub disputed: u64,
}

impl CheckTotals {
    /// Adds another row's checks (the same worker on another pool).
    fn merge(&mut self, other: &CheckTotals) {
        for (slot, n) in self.checked.iter_mut().zip(other.checked) {
            *slot += n;
        }
        self.valid_difficulty += other.valid_difficulty;
        self.best = self.best.max(other.best);
        self.disputed += other.disputed;
    }

    fn add(&mut self, verdict: u8, difficulty: f64, achieved: f64) {
        let verdict = usize::from(verdict).min(self.checked.len() - 1);
        self.checked[verdict] += 1;
        if verdict == crate::check::Verdict::Valid.index() && difficulty.is_finite() && difficulty > 0.0 {
            self.valid_difficulty += difficulty;
        }
        if achieved.is_finite() {
            self.best = self.best.max(achieved);
        }
    }

    /// See [`crate::check::Verdict::hardware_error_ratio`].
    pub fn hardware_error_ratio(&self) -> f64 {
        crate::check::Verdict::hardware_error_ratio(&self.checked)
    }
}

/// A block found, as the books keep it.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockRow {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// The worker whose share it was.
    pub login: String,
    /// The pool it went to.
    pub pool: String,
    /// The block hash, display order.
    pub hash: String,
    /// The difficulty the hash achieved.
    pub difficulty: f64,
}

/// Who gets rows of their own: the day's count of new workers, and what
/// authorizations said about logins that have no row yet.
#[derive(Debug, Default)]
struct Admission {
    /// New workers admitted on a day, counted from the workers table.
    today: Option<(Day, u32)>,
    /// The last day whose cap was reported.
    noted: Option<Day>,
    /// (login, (address, user agent, unix seconds)), oldest first.
    pending: VecDeque<(String, (String, String, u64))>,
}

/// The books, open.
pub struct Books {
    db: Database,
    /// The file the books are kept in (or saved to, in RAM mode).
    path: PathBuf,
    /// Whether opening wrote to the books (created, migrated, or recorded a
    /// new settlement).
    changed_at_open: bool,
    setting: Setting,
    /// Sequence of the last block key written (keys are probed, never
    /// overwritten, so this needs no care across restarts).
    seq: u64,
    admission: Admission,
}

impl Books {
    /// Opens (or creates) the books at `path`. What it creates is private to
    /// the user running it whatever the umask: the file 0600, missing
    /// directories 0700.
    pub fn open(path: &Path, setting: Setting) -> Result<Books, StoreError> {
        Books::open_counted(path, setting, Default::default())
    }

    /// [`Books::open`], counting what is written to the file in `io`.
    pub fn open_counted(path: &Path, setting: Setting, io: Arc<StoreIo>) -> Result<Books, StoreError> {
        if let Some(why) = setting.refusal() {
            return Err(StoreError::Refused(why));
        }
        // redb would create the file with the umask's mode, so create it
        // first (redb takes an empty file as a new database).
        Books::init(on_file(open_private(path)?, path, io)?, setting, path)
    }

    /// Books in memory, for tests.
    pub fn in_memory(setting: Setting) -> Result<Books, StoreError> {
        Books::on_backend(redb::backends::InMemoryBackend::new(), setting)
    }

    /// Books on any storage (tests inject failing storage this way).
    pub fn on_backend(backend: impl redb::StorageBackend, setting: Setting) -> Result<Books, StoreError> {
        Books::with_backend(backend, setting, Path::new(":backend:"))
    }

    /// Books on any storage, named `path` in errors (books in memory are
    /// named by the file they are saved to).
    pub fn with_backend(
        backend: impl redb::StorageBackend,
        setting: Setting,
        path: &Path,
    ) -> Result<Books, StoreError> {
        if let Some(why) = setting.refusal() {
            return Err(StoreError::Refused(why));
        }
        let db = Database::builder()
            .create_with_backend(backend)
            .map_err(|e| StoreError::Open { path: path.into(), source: e.into() })?;
        Books::init(db, setting, path)
    }

    fn init(db: Database, setting: Setting, path: &Path) -> Result<Books, StoreError> {
        // Books of this schema with every table: nothing to write, so an
        // open (a start, a CLI command on a stopped daemon) costs the card
        // nothing.
        let settlement = u64::from(setting.settlement);
        let books = |db, changed_at_open| Books {
            db,
            path: path.into(),
            changed_at_open,
            setting,
            seq: 0,
            admission: Admission::default(),
        };
        if Books::is_current(&db, path, settlement)? {
            return Ok(books(db, false));
        }
        let mut migrated = None;
        let tx = db.begin_write().map_err(io)?;
        {
            let has_tables = tx.list_tables().map_err(io)?.next().is_some();
            let mark = tx.open_table(META).map_err(io)?.get("schema").map_err(io)?.map(|v| v.value());
            match mark {
                Some(SCHEMA) => {}
                Some(older) if older < SCHEMA => {
                    super::migrate::upgrade(&tx, older).map_err(io)?;
                    migrated = Some(older);
                }
                Some(found) => return Err(StoreError::Newer { path: path.into(), found }),
                None if has_tables => return Err(StoreError::Foreign(path.into())),
                None => {}
            }
            let mut meta = tx.open_table(META).map_err(io)?;
            meta.insert("schema", SCHEMA).map_err(io)?;
            // The settlement the days are cut by, and since when: `books
            // check` cuts the five-minute buckets into days the same way.
            // New books were always cut by it; older ones only from now on,
            // and "now" is at least the end of the newest bucket (a Pi's
            // clock may not be set yet).
            if meta.get("settlement").map_err(io)?.map(|v| v.value()) != Some(settlement) {
                meta.insert("settlement", settlement).map_err(io)?;
                let newest = tx.open_table(RECENT).map_err(io)?.last().map_err(io)?.map(|(k, _)| k.value().0);
                let newest = newest.map_or(0, |bucket| (u64::from(bucket) + 1) * RECENT_SECS);
                let since = if mark.is_none() { 0 } else { crate::clock::unix_secs().max(newest) };
                meta.insert("settlement_since", since).map_err(io)?;
            }
            drop(meta);
            // Create every table so readers never meet a missing one (and
            // list it in is_current).
            tx.open_table(POOLS).map_err(io)?;
            tx.open_table(MINERS).map_err(io)?;
            tx.open_table(WORKERS).map_err(io)?;
            tx.open_table(DAYS).map_err(io)?;
            tx.open_table(RECENT).map_err(io)?;
            tx.open_table(EARNINGS).map_err(io)?;
            tx.open_table(SPLITS).map_err(io)?;
            tx.open_table(SPLIT_DAYS).map_err(io)?;
            tx.open_table(CHECKS).map_err(io)?;
            tx.open_table(BEST).map_err(io)?;
            tx.open_table(BLOCKS).map_err(io)?;
        }
        tx.commit().map_err(io)?;
        if let Some(from) = migrated {
            log::info!("books migrated from schema {from} to {SCHEMA}");
        }
        Ok(books(db, true))
    }

    /// Whether `db` carries this schema's mark, every table and the
    /// settlement in use; an error for a newer schema's.
    fn is_current(db: &Database, path: &Path, settlement: u64) -> Result<bool, StoreError> {
        let tx = db.begin_read().map_err(io)?;
        let (mark, settled) = match tx.open_table(META) {
            Ok(meta) => {
                let get = |key| meta.get(key).map(|v| v.map(|v| v.value())).map_err(io);
                (get("schema")?, get("settlement")?)
            }
            Err(redb::TableError::TableDoesNotExist(_)) => (None, None),
            Err(e) => return Err(io(e)),
        };
        if settled != Some(settlement) && mark.is_some_and(|m| m <= SCHEMA) {
            return Ok(false);
        }
        match mark {
            Some(SCHEMA) => {}
            // Refused before any write transaction begins: an older binary
            // writes nothing to newer books.
            Some(found) if found > SCHEMA => return Err(StoreError::Newer { path: path.into(), found }),
            _ => return Ok(false),
        }
        Ok(missing_tables(&tx)?.is_empty())
    }

    /// The configuration the books were opened with.
    pub fn setting(&self) -> &Setting {
        &self.setting
    }

    /// The file the books are kept in (in RAM mode, saved to).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether opening wrote to the books (created, migrated, or recorded a
    /// new settlement): in RAM mode, something to save.
    pub fn changed_at_open(&self) -> bool {
        self.changed_at_open
    }

    /// `books check`: redb's integrity check, then the books' invariants
    /// (see [`super::integrity`]). Takes a while on big books; call between
    /// commits.
    pub fn check(&mut self) -> Result<super::integrity::Report, StoreError> {
        super::integrity::check_db(&mut self.db, &self.path, self.setting.settlement)
    }

    /// Records `events` in one durable commit; prunes recent shares older than
    /// the retention relative to `now` (unix seconds). Says what it booked
    /// and what it turned away (see the module's invariants).
    pub fn commit(&mut self, events: &[Event], now: u64) -> Result<Booked, StoreError> {
        let result = self.commit_inner(events, now);
        if result.is_err() {
            // The day's count may include admissions that were rolled back.
            self.admission.today = None;
        }
        result
    }

    fn commit_inner(&mut self, events: &[Event], now: u64) -> Result<Booked, StoreError> {
        let Books { db, setting: s, seq, admission, .. } = self;
        let s = &*s;
        let mut booked = Booked::default();
        let mut tx = db.begin_write().map_err(io)?;
        tx.set_durability(Durability::Immediate).map_err(io)?;
        {
            // Keyed (day, pool, login), as the tables are.
            let mut days: HashMap<(u32, &str, &str), DayTotals> = HashMap::new();
            let mut checks: HashMap<(u32, &str, &str), CheckTotals> = HashMap::new();
            let mut best: HashMap<&str, (f64, u64)> = HashMap::new();
            let mut recent: HashMap<(u32, &str, &str), DayTotals> = HashMap::new();
            let mut blocks = tx.open_table(BLOCKS).map_err(io)?;
            let mut pools = tx.open_table(POOLS).map_err(io)?;
            let mut miners = tx.open_table(MINERS).map_err(io)?;
            let mut workers = tx.open_table(WORKERS).map_err(io)?;
            for event in events {
                if event.unix_secs() < CLOCK_FLOOR_SECS {
                    booked.clock_unset += 1;
                    continue;
                }
                match event {
                    Event::PoolConnected { pool, at } => {
                        let pool = s.resolve(*pool, &mut booked);
                        let name = pool.name.as_str();
                        let first = pools.get(name).map_err(io)?.map_or(*at, |v| v.value().2);
                        pools
                            .insert(name, (pool.address.clone(), pool.username.clone(), first, *at))
                            .map_err(io)?;
                    }
                    Event::WorkerSeen { login, address, agent, pool, at } => {
                        let pool = &s.resolve(*pool, &mut booked).name;
                        let Some(first) = workers.get(login.as_str()).map_err(io)?.map(|v| v.value().2)
                        else {
                            admission.remember(login, address, agent, *at);
                            booked.events += 1;
                            continue;
                        };
                        let miner = miner_of(login);
                        let row =
                            (miner.to_string(), pool.clone(), first, *at, address.clone(), agent.clone());
                        workers.insert(login.as_str(), row).map_err(io)?;
                        let first = miners.get(miner).map_err(io)?.map_or(*at, |v| v.value().0);
                        miners.insert(miner, (first, *at)).map_err(io)?;
                    }
                    Event::Share { login, outcome, check, pool, at_ms } => {
                        if !outcome.is_believable() {
                            booked.bad_difficulty += 1;
                            continue;
                        }
                        let pool = s.resolve(*pool, &mut booked).name.as_str();
                        let at = at_ms / 1000;
                        let listed = workers.get(login.as_str()).map_err(io)?.is_some()
                            || matches!(outcome, Outcome::Accepted(_))
                                && admission.admit(
                                    s,
                                    pool,
                                    &mut workers,
                                    &mut miners,
                                    login,
                                    at,
                                    &mut booked,
                                )?;
                        let name = if listed { login.as_str() } else { OVERFLOW_WORKER };
                        let day = Day::of(at, s.settlement);
                        if *outcome == Outcome::Disputed {
                            checks.entry((day.0, pool, name)).or_default().disputed += 1;
                        } else {
                            days.entry((day.0, pool, name)).or_default().add(*outcome);
                        }
                        if let Some(CheckNote { verdict, difficulty, achieved }) = check {
                            checks.entry((day.0, pool, name)).or_default().add(
                                *verdict,
                                *difficulty,
                                *achieved,
                            );
                            let top = best.entry(name).or_insert((0.0, 0));
                            if achieved.is_finite() && *achieved > top.0 {
                                *top = (*achieved, *at_ms);
                            }
                        }
                        if *outcome != Outcome::Disputed {
                            recent.entry((bucket_of(at), pool, name)).or_default().add(*outcome);
                        }
                    }
                    Event::Block { login, hash, difficulty, pool, at_ms } => {
                        let pool = s.resolve(*pool, &mut booked).name.clone();
                        *seq += 1;
                        while blocks.get((*at_ms, *seq)).map_err(io)?.is_some() {
                            *seq += 1;
                        }
                        let row = (login.to_string(), pool, hash.to_string(), *difficulty);
                        blocks.insert((*at_ms, *seq), row).map_err(io)?;
                    }
                }
                booked.events += 1;
            }
            add_totals(&mut tx.open_table(DAYS).map_err(io)?, days)?;
            let mut table = tx.open_table(CHECKS).map_err(io)?;
            for ((day, pool, login), add) in checks {
                let key = (day, pool, login);
                let (mut n, d, b, disputed) =
                    table.get(key).map_err(io)?.map_or(([0; 6], 0.0, 0.0, 0), |v| v.value());
                for (slot, more) in n.iter_mut().zip(add.checked) {
                    *slot += more;
                }
                let row = (n, d + add.valid_difficulty, b.max(add.best), disputed + add.disputed);
                table.insert(key, row).map_err(io)?;
            }
            let mut table = tx.open_table(BEST).map_err(io)?;
            for (login, (achieved, at_ms)) in best {
                let old = table.get(login).map_err(io)?.map_or(0.0, |v| v.value().0);
                if achieved > old {
                    table.insert(login, (achieved, at_ms)).map_err(io)?;
                }
            }
            let excess = blocks.len().map_err(io)?.saturating_sub(MAX_BLOCKS);
            for _ in 0..excess {
                blocks.pop_first().map_err(io)?;
            }
            let mut table = tx.open_table(RECENT).map_err(io)?;
            add_totals(&mut table, recent)?;
            // Whole buckets past the retention go, an hour's worth at a time.
            let cutoff = bucket_of(now.saturating_sub(s.keep_raw_secs));
            let oldest = table.first().map_err(io)?.map(|(k, _)| k.value().0);
            let every = (PRUNE_EVERY_SECS / RECENT_SECS) as u32;
            if oldest.is_some_and(|oldest| oldest.saturating_add(every) <= cutoff) {
                table.retain_in(..(cutoff, "", ""), |_, _| false).map_err(io)?;
            }
        }
        tx.commit().map_err(io)?;
        Ok(booked)
    }

    /// Every worker's totals for `day`, summed over every pool it worked
    /// on, with its miner and last-seen time; ordered by login.
    pub fn day_totals(&self, day: Day) -> Result<Vec<(String, String, DayTotals, Option<u64>)>, StoreError> {
        let tx = self.db.begin_read().map_err(io)?;
        let days = tx.open_table(DAYS).map_err(io)?;
        let workers = tx.open_table(WORKERS).map_err(io)?;
        let mut sums: BTreeMap<String, DayTotals> = BTreeMap::new();
        for entry in days.range((day.0, "", "")..(day.0 + 1, "", "")).map_err(io)? {
            let (k, v) = entry.map_err(io)?;
            let (accepted, difficulty, rejected, stale) = v.value();
            let sum = sums.entry(k.value().2.to_string()).or_default();
            sum.merge(&DayTotals { accepted, difficulty, rejected, stale });
        }
        let mut rows = Vec::with_capacity(sums.len());
        for (login, totals) in sums {
            let last = workers.get(login.as_str()).map_err(io)?.map(|w| w.value().3);
            let miner = miner_of(&login).to_string();
            rows.push((login, miner, totals, last));
        }
        Ok(rows)
    }

    /// Every worker's checks on `day`, summed over every pool.
    pub fn day_checks(&self, day: Day) -> Result<HashMap<String, CheckTotals>, StoreError> {
        let tx = self.db.begin_read().map_err(io)?;
        let table = tx.open_table(CHECKS).map_err(io)?;
        let mut rows: HashMap<String, CheckTotals> = HashMap::new();
        for entry in table.range((day.0, "", "")..(day.0 + 1, "", "")).map_err(io)? {
            let (k, v) = entry.map_err(io)?;
            let (checked, valid_difficulty, best, disputed) = v.value();
            let sum = rows.entry(k.value().2.to_string()).or_default();
            sum.merge(&CheckTotals { checked, valid_difficulty, best, disputed });
        }
        Ok(rows)
    }

    /// The pools with shares or checks booked on `day`: the configured ones
    /// in priority order, then any others (since removed from the
    /// configuration) by name.
    pub fn day_pools(&self, day: Day) -> Result<Vec<String>, StoreError> {
        let tx = self.db.begin_read().map_err(io)?;
        let mut seen: std::collections::BTreeSet<String> = Default::default();
        let days = tx.open_table(DAYS).map_err(io)?;
        for entry in days.range((day.0, "", "")..(day.0 + 1, "", "")).map_err(io)? {
            seen.insert(entry.map_err(io)?.0.value().1.to_string());
        }
        let checks = tx.open_table(CHECKS).map_err(io)?;
        for entry in checks.range((day.0, "", "")..(day.0 + 1, "", "")).map_err(io)? {
            seen.insert(entry.map_err(io)?.0.value().1.to_string());
        }
        let mut pools: Vec<String> = self.setting.pools.iter().filter_map(|p| seen.take(&p.name)).collect();
        pools.extend(seen);
        Ok(pools)
    }

    /// Every login's best share ever: (login, difficulty, unix ms).
    pub fn best_shares(&self) -> Result<Vec<(String, f64, u64)>, StoreError> {
        let tx = self.db.begin_read().map_err(io)?;
        let table = tx.open_table(BEST).map_err(io)?;
        let mut rows = Vec::new();
        for entry in table.iter().map_err(io)? {
            let (k, v) = entry.map_err(io)?;
            let (difficulty, at_ms) = v.value();
            rows.push((k.value().to_string(), difficulty, at_ms));
        }
        Ok(rows)
    }

    /// Each login's accepted shares from the bucket holding `since` (unix
    /// seconds) on, summed per bucket of [`history::BUCKET_SECS`] over every
    /// pool, and the start of the oldest bucket the books still hold (from
    /// when such a history is complete). Read once at start, so the page's
    /// charts survive a restart.
    pub fn recent_history(&self, since: u64) -> Result<(Vec<Restored>, Option<u64>), StoreError> {
        let tx = self.db.begin_read().map_err(io)?;
        let recent = tx.open_table(RECENT).map_err(io)?;
        let oldest = recent.first().map_err(io)?.map(|(k, _)| u64::from(k.value().0) * RECENT_SECS);
        let now = crate::clock::unix_secs();
        let mut logins: HashMap<String, Restored> = HashMap::new();
        for entry in recent.range((bucket_of(since), "", "")..).map_err(io)? {
            let (k, v) = entry.map_err(io)?;
            let (bucket, _pool, login) = k.value();
            let (accepted, difficulty, _, _) = v.value();
            if accepted == 0 {
                continue;
            }
            // The same width as the history's buckets: the same numbers.
            let bucket = u64::from(bucket);
            // The bucket's last second: a share is never taken for older
            // than it was (a worker is not called down early after a restart).
            let last = ((bucket + 1) * RECENT_SECS - 1).min(now);
            let row = logins.entry(login.to_string()).or_insert_with_key(|login| Restored {
                login: login.clone(),
                last,
                buckets: Vec::new(),
            });
            row.last = row.last.max(last);
            let count = u32::try_from(accepted).unwrap_or(u32::MAX);
            // Rows come by bucket, then pool: a login's pools share a bucket.
            match row.buckets.last_mut() {
                Some(b) if b.0 == bucket => {
                    b.1 += difficulty;
                    b.2 = b.2.saturating_add(count);
                }
                _ => row.buckets.push((bucket, difficulty, count)),
            }
        }
        Ok((logins.into_values().collect(), oldest))
    }

    /// Every block found, oldest first.
    pub fn blocks(&self) -> Result<Vec<BlockRow>, StoreError> {
        let tx = self.db.begin_read().map_err(io)?;
        let table = tx.open_table(BLOCKS).map_err(io)?;
        let mut rows = Vec::new();
        for entry in table.iter().map_err(io)? {
            let (k, v) = entry.map_err(io)?;
            let (login, pool, hash, difficulty) = v.value();
            rows.push(BlockRow { at_ms: k.value().0, login, pool, hash, difficulty });
        }
        Ok(rows)
    }

    /// The last block found, if any.
    pub fn last_block(&self) -> Result<Option<BlockRow>, StoreError> {
        let tx = self.db.begin_read().map_err(io)?;
        let table = tx.open_table(BLOCKS).map_err(io)?;
        let Some((k, v)) = table.last().map_err(io)? else { return Ok(None) };
        let (login, pool, hash, difficulty) = v.value();
        Ok(Some(BlockRow { at_ms: k.value().0, login, pool, hash, difficulty }))
    }

    /// Refuses a pool name that is neither configured nor in the pools
    /// table (a pool since removed from the configuration keeps its books
    /// and its name): a typo would otherwise store a reward no work matches.
    fn known_pool(&self, pool: &str) -> Result<(), StoreError> {
        if self.setting.has_pool(pool) {
            return Ok(());
        }
        let tx = self.db.begin_read().map_err(io)?;
        if tx.open_table(POOLS).map_err(io)?.get(pool).map_err(io)?.is_some() {
            return Ok(());
        }
        Err(StoreError::Refused(format!(
            "pool {pool} is not configured (pools: {}) and the books have never seen it",
            self.setting.pool_names()
        )))
    }

    /// Records a pool's reward for a day (replacing an earlier entry). The
    /// pool must be configured or known to the books.
    pub fn add_earning(
        &mut self,
        day: Day,
        pool: &str,
        reward: u64,
        hashrate: Option<f64>,
    ) -> Result<(), StoreError> {
        if reward > MAX_REWARD_SATS {
            return Err(StoreError::Refused(format!(
                "a reward of {reward} sats is more than all bitcoin ({MAX_REWARD_SATS} sats)"
            )));
        }
        self.known_pool(pool)?;
        let tx = self.db.begin_write().map_err(io)?;
        tx.open_table(EARNINGS).map_err(io)?.insert((day.0, pool), (reward, hashrate)).map_err(io)?;
        tx.commit().map_err(io)
    }

    /// Every earning: (day, pool, reward, pool hashrate).
    pub fn earnings(&self) -> Result<Vec<(Day, String, u64, Option<f64>)>, StoreError> {
        let tx = self.db.begin_read().map_err(io)?;
        let table = tx.open_table(EARNINGS).map_err(io)?;
        let mut rows = Vec::new();
        for entry in table.iter().map_err(io)? {
            let (k, v) = entry.map_err(io)?;
            let (day, pool) = k.value();
            let (reward, rate) = v.value();
            rows.push((Day(day), pool.to_string(), reward, rate));
        }
        Ok(rows)
    }

    /// Splits `pool`'s reward for `day` among the workers that worked on
    /// that pool, by the accepted difficulty they sent it, and stores the
    /// result (replacing an earlier one). Work on other pools earns nothing
    /// of this reward.
    pub fn distribute(&mut self, day: Day, pool: &str, now: u64) -> Result<(), StoreError> {
        let earning = {
            let tx = self.db.begin_read().map_err(io)?;
            let table = tx.open_table(EARNINGS).map_err(io)?;
            table.get((day.0, pool)).map_err(io)?.map(|v| v.value())
        };
        let Some((reward, pool_rate)) = earning else {
            self.known_pool(pool)?;
            return Err(StoreError::Refused(format!(
                "no earnings for pool {pool} on {day}; add them with `earnings add`"
            )));
        };
        let totals = self.day_totals_for(day, pool)?;
        let weights: Vec<(String, f64)> = totals.iter().map(|(l, t)| (l.clone(), t.difficulty)).collect();
        let sats =
            split(reward, &weights).map_err(|e| StoreError::Refused(format!("{day}, pool {pool}: {e}")))?;
        let total_difficulty: f64 = weights.iter().map(|w| w.1).sum();
        let gateway_rate = crate::check::target::hashes(total_difficulty) / 86_400.0;
        let tx = self.db.begin_write().map_err(io)?;
        {
            let mut table = tx.open_table(SPLITS).map_err(io)?;
            table.retain_in((day.0, pool, "")..(day.0, pool, "\u{10ffff}"), |_, _| false).map_err(io)?;
            for ((login, s), (_, w)) in sats.iter().zip(&weights) {
                table
                    .insert((day.0, pool, login.as_str()), (miner_of(login).to_string(), *w, *s))
                    .map_err(io)?;
            }
            tx.open_table(SPLIT_DAYS)
                .map_err(io)?
                .insert((day.0, pool), (reward, gateway_rate, pool_rate, now))
                .map_err(io)?;
        }
        tx.commit().map_err(io)
    }

    fn day_totals_for(&self, day: Day, pool: &str) -> Result<Vec<(String, DayTotals)>, StoreError> {
        let tx = self.db.begin_read().map_err(io)?;
        let days = tx.open_table(DAYS).map_err(io)?;
        let mut rows = Vec::new();
        for entry in days.range((day.0, pool, "")..(day.0, pool, "\u{10ffff}")).map_err(io)? {
            let (k, v) = entry.map_err(io)?;
            let (accepted, difficulty, rejected, stale) = v.value();
            rows.push((k.value().2.to_string(), DayTotals { accepted, difficulty, rejected, stale }));
        }
        Ok(rows)
    }

    /// Stored distributions, of one day or all, of one pool (`only`) or all,
    /// rendered as text.
    pub fn render_distributions(&self, day: Option<Day>, only: Option<&str>) -> Result<String, StoreError> {
        let tx = self.db.begin_read().map_err(io)?;
        let days = tx.open_table(SPLIT_DAYS).map_err(io)?;
        let splits = tx.open_table(SPLITS).map_err(io)?;
        let mut out = String::new();
        for entry in days.iter().map_err(io)? {
            let (k, v) = entry.map_err(io)?;
            let (d, pool) = k.value();
            if day.is_some_and(|want| want.0 != d) || only.is_some_and(|only| only != pool) {
                continue;
            }
            let (reward, gateway, pool_rate, _) = v.value();
            let pool_rate = pool_rate.map_or("-".into(), crate::status::hashrate);
            let _ = writeln!(
                out,
                "{} pool {pool}: reward {reward} sats; hashrate gateway {}, pool {pool_rate}",
                Day(d),
                crate::status::hashrate(gateway)
            );
            let mut miners: BTreeMap<String, u64> = BTreeMap::new();
            let _ = writeln!(out, "  {:<40} {:>16} {:>14}", "WORKER", "DIFFICULTY", "SATS");
            for row in splits.range((d, pool, "")..(d, pool, "\u{10ffff}")).map_err(io)? {
                let (k, v) = row.map_err(io)?;
                let (miner, difficulty, sats) = v.value();
                *miners.entry(miner).or_default() += sats;
                let (login, difficulty) =
                    (crate::web::page::short_login(k.value().2), crate::status::difficulty_sum(difficulty));
                let _ = writeln!(out, "  {login:<40} {difficulty:>16} {sats:>14}");
            }
            let _ = writeln!(out, "  {:<32} {:>14}", "MINER", "SATS");
            // Whole: the miner is who gets paid (for solo logins, the address).
            for (miner, sats) in miners {
                let _ = writeln!(out, "  {miner:<32} {sats:>14}");
            }
        }
        if out.is_empty() {
            out.push_str("no distributions yet\n");
        }
        Ok(out)
    }
}

impl Admission {
    /// Keeps what an authorization of a login without a row said, for the
    /// row its first accepted share will create.
    fn remember(&mut self, login: &str, address: &str, agent: &str, at: u64) {
        self.pending.retain(|(l, _)| l != login);
        if self.pending.len() == MAX_PENDING_LOGINS {
            self.pending.pop_front();
        }
        self.pending.push_back((login.to_string(), (address.to_string(), agent.to_string(), at)));
    }

    /// Gives `login` rows of its own at its first accepted share (`at`, unix
    /// seconds) unless the day already admitted its cap of new workers.
    #[allow(clippy::too_many_arguments)]
    fn admit(
        &mut self,
        s: &Setting,
        pool: &str,
        workers: &mut Table<&str, WorkerRow>,
        miners: &mut Table<&str, (u64, u64)>,
        login: &str,
        at: u64,
        booked: &mut Booked,
    ) -> Result<bool, StoreError> {
        if login == OVERFLOW_WORKER {
            return Ok(false);
        }
        let day = Day::of(at, s.settlement);
        let admitted = match self.today {
            Some((d, n)) if d == day => n,
            _ => new_workers_on(workers, day, s.settlement)?,
        };
        if admitted >= s.max_new_workers_per_day {
            self.today = Some((day, admitted));
            booked.over_cap += 1;
            if self.noted != Some(day) {
                self.noted = Some(day);
                booked.cap_reached = Some(day);
            }
            return Ok(false);
        }
        self.today = Some((day, admitted + 1));
        let (address, agent, seen) = match self.pending.iter().position(|(l, _)| l == login) {
            Some(i) => self.pending.remove(i).map_or((String::new(), String::new(), at), |(_, p)| p),
            None => (String::new(), String::new(), at),
        };
        let first = seen.min(at);
        let miner = miner_of(login);
        workers
            .insert(login, (miner.to_string(), pool.to_string(), first, seen, address, agent))
            .map_err(io)?;
        let since = miners.get(miner).map_err(io)?.map_or(first, |v| v.value().0);
        miners.insert(miner, (since, seen.max(at))).map_err(io)?;
        Ok(true)
    }
}

/// The tables of this schema that `tx`'s file lacks.
pub(super) fn missing_tables(tx: &redb::ReadTransaction) -> Result<Vec<&'static str>, StoreError> {
    use redb::TableHandle;
    let names: Vec<String> = tx.list_tables().map_err(io)?.map(|t| t.name().to_string()).collect();
    let tables = [
        POOLS.name(),
        MINERS.name(),
        WORKERS.name(),
        DAYS.name(),
        RECENT.name(),
        EARNINGS.name(),
        SPLITS.name(),
        SPLIT_DAYS.name(),
        CHECKS.name(),
        BEST.name(),
        BLOCKS.name(),
    ];
    Ok(tables.into_iter().filter(|t| !names.iter().any(|n| n == t)).collect())
}

/// The bucket of recent shares unix second `at` falls in.
pub(super) fn bucket_of(at: u64) -> u32 {
    u32::try_from(at / RECENT_SECS).unwrap_or(u32::MAX)
}

/// Opens the books file at `path` for reading and writing, creating it
/// private to the user running it whatever the umask: the file 0600,
/// missing directories 0700.
pub(super) fn open_private(path: &Path) -> Result<std::fs::File, StoreError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let failed = |e: std::io::Error| StoreError::Open { path: path.into(), source: e.into() };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(failed)?;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(failed)
}

/// The redb database in `file` (named `path` in errors), counting what is
/// written to it in `io`.
pub(super) fn on_file(file: std::fs::File, path: &Path, io: Arc<StoreIo>) -> Result<Database, StoreError> {
    let opened = redb::backends::FileBackend::new(file)
        .and_then(|file| Database::builder().create_with_backend(Counted::new(file, io)));
    opened.map_err(|e| StoreError::Open { path: path.into(), source: e.into() })
}

/// Adds each of `rows` to its row of `table` (a new row starts at zero).
pub(super) fn add_totals<'k>(
    table: &mut Table<(u32, &'static str, &'static str), TotalsRow>,
    rows: impl IntoIterator<Item = ((u32, &'k str, &'k str), DayTotals)>,
) -> Result<(), StoreError> {
    for (key, add) in rows {
        let (accepted, difficulty, rejected, stale) =
            table.get(key).map_err(io)?.map_or((0, 0.0, [0; 5], 0), |v| v.value());
        let mut sum = DayTotals { accepted, difficulty, rejected, stale };
        sum.merge(&add);
        table.insert(key, (sum.accepted, sum.difficulty, sum.rejected, sum.stale)).map_err(io)?;
    }
    Ok(())
}

/// How many workers were first seen on `day`.
fn new_workers_on(workers: &Table<&str, WorkerRow>, day: Day, settlement: u32) -> Result<u32, StoreError> {
    let mut n = 0u32;
    for row in workers.iter().map_err(io)? {
        let (_, v) = row.map_err(io)?;
        if Day::of(v.value().2, settlement) == day {
            n = n.saturating_add(1);
        }
    }
    Ok(n)
}

#[cfg(test)]
#[path = "db_tests.rs"]
mod tests;
