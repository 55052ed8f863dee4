//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{commands::ImportFormat, config::Mode, pins::DEFAULT_PIN_DIR};

#[derive(Debug, Parser)]
#[command(
    name = "ensuresec",
    version,
    about = "XDP shield for e-commerce hosts: block/allow lists enforced in the kernel",
    propagate_version = true
)]
pub struct Cli {
    /// Where ensuresec pins its maps and links.
    #[arg(long, global = true, env = "ENSURESEC_PIN_DIR", default_value = DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,

    /// Where the journal is (default: the agent's `agent.state_dir` for
    /// these pins, else /var/lib/ensuresec).
    #[arg(long, global = true, env = "ENSURESEC_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach the filter to an interface (replaces the program in place if attached).
    Attach {
        #[arg(long)]
        iface: String,
        #[arg(long, value_enum, default_value_t = Mode::Auto)]
        mode: Mode,
        /// Config file for map sizes when the maps do not exist yet.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Detach the filter from an interface; the last detach also removes the maps.
    Detach {
        #[arg(long)]
        iface: String,
        /// Keep the maps (and the lists in them) even when no interface is left.
        #[arg(long)]
        keep_maps: bool,
    },
    /// Show interfaces, lists, port policy and counters.
    Status(OutputArgs),
    /// Manage the blocklist.
    #[command(subcommand)]
    Block(BlockCommand),
    /// Manage the allowlist.
    #[command(subcommand)]
    Allow(AllowCommand),
    /// The agent's automatic decisions (bans, throttles, budgets, alerts).
    #[command(subcommand)]
    Decisions(DecisionsCommand),
    /// What the agent decided and operators changed, oldest first.
    Journal(JournalArgs),
    /// Why an address is treated as it is now, until when, and what lifts it.
    Explain {
        address: String,
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Lift every decision a detector made since a time, or undo an import.
    Rollback(RollbackArgs),
    /// Attacks grouped per storefront and kind, with what was done and who
    /// was affected.
    #[command(subcommand)]
    Incidents(IncidentsCommand),
    /// Notices to the provider and the storefront owners.
    #[command(subcommand)]
    Notices(NoticesCommand),
    /// Run the agent: attach, expire entries, detect and mitigate, serve metrics.
    Run {
        #[arg(long, default_value = crate::config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum BlockCommand {
    /// Block an address or CIDR prefix.
    Add {
        target: String,
        /// Remove the block after this long (90s, 15m, 4h, 7d); never without it.
        #[arg(long)]
        ttl: Option<String>,
        /// Why it is blocked (shown by `block list`).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Remove a block.
    Rm { target: String },
    /// List blocks with reason, time added and time left.
    List(OutputArgs),
    /// The operator's blocks as JSON, with reasons, times added and
    /// expiries (`block import --format json` reads it back).
    Export {
        /// JSON, the one format that keeps reasons and expiries.
        #[arg(short, long, value_enum, default_value_t = ExportFormat::Json)]
        output: ExportFormat,
    },
    /// Block every entry of a list file, all or nothing.
    Import {
        file: PathBuf,
        /// plain, netset, spamhaus, or json (`block export`'s output).
        #[arg(long, value_parser = parse_format)]
        format: ImportFormat,
        #[arg(long)]
        ttl: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
}

fn parse_format(s: &str) -> Result<ImportFormat, String> {
    s.parse()
}

#[derive(Debug, Subcommand)]
pub enum AllowCommand {
    /// Allowlist an address or CIDR prefix: it is never dropped.
    Add { target: String },
    /// Remove an allowlist entry.
    Rm { target: String },
    /// List allowlist entries.
    List(OutputArgs),
}

#[derive(Debug, Subcommand)]
pub enum DecisionsCommand {
    /// List decisions in force with detector, evidence and time left.
    List(OutputArgs),
    /// Lift a decision: ADDR for a source, ADDR:PORT/PROTO for a destination.
    Rm { target: String },
}

#[derive(Debug, Args)]
pub struct JournalArgs {
    /// Entries from then on: a time ago (`2h`, `3d`) or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Entries about this address, or a prefix overlapping it (its
    /// networks' and destinations' entries included).
    #[arg(long)]
    pub address: Option<String>,
    /// Entries of this detector.
    #[arg(long)]
    pub detector: Option<String>,
    /// The newest this many.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Lift the decisions in force this detector made...
    #[arg(long, requires = "since", conflicts_with = "operation")]
    pub detector: Option<String>,
    /// ...since then: a time ago (`2h`) or an RFC 3339 time.
    #[arg(long, requires = "detector")]
    pub since: Option<String>,
    /// Undo this import (its id is in `ensuresec journal`).
    #[arg(long)]
    pub operation: Option<i64>,
    /// Show what would be lifted or undone, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum IncidentsCommand {
    /// Incidents open or mitigating (with --all, resolved ones too).
    List(IncidentsListArgs),
    /// One incident in full.
    Show {
        id: i64,
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// The accounts an incident affected, for the shop to notify its
    /// customers.
    Affected(AffectedArgs),
}

#[derive(Debug, Args)]
pub struct IncidentsListArgs {
    /// Resolved incidents too.
    #[arg(long)]
    pub all: bool,
    #[arg(long)]
    pub storefront: Option<String>,
    /// Incidents seen from then on: a time ago (`2h`) or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// The newest this many.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct AffectedArgs {
    pub id: i64,
    /// The shop's account names, one a line: each is hashed with the
    /// agent's key and the affected ones are named (the list is not kept).
    #[arg(long)]
    pub accounts: Option<PathBuf>,
    /// The agent's hashing key (default: app.key in the state directory).
    #[arg(long)]
    pub key: Option<PathBuf>,
    #[arg(short, long, value_enum, default_value_t = AffectedFormat::Csv)]
    pub output: AffectedFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AffectedFormat {
    Csv,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum NoticesCommand {
    /// The newest notices: queued, delivered or given up, with their tries.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Json,
}
