//! nginx `registry.conf` for conf.d, from templates/registry.conf.

use crate::settings::Settings;

const TEMPLATE: &str = include_str!("../../templates/registry.conf");

pub fn render(settings: &Settings) -> String {
    let names: Vec<String> = settings.cert_names().iter().map(|n| n.url_host()).collect();
    // `[::]` listens on IPv6 only (nginx sets ipv6only=on), next to the IPv4 socket.
    let listen: Vec<String> = settings
        .listen
        .sockets(settings.port)
        .iter()
        .map(|s| format!("listen {s} ssl;"))
        .collect();
    super::fill(
        TEMPLATE,
        &[
            ("listen", &listen.join("\n    ")),
            ("server_names", &names.join(" ")),
            ("registry_socket", crate::layout::REGISTRY_SOCKET),
        ],
    )
}
