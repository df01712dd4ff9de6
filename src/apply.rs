//! Apply: carries out a plan with atomic writes (temp file, fsync, rename, fsync of the folder), so no
//! reader ever sees a half-written file, and a run killed half-way converges on the next run.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::layout::STATE;
use crate::plan::{Action, Plan};

fn write_error(path: &Path, e: std::io::Error) -> Error {
    Error::runtime(format!(
        "Cannot write {} ({e}): check the disk and the folder's permissions, then run registry-up again.",
        path.display()
    ))
}

/// Returns how many files were written.
pub fn apply(plan: &Plan) -> Result<usize> {
    for dir in &plan.dirs {
        if dir.create {
            fs::create_dir_all(&dir.path).map_err(|e| write_error(&dir.path, e))?;
        }
        // Explicit, so that a restrictive umask does not decide the mode.
        fs::set_permissions(&dir.path, fs::Permissions::from_mode(dir.mode)).map_err(|e| write_error(&dir.path, e))?;
    }
    // A run killed half-way may have left its temp files: nobody else names files like ours.
    let dirs: std::collections::BTreeSet<&Path> = plan.files.iter().filter_map(|c| c.path.parent()).collect();
    for dir in dirs {
        remove_stale_temp_files(dir);
    }
    // The state file goes last: it records a finished apply. The CA's key goes before its certificate, so
    // a stop in between never leaves a certificate that looks usable without its key.
    let mut writes: Vec<_> = plan.writes().collect();
    writes.sort_by_key(|c| (c.file.rel == STATE, c.file.rel == crate::layout::CA_CERT));
    for change in &writes {
        if change.action != Action::Unchanged {
            write_atomic(&change.path, &change.file.contents, change.file.mode)?;
        }
    }
    Ok(writes.len())
}

fn temp_name(name: &str, pid: u32) -> String {
    format!(".{name}.registry-up-{pid}.tmp")
}

fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".registry-up-") && name.ends_with(".tmp") {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Writes `contents` to `path` with `mode`, atomically.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    write_whole(path, contents, mode, false)
}

/// As [`write_atomic`], into a file that must not exist yet: never over one, even one that appears
/// meanwhile. Err(AlreadyExists) names it.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    write_whole(path, contents, mode, true)
}

fn write_whole(path: &Path, contents: &[u8], mode: u32, new: bool) -> Result<()> {
    // A bare file name's parent is "": the current folder.
    let dir = match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => Path::new("/"),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(temp_name(&name, std::process::id()));
    let result = (|| {
        // Created with the final mode: a key is never readable by others, not even for a moment.
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        if new {
            // link(2) fails on an existing name, where rename(2) would replace it.
            fs::hard_link(&tmp, path)?;
            fs::remove_file(&tmp)?;
        } else {
            fs::rename(&tmp, path)?;
        }
        File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            return Err(Error::usage(format!(
                "{} already exists, and registry-up does not write over it: choose a new file name.",
                path.display()
            )));
        }
        return Err(write_error(path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_is_never_written_over() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("site.json");
        write_new(&path, b"first", 0o600).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let e = write_new(&path, b"second", 0o600).unwrap_err();
        assert!(e.message.contains("already exists"), "{e}");
        assert_eq!(fs::read(&path).unwrap(), b"first");
        let left: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["site.json"], "no temporary file left");
        write_atomic(&path, b"third", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"third");
    }
}
