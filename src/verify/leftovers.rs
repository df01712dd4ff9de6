//! What verification leaves in the registry's storage, cleaned on the appliance host where registry-up
//! can see the data folder. The registry's API deletes a manifest and the repository's links to blobs,
//! but the blob data stays until a garbage collection; the round trip's blobs are random, so nothing else
//! can ever reference them, and their files are removed here. Uploads a failed or killed run left in our
//! own repository are removed too. Only `registry-up/verify` is ever touched. With S3 storage the same
//! blobs' objects are deleted from the bucket, with the registry's own key.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::round_trip::VERIFY_REPOSITORY;
use crate::storage::{real_dir, V2};

/// Where the registry keeps the data verification removes after the registry's API has unlinked it.
pub enum Storage {
    /// The data folder on this host.
    Folder(PathBuf),
    /// The S3 bucket, with the registry's key.
    Bucket(crate::s3::Location, crate::s3::Credentials),
}

impl Storage {
    /// Removes the data of `digests`: Ok(where it was removed from, bytes freed), or Err(where, why).
    pub async fn remove_blobs(&self, digests: &[&str]) -> Result<(String, u64), (String, String)> {
        match self {
            Storage::Folder(dir) => match remove_blobs(dir, digests) {
                Ok(freed) => Ok((dir.display().to_string(), freed)),
                Err(e) => Err((dir.display().to_string(), e.to_string())),
            },
            Storage::Bucket(at, key) => {
                let failed = |why: String| (at.describe(), why);
                let keys: Vec<String> = digests
                    .iter()
                    .filter_map(|d| crate::storage::blob_dir(d))
                    .map(|rel| format!("{}/data", rel.display()))
                    .collect();
                let bucket = crate::s3::Bucket::new(at, key, std::time::Duration::from_secs(30))
                    .map_err(|e| failed(e.message))?;
                // A delete of a missing object succeeds too: each is found first, so that what is said removed
                // was there (and its size is measured, not assumed).
                let mut freed = 0;
                for key in &keys {
                    match bucket.size(key).await.map_err(failed)? {
                        Some(size) => freed += size,
                        None => return Err(failed(format!("the bucket has no object {key}"))),
                    }
                }
                bucket.delete(&keys).await.map_err(failed)?;
                Ok((at.describe(), freed))
            }
        }
    }

    /// Ok when the data of every one of `digests` is in this storage (a folder: below it; a bucket: checked
    /// as the objects are removed); Err(why) when a blob the registry just took is not in the folder, which
    /// means the registry writes somewhere else than the appliance's data folder.
    pub fn lacks(&self, digests: &[&str]) -> Result<(), String> {
        let Storage::Folder(dir) = self else {
            return Ok(());
        };
        let missing: Vec<&str> = digests
            .iter()
            .copied()
            .filter(|d| {
                crate::storage::blob_dir(d)
                    .and_then(|rel| real_dir(dir, &rel))
                    .is_none_or(|b| !b.join("data").is_file())
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(format!(
            "the registry took the round trip's blobs but did not write {} of them under {} ({}): it keeps its data \
             somewhere else, so what it serves is not the appliance's storage. Look for REGISTRY_STORAGE_* variables \
             in the registry image (podman image inspect) or a changed image, then run registry-up up",
            missing.len(),
            dir.display(),
            missing.join(", ")
        ))
    }

    /// How data verification could not remove is freed.
    pub fn leftover_fix(&self) -> &'static str {
        match self {
            Storage::Folder(_) => "the registry's garbage collection frees it (registry-up gc)",
            Storage::Bucket(..) => {
                "delete those objects with the object store's tools (registry-up gc does not work on S3 storage yet)"
            }
        }
    }

    /// The data folder, for what only a folder allows (abandoned uploads, free space).
    pub fn folder(&self) -> Option<&Path> {
        match self {
            Storage::Folder(dir) => Some(dir),
            Storage::Bucket(..) => None,
        }
    }
}

/// Removes the data of `digests` (`sha256:HEX`); returns the bytes freed.
pub fn remove_blobs(data_dir: &Path, digests: &[&str]) -> std::io::Result<u64> {
    let mut freed = 0;
    for digest in digests {
        let Some(dir) = crate::storage::blob_dir(digest).and_then(|rel| real_dir(data_dir, &rel)) else {
            continue;
        };
        match std::fs::metadata(dir.join("data")) {
            Ok(meta) => freed += meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(freed)
}

/// Removes the uploads in our own repository for which `started(last change anywhere in it)` is true (a killed run's,
/// an hour old; or this run's, after it failed). Returns the bytes freed.
pub fn remove_uploads(data_dir: &Path, started: impl Fn(SystemTime) -> bool) -> u64 {
    let rel = Path::new(V2)
        .join("repositories")
        .join(VERIFY_REPOSITORY)
        .join("_uploads");
    let Some(uploads) = real_dir(data_dir, &rel) else {
        return 0;
    };
    let Ok(entries) = std::fs::read_dir(&uploads) else {
        return 0;
    };
    let mut freed = 0;
    for entry in entries.flatten() {
        // symlink_metadata: an entry that is a link is not an upload of ours.
        if !std::fs::symlink_metadata(entry.path()).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        // Last touched: the latest change anywhere in it (the folder's own time moves only when an entry is
        // added, not while data is appended).
        let (bytes, newest) = crate::host::tree_stat(&entry.path());
        if newest.is_some_and(&started) {
            freed += bytes;
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    freed
}

/// Uploads of our repository older than this were abandoned (a run killed mid-push).
pub const ABANDONED: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_blobs_and_uploads_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path();
        let hex = "ab".repeat(32);
        let other = "cd".repeat(32);
        for h in [&hex, &other] {
            let dir = data.join(V2).join("blobs/sha256").join(&h[..2]).join(h);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("data"), vec![0u8; 1000]).unwrap();
        }
        let digest = format!("sha256:{hex}");
        assert_eq!(
            remove_blobs(data, &[&digest, "sha256:../../etc", "md5:x"]).unwrap(),
            1000
        );
        assert!(!data.join(V2).join("blobs/sha256/ab").join(&hex).exists());
        assert!(
            data.join(V2).join("blobs/sha256/cd").join(&other).join("data").exists(),
            "others stay"
        );
        assert_eq!(remove_blobs(data, &[&digest]).unwrap(), 0, "twice is fine");

        let ours = data.join(V2).join("repositories/registry-up/verify/_uploads/u1");
        let theirs = data.join(V2).join("repositories/library/app/_uploads/u2");
        for dir in [&ours, &theirs] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join("data"), vec![0u8; 10]).unwrap();
        }
        assert_eq!(remove_uploads(data, |_| false), 0);
        // An upload whose folder is old but whose data was appended to a moment ago is still being written.
        let hour_ago = SystemTime::now() - ABANDONED - Duration::from_secs(60);
        std::fs::File::open(&ours).unwrap().set_modified(hour_ago).unwrap();
        let abandoned = |at: SystemTime| at + ABANDONED < SystemTime::now();
        assert_eq!(remove_uploads(data, abandoned), 0);
        assert!(ours.join("data").exists());
        let file = std::fs::OpenOptions::new().write(true).open(ours.join("data")).unwrap();
        file.set_modified(hour_ago).unwrap();
        assert_eq!(remove_uploads(data, abandoned), 10, "untouched for an hour");
        assert!(!ours.exists() && theirs.exists());
        std::fs::create_dir_all(&ours).unwrap();
        std::fs::write(ours.join("data"), vec![0u8; 10]).unwrap();
        assert_eq!(remove_uploads(data, |_| true), 10);
        assert!(!ours.exists() && theirs.exists());

        // A link planted in the storage leads nowhere: neither a linked folder nor a linked entry is followed.
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(outside.join("keep")).unwrap();
        let uploads = data.join(V2).join("repositories/registry-up/verify/_uploads");
        std::fs::remove_dir_all(&uploads).unwrap();
        std::os::unix::fs::symlink(&outside, &uploads).unwrap();
        assert_eq!(remove_uploads(data, |_| true), 0);
        std::fs::remove_file(&uploads).unwrap();
        std::fs::create_dir_all(&uploads).unwrap();
        std::os::unix::fs::symlink(outside.join("keep"), uploads.join("u3")).unwrap();
        remove_uploads(data, |_| true);
        assert!(outside.join("keep").is_dir(), "nothing outside the storage is removed");
        let blobs = data.join(V2).join("blobs/sha256");
        std::fs::remove_dir_all(&blobs).unwrap();
        std::fs::create_dir_all(blobs.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&outside, &blobs).unwrap();
        std::fs::create_dir_all(outside.join("ab").join(&hex)).unwrap();
        std::fs::write(outside.join("ab").join(&hex).join("data"), b"x").unwrap();
        assert_eq!(remove_blobs(data, &[&digest]).unwrap(), 0);
        assert!(outside.join("ab").join(&hex).join("data").exists());
    }
}
