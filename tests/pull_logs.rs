//! First contact on a connected host: `up` pulls what is missing (from a registry on loopback that holds
//! the stand-in images), a pull that cannot finish stops the run before anything is written, and
//! `registry-up logs` answers "what happened?" for both containers.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{podman, serving, text, Appliance, Run};

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
        common::skopeo_copy(
            &format!("containers-storage:{local}"),
            &format!("docker://{}", self.image(name)),
            &self.app.config_dir(),
            None,
        );
        assert!(podman(&["rmi", &local]).status.success());
    }
}

#[test]
fn up_pulls_missing_images_once_and_always_pulls_without_a_needless_restart() {
    if !common::e2e() {
        return;
    }
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
    let up = || {
        Run::bin()
            .args(target.base_args())
            .args(["--registry-image", &registry, "--nginx-image", &nginx])
    };

    // A dry run says what it would pull, and pulls nothing.
    up().arg("--dry-run")
        .stdout_has(format!("pull      {registry} (--pull missing)"))
        .stdout_has(format!("pull      {nginx} (--pull missing)"))
        .run();
    assert!(!podman(&["image", "exists", &registry]).status.success());

    let out = up().run();
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
    let before = target.started_at();
    let out = up().run();
    let stdout = text(&out.stdout);
    assert!(
        !stdout.contains("ok   pull ") && !stdout.contains("...  pull "),
        "{stdout}"
    );
    assert_eq!(target.started_at(), before);

    // --pull always pulls both again; the digests did not change, so the pod keeps running.
    up().args(["--pull", "always"])
        .stdout_has(format!("ok   pull {registry}: "))
        .stdout_has(format!("ok   pull {nginx}: "))
        .run();
    assert_eq!(target.started_at(), before, "same images: no restart");

    // New content under the same name: --pull always replaces the running container.
    source.publish(common::REGISTRY_IMAGE, "registry", 3);
    let image_before = target.inspect(&target.container("registry"), "{{.Image}}");
    pulled.0.push(image_before.clone());
    up().args(["--pull", "always"]).run();
    assert_ne!(
        target.inspect(&target.container("registry"), "{{.Image}}"),
        image_before,
        "the registry runs the image pulled anew"
    );
}

/// `registry-up` for `app` with `registry` as the registry image, loading only the nginx stand-in.
fn with_registry_image(app: &Appliance, registry: &str) -> Run {
    Run::bin().args(app.base_args()).args([
        "--registry-image",
        registry,
        "--nginx-image",
        common::NGINX_IMAGE,
        "--image-archive",
        &common::image_archives()[1].display().to_string(),
    ])
}

#[test]
fn pull_never_with_a_missing_image_exits_2_and_writes_nothing() {
    let Some(app) = Appliance::e2e() else { return };
    with_registry_image(&app, "localhost/registry-up-test/absent:1")
        .args(["--pull", "never"])
        .code(2)
        .stderr_has("The image localhost/registry-up-test/absent:1 is not in Podman's image store, and --pull never")
        .stderr_has("--image-archive")
        .run();
    assert!(!app.config_dir().exists(), "nothing written");
    assert!(!app.pod_exists());
}

#[test]
fn a_registry_that_never_answers_stops_the_pull_at_the_timeout_with_the_way_out() {
    if !common::e2e() {
        return;
    }
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
    let run = with_registry_image(&app, &image)
        .args(["--pull-timeout", "3"])
        .code(2)
        .stderr_has(format!(
            "The image {image} is not in Podman's image store and could not be pulled"
        ))
        .stderr_has("stopped after 3 s without progress (--pull-timeout); nothing came")
        .stderr_has("--image-archive");
    let start = Instant::now();
    // Spawned, for its PID (the name of its temporary folder).
    let child = run
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let took = start.elapsed();
    run.check(&out);
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let stderr = text(&out.stderr);
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
fn logs(app: &Appliance, args: &[&str]) -> Run {
    Run::bin().arg("logs").args(args).config_dir(app.config_dir())
}

#[test]
fn logs_interleave_both_containers_in_time_order_and_follow_ends_on_ctrl_c() {
    let Some(app) = serving(&[]) else { return }; // its verify leaves lines in both containers' logs

    let out = logs(&app, &[]).run();
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

    let only = text(&logs(&app, &["nginx"]).output().stdout);
    assert!(
        !only.is_empty() && only.lines().all(|l| l.starts_with("nginx | ")),
        "{only}"
    );
    assert!(only.contains("\"GET /v2/"), "{only}");
    let recent = logs(&app, &["--since", "1h"]).run();
    assert!(!text(&recent.stdout).is_empty());
    logs(&app, &["--since", "yesterday"])
        .code(2)
        .stderr_has("--since 'yesterday' is neither a duration")
        .run();

    // --follow prints new lines as they come, and Ctrl-C ends it with exit 0.
    let mut child = logs(&app, &["--follow"])
        .command()
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
