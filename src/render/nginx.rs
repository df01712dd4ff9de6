//! nginx `registry.conf` for conf.d, from templates/registry.conf.

use crate::settings::Settings;

const TEMPLATE: &str = include_str!("../../templates/registry.conf");

/// While `registry-up gc` collects: reads pass to the registry, anything that writes gets this answer from
/// nginx, so no blob or manifest appears while garbage is decided. 405 UNSUPPORTED is what distribution's
/// own read-only mode answers; clients print a 4xx error's message (a 503's they do not: measured with skopeo).
const MAINTENANCE: &str = r#"        # registry-up gc is collecting garbage: read-only until it ends.
        if ($request_method !~ ^(GET|HEAD|OPTIONS)$) {
            add_header Docker-Distribution-Api-Version registry/2.0 always;
            return 405 '{"errors":[{"code":"UNSUPPORTED","message":"read-only while registry-up gc collects garbage: pulls work, push again when it ends","detail":null}]}\n';
        }"#;

pub fn render(settings: &Settings) -> String {
    render_for(settings, false)
}

/// The conf, read-only (`maintenance`) while gc runs.
pub fn render_for(settings: &Settings, maintenance: bool) -> String {
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
            ("maintenance", if maintenance { MAINTENANCE } else { "" }),
        ],
    )
}
