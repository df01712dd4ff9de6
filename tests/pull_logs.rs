//! First contact on a connected host: `up` pulls what is missing (from a registry on loopback that holds
//! the stand-in images), a pull that cannot finish stops the run before anything is written, and
//! `registry-up logs` answers "what happened?" for both containers.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{assert_success, podman, skopeo_ok, text, Appliance};

fn registry_up(args: &[String]) -> Output {
    common::command(common::BIN)
        .args(args)
        .output()
        .expect("registry-up runs")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// A source registry (an appliance of the fixture) holding both stand-ins under other names, each with a
/// layer of random bytes that this host's image store does not have (else Podman would skip every layer
/// and a pull would move nothing), trusted by Podman through certs.d (the appliance removes it on drop).
struct Source {
    app: Appliance,
}

impl Source {
    fn new() -> Self {
        let app = Appliance::new();
        app.up(&["--no-verify"]);
        let certs_d = Path::new("/etc/containers/certs.d").join(app.registry());
        std::fs::create_dir_all(&certs_d).unwrap();
        std::fs::copy(app.config_dir().join("ca.crt"), certs_d.join("ca.crt")).unwrap();
        let source = Source { app };
        source.publish(common::REGISTRY_IMAGE, "registry", 1);
        source.publish(common::NGINX_IMAGE, "nginx", 2);
        source
    }

    fn image(&self, name: &str) -> String {
        format!("{}/lib/{name}:x", self.app.registry())
    }

    /// Builds `base` plus 3 MiB of fresh random bytes, pushes it as lib/NAME:x, and forgets it locally.
    fn publish(&self, base: &str, name: &str, seed: u8) {
        let ctx = self.app.tmp.path().join(format!("build-{name}-{seed}"));
        std::fs::create_dir_all(&ctx).unwrap();
        let mut noise = vec![0u8; 3 << 20];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut noise))
            .unwrap();
        std::fs::write(ctx.join("noise.bin"), noise).unwrap();
        std::fs::write(
            ctx.join("Containerfile"),
            format!("FROM {base}\nCOPY noise.bin /noise.bin\n"),
        )
        .unwrap();
        let local = format!("localhost/registry-up-e2e-src/{name}:{}-{seed}", std::process::id());
        let _gone_even_if_this_fails = common::ImageNames(vec![local.clone()]);
        let out = podman(&["build", "-q", "--pull=never", "-t", &local, &ctx.display().to_string()]);
        assert!(out.status.success(), "podman build: {}", text(&out.stderr));
        skopeo_ok(&[
            "copy",
            "-q",
            "--dest-cert-dir",
            &self.app.config_dir().display().to_string(),
            &format!("containers-storage:{local}"),
            &format!("docker://{}", self.image(name)),
        ]);
        assert!(podman(&["rmi", &local]).status.success());
    }
}

fn started_at(app: &Appliance) -> (String, String) {
    let at = |c: &str| app.inspect(&app.container(c), "{{.State.StartedAt}}");
    (at("registry"), at("nginx"))
}

#[test]
fn up_pulls_missing_images_once_and_always_pulls_without_a_needless_restart() {
    let source = Source::new();
    let (registry, nginx) = (source.image("registry"), source.image("nginx"));
    // Dropped after the target appliance: the names (and the image a re-pull leaves without a name) go
    // once no pod uses them.
    let mut pulled = common::ImageNames(vec![registry.clone(), nginx.clone()]);
    let target = Appliance::new();
    for image in [&registry, &nginx] {
        assert!(
            !podman(&["image", "exists", image]).status.success(),
            "{image} is not pulled yet"
        );
    }
    let mut args = target.base_args();
    args.extend(strings(&["--registry-image", &registry, "--nginx-image", &nginx]));

    // A dry run says what it would pull, and pulls nothing.
    let mut dry = args.clone();
    dry.push("--dry-run".into());
    let out = registry_up(&dry);
    assert_success(&out);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("pull      {registry} (--pull missing)")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("pull      {nginx} (--pull missing)")),
        "{stdout}"
    );
    assert!(!podman(&["image", "exists", &registry]).status.success());

    let out = registry_up(&args);
    assert_success(&out);
    let stdout = text(&out.stdout);
    for image in [&registry, &nginx] {
        // Without a terminal: one line when the pull starts, one with bytes and rate when it ends.
        assert!(stdout.contains(&format!("...  pull {image}\n")), "{stdout}");
        let done = stdout
            .lines()
            .find(|l| l.starts_with(&format!("ok   pull {image}: ")))
            .unwrap_or_else(|| panic!("no pull line for {image}: {stdout}"));
        assert!(done.contains(" MiB in ") && done.contains("/s)"), "{done}");
        assert!(podman(&["image", "exists", image]).status.success());
    }
    assert!(stdout.contains("ok   verify push/pull"), "{stdout}");

    // A re-run pulls nothing and leaves the pod alone.
    let before = started_at(&target);
    let out = registry_up(&args);
    assert_success(&out);
    let stdout = text(&out.stdout);
    assert!(
        !stdout.contains("ok   pull ") && !stdout.contains("...  pull "),
        "{stdout}"
    );
    assert_eq!(started_at(&target), before);

    // --pull always pulls both again; the digests did not change, so the pod keeps running.
    let mut always = args.clone();
    always.extend(strings(&["--pull", "always"]));
    let out = registry_up(&always);
    assert_success(&out);
    let stdout = text(&out.stdout);
    for image in [&registry, &nginx] {
        assert!(stdout.contains(&format!("ok   pull {image}: ")), "{stdout}");
    }
    assert_eq!(started_at(&target), before, "same images: no restart");

    // New content under the same name: --pull always replaces the running container.
    source.publish(common::REGISTRY_IMAGE, "registry", 3);
    let image_before = target.inspect(&target.container("registry"), "{{.Image}}");
    pulled.0.push(image_before.clone());
    let out = registry_up(&always);
    assert_success(&out);
    assert_ne!(
        target.inspect(&target.container("registry"), "{{.Image}}"),
        image_before,
        "the registry runs the image pulled anew"
    );
}

#[test]
fn pull_never_with_a_missing_image_exits_2_and_writes_nothing() {
    let app = Appliance::new();
    let mut args = app.base_args();
    args.extend(strings(&[
        "--registry-image",
        "localhost/registry-up-test/absent:1",
        "--nginx-image",
        common::NGINX_IMAGE,
        "--image-archive",
        &common::image_archives()[1].display().to_string(),
        "--pull",
        "never",
    ]));
    let out = registry_up(&args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr
            .contains("The image localhost/registry-up-test/absent:1 is not in Podman's image store, and --pull never"),
        "{stderr}"
    );
    assert!(stderr.contains("--image-archive"), "{stderr}");
    assert!(!app.config_dir().exists(), "nothing written");
    assert!(!app.pod_exists());
}

#[test]
fn a_registry_that_never_answers_stops_the_pull_at_the_timeout_with_the_way_out() {
    // Accepts connections and never says a word.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let app = Appliance::new();
    let image = format!("127.0.0.1:{port}/silent/registry:1");
    let mut args = app.base_args();
    args.extend(strings(&[
        "--registry-image",
        &image,
        "--nginx-image",
        common::NGINX_IMAGE,
        "--image-archive",
        &common::image_archives()[1].display().to_string(),
        "--pull-timeout",
        "3",
    ]));
    let start = Instant::now();
    let child = common::command(common::BIN)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let took = start.elapsed();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(
        stderr.contains(&format!(
            "The image {image} is not in Podman's image store and could not be pulled"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("stopped after 3 s without progress (--pull-timeout); nothing came"),
        "{stderr}"
    );
    assert!(stderr.contains("--image-archive"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!app.config_dir().exists(), "nothing written");
    assert!(!app.pod_exists());
    let leftover = Command::new("pgrep")
        .args(["-f", &format!("podman pull {image}")])
        .output()
        .unwrap();
    assert!(text(&leftover.stdout).trim().is_empty(), "the pull was stopped");
    let temp: Vec<_> = std::fs::read_dir("/var/tmp")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("registry-up-pull-{pid}-"))
        })
        .collect();
    assert!(temp.is_empty(), "the pull's temporary folder is removed: {temp:?}");
}

/// `registry-up logs ARGS` for the appliance.
fn logs(app: &Appliance, args: &[&str]) -> Output {
    common::command(common::BIN)
        .arg("logs")
        .args(args)
        .arg("--config-dir")
        .arg(app.config_dir())
        .output()
        .unwrap()
}

#[test]
fn logs_interleave_both_containers_in_time_order_and_follow_ends_on_ctrl_c() {
    let app = Appliance::new();
    app.up(&[]); // its verify leaves lines in both containers' logs

    let out = logs(&app, &[]);
    assert_success(&out);
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    // Each container's own lines: the registry's and nginx's records of the verify's requests.
    assert!(
        lines.iter().any(|l| l.starts_with("registry | ") && l.contains("/v2/")),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("nginx    | ") && l.contains("\"GET /v2/")),
        "{stdout}"
    );
    assert!(!stdout.contains(" 1970-"), "only lines with their own time: {stdout}");
    // The time after the name, in order across both containers.
    let stamps: Vec<&str> = lines
        .iter()
        .map(|l| l.split(" | ").nth(1).unwrap().split(' ').next().unwrap())
        .collect();
    let mut sorted = stamps.clone();
    sorted.sort();
    assert_eq!(stamps, sorted, "{stdout}");

    let only = text(&logs(&app, &["nginx"]).stdout);
    assert!(
        !only.is_empty() && only.lines().all(|l| l.starts_with("nginx | ")),
        "{only}"
    );
    assert!(only.contains("\"GET /v2/"), "{only}");
    let recent = logs(&app, &["--since", "1h"]);
    assert_success(&recent);
    assert!(!text(&recent.stdout).is_empty());
    let bad = logs(&app, &["--since", "yesterday"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("--since 'yesterday' is neither a duration"),
        "{}",
        text(&bad.stderr)
    );

    // --follow prints new lines as they come, and Ctrl-C ends it with exit 0.
    let mut child = common::command(common::BIN)
        .args(["logs", "--follow", "--config-dir"])
        .arg(app.config_dir())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let marker = format!("/v2/followed-{}/tags/list", std::process::id());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = false;
    let mut asked = false;
    while Instant::now() < deadline && !seen {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
            seen = line.starts_with("nginx    | ") && line.contains(&marker);
        } else if !asked {
            // The backlog is out: make a new line.
            Command::new("curl")
                .args(["-s", "-o", "/dev/null", "--cacert"])
                .arg(app.config_dir().join("ca.crt"))
                .arg(format!("https://{}{marker}", app.registry()))
                .status()
                .unwrap();
            asked = true;
        }
    }
    assert!(seen, "a new request's line reached the follower");
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "logs --follow did not end on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "Ctrl-C ends a follow with exit 0");
    std::thread::sleep(Duration::from_millis(300));
    let leftover = Command::new("pgrep")
        .args(["-f", &format!("logs -t -f {}", app.container(""))])
        .output()
        .unwrap();
    assert!(
        text(&leftover.stdout).trim().is_empty(),
        "the podman logs children ended too"
    );
}
