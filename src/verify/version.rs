//! The registry's version, for the `registry` check. Reading it takes `podman exec … registry --version`
//! (~0.2 s, most of a small verify on a 2-core host). It cannot change unless the image does, so it is
//! kept by image ID in the config folder: each verify reads the running container's image ID live (the
//! pod check's `podman container inspect`), and runs the binary again only when that ID is new.

use std::path::{Path, PathBuf};

use crate::runtime::podman::Podman;

/// Where the version read last is kept, and whether this run may write it (it holds the appliance's lock).
#[derive(Debug, Clone)]
pub struct Kept {
    pub path: PathBuf,
    pub write: bool,
}

/// The version of the registry binary in `container`, whose image is `image_id`.
pub fn of(podman: &Podman, container: &str, image_id: &str, kept: &Kept) -> Result<String, String> {
    if let Some(version) = read(&kept.path, image_id) {
        return Ok(version);
    }
    let version = podman.registry_version(container).map_err(|e| e.message)?;
    // Kept only if the container still runs that image: it may have been replaced (podman auto-update, by
    // hand) between the inspect and the exec, and then the version is another image's.
    let same = || {
        podman
            .inspect_containers(&[container])
            .ok()
            .flatten()
            .is_some_and(|infos| infos[0].image_id == image_id)
    };
    if kept.write && !image_id.is_empty() && same() {
        // Only a cache: a failed write costs the next run the exec again, nothing else.
        let line = format!("{image_id} {version}\n");
        let _ = crate::atomic::write_atomic(&kept.path, line.as_bytes(), crate::layout::PUBLIC);
    }
    Ok(version)
}

/// The version kept for `image_id`, if that is the image it was read in.
fn read(path: &Path, image_id: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let (id, version) = text.trim_end().split_once(' ')?;
    (!image_id.is_empty() && id == image_id && !version.is_empty()).then(|| version.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_version_is_used_only_for_its_own_image() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry-version");
        assert_eq!(read(&path, "sha256:aa"), None, "nothing kept yet");
        std::fs::write(&path, "sha256:aa github.com/distribution/distribution/v3 v3.0.0\n").unwrap();
        assert_eq!(
            read(&path, "sha256:aa").as_deref(),
            Some("github.com/distribution/distribution/v3 v3.0.0")
        );
        assert_eq!(read(&path, "sha256:bb"), None, "another image: read it again");
        assert_eq!(read(&path, ""), None, "no image ID: nothing to match");
        std::fs::write(&path, "sha256:aa\n").unwrap();
        assert_eq!(read(&path, "sha256:aa"), None, "a line without a version");
    }
}
