//! The push/pull round trip, shared by `up` and `verify`: a fresh image pushed through the proxy with
//! the distribution API's own requests, pulled back, compared by digest and byte for byte, then deleted.
//! Streams both ways. (Not oci-client: its client construction loads the system's CA store, ~0.1 s, and
//! panics on a host without one, which air-gapped hosts often are; see DESIGN.md.)

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use indicatif::HumanBytes;
use oci_client::manifest::{
    OciDescriptor, OciImageManifest, IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};

use super::image::{config_json, Layer};
use super::leftovers::{self, Storage};
use super::target::{chain, Http, Target};
use crate::digest::Sha256;
use crate::error::{Error, Result};
use crate::registry_api::{self, Started};

/// Where verification images go; the tag is unique per run.
pub const VERIFY_REPOSITORY: &str = "registry-up/verify";
pub const DEFAULT_SIZE: u64 = 1024 * 1024;

/// What a successful round trip measured.
pub struct RoundTrip {
    pub reference: String,
    pub digest: String,
    pub size: u64,
    pub push: Duration,
    pub pull: Duration,
    /// The manifest and blob deletes; an Err here is reported as its own failure.
    pub cleanup: std::result::Result<Cleanup, Error>,
}

/// What the clean-up did once the deletes went through.
pub struct Cleanup {
    pub took: Duration,
    /// What it removed, and what it could not, in words.
    pub said: String,
    /// The blobs' data stays on disk (another registry, or a removal that failed): it waits for a GC.
    pub data_left: bool,
    /// The registry did not store the round trip's blobs where the appliance's storage is: it keeps its
    /// data somewhere else (why, in words). None when they were found there, or nothing was looked at.
    pub elsewhere: Option<String>,
}

impl RoundTrip {
    pub fn summary(&self) -> String {
        let mib = self.size as f64 / (1024.0 * 1024.0);
        format!(
            "pushed and pulled {} ({mib:.1} MiB): push {:.2} s ({:.0} MiB/s), pull {:.2} s ({:.0} MiB/s), digest {} matches",
            self.reference,
            self.push.as_secs_f64(),
            mib / self.push.as_secs_f64().max(1e-6),
            self.pull.as_secs_f64(),
            mib / self.pull.as_secs_f64().max(1e-6),
            &self.digest[..self.digest.len().min(19)],
        )
    }
}

/// A failed request as a sentence, naming the usual cause of the usual failures.
fn failed(step: &str, reference: &str, text: &str) -> Error {
    // The status as registry_api writes it: a bare "502" could be part of a digest or an upload URL.
    let hint = if text.contains("HTTP 502") {
        " (nginx answered 502 Bad Gateway: the registry container behind it is not running)"
    } else if text.contains("HTTP 413") {
        " (413: the proxy limits the upload size)"
    } else if text.contains("no space") || text.contains("FILESYSTEM") {
        " (the registry's storage is full)"
    } else {
        ""
    };
    Error::verify(format!(
        "The {step} of {reference} failed{hint}: {text}. See what the registry said with registry-up logs, fix the \
         cause and run again."
    ))
}

/// What was pulled back differs from what was pushed.
fn mismatch(reference: &str, what: &str) -> Error {
    Error::verify(format!(
        "The image pushed to and pulled back from {reference} is not what was sent: {what}. The registry's storage or the \
         proxy corrupts data: run registry-up verify --deep and look at registry-up logs."
    ))
}

/// Push, pull, compare and delete a fresh image of `size` payload bytes. `storage`: where the registry
/// keeps its data, on the appliance host: the blobs' data is removed there too, and in a data folder
/// failed uploads are cleaned.
pub async fn round_trip(target: &Target, size: u64, timeout: Duration, storage: Option<&Storage>) -> Result<RoundTrip> {
    let data_dir = storage.and_then(Storage::folder);
    let started = SystemTime::now();
    if let Some(dir) = data_dir {
        // What a killed run left: it could not clean up after itself.
        leftovers::remove_uploads(dir, |at| at + leftovers::ABANDONED < started);
    }
    let result = match tokio::time::timeout(timeout, inner(target, size, timeout, storage)).await {
        Ok(result) => result,
        Err(_) => Err(Error::verify(format!(
            "The push/pull round trip did not finish within {} s: the registry at {} hangs or is very slow. Check it \
             with registry-up status and registry-up logs, or allow more time with --timeout.",
            timeout.as_secs(),
            target.registry()
        ))),
    };
    if let (Err(_), Some(dir)) = (&result, data_dir) {
        // A failed push must not leave its partial upload behind (a full disk stays full otherwise).
        let from = started - Duration::from_secs(1);
        leftovers::remove_uploads(dir, |at| at >= from);
    }
    result
}

/// The requests a client makes, and none more: a small layer (the default 1 MiB) goes whole, its session
/// and one PUT with its bytes beside the config's; a larger one streams in one PATCH (hashed on the way,
/// so memory stays flat at any --size) before both blobs are committed at once; the manifest; then the
/// manifest and both blobs pulled at once. One client, so connections are kept alive.
async fn inner(target: &Target, size: u64, timeout: Duration, storage: Option<&Storage>) -> Result<RoundTrip> {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let tag = format!("check-{unix}-{}", crate::digest::random_hex(4));
    let name = format!("{}/{VERIFY_REPOSITORY}:{tag}", target.registry());
    let repo = VERIFY_REPOSITORY;
    // A stall is bounded here; the whole run (a 1 GiB layer, say) by round_trip's timeout.
    let http = target.upload_client(timeout)?;
    let layer = Layer::new(size);

    let start = Instant::now();
    let (layer_size, layer_digest, config) = if layer.tar_len() <= WHOLE_LAYER {
        push_small(&http, target, &name, &layer, &tag).await?
    } else {
        push_streamed(&http, target, &name, &layer, &tag).await?
    };
    let config_digest = crate::digest::oci_digest(&config);
    let manifest = OciImageManifest {
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_string()),
        config: OciDescriptor {
            media_type: IMAGE_CONFIG_MEDIA_TYPE.to_string(),
            digest: config_digest.clone(),
            size: config.len() as i64,
            ..Default::default()
        },
        layers: vec![OciDescriptor {
            media_type: IMAGE_LAYER_MEDIA_TYPE.to_string(),
            digest: layer_digest.clone(),
            size: layer_size as i64,
            ..Default::default()
        }],
        ..Default::default()
    };
    let raw = serde_json::to_vec(&manifest).expect("a manifest serialises");
    let digest = crate::digest::oci_digest(&raw);
    let stored = registry_api::put_manifest(&http, target, repo, &tag, OCI_IMAGE_MEDIA_TYPE, raw.clone())
        .await
        .map_err(|e| failed("manifest upload", &name, &e))?;
    if let Some(stored) = stored.filter(|s| *s != digest) {
        return Err(mismatch(
            &name,
            &format!("the registry stored the manifest as {stored}, not {digest}"),
        ));
    }
    let push = start.elapsed();

    // Pull: the manifest by tag and both blobs at once, each compared byte for byte with what was pushed.
    let start = Instant::now();
    let (served, pulled_config, ()) = tokio::try_join!(
        async {
            registry_api::get_manifest(&http, target, repo, &tag)
                .await
                .map_err(|e| failed("manifest download", &name, &e))
        },
        async {
            let resp = registry_api::get_blob(&http, target, repo, &config_digest)
                .await
                .map_err(|e| failed("config download", &name, &e))?;
            resp.bytes()
                .await
                .map_err(|e| failed("config download", &name, &chain(&e)))
        },
        pull_layer(&http, target, &name, &layer, &layer_digest),
    )?;
    if served != raw {
        return Err(mismatch(&name, "the manifest served for its tag is not the one pushed"));
    }
    if pulled_config != config {
        return Err(mismatch(&name, "the config"));
    }
    let pull = start.elapsed();

    let blobs = [digest.as_str(), layer_digest.as_str(), config_digest.as_str()];
    let stored = size + config.len() as u64;
    let cleanup = match cleanup(&http, target, &blobs).await {
        Ok(took) => {
            let t = Instant::now();
            // Where the registry wrote is proven by finding the blobs there, not read from its config.
            let elsewhere = storage.and_then(|s| s.lacks(&blobs).err());
            let removed = match storage.filter(|_| elsewhere.is_none()) {
                Some(storage) => Some((storage.remove_blobs(&blobs).await, storage.leftover_fix())),
                None => None,
            };
            Ok((took + t.elapsed(), removed, elsewhere))
        }
        Err(e) => Err(e),
    };
    let cleanup = cleanup.map(|(took, removed, elsewhere)| {
        let (said, data_left) = match removed {
            Some((Ok((at, freed)), _)) => (
                format!(
                    "deleted the test manifest and blobs of {name}, and removed their data ({}) from {at}",
                    HumanBytes(freed),
                ),
                false,
            ),
            Some((Err((at, e)), fix)) => (
                format!(
                    "deleted the test manifest and blobs of {name}, but their data ({}) could not be removed from \
                     {at} ({e}): {fix}",
                    HumanBytes(stored),
                ),
                true,
            ),
            None if elsewhere.is_some() => (
                format!(
                    "deleted the test manifest of {name} and its links to the blobs; their data ({}) is not where \
                     the appliance keeps its storage, so it was not removed",
                    HumanBytes(stored)
                ),
                true,
            ),
            None => (
                format!(
                    "deleted the test manifest of {name} and its links to the blobs; the registry keeps their data \
                     ({}) until its garbage collection runs",
                    HumanBytes(stored)
                ),
                true,
            ),
        };
        Cleanup {
            took,
            said,
            data_left,
            elsewhere,
        }
    });
    Ok(RoundTrip {
        reference: name,
        digest,
        size,
        push,
        pull,
        cleanup,
    })
}

/// The largest layer (tar bytes) pushed whole: made in memory and hashed first, so each blob is one POST and
/// one PUT carrying its bytes, both blobs at once, and no PATCH round. Larger layers stream (flat memory).
const WHOLE_LAYER: u64 = 4 * 1024 * 1024 + 4096;

/// Pushes a small layer and its config, each as a session and one PUT with the bytes, both at once: the
/// layer's size and digest, and the config.
async fn push_small(
    http: &Http,
    target: &Target,
    name: &str,
    layer: &Layer,
    tag: &str,
) -> Result<(u64, String, Vec<u8>)> {
    let mut bytes = Vec::with_capacity(layer.tar_len() as usize);
    for chunk in layer.chunks() {
        bytes.extend_from_slice(&chunk);
    }
    let layer_digest = crate::digest::oci_digest(&bytes);
    let config = config_json(&layer_digest, tag);
    let config_digest = crate::digest::oci_digest(&config);
    let size = bytes.len() as u64;
    let blob = |what: &'static str, digest: String, body: Vec<u8>| async move {
        let at = session(http, target, name, what).await?;
        let len = body.len() as u64;
        registry_api::finish_upload(http, &at, &digest, body.into(), len)
            .await
            .map_err(|e| failed(what, name, &e))
    };
    tokio::try_join!(
        blob("layer upload", layer_digest.clone(), bytes),
        blob("config upload", config_digest, config.clone()),
    )?;
    Ok((size, layer_digest, config))
}

/// Pushes a layer of any size streamed in one PATCH, hashed on the way, then its config: the layer's size
/// and digest, and the config.
async fn push_streamed(
    http: &Http,
    target: &Target,
    name: &str,
    layer: &Layer,
    tag: &str,
) -> Result<(u64, String, Vec<u8>)> {
    let (layer_at, config_at) = tokio::try_join!(
        session(http, target, name, "layer upload"),
        session(http, target, name, "config upload"),
    )?;
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let hashing = hasher.clone();
    let chunks = futures_util::stream::iter(layer.chunks()).map(move |chunk| {
        hashing.lock().expect("the hasher is not poisoned").update(&chunk);
        Ok::<_, std::io::Error>(chunk)
    });
    let layer_at = registry_api::send_chunk(
        http,
        target,
        &layer_at,
        reqwest::Body::wrap_stream(chunks),
        layer.tar_len(),
    )
    .await
    .map_err(|e| failed("layer upload", name, &e))?;
    let hashed = std::mem::replace(&mut *hasher.lock().expect("the hasher is not poisoned"), Sha256::new());
    let layer_size = hashed.size;
    let layer_digest = format!("sha256:{}", hashed.hex());
    // The config names the layer's digest, so it is committed once the layer's bytes are sent.
    let config = config_json(&layer_digest, tag);
    let config_digest = crate::digest::oci_digest(&config);
    tokio::try_join!(
        async {
            registry_api::finish_upload(http, &layer_at, &layer_digest, Vec::new().into(), 0)
                .await
                .map_err(|e| failed("layer upload", name, &e))
        },
        async {
            let len = config.len() as u64;
            registry_api::finish_upload(http, &config_at, &config_digest, config.clone().into(), len)
                .await
                .map_err(|e| failed("config upload", name, &e))
        },
    )?;
    Ok((layer_size, layer_digest, config))
}

/// An upload session in the verification repository.
async fn session(http: &Http, target: &Target, name: &str, step: &str) -> Result<String> {
    match registry_api::start_upload(http, target, VERIFY_REPOSITORY, None).await {
        Ok(Started::At(at)) => Ok(at),
        Ok(Started::Mounted) => unreachable!("no mount was asked for"),
        Err(e) => Err(failed(step, name, &e)),
    }
}

/// The layer pulled back, streamed and compared with the regenerated bytes as it comes.
async fn pull_layer(http: &Http, target: &Target, name: &str, layer: &Layer, digest: &str) -> Result<()> {
    let resp = registry_api::get_blob(http, target, VERIFY_REPOSITORY, digest)
        .await
        .map_err(|e| failed("layer download", name, &e))?;
    let mut stream = resp.bytes_stream();
    let mut hasher = Sha256::new();
    let mut expected = layer.chunks();
    let mut pending = bytes::Bytes::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| failed("layer download", name, &chain(&e)))?;
        let offset = hasher.size;
        hasher.update(&chunk);
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            if pending.is_empty() {
                pending = expected.next().ok_or_else(|| mismatch(name, "the layer is longer"))?;
            }
            let n = rest.len().min(pending.len());
            if rest[..n] != pending[..n] {
                return Err(mismatch(name, &format!("the layer bytes differ near offset {offset}")));
            }
            rest = &rest[n..];
            pending = pending.slice(n..);
        }
    }
    if !pending.is_empty() || expected.next().is_some() {
        return Err(mismatch(name, &format!("the layer is shorter ({} bytes)", hasher.size)));
    }
    let pulled = format!("sha256:{}", hasher.hex());
    if pulled != digest {
        return Err(mismatch(name, &format!("layer digest {pulled} instead of {digest}")));
    }
    Ok(())
}

/// Deletes the test manifest and its blobs at once, so verification leaves nothing behind.
async fn cleanup(http: &Http, target: &Target, digests: &[&str; 3]) -> Result<Duration> {
    let start = Instant::now();
    let [manifest, layer, config] = digests;
    let deletes = [
        (format!("/v2/{VERIFY_REPOSITORY}/manifests/{manifest}"), "test manifest"),
        (format!("/v2/{VERIFY_REPOSITORY}/blobs/{layer}"), "test layer"),
        (format!("/v2/{VERIFY_REPOSITORY}/blobs/{config}"), "test config"),
    ]
    .map(|(path, what)| delete(http, target.url(&path), what));
    let done = futures_util::future::join_all(deletes).await;
    done.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(start.elapsed())
}

async fn delete(http: &Http, url: String, what: &str) -> Result<()> {
    let resp = http.delete(&url).send().await.map_err(|e| {
        Error::verify(format!(
            "Deleting the {what} failed: {}. Check that the registry still runs (registry-up status).",
            chain(&e)
        ))
    })?;
    match resp.status().as_u16() {
        200 | 202 => Ok(()),
        405 => Err(Error::verify(format!(
            "Deleting the {what} was refused (405): the registry runs with deletes disabled; set \
             storage.delete.enabled: true in its config."
        ))),
        code => Err(Error::verify(format!(
            "Deleting the {what} answered HTTP {code} at {url}: see registry-up logs registry for why."
        ))),
    }
}
