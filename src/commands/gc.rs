//! `registry-up gc`: frees what nothing tagged needs. nginx turns the appliance read-only (reads pass,
//! writes get a clear 405) and gc waits until every request accepted before has finished; the storage is
//! then collected on the host (src/gc.rs), nginx goes back to read-write, and `verify --deep` proves that
//! every tag, manifest and blob that should be there is.
//!
//! The registry is not restarted: its config has no blob descriptor cache (`storage.cache`), the cache
//! that goes stale after a collection (distribution#4569), so nothing in it outlives the data; and a
//! restart would fail the pulls in flight. Killed at any moment, gc leaves at worst the read-only conf,
//! which the next `gc` or `up` replaces.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::cli::{GcArgs, SetupArgs, VerifyArgs};
use crate::error::{Error, ExitStatus, Result};
use crate::host::HostFacts;
use crate::layout;
use crate::progress::Reporter;
use crate::render;
use crate::runtime::podman::Podman;
use crate::settings::Settings;

pub fn command(args: &GcArgs, rt: &tokio::runtime::Runtime, host: &HostFacts) -> Result<ExitStatus> {
    let dir = &args.appliance.config_dir;
    let freed = {
        let _lock = crate::lock::ApplianceLock::take(dir, host, crate::lock::WAIT)?;
        let state = crate::state::installed(dir)?;
        let data_dir = PathBuf::from(&state.data_dir);
        if args.dry_run {
            let plan = crate::gc::plan(&data_dir, SystemTime::now())?;
            println!("gc would free {}.", plan.summary());
            for (repository, digest) in &plan.manifests {
                println!("  manifest {repository}@{digest}");
            }
            println!("Nothing was changed (--dry-run).");
            return Ok(ExitStatus::Success);
        }
        let setup = SetupArgs {
            config_dir: dir.clone(),
            ..Default::default()
        };
        let settings = Settings::resolve(&setup, Some(&state), host)?;
        collect(args, &settings, &data_dir)?
    };
    // The lock is let go: verify takes it itself.
    let verify = VerifyArgs {
        domain: None,
        port: None,
        ca: None,
        appliance: args.appliance.clone(),
        user: None,
        deep: true,
        jobs: 4,
        json: false,
        strict: false,
        timeout: 120,
        size: "1MiB".into(),
    };
    println!("\nverify --deep after the collection:");
    let status = super::verify::command(&verify, rt, host)?;
    println!("\ngc freed {freed}.");
    Ok(status)
}

/// Read-only, collect, read-write again (also when collecting failed); what was freed, in words.
fn collect(args: &GcArgs, settings: &Settings, data_dir: &std::path::Path) -> Result<String> {
    let out = Reporter::new();
    let podman = Podman::find()?;
    // gc switches nginx and proves the result through it: a pod that does not run is started first.
    if !podman.pod_status(&settings.pod_name)?.is_some_and(|s| s.healthy()) {
        return Err(Error::usage(format!(
            "The pod {} is not running, so gc can neither make it read-only nor verify it afterwards: start it with \
             registry-up up, then run registry-up gc.",
            settings.pod_name
        )));
    }
    let nginx = render::container_name(&settings.pod_name, render::NGINX_CONTAINER);
    let conf = settings.config_dir.join(layout::NGINX_CONF);
    let switch = |maintenance: bool| -> Result<bool> {
        let text = render::nginx_conf(settings, maintenance);
        crate::apply::write_atomic(&conf, text.as_bytes(), layout::PUBLIC)?;
        podman.reload_nginx_drained(&nginx, Duration::from_secs(args.drain_timeout))
    };
    let entered = out.step("read-only", || {
        let drained = switch(true)?;
        Ok((
            drained,
            if drained {
                "writes get 405 from nginx, reads pass; every request begun before has finished".to_string()
            } else {
                format!("a request begun before is still running after {} s", args.drain_timeout)
            },
        ))
    });
    let collected = match entered {
        Ok(true) => out.step("collect", || {
            let before = crate::host::tree_size(data_dir);
            let plan = crate::gc::plan(data_dir, SystemTime::now())?;
            crate::gc::apply(data_dir, &plan)?;
            let measured = before.saturating_sub(crate::host::tree_size(data_dir));
            let words = format!(
                "{} ({measured} bytes: {} blobs, {} manifests, {} uploads)",
                indicatif::HumanBytes(measured),
                plan.blobs.len(),
                plan.manifests.len(),
                plan.uploads.len()
            );
            Ok((words.clone(), format!("removed {}", plan.summary())))
        }),
        Ok(false) => Err(Error::runtime(format!(
            "A request that began before gc (a long push?) was still running after {} s, so nothing was collected: \
             run registry-up gc again later, or give it longer with --drain-timeout.",
            args.drain_timeout
        ))),
        Err(e) => Err(e),
    };
    // Whatever happened above, writes are let in again.
    out.step("read-write", || {
        switch(false)?;
        Ok(((), "writes pass again".to_string()))
    })?;
    collected
}
