//! Air-gapped bundles and the certificate lifecycle: bundle → up --bundle (and a damaged bundle refused),
//! bring-your-own certificates checked before use, renewal with an nginx reload under load, certs show,
//! and trust for this host's clients.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::certs::{self, now_valid};
use common::{podman, serving, text, Appliance, ImageNames, Run};
use serde_json::Value;

/// `registry-up ARGS --config-dir <the appliance's>`: a command on the installed appliance.
fn on(app: &Appliance, args: &[&str]) -> Run {
    Run::bin().args(args).config_dir(app.config_dir())
}

#[test]
fn a_bundle_brings_an_appliance_up_offline_and_a_damaged_one_is_refused() {
    // The "connected" side: a registry holding the images (the stand-ins, pushed by skopeo).
    let Some((source, registry_ref, nginx_ref, names)) = common::bundle_source() else {
        return;
    };

    let bundle = source.tmp.path().join("registry-up-bundle.tar");
    Run::bin()
        .args(["bundle", "--out"])
        .arg(&bundle)
        .args(["--registry-image", &registry_ref, "--nginx-image", &nginx_ref, "--ca"])
        .arg(source.config_dir().join("ca.crt"))
        .run();
    let listing = Command::new("tar").arg("-tf").arg(&bundle).output().unwrap();
    assert_eq!(
        text(&listing.stdout),
        "manifest.json\nSHA256SUMS\nregistry-up\nregistry.oci.tar\nnginx.oci.tar\n"
    );
    // The checksums are the standard tool's format.
    let unpacked = source.tmp.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    assert!(Command::new("tar")
        .arg("-xf")
        .arg(&bundle)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap()
        .success());
    let sums = Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&unpacked)
        .output()
        .unwrap();
    assert!(sums.status.success(), "{}", text(&sums.stdout));
    // It carries the very binary that made it, executable, saying its version.
    let carried = unpacked.join("registry-up");
    assert_eq!(
        common::sha256(&std::fs::read(&carried).unwrap()),
        common::sha256(&std::fs::read(common::BIN).unwrap())
    );
    assert_eq!(common::mode(&carried) & 0o777, 0o755);
    let version = Command::new(&carried).arg("--version").output().unwrap();
    let manifest: Value = serde_json::from_slice(&std::fs::read(unpacked.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["format"], 2);
    assert_eq!(
        format!("registry-up {}\n", manifest["tools"][0]["version"].as_str().unwrap()),
        text(&version.stdout)
    );

    // One flipped byte, or a cut-off copy: refused before anything is loaded or started.
    let target = Appliance::new();
    let size = std::fs::metadata(&bundle).unwrap().len();
    let mut bytes = std::fs::read(&bundle).unwrap();
    let flipped = source.tmp.path().join("flipped.tar");
    bytes[(size / 2) as usize] ^= 0x01;
    std::fs::write(&flipped, &bytes).unwrap();
    let truncated = source.tmp.path().join("truncated.tar");
    std::fs::write(&truncated, &std::fs::read(&bundle).unwrap()[..(size * 2 / 3) as usize]).unwrap();
    // A flipped byte in the carried binary (the member right after the sums) is caught too.
    let mut bytes = std::fs::read(&bundle).unwrap();
    let tool_at = find(&bytes, b"\x7fELF").expect("the binary is in the bundle");
    bytes[tool_at + 4096] ^= 0x01;
    let flipped_tool = source.tmp.path().join("flipped-tool.tar");
    std::fs::write(&flipped_tool, &bytes).unwrap();
    let up_from = |bundle: &std::path::Path| Run::bin().args(target.base_args()).arg("--bundle").arg(bundle);
    for (bad, expect) in [
        (&flipped, "does not match its checksum"),
        (&truncated, "truncated"),
        (&flipped_tool, "registry-up does not match its checksum"),
    ] {
        up_from(bad)
            .code(2)
            .stderr_has(format!("The bundle {} is damaged", bad.display()))
            .stderr_has(expect)
            .stderr_has("nothing was loaded")
            .run();
        for name in &names.0 {
            assert!(
                !podman(&["image", "exists", name]).status.success(),
                "{name} was loaded from a damaged bundle"
            );
        }
        assert!(
            !target.pod_exists() && !target.config_dir().exists(),
            "nothing may start or be written"
        );
    }

    // The good bundle, alone: images loaded from it, pod up, verified.
    up_from(&bundle)
        .stdout_has("every checksum matches")
        .stdout_has("ok   verify push/pull")
        .run();
    assert_eq!(
        target.inspect(&target.container("registry"), "{{.ImageName}}"),
        registry_ref
    );
    assert_eq!(target.inspect(&target.container("nginx"), "{{.ImageName}}"), nginx_ref);
    drop(target); // the pod goes before the image names
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn cert_files(app: &Appliance, name: &str, cert: &str, key: &str) -> (String, String) {
    let dir = app.tmp.path().join("byo").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let (c, k) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    (c.display().to_string(), k.display().to_string())
}

#[test]
fn own_certificates_are_checked_before_use_and_served_with_their_chain() {
    let Some(app) = Appliance::e2e() else { return };
    let root = certs::ca("Test Root CA", None);
    let intermediate = certs::ca("Test Intermediate CA", Some(&root));
    let root_file = app.tmp.path().join("root.crt");
    std::fs::write(&root_file, &root.pem).unwrap();
    let other_root = certs::ca("Unrelated Root CA", None);
    let other_file = app.tmp.path().join("other-root.crt");
    std::fs::write(&other_file, &other_root.pem).unwrap();

    let (good_cert, good_key) = certs::leaf(&[&app.domain], &intermediate, now_valid(), true);
    let chain = format!("{good_cert}{}", intermediate.pem);
    // `up` with the certificate, key and CA bundle given as files.
    let up_with = |name: &str, cert: &str, key: &str, bundle: &std::path::Path| {
        let (c, k) = cert_files(&app, name, cert, key);
        Run::up(&app)
            .args(["--cert", &c, "--key", &k, "--ca-bundle"])
            .arg(bundle)
    };

    // Each problem is refused with its own sentence, and nothing is written.
    let (wrong_name, wrong_name_key) = certs::leaf(&["other.example"], &intermediate, now_valid(), true);
    let expired_validity = (rcgen::date_time_ymd(2020, 1, 1), rcgen::date_time_ymd(2021, 1, 1));
    let (expired, expired_key) = certs::leaf(&[&app.domain], &intermediate, expired_validity, true);
    let (client_only, client_key) = certs::leaf(&[&app.domain], &intermediate, now_valid(), false);
    let (_, unrelated_key) = certs::leaf(&[&app.domain], &intermediate, now_valid(), true);
    let cases = [
        (
            "no-san",
            format!("{wrong_name}{}", intermediate.pem),
            wrong_name_key,
            &root_file,
            format!("does not cover {} (it names other.example)", app.domain),
        ),
        (
            "expired",
            format!("{expired}{}", intermediate.pem),
            expired_key,
            &root_file,
            "expired on 2021-01-01 00:00 UTC".to_string(),
        ),
        (
            "other-key",
            chain.clone(),
            unrelated_key,
            &root_file,
            "does not belong to the certificate".to_string(),
        ),
        (
            "other-ca",
            chain.clone(),
            good_key.clone(),
            &other_file,
            "was not issued by the CA bundle".to_string(),
        ),
        (
            "client-cert",
            format!("{client_only}{}", intermediate.pem),
            client_key,
            &root_file,
            "not a TLS server certificate".to_string(),
        ),
    ];
    for (name, cert, key, bundle, expect) in cases {
        let out = up_with(name, &cert, &key, bundle).code(2).stderr_has(expect).run();
        let stderr = text(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{name}: one sentence: {stderr}");
        assert!(
            !app.config_dir().exists() && !app.pod_exists(),
            "{name}: nothing may change"
        );
    }

    // The right one: used as given, served with its intermediate, verified against the root.
    up_with("good", &chain, &good_key, &root_file)
        .stdout_has("server certificate as given")
        .run();
    assert!(!app.config_dir().join("ca").exists(), "no CA of ours is made");
    assert_eq!(
        std::fs::read_to_string(app.config_dir().join("ca.crt")).unwrap(),
        root.pem
    );
    let served = Command::new("openssl")
        .args([
            "s_client",
            "-showcerts",
            "-connect",
            &format!("127.0.0.1:{}", app.port),
            "-servername",
            &app.domain,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        text(&served.stdout).matches("-----BEGIN CERTIFICATE-----").count(),
        2,
        "leaf and intermediate"
    );

    // A re-run without the flags keeps the certificate; certs renew declines.
    let before = common::mtimes(&app.config_dir());
    on(&app, &[]).run();
    assert_eq!(common::mtimes(&app.config_dir()), before);
    on(&app, &["certs", "renew"]).code(2).stderr_has("--cert/--key").run();
}

#[test]
fn renewal_reloads_nginx_in_place_without_a_failed_request() {
    let Some(app) = serving(&["--no-verify"]) else { return };
    let [_, nginx_tar] = common::image_archives();
    app.push(nginx_tar, "loop/nginx:1", None);
    let before = app.started_at();
    let serial = |path: &std::path::Path| {
        text(
            &Command::new("openssl")
                .args(["x509", "-noout", "-serial", "-in"])
                .arg(path)
                .output()
                .unwrap()
                .stdout,
        )
    };
    let old_serial = serial(&app.config_dir().join("tls/server.crt"));

    // A client pulling the manifest and its layer in a loop for the whole renewal.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let ca = app.config_dir().join("ca.crt");
    let url = format!("https://{}/v2/loop/nginx/manifests/1", app.registry());
    let client = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let out = Command::new("curl")
                    .args([
                        "-sf",
                        "-o",
                        "/dev/null",
                        "-H",
                        "Accept: application/vnd.oci.image.manifest.v1+json",
                        "--cacert",
                    ])
                    .arg(&ca)
                    .arg(&url)
                    .status()
                    .unwrap();
                if out.success() { &ok } else { &failed }.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let renew = on(&app, &["certs", "renew"]).stdout_has("nginx reloaded");
    let out = renew.output();
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::SeqCst);
    client.join().unwrap();
    renew.check(&out);
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "requests failed during the reload ({} succeeded)",
        ok.load(Ordering::SeqCst)
    );
    assert!(ok.load(Ordering::SeqCst) >= 10, "the client kept pulling");
    assert_eq!(app.started_at(), before, "no container restarted");

    let new_serial = serial(&app.config_dir().join("tls/server.crt"));
    assert_ne!(new_serial, old_serial, "a new certificate was issued");
    let served = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{} -servername {} </dev/null 2>/dev/null | openssl x509 -noout -serial",
            app.port, app.domain
        ))
        .output()
        .unwrap();
    assert_eq!(text(&served.stdout), new_serial, "nginx serves the new certificate");

    // certs show, as JSON.
    let out = on(&app, &["certs", "show", "--json"]).output();
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["server"]["names"][0], app.domain.as_str());
    assert!(shown["server"]["days_left"].as_i64().unwrap() > 800);
    assert!(shown["ca"]["subject"].as_str().unwrap().contains("registry-up CA"));
    assert_eq!(shown["server"]["sha256_fingerprint"].as_str().unwrap().len(), 95);
    assert_eq!(
        format!(
            "serial={}\n",
            shown["server"]["serial"]
                .as_str()
                .unwrap()
                .replace(':', "")
                .to_uppercase()
        ),
        new_serial
    );

    // A new CA on request: clients are told to trust it again, and the appliance verifies with it.
    let old_ca = std::fs::read(app.config_dir().join("ca.crt")).unwrap();
    on(&app, &["certs", "renew", "--rotate-ca"])
        .stdout_has("every client that trusted the old one must trust")
        .stdout_has("ok   verify push/pull")
        .run();
    assert_ne!(std::fs::read(app.config_dir().join("ca.crt")).unwrap(), old_ca);
}

#[test]
fn trust_lets_plain_podman_and_skopeo_use_the_registry() {
    let Some(app) = serving(&["--no-verify"]) else { return };
    let [_, nginx_tar] = common::image_archives();
    app.push(nginx_tar, "trusted/nginx:1", None);
    let image = format!("{}/trusted/nginx:1", app.registry());
    let names = ImageNames(vec![image.clone()]);

    // Before: a plain client refuses the unknown CA.
    let plain = || common::skopeo(&["inspect", "--format", "{{.Digest}}", &format!("docker://{image}")]);
    assert!(!plain().status.success());

    on(&app, &["trust"]).stdout_has("On every other client host").run();
    let containers_ca = std::path::PathBuf::from(format!("/etc/containers/certs.d/{}/ca.crt", app.registry()));
    let docker_ca = std::path::PathBuf::from(format!("/etc/docker/certs.d/{}/ca.crt", app.registry()));
    assert_eq!(
        std::fs::read(&containers_ca).unwrap(),
        std::fs::read(app.config_dir().join("ca.crt")).unwrap()
    );
    assert!(docker_ca.exists());

    let out = plain();
    assert!(out.status.success(), "skopeo without TLS flags: {}", text(&out.stderr));
    let out = podman(&["pull", "-q", &image]);
    assert!(
        out.status.success(),
        "podman pull without TLS flags: {}",
        text(&out.stderr)
    );

    // down --purge takes the trust back.
    on(&app, &["down", "--purge", "--yes"]).run();
    assert!(
        !containers_ca.exists() && !docker_ca.exists(),
        "trust files left behind"
    );
    drop(names);
}

/// A host without a system CA store (simulated: SSL_CERT_FILE and SSL_CERT_DIR, which the Rust TLS stack
/// honours, point at an empty folder) gets a sentence and exit 2 from bundle, not a crash, and no file.
#[test]
fn bundle_without_a_system_ca_store_says_so_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bundle.tar");
    let ca = tmp.path().join("ca.crt");
    std::fs::write(&ca, "").unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    Run::bin()
        .args(["bundle", "--out"])
        .arg(&out)
        .arg("--ca")
        .arg(&ca)
        .env("SSL_CERT_FILE", empty.join("none.pem"))
        .env("SSL_CERT_DIR", &empty)
        .code(2)
        .stderr_has("This host has no system CA certificates")
        .run();
    assert!(!out.exists());
}
