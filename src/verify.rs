//! Verify: proves the appliance works from a client's side. Waits for `/v2/` through the proxy, then
//! pushes a fresh in-memory image with oci-client, pulls it back, compares digests and bytes, and deletes
//! it. Every connection trusts only the appliance's CA, as a client configured for it would.

use std::str::FromStr;
use std::time::{Duration, Instant};

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::error::{Error, Result};

/// Where verification images go; the tag is unique per run.
pub const VERIFY_REPOSITORY: &str = "registry-up/verify";
pub const DEFAULT_SIZE: usize = 1024 * 1024;

/// The appliance as a client sees it.
pub struct Target {
    /// `host:port` as in image references.
    pub registry: String,
    pub ca_pem: Vec<u8>,
}

impl Target {
    fn http_client(&self, timeout: Duration) -> Result<reqwest::Client> {
        let ca = reqwest::Certificate::from_pem(&self.ca_pem)
            .map_err(|e| Error::usage(format!("The CA certificate cannot be read ({e}): check the CA file.")))?;
        reqwest::Client::builder()
            .tls_certs_only([ca])
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .build()
            .map_err(|e| Error::runtime(format!("Could not set up the HTTPS client ({e}).")))
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.registry)
    }
}

/// Formats an error with its causes, which is where reqwest and rustls put the useful part.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let s = cause.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = cause.source();
    }
    text
}

/// Polls `https://REGISTRY/v2/` until it answers 200 (or 401, with auth on), or `timeout` passes.
pub async fn wait_ready(target: &Target, timeout: Duration) -> Result<String> {
    let client = target.http_client(Duration::from_secs(5))?;
    let start = Instant::now();
    let mut last = String::from("no answer yet");
    while start.elapsed() < timeout {
        match client.get(target.url("/v2/")).send().await {
            Ok(resp) if resp.status().as_u16() == 200 || resp.status().as_u16() == 401 => {
                return Ok(format!(
                    "HTTP {} from https://{}/v2/",
                    resp.status().as_u16(),
                    target.registry
                ));
            }
            Ok(resp) => last = format!("HTTP {}", resp.status()),
            Err(e) => last = chain(&e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(Error::runtime(format!(
        "The registry did not answer at https://{}/v2/ within {} s (last: {last}).",
        target.registry,
        timeout.as_secs()
    )))
}

/// Timings of a successful round trip.
pub struct RoundTrip {
    pub reference: String,
    pub digest: String,
    pub size: usize,
    pub push: Duration,
    pub pull: Duration,
    pub cleanup: Duration,
}

impl std::fmt::Display for RoundTrip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pushed and pulled {} ({:.1} MiB) through the proxy: push {:.2} s, pull {:.2} s, digest {} matches, deleted in {:.2} s",
            self.reference,
            self.size as f64 / (1024.0 * 1024.0),
            self.push.as_secs_f64(),
            self.pull.as_secs_f64(),
            short(&self.digest),
            self.cleanup.as_secs_f64()
        )
    }
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(19)]
}

/// Push, pull, compare and delete a fresh image of `size` random bytes, all within `timeout`.
pub async fn round_trip(target: &Target, size: usize, timeout: Duration) -> Result<RoundTrip> {
    match tokio::time::timeout(timeout, round_trip_inner(target, size, timeout)).await {
        Ok(result) => result,
        Err(_) => Err(Error::verify(format!(
            "The push/pull check did not finish within {} s: the registry at {} hangs or is very slow.",
            timeout.as_secs(),
            target.registry
        ))),
    }
}

async fn round_trip_inner(target: &Target, size: usize, timeout: Duration) -> Result<RoundTrip> {
    let tag = format!("check-{}-{}", unix_now(), crate::sys::random_hex(4));
    let reference_text = format!("{}/{VERIFY_REPOSITORY}:{tag}", target.registry);
    let reference = Reference::from_str(&reference_text)
        .map_err(|e| Error::usage(format!("'{reference_text}' is not a valid image reference ({e}).")))?;
    let image = TestImage::new(size, &tag);
    let client = Client::try_from(ClientConfig {
        protocol: ClientProtocol::Https,
        tls_certs_only: vec![Certificate {
            encoding: CertificateEncoding::Pem,
            data: target.ca_pem.clone(),
        }],
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(timeout),
        ..Default::default()
    })
    .map_err(|e| Error::usage(format!("The CA certificate cannot be used ({e}): check the CA file.")))?;
    let auth = RegistryAuth::Anonymous;
    let failed = |step: &str, e: &(dyn std::error::Error + 'static)| {
        Error::verify(format!("The {step} of {reference_text} failed: {}.", chain(e)))
    };

    let start = Instant::now();
    client
        .push(
            &reference,
            std::slice::from_ref(&image.layer),
            image.config.clone(),
            &auth,
            None,
        )
        .await
        .map_err(|e| failed("push", &e))?;
    let digest = client
        .fetch_manifest_digest(&reference, &auth)
        .await
        .map_err(|e| failed("manifest lookup", &e))?;
    let push = start.elapsed();

    let start = Instant::now();
    let pulled = client
        .pull(&reference, &auth, vec![IMAGE_LAYER_MEDIA_TYPE])
        .await
        .map_err(|e| failed("pull", &e))?;
    let pull = start.elapsed();

    let mismatch = |what: &str| {
        Error::verify(format!(
            "The image pulled back from {reference_text} differs from the one pushed: {what}."
        ))
    };
    if pulled.digest.as_deref() != Some(digest.as_str()) {
        return Err(mismatch(&format!(
            "manifest digest {:?} instead of {digest}",
            pulled.digest
        )));
    }
    if pulled.layers.len() != 1 || pulled.layers[0].data != image.layer.data {
        return Err(mismatch("the layer bytes"));
    }
    if pulled.config.data != image.config.data {
        return Err(mismatch("the config"));
    }

    let start = Instant::now();
    let http = target.http_client(timeout)?;
    delete(
        &http,
        &target.url(&format!("/v2/{VERIFY_REPOSITORY}/manifests/{digest}")),
        "test manifest",
    )
    .await?;
    for blob in [image.layer.sha256_digest(), image.config.sha256_digest()] {
        delete(
            &http,
            &target.url(&format!("/v2/{VERIFY_REPOSITORY}/blobs/{blob}")),
            "test blob",
        )
        .await?;
    }
    Ok(RoundTrip {
        reference: reference_text,
        digest,
        size,
        push,
        pull,
        cleanup: start.elapsed(),
    })
}

async fn delete(http: &reqwest::Client, url: &str, what: &str) -> Result<()> {
    let resp = http
        .delete(url)
        .send()
        .await
        .map_err(|e| Error::verify(format!("Deleting the {what} failed: {}.", chain(&e))))?;
    match resp.status().as_u16() {
        202 | 200 => Ok(()),
        405 => Err(Error::verify(format!(
            "Deleting the {what} was refused (405): the registry runs with deletes disabled; set storage.delete.enabled."
        ))),
        code => Err(Error::verify(format!("Deleting the {what} answered HTTP {code} at {url}."))),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A valid one-layer OCI image, made in memory: the layer is a tar holding one file of random bytes.
struct TestImage {
    layer: ImageLayer,
    config: Config,
}

impl TestImage {
    fn new(size: usize, tag: &str) -> Self {
        let mut payload = vec![0u8; size];
        crate::sys::random_bytes(&mut payload);
        let layer = ImageLayer::new(
            tar_one_file("registry-up-check.bin", &payload),
            IMAGE_LAYER_MEDIA_TYPE.to_string(),
            None,
        );
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Labels": { "org.registry-up.check": tag } },
            "rootfs": { "type": "layers", "diff_ids": [layer.sha256_digest()] },
        });
        let config = Config::new(
            serde_json::to_vec(&config).expect("json"),
            IMAGE_CONFIG_MEDIA_TYPE.to_string(),
            None,
        );
        TestImage { layer, config }
    }
}

/// A POSIX ustar archive with one regular file.
fn tar_one_file(name: &str, data: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    let put = |h: &mut [u8; 512], at: usize, field: &[u8]| h[at..at + field.len()].copy_from_slice(field);
    put(&mut header, 0, name.as_bytes());
    put(&mut header, 100, b"0000644\0");
    put(&mut header, 108, b"0000000\0");
    put(&mut header, 116, b"0000000\0");
    put(&mut header, 124, format!("{:011o}\0", data.len()).as_bytes());
    put(&mut header, 136, format!("{:011o}\0", unix_now()).as_bytes());
    put(&mut header, 148, b"        ");
    header[156] = b'0';
    put(&mut header, 257, b"ustar\0");
    put(&mut header, 263, b"00");
    let sum: u32 = header.iter().map(|&b| b as u32).sum();
    put(&mut header, 148, format!("{sum:06o}\0 ").as_bytes());
    let padding = (512 - data.len() % 512) % 512;
    let mut out = Vec::with_capacity(512 + data.len() + padding + 1024);
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    out.resize(out.len() + padding + 1024, 0);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn tar_layer_is_read_by_tar() {
        let tmp = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let archive = tmp.path().join("layer.tar");
        std::fs::write(&archive, super::tar_one_file("f.bin", &data)).unwrap();
        let status = std::process::Command::new("tar")
            .args(["-xf", archive.to_str().unwrap(), "-C", tmp.path().to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(std::fs::read(tmp.path().join("f.bin")).unwrap(), data);
    }
}
