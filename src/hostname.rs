//! Host names as users type them: a DNS name (RFC 1123) or an IP address. Pure parsing, no I/O.

use std::fmt;
use std::net::IpAddr;

use crate::error::{Error, Result};

/// A name a TLS client may use to reach the registry; becomes a DNS or an IP subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HostName {
    Dns(String),
    Ip(IpAddr),
}

impl HostName {
    /// Parses `input` as an IP address or an RFC 1123 DNS name; `what` names the flag in the error.
    pub fn parse(input: &str, what: &str) -> Result<Self> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(Error::usage(format!(
                "The {what} is empty: give a DNS name or an IP address, for example registry.example.com."
            )));
        }
        // Bracketed IPv6 as in URLs is accepted for convenience.
        let unbracketed = trimmed
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(trimmed);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(HostName::Ip(ip));
        }
        // One trailing dot is the fully-qualified spelling of the same name.
        let name = trimmed.strip_suffix('.').unwrap_or(trimmed).to_ascii_lowercase();
        if name.len() > 253 {
            return Err(Error::usage(format!(
                "The {what} '{input}' is {} characters long, but a DNS name has at most 253: use a shorter name.",
                name.len()
            )));
        }
        for label in name.split('.') {
            if let Some(problem) = label_problem(label) {
                return Err(Error::usage(format!(
                    "The {what} '{input}' is not a valid DNS name: {problem}. Use letters, digits and hyphens, \
                     for example registry.example.com, or an IP address."
                )));
            }
        }
        // "10.0.0.300" passes the label rules but is certainly a mistyped address.
        if name
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(Error::usage(format!(
                "The {what} '{input}' looks like an IP address but is not a valid one: check the numbers."
            )));
        }
        Ok(HostName::Dns(name))
    }

    pub fn is_ipv6(&self) -> bool {
        matches!(self, HostName::Ip(IpAddr::V6(_)))
    }

    /// The host part of a URL or an image reference (IPv6 in brackets).
    pub fn url_host(&self) -> String {
        match self {
            HostName::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            other => other.to_string(),
        }
    }
}

fn label_problem(label: &str) -> Option<String> {
    if label.is_empty() {
        return Some("it has an empty label (two dots in a row, or a leading dot)".into());
    }
    if label.len() > 63 {
        return Some(format!(
            "the label '{label}' is {} characters long, the most is 63",
            label.len()
        ));
    }
    if let Some(c) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
        return Some(format!("the label '{label}' contains '{c}'"));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Some(format!("the label '{label}' starts or ends with a hyphen"));
    }
    None
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostName::Dns(name) => f.write_str(name),
            HostName::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> HostName {
        HostName::parse(s, "domain").unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        match HostName::parse(s, "domain") {
            Ok(h) => panic!("{s:?} was accepted as {h:?}"),
            Err(e) => e.message,
        }
    }

    #[test]
    fn accepts_dns_names_and_ips() {
        assert_eq!(ok("registry.example.com"), HostName::Dns("registry.example.com".into()));
        assert_eq!(
            ok("Registry.Example.COM."),
            HostName::Dns("registry.example.com".into())
        );
        assert_eq!(ok("localhost"), HostName::Dns("localhost".into()));
        assert_eq!(ok("a-b.c0"), HostName::Dns("a-b.c0".into()));
        assert_eq!(ok("1a.example"), HostName::Dns("1a.example".into()));
        assert!(matches!(ok("10.0.0.5"), HostName::Ip(_)));
        assert!(matches!(ok("::1"), HostName::Ip(_)));
        assert_eq!(ok("[fd00::5]").url_host(), "[fd00::5]");
        let label63 = "a".repeat(63);
        ok(&format!("{label63}.example"));
        // 253 characters in all: 4 labels of 63 plus dots makes 255, so build it up exactly.
        let name253 = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        assert_eq!(name253.len(), 253);
        ok(&name253);
    }

    #[test]
    fn rejects_invalid_names_with_a_reason() {
        assert!(err("").contains("is empty"));
        assert!(err("   ").contains("is empty"));
        assert!(err("-bad.example").contains("hyphen"));
        assert!(err("bad-.example").contains("hyphen"));
        assert!(err("a..b").contains("empty label"));
        assert!(err(".a").contains("empty label"));
        assert!(err("under_score.example").contains("'_'"));
        assert!(err("space here").contains("' '"));
        assert!(err("https://x.example").contains("':'"));
        assert!(err("x.example:443").contains("':'"));
        assert!(err("ünicode.example").contains("'ü'"));
        assert!(err(&format!("{}.example", "a".repeat(64))).contains("most is 63"));
        let name254 = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(62)
        );
        assert!(err(&name254).contains("at most 253"));
        assert!(err("10.0.0.300").contains("not a valid one"));
    }
}
