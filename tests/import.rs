//! The workloads' images across the gap: `bundle --images` on the "connected" side (a registry on
//! loopback holding a two-platform index and two images that share a layer), then `up --bundle` and
//! `import` on the site, each image checked by skopeo against the source; a kill -9 mid-import and a
//! re-run that sends only what had not arrived (the registry's own log says what it received); a
//! flipped byte refused before anything is pushed; `--since` carrying only the new blobs; podman save
//! archives (docker-archive and oci-archive) imported and pulled back by podman.

mod common;

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{podman, serving, sha256, skopeo, skopeo_ok, text, Appliance, ImageNames, Run};

const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An OCI image layout being written: blobs by content, images and indexes named in index.json.
struct Layout {
    dir: PathBuf,
    named: Vec<serde_json::Value>,
}

/// One image or index in a layout: its digest, size, media type, and every config and layer under it.
#[derive(Clone)]
struct Made {
    digest: String,
    size: usize,
    media_type: &'static str,
    blobs: BTreeSet<String>,
}

impl Layout {
    fn new(dir: PathBuf) -> Self {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout { dir, named: Vec::new() }
    }

    fn blob(&self, data: &[u8]) -> (String, usize) {
        let hex = sha256(data);
        std::fs::write(self.dir.join("blobs/sha256").join(&hex), data).unwrap();
        (format!("sha256:{hex}"), data.len())
    }

    fn image(&self, arch: &str, layers: &[&[u8]]) -> Made {
        let layers: Vec<(String, usize)> = layers.iter().map(|l| self.blob(l)).collect();
        let config = serde_json::json!({"architecture": arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.0.clone()).collect::<Vec<_>>()}});
        let (config_digest, config_size) = self.blob(config.to_string().as_bytes());
        let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": layers.iter().map(|(d, s)| serde_json::json!({"mediaType": LAYER, "digest": d, "size": s})).collect::<Vec<_>>()});
        let (digest, size) = self.blob(manifest.to_string().as_bytes());
        let mut blobs: BTreeSet<String> = layers.into_iter().map(|l| l.0).collect();
        blobs.insert(config_digest);
        Made {
            digest,
            size,
            media_type: MANIFEST,
            blobs,
        }
    }

    fn index(&self, children: &[(&str, &Made)]) -> Made {
        let manifests: Vec<_> = children
            .iter()
            .map(|(arch, m)| {
                serde_json::json!({"mediaType": m.media_type, "digest": m.digest, "size": m.size,
                "platform": {"os": "linux", "architecture": arch}})
            })
            .collect();
        let (digest, size) = self.blob(
            serde_json::json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests})
                .to_string()
                .as_bytes(),
        );
        Made {
            digest,
            size,
            media_type: INDEX,
            blobs: children.iter().flat_map(|(_, m)| m.blobs.clone()).collect(),
        }
    }

    /// Names `made` in index.json (as skopeo's `oci:DIR:NAME` finds it).
    fn name(&mut self, name: &str, made: &Made) {
        self.named.push(
            serde_json::json!({"mediaType": made.media_type, "digest": made.digest, "size": made.size,
            "annotations": {"org.opencontainers.image.ref.name": name}}),
        );
        let index = serde_json::json!({"schemaVersion": 2, "manifests": self.named});
        std::fs::write(self.dir.join("index.json"), index.to_string()).unwrap();
    }
}

/// Pushes the layout's image `name` with every platform to `dest` (`docker://…`), digests kept.
fn push_all(layout: &Layout, name: &str, dest: &str, cert_dir: &Path) {
    skopeo_ok(&[
        "copy",
        "-q",
        "--all",
        "--preserve-digests",
        "--dest-cert-dir",
        &cert_dir.display().to_string(),
        &format!("oci:{}:{name}", layout.dir.display()),
        dest,
    ]);
}

/// What `reference` (`docker://…`) serves, raw, as skopeo reads it: the manifest and its digest.
fn raw_manifest(reference: &str, cert_dir: &Path) -> (serde_json::Value, String) {
    let out = skopeo(&[
        "inspect",
        "--raw",
        "--cert-dir",
        &cert_dir.display().to_string(),
        reference,
    ]);
    assert!(out.status.success(), "{reference}: {}", text(&out.stderr));
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        format!("sha256:{}", sha256(&out.stdout)),
    )
}

/// The digest of what `reference` serves, from its raw bytes.
fn raw_digest(reference: &str, cert_dir: &Path) -> String {
    raw_manifest(reference, cert_dir).1
}

/// Whether the appliance holds blob `digest` in `repository` (HEAD, as a client asks).
fn has_blob(app: &Appliance, repository: &str, digest: &str) -> bool {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-I", "--cacert"])
        .arg(app.config_dir().join("ca.crt"))
        .arg(format!("https://{}/v2/{repository}/blobs/{digest}", app.registry()))
        .output()
        .unwrap();
    text(&out.stdout) == "200"
}

/// The repositories the appliance's catalog lists.
fn catalog(app: &Appliance) -> Vec<String> {
    let out = Command::new("curl")
        .args(["-sf", "--cacert"])
        .arg(app.config_dir().join("ca.crt"))
        .arg(format!("https://{}/v2/_catalog", app.registry()))
        .output()
        .unwrap();
    assert!(out.status.success(), "catalog: {}", text(&out.stderr));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    value["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

/// Checks with skopeo that `site` serves `path` (`repo:tag` under the upstream's name) with the digest
/// the source serves, every child of an index too, and that every blob copies out intact.
fn assert_same(source: &Appliance, site: &Appliance, name: &str, made: &Made) {
    let path = format!("{}/{name}", source.registry().replace(':', "_"));
    let at_site = site.reference(&path);
    let upstream = raw_digest(&source.reference(name), &source.config_dir());
    assert_eq!(upstream, made.digest, "the source holds {name} as made");
    let (value, served) = raw_manifest(&at_site, &site.config_dir());
    assert_eq!(served, upstream, "{name} at the site");
    for child in value["manifests"].as_array().into_iter().flatten() {
        let digest = child["digest"].as_str().unwrap();
        let repo = path.rsplit_once(':').unwrap().0;
        assert_eq!(
            raw_digest(&format!("{}@{digest}", site.reference(repo)), &site.config_dir()),
            digest,
            "{name}: the {} image",
            child["platform"]["architecture"]
        );
    }
    // skopeo checks every blob against its digest as it copies: every platform, every layer.
    let out = tempfile::tempdir().unwrap();
    skopeo_ok(&[
        "copy",
        "-q",
        "--all",
        "--preserve-digests",
        "--src-cert-dir",
        &site.config_dir().display().to_string(),
        &at_site,
        &format!("oci:{}:x", out.path().display()),
    ]);
    for blob in &made.blobs {
        assert!(
            out.path()
                .join("blobs/sha256")
                .join(blob.trim_start_matches("sha256:"))
                .exists(),
            "{name}: {blob} copied out"
        );
    }
}

/// A bundle's manifest.json, as `tar` reads it out.
fn bundle_manifest(bundle: &Path) -> serde_json::Value {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(bundle)
        .arg("manifest.json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The blob members of a bundle's workloads (`images/blobs/sha256/…`), as digests.
fn bundled_blobs(bundle: &Path) -> BTreeSet<String> {
    let listing = Command::new("tar").arg("-tf").arg(bundle).output().unwrap();
    text(&listing.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("images/blobs/sha256/"))
        .map(|hex| format!("sha256:{hex}"))
        .collect()
}

fn import(site: &Appliance, source: &Path) -> Run {
    Run::bin().arg("import").arg(source).config_dir(site.config_dir())
}

/// The `sent sha256:…` lines of an import's output: the blobs it uploaded.
fn sent(stdout: &str) -> BTreeSet<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("sent    "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[test]
fn workload_images_cross_the_gap_byte_for_byte_and_an_import_resumes() {
    // The connected side: a registry holding the appliance's images and the workloads'.
    let Some((source, registry_ref, nginx_ref, names)) = common::bundle_source() else {
        return;
    };
    let mut layout = Layout::new(source.tmp.path().join("layout"));
    let shared = common::random_bytes(24 << 20);
    let amd = layout.image("amd64", &[&common::random_bytes(3 << 20), &shared[..1 << 20]]);
    let arm = layout.image("arm64", &[&common::random_bytes(3 << 20)]);
    let multi = layout.index(&[("amd64", &amd), ("arm64", &arm)]);
    let app1 = layout.image("amd64", &[&shared, &common::random_bytes(24 << 20)]);
    let app2 = layout.image("amd64", &[&shared, &common::random_bytes(24 << 20)]);
    layout.name("multi", &multi);
    layout.name("app1", &app1);
    layout.name("app2", &app2);
    let source_certs = source.config_dir();
    for (name, tag) in [("multi", "lab/multi:1"), ("app1", "lab/app1:1"), ("app2", "lab/app2:1")] {
        push_all(&layout, name, &source.reference(tag), &source_certs);
    }
    let list = source.tmp.path().join("images.txt");
    let reference = |tag: &str| format!("{}/{tag}", source.registry());
    std::fs::write(
        &list,
        format!(
            "# the lab's images\n{}\n\n{}  # shares a layer with app2\n{}\n",
            reference("lab/multi:1"),
            reference("lab/app1:1"),
            reference("lab/app2:1")
        ),
    )
    .unwrap();
    let bundle = |name: &str, extra: &[&str]| {
        let path = source.tmp.path().join(name);
        Run::bin()
            .args(["bundle", "--out"])
            .arg(&path)
            .args(["--registry-image", &registry_ref, "--nginx-image", &nginx_ref, "--ca"])
            .arg(source_certs.join("ca.crt"))
            .arg("--images")
            .arg(&list)
            .args(extra)
            .run();
        path
    };
    let first = bundle("first.tar", &[]);
    // Every blob once, shared or not, each named by its content; every platform of the index.
    let all: BTreeSet<String> = [&multi, &app1, &app2].iter().flat_map(|m| m.blobs.clone()).collect();
    let held = bundled_blobs(&first);
    assert!(all.is_subset(&held), "every config and layer is in the bundle");
    let manifest = bundle_manifest(&first);
    assert_eq!(manifest["format"], 3);
    assert_eq!(manifest["workloads"][0]["digest"], multi.digest.as_str());
    assert_eq!(
        manifest["workloads"][0]["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );

    // The site: up --bundle brings the appliance up and then imports the workloads.
    let site = Appliance::new();
    Run::bin()
        .args(site.base_args())
        .arg("--bundle")
        .arg(&first)
        .stdout_has("ok   verify push/pull")
        .stdout_has("import bundle images")
        .stdout_has("3 image(s) in place")
        .run();
    for (name, made) in [("lab/multi:1", &multi), ("lab/app1:1", &app1), ("lab/app2:1", &app2)] {
        assert_same(&source, &site, name, made);
    }
    // Again: nothing is sent twice.
    let again = import(&site, &first).stdout_has("0 blob(s) to send").run();
    assert!(sent(&text(&again.stdout)).is_empty());

    // A top-up whose list holds only a new image, sharing app1's big layer: --since carries only the
    // blobs the first bundle lacks, and import links the shared one from app1's repository on the site.
    let app3 = layout.image("amd64", &[&shared, &common::random_bytes(2 << 20)]);
    layout.name("app3", &app3);
    push_all(&layout, "app3", &source.reference("lab/app3:1"), &source_certs);
    std::fs::write(&list, format!("{}\n", reference("lab/app3:1"))).unwrap();
    let arg = first.display().to_string();
    let second = bundle("second.tar", &["--since", &arg]);
    let new_blobs: BTreeSet<String> = bundled_blobs(&second)
        .into_iter()
        .filter(|b| all.contains(b) || app3.blobs.contains(b))
        .collect();
    let expected: BTreeSet<String> = app3.blobs.difference(&all).cloned().collect();
    assert_eq!(new_blobs, expected, "only the new config and layer");
    let topped = import(&site, &second)
        .stdout_has("1 image(s) in place")
        .stdout_has("1 linked between repositories")
        .run();
    assert_eq!(sent(&text(&topped.stdout)), expected, "only the new blobs are sent");
    assert_same(&source, &site, "lab/app3:1", &app3);

    // A fresh appliance: the top-up alone is refused before anything is sent.
    let Some(fresh) = serving(&[]) else { return };
    let repositories = |app: &Appliance| {
        catalog(app)
            .into_iter()
            .filter(|r| r.starts_with(&source.registry().replace(':', "_")))
            .count()
    };
    import(&fresh, &second)
        .code(2)
        .stderr_has("import the older bundle first")
        .stderr_has("Nothing was sent")
        .run();
    assert_eq!(repositories(&fresh), 0);

    // A flipped byte in a layer: refused whole before anything is pushed.
    let mut bytes = std::fs::read(&first).unwrap();
    let at = bytes
        .windows(64)
        .position(|w| w == &shared[4096..4096 + 64])
        .expect("the shared layer is in the bundle");
    bytes[at + 100] ^= 0x01;
    let flipped = source.tmp.path().join("flipped.tar");
    std::fs::write(&flipped, &bytes).unwrap();
    drop(bytes);
    import(&fresh, &flipped)
        .code(2)
        .stderr_has(format!("The bundle {} is damaged", flipped.display()))
        .stderr_has("does not match its checksum")
        .run();
    assert_eq!(repositories(&fresh), 0, "nothing was pushed from a damaged bundle");

    // kill -9 after the first blob arrived, one blob at a time; the re-run sends only the rest.
    let mut child = import(&fresh, &first)
        .args(["--jobs", "1"])
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first_sent = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.starts_with("sent "))
        .expect("a first blob is sent");
    child.kill().unwrap();
    child.wait().unwrap();
    let repo_of = |name: &str| format!("{}/{name}", source.registry().replace(':', "_"));
    let wanted: Vec<(String, String)> = [("lab/multi", &multi), ("lab/app1", &app1), ("lab/app2", &app2)]
        .iter()
        .flat_map(|(name, made)| made.blobs.iter().map(|b| (repo_of(name), b.clone())))
        .collect();
    let arrived: BTreeSet<String> = wanted
        .iter()
        .filter(|(repo, blob)| has_blob(&fresh, repo, blob))
        .map(|(_, blob)| blob.clone())
        .collect();
    assert!(
        arrived.contains(first_sent.split_whitespace().nth(1).unwrap()),
        "{first_sent} is in the registry"
    );
    assert!(
        arrived.len() < all.len(),
        "the kill landed mid-import: {} of {}",
        arrived.len(),
        all.len()
    );
    let since = log_mark();
    let resumed = import(&fresh, &first).stdout_has("3 image(s) in place").run();
    let resent: BTreeSet<String> = sent(&text(&resumed.stdout));
    assert!(resent.is_disjoint(&arrived), "a blob that had arrived was sent again");
    // The registry's own log: no upload of a blob that had arrived.
    let log = podman(&["logs", "--since", &since, &fresh.container("registry")]);
    let log = format!("{}{}", text(&log.stdout), text(&log.stderr));
    let puts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("PUT") && l.contains("/blobs/uploads/"))
        .collect();
    assert!(!puts.is_empty(), "the registry logs uploads:\n{log}");
    for blob in &arrived {
        let hex = blob.trim_start_matches("sha256:");
        assert!(!puts.iter().any(|l| l.contains(hex)), "{blob} was uploaded again");
    }
    for (name, made) in [("lab/multi:1", &multi), ("lab/app1:1", &app1), ("lab/app2:1", &app2)] {
        assert_same(&source, &fresh, name, made);
    }

    // --arch: the index keeps only that platform (rewritten, so recorded with the upstream digest too);
    // the child and its blobs stay byte for byte.
    std::fs::write(&list, format!("{}\n", reference("lab/multi:1"))).unwrap();
    let amd_only = bundle("amd64.tar", &["--arch", "amd64"]);
    let held = bundled_blobs(&amd_only);
    assert!(amd.blobs.is_subset(&held) && arm.blobs.is_disjoint(&held), "amd64 only");
    let manifest = bundle_manifest(&amd_only);
    let workload = &manifest["workloads"][0];
    assert_eq!(workload["source_digest"], multi.digest.as_str());
    assert_eq!(workload["platforms"], serde_json::json!(["linux/amd64"]));
    import(&fresh, &amd_only).args(["--prefix", "amd64-only"]).run();
    let at_site = fresh.reference(&format!(
        "amd64-only/{}/lab/multi:1",
        source.registry().replace(':', "_")
    ));
    let (index, served) = raw_manifest(&at_site, &fresh.config_dir());
    assert_eq!(served, workload["digest"].as_str().unwrap());
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(index["manifests"][0]["digest"], amd.digest.as_str());
    drop((site, fresh)); // the pods go before the image names
    drop(names);
}

/// A timestamp for `podman logs --since` (whole seconds) after everything logged so far.
fn log_mark() -> String {
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    secs.to_string()
}

#[test]
fn podman_save_archives_are_imported_and_pulled_back_as_the_same_image() {
    let Some(site) = serving(&[]) else { return };
    let image = common::NGINX_IMAGE;
    let id = text(&podman(&["image", "inspect", "--format", "{{.Id}}", image]).stdout)
        .trim()
        .to_string();
    let work = site.tmp.path();
    let docker_archive = work.join("docker-archive.tar");
    let oci_archive = work.join("oci-archive.tar");
    for (format, path) in [("docker-archive", &docker_archive), ("oci-archive", &oci_archive)] {
        let out = podman(&["save", "--format", format, "-o", &path.display().to_string(), image]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    import(&site, &docker_archive)
        .stdout_has("1 image(s) in place")
        .stdout_has(format!("{}/localhost/registry-up-test/nginx:latest", site.registry()))
        .run();
    import(&site, &oci_archive)
        .args(["--prefix", "oci"])
        .stdout_has(format!(
            "{}/oci/localhost/registry-up-test/nginx:latest",
            site.registry()
        ))
        .run();
    // Pulled back by podman: the same image (its ID is its config's digest).
    let cert_dir = site.config_dir().display().to_string();
    for path in [
        "localhost/registry-up-test/nginx:latest",
        "oci/localhost/registry-up-test/nginx:latest",
    ] {
        let name = format!("{}/{path}", site.registry());
        let _pulled = ImageNames(vec![name.clone()]);
        let out = podman(&["pull", "-q", "--cert-dir", &cert_dir, &name]);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), id, "{name} is the saved image");
    }
    // A layout with a damaged layer (same size, one byte flipped): the registry refuses that blob, the
    // import names the image and ends with 1, and the registry does not hold the damaged layer.
    let mut layout = Layout::new(work.join("damaged"));
    let layer = common::random_bytes(1 << 20);
    let made = layout.image("amd64", &[&layer]);
    layout.name("docker.io/library/damaged:1", &made);
    let hex = sha256(&layer);
    let mut flipped = layer.clone();
    flipped[1000] ^= 0x01;
    std::fs::write(layout.dir.join("blobs/sha256").join(&hex), &flipped).unwrap();
    import(&site, &layout.dir)
        .code(1)
        .stderr_has("did not arrive intact")
        .stderr_has("docker.io/library/damaged:1")
        .run();
    assert!(!has_blob(&site, "docker.io/library/damaged", &format!("sha256:{hex}")));

    // Not an image source: a clear refusal, nothing pushed.
    let junk = work.join("junk.tar");
    std::fs::write(&junk, b"not a tar at all").unwrap();
    import(&site, &junk)
        .code(2)
        .stderr_has(format!("Cannot import {}", junk.display()))
        .run();
}
