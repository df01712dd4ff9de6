//! `registry-up man --out DIR`: man pages from the clap definitions: registry-up.1 for the whole tool and
//! registry-up-COMMAND.1 for each command (and registry-up-certs-show.1 below it), as git and podman do.

use std::path::Path;

use clap::CommandFactory;

use crate::cli::{Cli, ManArgs};
use crate::error::{Error, Result};

pub fn command(args: &ManArgs) -> Result<()> {
    let written = write_pages(&args.out)?;
    println!("Wrote {written} man pages to {}.", args.out.display());
    Ok(())
}

/// Writes every page into `dir`; returns how many.
pub fn write_pages(dir: &Path) -> Result<usize> {
    let failed = |e: std::io::Error| {
        Error::runtime(format!(
            "Cannot write the man pages to {} ({e}): give --out a writable folder.",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    let mut root = Cli::command().version(crate::VERSION);
    root.build();
    let mut written = 0;
    let mut pending = vec![root];
    while let Some(command) = pending.pop() {
        let name = command.get_display_name().unwrap_or(command.get_name()).to_string();
        let mut page = Vec::new();
        clap_mangen::Man::new(command.clone())
            .title(name.to_uppercase())
            .source(format!("registry-up {}", crate::VERSION))
            .manual("registry-up manual")
            .render(&mut page)
            .map_err(failed)?;
        crate::atomic::write_atomic(&dir.join(format!("{name}.1")), &page, 0o644)?;
        written += 1;
        pending.extend(command.get_subcommands().filter(|c| c.get_name() != "help").cloned());
    }
    Ok(written)
}
