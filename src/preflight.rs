//! Preflight findings (ok, a problem with its fix, or a fact worth knowing) and the checks rootless
//! Podman needs on any host: shared by `doctor` and `prepare-user`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::Serialize;

use crate::host::which;

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

/// The pieces rootless Podman needs on any host: id-mapping helpers and a storage driver.
pub fn rootless_checks() -> Vec<Finding> {
    let mut out = Vec::new();
    for tool in ["newuidmap", "newgidmap"] {
        match which(tool).or_else(|| Some(Path::new("/usr/bin").join(tool)).filter(|p| p.exists())) {
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
    // No user-mode networking (slirp4netns, pasta, /dev/net/tun): the pod uses the host's network.
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let (major, minor) = kernel
        .trim()
        .split(['.', '-'])
        .take(2)
        .map(|n| n.parse::<u32>().unwrap_or(0))
        .fold((0, 0), |(a, _), n| if a == 0 { (n, 0) } else { (a, n) });
    if (major, minor) >= (5, 13) || which("fuse-overlayfs").is_some() {
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
