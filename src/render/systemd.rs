//! The classic systemd unit that keeps the pod running, from templates/registry-pod.service.

use crate::settings::Settings;

const TEMPLATE: &str = include_str!("../../templates/registry-pod.service");
const QUADLET: &str = include_str!("../../templates/registry-pod.kube");

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
            ("data_dir", &settings.data_dir.display().to_string()),
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
