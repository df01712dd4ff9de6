//! The distribution registry's `config.yml`, from typed structs.

use serde::{Deserialize, Serialize};

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
    filesystem: Filesystem,
    delete: Enabled,
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
    /// Loopback only: containers of one pod share a network namespace, so nginx reaches it and
    /// nothing outside the pod does.
    addr: String,
    secret: String,
    headers: Headers,
}

#[derive(Serialize, Deserialize)]
struct Headers {
    #[serde(rename = "X-Content-Type-Options")]
    x_content_type_options: Vec<String>,
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

pub fn render(http_secret: &str, auth: bool) -> String {
    let config = Config {
        version: "0.1".into(),
        log: Log {
            level: "info".into(),
            fields: Fields {
                service: "registry".into(),
            },
        },
        storage: Storage {
            filesystem: Filesystem {
                rootdirectory: STORAGE_PATH.into(),
            },
            // Verification deletes its test manifest.
            delete: Enabled { enabled: true },
        },
        http: Http {
            addr: "127.0.0.1:5000".into(),
            secret: http_secret.into(),
            headers: Headers {
                x_content_type_options: vec!["nosniff".into()],
            },
        },
        auth: auth.then(|| Auth {
            htpasswd: Htpasswd {
                realm: "registry-up".into(),
                path: "/etc/docker/registry/htpasswd".into(),
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
    format!("# Written by registry-up: changes here are overwritten on the next run.\n{body}")
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
    #[test]
    fn secret_round_trips() {
        assert_eq!(
            super::read_http_secret(&super::render("abc123", true)).as_deref(),
            Some("abc123")
        );
        assert_eq!(super::read_http_secret("not: [yaml"), None);
    }
}
