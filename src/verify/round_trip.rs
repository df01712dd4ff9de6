//! The push/pull round trip, shared by `up` and `verify`: a fresh image pushed with oci-client through
//! the proxy, pulled back, compared by digest and byte for byte, then deleted. Streams both ways.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use indicatif::HumanBytes;

use futures_util::StreamExt;
use oci_client::manifest::{
    OciDescriptor, OciImageManifest, OciManifest, IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};

use super::image::{config_json, Layer};
use super::leftovers;
use super::target::{chain, Target};
use crate::error::{Error, Result};

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

/// Turns an oci-client error into a sentence, naming the usual cause of the usual failures.
fn failed(step: &str, reference: &str, e: &(dyn std::error::Error + 'static)) -> Error {
    let full = chain(e);
    // oci-client quotes the whole error page; the status line is what matters.
    let text = match full.find(", message: <") {
        Some(cut) => full[..cut].to_string(),
        None => full.split_whitespace().collect::<Vec<_>>().join(" "),
    };
    let hint = if text.contains("502") || text.contains("Bad Gateway") {
        " (nginx answered 502 Bad Gateway: the registry container behind it is not running)"
    } else if text.contains("413") {
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

/// Push, pull, compare and delete a fresh image of `size` payload bytes. `data_dir`: the registry's data
/// folder, on the appliance host, where the blobs' data is removed too and failed uploads are cleaned.
pub async fn round_trip(target: &Target, size: u64, timeout: Duration, data_dir: Option<&Path>) -> Result<RoundTrip> {
    let started = SystemTime::now();
    if let Some(dir) = data_dir {
        // What a killed run left: it could not clean up after itself.
        leftovers::remove_uploads(dir, |at| at + leftovers::ABANDONED < started);
    }
    let result = match tokio::time::timeout(timeout, inner(target, size, timeout, data_dir)).await {
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

async fn inner(target: &Target, size: u64, timeout: Duration, data_dir: Option<&Path>) -> Result<RoundTrip> {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let tag = format!("check-{unix}-{}", crate::digest::random_hex(4));
    let reference = target.reference(VERIFY_REPOSITORY, &tag)?;
    let name = reference.whole();
    let client = target.oci_client(timeout)?;
    let auth = target.registry_auth();
    let layer = Layer::new(size);

    // Push: the layer streamed (digest computed on the way), then config and manifest.
    let start = Instant::now();
    client.store_auth_if_needed(reference.resolve_registry(), &auth).await;
    let stream = futures_util::stream::iter(layer.chunks().map(Ok));
    let pushed = client
        .push_blob_stream_chunked(&reference, stream)
        .await
        .map_err(|e| failed("layer upload", &name, &e))?;
    let config = config_json(&pushed.blob_digest, &tag);
    let config_digest = crate::digest::oci_digest(&config);
    client
        .push_blob(&reference, config.clone(), &config_digest)
        .await
        .map_err(|e| failed("config upload", &name, &e))?;
    let layer_desc = OciDescriptor {
        media_type: IMAGE_LAYER_MEDIA_TYPE.to_string(),
        digest: pushed.blob_digest.clone(),
        size: pushed.size as i64,
        ..Default::default()
    };
    let manifest = OciImageManifest {
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_string()),
        config: OciDescriptor {
            media_type: IMAGE_CONFIG_MEDIA_TYPE.to_string(),
            digest: config_digest.clone(),
            size: config.len() as i64,
            ..Default::default()
        },
        layers: vec![layer_desc.clone()],
        ..Default::default()
    };
    client
        .push_manifest(&reference, &OciManifest::Image(manifest))
        .await
        .map_err(|e| failed("manifest upload", &name, &e))?;
    let push = start.elapsed();

    // Pull: manifest by tag, config whole, layer streamed and compared with the regenerated bytes.
    let start = Instant::now();
    let (pulled, digest) = client
        .pull_manifest(&reference, &auth)
        .await
        .map_err(|e| failed("manifest download", &name, &e))?;
    let mismatch = |what: String| {
        Error::verify(format!(
            "The image pulled back from {name} differs from the one pushed: {what}. The registry's storage or the proxy corrupts data: run registry-up verify --deep and look at registry-up logs."
        ))
    };
    let OciManifest::Image(pulled) = pulled else {
        return Err(mismatch(
            "an image index came back instead of the image manifest".into(),
        ));
    };
    if pulled.layers.len() != 1
        || pulled.layers[0].digest != pushed.blob_digest
        || pulled.config.digest != config_digest
    {
        return Err(mismatch("the manifest lists other blobs".into()));
    }
    let mut pulled_config = Vec::new();
    client
        .pull_blob(&reference, &pulled.config, &mut pulled_config)
        .await
        .map_err(|e| failed("config download", &name, &e))?;
    if pulled_config != config {
        return Err(mismatch("the config".into()));
    }
    let mut stream = client
        .pull_blob_stream(&reference, &layer_desc)
        .await
        .map_err(|e| failed("layer download", &name, &e))?;
    let mut hasher = crate::digest::Sha256::new();
    let mut expected = layer.chunks();
    let mut pending = bytes::Bytes::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| failed("layer download", &name, &e))?;
        hasher.update(&chunk);
        let received = hasher.size;
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            if pending.is_empty() {
                pending = expected.next().ok_or_else(|| mismatch("the layer is longer".into()))?;
            }
            let n = rest.len().min(pending.len());
            if rest[..n] != pending[..n] {
                return Err(mismatch(format!("the layer bytes differ near offset {received}")));
            }
            rest = &rest[n..];
            pending = pending.slice(n..);
        }
    }
    if !pending.is_empty() || expected.next().is_some() {
        return Err(mismatch(format!("the layer is shorter ({} bytes)", hasher.size)));
    }
    let pulled_digest = format!("sha256:{}", hasher.hex());
    if pulled_digest != pushed.blob_digest {
        return Err(mismatch(format!(
            "layer digest {pulled_digest} instead of {}",
            pushed.blob_digest
        )));
    }
    let pull = start.elapsed();

    let blobs = [digest.as_str(), pushed.blob_digest.as_str(), config_digest.as_str()];
    let stored = size + config.len() as u64;
    let cleanup = cleanup(target, timeout, &digest, &blobs[1..]).await.map(|took| {
        let (said, data_left) = match data_dir.map(|dir| (dir, leftovers::remove_blobs(dir, &blobs))) {
            Some((dir, Ok(freed))) => (
                format!(
                    "deleted the test manifest and blobs of {name}, and removed their data ({}) from {}",
                    HumanBytes(freed),
                    dir.display()
                ),
                false,
            ),
            Some((dir, Err(e))) => (
                format!(
                    "deleted the test manifest and blobs of {name}, but their data ({}) could not be removed from \
                     {} ({e}): the registry's garbage collection frees it",
                    HumanBytes(stored),
                    dir.display()
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
        Cleanup { took, said, data_left }
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

/// Deletes the test manifest and its blobs, so verification leaves nothing behind.
async fn cleanup(target: &Target, timeout: Duration, manifest: &str, blobs: &[&str]) -> Result<Duration> {
    let start = Instant::now();
    let http = target.http_client(timeout)?;
    let mut urls = vec![(format!("/v2/{VERIFY_REPOSITORY}/manifests/{manifest}"), "test manifest")];
    urls.extend(
        blobs
            .iter()
            .map(|b| (format!("/v2/{VERIFY_REPOSITORY}/blobs/{b}"), "test blob")),
    );
    for (path, what) in urls {
        let url = target.url(&path);
        let resp = http.delete(&url).send().await.map_err(|e| {
            Error::verify(format!(
                "Deleting the {what} failed: {}. Check that the registry still runs (registry-up status).",
                chain(&e)
            ))
        })?;
        match resp.status().as_u16() {
            200 | 202 => {}
            405 => {
                return Err(Error::verify(format!(
                    "Deleting the {what} was refused (405): the registry runs with deletes disabled; \
                     set storage.delete.enabled: true in its config."
                )))
            }
            code => {
                return Err(Error::verify(format!(
                    "Deleting the {what} answered HTTP {code} at {url}: see registry-up logs registry for why."
                )))
            }
        }
    }
    Ok(start.elapsed())
}
