//! A real Garage cluster for the S3 tests (issue 14): three nodes on loopback ports, replication factor
//! 3, one bucket and one key. The `garage` binary is built once per machine by `make deps` (a pinned
//! version, `cargo install --locked`, cached outside `target/`); each cluster lives in its own temp folder
//! and its processes are killed when it is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// One node: its config, its process (None once killed), its S3 port.
pub struct Node {
    pub config: PathBuf,
    pub s3_port: u16,
    process: Option<Child>,
}

pub struct Garage {
    pub nodes: Vec<Node>,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
    _dir: tempfile::TempDir,
}

/// The garage binary `make deps` installed, where the Makefile puts it.
pub fn binary() -> PathBuf {
    let tools = std::env::var_os("REGISTRY_UP_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var("HOME").unwrap()).join(".cache/registry-up-tools"));
    let bin = tools.join("bin/garage");
    assert!(
        bin.is_file(),
        "{} is missing: run `make deps` (it builds Garage once per machine)",
        bin.display()
    );
    bin
}

fn run(config: &Path, args: &[&str]) -> Output {
    let out = Command::new(binary())
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "garage {}: {}{}",
        args.join(" "),
        super::text(&out.stdout),
        super::text(&out.stderr)
    );
    out
}

/// Retries `f` until it is true or `secs` pass (a starting node takes a moment to answer).
fn eventually(secs: u64, what: &str, f: impl FnMut() -> bool) {
    eventually_else(secs, what, f, String::new);
}

/// `eventually`, and when it fails, what `context` says then (the nodes' logs: they go with the test's
/// temporary folder).
fn eventually_else(secs: u64, what: &str, mut f: impl FnMut() -> bool, context: impl Fn() -> String) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what} within {secs} s\n{}", context());
}

/// The last lines of each node's log, and what each says of the cluster.
fn logs(nodes: &[Node]) -> String {
    let mut said = String::new();
    for node in nodes {
        let home = node.config.parent().unwrap();
        let log = std::fs::read_to_string(home.join("garage.log")).unwrap_or_default();
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let status = Command::new(binary())
            .arg("-c")
            .arg(&node.config)
            .arg("status")
            .output();
        let status = status
            .map(|o| super::text(&o.stdout) + &super::text(&o.stderr))
            .unwrap_or_default();
        said.push_str(&format!(
            "--- {} (s3 port {}): garage status\n{status}\n--- its log, last lines\n{}\n",
            home.display(),
            node.s3_port,
            tail.join("\n")
        ));
    }
    said
}

impl Garage {
    /// Three nodes, one cluster layout, bucket `bucket` with a key allowed to read and write it.
    pub fn start(bucket: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let secret: String = super::random_bytes(32).iter().map(|b| format!("{b:02x}")).collect();
        let homes: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("node{i}"))).collect();
        // Made first, so that a panic below still kills every node started (Drop).
        let mut garage = Garage {
            nodes: Vec::new(),
            bucket: bucket.to_string(),
            key_id: String::new(),
            secret: String::new(),
            _dir: dir,
        };
        // Six distinct ports, held open together while chosen: free_port() one at a time handed the same
        // port out twice once (a node's S3 port was another node's RPC port, and that node shut down).
        let held: Vec<std::net::TcpListener> = (0..2 * homes.len())
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut ports: Vec<u16> = held.iter().map(|l| l.local_addr().unwrap().port()).collect();
        drop(held);
        for home in homes {
            std::fs::create_dir_all(&home).unwrap();
            let (rpc, s3) = (ports.pop().unwrap(), ports.pop().unwrap());
            let config = home.join("garage.toml");
            std::fs::write(
                &config,
                format!(
                    "metadata_dir = \"{home}/meta\"\ndata_dir = \"{home}/data\"\ndb_engine = \"sqlite\"\n\
                     replication_factor = 3\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                     rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\n[s3_api]\n\
                     s3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
                     root_domain = \".s3.garage.localhost\"\n",
                    home = home.display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(home.join("garage.log")).unwrap();
            let process = Command::new(binary())
                .arg("-c")
                .arg(&config)
                .arg("server")
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .stdin(Stdio::null())
                .spawn()
                .unwrap();
            garage.nodes.push(Node {
                config,
                s3_port: s3,
                process: Some(process),
            });
        }
        // Each node's ID, once it answers; the first connects to the others.
        let mut ids = Vec::new();
        for node in &garage.nodes {
            let mut id = String::new();
            eventually(30, "a Garage node answers", || {
                let out = Command::new(binary())
                    .arg("-c")
                    .arg(&node.config)
                    .args(["node", "id", "-q"])
                    .output()
                    .unwrap();
                id = super::text(&out.stdout).trim().to_string();
                out.status.success() && id.contains('@')
            });
            ids.push(id);
        }
        let first = garage.nodes[0].config.clone();
        for id in &ids[1..] {
            run(&first, &["node", "connect", id]);
        }
        for id in &ids {
            let short = &id[..16];
            run(&first, &["layout", "assign", "-z", "dc1", "-c", "1G", short]);
        }
        run(&first, &["layout", "apply", "--version", "1"]);
        // Every node must be connected to every other before the cluster serves from any of them: the
        // first node introduced them, and they find each other over the next moments.
        for node in &garage.nodes {
            eventually_else(
                60,
                "every Garage node sees the other two",
                || {
                    let out = Command::new(binary())
                        .arg("-c")
                        .arg(&node.config)
                        .arg("status")
                        .output()
                        .unwrap();
                    let said = super::text(&out.stdout);
                    let healthy = said.split("FAILED NODES").next().unwrap_or_default();
                    out.status.success() && ids.iter().all(|id| healthy.contains(&id[..16]))
                },
                || logs(&garage.nodes),
            );
        }
        eventually(30, "the bucket is made once the layout is everywhere", || {
            Command::new(binary())
                .arg("-c")
                .arg(&first)
                .args(["bucket", "create", bucket])
                .output()
                .unwrap()
                .status
                .success()
        });
        (garage.key_id, garage.secret) = garage.key("registry-up-test", &["--read", "--write", "--owner"]);
        garage
    }

    /// A new key named `name`, allowed `rights` (`--read`, `--write`, `--owner`) on the bucket: its ID
    /// and secret.
    pub fn key(&self, name: &str, rights: &[&str]) -> (String, String) {
        let first = &self.nodes[0].config;
        let key = run(first, &["key", "create", name]);
        let said = super::text(&key.stdout);
        let field = |name: &str| {
            said.lines()
                .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
                .unwrap_or_else(|| panic!("no '{name}' in `garage key create`:\n{said}"))
        };
        let (id, secret) = (field("Key ID:"), field("Secret key:"));
        let mut allow = vec!["bucket", "allow"];
        allow.extend(rights);
        allow.extend([self.bucket.as_str(), "--key", &id]);
        run(first, &allow);
        (id, secret)
    }

    /// The S3 endpoint of node `i`, as a client names it.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].s3_port)
    }

    /// Kills node `i` (SIGKILL: a lost host, not a clean stop).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].process.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    /// `curl --aws-sigv4` against node `i`, as the bucket's key, at `path` below the bucket (`/key`):
    /// an independent S3 client. The body and the HTTP status.
    pub fn curl(&self, i: usize, method: &str, path: &str, extra: &[&str]) -> (String, String) {
        let url = format!("/{}{path}", self.bucket);
        self.curl_as(i, (&self.key_id, &self.secret), method, &url, extra)
    }

    /// As `curl`, with other credentials, at a path from the endpoint's root (`/BUCKET/KEY`).
    pub fn curl_as(
        &self,
        i: usize,
        (id, secret): (&str, &str),
        method: &str,
        path: &str,
        extra: &[&str],
    ) -> (String, String) {
        let user = format!("{id}:{secret}");
        let mut args = vec!["--aws-sigv4", "aws:amz:garage:s3", "--user", &user];
        // Garage wants the payload's hash header; curl 7.88 signs the value it is given.
        args.extend(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]);
        args.extend(extra);
        super::curl(method, &args, &format!("{}{path}", self.endpoint(i)))
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
