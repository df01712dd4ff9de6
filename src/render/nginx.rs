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
    /// `registry-up up` changes what serves the data (image, config, storage) and proves nothing was lost.
    Upgrade,
}

impl ReadOnly {
    /// What clients print; it goes into a single-quoted nginx string holding JSON, so it has no quotes.
    fn message(self) -> &'static str {
        match self {
            ReadOnly::Gc => "read-only while registry-up gc collects garbage: pulls work, push again when it ends",
            ReadOnly::Backup => {
                "read-only while registry-up backup copies the data: pulls work, push again when it ends"
            }
            ReadOnly::Upgrade => {
                "read-only while registry-up up changes the registry and proves every image is kept: pulls work, \
                 push again when it ends"
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
            ReadOnly::Upgrade => "# registry-up read-only: upgrade",
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

/// On S3 storage, every write first asks the registry whether gc holds the site (src/gc_hold.rs):
/// reads pass at once, a 304 refuses the write with 405, a 404 lets it through. A 401 from the registry
/// (no or wrong login) is the client's answer, with the registry's challenge. A check nobody answers (the
/// registry or the store down) is a 500: writes fail closed.
const SITE_HOLD: &str = r#"
        # A write while gc holds the site (any replica's gc) is refused: see the locations below.
        # (A 401 there reaches the client with the registry's challenge: auth_request passes it on.)
        auth_request /_registry_up/gc-hold;
        error_page 403 = @registry_up_site_held;"#;

const SITE_HOLD_LOCATIONS: &str = r#"

    # Does the hold manifest stand in the shared bucket? Asked of this replica's own registry, which reads
    # the bucket: 304 when the tag `hold` names that very manifest, 404 when there is none.
    location = /_registry_up/gc-hold {
        internal;
        if ($request_method ~ ^(GET|HEAD|OPTIONS)$) {
            return 204;
        }
        proxy_pass              http://registry_up_backend/v2/{{repository}}/manifests/{{tag}};
        proxy_method            HEAD;
        proxy_http_version      1.1;
        proxy_pass_request_body off;
        proxy_set_header        Content-Length "";
        proxy_set_header        Connection "";
        proxy_set_header        Accept "{{manifest_type}}";
        proxy_set_header        If-None-Match '"{{digest}}"';
        proxy_intercept_errors  on;
        error_page 304 = @registry_up_hold_stands;
        error_page 404 = @registry_up_no_hold;
    }

    location @registry_up_hold_stands {
        return 403;
    }

    location @registry_up_no_hold {
        return 204;
    }

    location @registry_up_site_held {
        default_type application/json;
        add_header Docker-Distribution-Api-Version registry/2.0 always;
        add_header X-Registry-Up-Answered-By nginx always;
        return 405 '{"errors":[{"code":"UNSUPPORTED","message":"{{message}}","detail":null}]}\n';
    }"#;

/// What a client prints for a write refused while gc holds the site.
pub const SITE_HELD_MESSAGE: &str =
    "read-only while registry-up gc collects garbage on this site (every replica): pulls work, push again when it ends";

/// A conf already on disk (as any release of registry-up wrote it), made read-only for `read_only`'s
/// reason: the block goes first in its `location /v2/`, everything else stays as the running pod has it.
/// One already read-only is returned as it is; None when it has no such location.
pub fn made_read_only(existing: &str, read_only: ReadOnly) -> Option<String> {
    if [ReadOnly::Gc, ReadOnly::DiskFull, ReadOnly::Backup, ReadOnly::Upgrade]
        .iter()
        .any(|r| existing.contains(r.marker()))
    {
        return Some(existing.to_string());
    }
    let at = existing.find("location /v2/ {")? + "location /v2/ {".len();
    let block = super::fill(
        READ_ONLY,
        &[("marker", read_only.marker()), ("message", read_only.message())],
    );
    Some(format!("{}{block}{}", &existing[..at], &existing[at..]))
}

pub fn render(settings: &Settings) -> String {
    render_for(settings, None)
}

/// The conf, read-only for `read_only`'s reason when it is one.
pub fn render_for(settings: &Settings, read_only: Option<ReadOnly>) -> String {
    let block = read_only
        .map(|r| super::fill(READ_ONLY, &[("marker", r.marker()), ("message", r.message())]))
        .unwrap_or_default();
    let (hold, hold_locations) = match settings.s3 {
        Some(_) => (
            SITE_HOLD,
            super::fill(
                SITE_HOLD_LOCATIONS,
                &[
                    ("repository", crate::gc_hold::REPOSITORY),
                    ("tag", crate::gc_hold::TAG),
                    ("manifest_type", crate::gc_hold::MANIFEST_TYPE),
                    ("digest", &crate::gc_hold::manifest_digest()),
                    ("message", SITE_HELD_MESSAGE),
                ],
            ),
        ),
        None => ("", String::new()),
    };
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
            ("site_hold", hold),
            ("site_hold_locations", &hold_locations),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::ReadOnly;

    #[test]
    fn read_only_messages_fit_in_nginx_and_json_strings() {
        let settings = crate::render::tests::sample_settings();
        for r in [ReadOnly::Gc, ReadOnly::DiskFull, ReadOnly::Backup, ReadOnly::Upgrade] {
            // The running conf made read-only in place is the conf rendered read-only.
            assert_eq!(
                super::made_read_only(&super::render_for(&settings, None), r).as_deref(),
                Some(super::render_for(&settings, Some(r)).as_str())
            );
            assert!(!r.message().contains(['\'', '"', '\\', '$']), "{}", r.message());
        }
    }
}
