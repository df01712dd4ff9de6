//! Atomic writes of one file: a temp file nobody can guess, fsync, rename, fsync of the folder, so no
//! reader ever sees a half-written file and a run killed half-way converges on the next run. A leaf: every
//! layer that writes a file (apply's plan, verify's cache, the firewall's record, a claim) uses it.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// "Cannot write PATH (error): what to do."
pub fn write_error(path: &Path, e: std::io::Error) -> Error {
    Error::runtime(format!(
        "Cannot write {} ({e}): check the disk and the folder's permissions, then run registry-up again.",
        path.display()
    ))
}

/// A temp name nobody can guess: a folder's owner who is not us cannot plant a link at it beforehand.
fn temp_name(name: &str) -> String {
    format!(".{name}.registry-up-{}.tmp", crate::digest::random_hex(8))
}

/// Temp files of a run killed half-way: nobody else names files like ours. Removing a name never touches
/// what a link there points at.
pub fn remove_stale_temp_files(dir: &Path) {
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

fn cstring(name: &str) -> std::io::Result<std::ffi::CString> {
    std::ffi::CString::new(name).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
}

/// Every step is taken relative to the folder's descriptor, on a file this run created (O_EXCL, never
/// through a link): in a folder another user owns (k3s setups hand /etc/rancher/k3s to an operator), that
/// user can rename what is there (as they always could) but cannot make root write, or chmod, anything
/// else, nor swap the folder for another half-way.
fn write_whole(path: &Path, contents: &[u8], mode: u32, new: bool) -> Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
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
    let folder = match File::open(dir) {
        Ok(folder) => folder,
        Err(e) => return Err(write_error(path, e)),
    };
    let tmp = temp_name(&name);
    let (c_tmp, c_name) = match (cstring(&tmp), cstring(&name)) {
        (Ok(t), Ok(n)) => (t, n),
        (Err(e), _) | (_, Err(e)) => return Err(write_error(path, e)),
    };
    let at = folder.as_raw_fd();
    let result = (|| {
        // Created with the final mode: a key is never readable by others, not even for a moment.
        // SAFETY: a valid folder descriptor and NUL-terminated name; the descriptor returned is owned below.
        let fd = unsafe {
            libc::openat(
                at,
                c_tmp.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd was just opened and nothing else owns it.
        let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        // SAFETY: both names are NUL-terminated and relative to the same open folder.
        let moved = unsafe {
            if new {
                // link(2) fails on an existing name, where rename(2) would replace it.
                libc::linkat(at, c_tmp.as_ptr(), at, c_name.as_ptr(), 0)
            } else {
                libc::renameat(at, c_tmp.as_ptr(), at, c_name.as_ptr())
            }
        };
        if moved != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if new {
            // SAFETY: as above.
            unsafe { libc::unlinkat(at, c_tmp.as_ptr(), 0) };
        }
        folder.sync_all()
    })();
    if let Err(e) = result {
        // SAFETY: as above; removing a name this run created (or that is gone already).
        unsafe { libc::unlinkat(at, c_tmp.as_ptr(), 0) };
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

    /// The temp name of every earlier release (`.NAME.registry-up-PID.tmp`) planted as a link to a file of
    /// root's: the write goes to a file of its own, the linked file keeps its bytes and mode.
    #[test]
    fn a_planted_temp_link_is_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let secret = tmp.path().join("secret");
        fs::write(&secret, b"root only").unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
        let folder = tmp.path().join("k3s");
        fs::create_dir(&folder).unwrap();
        let planted = folder.join(format!(".registries.yaml.registry-up-{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&secret, &planted).unwrap();
        let path = folder.join("registries.yaml");
        write_atomic(&path, b"mirrors: {}", 0o644).unwrap();
        assert_eq!(fs::read(&secret).unwrap(), b"root only");
        assert_eq!(fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(&path).unwrap(), b"mirrors: {}");
        assert!(!fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
        // A link at the final name is replaced, not written through.
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&secret, &path).unwrap();
        write_atomic(&path, b"again", 0o644).unwrap();
        assert_eq!(fs::read(&secret).unwrap(), b"root only");
        assert_eq!(fs::read(&path).unwrap(), b"again");
    }
}
