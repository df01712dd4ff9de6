//! nginx `registry.conf` for conf.d, from templates/registry.conf.

use crate::settings::Settings;

const TEMPLATE: &str = include_str!("../../templates/registry.conf");

/// Why the appliance is read-only for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOnly {
    /// `registry-up gc` collects garbage.
    Gc,
    /// The data filesystem is above the critical watermark (the maintenance run decided).
    DiskFull,
    /// `registry-up backup` copies the data.
    Backup,
}

impl ReadOnly {
    /// What clients print; it goes into a single-quoted nginx string holding JSON, so it has no quotes.
    fn message(self) -> &'static str {
        match self {
            ReadOnly::Gc => "read-only while registry-up gc collects garbage: pulls work, push again when it ends",
            ReadOnly::Backup => {
                "read-only while registry-up backup copies the data: pulls work, push again when it ends"
            }
            ReadOnly::DiskFull => {
                "read-only: the disk of the registry is above its critical watermark; pulls work, pushes resume \
                 once space is freed (registry-up gc, or a bigger disk)"
            }
        }
    }

    /// The line the conf carries, so that a later run can tell which read-only it is.
    pub fn marker(self) -> &'static str {
        match self {
            ReadOnly::Gc => "# registry-up read-only: gc",
            ReadOnly::DiskFull => "# registry-up read-only: disk above the critical watermark",
            ReadOnly::Backup => "# registry-up read-only: backup",
        }
    }
}

/// While read-only: reads pass to the registry, anything that writes gets this answer from nginx, so no
/// blob or manifest appears. 405 UNSUPPORTED is what distribution's own read-only mode answers; clients
/// print a 4xx error's message (a 503's they do not: measured with skopeo).
const READ_ONLY: &str = r#"
        {{marker}}
        default_type application/json;
        if ($request_method !~ ^(GET|HEAD|OPTIONS)$) {
            add_header Docker-Distribution-Api-Version registry/2.0 always;
            return 405 '{"errors":[{"code":"UNSUPPORTED","message":"{{message}}","detail":null}]}\n';
        }"#;

pub fn render(settings: &Settings) -> String {
    render_for(settings, None)
}

/// The conf, read-only for `read_only`'s reason when it is one.
pub fn render_for(settings: &Settings, read_only: Option<ReadOnly>) -> String {
    let block = read_only
        .map(|r| super::fill(READ_ONLY, &[("marker", r.marker()), ("message", r.message())]))
        .unwrap_or_default();
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
            ("maintenance", &block),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::ReadOnly;

    #[test]
    fn read_only_messages_fit_in_nginx_and_json_strings() {
        for r in [ReadOnly::Gc, ReadOnly::DiskFull, ReadOnly::Backup] {
            assert!(!r.message().contains(['\'', '"', '\\', '$']), "{}", r.message());
        }
    }
}
