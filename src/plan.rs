//! Plan: the rendered files against the disk. Reads, never writes; `--dry-run` prints it and `apply`
//! carries it out, so a re-run with nothing changed writes nothing.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::render::{Reader, RenderedFile};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create,
    /// What differs: contents, mode or both.
    Update(&'static str),
    Unchanged,
}

#[derive(Debug, Clone)]
pub struct FileChange {
    pub path: PathBuf,
    pub file: RenderedFile,
    pub action: Action,
}

#[derive(Debug, Clone)]
pub struct DirChange {
    pub path: PathBuf,
    pub mode: u32,
    /// Missing (create) or present with another mode (chmod).
    pub create: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub dirs: Vec<DirChange>,
    pub files: Vec<FileChange>,
}

impl Plan {
    /// Files that will be written.
    pub fn writes(&self) -> impl Iterator<Item = &FileChange> {
        self.files.iter().filter(|c| c.action != Action::Unchanged)
    }

    pub fn is_noop(&self) -> bool {
        self.dirs.is_empty() && self.writes().next().is_none()
    }

    /// What the running pod needs for the files that change: nothing, an nginx reload, or a restart.
    pub fn pod_needs(&self) -> Reader {
        self.writes()
            .map(|c| c.file.reader)
            .max_by_key(|r| match r {
                Reader::Nobody => 0,
                Reader::Nginx => 1,
                Reader::Pod => 2,
            })
            .unwrap_or(Reader::Nobody)
    }
}

/// A directory the appliance needs and the mode it must have. `enforce_mode` is false for folders a
/// user may have chosen and prepared (the config and data roots): those are only created when missing.
pub struct WantedDir {
    pub path: PathBuf,
    pub mode: u32,
    pub enforce_mode: bool,
}

fn read_error(path: &Path, e: std::io::Error) -> Error {
    Error::usage(crate::host::io_failed("read", path, &e))
}

pub fn plan(dirs: Vec<WantedDir>, files: Vec<(PathBuf, RenderedFile)>) -> Result<Plan> {
    let mut plan = Plan::default();
    for dir in dirs {
        match std::fs::metadata(&dir.path) {
            Ok(meta) if meta.is_dir() => {
                if dir.enforce_mode && meta.permissions().mode() & 0o7777 != dir.mode {
                    plan.dirs.push(DirChange {
                        path: dir.path,
                        mode: dir.mode,
                        create: false,
                    });
                }
            }
            Ok(_) => {
                return Err(Error::usage(format!(
                    "{} exists but is not a directory: move it away, or choose another directory.",
                    dir.path.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                plan.dirs.push(DirChange {
                    path: dir.path,
                    mode: dir.mode,
                    create: true,
                });
            }
            Err(e) => return Err(read_error(&dir.path, e)),
        }
    }
    for (path, file) in files {
        let action = match std::fs::read(&path) {
            Ok(current) => {
                let mode = std::fs::metadata(&path)
                    .map_err(|e| read_error(&path, e))?
                    .permissions()
                    .mode()
                    & 0o7777;
                match (current == file.contents, mode == file.mode) {
                    (true, true) => Action::Unchanged,
                    (false, true) => Action::Update("contents"),
                    (true, false) => Action::Update("mode"),
                    (false, false) => Action::Update("contents and mode"),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Action::Create,
            Err(e) => return Err(read_error(&path, e)),
        };
        plan.files.push(FileChange { path, file, action });
    }
    Ok(plan)
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.dirs {
            let what = if d.create { "create" } else { "chmod" };
            writeln!(f, "  {what:<9} {}/ ({:o})", d.path.display(), d.mode)?;
        }
        for c in &self.files {
            match &c.action {
                Action::Create => writeln!(f, "  create    {} ({:o})", c.path.display(), c.file.mode)?,
                Action::Update(what) => writeln!(f, "  update    {} ({what})", c.path.display())?,
                Action::Unchanged => writeln!(f, "  unchanged {}", c.path.display())?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{Reader, RenderedFile, Root};

    fn file(rel: &str, contents: &str, mode: u32) -> RenderedFile {
        RenderedFile {
            root: Root::Config,
            rel: rel.into(),
            contents: contents.into(),
            mode,
            reader: Reader::Pod,
        }
    }

    #[test]
    fn apply_then_plan_again_is_a_noop() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("cfg");
        let dirs = || {
            vec![WantedDir {
                path: root.clone(),
                mode: 0o700,
                enforce_mode: true,
            }]
        };
        let files = || {
            vec![
                (root.join("a.conf"), file("a.conf", "hello\n", 0o644)),
                (root.join("b.key"), file("b.key", "secret\n", 0o600)),
            ]
        };
        let first = plan(dirs(), files()).unwrap();
        assert_eq!(first.dirs.len(), 1);
        assert!(first.files.iter().all(|c| c.action == Action::Create));
        crate::apply::apply(&first).unwrap();

        let second = plan(dirs(), files()).unwrap();
        assert!(second.is_noop(), "{second}");
        assert_eq!(second.pod_needs(), Reader::Nobody);

        // A changed file and a changed mode are both seen.
        std::fs::set_permissions(root.join("b.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut changed = files();
        changed[0].1.contents = b"bye\n".to_vec();
        let third = plan(dirs(), changed).unwrap();
        assert_eq!(third.files[0].action, Action::Update("contents"));
        assert_eq!(third.files[1].action, Action::Update("mode"));
        assert_eq!(third.pod_needs(), Reader::Pod);
    }
}
