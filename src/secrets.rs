//! Secrets made once and kept: the registry's `http.secret`, and with --auth the user's password and its
//! htpasswd line. Re-runs read them back from disk; nothing here is ever regenerated silently (a
//! re-install that replaced the password left mirror-registry crash-looping).

use std::path::Path;

use crate::error::{Error, Result};
use crate::host::read_optional;
use crate::layout::{AUTH_PASSWORD, HTPASSWD, REGISTRY_CONFIG};
use crate::render::read_http_secret;

pub struct Secrets {
    pub http_secret: String,
    pub auth: Option<Auth>,
    /// With S3 storage: the key the registry uses (read from the user's file or the kept copy).
    pub s3: Option<crate::s3::Credentials>,
}

pub struct Auth {
    pub user: String,
    pub password: String,
    /// `user:bcrypt-hash`
    pub htpasswd_line: String,
    pub password_origin: PasswordOrigin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordOrigin {
    Kept,
    Generated,
    FromStdin,
    /// From a site file: the site's password, as every replica has it.
    Site,
}

/// bcrypt cost for a password registry-up generated. The registry checks the hash on every request
/// (cost 10 measured 70–110 ms each here), and stretching gains nothing for 24 random characters
/// (~140 bits): 5 is Apache `htpasswd -B`'s default.
const GENERATED_COST: u32 = 5;
/// bcrypt cost for a password a person chose (`--auth-password-stdin`): it may be guessable, so it keeps
/// bcrypt's usual stretching, and every request pays for it (README: Authentication).
const CHOSEN_COST: u32 = 10;
const PASSWORD_LEN: usize = 24;
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// The cost a password's hash should have: low only for one that has the shape of a generated password
/// (a kept password carries no record of where it came from; a person is most unlikely to pick 24
/// characters of exactly this alphabet).
fn cost_for(password: &str) -> u32 {
    let generated = password.len() == PASSWORD_LEN && password.bytes().all(|b| ALPHABET.contains(&b));
    if generated {
        GENERATED_COST
    } else {
        CHOSEN_COST
    }
}

/// The cost field of a bcrypt hash (`$2b$05$...`).
fn hash_cost(hash: &str) -> Option<u32> {
    hash.split('$').nth(2)?.parse().ok()
}

/// A random password of 24 letters and digits.
pub fn random_password() -> String {
    let mut out = String::new();
    let mut buf = [0u8; 64];
    while out.len() < PASSWORD_LEN {
        crate::digest::random_bytes(&mut buf);
        // Rejection sampling keeps every character equally likely.
        let limit = 256 - 256 % ALPHABET.len();
        for b in buf.iter().filter(|b| (**b as usize) < limit) {
            if out.len() < PASSWORD_LEN {
                out.push(ALPHABET[*b as usize % ALPHABET.len()] as char);
            }
        }
    }
    out
}

/// Reads a password, one line, from standard input (`flag` names the option in errors).
pub fn password_from_stdin(flag: &str) -> Result<String> {
    use std::io::{BufRead, Read};
    // One line, and not an endless one (`</dev/zero`): a password is far shorter than this.
    const LINE: u64 = 64 << 10;
    let mut line = Vec::new();
    let read = std::io::stdin().lock().take(LINE + 1).read_until(b'\n', &mut line);
    read.map_err(|e| {
        Error::usage(format!(
            "Cannot read the password from standard input for {flag} ({e}): pipe it in as one line of text."
        ))
    })?;
    if line.len() as u64 > LINE {
        return Err(Error::usage(format!(
            "{flag} read more than {LINE} bytes without a line end: pipe the password in as one line of text."
        )));
    }
    let line = String::from_utf8(line).map_err(|_| {
        Error::usage(format!(
            "{flag} read a password that is not UTF-8 text: pipe it in as one line of text."
        ))
    })?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(Error::usage(format!(
            "{flag} read an empty password: pipe it in, for example printf '%s\\n' \"$PASS\" | registry-up ... {flag}"
        )));
    }
    Ok(password)
}

/// Reads the new password of the `--auth` user from standard input and checks it can work: bcrypt uses
/// only the first 72 bytes (a longer one would also accept its first 72 alone), nginx refuses very long
/// headers, and control characters or blanks alone cannot be typed at a login prompt.
pub fn new_password_from_stdin() -> Result<String> {
    let password = password_from_stdin("--auth-password-stdin")?;
    check_new_password(&password)?;
    Ok(password)
}

fn check_new_password(password: &str) -> Result<()> {
    let problem = if password.len() > 72 {
        Some(format!(
            "is {} bytes long, but bcrypt uses only the first 72 (the rest would not be checked)",
            password.len()
        ))
    } else if let Some(c) = password.chars().find(|c| c.is_control()) {
        Some(format!("contains the control character {:?}", c))
    } else if password.trim().is_empty() {
        Some("is only blanks".to_string())
    } else {
        None
    };
    match problem {
        Some(problem) => Err(Error::usage(format!(
            "The password read by --auth-password-stdin {problem}: give one of at most 72 bytes of printable \
             characters, or leave out --auth-password-stdin to have one generated."
        ))),
        None => Ok(()),
    }
}

/// The login a client of the installed appliance uses: `user` with the password `up` saved in `dir`.
/// `otherwise` ends the error sentence with the command's other way in.
pub fn saved_login(dir: &Path, user: &str, otherwise: &str) -> Result<(String, String)> {
    let path = dir.join(AUTH_PASSWORD);
    let password = crate::bounded::read_text(&path, crate::bounded::SMALL).map_err(|e| {
        crate::error::Error::usage(format!(
            "The appliance requires a password, but {} cannot be read ({e}): {}, or {otherwise}.",
            path.display(),
            crate::host::io_fix(&e)
        ))
    })?;
    Ok((user.to_string(), password.trim_end_matches('\n').to_string()))
}

/// Reads what exists in `dir`, makes what is missing. `auth_user`: authentication on, for this user.
pub fn ensure(dir: &Path, auth_user: Option<&str>, password_from_stdin: Option<String>) -> Result<Secrets> {
    let http_secret = read_optional(&dir.join(REGISTRY_CONFIG))?
        .and_then(|text| read_http_secret(&text))
        .unwrap_or_else(|| crate::digest::random_hex(32));
    let Some(user) = auth_user else {
        return Ok(Secrets {
            http_secret,
            auth: None,
            s3: None,
        });
    };
    let stored = read_optional(&dir.join(AUTH_PASSWORD))?.map(|p| p.trim_end_matches('\n').to_string());
    let (password, password_origin) = match (password_from_stdin, stored) {
        (Some(given), _) => (given, PasswordOrigin::FromStdin),
        (None, Some(kept)) if !kept.is_empty() => (kept, PasswordOrigin::Kept),
        (None, _) => (random_password(), PasswordOrigin::Generated),
    };
    // bcrypt salts randomly: keep the existing line while it still matches at the wanted cost, so re-runs
    // change nothing (and a hash from before the cost was lowered is made once more).
    let cost = cost_for(&password);
    let existing_line = read_optional(&dir.join(HTPASSWD))?.and_then(|text| {
        text.lines()
            .find(|l| l.split_once(':').is_some_and(|(u, _)| u == user))
            .map(String::from)
    });
    let keep = |line: &str| {
        let hash = line.split_once(':').map(|(_, h)| h).unwrap_or("");
        hash_cost(hash) == Some(cost) && bcrypt::verify(&password, hash).unwrap_or(false)
    };
    let htpasswd_line = match existing_line {
        Some(line) if keep(&line) => line,
        _ => {
            let hash = bcrypt::hash(&password, cost).map_err(|e| {
                Error::runtime(format!(
                    "Could not hash the password ({e}): choose a password of at most 72 bytes."
                ))
            })?;
            format!("{user}:{hash}")
        }
    };
    Ok(Secrets {
        http_secret,
        auth: Some(Auth {
            user: user.to_string(),
            password,
            htpasswd_line,
            password_origin,
        }),
        s3: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_random_and_plain() {
        let a = random_password();
        assert_eq!(a.len(), 24);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, random_password());
    }

    #[test]
    fn generated_passwords_get_a_low_cost_and_chosen_ones_the_usual() {
        assert_eq!(cost_for(&random_password()), GENERATED_COST);
        assert_eq!(cost_for("correct-horse-battery"), CHOSEN_COST);
        assert_eq!(cost_for("short"), CHOSEN_COST);
        // 24 characters, but outside the generator's alphabet (it has no 0, O, 1, l, I).
        assert_eq!(cost_for("0000000000000000000000OO"), CHOSEN_COST);
        assert_eq!(hash_cost("$2b$05$abcdefghijklmnopqrstuv"), Some(5));
        assert_eq!(hash_cost("garbage"), None);
    }

    #[test]
    fn a_hash_of_another_cost_is_made_again_once() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("auth")).unwrap();
        std::fs::create_dir_all(tmp.path().join("registry")).unwrap();
        let password = random_password();
        let old = format!("admin:{}", bcrypt::hash(&password, 10).unwrap());
        std::fs::write(tmp.path().join(AUTH_PASSWORD), format!("{password}\n")).unwrap();
        std::fs::write(tmp.path().join(HTPASSWD), format!("{old}\n")).unwrap();
        let auth = ensure(tmp.path(), Some("admin"), None).unwrap().auth.unwrap();
        assert_eq!(auth.password, password);
        assert_ne!(auth.htpasswd_line, old);
        let hash = auth.htpasswd_line.strip_prefix("admin:").unwrap();
        assert_eq!(hash_cost(hash), Some(GENERATED_COST));
        assert!(bcrypt::verify(&password, hash).unwrap());
    }

    #[test]
    fn rerun_keeps_password_and_hash() {
        let tmp = tempfile::tempdir().unwrap();
        let first = ensure(tmp.path(), Some("admin"), None).unwrap();
        let auth = first.auth.unwrap();
        assert_eq!(auth.password_origin, PasswordOrigin::Generated);
        std::fs::create_dir_all(tmp.path().join("auth")).unwrap();
        std::fs::create_dir_all(tmp.path().join("registry")).unwrap();
        std::fs::write(tmp.path().join(AUTH_PASSWORD), format!("{}\n", auth.password)).unwrap();
        std::fs::write(tmp.path().join(HTPASSWD), format!("{}\n", auth.htpasswd_line)).unwrap();
        let second = ensure(tmp.path(), Some("admin"), None).unwrap().auth.unwrap();
        assert_eq!(second.password_origin, PasswordOrigin::Kept);
        assert_eq!(second.password, auth.password);
        assert_eq!(second.htpasswd_line, auth.htpasswd_line);
        let third = ensure(tmp.path(), Some("admin"), Some("new-pass".into()))
            .unwrap()
            .auth
            .unwrap();
        assert_ne!(third.htpasswd_line, auth.htpasswd_line);
        let hash = third.htpasswd_line.strip_prefix("admin:").unwrap();
        assert!(bcrypt::verify("new-pass", hash).unwrap());
        assert_eq!(hash_cost(hash), Some(CHOSEN_COST));
        assert!(hash.starts_with("$2"), "bcrypt, as the registry requires");
    }
}
