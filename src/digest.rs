//! SHA-256 digests (whole or streamed) and random tokens, from ring: the one crypto library in the tree.

use std::io::{Read, Write};

/// Cryptographically secure random bytes.
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
    hex(&buf)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `data` as lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

/// The HEX of a `sha256:HEX` digest written as registries write it (64 lowercase hex digits), else None:
/// what may become a file name.
pub fn sha256_part(digest: &str) -> Option<&str> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// `sha256:HEX`, the OCI digest of `data`.
pub fn oci_digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// A SHA-256 fed piece by piece, counting the bytes (for blobs too large to hold).
pub struct Sha256 {
    ctx: ring::digest::Context,
    pub size: u64,
}

impl Sha256 {
    pub fn new() -> Self {
        Sha256 {
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
            size: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.ctx.update(data);
        self.size += data.len() as u64;
    }

    /// Lowercase hex of the digest.
    pub fn hex(self) -> String {
        hex(self.ctx.finish().as_ref())
    }

    /// Reads `reader` to its end: (hex digest, bytes read).
    pub fn of_reader(reader: impl Read) -> std::io::Result<(String, u64)> {
        Sha256::copy(reader, std::io::sink()).map_err(|e| match e {
            Copy::Read(e) | Copy::Write(e) => e,
        })
    }

    /// Copies `reader` to `writer`, hashing on the way: (hex digest, bytes copied). The error says
    /// which side failed (a truncated input is not a full disk).
    pub fn copy(mut reader: impl Read, mut writer: impl Write) -> Result<(String, u64), Copy> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match reader.read(&mut buf).map_err(Copy::Read)? {
                0 => break,
                n => {
                    hasher.update(&buf[..n]);
                    writer.write_all(&buf[..n]).map_err(Copy::Write)?;
                }
            }
        }
        let size = hasher.size;
        Ok((hasher.hex(), size))
    }
}

/// Which side of [`Sha256::copy`] failed.
#[derive(Debug)]
pub enum Copy {
    Read(std::io::Error),
    Write(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_and_whole_digests_agree() {
        let data = vec![7u8; 3 << 20];
        let (streamed, size) = Sha256::of_reader(&data[..]).unwrap();
        assert_eq!(
            (streamed.as_str(), size),
            (sha256_hex(&data).as_str(), data.len() as u64)
        );
        assert_eq!(
            oci_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
