//! `verify --deep`: the "nothing lost" walk. Every repository of the catalog, every tag, every manifest
//! (and every child of an index) fetched and its digest checked, every referenced blob HEADed. The same
//! walk without the blob HEADs takes the inventory (what is served, tag by tag).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;

use super::inventory::{self, Found, Inventory};
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
        // A page of at most PAGE names: 16 MiB is far more than one holds, and an endless body is cut.
        let body = crate::bounded::body(resp, 16 << 20)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let page: Listing = serde_json::from_slice(&body).map_err(|e| format!("{url}: not a listing ({e})"))?;
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
    /// Manifests fetched (the deep check's count), and the distinct ones (the inventory's).
    fetched: usize,
    manifests: BTreeSet<String>,
    blobs: BTreeSet<(String, String)>,
    /// Every blob named, with the size its descriptor gives.
    sizes: BTreeMap<String, u64>,
    problems: Vec<Problem>,
    /// The tag as served, when its manifest was.
    served: Option<inventory::Tag>,
}

struct TagWalk<'a> {
    http: &'a Http,
    target: &'a Target,
    repo: &'a str,
    tag: &'a str,
    /// HEAD every blob (verify --deep), or only read the manifests (an inventory).
    heads: bool,
    result: TagResult,
    /// Children already walked in this tag, and whether each was served: an index that names one child
    /// thousands of times costs one walk of it, not thousands (nor thousands squared, nested).
    walked: std::collections::HashMap<String, bool>,
}

/// A manifest as served: its digest, media type, and an index's children that were served.
struct Served {
    digest: String,
    media_type: Option<String>,
    children: Vec<String>,
}

impl<'a> TagWalk<'a> {
    fn new(http: &'a Http, target: &'a Target, repo: &'a str, tag: &'a str, heads: bool) -> Self {
        TagWalk {
            http,
            target,
            repo,
            tag,
            heads,
            result: TagResult::default(),
            walked: Default::default(),
        }
    }

    fn problem(&mut self, digest: &str, problem: String) {
        self.result.problems.push(Problem {
            repository: self.repo.to_string(),
            tag: self.tag.to_string(),
            digest: digest.to_string(),
            problem,
        });
    }

    /// Fetches a manifest by tag or digest; checks its digest; walks what it references. Some when it
    /// was served with the right digest.
    async fn manifest(&mut self, reference: &str, depth: u8) -> Option<Served> {
        let url = self.target.url(&format!("/v2/{}/manifests/{reference}", self.repo));
        let resp = match self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, MANIFEST_TYPES.join(", "))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.problem(reference, format!("manifest request failed: {}", chain(&e)));
                return None;
            }
        };
        let status = resp.status().as_u16();
        if status == 404 {
            self.problem(reference, "manifest missing".into());
            return None;
        }
        if status != 200 {
            self.problem(reference, format!("manifest answered HTTP {status}"));
            return None;
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let body = match crate::bounded::body(resp, crate::bounded::MANIFEST).await {
            Ok(b) => b,
            Err(e) => {
                self.problem(reference, format!("manifest download failed: {e}"));
                return None;
            }
        };
        self.result.fetched += 1;
        let actual = crate::digest::oci_digest(&body);
        let expected = if reference.starts_with("sha256:") {
            Some(reference.to_string())
        } else {
            header_digest
        };
        if let Some(expected) = &expected {
            if *expected != actual {
                self.problem(expected, format!("manifest corrupt: its content hashes to {actual}"));
                return None;
            }
        }
        let manifest = match AnyManifest::parse(&body) {
            Ok(m) => m,
            Err(e) => {
                self.problem(&actual, format!("manifest is not readable ({e})"));
                return None;
            }
        };
        self.result.manifests.insert(actual.clone());
        let mut served = Served {
            digest: actual.clone(),
            media_type: manifest.media_type.clone().or(content_type),
            children: Vec::new(),
        };
        if let Some(children) = &manifest.manifests {
            if depth > 2 {
                self.problem(&actual, "image index nested too deep".into());
                return None;
            }
            for child in children {
                let ok = match self.walked.get(&child.digest) {
                    Some(ok) => *ok,
                    None => {
                        let ok = Box::pin(self.manifest(&child.digest, depth + 1)).await.is_some();
                        self.walked.insert(child.digest.clone(), ok);
                        ok
                    }
                };
                if ok {
                    served.children.push(child.digest.clone());
                }
            }
            return Some(served);
        }
        for d in manifest.config.iter().chain(&manifest.layers) {
            self.result
                .sizes
                .insert(d.digest.clone(), u64::try_from(d.size).unwrap_or(0));
        }
        for l in &manifest.fs_layers {
            self.result.sizes.entry(l.blob_sum.clone()).or_insert(0);
        }
        if self.heads {
            let blobs: Vec<String> = manifest.blobs().map(String::from).collect();
            for blob in blobs {
                self.blob(&blob).await;
            }
        }
        Some(served)
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

/// How a registry answered for one tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Served, with a digest that matches its bytes (an index with the children that were served).
    Served(inventory::Tag),
    /// Not served: unknown (404), or served wrongly (bytes that do not match, unreadable).
    Missing,
    /// No answer to go by (a request failed, an error status): the registry could not be asked.
    Unanswered(String),
}

/// The tags `tags` as `target` serves them now, at most `jobs` at a time, without listing the registry.
pub async fn served_tags(
    target: &Target,
    timeout: Duration,
    jobs: usize,
    tags: Vec<(String, String)>,
) -> Result<BTreeMap<(String, String), Answer>, String> {
    let http = Arc::new(target.http_client(timeout).map_err(|e| e.message)?);
    let target = Arc::new(target.clone());
    let semaphore = Arc::new(Semaphore::new(jobs.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (repo, tag) in tags {
        let (semaphore, http, target) = (semaphore.clone(), http.clone(), target.clone());
        set.spawn(async move {
            let _permit = semaphore.acquire_owned().await.expect("semaphore open");
            let mut walk = TagWalk::new(&http, &target, &repo, &tag, false);
            let served = walk.manifest(&tag, 0).await;
            // Any request of the walk (an index's children too) that got no answer leaves it unknown.
            let unanswered = walk.result.problems.iter().find(|p| {
                [
                    "manifest request failed",
                    "manifest answered HTTP",
                    "manifest download failed",
                ]
                .iter()
                .any(|start| p.problem.starts_with(start))
            });
            let answer = match (served, unanswered) {
                (_, Some(p)) => Answer::Unanswered(p.problem.clone()),
                (Some(s), None) => Answer::Served(inventory::Tag {
                    tag: tag.clone(),
                    digest: s.digest,
                    media_type: s.media_type,
                    children: s.children,
                }),
                (None, None) => Answer::Missing,
            };
            ((repo.clone(), tag.clone()), answer)
        });
    }
    let mut found = BTreeMap::new();
    while let Some(done) = set.join_next().await {
        let (key, answer) = done.map_err(|e| format!("a check task failed: {e}"))?;
        found.insert(key, answer);
    }
    Ok(found)
}

/// What one walk found: the deep check's counts and problems, and the inventory.
pub struct Walked {
    pub deep: Deep,
    pub inventory: Inventory,
    /// With blob HEADs: each blob, with the tags (repository, tag) whose images hold it.
    pub users: BTreeMap<String, BTreeSet<(String, String)>>,
}

/// Walks the whole registry with at most `jobs` requests in flight. `heads`: HEAD every blob too (the
/// deep check); without, only the manifests are read (an inventory). `show_progress`: draw a bar (a
/// terminal, and not --json).
pub async fn walk(
    target: &Target,
    timeout: Duration,
    jobs: usize,
    heads: bool,
    about: inventory::About,
    show_progress: bool,
) -> Result<Walked, String> {
    let http = Arc::new(target.http_client(timeout).map_err(|e| e.message)?);
    let target = Arc::new(target.clone());
    let semaphore = Arc::new(Semaphore::new(jobs.max(1)));
    let repos = paginate(&http, &target, format!("/v2/_catalog?n={PAGE}"), "repositories").await?;
    // Each repository's tags, several listings at once (a registry of thousands of repositories).
    let mut listings = tokio::task::JoinSet::new();
    for (i, repo) in repos.iter().enumerate() {
        let (semaphore, http, target, repo) = (semaphore.clone(), http.clone(), target.clone(), repo.clone());
        listings.spawn(async move {
            let _permit = semaphore.acquire_owned().await.expect("semaphore open");
            let tags = paginate(&http, &target, format!("/v2/{repo}/tags/list?n={PAGE}"), "tags").await;
            (i, repo, tags)
        });
    }
    let mut work = Vec::new();
    while let Some(done) = listings.join_next().await {
        let (i, repo, tags) = done.map_err(|e| format!("a listing task failed: {e}"))?;
        for tag in tags? {
            work.push((i, repo.clone(), tag));
        }
    }
    work.sort();
    let bar = if show_progress {
        ProgressBar::new(work.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} tags checked {msg}").expect("valid template"));
    let mut set = tokio::task::JoinSet::new();
    let tags = work.len();
    for (_, repo, tag) in work {
        let (semaphore, http, target, bar) = (semaphore.clone(), http.clone(), target.clone(), bar.clone());
        set.spawn(async move {
            let _permit = semaphore.acquire_owned().await.expect("semaphore open");
            let mut walk = TagWalk::new(&http, &target, &repo, &tag, heads);
            if let Some(served) = walk.manifest(&tag, 0).await {
                walk.result.served = Some(inventory::Tag {
                    tag: tag.clone(),
                    digest: served.digest,
                    media_type: served.media_type,
                    children: served.children,
                });
            }
            bar.inc(1);
            (repo.clone(), tag.clone(), walk.result)
        });
    }
    let mut deep = Deep {
        repositories: repos.len(),
        tags,
        ..Default::default()
    };
    let (mut blobs, mut manifests, mut sizes, mut found) =
        (BTreeSet::new(), BTreeSet::new(), BTreeMap::new(), Vec::new());
    let mut users: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    let mut unreadable = 0;
    while let Some(done) = set.join_next().await {
        let (repository, tag, result) = done.map_err(|e| format!("a check task failed: {e}"))?;
        deep.manifests += result.fetched;
        manifests.extend(result.manifests);
        for (repo, digest) in &result.blobs {
            users
                .entry(digest.clone())
                .or_default()
                .insert((repo.clone(), tag.clone()));
        }
        blobs.extend(result.blobs);
        sizes.extend(result.sizes);
        deep.problems.extend(result.problems);
        match result.served {
            Some(tag) => found.push(Found { repository, tag }),
            None => unreadable += 1,
        }
    }
    bar.finish_and_clear();
    deep.blobs = blobs.len();
    deep.problems.sort();
    let inventory = Inventory::new(about, &repos, found, manifests.len(), &sizes, unreadable);
    Ok(Walked { deep, inventory, users })
}
