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
    annotations: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    /// The pod shares the host's network: nginx binds the host's addresses itself, IPv4 and IPv6 alike
    /// on every Podman (4.3 to 5, rootful and rootless), with no NAT hop and the clients' own addresses
    /// in the logs. The registry has no TCP port at all (a Unix socket in `socket`).
    host_network: bool,
    restart_policy: &'static str,
    containers: Vec<Container>,
    volumes: Vec<Volume>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    name: &'static str,
    image: String,
    /// Replaces the image's ENTRYPOINT.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    command: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    env: Vec<EnvVar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    security_context: Option<SecurityContext>,
    volume_mounts: Vec<VolumeMount>,
}

/// Who the container's processes are (Podman: `--user UID:GID`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SecurityContext {
    run_as_user: u32,
    run_as_group: u32,
}

/// The registry container's environment, all that registry-up sets there: 3.0 images export traces to
/// localhost:4318 unless told not to. No REGISTRY_* variable: they would override the config file.
pub const REGISTRY_ENV: &[(&str, &str)] = &[("OTEL_TRACES_EXPORTER", "none")];

/// The running registry container's environment variables that override its config file and that
/// registry-up did not set (distribution reads `REGISTRY_<SECTION>_<KEY>` over config.yml).
pub fn foreign_registry_env(env: &[String]) -> Vec<String> {
    let mut found: Vec<String> = env
        .iter()
        .filter_map(|line| line.split_once('=').map(|(k, _)| k).or(Some(line.as_str())))
        .filter(|name| name.starts_with("REGISTRY_") && !REGISTRY_ENV.iter().any(|(n, _)| n == name))
        .map(String::from)
        .collect();
    found.sort();
    found.dedup();
    found
}

#[derive(Serialize)]
struct EnvVar {
    name: &'static str,
    value: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VolumeMount {
    name: String,
    /// `PATH:Z`: Podman relabels the host folder for SELinux (a no-op on hosts without it), so enforcing
    /// hosts work without editing anything. Podman 4.3 to 5 read options after the path; the older
    /// `bind-mount-options:<path>` annotations are refused by Podman 5 and hold only one path there.
    mount_path: String,
    read_only: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Volume {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_path: Option<HostPath>,
    #[serde(skip_serializing_if = "Option::is_none")]
    empty_dir: Option<EmptyDir>,
}

/// A volume Podman makes for the pod and removes with it. Podman 4.3 gives it the volume's name as a
/// named volume, so the name carries the pod's.
#[derive(Serialize)]
struct EmptyDir {}

#[derive(Serialize)]
struct HostPath {
    path: String,
    /// `Directory` (or `File`): apply writes every folder and file with the right mode first; a missing
    /// one is a bug that should fail loudly rather than be created as root 0755.
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
/// Which appliance started the pod (`Settings::appliance`): up replaces only a pod of its own.
pub const APPLIANCE_LABEL: &str = "registry-up/appliance";
pub const NGINX_CONTAINER: &str = "nginx";
/// The annotation recording where nginx listens.
pub const LISTEN_ANNOTATION: &str = "registry-up/listen";

fn listen_text(settings: &Settings) -> String {
    let sockets: Vec<String> = settings
        .listen
        .sockets(settings.port)
        .iter()
        .map(|s| s.to_string())
        .collect();
    sockets.join(" ")
}

/// The registry's command: `registry serve CONFIG` under umask 0007. The registry runs as root with the
/// workers' group (`Settings::worker_id`, see the pod), so the socket it creates is root:WORKERS 0770:
/// nginx's workers connect (connect(2) needs write permission), and no other uid can, whatever reaches the
/// folder. What it writes to the data folder is closed to others too. distribution has no setting for the
/// socket's mode, and Podman none for a container's umask in kube YAML; both official layouts (Alpine)
/// have /bin/sh and `registry` on PATH.
fn registry_command() -> Vec<String> {
    let config = registry_config::config_path_in_container();
    vec![
        "/bin/sh".into(),
        "-c".into(),
        format!("umask 0007 && exec registry serve {config}"),
    ]
}

/// The nginx container's /etc/passwd: root for the master, `nginx` (the user the official images'
/// nginx.conf names) for the workers, with the workers' id.
pub fn nginx_passwd(settings: &Settings) -> String {
    let id = settings.worker_id;
    format!(
        "root:x:0:0:root:/root:/sbin/nologin\nnginx:x:{id}:{id}:nginx workers (registry-up):/nonexistent:/sbin/nologin\n"
    )
}

/// The nginx container's /etc/group, to go with [`nginx_passwd`].
pub fn nginx_group(settings: &Settings) -> String {
    format!("root:x:0:\nnginx:x:{}:\n", settings.worker_id)
}

/// The name of the pod's socket volume (Podman 4.3 makes it a named volume: one per pod).
pub fn socket_volume(pod: &str) -> String {
    format!("{pod}-socket")
}

pub fn render(settings: &Settings) -> String {
    let dir = |rel: &str| settings.config_dir.join(rel).display().to_string();
    let host_path = |name: &str, path: String, kind| Volume {
        name: name.into(),
        host_path: Some(HostPath { path, kind }),
        empty_dir: None,
    };
    let volume = |name: &str, path: String| host_path(name, path, "Directory");
    // A private SELinux label (Z) for what one container uses, a shared one (z) for the socket both use.
    let labelled = |label: char| {
        move |name: &str, path: &str, read_only| VolumeMount {
            name: name.into(),
            mount_path: format!("{path}:{label}"),
            read_only,
        }
    };
    let (mount, shared) = (labelled('Z'), labelled('z'));
    let socket = socket_volume(&settings.pod_name);
    // With S3 storage the registry keeps nothing on this host.
    let data = settings.s3.is_none();
    let mut volumes = vec![
        volume("registry-data", settings.data_dir.display().to_string()),
        volume("registry-config", dir("registry")),
        volume("nginx-conf", dir("nginx")),
        volume("tls", dir("tls")),
        host_path("nginx-passwd", dir(crate::layout::NGINX_PASSWD), "File"),
        host_path("nginx-group", dir(crate::layout::NGINX_GROUP), "File"),
        Volume {
            name: socket.clone(),
            host_path: None,
            empty_dir: Some(EmptyDir {}),
        },
    ];
    let mut registry_mounts = vec![
        mount("registry-data", STORAGE_PATH, false),
        mount("registry-config", registry_config::MOUNT_PATH, true),
        shared(&socket, crate::layout::SOCKET_DIR, false),
    ];
    if !data {
        volumes.retain(|v| v.name != "registry-data");
        registry_mounts.retain(|m| m.name != "registry-data");
    }
    let pod = Pod {
        api_version: "v1",
        kind: "Pod",
        metadata: Metadata {
            name: settings.pod_name.clone(),
            labels: BTreeMap::from([
                (MANAGED_BY_LABEL, "registry-up".to_string()),
                (APPLIANCE_LABEL, settings.appliance.clone()),
            ]),
            // New listen addresses need a new pod: an nginx reload cannot move a socket the running master
            // holds (a wildcard next to a specific address on one port is refused), so they are part of the pod.
            annotations: BTreeMap::from([(LISTEN_ANNOTATION, listen_text(settings))]),
        },
        spec: PodSpec {
            host_network: true,
            restart_policy: "Always",
            containers: vec![
                Container {
                    name: REGISTRY_CONTAINER,
                    image: settings.registry_image.clone(),
                    command: registry_command(),
                    env: REGISTRY_ENV
                        .iter()
                        .map(|&(name, value)| EnvVar { name, value })
                        .collect(),
                    // Root (it owns the data) with the workers' group: the socket's group (see
                    // registry_command).
                    security_context: Some(SecurityContext {
                        run_as_user: 0,
                        run_as_group: settings.worker_id,
                    }),
                    volume_mounts: registry_mounts,
                },
                Container {
                    name: NGINX_CONTAINER,
                    image: settings.nginx_image.clone(),
                    command: Vec::new(),
                    env: Vec::new(),
                    // The master stays root (it binds the port and reads the key); the workers become
                    // the `nginx` of these files, whose id no host account has (Settings::worker_id).
                    security_context: None,
                    // connect(2) to a socket on a read-only mount works: nginx cannot replace it.
                    volume_mounts: vec![
                        mount("nginx-conf", "/etc/nginx/conf.d", true),
                        mount("tls", "/etc/nginx/tls", true),
                        mount("nginx-passwd", "/etc/passwd", true),
                        mount("nginx-group", "/etc/group", true),
                        shared(&socket, crate::layout::SOCKET_DIR, true),
                    ],
                },
            ],
            volumes,
        },
    };
    let body = serde_yaml_ng::to_string(&pod).expect("the pod always serialises");
    format!("# Written by registry-up: changes here are overwritten on the next run.\n{body}")
}
