//! `registry-up gc` end to end on the real pod (issue 12): what the dry run predicts is what goes, every tag
//! (every platform of an index) still pulls with skopeo, pulls go on during gc while pushes get a clear
//! error, and a gc killed at any moment is made whole by the next run.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{skopeo, skopeo_copy, text, Appliance, Run};

/// An OCI image layout in `dir` with one layer of `size` fresh random bytes: content no other image shares.
fn random_image(dir: &Path, size: usize) -> PathBuf {
    common::oci_layout(dir, &common::random_bytes(size))
}

/// The bytes of every file below `dir` (links not followed): an independent measure of what is stored.
fn stored(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let t = entry.file_type().unwrap();
            if t.is_dir() {
                stack.push(entry.path());
            } else if t.is_file() {
                total += entry.metadata().unwrap().len();
            }
        }
    }
    total
}

fn digest_of(app: &Appliance, image: &str, extra: &[&str]) -> String {
    let cert_dir = app.config_dir().display().to_string();
    let mut args = vec!["inspect", "--cert-dir", &cert_dir, "--format", "{{.Digest}}"];
    args.extend_from_slice(extra);
    let reference = app.reference(image);
    args.push(&reference);
    let out = skopeo(&args);
    assert!(out.status.success(), "{image}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

fn gc(app: &Appliance, args: &[&str]) -> Run {
    Run::bin().arg("gc").args(args).config_dir(app.config_dir())
}

/// `registry-up gc` started in the background, its standard output piped or dropped.
fn spawn_gc(app: &Appliance, stdout: Stdio) -> std::process::Child {
    gc(app, &[])
        .command()
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A number after `word` and before " bytes" in `said`: `(12345 bytes`.
fn bytes_after(said: &str, word: &str) -> u64 {
    let rest = &said[said.find(word).unwrap_or_else(|| panic!("no {word:?} in:\n{said}")) + word.len()..];
    let open = rest.find('(').unwrap();
    rest[open + 1..].split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn gc_frees_what_the_dry_run_predicts_and_every_tag_and_platform_still_pulls() {
    let Some(app) = common::serving(&["--no-verify"]) else {
        return;
    };
    let [registry_tar, nginx_tar] = common::image_archives();
    let work = tempfile::tempdir().unwrap();
    let cert_dir = app.config_dir();
    let oci = |dir: &Path| format!("oci:{}", dir.display());

    // Kept: one image under two tags, a multi-platform index, and the image a moved tag points at now.
    let a1 = app.push(nginx_tar, "team/a:1", None);
    let a2 = app.push(nginx_tar, "team/a:2", None);
    app.push_index(nginx_tar, registry_tar, "team/multi:1", None);
    let multi = app.raw_digest("team/multi:1");
    let amd64 = digest_of(&app, "team/multi:1", &["--override-arch", "amd64"]);
    let arm64 = digest_of(&app, "team/multi:1", &["--override-arch", "arm64"]);
    // Garbage: the image a tag pointed at before it moved, and an image whose only tag was deleted.
    let old = skopeo_copy(
        &oci(&random_image(&work.path().join("old"), 2 << 20)),
        &app.reference("team/c:1"),
        &cert_dir,
        None,
    );
    let new = skopeo_copy(
        &oci(&random_image(&work.path().join("new"), 1 << 20)),
        &app.reference("team/c:1"),
        &cert_dir,
        None,
    );
    let gone_image = random_image(&work.path().join("gone"), 1 << 20);
    let gone = skopeo_copy(&oci(&gone_image), &app.reference("team/b:1"), &cert_dir, None);
    // The same image as team/a under another name, deleted there: its blobs stay, team/a needs them.
    app.push(nginx_tar, "team/d:1", None);
    for image in ["team/b:1", "team/d:1"] {
        let cert = cert_dir.display().to_string();
        let out = skopeo(&["delete", "--cert-dir", &cert, &app.reference(image)]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }

    let before = stored(&app.data_dir());
    let dry = gc(&app, &["--dry-run"]).stdout_has("Nothing was changed").run();
    let said = text(&dry.stdout);
    let predicted = bytes_after(&said, "gc would free");
    assert!(predicted > 3 << 20, "the two random images at least: {said}");
    assert!(said.contains(&format!("team/c@{old}")), "{said}");
    assert_eq!(stored(&app.data_dir()), before, "a dry run changes nothing");

    let run = gc(&app, &[]).stdout_has("PASS deep").stdout_has("gc freed").run();
    let said = text(&run.stdout);
    assert_eq!(
        bytes_after(&said, "gc freed"),
        predicted,
        "the run frees what the dry run said:\n{said}"
    );
    // Measured independently: less only by the link files verify's own round trip leaves afterwards.
    let freed = before - stored(&app.data_dir());
    assert!(predicted.abs_diff(freed) < 4096, "predicted {predicted}, freed {freed}");

    // Every kept tag pulls with the digest it was pushed with; every platform of the index too.
    for (image, digest) in [("team/a:1", &a1), ("team/a:2", &a2), ("team/c:1", &new)] {
        let dest = format!("dir:{}", work.path().join(image.replace([':', '/'], "-")).display());
        assert_eq!(
            &skopeo_copy(&app.reference(image), &dest, &cert_dir, None),
            digest,
            "{image}"
        );
    }
    assert_eq!(app.raw_digest("team/multi:1"), multi);
    for (arch, digest) in [("amd64", &amd64), ("arm64", &arm64)] {
        let dest = format!("dir:{}", work.path().join(format!("multi-{arch}")).display());
        let out = skopeo(&[
            "copy",
            "-q",
            "--override-arch",
            arch,
            "--src-cert-dir",
            &cert_dir.display().to_string(),
            &app.reference("team/multi:1"),
            &dest,
        ]);
        assert!(out.status.success(), "{arch}: {}", text(&out.stderr));
        assert_eq!(&digest_of(&app, "team/multi:1", &["--override-arch", arch]), digest);
    }
    // The garbage is gone from the API too.
    let by_digest = format!("docker://{}/team/c@{old}", app.registry());
    assert!(!skopeo(&[
        "inspect",
        "--raw",
        "--cert-dir",
        &cert_dir.display().to_string(),
        &by_digest
    ])
    .status
    .success());

    // The deleted image pushed again after gc: it uploads its blobs again and pulls (no stale cache).
    assert_eq!(
        skopeo_copy(&oci(&gone_image), &app.reference("team/b:1"), &cert_dir, None),
        gone
    );
    let dest = format!("dir:{}", work.path().join("again").display());
    assert_eq!(skopeo_copy(&app.reference("team/b:1"), &dest, &cert_dir, None), gone);
    // A second gc finds nothing more to free.
    let said = text(&gc(&app, &["--dry-run"]).run().stdout);
    assert!(
        said.contains("0 blobs") && said.contains(" 0 untagged manifests"),
        "{said}"
    );
}

/// Runs gc and stops it (SIGSTOP) right after it said the appliance is read-only; None when it got past
/// read-write before it could be stopped.
fn gc_stopped_read_only(app: &Appliance) -> Option<std::process::Child> {
    let mut child = spawn_gc(app, Stdio::piped());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().starts_with("ok   read-only") {
            unsafe { libc::kill(child.id() as i32, libc::SIGSTOP) };
            break;
        }
    }
    let conf = std::fs::read_to_string(app.config_dir().join("nginx/registry.conf")).unwrap();
    if conf.contains("# registry-up read-only: gc") {
        // Keep reading its output in the background, so that it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Some(child)
    } else {
        unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
        let _ = child.wait();
        None
    }
}

#[test]
fn pulls_go_on_during_gc_and_a_push_gets_a_clear_error() {
    let Some(app) = common::serving(&["--no-verify"]) else {
        return;
    };
    let [_, nginx_tar] = common::image_archives();
    let digest = app.push(nginx_tar, "busy/nginx:1", None);
    let stop = AtomicBool::new(false);
    let (pulls, failures) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let work = tempfile::tempdir().unwrap();
            while !stop.load(Ordering::SeqCst) {
                // A whole pull, layers and all, into a fresh folder each time.
                let n = pulls.fetch_add(1, Ordering::SeqCst);
                let dest = work.path().join(format!("pull-{n}"));
                let out = common::command("skopeo")
                    .args(["copy", "-q", "--src-cert-dir"])
                    .arg(app.config_dir())
                    .arg("--digestfile")
                    .arg(work.path().join("digest"))
                    .arg(app.reference("busy/nginx:1"))
                    .arg(format!("dir:{}", dest.display()))
                    .output()
                    .unwrap();
                let pulled = std::fs::read_to_string(work.path().join("digest")).unwrap_or_default();
                if !out.status.success() || pulled.trim() != digest {
                    failures.fetch_add(1, Ordering::SeqCst);
                    eprintln!("pull failed during gc: {}", text(&out.stderr));
                }
                let _ = std::fs::remove_dir_all(dest);
            }
        });
        // Held read-only: a push is refused, saying why.
        let mut held = None;
        for _ in 0..3 {
            held = gc_stopped_read_only(&app);
            if held.is_some() {
                break;
            }
        }
        let mut child = held.expect("gc was caught while read-only in three tries");
        app.assert_push_refused(
            nginx_tar,
            "busy/new:1",
            "read-only while registry-up gc collects garbage",
        );
        unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
        assert!(child.wait().unwrap().success(), "gc ends well once let go on");
        // A whole gc, with both nginx reloads, under the pull loop.
        gc(&app, &[]).run();
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
    });
    assert!(pulls.load(Ordering::SeqCst) >= 5, "the pull loop ran");
    assert_eq!(failures.load(Ordering::SeqCst), 0, "no pull failed during gc");
    // And writes pass again.
    app.push(nginx_tar, "busy/after:1", None);
}

#[test]
fn a_gc_killed_at_any_moment_is_made_whole_by_the_next_run() {
    let Some(app) = common::serving(&["--no-verify"]) else {
        return;
    };
    let [_, nginx_tar] = common::image_archives();
    let work = tempfile::tempdir().unwrap();
    let kept = app.push(nginx_tar, "keep/nginx:1", None);
    for (i, delay_ms) in [0u64, 100, 250, 500, 800].into_iter().enumerate() {
        // Fresh garbage each time: an image whose tag then moves.
        let image = random_image(&work.path().join(format!("g{i}")), 256 << 10);
        skopeo_copy(
            &format!("oci:{}", image.display()),
            &app.reference("churn/x:1"),
            &app.config_dir(),
            None,
        );
        app.push(nginx_tar, "churn/x:1", None);
        let mut child = spawn_gc(&app, Stdio::null());
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // Whatever it left, the next gc (or up, the last time) brings back read-write, with nothing lost.
        if i == 4 {
            Run::up(&app).args(["--no-verify"]).run();
        } else {
            gc(&app, &[]).stdout_has("PASS deep").run();
        }
        let conf = std::fs::read_to_string(app.config_dir().join("nginx/registry.conf")).unwrap();
        assert!(
            !conf.contains("# registry-up read-only"),
            "read-only after kill at {delay_ms} ms"
        );
        assert_eq!(digest_of(&app, "keep/nginx:1", &[]), kept);
        app.push(nginx_tar, &format!("after/kill:{i}"), None);
    }
    // Killed while read-only (caught there, then SIGKILL): pushes are refused with the reason, status says
    // so, and up lets writes in again.
    let mut held = (0..3)
        .find_map(|_| gc_stopped_read_only(&app))
        .expect("gc caught while read-only");
    unsafe { libc::kill(held.id() as i32, libc::SIGKILL) };
    let _ = held.wait();
    app.assert_push_refused(nginx_tar, "after/killed:1", "read-only while registry-up gc");
    Run::bin()
        .arg("status")
        .config_dir(app.config_dir())
        .code(1)
        .stdout_has("a registry-up gc or backup is running, or was interrupted")
        .run();
    Run::up(&app)
        .args(["--no-verify"])
        .stdout_has("ok   end an interrupted gc")
        .run();
    app.push(nginx_tar, "after/killed:1", None);
    assert_eq!(digest_of(&app, "keep/nginx:1", &[]), kept);
    Run::bin()
        .args(["verify", "--deep"])
        .config_dir(app.config_dir())
        .stdout_has("PASS deep")
        .run();
}

#[test]
fn gc_without_a_running_pod_says_to_start_it_and_changes_nothing() {
    let Some(app) = common::serving(&["--no-verify"]) else {
        return;
    };
    Run::bin().arg("down").config_dir(app.config_dir()).run();
    let before = common::mtimes(&app.config_dir());
    gc(&app, &[])
        .code(2)
        .stderr_has(format!("The pod {} is not running", app.pod))
        .stderr_has("registry-up up")
        .run();
    assert_eq!(common::mtimes(&app.config_dir()), before, "nothing was written");
    let empty = tempfile::tempdir().unwrap();
    Run::bin()
        .arg("gc")
        .config_dir(empty.path())
        .code(4)
        .stderr_has("No appliance is installed")
        .run();
}

/// Writes `mib` MiB of zeros to `path` (a filler that takes the disk's space; not registry content).
fn fill(path: &Path, mib: usize) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        f.write_all(&block).unwrap();
    }
    f.sync_all().unwrap();
}

#[test]
fn above_the_critical_watermark_maintenance_makes_it_read_only_until_space_is_freed() {
    let Some(app) = Appliance::e2e() else { return };
    let disk = common::SmallDisk::mount(app, 2048);
    let app = &disk.app;
    let [_, nginx_tar] = common::image_archives();
    Run::up(app).args(["--disk-high", "50", "--disk-critical", "80"]).run();
    let kept = app.push(nginx_tar, "keep/nginx:1", None);
    let (filler, more) = (app.data_dir().join("filler"), app.data_dir().join("filler-2"));

    // Above the high watermark: verify warns, status says so.
    fill(&filler, 1200);
    let (code, report) = common::verify_json(app, &[]);
    assert_eq!(code, 0, "{report:#}");
    common::assert_check(&report, "storage", "warn", &["at or above the high watermark of 50 %"]);
    Run::bin()
        .arg("status")
        .config_dir(app.config_dir())
        .stdout_has("(above the high watermark: free space soon)")
        .run();

    // Above the critical one: the maintenance run makes it read-only; pulls work, pushes say why.
    fill(&more, 500);
    Run::bin()
        .arg("maintain")
        .config_dir(app.config_dir())
        .code(1)
        .stdout_has("at or above the critical watermark of 80 %")
        .run();
    app.assert_push_refused(nginx_tar, "more/nginx:1", "above its critical watermark");
    assert_eq!(digest_of(app, "keep/nginx:1", &[]), kept, "pulls go on");
    Run::bin()
        .arg("status")
        .config_dir(app.config_dir())
        .code(1)
        .stdout_has("read-only: the maintenance run found the disk above its critical watermark")
        .run();

    // gc by hand leaves that read-only as it found it.
    // (Its verify fails: its own round trip cannot push either, which is the truth about the appliance.)
    gc(app, &[])
        .code(1)
        .stdout_has("ok   back to disk-full read-only")
        .stdout_has("above its critical watermark")
        .run();
    app.assert_push_refused(nginx_tar, "more/nginx:1", "above its critical watermark");

    // Space freed: the next run lets writes in again.
    std::fs::remove_file(&filler).unwrap();
    std::fs::remove_file(&more).unwrap();
    Run::bin()
        .arg("maintain")
        .config_dir(app.config_dir())
        .stdout_has("read-write again")
        .run();
    app.push(nginx_tar, "more/nginx:1", None);
}

#[test]
fn a_maintenance_timer_without_systemd_is_refused_before_anything_is_written() {
    let Some(app) = Appliance::e2e() else { return };
    Run::up(&app)
        .args(["--maintenance", "daily"])
        .code(2)
        .stderr_has("--maintenance installs a systemd timer")
        .stderr_has("registry-up maintain from cron")
        .run();
    assert!(!app.config_dir().exists(), "nothing is written");
}
