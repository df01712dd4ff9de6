//! Offline bundles: the format, and the checks `up --bundle` makes. `registry-up bundle` (on a connected
//! host, commands/bundle.rs) pulls the registry and nginx images with
//! oci-client and writes one tar: `manifest.json`, `SHA256SUMS`, one OCI archive per image, which
//! is what `podman load` reads (names kept through the `org.opencontainers.image.ref.name` annotation),
//! and (format 2) the tool itself: the `registry-up` binary and, when given, its .deb, so the user copies
//! one file. Format 3 adds the workloads' images (`bundle --images`) as one OCI image layout under
//! `images/`, each blob once, which `import` and `up --bundle` push into the appliance. `up --bundle`
//! (on the air-gapped host) checks every checksum before it loads or pushes anything.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::{Copy, Sha256};
use crate::error::{Error, Result};
use crate::runtime::podman::Podman;

pub const MANIFEST: &str = "manifest.json";
pub const SUMS: &str = "SHA256SUMS";
/// The binary's member name: what the README's `tar -xf BUNDLE registry-up` extracts.
pub const TOOL_BINARY: &str = "registry-up";
/// Format 1 held the images alone; 2 adds `tools`; 3 adds `workloads` (written only when there are some,
/// so a bundle without them still reads with a registry-up that knows format 2).
pub const FORMAT: u32 = 3;
/// Where format 3 keeps the workloads' OCI image layout.
pub const WORKLOADS: &str = "images/";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleManifest {
    pub format: u32,
    pub created_by: String,
    pub arch: String,
    pub images: Vec<BundleImage>,
    /// registry-up itself (format 2): the binary, and the .deb when one was given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<BundleTool>,
    /// The workloads' images (format 3), in `images/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<Workload>,
    /// Blobs `bundle --since` left out because the older bundle holds them: the registry must have them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub omitted: Vec<Omitted>,
}

/// A blob a top-up bundle leaves to an older one, and an image of that bundle holding it: import links
/// it from that image's repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Omitted {
    pub digest: String,
    pub image: String,
}

/// One image of the workloads, as `bundle --images` pulled it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    /// The full upstream name: `docker.io/library/nginx:1.27`.
    pub reference: String,
    /// The digest of what the bundle holds for it (an index, or a single image's manifest).
    pub digest: String,
    /// The upstream index's digest when `--arch` left platforms out, so the index was rewritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<String>,
    /// The platforms held (`linux/arm64`); empty for a single image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleTool {
    /// `binary` or `deb`.
    pub kind: String,
    pub file: String,
    /// The binary: its `--version` without the name ("0.1.0 (COMMIT)"); the .deb: its package Version.
    pub version: String,
    pub sha256: String,
    pub size: u64,
}

impl BundleTool {
    /// What registry-up writes: the binary as `registry-up`, a .deb as `registry-up_VERSION_ARCH.deb`.
    fn well_formed(&self) -> bool {
        if self.version.chars().any(char::is_control) {
            return false;
        }
        match self.kind.as_str() {
            "binary" => self.file == TOOL_BINARY,
            "deb" => {
                self.file.starts_with("registry-up_")
                    && self.file.ends_with(".deb")
                    && !self.file.contains('/')
                    && !self.file.chars().any(char::is_control)
            }
            _ => false,
        }
    }
}

/// Whether `name` is a member that can only be one of a manifest's tools.
fn tool_member(name: &str) -> bool {
    name == TOOL_BINARY || (name.starts_with("registry-up_") && name.ends_with(".deb") && !name.contains('/'))
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
    /// The workloads' images, read in place from the bundle (every blob already checked).
    pub workloads: Option<crate::source::Source>,
}

impl CheckedBundle {
    /// Loads every image with Podman and checks that each name now points at the image the bundle
    /// recorded (its manifest digest); returns Podman's summary lines.
    pub fn load(&self, podman: &Podman) -> Result<Vec<String>> {
        let mut loaded = Vec::new();
        for image in &self.manifest.images {
            let summary = podman.load(&self.dir.path().join(&image.file))?;
            // Exactly the one name listed: an archive that brings more images than it should is refused.
            let names = crate::runtime::podman::loaded_names(&summary);
            if names != [crate::runtime::podman::full_name(&image.reference)] {
                return Err(Error::usage(format!(
                    "The bundle's {} loaded {} instead of {} alone: it was altered. Make it again with registry-up \
                     bundle on the connected host, and remove what it loaded with podman rmi.",
                    printable(&image.file),
                    printable(&names.join(", ")),
                    image.reference
                )));
            }
            loaded.push(summary);
            let digest = podman.image_digest(&image.reference)?;
            if digest != image.digest {
                return Err(Error::usage(format!(
                    "The bundle's {} loaded as {} with the digest {digest}, but the bundle recorded {}: it was \
                     altered. Make it again with registry-up bundle on the connected host, and remove the image \
                     with podman rmi {}.",
                    printable(&image.file),
                    image.reference,
                    printable(&image.digest),
                    image.reference
                )));
            }
        }
        Ok(loaded)
    }

    /// The version of registry-up the bundle carries, if it carries the binary.
    pub fn tool_version(&self) -> Option<&str> {
        self.manifest
            .tools
            .iter()
            .find(|t| t.kind == "binary")
            .map(|t| t.version.as_str())
    }

    pub fn reference(&self, role: &str) -> Option<&str> {
        self.manifest
            .images
            .iter()
            .find(|i| i.role == role)
            .map(|i| i.reference.as_str())
    }
}

/// `text` with control characters escaped, so a crafted name cannot drive the terminal.
pub fn printable(text: &str) -> String {
    crate::error::printable(text, false)
}

/// The manifest digest and name an OCI archive's index.json records for its one image.
fn archive_index(path: &Path) -> std::result::Result<(String, Option<String>), String> {
    let file = crate::bounded::open_regular(path).map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(file);
    let mut seen = std::collections::BTreeSet::new();
    let mut index = None;
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let name = entry.path().map_err(|e| e.to_string())?.to_string_lossy().into_owned();
        // A second copy of a member (index.json above all) would be what Podman reads, not what was checked.
        if !seen.insert(name.trim_start_matches("./").to_string()) {
            return Err(format!("it holds {} twice", printable(&name)));
        }
        if name.trim_start_matches("./") == "index.json" {
            let bytes = crate::bounded::read_at_most(&mut entry, crate::bounded::MANIFEST as u64)
                .map_err(|e| format!("index.json: {e}"))?;
            index = Some(String::from_utf8(bytes).map_err(|_| "its index.json is not UTF-8 text")?);
        }
    }
    let text = index.ok_or("it has no index.json")?;
    let index: oci_client::manifest::OciImageIndex = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let [only] = index.manifests.as_slice() else {
        return Err(format!(
            "its index.json lists {} images instead of one",
            index.manifests.len()
        ));
    };
    let name = only
        .annotations
        .as_ref()
        .and_then(|a| a.get("org.opencontainers.image.ref.name").cloned());
    Ok((only.digest.clone(), name))
}

impl BundleImage {
    /// What registry-up writes: a known role, a valid reference, a plain `.oci.tar` file name.
    fn well_formed(&self) -> bool {
        matches!(self.role.as_str(), "registry" | "nginx")
            && self.reference.parse::<oci_client::Reference>().is_ok()
            && !self.file.contains('/')
            && self.file.ends_with(".oci.tar")
    }
}

/// What is wrong with the `i`th entry of one of a manifest's lists (images or tools; `key` gives its file
/// and its role or kind), if anything: a file or role given twice, or a form registry-up never writes.
fn listing_problem<T>(
    items: &[T],
    i: usize,
    key: impl Fn(&T) -> (&str, &str),
    well_formed: impl Fn(&T) -> bool,
) -> Option<String> {
    let (file, kind) = key(&items[i]);
    let again = items[..i].iter().map(&key).any(|(f, k)| f == file || k == kind);
    (again || !well_formed(&items[i])).then(|| {
        format!(
            "{MANIFEST} lists {} ({}) more than once or in a form registry-up does not write",
            printable(file),
            printable(kind)
        )
    })
}

/// What is wrong with member `file` against SHA256SUMS and what was read, if anything: not listed in
/// SHA256SUMS, missing, or of another size or checksum than recorded.
fn sum_problem(file_name: &str, sha256: &str, size: u64, sums: &str, seen: &[(String, String, u64)]) -> Option<String> {
    let file = printable(file_name);
    let listed = sums.lines().any(|l| l.split_once("  ") == Some((sha256, file_name)));
    if !listed {
        return Some(format!("{SUMS} and {MANIFEST} disagree about {file}"));
    }
    match seen.iter().find(|(name, _, _)| name == file_name) {
        None => Some(format!("{file} is missing")),
        Some((_, _, got)) if *got != size => Some(format!("{file} has {got} bytes instead of {size}")),
        Some((_, sha, _)) if sha != sha256 => Some(format!(
            "{file} does not match its checksum (sha256 {sha}, expected {})",
            printable(sha256)
        )),
        Some(_) => None,
    }
}

/// What is wrong with the member of `image`, unpacked in `dir`, if anything: its checksum (above), or an
/// archive of another image.
fn member_problem(image: &BundleImage, sums: &str, seen: &[(String, String, u64)], dir: &Path) -> Option<String> {
    if let Some(problem) = sum_problem(&image.file, &image.sha256, image.size, sums, seen) {
        return Some(problem);
    }
    let file = printable(&image.file);
    // The archive holds the image the manifest recorded, under its name.
    match archive_index(&dir.join(&image.file)) {
        Ok((digest, name)) if digest == image.digest && name.as_deref() == Some(image.reference.as_str()) => None,
        Ok((digest, name)) => Some(format!(
            "{file} holds {} ({}), not {} ({}) as {MANIFEST} says",
            printable(name.as_deref().unwrap_or("an unnamed image")),
            printable(&digest),
            image.reference,
            printable(&image.digest)
        )),
        Err(why) => Some(format!("{file} is not an OCI archive: {why}")),
    }
}

/// A bundle of a format this version does not know; manifest.json, its first member, says which.
fn newer(bundle: &Path, format: u64, created_by: &str) -> Error {
    Error::usage(format!(
        "The bundle {} was made by a newer registry-up ({}, bundle format {format}): use that version, which the \
         bundle carries (tar -xf {} registry-up).",
        bundle.display(),
        printable(created_by),
        bundle.display()
    ))
}

fn damaged(bundle: &Path, what: String) -> Error {
    Error::usage(format!(
        "The bundle {} is damaged: {what}. Copy it again (compare its size and sha256sum with the original); nothing was loaded.",
        bundle.display()
    ))
}

/// A bundle's own text member (its manifest, its checksums): 64 MiB holds tens of thousands of images;
/// a member claiming more is refused, not read into memory.
fn bounded_text(entry: impl Read) -> std::io::Result<String> {
    let bytes = crate::bounded::read_at_most(entry, 64 << 20)?;
    String::from_utf8(bytes).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))
}

/// Reads `bundle`, checking every member against SHA256SUMS and manifest.json before anything is loaded.
pub fn check(bundle: &Path) -> Result<CheckedBundle> {
    let file = crate::bounded::open_regular(bundle).map_err(|e| {
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
    let mut names: Vec<String> = Vec::new();
    let mut workload_members = std::collections::HashMap::new();
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
        // Each member once: a second copy under the same name would replace what was checked.
        if names.contains(&name) {
            return Err(damaged(bundle, format!("it holds {} twice", printable(&name))));
        }
        names.push(name.clone());
        match name.as_str() {
            MANIFEST => {
                let text =
                    bounded_text(&mut entry).map_err(|e| damaged(bundle, format!("{MANIFEST} is unreadable ({e})")))?;
                // The format first, alone: a newer bundle may not parse as this version's manifest.
                let value: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| damaged(bundle, format!("{MANIFEST} is not valid ({e})")))?;
                if let Some(format) = value["format"].as_u64().filter(|f| *f > u64::from(FORMAT)) {
                    return Err(newer(bundle, format, value["created_by"].as_str().unwrap_or("unknown")));
                }
                manifest = Some(
                    serde_json::from_value(value)
                        .map_err(|e| damaged(bundle, format!("{MANIFEST} is not valid ({e})")))?,
                );
            }
            SUMS => {
                let text =
                    bounded_text(&mut entry).map_err(|e| damaged(bundle, format!("{SUMS} is unreadable ({e})")))?;
                sums = Some(text);
            }
            // The tool is checked like the images but never unpacked: up does not run it.
            member if tool_member(member) => {
                let (sha256, size) = Sha256::copy(&mut entry, std::io::sink()).map_err(|e| match e {
                    Copy::Read(e) | Copy::Write(e) => damaged(bundle, format!("{member} is truncated ({e})")),
                })?;
                seen.push((member.to_string(), sha256, size));
            }
            // The workloads' layout (format 3): hashed, never unpacked; import reads it in place.
            member if member.starts_with(WORKLOADS) => {
                if manifest.as_ref().is_none_or(|m| m.format < 3) || !workload_member(member) {
                    return Err(damaged(
                        bundle,
                        format!("it holds an unexpected file {}", printable(member)),
                    ));
                }
                let offset = entry.raw_file_position();
                let (sha256, size) = Sha256::copy(&mut entry, std::io::sink()).map_err(|e| match e {
                    Copy::Read(e) | Copy::Write(e) => damaged(bundle, format!("{member} is truncated ({e})")),
                })?;
                // A blob is named by its checksum: one flipped byte anywhere is caught here.
                if let Some(hex) = member.strip_prefix("images/blobs/sha256/") {
                    if hex != sha256 {
                        return Err(damaged(
                            bundle,
                            format!("{member} does not match its checksum (sha256 {sha256})"),
                        ));
                    }
                }
                workload_members.insert(member.to_string(), crate::store::Member { offset, size });
                seen.push((member.to_string(), sha256, size));
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
            other => {
                return Err(damaged(
                    bundle,
                    format!("it holds an unexpected file {}", printable(other)),
                ))
            }
        }
    }
    let manifest = manifest.ok_or_else(|| damaged(bundle, format!("{MANIFEST} is missing")))?;
    let sums = sums.ok_or_else(|| damaged(bundle, format!("{SUMS} is missing")))?;
    if manifest.format == 0
        || manifest.images.is_empty()
        || (manifest.format == 1 && !manifest.tools.is_empty())
        || (manifest.format < 3 && !(manifest.workloads.is_empty() && manifest.omitted.is_empty()))
    {
        return Err(damaged(bundle, format!("{MANIFEST} is of an unknown format")));
    }
    // Exactly what the manifest lists: each role and file once, every archive listed, every sum used, each
    // archive whole and holding the image recorded, each tool whole.
    let listed = |name: &str| {
        manifest.images.iter().any(|i| i.file == name)
            || manifest.tools.iter().any(|t| t.file == name)
            || workload_members.contains_key(name)
    };
    let unlisted = seen.iter().find(|(name, _, _)| !listed(name));
    let images = &manifest.images;
    let tools = &manifest.tools;
    let problem = (0..images.len())
        .find_map(|i| {
            listing_problem(
                images,
                i,
                |m| (m.file.as_str(), m.role.as_str()),
                BundleImage::well_formed,
            )
        })
        .or_else(|| {
            (0..tools.len()).find_map(|i| {
                listing_problem(
                    tools,
                    i,
                    |t| (t.file.as_str(), t.kind.as_str()),
                    BundleTool::well_formed,
                )
            })
        })
        .or_else(|| {
            unlisted.map(|(extra, _, _)| format!("it holds {}, which {MANIFEST} does not list", printable(extra)))
        })
        .or_else(|| {
            (sums.lines().filter(|l| !l.trim().is_empty()).count()
                != manifest.images.len() + manifest.tools.len() + workload_members.len())
            .then(|| format!("{SUMS} does not list exactly the members of {MANIFEST}"))
        })
        .or_else(|| {
            manifest
                .tools
                .iter()
                .find_map(|tool| sum_problem(&tool.file, &tool.sha256, tool.size, &sums, &seen))
        })
        .or_else(|| {
            seen.iter()
                .filter(|(name, _, _)| workload_members.contains_key(name))
                .find_map(|(name, sha256, size)| sum_problem(name, sha256, *size, &sums, &seen))
        })
        .or_else(|| {
            manifest
                .images
                .iter()
                .find_map(|image| member_problem(image, &sums, &seen, dir.path()))
        });
    if let Some(problem) = problem {
        return Err(damaged(bundle, problem));
    }
    let workloads = match (manifest.workloads.is_empty(), workload_members.is_empty()) {
        (true, true) => None,
        (false, false) => {
            Some(workloads(bundle, &manifest, workload_members).map_err(|problem| damaged(bundle, problem))?)
        }
        _ => {
            return Err(damaged(
                bundle,
                format!("{MANIFEST} and the images/ folder disagree about the workloads"),
            ))
        }
    };
    Ok(CheckedBundle {
        manifest,
        dir,
        workloads,
    })
}

/// Whether `name` is a member of the workloads' layout: its two files, or a sha256-named blob.
fn workload_member(name: &str) -> bool {
    match name.strip_prefix("images/blobs/sha256/") {
        Some(hex) => crate::digest::sha256_part(&format!("sha256:{hex}")).is_some(),
        None => name == "images/oci-layout" || name == "images/index.json",
    }
}

/// The workloads' layout read in place, and checked against the manifest: the same images, in order,
/// with the digests recorded; every blob named, present or left to an older bundle; nothing more.
fn workloads(
    bundle: &Path,
    manifest: &BundleManifest,
    members: std::collections::HashMap<String, crate::store::Member>,
) -> std::result::Result<crate::source::Source, String> {
    let blob_files: Vec<String> = members
        .keys()
        .filter(|name| name.starts_with("images/blobs/"))
        .cloned()
        .collect();
    let store = crate::store::Store::Tar {
        path: bundle.to_path_buf(),
        members,
    };
    let mut omitted = std::collections::BTreeMap::new();
    for o in &manifest.omitted {
        let image = o.image.parse::<oci_client::Reference>().map_err(|e| {
            format!(
                "{MANIFEST} leaves {} to an unreadable image name ({e})",
                printable(&o.digest)
            )
        })?;
        omitted.insert(o.digest.clone(), image);
    }
    let source = crate::source::layout(store, WORKLOADS, omitted).map_err(|e| format!("images/: {e}"))?;
    let held: Vec<(String, &str)> = source.images.iter().map(|i| (i.name.whole(), i.digest())).collect();
    let recorded: Vec<(String, &str)> = manifest
        .workloads
        .iter()
        .map(|w| (w.reference.clone(), w.digest.as_str()))
        .collect();
    if held != recorded {
        return Err(format!("images/index.json does not list the images {MANIFEST} records"));
    }
    let named: std::collections::BTreeSet<String> = source
        .images
        .iter()
        .flat_map(|i| {
            i.blobs
                .iter()
                .map(|b| b.digest.clone())
                .chain(i.manifests.iter().map(|m| m.digest.clone()))
        })
        .map(|d| format!("images/blobs/sha256/{}", d.trim_start_matches("sha256:")))
        .collect();
    if let Some(stray) = blob_files.iter().find(|f| !named.contains(*f)) {
        return Err(format!("it holds {}, which no image names", printable(stray)));
    }
    Ok(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(kind: &str, file: &str) -> BundleTool {
        BundleTool {
            kind: kind.into(),
            file: file.into(),
            version: "0.1.0".into(),
            sha256: "0".repeat(64),
            size: 1,
        }
    }

    #[test]
    fn tools_are_only_what_registry_up_writes() {
        assert!(tool("binary", "registry-up").well_formed());
        assert!(tool("deb", "registry-up_0.1.0_amd64.deb").well_formed());
        for (kind, file) in [
            ("binary", "registry-up_0.1.0_amd64.deb"),
            ("deb", "registry-up"),
            ("deb", "../registry-up_0.1.0_amd64.deb"),
            ("deb", "other_0.1.0_amd64.deb"),
            ("deb", "registry-up_\u{1b}[2J.deb"),
            ("script", "registry-up"),
        ] {
            assert!(!tool(kind, file).well_formed(), "{kind} {file:?}");
        }
        let mut escaping = tool("binary", "registry-up");
        escaping.version = "0.1.0\u{1b}[2J".into();
        assert!(!escaping.well_formed(), "a version is printed: no control characters");
        assert!(tool_member("registry-up") && tool_member("registry-up_0.1.0_arm64.deb"));
        assert!(!tool_member("sub/registry-up_0.1.0_amd64.deb") && !tool_member("registry.oci.tar"));
    }

    #[test]
    fn a_format_1_manifest_reads_with_no_tools_and_a_format_2_one_with_them() {
        let old = r#"{"format":1,"created_by":"registry-up 0.1.0","arch":"amd64","images":[]}"#;
        assert!(serde_json::from_str::<BundleManifest>(old).unwrap().tools.is_empty());
        let new = BundleManifest {
            format: FORMAT,
            created_by: "registry-up 0.1.0 (abc)".into(),
            arch: "amd64".into(),
            images: Vec::new(),
            tools: vec![tool("binary", TOOL_BINARY)],
            workloads: Vec::new(),
            omitted: Vec::new(),
        };
        let text = serde_json::to_string(&new).unwrap();
        let back: BundleManifest = serde_json::from_str(&text).unwrap();
        assert_eq!(back.tools.len(), 1);
        assert_eq!(back.format, FORMAT);
    }
}
