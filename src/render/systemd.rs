//! The classic systemd unit that keeps the pod running, from templates/registry-pod.service.

use crate::settings::Settings;

const TEMPLATE: &str = include_str!("../../templates/registry-pod.service");
const QUADLET: &str = include_str!("../../templates/registry-pod.kube");
const MAINTENANCE_SERVICE: &str = include_str!("../../templates/registry-pod-maintenance.service");
const MAINTENANCE_TIMER: &str = include_str!("../../templates/registry-pod-maintenance.timer");

/// The maintenance timer and the service it starts, as (file name, contents); none without a schedule.
pub fn render_maintenance(settings: &Settings, registry_up: &str) -> Vec<(String, String)> {
    let Some(calendar) = settings.maintenance else {
        return Vec::new();
    };
    let [timer, service] = settings.maintenance_units();
    // systemd reads % as a specifier: a path with one keeps it as %%.
    let path = |p: &str| p.replace('%', "%%");
    let values = [
        ("pod_name", settings.pod_name.clone()),
        ("pod_unit", settings.unit_name()),
        ("registry_up", path(registry_up)),
        ("config_dir", path(&settings.config_dir.display().to_string())),
        ("data_dir", path(&settings.data_dir.display().to_string())),
        ("calendar", calendar.to_string()),
    ];
    let values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    vec![
        (timer, super::fill(MAINTENANCE_TIMER, &values)),
        (service, super::fill(MAINTENANCE_SERVICE, &values)),
    ]
}

/// The Quadlet `.kube` file; the generator names the unit after it.
pub fn render_quadlet(settings: &Settings) -> String {
    fill(settings, QUADLET, "")
}

pub fn render(settings: &Settings, podman: &str) -> String {
    fill(settings, TEMPLATE, podman)
}

fn fill(settings: &Settings, template: &str, podman: &str) -> String {
    super::fill(
        template,
        &[
            ("pod_name", &settings.pod_name),
            ("config_dir", &settings.config_dir.display().to_string()),
            // With S3 storage nothing of the registry's is on this host but the config folder.
            (
                "data_dir",
                &match settings.s3 {
                    None => settings.data_dir.display().to_string(),
                    Some(_) => settings.config_dir.display().to_string(),
                },
            ),
            ("podman", podman),
            ("pod_yaml", &settings.pod_yaml_path().display().to_string()),
            // A user's units have no multi-user.target; default.target starts at login, or at boot with linger.
            (
                "wanted_by",
                if settings.rootless {
                    "default.target"
                } else {
                    "multi-user.target"
                },
            ),
        ],
    )
}
