//! The systemctl and loginctl CLIs, for hosts where systemd runs as init.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::host::HostFacts;
use crate::state::Service;

/// Which systemd instance: the system's, or the user's own (`systemctl --user`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    System,
    User,
}

/// `systemctl`, for one scope.
#[derive(Debug, Clone, Copy)]
pub struct Systemctl {
    pub scope: Scope,
}

impl Systemctl {
    /// The instance that runs an appliance: the user's for a rootless one.
    pub fn for_appliance(rootless: bool) -> Self {
        Systemctl {
            scope: if rootless { Scope::User } else { Scope::System },
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("systemctl");
        if self.scope == Scope::User {
            cmd.arg("--user");
        }
        cmd
    }

    /// Runs `systemctl ARGS`; a failure names the command, systemd's words and where to look.
    pub fn run(&self, args: &[&str]) -> Result<()> {
        let out = self.command().args(args).output().map_err(|e| {
            Error::runtime(format!(
                "Could not run systemctl ({e}): install systemd, or use --systemd none."
            ))
        })?;
        if out.status.success() {
            return Ok(());
        }
        let user = if self.scope == Scope::User { "--user " } else { "" };
        Err(Error::runtime(format!(
            "`systemctl {user}{}` failed: {}. See `journalctl {user}-xe` for the unit, fix the cause and run registry-up again.",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }

    pub fn is_active(&self, unit: &str) -> bool {
        self.command()
            .args(["is-active", "--quiet", unit])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `active`, `inactive`, `failed`, … as systemctl says.
    pub fn state(&self, unit: &str) -> String {
        self.command()
            .args(["is-active", unit])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|_| "unknown".into())
    }
}

/// Whether lingering is on for `user`, so their units run without a login (and start at boot).
pub fn linger_enabled(user: &str) -> bool {
    Path::new("/var/lib/systemd/linger").join(user).exists()
}

/// `loginctl enable-linger USER`.
pub fn enable_linger(user: &str) -> Result<()> {
    let out = Command::new("loginctl")
        .args(["enable-linger", user])
        .output()
        .map_err(|e| {
            Error::runtime(format!(
                "Could not run loginctl ({e}): install systemd (it brings loginctl), or start the pod by hand after each login."
            ))
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::runtime(format!(
            "loginctl enable-linger {user} failed: {}. As root run: loginctl enable-linger {user}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The maintenance timer of a pod (`timer`, and the `service` it starts) in `unit_dir`: enabled and started
/// when `on` (after a daemon-reload when `changed`), else stopped and its files removed (only files
/// registry-up wrote). Returns what was done, for the report.
pub fn maintenance_timer(
    systemctl: &Systemctl,
    unit_dir: &std::path::Path,
    [timer, service]: &[String; 2],
    on: bool,
    changed: bool,
) -> Result<Option<String>> {
    if on {
        if changed {
            systemctl.run(&["daemon-reload"])?;
        }
        systemctl.run(&["enable", "--now", timer])?;
        return Ok(Some(format!("{timer} enabled")));
    }
    let files: Vec<PathBuf> = [timer, service]
        .into_iter()
        .map(|u| unit_dir.join(u))
        .filter(|f| {
            crate::bounded::read_text(f, crate::bounded::SMALL).is_ok_and(|t| t.starts_with("# Written by registry-up"))
        })
        .collect();
    if files.is_empty() {
        return Ok(None);
    }
    // A timer that is not loaded cannot be stopped: nothing to do then.
    let _ = systemctl.run(&["disable", "--now", timer]);
    for file in &files {
        std::fs::remove_file(file).map_err(|e| Error::runtime(crate::host::io_failed("remove", file, &e)))?;
    }
    systemctl.run(&["daemon-reload"])?;
    Ok(Some(format!("{timer} removed")))
}

/// The ways systemd can keep one pod running, and the files behind them.
pub struct Units {
    systemctl: Systemctl,
    systemd_running: bool,
    unit: String,
    unit_file: PathBuf,
    quadlet_file: PathBuf,
}

impl Units {
    /// `rootless`: the appliance's (a user's units are `systemctl --user`); the folders are this host's.
    pub fn new(host: &HostFacts, rootless: bool, unit: &str, pod: &str) -> Self {
        Units {
            systemctl: Systemctl::for_appliance(rootless),
            systemd_running: host.systemd_running,
            unit: unit.to_string(),
            unit_file: host.unit_dir().join(unit),
            quadlet_file: host.quadlet_dir().join(crate::layout::quadlet_file(pod)),
        }
    }

    /// Removes the kinds not in use; returns what was removed, for the report.
    pub fn remove_all_but(&self, keep: Service) -> Result<Option<&'static str>> {
        let mut removed = None;
        for (kind, file, stop, name) in [
            (
                Service::SystemdUnit,
                &self.unit_file,
                &["disable", "--now"][..],
                "classic systemd unit",
            ),
            (Service::Quadlet, &self.quadlet_file, &["stop"][..], "Quadlet"),
        ] {
            if keep == kind || !file.exists() {
                continue;
            }
            if self.systemd_running {
                // A unit that is not loaded cannot be stopped: nothing to do then.
                let _ = self.systemctl.run(&[stop, &[self.unit.as_str()]].concat());
            }
            std::fs::remove_file(file).map_err(|e| Error::runtime(crate::host::io_failed("remove", file, &e)))?;
            removed = Some(name);
        }
        if removed.is_some() && self.systemd_running {
            self.systemctl.run(&["daemon-reload"])?;
        }
        Ok(removed)
    }

    /// A classic unit: enabled and started now and at boot; restarted when the pod must pick up changes.
    /// `changed`: the unit file was written.
    pub fn start_unit(&self, changed: bool, restart: bool) -> Result<()> {
        if changed {
            self.systemctl.run(&["daemon-reload"])?;
        }
        let was_active = self.systemctl.is_active(&self.unit);
        self.systemctl.run(&["enable", "--now", &self.unit])?;
        if was_active && restart {
            self.systemctl.run(&["restart", &self.unit])?;
        }
        Ok(())
    }

    /// A unit Quadlet generates: it cannot be enabled (the generator applies [Install] itself), only
    /// started; daemon-reload runs the generator again after the .kube file changed.
    pub fn start_generated(&self, changed: bool, restart: bool) -> Result<()> {
        if changed {
            self.systemctl.run(&["daemon-reload"])?;
        }
        if !self.systemctl.is_active(&self.unit) {
            self.systemctl.run(&["start", &self.unit])
        } else if restart {
            self.systemctl.run(&["restart", &self.unit])
        } else {
            Ok(())
        }
    }

    /// `down`: stop and remove whichever kind is installed.
    pub fn remove_any(&self) -> Result<()> {
        self.remove_all_but(Service::Direct).map(|_| ())
    }
}
