//! End-to-end fixture: a real appliance on real Podman, with everything it makes removed again.
//!
//! - Stand-in images are built once per run from Debian packages (tests/images/build.sh) and loaded from
//!   their archives with `--image-archive`, as an air-gapped user would.
//! - Each appliance gets a unique pod name, domain, port and temp folder, so tests run in parallel.
//! - The domain resolves through a scoped /etc/hosts line tagged with this process's PID; it is removed
//!   on drop, and lines and pods left by a crashed earlier run (dead PID) are removed on first use.
//! - Podman runs with the test containers.conf (CONTAINERS_CONF), never /etc/containers.
//! - Tiers: every test that needs root or Podman asks [`e2e`] first, so a plain `cargo test` as an ordinary
//!   user runs the rest and skips those, saying so, while `make test` requires them. A test that needs an
//!   appliance starts with `let Some(app) = Appliance::e2e() else { return };` (or [`serving`]); any other
//!   with `if !common::e2e() { return; }`.
#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Once, OnceLock};

pub const BIN: &str = env!("CARGO_BIN_EXE_registry-up");
const HOSTS: &str = "/etc/hosts";
const HOSTS_TAG: &str = "# registry-up-e2e pid=";
const POD_PREFIX: &str = "ru-e2e-";
/// The registry stand-in laid out like the official 3.x image (the default).
pub const REGISTRY_IMAGE: &str = "localhost/registry-up-test/registry:latest";
/// The same registry laid out like the official 2.x image (entrypoint script, /etc/docker/registry).
pub const REGISTRY_2X_IMAGE: &str = "localhost/registry-up-test/registry-2x:latest";
pub const NGINX_IMAGE: &str = "localhost/registry-up-test/nginx:latest";

/// Whether this process runs the end-to-end tests: they need root (Podman rootful, /etc/hosts, test users,
/// booted guests). As another user they are skipped with one line per test binary, written past the test
/// harness's capture so it is seen; with `REGISTRY_UP_E2E=require` (what `make test` sets) a skip is a
/// failure instead, so the full run can never pass with tests left out.
pub fn e2e() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("REGISTRY_UP_E2E").is_some_and(|v| v == "require") {
        panic!(
            "the end-to-end tests need root and Podman (they run Podman rootful, edit /etc/hosts, add users and \
             boot guests): run them with `sudo make test`"
        );
    }
    static SAID: Once = Once::new();
    SAID.call_once(|| {
        // Straight to the process's stderr: eprintln! would be captured, and shown only for failures.
        let _ = writeln!(
            std::io::stderr(),
            "registry-up: skipping the end-to-end tests in this binary (they need root and Podman): run them \
             with `sudo make test` (the README's test command), which fails if any is skipped."
        );
    });
    false
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn containers_conf() -> PathBuf {
    repo().join("tests/fixtures/containers.conf")
}

/// A command with the test Podman configuration.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("CONTAINERS_CONF", containers_conf());
    cmd
}

pub fn podman(args: &[&str]) -> Output {
    command("podman").args(args).output().expect("podman runs")
}

/// SHA-256 of `data` as lowercase hex.
pub fn sha256(data: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// An OCI image layout in `dir` with one layer holding `layer` (any bytes; the media type says tar), for
/// `skopeo copy oci:DIR …`. Returns `dir`.
pub fn oci_layout(dir: &Path, layer: &[u8]) -> PathBuf {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let hex = sha256(data);
        std::fs::write(blobs.join(&hex), data).unwrap();
        (format!("sha256:{hex}"), data.len())
    };
    let (layer_digest, layer_size) = put(layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]}
    }))
    .unwrap();
    let (config_digest, config_size) = put(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}]
    }))
    .unwrap();
    let (manifest_digest, manifest_size) = put(&manifest);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest_size}]
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    dir.to_path_buf()
}

/// `n` fresh random bytes (/dev/urandom): content no other test's image shares.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .unwrap();
    bytes
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Holds an exclusive flock on `path` while alive.
pub struct FileLock(std::fs::File);

impl FileLock {
    pub fn new(path: &Path) -> Self {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .expect("lock file opens");
        // SAFETY: a valid open file descriptor.
        assert_eq!(
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) },
            0,
            "flock {}",
            path.display()
        );
        FileLock(file)
    }
}

pub fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Builds the stand-in image archives into `dir` with `tag` once per run (make test-images builds them
/// ahead; this covers a plain `cargo test`). Concurrent test processes wait on a lock.
/// Returns [registry (3.x layout), nginx, registry (2.x layout)].
fn built_archives(dir: PathBuf, tag: &str) -> [PathBuf; 3] {
    let archives = [
        dir.join("registry.tar"),
        dir.join("nginx.tar"),
        dir.join("registry-2x.tar"),
    ];
    std::fs::create_dir_all(&dir).unwrap();
    let _lock = FileLock::new(&dir.join(".lock"));
    if !archives.iter().all(|a| a.is_file()) {
        let out = command(repo().join("tests/images/build.sh"))
            .arg(&dir)
            .arg(tag)
            .output()
            .expect("build.sh runs");
        assert_exit(&out, 0, "building the stand-in images");
    }
    archives
}

fn all_archives() -> &'static [PathBuf; 3] {
    static ARCHIVES: OnceLock<[PathBuf; 3]> = OnceLock::new();
    ARCHIVES.get_or_init(|| built_archives(repo().join("target/test-images"), "latest"))
}

/// Archives of the stand-in images tagged `latest`: [registry (3.x layout), nginx].
pub fn image_archives() -> &'static [PathBuf; 2] {
    static TWO: OnceLock<[PathBuf; 2]> = OnceLock::new();
    TWO.get_or_init(|| {
        let [registry, nginx, _] = all_archives().clone();
        [registry, nginx]
    })
}

/// The archive of the registry stand-in laid out like the official 2.x image ([`REGISTRY_2X_IMAGE`]).
pub fn registry_2x_archive() -> &'static Path {
    &all_archives()[2]
}

/// The same stand-ins built again and tagged `v2` (other image IDs): the upgrade target.
pub fn image_archives_v2() -> &'static [PathBuf; 2] {
    static ARCHIVES: OnceLock<[PathBuf; 2]> = OnceLock::new();
    ARCHIVES.get_or_init(|| {
        let [registry, nginx, _] = built_archives(repo().join("target/test-images/v2"), "v2");
        [registry, nginx]
    })
}

/// Removes what a crashed earlier run of these tests left: pods and hosts lines of dead PIDs.
fn sweep_leftovers() {
    static SWEPT: OnceLock<()> = OnceLock::new();
    SWEPT.get_or_init(|| {
        assert!(
            unsafe { libc::geteuid() } == 0,
            "the end-to-end tests need root (they run Podman rootful and edit /etc/hosts): start the test with \
             `let Some(app) = Appliance::e2e() else {{ return }};`"
        );
        let out = podman(&["pod", "ps", "--format", "{{.Name}}"]);
        for name in text(&out.stdout).lines() {
            let Some(rest) = name.strip_prefix(POD_PREFIX) else {
                continue;
            };
            let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !pid_alive(p)) {
                remove_pod(name);
            }
        }
        // Socket volumes of dead runs' pods that were removed some other way.
        let out = podman(&["volume", "ls", "--format", "{{.Name}}"]);
        for name in text(&out.stdout).lines() {
            let pid = name
                .strip_prefix(POD_PREFIX)
                .and_then(|r| r.split('-').next()?.parse::<u32>().ok());
            if pid.is_some_and(|p| !pid_alive(p)) && name.ends_with("-socket") {
                podman(&["volume", "rm", "-f", name]);
            }
        }
        // Before any test of this process has a line: the only moment the file may shrink.
        edit_hosts(
            |line| {
                line.split(HOSTS_TAG)
                    .nth(1)
                    .and_then(|p| p.split_whitespace().next()?.parse::<u32>().ok())
                    .is_some_and(|p| !pid_alive(p))
            },
            None,
            true,
        );
    });
}

/// A line `edit_hosts` left where it took one out: the same length, so no other line moves.
const BLANKED: &str = "#~";

/// Edits /etc/hosts in place (it may be a bind mount, so no rename), under a lock shared by all test
/// processes, without a moment where another test's line is missing: a dropped line is overwritten with a
/// blank line of the same length (nothing after it moves, and the file is never truncated), and an added
/// line is appended. A client resolving a name meanwhile (skopeo re-reads the file when it changes) never
/// sees an empty or shifted file. `compact` removes the blank lines (before any test of this process has a
/// line); they also go when the last test line does.
fn edit_hosts(drop: impl Fn(&str) -> bool, add: Option<&str>, compact: bool) {
    use std::os::unix::fs::FileExt;
    let _lock = FileLock::new(Path::new("/tmp/registry-up-e2e-hosts.lock"));
    let current = std::fs::read_to_string(HOSTS).unwrap_or_default();
    let blank = |line: &str| format!("{BLANKED}{}", " ".repeat(line.len().saturating_sub(BLANKED.len())));
    let mut lines: Vec<String> = current
        .lines()
        .map(|l| if drop(l) { blank(l) } else { l.to_string() })
        .collect();
    // With no test's line left nobody can be resolving one: the blanks go too, and nothing is left behind.
    if compact || (add.is_none() && !lines.iter().any(|l| l.contains(HOSTS_TAG))) {
        lines.retain(|l| !l.starts_with(BLANKED));
    }
    let mut edited = lines.join("\n");
    if !edited.is_empty() {
        edited.push('\n');
    }
    let f = OpenOptions::new()
        .write(true)
        .open(HOSTS)
        .expect("/etc/hosts opens for writing");
    if edited != current {
        if edited.len() < current.len() {
            f.set_len(edited.len() as u64).expect("/etc/hosts shortened");
        }
        f.write_all_at(edited.as_bytes(), 0).expect("/etc/hosts written");
    }
    if let Some(line) = add {
        f.write_all_at(format!("{line}\n").as_bytes(), edited.len() as u64)
            .expect("/etc/hosts appended");
    }
}

/// The flags of issue 19's loopback appliance, `--domain localhost --san ::1 --san 127.0.0.1`, and a name
/// for ::1 only (`v6_name`): Debian 12's skopeo cannot parse a bracketed IPv6 address in an image reference,
/// so it reaches [::1] by that name.
pub fn dual_stack_args(v6_name: &str) -> Vec<String> {
    [
        "--domain",
        "localhost",
        "--san",
        "::1",
        "--san",
        "127.0.0.1",
        "--san",
        v6_name,
    ]
    .map(String::from)
    .to_vec()
}

/// A hosts line mapping `name` to 127.0.0.1 (or another address), removed on drop.
pub struct HostsEntry {
    line: String,
}

impl HostsEntry {
    pub fn add(name: &str) -> Self {
        Self::add_address(name, "127.0.0.1")
    }

    /// `name` also resolves to `address` (an AAAA next to the A, for instance).
    pub fn add_address(name: &str, address: &str) -> Self {
        let line = format!("{address} {name} {HOSTS_TAG}{}", std::process::id());
        edit_hosts(|_| false, Some(&line), false);
        HostsEntry { line }
    }
}

impl Drop for HostsEntry {
    fn drop(&mut self) {
        edit_hosts(|l| l == self.line, None, false);
    }
}

/// A port free on IPv4 and IPv6 alike (a dual-stack socket on `[::]`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("::", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One appliance under test: its own pod, domain, port and folders.
pub struct Appliance {
    pub pod: String,
    pub domain: String,
    pub port: u16,
    pub tmp: tempfile::TempDir,
    _hosts: HostsEntry,
}

impl Appliance {
    /// A new appliance where the end-to-end tests run, None where they are skipped (see [`e2e`]): tests
    /// that need one start with `let Some(app) = Appliance::e2e() else { return };`.
    pub fn e2e() -> Option<Self> {
        e2e().then(Self::new)
    }

    pub fn new() -> Self {
        sweep_leftovers();
        image_archives();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let pod = format!(
            "{POD_PREFIX}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let domain = format!("{pod}.registry-up.test");
        let hosts = HostsEntry::add(&domain);
        let tmp = tempfile::Builder::new().prefix("registry-up-e2e-").tempdir().unwrap();
        Appliance {
            pod,
            domain,
            port: free_port(),
            tmp,
            _hosts: hosts,
        }
    }

    pub fn config_dir(&self) -> PathBuf {
        self.tmp.path().join("config")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    pub fn registry(&self) -> String {
        format!("{}:{}", self.domain, self.port)
    }

    /// The arguments that name this appliance: domain, port, pod, folders (no images).
    pub fn base_args(&self) -> Vec<String> {
        vec![
            "--domain".into(),
            self.domain.clone(),
            "--port".into(),
            self.port.to_string(),
            "--pod-name".into(),
            self.pod.clone(),
            "--config-dir".into(),
            self.config_dir().display().to_string(),
            "--data-dir".into(),
            self.data_dir().display().to_string(),
        ]
    }

    /// The arguments that make `up` target this appliance, with the stand-in images.
    pub fn args(&self) -> Vec<String> {
        self.args_with_registry(REGISTRY_IMAGE, &image_archives()[0])
    }

    /// As [`Appliance::args`], with another registry image loaded from `archive`.
    pub fn args_with_registry(&self, image: &str, archive: &Path) -> Vec<String> {
        let mut args = self.base_args();
        args.extend([
            "--registry-image".into(),
            image.into(),
            "--nginx-image".into(),
            NGINX_IMAGE.into(),
        ]);
        for archive in [archive, image_archives()[1].as_path()] {
            args.push("--image-archive".into());
            args.push(archive.display().to_string());
        }
        args
    }

    /// Runs `up` and asserts it succeeded.
    pub fn up(&self, extra: &[&str]) -> Output {
        Run::up(self).args(extra).run()
    }

    /// `docker://REGISTRY/IMAGE`: an image on this appliance, as skopeo names it.
    pub fn reference(&self, image: &str) -> String {
        format!("docker://{}/{image}", self.registry())
    }

    /// Pushes the OCI archive `archive` as `dest` (`repo:tag`) with skopeo, trusting the appliance's CA;
    /// returns the manifest digest.
    pub fn push(&self, archive: &Path, dest: &str, creds: Option<&str>) -> String {
        let src = format!("oci-archive:{}", archive.display());
        skopeo_copy(&src, &self.reference(dest), &self.config_dir(), creds)
    }

    /// The digest of the manifest (or index) `image` names, from its raw bytes as skopeo reads them.
    pub fn raw_digest(&self, image: &str) -> String {
        let cert_dir = self.config_dir().display().to_string();
        let out = skopeo(&["inspect", "--raw", "--cert-dir", &cert_dir, &self.reference(image)]);
        assert!(out.status.success(), "{image}: {}", text(&out.stderr));
        format!("sha256:{}", sha256(&out.stdout))
    }

    /// Pushes `archive` as `dest` (no credentials), asserts it was refused, and returns what skopeo said.
    fn refused_push(&self, archive: &Path, dest: &str) -> String {
        let cert_dir = self.config_dir().display().to_string();
        let src = format!("oci-archive:{}", archive.display());
        let out = skopeo(&["copy", "-q", "--dest-cert-dir", &cert_dir, &src, &self.reference(dest)]);
        assert!(!out.status.success(), "a push of {dest} went through");
        text(&out.stderr)
    }

    /// Asserts that a push of `archive` as `dest` is refused, saying `says`.
    pub fn assert_push_refused(&self, archive: &Path, dest: &str, says: &str) {
        let said = self.refused_push(archive, dest);
        assert!(said.contains(says), "{said}");
    }

    /// Asserts that a push of `archive` as `dest` without credentials is refused as unauthorized.
    pub fn assert_anonymous_push_refused(&self, archive: &Path, dest: &str) {
        let said = self.refused_push(archive, dest);
        assert!(said.contains("unauthorized") || said.contains("401"), "{said}");
    }

    /// The digest of `image` (`repo:tag`) on the appliance, as `skopeo inspect` trusting its CA reads it.
    pub fn digest(&self, image: &str, creds: Option<&str>) -> String {
        let cert_dir = self.config_dir().display().to_string();
        let mut args = vec!["inspect", "--cert-dir", &cert_dir, "--format", "{{.Digest}}"];
        if let Some(c) = creds {
            args.extend(["--creds", c]);
        }
        let reference = self.reference(image);
        args.push(&reference);
        skopeo_ok(&args).trim().to_string()
    }

    /// The HTTP status of `GET https://REGISTRY/v2/` from curl trusting the CA, with `user:password` or
    /// anonymously.
    pub fn curl_code(&self, user: Option<&str>) -> String {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(self.config_dir().join("ca.crt"));
        if let Some(u) = user {
            cmd.args(["-u", u]);
        }
        let out = cmd
            .arg(format!("https://{}/v2/", self.registry()))
            .output()
            .expect("curl runs");
        text(&out.stdout)
    }

    /// Pushes a two-platform image index (amd64: `amd64`, arm64: `arm64`, both OCI archives) to `dest`
    /// with `podman manifest push --all`.
    pub fn push_index(&self, amd64: &Path, arm64: &Path, dest: &str, creds: Option<&str>) {
        let list = format!("{}-list", self.pod);
        assert!(podman(&["manifest", "create", &list]).status.success());
        for (arch, archive) in [("amd64", amd64), ("arm64", arm64)] {
            let out = podman(&[
                "manifest",
                "add",
                "--arch",
                arch,
                &list,
                &format!("oci-archive:{}", archive.display()),
            ]);
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
        let cert_dir = self.config_dir().display().to_string();
        let mut args = vec!["manifest", "push", "--all", "--cert-dir", &cert_dir];
        if let Some(c) = creds {
            args.extend(["--creds", c]);
        }
        let dest = self.reference(dest);
        args.extend([list.as_str(), dest.as_str()]);
        let out = podman(&args);
        podman(&["manifest", "rm", &list]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }

    pub fn container(&self, name: &str) -> String {
        format!("{}-{name}", self.pod)
    }

    /// `podman inspect --format FORMAT NAME`, trimmed.
    pub fn inspect(&self, name: &str, format: &str) -> String {
        let out = podman(&["inspect", "--format", format, name]);
        assert!(out.status.success(), "podman inspect {name}: {}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    }

    pub fn pod_exists(&self) -> bool {
        podman(&["pod", "exists", &self.pod]).status.success()
    }

    /// When the registry and nginx containers started: the same pair later means neither restarted.
    pub fn started_at(&self) -> (String, String) {
        let at = |c: &str| self.inspect(&self.container(c), "{{.State.StartedAt}}");
        (at("registry"), at("nginx"))
    }
}

/// Removes the pod `pod` at once: its containers first with `-t 0` (Podman 4.3's `pod rm -t 0` still
/// waits about 3 s for them), then the pod with its infra container.
pub fn remove_pod(pod: &str) {
    let listed = podman(&[
        "ps",
        "-a",
        "--filter",
        &format!("pod={pod}"),
        "--format",
        "{{.ID}} {{.IsInfra}}",
    ]);
    let ids: Vec<String> = text(&listed.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(" false").map(String::from))
        .collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f", "-i", "-t", "0"];
        args.extend(ids.iter().map(String::as_str));
        podman(&args);
    }
    podman(&["pod", "rm", "-f", "-i", "-t", "0", pod]);
    // Removing the containers first leaves the pod's socket volume (a named volume on Podman 4.3).
    podman(&["volume", "rm", "-f", &format!("{pod}-socket")]);
}

impl Drop for Appliance {
    fn drop(&mut self) {
        if self.pod_exists() {
            remove_pod(&self.pod);
        }
        // What `registry-up trust` may have installed for this appliance's unique name.
        for root in ["/etc/containers/certs.d", "/etc/docker/certs.d"] {
            let _ = std::fs::remove_dir_all(Path::new(root).join(self.registry()));
        }
    }
}

/// Both output streams of a process, for a failure message.
pub fn shown(out: &Output) -> String {
    format!("--- stdout\n{}--- stderr\n{}", text(&out.stdout), text(&out.stderr))
}

/// Asserts that a process exited with `code`, showing what it printed when not; `what` names the run.
pub fn assert_exit(out: &Output, code: i32, what: &str) {
    assert_eq!(out.status.code(), Some(code), "{what}: exit code\n{}", shown(out));
}

/// A new appliance brought up by `up EXTRA`; None where the end-to-end tests are skipped (see [`e2e`]).
pub fn serving(extra: &[&str]) -> Option<Appliance> {
    let app = Appliance::e2e()?;
    app.up(extra);
    Some(app)
}

/// One run of registry-up, described and then checked (after casey/just's `tests/test.rs`): what it is
/// given (arguments, stdin, environment) and what it must answer (an exit code, 0 unless told, and words
/// its stdout and stderr must hold). `run` checks them all, showing both streams when one fails.
///
/// ```ignore
/// Run::bin().args(["down", "--purge"]).config_dir(app.config_dir()).code(2).stderr_has("--yes").run();
/// ```
#[must_use = "a Run does nothing until .run() or .output()"]
pub struct Run {
    wrapper: Vec<OsString>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<String>,
    code: i32,
    stdout_has: Vec<String>,
    stderr_has: Vec<String>,
}

impl Run {
    /// `registry-up`, with no arguments yet.
    pub fn bin() -> Self {
        Run {
            wrapper: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            code: 0,
            stdout_has: Vec::new(),
            stderr_has: Vec::new(),
        }
    }

    /// `registry-up <the arguments that make up target app, with the stand-in images>`.
    pub fn up(app: &Appliance) -> Self {
        Self::bin().args(app.args())
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// `--config-dir DIR`, where it stands in the arguments (after the subcommand's name).
    pub fn config_dir(self, dir: impl AsRef<Path>) -> Self {
        self.arg("--config-dir").arg(dir.as_ref())
    }

    /// Runs the binary through a wrapper (`runuser -u U -- env -i …`, `sh -c …`): `WRAPPER… registry-up ARGS`.
    pub fn under<S: AsRef<OsStr>>(mut self, wrapper: impl IntoIterator<Item = S>) -> Self {
        self.wrapper = wrapper.into_iter().map(|a| a.as_ref().to_owned()).collect();
        self
    }

    pub fn stdin(mut self, text: impl Into<String>) -> Self {
        self.stdin = Some(text.into());
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// The exit code it must end with (0 unless told).
    pub fn code(mut self, code: i32) -> Self {
        self.code = code;
        self
    }

    pub fn stdout_has(mut self, words: impl Into<String>) -> Self {
        self.stdout_has.push(words.into());
        self
    }

    pub fn stderr_has(mut self, words: impl Into<String>) -> Self {
        self.stderr_has.push(words.into());
        self
    }

    /// The command as described, with the test Podman configuration: to spawn it (a run to kill, or to
    /// read while it runs).
    pub fn command(&self) -> Command {
        let bin = OsString::from(BIN);
        let mut line = self.wrapper.iter().chain([&bin]).chain(&self.args);
        let mut cmd = command(line.next().unwrap());
        cmd.args(line).envs(self.env.clone());
        cmd
    }

    /// Runs it and returns what it did, checking nothing (for a caller that reads the exit code itself).
    pub fn output(&self) -> Output {
        let mut cmd = self.command();
        let Some(input) = &self.stdin else {
            return cmd.output().expect("registry-up runs");
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("registry-up runs");
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Asserts that `out` (of this run, spawned or run) is what was asked for.
    pub fn check(&self, out: &Output) {
        let what = self.to_string();
        assert_exit(out, self.code, &what);
        for (name, said, wanted) in [
            ("stdout", &out.stdout, &self.stdout_has),
            ("stderr", &out.stderr, &self.stderr_has),
        ] {
            for words in wanted {
                assert!(
                    text(said).contains(words.as_str()),
                    "{what}: {name} should say {words:?}\n{}",
                    shown(out)
                );
            }
        }
    }

    /// Runs it and checks it; returns the output for further checks.
    pub fn run(&self) -> Output {
        let out = self.output();
        self.check(&out);
        out
    }
}

/// The command line, for messages: `registry-up ARGS`.
impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("registry-up")?;
        for arg in &self.args {
            write!(f, " {}", arg.to_string_lossy())?;
        }
        Ok(())
    }
}

/// `skopeo ARGS` with the test Podman configuration, checking nothing.
pub fn skopeo<S: AsRef<OsStr> + std::fmt::Debug>(args: &[S]) -> Output {
    command("skopeo").args(args).output().expect("skopeo runs")
}

/// `skopeo ARGS`; asserts success and returns stdout.
pub fn skopeo_ok<S: AsRef<OsStr> + std::fmt::Debug>(args: &[S]) -> String {
    let out = skopeo(args);
    assert!(out.status.success(), "skopeo {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// `skopeo copy -q SRC DEST`, trusting `cert_dir` (and logging in with `creds`) on the side that is a
/// registry (`docker://…`); asserts success and returns the manifest digest skopeo wrote.
pub fn skopeo_copy(src: &str, dest: &str, cert_dir: &Path, creds: Option<&str>) -> String {
    let side = if dest.starts_with("docker://") { "dest" } else { "src" };
    let work = tempfile::tempdir().unwrap();
    let digest_file = work.path().join("digest");
    let mut args = vec![
        "copy".to_string(),
        "-q".into(),
        format!("--{side}-cert-dir"),
        cert_dir.display().to_string(),
        "--digestfile".into(),
        digest_file.display().to_string(),
    ];
    if let Some(c) = creds {
        args.extend([format!("--{side}-creds"), c.to_string()]);
    }
    args.extend([src.to_string(), dest.to_string()]);
    skopeo_ok(&args);
    std::fs::read_to_string(&digest_file).unwrap().trim().to_string()
}

/// `curl -s -X METHOD ARGS URL`: what it wrote (the body, and the headers when `args` ask for them with
/// `-D -`) and the HTTP status.
pub fn curl<S: AsRef<OsStr>>(method: &str, args: &[S], url: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let said = text(&out.stdout);
    let (body, code) = said.rsplit_once('\n').unwrap_or(("", &said));
    (body.to_string(), code.trim().to_string())
}

/// The permission bits of `path`.
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// `registry-up verify --config-dir <the appliance's> ARGS --json`: exit code and parsed report.
pub fn verify_json(app: &Appliance, args: &[&str]) -> (i32, serde_json::Value) {
    let out = Run::bin()
        .arg("verify")
        .config_dir(app.config_dir())
        .args(args)
        .arg("--json")
        .output();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("verify --json printed no JSON ({e}):\n{}", shown(&out)));
    (out.status.code().unwrap(), report)
}

/// The check called `name` in a verify report.
pub fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

/// Asserts that the check `name` of a verify report has `status` and that its detail says each of `says`.
pub fn assert_check(report: &serde_json::Value, name: &str, status: &str, says: &[&str]) {
    let found = check(report, name);
    assert_eq!(found["status"], status, "{name}: {found}");
    let detail = found["detail"].as_str().unwrap_or_default();
    for words in says {
        assert!(detail.contains(words), "{name} should say {words:?}: {found}");
    }
}

/// Removes image names from Podman's store on drop (only the names: the images stay if others use them).
pub struct ImageNames(pub Vec<String>);

/// The "connected" side of a bundle test: a registry (an appliance) holding the stand-in registry and
/// nginx images as `mirror/registry:2` and `mirror/nginx:1`, which Podman's store then lacks, so only a
/// bundle can bring them. Returns it, the two references, and the guard that removes what a bundle loads.
pub fn bundle_source() -> Option<(Appliance, String, String, ImageNames)> {
    let source = serving(&["--no-verify"])?;
    let [registry_tar, nginx_tar] = image_archives();
    source.push(registry_tar, "mirror/registry:2", None);
    source.push(nginx_tar, "mirror/nginx:1", None);
    let registry_ref = format!("{}/mirror/registry:2", source.registry());
    let nginx_ref = format!("{}/mirror/nginx:1", source.registry());
    let names = ImageNames(vec![registry_ref.clone(), nginx_ref.clone()]);
    for name in &names.0 {
        podman(&["rmi", name]);
    }
    Some((source, registry_ref, nginx_ref, names))
}

impl Appliance {
    /// Builds `localhost/registry-up-test/NAME-POD:1` offline, `FROM` the stand-in registry image with the
    /// Containerfile lines `lines` and the context files `files` (name, text, made executable); returns its
    /// name and the guard that removes it.
    pub fn registry_image_from(&self, name: &str, lines: &str, files: &[(&str, &str)]) -> (String, ImageNames) {
        let reference = format!("localhost/registry-up-test/{name}-{}:1", self.pod);
        let context = self.tmp.path().join(format!("{name}-image"));
        std::fs::create_dir_all(&context).unwrap();
        for (file, body) in files {
            std::fs::write(context.join(file), body).unwrap();
        }
        std::fs::write(
            context.join("Containerfile"),
            format!("FROM {REGISTRY_IMAGE}\n{lines}\n"),
        )
        .unwrap();
        let built = podman(&[
            "build",
            "--pull=never",
            "-q",
            "-t",
            &reference,
            &context.display().to_string(),
        ]);
        assert!(built.status.success(), "{}", text(&built.stderr));
        (reference.clone(), ImageNames(vec![reference]))
    }
}

impl Drop for ImageNames {
    fn drop(&mut self) {
        for name in &self.0 {
            podman(&["rmi", name]);
        }
    }
}

pub mod garage;
pub mod guest;

/// Certificates made with rcgen for tests: CAs, intermediates and leaves with chosen properties.
pub mod certs {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    use time::OffsetDateTime;

    pub struct Ca {
        pub pem: String,
        pub issuer: Issuer<'static, KeyPair>,
    }

    pub fn ca(name: &str, parent: Option<&Ca>) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = match parent {
            Some(p) => params.signed_by(&key, &p.issuer).unwrap(),
            None => params.self_signed(&key).unwrap(),
        };
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names` signed by `ca`: (certificate PEM, key PEM).
    pub fn leaf(
        names: &[&str],
        ca: &Ca,
        valid: (OffsetDateTime, OffsetDateTime),
        server_auth: bool,
    ) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.not_before = valid.0;
        params.not_after = valid.1;
        params.use_authority_key_identifier_extension = true;
        params.extended_key_usages = if server_auth {
            vec![ExtendedKeyUsagePurpose::ServerAuth]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        (params.signed_by(&key, &ca.issuer).unwrap().pem(), key.serialize_pem())
    }

    /// Valid from yesterday for a year.
    pub fn now_valid() -> (OffsetDateTime, OffsetDateTime) {
        let now = OffsetDateTime::now_utc();
        (now - time::Duration::days(1), now + time::Duration::days(365))
    }
}

/// Every file below `dir` with its modification time.
pub fn mtimes(dir: &Path) -> Vec<(PathBuf, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                out.push((entry.path(), meta.modified().unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// A network namespace joined to the host by a veth pair (169.254.77.0/30 and fd77:77::/64), with default
/// routes through the host: "another machine" on this host, over IPv4 and IPv6. Removed on drop.
pub struct NetNs {
    pub name: String,
    host_link: String,
}

impl NetNs {
    pub fn new() -> Self {
        let pid = std::process::id();
        let name = format!("{POD_PREFIX}{pid}-ns");
        let host_link = format!("ru{pid}h");
        let peer = format!("ru{pid}n");
        let ns = NetNs {
            name: name.clone(),
            host_link: host_link.clone(),
        };
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("ip runs");
            assert!(out.status.success(), "ip {args:?}: {}", text(&out.stderr));
        };
        ip(&["netns", "add", &name]);
        ip(&["link", "add", &host_link, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &name]);
        ip(&["addr", "add", "169.254.77.1/30", "dev", &host_link]);
        ip(&["link", "set", &host_link, "up"]);
        ip(&["-n", &name, "addr", "add", "169.254.77.2/30", "dev", &peer]);
        ip(&["-n", &name, "link", "set", &peer, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ip(&["-n", &name, "route", "add", "default", "via", "169.254.77.1"]);
        // nodad: usable at once, not tentative for a second or two.
        ip(&["addr", "add", "fd77:77::1/64", "dev", &host_link, "nodad"]);
        ip(&["-n", &name, "addr", "add", "fd77:77::2/64", "dev", &peer, "nodad"]);
        ip(&["-n", &name, "-6", "route", "add", "default", "via", "fd77:77::1"]);
        ns
    }

    /// The host's addresses on the link to the namespace, and the namespace's own.
    pub const HOST_V4: &'static str = "169.254.77.1";
    pub const HOST_V6: &'static str = "fd77:77::1";
    pub const NS_V4: &'static str = "169.254.77.2";
    pub const NS_V6: &'static str = "fd77:77::2";

    /// Whether a TCP connection from inside the namespace to `host:port` succeeds within 3 s.
    pub fn connects(&self, host: &str, port: u16) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.name, "timeout", "3", "bash", "-c"])
            .arg(format!("exec 3<>/dev/tcp/{host}/{port}"))
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        let _ = Command::new("ip").args(["link", "del", &self.host_link]).output();
    }
}

/// What process `pid` listens on, as `ss FLAGS` shows it (in the host's network namespace): the local
/// address column of each of its sockets.
fn listeners(pid: &str, flags: &str, column: usize) -> Vec<String> {
    let out = Command::new("ss").args([flags]).output().expect("ss runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let owner = format!("pid={pid},");
    text(&out.stdout)
        .lines()
        .filter(|l| l.contains(&owner))
        .filter_map(|l| l.split_whitespace().nth(column).map(String::from))
        .collect()
}

/// The TCP addresses process `pid` listens on.
pub fn tcp_listeners(pid: &str) -> std::collections::BTreeSet<String> {
    listeners(pid, "-Hltnp", 3).into_iter().collect()
}

/// The Unix socket paths process `pid` listens on, as it names them.
pub fn unix_listeners(pid: &str) -> Vec<String> {
    listeners(pid, "-Hlxp", 4)
}

/// A tmpfs of `mib` MiB mounted on an appliance's data directory (a small disk that fills up); on drop the
/// pod goes first, then the mount.
pub struct SmallDisk {
    pub app: Appliance,
    mount: PathBuf,
}

impl SmallDisk {
    pub fn mount(app: Appliance, mib: u64) -> Self {
        let data = app.data_dir();
        std::fs::create_dir_all(&data).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m,mode=0700"), "tmpfs"])
            .arg(&data)
            .status()
            .unwrap();
        assert!(ok.success(), "mounting a tmpfs needs root");
        SmallDisk { app, mount: data }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if self.app.pod_exists() {
            remove_pod(&self.app.pod);
        }
        let _ = Command::new("umount").arg(&self.mount).status();
    }
}

/// Returns once no process has `path` in its command line (or fails after two minutes).
pub fn wait_until_no_process_names(path: &Path) {
    let needle = path.display().to_string();
    let start = std::time::Instant::now();
    loop {
        let running = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .any(|cmd| String::from_utf8_lossy(&cmd).contains(&needle));
        if !running {
            return;
        }
        assert!(start.elapsed().as_secs() < 120, "a process naming {needle} still runs");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
