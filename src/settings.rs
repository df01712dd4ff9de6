//! Validated settings: everything later stages need, checked before anything is touched.

use std::path::{Component, Path, PathBuf};

use crate::cli::SetupArgs;
use crate::disk::Watermarks;
use crate::error::{Error, Result};
use crate::host::HostFacts;
use crate::hostname::HostName;
use crate::listen::Listen;
use crate::own_cert::OwnCertFiles;
use crate::state::State;

/// Pinned official images; `--registry-image` and `--nginx-image` override them. The registry is the
/// newest 3.1 release (3.1.0 and 3.1.1 fixed CVE-2026-35172, CVE-2026-33540 and CVE-2026-41888); the
/// official image has no 2.x tags any more.
pub const DEFAULT_REGISTRY_IMAGE: &str = "docker.io/library/registry:3.1.1";
pub const DEFAULT_NGINX_IMAGE: &str = "docker.io/library/nginx:1.28-alpine";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub domain: HostName,
    /// Extra names, without the domain, sorted and without duplicates.
    pub sans: Vec<HostName>,
    pub port: u16,
    /// Where nginx answers.
    pub listen: Listen,
    /// Fully qualified, so Podman never has to resolve a short name.
    pub registry_image: String,
    pub nginx_image: String,
    pub pod_name: String,
    pub config_dir: PathBuf,
    /// The appliance's name for itself (a hash of the config folder's real path): its pod's label and its
    /// data folder's claim say whose they are.
    pub appliance: String,
    pub data_dir: PathBuf,
    /// The htpasswd user when authentication is on.
    pub auth_user: Option<String>,
    /// The user's own certificate files, when not issued by registry-up.
    pub own_cert: Option<OwnCertFiles>,
    /// Run by an ordinary user: rootless Podman, user units.
    pub rootless: bool,
    /// The uid and gid nginx's workers run as, and the group of the registry's socket
    /// ([`crate::host::worker_id`]).
    pub worker_id: u32,
    pub watermarks: Watermarks,
    /// How often the maintenance timer runs (systemd OnCalendar: hourly, daily, weekly); None: no timer.
    pub maintenance: Option<&'static str>,
    /// S3 storage instead of `data_dir`.
    pub s3: Option<crate::s3::Location>,
    /// The file to read the S3 key from, when given on this run (else the kept copy in the config folder).
    pub s3_credentials: Option<PathBuf>,
}

pub const DEFAULT_POD_NAME: &str = "registry-pod";
pub const DEFAULT_AUTH_USER: &str = "admin";

impl Settings {
    /// Settings from the flags given; a flag left out keeps the installed value (`previous`), and only
    /// without one the default. Never silently resets an installed setting.
    pub fn resolve(args: &SetupArgs, previous: Option<&State>, host: &HostFacts) -> Result<Self> {
        let domain = match (&args.domain, previous) {
            (Some(d), _) => HostName::parse(d, "domain")?,
            (None, Some(state)) => HostName::parse(&state.domain, "domain in state.json")?,
            (None, None) => {
                return Err(Error::usage(
                    "No --domain given and no appliance installed here: give the name clients will use, for example --domain registry.example.com.",
                ))
            }
        };
        let san_inputs: Vec<String> = match (args.sans.is_empty(), previous) {
            (true, Some(state)) => state.sans.clone(),
            _ => args.sans.clone(),
        };
        let mut sans = Vec::new();
        for san in &san_inputs {
            let name = HostName::parse(san, "--san value")?;
            if name != domain && !sans.contains(&name) {
                sans.push(name);
            }
        }
        sans.sort();
        let pick = |given: &Option<String>, installed: Option<&String>, default: &str| -> String {
            given
                .clone()
                .or_else(|| installed.cloned())
                .unwrap_or_else(|| default.to_string())
        };
        let auth_on = if args.auth {
            true
        } else if args.no_auth {
            false
        } else {
            previous.is_some_and(|s| s.auth_user.is_some())
        };
        let auth_user = if auth_on {
            let user = pick(
                &args.auth_user,
                previous.and_then(|s| s.auth_user.as_ref()),
                DEFAULT_AUTH_USER,
            );
            Some(auth_user_name(&user)?)
        } else {
            None
        };
        // Flags that only mean something with authentication on are refused, not ignored, without it.
        let idle = [
            (args.auth_password_stdin, "--auth-password-stdin"),
            (args.auth_user.is_some(), "--auth-user"),
        ];
        if let (None, Some((_, flag))) = (&auth_user, idle.iter().find(|(given, _)| *given)) {
            return Err(Error::usage(format!(
                "{flag} goes with --auth, which is off here: add --auth, or leave out {flag}."
            )));
        }
        let config_dir = usable_path(&args.config_dir, "--config-dir")?;
        let appliance = crate::owned::appliance_id(&config_dir);
        let own_cert = match (&args.cert, &args.key) {
            (Some(cert), Some(key)) => Some(OwnCertFiles {
                cert: absolute(cert)?,
                key: absolute(key)?,
                ca_bundle: args.ca_bundle.as_deref().map(absolute).transpose()?,
            }),
            (None, None) if args.ca_bundle.is_some() => {
                return Err(Error::usage("--ca-bundle goes with --cert and --key: give all three."))
            }
            (None, None) if previous.is_some_and(|s| s.own_cert) => {
                // Keep using the certificate installed from the user's files.
                let ca = config_dir.join(crate::layout::CA_CERT);
                Some(OwnCertFiles {
                    cert: config_dir.join(crate::layout::SERVER_CERT),
                    key: config_dir.join(crate::layout::SERVER_KEY),
                    ca_bundle: ca.exists().then_some(ca),
                })
            }
            (None, None) => None,
            _ => return Err(Error::usage("--cert and --key go together: give both.")),
        };
        let data_dir = args
            .data_dir
            .clone()
            .or_else(|| previous.map(|s| PathBuf::from(&s.data_dir)))
            .unwrap_or_else(|| host.default_data_dir());
        let port = args
            .port
            .or(previous.map(|s| s.port))
            .unwrap_or_else(|| host.default_port());
        let (listen_inputs, from_state) = match (args.listen.is_empty(), previous) {
            (true, Some(state)) => (state.listen.clone(), true),
            _ => (args.listen.clone(), false),
        };
        let listen = Listen::parse(&listen_inputs, from_state, host.ipv6, &host.addresses())?;
        let marks = previous.map(|s| s.watermarks()).unwrap_or_default();
        let watermarks = Watermarks::new(
            args.disk_high.unwrap_or(marks.high),
            args.disk_critical.unwrap_or(marks.critical),
        )?;
        let (s3, s3_credentials) = storage(args, previous)?;
        let maintenance = match args.maintenance {
            Some(choice) => Self::maintenance_calendar(choice),
            None => previous
                .and_then(|s| s.maintenance.as_deref())
                .and_then(|m| ["hourly", "daily", "weekly"].into_iter().find(|c| *c == m)),
        };
        if s3.is_some() && maintenance.is_some() {
            return Err(Error::usage(
                "The maintenance timer collects garbage in a folder on this host, and this appliance keeps its \
                 images in S3, where garbage collection is not done yet: give --maintenance off.",
            ));
        }
        Ok(Settings {
            domain,
            sans,
            port,
            listen,
            registry_image: image_reference(
                &pick(
                    &args.registry_image,
                    previous.map(|s| &s.registry_image),
                    DEFAULT_REGISTRY_IMAGE,
                ),
                "--registry-image",
            )?,
            nginx_image: image_reference(
                &pick(&args.nginx_image, previous.map(|s| &s.nginx_image), DEFAULT_NGINX_IMAGE),
                "--nginx-image",
            )?,
            pod_name: pod_name(&pick(&args.pod_name, previous.map(|s| &s.pod_name), DEFAULT_POD_NAME))?,
            worker_id: crate::host::worker_id(host.root, &appliance, host.ids).ok_or_else(|| {
                Error::runtime(
                    "No id is free for nginx's workers: every slot from 0x70000000 is an account's, a group's or \
                     in a subordinate range. Free one (see /etc/subuid and /etc/subgid), then run registry-up again.",
                )
            })?,
            appliance,
            config_dir,
            data_dir: usable_path(&data_dir, "--data-dir")?,
            auth_user,
            own_cert,
            rootless: !host.root,
            watermarks,
            maintenance,
            s3,
            s3_credentials,
        })
    }

    /// The maintenance timer's and service's unit names.
    pub fn maintenance_units(&self) -> [String; 2] {
        crate::layout::maintenance_units(&self.pod_name)
    }

    /// Every name the server certificate must cover: the domain first, then the extra names.
    pub fn cert_names(&self) -> Vec<HostName> {
        std::iter::once(self.domain.clone())
            .chain(self.sans.iter().cloned())
            .collect()
    }

    /// `host:port` as clients write it in image references.
    pub fn registry_host(&self) -> String {
        format!("{}:{}", self.domain.url_host(), self.port)
    }

    pub fn pod_yaml_path(&self) -> PathBuf {
        self.config_dir.join(crate::layout::POD_YAML)
    }

    pub fn ca_cert_path(&self) -> PathBuf {
        self.config_dir.join(crate::layout::CA_CERT)
    }

    fn maintenance_calendar(choice: crate::cli::MaintenanceChoice) -> Option<&'static str> {
        use crate::cli::MaintenanceChoice as M;
        match choice {
            M::Hourly => Some("hourly"),
            M::Daily => Some("daily"),
            M::Weekly => Some("weekly"),
            M::Off => None,
        }
    }

    /// A user cannot bind ports below net.ipv4.ip_unprivileged_port_start; Podman would leave a pod half
    /// created. Checked before anything is made.
    pub fn check_port_allowed(&self, host: &HostFacts) -> Result<()> {
        let start = host.unprivileged_port_start;
        if self.rootless && self.port < start {
            return Err(Error::usage(format!(
                "Port {port} is below net.ipv4.ip_unprivileged_port_start ({start}), so an ordinary user cannot listen on it: \
                 choose --port {start} or higher (8443 is the default), or let users bind it, as root: \
                 sysctl -w net.ipv4.ip_unprivileged_port_start={port} and, to keep it after a reboot, \
                 echo 'net.ipv4.ip_unprivileged_port_start={port}' > /etc/sysctl.d/90-registry-up.conf",
                port = self.port
            )));
        }
        Ok(())
    }

    pub fn unit_name(&self) -> String {
        crate::layout::unit_name(&self.pod_name)
    }
}

/// The S3 storage the flags and the installed state ask for (None: the filesystem), and the key file
/// given on this run. An appliance is not moved from one kind of storage to the other: its images would
/// stay behind, unseen.
fn storage(args: &SetupArgs, previous: Option<&State>) -> Result<(Option<crate::s3::Location>, Option<PathBuf>)> {
    use crate::cli::StorageChoice;
    let installed = previous.map(|s| match s.s3 {
        Some(_) => StorageChoice::S3,
        None => StorageChoice::Filesystem,
    });
    let wanted = args.storage.or(installed).unwrap_or(StorageChoice::Filesystem);
    if let (Some(installed), Some(state)) = (installed, previous) {
        if installed != wanted {
            let (from, to) = match installed {
                StorageChoice::S3 => (state.storage(), "a folder on this host"),
                StorageChoice::Filesystem => (state.data_dir.clone(), "S3"),
            };
            return Err(Error::usage(format!(
                "This appliance keeps its images in {from}; moving it to {to} would leave them behind, unseen: \
                 install the new one with another --config-dir and --pod-name and copy the images across \
                 (skopeo sync), or leave out --storage."
            )));
        }
    }
    let s3_flags = [
        (args.s3_endpoint.is_some(), "--s3-endpoint"),
        (args.s3_bucket.is_some(), "--s3-bucket"),
        (args.s3_region.is_some(), "--s3-region"),
        (args.s3_credentials.is_some(), "--s3-credentials"),
    ];
    if wanted == StorageChoice::Filesystem {
        if let Some((_, flag)) = s3_flags.iter().find(|(given, _)| *given) {
            return Err(Error::usage(format!(
                "{flag} goes with --storage s3, and the storage here is a folder on this host: add --storage s3, \
                 or leave out {flag}."
            )));
        }
        return Ok((None, None));
    }
    if args.data_dir.is_some() {
        return Err(Error::usage(
            "--data-dir goes with the filesystem storage, and this appliance keeps its images in S3: leave out \
             --data-dir.",
        ));
    }
    let kept = previous.and_then(|s| s.s3.as_ref());
    let endpoint = args.s3_endpoint.as_deref().or(kept.map(|k| k.endpoint.as_str()));
    let bucket = args.s3_bucket.as_deref().or(kept.map(|k| k.bucket.as_str()));
    let region = args
        .s3_region
        .as_deref()
        .or(kept.map(|k| k.region.as_str()))
        .unwrap_or(crate::s3::DEFAULT_REGION);
    if let (Some(kept), Some(given)) = (kept, &args.s3_bucket) {
        if kept.bucket != *given {
            return Err(Error::usage(format!(
                "This appliance keeps its images in S3 bucket {} at {}; another bucket would leave them behind, \
                 unseen: install the new one with another --config-dir and --pod-name and copy the images across \
                 (skopeo sync), or leave out --s3-bucket.",
                kept.bucket, kept.endpoint
            )));
        }
    }
    let (Some(endpoint), Some(bucket)) = (endpoint, bucket) else {
        return Err(Error::usage(
            "--storage s3 needs the object store's address and bucket: give --s3-endpoint http://HOST:PORT, \
             --s3-bucket NAME and --s3-credentials FILE (and --s3-region if the store's is not us-east-1).",
        ));
    };
    if kept.is_none() && args.s3_credentials.is_none() {
        return Err(Error::usage(
            "--storage s3 needs the key to use: give --s3-credentials FILE, a file with a [default] section \
             holding aws_access_key_id and aws_secret_access_key.",
        ));
    }
    let location = crate::s3::Location::parse(endpoint, bucket, region)?;
    let credentials = args.s3_credentials.as_deref().map(absolute).transpose()?;
    Ok((Some(location), credentials))
}

fn image_reference(input: &str, flag: &str) -> Result<String> {
    let shown = crate::error::printable(input, false);
    let whole = crate::reference::whole(input.trim()).map_err(|e| {
        Error::usage(format!(
            "The image reference '{shown}' given to {flag} cannot be parsed ({e}): \
             use the form registry/name:tag, for example {DEFAULT_REGISTRY_IMAGE}."
        ))
    })?;
    // The grammar (oci-spec's, which reference.rs follows string for string) takes two things Podman then
    // refuses half-way through a run: a name with capitals (`UPPER/x` is Docker Hub's `UPPER/x`), and a
    // port no TCP port can be.
    let (registry, rest) = whole.split_once('/').expect("a whole reference names its registry");
    let repository = rest.split(['@', ':']).next().unwrap_or(rest);
    let port_ok = registry
        .split_once(':')
        .is_none_or(|(_, port)| port.parse::<u16>().is_ok_and(|p| p > 0));
    let problem = if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(format!(
            "the repository {repository} has capitals, which no registry takes"
        ))
    } else if !port_ok {
        Some(format!("{registry} names a port outside 1-65535"))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(Error::usage(format!(
            "The image reference '{shown}' given to {flag} cannot be pulled ({problem}): use the form \
             registry/name:tag in lower case, for example {DEFAULT_REGISTRY_IMAGE}."
        ))),
        None => Ok(whole),
    }
}

/// An absolute path for a file the user names (read only: any characters are fine).
fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    std::env::current_dir()
        .map(|d| d.join(path))
        .map_err(|e| Error::usage(format!("Cannot read the current directory ({e}): give absolute paths.")))
}

fn auth_user_name(input: &str) -> Result<String> {
    let valid = !input.is_empty()
        && input.len() <= 64
        && input
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(input.to_string())
    } else {
        Err(Error::usage(format!(
            "The user name '{input}' is not valid: use up to 64 letters, digits and - _ . (htpasswd cannot hold ':')."
        )))
    }
}

pub fn pod_name(input: &str) -> Result<String> {
    let valid = !input.is_empty()
        && input.len() <= 63
        && input
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !input.starts_with('-')
        && !input.ends_with('-');
    if valid {
        Ok(input.to_string())
    } else {
        Err(Error::usage(format!(
            "The pod name '{input}' is not valid: use 1 to 63 lowercase letters, digits and hyphens, \
             for example registry-pod."
        )))
    }
}

/// Absolute, normalised, and free of characters that systemd unit files and YAML would need quoting for.
pub fn usable_path(input: &Path, flag: &str) -> Result<PathBuf> {
    let absolute = if input.is_absolute() {
        input.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| {
                Error::usage(format!(
                    "Cannot read the current directory ({e}): give {flag} an absolute path."
                ))
            })?
            .join(input)
    };
    let mut clean = PathBuf::from("/");
    for part in absolute.components() {
        match part {
            Component::Normal(p) => clean.push(p),
            Component::ParentDir => {
                clean.pop();
            }
            _ => {}
        }
    }
    let text = clean.to_str().ok_or_else(|| {
        Error::usage(format!(
            "The path given to {flag} is not valid UTF-8: choose a plain path."
        ))
    })?;
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.' | '+' | '@')))
    {
        return Err(Error::usage(format!(
            "The path '{text}' given to {flag} contains '{c}', which systemd units and the pod YAML cannot \
             carry safely: choose a path of letters, digits and - _ . + @ only."
        )));
    }
    if clean == Path::new("/") {
        return Err(Error::usage(format!(
            "{flag} cannot be the root directory: choose a folder of its own."
        )));
    }
    Ok(clean)
}

/// Checks that each directory exists and is writable, or can be created (a folder can be made in its
/// nearest existing parent). I/O, but leaves nothing behind.
pub fn check_writable(dirs: &[(&Path, &str)]) -> Result<()> {
    for (dir, flag) in dirs {
        let mut probe = dir.to_path_buf();
        while !probe.exists() {
            if !probe.pop() {
                break;
            }
        }
        if !probe.is_dir() {
            return Err(Error::usage(format!(
                "Cannot use {} for {flag}: {} is not a directory. Choose another path.",
                dir.display(),
                probe.display()
            )));
        }
        // access(2) says yes to root everywhere (even in /proc): try for real, and clean up.
        let test_dir = probe.join(format!(".registry-up-probe-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir(&test_dir).and_then(|_| std::fs::remove_dir(&test_dir)) {
            return Err(Error::usage(format!(
                "Cannot write to {} (needed for {flag} {}): {}.",
                probe.display(),
                dir.display(),
                crate::host::io_fix(&e)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_podman_would_refuse_later_are_refused_now() {
        for (input, says) in [
            ("UPPER/x:1", "capitals"),
            // Refused by the grammar already (capitals after a registry name).
            ("registry.example.com/Team/x:1", "cannot be parsed"),
            ("localhost:99999/x:1", "outside 1-65535"),
            ("localhost:0/x:1", "outside 1-65535"),
        ] {
            let e = image_reference(input, "--registry-image").unwrap_err();
            assert_eq!(e.status, crate::error::ExitStatus::Usage);
            assert!(e.message.contains(says), "{input}: {e}");
        }
        assert_eq!(
            image_reference("localhost:5000/x/Y_tag:V1.0", "--registry-image").ok(),
            None,
            "capitals in the name, not the tag"
        );
        assert_eq!(
            image_reference("localhost:5000/x/y:V1.0", "f").unwrap(),
            "localhost:5000/x/y:V1.0"
        );
        assert_eq!(image_reference("nginx", "f").unwrap(), "docker.io/library/nginx:latest");
    }
    use clap::Parser;

    fn settings(args: &[&str]) -> Result<Settings> {
        let mut argv = vec!["registry-up", "render", "--out", "/tmp/x"];
        argv.extend_from_slice(args);
        let cli = crate::cli::Cli::try_parse_from(argv).expect("arguments parse");
        match cli.command {
            Some(crate::cli::Command::Render(r)) => {
                Settings::resolve(&r.setup, None, &HostFacts::fixed(true, false, false))
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn defaults_are_pinned_and_fully_qualified() {
        let s = settings(&["--domain", "Registry.Example.com"]).unwrap();
        assert_eq!(s.domain.to_string(), "registry.example.com");
        assert_eq!(s.port, 443);
        assert_eq!(s.registry_image, DEFAULT_REGISTRY_IMAGE);
        assert_eq!(s.nginx_image, DEFAULT_NGINX_IMAGE);
        assert_eq!(s.registry_host(), "registry.example.com:443");
    }

    #[test]
    fn sans_are_deduplicated_and_exclude_the_domain() {
        let s = settings(&[
            "--domain",
            "r.example",
            "--san",
            "10.0.0.1",
            "--san",
            "R.example",
            "--san",
            "b.example",
            "--san",
            "10.0.0.1",
        ])
        .unwrap();
        let names: Vec<String> = s.cert_names().iter().map(|n| n.to_string()).collect();
        assert_eq!(names, ["r.example", "b.example", "10.0.0.1"]);
    }

    #[test]
    fn short_image_names_become_fully_qualified() {
        let s = settings(&[
            "--domain",
            "r.example",
            "--registry-image",
            "registry:2",
            "--nginx-image",
            "localhost/x/nginx:1",
        ])
        .unwrap();
        assert_eq!(s.registry_image, "docker.io/library/registry:2");
        assert_eq!(s.nginx_image, "localhost/x/nginx:1");
    }

    #[test]
    fn invalid_inputs_name_the_problem() {
        let e = settings(&["--domain", "r.example", "--registry-image", "Bad Image!"]).unwrap_err();
        assert!(e.message.contains("--registry-image"), "{e}");
        let e = settings(&["--domain", "r.example", "--san", "a_b"]).unwrap_err();
        assert!(e.message.contains("--san"), "{e}");
        let e = settings(&["--domain", "r.example", "--pod-name", "Pod"]).unwrap_err();
        assert!(e.message.contains("pod name"), "{e}");
        let e = settings(&["--domain", "r.example", "--data-dir", "/srv/my data"]).unwrap_err();
        assert!(e.message.contains("contains ' '"), "{e}");
        assert!(crate::cli::Cli::try_parse_from(["registry-up", "--domain", "x", "--port", "0"]).is_err());
        assert!(crate::cli::Cli::try_parse_from(["registry-up", "--domain", "x", "--port", "65536"]).is_err());
    }

    fn installed() -> State {
        let first = settings(&[
            "--domain",
            "r.example",
            "--san",
            "10.0.0.9",
            "--port",
            "5443",
            "--auth",
            "--auth-user",
            "ops",
        ])
        .unwrap();
        let text = crate::render::tests_support::state_json(&first);
        crate::state::parse_state(&text).unwrap()
    }

    fn rerun(args: &[&str], previous: &State) -> Result<Settings> {
        let mut argv = vec!["registry-up", "up"];
        argv.extend_from_slice(args);
        let cli = crate::cli::Cli::try_parse_from(argv).expect("arguments parse");
        match cli.command {
            Some(crate::cli::Command::Up(u)) => {
                Settings::resolve(&u.setup, Some(previous), &HostFacts::fixed(true, false, false))
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_rerun_keeps_every_installed_setting_it_is_not_told_to_change() {
        let previous = installed();
        let s = rerun(&[], &previous).unwrap();
        assert_eq!(s.domain.to_string(), "r.example");
        assert_eq!(s.port, 5443);
        assert_eq!(s.sans.len(), 1);
        assert_eq!(s.auth_user.as_deref(), Some("ops"));
        let s = rerun(&["--registry-image", "localhost/r:2"], &previous).unwrap();
        assert_eq!((s.registry_image.as_str(), s.port), ("localhost/r:2", 5443));
        assert_eq!(s.nginx_image, DEFAULT_NGINX_IMAGE);
        let s = rerun(&["--port", "8443", "--san", "b.example", "--no-auth"], &previous).unwrap();
        assert_eq!(s.port, 8443);
        assert_eq!(s.sans[0].to_string(), "b.example");
        assert_eq!(s.auth_user, None);
    }

    #[test]
    fn an_ordinary_user_gets_port_8443_and_folders_in_home() {
        let cli = crate::cli::Cli::try_parse_from(["registry-up", "up", "--domain", "r.example"]).unwrap();
        let Some(crate::cli::Command::Up(up)) = cli.command else {
            unreachable!()
        };
        let user = HostFacts::fixed(false, true, true);
        let s = Settings::resolve(&up.setup, None, &user).unwrap();
        assert_eq!((s.port, s.rootless), (8443, true));
        assert_eq!(s.data_dir, user.default_data_dir());
        let mut low = s.clone();
        low.port = 443;
        let e = low.check_port_allowed(&user).unwrap_err();
        assert!(e.message.contains("ip_unprivileged_port_start (1024)"), "{e}");
        assert!(s.check_port_allowed(&user).is_ok());
    }

    #[test]
    fn s3_storage_is_asked_for_whole_and_never_switched_silently() {
        let s3 = [
            "--domain",
            "r.example",
            "--storage",
            "s3",
            "--s3-endpoint",
            "http://10.0.0.5:3900",
            "--s3-bucket",
            "registry",
            "--s3-credentials",
            "/root/key",
        ];
        let s = settings(&s3).unwrap();
        let at = s.s3.clone().unwrap();
        assert_eq!((at.region.as_str(), at.bucket.as_str()), ("us-east-1", "registry"));
        assert_eq!(s.s3_credentials.as_deref(), Some(Path::new("/root/key")));
        let e = settings(&["--domain", "r.example", "--s3-bucket", "registry"]).unwrap_err();
        assert!(e.message.contains("--s3-bucket goes with --storage s3"), "{e}");
        let e = settings(&s3[..6]).unwrap_err();
        assert!(e.message.contains("needs the object store's address and bucket"), "{e}");
        let e = settings(&s3[..8]).unwrap_err();
        assert!(e.message.contains("--s3-credentials FILE"), "{e}");
        let mut with_dir = s3.to_vec();
        with_dir.extend(["--data-dir", "/srv/data"]);
        assert!(settings(&with_dir).unwrap_err().message.contains("--data-dir"));
        let mut timer = s3.to_vec();
        timer.extend(["--maintenance", "daily"]);
        assert!(settings(&timer).unwrap_err().message.contains("--maintenance off"));

        // Installed on S3: a re-run keeps it (the key from the kept copy); the folder is never switched to.
        let text = crate::render::tests_support::state_json(&s);
        let on_s3 = crate::state::parse_state(&text).unwrap();
        let again = rerun(&[], &on_s3).unwrap();
        assert_eq!((again.s3.as_ref(), again.s3_credentials.as_ref()), (Some(&at), None));
        let moved = rerun(&["--s3-endpoint", "http://10.0.0.6:3900"], &on_s3).unwrap();
        assert_eq!(moved.s3.unwrap().endpoint, "http://10.0.0.6:3900");
        let e = rerun(&["--s3-bucket", "other"], &on_s3).unwrap_err();
        assert!(e.message.contains("another bucket would leave them behind"), "{e}");
        assert!(
            rerun(&["--s3-bucket", "registry"], &on_s3).is_ok(),
            "the same bucket named again"
        );
        let e = rerun(&["--storage", "filesystem"], &on_s3).unwrap_err();
        assert!(e.message.contains("would leave them behind"), "{e}");
        let e = rerun(&["--storage", "s3"], &installed()).unwrap_err();
        assert!(e.message.contains("would leave them behind"), "{e}");
    }

    #[test]
    fn a_first_run_needs_a_domain() {
        let e = settings(&[]).unwrap_err();
        assert!(e.message.contains("No --domain given"), "{e}");
    }

    #[test]
    fn state_files_of_a_newer_format_are_refused() {
        let mut state = installed();
        state.format = crate::state::FORMAT + 1;
        let text = serde_json::to_string(&state).unwrap();
        assert!(crate::state::parse_state(&text).unwrap_err().contains("newer"));
        assert!(crate::state::parse_state("{").is_err());
    }

    #[test]
    fn relative_paths_become_absolute_and_normalised() {
        let s = settings(&["--domain", "r.example", "--config-dir", "/etc/../srv/./ru"]).unwrap();
        assert_eq!(s.config_dir, PathBuf::from("/srv/ru"));
    }
}
