//! /etc/subuid and /etc/subgid: reading them, and choosing a range for a user that overlaps no other.
//! Pure but for [`range_of`], which reads one file.

use std::path::Path;

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
pub fn range_of(file: &Path, user: &str) -> Option<(u64, u64)> {
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
