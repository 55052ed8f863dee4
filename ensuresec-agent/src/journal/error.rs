//! The journal's errors, each naming the file and what is wrong.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the journal {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the journal: {0}")]
    Query(#[from] rusqlite::Error),
    #[error("the journal {path} is corrupt: {why}")]
    Corrupt { path: PathBuf, why: String },
    #[error(
        "the journal's schema is version {found}, this build reads version {supported} (a newer ensuresec wrote it)"
    )]
    Version { found: i64, supported: i64 },
    #[error(
        "the journal {path} is of version {found}, this build's is {supported}: the agent upgrades it when it starts"
    )]
    Older {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("the journal {path}: {source}")]
    Within {
        path: PathBuf,
        #[source]
        source: Box<JournalError>,
    },
    #[error("the journal holds `{value}` where {what} belongs")]
    Malformed { what: &'static str, value: String },
}

impl JournalError {
    pub(super) fn open(path: &Path, source: rusqlite::Error) -> Self {
        JournalError::Sqlite {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(super) fn within(self, path: &Path) -> Self {
        match self {
            JournalError::Query(source) => JournalError::Sqlite {
                path: path.to_path_buf(),
                source,
            },
            e @ (JournalError::Sqlite { .. } | JournalError::Within { .. }) => e,
            e => JournalError::Within {
                path: path.to_path_buf(),
                source: Box::new(e),
            },
        }
    }

    /// Whether the file is not a sound database this build reads: moved
    /// aside at the agent's start rather than stopping it.
    pub fn is_unreadable(&self) -> bool {
        use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
        match self {
            JournalError::Corrupt { .. } | JournalError::Version { .. } => true,
            JournalError::Sqlite { source, .. } | JournalError::Query(source) => matches!(
                source.sqlite_error_code(),
                Some(DatabaseCorrupt | NotADatabase)
            ),
            JournalError::Within { source, .. } => source.is_unreadable(),
            _ => false,
        }
    }
}

/// A stored value this build cannot read, named with its column.
pub(super) fn unreadable(
    column: usize,
    why: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, why.into())
}
