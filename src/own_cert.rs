//! Bring your own certificate: `--cert FILE --key FILE [--ca-bundle FILE]`, checked before anything is
//! written. Each problem is one sentence naming the file and the fix; nginx then gets the leaf and its
//! intermediates as given.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, RootCertStore};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::{Error, Result};
use crate::hostname::HostName;
use crate::pki::{Origin, Pki};

/// Where the user's certificate files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnCertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca_bundle: Option<PathBuf>,
}

fn read(path: &Path, what: &str) -> Result<String> {
    crate::bounded::read_text(path, crate::bounded::SMALL).map_err(|e| {
        Error::usage(format!(
            "Cannot read the {what} {} ({e}): {}.",
            path.display(),
            crate::host::io_fix(&e)
        ))
    })
}

fn pem_chain(text: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(text.as_bytes())
        .filter_map(|c| c.ok())
        .collect()
}

fn to_pem(chain: &[CertificateDer<'_>]) -> String {
    let blocks: Vec<pem::Pem> = chain.iter().map(|c| pem::Pem::new("CERTIFICATE", c.to_vec())).collect();
    pem::encode_many_config(&blocks, pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF))
}

/// Checks the user's certificate for `names` at `now`; returns what render writes.
pub fn load(files: &OwnCertFiles, names: &[HostName], now: OffsetDateTime) -> Result<Pki> {
    let cert_path = files.cert.display();
    let key_path = files.key.display();
    let cert_text = read(&files.cert, "certificate")?;
    let key_text = read(&files.key, "key")?;
    let chain = pem_chain(&cert_text);
    let Some(leaf_der) = chain.first() else {
        return Err(Error::usage(format!(
            "The certificate {cert_path} holds no PEM certificate: give the server certificate (and its intermediates) in PEM."
        )));
    };
    let (_, leaf) = X509Certificate::from_der(leaf_der.as_ref())
        .map_err(|e| Error::usage(format!("The certificate {cert_path} cannot be parsed ({e}): give --cert the PEM server certificate (leaf first, then intermediates).")))?;

    // The key belongs to the certificate.
    if key_text.contains("ENCRYPTED") {
        return Err(Error::usage(format!(
            "The key {key_path} is encrypted with a passphrase, which the proxy cannot type at start-up: give \
             --key an unencrypted copy (openssl pkey -in {key_path} -out server.key), kept 0600."
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(key_text.as_bytes()).map_err(|_| {
        Error::usage(format!(
            "The key {key_path} is not a PEM private key (PKCS#8, PKCS#1 or SEC1): give the certificate's private key."
        ))
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| {
        Error::usage(format!(
            "The key {key_path} cannot be used ({e}): give --key an RSA, ECDSA or Ed25519 private key."
        ))
    })?;
    let matches = signer
        .public_key()
        .is_some_and(|spki| spki.as_ref() == leaf.public_key().raw);
    if !matches {
        return Err(Error::usage(format!(
            "The key {key_path} does not belong to the certificate {cert_path}: give the key the certificate was issued for."
        )));
    }

    // It is a TLS server certificate (Apple clients insist on the extended key usage being there).
    let server_auth = matches!(leaf.extended_key_usage(), Ok(Some(eku)) if eku.value.server_auth);
    if !server_auth {
        return Err(Error::usage(format!(
            "The certificate {cert_path} is not a TLS server certificate (no serverAuth extended key usage): have it issued for TLS server use."
        )));
    }

    // Within its validity.
    let not_before = leaf.validity().not_before.to_datetime();
    let not_after = leaf.validity().not_after.to_datetime();
    if not_after <= now {
        return Err(Error::usage(format!(
            "The certificate {cert_path} expired on {}: get a renewed one from its CA.",
            crate::pki::utc(not_after)
        )));
    }
    if not_before > now {
        return Err(Error::usage(format!(
            "The certificate {cert_path} is not valid before {}: check this host's clock, or wait.",
            crate::pki::utc(not_before)
        )));
    }

    // It covers every name clients use.
    let parsed = ParsedCertificate::try_from(leaf_der)
        .map_err(|e| Error::usage(format!("The certificate {cert_path} cannot be used ({e}): have it issued again as a standard X.509 server certificate.")))?;
    for name in names {
        let server_name = ServerName::try_from(name.to_string()).expect("validated host names are server names");
        if verify_server_name(&parsed, &server_name).is_err() {
            let sans = crate::pki::san_names(&leaf);
            let listed = if sans.is_empty() {
                "no subject alternative name at all".to_string()
            } else {
                sans.join(", ")
            };
            return Err(Error::usage(format!(
                "The certificate {cert_path} does not cover {name} (it names {listed}): get one that lists every --domain and --san name."
            )));
        }
    }

    // And chains to the CA bundle, or without one to a CA this system trusts: decided before anything is
    // written, since clients would refuse it all the same.
    let ca_text = match &files.ca_bundle {
        None => {
            let roots = crate::verify::tls_roots(None).map_err(|e| {
                Error::usage(format!(
                    "The certificate {cert_path} cannot be checked against this system's CAs ({e}): give --ca-bundle \
                     FILE with the CA that signed it."
                ))
            })?;
            let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
            let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.unix_timestamp().max(0) as u64));
            if let Err(e) =
                verify_server_cert_signed_by_trust_anchor(&parsed, &Arc::new(roots), &chain[1..], at, algorithms.all)
            {
                return Err(Error::usage(format!(
                    "The certificate {cert_path} does not chain to a CA this system trusts ({e}; its issuer is {}): \
                     run again with --cert, --key and --ca-bundle FILE, the CA that signed it (clients must trust \
                     that CA too), with any intermediates after the certificate in {cert_path}.",
                    leaf.issuer()
                )));
            }
            None
        }
        Some(bundle) => {
            let text = read(bundle, "CA bundle")?;
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(pem_chain(&text));
            if added == 0 {
                return Err(Error::usage(format!(
                    "The CA bundle {} holds no usable PEM certificate: give --ca-bundle the PEM file of the CA that issued --cert.",
                    bundle.display()
                )));
            }
            let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
            let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.unix_timestamp().max(0) as u64));
            match verify_server_cert_signed_by_trust_anchor(&parsed, &Arc::new(roots), &chain[1..], at, algorithms.all) {
                Ok(()) => {}
                Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
                    return Err(Error::usage(format!(
                        "The certificate {cert_path} was not issued by the CA bundle {} (its issuer is {}): give the CA that signed it, with any intermediates in {cert_path}.",
                        bundle.display(),
                        leaf.issuer()
                    )))
                }
                Err(e) => {
                    return Err(Error::usage(format!(
                        "The certificate {cert_path} does not verify against the CA bundle {}: {e}. Give the CA that signed it, or have it issued again.",
                        bundle.display()
                    )))
                }
            }
            Some(text)
        }
    };
    Ok(Pki {
        ca_cert: ca_text,
        ca_key: None,
        // Leaf first, then intermediates, re-encoded so nothing but certificates reaches nginx.
        server_cert: to_pem(&chain),
        server_key: key_text,
        ca_origin: Origin::Provided,
        server_origin: Origin::Provided,
    })
}
