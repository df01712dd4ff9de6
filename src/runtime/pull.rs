//! `podman pull`, bounded in time and with byte progress. Podman does the pull, so registries.conf
//! (mirrors), auth.json, certs.d and the signature policy all apply as they would to `podman pull`; the
//! bytes come from the folder Podman downloads layers into, which is set per pull with TMPDIR (the
//! variable podman-pull documents for it) to a private temp folder that is removed afterwards.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::podman::Podman;

/// How a pull ended when it did not succeed: a sentence for the user.
pub type PullError = String;

/// Bytes seen per downloaded file: Podman deletes them once the image is committed, so each file's
/// largest size is kept.
#[derive(Default)]
struct Downloaded(HashMap<PathBuf, u64>);

impl Downloaded {
    fn scan(&mut self, dir: &Path) -> u64 {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    stack.push(entry.path());
                } else {
                    let seen = self.0.entry(entry.path()).or_default();
                    *seen = (*seen).max(meta.len());
                }
            }
        }
        self.0.values().sum()
    }
}

/// The least a pull must bring in each `--pull-timeout` window to go on: a registry that drips a byte
/// every few seconds is as good as one that says nothing, and would otherwise hold the run for days.
const LEAST_PER_WINDOW: u64 = 64 << 10;

/// Whether a pull that brought `got` bytes in the window just ended (of `stall`) and `total` in all must
/// stop, and why, in words.
fn too_slow(got: u64, total: u64, stall: Duration) -> Option<String> {
    if got >= LEAST_PER_WINDOW {
        return None;
    }
    let secs = stall.as_secs();
    Some(match (total, got) {
        (0, _) => format!("the pull was stopped after {secs} s without progress (--pull-timeout); nothing came: the registry or a DNS server does not answer"),
        (_, 0) => format!("the pull was stopped after {secs} s without progress (--pull-timeout); after {total} bytes nothing more came: the registry stopped answering"),
        _ => format!(
            "the pull was stopped: in the last {secs} s (--pull-timeout) only {got} bytes came, less than the {} KiB \
             a pull must bring in that time ({total} bytes in all): the registry nearly stopped answering",
            LEAST_PER_WINDOW >> 10
        ),
    })
}

/// Download folders of pulls whose registry-up was killed (its process gone): removed, ours only.
fn remove_stale_downloads(base: &Path) {
    for entry in std::fs::read_dir(base).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("registry-up-pull-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if meta.is_dir() && crate::host::left_by_dead_run(&meta, pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Where Podman puts big temporary files by default, and so where ours goes (same filesystem).
fn temp_base() -> PathBuf {
    std::env::var_os("TMPDIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| PathBuf::from("/var/tmp"))
}

/// Podman's reason for a failed pull: its last `Error:` line, on one line.
fn reason(stderr: &str) -> String {
    let line = stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with("Error:"))
        .or_else(|| stderr.lines().map(str::trim).rfind(|l| !l.is_empty()))
        .unwrap_or("podman pull failed without a message");
    line.trim_start_matches("Error:").trim().to_string()
}

impl Podman {
    /// Pulls `image`; `progress` is called often with the bytes downloaded so far.
    /// Returns the bytes downloaded. Stops the pull once `stall` passes with no new byte: a registry or DNS
    /// server that never answers fails within it, a large image on a slow but live link goes on.
    pub fn pull(&self, image: &str, stall: Duration, mut progress: impl FnMut(u64)) -> Result<u64, PullError> {
        remove_stale_downloads(&temp_base());
        let tmp = tempfile::Builder::new()
            .prefix(&format!("registry-up-pull-{}-", std::process::id()))
            .tempdir_in(temp_base())
            .map_err(|e| format!("cannot make a temporary folder for the download ({e})"))?;
        let mut child = Command::new(&self.bin)
            .args(["pull", image])
            .env("TMPDIR", tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {} ({e})", self.bin.display()))?;
        // Read stderr as it comes, so that a chatty pull never blocks on a full pipe.
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let (said_tx, said) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            let _ = said_tx.send(text);
        });
        // A helper podman started may outlive a killed pull and hold the pipe: never wait long for it.
        let said = |wait| said.recv_timeout(wait).unwrap_or_default();
        // Each window of `stall` must bring LEAST_PER_WINDOW bytes: a stall and a drip both end it.
        let (mut window, mut at_window) = (Instant::now(), 0);
        let mut downloaded = Downloaded::default();
        let mut bytes = 0;
        let status = loop {
            bytes = downloaded.scan(tmp.path()).max(bytes);
            progress(bytes);
            let stop = match window.elapsed() >= stall {
                true => too_slow(bytes - at_window, bytes, stall),
                false => None,
            };
            if window.elapsed() >= stall {
                (window, at_window) = (Instant::now(), bytes);
            }
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if stop.is_some() => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = said(Duration::from_secs(1));
                    return Err(stop.expect("checked"));
                }
                // Often: Podman deletes each file once its layer is stored, which on a fast link is soon.
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(format!("lost track of podman pull ({e})")),
            }
        };
        let stderr = said(Duration::from_secs(5));
        if status.success() {
            Ok(downloaded.scan(tmp.path()).max(bytes))
        } else {
            Err(reason(&stderr))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_must_bring_enough_in_each_window() {
        let stall = Duration::from_secs(30);
        assert_eq!(too_slow(LEAST_PER_WINDOW, 10 << 20, stall), None);
        let silent = too_slow(0, 0, stall).unwrap();
        assert!(
            silent.contains("after 30 s without progress (--pull-timeout); nothing came"),
            "{silent}"
        );
        let stopped = too_slow(0, 5000, stall).unwrap();
        assert!(stopped.contains("after 5000 bytes nothing more came"), "{stopped}");
        // One byte every 2 s: 15 bytes a window, which the release before took as progress for ever.
        let drip = too_slow(15, 4000, stall).unwrap();
        assert!(drip.contains("only 15 bytes came, less than the 64 KiB"), "{drip}");
    }

    #[test]
    fn a_killed_pull_s_folder_is_removed_and_a_live_one_s_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dead = tmp.path().join("registry-up-pull-999999999-abc");
        let live = tmp.path().join(format!("registry-up-pull-{}-def", std::process::id()));
        let other = tmp.path().join("registry-up-pull-notes");
        for dir in [&dead, &live, &other] {
            std::fs::create_dir(dir).unwrap();
        }
        remove_stale_downloads(tmp.path());
        assert!(!dead.exists() && live.exists() && other.exists());
    }

    #[test]
    fn the_reason_is_podmans_last_error_line() {
        let stderr = "Trying to pull r:1/x:y...\nError: initializing source docker://r:1/x:y: pinging container registry r:1: Get \"https://r:1/v2/\": dial tcp: lookup r: no such host\n";
        assert_eq!(
            reason(stderr),
            "initializing source docker://r:1/x:y: pinging container registry r:1: Get \"https://r:1/v2/\": dial tcp: lookup r: no such host"
        );
        assert_eq!(reason("something odd\n\n"), "something odd");
        assert_eq!(reason(""), "podman pull failed without a message");
    }

    #[test]
    fn downloaded_bytes_keep_files_that_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = Downloaded::default();
        std::fs::create_dir(dir.path().join("storage1")).unwrap();
        std::fs::write(dir.path().join("storage1/1"), vec![0u8; 1000]).unwrap();
        assert_eq!(seen.scan(dir.path()), 1000);
        std::fs::write(dir.path().join("storage1/2"), vec![0u8; 500]).unwrap();
        assert_eq!(seen.scan(dir.path()), 1500);
        std::fs::remove_file(dir.path().join("storage1/1")).unwrap();
        assert_eq!(seen.scan(dir.path()), 1500, "a committed layer still counts");
    }
}
