//! Render: settings (and the certificates and secret they need) in, file contents out. Pure: no I/O,
//! so every file can be snapshot-tested and `plan` can compare it with the disk.

pub mod clients;
mod nginx;
mod pod;
mod registry_config;
mod state;
mod systemd;

pub use nginx::{made_read_only, ReadOnly, SITE_HELD_MESSAGE};
pub use pod::{
    container_name, foreign_registry_env, socket_volume, APPLIANCE_LABEL, MANAGED_BY_LABEL, NGINX_CONTAINER,
    REGISTRY_CONTAINER,
};
pub use registry_config::{
    config_path_in_container, disk_fingerprint, read_http_secret, DiskFingerprint, FINGERPRINT_HEADER,
};

/// The nginx conf for `settings`, read-only for `read_only`'s reason when it is one.
pub fn nginx_conf(settings: &Settings, read_only: Option<ReadOnly>) -> String {
    nginx::render_for(settings, read_only)
}

use crate::layout::*;
use crate::pki::Pki;
use crate::secrets::Secrets;
use crate::settings::Settings;

/// Which folder a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Config,
    SystemdUnits,
    /// Where Podman's Quadlet generator looks for `.kube` files.
    Quadlets,
    /// A client host's root (`registry-up clients`): `rel` is the absolute path without its leading slash.
    ClientHost,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    pub root: Root,
    /// Path relative to its root.
    pub rel: String,
    pub contents: Vec<u8>,
    pub mode: u32,
    /// Who reads the file at run time, which decides what a change to it needs.
    pub reader: Reader,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// Clients, later runs, people: a change needs nothing else.
    Nobody,
    /// nginx: `nginx -s reload` picks a change up without dropping a request.
    Nginx,
    /// The registry, Podman or systemd: a change needs the pod started again.
    Pod,
}

/// Everything render needs besides the settings.
pub struct Inputs<'a> {
    pub pki: &'a Pki,
    /// The registry's `http.secret` (persistent, so upload sessions survive restarts) and auth files.
    pub secrets: &'a Secrets,
    /// Absolute path of the podman binary, for the systemd unit.
    pub podman: &'a str,
    /// Absolute path of registry-up itself, for the maintenance service.
    pub registry_up: &'a str,
    /// How the pod is kept running: decides whether the unit file is part of the output.
    pub service: Service,
}

use crate::state::Service;

pub fn render(settings: &Settings, inputs: &Inputs<'_>) -> Vec<RenderedFile> {
    let config = |rel: &str, contents: String, mode: u32, reader: Reader| RenderedFile {
        root: Root::Config,
        rel: rel.to_string(),
        contents: contents.into_bytes(),
        mode,
        reader,
    };
    let mut files = vec![
        config(SERVER_CERT, inputs.pki.server_cert.clone(), PUBLIC, Reader::Nginx),
        config(SERVER_KEY, inputs.pki.server_key.clone(), PRIVATE, Reader::Nginx),
        config(NGINX_CONF, nginx::render(settings), PUBLIC, Reader::Nginx),
        config(NGINX_PASSWD, pod::nginx_passwd(settings), PUBLIC, Reader::Pod),
        config(NGINX_GROUP, pod::nginx_group(settings), PUBLIC, Reader::Pod),
        config(
            REGISTRY_CONFIG,
            registry_config::render(
                &inputs.secrets.http_secret,
                inputs.secrets.auth.is_some(),
                settings.s3.as_ref().zip(inputs.secrets.s3.as_ref()),
            ),
            PRIVATE,
            Reader::Pod,
        ),
        config(POD_YAML, pod::render(settings), PUBLIC, Reader::Pod),
        config(STATE, state::render(settings, inputs.service), PUBLIC, Reader::Nobody),
    ];
    if let Some(key) = inputs.secrets.s3.as_ref().filter(|_| settings.s3.is_some()) {
        files.push(config(S3_CREDENTIALS, key.render(), PRIVATE, Reader::Nobody));
    }
    if let Some(ca) = &inputs.pki.ca_cert {
        files.push(config(CA_CERT, ca.clone(), PUBLIC, Reader::Nobody));
    }
    if let Some(key) = &inputs.pki.ca_key {
        files.push(config(CA_KEY, key.clone(), PRIVATE, Reader::Nobody));
    }
    if let Some(auth) = &inputs.secrets.auth {
        files.push(config(
            AUTH_PASSWORD,
            format!("{}\n", auth.password),
            PRIVATE,
            Reader::Nobody,
        ));
        files.push(config(
            HTPASSWD,
            format!("{}\n", auth.htpasswd_line),
            PRIVATE,
            Reader::Pod,
        ));
    }
    // The maintenance timer needs systemd; `up` refuses --maintenance without it.
    if inputs.service != Service::Direct {
        for (rel, contents) in systemd::render_maintenance(settings, inputs.registry_up) {
            files.push(RenderedFile {
                root: Root::SystemdUnits,
                rel,
                contents: contents.into_bytes(),
                mode: PUBLIC,
                reader: Reader::Nobody,
            });
        }
    }
    match inputs.service {
        Service::SystemdUnit => files.push(RenderedFile {
            root: Root::SystemdUnits,
            rel: settings.unit_name(),
            contents: systemd::render(settings, inputs.podman).into_bytes(),
            mode: PUBLIC,
            reader: Reader::Pod,
        }),
        Service::Quadlet => files.push(RenderedFile {
            root: Root::Quadlets,
            rel: crate::layout::quadlet_file(&settings.pod_name),
            contents: systemd::render_quadlet(settings).into_bytes(),
            mode: PUBLIC,
            reader: Reader::Pod,
        }),
        Service::Direct => {}
    }
    files
}

/// Fills `{{name}}` placeholders; panics on a placeholder left over, which only a template bug causes.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (name, value) in values {
        out = out.replace(&format!("{{{{{name}}}}}"), value);
    }
    assert!(!out.contains("{{"), "template placeholder left unfilled:\n{out}");
    out
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// The state.json `up` would write for these settings.
    pub fn state_json(settings: &crate::settings::Settings) -> String {
        super::state::render(settings, super::Service::Direct)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hostname::HostName;
    use std::path::PathBuf;

    pub fn sample_settings() -> Settings {
        Settings {
            domain: HostName::parse("registry.example.com", "d").unwrap(),
            sans: vec![HostName::parse("10.0.0.5", "d").unwrap()],
            port: 8443,
            listen: crate::listen::Listen::All { ipv6: true },
            registry_image: "docker.io/library/registry:3.1.1".into(),
            nginx_image: "docker.io/library/nginx:1.28-alpine".into(),
            pod_name: "registry-pod".into(),
            config_dir: PathBuf::from("/etc/registry-up"),
            appliance: "0123456789abcdef".into(),
            data_dir: PathBuf::from("/var/lib/registry-up/data"),
            auth_user: None,
            own_cert: None,
            rootless: false,
            worker_id: crate::host::WORKER_ID_BASE,
            watermarks: crate::disk::Watermarks::default(),
            maintenance: None,
            s3: None,
            s3_credentials: None,
        }
    }

    pub fn sample_pki() -> Pki {
        Pki {
            ca_cert: Some("CA CERT".into()),
            ca_key: Some("CA KEY".into()),
            server_cert: "SERVER CERT".into(),
            server_key: "SERVER KEY".into(),
            ca_origin: crate::pki::Origin::Kept,
            server_origin: crate::pki::Origin::Kept,
        }
    }

    fn file<'a>(files: &'a [RenderedFile], rel: &str) -> &'a str {
        let f = files
            .iter()
            .find(|f| f.rel == rel)
            .unwrap_or_else(|| panic!("{rel} not rendered"));
        std::str::from_utf8(&f.contents).unwrap()
    }

    fn rendered(service: Service) -> Vec<RenderedFile> {
        let pki = sample_pki();
        let secrets = Secrets {
            http_secret: "s3cr3t".into(),
            auth: None,
            s3: None,
        };
        let inputs = Inputs {
            pki: &pki,
            secrets: &secrets,
            podman: "/usr/bin/podman",
            registry_up: "/usr/local/bin/registry-up",
            service,
        };
        render(&sample_settings(), &inputs)
    }

    #[test]
    fn snapshots() {
        let files = rendered(Service::SystemdUnit);
        insta::assert_snapshot!("registry.conf", file(&files, NGINX_CONF));
        insta::assert_snapshot!("config.yml", file(&files, REGISTRY_CONFIG));
        insta::assert_snapshot!("registry-pod.yaml", file(&files, POD_YAML));
        insta::assert_snapshot!("registry-pod.service", file(&files, "registry-pod.service"));
        insta::assert_snapshot!("state.json", file(&files, STATE));
        let quadlet = rendered(Service::Quadlet);
        insta::assert_snapshot!("registry-pod.kube", file(&quadlet, "registry-pod.kube"));
    }

    #[test]
    fn keys_and_secrets_are_private() {
        for f in rendered(Service::SystemdUnit) {
            let secret =
                f.rel.ends_with(".key") || [REGISTRY_CONFIG, HTPASSWD, AUTH_PASSWORD].contains(&f.rel.as_str());
            assert_eq!(f.mode, if secret { 0o600 } else { 0o644 }, "{}", f.rel);
        }
    }

    #[test]
    fn auth_adds_the_htpasswd_and_password_files() {
        let pki = sample_pki();
        let auth = crate::secrets::Auth {
            user: "admin".into(),
            password: "pw".into(),
            htpasswd_line: "admin:$2b$10$hash".into(),
            password_origin: crate::secrets::PasswordOrigin::Kept,
        };
        let secrets = Secrets {
            http_secret: "s3cr3t".into(),
            auth: Some(auth),
            s3: None,
        };
        let mut settings = sample_settings();
        settings.auth_user = Some("admin".into());
        let inputs = Inputs {
            pki: &pki,
            secrets: &secrets,
            podman: "/usr/bin/podman",
            registry_up: "/usr/local/bin/registry-up",
            service: Service::Direct,
        };
        let files = render(&settings, &inputs);
        assert_eq!(file(&files, HTPASSWD), "admin:$2b$10$hash\n");
        assert_eq!(file(&files, AUTH_PASSWORD), "pw\n");
        insta::assert_snapshot!("config-auth.yml", file(&files, REGISTRY_CONFIG));
        assert!(file(&files, STATE).contains("\"auth_user\": \"admin\""));
        for f in files.iter().filter(|f| f.rel == HTPASSWD || f.rel == AUTH_PASSWORD) {
            assert_eq!(f.mode, 0o600);
        }
        // What purge removes is what render writes: a file missing from that list would be left behind.
        for f in files.iter().filter(|f| matches!(f.root, Root::Config)) {
            assert!(
                crate::owned::CONFIG_FILES.contains(&f.rel.as_str()),
                "{} is not in owned::CONFIG_FILES",
                f.rel
            );
        }
    }

    #[test]
    fn s3_storage_mounts_no_data_folder_and_keeps_the_key_private() {
        let pki = sample_pki();
        let key = crate::s3::Credentials {
            access_key: "GK1".into(),
            secret_key: "SECRET-KEY".into(),
        };
        let secrets = Secrets {
            http_secret: "s3cr3t".into(),
            auth: None,
            s3: Some(key.clone()),
        };
        let mut settings = sample_settings();
        settings.s3 = Some(crate::s3::Location::parse("http://10.0.0.5:3900", "registry", "garage").unwrap());
        let inputs = Inputs {
            pki: &pki,
            secrets: &secrets,
            podman: "/usr/bin/podman",
            registry_up: "/usr/local/bin/registry-up",
            service: Service::SystemdUnit,
        };
        let files = render(&settings, &inputs);
        let pod = file(&files, POD_YAML);
        assert!(
            !pod.contains("registry-data") && !pod.contains("/var/lib/registry-up"),
            "{pod}"
        );
        for f in &files {
            let text = String::from_utf8_lossy(&f.contents);
            let holds_key = text.contains("SECRET-KEY");
            assert_eq!(
                holds_key,
                [REGISTRY_CONFIG, S3_CREDENTIALS].contains(&f.rel.as_str()),
                "{}",
                f.rel
            );
            if holds_key {
                assert_eq!(f.mode, PRIVATE, "{}", f.rel);
            }
        }
        assert_eq!(
            crate::s3::Credentials::parse(file(&files, S3_CREDENTIALS)).unwrap(),
            key
        );
        let state = crate::state::parse_state(file(&files, STATE)).unwrap();
        assert_eq!(state.format, 2, "older versions must refuse an appliance on S3");
        assert_eq!(state.s3.unwrap().bucket, "registry");
        let unit = file(&files, "registry-pod.service");
        assert!(!unit.contains("/var/lib/registry-up"), "{unit}");
        // Without S3 nothing changes: format 1, the data folder mounted, no key file.
        let plain = rendered(Service::SystemdUnit);
        assert!(!plain.iter().any(|f| f.rel == S3_CREDENTIALS));
        assert_eq!(crate::state::parse_state(file(&plain, STATE)).unwrap().format, 1);
    }

    #[test]
    fn the_unit_is_rendered_only_for_systemd() {
        assert!(rendered(Service::SystemdUnit)
            .iter()
            .any(|f| f.root == Root::SystemdUnits));
        assert!(!rendered(Service::Direct).iter().any(|f| f.root == Root::SystemdUnits));
    }

    #[test]
    fn render_is_deterministic() {
        assert_eq!(rendered(Service::Direct), rendered(Service::Direct));
    }
}
