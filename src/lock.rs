//! One change at a time per appliance: `up` (and `certs renew` through it) and `down` hold an exclusive
//! lock for their config folder while they read, decide and write. A second run waits for a while, then
//! says which process holds it.
//!
//! The lock is a file in the runtime folder (/run/registry-up for root, $XDG_RUNTIME_DIR/registry-up for a
//! user), named for the config folder's path: it exists before the config folder does (two first runs
//! race for it as well) and goes away at reboot.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::host::HostFacts;

/// How long a second run waits for the first before giving up.
pub const WAIT: Duration = Duration::from_secs(120);

/// Held while alive; the kernel releases it when the process ends, however it ends. The file is removed
/// when the lock is let go (a taker checks it locked the file still at the path, so that is safe).
pub struct ApplianceLock {
    file: File,
    path: PathBuf,
}

impl Drop for ApplianceLock {
    fn drop(&mut self) {
        // Still holding the lock: a waiter that then locks this file finds it unlinked, and starts over.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.set_len(0);
    }
}

/// Where lock files live: /run/registry-up, or the user's runtime folder /run/user/UID (what
/// XDG_RUNTIME_DIR names in a login session, found without it, so a cron job and a login agree). A user
/// without one (no systemd-logind) uses a folder in their home: never a shared folder such as /tmp, where
/// another user could plant the path.
fn runtime_dir(host: &HostFacts) -> PathBuf {
    if host.root {
        return PathBuf::from("/run/registry-up");
    }
    // SAFETY: geteuid has no preconditions.
    let run = PathBuf::from(format!("/run/user/{}", unsafe { libc::geteuid() }));
    if run.is_dir() {
        run.join("registry-up")
    } else {
        host.config_home.join("registry-up-locks")
    }
}

/// The lock file for `config_dir` (absolute and normalised) in `runtime`.
fn path_in(runtime: &Path, config_dir: &Path) -> PathBuf {
    // Readable, and short enough for any file system (the hash keeps long paths apart).
    let readable: String = config_dir
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let readable = &readable[readable.len().saturating_sub(100)..];
    let hash = &crate::digest::sha256_hex(config_dir.as_os_str().as_encoded_bytes())[..12];
    runtime.join(format!("{}.{hash}.lock", readable.trim_matches('-')))
}

impl ApplianceLock {
    /// Takes the lock for `config_dir`, waiting up to `wait` (saying so once) for another run to finish.
    pub fn take(config_dir: &Path, host: &HostFacts, wait: Duration) -> Result<Self> {
        let config_dir = crate::owned::canonical(&crate::settings::usable_path(config_dir, "--config-dir")?);
        Self::take_in(&runtime_dir(host), &config_dir, wait)
    }

    fn take_in(runtime: &Path, config_dir: &Path, wait: Duration) -> Result<Self> {
        let path = path_in(runtime, config_dir);
        let cannot = |e: std::io::Error| {
            Error::runtime(format!(
                "Cannot use the lock file {} ({e}): {}.",
                path.display(),
                crate::host::io_fix(&e)
            ))
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(cannot)?;
        }
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
        };
        let mut file = open().map_err(cannot)?;
        let start = Instant::now();
        let mut said = false;
        loop {
            // SAFETY: a valid open file descriptor.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                // The holder before may have removed the file as it let go: then lock the one at the path.
                let same = |f: &File| {
                    use std::os::unix::fs::MetadataExt;
                    match (f.metadata(), std::fs::metadata(&path)) {
                        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                        _ => false,
                    }
                };
                if same(&file) {
                    break;
                }
                file = open().map_err(cannot)?;
                continue;
            }
            let holder = holder(&mut file);
            if start.elapsed() >= wait {
                return Err(Error::usage(format!(
                    "Another registry-up{holder} is still changing the appliance in {} after {} s: let it finish \
                     (or stop it), then run again.",
                    config_dir.display(),
                    wait.as_secs()
                )));
            }
            if !said {
                eprintln!(
                    "Waiting for another registry-up{holder} to finish changing the appliance in {} …",
                    config_dir.display()
                );
                said = true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Who holds it, for the message a waiting run shows.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = writeln!(file, "{}", std::process::id());
        Ok(ApplianceLock { file, path })
    }
}

/// " (pid N)" from the lock file, when the holder wrote its PID.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut text);
    match text.trim().parse::<u32>() {
        Ok(pid) => format!(" (pid {pid})"),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_waits_then_names_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let runtime = tmp.path().join("run");
        let dir = Path::new("/srv/registry up/config");
        let path = path_in(&runtime, dir);
        assert!(path.starts_with(&runtime), "{}", path.display());
        assert!(
            path.to_string_lossy().contains("srv-registry-up-config."),
            "{}",
            path.display()
        );
        assert_ne!(
            path,
            path_in(&runtime, Path::new("/srv/registry-up/config")),
            "distinct folders, distinct locks"
        );
        let first = ApplianceLock::take_in(&runtime, dir, WAIT).unwrap();
        // flock belongs to the open file: a second open in this process contends like another process would.
        let e = ApplianceLock::take_in(&runtime, dir, Duration::from_millis(300))
            .err()
            .unwrap();
        assert!(e.message.contains(&format!("(pid {})", std::process::id())), "{e}");
        drop(first);
        assert!(!path.exists(), "the lock file goes with the lock");
        let again = ApplianceLock::take_in(&runtime, dir, Duration::ZERO).unwrap();
        assert!(path.exists());
        drop(again);
        assert!(runtime_dir(&HostFacts::fixed(true, false, false)).starts_with("/run"));
        let long = Path::new("/").join("a".repeat(300));
        let name = path_in(&runtime, &long);
        assert!(name.file_name().unwrap().len() < 200, "{}", name.display());
        // Two spellings of one folder (a link to it) share the lock.
        let real = tmp.path().join("real");
        std::fs::create_dir_all(&real).unwrap();
        std::os::unix::fs::symlink(&real, tmp.path().join("link")).unwrap();
        assert_eq!(
            crate::owned::canonical(&tmp.path().join("link/config")),
            crate::owned::canonical(&real.join("config"))
        );
    }
}
