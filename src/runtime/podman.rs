//! The podman CLI.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct Podman {
    pub bin: PathBuf,
}

/// What `podman pod inspect` says about our pod.
#[derive(Debug, Clone)]
pub struct PodStatus {
    pub state: String,
    /// (container name, state) of every container except the infra one.
    pub containers: Vec<(String, String)>,
}

impl PodStatus {
    /// Running, with every container running.
    pub fn healthy(&self) -> bool {
        self.state.eq_ignore_ascii_case("running")
            && !self.containers.is_empty()
            && self.containers.iter().all(|(_, s)| s.eq_ignore_ascii_case("running"))
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ContainerInfo {
    pub name: String,
    pub state: String,
    pub started_at: String,
    pub restarts: u64,
    pub image_name: String,
    pub image_id: String,
}

fn stderr_of(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if text.is_empty() {
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    } else {
        text
    }
}

impl Podman {
    pub fn find() -> Result<Self> {
        super::which("podman").map(|bin| Podman { bin }).ok_or_else(|| {
            Error::usage(
                "Podman is not installed or not on PATH: install it (apt-get install podman runc) and run again.",
            )
        })
    }

    fn output(&self, args: &[&str]) -> Result<Output> {
        Command::new(&self.bin).args(args).output().map_err(|e| {
            Error::runtime(format!(
                "Could not run {} ({e}): check the Podman installation.",
                self.bin.display()
            ))
        })
    }

    /// Runs podman and returns stdout; a failure becomes an error naming the command and Podman's words.
    fn run(&self, args: &[&str]) -> Result<String> {
        let out = self.output(args)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(Error::runtime(format!(
                "`podman {}` failed: {}",
                args.join(" "),
                stderr_of(&out)
            )))
        }
    }

    pub fn version(&self) -> Result<String> {
        let out = self.output(&["version", "--format", "{{.Client.Version}}"])?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(Error::usage(format!(
                "Podman does not work here: `podman version` said: {}. Fix the Podman installation (see `podman info`) and run again.",
                stderr_of(&out)
            )))
        }
    }

    pub fn image_exists(&self, reference: &str) -> Result<bool> {
        Ok(self.output(&["image", "exists", reference])?.status.success())
    }

    /// The ENTRYPOINT and CMD of a local image.
    pub fn image_config(&self, reference: &str) -> Result<crate::registry_image::ImageConfig> {
        let text = self.run(&["image", "inspect", "--format", "{{json .Config}}", reference])?;
        serde_json::from_str(text.trim()).map_err(|e| {
            Error::runtime(format!(
                "Could not read the configuration of the image {reference} from `podman image inspect` ({e}): \
                 check the image with `podman image inspect {reference}`."
            ))
        })
    }

    /// `podman load -i ARCHIVE`; returns Podman's summary line.
    pub fn load(&self, archive: &Path) -> Result<String> {
        let path = archive.display().to_string();
        let out = self.output(&["load", "-q", "-i", &path])?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().replace('\n', ", "))
        } else {
            Err(Error::usage(format!(
                "Podman cannot load the image archive {path}: {}. Give --image-archive a file made by `podman save`.",
                stderr_of(&out)
            )))
        }
    }

    pub fn pod_status(&self, pod: &str) -> Result<Option<PodStatus>> {
        let out = self.output(&["pod", "inspect", pod])?;
        if !out.status.success() {
            let why = stderr_of(&out);
            if why.contains("no such pod") {
                return Ok(None);
            }
            return Err(Error::runtime(format!("`podman pod inspect {pod}` failed: {why}")));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| Error::runtime(format!("Could not read `podman pod inspect {pod}` ({e}).")))?;
        // Podman 4 prints an object, Podman 5 a list of one.
        let pod_value = match &value {
            Value::Array(items) => items.first().cloned().unwrap_or(Value::Null),
            other => other.clone(),
        };
        let infra = pod_value["InfraContainerID"].as_str().unwrap_or_default().to_string();
        let containers = pod_value["Containers"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter(|c| c["Id"].as_str() != Some(infra.as_str()))
                    .map(|c| {
                        (
                            c["Name"].as_str().unwrap_or_default().to_string(),
                            c["State"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(PodStatus {
            state: pod_value["State"].as_str().unwrap_or_default().to_string(),
            containers,
        }))
    }

    /// `podman play kube [--replace] YAML` (the spelling Podman 4.3 through 5 all accept); `replace` when
    /// the pod exists.
    pub fn play(&self, yaml: &Path, replace: bool) -> Result<()> {
        let path = yaml.display().to_string();
        let mut args = vec!["play", "kube"];
        if replace {
            args.push("--replace");
        }
        args.push(&path);
        let out = self.output(&args)?;
        if out.status.success() {
            return Ok(());
        }
        let why = stderr_of(&out);
        // Never leave a half-created pod behind (Podman may leave it in state Created).
        let _ = self.output(&["play", "kube", "--down", &path]);
        Err(Error::runtime(format!(
            "Podman could not start the pod from {path}: {why}. Fix the cause and run registry-up again."
        )))
    }

    /// Runs `entrypoint args…` once in a throw-away container of `image`, without network; returns the
    /// first line it printed.
    pub fn run_once(&self, image: &str, command: &[&str]) -> Result<String> {
        let mut args = vec!["run", "--rm", "--network", "none", "--entrypoint", command[0], image];
        args.extend_from_slice(&command[1..]);
        let out = self.output(&args)?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text.lines().next().unwrap_or_default().trim().to_string())
        } else {
            Err(Error::runtime(stderr_of(&out)))
        }
    }

    /// State, start time, restarts and image of a container, or None if it does not exist.
    pub fn container(&self, name: &str) -> Result<Option<ContainerInfo>> {
        let out = self.output(&["container", "inspect", name])?;
        if !out.status.success() {
            return Ok(None);
        }
        let value: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| Error::runtime(format!("Could not read `podman container inspect {name}` ({e}).")))?;
        let c = &value[0];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        Ok(Some(ContainerInfo {
            name: name.to_string(),
            state: text(&c["State"]["Status"]),
            started_at: text(&c["State"]["StartedAt"]),
            restarts: c["RestartCount"].as_u64().unwrap_or(0),
            image_name: text(&c["ImageName"]),
            image_id: text(&c["Image"]),
        }))
    }

    /// `podman play kube --down YAML`: stops and removes the pod.
    pub fn down(&self, yaml: &Path) -> Result<()> {
        self.run(&["play", "kube", "--down", &yaml.display().to_string()])
            .map(|_| ())
    }

    /// nginx worker processes in `container`: (pid, still accepting new connections).
    fn nginx_workers(&self, container: &str) -> Vec<(String, bool)> {
        let Ok(text) = self.run(&["top", container, "pid", "args"]) else {
            return Vec::new();
        };
        text.lines()
            .filter(|l| l.contains("worker process"))
            .filter_map(|l| {
                let pid = l.split_whitespace().next()?.to_string();
                Some((pid, !l.contains("shutting down")))
            })
            .collect()
    }

    /// `nginx -s reload` in the nginx container: new certificate and config, no dropped request. Returns
    /// once every old worker has stopped accepting connections (at most 10 s), so that the next client
    /// cannot land on a worker that is about to close its connection.
    pub fn reload_nginx(&self, container: &str) -> Result<()> {
        let old: Vec<String> = self.nginx_workers(container).into_iter().map(|(pid, _)| pid).collect();
        self.run(&["exec", container, "nginx", "-s", "reload"])?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let now = self.nginx_workers(container);
            let old_accepting = now.iter().any(|(pid, accepting)| *accepting && old.contains(pid));
            let new_running = now.iter().any(|(pid, _)| !old.contains(pid));
            if !old_accepting && new_running {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Ok(())
    }

    /// What `registry --version` says in the running registry container, without the program name
    /// (e.g. `github.com/distribution/distribution/v3 3.1.1`).
    pub fn registry_version(&self, container: &str) -> Result<String> {
        let text = self.run(&["exec", container, "registry", "--version"])?;
        let line = text.lines().next().unwrap_or_default().trim();
        Ok(line.strip_prefix("registry ").unwrap_or(line).to_string())
    }

    /// The log driver containers get by default (`journald`, `k8s-file`, …), if Podman says.
    pub fn log_driver(&self) -> Option<String> {
        self.run(&["info", "--format", "{{.Host.LogDriver}}"])
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    }

    /// The image IDs `references` name now, in one call.
    pub fn image_ids(&self, references: &[&str]) -> Result<Vec<String>> {
        let mut args = vec!["image", "inspect", "--format", "{{.Id}}"];
        args.extend_from_slice(references);
        Ok(self.run(&args)?.lines().map(|l| l.trim().to_string()).collect())
    }

    /// The image ID each container runs (None when not known), in one call.
    pub fn container_image_ids(&self, containers: &[&str]) -> Vec<Option<String>> {
        self.inspect_each(containers, "{{.Image}}", |l| Some(l.to_string()))
    }

    /// One `podman container inspect --format FORMAT` for all `containers`, a value per container; all None
    /// when one of them does not exist (Podman then prints fewer lines than asked for).
    fn inspect_each<T: Clone>(
        &self,
        containers: &[&str],
        format: &str,
        read: impl Fn(&str) -> Option<T>,
    ) -> Vec<Option<T>> {
        let mut args = vec!["container", "inspect", "--format", format];
        args.extend_from_slice(containers);
        let text = self.run(&args).unwrap_or_default();
        let values: Vec<Option<T>> = text.lines().map(|l| read(l.trim())).collect();
        if values.len() == containers.len() {
            values
        } else {
            vec![None; containers.len()]
        }
    }

    /// How often Podman restarted each container, in one call.
    pub fn restart_counts(&self, containers: &[&str]) -> Vec<Option<u64>> {
        self.inspect_each(containers, "{{.RestartCount}}", |l| l.parse().ok())
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
