//! `registry-up render --out DIR`: the same files as `up`, into DIR, as they would be on the host, for
//! review or for configuration management. Nothing outside DIR is touched.

use crate::cli::{RenderArgs, SystemdChoice};
use crate::desired::desired;
use crate::error::Result;
use crate::host::HostFacts;
use crate::layout;
use crate::pki::Renew;
use crate::plan::{self, WantedDir};
use crate::secrets;
use crate::settings::{self, Settings};
use crate::state::Service;

pub fn command(args: &RenderArgs, host: &HostFacts) -> Result<()> {
    let settings = Settings::resolve(&args.setup, None, host)?;
    let out_dir = &args.out;
    settings::check_writable(&[(out_dir, "--out")])?;
    let podman = crate::host::which("podman")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/usr/bin/podman".into());
    let password = args
        .setup
        .auth_password_stdin
        .then(secrets::new_password_from_stdin)
        .transpose()?;
    // Without a host to look at, --systemd auto renders the classic unit (it works everywhere).
    let service = match args.setup.systemd {
        SystemdChoice::Quadlet => Service::Quadlet,
        SystemdChoice::None => Service::Direct,
        SystemdChoice::Auto | SystemdChoice::Unit => Service::SystemdUnit,
    };
    let s3_key = match &settings.s3 {
        Some(_) => Some(crate::s3::read_key(settings.s3_credentials.as_deref(), out_dir)?.0),
        None => None,
    };
    let given = crate::desired::Given {
        password,
        s3_key,
        http_secret: None,
    };
    let desired = desired(&settings, out_dir, &podman, service, given, Renew::IfNeeded)?;
    let dirs = layout::config_folders(true, true, settings.s3.is_some())
        .into_iter()
        .map(|rel| WantedDir {
            path: out_dir.join(rel),
            mode: layout::PRIVATE_DIR,
            enforce_mode: !rel.is_empty(),
        })
        .collect();
    let files = desired.files.into_iter().map(|f| (out_dir.join(&f.rel), f)).collect();
    let plan = plan::plan(dirs, files)?;
    crate::apply::apply(&plan)?;
    println!(
        "Wrote the files for {} into {}:",
        settings.registry_host(),
        out_dir.display()
    );
    print!("{plan}");
    println!(
        "On the host, the files below {} go to {}, and {} to {}.",
        out_dir.display(),
        settings.config_dir.display(),
        settings.unit_name(),
        host.unit_dir().display()
    );
    Ok(())
}
