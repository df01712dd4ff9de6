//! `registry-up verify`: the after-upgrade check of the installed appliance, or of any registry.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::cli::VerifyArgs;
use crate::error::{Error, ExitStatus, Result};
use crate::hostname::HostName;
use crate::layout;
use crate::runtime::podman::Podman;
use crate::state::State;
use crate::verify::inventory::{About, Inventory};
use crate::verify::{
    parse_size, run_checks, Check, ConfigFile, KeptVersion, Options, Pod, Report, Status, Storage, Target,
};

/// `registry-up verify`: Success when every check passed (warnings allowed), Failed otherwise.
pub fn command(args: &VerifyArgs, rt: &tokio::runtime::Runtime, host: &crate::host::HostFacts) -> Result<ExitStatus> {
    let start = Instant::now();
    let state_path = args.appliance.config_dir.join(layout::STATE);
    let state: Option<State> = crate::state::read_state(&args.appliance.config_dir)?;
    let size = parse_size(&args.size).map_err(|e| Error::usage(format!("--size {e}.")))?;
    // Bad files are refused before anything is asked or written.
    let baseline = args.baseline.as_deref().map(Inventory::read).transpose()?;
    if let Some(record) = &args.record {
        record_writable(record)?;
    }
    let domain = match (&args.domain, &state) {
        (Some(d), _) => HostName::parse(d, "domain")?,
        (None, Some(s)) => HostName::parse(&s.domain, "domain in state.json")?,
        (None, None) => {
            return Err(Error::not_installed(format!(
                "No appliance is installed here ({} is missing): run registry-up up first, or give --domain (with --port and --ca) to check another registry.",
                state_path.display()
            )))
        }
    };
    // The installed appliance, when the target is it.
    // The installed appliance, when the target is it: by its domain or any of its names, on its port.
    let appliance = state.as_ref().filter(|s| {
        let names = std::iter::once(&s.domain).chain(&s.sans);
        let named = names
            .filter_map(|n| HostName::parse(n, "name in state.json").ok())
            .any(|n| n == domain);
        named && args.port.is_none_or(|p| p == s.port)
    });
    let port = args.port.or(appliance.map(|s| s.port)).unwrap_or(443);
    // An appliance whose own certificate chains to the system's CAs has no ca.crt: the system's roots then.
    let ca_path = args.ca.clone().or(appliance
        .map(|s| std::path::PathBuf::from(&s.ca_cert))
        .filter(|p| p.exists()));
    let ca_pem = match &ca_path {
        Some(path) => Some(read_ca(path)?),
        None => None,
    };
    let credentials = match (&args.user, appliance.and_then(|s| s.auth_user.as_ref())) {
        (Some(user), _) => Some((user.clone(), crate::secrets::password_from_stdin("--user")?)),
        (None, Some(user)) => Some(crate::secrets::saved_login(
            &args.appliance.config_dir,
            user,
            "give --user and --password-stdin",
        )?),
        (None, None) => None,
    };
    let target = Target {
        host: domain.url_host(),
        port,
        ca_pem,
        credentials,
        // On a replica of a site the name may lead to another replica: what is checked is this host's.
        pin: appliance
            .filter(|s| s.s3.is_some())
            .map(|s| crate::listen::local_address(&s.listen, s.port)),
    };
    // On the appliance host verify removes its own data from the storage: not while `up` changes things.
    // A user who may read but not write this appliance (no lock file there) verifies without touching it.
    let lock = match appliance {
        None => None,
        Some(_) => {
            let wait = Duration::from_secs(args.timeout);
            match crate::lock::ApplianceLock::take(&args.appliance.config_dir, host, wait) {
                Ok(lock) => Some(lock),
                Err(e) if e.status == ExitStatus::Runtime => None,
                Err(e) => return Err(e),
            }
        }
    };
    let pod = match appliance {
        Some(s) => Some(Pod {
            podman: Podman::find()?,
            name: s.pod_name.clone(),
            version: KeptVersion {
                path: args.appliance.config_dir.join(layout::REGISTRY_VERSION),
                write: lock.is_some(),
            },
        }),
        None => None,
    };
    let opts = Options {
        size,
        timeout: Duration::from_secs(args.timeout),
        deep: args.deep,
        jobs: args.jobs,
        strict: args.strict,
        progress: !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        storage: appliance.and_then(|s| storage(s, &args.appliance.config_dir)),
        clean_storage: lock.is_some(),
        config: appliance.map(|_| ConfigFile::read(args.appliance.config_dir.join(layout::REGISTRY_CONFIG))),
        watermarks: appliance.map(|s| s.watermarks()).unwrap_or_default(),
        inventory: args.record.is_some(),
        baseline,
        about: About {
            registry: target.registry(),
            registry_image: appliance.map(|s| s.registry_image.clone()),
            storage: appliance.map(|s| s.storage()),
        },
        env_check: appliance.is_some(),
    };
    let outcome = rt.block_on(run_checks(&target, &opts, pod));
    let mut checks = outcome.checks;
    if let Some(inventory) = &outcome.inventory {
        // The appliance's own record of what it served at its last deep verify (status shows it).
        // Only a whole walk is the appliance's record: one with missing items would hide them next time.
        let whole = outcome.deep.as_ref().is_some_and(|d| d.problems.is_empty()) && inventory.unreadable == 0;
        let kept = match (appliance, &lock, args.deep && whole) {
            (Some(_), Some(_), true) => Some(args.appliance.config_dir.join(layout::INVENTORY)),
            _ => None,
        };
        for path in kept.iter().chain(&args.record) {
            if let Err(e) = inventory.write(path) {
                checks.push(Check::new(
                    "record",
                    Status::Fail,
                    format!("the inventory could not be written: {}", e.message),
                    Duration::ZERO,
                ));
            }
        }
    } else if args.record.is_some() {
        checks.push(Check::new(
            "record",
            Status::Fail,
            "the registry could not be walked (see the checks above), so no inventory was taken or written",
            Duration::ZERO,
        ));
    }
    let mut report = Report::new(target.registry(), checks, outcome.deep, opts.strict, start.elapsed());
    report.inventory = outcome.comparison;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serialises")
        );
    } else {
        print!("{}", report.text());
    }
    Ok(ExitStatus::verdict(report.status != Status::Fail))
}

/// Where the appliance keeps its data: its folder, or its S3 bucket when this user can read the key (else
/// the registry's garbage collection is left to free the test's data, and the cleanup check says so).
fn storage(state: &State, config_dir: &Path) -> Option<Storage> {
    match &state.s3 {
        None => Some(Storage::Folder(state.data_dir.clone().into())),
        Some(at) => {
            let (key, _) = crate::s3::read_key(None, config_dir).ok()?;
            Some(Storage::Bucket(at.clone(), key))
        }
    }
}

/// `--record FILE` must be writable where it is: its folder exists and it is not a folder itself.
fn record_writable(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() || path.is_dir() {
        return Err(Error::usage(format!(
            "--record {}: {} is not a folder to write the inventory in; give a file in an existing folder.",
            path.display(),
            if path.is_dir() { path } else { dir }.display()
        )));
    }
    Ok(())
}

fn read_ca(path: &Path) -> Result<Vec<u8>> {
    let pem = crate::bounded::read_text(path, crate::bounded::SMALL)
        .map(String::into_bytes)
        .map_err(|e| {
            Error::usage(format!(
                "Cannot read the CA file {} ({e}): give --ca the CA certificate (PEM) clients trust.",
                path.display()
            ))
        })?;
    crate::verify::tls_roots(Some(&pem)).map_err(|e| {
        Error::usage(format!(
            "The CA file {} cannot be used: {e}. Give --ca the CA certificate (PEM) clients trust.",
            path.display()
        ))
    })?;
    Ok(pem)
}
