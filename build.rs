//! Puts the git commit into `registry-up --version`, so a binary copied onto an air-gapped host says which
//! source it came from. Outside a git checkout (a source tarball) REGISTRY_UP_COMMIT may name it; else
//! the version says "unknown commit".

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    // safe.directory: a build by another user than the checkout's owner still names the commit.
    let out = Command::new("git")
        .args(["-c", "safe.directory=*"])
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
            // Uncommitted changes to tracked files: the binary is not exactly that commit.
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            Some(if dirty { format!("{commit}-dirty") } else { commit })
        });
    // Run again when HEAD moves or the work tree's index changes (commits, checkouts, staged edits).
    if let Some(git_dir) = git(&["rev-parse", "--git-dir"]) {
        let git_dir = Path::new(&git_dir);
        let mut watched = vec![git_dir.join("HEAD"), git_dir.join("index"), git_dir.join("packed-refs")];
        if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watched.push(git_dir.join(head));
        }
        for path in watched.iter().filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    // …and when a source file changes, which may make the tree dirty or clean again.
    for path in ["build.rs", "src", "templates", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={path}");
    }
    let commit = commit.unwrap_or_else(|| "unknown commit".into());
    println!(
        "cargo:rustc-env=REGISTRY_UP_VERSION={} ({commit})",
        std::env::var("CARGO_PKG_VERSION").unwrap()
    );
}
