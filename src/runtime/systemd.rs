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

/// Stops and disables the unit, then removes its file. Missing units are fine: `down` is idempotent.
pub fn remove(user: bool, unit: &str, unit_file: &std::path::Path) -> Result<()> {
    if unit_file.exists() {
        let _ = systemctl(user, &["disable", "--now", unit]);
        std::fs::remove_file(unit_file)
            .map_err(|e| Error::runtime(format!("Cannot remove {} ({e}): run as root.", unit_file.display())))?;
        systemctl(user, &["daemon-reload"])?;
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
