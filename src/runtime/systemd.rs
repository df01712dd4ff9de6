//! The systemctl CLI, for hosts where systemd runs as init.

use std::process::Command;

use crate::error::{Error, Result};

/// `systemctl`, or `systemctl --user` for a rootless appliance.
fn command(user: bool) -> Command {
    let mut cmd = Command::new("systemctl");
    if user {
        cmd.arg("--user");
    }
    cmd
}

fn systemctl(user: bool, args: &[&str]) -> Result<()> {
    let out = command(user)
        .args(args)
        .output()
        .map_err(|e| Error::runtime(format!("Could not run systemctl ({e}): is systemd installed?")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::runtime(format!(
            "`systemctl {}` failed: {}. See `journalctl -xeu` for the unit, fix the cause and run registry-up again.",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn is_active(user: bool, unit: &str) -> bool {
    command(user)
        .args(["is-active", "--quiet", unit])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Makes systemd run the unit now and at boot. `unit_changed`: the unit file was written;
/// `restart`: files the pod reads changed, so a running pod must start again.
pub fn start(user: bool, unit: &str, unit_changed: bool, restart: bool) -> Result<()> {
    if unit_changed {
        systemctl(user, &["daemon-reload"])?;
    }
    let was_active = is_active(user, unit);
    systemctl(user, &["enable", "--now", unit])?;
    if was_active && restart {
        systemctl(user, &["restart", unit])?;
    }
    Ok(())
}

/// `active`, `inactive`, `failed`, … as systemctl says.
pub fn state(user: bool, unit: &str) -> String {
    command(user)
        .args(["is-active", unit])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Whether lingering is on for `user`, so their units run without a login (and start at boot).
pub fn linger_enabled(user: &str) -> bool {
    std::path::Path::new("/var/lib/systemd/linger").join(user).exists()
}

/// `loginctl enable-linger USER`.
pub fn enable_linger(user: &str) -> Result<()> {
    let out = Command::new("loginctl")
        .args(["enable-linger", user])
        .output()
        .map_err(|e| Error::runtime(format!("Could not run loginctl ({e}): is systemd-logind installed?")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::runtime(format!(
            "loginctl enable-linger {user} failed: {}. As root run: loginctl enable-linger {user}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The ways systemd can keep one pod running, and the files behind them.
pub struct Units {
    user: bool,
    unit: String,
    unit_file: std::path::PathBuf,
    quadlet_file: std::path::PathBuf,
}

impl Units {
    pub fn new(user: bool, unit: &str, pod: &str) -> Self {
        Units {
            user,
            unit: unit.to_string(),
            unit_file: crate::paths::unit_dir().join(unit),
            quadlet_file: crate::paths::quadlet_dir().join(format!("{pod}.kube")),
        }
    }

    /// Removes the kinds not in use; returns what was removed, for the report.
    pub fn remove_all_but(&self, keep: crate::render::Service) -> Result<Option<&'static str>> {
        use crate::render::Service;
        let mut removed = None;
        if keep != Service::SystemdUnit && self.unit_file.exists() {
            if crate::sys::systemd_running() {
                let _ = systemctl(self.user, &["disable", "--now", &self.unit]);
            }
            remove_file(&self.unit_file)?;
            removed = Some("classic systemd unit");
        }
        if keep != Service::Quadlet && self.quadlet_file.exists() {
            if crate::sys::systemd_running() {
                let _ = systemctl(self.user, &["stop", &self.unit]);
            }
            remove_file(&self.quadlet_file)?;
            removed = Some("Quadlet");
        }
        if removed.is_some() && crate::sys::systemd_running() {
            systemctl(self.user, &["daemon-reload"])?;
        }
        Ok(removed)
    }

    /// A classic unit: enabled and started; restarted when the pod must pick up changes.
    pub fn start_unit(&self, changed: bool, restart: bool) -> Result<()> {
        start(self.user, &self.unit, changed, restart)
    }

    /// A unit Quadlet generates: it cannot be enabled (the generator applies [Install] itself), only
    /// started; daemon-reload runs the generator again after the .kube file changed.
    pub fn start_generated(&self, changed: bool, restart: bool) -> Result<()> {
        if changed {
            systemctl(self.user, &["daemon-reload"])?;
        }
        if is_active(self.user, &self.unit) {
            if restart {
                systemctl(self.user, &["restart", &self.unit])?;
            }
            Ok(())
        } else {
            systemctl(self.user, &["start", &self.unit])
        }
    }

    /// `down`: stop and remove whichever kind is installed.
    pub fn remove_any(&self) -> Result<()> {
        self.remove_all_but(crate::render::Service::Direct).map(|_| ())
    }
}

fn remove_file(path: &std::path::Path) -> Result<()> {
    std::fs::remove_file(path)
        .map_err(|e| Error::runtime(format!("Cannot remove {} ({e}): run as root.", path.display())))
}
