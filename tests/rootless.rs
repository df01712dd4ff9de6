//! Rootless mode, tested as a real ordinary user: the test (root) creates users, prepares them with
//! `registry-up prepare-user`, runs the real binary as them, checks from outside with skopeo, and removes
//! the users, their ranges and their files again.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Mutex;

use common::{skopeo_copy, text, Run};

/// Both tests edit /etc/subuid and /etc/subgid (through useradd and prepare-user): one at a time.
static SUBID_FILES: Mutex<()> = Mutex::new(());

const PREFIX: &str = "rue2e";

struct TestUser {
    name: String,
    uid: u32,
    home: PathBuf,
}

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn remove_subid_lines(owner_prefix: &str) {
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let kept: String = text
            .lines()
            .filter(|l| !l.starts_with(owner_prefix))
            .map(|l| format!("{l}\n"))
            .collect();
        if kept != text {
            std::fs::write(file, kept).unwrap();
        }
    }
}

/// Users of dead test runs (`rue2e<pid><letter>`) and their ranges.
fn sweep() {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    for line in passwd.lines() {
        let name = line.split(':').next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if pid.parse::<u32>().is_ok_and(|p| !common::pid_alive(p)) {
            run("pkill", &["-KILL", "-u", name]);
            run("userdel", &["-r", name]);
            remove_subid_lines(&format!("{name}:"));
        }
    }
}

impl TestUser {
    fn create(letter: char) -> Self {
        sweep();
        let name = format!("{PREFIX}{}{letter}", std::process::id());
        let out = run("useradd", &["-m", "-s", "/bin/sh", &name]);
        assert!(out.status.success(), "useradd: {}", text(&out.stderr));
        let uid: u32 = text(&run("id", &["-u", &name]).stdout).trim().parse().unwrap();
        // No logind here: make the runtime folder pam_systemd would make.
        let runtime = PathBuf::from(format!("/run/user/{uid}"));
        std::fs::create_dir_all(&runtime).unwrap();
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(run("chown", &[&format!("{name}:{name}"), runtime.to_str().unwrap()])
            .status
            .success());
        TestUser {
            home: PathBuf::from(format!("/home/{name}")),
            name,
            uid,
        }
    }

    /// What runs a program as this user, with a login-like environment and the test Podman settings.
    fn login(&self) -> Vec<String> {
        vec![
            "runuser".into(),
            "-u".into(),
            self.name.clone(),
            "--".into(),
            "env".into(),
            "-i".into(),
            format!("HOME={}", self.home.display()),
            format!("USER={}", self.name),
            "PATH=/usr/local/bin:/usr/bin:/bin".into(),
            format!("XDG_RUNTIME_DIR=/run/user/{}", self.uid),
            format!("CONTAINERS_CONF={}", common::containers_conf().display()),
        ]
    }

    /// Runs `program args` as this user.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let login = self.login();
        Command::new(&login[0])
            .args(&login[1..])
            .arg(program)
            .args(args)
            .output()
            .unwrap()
    }

    /// registry-up as this user.
    fn registry_up(&self) -> Run {
        Run::bin().under(self.login())
    }

    fn range(&self, file: &str) -> Option<(u64, u64)> {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        text.lines().find_map(|l| {
            let p: Vec<&str> = l.split(':').collect();
            (p.len() == 3 && p[0] == self.name).then(|| (p[1].parse().unwrap(), p[2].parse().unwrap()))
        })
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = self.run("podman", &["pod", "rm", "-f", "-a", "-t", "0"]);
        run("pkill", &["-KILL", "-u", &self.name]);
        std::thread::sleep(std::time::Duration::from_millis(300));
        run("userdel", &["-r", &self.name]);
        remove_subid_lines(&format!("{}:", self.name));
        let _ = std::fs::remove_dir_all(format!("/run/user/{}", self.uid));
    }
}

/// Closes /dev/net/tun to users while the test runs (restored on drop): the pod uses the host's network,
/// so rootless Podman needs no user-mode networking (slirp4netns, pasta), which would need it.
struct TunClosedToUsers(u32);

impl TunClosedToUsers {
    fn new() -> Self {
        let mode = std::fs::metadata("/dev/net/tun")
            .expect("/dev/net/tun exists")
            .permissions()
            .mode();
        std::fs::set_permissions("/dev/net/tun", std::fs::Permissions::from_mode(0o600)).unwrap();
        TunClosedToUsers(mode & 0o777)
    }
}

impl Drop for TunClosedToUsers {
    fn drop(&mut self) {
        let _ = std::fs::set_permissions("/dev/net/tun", std::fs::Permissions::from_mode(self.0));
    }
}

fn prepare(name: &str) -> Run {
    Run::bin().args(["prepare-user", name])
}

#[test]
fn an_ordinary_user_runs_the_appliance_rootless() {
    if !common::e2e() {
        return;
    }
    let _lock = SUBID_FILES.lock().unwrap_or_else(|e| e.into_inner());
    let _tun = TunClosedToUsers::new();
    let user = TestUser::create('a');

    // prepare-user: the range useradd gave is valid and kept; a second run changes nothing.
    prepare(&user.name).stdout_has(format!("{} keeps", user.name)).run();
    let files = || {
        (
            std::fs::read("/etc/subuid").unwrap(),
            std::fs::read("/etc/subgid").unwrap(),
        )
    };
    let before = files();
    prepare(&user.name).run();
    assert_eq!(files(), before, "a second prepare-user changes nothing");

    // A privileged port fails early with the sysctl advice, and leaves nothing behind.
    let other = user.home.join("other");
    user.registry_up()
        .args(["--domain", "localhost", "--port", "443"])
        .config_dir(&other)
        .code(2)
        .stderr_has("sysctl -w net.ipv4.ip_unprivileged_port_start=443")
        .stderr_has("/etc/sysctl.d/")
        .run();
    assert!(!other.exists());
    assert!(
        text(&user.run("podman", &["pod", "ps", "-q"]).stdout).trim().is_empty(),
        "no half-created pod"
    );

    // A bare `registry-up` before anything is installed: a quick start, not only a usage error.
    user.registry_up()
        .code(2)
        .stderr_has("Quick start:")
        .stderr_has("registry-up --domain registry.example.com")
        .stderr_has(format!("{}/.config/registry-up/state.json", user.home.display()))
        .run();

    // The whole appliance, as the user, from the image archives, with no extra flag for rootless.
    for archive in common::image_archives() {
        let dest = user.home.join(archive.file_name().unwrap());
        std::fs::copy(archive, &dest).unwrap();
        assert!(run("chown", &[&user.name, dest.to_str().unwrap()]).status.success());
    }
    let port = common::free_port().to_string();
    // Dual-stack on loopback, as issue 19 asks.
    let v6_name = format!("{}-v6.registry-up.test", user.name);
    let _v6 = common::HostsEntry::add_address(&v6_name, "::1");
    let mut args = common::dual_stack_args(&v6_name);
    args.extend(
        [
            "--port",
            &port,
            "--registry-image",
            common::REGISTRY_IMAGE,
            "--nginx-image",
            common::NGINX_IMAGE,
            "--image-archive",
            &format!("{}/registry.tar", user.home.display()),
            "--image-archive",
            &format!("{}/nginx.tar", user.home.display()),
        ]
        .map(String::from),
    );
    user.registry_up().args(args).stdout_has("ok   verify push/pull").run();
    let config = user.home.join(".config/registry-up");
    let data = user.home.join(".local/share/registry-up/data");
    assert!(config.join("ca.crt").exists() && data.is_dir(), "XDG folders are used");
    let pods = text(
        &user
            .run("podman", &["pod", "ps", "--format", "{{.Name}} {{.Status}}"])
            .stdout,
    );
    assert!(
        pods.contains("registry-pod Running"),
        "the user's own rootless pod: {pods}"
    );
    // Its logs, both containers, as the user.
    let out = user.registry_up().arg("logs").run();
    let said = text(&out.stdout);
    assert!(said.lines().any(|l| l.starts_with("registry | ")), "{said}");
    assert!(said.lines().any(|l| l.starts_with("nginx    | ")), "{said}");

    // skopeo, from outside (as root), through the proxy: the image comes back with its digest.
    let work = tempfile::tempdir().unwrap();
    let image = format!("docker://localhost:{port}/rootless/nginx:1");
    let src = format!("oci-archive:{}", common::image_archives()[1].display());
    let pushed = skopeo_copy(&src, &image, &config, None);
    let dest = format!("dir:{}", work.path().join("image").display());
    assert_eq!(pushed, skopeo_copy(&image, &dest, &config, None));
    // Pushed over 127.0.0.1 above, pulled over [::1] here: same digest. verify by the IPv6 literal passes.
    let over_v6 = format!("docker://{v6_name}:{port}/rootless/nginx:1");
    let dest = format!("dir:{}", work.path().join("image-v6").display());
    assert_eq!(pushed, skopeo_copy(&over_v6, &dest, &config, None));
    user.registry_up()
        .args(["verify", "--domain", "::1"])
        .stdout_has("PASS round-trip")
        .stdout_has(format!("connected to [::1]:{port}"))
        .run();

    // What the registry stored belongs to the user (container root is the user), and keys stay private.
    let blobs: Vec<_> = common::mtimes(&data).into_iter().map(|(p, _)| p).collect();
    assert!(blobs.len() > 4, "pushed blobs are on disk");
    for blob in &blobs {
        assert_eq!(
            std::fs::metadata(blob).unwrap().uid(),
            user.uid,
            "{} is not the user's",
            blob.display()
        );
    }
    for key in ["ca/ca.key", "tls/server.key"] {
        let meta = std::fs::metadata(config.join(key)).unwrap();
        assert_eq!(
            (meta.uid(), meta.permissions().mode() & 0o777),
            (user.uid, 0o600),
            "{key}"
        );
    }
    // gc as the user: the registry's files are the user's, and nginx is the user's to switch.
    user.registry_up()
        .arg("gc")
        .stdout_has("PASS deep")
        .stdout_has("gc freed")
        .run();
    let status = user.registry_up().args(["status", "--json"]).output();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["healthy"], true, "{status:#}");
    assert_eq!(status["settings"]["rootless"], true);
}

fn ranges_in(file: &str) -> Vec<(String, u64, u64)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let p: Vec<&str> = l.split(':').collect();
            if p.len() != 3 {
                return None;
            }
            Some((p[0].to_string(), p[1].parse().ok()?, p[2].parse().ok()?))
        })
        .collect()
}

fn overlap(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0 + b.1 && b.0 < a.0 + a.1
}

#[test]
fn prepared_users_get_ranges_that_overlap_nothing() {
    if !common::e2e() {
        return;
    }
    let _lock = SUBID_FILES.lock().unwrap_or_else(|e| e.into_inner());
    let users = [TestUser::create('b'), TestUser::create('c'), TestUser::create('d')];
    let handwritten = format!("{PREFIX}{}h", std::process::id());
    struct Lines(String);
    impl Drop for Lines {
        fn drop(&mut self) {
            remove_subid_lines(&self.0);
        }
    }
    let _cleanup = Lines(handwritten.clone());
    // Debian's useradd gives every new user a range of its own: drop those, so prepare-user allocates.
    for u in &users {
        remove_subid_lines(&format!("{}:", u.name));
    }

    // Two users in turn: each gets 65536 IDs, overlapping nothing in the file.
    for u in &users[..2] {
        let out = prepare(&u.name).output();
        assert!(
            text(&out.stdout).contains(&format!("add {}:", u.name)),
            "{}",
            text(&out.stdout)
        );
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        let all = ranges_in(file);
        for u in &users[..2] {
            let mine = u
                .range(file)
                .unwrap_or_else(|| panic!("{} has no range in {file}", u.name));
            assert_eq!(mine.1, 65536);
            for (owner, start, count) in &all {
                if *owner != u.name {
                    assert!(
                        !overlap(mine, (*start, *count)),
                        "{file}: {} {mine:?} overlaps {owner}",
                        u.name
                    );
                }
            }
        }
    }

    // Hand-written ranges fill every gap up to the highest range, and one more block sits on top:
    // the third user must be placed after all of them.
    let mut expected = Vec::new();
    for file in ["/etc/subuid", "/etc/subgid"] {
        let mut all: Vec<(u64, u64)> = ranges_in(file).into_iter().map(|(_, s, c)| (s, s + c)).collect();
        all.sort();
        let mut cursor = 100_000;
        let mut lines = String::new();
        for (start, end) in &all {
            if *start > cursor {
                lines.push_str(&format!("{handwritten}:{cursor}:{}\n", start - cursor));
            }
            cursor = cursor.max(*end);
        }
        lines.push_str(&format!("{handwritten}:{cursor}:100000\n"));
        let mut content = std::fs::read_to_string(file).unwrap();
        content.push_str(&lines);
        std::fs::write(file, content).unwrap();
        expected.push((file, cursor + 100_000));
    }
    let out = prepare(&users[2].name).output();
    for (file, start) in expected {
        let got = users[2].range(file).unwrap_or_else(|| panic!("{}", text(&out.stdout)));
        assert_eq!(
            got,
            (start, 65536),
            "{file}: placed right after the hand-written ranges"
        );
    }
}
