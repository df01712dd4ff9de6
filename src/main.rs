//! registry-up: turns a Podman host into a verified, TLS-fronted private OCI registry.

mod apply;
mod cli;
mod error;
mod host;
mod pki;
mod plan;
mod render;
mod report;
mod runtime;
mod settings;
mod sys;
mod up;
mod verify;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() {
    // One crypto provider for the whole process (rcgen, rustls, reqwest all use ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the async runtime starts");
    let result = match &cli.command {
        None => up::run(&cli.up, &rt),
        Some(Command::Up(args)) => up::run(args, &rt),
        Some(Command::Render(args)) => up::render_to(args),
        Some(Command::Verify(args)) => verify::command(args, &rt).map(|code| {
            if code != 0 {
                std::process::exit(code);
            }
        }),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(e.code as i32);
    }
}
