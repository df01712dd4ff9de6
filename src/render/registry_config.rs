//! The distribution registry's `config.yml`, from typed structs.

use serde::{Deserialize, Serialize};

use crate::s3::{Credentials, Location};

#[derive(Serialize, Deserialize)]
struct Config {
    version: String,
    log: Log,
    storage: Storage,
    http: Http,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    auth: Option<Auth>,
    health: Health,
}

#[derive(Serialize, Deserialize)]
struct Auth {
    htpasswd: Htpasswd,
}

#[derive(Serialize, Deserialize)]
struct Htpasswd {
    realm: String,
    path: String,
}

#[derive(Serialize, Deserialize)]
struct Log {
    level: String,
    fields: Fields,
}

#[derive(Serialize, Deserialize)]
struct Fields {
    service: String,
}

#[derive(Serialize, Deserialize)]
struct Storage {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    filesystem: Option<Filesystem>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    s3: Option<S3>,
    delete: Enabled,
    /// With S3: clients are never sent to the object store's address (they may not reach it, and its
    /// answers would bypass nginx).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    redirect: Option<Redirect>,
}

#[derive(Serialize, Deserialize)]
struct S3 {
    region: String,
    regionendpoint: String,
    /// bucket in the path, not the host name: self-hosted stores have no wildcard DNS.
    forcepathstyle: bool,
    bucket: String,
    accesskey: String,
    secretkey: String,
}

#[derive(Serialize, Deserialize)]
struct Redirect {
    disable: bool,
}

#[derive(Serialize, Deserialize)]
struct Filesystem {
    rootdirectory: String,
}

#[derive(Serialize, Deserialize)]
struct Enabled {
    enabled: bool,
}

#[derive(Serialize, Deserialize)]
struct Http {
    /// A Unix socket in a volume only the pod mounts: the pod shares the host's network, so a TCP port,
    /// even on loopback, would be reachable from the host past nginx.
    net: String,
    addr: String,
    secret: String,
    headers: Headers,
}

#[derive(Serialize, Deserialize)]
struct Headers {
    #[serde(rename = "X-Content-Type-Options")]
    x_content_type_options: Vec<String>,
    /// The fingerprint of this very file: distribution adds `http.headers` to every answer (401s too),
    /// so `verify` can tell whether the running registry reads this file or some other config.
    #[serde(rename = "X-Registry-Up-Config")]
    config_fingerprint: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Health {
    storagedriver: StorageHealth,
}

#[derive(Serialize, Deserialize)]
struct StorageHealth {
    enabled: bool,
    interval: String,
    threshold: u32,
}

/// Where the registry keeps its data inside the container (the official image's path).
pub const STORAGE_PATH: &str = "/var/lib/registry";
/// Where the registry container sees the config folder: a path neither official layout keeps its own
/// config in (2.x: /etc/docker/registry, 3.x: /etc/distribution), so no image default can shadow ours.
pub const MOUNT_PATH: &str = "/etc/registry-up";
/// The header carrying the config's fingerprint in every registry answer.
pub const FINGERPRINT_HEADER: &str = "X-Registry-Up-Config";
/// Stands in for the fingerprint while it is computed: same shape as a real one, so YAML writes both alike.
const FINGERPRINT_PLACEHOLDER: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// The path of the config file inside the registry container, as the container is told to `serve` it.
pub fn config_path_in_container() -> String {
    format!("{MOUNT_PATH}/config.yml")
}

/// `sha256:HEX` of the config text with its own fingerprint replaced by the placeholder.
fn fingerprint(text_with_placeholder: &str) -> String {
    crate::digest::oci_digest(text_with_placeholder.as_bytes())
}

/// The config; `s3`: the bucket and key when the registry keeps its images in S3.
pub fn render(http_secret: &str, auth: bool, s3: Option<(&Location, &Credentials)>) -> String {
    let config = Config {
        version: "0.1".into(),
        log: Log {
            level: "info".into(),
            fields: Fields {
                service: "registry".into(),
            },
        },
        storage: Storage {
            filesystem: s3.is_none().then(|| Filesystem {
                rootdirectory: STORAGE_PATH.into(),
            }),
            s3: s3.map(|(at, key)| S3 {
                region: at.region.clone(),
                regionendpoint: at.endpoint.clone(),
                forcepathstyle: true,
                bucket: at.bucket.clone(),
                accesskey: key.access_key.clone(),
                secretkey: key.secret_key.clone(),
            }),
            redirect: s3.map(|_| Redirect { disable: true }),
            // Verification deletes its test manifest.
            delete: Enabled { enabled: true },
        },
        http: Http {
            net: "unix".into(),
            addr: crate::layout::REGISTRY_SOCKET.into(),
            secret: http_secret.into(),
            headers: Headers {
                x_content_type_options: vec!["nosniff".into()],
                config_fingerprint: vec![FINGERPRINT_PLACEHOLDER.into()],
            },
        },
        auth: auth.then(|| Auth {
            htpasswd: Htpasswd {
                realm: "registry-up".into(),
                path: format!("{MOUNT_PATH}/htpasswd"),
            },
        }),
        health: Health {
            storagedriver: StorageHealth {
                enabled: true,
                interval: "10s".into(),
                threshold: 3,
            },
        },
    };
    let body = serde_yaml_ng::to_string(&config).expect("the registry config always serialises");
    let text = format!("# Written by registry-up: changes here are overwritten on the next run.\n{body}");
    text.replacen(FINGERPRINT_PLACEHOLDER, &fingerprint(&text), 1)
}

/// What a config file on disk says of its own fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFingerprint {
    /// The value in the file's `X-Registry-Up-Config` header: what the registry sends once it reads the file.
    pub written: String,
    /// Whether the rest of the file is still what registry-up wrote with that value (no hand edit since).
    pub intact: bool,
}

#[derive(Deserialize)]
struct HeadersOnly {
    http: HeadersHttp,
}

#[derive(Deserialize)]
struct HeadersHttp {
    #[serde(default)]
    headers: std::collections::BTreeMap<String, Vec<String>>,
}

/// The fingerprint a config file carries, or None when it carries none (not written by this version).
pub fn disk_fingerprint(text: &str) -> Option<DiskFingerprint> {
    let parsed: HeadersOnly = serde_yaml_ng::from_str(text).ok()?;
    let written = parsed.http.headers.get(FINGERPRINT_HEADER)?.first()?.clone();
    let intact = text.matches(written.as_str()).count() == 1
        && fingerprint(&text.replacen(&written, FINGERPRINT_PLACEHOLDER, 1)) == written;
    Some(DiskFingerprint { written, intact })
}

#[derive(Deserialize)]
struct SecretOnly {
    http: SecretHttp,
}

#[derive(Deserialize)]
struct SecretHttp {
    secret: String,
}

/// The `http.secret` of an existing config, so that re-runs keep it.
pub fn read_http_secret(existing: &str) -> Option<String> {
    serde_yaml_ng::from_str::<SecretOnly>(existing)
        .ok()
        .map(|c| c.http.secret)
        .filter(|s| !s.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_carries_its_own_fingerprint() {
        let text = render("abc123", true, None);
        let found = disk_fingerprint(&text).expect("a fingerprint is written");
        assert!(found.intact, "{text}");
        assert!(found.written.starts_with("sha256:") && found.written.len() == 71);
        assert!(!text.contains(FINGERPRINT_PLACEHOLDER));
        // Another secret or auth setting is another config, so another fingerprint.
        assert_ne!(
            disk_fingerprint(&render("other", true, None)).unwrap().written,
            found.written
        );
        assert_ne!(
            disk_fingerprint(&render("abc123", false, None)).unwrap().written,
            found.written
        );
        // A hand edit keeps the written value but breaks the match.
        let edited = text.replace("level: info", "level: debug");
        assert_ne!(edited, text);
        assert_eq!(
            disk_fingerprint(&edited),
            Some(DiskFingerprint {
                written: found.written.clone(),
                intact: false
            })
        );
        assert_eq!(disk_fingerprint("version: 0.1\nhttp:\n  addr: :5000\n"), None);
        assert_eq!(disk_fingerprint("not: [yaml"), None);
    }

    #[test]
    fn s3_storage_replaces_the_folder_and_never_sends_clients_to_the_store() {
        let at = Location::parse("http://10.0.0.5:3900", "registry", "garage").unwrap();
        let key = Credentials {
            access_key: "GK1".into(),
            secret_key: "SECRET".into(),
        };
        let text = render("s", false, Some((&at, &key)));
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let storage = &v["storage"];
        assert!(storage.get("filesystem").is_none(), "{text}");
        assert_eq!(storage["s3"]["regionendpoint"].as_str(), Some("http://10.0.0.5:3900"));
        assert_eq!(storage["s3"]["region"].as_str(), Some("garage"));
        assert_eq!(storage["s3"]["bucket"].as_str(), Some("registry"));
        assert_eq!(storage["s3"]["forcepathstyle"].as_bool(), Some(true));
        assert_eq!(storage["s3"]["accesskey"].as_str(), Some("GK1"));
        assert_eq!(storage["s3"]["secretkey"].as_str(), Some("SECRET"));
        assert_eq!(storage["redirect"]["disable"].as_bool(), Some(true));
        assert_eq!(storage["delete"]["enabled"].as_bool(), Some(true));
        assert!(disk_fingerprint(&text).unwrap().intact);
        let plain = render("s", false, None);
        assert!(!plain.contains("s3:") && !plain.contains("redirect"), "{plain}");
    }

    #[test]
    fn auth_reads_the_htpasswd_from_our_mount() {
        assert!(render("s", true, None).contains("path: /etc/registry-up/htpasswd"));
        assert!(!render("s", false, None).contains("htpasswd"));
    }

    #[test]
    fn secret_round_trips() {
        assert_eq!(
            super::read_http_secret(&super::render("abc123", true, None)).as_deref(),
            Some("abc123")
        );
        assert_eq!(super::read_http_secret("not: [yaml"), None);
    }
}
