//! End to end on real Podman, as root: the real binary brings up the appliance, and independent clients
//! (skopeo, plain TCP) check what a user would check.

mod common;

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use common::{mtimes, podman, text, Appliance};

fn skopeo(app: &Appliance, args: &[&str]) -> String {
    let out = common::command("skopeo").args(args).output().expect("skopeo runs");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed for {}:\n{}",
        app.registry(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn connects(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

#[test]
fn up_serves_pushes_through_tls_and_a_rerun_changes_nothing() {
    let app = Appliance::new();
    let first = app.up(&[]);
    let stdout = text(&first.stdout);
    assert!(stdout.contains("ok   verify push/pull"), "{stdout}");
    assert!(
        text(&first.stderr).contains("will not come back after a reboot"),
        "the no-systemd warning is shown"
    );

    // skopeo, an independent client, trusting only our CA: push through the proxy, pull back, same digest.
    let cert_dir = app.config_dir().display().to_string();
    let work = tempfile::tempdir().unwrap();
    let pushed_digest = work.path().join("pushed");
    let pulled_digest = work.path().join("pulled");
    let image = format!("docker://{}/e2e/nginx:1", app.registry());
    let archive = format!("oci-archive:{}", common::image_archives()[1].display());
    skopeo(
        &app,
        &[
            "copy",
            "-q",
            "--dest-cert-dir",
            &cert_dir,
            "--digestfile",
            pushed_digest.to_str().unwrap(),
            &archive,
            &image,
        ],
    );
    let pulled_dir = format!("dir:{}", work.path().join("pulled-image").display());
    skopeo(
        &app,
        &[
            "copy",
            "-q",
            "--src-cert-dir",
            &cert_dir,
            "--digestfile",
            pulled_digest.to_str().unwrap(),
            &image,
            &pulled_dir,
        ],
    );
    let pushed = std::fs::read_to_string(&pushed_digest).unwrap();
    let pulled = std::fs::read_to_string(&pulled_digest).unwrap();
    assert!(pushed.starts_with("sha256:"), "{pushed}");
    assert_eq!(
        pushed, pulled,
        "the image pulled back has the digest it was pushed with"
    );
    let inspected = skopeo(
        &app,
        &["inspect", "--cert-dir", &cert_dir, "--format", "{{.Digest}}", &image],
    );
    assert_eq!(inspected.trim(), pushed.trim());

    // Without our CA the same client refuses the server: the TLS is real.
    let out = common::command("skopeo")
        .args(["inspect", "--cert-dir", "/nonexistent", &image])
        .output()
        .unwrap();
    assert!(!out.status.success(), "an untrusted client must fail");
    assert!(text(&out.stderr).contains("certificate"), "{}", text(&out.stderr));

    // The registry's plain-HTTP port is reachable from no address of the host, while nginx's is.
    let infra = app.inspect(&app.pod, "{{.InfraContainerID}}");
    let pod_ip = app.inspect(&infra, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}");
    assert!(!pod_ip.is_empty(), "the pod has an IP on the Podman network");
    let nginx_addr: SocketAddr = format!("{pod_ip}:{}", app.port).parse().unwrap();
    assert!(
        connects(nginx_addr),
        "nginx answers on the pod address {nginx_addr}: the probe works"
    );
    for target in [
        format!("{pod_ip}:5000"),
        "127.0.0.1:5000".to_string(),
        format!("{}:5000", app.domain),
    ] {
        for addr in target.to_socket_addrs().unwrap() {
            assert!(
                !connects(addr),
                "the registry port is reachable from the host at {addr}"
            );
        }
    }
    let published = podman(&["port", &infra]);
    assert_eq!(
        text(&published.stdout).trim(),
        format!("{}/tcp -> 0.0.0.0:{}", app.port, app.port),
        "only nginx's port is published"
    );

    // Keys are private, written 0600 in 0700 folders.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&app.config_dir().join("ca/ca.key")), 0o600);
    assert_eq!(mode(&app.config_dir().join("tls/server.key")), 0o600);
    assert_eq!(mode(&app.config_dir().join("ca")), 0o700);
    assert_eq!(mode(&app.config_dir().join("tls")), 0o700);

    // A re-run: no file written (mtimes unchanged), the pod not restarted (start times unchanged).
    let before_files = mtimes(&app.config_dir());
    let started = |c: &str| app.inspect(&app.container(c), "{{.State.StartedAt}}");
    let before_start = (started("registry"), started("nginx"));
    let again = app.up(&[]);
    assert!(
        text(&again.stdout).contains("nothing changed"),
        "{}",
        text(&again.stdout)
    );
    assert_eq!(
        mtimes(&app.config_dir()),
        before_files,
        "a re-run with nothing changed writes no file"
    );
    assert_eq!(
        (started("registry"), started("nginx")),
        before_start,
        "a re-run does not restart the pod"
    );

    // The image pushed before is still there after the re-run.
    let inspected = skopeo(
        &app,
        &["inspect", "--cert-dir", &cert_dir, "--format", "{{.Digest}}", &image],
    );
    assert_eq!(inspected.trim(), pushed.trim());

    // --dry-run with a new SAN lists exactly the server certificate and what depends on it, and changes nothing.
    let extra = format!("mirror.{}", app.domain);
    let dry = app.run(&["--san", &extra, "--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
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
    assert_eq!(
        (started("registry"), started("nginx")),
        before_start,
        "--dry-run does not touch the pod"
    );
}

#[test]
fn invalid_input_fails_with_exit_2_and_leaves_nothing_behind() {
    let app = Appliance::new();
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
    ];
    let owner = format!("(pid {})", std::process::id());
    for (extra, expect) in cases {
        let out = app.run(&extra);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?} should exit 2:\n{stderr}");
        assert!(stderr.contains(expect), "{extra:?}: expected {expect:?} in:\n{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one plain sentence:\n{stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
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
        let out = app.run(&["--port", port]);
        assert_eq!(out.status.code(), Some(2), "--port {port}");
        assert!(!app.config_dir().exists());
    }
    drop(taken);
}

#[test]
fn a_proxy_that_never_answers_times_out_showing_both_containers_logs() {
    let app = Appliance::new();
    // The registry image in nginx's place: the pod starts, but nothing serves TLS on the port.
    let out = app.run(&["--nginx-image", common::REGISTRY_IMAGE, "--wait-timeout", "3"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!("did not answer at https://{}/v2/ within 3 s", app.registry())),
        "{stderr}"
    );
    for c in ["registry", "nginx"] {
        assert!(
            stderr.contains(&format!("--- last lines of {} ---", app.container(c))),
            "{stderr}"
        );
    }
    // Each section holds the container's own log lines (both run the registry binary here).
    for section in stderr.split("--- last lines of ").skip(1) {
        assert!(
            section.lines().nth(1).is_some_and(|l| l.contains("msg=")),
            "a log section is empty:\n{stderr}"
        );
    }
}

#[test]
fn the_registry_port_is_unreachable_from_another_network_namespace() {
    let app = Appliance::new();
    app.up(&["--no-verify"]);
    let infra = app.inspect(&app.pod, "{{.InfraContainerID}}");
    let pod_ip = app.inspect(&infra, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}");
    let other = common::NetNs::new();
    // The probe reaches the pod: nginx's port answers from the other namespace, directly and as published.
    assert!(
        other.connects(&pod_ip, app.port),
        "nginx is reachable at {pod_ip}:{} from {}",
        app.port,
        other.name
    );
    assert!(
        other.connects("169.254.77.1", app.port),
        "the published port is reachable through the host"
    );
    // The registry's plain-HTTP port is not, on any address.
    for host in [pod_ip.as_str(), "169.254.77.1"] {
        assert!(
            !other.connects(host, 5000),
            "the registry answers on {host}:5000 from another namespace"
        );
    }
}
