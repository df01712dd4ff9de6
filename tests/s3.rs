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

/// `up`'s arguments for `app` without --data-dir (a re-run of an appliance on S3 storage).
fn no_data_dir(app: &Appliance) -> Vec<String> {
    let mut args = app.args();
    let at = args.iter().position(|a| a == "--data-dir").unwrap();
    args.drain(at..at + 2);
    args
}

/// `up`'s arguments for `app` on S3 storage, with `endpoint`, `bucket`, region garage and key file `key`.
fn s3_args(app: &Appliance, endpoint: &str, bucket: &str, key: &Path) -> Vec<String> {
    s3_args_in(app, endpoint, bucket, "garage", key)
}

fn s3_args_in(app: &Appliance, endpoint: &str, bucket: &str, region: &str, key: &Path) -> Vec<String> {
    let mut args = no_data_dir(app);
    args.extend(
        [
            "--storage",
            "s3",
            "--s3-endpoint",
            endpoint,
            "--s3-bucket",
            bucket,
            "--s3-region",
            region,
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
    let unknown = key_file(keys.path(), "unknown", "GK0123456789abcdef01234567", &garage.secret);
    let (ro_id, ro_secret) = garage.key("read-only", &["--read"]);
    let read_only = key_file(keys.path(), "read-only", &ro_id, &ro_secret);
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let no_file = Path::new("/nonexistent/key");

    // Each bad setting: exit 2, one sentence naming it, and nothing written or started.
    let bad: [(&str, &str, &str, &Path, &str); 7] = [
        (&garage.endpoint(0), "registry", "garage", &wrong, "refuses the key"),
        (&garage.endpoint(0), "registry", "garage", &unknown, "refuses the key"),
        (
            &garage.endpoint(1),
            "no-such-bucket",
            "garage",
            &good,
            "bucket no-such-bucket does not exist",
        ),
        (
            &garage.endpoint(1),
            "registry",
            "us-east-1",
            &good,
            "signed for region us-east-1",
        ),
        (
            &garage.endpoint(2),
            "registry",
            "garage",
            &read_only,
            "may not write to bucket registry",
        ),
        (&closed, "registry", "garage", &good, "cannot be reached"),
        (
            &garage.endpoint(2),
            "registry",
            "garage",
            no_file,
            "Cannot read the S3 key",
        ),
    ];
    for (endpoint, bucket, region, key, says) in bad {
        let out = Run::bin()
            .args(s3_args_in(&app, endpoint, bucket, region, key))
            .code(2)
            .stderr_has(says)
            .run();
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(!said.contains(&garage.secret), "the secret is never printed: {said}");
        assert!(!app.config_dir().exists(), "nothing written after: {says}");
        assert!(!app.pod_exists(), "no pod after: {says}");
    }
    // A dry run asks the bucket, and writes nothing.
    Run::bin()
        .args(s3_args(&app, &garage.endpoint(0), "registry", &good))
        .arg("--dry-run")
        .stdout_has("the key")
        .run();
    assert!(!app.config_dir().exists(), "a dry run writes nothing");

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
    assert!(
        objects(&garage, 0, "registry-up-probe/").is_empty(),
        "the probe's object is gone"
    );

    // Read once: the user's file may go; a re-run with no storage flags uses the kept copy.
    let kept = std::fs::read(config.join("s3/credentials")).unwrap();
    std::fs::remove_file(&good).unwrap();
    Run::bin().args(no_data_dir(&app)).arg("--no-verify").run();
    assert_eq!(std::fs::read(config.join("s3/credentials")).unwrap(), kept);

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

    assert!(!report.to_string().contains(&garage.secret));

    // status names the storage and asks the bucket with the kept key: a key it refuses is a problem.
    Run::bin()
        .arg("status")
        .config_dir(&config)
        .stdout_has("healthy")
        .stdout_has(format!(
            "storage    S3 bucket registry at {} (region garage): answers",
            garage.endpoint(0)
        ))
        .run();
    let json = Run::bin().args(["status", "--json"]).config_dir(&config).run();
    assert!(!text(&json.stdout).contains(&garage.secret));
    std::fs::write(config.join("s3/credentials"), std::fs::read(&wrong).unwrap()).unwrap();
    Run::bin()
        .arg("status")
        .config_dir(&config)
        .code(1)
        .stdout_has("DEGRADED")
        .stdout_has("the registry's storage does not answer")
        .run();
    std::fs::write(config.join("s3/credentials"), &kept).unwrap();
    // backup and maintain work on a data folder: they refuse, saying why (gc works on a site: below).
    for command in [vec!["maintain"], vec!["backup", "--out", "/tmp/never.tar"]] {
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

    // Issue 30 §1: one bucket serves one appliance (or one site's replicas, joined with the site file): a
    // second appliance of its own is refused this one's bucket, and nothing of it is written.
    let other = Appliance::new();
    let again = key_file(keys.path(), "again", &garage.key_id, &garage.secret);
    Run::bin()
        .args(s3_args(&other, &garage.endpoint(0), "registry", &again))
        .code(2)
        .stderr_has("holds the images of another appliance")
        .stderr_has("--site")
        .run();
    assert!(!other.config_dir().join("state.json").exists() && !other.pod_exists());

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

/// `curl` over TLS trusting `ca`, as `creds` (user:password): the response's headers and body, and the
/// HTTP status.
fn curl(ca: &Path, creds: &str, method: &str, url: &str, extra: &[&str]) -> (String, String) {
    let ca = ca.display().to_string();
    let mut args = vec!["-D", "-", "--cacert", &ca, "-u", creds];
    args.extend(extra);
    common::curl(method, &args, url)
}

/// `up` for replica `b` joining with `site` (its own port, pod and folders, Garage node `endpoint`).
fn join(b: &Appliance, site: &Path, endpoint: &str) -> Run {
    let mut args = b.args();
    let at = args.iter().position(|a| a == "--data-dir").unwrap();
    args.drain(at..at + 2);
    Run::bin()
        .args(args)
        .args(["--site", &site.display().to_string(), "--s3-endpoint", endpoint])
}

/// Issue 14, item 2: a second host joins with one file and one command, and serves the same images under
/// the same trust and password; an upload begun on one replica finishes on the other; the site keeps
/// serving every image with a Garage node lost, and with a replica lost.
#[test]
fn a_replica_joins_with_one_file_and_the_site_outlives_a_node_and_a_replica() {
    let Some(a) = Appliance::e2e() else { return };
    let b = Appliance::new();
    let mut garage = Garage::start("site");
    let keys = tempfile::tempdir().unwrap();
    let good = key_file(keys.path(), "good", &garage.key_id, &garage.secret);
    // A answers on 127.0.0.1 only, so that another replica can take its port on ::1 (below).
    Run::bin()
        .args(s3_args(&a, &garage.endpoint(0), "site", &good))
        .args(["--auth", "--listen", "127.0.0.1"])
        .run();
    let password = std::fs::read_to_string(a.config_dir().join("auth/password")).unwrap();
    let creds = format!("admin:{}", password.trim());

    // A file that does not name B, or one damaged on the way: exit 2, nothing written on B. A bare file
    // name for --out is the current folder's.
    let out = Run::bin()
        .args(["site", "export", "--out", "site-1"])
        .config_dir(a.config_dir())
        .command()
        .current_dir(keys.path())
        .output()
        .unwrap();
    common::assert_exit(&out, 0, "site export --out site-1 in the current folder");
    let first = keys.path().join("site-1");
    assert_eq!(common::mode(&first), 0o600);
    let damaged = keys.path().join("damaged");
    std::fs::write(
        &damaged,
        std::fs::read_to_string(&first)
            .unwrap()
            .replacen("\"bucket\": \"site\"", "\"bucket\": \"sitf\"", 1),
    )
    .unwrap();
    let site_temps = || {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("registry-up-site-"))
            .count()
    };
    let temps = site_temps();
    for (file, says) in [(&first, "does not cover"), (&damaged, "is damaged")] {
        join(&b, file, &garage.endpoint(1)).code(2).stderr_has(says).run();
        assert!(
            !b.config_dir().exists() && !b.pod_exists(),
            "nothing on B after: {says}"
        );
    }
    // Naming B re-issues A's certificate once; the file is never overwritten.
    let site = keys.path().join("site-2");
    let export = [
        "site",
        "export",
        "--replica",
        &b.domain,
        "--out",
        &site.display().to_string(),
    ];
    Run::bin().args(export).config_dir(a.config_dir()).run();
    Run::bin()
        .args(export)
        .config_dir(a.config_dir())
        .code(2)
        .stderr_has("never overwrites")
        .run();
    let names = |app: &Appliance| {
        let out = common::command("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(app.config_dir().join("tls/server.crt"))
            .output()
            .unwrap();
        text(&out.stdout)
    };
    assert!(names(&a).contains(&b.domain), "{}", names(&a));
    // The first host's folder is no replica: --site there is refused.
    Run::bin()
        .args(["--site", &site.display().to_string(), "--domain", &b.domain])
        .config_dir(a.config_dir())
        .code(2)
        .stderr_has("not a replica of this site")
        .run();

    // B joins through another Garage node; the same CA, no CA key, the same password; no secret shown.
    let out = join(&b, &site, &garage.endpoint(1))
        .stdout_has("check site file")
        .stdout_has("with the site's password")
        .run();
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    for secret in [password.trim(), &garage.secret, "PRIVATE KEY"] {
        assert!(!said.contains(secret), "a secret shown by the join:\n{said}");
    }
    assert_eq!(site_temps(), temps, "the site's files in /tmp are gone");
    let ca = |app: &Appliance| std::fs::read(app.config_dir().join("ca.crt")).unwrap();
    assert_eq!(ca(&a), ca(&b), "one trust for the site");
    assert!(
        !b.config_dir().join("ca/ca.key").exists(),
        "the CA key stays on the first host"
    );
    let pulled = keys.path().join("pulled");
    let pull = |app: &Appliance, image: &str| {
        common::skopeo_copy(
            &app.reference(image),
            &format!("oci:{}:{image}", pulled.display()),
            &app.config_dir(),
            Some(&creds),
        )
    };
    let pushed = a.push(&common::image_archives()[1], "team/nginx:1", Some(&creds));
    assert_eq!(pull(&b, "team/nginx:1"), pushed, "pushed through A, pulled through B");
    b.assert_anonymous_push_refused(&common::image_archives()[1], "team/anon:1");

    // An upload begun on A (POST), continued on B (PATCH to A's upload URL, on B's address) and finished
    // there (PUT): the upload's state, signed with the shared http.secret, travels between replicas.
    let a_ca = a.config_dir().join("ca.crt");
    let b_ca = b.config_dir().join("ca.crt");
    let (said, code) = curl(
        &a_ca,
        &creds,
        "POST",
        &format!("https://{}/v2/team/upload/blobs/uploads/", a.registry()),
        &[],
    );
    assert_eq!(code, "202", "{said}");
    let location = |said: &str| {
        let at = said
            .lines()
            .find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: ")))
            .unwrap()
            .trim();
        at.split_once("/v2/").map(|(_, p)| format!("/v2/{p}")).unwrap()
    };
    let path = location(&said);
    let blob = common::random_bytes(8192);
    let (head, tail) = blob.split_at(4096);
    let part = |name: &str, bytes: &[u8]| {
        let file = keys.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        format!("@{}", file.display())
    };
    let octets = "Content-Type: application/octet-stream";
    let (said, code) = curl(
        &b_ca,
        &creds,
        "PATCH",
        &format!("https://{}{path}", b.registry()),
        &["-H", octets, "--data-binary", &part("head", head)],
    );
    assert_eq!(code, "202", "B took the first half of A's upload: {said}");
    let path = location(&said);
    let digest = format!("sha256:{}", common::sha256(&blob));
    let (said, code) = curl(
        &b_ca,
        &creds,
        "PUT",
        &format!("https://{}{path}&digest={digest}", b.registry()),
        &["-H", octets, "--data-binary", &part("tail", tail)],
    );
    assert_eq!(code, "201", "B finished A's upload: {said}");
    // 201: the registry hashed both halves, across replicas, to the digest given.
    let (said, code) = curl(
        &a_ca,
        &creds,
        "HEAD",
        &format!("https://{}/v2/team/upload/blobs/{digest}", a.registry()),
        &["-I"],
    );
    assert_eq!(code, "200", "A serves the blob B committed: {said}");
    assert!(said.to_ascii_lowercase().contains("content-length: 8192"), "{said}");

    for app in [&a, &b] {
        let (code, report) = verify_json(app, &["--deep"]);
        assert_eq!(code, 0, "{}: {report:#}", app.domain);
    }

    // A Garage node lost: both replicas push and pull on.
    garage.kill(2);
    let second = b.push(&common::image_archives()[0], "team/registry:1", Some(&creds));
    assert_eq!(pull(&a, "team/registry:1"), second);
    let third = a.push(&common::image_archives()[0], "team/registry:2", Some(&creds));
    assert_eq!(pull(&b, "team/registry:2"), third);

    // A newer file (another replica named) re-joins B: B's own port and Garage node are kept.
    let newer = keys.path().join("site-3");
    Run::bin()
        .args([
            "site",
            "export",
            "--replica",
            "c.registry-up.test",
            "--out",
            &newer.display().to_string(),
        ])
        .config_dir(a.config_dir())
        .run();
    Run::bin()
        .args(["--site", &newer.display().to_string(), "--domain", &b.domain])
        .config_dir(b.config_dir())
        .run();
    assert!(names(&b).contains("c.registry-up.test"), "{}", names(&b));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.config_dir().join("state.json")).unwrap()).unwrap();
    assert_eq!(state["port"].as_u64(), Some(u64::from(b.port)));
    assert_eq!(state["s3"]["endpoint"].as_str(), Some(garage.endpoint(1).as_str()));

    // A replica's verify checks that replica wherever its name leads: C answers only on ::1, on A's port,
    // and C's name resolves to 127.0.0.1, where A answers (a name shared by replicas behind DNS, in small).
    // C uses A's Garage node, so both serve the very same config: only where the requests land tells them
    // apart. Its round trip must reach C's registry, not A's.
    let c = Appliance::new();
    let for_c = keys.path().join("site-4");
    Run::bin()
        .args([
            "site",
            "export",
            "--replica",
            &c.domain,
            "--out",
            &for_c.display().to_string(),
        ])
        .config_dir(a.config_dir())
        .run();
    let mut args = no_data_dir(&c);
    let at = args.iter().position(|x| x == "--port").unwrap();
    args[at + 1] = a.port.to_string();
    Run::bin()
        .args(args)
        .args([
            "--site",
            &for_c.display().to_string(),
            "--s3-endpoint",
            &garage.endpoint(0),
        ])
        .args(["--listen", "::1"])
        .run();
    let verify_requests = |app: &Appliance| {
        let out = common::podman(&["logs", &app.container("registry")]);
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        said.lines().filter(|l| l.contains("registry-up/verify")).count()
    };
    let (on_a, on_c) = (verify_requests(&a), verify_requests(&c));
    let (code, report) = verify_json(&c, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert!(verify_requests(&c) > on_c, "C's own registry served C's round trip");
    assert_eq!(verify_requests(&a), on_a, "A's registry saw none of C's round trip");
    drop(c);

    // Replica A lost: B serves every image.
    Run::bin().arg("down").config_dir(a.config_dir()).run();
    assert!(!a.pod_exists());
    for (image, digest) in [
        ("team/nginx:1", &pushed),
        ("team/registry:1", &second),
        ("team/registry:2", &third),
    ] {
        assert_eq!(pull(&b, image), *digest, "{image} through B alone");
    }
    let (code, report) = verify_json(&b, &[]);
    assert_eq!(code, 0, "{report:#}");
}

/// Issue 14, item 3: gc on a site holds every replica read-only together — an independent client sees
/// replica B refuse a write and serve a pull while A's gc runs — frees from the bucket a blob no manifest
/// references, and keeps every image. While a recorded replica cannot be reached it refuses, naming it,
/// and changes nothing. A gc killed mid-way leaves the site held; `up` on its host ends the hold.
#[test]
fn gc_holds_every_replica_read_only_together_or_names_the_one_it_cannot_reach() {
    let Some(a) = Appliance::e2e() else { return };
    let b = Appliance::new();
    let garage = Garage::start("gcsite");
    let keys = tempfile::tempdir().unwrap();
    let good = key_file(keys.path(), "good", &garage.key_id, &garage.secret);
    Run::bin()
        .args(s3_args(&a, &garage.endpoint(0), "gcsite", &good))
        .arg("--auth")
        .run();
    let password = std::fs::read_to_string(a.config_dir().join("auth/password")).unwrap();
    let creds = format!("admin:{}", password.trim());
    let site = keys.path().join("site");
    Run::bin()
        .args(["site", "export", "--replica", &b.domain, "--out"])
        .arg(&site)
        .config_dir(a.config_dir())
        .run();
    join(&b, &site, &garage.endpoint(1)).run();
    // A replica's record, read by key through another Garage node (Garage's reads by key follow every
    // write at once; its listings were seen to lag a delete made through another node, in CI).
    let recorded = |domain: &str| {
        let (said, code) = garage.curl(0, "HEAD", &format!("/registry-up/replicas/{domain}"), &["-I"]);
        assert!(code == "200" || code == "404", "{code} {said}");
        code == "200"
    };
    for app in [&a, &b] {
        assert!(recorded(&app.domain), "{} recorded", app.domain);
    }

    let kept = a.push(&common::image_archives()[1], "team/keep:1", Some(&creds));
    // Garbage: a blob no manifest references, uploaded through B.
    let b_ca = b.config_dir().join("ca.crt");
    let junk = common::random_bytes(8192);
    let junk_digest = format!("sha256:{}", common::sha256(&junk));
    let junk_file = keys.path().join("junk");
    std::fs::write(&junk_file, &junk).unwrap();
    let (said, code) = curl(
        &b_ca,
        &creds,
        "POST",
        &format!("https://{}/v2/team/junk/blobs/uploads/", b.registry()),
        &[],
    );
    assert_eq!(code, "202", "{said}");
    let upload = said
        .lines()
        .find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: ")))
        .unwrap()
        .trim()
        .to_string();
    let (said, code) = curl(
        &b_ca,
        &creds,
        "PUT",
        &format!("{upload}&digest={junk_digest}"),
        &[
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &format!("@{}", junk_file.display()),
        ],
    );
    assert_eq!(code, "201", "{said}");
    let in_bucket = |digest: &str| garage.curl(0, "HEAD", &format!("/{}", blob_key(digest)), &["-I"]).1 == "200";
    assert!(in_bucket(&junk_digest));
    // A write that leaves nothing behind: the DELETE of a manifest that is not there. 404 when B takes
    // writes, 405 with gc's message while the site is held.
    let no_manifest = format!("sha256:{}", "0".repeat(64));
    let b_write = || {
        curl(
            &b_ca,
            &creds,
            "DELETE",
            &format!("https://{}/v2/team/keep/manifests/{no_manifest}", b.registry()),
            &[],
        )
    };
    let held = |said: &str, code: &str| code == "405" && said.contains("registry-up gc collects garbage on this site");
    let hold_record = || garage.curl(0, "GET", "/registry-up/gc-hold.json", &[]).1;

    // A recorded replica that is gone: gc refuses, naming it, and changes nothing.
    let (said, code) = garage.curl(
        0,
        "PUT",
        "/registry-up/replicas/gone.registry-up.test",
        &[
            "--data-binary",
            r#"{"domain":"gone.registry-up.test","port":1,"version":"0.1.0"}"#,
        ],
    );
    assert_eq!(code, "200", "{said}");
    Run::bin()
        .arg("gc")
        .config_dir(a.config_dir())
        .code(3)
        .stderr_has("gone.registry-up.test")
        .stderr_has("nothing was changed")
        .stderr_has("registry-up site forget NAME")
        .run();
    assert!(in_bucket(&junk_digest), "the refused gc deleted nothing");
    assert_eq!(hold_record(), "404", "the refused gc left no hold");
    let (said, code) = b_write();
    assert_eq!(code, "404", "B takes writes after the refused gc: {said}");
    Run::bin()
        .args(["gc", "--dry-run"])
        .config_dir(a.config_dir())
        .stdout_has(&junk_digest)
        .stdout_has("gone.registry-up.test:1 cannot be reached")
        .stdout_has("Nothing was changed")
        .run();
    Run::bin()
        .args(["site", "forget", "gone.registry-up.test"])
        .config_dir(a.config_dir())
        .stdout_has("Removed the record of replica gone.registry-up.test")
        .run();
    assert!(!recorded("gone.registry-up.test"));

    // gc on A while an independent client watches B: B refuses a write and serves a pull meanwhile.
    let spawn_gc = || {
        Run::bin()
            .arg("gc")
            .config_dir(a.config_dir())
            .command()
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let wait_held = |gc: &mut std::process::Child| {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < until {
            let (said, code) = b_write();
            if held(&said, &code) {
                return true;
            }
            assert_eq!(code, "404", "B before the hold: {said}");
            if gc.try_wait().unwrap().is_some() {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        false
    };
    let mut gc = spawn_gc();
    let seen = wait_held(&mut gc);
    let pull_during = curl(
        &b_ca,
        &creds,
        "GET",
        &format!("https://{}/v2/team/keep/manifests/1", b.registry()),
        &["-H", "Accept: application/vnd.oci.image.manifest.v1+json"],
    );
    let (still, still_code) = b_write();
    let out = gc.wait_with_output().unwrap();
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(seen, "B never refused a write during A's gc:\n{said}");
    assert_eq!(pull_during.1, "200", "B serves pulls while held: {}", pull_during.0);
    assert!(
        held(&still, &still_code),
        "the pull was made while held: {still_code} {still}"
    );
    assert_eq!(out.status.code(), Some(0), "{said}");
    for step in ["ok   read-only together", "ok   collect", "ok   read-write", "gc freed"] {
        assert!(said.contains(step), "no '{step}' in:\n{said}");
    }
    assert!(
        !in_bucket(&junk_digest),
        "the unreferenced blob is gone from the bucket"
    );
    assert_eq!(hold_record(), "404");
    let (said, code) = b_write();
    assert_eq!(code, "404", "B takes writes again: {said}");
    let pulled = keys.path().join("pulled");
    let pulled_digest = common::skopeo_copy(
        &b.reference("team/keep:1"),
        &format!("oci:{}:keep", pulled.display()),
        &b.config_dir(),
        Some(&creds),
    );
    assert_eq!(pulled_digest, kept, "the kept image, whole, through B");
    for app in [&a, &b] {
        let (code, report) = verify_json(app, &["--deep"]);
        assert_eq!(code, 0, "{}: {report:#}", app.domain);
    }

    // A write without the login gets the registry's challenge, once, through the hold check.
    let out = common::command("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "-X", "POST", "--cacert"])
        .arg(&b_ca)
        .arg(format!("https://{}/v2/team/junk/blobs/uploads/", b.registry()))
        .output()
        .unwrap();
    let headers = text(&out.stdout).to_ascii_lowercase();
    assert!(headers.starts_with("http/1.1 401"), "{headers}");
    assert_eq!(headers.matches("www-authenticate: basic").count(), 1, "{headers}");
    // A replica that runs is not forgotten.
    Run::bin()
        .args(["site", "forget", &b.domain])
        .config_dir(a.config_dir())
        .code(2)
        .stderr_has("still answers")
        .run();

    // A gc killed while it holds the site: the hold stays, another replica's gc refuses naming it, and
    // gc on A again takes it over and ends it.
    let kill_while_held = || {
        let mut gc = spawn_gc();
        assert!(wait_held(&mut gc), "the gc held the site");
        gc.kill().unwrap();
        gc.wait().unwrap();
        let (said, code) = b_write();
        assert!(held(&said, &code), "still held after the kill: {code} {said}");
    };
    kill_while_held();
    Run::bin()
        .arg("gc")
        .config_dir(b.config_dir())
        .code(3)
        .stderr_has(format!("gc on {} since", a.domain))
        .run();
    Run::bin()
        .arg("gc")
        .config_dir(a.config_dir())
        .stdout_has("ok   read-write")
        .run();
    let (said, code) = b_write();
    assert_eq!(code, "404", "B takes writes once A's next gc ended: {said}");
    // Killed again: `up` on A ends the hold.
    kill_while_held();
    Run::bin()
        .args(no_data_dir(&a))
        .arg("--auth")
        .stdout_has("ended an interrupted gc")
        .run();
    let (said, code) = b_write();
    assert_eq!(code, "404", "B takes writes once A's up ended the hold: {said}");

    // A replica that leaves the site takes its record with it.
    Run::bin()
        .args(["down", "--purge", "--yes"])
        .config_dir(b.config_dir())
        .stdout_has("Removed this replica's record")
        .run();
    assert!(!recorded(&b.domain));
    // …and gc no longer waits for it (a listing that still names it is checked against the record itself).
    let out = Run::bin().args(["gc", "--dry-run"]).config_dir(a.config_dir()).run();
    assert!(!text(&out.stdout).contains(&b.domain), "{}", text(&out.stdout));
}
