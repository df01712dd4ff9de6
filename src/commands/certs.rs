//! `registry-up certs show|renew`: the certificates, and a new server certificate (or CA) on demand.

use std::path::Path;

use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::cli::{CertsRenewArgs, CertsShowArgs, UpArgs};
use crate::error::{Error, Result};
use crate::host::HostFacts;
use crate::pki::Renew;

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

fn info(path: &Path) -> Result<CertInfo> {
    let text = crate::bounded::text(path, crate::bounded::SMALL)?;
    let der = crate::pki::parse_pem(&text).map_err(|e| {
        Error::usage(format!(
            "{} is {e}: restore it from a backup, or run registry-up certs renew.",
            path.display()
        ))
    })?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| {
        Error::usage(format!(
            "{} cannot be parsed ({e}): restore it from a backup, or run registry-up certs renew.",
            path.display()
        ))
    })?;
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
    crate::state::installed(&args.appliance.config_dir)?;
    let server = info(&args.appliance.config_dir.join(crate::layout::SERVER_CERT))?;
    let ca_path = args.appliance.config_dir.join(crate::layout::CA_CERT);
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
pub fn renew(args: &CertsRenewArgs, rt: &tokio::runtime::Runtime, host: &HostFacts) -> Result<()> {
    let state = crate::state::installed(&args.appliance.config_dir)?;
    if state.own_cert {
        return Err(Error::usage(
            "The server certificate was brought with --cert/--key: renew it with its CA, then run registry-up up --cert FILE --key FILE.",
        ));
    }
    // A renewal runs the images already installed: it never reaches for the network.
    let up = UpArgs::installed(args.appliance.config_dir.clone(), crate::cli::PullPolicy::Never);
    let renew = if args.rotate_ca {
        Renew::CaAndServer
    } else {
        Renew::Server
    };
    super::up::run(&up, rt, renew, host)?;
    if args.rotate_ca {
        let ca = args.appliance.config_dir.join(crate::layout::CA_CERT);
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
