//! Offline bundles. `registry-up bundle` (on a connected host) pulls the registry and nginx images with
//! oci-client and writes one tar: `manifest.json`, `SHA256SUMS`, and one OCI archive per image, which
//! is what `podman load` reads (names kept through the `org.opencontainers.image.ref.name` annotation).
//! `up --bundle` (on the air-gapped host) checks every checksum before it loads anything.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cli::BundleArgs;
use crate::error::{Error, Result};
use crate::runtime::podman::Podman;
use crate::settings::{DEFAULT_NGINX_IMAGE, DEFAULT_REGISTRY_IMAGE};

pub const MANIFEST: &str = "manifest.json";
pub const SUMS: &str = "SHA256SUMS";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleManifest {
    pub format: u32,
    pub created_by: String,
    pub arch: String,
    pub images: Vec<BundleImage>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleImage {
    /// `registry` or `nginx`.
    pub role: String,
    pub reference: String,
    /// The image manifest's digest, as pulled.
    pub digest: String,
    pub file: String,
    pub sha256: String,
    pub size: u64,
}

const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The OCI architecture name of this host.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

fn failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::runtime(format!(
        "Could not {what}: {e}. Check the registry address, --ca and --user, then run again."
    ))
}

/// `registry-up bundle --out FILE`
pub fn command(args: &BundleArgs, rt: &tokio::runtime::Runtime) -> Result<()> {
    let arch = args.arch.clone().unwrap_or_else(|| host_arch().to_string());
    let images = [
        (
            "registry",
            args.registry_image.as_deref().unwrap_or(DEFAULT_REGISTRY_IMAGE),
        ),
        ("nginx", args.nginx_image.as_deref().unwrap_or(DEFAULT_NGINX_IMAGE)),
    ];
    let mut references = Vec::new();
    for (role, text) in images {
        let reference = Reference::from_str(text)
            .map_err(|e| Error::usage(format!("The {role} image reference '{text}' cannot be parsed ({e}).")))?;
        references.push((role, reference));
    }
    let out = crate::settings::usable_path(&args.out, "--out")?;
    let parent = out.parent().unwrap_or(Path::new("/")).to_path_buf();
    crate::settings::check_writable(&[(&parent, "--out")])?;
    let ca = match &args.ca {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| Error::usage(format!("Cannot read the CA file {} ({e}).", path.display())))?,
        ),
        None => None,
    };
    let auth = match &args.user {
        Some(user) => RegistryAuth::Basic(user.clone(), crate::secrets::password_from_stdin("--user")?),
        None => RegistryAuth::Anonymous,
    };
    let client = Client::try_from(ClientConfig {
        protocol: ClientProtocol::Https,
        tls_certs_only: ca
            .into_iter()
            .map(|data| Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            })
            .collect(),
        connect_timeout: Some(Duration::from_secs(15)),
        read_timeout: Some(Duration::from_secs(300)),
        platform_resolver: None,
        ..Default::default()
    })
    .map_err(|e| Error::usage(format!("The CA certificate cannot be used ({e}).")))?;

    let work = tempfile::Builder::new()
        .prefix(".registry-up-bundle-")
        .tempdir_in(&parent)
        .map_err(|e| Error::runtime(format!("Cannot create a work folder in {} ({e}).", parent.display())))?;
    let bars = MultiProgress::new();
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut manifest = BundleManifest {
        format: 1,
        created_by: format!("registry-up {}", env!("CARGO_PKG_VERSION")),
        arch: arch.clone(),
        images: Vec::new(),
    };
    for (role, reference) in &references {
        let file = format!("{role}.oci.tar");
        let path = work.path().join(&file);
        let digest = rt.block_on(write_oci_archive(&client, &auth, reference, &arch, &path, &bars))?;
        let (sha256, size) = hash_file(&path)?;
        println!(
            "ok   {} ({}, {:.1} MiB)",
            reference.whole(),
            &digest[..19],
            size as f64 / 1048576.0
        );
        manifest.images.push(BundleImage {
            role: role.to_string(),
            reference: reference.whole(),
            digest,
            file,
            sha256,
            size,
        });
    }

    // The bundle itself: written beside its final name, renamed into place when complete.
    let tmp = work.path().join("bundle.tar");
    {
        let mut builder = tar::Builder::new(File::create(&tmp).map_err(|e| failed("write the bundle", e))?);
        let json = serde_json::to_vec_pretty(&manifest).expect("serialises");
        append_bytes(&mut builder, MANIFEST, &json)?;
        let sums: String = manifest
            .images
            .iter()
            .map(|i| format!("{}  {}\n", i.sha256, i.file))
            .collect();
        append_bytes(&mut builder, SUMS, sums.as_bytes())?;
        for image in &manifest.images {
            builder
                .append_path_with_name(work.path().join(&image.file), &image.file)
                .map_err(|e| failed("write the bundle", e))?;
        }
        builder
            .into_inner()
            .and_then(|f| f.sync_all())
            .map_err(|e| failed("write the bundle", e))?;
    }
    std::fs::rename(&tmp, &out).map_err(|e| failed(&format!("move the bundle to {}", out.display()), e))?;
    println!(
        "Wrote {} ({arch}): copy it to the air-gapped host and run registry-up up --bundle {} --domain NAME.",
        out.display(),
        out.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    Ok(())
}

fn append_bytes(builder: &mut tar::Builder<File>, name: &str, data: &[u8]) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, name, data)
        .map_err(|e| failed("write the bundle", e))
}

fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut file = File::open(path).map_err(|e| failed("read back the archive", e))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| failed("read back the archive", e))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        size += n as u64;
    }
    Ok((crate::sys::hex(ctx.finish().as_ref()), size))
}

/// Pulls one image (the `arch` child of an index) into an OCI archive at `path`; returns its digest.
async fn write_oci_archive(
    client: &Client,
    auth: &RegistryAuth,
    reference: &Reference,
    arch: &str,
    path: &Path,
    bars: &MultiProgress,
) -> Result<String> {
    let name = reference.whole();
    let (mut raw, mut digest) = client
        .pull_manifest_raw(reference, auth, MANIFEST_TYPES)
        .await
        .map_err(|e| failed(&format!("fetch the manifest of {name}"), crate::verify::chain(&e)))?;
    let mut json: Value =
        serde_json::from_slice(&raw).map_err(|e| failed(&format!("read the manifest of {name}"), e))?;
    if let Some(children) = json["manifests"].as_array() {
        let child = children
            .iter()
            .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == arch)
            .and_then(|m| m["digest"].as_str())
            .ok_or_else(|| Error::usage(format!("{name} has no image for linux/{arch}: choose another --arch.")))?
            .to_string();
        let by_digest = reference.clone_with_digest(child);
        (raw, digest) = client
            .pull_manifest_raw(&by_digest, auth, MANIFEST_TYPES)
            .await
            .map_err(|e| {
                failed(
                    &format!("fetch the {arch} manifest of {name}"),
                    crate::verify::chain(&e),
                )
            })?;
        json = serde_json::from_slice(&raw).map_err(|e| failed(&format!("read the manifest of {name}"), e))?;
    }
    if format!("sha256:{}", crate::sys::sha256_hex(&raw)) != digest {
        return Err(failed(
            &format!("fetch {name}"),
            "the manifest does not match its digest",
        ));
    }
    let media_type = json["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_string();
    let mut blobs: Vec<(String, u64)> = Vec::new();
    for d in std::iter::once(&json["config"]).chain(json["layers"].as_array().into_iter().flatten()) {
        let blob = d["digest"]
            .as_str()
            .ok_or_else(|| failed(&format!("read {name}"), "a blob has no digest"))?;
        blobs.push((blob.to_string(), d["size"].as_u64().unwrap_or(0)));
    }

    let file = File::create(path).map_err(|e| failed("write the image archive", e))?;
    let mut builder = tar::Builder::new(file);
    let blob_dir = path.with_extension("blobs");
    std::fs::create_dir_all(&blob_dir).map_err(|e| failed("write the image archive", e))?;
    for (blob, size) in &blobs {
        let hex_name = blob
            .strip_prefix("sha256:")
            .ok_or_else(|| failed(&format!("read {name}"), format!("unsupported digest {blob}")))?;
        let blob_path = blob_dir.join(hex_name);
        let bar = bars.add(ProgressBar::new(*size));
        bar.set_style(
            ProgressStyle::with_template("{msg:24} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
                .expect("valid template"),
        );
        bar.set_message(format!("{} {}", reference.repository(), &hex_name[..12]));
        download_blob(client, reference, blob, &blob_path, &bar).await?;
        bar.finish_and_clear();
        builder
            .append_path_with_name(&blob_path, format!("blobs/sha256/{hex_name}"))
            .map_err(|e| failed("write the image archive", e))?;
        let _ = std::fs::remove_file(&blob_path);
    }
    let _ = std::fs::remove_dir(&blob_dir);
    let manifest_hex = digest.trim_start_matches("sha256:");
    append_bytes(&mut builder, &format!("blobs/sha256/{manifest_hex}"), &raw)?;
    append_bytes(&mut builder, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": media_type,
            "digest": digest,
            "size": raw.len(),
            "annotations": { "org.opencontainers.image.ref.name": name },
        }],
    });
    append_bytes(&mut builder, "index.json", index.to_string().as_bytes())?;
    builder
        .into_inner()
        .and_then(|f| f.sync_all())
        .map_err(|e| failed("write the image archive", e))?;
    Ok(digest)
}

async fn download_blob(
    client: &Client,
    reference: &Reference,
    digest: &str,
    path: &Path,
    bar: &ProgressBar,
) -> Result<()> {
    let what = format!("download {digest} of {}", reference.whole());
    let mut stream = client
        .pull_blob_stream(reference, digest)
        .await
        .map_err(|e| failed(&what, crate::verify::chain(&e)))?;
    let mut file = File::create(path).map_err(|e| failed(&what, e))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| failed(&what, e))?;
        ctx.update(&chunk);
        file.write_all(&chunk).map_err(|e| failed(&what, e))?;
        bar.inc(chunk.len() as u64);
    }
    if format!("sha256:{}", crate::sys::hex(ctx.finish().as_ref())) != digest {
        return Err(failed(&what, "the data does not match its digest"));
    }
    Ok(())
}

/// A bundle checked against its checksums, its archives unpacked into a temp folder.
pub struct CheckedBundle {
    pub manifest: BundleManifest,
    dir: tempfile::TempDir,
}

impl CheckedBundle {
    /// Loads every image with Podman; returns Podman's summary lines.
    pub fn load(&self, podman: &Podman) -> Result<Vec<String>> {
        self.manifest
            .images
            .iter()
            .map(|image| podman.load(&self.dir.path().join(&image.file)))
            .collect()
    }

    pub fn reference(&self, role: &str) -> Option<&str> {
        self.manifest
            .images
            .iter()
            .find(|i| i.role == role)
            .map(|i| i.reference.as_str())
    }
}

fn damaged(bundle: &Path, what: String) -> Error {
    Error::usage(format!(
        "The bundle {} is damaged: {what}. Copy it again (compare its size and sha256sum with the original); nothing was loaded.",
        bundle.display()
    ))
}

/// Reads `bundle`, checking every member against SHA256SUMS and manifest.json before anything is loaded.
pub fn check(bundle: &Path) -> Result<CheckedBundle> {
    let file = File::open(bundle).map_err(|e| {
        Error::usage(format!(
            "Cannot read the bundle {} ({e}): give --bundle the file `registry-up bundle` wrote.",
            bundle.display()
        ))
    })?;
    let dir = tempfile::Builder::new()
        .prefix("registry-up-bundle-")
        .tempdir()
        .map_err(|e| Error::runtime(format!("Cannot create a temp folder ({e}).")))?;
    let mut archive = tar::Archive::new(file);
    let mut manifest: Option<BundleManifest> = None;
    let mut sums: Option<String> = None;
    let mut seen: Vec<(String, String, u64)> = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| damaged(bundle, format!("it is not a tar archive ({e})")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| damaged(bundle, format!("it is truncated or not a tar archive ({e})")))?;
        let name = entry
            .path()
            .map_err(|e| damaged(bundle, e.to_string()))?
            .to_string_lossy()
            .into_owned();
        match name.as_str() {
            MANIFEST => {
                let mut text = String::new();
                entry
                    .read_to_string(&mut text)
                    .map_err(|e| damaged(bundle, format!("{MANIFEST} is unreadable ({e})")))?;
                manifest = Some(
                    serde_json::from_str(&text)
                        .map_err(|e| damaged(bundle, format!("{MANIFEST} is not valid ({e})")))?,
                );
            }
            SUMS => {
                let mut text = String::new();
                entry
                    .read_to_string(&mut text)
                    .map_err(|e| damaged(bundle, format!("{SUMS} is unreadable ({e})")))?;
                sums = Some(text);
            }
            member if !member.contains('/') && member.ends_with(".oci.tar") => {
                let out_path = dir.path().join(member);
                let mut out =
                    File::create(&out_path).map_err(|e| Error::runtime(format!("Cannot unpack the bundle ({e}).")))?;
                let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
                let mut buf = vec![0u8; 1 << 20];
                let mut size = 0u64;
                loop {
                    let n = entry
                        .read(&mut buf)
                        .map_err(|e| damaged(bundle, format!("{member} is truncated ({e})")))?;
                    if n == 0 {
                        break;
                    }
                    ctx.update(&buf[..n]);
                    out.write_all(&buf[..n])
                        .map_err(|e| Error::runtime(format!("Cannot unpack the bundle ({e}).")))?;
                    size += n as u64;
                }
                seen.push((member.to_string(), crate::sys::hex(ctx.finish().as_ref()), size));
            }
            other => return Err(damaged(bundle, format!("it holds an unexpected file {other}"))),
        }
    }
    let manifest = manifest.ok_or_else(|| damaged(bundle, format!("{MANIFEST} is missing")))?;
    let sums = sums.ok_or_else(|| damaged(bundle, format!("{SUMS} is missing")))?;
    if manifest.format != 1 || manifest.images.is_empty() {
        return Err(damaged(bundle, format!("{MANIFEST} is of an unknown format")));
    }
    for image in &manifest.images {
        let listed = sums
            .lines()
            .any(|l| l.split_once("  ") == Some((image.sha256.as_str(), image.file.as_str())));
        if !listed {
            return Err(damaged(
                bundle,
                format!("{SUMS} and {MANIFEST} disagree about {}", image.file),
            ));
        }
        match seen.iter().find(|(name, _, _)| *name == image.file) {
            None => return Err(damaged(bundle, format!("{} is missing", image.file))),
            Some((_, _, size)) if *size != image.size => {
                return Err(damaged(
                    bundle,
                    format!("{} has {size} bytes instead of {}", image.file, image.size),
                ))
            }
            Some((_, sha, _)) if *sha != image.sha256 => {
                return Err(damaged(
                    bundle,
                    format!(
                        "{} does not match its checksum (sha256 {sha}, expected {})",
                        image.file, image.sha256
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(CheckedBundle { manifest, dir })
}
