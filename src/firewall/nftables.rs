//! nftables (iptables-nft's rules among them): the input chains that drop the port. The opening is an
//! accept rule inserted into each such chain, tagged with a comment. A table of registry-up's own would not
//! do: an accept ends only its own chain, and a drop in another table's chain on the same hook still drops
//! the packet (measured in a network namespace).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{tool, Opening, Verdict};
use crate::error::Result;
use crate::listen::Listen;

/// An accept rule for the port at the top of a chain that drops it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub family: String,
    pub table: String,
    pub chain: String,
    pub port: u16,
    /// Tags the rule, so that it is found again (a reload of the ruleset gives rules new handles).
    pub comment: String,
    /// The handle nft gave the rule when registry-up inserted it: `down` deletes that rule, if it is still
    /// exactly the rule inserted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
}

fn ruleset() -> Result<String> {
    tool("nft", &["-j", "list", "ruleset"])
}

/// Whether an nftables ruleset lets new TCP connections to `port` in from other hosts; `comment` tags the
/// rules an opening would add.
pub fn check(port: u16, listen: &Listen, comment: &str, root: bool) -> Verdict {
    if crate::host::which("nft").is_none() {
        return match legacy_tables() {
            true => Verdict::Unknown(
                "iptables-legacy rules are loaded, which registry-up does not read: check them with iptables -S INPUT"
                    .into(),
            ),
            false => Verdict::Open("no firewalld, no nft to read nftables rules with, and no iptables rules".into()),
        };
    }
    match ruleset() {
        Ok(text) => judge(&text, port, listen, comment),
        Err(e) if !root => Verdict::Unknown(format!(
            "reading the nftables rules needs root ({}); as root: registry-up doctor",
            e.message
        )),
        Err(e) => Verdict::Unknown(e.message),
    }
}

/// iptables-legacy keeps its tables outside nftables; the kernel lists the loaded ones here.
fn legacy_tables() -> bool {
    ["/proc/net/ip_tables_names", "/proc/net/ip6_tables_names"]
        .iter()
        .any(|f| std::fs::read_to_string(f).is_ok_and(|t| !t.trim().is_empty()))
}

/// What a chain does to a new TCP connection to the port from another host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Accept,
    Drop,
    /// Some clients in, others not (a rule with conditions beyond the port decides): not judged here.
    Some,
    /// Nothing decided: the next rule, or the calling chain, or the policy.
    Continue,
}

/// The verdict of a ruleset (`nft -j list ruleset`): every input chain of a family nginx answers on.
fn judge(ruleset: &str, port: u16, listen: &Listen, comment: &str) -> Verdict {
    let Ok(doc) = serde_json::from_str::<Value>(ruleset) else {
        return Verdict::Unknown("nft printed a ruleset that is not JSON".into());
    };
    let items: Vec<&Value> = doc["nftables"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let rules: Vec<&Value> = items.iter().filter_map(|i| i.get("rule")).collect();
    let sockets = listen.sockets(port);
    let family_used = |family: &str| match family {
        "inet" => true,
        "ip" => sockets.iter().any(|s| s.is_ipv4()),
        "ip6" => sockets.iter().any(|s| s.is_ipv6()),
        _ => false,
    };
    let mut closed = Vec::new();
    for chain in items.iter().filter_map(|i| i.get("chain")) {
        let family = chain["family"].as_str().unwrap_or_default();
        if chain["hook"] != "input" || !family_used(family) {
            continue;
        }
        let table = chain["table"].as_str().unwrap_or_default();
        let name = chain["name"].as_str().unwrap_or_default();
        let flow = match chain_flow(&rules, family, table, name, port, 0) {
            Flow::Continue if chain["policy"] == "drop" => Flow::Drop,
            Flow::Continue => Flow::Accept,
            decided => decided,
        };
        match flow {
            Flow::Accept => {}
            Flow::Some => {
                return Verdict::Unknown(format!(
                    "the nftables chain {family} {table} {name} lets {port}/tcp in for some clients only (a rule with \
                     conditions beyond the port): check it with nft list chain {family} {table} {name}"
                ))
            }
            _ => closed.push(Opening::Nftables(Rule {
                family: family.into(),
                table: table.into(),
                chain: name.into(),
                port,
                comment: comment.into(),
                handle: None,
            })),
        }
    }
    if closed.is_empty() {
        return Verdict::Open(format!("no nftables input chain drops {port}/tcp"));
    }
    let names: Vec<String> = closed
        .iter()
        .filter_map(|o| match o {
            Opening::Nftables(r) => Some(format!("{} {} {}", r.family, r.table, r.chain)),
            Opening::Firewalld(_) => None,
        })
        .collect();
    Verdict::Closed {
        what: format!("the nftables chain {} drops {port}/tcp", names.join(", ")),
        openings: closed,
    }
}

/// How one condition of a rule bears on a new TCP connection to the port from another host.
enum Condition {
    /// Holds for every such connection (the port itself, `ct state new`, `meta l4proto tcp`).
    Always,
    /// Never holds (another port, `ct state established`, loopback only): the rule does not apply.
    Never,
    /// Holds for some clients only (a source address, an interface, a rate limit, an xt match…).
    Sometimes,
}

/// What chain `name` does to the connection: rules in order; jumps followed (up to 8 deep).
fn chain_flow(rules: &[&Value], family: &str, table: &str, name: &str, port: u16, depth: u8) -> Flow {
    // Some clients already let in by a rule with conditions: a later drop then drops only the rest.
    let mut some_in = false;
    let mine = rules
        .iter()
        .filter(|r| r["family"] == family && r["table"] == table && r["chain"] == name);
    for rule in mine {
        let expr: Vec<&Value> = rule["expr"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
        let mut conditions = Vec::new();
        let mut verdict = None;
        for e in &expr {
            let Some((kind, body)) = e.as_object().and_then(|o| o.iter().next()) else {
                continue;
            };
            match kind.as_str() {
                "accept" | "drop" | "reject" | "jump" | "goto" | "return" => verdict = Some((kind.as_str(), body)),
                // Neither a condition nor a verdict.
                "counter" | "log" | "mangle" | "notrack" => {}
                "match" => conditions.push(condition(body, port)),
                _ => conditions.push(Condition::Sometimes),
            }
        }
        if conditions.iter().any(|c| matches!(c, Condition::Never)) {
            continue;
        }
        let partial = conditions.iter().any(|c| matches!(c, Condition::Sometimes));
        let flow = match verdict {
            Some(("accept", _)) => Flow::Accept,
            Some(("drop" | "reject", _)) => Flow::Drop,
            // The rest of this chain is skipped: for everyone, or (with conditions) for some.
            Some(("return", _)) if partial => Flow::Some,
            Some(("return", _)) => break,
            Some((_, body)) if depth < 8 => {
                let target = body["target"].as_str().unwrap_or_default();
                chain_flow(rules, family, table, target, port, depth + 1)
            }
            _ => continue,
        };
        match (flow, partial) {
            (Flow::Continue, _) | (Flow::Drop, true) => {}
            (Flow::Accept | Flow::Some, true) | (Flow::Some, false) => some_in = true,
            (Flow::Drop, false) if some_in => return Flow::Some,
            (decided, false) => return decided,
        }
    }
    if some_in {
        Flow::Some
    } else {
        Flow::Continue
    }
}

/// How a `match` expression bears on a new TCP connection to `port` from another host.
fn condition(m: &Value, port: u16) -> Condition {
    let (left, right, op) = (&m["left"], &m["right"], m["op"].as_str().unwrap_or("=="));
    let equal = matches!(op, "==" | "in");
    let unequal = op == "!=";
    let field = |proto: &str, name: &str| left["payload"]["protocol"] == proto && left["payload"]["field"] == name;
    let holds = |yes: bool| match (yes, equal, unequal) {
        (true, true, _) | (false, _, true) => Condition::Always,
        (true, _, true) | (false, true, _) => Condition::Never,
        _ => Condition::Sometimes,
    };
    if field("tcp", "dport") {
        return holds(covers(right, port));
    }
    if left["ct"]["key"] == "state" {
        return holds(names(right).iter().any(|n| n == "new"));
    }
    if left["meta"]["key"] == "l4proto" || field("ip", "protocol") || field("ip6", "nexthdr") {
        return holds(names(right).iter().any(|n| n == "tcp" || n == "6"));
    }
    if matches!(left["meta"]["key"].as_str(), Some("iif" | "iifname")) && names(right) == ["lo"] && equal {
        return Condition::Never;
    }
    Condition::Sometimes
}

/// The names in a match's right side: one string, or a set or list of them.
fn names(right: &Value) -> Vec<String> {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match right {
        Value::Array(items) => items.iter().filter_map(text).collect(),
        Value::Object(o) => o
            .get("set")
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(text).collect())
            .unwrap_or_default(),
        other => text(other).into_iter().collect(),
    }
}

/// Whether an nftables value (a port, a range, a set of them) holds `port`.
fn covers(value: &Value, port: u16) -> bool {
    match value {
        Value::Number(n) => n.as_u64() == Some(u64::from(port)),
        Value::Array(items) => items.iter().any(|v| covers(v, port)),
        Value::Object(o) => {
            if let Some(set) = o.get("set") {
                covers(set, port)
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

impl Rule {
    /// `nft` arguments that insert the rule at the top of the chain.
    fn insert_args(&self) -> Vec<String> {
        let rule = format!(
            "insert rule {} {} {} tcp dport {} accept comment",
            self.family, self.table, self.chain, self.port
        );
        let mut args: Vec<String> = rule.split(' ').map(String::from).collect();
        args.push(format!("\"{}\"", self.comment));
        args
    }

    /// The command line a user would type.
    pub fn command(&self) -> String {
        let quoted: Vec<String> = self
            .insert_args()
            .into_iter()
            .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
            .collect();
        format!("nft {}", quoted.join(" "))
    }

    /// Inserts the rule; the rule as inserted, with the handle nft echoed for it.
    pub fn insert(&self) -> Result<Rule> {
        let mut args = vec!["--echo".to_string(), "--handle".into(), "-j".into()];
        args.extend(self.insert_args());
        let echoed = tool("nft", &args.iter().map(String::as_str).collect::<Vec<_>>())?;
        let doc: Value = serde_json::from_str(&echoed).unwrap_or_default();
        let handle = doc["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|i| i["insert"]["rule"]["handle"].as_u64());
        Ok(Rule { handle, ..self.clone() })
    }

    /// Deletes the rule registry-up inserted, and only it (none left is no error): the one at its handle
    /// when that is still exactly this rule, else (a reloaded ruleset, or a record without a handle) each
    /// rule in the chain that is exactly this rule: this comment, `tcp dport PORT accept`, nothing else. An
    /// admin's rule with the same comment for another port, or with another match, stays.
    pub fn delete(&self) -> Result<()> {
        let (family, table, chain) = (&self.family, &self.table, &self.chain);
        for handle in self.found(&ruleset()?) {
            tool(
                "nft",
                &["delete", "rule", family, table, chain, "handle", &handle.to_string()],
            )?;
        }
        Ok(())
    }

    /// Handles of the rules in `ruleset` that are exactly this one (see [`Rule::delete`]).
    fn found(&self, ruleset: &str) -> Vec<u64> {
        let doc: Value = serde_json::from_str(ruleset).unwrap_or_default();
        let expr = serde_json::json!([
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": self.port}},
            {"accept": null}
        ]);
        let exact: Vec<u64> = doc["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i.get("rule"))
            .filter(|r| {
                r["family"] == self.family.as_str()
                    && r["table"] == self.table.as_str()
                    && r["chain"] == self.chain.as_str()
                    && r["comment"] == self.comment.as_str()
                    && r["expr"] == expr
            })
            .filter_map(|r| r["handle"].as_u64())
            .collect();
        match self.handle {
            Some(h) if exact.contains(&h) => vec![h],
            _ => exact,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ruleset(policy: &str, rules: &[&str]) -> String {
        let rules: Vec<String> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let (chain, expr) = r.split_once('|').unwrap_or(("input", r));
                format!(r#"{{"rule": {{"family": "inet", "table": "filter", "chain": "{chain}", "handle": {i}, "expr": {expr}}}}}"#)
            })
            .collect();
        format!(
            r#"{{"nftables": [
            {{"chain": {{"family": "inet", "table": "filter", "name": "input", "hook": "input", "policy": "{policy}"}}}},
            {{"chain": {{"family": "inet", "table": "filter", "name": "lab"}}}},
            {{"chain": {{"family": "ip", "table": "nat", "name": "pre", "hook": "prerouting", "policy": "accept"}}}},
            {}]}}"#,
            rules.join(",")
        )
    }

    const LO: &str = r#"[{"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "lo"}}, {"accept": null}]"#;
    const ESTABLISHED: &str = r#"[{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}, {"accept": null}]"#;
    const SSH_AND_RANGE: &str = r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
        "right": {"set": [22, {"range": [1000, 2000]}]}}}, {"counter": null}, {"accept": null}]"#;
    const JUMP_7000: &str = r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 7000}},
        {"jump": {"target": "lab"}}]"#;
    const LAB_ACCEPT: &str = r#"lab|[{"accept": null}]"#;
    const FROM_LAB_NET: &str = r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
        "right": {"prefix": {"addr": "10.0.0.0", "len": 8}}}}, {"match": {"op": "==", "left": {"payload":
        {"protocol": "tcp", "field": "dport"}}, "right": 8443}}, {"accept": null}]"#;
    const REJECT_ALL: &str = r#"[{"reject": null}]"#;

    fn all() -> Listen {
        Listen::All { ipv6: true }
    }

    fn verdict(text: &str, port: u16) -> Verdict {
        judge(text, port, &all(), "registry-up pod")
    }

    #[test]
    fn a_drop_policy_drops_ports_no_rule_accepts() {
        let text = ruleset("drop", &[LO, ESTABLISHED, SSH_AND_RANGE, JUMP_7000, LAB_ACCEPT]);
        let Verdict::Closed { what, openings } = verdict(&text, 8443) else {
            panic!("{:?}", verdict(&text, 8443))
        };
        assert_eq!(what, "the nftables chain inet filter input drops 8443/tcp");
        assert_eq!(
            openings[0].command(),
            "nft insert rule inet filter input tcp dport 8443 accept comment '\"registry-up pod\"'"
        );
    }

    #[test]
    fn ports_in_sets_ranges_and_jumped_to_chains_are_open() {
        let text = ruleset("drop", &[LO, ESTABLISHED, SSH_AND_RANGE, JUMP_7000, LAB_ACCEPT]);
        for port in [22, 1000, 1500, 2000, 7000] {
            assert!(matches!(verdict(&text, port), Verdict::Open(_)), "{port}");
        }
        assert!(matches!(verdict(&text, 2001), Verdict::Closed { .. }));
    }

    #[test]
    fn a_final_reject_drops_as_a_policy_does_but_only_in_the_families_used() {
        let text = ruleset("accept", &[SSH_AND_RANGE, REJECT_ALL]);
        assert!(matches!(verdict(&text, 443), Verdict::Closed { .. }));
        assert!(matches!(verdict(&text, 22), Verdict::Open(_)));
        let ip_only = text.replace("\"inet\"", "\"ip\"");
        let v6 = Listen::Only(vec!["::1".parse().unwrap()]);
        assert!(matches!(judge(&ip_only, 443, &v6, "t"), Verdict::Open(_)));
    }

    #[test]
    fn an_accept_for_some_sources_only_is_not_judged() {
        let text = ruleset("drop", &[FROM_LAB_NET]);
        let v = verdict(&text, 8443);
        assert!(
            matches!(&v, Verdict::Unknown(why) if why.contains("some clients only")),
            "{v:?}"
        );
        // For another port that rule does not apply at all.
        assert!(matches!(verdict(&text, 9000), Verdict::Closed { .. }));
    }

    #[test]
    fn an_explicit_drop_of_the_port_is_closed_even_under_an_accept_policy() {
        let drop_port = r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8443}}, {"drop": null}]"#;
        let text = ruleset("accept", &[drop_port]);
        assert!(matches!(verdict(&text, 8443), Verdict::Closed { .. }));
        assert!(matches!(verdict(&text, 8444), Verdict::Open(_)));
        // A drop inside a jumped-to chain counts too.
        let jump_all = r#"[{"jump": {"target": "lab"}}]"#;
        let lab_drop = r#"lab|[{"drop": null}]"#;
        assert!(matches!(
            verdict(&ruleset("accept", &[jump_all, lab_drop]), 8443),
            Verdict::Closed { .. }
        ));
    }

    #[test]
    fn only_the_rule_inserted_is_found_for_deletion() {
        let rule = |handle: u64, comment: &str, port: u16, verdict: &str| {
            format!(
                r#"{{"rule": {{"family": "inet", "table": "filter", "chain": "input", "handle": {handle}, "comment":
                "{comment}", "expr": [{{"match": {{"op": "==", "left": {{"payload": {{"protocol": "tcp", "field":
                "dport"}}}}, "right": {port}}}}}, {{"{verdict}": null}}]}}}}"#
            )
        };
        let text = format!(
            r#"{{"nftables": [{}, {}, {}, {}]}}"#,
            rule(5, "registry-up pod", 8443, "accept"),
            // An admin's rules: the same comment for another port, and for this port with another verdict.
            rule(6, "registry-up pod", 22, "accept"),
            rule(7, "registry-up pod", 8443, "drop"),
            rule(9, "registry-up pod", 8443, "accept"),
        );
        let mut ours = Rule {
            family: "inet".into(),
            table: "filter".into(),
            chain: "input".into(),
            port: 8443,
            comment: "registry-up pod".into(),
            handle: Some(9),
        };
        assert_eq!(ours.found(&text), [9], "the recorded handle, exactly this rule");
        ours.handle = Some(6);
        assert_eq!(
            ours.found(&text),
            [5, 9],
            "a handle that is not this rule: each exact one"
        );
        ours.handle = None;
        assert_eq!(ours.found(&text), [5, 9]);
    }
}
