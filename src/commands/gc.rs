//! `registry-up gc`: frees what nothing tagged needs. nginx turns the appliance read-only (reads pass,
//! writes get a clear 405) and gc waits until every request accepted before has finished; the storage is
//! then collected on the host (src/gc.rs), nginx goes back to read-write, and `verify --deep` proves that
//! every tag, manifest and blob that should be there is.
//!
//! The registry is not restarted: its config has no blob descriptor cache (`storage.cache`), the cache
//! that goes stale after a collection (distribution#4569), so nothing in it outlives the data; and a
//! restart would fail the pulls in flight. Killed at any moment, gc leaves at worst the read-only conf,
//! which the next `gc` or `up` replaces.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::cli::{ApplianceDir, GcArgs, SetupArgs, VerifyArgs};
use crate::error::{Error, ExitStatus, Result};
use crate::host::HostFacts;
use crate::layout;
use crate::progress::Reporter;
use crate::render;
use crate::runtime::podman::Podman;
use crate::settings::Settings;

pub fn command(args: &GcArgs, rt: &tokio::runtime::Runtime, host: &HostFacts) -> Result<ExitStatus> {
    let dir = &args.appliance.config_dir;
    let state = crate::state::installed(dir)?;
    if state.s3.is_some() {
        return super::gc_site::command(args, rt, host);
    }
    let freed = {
        let _lock = crate::lock::ApplianceLock::take(dir, host, crate::lock::WAIT)?;
        let (settings, data_dir) = installed(dir, host, "gc")?;
        if args.dry_run {
            let plan = crate::gc::plan(&data_dir, SystemTime::now())?;
            println!("gc would free {}.", plan.summary());
            for (repository, digest) in &plan.manifests {
                println!("  manifest {repository}@{digest}");
            }
            println!("Nothing was changed (--dry-run).");
            return Ok(ExitStatus::Success);
        }
        collect(args.drain_timeout, &settings, &data_dir)?
    };
    // The lock is let go: verify takes it itself.
    let status = verify_deep(&args.appliance, "after the collection", None, rt, host)?;
    println!("\ngc freed {freed}.");
    Ok(status)
}

/// The installed appliance's settings and data folder, for `command` (gc, backup, maintain), which works
/// on the data folder: refused for an appliance on S3 storage.
pub fn installed(dir: &std::path::Path, host: &HostFacts, command: &str) -> Result<(Settings, PathBuf)> {
    let state = crate::state::installed(dir)?;
    if state.s3.is_some() {
        return Err(crate::error::Error::usage(format!(
            "registry-up {command} works on images kept in a folder on this host, and this appliance keeps them \
             in {}: not done yet for S3 storage (the object store's own replication and snapshots keep its data).",
            state.storage()
        )));
    }
    // A data folder another appliance claims too: its nginx would take pushes this one cannot stop.
    crate::owned::check_claimed_by(Path::new(&state.data_dir), &crate::owned::appliance_id(dir))?;
    let setup = SetupArgs {
        config_dir: dir.to_path_buf(),
        ..Default::default()
    };
    Ok((
        Settings::resolve(&setup, Some(&state), host)?,
        PathBuf::from(&state.data_dir),
    ))
}

/// `registry-up verify --deep` of the appliance, printed; its verdict.
pub fn verify_deep(
    appliance: &ApplianceDir,
    after: &str,
    baseline: Option<std::path::PathBuf>,
    rt: &tokio::runtime::Runtime,
    host: &HostFacts,
) -> Result<ExitStatus> {
    // Deep hashes every byte of the storage on this host: two minutes, and a second for each 50 MiB held
    // (a cold disk reads slower than the hashing, which does ~1 GiB/s warm on two cores).
    let held = crate::state::read_state(&appliance.config_dir)
        .ok()
        .flatten()
        .filter(|s| s.s3.is_none())
        .map_or(0, |s| crate::host::tree_size(Path::new(&s.data_dir)));
    let verify = VerifyArgs {
        domain: None,
        port: None,
        ca: None,
        appliance: appliance.clone(),
        user: None,
        deep: true,
        record: None,
        baseline,
        jobs: 4,
        json: false,
        strict: false,
        timeout: 120 + held / (50 << 20),
        size: "1MiB".into(),
    };
    println!("\nverify --deep {after}:");
    super::verify::command(&verify, rt, host)
}

/// Read-only, collect, read-write again (also when collecting failed); what was freed, in words.
pub fn collect(drain_timeout: u64, settings: &Settings, data_dir: &std::path::Path) -> Result<String> {
    // Not restarting the registry is safe only while it keeps no blob descriptor cache. (A registry that is
    // not there is while_read_only's to report.)
    let registry = render::container_name(&settings.pod_name, render::REGISTRY_CONTAINER);
    if let Some(cache) = Podman::find()?
        .container_env(&registry)
        .unwrap_or_default()
        .into_iter()
        .find(|e| e.starts_with("REGISTRY_STORAGE_CACHE"))
    {
        return Err(Error::usage(format!(
            "The registry container sets {cache}: a blob descriptor cache goes stale after a collection \
             (distribution#4569), and gc does not restart the registry: nothing was changed. Use a registry \
             image without it."
        )));
    }
    while_read_only(settings, render::ReadOnly::Gc, drain_timeout, |out| {
        out.step("collect", || {
            let before = crate::host::tree_size(data_dir);
            let plan = crate::gc::plan(data_dir, SystemTime::now())?;
            // A write the registry was still finishing when nginx let go of it shows as a changed reading.
            std::thread::sleep(Duration::from_millis(500));
            if crate::gc::plan(data_dir, SystemTime::now())?.fingerprint != plan.fingerprint {
                return Err(Error::runtime(
                    "The registry stored a tag or manifest while gc was deciding, so nothing was removed: run \
                     registry-up gc again.",
                ));
            }
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
        })
    })
}

/// Runs `work` with the appliance read-only through nginx for `why` (reads pass, writes get 405 saying
/// why), once every request begun before has finished; then back to how it was (read-write, or a
/// disk-full read-only), also when `work` failed. The `gc-in-progress` file marks the time between, for
/// `up` and `status` should this be killed.
pub fn while_read_only<T>(
    settings: &Settings,
    why: render::ReadOnly,
    drain_timeout: u64,
    work: impl FnOnce(&Reporter) -> Result<T>,
) -> Result<T> {
    let out = Reporter::new();
    let podman = Podman::find()?;
    // The switch goes through nginx, and the result is proven through it: the pod must run.
    if !podman.pod_status(&settings.pod_name)?.is_some_and(|s| s.healthy()) {
        return Err(Error::usage(format!(
            "The pod {} is not running, so it can neither be made read-only nor verified afterwards: start it \
             with registry-up up, then run this again.",
            settings.pod_name
        )));
    }
    let nginx = render::container_name(&settings.pod_name, render::NGINX_CONTAINER);
    let conf = settings.config_dir.join(layout::NGINX_CONF);
    let marker = settings.config_dir.join(layout::GC_IN_PROGRESS);
    // A disk-full read-only (the maintenance run's) is what it goes back to: that is for maintain to lift.
    let resting = std::fs::read_to_string(&conf)
        .is_ok_and(|t| t.contains(render::ReadOnly::DiskFull.marker()))
        .then_some(render::ReadOnly::DiskFull);
    let write_conf = |read_only: Option<render::ReadOnly>| {
        let text = render::nginx_conf(settings, read_only);
        crate::atomic::write_atomic(&conf, text.as_bytes(), layout::PUBLIC)
    };
    crate::atomic::write_atomic(
        &marker,
        b"registry-up gc (or backup) is running, or was interrupted\n",
        layout::PUBLIC,
    )?;
    let entered = out.step("read-only", || {
        write_conf(Some(why))?;
        let drained = podman.reload_nginx_drained(&nginx, Duration::from_secs(drain_timeout))?;
        let detail = if drained {
            "writes get 405 from nginx, reads pass; every request begun before has finished".to_string()
        } else {
            format!("a request begun before is still running after {drain_timeout} s")
        };
        Ok((drained, detail))
    });
    let done = match entered {
        Ok(true) => work(&out),
        Ok(false) => Err(Error::runtime(format!(
            "A request that began before (a long push or pull) was still running after {drain_timeout} s, so \
             nothing was done: run it again later, or give it longer with --drain-timeout."
        ))),
        Err(e) => Err(e),
    };
    // Whatever happened above, writes are let in again (unless the disk was full before); pulls need not
    // be waited for.
    let label = if resting.is_some() {
        "back to disk-full read-only"
    } else {
        "read-write"
    };
    out.step(label, || {
        write_conf(resting)?;
        podman.reload_nginx(&nginx)?;
        std::fs::remove_file(&marker).map_err(|e| Error::runtime(crate::host::io_failed("remove", &marker, &e)))?;
        let detail = match resting {
            Some(_) => "pushes stay refused until registry-up maintain finds the disk below its critical watermark",
            None => "writes pass again",
        };
        Ok(((), detail.to_string()))
    })?;
    done
}
