//! ensuresec's user-space side: the `ensuresec` CLI and agent, as a library so
//! that integration tests and xtask drive the same code.

pub mod app;
pub mod attach;
pub mod census;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod detect;
pub mod ebpf;
pub mod edit;
pub mod error;
pub mod health;
pub mod http;
pub mod journal;
pub mod metrics;
pub mod ml;
pub mod output;
pub mod pins;
pub mod recover;
pub mod respond;
pub mod state_file;
pub mod store;
pub mod sys;

/// Fails unless running as root: loading XDP programs and opening pinned maps
/// needs CAP_BPF and CAP_NET_ADMIN.
pub fn require_root() -> error::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(error::Error::NotRoot);
    }
    Ok(())
}
