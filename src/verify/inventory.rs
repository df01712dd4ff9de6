//! The inventory: what a registry serves, tag by tag, as one JSON document with a stable order. It is
//! taken by asking the registry (what clients get), not by reading files: an upgrade that moved the
//! storage, or a registry that reads another folder than the file says, serves less than the folder
//! holds, and only the answers show it. Two inventories compare tag by tag: the proof that a change kept
//! what the registry served.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const SCHEMA: &str = "registry-up.inventory/v1";

/// An inventory larger than this is not one registry-up wrote (10 000 tags take ~2 MB).
const MAX_FILE: u64 = 256 << 20;

/// One tag as served: the digest its manifest hashes to, and an index's children that were served.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tag {
    pub tag: String,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// An index's children (their digests, in the index's order) that the registry served.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    pub name: String,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub repositories: usize,
    pub tags: usize,
    /// Distinct manifests served (indexes and their children).
    pub manifests: usize,
    /// Distinct blobs (configs and layers) the manifests name, and their bytes as the manifests say.
    pub blobs: usize,
    pub blob_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub schema: String,
    /// When it was taken, RFC 3339 in UTC.
    pub taken: String,
    /// `host:port` it was taken from.
    pub registry: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_image: Option<String>,
    /// Where that registry keeps its data (a folder, or an S3 bucket), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    pub counts: Counts,
    /// Tags listed whose manifest (or a child of it) could not be read: they are left out of
    /// `repositories`, so a later comparison names them.
    #[serde(default)]
    pub unreadable: usize,
    /// Every repository of the catalog, by name; tags by name.
    pub repositories: Vec<Repository>,
}

/// What a walk found for one tag, before it is put in order.
pub struct Found {
    pub repository: String,
    pub tag: Tag,
}

/// Where and what, for the inventory's header.
#[derive(Debug, Clone, Default)]
pub struct About {
    pub registry: String,
    pub registry_image: Option<String>,
    pub storage: Option<String>,
}

impl About {
    /// The header of an inventory of the appliance `state` describes, reached as `target`.
    pub fn of(target: &super::target::Target, state: &crate::state::State) -> About {
        About {
            registry: target.registry(),
            registry_image: Some(state.registry_image.clone()),
            storage: Some(state.storage()),
        }
    }
}

impl Inventory {
    /// Puts a walk's findings in order. `repositories`: every repository of the catalog (one without
    /// tags is listed too); `blobs`: every blob named, with its size; `manifests`: every manifest served.
    pub fn new(
        about: About,
        repositories: &[String],
        found: Vec<Found>,
        manifests: usize,
        blobs: &BTreeMap<String, u64>,
        unreadable: usize,
    ) -> Inventory {
        let mut by_repo: BTreeMap<String, Vec<Tag>> = repositories.iter().map(|r| (r.clone(), Vec::new())).collect();
        for f in found {
            by_repo.entry(f.repository).or_default().push(f.tag);
        }
        let repositories: Vec<Repository> = by_repo
            .into_iter()
            .map(|(name, mut tags)| {
                tags.sort();
                Repository { name, tags }
            })
            .collect();
        Inventory {
            schema: SCHEMA.into(),
            taken: now_rfc3339(),
            registry: about.registry,
            registry_image: about.registry_image,
            storage: about.storage,
            counts: Counts {
                repositories: repositories.len(),
                tags: repositories.iter().map(|r| r.tags.len()).sum(),
                manifests,
                blobs: blobs.len(),
                blob_bytes: blobs.values().sum(),
            },
            unreadable,
            repositories,
        }
    }

    /// Every tag, as (repository, tag).
    /// Every tag, by (repository, tag).
    pub fn tags(&self) -> BTreeMap<(&str, &str), &Tag> {
        self.repositories
            .iter()
            .flat_map(|r| r.tags.iter().map(move |t| ((r.name.as_str(), t.tag.as_str()), t)))
            .collect()
    }

    /// Tag `tag` of `repository` as served now: replaced, added (in order), or left out (`None`).
    pub fn set(&mut self, repository: &str, tag: &str, now: Option<Tag>) {
        let at = match self.repositories.binary_search_by(|r| r.name.as_str().cmp(repository)) {
            Ok(at) => at,
            Err(_) if now.is_none() => return,
            Err(at) => {
                self.repositories.insert(
                    at,
                    Repository {
                        name: repository.to_string(),
                        tags: Vec::new(),
                    },
                );
                at
            }
        };
        let tags = &mut self.repositories[at].tags;
        tags.retain(|t| t.tag != tag);
        if let Some(now) = now {
            let i = tags.partition_point(|t| *t < now);
            tags.insert(i, now);
        }
        self.counts.repositories = self.repositories.len();
        self.counts.tags = self.repositories.iter().map(|r| r.tags.len()).sum();
    }

    /// "N repositories, N tags, N manifests, N blobs (SIZE)".
    pub fn describe_counts(&self) -> String {
        let c = &self.counts;
        format!(
            "{} repositories, {} tags, {} manifests, {} blobs ({})",
            c.repositories,
            c.tags,
            c.manifests,
            c.blobs,
            indicatif::HumanBytes(c.blob_bytes)
        )
    }

    /// Written 0600 through a temporary file renamed into place.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_vec_pretty(self).expect("an inventory serialises");
        text.push(b'\n');
        crate::atomic::write_atomic(path, &text, 0o600)
    }

    /// An inventory file, checked: any file is safe to give it.
    pub fn read(path: &Path) -> Result<Inventory> {
        let refused = |why: String| {
            Error::usage(format!(
                "{} is not an inventory registry-up can compare with ({why}): give a file written by \
                 registry-up verify --deep --record FILE.",
                path.display()
            ))
        };
        let meta = std::fs::metadata(path).map_err(|e| refused(e.to_string()))?;
        if !meta.is_file() {
            return Err(refused("not a regular file".into()));
        }
        if meta.len() > MAX_FILE {
            return Err(refused(format!("larger than {}", indicatif::HumanBytes(MAX_FILE))));
        }
        let mut text = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(std::fs::File::open(path).map_err(|e| refused(e.to_string()))?, MAX_FILE),
            &mut text,
        )
        .map_err(|e| refused(e.to_string()))?;
        let inventory: Inventory = serde_json::from_slice(&text).map_err(|e| refused(e.to_string()))?;
        if inventory.schema != SCHEMA {
            return Err(refused(format!("its schema is {:?}, not {SCHEMA}", inventory.schema)));
        }
        Ok(inventory)
    }
}

/// A tag of the earlier inventory that is served no more, or with another digest, or an index whose
/// child is no longer served.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Change {
    pub repository: String,
    pub tag: String,
    /// The digest it had.
    pub was: String,
    /// The digest served now; None when the tag is gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub now: Option<String>,
    /// Children of the index (same digest) that are no longer served.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children_lost: Vec<String>,
}

impl Change {
    /// "repo:tag gone (was sha256:…)", "repo:tag sha256:a → sha256:b", "repo:tag: child sha256:… gone".
    pub fn describe(&self) -> String {
        match (&self.now, self.children_lost.is_empty()) {
            (None, _) => format!("{}:{} gone (was {})", self.repository, self.tag, self.was),
            (Some(now), true) => format!("{}:{} {} -> {now}", self.repository, self.tag, self.was),
            (Some(_), false) => format!(
                "{}:{} {}: no longer serves its platform manifest(s) {}",
                self.repository,
                self.tag,
                self.was,
                self.children_lost.join(", ")
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Added {
    pub repository: String,
    pub tag: String,
    pub digest: String,
}

/// How what is served now differs from an earlier inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Comparison {
    /// When the earlier one was taken.
    pub baseline_taken: String,
    /// Tags of the earlier one that are still served with the same digest (and every child).
    pub kept: usize,
    /// Lost or changed: each one a failure.
    pub changed: Vec<Change>,
    /// Tags served now that the earlier one did not have: information.
    pub added: Vec<Added>,
}

impl Comparison {
    pub fn equal(&self) -> bool {
        self.changed.is_empty()
    }
}

/// Compares what `now` serves with `before`, tag by tag.
pub fn compare(before: &Inventory, now: &Inventory) -> Comparison {
    let (old, new) = (before.tags(), now.tags());
    let mut out = Comparison {
        baseline_taken: before.taken.clone(),
        ..Default::default()
    };
    for ((repo, tag), was) in &old {
        let change = |now: Option<String>, children_lost: Vec<String>| Change {
            repository: repo.to_string(),
            tag: tag.to_string(),
            was: was.digest.clone(),
            now,
            children_lost,
        };
        match new.get(&(*repo, *tag)) {
            None => out.changed.push(change(None, Vec::new())),
            Some(is) if is.digest != was.digest => out.changed.push(change(Some(is.digest.clone()), Vec::new())),
            Some(is) => {
                let served: BTreeSet<&String> = is.children.iter().collect();
                let lost: Vec<String> = was.children.iter().filter(|c| !served.contains(c)).cloned().collect();
                if lost.is_empty() {
                    out.kept += 1;
                } else {
                    out.changed.push(change(Some(is.digest.clone()), lost));
                }
            }
        }
    }
    for ((repo, tag), is) in &new {
        if !old.contains_key(&(*repo, *tag)) {
            out.added.push(Added {
                repository: repo.to_string(),
                tag: tag.to_string(),
                digest: is.digest.clone(),
            });
        }
    }
    out
}

/// Now, as `2026-12-07T18:00:00Z`.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a UTC time of this era formats as RFC 3339")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(name: &str, digest: &str, children: &[&str]) -> Tag {
        Tag {
            tag: name.into(),
            digest: digest.into(),
            media_type: None,
            children: children.iter().map(|c| c.to_string()).collect(),
        }
    }

    fn inventory(found: Vec<(&str, Tag)>) -> Inventory {
        let repos: Vec<String> = found.iter().map(|(r, _)| r.to_string()).collect();
        let found = found
            .into_iter()
            .map(|(r, t)| Found {
                repository: r.into(),
                tag: t,
            })
            .collect();
        Inventory::new(About::default(), &repos, found, 0, &BTreeMap::new(), 0)
    }

    #[test]
    fn a_tag_set_again_keeps_the_order_a_walk_would_give() {
        let mut settled = inventory(vec![
            ("b", tag("1", "sha256:b1", &[])),
            ("b", tag("3", "sha256:b3", &[])),
        ]);
        settled.set("b", "2", Some(tag("2", "sha256:b2", &[])));
        settled.set("b", "3", Some(tag("3", "sha256:new", &[])));
        settled.set("a", "1", Some(tag("1", "sha256:a1", &[])));
        settled.set("b", "1", None);
        settled.set("c", "1", None);
        let walked = inventory(vec![
            ("a", tag("1", "sha256:a1", &[])),
            ("b", tag("3", "sha256:new", &[])),
            ("b", tag("2", "sha256:b2", &[])),
        ]);
        assert_eq!(settled.repositories, walked.repositories);
        assert_eq!((settled.counts.repositories, settled.counts.tags), (2, 3));
    }

    #[test]
    fn the_order_is_stable_whatever_the_walk_found_first() {
        let a = inventory(vec![
            ("b", tag("2", "sha256:b2", &[])),
            ("a", tag("1", "sha256:a1", &[])),
            ("b", tag("1", "sha256:b1", &[])),
        ]);
        let b = inventory(vec![
            ("b", tag("1", "sha256:b1", &[])),
            ("b", tag("2", "sha256:b2", &[])),
            ("a", tag("1", "sha256:a1", &[])),
        ]);
        assert_eq!(a.repositories, b.repositories);
        assert_eq!(a.repositories[0].name, "a");
        assert_eq!(a.repositories[1].tags[0].tag, "1");
        assert_eq!((a.counts.repositories, a.counts.tags), (2, 3));
    }

    #[test]
    fn lost_changed_children_and_added_tags_are_told_apart() {
        let before = inventory(vec![
            ("app", tag("1", "sha256:a", &[])),
            ("app", tag("2", "sha256:b", &[])),
            ("multi", tag("1", "sha256:i", &["sha256:c1", "sha256:c2"])),
            ("same", tag("1", "sha256:s", &[])),
        ]);
        let now = inventory(vec![
            ("app", tag("2", "sha256:x", &[])),
            ("multi", tag("1", "sha256:i", &["sha256:c1"])),
            ("same", tag("1", "sha256:s", &[])),
            ("new", tag("1", "sha256:n", &[])),
        ]);
        let c = compare(&before, &now);
        assert!(!c.equal());
        let said: Vec<String> = c.changed.iter().map(Change::describe).collect();
        assert_eq!(
            said,
            [
                "app:1 gone (was sha256:a)",
                "app:2 sha256:b -> sha256:x",
                "multi:1 sha256:i: no longer serves its platform manifest(s) sha256:c2",
            ]
        );
        assert_eq!(c.kept, 1);
        assert_eq!(c.added.len(), 1);
        assert_eq!((c.added[0].repository.as_str(), c.added[0].tag.as_str()), ("new", "1"));
        assert!(compare(&before, &before).equal());
    }

    #[test]
    fn a_written_inventory_reads_back_and_other_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let inv = inventory(vec![("a", tag("1", "sha256:a1", &["sha256:c"]))]);
        let path = dir.path().join("inventory.json");
        inv.write(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(Inventory::read(&path).unwrap(), inv);
        std::fs::write(&path, b"{\"schema\":\"other\"}").unwrap();
        let e = Inventory::read(&path).unwrap_err();
        assert_eq!(e.status, crate::error::ExitStatus::Usage);
        assert!(Inventory::read(dir.path())
            .unwrap_err()
            .message
            .contains("not a regular file"));
    }
}
