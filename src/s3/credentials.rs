//! The S3 key, in the AWS shared-credentials format every S3 tool writes (`aws configure`, rclone's
//! docs, Garage's docs): a `[default]` section (or none) with `aws_access_key_id` and
//! `aws_secret_access_key`. Read once from the user's file, kept 0600 in the config folder.

/// An access key ID and its secret. Debug never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"(hidden)")
            .finish()
    }
}

/// What a credentials file must look like, for error messages.
pub const EXPECTED: &str =
    "a [default] section with aws_access_key_id = KEY-ID and aws_secret_access_key = SECRET, one per line";

impl Credentials {
    /// Parses the file's text: the `default` section, or the whole file when it has no sections. Err says
    /// what is wrong, never the secret.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut section: Option<String> = None;
        let (mut id, mut secret) = (None, None);
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = Some(name.trim().to_string());
                continue;
            }
            if section.as_deref().is_some_and(|s| s != "default") {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!("line {} is not `name = value`", n + 1));
            };
            let value = value.trim().to_string();
            match key.trim().to_ascii_lowercase().as_str() {
                "aws_access_key_id" => id = Some(value),
                "aws_secret_access_key" => secret = Some(value),
                _ => {}
            }
        }
        let usable = |v: &Option<String>| {
            v.as_ref()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic()))
                .cloned()
        };
        match (usable(&id), usable(&secret)) {
            (Some(access_key), Some(secret_key)) => Ok(Credentials { access_key, secret_key }),
            (None, _) => Err("it has no aws_access_key_id (in its [default] section)".into()),
            (_, None) => Err("it has no aws_secret_access_key (in its [default] section)".into()),
        }
    }

    /// The file registry-up keeps, in the same format.
    pub fn render(&self) -> String {
        format!(
            "# Written by registry-up: the key the registry's S3 storage uses.\n[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            self.access_key, self.secret_key
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_section_or_a_bare_file() {
        let text = "[other]\naws_access_key_id = NO\n\n[default]\n# from garage key create\naws_access_key_id = GK31c2f218a2e44f485b94239e\naws_secret_access_key=b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f9d769d67f16c3835\n";
        let c = Credentials::parse(text).unwrap();
        assert_eq!(c.access_key, "GK31c2f218a2e44f485b94239e");
        assert_eq!(Credentials::parse(&c.render()).unwrap(), c);
        let bare = Credentials::parse("aws_access_key_id=a\naws_secret_access_key=b\n").unwrap();
        assert_eq!((bare.access_key.as_str(), bare.secret_key.as_str()), ("a", "b"));
        assert!(!format!("{c:?}").contains("b892"), "Debug hides the secret");
    }

    #[test]
    fn what_is_missing_is_named_and_the_secret_never() {
        let e = Credentials::parse("aws_secret_access_key = s3cr3t\n").unwrap_err();
        assert!(e.contains("no aws_access_key_id"), "{e}");
        let e =
            Credentials::parse("[default]\naws_access_key_id = a\n[x]\naws_secret_access_key = s3cr3t\n").unwrap_err();
        assert!(e.contains("no aws_secret_access_key") && !e.contains("s3cr3t"), "{e}");
        let e = Credentials::parse("Key ID: GK1\nSecret key: s3cr3t\n").unwrap_err();
        assert!(e.contains("line 1") && !e.contains("s3cr3t"), "{e}");
        assert!(Credentials::parse("aws_access_key_id = a b\naws_secret_access_key = c\n").is_err());
    }
}
