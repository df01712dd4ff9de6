//! The verification image, made on the fly: a one-file tar layer of pseudo-random bytes from a fresh
//! random seed. The bytes are produced in chunks, never held whole, so a 1 GiB round trip runs in a few
//! megabytes, and the same seed regenerates them to compare what is pulled back.

use bytes::Bytes;

// The chunks of the stream that is sent: large enough that per-chunk costs vanish, small enough to stay flat.
const CHUNK: usize = 4 * 1024 * 1024;
const BLOCK: usize = 512;

/// A layer of `size` payload bytes; `seed` fixes its contents.
#[derive(Debug, Clone, Copy)]
pub struct Layer {
    pub size: u64,
    pub seed: u64,
    pub mtime: u64,
}

impl Layer {
    pub fn new(size: u64) -> Self {
        let mut seed = [0u8; 8];
        crate::digest::random_bytes(&mut seed);
        let mtime = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        Layer {
            size,
            seed: u64::from_le_bytes(seed) | 1,
            mtime,
        }
    }

    /// Length of the whole tar: header, payload padded to 512, two zero blocks.
    pub fn tar_len(&self) -> u64 {
        BLOCK as u64 + self.size.div_ceil(BLOCK as u64) * BLOCK as u64 + 2 * BLOCK as u64
    }

    /// The tar archive, chunk by chunk.
    pub fn chunks(&self) -> Chunks {
        Chunks {
            layer: *self,
            rng: self.seed,
            emitted: 0,
            header_done: false,
            finished: false,
        }
    }
}

pub struct Chunks {
    layer: Layer,
    rng: u64,
    /// Payload bytes emitted so far.
    emitted: u64,
    header_done: bool,
    finished: bool,
}

impl Iterator for Chunks {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if !self.header_done {
            self.header_done = true;
            return Some(Bytes::from(
                tar_header("registry-up-check.bin", self.layer.size, self.layer.mtime).to_vec(),
            ));
        }
        if self.finished {
            return None;
        }
        let left = self.layer.size - self.emitted;
        if left == 0 {
            // Padding to a whole block, then the end-of-archive marker.
            let padding = (BLOCK as u64 - self.layer.size % BLOCK as u64) % BLOCK as u64;
            self.finished = true;
            return Some(Bytes::from(vec![0u8; padding as usize + 2 * BLOCK]));
        }
        let n = left.min(CHUNK as u64) as usize;
        let mut buf = vec![0u8; n];
        for word in buf.chunks_mut(8) {
            // xorshift64*: fast, and fresh per run through the random seed.
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            let v = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            word.copy_from_slice(&v[..word.len()]);
        }
        self.emitted += n as u64;
        Some(Bytes::from(buf))
    }
}

/// A POSIX ustar header for one regular file (the tar crate's, so the layout is not ours to get wrong).
fn tar_header(name: &str, size: u64, mtime: u64) -> [u8; BLOCK] {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).expect("a short relative name");
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(size);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    *h.as_bytes()
}

/// The image config for a layer with digest `diff_id`.
pub fn config_json(diff_id: &str, label: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Labels": { "org.registry-up.check": label } },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    }))
    .expect("json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_is_read_by_tar_and_regenerates_identically() {
        let layer = Layer::new(3 * 1024 * 1024 + 777);
        let bytes: Vec<u8> = layer.chunks().flat_map(|c| c.to_vec()).collect();
        assert_eq!(bytes.len() as u64, layer.tar_len());
        let again: Vec<u8> = layer.chunks().flat_map(|c| c.to_vec()).collect();
        assert_eq!(bytes, again, "the same seed gives the same bytes");
        assert_ne!(
            Layer::new(1000).chunks().nth(1),
            Layer::new(1000).chunks().nth(1),
            "fresh per layer"
        );

        let tmp = tempfile::tempdir().unwrap();
        let archive = tmp.path().join("layer.tar");
        std::fs::write(&archive, &bytes).unwrap();
        let out = std::process::Command::new("tar")
            .arg("-tvf")
            .arg(&archive)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(
            listing.contains("3146505") && listing.contains("registry-up-check.bin"),
            "{listing}"
        );
        let out = std::process::Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(tmp.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        let payload = std::fs::read(tmp.path().join("registry-up-check.bin")).unwrap();
        assert_eq!(payload, bytes[512..512 + payload.len()]);
    }
}
