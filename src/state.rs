//! The installed appliance's `state.json`: its schema, and reading it back. render writes it; settings,
//! and every command that works on an installed appliance, read it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the pod is kept running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    /// A systemd unit starts it at boot and restarts it.
    SystemdUnit,
    /// A Quadlet `.kube` file, from which Podman's generator makes the unit (Podman 4.4 and later).
    Quadlet,
    /// Started directly with podman: it will not come back after a reboot.
    Direct,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Bumped when a field changes meaning.
    pub format: u32,
    pub domain: String,
    pub sans: Vec<String>,
    pub port: u16,
    /// The addresses nginx answers on; empty for every address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listen: Vec<String>,
    pub registry_image: String,
    pub nginx_image: String,
    pub pod_name: String,
    pub config_dir: String,
    pub data_dir: String,
    pub ca_cert: String,
    pub service: Service,
    /// The htpasswd user when authentication is on (its password is in auth/password).
    #[serde(default)]
    pub auth_user: Option<String>,
    /// The server certificate was brought by the user (--cert/--key), not issued by registry-up.
    #[serde(default)]
    pub own_cert: bool,
    /// Installed by an ordinary user (rootless Podman, user units).
    #[serde(default)]
    pub rootless: bool,
    /// The disk watermarks, in percent of the data filesystem's use.
    #[serde(default = "default_high")]
    pub disk_high: u8,
    #[serde(default = "default_critical")]
    pub disk_critical: u8,
    /// How often the maintenance timer runs (hourly, daily, weekly), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<String>,
    /// S3 storage instead of `data_dir` (format 2: older versions must not read this appliance as one
    /// on the filesystem). The key is in s3/credentials, never here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<crate::s3::Location>,
}

/// The newest state format this registry-up reads: 2 adds S3 storage (1 is still written without it).
pub const FORMAT: u32 = 2;

fn default_high() -> u8 {
    crate::disk::DEFAULT_HIGH
}

fn default_critical() -> u8 {
    crate::disk::DEFAULT_CRITICAL
}

impl State {
    /// Where the registry keeps images, for reports: the S3 bucket, or the data folder.
    pub fn storage(&self) -> String {
        match &self.s3 {
            Some(s3) => s3.describe(),
            None => self.data_dir.clone(),
        }
    }

    pub fn watermarks(&self) -> crate::disk::Watermarks {
        crate::disk::Watermarks::new(self.disk_high, self.disk_critical).unwrap_or_default()
    }
}

impl State {
    /// The domain as the host part of a URL (an IPv6 address in brackets).
    pub fn url_host(&self) -> String {
        crate::hostname::HostName::parse(&self.domain, "domain")
            .map(|h| h.url_host())
            .unwrap_or_else(|_| self.domain.clone())
    }

    /// `host:port` as clients write it in image references (as `Settings::registry_host`).
    pub fn registry_host(&self) -> String {
        format!("{}:{}", self.url_host(), self.port)
    }
}

/// The installed appliance's state.json in `config_dir`, if there is one.
pub fn read_state(config_dir: &Path) -> Result<Option<State>> {
    let path = config_dir.join(crate::layout::STATE);
    // Bounded and never a FIFO: a claim in a data folder names another appliance's folder to read from.
    match crate::bounded::read_text(&path, crate::bounded::SMALL) {
        Ok(text) => parse_state(&text).map(Some).map_err(|e| {
            Error::usage(format!(
                "{} cannot be read ({e}): restore it from a backup, or move it away and give every setting again.",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::usage(crate::host::io_failed("read", &path, &e))),
    }
}

/// The installed appliance's state.json, or a NotInstalled error saying how to install one.
pub fn installed(config_dir: &Path) -> Result<State> {
    read_state(config_dir)?.ok_or_else(|| {
        Error::not_installed(format!(
            "No appliance is installed in {}: run registry-up up first (or give --config-dir).",
            config_dir.display()
        ))
    })
}

/// Parses a state file; any text is safe to give it.
pub fn parse_state(text: &str) -> std::result::Result<State, String> {
    let state: State = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if !(1..=FORMAT).contains(&state.format) {
        return Err(format!(
            "format {} is newer than this registry-up understands ({FORMAT})",
            state.format
        ));
    }
    Ok(state)
}
