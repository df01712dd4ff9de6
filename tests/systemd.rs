//! Under a real systemd: Debian guests booted with systemd-nspawn (bookworm: Podman 4.3, classic unit;
//! trixie: Podman 5, Quadlet), with the real binary and the stand-in archives copied in. The appliance
//! must choose its unit kind by itself, come back when its pod is killed, after a clean reboot and after
//! a power cut, with every image, and a lingering user's appliance must come back with no login.
//!
//! The root filesystems are built once per run (tests/guests/build.sh, `make guests`); each test boots
//! its own copy and removes it, its processes and its cgroups at the end.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{assert_exit, pid_alive, text};

const GUEST_BIN: &str = "/usr/local/bin/registry-up";
const GUEST_IMAGES: &str = "/usr/local/share/registry-up-test";

fn guests_dir() -> PathBuf {
    common::repo().join("target/guests")
}

/// The base root filesystem for `suite`, built once (concurrent tests wait on a lock).
fn base_rootfs(suite: &str) -> PathBuf {
    let dir = guests_dir().join(suite);
    std::fs::create_dir_all(guests_dir()).unwrap();
    let _lock = common::FileLock::new(&guests_dir().join(format!(".{suite}.lock")));
    // The script returns at once when the tree it would build is there (its checksum in .complete).
    let out = Command::new(common::repo().join("tests/guests/build.sh"))
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

struct Guest {
    name: String,
    root: PathBuf,
    nspawn: Option<Child>,
    init: u32,
}

impl Guest {
    /// A guest of `suite`; `tag` tells apart the guests one test process boots at once.
    fn new(suite: &str, tag: &str) -> Self {
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
        std::fs::copy(common::BIN, root.join(GUEST_BIN.trim_start_matches('/'))).unwrap();
        let images = root.join(GUEST_IMAGES.trim_start_matches('/'));
        std::fs::create_dir_all(&images).unwrap();
        for archive in common::image_archives() {
            std::fs::copy(archive, images.join(archive.file_name().unwrap())).unwrap();
        }
        Guest {
            name,
            root,
            nspawn: None,
            init: 0,
        }
    }

    fn cgroup(&self, hierarchy: &str) -> PathBuf {
        PathBuf::from(format!("/sys/fs/cgroup/{hierarchy}/ru-e2e-{}", self.name))
    }

    /// Boots the guest and waits until its systemd has finished starting up.
    fn boot(&mut self) {
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
    fn exec(&self, cmd: &[&str]) -> Output {
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
    fn run(&self, user: Option<(&str, u32)>, cmd: &[&str]) -> Output {
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
    fn run_ok(&self, user: Option<(&str, u32)>, args: &[String], what: &str) -> Output {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run(user, &refs);
        assert_exit(&out, 0, what);
        out
    }

    fn wait_stopped(&mut self) {
        if let Some(mut child) = self.nspawn.take() {
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "the guest did not stop");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    fn poweroff(&mut self) {
        self.exec(&["systemctl", "poweroff", "--no-block"]);
        self.wait_stopped();
    }

    /// SIGKILL to the guest's PID 1: a power cut for everything in it.
    fn power_cut(&mut self) {
        unsafe { libc::kill(self.init as i32, libc::SIGKILL) };
        self.wait_stopped();
    }

    /// Polls `check` until it holds or `secs` pass; returns how long it took.
    fn wait_for(&self, secs: u64, what: &str, mut check: impl FnMut() -> bool) -> Duration {
        let start = Instant::now();
        while !check() {
            assert!(start.elapsed() < Duration::from_secs(secs), "{what} within {secs} s");
            std::thread::sleep(Duration::from_millis(500));
        }
        start.elapsed()
    }

    fn verify_ok(&self, extra: &[&str]) -> bool {
        let mut cmd = vec![GUEST_BIN, "verify", "--timeout", "15"];
        cmd.extend_from_slice(extra);
        self.exec(&cmd).status.success()
    }

    fn read(&self, path: &str) -> String {
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

fn up_args(port: &str) -> Vec<String> {
    [
        GUEST_BIN,
        "--domain",
        "registry.test",
        "--port",
        port,
        "--registry-image",
        common::REGISTRY_IMAGE,
        "--nginx-image",
        common::NGINX_IMAGE,
        "--image-archive",
        &format!("{GUEST_IMAGES}/registry.tar"),
        "--image-archive",
        &format!("{GUEST_IMAGES}/nginx.tar"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The appliance survives a killed pod, a clean reboot and a power cut, with its images.
fn survives_everything(guest: &mut Guest, expect_kind: &str) {
    let args = up_args("8443");
    let out = guest.run_ok(None, &args, "up in the guest");
    assert!(
        text(&out.stdout).contains(expect_kind),
        "the right kind of unit was chosen:\n{}",
        text(&out.stdout)
    );
    assert!(text(&out.stdout).contains("ok   verify push/pull"));
    assert!(
        !text(&out.stderr).contains("will not come back"),
        "no reboot warning under systemd"
    );

    let out = guest.exec(&[
        "skopeo",
        "copy",
        "-q",
        "--dest-cert-dir",
        "/etc/registry-up",
        "--digestfile",
        "/root/pushed",
        &format!("oci-archive:{GUEST_IMAGES}/nginx.tar"),
        "docker://registry.test:8443/keep/nginx:1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pushed = guest.read("/root/pushed");
    let still_there = |g: &Guest| {
        let out = g.exec(&[
            "skopeo",
            "inspect",
            "--cert-dir",
            "/etc/registry-up",
            "--format",
            "{{.Digest}}",
            "docker://registry.test:8443/keep/nginx:1",
        ]);
        text(&out.stdout).trim() == pushed.trim()
    };

    // A killed pod: systemd starts it again.
    assert!(guest.exec(&["podman", "pod", "kill", "registry-pod"]).status.success());
    guest.wait_for(60, "systemd restarts a killed pod", || guest.verify_ok(&[]));
    assert!(still_there(guest));

    // logs: both containers and the unit's own journal lines (the restart among them), in one stream.
    let out = guest.run(None, &[GUEST_BIN, "logs"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    for (source, content) in [
        ("registry | ", "/v2/"),
        ("nginx    | ", "\"GET /v2/"),
        ("systemd  | ", "registry-pod"),
    ] {
        assert!(
            said.lines().any(|l| l.starts_with(source) && l.contains(content)),
            "no {source:?} line with {content:?}:\n{said}"
        );
    }
    assert!(!said.contains(" 1970-"), "only lines with their own time:\n{said}");

    // A clean reboot, then a power cut: the appliance is back by itself, nothing lost.
    guest.poweroff();
    guest.boot();
    guest.wait_for(90, "the appliance is back after a reboot", || {
        guest.verify_ok(&["--deep"])
    });
    assert!(still_there(guest), "the image pushed before the reboot is there");
    guest.power_cut();
    guest.boot();
    guest.wait_for(90, "the appliance is back after a power cut", || {
        guest.verify_ok(&["--deep"])
    });
    assert!(still_there(guest), "the image pushed before the power cut is there");
}

/// A booted guest of `suite`; None where the end-to-end tests are skipped.
fn booted(suite: &str, tag: &str) -> Option<Guest> {
    if !common::e2e() {
        return None;
    }
    let mut guest = Guest::new(suite, tag);
    guest.boot();
    Some(guest)
}

#[test]
fn bookworm_podman_4_3_gets_a_classic_unit_that_survives_reboots_and_power_cuts() {
    let Some(mut guest) = booted("bookworm", "") else {
        return;
    };
    survives_everything(&mut guest, "systemd unit registry-pod.service enabled and started");
    let unit = guest.read("/etc/systemd/system/registry-pod.service");
    assert!(
        unit.contains("Type=notify") && unit.contains("Before=podman-restart.service"),
        "{unit}"
    );
    // The maintenance timer: enabled with the appliance; the service it starts runs gc and verify.
    let mut args = up_args("8443");
    args.extend(["--maintenance".into(), "daily".into()]);
    let out = guest.run_ok(None, &args, "up --maintenance daily in the guest");
    assert!(
        text(&out.stdout).contains("registry-pod-maintenance.timer runs registry-up maintain daily"),
        "{}",
        text(&out.stdout)
    );
    let enabled = guest.exec(&["systemctl", "is-enabled", "registry-pod-maintenance.timer"]);
    assert_eq!(text(&enabled.stdout).trim(), "enabled");
    let ran = guest.exec(&["systemctl", "start", "registry-pod-maintenance.service"]);
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    let journal = guest.exec(&["journalctl", "-u", "registry-pod-maintenance.service", "--no-pager"]);
    assert!(text(&journal.stdout).contains("gc freed"), "{}", text(&journal.stdout));
    // down removes the unit, the timer and the pod; the data stays.
    let out = guest.run(None, &[GUEST_BIN, "down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(guest.read("/etc/systemd/system/registry-pod.service").is_empty());
    for unit in ["registry-pod-maintenance.timer", "registry-pod-maintenance.service"] {
        assert!(
            guest.read(&format!("/etc/systemd/system/{unit}")).is_empty(),
            "{unit} left behind"
        );
    }
    assert!(!guest
        .exec(&["podman", "pod", "exists", "registry-pod"])
        .status
        .success());
}

#[test]
fn trixie_podman_5_gets_a_quadlet_and_a_lingering_user_comes_back_without_login() {
    let Some(mut guest) = booted("trixie", "") else { return };
    survives_everything(&mut guest, "Quadlet registry-pod.kube started as registry-pod.service");
    assert!(!guest.read("/etc/containers/systemd/registry-pod.kube").is_empty());
    // The unit Quadlet generated from it passes systemd-analyze verify with nothing to say.
    let out = guest.exec(&[
        "systemd-analyze",
        "verify",
        "/run/systemd/generator/registry-pod.service",
    ]);
    assert!(
        out.status.success() && text(&out.stderr).trim().is_empty(),
        "{}",
        text(&out.stderr)
    );

    // Switching kinds removes the other one first: never two units for one pod.
    let mut args = up_args("8443");
    args.extend(["--systemd".into(), "unit".into()]);
    let out = guest.run_ok(None, &args, "up --systemd unit in the guest");
    assert!(
        text(&out.stdout).contains("removed the Quadlet"),
        "{}",
        text(&out.stdout)
    );
    assert!(guest.read("/etc/containers/systemd/registry-pod.kube").is_empty());
    assert!(!guest.read("/etc/systemd/system/registry-pod.service").is_empty());

    // A prepared user with lingering: the user's Quadlet comes back after a reboot with no login.
    assert!(guest.exec(&["useradd", "-m", "alice"]).status.success());
    let out = guest.run(None, &[GUEST_BIN, "prepare-user", "alice"]);
    assert!(
        text(&out.stdout).contains("linger"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        guest.root.join("var/lib/systemd/linger/alice").exists(),
        "lingering is on"
    );
    let uid: u32 = text(&guest.exec(&["id", "-u", "alice"]).stdout).trim().parse().unwrap();
    guest.wait_for(30, "alice's user manager runs", || {
        guest
            .exec(&["test", "-S", &format!("/run/user/{uid}/bus")])
            .status
            .success()
    });
    let args = up_args("8444");
    let out = guest.run_ok(Some(("alice", uid)), &args, "rootless up in the guest");
    assert!(
        text(&out.stdout).contains("Quadlet registry-pod.kube started"),
        "{}",
        text(&out.stdout)
    );
    guest.poweroff();
    guest.boot();
    let ca = "/home/alice/.config/registry-up/ca.crt";
    guest.wait_for(120, "alice's appliance is up after a reboot, with no login", || {
        guest
            .exec(&[
                "curl",
                "-sf",
                "-o",
                "/dev/null",
                "--cacert",
                ca,
                "https://registry.test:8444/v2/",
            ])
            .status
            .success()
    });
}

/// On a Fedora/RHEL-like host: firewalld runs and drops what no zone allows. up names the port and the
/// command; --open-firewall opens it (a client in another network namespace connects); down closes it and
/// leaves what the administrator opened. Podman 5's skopeo pulls over IPv6 with the CA trust put in place.
#[test]
fn trixie_with_firewalld_the_port_is_named_opened_and_closed_again() {
    let Some(guest) = booted("trixie", "-firewalld") else {
        return;
    };
    let ok = |cmd: &[&str]| {
        let out = guest.exec(cmd);
        assert!(
            out.status.success(),
            "{cmd:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    ok(&["systemctl", "start", "firewalld"]);
    // An opening of the administrator's own, which down must leave alone.
    ok(&["firewall-cmd", "--permanent", "--add-port=9999/tcp"]);
    ok(&["firewall-cmd", "--add-port=9999/tcp"]);
    // Another machine: a namespace behind a veth pair, in the guest's default zone like any new link.
    for cmd in [
        "ip netns add client",
        "ip link add fw0 type veth peer name fw1",
        "ip link set fw1 netns client",
        "ip addr add 10.77.0.1/24 dev fw0",
        "ip link set fw0 up",
        "ip -n client addr add 10.77.0.2/24 dev fw1",
        "ip -n client link set fw1 up",
        "ip -n client link set lo up",
    ] {
        ok(&cmd.split(' ').collect::<Vec<_>>());
    }
    let client_connects = || {
        guest
            .exec(&[
                "ip",
                "netns",
                "exec",
                "client",
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "--max-time",
                "3",
                "--cacert",
                "/etc/registry-up/ca.crt",
                "--resolve",
                "registry.test:8443:10.77.0.1",
                "https://registry.test:8443/v2/",
            ])
            .status
            .success()
    };

    std::fs::write(
        guest.root.join("etc/hosts"),
        format!("{}::1 registry6.test\n", guest.read("/etc/hosts")),
    )
    .unwrap();
    let mut args = up_args("8443");
    args.extend(["--san".into(), "::1".into(), "--san".into(), "registry6.test".into()]);
    let out = guest.run_ok(None, &args, "up in the guest with firewalld");
    let said = text(&out.stderr);
    assert!(said.contains("firewalld drops 8443/tcp in zone public"), "{said}");
    assert!(
        said.contains("firewall-cmd --zone=public --add-port=8443/tcp && firewall-cmd --permanent --zone=public --add-port=8443/tcp"),
        "{said}"
    );
    assert!(
        !client_connects(),
        "firewalld lets the client in before the port is opened"
    );

    args.push("--open-firewall".into());
    let out = guest.run_ok(None, &args, "up --open-firewall in the guest");
    assert!(
        text(&out.stdout).contains("opened 8443/tcp in firewalld zone public"),
        "{}",
        text(&out.stdout)
    );
    assert!(client_connects(), "the client does not get in after --open-firewall");
    assert!(
        ok(&["firewall-cmd", "--permanent", "--query-port=8443/tcp"]).contains("yes"),
        "kept across reboots"
    );
    assert!(ok(&[GUEST_BIN, "doctor"]).contains("firewalld allows 8443/tcp in zone public"));

    // trust writes the CA where containers/image looks for each name, an IPv6 address in brackets; Podman
    // 5's skopeo cannot name a registry by an IPv6 literal (containers/skopeo#631), so it reaches [::1] by a
    // name for ::1 only, trusting the CA with no flag.
    let trusted = ok(&[GUEST_BIN, "trust"]);
    assert!(
        trusted.contains("/etc/containers/certs.d/[::1]:8443/ca.crt"),
        "{trusted}"
    );
    assert!(
        trusted.contains("/etc/containers/certs.d/registry6.test:8443/ca.crt"),
        "{trusted}"
    );
    ok(&[
        "skopeo",
        "copy",
        "-q",
        &format!("oci-archive:{GUEST_IMAGES}/nginx.tar"),
        "docker://registry6.test:8443/v6/nginx:1",
    ]);
    assert!(ok(&["skopeo", "inspect", "docker://registry6.test:8443/v6/nginx:1"]).contains("Digest"));

    let out = guest.run(None, &[GUEST_BIN, "down"]);
    assert_exit(&out, 0, "down in the guest");
    assert!(
        text(&out.stdout).contains("Closed 8443/tcp in firewalld zone public again"),
        "{}",
        text(&out.stdout)
    );
    let out = guest.exec(&["firewall-cmd", "--query-port=8443/tcp"]);
    assert!(!out.status.success(), "8443/tcp is still open at runtime");
    let out = guest.exec(&["firewall-cmd", "--permanent", "--query-port=8443/tcp"]);
    assert!(
        !out.status.success(),
        "8443/tcp is still open in the permanent configuration"
    );
    assert!(
        ok(&["firewall-cmd", "--query-port=9999/tcp"]).contains("yes"),
        "down closed the administrator's port"
    );
    assert!(ok(&["firewall-cmd", "--permanent", "--query-port=9999/tcp"]).contains("yes"));
}
