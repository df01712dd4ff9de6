//! `registry-up up`: settings → certificates → render → plan → apply → start → wait → verify.

use std::path::{Path, PathBuf};
use std::time::Duration;

use time::OffsetDateTime;

use crate::bundle;
use crate::cli::{PullPolicy, RenderArgs, SystemdChoice, UpArgs};
use crate::error::{Error, ExitCode, Result};
use crate::pki::{self, Origin, Pki, Renew};
use crate::plan::{self, Plan, WantedDir};
use crate::registry_image;
use crate::render::{self, Inputs, Reader, RenderedFile, Root, Service};
use crate::report::Reporter;
use crate::runtime::podman::Podman;
use crate::secrets::{self, PasswordOrigin, Secrets};
use crate::settings::{self, Settings};
use crate::verify::{self, Target};

/// Everything `up` and `render` compute before touching anything.
struct Desired {
    pki: Pki,
    secrets: Secrets,
    files: Vec<RenderedFile>,
}

/// `dir` holds the existing certificates and secrets (the config dir, or render's --out).
fn desired(
    settings: &Settings,
    dir: &Path,
    podman: &str,
    service: Service,
    password: Option<String>,
    renew: Renew,
) -> Result<Desired> {
    let now = OffsetDateTime::now_utc();
    let pki = match &settings.own_cert {
        Some(files) => crate::own_cert::load(files, &settings.cert_names(), now)?,
        None => pki::ensure(pki::Existing::read(dir)?, &settings.cert_names(), now, dir, renew)?,
    };
    let secrets = secrets::ensure(dir, settings.auth_user.as_deref(), password)?;
    let files = render::render(
        settings,
        &Inputs {
            pki: &pki,
            secrets: &secrets,
            podman,
            service,
        },
    );
    Ok(Desired { pki, secrets, files })
}

fn describe(origin: &Origin, what: &str) -> String {
    match origin {
        Origin::Kept => format!("{what} kept"),
        Origin::New => format!("{what} created"),
        Origin::Reissued(why) => format!("{what} re-issued because {why}"),
        Origin::Provided => format!("{what} as given"),
    }
}

/// Whether Podman `version` (such as 4.3.1 or 5.4.2) has Quadlet: 4.4 and later.
fn has_quadlet(version: &str) -> bool {
    let mut parts = version.split(['.', '-', '~']).map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (4, 4)
}

/// How the pod is kept running, from `--systemd` and what this host has.
fn choose_service(choice: SystemdChoice, podman_version: &str) -> Result<Service> {
    let quadlet_ok = has_quadlet(podman_version) && crate::paths::quadlet_generator_installed();
    match (choice, crate::sys::systemd_running()) {
        (SystemdChoice::None, _) | (SystemdChoice::Auto, false) => Ok(Service::Direct),
        (SystemdChoice::Quadlet | SystemdChoice::Unit, false) => Err(Error::usage(
            "systemd is not the init system here, so no unit can keep the pod running: use --systemd none (the pod then does not come back after a reboot).",
        )),
        (SystemdChoice::Auto, true) if quadlet_ok => Ok(Service::Quadlet),
        (SystemdChoice::Auto | SystemdChoice::Unit, true) => Ok(Service::SystemdUnit),
        (SystemdChoice::Quadlet, true) if quadlet_ok => Ok(Service::Quadlet),
        (SystemdChoice::Quadlet, true) => Err(Error::usage(format!(
            "Quadlet needs Podman 4.4 or newer with its systemd generator installed (this is Podman {podman_version}): use --systemd unit."
        ))),
    }
}

fn wanted_dirs(settings: &Settings, service: Service) -> Vec<WantedDir> {
    let dir = |path: PathBuf, enforce_mode| WantedDir {
        path,
        mode: 0o700,
        enforce_mode,
    };
    let auth = settings
        .auth_user
        .as_ref()
        .map(|_| dir(settings.config_dir.join("auth"), true));
    let ca = settings
        .own_cert
        .is_none()
        .then(|| dir(settings.config_dir.join("ca"), true));
    let mut dirs = vec![
        dir(settings.config_dir.clone(), false),
        dir(settings.config_dir.join("tls"), true),
        dir(settings.config_dir.join("nginx"), true),
        dir(settings.config_dir.join("registry"), true),
        dir(settings.data_dir.clone(), false),
    ];
    dirs.extend(auth);
    dirs.extend(ca);
    // The folders systemd and Quadlet read may not exist yet (a user's never do).
    let shared = |path: PathBuf| WantedDir {
        path,
        mode: 0o755,
        enforce_mode: false,
    };
    match service {
        Service::SystemdUnit => dirs.push(shared(crate::paths::unit_dir())),
        Service::Quadlet => dirs.push(shared(crate::paths::quadlet_dir())),
        Service::Direct => {}
    }
    dirs
}

fn host_path(settings: &Settings, file: &RenderedFile) -> PathBuf {
    match file.root {
        Root::Config => settings.config_dir.join(&file.rel),
        Root::SystemdUnits => crate::paths::unit_dir().join(&file.rel),
        Root::Quadlets => crate::paths::quadlet_dir().join(&file.rel),
    }
}

fn check_port_free(port: u16) -> Result<()> {
    match std::net::TcpListener::bind(("0.0.0.0", port)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let who = match crate::sys::port_owner(port) {
                Some((pid, name)) => format!(" by {name} (pid {pid})"),
                None => String::new(),
            };
            Err(Error::usage(format!(
                "Port {port} is already in use on this host{who}: stop that program, or choose another port with --port."
            )))
        }
        // Binding a low port as non-root is refused here but may work for Podman; let Podman decide.
        Err(_) => Ok(()),
    }
}

/// What the pod needs after the files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PodAction {
    Nothing,
    ReloadNginx,
    Restart,
}

/// `up`; `renew` forces a new server certificate (or CA), as `certs renew` asks.
pub fn run(args: &UpArgs, rt: &tokio::runtime::Runtime, renew: Renew) -> Result<()> {
    let out = Reporter::new();
    let previous = settings::read_state(&args.setup.config_dir)?;
    let mut settings = Settings::resolve(&args.setup, previous.as_ref())?;
    settings.check_port_allowed()?;
    // A bundle names the images it holds: they are the ones to run, unless flags say otherwise.
    let bundle = match &args.bundle {
        Some(path) => Some(out.step(&format!("check bundle {}", path.display()), || {
            let checked = bundle::check(path)?;
            let detail = format!("{} images, every checksum matches", checked.manifest.images.len());
            Ok((checked, detail))
        })?),
        None => None,
    };
    if let Some(checked) = &bundle {
        let mut setup = args.setup.clone();
        setup.registry_image = setup.registry_image.or(checked.reference("registry").map(String::from));
        setup.nginx_image = setup.nginx_image.or(checked.reference("nginx").map(String::from));
        settings = Settings::resolve(&setup, previous.as_ref())?;
    }
    let password = args
        .setup
        .auth_password_stdin
        .then(|| secrets::password_from_stdin("--auth-password-stdin"))
        .transpose()?;
    settings::check_writable(&[
        (&settings.config_dir, "--config-dir"),
        (&settings.data_dir, "--data-dir"),
    ])?;
    for archive in &args.image_archives {
        if !archive.is_file() {
            return Err(Error::usage(format!(
                "The image archive {} does not exist or is not a file: give --image-archive a file made by `podman save`.",
                archive.display()
            )));
        }
    }
    let podman = Podman::find()?;

    // Images first: a missing image must stop the run before any file is written.
    // The names the bundle and the archives loaded: those images are never pulled.
    let mut provided: Vec<String> = Vec::new();
    if let (Some(checked), false) = (&bundle, args.dry_run) {
        out.step("load bundle", || Ok(((), checked.load(&podman)?.join(", "))))?;
        provided.extend(checked.manifest.images.iter().map(|i| full_name(&i.reference)));
    }
    if !args.dry_run {
        for archive in &args.image_archives {
            let summary = out.step(&format!("load {}", archive.display()), || {
                let summary = podman.load(archive)?;
                Ok((summary.clone(), summary))
            })?;
            provided.extend(loaded_names(&summary));
        }
    }
    // A dry run does not load archives, so it cannot tell what they hold.
    let archives_pending = args.dry_run && (!args.image_archives.is_empty() || bundle.is_some());
    // What Podman knows, asked all at once: each podman call costs tens of milliseconds.
    let images = [
        (&settings.registry_image, "--registry-image"),
        (&settings.nginx_image, "--nginx-image"),
    ];
    let (version, present, status, image_config) = std::thread::scope(|scope| {
        let version = scope.spawn(|| podman.version());
        // Fails for a missing image; asked again after a pull.
        let image_config = scope.spawn(|| podman.image_config(&settings.registry_image));
        let present: Vec<_> = images
            .iter()
            .map(|(image, _)| scope.spawn(|| podman.image_exists(image)))
            .collect();
        let status = scope.spawn(|| podman.pod_status(&settings.pod_name));
        let present: Vec<Result<bool>> = present.into_iter().map(|p| p.join().expect("podman thread")).collect();
        (
            version.join().expect("podman thread"),
            present,
            status.join().expect("podman thread"),
            image_config.join().expect("podman thread"),
        )
    });
    let version = version?;
    let service = choose_service(args.setup.systemd, &version)?;
    let present = present.into_iter().collect::<Result<Vec<bool>>>()?;
    let pulls: Vec<(&String, &str, bool)> = images
        .iter()
        .zip(&present)
        .filter(|((image, _), present)| {
            !archives_pending
                && match args.pull {
                    PullPolicy::Never => false,
                    PullPolicy::Missing => !**present,
                    PullPolicy::Always => !provided.contains(image),
                }
        })
        .map(|((image, flag), present)| (*image, *flag, *present))
        .collect();
    if !args.dry_run {
        for (image, flag, present) in &pulls {
            out.download(&format!("pull {image}"), |progress| {
                podman
                    .pull(image, Duration::from_secs(args.pull_timeout), progress)
                    .map_err(|why| pull_failed(image, flag, *present, &why))
            })?;
        }
    }
    let will_pull = |image: &String| pulls.iter().any(|(p, _, _)| *p == image);
    out.step("check images", || {
        for ((image, flag), present) in images.iter().zip(&present) {
            if !archives_pending && !present && !will_pull(image) {
                let why = match args.pull {
                    PullPolicy::Never => "and --pull never forbids pulling it",
                    PullPolicy::Missing | PullPolicy::Always => "and the archives given did not hold it",
                };
                return Err(Error::usage(format!(
                    "The image {image} is not in Podman's image store, {why}: load it with --image-archive FILE \
                     (made by `podman save` on a connected host) or --bundle FILE, let registry-up pull it \
                     (--pull missing), or pick another with {flag}."
                )));
            }
        }
        let state = |image: &String| match (archives_pending, args.dry_run && will_pull(image)) {
            (true, _) => "expected from the archives",
            (false, true) => "to be pulled",
            (false, false) => "present",
        };
        // The registry must be one whose layout runs our config (else auth and the rest are silently off).
        let layout = if archives_pending || (args.dry_run && !present[0]) {
            ", registry image layout checked once it is there".to_string()
        } else {
            let config = match image_config {
                Ok(config) if !will_pull(&settings.registry_image) => config,
                _ => podman.image_config(&settings.registry_image)?,
            };
            format!(
                ", registry in the {}",
                registry_image::layout(&settings.registry_image, &config)?.describe()
            )
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
    // New image content under the same names (pulled or loaded) must replace the running containers.
    let images_changed = (!pulls.is_empty() || !provided.is_empty())
        && !args.dry_run
        && status.as_ref().is_ok_and(|s| s.is_some())
        && images_differ(&podman, &settings)?;

    let podman_bin = podman.bin.display().to_string();
    let desired = out.step("certificates", || {
        let d = desired(&settings, &settings.config_dir, &podman_bin, service, password, renew)?;
        let detail = format!(
            "{}, {}",
            describe(&d.pki.ca_origin, "CA"),
            describe(&d.pki.server_origin, "server certificate")
        );
        Ok((d, detail))
    })?;
    let files = desired
        .files
        .into_iter()
        .map(|f| (host_path(&settings, &f), f))
        .collect();
    let plan = plan::plan(wanted_dirs(&settings, service), files)?;

    let target = Target {
        host: settings.domain.url_host(),
        port: settings.port,
        ca_pem: desired.pki.ca_cert.as_ref().map(|c| c.as_bytes().to_vec()),
        credentials: desired
            .secrets
            .auth
            .as_ref()
            .map(|a| (a.user.clone(), a.password.clone())),
    };
    let status = status?;
    let running = status.as_ref().is_some_and(|s| s.healthy());
    // Running containers are not enough: a pod left alone must answer through the proxy with the config
    // registry-up wants (its fingerprint header), or it is replaced.
    let stale = running
        && plan.pod_needs() != Reader::Pod
        && (images_changed
            || rt
                .block_on(verify::served_fingerprint(&target, Duration::from_secs(5)))
                .is_some_and(|served| served != wanted_fingerprint(&plan)));
    let healthy = running && !stale;
    let action = match (healthy, plan.pod_needs()) {
        (false, _) | (true, Reader::Pod) => PodAction::Restart,
        (true, Reader::Nginx) => PodAction::ReloadNginx,
        (true, Reader::Nobody) => PodAction::Nothing,
    };
    let same_port = previous.as_ref().is_some_and(|s| s.port == settings.port);
    // Our own pod holds its port (conmon) even when degraded; play --replace frees it.
    if !(status.is_some() && same_port) {
        check_port_free(settings.port)?;
    }

    if args.dry_run {
        out.line(&format!(
            "Plan for {} (dry run: nothing is changed):",
            settings.pod_name
        ));
        out.line(&plan.to_string());
        let pod = match (&status, action) {
            (None, _) => "would be created and started".to_string(),
            (Some(_), PodAction::Nothing) => "is healthy and would be left alone".to_string(),
            (Some(_), PodAction::ReloadNginx) => {
                "would keep running; nginx would reload its certificate and config".to_string()
            }
            (Some(s), PodAction::Restart) if !s.healthy() => {
                format!("is {} and would be restarted", s.state.to_lowercase())
            }
            (Some(_), PodAction::Restart) if stale => {
                "runs but does not serve registry-up's configuration, and would be restarted".to_string()
            }
            (Some(_), PodAction::Restart) => "would be restarted to pick up the changes".to_string(),
        };
        out.line(&format!("  pod       {} {pod}", settings.pod_name));
        for (image, _, _) in &pulls {
            out.line(&format!("  pull      {image} (--pull {})", args.pull.name()));
        }
        return Ok(());
    }

    out.step("write files", || {
        let n = crate::apply::apply(&plan)?;
        Ok(((), summary(&plan, n)))
    })?;

    out.step("start pod", || {
        start(&settings, &podman, &plan, service, action, status.is_some())
    })?;
    if settings.rootless && service != Service::Direct {
        linger(&out, args.setup.linger);
    }
    if service == Service::Direct {
        out.warn(&format!(
            "systemd is not running on this host, so the pod {} was started directly and will not come back after \
             a reboot: run registry-up again after booting.",
            settings.pod_name
        ));
    }

    out.step("wait for registry", || {
        rt.block_on(verify::wait_ready(&target, Duration::from_secs(args.wait_timeout)))
            .map(|d| ((), d))
            .map_err(|e| with_logs(e, &podman, &settings, ExitCode::Runtime))
    })?;

    // What `up` is about to promise (auth on, this config) is proven on the running registry first.
    out.step("check auth and config", || {
        let config = verify::ConfigFile::read(settings.config_dir.join(render::REGISTRY_CONFIG));
        let checks = rt.block_on(verify::live_checks(&target, Some(&config), Duration::from_secs(10)));
        let mut failed: Vec<String> = checks
            .iter()
            .filter(|c| c.status != verify::Status::Pass)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        if !failed.is_empty() {
            if let Some(auth) = &desired.secrets.auth {
                // Printed nowhere else on a failed run, and a later run keeps it silently.
                let saved = settings.config_dir.join(render::AUTH_PASSWORD);
                failed.push(format!("(The password of {} is in {}.)", auth.user, saved.display()));
            }
            return Err(with_logs(
                Error::verify(failed.join("\n")),
                &podman,
                &settings,
                ExitCode::VerifyFailed,
            ));
        }
        let auth = if target.credentials.is_some() {
            "anonymous requests get 401"
        } else {
            "no password, as set up"
        };
        Ok(((), format!("{auth}; the registry runs {}", config.path.display())))
    })?;

    if !args.no_verify {
        out.step("verify push/pull", || {
            let trip = rt.block_on(verify::round_trip(
                &target,
                verify::DEFAULT_SIZE,
                Duration::from_secs(60),
            ))?;
            trip.cleanup.as_ref().map_err(|e| Error::verify(e.message.clone()))?;
            Ok(((), trip.summary()))
        })?;
    }

    if let Some(auth) = &desired.secrets.auth {
        let saved = settings.config_dir.join(render::AUTH_PASSWORD);
        match auth.password_origin {
            PasswordOrigin::Generated => out.line(&format!(
                "\nAuthentication is on. User {} has the password {} (shown once; also in {}, mode 0600).",
                auth.user,
                auth.password,
                saved.display()
            )),
            PasswordOrigin::FromStdin => out.line(&format!(
                "\nAuthentication is on for user {}, with the password read from standard input (saved in {}).",
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
    out.line(&format!(
        "\nThe registry is up at https://{host}/ (pod {}).\n{trust}\nThen: podman push IMAGE {host}/NAME:TAG",
        settings.pod_name
    ));
    Ok(())
}

/// The names `podman load` reports (`Loaded image: NAME` lines, joined with ", " by Podman::load), written
/// in full as settings write image names (`registry:3` is `docker.io/library/registry:3`).
fn loaded_names(summary: &str) -> Vec<String> {
    summary
        .split([',', '\n'])
        .map(|part| {
            let part = part.trim();
            part.strip_prefix("Loaded image(s):")
                .or_else(|| part.strip_prefix("Loaded image:"))
                .unwrap_or(part)
                .trim()
        })
        .filter(|name| !name.is_empty())
        .map(full_name)
        .collect()
}

fn full_name(name: &str) -> String {
    name.parse::<oci_client::Reference>()
        .map(|r| r.whole())
        .unwrap_or_else(|_| name.to_string())
}

fn pull_failed(image: &str, flag: &str, present: bool, why: &str) -> Error {
    if present {
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
fn images_differ(podman: &Podman, settings: &Settings) -> Result<bool> {
    let wanted = podman.image_ids(&[&settings.registry_image, &settings.nginx_image])?;
    let running = podman.container_image_ids(&[
        &format!("{}-{}", settings.pod_name, render::REGISTRY_CONTAINER),
        &format!("{}-{}", settings.pod_name, render::NGINX_CONTAINER),
    ]);
    Ok(running != wanted.into_iter().map(Some).collect::<Vec<_>>())
}

/// The fingerprint of the registry config this run wants running.
fn wanted_fingerprint(plan: &Plan) -> Option<String> {
    plan.files
        .iter()
        .find(|c| c.file.root == Root::Config && c.file.rel == render::REGISTRY_CONFIG)
        .and_then(|c| std::str::from_utf8(&c.file.contents).ok())
        .and_then(render::disk_fingerprint)
        .map(|f| f.written)
}

/// A user's pod stops at logout unless lingering is on: turn it on when asked, else say how.
fn linger(out: &Reporter, enable: bool) {
    let user = crate::paths::user_name();
    if crate::runtime::systemd::linger_enabled(&user) {
        return;
    }
    if enable {
        match crate::runtime::systemd::enable_linger(&user) {
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
    exists: bool,
) -> Result<((), String)> {
    if action == PodAction::ReloadNginx {
        podman.reload_nginx(&format!("{}-{}", settings.pod_name, render::NGINX_CONTAINER))?;
        return Ok((
            (),
            "running; nginx reloaded its certificate and config without a restart".into(),
        ));
    }
    let unit = settings.unit_name();
    let systemd = crate::runtime::systemd::Units::new(settings.rootless, &unit, &settings.pod_name);
    // Never two kinds of unit fighting over one pod: remove the one not chosen.
    let removed = systemd.remove_all_but(service)?;
    let removed = removed.map(|r| format!("; removed the {r}")).unwrap_or_default();
    let changed = plan
        .writes()
        .any(|c| matches!(c.file.root, Root::SystemdUnits | Root::Quadlets));
    let restart = action == PodAction::Restart && exists;
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
            podman.play(&settings.pod_yaml_path(), exists)?;
            let verb = if exists { "replaced" } else { "started" };
            Ok(((), format!("{verb} with podman play kube{removed}")))
        }
    }
}

fn with_logs(e: Error, podman: &Podman, settings: &Settings, code: ExitCode) -> Error {
    let mut message = e.message;
    for c in [render::REGISTRY_CONTAINER, render::NGINX_CONTAINER] {
        let name = format!("{}-{c}", settings.pod_name);
        message.push_str(&format!(
            "\n--- last lines of {name} ---\n{}",
            podman.logs_tail(&name, 15)
        ));
    }
    message.push_str("\nFix the cause shown above and run registry-up again.");
    Error { code, message }
}

/// `registry-up render --out DIR`: the same files as `up`, into DIR, as they would be on the host.
pub fn render_to(args: &RenderArgs) -> Result<()> {
    let settings = Settings::resolve(&args.setup, None)?;
    let out_dir = &args.out;
    settings::check_writable(&[(out_dir, "--out")])?;
    let podman = crate::runtime::which("podman")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/usr/bin/podman".into());
    let password = args
        .setup
        .auth_password_stdin
        .then(|| secrets::password_from_stdin("--auth-password-stdin"))
        .transpose()?;
    let desired = desired(
        &settings,
        out_dir,
        &podman,
        match args.setup.systemd {
            SystemdChoice::Quadlet => Service::Quadlet,
            SystemdChoice::None => Service::Direct,
            SystemdChoice::Auto | SystemdChoice::Unit => Service::SystemdUnit,
        },
        password,
        Renew::IfNeeded,
    )?;
    let dirs = ["", "ca", "tls", "nginx", "registry", "auth"]
        .iter()
        .map(|d| WantedDir {
            path: out_dir.join(d),
            mode: 0o700,
            enforce_mode: !d.is_empty(),
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
        crate::paths::unit_dir().display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn loaded_names_are_read_from_podman_load() {
        assert_eq!(
            super::loaded_names("Loaded image: localhost/a/registry:1, Loaded image: docker.io/library/nginx:1"),
            ["localhost/a/registry:1", "docker.io/library/nginx:1"]
        );
        assert_eq!(
            super::loaded_names("Loaded image(s): registry:3,localhost/b:2"),
            ["docker.io/library/registry:3", "localhost/b:2"]
        );
        assert!(super::loaded_names("").is_empty());
    }

    #[test]
    fn quadlet_comes_with_podman_4_4() {
        assert!(!super::has_quadlet("4.3.1"));
        assert!(super::has_quadlet("4.4.0"));
        assert!(super::has_quadlet("5.4.2"));
        assert!(super::has_quadlet("4.9.3-dev"));
        assert!(!super::has_quadlet("3.4.4"));
        assert!(!super::has_quadlet("garbage"));
    }
}
