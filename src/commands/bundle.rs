//! `registry-up bundle --out FILE`: on a connected host, pulls the registry and nginx images (one
//! platform) with oci-client into OCI archives, and writes them with a manifest and checksums into one
//! tar that `up --bundle` checks and loads on the air-gapped host. The tar also carries this very
//! binary (and, with `--deb`, its package), so the air-gapped host needs nothing else; with `--images`,
//! the workloads' images too (commands/bundle_images.rs).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::bundle::{BundleImage, BundleManifest, BundleTool, FORMAT, MANIFEST, SUMS, TOOL_BINARY, WORKLOADS};
use crate::cli::BundleArgs;
use crate::digest::Sha256;
use crate::error::{Error, Result};
use crate::oci::{AnyManifest, MANIFEST_TYPES};
use crate::settings::{DEFAULT_NGINX_IMAGE, DEFAULT_REGISTRY_IMAGE};

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

/// A failure talking to the registry the images come from.
pub(crate) fn failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::runtime(format!(
        "Could not {what}: {e}. Check the registry address, --ca and --user, then run again."
    ))
}

/// A failure on this host's disk, where the bundle is written.
pub(crate) fn local(what: &str, e: impl std::fmt::Display) -> Error {
    Error::runtime(format!(
        "Could not {what}: {e}. Check that the folder of --out is writable and has room for the images, then run again."
    ))
}

/// A tool the bundle carries could not be read.
fn unreadable(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::runtime(format!(
        "Could not read {} ({e}): check that it exists and is readable, then run again.",
        path.display()
    ))
}

/// `registry-up bundle --out FILE`
pub fn command(args: &BundleArgs, rt: &tokio::runtime::Runtime) -> Result<()> {
    let arch = args.arch.first().cloned().unwrap_or_else(|| host_arch().to_string());
    let workload_list = match &args.images {
        Some(path) => super::bundle_images::read_list(path)?,
        None => Vec::new(),
    };
    let known = match &args.since {
        Some(old) => super::bundle_images::known_blobs(old)?,
        None => Default::default(),
    };
    let images = [
        (
            "registry",
            args.registry_image.as_deref().unwrap_or(DEFAULT_REGISTRY_IMAGE),
        ),
        ("nginx", args.nginx_image.as_deref().unwrap_or(DEFAULT_NGINX_IMAGE)),
    ];
    let mut references = Vec::new();
    for (role, text) in images {
        let reference = Reference::from_str(text).map_err(|e| {
            Error::usage(format!(
                "The {role} image reference '{text}' cannot be parsed ({e}): use the form registry/name:tag."
            ))
        })?;
        references.push((role, reference));
    }
    let out = crate::settings::usable_path(&args.out, "--out")?;
    let tools = tools(args, &arch)?;
    let parent = out.parent().unwrap_or(Path::new("/")).to_path_buf();
    crate::settings::check_writable(&[(&parent, "--out")])?;
    let ca = match &args.ca {
        Some(path) => Some(
            crate::bounded::read_text(path, crate::bounded::SMALL)
                .map(String::into_bytes)
                .map_err(|e| {
                    Error::usage(format!(
                        "Cannot read the CA file {} ({e}): give --ca a readable PEM file.",
                        path.display()
                    ))
                })?,
        ),
        None => None,
    };
    // oci-client also builds a default HTTPS client, which loads the system's CA store and panics on a
    // host without one, even with --ca: say so rather than crash.
    let mut store = rustls::RootCertStore::empty();
    let (usable, _) = store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if usable == 0 {
        return Err(Error::usage(
            "This host has no system CA certificates, which bundle needs even with --ca (its image client loads \
             them): install the ca-certificates package (or point SSL_CERT_FILE at a CA bundle), or run bundle on \
             the connected host that has them.",
        ));
    }
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
    .map_err(|e| {
        Error::usage(format!(
            "The CA certificate cannot be used ({e}): give --ca the registry's CA certificate in PEM."
        ))
    })?;

    let work = tempfile::Builder::new()
        .prefix(".registry-up-bundle-")
        .tempdir_in(&parent)
        .map_err(|e| {
            Error::runtime(format!(
                "Cannot create a work folder in {} ({e}): choose an --out in a writable folder.",
                parent.display()
            ))
        })?;
    let bars = MultiProgress::new();
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut manifest = BundleManifest {
        // Format 3 only when it carries workloads: a registry-up that knows format 2 reads the rest.
        format: if workload_list.is_empty() { 2 } else { FORMAT },
        created_by: format!("registry-up {}", crate::VERSION),
        arch: arch.clone(),
        images: Vec::new(),
        tools: tools.iter().map(|(tool, _)| tool.clone()).collect(),
        workloads: Vec::new(),
        omitted: Vec::new(),
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

    let layout = work.path().join("images");
    let mut workload_files = Vec::new();
    if !workload_list.is_empty() {
        let pulled = rt.block_on(super::bundle_images::pull(
            &client,
            &auth,
            &workload_list,
            &args.arch,
            &known,
            &layout,
            &bars,
        ))?;
        for rel in &pulled.files {
            let (sha256, _) = hash_file(&layout.join(rel))?;
            workload_files.push((format!("{WORKLOADS}{}", rel.display()), sha256));
        }
        if args.since.is_some() {
            println!(
                "left out {} blob(s) the older bundle holds; carrying {}",
                pulled.omitted.len(),
                workload_files.len().saturating_sub(2)
            );
        }
        manifest.workloads = pulled.workloads;
        manifest.omitted = pulled.omitted;
    }

    // The bundle itself: written beside its final name, renamed into place when complete.
    let tmp = work.path().join("bundle.tar");
    {
        let mut builder = tar::Builder::new(File::create(&tmp).map_err(|e| local("write the bundle", e))?);
        let json = serde_json::to_vec_pretty(&manifest).expect("serialises");
        append_bytes(&mut builder, MANIFEST, &json)?;
        let sums: String = manifest
            .tools
            .iter()
            .map(|t| (&t.sha256, &t.file))
            .chain(manifest.images.iter().map(|i| (&i.sha256, &i.file)))
            .chain(workload_files.iter().map(|(file, sha256)| (sha256, file)))
            .map(|(sha256, file)| format!("{sha256}  {file}\n"))
            .collect();
        append_bytes(&mut builder, SUMS, sums.as_bytes())?;
        // The tool first: extracting it reads the least of the bundle.
        for (tool, source) in &tools {
            append_tool(&mut builder, tool, source)?;
        }
        for image in &manifest.images {
            builder
                .append_path_with_name(work.path().join(&image.file), &image.file)
                .map_err(|e| local("write the bundle", e))?;
        }
        for (file, _) in &workload_files {
            let source = layout.join(file.trim_start_matches(WORKLOADS));
            builder
                .append_path_with_name(source, file)
                .map_err(|e| local("write the bundle", e))?;
        }
        builder
            .into_inner()
            .and_then(|f| f.sync_all())
            .map_err(|e| local("write the bundle", e))?;
    }
    std::fs::rename(&tmp, &out).map_err(|e| local(&format!("move the bundle to {}", out.display()), e))?;
    let file = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    println!(
        "Wrote {} ({arch}). On the air-gapped host, in the folder you copy it to:",
        out.display()
    );
    match manifest
        .tools
        .iter()
        .map(|t| (t.kind.as_str(), t.file.as_str()))
        .collect::<Vec<_>>()[..]
    {
        [.., ("deb", deb)] => println!(
            "  tar -xf {file} SHA256SUMS {deb} && sha256sum -c --ignore-missing SHA256SUMS\n  \
             apt-get install ./{deb}\n  registry-up --domain NAME --bundle {file}"
        ),
        [("binary", _)] => println!(
            "  tar -xf {file} SHA256SUMS {TOOL_BINARY} && sha256sum -c --ignore-missing SHA256SUMS\n  \
             install -m 0755 {TOOL_BINARY} /usr/local/bin/\n  registry-up --domain NAME --bundle {file}"
        ),
        _ => println!("  registry-up --domain NAME --bundle {file}"),
    }
    Ok(())
}

/// The tools the bundle carries, each with the file it is read from: this binary when the bundle is for
/// this host's architecture, and the package given with --deb, which must hold this very binary.
fn tools(args: &BundleArgs, arch: &str) -> Result<Vec<(BundleTool, std::path::PathBuf)>> {
    // /proc/self/exe is the running binary even if its file was replaced since it started.
    let exe = std::path::PathBuf::from("/proc/self/exe");
    let (own_sha256, own_size) = File::open(&exe)
        .and_then(Sha256::of_reader)
        .map_err(|e| unreadable(Path::new("/proc/self/exe"), e))?;
    let mut tools = Vec::new();
    if arch == host_arch() {
        tools.push((
            BundleTool {
                kind: "binary".into(),
                file: TOOL_BINARY.into(),
                version: crate::VERSION.into(),
                sha256: own_sha256.clone(),
                size: own_size,
            },
            exe,
        ));
    } else {
        eprintln!(
            "note: the bundle is for {arch}, this registry-up for {}: the bundle does not carry the binary (give \
             --deb a registry-up package for {arch} to carry one).",
            host_arch()
        );
    }
    if let Some(path) = &args.deb {
        let deb = crate::deb::read(path)?;
        let refuse = |why: String| {
            Error::usage(format!(
                "The package {} {why}: the bundle would carry two different registry-ups. Build both with \
                 `make package` and bundle with the binary the package installs (or leave --deb out).",
                path.display()
            ))
        };
        let deb_arch = crate::deb::debian_arch(arch);
        if deb.arch != deb_arch {
            return Err(refuse(format!("is for {}, the bundle for {deb_arch}", deb.arch)));
        }
        if deb.version != env!("CARGO_PKG_VERSION") {
            return Err(refuse(format!(
                "is version {}, this registry-up {}",
                deb.version,
                env!("CARGO_PKG_VERSION")
            )));
        }
        if arch == host_arch() && deb.binary_sha256 != own_sha256 {
            return Err(refuse(format!(
                "holds another build of registry-up (sha256 {}) than the one running ({own_sha256})",
                deb.binary_sha256
            )));
        }
        let (sha256, size) = crate::bounded::open_regular(path)
            .and_then(Sha256::of_reader)
            .map_err(|e| unreadable(path, e))?;
        tools.push((
            BundleTool {
                kind: "deb".into(),
                file: format!("registry-up_{}_{deb_arch}.deb", deb.version),
                version: deb.version,
                sha256,
                size,
            },
            path.clone(),
        ));
    }
    Ok(tools)
}

/// Appends a tool, checking it is still the file that was hashed (a .deb rebuilt meanwhile is not).
fn append_tool(builder: &mut tar::Builder<File>, tool: &BundleTool, source: &Path) -> Result<()> {
    /// Hashes what passes through, so the bytes written are the bytes checked.
    struct Hashing<R>(R, Sha256);
    impl<R: std::io::Read> std::io::Read for Hashing<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1.update(&buf[..n]);
            Ok(n)
        }
    }
    let file = crate::bounded::open_regular(source).map_err(|e| unreadable(source, e))?;
    let mut header = tar::Header::new_gnu();
    header.set_size(tool.size);
    header.set_mode(if tool.kind == "binary" { 0o755 } else { 0o644 });
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    header.set_cksum();
    let mut reader = Hashing(std::io::Read::take(file, tool.size), Sha256::new());
    builder
        .append_data(&mut header, &tool.file, &mut reader)
        .map_err(|e| local("write the bundle", e))?;
    if reader.1.hex() != tool.sha256 {
        return Err(Error::runtime(format!(
            "{} changed while the bundle was made: run again once nothing is rebuilding it.",
            source.display()
        )));
    }
    Ok(())
}

fn append_bytes(builder: &mut tar::Builder<File>, name: &str, data: &[u8]) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, name, data)
        .map_err(|e| local("write the bundle", e))
}

fn hash_file(path: &Path) -> Result<(String, u64)> {
    File::open(path)
        .and_then(Sha256::of_reader)
        .map_err(|e| local("read back the archive", e))
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
    let read = |raw: &[u8]| AnyManifest::parse(raw).map_err(|e| failed(&format!("read the manifest of {name}"), e));
    let mut manifest = read(&raw)?;
    if manifest.manifests.is_some() {
        let child = manifest
            .child_for("linux", arch)
            .ok_or_else(|| Error::usage(format!("{name} has no image for linux/{arch}: choose another --arch.")))?;
        let by_digest = reference.clone_with_digest(child.digest.clone());
        (raw, digest) = client
            .pull_manifest_raw(&by_digest, auth, MANIFEST_TYPES)
            .await
            .map_err(|e| {
                failed(
                    &format!("fetch the {arch} manifest of {name}"),
                    crate::verify::chain(&e),
                )
            })?;
        manifest = read(&raw)?;
    }
    if crate::digest::oci_digest(&raw) != digest {
        return Err(failed(
            &format!("fetch {name}"),
            "the manifest does not match its digest",
        ));
    }
    let media_type = manifest
        .media_type
        .clone()
        .unwrap_or_else(|| oci_client::manifest::OCI_IMAGE_MEDIA_TYPE.to_string());
    let config = manifest.config.as_ref().ok_or_else(|| {
        failed(
            &format!("read {name}"),
            "its manifest names no config: it is not an image",
        )
    })?;
    let blobs: Vec<(String, u64)> = std::iter::once(config)
        .chain(&manifest.layers)
        .map(|d| (d.digest.clone(), d.size.max(0) as u64))
        .collect();

    let file = File::create(path).map_err(|e| local("write the image archive", e))?;
    let mut builder = tar::Builder::new(file);
    let blob_dir = path.with_extension("blobs");
    std::fs::create_dir_all(&blob_dir).map_err(|e| local("write the image archive", e))?;
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
            .map_err(|e| local("write the image archive", e))?;
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
        .map_err(|e| local("write the image archive", e))?;
    Ok(digest)
}

pub(crate) async fn download_blob(
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
    let mut file = File::create(path).map_err(|e| local(&what, e))?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| failed(&what, e))?;
        hasher.update(&chunk);
        file.write_all(&chunk).map_err(|e| local(&what, e))?;
        bar.inc(chunk.len() as u64);
    }
    if format!("sha256:{}", hasher.hex()) != digest {
        return Err(failed(&what, "the data does not match its digest"));
    }
    Ok(())
}
