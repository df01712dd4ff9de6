//! What the appliance should be: its certificates, secrets and rendered files, computed before anything
//! is touched (the existing certificates and secrets are read, kept or renewed; render stays pure).

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::error::Result;
use crate::host::HostFacts;
use crate::layout;
use crate::pki::{self, Origin, Pki, Renew};
use crate::plan::WantedDir;
use crate::render::{self, Inputs, RenderedFile, Root};
use crate::secrets::{self, Secrets};
use crate::settings::Settings;
use crate::state::Service;

pub struct Desired {
    pub pki: Pki,
    pub secrets: Secrets,
    pub files: Vec<RenderedFile>,
}

/// Secrets given on this run rather than kept or made here.
#[derive(Default)]
pub struct Given {
    /// The --auth user's password (from standard input, or a site file).
    pub password: Option<String>,
    /// The S3 key, with S3 storage.
    pub s3_key: Option<crate::s3::Credentials>,
    /// The registry's `http.secret`, from a site file: every replica of a site has the same.
    pub http_secret: Option<String>,
}

/// `dir` holds the existing certificates and secrets (the config dir, or render's --out); `podman` is
/// the binary the systemd unit runs.
pub fn desired(
    settings: &Settings,
    dir: &Path,
    podman: &str,
    service: Service,
    given: Given,
    renew: Renew,
) -> Result<Desired> {
    let now = OffsetDateTime::now_utc();
    let pki = match &settings.own_cert {
        Some(files) => crate::own_cert::load(files, &settings.cert_names(), now)?,
        None => pki::ensure(pki::Existing::read(dir)?, &settings.cert_names(), now, dir, renew)?,
    };
    let mut secrets = secrets::ensure(dir, settings.auth_user.as_deref(), given.password)?;
    secrets.s3 = given.s3_key;
    if let Some(secret) = given.http_secret {
        secrets.http_secret = secret;
    }
    let files = render::render(
        settings,
        &Inputs {
            pki: &pki,
            secrets: &secrets,
            podman,
            registry_up: &crate::host::self_path(),
            service,
        },
    );
    Ok(Desired { pki, secrets, files })
}

/// How a certificate came to be, for the report.
pub fn describe(origin: &Origin, what: &str) -> String {
    match origin {
        Origin::Kept => format!("{what} kept"),
        Origin::New => format!("{what} created"),
        Origin::Reissued(why) => format!("{what} re-issued because {why}"),
        Origin::Provided => format!("{what} as given"),
    }
}

/// The folders the appliance needs on this host, with their modes.
pub fn wanted_dirs(settings: &Settings, service: Service, host: &HostFacts) -> Vec<WantedDir> {
    let folders = layout::config_folders(
        settings.auth_user.is_some(),
        settings.own_cert.is_none(),
        settings.s3.is_some(),
    );
    let ours = layout::owns_config_folder(&settings.config_dir);
    let mut dirs: Vec<WantedDir> = folders
        .iter()
        .map(|rel| WantedDir {
            path: settings.config_dir.join(rel),
            mode: layout::PRIVATE_DIR,
            enforce_mode: !rel.is_empty() || ours,
        })
        .collect();
    // The data folder after the registry's: the order the plan has always listed them in. Its mode is
    // enforced: the registry writes under umask 0007 (see render::pod), and a folder others cannot
    // enter keeps even an earlier release's files (written under umask 0005) from them.
    let data = WantedDir {
        path: settings.data_dir.clone(),
        mode: layout::PRIVATE_DIR,
        enforce_mode: true,
    };
    // With S3 storage the registry keeps nothing on this host.
    if settings.s3.is_none() {
        dirs.insert(4, data);
    }
    // The folders systemd and Quadlet read may not exist yet (a user's never do).
    let shared = match service {
        Service::SystemdUnit => Some(host.unit_dir()),
        Service::Quadlet => Some(host.quadlet_dir()),
        Service::Direct => None,
    };
    dirs.extend(shared.map(|path| WantedDir {
        path,
        mode: layout::SHARED_DIR,
        enforce_mode: false,
    }));
    dirs
}

/// Where a rendered file goes on this host.
pub fn host_path(settings: &Settings, file: &RenderedFile, host: &HostFacts) -> PathBuf {
    match file.root {
        Root::Config => settings.config_dir.join(&file.rel),
        Root::SystemdUnits => host.unit_dir().join(&file.rel),
        Root::Quadlets => host.quadlet_dir().join(&file.rel),
        Root::ClientHost => PathBuf::from("/").join(&file.rel),
    }
}
