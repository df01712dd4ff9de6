//! `registry-up site export` on the site's first host, and what `up --site FILE` on another host makes of
//! the file: the flags of a replica that serves the same registry from the same bucket.

use std::path::Path;

use crate::cli::{SetupArgs, SiteExportArgs, SiteForgetArgs, StorageChoice, UpArgs};
use crate::error::{Error, Result};
use crate::host::HostFacts;
use crate::hostname::HostName;
use crate::layout;
use crate::pki::Renew;
use crate::site::Site;

/// `registry-up site export --out FILE [--replica NAME]...`.
pub fn export(args: &SiteExportArgs, rt: &tokio::runtime::Runtime, host: &HostFacts) -> Result<()> {
    let dir = &args.appliance.config_dir;
    let state = on_s3(dir)?;
    if state.own_cert {
        return Err(Error::usage(
            "site export issues the site's certificate from registry-up's own CA, and this appliance's \
             certificate came from elsewhere (--cert/--key, or a site file): run it on the site's first host.",
        ));
    }
    if args.out.exists() {
        return Err(Error::usage(format!(
            "{} already exists, and site export never overwrites a file: give --out a new file name.",
            args.out.display()
        )));
    }
    let mut names: Vec<HostName> = std::iter::once(&state.domain)
        .chain(&state.sans)
        .map(|n| HostName::parse(n, "name in state.json"))
        .collect::<Result<_>>()?;
    let mut added = Vec::new();
    for replica in &args.replica {
        let name = HostName::parse(replica, "--replica value")?;
        if !names.contains(&name) {
            names.push(name.clone());
            added.push(name);
        }
    }
    if !added.is_empty() {
        // The certificate is re-issued once, here, for every name; the replicas that run already keep
        // theirs (it still covers their own names) until they are given the new file.
        let mut up = UpArgs::installed(dir.clone(), crate::cli::PullPolicy::Never);
        up.no_verify = true;
        up.setup.sans = names[1..].iter().map(|n| n.to_string()).collect();
        super::up::run(&up, rt, Renew::IfNeeded, host)?;
    }
    let _lock = crate::lock::ApplianceLock::take(dir, host, crate::lock::WAIT)?;
    let state = crate::state::installed(dir)?;
    let site = read_site(dir, &state)?;
    crate::atomic::write_new(&args.out, site.render().as_bytes(), layout::PRIVATE)?;
    println!(
        "Wrote {} (0600) for the site {}: its certificate covers {}.\nOn each other host: registry-up --site {} \
         --domain HOSTNAME (one of those names). The file holds the server key, the bucket's key, http.secret \
         and the password: carry it like a key, and delete it once the replicas run.",
        args.out.display(),
        site.name,
        site.names.join(", "),
        args.out.display()
    );
    Ok(())
}

/// The site as the installed appliance in `dir` holds it.
fn read_site(dir: &Path, state: &crate::state::State) -> Result<Site> {
    let read = |rel: &str| -> Result<String> {
        let path = dir.join(rel);
        crate::bounded::text(&path, crate::bounded::SMALL)
    };
    let http_secret = crate::render::read_http_secret(&read(layout::REGISTRY_CONFIG)?).ok_or_else(|| {
        Error::usage(format!(
            "{} holds no http.secret: run registry-up up to write it again, then export.",
            dir.join(layout::REGISTRY_CONFIG).display()
        ))
    })?;
    let auth = match &state.auth_user {
        Some(user) => Some((
            user.clone(),
            read(layout::AUTH_PASSWORD)?.trim_end_matches('\n').to_string(),
        )),
        None => None,
    };
    let (key, _) = crate::s3::read_key(None, dir)?;
    let s3 = state.s3.clone().expect("checked: on S3");
    Ok(Site {
        name: state.domain.clone(),
        names: std::iter::once(&state.domain).chain(&state.sans).cloned().collect(),
        port: state.port,
        registry_image: state.registry_image.clone(),
        nginx_image: state.nginx_image.clone(),
        http_secret,
        auth,
        s3,
        s3_access_key: key.access_key,
        s3_secret_key: key.secret_key,
        ca_cert: read(layout::CA_CERT)?,
        server_cert: read(layout::SERVER_CERT)?,
        server_key: read(layout::SERVER_KEY)?,
    })
}

/// A replica's setup from a site file: the flags that make `up` serve the site on this host, the files
/// they name (in a private temporary folder, gone when this is dropped), and the secrets `up` is given.
pub struct Joining {
    pub setup: SetupArgs,
    pub password: Option<String>,
    pub http_secret: String,
    _files: tempfile::TempDir,
}

/// Reads and checks the site file at `path` and turns `given` (this host's flags) into a replica's;
/// `previous`: what is installed in the config folder (a replica of this site, or nothing). This host's own
/// settings come from its flags, else from the replica installed, else from the site. Nothing is written
/// but the temporary folder.
pub fn joining(given: &SetupArgs, path: &Path, previous: Option<&crate::state::State>) -> Result<Joining> {
    let shown = path.display().to_string();
    let text = crate::bounded::secret_text(path, crate::bounded::SMALL).map_err(|e| {
        Error::usage(format!(
            "Cannot read the site file {shown} ({e}): give --site the file site export wrote."
        ))
    })?;
    let site = Site::parse(&text, &shown)?;
    // What the site decides is not for this host's flags to change.
    let from_site = [
        (!given.sans.is_empty(), "--san"),
        (
            given.cert.is_some() || given.key.is_some() || given.ca_bundle.is_some(),
            "--cert",
        ),
        (given.storage == Some(StorageChoice::Filesystem), "--storage filesystem"),
        (given.s3_bucket.is_some(), "--s3-bucket"),
        (given.s3_region.is_some(), "--s3-region"),
        (given.s3_credentials.is_some(), "--s3-credentials"),
        (given.data_dir.is_some(), "--data-dir"),
        (given.auth || given.no_auth || given.auth_user.is_some(), "--auth"),
        (given.auth_password_stdin, "--auth-password-stdin"),
    ];
    if let Some((_, flag)) = from_site.iter().find(|(set, _)| *set) {
        return Err(Error::usage(format!(
            "{flag} comes from the site file with --site: leave it out (on the site's first host, change it \
             there and export the site again)."
        )));
    }
    // Only a replica of this site (or nothing) may be turned into one: the first host's own folder, or
    // another appliance's, would lose what makes it that.
    if let Some(state) = previous {
        let replica = state.own_cert && state.s3.as_ref().is_some_and(|s3| s3.bucket == site.s3.bucket);
        if !replica {
            return Err(Error::usage(format!(
                "{} holds another appliance ({} on {}), not a replica of this site: give --config-dir (and \
                 --pod-name) a folder of the replica's own.",
                given.config_dir.display(),
                state.domain,
                state.storage()
            )));
        }
    }
    let covered = || site.names.join(", ");
    let Some(domain) = &given.domain else {
        return Err(Error::usage(format!(
            "--site needs --domain: this host's name, one the site's certificate covers ({}).",
            covered()
        )));
    };
    let this = HostName::parse(domain, "domain")?;
    let names: Vec<HostName> = site
        .names
        .iter()
        .map(|n| HostName::parse(n, "name in the site file"))
        .collect::<Result<_>>()?;
    if !names.contains(&this) {
        return Err(Error::usage(format!(
            "The site's certificate does not cover {this} (it covers {}): on the site's first host run \
             registry-up site export --replica {this} --out FILE, and join with that file.",
            covered()
        )));
    }
    let files = tempfile::Builder::new()
        .prefix("registry-up-site-")
        .tempdir()
        .map_err(|e| Error::runtime(format!("Cannot make a temporary folder ({e}): free space in /tmp.")))?;
    let write = |name: &str, text: &str| -> Result<std::path::PathBuf> {
        let path = files.path().join(name);
        crate::atomic::write_atomic(&path, text.as_bytes(), layout::PRIVATE)?;
        Ok(path)
    };
    let mut setup = given.clone();
    setup.domain = Some(this.to_string());
    setup.sans = names.iter().filter(|n| **n != this).map(|n| n.to_string()).collect();
    setup.cert = Some(write("server.crt", &site.server_cert)?);
    setup.key = Some(write("server.key", &site.server_key)?);
    setup.ca_bundle = Some(write("ca.crt", &site.ca_cert)?);
    setup.storage = Some(StorageChoice::S3);
    // This host may reach the store through its own node: --s3-endpoint is this host's to give, and kept.
    let kept = previous.and_then(|s| s.s3.as_ref()).map(|s3| s3.endpoint.clone());
    setup.s3_endpoint = given.s3_endpoint.clone().or(kept).or(Some(site.s3.endpoint.clone()));
    setup.s3_bucket = Some(site.s3.bucket.clone());
    setup.s3_region = Some(site.s3.region.clone());
    setup.s3_credentials = Some(write("s3.key", &site.s3_key().render())?);
    setup.port = given.port.or(previous.map(|s| s.port)).or(Some(site.port));
    setup.registry_image = given.registry_image.clone().or(Some(site.registry_image.clone()));
    setup.nginx_image = given.nginx_image.clone().or(Some(site.nginx_image.clone()));
    setup.auth = site.auth.is_some();
    setup.no_auth = site.auth.is_none();
    setup.auth_user = site.auth.as_ref().map(|(user, _)| user.clone());
    Ok(Joining {
        setup,
        password: site.auth.map(|(_, password)| password),
        http_secret: site.http_secret,
        _files: files,
    })
}

/// The installed appliance's state, when it keeps its images in S3 (a site); else the sentence saying so.
fn on_s3(dir: &Path) -> Result<crate::state::State> {
    let state = crate::state::installed(dir)?;
    if state.s3.is_none() {
        return Err(Error::usage(format!(
            "The replicas of a site share one S3 bucket, and this appliance keeps its images in {}: install it \
             on S3 storage (registry-up up --storage s3 …, see README) to make it a site.",
            state.data_dir
        )));
    }
    Ok(state)
}

/// `registry-up site forget NAME`: the record of a replica that is gone, and a gc hold it left.
pub fn forget(args: &SiteForgetArgs, rt: &tokio::runtime::Runtime, host: &HostFacts) -> Result<()> {
    let dir = &args.appliance.config_dir;
    let _lock = crate::lock::ApplianceLock::take(dir, host, crate::lock::WAIT)?;
    let state = on_s3(dir)?;
    let name = args.name.trim();
    if name == state.domain {
        return Err(Error::usage(format!(
            "{name} is this host's own replica: registry-up down --purge here removes it and its record (a \
             later registry-up up records it again)."
        )));
    }
    let location = state.s3.clone().expect("checked above");
    let (key, _) = crate::s3::read_key(None, dir)?;
    let bucket = crate::s3::Bucket::new(&location, &key, std::time::Duration::from_secs(15))?;
    let failed = |e: String| location.unanswered(&e);
    let known = rt.block_on(crate::replicas::list(&bucket)).map_err(failed)?;
    if let Some(replica) = known.iter().find(|r| r.domain == name) {
        if super::gc_site::answers(dir, &state, replica, rt)? {
            return Err(Error::usage(format!(
                "{name} still answers at {}: site forget is for a host that is gone, and a replica that runs \
                 leaves the site with registry-up down --purge there. Nothing was changed.",
                replica.address()
            )));
        }
    }
    let hold = rt.block_on(crate::gc_hold::record(&bucket)).map_err(failed)?;
    let forgotten = rt.block_on(crate::replicas::forget(&bucket, name)).map_err(failed)?;
    let held = hold.filter(|h| h.host == name);
    if !forgotten && held.is_none() {
        let names: Vec<&str> = known.iter().map(|r| r.domain.as_str()).collect();
        return Err(Error::usage(format!(
            "No replica {name} is recorded in the {}: nothing was changed. The recorded ones are: {}.",
            location.describe(),
            names.join(", ")
        )));
    }
    if forgotten {
        println!("Removed the record of replica {name}: gc no longer waits for it. If it comes back, its registry-up up records it again.");
    }
    if let Some(hold) = held {
        rt.block_on(crate::gc_hold::lift(&bucket)).map_err(failed)?;
        println!(
            "Ended the hold of an interrupted {}: every replica takes writes again.",
            hold.describe()
        );
    }
    Ok(())
}
