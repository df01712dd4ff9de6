//! What verify and bundle share about OCI content: the manifest media types, and a tolerant typed
//! reading of any manifest (image, index, or an older Docker shape) built on oci-client's descriptors.

use oci_client::manifest::{
    ImageIndexEntry, OciDescriptor, IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use serde::Deserialize;

/// The manifest kinds registry-up reads, indexes first: an Accept list for registries.
pub const MANIFEST_TYPES: &[&str] = &[
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
];

/// Any manifest a registry may hold. Unlike oci-client's `OciManifest`, an artifact without layers or
/// a Docker schema 1 manifest still parses, so a walk over a whole registry can name what it finds.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnyManifest {
    pub media_type: Option<String>,
    /// An index's children.
    pub manifests: Option<Vec<ImageIndexEntry>>,
    pub config: Option<OciDescriptor>,
    #[serde(default)]
    pub layers: Vec<OciDescriptor>,
    /// Docker schema 1, should an old registry still hold one.
    #[serde(default)]
    pub fs_layers: Vec<FsLayer>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FsLayer {
    pub blob_sum: String,
}

impl AnyManifest {
    pub fn parse(raw: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(raw)
    }

    /// The blobs an image manifest names: its config, then its layers (nothing for an index).
    pub fn blobs(&self) -> impl Iterator<Item = &str> {
        self.config
            .iter()
            .chain(&self.layers)
            .map(|d| d.digest.as_str())
            .chain(self.fs_layers.iter().map(|l| l.blob_sum.as_str()))
    }

    /// The child of an index for `os`/`arch` (OCI names: linux, amd64).
    pub fn child_for(&self, os: &str, arch: &str) -> Option<&ImageIndexEntry> {
        self.manifests.iter().flatten().find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.os.to_string() == os && p.architecture.to_string() == arch)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::AnyManifest;

    #[test]
    fn images_indexes_and_old_shapes_are_read() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":1,
             "platform":{"os":"linux","architecture":"arm64"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb","size":1,
             "platform":{"os":"linux","architecture":"amd64"}}]}"#;
        let index = AnyManifest::parse(index).unwrap();
        assert_eq!(
            index.child_for("linux", "amd64").map(|c| c.digest.as_str()),
            Some("sha256:bb")
        );
        assert_eq!(index.blobs().count(), 0);
        let image = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:c","size":2},
            "layers":[{"mediaType":"y","digest":"sha256:l","size":3}]}"#;
        let blobs: Vec<_> = AnyManifest::parse(image).unwrap().blobs().map(String::from).collect();
        assert_eq!(blobs, ["sha256:c", "sha256:l"]);
        let schema1 = br#"{"schemaVersion":1,"fsLayers":[{"blobSum":"sha256:f"}]}"#;
        assert_eq!(
            AnyManifest::parse(schema1).unwrap().blobs().collect::<Vec<_>>(),
            ["sha256:f"]
        );
        let artifact = br#"{"schemaVersion":2,"artifactType":"a/b","layers":[]}"#;
        assert!(AnyManifest::parse(artifact).is_ok());
    }
}
