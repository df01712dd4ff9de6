//! `bundle --images FILE`: the workloads' images pulled into one OCI image layout, byte for byte (the
//! registry's manifests and blobs as served, each checked against its digest), each blob once however
//! many images share it; with `--since`, without the blobs an older bundle holds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use oci_client::manifest::{OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::bundle::{printable, Omitted, Workload};
use crate::digest::oci_digest;
use crate::error::{Error, Result};
use crate::oci::{AnyManifest, MANIFEST_TYPES};
use crate::store::Store;

/// The references of an image list: one per line, `#` starts a comment, the same image once.
pub fn read_list(path: &Path) -> Result<Vec<Reference>> {
    // 16 MiB: some hundred thousand references.
    let text = crate::bounded::read_text(path, 16 << 20).map_err(|e| {
        Error::usage(format!(
            "Cannot read the image list {} ({e}): give --images a text file of image references, one per line.",
            path.display()
        ))
    })?;
    let mut references: Vec<Reference> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let reference = Reference::from_str(line).map_err(|e| {
            Error::usage(format!(
                "Line {} of {} is not an image reference ({}: {e}): write one reference per line, such as \
                 docker.io/library/nginx:1.27.",
                number + 1,
                path.display(),
                printable(line)
            ))
        })?;
        // import pushes by tag (gc removes untagged images), so a pinned digest comes with a tag.
        if reference.tag().is_none() {
            return Err(Error::usage(format!(
                "Line {} of {} pins {} by digest alone: add the tag it should have on the site \
                 (NAME:TAG@sha256:…), since the registry's gc removes untagged images.",
                number + 1,
                path.display(),
                printable(line)
            )));
        }
        if !references.iter().any(|r| r.whole() == reference.whole()) {
            references.push(reference);
        }
    }
    if references.is_empty() {
        return Err(Error::usage(format!(
            "The image list {} names no image: write one reference per line.",
            path.display()
        )));
    }
    Ok(references)
}

/// The blobs an older bundle holds or itself left out, each with an image of it that holds the blob:
/// what `--since` need not carry again, and where import finds it on the site.
pub fn known_blobs(old: &Path) -> Result<BTreeMap<String, String>> {
    let refuse = |why: String| {
        Error::usage(format!(
            "Cannot use {} as the older bundle ({why}): give --since a bundle registry-up bundle --images wrote.",
            old.display()
        ))
    };
    let store = Store::tar(old).map_err(|e| refuse(e.to_string()))?;
    let manifest: crate::bundle::BundleManifest = serde_json::from_slice(
        &store
            .read(crate::bundle::MANIFEST, 16 << 20)
            .map_err(|e| refuse(e.to_string()))?,
    )
    .map_err(|e| refuse(format!("its manifest.json is not valid: {e}")))?;
    if manifest.workloads.is_empty() {
        return Err(refuse("it carries no workload images".into()));
    }
    let mut known = BTreeMap::new();
    let mut elsewhere = BTreeMap::new();
    for o in &manifest.omitted {
        let image =
            Reference::from_str(&o.image).map_err(|e| refuse(format!("it names {} ({e})", printable(&o.image))))?;
        elsewhere.insert(o.digest.clone(), image);
        known.insert(o.digest.clone(), o.image.clone());
    }
    // Its layout read in place (manifests only): which of its images holds each blob.
    let source = crate::source::layout(store, crate::bundle::WORKLOADS, elsewhere).map_err(refuse)?;
    for image in &source.images {
        for blob in &image.blobs {
            known.entry(blob.digest.clone()).or_insert_with(|| image.name.whole());
        }
    }
    Ok(known)
}

/// What was pulled: the images, the blobs left out, and the layout's files (relative to its folder).
pub struct Pulled {
    pub workloads: Vec<Workload>,
    pub omitted: Vec<Omitted>,
    pub files: Vec<PathBuf>,
}

struct Layout<'a> {
    dir: PathBuf,
    known: &'a BTreeMap<String, String>,
    omitted: BTreeMap<String, String>,
    files: BTreeSet<PathBuf>,
}

impl Layout<'_> {
    fn path(&mut self, digest: &str) -> Result<PathBuf> {
        let hex = crate::digest::sha256_part(digest).ok_or_else(|| {
            Error::runtime(format!(
                "The registry named the digest {} (only sha256 is carried).",
                printable(digest)
            ))
        })?;
        let rel = PathBuf::from(format!("blobs/sha256/{hex}"));
        self.files.insert(rel.clone());
        Ok(self.dir.join(rel))
    }

    fn put_manifest(&mut self, digest: &str, raw: &[u8]) -> Result<()> {
        let path = self.path(digest)?;
        std::fs::write(&path, raw).map_err(|e| super::bundle::local("write a manifest into the bundle", e))
    }
}

/// Pulls every image of `references` into a layout in `dir`.
pub async fn pull(
    client: &Client,
    auth: &RegistryAuth,
    references: &[Reference],
    arches: &[String],
    known: &BTreeMap<String, String>,
    dir: &Path,
    bars: &MultiProgress,
) -> Result<Pulled> {
    std::fs::create_dir_all(dir.join("blobs/sha256")).map_err(|e| super::bundle::local("write the images", e))?;
    let mut layout = Layout {
        dir: dir.to_path_buf(),
        known,
        omitted: BTreeMap::new(),
        files: BTreeSet::new(),
    };
    let mut workloads = Vec::new();
    let mut entries = Vec::new();
    for reference in references {
        let (workload, media_type, size) = pull_image(client, auth, reference, arches, &mut layout, bars).await?;
        println!(
            "ok   {} ({}{})",
            workload.reference,
            &workload.digest[..19],
            match workload.platforms.len() {
                0 => String::new(),
                n => format!(", {n} platforms"),
            }
        );
        entries.push(serde_json::json!({
            "mediaType": media_type,
            "digest": workload.digest,
            "size": size,
            "annotations": {
                "org.opencontainers.image.ref.name": workload.reference,
                "io.containerd.image.name": workload.reference,
            },
        }));
        workloads.push(workload);
    }
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE, "manifests": entries});
    let write = |name: &str, data: &[u8]| {
        std::fs::write(dir.join(name), data).map_err(|e| super::bundle::local("write the images", e))
    };
    write("index.json", &serde_json::to_vec(&index).expect("serialises"))?;
    write("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut files: Vec<PathBuf> = vec!["oci-layout".into(), "index.json".into()];
    files.extend(layout.files);
    Ok(Pulled {
        workloads,
        omitted: layout
            .omitted
            .into_iter()
            .map(|(digest, image)| Omitted { digest, image })
            .collect(),
        files,
    })
}

/// A manifest by reference, checked against its digest (and against the reference's, if it has one).
async fn manifest(client: &Client, auth: &RegistryAuth, reference: &Reference) -> Result<(Vec<u8>, String)> {
    let name = reference.whole();
    let (raw, digest) = client
        .pull_manifest_raw(reference, auth, MANIFEST_TYPES)
        .await
        .map_err(|e| super::bundle::failed(&format!("fetch the manifest of {name}"), crate::verify::chain(&e)))?;
    if oci_digest(&raw) != digest || reference.digest().is_some_and(|d| d != digest) {
        return Err(super::bundle::failed(
            &format!("fetch {name}"),
            "the manifest does not match its digest",
        ));
    }
    Ok((raw.to_vec(), digest))
}

fn media_type(raw: &[u8], parsed: &AnyManifest) -> String {
    let declared: Option<String> = serde_json::from_slice::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(str::to_string));
    declared.or(parsed.media_type.clone()).unwrap_or_else(|| {
        if parsed.manifests.is_some() {
            OCI_IMAGE_INDEX_MEDIA_TYPE
        } else {
            OCI_IMAGE_MEDIA_TYPE
        }
        .to_string()
    })
}

/// One image: its manifest (an index limited to `arches` if given), each child, each blob.
async fn pull_image(
    client: &Client,
    auth: &RegistryAuth,
    reference: &Reference,
    arches: &[String],
    layout: &mut Layout<'_>,
    bars: &MultiProgress,
) -> Result<(Workload, String, usize)> {
    let name = reference.whole();
    let (raw, digest) = manifest(client, auth, reference).await?;
    let parsed =
        AnyManifest::parse(&raw).map_err(|e| super::bundle::failed(&format!("read the manifest of {name}"), e))?;
    let top_type = media_type(&raw, &parsed);
    let mut workload = Workload {
        reference: name.clone(),
        digest: digest.clone(),
        source_digest: None,
        platforms: Vec::new(),
    };
    let mut top = raw.clone();
    let mut images = Vec::new();
    match &parsed.manifests {
        None => images.push((raw, digest)),
        Some(children) => {
            let wanted = |arch: &str| arches.is_empty() || arches.iter().any(|a| a == arch);
            let kept: Vec<_> = children
                .iter()
                .filter(|c| {
                    wanted(
                        &c.platform
                            .as_ref()
                            .map(|p| p.architecture.to_string())
                            .unwrap_or_default(),
                    )
                })
                .collect();
            if kept.is_empty() {
                return Err(Error::usage(format!(
                    "{name} has no image for {}: choose another --arch.",
                    arches.join(", ")
                )));
            }
            if kept.len() != children.len() {
                // The index rewritten to list only those platforms (the children stay byte for byte): a
                // registry refuses an index whose children it does not hold.
                let mut value: serde_json::Value = serde_json::from_slice(&raw).expect("parsed above");
                let keep: BTreeSet<&str> = kept.iter().map(|c| c.digest.as_str()).collect();
                if let Some(list) = value["manifests"].as_array_mut() {
                    list.retain(|c| c["digest"].as_str().is_some_and(|d| keep.contains(d)));
                }
                top = serde_json::to_vec(&value).expect("serialises");
                workload.source_digest = Some(digest.clone());
                workload.digest = oci_digest(&top);
            }
            for child in kept {
                if let Some(platform) = &child.platform {
                    workload
                        .platforms
                        .push(format!("{}/{}", platform.os, platform.architecture));
                }
                let by_digest = reference.clone_with_digest(child.digest.clone());
                let (child_raw, child_digest) = manifest(client, auth, &by_digest).await?;
                images.push((child_raw, child_digest));
            }
        }
    }
    for (raw, digest) in &images {
        let parsed =
            AnyManifest::parse(raw).map_err(|e| super::bundle::failed(&format!("read the manifest of {name}"), e))?;
        if parsed.manifests.is_some() || parsed.config.is_none() {
            return Err(super::bundle::failed(
                &format!("read {name}"),
                format!("{digest} is not an image manifest (nested indexes are not carried)"),
            ));
        }
        for blob in parsed.config.iter().chain(&parsed.layers) {
            if let Some(image) = layout.known.get(&blob.digest) {
                layout.omitted.insert(blob.digest.clone(), image.clone());
                continue;
            }
            let path = layout.path(&blob.digest)?;
            if path.exists() {
                continue; // shared with an image pulled before: fetched and checked once
            }
            let bar = bars.add(ProgressBar::new(blob.size.max(0) as u64));
            bar.set_style(
                ProgressStyle::with_template("{msg:24} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
                    .expect("valid template"),
            );
            bar.set_message(format!("{} {}", reference.repository(), &blob.digest[7..19]));
            let partial = path.with_extension("partial");
            super::bundle::download_blob(client, reference, &blob.digest, &partial, &bar).await?;
            bar.finish_and_clear();
            std::fs::rename(&partial, &path).map_err(|e| super::bundle::local("write the images", e))?;
        }
        layout.put_manifest(digest, raw)?;
    }
    layout.put_manifest(&workload.digest, &top)?;
    Ok((workload, top_type, top.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_list_takes_comments_blank_lines_and_each_image_once() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("images.txt");
        std::fs::write(
            &list,
            "# the lab's images\nnginx:1.27\n\n  quay.io/a/b:2  # pinned\ndocker.io/library/nginx:1.27\n",
        )
        .unwrap();
        let names: Vec<String> = read_list(&list).unwrap().iter().map(|r| r.whole()).collect();
        assert_eq!(names, ["docker.io/library/nginx:1.27", "quay.io/a/b:2"]);
        std::fs::write(&list, "nginx:1.27\nNot A Reference\n").unwrap();
        let error = read_list(&list).unwrap_err().message;
        assert!(error.starts_with("Line 2 of "), "{error}");
        std::fs::write(&list, format!("nginx@sha256:{}\n", "a".repeat(64))).unwrap();
        assert!(read_list(&list).unwrap_err().message.contains("by digest alone"));
        std::fs::write(&list, "# nothing\n").unwrap();
        assert!(read_list(&list).unwrap_err().message.contains("names no image"));
    }
}
