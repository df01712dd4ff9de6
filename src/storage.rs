//! The registry's filesystem storage as registry-up reads it on the host: the driver's layout (the same in
//! 2.x and 3.x), and folders reached without following links.

use std::path::{Path, PathBuf};

/// The registry's storage below the data folder.
pub const V2: &str = "docker/registry/v2";

/// `data_dir/rel` when every folder on the way below `data_dir` is a real folder, not a symbolic link: the
/// storage is written by the registry's container, and a link planted there must not lead registry-up to
/// read or remove anything outside it.
pub fn real_dir(data_dir: &Path, rel: &Path) -> Option<PathBuf> {
    let mut path = data_dir.to_path_buf();
    for part in rel.components() {
        path.push(part);
        if !std::fs::symlink_metadata(&path).ok()?.is_dir() {
            return None;
        }
    }
    Some(path)
}

/// The folders directly in `dir` (links and files left out), by name.
pub fn subdirs(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    found.sort();
    found
}

/// `sha256:HEX` as the storage writes it in a link file, checked.
pub fn read_link(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let digest = text.trim();
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| digest.to_string())
}

/// Where the data of blob `sha256:HEX` lives, relative to the data folder (None for another shape).
pub fn blob_dir(digest: &str) -> Option<PathBuf> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))?;
    Some(Path::new(V2).join("blobs/sha256").join(&hex[..2]).join(hex))
}

const DEADLINE: &str = "not hashed before the deadline";

/// What hashing the blobs' bytes found.
#[derive(Debug, Default)]
pub struct Hashed {
    pub blobs: usize,
    pub bytes: u64,
    /// Each blob whose data is not what its digest says (or cannot be read), with why.
    pub corrupt: Vec<(String, String)>,
    /// Every blob was hashed (none left when the deadline came).
    pub complete: bool,
}

/// Hashes the data of each blob of `digests` (each once, whatever shares it) against its digest, on
/// `threads` threads at once, reading the storage below `data_dir` without following links; no blob is
/// begun after `deadline`.
pub fn hash_blobs(data_dir: &Path, digests: &[&str], threads: usize, deadline: std::time::Instant) -> Hashed {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let found = std::sync::Mutex::new(Hashed::default());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                if std::time::Instant::now() >= deadline {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(digest) = digests.get(i) else { break };
                let result = hash_blob(data_dir, digest, deadline);
                let mut found = found.lock().expect("not poisoned");
                found.blobs += 1;
                match result {
                    Ok(size) => found.bytes += size,
                    // Not hashed in time is not corrupt: the run says it is incomplete.
                    Err(why) if why == DEADLINE => found.blobs -= 1,
                    Err(why) => found.corrupt.push((digest.to_string(), why)),
                }
            });
        }
    });
    let mut found = found.into_inner().expect("not poisoned");
    found.corrupt.sort();
    found.complete = found.blobs == digests.len();
    found
}

/// The size of blob `digest`'s data once its bytes are proven to hash to it; Err says what is wrong.
fn hash_blob(data_dir: &Path, digest: &str, deadline: std::time::Instant) -> Result<u64, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let rel = blob_dir(digest).ok_or("not a sha256 digest, so its bytes were not hashed")?;
    let dir = real_dir(data_dir, &rel).ok_or("its folder is not in the storage (or is a link)")?;
    // Never through a link, and a FIFO is not waited on (O_NONBLOCK, which a regular file ignores).
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(dir.join("data"))
        .map_err(|e| format!("its data cannot be read ({e})"))?;
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err("its data is not a regular file".into());
    }
    // Chunk by chunk, so that the deadline holds inside one large blob too.
    let (mut hasher, mut buf, mut size) = (crate::digest::Sha256::new(), vec![0u8; 1 << 20], 0u64);
    loop {
        if std::time::Instant::now() >= deadline {
            return Err(DEADLINE.into());
        }
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("its data cannot be read ({e})"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let hex = hasher.hex();
    if digest.strip_prefix("sha256:") != Some(hex.as_str()) {
        return Err(format!("corrupt: its bytes on disk hash to sha256:{hex}"));
    }
    Ok(size)
}

/// Copies the tree `from` to `to` (which must not exist), folders and regular files with their modes; a
/// link or any other kind of file stops it (the storage has none, and none is followed).
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(from)?;
    if meta.is_dir() {
        std::fs::create_dir(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.permissions().mode() & 0o7777))
    } else if meta.is_file() {
        std::fs::copy(from, to)?;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.permissions().mode() & 0o7777))
    } else {
        Err(std::io::Error::other(format!(
            "{} is not a folder or a regular file",
            from.display()
        )))
    }
}

/// One repository of the storage: its name (which may hold slashes) and folder.
pub struct Repository {
    pub name: String,
    pub dir: PathBuf,
}

/// Every repository below `repositories/` (a repository is a folder with `_manifests`, `_layers` or
/// `_uploads`), by name.
pub fn repositories(root: &Path) -> Vec<Repository> {
    let mut found = Vec::new();
    let mut stack = vec![(String::new(), root.to_path_buf())];
    while let Some((name, dir)) = stack.pop() {
        let children = subdirs(&dir);
        if children.iter().any(|(n, _)| n.starts_with('_')) {
            found.push(Repository {
                name: name.clone(),
                dir: dir.clone(),
            });
        }
        for (child, path) in children.into_iter().filter(|(n, _)| !n.starts_with('_')) {
            let full = if name.is_empty() {
                child
            } else {
                format!("{name}/{child}")
            };
            stack.push((full, path));
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// Every tag the storage below `data_dir` holds, (repository, tag) → the digest its link names (an
/// unreadable link as an empty digest: it is a tag all the same).
pub fn tags(data_dir: &Path) -> std::collections::BTreeMap<(String, String), String> {
    let Some(root) = real_dir(data_dir, &Path::new(V2).join("repositories")) else {
        return Default::default();
    };
    repositories(&root)
        .into_iter()
        .flat_map(|repo| {
            subdirs(&repo.dir.join("_manifests/tags"))
                .into_iter()
                .map(move |(tag, path)| {
                    let digest = read_link(&path.join("current/link")).unwrap_or_default();
                    ((repo.name.clone(), tag), digest)
                })
        })
        .collect()
}

/// A tag placed straight into the storage: proof that a registry which serves it reads this very tree (not
/// a copy, not another folder). Its folder is named in a record file first, so that a run killed while it
/// is there still has it removed ([`Marker::clean_up`]); removed with [`Marker::remove`] (and on drop).
pub struct Marker {
    dir: PathBuf,
    record: PathBuf,
}

/// The names of placed tags start so; nothing else is ever removed through a record.
pub const MARKER_PREFIX: &str = "registry-up-proof-";

impl Marker {
    /// Tag `tag` (starting with [`MARKER_PREFIX`]) of repository `repo` (one the storage holds, reached
    /// without links), naming `digest` (a manifest that repository holds): the one file a registry reads to
    /// resolve a tag. `record` names it until it is removed.
    pub fn place(data_dir: &Path, repo: &str, tag: &str, digest: &str, record: &Path) -> std::io::Result<Marker> {
        let not_here = || std::io::Error::new(std::io::ErrorKind::NotFound, format!("no repository {repo}"));
        let tags = real_dir(
            data_dir,
            &Path::new(V2).join("repositories").join(repo).join("_manifests/tags"),
        )
        .ok_or_else(not_here)?;
        let dir = tags.join(tag);
        let text = std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str()).to_vec();
        crate::atomic::write_atomic(record, &text, 0o600).map_err(|e| std::io::Error::other(e.to_string()))?;
        let marker = Marker {
            dir,
            record: record.to_path_buf(),
        };
        std::fs::create_dir(&marker.dir)?;
        std::fs::create_dir(marker.dir.join("current"))?;
        crate::atomic::write_new(&marker.dir.join("current/link"), digest.as_bytes(), 0o600)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(marker)
    }

    pub fn remove(self) {}

    /// Removes the tag a killed run left, as `record` names it (only a placed tag's folder in a tags folder).
    pub fn clean_up(record: &Path) {
        let Ok(text) = std::fs::read(record) else {
            return;
        };
        let dir = PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&text));
        let placed = dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(MARKER_PREFIX))
            && dir.parent().is_some_and(|p| p.ends_with("_manifests/tags"));
        if placed {
            let _ = std::fs::remove_dir_all(&dir);
        }
        let _ = std::fs::remove_file(record);
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placed_tag_left_by_a_killed_run_is_removed_and_nothing_else_is() {
        let tmp = tempfile::tempdir().unwrap();
        let tags = tmp.path().join(V2).join("repositories/team/app/_manifests/tags");
        std::fs::create_dir_all(tags.join("1/current")).unwrap();
        let record = tmp.path().join("placed-tag");
        let digest = format!("sha256:{}", "a".repeat(64));
        let name = format!("{MARKER_PREFIX}0123");
        let marker = Marker::place(tmp.path(), "team/app", &name, &digest, &record).unwrap();
        assert_eq!(read_link(&tags.join(&name).join("current/link")), Some(digest.clone()));
        // Killed: no drop runs. The next run removes the tag through the record.
        std::mem::forget(marker);
        Marker::clean_up(&record);
        assert!(!tags.join(&name).exists() && !record.exists());
        assert!(tags.join("1").exists(), "the repository's own tag stays");
        // A record naming anything but a placed tag removes nothing.
        std::fs::write(&record, tags.join("1").as_os_str().as_encoded_bytes()).unwrap();
        Marker::clean_up(&record);
        assert!(tags.join("1").exists());
        // Removed in the ordinary way, the record goes too; a repository that is not there is an error.
        Marker::place(tmp.path(), "team/app", &name, &digest, &record)
            .unwrap()
            .remove();
        assert!(!tags.join(&name).exists() && !record.exists());
        assert!(Marker::place(tmp.path(), "team/other", &name, &digest, &record).is_err());
    }

    #[test]
    fn every_blob_is_hashed_once_and_a_changed_byte_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let mut digests = Vec::new();
        for i in 0..20u8 {
            let data = vec![i; 1000 + i as usize];
            let digest = format!("sha256:{}", crate::digest::sha256_hex(&data));
            let dir = tmp.path().join(blob_dir(&digest).unwrap());
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("data"), &data).unwrap();
            digests.push(digest);
        }
        let all: Vec<&str> = digests.iter().map(String::as_str).collect();
        let far = std::time::Instant::now() + std::time::Duration::from_secs(600);
        let hashed = hash_blobs(tmp.path(), &all, 2, far);
        assert_eq!((hashed.blobs, hashed.corrupt.len(), hashed.complete), (20, 0, true));
        assert_eq!(hashed.bytes, (0..20u64).map(|i| 1000 + i).sum::<u64>());
        // A layer overwritten on disk (same size): HEAD still answers 200; the bytes say otherwise.
        let damaged = tmp.path().join(blob_dir(&digests[3]).unwrap()).join("data");
        let mut bytes = std::fs::read(&damaged).unwrap();
        bytes[0] ^= 0xff;
        std::fs::write(&damaged, bytes).unwrap();
        std::fs::remove_file(tmp.path().join(blob_dir(&digests[5]).unwrap()).join("data")).unwrap();
        let hashed = hash_blobs(tmp.path(), &all, 2, far);
        let named: Vec<&str> = hashed.corrupt.iter().map(|(d, _)| d.as_str()).collect();
        let mut expected = vec![digests[3].as_str(), digests[5].as_str()];
        expected.sort();
        assert_eq!(named, expected);
        assert!(hashed
            .corrupt
            .iter()
            .any(|(_, why)| why.starts_with("corrupt: its bytes on disk hash to")));
        // Past its deadline nothing more is begun, and it says it is not complete.
        let late = hash_blobs(tmp.path(), &all, 2, std::time::Instant::now());
        assert!(!late.complete && late.blobs == 0);
    }

    #[test]
    fn tags_are_read_from_the_storage_layout() {
        let dir = tempfile::tempdir().unwrap();
        let digest = format!("sha256:{}", "a".repeat(64));
        for (repo, tag) in [("team/app", "1"), ("team/app", "2"), ("base", "latest")] {
            let t = dir
                .path()
                .join(V2)
                .join("repositories")
                .join(repo)
                .join("_manifests/tags")
                .join(tag);
            std::fs::create_dir_all(t.join("current")).unwrap();
            std::fs::write(t.join("current/link"), &digest).unwrap();
        }
        let tags = tags(dir.path());
        let names: Vec<String> = tags.keys().map(|(r, t)| format!("{r}:{t}")).collect();
        assert_eq!(names, ["base:latest", "team/app:1", "team/app:2"]);
        assert!(tags.values().all(|d| *d == digest));
        assert!(super::tags(&dir.path().join("nothing")).is_empty());
    }
}
