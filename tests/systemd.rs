//! Under a real systemd: Debian guests booted with systemd-nspawn (bookworm: Podman 4.3, classic unit;
//! trixie: Podman 5, Quadlet), with the real binary and the stand-in archives copied in. The appliance
//! must choose its unit kind by itself, come back when its pod is killed, after a clean reboot and after
//! a power cut, with every image, and a lingering user's appliance must come back with no login.
//!
//! The guests are common/guest.rs's.

mod common;

use common::guest::{booted, Guest, GUEST_BIN, GUEST_IMAGES};
use common::{assert_exit, text};

fn up_args(port: &str) -> Vec<String> {
    [
        GUEST_BIN,
        "--domain",
        "registry.test",
        "--port",
        port,
        "--registry-image",
        common::REGISTRY_IMAGE,
        "--nginx-image",
        common::NGINX_IMAGE,
        "--image-archive",
        &format!("{GUEST_IMAGES}/registry.tar"),
        "--image-archive",
        &format!("{GUEST_IMAGES}/nginx.tar"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The appliance survives a killed pod, a clean reboot and a power cut, with its images.
fn survives_everything(guest: &mut Guest, expect_kind: &str) {
    let args = up_args("8443");
    let out = guest.run_ok(None, &args, "up in the guest");
    assert!(
        text(&out.stdout).contains(expect_kind),
        "the right kind of unit was chosen:\n{}",
        text(&out.stdout)
    );
    assert!(text(&out.stdout).contains("ok   verify push/pull"));
    assert!(
        !text(&out.stderr).contains("will not come back"),
        "no reboot warning under systemd"
    );

    let pushed = guest.push(
        &format!("oci-archive:{GUEST_IMAGES}/nginx.tar"),
        "registry.test:8443/keep/nginx:1",
    );
    let still_there = |g: &Guest| g.has_digest("registry.test:8443/keep/nginx:1", &pushed);

    // A killed pod: systemd starts it again.
    assert!(guest.exec(&["podman", "pod", "kill", "registry-pod"]).status.success());
    guest.wait_for(60, "systemd restarts a killed pod", || guest.verify_ok(&[]));
    assert!(still_there(guest));

    // logs: both containers and the unit's own journal lines (the restart among them), in one stream.
    let out = guest.run(None, &[GUEST_BIN, "logs"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    for (source, content) in [
        ("registry | ", "/v2/"),
        ("nginx    | ", "\"GET /v2/"),
        ("systemd  | ", "registry-pod"),
    ] {
        assert!(
            said.lines().any(|l| l.starts_with(source) && l.contains(content)),
            "no {source:?} line with {content:?}:\n{said}"
        );
    }
    assert!(!said.contains(" 1970-"), "only lines with their own time:\n{said}");

    // A clean reboot, then a power cut: the appliance is back by itself, nothing lost.
    guest.poweroff();
    guest.boot();
    guest.wait_for(90, "the appliance is back after a reboot", || {
        guest.verify_ok(&["--deep"])
    });
    assert!(still_there(guest), "the image pushed before the reboot is there");
    guest.power_cut();
    guest.boot();
    guest.wait_for(90, "the appliance is back after a power cut", || {
        guest.verify_ok(&["--deep"])
    });
    assert!(still_there(guest), "the image pushed before the power cut is there");
}

#[test]
fn bookworm_podman_4_3_gets_a_classic_unit_that_survives_reboots_and_power_cuts() {
    let Some(mut guest) = booted("bookworm", "") else {
        return;
    };
    survives_everything(&mut guest, "systemd unit registry-pod.service enabled and started");
    let unit = guest.read("/etc/systemd/system/registry-pod.service");
    assert!(
        unit.contains("Type=notify") && unit.contains("Before=podman-restart.service"),
        "{unit}"
    );
    // The maintenance timer: enabled with the appliance; the service it starts runs gc and verify.
    let mut args = up_args("8443");
    args.extend(["--maintenance".into(), "daily".into()]);
    let out = guest.run_ok(None, &args, "up --maintenance daily in the guest");
    assert!(
        text(&out.stdout).contains("registry-pod-maintenance.timer runs registry-up maintain daily"),
        "{}",
        text(&out.stdout)
    );
    let enabled = guest.exec(&["systemctl", "is-enabled", "registry-pod-maintenance.timer"]);
    assert_eq!(text(&enabled.stdout).trim(), "enabled");
    let ran = guest.exec(&["systemctl", "start", "registry-pod-maintenance.service"]);
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    let journal = guest.exec(&["journalctl", "-u", "registry-pod-maintenance.service", "--no-pager"]);
    assert!(text(&journal.stdout).contains("gc freed"), "{}", text(&journal.stdout));
    // down removes the unit, the timer and the pod; the data stays.
    let out = guest.run(None, &[GUEST_BIN, "down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(guest.read("/etc/systemd/system/registry-pod.service").is_empty());
    for unit in ["registry-pod-maintenance.timer", "registry-pod-maintenance.service"] {
        assert!(
            guest.read(&format!("/etc/systemd/system/{unit}")).is_empty(),
            "{unit} left behind"
        );
    }
    assert!(!guest
        .exec(&["podman", "pod", "exists", "registry-pod"])
        .status
        .success());
}

#[test]
fn trixie_podman_5_gets_a_quadlet_and_a_lingering_user_comes_back_without_login() {
    let Some(mut guest) = booted("trixie", "") else { return };
    survives_everything(&mut guest, "Quadlet registry-pod.kube started as registry-pod.service");
    assert!(!guest.read("/etc/containers/systemd/registry-pod.kube").is_empty());
    // The unit Quadlet generated from it passes systemd-analyze verify with nothing to say.
    let out = guest.exec(&[
        "systemd-analyze",
        "verify",
        "/run/systemd/generator/registry-pod.service",
    ]);
    assert!(
        out.status.success() && text(&out.stderr).trim().is_empty(),
        "{}",
        text(&out.stderr)
    );

    // Switching kinds removes the other one first: never two units for one pod.
    let mut args = up_args("8443");
    args.extend(["--systemd".into(), "unit".into()]);
    let out = guest.run_ok(None, &args, "up --systemd unit in the guest");
    assert!(
        text(&out.stdout).contains("removed the Quadlet"),
        "{}",
        text(&out.stdout)
    );
    assert!(guest.read("/etc/containers/systemd/registry-pod.kube").is_empty());
    assert!(!guest.read("/etc/systemd/system/registry-pod.service").is_empty());

    // A prepared user with lingering: the user's Quadlet comes back after a reboot with no login.
    assert!(guest.exec(&["useradd", "-m", "alice"]).status.success());
    let out = guest.run(None, &[GUEST_BIN, "prepare-user", "alice"]);
    assert!(
        text(&out.stdout).contains("linger"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        guest.root.join("var/lib/systemd/linger/alice").exists(),
        "lingering is on"
    );
    let uid: u32 = text(&guest.exec(&["id", "-u", "alice"]).stdout).trim().parse().unwrap();
    guest.wait_for(30, "alice's user manager runs", || {
        guest
            .exec(&["test", "-S", &format!("/run/user/{uid}/bus")])
            .status
            .success()
    });
    let args = up_args("8444");
    let out = guest.run_ok(Some(("alice", uid)), &args, "rootless up in the guest");
    assert!(
        text(&out.stdout).contains("Quadlet registry-pod.kube started"),
        "{}",
        text(&out.stdout)
    );
    guest.poweroff();
    guest.boot();
    let ca = "/home/alice/.config/registry-up/ca.crt";
    guest.wait_for(120, "alice's appliance is up after a reboot, with no login", || {
        guest
            .exec(&[
                "curl",
                "-sf",
                "-o",
                "/dev/null",
                "--cacert",
                ca,
                "https://registry.test:8444/v2/",
            ])
            .status
            .success()
    });
}

/// On a Fedora/RHEL-like host: firewalld runs and drops what no zone allows. up names the port and the
/// command; --open-firewall opens it (a client in another network namespace connects); down closes it and
/// leaves what the administrator opened. Podman 5's skopeo pulls over IPv6 with the CA trust put in place.
#[test]
fn trixie_with_firewalld_the_port_is_named_opened_and_closed_again() {
    let Some(guest) = booted("trixie", "-firewalld") else {
        return;
    };
    let ok = |cmd: &[&str]| {
        let out = guest.exec(cmd);
        assert!(
            out.status.success(),
            "{cmd:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    ok(&["systemctl", "start", "firewalld"]);
    // An opening of the administrator's own, which down must leave alone.
    ok(&["firewall-cmd", "--permanent", "--add-port=9999/tcp"]);
    ok(&["firewall-cmd", "--add-port=9999/tcp"]);
    // Another machine: a namespace behind a veth pair, in the guest's default zone like any new link.
    for cmd in [
        "ip netns add client",
        "ip link add fw0 type veth peer name fw1",
        "ip link set fw1 netns client",
        "ip addr add 10.77.0.1/24 dev fw0",
        "ip link set fw0 up",
        "ip -n client addr add 10.77.0.2/24 dev fw1",
        "ip -n client link set fw1 up",
        "ip -n client link set lo up",
    ] {
        ok(&cmd.split(' ').collect::<Vec<_>>());
    }
    let client_connects = || {
        guest
            .exec(&[
                "ip",
                "netns",
                "exec",
                "client",
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "--max-time",
                "3",
                "--cacert",
                "/etc/registry-up/ca.crt",
                "--resolve",
                "registry.test:8443:10.77.0.1",
                "https://registry.test:8443/v2/",
            ])
            .status
            .success()
    };

    std::fs::write(
        guest.root.join("etc/hosts"),
        format!("{}::1 registry6.test\n", guest.read("/etc/hosts")),
    )
    .unwrap();
    let mut args = up_args("8443");
    args.extend(["--san".into(), "::1".into(), "--san".into(), "registry6.test".into()]);
    let out = guest.run_ok(None, &args, "up in the guest with firewalld");
    let said = text(&out.stderr);
    assert!(said.contains("firewalld drops 8443/tcp in zone public"), "{said}");
    assert!(
        said.contains("firewall-cmd --zone=public --add-port=8443/tcp && firewall-cmd --permanent --zone=public --add-port=8443/tcp"),
        "{said}"
    );
    assert!(
        !client_connects(),
        "firewalld lets the client in before the port is opened"
    );

    args.push("--open-firewall".into());
    let out = guest.run_ok(None, &args, "up --open-firewall in the guest");
    assert!(
        text(&out.stdout).contains("opened 8443/tcp in firewalld zone public"),
        "{}",
        text(&out.stdout)
    );
    assert!(client_connects(), "the client does not get in after --open-firewall");
    assert!(
        ok(&["firewall-cmd", "--permanent", "--query-port=8443/tcp"]).contains("yes"),
        "kept across reboots"
    );
    assert!(ok(&[GUEST_BIN, "doctor"]).contains("firewalld allows 8443/tcp in zone public"));

    // trust writes the CA where containers/image looks for each name, an IPv6 address in brackets; Podman
    // 5's skopeo cannot name a registry by an IPv6 literal (containers/skopeo#631), so it reaches [::1] by a
    // name for ::1 only, trusting the CA with no flag.
    let trusted = ok(&[GUEST_BIN, "trust"]);
    assert!(
        trusted.contains("/etc/containers/certs.d/[::1]:8443/ca.crt"),
        "{trusted}"
    );
    assert!(
        trusted.contains("/etc/containers/certs.d/registry6.test:8443/ca.crt"),
        "{trusted}"
    );
    ok(&[
        "skopeo",
        "copy",
        "-q",
        &format!("oci-archive:{GUEST_IMAGES}/nginx.tar"),
        "docker://registry6.test:8443/v6/nginx:1",
    ]);
    assert!(ok(&["skopeo", "inspect", "docker://registry6.test:8443/v6/nginx:1"]).contains("Digest"));

    let out = guest.run(None, &[GUEST_BIN, "down"]);
    assert_exit(&out, 0, "down in the guest");
    assert!(
        text(&out.stdout).contains("Closed 8443/tcp in firewalld zone public again"),
        "{}",
        text(&out.stdout)
    );
    let out = guest.exec(&["firewall-cmd", "--query-port=8443/tcp"]);
    assert!(!out.status.success(), "8443/tcp is still open at runtime");
    let out = guest.exec(&["firewall-cmd", "--permanent", "--query-port=8443/tcp"]);
    assert!(
        !out.status.success(),
        "8443/tcp is still open in the permanent configuration"
    );
    assert!(
        ok(&["firewall-cmd", "--query-port=9999/tcp"]).contains("yes"),
        "down closed the administrator's port"
    );
    assert!(ok(&["firewall-cmd", "--permanent", "--query-port=9999/tcp"]).contains("yes"));
}
