//! `verify --deep`: the "nothing lost" walk. Every repository of the catalog, every tag, every manifest
//! (and every child of an index) fetched and its digest checked, every referenced blob HEADed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;

use super::report::{Deep, Problem};
use super::target::{chain, Http, Target};
use crate::oci::{AnyManifest, MANIFEST_TYPES};

const PAGE: usize = 100;

/// One page of `/v2/_catalog` (repositories) or `/v2/NAME/tags/list` (tags; null when none is left).
#[derive(serde::Deserialize)]
struct Listing {
    repositories: Option<Vec<String>>,
    tags: Option<Vec<String>>,
}

/// The next page of a paginated listing, from the Link header.
fn next_link(resp: &reqwest::Response) -> Option<String> {
    let link = resp.headers().get(reqwest::header::LINK)?.to_str().ok()?;
    let (url, rel) = link.split_once(';')?;
    rel.contains("next")
        .then(|| url.trim().trim_start_matches('<').trim_end_matches('>').to_string())
}

/// Follows `Link: rel="next"` through every page, collecting the strings under `key`.
async fn paginate(http: &Http, target: &Target, first: String, key: &str) -> Result<Vec<String>, String> {
    let mut items = Vec::new();
    let mut next = Some(first);
    while let Some(path) = next.take() {
        let url = if path.starts_with("http") {
            path
        } else {
            target.url(&path)
        };
        let resp = http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("{url}: {}", chain(&e)))?;
        let status = resp.status();
        if status.as_u16() == 404 && key == "tags" {
            // A repository whose every tag was deleted: nothing to check.
            return Ok(items);
        }
        if !status.is_success() {
            return Err(format!("{url} answered HTTP {status}"));
        }
        next = next_link(&resp);
        let page: Listing = resp.json().await.map_err(|e| format!("{url}: not a listing ({e})"))?;
        items.extend(
            match key {
                "tags" => page.tags,
                _ => page.repositories,
            }
            .unwrap_or_default(),
        );
    }
    Ok(items)
}

/// What checking one tag found.
#[derive(Default)]
struct TagResult {
    manifests: usize,
    blobs: BTreeSet<(String, String)>,
    problems: Vec<Problem>,
}

struct TagWalk<'a> {
    http: &'a Http,
    target: &'a Target,
    repo: &'a str,
    tag: &'a str,
    result: TagResult,
}

impl TagWalk<'_> {
    fn problem(&mut self, digest: &str, problem: String) {
        self.result.problems.push(Problem {
            repository: self.repo.to_string(),
            tag: self.tag.to_string(),
            digest: digest.to_string(),
            problem,
        });
    }

    /// Fetches a manifest by tag or digest; checks its digest; walks what it references.
    async fn manifest(&mut self, reference: &str, depth: u8) {
        let url = self.target.url(&format!("/v2/{}/manifests/{reference}", self.repo));
        let resp = match self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, MANIFEST_TYPES.join(", "))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return self.problem(reference, format!("manifest request failed: {}", chain(&e))),
        };
        let status = resp.status().as_u16();
        if status == 404 {
            return self.problem(reference, "manifest missing".into());
        }
        if status != 200 {
            return self.problem(reference, format!("manifest answered HTTP {status}"));
        }
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return self.problem(reference, format!("manifest download failed: {}", chain(&e))),
        };
        self.result.manifests += 1;
        let actual = crate::digest::oci_digest(&body);
        let expected = if reference.starts_with("sha256:") {
            Some(reference.to_string())
        } else {
            header_digest
        };
        if let Some(expected) = &expected {
            if *expected != actual {
                return self.problem(expected, format!("manifest corrupt: its content hashes to {actual}"));
            }
        }
        let manifest = match AnyManifest::parse(&body) {
            Ok(m) => m,
            Err(e) => return self.problem(&actual, format!("manifest is not readable ({e})")),
        };
        if let Some(children) = &manifest.manifests {
            if depth > 2 {
                return self.problem(&actual, "image index nested too deep".into());
            }
            for child in children {
                Box::pin(self.manifest(&child.digest, depth + 1)).await;
            }
            return;
        }
        let blobs: Vec<String> = manifest.blobs().map(String::from).collect();
        for blob in blobs {
            self.blob(&blob).await;
        }
    }

    async fn blob(&mut self, digest: &str) {
        self.result.blobs.insert((self.repo.to_string(), digest.to_string()));
        let url = self.target.url(&format!("/v2/{}/blobs/{digest}", self.repo));
        match self.http.head(&url).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) if r.status().as_u16() == 404 => self.problem(digest, "blob missing".into()),
            Ok(r) => self.problem(digest, format!("blob answered HTTP {}", r.status().as_u16())),
            Err(e) => self.problem(digest, format!("blob request failed: {}", chain(&e))),
        }
    }
}

/// Every repository of the registry's catalog.
pub async fn repositories(target: &Target, timeout: Duration) -> Result<Vec<String>, String> {
    let http = target.http_client(timeout).map_err(|e| e.message)?;
    paginate(&http, target, format!("/v2/_catalog?n={PAGE}"), "repositories").await
}

/// Walks the whole registry with at most `jobs` tags in flight. `show_progress`: draw a bar (a terminal,
/// and not --json).
pub async fn walk(target: &Target, timeout: Duration, jobs: usize, show_progress: bool) -> Result<Deep, String> {
    let http = target.http_client(timeout).map_err(|e| e.message)?;
    let repos = paginate(&http, target, format!("/v2/_catalog?n={PAGE}"), "repositories").await?;
    let mut work = Vec::new();
    for repo in &repos {
        for tag in paginate(&http, target, format!("/v2/{repo}/tags/list?n={PAGE}"), "tags").await? {
            work.push((repo.clone(), tag));
        }
    }
    let bar = if show_progress {
        ProgressBar::new(work.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} tags checked {msg}").expect("valid template"));
    let semaphore = Arc::new(Semaphore::new(jobs.max(1)));
    let http = Arc::new(http);
    let target = Arc::new(target.clone());
    let mut set = tokio::task::JoinSet::new();
    let tags = work.len();
    for (repo, tag) in work {
        let (semaphore, http, target, bar) = (semaphore.clone(), http.clone(), target.clone(), bar.clone());
        set.spawn(async move {
            let _permit = semaphore.acquire_owned().await.expect("semaphore open");
            let mut walk = TagWalk {
                http: &http,
                target: &target,
                repo: &repo,
                tag: &tag,
                result: TagResult::default(),
            };
            walk.manifest(&tag, 0).await;
            bar.inc(1);
            walk.result
        });
    }
    let mut deep = Deep {
        repositories: repos.len(),
        tags,
        ..Default::default()
    };
    let mut blobs = BTreeSet::new();
    while let Some(done) = set.join_next().await {
        let result = done.map_err(|e| format!("a check task failed: {e}"))?;
        deep.manifests += result.manifests;
        blobs.extend(result.blobs);
        deep.problems.extend(result.problems);
    }
    bar.finish_and_clear();
    deep.blobs = blobs.len();
    deep.problems.sort();
    Ok(deep)
}
