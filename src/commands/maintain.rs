//! `registry-up maintain`: what the maintenance timer runs. gc first; then, while the data filesystem
//! stays at or above the critical watermark, the appliance is read-only (nginx answers pushes with a
//! message saying why; pulls go on), and read-write again once a run finds it below.

use std::path::Path;

use crate::cli::MaintainArgs;
use crate::disk::{Level, Usage};
use crate::error::{Error, ExitStatus, Result};
use crate::host::HostFacts;
use crate::layout;
use crate::render::{self, ReadOnly};
use crate::runtime::podman::Podman;

pub fn command(args: &MaintainArgs, rt: &tokio::runtime::Runtime, host: &HostFacts) -> Result<ExitStatus> {
    let dir = &args.appliance.config_dir;
    let (full, message, collected) = {
        let _lock = crate::lock::ApplianceLock::take(dir, host, crate::lock::WAIT)?;
        let (settings, data_dir) = super::gc::installed(dir, host, "maintain")?;
        // Read-only first when the disk is already that full: whatever gc then does (or fails to do),
        // pushes stop filling it.
        let was_full = disk_full_now(&settings);
        let first = decide(&settings, &data_dir, was_full)?;
        let collected = super::gc::collect(args.drain_timeout, &settings, &data_dir);
        let full = decide(&settings, &data_dir, disk_full_now(&settings))?;
        let usage = usage(&data_dir)?;
        let marks = settings.watermarks;
        let freed = match &collected {
            Ok(freed) => format!("gc freed {freed}."),
            Err(e) => format!("gc could not run: {}", e.message),
        };
        let message = if full {
            format!(
                "{freed} The data filesystem is {usage}: at or above the critical watermark of {} %, so the appliance \
                 is read-only (pulls work, pushes are refused with a message saying why) until a run finds it below. \
                 Free space (delete images, then registry-up gc) or grow the filesystem.",
                marks.critical
            )
        } else {
            let level = match marks.level(&usage) {
                Level::High => format!(", above the high watermark of {} %: free space soon", marks.high),
                _ => String::new(),
            };
            let back = if was_full || first { "; read-write again" } else { "" };
            format!("{freed} The data filesystem is {usage}{level}{back}.")
        };
        (full, message, collected)
    };
    // Read-only for a full disk, the round trip of verify cannot push: the run has failed anyway.
    let verified = if full || collected.is_err() {
        ExitStatus::Failed
    } else {
        super::gc::verify_deep(&args.appliance, "after the maintenance run", None, rt, host)?
    };
    println!("\n{message}");
    Ok(verified)
}

fn usage(data_dir: &Path) -> Result<Usage> {
    Usage::of(data_dir).ok_or_else(|| {
        Error::runtime(format!(
            "Cannot read the use of the filesystem holding {}: check that it is mounted.",
            data_dir.display()
        ))
    })
}

/// Whether nginx runs the disk-full read-only conf now.
fn disk_full_now(settings: &crate::settings::Settings) -> bool {
    let conf = settings.config_dir.join(layout::NGINX_CONF);
    std::fs::read_to_string(conf).is_ok_and(|t| t.contains(ReadOnly::DiskFull.marker()))
}

/// Read-only while the data filesystem is at or above the critical watermark, read-write below it;
/// switches nginx when that differs from `now_full`. Returns whether it is full (read-only) now.
fn decide(settings: &crate::settings::Settings, data_dir: &Path, now_full: bool) -> Result<bool> {
    let full = settings.watermarks.level(&usage(data_dir)?) == Level::Critical;
    if full != now_full {
        let conf = settings.config_dir.join(layout::NGINX_CONF);
        let text = render::nginx_conf(settings, full.then_some(ReadOnly::DiskFull));
        crate::atomic::write_atomic(&conf, text.as_bytes(), layout::PUBLIC)?;
        let nginx = render::container_name(&settings.pod_name, render::NGINX_CONTAINER);
        Podman::find()?.reload_nginx(&nginx)?;
    }
    Ok(full)
}
