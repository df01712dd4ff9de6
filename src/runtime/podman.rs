//! The podman CLI.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct Podman {
    pub bin: PathBuf,
}

/// A podman command that failed: the command, its exit code and what it said. "Not found" is decided
/// here, once, from Podman's words (4.3 and 5.x say "no such pod", "no such container", "no container
/// with name or ID", "image not known").
#[derive(Debug, Clone)]
pub struct PodmanError {
    pub command: String,
    pub code: Option<i32>,
    pub stderr: String,
}

impl PodmanError {
    pub fn is_not_found(&self) -> bool {
        let text = self.stderr.to_ascii_lowercase();
        [
            "no such pod",
            "no such container",
            "no container with name",
            "no such object",
            "image not known",
        ]
        .iter()
        .any(|words| text.contains(words))
    }
}

impl std::fmt::Display for PodmanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = self.code.map(|c| format!(" (exit code {c})")).unwrap_or_default();
        write!(f, "`{}` failed{code}: {}", self.command, self.stderr)
    }
}

impl From<PodmanError> for Error {
    fn from(e: PodmanError) -> Self {
        Error::runtime(format!(
            "{e}. Run that command by hand to see the whole story (`podman info` checks Podman itself), fix the \
             cause and run registry-up again."
        ))
    }
}

/// A Podman version such as 4.3.1 or 5.4.2-dev.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodmanVersion {
    pub major: u32,
    pub minor: u32,
    text: String,
}

impl PodmanVersion {
    /// Quadlet came with Podman 4.4.
    pub fn has_quadlet(&self) -> bool {
        (self.major, self.minor) >= (4, 4)
    }
}

impl std::str::FromStr for PodmanVersion {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let text = text.trim();
        let mut parts = text.split(['.', '-', '~', '+']).map(|p| p.parse::<u32>());
        match (parts.next(), parts.next()) {
            (Some(Ok(major)), Some(Ok(minor))) => Ok(PodmanVersion {
                major,
                minor,
                text: text.to_string(),
            }),
            _ => Err(format!("'{text}' is not a Podman version")),
        }
    }
}

impl std::fmt::Display for PodmanVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// What `podman pod inspect` says about our pod.
#[derive(Debug, Clone)]
pub struct PodStatus {
    pub state: String,
    /// (container name, state) of every container except the infra one.
    pub containers: Vec<(String, String)>,
    /// The pod's labels: who made it, and for which appliance.
    pub labels: std::collections::BTreeMap<String, String>,
}

impl PodStatus {
    /// The value of label `name`, "" when the pod has none.
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

impl PodStatus {
    /// Running, with every container running.
    pub fn healthy(&self) -> bool {
        self.state.eq_ignore_ascii_case("running")
            && !self.containers.is_empty()
            && self.containers.iter().all(|(_, s)| s.eq_ignore_ascii_case("running"))
    }
}

/// `podman pod inspect` output: Podman 4 prints an object, Podman 5 a list of one.
#[derive(Deserialize)]
#[serde(untagged)]
enum PodInspectOutput {
    One(PodInspect),
    List(Vec<PodInspect>),
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PodInspect {
    #[serde(default)]
    state: String,
    #[serde(default, rename = "InfraContainerID")]
    infra_container_id: String,
    #[serde(default)]
    containers: Vec<PodContainer>,
    #[serde(default)]
    labels: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PodContainer {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    state: String,
}

/// `podman container inspect` output, the fields registry-up reads (4.3 and 5.x agree on them).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerInspect {
    state: ContainerState,
    /// The ID of the pod it is in; empty for a container in no pod.
    #[serde(default)]
    pod: String,
    #[serde(default)]
    restart_count: u64,
    #[serde(default)]
    image_name: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    mounts: Vec<Mount>,
    #[serde(default)]
    config: ContainerConfig,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfig {
    #[serde(default)]
    env: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerState {
    #[serde(default)]
    status: String,
    #[serde(default)]
    started_at: String,
    #[serde(default)]
    pid: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Mount {
    #[serde(default)]
    pub source: PathBuf,
    #[serde(default)]
    pub destination: PathBuf,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ContainerInfo {
    pub name: String,
    /// The container's first process on the host (0 when not running).
    #[serde(skip)]
    pub pid: u32,
    #[serde(skip)]
    pub mounts: Vec<Mount>,
    pub state: String,
    pub started_at: String,
    pub restarts: u64,
    /// The pod it is in (its ID), empty for none.
    #[serde(skip)]
    pub pod: String,
    pub image_name: String,
    pub image_id: String,
    /// Its environment (`NAME=value`), the image's and the pod's together.
    #[serde(skip)]
    pub env: Vec<String>,
}

/// The names `podman load` reports (`Loaded image: NAME` lines, joined with ", " by Podman::load), written
/// in full as settings write image names (`registry:3` is `docker.io/library/registry:3`).
pub fn loaded_names(summary: &str) -> Vec<String> {
    summary
        .split([',', '\n'])
        .map(|part| {
            let part = part.trim();
            part.strip_prefix("Loaded image(s):")
                .or_else(|| part.strip_prefix("Loaded image:"))
                .unwrap_or(part)
                .trim()
        })
        .filter(|name| !name.is_empty())
        .map(full_name)
        .collect()
}

/// `name` written in full, as settings write image names.
pub fn full_name(name: &str) -> String {
    crate::reference::whole(name).unwrap_or_else(|_| name.to_string())
}

fn stderr_of(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if text.is_empty() {
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    } else {
        text
    }
}

/// Reads inspect output as `T`, or says which command printed what it could not read.
fn parse_json<T: serde::de::DeserializeOwned>(command: &str, text: &[u8]) -> Result<T> {
    serde_json::from_slice(text).map_err(|e| {
        Error::runtime(format!(
            "Could not read the output of `{command}` ({e}): this Podman prints a shape registry-up does not know; \
             please report it with `podman version`."
        ))
    })
}

impl Podman {
    pub fn find() -> Result<Self> {
        crate::host::which("podman").map(|bin| Podman { bin }).ok_or_else(|| {
            Error::usage(
                "Podman is not installed or not on PATH: install it (apt-get install podman runc) and run again.",
            )
        })
    }

    fn output(&self, args: &[&str]) -> Result<Output> {
        Command::new(&self.bin).args(args).output().map_err(|e| {
            Error::runtime(format!(
                "Could not run {} ({e}): check the Podman installation (apt-get install --reinstall podman).",
                self.bin.display()
            ))
        })
    }

    /// Runs podman: stdout, or a PodmanError with the command, its exit code and Podman's words (no exit
    /// code when podman could not be started at all).
    fn run(&self, args: &[&str]) -> std::result::Result<Vec<u8>, PodmanError> {
        self.capture(args).map(|out| out.stdout)
    }

    /// As `run`, with both streams of a success.
    fn capture(&self, args: &[&str]) -> std::result::Result<Output, PodmanError> {
        let failed = |code, stderr| PodmanError {
            command: format!("podman {}", args.join(" ")),
            code,
            stderr,
        };
        let out = Command::new(&self.bin)
            .args(args)
            .output()
            .map_err(|e| failed(None, format!("{} could not be started ({e})", self.bin.display())))?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(failed(out.status.code(), stderr_of(&out)))
        }
    }

    /// `run`'s stdout as text.
    fn text(&self, args: &[&str]) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.run(args)?).into_owned())
    }

    pub fn version(&self) -> Result<PodmanVersion> {
        let text = self.run(&["version", "--format", "{{.Client.Version}}"]).map_err(|e| {
            Error::usage(format!(
                "Podman does not work here: `podman version` said: {}. Fix the Podman installation (see `podman info`) and run again.",
                e.stderr
            ))
        })?;
        String::from_utf8_lossy(&text).parse().map_err(|e| {
            Error::usage(format!(
                "Podman does not work here: {e}. Fix the Podman installation (see `podman info`) and run again."
            ))
        })
    }

    pub fn image_exists(&self, reference: &str) -> Result<bool> {
        Ok(self.output(&["image", "exists", reference])?.status.success())
    }

    /// The ENTRYPOINT and CMD of a local image.
    pub fn image_config(&self, reference: &str) -> Result<crate::registry_image::ImageConfig> {
        let args = ["image", "inspect", "--format", "{{json .Config}}", reference];
        parse_json(&args.join(" "), &self.run(&args)?)
    }

    /// The configs of local images, in their order, from one `podman image inspect`; None when one of
    /// them is not in the store.
    pub fn image_configs(&self, references: &[&str]) -> Result<Option<Vec<crate::registry_image::ImageConfig>>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Inspect {
            #[serde(default)]
            config: crate::registry_image::ImageConfig,
        }
        let mut args = vec!["image", "inspect"];
        args.extend_from_slice(references);
        match self.run(&args) {
            Ok(json) => {
                let list: Vec<Inspect> = parse_json(&args.join(" "), &json)?;
                Ok(Some(list.into_iter().map(|i| i.config).collect()))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Names the local image `id` `name` (again).
    pub fn tag(&self, id: &str, name: &str) -> Result<()> {
        self.run(&["tag", id, name])?;
        Ok(())
    }

    /// The manifest digest of a local image.
    pub fn image_digest(&self, reference: &str) -> Result<String> {
        Ok(self
            .text(&["image", "inspect", "--format", "{{.Digest}}", reference])?
            .trim()
            .to_string())
    }

    /// `podman load -i ARCHIVE`; returns Podman's summary line.
    pub fn load(&self, archive: &Path) -> Result<String> {
        let path = archive.display().to_string();
        match self.run(&["load", "-q", "-i", &path]) {
            Ok(out) => Ok(String::from_utf8_lossy(&out).trim().replace('\n', ", ")),
            Err(e) => Err(Error::usage(format!(
                "Podman cannot load the image archive {path}: {}. Give --image-archive a file made by `podman save`.",
                e.stderr
            ))),
        }
    }

    /// The pods registry-up made on this host (its managed-by label), by name.
    pub fn registry_up_pods(&self) -> Result<Vec<String>> {
        let filter = format!("label={}=registry-up", crate::render::MANAGED_BY_LABEL);
        let text = self.text(&["pod", "ps", "--filter", &filter, "--format", "{{.Name}}"])?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }

    /// The pod's state and containers, or None when there is no such pod.
    pub fn pod_status(&self, pod: &str) -> Result<Option<PodStatus>> {
        let json = match self.run(&["pod", "inspect", pod]) {
            Ok(json) => json,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let inspect = match parse_json(&format!("podman pod inspect {pod}"), &json)? {
            PodInspectOutput::One(one) => one,
            PodInspectOutput::List(list) => list.into_iter().next().ok_or_else(|| {
                Error::runtime(format!(
                    "`podman pod inspect {pod}` printed an empty list: check the pod with `podman pod ps`."
                ))
            })?,
        };
        let containers = inspect
            .containers
            .into_iter()
            .filter(|c| c.id != inspect.infra_container_id)
            .map(|c| (c.name, c.state))
            .collect();
        Ok(Some(PodStatus {
            state: inspect.state,
            containers,
            labels: inspect.labels.unwrap_or_default(),
        }))
    }

    /// `podman play kube [--replace] YAML` (the spelling Podman 4.3 through 5 all accept); `replace` when
    /// the pod exists.
    /// `replace`: the running pod of that name goes first. It is stopped before `--replace` removes it:
    /// Podman 4.3 takes ~3.5 s longer to remove a running pod than to stop it (0.2 s) and remove it stopped
    /// (0.4 s), measured here, and that time is inside the read-only window of a guarded upgrade.
    pub fn play(&self, yaml: &Path, replace: Option<&str>) -> Result<()> {
        if let Some(pod) = replace {
            // A pod that is not there (or does not stop) is left to --replace, as before.
            let _ = self.output(&["pod", "stop", "-t", "10", pod]);
        }
        let replace = replace.is_some();
        let path = yaml.display().to_string();
        let mut args = vec!["play", "kube"];
        if replace {
            args.push("--replace");
        }
        args.push(&path);
        let Err(e) = self.run(&args) else {
            return Ok(());
        };
        // Never leave a half-created pod behind (Podman may leave it in state Created).
        let _ = self.output(&["play", "kube", "--down", &path]);
        Err(Error::runtime(format!(
            "Podman could not start the pod from {path}: {}. Fix the cause and run registry-up again.",
            e.stderr
        )))
    }

    /// Runs `entrypoint args…` once in a throw-away container of `image`, without network; returns the
    /// first line it printed.
    pub fn run_once(&self, image: &str, command: &[&str]) -> std::result::Result<String, PodmanError> {
        let mut args = vec!["run", "--rm", "--network", "none", "--entrypoint", command[0], image];
        args.extend_from_slice(&command[1..]);
        let out = self.capture(&args)?;
        // A program may print its version on either stream.
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(text.lines().next().unwrap_or_default().trim().to_string())
    }

    /// State, start time, restarts and image of a container, or None if it does not exist.
    pub fn container(&self, name: &str) -> Result<Option<ContainerInfo>> {
        match self.run(&["container", "inspect", name]) {
            Ok(json) => Ok(Self::container_infos(&[name], &json)?.into_iter().next()),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// [`Podman::container`] for several containers in one call (each podman call costs tens of
    /// milliseconds); all None when one of them does not exist.
    pub fn containers(&self, names: &[&str]) -> Vec<Option<ContainerInfo>> {
        match self.inspect_containers(names) {
            Ok(Some(infos)) if infos.len() == names.len() => infos.into_iter().map(Some).collect(),
            _ => vec![None; names.len()],
        }
    }

    /// `podman container inspect` of `names`, in their order, in one call; None when one does not exist.
    pub fn inspect_containers(&self, names: &[&str]) -> Result<Option<Vec<ContainerInfo>>> {
        let mut args = vec!["container", "inspect"];
        args.extend_from_slice(names);
        match self.run(&args) {
            Ok(json) => Ok(Some(Self::container_infos(names, &json)?).filter(|infos| infos.len() == names.len())),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn container_infos(names: &[&str], json: &[u8]) -> Result<Vec<ContainerInfo>> {
        let list: Vec<ContainerInspect> = parse_json(&format!("podman container inspect {}", names.join(" ")), json)?;
        Ok(names
            .iter()
            .zip(list)
            .map(|(name, c)| ContainerInfo {
                name: name.to_string(),
                pid: c.state.pid,
                mounts: c.mounts,
                state: c.state.status,
                started_at: c.state.started_at,
                restarts: c.restart_count,
                pod: c.pod,
                image_name: c.image_name,
                image_id: c.image,
                env: c.config.env.unwrap_or_default(),
            })
            .collect())
    }

    /// The value of `label` on the pod `pod`: None when there is no such pod, Some("") when the pod has
    /// no such label.
    pub fn pod_label(&self, pod: &str, label: &str) -> Result<Option<String>> {
        let format = format!("{{{{index .Labels \"{label}\"}}}}");
        match self.run(&["pod", "inspect", "--format", &format, pod]) {
            Ok(out) => {
                let value = String::from_utf8_lossy(&out).trim().to_string();
                Ok(Some(if value == "<no value>" { String::new() } else { value }))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// `podman pod rm -f -i NAME`: stops and removes a pod by name (when its YAML cannot be trusted).
    pub fn remove_pod(&self, pod: &str) -> Result<()> {
        self.text(&["pod", "rm", "-f", "-i", "-t", "10", pod])?;
        // The pod takes its socket volume along, unless its containers were removed first by hand.
        // (-f: a volume that is not there is no error.)
        let volume = crate::render::socket_volume(pod);
        self.text(&["volume", "rm", "-f", &volume]).map(|_| ())
    }

    /// `podman play kube --down YAML`: stops and removes the pod.
    pub fn down(&self, yaml: &Path) -> Result<()> {
        self.text(&["play", "kube", "--down", &yaml.display().to_string()])
            .map(|_| ())
    }

    /// Whether a `registry garbage-collect` runs in `container` (one a killed gc left running: its podman
    /// exec outlives it). Err when Podman cannot say.
    pub fn collector_running(&self, container: &str) -> Result<bool> {
        let text = self.text(&["top", container, "args"])?;
        Ok(text.lines().any(|l| l.contains("garbage-collect")))
    }

    /// nginx worker processes in `container`: (pid, still accepting new connections).
    fn nginx_workers(&self, container: &str) -> Vec<(u32, bool)> {
        // The worker's own title says whether it is draining ("nginx: worker process is shutting down").
        let Ok(text) = self.text(&["top", container, "pid", "args"]) else {
            return Vec::new();
        };
        text.lines()
            .filter(|l| l.contains("worker process"))
            .filter_map(|l| {
                let pid = l.split_whitespace().next()?.parse().ok()?;
                Some((pid, !l.contains("shutting down")))
            })
            .collect()
    }

    /// `nginx -s reload` in the nginx container: new certificate and config, no dropped request. Returns
    /// once every old worker has stopped accepting connections (at most 10 s), so that the next client
    /// cannot land on a worker that is about to close its connection.
    pub fn reload_nginx(&self, container: &str) -> Result<()> {
        // The new workers run and the old ones take no new connection: nothing is dropped.
        let old = self.nginx_worker_pids(container);
        self.reload_and_wait(container, &old, std::time::Duration::from_secs(10), |old, now| {
            !now.iter().any(|(pid, accepting)| *accepting && old.contains(pid))
        })
        .map(|_| ())
    }

    /// `nginx -s reload`, then waits until every worker of the old configuration has exited (none still
    /// "shutting down"), so that no request it accepted is still running; false when some still run after
    /// `wait`. Workers it cannot see are an error: "drained" must never be a guess.
    pub fn reload_nginx_drained(&self, container: &str, wait: std::time::Duration) -> Result<bool> {
        let old = self.nginx_worker_pids(container);
        if old.is_empty() {
            return Err(Error::runtime(format!(
                "Cannot see the nginx workers of {container} (podman top), so gc cannot tell when requests under \
                 way have finished: nothing was collected. Check the pod with registry-up status."
            )));
        }
        self.reload_and_wait(container, &old, wait, |old, now| {
            !now.iter().any(|(pid, accepting)| old.contains(pid) || !accepting)
        })
    }

    fn nginx_worker_pids(&self, container: &str) -> Vec<u32> {
        self.nginx_workers(container).into_iter().map(|(pid, _)| pid).collect()
    }

    /// `nginx -s reload`, then polls the workers until a new one runs and `done(old pids, workers now)`
    /// holds, or `wait` passes (false then).
    fn reload_and_wait(
        &self,
        container: &str,
        old: &[u32],
        wait: std::time::Duration,
        done: impl Fn(&[u32], &[(u32, bool)]) -> bool,
    ) -> Result<bool> {
        self.text(&["exec", container, "nginx", "-s", "reload"])?;
        let deadline = std::time::Instant::now() + wait;
        loop {
            let now = self.nginx_workers(container);
            let new_running = now.iter().any(|(pid, accepting)| *accepting && !old.contains(pid));
            if new_running && done(old, &now) {
                return Ok(true);
            }
            if std::time::Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// The environment of `container` (`NAME=value` lines).
    pub fn container_env(&self, container: &str) -> Result<Vec<String>> {
        let text = self.text(&[
            "container",
            "inspect",
            "--format",
            "{{range .Config.Env}}{{println .}}{{end}}",
            container,
        ])?;
        Ok(text.lines().map(String::from).collect())
    }

    /// What `registry --version` says in the running registry container, without the program name
    /// (e.g. `github.com/distribution/distribution/v3 3.1.1`).
    pub fn registry_version(&self, container: &str) -> Result<String> {
        let text = self.text(&["exec", container, "registry", "--version"])?;
        let line = text.lines().next().unwrap_or_default().trim();
        Ok(line.strip_prefix("registry ").unwrap_or(line).to_string())
    }

    /// `registry garbage-collect [--dry-run] CONFIG` in the running registry container: the registry's own
    /// collector, with its storage driver and the config it serves. Its output (both streams), or the error
    /// with its words.
    pub fn registry_garbage_collect(&self, container: &str, config: &str, dry_run: bool) -> Result<String> {
        let mut args = vec!["exec", container, "registry", "garbage-collect"];
        if dry_run {
            args.push("--dry-run");
        }
        args.push(config);
        let out = self.output(&args)?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            let last: Vec<&str> = text
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(Error::runtime(format!(
                "The registry's garbage-collect failed in {container} (podman {}): {}",
                args.join(" "),
                last.join(" | ")
            )));
        }
        Ok(text)
    }

    /// The log driver containers get by default (`journald`, `k8s-file`, …), if Podman says.
    pub fn log_driver(&self) -> Option<String> {
        self.text(&["info", "--format", "{{.Host.LogDriver}}"])
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    }

    /// The image IDs `references` name now, in one call.
    pub fn image_ids(&self, references: &[&str]) -> Result<Vec<String>> {
        let mut args = vec!["image", "inspect", "--format", "{{.Id}}"];
        args.extend_from_slice(references);
        Ok(self.text(&args)?.lines().map(|l| l.trim().to_string()).collect())
    }

    /// The last lines a container wrote, for a failure report.
    pub fn logs_tail(&self, container: &str, lines: u32) -> String {
        match self.output(&["logs", "--tail", &lines.to_string(), container]) {
            Ok(out) => {
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                text.trim_end().to_string()
            }
            Err(e) => e.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loaded_names_are_read_from_podman_load() {
        assert_eq!(
            loaded_names("Loaded image: localhost/a/registry:1, Loaded image: docker.io/library/nginx:1"),
            ["localhost/a/registry:1", "docker.io/library/nginx:1"]
        );
        assert_eq!(
            loaded_names("Loaded image(s): registry:3,localhost/b:2"),
            ["docker.io/library/registry:3", "localhost/b:2"]
        );
        assert!(loaded_names("").is_empty());
    }

    #[test]
    fn versions_parse_and_know_quadlet() {
        let v = |t: &str| t.parse::<PodmanVersion>();
        assert!(!v("4.3.1").unwrap().has_quadlet());
        assert!(v("4.4.0").unwrap().has_quadlet());
        assert!(v("5.4.2").unwrap().has_quadlet());
        assert!(v("4.9.3-dev").unwrap().has_quadlet());
        assert!(!v("3.4.4").unwrap().has_quadlet());
        assert_eq!(v("5.4.2\n").unwrap().to_string(), "5.4.2");
        assert!(v("garbage").is_err());
    }

    #[test]
    fn pod_inspect_of_podman_4_and_5_reads_alike() {
        let pod = r#"{"State":"Running","InfraContainerID":"i","Containers":[
            {"Id":"i","Name":"p-infra","State":"running"},
            {"Id":"a","Name":"p-registry","State":"running"},
            {"Id":"b","Name":"p-nginx","State":"exited"}]}"#;
        let one: PodInspectOutput = serde_json::from_str(pod).unwrap();
        assert!(matches!(one, PodInspectOutput::One(ref p) if p.containers.len() == 3 && p.state == "Running"));
        let list: PodInspectOutput = serde_json::from_str(&format!("[{pod}]")).unwrap();
        assert!(matches!(list, PodInspectOutput::List(ref l) if l[0].infra_container_id == "i"));
    }

    #[test]
    fn not_found_is_read_from_podman_4_and_5_words() {
        let e = |stderr: &str| PodmanError {
            command: "podman pod inspect x".into(),
            code: Some(125),
            stderr: stderr.into(),
        };
        assert!(e("Error: no such pod x").is_not_found());
        assert!(e("Error: no such pod: x").is_not_found());
        assert!(e("Error: no container with name or ID \"x\" found: no such container").is_not_found());
        assert!(!e("Error: cannot connect to the Podman socket").is_not_found());
        assert!(e("boom").to_string().contains("exit code 125"));
    }
}
