//! Operations: an operator's command that changed many entries at once (an
//! import), what it set, and what it found in place, to undo it.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{
    Journal, JournalError,
    state::{self, ListRow},
};

#[derive(Clone, Debug, Serialize)]
pub struct Operation {
    pub id: i64,
    pub at_ms: u64,
    pub actor: String,
    pub command: String,
    pub summary: serde_json::Value,
}

/// What an entry held before an operation changed it (the operator's block).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Before {
    /// Wall-clock ms; `None` blocked until removed.
    pub block_expires_ms: Option<u64>,
    pub reason: Option<String>,
    pub added_secs: u64,
}

impl Journal {
    pub fn operation(&self, id: i64) -> Result<Option<Operation>, JournalError> {
        let found = self
            .conn
            .query_row(
                "SELECT id, at_ms, actor, command, summary FROM operations WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                },
            )
            .optional()?;
        Ok(found.map(|(id, at_ms, actor, command, summary)| Operation {
            id,
            at_ms: at_ms as u64,
            actor,
            command,
            summary: serde_json::from_str(&summary).unwrap_or(serde_json::Value::Null),
        }))
    }

    /// The entries whose operator part `operation` set last (later changes
    /// to an entry take it out of the operation).
    pub fn rows_of_operation(&self, operation: i64) -> Result<Vec<ListRow>, JournalError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {} FROM list_state WHERE operation = ?1",
            state::LIST_COLUMNS
        ))?;
        let rows = stmt
            .query_map([operation], state::list_row)?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// What `operation` found in place, by target.
    pub fn before_operation(
        &self,
        operation: i64,
    ) -> Result<std::collections::HashMap<String, Before>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT target, before FROM operation_before WHERE operation = ?1")?;
        let rows = stmt
            .query_map(params![operation], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(target, text)| {
                let before = serde_json::from_str(&text).map_err(|_| JournalError::Malformed {
                    what: "what an operation replaced",
                    value: text.clone(),
                })?;
                Ok((target, before))
            })
            .collect()
    }
}
