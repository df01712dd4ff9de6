//! Debian guests that boot their own systemd under systemd-nspawn (bookworm: Podman 4.3; trixie: Podman
//! 5), for the tests that need a real init system or a host with nothing of registry-up's on it.
//!
//! The root filesystems are built once per run (tests/guests/build.sh, `make guests`); each test boots
//! its own copy and removes it, its processes and its cgroups at the end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{assert_exit, pid_alive, text, BIN};

/// Where [`Guest::new`] puts the test's binary and the stand-in image archives.
pub const GUEST_BIN: &str = "/usr/local/bin/registry-up";
pub const GUEST_IMAGES: &str = "/usr/local/share/registry-up-test";

pub fn guests_dir() -> PathBuf {
    super::repo().join("target/guests")
}

/// The base root filesystem for `suite`, built once (concurrent tests wait on a lock).
pub fn base_rootfs(suite: &str) -> PathBuf {
    let dir = guests_dir().join(suite);
    std::fs::create_dir_all(guests_dir()).unwrap();
    let _lock = super::FileLock::new(&guests_dir().join(format!(".{suite}.lock")));
    // The script returns at once when the tree it would build is there (its checksum in .complete).
    let out = Command::new(super::repo().join("tests/guests/build.sh"))
        .arg(suite)
        .arg(&dir)
        .output()
        .unwrap();
    assert_exit(&out, 0, &format!("building the {suite} guest"));
    dir
}

/// Guests, cgroups and copies of dead test runs.
fn sweep() {
    let Ok(entries) = std::fs::read_dir(guests_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("run-") else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !pid_alive(p)) {
            if let Some(init) = find_init(&format!("ru-e2e-{name}")) {
                unsafe { libc::kill(init as i32, libc::SIGKILL) };
                std::thread::sleep(Duration::from_secs(1));
            }
            let _ = if entry.path().is_dir() {
                std::fs::remove_dir_all(entry.path())
            } else {
                std::fs::remove_file(entry.path())
            };
            for hierarchy in ["systemd", "unified"] {
                remove_cgroup_tree(Path::new(&format!("/sys/fs/cgroup/{hierarchy}/ru-e2e-{name}")));
            }
        }
    }
}

/// The guest's PID 1: the `systemd` process nspawn put into the `payload` cgroup below the test's own
/// (readlink of /proc/PID/root says only "/" across mount namespaces, so the cgroup is what tells).
fn find_init(cgroup_name: &str) -> Option<u32> {
    let wanted = format!("name=systemd:/{cgroup_name}/payload");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_string_lossy().parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        let cgroup = std::fs::read_to_string(e.path().join("cgroup")).ok()?;
        (comm.trim() == "systemd" && cgroup.lines().any(|l| l.ends_with(&wanted))).then_some(pid)
    })
}

/// Removes a cgroup and everything below it, deepest first (a cgroup is removed with rmdir).
fn remove_cgroup_tree(path: &Path) {
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(path);
}

pub struct Guest {
    pub name: String,
    pub root: PathBuf,
    nspawn: Option<Child>,
    init: u32,
}

impl Guest {
    /// A guest of `suite` with the test's registry-up binary and the stand-in image archives copied in;
    /// `tag` tells apart the guests one test process boots at once.
    pub fn new(suite: &str, tag: &str) -> Self {
        let guest = Guest::bare(suite, tag);
        let root = &guest.root;
        std::fs::copy(BIN, root.join(GUEST_BIN.trim_start_matches('/'))).unwrap();
        let images = root.join(GUEST_IMAGES.trim_start_matches('/'));
        std::fs::create_dir_all(&images).unwrap();
        for archive in super::image_archives() {
            std::fs::copy(archive, images.join(archive.file_name().unwrap())).unwrap();
        }
        guest
    }

    /// A guest of `suite` as debootstrap left it: nothing of registry-up's in it.
    pub fn bare(suite: &str, tag: &str) -> Self {
        sweep();
        let base = base_rootfs(suite);
        let name = format!("run-{}-{suite}{tag}", std::process::id());
        let root = guests_dir().join(&name);
        let _ = std::fs::remove_dir_all(&root);
        let out = Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(&base)
            .arg(&root)
            .output()
            .unwrap();
        assert!(out.status.success(), "copying the rootfs: {}", text(&out.stderr));
        Guest {
            name,
            root,
            nspawn: None,
            init: 0,
        }
    }

    pub fn cgroup(&self, hierarchy: &str) -> PathBuf {
        PathBuf::from(format!("/sys/fs/cgroup/{hierarchy}/ru-e2e-{}", self.name))
    }

    /// Boots the guest and waits until its systemd has finished starting up.
    pub fn boot(&mut self) {
        for h in ["systemd", "unified"] {
            std::fs::create_dir_all(self.cgroup(h)).unwrap();
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.with_extension("log"))
            .unwrap();
        // The launching shell moves itself into cgroups of its own first, as nspawn needs here.
        let script = format!(
            "echo $$ > {}/cgroup.procs && echo $$ > {}/cgroup.procs && exec systemd-nspawn -D {} -b --register=no \
             --keep-unit --capability=all --private-network --console=read-only --system-call-filter='@keyring bpf' \
             -E container=systemd-nspawn",
            self.cgroup("systemd").display(),
            self.cgroup("unified").display(),
            self.root.display()
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nspawn = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                Instant::now() < deadline,
                "the {} guest did not boot; see {}",
                self.name,
                self.root.with_extension("log").display()
            );
            if let Some(init) = find_init(&format!("ru-e2e-{}", self.name)) {
                self.init = init;
                let state = text(&self.exec(&["systemctl", "is-system-running"]).stdout);
                if matches!(state.trim(), "running" | "degraded") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs a command in the guest's namespaces, as root.
    /// (With the guest's own environment: nothing of the test's, such as CONTAINERS_CONF, leaks in.)
    pub fn exec(&self, cmd: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.init.to_string(), "-a", "--"])
            .args(cmd)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", "/root")
            .output()
            .unwrap()
    }

    /// Runs a command as a transient systemd service of the guest (a proper session for loginctl and
    /// `systemctl --user`); `user` runs it as that user with their bus.
    pub fn run(&self, user: Option<(&str, u32)>, cmd: &[&str]) -> Output {
        let mut args = vec![
            "systemd-run".to_string(),
            "--wait".into(),
            "--pipe".into(),
            "--quiet".into(),
        ];
        if let Some((name, uid)) = user {
            args.extend([
                format!("--uid={name}"),
                format!("--setenv=HOME=/home/{name}"),
                format!("--setenv=USER={name}"),
                format!("--setenv=XDG_RUNTIME_DIR=/run/user/{uid}"),
                format!("--setenv=DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/{uid}/bus"),
            ]);
        }
        args.extend(cmd.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.exec(&refs)
    }

    /// [`Guest::run`] of owned arguments (up's, built from [`up_args`]); asserts it succeeded.
    pub fn run_ok(&self, user: Option<(&str, u32)>, args: &[String], what: &str) -> Output {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run(user, &refs);
        assert_exit(&out, 0, what);
        out
    }

    pub fn wait_stopped(&mut self) {
        if let Some(mut child) = self.nspawn.take() {
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "the guest did not stop");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    pub fn poweroff(&mut self) {
        self.exec(&["systemctl", "poweroff", "--no-block"]);
        self.wait_stopped();
    }

    /// SIGKILL to the guest's PID 1: a power cut for everything in it.
    pub fn power_cut(&mut self) {
        unsafe { libc::kill(self.init as i32, libc::SIGKILL) };
        self.wait_stopped();
    }

    /// Polls `check` until it holds or `secs` pass; returns how long it took.
    pub fn wait_for(&self, secs: u64, what: &str, mut check: impl FnMut() -> bool) -> Duration {
        let start = Instant::now();
        while !check() {
            assert!(start.elapsed() < Duration::from_secs(secs), "{what} within {secs} s");
            std::thread::sleep(Duration::from_millis(500));
        }
        start.elapsed()
    }

    pub fn verify_ok(&self, extra: &[&str]) -> bool {
        // By PATH: the test's copy in /usr/local/bin, or the one a package installed in /usr/bin.
        let mut cmd = vec!["registry-up", "verify", "--timeout", "15"];
        cmd.extend_from_slice(extra);
        self.exec(&cmd).status.success()
    }

    /// Pushes `source` (a skopeo transport reference) to `dest` with skopeo in the guest, trusting the
    /// root appliance's CA; returns the manifest digest.
    pub fn push(&self, source: &str, dest: &str) -> String {
        let out = self.exec(&[
            "skopeo",
            "copy",
            "-q",
            "--dest-cert-dir",
            "/etc/registry-up",
            "--digestfile",
            "/root/pushed",
            source,
            &format!("docker://{dest}"),
        ]);
        assert_exit(&out, 0, &format!("pushing {source} to {dest} in the guest"));
        self.read("/root/pushed").trim().to_string()
    }

    /// Whether `reference` in the root appliance answers with `digest`.
    pub fn has_digest(&self, reference: &str, digest: &str) -> bool {
        let out = self.exec(&[
            "skopeo",
            "inspect",
            "--cert-dir",
            "/etc/registry-up",
            "--format",
            "{{.Digest}}",
            &format!("docker://{reference}"),
        ]);
        text(&out.stdout).trim() == digest
    }

    pub fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.root.join(path.trim_start_matches('/'))).unwrap_or_default()
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        // Killing nspawn alone leaves the guest's systemd running: its PID 1 goes first.
        if let Some(init) = find_init(&format!("ru-e2e-{}", self.name)) {
            unsafe { libc::kill(init as i32, libc::SIGKILL) };
        }
        if let Some(mut child) = self.nspawn.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.root);
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(self.root.with_extension("log"));
        }
        for h in ["systemd", "unified"] {
            remove_cgroup_tree(&self.cgroup(h));
        }
    }
}

/// A booted guest of `suite`; None where the end-to-end tests are skipped.
pub fn booted(suite: &str, tag: &str) -> Option<Guest> {
    if !super::e2e() {
        return None;
    }
    let mut guest = Guest::new(suite, tag);
    guest.boot();
    Some(guest)
}
