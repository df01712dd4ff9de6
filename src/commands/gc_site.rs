//! `registry-up gc` on S3 storage. The replicas of a site share every blob, so a collection holds them all
//! read-only at once (the hold in the shared bucket, src/gc_hold.rs), proves over HTTPS that each
//! recorded replica refuses a write, gives writes begun before the hold time to end, collects with the
//! registry's own `garbage-collect` in this host's registry container (its S3 driver, the config it
//! serves), lifts the hold, and `verify --deep` proves that every tag still has all it needs. A replica
//! that cannot be reached, or that takes the write, stops gc before anything is deleted.
//!
//! distribution's collector runs without `--delete-untagged` (that deletes per-platform manifests only
//! an index references, distribution#4461): it frees the blobs no manifest references, e.g. those of
//! manifests deleted through the API.

use std::time::Duration;

use crate::cli::GcArgs;
use crate::error::{Error, ExitStatus, Result};
use crate::gc_hold::{self, Record};
use crate::host::HostFacts;
use crate::progress::Reporter;
use crate::render;
use crate::replicas::{self, Replica};
use crate::runtime::podman::Podman;
use crate::s3::{Bucket, Credentials, Location};
use crate::state::State;
use crate::verify::{chain, Http, Target};

/// How long writes accepted before the hold have to end before the collection marks what is in use. A
/// manifest upload is one small request; the blobs of an upload cut off by the hold are not referenced
/// yet, so losing them costs that push a retry, never a tag its blobs. `verify --deep` afterwards proves it.
const SETTLE: Duration = Duration::from_secs(5);
/// The prefix of the registry's blobs in the bucket (distribution's layout).
const BLOBS: &str = "docker/registry/v2/blobs/";
const TIMEOUT: Duration = Duration::from_secs(15);

/// This host's appliance on the site: what gc needs to reach the bucket and the replicas.
struct Site {
    state: State,
    location: Location,
    key: Credentials,
    /// This host's appliance as a client reaches it, pinned to its own listen address.
    own: Target,
}

impl Site {
    fn open(dir: &std::path::Path, state: State) -> Result<Self> {
        let location = state.s3.clone().expect("a site's state names its bucket");
        let (key, _) = crate::s3::read_key(None, dir)?;
        let mut own = super::import::appliance_target(dir)?;
        own.pin = Some(crate::listen::local_address(&state.listen, state.port));
        Ok(Site {
            state,
            location,
            key,
            own,
        })
    }

    fn bucket(&self) -> Result<Bucket<'_>> {
        Bucket::new(&self.location, &self.key, TIMEOUT)
    }

    /// How a client reaches `replica`: by its name, this host's own appliance at its own address.
    fn target(&self, replica: &Replica) -> Target {
        Target {
            host: replica.url_host(),
            port: replica.port,
            pin: (replica.domain == self.state.domain).then_some(self.own.pin).flatten(),
            ..self.own.clone()
        }
    }

    fn client(&self, target: &Target) -> Result<Http> {
        target.http_client_at(TIMEOUT, target.pin)
    }
}

pub fn command(args: &GcArgs, rt: &tokio::runtime::Runtime, host: &HostFacts) -> Result<ExitStatus> {
    let dir = &args.appliance.config_dir;
    let freed = {
        let _lock = crate::lock::ApplianceLock::take(dir, host, crate::lock::WAIT)?;
        // Under the lock: the state `up` may have changed meanwhile.
        let state = crate::state::installed(dir)?;
        let site = Site::open(dir, state)?;
        let podman = Podman::find()?;
        let registry = render::container_name(&site.state.pod_name, render::REGISTRY_CONTAINER);
        if !podman.pod_status(&site.state.pod_name)?.is_some_and(|s| s.healthy()) {
            return Err(Error::usage(format!(
                "The pod {} is not running, so this host can neither hold the site nor collect: start it with \
                 registry-up up, then run this again.",
                site.state.pod_name
            )));
        }
        if args.dry_run {
            return dry_run(&site, rt, &podman, &registry);
        }
        collect(&site, rt, &podman, &registry)?
    };
    let status = super::gc::verify_deep(&args.appliance, "after the collection", None, rt, host)?;
    println!("\ngc freed {freed}.");
    Ok(status)
}

/// What a collection would free now, and whether every replica answers; nothing is changed.
fn dry_run(site: &Site, rt: &tokio::runtime::Runtime, podman: &Podman, registry: &str) -> Result<ExitStatus> {
    let bucket = site.bucket()?;
    let replicas = rt
        .block_on(replicas::list(&bucket))
        .map_err(|e| bucket_failed(site, &e))?;
    let said = podman.registry_garbage_collect(registry, &render::config_path_in_container(), true)?;
    let eligible = eligible_blobs(&said);
    let sizes = rt.block_on(blob_sizes(&bucket)).map_err(|e| bucket_failed(site, &e))?;
    let bytes: u64 = eligible.iter().filter_map(|d| sizes.get(d)).sum();
    println!(
        "gc would free {} ({bytes} bytes: {} blobs no manifest references).",
        indicatif::HumanBytes(bytes),
        eligible.len()
    );
    for digest in &eligible {
        println!("  blob {digest}");
    }
    let unreachable = rt.block_on(reachable(site, &replicas));
    for replica in &replicas {
        let answer = unreachable
            .iter()
            .find(|(r, _)| r == &replica.domain)
            .map(|(_, why)| format!("cannot be reached: {why}"))
            .unwrap_or_else(|| "answers".into());
        println!("  replica {} {answer}", replica.address());
    }
    if !unreachable.is_empty() {
        println!("gc would refuse until every replica answers (or is removed with registry-up site forget NAME).");
    }
    println!("Nothing was changed (--dry-run).");
    Ok(ExitStatus::Success)
}

/// Hold, prove, settle, collect, lift; what was freed, in words. The hold is lifted on every way out
/// after it was taken, also when a step failed.
fn collect(site: &Site, rt: &tokio::runtime::Runtime, podman: &Podman, registry: &str) -> Result<String> {
    let out = Reporter::new();
    let bucket = site.bucket()?;
    let me = Replica::this_host(&site.state.domain, site.state.port);
    let replicas = out.step("replicas", || {
        // Recorded by `up`; again here, for an appliance set up before the records were kept.
        rt.block_on(replicas::register(&bucket, &me))
            .map_err(|e| bucket_failed(site, &e))?;
        let replicas = rt
            .block_on(replicas::list(&bucket))
            .map_err(|e| bucket_failed(site, &e))?;
        let names: Vec<String> = replicas.iter().map(Replica::address).collect();
        Ok((replicas, names.join(", ")))
    })?;
    out.step("all answer", || {
        let unreachable = rt.block_on(reachable(site, &replicas));
        if !unreachable.is_empty() {
            return Err(not_all(&unreachable, "cannot be reached", "nothing was changed"));
        }
        Ok((
            (),
            format!("every recorded replica ({}) answers over HTTPS", replicas.len()),
        ))
    })?;
    let record = out.step("hold the site", || {
        let record = take_hold(site, rt, &bucket, podman, registry)?;
        Ok((record, format!("{} pushed through this replica", gc_hold::REPOSITORY)))
    })?;
    let held = out.step("read-only together", || {
        let refusing = rt.block_on(refusals(site, &replicas));
        if !refusing.is_empty() {
            return Err(not_all(
                &refusing,
                "did not refuse a write",
                "the hold was lifted, nothing was collected",
            ));
        }
        Ok((
            (),
            format!(
                "every recorded replica ({}) refuses a write with 405 from its nginx",
                replicas.len()
            ),
        ))
    });
    let collected = held.and_then(|()| {
        out.step("settle", || {
            std::thread::sleep(SETTLE);
            Ok(((), format!("{} s for writes begun before the hold", SETTLE.as_secs())))
        })?;
        out.step("collect", || {
            if let Some(other) = taken_by(site, rt, &bucket, &record)? {
                return Err(held_elsewhere(&other));
            }
            let before = rt.block_on(blob_sizes(&bucket)).map_err(|e| bucket_failed(site, &e))?;
            podman.registry_garbage_collect(registry, &render::config_path_in_container(), false)?;
            let after = rt.block_on(blob_sizes(&bucket)).map_err(|e| bucket_failed(site, &e))?;
            let bytes = before.values().sum::<u64>().saturating_sub(after.values().sum());
            let blobs = before.len().saturating_sub(after.len());
            let words = format!("{} ({bytes} bytes: {blobs} blobs)", indicatif::HumanBytes(bytes));
            Ok((
                words.clone(),
                format!("the registry's garbage-collect removed {blobs} blobs"),
            ))
        })
    });
    let lifted = out.step("read-write", || {
        // Only a hold this run owns: another gc that took the record meanwhile keeps its own.
        if let Some(other) = taken_by(site, rt, &bucket, &record)? {
            return Err(Error::runtime(format!(
                "{} took the hold while this gc ran, so this gc left it standing: that gc lifts it.",
                other.describe()
            )));
        }
        rt.block_on(gc_hold::lift(&bucket)).map_err(|e| {
            Error::runtime(format!(
                "The hold could not be lifted fully ({e}): the replicas may still refuse writes. Run \
                 registry-up gc again on this host (it ends a hold this host left), or check the S3 store."
            ))
        })?;
        // Each replica asks the bucket before each write: the verify below proves a push through this one.
        Ok(((), "the hold and its record are gone from the bucket".to_string()))
    });
    let freed = collected?;
    lifted?;
    Ok(freed)
}

/// Writes the record and pushes the hold through this replica. Refused when another host's gc holds the
/// site; a hold this host left (a gc killed here) is taken over once its collector has ended. On a failure
/// after the record was written, the record and any hold go again (unless another gc took them).
fn take_hold(
    site: &Site,
    rt: &tokio::runtime::Runtime,
    bucket: &Bucket,
    podman: &Podman,
    registry: &str,
) -> Result<Record> {
    let failed = |e: String| bucket_failed(site, &e);
    let left = rt.block_on(gc_hold::current(bucket)).map_err(failed)?;
    if let Some(other) = &left {
        if !other.ends_here(&site.state.domain) {
            return Err(held_elsewhere(other));
        }
        collector_idle(podman, registry)?;
    }
    let record = Record::new(&site.state.domain);
    let body = serde_json::to_vec(&record).map_err(|e| Error::runtime(e.to_string()))?;
    rt.block_on(bucket.put(gc_hold::RECORD, &body)).map_err(failed)?;
    // Another gc that took the record owns the hold from then on: this one stops without touching it.
    enum Halt {
        Taken(Error),
        Failed(Error),
    }
    let held = (|| {
        // Two collections begun in the same moment: the record written last wins, the other stops here.
        std::thread::sleep(Duration::from_secs(1));
        if let Some(other) = taken_by(site, rt, bucket, &record).map_err(Halt::Failed)? {
            return Err(Halt::Taken(held_elsewhere(&other)));
        }
        // A hold left here stands already, and this replica's nginx would refuse the push of another.
        if !rt
            .block_on(gc_hold::stands(bucket))
            .map_err(|e| Halt::Failed(failed(e)))?
        {
            let http = site.client(&site.own).map_err(Halt::Failed)?;
            rt.block_on(push_hold(&site.own, &http)).map_err(|e| {
                Halt::Failed(Error::runtime(format!(
                    "The hold could not be pushed through this replica ({e}): nothing was collected; check \
                     registry-up verify."
                )))
            })?;
        }
        Ok(())
    })();
    match held {
        Ok(()) => Ok(record),
        Err(Halt::Taken(e)) => Err(e),
        Err(Halt::Failed(e)) => match rt.block_on(gc_hold::lift(bucket)) {
            Ok(()) => Err(e),
            Err(why) => Err(Error::runtime(format!(
                "{} The hold (or its record) could not be removed either ({why}): run registry-up gc again on \
                 this host.",
                e.message
            ))),
        },
    }
}

/// The record of another gc, when one took the site since this one wrote `record`.
fn taken_by(site: &Site, rt: &tokio::runtime::Runtime, bucket: &Bucket, record: &Record) -> Result<Option<Record>> {
    let now = rt
        .block_on(gc_hold::record(bucket))
        .map_err(|e| bucket_failed(site, &e))?;
    Ok(now.filter(|other| other.id != record.id))
}

/// Err while a `registry garbage-collect` a killed gc left runs in this host's registry container: its
/// hold must stand until it ends.
pub fn collector_idle(podman: &Podman, registry: &str) -> Result<()> {
    match podman.collector_running(registry) {
        Ok(false) => Ok(()),
        Ok(true) => Err(Error::runtime(format!(
            "A registry garbage-collect that an interrupted gc started still runs in {registry}, so its hold \
             stays: run this again once it has ended (podman top {registry} args)."
        ))),
        Err(e) => Err(Error::runtime(format!(
            "Cannot tell whether an interrupted gc's collector still runs in {registry} ({}), so its hold \
             stays: check the pod (registry-up status), then run this again.",
            e.message
        ))),
    }
}

fn held_elsewhere(record: &Record) -> Error {
    Error::runtime(format!(
        "{} holds the site read-only: nothing was changed. Wait for it to end; if it was interrupted, run \
         registry-up gc (or up) on {} to end it, or registry-up site forget {} there if that host is gone.",
        record.describe(),
        record.host,
        record.host
    ))
}

/// The empty config and the hold manifest, pushed as any client would.
async fn push_hold(target: &Target, http: &Http) -> std::result::Result<(), String> {
    use crate::registry_api::{finish_upload, put_manifest, start_upload, Started};
    let repository = gc_hold::REPOSITORY;
    let config_digest = crate::digest::oci_digest(gc_hold::CONFIG);
    if let Started::At(at) = start_upload(http, target, repository, None).await? {
        let body = reqwest::Body::from(gc_hold::CONFIG.to_vec());
        finish_upload(http, &at, &config_digest, body, gc_hold::CONFIG.len() as u64).await?;
    }
    put_manifest(
        http,
        target,
        repository,
        gc_hold::TAG,
        gc_hold::MANIFEST_TYPE,
        gc_hold::manifest(),
    )
    .await?;
    Ok(())
}

/// Whether `replica` answers over HTTPS now, as gc would ask it (for `site forget`, which is for hosts
/// that are gone).
pub fn answers(dir: &std::path::Path, state: &State, replica: &Replica, rt: &tokio::runtime::Runtime) -> Result<bool> {
    let site = Site::open(dir, state.clone())?;
    Ok(rt.block_on(reachable(&site, std::slice::from_ref(replica))).is_empty())
}

/// The replicas that do not answer `GET /v2/` with 200 (with this host's login and CA), with why.
async fn reachable(site: &Site, replicas: &[Replica]) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    for replica in replicas {
        let target = site.target(replica);
        let answer = match site.client(&target) {
            Ok(http) => http.get(&target.url("/v2/")).send().await.map_err(|e| chain(&e)),
            Err(e) => Err(e.message),
        };
        match answer {
            Ok(r) if r.status() == 200 => {}
            Ok(r) => failed.push((replica.domain.clone(), format!("it answered {}", r.status()))),
            Err(why) if replica.port == 0 => failed.push((replica.domain.clone(), format!("its record: {why}"))),
            Err(why) => failed.push((replica.domain.clone(), why)),
        }
    }
    failed
}

/// The replicas that do not refuse a write while the hold stands, with what they did. A replica that
/// took it (an older registry-up, a conf changed by hand) has the upload it started cancelled.
async fn refusals(site: &Site, replicas: &[Replica]) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    for replica in replicas {
        let target = site.target(replica);
        let http = match site.client(&target) {
            Ok(h) => h,
            Err(e) => {
                failed.push((replica.domain.clone(), e.message));
                continue;
            }
        };
        let url = target.url(&format!("/v2/{}/blobs/uploads/", gc_hold::REPOSITORY));
        let answer = http.post(&url).header(reqwest::header::CONTENT_LENGTH, 0).send().await;
        match answer {
            Ok(r) if r.status() == 405 => {
                let body = crate::bounded::error_text(r).await;
                if !body.contains(render::SITE_HELD_MESSAGE) {
                    failed.push((replica.domain.clone(), format!("it refused for another reason: {body}")));
                }
            }
            Ok(r) if r.status() == 202 => {
                if let Some(at) = r.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()) {
                    let at = match at.starts_with('/') {
                        true => target.url(at),
                        false => at.to_string(),
                    };
                    let _ = http.delete(&at).send().await;
                }
                failed.push((
                    replica.domain.clone(),
                    "it took the write: its nginx does not check the hold (run registry-up up there with this \
                     version)"
                        .into(),
                ));
            }
            Ok(r) => failed.push((replica.domain.clone(), format!("it answered {}", r.status()))),
            Err(e) => failed.push((replica.domain.clone(), chain(&e))),
        }
    }
    failed
}

/// The sentence for replicas that failed a step: each by name with why, and the way on.
fn not_all(failed: &[(String, String)], what: &str, so: &str) -> Error {
    let list: Vec<String> = failed.iter().map(|(name, why)| format!("{name} ({why})")).collect();
    Error::runtime(format!(
        "gc holds every replica of the site read-only together, and {} {what}: {}; {so}. Start it (registry-up \
         up there), or if a host is gone for good, remove it from the site with registry-up site forget NAME.",
        if failed.len() == 1 {
            "this replica"
        } else {
            "these replicas"
        },
        list.join(", ")
    ))
}

fn bucket_failed(site: &Site, why: &str) -> Error {
    site.location.unanswered(why)
}

/// Every blob in the bucket with its size, by digest.
async fn blob_sizes(bucket: &Bucket<'_>) -> std::result::Result<std::collections::HashMap<String, u64>, String> {
    Ok(bucket
        .list(BLOBS)
        .await?
        .into_iter()
        .filter_map(|o| {
            // docker/registry/v2/blobs/sha256/AB/HEX/data
            let rest = o.key.strip_prefix(BLOBS)?.strip_suffix("/data")?;
            let (algorithm, rest) = rest.split_once('/')?;
            let hex = rest.rsplit('/').next()?;
            Some((format!("{algorithm}:{hex}"), o.size))
        })
        .collect())
}

/// The digests distribution's collector lists as "blob eligible for deletion: DIGEST".
fn eligible_blobs(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| l.split_once("blob eligible for deletion: "))
        .map(|(_, d)| d.trim().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_collectors_list_is_read() {
        let said = "r: marking manifest sha256:aa\n1 blobs marked, 2 blobs and 0 manifests eligible for deletion\n\
                    blob eligible for deletion: sha256:bb\nblob eligible for deletion: sha256:cc\n\
                    time=\"x\" level=info msg=\"Deleting blob: /docker/registry/v2/blobs/sha256/bb/bb\"\n";
        assert_eq!(eligible_blobs(said), vec!["sha256:bb", "sha256:cc"]);
    }

    #[test]
    fn replicas_that_failed_are_named() {
        let e = not_all(
            &[("b.site".into(), "connection refused".into())],
            "cannot be reached",
            "nothing was changed",
        );
        assert_eq!(e.status, ExitStatus::Runtime);
        assert!(e
            .message
            .contains("this replica cannot be reached: b.site (connection refused); nothing was changed"));
        assert!(e.message.contains("registry-up site forget NAME"));
    }
}
