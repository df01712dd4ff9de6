//! `registry-up completions SHELL`: the completion script, generated from the same clap definitions the
//! parser uses, so it can never offer an option that does not exist.

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::error::Result;

pub fn command(args: &CompletionsArgs) -> Result<()> {
    clap_complete::generate(args.shell, &mut Cli::command(), "registry-up", &mut std::io::stdout());
    Ok(())
}
