//! What `make package` builds (target/debian, target/package), checked as a user meets it: the .deb is
//! lintian-clean and holds the binary, man pages and completions; the tarball and its members verify and
//! the README states the glibc the binary really needs; and in booted bookworm and trixie guests with
//! nothing of registry-up's in them and no network, the README's air-gapped recipe, run line by line as
//! written, turns the one copied bundle into a verified appliance that comes back after a reboot and
//! outlives `apt-get remove`.
//!
//! The packages must be of this very tree (their `--version` is the test binary's): `make test` runs
//! `make package` first; a plain `cargo test` without them skips these tests, saying so.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use common::guest::Guest;
use common::{assert_exit, shown, text};

/// What `make package` wrote, found by name.
struct Built {
    deb: PathBuf,
    tarball: PathBuf,
    /// `registry-up --version` of the test binary, which every packaged binary must print.
    version: String,
}

fn version_of(bin: &Path) -> String {
    let out = Command::new(bin).arg("--version").output().unwrap();
    assert_exit(&out, 0, &format!("{} --version", bin.display()));
    text(&out.stdout)
}

fn only_file(dir: &Path, prefix: &str, suffix: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(prefix) && name.ends_with(suffix)
        })
        .collect();
    assert!(found.len() <= 1, "more than one {prefix}*{suffix} in {}", dir.display());
    found.pop()
}

/// The packages, or None (said once) where they are missing or of another tree and the run does not
/// require them.
fn built() -> Option<Built> {
    let repo = common::repo();
    let deb = only_file(&repo.join("target/debian"), "registry-up_", ".deb");
    let tarball = only_file(&repo.join("target/package"), "registry-up-", "-linux.tar.gz");
    let version = version_of(Path::new(common::BIN));
    let release = repo.join("target/release/registry-up");
    let problem = match (deb, tarball) {
        (Some(deb), Some(tarball)) if release.exists() && version_of(&release) == version => {
            return Some(Built { deb, tarball, version })
        }
        (Some(_), Some(_)) => "the packages in target/ are of another tree than this test (their --version differs)",
        _ => "target/debian or target/package holds no package",
    };
    if std::env::var_os("REGISTRY_UP_E2E").is_some_and(|v| v == "require") {
        panic!("{problem}: run `make package` (make test does)");
    }
    static SAID: Once = Once::new();
    SAID.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "registry-up: skipping the package tests ({problem}): run `make package` first, or `make test`, \
             which does and fails if any test is skipped."
        );
    });
    None
}

fn run(program: &str, args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(program).args(args).current_dir(dir).output().unwrap()
}

/// The tarball unpacked into a temp folder: (the temp folder, the unpacked top folder).
fn unpacked(built: &Built) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new("tar")
        .arg("-xzf")
        .arg(&built.tarball)
        .arg("-C")
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_exit(&out, 0, "unpacking the tarball");
    let name = built.tarball.file_name().unwrap().to_string_lossy();
    let top = tmp.path().join(name.trim_end_matches(".tar.gz"));
    (tmp, top)
}

#[test]
fn the_deb_is_lintian_clean_and_installs_the_binary_man_pages_and_completions() {
    let Some(built) = built() else { return };
    let lintian = Command::new("lintian")
        .args(["--fail-on", "error", "--no-tag-display-limit"])
        .arg(&built.deb)
        .output()
        .expect("lintian (make deps installs it)");
    assert_exit(&lintian, 0, "lintian");
    assert!(
        !text(&lintian.stdout).lines().any(|l| l.starts_with("E: ")),
        "{}",
        shown(&lintian)
    );

    let listing = Command::new("dpkg-deb").arg("-c").arg(&built.deb).output().unwrap();
    let listing = text(&listing.stdout);
    for path in [
        "./usr/bin/registry-up",
        "./usr/share/man/man1/registry-up.1.gz",
        "./usr/share/man/man1/registry-up-verify.1.gz",
        "./usr/share/man/man1/registry-up-certs-renew.1.gz",
        "./usr/share/bash-completion/completions/registry-up",
        "./usr/share/zsh/vendor-completions/_registry-up",
        "./usr/share/fish/vendor_completions.d/registry-up.fish",
        "./usr/share/doc/registry-up/README.md",
        "./usr/share/doc/registry-up/copyright",
        "./usr/share/doc/registry-up/changelog.gz",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(&format!(" {path}"))),
            "{path} is not in the package:\n{listing}"
        );
    }
    let depends = Command::new("dpkg-deb")
        .arg("--field")
        .arg(&built.deb)
        .arg("Depends")
        .output()
        .unwrap();
    // What up and doctor need (doctor's fixes name these packages), at versions Debian 12 has; the
    // guests' apt-get install below proves Debian 12 and 13 satisfy them.
    for needed in ["podman (>= 4.3)", "catatonit", "uidmap"] {
        assert!(
            text(&depends.stdout).split(", ").any(|d| d.trim() == needed),
            "Depends lacks {needed}: {}",
            shown(&depends)
        );
    }

    // The binary it installs is the tarball's, byte for byte (one build, two wrappings).
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&built.deb)
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_exit(&out, 0, "dpkg-deb -x");
    let (_t, top) = unpacked(&built);
    assert_eq!(
        common::sha256(&std::fs::read(tmp.path().join("usr/bin/registry-up")).unwrap()),
        common::sha256(&std::fs::read(top.join("registry-up")).unwrap())
    );
}

#[test]
fn the_tarball_verifies_and_the_readme_states_the_glibc_its_binary_needs() {
    let Some(built) = built() else { return };
    let dir = built.tarball.parent().unwrap();
    let name = built.tarball.file_name().unwrap().to_string_lossy().into_owned();
    let sums = run("sha256sum", &["-c", &format!("{name}.sha256")], dir);
    assert_exit(&sums, 0, "sha256sum -c of the tarball's checksum file");
    assert_eq!(text(&sums.stdout), format!("{name}: OK\n"));

    let (_tmp, top) = unpacked(&built);
    let inner = run("sha256sum", &["-c", "SHA256SUMS"], &top);
    assert_exit(&inner, 0, "sha256sum -c SHA256SUMS inside the tarball");
    let binary = top.join("registry-up");
    assert!(
        text(&inner.stdout).contains("registry-up: OK"),
        "the binary is checksummed:\n{}",
        text(&inner.stdout)
    );
    assert_eq!(version_of(&binary), built.version);
    // --version names the commit it was built from.
    // (safe.directory: an ordinary user running the tests in root's checkout.)
    let head = Command::new("git")
        .args(["-c", "safe.directory=*", "rev-parse", "--short=12", "HEAD"])
        .current_dir(common::repo())
        .output()
        .unwrap();
    assert_exit(&head, 0, "git rev-parse (the tests run in a git checkout)");
    assert!(
        built.version.contains(&format!("({}", text(&head.stdout).trim())),
        "{} names HEAD {}",
        built.version,
        text(&head.stdout)
    );
    assert!(top.join("man/man1/registry-up.1.gz").is_file());
    assert!(top.join("README.md").is_file());

    // The completion script is what the binary prints, and bash loads it.
    let printed = Command::new(&binary).args(["completions", "bash"]).output().unwrap();
    assert_eq!(
        printed.stdout,
        std::fs::read(top.join("completions/registry-up.bash")).unwrap()
    );
    let loaded = Command::new("bash")
        .arg("-c")
        .arg("source completions/registry-up.bash && complete -p registry-up")
        .current_dir(&top)
        .output()
        .unwrap();
    assert_exit(&loaded, 0, "bash sourcing the completion script");

    // The oldest glibc it runs on: the highest GLIBC_ symbol version it imports, as the README says.
    let symbols = Command::new("objdump").arg("-T").arg(&binary).output().unwrap();
    assert_exit(&symbols, 0, "objdump -T");
    let needed = text(&symbols.stdout)
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(|n| n.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .expect("the binary imports versioned glibc symbols");
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let stated = format!("**glibc {}.{} or newer**", needed.0, needed.1);
    assert!(
        readme.contains(&stated),
        "the README must say {stated} (measured with objdump -T)"
    );
}

/// The README's air-gapped recipe: the lines of the sh block after its marker comment.
fn readme_recipe() -> Vec<String> {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let after = readme
        .split_once("<!-- air-gapped recipe")
        .expect("the README marks its air-gapped recipe")
        .1;
    let block = after
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a sh block follows the marker")
        .0;
    let lines: Vec<String> = block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 3, "the recipe is three commands: {lines:?}");
    lines
}

/// On a connected host: a bundle of the stand-in images (served by a registry of our own, as a mirror
/// would) made by the packaged binary with the .deb; then in a bare guest, only that file and the recipe.
fn air_gapped_recipe(suite: &str) {
    let Some(built) = built() else { return };
    if !common::e2e() {
        return;
    }
    let recipe = readme_recipe();
    let Some(source) = common::serving(&["--no-verify"]) else {
        return;
    };
    let [registry_tar, nginx_tar] = common::image_archives();
    source.push(registry_tar, "mirror/registry:3", None);
    source.push(nginx_tar, "mirror/nginx:1", None);
    let bundle = source.tmp.path().join("registry-up-bundle.tar");
    let bundle_with = |bin: &Path, deb: &Path| {
        Command::new(bin)
            .args(["bundle", "--out"])
            .arg(&bundle)
            .args([
                "--registry-image",
                &format!("{}/mirror/registry:3", source.registry()),
                "--nginx-image",
                &format!("{}/mirror/nginx:1", source.registry()),
                "--ca",
            ])
            .arg(source.config_dir().join("ca.crt"))
            .arg("--deb")
            .arg(deb)
            .output()
            .unwrap()
    };
    // A bundle never carries two different registry-ups (the test's debug build is not the packaged one),
    // nor something else as the package.
    for (bin, deb, says) in [
        (
            Path::new(common::BIN),
            built.deb.as_path(),
            "holds another build of registry-up",
        ),
        (
            Path::new(common::BIN),
            &common::repo().join("README.md"),
            "Cannot read the package",
        ),
    ] {
        let out = bundle_with(bin, deb);
        assert_exit(&out, 2, "bundle with a package that does not fit");
        assert!(text(&out.stderr).contains(says), "{}", shown(&out));
        assert!(!bundle.exists(), "nothing is written");
    }
    let out = bundle_with(&common::repo().join("target/release/registry-up"), &built.deb);
    assert_exit(&out, 0, "bundle --deb");

    let mut guest = Guest::bare(suite, "-pkg");
    std::fs::copy(&bundle, guest.root.join("root/registry-up-bundle.tar")).unwrap();
    // The recipe's domain, resolved inside the guest only.
    let hosts = guest.root.join("etc/hosts");
    let mut lines = std::fs::read_to_string(&hosts).unwrap();
    lines.push_str("127.0.0.1 registry.lab\n");
    std::fs::write(&hosts, lines).unwrap();
    assert!(!guest.root.join("usr/bin/registry-up").exists());
    assert!(!guest.root.join("usr/local/bin/registry-up").exists());
    guest.boot();

    let said: Vec<String> = recipe
        .iter()
        .map(|line| {
            let out = guest.run(None, &["sh", "-c", &format!("cd /root && {line}")]);
            assert_exit(&out, 0, &format!("the README's `{line}` in the {suite} guest"));
            text(&out.stdout)
        })
        .collect();
    // The first line checked the package it took out against the bundle's checksums.
    let deb_name = built.deb.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(said[0].trim(), format!("{deb_name}: OK"), "the package was checked");
    let said = said.concat();
    assert!(
        said.contains(&format!(
            "and registry-up {}",
            built.version.trim_start_matches("registry-up ").trim()
        )),
        "up names the registry-up the bundle carries:\n{said}"
    );
    assert!(said.contains("ok   verify push/pull"), "{said}");

    // The tool as installed: on PATH from /usr/bin, its version, its man pages, its completions.
    let version = guest.exec(&["registry-up", "--version"]);
    assert_eq!(text(&version.stdout), built.version);
    let which = guest.exec(&["sh", "-c", "command -v registry-up"]);
    assert_eq!(text(&which.stdout).trim(), "/usr/bin/registry-up");
    for page in ["registry-up", "registry-up-verify"] {
        let man = guest.exec(&["man", "-w", page]);
        assert_exit(&man, 0, &format!("man -w {page}"));
        assert_eq!(text(&man.stdout).trim(), format!("/usr/share/man/man1/{page}.1.gz"));
    }
    let completion = guest.exec(&[
        "bash",
        "-c",
        "source /usr/share/bash-completion/completions/registry-up && complete -p registry-up",
    ]);
    assert_exit(&completion, 0, "the bash completion loads");

    // Something of the user's, to find again after the reboot and the removal.
    let loaded = format!("{}/mirror/nginx:1", source.registry());
    let digest = guest.push(&format!("containers-storage:{loaded}"), "registry.lab/keep/nginx:1");
    let still_there = |g: &Guest| g.has_digest("registry.lab/keep/nginx:1", &digest);
    assert!(still_there(&guest));

    // Persistent: back by itself after a reboot.
    guest.poweroff();
    guest.boot();
    guest.wait_for(90, "the appliance is back after a reboot", || guest.verify_ok(&[]));
    assert!(still_there(&guest), "the pushed image is there after the reboot");

    // Removing the package removes the tool, nothing of the appliance.
    let removed = guest.run(None, &["apt-get", "remove", "-y", "registry-up"]);
    assert_exit(&removed, 0, "apt-get remove registry-up");
    assert!(!guest.root.join("usr/bin/registry-up").exists());
    for kept in [
        "etc/registry-up/state.json",
        "etc/registry-up/ca.crt",
        "etc/registry-up/ca/ca.key",
        "etc/registry-up/tls/server.key",
        "etc/registry-up/registry-pod.yaml",
        "var/lib/registry-up/data/docker",
    ] {
        assert!(guest.root.join(kept).exists(), "{kept} is gone after apt-get remove");
    }
    let answers = guest.exec(&[
        "curl",
        "-sf",
        "-o",
        "/dev/null",
        "--cacert",
        "/etc/registry-up/ca.crt",
        "https://registry.lab/v2/",
    ]);
    assert_exit(&answers, 0, "the registry still answers after apt-get remove");
    assert!(still_there(&guest), "the pushed image is there after apt-get remove");

    // The tarball's binary runs on this guest's glibc too, and finds the appliance sound.
    let (_tmp, top) = unpacked(&built);
    std::fs::copy(top.join("registry-up"), guest.root.join("root/registry-up")).unwrap();
    let version = guest.exec(&["/root/registry-up", "--version"]);
    assert_eq!(text(&version.stdout), built.version);
    let verify = guest.exec(&["/root/registry-up", "verify", "--timeout", "15"]);
    assert_exit(&verify, 0, "the tarball's registry-up verify in the guest");
}

#[test]
fn bookworm_gets_a_verified_persistent_appliance_from_one_bundle_and_the_readme() {
    air_gapped_recipe("bookworm");
}

#[test]
fn trixie_gets_a_verified_persistent_appliance_from_one_bundle_and_the_readme() {
    air_gapped_recipe("trixie");
}
