//! `registry-up trust`: this host's container clients (and with --system the OS) trust the appliance's
//! CA; `down --purge` takes it back with [`untrust`].

use std::path::PathBuf;

use crate::cli::TrustArgs;
use crate::error::{Error, Result};
use crate::host::HostFacts;
use crate::layout;
use crate::state::State;

/// Where this host's container clients look for a registry's CA.
pub fn trust_paths(state: &State, host: &HostFacts) -> Vec<PathBuf> {
    let mut names = vec![state.domain.clone()];
    names.extend(state.sans.iter().cloned());
    let mut paths = Vec::new();
    for name in names {
        // containers/image looks for HOST:PORT as in the image reference: an IPv6 address in brackets.
        let name = if name.contains(':') { format!("[{name}]") } else { name };
        for root in host.trust_roots() {
            paths.push(root.join(format!("{name}:{}", state.port)).join("ca.crt"));
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

pub fn command(args: &TrustArgs, host: &HostFacts) -> Result<()> {
    let state = crate::state::installed(&args.appliance.config_dir)?;
    let ca_path = args.appliance.config_dir.join(layout::CA_CERT);
    let ca = match crate::bounded::file(&ca_path, crate::bounded::SMALL)
        .and_then(|c| c.ok_or_else(|| std::io::ErrorKind::NotFound.into()))
    {
        Ok(ca) => ca,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("No CA to trust: the server certificate chains to the system's trusted CAs.");
            return Ok(());
        }
        Err(e) => return Err(Error::usage(crate::host::io_failed("read", &ca_path, &e))),
    };
    let mut targets = trust_paths(&state, host);
    if args.system && !host.root {
        return Err(Error::usage(
            "--system changes the operating system's trust store: run it as root.",
        ));
    }
    if args.system {
        targets.push(system_trust_path(&state));
    }
    for path in &targets {
        let dir = path.parent().expect("has a parent");
        // As root, a folder on the way that is a link is not written through (root would write where it
        // points: outside /etc). A user's own links in their home are theirs.
        if let Some(link) = dir
            .ancestors()
            .filter(|_| host.root)
            .filter(|d| d.parent().is_some())
            .find(|d| std::fs::symlink_metadata(d).is_ok_and(|m| m.file_type().is_symlink()))
        {
            println!(
                "left alone {}: {} is a link, and registry-up does not write through one",
                path.display(),
                link.display()
            );
            continue;
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::runtime(crate::host::io_failed("create", dir, &e)))?;
        crate::atomic::write_atomic(path, &ca, layout::PUBLIC)?;
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
                "update-ca-certificates failed: {}. The CA is in place for container clients; fix the system \
                 trust store (run update-ca-certificates by hand to see why) and run registry-up trust --system again.",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        println!("updated   the system trust store (update-ca-certificates)");
    }
    println!(
        "\nOn every other client host, as root, copy {} there and run:\n  install -D -m 0644 ca.crt /etc/containers/certs.d/{host}:{port}/ca.crt\n  install -D -m 0644 ca.crt /etc/docker/certs.d/{host}:{port}/ca.crt",
        ca_path.display(),
        host = state.url_host(),
        port = state.port
    );
    Ok(())
}

/// Removes the trust files `trust` wrote, if they still hold this CA (used by `down --purge`).
pub fn untrust(state: &State, ca: &[u8], host: &HostFacts) {
    let system = system_trust_path(state);
    let mut changed_system = false;
    for path in trust_paths(state, host)
        .into_iter()
        .chain(std::iter::once(system.clone()))
    {
        if crate::bounded::file(&path, crate::bounded::SMALL).is_ok_and(|c| c.as_deref() == Some(ca))
            && std::fs::remove_file(&path).is_ok()
        {
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
