//! Garbage in the registry's storage, found by reading it on the host (mark and sweep), and removed.
//!
//! Kept: every tagged manifest, every manifest an index that is kept refers to (so a multi-platform image
//! keeps every platform, which distribution's own `--delete-untagged` does not: distribution#4461), and
//! every blob those manifests name, in any repository. Garbage: the other manifests of a repository (untagged
//! and no kept index refers to them), blobs nothing kept names, repositories' links to those blobs, and
//! uploads older than a day. A kept manifest that cannot be read stops the collection before anything is
//! removed. The same plan serves the dry run and the run, so what the dry run says is what the run frees.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::oci::AnyManifest;
use crate::storage::{blob_dir, read_link, real_dir, repositories, subdirs, V2};

/// Uploads untouched for this long were abandoned.
pub const ABANDONED_UPLOAD: Duration = Duration::from_secs(24 * 3600);

/// What a collection removes, and what it keeps.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// (repository, digest) of manifests to remove.
    pub manifests: Vec<(String, String)>,
    /// Blobs to remove, with the size of their data.
    pub blobs: Vec<(String, u64)>,
    /// Abandoned uploads: (repository, folder).
    pub uploads: Vec<(String, PathBuf)>,
    /// Every folder removed (below the data folder), with the bytes of the files in it.
    pub folders: Vec<(PathBuf, u64)>,
    pub kept_manifests: usize,
    pub kept_blobs: usize,
    /// Every tag and manifest revision seen: a second reading that differs means the registry wrote.
    pub fingerprint: Vec<String>,
}

impl Plan {
    /// The bytes the collection frees: every file in the folders it removes.
    pub fn bytes(&self) -> u64 {
        self.folders.iter().map(|(_, b)| b).sum()
    }

    pub fn summary(&self) -> String {
        let blob_bytes: u64 = self.blobs.iter().map(|(_, b)| b).sum();
        format!(
            "{} ({} bytes) in {} blobs ({} of blob data), {} untagged manifests no index refers to, {} abandoned \
             uploads; keeping {} manifests and {} blobs",
            indicatif::HumanBytes(self.bytes()),
            self.bytes(),
            self.blobs.len(),
            indicatif::HumanBytes(blob_bytes),
            self.manifests.len(),
            self.uploads.len(),
            self.kept_manifests,
            self.kept_blobs
        )
    }
}

/// The digests of `sha256/HEX/link` entries below `dir`.
fn linked(dir: &Path) -> Vec<(String, PathBuf)> {
    subdirs(&dir.join("sha256"))
        .into_iter()
        .filter_map(|(_, path)| read_link(&path.join("link")).map(|d| (d, path)))
        .collect()
}

/// The plan for the storage below `data_dir`, as it is now.
pub fn plan(data_dir: &Path, now: SystemTime) -> Result<Plan> {
    let mut plan = Plan::default();
    let Some(root) = real_dir(data_dir, Path::new(V2)) else {
        return Ok(plan);
    };
    let repos = repositories(&root.join("repositories"));
    // Only sha256 is read here: content under another algorithm would never be marked, so it stops gc.
    let mut algorithm_dirs = vec![root.join("blobs")];
    for repo in &repos {
        algorithm_dirs.extend(["_manifests/revisions", "_layers"].map(|d| repo.dir.join(d)));
    }
    for dir in algorithm_dirs {
        if let Some((other, _)) = subdirs(&dir).into_iter().find(|(name, _)| name != "sha256") {
            return Err(Error::runtime(format!(
                "The storage holds content under {other} in {}, which gc does not read: nothing was removed.",
                dir.display()
            )));
        }
    }
    let mut marked: HashSet<String> = HashSet::new();
    for repo in &repos {
        let manifests = repo.dir.join("_manifests");
        let mut tags: Vec<(String, String)> = Vec::new();
        for (tag, path) in subdirs(&manifests.join("tags")) {
            // A link the registry left half written (it writes them in place) must not make a tag's image
            // look untagged: stop instead.
            let Some(digest) = read_link(&path.join("current/link")) else {
                return Err(Error::runtime(format!(
                    "The tag {}:{tag} has no readable link in the storage ({}), so gc cannot tell what it keeps: \
                     nothing was removed. Push the tag again (or delete it with skopeo delete), then run gc again.",
                    repo.name,
                    path.join("current/link").display()
                )));
            };
            tags.push((tag, digest));
        }
        plan.fingerprint
            .extend(tags.iter().map(|(t, d)| format!("{}:{t}={d}", repo.name)));
        // Tagged manifests, then every manifest a kept index refers to.
        let mut keep: BTreeSet<String> = BTreeSet::new();
        let mut queue: Vec<(String, String)> = tags.iter().map(|(t, d)| (format!("tag {t}"), d.clone())).collect();
        while let Some((how, digest)) = queue.pop() {
            if !keep.insert(digest.clone()) {
                continue;
            }
            let manifest = read_manifest(data_dir, &digest).map_err(|why| {
                Error::runtime(format!(
                    "The manifest {digest} of {} ({how}) {why}, so gc cannot tell what it needs: nothing was removed. \
                     See what is damaged with registry-up verify --deep; push that image again (or delete its tag \
                     with skopeo delete), then run gc again.",
                    repo.name
                ))
            })?;
            marked.insert(digest.clone());
            marked.extend(manifest.blobs().map(String::from));
            for child in manifest.manifests.iter().flatten() {
                queue.push((format!("in index {digest}"), child.digest.clone()));
            }
        }
        plan.kept_manifests += keep.len();
        let revisions = linked(&manifests.join("revisions"));
        plan.fingerprint
            .extend(revisions.iter().map(|(d, _)| format!("{}@{d}", repo.name)));
        for (digest, path) in revisions {
            if !keep.contains(&digest) {
                plan.folders.push((path.clone(), 0));
                plan.manifests.push((repo.name.clone(), digest.clone()));
                // The tag history's entries for it go too.
                for (_, tag_dir) in subdirs(&manifests.join("tags")) {
                    for (old, entry) in linked(&tag_dir.join("index")) {
                        if old == digest {
                            plan.folders.push((entry, 0));
                        }
                    }
                }
            }
        }
        for (_, path) in subdirs(&repo.dir.join("_uploads")) {
            // Last touched: when it started, or when data was last appended, whichever is later.
            let started = std::fs::read_to_string(path.join("startedat"))
                .ok()
                .and_then(|t| chrono_free_rfc3339(t.trim()));
            let written = ["data", ""]
                .iter()
                .filter_map(|f| std::fs::metadata(path.join(f)).and_then(|m| m.modified()).ok())
                .max();
            if started.max(written).is_some_and(|at| at + ABANDONED_UPLOAD < now) {
                plan.uploads.push((repo.name.clone(), path.clone()));
                plan.folders.push((path, 0));
            }
        }
    }
    // Blobs nothing kept names, and (removed first) the repositories' links to them.
    let mut doomed: HashSet<String> = HashSet::new();
    let mut blob_folders = Vec::new();
    for (_, prefix) in subdirs(&root.join("blobs/sha256")) {
        for (hex, dir) in subdirs(&prefix) {
            let digest = format!("sha256:{hex}");
            if blob_dir(&digest).is_none() {
                continue;
            }
            if marked.contains(&digest) {
                plan.kept_blobs += 1;
                continue;
            }
            let size = std::fs::metadata(dir.join("data")).map(|m| m.len()).unwrap_or(0);
            plan.blobs.push((digest.clone(), size));
            blob_folders.push((dir, 0));
            doomed.insert(digest);
        }
    }
    for repo in &repos {
        for (digest, path) in linked(&repo.dir.join("_layers")) {
            if doomed.contains(&digest) {
                plan.folders.push((path, 0));
            }
        }
    }
    plan.folders.extend(blob_folders);
    for (path, bytes) in &mut plan.folders {
        *bytes = crate::host::tree_size(path);
    }
    Ok(plan)
}

/// The manifest stored as blob `digest`, parsed; or why it cannot be.
fn read_manifest(data_dir: &Path, digest: &str) -> std::result::Result<AnyManifest, String> {
    let rel = blob_dir(digest).ok_or("is not a sha256 digest")?;
    let dir = real_dir(data_dir, &rel).ok_or("has no data in the storage")?;
    let raw = std::fs::read(dir.join("data")).map_err(|e| format!("cannot be read ({e})"))?;
    let actual = crate::digest::oci_digest(&raw);
    if actual != digest {
        return Err(format!("is damaged (its data hashes to {actual})"));
    }
    AnyManifest::parse(&raw).map_err(|e| format!("is not a manifest ({e})"))
}

/// `2026-11-29T18:00:00.123456789Z` (the registry's startedat) as a time; None for anything else.
fn chrono_free_rfc3339(text: &str) -> Option<SystemTime> {
    let (date, time) = text.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.trim_end_matches('Z');
    let clock = time.split(['+', '.']).next()?;
    let mut t = clock.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (t.next()??, t.next()??, t.next()??);
    // Days since 1970-01-01 (civil calendar, Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + h * 3600 + min * 60 + s;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Removes what `plan` names (each folder only if it is still a real folder in the storage); returns the
/// bytes freed. Only garbage is named, so a collection stopped half way loses nothing; manifests and links
/// go before the blobs they name, so what it leaves is garbage the next run still finds.
pub fn apply(data_dir: &Path, plan: &Plan) -> Result<u64> {
    let mut freed = 0;
    for (path, bytes) in &plan.folders {
        let Ok(rel) = path.strip_prefix(data_dir) else {
            continue;
        };
        let Some(dir) = real_dir(data_dir, rel) else {
            continue;
        };
        match std::fs::remove_dir_all(&dir) {
            // The registry's own upload purge may have been first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::runtime(crate::host::io_failed("remove", &dir, &e))),
            Ok(()) => freed += bytes,
        }
    }
    Ok(freed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_blob(data: &Path, bytes: &[u8]) -> String {
        let digest = crate::digest::oci_digest(bytes);
        let dir = data.join(blob_dir(&digest).unwrap());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("data"), bytes).unwrap();
        digest
    }

    fn link(dir: &Path, digest: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("link"), digest).unwrap();
    }

    fn image(data: &Path, repo: &Path, seed: &str) -> (String, String) {
        let layer = put_blob(data, format!("layer {seed}").as_bytes());
        let config = put_blob(data, format!("config {seed}").as_bytes());
        for d in [&layer, &config] {
            link(&repo.join("_layers/sha256").join(&d[7..]), d);
        }
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":1}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":1}}]}}"#
        );
        let digest = put_blob(data, manifest.as_bytes());
        link(&repo.join("_manifests/revisions/sha256").join(&digest[7..]), &digest);
        (digest, layer)
    }

    fn tag(repo: &Path, name: &str, digest: &str) {
        link(&repo.join("_manifests/tags").join(name).join("current"), digest);
        link(
            &repo
                .join("_manifests/tags")
                .join(name)
                .join("index/sha256")
                .join(&digest[7..]),
            digest,
        );
    }

    #[test]
    fn tagged_images_and_every_platform_of_an_index_are_kept_the_rest_is_garbage() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path();
        let repo = data.join(V2).join("repositories/team/app");
        let (kept, kept_layer) = image(data, &repo, "kept");
        tag(&repo, "1", &kept);
        tag(&repo, "also", &kept);
        let (amd, _) = image(data, &repo, "amd64");
        let (arm, _) = image(data, &repo, "arm64");
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{amd}","size":1}},{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{arm}","size":1}}]}}"#
        );
        let index = put_blob(data, index.as_bytes());
        link(&repo.join("_manifests/revisions/sha256").join(&index[7..]), &index);
        tag(&repo, "multi", &index);
        // A tag that moved on: its old image is untagged now, and nothing refers to it.
        let (old, old_layer) = image(data, &repo, "old");
        tag(&repo, "moved", &old);
        let (new, _) = image(data, &repo, "new");
        link(&repo.join("_manifests/tags/moved/current"), &new);
        link(&repo.join("_manifests/tags/moved/index/sha256").join(&new[7..]), &new);

        let found = plan(data, SystemTime::now()).unwrap();
        assert_eq!(found.manifests, vec![("team/app".to_string(), old.clone())]);
        let doomed: Vec<&str> = found.blobs.iter().map(|(d, _)| d.as_str()).collect();
        assert!(
            doomed.contains(&old.as_str()) && doomed.contains(&old_layer.as_str()),
            "{doomed:?}"
        );
        assert_eq!(
            doomed.len(),
            3,
            "the old manifest, its layer and its config: {doomed:?}"
        );
        assert_eq!(found.kept_manifests, 5);
        let before = crate::host::tree_size(data);
        let freed = apply(data, &found).unwrap();
        assert_eq!(freed, found.bytes());
        assert_eq!(
            before - crate::host::tree_size(data),
            freed,
            "the plan's bytes are what goes"
        );
        assert!(data.join(blob_dir(&kept_layer).unwrap()).exists());
        assert!(data.join(blob_dir(&amd).unwrap()).exists() && data.join(blob_dir(&arm).unwrap()).exists());
        assert!(!repo.join("_manifests/tags/moved/index/sha256").join(&old[7..]).exists());
        assert_eq!(
            plan(data, SystemTime::now()).unwrap().bytes(),
            0,
            "a second run finds nothing"
        );
    }

    #[test]
    fn a_kept_manifest_that_cannot_be_read_stops_everything() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path();
        let repo = data.join(V2).join("repositories/app");
        let (digest, _) = image(data, &repo, "x");
        tag(&repo, "1", &digest);
        let _garbage = put_blob(data, b"garbage");
        std::fs::write(data.join(blob_dir(&digest).unwrap()).join("data"), b"{}").unwrap();
        let e = plan(data, SystemTime::now()).unwrap_err();
        assert!(
            e.message.contains("is damaged") && e.message.contains("nothing was removed"),
            "{}",
            e.message
        );
    }

    #[test]
    fn the_registry_s_upload_times_are_read() {
        let t = chrono_free_rfc3339("2026-11-29T18:00:00.123456789Z").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1_795_975_200
        );
        assert!(chrono_free_rfc3339("yesterday").is_none());
    }
}
