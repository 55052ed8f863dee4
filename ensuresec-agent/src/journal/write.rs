//! Writing: entries and state changes together, in one transaction, so that
//! the journal never says a change happened without the state that
//! followed, or the other way round.

use rusqlite::{Transaction, params};

use super::{Entry, Journal, JournalError, StateChange, range, state};

/// Adds `entries` within the caller's transaction.
pub(super) fn insert_entries(tx: &Transaction, entries: &[Entry]) -> Result<(), JournalError> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO journal (at_ms, kind, actor, target, lo, hi, detector, action, storefront, operation, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for e in entries {
        let range = e.target.as_deref().and_then(range::of);
        insert.execute(params![
            e.at_ms as i64,
            e.kind.name(),
            e.actor,
            e.target,
            range.map(|r| r.0.0.to_vec()),
            range.map(|r| r.1.0.to_vec()),
            e.detector,
            e.action,
            e.storefront,
            e.operation,
            e.detail.to_string(),
        ])?;
    }
    Ok(())
}

impl Journal {
    /// Writes `entries` and `changes` in one transaction.
    pub fn write(
        &mut self,
        entries: &[Entry],
        changes: &[StateChange],
    ) -> Result<(), JournalError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| JournalError::open(&path, e))?;
        {
            insert_entries(&tx, entries)?;
            for c in changes {
                state::apply(&tx, c)?;
            }
        }
        tx.commit().map_err(|e| JournalError::open(&path, e))?;
        Ok(())
    }

    /// Starts an operation (an import): its id groups what it changes.
    pub fn begin_operation(
        &mut self,
        actor: &str,
        command: &str,
        summary: &serde_json::Value,
    ) -> Result<i64, JournalError> {
        self.conn.execute(
            "INSERT INTO operations (at_ms, actor, command, summary) VALUES (?1, ?2, ?3, ?4)",
            params![
                crate::clock::unix_ms() as i64,
                actor,
                command,
                summary.to_string()
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records, for `operation`, what each target held before it (to undo
    /// the operation later).
    pub fn record_before(
        &mut self,
        operation: i64,
        before: &[(String, serde_json::Value)],
    ) -> Result<(), JournalError> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO operation_before (operation, target, before) VALUES (?1, ?2, ?3)",
            )?;
            for (target, value) in before {
                insert.execute(params![operation, target, value.to_string()])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
