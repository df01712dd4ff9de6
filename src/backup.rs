//! Backups: one tar holding the config folder (`config/…`, the CA key among it) and the registry's storage
//! (`data/docker/…`), and last `registry-up-backup.json`, the checksum and size of every file. An
//! incremental backup (`--since BASE`) leaves out the blobs its base holds and lists them under
//! `from_base`, with the base's own checksum; blobs are named by their content, so the name says they are
//! the same. `check` reads a backup whole before anything is written; `extract` lays it down.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Sha256;
use crate::error::{Error, Result};

pub const MANIFEST: &str = "registry-up-backup.json";
/// The last member: the SHA-256 of the manifest, so that a flipped byte in the manifest is found too.
pub const MANIFEST_SUM: &str = "registry-up-backup.json.sha256";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub pod_name: String,
    pub config_dir: String,
    pub data_dir: String,
    pub files: Vec<Entry>,
    /// For an incremental backup: the base's manifest checksum, and the blobs taken from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_base: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `config/REL` or `data/REL`.
    pub path: String,
    pub sha256: String,
    pub size: u64,
    pub mode: u32,
}

/// A backup read whole and found intact.
pub struct Checked {
    pub manifest: Manifest,
    /// The checksum of its manifest: what an incremental backup names as its base.
    pub id: String,
}

impl Checked {
    /// The paths (and their entries) this backup can give: its files and, through its base, the rest.
    pub fn paths(&self) -> BTreeMap<&str, &Entry> {
        self.manifest
            .files
            .iter()
            .chain(&self.manifest.from_base)
            .map(|e| (e.path.as_str(), e))
            .collect()
    }
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// The regular files below `root`, relative, sorted. Anything else (a link, a device) is an error, as is a
/// folder that cannot be read: a backup that leaves something out must not say it succeeded.
fn files_below(root: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    let failed = |path: &Path, e: std::io::Error| Error::runtime(crate::host::io_failed("read", path, &e));
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir == root => continue,
            other => other.map_err(|e| failed(&dir, e))?,
        };
        for entry in entries {
            let entry = entry.map_err(|e| failed(&dir, e))?;
            let kind = entry.file_type().map_err(|e| failed(&entry.path(), e))?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                found.push(entry.path().strip_prefix(root).expect("below root").to_path_buf());
            } else {
                return Err(Error::runtime(format!(
                    "{} is not a regular file or folder (a link?), which a backup does not copy: move it out of {}.",
                    entry.path().display(),
                    root.display()
                )));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The blob digest a storage path names (`data/docker/registry/v2/blobs/sha256/XX/HEX/data`).
fn blob_of(path: &str) -> Option<&str> {
    let hex = path
        .strip_prefix(&format!("data/{}/blobs/sha256/", crate::storage::V2))?
        .split('/')
        .nth(1)?;
    (path.ends_with("/data") && hex.len() == 64).then_some(hex)
}

/// What a backup took.
pub struct Written {
    pub files: usize,
    pub bytes: u64,
    pub from_base: usize,
}

/// Removes what a killed backup left beside `out`: `.NAME.registry-up-backup-PID.tmp` files (and this
/// `out`'s `.NAME.PID.tmp`, the name of releases before), 0600, of this user, whose process is gone. A
/// backup still running (of another appliance, say) keeps its own; another program's temp files stay.
fn remove_stale_temp_files(out: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Some(dir) = out.parent() else { return };
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".tmp"))
            .and_then(|n| n.rsplit_once(".registry-up-backup-"))
            .map(|(_, pid)| pid);
        let legacy = name
            .strip_prefix(&format!(
                ".{own}.",
                own = out.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
            ))
            .and_then(|n| n.strip_suffix(".tmp"));
        let Some(pid) = ours.or(legacy).and_then(|pid| pid.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if meta.is_file() && meta.permissions().mode() & 0o777 == 0o600 && crate::host::left_by_dead_run(&meta, pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Writes the backup of `config_dir` and `data_dir` to `out` (0600, through a temp file renamed into
/// place). With `base`, blobs it holds are left out.
pub fn write(
    out: &Path,
    pod_name: &str,
    config_dir: &Path,
    data_dir: &Path,
    skip_config: &[&str],
    base: Option<&Checked>,
) -> Result<Written> {
    let failed = |what: &str, e: std::io::Error| Error::runtime(crate::host::io_failed(what, out, &e));
    remove_stale_temp_files(out);
    let tmp = out.with_file_name(format!(
        ".{}.registry-up-backup-{}.tmp",
        out.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        std::process::id()
    ));
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| failed("write", e))?
    };
    let result = (|| {
        let mut builder = tar::Builder::new(file);
        let based: BTreeSet<&str> = base
            .map(|b| b.paths().into_keys().filter_map(blob_of).collect())
            .unwrap_or_default();
        let mut manifest = Manifest {
            format: 1,
            pod_name: pod_name.into(),
            config_dir: config_dir.display().to_string(),
            data_dir: data_dir.display().to_string(),
            files: Vec::new(),
            base: base.map(|b| b.id.clone()),
            from_base: Vec::new(),
        };
        let sources = [("config", config_dir.to_path_buf()), ("data", data_dir.join("docker"))];
        let mut written = Written {
            files: 0,
            bytes: 0,
            from_base: 0,
        };
        for (prefix, root) in sources {
            for rel in files_below(&root)? {
                let rel_text = rel.display().to_string();
                // A name in the list leaves out that file, or every file in that folder.
                let skipped = skip_config.iter().any(|s| rel_text == *s || rel.starts_with(s));
                if prefix == "config" && skipped {
                    continue;
                }
                let name = match prefix {
                    "data" => format!("data/docker/{rel_text}"),
                    _ => format!("config/{rel_text}"),
                };
                let path = root.join(&rel);
                let meta = std::fs::metadata(&path).map_err(|e| failed("read", e))?;
                let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777;
                if let Some(hex) = blob_of(&name).filter(|h| based.contains(h)).map(String::from) {
                    manifest.from_base.push(Entry {
                        path: name,
                        sha256: hex,
                        size: meta.len(),
                        mode,
                    });
                    written.from_base += 1;
                    continue;
                }
                let mut header = tar::Header::new_gnu();
                header.set_size(meta.len());
                header.set_mode(mode);
                header.set_entry_type(tar::EntryType::Regular);
                // Exactly the size in the header: a file that changed meanwhile is an error, not a bad tar.
                let mut reader = Hashing {
                    inner: File::open(&path).map_err(|e| failed("read", e))?.take(meta.len()),
                    hash: Sha256::new(),
                };
                builder
                    .append_data(&mut header, &name, &mut reader)
                    .map_err(|e| failed("write", e))?;
                if reader.hash.size != meta.len() {
                    return Err(Error::runtime(format!(
                        "{} changed while it was copied: run registry-up backup again.",
                        path.display()
                    )));
                }
                written.files += 1;
                written.bytes += meta.len();
                manifest.files.push(Entry {
                    path: name,
                    sha256: reader.hash.hex(),
                    size: meta.len(),
                    mode,
                });
            }
        }
        let text = serde_json::to_vec_pretty(&manifest).expect("the manifest serialises");
        let sum = crate::digest::sha256_hex(&text);
        for (name, data) in [(MANIFEST, text.as_slice()), (MANIFEST_SUM, sum.as_bytes())] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o600);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, name, data)
                .map_err(|e| failed("write", e))?;
        }
        let mut file = builder.into_inner().map_err(|e| failed("write", e))?;
        file.flush()
            .and_then(|()| file.sync_all())
            .map_err(|e| failed("write", e))?;
        Ok(written)
    })();
    match result {
        Ok(written) => {
            std::fs::rename(&tmp, out).map_err(|e| failed("write", e))?;
            Ok(written)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Whether a member's name is one a backup writes: relative, no `..`, below `config/` or `data/docker/`.
fn safe(name: &str) -> bool {
    let path = Path::new(name);
    path.components().all(|c| matches!(c, Component::Normal(_)))
        && (name.starts_with("config/") || name.starts_with("data/docker/"))
}

/// Reads the backup at `path` whole: every member's checksum and size against its manifest, nothing
/// missing, nothing extra, nothing twice, no name outside its folders.
pub fn check(path: &Path) -> Result<Checked> {
    let damaged = |why: String| {
        Error::usage(format!(
            "The backup {} is damaged or not a registry-up backup: {why}. Nothing was changed: use another copy of it.",
            path.display()
        ))
    };
    let file =
        crate::bounded::open_regular(path).map_err(|e| Error::usage(crate::host::io_failed("read", path, &e)))?;
    let mut archive = tar::Archive::new(file);
    let mut seen: BTreeMap<String, (String, u64)> = BTreeMap::new();
    let mut manifest_text = None;
    let mut manifest_sum: Option<Vec<u8>> = None;
    for entry in archive.entries().map_err(|e| damaged(e.to_string()))? {
        let mut entry = entry.map_err(|e| damaged(e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| damaged(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        if name == MANIFEST || name == MANIFEST_SUM {
            // 256 MiB lists some million files; a member claiming more (a sparse 40 KB file can claim 8 GiB)
            // is refused, not read into memory.
            let text =
                crate::bounded::read_at_most(&mut entry, 256 << 20).map_err(|e| damaged(format!("{name}: {e}")))?;
            let slot = if name == MANIFEST {
                &mut manifest_text
            } else {
                &mut manifest_sum
            };
            if slot.replace(text).is_some() {
                return Err(damaged(format!("it holds {name} twice")));
            }
            continue;
        }
        if !safe(&name) || entry.header().entry_type() != tar::EntryType::Regular {
            return Err(damaged(format!(
                "it holds {}, which a backup never does",
                crate::bundle::printable(&name)
            )));
        }
        let (hex, size) = Sha256::of_reader(&mut entry).map_err(|e| damaged(e.to_string()))?;
        if seen.insert(name.clone(), (hex, size)).is_some() {
            return Err(damaged(format!("it holds {} twice", crate::bundle::printable(&name))));
        }
    }
    let text = manifest_text.ok_or_else(|| damaged(format!("it has no {MANIFEST}")))?;
    let sum = manifest_sum.ok_or_else(|| damaged(format!("it has no {MANIFEST_SUM}")))?;
    if sum != crate::digest::sha256_hex(&text).as_bytes() {
        return Err(damaged(format!("{MANIFEST} does not match its checksum")));
    }
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| damaged(format!("{MANIFEST}: {e}")))?;
    if manifest.format != 1 {
        return Err(damaged(format!(
            "format {} is newer than this registry-up reads",
            manifest.format
        )));
    }
    for entry in &manifest.files {
        match seen.remove(&entry.path) {
            None => return Err(damaged(format!("{} is missing", crate::bundle::printable(&entry.path)))),
            Some((hex, size)) if hex != entry.sha256 || size != entry.size => {
                return Err(damaged(format!(
                    "{} does not match its checksum",
                    crate::bundle::printable(&entry.path)
                )))
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = seen.keys().next() {
        return Err(damaged(format!(
            "{} is not in its manifest",
            crate::bundle::printable(extra)
        )));
    }
    Ok(Checked {
        manifest,
        id: crate::digest::sha256_hex(&text),
    })
}

/// Lays the checked backup at `path` down into `config_dir` and `data_dir`, taking `from_base` files
/// from `base`; each file is checked again as it is written (the file may have changed since `check`).
pub fn extract(
    path: &Path,
    checked: &Checked,
    base: Option<(&Path, &Checked)>,
    config_dir: &Path,
    data_dir: &Path,
) -> Result<u64> {
    let by_path = |entries: &[Entry]| -> BTreeMap<String, Entry> {
        entries.iter().map(|e| (e.path.clone(), e.clone())).collect()
    };
    // What the base must give is checked against the base's own record before anything is written.
    if let Some((base_path, base_checked)) = base.filter(|_| !checked.manifest.from_base.is_empty()) {
        let offered = base_checked.paths();
        if let Some(e) = checked
            .manifest
            .from_base
            .iter()
            .find(|e| offered.get(e.path.as_str()) != Some(e))
        {
            return Err(Error::usage(format!(
                "The base backup {} does not hold {} as the incremental one recorded it: give the right base.",
                base_path.display(),
                crate::bundle::printable(&e.path)
            )));
        }
    }
    let mut written = lay_down(path, &mut by_path(&checked.manifest.files), config_dir, data_dir)?;
    if !checked.manifest.from_base.is_empty() {
        let (base_path, _) = base.expect("checked: an incremental backup comes with its base");
        let mut from_base = by_path(&checked.manifest.from_base);
        written += lay_down(base_path, &mut from_base, config_dir, data_dir)?;
        if let Some(missing) = from_base.keys().next() {
            return Err(Error::usage(format!(
                "The base backup {} lacks {}, which the incremental one takes from it.",
                base_path.display(),
                crate::bundle::printable(missing)
            )));
        }
    }
    Ok(written)
}

/// Writes the members of the backup at `path` that `wanted` lists (removing them from it).
fn lay_down(path: &Path, wanted: &mut BTreeMap<String, Entry>, config_dir: &Path, data_dir: &Path) -> Result<u64> {
    let file =
        crate::bounded::open_regular(path).map_err(|e| Error::usage(crate::host::io_failed("read", path, &e)))?;
    let mut archive = tar::Archive::new(file);
    let mut bytes = 0;
    for entry in archive.entries().map_err(|e| Error::runtime(e.to_string()))? {
        let mut entry = entry.map_err(|e| Error::runtime(e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| Error::runtime(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let Some(want) = wanted.remove(&name) else { continue };
        let dest = match name.strip_prefix("config/") {
            Some(rel) => config_dir.join(rel),
            None => data_dir.join(name.strip_prefix("data/").expect("checked: below config/ or data/")),
        };
        let dir = dest.parent().expect("below a folder");
        std::fs::create_dir_all(dir).map_err(|e| Error::runtime(crate::host::io_failed("create", dir, &e)))?;
        // Opened for its owner alone while the bytes go in; the recorded mode is set on the descriptor after.
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&dest)
            .map_err(|e| Error::runtime(crate::host::io_failed("write", &dest, &e)))?;
        let (hex, size) = Sha256::copy(&mut entry, &mut out).map_err(|e| match e {
            crate::digest::Copy::Read(e) | crate::digest::Copy::Write(e) => {
                Error::runtime(crate::host::io_failed("write", &dest, &e))
            }
        })?;
        if hex != want.sha256 || size != want.size {
            return Err(Error::usage(format!(
                "{} changed since it was checked ({} no longer matches): nothing is left of the restore; use another copy.",
                path.display(),
                crate::bundle::printable(&name)
            )));
        }
        // The recorded mode, set outright (not through the umask), never with set-id bits.
        out.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(want.mode & 0o777))
            .map_err(|e| Error::runtime(crate::host::io_failed("write", &dest, &e)))?;
        bytes += size;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path, files: &[(&str, &[u8])]) {
        for (rel, data) in files {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
    }

    /// A 40 KB sparse file whose manifest member claims 8 GiB: refused at the cap, not read into memory.
    #[test]
    fn a_manifest_member_claiming_gigabytes_is_refused_at_its_cap() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sparse.tar");
        let mut header = tar::Header::new_gnu();
        header.set_path(MANIFEST).unwrap();
        header.set_size(8 << 30);
        header.set_mode(0o600);
        header.set_cksum();
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(header.as_bytes()).unwrap();
        file.set_len(512 + (8 << 30) + 1024).unwrap();
        drop(file);
        let e = match check(&path) {
            Err(e) => e,
            Ok(_) => panic!("a sparse 8 GiB manifest was accepted"),
        };
        assert!(e.message.contains("more than the 256.00 MiB"), "{e}");
    }

    #[test]
    fn a_backup_round_trips_and_an_incremental_one_takes_blobs_from_its_base() {
        let tmp = tempfile::tempdir().unwrap();
        let (config, data) = (tmp.path().join("config"), tmp.path().join("data"));
        // Blobs are named by their content, as the registry stores them.
        let blob_path = |content: &[u8]| {
            let hex = crate::digest::sha256_hex(content);
            format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2])
        };
        let blob = blob_path(b"old blob");
        tree(
            &config,
            &[("state.json", b"{}"), ("ca/ca.key", b"KEY"), ("gc-in-progress", b"x")],
        );
        tree(&data, &[(blob.as_str(), b"old blob")]);
        let full = tmp.path().join("full.tar");
        let w = write(&full, "pod", &config, &data, &["gc-in-progress"], None).unwrap();
        assert_eq!((w.files, w.from_base), (3, 0));
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&full).unwrap().permissions()) & 0o777,
            0o600
        );
        let checked = check(&full).unwrap();

        let newer = blob_path(b"new blob");
        tree(&data, &[(newer.as_str(), b"new blob")]);
        let inc = tmp.path().join("inc.tar");
        let w = write(&inc, "pod", &config, &data, &["gc-in-progress"], Some(&checked)).unwrap();
        assert_eq!((w.files, w.from_base), (3, 1), "only the new blob, with the config");
        let inc_checked = check(&inc).unwrap();
        assert_eq!(inc_checked.manifest.base.as_deref(), Some(checked.id.as_str()));

        let (c2, d2) = (tmp.path().join("c2"), tmp.path().join("d2"));
        extract(&inc, &inc_checked, Some((&full, &checked)), &c2, &d2).unwrap();
        assert_eq!(std::fs::read(d2.join(&blob)).unwrap(), b"old blob");
        assert_eq!(std::fs::read(d2.join(&newer)).unwrap(), b"new blob");
        assert_eq!(std::fs::read(c2.join("ca/ca.key")).unwrap(), b"KEY");
        assert!(!c2.join("gc-in-progress").exists());

        // One flipped byte anywhere in a member is found.
        let mut bytes = std::fs::read(&full).unwrap();
        let at = bytes.windows(8).position(|w| w == b"old blob").unwrap();
        bytes[at] ^= 1;
        std::fs::write(&full, bytes).unwrap();
        let e = check(&full).err().unwrap();
        assert!(
            e.message.contains("does not match its checksum") && e.message.contains("Nothing was changed"),
            "{}",
            e.message
        );
    }
}
