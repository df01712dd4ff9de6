//! What `import` reads: the images of a bundle, an OCI image layout (folder or tar, as `podman save
//! --format oci-archive` and `docker save` write), or a `podman save`/`docker save` docker-archive,
//! each image with its manifests (children first) byte for byte and the blobs they name.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;

use oci_client::manifest::{OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE};
use oci_client::Reference;
use serde::Deserialize;

use crate::digest::oci_digest;
use crate::oci::AnyManifest;
use crate::store::{Range, Store};

/// A manifest or index is JSON of a few kilobytes; more than this is not one.
const MANIFEST_LIMIT: u64 = 4 << 20;
/// The annotations that name an image in an OCI layout: containerd's (full name, what `docker save`
/// writes), then the OCI one (a full name from podman and registry-up, a bare tag from some tools).
const NAME_ANNOTATIONS: [&str; 2] = ["io.containerd.image.name", "org.opencontainers.image.ref.name"];

#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: String,
    pub media_type: String,
    pub raw: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct Image {
    /// The upstream name, as clients ask for it: `docker.io/library/nginx:1.27`.
    pub name: Reference,
    /// Its manifests, children before the index that lists them; the last is the one the name points at.
    pub manifests: Vec<Manifest>,
    /// Every config and layer its manifests name, each once.
    pub blobs: Vec<Blob>,
}

impl Image {
    pub fn digest(&self) -> &str {
        &self.manifests.last().expect("an image has a manifest").digest
    }

    /// The platforms of an index's children (`linux/arm64`), or none for a single image.
    pub fn platforms(&self) -> Vec<String> {
        let top = self.manifests.last().expect("an image has a manifest");
        AnyManifest::parse(&top.raw)
            .ok()
            .and_then(|m| m.manifests)
            .unwrap_or_default()
            .iter()
            .filter_map(|child| child.platform.as_ref())
            .map(|p| format!("{}/{}", p.os, p.architecture))
            .collect()
    }
}

/// The images of one source and where their blobs are.
#[derive(Debug, Clone)]
pub struct Source {
    pub images: Vec<Image>,
    store: Store,
    /// Blob digest → the file that holds it in the store.
    files: HashMap<String, String>,
    /// Blobs a `bundle --since` left to an older bundle, each with an image of it that holds the blob:
    /// the registry has them already, in that image's repository.
    pub elsewhere: BTreeMap<String, Reference>,
}

impl Source {
    /// Where blob `digest` is, if the source holds it.
    pub fn blob(&self, digest: &str) -> Option<Range> {
        self.files.get(digest).and_then(|name| self.store.locate(name))
    }
}

/// Reads SOURCE: a folder (an OCI layout), or a tar holding an OCI layout or a docker-archive. A bundle
/// is read by `bundle::check`, which checks every byte first.
pub fn open(path: &Path) -> Result<Source, String> {
    if path.is_dir() {
        if !path.join("index.json").is_file() {
            return Err("it is a folder without index.json, so not an OCI image layout".into());
        }
        return layout(Store::Dir(path.to_path_buf()), "", BTreeMap::new());
    }
    let store = Store::tar(path).map_err(|e| format!("it is neither a folder nor a readable tar archive ({e})"))?;
    if store.locate("index.json").is_some() {
        layout(store, "", BTreeMap::new())
    } else if store.locate("manifest.json").is_some() {
        docker_archive(store)
    } else {
        Err("it holds neither index.json (an OCI layout) nor manifest.json (podman or docker save)".into())
    }
}

fn blob_file(prefix: &str, digest: &str) -> Result<String, String> {
    match crate::digest::sha256_part(digest) {
        Some(hex) => Ok(format!("{prefix}blobs/sha256/{hex}")),
        None => Err(format!(
            "it names the digest {} (only sha256 is read)",
            crate::bundle::printable(digest)
        )),
    }
}

/// A manifest read from the store and checked against its digest.
fn manifest_at(
    store: &Store,
    prefix: &str,
    digest: &str,
    media_type: Option<&str>,
) -> Result<(Manifest, AnyManifest), String> {
    #[cfg(test)]
    tests::MANIFEST_READS.with(|n| n.set(n.get() + 1));
    let file = blob_file(prefix, digest)?;
    let raw = store
        .read(&file, MANIFEST_LIMIT)
        .map_err(|e| format!("the manifest {digest}: {e}"))?;
    if oci_digest(&raw) != digest {
        return Err(format!("the manifest {digest} does not match its digest"));
    }
    let parsed = AnyManifest::parse(&raw).map_err(|e| format!("the manifest {digest} is not valid JSON ({e})"))?;
    let media_type = parsed
        .media_type
        .clone()
        .or(media_type.map(str::to_string))
        .unwrap_or_else(|| {
            if parsed.manifests.is_some() {
                OCI_IMAGE_INDEX_MEDIA_TYPE
            } else {
                OCI_IMAGE_MEDIA_TYPE
            }
            .to_string()
        });
    Ok((
        Manifest {
            digest: digest.to_string(),
            media_type,
            raw,
        },
        parsed,
    ))
}

/// What a walk of one image found: its manifests (children first), its blobs, and every manifest digest
/// already walked (each is walked once, however often indexes name it: an index naming one child 19 000
/// times is 19 000 entries to read, not 19 000 walks).
#[derive(Default)]
struct Walked {
    manifests: Vec<Manifest>,
    blobs: BTreeSet<Blob>,
    seen: HashSet<String>,
}

/// An image's manifests (children first) and blobs, from its top manifest down.
fn walk(
    store: &Store,
    prefix: &str,
    digest: &str,
    media_type: Option<&str>,
    walked: &mut Walked,
    depth: usize,
) -> Result<(), String> {
    if depth > 2 {
        return Err(format!(
            "the index {digest} nests indexes deeper than registry-up reads"
        ));
    }
    if !walked.seen.insert(digest.to_string()) {
        return Ok(());
    }
    let (manifest, parsed) = manifest_at(store, prefix, digest, media_type)?;
    for child in parsed.manifests.iter().flatten() {
        if walked.seen.contains(&child.digest) {
            continue;
        }
        if store.locate(&blob_file(prefix, &child.digest)?).is_none() {
            let platform = child
                .platform
                .as_ref()
                .map(|p| format!("{}/{}", p.os, p.architecture))
                .unwrap_or_else(|| "unnamed".into());
            return Err(format!(
                "the index {digest} lists the {platform} image {}, which the source does not hold: save the image \
                 with every platform, or one platform alone (docker save --platform {platform})",
                child.digest
            ));
        }
        walk(store, prefix, &child.digest, Some(&child.media_type), walked, depth + 1)?;
    }
    for d in parsed.config.iter().chain(&parsed.layers) {
        blob_file(prefix, &d.digest)?;
        walked.blobs.insert(Blob {
            digest: d.digest.clone(),
            size: u64::try_from(d.size).map_err(|_| format!("the manifest {digest} gives a negative size"))?,
        });
    }
    if !parsed.fs_layers.is_empty() {
        return Err(format!(
            "the manifest {digest} is Docker schema 1, which registries no longer take"
        ));
    }
    walked.manifests.push(manifest);
    Ok(())
}

#[derive(Deserialize)]
struct LayoutIndex {
    manifests: Vec<oci_client::manifest::ImageIndexEntry>,
}

/// The full name of a layout's image, from its annotations.
fn layout_name(entry: &oci_client::manifest::ImageIndexEntry) -> Result<Reference, String> {
    let annotations = entry.annotations.clone().unwrap_or_default();
    let names: Vec<&String> = NAME_ANNOTATIONS
        .iter()
        .filter_map(|key| annotations.get(*key))
        .collect();
    // A bare tag ("1.27") is not a name (a tag holds neither '/' nor ':'): the repository would be guessed.
    let full = names.iter().find(|n| n.contains('/') || n.contains(':'));
    match full {
        Some(name) => Reference::from_str(name).map_err(|e| format!("the image name {} cannot be read ({e})", crate::bundle::printable(name))),
        None => Err(format!(
            "the image {} has no full name ({}): save it with its name (podman save --format oci-archive NAME, or skopeo copy … oci:DIR:docker.io/library/NAME:TAG)",
            entry.digest,
            match names.first() {
                Some(n) => format!("only \"{}\"", crate::bundle::printable(n)),
                None => "no org.opencontainers.image.ref.name".to_string(),
            }
        )),
    }
}

/// An OCI image layout under `prefix` of `store`; the blobs in `omitted` may be missing (a `bundle
/// --since` left them to an older bundle: the registry must have them already).
pub fn layout(store: Store, prefix: &str, omitted: BTreeMap<String, Reference>) -> Result<Source, String> {
    let text = store
        .read(&format!("{prefix}index.json"), MANIFEST_LIMIT)
        .map_err(|e| format!("its index.json cannot be read ({e})"))?;
    let index: LayoutIndex = serde_json::from_slice(&text).map_err(|e| format!("its index.json is not valid ({e})"))?;
    if index.manifests.is_empty() {
        return Err("its index.json lists no image".into());
    }
    let mut images: Vec<Image> = Vec::new();
    let mut files = HashMap::new();
    for entry in &index.manifests {
        let name = layout_name(entry)?;
        if images.iter().any(|i| i.name.whole() == name.whole()) {
            return Err(format!("it names {} twice", name.whole()));
        }
        let mut walked = Walked::default();
        walk(&store, prefix, &entry.digest, Some(&entry.media_type), &mut walked, 0)?;
        let Walked { manifests, blobs, .. } = walked;
        for blob in &blobs {
            let file = blob_file(prefix, &blob.digest)?;
            match store.locate(&file) {
                Some(range) if range.size != blob.size => {
                    return Err(format!(
                        "the blob {} of {} has {} bytes, not the {} its manifest gives",
                        blob.digest,
                        name.whole(),
                        range.size,
                        blob.size
                    ))
                }
                Some(_) => {
                    files.insert(blob.digest.clone(), file);
                }
                None if omitted.contains_key(&blob.digest) => {}
                None => return Err(format!("the blob {} of {} is missing", blob.digest, name.whole())),
            }
        }
        images.push(Image {
            name,
            manifests,
            blobs: blobs.into_iter().collect(),
        });
    }
    Ok(Source {
        images,
        store,
        files,
        elsewhere: omitted,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct ImageConfig {
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// A docker-archive (`podman save`, older `docker save`): no manifest, so one is made, an OCI image
/// manifest naming the config and the uncompressed layers as they are (their digests are the config's
/// diff_ids, which the upload checks).
fn docker_archive(store: Store) -> Result<Source, String> {
    let text = store
        .read("manifest.json", MANIFEST_LIMIT)
        .map_err(|e| format!("its manifest.json cannot be read ({e})"))?;
    let entries: Vec<ArchiveEntry> =
        serde_json::from_slice(&text).map_err(|e| format!("its manifest.json is not a docker-archive's ({e})"))?;
    let mut images: Vec<Image> = Vec::new();
    let mut files = HashMap::new();
    for entry in &entries {
        let config = store
            .read(&entry.config, MANIFEST_LIMIT)
            .map_err(|e| format!("the image config {}: {e}", crate::bundle::printable(&entry.config)))?;
        let config_digest = oci_digest(&config);
        let parsed: ImageConfig = serde_json::from_slice(&config).map_err(|e| {
            format!(
                "the image config {} is not valid ({e})",
                crate::bundle::printable(&entry.config)
            )
        })?;
        if parsed.rootfs.diff_ids.len() != entry.layers.len() {
            return Err(format!(
                "the image {config_digest} lists {} layers but its config {}",
                entry.layers.len(),
                parsed.rootfs.diff_ids.len()
            ));
        }
        files.insert(config_digest.clone(), entry.config.clone());
        let mut layers = Vec::new();
        let mut blobs = vec![Blob {
            digest: config_digest.clone(),
            size: config.len() as u64,
        }];
        for (file, diff_id) in entry.layers.iter().zip(&parsed.rootfs.diff_ids) {
            blob_file("", diff_id)?;
            let range = store
                .locate(file)
                .ok_or_else(|| format!("the layer {} is missing", crate::bundle::printable(file)))?;
            files.insert(diff_id.clone(), file.clone());
            layers.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": diff_id,
                "size": range.size,
            }));
            blobs.push(Blob {
                digest: diff_id.clone(),
                size: range.size,
            });
        }
        // serde_json orders keys: the same archive always makes the same manifest, so a re-run finds it.
        let raw = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_IMAGE_MEDIA_TYPE,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": layers,
        }))
        .expect("serialises");
        let manifest = Manifest {
            digest: oci_digest(&raw),
            media_type: OCI_IMAGE_MEDIA_TYPE.to_string(),
            raw,
        };
        let tags = entry.repo_tags.clone().unwrap_or_default();
        if tags.is_empty() {
            return Err(format!(
                "the image {config_digest} has no name: save it by name (podman save NAME)"
            ));
        }
        blobs.sort();
        blobs.dedup();
        for tag in tags {
            let name = Reference::from_str(&tag)
                .map_err(|e| format!("the image name {} cannot be read ({e})", crate::bundle::printable(&tag)))?;
            if images.iter().any(|i| i.name.whole() == name.whole()) {
                return Err(format!("it names {} twice", name.whole()));
            }
            images.push(Image {
                name,
                manifests: vec![manifest.clone()],
                blobs: blobs.clone(),
            });
        }
    }
    if images.is_empty() {
        return Err("its manifest.json lists no image".into());
    }
    Ok(Source {
        images,
        store,
        files,
        elsewhere: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_hex;

    thread_local! {
        /// How many manifests [`manifest_at`] read on this thread: the walk's work, counted.
        pub static MANIFEST_READS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// An index naming one child index 2 000 times, which names one image 2 000 times (8 MB on disk in
    /// the adversarial pass with 19 000): three manifests, each read once, not four million walks.
    #[test]
    fn a_manifest_named_many_times_is_walked_once() {
        let dir = tempfile::tempdir().unwrap();
        let (img, img_size) = image(dir.path(), "amd64", b"layer");
        let entry = |digest: &str, size: usize, media: &str| {
            serde_json::json!({"mediaType": media, "digest": digest, "size": size,
                "platform": {"os": "linux", "architecture": "amd64"}})
        };
        let index_of = |child: serde_json::Value| {
            serde_json::json!({"schemaVersion": 2, "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE,
                "manifests": vec![child; 2000]})
            .to_string()
        };
        let (inner, inner_size) = put(
            dir.path(),
            index_of(entry(&img, img_size, OCI_IMAGE_MEDIA_TYPE)).as_bytes(),
        );
        let (outer, outer_size) = put(
            dir.path(),
            index_of(entry(&inner, inner_size, OCI_IMAGE_INDEX_MEDIA_TYPE)).as_bytes(),
        );
        let top = serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE, "digest": outer, "size": outer_size,
            "annotations": {"org.opencontainers.image.ref.name": "example.com/many:1"}}]});
        std::fs::write(dir.path().join("index.json"), top.to_string()).unwrap();
        MANIFEST_READS.with(|n| n.set(0));
        let source = layout(Store::Dir(dir.path().to_path_buf()), "", BTreeMap::new()).unwrap();
        assert_eq!(MANIFEST_READS.with(|n| n.get()), 3, "each manifest read once");
        assert_eq!(source.images[0].manifests.len(), 3);
        assert_eq!(source.images[0].blobs.len(), 2);
    }

    fn put(dir: &Path, data: &[u8]) -> (String, usize) {
        let hex = sha256_hex(data);
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("blobs/sha256").join(&hex), data).unwrap();
        (format!("sha256:{hex}"), data.len())
    }

    fn image(dir: &Path, arch: &str, layer: &[u8]) -> (String, usize) {
        let (layer, layer_size) = put(dir, layer);
        let (config, config_size) = put(dir, format!(r#"{{"architecture":"{arch}","os":"linux"}}"#).as_bytes());
        put(
            dir,
            serde_json::json!({"schemaVersion": 2, "mediaType": OCI_IMAGE_MEDIA_TYPE,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}]})
            .to_string()
            .as_bytes(),
        )
    }

    #[test]
    fn a_layout_reads_indexes_children_first_and_shared_blobs_once() {
        let dir = tempfile::tempdir().unwrap();
        let (amd, amd_size) = image(dir.path(), "amd64", b"shared");
        let (arm, arm_size) = image(dir.path(), "arm64", b"shared");
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE, "manifests": [
            {"mediaType": OCI_IMAGE_MEDIA_TYPE, "digest": amd, "size": amd_size, "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_IMAGE_MEDIA_TYPE, "digest": arm, "size": arm_size, "platform": {"os": "linux", "architecture": "arm64"}}]});
        let (top, top_size) = put(dir.path(), index.to_string().as_bytes());
        let layout_index = |name: &str| {
            serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE, "digest": top,
                "size": top_size, "annotations": {"org.opencontainers.image.ref.name": name}}]})
            .to_string()
        };
        std::fs::write(dir.path().join("index.json"), layout_index("nginx:1.27")).unwrap();
        let source = open(dir.path()).unwrap();
        let [image] = &source.images[..] else { panic!() };
        assert_eq!(image.name.whole(), "docker.io/library/nginx:1.27");
        assert_eq!(image.digest(), top);
        assert_eq!(
            image.manifests.iter().map(|m| m.digest.clone()).collect::<Vec<_>>(),
            [amd, arm, top.clone()]
        );
        assert_eq!(image.blobs.len(), 3, "one shared layer, two configs");
        assert_eq!(image.platforms(), ["linux/amd64", "linux/arm64"]);

        std::fs::write(dir.path().join("index.json"), layout_index("1.27")).unwrap();
        let error = open(dir.path()).unwrap_err();
        assert!(
            error.contains("has no full name") && error.contains("only \"1.27\""),
            "{error}"
        );

        std::fs::write(dir.path().join("index.json"), layout_index("example.org/a/b:1")).unwrap();
        std::fs::write(
            dir.path().join("blobs/sha256").join(top.trim_start_matches("sha256:")),
            b"{}",
        )
        .unwrap();
        assert!(open(dir.path()).unwrap_err().contains("does not match its digest"));
    }

    #[test]
    fn a_docker_archive_gets_one_stable_manifest_per_image() {
        let dir = tempfile::tempdir().unwrap();
        let layer = b"layer bytes".to_vec();
        let diff_id = format!("sha256:{}", sha256_hex(&layer));
        let config = serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).to_string();
        std::fs::write(dir.path().join("abc.json"), &config).unwrap();
        std::fs::write(dir.path().join("abc.tar"), &layer).unwrap();
        std::fs::write(
            dir.path().join("manifest.json"),
            r#"[{"Config":"abc.json","RepoTags":["localhost/app:1","quay.io/x/app:2"],"Layers":["abc.tar"]}]"#,
        )
        .unwrap();
        let tar_path = dir.path().join("archive.tar");
        let status = std::process::Command::new("tar")
            .args(["-cf", "archive.tar", "manifest.json", "abc.json", "abc.tar"])
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        let first = open(&tar_path).unwrap();
        let again = open(&tar_path).unwrap();
        assert_eq!(first.images.len(), 2);
        assert_eq!(first.images[0].name.whole(), "localhost/app:1");
        assert_eq!(first.images[0].digest(), again.images[0].digest());
        assert_eq!(first.images[0].blobs.len(), 2);
        assert_eq!(first.blob(&diff_id).unwrap().read_all().unwrap(), layer);
        assert_eq!(
            first.blob(&oci_digest(config.as_bytes())).unwrap().size,
            config.len() as u64
        );
    }
}
