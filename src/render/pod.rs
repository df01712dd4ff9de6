//! `registry-pod.yaml` for `podman play kube`, from typed structs (a small subset of the Kubernetes
//! Pod API: only the fields this pod uses).

use std::collections::BTreeMap;

use serde::Serialize;

use super::registry_config::{self, STORAGE_PATH};
use crate::settings::Settings;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Pod {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    spec: PodSpec,
}

#[derive(Serialize)]
struct Metadata {
    name: String,
    labels: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    restart_policy: &'static str,
    containers: Vec<Container>,
    volumes: Vec<Volume>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    name: &'static str,
    image: String,
    /// Replaces the image's CMD and keeps its ENTRYPOINT.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    args: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    env: Vec<EnvVar>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<ContainerPort>,
    volume_mounts: Vec<VolumeMount>,
}

#[derive(Serialize)]
struct EnvVar {
    name: &'static str,
    value: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContainerPort {
    container_port: u16,
    host_port: u16,
    protocol: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VolumeMount {
    name: &'static str,
    /// `PATH:Z`: Podman relabels the host folder for SELinux (a no-op on hosts without it), so enforcing
    /// hosts work without editing anything. Podman 4.3 to 5 read options after the path; the older
    /// `bind-mount-options:<path>` annotations are refused by Podman 5 and hold only one path there.
    mount_path: String,
    read_only: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Volume {
    name: &'static str,
    host_path: HostPath,
}

#[derive(Serialize)]
struct HostPath {
    path: String,
    /// `Directory`: apply creates every folder with the right mode first; a missing one is a bug
    /// that should fail loudly rather than be created as root 0755.
    #[serde(rename = "type")]
    kind: &'static str,
}

/// Container names; Podman names the containers `<pod>-<name>`.
pub const REGISTRY_CONTAINER: &str = "registry";
/// The name Podman gives container `container` of pod `pod` (kube play: POD-CONTAINER).
pub fn container_name(pod: &str, container: &str) -> String {
    format!("{pod}-{container}")
}

/// The label on the pod saying registry-up made it (Podman copies it to the pod).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const NGINX_CONTAINER: &str = "nginx";

pub fn render(settings: &Settings) -> String {
    let dir = |rel: &str| settings.config_dir.join(rel).display().to_string();
    let volume = |name, path: String| Volume {
        name,
        host_path: HostPath {
            path,
            kind: "Directory",
        },
    };
    let mount = |name, path: &str, read_only| VolumeMount {
        name,
        mount_path: format!("{path}:Z"),
        read_only,
    };
    let volumes = vec![
        volume("registry-data", settings.data_dir.display().to_string()),
        volume("registry-config", dir("registry")),
        volume("nginx-conf", dir("nginx")),
        volume("tls", dir("tls")),
    ];
    let pod = Pod {
        api_version: "v1",
        kind: "Pod",
        metadata: Metadata {
            name: settings.pod_name.clone(),
            labels: BTreeMap::from([(MANAGED_BY_LABEL, "registry-up".to_string())]),
        },
        spec: PodSpec {
            restart_policy: "Always",
            containers: vec![
                Container {
                    name: REGISTRY_CONTAINER,
                    image: settings.registry_image.clone(),
                    // Both official layouts run `registry serve PATH` from these arguments (3.x: ENTRYPOINT
                    // registry; 2.x: its entrypoint script), so the registry reads our config whatever the
                    // image's own CMD names; `up` refuses an image of any other layout.
                    args: vec!["serve".into(), registry_config::config_path_in_container()],
                    // 3.0 images export traces to localhost:4318 unless told not to.
                    env: vec![EnvVar {
                        name: "OTEL_TRACES_EXPORTER",
                        value: "none",
                    }],
                    // No ports: the registry listens on the pod's loopback only and is never published.
                    ports: Vec::new(),
                    volume_mounts: vec![
                        mount("registry-data", STORAGE_PATH, false),
                        mount("registry-config", registry_config::MOUNT_PATH, true),
                    ],
                },
                Container {
                    name: NGINX_CONTAINER,
                    image: settings.nginx_image.clone(),
                    args: Vec::new(),
                    env: Vec::new(),
                    // nginx listens on the same port inside, so Host headers and redirects carry it.
                    ports: vec![ContainerPort {
                        container_port: settings.port,
                        host_port: settings.port,
                        protocol: "TCP",
                    }],
                    volume_mounts: vec![
                        mount("nginx-conf", "/etc/nginx/conf.d", true),
                        mount("tls", "/etc/nginx/tls", true),
                    ],
                },
            ],
            volumes,
        },
    };
    let body = serde_yaml_ng::to_string(&pod).expect("the pod always serialises");
    format!("# Written by registry-up: changes here are overwritten on the next run.\n{body}")
}
