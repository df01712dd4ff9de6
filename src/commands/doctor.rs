//! `registry-up doctor`: the preflight for root and rootless hosts. Every check says ok, or the problem
//! and its fix. The rootless checks are shared with `prepare-user`.

use std::net::ToSocketAddrs;
use std::path::Path;

use crate::cli::DoctorArgs;
use crate::error::{ExitStatus, Result};
use crate::firewall::Verdict;
use crate::host::{HostFacts, PortUse};
use crate::listen::Listen;
use crate::preflight::{print_findings, rootless_checks, Finding};
use crate::runtime::podman::{Podman, PodmanError};
use crate::state::State;

/// Whether `ip` is an address of this host: binding to it succeeds only then.
fn is_local(ip: std::net::IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

pub fn command(args: &DoctorArgs, host: &HostFacts) -> Result<ExitStatus> {
    let state = crate::state::read_state(&args.appliance.config_dir).ok().flatten();
    let rootless = !host.root;
    let mut findings = podman_findings(state.as_ref());
    if rootless {
        findings.extend(rootless_findings(host));
    }
    let port = args
        .port
        .or(state.as_ref().map(|s| s.port))
        .unwrap_or(host.default_port());
    let installed_here = state.as_ref().is_some_and(|s| s.port == port);
    let saved: &[String] = state.as_ref().map(|s| s.listen.as_slice()).unwrap_or_default();
    let listen = Listen::parse(saved, true, host.ipv6, &host.addresses()).unwrap_or(Listen::All { ipv6: host.ipv6 });
    findings.push(port_finding(host, port, &listen, installed_here));
    let pod = state
        .as_ref()
        .map_or(crate::settings::DEFAULT_POD_NAME, |s| s.pod_name.as_str());
    findings.push(firewall_finding(port, &listen, pod, host));
    if let Some(domain) = args.domain.clone().or(state.as_ref().map(|s| s.domain.clone())) {
        findings.push(domain_finding(&domain, port));
    }
    // An appliance on S3 keeps no images on this host.
    if state.as_ref().is_none_or(|s| s.s3.is_none()) {
        let data_dir = state
            .as_ref()
            .map(|s| s.data_dir.clone().into())
            .unwrap_or_else(|| host.default_data_dir());
        findings.push(disk_finding(&data_dir));
    }
    findings.extend(systemd_findings(host));
    findings.push(selinux_finding());

    let problems = findings.iter().filter(|f| f.is_problem()).count();
    if args.json {
        let doc = serde_json::json!({ "ok": problems == 0, "rootless": rootless, "checks": findings });
        println!("{}", serde_json::to_string_pretty(&doc).expect("serialises"));
    } else {
        print_findings(&findings);
        println!("{} checks, {problems} problem(s)", findings.len());
    }
    Ok(ExitStatus::verdict(problems == 0))
}

/// Podman, and whether it can run a container at all.
fn podman_findings(state: Option<&State>) -> Vec<Finding> {
    let mut findings = Vec::new();
    match Podman::find().and_then(|p| p.version().map(|v| (p, v))) {
        Err(e) => findings.push(Finding::problem("podman", e.message, "apt-get install podman runc")),
        Ok((podman, version)) => {
            findings.push(Finding::ok("podman", format!("{} {version}", podman.bin.display())));
            let candidates: Vec<String> = state
                .iter()
                .map(|s| s.registry_image.clone())
                .chain([crate::settings::DEFAULT_REGISTRY_IMAGE.to_string()])
                .collect();
            match candidates.iter().find(|i| podman.image_exists(i).unwrap_or(false)) {
                // Not a problem on a connected host: up pulls what is missing.
                None => findings.push(Finding::info(
                    "runtime",
                    "no registry image is here yet, so no container could be tried: registry-up up pulls the \
                     images (--pull missing), or loads them from --image-archive or --bundle on an air-gapped host",
                )),
                Some(image) => match podman.run_once(image, &["/bin/registry", "--version"]) {
                    Ok(out) => findings.push(Finding::ok("runtime", format!("ran a container of {image}: {out}"))),
                    Err(PodmanError { stderr: why, .. }) => findings.push(Finding::problem(
                        "runtime",
                        format!("a container of {image} does not start: {why}"),
                        "see `podman info`; on these hosts Podman needs runc and `default_ulimits = []` in containers.conf",
                    )),
                },
            }
        }
    }
    findings
}

/// What rootless Podman needs, and this user's subordinate IDs.
fn rootless_findings(host: &HostFacts) -> Vec<Finding> {
    let mut findings = rootless_checks();
    let user = &host.user;
    findings.push(match crate::subid::range_of(Path::new("/etc/subuid"), user) {
        Some((start, count)) if count >= 65536 => Finding::ok("subuid", format!("{user} has {start}:{count}")),
        _ => Finding::problem(
            "subuid",
            format!("{user} has no subordinate UID range of 65536"),
            format!("as root: registry-up prepare-user {user}"),
        ),
    });
    findings
}

fn port_finding(host: &HostFacts, port: u16, listen: &Listen, installed_here: bool) -> Finding {
    let start = host.unprivileged_port_start;
    if !host.root && port < start {
        return Finding::problem(
            "port",
            format!("port {port} is below net.ipv4.ip_unprivileged_port_start ({start})"),
            format!("use --port {start} or higher, or as root: sysctl -w net.ipv4.ip_unprivileged_port_start={port} (persist in /etc/sysctl.d/)"),
        );
    }
    match crate::host::port_use(&listen.sockets(port)) {
        PortUse::Free => Finding::ok("port", format!("{port} is free and bindable on {listen}")),
        PortUse::Taken(_) if installed_here => {
            Finding::ok("port", format!("{port} is in use by the installed appliance"))
        }
        PortUse::Taken(owner) => {
            let who = owner.map(|(pid, n)| format!(" by {n} (pid {pid})")).unwrap_or_default();
            Finding::problem(
                "port",
                format!("{port} is already in use{who}"),
                "stop that program, or choose another --port",
            )
        }
    }
}

/// Whether the host firewall lets clients reach the port.
fn firewall_finding(port: u16, listen: &Listen, pod: &str, host: &HostFacts) -> Finding {
    match crate::firewall::check(port, listen, pod, host) {
        Verdict::Open(detail) => Finding::ok("firewall", detail),
        Verdict::Unknown(why) => Finding::info("firewall", format!("not checked: {why}")),
        Verdict::Closed { what, openings } => Finding::problem(
            "firewall",
            format!("{what}: clients on other hosts cannot connect"),
            format!(
                "registry-up up --open-firewall, or by hand:\n{}",
                crate::firewall::commands(&openings)
            ),
        ),
    }
}

/// Whether the name resolves, to this host.
fn domain_finding(domain: &str, port: u16) -> Finding {
    match (domain, port).to_socket_addrs() {
        Err(e) => Finding::problem(
            "domain",
            format!("{domain} does not resolve ({e})"),
            format!("add it to DNS, or to /etc/hosts on this host and every client: '<this host's address> {domain}'"),
        ),
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.map(|a| a.ip()).collect();
            let shown: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
            if addrs.iter().any(|a| is_local(*a)) {
                Finding::ok(
                    "domain",
                    format!("{domain} resolves to {}, an address of this host", shown.join(", ")),
                )
            } else {
                Finding::problem(
                    "domain",
                    format!(
                        "{domain} resolves to {}, which is not an address of this host",
                        shown.join(", ")
                    ),
                    "point the name at this host in DNS or /etc/hosts",
                )
            }
        }
    }
}

fn disk_finding(data_dir: &Path) -> Finding {
    let mut probe = data_dir.to_path_buf();
    while !probe.exists() && probe.pop() {}
    match crate::host::free_bytes(&probe) {
        Some(free) if free >= 1 << 30 => Finding::ok(
            "disk",
            format!(
                "{:.1} GiB free for {}",
                free as f64 / (1u64 << 30) as f64,
                data_dir.display()
            ),
        ),
        Some(free) => Finding::problem(
            "disk",
            format!(
                "only {:.0} MiB free for {}",
                free as f64 / (1u64 << 20) as f64,
                data_dir.display()
            ),
            "free space, or choose another --data-dir",
        ),
        None => Finding::problem(
            "disk",
            format!("cannot read the free space of {}", probe.display()),
            "check the path",
        ),
    }
}

/// systemd as init, and lingering for a user.
fn systemd_findings(host: &HostFacts) -> Vec<Finding> {
    let mut findings = Vec::new();
    if host.systemd_running {
        findings.push(Finding::ok(
            "systemd",
            "running as init: the appliance gets a unit and comes back after reboots",
        ));
        if !host.root {
            let user = &host.user;
            if !crate::runtime::systemd::linger_enabled(user) {
                findings.push(Finding::problem(
                    "linger",
                    format!("lingering is off for {user}: the pod stops at logout and does not start at boot"),
                    format!("loginctl enable-linger {user}"),
                ));
            }
        }
    } else {
        findings.push(Finding::info(
            "systemd",
            "not running as init: the pod is started directly and will not come back after a reboot",
        ));
    }
    findings
}

fn selinux_finding() -> Finding {
    match std::fs::read_to_string("/sys/fs/selinux/enforce").map(|s| s.trim() == "1") {
        Ok(true) => Finding::info(
            "selinux",
            "enforcing: the pod YAML asks Podman to relabel every volume (:Z on each mount), so no manual chcon is needed",
        ),
        _ => Finding::info("selinux", "not enforcing: the pod YAML's :Z relabel options are a no-op here"),
    }
}
