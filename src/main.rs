//! registry-up: turns a Podman host into a verified, TLS-fronted private OCI registry.

mod apply;
mod atomic;
mod backup;
mod bounded;
mod bundle;
mod cli;
mod commands;
mod deb;
mod desired;
mod digest;
mod disk;
mod error;
mod firewall;
mod gc;
mod gc_hold;
mod host;
mod hostname;
mod import;
mod layout;
mod listen;
mod lock;
mod oci;
mod own_cert;
mod owned;
mod pki;
mod plan;
mod preflight;
mod progress;
mod reference;
mod registry_api;
mod registry_image;
mod render;
mod replicas;
mod runtime;
mod s3;
mod secrets;
mod settings;
mod site;
mod source;
mod state;
mod storage;
mod store;
mod subid;
mod verify;

use clap::Parser;

/// `registry-up --version`: the crate's version and the git commit it was built from (build.rs).
pub const VERSION: &str = env!("REGISTRY_UP_VERSION");

use crate::cli::{CertsCommand, Cli, Command, SiteCommand};
use crate::commands::{
    backup as backup_cmd, bundle as bundle_cmd, certs, clients, completions, doctor, down, gc as gc_cmd,
    import as import_cmd, logs, maintain, man, prepare_user, render as render_cmd, status, trust, up,
    verify as verify_cmd,
};
use crate::error::{ExitStatus, Result};
use crate::host::HostFacts;

fn main() -> std::process::ExitCode {
    // SIGPIPE stays ignored (Rust's default), so a peer closing a socket is an error of that request, never
    // the death of the process; a closed stdout (`registry-up status | head`) still ends it quietly.
    quiet_on_closed_stdout();
    // One crypto provider for the whole process (rcgen, rustls, reqwest all use ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let host = HostFacts::current();
    if std::env::args_os().len() == 1 && !host.default_config_dir().join(layout::STATE).exists() {
        // A bare `registry-up` on a host without an appliance: how to start, not only what is missing.
        eprint!("{}", quick_start(host));
        return ExitStatus::Usage.into();
    }
    match dispatch(&cli, host) {
        Ok(status) => status.into(),
        Err(e) => {
            // Errors name what was given: a control character in it is shown, not sent to the terminal.
            eprintln!("error: {}", crate::error::printable(&e.to_string(), true));
            e.status.into()
        }
    }
}

/// Ends the process without a panic message when printing fails because the reader of stdout or stderr
/// went away (EPIPE), with the status a death by SIGPIPE would give (128 + 13): what `head` or a closed
/// pager expects, and what `set -o pipefail` reads as before.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to std") && message.contains("Broken pipe") {
            std::process::exit(128 + libc::SIGPIPE);
        }
        default(info);
    }));
}

fn dispatch(cli: &Cli, host: &HostFacts) -> Result<ExitStatus> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            error::Error::runtime(format!(
                "Cannot start the async runtime ({e}): the host is out of threads or memory; free some and run again."
            ))
        })?;
    let done = |r: Result<()>| r.map(|()| ExitStatus::Success);
    match &cli.command {
        None => done(up::run(&cli.up, &rt, pki::Renew::IfNeeded, host)),
        Some(Command::Up(args)) => done(up::run(args, &rt, pki::Renew::IfNeeded, host)),
        Some(Command::Render(args)) => done(render_cmd::command(args, host)),
        Some(Command::Verify(args)) => verify_cmd::command(args, &rt, host),
        Some(Command::Status(args)) => status::command(args, &rt),
        Some(Command::Down(args)) => done(down::command(args, &rt, host)),
        Some(Command::Bundle(args)) => done(bundle_cmd::command(args, &rt)),
        Some(Command::Import(args)) => import_cmd::command(args, &rt, host),
        Some(Command::Certs(CertsCommand::Show(args))) => done(certs::show(args)),
        Some(Command::Certs(CertsCommand::Renew(args))) => done(certs::renew(args, &rt, host)),
        Some(Command::Trust(args)) => done(trust::command(args, host)),
        Some(Command::Clients(args)) => clients::command(args, &rt, host),
        Some(Command::PrepareUser(args)) => prepare_user::command(args, host),
        Some(Command::Doctor(args)) => doctor::command(args, host),
        Some(Command::Logs(args)) => done(logs::command(args, &rt, host)),
        Some(Command::Gc(args)) => gc_cmd::command(args, &rt, host),
        Some(Command::Maintain(args)) => maintain::command(args, &rt, host),
        Some(Command::Site(SiteCommand::Export(args))) => done(commands::site::export(args, &rt, host)),
        Some(Command::Site(SiteCommand::Forget(args))) => done(commands::site::forget(args, &rt, host)),
        Some(Command::Backup(args)) => done(backup_cmd::backup(args, &rt, host)),
        Some(Command::Restore(args)) => backup_cmd::restore(args, &rt, host),
        Some(Command::Completions(args)) => done(completions::command(args)),
        Some(Command::Man(args)) => done(man::command(args)),
    }
}

fn quick_start(host: &HostFacts) -> String {
    let config = host.default_config_dir();
    let rootful = std::path::Path::new("/etc/registry-up").join(crate::layout::STATE);
    let root_has_one = if !host.root && rootful.exists() {
        format!(
            "An appliance installed by root is there ({}): run registry-up as root (sudo registry-up …) to manage it.\n",
            rootful.display()
        )
    } else {
        String::new()
    };
    format!(
        "registry-up turns this host into a private OCI registry behind TLS, in one command.\n\
         No appliance is installed here yet ({} does not exist).\n\
         \n\
         Quick start:\n  \
           registry-up doctor                              # check this host first\n  \
           registry-up --domain registry.example.com       # the name (or IP address) clients will use\n  \
           registry-up --domain registry.example.com --auth   # the same, with a password\n\
         Air-gapped: run `registry-up bundle --out bundle.tar` on a connected host, then\n  \
           registry-up --domain registry.example.com --bundle bundle.tar\n\
         \n\
         {root_has_one}\
         Every option: registry-up --help. More in the README (README.md in registry-up's source).\n",
        config.join(crate::layout::STATE).display()
    )
}
