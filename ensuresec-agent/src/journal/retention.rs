//! Bounded retention: entries older than the configured age go, and the
//! oldest go first while the file is over its size; the desired state
//! forgets what has expired.

use std::time::Duration;

use super::{Journal, JournalError};
use crate::clock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Duration,
    pub max_bytes: u64,
}

/// Entries removed per step while over size: small steps keep the writer's
/// lock short.
const STEP: i64 = 10_000;

impl Journal {
    /// Applies `retention`; returns the entries removed.
    pub fn prune(&mut self, retention: Retention) -> Result<u64, JournalError> {
        let now = clock::unix_ms();
        let cutoff = now.saturating_sub(retention.max_age.as_millis() as u64) as i64;
        let mut removed =
            self.conn
                .execute("DELETE FROM journal WHERE at_ms < ?1", [cutoff])? as u64;
        self.conn.execute(
            "DELETE FROM incidents WHERE state = 'resolved' AND last_seen_ms < ?1",
            [cutoff],
        )?;
        self.conn.execute(
            "DELETE FROM outbox WHERE created_ms < ?1 AND (delivered_ms IS NOT NULL OR failed_ms IS NOT NULL)",
            [cutoff],
        )?;
        // Expired state is never restored: no need to keep it.
        self.conn.execute(
            "DELETE FROM list_state WHERE allow = 0 AND block_expires_ms IS NOT NULL AND block_expires_ms < ?1",
            [now as i64],
        )?;
        self.conn.execute(
            "UPDATE list_state SET block = 0, block_expires_ms = NULL, reason = NULL WHERE allow = 1 AND block_expires_ms IS NOT NULL AND block_expires_ms < ?1",
            [now as i64],
        )?;
        self.conn.execute(
            "DELETE FROM decision_state WHERE expires_ms < ?1",
            [now as i64],
        )?;
        while self.used_bytes()? > retention.max_bytes {
            let n = self.conn.execute(
                "DELETE FROM journal WHERE id IN (SELECT id FROM journal ORDER BY id LIMIT ?1)",
                [STEP],
            )? as u64;
            if n == 0 {
                break;
            }
            removed += n;
        }
        if removed > 0 {
            // Each step of the pragma frees one page: run it to the end.
            let mut vacuum = self.conn.prepare("PRAGMA incremental_vacuum")?;
            let mut steps = vacuum.query([])?;
            while steps.next()?.is_some() {}
            // The log is folded back into the file so that its size counts.
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        Ok(removed)
    }

    /// Bytes in use in the database (free pages aside).
    fn used_bytes(&self) -> Result<u64, JournalError> {
        let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let free: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        let size: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok(((pages - free).max(0) * size) as u64)
    }
}
