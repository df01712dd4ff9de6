//! The site-wide read-only switch that `gc` throws on S3 storage. Replicas on one bucket share every
//! write, so a collection must hold them all at once, and a replica's host has no agent another host could
//! call. So the switch lives where they all look: a manifest tagged `hold` in the repository
//! `registry-up/gc-hold`, in the shared bucket. Before any write, each replica's nginx asks its own
//! registry for that tag with `If-None-Match: "<this manifest's digest>"`: 304 (the hold stands) refuses
//! the write with a message, 404 lets it through (nginx's templates/registry.conf). One push through any
//! replica holds the site; removing the repository's objects from the bucket lifts it (a DELETE through
//! nginx would itself be a refused write).
//!
//! Measured with Debian's distribution 2.8 (and read in the 3.x source): the registry answers a tag whose
//! manifest has the digest in If-None-Match with 304 before it reads the manifest, and a missing tag with
//! 404; nginx's auth_request reads the body of none of the writes it checks.

use serde::{Deserialize, Serialize};

/// The repository holding the switch; `registry-up/` is this tool's own namespace on the site.
pub const REPOSITORY: &str = "registry-up/gc-hold";
/// The tag that stands while gc holds the site.
pub const TAG: &str = "hold";
/// The hold manifest's config: OCI's empty JSON, `{}`.
pub const CONFIG: &[u8] = b"{}";
pub const CONFIG_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Where the registry keeps the repository in the bucket (distribution's storage layout): removing every
/// object under it removes the tag, and the repository from the catalog with it.
pub const BUCKET_PREFIX: &str = "docker/registry/v2/repositories/registry-up/gc-hold/";
/// The tag's link object in the bucket: there while the hold stands.
pub const TAG_LINK: &str = "docker/registry/v2/repositories/registry-up/gc-hold/_manifests/tags/hold/current/link";
/// Who holds the site, since when: written before the hold is pushed, removed after it is lifted.
pub const RECORD: &str = "registry-up/gc-hold.json";

/// The hold manifest, always these bytes (nginx's conf names their digest).
pub fn manifest() -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_TYPE}","config":{{"mediaType":"{CONFIG_TYPE}","digest":"{}","size":{}}},"layers":[],"annotations":{{"org.opencontainers.image.description":"registry-up gc holds every replica of this site read-only while this tag stands"}}}}"#,
        crate::digest::oci_digest(CONFIG),
        CONFIG.len()
    )
    .into_bytes()
}

/// The digest nginx asks the registry about.
pub fn manifest_digest() -> String {
    crate::digest::oci_digest(&manifest())
}

/// What the record says: the replica whose gc holds the site, when it began, and a random ID that tells
/// two collections begun at once apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub host: String,
    /// Seconds since the epoch.
    pub started: u64,
    pub id: String,
}

impl Record {
    pub fn new(host: &str) -> Self {
        Record {
            host: host.to_string(),
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
            id: crate::digest::random_hex(8),
        }
    }

    /// A hold nobody claims.
    fn unclaimed() -> Self {
        Record {
            host: String::new(),
            started: 0,
            id: String::new(),
        }
    }

    /// Whether this host may end the hold: its own (a gc killed here), or one nobody claims.
    pub fn ends_here(&self, domain: &str) -> bool {
        self.host == domain || self.host.is_empty()
    }

    /// "gc on HOST since TIME (UTC)".
    pub fn describe(&self) -> String {
        if self.host.is_empty() {
            return "a gc whose record is gone".to_string();
        }
        let when = time::OffsetDateTime::from_unix_timestamp(self.started as i64)
            .map(|t| {
                format!(
                    "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                    t.year(),
                    u8::from(t.month()),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second()
                )
            })
            .unwrap_or_else(|_| self.started.to_string());
        format!("gc on {} since {when}", self.host)
    }
}

/// The record in the bucket, if there is one (an unreadable one is claimed by nobody, as a missing one).
pub async fn record(bucket: &crate::s3::Bucket<'_>) -> Result<Option<Record>, String> {
    Ok(bucket
        .get(RECORD)
        .await?
        .map(|text| serde_json::from_str(&text).unwrap_or_else(|_| Record::unclaimed())))
}

/// Who holds the site as the bucket shows it, None when nobody does. A hold whose record is gone (removed
/// by hand: gc writes it before the hold and removes it after) is claimed by nobody: `host` is empty.
pub async fn current(bucket: &crate::s3::Bucket<'_>) -> Result<Option<Record>, String> {
    if let Some(record) = record(bucket).await? {
        return Ok(Some(record));
    }
    Ok(stands(bucket).await?.then(Record::unclaimed))
}

/// Whether the hold's tag stands in the bucket (every replica refuses writes).
pub async fn stands(bucket: &crate::s3::Bucket<'_>) -> Result<bool, String> {
    Ok(bucket.size(TAG_LINK).await?.is_some())
}

/// Lifts the hold: the repository's objects, then the record.
pub async fn lift(bucket: &crate::s3::Bucket<'_>) -> Result<(), String> {
    let keys: Vec<String> = bucket.list(BUCKET_PREFIX).await?.into_iter().map(|o| o.key).collect();
    bucket.delete(&keys).await?;
    bucket.delete(&[RECORD.to_string()]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hold_manifest_is_fixed_and_names_the_empty_config() {
        let m: serde_json::Value = serde_json::from_slice(&manifest()).unwrap();
        assert_eq!(m["config"]["digest"], crate::digest::oci_digest(b"{}"));
        assert_eq!(
            m["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(m["layers"].as_array().unwrap().len(), 0);
        // Every replica's nginx names this digest: a change of the bytes is a change of the site's
        // protocol (replicas of two versions would not see each other's hold).
        assert_eq!(
            manifest_digest(),
            "sha256:33aa0536018837df9182e8811380ed57022933f8a4572a35ce8d3d2d203af9ce"
        );
        assert!(TAG_LINK.starts_with(BUCKET_PREFIX));
        assert!(BUCKET_PREFIX.contains(REPOSITORY));
    }

    #[test]
    fn records_say_who_and_since_when() {
        let r = Record {
            host: "b.site".into(),
            started: 1_796_000_000,
            id: "x".into(),
        };
        assert_eq!(r.describe(), "gc on b.site since 2026-11-30 00:53:20 UTC");
        let fresh = Record::new("a.site");
        assert_eq!(fresh.id.len(), 16);
        assert_ne!(fresh.id, Record::new("a.site").id);
    }
}
