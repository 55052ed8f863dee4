//! One function per CLI command.

mod attach;
mod decisions;
mod lists;
pub mod status;

use anyhow::Result;

use crate::{
    cli::{AllowCommand, BlockCommand, Cli, Command, DecisionsCommand},
    pins::PinDir,
};

pub use status::{Status, gather as gather_status};

pub fn run(cli: Cli) -> Result<()> {
    let pins = PinDir::new(&cli.pin_dir);
    crate::require_root()?;
    match cli.command {
        Command::Attach {
            iface,
            mode,
            config,
        } => attach::attach(&pins, &iface, mode, config.as_deref()),
        Command::Detach { iface, keep_maps } => attach::detach(&pins, &iface, keep_maps),
        Command::Status(out) => status::print(&pins, out.output),
        Command::Block(BlockCommand::Add {
            target,
            ttl,
            reason,
        }) => lists::block_add(&pins, &target, ttl.as_deref(), reason.as_deref()),
        Command::Block(BlockCommand::Rm { target }) => lists::block_rm(&pins, &target),
        Command::Block(BlockCommand::List(out)) => {
            lists::list(&pins, lists::Which::Block, out.output)
        }
        Command::Block(BlockCommand::Import {
            file,
            format,
            ttl,
            reason,
        }) => lists::import(&pins, &file, format, ttl.as_deref(), reason.as_deref()),
        Command::Allow(AllowCommand::Add { target }) => lists::allow_add(&pins, &target),
        Command::Allow(AllowCommand::Rm { target }) => lists::allow_rm(&pins, &target),
        Command::Allow(AllowCommand::List(out)) => {
            lists::list(&pins, lists::Which::Allow, out.output)
        }
        Command::Decisions(DecisionsCommand::List(out)) => decisions::list(&pins, out.output),
        Command::Decisions(DecisionsCommand::Rm { target }) => decisions::rm(&pins, &target),
        Command::Run { config } => crate::daemon::run(&pins, &config),
    }
}
