//! nginx `registry.conf` for conf.d, from templates/registry.conf.

use crate::settings::Settings;

const TEMPLATE: &str = include_str!("../../templates/registry.conf");

pub fn render(settings: &Settings) -> String {
    let names: Vec<String> = settings.cert_names().iter().map(|n| n.url_host()).collect();
    super::fill(
        TEMPLATE,
        &[
            ("port", &settings.port.to_string()),
            ("server_names", &names.join(" ")),
            ("registry_port", &crate::layout::REGISTRY_PORT.to_string()),
        ],
    )
}
