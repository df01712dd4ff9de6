//! S3 storage on a real Garage cluster (issue 14): the cluster itself, three nodes on loopback with
//! replication factor 3, proven with an independent S3 client (curl's SigV4 signing); then an appliance
//! on it (`up --storage s3`), checked with skopeo through the proxy and with curl in the bucket.

mod common;

use std::path::Path;

use common::garage::Garage;
use common::{assert_check, text, verify_json, Appliance, Run};

/// A credentials file (AWS format) for `id`/`secret`, 0600, in `dir`.
fn key_file(dir: &Path, name: &str, id: &str, secret: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("[default]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// `up`'s arguments for `app` on S3 storage (no --data-dir), with `endpoint`, `bucket` and key file `key`.
fn s3_args(app: &Appliance, endpoint: &str, bucket: &str, key: &Path) -> Vec<String> {
    let mut args = app.args();
    let at = args.iter().position(|a| a == "--data-dir").unwrap();
    args.drain(at..at + 2);
    args.extend(
        [
            "--storage",
            "s3",
            "--s3-endpoint",
            endpoint,
            "--s3-bucket",
            bucket,
            "--s3-region",
            "garage",
            "--s3-credentials",
        ]
        .map(String::from),
    );
    args.push(key.display().to_string());
    args
}

/// The keys below `prefix` in the bucket, listed through node `node` by curl.
fn objects(garage: &Garage, node: usize, prefix: &str) -> Vec<String> {
    // Sorted and encoded as SigV4 signs them: curl signs the query as written.
    let prefix = prefix.replace('/', "%2F");
    let (body, code) = garage.curl(node, "GET", &format!("?list-type=2&max-keys=1000&prefix={prefix}"), &[]);
    assert_eq!(code, "200", "{body}");
    assert!(!body.contains("<IsTruncated>true"), "more than one page: {body}");
    body.split("<Key>")
        .skip(1)
        .filter_map(|k| k.split_once("</Key>").map(|(k, _)| k.to_string()))
        .collect()
}

/// Where the storage driver keeps blob `sha256:HEX` in the bucket.
fn blob_key(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap();
    format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_three_node_garage_serves_its_bucket_from_any_node_and_with_one_node_lost() {
    if !common::e2e() {
        return;
    }
    let mut garage = Garage::start("registry");
    let one = hex(&common::random_bytes(64));
    let (said, code) = garage.curl(0, "PUT", "/probe/one", &["--data-binary", &one]);
    assert_eq!(code, "200", "PUT through node 0: {said}");
    assert_eq!(garage.curl(2, "GET", "/probe/one", &[]), (one.clone(), "200".into()));

    let (said, code) = garage.curl_as(0, (&garage.key_id, "wrong"), "GET", "/registry/probe/one", &[]);
    assert_eq!(code, "403", "a wrong secret: {said}");
    let (said, code) = garage.curl_as(1, (&garage.key_id, &garage.secret), "GET", "/no-such-bucket/x", &[]);
    assert!(said.contains("NoSuchBucket"), "a missing bucket ({code}): {said}");

    garage.kill(1);
    let two = hex(&common::random_bytes(64));
    let (said, code) = garage.curl(2, "PUT", "/probe/two", &["--data-binary", &two]);
    assert_eq!(code, "200", "PUT with node 1 lost: {said}");
    assert_eq!(garage.curl(0, "GET", "/probe/two", &[]), (two, "200".into()));
    assert_eq!(garage.curl(0, "GET", "/probe/one", &[]), (one, "200".into()));
}

/// Issue 14, item 1: bad storage settings stop `up` before anything is written; good ones give an
/// appliance whose images live in the bucket (read back there by curl), which verify --deep proves and
/// cleans in the bucket, status names, gc and backup refuse, and which keeps serving with a Garage node
/// lost.
#[test]
fn an_appliance_on_garage_keeps_its_images_in_the_bucket_and_survives_a_lost_node() {
    let Some(app) = Appliance::e2e() else { return };
    let mut garage = Garage::start("registry");
    let keys = tempfile::tempdir().unwrap();
    let good = key_file(keys.path(), "good", &garage.key_id, &garage.secret);
    let wrong = key_file(keys.path(), "wrong", &garage.key_id, &"0".repeat(64));
    let closed = format!("http://127.0.0.1:{}", common::free_port());

    // Each bad setting: exit 2, one sentence naming it, and nothing written or started.
    let bad: [(&str, &str, &Path, &str); 4] = [
        (&garage.endpoint(0), "registry", &wrong, "refuses the key"),
        (
            &garage.endpoint(1),
            "no-such-bucket",
            &good,
            "The bucket no-such-bucket does not exist",
        ),
        (&closed, "registry", &good, "cannot be reached"),
        (
            &garage.endpoint(2),
            "registry",
            Path::new("/nonexistent/key"),
            "Cannot read the S3 key",
        ),
    ];
    for (endpoint, bucket, key, says) in bad {
        let out = Run::bin()
            .args(s3_args(&app, endpoint, bucket, key))
            .code(2)
            .stderr_has(says)
            .run();
        assert!(
            !text(&out.stderr).contains(&garage.secret),
            "the secret is never printed"
        );
        assert!(!app.config_dir().exists(), "nothing written after: {says}");
        assert!(!app.pod_exists(), "no pod after: {says}");
    }

    let out = Run::bin()
        .args(s3_args(&app, &garage.endpoint(0), "registry", &good))
        .stdout_has("check S3 storage")
        .stdout_has("S3 bucket registry at")
        .run();
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!said.contains(&garage.secret), "the secret is never printed:\n{said}");
    // The key is in the registry's config and the kept copy (0600), nowhere else; nothing on a data folder.
    let config = app.config_dir();
    for rel in ["registry/config.yml", "s3/credentials"] {
        assert_eq!(common::mode(&config.join(rel)), 0o600, "{rel}");
        assert!(
            std::fs::read_to_string(config.join(rel))
                .unwrap()
                .contains(&garage.secret),
            "{rel}"
        );
    }
    let pod_yaml = std::fs::read_to_string(config.join("registry-pod.yaml")).unwrap();
    assert!(
        !pod_yaml.contains(&garage.secret) && !pod_yaml.contains("registry-data"),
        "{pod_yaml}"
    );
    let args = app.inspect(&app.container("registry"), "{{json .Config.Cmd}} {{json .Args}}");
    assert!(!args.contains(&garage.secret), "{args}");
    assert!(!app.data_dir().exists(), "no data folder with S3 storage");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(config.join("state.json")).unwrap()).unwrap();
    assert_eq!(
        (state["format"].as_u64(), state["s3"]["bucket"].as_str()),
        (Some(2), Some("registry"))
    );
    assert!(!state.to_string().contains(&garage.secret));

    // A push lands in the bucket: curl reads the manifest's own object back, through another node.
    let pushed = app.push(&common::image_archives()[1], "site/nginx:1", None);
    assert_eq!(app.digest("site/nginx:1", None), pushed);
    let (manifest, code) = garage.curl(2, "GET", &format!("/{}", blob_key(&pushed)), &[]);
    assert_eq!(code, "200", "the manifest is an object in the bucket: {manifest}");
    assert_eq!(format!("sha256:{}", common::sha256(manifest.as_bytes())), pushed);

    // verify --deep: green, and its own blobs are gone from the bucket, not only unlinked.
    let before = objects(&garage, 1, "docker/registry/v2/blobs/");
    let (code, report) = verify_json(&app, &["--deep"]);
    assert_eq!(code, 0, "{report:#}");
    assert_check(
        &report,
        "cleanup",
        "pass",
        &["removed their data", "from S3 bucket registry at"],
    );
    assert_check(&report, "deep", "pass", &[]);
    assert!(
        !report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "storage"),
        "no free-space check of a folder the registry does not use: {report:#}"
    );
    assert_eq!(
        objects(&garage, 1, "docker/registry/v2/blobs/"),
        before,
        "verify left no object"
    );

    // status names the storage and asks the bucket; gc and backup refuse, saying why.
    Run::bin()
        .arg("status")
        .config_dir(&config)
        .stdout_has("healthy")
        .stdout_has(format!(
            "storage    S3 bucket registry at {} (region garage): answers",
            garage.endpoint(0)
        ))
        .run();
    for command in [vec!["gc"], vec!["backup", "--out", "/tmp/never.tar"]] {
        Run::bin()
            .args(&command)
            .config_dir(&config)
            .code(2)
            .stderr_has("this appliance keeps them in S3 bucket registry")
            .run();
    }

    // A storage node lost: pushes and pulls go on, and verify stays green.
    garage.kill(1);
    let second = app.push(&common::image_archives()[0], "site/registry:1", None);
    assert_eq!(app.digest("site/registry:1", None), second);
    assert_eq!(app.digest("site/nginx:1", None), pushed);
    let pulled = keys.path().join("pulled");
    common::skopeo_copy(
        &app.reference("site/nginx:1"),
        &format!("oci:{}", pulled.display()),
        &config,
        None,
    );
    let (code, report) = verify_json(&app, &[]);
    assert_eq!(code, 0, "{report:#}");

    // down --purge removes the appliance's files and leaves the shared bucket's images.
    Run::bin()
        .args(["down", "--purge", "--yes"])
        .config_dir(&config)
        .stdout_has("The images stay in S3 bucket registry")
        .run();
    assert!(!config.join("s3").exists() && !config.join("state.json").exists());
    let (_, code) = garage.curl(0, "GET", &format!("/{}", blob_key(&pushed)), &[]);
    assert_eq!(code, "200", "the bucket keeps the images");
}
