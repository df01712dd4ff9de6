//! Apply: carries out a plan, folders first (their modes set outright), then each changed file with an
//! atomic write (src/atomic.rs), state.json last.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::atomic::write_error;
use crate::error::Result;
use crate::layout::STATE;
use crate::plan::{Action, Plan};

/// Returns how many files were written.
pub fn apply(plan: &Plan) -> Result<usize> {
    for dir in &plan.dirs {
        if dir.create {
            fs::create_dir_all(&dir.path).map_err(|e| write_error(&dir.path, e))?;
        }
        // Explicit, so that a restrictive umask does not decide the mode.
        fs::set_permissions(&dir.path, fs::Permissions::from_mode(dir.mode)).map_err(|e| write_error(&dir.path, e))?;
    }
    // A run killed half-way may have left its temp files: nobody else names files like ours.
    let dirs: std::collections::BTreeSet<&Path> = plan.files.iter().filter_map(|c| c.path.parent()).collect();
    for dir in dirs {
        crate::atomic::remove_stale_temp_files(dir);
    }
    // The state file goes last: it records a finished apply. The CA's key goes before its certificate, so
    // a stop in between never leaves a certificate that looks usable without its key.
    let mut writes: Vec<_> = plan.writes().collect();
    writes.sort_by_key(|c| (c.file.rel == STATE, c.file.rel == crate::layout::CA_CERT));
    for change in &writes {
        if change.action != Action::Unchanged {
            crate::atomic::write_atomic(&change.path, &change.file.contents, change.file.mode)?;
        }
    }
    Ok(writes.len())
}
