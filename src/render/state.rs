//! `state.json`: the settings in force, so later commands (verify, status, upgrades) read them back.

use serde::{Deserialize, Serialize};

use crate::settings::Settings;

/// How the pod is kept running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    /// A systemd unit starts it at boot and restarts it.
    SystemdUnit,
    /// A Quadlet `.kube` file, from which Podman's generator makes the unit (Podman 4.4 and later).
    Quadlet,
    /// Started directly with podman: it will not come back after a reboot.
    Direct,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Bumped when a field changes meaning.
    pub format: u32,
    pub domain: String,
    pub sans: Vec<String>,
    pub port: u16,
    pub registry_image: String,
    pub nginx_image: String,
    pub pod_name: String,
    pub config_dir: String,
    pub data_dir: String,
    pub ca_cert: String,
    pub service: Service,
    /// The htpasswd user when authentication is on (its password is in auth/password).
    #[serde(default)]
    pub auth_user: Option<String>,
    /// The server certificate was brought by the user (--cert/--key), not issued by registry-up.
    #[serde(default)]
    pub own_cert: bool,
    /// Installed by an ordinary user (rootless Podman, user units).
    #[serde(default)]
    pub rootless: bool,
}

pub fn render(settings: &Settings, service: Service) -> String {
    let state = State {
        format: 1,
        domain: settings.domain.to_string(),
        sans: settings.sans.iter().map(|s| s.to_string()).collect(),
        port: settings.port,
        registry_image: settings.registry_image.clone(),
        nginx_image: settings.nginx_image.clone(),
        pod_name: settings.pod_name.clone(),
        config_dir: settings.config_dir.display().to_string(),
        data_dir: settings.data_dir.display().to_string(),
        ca_cert: settings.ca_cert_path().display().to_string(),
        service,
        auth_user: settings.auth_user.clone(),
        own_cert: settings.own_cert.is_some(),
        rootless: settings.rootless,
    };
    let mut text = serde_json::to_string_pretty(&state).expect("state always serialises");
    text.push('\n');
    text
}
