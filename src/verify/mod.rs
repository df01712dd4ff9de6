//! Verify: proves a registry works from a client's side. `up` ends with the round trip; `registry-up
//! verify` runs every check (name, TCP, TLS, API, round trip, clean-up, pod health, and with --deep
//! every stored image). Every connection trusts only the appliance's CA, as a configured client would.

mod deep;
mod image;
pub mod inventory;
mod leftovers;
mod live;
pub mod report;
mod round_trip;
mod target;
mod tls;
mod version;

use std::net::SocketAddr;

use indicatif::HumanBytes;
use std::path::Path;
use std::time::{Duration, Instant};

pub use deep::{repositories, Answer};
pub use leftovers::Storage;
pub use live::{checks as live_checks, served_fingerprint, ConfigFile};
pub use report::{Check, Report, Status};
pub use round_trip::{round_trip, DEFAULT_SIZE};
pub use target::{chain, wait_ready, Http, Target};
pub use tls::roots as tls_roots;
pub use version::Kept as KeptVersion;

use crate::runtime::podman::Podman;

/// What to run, besides the target.
pub struct Options {
    pub size: u64,
    pub timeout: Duration,
    pub deep: bool,
    pub jobs: usize,
    pub strict: bool,
    pub progress: bool,
    /// On the appliance host: where the registry keeps its data (a data folder also gets the storage check).
    pub storage: Option<Storage>,
    /// Holding the appliance's lock: the round trip may remove its own data from `storage`.
    pub clean_storage: bool,
    /// On the appliance host: the config file the registry should be running, for the config check.
    pub config: Option<ConfigFile>,
    /// On the appliance host: its disk watermarks; the storage check warns above the high one.
    pub watermarks: crate::disk::Watermarks,
    /// Take the inventory of what is served (with --deep it comes from the same walk).
    pub inventory: bool,
    /// Compare what is served with this earlier inventory (the `inventory` check).
    pub baseline: Option<inventory::Inventory>,
    /// What the inventory's header says of the registry.
    pub about: inventory::About,
    /// On the appliance host: the running registry container's REGISTRY_* variables registry-up did not
    /// set are a failure of the config check (they override its config file).
    pub env_check: bool,
}

/// What a run found.
pub struct Outcome {
    pub checks: Vec<Check>,
    pub deep: Option<report::Deep>,
    pub inventory: Option<inventory::Inventory>,
    pub comparison: Option<inventory::Comparison>,
}

/// The inventory of what `target` serves (the walk without blob HEADs), for the commands that prove a change
/// against it (up's guard, backup and restore): 8 requests at once (more gain little on 2 cores: measured),
/// bounded by 10 minutes (10 000 tags take ~20 s here) so that a registry that hangs does not.
pub async fn take_inventory(
    target: &Target,
    about: inventory::About,
) -> std::result::Result<inventory::Inventory, String> {
    let timeout = Duration::from_secs(600);
    match tokio::time::timeout(timeout, deep::walk(target, timeout, 8, false, about, false)).await {
        Err(_) => Err(format!("the inventory took longer than {} s", timeout.as_secs())),
        Ok(walked) => walked.map(|w| w.inventory),
    }
}

/// Some tags as `target` serves them now (a guarded change's spot checks): see [`deep::served_tags`].
pub async fn served_tags(
    target: &Target,
    tags: Vec<(String, String)>,
) -> std::result::Result<std::collections::BTreeMap<(String, String), Answer>, String> {
    let timeout = Duration::from_secs(600);
    match tokio::time::timeout(timeout, deep::served_tags(target, timeout, 8, tags)).await {
        Err(_) => Err(format!("reading the tags took longer than {} s", timeout.as_secs())),
        Ok(found) => found,
    }
}

/// Parses sizes such as 1048576, 512KiB, 1MiB, 1GiB (also KB/MB/GB, read as powers of 1024).
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size: use a number with KiB, MiB or GiB"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("'{text}' has an unknown unit: use KiB, MiB or GiB")),
    };
    match n.checked_mul(factor) {
        Some(0) | None => Err(format!("'{text}' is not a usable size: use 1 byte up to many GiB")),
        Some(size) => Ok(size),
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn timed_out(name: &str, limit: Duration) -> Check {
    Check::new(
        name,
        Status::Fail,
        format!("did not finish within the --timeout of {} s", limit.as_secs()),
        limit,
    )
}

/// The appliance's pod on this host: its health, and the registry's version, come from Podman.
pub struct Pod {
    pub podman: Podman,
    pub name: String,
    pub version: KeptVersion,
}

/// Runs the checks in order; a failed check skips those that depend on it. The pod's health comes from
/// podman, so it is asked in parallel with the network checks.
pub async fn run_checks(target: &Target, opts: &Options, pod: Option<Pod>) -> Outcome {
    let deadline = Instant::now() + opts.timeout;
    let pod_facts = pod.map(|pod| std::thread::spawn(move || pod_facts(&pod)));
    let mut checks = Vec::new();
    let mut found = Found::default();
    // One deadline for the whole run: each check is given what is left, and what is still running when it
    // comes is stopped (its check fails, the rest are skipped), however the peer drips its answers.
    let network = match tokio::time::timeout(
        remaining(deadline),
        network_checks(target, opts, deadline, &mut checks, &mut found),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(format!("the run reached its --timeout of {} s", opts.timeout.as_secs())),
    };
    let out_of_time = network.is_err() && remaining(deadline).is_zero();
    let (pod_check, version, env) = match pod_facts.map(|h| h.join()) {
        None => (None, None, None),
        Some(Ok((check, version, env))) => (Some(check), Some(version), env),
        Some(Err(_)) => (
            Some(Check::new("pod", Status::Fail, "the pod check crashed", Duration::ZERO)),
            Some(Err("the pod check crashed".into())),
            None,
        ),
    };
    if opts.env_check {
        if let Some(env) = &env {
            environment_into_config(&mut checks, env);
        }
    }
    match &network {
        Ok(()) => checks.push(live::registry_info(target, version, remaining(deadline)).await),
        Err(why) => {
            let done: Vec<String> = checks.iter().map(|c| c.name.clone()).collect();
            let mut names = vec![
                "resolve",
                "tcp",
                "tls",
                "certificate-chain",
                "certificate-name",
                "certificate-expiry",
                "api",
                "auth",
            ];
            if opts.config.is_some() {
                names.push("config");
            }
            names.extend(["round-trip", "cleanup"]);
            if opts.deep {
                names.push("deep");
            }
            if opts.baseline.is_some() {
                names.push("inventory");
            }
            names.push("registry");
            for (i, name) in names.into_iter().filter(|n| !done.iter().any(|d| d == n)).enumerate() {
                // The check that was running when time ran out failed; the ones after it did not run.
                checks.push(match (i, out_of_time) {
                    (0, true) => timed_out(name, opts.timeout),
                    _ => Check::skipped(name, why),
                });
            }
        }
    }
    checks.extend(pod_check);
    if let Some(dir) = opts.storage.as_ref().and_then(Storage::folder) {
        let mut check = storage(dir, opts.size, opts.watermarks);
        // Free space is of the folder; that the registry writes there is proven by the round trip or not said.
        match found.stored.take() {
            Some(Err(why)) => check = Check::new("storage", Status::Fail, why, Duration::ZERO),
            Some(Ok(())) => check.detail += "; the round trip's blobs were written there",
            None => check.detail += "; where the registry writes was not checked (no round trip here cleaned it)",
        }
        checks.push(check);
    }
    Outcome {
        checks,
        deep: found.deep,
        inventory: found.inventory,
        comparison: found.comparison,
    }
}

/// What the network checks found besides their checks.
#[derive(Default)]
struct Found {
    deep: Option<report::Deep>,
    inventory: Option<inventory::Inventory>,
    comparison: Option<inventory::Comparison>,
    /// Where the round trip's blobs landed, for the storage check: Ok, under the data folder; Err(why), not
    /// there; None, not looked at (no round trip, or a user who may not clean the appliance's storage).
    stored: Option<std::result::Result<(), String>>,
}

/// The config check also fails when the running registry has REGISTRY_* variables registry-up did not
/// set: they override the file whose fingerprint the check compared.
fn environment_into_config(checks: &mut [Check], env: &[String]) {
    let foreign = crate::render::foreign_registry_env(env);
    if foreign.is_empty() {
        return;
    }
    let why = format!(
        "the running registry container has {} in its environment, which registry-up did not set and which \
         override its config file (distribution reads REGISTRY_* variables over config.yml): use a registry image \
         that sets none (podman image inspect shows them), then run registry-up up",
        foreign.join(", ")
    );
    // Read from Podman, not the network: a fact even when the network checks could not run.
    if let Some(c) = checks.iter_mut().find(|c| c.name == "config") {
        c.status = Status::Fail;
        c.detail = why;
    }
}

/// The network checks in order, each pushed to `checks`; Err(reason) when the rest cannot run.
async fn network_checks(
    target: &Target,
    opts: &Options,
    deadline: Instant,
    checks: &mut Vec<Check>,
    found: &mut Found,
) -> std::result::Result<(), String> {
    let addrs = resolve(target, opts, deadline, checks).await?;
    let connected = connect(&addrs, deadline, checks).await?;
    tls(target, connected[0], deadline, checks).await?;
    checks.push(api(target, &connected, deadline).await?);
    // What the running registry enforces: auth as set up, and the config registry-up wrote.
    checks.extend(live::checks(target, opts.config.as_ref(), remaining(deadline)).await);
    checks.extend(round_trip_and_cleanup(target, opts, deadline, &mut found.stored).await);
    if opts.deep || opts.inventory || opts.baseline.is_some() {
        walk(target, opts, deadline, checks, found).await;
    }
    Ok(())
}

/// 1. The name resolves.
async fn resolve(
    target: &Target,
    opts: &Options,
    deadline: Instant,
    checks: &mut Vec<Check>,
) -> std::result::Result<Vec<SocketAddr>, String> {
    let t = Instant::now();
    let host = target.host.trim_start_matches('[').trim_end_matches(']').to_string();
    let lookup = tokio::time::timeout(
        remaining(deadline),
        tokio::net::lookup_host((host.clone(), target.port)),
    )
    .await;
    let addrs: Vec<SocketAddr> = match lookup {
        Err(_) => {
            checks.push(timed_out("resolve", opts.timeout));
            return Err("the name did not resolve in time".into());
        }
        Ok(Err(e)) => {
            checks.push(Check::new(
                "resolve",
                Status::Fail,
                format!("{host} does not resolve ({e}): add it to DNS or /etc/hosts"),
                t.elapsed(),
            ));
            return Err(format!("{host} does not resolve"));
        }
        Ok(Ok(a)) => a.collect(),
    };
    let shown: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    checks.push(Check::new(
        "resolve",
        Status::Pass,
        format!("{host} -> {}", shown.join(", ")),
        t.elapsed(),
    ));
    Ok(addrs)
}

/// 2. TCP connect to every address the name resolves to (A and AAAA): clients pick any of them, so
///    each must answer. Err only when none does; the checks after it use those that did.
async fn connect(
    addrs: &[SocketAddr],
    deadline: Instant,
    checks: &mut Vec<Check>,
) -> std::result::Result<Vec<SocketAddr>, String> {
    let t = Instant::now();
    let limit = remaining(deadline).min(Duration::from_secs(10));
    let attempts = addrs.iter().map(|addr| async move {
        match tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(*addr),
            Ok(Err(e)) => Err((format!("{addr}: {e}"), no_route(&e))),
            Err(_) => Err((format!("{addr}: timed out"), false)),
        }
    });
    let (connected, failed): (Vec<_>, Vec<_>) = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .partition(|r| r.is_ok());
    let connected: Vec<SocketAddr> = connected.into_iter().filter_map(|r| r.ok()).collect();
    let failed: Vec<(String, bool)> = failed.into_iter().filter_map(|r| r.err()).collect();
    let errors: Vec<String> = failed.iter().map(|(e, _)| e.clone()).collect();
    let shown: Vec<String> = connected.iter().map(|a| a.to_string()).collect();
    let check = match (connected.is_empty(), errors.is_empty()) {
        (true, _) => Check::new(
            "tcp",
            Status::Fail,
            format!("nothing accepts connections: {}", errors.join("; ")),
            t.elapsed(),
        ),
        (false, true) => Check::new(
            "tcp",
            Status::Pass,
            format!("connected to {}", shown.join(" and ")),
            t.elapsed(),
        ),
        // This host cannot reach that family at all (no IPv6 route, say): not the registry's fault.
        (false, false) if failed.iter().all(|(_, no_route)| *no_route) => Check::new(
            "tcp",
            Status::Warn,
            format!(
                "connected to {}; not tried from here, for want of a route: {}",
                shown.join(" and "),
                errors.join("; ")
            ),
            t.elapsed(),
        ),
        (false, false) => Check::new(
            "tcp",
            Status::Fail,
            format!(
                "connected to {}, but not to {}: clients may pick any address the name has, so each must reach \
                 the registry (fix the name's records, or where the registry listens: registry-up --listen)",
                shown.join(" and "),
                errors.join("; ")
            ),
            t.elapsed(),
        ),
    };
    checks.push(check);
    if connected.is_empty() {
        return Err("no TCP connection".into());
    }
    Ok(connected)
}

/// Whether a failed connect means this host has no way to that address at all (no route, no such family
/// here) rather than that nothing listens there.
fn no_route(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENETUNREACH | libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
    )
}

/// 3. TLS, judged piece by piece.
async fn tls(
    target: &Target,
    addr: SocketAddr,
    deadline: Instant,
    checks: &mut Vec<Check>,
) -> std::result::Result<(), String> {
    let (tls_host, ca, limit) = (target.host.clone(), target.ca_pem.clone(), remaining(deadline));
    let tls_checks = tokio::task::spawn_blocking(move || tls::checks(addr, &tls_host, ca.as_deref(), limit))
        .await
        .unwrap_or_else(|e| {
            vec![Check::new(
                "tls",
                Status::Fail,
                format!("the TLS check crashed: {e}"),
                Duration::ZERO,
            )]
        });
    let tls_ok = tls_checks
        .iter()
        .all(|c| c.status == Status::Pass || c.status == Status::Warn);
    checks.extend(tls_checks);
    if !tls_ok {
        return Err("the TLS checks failed, so no client would trust this registry".into());
    }
    Ok(())
}

/// 4. The registry API answers through the proxy, over each address that took a connection; Err when
///    no HTTPS client can be made.
async fn api(target: &Target, addrs: &[SocketAddr], deadline: Instant) -> std::result::Result<Check, String> {
    let t = Instant::now();
    // An IP literal has one address, and no name to point elsewhere.
    let several = addrs.len() > 1;
    let mut answers = Vec::new();
    for addr in addrs {
        let http = target
            .http_client_at(remaining(deadline), Some(*addr))
            .map_err(|e| e.message)?;
        let via = if several {
            format!(" via {}", addr.ip())
        } else {
            String::new()
        };
        match api_answer(http.get(&target.url("/v2/")).send().await) {
            Ok(answer) => answers.push((addr.ip(), answer)),
            Err(problem) => {
                return Ok(Check::new(
                    "api",
                    Status::Fail,
                    format!("GET /v2/{via} {problem}"),
                    t.elapsed(),
                ))
            }
        }
    }
    let shown: Vec<String> = answers
        .iter()
        .map(|(ip, (code, _))| format!("{code} via {ip}"))
        .collect();
    let (code, version) = answers.first().map(|(_, a)| a.clone()).unwrap_or_default();
    let codes = if several { shown.join(", ") } else { code.to_string() };
    Ok(Check::new(
        "api",
        Status::Pass,
        format!("GET /v2/ -> {codes}, Docker-Distribution-Api-Version: {version}"),
        t.elapsed(),
    ))
}

/// The status and API version of a good answer to GET /v2/, or what is wrong with the answer.
fn api_answer(sent: reqwest::Result<reqwest::Response>) -> std::result::Result<(u16, String), String> {
    let resp = sent.map_err(|e| format!("failed: {}", target::chain(&e)))?;
    let code = resp.status().as_u16();
    let version = resp
        .headers()
        .get("docker-distribution-api-version")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    match (code, version) {
        (200 | 401, Some(v)) => Ok((code, v)),
        (200 | 401, None) => Err(format!("-> {code} without a Docker-Distribution-Api-Version header: this is not a registry, or a proxy drops the header")),
        (502..=504, _) => Err(format!("-> {code}: the proxy answers but the registry behind it does not (is the registry container running?)")),
        (code, _) => Err(format!("-> HTTP {code}, expected 200")),
    }
}

/// 5 and 6. The round trip, then its clean-up. On the appliance host it runs only when it leaves room:
/// a verify that fills the registry's disk is the outage it is meant to detect.
async fn round_trip_and_cleanup(
    target: &Target,
    opts: &Options,
    deadline: Instant,
    stored: &mut Option<std::result::Result<(), String>>,
) -> Vec<Check> {
    let t = Instant::now();
    if let Some(why) = opts
        .storage
        .as_ref()
        .and_then(Storage::folder)
        .and_then(|dir| no_room(dir, opts.size))
    {
        return vec![
            Check::new("round-trip", Status::Fail, why, t.elapsed()),
            Check::skipped("cleanup", "nothing was pushed"),
        ];
    }
    let storage = opts.storage.as_ref().filter(|_| opts.clean_storage);
    match round_trip(target, opts.size, remaining(deadline), storage).await {
        Ok(trip) => {
            // Looked at only where the round trip was given the data folder to clean.
            *stored = match (storage.and_then(Storage::folder), trip.cleanup.as_ref()) {
                (Some(_), Ok(c)) => Some(c.elsewhere.clone().map_or(Ok(()), Err)),
                _ => None,
            };
            vec![
                Check::new(
                    "round-trip",
                    Status::Pass,
                    trip.summary(),
                    t.elapsed() - trip.cleanup.as_ref().map(|c| c.took).unwrap_or_default(),
                ),
                match trip.cleanup {
                    // On the appliance host its own data must be gone; elsewhere only the registry's GC can free it.
                    Ok(c) if c.data_left && opts.clean_storage => Check::new("cleanup", Status::Warn, c.said, c.took),
                    Ok(c) => Check::new("cleanup", Status::Pass, c.said, c.took),
                    Err(e) => Check::new("cleanup", Status::Fail, e.message, Duration::ZERO),
                },
            ]
        }
        Err(e) => vec![
            Check::new("round-trip", Status::Fail, e.message, t.elapsed()),
            Check::skipped("cleanup", "the round trip failed"),
        ],
    }
}

/// 7 and 8. One walk of everything served: the deep check (with --deep), the inventory, and its
/// comparison with a baseline (the `inventory` check).
async fn walk(target: &Target, opts: &Options, deadline: Instant, checks: &mut Vec<Check>, found: &mut Found) {
    let t = Instant::now();
    let left = remaining(deadline);
    let walked = tokio::time::timeout(
        left,
        deep::walk(target, left, opts.jobs, opts.deep, opts.about.clone(), opts.progress),
    )
    .await;
    let walked = match walked {
        Err(_) => Err(format!(
            "did not finish within the --timeout of {} s",
            opts.timeout.as_secs()
        )),
        Ok(Err(e)) => Err(format!("the walk could not finish: {e}")),
        Ok(Ok(w)) => Ok(w),
    };
    let walked = match walked {
        Ok(w) => w,
        Err(why) => {
            if opts.deep {
                checks.push(Check::new("deep", Status::Fail, why.clone(), t.elapsed()));
            }
            if opts.baseline.is_some() {
                checks.push(Check::new("inventory", Status::Fail, why, t.elapsed()));
            }
            return;
        }
    };
    if opts.deep {
        let mut deep = walked.deep;
        let bytes = match opts.storage.as_ref().and_then(Storage::folder) {
            Some(dir) => hash_bytes(dir, &walked.users, deadline, &mut deep).await,
            None => Ok("; blobs HEADed only (their bytes can only be hashed on the appliance host)".to_string()),
        };
        let d = &deep;
        let counts = format!(
            "{} repositories, {} tags, {} manifests, {} blobs",
            d.repositories, d.tags, d.manifests, d.blobs
        );
        checks.push(match (&bytes, d.problems.is_empty()) {
            (Ok(bytes), true) => Check::new(
                "deep",
                Status::Pass,
                format!("{counts}: all present, manifest digests match{bytes}"),
                t.elapsed(),
            ),
            (Ok(bytes), false) => {
                let problems = d.problems.len();
                let detail = format!("{counts}: {problems} missing or corrupt item(s), listed below{bytes}");
                Check::new("deep", Status::Fail, detail, t.elapsed())
            }
            (Err(why), _) => Check::new("deep", Status::Fail, format!("{counts}: {why}"), t.elapsed()),
        });
        found.deep = Some(deep);
    }
    if let Some(baseline) = &opts.baseline {
        let c = inventory::compare(baseline, &walked.inventory);
        checks.push(inventory_check(baseline, &c, t.elapsed()));
        found.comparison = Some(c);
    }
    found.inventory = Some(walked.inventory);
}

/// On the appliance host: every blob the walk found hashed from the storage, each once, on every core; a
/// blob whose bytes are not its digest is a problem of each tag whose image holds it. Ok(what was done,
/// for the check's detail), or Err when the bytes could not all be hashed (the storage unreadable, or the
/// deadline).
async fn hash_bytes(
    dir: &Path,
    users: &std::collections::BTreeMap<String, std::collections::BTreeSet<(String, String)>>,
    deadline: Instant,
    deep: &mut report::Deep,
) -> std::result::Result<String, String> {
    let blobs = dir.join(crate::storage::V2).join("blobs");
    if let Err(e) = std::fs::read_dir(&blobs) {
        if users.is_empty() {
            return Ok(String::new());
        }
        return Err(format!(
            "the blobs' bytes could not be hashed: {} cannot be read ({e}); run verify as the appliance's user, \
             or without --deep for presence only",
            blobs.display()
        ));
    }
    // A blob the walk already named (missing, answering an error) is not named a second time.
    let named: std::collections::BTreeSet<String> = deep.problems.iter().map(|p| p.digest.clone()).collect();
    let digests: Vec<String> = users.keys().filter(|d| !named.contains(*d)).cloned().collect();
    let total = digests.len();
    let dir = dir.to_path_buf();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let hashed = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = digests.iter().map(String::as_str).collect();
        crate::storage::hash_blobs(&dir, &refs, threads, deadline)
    })
    .await
    .map_err(|e| format!("hashing the blobs failed ({e})"))?;
    for (digest, why) in &hashed.corrupt {
        for (repository, tag) in users.get(digest).into_iter().flatten() {
            deep.problems.push(report::Problem {
                repository: repository.clone(),
                tag: tag.clone(),
                digest: digest.clone(),
                problem: format!("blob {why}"),
            });
        }
    }
    deep.problems.sort();
    if !hashed.complete {
        return Err(format!(
            "the bytes of {} of {} blobs were hashed before the --timeout came: give more --timeout",
            hashed.blobs, total
        ));
    }
    Ok(format!(
        "; the bytes of every blob ({}) hashed on this host",
        HumanBytes(hashed.bytes)
    ))
}

/// The `inventory` check: every tag of the baseline still served with its digest.
fn inventory_check(baseline: &inventory::Inventory, c: &inventory::Comparison, took: Duration) -> Check {
    let added = match c.added.len() {
        0 => String::new(),
        n => format!("; {n} tag(s) added since (listed below)"),
    };
    if c.equal() {
        Check::new(
            "inventory",
            Status::Pass,
            format!(
                "all {} tags of the inventory taken {} are served with the same digests{added}",
                c.kept, baseline.taken
            ),
            took,
        )
    } else {
        Check::new(
            "inventory",
            Status::Fail,
            format!(
                "{} of the {} tags of the inventory taken {} are gone or changed (listed below), {} kept{added}: \
                 find what moved the storage or the images (registry-up status, the data folder, the registry \
                 image) before anything is written to the registry",
                c.changed.len(),
                baseline.counts.tags,
                baseline.taken,
                c.kept
            ),
            took,
        )
    }
}

/// Whether a push of `size` bytes leaves the filesystem's floor ([`crate::disk::floor`]) free for the
/// registry: the one rule of the round trip's room and of the storage check.
fn leaves_room(usage: &crate::disk::Usage, size: u64) -> bool {
    usage.free >= size.saturating_add(crate::disk::floor(usage.total))
}

/// Why a push of `size` bytes must not be made into `dir`: it would leave less than the floor free (or
/// the free space cannot be read).
fn no_room(dir: &Path, size: u64) -> Option<String> {
    match crate::disk::Usage::of(dir) {
        Some(usage) if leaves_room(&usage, size) => None,
        Some(usage) => Some(format!(
            "not run: a push of {} into {} would leave less than {} free there ({} free now), which is an outage \
             of its own; run with a smaller --size, or free space first",
            HumanBytes(size),
            dir.display(),
            HumanBytes(crate::disk::floor(usage.total)),
            HumanBytes(usage.free)
        )),
        None => Some(format!(
            "not run: the free space of {} cannot be read, so a push could fill it; check that folder",
            dir.display()
        )),
    }
}

/// Free space where the registry writes: a full disk is the usual cause of failed pushes.
fn storage(dir: &Path, size: u64, marks: crate::disk::Watermarks) -> Check {
    let t = Instant::now();
    let mib = |n: u64| format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0));
    let Some(usage) = crate::disk::Usage::of(dir) else {
        return Check::new(
            "storage",
            Status::Fail,
            format!("cannot read the free space of {}", dir.display()),
            t.elapsed(),
        );
    };
    let (status, detail) = match (usage.free, marks.level(&usage)) {
        // The round trip stores its layer once, and must leave room for the registry's own pushes.
        (free, _) if !leaves_room(&usage, size) => (
            Status::Fail,
            format!(
                "the data directory {} is full or nearly so: {} free, and a push of {} would leave less than {} \
                 for the registry; free space or grow the filesystem",
                dir.display(),
                mib(free),
                mib(size),
                mib(crate::disk::floor(usage.total))
            ),
        ),
        (free, crate::disk::Level::Fine) if free < crate::disk::warn_below(usage.total) => (
            Status::Warn,
            format!("only {} free in {}: pushes will soon fail", mib(free), dir.display()),
        ),
        (_, crate::disk::Level::Fine) => (Status::Pass, format!("{} is {usage}", dir.display())),
        (_, level) => {
            let (name, pct) = match level {
                crate::disk::Level::Critical => ("critical", marks.critical),
                _ => ("high", marks.high),
            };
            (
                Status::Warn,
                format!(
                    "{} is {usage}, at or above the {name} watermark of {pct} %: free space (delete images, then \
                     registry-up gc) or grow the filesystem",
                    dir.display()
                ),
            )
        }
    };
    Check::new("storage", status, detail, t.elapsed())
}

/// The pod check, from one `podman container inspect` of the pod's two containers (each podman call
/// costs tens of milliseconds of CPU, which a small verify feels), and the registry's version by the image
/// ID that inspect reports.
fn pod_facts(pod: &Pod) -> (Check, std::result::Result<String, String>, Option<Vec<String>>) {
    let t = Instant::now();
    let names = [crate::render::REGISTRY_CONTAINER, crate::render::NGINX_CONTAINER]
        .map(|c| crate::render::container_name(&pod.name, c));
    let infos = match pod.podman.inspect_containers(&[&names[0], &names[1]]) {
        Err(e) => {
            let check = Check::new("pod", Status::Fail, e.message, t.elapsed());
            return (check, Err("Podman could not be asked".into()), None);
        }
        Ok(None) => {
            let detail = format!(
                "the pod {} or one of its containers ({}) does not exist: run registry-up up",
                pod.name,
                names.join(", ")
            );
            let check = Check::new("pod", Status::Fail, detail, t.elapsed());
            return (check, Err("the registry container does not exist".into()), None);
        }
        Ok(Some(infos)) => infos,
    };
    let check = pod_health(&pod.name, &infos, t);
    let registry = &infos[0];
    let version = if registry.state.eq_ignore_ascii_case("running") {
        version::of(&pod.podman, &names[0], &registry.image_id, &pod.version)
            .map(|v| format!("{v} (image {})", &registry.image_id[..registry.image_id.len().min(12)]))
    } else {
        Err("the registry container is not running".into())
    };
    (check, version, Some(registry.env.clone()))
}

fn pod_health(pod: &str, containers: &[crate::runtime::podman::ContainerInfo], t: Instant) -> Check {
    let parts: Vec<String> = containers
        .iter()
        .map(|c| format!("{} {} (restarts {})", c.name, c.state.to_lowercase(), c.restarts))
        .collect();
    let detail = format!("pod {pod}: {}", parts.join(", "));
    let running = containers.iter().all(|c| c.state.eq_ignore_ascii_case("running"));
    // Same-named containers outside one pod would not share its network and socket volume.
    let one_pod = containers
        .iter()
        .all(|c| !c.pod.is_empty() && c.pod == containers[0].pod);
    if !one_pod {
        Check::new(
            "pod",
            Status::Fail,
            format!("{detail}, but they are not the containers of one pod: run registry-up up to make the pod again"),
            t.elapsed(),
        )
    } else if !running {
        Check::new(
            "pod",
            Status::Fail,
            format!("{detail}; start it again with registry-up up"),
            t.elapsed(),
        )
    } else if containers.iter().any(|c| c.restarts > 0) {
        Check::new(
            "pod",
            Status::Warn,
            format!("{detail}: a container restarted, see podman logs"),
            t.elapsed(),
        )
    } else {
        Check::new("pod", Status::Pass, detail, t.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1TB").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }

    #[test]
    fn report_status_and_strict() {
        let report = |statuses: &[Status], strict| {
            let checks = statuses
                .iter()
                .map(|s| Check::new("x", *s, "d", Duration::ZERO))
                .collect();
            Report::new("r:1".into(), checks, None, strict, Duration::ZERO)
        };
        assert_eq!(report(&[Status::Pass, Status::Warn], false).status, Status::Warn);
        assert_eq!(report(&[Status::Pass, Status::Warn], true).status, Status::Fail);
        let r = report(&[Status::Pass, Status::Skip, Status::Fail], false);
        assert_eq!((r.status, r.summary.failed, r.summary.skipped), (Status::Fail, 1, 1));
    }
}
