//! `registry-up up`: gather the facts (host, Podman, the running pod) → decide what to do (decide.rs,
//! pure) → execute: load and pull images, write files, start, wait, prove auth and config, verify.

mod decide;
mod guard;

use std::path::Path;
use std::time::Duration;

use super::site::Joining;
use crate::bundle::{self, CheckedBundle};
use crate::cli::UpArgs;
use crate::desired::{self, Desired};
use crate::error::{Error, ExitStatus, Result};
use crate::firewall::Verdict;
use crate::host::HostFacts;
use crate::layout;
use crate::lock::{self, ApplianceLock};
use crate::pki::Renew;
use crate::plan::{self, Plan};
use crate::progress::Reporter;
use crate::registry_image;
use crate::render::{self, Root};
use crate::runtime::podman::{ContainerInfo, PodStatus, Podman, PodmanVersion};
use crate::runtime::systemd::Units;
use crate::secrets::{self, PasswordOrigin};
use crate::settings::{self, Settings};
use crate::state::Service;
use crate::verify::{self, Target};
use decide::{Image, PodAction, PodFacts};

/// What Podman says before anything changes, asked all at once (each podman call costs tens of ms).
struct PodmanFacts {
    version: Result<PodmanVersion>,
    /// [registry, nginx], in the store now.
    present: Result<Vec<bool>>,
    status: Result<Option<PodStatus>>,
    /// The registry image's ENTRYPOINT and CMD; fails for a missing image (asked again after a pull).
    registry_config: Result<registry_image::ImageConfig>,
    /// The pod's registry and nginx containers (their images, PIDs and mounts), None where there is none.
    containers: Vec<Option<ContainerInfo>>,
}

impl PodmanFacts {
    fn gather(podman: &Podman, settings: &Settings) -> Self {
        let images = [settings.registry_image.as_str(), settings.nginx_image.as_str()];
        std::thread::scope(|scope| {
            let version = scope.spawn(|| podman.version());
            // Both images' presence and the registry's config in one call when both are there (the usual
            // re-run); which one is missing is asked one by one only when one is.
            let configs = scope.spawn(|| podman.image_configs(&images));
            let status = scope.spawn(|| podman.pod_status(&settings.pod_name));
            let names = [render::REGISTRY_CONTAINER, render::NGINX_CONTAINER]
                .map(|c| render::container_name(&settings.pod_name, c));
            let containers = scope.spawn(move || podman.containers(&[&names[0], &names[1]]));
            let join = "a podman thread does not panic";
            let (present, registry_config) = match configs.join().expect(join) {
                Ok(Some(mut configs)) if configs.len() == images.len() => {
                    (Ok(vec![true, true]), Ok(configs.swap_remove(0)))
                }
                // One is missing (a first run, say), or the call failed: asked one by one, as a re-run
                // of an older registry-up would, so that a missing image is loaded or pulled.
                _ => {
                    let present: Vec<_> = images
                        .map(|image| scope.spawn(move || podman.image_exists(image)))
                        .into();
                    let config = podman.image_config(&settings.registry_image);
                    (present.into_iter().map(|p| p.join().expect(join)).collect(), config)
                }
            };
            PodmanFacts {
                present,
                version: version.join().expect(join),
                status: status.join().expect(join),
                registry_config,
                containers: containers.join().expect(join),
            }
        })
    }
}

/// What `resolve` found: the settings, the checked bundle, whether the port stays, and a site file's setup.
struct Resolved {
    /// The appliance as installed before this run.
    previous: Option<crate::state::State>,
    /// --move-data: the images to move to the new data folder.
    moving: Option<guard::Move>,
    settings: Settings,
    bundle: Option<CheckedBundle>,
    same_port: bool,
    joining: Option<Joining>,
}

/// The settings of this run, from the flags (or a site file's), the installed state and a bundle's image
/// names.
fn resolve(args: &UpArgs, host: &HostFacts, out: &Reporter) -> Result<Resolved> {
    if args.open_firewall && !host.root {
        return Err(Error::usage(
            "--open-firewall changes the host's firewall, which only root may: run registry-up as root, or leave \
             out --open-firewall (up then says whether the port is closed, and the command root would run).",
        ));
    }
    let previous = crate::state::read_state(&args.setup.config_dir)?;
    let joining = match &args.site {
        Some(path) => Some(out.step(&format!("check site file {}", path.display()), || {
            let joining = super::site::joining(&args.setup, path, previous.as_ref())?;
            let detail = format!("checksum matches, names {}", joining.setup.sans.join(", "));
            Ok((joining, detail))
        })?),
        None => None,
    };
    let setup = joining.as_ref().map_or(&args.setup, |j| &j.setup);
    let mut settings = Settings::resolve(setup, previous.as_ref(), host)?;
    settings.check_port_allowed(host)?;
    // A bundle names the images it holds: they are the ones to run, unless flags say otherwise.
    let bundle = match &args.bundle {
        Some(path) => Some(out.step(&format!("check bundle {}", path.display()), || {
            let checked = bundle::check(path)?;
            let mut detail = format!("{} images", checked.manifest.images.len());
            if let Some(version) = checked.tool_version() {
                detail += &format!(" and registry-up {}", bundle::printable(version));
            }
            detail += ", every checksum matches";
            // Running another build than the bundle carries is allowed (an installed newer one), but said.
            if checked.tool_version().is_some_and(|v| v != crate::VERSION) {
                detail += &format!(" (this is registry-up {})", crate::VERSION);
            }
            Ok((checked, detail))
        })?),
        None => None,
    };
    if let Some(checked) = &bundle {
        let mut setup = setup.clone();
        setup.registry_image = setup.registry_image.or(checked.reference("registry").map(String::from));
        setup.nginx_image = setup.nginx_image.or(checked.reference("nginx").map(String::from));
        settings = Settings::resolve(&setup, previous.as_ref(), host)?;
    }
    let moving = data_switch(previous.as_ref(), &settings, args, out)?;
    ours(previous.as_ref(), &settings, out)?;
    let same_port = previous.as_ref().is_some_and(|s| s.port == settings.port);
    let mut writable = vec![(settings.config_dir.as_path(), "--config-dir")];
    if settings.s3.is_none() {
        writable.push((settings.data_dir.as_path(), "--data-dir"));
    }
    settings::check_writable(&writable)?;
    for archive in &args.image_archives {
        if !archive.is_file() {
            return Err(Error::usage(format!(
                "The image archive {} does not exist or is not a file: give --image-archive a file made by `podman save`.",
                archive.display()
            )));
        }
    }
    Ok(Resolved {
        previous,
        moving,
        settings,
        bundle,
        same_port,
        joining,
    })
}

/// registry-up takes only what is its own: a new appliance's config folder holding other files is refused,
/// and so is a data folder another installed appliance claims or that holds what is not a registry's
/// storage (exit 2, before anything is written).
fn ours(previous: Option<&crate::state::State>, settings: &Settings, out: &Reporter) -> Result<()> {
    if previous.is_none() {
        crate::owned::check_new_config_folder(&settings.config_dir)?;
    }
    if settings.s3.is_some() {
        return Ok(());
    }
    let owner = crate::owned::check_data_folder(
        &settings.data_dir,
        &settings.appliance,
        data_installed_here(previous, settings),
    )?;
    if let crate::owned::Owner::Stale(other) = owner {
        out.warn(&format!(
            "{} was the data folder of the appliance in {}, which is not installed there any more: this appliance \
             takes it over.",
            settings.data_dir.display(),
            crate::error::printable(&other.display().to_string(), false)
        ));
    }
    Ok(())
}

/// A pod of the appliance's name that this appliance did not start is refused (exit 2): replacing it would
/// take another appliance's port and registry away while its status still said healthy. A pod of an
/// earlier release (no appliance label) is this one's when this appliance's state names it.
fn pod_is_ours(status: Option<&PodStatus>, settings: &Settings, previous: Option<&crate::state::State>) -> Result<()> {
    let Some(status) = status else { return Ok(()) };
    let appliance = status.label(crate::render::APPLIANCE_LABEL);
    let named_here = previous.is_some_and(|p| p.pod_name == settings.pod_name);
    let whose = if status.label(crate::render::MANAGED_BY_LABEL) != "registry-up" {
        "was not made by registry-up"
    } else if appliance == settings.appliance || appliance.is_empty() && named_here {
        return Ok(());
    } else {
        "belongs to another appliance on this host"
    };
    Err(Error::usage(format!(
        "A pod named {} {whose}: registry-up replaces only the pod it started for {}. Give --pod-name a name of \
         its own (podman pod ps lists the pods there are). Nothing was changed.",
        settings.pod_name,
        settings.config_dir.display()
    )))
}

/// Whether the installed appliance (`previous`) keeps its data in the data folder of `settings`.
fn data_installed_here(previous: Option<&crate::state::State>, settings: &Settings) -> bool {
    previous.is_some_and(|p| {
        p.s3.is_none() && crate::owned::canonical(Path::new(&p.data_dir)) == crate::owned::canonical(&settings.data_dir)
    })
}

/// A data folder no appliance has claimed yet, that holds a registry's storage, may be the folder of an
/// appliance of an earlier release (which wrote no claim) that runs now: refused (exit 2) when another
/// registry-up pod on this host mounts it. Asked of Podman only then (a claimed or empty folder is decided
/// by its claim).
fn data_not_mounted_by_another(
    podman: &Podman,
    settings: &Settings,
    previous: Option<&crate::state::State>,
) -> Result<()> {
    if settings.s3.is_some()
        || crate::owned::claim(&settings.data_dir).is_some()
        || !settings.data_dir.join("docker").exists()
        || data_installed_here(previous, settings)
    {
        return Ok(());
    }
    let wanted = crate::owned::canonical(&settings.data_dir);
    for pod in podman
        .registry_up_pods()?
        .into_iter()
        .filter(|p| *p != settings.pod_name)
    {
        let name = crate::render::container_name(&pod, crate::render::REGISTRY_CONTAINER);
        let infos = podman.inspect_containers(&[&name])?.unwrap_or_default();
        let mounted = infos
            .iter()
            .flat_map(|i| &i.mounts)
            .any(|m| crate::owned::canonical(&m.source) == wanted);
        if mounted {
            return Err(Error::usage(format!(
                "--data-dir {} is the data folder of the running pod {pod}, another appliance: one data folder \
                 serves one appliance (gc on either would free the other's blobs, a purge would delete its \
                 images). Give this appliance a folder of its own. Nothing was changed.",
                settings.data_dir.display()
            )));
        }
    }
    Ok(())
}

/// A new data folder on an installed appliance must not hide its images: refused (exit 2, before anything
/// changes) when the folder in use holds tags that the new one does not hold with the same digests, unless
/// `--empty-storage` says starting empty is meant, or `--move-data` asks for them to be moved (returned:
/// from where to where, done under the upgrade guard). A typo in a path, or a data mount that did not come
/// up, would otherwise replace the pod with one that serves nothing, and every check would pass.
fn data_switch(
    previous: Option<&crate::state::State>,
    settings: &Settings,
    args: &UpArgs,
    out: &Reporter,
) -> Result<Option<guard::Move>> {
    if args.move_data && args.empty_storage {
        return Err(Error::usage(
            "--move-data and --empty-storage say opposite things: give one (move the images to the new folder, or \
             start it empty).",
        ));
    }
    let Some(prev) = previous.filter(|p| p.s3.is_none() && settings.s3.is_none()) else {
        return Ok(None);
    };
    let old = std::path::PathBuf::from(&prev.data_dir);
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if same(&old, &settings.data_dir) {
        return Ok(None);
    }
    let held = crate::storage::tags(&old);
    let new = crate::storage::tags(&settings.data_dir);
    let missing = held
        .iter()
        .filter(|(tag, digest)| new.get(*tag) != Some(digest))
        .count();
    if args.move_data {
        let from = old.join("docker");
        let to = settings.data_dir.join("docker");
        if std::fs::symlink_metadata(&to).is_ok() {
            return Err(Error::usage(format!(
                "--move-data: {} exists already, so the images of {} cannot be moved there without mixing two \
                 storages: give --data-dir a new or empty folder. Nothing was changed.",
                to.display(),
                old.display()
            )));
        }
        if !from.is_dir() {
            out.warn(&format!(
                "--move-data: {} holds no registry data, so there is nothing to move.",
                old.display()
            ));
            return Ok(None);
        }
        return Ok(Some(guard::Move {
            from: old,
            to: settings.data_dir.clone(),
            tags: held.len(),
            empty: false,
        }));
    }
    if missing == 0 {
        return Ok(None);
    }
    if args.empty_storage {
        // What the guard then proves is nothing: starting empty is the point.
        out.warn(&format!(
            "--empty-storage: the appliance now keeps its images in {}, without the {missing} tag(s) of {}; that \
             folder is left as it is.",
            settings.data_dir.display(),
            old.display()
        ));
        return Ok(Some(guard::Move {
            from: old,
            to: settings.data_dir.clone(),
            tags: 0,
            empty: true,
        }));
    }
    Err(Error::usage(format!(
        "--data-dir {} would hide the images of this appliance: its data folder {} holds {} tag(s) in {} \
         repositories, and {missing} of them are not in {} ({} tag(s) there). Nothing was changed. Add --move-data \
         to move them there (proven tag by tag, rolled back if any is lost), or --empty-storage to start empty on \
         purpose (the old folder is left as it is).",
        settings.data_dir.display(),
        old.display(),
        held.len(),
        held.keys()
            .map(|(repo, _)| repo)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        settings.data_dir.display(),
        new.len()
    )))
}

/// With S3 storage: the key, once the bucket has answered with it (listing, and writing and deleting a
/// probe object unless `dry_run`), before anything is written or started.
fn storage_ready(
    settings: &Settings,
    dry_run: bool,
    alone: bool,
    rt: &tokio::runtime::Runtime,
    out: &Reporter,
) -> Result<Option<crate::s3::Credentials>> {
    let Some(location) = &settings.s3 else {
        return Ok(None);
    };
    let (key, from) = crate::s3::read_key(settings.s3_credentials.as_deref(), &settings.config_dir)?;
    out.step("check S3 storage", || {
        let bucket = crate::s3::Bucket::new(location, &key, Duration::from_secs(15))?;
        rt.block_on(bucket.probe(&from.display().to_string(), !dry_run))?;
        // One bucket serves one appliance, or the replicas of one site (joined with its site file, sharing
        // its secret and gc's hold): a new appliance is refused a bucket where others record themselves.
        if alone {
            let others: Vec<String> = rt
                .block_on(crate::replicas::list(&bucket))
                .map_err(|e| {
                    Error::runtime(format!(
                        "Could not list the replicas recorded in the {} ({e}).",
                        location.describe()
                    ))
                })?
                .into_iter()
                .filter(|r| r.domain != settings.domain.to_string())
                .map(|r| r.address())
                .collect();
            if !others.is_empty() {
                return Err(Error::usage(format!(
                    "The {} holds the images of another appliance ({}): one bucket serves one appliance or one \
                     site. Join that site with registry-up up --site FILE (registry-up site export on one of them \
                     writes it), or give this appliance a bucket of its own. Nothing was changed.",
                    location.describe(),
                    others.join(", ")
                )));
            }
        }
        let did = if dry_run { "lists" } else { "lists, writes and deletes" };
        Ok(((), format!("{}: the key {} {did}", location.describe(), key.access_key)))
    })?;
    Ok(Some(key))
}

/// Loads the bundle and the archives (not in a dry run); returns the full names they provided.
fn load(args: &UpArgs, out: &Reporter, podman: &Podman, bundle: Option<&CheckedBundle>) -> Result<Vec<String>> {
    let mut provided = Vec::new();
    if args.dry_run {
        return Ok(provided);
    }
    if let Some(checked) = bundle {
        out.step("load bundle", || Ok(((), checked.load(podman)?.join(", "))))?;
        provided.extend(
            checked
                .manifest
                .images
                .iter()
                .map(|i| crate::runtime::podman::full_name(&i.reference)),
        );
    }
    for archive in &args.image_archives {
        let summary = out.step(&format!("load {}", archive.display()), || {
            let summary = podman.load(archive)?;
            Ok((summary.clone(), summary))
        })?;
        provided.extend(crate::runtime::podman::loaded_names(&summary));
    }
    Ok(provided)
}

/// The images are there (loaded, pulled, their layout checked), and what that tells about the pod.
struct Ready {
    service: Service,
    pulls: Vec<Image>,
    status: Option<PodStatus>,
    /// The running containers run other images than the names now point to.
    images_changed: bool,
    /// The running containers mount other folders than the ones at the configured paths now (a config
    /// folder replaced or removed under a running pod); None when that cannot be seen.
    mounts_moved: Option<bool>,
    /// The running registry has REGISTRY_* variables registry-up did not set (started by hand, say), or a
    /// container runs another image name than the settings name.
    not_this_setup: bool,
}

/// `up`; `renew` forces a new server certificate (or CA), as `certs renew` asks.
pub fn run(args: &UpArgs, rt: &tokio::runtime::Runtime, renew: Renew, host: &HostFacts) -> Result<()> {
    let out = Reporter::new();
    // One change at a time: the state is read, and everything decided, under the lock.
    let _lock = ApplianceLock::take(&args.setup.config_dir, host, lock::WAIT)?;
    // A run killed during a guarded change: its files go back first, so this run starts from the setup
    // that was proven (and a read-only it left is ended below, by the marker it left).
    if !args.dry_run {
        if let Some(n) = guard::put_back(&args.setup.config_dir)? {
            out.warn(&format!(
                "an earlier registry-up up was stopped while it changed the registry: its {n} file(s) were put back \
                 as they were before that change."
            ));
        }
    }
    run_locked(args, rt, renew, host, &out, Mode::Guarded)
}

/// How a run treats the running pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every run: a change that replaces the pod is proven to keep what was served.
    Guarded,
    /// Starting the earlier setup again after a change that did not keep it: the pod is replaced whatever it
    /// looks like (it may run new content under the old name), and nothing is guarded.
    RollBack,
}

/// `up` under the appliance's lock.
fn run_locked(
    args: &UpArgs,
    rt: &tokio::runtime::Runtime,
    renew: Renew,
    host: &HostFacts,
    out: &Reporter,
    mode: Mode,
) -> Result<()> {
    let guarded = mode == Mode::Guarded;
    let Resolved {
        previous,
        moving,
        settings,
        bundle,
        same_port,
        joining,
    } = resolve(args, host, out)?;
    let password = match &joining {
        Some(site) => site.password.clone(),
        None => args
            .setup
            .auth_password_stdin
            .then(secrets::new_password_from_stdin)
            .transpose()?,
    };
    // A first run on this bucket that joins no site: the bucket must be no other appliance's.
    let alone = joining.is_none() && previous.as_ref().is_none_or(|p| p.s3 != settings.s3);
    let s3_key = storage_ready(&settings, args.dry_run, alone, rt, out)?;
    let podman = Podman::find()?;
    data_not_mounted_by_another(&podman, &settings, previous.as_ref())?;
    // Images first: a missing image must stop the run before any file is written.
    let ready = images(args, host, out, &podman, &settings, bundle.as_ref())?;
    // From the pod inspect images() made: no call of its own. Images may have been loaded into Podman's
    // store by then; nothing of the appliance has been written.
    pod_is_ours(ready.status.as_ref(), &settings, previous.as_ref())?;
    if settings.maintenance.is_some() && ready.service == Service::Direct {
        return Err(Error::usage(
            "--maintenance installs a systemd timer, and systemd is not running here (or --systemd none was \
             given): give --maintenance off (it is kept from an earlier run otherwise), and run registry-up \
             maintain from cron instead.",
        ));
    }

    let podman_bin = podman.bin.display().to_string();
    let desired = out.step("certificates", || {
        let d = desired::desired(
            &settings,
            &settings.config_dir,
            &podman_bin,
            ready.service,
            desired::Given {
                password,
                s3_key,
                http_secret: joining.as_ref().map(|j| j.http_secret.clone()),
            },
            renew,
        )?;
        let detail = format!(
            "{}, {}",
            desired::describe(&d.pki.ca_origin, "CA"),
            desired::describe(&d.pki.server_origin, "server certificate")
        );
        Ok((d, detail))
    })?;
    let mut desired = desired;
    if let (Some(_), Some(auth)) = (&joining, desired.secrets.auth.as_mut()) {
        auth.password_origin = PasswordOrigin::Site;
    }
    let target = target(&settings, &desired);
    let files = desired
        .files
        .iter()
        .map(|f| (desired::host_path(&settings, f, host), f.clone()))
        .collect();
    let plan = plan::plan(desired::wanted_dirs(&settings, ready.service, host), files)?;
    let action = match (mode, &ready.status) {
        (Mode::RollBack, Some(_)) => PodAction::Restart(decide::RestartWhy::Stale),
        _ => decide::pod_action(&PodFacts {
            status: ready.status.as_ref(),
            stale: stale(rt, &ready, &plan, &target),
            changes_need: plan.pod_needs(),
        }),
    };
    if decide::port_must_be_free(ready.status.is_some(), same_port) {
        decide::port_problem(
            settings.port,
            &crate::host::port_use(&settings.listen.sockets(settings.port)),
        )?;
    }

    if args.dry_run {
        out.line(&format!(
            "Plan for {} (dry run: nothing is changed):",
            settings.pod_name
        ));
        out.line(&plan.to_string());
        let pod = decide::describe_pod(ready.status.as_ref(), action);
        out.line(&format!("  pod       {} {pod}", settings.pod_name));
        for image in &ready.pulls {
            out.line(&format!(
                "  pull      {} (--pull {})",
                image.reference,
                args.pull.name()
            ));
        }
        let firewall = match crate::firewall::check(settings.port, &settings.listen, &settings.pod_name, host) {
            Verdict::Closed { what, .. } if args.open_firewall => format!("{what}: would be opened"),
            Verdict::Closed { what, .. } => format!("{what}: left closed (--open-firewall opens it)"),
            Verdict::Open(detail) => detail,
            Verdict::Unknown(why) => format!("not checked: {why}"),
        };
        out.line(&format!("  firewall  {firewall}"));
        if let Some(m) = moving.as_ref().filter(|m| !m.empty) {
            out.line(&format!(
                "  move      {} (the images of {} tags), proven tag by tag",
                m.describe(),
                m.tags
            ));
        }
        return Ok(());
    }
    execute(
        args,
        rt,
        host,
        out,
        &settings,
        &podman,
        &plan,
        ready.service,
        action,
        &target,
        &desired,
        bundle.as_ref().and_then(|b| b.workloads.as_ref()),
        previous.as_ref().filter(|_| guarded),
        moving.as_ref(),
    )
}

/// Loads what the archives and bundle hold, asks Podman what it has, decides the service and the pulls,
/// pulls, and checks both images are there with a registry layout that runs our config.
fn images(
    args: &UpArgs,
    host: &HostFacts,
    out: &Reporter,
    podman: &Podman,
    settings: &Settings,
    bundle: Option<&CheckedBundle>,
) -> Result<Ready> {
    let provided = load(args, out, podman, bundle)?;
    // A dry run does not load archives, so it cannot tell what they hold.
    let archives_pending = args.dry_run && (!args.image_archives.is_empty() || bundle.is_some());
    let facts = PodmanFacts::gather(podman, settings);
    let version = facts.version?;
    let service = decide::service(args.setup.systemd, host, &version)?;
    let images: Vec<Image> = [
        (&settings.registry_image, "--registry-image"),
        (&settings.nginx_image, "--nginx-image"),
    ]
    .into_iter()
    .zip(facts.present?)
    .map(|((reference, flag), present)| Image {
        reference: reference.clone(),
        flag,
        present,
    })
    .collect();
    let pulls = decide::pulls(args.pull, &images, &provided, archives_pending);
    if !args.dry_run {
        for image in &pulls {
            out.download(&format!("pull {}", image.reference), |progress| {
                podman
                    .pull(&image.reference, Duration::from_secs(args.pull_timeout), progress)
                    .map_err(|why| pull_failed(image, &why))
            })?;
        }
    }
    let will_pull = |image: &str| pulls.iter().any(|p| p.reference == image);
    out.step("check images", || {
        decide::missing_image(args.pull, &images, &pulls, archives_pending)?;
        let state = |image: &str| match (archives_pending, args.dry_run && will_pull(image)) {
            (true, _) => "expected from the archives",
            (false, true) => "to be pulled",
            (false, false) => "present",
        };
        // The registry must be one whose layout runs our config (else auth and the rest are silently off).
        let layout = if archives_pending || (args.dry_run && !images[0].present) {
            ", registry image layout checked once it is there".to_string()
        } else {
            let config = match facts.registry_config {
                Ok(config) if !will_pull(&settings.registry_image) => config,
                _ => podman.image_config(&settings.registry_image)?,
            };
            let layout = registry_image::layout(&settings.registry_image, &config)?;
            registry_image::no_overrides(&settings.registry_image, &config)?;
            format!(", registry in the {}", layout.describe())
        };
        let detail = format!(
            "{} {}, {} {}{layout} (podman {version})",
            settings.registry_image,
            state(&settings.registry_image),
            settings.nginx_image,
            state(&settings.nginx_image)
        );
        Ok(((), detail))
    })?;
    let status = facts.status?;
    // New image content under the same names (pulled or loaded) must replace the running containers.
    let images_changed = (!pulls.is_empty() || !provided.is_empty())
        && !args.dry_run
        && status.is_some()
        && images_differ(podman, settings, &facts.containers)?;
    let mounts_moved = match &status {
        Some(s) if s.healthy() => mounts_moved(&facts.containers, settings),
        _ => None,
    };
    // A container running another image name than the settings say (started by hand, or a setup that
    // was rolled back under a running pod) is not this setup.
    let wanted = [&settings.registry_image, &settings.nginx_image];
    let names_differ = facts.containers.iter().zip(wanted).any(|(c, name)| {
        c.as_ref()
            .is_some_and(|c| !c.image_name.is_empty() && c.image_name != *name)
    });
    let not_this_setup = names_differ
        || facts
            .containers
            .first()
            .and_then(Option::as_ref)
            .is_some_and(|c| !render::foreign_registry_env(&c.env).is_empty());
    Ok(Ready {
        service,
        pulls,
        status,
        images_changed,
        mounts_moved,
        not_this_setup,
    })
}

/// Running containers are not enough: a healthy pod left alone must run the images the names point to,
/// read the folders at the configured paths, and answer through the proxy (with this run's CA) with the
/// config registry-up wants (its fingerprint header). A pod that does not answer is replaced too.
fn stale(rt: &tokio::runtime::Runtime, ready: &Ready, plan: &Plan, target: &Target) -> bool {
    let running = ready.status.as_ref().is_some_and(|s| s.healthy());
    running
        && plan.pod_needs() != render::Reader::Pod
        && (ready.images_changed
            || ready.not_this_setup
            || ready.mounts_moved == Some(true)
            || rt
                .block_on(served_fingerprint(target))
                .is_none_or(|served| served != wanted_fingerprint(plan)))
}

/// The fingerprint the registry answers with through the proxy, asked up to three times (a moment of
/// load must not replace a working pod); None when it never answered.
async fn served_fingerprint(target: &Target) -> Option<Option<String>> {
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if let Some(served) = verify::served_fingerprint(target, Duration::from_secs(5)).await {
            return Some(served);
        }
    }
    None
}

/// Whether a running container mounts another folder than the one at its path on the host now, compared
/// by device and inode through /proc/PID/root. None when a container cannot be looked into.
fn mounts_moved(containers: &[Option<ContainerInfo>], settings: &Settings) -> Option<bool> {
    use std::os::unix::fs::MetadataExt;
    for info in containers {
        let info = info.as_ref().filter(|i| i.pid != 0)?;
        let ours = info
            .mounts
            .iter()
            .filter(|m| m.source.starts_with(&settings.config_dir) || m.source.starts_with(&settings.data_dir));
        for mount in ours {
            let inside = Path::new("/proc")
                .join(info.pid.to_string())
                .join("root")
                .join(mount.destination.strip_prefix("/").unwrap_or(&mount.destination));
            let inside = std::fs::metadata(inside).ok()?;
            let same =
                std::fs::metadata(&mount.source).is_ok_and(|o| (o.dev(), o.ino()) == (inside.dev(), inside.ino()));
            if !same {
                return Some(true);
            }
        }
    }
    Some(false)
}

/// How verify reaches this appliance: its name and port, its CA, its password.
fn target(settings: &Settings, desired: &Desired) -> Target {
    Target {
        host: settings.domain.url_host(),
        port: settings.port,
        ca_pem: desired.pki.ca_cert.as_ref().map(|c| c.as_bytes().to_vec()),
        credentials: desired
            .secrets
            .auth
            .as_ref()
            .map(|a| (a.user.clone(), a.password.clone())),
        // A replica of a site: its name may lead to another replica.
        pin: settings
            .s3
            .as_ref()
            .map(|_| crate::listen::local_address(&settings.listen.saved(), settings.port)),
    }
}

/// Acts on what was decided: writes, starts, waits, proves and reports.
#[allow(clippy::too_many_arguments)]
fn execute(
    args: &UpArgs,
    rt: &tokio::runtime::Runtime,
    host: &HostFacts,
    out: &Reporter,
    settings: &Settings,
    podman: &Podman,
    plan: &Plan,
    service: Service,
    action: PodAction,
    target: &Target,
    desired: &Desired,
    workloads: Option<&crate::source::Source>,
    previous: Option<&crate::state::State>,
    moving: Option<&guard::Move>,
) -> Result<()> {
    // A change that replaces the running pod of an installed appliance is proven to keep what it served.
    let guarded = previous.filter(|_| matches!(action, PodAction::Restart(_)));
    if moving.is_some() && guarded.is_none() {
        return Err(Error::runtime(
            "--move-data: the pod would not be replaced, so the move could not be proven: nothing was changed.",
        ));
    }
    let guard = match guarded {
        Some(prev) => match guard::begin(rt, out, plan, prev, settings, podman, moving) {
            Ok(g) => Some(g),
            Err(e) => {
                guard::abandon(settings, podman, &prev.pod_name);
                return Err(e);
            }
        },
        None => None,
    };
    let changed = change(
        args,
        rt,
        host,
        out,
        settings,
        podman,
        plan,
        service,
        action,
        target,
        desired,
        guard.is_some(),
    );
    if let (Some(g), Some(prev)) = (&guard, guarded) {
        let lost = |c: &crate::verify::inventory::Comparison| {
            let lost: Vec<String> = c.changed.iter().map(|x| format!("  {}", x.describe())).collect();
            Error::verify(format!(
                "The change lost what the registry served: {} of the {} tags served before are gone or \
                 changed:\n{}",
                c.changed.len(),
                g.before.counts.tags,
                lost.join("\n")
            ))
        };
        // Ok(true): the quick proof held, and every tag is read once writes are taken again.
        let proven = changed.and_then(|()| {
            out.step("inventory after", || {
                let (proof, why_not_quick) = guard::prove(rt, g, target, settings)?;
                let c = match proof {
                    guard::Proof::Quick { sampled } => {
                        guard::finish(settings, podman)?;
                        return Ok((
                            true,
                            format!(
                                "the new registry serves a tag placed in the storage after it started (the same \
                                 storage, which nobody wrote meanwhile), and {sampled} tags sampled from {} as \
                                 before; read-write again, every tag is read next",
                                g.source
                            ),
                        ));
                    }
                    guard::Proof::All(c) => c,
                };
                if !c.equal() {
                    return Err(lost(&c));
                }
                guard::finish(settings, podman)?;
                let why = why_not_quick
                    .map(|w| format!(" (read tag by tag: {w})"))
                    .unwrap_or_default();
                let detail = if g.before.counts.tags == 0 {
                    format!(
                        "{} tags served now, against {}: nothing to lose; read-write again{why}",
                        c.added.len(),
                        g.source
                    )
                } else {
                    format!(
                        "every one of {} is served with the same digest ({} added meanwhile); read-write again{why}",
                        g.source,
                        c.added.len()
                    )
                };
                Ok((false, detail))
            })
        });
        // Read-write again: auth and config are proven as on any run; a setup that fails them goes too.
        let proven = proven
            .and_then(|quick| check_auth_and_config(rt, out, settings, podman, target, desired, true).map(|()| quick));
        // After the quick proof: every tag, with writes taken again. A loss still rolls back (writes made
        // meanwhile are in the same storage, which the earlier setup serves).
        let proven = proven.and_then(|quick| {
            if !quick {
                return Ok(());
            }
            out.step("every tag served", || {
                let (c, written) = guard::every_tag(rt, g, target, settings)?;
                if !c.equal() {
                    return Err(lost(&c));
                }
                Ok((
                    (),
                    format!(
                        "every one of {} is served with the same digest ({} added, {written} written by clients \
                         since the window)",
                        g.source,
                        c.added.len()
                    ),
                ))
            })
        });
        if let Err(e) = proven {
            return Err(roll_back(args, rt, host, out, prev, g, e));
        }
        guard::discard(&settings.config_dir);
    } else {
        changed?;
    }
    finish_up(args, rt, out, settings, podman, target, desired, workloads)
}

/// The change did not keep what was served, or failed half way: the files of the earlier setup go back and
/// its pod is started again (read-write, verified), and what it serves is compared with what it served
/// before; the error says what was lost, what was put back, and whether that holds every tag again.
fn roll_back(
    args: &UpArgs,
    rt: &tokio::runtime::Runtime,
    host: &HostFacts,
    out: &Reporter,
    previous: &crate::state::State,
    g: &guard::Guard,
    e: Error,
) -> Error {
    out.warn("the change is rolled back to the setup that was running before it");
    let config_dir = &args.setup.config_dir;
    let back = guard::put_back(config_dir).and_then(|_| {
        // Unit files put back are read again by systemd before the earlier pod is started.
        if previous.service != Service::Direct {
            let _ = crate::runtime::systemd::Systemctl::for_appliance(previous.rootless).run(&["daemon-reload"]);
        }
        let old = UpArgs::installed(config_dir.clone(), crate::cli::PullPolicy::Never);
        run_locked(&old, rt, Renew::IfNeeded, host, out, Mode::RollBack)
    });
    let what = format!(
        "registry image {}, storage {}, pod {}",
        previous.registry_image,
        previous.storage(),
        previous.pod_name
    );
    let status = if e.status == ExitStatus::Usage {
        ExitStatus::Failed
    } else {
        e.status
    };
    let message =
        match back.and_then(|()| guard::proven_again(rt, g, config_dir, previous)) {
            Ok(c) if c.equal() => format!(
                "{}\nRolled back: the earlier setup ({what}) is running again, read-write, with its files as they \
             were, and serves every one of {} with the same digest. Find why the new setup served less before \
             trying it again.",
                e.message, g.source
            ),
            Ok(c) => {
                format!(
            "{}\nRolled back to the earlier setup ({what}), but it too no longer serves {} of {}:\n{}\nLook at \
             the data folder and the registry's logs (registry-up logs).",
            e.message,
            c.changed.len(),
            g.source,
            c.changed.iter().map(|x| format!("  {}", x.describe())).collect::<Vec<_>>().join("\n")
        )
            }
            Err(b) => format!(
                "{}\nThe roll-back to the earlier setup ({what}) failed too: {} Run registry-up up again to finish it.",
                e.message, b.message
            ),
        };
    Error { status, message }
}

/// Writes the files, starts the pod, waits for it and proves auth and config: the part of `up` that a
/// guarded change makes while the appliance is read-only (`read_only`: the new pod starts so).
#[allow(clippy::too_many_arguments)]
fn change(
    args: &UpArgs,
    rt: &tokio::runtime::Runtime,
    host: &HostFacts,
    out: &Reporter,
    settings: &Settings,
    podman: &Podman,
    plan: &Plan,
    service: Service,
    action: PodAction,
    target: &Target,
    desired: &Desired,
    read_only: bool,
) -> Result<()> {
    out.step("write files", || {
        let n = crate::apply::apply(plan)?;
        // The data folder is this appliance's from now on: another is refused it, gc and purge check it.
        if settings.s3.is_none() {
            crate::owned::write_claim(&settings.data_dir, &settings.appliance, &settings.config_dir)?;
        }
        if read_only {
            guard::start_read_only(settings)?;
        }
        Ok(((), summary(plan, n)))
    })?;
    out.step("start pod", || start(settings, podman, plan, service, action, host))?;
    // A gc killed while nginx was read-only: its conf may be back on disk but not loaded.
    let interrupted = settings.config_dir.join(layout::GC_IN_PROGRESS);
    if interrupted.exists() && !read_only {
        out.step("end an interrupted gc", || {
            podman.reload_nginx(&render::container_name(&settings.pod_name, render::NGINX_CONTAINER))?;
            std::fs::remove_file(&interrupted)
                .map_err(|e| Error::runtime(crate::host::io_failed("remove", &interrupted, &e)))?;
            Ok(((), "nginx reloaded with the usual conf: writes pass again".to_string()))
        })?;
    }
    firewall(args, out, settings, host)?;
    if service != Service::Direct {
        out.step("maintenance", || maintenance(settings, plan, host))?;
    }
    if settings.rootless && service != Service::Direct {
        linger(out, args.setup.linger, &host.user);
    }
    if service == Service::Direct {
        out.warn(&format!(
            "systemd is not running on this host, so the pod {} was started directly and will not come back after \
             a reboot: run registry-up again after booting.",
            settings.pod_name
        ));
    }
    out.step("wait for registry", || {
        rt.block_on(verify::wait_ready(target, Duration::from_secs(args.wait_timeout)))
            .map(|d| ((), d))
            .map_err(|e| with_logs(e, podman, settings, ExitStatus::Runtime))
    })?;
    // Read-only, nginx answers writes itself: the auth check's anonymous upload is asked once writes pass.
    if !read_only {
        let new_pod = matches!(action, PodAction::Create | PodAction::Restart(_));
        check_auth_and_config(rt, out, settings, podman, target, desired, new_pod)?;
    }
    Ok(())
}

/// What `up` is about to promise (auth on, this config) is proven on the running registry first.
fn check_auth_and_config(
    rt: &tokio::runtime::Runtime,
    out: &Reporter,
    settings: &Settings,
    podman: &Podman,
    target: &Target,
    desired: &Desired,
    new_pod: bool,
) -> Result<()> {
    out.step("check auth and config", || {
        let config = verify::ConfigFile::read(settings.config_dir.join(layout::REGISTRY_CONFIG));
        let checks = rt.block_on(verify::live_checks(target, Some(&config), Duration::from_secs(10)));
        let mut failed: Vec<String> = checks
            .iter()
            .filter(|c| c.status != verify::Status::Pass)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        if !failed.is_empty() {
            if let Some(auth) = &desired.secrets.auth {
                // Printed nowhere else on a failed run, and a later run keeps it silently.
                let saved = settings.config_dir.join(layout::AUTH_PASSWORD);
                failed.push(format!("(The password of {} is in {}.)", auth.user, saved.display()));
            }
            return Err(with_logs(
                Error::verify(failed.join("\n")),
                podman,
                settings,
                ExitStatus::Failed,
            ));
        }
        // The file is what the registry runs only if nothing in its environment overrides it. A pod left
        // alone was read before this run decided (one with such a variable is replaced): only a new one is
        // asked, so a no-op re-run makes no extra podman call.
        let registry = render::container_name(&settings.pod_name, render::REGISTRY_CONTAINER);
        let env = if new_pod {
            podman.container_env(&registry)?
        } else {
            Vec::new()
        };
        let foreign = render::foreign_registry_env(&env);
        if !foreign.is_empty() {
            return Err(with_logs(
                Error::verify(format!(
                    "The running registry container has {} in its environment, which override the config file \
                     registry-up wrote: use a registry image that sets none, then run registry-up up again.",
                    foreign.join(", ")
                )),
                podman,
                settings,
                ExitStatus::Failed,
            ));
        }
        let auth = if target.credentials.is_some() {
            "anonymous requests get 401"
        } else {
            "no password, as set up"
        };
        Ok(((), format!("{auth}; the registry runs {}", config.path.display())))
    })?;
    Ok(())
}

/// After the change: the site records, the round trip, the bundle's images, and the closing words.
#[allow(clippy::too_many_arguments)]
fn finish_up(
    args: &UpArgs,
    rt: &tokio::runtime::Runtime,
    out: &Reporter,
    settings: &Settings,
    podman: &Podman,
    target: &Target,
    desired: &Desired,
    workloads: Option<&crate::source::Source>,
) -> Result<()> {
    if let (Some(location), Some(key)) = (&settings.s3, &desired.secrets.s3) {
        out.step("site records", || {
            site_records(rt, out, settings, podman, location, key)
        })?;
    }
    if !args.no_verify {
        let storage = match &settings.s3 {
            Some(at) => {
                let key = desired.secrets.s3.clone().expect("S3 storage comes with its key");
                verify::Storage::Bucket(at.clone(), key)
            }
            None => verify::Storage::Folder(settings.data_dir.clone()),
        };
        out.step("verify push/pull", || {
            let trip = rt.block_on(verify::round_trip(
                target,
                verify::DEFAULT_SIZE,
                Duration::from_secs(60),
                Some(&storage),
            ))?;
            let cleanup = trip.cleanup.as_ref().map_err(|e| Error::verify(e.message.clone()))?;
            if let Some(why) = &cleanup.elsewhere {
                return Err(Error::verify(format!("After the push and pull, {why}.")));
            }
            Ok(((), trip.summary()))
        })?;
    }
    // The bundle's workload images, into the appliance just proven; a re-run sends only what is missing.
    if let Some(source) = workloads {
        out.step("import bundle images", || {
            let opts = crate::import::Options {
                prefix: None,
                jobs: 4,
                timeout: Duration::from_secs(60),
                progress: false,
            };
            // The appliance is up by now: whatever stops the import is "up, but not its whole job" (1).
            let summary = rt
                .block_on(crate::import::import(source, target, &opts))
                .map_err(|e| match e.status {
                    ExitStatus::Usage => Error::verify(e.message),
                    _ => e,
                })?;
            Ok(((), crate::commands::import::report(&summary)?))
        })?;
    }
    out.line(&closing_words(settings, desired));
    Ok(())
}

/// A replica records itself in the bucket (gc proves every recorded replica refuses writes before it
/// collects), and ends a gc hold this host left when a gc here was killed (no gc runs here now: this run
/// holds the lock). Another host's hold is only reported: writes stay refused until that gc ends.
fn site_records(
    rt: &tokio::runtime::Runtime,
    out: &Reporter,
    settings: &Settings,
    podman: &Podman,
    location: &crate::s3::Location,
    key: &crate::s3::Credentials,
) -> Result<((), String)> {
    let bucket = crate::s3::Bucket::new(location, key, Duration::from_secs(15))?;
    let failed = |e: String| {
        Error::runtime(format!(
            "The {} did not take this replica's record ({e}): check the S3 store, then run this again.",
            location.describe()
        ))
    };
    let domain = settings.domain.to_string();
    let me = crate::replicas::Replica::this_host(&domain, settings.port);
    rt.block_on(crate::replicas::register(&bucket, &me)).map_err(failed)?;
    let mut detail = format!("recorded as replica {}", me.address());
    match rt.block_on(crate::gc_hold::current(&bucket)).map_err(failed)? {
        Some(hold) if hold.ends_here(&domain) => {
            // The collector a killed gc started may outlive it: the hold stands until that ends.
            let registry = render::container_name(&settings.pod_name, render::REGISTRY_CONTAINER);
            match crate::commands::gc_site::collector_idle(podman, &registry) {
                Ok(()) => {
                    rt.block_on(crate::gc_hold::lift(&bucket)).map_err(failed)?;
                    detail.push_str(&format!(
                        "; ended an interrupted {}: writes pass again",
                        hold.describe()
                    ));
                }
                Err(e) => out.warn(&format!("{} Then run registry-up up again to end the hold.", e.message)),
            }
        }
        Some(hold) => out.warn(&format!(
            "{} holds every replica read-only: pushes are refused until it ends.",
            hold.describe()
        )),
        None => {}
    }
    Ok(((), detail))
}

/// The maintenance timer, enabled as set up, or removed when it is off.
fn maintenance(settings: &Settings, plan: &Plan, host: &HostFacts) -> Result<((), String)> {
    let units = settings.maintenance_units();
    let changed = plan
        .writes()
        .any(|c| c.file.root == Root::SystemdUnits && units.contains(&c.file.rel));
    let systemctl = crate::runtime::systemd::Systemctl::for_appliance(settings.rootless);
    let done = crate::runtime::systemd::maintenance_timer(
        &systemctl,
        &host.unit_dir(),
        &units,
        settings.maintenance.is_some(),
        changed,
    )?;
    let detail = match (settings.maintenance, done) {
        (Some(when), _) => format!("{} runs registry-up maintain {when}", units[0]),
        (None, Some(done)) => done,
        (None, None) => "none (--maintenance daily sets one up)".into(),
    };
    Ok(((), detail))
}

/// Whether clients on other hosts get through the host firewall: said, and with --open-firewall made so.
/// Openings this appliance made for a port it no longer uses are closed.
fn firewall(args: &UpArgs, out: &Reporter, settings: &Settings, host: &HostFacts) -> Result<()> {
    let dir = &settings.config_dir;
    let (old, mut kept): (Vec<_>, Vec<_>) = crate::firewall::opened(dir)?
        .into_iter()
        .partition(|o| o.port() != settings.port);
    for opening in &old {
        out.step("close old port", || {
            opening.close()?;
            Ok(((), format!("closed {} again", opening.describe())))
        })?;
    }
    if !old.is_empty() {
        crate::firewall::record(dir, &kept)?;
    }
    match crate::firewall::check(settings.port, &settings.listen, &settings.pod_name, host) {
        Verdict::Open(detail) => out.step("firewall", || Ok(((), detail))),
        Verdict::Unknown(why) if args.open_firewall => {
            out.warn(&format!(
                "--open-firewall opened nothing: whether the port is closed could not be told ({why})."
            ));
            Ok(())
        }
        Verdict::Unknown(why) => out.step("firewall", || Ok(((), format!("not checked: {why}")))),
        Verdict::Closed { openings, .. } if args.open_firewall => out.step("open firewall", || {
            for opening in &openings {
                let made = opening.open()?;
                // One record per place: the rule just made replaces one a reload took away.
                kept.retain(|k| k.place() != made.place());
                kept.push(made);
                crate::firewall::record(dir, &kept)?;
            }
            let opened: Vec<String> = openings.iter().map(|o| o.describe()).collect();
            Ok(((), format!("opened {} (registry-up down closes it)", opened.join(", "))))
        }),
        Verdict::Closed { what, openings } => {
            out.warn(&format!(
                "{what}, so clients on other hosts cannot connect: run registry-up again with --open-firewall, or \
                 open it by hand:\n{}",
                crate::firewall::commands(&openings)
            ));
            Ok(())
        }
    }
}

/// The password (when new), where the registry is, and how clients trust it.
fn closing_words(settings: &Settings, desired: &Desired) -> String {
    let mut text = String::new();
    if let Some(auth) = &desired.secrets.auth {
        let saved = settings.config_dir.join(layout::AUTH_PASSWORD);
        match auth.password_origin {
            PasswordOrigin::Generated => text.push_str(&format!(
                "\nAuthentication is on. User {} has the password {} (shown once; also in {}, mode 0600).\n",
                auth.user,
                auth.password,
                saved.display()
            )),
            PasswordOrigin::FromStdin => text.push_str(&format!(
                "\nAuthentication is on for user {}, with the password read from standard input (saved in {}).\n",
                auth.user,
                saved.display()
            )),
            PasswordOrigin::Site => text.push_str(&format!(
                "\nAuthentication is on for user {}, with the site's password (saved in {}).\n",
                auth.user,
                saved.display()
            )),
            PasswordOrigin::Kept => {}
        }
    }
    let host = settings.registry_host();
    let trust = match &desired.pki.ca_cert {
        Some(_) => format!(
            "Clients trust it with the CA {}: registry-up trust sets up this host; on others copy it to\n  \
             /etc/containers/certs.d/{host}/ca.crt (podman, skopeo, buildah) and /etc/docker/certs.d/{host}/ca.crt.",
            settings.ca_cert_path().display()
        ),
        None => "Its certificate chains to the system's trusted CAs: clients need nothing else.".to_string(),
    };
    text.push_str(&format!(
        "\nThe registry is up at https://{host}/ (pod {}).\n{trust}\nThen: podman push IMAGE {host}/NAME:TAG",
        settings.pod_name
    ));
    if settings.domain.is_ipv6() {
        text.push_str(
            "\nPodman, skopeo and buildah cannot name a registry by an IPv6 address (containers/skopeo#631; docker \
             can): give clients a DNS or /etc/hosts name for it, and add that name with --san.",
        );
    }
    text
}

fn pull_failed(
    Image {
        reference: image,
        flag,
        present,
    }: &Image,
    why: &str,
) -> Error {
    if *present {
        Error::usage(format!(
            "The image {image} could not be pulled ({why}): run with --pull missing to use the copy already in \
             Podman's image store, or load a newer one with --image-archive FILE or --bundle FILE."
        ))
    } else {
        Error::usage(format!(
            "The image {image} is not in Podman's image store and could not be pulled ({why}): load it with \
             --image-archive FILE (made by `podman save` on a connected host) or --bundle FILE (made by \
             `registry-up bundle`), or pick another with {flag}."
        ))
    }
}

/// Whether the pod's containers run other images than the names now point to.
fn images_differ(podman: &Podman, settings: &Settings, containers: &[Option<ContainerInfo>]) -> Result<bool> {
    let wanted = podman.image_ids(&[&settings.registry_image, &settings.nginx_image])?;
    let running: Vec<Option<String>> = containers
        .iter()
        .map(|c| c.as_ref().map(|c| c.image_id.clone()))
        .collect();
    Ok(running != wanted.into_iter().map(Some).collect::<Vec<_>>())
}

/// The fingerprint of the registry config this run wants running.
fn wanted_fingerprint(plan: &Plan) -> Option<String> {
    plan.files
        .iter()
        .find(|c| c.file.root == Root::Config && c.file.rel == crate::layout::REGISTRY_CONFIG)
        .and_then(|c| std::str::from_utf8(&c.file.contents).ok())
        .and_then(render::disk_fingerprint)
        .map(|f| f.written)
}

/// A user's pod stops at logout unless lingering is on: turn it on when asked, else say how.
fn linger(out: &Reporter, enable: bool, user: &str) {
    if crate::runtime::systemd::linger_enabled(user) {
        return;
    }
    if enable {
        match crate::runtime::systemd::enable_linger(user) {
            Ok(()) => out.line(&format!(
                "Lingering is now on for {user}: the pod runs without a login and starts at boot."
            )),
            Err(e) => out.warn(&e.message),
        }
    } else {
        out.warn(&format!(
            "lingering is off for {user}, so the pod stops when {user} logs out and does not start at boot: \
             run `loginctl enable-linger {user}` (as root, or with --linger)."
        ));
    }
}

fn summary(plan: &Plan, written: usize) -> String {
    let unchanged = plan
        .files
        .iter()
        .filter(|c| c.action == plan::Action::Unchanged)
        .count();
    if plan.is_noop() {
        format!("nothing changed ({unchanged} files up to date)")
    } else {
        format!("{written} written, {unchanged} unchanged")
    }
}

fn start(
    settings: &Settings,
    podman: &Podman,
    plan: &Plan,
    service: Service,
    action: PodAction,
    host: &HostFacts,
) -> Result<((), String)> {
    if action == PodAction::ReloadNginx {
        podman.reload_nginx(&render::container_name(&settings.pod_name, render::NGINX_CONTAINER))?;
        return Ok((
            (),
            "running; nginx reloaded its certificate and config without a restart".into(),
        ));
    }
    let unit = settings.unit_name();
    let systemd = Units::new(host, settings.rootless, &unit, &settings.pod_name);
    // Never two kinds of unit fighting over one pod: remove the one not chosen.
    let removed = systemd.remove_all_but(service)?;
    let removed = removed.map(|r| format!("; removed the {r}")).unwrap_or_default();
    let changed = plan
        .writes()
        .any(|c| matches!(c.file.root, Root::SystemdUnits | Root::Quadlets));
    let restart = matches!(action, PodAction::Restart(_));
    match service {
        Service::SystemdUnit => {
            systemd.start_unit(changed, restart)?;
            Ok(((), format!("systemd unit {unit} enabled and started{removed}")))
        }
        Service::Quadlet => {
            systemd.start_generated(changed, restart)?;
            Ok((
                (),
                format!("Quadlet {}.kube started as {unit}{removed}", settings.pod_name),
            ))
        }
        Service::Direct if action == PodAction::Nothing => {
            Ok(((), format!("healthy and unchanged: left running{removed}")))
        }
        Service::Direct => {
            podman.play(&settings.pod_yaml_path(), restart.then_some(settings.pod_name.as_str()))?;
            let verb = if restart { "replaced" } else { "started" };
            Ok(((), format!("{verb} with podman play kube{removed}")))
        }
    }
}

fn with_logs(e: Error, podman: &Podman, settings: &Settings, status: ExitStatus) -> Error {
    let mut message = e.message;
    for c in [render::REGISTRY_CONTAINER, render::NGINX_CONTAINER] {
        let name = render::container_name(&settings.pod_name, c);
        message.push_str(&format!(
            "\n--- last lines of {name} ---\n{}",
            podman.logs_tail(&name, 15)
        ));
    }
    message.push_str("\nFix the cause shown above and run registry-up again.");
    Error { status, message }
}
