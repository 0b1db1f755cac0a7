//! Schema steps: one function per step from each earlier layout to the next,
//! run in one write transaction when an older file is opened, so a file is
//! either wholly migrated or left as it was.
//!
//! Invariant: a step only adds; no row an older version wrote is rewritten
//! or dropped, so the books of an older file read the same after it.

use redb::{TableError, WriteTransaction};

use super::db::{BEST, BLOCKS, CHECKS, META, SCHEMA};

/// Brings a file of schema `from` up to [`SCHEMA`], inside `tx`.
pub(super) fn upgrade(tx: &WriteTransaction, from: u64) -> Result<(), redb::Error> {
    let mut at = from;
    while at < SCHEMA {
        match at {
            1 => schema_1_to_2(tx)?,
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
