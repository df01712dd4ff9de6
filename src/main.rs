//! registry-up: turns a Podman host into a verified, TLS-fronted private OCI registry.

mod apply;
mod bundle;
mod certs;
mod cli;
mod doctor;
mod down;
mod error;
mod host;
mod logs;
mod own_cert;
mod paths;
mod pki;
mod plan;
mod prepare_user;
mod registry_image;
mod render;
mod report;
mod runtime;
mod secrets;
mod settings;
mod status;
mod sys;
mod up;
mod verify;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() {
    // Like other Unix filters: a closed pipe (`registry-up status | head`) ends the process quietly.
    // SAFETY: setting a signal disposition to its default at start-up, before any threads exist.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // One crypto provider for the whole process (rcgen, rustls, reqwest all use ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    if std::env::args_os().len() == 1 && !crate::paths::default_config_dir().join(render::STATE).exists() {
        // A bare `registry-up` on a host without an appliance: how to start, not only what is missing.
        eprint!("{}", quick_start());
        std::process::exit(error::ExitCode::Usage as i32);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the async runtime starts");
    let result = match &cli.command {
        None => up::run(&cli.up, &rt, pki::Renew::IfNeeded),
        Some(Command::Up(args)) => up::run(args, &rt, pki::Renew::IfNeeded),
        Some(Command::Render(args)) => up::render_to(args),
        Some(Command::Verify(args)) => verify::command(args, &rt).map(exit_with),
        Some(Command::Status(args)) => status::command(args).map(exit_with),
        Some(Command::Down(args)) => down::command(args),
        Some(Command::Bundle(args)) => bundle::command(args, &rt),
        Some(Command::Certs(cli::CertsCommand::Show(args))) => certs::show(args),
        Some(Command::Certs(cli::CertsCommand::Renew(args))) => certs::renew(args, &rt),
        Some(Command::Trust(args)) => certs::trust(args),
        Some(Command::PrepareUser(args)) => prepare_user::command(args).map(exit_with),
        Some(Command::Doctor(args)) => doctor::command(args).map(exit_with),
        Some(Command::Logs(args)) => logs::command(args, &rt),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(e.code as i32);
    }
}

fn quick_start() -> String {
    let config = crate::paths::default_config_dir();
    let rootful = std::path::Path::new("/etc/registry-up").join(render::STATE);
    let root_has_one = if !crate::paths::is_root() && rootful.exists() {
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
        config.join(render::STATE).display()
    )
}

/// Exits with `code` unless it is 0 (for commands whose result is a code, not an error).
fn exit_with(code: i32) {
    if code != 0 {
        std::process::exit(code);
    }
}
