//! Where things go, for root (system-wide) and for an ordinary user (rootless Podman, XDG folders).

use std::path::PathBuf;

/// Whether this process runs as root, which decides rootful or rootless Podman.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home().join(fallback))
}

/// `/etc/registry-up`, or `$XDG_CONFIG_HOME/registry-up` for a user.
pub fn default_config_dir() -> PathBuf {
    if is_root() {
        PathBuf::from("/etc/registry-up")
    } else {
        xdg("XDG_CONFIG_HOME", ".config").join("registry-up")
    }
}

/// `/var/lib/registry-up/data`, or `$XDG_DATA_HOME/registry-up/data` for a user.
pub fn default_data_dir() -> PathBuf {
    if is_root() {
        PathBuf::from("/var/lib/registry-up/data")
    } else {
        xdg("XDG_DATA_HOME", ".local/share").join("registry-up/data")
    }
}

/// 443 for root; 8443 for a user, who may not bind ports below net.ipv4.ip_unprivileged_port_start.
pub fn default_port() -> u16 {
    if is_root() {
        443
    } else {
        8443
    }
}

/// Where systemd looks for units: system units for root, user units for a user.
pub fn unit_dir() -> PathBuf {
    if is_root() {
        PathBuf::from("/etc/systemd/system")
    } else {
        xdg("XDG_CONFIG_HOME", ".config").join("systemd/user")
    }
}

/// Where Podman's Quadlet generator reads `.kube` files: system-wide for root, the user's own otherwise.
pub fn quadlet_dir() -> PathBuf {
    if is_root() {
        PathBuf::from("/etc/containers/systemd")
    } else {
        xdg("XDG_CONFIG_HOME", ".config").join("containers/systemd")
    }
}

/// Whether Podman's Quadlet generator is installed (root: system generator; user: user generator).
pub fn quadlet_generator_installed() -> bool {
    let generators: &[&str] = if is_root() {
        &[
            "/usr/lib/systemd/system-generators/podman-system-generator",
            "/lib/systemd/system-generators/podman-system-generator",
        ]
    } else {
        &[
            "/usr/lib/systemd/user-generators/podman-user-generator",
            "/lib/systemd/user-generators/podman-user-generator",
        ]
    };
    generators.iter().any(|g| std::path::Path::new(g).exists())
}

/// Folders whose `HOST:PORT/ca.crt` container clients read: system-wide for root (containers and
/// docker), the user's own for a user (containers/image reads it for rootless clients).
pub fn trust_roots() -> Vec<PathBuf> {
    if is_root() {
        vec![
            PathBuf::from("/etc/containers/certs.d"),
            PathBuf::from("/etc/docker/certs.d"),
        ]
    } else {
        vec![xdg("XDG_CONFIG_HOME", ".config").join("containers/certs.d")]
    }
}

/// The lowest port an ordinary user may bind (net.ipv4.ip_unprivileged_port_start, 1024 if unknown).
pub fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// The user's name, for messages and loginctl.
pub fn user_name() -> String {
    std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
        // SAFETY: getpwuid returns a pointer into static storage or null.
        unsafe {
            let pw = libc::getpwuid(libc::geteuid());
            if pw.is_null() {
                return format!("{}", libc::geteuid());
            }
            std::ffi::CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned()
        }
    })
}
