//! The registry under test as a client sees it, and the HTTPS clients that trust only its CA.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Target {
    /// Host part: a DNS name or an IP address (IPv6 in brackets).
    pub host: String,
    pub port: u16,
    /// PEM of the CA(s) to trust; None trusts the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// User name and password, when the registry requires them.
    pub credentials: Option<(String, String)>,
    /// Where this host's own appliance answers, for a replica of a site: every request that checks content
    /// or configuration goes there, whatever the name resolves to (it may lead to another replica). The
    /// name's own checks (resolve, connect, TLS) still follow DNS.
    pub pin: Option<std::net::SocketAddr>,
}

/// An HTTPS client for one registry: trusts its CA, sends its credentials.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    credentials: Option<(String, String)>,
}

impl Http {
    fn with_auth(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.credentials {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    pub fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.with_auth(self.client.get(url))
    }

    pub fn head(&self, url: &str) -> reqwest::RequestBuilder {
        self.with_auth(self.client.head(url))
    }

    pub fn post(&self, url: &str) -> reqwest::RequestBuilder {
        self.with_auth(self.client.post(url))
    }

    pub fn delete(&self, url: &str) -> reqwest::RequestBuilder {
        self.with_auth(self.client.delete(url))
    }

    pub fn put(&self, url: &str) -> reqwest::RequestBuilder {
        self.with_auth(self.client.put(url))
    }

    pub fn patch(&self, url: &str) -> reqwest::RequestBuilder {
        self.with_auth(self.client.patch(url))
    }
}

impl Target {
    /// The appliance installed in `config_dir` as its own host reaches it: its name and port, its CA and
    /// password on disk (a replica pinned to its own listen address).
    pub fn installed(config_dir: &std::path::Path, state: &crate::state::State) -> Target {
        let ca_pem = std::fs::read(config_dir.join(crate::layout::CA_CERT)).ok();
        let credentials = state
            .auth_user
            .as_ref()
            .and_then(|user| crate::secrets::saved_login(config_dir, user, "").ok());
        Target {
            host: state.url_host(),
            port: state.port,
            ca_pem,
            credentials,
            pin: state
                .s3
                .as_ref()
                .map(|_| crate::listen::local_address(&state.listen, state.port)),
        }
    }

    /// `host:port` as in image references.
    pub fn registry(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.registry())
    }

    pub fn http_client(&self, timeout: Duration) -> Result<Http> {
        self.http_client_at(timeout, None)
    }

    /// A client for uploads of any size: no limit on a whole request, only on a stall of `idle`.
    pub fn upload_client(&self, idle: Duration) -> Result<Http> {
        self.client_with(reqwest::Client::builder().read_timeout(idle), idle, None)
    }

    /// An HTTPS client that connects to `address` whatever the name resolves to (same name in TLS and
    /// Host), so that each address the name has can be asked in turn.
    pub fn http_client_at(&self, timeout: Duration, address: Option<std::net::SocketAddr>) -> Result<Http> {
        self.client_with(reqwest::Client::builder().timeout(timeout), timeout, address)
    }

    fn client_with(
        &self,
        builder: reqwest::ClientBuilder,
        timeout: Duration,
        address: Option<std::net::SocketAddr>,
    ) -> Result<Http> {
        let mut builder = builder.connect_timeout(timeout.min(Duration::from_secs(10)));
        if let Some(address) = address.or(self.pin) {
            builder = builder.resolve(&self.host, address);
        }
        if let Some(pem) = &self.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::usage(format!("The CA file cannot be read as PEM certificates ({e}): give --ca the CA certificate (PEM) clients trust.")))?;
            builder = builder.tls_certs_only(certs);
        }
        let client = builder.build().map_err(|e| {
            let fix = match self.ca_pem {
                Some(_) => "check the CA file given with --ca",
                // Without --ca the system's CA store is used, and a host may have none.
                None => {
                    "give --ca the registry's CA certificate, or install the system's CA certificates \
                         (ca-certificates)"
                }
            };
            Error::usage(format!("Could not set up the HTTPS client ({}): {fix}.", chain(&e)))
        })?;
        Ok(Http {
            client,
            credentials: self.credentials.clone(),
        })
    }
}

pub use crate::error::chain;

/// Polls `https://REGISTRY/v2/` until it answers 200 (or 401, with auth on), or `timeout` passes.
pub async fn wait_ready(target: &Target, timeout: Duration) -> Result<String> {
    let client = target.http_client(Duration::from_secs(5))?;
    let start = Instant::now();
    let mut last = String::from("no answer yet");
    while start.elapsed() < timeout {
        match client.get(&target.url("/v2/")).send().await {
            Ok(resp) if matches!(resp.status().as_u16(), 200 | 401) => {
                return Ok(format!(
                    "HTTP {} from https://{}/v2/",
                    resp.status().as_u16(),
                    target.registry()
                ));
            }
            Ok(resp) => last = format!("HTTP {}", resp.status()),
            Err(e) => last = chain(&e),
        }
        // Short: a pod usually answers within a few hundred milliseconds of starting.
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    Err(Error::runtime(format!(
        "The registry did not answer at https://{}/v2/ within {} s (last: {last}): see why with registry-up logs, \
         or allow more time with --wait-timeout.",
        target.registry(),
        timeout.as_secs()
    )))
}
