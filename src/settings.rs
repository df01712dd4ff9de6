//! Validated settings: everything later stages need, checked before anything is touched.

use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use oci_client::Reference;

use crate::cli::SetupArgs;
use crate::error::{Error, Result};
use crate::host::HostName;

/// Pinned official images; `--registry-image` and `--nginx-image` override them.
pub const DEFAULT_REGISTRY_IMAGE: &str = "docker.io/library/registry:2.8.3";
pub const DEFAULT_NGINX_IMAGE: &str = "docker.io/library/nginx:1.28-alpine";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub domain: HostName,
    /// Extra names, without the domain, sorted and without duplicates.
    pub sans: Vec<HostName>,
    pub port: u16,
    /// Fully qualified, so Podman never has to resolve a short name.
    pub registry_image: String,
    pub nginx_image: String,
    pub pod_name: String,
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
}

impl Settings {
    pub fn from_args(args: &SetupArgs) -> Result<Self> {
        let domain = HostName::parse(args.domain.as_deref().unwrap_or_default(), "domain")?;
        let mut sans = Vec::new();
        for san in &args.sans {
            let name = HostName::parse(san, "--san value")?;
            if name != domain && !sans.contains(&name) {
                sans.push(name);
            }
        }
        sans.sort();
        if args.port == 0 {
            return Err(Error::usage(
                "The port 0 is not a port: give --port a number from 1 to 65535.",
            ));
        }
        Ok(Settings {
            domain,
            sans,
            port: args.port,
            registry_image: image_reference(&args.registry_image, "--registry-image")?,
            nginx_image: image_reference(&args.nginx_image, "--nginx-image")?,
            pod_name: pod_name(&args.pod_name)?,
            config_dir: usable_path(&args.config_dir, "--config-dir")?,
            data_dir: usable_path(&args.data_dir, "--data-dir")?,
        })
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
        self.config_dir.join(crate::render::POD_YAML)
    }

    pub fn ca_cert_path(&self) -> PathBuf {
        self.config_dir.join(crate::render::CA_CERT)
    }

    pub fn unit_name(&self) -> String {
        format!("{}.service", self.pod_name)
    }
}

fn image_reference(input: &str, flag: &str) -> Result<String> {
    let reference = Reference::from_str(input.trim()).map_err(|e| {
        Error::usage(format!(
            "The image reference '{input}' given to {flag} cannot be parsed ({e}): \
             use the form registry/name:tag, for example {DEFAULT_REGISTRY_IMAGE}."
        ))
    })?;
    Ok(reference.whole())
}

fn pod_name(input: &str) -> Result<String> {
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
fn usable_path(input: &Path, flag: &str) -> Result<PathBuf> {
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
        let can_create = std::fs::create_dir(&test_dir)
            .and_then(|_| std::fs::remove_dir(&test_dir))
            .is_ok();
        if !can_create {
            return Err(Error::usage(format!(
                "Cannot write to {} (needed for {flag} {}): run as root, or choose a directory you can write to.",
                probe.display(),
                dir.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn settings(args: &[&str]) -> Result<Settings> {
        let mut argv = vec!["registry-up", "render", "--out", "/tmp/x"];
        argv.extend_from_slice(args);
        let cli = crate::cli::Cli::try_parse_from(argv).expect("arguments parse");
        match cli.command {
            Some(crate::cli::Command::Render(r)) => Settings::from_args(&r.setup),
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

    #[test]
    fn relative_paths_become_absolute_and_normalised() {
        let s = settings(&["--domain", "r.example", "--config-dir", "/etc/../srv/./ru"]).unwrap();
        assert_eq!(s.config_dir, PathBuf::from("/srv/ru"));
    }
}
