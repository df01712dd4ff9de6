//! `registry-up doctor`: the preflight for root and rootless hosts. Every check says ok, or the problem
//! and its fix. The rootless checks are shared with `prepare-user`.

use std::net::ToSocketAddrs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::Serialize;

use crate::cli::DoctorArgs;
use crate::error::Result;
use crate::runtime::podman::Podman;

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub name: String,
    /// ok, problem, or info (a fact worth knowing, not a fault).
    pub status: &'static str,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(name: &str, detail: impl Into<String>) -> Self {
        Finding {
            name: name.into(),
            status: "ok",
            detail: detail.into(),
            fix: None,
        }
    }
    pub fn info(name: &str, detail: impl Into<String>) -> Self {
        Finding {
            name: name.into(),
            status: "info",
            detail: detail.into(),
            fix: None,
        }
    }
    pub fn problem(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            name: name.into(),
            status: "problem",
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    pub fn is_problem(&self) -> bool {
        self.status == "problem"
    }
}

/// The pieces rootless Podman needs on any host: id-mapping helpers, user-mode networking, a usable
/// /dev/net/tun and a storage driver.
pub fn rootless_checks() -> Vec<Finding> {
    let mut out = Vec::new();
    for tool in ["newuidmap", "newgidmap"] {
        match crate::runtime::which(tool).or_else(|| Some(Path::new("/usr/bin").join(tool)).filter(|p| p.exists())) {
            None => out.push(Finding::problem(
                tool,
                format!("{tool} is missing"),
                "apt-get install uidmap",
            )),
            Some(path) => {
                let mode = std::fs::metadata(&path).map(|m| m.permissions().mode()).unwrap_or(0);
                let caps = xattr_present(&path, "security.capability");
                if mode & 0o4000 != 0 || caps {
                    out.push(Finding::ok(
                        tool,
                        format!("{} (setuid or file capabilities)", path.display()),
                    ));
                } else {
                    out.push(Finding::problem(
                        tool,
                        format!("{} is neither setuid nor given file capabilities", path.display()),
                        "apt-get install --reinstall uidmap",
                    ));
                }
            }
        }
    }
    let net: Vec<String> = ["pasta", "slirp4netns"]
        .iter()
        .filter_map(|t| crate::runtime::which(t).map(|_| t.to_string()))
        .collect();
    if net.is_empty() {
        out.push(Finding::problem(
            "network",
            "neither slirp4netns nor pasta is installed",
            "apt-get install slirp4netns (or passt)",
        ));
    } else {
        out.push(Finding::ok("network", format!("{} available", net.join(" and "))));
    }
    match std::fs::metadata("/dev/net/tun") {
        Err(_) => out.push(Finding::problem(
            "/dev/net/tun",
            "missing, so user-mode networking cannot start",
            "modprobe tun (and make sure the device node exists: mknod /dev/net/tun c 10 200)",
        )),
        Ok(m) if m.permissions().mode() & 0o006 != 0o006 => out.push(Finding::problem(
            "/dev/net/tun",
            format!(
                "mode {:o}: ordinary users cannot open it (\"open /dev/net/tun: Permission denied\"); udev makes it 0666 on a normal host, and it is not running here",
                m.permissions().mode() & 0o777
            ),
            "chmod 0666 /dev/net/tun, and keep it with a tmpfiles.d line: echo 'z /dev/net/tun 0666 - - -' > /etc/tmpfiles.d/tun.conf",
        )),
        Ok(_) => out.push(Finding::ok("/dev/net/tun", "usable by ordinary users")),
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let (major, minor) = kernel
        .trim()
        .split(['.', '-'])
        .take(2)
        .map(|n| n.parse::<u32>().unwrap_or(0))
        .fold((0, 0), |(a, _), n| if a == 0 { (n, 0) } else { (a, n) });
    if (major, minor) >= (5, 13) || crate::runtime::which("fuse-overlayfs").is_some() {
        out.push(Finding::ok(
            "storage",
            format!("overlay works rootless (kernel {})", kernel.trim()),
        ));
    } else {
        out.push(Finding::problem(
            "storage",
            format!("kernel {} has no unprivileged overlay and fuse-overlayfs is missing: Podman falls back to the slow vfs driver", kernel.trim()),
            "apt-get install fuse-overlayfs",
        ));
    }
    out
}

fn xattr_present(path: &Path, name: &str) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let (Ok(p), Ok(n)) = (
        std::ffi::CString::new(path.as_os_str().as_bytes()),
        std::ffi::CString::new(name),
    ) else {
        return false;
    };
    // SAFETY: valid C strings; a null buffer with size 0 asks only for the value's length.
    unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) > 0 }
}

/// Whether `ip` is an address of this host: binding to it succeeds only then.
fn is_local(ip: std::net::IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

pub fn command(args: &DoctorArgs) -> Result<i32> {
    let state = crate::settings::read_state(&args.config_dir).ok().flatten();
    let rootless = !crate::paths::is_root();
    let mut findings = Vec::new();

    // Podman, and whether it can run a container at all.
    match Podman::find().and_then(|p| p.version().map(|v| (p, v))) {
        Err(e) => findings.push(Finding::problem("podman", e.message, "apt-get install podman runc")),
        Ok((podman, version)) => {
            findings.push(Finding::ok("podman", format!("{} {version}", podman.bin.display())));
            let candidates: Vec<String> = state
                .iter()
                .map(|s| s.registry_image.clone())
                .chain([crate::settings::DEFAULT_REGISTRY_IMAGE.to_string()])
                .collect();
            match candidates.iter().find(|i| podman.image_exists(i).unwrap_or(false)) {
                // Not a problem on a connected host: up pulls what is missing.
                None => findings.push(Finding::info(
                    "runtime",
                    "no registry image is here yet, so no container could be tried: registry-up up pulls the \
                     images (--pull missing), or loads them from --image-archive or --bundle on an air-gapped host",
                )),
                Some(image) => match podman.run_once(image, &["/bin/registry", "--version"]) {
                    Ok(out) => findings.push(Finding::ok("runtime", format!("ran a container of {image}: {out}"))),
                    Err(e) => findings.push(Finding::problem(
                        "runtime",
                        format!("a container of {image} does not start: {}", e.message),
                        "see `podman info`; on these hosts Podman needs runc and `default_ulimits = []` in containers.conf",
                    )),
                },
            }
        }
    }
    if rootless {
        findings.extend(rootless_checks());
        let user = crate::paths::user_name();
        match crate::prepare_user::subid_range(Path::new("/etc/subuid"), &user) {
            Some((start, count)) if count >= 65536 => {
                findings.push(Finding::ok("subuid", format!("{user} has {start}:{count}")))
            }
            _ => findings.push(Finding::problem(
                "subuid",
                format!("{user} has no subordinate UID range of 65536"),
                format!("as root: registry-up prepare-user {user}"),
            )),
        }
    }

    // The port.
    let port = args
        .port
        .or(state.as_ref().map(|s| s.port))
        .unwrap_or_else(crate::paths::default_port);
    let start = crate::paths::unprivileged_port_start();
    let installed_here = state.as_ref().is_some_and(|s| s.port == port);
    if rootless && port < start {
        findings.push(Finding::problem(
            "port",
            format!("port {port} is below net.ipv4.ip_unprivileged_port_start ({start})"),
            format!("use --port {start} or higher, or as root: sysctl -w net.ipv4.ip_unprivileged_port_start={port} (persist in /etc/sysctl.d/)"),
        ));
    } else {
        match std::net::TcpListener::bind(("0.0.0.0", port)) {
            Ok(_) => findings.push(Finding::ok("port", format!("{port} is free and bindable"))),
            Err(_) if installed_here => findings.push(Finding::ok(
                "port",
                format!("{port} is in use by the installed appliance"),
            )),
            Err(e) => {
                let who = crate::sys::port_owner(port)
                    .map(|(pid, n)| format!(" by {n} (pid {pid})"))
                    .unwrap_or_default();
                findings.push(Finding::problem(
                    "port",
                    format!("{port} cannot be bound{who}: {e}"),
                    "stop that program, or choose another --port",
                ));
            }
        }
    }

    // The name.
    if let Some(domain) = args.domain.clone().or(state.as_ref().map(|s| s.domain.clone())) {
        match (domain.as_str(), port).to_socket_addrs() {
            Err(e) => findings.push(Finding::problem(
                "domain",
                format!("{domain} does not resolve ({e})"),
                format!(
                    "add it to DNS, or to /etc/hosts on this host and every client: '<this host's address> {domain}'"
                ),
            )),
            Ok(addrs) => {
                let addrs: Vec<_> = addrs.map(|a| a.ip()).collect();
                let shown: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                if addrs.iter().any(|a| is_local(*a)) {
                    findings.push(Finding::ok(
                        "domain",
                        format!("{domain} resolves to {}, an address of this host", shown.join(", ")),
                    ));
                } else {
                    findings.push(Finding::problem(
                        "domain",
                        format!(
                            "{domain} resolves to {}, which is not an address of this host",
                            shown.join(", ")
                        ),
                        "point the name at this host in DNS or /etc/hosts",
                    ));
                }
            }
        }
    }

    // Disk, systemd, SELinux.
    let data_dir = state
        .as_ref()
        .map(|s| s.data_dir.clone().into())
        .unwrap_or_else(crate::paths::default_data_dir);
    let mut probe = data_dir.clone();
    while !probe.exists() && probe.pop() {}
    match crate::sys::free_bytes(&probe) {
        Some(free) if free >= 1 << 30 => findings.push(Finding::ok(
            "disk",
            format!(
                "{:.1} GiB free for {}",
                free as f64 / (1u64 << 30) as f64,
                data_dir.display()
            ),
        )),
        Some(free) => findings.push(Finding::problem(
            "disk",
            format!(
                "only {:.0} MiB free for {}",
                free as f64 / (1u64 << 20) as f64,
                data_dir.display()
            ),
            "free space, or choose another --data-dir",
        )),
        None => findings.push(Finding::problem(
            "disk",
            format!("cannot read the free space of {}", probe.display()),
            "check the path",
        )),
    }
    if crate::sys::systemd_running() {
        findings.push(Finding::ok(
            "systemd",
            "running as init: the appliance gets a unit and comes back after reboots",
        ));
        if rootless {
            let user = crate::paths::user_name();
            if !crate::runtime::systemd::linger_enabled(&user) {
                findings.push(Finding::problem(
                    "linger",
                    format!("lingering is off for {user}: the pod stops at logout and does not start at boot"),
                    format!("loginctl enable-linger {user}"),
                ));
            }
        }
    } else {
        findings.push(Finding::info(
            "systemd",
            "not running as init: the pod is started directly and will not come back after a reboot",
        ));
    }
    match std::fs::read_to_string("/sys/fs/selinux/enforce").map(|s| s.trim() == "1") {
        Ok(true) => findings.push(Finding::info(
            "selinux",
            "enforcing: the pod YAML asks Podman to relabel every volume (:Z on each mount), so no manual chcon is needed",
        )),
        _ => findings.push(Finding::info("selinux", "not enforcing: the pod YAML's :Z relabel options are a no-op here")),
    }

    let problems = findings.iter().filter(|f| f.is_problem()).count();
    if args.json {
        let doc = serde_json::json!({ "ok": problems == 0, "rootless": rootless, "checks": findings });
        println!("{}", serde_json::to_string_pretty(&doc).expect("serialises"));
    } else {
        print_findings(&findings);
        println!("{} checks, {problems} problem(s)", findings.len());
    }
    Ok(if problems == 0 { 0 } else { 1 })
}

pub fn print_findings(findings: &[Finding]) {
    for f in findings {
        let tag = match f.status {
            "ok" => "ok     ",
            "info" => "info   ",
            _ => "PROBLEM",
        };
        println!("{tag} {:<14} {}", f.name, f.detail);
        if let Some(fix) = &f.fix {
            println!("        {:<14} fix: {fix}", "");
        }
    }
}
