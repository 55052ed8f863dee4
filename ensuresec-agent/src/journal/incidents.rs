//! The incidents' rows: the responder writes each incident as it changes;
//! `ensuresec incidents` reads them. The incident itself is JSON the
//! responder defines; the journal keeps the columns it is searched by.

use rusqlite::{OptionalExtension as _, params};

use super::{Entry, Journal, JournalError, outbox::OutboxRow};

#[derive(Clone, Debug, PartialEq)]
pub struct IncidentRow {
    /// 0 for an incident not written yet.
    pub id: i64,
    pub storefront: String,
    pub kind: String,
    pub state: String,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    pub body: String,
}

/// Which incidents to read.
#[derive(Clone, Debug, Default)]
pub struct IncidentFilter {
    pub storefront: Option<String>,
    /// Only those not resolved.
    pub unresolved: bool,
    /// Seen from then on (wall-clock ms).
    pub since_ms: Option<u64>,
    /// The newest this many.
    pub limit: Option<usize>,
}

fn row(r: &rusqlite::Row) -> rusqlite::Result<IncidentRow> {
    Ok(IncidentRow {
        id: r.get(0)?,
        storefront: r.get(1)?,
        kind: r.get(2)?,
        state: r.get(3)?,
        first_seen_ms: r.get::<_, i64>(4)? as u64,
        last_seen_ms: r.get::<_, i64>(5)? as u64,
        body: r.get(6)?,
    })
}

const COLUMNS: &str = "id, storefront, kind, state, first_seen_ms, last_seen_ms, body";

impl Journal {
    /// Writes each incident (a new one gets its id, set in its row) with
    /// the entries that tell of its steps (their `detail.incident` set to
    /// the id), in one transaction.
    /// The notices `notices` makes of the written incidents (their ids
    /// known) are queued in the same transaction.
    pub fn save_incidents(
        &mut self,
        changed: &mut [(IncidentRow, Vec<Entry>)],
        notices: impl FnOnce(&[(IncidentRow, Vec<Entry>)]) -> Vec<OutboxRow>,
    ) -> Result<(), JournalError> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO incidents (storefront, kind, state, first_seen_ms, last_seen_ms, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut update = tx.prepare_cached(
                "UPDATE incidents SET state = ?2, last_seen_ms = ?3, body = ?4 WHERE id = ?1",
            )?;
            for (i, entries) in changed.iter_mut() {
                if i.id == 0 {
                    insert.execute(params![
                        i.storefront,
                        i.kind,
                        i.state,
                        i.first_seen_ms as i64,
                        i.last_seen_ms as i64,
                        i.body
                    ])?;
                    i.id = tx.last_insert_rowid();
                } else {
                    update.execute(params![i.id, i.state, i.last_seen_ms as i64, i.body])?;
                }
                for e in entries.iter_mut() {
                    e.detail["incident"] = i.id.into();
                }
                super::write::insert_entries(&tx, entries)?;
            }
        }
        super::outbox::insert(&tx, &notices(changed))?;
        tx.commit()?;
        Ok(())
    }

    pub fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<IncidentRow>, JournalError> {
        let mut sql = format!("SELECT {COLUMNS} FROM incidents WHERE 1 = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(s) = &filter.storefront {
            sql.push_str(" AND storefront = ?");
            args.push(s.clone().into());
        }
        if filter.unresolved {
            sql.push_str(" AND state != 'resolved'");
        }
        if let Some(since) = filter.since_ms {
            sql.push_str(" AND last_seen_ms >= ?");
            args.push((since as i64).into());
        }
        sql.push_str(" ORDER BY id DESC");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt
            .query_map(rusqlite::params_from_iter(args), row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.reverse();
        Ok(rows)
    }

    pub fn incident(&self, id: i64) -> Result<Option<IncidentRow>, JournalError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM incidents WHERE id = ?1"),
                [id],
                row,
            )
            .optional()?)
    }
}
