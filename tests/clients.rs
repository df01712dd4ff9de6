//! `registry-up clients`: the site's clients pull the registries the appliance mirrors from it. This
//! machine has no internet, so a pull of `docker.io/...` that succeeds can only have been served by the
//! appliance: plain `podman pull` after `clients --apply`, and containerd's `ctr images pull` with the
//! generated certs.d (a containerd daemon of the test's own, on its own socket and folders).
//! k3s and RKE2 cannot run here: their registries.yaml is checked as rendered (snapshot, src/render).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_exit, podman, shown, text, Run};

/// Every path `clients --apply` may create on this host for `registry` that does not exist yet, folders
/// included, removed again on drop (deepest first), whatever the run did: nothing of the machine's own.
struct Applied(Vec<PathBuf>);

impl Applied {
    fn before(registry: &str) -> Self {
        let files = [
            format!(
                "/etc/containers/registries.conf.d/50-registry-up-{}.conf",
                registry.replace(':', "-")
            ),
            format!("/etc/containers/certs.d/{registry}/ca.crt"),
            format!("/etc/docker/certs.d/{registry}/ca.crt"),
            "/etc/containerd/certs.d/docker.io/hosts.toml".into(),
            "/etc/containerd/certs.d/docker.io/registry-up-ca.crt".into(),
            format!("/etc/containerd/certs.d/{registry}/ca.crt"),
        ];
        let mut missing: Vec<PathBuf> = files
            .iter()
            .flat_map(|f| {
                Path::new(f)
                    .ancestors()
                    .take_while(|p| !p.exists())
                    .map(Path::to_path_buf)
            })
            .collect();
        missing.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        missing.dedup();
        Applied(missing)
    }
}

impl Drop for Applied {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = if path.is_dir() {
                std::fs::remove_dir(path)
            } else {
                std::fs::remove_file(path)
            };
        }
    }
}

/// A containerd daemon of the test's own: its own config, socket, root and state under `dir`.
struct Containerd {
    child: Child,
    socket: PathBuf,
}

impl Containerd {
    fn start(dir: &Path) -> Self {
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{socket}\"\n",
                root = dir.join("root").display(),
                state = dir.join("state").display(),
                socket = socket.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd (make deps installs it)");
        // Owned before the wait: a daemon that never answers is still stopped.
        let daemon = Containerd { child, socket };
        let started = Instant::now();
        while !daemon.socket.exists() {
            assert!(started.elapsed() < Duration::from_secs(20), "containerd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        daemon
    }

    fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn mirrored_names_are_pulled_from_the_appliance_by_podman_and_containerd() {
    let Some(app) = common::serving(&["--no-verify"]) else {
        return;
    };
    // The mirror's copy of an upstream image, pushed by skopeo under the upstream's name as a path.
    let name = format!("registry-up-e2e-{}", std::process::id());
    let upstream = format!("docker.io/library/{name}:1");
    let [_, nginx_tar] = common::image_archives();
    let digest = app.push(nginx_tar, &upstream, None);

    // Bad input: nothing to say where, or a mirror that is not a registry name.
    Run::bin()
        .args(["clients"])
        .config_dir(app.config_dir())
        .code(2)
        .stderr_has("--out")
        .run();
    Run::bin()
        .args(["clients", "--out", "/tmp/never", "--mirror", "https://docker.io"])
        .config_dir(app.config_dir())
        .code(2)
        .stderr_has("is not a registry name")
        .run();
    assert!(!Path::new("/tmp/never").exists());

    // --out: the tree for configuration management, the mirrored registry found in the catalog; a
    // second run writes nothing.
    let out = app.tmp.path().join("clients");
    Run::bin()
        .args(["clients", "--out"])
        .arg(&out)
        .config_dir(app.config_dir())
        .stdout_has("(mirrors of docker.io)")
        .run();
    let registry = app.registry();
    for file in [
        format!("etc/containers/certs.d/{registry}/ca.crt"),
        format!("etc/docker/certs.d/{registry}/ca.crt"),
        "etc/containerd/certs.d/docker.io/hosts.toml".to_string(),
        "etc/containerd/certs.d/docker.io/registry-up-ca.crt".to_string(),
        "etc/rancher/k3s/registries.yaml".to_string(),
        "etc/rancher/rke2/registries.yaml".to_string(),
    ] {
        assert!(out.join(&file).is_file(), "{file} was not written");
    }
    Run::bin()
        .args(["clients", "--out"])
        .arg(&out)
        .config_dir(app.config_dir())
        .stdout_has("0 files written")
        .run();

    // containerd, with the generated certs.d only (without it, the name leads nowhere from here).
    let daemon = Containerd::start(app.tmp.path());
    let hosts_dir = out.join("etc/containerd/certs.d");
    let unaided = daemon.ctr(&["images", "pull", "--snapshotter", "native", &upstream]);
    assert!(
        !unaided.status.success(),
        "docker.io is unreachable here: {}",
        shown(&unaided)
    );
    let pulled = daemon.ctr(&[
        "images",
        "pull",
        "--snapshotter",
        "native",
        "--hosts-dir",
        &hosts_dir.display().to_string(),
        &upstream,
    ]);
    assert_exit(&pulled, 0, "ctr images pull with the generated hosts.toml");
    let listed = daemon.ctr(&["images", "ls"]);
    assert!(
        text(&listed.stdout)
            .lines()
            .any(|l| l.starts_with(&upstream) && l.contains(&digest)),
        "containerd holds {upstream} at {digest}:\n{}",
        shown(&listed)
    );
    drop(daemon);

    // --apply on this host: then a plain `podman pull docker.io/...` is served by the appliance (before,
    // it fails: no internet).
    let unaided = podman(&["pull", "-q", &upstream]);
    assert!(
        !unaided.status.success(),
        "docker.io is unreachable here: {}",
        shown(&unaided)
    );
    let _applied = Applied::before(&registry);
    let applied = Run::bin()
        .args(["clients", "--apply"])
        .config_dir(app.config_dir())
        .stdout_has("(mirrors of docker.io)")
        .run();
    let conf = format!(
        "/etc/containers/registries.conf.d/50-registry-up-{}.conf",
        registry.replace(':', "-")
    );
    assert!(Path::new(&conf).is_file(), "{}", shown(&applied));
    let pull = podman(&["pull", "-q", &upstream]);
    assert_exit(&pull, 0, "plain podman pull of a docker.io name");
    let inspect = podman(&["image", "inspect", "--format", "{{.Digest}}", &upstream]);
    assert_eq!(text(&inspect.stdout).trim(), digest);
    podman(&["rmi", &upstream]);
    // Again: idempotent, like up.
    Run::bin()
        .args(["clients", "--apply"])
        .config_dir(app.config_dir())
        .stdout_has("0 files written")
        .run();

    // A configuration file someone else wrote is left alone, and so is the folder's CA file; the run
    // says so and exits 1 (that client is not set up).
    let hosts = Path::new("/etc/containerd/certs.d/docker.io/hosts.toml");
    let theirs = "server = \"https://registry-1.docker.io\"\n";
    std::fs::write(hosts, theirs).unwrap();
    std::fs::remove_file("/etc/containerd/certs.d/docker.io/registry-up-ca.crt").unwrap();
    Run::bin()
        .args(["clients", "--apply"])
        .config_dir(app.config_dir())
        .code(1)
        .stdout_has("left alone /etc/containerd/certs.d/docker.io/hosts.toml (containerd)")
        .stdout_has("1 files left alone")
        .run();
    assert_eq!(std::fs::read_to_string(hosts).unwrap(), theirs);
    assert!(!Path::new("/etc/containerd/certs.d/docker.io/registry-up-ca.crt").exists());
    std::fs::remove_file(hosts).unwrap();

    // A folder on the way that is a link (out of /etc) is not written through: left alone, and said.
    let podman_dir = PathBuf::from(format!("/etc/containers/certs.d/{registry}"));
    std::fs::remove_dir_all(&podman_dir).unwrap();
    let outside = app.tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, &podman_dir).unwrap();
    let linked = Run::bin()
        .args(["clients", "--apply"])
        .config_dir(app.config_dir())
        .code(1)
        .stdout_has(format!("left alone {}/ca.crt", podman_dir.display()))
        .output();
    let through = std::fs::read_dir(&outside).unwrap().count();
    std::fs::remove_file(&podman_dir).unwrap();
    assert_eq!(through, 0, "written through the link: {}", shown(&linked));

    // down --purge takes back what clients --apply wrote for this appliance, and only that: a
    // registry-up-ca.crt an admin changed since (other bytes than the appliance's CA) stays.
    Run::bin()
        .args(["clients", "--apply"])
        .config_dir(app.config_dir())
        .run();
    let own_ca = PathBuf::from(format!("/etc/containerd/certs.d/{registry}/ca.crt"));
    assert!(own_ca.is_file());
    let admin_ca = Path::new("/etc/containerd/certs.d/docker.io/registry-up-ca.crt");
    std::fs::write(admin_ca, "an admin's CA\n").unwrap();
    Run::bin()
        .args(["down", "--purge", "--yes"])
        .config_dir(app.config_dir())
        .stdout_has(format!("Removed {conf}"))
        .run();
    assert!(!Path::new(&conf).exists() && !hosts.exists());
    assert!(!own_ca.exists(), "down --purge left {}", own_ca.display());
    let kept = std::fs::read_to_string(admin_ca);
    let _ = std::fs::remove_file(admin_ca);
    assert_eq!(kept.unwrap(), "an admin's CA\n", "an admin's file was deleted");
}
