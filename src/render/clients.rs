//! What each kind of client on the site needs to use the appliance as the mirror of the registries it
//! holds copies of (`registry-up clients`): Podman and its family, Docker, containerd, k3s and RKE2.
//! Pure: the appliance's address, its CA and the mirrored names in; files (paths on a client host) out.
//!
//! The appliance keeps a mirrored image under the upstream's name as a path: `docker.io/library/nginx:1`
//! is `REGISTRY/docker.io/library/nginx:1`. Each client kind says "for docker.io, ask REGISTRY/docker.io
//! first" in its own words.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Reader, RenderedFile, Root};

/// The first line of every configuration file registry-up writes for clients: `--apply` replaces a file
/// only when it has it (or is missing), never one a person or another tool wrote.
pub const MARKER: &str = "# Written by registry-up clients";

/// A registry the appliance mirrors: its name in image references, and the path its images have in the
/// appliance.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mirror {
    pub upstream: String,
    pub path: String,
}

impl Mirror {
    /// The mirror of `upstream` at the path of its own name.
    pub fn of(upstream: &str) -> Self {
        Mirror {
            upstream: upstream.to_string(),
            path: upstream.to_string(),
        }
    }

    /// Where the upstream's API lives (Docker Hub's name is not its API host).
    fn server(&self) -> String {
        match self.upstream.as_str() {
            "docker.io" => "https://registry-1.docker.io".into(),
            other => format!("https://{other}"),
        }
    }
}

/// The kinds of clients, each with the files it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Podman, skopeo, buildah, CRI-O: containers/image's registries.conf.d and certs.d.
    Podman,
    Docker,
    Containerd,
    K3s,
    Rke2,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Podman, Kind::Docker, Kind::Containerd, Kind::K3s, Kind::Rke2];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Podman => "podman",
            Kind::Docker => "docker",
            Kind::Containerd => "containerd",
            Kind::K3s => "k3s",
            Kind::Rke2 => "rke2",
        }
    }

    /// The folder whose presence says this kind is installed on a host.
    pub fn installed_marker(self) -> &'static str {
        match self {
            Kind::Podman => "/etc/containers",
            Kind::Docker => "/etc/docker",
            Kind::Containerd => "/etc/containerd",
            Kind::K3s => "/etc/rancher/k3s",
            Kind::Rke2 => "/etc/rancher/rke2",
        }
    }
}

/// The appliance as clients reach it.
pub struct Site<'a> {
    /// `HOST:PORT` as in image references (an IPv6 address in brackets).
    pub registry: &'a str,
    /// The CA clients must trust; None when the certificate chains to the system's CAs.
    pub ca: Option<&'a [u8]>,
    pub mirrors: &'a [Mirror],
}

fn file(kind: Kind, path: &str, contents: impl Into<Vec<u8>>) -> (Kind, RenderedFile) {
    (
        kind,
        RenderedFile {
            root: Root::ClientHost,
            rel: path.trim_start_matches('/').to_string(),
            contents: contents.into(),
            mode: 0o644,
            reader: Reader::Nobody,
        },
    )
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

/// Every file of every kind, in a fixed order.
pub fn files(site: &Site) -> Vec<(Kind, RenderedFile)> {
    let mut out = Vec::new();
    let registry = site.registry;
    let ca_files = |kind: Kind, dirs: &[String], name: &str| -> Vec<(Kind, RenderedFile)> {
        site.ca
            .map(|ca| dirs.iter().map(|d| file(kind, &format!("{d}/{name}"), ca)).collect())
            .unwrap_or_default()
    };

    // Podman & co.: one drop-in, named for the appliance, and the CA where containers/image looks.
    let mut conf = format!(
        "{MARKER}: pull these registries' images from the appliance at {registry} first.\n\
         # Where the appliance lacks an image, the upstream is asked next (on an air-gapped site, nothing answers).\n"
    );
    for mirror in site.mirrors {
        conf += &format!(
            "\n[[registry]]\nlocation = {}\n\n[[registry.mirror]]\nlocation = {}\n",
            toml_string(&mirror.upstream),
            toml_string(&format!("{registry}/{}", mirror.path))
        );
    }
    let drop_in_name: String = registry
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' })
        .collect();
    out.push(file(
        Kind::Podman,
        &format!("/etc/containers/registries.conf.d/50-registry-up-{drop_in_name}.conf"),
        conf,
    ));
    out.extend(ca_files(
        Kind::Podman,
        &[format!("/etc/containers/certs.d/{registry}")],
        "ca.crt",
    ));

    // Docker: the CA only (its registry-mirrors setting puts a path before /v2/, not after: README).
    out.extend(ca_files(
        Kind::Docker,
        &[format!("/etc/docker/certs.d/{registry}")],
        "ca.crt",
    ));

    // containerd: a hosts.toml per upstream with the appliance as a trusted host (pull and resolve), the
    // path after /v2/ given as it is; the CA beside it, and in the appliance's own folder for its name.
    for mirror in site.mirrors {
        let dir = format!("/etc/containerd/certs.d/{}", mirror.upstream);
        let ca_line = if site.ca.is_some() {
            "  ca = \"registry-up-ca.crt\"\n"
        } else {
            ""
        };
        let hosts = format!(
            "{MARKER}: pull and resolve {upstream}'s images from the appliance at {registry} first.\n\
             server = {server}\n\n[host.{host}]\n  capabilities = [\"pull\", \"resolve\"]\n{ca_line}  override_path = true\n",
            upstream = mirror.upstream,
            server = toml_string(&mirror.server()),
            host = toml_string(&format!("https://{registry}/v2/{}", mirror.path)),
        );
        out.push(file(Kind::Containerd, &format!("{dir}/hosts.toml"), hosts));
        out.extend(ca_files(Kind::Containerd, &[dir], "registry-up-ca.crt"));
    }
    out.extend(ca_files(
        Kind::Containerd,
        &[format!("/etc/containerd/certs.d/{registry}")],
        "ca.crt",
    ));

    // k3s and RKE2: registries.yaml, each mirror's names rewritten under its path, the CA under configs.
    for (kind, dir) in [(Kind::K3s, "/etc/rancher/k3s"), (Kind::Rke2, "/etc/rancher/rke2")] {
        let yaml = registries_yaml(site, &format!("{dir}/registry-up-ca.crt"));
        out.push(file(kind, &format!("{dir}/registries.yaml"), yaml));
        out.extend(ca_files(kind, &[dir.to_string()], "registry-up-ca.crt"));
    }
    out
}

#[derive(Serialize)]
struct RegistriesYaml {
    mirrors: BTreeMap<String, K3sMirror>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    configs: BTreeMap<String, K3sConfig>,
}

#[derive(Serialize)]
struct K3sMirror {
    endpoint: Vec<String>,
    rewrite: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct K3sConfig {
    tls: K3sTls,
}

#[derive(Serialize)]
struct K3sTls {
    ca_file: String,
}

fn registries_yaml(site: &Site, ca_path: &str) -> String {
    let mirrors = site
        .mirrors
        .iter()
        .map(|m| {
            let mirror = K3sMirror {
                endpoint: vec![format!("https://{}", site.registry)],
                rewrite: BTreeMap::from([("^(.*)$".to_string(), format!("{}/$1", m.path))]),
            };
            (m.upstream.clone(), mirror)
        })
        .collect();
    let configs = site
        .ca
        .map(|_| {
            let tls = K3sTls {
                ca_file: ca_path.to_string(),
            };
            BTreeMap::from([(site.registry.to_string(), K3sConfig { tls })])
        })
        .unwrap_or_default();
    let yaml = serde_yaml_ng::to_string(&RegistriesYaml { mirrors, configs }).expect("serialises");
    format!(
        "{MARKER}: pull these registries' images from the appliance at {} first.\n{yaml}",
        site.registry
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &[u8] = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn rendered(ca: Option<&[u8]>) -> String {
        let mirrors = [Mirror::of("docker.io"), Mirror::of("quay.io")];
        let site = Site {
            registry: "registry.lab:8443",
            ca,
            mirrors: &mirrors,
        };
        files(&site)
            .into_iter()
            .map(|(kind, f)| {
                format!(
                    "=== {} /{} ({:o})\n{}",
                    kind.name(),
                    f.rel,
                    f.mode,
                    String::from_utf8_lossy(&f.contents)
                )
            })
            .collect()
    }

    #[test]
    fn every_kind_of_client_gets_its_files() {
        insta::assert_snapshot!("clients", rendered(Some(CA)));
    }

    #[test]
    fn without_a_ca_of_its_own_no_ca_file_is_written_nor_named() {
        let text = rendered(None);
        assert!(
            !text.contains("ca.crt") && !text.contains("ca_file") && !text.contains("ca ="),
            "{text}"
        );
        assert!(text.contains("[[registry.mirror]]") && text.contains("override_path = true"));
    }

    #[test]
    fn configuration_files_start_with_the_marker_and_ca_files_are_the_ca() {
        let mirrors = [Mirror::of("docker.io")];
        let site = Site {
            registry: "[fd00::5]:443",
            ca: Some(CA),
            mirrors: &mirrors,
        };
        for (_, f) in files(&site) {
            if f.rel.ends_with(".crt") {
                assert_eq!(f.contents, CA);
            } else {
                assert!(f.contents.starts_with(MARKER.as_bytes()), "{}", f.rel);
            }
        }
        let conf = &files(&site)[0].1;
        assert_eq!(
            conf.rel,
            "etc/containers/registries.conf.d/50-registry-up--fd00--5--443.conf"
        );
        assert!(String::from_utf8_lossy(&conf.contents).contains("location = \"[fd00::5]:443/docker.io\""));
    }
}
