//! The upgrade guard: a change of `up` that replaces the running pod (another registry image, config,
//! data folder, storage or mounts) is proven not to lose what the registry served. Before: the files it
//! replaces are kept (`upgrade-rollback/`), the appliance goes read-only through nginx (writes get 405,
//! pulls go on), and an inventory of what is served is taken. After the new pod answers (still read-only):
//! a second inventory, which must hold every tag with the same digest. Equal: read-write again. Not equal:
//! the kept files are put back and the old setup started (by the caller). A run killed in between leaves
//! `upgrade-rollback/files.json`, and the next `up` puts those files back before it does anything else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout;
use crate::plan::Plan;
use crate::progress::Reporter;
use crate::render;
use crate::runtime::podman::Podman;
use crate::settings::Settings;
use crate::state::State;
use crate::verify::inventory::{self, Comparison, Inventory};
use crate::verify::{Answer, Target};

const FILES: &str = "files.json";
/// With --move-data: where the images went, and how (written before they move).
const MOVED: &str = "move.json";

/// --move-data: the images of `from` (its `docker/` tree) go to `to`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Move {
    pub from: PathBuf,
    pub to: PathBuf,
    /// Tags the old folder holds (for what is said).
    pub tags: usize,
    /// --empty-storage: nothing moves, and the new folder is meant to start empty (nothing to prove).
    pub empty: bool,
}

impl Move {
    pub fn describe(&self) -> String {
        format!(
            "{} -> {}",
            self.from.join("docker").display(),
            self.to.join("docker").display()
        )
    }
}

/// How the images moved: renamed (same filesystem), or copied (the old tree is removed once proven).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum How {
    Rename,
    Copy,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Moved {
    from: PathBuf,
    to: PathBuf,
    how: How,
}
/// Requests begun before the switch to read-only are waited for this long.
const DRAIN: Duration = Duration::from_secs(120);

/// One file the change replaces: where, its mode, and whether it existed (`saved`: its copy's name).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Kept {
    path: PathBuf,
    mode: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    saved: Option<String>,
}

const IMAGE: &str = "image.json";
/// The folder of the tag the proof places in the storage, while it is there.
const MARKER: &str = "placed-tag";

/// The registry image the old pod ran, by name and ID: a change that re-pulled or loaded new content under
/// the same name is rolled back to the old content (the name is tagged to the old ID again).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OldImage {
    name: String,
    id: String,
}

/// A guarded change under way.
pub struct Guard {
    /// What was served before (or held in the old data folder when the old pod did not answer).
    pub before: Inventory,
    /// Where `before` came from, in words.
    pub source: String,
    /// A change that keeps the data folder: what its storage held when the appliance went read-only, for the
    /// quick proof (see [`prove`]).
    pub held: Option<Held>,
}

/// The tags a data folder's storage held (repository, tag) → digest, read from the files.
pub struct Held {
    pub data_dir: PathBuf,
    pub tags: BTreeMap<(String, String), String>,
}

/// How many tags the quick proof reads from the new registry besides one of each kind (a spread over the
/// whole list, so that a registry that lost some repositories' tags shows it before the window ends).
const SPREAD: usize = 64;

/// Keeps the files `plan` replaces, as they are now, in the config folder's rollback folder; its
/// `files.json` is written last, so a rollback folder without it was never a complete copy.
fn keep(plan: &Plan, config_dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = config_dir.join(layout::ROLLBACK_DIR);
    let _ = std::fs::remove_dir_all(&dir);
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(layout::PRIVATE_DIR)
            .create(&dir)
            .map_err(|e| Error::runtime(crate::host::io_failed("create", &dir, &e)))?;
    }
    let mut kept = Vec::new();
    // The nginx conf goes read-only meanwhile, whatever the plan writes: it is always put back.
    let conf = config_dir.join(layout::NGINX_CONF);
    let mut paths: Vec<PathBuf> = plan.writes().map(|c| c.path.clone()).collect();
    if !paths.contains(&conf) {
        paths.push(conf);
    }
    for (i, path) in paths.iter().enumerate() {
        let entry = match std::fs::read(path) {
            Ok(bytes) => {
                let mode = std::fs::metadata(path)
                    .map(|m| m.permissions().mode() & 0o7777)
                    .unwrap_or(layout::PRIVATE);
                let name = i.to_string();
                crate::atomic::write_atomic(&dir.join(&name), &bytes, layout::PRIVATE)?;
                Kept {
                    path: path.clone(),
                    mode,
                    saved: Some(name),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Kept {
                path: path.clone(),
                mode: 0,
                saved: None,
            },
            Err(e) => return Err(Error::runtime(crate::host::io_failed("read", path, &e))),
        };
        kept.push(entry);
    }
    let text = serde_json::to_vec_pretty(&kept).expect("the list serialises");
    crate::atomic::write_atomic(&dir.join(FILES), &text, layout::PRIVATE)
}

/// Puts back the files a guarded change kept, when there are any (an earlier run was killed, or the
/// change lost content); returns how many, None when there was nothing to put back.
pub fn put_back(config_dir: &Path) -> Result<Option<usize>> {
    let dir = config_dir.join(layout::ROLLBACK_DIR);
    let list = match std::fs::read(dir.join(FILES)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Killed before the copy was complete: nothing had been changed yet.
            let _ = std::fs::remove_dir_all(&dir);
            return Ok(None);
        }
        Err(e) => return Err(Error::runtime(crate::host::io_failed("read", &dir.join(FILES), &e))),
    };
    let kept: Vec<Kept> = serde_json::from_slice(&list).map_err(|e| {
        Error::runtime(format!(
            "{} is damaged ({e}): the files an interrupted upgrade replaced cannot be put back; look at that \
             folder, restore the appliance's files by hand, then remove it.",
            dir.display()
        ))
    })?;
    crate::storage::Marker::clean_up(&dir.join(MARKER));
    unmove(&dir)?;
    if let Some(old) = std::fs::read(dir.join(IMAGE))
        .ok()
        .and_then(|t| serde_json::from_slice::<OldImage>(&t).ok())
    {
        // The name leads to the content the old pod ran again (a no-op when nothing was re-pulled).
        let podman = Podman::find()?;
        if podman
            .image_ids(&[&old.name])
            .ok()
            .and_then(|ids| ids.into_iter().next())
            != Some(old.id.clone())
        {
            podman.tag(&old.id, &old.name)?;
        }
    }
    for k in &kept {
        match &k.saved {
            Some(name) => {
                let bytes = std::fs::read(dir.join(name))
                    .map_err(|e| Error::runtime(crate::host::io_failed("read", &dir.join(name), &e)))?;
                crate::atomic::write_atomic(&k.path, &bytes, k.mode)?;
            }
            None => match std::fs::remove_file(&k.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::runtime(crate::host::io_failed("remove", &k.path, &e))),
            },
        }
    }
    discard(config_dir);
    Ok(Some(kept.len()))
}

/// The change held: the kept files are not needed any more, nor the old copy of moved images.
pub fn discard(config_dir: &Path) {
    let dir = config_dir.join(layout::ROLLBACK_DIR);
    crate::storage::Marker::clean_up(&dir.join(MARKER));
    if let Some(moved) = read_moved(&dir) {
        if moved.how == How::Copy {
            let _ = std::fs::remove_dir_all(moved.from.join("docker"));
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn read_moved(dir: &Path) -> Option<Moved> {
    serde_json::from_slice(&std::fs::read(dir.join(MOVED)).ok()?).ok()
}

/// Moves the images of `m.from` to `m.to`: recorded first (so a kill is undone by the next run), then a
/// rename, or a copy where the two are on different filesystems.
fn move_data(m: &Move, config_dir: &Path) -> Result<How> {
    use std::os::unix::fs::MetadataExt;
    let (from, to) = (m.from.join("docker"), m.to.join("docker"));
    if !m.to.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(layout::PRIVATE_DIR)
            .create(&m.to)
            .map_err(|e| Error::runtime(crate::host::io_failed("create", &m.to, &e)))?;
    }
    let same_fs = match (std::fs::metadata(&m.from), std::fs::metadata(&m.to)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev(),
        _ => false,
    };
    let how = if same_fs { How::Rename } else { How::Copy };
    let record = Moved {
        from: m.from.clone(),
        to: m.to.clone(),
        how,
    };
    let dir = config_dir.join(layout::ROLLBACK_DIR);
    let text = serde_json::to_vec_pretty(&record).expect("the record serialises");
    crate::atomic::write_atomic(&dir.join(MOVED), &text, layout::PRIVATE)?;
    match how {
        How::Rename => std::fs::rename(&from, &to).map_err(|e| {
            Error::runtime(format!(
                "Cannot move {} to {} ({e}): the images stay where they were.",
                from.display(),
                to.display()
            ))
        })?,
        How::Copy => crate::storage::copy_tree(&from, &to).map_err(|e| {
            Error::runtime(format!(
                "Cannot copy {} to {} ({e}): the images stay where they were.",
                from.display(),
                to.display()
            ))
        })?,
    }
    Ok(how)
}

/// Undoes a move a guarded change made: renamed back, or the copy removed (the images never left).
fn unmove(dir: &Path) -> Result<()> {
    let Some(moved) = read_moved(dir) else {
        return Ok(());
    };
    let (from, to) = (moved.from.join("docker"), moved.to.join("docker"));
    match moved.how {
        How::Rename if to.exists() && !from.exists() => std::fs::rename(&to, &from).map_err(|e| {
            Error::runtime(format!(
                "Cannot move the images back from {} to {} ({e}): move that folder back by hand, then run \
                 registry-up up again.",
                to.display(),
                from.display()
            ))
        }),
        How::Rename => Ok(()),
        How::Copy => {
            if from.exists() {
                let _ = std::fs::remove_dir_all(&to);
            }
            Ok(())
        }
    }
}

/// What the old data folder holds, as an inventory without children (when the old pod did not answer).
fn stored(previous: &State) -> Inventory {
    let found = crate::storage::tags(Path::new(&previous.data_dir))
        .into_iter()
        // A tag whose link cannot be read is served by nobody: it is not what a change could lose.
        .filter(|(_, digest)| !digest.is_empty())
        .map(|((repository, tag), digest)| inventory::Found {
            repository,
            tag: inventory::Tag {
                tag,
                digest,
                media_type: None,
                children: Vec::new(),
            },
        })
        .collect();
    let about = inventory::About {
        registry: String::new(),
        registry_image: Some(previous.registry_image.clone()),
        storage: Some(previous.data_dir.clone()),
    };
    // Each repository comes with its tags; one without tags serves nothing a change could lose.
    Inventory::new(about, &[], found, 0, &Default::default(), 0)
}

/// Before a change that replaces the pod: keep the files, make the running appliance read-only, and take
/// the inventory. Err (nothing changed but the read-only, which is undone) when the old pod is running but
/// cannot be made read-only or inventoried.
pub fn begin(
    rt: &tokio::runtime::Runtime,
    out: &Reporter,
    plan: &Plan,
    previous: &State,
    settings: &Settings,
    podman: &Podman,
    moving: Option<&Move>,
) -> Result<Guard> {
    keep(plan, &settings.config_dir)?;
    let registry = render::container_name(&previous.pod_name, render::REGISTRY_CONTAINER);
    if let Ok(Some(info)) = podman.container(&registry) {
        if !info.image_id.is_empty() && info.image_name == previous.registry_image {
            let old = OldImage {
                name: info.image_name,
                id: info.image_id,
            };
            let text = serde_json::to_vec(&old).expect("serialises");
            crate::atomic::write_atomic(
                &settings.config_dir.join(layout::ROLLBACK_DIR).join(IMAGE),
                &text,
                layout::PRIVATE,
            )?;
        }
    }
    let mut guard = baseline(rt, out, previous, settings, podman, moving)?;
    if moving.is_some_and(|m| m.empty) {
        guard.before = Inventory::new(inventory::About::default(), &[], Vec::new(), 0, &Default::default(), 0);
        guard.source = "nothing (--empty-storage: the new folder starts as it is)".into();
        return Ok(guard);
    }
    if let Some(m) = moving {
        out.step("move data", || {
            let how = move_data(m, &settings.config_dir)?;
            let words = match how {
                How::Rename => "renamed (same filesystem)",
                How::Copy => "copied (another filesystem; the old copy is removed once every tag is proven)",
            };
            Ok(((), format!("{}: {words}", m.describe())))
        })?;
    }
    Ok(guard)
}

/// Read-only and the inventory before the change.
fn baseline(
    rt: &tokio::runtime::Runtime,
    out: &Reporter,
    previous: &State,
    settings: &Settings,
    podman: &Podman,
    moving: Option<&Move>,
) -> Result<Guard> {
    let running = podman.pod_status(&previous.pod_name)?.is_some_and(|s| s.healthy());
    if !running {
        // Nothing serves, so nothing can be written meanwhile; what the old folder holds is the baseline.
        let (before, source) = without_answers(out, previous);
        return Ok(Guard {
            before,
            source,
            held: None,
        });
    }
    let target = Target::installed(&settings.config_dir, previous);
    // A change that keeps the data folder takes the whole inventory while writes still go on, and after
    // the switch to read-only reads again only the tags the storage shows were written meanwhile: the
    // read-only window does not grow with the tags (the quick proof after the change is the other half).
    let keeps_folder = previous.s3.is_none()
        && settings.s3.is_none()
        && moving.is_none()
        && Path::new(&previous.data_dir) == settings.data_dir;
    let early = if keeps_folder {
        out.step("inventory before", || {
            let about = inventory::About::of(&target, previous);
            match rt.block_on(crate::verify::take_inventory(&target, about)) {
                Ok(inv) => {
                    let detail = format!("{} (writes still taken)", inv.describe_counts());
                    Ok((Some(inv), detail))
                }
                Err(why) => Ok((
                    None,
                    format!("the registry did not answer ({why}); taken again once read-only"),
                )),
            }
        })?
    } else {
        None
    };
    // The running pod's own conf, made read-only in place (an older release's conf differs from this one's).
    let conf = settings.config_dir.join(layout::NGINX_CONF);
    let current =
        std::fs::read_to_string(&conf).map_err(|e| Error::runtime(crate::host::io_failed("read", &conf, &e)))?;
    let read_only = render::made_read_only(&current, render::ReadOnly::Upgrade).ok_or_else(|| {
        Error::runtime(format!(
            "{} has no `location /v2/` to make read-only, so the change cannot be proven: nothing was changed. \
             Run registry-up up without other changes first (it writes the conf again), then this.",
            conf.display()
        ))
    })?;
    let nginx = render::container_name(&previous.pod_name, render::NGINX_CONTAINER);
    // `up` ends a read-only that a killed run left (the marker is what it looks for).
    crate::atomic::write_atomic(
        &settings.config_dir.join(layout::GC_IN_PROGRESS),
        b"registry-up up is changing the registry, or was interrupted\n",
        layout::PUBLIC,
    )?;
    out.step("read-only", || {
        crate::atomic::write_atomic(&conf, read_only.as_bytes(), layout::PUBLIC)?;
        let drained = podman.reload_nginx_drained(&nginx, DRAIN);
        if !matches!(drained, Ok(true)) {
            // Back to how it was at once: the caller puts the files back too, but writes must not wait.
            let _ = crate::atomic::write_atomic(&conf, current.as_bytes(), layout::PUBLIC);
            let _ = podman.reload_nginx(&nginx);
        }
        if !drained? {
            return Err(Error::runtime(format!(
                "A request that began before (a long push or pull) was still running after {} s, so nothing was \
                 changed: run registry-up up again when it has finished.",
                DRAIN.as_secs()
            )));
        }
        Ok((
            (),
            "writes get 405 from nginx while the change is made and proven, reads pass".to_string(),
        ))
    })?;
    if let Some(served) = early {
        return out.step("inventory settled", || {
            settle(rt, &target, previous, served).map(|guard| {
                let detail = format!(
                    "{} tags served when writes stopped ({} read again: written meanwhile)",
                    guard.before.counts.tags, guard.source
                );
                let source = format!("the {} tags served before", guard.before.counts.tags);
                (Guard { source, ..guard }, detail)
            })
        });
    }
    let (before, source) = out.step("inventory before", || {
        let about = inventory::About::of(&target, previous);
        match rt.block_on(crate::verify::take_inventory(&target, about)) {
            Ok(inv) => {
                let detail = inv.describe_counts();
                let source = format!("the {} tags served before", inv.counts.tags);
                Ok(((inv, source), detail))
            }
            // A pod whose registry does not answer (the reason for this run, often) serves nothing: the
            // baseline is then what its storage holds.
            Err(why) => {
                let (inv, source) = without_answers(out, previous);
                let detail = format!("the registry did not answer ({why}); the baseline is {source}");
                Ok(((inv, source), detail))
            }
        }
    })?;
    Ok(Guard {
        before,
        source,
        held: None,
    })
}

/// Read-only now: `served` (taken while writes went on) brought up to this moment. The storage says which
/// tags changed since (written, moved or deleted meanwhile, or served from elsewhere than the folder): only
/// those are asked again. `source` of the result: how many were.
fn settle(rt: &tokio::runtime::Runtime, target: &Target, previous: &State, mut served: Inventory) -> Result<Guard> {
    let data_dir = PathBuf::from(&previous.data_dir);
    let held = crate::storage::tags(&data_dir);
    let mut again: Vec<(String, String)> = {
        let was = served.tags();
        let changed = held
            .iter()
            .filter(|(key, digest)| {
                was.get(&(key.0.as_str(), key.1.as_str()))
                    .is_none_or(|t| t.digest != **digest)
            })
            .map(|(key, _)| key.clone());
        let unheld = was
            .keys()
            .filter(|(r, t)| held.get(&(r.to_string(), t.to_string())).is_none_or(|d| d.is_empty()))
            .map(|(r, t)| (r.to_string(), t.to_string()));
        changed.chain(unheld).collect()
    };
    again.sort();
    again.dedup();
    let count = again.len();
    if !again.is_empty() {
        let now = rt
            .block_on(crate::verify::served_tags(target, again))
            .map_err(|why| Error::runtime(format!("The registry stopped answering ({why}): nothing was changed.")))?;
        for ((repo, tag), answer) in now {
            match answer {
                Answer::Served(t) => served.set(&repo, &tag, Some(t)),
                Answer::Missing => served.set(&repo, &tag, None),
                // Not known to be gone: the change cannot be proven against what was served.
                Answer::Unanswered(why) => {
                    return Err(Error::runtime(format!(
                        "The registry did not answer for {repo}:{tag} once read-only ({why}), so what it served \
                         cannot be proven kept: nothing was changed. Run registry-up up again."
                    )))
                }
            }
        }
    }
    Ok(Guard {
        before: served,
        source: count.to_string(),
        held: Some(Held { data_dir, tags: held }),
    })
}

/// The baseline when the old registry does not answer: what its data folder holds, or (S3) nothing.
fn without_answers(out: &Reporter, previous: &State) -> (Inventory, String) {
    if previous.s3.is_some() {
        out.warn(
            "the registry did not answer before this change, so what the S3 storage served cannot be taken: the \
             change is made without that proof.",
        );
        let empty = Inventory::new(inventory::About::default(), &[], Vec::new(), 0, &Default::default(), 0);
        return (empty, "nothing (the registry did not answer)".into());
    }
    let inv = stored(previous);
    let source = format!("the {} tags held in {}", inv.counts.tags, previous.data_dir);
    (inv, source)
}

/// Undoes `begin` when the change was not made: the files back, nginx read-write again.
pub fn abandon(settings: &Settings, podman: &Podman, pod: &str) {
    let _ = put_back(&settings.config_dir);
    let _ = podman.reload_nginx(&render::container_name(pod, render::NGINX_CONTAINER));
    let _ = std::fs::remove_file(settings.config_dir.join(layout::GC_IN_PROGRESS));
}

/// After the change, with the new pod answering (read-only): what it serves, compared with before.
pub fn compare(
    rt: &tokio::runtime::Runtime,
    guard: &Guard,
    target: &Target,
    settings: &Settings,
) -> Result<(Inventory, Comparison)> {
    let about = inventory::About {
        registry: target.registry(),
        registry_image: Some(settings.registry_image.clone()),
        storage: Some(match &settings.s3 {
            Some(s3) => s3.describe(),
            None => settings.data_dir.display().to_string(),
        }),
    };
    let after = rt
        .block_on(crate::verify::take_inventory(target, about))
        .map_err(|why| {
            Error::verify(format!(
                "What the registry serves after the change could not be taken ({why})"
            ))
        })?;
    let comparison = inventory::compare(&guard.before, &after);
    Ok((after, comparison))
}

/// How the change was proven inside the read-only window.
pub enum Proof {
    /// Every tag read from the new registry and compared with before.
    All(Comparison),
    /// The quick proof held: `sampled` tags (one of each kind and a spread) served as before, by a registry
    /// that serves a tag placed in the very storage after it started, which nobody wrote meanwhile. Every
    /// tag is read once writes are taken again ([`every_tag`]), and a loss then still rolls back.
    Quick { sampled: usize },
}

/// After the change, with the new pod answering (read-only): the proof it kept what was served. On the
/// filesystem, a tag placed in the data folder after the new registry started must be served by it (else
/// it reads another folder or a copy, and every later write would go there: refused). A change that kept
/// the data folder then gets the quick proof, so that the window does not grow with the tags; when that
/// does not hold, or the folder changed, every tag is read (still read-only) and the second value says why.
pub fn prove(
    rt: &tokio::runtime::Runtime,
    guard: &Guard,
    target: &Target,
    settings: &Settings,
) -> Result<(Proof, Option<String>)> {
    let mut why = None;
    let mut elsewhere = None;
    if settings.s3.is_none() {
        // The storage's tags, read once: compared with what it held (held only where the folder stays),
        // and where the tag is placed.
        let stored = crate::storage::tags(&settings.data_dir);
        let unchanged = guard.held.as_ref().map(|h| stored == h.tags);
        let sample = if unchanged == Some(true) {
            sample_of(&guard.before)
        } else {
            Vec::new()
        };
        match placed_and_sampled(
            rt,
            guard,
            &settings.data_dir,
            &stored,
            &settings.config_dir,
            target,
            &sample,
        ) {
            Err(Unproven::Elsewhere(e)) => elsewhere = Some(e),
            Err(Unproven::Unsure(e)) => why = Some(e),
            Ok(placed) => match unchanged {
                Some(true) if placed => return Ok((Proof::Quick { sampled: sample.len() }, None)),
                Some(true) => why = Some("no tag served before is held in the storage".to_string()),
                Some(false) => {
                    why = Some(format!(
                        "the tags in {} changed while read-only",
                        settings.data_dir.join("docker").display()
                    ))
                }
                None => {}
            },
        }
    }
    let (_, c) = compare(rt, guard, target, settings)?;
    // Tags lost are named first; a registry that serves every one, but not from the data folder, is refused
    // all the same.
    if let (Some(e), true) = (elsewhere, c.equal()) {
        return Err(Error::verify(format!(
            "The new registry does not serve the data folder: {e}. Writes after the change would not land in {}",
            settings.data_dir.display()
        )));
    }
    Ok((Proof::All(c), why))
}

/// Why the quick proof does not hold.
enum Unproven {
    /// Not known from a sample: every tag is read.
    Unsure(String),
    /// The new registry does not read the storage it was given.
    Elsewhere(String),
}

/// One tag of each kind (media type, index or not) and a spread of [`SPREAD`] over the rest: every tag
/// of a small registry.
fn sample_of(before: &Inventory) -> Vec<(String, String)> {
    let tags = before.tags();
    let step = (tags.len() / SPREAD).max(1);
    let mut kinds = std::collections::BTreeSet::new();
    let mut sample = Vec::new();
    for (i, ((r, t), was)) in tags.iter().enumerate() {
        let kind = (was.media_type.clone(), was.children.is_empty());
        if kinds.insert(kind) || i % step == 0 {
            sample.push((r.to_string(), t.to_string()));
        }
    }
    sample
}

/// Places a tag in `data_dir`'s storage beside one served before (naming the same manifest), and asks the
/// new registry for it and for `sample` in one go. Ok(false): no tag served before is held there, so none
/// was placed (and the sample not asked).
fn placed_and_sampled(
    rt: &tokio::runtime::Runtime,
    guard: &Guard,
    data_dir: &Path,
    stored: &BTreeMap<(String, String), String>,
    config_dir: &Path,
    target: &Target,
    sample: &[(String, String)],
) -> std::result::Result<bool, Unproven> {
    let storage = data_dir.join("docker");
    let before = guard.before.tags();
    let Some(((repo, _), digest)) = stored.iter().find(|((r, t), d)| {
        before
            .get(&(r.as_str(), t.as_str()))
            .is_some_and(|was| was.digest == **d)
    }) else {
        return Ok(false);
    };
    let name = format!("{}{}", crate::storage::MARKER_PREFIX, crate::digest::random_hex(8));
    let record = config_dir.join(layout::ROLLBACK_DIR).join(MARKER);
    let marker = crate::storage::Marker::place(data_dir, repo, &name, digest, &record)
        .map_err(|e| Unproven::Unsure(format!("a tag could not be placed in {} ({e})", storage.display())))?;
    let marked = (repo.clone(), name);
    let mut ask = vec![marked.clone()];
    ask.extend(sample.iter().cloned());
    let answers = rt.block_on(crate::verify::served_tags(target, ask));
    marker.remove();
    let answers = answers.map_err(Unproven::Unsure)?;
    let sample = sample.iter().find_map(|key| {
        let was = before[&(key.0.as_str(), key.1.as_str())];
        match answers.get(key) {
            Some(Answer::Served(t))
                if t.digest == was.digest && was.children.iter().all(|c| t.children.contains(c)) =>
            {
                None
            }
            Some(Answer::Unanswered(e)) => Some(format!("{}:{} got no answer ({e})", key.0, key.1)),
            _ => Some(format!("{}:{} is not served as before", key.0, key.1)),
        }
    });
    let marker = match answers.get(&marked) {
        Some(Answer::Served(t)) if t.digest == *digest => None,
        Some(Answer::Unanswered(e)) => Some(Unproven::Unsure(format!("the placed tag got no answer ({e})"))),
        _ => Some(Unproven::Elsewhere(format!(
            "a tag placed in {} after it started is not served by it: it serves another storage (another folder, \
             or a copy)",
            storage.display()
        ))),
    };
    match (marker, sample) {
        (Some(m), _) => Err(m),
        (None, Some(s)) => Err(Unproven::Unsure(s)),
        (None, None) => Ok(true),
    }
}

/// After the quick proof, with writes taken again: every tag read from the new registry and compared with
/// before. A tag the storage shows was written or deleted since the window (by clients) is theirs, and left
/// out; the second value counts those.
pub fn every_tag(
    rt: &tokio::runtime::Runtime,
    guard: &Guard,
    target: &Target,
    settings: &Settings,
) -> Result<(Comparison, usize)> {
    let (_, c) = compare(rt, guard, target, settings)?;
    let Some(held) = &guard.held else {
        return Ok((c, 0));
    };
    Ok(theirs_left_out(c, &held.tags, &crate::storage::tags(&held.data_dir)))
}

/// `c` without the tags whose link in the storage is not what it was when the window began (`held`), as it
/// is `now`: clients wrote or deleted those after it, and what they did is not the change's. With how many.
fn theirs_left_out(
    mut c: Comparison,
    held: &BTreeMap<(String, String), String>,
    now: &BTreeMap<(String, String), String>,
) -> (Comparison, usize) {
    let before = c.changed.len();
    c.changed.retain(|x| {
        let key = (x.repository.clone(), x.tag.clone());
        now.get(&key) == held.get(&key)
    });
    let theirs = before - c.changed.len();
    (c, theirs)
}

/// The change kept what was served: read-write again with the new conf (the kept files stay until auth
/// and config are proven too: `discard`).
pub fn finish(settings: &Settings, podman: &Podman) -> Result<()> {
    let conf = settings.config_dir.join(layout::NGINX_CONF);
    crate::atomic::write_atomic(&conf, render::nginx_conf(settings, None).as_bytes(), layout::PUBLIC)?;
    podman.reload_nginx(&render::container_name(&settings.pod_name, render::NGINX_CONTAINER))?;
    let _ = std::fs::remove_file(settings.config_dir.join(layout::GC_IN_PROGRESS));
    Ok(())
}

/// The new pod starts read-only: the conf the plan wrote, made read-only before the pod reads it.
pub fn start_read_only(settings: &Settings) -> Result<()> {
    let conf = settings.config_dir.join(layout::NGINX_CONF);
    let text = render::nginx_conf(settings, Some(render::ReadOnly::Upgrade));
    crate::atomic::write_atomic(&conf, text.as_bytes(), layout::PUBLIC)
}

/// After a roll-back: what the earlier setup serves again, compared with what it served before the change.
pub fn proven_again(
    rt: &tokio::runtime::Runtime,
    guard: &Guard,
    config_dir: &Path,
    previous: &State,
) -> Result<Comparison> {
    let target = Target::installed(config_dir, previous);
    let after = rt
        .block_on(crate::verify::take_inventory(
            &target,
            inventory::About::of(&target, previous),
        ))
        .map_err(|why| {
            Error::verify(format!(
                "What the earlier setup serves again could not be taken ({why})."
            ))
        })?;
    let c = inventory::compare(&guard.before, &after);
    // After a quick proof, clients wrote to the same folder: what they pushed or deleted is theirs.
    Ok(match &guard.held {
        Some(h) => theirs_left_out(c, &h.tags, &crate::storage::tags(&h.data_dir)).0,
        None => c,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::inventory::Change;

    fn change(repo: &str, tag: &str) -> Change {
        Change {
            repository: repo.into(),
            tag: tag.into(),
            was: "sha256:old".into(),
            now: None,
            children_lost: Vec::new(),
        }
    }

    #[test]
    fn a_tag_clients_wrote_after_the_window_is_theirs_and_any_other_change_is_a_loss() {
        let key = |r: &str, t: &str| (r.to_string(), t.to_string());
        let held = BTreeMap::from([
            (key("a", "1"), "sha256:a1".to_string()),
            (key("a", "2"), "sha256:a2".to_string()),
            (key("b", "1"), "sha256:b1".to_string()),
        ]);
        // a:1 pushed over, a:2 deleted by clients since; b:1 untouched in the storage.
        let now = BTreeMap::from([
            (key("a", "1"), "sha256:new".to_string()),
            (key("b", "1"), "sha256:b1".to_string()),
        ]);
        let c = Comparison {
            changed: vec![change("a", "1"), change("a", "2"), change("b", "1")],
            ..Default::default()
        };
        let (left, theirs) = theirs_left_out(c, &held, &now);
        assert_eq!(theirs, 2);
        let lost: Vec<(&str, &str)> = left
            .changed
            .iter()
            .map(|x| (x.repository.as_str(), x.tag.as_str()))
            .collect();
        assert_eq!(lost, [("b", "1")], "the registry lost b:1, which nobody touched");
        assert!(!left.equal());
    }
}
