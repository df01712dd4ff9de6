//! `registry-up status`: what is installed and how it is doing. Exit 0 healthy, 1 degraded, 4 not
//! installed.

use std::path::Path;

use indicatif::HumanBytes;
use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::cli::StatusArgs;
use crate::error::{ExitStatus, Result};
use crate::render::{NGINX_CONTAINER, REGISTRY_CONTAINER};
use crate::runtime::podman::{ContainerInfo, Podman};
use crate::runtime::systemd::Systemctl;
use crate::state::{Service, State};

#[derive(Serialize)]
struct Status {
    installed: bool,
    healthy: bool,
    problems: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    settings: Option<State>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod: Option<Pod>,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate: Option<Certificate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Data>,
    #[serde(skip_serializing_if = "Option::is_none")]
    s3: Option<S3Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<ServiceStatus>,
    /// The last inventory of what the appliance served (verify --deep), without its tag list.
    #[serde(skip_serializing_if = "Option::is_none")]
    inventory: Option<LastInventory>,
}

#[derive(Serialize)]
struct LastInventory {
    taken: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    registry_image: Option<String>,
    counts: crate::verify::inventory::Counts,
    /// What `describe_counts` says, for the text.
    #[serde(skip)]
    described: String,
}

/// With S3 storage: where, and whether the bucket answered the registry's key just now.
#[derive(Serialize)]
struct S3Status {
    endpoint: String,
    bucket: String,
    region: String,
    /// "answers", or why not.
    bucket_state: String,
    /// The replicas the bucket records (`host:port`), this one among them.
    replicas: Vec<String>,
    /// "gc on HOST since TIME" while a gc holds every replica read-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    gc_hold: Option<String>,
}

#[derive(Serialize)]
struct Pod {
    name: String,
    state: String,
    containers: Vec<Container>,
}

#[derive(Serialize)]
struct Container {
    #[serde(flatten)]
    info: ContainerInfo,
    uptime_seconds: Option<i64>,
}

#[derive(Serialize)]
struct Certificate {
    subject: String,
    not_after: String,
    days_left: i64,
}

#[derive(Serialize)]
struct Data {
    path: String,
    size_bytes: u64,
    free_bytes: Option<u64>,
    /// Percent of the data filesystem in use, and the watermarks that judge it.
    used_percent: Option<u8>,
    high_watermark: u8,
    critical_watermark: u8,
    /// The maintenance run made the appliance read-only: the disk was above the critical watermark.
    read_only_disk_full: bool,
}

#[derive(Serialize)]
struct ServiceStatus {
    /// systemd-unit or direct
    kind: Service,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit_state: Option<String>,
}

fn certificate(path: &Path, problems: &mut Vec<String>) -> Option<Certificate> {
    let text = std::fs::read_to_string(path).ok()?;
    let der = crate::pki::parse_pem(&text).ok()?;
    let (_, cert) = X509Certificate::from_der(&der).ok()?;
    let not_after = cert.validity().not_after.to_datetime();
    let days_left = (not_after - OffsetDateTime::now_utc()).whole_days();
    if days_left < crate::pki::RENEW_BEFORE_DAYS {
        problems.push(format!(
            "the server certificate has {days_left} days left: run registry-up up to renew it"
        ));
    }
    Some(Certificate {
        subject: cert.subject().to_string(),
        not_after: not_after.date().to_string(),
        days_left,
    })
}

fn uptime(started_at: &str) -> Option<i64> {
    // Podman prints RFC 3339 with nanoseconds, e.g. 2026-11-29T07:30:45.123456789Z.
    let t = OffsetDateTime::parse(started_at, &time::format_description::well_known::Rfc3339).ok()?;
    Some((OffsetDateTime::now_utc() - t).whole_seconds())
}

pub fn command(args: &StatusArgs, rt: &tokio::runtime::Runtime) -> Result<ExitStatus> {
    let Some(state) = crate::state::read_state(&args.appliance.config_dir)? else {
        let status = Status {
            installed: false,
            healthy: false,
            problems: vec![format!(
                "no appliance is installed in {}",
                args.appliance.config_dir.display()
            )],
            settings: None,
            pod: None,
            certificate: None,
            data: None,
            s3: None,
            service: None,
            inventory: None,
        };
        if args.json {
            println!("{}", serde_json::to_string_pretty(&status).expect("serialises"));
        } else {
            println!(
                "not installed: no state.json in {} (run registry-up up)",
                args.appliance.config_dir.display()
            );
        }
        return Ok(ExitStatus::NotInstalled);
    };
    let mut problems = Vec::new();
    let podman = Podman::find()?;
    let pod = match podman.pod_status(&state.pod_name)? {
        None => {
            problems.push(format!("the pod {} does not exist: run registry-up up", state.pod_name));
            None
        }
        Some(pod_status) => {
            if !pod_status.healthy() {
                problems.push(format!(
                    "the pod {} is {}",
                    state.pod_name,
                    pod_status.state.to_lowercase()
                ));
            }
            let mut containers = Vec::new();
            for c in [REGISTRY_CONTAINER, NGINX_CONTAINER] {
                let name = crate::render::container_name(&state.pod_name, c);
                match podman.container(&name)? {
                    Some(info) => {
                        if info.state != "running" {
                            problems.push(format!("the container {name} is {}", info.state));
                        }
                        let uptime_seconds = (info.state == "running").then(|| uptime(&info.started_at)).flatten();
                        containers.push(Container { info, uptime_seconds });
                    }
                    None => problems.push(format!("the container {name} does not exist")),
                }
            }
            Some(Pod {
                name: state.pod_name.clone(),
                state: pod_status.state.to_lowercase(),
                containers,
            })
        }
    };
    let certificate = certificate(
        &args.appliance.config_dir.join(crate::layout::SERVER_CERT),
        &mut problems,
    );
    let s3 = state
        .s3
        .as_ref()
        .map(|at| s3_status(at, &args.appliance.config_dir, rt, &mut problems));
    let data = match &s3 {
        Some(_) => None,
        None => Some(data(&state, &args.appliance.config_dir, &mut problems)),
    };
    let service = match state.service {
        Service::SystemdUnit | Service::Quadlet => {
            let unit = crate::layout::unit_name(&state.pod_name);
            let unit_state = Systemctl::for_appliance(state.rootless).state(&unit);
            if unit_state != "active" {
                problems.push(format!("the systemd unit {unit} is {unit_state}"));
            }
            ServiceStatus {
                kind: state.service,
                unit: Some(unit),
                unit_state: Some(unit_state),
            }
        }
        Service::Direct => ServiceStatus {
            kind: state.service,
            unit: None,
            unit_state: None,
        },
    };
    // Information, not health: an appliance never deep-verified has none, and a file this user cannot read
    // is shown as not there.
    let inventory =
        crate::verify::inventory::Inventory::read(&args.appliance.config_dir.join(crate::layout::INVENTORY))
            .ok()
            .map(|i| LastInventory {
                described: i.describe_counts(),
                taken: i.taken,
                registry_image: i.registry_image,
                counts: i.counts,
            });
    let status = Status {
        installed: true,
        healthy: problems.is_empty(),
        problems,
        settings: Some(state),
        pod,
        certificate,
        data,
        s3,
        service: Some(service),
        inventory,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status).expect("serialises"));
    } else {
        print_text(&status);
    }
    Ok(ExitStatus::verdict(status.healthy))
}

/// The data folder's use, and its problems.
fn data(state: &State, config_dir: &Path, problems: &mut Vec<String>) -> Data {
    let data_dir = Path::new(&state.data_dir);
    let usage = crate::disk::Usage::of(data_dir);
    let marks = state.watermarks();
    let nginx_conf = std::fs::read_to_string(config_dir.join(crate::layout::NGINX_CONF)).unwrap_or_default();
    let data = Data {
        path: state.data_dir.clone(),
        size_bytes: crate::host::tree_size(data_dir),
        free_bytes: usage.map(|u| u.free),
        used_percent: usage.map(|u| u.percent()),
        high_watermark: marks.high,
        critical_watermark: marks.critical,
        read_only_disk_full: nginx_conf.contains(crate::render::ReadOnly::DiskFull.marker()),
    };
    if config_dir.join(crate::layout::GC_IN_PROGRESS).exists() {
        problems.push(
            "a registry-up gc or backup is running, or was interrupted: nginx may refuse pushes; if none is \
             running, run registry-up up to finish"
                .into(),
        );
    }
    if data.read_only_disk_full {
        problems.push(
            "read-only: the maintenance run found the disk above its critical watermark and wrote nginx's \
             disk-full conf (pulls work, pushes are refused); free space, then registry-up maintain"
                .into(),
        );
    }
    if let Some(u) = usage.filter(|u| marks.level(u) == crate::disk::Level::Critical) {
        problems.push(format!(
            "the data filesystem is {u}, at or above the critical watermark of {} %: free space (delete images, then \
             registry-up gc) or grow it",
            marks.critical
        ));
    }
    match data.free_bytes {
        Some(free) if usage.is_some_and(|u| free < crate::disk::floor(u.total)) => problems.push(format!(
            "only {} free where the registry writes ({}): pushes will fail; free space there",
            HumanBytes(free),
            data_dir.display()
        )),
        None => problems.push(format!("the free space of {} cannot be read", data_dir.display())),
        Some(_) => {}
    }
    data
}

/// Where the S3 storage is, and whether its bucket answers the kept key now (a list of one key).
fn s3_status(
    at: &crate::s3::Location,
    config_dir: &Path,
    rt: &tokio::runtime::Runtime,
    problems: &mut Vec<String>,
) -> S3Status {
    let answer = match crate::s3::read_key(None, config_dir) {
        Err(e) => Err(format!(
            "the bucket was not asked: the kept key cannot be read ({}); as root, or after registry-up up \
             --s3-credentials FILE, status asks it",
            e.message
        )),
        Ok((key, from)) => crate::s3::Bucket::new(at, &key, std::time::Duration::from_secs(10))
            .and_then(|bucket| {
                rt.block_on(bucket.probe(&from.display().to_string(), false))?;
                // The site's records: which replicas, and whether a gc holds them all read-only.
                rt.block_on(async {
                    let replicas = crate::replicas::list(&bucket).await?;
                    let hold = crate::gc_hold::current(&bucket).await?;
                    Ok::<_, String>((replicas, hold))
                })
                .map_err(crate::error::Error::runtime)
            })
            .map_err(|e| format!("the registry's storage does not answer: {}", e.message)),
    };
    let (replicas, gc_hold) = match &answer {
        Ok((replicas, hold)) => (
            replicas.iter().map(crate::replicas::Replica::address).collect(),
            hold.as_ref().map(crate::gc_hold::Record::describe),
        ),
        Err(_) => (Vec::new(), None),
    };
    if let Some(hold) = &gc_hold {
        problems.push(format!(
            "gc's hold stands in the bucket ({hold}): the replicas refuse pushes while it does (registry-up gc \
             or up on that host ends an interrupted one)"
        ));
    }
    let answer = answer.map(|_| ());
    let bucket_state = match answer {
        Ok(()) => "answers".to_string(),
        Err(why) => {
            problems.push(why.clone());
            why
        }
    };
    S3Status {
        endpoint: at.endpoint.clone(),
        bucket: at.bucket.clone(),
        region: at.region.clone(),
        bucket_state,
        replicas,
        gc_hold,
    }
}

fn print_text(s: &Status) {
    let state = s.settings.as_ref().expect("installed");
    println!("{}", if s.healthy { "healthy" } else { "DEGRADED" });
    for p in &s.problems {
        println!("  problem: {p}");
    }
    let sans = if state.sans.is_empty() {
        String::new()
    } else {
        format!(" (also {})", state.sans.join(", "))
    };
    let host = state.url_host();
    println!("registry   https://{host}:{}/{sans}", state.port);
    let listen = if state.listen.is_empty() {
        "every address of this host".to_string()
    } else {
        state.listen.join(", ")
    };
    println!("listen     {listen}");
    let maintenance = state
        .maintenance
        .as_deref()
        .map_or("off (registry-up up --maintenance daily)".to_string(), |m| {
            format!("registry-up maintain runs {m} ({}-maintenance.timer)", state.pod_name)
        });
    println!("maintenance {maintenance}");
    println!(
        "auth       {}",
        state
            .auth_user
            .as_deref()
            .map_or("off".to_string(), |u| format!("on, user {u}"))
    );
    match &s.pod {
        Some(pod) => {
            println!("pod        {} {}", pod.name, pod.state);
            for c in &pod.containers {
                let up = c
                    .uptime_seconds
                    .map_or(String::new(), |t| format!(", up {}", human_duration(t)));
                println!(
                    "  {:<24} {}{up}, restarts {}, image {} ({})",
                    c.info.name,
                    c.info.state,
                    c.info.restarts,
                    c.info.image_name,
                    &c.info.image_id[..c.info.image_id.len().min(12)]
                );
            }
        }
        None => println!("pod        {} missing", state.pod_name),
    }
    if let Some(cert) = &s.certificate {
        println!(
            "certificate {} until {} ({} days left)",
            cert.subject, cert.not_after, cert.days_left
        );
    }
    if let Some(d) = &s.data {
        let free = d
            .free_bytes
            .map_or("unknown".to_string(), |n| HumanBytes(n).to_string());
        println!(
            "data       {} ({} stored, {free} free)",
            d.path,
            HumanBytes(d.size_bytes)
        );
        let used = d.used_percent.map_or("unknown".to_string(), |p| format!("{p} %"));
        let high = if d.used_percent.is_some_and(|p| p >= d.high_watermark) {
            " (above the high watermark: free space soon)"
        } else {
            ""
        };
        println!(
            "disk       {used} used{high}; verify warns at {} %, registry-up maintain makes it read-only at {} %",
            d.high_watermark, d.critical_watermark
        );
    }
    if let Some(at) = &s.s3 {
        println!(
            "storage    S3 bucket {} at {} (region {}): {}",
            at.bucket, at.endpoint, at.region, at.bucket_state
        );
        if !at.replicas.is_empty() {
            println!("replicas   {}", at.replicas.join(", "));
        }
    }
    match &s.inventory {
        Some(i) => println!("inventory  taken {}: {}", i.taken, i.described),
        None => println!("inventory  none yet (registry-up verify --deep takes one)"),
    }
    if let Some(svc) = &s.service {
        match (&svc.unit, &svc.unit_state) {
            (Some(unit), Some(st)) => {
                let kind = if svc.kind == Service::Quadlet {
                    "Quadlet-generated unit"
                } else {
                    "unit"
                };
                println!("systemd    {kind} {unit}, {st}")
            }
            _ => println!("systemd    none: started directly, will not come back after a reboot"),
        }
    }
}

fn human_duration(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86400),
    }
}
