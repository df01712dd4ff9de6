//! `registry-up backup` and `restore` end to end (issue 12): a backup taken read-only, the appliance
//! purged, restored from a full and an incremental backup, every tag back with its digest; a damaged
//! backup (a member or the manifest) refused before anything is written.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{text, Appliance, Run};

fn on(app: &Appliance, args: &[&str]) -> Run {
    Run::bin().args(args).config_dir(app.config_dir())
}

/// Runs `run` while a thread notes the mode of the data folder and of every staging folder of a restore
/// (in the data folder and beside the config folder), each time it changes.
fn modes_while(app: &Appliance, run: impl FnOnce()) -> Vec<(std::path::PathBuf, u32)> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (data, parent) = (app.data_dir(), app.config_dir().parent().unwrap().to_path_buf());
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen: Vec<(std::path::PathBuf, u32)> = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let staging = [&data, &parent]
                    .into_iter()
                    .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
                    .map(|e| e.path())
                    .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".restore."));
                for path in std::iter::once(data.clone()).chain(staging) {
                    if let Ok(m) = std::fs::metadata(&path) {
                        let mode = m.permissions().mode() & 0o777;
                        if !seen.contains(&(path.clone(), mode)) {
                            seen.push((path, mode));
                        }
                    }
                }
            }
            seen
        })
    };
    run();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.join().unwrap()
}

/// The names of the members of a backup that hold registry blobs.
fn blob_members(backup: &Path) -> usize {
    let out = std::process::Command::new("tar")
        .arg("-tf")
        .arg(backup)
        .output()
        .unwrap();
    text(&out.stdout)
        .lines()
        .filter(|l| l.contains("/blobs/sha256/") && l.ends_with("/data"))
        .count()
}

#[test]
fn a_purged_appliance_comes_back_from_its_backups_with_every_digest_and_a_damaged_one_is_refused() {
    let Some(app) = common::serving(&["--no-verify"]) else {
        return;
    };
    let [registry_tar, nginx_tar] = common::image_archives();
    let work = tempfile::tempdir().unwrap();
    app.push(nginx_tar, "keep/nginx:1", None);
    app.push(registry_tar, "keep/registry:1", None);
    app.push_index(nginx_tar, registry_tar, "keep/multi:1", None);

    // --out inside the folders it copies is refused by real path: through `..`, and through a link.
    let app_folder = app.config_dir().parent().unwrap().to_path_buf();
    let sneaky = work
        .path()
        .join("..")
        .join(app_folder.strip_prefix(work.path().parent().unwrap()).unwrap())
        .join("config/b.tar");
    let link = work.path().join("link");
    std::os::unix::fs::symlink(app.config_dir(), &link).unwrap();
    for out in [sneaky, link.join("b.tar")] {
        on(&app, &["backup", "--out", &out.display().to_string()])
            .code(2)
            .stderr_has("which the backup copies")
            .run();
    }
    assert!(!app.config_dir().join("b.tar").exists());
    // What a killed backup left (its process gone) is removed by the next one; a stranger's file stays.
    let stale = work.path().join(".full.tar.999999999.tmp");
    std::fs::write(&stale, "secrets").unwrap();
    std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o600)).unwrap();
    let other = work.path().join(".notes.999999999.tmp");
    std::fs::write(&other, "an admin's").unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();

    let full = work.path().join("full.tar");
    on(&app, &["backup", "--out", &full.display().to_string()])
        .stdout_has("ok   read-only")
        .stdout_has("it is written 0600")
        .run();
    assert_eq!(std::fs::metadata(&full).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!stale.exists(), "a killed backup's temp file was left");
    assert!(other.exists());
    on(&app, &["status"]).stdout_has("healthy").run();

    // One image more, then an incremental backup: it holds that image's blobs and no other.
    let image = common::oci_layout(&work.path().join("more"), &common::random_bytes(1 << 20));
    common::skopeo_copy(
        &format!("oci:{}", image.display()),
        &app.reference("keep/more:1"),
        &app.config_dir(),
        None,
    );
    let inc = work.path().join("inc.tar");
    on(
        &app,
        &[
            "backup",
            "--out",
            &inc.display().to_string(),
            "--since",
            &full.display().to_string(),
        ],
    )
    .stdout_has("blobs left to its base")
    .run();
    assert_eq!(blob_members(&inc), 3, "the new image's manifest, config and layer only");
    assert!(blob_members(&full) > 3);

    let tags = ["keep/nginx:1", "keep/registry:1", "keep/multi:1", "keep/more:1"];
    let digests: Vec<String> = tags.iter().map(|t| app.raw_digest(t)).collect();
    let (code, before) = common::verify_json(&app, &["--deep"]);
    assert_eq!(code, 0, "{before:#}");
    assert_eq!(before["deep"]["tags"], 4, "{before:#}");

    // Never over an existing file (above all not over the base).
    on(
        &app,
        &[
            "backup",
            "--out",
            &full.display().to_string(),
            "--since",
            &full.display().to_string(),
        ],
    )
    .code(2)
    .stderr_has("exists already")
    .run();

    // A flipped byte in the manifest (the CA key's mode, 0600 = 384, made 386): refused too.
    let bytes = std::fs::read(&full).unwrap();
    // The manifest is the last member but its checksum: the last "mode": 384 is in it.
    let pattern = b"\"mode\": 384";
    let manifest_at = bytes
        .windows(pattern.len())
        .rposition(|w| w == pattern)
        .expect("a 0600 file");
    let mut flipped = bytes.clone();
    flipped[manifest_at + 10] = b'6';
    let bad_manifest = work.path().join("bad-manifest.tar");
    std::fs::write(&bad_manifest, flipped).unwrap();
    let elsewhere = work.path().join("elsewhere");
    Run::bin()
        .args(["restore", &bad_manifest.display().to_string(), "--data-dir"])
        .arg(work.path().join("elsewhere-data"))
        .config_dir(&elsewhere)
        .code(2)
        .stderr_has("registry-up-backup.json does not match its checksum")
        .run();

    // A flipped byte: refused with exit 2, and nothing written anywhere.
    let damaged = work.path().join("damaged.tar");
    let mut bytes = std::fs::read(&full).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&damaged, bytes).unwrap();
    Run::bin()
        .args(["restore", &damaged.display().to_string(), "--data-dir"])
        .arg(work.path().join("elsewhere-data"))
        .config_dir(&elsewhere)
        .code(2)
        .stderr_has("is damaged")
        .stderr_has("Nothing was changed")
        .run();
    assert!(
        !elsewhere.exists() && !work.path().join("elsewhere-data").exists(),
        "nothing is written"
    );

    // Where the data goes is the command line's (or this host's default), never the backup's: a restore
    // that names no --data-dir is refused (the backup was taken of another folder than the default), and
    // touches nothing in the folder the backup was taken of (a release before cleared its `.restore.*`
    // there, even when the restore was then refused).
    let keep = app.data_dir().join(".restore.keepme");
    std::fs::create_dir(&keep).unwrap();
    std::fs::write(keep.join("notes"), "an admin's").unwrap();
    Run::bin()
        .args(["restore", &full.display().to_string()])
        .config_dir(work.path().join("second"))
        .code(2)
        .stderr_has("give --data-dir")
        .run();
    assert!(
        keep.join("notes").exists(),
        "a refused restore deleted {}",
        keep.display()
    );
    std::fs::remove_dir_all(&keep).unwrap();

    // Gone, then back from the incremental backup and its base.
    on(&app, &["down", "--purge", "--yes"]).run();
    assert!(!app.config_dir().join("state.json").exists());
    on(&app, &["restore", &inc.display().to_string()])
        .code(2)
        .stderr_has("--base")
        .run();
    // Watched while it runs: the data folder and both staging folders are closed (0700) from the first
    // byte, so no other user can change a layer between its checksum and the end of the restore.
    let watched = modes_while(&app, || {
        on(
            &app,
            &[
                "restore",
                &inc.display().to_string(),
                "--base",
                &full.display().to_string(),
                "--data-dir",
                &app.data_dir().display().to_string(),
            ],
        )
        .stdout_has("PASS deep")
        // Proven against what the registry served when the incremental backup was taken.
        .stdout_has("PASS inventory")
        .stdout_has(format!("all {} tags of the inventory taken", tags.len()))
        .run();
    });
    assert!(
        watched
            .iter()
            .any(|(path, _)| path.file_name().unwrap().to_string_lossy().contains(".restore.")),
        "the watcher saw no staging folder: {watched:?}"
    );
    let open: Vec<_> = watched.iter().filter(|(_, mode)| mode & 0o077 != 0).collect();
    assert!(open.is_empty(), "reachable by other users during the restore: {open:?}");
    let after: Vec<String> = tags.iter().map(|t| app.raw_digest(t)).collect();
    let key = app.config_dir().join("ca/ca.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600,
        "the CA key stays 0600"
    );
    assert_eq!(after, digests, "every tag has its digest again");
    let (code, restored) = common::verify_json(&app, &["--deep"]);
    assert_eq!(code, 0, "{restored:#}");
    for key in ["repositories", "tags", "manifests", "blobs"] {
        assert_eq!(restored["deep"][key], before["deep"][key], "{key}: {restored:#}");
    }
    // A second restore over the living appliance is refused.
    on(&app, &["restore", &full.display().to_string()])
        .code(2)
        .stderr_has("An appliance is installed")
        .run();
}
