//! Puts the git commit into `registry-up --version`, so a binary copied onto an air-gapped host says which
//! source it came from. Outside a git checkout (a source tarball) REGISTRY_UP_COMMIT may name it; else
//! the version says "unknown commit".

use std::path::PathBuf;
use std::process::Command;

/// What the binary is built from: a change here makes the build "-dirty", and reruns this script.
const SOURCES: [&str; 5] = ["build.rs", "src", "templates", "Cargo.toml", "Cargo.lock"];

fn git(args: &[&str]) -> Option<String> {
    // safe.directory: a build by another user than the checkout's owner still names the commit;
    // --no-optional-locks: `status` must not rewrite the index, which is a rerun trigger below.
    let out = Command::new("git")
        .args(["-c", "safe.directory=*", "--no-optional-locks"])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=REGISTRY_UP_COMMIT");
    let commit = std::env::var("REGISTRY_UP_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
            // Uncommitted changes to what the binary is built from (new files under src too).
            let mut status = vec!["status", "--porcelain", "--untracked-files=normal", "--"];
            status.extend(SOURCES);
            let dirty = git(&status).is_some_and(|s| !s.is_empty());
            Some(if dirty { format!("{commit}-dirty") } else { commit })
        });
    // Run again when HEAD moves (a commit, a checkout, a worktree's own HEAD included)…
    let mut watched: Vec<PathBuf> = ["HEAD", "index", "packed-refs"]
        .iter()
        .filter_map(|name| git(&["rev-parse", "--git-path", name]))
        .map(PathBuf::from)
        .collect();
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.extend(git(&["rev-parse", "--git-path", &branch]).map(PathBuf::from));
    }
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    // …and when a source changes, which may make the tree dirty or clean again.
    for path in SOURCES {
        println!("cargo:rerun-if-changed={path}");
    }
    let commit = commit.unwrap_or_else(|| "unknown commit".into());
    println!(
        "cargo:rustc-env=REGISTRY_UP_VERSION={} ({commit})",
        std::env::var("CARGO_PKG_VERSION").unwrap()
    );
}
