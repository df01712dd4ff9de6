//! `registry-up import SOURCE`: the images of a bundle, an OCI layout or a podman/docker save archive,
//! pushed into the appliance installed here (import.rs does the pushing).

use std::path::Path;
use std::time::Duration;

use crate::cli::ImportArgs;
use crate::error::{Error, ExitStatus, Result};
use crate::import::{import, Options, Summary};
use crate::source::Source;
use crate::verify::Target;

/// How a client reaches the appliance installed in `config_dir`: its name and port, its CA, its login.
pub fn appliance_target(config_dir: &Path) -> Result<Target> {
    let state = crate::state::installed(config_dir)?;
    let ca = Path::new(&state.ca_cert);
    let ca_pem = match ca.exists() {
        true => Some(std::fs::read(ca).map_err(|e| Error::runtime(crate::host::io_failed("read", ca, &e)))?),
        // An appliance whose certificate chains to the system's CAs has no ca.crt.
        false => None,
    };
    let credentials = match &state.auth_user {
        Some(user) => Some(crate::secrets::saved_login(
            config_dir,
            user,
            "run registry-up up again to save it",
        )?),
        None => None,
    };
    Ok(Target {
        host: state.url_host(),
        port: state.port,
        ca_pem,
        credentials,
        pin: None,
    })
}

/// Reads SOURCE: a bundle is checked whole first (nothing is pushed from a damaged one).
fn read_source(path: &Path) -> Result<Source> {
    let unusable = |why: String| {
        Error::usage(format!(
            "Cannot import {}: {why}. Give a bundle (registry-up bundle --images), an OCI image layout, or a \
             podman save / docker save archive.",
            path.display()
        ))
    };
    if !path.exists() {
        return Err(unusable("it does not exist".into()));
    }
    let store = if path.is_file() {
        Some(crate::store::Store::tar(path).map_err(|e| unusable(format!("it is not a tar archive ({e})")))?)
    } else {
        None
    };
    let is_bundle = store
        .as_ref()
        .is_some_and(|s| s.locate(crate::bundle::SUMS).is_some() && s.locate(crate::bundle::MANIFEST).is_some());
    if is_bundle {
        let checked = crate::bundle::check(path)?;
        return checked.workloads.ok_or_else(|| {
            unusable("the bundle carries no workload images (make one with registry-up bundle --images FILE)".into())
        });
    }
    crate::source::open(path).map_err(unusable)
}

/// Prints the closing line; Failed (naming each image) when one did not arrive intact.
pub fn report(summary: &Summary) -> Result<String> {
    let line = format!(
        "{} image(s) in place, digests as in the source: sent {} blob(s) ({}), {} already there, {} linked \
         between repositories, in {:.1} s",
        summary.arrived.len(),
        summary.sent_blobs,
        indicatif::HumanBytes(summary.sent_bytes),
        summary.present_blobs,
        summary.mounted,
        summary.took.as_secs_f64()
    );
    if summary.failed.is_empty() {
        return Ok(line);
    }
    let names: Vec<String> = summary
        .failed
        .iter()
        .map(|(name, why)| format!("  {name}: {why}"))
        .collect();
    Err(Error::verify(format!(
        "{} image(s) did not arrive intact (the others did; once the cause is fixed, a re-run sends only what is missing):\n{}",
        summary.failed.len(),
        names.join("\n")
    )))
}

/// `registry-up import SOURCE`
pub fn command(args: &ImportArgs, rt: &tokio::runtime::Runtime, host: &crate::host::HostFacts) -> Result<ExitStatus> {
    let config_dir = &args.appliance.config_dir;
    let target = appliance_target(config_dir)?;
    let source = read_source(&args.source)?;
    // gc must not sweep blobs sent before their manifests: one of the two at a time.
    let _lock = crate::lock::ApplianceLock::take(config_dir, host, crate::lock::WAIT)?;
    let opts = Options {
        prefix: args.prefix.clone(),
        jobs: args.jobs as usize,
        timeout: Duration::from_secs(args.timeout),
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let summary = rt.block_on(import(&source, &target, &opts))?;
    println!("{}", report(&summary)?);
    Ok(ExitStatus::Success)
}
