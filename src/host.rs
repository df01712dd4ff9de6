//! HostFacts: what this host is, gathered once per run (user, folders, systemd, Quadlet), so the
//! decisions made from it are pure and testable with any facts. Also the few probes that need libc or
//! /proc (free space, port owners), asked only where a command needs them.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Facts about the host that decide defaults and how the pod is kept running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// Run as root: rootful Podman, system units; else rootless Podman and user units.
    pub root: bool,
    pub user: String,
    /// `$XDG_CONFIG_HOME` (or `~/.config`) and `$XDG_DATA_HOME` (or `~/.local/share`).
    pub config_home: PathBuf,
    pub data_home: PathBuf,
    /// systemd runs as the init system (the check sd_booted(3) documents).
    pub systemd_running: bool,
    /// Podman's Quadlet generator for this kind of user is installed.
    pub quadlet_generator: bool,
    /// The lowest port an ordinary user may bind (net.ipv4.ip_unprivileged_port_start).
    pub unprivileged_port_start: u16,
    /// The host can listen on IPv6.
    pub ipv6: bool,
    /// Every address on the host's interfaces (loopback included), with its interface's name.
    pub interfaces: Vec<(String, std::net::IpAddr)>,
    /// Where to ask whether a uid or gid is someone's (see [`worker_id`]).
    pub ids: IdProbe,
}

/// Who answers whether an id is taken: this host (NSS, /etc/subuid, /etc/subgid), or nobody (tests' facts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdProbe {
    Host,
    #[cfg_attr(not(test), allow(dead_code))]
    Nothing,
}

impl IdProbe {
    /// Whether an account, a group or a subordinate range has `id` (or the host cannot say: taken).
    pub fn taken(self, id: u32) -> bool {
        match self {
            IdProbe::Nothing => false,
            IdProbe::Host => account_has(id) || subordinate_has(id),
        }
    }
}

impl HostFacts {
    /// Reads the facts from this process and host (no subprocess).
    pub fn gather() -> Self {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"));
        let xdg = |var: &str, fallback: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .unwrap_or_else(|| home.join(fallback))
        };
        let kind = if root { "system" } else { "user" };
        let quadlet_generator = ["/usr/lib/systemd", "/lib/systemd"]
            .iter()
            .any(|dir| Path::new(&format!("{dir}/{kind}-generators/podman-{kind}-generator")).exists());
        HostFacts {
            root,
            user: user_name(),
            config_home: xdg("XDG_CONFIG_HOME", ".config"),
            data_home: xdg("XDG_DATA_HOME", ".local/share"),
            systemd_running: Path::new("/run/systemd/system").is_dir(),
            quadlet_generator,
            unprivileged_port_start: std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(1024),
            ipv6: crate::listen::ipv6_available(),
            interfaces: crate::listen::host_addresses(),
            ids: IdProbe::Host,
        }
    }

    /// The facts of this process, gathered on first use (for defaults clap shows in --help).
    pub fn current() -> &'static HostFacts {
        static FACTS: OnceLock<HostFacts> = OnceLock::new();
        FACTS.get_or_init(HostFacts::gather)
    }

    /// Every address on the host's interfaces.
    pub fn addresses(&self) -> Vec<std::net::IpAddr> {
        self.interfaces.iter().map(|(_, ip)| *ip).collect()
    }

    /// `/etc/registry-up`, or `$XDG_CONFIG_HOME/registry-up` for a user.
    pub fn default_config_dir(&self) -> PathBuf {
        self.pick("/etc/registry-up", self.config_home.join("registry-up"))
    }

    /// `/var/lib/registry-up/data`, or `$XDG_DATA_HOME/registry-up/data` for a user.
    pub fn default_data_dir(&self) -> PathBuf {
        self.pick("/var/lib/registry-up/data", self.data_home.join("registry-up/data"))
    }

    /// 443 for root; 8443 for a user, who may not bind ports below `unprivileged_port_start`.
    pub fn default_port(&self) -> u16 {
        if self.root {
            443
        } else {
            8443
        }
    }

    /// Where systemd looks for units: system units for root, user units for a user.
    pub fn unit_dir(&self) -> PathBuf {
        self.pick("/etc/systemd/system", self.config_home.join("systemd/user"))
    }

    /// Where Podman's Quadlet generator reads `.kube` files.
    pub fn quadlet_dir(&self) -> PathBuf {
        self.pick("/etc/containers/systemd", self.config_home.join("containers/systemd"))
    }

    /// Folders whose `HOST:PORT/ca.crt` container clients read: system-wide for root (containers and
    /// docker), the user's own for a user (containers/image reads it for rootless clients).
    pub fn trust_roots(&self) -> Vec<PathBuf> {
        if self.root {
            vec![
                PathBuf::from("/etc/containers/certs.d"),
                PathBuf::from("/etc/docker/certs.d"),
            ]
        } else {
            vec![self.config_home.join("containers/certs.d")]
        }
    }

    fn pick(&self, system: &str, user: PathBuf) -> PathBuf {
        if self.root {
            PathBuf::from(system)
        } else {
            user
        }
    }

    /// Facts for tests: root or an ordinary user with a home in `home`, systemd and Quadlet as given.
    #[cfg(test)]
    pub fn fixed(root: bool, systemd_running: bool, quadlet_generator: bool) -> Self {
        HostFacts {
            root,
            user: if root { "root".into() } else { "alice".into() },
            config_home: PathBuf::from("/home/alice/.config"),
            data_home: PathBuf::from("/home/alice/.local/share"),
            systemd_running,
            quadlet_generator,
            unprivileged_port_start: 1024,
            ipv6: true,
            ids: IdProbe::Nothing,
            interfaces: vec![
                ("lo".into(), [127, 0, 0, 1].into()),
                ("lo".into(), std::net::Ipv6Addr::LOCALHOST.into()),
            ],
        }
    }
}

/// The user's name, for messages and loginctl.
fn user_name() -> String {
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

/// What to do about a failed read or write of a file or folder, from the error's kind and from who runs
/// registry-up: "run as root" only to someone who is not root.
pub fn io_fix(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::PermissionDenied if !HostFacts::current().root => "run as root, or fix its permissions",
        K::PermissionDenied => {
            "even root is refused: check its attributes (lsattr, an immutable file) and how its file system is \
             mounted, or choose another folder"
        }
        K::ReadOnlyFilesystem => {
            "its file system is mounted read-only: remount it read-write, or choose another folder"
        }
        K::NotADirectory => "a file stands where a folder is needed: move that file away, or choose another folder",
        K::IsADirectory => "a folder stands where a file is needed: move that folder away",
        K::FileTooLarge => "check it is the right file",
        K::InvalidInput => "give a regular file (not a FIFO, device or folder)",
        K::InvalidData => "it is not text (not UTF-8): restore it from a backup, or move it away",
        K::NotFound => "it does not exist: check the path",
        K::StorageFull | K::QuotaExceeded => "its disk is full: free space, or choose another folder",
        _ => "check the path, its permissions and its disk",
    }
}

/// "Cannot VERB PATH (error): what to do." for a failed file operation.
pub fn io_failed(verb: &str, path: &Path, e: &std::io::Error) -> String {
    format!("Cannot {verb} {} ({e}): {}.", path.display(), io_fix(e))
}

/// A file's text, or None when it does not exist; any other failure is an error saying what to do.
pub fn read_optional(path: &Path) -> crate::error::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::error::Error::usage(io_failed("read", path, &e))),
    }
}

/// Whether `meta` (of a temp file or folder named for process `pid`) is what a run of this user left when
/// it was killed: owned by this user, and no process `pid` exists any more. A run still going keeps its own.
pub fn left_by_dead_run(meta: &std::fs::Metadata, pid: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions; signal 0 only asks whether the process exists.
    let (me, gone) = unsafe {
        (
            libc::geteuid(),
            pid > 0 && libc::kill(pid, 0) != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH),
        )
    };
    meta.uid() == me && gone
}

/// Whether `path` is a file this process may execute.
pub fn executable(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid path string.
    path.is_file() && unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
}

/// This program's own path, for units that run it later (the maintenance timer).
pub fn self_path() -> String {
    // A binary replaced while it runs reads as "PATH (deleted)": the path is where the new one is.
    std::env::current_exe()
        .ok()
        .map(|p| p.display().to_string().trim_end_matches(" (deleted)").to_string())
        .or_else(|| which("registry-up").map(|p| p.display().to_string()))
        .unwrap_or_else(|| "/usr/local/bin/registry-up".into())
}

/// Finds an executable on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| executable(candidate))
}

/// Bytes free for an unprivileged writer on the filesystem holding `path` (statvfs f_bavail).
pub fn free_bytes(path: &Path) -> Option<u64> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid path string and `stat` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// Total size of the regular files below `dir` (symlinks not followed).
pub fn tree_size(dir: &Path) -> u64 {
    tree_stat(dir).0
}

/// Bytes of the regular files below `dir`, and the latest change to anything in it (`dir` included).
/// Links are not followed.
pub fn tree_stat(dir: &Path) -> (u64, Option<std::time::SystemTime>) {
    let mut total = 0;
    let mut newest = std::fs::symlink_metadata(dir).and_then(|m| m.modified()).ok();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            newest = newest.max(meta.modified().ok());
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    (total, newest)
}

/// Who holds a TCP port, when it is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortUse {
    Free,
    /// Taken, by (pid, command name) when /proc tells.
    Taken(Option<(u32, String)>),
}

/// Whether nginx could bind every one of `sockets` (one port). Binding a low port as non-root is
/// refused here but may work for Podman: that counts as free (Podman decides).
pub fn port_use(sockets: &[std::net::SocketAddr]) -> PortUse {
    for socket in sockets {
        if let Err(e) = std::net::TcpListener::bind(socket) {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                return PortUse::Taken(port_owner(socket.port()));
            }
        }
    }
    PortUse::Free
}

/// The process listening on TCP `port` (any address), as (pid, command name), found through
/// /proc/net/tcp{,6} and the processes' open sockets. None if unknown or not permitted.
pub fn port_owner(port: u16) -> Option<(u32, String)> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEX_IP:HEX_PORT; state 0A is LISTEN; field 9 is the socket inode.
            let Some(local_port) = fields.get(1).and_then(|a| a.rsplit(':').next()) else {
                continue;
            };
            if u16::from_str_radix(local_port, 16).ok() == Some(port) && fields.get(3) == Some(&"0A") {
                inodes.extend(fields.get(9).map(|i| format!("socket:[{i}]")));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = proc_entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if inodes.iter().any(|i| target.as_os_str() == i.as_str()) {
                    let name = std::fs::read_to_string(proc_entry.path().join("comm")).unwrap_or_default();
                    return Some((pid, name.trim().to_string()));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::HostFacts;

    #[test]
    fn root_and_users_get_their_own_folders_and_ports() {
        let root = HostFacts::fixed(true, true, true);
        assert_eq!(root.default_config_dir().to_str(), Some("/etc/registry-up"));
        assert_eq!(root.default_port(), 443);
        assert_eq!(root.unit_dir().to_str(), Some("/etc/systemd/system"));
        let user = HostFacts::fixed(false, true, true);
        assert_eq!(
            user.default_config_dir().to_str(),
            Some("/home/alice/.config/registry-up")
        );
        assert_eq!(
            user.default_data_dir().to_str(),
            Some("/home/alice/.local/share/registry-up/data")
        );
        assert_eq!(user.default_port(), 8443);
        assert_eq!(
            user.quadlet_dir().to_str(),
            Some("/home/alice/.config/containers/systemd")
        );
        assert_eq!(user.trust_roots().len(), 1);
    }
}

/// nginx's workers in the images registry-up runs (the official nginx images' `nginx` user).
pub const ROOTLESS_WORKER_ID: u32 = 101;
/// Where rootful workers' ids start: the range systemd documents as unused (0x70000000 up; container ranges
/// end below it), so that no account, group or subordinate range a tool hands out has one.
const WORKER_RANGE: u32 = 0x7000_0000;
/// Each appliance's slot in that range is this wide; its id is 101 into it (the images' own, for reading).
const WORKER_SLOT: u32 = 4096;
/// The id of the first slot (what tests' facts and the render snapshots show).
#[cfg_attr(not(test), allow(dead_code))]
pub const WORKER_ID_BASE: u32 = WORKER_RANGE + 101;

/// The uid (and gid) nginx's workers run as. A rootful pod shares the host's user namespace, so the
/// workers' uid is a host uid: an account with it could reach the workers' `/proc/PID/root` (the
/// registry's socket) and memory (the server key). So root's pod uses one that no account, group or
/// subordinate range (/etc/subuid, /etc/subgid: other users' rootless containers) has, in a slot of its own
/// chosen by the appliance's id (`appliance`, hex), so that two appliances on one host do not share their
/// workers' id either (65 536 slots). An ordinary user's pod keeps the images' 101, which Podman maps into
/// that user's own subordinate range. None: every slot is taken.
pub fn worker_id(root: bool, appliance: &str, ids: IdProbe) -> Option<u32> {
    if !root {
        return Some(ROOTLESS_WORKER_ID);
    }
    let first = appliance
        .get(..4)
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .unwrap_or(0);
    (0..=u32::from(u16::MAX))
        .map(|k| WORKER_RANGE + ((first + k) & 0xffff) * WORKER_SLOT + 101)
        .find(|&id| !ids.taken(id))
}

/// Whether /etc/subuid or /etc/subgid gives `id` to someone.
fn subordinate_has(id: u32) -> bool {
    ["/etc/subuid", "/etc/subgid"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| crate::subid::parse(&text))
        .any(|r| r.start <= u64::from(id) && u64::from(id) < r.start.saturating_add(r.count))
}

/// Whether a user or a group (files, LDAP, whatever NSS asks) has `id`. An answer NSS cannot give (an
/// error other than "not found") counts as taken: an id is used only when it is known to be nobody's.
fn account_has(id: u32) -> bool {
    // getpwuid_r(3): these mean "not found"; ERANGE asks for a larger buffer.
    let absent = |rc: i32| matches!(rc, 0 | libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM);
    let mut size = 16 * 1024;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        // SAFETY: each call gets a zeroed out-struct, a buffer of the length passed, and a result pointer;
        // the reentrant variants keep no state between calls.
        let (user, group) = unsafe {
            let mut pwd: libc::passwd = std::mem::zeroed();
            let mut found: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwuid_r(id, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found);
            let user = (rc, !found.is_null());
            let mut grp: libc::group = std::mem::zeroed();
            let mut found: *mut libc::group = std::ptr::null_mut();
            let rc = libc::getgrgid_r(id, &mut grp, buf.as_mut_ptr(), buf.len(), &mut found);
            (user, (rc, !found.is_null()))
        };
        if (user.0 == libc::ERANGE || group.0 == libc::ERANGE) && size < (1 << 24) {
            size *= 4;
            continue;
        }
        return user.1 || group.1 || !absent(user.0) || !absent(group.0);
    }
}

#[cfg(test)]
mod worker_tests {
    use super::*;

    #[test]
    fn the_workers_id_is_one_nobody_has_in_a_slot_of_the_appliance_s_own() {
        assert_eq!(
            worker_id(false, "abcd", IdProbe::Host),
            Some(101),
            "rootless: Podman maps the image's own"
        );
        assert_eq!(worker_id(true, "0000", IdProbe::Nothing), Some(WORKER_ID_BASE));
        let (a, b) = (
            worker_id(true, "1234abcd", IdProbe::Nothing),
            worker_id(true, "1235abcd", IdProbe::Nothing),
        );
        assert_eq!(a, Some(WORKER_RANGE + 0x1234 * WORKER_SLOT + 101));
        assert_ne!(a, b, "two appliances, two ids");
        assert_eq!(
            worker_id(true, "ffff", IdProbe::Nothing),
            Some(WORKER_RANGE + 0xffff * WORKER_SLOT + 101)
        );
        const {
            assert!(
                WORKER_RANGE + 0xffff * WORKER_SLOT + 101 < 1 << 31,
                "a positive 32-bit id for every tool"
            )
        };
        // Root's id is taken on any host; the id chosen here is nobody's.
        assert!(IdProbe::Host.taken(0));
        let id = worker_id(true, "1234abcd", IdProbe::Host).unwrap();
        assert!(!account_has(id) && !subordinate_has(id), "{id} is someone's here");
    }
}
