//! firewalld: the zones of the interfaces nginx answers on. A port is opened at runtime and in the
//! permanent configuration as two calls, not `--permanent` and `--reload`: a reload would also throw away
//! runtime rules someone else added.

use std::process::Command;

use serde::{Deserialize, Serialize};

use super::{tool, Opening, Verdict};
use crate::error::Result;

/// The port in a zone: at runtime and in the permanent configuration, each only where it was not there
/// already (so that closing it takes back no one else's entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub zone: String,
    pub port: u16,
    pub runtime: bool,
    pub permanent: bool,
}

pub fn running() -> bool {
    crate::host::which("firewall-cmd").is_some()
        && Command::new("firewall-cmd")
            .arg("--state")
            .output()
            .is_ok_and(|o| o.status.success())
}

fn firewall_cmd(args: &[&str]) -> Result<String> {
    tool("firewall-cmd", args)
}

/// Whether the zone of each of `interfaces` lets TCP `port` in; the openings for those that do not.
pub fn check(port: u16, interfaces: &[&str]) -> Verdict {
    let mut zones: Vec<String> = Vec::new();
    for interface in interfaces {
        let zone = match firewall_cmd(&[&format!("--get-zone-of-interface={interface}")]) {
            Ok(zone) => zone,
            // An interface in no zone is in the default zone.
            Err(_) => match firewall_cmd(&["--get-default-zone"]) {
                Ok(zone) => zone,
                Err(e) => return Verdict::Unknown(e.message),
            },
        };
        if !zones.contains(&zone) {
            zones.push(zone);
        }
    }
    let mut closed = Vec::new();
    for zone in &zones {
        match zone_allows(zone, port) {
            Err(e) => return Verdict::Unknown(e.message),
            Ok(true) => {}
            Ok(false) => {
                // Already in the permanent configuration (added without a reload): only runtime is missing.
                let spec = format!("--query-port={port}/tcp");
                let permanent = firewall_cmd(&["--permanent", &format!("--zone={zone}"), &spec]).is_ok();
                closed.push(Opening::Firewalld(Entry {
                    zone: zone.clone(),
                    port,
                    runtime: true,
                    permanent: !permanent,
                }));
            }
        }
    }
    if closed.is_empty() {
        return Verdict::Open(format!("firewalld allows {port}/tcp in zone {}", zones.join(", ")));
    }
    let shut: Vec<&str> = zones
        .iter()
        .filter(|z| {
            closed
                .iter()
                .any(|o| matches!(o, Opening::Firewalld(e) if e.zone == **z))
        })
        .map(String::as_str)
        .collect();
    Verdict::Closed {
        what: format!("firewalld drops {port}/tcp in zone {}", shut.join(", ")),
        openings: closed,
    }
}

/// Whether runtime zone `zone` lets TCP `port` in: an ACCEPT target, the port among its ports, or among
/// the ports of one of its services (https for 443, say).
fn zone_allows(zone: &str, port: u16) -> Result<bool> {
    let info = firewall_cmd(&[&format!("--info-zone={zone}")])?;
    if field(&info, "target") == "ACCEPT" || ports_cover(&field(&info, "ports"), port) {
        return Ok(true);
    }
    for service in field(&info, "services").split_whitespace() {
        let about = firewall_cmd(&[&format!("--info-service={service}")])?;
        if ports_cover(&field(&about, "ports"), port) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The value of `name:` in `firewall-cmd --info-*` output.
fn field(info: &str, name: &str) -> String {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{name}:")))
        .map(str::trim)
        .unwrap_or_default()
        .to_string()
}

/// Whether a firewalld port list (`80/tcp 9000-9100/tcp 53/udp`) holds TCP `port`.
fn ports_cover(ports: &str, port: u16) -> bool {
    ports.split_whitespace().any(|spec| {
        let Some((range, "tcp")) = spec.split_once('/') else {
            return false;
        };
        let (low, high) = range.split_once('-').unwrap_or((range, range));
        matches!((low.parse::<u16>(), high.parse::<u16>()), (Ok(l), Ok(h)) if (l..=h).contains(&port))
    })
}

impl Entry {
    /// The commands for `action` (`--add-port`, `--remove-port`), at runtime and/or permanently.
    pub fn command(&self, action: &str) -> String {
        let one = |permanent: bool| {
            let flag = if permanent { "--permanent " } else { "" };
            format!("firewall-cmd {flag}--zone={} {action}={}/tcp", self.zone, self.port)
        };
        let mut commands = Vec::new();
        if self.runtime {
            commands.push(one(false));
        }
        if self.permanent {
            commands.push(one(true));
        }
        commands.join(" && ")
    }

    /// Runs `action` at runtime and/or permanently. With firewalld stopped there is no runtime
    /// configuration, and the permanent one is changed with firewall-offline-cmd.
    pub fn change(&self, action: &str) -> Result<()> {
        let (zone, spec) = (format!("--zone={}", self.zone), format!("{action}={}/tcp", self.port));
        if !running() {
            return if self.permanent {
                tool("firewall-offline-cmd", &[&zone, &spec]).map(|_| ())
            } else {
                Ok(())
            };
        }
        // firewall-cmd warns NOT_ENABLED (or ALREADY_ENABLED) and exits 0 for a port already so.
        if self.runtime {
            firewall_cmd(&[&zone, &spec])?;
        }
        if self.permanent {
            firewall_cmd(&["--permanent", &zone, &spec])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lists_hold_ports_and_ranges_of_tcp_only() {
        let info = "public (active)\n  target: default\n  services: ssh\n  ports: 80/tcp 9000-9100/tcp 53/udp\n";
        let ports = field(info, "ports");
        assert!(ports_cover(&ports, 80) && ports_cover(&ports, 9050));
        assert!(!ports_cover(&ports, 53) && !ports_cover(&ports, 8443));
        assert_eq!(field(info, "target"), "default");
        assert_eq!(field(info, "services"), "ssh");
    }

    #[test]
    fn commands_name_only_what_is_missing() {
        let entry = |zone: &str, port, permanent| Entry {
            zone: zone.into(),
            port,
            runtime: true,
            permanent,
        };
        assert_eq!(
            entry("public", 8443, true).command("--add-port"),
            "firewall-cmd --zone=public --add-port=8443/tcp && firewall-cmd --permanent --zone=public --add-port=8443/tcp"
        );
        assert_eq!(
            entry("dmz", 443, false).command("--add-port"),
            "firewall-cmd --zone=dmz --add-port=443/tcp"
        );
    }
}
