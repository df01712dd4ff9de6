//! Network reach (issue 19), end to end as root: the appliance answers over IPv4 and IPv6 on loopback, an
//! operator pins it to one address with --listen, and verify asks every address a name has.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{check, mtimes, skopeo_copy, skopeo_ok, verify_json, Appliance, HostsEntry, Run};

fn connects(addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().unwrap();
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

fn on(app: &Appliance, args: &[&str]) -> Run {
    Run::bin().args(args).config_dir(app.config_dir())
}

/// The appliance for `--domain localhost --san ::1 --san 127.0.0.1`, as a new user would start it, plus a
/// name that resolves to ::1 only ([`common::dual_stack_args`]).
fn loopback() -> Option<(Appliance, String, HostsEntry)> {
    let app = Appliance::e2e()?;
    let v6_name = format!("v6-{}", app.domain);
    let v6 = HostsEntry::add_address(&v6_name, "::1");
    Run::up(&app)
        .args(common::dual_stack_args(&v6_name))
        .stdout_has("ok   verify push/pull")
        .run();
    Some((app, v6_name, v6))
}

#[test]
fn a_push_over_ipv4_is_pulled_over_ipv6_and_verify_passes_for_an_ipv6_literal() {
    let Some((app, v6_name, _v6)) = loopback() else { return };
    let port = app.port;
    let cert_dir = app.config_dir();
    let [_, nginx_tar] = common::image_archives();
    let pushed = skopeo_copy(
        &format!("oci-archive:{}", nginx_tar.display()),
        &format!("docker://127.0.0.1:{port}/dual/nginx:1"),
        &cert_dir,
        None,
    );
    let work = tempfile::tempdir().unwrap();
    let pulled = skopeo_copy(
        &format!("docker://{v6_name}:{port}/dual/nginx:1"),
        &format!("dir:{}", work.path().join("pulled").display()),
        &cert_dir,
        None,
    );
    assert_eq!(
        pushed, pulled,
        "the image pulled over [::1] is the one pushed over 127.0.0.1"
    );
    // nginx logs the client's own address (no NAT hop): the pull came over IPv6.
    let log = common::podman(&["logs", &app.container("nginx")]);
    assert!(
        common::text(&log.stdout)
            .lines()
            .any(|l| l.starts_with("::1 ") && l.contains("/dual/nginx/manifests/1")),
        "no pull over ::1 in nginx's log"
    );

    let (code, report) = verify_json(&app, &["--domain", "::1"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(check(&report, "round-trip")["status"], "pass");
    assert!(check(&report, "tcp")["detail"]
        .as_str()
        .unwrap()
        .contains(&format!("[::1]:{port}")));
    on(&app, &["status"])
        .stdout_has("listen     every address of this host")
        .run();

    // Clients trust it in the folders containers/image looks up: [::1]:PORT, brackets kept. (Debian 12's
    // clients cannot name the registry by an IPv6 literal at all; the trixie guest's do, in tests/systemd.rs.)
    let v6_trust = std::path::PathBuf::from(format!("/etc/containers/certs.d/[::1]:{port}/ca.crt"));
    on(&app, &["trust"]).stdout_has(v6_trust.display().to_string()).run();
    assert_eq!(
        std::fs::read(&v6_trust).unwrap(),
        std::fs::read(cert_dir.join("ca.crt")).unwrap()
    );
    let plain = format!("docker://{v6_name}:{port}/dual/nginx:1");
    let digest = skopeo_ok(&["inspect", "--format", "{{.Digest}}", &plain]);
    assert_eq!(digest.trim(), pushed);
    // With the IPv6 address as the domain, up says what Podman's clients cannot do, and the way around it.
    Run::up(&app)
        .args([
            "--domain",
            "::1",
            "--san",
            "localhost",
            "--san",
            "127.0.0.1",
            "--san",
            &v6_name,
            "--no-verify",
        ])
        .stdout_has("The registry is up at https://[::1]:")
        .stdout_has("cannot name a registry by an IPv6 address")
        .run();
    on(&app, &["down", "--purge", "--yes"]).run();
    assert!(!v6_trust.exists(), "down --purge leaves {} behind", v6_trust.display());
}

#[test]
fn verify_asks_every_address_a_name_has() {
    let Some(app) = common::serving(&["--no-verify", "--san", "::1"]) else {
        return;
    };
    // The name gets an AAAA next to its A: verify asks both, and says so.
    let _aaaa = HostsEntry::add_address(&app.domain, "::1");
    let (code, report) = verify_json(&app, &[]);
    assert_eq!(code, 0, "{report:#}");
    let tcp = check(&report, "tcp")["detail"].as_str().unwrap().to_string();
    assert!(
        tcp.contains(&format!("127.0.0.1:{}", app.port)) && tcp.contains(&format!("[::1]:{}", app.port)),
        "{tcp}"
    );
    let api = check(&report, "api")["detail"].as_str().unwrap().to_string();
    assert!(api.contains("via 127.0.0.1") && api.contains("via ::1"), "{api}");

    // Pinned to IPv4, the AAAA leads nowhere: verify names the address clients would fail on.
    Run::up(&app).args(["--listen", "127.0.0.1", "--no-verify"]).run();
    let (code, report) = verify_json(&app, &[]);
    assert_eq!(code, 1, "{report:#}");
    let tcp = check(&report, "tcp");
    assert_eq!(tcp["status"], "fail", "{tcp}");
    assert!(
        tcp["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("not to [::1]:{}", app.port)),
        "{tcp}"
    );
}

#[test]
fn listen_pins_the_appliance_to_one_address_and_an_address_the_host_lacks_is_refused() {
    let Some(app) = common::serving(&["--listen", "127.0.0.1"]) else {
        return;
    };
    let port = app.port;
    assert!(connects(&format!("127.0.0.1:{port}")), "127.0.0.1 is served");
    assert!(!connects(&format!("[::1]:{port}")), "[::1] must be refused");
    on(&app, &["status"]).stdout_has("listen     127.0.0.1").run();
    // A re-run keeps the address.
    Run::up(&app).args(["--no-verify"]).stdout_has("nothing changed").run();
    assert!(!connects(&format!("[::1]:{port}")));

    // An address this host does not have: exit 2, the host's addresses listed, nothing changed.
    let before = mtimes(&app.config_dir());
    Run::up(&app)
        .args(["--listen", "192.0.2.1"])
        .code(2)
        .stderr_has("192.0.2.1 is not an address of this host")
        .stderr_has("127.0.0.1")
        .run();
    assert_eq!(mtimes(&app.config_dir()), before, "a refused --listen writes nothing");
    assert!(
        connects(&format!("127.0.0.1:{port}")),
        "the running appliance is left alone"
    );

    // Back to every address: both families answer again.
    Run::up(&app).args(["--listen", "all", "--no-verify"]).run();
    assert!(connects(&format!("127.0.0.1:{port}")) && connects(&format!("[::1]:{port}")));
    on(&app, &["status"])
        .stdout_has("listen     every address of this host")
        .run();
}

#[test]
fn a_listen_address_the_host_lacks_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config");
    Run::bin()
        .args(["up", "--domain", "r.example", "--listen", "192.0.2.1", "--config-dir"])
        .arg(&config)
        .code(2)
        .stderr_has("--listen 192.0.2.1 is not an address of this host")
        .run();
    Run::bin()
        .args(["render", "--domain", "r.example", "--listen", "eth0", "--out"])
        .arg(tmp.path().join("out"))
        .code(2)
        .stderr_has("--listen 'eth0' is not an IP address")
        .run();
    assert!(
        !config.exists() && !tmp.path().join("out").exists(),
        "nothing is written"
    );
}

/// A host whose nftables input chain drops what it does not allow (here a network namespace of its own,
/// with the host as the client across a veth pair): up names the chain and the command, --open-firewall
/// lets clients in over IPv4 and IPv6, and down takes back its rule and nothing else.
#[test]
fn an_nftables_drop_policy_is_named_opened_and_closed_again() {
    let Some(app) = Appliance::e2e() else { return };
    let ns = common::NetNs::new();
    // nsenter, not `ip netns exec`: that remounts /sys for the namespace, without the cgroup mounts Podman needs.
    let netns = format!("--net=/run/netns/{}", ns.name);
    let inside = ["nsenter", netns.as_str(), "--"];
    let nft = |args: &[&str], stdin: Option<&str>| {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &ns.name, "nft"]).args(args);
        let out = match stdin {
            None => cmd.output().unwrap(),
            Some(rules) => {
                use std::io::Write;
                let mut child = cmd
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                child.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
                child.wait_with_output().unwrap()
            }
        };
        assert!(out.status.success(), "nft {args:?}: {}", common::text(&out.stderr));
        common::text(&out.stdout)
    };
    // With an admin's rule that carries the comment registry-up's would, for another port: down leaves it.
    let rules = format!(
        "table inet filter {{\n chain input {{\n  type filter hook input priority 0; policy drop;\n  iif lo accept\n  \
         ct state established,related accept\n  meta l4proto ipv6-icmp accept\n  tcp dport 22 accept\n  \
         tcp dport 2222 accept comment \"registry-up {}\"\n }}\n}}\n",
        app.pod
    );
    nft(&["-f", "-"], Some(&rules));
    let before = nft(&["list", "ruleset"], None);
    let port = app.port;
    let v4 = format!("{}:{port}", common::NetNs::NS_V4);
    let v6 = format!("[{}]:{port}", common::NetNs::NS_V6);

    Run::up(&app)
        .under(inside)
        .stderr_has(format!("the nftables chain inet filter input drops {port}/tcp"))
        .stderr_has(format!(
            "nft insert rule inet filter input tcp dport {port} accept comment"
        ))
        .run();
    assert!(
        !connects(&v4) && !connects(&v6),
        "the drop policy lets the host in before --open-firewall"
    );
    Run::bin()
        .arg("doctor")
        .config_dir(app.config_dir())
        .under(inside)
        .code(1)
        .stdout_has(format!("the nftables chain inet filter input drops {port}/tcp"))
        .run();

    Run::up(&app)
        .under(inside)
        .args(["--open-firewall", "--no-verify"])
        .stdout_has(format!("opened {port}/tcp in nftables chain inet filter input"))
        .run();
    assert!(connects(&v4), "{v4} is not reachable after --open-firewall");
    // The rule is recorded with the handle nft gave it: down deletes that rule, not one that looks alike.
    let record = std::fs::read_to_string(app.config_dir().join("firewall.json")).unwrap();
    assert!(record.contains("\"handle\""), "{record}");
    assert!(connects(&v6), "{v6} is not reachable after --open-firewall");
    // A re-run finds it open and adds nothing.
    Run::up(&app)
        .under(inside)
        .args(["--open-firewall", "--no-verify"])
        .stdout_has("ok   firewall")
        .run();
    let rule = format!("tcp dport {port} accept comment");
    assert_eq!(nft(&["list", "ruleset"], None).matches(&rule).count(), 1);

    Run::bin()
        .arg("down")
        .config_dir(app.config_dir())
        .under(inside)
        .stdout_has(format!("Closed {port}/tcp in nftables chain inet filter input again"))
        .run();
    assert_eq!(
        nft(&["list", "ruleset"], None),
        before,
        "down leaves the namespace's rules as they were, the admin's rule with our comment among them"
    );
}

/// What the registry writes stays closed to other users: it writes under umask 0007, and no folder on the
/// way lets them in (an earlier release wrote under umask 0005). A data folder given at 0755 is made 0700, and every folder
/// the registry makes has no execute bit for others.
#[test]
fn what_the_registry_writes_stays_closed_to_other_users() {
    let Some(app) = Appliance::e2e() else { return };
    std::fs::create_dir_all(app.data_dir()).unwrap();
    std::fs::set_permissions(app.data_dir(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    Run::up(&app).stdout_has("ok   verify push/pull").run();
    app.push(&common::image_archives()[1], "closed/nginx:1", None);
    assert_eq!(common::mode(&app.data_dir()), 0o700);
    let mut dirs = vec![app.data_dir().join("docker")];
    let mut seen = 0;
    while let Some(dir) = dirs.pop() {
        assert_eq!(common::mode(&dir) & 0o001, 0, "others may enter {}", dir.display());
        seen += 1;
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            if entry.file_type().unwrap().is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    assert!(seen > 10, "the registry made its folders");
}
