//! Proof that the running registry enforces what registry-up set up, asked over the network: files on
//! disk are not the running config. `auth`: anonymous requests are refused when a password is set up.
//! `config`: the registry's answers carry the fingerprint of the config file registry-up wrote.
//! `registry`: its version and whether it serves the OCI 1.1 referrers API (informational).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::report::{Check, Status};
use super::round_trip::VERIFY_REPOSITORY;
use super::target::{chain, Target};
use crate::render::{DiskFingerprint, FINGERPRINT_HEADER};

/// The config file of the appliance on this host and what it says of itself.
pub struct ConfigFile {
    pub path: PathBuf,
    /// Err: why the file cannot be compared.
    pub fingerprint: Result<DiskFingerprint, Unusable>,
}

/// Why a config file cannot be compared with what the registry serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// It cannot be read.
    Unreadable(String),
    /// It has no fingerprint: written by a registry-up from before fingerprints, or by hand.
    Unmarked(String),
}

impl ConfigFile {
    pub fn read(path: PathBuf) -> Self {
        let fingerprint = match std::fs::read_to_string(&path) {
            Err(e) => Err(Unusable::Unreadable(format!(
                "cannot read {} ({e}): run verify as the user who owns the appliance",
                path.display()
            ))),
            Ok(text) => crate::render::disk_fingerprint(&text).ok_or_else(|| {
                Unusable::Unmarked(format!(
                    "{} carries no {FINGERPRINT_HEADER} header (written by an older registry-up, or by hand), so \
                     what the registry runs cannot be compared with it: run registry-up up to write it again",
                    path.display()
                ))
            }),
        };
        ConfigFile { path, fingerprint }
    }
}

/// Who gave an answer, from the headers that say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answerer {
    /// distribution itself (it sets Docker-Distribution-Api-Version on every answer).
    Registry,
    /// registry-up's nginx on its own (its marker header): the registry behind it did not answer.
    Nginx,
    /// Neither: no registry API header at all.
    Other,
}

/// One anonymous answer: its status, its config fingerprint header, and who gave it.
struct Answer {
    code: u16,
    fingerprint: Option<String>,
    by: Answerer,
}

impl Answer {
    fn who(&self) -> &'static str {
        match self.by {
            Answerer::Registry => "the registry",
            Answerer::Nginx => "nginx alone (the registry behind it did not answer)",
            Answerer::Other => "something that is not the registry (no Docker-Distribution-Api-Version header)",
        }
    }
}

/// Sends a request (built without credentials) and keeps its answer and Location header.
async fn anonymous(request: reqwest::RequestBuilder) -> Result<(Answer, Option<String>), String> {
    let resp = request.send().await.map_err(|e| chain(&e))?;
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(String::from);
    let location = header("location");
    let answer = Answer {
        code: resp.status().as_u16(),
        fingerprint: header(FINGERPRINT_HEADER),
        // distribution sets the version header on its answers; registry-up's nginx adds it, and its own
        // marker, where the registry did not answer.
        by: match (
            header("x-registry-up-answered-by").is_some(),
            header("docker-distribution-api-version").is_some(),
        ) {
            (true, _) => Answerer::Nginx,
            (false, true) => Answerer::Registry,
            (false, false) => Answerer::Other,
        },
    };
    Ok((answer, location))
}

/// The config fingerprint the registry's answers carry now (Some(None): it answered without one), or None
/// when the registry itself did not answer (no connection, a timeout, nginx alone answering while the
/// registry starts): `up` asks it to tell a pod that runs the wanted config from one that only looks
/// healthy, and must not take "no answer yet" for "another config".
pub async fn served_fingerprint(target: &Target, timeout: Duration) -> Option<Option<String>> {
    let client = target.http_client(timeout).ok()?;
    let (answer, _) = anonymous(client.get(&target.url("/v2/"))).await.ok()?;
    (answer.by == Answerer::Registry).then_some(answer.fingerprint)
}

/// The `auth` check, and with the appliance's config file the `config` check. `target.credentials` says
/// whether a password is expected. Without a config file the registry is not this host's appliance, and
/// only what is seen is reported (another registry may allow anonymous pulls, or want a login for all).
pub async fn checks(target: &Target, config: Option<&ConfigFile>, timeout: Duration) -> Vec<Check> {
    let appliance = config.is_some();
    let t = Instant::now();
    let anon_target = Target {
        credentials: None,
        ..target.clone()
    };
    let client = match anon_target.http_client(timeout) {
        Ok(c) => c,
        Err(e) => {
            let mut out = vec![Check::new("auth", Status::Fail, e.message, t.elapsed())];
            if config.is_some() {
                out.push(Check::skipped("config", "no HTTPS client"));
            }
            return out;
        }
    };
    let base = match anonymous(client.get(&target.url("/v2/"))).await {
        Ok((answer, _)) => answer,
        Err(e) => {
            let why = format!("anonymous GET /v2/ failed: {e}");
            let mut out = vec![Check::new("auth", Status::Fail, why.clone(), t.elapsed())];
            if config.is_some() {
                out.push(Check::skipped("config", &why));
            }
            return out;
        }
    };
    let mut out = vec![auth(target, &client, &base, appliance, t).await];
    if let Some(file) = config {
        out.push(config_check(file, &base, Instant::now()));
    }
    out
}

/// Whether `target`'s credentials are taken: GET /v2/ with them answers 200.
async fn logs_in(target: &Target) -> Result<(), String> {
    let client = target.http_client(Duration::from_secs(10)).map_err(|e| e.message)?;
    let resp = client.get(&target.url("/v2/")).send().await.map_err(|e| chain(&e))?;
    match resp.status().as_u16() {
        200 => Ok(()),
        code => Err(format!("GET /v2/ with the password -> {code}")),
    }
}

async fn auth(target: &Target, client: &super::target::Http, base: &Answer, appliance: bool, t: Instant) -> Check {
    let expected = target.credentials.is_some();
    if !expected {
        return match base.code {
            401 if !appliance => Check::new(
                "auth",
                Status::Pass,
                "on: anonymous GET /v2/ -> 401 (give --user NAME and the password on standard input to log in)",
                t.elapsed(),
            ),
            200 if !appliance => Check::new(
                "auth",
                Status::Pass,
                "off: anonymous GET /v2/ -> 200, so anyone who reaches the registry can pull, and push unless a \
                 proxy stops it",
                t.elapsed(),
            ),
            200 => Check::new(
                "auth",
                Status::Pass,
                "off, as set up: anonymous GET /v2/ -> 200, so anyone who reaches the registry can pull and push \
                 (turn a password on with registry-up --auth)",
                t.elapsed(),
            ),
            code => Check::new(
                "auth",
                Status::Fail,
                format!(
                    "no password is set up, but anonymous GET /v2/ -> {code} from {}: the registry is not running \
                     the configuration registry-up wrote (run registry-up up), or it needs --user",
                    base.who()
                ),
                t.elapsed(),
            ),
        };
    }
    // An anonymous upload start: a registry that allowed it would take anyone's pushes.
    let url = target.url(&format!("/v2/{VERIFY_REPOSITORY}/blobs/uploads/"));
    let upload = anonymous(client.post(&url)).await;
    let (upload, location) = match upload {
        Ok(pair) => pair,
        Err(e) => {
            return Check::new(
                "auth",
                Status::Fail,
                format!("anonymous blob upload start failed: {e}"),
                t.elapsed(),
            )
        }
    };
    if let Some(location) = location.filter(|_| upload.code == 202) {
        // Cancel the upload this check started, so that nothing of it stays on disk.
        let url = if location.starts_with('/') {
            target.url(&location)
        } else {
            location
        };
        let _ = client.delete(&url).send().await;
    }
    match (base.code, upload.code) {
        (200, 401) if !appliance => Check::new(
            "auth",
            Status::Pass,
            "anonymous pulls allowed (GET /v2/ -> 200), anonymous blob upload -> 401",
            t.elapsed(),
        ),
        (_, code) if !appliance && code != 401 => Check::new(
            "auth",
            Status::Fail,
            format!(
                "anonymous blob upload -> {code} from {} (expected 401): anyone who reaches it can push",
                upload.who()
            ),
            t.elapsed(),
        ),
        (401, 401) => match logs_in(target).await {
            Ok(()) => Check::new(
                "auth",
                Status::Pass,
                "on: anonymous GET /v2/ -> 401 and anonymous blob upload -> 401; the user logs in (GET /v2/ with \
                 the password -> 200)",
                t.elapsed(),
            ),
            Err(why) => Check::new(
                "auth",
                Status::Fail,
                format!(
                    "on, but the user cannot log in: {why}; on the appliance the password in auth/password and the \
                     registry's htpasswd disagree (run registry-up up), elsewhere check --user and the password"
                ),
                t.elapsed(),
            ),
        },
        (401, code) => Check::new(
            "auth",
            Status::Fail,
            format!(
                "anonymous blob upload -> {code} from {} (expected 401): anyone who reaches it can push; \
                 run registry-up up to restore its configuration",
                upload.who()
            ),
            t.elapsed(),
        ),
        (code, _) => Check::new(
            "auth",
            Status::Fail,
            format!(
                "a password is set up, but anonymous GET /v2/ -> {code} from {} (expected 401): the registry does \
                 not ask for it, so anyone who reaches it can pull and push; run registry-up up to restore its \
                 configuration",
                base.who()
            ),
            t.elapsed(),
        ),
    }
}

fn short(fingerprint: &str) -> &str {
    &fingerprint[..fingerprint.len().min(19)]
}

fn config_check(file: &ConfigFile, base: &Answer, t: Instant) -> Check {
    let path = file.path.display();
    let fail = |detail: String| Check::new("config", Status::Fail, detail, t.elapsed());
    let disk = match &file.fingerprint {
        Err(Unusable::Unreadable(why)) => return fail(why.clone()),
        // Nothing to compare with: not a PASS, but no proof of another config either.
        Err(Unusable::Unmarked(why)) => return Check::new("config", Status::Warn, why.clone(), t.elapsed()),
        Ok(d) => d,
    };
    match &base.fingerprint {
        None => fail(format!(
            "the registry is not running the configuration in {path}: its answers carry no {FINGERPRINT_HEADER} \
             header (it reads another config, such as the image's own): restart it with registry-up up"
        )),
        Some(served) if *served != disk.written => fail(format!(
            "the registry is not running the configuration in {path}: it answers with {} and the file has {}: \
             restart it with registry-up up",
            short(served),
            short(&disk.written)
        )),
        Some(_) if !disk.intact => fail(format!(
            "{path} was changed by hand since registry-up wrote it, so the running registry may not be what \
             registry-up set up: run registry-up up to write it again and restart the registry"
        )),
        Some(served) => Check::new(
            "config",
            Status::Pass,
            format!("the registry runs {path} (its answers carry {})", short(served)),
            t.elapsed(),
        ),
    }
}

/// Informational: the registry's version (on this host: read in its container once per image, see
/// version.rs) and whether it
/// serves the OCI 1.1 referrers API. Warns only when neither could be read.
pub async fn registry_info(target: &Target, version: Option<Result<String, String>>, timeout: Duration) -> Check {
    let t = Instant::now();
    // A registry that serves the API answers any well-formed digest with an (empty) index, never 404.
    let zero = format!("sha256:{}", "0".repeat(64));
    let url = target.url(&format!("/v2/{VERIFY_REPOSITORY}/referrers/{zero}"));
    let referrers = match target.http_client(timeout) {
        Err(e) => Err(e.message),
        Ok(client) => match client.get(&url).send().await {
            Err(e) => Err(chain(&e)),
            Ok(r) => {
                let code = r.status().as_u16();
                let body = crate::bounded::error_text(r).await;
                Ok(match code {
                    200 => "served".to_string(),
                    // The API's own 404 for a repository it does not know proves nothing either way.
                    404 if body.contains("NAME_UNKNOWN") => "unknown (the repository is not there)".to_string(),
                    404 => "not served (distribution 3.1 does not serve it yet)".to_string(),
                    code => format!("unknown (HTTP {code})"),
                })
            }
        },
    };
    let version_text = match &version {
        None => None,
        Some(Ok(v)) => Some(v.clone()),
        Some(Err(e)) => Some(format!("version unknown ({e})")),
    };
    let referrers_text = match &referrers {
        Ok(r) => format!("OCI 1.1 referrers API {r}"),
        Err(e) => format!("referrers API not asked ({e})"),
    };
    let detail = match version_text {
        Some(v) => format!("{v}; {referrers_text}"),
        None => referrers_text,
    };
    let readable = referrers.is_ok() || matches!(version, Some(Ok(_)));
    Check::new(
        "registry",
        if readable { Status::Pass } else { Status::Warn },
        detail,
        t.elapsed(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(written: &str, intact: bool) -> ConfigFile {
        ConfigFile {
            path: PathBuf::from("/etc/registry-up/registry/config.yml"),
            fingerprint: Ok(DiskFingerprint {
                written: written.into(),
                intact,
            }),
        }
    }

    fn answer(fingerprint: Option<&str>) -> Answer {
        Answer {
            code: 401,
            fingerprint: fingerprint.map(String::from),
            by: Answerer::Registry,
        }
    }

    #[test]
    fn the_config_check_passes_only_on_the_same_fingerprint_of_an_intact_file() {
        let t = Instant::now();
        let pass = config_check(&file("sha256:aa", true), &answer(Some("sha256:aa")), t);
        assert_eq!(pass.status, Status::Pass, "{}", pass.detail);
        for (file, answer, says) in [
            (file("sha256:aa", true), answer(None), "carry no X-Registry-Up-Config"),
            (
                file("sha256:aa", true),
                answer(Some("sha256:bb")),
                "answers with sha256:bb",
            ),
            (
                file("sha256:aa", false),
                answer(Some("sha256:aa")),
                "was changed by hand",
            ),
        ] {
            let check = config_check(&file, &answer, t);
            assert_eq!(check.status, Status::Fail, "{}", check.detail);
            assert!(check.detail.contains(says), "{}", check.detail);
            assert!(check.detail.contains("registry-up up"), "{}", check.detail);
        }
        let unreadable = ConfigFile {
            path: PathBuf::from("/x"),
            fingerprint: Err(Unusable::Unreadable("cannot read /x".into())),
        };
        let check = config_check(&unreadable, &answer(Some("sha256:aa")), t);
        assert_eq!((check.status, check.detail.as_str()), (Status::Fail, "cannot read /x"));
        let unmarked = ConfigFile {
            path: PathBuf::from("/x"),
            fingerprint: Err(Unusable::Unmarked("no header in /x".into())),
        };
        let check = config_check(&unmarked, &answer(Some("sha256:aa")), t);
        assert_eq!(
            check.status,
            Status::Warn,
            "no comparison is no proof, and no failure either"
        );
    }
}
