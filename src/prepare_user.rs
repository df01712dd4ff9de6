//! `registry-up prepare-user NAME` (as root): what the guides do by hand with usermod and loginctl.
//! A subordinate UID and GID range of 65536 that overlaps no other (or the valid one the user has),
//! lingering when systemd runs, and the rootless checks with their fixes. Re-running changes nothing.

use std::path::Path;

use crate::cli::PrepareUserArgs;
use crate::doctor::{print_findings, rootless_checks, Finding};
use crate::error::{Error, Result};

pub const RANGE: u64 = 65536;

/// One `name:start:count` line of /etc/subuid or /etc/subgid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub owner: String,
    pub start: u64,
    pub count: u64,
}

impl Entry {
    fn end(&self) -> u64 {
        self.start.saturating_add(self.count)
    }
    fn overlaps(&self, start: u64, count: u64) -> bool {
        self.start < start + count && start < self.end()
    }
}

pub fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.trim().splitn(3, ':');
            let owner = parts.next()?.to_string();
            let start = parts.next()?.trim().parse().ok()?;
            let count = parts.next()?.trim().parse().ok()?;
            (!owner.is_empty() && !owner.starts_with('#')).then_some(Entry { owner, start, count })
        })
        .collect()
}

/// The first range of `count` IDs at or above `min` that overlaps none of `entries`.
pub fn next_free(entries: &[Entry], min: u64, count: u64) -> u64 {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by_key(|e| e.start);
    let mut candidate = min;
    for e in sorted {
        if e.overlaps(candidate, count) {
            candidate = candidate.max(e.end());
        }
    }
    candidate
}

/// The range `user` has in `file`, if any (by name).
pub fn subid_range(file: &Path, user: &str) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(file).ok()?;
    parse(&text)
        .into_iter()
        .find(|e| e.owner == user)
        .map(|e| (e.start, e.count))
}

/// What to do with one of the two files.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Keep(Entry),
    /// Add this entry (and drop `replaces`, an invalid one of the same user).
    Add {
        entry: Entry,
        replaces: Vec<Entry>,
    },
}

/// Decides for `user` (name and numeric uid, as either can own a line) given the file's text.
pub fn decide(text: &str, user: &str, uid: u32, min: u64) -> Decision {
    let entries = parse(text);
    let is_user = |e: &Entry| e.owner == user || e.owner == uid.to_string();
    let (mine, others): (Vec<Entry>, Vec<Entry>) = entries.into_iter().partition(is_user);
    if let Some(valid) = mine
        .iter()
        .find(|e| e.count >= RANGE && !others.iter().any(|o| o.overlaps(e.start, e.count)))
    {
        return Decision::Keep(valid.clone());
    }
    let start = next_free(&others, min, RANGE);
    Decision::Add {
        entry: Entry {
            owner: user.to_string(),
            start,
            count: RANGE,
        },
        replaces: mine,
    }
}

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

pub fn command(args: &PrepareUserArgs) -> Result<i32> {
    if !crate::paths::is_root() {
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
            Err(e) => return Err(Error::usage(format!("Cannot read {file} ({e})."))),
        };
        let (min, max) = (login_defs(min_key, 100_000), login_defs(max_key, 600_100_000));
        match decide(&text, user, uid, min) {
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
                        .filter(|l| !replaces.iter().any(|e| parse(l).first() == Some(e)))
                        .collect();
                    kept.push(&line);
                    let mut new = kept.join("\n");
                    new.push('\n');
                    // Atomic, so a concurrent useradd or login never reads half a file.
                    crate::apply::write_atomic(path, new.as_bytes(), 0o644)?;
                }
            }
        }
    }
    drop(lock);
    if crate::sys::systemd_running() {
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
    Ok(if problems == 0 { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_skips_junk() {
        let e = parse("alice:100000:65536\n# comment\n\nbob:165536:65536\nbroken line\n1001:300000:1000\n");
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[2],
            Entry {
                owner: "1001".into(),
                start: 300000,
                count: 1000
            }
        );
    }

    #[test]
    fn allocates_after_and_between_existing_ranges() {
        assert_eq!(next_free(&[], 100000, RANGE), 100000);
        let e = parse("a:100000:65536\nb:165536:65536\n");
        assert_eq!(next_free(&e, 100000, RANGE), 231072);
        // A gap large enough is used; one too small is skipped.
        let e = parse("a:100000:65536\nb:300000:65536\nc:231072:1000\n");
        assert_eq!(next_free(&e, 100000, RANGE), 165536);
        let e = parse("a:100000:65536\nb:200000:65536\n");
        assert_eq!(next_free(&e, 100000, RANGE), 265536);
    }

    #[test]
    fn keeps_a_valid_range_and_replaces_a_bad_one() {
        let text = "alice:100000:65536\nbob:165536:65536\n";
        assert_eq!(
            decide(text, "bob", 1001, 100000),
            Decision::Keep(Entry {
                owner: "bob".into(),
                start: 165536,
                count: 65536
            })
        );
        // By uid too.
        assert!(matches!(
            decide("1001:165536:65536\n", "bob", 1001, 100000),
            Decision::Keep(_)
        ));
        // Too small: replaced, placed after everyone else's.
        let d = decide("alice:100000:65536\nbob:165536:10\n", "bob", 1001, 100000);
        match d {
            Decision::Add { entry, replaces } => {
                assert_eq!(entry.start, 165536);
                assert_eq!(replaces.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        // Overlapping another user's: replaced.
        assert!(matches!(
            decide("alice:100000:65536\nbob:120000:65536\n", "bob", 1001, 100000),
            Decision::Add { .. }
        ));
        // New user: after all.
        match decide(text, "carol", 1002, 100000) {
            Decision::Add { entry, replaces } => assert_eq!((entry.start, replaces.len()), (231072, 0)),
            other => panic!("{other:?}"),
        }
    }
}
