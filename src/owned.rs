//! What registry-up may take as its own, and what it removes again. A config or data folder it is pointed
//! at must hold nothing it did not write; one data folder belongs to one appliance (a claim file in it names
//! the appliance); a pod belongs to the appliance whose label it carries; and `down --purge` removes exactly
//! the files registry-up writes, keeping (and naming) anything else.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout;

/// Files registry-up writes below a config folder (relative).
pub const CONFIG_FILES: &[&str] = &[
    layout::CA_CERT,
    layout::CA_KEY,
    layout::SERVER_CERT,
    layout::SERVER_KEY,
    layout::NGINX_CONF,
    layout::NGINX_PASSWD,
    layout::NGINX_GROUP,
    layout::REGISTRY_CONFIG,
    layout::POD_YAML,
    layout::STATE,
    layout::GC_IN_PROGRESS,
    layout::FIREWALL,
    layout::AUTH_PASSWORD,
    layout::HTPASSWD,
    layout::S3_CREDENTIALS,
    layout::REGISTRY_VERSION,
    layout::INVENTORY,
];

/// The folders those files are in, deepest first (the order purge empties them in).
const CONFIG_FOLDERS: &[&str] = &["ca", "tls", "nginx", "registry", "auth", "s3"];

/// The claim file in a data folder: which appliance keeps its images there.
pub const DATA_CLAIM: &str = ".registry-up-appliance";

/// The registry's storage below a data folder (distribution's filesystem driver writes `docker/registry/v2`).
const STORAGE: &str = "docker/registry";

/// `dir` with the part that exists resolved (symbolic links followed), so two spellings of one folder
/// share a lock.
pub fn canonical(dir: &Path) -> PathBuf {
    let mut existing = dir.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name().map(|n| n.to_owned()), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return dir.to_path_buf(),
        }
    }
    let mut path = std::fs::canonicalize(&existing).unwrap_or(existing);
    path.extend(rest.iter().rev());
    path
}

/// An appliance's name for itself: a hash of its config folder's real path, so two spellings of one folder
/// are one appliance. It labels the pod and is written in the data folder's claim.
pub fn appliance_id(config_dir: &Path) -> String {
    let real = canonical(config_dir);
    crate::digest::sha256_hex(real.as_os_str().as_encoded_bytes())[..16].to_string()
}

/// The temp file of an atomic write, or a staging folder of a killed restore: registry-up's own names.
fn transient(name: &str) -> bool {
    let temp = name.starts_with('.') && name.contains(".registry-up-") && name.ends_with(".tmp");
    let restore = name
        .strip_prefix(".restore.")
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
    temp || restore
}

/// The entries of `dir` (names, sorted); none when it is missing.
fn entries(dir: &Path) -> Vec<(String, std::fs::FileType)> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_string_lossy().into_owned(), e.file_type().ok()?)))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// What in config folder `dir` registry-up did not write: anything but its files (regular files), its
/// folders (real folders, not links) and its temp files. Relative paths, sorted; empty when `dir` is
/// missing or empty.
pub fn foreign_in_config(dir: &Path) -> Vec<String> {
    let mut foreign = Vec::new();
    for (name, kind) in entries(dir) {
        if transient(&name) {
            continue;
        }
        let is_folder = CONFIG_FOLDERS.contains(&name.as_str()) || name == layout::ROLLBACK_DIR;
        if kind.is_dir() && is_folder {
            // What the guard keeps is its own copies: the folder is registry-up's whole.
            if name == layout::ROLLBACK_DIR {
                continue;
            }
            for (inner, kind) in entries(&dir.join(&name)) {
                let rel = format!("{name}/{inner}");
                if !(transient(&inner) || kind.is_file() && CONFIG_FILES.contains(&rel.as_str())) {
                    foreign.push(rel);
                }
            }
        } else if !(kind.is_file() && CONFIG_FILES.contains(&name.as_str())) {
            foreign.push(name);
        }
    }
    foreign
}

/// What in data folder `dir` is not a registry's storage: anything but `docker/registry` (which may be an
/// earlier registry's, moved here on purpose), the claim file, and registry-up's temp and staging names.
pub fn foreign_in_data(dir: &Path) -> Vec<String> {
    let mut foreign = Vec::new();
    for (name, kind) in entries(dir) {
        // lost+found: a data folder that is a filesystem of its own (a dedicated disk) has one.
        if transient(&name) || name == DATA_CLAIM && kind.is_file() || name == "lost+found" && kind.is_dir() {
            continue;
        }
        if name == "docker" && kind.is_dir() {
            for (inner, kind) in entries(&dir.join("docker")) {
                if !(inner == "registry" && kind.is_dir()) {
                    foreign.push(format!("docker/{inner}"));
                }
            }
        } else {
            foreign.push(name);
        }
    }
    foreign
}

/// "a, b, c and 4 more": a short list of what was found, control characters shown escaped.
fn some(names: &[String]) -> String {
    let shown: Vec<String> = names
        .iter()
        .take(5)
        .map(|n| crate::error::printable(n, false))
        .collect();
    match names.len().saturating_sub(5) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// Refuses a config folder of a new appliance that holds what registry-up did not write (exit 2).
pub fn check_new_config_folder(dir: &Path) -> Result<()> {
    let foreign = foreign_in_config(dir);
    if foreign.is_empty() {
        return Ok(());
    }
    Err(Error::usage(format!(
        "--config-dir {} holds files registry-up did not write ({}): it would take them over, and down --purge \
         would delete what it made there. Give --config-dir a new or empty folder. Nothing was changed.",
        dir.display(),
        some(&foreign)
    )))
}

/// The claim file's contents.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claim {
    pub appliance: String,
    pub config_dir: String,
}

/// The claim in data folder `dir`, if there is a readable one.
pub fn claim(dir: &Path) -> Option<Claim> {
    let bytes = crate::bounded::file(&dir.join(DATA_CLAIM), 64 << 10).ok()??;
    serde_json::from_slice(&bytes).ok()
}

/// Whether the appliance in `config_dir` is installed and keeps its data in `data_dir`: a claim it made
/// is alive while it is.
fn alive(config_dir: &Path, data_dir: &Path) -> bool {
    matches!(
        crate::state::read_state(config_dir),
        Ok(Some(state)) if state.s3.is_none()
            && canonical(Path::new(&state.data_dir)) == canonical(data_dir)
    )
}

/// Whose data folder `dir` is, as far as the appliance `id` (config folder `config_dir`) may use it.
#[derive(Debug, PartialEq, Eq)]
pub enum Owner {
    /// Claimed by this appliance, or its own by its installed state (a release before claims).
    This,
    /// Nobody's yet: missing, empty, or a registry's storage and nothing else.
    Free,
    /// Claimed by an appliance that is not installed there any more.
    Stale(PathBuf),
}

/// Refuses (exit 2) a data folder another installed appliance keeps its images in, or one that holds what
/// is not a registry's storage; `installed_here` says this appliance's state names it already.
pub fn check_data_folder(dir: &Path, id: &str, installed_here: bool) -> Result<Owner> {
    match claim(dir) {
        Some(c) if c.appliance == id => return Ok(Owner::This),
        Some(c) if alive(Path::new(&c.config_dir), dir) => {
            return Err(Error::usage(format!(
                "--data-dir {} belongs to the appliance in {}: one data folder serves one appliance (gc on either \
                 would free the other's blobs, a purge would delete its images). Give this appliance a folder of \
                 its own. Nothing was changed.",
                dir.display(),
                crate::error::printable(&c.config_dir, false)
            )))
        }
        Some(c) if !installed_here => {
            let stale = PathBuf::from(c.config_dir);
            return check_foreign_data(dir).map(|()| Owner::Stale(stale));
        }
        Some(_) => return Ok(Owner::This),
        None if installed_here => return Ok(Owner::This),
        None => {}
    }
    check_foreign_data(dir).map(|()| Owner::Free)
}

fn check_foreign_data(dir: &Path) -> Result<()> {
    let foreign = foreign_in_data(dir);
    if foreign.is_empty() {
        return Ok(());
    }
    Err(Error::usage(format!(
        "--data-dir {} holds what is not a registry's storage ({}): registry-up would take it over, and down \
         --purge would delete what it made there. Give --data-dir a new or empty folder (or one holding only a \
         registry's docker/registry). Nothing was changed.",
        dir.display(),
        some(&foreign)
    )))
}

/// Writes (0600, atomically) the claim of appliance `id` on data folder `dir`, unless it is there already.
pub fn write_claim(dir: &Path, id: &str, config_dir: &Path) -> Result<()> {
    let wanted = Claim {
        appliance: id.to_string(),
        config_dir: config_dir.display().to_string(),
    };
    if claim(dir).as_ref() == Some(&wanted) {
        return Ok(());
    }
    let text = serde_json::to_vec_pretty(&wanted).expect("a claim serialises");
    crate::atomic::write_atomic(&dir.join(DATA_CLAIM), &text, layout::PRIVATE)
}

/// Refuses (exit 2) work on a data folder that another appliance claims (gc would free what that one
/// pushes meanwhile through its own nginx, which this appliance cannot make read-only).
pub fn check_claimed_by(dir: &Path, id: &str) -> Result<()> {
    match claim(dir) {
        Some(c) if c.appliance != id && alive(Path::new(&c.config_dir), dir) => Err(Error::usage(format!(
            "The data folder {} is claimed by the appliance in {} too: registry-up does not collect or delete \
             images another appliance may be writing. Give one of them a folder of its own (registry-up up \
             --data-dir NEW --move-data).",
            dir.display(),
            crate::error::printable(&c.config_dir, false)
        ))),
        _ => Ok(()),
    }
}

/// What purge kept because registry-up did not write it.
pub struct Kept {
    pub folder: PathBuf,
    pub foreign: Vec<String>,
}

impl Kept {
    pub fn describe(&self) -> String {
        format!(
            "Kept {}: it holds what registry-up did not write ({}).",
            self.folder.display(),
            some(&self.foreign)
        )
    }
}

fn remove(path: &Path) -> Result<()> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(|e| Error::runtime(crate::host::io_failed("delete", path, &e)))
}

/// Removes a file registry-up wrote (never through a link: a link there is not its file, and stays).
fn remove_file(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => remove(path),
        _ => Ok(()),
    }
}

/// Removes `dir` if nothing is left in it; says what is, if anything.
fn remove_if_empty(dir: &Path, foreign: Vec<String>) -> Option<Kept> {
    match std::fs::remove_dir(dir) {
        Ok(()) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        // A mount point's lost+found, say: nothing of anyone's to name.
        Err(_) if foreign.is_empty() => None,
        Err(_) => Some(Kept {
            folder: dir.to_path_buf(),
            foreign,
        }),
    }
}

/// Deletes what registry-up writes in config folder `dir`: its files, the guard's folder, its temp files,
/// then its folders and `dir` itself where nothing else is left in them.
pub fn purge_config(dir: &Path) -> Result<Option<Kept>> {
    let foreign = foreign_in_config(dir);
    // A folder of ours that is a link (an install of an earlier release, changed by hand) is not entered.
    let real = |folder: &Path| std::fs::symlink_metadata(folder).is_ok_and(|m| m.is_dir());
    for file in CONFIG_FILES {
        let path = dir.join(file);
        if path.parent().is_some_and(|p| p == dir || real(p)) {
            remove_file(&path)?;
        }
    }
    remove(&dir.join(layout::ROLLBACK_DIR))?;
    let folders = std::iter::once(dir.to_path_buf()).chain(CONFIG_FOLDERS.iter().map(|f| dir.join(f)));
    for folder in folders.filter(|f| real(f)) {
        for (name, _) in entries(&folder) {
            if transient(&name) {
                remove(&folder.join(name))?;
            }
        }
    }
    for folder in CONFIG_FOLDERS {
        let _ = std::fs::remove_dir(dir.join(folder));
    }
    Ok(remove_if_empty(dir, foreign))
}

/// Deletes the registry's storage in data folder `dir`, and the claim; `dir` itself where nothing else is
/// left in it.
pub fn purge_data(dir: &Path) -> Result<Option<Kept>> {
    let foreign = foreign_in_data(dir);
    // Never through a linked docker/: what it points at is not the registry's storage here.
    if std::fs::symlink_metadata(dir.join("docker")).is_ok_and(|m| m.is_dir()) {
        remove(&dir.join(STORAGE))?;
    }
    let _ = std::fs::remove_dir(dir.join("docker"));
    for (name, _) in entries(dir) {
        if transient(&name) {
            remove(&dir.join(name))?;
        }
    }
    remove_file(&dir.join(DATA_CLAIM))?;
    Ok(remove_if_empty(dir, foreign))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path, files: &[&str]) {
        for rel in files {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
    }

    #[test]
    fn a_folder_of_other_things_is_foreign_and_purge_keeps_them() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("config");
        tree(
            &config,
            &[
                layout::CA_KEY,
                layout::NGINX_CONF,
                layout::STATE,
                ".state.json.registry-up-ab.tmp",
            ],
        );
        assert!(foreign_in_config(&config).is_empty());
        assert!(foreign_in_config(&tmp.path().join("missing")).is_empty());
        tree(&config, &["nginx/site.conf", "ca/corporate.key", "notes.txt"]);
        assert_eq!(
            foreign_in_config(&config),
            ["ca/corporate.key", "nginx/site.conf", "notes.txt"]
        );
        let kept = purge_config(&config).unwrap().expect("foreign files keep the folder");
        assert_eq!(kept.foreign, ["ca/corporate.key", "nginx/site.conf", "notes.txt"]);
        let mut left: Vec<String> = Vec::new();
        for (name, kind) in entries(&config) {
            if kind.is_dir() {
                left.extend(
                    entries(&config.join(&name))
                        .into_iter()
                        .map(|(n, _)| format!("{name}/{n}")),
                );
            } else {
                left.push(name);
            }
        }
        assert_eq!(left, ["ca/corporate.key", "nginx/site.conf", "notes.txt"]);
        // A link where a file of registry-up's would be is not its file: it is foreign, and stays.
        let other = tmp.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("elsewhere"), other.join("ca")).unwrap();
        assert_eq!(foreign_in_config(&other), ["ca"]);
    }

    #[test]
    fn a_data_folder_holds_a_registry_s_storage_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        tree(
            &data,
            &[
                "docker/registry/v2/repositories/a/_layers/x",
                DATA_CLAIM,
                ".restore.123/f",
            ],
        );
        assert!(foreign_in_data(&data).is_empty());
        // A dedicated disk's lost+found is not foreign.
        tree(&data, &["lost+found/x"]);
        assert!(foreign_in_data(&data).is_empty());
        tree(&data, &["docker/volumes/db/data", "notes/x", ".restore.keepme/f"]);
        assert_eq!(foreign_in_data(&data), [".restore.keepme", "docker/volumes", "notes"]);
        let kept = purge_data(&data).unwrap().expect("foreign content keeps the folder");
        assert_eq!(kept.foreign.len(), 3);
        assert!(!data.join("docker/registry").exists() && !data.join(DATA_CLAIM).exists());
        assert!(data.join("docker/volumes/db/data").exists() && data.join(".restore.keepme/f").exists());
    }

    #[test]
    fn a_claimed_folder_is_refused_while_its_appliance_is_installed_there() {
        let tmp = tempfile::tempdir().unwrap();
        let (data, first) = (tmp.path().join("data"), tmp.path().join("first"));
        std::fs::create_dir_all(&data).unwrap();
        let id = appliance_id(&first);
        write_claim(&data, &id, &first).unwrap();
        assert_eq!(check_data_folder(&data, &id, false).unwrap(), Owner::This);
        // The first appliance is not installed: its claim is stale, and another may take the folder.
        let second = tmp.path().join("second");
        let other = appliance_id(&second);
        assert_eq!(
            check_data_folder(&data, &other, false).unwrap(),
            Owner::Stale(first.clone())
        );
        // Installed there: refused, and gc of the second refuses too.
        std::fs::create_dir_all(&first).unwrap();
        let state = serde_json::json!({
            "format": 1, "domain": "a.test", "sans": [], "port": 8443, "registry_image": "r", "nginx_image": "n",
            "pod_name": "p", "config_dir": first, "data_dir": data, "ca_cert": "", "service": "direct"
        });
        std::fs::write(first.join(layout::STATE), state.to_string()).unwrap();
        let e = check_data_folder(&data, &other, false).unwrap_err();
        assert_eq!(e.status, crate::error::ExitStatus::Usage);
        assert!(e.message.contains("belongs to the appliance in"), "{e}");
        assert!(check_claimed_by(&data, &other).is_err());
        assert!(check_claimed_by(&data, &id).is_ok());
    }
}
