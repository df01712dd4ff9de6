//! End to end on real Podman, as root: the real binary brings up the appliance, and independent clients
//! (skopeo, plain TCP) check what a user would check.

mod common;

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use common::{mode, mtimes, podman, serving, skopeo_copy, text, Appliance, Run};

/// Held by the test that runs a registry binary on the host's network (it listens on port 5000) and by
/// the tests that prove nothing listens there: they ran at once and saw each other.
static PORT_5000: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn port_5000() -> std::sync::MutexGuard<'static, ()> {
    PORT_5000.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn connects(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

#[test]
fn up_serves_pushes_and_pulls_through_tls_to_clients_trusting_its_ca() {
    let Some(app) = Appliance::e2e() else { return };
    Run::up(&app)
        .stdout_has("ok   verify push/pull")
        // No systemd on this host: the no-systemd warning is shown.
        .stderr_has("will not come back after a reboot")
        .run();

    // skopeo, an independent client, trusting only our CA: push through the proxy, pull back, same digest.
    let pushed = app.push(&common::image_archives()[1], "e2e/nginx:1", None);
    let work = tempfile::tempdir().unwrap();
    let pulled_dir = format!("dir:{}", work.path().join("pulled-image").display());
    let pulled = skopeo_copy(&app.reference("e2e/nginx:1"), &pulled_dir, &app.config_dir(), None);
    assert!(pushed.starts_with("sha256:"), "{pushed}");
    assert_eq!(
        pushed, pulled,
        "the image pulled back has the digest it was pushed with"
    );
    assert_eq!(app.digest("e2e/nginx:1", None), pushed);

    // Without our CA the same client refuses the server: the TLS is real.
    let out = common::skopeo(&["inspect", "--cert-dir", "/nonexistent", &app.reference("e2e/nginx:1")]);
    assert!(!out.status.success(), "an untrusted client must fail");
    assert!(text(&out.stderr).contains("certificate"), "{}", text(&out.stderr));
}

#[test]
fn nginx_listens_on_the_host_s_addresses_and_the_registry_on_no_tcp_port_at_all() {
    let _port = port_5000();
    let Some(app) = serving(&["--no-verify"]) else { return };
    let pod = podman(&["pod", "inspect", "--format", "{{.InfraConfig.HostNetwork}}", &app.pod]);
    assert_eq!(text(&pod.stdout).trim(), "true", "{}", text(&pod.stderr));
    // nginx binds the host's addresses itself, both families.
    let nginx = app.inspect(&app.container("nginx"), "{{.State.Pid}}");
    let expected: std::collections::BTreeSet<String> = [format!("0.0.0.0:{}", app.port), format!("[::]:{}", app.port)]
        .into_iter()
        .collect();
    assert_eq!(common::tcp_listeners(&nginx), expected);
    for addr in [format!("127.0.0.1:{}", app.port), format!("[::1]:{}", app.port)] {
        assert!(connects(addr.parse().unwrap()), "nginx answers on {addr}");
    }
    // The registry listens on its socket and on no TCP port (no debug or metrics listener either).
    let registry = app.inspect(&app.container("registry"), "{{.State.Pid}}");
    assert_eq!(
        common::unix_listeners(&registry),
        vec!["/run/registry-up/registry.sock"]
    );
    assert!(
        common::tcp_listeners(&registry).is_empty(),
        "the registry listens on TCP: {:?}",
        common::tcp_listeners(&registry)
    );
    for target in [
        "127.0.0.1:5000".to_string(),
        "[::1]:5000".into(),
        format!("{}:5000", app.domain),
    ] {
        for addr in target.to_socket_addrs().unwrap() {
            assert!(
                !connects(addr),
                "the registry port is reachable from the host at {addr}"
            );
        }
    }
    // Its socket is in a volume of the pod's own, which goes with the pod.
    let volume = format!("{}-socket", app.pod);
    assert!(podman(&["volume", "exists", &volume]).status.success());
    Run::bin().args(["down"]).config_dir(app.config_dir()).run();
    assert!(
        !podman(&["volume", "exists", &volume]).status.success(),
        "down leaves {volume} behind"
    );
}

#[test]
fn keys_are_written_0600_in_0700_folders() {
    let Some(app) = serving(&["--no-verify"]) else { return };
    let cfg = app.config_dir();
    assert_eq!(mode(&cfg.join("ca/ca.key")), 0o600);
    assert_eq!(mode(&cfg.join("tls/server.key")), 0o600);
    assert_eq!(mode(&cfg.join("ca")), 0o700);
    assert_eq!(mode(&cfg.join("tls")), 0o700);
}

#[test]
fn a_rerun_with_nothing_changed_writes_nothing_restarts_nothing_and_keeps_the_images() {
    let Some(app) = serving(&[]) else { return };
    let pushed = app.push(&common::image_archives()[1], "e2e/nginx:1", None);

    // No file written (mtimes unchanged), the pod not restarted (start times unchanged).
    let before_files = mtimes(&app.config_dir());
    let before_start = app.started_at();
    Run::up(&app).stdout_has("nothing changed").run();
    assert_eq!(
        mtimes(&app.config_dir()),
        before_files,
        "a re-run with nothing changed writes no file"
    );
    assert_eq!(app.started_at(), before_start, "a re-run does not restart the pod");

    // The image pushed before is still there after the re-run.
    assert_eq!(app.digest("e2e/nginx:1", None), pushed);
}

#[test]
fn a_dry_run_with_a_new_san_lists_the_certificate_and_what_depends_on_it_and_changes_nothing() {
    let Some(app) = serving(&["--no-verify"]) else { return };
    let before_files = mtimes(&app.config_dir());
    let before_start = app.started_at();
    let extra = format!("mirror.{}", app.domain);
    let dry = Run::up(&app).args(["--san", &extra, "--dry-run"]).run();
    let plan = text(&dry.stdout);
    let cfg = app.config_dir();
    let changed: Vec<String> = plan
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("update")
                .map(|rest| rest.trim().split(' ').next().unwrap().to_string())
        })
        .collect();
    let expected: Vec<String> = ["tls/server.crt", "tls/server.key", "nginx/registry.conf", "state.json"]
        .iter()
        .map(|f| cfg.join(f).display().to_string())
        .collect();
    assert_eq!(changed, expected, "plan:\n{plan}");
    assert!(!plan.contains("create"), "{plan}");
    // Only files nginx reads change: it would reload them, the pod keeps running.
    assert!(plan.contains("nginx would reload"), "{plan}");
    assert!(
        plan.contains(&format!("re-issued because the name list changed (adds {extra})")),
        "{plan}"
    );
    assert_eq!(mtimes(&app.config_dir()), before_files, "--dry-run writes nothing");
    assert_eq!(app.started_at(), before_start, "--dry-run does not touch the pod");
}

#[test]
fn invalid_input_fails_with_exit_2_and_leaves_nothing_behind() {
    let Some(app) = Appliance::e2e() else { return };
    let taken = std::net::TcpListener::bind(("0.0.0.0", 0)).unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    let missing_archive = app.tmp.path().join("missing.tar").display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--domain=-bad-.example"], "hyphen"),
        (vec!["--domain", "a..example"], "empty label"),
        (vec!["--san", "under_score.example"], "--san"),
        (vec!["--registry-image", "Not A Ref!"], "--registry-image"),
        (
            vec![
                "--nginx-image",
                "localhost/registry-up-test/absent:1",
                "--pull",
                "never",
            ],
            "localhost/registry-up-test/absent:1",
        ),
        (vec!["--image-archive", &missing_archive], "does not exist"),
        (vec!["--data-dir", "/proc/registry-up-e2e"], "Cannot write to /proc"),
        (vec!["--port", &taken_port], "already in use"),
        (
            vec!["--listen", "all", "--listen", "127.0.0.1"],
            "cannot go with other --listen addresses",
        ),
        // A name that would set the terminal's title: shown escaped, never sent to the terminal.
        (
            vec!["--san", "a\u{1b}]0;pwned\u{7}b.test"],
            "a\\u{1b}]0;pwned\\u{7}b.test",
        ),
    ];
    let owner = format!("(pid {})", std::process::id());
    for (extra, expect) in cases {
        let out = Run::up(&app).args(&extra).code(2).stderr_has(expect).run();
        let stderr = text(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "one plain sentence:\n{stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(
            !stderr.contains(['\u{1b}', '\u{7}']),
            "a control character reached the terminal: {stderr:?}"
        );
        assert!(
            !app.config_dir().exists(),
            "{extra:?} wrote {}",
            app.config_dir().display()
        );
        assert!(!app.data_dir().exists(), "{extra:?} wrote {}", app.data_dir().display());
        assert!(!app.pod_exists(), "{extra:?} created the pod");
        if extra[0] == "--port" {
            assert!(
                stderr.contains(&owner),
                "the process holding the port is named: {stderr}"
            );
        }
    }
    // clap refuses out-of-range ports itself, with the same exit code.
    for port in ["0", "65536", "https"] {
        Run::up(&app).args(["--port", port]).code(2).run();
        assert!(!app.config_dir().exists());
    }
    drop(taken);
}

#[test]
fn a_proxy_that_never_answers_times_out_showing_both_containers_logs() {
    let _port = port_5000();
    let Some(app) = Appliance::e2e() else { return };
    // The registry image in nginx's place: the pod starts, but nothing serves TLS on the port.
    let out = Run::up(&app)
        .args(["--nginx-image", common::REGISTRY_IMAGE, "--wait-timeout", "3"])
        .code(3)
        .stderr_has(format!("did not answer at https://{}/v2/ within 3 s", app.registry()))
        .stderr_has(format!("--- last lines of {} ---", app.container("registry")))
        .stderr_has(format!("--- last lines of {} ---", app.container("nginx")))
        .run();
    // Each section holds the container's own log lines (both run the registry binary here).
    let stderr = text(&out.stderr);
    for section in stderr.split("--- last lines of ").skip(1) {
        assert!(
            section.lines().nth(1).is_some_and(|l| l.contains("msg=")),
            "a log section is empty:\n{stderr}"
        );
    }
}

#[test]
fn from_another_network_namespace_nginx_answers_over_ipv4_and_ipv6_and_the_registry_does_not() {
    let _port = port_5000();
    let Some(app) = serving(&["--no-verify"]) else { return };
    let other = common::NetNs::new();
    for host in [common::NetNs::HOST_V4, common::NetNs::HOST_V6] {
        assert!(
            other.connects(host, app.port),
            "nginx is not reachable at {host} port {} from {}",
            app.port,
            other.name
        );
        assert!(
            !other.connects(host, 5000),
            "the registry answers on {host}:5000 from another namespace"
        );
    }
}

#[test]
fn a_new_data_folder_that_would_hide_the_images_is_refused_unless_it_holds_them_or_empty_is_meant() {
    let Some(app) = common::serving(&["--no-verify"]) else {
        return;
    };
    let [registry_tar, nginx_tar] = common::image_archives();
    let digest = app.push(registry_tar, "demo/nginx:1", None);
    app.push(nginx_tar, "demo/other:1", None);
    let state = app.config_dir().join("state.json");
    let state_before = std::fs::read(&state).unwrap();
    let before = app.started_at();
    // A typo in a path, or a data mount that did not come up.
    let elsewhere = app.tmp.path().join("elsewhere/data");
    let with_data_dir = |dir: &Path| {
        let mut args = app.args();
        let at = args.iter().position(|a| a == "--data-dir").unwrap();
        args[at + 1] = dir.display().to_string();
        args
    };
    Run::bin()
        .args(with_data_dir(&elsewhere))
        .code(2)
        .stderr_has(format!("--data-dir {} would hide the images", elsewhere.display()))
        .stderr_has(format!("{} holds 2 tag(s) in 2 repositories", app.data_dir().display()))
        .stderr_has("--empty-storage")
        .stderr_has("Nothing was changed")
        .run();
    assert_eq!(std::fs::read(&state).unwrap(), state_before);
    assert_eq!(app.started_at(), before, "the pod was not touched");
    assert_eq!(app.digest("demo/nginx:1", None), digest, "still served");

    // The images copied over by hand: the new folder holds every tag, so the switch goes ahead.
    let moved = app.tmp.path().join("moved");
    std::fs::create_dir_all(&moved).unwrap();
    let copied = common::command("cp")
        .args(["-a"])
        .arg(app.data_dir().join("docker"))
        .arg(&moved)
        .output()
        .unwrap();
    assert!(copied.status.success());
    Run::bin().args(with_data_dir(&moved)).run();
    assert_eq!(app.digest("demo/nginx:1", None), digest);

    // --move-data: renamed on the same filesystem, proven tag by tag.
    let renamed = app.tmp.path().join("renamed");
    Run::bin()
        .args(with_data_dir(&renamed))
        .args(["--move-data", "--empty-storage"])
        .code(2)
        .stderr_has("opposite things")
        .run();
    Run::bin()
        .args(with_data_dir(&renamed))
        .arg("--move-data")
        .stdout_has("renamed (same filesystem)")
        .stdout_has("every one of the 2 tags served before is served with the same digest")
        .run();
    assert_eq!(app.digest("demo/nginx:1", None), digest);
    assert!(!moved.join("docker").exists(), "the images left the old folder");
    // To another filesystem (tmpfs): copied, and the old copy removed once every tag is proven.
    let shm = tempfile::Builder::new()
        .prefix("registry-up-e2e-")
        .tempdir_in("/dev/shm")
        .unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_ne!(
        std::fs::metadata(shm.path()).unwrap().dev(),
        std::fs::metadata(&renamed).unwrap().dev(),
        "/dev/shm is another filesystem here"
    );
    let copied_to = shm.path().join("data");
    Run::bin()
        .args(with_data_dir(&copied_to))
        .arg("--move-data")
        .stdout_has("copied (another filesystem")
        .stdout_has("every one of the 2 tags served before is served with the same digest")
        .run();
    assert_eq!(app.digest("demo/nginx:1", None), digest);
    assert!(!renamed.join("docker").exists(), "the old copy is removed once proven");
    assert!(!app.config_dir().join("upgrade-rollback").exists());
    // And back, so that the rest of the test (and the clean-up) uses the test's own folder.
    Run::bin().args(with_data_dir(&moved)).arg("--move-data").run();
    assert_eq!(app.digest("demo/nginx:1", None), digest);

    // Starting empty on purpose: said, and the old folder is left as it is.
    let empty = app.tmp.path().join("empty");
    Run::bin()
        .args(with_data_dir(&empty))
        .arg("--empty-storage")
        .stderr_has(format!(
            "the 2 tag(s) of {}; that folder is left as it is",
            moved.display()
        ))
        .run();
    let cert_dir = app.config_dir().display().to_string();
    let gone = common::skopeo(&["inspect", "--cert-dir", &cert_dir, &app.reference("demo/nginx:1")]);
    assert!(!gone.status.success(), "the new folder is empty");
    assert!(moved
        .join("docker/registry/v2/repositories/demo/nginx/_manifests/tags/1/current/link")
        .is_file());
}
