//! Issue 17: the ways an adversarial pass broke registry-up, one test (at least) per class of bug. Each
//! drives the real binary on its own appliance and checks with independent tools (openssl, curl, podman).

mod common;

use std::process::Command;

use common::{serving, text, Appliance, Run};

/// Whether `openssl s_client` completes a handshake with `app` offering only `args` (a protocol and one
/// suite).
fn handshake(registry: &str, domain: &str, args: &[&str]) -> bool {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", registry, "-servername", domain])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs");
    out.status.success() && text(&out.stdout).contains("Cipher is ") && !text(&out.stdout).contains("Cipher is (NONE)")
}

/// The suites this machine's OpenSSL knows for a protocol (`TLSv1.2` lists every pre-1.3 suite usable with
/// it, down to security level 0, so weak ones are tried too).
fn known_suites(tls13: bool) -> Vec<String> {
    let out = Command::new("openssl")
        .args([
            "ciphers",
            if tls13 { "-tls1_3" } else { "-tls1_2" },
            "-s",
            "ALL:COMPLEMENTOFALL:@SECLEVEL=0",
        ])
        .output()
        .expect("openssl runs");
    text(&out.stdout).trim().split(':').map(String::from).collect()
}

/// An AEAD suite: GCM, CCM or ChaCha20-Poly1305 (every TLS 1.3 suite is one).
fn aead(suite: &str) -> bool {
    ["GCM", "CCM", "CHACHA20"].iter().any(|m| suite.contains(m))
}

#[test]
fn tls_offers_only_aead_suites_and_no_version() {
    let Some(app) = serving(&["--no-verify"]) else { return };
    let registry = format!("127.0.0.1:{}", app.port);
    let mut offered = Vec::new();
    for suite in known_suites(false) {
        if handshake(
            &registry,
            &app.domain,
            &["-tls1_2", "-cipher", &format!("{suite}:@SECLEVEL=0")],
        ) {
            offered.push(format!("TLSv1.2 {suite}"));
        }
    }
    let tls13: Vec<String> = known_suites(true)
        .into_iter()
        .filter(|s| s.starts_with("TLS_"))
        .filter(|s| handshake(&registry, &app.domain, &["-tls1_3", "-ciphersuites", s]))
        .map(|s| format!("TLSv1.3 {s}"))
        .collect();
    let weak: Vec<&String> = offered.iter().chain(&tls13).filter(|s| !aead(s)).collect();
    assert!(
        weak.is_empty(),
        "non-AEAD suites offered: {weak:?} (all offered: {offered:?} {tls13:?})"
    );
    assert!(
        !offered.is_empty() && !tls13.is_empty(),
        "TLS 1.2 and 1.3 both work: {offered:?} {tls13:?}"
    );
    for old in ["-tls1", "-tls1_1"] {
        assert!(
            !handshake(&registry, &app.domain, &[old, "-cipher", "ALL:@SECLEVEL=0"]),
            "{old} refused"
        );
    }

    // nginx's version is in neither the Server header nor its own error pages.
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "--cacert"])
        .arg(app.config_dir().join("ca.crt"))
        .arg(format!("https://{}/nothing-here", app.registry()))
        .output()
        .unwrap();
    let answer = text(&out.stdout);
    assert!(answer.contains("404"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("nginx/"),
        "a version is shown: {answer}"
    );
}

/// A TLS server written for the test: it answers every request the way a registry's `/v2/` does, then
/// drops the kept-alive connection with a reset (SO_LINGER 0), as load balancers and restarting proxies
/// do. A client writing its next request on that connection gets EPIPE.
fn answer_then_reset_server(tmp: &std::path::Path) -> (u16, std::path::PathBuf) {
    use std::io::{Read, Write};
    use std::sync::Arc;
    let ca = common::certs::ca("hardening test CA", None);
    let (cert, key) = common::certs::leaf(&["127.0.0.1"], &ca, common::certs::now_valid(), true);
    let ca_path = tmp.join("ca.crt");
    std::fs::write(&ca_path, &ca.pem).unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let mut tcp = stream;
                let mut tls = rustls::ServerConnection::new(config).unwrap();
                let mut conn = rustls::Stream::new(&mut tls, &mut tcp);
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\
                      Docker-Distribution-Api-Version: registry/2.0\r\nConnection: keep-alive\r\n\r\n{}",
                );
                let _ = conn.flush();
                let linger = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                // SAFETY: a valid socket and a linger struct of the right size.
                unsafe {
                    libc::setsockopt(
                        std::os::unix::io::AsRawFd::as_raw_fd(&tcp),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        &linger as *const libc::linger as *const libc::c_void,
                        std::mem::size_of::<libc::linger>() as libc::socklen_t,
                    );
                }
            });
        }
    });
    (port, ca_path)
}

/// Item 5: a peer closing a socket is an error of one check, never the death of the process (SIGPIPE).
#[test]
fn a_peer_that_resets_kept_alive_connections_fails_checks_not_the_process() {
    let tmp = tempfile::tempdir().unwrap();
    let (port, ca) = answer_then_reset_server(tmp.path());
    for _ in 0..5 {
        let out = Run::bin()
            .args(["verify", "--domain", "127.0.0.1", "--port", &port.to_string(), "--ca"])
            .arg(&ca)
            .args(["--timeout", "20", "--json"])
            .config_dir(tmp.path())
            .output();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            None,
            "verify was killed by a signal:\n{}",
            common::shown(&out)
        );
        common::assert_exit(&out, 1, "verify against a server that resets its connections");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
        common::assert_check(&report, "tls", "pass", &[]);
        assert_eq!(common::check(&report, "round-trip")["status"], "fail", "{report:#}");
    }
}

/// Item 5, the other side: a reader that went away (`| head`) ends registry-up quietly, without a panic,
/// with the status a SIGPIPE death gives (141), as `set -o pipefail` expects.
#[test]
fn a_closed_stdout_ends_the_run_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    // The reading end is closed before the run starts: its first write meets EPIPE, every time.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Run::bin()
        .args(["status", "--json"])
        .config_dir(tmp.path())
        .command()
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", common::shown(&out));
    assert!(!text(&out.stderr).contains("panicked"), "{}", common::shown(&out));
}

/// `registry-up render` into a fresh folder with `args`: no root, no Podman.
fn render(out: &std::path::Path, args: &[&str]) -> Run {
    Run::bin()
        .args(["render", "--domain", "r.example", "--out"])
        .arg(out)
        .args(args)
}

/// Item 2 (since issue 19): the registry has no TCP port any more (a Unix socket inside the pod), so 5000
/// is an ordinary port for nginx, not refused.
#[test]
fn the_registry_s_old_port_is_an_ordinary_port_now() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    render(&out, &["--port", "5000"]).run();
    let conf = std::fs::read_to_string(out.join("nginx/registry.conf")).unwrap();
    assert!(conf.contains("listen 0.0.0.0:5000 ssl;"), "{conf}");
    assert!(conf.contains("server unix:/run/registry-up/registry.sock;"), "{conf}");
}

/// Item 10: a password that cannot work (too long for bcrypt, control characters, blanks) is refused
/// before anything is written.
#[test]
fn passwords_that_cannot_work_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    for (password, says) in [
        ("x".repeat(73), "73 bytes"),
        ("x".repeat(10_000), "10000 bytes"),
        ("bell\u{7}".to_string(), "control character"),
        (" \t ".to_string(), "control character"),
        ("    ".to_string(), "only blanks"),
    ] {
        render(&out, &["--auth", "--auth-password-stdin"])
            .stdin(format!("{password}\n"))
            .code(2)
            .stderr_has(says)
            .run();
        assert!(!out.exists(), "nothing written for {says}");
    }
    render(&out, &["--auth", "--auth-password-stdin"])
        .stdin(format!("{}\n", "x".repeat(72)))
        .run();
}

/// Item 11: flags that contradict each other, or that would do nothing, are refused, not ignored.
#[test]
fn contradictory_or_idle_flags_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    render(&out, &["--auth-password-stdin"])
        .stdin("secret-pass\n")
        .code(2)
        .stderr_has("add --auth")
        .run();
    render(&out, &["--auth", "--no-auth"])
        .code(2)
        .stderr_has("cannot be used with")
        .run();
    Run::bin()
        .args(["up", "--domain", "r.example", "--wait-timeout", "0"])
        .config_dir(tmp.path().join("config"))
        .code(2)
        .stderr_has("--wait-timeout")
        .run();
    assert!(!out.exists() && !tmp.path().join("config").exists());
}

/// Item 11: hints fit the problem and the user: an encrypted key is called encrypted, a file that is not
/// text is not sent to check permissions, root is never told to run as root.
#[test]
fn hints_name_the_real_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = common::certs::ca("hint CA", None);
    let (cert, _) = common::certs::leaf(&["r.example"], &ca, common::certs::now_valid(), true);
    let cert_path = tmp.path().join("server.crt");
    std::fs::write(&cert_path, cert).unwrap();
    let encrypted = tmp.path().join("encrypted.key");
    std::fs::write(
        &encrypted,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let own = |key: &std::path::Path| {
        render(
            &out,
            &["--cert", cert_path.to_str().unwrap(), "--key", key.to_str().unwrap()],
        )
        .code(2)
    };
    own(&encrypted).stderr_has("is encrypted with a passphrase").run();
    let binary = tmp.path().join("binary.key");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x80]).unwrap();
    let said = own(&binary).stderr_has("not text (not UTF-8)").run();
    assert!(!text(&said.stderr).contains("permissions"), "{}", text(&said.stderr));

    // A config folder that is a file, and a state.json that is a folder: the hint is about those, and
    // "run as root" is said only to someone who is not root.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let said = Run::bin()
        .args(["status"])
        .config_dir(file.join("sub"))
        .code(2)
        .stderr_has("a file stands where a folder is needed")
        .run();
    let folder_state = tmp.path().join("weird");
    std::fs::create_dir_all(folder_state.join("state.json")).unwrap();
    let said2 = Run::bin()
        .args(["certs", "show"])
        .config_dir(&folder_state)
        .code(2)
        .run();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        for out in [&said, &said2] {
            assert!(!text(&out.stderr).contains("run as root"), "{}", common::shown(out));
        }
    }
    assert!(
        text(&said2.stderr).contains("a folder stands where a file is needed"),
        "{}",
        common::shown(&said2)
    );
}

/// The digest and name an OCI archive's index.json records.
fn archive_index(archive: &std::path::Path) -> (String, String) {
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().as_os_str() == "index.json" {
            let index: serde_json::Value = serde_json::from_reader(&mut entry).unwrap();
            let m = &index["manifests"][0];
            return (
                m["digest"].as_str().unwrap().to_string(),
                m["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
    }
    panic!("no index.json in {}", archive.display())
}

/// A bundle written by hand: `members` in this order, with a manifest.json and SHA256SUMS that describe
/// `listed` ((role, file, archive the manifest claims the file is)).
fn crafted_bundle(
    path: &std::path::Path,
    listed: &[(&str, &str, &std::path::Path)],
    members: &[(&str, &std::path::Path)],
) {
    let sha = |p: &std::path::Path| {
        let out = Command::new("sha256sum").arg(p).output().unwrap();
        text(&out.stdout).split_whitespace().next().unwrap().to_string()
    };
    let images: Vec<serde_json::Value> = listed
        .iter()
        .map(|(role, file, claimed)| {
            let (digest, reference) = archive_index(claimed);
            // The checksum and size are of the member as shipped: an attacker recomputes those.
            let shipped = members
                .iter()
                .rev()
                .find(|(n, _)| n == file)
                .map(|(_, p)| *p)
                .unwrap_or(claimed);
            serde_json::json!({"role": role, "reference": reference, "digest": digest, "file": file,
                "sha256": sha(shipped), "size": std::fs::metadata(shipped).unwrap().len()})
        })
        .collect();
    let sums: String = images
        .iter()
        .map(|i| format!("{}  {}\n", i["sha256"].as_str().unwrap(), i["file"].as_str().unwrap()))
        .collect();
    let manifest = serde_json::json!({"format": 1, "created_by": "a test", "arch": "amd64", "images": images});
    let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        // Raw bytes in the name field: a crafted header need not follow the tar crate's rules.
        header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        builder.append(&header, data).unwrap();
    };
    add("manifest.json", manifest.to_string().as_bytes());
    add("SHA256SUMS", sums.as_bytes());
    for (name, file) in members {
        add(name, &std::fs::read(file).unwrap());
    }
    builder.into_inner().unwrap();
}

/// Item 3: a bundle is exactly what its manifest lists, each member once, each archive the image the
/// manifest recorded; names from it are printed with control characters escaped.
#[test]
fn a_bundle_is_exactly_what_it_lists() {
    if !common::e2e() {
        return;
    }
    let [registry, nginx] = common::image_archives();
    let (registry, nginx) = (registry.as_path(), nginx.as_path());
    let tmp = tempfile::tempdir().unwrap();
    let listed = [
        ("registry", "registry.oci.tar", registry),
        ("nginx", "nginx.oci.tar", nginx),
    ];
    let refused = |name: &str, members: &[(&str, &std::path::Path)], says: &str| {
        let bundle = tmp.path().join(name);
        crafted_bundle(&bundle, &listed, members);
        let config = tmp.path().join(format!("{name}-config"));
        let out = Run::bin()
            .args(["up", "--domain", "r.example", "--port", "28999", "--bundle"])
            .arg(&bundle)
            .config_dir(&config)
            .code(2)
            .stderr_has("is damaged")
            .stderr_has(says)
            .run();
        assert!(
            !text(&out.stderr).contains('\u{1b}'),
            "a raw escape reached the terminal"
        );
        assert!(!config.exists(), "nothing is written");
    };
    // A second registry.oci.tar (the nginx image) after the checked one.
    refused(
        "twice.tar",
        &[
            ("registry.oci.tar", registry),
            ("nginx.oci.tar", nginx),
            ("registry.oci.tar", nginx),
        ],
        "holds registry.oci.tar twice",
    );
    // The nginx image shipped as the registry, with checksums recomputed to match.
    refused(
        "swapped.tar",
        &[("registry.oci.tar", nginx), ("nginx.oci.tar", nginx)],
        "not localhost/registry-up-test/registry:latest",
    );
    // An archive with a second index.json (which Podman would read) that names one more image.
    let double = tmp.path().join("double-index.oci.tar");
    {
        let mut out = tar::Builder::new(std::fs::File::create(&double).unwrap());
        let mut original = tar::Archive::new(std::fs::File::open(registry).unwrap());
        for entry in original.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            out.append(&header, &mut entry).unwrap();
        }
        let extra = br#"{"schemaVersion":2,"manifests":[]}"#;
        let mut header = tar::Header::new_gnu();
        header.set_size(extra.len() as u64);
        header.set_mode(0o644);
        header.set_path("index.json").unwrap();
        header.set_cksum();
        out.append(&header, &extra[..]).unwrap();
        out.into_inner().unwrap();
    }
    refused(
        "double.tar",
        &[("registry.oci.tar", &double), ("nginx.oci.tar", nginx)],
        "holds index.json twice",
    );
    // A member the manifest does not list, named with a terminal escape sequence.
    refused(
        "extra.tar",
        &[
            ("registry.oci.tar", registry),
            ("nginx.oci.tar", nginx),
            ("x\u{1b}[2J.oci.tar", nginx),
        ],
        "x\\u{1b}[2J.oci.tar",
    ); // A binary the manifest does not list: a member is a tool only when the manifest says so.
    refused(
        "tool.tar",
        &[
            ("registry.oci.tar", registry),
            ("nginx.oci.tar", nginx),
            ("registry-up", nginx),
        ],
        "holds registry-up, which manifest.json does not list",
    );
    // A bundle of a newer format, with a member this version has never heard of: named as newer (its
    // manifest comes first), not called damaged.
    let future = tmp.path().join("future.tar");
    {
        let mut builder = tar::Builder::new(std::fs::File::create(&future).unwrap());
        for (name, data) in [
            (
                "manifest.json",
                &br#"{"format":4,"created_by":"registry-up 9.0.0","layout":{}}"#[..],
            ),
            ("future.bin", b"x"),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, data).unwrap();
        }
        builder.into_inner().unwrap();
    }
    Run::bin()
        .args(["up", "--domain", "r.example", "--port", "28999", "--bundle"])
        .arg(&future)
        .config_dir(tmp.path().join("future-config"))
        .code(2)
        .stderr_has("was made by a newer registry-up (registry-up 9.0.0, bundle format 4)")
        .stderr_has("registry-up)")
        .run();
    assert!(!tmp.path().join("future-config").exists(), "nothing is written");
}

/// Item 9: a certificate of one's own from a private CA, without --ca-bundle, is refused before anything
/// is written (clients would refuse it too); with the bundle it is taken.
#[test]
fn an_own_certificate_must_chain_to_a_trusted_ca_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = common::certs::ca("Private Lab CA", None);
    let (cert, key) = common::certs::leaf(&["r.example"], &ca, common::certs::now_valid(), true);
    let write = |name: &str, text: &str| {
        let path = tmp.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (cert, key, bundle) = (
        write("server.crt", &cert),
        write("server.key", &key),
        write("ca.pem", &ca.pem),
    );
    let out = tmp.path().join("out");
    render(&out, &["--cert", &cert, "--key", &key])
        .code(2)
        .stderr_has("does not chain to a CA this system trusts")
        .stderr_has("--ca-bundle")
        .run();
    assert!(!out.exists(), "nothing is written");
    render(&out, &["--cert", &cert, "--key", &key, "--ca-bundle", &bundle]).run();
    assert!(out.join("ca.crt").is_file(), "the bundle is what clients trust");
}

/// The public key of a certificate or a private key, as openssl prints it: equal when they belong together.
fn public_key(path: &std::path::Path, of_cert: bool) -> String {
    let out = if of_cert {
        Command::new("openssl")
            .args(["x509", "-noout", "-pubkey", "-in"])
            .arg(path)
            .output()
    } else {
        Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(path)
            .output()
    }
    .unwrap();
    assert!(
        out.status.success(),
        "openssl on {}: {}",
        path.display(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Item 7: a run stopped while it first writes the CA leaves nothing a re-run refuses: such a CA was never
/// used by a finished install, so it is replaced. Once an install finished, a damaged CA is an error.
#[test]
fn a_run_killed_while_it_first_writes_the_ca_converges() {
    let tmp = tempfile::tempdir().unwrap();
    // Real kills at moments spread over a whole first run (render writes what up writes, without Podman).
    for i in 0..30u64 {
        let out = tmp.path().join(format!("killed-{i}"));
        let mut child = render(&out, &[])
            .command()
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(i * 3));
        let _ = child.kill();
        let _ = child.wait();
        render(&out, &[]).run();
        assert_eq!(
            public_key(&out.join("ca.crt"), true),
            public_key(&out.join("ca/ca.key"), false),
            "kill {i}: ca.crt and ca.key belong together"
        );
    }
    // The states a kill between the CA's two files can leave, made on purpose.
    for keep in ["ca.crt", "ca/ca.key"] {
        let out = tmp.path().join(format!("half-{}", keep.replace('/', "-")));
        render(&out, &[]).run();
        let old = std::fs::read_to_string(out.join("ca.crt")).unwrap();
        std::fs::remove_file(out.join("state.json")).unwrap();
        let gone = if keep == "ca.crt" { "ca/ca.key" } else { "ca.crt" };
        std::fs::remove_file(out.join(gone)).unwrap();
        render(&out, &[]).run();
        assert_ne!(std::fs::read_to_string(out.join("ca.crt")).unwrap(), old, "a new CA");
        assert_eq!(
            public_key(&out.join("ca.crt"), true),
            public_key(&out.join("ca/ca.key"), false)
        );
    }
    // After a finished install, a missing key is the operator's to restore: clients trust that CA.
    let out = tmp.path().join("installed");
    render(&out, &[]).run();
    std::fs::remove_file(out.join("ca/ca.key")).unwrap();
    render(&out, &[]).code(2).stderr_has("ca.key is missing").run();
}

/// Item 6: two `up` runs at once on one config folder, twenty times over: both succeed (the second waits
/// for the first), one CA is made, and the files on disk belong together after every pair.
#[test]
fn concurrent_runs_on_one_appliance_take_turns() {
    // Loaded once, by a first run; the pairs then use the images in the store (loading is not the race).
    let Some(app) = serving(&["--no-verify"]) else { return };
    common::remove_pod(&app.pod);
    let config = app.config_dir();
    std::fs::remove_dir_all(&config).unwrap();
    let mut args = app.base_args();
    args.extend(
        [
            "--registry-image",
            common::REGISTRY_IMAGE,
            "--nginx-image",
            common::NGINX_IMAGE,
            "--no-verify",
        ]
        .map(String::from),
    );
    for pair in 0..20 {
        let runs: Vec<_> = (0..2)
            .map(|_| {
                Run::bin()
                    .args(&args)
                    .command()
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outs: Vec<_> = runs.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
        for out in &outs {
            common::assert_exit(out, 0, &format!("pair {pair}: up"));
        }
        let created = outs.iter().filter(|o| text(&o.stdout).contains("CA created")).count();
        assert_eq!(
            created,
            1,
            "pair {pair}: one CA is made\n{}",
            outs.iter().map(common::shown).collect::<String>()
        );
        assert_eq!(
            public_key(&config.join("ca.crt"), true),
            public_key(&config.join("ca/ca.key"), false),
            "pair {pair}: ca.crt and ca.key belong together"
        );
        let verified = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(config.join("ca.crt"))
            .arg(config.join("tls/server.crt"))
            .output()
            .unwrap();
        assert!(verified.status.success(), "pair {pair}: {}", text(&verified.stdout));
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(config.join("state.json")).unwrap()).unwrap();
        assert_eq!(state["pod_name"], app.pod.as_str());
        // The next pair starts from nothing again: the first-run race is where a second CA was made.
        common::remove_pod(&app.pod);
        std::fs::remove_dir_all(&config).unwrap();
    }
}

/// Item 8: a pod whose mounts point at a config folder that was replaced (moved away, copied back) is
/// not "healthy and unchanged": it is replaced, and then mounts the folder at the configured path.
#[test]
fn a_pod_reading_a_replaced_config_folder_is_replaced() {
    let Some(app) = serving(&["--no-verify"]) else { return };
    let config = app.config_dir();
    let old = app.tmp.path().join("config.old");
    std::fs::rename(&config, &old).unwrap();
    let copied = Command::new("cp").arg("-a").arg(&old).arg(&config).status().unwrap();
    assert!(copied.success());
    let out = Run::up(&app).arg("--no-verify").run();
    let said = text(&out.stdout);
    assert!(
        !said.contains("left running"),
        "a pod reading a moved folder was left alone:\n{said}"
    );
    assert!(said.contains("replaced with podman play kube"), "{said}");
    use std::os::unix::fs::MetadataExt;
    let pid = app.inspect(&app.container("nginx"), "{{.State.Pid}}");
    let inside = std::fs::metadata(format!("/proc/{pid}/root/etc/nginx/tls")).unwrap();
    let host = std::fs::metadata(config.join("tls")).unwrap();
    assert_eq!(
        (inside.dev(), inside.ino()),
        (host.dev(), host.ino()),
        "nginx reads the folder at the path"
    );
    // And a pod that already reads the right folders is still left alone.
    let out = Run::up(&app).arg("--no-verify").stdout_has("left running").run();
    drop(out);
}

/// Files and bytes below `dir` (the registry's storage).
fn usage(dir: &std::path::Path) -> (usize, u64) {
    let files = common::mtimes(dir);
    let bytes = files
        .iter()
        .map(|(p, _)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    (files.len(), bytes)
}

/// Returns once nothing below `dir` has changed for two seconds (the registry stopped writing there).
fn wait_quiet(dir: &std::path::Path) {
    let start = std::time::Instant::now();
    let mut last = (common::mtimes(dir), usage(dir));
    let mut since = std::time::Instant::now();
    while since.elapsed() < std::time::Duration::from_secs(2) {
        assert!(
            start.elapsed().as_secs() < 60,
            "the registry still writes below {}",
            dir.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = (common::mtimes(dir), usage(dir));
        if now != last {
            last = now;
            since = std::time::Instant::now();
        }
    }
}

/// Free bytes where `dir` is (df).
fn free(dir: &std::path::Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    text(&out.stdout).lines().nth(1).unwrap().trim().parse().unwrap()
}

/// Starts `verify --size SIZE` on `app` and returns once its upload shows in the storage.
fn verify_uploading(app: &Appliance, size: &str, uploads: &std::path::Path) -> std::process::Child {
    let child = Run::bin()
        .args(["verify", "--size", size, "--timeout", "120"])
        .config_dir(app.config_dir())
        .command()
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while usage(uploads).1 == 0 {
        assert!(start.elapsed().as_secs() < 30, "no upload of {size} appeared");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child
}

/// Items 1, 4 and 11 (status): a verify that would fill the disk is refused before it pushes; verifies
/// leave no data behind and say what they removed; a verify whose push fails removes its upload at once,
/// and a killed one's is removed by a later verify; `status` calls a nearly full disk a problem.
#[test]
fn verification_never_fills_the_disk_nor_leaves_data_behind() {
    const MIB: u64 = 1 << 20;
    let Some(app) = Appliance::e2e() else { return };
    let disk = common::SmallDisk::mount(app, 1200);
    let app = &disk.app;
    app.up(&["--no-verify"]);
    let data = app.data_dir();
    let uploads = data.join("docker/registry/v2/repositories/registry-up/verify/_uploads");
    let pushed = app.push(&common::image_archives()[1], "small/nginx:1", None);
    let before = usage(&data);

    // Item 1: a size that would leave 40 MiB (less than the floor: 5 % of 1200 MiB, 60 MiB) is refused, and
    // nothing is uploaded.
    let too_big = format!("{}MiB", free(&data) / MIB - 40);
    let (code, report) = common::verify_json(app, &["--size", &too_big]);
    assert_eq!(code, 1, "{report:#}");
    common::assert_check(&report, "round-trip", "fail", &["not run", "--size"]);
    common::assert_check(&report, "storage", "fail", &["is full or nearly so"]);
    assert_eq!(usage(&data), before, "nothing was written by a refused verify");

    // Item 4: verifies leave nothing, and the clean-up says what it removed.
    for _ in 0..3 {
        let (code, report) = common::verify_json(app, &[]);
        assert_eq!(code, 0, "{report:#}");
        common::assert_check(&report, "cleanup", "pass", &["removed their data"]);
    }
    assert_eq!(
        usage(&data).1,
        before.1,
        "bytes in the registry's storage after three verifies"
    );

    // A push that fails (the disk filled up under it) takes its partial upload with it.
    let child = verify_uploading(app, "800MiB", &uploads);
    let filler = data.join("filler");
    {
        // Zeros until the disk is full (the upload keeps writing meanwhile, so no size is known ahead).
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; MIB as usize];
        while f.write_all(&chunk).is_ok() {}
    }
    let out = child.wait_with_output().unwrap();
    common::assert_exit(&out, 1, "a verify whose disk filled up");
    assert_eq!(usage(&uploads), (0, 0), "the failed push's upload is gone");
    std::fs::remove_file(&filler).unwrap();

    // A verify killed mid-push leaves its upload; once abandoned (an hour old), the next verify removes it.
    let mut child = verify_uploading(app, "300MiB", &uploads);
    child.kill().unwrap();
    child.wait().unwrap();
    // The registry finishes the cut-off request on its own time (its last write, the hash state, can land
    // after the client is gone): the upload is abandoned once nothing in it changes any more.
    wait_quiet(&uploads);
    assert!(usage(&uploads).1 > 0, "the killed verify left a partial upload");
    let aged = Command::new("find")
        .arg(&uploads)
        .args(["-exec", "touch", "-h", "-d", "2 hours ago", "{}", "+"])
        .status()
        .unwrap();
    assert!(aged.success());
    let (code, report) = common::verify_json(app, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(usage(&uploads), (0, 0), "the abandoned upload is gone");
    assert_eq!(
        app.digest("small/nginx:1", None),
        pushed,
        "what users stored is untouched"
    );
    assert_eq!(usage(&data).1, before.1, "and nothing else is left");

    // Item 11: a disk with less than the floor left (30 MiB of 60) is a problem for status, not "healthy".
    let filled = Command::new("fallocate")
        .args(["-l", &(free(&data) - 30 * MIB).to_string()])
        .arg(&filler)
        .status()
        .unwrap();
    assert!(filled.success());
    let out = Run::bin().args(["status"]).config_dir(app.config_dir()).code(1).run();
    assert!(
        text(&out.stdout).contains("free where the registry writes"),
        "{}",
        common::shown(&out)
    );
    std::fs::remove_file(&filler).unwrap();
    Run::bin().args(["status"]).config_dir(app.config_dir()).run();
}

/// Item 11: a damaged state.json does not keep a pod running (down takes its name), and a config folder
/// opened up to 0755 is put back to 0700 by the next run.
#[test]
fn a_damaged_state_does_not_block_down_and_modes_are_put_back() {
    let Some(app) = serving(&["--no-verify"]) else { return };
    let config = app.config_dir();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    app.up(&["--no-verify"]);
    assert_eq!(common::mode(&config), 0o700, "the config folder is registry-up's own");

    std::fs::write(config.join("state.json"), "{ garbage").unwrap();
    Run::bin()
        .arg("down")
        .config_dir(&config)
        .code(2)
        .stderr_has("restore it from a backup")
        .stderr_has("--pod-name")
        .run();
    assert!(app.pod_exists(), "nothing was stopped without a name");
    Run::bin()
        .args(["down", "--pod-name", "Not A Pod"])
        .config_dir(&config)
        .code(2)
        .stderr_has("pod name")
        .run();
    // A pod registry-up did not make is not stopped by name.
    let foreign = format!("{}-foreign", app.pod);
    assert!(common::podman(&["pod", "create", "--name", &foreign]).status.success());
    Run::bin()
        .args(["down", "--pod-name", &foreign])
        .config_dir(&config)
        .code(2)
        .stderr_has("was not made by registry-up")
        .run();
    let still = common::podman(&["pod", "exists", &foreign]).status.success();
    common::remove_pod(&foreign);
    assert!(still, "a foreign pod was removed");
    Run::bin()
        .args(["down", "--pod-name", &app.pod])
        .config_dir(&config)
        .stdout_has("Stopped and removed the pod")
        .run();
    assert!(!app.pod_exists());
    assert!(config.join("tls/server.key").is_file(), "files and data are untouched");
}

/// `app`'s `up` arguments with the value of `flag` replaced by `value`.
fn args_with(app: &Appliance, flag: &str, value: &std::path::Path) -> Vec<String> {
    let mut args = app.args();
    let at = args.iter().position(|a| a == flag).expect("the flag is there");
    args[at + 1] = value.display().to_string();
    args
}

/// Issue 30 §1: registry-up takes over no folder and no pod it did not make, one data folder serves one
/// appliance, and `down --purge` removes only what registry-up wrote (an admin's files stay, named).
#[test]
fn registry_up_takes_and_purges_only_what_it_made() {
    use std::os::unix::fs::PermissionsExt;
    let Some(a) = Appliance::e2e() else { return };
    let (config, data) = (a.config_dir(), a.data_dir());
    // A config folder holding an admin's files: refused, nothing taken over or written.
    std::fs::create_dir_all(config.join("nginx")).unwrap();
    std::fs::write(config.join("nginx/site.conf"), "server {}\n").unwrap();
    std::fs::set_permissions(config.join("nginx"), std::fs::Permissions::from_mode(0o755)).unwrap();
    Run::up(&a)
        .code(2)
        .stderr_has("holds files registry-up did not write")
        .stderr_has("nginx/site.conf")
        .run();
    assert_eq!(common::mode(&config.join("nginx")), 0o755, "the folder was taken over");
    assert!(!config.join("ca").exists() && !data.exists() && !a.pod_exists());
    std::fs::remove_dir_all(&config).unwrap();
    // A data folder holding what is not a registry's storage (Docker's data root, say): refused too.
    std::fs::create_dir_all(data.join("docker/volumes/db")).unwrap();
    std::fs::write(data.join("docker/volumes/db/pg"), "rows").unwrap();
    Run::up(&a)
        .code(2)
        .stderr_has("is not a registry's storage")
        .stderr_has("docker/volumes")
        .run();
    assert!(!config.exists() && !a.pod_exists());
    std::fs::remove_dir_all(data.join("docker")).unwrap();

    a.up(&["--no-verify"]);
    let [_, nginx] = common::image_archives();
    a.push(nginx, "mine/nginx:1", None);
    let digest = a.raw_digest("mine/nginx:1");

    // A second appliance: not on the first one's data folder, not under the first one's pod name.
    let b = Appliance::new();
    Run::bin()
        .args(args_with(&b, "--data-dir", &data))
        .code(2)
        .stderr_has("belongs to the appliance in")
        .run();
    // The first one as an earlier release left it (no claim in its folder): its running pod mounts the
    // folder, and that is enough to refuse it.
    let claim = data.join(".registry-up-appliance");
    let claimed = std::fs::read(&claim).unwrap();
    std::fs::remove_file(&claim).unwrap();
    Run::bin()
        .args(args_with(&b, "--data-dir", &data))
        .code(2)
        .stderr_has(format!("is the data folder of the running pod {}", a.pod))
        .run();
    std::fs::write(&claim, claimed).unwrap();
    Run::bin()
        .args(args_with(&b, "--pod-name", std::path::Path::new(&a.pod)))
        .code(2)
        .stderr_has("belongs to another appliance")
        .run();
    assert!(!b.config_dir().join("state.json").exists());
    Run::bin().arg("status").config_dir(&config).stdout_has("healthy").run();

    // An appliance whose state names the first one's folder anyway (an earlier release accepted that):
    // its gc is refused, its purge leaves the first one's images.
    b.up(&["--no-verify"]);
    let state_path = b.config_dir().join("state.json");
    let mut state: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    state["data_dir"] = data.display().to_string().into();
    std::fs::write(&state_path, state.to_string()).unwrap();
    Run::bin()
        .arg("gc")
        .config_dir(b.config_dir())
        .code(2)
        .stderr_has("is claimed by the appliance in")
        .run();
    Run::bin()
        .args(["down", "--purge", "--yes"])
        .config_dir(b.config_dir())
        .stderr_has("the images stay")
        .run();
    assert_eq!(
        a.raw_digest("mine/nginx:1"),
        digest,
        "the first appliance's image is served"
    );

    // Purge of the first: what registry-up wrote goes, what an admin put in its folders stays, named.
    std::fs::write(config.join("nginx/site.conf"), "server {}\n").unwrap();
    std::fs::create_dir_all(data.join("docker/volumes/db")).unwrap();
    std::fs::write(data.join("docker/volumes/db/pg"), "rows").unwrap();
    Run::bin()
        .args(["down", "--purge", "--yes"])
        .config_dir(&config)
        .stdout_has("nginx/site.conf")
        .stdout_has("docker/volumes")
        .run();
    assert!(config.join("nginx/site.conf").exists() && data.join("docker/volumes/db/pg").exists());
    for gone in ["state.json", "ca", "tls", "registry", "ca.crt", "nginx/registry.conf"] {
        assert!(!config.join(gone).exists(), "{gone} was left");
    }
    assert!(!data.join("docker/registry").exists() && !data.join(".registry-up-appliance").exists());
}

/// Issue 30 §2–3: a FIFO or an endless device where a file is expected is refused before a byte is read
/// (a release before hung on the FIFO, or grew without bound on /dev/zero), and so is an endless
/// password on stdin. No appliance is needed: each is refused before anything is written. `timeout`
/// turns a hang into a failure (exit 124) instead of a stuck suite.
#[test]
fn special_and_endless_files_are_refused_before_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let config = tmp.path().join("config");
    for source in [fifo.as_path(), std::path::Path::new("/dev/zero")] {
        let source = source.display().to_string();
        Run::bin()
            .under(["timeout", "60"])
            .args([
                "up",
                "--domain",
                "endless.registry-up.test",
                "--dry-run",
                "--site",
                &source,
            ])
            .config_dir(&config)
            .code(2)
            .stderr_has("not a regular file")
            .run();
        Run::bin()
            .under(["timeout", "60"])
            .args([
                "up",
                "--domain",
                "endless.registry-up.test",
                "--dry-run",
                "--storage",
                "s3",
            ])
            .args([
                "--s3-endpoint",
                "http://127.0.0.1:9",
                "--s3-bucket",
                "endless",
                "--s3-credentials",
                &source,
            ])
            .config_dir(&config)
            .code(2)
            .stderr_has("not a regular file")
            .run();
    }
    // A site file (it holds the registry's secret and password) that other users can read: read with a
    // warning that says so (and here refused for what it holds).
    let open_site = tmp.path().join("site.json");
    std::fs::write(&open_site, "{}").unwrap();
    std::fs::set_permissions(&open_site, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    Run::bin()
        .args(["up", "--domain", "endless.registry-up.test", "--dry-run", "--site"])
        .arg(&open_site)
        .config_dir(&config)
        .code(2)
        .stderr_has("other users can read it (mode 644): chmod 600 it")
        .run();
    // A FIFO given as a bundle, a backup to restore, or an archive to import: refused, not waited on.
    let fifo_arg = fifo.display().to_string();
    for args in [
        vec![
            "up",
            "--domain",
            "endless.registry-up.test",
            "--dry-run",
            "--bundle",
            &fifo_arg,
        ],
        vec!["restore", &fifo_arg],
    ] {
        Run::bin()
            .under(["timeout", "60"])
            .args(args)
            .config_dir(&config)
            .code(2)
            .stderr_has("not a regular file")
            .run();
    }
    let out = Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_registry-up"))
        .args([
            "up",
            "--domain",
            "endless.registry-up.test",
            "--dry-run",
            "--auth",
            "--auth-password-stdin",
        ])
        .arg("--config-dir")
        .arg(&config)
        .stdin(std::fs::File::open("/dev/zero").unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("without a line end"),
        "{}",
        text(&out.stderr)
    );
    assert!(!config.exists(), "nothing is written");
}

/// Issue 30 §3: `--timeout` bounds the whole run, the TLS handshake included. The peer here answers the
/// ClientHello with the header of a 16 KiB handshake record and then drips one byte a second: each read
/// succeeds within any per-read timeout, so only a deadline for the whole run ends it. `timeout 60`
/// turns a hang into a failure (exit 124) rather than a stuck suite.
#[test]
fn a_peer_that_drips_its_handshake_cannot_hold_verify_past_its_timeout() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut tcp = stream;
                let _ = tcp.read(&mut [0u8; 4096]);
                if tcp.write_all(&[0x16, 0x03, 0x03, 0x40, 0x00]).is_err() {
                    return;
                }
                while tcp.write_all(&[0x02]).is_ok() {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            });
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let out = Run::bin()
        .under(["timeout", "60"])
        .args(["verify", "--domain", "127.0.0.1", "--port", &port.to_string()])
        .args(["--timeout", "5", "--json"])
        .config_dir(tmp.path())
        .code(1)
        .run();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    let tls = common::check(&report, "tls");
    assert_eq!(tls["status"], "fail", "{report:#}");
    assert!(
        tls["detail"]
            .as_str()
            .unwrap()
            .contains("did not finish within the --timeout of 5 s"),
        "{report:#}"
    );
}

/// Issue 30 §6: one floor for free space, scaled to the filesystem (5 %, 8 to 256 MiB), that up, verify,
/// status and maintain share: on a 200 MiB data filesystem at 1 % used, up verifies, verify passes, status
/// is healthy and maintain exits 0 (a fixed 256 MiB failed or warned in all four there).
#[test]
fn a_small_data_filesystem_has_a_floor_of_its_size() {
    let Some(app) = Appliance::e2e() else { return };
    let disk = common::SmallDisk::mount(app, 200);
    let app = &disk.app;
    Run::up(app).stdout_has("ok   verify").run();
    let (code, report) = common::verify_json(app, &[]);
    assert_eq!(code, 0, "{report:#}");
    common::assert_check(&report, "storage", "pass", &[]);
    Run::bin()
        .arg("status")
        .config_dir(app.config_dir())
        .stdout_has("healthy")
        .run();
    Run::bin().arg("maintain").config_dir(app.config_dir()).run();
}

/// Issue 30 §5: deep means the bytes. A layer overwritten on disk (same size) answers every HEAD; on the
/// appliance host `verify --deep` hashes each blob's bytes (each once, however many images share it) and
/// names every image that holds the damaged one.
#[test]
fn deep_hashes_every_blob_s_bytes_on_the_appliance_host() {
    let Some(app) = serving(&["--no-verify"]) else { return };
    let [_, nginx] = common::image_archives();
    app.push(nginx, "bytes/nginx:1", None);
    app.push(nginx, "bytes/again:1", None);
    let (code, report) = common::verify_json(&app, &["--deep"]);
    assert_eq!(code, 0, "{report:#}");
    common::assert_check(&report, "deep", "pass", &["the bytes of every blob"]);

    // The largest blob (a layer both tags share), one byte changed in place.
    let blobs = app.data_dir().join("docker/registry/v2/blobs");
    let mut files: Vec<(u64, std::path::PathBuf)> = Vec::new();
    let mut stack = vec![blobs];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                files.push((meta.len(), entry.path()));
            }
        }
    }
    files.sort();
    let (_, layer) = files.last().unwrap().clone();
    let mut bytes = std::fs::read(&layer).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();
    let digest = format!(
        "sha256:{}",
        layer.parent().unwrap().file_name().unwrap().to_string_lossy()
    );

    let (code, report) = common::verify_json(&app, &["--deep"]);
    assert_eq!(code, 1, "{report:#}");
    common::assert_check(&report, "deep", "fail", &["missing or corrupt"]);
    let problems = report["deep"]["problems"].as_array().unwrap();
    for tag in ["bytes/nginx:1", "bytes/again:1"] {
        let (repo, tag) = tag.split_once(':').unwrap();
        assert!(
            problems.iter().any(|p| p["repository"] == repo
                && p["tag"] == tag
                && p["digest"] == digest.as_str()
                && p["problem"].as_str().unwrap().contains("its bytes on disk hash to")),
            "{repo}:{tag} is not named: {report:#}"
        );
    }
}

/// The host uid and gid of a process (`Uid:`/`Gid:` of /proc/PID/status, the effective ones).
fn ids_of(pid: &str) -> (u32, u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let id = |key: &str| -> u32 {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    (id("Uid:"), id("Gid:"))
}

/// Whether `getent DATABASE ID` knows the id (files, and whatever else NSS asks here).
fn known(database: &str, id: u32) -> bool {
    Command::new("getent")
        .args([database, &id.to_string()])
        .output()
        .unwrap()
        .status
        .success()
}

/// Whether a subordinate range of /etc/subuid or /etc/subgid holds `id`.
fn subordinate(id: u32) -> bool {
    ["/etc/subuid", "/etc/subgid"].iter().any(|file| {
        std::fs::read_to_string(file).unwrap_or_default().lines().any(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let (Some(start), Some(count)) = (
                f.get(1).and_then(|s| s.parse::<u64>().ok()),
                f.get(2).and_then(|s| s.parse::<u64>().ok()),
            ) else {
                return false;
            };
            (start..start + count).contains(&u64::from(id))
        })
    })
}

/// `curl` over the registry's socket at `socket` as host uid and gid `id`: the HTTP status, "000" when
/// nothing could connect.
fn as_uid_over(id: u32, socket: &str, namespace_setup: &str) -> String {
    let script = format!(
        "{namespace_setup} setpriv --reuid={id} --regid={id} --clear-groups --inh-caps=-all \
         curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 --unix-socket {socket} http://registry/v2/ || true"
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .unwrap();
    text(&out.stdout).trim().to_string()
}

/// Issue 30 §4: the pod shares the host's user namespace, so nginx's workers ran as host uid 101, and a
/// host account with that uid reached the registry's socket past nginx through /proc/WORKER/root and read
/// /proc/WORKER/mem. Now no process of the pod runs as an id a host account, group or subordinate range
/// has (root's aside), and only the workers' id can connect to the socket.
#[test]
fn no_host_account_is_the_user_of_a_pod_process_and_the_socket_is_nginx_s() {
    let Some(app) = serving(&["--no-verify"]) else { return };
    let top = |container: &str| -> Vec<String> {
        let out = common::podman(&["top", &app.container(container), "hpid"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .skip(1)
            .map(|l| l.trim().to_string())
            .collect()
    };
    let (registry, nginx) = (top("registry"), top("nginx"));
    let mut workers = Vec::new();
    for pid in registry.iter().chain(&nginx) {
        let (uid, gid) = ids_of(pid);
        if uid != 0 {
            assert!(
                !known("passwd", uid),
                "pid {pid} runs as uid {uid}, which a host account has"
            );
            assert!(
                !subordinate(uid),
                "pid {pid} runs as uid {uid}, in a host user's subordinate range"
            );
            workers.push((pid.clone(), uid));
        }
        if gid != 0 {
            assert!(
                !known("group", gid),
                "pid {pid} runs as gid {gid}, which a host group has"
            );
            assert!(!subordinate(gid), "pid {pid} runs as gid {gid}, in a subordinate range");
        }
    }
    let (worker, worker_id) = workers.first().cloned().expect("nginx's workers do not run as root");
    assert!(nginx.contains(&worker), "only nginx's workers leave root");

    // Uid 101 (the image's nginx, and a host account on many hosts) reaches nothing of the worker now.
    let root = format!("/proc/{worker}/root");
    let socket_in_worker = format!("{root}/run/registry-up/registry.sock");
    assert_eq!(as_uid_over(101, &socket_in_worker, ""), "000");
    let mem = Command::new("setpriv")
        .args(["--reuid=101", "--regid=101", "--clear-groups", "head", "-c", "1"])
        .arg(format!("/proc/{worker}/mem"))
        .output()
        .unwrap();
    assert!(!mem.status.success(), "uid 101 opened the worker's memory");
    // The workers' own id connects (what nginx does); any other uid given a path to the socket does not:
    // the socket is root:WORKERS 0770.
    assert_eq!(as_uid_over(worker_id, &socket_in_worker, ""), "200");
    // A path open to every uid (a tmpfs on /mnt, the socket's folder bound below it), in a mount namespace of
    // the test's own that ends with each curl: nothing is left mounted.
    let volume = common::podman(&[
        "volume",
        "inspect",
        "--format",
        "{{.Mountpoint}}",
        &format!("{}-socket", app.pod),
    ]);
    let volume = text(&volume.stdout).trim().to_string();
    assert!(volume.starts_with('/'), "the pod's socket volume: {volume:?}");
    let bind =
        format!("mount -t tmpfs -o mode=0755 none /mnt && mkdir -m 0755 /mnt/s && mount --bind {volume} /mnt/s &&");
    let socket = "/mnt/s/registry.sock";
    assert_eq!(
        as_uid_over(worker_id, socket, &bind),
        "200",
        "the bind mount reaches the socket"
    );
    for other in [101, 1000, worker_id + 1] {
        assert_eq!(
            as_uid_over(other, socket, &bind),
            "000",
            "uid {other} connected to the socket"
        );
    }
    // Pushes and pulls still go through nginx to the registry.
    app.push(&common::image_archives()[1], "workers/nginx:1", None);
    common::skopeo_ok(&[
        "inspect",
        "--cert-dir",
        &app.config_dir().display().to_string(),
        &format!("docker://{}/workers/nginx:1", app.registry()),
    ]);
}
