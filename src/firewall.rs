//! The host firewall between clients and nginx's port: firewalld when it runs, else the nftables rules
//! (iptables-nft's among them). Finds whether the port is dropped, opens it on request, and closes again
//! only what registry-up opened (kept in `firewall.json`).
//!
//! firewalld: the port goes into the zone of every interface nginx answers on, at runtime and in the
//! permanent configuration, as two calls rather than `--permanent` and `--reload`: a reload would also
//! throw away runtime rules someone else added. nftables: an accept rule goes into each chain that drops
//! the port, tagged with a comment. A table of our own would not do: an accept ends only its own chain,
//! and a drop in another table's chain on the same hook still drops the packet.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::listen::Listen;

/// One opening registry-up made (or would make) in the host firewall.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Opening {
    Firewalld {
        zone: String,
        port: u16,
    },
    Nftables {
        family: String,
        table: String,
        chain: String,
        port: u16,
        /// Tags the rule, so that it is found again (nftables rule handles change with the ruleset).
        comment: String,
    },
}

/// What the firewall does to the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing found that drops clients there.
    Open(String),
    /// Dropped: where, and the openings that let clients in.
    Closed { what: String, openings: Vec<Opening> },
    /// Could not be told (not root, a tool failed).
    Unknown(String),
}

impl Opening {
    pub fn port(&self) -> u16 {
        match self {
            Opening::Firewalld { port, .. } | Opening::Nftables { port, .. } => *port,
        }
    }

    /// Where it is, in words.
    pub fn describe(&self) -> String {
        match self {
            Opening::Firewalld { zone, port } => format!("{port}/tcp in firewalld zone {zone}"),
            Opening::Nftables {
                family,
                table,
                chain,
                port,
                ..
            } => format!("{port}/tcp in nftables chain {family} {table} {chain}"),
        }
    }

    /// The commands that open it, as the user would type them.
    pub fn command(&self) -> String {
        match (self, self.nft_insert()) {
            (Opening::Firewalld { zone, port }, _) => format!(
                "firewall-cmd --zone={zone} --add-port={port}/tcp && firewall-cmd --permanent --zone={zone} \
                 --add-port={port}/tcp"
            ),
            (_, args) => {
                let quoted: Vec<String> = args
                    .iter()
                    .map(|a| if a.contains(' ') { format!("'{a}'") } else { a.clone() })
                    .collect();
                format!("nft {}", quoted.join(" "))
            }
        }
    }

    /// The arguments of `nft` that insert the rule (none for firewalld).
    fn nft_insert(&self) -> Vec<String> {
        let Opening::Nftables {
            family,
            table,
            chain,
            port,
            comment,
        } = self
        else {
            return Vec::new();
        };
        let rule = format!("insert rule {family} {table} {chain} tcp dport {port} accept comment");
        let mut args: Vec<String> = rule.split(' ').map(String::from).collect();
        args.push(format!("\"{comment}\""));
        args
    }

    pub fn open(&self) -> Result<()> {
        match self {
            Opening::Firewalld { zone, port } => firewalld_port(zone, "--add-port", *port),
            Opening::Nftables { .. } => {
                let args = self.nft_insert();
                nft(&args.iter().map(String::as_str).collect::<Vec<_>>()).map(|_| ())
            }
        }
    }

    /// Takes the opening back; one that is already gone is no error.
    pub fn close(&self) -> Result<()> {
        match self {
            // firewall-cmd warns NOT_ENABLED and exits 0 for a port that is not open.
            Opening::Firewalld { zone, port } => firewalld_port(zone, "--remove-port", *port),
            Opening::Nftables {
                family,
                table,
                chain,
                comment,
                ..
            } => {
                let ruleset = nft(&["-j", "list", "ruleset"])?;
                for handle in tagged_rules(&ruleset, family, table, chain, comment) {
                    nft(&["delete", "rule", family, table, chain, "handle", &handle.to_string()])?;
                }
                Ok(())
            }
        }
    }
}

/// The openings' commands, one per line, indented.
pub fn commands(openings: &[Opening]) -> String {
    openings
        .iter()
        .map(|o| format!("  {}", o.command()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether clients on other hosts reach TCP `port` on the addresses in `listen`; `tag` marks the rules
/// registry-up would add (the pod's name).
pub fn check(port: u16, listen: &Listen, tag: &str, host_addresses: &[(String, IpAddr)]) -> Verdict {
    if firewalld_running() {
        return firewalld_check(port, listen, host_addresses);
    }
    if crate::host::which("nft").is_none() {
        return Verdict::Open("no firewalld, and no nft to read rules with".into());
    }
    match nft(&["-j", "list", "ruleset"]) {
        Ok(ruleset) => nft_check(&ruleset, port, listen, &format!("registry-up {tag}")),
        Err(e) if !crate::host::HostFacts::current().root => Verdict::Unknown(format!(
            "reading the nftables rules needs root ({}); as root: nft list ruleset",
            e.message
        )),
        Err(e) => Verdict::Unknown(e.message),
    }
}

fn firewalld_running() -> bool {
    crate::host::which("firewall-cmd").is_some()
        && Command::new("firewall-cmd")
            .arg("--state")
            .output()
            .is_ok_and(|o| o.status.success())
}

fn firewalld_check(port: u16, listen: &Listen, host_addresses: &[(String, IpAddr)]) -> Verdict {
    let mut interfaces: Vec<&str> = host_addresses
        .iter()
        .filter(|(name, ip)| name != "lo" && !ip.is_loopback() && listen.covers(*ip))
        .map(|(name, _)| name.as_str())
        .collect();
    interfaces.dedup();
    if interfaces.is_empty() {
        return Verdict::Open("nginx answers on loopback only, which firewalld does not filter".into());
    }
    let mut zones: Vec<String> = Vec::new();
    for interface in interfaces {
        let zone = match firewall_cmd(&[&format!("--get-zone-of-interface={interface}")]) {
            Ok(zone) => zone,
            // An interface in no zone is in the default zone.
            Err(_) => match firewall_cmd(&["--get-default-zone"]) {
                Ok(zone) => zone,
                Err(e) => return Verdict::Unknown(e.message),
            },
        };
        if !zones.contains(&zone) {
            zones.push(zone);
        }
    }
    let mut closed = Vec::new();
    for zone in &zones {
        let info = match firewall_cmd(&[&format!("--info-zone={zone}")]) {
            Ok(info) => info,
            Err(e) => return Verdict::Unknown(e.message),
        };
        if !zone_allows(&info, port) {
            closed.push(Opening::Firewalld {
                zone: zone.clone(),
                port,
            });
        }
    }
    let names = zones.join(", ");
    if closed.is_empty() {
        Verdict::Open(format!("firewalld allows {port}/tcp in zone {names}"))
    } else {
        let shut: Vec<&str> = closed
            .iter()
            .map(|o| match o {
                Opening::Firewalld { zone, .. } => zone.as_str(),
                Opening::Nftables { .. } => "",
            })
            .collect();
        Verdict::Closed {
            what: format!("firewalld drops {port}/tcp in zone {}", shut.join(", ")),
            openings: closed,
        }
    }
}

/// Whether `firewall-cmd --info-zone` output lets TCP `port` in: a zone whose target is ACCEPT, or the
/// port (or a range holding it) among its ports. (Services are not looked into: a port opened by a
/// service such as https counts as closed, and would be opened once more.)
fn zone_allows(info: &str, port: u16) -> bool {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}:")))
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    if field("target") == "ACCEPT" {
        return true;
    }
    field("ports").split_whitespace().any(|spec| {
        let Some((range, "tcp")) = spec.split_once('/') else {
            return false;
        };
        let (low, high) = range.split_once('-').unwrap_or((range, range));
        matches!((low.parse::<u16>(), high.parse::<u16>()), (Ok(l), Ok(h)) if (l..=h).contains(&port))
    })
}

/// The verdict of an nftables ruleset (`nft -j list ruleset`) on TCP `port`: every input chain of a family
/// nginx answers on that drops it, unless a rule before the drop accepts the port.
fn nft_check(ruleset: &str, port: u16, listen: &Listen, comment: &str) -> Verdict {
    let Ok(doc) = serde_json::from_str::<Value>(ruleset) else {
        return Verdict::Unknown("nft printed a ruleset that is not JSON".into());
    };
    let items: Vec<&Value> = doc["nftables"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let chains: Vec<&Value> = items.iter().filter_map(|i| i.get("chain")).collect();
    let rules: Vec<&Value> = items.iter().filter_map(|i| i.get("rule")).collect();
    let families = |family: &str| match family {
        "inet" => true,
        "ip" => listen.sockets(port).iter().any(|s| s.is_ipv4()),
        "ip6" => listen.sockets(port).iter().any(|s| s.is_ipv6()),
        _ => false,
    };
    let mut closed = Vec::new();
    for chain in chains {
        let family = chain["family"].as_str().unwrap_or_default();
        if chain["hook"] != "input" || !families(family) {
            continue;
        }
        let table = chain["table"].as_str().unwrap_or_default();
        let name = chain["name"].as_str().unwrap_or_default();
        if chain_drops(&rules, family, table, name, port, chain["policy"] == "drop", 0) {
            closed.push(Opening::Nftables {
                family: family.into(),
                table: table.into(),
                chain: name.into(),
                port,
                comment: comment.into(),
            });
        }
    }
    if closed.is_empty() {
        Verdict::Open(format!("no nftables input chain drops {port}/tcp"))
    } else {
        let names: Vec<String> = closed
            .iter()
            .map(|o| match o {
                Opening::Nftables {
                    family, table, chain, ..
                } => format!("{family} {table} {chain}"),
                Opening::Firewalld { .. } => String::new(),
            })
            .collect();
        Verdict::Closed {
            what: format!("the nftables chain {} drops {port}/tcp", names.join(", ")),
            openings: closed,
        }
    }
}

/// Whether chain `name` ends in a drop for a new TCP connection to `port`: rules in order, an accept of
/// the port (or a jump to a chain that accepts it) first lets it through, an unconditional drop or
/// reject stops it, else the policy decides.
fn chain_drops(
    rules: &[&Value],
    family: &str,
    table: &str,
    name: &str,
    port: u16,
    policy_drop: bool,
    depth: u8,
) -> bool {
    let mine = rules
        .iter()
        .filter(|r| r["family"] == family && r["table"] == table && r["chain"] == name);
    for rule in mine {
        let expr: Vec<&Value> = rule["expr"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
        let matches: Vec<&Value> = expr.iter().filter_map(|e| e.get("match")).collect();
        let verdict = expr.iter().find_map(|e| {
            ["accept", "drop", "reject", "jump", "goto"]
                .into_iter()
                .find(|v| e.get(*v).is_some())
        });
        let for_port = matches.iter().any(|m| is_tcp_dport(m) && covers(&m["right"], port));
        let unconditional = matches.is_empty();
        match verdict {
            Some("accept") if for_port || unconditional => return false,
            Some("drop" | "reject") if unconditional => return true,
            Some(v @ ("jump" | "goto")) if depth < 8 && (for_port || unconditional) => {
                let target = expr.iter().find_map(|e| e[v]["target"].as_str()).unwrap_or_default();
                if !chain_drops(rules, family, table, target, port, true, depth + 1) {
                    return false;
                }
            }
            _ => {}
        }
    }
    policy_drop
}

fn is_tcp_dport(m: &Value) -> bool {
    m["left"]["payload"]["protocol"] == "tcp" && m["left"]["payload"]["field"] == "dport" && m["op"] != "!="
}

/// Whether an nftables value (a port, a range, a set of them) holds `port`.
fn covers(value: &Value, port: u16) -> bool {
    match value {
        Value::Number(n) => n.as_u64() == Some(u64::from(port)),
        Value::Object(o) => {
            if let Some(Value::Array(set)) = o.get("set") {
                set.iter().any(|v| covers(v, port))
            } else if let Some(Value::Array(range)) = o.get("range") {
                let bound = |i: usize| range.get(i).and_then(Value::as_u64).unwrap_or(0);
                (bound(0)..=bound(1)).contains(&u64::from(port))
            } else {
                false
            }
        }
        _ => false,
    }
}

/// Handles of the rules in a chain that carry `comment`.
fn tagged_rules(ruleset: &str, family: &str, table: &str, chain: &str, comment: &str) -> Vec<u64> {
    let doc: Value = serde_json::from_str(ruleset).unwrap_or_default();
    doc["nftables"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.get("rule"))
                .filter(|r| {
                    r["family"] == family && r["table"] == table && r["chain"] == chain && r["comment"] == comment
                })
                .filter_map(|r| r["handle"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

/// `firewall-cmd --zone=ZONE ACTION=PORT/tcp`, at runtime and in the permanent configuration.
fn firewalld_port(zone: &str, action: &str, port: u16) -> Result<()> {
    let (zone, spec) = (format!("--zone={zone}"), format!("{action}={port}/tcp"));
    firewall_cmd(&[&zone, &spec])?;
    firewall_cmd(&["--permanent", &zone, &spec]).map(|_| ())
}

fn firewall_cmd(args: &[&str]) -> Result<String> {
    tool("firewall-cmd", args)
}

fn nft(args: &[&str]) -> Result<String> {
    tool("nft", args)
}

fn tool(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| Error::runtime(format!("Could not run {program} ({e}).")))?;
    if !out.status.success() {
        return Err(Error::runtime(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The openings registry-up made for the appliance in `config_dir`.
pub fn opened(config_dir: &Path) -> Result<Vec<Opening>> {
    let path = config_dir.join(crate::layout::FIREWALL);
    match crate::host::read_optional(&path)? {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(&text).map_err(|e| {
            Error::usage(format!(
                "{} cannot be read ({e}): close the ports it names by hand, then remove it.",
                path.display()
            ))
        }),
    }
}

/// Records `openings` (none: removes the record).
pub fn record(config_dir: &Path, openings: &[Opening]) -> Result<()> {
    let path = config_dir.join(crate::layout::FIREWALL);
    if openings.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::runtime(crate::host::io_failed("remove", &path, &e)))
            }
            _ => Ok(()),
        };
    }
    let mut text = serde_json::to_string_pretty(openings).expect("openings serialise");
    text.push('\n');
    crate::apply::write_atomic(&path, text.as_bytes(), crate::layout::PUBLIC)
}

/// Closes every recorded opening, and the record with them; returns what was closed.
pub fn close_all(config_dir: &Path) -> Result<Vec<Opening>> {
    let openings = opened(config_dir)?;
    for (i, opening) in openings.iter().enumerate() {
        if let Err(e) = opening.close() {
            // Keep the record of what is still open, so that a later run can close it.
            record(config_dir, &openings[i..])?;
            return Err(e);
        }
    }
    record(config_dir, &[])?;
    Ok(openings)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULESET: &str = r#"{"nftables": [
        {"chain": {"family": "inet", "table": "filter", "name": "input", "hook": "input", "policy": "drop"}},
        {"chain": {"family": "inet", "table": "filter", "name": "lab"}},
        {"chain": {"family": "ip", "table": "nat", "name": "pre", "hook": "prerouting", "policy": "accept"}},
        {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 2,
          "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "lo"}}, {"accept": null}]}},
        {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 3,
          "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                    "right": {"set": [22, {"range": [1000, 2000]}]}}}, {"accept": null}]}},
        {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 4,
          "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 7000}},
                   {"jump": {"target": "lab"}}]}},
        {"rule": {"family": "inet", "table": "filter", "chain": "lab", "handle": 5, "comment": "registry-up pod",
          "expr": [{"accept": null}]}}
    ]}"#;

    fn all() -> Listen {
        Listen::All { ipv6: true }
    }

    #[test]
    fn a_drop_policy_drops_ports_no_rule_accepts() {
        let verdict = nft_check(RULESET, 8443, &all(), "registry-up pod");
        let Verdict::Closed { what, openings } = verdict else {
            panic!("{verdict:?}")
        };
        assert_eq!(what, "the nftables chain inet filter input drops 8443/tcp");
        assert_eq!(
            openings[0].command(),
            "nft insert rule inet filter input tcp dport 8443 accept comment '\"registry-up pod\"'"
        );
    }

    #[test]
    fn ports_in_sets_ranges_and_jumped_to_chains_are_open() {
        for port in [22, 1000, 1500, 2000, 7000] {
            assert!(
                matches!(nft_check(RULESET, port, &all(), "t"), Verdict::Open(_)),
                "{port}"
            );
        }
        assert!(matches!(nft_check(RULESET, 2001, &all(), "t"), Verdict::Closed { .. }));
        assert_eq!(
            tagged_rules(RULESET, "inet", "filter", "lab", "registry-up pod"),
            vec![5]
        );
    }

    #[test]
    fn a_final_reject_drops_as_a_policy_does() {
        let ruleset = r#"{"nftables": [
            {"chain": {"family": "ip", "table": "filter", "name": "INPUT", "hook": "input", "policy": "accept"}},
            {"rule": {"family": "ip", "table": "filter", "chain": "INPUT", "handle": 9, "expr": [{"reject": null}]}}
        ]}"#;
        assert!(matches!(nft_check(ruleset, 443, &all(), "t"), Verdict::Closed { .. }));
        // An IPv4 chain does not matter to an appliance that answers on IPv6 only.
        let v6 = Listen::Only(vec!["::1".parse().unwrap()]);
        assert!(matches!(nft_check(ruleset, 443, &v6, "t"), Verdict::Open(_)));
    }

    #[test]
    fn firewalld_zones_allow_listed_ports_ranges_and_accept_targets() {
        let info = "public (active)\n  target: default\n  interfaces: eth0\n  services: ssh\n  ports: 80/tcp 9000-9100/tcp 53/udp\n";
        assert!(zone_allows(info, 80) && zone_allows(info, 9050));
        assert!(!zone_allows(info, 53) && !zone_allows(info, 8443));
        assert!(zone_allows("trusted\n  target: ACCEPT\n  ports: \n", 8443));
    }

    #[test]
    fn openings_round_trip_through_their_record() {
        let dir = tempfile::tempdir().unwrap();
        let openings = vec![Opening::Firewalld {
            zone: "public".into(),
            port: 8443,
        }];
        record(dir.path(), &openings).unwrap();
        assert_eq!(opened(dir.path()).unwrap(), openings);
        record(dir.path(), &[]).unwrap();
        assert!(opened(dir.path()).unwrap().is_empty());
        assert!(!dir.path().join(crate::layout::FIREWALL).exists());
    }
}
