//! The systemctl CLI, for hosts where systemd runs as init.

use std::process::Command;

use crate::error::{Error, Result};

fn systemctl(args: &[&str]) -> Result<()> {
    let out = Command::new("systemctl")
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

fn is_active(unit: &str) -> bool {
    Command::new("systemctl")
        .args(["is-active", "--quiet", unit])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Makes systemd run the unit now and at boot. `unit_changed`: the unit file was written;
/// `restart`: files the pod reads changed, so a running pod must start again.
pub fn start(unit: &str, unit_changed: bool, restart: bool) -> Result<()> {
    if unit_changed {
        systemctl(&["daemon-reload"])?;
    }
    let was_active = is_active(unit);
    systemctl(&["enable", "--now", unit])?;
    if was_active && restart {
        systemctl(&["restart", unit])?;
    }
    Ok(())
}

/// Stops and disables the unit, then removes its file. Missing units are fine: `down` is idempotent.
pub fn remove(unit: &str, unit_file: &std::path::Path) -> Result<()> {
    if unit_file.exists() {
        let _ = systemctl(&["disable", "--now", unit]);
        std::fs::remove_file(unit_file)
            .map_err(|e| Error::runtime(format!("Cannot remove {} ({e}): run as root.", unit_file.display())))?;
        systemctl(&["daemon-reload"])?;
    }
    Ok(())
}

/// `active`, `inactive`, `failed`, … as systemctl says.
pub fn state(unit: &str) -> String {
    Command::new("systemctl")
        .args(["is-active", unit])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
