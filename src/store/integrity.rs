//! `books check` and `books backup`: redb's own integrity check, then the
//! books' invariants, read in one transaction; and a consistent copy of the
//! books, checked before it replaces an earlier backup.
//!
//! The invariants checked (each a problem when broken):
//! - the file carries a schema this program knows (a newer one is refused,
//!   untouched), and at the current schema every table;
//! - every day total is sound: its accepted difficulty is finite, not
//!   negative, and zero without accepted shares; its login has a worker row
//!   (or is the overflow worker);
//! - the day totals are the sum of their parts: the five-minute buckets of
//!   a (day, pool, login) never exceed its day total, and add up to it
//!   exactly on every day they wholly cover (the days after the one holding
//!   the oldest bucket: pruning only ever drops the oldest buckets);
//! - every distribution adds up to its reward, and that reward is the day's
//!   earning as it stands now.
//!
//! A file of an earlier schema is checked as it is (its layout is not
//! migrated: a check, or the backup taken before an upgrade, changes no
//! layout).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableError};

use super::Day;
use super::db::{
    DAYS, DayTotals, EARNINGS, META, RECENT, RECENT_SECS, SCHEMA, SPLIT_DAYS, SPLITS, StoreError, WORKERS,
    io, missing_tables,
};
use crate::worker::OVERFLOW_WORKER;

/// Problems printed, at most; the rest are only counted.
const MAX_SHOWN: usize = 20;

/// What a check found: a line per thing checked, and the problems.
#[derive(Debug)]
pub struct Report {
    text: String,
    problems: usize,
    /// Whether redb's own check failed: the file is damaged.
    damaged: bool,
}

impl Report {
    fn new(path: &Path) -> Report {
        Report { text: format!("books at {}\n", path.display()), problems: 0, damaged: false }
    }

    fn line(&mut self, text: std::fmt::Arguments<'_>) {
        let _ = writeln!(self.text, "  {text}");
    }

    fn problem(&mut self, text: std::fmt::Arguments<'_>) {
        self.problems += 1;
        // The first ones name what is wrong; the count says how much.
        if self.problems <= MAX_SHOWN {
            let _ = writeln!(self.text, "  PROBLEM: {text}");
        }
    }

    /// Whether redb's own integrity check failed (the file is damaged, as
    /// opposed to books that disagree with themselves).
    pub fn damaged(&self) -> bool {
        self.damaged
    }

    /// How many problems were found.
    pub fn problems(&self) -> usize {
        self.problems
    }

    /// The report as printed.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The report's text when nothing is wrong; an error carrying it when
    /// something is (the CLI then exits non-zero).
    pub fn verdict(mut self) -> Result<String, StoreError> {
        match self.problems {
            0 => {
                self.text.push_str("no problems found\n");
                Ok(self.text)
            }
            n => {
                let _ = write!(self.text, "{n} problem(s) found");
                Err(StoreError::Refused(self.text))
            }
        }
    }
}

/// Checks `db` (named `path`), whose days start `settlement` seconds after
/// midnight UTC. An error only when the books cannot be read at all (or are
/// of a newer schema); everything else is in the report.
pub(super) fn check_db(db: &mut Database, path: &Path, settlement: u32) -> Result<Report, StoreError> {
    let mut report = Report::new(path);
    let checked = db.check_integrity();
    report.damaged = checked.as_ref().map_or(true, |intact| !intact);
    match checked {
        Ok(true) => report.line(format_args!("redb integrity check: passed")),
        Ok(false) => report.problem(format_args!("redb integrity check: damage found, and repaired")),
        Err(e) => {
            // Nothing in a damaged file is worth reading further.
            report.problem(format_args!("redb integrity check: {e}; restore the books from a backup"));
            return Ok(report);
        }
    }
    let tx = db.begin_read().map_err(io)?;
    let (schema, settled, since) = match tx.open_table(META) {
        Ok(meta) => {
            let get = |key| meta.get(key).map(|v| v.map(|v| v.value())).map_err(io);
            (get("schema")?, get("settlement")?, get("settlement_since")?)
        }
        Err(TableError::TableDoesNotExist(_)) => (None, None, None),
        Err(e) => return Err(io(e)),
    };
    // The books' own settlement, where they say; days up to the one it was
    // set in may have been cut by another, so their buckets are not summed.
    let settlement = settled.and_then(|s| u32::try_from(s).ok()).unwrap_or(settlement);
    // A day's label under any settlement is at most its UTC date's, so days
    // from the one after `since`'s UTC date hold only shares cut by this one.
    let cut_since = since.map_or(0, |at| Day::of(at, 0).0.saturating_add(1));
    match schema {
        Some(SCHEMA) => {
            let missing = missing_tables(&tx)?;
            if !missing.is_empty() {
                report.problem(format_args!("schema {SCHEMA} without the tables {}", missing.join(", ")));
                return Ok(report);
            }
            report.line(format_args!("schema {SCHEMA}, the current one: every table present"));
        }
        Some(older @ 1..SCHEMA) => report.line(format_args!(
            "schema {older}: this version migrates it to schema {SCHEMA} when it opens the books"
        )),
        Some(found) if found > SCHEMA => return Err(StoreError::Newer { path: path.into(), found }),
        _ => return Err(StoreError::Foreign(path.into())),
    }
    // The buckets summed per (day, pool, login): the parts of each day total.
    let mut parts: BTreeMap<(u32, String, String), DayTotals> = BTreeMap::new();
    // A settlement off the five-minute grid puts a bucket across each
    // day's start, holding shares of both days: then no sum is exact.
    let on_grid = u64::from(settlement) % RECENT_SECS == 0;
    // Every schema has the day totals, workers, earnings and distributions;
    // the buckets came with schema 3.
    let recent = if schema == Some(SCHEMA) { Some(tx.open_table(RECENT).map_err(io)?) } else { None };
    let mut whole = u32::MAX;
    if let Some(recent) = &recent {
        for row in recent.iter().map_err(io)? {
            let (k, v) = row.map_err(io)?;
            let (bucket, pool, login) = k.value();
            let (accepted, difficulty, rejected, stale) = v.value();
            let start = u64::from(bucket) * RECENT_SECS;
            let (day, end) = (Day::of(start, settlement).0, Day::of(start + RECENT_SECS - 1, settlement).0);
            // Days after the oldest bucket's have every bucket they had:
            // pruning only drops the oldest.
            whole = whole.min(day.saturating_add(1));
            if day < cut_since {
                continue;
            }
            if end != day {
                continue;
            }
            let part = DayTotals { accepted, difficulty, rejected, stale };
            parts.entry((day, pool.into(), login.into())).or_default().merge(&part);
        }
    }
    let whole = whole.max(cut_since);
    let mut parts = parts.iter().peekable();
    let days = tx.open_table(DAYS).map_err(io)?;
    let workers = tx.open_table(WORKERS).map_err(io)?;
    let (mut n, mut days_seen, mut exact, mut last) = (0, 0, 0, None);
    // The table and the map are both ordered by (day, pool, login).
    for row in days.iter().map_err(io)? {
        let (k, v) = row.map_err(io)?;
        let key = k.value();
        let (day, pool, login) = key;
        let (accepted, difficulty, rejected, stale) = v.value();
        let sum = DayTotals { accepted, difficulty, rejected, stale };
        let at = Day(day);
        n += 1;
        days_seen += usize::from(last.replace(day) != Some(day));
        if !(difficulty.is_finite() && difficulty >= 0.0 && (accepted > 0 || difficulty == 0.0)) {
            report.problem(format_args!(
                "{at} pool {pool} {login}: {accepted} accepted shares of difficulty {difficulty}"
            ));
        }
        if login != OVERFLOW_WORKER && workers.get(login).map_err(io)?.is_none() {
            report.problem(format_args!("{at} pool {pool}: {login} has no worker row"));
        }
        while let Some((k, part)) = parts.next_if(|(k, _)| (k.0, k.1.as_str(), k.2.as_str()) < key) {
            mismatch(&mut report, k, &DayTotals::default(), part);
        }
        let part = parts.next_if(|(k, _)| (k.0, k.1.as_str(), k.2.as_str()) == key).map(|(_, p)| *p);
        let part = part.unwrap_or_default();
        // Days cut by an earlier settlement are not compared with buckets.
        let exceeds = day >= cut_since && !within(&part, &sum);
        let sure = on_grid && day >= whole;
        let short = sure && !within(&sum, &part);
        if exceeds || short {
            mismatch(&mut report, &(day, pool.into(), login.into()), &sum, &part);
        } else if sure {
            exact += 1;
        }
    }
    for (k, part) in parts {
        mismatch(&mut report, k, &DayTotals::default(), part);
    }
    report.line(format_args!(
        "checked {n} day total(s) over {days_seen} day(s): difficulty sound, every login a worker"
    ));
    if recent.is_some() {
        report.line(format_args!(
            "checked the five-minute buckets: none beyond its day total, and the {exact} day totals on days they wholly cover equal to their sum"
        ));
    }
    check_distributions(&tx, &mut report)?;
    Ok(report)
}

/// A day total (none: zero) that is not the sum of its buckets.
fn mismatch(
    report: &mut Report,
    (day, pool, login): &(u32, String, String),
    sum: &DayTotals,
    part: &DayTotals,
) {
    report.problem(format_args!(
        "{} pool {pool} {login}: the day total ({} accepted, difficulty {}) is not the sum of its five-minute buckets ({} accepted, difficulty {})",
        Day(*day),
        sum.accepted,
        sum.difficulty,
        part.accepted,
        part.difficulty
    ));
}

/// Whether every count of `part` is at most `whole`'s, and its difficulty
/// too (to rounding: the two sums add the same shares in another order).
fn within(part: &DayTotals, whole: &DayTotals) -> bool {
    part.accepted <= whole.accepted
        && part.stale <= whole.stale
        && part.rejected.iter().zip(whole.rejected).all(|(p, w)| *p <= w)
        && part.difficulty <= whole.difficulty * (1.0 + 1e-9) + f64::MIN_POSITIVE
}

/// Each distribution adds up to its reward, which is the earning as it is.
fn check_distributions(tx: &redb::ReadTransaction, report: &mut Report) -> Result<(), StoreError> {
    let days = tx.open_table(SPLIT_DAYS).map_err(io)?;
    let splits = tx.open_table(SPLITS).map_err(io)?;
    let earnings = tx.open_table(EARNINGS).map_err(io)?;
    let mut n = 0usize;
    for row in days.iter().map_err(io)? {
        let (k, v) = row.map_err(io)?;
        let (day, pool) = k.value();
        let reward = v.value().0;
        n += 1;
        let mut paid = 0u64;
        for row in splits.range((day, pool, "")..(day, pool, "\u{10ffff}")).map_err(io)? {
            paid = paid.saturating_add(row.map_err(io)?.1.value().2);
        }
        // An earning is replaced, never deleted: none reads as 0.
        let earned = earnings.get((day, pool)).map_err(io)?.map_or(0, |e| e.value().0);
        if paid != reward || earned != reward {
            let at = Day(day);
            report.problem(format_args!(
                "{at} pool {pool}: the distribution pays {paid} sats of a {reward} sats reward; the earning is {earned} sats: run `loka-stratum distribute --date {at} --pool {pool}` again"
            ));
        }
    }
    report.line(format_args!("checked {n} distribution(s): each adds up to its reward, the day's earning"));
    Ok(())
}

/// Opens the redb file at `path` as it is: no file is created, no layout
/// migrated (redb repairs an uncleanly closed file, as any open does).
fn open_db(path: &Path) -> Result<Database, StoreError> {
    let failed = |e: std::io::Error| StoreError::Open { path: path.into(), source: e.into() };
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(failed)?;
    if file.metadata().map_err(failed)?.len() == 0 {
        return Err(StoreError::Foreign(path.into()));
    }
    super::db::on_file(file, path, Default::default())
}

/// `books check FILE`, and `books check` while the daemon is stopped: the
/// file at `path`, as it is.
pub fn check_file(path: &Path, settlement: u32) -> Result<Report, StoreError> {
    check_db(&mut open_db(path)?, path, settlement)
}

/// The books file at `path` as it is, read while holding its lock (so no
/// daemon commits meanwhile): a backup's image while the daemon is stopped.
pub fn read_locked(path: &Path) -> Result<Vec<u8>, StoreError> {
    let mut file =
        std::fs::File::open(path).map_err(|e| StoreError::Open { path: path.into(), source: e.into() })?;
    super::ram::read_under_lock(&mut file, path, ", and no daemon answers on its control socket")
}

/// Writes `image` (a copy of the books) to `dest` the way the books
/// themselves are saved: a temporary file beside it, synced, then checked
/// (redb must open it as books of a known schema, and it is closed cleanly,
/// so it opens without a repair), then renamed over `dest`. A copy redb
/// cannot open, or whose integrity check fails, never replaces an earlier
/// backup. The check's report (books that disagree with themselves are
/// still copied: the report names the problems).
pub fn write_backup(dest: &Path, image: &[u8], settlement: u32) -> Result<Report, StoreError> {
    let checked = super::backend::replace(dest, image, &Default::default(), |_, tmp| {
        let report = open_db(tmp).and_then(|mut db| check_db(&mut db, dest, settlement));
        match report {
            Ok(report) if report.damaged => Err(std::io::Error::other(format!(
                "the copy is damaged, so it replaces nothing:\n{}",
                report.text
            ))),
            report => report.map_err(|e| std::io::Error::other(e.to_string())),
        }
    });
    checked.map(|(_, report)| report).map_err(|e| StoreError::Save { path: PathBuf::from(dest), source: e })
}
