//! The TLS checks: a real handshake with rustls that records the server's chain, then chain, name and
//! validity judged one by one, so each problem gets its own sentence.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name, WebPkiServerVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::report::{Check, Status};

/// Days before expiry below which the expiry check warns.
pub const WARN_DAYS: i64 = 30;

/// Records the chain the server presents and lets the handshake finish; the chain is judged afterwards.
#[derive(Debug)]
struct Recorder {
    inner: Arc<WebPkiServerVerifier>,
    chain: Mutex<Vec<CertificateDer<'static>>>,
}

/// What rustls' signature checks return.
type Signature = Result<HandshakeSignatureValid, rustls::Error>;

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self.chain.lock().expect("not poisoned") = chain;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Signature {
        self.inner.verify_tls12_signature(m, c, d)
    }

    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Signature {
        self.inner.verify_tls13_signature(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The trust anchors: the given CA file, or the system's roots.
pub fn roots(ca_pem: Option<&[u8]>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("the CA file holds no readable PEM certificate ({e})"))?;
                store
                    .add(cert)
                    .map_err(|e| format!("the CA file holds a certificate rustls cannot use ({e})"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
        }
    }
    if store.is_empty() {
        return Err("there is no CA certificate to trust".into());
    }
    Ok(store)
}

/// Runs the handshake on `addr` and returns the checks: tls, certificate-chain, certificate-name,
/// certificate-expiry. `host` is the name the client asks for (SNI and name check).
pub fn checks(addr: SocketAddr, host: &str, ca_pem: Option<&[u8]>, timeout: Duration) -> Vec<Check> {
    let start = std::time::Instant::now();
    let names = ["tls", "certificate-chain", "certificate-name", "certificate-expiry"];
    let fail_all = |detail: String, start: std::time::Instant| -> Vec<Check> {
        let mut out = vec![Check::new(names[0], Status::Fail, detail, start.elapsed())];
        out.extend(names[1..].iter().map(|n| Check::skipped(n, "the TLS handshake failed")));
        out
    };
    let roots = match roots(ca_pem) {
        Ok(r) => Arc::new(r),
        Err(e) => return fail_all(e, start),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = match WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone()).build() {
        Ok(v) => v,
        Err(e) => return fail_all(format!("cannot set up certificate checks ({e})"), start),
    };
    let recorder = Arc::new(Recorder {
        inner,
        chain: Mutex::new(Vec::new()),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let server_name = match ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string()) {
        Ok(n) => n,
        Err(e) => return fail_all(format!("'{host}' is not a valid TLS server name ({e})"), start),
    };
    let handshake = (|| -> Result<String, String> {
        // One deadline for the whole handshake: a per-read timeout alone lets a server that drips a byte at
        // a time keep it going for ever.
        let deadline = start + timeout;
        let left = || {
            deadline
                .checked_duration_since(std::time::Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    format!(
                        "the TLS handshake with {addr} did not finish within the --timeout of {} s",
                        timeout.as_secs()
                    )
                })
        };
        let mut tcp =
            TcpStream::connect_timeout(&addr, left()?).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let mut conn = rustls::ClientConnection::new(Arc::new(config), server_name.clone())
            .map_err(|e| format!("cannot start TLS ({e})"))?;
        while conn.is_handshaking() {
            let left = left()?;
            tcp.set_read_timeout(Some(left)).ok();
            tcp.set_write_timeout(Some(left)).ok();
            // One read at a time (not complete_io, which reads on while bytes trickle in): the deadline is
            // checked between any two.
            let step = (|| -> std::io::Result<()> {
                while conn.wants_write() {
                    conn.write_tls(&mut tcp)?;
                }
                if conn.is_handshaking() && conn.wants_read() {
                    if conn.read_tls(&mut tcp)? == 0 {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the server closed the connection",
                        ));
                    }
                    conn.process_new_packets()
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                }
                Ok(())
            })();
            step.map_err(|e| match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!(
                    "the TLS handshake with {addr} did not finish within the --timeout of {} s",
                    timeout.as_secs()
                ),
                _ => format!("the TLS handshake with {addr} failed: {e}"),
            })?;
        }
        // The goodbye below waits no longer than what is left (or a moment, when nothing is).
        let left = left().unwrap_or(Duration::from_millis(100));
        tcp.set_read_timeout(Some(left)).ok();
        tcp.set_write_timeout(Some(left)).ok();
        let version = conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default();
        // Say goodbye properly; nginx logs an error otherwise.
        conn.send_close_notify();
        let _ = conn.complete_io(&mut tcp);
        let _ = tcp.flush();
        let _ = tcp.read(&mut [0u8; 1]);
        Ok(version.replace("TLSv1_", "TLS 1."))
    })();
    let version = match handshake {
        Ok(v) => v,
        Err(e) => return fail_all(e, start),
    };
    let handshake_time = start.elapsed();
    let chain = recorder.chain.lock().expect("not poisoned").clone();
    let mut out = vec![Check::new(
        "tls",
        Status::Pass,
        format!("handshake with {addr}, {version}"),
        handshake_time,
    )];
    let Some(leaf_der) = chain.first() else {
        out.extend(
            names[1..]
                .iter()
                .map(|n| Check::skipped(n, "the server sent no certificate")),
        );
        return out;
    };
    let Ok((_, leaf)) = X509Certificate::from_der(leaf_der.as_ref()) else {
        out.extend(
            names[1..]
                .iter()
                .map(|n| Check::skipped(n, "the server's certificate cannot be parsed")),
        );
        return out;
    };
    let parsed = match ParsedCertificate::try_from(leaf_der) {
        Ok(p) => p,
        Err(e) => {
            out.extend(
                names[1..]
                    .iter()
                    .map(|n| Check::skipped(n, &format!("the server's certificate is unusable ({e})"))),
            );
            return out;
        }
    };

    // Chain: judged at a moment inside the leaf's validity, so an expired certificate is reported by the
    // expiry check alone and a wrong CA by this one alone.
    let t = std::time::Instant::now();
    let validity = leaf.validity();
    let middle = (validity.not_before.timestamp() + validity.not_after.timestamp()) / 2;
    let at = UnixTime::since_unix_epoch(Duration::from_secs(middle.max(0) as u64));
    let issuer = leaf.issuer().to_string();
    let chain_check = match verify_server_cert_signed_by_trust_anchor(
        &parsed,
        &roots,
        &chain[1..],
        at,
        provider.signature_verification_algorithms.all,
    ) {
        Ok(()) => Check::new("certificate-chain", Status::Pass, format!("issued by {issuer}, which the CA vouches for"), t.elapsed()),
        Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => Check::new(
            "certificate-chain",
            Status::Fail,
            format!("the certificate was issued by \"{issuer}\", which the trusted CA did not sign (unknown issuer): trust the CA that issued it, or re-issue the certificate from this CA"),
            t.elapsed(),
        ),
        Err(e) => Check::new("certificate-chain", Status::Fail, format!("the chain to the CA does not verify: {e}"), t.elapsed()),
    };
    out.push(chain_check);

    let t = std::time::Instant::now();
    let sans = crate::pki::san_names(&leaf);
    out.push(match verify_server_name(&parsed, &server_name) {
        Ok(()) => Check::new(
            "certificate-name",
            Status::Pass,
            format!("covers {host} (names: {})", sans.join(", ")),
            t.elapsed(),
        ),
        Err(_) => Check::new(
            "certificate-name",
            Status::Fail,
            format!(
                "does not cover {host}: it names only {}",
                if sans.is_empty() {
                    "no SAN at all".into()
                } else {
                    sans.join(", ")
                }
            ),
            t.elapsed(),
        ),
    });

    let t = std::time::Instant::now();
    out.push(expiry(&leaf, OffsetDateTime::now_utc(), t));
    out
}

fn expiry(leaf: &X509Certificate<'_>, now: OffsetDateTime, t: std::time::Instant) -> Check {
    let not_before = leaf.validity().not_before.to_datetime();
    let not_after = leaf.validity().not_after.to_datetime();
    let days_left = (not_after - now).whole_days();
    let (status, detail) = if not_before > now {
        (Status::Fail, format!("not valid before {} (the server's or this host's clock is wrong, or the certificate was issued for later)", crate::pki::utc(not_before)))
    } else if not_after <= now {
        (
            Status::Fail,
            format!(
                "expired on {}: renew the server certificate (registry-up up re-issues it)",
                crate::pki::utc(not_after)
            ),
        )
    } else if days_left < WARN_DAYS {
        (
            Status::Warn,
            format!(
                "expires on {}, in {days_left} days: renew it soon",
                crate::pki::utc(not_after)
            ),
        )
    } else {
        (
            Status::Pass,
            format!("valid until {}, {days_left} days left", not_after.date()),
        )
    };
    Check::new("certificate-expiry", status, detail, t.elapsed())
}
