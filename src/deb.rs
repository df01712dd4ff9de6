//! registry-up's own Debian package, as `bundle --deb` reads it: its control fields, and the checksum of the
//! binary it installs, through `dpkg-deb` (present on every Debian host; the data member may be
//! compressed in ways no crate in the tree reads).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::digest::Sha256;
use crate::error::{Error, Result};

/// Where the package installs the binary.
const BINARY: &str = "usr/bin/registry-up";

pub struct Deb {
    /// The package's Version field.
    pub version: String,
    /// Debian's name of its architecture (amd64, arm64, armhf, ppc64el, …).
    pub arch: String,
    /// SHA-256 of the binary the package installs.
    pub binary_sha256: String,
}

fn unreadable(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::usage(format!(
        "Cannot read the package {} ({why}): give --deb the registry-up_*.deb that `make package` wrote.",
        path.display()
    ))
}

/// Debian's name for the architecture OCI calls `oci` (they differ for 32-bit ARM, POWER and x86).
pub fn debian_arch(oci: &str) -> &str {
    match oci {
        "arm" => "armhf",
        "ppc64le" => "ppc64el",
        "386" => "i386",
        other => other,
    }
}

/// Reads `path`, which must be registry-up's package.
pub fn read(path: &Path) -> Result<Deb> {
    if !path.is_file() {
        return Err(unreadable(path, "no such file"));
    }
    let fields = Command::new("dpkg-deb")
        .arg("--field")
        .arg(path)
        .args(["Package", "Version", "Architecture"])
        .output()
        .map_err(|e| {
            Error::usage(format!(
                "--deb needs dpkg-deb to read the package ({e}): install dpkg (apt-get install dpkg), or leave \
                 --deb out and the bundle carries the binary alone."
            ))
        })?;
    if !fields.status.success() {
        return Err(unreadable(path, String::from_utf8_lossy(&fields.stderr).trim()));
    }
    let text = String::from_utf8_lossy(&fields.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(": ")))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    if field("Package") != "registry-up" {
        return Err(unreadable(
            path,
            format!("it is the package {:?}, not registry-up", field("Package")),
        ));
    }
    let mut data = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| unreadable(path, e))?;
    let stdout = data.stdout.take().expect("piped");
    let found = binary_checksum(stdout);
    // Found early, the rest of the stream is not needed; otherwise dpkg-deb's own words say what is wrong.
    let _ = data.kill();
    let out = data.wait_with_output().map_err(|e| unreadable(path, e))?;
    let binary_sha256 = match found {
        Ok(Some(sha)) => sha,
        Ok(None) if out.status.success() => return Err(unreadable(path, format!("it holds no /{BINARY}"))),
        Ok(None) | Err(_) => {
            let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
            let why = match found {
                Err(e) if said.is_empty() => e.to_string(),
                _ => said,
            };
            return Err(unreadable(path, why));
        }
    };
    Ok(Deb {
        version: field("Version"),
        arch: field("Architecture"),
        binary_sha256,
    })
}

/// The SHA-256 of the binary in a package's data tar, if it has one.
fn binary_checksum(tar: impl Read) -> std::io::Result<Option<String>> {
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries()? {
        let entry = entry?;
        if entry.path()?.to_string_lossy().trim_start_matches("./") == BINARY {
            return Sha256::of_reader(entry).map(|(sha, _)| Some(sha));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o755);
            header.set_cksum();
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn the_binary_is_found_under_either_spelling_of_its_path_and_nothing_else_is_taken_for_it() {
        let binary: &[u8] = b"\x7fELF not really";
        let expected = crate::digest::sha256_hex(binary);
        for name in ["./usr/bin/registry-up", "usr/bin/registry-up"] {
            let data = tar_of(&[("./usr/share/doc/registry-up/README.md", b"x"), (name, binary)]);
            assert_eq!(binary_checksum(data.as_slice()).unwrap(), Some(expected.clone()));
        }
        let other = tar_of(&[
            ("./usr/local/bin/registry-up", binary),
            ("./usr/bin/registry-up-old", binary),
        ]);
        assert_eq!(binary_checksum(other.as_slice()).unwrap(), None);
    }
}
