//! The journal's tables. `user_version` names the schema; a database from
//! a later build is refused rather than misread.

use rusqlite::Connection;

use super::JournalError;

pub const VERSION: i64 = 3;

const V1: &str = "
-- What happened, in order: decisions, lifts, expiries, operators' changes,
-- the agent's own restores and reconciliations.
CREATE TABLE journal (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    -- 'agent', 'config', or the user who ran the command.
    actor TEXT NOT NULL,
    target TEXT,
    -- The target's first and last address (16 bytes, IPv4 mapped), to find
    -- every entry that covers an address.
    lo BLOB,
    hi BLOB,
    detector TEXT,
    action TEXT,
    storefront TEXT,
    operation INTEGER,
    detail TEXT NOT NULL
);
CREATE INDEX journal_at ON journal(at_ms);
CREATE INDEX journal_lo ON journal(lo);

-- An operator's command that changed many entries at once (an import).
CREATE TABLE operations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    command TEXT NOT NULL,
    summary TEXT NOT NULL
);
-- What an operation found in place where it changed an entry, to undo it.
CREATE TABLE operation_before (
    operation INTEGER NOT NULL,
    target TEXT NOT NULL,
    before TEXT NOT NULL,
    PRIMARY KEY (operation, target)
) WITHOUT ROWID;

-- The desired state. The operator's part of each list entry (config
-- allows come from the config; bans are decisions).
CREATE TABLE list_state (
    target TEXT PRIMARY KEY,
    allow INTEGER NOT NULL,
    block INTEGER NOT NULL,
    -- Wall-clock ms; NULL blocks until removed.
    block_expires_ms INTEGER,
    reason TEXT,
    added_secs INTEGER NOT NULL,
    operation INTEGER
) WITHOUT ROWID;
CREATE INDEX list_state_operation ON list_state(operation);

CREATE TABLE decision_state (
    target TEXT PRIMARY KEY,
    detector INTEGER NOT NULL,
    action INTEGER NOT NULL,
    strikes INTEGER NOT NULL,
    rate INTEGER NOT NULL,
    limit_classes INTEGER NOT NULL,
    drop_classes INTEGER NOT NULL,
    created_secs INTEGER NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    decided_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    evidence TEXT NOT NULL,
    storefront TEXT
) WITHOUT ROWID;

CREATE TABLE offender_state (
    addr TEXT PRIMARY KEY,
    strikes INTEGER NOT NULL,
    last_secs INTEGER NOT NULL
) WITHOUT ROWID;
";

const V2: &str = "
-- Incidents: one per storefront and kind while an attack lasts. The
-- incident itself is kept as JSON; the columns are what is searched.
CREATE TABLE incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    storefront TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX incidents_state ON incidents(state);
CREATE INDEX incidents_last_seen ON incidents(last_seen_ms);
-- Each storefront's fail-safe switches (few), for `status`.
CREATE INDEX journal_failsafe ON journal(storefront, id)
    WHERE kind IN ('failsafe_on', 'failsafe_off');
";

const V3: &str = "
-- Notices waiting for their channel, and those delivered (or given up):
-- rendered when queued, so that a restart sends the same notice; the key
-- is the receivers' idempotency key.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    incident INTEGER NOT NULL,
    event TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ms INTEGER NOT NULL,
    delivered_ms INTEGER,
    failed_ms INTEGER,
    last_error TEXT
);
CREATE INDEX outbox_pending ON outbox(channel, id)
    WHERE delivered_ms IS NULL AND failed_ms IS NULL;
-- Also made by version 2 since it was first written.
CREATE INDEX IF NOT EXISTS journal_failsafe ON journal(storefront, id)
    WHERE kind IN ('failsafe_on', 'failsafe_off');
";

/// Creates the tables in a new database, or checks an existing one's version.
pub fn ensure(conn: &Connection) -> Result<(), JournalError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    match version {
        0..VERSION => {
            // Every step in one transaction with the version that follows.
            let tx = conn.unchecked_transaction()?;
            for (from, step) in [V1, V2, V3].into_iter().enumerate() {
                if version <= from as i64 {
                    tx.execute_batch(step)?;
                }
            }
            tx.execute_batch(&format!("PRAGMA user_version = {VERSION};"))?;
            tx.commit()?;
            Ok(())
        }
        VERSION => Ok(()),
        other => Err(JournalError::Version {
            found: other,
            supported: VERSION,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_version_journal_gains_the_incidents_and_keeps_its_rows() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(V1).unwrap();
        conn.execute_batch("PRAGMA user_version = 1;").unwrap();
        conn.execute(
            "INSERT INTO journal (at_ms, kind, actor, detail) VALUES (1, 'block', 'alice', '{}')",
            [],
        )
        .unwrap();
        ensure(&conn).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, VERSION);
        let kept: i64 = conn
            .query_row("SELECT COUNT(*) FROM journal", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 1);
        let incidents: i64 = conn
            .query_row("SELECT COUNT(*) FROM incidents", [], |r| r.get(0))
            .unwrap();
        assert_eq!(incidents, 0);
        conn.execute_batch("PRAGMA user_version = 9;").unwrap();
        assert!(matches!(
            ensure(&conn),
            Err(JournalError::Version { found: 9, .. })
        ));
    }
}
