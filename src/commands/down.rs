//! `registry-up down`: stop the pod and remove its unit, keeping data, certificates and settings.
//! `--purge` also deletes those, after a confirmation or `--yes`. Only files registry-up made are removed.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use crate::cli::DownArgs;
use crate::error::{Error, Result};
use crate::host::HostFacts;
use crate::runtime::podman::Podman;

pub fn command(args: &DownArgs, rt: &tokio::runtime::Runtime, host: &HostFacts) -> Result<()> {
    let _lock = crate::lock::ApplianceLock::take(&args.appliance.config_dir, host, crate::lock::WAIT)?;
    let state = match crate::state::read_state(&args.appliance.config_dir) {
        Ok(Some(state)) => state,
        Ok(None) => {
            println!(
                "No appliance is installed in {}: nothing to stop.",
                args.appliance.config_dir.display()
            );
            return Ok(());
        }
        // A damaged state.json must not keep a pod running: stop it by the name the user gives.
        Err(e) => {
            return match &args.pod_name {
                Some(pod) if !args.purge => stop_by_name(pod, host),
                _ => Err(Error::with(
                    e.status,
                    format!(
                        "{} To stop the pod anyway, give its name: registry-up down --pod-name NAME (podman pod ps \
                         lists it); --purge needs a readable state.json, to know what to delete.",
                        e.message
                    ),
                )),
            };
        }
    };
    if let Some(pod) = args.pod_name.as_ref().filter(|p| **p != state.pod_name) {
        return Err(Error::usage(format!(
            "--pod-name {pod} is not the pod of the appliance in {} ({}): leave out --pod-name.",
            args.appliance.config_dir.display(),
            state.pod_name
        )));
    }
    let data_dir = Path::new(&state.data_dir);
    if args.purge && !args.yes && !confirm(&args.appliance.config_dir, &state)? {
        return Err(Error::usage(
            "Nothing was deleted: --purge needs a yes at the prompt, or --yes.",
        ));
    }
    let unit = crate::layout::unit_name(&state.pod_name);
    crate::runtime::systemd::Units::new(host, state.rootless, &unit, &state.pod_name).remove_any()?;
    if host.systemd_running {
        let systemctl = crate::runtime::systemd::Systemctl::for_appliance(state.rootless);
        let units = crate::layout::maintenance_units(&state.pod_name);
        crate::runtime::systemd::maintenance_timer(&systemctl, &host.unit_dir(), &units, false, false)?;
    }
    let podman = Podman::find()?;
    if podman.pod_status(&state.pod_name)?.is_some() {
        podman.down(&args.appliance.config_dir.join(crate::layout::POD_YAML))?;
    }
    println!("Stopped and removed the pod {}.", state.pod_name);
    // What up opened in the firewall, and only that, is closed again.
    for opening in crate::firewall::close_all(&args.appliance.config_dir)? {
        println!("Closed {} again in the firewall.", opening.describe());
    }
    if !args.purge {
        println!(
            "Kept the data in {}, and the certificates and settings in {}: registry-up up brings it back.",
            state.storage(),
            args.appliance.config_dir.display()
        );
        return Ok(());
    }
    // Bounded, and never a FIFO: the pod is stopped already, and a read that hangs here would leave
    // everything half done.
    let ca = crate::bounded::file(
        &args.appliance.config_dir.join(crate::layout::CA_CERT),
        crate::bounded::SMALL,
    )
    .ok()
    .flatten();
    if let Some(ca) = &ca {
        super::trust::untrust(&state, ca, host);
    }
    // What `clients --apply` wrote on this host would send pulls to a registry that is gone.
    for path in super::clients::remove_applied(&state.registry_host(), &[], ca.as_deref()) {
        println!("Removed {}.", path.display());
    }
    // A replica leaves the site's records (gc waits for every recorded replica) while it still has the key.
    if let Some(location) = &state.s3 {
        forget_replica(rt, &args.appliance.config_dir, &state, location);
    }
    // Only what registry-up wrote goes: the registry's storage (a data folder another appliance claims
    // stays whole), its files in the config folder; anything else, and the folders holding it, stay and are
    // named. A bucket is shared by the site's replicas, and stays.
    let mut kept = Vec::new();
    let mut data_kept = false;
    if state.s3.is_none() {
        let id = crate::owned::appliance_id(&args.appliance.config_dir);
        if let Err(e) = crate::owned::check_claimed_by(data_dir, &id) {
            eprintln!("warning: the images stay. {}", e.message);
            data_kept = true;
        } else {
            kept.extend(crate::owned::purge_data(data_dir)?);
        }
    }
    kept.extend(crate::owned::purge_config(&args.appliance.config_dir)?);
    for k in &kept {
        println!("{}", k.describe());
    }
    match &state.s3 {
        None if data_kept => println!(
            "Deleted the certificates and settings in {}.",
            args.appliance.config_dir.display()
        ),
        None => println!(
            "Deleted the data in {} and the certificates and settings in {}.",
            data_dir.display(),
            args.appliance.config_dir.display()
        ),
        Some(_) => println!(
            "Deleted the certificates and settings in {}. The images stay in {} (other replicas may serve them): \
             empty the bucket with the object store's tools once none does.",
            args.appliance.config_dir.display(),
            state.storage()
        ),
    }
    Ok(())
}

/// Removes this replica's record from the bucket; when the store cannot be reached, says how to do it
/// later (the purge goes on: the host is leaving either way).
fn forget_replica(rt: &tokio::runtime::Runtime, dir: &Path, state: &crate::state::State, at: &crate::s3::Location) {
    let forgotten = crate::s3::read_key(None, dir)
        .map_err(|e| e.message)
        .and_then(|(key, _)| {
            let bucket = crate::s3::Bucket::new(at, &key, std::time::Duration::from_secs(15)).map_err(|e| e.message)?;
            rt.block_on(crate::replicas::forget(&bucket, &state.domain))
        });
    match forgotten {
        Ok(true) => println!("Removed this replica's record from the {}.", at.describe()),
        Ok(false) => {}
        Err(e) => eprintln!(
            "warning: this replica's record stays in the {} ({e}), and gc on the other replicas waits for it: run \
             registry-up site forget {} on one of them.",
            at.describe(),
            state.domain
        ),
    }
}

fn confirm(config_dir: &Path, state: &crate::state::State) -> Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Error::usage(
            "--purge deletes every stored image and the CA: confirm with --yes when not running at a terminal.",
        ));
    }
    print!(
        "Delete {}the CA, certificates and settings in {}? This cannot be undone. [y/N] ",
        match state.s3 {
            None => format!("every image in {} and ", state.data_dir),
            Some(_) => String::new(),
        },
        config_dir.display()
    );
    std::io::stdout().flush().ok();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer).ok();
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES"))
}

/// Stops the pod `pod` and removes its systemd unit or Quadlet, without state.json: only a pod registry-up
/// made (its label), and only unit files registry-up wrote (their first line).
fn stop_by_name(pod: &str, host: &HostFacts) -> Result<()> {
    let pod = crate::settings::pod_name(pod)?;
    let podman = Podman::find()?;
    let Some(label) = podman.pod_label(&pod, crate::render::MANAGED_BY_LABEL)? else {
        println!("There is no pod {pod}: nothing to stop (podman pod ps lists the pods there are).");
        return Ok(());
    };
    if label != "registry-up" {
        return Err(Error::usage(format!(
            "The pod {pod} was not made by registry-up (it has no {} label): nothing was stopped; check the name \
             with podman pod ps --filter label={}=registry-up.",
            crate::render::MANAGED_BY_LABEL,
            crate::render::MANAGED_BY_LABEL
        )));
    }
    let unit = crate::layout::unit_name(&pod);
    for file in [
        host.unit_dir().join(&unit),
        host.quadlet_dir().join(crate::layout::quadlet_file(&pod)),
    ] {
        let ours = match crate::bounded::read_text(&file, crate::bounded::SMALL) {
            Ok(t) => t.starts_with("# Written by registry-up"),
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        };
        if !ours {
            return Err(Error::usage(format!(
                "{} was not written by registry-up: nothing was stopped; remove it yourself if it is this pod's.",
                file.display()
            )));
        }
    }
    crate::runtime::systemd::Units::new(host, !host.root, &unit, &pod).remove_any()?;
    podman.remove_pod(&pod)?;
    println!("Stopped and removed the pod {pod} (state.json could not be read; files and data are untouched).");
    Ok(())
}
