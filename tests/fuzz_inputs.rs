//! Property tests: no input to the domain/SAN/port parsing or to the state-file reader panics, and
//! what the rules call valid is accepted. Drives the real binary for the flags, so clap is included.
//! No root needed: as an ordinary user, whatever an input would make it touch outside the temp folder
//! is refused, which is an allowed answer.

mod common;

use common::Run;
use proptest::prelude::*;

fn render(args: &[&str]) -> std::process::Output {
    let tmp = tempfile::tempdir().unwrap();
    Run::bin()
        .arg("render")
        .arg("--out")
        .arg(tmp.path().join("out"))
        .args(args)
        .output()
}

/// Exit code 0 or 2 (invalid input), never a panic (101) or a signal.
fn no_panic(out: &std::process::Output) -> Result<(), TestCaseError> {
    let code = out.status.code();
    prop_assert!(
        matches!(code, Some(0) | Some(2)),
        "exit {:?}: {}",
        code,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn any_domain_san_and_port_text_is_handled(domain in "\\PC{0,80}", san in "\\PC{0,40}", port in "\\PC{0,8}") {
        prop_assume!(!domain.starts_with('-') && !san.starts_with('-') && !port.starts_with('-'));
        let out = render(&["--domain", &domain, "--san", &san, "--port", &port]);
        no_panic(&out)?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            prop_assert!(stderr.starts_with("error"), "{}", stderr);
        }
    }

    #[test]
    fn rfc1123_names_and_valid_ports_are_accepted(
        labels in proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", 1..5),
        tld in "[a-z]{2,10}",
        port in 1u16..,
    ) {
        let domain = format!("{}.{tld}", labels.join("."));
        let out = render(&["--domain", &domain, "--port", &port.to_string()]);
        prop_assert!(out.status.success(), "{} rejected: {}", domain, String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    fn any_state_file_is_read_without_panicking(text in "\\PC{0,300}", port in any::<i64>(), domain in "\\PC{0,30}") {
        for body in [
            text.clone(),
            format!(r#"{{"format":1,"domain":{},"sans":[],"port":{port},"registry_image":"r","nginx_image":"n","pod_name":"p","config_dir":"/c","data_dir":"/d","ca_cert":"/c/ca.crt","service":"direct"}}"#, serde_json::to_string(&domain).unwrap()),
        ] {
            let tmp = tempfile::tempdir().unwrap();
            std::fs::write(tmp.path().join("state.json"), &body).unwrap();
            for sub in [&["status"][..], &["verify", "--timeout", "1"][..], &["up", "--dry-run"][..]] {
                let out = Run::bin().args(sub).config_dir(tmp.path()).env("PATH", "/nonexistent").output();
                let code = out.status.code();
                // 1: checks failed, 2: refused, 3: failed while applying, 4: not installed; never a panic.
                prop_assert!(matches!(code, Some(1) | Some(2) | Some(3) | Some(4)), "{:?} exit {:?}: {}", sub, code, String::from_utf8_lossy(&out.stderr));
            }
        }
    }
}
