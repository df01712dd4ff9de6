//! Command-line interface. `registry-up --domain D` is the same as `registry-up up --domain D`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "registry-up",
    version = crate::VERSION,
    about = "Turn a Podman host into a verified, TLS-fronted private OCI registry in one command.",
    args_conflicts_with_subcommands = true,
    args_override_self = true,
    subcommand_negates_reqs = true,
    after_help = "Exit codes: 0 success, 1 verification failed, 2 invalid input or unmet precondition \
                  (nothing changed), 3 failed while applying or starting (re-run after fixing)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub up: UpArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create or update the registry appliance, start it and verify it (the default command).
    Up(UpArgs),
    /// Write every file `up` would write into a folder, without touching the system.
    Render(RenderArgs),
    /// Check a registry end to end: name, TCP, TLS, API, push/pull round trip, pod health; --deep walks
    /// every stored image.
    Verify(VerifyArgs),
    /// Show the installed appliance: settings, pod and containers, images, certificate, disk, systemd.
    Status(StatusArgs),
    /// Stop the appliance and remove its unit; keeps data, certificates and settings unless --purge.
    Down(DownArgs),
    /// On a connected host: pull the registry and nginx images (and, with --images, the workloads') into
    /// one offline bundle for `up --bundle`.
    Bundle(BundleArgs),

    /// Push the images of a bundle, an OCI layout or a podman/docker save archive into the appliance,
    /// under their upstream names (docker.io/library/nginx:1.27 → REGISTRY/docker.io/library/nginx:1.27).
    Import(ImportArgs),
    /// Show or renew the certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Make this host's container clients (podman, skopeo, buildah, docker) trust the registry's CA.
    Trust(TrustArgs),
    /// What the site's clients (podman, docker, containerd, k3s, RKE2) need to pull the registries the
    /// appliance mirrors from it: written to a folder, or applied on this host.
    Clients(ClientsArgs),
    /// As root: prepare an ordinary user for rootless Podman (subordinate IDs, lingering, checks).
    PrepareUser(PrepareUserArgs),
    /// Check this host for everything the appliance needs, each problem with its fix.
    Doctor(DoctorArgs),
    /// Both containers' logs in time order, each line with its container's name.
    Logs(LogsArgs),
    /// Free the space of what nothing tagged needs (read-only while it runs; pulls keep working). On S3
    /// storage, every replica of the site is held read-only together, or gc names the one it cannot reach.
    Gc(GcArgs),
    /// A consistent copy of the appliance (config, CA key included, and every image) in one checked file.
    Backup(BackupArgs),
    /// Check a backup whole, then lay the appliance down from it and bring it up.
    Restore(RestoreArgs),
    /// What the maintenance timer runs: gc, then read-only while the disk stays above the critical
    /// watermark, read-write once it is below.
    Maintain(MaintainArgs),
    /// Replicas on shared S3 storage: `site export` writes what another host needs to join.
    #[command(subcommand)]
    Site(SiteCommand),
    /// Print a shell's completion script (bash, zsh, fish, elvish, powershell), for installing by hand.
    Completions(CompletionsArgs),
    /// Write the man pages (registry-up.1 and one per command) into a folder, for installing by hand.
    Man(ManArgs),
}

/// What the appliance is: shared by `up` and `render`. On a re-run, a flag left out keeps the value of
/// the installed appliance (its state.json); only a first run falls back to the defaults shown.
#[derive(Args, Debug, Clone, Default)]
pub struct SetupArgs {
    /// DNS name or IP address clients use to reach the registry (required on the first run).
    #[arg(long, value_name = "NAME|IP")]
    pub domain: Option<String>,

    /// Another name or IP address the certificate covers (repeatable; replaces the installed list).
    #[arg(long = "san", value_name = "NAME|IP")]
    pub sans: Vec<String>,

    /// Host port nginx listens on (TLS) [default: 443 for root, 8443 for a user].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// Answer only on this address of the host, IPv4 or IPv6 (repeatable; replaces the installed list;
    /// 0.0.0.0 or :: for all of one family) [default: every address, IPv4 and IPv6].
    #[arg(long, value_name = "ADDRESS")]
    pub listen: Vec<String>,

    /// Registry image (the CNCF distribution registry, 3.x or 2.x layout) [default: pinned registry:3.1.1, see README].
    #[arg(long, value_name = "REF")]
    pub registry_image: Option<String>,

    /// nginx image for the TLS proxy [default: pinned nginx alpine, see README].
    #[arg(long, value_name = "REF")]
    pub nginx_image: Option<String>,

    /// Name of the Podman pod, also of the systemd unit NAME.service [default: registry-pod].
    #[arg(long, value_name = "NAME")]
    pub pod_name: Option<String>,

    /// Where certificates, secrets, configuration and state.json live.
    #[arg(long, default_value_os_t = default_config_dir(), value_name = "DIR")]
    pub config_dir: PathBuf,

    /// Where the registry stores images [default: /var/lib/registry-up/data; for a user
    /// $XDG_DATA_HOME/registry-up/data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Your own server certificate (PEM, leaf first, then intermediates) instead of a generated one.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,

    /// The private key of --cert (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// The CA (bundle, PEM) that issued --cert: checked against, and what clients trust.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub ca_bundle: Option<PathBuf>,

    /// Require a user name and password (htpasswd, bcrypt) to push and pull.
    #[arg(long, conflicts_with = "no_auth")]
    pub auth: bool,

    /// Turn authentication off again.
    #[arg(long)]
    pub no_auth: bool,

    /// User created with --auth [default: admin].
    #[arg(long, value_name = "NAME")]
    pub auth_user: Option<String>,

    /// Read the --auth user's password from standard input instead of generating one.
    #[arg(long)]
    pub auth_password_stdin: bool,

    /// Rootless: enable lingering for this user (loginctl enable-linger), so the pod outlives the login.
    #[arg(long)]
    pub linger: bool,

    /// Where the registry keeps images: a folder on this host (--data-dir), or an S3 bucket several
    /// replicas can share (--s3-endpoint, --s3-bucket, --s3-credentials) [default: filesystem; kept].
    #[arg(long, value_enum, value_name = "KIND")]
    pub storage: Option<StorageChoice>,

    /// The object store's S3 address, http://HOST:PORT or https://HOST (with --storage s3).
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,

    /// The bucket the registry keeps its objects in (with --storage s3).
    #[arg(long, value_name = "NAME")]
    pub s3_bucket: Option<String>,

    /// The region the store signs for (with --storage s3; Garage's is s3_region in garage.toml)
    /// [default: us-east-1].
    #[arg(long, value_name = "REGION")]
    pub s3_region: Option<String>,

    /// A file holding the S3 key, AWS credentials format: [default], aws_access_key_id = ...,
    /// aws_secret_access_key = ... (with --storage s3; read once, kept 0600 in the config folder).
    #[arg(long, value_name = "FILE")]
    pub s3_credentials: Option<PathBuf>,

    /// Percent of the data filesystem's use above which verify warns and status says so [default: 90].
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..100))]
    pub disk_high: Option<u8>,

    /// Percent above which the maintenance run makes the appliance read-only until space is freed
    /// [default: 97].
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..100))]
    pub disk_critical: Option<u8>,

    /// A systemd timer that runs `registry-up maintain` (gc, and read-only above the critical watermark)
    /// [default: off].
    #[arg(long, value_enum, value_name = "WHEN")]
    pub maintenance: Option<MaintenanceChoice>,

    /// How systemd keeps the pod running: a Quadlet on Podman 4.4+, a classic unit on older Podman, or
    /// none (auto picks; none when systemd is not the init system).
    #[arg(long, value_enum, default_value_t = SystemdChoice::Auto)]
    pub systemd: SystemdChoice,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageChoice {
    Filesystem,
    S3,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaintenanceChoice {
    Hourly,
    Daily,
    Weekly,
    Off,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SystemdChoice {
    #[default]
    Auto,
    Quadlet,
    Unit,
    None,
}

#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    #[command(flatten)]
    pub setup: SetupArgs,

    /// Load an image archive (podman save output) before starting: the offline path (repeatable).
    #[arg(long = "image-archive", value_name = "PATH")]
    pub image_archives: Vec<PathBuf>,

    /// Load the images from a bundle made by `registry-up bundle` (every checksum is checked first).
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,

    /// Print what would change and exit without touching anything.
    #[arg(long)]
    pub dry_run: bool,

    /// Skip the push/pull verification at the end.
    #[arg(long)]
    pub no_verify: bool,

    /// Open the port in the host firewall (firewalld, or the nftables chains that drop it) where it is
    /// closed to clients; `down` closes what was opened, nothing else.
    #[arg(long)]
    pub open_firewall: bool,

    /// Seconds to wait for the registry to answer through the proxy.
    #[arg(long, default_value_t = 60, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub wait_timeout: u64,

    /// When to pull the images, in Podman's words: missing (only images not in the store), never, always.
    /// Images that --image-archive or --bundle provide are never pulled.
    #[arg(long, value_enum, default_value_t = PullPolicy::Missing, value_name = "WHEN")]
    pub pull: PullPolicy,

    /// Seconds a pull may go without receiving a byte before it is stopped (a registry or DNS server
    /// that never answers fails the run instead of hanging it; a slow but live download goes on).
    #[arg(long, default_value_t = 60, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub pull_timeout: u64,

    /// Join a site as a replica: the file `registry-up site export` wrote on its first host (certificate,
    /// secrets, storage, images); --domain names this host, which the site's certificate must cover.
    #[arg(long, value_name = "FILE")]
    pub site: Option<PathBuf>,

    /// With a new --data-dir on an installed appliance whose folder holds images: start with the new
    /// folder as it is, on purpose (the old folder is left as it is, and named).
    #[arg(long)]
    pub empty_storage: bool,

    /// With a new --data-dir on an installed appliance: move its images there (renamed on the same
    /// filesystem, else copied), proven tag by tag and rolled back if any is lost.
    #[arg(long)]
    pub move_data: bool,
}

impl UpArgs {
    /// `up` of the appliance in `config_dir` as installed: every setting from its state.json, the images
    /// already in Podman's store (`pull`), opening nothing new in the firewall.
    pub fn installed(config_dir: PathBuf, pull: PullPolicy) -> Self {
        UpArgs {
            setup: SetupArgs {
                config_dir,
                ..Default::default()
            },
            image_archives: Vec::new(),
            bundle: None,
            dry_run: false,
            no_verify: false,
            open_firewall: false,
            wait_timeout: 60,
            pull,
            pull_timeout: 60,
            site: None,
            empty_storage: false,
            move_data: false,
        }
    }
}

impl PullPolicy {
    pub fn name(self) -> &'static str {
        match self {
            PullPolicy::Missing => "missing",
            PullPolicy::Never => "never",
            PullPolicy::Always => "always",
        }
    }
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull an image only when it is not in Podman's image store.
    #[default]
    Missing,
    /// Never pull: a missing image stops the run (air-gapped hosts).
    Never,
    /// Pull every image on each run (a changed image then replaces the running one).
    Always,
}

#[derive(Args, Debug, Clone)]
pub struct RenderArgs {
    #[command(flatten)]
    pub setup: SetupArgs,

    /// Folder to write into (created if missing; existing certificates in it are reused).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    /// Registry to check; default: the appliance installed on this host (from its state.json).
    #[arg(long, value_name = "NAME|IP")]
    pub domain: Option<String>,

    /// Port of that registry; default: the appliance's, else 443.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// CA certificate (PEM) to trust; default: the appliance's CA, else the system's roots.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    #[command(flatten)]
    pub appliance: ApplianceDir,

    /// User to log in as; the password is read from standard input. Default: the appliance's --auth user.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Also walk every repository, tag, manifest and blob: the "nothing lost" check. On the appliance host
    /// it also records what is served in the config folder's inventory.json.
    #[arg(long)]
    pub deep: bool,

    /// Write the inventory of what the registry serves (every tag with its digest) to FILE (0600).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// Compare what the registry serves with an inventory written before (--record): a tag gone or with
    /// another digest fails the inventory check; tags added since are listed.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,

    /// Tags checked at once by --deep.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(usize))]
    pub jobs: usize,

    /// Print one JSON document instead of text (schema in the README).
    #[arg(long)]
    pub json: bool,

    /// Count warnings as failures.
    #[arg(long)]
    pub strict: bool,

    /// Seconds the whole run may take; every network step is bounded by it.
    #[arg(long, default_value_t = 60, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,

    /// Size of the test image's layer, e.g. 1MiB, 512MiB, 1GiB.
    #[arg(long, default_value = "1MiB")]
    pub size: String,
}

#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    #[command(flatten)]
    pub appliance: ApplianceDir,

    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct LogsArgs {
    /// Only this container's lines.
    #[arg(value_enum, value_name = "CONTAINER")]
    pub container: Option<LogSource>,

    /// Keep printing new lines until interrupted (Ctrl-C).
    #[arg(long, short = 'f')]
    pub follow: bool,

    /// Only lines newer than this: a duration such as 30s, 10m, 2h or 1h30m, or an RFC 3339 time.
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,

    #[command(flatten)]
    pub appliance: ApplianceDir,
}

#[derive(Args, Debug, Clone)]
pub struct GcArgs {
    /// Say what would be freed, and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Seconds a request started before gc may take to finish (a long push) before gc gives up. (On S3
    /// storage, gc cannot see other hosts' requests: it gives writes 5 s, and verify --deep checks after.)
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub drain_timeout: u64,

    #[command(flatten)]
    pub appliance: ApplianceDir,
}

#[derive(Args, Debug, Clone)]
pub struct BackupArgs {
    /// The file to write (0600: it holds the CA key and the secrets).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// Only blobs this earlier (full) backup lacks; restore then needs it too (--base).
    #[arg(long, value_name = "OLD_BACKUP")]
    pub since: Option<PathBuf>,

    /// Seconds a request started before may take to finish before the backup gives up.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub drain_timeout: u64,

    #[command(flatten)]
    pub appliance: ApplianceDir,
}

#[derive(Args, Debug, Clone)]
pub struct RestoreArgs {
    /// The backup made by registry-up backup.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// The full backup an incremental one (--since) was made against.
    #[arg(long, value_name = "FILE")]
    pub base: Option<PathBuf>,

    /// Where the registry's data goes [default: this host's default data folder; never a folder the backup
    /// names].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    #[command(flatten)]
    pub appliance: ApplianceDir,
}

#[derive(Args, Debug, Clone)]
pub struct MaintainArgs {
    /// Seconds a request started before gc may take to finish before gc gives up.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub drain_timeout: u64,

    #[command(flatten)]
    pub appliance: ApplianceDir,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSource {
    Registry,
    Nginx,
}

#[derive(Args, Debug, Clone)]
pub struct DownArgs {
    #[command(flatten)]
    pub appliance: ApplianceDir,

    /// Also delete the data (every image), the certificates, the secrets and the settings.
    #[arg(long)]
    pub purge: bool,

    /// Do not ask before --purge deletes.
    #[arg(long)]
    pub yes: bool,

    /// The pod to stop when state.json cannot be read (see podman pod ps); without it, down needs state.json.
    #[arg(long, value_name = "NAME")]
    pub pod_name: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct BundleArgs {
    /// The bundle file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// Registry image to include [default: the pinned one `up` uses].
    #[arg(long, value_name = "REF")]
    pub registry_image: Option<String>,

    /// nginx image to include [default: the pinned one `up` uses].
    #[arg(long, value_name = "REF")]
    pub nginx_image: Option<String>,

    /// Architecture to pull, as OCI names it (amd64, arm64, …), repeatable. The appliance's images and
    /// binary are for the first [default: this host's]; the --images ones for every one given [default:
    /// every platform they have].
    #[arg(long)]
    pub arch: Vec<String>,

    /// A file of the workloads' image references, one per line (`#` starts a comment), to carry too;
    /// `registry-up import` or `up --bundle` pushes them into the appliance.
    #[arg(long, value_name = "FILE")]
    pub images: Option<PathBuf>,

    /// An older bundle the site has imported: the blobs it holds are left out (a top-up).
    #[arg(long, value_name = "OLD_BUNDLE", requires = "images")]
    pub since: Option<PathBuf>,

    /// CA certificate (PEM) to trust for the source registry [default: the system's roots].
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// User for the source registry; the password is read from standard input.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// registry-up's Debian package (`make package` writes it) to carry too, next to this binary; it
    /// must hold this very binary.
    #[arg(long, value_name = "FILE")]
    pub deb: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct ImportArgs {
    /// A bundle (registry-up bundle --images), an OCI image layout (a folder, or a tar such as podman
    /// save --format oci-archive writes), or a podman save / docker save archive.
    #[arg(value_name = "SOURCE")]
    pub source: PathBuf,

    /// A path put before every name: REGISTRY/PREFIX/docker.io/library/nginx:1.27.
    #[arg(long, value_name = "PATH")]
    pub prefix: Option<String>,

    /// Blobs sent at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub jobs: u64,

    /// Seconds a request may stall before the import gives up.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,

    #[command(flatten)]
    pub appliance: ApplianceDir,
}

#[derive(Args, Debug, Clone)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug, Clone)]
pub struct ManArgs {
    /// The folder to write the pages into (created if missing), e.g. /usr/local/share/man/man1.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Subject, names, issuer, validity, days left and fingerprints of the CA and server certificate.
    Show(CertsShowArgs),
    /// Re-issue the server certificate from the existing CA and reload nginx in place (no restart).
    Renew(CertsRenewArgs),
}

#[derive(Subcommand, Debug, Clone)]
pub enum SiteCommand {
    /// Write the site file (0600, checksummed) another host joins with: registry-up --site FILE --domain
    /// HOSTNAME. It holds the server key, the bucket's key, http.secret and the password.
    Export(SiteExportArgs),
    /// Remove a replica that is gone for good from the site's records in the bucket (gc holds and checks
    /// every recorded replica), and end a gc hold it left.
    Forget(SiteForgetArgs),
}

#[derive(Args, Debug, Clone)]
pub struct SiteForgetArgs {
    #[command(flatten)]
    pub appliance: ApplianceDir,

    /// The replica's name, as its --domain was (`registry-up gc --dry-run` lists them).
    #[arg(value_name = "NAME")]
    pub name: String,
}

#[derive(Args, Debug, Clone)]
pub struct SiteExportArgs {
    #[command(flatten)]
    pub appliance: ApplianceDir,

    /// Where to write the site file (never overwritten).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// A replica's host name or address, added to the certificate's names (repeatable; the certificate is
    /// re-issued once, here, when a name is new).
    #[arg(long, value_name = "NAME|IP")]
    pub replica: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct CertsShowArgs {
    #[command(flatten)]
    pub appliance: ApplianceDir,

    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct CertsRenewArgs {
    #[command(flatten)]
    pub appliance: ApplianceDir,

    /// Also make a new CA (every client must then trust the new ca.crt).
    #[arg(long)]
    pub rotate_ca: bool,
}

#[derive(Args, Debug, Clone)]
pub struct TrustArgs {
    #[command(flatten)]
    pub appliance: ApplianceDir,

    /// Also add the CA to the operating system's trust store (update-ca-certificates).
    #[arg(long)]
    pub system: bool,
}

#[derive(Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("where").required(true).args(["out", "apply"])))]
pub struct ClientsArgs {
    #[command(flatten)]
    pub appliance: ApplianceDir,

    /// Write the files into this folder, under the paths they have on a client (DIR/etc/…), for
    /// configuration management to copy.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// As root: write them on this host, for the kinds of clients installed here (a file of the same
    /// name that registry-up did not write is left alone).
    #[arg(long)]
    pub apply: bool,

    /// A registry the appliance mirrors (repeatable) [default: those its repositories are named after,
    /// such as docker.io for docker.io/library/nginx].
    #[arg(long, value_name = "REGISTRY")]
    pub mirror: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct PrepareUserArgs {
    /// The user who will run registry-up rootless.
    pub name: String,

    /// Print what would change and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug, Clone)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub appliance: ApplianceDir,

    /// The name clients will use: checked to resolve to an address of this host.
    #[arg(long, value_name = "NAME")]
    pub domain: Option<String>,

    /// The port to check [default: the appliance's, else 443 for root and 8443 for a user].
    #[arg(long)]
    pub port: Option<u16>,

    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `--config-dir`, for the commands that work on an installed appliance.
#[derive(Args, Debug, Clone, Default)]
pub struct ApplianceDir {
    /// Where the appliance keeps its certificates, secrets, configuration and state.json.
    #[arg(long, default_value_os_t = default_config_dir(), value_name = "DIR")]
    pub config_dir: PathBuf,
}

/// /etc/registry-up for root, $XDG_CONFIG_HOME/registry-up for a user.
fn default_config_dir() -> PathBuf {
    crate::host::HostFacts::current().default_config_dir()
}
