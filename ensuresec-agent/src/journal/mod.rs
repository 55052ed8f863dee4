//! The journal: every decision, lift and expiry, every operator's change,
//! and the desired state of the lists and decisions, in SQLite (WAL mode)
//! under the state directory. bpffs forgets everything at a reboot; the
//! journal is what the agent restores from.

mod actor;
mod entry;
mod error;
pub mod incidents;
pub mod operations;
pub mod outbox;
pub mod outcomes;
pub mod query;
mod range;
pub mod retention;
mod schema;
pub mod state;
mod write;
pub mod writer;

#[cfg(test)]
mod tests;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use rusqlite::{Connection, OpenFlags};

pub use actor::current_user;
pub use entry::{AGENT, CONFIG, Entry, Kind};
pub use error::JournalError;
pub use state::StateChange;

/// The database's file name in the state directory.
pub const FILE: &str = "journal.db";
/// Where the state directory is when neither the config nor the command
/// line says.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ensuresec";

/// How long a writer waits for another (the CLI and the agent share the file).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Journal {
    conn: Connection,
    path: PathBuf,
}

impl Journal {
    pub fn path_in(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE)
    }

    /// Opens (creating) the journal in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, JournalError> {
        std::fs::create_dir_all(state_dir).map_err(|e| JournalError::Io {
            what: format!("creating {}", state_dir.display()),
            source: e,
        })?;
        let path = Self::path_in(state_dir);
        let conn = Connection::open(&path).map_err(|e| JournalError::open(&path, e))?;
        Self::prepare(conn, path)
    }

    /// Opens an existing journal for reading; `None` when there is none.
    pub fn open_read_only(state_dir: &Path) -> Result<Option<Self>, JournalError> {
        let path = Self::path_in(state_dir);
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| JournalError::open(&path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Read only: an older journal cannot be upgraded here.
        let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if (1..schema::VERSION).contains(&found) {
            return Err(JournalError::Older {
                path,
                found,
                supported: schema::VERSION,
            });
        }
        Ok(Some(Self { conn, path }))
    }

    fn prepare(conn: Connection, path: PathBuf) -> Result<Self, JournalError> {
        let named = |e| JournalError::open(&path, e);
        conn.busy_timeout(BUSY_TIMEOUT).map_err(named)?;
        // A journal in use is already set up: nothing here waits for its
        // writers.
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(named)?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Retention gives freed pages back to the file system. Set
            // before WAL, or a new database keeps none.
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
                .map_err(named)?;
            // WAL: readers (the CLI) never wait for the agent's writes.
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(named)?;
        }
        // NORMAL sync in WAL mode loses at most the last transactions at a
        // power cut, never the database.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(named)?;
        // 32 MiB of page cache (the default is 2): the indexes of a busy
        // journal stay in memory between batches.
        conn.pragma_update(None, "cache_size", -32768)
            .map_err(named)?;
        schema::ensure(&conn).map_err(|e| e.within(&path))?;
        Ok(Self { conn, path })
    }

    /// The agent's open: the whole file is checked, and a journal that is
    /// not a sound database of this schema is moved aside (named in the
    /// result) and a new one started, so that the agent still starts.
    pub fn open_checked(state_dir: &Path) -> Result<(Self, Option<Corrupt>), JournalError> {
        let path = Self::path_in(state_dir);
        let checked = Self::open(state_dir).and_then(|j| {
            let verdict: String = j
                .conn
                .query_row("PRAGMA quick_check", [], |r| r.get(0))
                .map_err(|e| JournalError::open(&path, e))?;
            if verdict == "ok" {
                Ok(j)
            } else {
                Err(JournalError::Corrupt {
                    path: path.clone(),
                    why: verdict,
                })
            }
        });
        match checked {
            Ok(j) => Ok((j, None)),
            Err(e) if e.is_unreadable() => {
                let aside =
                    path.with_extension(format!("db.corrupt-{}", crate::clock::unix_secs()));
                std::fs::rename(&path, &aside).map_err(|io| JournalError::Io {
                    what: format!("moving {} aside", path.display()),
                    source: io,
                })?;
                for suffix in ["-wal", "-shm"] {
                    let side = PathBuf::from(format!("{}{suffix}", path.display()));
                    let _ = std::fs::rename(&side, format!("{}{suffix}", aside.display()));
                }
                let fresh = Self::open(state_dir)?;
                Ok((
                    fresh,
                    Some(Corrupt {
                        error: e.to_string(),
                        moved_to: aside,
                    }),
                ))
            }
            Err(e) => Err(e),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes the database and its write-ahead log take on disk.
    pub fn size_bytes(&self) -> u64 {
        let wal = PathBuf::from(format!("{}-wal", self.path.display()));
        [&self.path, &wal]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

/// A journal found unreadable at start, and where it was moved.
#[derive(Debug)]
pub struct Corrupt {
    pub error: String,
    pub moved_to: PathBuf,
}
