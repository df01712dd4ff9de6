//! The appliance's files and folders: names and modes, in one place. render writes these files, plan
//! and apply create the folders, pki, secrets and the commands read them back.

/// Paths below the config directory. The pod YAML mounts the folders, so nginx sees only `tls/` and
/// `nginx/`, and the registry only `registry/`; the CA key is in no container.
/// At the top, so the config folder itself works as a `--cert-dir` for skopeo and podman (a folder
/// holding any .key without its .cert is refused by them).
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca/ca.key";
pub const SERVER_CERT: &str = "tls/server.crt";
pub const SERVER_KEY: &str = "tls/server.key";
pub const NGINX_CONF: &str = "nginx/registry.conf";
/// The nginx container's /etc/passwd and /etc/group: its `nginx` user is the workers' uid and gid
/// (`Settings::worker_id`). In nginx's folder (nginx reads only `*.conf` there).
pub const NGINX_PASSWD: &str = "nginx/passwd";
pub const NGINX_GROUP: &str = "nginx/group";
pub const REGISTRY_CONFIG: &str = "registry/config.yml";
pub const POD_YAML: &str = "registry-pod.yaml";
pub const STATE: &str = "state.json";
/// Present while `registry-up gc` has nginx read-only (or was killed before it could undo that).
pub const GC_IN_PROGRESS: &str = "gc-in-progress";
/// What `up --open-firewall` opened in the host firewall, for `down` to close (only that).
pub const FIREWALL: &str = "firewall.json";
/// With --auth: the user's password for clients on this host (and verify), and the registry's htpasswd.
pub const AUTH_PASSWORD: &str = "auth/password";
pub const HTPASSWD: &str = "registry/htpasswd";
/// With --storage s3: the key the registry uses, as the user's file gave it (the registry's config holds
/// it too; this copy is what re-runs read).
pub const S3_CREDENTIALS: &str = "s3/credentials";
/// The registry version verify read last, by image ID (see src/verify/version.rs).
pub const REGISTRY_VERSION: &str = "registry-version";
/// While `up` changes what the registry serves: the files it replaces, as they were, and `files.json`
/// naming them (written last). Present at the start of a run: an earlier one was killed, and its change
/// is rolled back first.
pub const ROLLBACK_DIR: &str = "upgrade-rollback";
/// The last inventory of what the appliance serves (`verify --deep` writes it; schema in the README).
pub const INVENTORY: &str = "inventory.json";

/// The systemd unit that runs pod `pod` (a classic unit's file name, and the unit Quadlet generates).
pub fn unit_name(pod: &str) -> String {
    format!("{pod}.service")
}

/// The maintenance timer of pod `pod`, and the service it starts.
pub fn maintenance_units(pod: &str) -> [String; 2] {
    ["timer", "service"].map(|kind| format!("{pod}-maintenance.{kind}"))
}

/// The Quadlet file for pod `pod`, in Quadlet's folder.
pub fn quadlet_file(pod: &str) -> String {
    format!("{pod}.kube")
}

/// The registry listens on this Unix socket, in a volume only the pod's two containers mount: no TCP port,
/// so nothing outside the pod can reach it past nginx, though the pod shares the host's network.
pub const SOCKET_DIR: &str = "/run/registry-up";
pub const REGISTRY_SOCKET: &str = "/run/registry-up/registry.sock";

/// Modes of what registry-up writes: keys, passwords and the registry config (it holds http.secret)
/// only for their owner; certificates and configs readable.
pub const PRIVATE: u32 = 0o600;
pub const PUBLIC: u32 = 0o644;
/// Folders registry-up owns are the owner's alone; the folders systemd and Quadlet read stay 0755.
pub const PRIVATE_DIR: u32 = 0o700;
pub const SHARED_DIR: u32 = 0o755;

/// Whether the config folder `dir` is registry-up's own, so its mode may be put back to 0700: it is
/// missing, empty, or holds an appliance's state.json. A folder of other things someone pointed
/// --config-dir at keeps its mode.
pub fn owns_config_folder(dir: &std::path::Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none() || dir.join(STATE).is_file(),
        Err(_) => true,
    }
}

/// The folders below the config folder (relative; "" is the folder itself): `auth` only with
/// authentication, `ca` only when registry-up issues the certificate, `s3` only with S3 storage.
pub fn config_folders(auth: bool, own_ca: bool, s3: bool) -> Vec<&'static str> {
    let mut folders = vec!["", "tls", "nginx", "registry"];
    if auth {
        folders.push("auth");
    }
    if own_ca {
        folders.push("ca");
    }
    if s3 {
        folders.push("s3");
    }
    folders
}
