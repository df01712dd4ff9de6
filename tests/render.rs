//! `registry-up render`: the real binary writes every file, and the real tools accept them: nginx -t
//! with the real certificates, systemd-analyze verify, openssl verify. No Podman and no root needed.

mod common;

use std::path::Path;
use std::process::Command;

use common::{text, Run};

fn render(out: &Path, extra: &[&str]) {
    Run::bin()
        .args([
            "render",
            "--domain",
            "registry.example.com",
            "--san",
            "10.20.30.40",
            "--port",
            "8443",
        ])
        .arg("--out")
        .arg(out)
        .args(extra)
        .run();
}

#[test]
fn nginx_accepts_the_rendered_conf_with_real_certificates() {
    nginx_accepts(&[]);
}

/// An appliance on S3 storage: its conf also asks the registry, before each write, whether gc holds the
/// site (auth_request and named locations; nginx -t checks the module is there and the syntax holds).
#[test]
fn nginx_accepts_the_conf_of_a_replica_on_s3_storage() {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("key");
    std::fs::write(
        &key,
        "[default]\naws_access_key_id = GK0123456789abcdef\naws_secret_access_key = 0123456789abcdef\n",
    )
    .unwrap();
    let conf = nginx_accepts(&[
        "--storage",
        "s3",
        "--s3-endpoint",
        "http://127.0.0.1:3900",
        "--s3-bucket",
        "registry",
        "--s3-credentials",
        &key.display().to_string(),
    ]);
    assert!(conf.contains("auth_request /_registry_up/gc-hold;"), "{conf}");
}

/// Renders with `extra`, checks nginx accepts the conf (and rejects it with a broken certificate); the conf.
fn nginx_accepts(extra: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    render(&out, extra);
    // The conf is written for the container's paths: point it at the rendered TLS files instead.
    let conf = std::fs::read_to_string(out.join("nginx/registry.conf"))
        .unwrap()
        .replace("/etc/nginx/tls/", &format!("{}/", out.join("tls").display()));
    let conf_path = tmp.path().join("registry.conf");
    std::fs::write(&conf_path, conf).unwrap();
    // A main nginx.conf like the official image's: conf.d included inside http {}, with its logs and
    // temp folders in the test's folder (nginx's defaults below /var are not writable for an ordinary user,
    // and `nginx -t` creates the temp folders when they are missing).
    let temps: String = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .iter()
        .map(|t| format!("  {t}_temp_path {}/{t};\n", tmp.path().display()))
        .collect();
    let main = format!(
        "pid {dir}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n  access_log {dir}/access.log;\n{temps}  \
         include {conf};\n}}\n",
        dir = tmp.path().display(),
        conf = conf_path.display()
    );
    let main_path = tmp.path().join("nginx.conf");
    std::fs::write(&main_path, main).unwrap();
    let nginx_t = || {
        Command::new("nginx")
            .arg("-t")
            .arg("-c")
            .arg(&main_path)
            .arg("-p")
            .arg(tmp.path())
            .output()
            .expect("nginx is installed")
    };
    let result = nginx_t();
    let stderr = text(&result.stderr);
    assert!(result.status.success(), "nginx -t failed:\n{stderr}");
    assert!(stderr.contains("test is successful"), "{stderr}");
    assert!(!stderr.contains("[warn]"), "nginx warns:\n{stderr}");

    // A broken certificate is caught by the same check, so the check can fail.
    std::fs::write(out.join("tls/server.crt"), "not a certificate").unwrap();
    assert!(!nginx_t().status.success(), "nginx -t must reject a broken certificate");
    std::fs::read_to_string(&conf_path).unwrap()
}

#[test]
fn systemd_analyze_accepts_the_rendered_unit() {
    let tmp = tempfile::tempdir().unwrap();
    render(tmp.path(), &["--pod-name", "registry-pod"]);
    let unit = tmp.path().join("registry-pod.service");
    let analyze = |unit: &Path| {
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(unit)
            .output()
            .expect("systemd-analyze is installed")
    };
    let result = analyze(&unit);
    assert!(result.status.success(), "{}", text(&result.stderr));
    assert_eq!(
        text(&result.stderr).trim(),
        "",
        "systemd-analyze verify printed warnings"
    );

    // An unknown key is reported on stderr by the same check, so the check can fail.
    let broken = tmp.path().join("broken-pod.service");
    let text_unit = std::fs::read_to_string(&unit)
        .unwrap()
        .replace("Restart=always", "Restart=always\nRestartTypo=1");
    std::fs::write(&broken, text_unit).unwrap();
    let result = analyze(&broken);
    assert!(text(&result.stderr).contains("RestartTypo"), "{}", text(&result.stderr));
}

#[test]
fn openssl_verifies_the_server_certificate_for_each_name() {
    let tmp = tempfile::tempdir().unwrap();
    render(tmp.path(), &[]);
    let ca = tmp.path().join("ca.crt");
    let cert = tmp.path().join("tls/server.crt");
    let verify = |flag: &str, value: &str| {
        Command::new("openssl")
            .args(["verify", "-purpose", "sslserver", flag, value, "-CAfile"])
            .arg(&ca)
            .arg(&cert)
            .output()
            .expect("openssl is installed")
    };
    for (flag, value) in [
        ("-verify_hostname", "registry.example.com"),
        ("-verify_ip", "10.20.30.40"),
    ] {
        let out = verify(flag, value);
        assert!(
            out.status.success(),
            "{flag} {value}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(text(&out.stdout).contains(": OK"));
    }
    let out = verify("-verify_hostname", "other.example.com");
    assert!(!out.status.success(), "a name not in the certificate must fail");

    // The text form shows what a reviewer would check.
    let dump = |pem: &Path| {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(pem)
            .output()
            .unwrap();
        text(&out.stdout)
    };
    let server = dump(&cert);
    assert!(
        server.contains("DNS:registry.example.com, IP Address:10.20.30.40"),
        "{server}"
    );
    assert!(server.contains("TLS Web Server Authentication"), "{server}");
    assert!(server.contains("CA:FALSE"), "{server}");
    let ca = dump(&ca);
    assert!(ca.contains("CA:TRUE, pathlen:0"), "{ca}");
    assert!(ca.contains("Certificate Sign, CRL Sign"), "{ca}");
}

#[test]
fn render_twice_keeps_the_certificates_and_writes_nothing_new() {
    let tmp = tempfile::tempdir().unwrap();
    render(tmp.path(), &[]);
    let before = common::mtimes(tmp.path());
    render(tmp.path(), &[]);
    assert_eq!(common::mtimes(tmp.path()), before);
}
