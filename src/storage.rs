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
