//! The registry image's two layouts (3.x, the official image today, and 2.x): the registry runs
//! registry-up's config on both, auth is enforced on both, an upgrade from one to the other keeps every
//! digest, and `verify` fails loudly when the running registry is not running registry-up's config.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{assert_check, check, podman, serving, skopeo_ok, text, verify_json, Appliance, Run};

/// `registry-up --config-dir <the appliance's> EXTRA`: a re-run that keeps every installed setting.
fn rerun(app: &Appliance, extra: &[&str]) -> Run {
    Run::bin().config_dir(app.config_dir()).args(extra)
}

fn password(app: &Appliance) -> String {
    std::fs::read_to_string(app.config_dir().join("auth/password"))
        .unwrap()
        .trim()
        .to_string()
}

/// The manifest (or index) a tag points to, as stored: its digest, computed from its bytes, and its text.
fn raw_manifest(app: &Appliance, image: &str, creds: &str) -> (String, String) {
    let cert_dir = app.config_dir().display().to_string();
    let raw = skopeo_ok(&[
        "inspect",
        "--raw",
        "--cert-dir",
        &cert_dir,
        "--creds",
        creds,
        &app.reference(image),
    ]);
    (format!("sha256:{}", common::sha256(raw.as_bytes())), raw)
}

fn raw_digest(app: &Appliance, image: &str, creds: &str) -> String {
    raw_manifest(app, image, creds).0
}

/// Polls `GET /v2/` after a pod was replaced behind registry-up's back (its nginx binds a moment after
/// play kube returns) until `settled` holds for the answer, for at most 15 s; returns the last answer.
fn settled_answer(app: &Appliance, settled: impl Fn(&str) -> bool) -> String {
    let started = std::time::Instant::now();
    let mut code = app.curl_code(None);
    while !settled(&code) && started.elapsed() < std::time::Duration::from_secs(15) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        code = app.curl_code(None);
    }
    code
}

/// Polls until `GET /v2/` answers as a registry does (200, or 401 with a password).
fn wait_answering(app: &Appliance) {
    let code = settled_answer(app, |c| matches!(c, "200" | "401"));
    assert!(
        matches!(code.as_str(), "200" | "401"),
        "{} answers HTTP {code}",
        app.registry()
    );
}

/// `archive` is asked for only past the gate: building the archives needs root.
fn auth_is_enforced(image: &str, archive: fn() -> &'static Path) {
    let Some(app) = Appliance::e2e() else { return };
    let archive = archive();
    Run::bin()
        .args(app.args_with_registry(image, archive))
        .arg("--auth")
        .stdout_has("ok   check auth and config")
        .run();
    let password = password(&app);
    let creds = format!("admin:{password}");

    // Anonymous requests are refused, by curl and by skopeo; the password works.
    assert_eq!(app.curl_code(None), "401");
    assert_eq!(app.curl_code(Some("admin:wrong")), "401");
    assert_eq!(app.curl_code(Some(&creds)), "200");
    let [_, nginx] = common::image_archives();
    app.assert_anonymous_push_refused(nginx, "anon/nginx:1");
    let digest = app.push(nginx, "auth/nginx:1", Some(&creds));
    assert_eq!(raw_digest(&app, "auth/nginx:1", &creds), digest);

    // A generated password is hashed at a low bcrypt cost (the registry checks it on every request).
    let htpasswd = std::fs::read_to_string(app.config_dir().join("registry/htpasswd")).unwrap();
    assert!(htpasswd.starts_with("admin:$2b$05$"), "{htpasswd}");

    // verify proves it on the running registry.
    let (code, report) = verify_json(&app, &[]);
    assert_eq!(code, 0, "{report:#}");
    let auth = check(&report, "auth");
    assert_eq!(auth["status"], "pass", "{auth}");
    assert!(auth["detail"].as_str().unwrap().starts_with("on:"), "{auth}");
    assert_eq!(check(&report, "config")["status"], "pass", "{report:#}");
    let registry = check(&report, "registry")["detail"].as_str().unwrap().to_string();
    assert!(
        registry.contains("distribution"),
        "the version is read in the container: {registry}"
    );
    assert!(registry.contains("referrers API not served"), "{registry}");

    // The registry runs with tracing export off, and listens on its socket only: no debug or metrics
    // listener (the image's own config has one on :5001), no TCP port at all (the pod shares the host's
    // network); nothing but nginx's port outside.
    let env = app.inspect(&app.container("registry"), "{{range .Config.Env}}{{println .}}{{end}}");
    assert!(env.lines().any(|l| l == "OTEL_TRACES_EXPORTER=none"), "{env}");
    let registry = app.inspect(&app.container("registry"), "{{.State.Pid}}");
    assert!(
        common::tcp_listeners(&registry).is_empty(),
        "{:?}",
        common::tcp_listeners(&registry)
    );
    assert_eq!(
        common::unix_listeners(&registry),
        vec!["/run/registry-up/registry.sock"]
    );
    let nginx = app.inspect(&app.container("nginx"), "{{.State.Pid}}");
    let expected: BTreeSet<String> = [format!("0.0.0.0:{}", app.port), format!("[::]:{}", app.port)]
        .into_iter()
        .collect();
    assert_eq!(common::tcp_listeners(&nginx), expected);
}

#[test]
fn auth_is_enforced_on_the_3x_layout() {
    auth_is_enforced(common::REGISTRY_IMAGE, || &common::image_archives()[0]);
}

#[test]
fn auth_is_enforced_on_the_2x_layout() {
    auth_is_enforced(common::REGISTRY_2X_IMAGE, common::registry_2x_archive);
}

/// Turns the appliance into what the release before registry 3 support left on disk and running: config
/// mounted at /etc/docker/registry (where the 2.x image reads it by itself), no `serve` arguments, no
/// fingerprint header, a cost-10 password hash; and that release's network: the pod on Podman's network
/// with nginx's port published, the registry on the pod's 127.0.0.1:5000.
fn as_the_previous_release_wrote_it(app: &Appliance) {
    let config_path = app.config_dir().join("registry/config.yml");
    let config: String = std::fs::read_to_string(&config_path)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("X-Registry-Up-Config") && !l.trim_start().starts_with("- sha256:"))
        .filter(|l| l.trim() != "net: unix")
        .map(|l| {
            format!(
                "{}\n",
                l.replace("/etc/registry-up/htpasswd", "/etc/docker/registry/htpasswd")
                    .replace("addr: /run/registry-up/registry.sock", "addr: 127.0.0.1:5000")
            )
        })
        .collect();
    std::fs::write(&config_path, config).unwrap();
    let nginx_path = app.config_dir().join("nginx/registry.conf");
    let nginx: String = std::fs::read_to_string(&nginx_path)
        .unwrap()
        .replace("server unix:/run/registry-up/registry.sock;", "server 127.0.0.1:5000;")
        .replace(
            &format!("listen 0.0.0.0:{} ssl;", app.port),
            &format!("listen {} ssl;", app.port),
        )
        .replace(&format!("\n    listen [::]:{} ssl;", app.port), "");
    std::fs::write(&nginx_path, nginx).unwrap();
    let hash = bcrypt::hash(password(app), 10).unwrap();
    std::fs::write(app.config_dir().join("registry/htpasswd"), format!("admin:{hash}\n")).unwrap();
    let yaml_path = app.config_dir().join("registry-pod.yaml");
    // The pod as that release wrote it: this one's, less what issue 19 and registry 3 support added.
    use serde_yaml_ng::Value;
    let mut pod: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&yaml_path).unwrap()).unwrap();
    pod["metadata"].as_mapping_mut().unwrap().remove("annotations");
    let spec = pod["spec"].as_mapping_mut().unwrap();
    spec.remove("hostNetwork");
    let not_socket = |v: &Value| !v["name"].as_str().unwrap().ends_with("-socket");
    spec["volumes"].as_sequence_mut().unwrap().retain(not_socket);
    for container in spec["containers"].as_sequence_mut().unwrap() {
        let c = container.as_mapping_mut().unwrap();
        c.remove("command");
        c.remove("env");
        c["volumeMounts"].as_sequence_mut().unwrap().retain(not_socket);
        for mount in c["volumeMounts"].as_sequence_mut().unwrap() {
            if mount["mountPath"] == "/etc/registry-up:Z" {
                mount["mountPath"] = "/etc/docker/registry:Z".into();
            }
        }
        if c["name"] == "nginx" {
            let port = serde_yaml_ng::from_str(&format!(
                "- {{containerPort: {p}, hostPort: {p}, protocol: TCP}}",
                p = app.port
            ))
            .unwrap();
            c.insert("ports".into(), port);
        }
    }
    let yaml = serde_yaml_ng::to_string(&pod).unwrap();
    assert!(
        !yaml.contains("registry-up:Z")
            && !yaml.contains("command:")
            && !yaml.contains("socket")
            && !yaml.contains("hostNetwork"),
        "{yaml}"
    );
    std::fs::write(&yaml_path, yaml).unwrap();
    let out = podman(&["play", "kube", "--replace", &yaml_path.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_answering(app);
    // verify cannot compare a config without a fingerprint: it says so, without failing.
    let (code, report) = verify_json(app, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_check(&report, "config", "warn", &["carries no X-Registry-Up-Config header"]);
}

#[test]
fn upgrade_from_2x_to_3x_and_back_keeps_every_digest_and_the_password() {
    let Some(app) = Appliance::e2e() else { return };
    Run::bin()
        .args(app.args_with_registry(common::REGISTRY_2X_IMAGE, common::registry_2x_archive()))
        .arg("--auth")
        .run();
    let creds = format!("admin:{}", password(&app));
    as_the_previous_release_wrote_it(&app);
    assert_eq!(app.curl_code(None), "401", "the old appliance enforces its password");
    assert_eq!(app.curl_code(Some(&creds)), "200");
    let [registry_tar, nginx_tar] = common::image_archives();
    app.push(nginx_tar, "keep/nginx:1", Some(&creds));
    app.push(registry_tar, "keep/registry:1", Some(&creds));
    // A multi-platform image: an index and its two per-platform manifests.
    app.push_index(nginx_tar, registry_tar, "keep/multi:1", Some(&creds));
    let tags = ["keep/nginx:1", "keep/registry:1", "keep/multi:1"];
    let digests: Vec<String> = tags.iter().map(|t| raw_digest(&app, t, &creds)).collect();
    let (_, index) = raw_manifest(&app, "keep/multi:1", &creds);
    assert!(index.contains("\"manifests\""), "an index was pushed: {index}");

    let steps = [
        (common::REGISTRY_IMAGE, common::image_archives()[0].as_path()),
        (common::REGISTRY_2X_IMAGE, common::registry_2x_archive()),
    ];
    for (image, archive) in steps {
        // The switch is proven against what was served before it, tag by tag.
        rerun(&app, &["--registry-image", image])
            .arg("--image-archive")
            .arg(archive)
            .stdout_has("inventory before")
            .stdout_has("every one of the 3 tags served before is served with the same digest")
            .run();
        assert_eq!(
            app.inspect(&app.container("registry"), "{{.ImageName}}"),
            image,
            "the registry runs the image asked for"
        );
        let htpasswd = std::fs::read_to_string(app.config_dir().join("registry/htpasswd")).unwrap();
        assert!(
            htpasswd.starts_with("admin:$2b$05$"),
            "the generated password is hashed cheaply now: {htpasswd}"
        );
        // Same password, still required.
        assert_eq!(app.curl_code(None), "401", "{image}");
        assert_eq!(app.curl_code(Some(&creds)), "200", "{image}");
        for (tag, digest) in tags.iter().zip(&digests) {
            assert_eq!(&raw_digest(&app, tag, &creds), digest, "{tag} on {image}");
        }
        let (code, report) = verify_json(&app, &["--deep"]);
        assert_eq!(code, 0, "{image}: {report:#}");
        for name in ["auth", "config", "deep"] {
            assert_eq!(check(&report, name)["status"], "pass", "{image} {name}: {report:#}");
        }
        assert_eq!(report["deep"]["tags"], 3, "{report:#}");
        // Three image manifests, the index and its two children.
        assert_eq!(report["deep"]["manifests"], 5, "{report:#}");
    }
}

#[test]
fn verify_fails_when_the_registry_runs_the_images_own_config() {
    let Some(app) = serving(&["--auth", "--no-verify"]) else {
        return;
    };
    // The pod as a tool that ignores the layout would write it: no command, so the 3.x image serves its
    // built-in config (no auth, no fingerprint, TCP :5000), as registry-up did before. It no longer
    // listens where nginx looks (the socket), so nothing answers through the proxy, and verify says so.
    let yaml = app.config_dir().join("registry-pod.yaml");
    let original = std::fs::read_to_string(&yaml).unwrap();
    let command =
        "    command:\n    - /bin/sh\n    - -c\n    - umask 0007 && exec registry serve /etc/registry-up/config.yml\n";
    assert!(original.contains(command), "{original}");
    let stripped = app.tmp.path().join("stripped-pod.yaml");
    std::fs::write(&stripped, original.replace(command, "")).unwrap();
    let out = podman(&["play", "kube", "--replace", &stripped.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        settled_answer(&app, |c| c != "000"),
        "502",
        "the image's own config does not serve the socket"
    );

    let (code, report) = verify_json(&app, &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["status"], "fail");
    assert_check(&report, "api", "fail", &["502", "the registry behind it does not"]);

    // registry-up puts its pod back; verify passes again.
    rerun(&app, &[]).run();
    assert_eq!(app.curl_code(None), "401");
    let (code, report) = verify_json(&app, &[]);
    assert_eq!(code, 0, "{report:#}");
}

#[test]
fn verify_fails_when_the_auth_section_is_removed_from_the_config_by_hand() {
    let Some(app) = serving(&["--auth", "--no-verify"]) else {
        return;
    };
    let config = app.config_dir().join("registry/config.yml");
    let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    value
        .as_mapping_mut()
        .unwrap()
        .remove("auth")
        .expect("auth is configured");
    std::fs::write(&config, serde_yaml_ng::to_string(&value).unwrap()).unwrap();

    // Not restarted yet: auth still holds, but the file is no longer what registry-up wrote.
    let (code, report) = verify_json(&app, &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_check(&report, "auth", "pass", &[]);
    assert_check(&report, "config", "fail", &["was changed by hand"]);

    // Restarted with the edited file: anyone may push now, and verify says so.
    assert!(podman(&["restart", "-t", "0", &app.container("registry")])
        .status
        .success());
    wait_answering(&app);
    let (code, report) = verify_json(&app, &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_check(
        &report,
        "auth",
        "fail",
        &["a password is set up, but anonymous GET /v2/ -> 200"],
    );

    // A re-run writes registry-up's config again and restarts the registry with it.
    rerun(&app, &[]).run();
    assert_eq!(app.curl_code(None), "401");
    assert_eq!(verify_json(&app, &[]).0, 0);
}

#[test]
fn a_registry_image_of_an_unknown_layout_is_refused_before_anything_is_written() {
    let Some(app) = Appliance::e2e() else { return };
    let [_, nginx_tar] = common::image_archives();
    Run::bin()
        .args(app.args_with_registry(common::NGINX_IMAGE, nginx_tar))
        .code(2)
        .stderr_has(format!(
            "The image {} is not a distribution registry that registry-up knows how to run",
            common::NGINX_IMAGE
        ))
        .stderr_has("--registry-image")
        .run();
    assert!(!app.config_dir().exists(), "nothing is written");
    assert!(!app.pod_exists(), "nothing is started");
}

/// A registry image that passes every static check and still loses data: `registry` on its PATH is a
/// wrapper that points the real binary at another folder through its own process environment, which
/// neither the image's config nor the container's shows.
fn image_serving_another_folder(app: &Appliance) -> (String, common::ImageNames) {
    let wrapper = "#!/bin/sh\nREGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/tmp/elsewhere exec /bin/registry \"$@\"\n";
    app.registry_image_from(
        "elsewhere",
        "COPY --chmod=0755 registry /usr/local/bin/registry",
        &[("registry", wrapper)],
    )
}

/// An anonymous blob upload start through the proxy: its status and body.
fn upload_start(app: &Appliance) -> (String, String) {
    let url = format!("https://{}/v2/during/upgrade/blobs/uploads/", app.registry());
    let ca = app.config_dir().join("ca.crt").display().to_string();
    common::curl("POST", &["--cacert", &ca, "-m", "5"], &url)
}

#[test]
fn an_upgrade_that_serves_less_is_rolled_back_and_writes_meanwhile_get_the_read_only_answer() {
    let Some(app) = serving(&["--no-verify"]) else { return };
    let [registry_tar, nginx_tar] = common::image_archives();
    app.push(nginx_tar, "keep/nginx:1", None);
    app.push(registry_tar, "keep/nginx:2", None);
    app.push(registry_tar, "keep/registry:1", None);
    app.push_index(nginx_tar, registry_tar, "keep/multi:1", None);
    let tags = ["keep/multi:1", "keep/nginx:1", "keep/nginx:2", "keep/registry:1"];
    let digests: Vec<String> = tags.iter().map(|t| app.raw_digest(t)).collect();
    let state = app.config_dir().join("state.json");
    let state_before = std::fs::read_to_string(&state).unwrap();
    let (image, _names) = image_serving_another_folder(&app);

    // Writes tried all through the upgrade: none may be taken while it is being proven.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let (stop, app_registry, ca) = (stop.clone(), app.registry(), app.config_dir().join("ca.crt"));
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let url = format!("https://{app_registry}/v2/during/upgrade/blobs/uploads/");
                answers.push(common::curl(
                    "POST",
                    &["--cacert", &ca.display().to_string(), "-m", "5"],
                    &url,
                ));
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            answers
        })
    };
    let out = rerun(&app, &["--registry-image", &image])
        .code(1)
        .stdout_has("read-only")
        .stderr_has("The change lost what the registry served: 4 of the 4 tags served before are gone or changed")
        .stderr_has(format!("keep/nginx:2 gone (was {})", digests[2]))
        .stderr_has("Rolled back: the earlier setup (registry image localhost/registry-up-test/registry:latest")
        .stderr_has("and serves every one of the 4 tags served before with the same digest")
        .run();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let answers = probe.join().unwrap();
    let said = common::shown(&out);
    // Every tag is served again, by an independent client, from the earlier setup, read-write.
    for (tag, digest) in tags.iter().zip(&digests) {
        assert_eq!(&app.raw_digest(tag), digest, "{tag} after the roll-back\n{said}");
    }
    assert_eq!(
        app.inspect(&app.container("registry"), "{{.ImageName}}"),
        common::REGISTRY_IMAGE
    );
    let state_after = std::fs::read_to_string(&state).unwrap();
    assert_eq!(state_after, state_before, "state.json is the earlier one");
    assert!(!app.config_dir().join("upgrade-rollback").exists());
    assert_eq!(upload_start(&app).1, "202", "read-write again");
    // While the change was made and proven, uploads were refused with the read-only answer; none was taken
    // between the first refusal and the last.
    let refused: Vec<usize> = answers
        .iter()
        .enumerate()
        .filter(|(_, (body, code))| code == "405" && body.contains("read-only while registry-up up changes"))
        .map(|(i, _)| i)
        .collect();
    assert!(
        !refused.is_empty(),
        "no write met the read-only answer: {answers:?}\n{said}"
    );
    let (first, last) = (refused[0], *refused.last().unwrap());
    assert!(
        answers[first..=last].iter().all(|(_, code)| code != "202"),
        "a write was taken inside the read-only window: {answers:?}"
    );
    let (code, report) = verify_json(&app, &["--deep"]);
    assert_eq!(code, 0, "{report:#}");
}

#[test]
fn a_guarded_upgrade_killed_at_any_moment_comes_back_with_every_tag_read_write() {
    let Some(app) = serving(&["--no-verify"]) else { return };
    let [registry_tar, nginx_tar] = common::image_archives();
    app.push(nginx_tar, "keep/nginx:1", None);
    app.push(registry_tar, "keep/registry:1", None);
    let tags = ["keep/nginx:1", "keep/registry:1"];
    let digests: Vec<String> = tags.iter().map(|t| app.raw_digest(t)).collect();
    let old_state = |app: &Appliance| -> String {
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(app.config_dir().join("state.json")).unwrap()).unwrap();
        s["registry_image"].as_str().unwrap().to_string()
    };
    // Killed right after each step of the guarded change: read-only, the first inventory, the files written,
    // the new pod started, the new pod answering.
    let moments = [
        "read-only",
        "inventory before",
        "write files",
        "start pod",
        "wait for registry",
    ];
    let (image, archive) = (common::REGISTRY_2X_IMAGE, common::registry_2x_archive());
    for moment in moments {
        let earlier = old_state(&app);
        assert_ne!(earlier, image);
        let mut child = rerun(&app, &["--registry-image", image])
            .arg("--image-archive")
            .arg(archive)
            .command()
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut seen = Vec::new();
        for line in std::io::BufRead::lines(stdout) {
            let line = line.unwrap();
            let here = line.starts_with(&format!("ok   {moment}"));
            seen.push(line);
            if here {
                let _ = child.kill();
                break;
            }
        }
        child.wait().unwrap();
        assert!(
            seen.last().is_some_and(|l| l.starts_with(&format!("ok   {moment}"))),
            "the run never reached {moment}: {seen:#?}"
        );
        // Its podman child (play kube) runs on to the end: the next run starts after it, as a person's would.
        common::wait_until_no_process_names(&app.config_dir());
        // Whatever the moment, the next plain run brings back one of the two setups, read-write: the earlier
        // one, whose files it puts back first.
        let out = rerun(&app, &[]).stderr_has("file(s) were put back").run();
        let running = app.inspect(&app.container("registry"), "{{.ImageName}}");
        assert_eq!(running, earlier, "the earlier setup runs after a kill after {moment}");
        assert_eq!(old_state(&app), running, "state.json names what runs");
        for (tag, digest) in tags.iter().zip(&digests) {
            assert_eq!(
                &app.raw_digest(tag),
                digest,
                "{tag} after a kill after {moment}\n{}",
                common::shown(&out)
            );
        }
        assert_eq!(upload_start(&app).1, "202", "read-write after a kill after {moment}");
        assert!(!app.config_dir().join("upgrade-rollback").exists());
        assert!(!app.config_dir().join("gc-in-progress").exists());
    }
    // Left to finish, the same change is proven and kept.
    rerun(&app, &["--registry-image", image])
        .arg("--image-archive")
        .arg(archive)
        .stdout_has("every one of the 2 tags served before is served with the same digest")
        .run();
    assert_eq!(old_state(&app), image);
}

/// Issue 29's window: the quick proof reads only a sample of the tags inside the read-only window, so a
/// registry that serves a copy of the storage (every tag there, as before) would pass it, and every write
/// after the window would go to the copy. The tag the guard places in the storage after the new registry
/// started is what shows it: `up` rolls back, naming the storage, and the earlier setup serves every tag,
/// read-write. A walk of every tag cannot tell (the copy serves each one as before), nor can the config
/// check (the copy's registry serves registry-up's config, fingerprint and all, but another folder): before
/// the placed tag, only the push/pull round trip caught it, after writes were taken again.
#[test]
fn an_upgrade_to_a_registry_serving_a_copy_of_the_storage_is_rolled_back() {
    let Some(app) = serving(&["--no-verify"]) else { return };
    let [registry_tar, nginx_tar] = common::image_archives();
    app.push(nginx_tar, "copy/nginx:1", None);
    app.push(registry_tar, "copy/registry:1", None);
    app.push_index(nginx_tar, registry_tar, "copy/multi:1", None);
    let tags = ["copy/multi:1", "copy/nginx:1", "copy/registry:1"];
    let digests: Vec<String> = tags.iter().map(|t| app.raw_digest(t)).collect();
    // An image holding a snapshot of the storage as it is now, served instead of the mounted folder.
    let context = app.tmp.path().join("snapshot-image");
    std::fs::create_dir_all(context.join("snapshot")).unwrap();
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(app.data_dir().join("docker"))
        .arg(context.join("snapshot"))
        .status()
        .unwrap();
    assert!(copied.success());
    // No REGISTRY_* variable (verify's config check names those): the wrapper serves registry-up's own
    // config, fingerprint and all, with only its storage folder changed.
    let wrapper = "#!/bin/sh\n\
        while IFS= read -r line; do\n\
          case \"$line\" in\n\
            *rootdirectory:*) printf '%srootdirectory: /srv/snapshot\\n' \"${line%%rootdirectory:*}\" ;;\n\
            *) printf '%s\\n' \"$line\" ;;\n\
          esac\n\
        done < /etc/registry-up/config.yml > /tmp/config.yml\n\
        exec /bin/registry serve /tmp/config.yml\n";
    let (image, _names) = app.registry_image_from(
        "snapshot",
        "COPY snapshot /srv/snapshot\nCOPY --chmod=0755 registry /usr/local/bin/registry",
        &[("registry", wrapper)],
    );
    let out = rerun(&app, &["--registry-image", &image])
        .code(1)
        .stderr_has("a tag placed in")
        .stderr_has("is not served by it: it serves another storage")
        .stderr_has("Rolled back: the earlier setup (registry image localhost/registry-up-test/registry:latest")
        .run();
    let said = common::shown(&out);
    assert_eq!(
        app.inspect(&app.container("registry"), "{{.ImageName}}"),
        common::REGISTRY_IMAGE
    );
    for (tag, digest) in tags.iter().zip(&digests) {
        assert_eq!(&app.raw_digest(tag), digest, "{tag} after the roll-back\n{said}");
    }
    assert_eq!(upload_start(&app).1, "202", "read-write again");
    assert!(!app.config_dir().join("upgrade-rollback").exists());
    // The placed tag is gone again: nothing of the proof stays in the storage.
    for repo in ["copy/multi", "copy/nginx", "copy/registry"] {
        let tags_dir = app
            .data_dir()
            .join("docker/registry/v2/repositories")
            .join(repo)
            .join("_manifests/tags");
        let names: Vec<String> = std::fs::read_dir(&tags_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["1"], "{}", tags_dir.display());
    }
}
