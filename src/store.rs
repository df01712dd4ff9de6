//! Where the files of an image source live: a folder, or the members of an (uncompressed) tar read in
//! place by offset, so a bundle of many gigabytes is never unpacked to be imported.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A member of a tar: where its data starts, and its length.
#[derive(Debug, Clone, Copy)]
pub struct Member {
    pub offset: u64,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub enum Store {
    Dir(PathBuf),
    Tar {
        path: PathBuf,
        members: HashMap<String, Member>,
    },
}

/// A byte range of one file: what a blob upload streams.
#[derive(Debug, Clone)]
pub struct Range {
    pub path: PathBuf,
    pub offset: u64,
    pub size: u64,
}

impl Store {
    /// Indexes the members of the tar at `path` (one sequential read of its headers). A link (hard or
    /// symbolic, as older `docker save` writes for a layer two images share) is the file it points at.
    pub fn tar(path: &Path) -> std::io::Result<Store> {
        let mut archive = tar::Archive::new(crate::bounded::open_regular(path)?);
        let mut members = HashMap::new();
        let mut links: Vec<(String, String)> = Vec::new();
        for entry in archive.entries_with_seek()? {
            let entry = entry?;
            let name = normalize(&entry.path()?.to_string_lossy());
            let kind = entry.header().entry_type();
            if kind.is_hard_link() || kind.is_symlink() {
                let target = entry
                    .link_name()?
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // A hard link names a member of the archive; a symbolic one a path from its own folder.
                let target = match (kind.is_symlink(), name.rsplit_once('/')) {
                    (true, Some((dir, _))) if !target.starts_with('/') => normalize(&format!("{dir}/{target}")),
                    _ => normalize(&target),
                };
                links.push((name, target));
                continue;
            }
            if !kind.is_file() && !kind.is_contiguous() {
                continue;
            }
            let member = Member {
                offset: entry.raw_file_position(),
                size: entry.size(),
            };
            // A second copy under one name is what a tar reader would extract last: refuse the ambiguity.
            if members.insert(name.clone(), member).is_some() {
                return Err(std::io::Error::other(format!("it holds {name} twice")));
            }
        }
        // Links to links are followed a few hops; one to nothing is left out (its file is then missing).
        for _ in 0..8 {
            let mut unresolved = Vec::new();
            for (name, target) in links {
                match members.get(&target).copied() {
                    Some(member) => {
                        members.entry(name).or_insert(member);
                    }
                    None => unresolved.push((name, target)),
                }
            }
            links = unresolved;
        }
        Ok(Store::Tar {
            path: path.to_path_buf(),
            members,
        })
    }

    /// Where the file `name` (a path inside the source) is, if it is there.
    pub fn locate(&self, name: &str) -> Option<Range> {
        match self {
            Store::Dir(dir) => {
                // Nothing outside the source is read: a link may point within the folder (a layer two
                // images share), not out of it, where it would read (or tell the size of) another's file.
                let root = dir.canonicalize().ok()?;
                let path = dir.join(name).canonicalize().ok().filter(|p| p.starts_with(&root))?;
                let meta = std::fs::metadata(&path).ok().filter(|m| m.is_file())?;
                Some(Range {
                    path,
                    offset: 0,
                    size: meta.len(),
                })
            }
            Store::Tar { path, members } => members.get(name).map(|m| Range {
                path: path.clone(),
                offset: m.offset,
                size: m.size,
            }),
        }
    }

    /// The whole of a small file (an index, a manifest, a config), at most `limit` bytes.
    pub fn read(&self, name: &str, limit: u64) -> std::io::Result<Vec<u8>> {
        let range = self
            .locate(name)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{name} is missing")))?;
        if range.size > limit {
            return Err(std::io::Error::other(format!(
                "{name} has {} bytes, more than the {limit} a manifest may have",
                range.size
            )));
        }
        range.read_all()
    }
}

/// An archive path without `./`, `.` or `name/..` parts.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

impl Range {
    pub fn open(&self) -> std::io::Result<std::io::Take<File>> {
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(self.offset))?;
        Ok(file.take(self.size))
    }

    pub fn read_all(&self) -> std::io::Result<Vec<u8>> {
        let mut data = Vec::with_capacity(self.size as usize);
        self.open()?.read_to_end(&mut data)?;
        if data.len() as u64 != self.size {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file is cut short",
            ));
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_s_link_out_of_it_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let (source, outside) = (tmp.path().join("layout"), tmp.path().join("secret"));
        std::fs::create_dir_all(source.join("blobs/sha256")).unwrap();
        std::fs::write(&outside, b"root only").unwrap();
        std::fs::write(source.join("blobs/sha256/aa"), b"layer").unwrap();
        std::os::unix::fs::symlink(&outside, source.join("blobs/sha256/bb")).unwrap();
        std::os::unix::fs::symlink("aa", source.join("blobs/sha256/cc")).unwrap();
        let store = Store::Dir(source);
        assert!(
            store.locate("blobs/sha256/bb").is_none(),
            "a link out of the folder was followed"
        );
        assert!(store.locate("blobs/../../secret").is_none());
        assert_eq!(
            store.read("blobs/sha256/cc", 100).unwrap(),
            b"layer",
            "a link within it is its file"
        );
    }

    #[test]
    fn tar_members_are_read_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        let mut builder = tar::Builder::new(File::create(&path).unwrap());
        for (name, data) in [("index.json", &b"{}"[..]), ("blobs/sha256/ab", &[7u8; 1500][..])] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, data).unwrap();
        }
        for (kind, name, target) in [
            (tar::EntryType::Symlink, "link/layer.tar", "../blobs/sha256/ab"),
            (tar::EntryType::Link, "hard.tar", "blobs/sha256/ab"),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(0);
            header.set_cksum();
            builder.append_link(&mut header, name, target).unwrap();
        }
        builder.into_inner().unwrap();
        let store = Store::tar(&path).unwrap();
        for link in ["link/layer.tar", "hard.tar"] {
            assert_eq!(
                store.read(link, 4096).unwrap(),
                vec![7u8; 1500],
                "{link} is the file it points at"
            );
        }
        assert_eq!(store.read("index.json", 10).unwrap(), b"{}");
        assert_eq!(store.read("blobs/sha256/ab", 4096).unwrap(), vec![7u8; 1500]);
        assert!(store.read("blobs/sha256/ab", 100).is_err(), "over the limit");
        assert!(store.locate("missing").is_none());
    }
}
