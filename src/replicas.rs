//! The site's replicas as the shared bucket records them: each replica's `up` writes one small object
//! naming its host and port, `down --purge` and `site forget` remove it. `gc` reads them to prove that
//! every replica refuses writes before it collects (src/commands/gc_site.rs).

use serde::{Deserialize, Serialize};

use crate::s3::Bucket;

/// Where the records live in the bucket, outside the registry's own `docker/` tree.
pub const PREFIX: &str = "registry-up/replicas/";

/// One replica: where it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    /// Its own name (`--domain` on its host), which the site's certificate covers.
    pub domain: String,
    pub port: u16,
    /// registry-up's version on that host when it last ran `up`.
    pub version: String,
}

impl Replica {
    /// This host's appliance, named `domain`, on `port`.
    pub fn this_host(domain: &str, port: u16) -> Self {
        Replica {
            domain: domain.to_string(),
            port,
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// The name as a URL carries it (IPv6 in brackets).
    pub fn url_host(&self) -> String {
        match crate::hostname::HostName::parse(&self.domain, "replica") {
            Ok(name) => name.url_host(),
            Err(_) => self.domain.clone(),
        }
    }

    /// `host:port` as a client names it.
    pub fn address(&self) -> String {
        format!("{}:{}", self.url_host(), self.port)
    }
}

fn key(domain: &str) -> String {
    format!("{PREFIX}{domain}")
}

/// Records (or updates) `replica`.
pub async fn register(bucket: &Bucket<'_>, replica: &Replica) -> Result<(), String> {
    let body = serde_json::to_vec_pretty(replica).map_err(|e| e.to_string())?;
    bucket.put(&key(&replica.domain), &body).await
}

/// Removes the record of the replica named `domain`; whether there was one.
pub async fn forget(bucket: &Bucket<'_>, domain: &str) -> Result<bool, String> {
    let there = bucket.size(&key(domain)).await?.is_some();
    if there {
        bucket.delete(&[key(domain)]).await?;
    }
    Ok(there)
}

/// Every recorded replica, by name. A record that cannot be read is reported as a replica that cannot
/// be reached, not skipped: gc must not go on without it. One the listing names but that is gone when read
/// is skipped: a listing can lag a delete made through another node (Garage: seen once in CI), a read by key does not.
pub async fn list(bucket: &Bucket<'_>) -> Result<Vec<Replica>, String> {
    let mut replicas = Vec::new();
    for object in bucket.list(PREFIX).await? {
        let domain = object.key.trim_start_matches(PREFIX).to_string();
        let Some(text) = bucket.get(&object.key).await? else {
            continue;
        };
        replicas.push(serde_json::from_str(&text).unwrap_or(Replica {
            domain,
            port: 0,
            version: "unreadable record".into(),
        }));
    }
    replicas.sort_by(|a, b| a.domain.cmp(&b.domain));
    Ok(replicas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_named_as_clients_name_them() {
        let r = |d: &str| Replica {
            domain: d.into(),
            port: 8443,
            version: "0.1.0".into(),
        };
        assert_eq!(r("b.site.example").address(), "b.site.example:8443");
        assert_eq!(r("fd00::5").address(), "[fd00::5]:8443");
        assert_eq!(key("b.site.example"), "registry-up/replicas/b.site.example");
    }
}
