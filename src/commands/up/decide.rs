//! What `up` will do, decided from facts gathered beforehand: pure functions, testable without Podman
//! or systemd. The executor in mod.rs only acts on what these return.

use crate::cli::{PullPolicy, SystemdChoice};
use crate::error::{Error, Result};
use crate::host::{HostFacts, PortUse};
use crate::render::Reader;
use crate::runtime::podman::{PodStatus, PodmanVersion};
use crate::state::Service;

/// How the pod is kept running, from `--systemd` and what this host has.
pub fn service(choice: SystemdChoice, host: &HostFacts, podman: &PodmanVersion) -> Result<Service> {
    let quadlet_ok = podman.has_quadlet() && host.quadlet_generator;
    match (choice, host.systemd_running) {
        (SystemdChoice::None, _) | (SystemdChoice::Auto, false) => Ok(Service::Direct),
        (SystemdChoice::Quadlet | SystemdChoice::Unit, false) => Err(Error::usage(
            "systemd is not the init system here, so no unit can keep the pod running: use --systemd none (the pod then does not come back after a reboot).",
        )),
        (SystemdChoice::Auto, true) if quadlet_ok => Ok(Service::Quadlet),
        (SystemdChoice::Auto | SystemdChoice::Unit, true) => Ok(Service::SystemdUnit),
        (SystemdChoice::Quadlet, true) if quadlet_ok => Ok(Service::Quadlet),
        (SystemdChoice::Quadlet, true) => Err(Error::usage(format!(
            "Quadlet needs Podman 4.4 or newer with its systemd generator installed (this is Podman {podman}): use --systemd unit."
        ))),
    }
}

/// One of the two images the pod runs, as Podman's store has it before any pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub reference: String,
    /// The flag that names it, for messages.
    pub flag: &'static str,
    pub present: bool,
}

/// The images to pull: by `--pull`, never one an archive or bundle just provided, and none while a dry
/// run cannot know what the archives hold (`archives_pending`).
pub fn pulls(policy: PullPolicy, images: &[Image], provided: &[String], archives_pending: bool) -> Vec<Image> {
    images
        .iter()
        .filter(|image| {
            !archives_pending
                && match policy {
                    PullPolicy::Never => false,
                    PullPolicy::Missing => !image.present,
                    PullPolicy::Always => !provided.contains(&image.reference),
                }
        })
        .cloned()
        .collect()
}

/// The error for an image that is neither in the store nor going to be pulled, if there is one.
pub fn missing_image(policy: PullPolicy, images: &[Image], pulls: &[Image], archives_pending: bool) -> Result<()> {
    let missing = images
        .iter()
        .find(|i| !archives_pending && !i.present && !pulls.iter().any(|p| p.reference == i.reference));
    let Some(Image { reference, flag, .. }) = missing else {
        return Ok(());
    };
    let why = match policy {
        PullPolicy::Never => "and --pull never forbids pulling it",
        PullPolicy::Missing | PullPolicy::Always => "and the archives given did not hold it",
    };
    Err(Error::usage(format!(
        "The image {reference} is not in Podman's image store, {why}: load it with --image-archive FILE \
         (made by `podman save` on a connected host) or --bundle FILE, let registry-up pull it \
         (--pull missing), or pick another with {flag}."
    )))
}

/// What the pod needs after the files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodAction {
    /// Create it (there is none).
    Create,
    Nothing,
    ReloadNginx,
    /// Start it again: why, for the dry run and the report.
    Restart(RestartWhy),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartWhy {
    /// It is not running with every container up.
    Unhealthy,
    /// It runs but answers with another config, or its containers run other images than the names now
    /// point to.
    Stale,
    /// Files the registry, Podman or systemd read changed.
    Changes,
}

/// What the running pod looked like before this run.
pub struct PodFacts<'a> {
    pub status: Option<&'a PodStatus>,
    /// Healthy, but serving another config or running other images.
    pub stale: bool,
    /// Who must pick up the files this run writes.
    pub changes_need: Reader,
}

pub fn pod_action(facts: &PodFacts) -> PodAction {
    let Some(status) = facts.status else {
        return PodAction::Create;
    };
    match (status.healthy(), facts.stale, facts.changes_need) {
        (false, _, _) => PodAction::Restart(RestartWhy::Unhealthy),
        (true, true, _) => PodAction::Restart(RestartWhy::Stale),
        (true, false, Reader::Pod) => PodAction::Restart(RestartWhy::Changes),
        (true, false, Reader::Nginx) => PodAction::ReloadNginx,
        (true, false, Reader::Nobody) => PodAction::Nothing,
    }
}

/// Whether the port must be checked free: our own pod holds its port (conmon) even when degraded, and
/// `play --replace` frees it.
pub fn port_must_be_free(pod_exists: bool, same_port: bool) -> bool {
    !(pod_exists && same_port)
}

/// A port held by another program is refused before anything is written.
pub fn port_problem(port: u16, used: &PortUse) -> Result<()> {
    match used {
        PortUse::Free => Ok(()),
        PortUse::Taken(owner) => {
            let who = match owner {
                Some((pid, name)) => format!(" by {name} (pid {pid})"),
                None => String::new(),
            };
            Err(Error::usage(format!(
                "Port {port} is already in use on this host{who}: stop that program, or choose another port with --port."
            )))
        }
    }
}

/// The dry run's line about the pod.
pub fn describe_pod(status: Option<&PodStatus>, action: PodAction) -> String {
    match (status, action) {
        (None, _) | (_, PodAction::Create) => "would be created and started".to_string(),
        (Some(_), PodAction::Nothing) => "is healthy and would be left alone".to_string(),
        (Some(_), PodAction::ReloadNginx) => {
            "would keep running; nginx would reload its certificate and config".to_string()
        }
        (Some(s), PodAction::Restart(RestartWhy::Unhealthy)) => {
            format!("is {} and would be restarted", s.state.to_lowercase())
        }
        (Some(_), PodAction::Restart(RestartWhy::Stale)) => {
            "runs but does not serve registry-up's configuration, and would be restarted".to_string()
        }
        (Some(_), PodAction::Restart(RestartWhy::Changes)) => "would be restarted to pick up the changes".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> PodmanVersion {
        text.parse().unwrap()
    }

    #[test]
    fn the_service_follows_systemd_quadlet_and_the_flag() {
        let v43 = version("4.3.1");
        let v54 = version("5.4.2");
        let booted = HostFacts::fixed(true, true, true);
        let no_init = HostFacts::fixed(true, false, true);
        let no_generator = HostFacts::fixed(false, true, false);
        assert_eq!(service(SystemdChoice::Auto, &booted, &v54).unwrap(), Service::Quadlet);
        assert_eq!(
            service(SystemdChoice::Auto, &booted, &v43).unwrap(),
            Service::SystemdUnit
        );
        assert_eq!(
            service(SystemdChoice::Auto, &no_generator, &v54).unwrap(),
            Service::SystemdUnit
        );
        assert_eq!(service(SystemdChoice::Auto, &no_init, &v54).unwrap(), Service::Direct);
        assert_eq!(
            service(SystemdChoice::Unit, &booted, &v54).unwrap(),
            Service::SystemdUnit
        );
        assert_eq!(service(SystemdChoice::None, &booted, &v54).unwrap(), Service::Direct);
        let e = service(SystemdChoice::Quadlet, &booted, &v43).unwrap_err();
        assert!(
            e.message.contains("Podman 4.3.1") && e.message.contains("--systemd unit"),
            "{e}"
        );
        let e = service(SystemdChoice::Unit, &no_init, &v54).unwrap_err();
        assert!(e.message.contains("--systemd none"), "{e}");
    }

    fn images(registry_present: bool, nginx_present: bool) -> Vec<Image> {
        vec![
            Image {
                reference: "r".into(),
                flag: "--registry-image",
                present: registry_present,
            },
            Image {
                reference: "n".into(),
                flag: "--nginx-image",
                present: nginx_present,
            },
        ]
    }

    fn names(images: &[Image]) -> Vec<&str> {
        images.iter().map(|i| i.reference.as_str()).collect()
    }

    #[test]
    fn pulls_follow_the_policy_and_spare_what_archives_provided() {
        let some_missing = images(true, false);
        assert_eq!(names(&pulls(PullPolicy::Missing, &some_missing, &[], false)), ["n"]);
        assert!(pulls(PullPolicy::Never, &some_missing, &[], false).is_empty());
        assert_eq!(
            names(&pulls(PullPolicy::Always, &some_missing, &["n".into()], false)),
            ["r"]
        );
        assert!(pulls(PullPolicy::Always, &some_missing, &[], true).is_empty());
    }

    #[test]
    fn a_missing_image_that_will_not_be_pulled_stops_the_run() {
        let all = images(false, true);
        let e = missing_image(PullPolicy::Never, &all, &[], false).unwrap_err();
        assert!(
            e.message.contains("The image r") && e.message.contains("--pull never"),
            "{e}"
        );
        let planned = pulls(PullPolicy::Missing, &all, &[], false);
        assert!(missing_image(PullPolicy::Missing, &all, &planned, false).is_ok());
        assert!(
            missing_image(PullPolicy::Never, &all, &[], true).is_ok(),
            "a dry run with archives cannot know"
        );
    }

    fn pod(state: &str, containers: &[&str]) -> PodStatus {
        PodStatus {
            labels: Default::default(),
            state: state.into(),
            containers: containers.iter().map(|s| ("c".to_string(), s.to_string())).collect(),
        }
    }

    #[test]
    fn the_pod_is_left_alone_reloaded_or_restarted_as_the_changes_need() {
        let running = pod("Running", &["running", "running"]);
        let degraded = pod("Degraded", &["running", "exited"]);
        let act = |status, stale, changes_need| {
            pod_action(&PodFacts {
                status,
                stale,
                changes_need,
            })
        };
        assert_eq!(act(None, false, Reader::Nobody), PodAction::Create);
        assert_eq!(act(Some(&running), false, Reader::Nobody), PodAction::Nothing);
        assert_eq!(act(Some(&running), false, Reader::Nginx), PodAction::ReloadNginx);
        assert_eq!(
            act(Some(&running), false, Reader::Pod),
            PodAction::Restart(RestartWhy::Changes)
        );
        assert_eq!(
            act(Some(&running), true, Reader::Nobody),
            PodAction::Restart(RestartWhy::Stale)
        );
        let action = act(Some(&degraded), false, Reader::Nobody);
        assert_eq!(action, PodAction::Restart(RestartWhy::Unhealthy));
        assert_eq!(
            describe_pod(Some(&degraded), action),
            "is degraded and would be restarted"
        );
    }

    #[test]
    fn a_port_held_by_another_program_is_refused_but_our_own_pod_may_hold_it() {
        let taken = PortUse::Taken(Some((42, "nginx".into())));
        let e = port_problem(8443, &taken).unwrap_err();
        assert!(
            e.message.contains("Port 8443") && e.message.contains("nginx (pid 42)"),
            "{e}"
        );
        assert!(port_problem(8443, &PortUse::Free).is_ok());
        assert!(!port_must_be_free(true, true), "our own pod holds it");
        assert!(port_must_be_free(true, false), "a new port must be free");
        assert!(port_must_be_free(false, true));
    }
}
