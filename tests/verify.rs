//! `registry-up verify` against a real appliance: what `--deep` finds, how TLS problems are named,
//! what a stopped registry or a hung server looks like, and the JSON document.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{assert_check, check, podman, serving, skopeo_ok, text, verify_json, Appliance, Run};
use rcgen::{CertificateParams, Issuer, KeyPair};
use serde_json::Value;

/// The documented schema (README, "verify --json"), key for key.
fn assert_schema(report: &Value) {
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<BTreeSet<_>>();
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let mut top = set(&["schema", "registry", "status", "checks", "summary"]);
    if report.get("deep").is_some() {
        top.insert("deep".into());
    }
    assert_eq!(keys(report), top);
    assert_eq!(report["schema"], "registry-up.verify/v1");
    assert!(["pass", "warn", "fail"].contains(&report["status"].as_str().unwrap()));
    for c in report["checks"].as_array().unwrap() {
        assert_eq!(keys(c), set(&["name", "status", "detail", "duration_ms"]), "{c}");
        assert!(
            ["pass", "warn", "fail", "skip"].contains(&c["status"].as_str().unwrap()),
            "{c}"
        );
        assert!(c["duration_ms"].is_u64() && c["name"].is_string() && c["detail"].is_string());
    }
    assert_eq!(
        keys(&report["summary"]),
        set(&["passed", "warned", "failed", "skipped", "duration_ms"])
    );
    if let Some(deep) = report.get("deep") {
        assert_eq!(
            keys(deep),
            set(&["repositories", "tags", "manifests", "blobs", "problems"])
        );
        for p in deep["problems"].as_array().unwrap() {
            assert_eq!(keys(p), set(&["repository", "tag", "digest", "problem"]));
        }
    }
    let count = |s: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == s)
            .count() as u64
    };
    assert_eq!(report["summary"]["passed"], count("pass"));
    assert_eq!(report["summary"]["failed"], count("fail"));
}

#[test]
fn deep_checks_every_image_and_names_exactly_what_a_lost_blob_breaks() {
    let Some(app) = serving(&[]) else { return };
    let cert_dir = app.config_dir().display().to_string();
    let [registry_tar, nginx_tar] = common::image_archives();
    for (archive, dest) in [
        (nginx_tar, "e2e/nginx:1"),
        (nginx_tar, "e2e/nginx:2"),
        (registry_tar, "e2e/registry:1"),
        (registry_tar, "other/registry:latest"),
    ] {
        app.push(archive, dest, None);
    }
    // An image index with two platform manifests, pushed by podman.
    app.push_index(nginx_tar, registry_tar, "multi/app:1", None);

    let (code, report) = verify_json(&app, &["--deep", "--jobs", "3"]);
    assert_schema(&report);
    assert_eq!(code, 0, "{report:#}");
    assert_check(&report, "deep", "pass", &[]);
    let deep = &report["deep"];
    // Four repositories pushed, plus the one verification uses (its manifests are deleted after each run).
    assert_eq!(deep["repositories"], 5, "{deep}");
    assert_eq!(deep["tags"], 5, "{deep}");
    // Four image tags, the index and its two children.
    assert_eq!(deep["manifests"], 7, "{deep}");
    // Config + layer per repository and image: e2e/nginx 2, e2e/registry 2, other/registry 2, multi/app 4.
    assert_eq!(deep["blobs"], 10, "{deep}");
    assert_eq!(deep["problems"].as_array().unwrap().len(), 0);

    // Lose the registry image's layer on disk: exactly the tags that reference it are named.
    let layer = skopeo_ok(&[
        "inspect",
        "--cert-dir",
        &cert_dir,
        "--format",
        "{{index .Layers 0}}",
        &app.reference("e2e/registry:1"),
    ]);
    let layer = layer.trim().to_string();
    let hex = layer.strip_prefix("sha256:").unwrap();
    let data = app
        .data_dir()
        .join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]));
    std::fs::remove_file(&data).unwrap_or_else(|e| panic!("{}: {e}", data.display()));

    let (code, report) = verify_json(&app, &["--deep"]);
    assert_schema(&report);
    assert_eq!(code, 1, "a lost blob fails verify");
    assert_eq!(report["status"], "fail");
    assert_check(&report, "deep", "fail", &[]);
    let found: BTreeSet<(String, String, String, String)> = report["deep"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap().to_string();
            (s("repository"), s("tag"), s("digest"), s("problem"))
        })
        .collect();
    let expected: BTreeSet<_> = [("e2e/registry", "1"), ("multi/app", "1"), ("other/registry", "latest")]
        .iter()
        .map(|(r, t)| (r.to_string(), t.to_string(), layer.clone(), "blob missing".to_string()))
        .collect();
    assert_eq!(found, expected);

    // The text form names them too, one per line.
    Run::bin()
        .arg("verify")
        .config_dir(app.config_dir())
        .arg("--deep")
        .code(1)
        .stdout_has(format!("other/registry:latest {layer} blob missing"))
        .run();
}

/// Writes a server certificate for the appliance signed by its own CA, valid from..until, and makes
/// nginx load it.
fn install_server_cert(app: &Appliance, not_before: time::OffsetDateTime, not_after: time::OffsetDateTime) {
    let cfg = app.config_dir();
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(cfg.join("ca/ca.key")).unwrap()).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&std::fs::read_to_string(cfg.join("ca.crt")).unwrap(), ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![app.domain.clone()]).unwrap();
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(cfg.join("tls/server.crt"), cert.pem()).unwrap();
    std::fs::write(cfg.join("tls/server.key"), key.serialize_pem()).unwrap();
    let out = podman(&["exec", &app.container("nginx"), "nginx", "-s", "reload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::thread::sleep(Duration::from_millis(500));
}

/// A CA that signed nothing the appliance serves, written to `dir`.
fn other_ca(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("other-ca.crt");
    std::fs::write(&path, common::certs::ca("Some Other CA", None).pem).unwrap();
    path
}

/// Serves a certificate valid `from..until` and asserts that verify fails on its expiry saying `says`;
/// returns the report.
fn expiry_fails(app: &Appliance, (from, until): (time::OffsetDateTime, time::OffsetDateTime), says: &str) -> Value {
    install_server_cert(app, from, until);
    let (code, report) = verify_json(app, &[]);
    assert_eq!(code, 1);
    assert_check(&report, "certificate-expiry", "fail", &[says]);
    report
}

#[test]
fn tls_problems_fail_their_own_check_and_name_the_cause() {
    let Some(app) = serving(&["--no-verify"]) else { return };

    // A CA that did not sign the server certificate.
    let other = other_ca(app.tmp.path());
    let (code, report) = verify_json(&app, &["--ca", other.to_str().unwrap()]);
    assert_schema(&report);
    assert_eq!(code, 1);
    assert_check(
        &report,
        "certificate-chain",
        "fail",
        &["unknown issuer", "registry-up CA for"],
    );
    assert_check(&report, "round-trip", "skip", &[]);

    // A name the certificate does not cover.
    let (code, report) = verify_json(
        &app,
        &[
            "--domain",
            "127.0.0.1",
            "--port",
            &app.port.to_string(),
            "--ca",
            app.config_dir().join("ca.crt").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);
    let names_only = format!("does not cover 127.0.0.1: it names only {}", app.domain);
    assert_check(&report, "certificate-name", "fail", &[&names_only]);
    assert_check(&report, "certificate-chain", "pass", &[]);

    // Expired; not a chain problem.
    let date = |y, m, d| rcgen::date_time_ymd(y, m, d);
    let report = expiry_fails(
        &app,
        (date(2020, 1, 1), date(2021, 1, 1)),
        "expired on 2021-01-01 00:00 UTC",
    );
    assert_check(&report, "certificate-chain", "pass", &[]);

    // Not yet valid.
    expiry_fails(
        &app,
        (date(2099, 6, 1), date(2100, 1, 1)),
        "not valid before 2099-06-01 00:00 UTC",
    );

    // Expiring soon: a warning, which --strict turns into a failure.
    let now = time::OffsetDateTime::now_utc();
    install_server_cert(&app, now - time::Duration::days(1), now + time::Duration::days(10));
    let (code, report) = verify_json(&app, &[]);
    assert_eq!(code, 0, "warnings pass: {report:#}");
    assert_eq!(report["status"], "warn");
    assert_check(&report, "certificate-expiry", "warn", &[]);
    let (code, report) = verify_json(&app, &["--strict"]);
    assert_eq!((code, report["status"].as_str()), (1, Some("fail")));
}

#[test]
fn a_stopped_registry_fails_the_round_trip_and_pod_health_within_the_timeout() {
    let Some(app) = serving(&["--no-verify"]) else { return };
    assert!(podman(&["stop", "-t", "0", &app.container("registry")])
        .status
        .success());
    let start = Instant::now();
    let (code, report) = verify_json(&app, &["--timeout", "20"]);
    let took = start.elapsed();
    assert_schema(&report);
    assert_eq!(code, 1);
    assert!(took < Duration::from_secs(25), "verify took {took:?} with --timeout 20");
    assert_check(
        &report,
        "round-trip",
        "fail",
        &["registry container behind it is not running"],
    );
    let trip = check(&report, "round-trip");
    assert!(!trip["detail"].as_str().unwrap().contains('\n'), "one line: {trip}");
    assert_check(
        &report,
        "pod",
        "fail",
        &[&format!("{} exited", app.container("registry"))],
    );
}

/// Air-gapped hosts often have no system CA store (no ca-certificates package). Simulated here by pointing
/// the store's lookup (SSL_CERT_FILE and SSL_CERT_DIR, which the Rust TLS stack honours) at an empty
/// folder: `up` and `verify` of an appliance with its own CA need nothing from it, and do not crash (an
/// HTTPS client that loads the system store whether asked to or not panicked here).
#[test]
fn up_and_verify_need_no_system_ca_store() {
    let Some(app) = Appliance::e2e() else { return };
    let empty = tempfile::tempdir().unwrap();
    let none = empty.path().join("none.pem");
    let no_store = |run: Run| run.env("SSL_CERT_FILE", &none).env("SSL_CERT_DIR", empty.path());
    let up = no_store(Run::up(&app)).run();
    assert!(
        text(&up.stdout).contains("pushed and pulled"),
        "up ran its round trip:\n{}",
        text(&up.stdout)
    );
    let out = no_store(Run::bin().arg("verify").config_dir(app.config_dir()).arg("--json")).output();
    common::assert_exit(&out, 0, "verify on a host without a CA store");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_schema(&report);
    assert_check(&report, "round-trip", "pass", &["matches"]);
    assert_check(&report, "cleanup", "pass", &[]);
}

/// The registry's version is read in its container once per image, kept by the image ID the running
/// container has, and read again when that ID is another.
#[test]
fn the_registry_version_is_kept_by_the_running_image_id() {
    let Some(app) = serving(&["--no-verify"]) else { return };
    let registry_detail = || {
        let (code, report) = verify_json(&app, &[]);
        assert_eq!(code, 0, "{report:#}");
        check(&report, "registry")["detail"].as_str().unwrap().to_string()
    };
    let kept = app.config_dir().join("registry-version");
    let image = app.inspect(&app.container("registry"), "{{.Image}}");
    let first = registry_detail();
    assert!(first.contains("distribution"), "read in the container: {first}");
    assert!(first.contains(&format!("(image {})", &image[..12])), "{first}");
    let line = std::fs::read_to_string(&kept).unwrap();
    assert!(
        line.starts_with(&format!("{image} ")),
        "kept by the running image's ID: {line}"
    );
    // What is kept for that ID is what verify says (no exec) ...
    std::fs::write(&kept, format!("{image} kept-version\n")).unwrap();
    assert!(
        registry_detail().starts_with("kept-version "),
        "the kept version is used"
    );
    // ... and a version kept for another image is not: the binary is asked again.
    std::fs::write(&kept, "0123456789ab kept-version\n").unwrap();
    let again = registry_detail();
    assert!(
        again.contains("distribution") && !again.contains("kept-version"),
        "{again}"
    );
    assert!(std::fs::read_to_string(&kept)
        .unwrap()
        .starts_with(&format!("{image} ")));
}

#[test]
fn a_hung_server_never_hangs_verify() {
    // Accepts connections and never says a word.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let ca = other_ca(tmp.path());
    let start = Instant::now();
    let out = Run::bin()
        .args(["verify", "--domain", "127.0.0.1", "--port", &port, "--ca"])
        .arg(ca)
        .args(["--timeout", "3", "--json"])
        .config_dir(tmp.path())
        .output();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(8), "verify took {took:?} with --timeout 3");
    common::assert_exit(&out, 1, "verify against a silent server");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_schema(&report);
    assert_check(&report, "tcp", "pass", &[]);
    assert_check(&report, "tls", "fail", &[]);
    drop(listener);
}

#[test]
fn usage_errors_exit_2_and_no_appliance_exits_4() {
    let tmp = tempfile::tempdir().unwrap();
    let refused = |args: &[&str]| Run::bin().arg("verify").config_dir(tmp.path()).args(args).code(2);
    Run::bin()
        .arg("verify")
        .config_dir(tmp.path())
        .code(4)
        .stderr_has("No appliance is installed here")
        .run();
    refused(&["--domain", "x.example", "--ca", "/nonexistent/ca.crt"])
        .stderr_has("Cannot read the CA file /nonexistent/ca.crt")
        .run();
    let bad = tmp.path().join("bad.crt");
    std::fs::write(&bad, "hello").unwrap();
    refused(&["--domain", "x.example", "--ca", bad.to_str().unwrap()]).run();
    refused(&["--domain", "x.example", "--size", "lots"]).run();
    refused(&["--domain", "bad_name"]).run();
}

/// One exit status for "not installed", whichever command meets an empty config folder (no root needed).
#[test]
fn commands_that_need_an_appliance_exit_4_without_one() {
    let tmp = tempfile::tempdir().unwrap();
    for command in [&["certs", "show"][..], &["certs", "renew"], &["trust"], &["logs"]] {
        Run::bin()
            .args(command)
            .config_dir(tmp.path())
            .code(4)
            .stderr_has("No appliance is installed")
            .run();
    }
    Run::bin()
        .arg("status")
        .config_dir(tmp.path())
        .code(4)
        .stdout_has("not installed")
        .run();
}

/// The tags of an inventory file as `repo:tag` → digest.
fn inventory_tags(inventory: &Value) -> std::collections::BTreeMap<String, String> {
    inventory["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            let repo = r["name"].as_str().unwrap().to_string();
            r["tags"].as_array().unwrap().iter().map(move |t| {
                (
                    format!("{repo}:{}", t["tag"].as_str().unwrap()),
                    t["digest"].as_str().unwrap().to_string(),
                )
            })
        })
        .collect()
}

#[test]
fn an_inventory_records_what_is_served_and_a_baseline_names_each_tag_lost_or_changed() {
    let Some(app) = serving(&["--no-verify"]) else { return };
    let [registry_tar, nginx_tar] = common::image_archives();
    app.push(registry_tar, "team/app:1", None);
    app.push(registry_tar, "team/app:2", None);
    app.push(nginx_tar, "base/x:1", None);
    app.push(registry_tar, "base/x:old", None);
    app.push_index(registry_tar, nginx_tar, "multi/idx:1", None);
    let record = app.tmp.path().join("before.json");
    let record_arg = record.display().to_string();
    let (code, report) = verify_json(&app, &["--deep", "--record", &record_arg]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(common::mode(&record), 0o600);
    let before: Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    assert_eq!(before["schema"], "registry-up.inventory/v1");
    // Every tag with the digest an independent client reads, in a stable order.
    let tags = inventory_tags(&before);
    let names: Vec<&str> = tags.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["base/x:1", "base/x:old", "multi/idx:1", "team/app:1", "team/app:2"]
    );
    for (name, digest) in &tags {
        assert_eq!(*digest, app.raw_digest(name), "{name}");
    }
    let index = &before["repositories"].as_array().unwrap()[1]["tags"][0];
    assert_eq!(index["children"].as_array().unwrap().len(), 2, "{index}");
    assert_eq!(before["counts"]["tags"], 5);
    // Every repository of the catalog, verify's own (its test tag deleted) among them.
    assert_eq!(before["counts"]["repositories"], 4);
    // verify --deep on the appliance host keeps its own copy, which status reports.
    let kept: Value = serde_json::from_slice(&std::fs::read(app.config_dir().join("inventory.json")).unwrap()).unwrap();
    assert_eq!(inventory_tags(&kept), tags);
    Run::bin()
        .arg("status")
        .config_dir(app.config_dir())
        .stdout_has("inventory  taken ")
        .stdout_has("4 repositories, 5 tags")
        .run();

    // By hand in the storage: one tag's link removed, another tag pointed at another manifest.
    let repos = app.data_dir().join("docker/registry/v2/repositories");
    std::fs::remove_dir_all(repos.join("team/app/_manifests/tags/2")).unwrap();
    let other = &tags["base/x:old"];
    std::fs::write(repos.join("base/x/_manifests/tags/1/current/link"), other).unwrap();
    let added = app.push(nginx_tar, "new/y:1", None);

    let (code, report) = verify_json(&app, &["--baseline", &record_arg]);
    assert_eq!(code, 1, "{report:#}");
    assert_check(&report, "inventory", "fail", &["2 of the 5 tags", "3 kept"]);
    let changed = report["inventory"]["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 2, "{report:#}");
    assert_eq!(
        (
            &changed[0]["repository"],
            &changed[0]["tag"],
            &changed[0]["was"],
            &changed[0]["now"]
        ),
        (
            &Value::from("base/x"),
            &Value::from("1"),
            &Value::from(tags["base/x:1"].clone()),
            &Value::from(other.clone())
        )
    );
    assert_eq!(
        (&changed[1]["repository"], &changed[1]["tag"], &changed[1]["was"]),
        (
            &Value::from("team/app"),
            &Value::from("2"),
            &Value::from(tags["team/app:2"].clone())
        )
    );
    assert!(changed[1].get("now").is_none(), "{}", changed[1]);
    let added_list = report["inventory"]["added"].as_array().unwrap();
    assert_eq!(added_list.len(), 1);
    assert_eq!(
        (&added_list[0]["repository"], &added_list[0]["digest"]),
        (&Value::from("new/y"), &Value::from(added))
    );
    // The text names the same, the added tag as information.
    Run::bin()
        .args(["verify", "--baseline", &record_arg])
        .config_dir(app.config_dir())
        .code(1)
        .stdout_has(format!("team/app:2 gone (was {})", tags["team/app:2"]))
        .stdout_has(format!("base/x:1 {} -> {other}", tags["base/x:1"]))
        .stdout_has("new/y:1 ")
        .stdout_has("added since (information)")
        .run();
    // A file that is not an inventory is refused before anything is asked.
    Run::bin()
        .args(["verify", "--baseline", "/etc/hostname"])
        .config_dir(app.config_dir())
        .code(2)
        .stderr_has("is not an inventory")
        .run();
}

#[test]
fn a_registry_whose_environment_overrides_its_config_fails_config_and_storage_and_an_image_that_does_is_refused() {
    let Some(app) = serving(&["--no-verify"]) else { return };
    let [registry_tar, _] = common::image_archives();
    let digest = app.push(registry_tar, "demo/app:1", None);
    let before = app.started_at();
    // An "upgrade" to an image that stores elsewhere, as an image built FROM the official one can.
    let (evil, _names) = app.registry_image_from("evil", "ENV REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/tmp", &[]);
    let state_before = std::fs::read(app.config_dir().join("state.json")).unwrap();
    let mut args = app.base_args();
    args.extend([
        "--registry-image".into(),
        evil.clone(),
        "--nginx-image".into(),
        common::NGINX_IMAGE.into(),
    ]);
    Run::bin()
        .args(&args)
        .code(2)
        .stderr_has("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY")
        .stderr_has("Nothing was changed")
        .run();
    assert_eq!(
        std::fs::read(app.config_dir().join("state.json")).unwrap(),
        state_before
    );
    assert_eq!(app.started_at(), before, "the pod was not touched");
    assert_eq!(app.digest("demo/app:1", None), digest);

    // The same variable in a pod started by hand: verify's config check reads the running container.
    let yaml_path = app.config_dir().join("registry-pod.yaml");
    let mut pod: serde_yaml_ng::Value = serde_yaml_ng::from_slice(&std::fs::read(&yaml_path).unwrap()).unwrap();
    let registry = pod["spec"]["containers"]
        .as_sequence_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["name"] == "registry")
        .unwrap();
    let env = registry["env"].as_sequence_mut().unwrap();
    let mut var = serde_yaml_ng::Mapping::new();
    var.insert("name".into(), "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY".into());
    var.insert("value".into(), "/tmp".into());
    env.push(var.into());
    let by_hand = app.tmp.path().join("by-hand.yaml");
    std::fs::write(&by_hand, serde_yaml_ng::to_string(&pod).unwrap()).unwrap();
    let played = podman(&["play", "kube", "--replace", &by_hand.display().to_string()]);
    assert!(played.status.success(), "{}", text(&played.stderr));
    // nginx binds a moment after play kube returns.
    let started = Instant::now();
    while app.curl_code(None) == "000" && started.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, report) = verify_json(&app, &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_check(
        &report,
        "config",
        "fail",
        &["REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"],
    );
    // Where the registry writes is proven by the round trip's blobs, not read from the file.
    assert_check(
        &report,
        "storage",
        "fail",
        &["did not write 3 of them under", &app.data_dir().display().to_string()],
    );
    // up sees the running registry is not what it set up, and replaces the pod.
    app.up(&[]);
    assert_eq!(app.digest("demo/app:1", None), digest);
    let (code, report) = verify_json(&app, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_check(
        &report,
        "storage",
        "pass",
        &["the round trip's blobs were written there"],
    );
}
