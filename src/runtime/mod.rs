//! Runtime: Podman and systemd, driven through their command-line tools (one small module each), so a
//! test can point them at its own configuration (CONTAINERS_CONF) without test-only flags here.

pub mod podman;
mod pull;
pub mod systemd;
