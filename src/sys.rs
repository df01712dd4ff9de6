//! The few facts about the host that need libc or a well-known path.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Whether systemd runs as the init system (the check sd_booted(3) documents).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Cryptographically secure random bytes (ring, the one crypto library in the tree).
pub fn random_bytes(buf: &mut [u8]) {
    use ring::rand::SecureRandom;
    ring::rand::SystemRandom::new()
        .fill(buf)
        .expect("the operating system's random number generator failed");
}

/// A random string of lowercase hex digits, `2 * bytes` long.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    random_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `path` is a file this process may execute.
pub fn executable(path: &std::path::Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: as above.
    path.is_file() && unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
}
