//! `registry-up prepare-user NAME` (as root): what the guides do by hand with usermod and loginctl.
//! A subordinate UID and GID range of 65536 that overlaps no other (or the valid one the user has),
//! lingering when systemd runs, and the rootless checks with their fixes. Re-running changes nothing.

use std::path::Path;

use crate::cli::PrepareUserArgs;
use crate::error::{Error, ExitStatus, Result};
use crate::host::HostFacts;
use crate::preflight::{print_findings, rootless_checks, Finding};
use crate::subid::{self, Decision, RANGE};

fn login_defs(key: &str, default: u64) -> u64 {
    std::fs::read_to_string("/etc/login.defs")
        .ok()
        .and_then(|text| {
            text.lines()
                .filter_map(|l| {
                    l.split_whitespace()
                        .collect::<Vec<_>>()
                        .get(..2)
                        .map(|p| (p[0].to_string(), p[1].to_string()))
                })
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| v.parse().ok())
        })
        .unwrap_or(default)
}

fn user_uid(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is valid; getpwnam returns static storage or null.
    unsafe {
        let pw = libc::getpwnam(c.as_ptr());
        (!pw.is_null()).then(|| (*pw).pw_uid)
    }
}

extern "C" {
    // glibc's lock for the account files (shadow.h), which useradd and usermod take as well.
    fn lckpwdf() -> libc::c_int;
    fn ulckpwdf() -> libc::c_int;
}

/// Holds the account-files lock while alive.
struct AccountsLock;

impl AccountsLock {
    fn take() -> Result<Self> {
        // SAFETY: plain libc calls without arguments.
        if unsafe { lckpwdf() } == 0 {
            Ok(AccountsLock)
        } else {
            Err(Error::runtime(
                "Could not lock the account files (another useradd or usermod runs?): try again.",
            ))
        }
    }
}

impl Drop for AccountsLock {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { ulckpwdf() };
    }
}

pub fn command(args: &PrepareUserArgs, host: &HostFacts) -> Result<ExitStatus> {
    if !host.root {
        return Err(Error::usage(
            "prepare-user changes /etc/subuid, /etc/subgid and lingering: run it as root.",
        ));
    }
    let user = &args.name;
    let uid = user_uid(user).ok_or_else(|| {
        Error::usage(format!(
            "There is no user {user} on this host: create it first (useradd -m {user}), then run prepare-user again."
        ))
    })?;
    let verb = if args.dry_run { "would" } else { "will" };
    let lock = if args.dry_run {
        None
    } else {
        Some(AccountsLock::take()?)
    };
    let mut findings = Vec::new();
    for (file, min_key, max_key) in [
        ("/etc/subuid", "SUB_UID_MIN", "SUB_UID_MAX"),
        ("/etc/subgid", "SUB_GID_MIN", "SUB_GID_MAX"),
    ] {
        let path = Path::new(file);
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(Error::usage(format!(
                    "Cannot read {file} ({e}): fix its permissions (root must read it) and run again."
                )))
            }
        };
        let (min, max) = (login_defs(min_key, 100_000), login_defs(max_key, 600_100_000));
        match subid::decide(&text, user, uid, min) {
            Decision::Keep(e) => findings.push(Finding::ok(file, format!("{user} keeps {}:{}", e.start, e.count))),
            Decision::Add { entry, .. } if entry.start + entry.count > max + 1 => {
                return Err(Error::usage(format!(
                    "{file} has no free range of {RANGE} IDs below {max_key} ({max}): remove unused ranges, or raise {max_key} in /etc/login.defs."
                )))
            }
            Decision::Add { entry, replaces } => {
                let line = format!("{}:{}:{}", entry.owner, entry.start, entry.count);
                let dropped: Vec<String> = replaces.iter().map(|e| format!("{}:{}:{}", e.owner, e.start, e.count)).collect();
                let detail = if dropped.is_empty() {
                    format!("{verb} add {line}")
                } else {
                    format!("{verb} replace {} (too small or overlapping another user's) with {line}", dropped.join(", "))
                };
                findings.push(Finding::ok(file, detail.replacen("will ", "", 1)));
                if !args.dry_run {
                    let mut kept: Vec<&str> = text
                        .lines()
                        .filter(|l| !replaces.iter().any(|e| subid::parse(l).first() == Some(e)))
                        .collect();
                    kept.push(&line);
                    let mut new = kept.join("\n");
                    new.push('\n');
                    // Atomic, so a concurrent useradd or login never reads half a file.
                    crate::atomic::write_atomic(path, new.as_bytes(), 0o644)?;
                }
            }
        }
    }
    drop(lock);
    if host.systemd_running {
        if crate::runtime::systemd::linger_enabled(user) {
            findings.push(Finding::ok("linger", format!("on for {user}")));
        } else if args.dry_run {
            findings.push(Finding::ok("linger", format!("would enable lingering for {user}")));
        } else {
            crate::runtime::systemd::enable_linger(user)?;
            findings.push(Finding::ok(
                "linger",
                format!("enabled for {user}: the appliance runs without a login"),
            ));
        }
    } else {
        findings.push(Finding::info(
            "linger",
            "systemd is not running: nothing to enable (the pod runs while started)",
        ));
    }
    findings.extend(rootless_checks());
    print_findings(&findings);
    let problems = findings.iter().filter(|f| f.is_problem()).count();
    if problems > 0 {
        println!("{problems} problem(s) left: rootless Podman will fail for {user} until they are fixed.");
    }
    Ok(ExitStatus::verdict(problems == 0))
}
