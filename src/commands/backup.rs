//! `registry-up backup` and `registry-up restore`: a consistent copy of the appliance, taken read-only
//! (pulls go on), checked whole before anything is laid down, and brought up again from it.

use std::path::{Path, PathBuf};

use crate::backup::{self, Checked};
use crate::cli::{BackupArgs, PullPolicy, RestoreArgs, UpArgs};
use crate::error::{Error, ExitStatus, Result};
use crate::host::HostFacts;
use crate::layout;
use crate::render::ReadOnly;

pub fn backup(args: &BackupArgs, rt: &tokio::runtime::Runtime, host: &HostFacts) -> Result<()> {
    let dir = &args.appliance.config_dir;
    let _lock = crate::lock::ApplianceLock::take(dir, host, crate::lock::WAIT)?;
    let (settings, data_dir) = super::gc::installed(dir, host, "backup")?;
    let out = absolute(&args.out)?;
    // A backup inside what it copies would copy itself (the CA key with it): compared by real paths, so
    // neither `..` nor a link to the config folder gets it in.
    let real_out = real_path(&out)?;
    for inside in [&settings.config_dir, &data_dir] {
        if out.starts_with(inside) || real_out.starts_with(crate::owned::canonical(inside)) {
            return Err(Error::usage(format!(
                "--out {} is inside {}, which the backup copies: write it somewhere else.",
                out.display(),
                inside.display()
            )));
        }
    }
    // Never over an earlier backup (least of all the base this one needs), nor a link.
    if std::fs::symlink_metadata(&out).is_ok() {
        return Err(Error::usage(format!(
            "{} exists already: give --out a new file name (or remove that one first).",
            out.display()
        )));
    }
    let base = match &args.since {
        None => None,
        Some(path) => Some(full_backup(path, "--since")?),
    };
    // Files of this run and this host, not of the appliance.
    let skip = [
        layout::GC_IN_PROGRESS,
        layout::FIREWALL,
        layout::REGISTRY_VERSION,
        layout::ROLLBACK_DIR,
    ];
    let state = crate::state::installed(dir)?;
    let written = super::gc::while_read_only(&settings, ReadOnly::Backup, args.drain_timeout, |report| {
        // What the registry serves now, read-only, goes into the backup: restore proves it serves it again.
        let target = crate::verify::Target::installed(dir, &state);
        let about = crate::verify::inventory::About::of(&target, &state);
        let taken = report.step("inventory", || {
            match rt.block_on(crate::verify::take_inventory(&target, about)) {
                Ok(inv) => {
                    inv.write(&settings.config_dir.join(layout::INVENTORY))?;
                    let detail = inv.describe_counts();
                    Ok((true, detail))
                }
                Err(why) => Ok((
                    false,
                    format!("not taken ({why}): restore will not be proven against it"),
                )),
            }
        })?;
        let mut skip = skip.to_vec();
        if !taken {
            // An older inventory would prove the restore against what this backup may not hold.
            skip.push(layout::INVENTORY);
        }
        report.step("copy", || {
            let w = backup::write(
                &out,
                &settings.pod_name,
                &settings.config_dir,
                &data_dir,
                &skip,
                base.as_ref(),
            )?;
            let detail = format!("{} files, {}", w.files, indicatif::HumanBytes(w.bytes));
            Ok((w, detail))
        })
    })?;
    let since = match &args.since {
        Some(base) => format!(
            "; {} blobs left to its base {} (restore needs both: --base)",
            written.from_base,
            base.display()
        ),
        None => String::new(),
    };
    println!(
        "\nWrote {} ({} files, {}{since}). It holds the CA key and the secrets, so it is written 0600: keep it as \
         safe as the key.",
        out.display(),
        written.files,
        indicatif::HumanBytes(written.bytes)
    );
    Ok(())
}

/// `path` with its folder's real path: the folder must exist (the backup is written there).
fn real_path(path: &Path) -> Result<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::usage(format!(
            "--out {} names no file: give a file name.",
            path.display()
        )));
    };
    let dir = dir
        .canonicalize()
        .map_err(|e| Error::usage(crate::host::io_failed("use the folder of", path, &e)))?;
    Ok(dir.join(name))
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let cwd = std::env::current_dir()
        .map_err(|e| Error::usage(format!("Cannot read the current folder ({e}): give an absolute path.")))?;
    Ok(cwd.join(path))
}

/// A full backup, checked whole (`flag` names where it was given).
fn full_backup(path: &Path, flag: &str) -> Result<Checked> {
    let checked = backup::check(path)?;
    if checked.manifest.base.is_some() {
        return Err(Error::usage(format!(
            "{flag} {} is itself an incremental backup: give the full backup it was made against.",
            path.display()
        )));
    }
    Ok(checked)
}

pub fn restore(args: &RestoreArgs, rt: &tokio::runtime::Runtime, host: &HostFacts) -> Result<ExitStatus> {
    // Everything is checked before anything is written.
    let checked = backup::check(&args.file)?;
    let base = match (&checked.manifest.base, &args.base) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(Error::usage(format!(
                "{} is an incremental backup: give the full backup it was made against with --base FILE.",
                args.file.display()
            )))
        }
        (Some(id), Some(path)) => {
            let base = full_backup(path, "--base")?;
            if &base.id != id {
                return Err(Error::usage(format!(
                    "--base {} is not the backup {} was made against: give that one.",
                    path.display(),
                    args.file.display()
                )));
            }
            Some((path.as_path(), base))
        }
    };
    let config_dir = args.appliance.config_dir.clone();
    // Where the data goes is the command line's or this host's default, never the file's: a crafted backup
    // must not name a folder for restore to clear or fill.
    // Over an installed appliance: said first (and again under the lock below), before anything else.
    if config_dir.join(layout::STATE).exists() {
        return Err(installed_here(&config_dir));
    }
    // A backup of another folder than the default needs --data-dir said: the data is never put where the
    // file says, and never somewhere the user did not expect (a data disk's images onto /var/lib).
    let data_dir = match &args.data_dir {
        Some(dir) => absolute(dir)?,
        None if Path::new(&checked.manifest.data_dir) == host.default_data_dir() => host.default_data_dir(),
        None => {
            return Err(Error::usage(format!(
                "The backup was taken of the data in {}, and restore puts the data only where --data-dir says or \
                 in this host's default folder ({}): give --data-dir (the same folder, to put it back where it \
                 was). Nothing was changed.",
                crate::bundle::printable(&checked.manifest.data_dir),
                host.default_data_dir().display()
            )))
        }
    };
    let _lock = crate::lock::ApplianceLock::take(&config_dir, host, crate::lock::WAIT)?;
    // Staging folders a killed restore left behind (under this lock, no other restore is running).
    for (parent, prefix) in [
        (config_dir.parent(), format!(".{}.restore.", file_name(&config_dir))),
        (Some(data_dir.as_path()), ".restore.".to_string()),
    ] {
        for entry in parent
            .and_then(|p| std::fs::read_dir(p).ok())
            .into_iter()
            .flatten()
            .flatten()
        {
            // Only names a restore makes (PREFIX then its process id), not whatever starts alike.
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.strip_prefix(&prefix).unwrap_or_default();
            if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    if config_dir.join(layout::STATE).exists() {
        return Err(installed_here(&config_dir));
    }
    // A data folder of other things, or one another installed appliance claims, is not restore's to fill.
    crate::owned::check_data_folder(&data_dir, &crate::owned::appliance_id(&config_dir), false)?;
    let not_empty = |dir: &Path| std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
    if not_empty(&config_dir) || data_dir.join("docker").exists() {
        return Err(Error::usage(format!(
            "{} or {} already holds files: restore writes only into empty folders. Move them away, or give \
             --config-dir and --data-dir.",
            config_dir.display(),
            data_dir.join("docker").display()
        )));
    }
    // The backup's pod name is the one it comes back with: never over a pod that runs.
    let pod = &checked.manifest.pod_name;
    if crate::runtime::podman::Podman::find()?.pod_status(pod)?.is_some() {
        return Err(Error::usage(format!(
            "A pod named {pod} exists on this host, and the backup would bring up its own under that name: stop \
             that appliance first (registry-up down), or restore on another host."
        )));
    }
    // Laid down in staging folders first, moved into place only once every file checked out again. The data
    // folder and both staging folders are closed (0700) from the first byte: until up runs at the end, no
    // other user may reach a layer to change it under the checksums just taken.
    let stage = |dir: &Path| dir.with_file_name(format!(".{}.restore.{}", file_name(dir), std::process::id()));
    let (config_stage, data_stage) = (
        stage(&config_dir),
        data_dir.join(format!(".restore.{}", std::process::id())),
    );
    for dir in [&data_dir, &config_stage, &data_stage] {
        private_dir(dir)?;
    }
    let laid = backup::extract(
        &args.file,
        &checked,
        base.as_ref().map(|(p, c)| (*p, c)),
        &config_stage,
        &data_stage,
    )
    .and_then(|bytes| {
        // The data first, the config (state.json with it) last: until the config is in place there is no
        // appliance, and a failure puts the data back.
        let data = data_dir.join("docker");
        std::fs::rename(data_stage.join("docker"), &data)
            .map_err(|e| Error::runtime(crate::host::io_failed("move into place", &data, &e)))?;
        let moved = if config_dir.exists() {
            // An empty folder that stays (a mount point, say): its new contents go in one by one.
            std::fs::read_dir(&config_stage).and_then(|entries| {
                for entry in entries {
                    let entry = entry?;
                    std::fs::rename(entry.path(), config_dir.join(entry.file_name()))?;
                }
                Ok(())
            })
        } else {
            std::fs::rename(&config_stage, &config_dir)
        };
        if let Err(e) = moved {
            let _ = std::fs::rename(&data, data_stage.join("docker"));
            return Err(Error::runtime(crate::host::io_failed(
                "move into place",
                &config_dir,
                &e,
            )));
        }
        Ok(bytes)
    });
    let _ = std::fs::remove_dir_all(&config_stage);
    let _ = std::fs::remove_dir_all(&data_stage);
    let bytes = laid?;
    println!(
        "Restored {} ({}) into {} and {}.",
        args.file.display(),
        indicatif::HumanBytes(bytes),
        config_dir.display(),
        data_dir.display()
    );

    drop(_lock);
    let mut up = UpArgs::installed(config_dir, PullPolicy::Missing);
    up.setup.data_dir = Some(data_dir);
    // The restored images are in that data folder: the one the backup was taken from, should it still hold
    // others on this host, is not this appliance's any more (up says so, naming it).
    up.empty_storage = true;
    super::up::run(&up, rt, crate::pki::Renew::IfNeeded, host)?;
    // The backup's inventory (taken read-only as it was made): every tag it served must be served again.
    let baseline = Some(args.appliance.config_dir.join(layout::INVENTORY)).filter(|p| p.is_file());
    super::gc::verify_deep(&args.appliance, "after the restore", baseline, rt, host)
}

fn installed_here(config_dir: &Path) -> Error {
    Error::usage(format!(
        "An appliance is installed in {}: restore lays one down where there is none. Remove it first \
         (registry-up down --purge).",
        config_dir.display()
    ))
}

/// `dir` (with its parents) made if missing, and its mode set to 0700 whoever made it.
fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::runtime(crate::host::io_failed("create", parent, &e)))?;
    }
    match std::fs::DirBuilder::new().mode(layout::PRIVATE_DIR).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(Error::runtime(crate::host::io_failed("create", dir, &e)))
        }
        _ => {}
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(layout::PRIVATE_DIR))
        .map_err(|e| Error::runtime(crate::host::io_failed("create", dir, &e)))
}

fn file_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into())
}
