//! A site file: what another host needs to serve the same registry as a replica on the same S3 bucket.
//! The CA's certificate (not its key), a server certificate and key covering the site's name and every
//! replica's, the registry's `http.secret` (so an upload begun on one replica finishes on another), the
//! password, the storage settings and the bucket's key, the images and the port. One header line with the
//! checksum of the JSON that follows, so a file damaged in transit is refused before anything is written.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The first line's start; the format number and `sha256:HEX` of the rest follow.
const HEADER: &str = "registry-up site";
const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// The name clients use for the site (the first host's --domain).
    pub name: String,
    /// Every name the server certificate covers: the site's and each replica's.
    pub names: Vec<String>,
    pub port: u16,
    pub registry_image: String,
    pub nginx_image: String,
    pub http_secret: String,
    /// With authentication: the user and the password.
    pub auth: Option<(String, String)>,
    pub s3: crate::s3::Location,
    pub s3_access_key: String,
    pub s3_secret_key: String,
    pub ca_cert: String,
    pub server_cert: String,
    pub server_key: String,
}

impl Site {
    /// The file's text: the header line with the body's checksum, then the body.
    pub fn render(&self) -> String {
        let body = serde_json::to_string_pretty(self).expect("a site always serialises") + "\n";
        format!(
            "{HEADER} {FORMAT} {}\n{body}",
            crate::digest::oci_digest(body.as_bytes())
        )
    }

    /// Reads a site file's text, checking its checksum first; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self> {
        let not_a_site = || {
            Error::usage(format!(
                "{path} is not a site file: give --site the file `registry-up site export` wrote on the site's \
                 first host."
            ))
        };
        let (header, body) = text.split_once('\n').ok_or_else(not_a_site)?;
        let mut words = header.strip_prefix(HEADER).ok_or_else(not_a_site)?.split_whitespace();
        let format: u32 = words.next().and_then(|f| f.parse().ok()).ok_or_else(not_a_site)?;
        if format != FORMAT {
            return Err(Error::usage(format!(
                "{path} is a site file of format {format}, which this registry-up does not read ({FORMAT}): \
                 export it again with this version, or install the version that wrote it."
            )));
        }
        let sum = words.next().ok_or_else(not_a_site)?;
        if crate::digest::oci_digest(body.as_bytes()) != sum {
            return Err(Error::usage(format!(
                "{path} is damaged: its contents do not match its checksum. Copy it again from the site's first \
                 host (or export it again there)."
            )));
        }
        serde_json::from_str(body).map_err(|e| {
            Error::usage(format!(
                "{path} cannot be read ({e}), though its checksum matches: export it again with this version."
            ))
        })
    }

    /// The key in the credentials-file form `--s3-credentials` reads.
    pub fn s3_key(&self) -> crate::s3::Credentials {
        crate::s3::Credentials {
            access_key: self.s3_access_key.clone(),
            secret_key: self.s3_secret_key.clone(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample() -> Site {
        Site {
            name: "registry.example.com".into(),
            names: vec!["registry.example.com".into(), "r1.example.com".into()],
            port: 443,
            registry_image: "docker.io/library/registry:3.1.1".into(),
            nginx_image: "docker.io/library/nginx:1.28-alpine".into(),
            http_secret: "ab".repeat(32),
            auth: Some(("admin".into(), "pw".into())),
            s3: crate::s3::Location {
                endpoint: "http://10.0.0.5:3900".into(),
                bucket: "registry".into(),
                region: "garage".into(),
            },
            s3_access_key: "GK1".into(),
            s3_secret_key: "SECRET".into(),
            ca_cert: "CA".into(),
            server_cert: "CERT".into(),
            server_key: "KEY".into(),
        }
    }

    #[test]
    fn a_site_file_round_trips_and_any_change_is_refused() {
        let site = sample();
        let text = site.render();
        assert!(text.starts_with("registry-up site 1 sha256:"));
        assert_eq!(Site::parse(&text, "f").unwrap(), site);
        let flipped = text.replacen("SECRET", "SECRFT", 1);
        assert!(Site::parse(&flipped, "f").unwrap_err().message.contains("is damaged"));
        let newer = text.replacen("site 1 ", "site 2 ", 1);
        assert!(Site::parse(&newer, "f").unwrap_err().message.contains("format 2"));
        for junk in ["", "{}", "registry-up site x\n{}", "hello\nworld"] {
            assert!(
                Site::parse(junk, "f").unwrap_err().message.contains("not a site file"),
                "{junk}"
            );
        }
    }
}
