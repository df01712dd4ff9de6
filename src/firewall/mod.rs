//! The host firewall between clients and nginx's port: firewalld when it runs, else the nftables rules
//! (iptables-nft's among them). Finds whether the port is dropped, opens it on request, and closes again
//! only what registry-up opened (kept in `firewall.json`).

mod firewalld;
mod nftables;

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::host::HostFacts;
use crate::listen::Listen;

/// One opening registry-up made (or would make) in the host firewall.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Opening {
    Firewalld(firewalld::Entry),
    Nftables(nftables::Rule),
}

/// What the firewall does to the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing found that drops clients there.
    Open(String),
    /// Dropped: where, and the openings that let clients in.
    Closed { what: String, openings: Vec<Opening> },
    /// Could not be told (not root, a tool failed, rules too involved to judge).
    Unknown(String),
}

impl Opening {
    pub fn port(&self) -> u16 {
        match self {
            Opening::Firewalld(entry) => entry.port,
            Opening::Nftables(rule) => rule.port,
        }
    }

    /// Where it is, in words.
    pub fn describe(&self) -> String {
        match self {
            Opening::Firewalld(entry) => format!("{}/tcp in firewalld zone {}", entry.port, entry.zone),
            Opening::Nftables(rule) => format!(
                "{}/tcp in nftables chain {} {} {}",
                rule.port, rule.family, rule.table, rule.chain
            ),
        }
    }

    /// The commands that open it, as the user would type them.
    pub fn command(&self) -> String {
        match self {
            Opening::Firewalld(entry) => entry.command("--add-port"),
            Opening::Nftables(rule) => rule.command(),
        }
    }

    /// Opens it; the opening as made (an nftables rule with its handle), for the record.
    pub fn open(&self) -> Result<Opening> {
        match self {
            Opening::Firewalld(entry) => entry.change("--add-port").map(|()| self.clone()),
            Opening::Nftables(rule) => rule.insert().map(Opening::Nftables),
        }
    }

    /// Where it opens: the opening without what only its making told (an nftables handle).
    pub fn place(&self) -> Opening {
        match self {
            Opening::Nftables(rule) => Opening::Nftables(nftables::Rule {
                handle: None,
                ..rule.clone()
            }),
            other => other.clone(),
        }
    }

    /// Takes the opening back; one that is already gone is no error.
    pub fn close(&self) -> Result<()> {
        let closed = match self {
            Opening::Firewalld(entry) => entry.change("--remove-port"),
            Opening::Nftables(rule) => rule.delete(),
        };
        closed.map_err(|e| {
            Error::runtime(format!(
                "Could not close {} in the firewall ({}): run registry-up down again once that is fixed, or close \
                 it by hand and delete firewall.json in the config folder.",
                self.describe(),
                e.message
            ))
        })
    }
}

/// The openings' commands, one per line, indented.
pub fn commands(openings: &[Opening]) -> String {
    openings
        .iter()
        .map(|o| format!("  {}", o.command()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether clients on other hosts reach TCP `port` on the addresses in `listen`; `pod` tags the rules
/// registry-up would add.
pub fn check(port: u16, listen: &Listen, pod: &str, host: &HostFacts) -> Verdict {
    // Clients on other hosts come in over the interfaces nginx answers on, other than loopback.
    let mut interfaces: Vec<&str> = host
        .interfaces
        .iter()
        .filter(|(name, ip)| name != "lo" && !ip.is_loopback() && listen.covers(*ip))
        .map(|(name, _)| name.as_str())
        .collect();
    interfaces.sort();
    interfaces.dedup();
    if interfaces.is_empty() {
        return Verdict::Open("nginx answers on loopback only: no other host can reach it, firewall or not".into());
    }
    if firewalld::running() {
        return firewalld::check(port, &interfaces);
    }
    nftables::check(port, listen, &format!("registry-up {pod}"), host.root)
}

/// Runs `program args…`; its trimmed standard output, or an error with its standard error.
fn tool(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| Error::runtime(format!("Could not run {program} ({e}).")))?;
    if !out.status.success() {
        return Err(Error::runtime(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The openings registry-up made for the appliance in `config_dir`.
pub fn opened(config_dir: &Path) -> Result<Vec<Opening>> {
    let path = config_dir.join(crate::layout::FIREWALL);
    match crate::host::read_optional(&path)? {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(&text).map_err(|e| {
            Error::usage(format!(
                "{} cannot be read ({e}): close the ports it names by hand, then remove it.",
                path.display()
            ))
        }),
    }
}

/// Records `openings` (none: removes the record).
pub fn record(config_dir: &Path, openings: &[Opening]) -> Result<()> {
    let path = config_dir.join(crate::layout::FIREWALL);
    if openings.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::runtime(crate::host::io_failed("remove", &path, &e)))
            }
            _ => Ok(()),
        };
    }
    let mut text = serde_json::to_string_pretty(openings).expect("openings serialise");
    text.push('\n');
    crate::atomic::write_atomic(&path, text.as_bytes(), crate::layout::PUBLIC)
}

/// Closes every recorded opening, and the record with them; returns what was closed.
pub fn close_all(config_dir: &Path) -> Result<Vec<Opening>> {
    let openings = opened(config_dir)?;
    for (i, opening) in openings.iter().enumerate() {
        if let Err(e) = opening.close() {
            // Keep the record of what is still open, so that a later run can close it.
            record(config_dir, &openings[i..])?;
            return Err(e);
        }
    }
    record(config_dir, &[])?;
    Ok(openings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_appliance_on_loopback_only_needs_no_opening() {
        let mut host = HostFacts::fixed(true, false, false);
        host.interfaces.push(("eth0".into(), "10.0.0.5".parse().unwrap()));
        let listen = Listen::Only(vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()]);
        assert!(matches!(check(8443, &listen, "pod", &host), Verdict::Open(_)));
    }

    #[test]
    fn openings_round_trip_through_their_record() {
        let dir = tempfile::tempdir().unwrap();
        let openings = vec![Opening::Firewalld(firewalld::Entry {
            zone: "public".into(),
            port: 8443,
            runtime: true,
            permanent: false,
        })];
        record(dir.path(), &openings).unwrap();
        assert_eq!(opened(dir.path()).unwrap(), openings);
        assert_eq!(openings[0].command(), "firewall-cmd --zone=public --add-port=8443/tcp");
        record(dir.path(), &[]).unwrap();
        assert!(opened(dir.path()).unwrap().is_empty());
        assert!(!dir.path().join(crate::layout::FIREWALL).exists());
    }
}
