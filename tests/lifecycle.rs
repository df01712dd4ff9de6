//! The days after the first: authentication, status, upgrades, down and purge, and the faults users
//! actually hit (a port taken, a killed run, a stopped container, a full disk, a strict umask, many
//! clients at once), each ending in a clear message and a state a re-run fixes.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{mode, podman, serving, skopeo, skopeo_copy, text, verify_json, Appliance, Run};
use serde_json::Value;

/// `registry-up ARGS --config-dir <the appliance's>`: a command on the installed appliance.
fn on(app: &Appliance, args: &[&str]) -> Run {
    Run::bin().args(args).config_dir(app.config_dir())
}

fn status_json(app: &Appliance) -> (i32, Value) {
    let out = on(app, &["status", "--json"]).output();
    let value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("status --json ({e}): {}", text(&out.stdout)));
    (out.status.code().unwrap(), value)
}

#[test]
fn auth_requires_the_password_which_reruns_never_change() {
    let Some(app) = Appliance::e2e() else { return };
    let out = app.up(&["--auth"]);
    let stdout = text(&out.stdout);
    let password = std::fs::read_to_string(app.config_dir().join("auth/password"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(password.len(), 24);
    assert!(
        stdout.contains(&format!("User admin has the password {password}")),
        "printed once: {stdout}"
    );
    assert!(stdout.contains("ok   verify push/pull"), "verify logs in: {stdout}");
    let mode = |p: &str| mode(&app.config_dir().join(p));
    assert_eq!(
        (mode("auth/password"), mode("auth"), mode("registry/htpasswd")),
        (0o600, 0o700, 0o600)
    );

    // Anonymous and wrong-password requests are refused, by curl and by skopeo.
    assert_eq!(app.curl_code(None), "401");
    assert_eq!(app.curl_code(Some("admin:wrong")), "401");
    assert_eq!(app.curl_code(Some(&format!("admin:{password}"))), "200");
    let creds = format!("admin:{password}");
    let [_, nginx] = common::image_archives();
    app.assert_anonymous_push_refused(nginx, "auth/nginx:1");
    let cert_dir = app.config_dir().display().to_string();
    let wrong = skopeo(&[
        "inspect",
        "--cert-dir",
        &cert_dir,
        "--creds",
        "admin:wrong",
        &app.reference("auth/nginx:1"),
    ]);
    assert!(!wrong.status.success());
    let digest = app.push(nginx, "auth/nginx:1", Some(&creds));
    assert_eq!(app.digest("auth/nginx:1", Some(&creds)), digest);

    // verify reads the credentials from the appliance.
    on(&app, &["verify"]).run();

    // A re-run without --auth keeps auth on, the same password, the same htpasswd file, and prints no password.
    let htpasswd = app.config_dir().join("registry/htpasswd");
    let before = std::fs::metadata(&htpasswd).unwrap().modified().unwrap();
    let again = on(&app, &[]).run();
    assert!(
        !text(&again.stdout).contains(&password),
        "the password is shown only once"
    );
    assert_eq!(std::fs::metadata(&htpasswd).unwrap().modified().unwrap(), before);
    assert_eq!(app.curl_code(Some(&creds)), "200");

    // --auth-password-stdin sets a new one; the old one stops working.
    on(&app, &["--auth-password-stdin"])
        .stdin("correct-horse-battery\n")
        .run();
    assert_eq!(app.curl_code(Some(&creds)), "401");
    assert_eq!(app.curl_code(Some("admin:correct-horse-battery")), "200");
    assert_eq!(
        app.digest("auth/nginx:1", Some("admin:correct-horse-battery")),
        digest,
        "data kept"
    );

    // --no-auth turns it off again.
    on(&app, &["--no-auth"]).run();
    assert_eq!(app.curl_code(None), "200");
}

#[test]
fn status_down_up_and_purge() {
    let Some(app) = Appliance::e2e() else { return };
    let (code, status) = status_json(&app);
    assert_eq!(code, 4, "not installed yet: {status}");
    assert_eq!(status["installed"], false);

    app.up(&["--san", "127.0.0.1"]);
    let [_, nginx] = common::image_archives();
    let digest = app.push(nginx, "keep/nginx:1", None);

    let (code, status) = status_json(&app);
    assert_eq!(code, 0, "{status:#}");
    assert_eq!(status["healthy"], true);
    assert_eq!(status["settings"]["port"], app.port);
    assert_eq!(status["settings"]["sans"][0], "127.0.0.1");
    let containers = status["pod"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2);
    for c in containers {
        assert_eq!(c["state"], "running");
        assert!(c["image_id"].as_str().unwrap().len() >= 12);
        assert!(c["uptime_seconds"].as_i64().unwrap() >= 0);
    }
    assert!(status["certificate"]["days_left"].as_i64().unwrap() > 800);
    assert!(
        status["data"]["size_bytes"].as_u64().unwrap() > 1_000_000,
        "the pushed image is counted"
    );
    assert!(status["data"]["free_bytes"].as_u64().unwrap() > 0);
    assert_eq!(status["service"]["kind"], "direct");
    let out = on(&app, &["status"]).output();
    assert!(text(&out.stdout).starts_with("healthy"), "{}", text(&out.stdout));

    // A stopped registry container: status says degraded, up brings it back, data intact.
    assert!(podman(&["stop", "-t", "0", &app.container("registry")])
        .status
        .success());
    let (code, status) = status_json(&app);
    assert_eq!(code, 1, "{status:#}");
    let problems = status["problems"].to_string();
    assert!(
        problems.contains(&format!("{} is exited", app.container("registry"))),
        "{problems}"
    );
    on(&app, &[]).stdout_has("replaced with podman play kube").run();
    assert_eq!(status_json(&app).0, 0);
    assert_eq!(app.digest("keep/nginx:1", None), digest);

    // down: pod gone, everything else kept; up (no flags: settings read back) brings the images back.
    on(&app, &["down"]).run();
    assert!(!app.pod_exists());
    assert!(app.config_dir().join("ca.crt").exists() && app.data_dir().join("docker").exists());
    assert_eq!(status_json(&app).0, 1, "installed but stopped is degraded");
    on(&app, &[]).stdout_has("CA kept, server certificate kept").run();
    assert_eq!(app.digest("keep/nginx:1", None), digest);
    let (_, status) = status_json(&app);
    assert_eq!(
        status["settings"]["sans"][0], "127.0.0.1",
        "settings read back, not reset"
    );

    // --purge without a terminal and without --yes refuses and deletes nothing.
    on(&app, &["down", "--purge"]).code(2).stderr_has("--yes").run();
    assert!(app.config_dir().join("ca.crt").exists());
    on(&app, &["down", "--purge", "--yes"]).run();
    assert!(!app.pod_exists());
    assert!(
        !app.config_dir().exists(),
        "config dir left: {:?}",
        std::fs::read_dir(app.config_dir()).map(|d| d.count())
    );
    assert!(!app.data_dir().exists(), "data dir left");
    assert_eq!(status_json(&app).0, 4, "purged is not installed");
    // Idempotent.
    on(&app, &["down"]).run();
}

#[test]
fn upgrade_to_new_images_keeps_data_settings_and_secrets() {
    if !common::e2e() {
        return;
    }
    // Declared first, dropped last: the v2 names go once the pod using them is gone.
    let _v2_names = common::ImageNames(vec![
        "localhost/registry-up-test/registry:v2".into(),
        "localhost/registry-up-test/nginx:v2".into(),
    ]);
    let app = Appliance::new();
    app.up(&["--san", "10.77.0.1", "--auth"]);
    let creds = format!(
        "admin:{}",
        std::fs::read_to_string(app.config_dir().join("auth/password"))
            .unwrap()
            .trim()
    );
    let [registry_tar, nginx_tar] = common::image_archives();
    let pushed = [
        ("up/nginx:1", app.push(nginx_tar, "up/nginx:1", Some(&creds))),
        ("up/registry:1", app.push(registry_tar, "up/registry:1", Some(&creds))),
    ];
    let ca_before = std::fs::read(app.config_dir().join("ca.crt")).unwrap();
    let cert_before = std::fs::read(app.config_dir().join("tls/server.crt")).unwrap();
    let image_id = |c: &str| app.inspect(&app.container(c), "{{.Image}}");
    let ids_before = (image_id("registry"), image_id("nginx"));

    let [registry_v2, nginx_v2] = common::image_archives_v2();

    on(
        &app,
        &[
            "--registry-image",
            "localhost/registry-up-test/registry:v2",
            "--nginx-image",
            "localhost/registry-up-test/nginx:v2",
        ],
    )
    .arg("--image-archive")
    .arg(registry_v2)
    .arg("--image-archive")
    .arg(nginx_v2)
    .run();
    let ids_after = (image_id("registry"), image_id("nginx"));
    assert_ne!(ids_after.0, ids_before.0, "the registry runs the new image");
    assert_ne!(ids_after.1, ids_before.1, "nginx runs the new image");
    assert_eq!(
        std::fs::read(app.config_dir().join("ca.crt")).unwrap(),
        ca_before,
        "CA kept"
    );
    assert_eq!(
        std::fs::read(app.config_dir().join("tls/server.crt")).unwrap(),
        cert_before,
        "certificate kept"
    );
    let (_, status) = status_json(&app);
    assert_eq!(status["settings"]["sans"][0], "10.77.0.1");
    assert_eq!(status["settings"]["port"], app.port);
    assert_eq!(status["settings"]["auth_user"], "admin");
    assert_eq!(
        status["settings"]["registry_image"],
        "localhost/registry-up-test/registry:v2"
    );

    // Nothing lost: verify --deep finds every earlier image, with its digest.
    let (code, report) = verify_json(&app, &["--deep"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["deep"]["problems"].as_array().unwrap().len(), 0);
    assert_eq!(report["deep"]["tags"], 2);
    for (image, digest) in &pushed {
        assert_eq!(&app.digest(image, Some(&creds)), digest, "{image} unchanged");
    }
}

#[test]
fn killed_runs_converge_and_never_leave_a_half_written_file() {
    let Some(app) = serving(&["--no-verify"]) else { return }; // loads the images once
    let args: Vec<String> = app.args().into_iter().take_while(|a| a != "--image-archive").collect();
    // Kill runs at spread-out moments of a first run (fresh config each time) and of re-runs.
    for (i, delay_ms) in [0u64, 5, 15, 30, 50, 80, 120, 200, 300, 450].iter().enumerate() {
        if i % 2 == 0 {
            common::remove_pod(&app.pod);
            let _ = std::fs::remove_dir_all(app.config_dir());
        }
        let mut child = Run::bin()
            .args(&args)
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(*delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Its podman child (play kube) runs on to the end; removing the pod under it meanwhile can deadlock
        // Podman 4.3 (a `volume rm` and the `play kube` waited on each other for ten minutes once).
        common::wait_until_no_process_names(&app.config_dir());
        assert_complete_files(&app.config_dir());
    }
    // The next run converges.
    Run::bin().args(&args).stdout_has("ok   verify push/pull").run();
    let leftovers: Vec<_> = walk(&app.config_dir())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    common::mtimes(dir).into_iter().map(|(p, _)| p).collect()
}

/// Every file registry-up has put in place is whole: it parses, or ends as the template does.
fn assert_complete_files(dir: &Path) {
    if !dir.exists() {
        return;
    }
    for path in walk(dir) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".tmp") {
            continue; // a temp file is not in place; the next run removes it
        }
        let body = std::fs::read_to_string(&path).unwrap();
        let whole = match name.as_str() {
            n if n.ends_with(".crt") || n.ends_with(".key") => {
                body.trim_end().ends_with("-----") && body.starts_with("-----BEGIN")
            }
            "state.json" => serde_json::from_str::<Value>(&body).is_ok(),
            "config.yml" | "registry-pod.yaml" => {
                serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&body).is_ok() && body.ends_with('\n')
            }
            "registry.conf" => body.trim_end().ends_with('}'),
            _ => !body.is_empty(),
        };
        assert!(whole, "{} is half-written:\n{body}", path.display());
    }
}

#[test]
fn a_full_disk_fails_pushes_is_reported_as_storage_and_loses_nothing() {
    let Some(app) = Appliance::e2e() else { return };
    let disk = common::SmallDisk::mount(app, 24);
    let app = &disk.app;
    app.up(&[]);
    let [_, nginx] = common::image_archives();
    let digest = app.push(nginx, "small/nginx:1", None);

    let (code, report) = verify_json(app, &["--size", "40MiB", "--timeout", "60"]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(common::check(&report, "round-trip")["status"], "fail", "{report:#}");
    common::assert_check(&report, "storage", "fail", &["is full"]);

    // What was stored before is still whole: it pulls back with its digest.
    assert_eq!(app.digest("small/nginx:1", None), digest);
    let dest = format!("dir:{}", app.tmp.path().join("pulled").display());
    skopeo_copy(&app.reference("small/nginx:1"), &dest, &app.config_dir(), None);
}

#[test]
fn a_strict_umask_still_gives_a_working_appliance() {
    let Some(app) = Appliance::e2e() else { return };
    Run::up(&app)
        .under(["sh", "-c", "umask 077; exec \"$0\" \"$@\""])
        .stdout_has("ok   verify push/pull")
        .run();
    let mode = |p: &str| mode(&app.config_dir().join(p));
    assert_eq!(mode("ca.crt"), 0o644, "clients can read the CA whatever the umask");
    assert_eq!(mode("nginx/registry.conf"), 0o644);
    assert_eq!(mode("tls/server.key"), 0o600);
}

#[test]
fn keys_are_private_and_owned_by_the_user_running_it() {
    let Some(app) = serving(&["--no-verify", "--auth"]) else {
        return;
    };
    let uid = unsafe { libc::geteuid() };
    for (path, mode) in [
        ("ca/ca.key", 0o600),
        ("tls/server.key", 0o600),
        ("registry/config.yml", 0o600),
        ("registry/htpasswd", 0o600),
        ("auth/password", 0o600),
        ("ca", 0o700),
        ("tls", 0o700),
        ("auth", 0o700),
        ("registry", 0o700),
        ("", 0o700),
    ] {
        let meta = std::fs::metadata(app.config_dir().join(path)).unwrap();
        assert_eq!(common::mode(&app.config_dir().join(path)), mode, "{path}");
        assert_eq!(meta.uid(), uid, "{path} owner");
    }
}

#[test]
fn tls_1_0_and_1_1_are_refused_and_1_2_and_1_3_accepted() {
    let Some(app) = serving(&["--no-verify"]) else { return };
    let s_client = |version: &str| {
        Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{}", app.port),
                "-servername",
                &app.domain,
                version,
            ])
            // OpenSSL 3 refuses old protocols on its own side by default: lower the client's bar so that
            // only the server can say no.
            .args(["-cipher", "DEFAULT@SECLEVEL=0"])
            .stdin(Stdio::null())
            .output()
            .expect("openssl runs")
    };
    for old in ["-tls1", "-tls1_1"] {
        let out = s_client(old);
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(!out.status.success(), "{old} was accepted:\n{said}");
        assert!(
            said.contains("alert protocol version"),
            "{old} must be refused by the server:\n{said}"
        );
    }
    for new in ["-tls1_2", "-tls1_3"] {
        let out = s_client(new);
        assert!(out.status.success(), "{new}: {}", text(&out.stderr));
    }
}

#[test]
fn sixteen_clients_pushing_at_once_all_succeed() {
    let Some(app) = serving(&["--no-verify"]) else { return };
    let work = app.tmp.path().join("images");
    let layouts: Vec<PathBuf> = (0..16)
        .map(|i| make_oci_layout(&work.join(format!("img{i}")), i))
        .collect();
    // All at once: one thread a client; a failed push fails the test when its thread is joined.
    let pushed: Vec<String> = std::thread::scope(|s| {
        let clients: Vec<_> = layouts
            .iter()
            .enumerate()
            .map(|(i, layout)| {
                let (src, dest) = (
                    format!("oci:{}", layout.display()),
                    app.reference(&format!("many/img{i}:1")),
                );
                let cert_dir = app.config_dir();
                s.spawn(move || skopeo_copy(&src, &dest, &cert_dir, None))
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for (i, pushed) in pushed.iter().enumerate() {
        assert_eq!(&app.digest(&format!("many/img{i}:1"), None), pushed, "image {i}");
    }
}

/// An OCI image layout with one layer holding 2 MiB of bytes unique to `seed`.
fn make_oci_layout(dir: &Path, seed: u64) -> PathBuf {
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let payload: Vec<u8> = (0..2 * 1024 * 1024 / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    std::fs::write(files.join("payload.bin"), payload).unwrap();
    let layer_path = dir.join("layer.tar");
    assert!(Command::new("tar")
        .arg("-cf")
        .arg(&layer_path)
        .arg("-C")
        .arg(&files)
        .arg("payload.bin")
        .status()
        .unwrap()
        .success());
    let layer = std::fs::read(&layer_path).unwrap();
    common::oci_layout(&dir.join("layout"), &layer)
}
