//! Runtime: Podman and systemd, driven through their command-line tools (one small module each), so a
//! test can point them at its own configuration (CONTAINERS_CONF) without test-only flags here.

pub mod podman;
mod pull;
pub mod systemd;

use std::path::PathBuf;

/// Finds an executable on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| crate::sys::executable(candidate))
}
