//! Where nginx answers: every address of the host (both families where the host has IPv6), or only the
//! addresses given with `--listen`. The pod shares the host's network, so these are real binds on the
//! host, with no NAT hop in between.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// Every address: IPv4, and IPv6 too when the host has it (nginx fails to start on `[::]` without).
    All { ipv6: bool },
    /// Only these addresses (wildcards `0.0.0.0` and `::` allowed), sorted, without duplicates.
    Only(Vec<IpAddr>),
}

impl Listen {
    /// The addresses as given (`--listen`, or `saved` in state.json when `from_state`); none, or `all`,
    /// means every address. Each must be an IP literal this host has, or a wildcard.
    pub fn parse(given: &[String], from_state: bool, host_ipv6: bool, host_addresses: &[IpAddr]) -> Result<Self> {
        let every = Listen::All { ipv6: host_ipv6 };
        if given.iter().any(|g| g.trim() == "all") && given.len() > 1 {
            return Err(Error::usage(
                "--listen all means every address, so it cannot go with other --listen addresses: give all alone, \
                 or only the addresses to answer on.",
            ));
        }
        if given.is_empty() || given.iter().any(|g| g.trim() == "all") {
            return Ok(every);
        }
        // Where a refused address came from: the user's flag, or what an earlier run saved.
        let origin = if from_state {
            " (kept in state.json from an earlier --listen)"
        } else {
            ""
        };
        let usable: Vec<IpAddr> = host_addresses.iter().copied().filter(|ip| !link_local(*ip)).collect();
        let mut addresses = Vec::new();
        for text in given {
            let trimmed = text.trim();
            let bare = trimmed
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .unwrap_or(trimmed);
            let ip: IpAddr = bare.parse().map_err(|_| {
                Error::usage(format!(
                    "--listen '{text}'{origin} is not an IP address: give one of this host's addresses ({}), or all.",
                    shown(&usable)
                ))
            })?;
            if link_local(ip) {
                return Err(Error::usage(format!(
                    "--listen {ip}{origin} is a link-local address, which nginx cannot listen on without its \
                     interface: give one of {}, or all.",
                    shown(&usable)
                )));
            }
            if !ip.is_unspecified() && !usable.contains(&ip) {
                return Err(Error::usage(format!(
                    "--listen {ip}{origin} is not an address of this host, so nginx could not listen there: give one \
                     of {} (0.0.0.0 or :: for all of one family, or all).",
                    shown(&usable)
                )));
            }
            if ip.is_ipv6() && !host_ipv6 {
                return Err(Error::usage(format!(
                    "--listen {ip}{origin} is an IPv6 address, but IPv6 is off on this host: give an IPv4 address, \
                     or turn IPv6 on."
                )));
            }
            if !addresses.contains(&ip) {
                addresses.push(ip);
            }
        }
        addresses.sort();
        // Both wildcards (or the one of a host without IPv6) are every address.
        let wildcards: Vec<IpAddr> = every.sockets(0).iter().map(|s| s.ip()).collect();
        if addresses == wildcards {
            return Ok(every);
        }
        Ok(Listen::Only(addresses))
    }

    /// What state.json keeps: nothing for every address.
    pub fn saved(&self) -> Vec<String> {
        match self {
            Listen::All { .. } => Vec::new(),
            Listen::Only(addresses) => addresses.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// The sockets nginx binds for `port`.
    pub fn sockets(&self, port: u16) -> Vec<SocketAddr> {
        match self {
            Listen::All { ipv6 } => {
                let mut all = vec![SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port)];
                if *ipv6 {
                    all.push(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port));
                }
                all
            }
            Listen::Only(addresses) => addresses.iter().map(|a| SocketAddr::new(*a, port)).collect(),
        }
    }

    /// Whether nginx answers on `ip` (an address of this host).
    pub fn covers(&self, ip: IpAddr) -> bool {
        self.sockets(0)
            .iter()
            .any(|s| s.ip() == ip || (s.ip().is_unspecified() && s.is_ipv4() == ip.is_ipv4()))
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::All { ipv6: true } => write!(f, "all addresses, IPv4 and IPv6"),
            Listen::All { ipv6: false } => write!(f, "all IPv4 addresses (this host has no IPv6)"),
            Listen::Only(addresses) => write!(f, "{}", shown(addresses)),
        }
    }
}

fn shown(addresses: &[IpAddr]) -> String {
    let list: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
    if list.is_empty() {
        "none found".into()
    } else {
        list.join(", ")
    }
}

/// Every IP address on this host's interfaces, loopback included (getifaddrs(3)), sorted.
pub fn host_addresses() -> Vec<(String, IpAddr)> {
    let mut found = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we only read and then free once.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return found;
    }
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned; its fields are valid until freeifaddrs.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string; ifa_addr points at a sockaddr of the family it names.
        let name = unsafe { std::ffi::CStr::from_ptr(entry.ifa_name) }
            .to_string_lossy()
            .into_owned();
        let ip = unsafe {
            match i32::from((*entry.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(entry.ifa_addr as *const libc::sockaddr_in);
                    IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes())
                }
                libc::AF_INET6 => {
                    let sin6 = &*(entry.ifa_addr as *const libc::sockaddr_in6);
                    IpAddr::from(sin6.sin6_addr.s6_addr)
                }
                _ => continue,
            }
        };
        found.push((name, ip));
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    found.sort_by_key(|(_, ip)| *ip);
    found.dedup_by_key(|(_, ip)| *ip);
    found
}

/// fe80::/10: usable only with an interface scope, which nginx's listen cannot be given portably.
fn link_local(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

/// Whether this host can listen on IPv6 at all (off when booted with ipv6.disable=1).
pub fn ipv6_available() -> bool {
    std::net::TcpListener::bind((Ipv6Addr::UNSPECIFIED, 0)).is_ok()
}

/// Where this host's appliance answers on `port`, from its saved listen addresses (empty: every
/// address): a loopback address for a wildcard, or the first address given.
pub fn local_address(saved: &[String], port: u16) -> SocketAddr {
    let first = saved.iter().find_map(|a| a.parse::<IpAddr>().ok());
    let ip = match first {
        None | Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(IpAddr::V6(v6)) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        Some(ip) => ip,
    };
    SocketAddr::new(ip, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_host_s_own_address_for_a_pinned_check() {
        let at = |saved: &[&str]| {
            let saved: Vec<String> = saved.iter().map(|s| s.to_string()).collect();
            local_address(&saved, 8443).to_string()
        };
        assert_eq!(at(&[]), "127.0.0.1:8443");
        assert_eq!(at(&["0.0.0.0"]), "127.0.0.1:8443");
        assert_eq!(at(&["::"]), "[::1]:8443");
        assert_eq!(at(&["::1"]), "[::1]:8443");
        assert_eq!(at(&["10.0.0.5", "::1"]), "10.0.0.5:8443");
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn no_address_means_every_address_of_the_families_the_host_has() {
        let all = Listen::parse(&[], false, true, &[]).unwrap();
        assert_eq!(
            all.sockets(443),
            vec!["0.0.0.0:443".parse().unwrap(), "[::]:443".parse().unwrap()]
        );
        assert!(all.saved().is_empty());
        let v4 = Listen::parse(&[], false, false, &[]).unwrap();
        assert_eq!(v4.sockets(443), vec!["0.0.0.0:443".parse().unwrap()]);
        assert!(!v4.covers("::1".parse().unwrap()));
        assert!(v4.covers("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn only_the_host_s_own_addresses_are_taken() {
        let host = ips(&["127.0.0.1", "::1", "10.0.0.5"]);
        let given = vec!["[::1]".to_string(), "127.0.0.1".into(), "::1".into()];
        let only = Listen::parse(&given, false, true, &host).unwrap();
        assert_eq!(only, Listen::Only(ips(&["127.0.0.1", "::1"])));
        assert_eq!(only.saved(), vec!["127.0.0.1", "::1"]);
        assert!(only.covers("::1".parse().unwrap()));
        assert!(!only.covers("10.0.0.5".parse().unwrap()));

        let e = Listen::parse(&["192.0.2.1".into()], false, true, &host).unwrap_err();
        assert_eq!(e.status, crate::error::ExitStatus::Usage);
        assert!(
            e.message.contains("192.0.2.1 is not an address of this host"),
            "{}",
            e.message
        );
        assert!(e.message.contains("127.0.0.1, ::1, 10.0.0.5"), "{}", e.message);
        let e = Listen::parse(&["eth0".into()], false, true, &host).unwrap_err();
        assert!(e.message.contains("not an IP address"), "{}", e.message);
        let e = Listen::parse(&["::1".into()], false, false, &host).unwrap_err();
        assert!(e.message.contains("IPv6 is off"), "{}", e.message);
        // A saved address that went away says where it came from.
        let e = Listen::parse(&["10.9.9.9".into()], true, true, &host).unwrap_err();
        assert!(e.message.contains("kept in state.json"), "{}", e.message);
    }

    #[test]
    fn wildcards_pick_one_family_and_both_or_all_mean_every_address() {
        let only = Listen::parse(&["0.0.0.0".into()], false, true, &[]).unwrap();
        assert!(only.covers("10.9.8.7".parse().unwrap()));
        assert!(!only.covers("::1".parse().unwrap()));
        let both = vec!["::".to_string(), "0.0.0.0".into()];
        assert_eq!(
            Listen::parse(&both, false, true, &[]).unwrap(),
            Listen::All { ipv6: true }
        );
        assert_eq!(
            Listen::parse(&["all".into()], false, true, &[]).unwrap(),
            Listen::All { ipv6: true }
        );
        // "all" with an address says two things: refused, not silently every address.
        let mixed = vec!["all".to_string(), "127.0.0.1".into()];
        let e = Listen::parse(&mixed, false, true, &ips(&["127.0.0.1"])).unwrap_err();
        assert_eq!(e.status, crate::error::ExitStatus::Usage);
        assert!(
            e.message.contains("cannot go with other --listen addresses"),
            "{}",
            e.message
        );
        // Without IPv6, 0.0.0.0 alone is every address.
        let v4 = Listen::parse(&["0.0.0.0".into()], false, false, &[]).unwrap();
        assert_eq!(v4, Listen::All { ipv6: false });
    }

    #[test]
    fn a_link_local_address_is_refused_and_not_offered() {
        let host = ips(&["127.0.0.1", "fe80::1"]);
        let e = Listen::parse(&["fe80::1".into()], false, true, &host).unwrap_err();
        assert!(e.message.contains("link-local"), "{}", e.message);
        assert!(!e.message.contains("give one of 127.0.0.1, fe80"), "{}", e.message);
    }

    #[test]
    fn this_host_has_a_loopback_address() {
        let found = host_addresses();
        assert!(
            found.iter().any(|(_, ip)| *ip == IpAddr::from(Ipv4Addr::LOCALHOST)),
            "{found:?}"
        );
    }
}
