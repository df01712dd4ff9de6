//! Certificates with rcgen: a CA made once, and a server certificate it signs. Existing files are read
//! back and kept when still right; only what must change is re-issued. No file I/O here beyond reading:
//! writing is the apply stage's job.

use std::collections::BTreeSet;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::{Error, Result};
use crate::hostname::HostName;

/// The most days Apple clients (and the CA/B forum's old rule) accept for a private CA's leaf.
pub const SERVER_CERT_DAYS: i64 = 825;
pub const CA_DAYS: i64 = 3650;
/// A server certificate with fewer days left than this is re-issued on the next run.
pub const RENEW_BEFORE_DAYS: i64 = 30;

/// PEM texts of the CA and the server certificate, and what happened to each.
pub struct Pki {
    /// The CA clients trust: ours, or the bundle given with --ca-bundle; None for a certificate that
    /// chains to the system's roots.
    pub ca_cert: Option<String>,
    /// Our CA's key; None for a certificate brought by the user.
    pub ca_key: Option<String>,
    pub server_cert: String,
    pub server_key: String,
    pub ca_origin: Origin,
    pub server_origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Read from disk and still valid for the settings.
    Kept,
    /// Made now because none existed.
    New,
    /// Made now to replace an existing one, for the reason given.
    Reissued(String),
    /// Brought by the user (--cert/--key), checked and used as it is.
    Provided,
}

/// Existing PEM files, as read from disk by the caller (None = file absent).
pub struct Existing {
    pub ca_cert: Option<String>,
    pub ca_key: Option<String>,
    pub server_cert: Option<String>,
    pub server_key: Option<String>,
    /// A finished install used these files (state.json is written last): its CA may be trusted by clients,
    /// so a damaged one is an error. Without it, a CA left incomplete by a stopped first run is replaced.
    pub installed: bool,
}

impl Existing {
    pub fn read(config_dir: &Path) -> Result<Self> {
        use crate::layout::{CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY};
        let read = |rel: &str| crate::host::read_optional(&config_dir.join(rel));
        Ok(Existing {
            ca_cert: read(CA_CERT)?,
            ca_key: read(CA_KEY)?,
            server_cert: read(SERVER_CERT)?,
            server_key: read(SERVER_KEY)?,
            installed: config_dir.join(crate::layout::STATE).is_file(),
        })
    }
}

/// Keeps what is still right and issues what is missing or wrong. `names` are the server's SANs.
/// What `certs renew` asks for beyond the usual keep-what-is-right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renew {
    /// Re-issue only what is missing or wrong (every `up`).
    IfNeeded,
    /// Re-issue the server certificate now, from the existing CA.
    Server,
    /// Make a new CA, and a server certificate from it.
    CaAndServer,
}

pub fn ensure(
    existing: Existing,
    names: &[HostName],
    now: OffsetDateTime,
    config_dir: &Path,
    renew: Renew,
) -> Result<Pki> {
    let ca_dir = config_dir.join("ca");
    let existing_ca = match renew {
        Renew::CaAndServer => (None, None),
        _ => (existing.ca_cert, existing.ca_key),
    };
    let (ca_cert, ca_key, ca_origin) = match existing_ca {
        // One of the two files, and no finished install ever used them: what a first run stopped between
        // writing them leaves (no client can trust it yet). A complete pair is never replaced silently.
        (Some(_), None) | (None, Some(_)) if !existing.installed => {
            let (cert, key) = issue_ca(names, now)?;
            let why = "a first run was stopped before its CA was complete, and no install used it";
            (cert, key, Origin::Reissued(why.into()))
        }
        (Some(cert), Some(key)) => {
            check_ca(&cert, &key, now).map_err(|problem| {
                Error::usage(format!(
                    "The CA in {} cannot be used: {problem}. Restore the right files, or move the folder away \
                     to create a new CA (every client must then trust the new ca.crt).",
                    ca_dir.display()
                ))
            })?;
            (cert, key, Origin::Kept)
        }
        (None, None) => {
            let (cert, key) = issue_ca(names, now)?;
            let origin = if renew == Renew::CaAndServer {
                Origin::Reissued("a new CA was asked for".into())
            } else {
                Origin::New
            };
            (cert, key, origin)
        }
        (cert, _) => {
            let (present, missing) = if cert.is_some() {
                ("ca.crt", "ca.key")
            } else {
                ("ca.key", "ca.crt")
            };
            return Err(Error::usage(format!(
                "The CA in {} is incomplete: {present} is there but {missing} is missing. Restore {missing}, or \
                 move the folder away to create a new CA (every client must then trust the new ca.crt).",
                ca_dir.display()
            )));
        }
    };

    let reason = match (&existing.server_cert, &existing.server_key) {
        _ if renew == Renew::Server => Some("a renewal was asked for".to_string()),
        _ if renew == Renew::CaAndServer => Some("the CA is new".to_string()),
        (Some(cert), Some(key)) => server_cert_problem(cert, key, &ca_cert, names, now),
        (None, None) => None,
        _ => Some("the certificate or its key was missing".to_string()),
    };
    let (server_cert, server_key, server_origin) = match (reason, existing.server_cert, existing.server_key) {
        (None, Some(cert), Some(key)) => (cert, key, Origin::Kept),
        (reason, _, _) => {
            let (cert, key) = issue_server(names, &ca_cert, &ca_key, now)?;
            (cert, key, reason.map_or(Origin::New, Origin::Reissued))
        }
    };
    Ok(Pki {
        ca_cert: Some(ca_cert),
        ca_key: Some(ca_key),
        server_cert,
        server_key,
        ca_origin,
        server_origin,
    })
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    crate::digest::random_bytes(&mut bytes);
    bytes[0] &= 0x7f; // positive, as RFC 5280 requires
    bytes[0] |= 0x01; // and never shortened by a leading zero
    SerialNumber::from_slice(&bytes)
}

fn rcgen_error(what: &str) -> impl Fn(rcgen::Error) -> Error + '_ {
    move |e| {
        Error::runtime(format!(
            "Could not create the {what} ({e}); this is a bug in registry-up, please report it."
        ))
    }
}

fn issue_ca(names: &[HostName], now: OffsetDateTime) -> Result<(String, String)> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_error("CA key"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "registry-up");
    dn.push(DnType::CommonName, format!("registry-up CA for {}", names[0]));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - Duration::hours(1);
    params.not_after = params.not_before + Duration::days(CA_DAYS);
    params.serial_number = Some(random_serial());
    let cert = params.self_signed(&key).map_err(rcgen_error("CA certificate"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn issue_server(names: &[HostName], ca_cert: &str, ca_key: &str, now: OffsetDateTime) -> Result<(String, String)> {
    let ca_key = KeyPair::from_pem(ca_key).map_err(rcgen_error("CA key (parse)"))?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert, ca_key).map_err(rcgen_error("CA (parse)"))?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_error("server key"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "registry-up");
    dn.push(DnType::CommonName, names[0].to_string());
    params.distinguished_name = dn;
    params.subject_alt_names = names
        .iter()
        .map(|n| match n {
            HostName::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            HostName::Dns(d) => d.clone().try_into().map(SanType::DnsName),
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(rcgen_error("server certificate names"))?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - Duration::hours(1);
    params.not_after = params.not_before + Duration::days(SERVER_CERT_DAYS);
    params.serial_number = Some(random_serial());
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(rcgen_error("server certificate"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Parses the first certificate of a PEM text.
pub fn parse_pem(text: &str) -> std::result::Result<Vec<u8>, String> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(text.as_bytes()).map_err(|e| format!("not a PEM certificate ({e})"))?;
    if pem.label != "CERTIFICATE" {
        return Err(format!("a PEM block labelled {} instead of CERTIFICATE", pem.label));
    }
    Ok(pem.contents)
}

fn parse_der(der: &[u8]) -> std::result::Result<X509Certificate<'_>, String> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| format!("not a readable X.509 certificate ({e})"))
}

fn key_matches(cert: &X509Certificate<'_>, key_pem: &str) -> std::result::Result<(), String> {
    let key = KeyPair::from_pem(key_pem).map_err(|e| format!("the key is not a readable private key ({e})"))?;
    if key.public_key_raw() == cert.public_key().subject_public_key.data.as_ref() {
        Ok(())
    } else {
        Err("the key does not belong to the certificate".into())
    }
}

/// `2021-01-01 00:00 UTC`: how every date is shown.
pub fn utc(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute())
}

fn date(t: x509_parser::time::ASN1Time) -> String {
    t.to_datetime().date().to_string()
}

fn check_ca(cert_pem: &str, key_pem: &str, now: OffsetDateTime) -> std::result::Result<(), String> {
    let der = parse_pem(cert_pem).map_err(|e| format!("ca.crt is {e}"))?;
    let cert = parse_der(&der).map_err(|e| format!("ca.crt is {e}"))?;
    if !cert.is_ca() {
        return Err("ca.crt is not a CA certificate".into());
    }
    key_matches(&cert, key_pem)?;
    let not_after = cert.validity().not_after;
    if not_after.to_datetime() <= now {
        return Err(format!("it expired on {}", date(not_after)));
    }
    Ok(())
}

/// Why the existing server certificate must be re-issued, or None to keep it.
fn server_cert_problem(
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
    names: &[HostName],
    now: OffsetDateTime,
) -> Option<String> {
    let der = match parse_pem(cert_pem) {
        Ok(d) => d,
        Err(e) => return Some(format!("the old one was {e}")),
    };
    let cert = match parse_der(&der) {
        Ok(c) => c,
        Err(e) => return Some(format!("the old one was {e}")),
    };
    if let Err(e) = key_matches(&cert, key_pem) {
        return Some(e);
    }
    let ca_der = parse_pem(ca_pem).ok()?;
    let ca = parse_der(&ca_der).ok()?;
    if cert.verify_signature(Some(ca.public_key())).is_err() {
        return Some("it was not signed by the current CA".into());
    }
    let want: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
    let have: BTreeSet<String> = san_names(&cert).into_iter().collect();
    if want != have {
        let added: Vec<_> = want.difference(&have).cloned().collect();
        let removed: Vec<_> = have.difference(&want).cloned().collect();
        let mut parts = Vec::new();
        if !added.is_empty() {
            parts.push(format!("adds {}", added.join(", ")));
        }
        if !removed.is_empty() {
            parts.push(format!("drops {}", removed.join(", ")));
        }
        return Some(format!("the name list changed ({})", parts.join("; ")));
    }
    let not_after = cert.validity().not_after.to_datetime();
    let days_left = (not_after - now).whole_days();
    if days_left <= RENEW_BEFORE_DAYS {
        return Some(if days_left < 0 {
            format!("it expired on {}", not_after.date())
        } else {
            format!("it expires on {} ({days_left} days left)", not_after.date())
        });
    }
    if cert.validity().not_before.to_datetime() > now {
        return Some(format!("it is not valid before {}", date(cert.validity().not_before)));
    }
    None
}

/// The DNS and IP subject alternative names of a certificate, as strings.
pub fn san_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(*bytes).ok()?).to_string()),
                16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(*bytes).ok()?).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::ParsedExtension;

    fn names() -> Vec<HostName> {
        vec![
            HostName::parse("registry.example.com", "d").unwrap(),
            HostName::parse("10.1.2.3", "d").unwrap(),
        ]
    }

    fn empty() -> Existing {
        Existing {
            ca_cert: None,
            ca_key: None,
            server_cert: None,
            server_key: None,
            installed: false,
        }
    }

    fn again(p: &Pki) -> Existing {
        Existing {
            ca_cert: p.ca_cert.clone(),
            ca_key: p.ca_key.clone(),
            server_cert: Some(p.server_cert.clone()),
            server_key: Some(p.server_key.clone()),
            installed: true,
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    #[test]
    fn ca_properties_parsed_back() {
        let pki = ensure(empty(), &names(), now(), Path::new("/x"), Renew::IfNeeded).unwrap();
        assert_eq!(pki.ca_origin, Origin::New);
        let der = parse_pem(pki.ca_cert.as_deref().unwrap()).unwrap();
        let ca = parse_der(&der).unwrap();
        let bc = ca.basic_constraints().unwrap().unwrap();
        assert!(bc.critical);
        assert!(bc.value.ca);
        assert_eq!(bc.value.path_len_constraint, Some(0));
        let ku = ca.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        let days = (ca.validity().not_after.to_datetime() - ca.validity().not_before.to_datetime()).whole_days();
        assert_eq!(days, CA_DAYS);
        assert_eq!(ca.public_key().algorithm.algorithm.to_id_string(), "1.2.840.10045.2.1"); // ecPublicKey
        ca.verify_signature(None).expect("self-signed");
    }

    #[test]
    fn server_properties_parsed_back() {
        let pki = ensure(empty(), &names(), now(), Path::new("/x"), Renew::IfNeeded).unwrap();
        let der = parse_pem(&pki.server_cert).unwrap();
        let cert = parse_der(&der).unwrap();
        assert_eq!(san_names(&cert), ["registry.example.com", "10.1.2.3"]);
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert!(
            matches!(san.value.general_names[1], GeneralName::IPAddress(_)),
            "IP must be an IP SAN"
        );
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth);
        assert!(!cert.is_ca());
        let days = (cert.validity().not_after.to_datetime() - cert.validity().not_before.to_datetime()).whole_days();
        assert!(days <= SERVER_CERT_DAYS, "{days} days");
        assert!(cert
            .extensions()
            .iter()
            .any(|e| matches!(e.parsed_extension(), ParsedExtension::AuthorityKeyIdentifier(_))));
        assert!(cert.raw_serial().len() >= 16, "random serial");
        let ca_der = parse_pem(pki.ca_cert.as_deref().unwrap()).unwrap();
        let ca = parse_der(&ca_der).unwrap();
        cert.verify_signature(Some(ca.public_key())).expect("signed by the CA");
        assert_eq!(cert.issuer(), ca.subject());
    }

    #[test]
    fn serials_differ_between_certificates() {
        let a = ensure(empty(), &names(), now(), Path::new("/x"), Renew::IfNeeded).unwrap();
        let b = ensure(empty(), &names(), now(), Path::new("/x"), Renew::IfNeeded).unwrap();
        let sa = parse_der(&parse_pem(&a.server_cert).unwrap())
            .unwrap()
            .raw_serial()
            .to_vec();
        let sb = parse_der(&parse_pem(&b.server_cert).unwrap())
            .unwrap()
            .raw_serial()
            .to_vec();
        assert_ne!(sa, sb);
    }

    #[test]
    fn rerun_keeps_everything_when_nothing_changed() {
        let first = ensure(empty(), &names(), now(), Path::new("/x"), Renew::IfNeeded).unwrap();
        let second = ensure(again(&first), &names(), now(), Path::new("/x"), Renew::IfNeeded).unwrap();
        assert_eq!(second.ca_origin, Origin::Kept);
        assert_eq!(second.server_origin, Origin::Kept);
        assert_eq!(second.server_cert, first.server_cert);
        assert_eq!(second.server_key, first.server_key);
    }

    #[test]
    fn new_san_reissues_only_the_server_certificate() {
        let first = ensure(empty(), &names(), now(), Path::new("/x"), Renew::IfNeeded).unwrap();
        let mut more = names();
        more.push(HostName::parse("mirror.example.com", "d").unwrap());
        let second = ensure(again(&first), &more, now(), Path::new("/x"), Renew::IfNeeded).unwrap();
        assert_eq!(second.ca_origin, Origin::Kept);
        assert_eq!(second.ca_cert, first.ca_cert);
        match &second.server_origin {
            Origin::Reissued(r) => assert!(r.contains("adds mirror.example.com"), "{r}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn near_expiry_reissues_the_server_certificate() {
        let first = ensure(empty(), &names(), now(), Path::new("/x"), Renew::IfNeeded).unwrap();
        let later = now() + Duration::days(SERVER_CERT_DAYS - 20);
        let second = ensure(again(&first), &names(), later, Path::new("/x"), Renew::IfNeeded).unwrap();
        assert_eq!(second.ca_origin, Origin::Kept);
        assert!(
            matches!(&second.server_origin, Origin::Reissued(r) if r.contains("days left")),
            "{:?}",
            second.server_origin
        );
    }

    #[test]
    fn broken_ca_is_an_error_not_a_silent_new_ca() {
        let first = ensure(empty(), &names(), now(), Path::new("/x"), Renew::IfNeeded).unwrap();
        let mut half = again(&first);
        half.ca_key = None;
        let e = ensure(half, &names(), now(), Path::new("/x"), Renew::IfNeeded)
            .err()
            .unwrap();
        assert!(e.message.contains("ca.key is missing"), "{e}");

        let other = ensure(empty(), &names(), now(), Path::new("/x"), Renew::IfNeeded).unwrap();
        let mut mixed = again(&first);
        mixed.ca_key = other.ca_key.clone();
        let e = ensure(mixed, &names(), now(), Path::new("/x"), Renew::IfNeeded)
            .err()
            .unwrap();
        assert!(e.message.contains("does not belong"), "{e}");

        let mut garbage = again(&first);
        garbage.ca_cert = Some("hello".into());
        assert!(ensure(garbage, &names(), now(), Path::new("/x"), Renew::IfNeeded).is_err());
    }

    #[test]
    fn a_ca_no_finished_install_used_is_replaced_when_incomplete() {
        let first = ensure(empty(), &names(), now(), Path::new("/x"), Renew::IfNeeded).unwrap();
        for (cert, key) in [(true, false), (false, true)] {
            let mut half = again(&first);
            half.installed = false;
            half.ca_cert = half.ca_cert.filter(|_| cert);
            half.ca_key = half.ca_key.filter(|_| key);
            let next = ensure(half, &names(), now(), Path::new("/x"), Renew::IfNeeded).unwrap();
            assert!(matches!(&next.ca_origin, Origin::Reissued(r) if r.contains("first run was stopped")));
            assert_ne!(next.ca_cert, first.ca_cert);
        }
        // A complete one is kept, installed or not; a complete but unusable one is an error either way (it
        // may be a CA clients trust, copied in by hand).
        let mut whole = again(&first);
        whole.installed = false;
        let next = ensure(whole, &names(), now(), Path::new("/x"), Renew::IfNeeded).unwrap();
        assert_eq!(next.ca_origin, Origin::Kept);
        let other = ensure(empty(), &names(), now(), Path::new("/x"), Renew::IfNeeded).unwrap();
        let mut mixed = again(&first);
        mixed.installed = false;
        mixed.ca_key = other.ca_key.clone();
        assert!(ensure(mixed, &names(), now(), Path::new("/x"), Renew::IfNeeded).is_err());
    }

    #[test]
    fn renew_on_request_keeps_or_rotates_the_ca() {
        let first = ensure(empty(), &names(), now(), Path::new("/x"), Renew::IfNeeded).unwrap();
        let renewed = ensure(again(&first), &names(), now(), Path::new("/x"), Renew::Server).unwrap();
        assert_eq!(renewed.ca_cert, first.ca_cert);
        assert_eq!(renewed.ca_origin, Origin::Kept);
        assert_ne!(renewed.server_cert, first.server_cert);
        let rotated = ensure(again(&first), &names(), now(), Path::new("/x"), Renew::CaAndServer).unwrap();
        assert_ne!(rotated.ca_cert, first.ca_cert);
        assert!(matches!(rotated.ca_origin, Origin::Reissued(_)));
        let cert = parse_der(&parse_pem(&rotated.server_cert).unwrap())
            .unwrap()
            .issuer()
            .to_string();
        assert!(cert.contains("registry-up CA"));
    }

    #[test]
    fn server_cert_from_another_ca_is_reissued() {
        let first = ensure(empty(), &names(), now(), Path::new("/x"), Renew::IfNeeded).unwrap();
        let other = ensure(empty(), &names(), now(), Path::new("/x"), Renew::IfNeeded).unwrap();
        let mut mixed = again(&first);
        mixed.server_cert = Some(other.server_cert.clone());
        mixed.server_key = Some(other.server_key.clone());
        let second = ensure(mixed, &names(), now(), Path::new("/x"), Renew::IfNeeded).unwrap();
        assert!(matches!(&second.server_origin, Origin::Reissued(r) if r.contains("not signed by the current CA")));
    }
}
