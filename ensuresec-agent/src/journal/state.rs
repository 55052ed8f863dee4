//! The desired state as the journal keeps it: the operator's part of each
//! list entry, the decisions in force and the offenders' strikes, with
//! every time in wall-clock terms so that it means the same after a reboot.

use ensuresec_common::{
    decisions::{DecisionRecord, Offender},
    maps::{FLAG_ALLOW, FLAG_ALLOW_FROM_CONFIG, FLAG_BLOCK, ListEntry},
};
use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::{Journal, JournalError, error::unreadable};
use crate::clock;

/// The operator's part of a list entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRow {
    pub target: String,
    pub allow: bool,
    pub block: bool,
    /// Wall-clock ms; `None` blocks until removed.
    pub block_expires_ms: Option<u64>,
    pub reason: Option<String>,
    pub added_secs: u64,
    /// The operation (an import) that last set it.
    #[serde(default)]
    pub operation: Option<i64>,
}

impl ListRow {
    /// No operator's part: the row that removes `target` from the state.
    pub fn none(target: String) -> Self {
        ListRow {
            target,
            allow: false,
            block: false,
            block_expires_ms: None,
            reason: None,
            added_secs: 0,
            operation: None,
        }
    }

    /// The operator's part of a map entry; `None` when the operator has no
    /// part in it (a ban, a config allow). `reason` is the entry's reason
    /// text.
    pub fn of_entry(target: String, e: &ListEntry, reason: Option<String>) -> Option<Self> {
        let allow = e.flags & FLAG_ALLOW != 0 && e.flags & FLAG_ALLOW_FROM_CONFIG == 0;
        let block = e.flags & FLAG_BLOCK != 0;
        (allow || block).then(|| ListRow {
            target,
            allow,
            block,
            block_expires_ms: (block && e.expires_at_ns != 0)
                .then(|| clock::wall_ms_of_mono(e.expires_at_ns)),
            reason: if block { reason } else { None },
            added_secs: e.added_at_secs,
            operation: None,
        })
    }

    /// Whether two rows say the same (the operation aside; expiries within
    /// a second, the clocks' conversion error).
    pub fn same_as(&self, other: &ListRow) -> bool {
        let close = match (self.block_expires_ms, other.block_expires_ms) {
            (Some(a), Some(b)) => a.abs_diff(b) <= 1000,
            (a, b) => a == b,
        };
        self.target == other.target
            && self.allow == other.allow
            && self.block == other.block
            && self.reason == other.reason
            && close
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRow {
    pub target: String,
    pub detector: u32,
    pub action: u32,
    pub strikes: u32,
    pub rate: u32,
    pub limit_classes: u32,
    pub drop_classes: u32,
    pub created_secs: u64,
    pub first_seen_ms: u64,
    pub decided_ms: u64,
    pub expires_ms: u64,
    pub evidence: [u64; 4],
    /// The storefront's name (its id in the maps changes with the maps).
    pub storefront: Option<String>,
}

impl DecisionRow {
    pub fn of_record(target: String, r: &DecisionRecord, storefront: Option<String>) -> Self {
        DecisionRow {
            target,
            detector: r.detector,
            action: r.action,
            strikes: r.strikes,
            rate: r.rate,
            limit_classes: r.limit_classes,
            drop_classes: r.drop_classes,
            created_secs: r.created_secs,
            first_seen_ms: clock::wall_ms_of_mono(r.first_seen_ns),
            decided_ms: clock::wall_ms_of_mono(r.decided_ns),
            expires_ms: clock::wall_ms_of_mono(r.expires_at_ns),
            evidence: r.evidence,
            storefront,
        }
    }

    /// The record for the maps now, `None` once its time is up.
    /// `storefront_id` is the storefront name's id in the new maps.
    pub fn to_record(&self, storefront_id: u32) -> Option<DecisionRecord> {
        let expires_at_ns = clock::mono_of_wall_ms(self.expires_ms)?;
        // Before the boot, the monotonic clock has no time: its start then.
        let mono = |ms| clock::mono_of_wall_ms(ms).unwrap_or_else(|| mono_at_or_before(ms));
        Some(DecisionRecord {
            detector: self.detector,
            action: self.action,
            strikes: self.strikes,
            rate: self.rate,
            limit_classes: self.limit_classes,
            drop_classes: self.drop_classes,
            created_secs: self.created_secs,
            first_seen_ns: mono(self.first_seen_ms),
            decided_ns: mono(self.decided_ms),
            expires_at_ns,
            evidence: self.evidence,
            storefront_id,
            _pad: 0,
        })
    }

    /// Whether two rows hold the same decision (times within a second).
    pub fn same_as(&self, other: &DecisionRow) -> bool {
        let mut a = self.clone();
        a.first_seen_ms = other.first_seen_ms;
        a.decided_ms = other.decided_ms;
        a.expires_ms = other.expires_ms;
        a == *other
            && self.first_seen_ms.abs_diff(other.first_seen_ms) <= 1000
            && self.decided_ms.abs_diff(other.decided_ms) <= 1000
            && self.expires_ms.abs_diff(other.expires_ms) <= 1000
    }
}

/// The monotonic instant of a wall-clock time that has passed.
fn mono_at_or_before(ms: u64) -> u64 {
    let ago_ns = clock::unix_ms()
        .saturating_sub(ms)
        .saturating_mul(1_000_000);
    clock::mono_ns().saturating_sub(ago_ns)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffenderRow {
    pub addr: String,
    pub strikes: u32,
    pub last_secs: u64,
}

impl OffenderRow {
    pub fn offender(&self) -> Offender {
        Offender {
            strikes: self.strikes,
            _pad: 0,
            last_secs: self.last_secs,
        }
    }
}

/// One change to the desired state.
#[derive(Clone, Debug, PartialEq)]
pub enum StateChange {
    /// The operator's part of an entry; a row that neither allows nor
    /// blocks removes it.
    List(ListRow),
    Decision(DecisionRow),
    DecisionGone(String),
    Offender(OffenderRow),
    OffenderGone(String),
}

pub(super) fn list_row(r: &Row) -> rusqlite::Result<ListRow> {
    Ok(ListRow {
        target: r.get(0)?,
        allow: r.get(1)?,
        block: r.get(2)?,
        block_expires_ms: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
        reason: r.get(4)?,
        added_secs: r.get::<_, i64>(5)? as u64,
        operation: r.get(6)?,
    })
}

pub(super) const LIST_COLUMNS: &str =
    "target, allow, block, block_expires_ms, reason, added_secs, operation";

fn decision_row(r: &Row) -> rusqlite::Result<DecisionRow> {
    let evidence: String = r.get(11)?;
    let evidence = serde_json::from_str::<[i64; 4]>(&evidence)
        .map(|e| e.map(|v| v as u64))
        .map_err(|e| unreadable(11, e))?;
    Ok(DecisionRow {
        target: r.get(0)?,
        detector: r.get(1)?,
        action: r.get(2)?,
        strikes: r.get(3)?,
        rate: r.get(4)?,
        limit_classes: r.get(5)?,
        drop_classes: r.get(6)?,
        created_secs: r.get::<_, i64>(7)? as u64,
        first_seen_ms: r.get::<_, i64>(8)? as u64,
        decided_ms: r.get::<_, i64>(9)? as u64,
        expires_ms: r.get::<_, i64>(10)? as u64,
        evidence,
        storefront: r.get(12)?,
    })
}

const DECISION_COLUMNS: &str = "target, detector, action, strikes, rate, limit_classes, drop_classes, created_secs, first_seen_ms, decided_ms, expires_ms, evidence, storefront";

impl Journal {
    pub fn list_rows(&self) -> Result<Vec<ListRow>, JournalError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {LIST_COLUMNS} FROM list_state"))?;
        let rows = stmt.query_map([], list_row)?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    pub fn list_row(&self, target: &str) -> Result<Option<ListRow>, JournalError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {LIST_COLUMNS} FROM list_state WHERE target = ?1"),
                [target],
                list_row,
            )
            .optional()?)
    }

    pub fn decision_rows(&self) -> Result<Vec<DecisionRow>, JournalError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {DECISION_COLUMNS} FROM decision_state"))?;
        let rows = stmt
            .query_map([], decision_row)?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    pub fn offender_rows(&self) -> Result<Vec<OffenderRow>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT addr, strikes, last_secs FROM offender_state")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(OffenderRow {
                    addr: r.get(0)?,
                    strikes: r.get(1)?,
                    last_secs: r.get::<_, i64>(2)? as u64,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }
}

/// Writes one change inside the caller's transaction.
pub(super) fn apply(tx: &rusqlite::Transaction, change: &StateChange) -> rusqlite::Result<()> {
    match change {
        StateChange::List(row) if !row.allow && !row.block => {
            tx.prepare_cached("DELETE FROM list_state WHERE target = ?1")?
                .execute([&row.target])?;
        }
        StateChange::List(row) => {
            tx.prepare_cached(&format!(
                "INSERT OR REPLACE INTO list_state ({LIST_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))?
            .execute(params![
                row.target,
                row.allow,
                row.block,
                row.block_expires_ms.map(|v| v as i64),
                row.reason,
                row.added_secs as i64,
                row.operation,
            ])?;
        }
        StateChange::Decision(d) => {
            let evidence = serde_json::to_string(&d.evidence.map(|v| v as i64))
                .expect("four integers serialize");
            tx.prepare_cached(&format!(
                "INSERT OR REPLACE INTO decision_state ({DECISION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
            ))?
            .execute(params![
                d.target,
                d.detector,
                d.action,
                d.strikes,
                d.rate,
                d.limit_classes,
                d.drop_classes,
                d.created_secs as i64,
                d.first_seen_ms as i64,
                d.decided_ms as i64,
                d.expires_ms as i64,
                evidence,
                d.storefront,
            ])?;
        }
        StateChange::DecisionGone(target) => {
            tx.prepare_cached("DELETE FROM decision_state WHERE target = ?1")?
                .execute([target])?;
        }
        StateChange::Offender(o) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO offender_state (addr, strikes, last_secs) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![o.addr, o.strikes, o.last_secs as i64])?;
        }
        StateChange::OffenderGone(addr) => {
            tx.prepare_cached("DELETE FROM offender_state WHERE addr = ?1")?
                .execute([addr])?;
        }
    }
    Ok(())
}
