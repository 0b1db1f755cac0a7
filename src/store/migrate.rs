//! Schema steps: one function per step from each earlier layout to the next,
//! run in one write transaction when an older file is opened, so a file is
//! either wholly migrated or left as it was.
//!
//! Invariant: a step never changes what the books report. Per-day totals,
//! checks, best shares, blocks, workers, pools, earnings and distributions
//! are kept row for row; the raw shares of schemas 1 and 2 are folded into
//! the five-minute buckets of schema 3, which hold every figure read from
//! them (accepted count and difficulty, rejected, stale, last accepted).

use std::collections::BTreeMap;

use redb::{ReadableTable, ReadableTableMetadata, TableError, WriteTransaction};

use super::Outcome;
use super::db::{
    BEST, BLOCKS, CHECKS, DayTotals, META, RAW, RECENT, SCHEMA, StoreError, add_totals, bucket_of,
};

/// Brings a file of schema `from` up to [`SCHEMA`], inside `tx`.
pub(super) fn upgrade(tx: &WriteTransaction, from: u64) -> Result<(), redb::Error> {
    let mut at = from;
    while at < SCHEMA {
        match at {
            1 => schema_1_to_2(tx)?,
            2 => schema_2_to_3(tx)?,
            _ => break,
        }
        at += 1;
        tx.open_table(META)?.insert("schema", at)?;
    }
    Ok(())
}

/// Schema 2 adds the local share check: per-day checks, best shares, blocks.
fn schema_1_to_2(tx: &WriteTransaction) -> Result<(), TableError> {
    tx.open_table(CHECKS)?;
    tx.open_table(BEST)?;
    tx.open_table(BLOCKS)?;
    Ok(())
}

/// Schema 3 keeps recent shares in five-minute buckets per pool and login
/// instead of a row per share: a commit then rewrites one page at the end of
/// one table, not a page per few dozen shares plus one at the table's start
/// for pruning, and 48 h of 100 miners take a few MB, not hundreds.
fn schema_2_to_3(tx: &WriteTransaction) -> Result<(), redb::Error> {
    let mut buckets: BTreeMap<(u32, String, String), DayTotals> = BTreeMap::new();
    let rows = {
        let raw = tx.open_table(RAW)?;
        for entry in raw.iter()? {
            let (k, v) = entry?;
            let (at_ms, _) = k.value();
            let (login, pool, kind, reason, difficulty) = v.value();
            let outcome = match kind {
                0 => Outcome::Accepted(difficulty),
                1 => Outcome::Rejected(reason),
                2 => Outcome::Stale,
                // Disputed: never accepted in the books, nothing to bucket.
                _ => continue,
            };
            buckets.entry((bucket_of(at_ms / 1000), pool, login)).or_default().add(outcome);
        }
        raw.len()?
    };
    let folded =
        buckets.iter().map(|((bucket, pool, login), t)| ((*bucket, pool.as_str(), login.as_str()), *t));
    add_totals(&mut tx.open_table(RECENT)?, folded).map_err(|e| match e {
        StoreError::Io(e) => e,
        other => redb::Error::Corrupted(other.to_string()),
    })?;
    tx.delete_table(RAW)?;
    log::info!("books: schema 3: {rows} raw shares folded into {} five-minute buckets", buckets.len());
    Ok(())
}
