//! Reading the journal back: `ensuresec journal` and, later, `explain`.

use rusqlite::{ToSql, types::Value};
use serde::Serialize;

use super::{Entry, Journal, JournalError, Kind, error::unreadable, range};

/// Which entries to read.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Wall-clock ms; entries from then on.
    pub since_ms: Option<u64>,
    /// Entries whose target covers this address or overlaps this prefix.
    pub address: Option<String>,
    pub detector: Option<String>,
    /// The newest this many, in time order.
    pub limit: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub id: i64,
    #[serde(flatten)]
    pub entry: Entry,
}

fn row(r: &rusqlite::Row) -> rusqlite::Result<Row> {
    let kind: String = r.get(2)?;
    let detail: String = r.get(9)?;
    Ok(Row {
        id: r.get(0)?,
        entry: Entry {
            at_ms: r.get::<_, i64>(1)? as u64,
            kind: kind.parse().map_err(|e: String| unreadable(2, e))?,
            actor: r.get(3)?,
            target: r.get(4)?,
            detector: r.get(5)?,
            action: r.get(6)?,
            storefront: r.get(7)?,
            operation: r.get(8)?,
            detail: serde_json::from_str(&detail).map_err(|e| unreadable(9, e))?,
        },
    })
}

impl Journal {
    pub fn entries(&self, filter: &Filter) -> Result<Vec<Row>, JournalError> {
        let mut clauses = Vec::new();
        let mut args: Vec<Value> = Vec::new();
        if let Some(since) = filter.since_ms {
            clauses.push("at_ms >= ?");
            args.push(Value::Integer(since as i64));
        }
        if let Some(text) = &filter.address {
            let (lo, hi) = range::of_query(text).ok_or_else(|| JournalError::Malformed {
                what: "an address or prefix to look for",
                value: text.clone(),
            })?;
            // Overlap: the entry's range and the asked one share an address.
            clauses.push("lo <= ? AND hi >= ?");
            args.push(Value::Blob(hi.0.to_vec()));
            args.push(Value::Blob(lo.0.to_vec()));
        }
        if let Some(d) = &filter.detector {
            clauses.push("detector = ?");
            args.push(Value::Text(d.clone()));
        }
        let mut sql = String::from(
            "SELECT id, at_ms, kind, actor, target, detector, action, storefront, operation, detail FROM journal",
        );
        if !clauses.is_empty() {
            sql += " WHERE ";
            sql += &clauses.join(" AND ");
        }
        sql += " ORDER BY id DESC";
        if let Some(limit) = filter.limit {
            sql += &format!(" LIMIT {limit}");
        }
        let mut stmt = self.conn.prepare(&sql)?;
        let params: Vec<&dyn ToSql> = args.iter().map(|a| a as &dyn ToSql).collect();
        let mut rows = stmt
            .query_map(params.as_slice(), row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.reverse();
        Ok(rows)
    }

    /// How many entries the journal holds.
    pub fn count(&self) -> Result<u64, JournalError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM journal", [], |r| r.get::<_, i64>(0))?
            as u64)
    }
}

impl Journal {
    /// The newest entry of one of `kinds` about exactly `target` (the same
    /// address range: `10.0.0.1` and `10.0.0.1/32` are one).
    pub fn latest_about(&self, target: &str, kinds: &[Kind]) -> Result<Option<Row>, JournalError> {
        let Some((lo, hi)) = range::of(target) else {
            return Ok(None);
        };
        let names: Vec<String> = kinds.iter().map(|k| format!("'{}'", k.name())).collect();
        let sql = format!(
            "SELECT id, at_ms, kind, actor, target, detector, action, storefront, operation, detail FROM journal
             WHERE lo = ?1 AND hi = ?2 AND kind IN ({}) ORDER BY id DESC LIMIT 1",
            names.join(", ")
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query_map(rusqlite::params![lo.0.to_vec(), hi.0.to_vec()], row)?;
        Ok(rows.next().transpose()?)
    }
}

impl Journal {
    /// Each storefront's newest fail-safe switch (`failsafe_on` or
    /// `failsafe_off`).
    pub fn failsafe_switches(&self) -> Result<Vec<Row>, JournalError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, at_ms, kind, actor, target, detector, action, storefront, operation, detail FROM journal
             WHERE id IN (SELECT MAX(id) FROM journal
                          WHERE kind IN ('failsafe_on', 'failsafe_off') GROUP BY storefront)
             ORDER BY storefront",
        )?;
        let rows = stmt.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}
