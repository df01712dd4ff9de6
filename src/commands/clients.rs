//! `registry-up clients --out DIR | --apply`: the files each kind of client on the site needs to pull the
//! mirrored registries' images from the appliance (render/clients.rs), for the registries it mirrors:
//! those given with --mirror, else those its repositories are named after (the live catalog).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::ClientsArgs;
use crate::error::{Error, ExitStatus, Result};
use crate::host::HostFacts;
use crate::hostname::HostName;
use crate::layout;
use crate::plan::{self, WantedDir};
use crate::render::clients::{self, Kind, Mirror, Site, MARKER};
use crate::render::RenderedFile;
use crate::state::State;
use crate::verify::Target;

/// The registry a repository is named after, if its first component is a registry's name (a dot, or
/// `localhost`, as containers/image tells a registry from a Docker Hub namespace).
fn upstream_of(repository: &str) -> Option<&str> {
    let (first, rest) = repository.split_once('/')?;
    (!rest.is_empty() && (first.contains('.') || first == "localhost")).then_some(first)
}

/// A --mirror value: a registry's host name, without scheme, port or path.
fn parse_mirror(text: &str) -> Result<Mirror> {
    let bad = || {
        Error::usage(format!(
            "--mirror {text:?} is not a registry name: give the host name images are named after, such as \
             docker.io or quay.io (no scheme, port or path)."
        ))
    };
    if text.contains(['/', ':']) || text.is_empty() {
        return Err(bad());
    }
    HostName::parse(text, "--mirror").map_err(|_| bad())?;
    Ok(Mirror::of(&text.to_ascii_lowercase()))
}

/// How this host reaches the appliance: its name, port, CA and password.
fn target(state: &State, config_dir: &Path) -> Result<Target> {
    let ca = config_dir.join(layout::CA_CERT);
    let credentials = match &state.auth_user {
        None => None,
        Some(user) => Some(crate::secrets::saved_login(
            config_dir,
            user,
            "name the mirrored registries with --mirror",
        )?),
    };
    Ok(Target {
        host: state.url_host(),
        port: state.port,
        ca_pem: std::fs::read(ca).ok(),
        credentials,
        pin: None,
    })
}

/// The registries the appliance holds images of, from its catalog.
fn mirrored(state: &State, config_dir: &Path, rt: &tokio::runtime::Runtime) -> Result<Vec<Mirror>> {
    let target = target(state, config_dir)?;
    let repositories = rt
        .block_on(crate::verify::repositories(&target, Duration::from_secs(30)))
        .map_err(|why| {
            Error::usage(format!(
                "Could not list the appliance's repositories ({why}): check it with registry-up verify, or name \
                 the mirrored registries with --mirror."
            ))
        })?;
    // Neither localhost nor the appliance's own names: clients would send those pulls to it in a loop.
    let own: Vec<String> = std::iter::once(&state.domain)
        .chain(&state.sans)
        .map(|n| n.to_ascii_lowercase())
        .collect();
    let mut mirrors: Vec<Mirror> = repositories
        .iter()
        .filter_map(|r| upstream_of(r))
        .filter(|u| *u != "localhost" && !own.iter().any(|n| n == u))
        .map(Mirror::of)
        .collect();
    mirrors.sort();
    mirrors.dedup();
    if mirrors.is_empty() {
        return Err(Error::usage(format!(
            "The appliance at {} holds no repository named after a registry (such as docker.io/library/nginx): \
             push or import images under their registry's name first, or name the registry with --mirror docker.io.",
            target.registry()
        )));
    }
    Ok(mirrors)
}

/// Whether `path` may be replaced: missing, a configuration file registry-up wrote (its marker), or a CA
/// file (each sits in the appliance's own folder or is named registry-up-ca.crt: after `certs renew
/// --rotate-ca` the new CA must replace the old one). Anything there that is not a regular file is not.
/// A folder on the way that is a link is not: root would write wherever it points (outside /etc).
fn ours(path: &Path, file: &RenderedFile, root: &Path) -> bool {
    let linked = path
        .ancestors()
        .skip(1)
        .take_while(|dir| dir.starts_with(root) && *dir != root)
        .any(|dir| std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()));
    if linked {
        return false;
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Ok(meta) if meta.is_file() => {
            file.rel.ends_with(".crt") || read_small(path).is_some_and(|c| c.starts_with(MARKER))
        }
        _ => false,
    }
}

/// A client configuration file's text, if it is a regular file of a sensible size (a FIFO is not read).
fn read_small(path: &Path) -> Option<String> {
    crate::bounded::read_text(path, crate::bounded::SMALL).ok()
}

/// The words every configuration file written for the appliance at `registry` has on its first line.
fn names_appliance(registry: &str) -> String {
    format!("from the appliance at {registry} first.")
}

/// Configuration files registry-up wrote on this host for the appliance at `registry` (their first line
/// says so), wherever `clients --apply` writes them.
fn applied_here(registry: &str) -> Vec<PathBuf> {
    let wanted = names_appliance(registry);
    let listed = |dir: &str| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    let mut candidates = listed("/etc/containers/registries.conf.d");
    candidates.extend(
        listed("/etc/containerd/certs.d")
            .into_iter()
            .map(|d| d.join("hosts.toml")),
    );
    candidates.extend(["/etc/rancher/k3s/registries.yaml", "/etc/rancher/rke2/registries.yaml"].map(PathBuf::from));
    candidates
        .into_iter()
        .filter(|path| {
            read_small(path).is_some_and(|text| {
                text.lines()
                    .next()
                    .is_some_and(|l| l.starts_with(MARKER) && l.ends_with(&wanted))
            })
        })
        .collect()
}

/// Removes what `clients --apply` wrote for the appliance at `registry`, except `keep`: each
/// configuration file, the registry-up-ca.crt beside it and containerd's ca.crt for the appliance's own
/// name, each only when it holds the appliance's CA `ca` (an admin's file of that name stays), and a
/// containerd folder left empty. Returns what it removed.
pub fn remove_applied(registry: &str, keep: &[PathBuf], ca: Option<&[u8]>) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let is_ours = |path: &Path| {
        std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
            && ca.is_some_and(|ca| {
                crate::bounded::file(path, crate::bounded::SMALL).is_ok_and(|c| c.as_deref() == Some(ca))
            })
    };
    let own_dir = PathBuf::from(format!("/etc/containerd/certs.d/{registry}"));
    let mut cas: Vec<PathBuf> = vec![own_dir.join("ca.crt")];
    for path in applied_here(registry).into_iter().filter(|p| !keep.contains(p)) {
        if std::fs::remove_file(&path).is_ok() {
            removed.push(path.clone());
        }
        if let Some(dir) = path.parent() {
            cas.push(dir.join("registry-up-ca.crt"));
        }
    }
    for file in cas.into_iter().filter(|p| !keep.contains(p)) {
        if is_ours(&file) && std::fs::remove_file(&file).is_ok() {
            removed.push(file.clone());
        }
        if let Some(dir) = file.parent().filter(|d| d.starts_with("/etc/containerd/certs.d/")) {
            let _ = std::fs::remove_dir(dir);
        }
    }
    removed
}

/// Other registries.conf files that configure `upstream` too: `[[registry]]` tables of one prefix replace
/// each other in file order, so theirs and ours do not add up.
fn also_configured(upstream: &str, ours: &Path) -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("/etc/containers/registries.conf")];
    if let Ok(entries) = std::fs::read_dir("/etc/containers/registries.conf.d") {
        files.extend(entries.flatten().map(|e| e.path()));
    }
    let quoted = format!("\"{upstream}\"");
    files
        .into_iter()
        .filter(|f| f != ours)
        .filter(|f| {
            read_small(f).is_some_and(|text| {
                text.lines().any(|l| {
                    let l = l.trim_start();
                    (l.starts_with("location") || l.starts_with("prefix")) && l.contains(&quoted)
                })
            })
        })
        .collect()
}

/// What a run writes, and what it leaves alone (and has said so).
struct Selection {
    files: Vec<(PathBuf, RenderedFile)>,
    left_alone: Vec<(Kind, PathBuf)>,
}

/// The files to write under `root`: with `apply` only for the kinds installed here; never over a file
/// someone else wrote, nor a CA file into a folder whose configuration file is left alone.
fn writable(rendered_files: Vec<(Kind, RenderedFile)>, root: &Path, apply: bool) -> Selection {
    let rendered: Vec<(Kind, PathBuf, RenderedFile)> = rendered_files
        .into_iter()
        .filter(|(kind, _)| !apply || Path::new(kind.installed_marker()).is_dir())
        .map(|(kind, file)| (kind, root.join(&file.rel), file))
        .collect();
    let left_alone: Vec<(Kind, PathBuf)> = rendered
        .iter()
        .filter(|(_, path, file)| !ours(path, file, root))
        .map(|(kind, path, _)| (*kind, path.clone()))
        .collect();
    let blocked = |path: &Path| {
        left_alone.iter().any(|(_, other)| {
            other == path || (path.extension().is_some_and(|e| e == "crt") && other.parent() == path.parent())
        })
    };
    for (kind, path) in &left_alone {
        println!(
            "left alone {} ({}): registry-up did not write it; merge what `registry-up clients --out DIR` writes \
             there by hand",
            path.display(),
            kind.name()
        );
    }
    let files = rendered
        .into_iter()
        .filter(|(_, path, _)| !blocked(path))
        .map(|(_, path, file)| (path, file))
        .collect();
    Selection { files, left_alone }
}

/// After --apply: what an earlier run wrote and this one no longer writes goes, and what the user must
/// still know is said.
fn after_apply(plan: &plan::Plan, registry: &str, mirrors: &[Mirror], ca: Option<&[u8]>) {
    let keep: Vec<PathBuf> = plan.files.iter().map(|c| c.path.clone()).collect();
    for path in remove_applied(registry, &keep, ca) {
        println!("  remove    {}", path.display());
    }
    let drop_in = plan
        .files
        .iter()
        .find(|c| c.path.starts_with("/etc/containers/registries.conf.d"));
    for mirror in mirrors {
        for other in drop_in
            .map(|c| also_configured(&mirror.upstream, &c.path))
            .unwrap_or_default()
        {
            println!(
                "note: {} configures {} too: of two [[registry]] tables for it, the later file's wins",
                other.display(),
                mirror.upstream
            );
        }
    }
    for change in plan.writes().filter(|c| c.path.starts_with("/etc/rancher")) {
        let service = if change.path.starts_with("/etc/rancher/k3s") {
            "k3s"
        } else {
            "rke2-server or rke2-agent"
        };
        println!(
            "note: {service} reads {} when it starts: restart it",
            change.path.display()
        );
    }
}

pub fn command(args: &ClientsArgs, rt: &tokio::runtime::Runtime, host: &HostFacts) -> Result<ExitStatus> {
    let config_dir = &args.appliance.config_dir;
    let state = crate::state::installed(config_dir)?;
    if args.apply && !host.root {
        return Err(Error::usage(
            "clients --apply writes to /etc (containers, docker, containerd, rancher): run it as root, or write \
             the files into a folder with --out DIR.",
        ));
    }
    let mut mirrors = args
        .mirror
        .iter()
        .map(|m| parse_mirror(m))
        .collect::<Result<Vec<_>>>()?;
    if mirrors.is_empty() {
        mirrors = mirrored(&state, config_dir, rt)?;
    }
    mirrors.sort();
    mirrors.dedup();
    let ca_path = config_dir.join(layout::CA_CERT);
    let ca = crate::bounded::file(&ca_path, crate::bounded::SMALL)
        .map_err(|e| Error::usage(crate::host::io_failed("read", &ca_path, &e)))?;
    let registry = state.registry_host();
    let site = Site {
        registry: &registry,
        ca: ca.as_deref(),
        mirrors: &mirrors,
    };
    let root = match &args.out {
        Some(out) => crate::settings::usable_path(out, "--out")?,
        None => PathBuf::from("/"),
    };
    let Selection { files, left_alone } = writable(clients::files(&site), &root, args.apply);
    // Folders: created where missing (0755, as the clients' own), never changed where present; each
    // missing one named, so the plan says everything it creates.
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .filter_map(|(p, _)| p.parent())
        .flat_map(|parent| parent.ancestors().take_while(|d| !d.exists()).map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    let wanted = dirs
        .into_iter()
        .map(|path| WantedDir {
            path,
            mode: layout::SHARED_DIR,
            enforce_mode: false,
        })
        .collect();
    let plan = plan::plan(wanted, files)?;
    print!("{plan}");
    let written = crate::apply::apply(&plan)?;
    if args.apply {
        after_apply(&plan, &registry, &mirrors, ca.as_deref());
    }
    if state.auth_user.is_some() {
        println!(
            "note: the appliance requires a password, which these files do not carry: log clients in \
             (podman login {registry}; k3s and RKE2: configs.\"{registry}\".auth in registries.yaml)."
        );
    }
    let names: Vec<&str> = mirrors.iter().map(|m| m.upstream.as_str()).collect();
    println!(
        "{written} files written for {} (mirrors of {}).",
        if args.apply {
            let kinds: Vec<&str> = Kind::ALL
                .iter()
                .filter(|k| Path::new(k.installed_marker()).is_dir())
                .map(|k| k.name())
                .collect();
            format!("this host's {}", kinds.join(", "))
        } else {
            format!("clients, in {}", root.display())
        },
        names.join(", ")
    );
    if left_alone.is_empty() {
        Ok(ExitStatus::Success)
    } else {
        println!(
            "{} files left alone (above): those clients are not set up.",
            left_alone.len()
        );
        Ok(ExitStatus::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_named_after_a_registry_name_it() {
        assert_eq!(upstream_of("docker.io/library/nginx"), Some("docker.io"));
        assert_eq!(upstream_of("quay.io/prometheus/node-exporter"), Some("quay.io"));
        assert_eq!(upstream_of("localhost/mine"), Some("localhost"));
        // A Docker Hub style namespace or a bare name is not a registry.
        assert_eq!(upstream_of("library/nginx"), None);
        assert_eq!(upstream_of("registry-up/verify"), None);
        assert_eq!(upstream_of("nginx"), None);
    }

    #[test]
    fn a_mirror_is_a_bare_registry_name() {
        assert_eq!(parse_mirror("Docker.io").unwrap(), Mirror::of("docker.io"));
        for bad in [
            "",
            "https://docker.io",
            "docker.io:443",
            "docker.io/library",
            "bad name",
        ] {
            let e = parse_mirror(bad).unwrap_err();
            assert!(e.message.contains("is not a registry name"), "{bad}: {}", e.message);
        }
    }
}
