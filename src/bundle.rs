//! Offline bundles: the format, and the checks `up --bundle` makes. `registry-up bundle` (on a connected
//! host, commands/bundle.rs) pulls the registry and nginx images with
//! oci-client and writes one tar: `manifest.json`, `SHA256SUMS`, and one OCI archive per image, which
//! is what `podman load` reads (names kept through the `org.opencontainers.image.ref.name` annotation).
//! `up --bundle` (on the air-gapped host) checks every checksum before it loads anything.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::{Copy, Sha256};
use crate::error::{Error, Result};
use crate::runtime::podman::Podman;

pub const MANIFEST: &str = "manifest.json";
pub const SUMS: &str = "SHA256SUMS";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleManifest {
    pub format: u32,
    pub created_by: String,
    pub arch: String,
    pub images: Vec<BundleImage>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleImage {
    /// `registry` or `nginx`.
    pub role: String,
    pub reference: String,
    /// The image manifest's digest, as pulled.
    pub digest: String,
    pub file: String,
    pub sha256: String,
    pub size: u64,
}

/// A bundle checked against its checksums, its archives unpacked into a temp folder.
pub struct CheckedBundle {
    pub manifest: BundleManifest,
    dir: tempfile::TempDir,
}

impl CheckedBundle {
    /// Loads every image with Podman; returns Podman's summary lines.
    pub fn load(&self, podman: &Podman) -> Result<Vec<String>> {
        self.manifest
            .images
            .iter()
            .map(|image| podman.load(&self.dir.path().join(&image.file)))
            .collect()
    }

    pub fn reference(&self, role: &str) -> Option<&str> {
        self.manifest
            .images
            .iter()
            .find(|i| i.role == role)
            .map(|i| i.reference.as_str())
    }
}

fn damaged(bundle: &Path, what: String) -> Error {
    Error::usage(format!(
        "The bundle {} is damaged: {what}. Copy it again (compare its size and sha256sum with the original); nothing was loaded.",
        bundle.display()
    ))
}

/// Reads `bundle`, checking every member against SHA256SUMS and manifest.json before anything is loaded.
pub fn check(bundle: &Path) -> Result<CheckedBundle> {
    let file = File::open(bundle).map_err(|e| {
        Error::usage(format!(
            "Cannot read the bundle {} ({e}): give --bundle the file `registry-up bundle` wrote.",
            bundle.display()
        ))
    })?;
    let dir = tempfile::Builder::new()
        .prefix("registry-up-bundle-")
        .tempdir()
        .map_err(|e| {
            Error::runtime(format!(
                "Cannot create a temp folder ({e}): point TMPDIR at a writable folder with room for the bundle."
            ))
        })?;
    let mut archive = tar::Archive::new(file);
    let mut manifest: Option<BundleManifest> = None;
    let mut sums: Option<String> = None;
    let mut seen: Vec<(String, String, u64)> = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| damaged(bundle, format!("it is not a tar archive ({e})")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| damaged(bundle, format!("it is truncated or not a tar archive ({e})")))?;
        let name = entry
            .path()
            .map_err(|e| damaged(bundle, e.to_string()))?
            .to_string_lossy()
            .into_owned();
        match name.as_str() {
            MANIFEST => {
                let mut text = String::new();
                entry
                    .read_to_string(&mut text)
                    .map_err(|e| damaged(bundle, format!("{MANIFEST} is unreadable ({e})")))?;
                manifest = Some(
                    serde_json::from_str(&text)
                        .map_err(|e| damaged(bundle, format!("{MANIFEST} is not valid ({e})")))?,
                );
            }
            SUMS => {
                let mut text = String::new();
                entry
                    .read_to_string(&mut text)
                    .map_err(|e| damaged(bundle, format!("{SUMS} is unreadable ({e})")))?;
                sums = Some(text);
            }
            member if !member.contains('/') && member.ends_with(".oci.tar") => {
                let out_path = dir.path().join(member);
                let unpack_failed = |e: std::io::Error| {
                    Error::runtime(format!(
                        "Cannot unpack the bundle into {} ({e}): free space there, or point TMPDIR at a folder with room.",
                        dir.path().display()
                    ))
                };
                let out = File::create(&out_path).map_err(unpack_failed)?;
                let (sha256, size) = Sha256::copy(&mut entry, out).map_err(|e| match e {
                    Copy::Read(e) => damaged(bundle, format!("{member} is truncated ({e})")),
                    Copy::Write(e) => unpack_failed(e),
                })?;
                seen.push((member.to_string(), sha256, size));
            }
            other => return Err(damaged(bundle, format!("it holds an unexpected file {other}"))),
        }
    }
    let manifest = manifest.ok_or_else(|| damaged(bundle, format!("{MANIFEST} is missing")))?;
    let sums = sums.ok_or_else(|| damaged(bundle, format!("{SUMS} is missing")))?;
    if manifest.format != 1 || manifest.images.is_empty() {
        return Err(damaged(bundle, format!("{MANIFEST} is of an unknown format")));
    }
    for image in &manifest.images {
        let listed = sums
            .lines()
            .any(|l| l.split_once("  ") == Some((image.sha256.as_str(), image.file.as_str())));
        if !listed {
            return Err(damaged(
                bundle,
                format!("{SUMS} and {MANIFEST} disagree about {}", image.file),
            ));
        }
        match seen.iter().find(|(name, _, _)| *name == image.file) {
            None => return Err(damaged(bundle, format!("{} is missing", image.file))),
            Some((_, _, size)) if *size != image.size => {
                return Err(damaged(
                    bundle,
                    format!("{} has {size} bytes instead of {}", image.file, image.size),
                ))
            }
            Some((_, sha, _)) if *sha != image.sha256 => {
                return Err(damaged(
                    bundle,
                    format!(
                        "{} does not match its checksum (sha256 {sha}, expected {})",
                        image.file, image.sha256
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(CheckedBundle { manifest, dir })
}
