//! One function per CLI command.

mod attach;
mod decisions;
mod explain;
mod import;
mod incidents;
mod journal;
mod lists;
mod notices;
pub mod operator;
mod rollback;
pub mod status;
mod status_journal;
mod status_text;

use anyhow::Result;

pub use import::{Exported, ImportFormat};
use operator::OperatorLog;

use crate::{
    cli::{AllowCommand, BlockCommand, Cli, Command, DecisionsCommand},
    pins::PinDir,
};

pub use status::{Status, gather as gather_status};

pub fn run(cli: Cli) -> Result<()> {
    let pins = PinDir::new(&cli.pin_dir);
    crate::require_root()?;
    let state_dir = operator::state_dir(&pins, cli.state_dir.as_deref());
    // Opened by the commands that change something, and only then.
    let log = || OperatorLog::open(&state_dir);
    match cli.command {
        Command::Attach {
            iface,
            mode,
            config,
        } => attach::attach(&pins, &iface, mode, config.as_deref()),
        Command::Detach { iface, keep_maps } => attach::detach(&pins, &iface, keep_maps),
        Command::Status(out) => status::print(&pins, &state_dir, out.output),
        Command::Block(BlockCommand::Add {
            target,
            ttl,
            reason,
        }) => lists::block_add(
            &pins,
            &mut log(),
            &target,
            ttl.as_deref(),
            reason.as_deref(),
        ),
        Command::Block(BlockCommand::Rm { target }) => lists::block_rm(&pins, &mut log(), &target),
        Command::Block(BlockCommand::List(out)) => {
            lists::list(&pins, lists::Which::Block, out.output)
        }
        Command::Block(BlockCommand::Export { output: _ }) => import::export(&pins),
        Command::Block(BlockCommand::Import {
            file,
            format,
            ttl,
            reason,
        }) => import::import(
            &pins,
            &mut log(),
            &file,
            format,
            ttl.as_deref(),
            reason.as_deref(),
        ),
        Command::Allow(AllowCommand::Add { target }) => {
            lists::allow_add(&pins, &mut log(), &target)
        }
        Command::Allow(AllowCommand::Rm { target }) => lists::allow_rm(&pins, &mut log(), &target),
        Command::Allow(AllowCommand::List(out)) => {
            lists::list(&pins, lists::Which::Allow, out.output)
        }
        Command::Decisions(DecisionsCommand::List(out)) => decisions::list(&pins, out.output),
        Command::Decisions(DecisionsCommand::Rm { target }) => {
            decisions::rm(&pins, &mut log(), &target)
        }
        Command::Journal(args) => journal::show(&state_dir, &args),
        Command::Explain { address, output } => explain::run(&pins, &state_dir, &address, output),
        Command::Rollback(args) => rollback::run(&pins, &mut log(), &args),
        Command::Incidents(command) => incidents::run(&state_dir, &command),
        Command::Notices(crate::cli::NoticesCommand::List { limit, output }) => {
            notices::list(&state_dir, limit, output)
        }
        Command::Run { config } => crate::daemon::run(&pins, &config),
    }
}
