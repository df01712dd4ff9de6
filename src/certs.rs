//! `registry-up certs show|renew` and `registry-up trust`.

use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::cli::{CertsRenewArgs, CertsShowArgs, SetupArgs, TrustArgs, UpArgs};
use crate::error::{Error, Result};
use crate::pki::Renew;
use crate::render::{self, State};

#[derive(Serialize)]
struct CertInfo {
    file: String,
    subject: String,
    issuer: String,
    names: Vec<String>,
    serial: String,
    not_before: String,
    not_after: String,
    days_left: i64,
    sha256_fingerprint: String,
}

fn installed(config_dir: &Path) -> Result<State> {
    crate::settings::read_state(config_dir)?.ok_or_else(|| {
        Error::usage(format!(
            "No appliance is installed in {}: run registry-up up first.",
            config_dir.display()
        ))
    })
}

fn info(path: &Path) -> Result<CertInfo> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::usage(format!("Cannot read {} ({e}): run as root.", path.display())))?;
    let der = crate::pki::parse_pem(&text).map_err(|e| Error::usage(format!("{} is {e}.", path.display())))?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|e| Error::usage(format!("{} cannot be parsed ({e}).", path.display())))?;
    let fingerprint = ring::digest::digest(&ring::digest::SHA256, &der);
    let hex: Vec<String> = fingerprint.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    let not_after = cert.validity().not_after.to_datetime();
    Ok(CertInfo {
        file: path.display().to_string(),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        names: crate::pki::san_names(&cert),
        serial: cert.raw_serial_as_string(),
        not_before: crate::pki::utc(cert.validity().not_before.to_datetime()),
        not_after: crate::pki::utc(not_after),
        days_left: (not_after - OffsetDateTime::now_utc()).whole_days(),
        sha256_fingerprint: hex.join(":"),
    })
}

pub fn show(args: &CertsShowArgs) -> Result<()> {
    installed(&args.config_dir)?;
    let server = info(&args.config_dir.join(render::SERVER_CERT))?;
    let ca_path = args.config_dir.join(render::CA_CERT);
    let ca = if ca_path.exists() { Some(info(&ca_path)?) } else { None };
    if args.json {
        let doc = serde_json::json!({ "server": server, "ca": ca });
        println!("{}", serde_json::to_string_pretty(&doc).expect("serialises"));
        return Ok(());
    }
    for (title, c) in std::iter::once(("server certificate", &server)).chain(ca.as_ref().map(|c| ("CA", c))) {
        println!("{title}: {}", c.file);
        println!("  subject      {}", c.subject);
        println!("  issuer       {}", c.issuer);
        if !c.names.is_empty() {
            println!("  names        {}", c.names.join(", "));
        }
        println!(
            "  valid        {} to {} ({} days left)",
            c.not_before, c.not_after, c.days_left
        );
        println!("  serial       {}", c.serial);
        println!("  SHA-256      {}", c.sha256_fingerprint);
    }
    if ca.is_none() {
        println!("CA: none installed; the server certificate chains to the system's trusted CAs.");
    }
    Ok(())
}

/// Re-issues from the existing CA (or a new one) and reloads nginx in place: an `up` run with a
/// forced renewal, so the plan, the atomic writes, the reload and the verification are the same.
pub fn renew(args: &CertsRenewArgs, rt: &tokio::runtime::Runtime) -> Result<()> {
    let state = installed(&args.config_dir)?;
    if state.own_cert {
        return Err(Error::usage(
            "The server certificate was brought with --cert/--key: renew it with its CA, then run registry-up up --cert FILE --key FILE.",
        ));
    }
    let up = UpArgs {
        setup: SetupArgs {
            config_dir: args.config_dir.clone(),
            ..Default::default()
        },
        image_archives: Vec::new(),
        bundle: None,
        dry_run: false,
        no_verify: false,
        wait_timeout: 60,
        // A renewal runs the images already installed: it never reaches for the network.
        pull: crate::cli::PullPolicy::Never,
        pull_timeout: 60,
    };
    let renew = if args.rotate_ca {
        Renew::CaAndServer
    } else {
        Renew::Server
    };
    crate::up::run(&up, rt, renew)?;
    if args.rotate_ca {
        let ca = args.config_dir.join(render::CA_CERT);
        println!(
            "\nThe CA is new: every client that trusted the old one must trust {} instead. On this host run \
             registry-up trust; on other hosts replace /etc/containers/certs.d/{}:{}/ca.crt (and the docker one).",
            ca.display(),
            state.domain,
            state.port
        );
    }
    Ok(())
}

/// Where this host's container clients look for a registry's CA.
pub fn trust_paths(state: &State) -> Vec<PathBuf> {
    let mut names = vec![state.domain.clone()];
    names.extend(state.sans.iter().cloned());
    let mut paths = Vec::new();
    for name in names {
        let host = if name.contains(':') { format!("[{name}]") } else { name };
        for root in crate::paths::trust_roots() {
            paths.push(root.join(format!("{host}:{}", state.port)).join("ca.crt"));
        }
    }
    paths
}

pub fn system_trust_path(state: &State) -> PathBuf {
    let safe: String = state
        .domain
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' })
        .collect();
    PathBuf::from(format!(
        "/usr/local/share/ca-certificates/registry-up-{safe}-{}.crt",
        state.port
    ))
}

pub fn trust(args: &TrustArgs) -> Result<()> {
    let state = installed(&args.config_dir)?;
    let ca_path = args.config_dir.join(render::CA_CERT);
    let ca = match std::fs::read(&ca_path) {
        Ok(ca) => ca,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("No CA to trust: the server certificate chains to the system's trusted CAs.");
            return Ok(());
        }
        Err(e) => {
            return Err(Error::usage(format!(
                "Cannot read {} ({e}): run as root.",
                ca_path.display()
            )))
        }
    };
    let mut targets = trust_paths(&state);
    if args.system && !crate::paths::is_root() {
        return Err(Error::usage(
            "--system changes the operating system's trust store: run it as root.",
        ));
    }
    if args.system {
        targets.push(system_trust_path(&state));
    }
    for path in &targets {
        let dir = path.parent().expect("has a parent");
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::runtime(format!("Cannot create {} ({e}): run as root.", dir.display())))?;
        crate::apply::write_atomic(path, &ca, 0o644)?;
        println!("trusted   {}", path.display());
    }
    if args.system {
        let out = std::process::Command::new("update-ca-certificates")
            .output()
            .map_err(|e| {
                Error::runtime(format!(
                    "Could not run update-ca-certificates ({e}): apt-get install ca-certificates."
                ))
            })?;
        if !out.status.success() {
            return Err(Error::runtime(format!(
                "update-ca-certificates failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        println!("updated   the system trust store (update-ca-certificates)");
    }
    println!(
        "\nOn every other client host, as root, copy {} there and run:\n  install -D -m 0644 ca.crt /etc/containers/certs.d/{host}:{port}/ca.crt\n  install -D -m 0644 ca.crt /etc/docker/certs.d/{host}:{port}/ca.crt",
        ca_path.display(),
        host = state.domain,
        port = state.port
    );
    Ok(())
}

/// Removes the trust files `trust` wrote, if they still hold this CA (used by `down --purge`).
pub fn untrust(state: &State, ca: &[u8]) {
    let system = system_trust_path(state);
    let mut changed_system = false;
    for path in trust_paths(state).into_iter().chain(std::iter::once(system.clone())) {
        if std::fs::read(&path).is_ok_and(|c| c == ca) && std::fs::remove_file(&path).is_ok() {
            if path == system {
                changed_system = true;
            } else if let Some(dir) = path.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
    if changed_system {
        let _ = std::process::Command::new("update-ca-certificates").output();
    }
}
