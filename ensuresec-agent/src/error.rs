//! Errors of the agent library. Each names what is wrong so that the CLI can
//! print it as is.

use std::path::PathBuf;

use ensuresec_common::{
    entry::TargetError, import::ImportError, ports::PortError, trie_build::TrieError, ttl::TtlError,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("ensuresec must run as root (it needs CAP_BPF and CAP_NET_ADMIN)")]
    NotRoot,
    #[error(
        "nothing is attached: no ensuresec maps under {0}; run `ensuresec attach --iface IF` or start the agent"
    )]
    NothingAttached(PathBuf),
    #[error("interface `{0}` does not exist")]
    NoSuchInterface(String),
    #[error("ensuresec is not attached to `{0}`")]
    IfaceNotAttached(String),
    #[error(
        "`{iface}` is already attached in {current} mode; detach it first to change to {wanted} mode"
    )]
    ModeConflict {
        iface: String,
        current: String,
        wanted: String,
    },
    #[error("attaching to `{iface}`: {why}")]
    Attach { iface: String, why: String },
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Ttl(#[from] TtlError),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Trie(#[from] TrieError),
    #[error(transparent)]
    Port(#[from] PortError),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    #[error("{0} is not on the {1}")]
    NotListed(String, &'static str),
    #[error("{0} is allowlisted by the config file; remove it there")]
    OwnedByConfig(String),
    #[error(
        "{what} would hold {need} entries but its capacity is {capacity} ({setting} in the config); nothing was changed"
    )]
    Capacity {
        what: &'static str,
        need: usize,
        capacity: u32,
        setting: &'static str,
    },
    #[error(
        "{what} would need more than the {capacity} trie nodes {setting} gives it (rules far apart and long need the most); nothing was changed"
    )]
    TrieNodes {
        what: &'static str,
        capacity: u32,
        setting: &'static str,
    },
    #[error(
        "{what}: no free slot for a new entry in either of its buckets, nor after a chain of moves; nothing was changed (the table is kept at most half full, where this is very rare: raise the capacity)"
    )]
    TableCrowded { what: &'static str },
    #[error("the reason text is {0} bytes; at most 63 are kept")]
    ReasonTooLong(usize),
    #[error("no room for another distinct reason text ({0} in use)")]
    ReasonsFull(u32),
    #[error(
        "pinned map {map} was created by an incompatible ensuresec ({what}); detach every interface (this drops the lists) and attach again"
    )]
    Layout { map: String, what: String },
    #[error("map {map}: {why}")]
    Map { map: String, why: String },
    #[error("map {map}: {source}")]
    MapIo {
        map: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the decisions map is full (ES_DECISIONS): the detection is not enforced; lift decisions or wait for them to expire"
    )]
    DecisionsFull,
    #[error("loading the XDP programs: {0}")]
    Load(String),
    #[error("config {path}: {why}")]
    Config { path: PathBuf, why: String },
    #[error(
        "the maps under {0} were removed or replaced (a detach?) while this command waited for the lock; nothing was changed"
    )]
    MapsReplaced(PathBuf),
    #[error("an agent is already running for {dir} (pid {pid})")]
    AgentRunning { dir: PathBuf, pid: u32 },
    #[error(
        "the agent (pid {pid}) runs for these maps: stop it before detaching `{iface}` (it would re-attach and keep using the maps a detach removes)"
    )]
    DetachUnderAgent { iface: String, pid: u32 },
    #[error(
        "`{0}` is not a valid interface name (1 to 15 bytes, no `/`, `:` or whitespace, not `.` or `..`)"
    )]
    BadIfaceName(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn map_io(map: &str, source: std::io::Error) -> Self {
        Error::MapIo {
            map: map.to_string(),
            source,
        }
    }

    /// The errno of a failed map operation, if that is what this is.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::MapIo { source, .. } | Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    pub fn map(map: &str, why: impl std::fmt::Display) -> Self {
        Error::Map {
            map: map.to_string(),
            why: why.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
