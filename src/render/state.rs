//! `state.json` from the settings: what later commands (verify, status, upgrades) read back.

use crate::settings::Settings;
use crate::state::{Service, State};

pub fn render(settings: &Settings, service: Service) -> String {
    let state = State {
        format: if settings.s3.is_some() { 2 } else { 1 },
        domain: settings.domain.to_string(),
        sans: settings.sans.iter().map(|s| s.to_string()).collect(),
        port: settings.port,
        listen: settings.listen.saved(),
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
        disk_high: settings.watermarks.high,
        disk_critical: settings.watermarks.critical,
        maintenance: settings.maintenance.map(String::from),
        s3: settings.s3.clone(),
    };
    let mut text = serde_json::to_string_pretty(&state).expect("state always serialises");
    text.push('\n');
    text
}
