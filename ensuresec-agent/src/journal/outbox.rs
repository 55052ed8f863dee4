//! The notices' outbox: queued with the incident change that made them (one
//! transaction), taken by the notifier one channel at a time in order,
//! marked delivered, retried or given up.

use rusqlite::{Transaction, params};

use super::{Journal, JournalError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: i64,
    pub channel: String,
    pub incident: i64,
    /// `open`, `update` or `resolved`.
    pub event: String,
    /// The receivers' idempotency key, unique.
    pub key: String,
    pub created_ms: u64,
    /// The rendered notice (JSON the notifier reads).
    pub payload: String,
    pub attempts: u32,
    pub next_ms: u64,
    pub delivered_ms: Option<u64>,
    pub failed_ms: Option<u64>,
    pub last_error: Option<String>,
}

const COLUMNS: &str = "id, channel, incident, event, key, created_ms, payload, attempts, next_ms, delivered_ms, failed_ms, last_error";

fn row(r: &rusqlite::Row) -> rusqlite::Result<OutboxRow> {
    let ms = |i| r.get::<_, Option<i64>>(i).map(|v| v.map(|v| v as u64));
    Ok(OutboxRow {
        id: r.get(0)?,
        channel: r.get(1)?,
        incident: r.get(2)?,
        event: r.get(3)?,
        key: r.get(4)?,
        created_ms: r.get::<_, i64>(5)? as u64,
        payload: r.get(6)?,
        attempts: r.get(7)?,
        next_ms: r.get::<_, i64>(8)? as u64,
        delivered_ms: ms(9)?,
        failed_ms: ms(10)?,
        last_error: r.get(11)?,
    })
}

/// Queues `notices` within the caller's transaction; a key already queued
/// is left as it is (a notice is queued once).
pub(super) fn insert(tx: &Transaction, notices: &[OutboxRow]) -> Result<(), JournalError> {
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO outbox (channel, incident, event, key, created_ms, payload, next_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for n in notices {
        insert.execute(params![
            n.channel,
            n.incident,
            n.event,
            n.key,
            n.created_ms as i64,
            n.payload,
            n.next_ms as i64
        ])?;
    }
    Ok(())
}

impl Journal {
    /// The oldest pending notice of each channel, if it is due: a channel's
    /// notices go in order (an alert's resolve after its opening).
    pub fn due_notices(&self, now_ms: u64) -> Result<Vec<OutboxRow>, JournalError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM outbox WHERE id IN
                (SELECT MIN(id) FROM outbox
                 WHERE delivered_ms IS NULL AND failed_ms IS NULL GROUP BY channel)
             AND next_ms <= ?1 ORDER BY id"
        ))?;
        let rows = stmt
            .query_map([now_ms as i64], row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn notice_delivered(&self, id: i64, at_ms: u64) -> Result<(), JournalError> {
        self.conn.execute(
            "UPDATE outbox SET delivered_ms = ?2, attempts = attempts + 1, last_error = NULL WHERE id = ?1",
            params![id, at_ms as i64],
        )?;
        Ok(())
    }

    /// A failed attempt: tried again at `next_ms`, or given up (`give_up`).
    pub fn notice_failed(
        &self,
        id: i64,
        next_ms: u64,
        error: &str,
        give_up: bool,
    ) -> Result<(), JournalError> {
        self.conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_ms = ?2, last_error = ?3,
                 failed_ms = CASE WHEN ?4 THEN ?5 ELSE NULL END
             WHERE id = ?1",
            params![
                id,
                next_ms as i64,
                error,
                give_up,
                crate::clock::unix_ms() as i64
            ],
        )?;
        Ok(())
    }

    /// The newest `limit` notices, oldest first.
    pub fn notices(&self, limit: usize) -> Result<Vec<OutboxRow>, JournalError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM outbox ORDER BY id DESC LIMIT {limit}"
        ))?;
        let mut rows = stmt.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
        rows.reverse();
        Ok(rows)
    }

    /// Notices waiting, and when the oldest of them was queued.
    pub fn pending_notices(&self) -> Result<(u64, Option<u64>), JournalError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*), MIN(created_ms) FROM outbox WHERE delivered_ms IS NULL AND failed_ms IS NULL",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, Option<i64>>(1)?.map(|v| v as u64),
                ))
            },
        )?)
    }
}
