//! Verify: proves a registry works from a client's side. `up` ends with the round trip; `registry-up
//! verify` runs every check (name, TCP, TLS, API, round trip, clean-up, pod health, and with --deep
//! every stored image). Every connection trusts only the appliance's CA, as a configured client would.

mod deep;
mod image;
mod live;
pub mod report;
mod round_trip;
mod target;
mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

pub use live::{checks as live_checks, served_fingerprint, ConfigFile};
pub use report::Status;
pub use round_trip::{round_trip, DEFAULT_SIZE};
pub use target::{chain, wait_ready, Target};

use crate::cli::VerifyArgs;
use crate::error::{Error, Result};
use crate::host::HostName;
use crate::render::State;
use crate::runtime::podman::Podman;
use report::{Check, Report};

/// What to run, besides the target.
pub struct Options {
    pub size: u64,
    pub timeout: Duration,
    pub deep: bool,
    pub jobs: usize,
    pub strict: bool,
    pub progress: bool,
    /// On the appliance host: the registry's data directory, for the storage check.
    pub data_dir: Option<std::path::PathBuf>,
    /// On the appliance host: the config file the registry should be running, for the config check.
    pub config: Option<ConfigFile>,
}

/// Below this much free space the storage check warns.
const STORAGE_WARN_BYTES: u64 = 1 << 30;

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

/// Runs the checks in order; a failed check skips those that depend on it. The pod's health comes from
/// podman, so it is asked in parallel with the network checks.
pub async fn run_checks(
    target: &Target,
    opts: &Options,
    pod: Option<(Podman, String)>,
) -> (Vec<Check>, Option<report::Deep>) {
    let deadline = Instant::now() + opts.timeout;
    let version = pod.clone().map(|(podman, name)| {
        std::thread::spawn(move || {
            podman
                .registry_version(&format!("{name}-{}", crate::render::REGISTRY_CONTAINER))
                .map_err(|e| e.message)
        })
    });
    let pod_check = pod.map(|(podman, name)| std::thread::spawn(move || pod_health(&podman, &name)));
    let mut checks = Vec::new();
    let mut deep_report = None;
    let network = network_checks(target, opts, deadline, &mut checks, &mut deep_report).await;
    let version = version.map(|h| h.join().unwrap_or_else(|_| Err("the version check crashed".into())));
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
            names.push("registry");
            for name in names.into_iter().filter(|n| !done.iter().any(|d| d == n)) {
                checks.push(Check::skipped(name, why));
            }
        }
    }
    if let Some(handle) = pod_check {
        checks.push(
            handle
                .join()
                .unwrap_or_else(|_| Check::new("pod", Status::Fail, "the pod check crashed", Duration::ZERO)),
        );
    }
    if let Some(dir) = &opts.data_dir {
        checks.push(storage(dir, opts.size));
    }
    (checks, deep_report)
}

/// The network checks; Err(reason) when the rest cannot run.
async fn network_checks(
    target: &Target,
    opts: &Options,
    deadline: Instant,
    checks: &mut Vec<Check>,
    deep_report: &mut Option<report::Deep>,
) -> std::result::Result<(), String> {
    // 1. The name resolves.
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

    // 2. TCP connect, to the first address that answers.
    let t = Instant::now();
    let mut connected = None;
    let mut errors = Vec::new();
    for addr in &addrs {
        match tokio::time::timeout(
            remaining(deadline).min(Duration::from_secs(10)),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(_)) => {
                connected = Some(*addr);
                break;
            }
            Ok(Err(e)) => errors.push(format!("{addr}: {e}")),
            Err(_) => errors.push(format!("{addr}: timed out")),
        }
    }
    let Some(addr) = connected else {
        checks.push(Check::new(
            "tcp",
            Status::Fail,
            format!("nothing accepts connections: {}", errors.join("; ")),
            t.elapsed(),
        ));
        return Err("no TCP connection".into());
    };
    checks.push(Check::new(
        "tcp",
        Status::Pass,
        format!("connected to {addr}"),
        t.elapsed(),
    ));

    // 3. TLS, judged piece by piece.
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

    // 4. The registry API answers through the proxy.
    let t = Instant::now();
    let http = target.http_client(remaining(deadline)).map_err(|e| e.message)?;
    let api = match http.get(&target.url("/v2/")).send().await {
        Err(e) => Check::new(
            "api",
            Status::Fail,
            format!("GET /v2/ failed: {}", target::chain(&e)),
            t.elapsed(),
        ),
        Ok(resp) => {
            let code = resp.status().as_u16();
            let version = resp
                .headers()
                .get("docker-distribution-api-version")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            match (code, version) {
                (200 | 401, Some(v)) => Check::new("api", Status::Pass, format!("GET /v2/ -> {code}, Docker-Distribution-Api-Version: {v}"), t.elapsed()),
                (200 | 401, None) => Check::new("api", Status::Fail, format!("GET /v2/ -> {code} without a Docker-Distribution-Api-Version header: this is not a registry, or a proxy drops the header"), t.elapsed()),
                (502..=504, _) => Check::new("api", Status::Fail, format!("GET /v2/ -> {code}: the proxy answers but the registry behind it does not (is the registry container running?)"), t.elapsed()),
                (code, _) => Check::new("api", Status::Fail, format!("GET /v2/ -> HTTP {code}, expected 200"), t.elapsed()),
            }
        }
    };
    checks.push(api);

    // 5. What the running registry enforces: auth as set up, and the config registry-up wrote.
    checks.extend(live::checks(target, opts.config.as_ref(), remaining(deadline)).await);

    // 6 and 7. The round trip, then its clean-up.
    let t = Instant::now();
    match round_trip(target, opts.size, remaining(deadline)).await {
        Ok(trip) => {
            checks.push(Check::new(
                "round-trip",
                Status::Pass,
                trip.summary(),
                t.elapsed() - trip.cleanup.as_ref().copied().unwrap_or_default(),
            ));
            checks.push(match trip.cleanup {
                Ok(took) => Check::new(
                    "cleanup",
                    Status::Pass,
                    format!("deleted the test manifest and blobs of {}", trip.reference),
                    took,
                ),
                Err(e) => Check::new("cleanup", Status::Fail, e.message, Duration::ZERO),
            });
        }
        Err(e) => {
            checks.push(Check::new("round-trip", Status::Fail, e.message, t.elapsed()));
            checks.push(Check::skipped("cleanup", "the round trip failed"));
        }
    }

    // 8. Everything stored.
    if opts.deep {
        let t = Instant::now();
        let left = remaining(deadline);
        let check = match tokio::time::timeout(left, deep::walk(target, left, opts.jobs, opts.progress)).await {
            Err(_) => timed_out("deep", opts.timeout),
            Ok(Err(e)) => Check::new(
                "deep",
                Status::Fail,
                format!("the walk could not finish: {e}"),
                t.elapsed(),
            ),
            Ok(Ok(d)) => {
                let counts = format!(
                    "{} repositories, {} tags, {} manifests, {} blobs",
                    d.repositories, d.tags, d.manifests, d.blobs
                );
                let check = if d.problems.is_empty() {
                    Check::new(
                        "deep",
                        Status::Pass,
                        format!("{counts}: all present, manifest digests match"),
                        t.elapsed(),
                    )
                } else {
                    Check::new(
                        "deep",
                        Status::Fail,
                        format!(
                            "{counts}: {} missing or corrupt item(s), listed below",
                            d.problems.len()
                        ),
                        t.elapsed(),
                    )
                };
                *deep_report = Some(d);
                check
            }
        };
        checks.push(check);
    }
    Ok(())
}

/// Free space where the registry writes: a full disk is the usual cause of failed pushes.
fn storage(dir: &Path, size: u64) -> Check {
    let t = Instant::now();
    let mib = |n: u64| format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0));
    match crate::sys::free_bytes(dir) {
        None => Check::new(
            "storage",
            Status::Fail,
            format!("cannot read the free space of {}", dir.display()),
            t.elapsed(),
        ),
        // The round trip stores its layer once, plus room for the registry's own files.
        Some(free) if free < size + (1 << 20) => Check::new(
            "storage",
            Status::Fail,
            format!(
                "the data directory {} is full: {} free, a push of {} does not fit; free space or grow the filesystem",
                dir.display(),
                mib(free),
                mib(size)
            ),
            t.elapsed(),
        ),
        Some(free) if free < STORAGE_WARN_BYTES => Check::new(
            "storage",
            Status::Warn,
            format!("only {} free in {}: pushes will soon fail", mib(free), dir.display()),
            t.elapsed(),
        ),
        Some(free) => Check::new(
            "storage",
            Status::Pass,
            format!("{:.1} GiB free in {}", free as f64 / (1u64 << 30) as f64, dir.display()),
            t.elapsed(),
        ),
    }
}

fn pod_health(podman: &Podman, pod: &str) -> Check {
    let t = Instant::now();
    match podman.pod_status(pod) {
        Err(e) => Check::new("pod", Status::Fail, e.message, t.elapsed()),
        Ok(None) => Check::new(
            "pod",
            Status::Fail,
            format!("the pod {pod} does not exist: run registry-up up"),
            t.elapsed(),
        ),
        Ok(Some(status)) => {
            let names: Vec<&str> = status.containers.iter().map(|(n, _)| n.as_str()).collect();
            let counts = podman.restart_counts(&names);
            let mut parts = Vec::new();
            let mut restarts_total = 0;
            for ((name, state), restarts) in status.containers.iter().zip(counts) {
                let restarts = restarts.unwrap_or(0);
                restarts_total += restarts;
                parts.push(format!("{name} {} (restarts {restarts})", state.to_lowercase()));
            }
            let detail = format!("pod {pod} {}: {}", status.state.to_lowercase(), parts.join(", "));
            if !status.healthy() {
                Check::new(
                    "pod",
                    Status::Fail,
                    format!("{detail}; start it again with registry-up up"),
                    t.elapsed(),
                )
            } else if restarts_total > 0 {
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
    }
}

/// `registry-up verify`: returns the exit code (0 pass, 1 a check failed).
pub fn command(args: &VerifyArgs, rt: &tokio::runtime::Runtime) -> Result<i32> {
    let start = Instant::now();
    let state_path = args.config_dir.join(crate::render::STATE);
    let state: Option<State> = crate::settings::read_state(&args.config_dir)?;
    let size = parse_size(&args.size).map_err(|e| Error::usage(format!("--size {e}.")))?;
    let domain = match (&args.domain, &state) {
        (Some(d), _) => HostName::parse(d, "domain")?,
        (None, Some(s)) => HostName::parse(&s.domain, "domain in state.json")?,
        (None, None) => {
            return Err(Error::usage(format!(
                "No appliance is installed here ({} is missing): run registry-up up first, or give --domain (with --port and --ca) to check another registry.",
                state_path.display()
            )))
        }
    };
    // The installed appliance, when the target is it.
    let appliance = state
        .as_ref()
        .filter(|s| s.domain == domain.to_string() && args.port.is_none_or(|p| p == s.port));
    let port = args.port.or(appliance.map(|s| s.port)).unwrap_or(443);
    let ca_path = args.ca.clone().or(appliance.map(|s| s.ca_cert.clone().into()));
    let ca_pem = match &ca_path {
        Some(path) => Some(read_ca(path)?),
        None => None,
    };
    let credentials = match (&args.user, appliance.and_then(|s| s.auth_user.as_ref())) {
        (Some(user), _) => Some((user.clone(), crate::secrets::password_from_stdin("--user")?)),
        (None, Some(user)) => {
            let path = args.config_dir.join(crate::render::AUTH_PASSWORD);
            let password = std::fs::read_to_string(&path).map_err(|e| {
                Error::usage(format!(
                    "The appliance requires a password, but {} cannot be read ({e}): run as root, or give --user and --password-stdin.",
                    path.display()
                ))
            })?;
            Some((user.clone(), password.trim_end_matches('\n').to_string()))
        }
        (None, None) => None,
    };
    let target = Target {
        host: domain.url_host(),
        port,
        ca_pem,
        credentials,
    };
    let podman = match appliance {
        Some(_) => Some(Podman::find()?),
        None => None,
    };
    let pod = podman.zip(appliance.map(|s| s.pod_name.clone()));
    let opts = Options {
        size,
        timeout: Duration::from_secs(args.timeout),
        deep: args.deep,
        jobs: args.jobs,
        strict: args.strict,
        progress: !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        data_dir: appliance.map(|s| s.data_dir.clone().into()),
        config: appliance.map(|_| ConfigFile::read(args.config_dir.join(crate::render::REGISTRY_CONFIG))),
    };
    let (checks, deep) = rt.block_on(run_checks(&target, &opts, pod));
    let report = Report::new(target.registry(), checks, deep, opts.strict, start.elapsed());
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serialises")
        );
    } else {
        print!("{}", report.text());
    }
    Ok(if report.status == Status::Fail { 1 } else { 0 })
}

fn read_ca(path: &Path) -> Result<Vec<u8>> {
    let pem = std::fs::read(path).map_err(|e| {
        Error::usage(format!(
            "Cannot read the CA file {} ({e}): give --ca the CA certificate (PEM) clients trust.",
            path.display()
        ))
    })?;
    tls::roots(Some(&pem)).map_err(|e| Error::usage(format!("The CA file {} cannot be used: {e}.", path.display())))?;
    Ok(pem)
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
        let c = |s| Check::new("x", s, "d", Duration::ZERO);
        let r = Report::new(
            "r:1".into(),
            vec![c(Status::Pass), c(Status::Warn)],
            None,
            false,
            Duration::ZERO,
        );
        assert_eq!(r.status, Status::Warn);
        let r = Report::new(
            "r:1".into(),
            vec![c(Status::Pass), c(Status::Warn)],
            None,
            true,
            Duration::ZERO,
        );
        assert_eq!(r.status, Status::Fail);
        let r = Report::new(
            "r:1".into(),
            vec![c(Status::Pass), c(Status::Skip), c(Status::Fail)],
            None,
            false,
            Duration::ZERO,
        );
        assert_eq!((r.status, r.summary.failed, r.summary.skipped), (Status::Fail, 1, 1));
    }
}
