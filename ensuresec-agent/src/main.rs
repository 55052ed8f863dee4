//! The `ensuresec` binary.

use clap::Parser;
use ensuresec_agent::{cli::Cli, commands};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, ensuresec_agent::cli::Command::Run { .. }) {
        // A listing piped into `head` ends quietly when the reader goes away.
        // (The agent keeps Rust's default: a closed socket is an error, not a
        // signal.)
        // SAFETY: setting a signal's disposition to its default.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match commands::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
