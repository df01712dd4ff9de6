//! `registry-up maintain`: what the maintenance timer runs. gc first; then, while the data filesystem
//! stays at or above the critical watermark, the appliance is read-only (nginx answers pushes with a
//! message saying why; pulls go on), and read-write again once a run finds it below.

use crate::cli::MaintainArgs;
use crate::disk::{Level, Usage};
use crate::error::{Error, ExitStatus, Result};
use crate::host::HostFacts;
use crate::layout;
use crate::render::{self, ReadOnly};
use crate::runtime::podman::Podman;

pub fn command(args: &MaintainArgs, rt: &tokio::runtime::Runtime, host: &HostFacts) -> Result<ExitStatus> {
    let dir = &args.appliance.config_dir;
    let (full, message) = {
        let _lock = crate::lock::ApplianceLock::take(dir, host, crate::lock::WAIT)?;
        let (settings, data_dir) = super::gc::installed(dir, host)?;
        let freed = super::gc::collect(300, &settings, &data_dir)?;
        let usage = Usage::of(&data_dir).ok_or_else(|| {
            Error::runtime(format!(
                "Cannot read the use of the filesystem holding {}: check that it is mounted.",
                data_dir.display()
            ))
        })?;
        let marks = settings.watermarks;
        let full = marks.level(&usage) == Level::Critical;
        let conf = dir.join(layout::NGINX_CONF);
        let was_full = std::fs::read_to_string(&conf).is_ok_and(|t| t.contains(ReadOnly::DiskFull.marker()));
        if full != was_full {
            let text = render::nginx_conf(&settings, full.then_some(ReadOnly::DiskFull));
            crate::apply::write_atomic(&conf, text.as_bytes(), layout::PUBLIC)?;
            let nginx = render::container_name(&settings.pod_name, render::NGINX_CONTAINER);
            Podman::find()?.reload_nginx(&nginx)?;
        }
        let message = if full {
            format!(
                "gc freed {freed}. The data filesystem is {usage}: at or above the critical watermark of {} %, so the \
                 appliance is read-only (pulls work, pushes are refused with a message saying why) until a run finds \
                 it below. Free space (delete images, then registry-up gc) or grow the filesystem.",
                marks.critical
            )
        } else {
            let level = match marks.level(&usage) {
                Level::High => format!(", above the high watermark of {} %: free space soon", marks.high),
                _ => String::new(),
            };
            let back = if was_full { "; read-write again" } else { "" };
            format!("gc freed {freed}. The data filesystem is {usage}{level}{back}.")
        };
        (full, message)
    };
    // Read-only for a full disk, the round trip of verify cannot push: the run has failed anyway.
    let verified = if full {
        ExitStatus::Failed
    } else {
        super::gc::verify_deep(&args.appliance, rt, host)?
    };
    println!("\n{message}");
    Ok(verified)
}
