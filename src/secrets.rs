//! Secrets made once and kept: the registry's `http.secret`, and with --auth the user's password and its
//! htpasswd line. Re-runs read them back from disk; nothing here is ever regenerated silently (a
//! re-install that replaced the password left mirror-registry crash-looping).

use std::path::Path;

use crate::error::{Error, Result};
use crate::render::{read_http_secret, AUTH_PASSWORD, HTPASSWD, REGISTRY_CONFIG};

pub struct Secrets {
    pub http_secret: String,
    pub auth: Option<Auth>,
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
}

/// bcrypt cost: about 50 ms on these machines, paid once per login by the registry.
const BCRYPT_COST: u32 = 10;

fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::usage(format!(
            "Cannot read {} ({e}): run as root, or fix the file's permissions.",
            path.display()
        ))),
    }
}

/// A random password of 24 letters and digits.
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut out = String::new();
    let mut buf = [0u8; 64];
    while out.len() < 24 {
        crate::sys::random_bytes(&mut buf);
        // Rejection sampling keeps every character equally likely.
        let limit = 256 - 256 % ALPHABET.len();
        for b in buf.iter().filter(|b| (**b as usize) < limit) {
            if out.len() < 24 {
                out.push(ALPHABET[*b as usize % ALPHABET.len()] as char);
            }
        }
    }
    out
}

/// Reads a password, one line, from standard input (`flag` names the option in errors).
pub fn password_from_stdin(flag: &str) -> Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| {
        Error::usage(format!(
            "Cannot read the password from standard input for {flag} ({e})."
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

/// Reads what exists in `dir`, makes what is missing. `auth_user`: authentication on, for this user.
pub fn ensure(dir: &Path, auth_user: Option<&str>, password_from_stdin: Option<String>) -> Result<Secrets> {
    let http_secret = read_optional(&dir.join(REGISTRY_CONFIG))?
        .and_then(|text| read_http_secret(&text))
        .unwrap_or_else(|| crate::sys::random_hex(32));
    let Some(user) = auth_user else {
        return Ok(Secrets {
            http_secret,
            auth: None,
        });
    };
    let stored = read_optional(&dir.join(AUTH_PASSWORD))?.map(|p| p.trim_end_matches('\n').to_string());
    let (password, password_origin) = match (password_from_stdin, stored) {
        (Some(given), _) => (given, PasswordOrigin::FromStdin),
        (None, Some(kept)) if !kept.is_empty() => (kept, PasswordOrigin::Kept),
        (None, _) => (random_password(), PasswordOrigin::Generated),
    };
    // bcrypt salts randomly: keep the existing line while it still matches, so re-runs change nothing.
    let existing_line = read_optional(&dir.join(HTPASSWD))?.and_then(|text| {
        text.lines()
            .find(|l| l.split_once(':').is_some_and(|(u, _)| u == user))
            .map(String::from)
    });
    let htpasswd_line = match existing_line {
        Some(line)
            if bcrypt::verify(&password, line.split_once(':').map(|(_, h)| h).unwrap_or("")).unwrap_or(false) =>
        {
            line
        }
        _ => {
            let hash = bcrypt::hash(&password, BCRYPT_COST)
                .map_err(|e| Error::runtime(format!("Could not hash the password ({e}).")))?;
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
        assert!(hash.starts_with("$2"), "bcrypt, as the registry requires");
    }
}
