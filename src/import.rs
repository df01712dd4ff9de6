//! Pushes a source's images into a registry under mirror-friendly names: every blob the registry's
//! repository lacks (uploaded once, then mounted into the other repositories that need it; `jobs` at
//! once), then the manifests byte for byte, children first, then a check of every manifest the registry
//! now serves against the source's digest. What a killed run sent is found by HEAD and not sent again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use oci_client::Reference;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::error::{Error, Result};
use crate::registry_api::{self, Started};
use crate::source::{Image, Source};
use crate::store::Range;
use crate::verify::{Http, Target};

pub struct Options {
    /// A path put before every name (`--prefix`).
    pub prefix: Option<String>,
    /// Blobs sent at once.
    pub jobs: usize,
    /// How long a request may stall.
    pub timeout: Duration,
    pub progress: bool,
}

/// Where an image goes: the repository and the tag (or digest) clients ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub repository: String,
    pub reference: String,
}

impl Destination {
    /// `docker.io/library/nginx:1.27` → `docker.io/library/nginx` and `1.27`, under `prefix`. A registry
    /// with a port (`host:5000`) becomes `host_5000`: a repository name cannot hold a colon.
    pub fn of(name: &Reference, prefix: Option<&str>) -> std::result::Result<Self, String> {
        let registry = name.registry().to_ascii_lowercase().replace(':', "_");
        let mut repository = format!("{registry}/{}", name.repository());
        if let Some(prefix) = prefix.map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
            repository = format!("{prefix}/{repository}");
        }
        if !valid_repository(&repository) {
            return Err(format!(
                "{} cannot be named {repository} in the registry (lowercase letters, digits and . _ - / only): \
                 choose another --prefix, or rename the image at its source",
                name.whole()
            ));
        }
        // An untagged manifest is what gc removes: every image keeps a tag.
        let reference = match name.tag() {
            Some(tag) => tag.to_string(),
            None => {
                return Err(format!(
                    "{} has no tag, and gc removes untagged images: name it NAME:TAG (or NAME:TAG@sha256:… to pin it)",
                    name.whole()
                ))
            }
        };
        Ok(Destination { repository, reference })
    }
}

/// The distribution grammar: path components of `[a-z0-9]+` joined by `.`, `_`, `__` or `-`s.
fn valid_repository(name: &str) -> bool {
    name.len() <= 255
        && name.split('/').all(|component| {
            let bytes = component.as_bytes();
            !bytes.is_empty()
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b"._-".contains(b))
                && !component.contains("..")
                && !component.contains("___")
                && !component.contains("._")
                && !component.contains("_.")
        })
}

#[derive(Debug, Default)]
pub struct Summary {
    /// Each image that arrived intact: its name, where it is, its digest.
    pub arrived: Vec<(String, String, String)>,
    /// Each image that did not, and why.
    pub failed: Vec<(String, String)>,
    pub sent_blobs: usize,
    pub sent_bytes: u64,
    pub present_blobs: usize,
    pub present_bytes: u64,
    pub mounted: usize,
    pub took: Duration,
}

/// One blob the registry lacks in one repository, and how it gets there.
#[derive(Debug, Clone)]
enum Move {
    /// Sent from the source.
    Upload {
        repository: String,
        digest: String,
        size: u64,
    },
    /// Linked from a repository that has it.
    Mount {
        repository: String,
        digest: String,
        from: String,
        size: u64,
    },
}

/// The source's bytes of one blob, streamed. Not hashed here: the registry checks every blob against
/// its digest as it commits it (and refuses it, DIGEST_INVALID), and hashing here too cost a quarter of
/// an import's time (measured, bench row 10). A bundle was checked whole before anything was sent.
fn body(range: Range, bar: ProgressBar) -> reqwest::Body {
    struct State {
        file: Option<tokio::io::Take<tokio::fs::File>>,
        range: Range,
        sent: u64,
        bar: ProgressBar,
        done: bool,
    }
    let state = State {
        file: None,
        range,
        sent: 0,
        bar,
        done: false,
    };
    let chunks = stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        if s.file.is_none() {
            let opened = async {
                let mut file = tokio::fs::File::open(&s.range.path).await?;
                file.seek(std::io::SeekFrom::Start(s.range.offset)).await?;
                Ok::<_, std::io::Error>(file.take(s.range.size))
            };
            match opened.await {
                Ok(file) => s.file = Some(file),
                Err(e) => {
                    s.done = true;
                    return Some((Err(e), s));
                }
            }
        }
        let mut buf = vec![0u8; 1 << 20];
        let read = s.file.as_mut().expect("opened").read(&mut buf).await;
        match read {
            Ok(0) if s.sent == s.range.size => None,
            Ok(0) => {
                s.done = true;
                let e = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{} is cut short", s.range.path.display()),
                );
                Some((Err(e), s))
            }
            Ok(n) => {
                buf.truncate(n);
                s.sent += n as u64;
                s.bar.inc(n as u64);
                Some((Ok(bytes::Bytes::from(buf)), s))
            }
            Err(e) => {
                s.done = true;
                Some((Err(e), s))
            }
        }
    });
    reqwest::Body::wrap_stream(chunks)
}

/// The repository that holds a blob the source left to an older bundle: that of the older bundle's image
/// that has it, under the same prefix, if the registry holds it there.
async fn elsewhere(
    http: &Http,
    target: &Target,
    source: &Source,
    digest: &str,
    prefix: Option<&str>,
) -> Result<Option<String>> {
    let Some(image) = source.elsewhere.get(digest) else {
        return Ok(None);
    };
    let Ok(dest) = Destination::of(image, prefix) else {
        return Ok(None);
    };
    match registry_api::has_blob(http, target, &dest.repository, digest).await {
        Ok(true) => Ok(Some(dest.repository)),
        Ok(false) => Ok(None),
        Err(e) => Err(unanswered(target, &e)),
    }
}

/// The registry did not say whether it has a blob: nothing can be planned.
fn unanswered(target: &Target, e: &str) -> Error {
    Error::runtime(format!(
        "Could not ask {} which blobs it has: {e}. Check that the appliance runs (registry-up status) and its login.",
        target.registry()
    ))
}

/// Sends one blob (an upload session, then one PUT of the whole blob) or mounts it.
async fn apply(
    http: &Http,
    target: &Target,
    source: &Source,
    step: &Move,
    bar: &ProgressBar,
) -> std::result::Result<u64, String> {
    let (repository, digest) = match step {
        Move::Upload { repository, digest, .. } | Move::Mount { repository, digest, .. } => (repository, digest),
    };
    let mount = match step {
        Move::Upload { .. } => None,
        Move::Mount { from, .. } => Some((digest.as_str(), from.as_str())),
    };
    let at = match registry_api::start_upload(http, target, repository, mount).await? {
        Started::Mounted => return Ok(0),
        Started::At(at) => at,
    };
    // A mount the registry declined (202) is an upload: the bytes then come from the source.
    let range = source
        .blob(digest)
        .ok_or_else(|| format!("the registry could not link {digest} and the source does not hold it"))?;
    let size = range.size;
    registry_api::finish_upload(http, &at, digest, body(range, bar.clone()), size)
        .await
        .map_err(|e| {
            if e.contains("DIGEST_INVALID") {
                format!(
                    "the source's copy of {digest} does not match its digest (the registry refused it): the source \
                     is damaged; save or copy it again"
                )
            } else {
                e
            }
        })?;
    Ok(size)
}

/// PUTs one manifest; the digest the registry computed must be the source's.
async fn put_manifest(
    http: &Http,
    target: &Target,
    repository: &str,
    reference: &str,
    manifest: &crate::source::Manifest,
) -> std::result::Result<(), String> {
    let stored = registry_api::put_manifest(
        http,
        target,
        repository,
        reference,
        &manifest.media_type,
        manifest.raw.clone(),
    )
    .await?;
    match stored {
        Some(d) if d != manifest.digest => Err(format!("the registry stored the manifest {} as {d}", manifest.digest)),
        _ => Ok(()),
    }
}

/// What the registry serves for `reference`: its digest, read back as a client would.
async fn served_digest(
    http: &Http,
    target: &Target,
    repository: &str,
    reference: &str,
) -> std::result::Result<String, String> {
    let raw = registry_api::get_manifest(http, target, repository, reference).await?;
    Ok(crate::digest::oci_digest(&raw))
}

/// Pushes the image's manifests (children by digest, then the name) and reads each back.
async fn push_image(
    http: &Http,
    target: &Target,
    image: &Image,
    dest: &Destination,
) -> std::result::Result<(), String> {
    let (top, children) = image.manifests.split_last().expect("an image has a manifest");
    for child in children {
        put_manifest(http, target, &dest.repository, &child.digest, child).await?;
    }
    put_manifest(http, target, &dest.repository, &dest.reference, top).await?;
    for manifest in children {
        let served = served_digest(http, target, &dest.repository, &manifest.digest).await?;
        if served != manifest.digest {
            return Err(format!("the registry serves {served} for {}", manifest.digest));
        }
    }
    let served = served_digest(http, target, &dest.repository, &dest.reference).await?;
    if served != top.digest {
        return Err(format!(
            "the registry serves {served} for it, the source has {}",
            top.digest
        ));
    }
    Ok(())
}

/// What the registry lacks and how each blob gets there: uploaded once, linked into the other
/// repositories that need it. A blob neither the source nor the registry has stops the import here.
struct Plan {
    uploads: Vec<Move>,
    mounts: Vec<Move>,
    present_blobs: usize,
    present_bytes: u64,
}

async fn plan(
    http: &Http,
    target: &Target,
    source: &Source,
    destinations: &[Destination],
    prefix: Option<&str>,
) -> Result<Plan> {
    // What each repository needs, and what it has.
    let mut needed: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (image, dest) in source.images.iter().zip(destinations) {
        for blob in &image.blobs {
            needed.insert((dest.repository.clone(), blob.digest.clone()), blob.size);
        }
    }
    let heads: Vec<_> = stream::iter(needed.keys().cloned())
        .map(|(repository, digest)| async move {
            let has = registry_api::has_blob(http, target, &repository, &digest).await;
            ((repository, digest), has)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut present: BTreeSet<(String, String)> = BTreeSet::new();
    let (mut present_blobs, mut present_bytes) = (0, 0);
    for (key, has) in heads {
        match has {
            Ok(true) => {
                present_blobs += 1;
                present_bytes += needed[&key];
                present.insert(key);
            }
            Ok(false) => {}
            Err(e) => return Err(unanswered(target, &e)),
        }
    }

    // Each missing blob: uploaded once (or mounted from a repository that has it), then mounted into
    // every other repository that needs it.
    let mut uploads = Vec::new();
    let mut mounts = Vec::new();
    let mut unavailable: BTreeSet<String> = BTreeSet::new();
    let mut by_digest: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (repository, digest) in needed.keys() {
        by_digest.entry(digest).or_default().push(repository);
    }
    for (digest, repositories) in &by_digest {
        let size = needed[&(repositories[0].to_string(), digest.to_string())];
        let holder = repositories
            .iter()
            .find(|r| present.contains(&(r.to_string(), digest.to_string())));
        let mut missing = repositories
            .iter()
            .filter(|r| !present.contains(&(r.to_string(), digest.to_string())))
            .peekable();
        let from = match holder {
            Some(holder) => holder.to_string(),
            None => match missing.peek().copied() {
                Some(first) if source.blob(digest).is_some() => {
                    missing.next();
                    uploads.push(Move::Upload {
                        repository: first.to_string(),
                        digest: digest.to_string(),
                        size,
                    });
                    first.to_string()
                }
                // Left to an older bundle: linked from the repository of its image there, if it holds it.
                Some(_) => match elsewhere(http, target, source, digest, prefix).await? {
                    Some(holder) => holder,
                    None => {
                        unavailable.insert(digest.to_string());
                        continue;
                    }
                },
                None => continue,
            },
        };
        for repository in missing {
            mounts.push(Move::Mount {
                repository: repository.to_string(),
                digest: digest.to_string(),
                from: from.clone(),
                size,
            });
        }
    }
    // Before anything is sent: a blob neither the source nor the registry has stops the import.
    if !unavailable.is_empty() {
        let names: Vec<String> = source
            .images
            .iter()
            .filter(|i| i.blobs.iter().any(|b| unavailable.contains(&b.digest)))
            .map(|i| i.name.whole())
            .collect();
        return Err(Error::usage(format!(
            "The registry lacks {} blob(s) that the source leaves to an older bundle (made with bundle --since), \
             needed by {}: import the older bundle first, then this one. Nothing was sent.",
            unavailable.len(),
            names.join(", ")
        )));
    }

    Ok(Plan {
        uploads,
        mounts,
        present_blobs,
        present_bytes,
    })
}

/// Pushes every image of `source` into `target`.
pub async fn import(source: &Source, target: &Target, opts: &Options) -> Result<Summary> {
    let start = Instant::now();
    let http = target.upload_client(opts.timeout)?;
    let mut summary = Summary::default();
    let mut destinations: Vec<Destination> = Vec::new();
    for image in &source.images {
        let dest = Destination::of(&image.name, opts.prefix.as_deref()).map_err(|e| Error::usage(format!("{e}.")))?;
        // Two images for one tag would race, and one would be lost.
        if let Some(other) = destinations.iter().position(|d| *d == dest) {
            return Err(Error::usage(format!(
                "{} and {} would both be {}:{}: keep one of them in the source. Nothing was sent.",
                source.images[other].name.whole(),
                image.name.whole(),
                dest.repository,
                dest.reference
            )));
        }
        destinations.push(dest);
    }

    let Plan {
        uploads,
        mounts,
        present_blobs,
        present_bytes,
    } = plan(&http, target, source, &destinations, opts.prefix.as_deref()).await?;
    summary.present_blobs = present_blobs;
    summary.present_bytes = present_bytes;

    let to_send: u64 = uploads
        .iter()
        .map(|m| match m {
            Move::Upload { size, .. } | Move::Mount { size, .. } => *size,
        })
        .sum();
    let bar = if opts.progress {
        ProgressBar::new(to_send)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .expect("valid template"),
    );
    bar.set_message(format!("images 0/{}", source.images.len()));
    let say = |line: String| {
        if opts.progress {
            bar.println(line);
        } else {
            println!("{line}");
        }
    };
    say(format!(
        "import {} image(s) into {}: {} blob(s) to send ({}), {} already there ({})",
        source.images.len(),
        target.registry(),
        uploads.len(),
        HumanBytes(to_send),
        summary.present_blobs,
        HumanBytes(summary.present_bytes)
    ));

    let mut broken: BTreeMap<String, String> = BTreeMap::new();
    for phase in [uploads, mounts] {
        let mut results = stream::iter(phase)
            .map(|step| {
                let (http, bar) = (&http, &bar);
                async move {
                    let result = apply(http, target, source, &step, bar).await;
                    (step, result)
                }
            })
            .buffer_unordered(opts.jobs.max(1));
        // Said as each one lands, so what a killed run had sent is on record.
        while let Some((step, result)) = results.next().await {
            match (step, result) {
                (Move::Mount { .. }, Ok(0)) => summary.mounted += 1,
                // An upload, or a mount the registry declined and that was uploaded instead.
                (Move::Upload { digest, .. } | Move::Mount { digest, .. }, Ok(size)) => {
                    summary.sent_blobs += 1;
                    summary.sent_bytes += size;
                    say(format!("sent    {digest} ({})", HumanBytes(size)));
                }
                (Move::Upload { digest, .. } | Move::Mount { digest, .. }, Err(e)) => {
                    broken.insert(digest, e);
                }
            }
        }
    }

    // The manifests, `jobs` images at once; reported in the source's order.
    let done = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<_> = stream::iter(source.images.iter().zip(&destinations))
        .map(|(image, dest)| {
            let (http, broken, bar, done) = (&http, &broken, &bar, &done);
            async move {
                let result = match image.blobs.iter().find_map(|b| broken.get(&b.digest)) {
                    Some(why) => Err(why.clone()),
                    None => push_image(http, target, image, dest).await,
                };
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                bar.set_message(format!("images {n}/{}", source.images.len()));
                result
            }
        })
        .buffered(opts.jobs.max(1))
        .collect()
        .await;
    bar.finish_and_clear();
    for ((image, dest), result) in source.images.iter().zip(&destinations).zip(results) {
        let name = image.name.whole();
        let place = format!("{}/{}", target.registry(), dest.repository);
        let place = if dest.reference.starts_with("sha256:") {
            format!("{place}@{}", dest.reference)
        } else {
            format!("{place}:{}", dest.reference)
        };
        match result {
            Ok(()) => {
                let platforms = image.platforms();
                let detail = if platforms.is_empty() {
                    String::new()
                } else {
                    format!(", {} platforms", platforms.len())
                };
                println!("ok      {name} → {place} ({}{detail})", image.digest());
                summary.arrived.push((name, place, image.digest().to_string()));
            }
            Err(why) => {
                println!("FAILED  {name} → {place}: {why}");
                summary.failed.push((name, why));
            }
        }
    }
    summary.took = start.elapsed();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dest(name: &str, prefix: Option<&str>) -> std::result::Result<Destination, String> {
        Destination::of(&Reference::from_str(name).unwrap(), prefix)
    }

    #[test]
    fn names_are_the_upstream_as_a_path() {
        assert_eq!(
            dest("nginx:1.27", None).unwrap(),
            Destination {
                repository: "docker.io/library/nginx".into(),
                reference: "1.27".into()
            }
        );
        assert_eq!(
            dest("quay.io/a/b:2", Some("/site/")).unwrap().repository,
            "site/quay.io/a/b"
        );
        assert_eq!(
            dest("127.0.0.1:5000/app:1", None).unwrap().repository,
            "127.0.0.1_5000/app"
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        assert!(dest(&format!("ghcr.io/x/y@{digest}"), None)
            .unwrap_err()
            .contains("has no tag"));
        assert_eq!(dest(&format!("ghcr.io/x/y:1@{digest}"), None).unwrap().reference, "1");
        assert!(dest("nginx:1", Some("Bad Prefix"))
            .unwrap_err()
            .contains("cannot be named"));
        assert!(valid_repository("a/b-c/d.e_f") && !valid_repository("a//b") && !valid_repository("-a"));
    }
}
