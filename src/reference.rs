//! Image references (`[registry/]path[:tag][@digest]`) checked and written in full, as oci-spec's
//! `Reference` does, without its regex: that one is compiled once per process, ~55 ms of CPU that every
//! `up` paid before doing anything (DESIGN.md §3). The tests hold this to oci-spec's parser, string for
//! string, on a corpus and on thousands of generated strings.

const NAME_MAX: usize = 255;
const DEFAULT_TAG: &str = "latest";

/// The reference written in full (`docker.io/library/nginx:latest` for `nginx`), or why it is not one.
pub fn whole(input: &str) -> Result<String, &'static str> {
    if input.is_empty() {
        return Err("repository name must have at least one component");
    }
    let (name_tag, digest) = match input.split_once('@') {
        Some((n, d)) => (n, Some(digest(d)?)),
        None => (input, None),
    };
    // A colon after the last slash starts the tag; one before it is a registry's port.
    let (name, tag) = match name_tag.rfind(':') {
        Some(i) if !name_tag[i..].contains('/') => (&name_tag[..i], Some(tag(&name_tag[i + 1..])?)),
        _ => (name_tag, None),
    };
    let components: Vec<&str> = name.split('/').collect();
    let all_paths = components.iter().all(|c| path_component(c));
    let domain_first =
        components.len() > 1 && domain(components[0]) && components[1..].iter().all(|c| path_component(c));
    if !all_paths && !domain_first {
        return Err("invalid reference format");
    }
    let (registry, repository) = split_domain(name);
    if repository.len() > NAME_MAX {
        return Err("repository name must not be more than 255 characters");
    }
    let mut out = format!("{registry}/{repository}");
    match (tag, digest) {
        (None, None) => out += &format!(":{DEFAULT_TAG}"),
        (tag, digest) => {
            if let Some(t) = tag {
                out += &format!(":{t}");
            }
            if let Some(d) = digest {
                out += &format!("@{d}");
            }
        }
    }
    Ok(out)
}

/// Docker's rule: the first component is a registry when it has a dot or a colon, or is `localhost`;
/// otherwise the image is on Docker Hub, whose one-component names live under `library/`.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut rest) = match name.split_once('/') {
        Some((left, right)) if left.contains(['.', ':']) || left == "localhost" => {
            (left.to_string(), right.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    if domain == "index.docker.io" {
        domain = "docker.io".into();
    }
    if domain == "docker.io" && !rest.contains('/') {
        rest = format!("library/{rest}");
    }
    (domain, rest)
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or dashes.
fn path_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &c[start..i];
        let dashes = separator.bytes().all(|b| b == b'-');
        if !(dashes || matches!(separator, "." | "_" | "__")) {
            return false;
        }
    }
    true
}

/// Host name labels (`[a-zA-Z0-9]`, dashes inside) joined by dots, then an optional `:port`.
fn domain(d: &str) -> bool {
    let (host, port) = match d.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    let label = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    };
    host.split('.').all(label) && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `[A-Za-z0-9_]` then up to 127 of those, dots and dashes.
fn tag(t: &str) -> Result<&str, &'static str> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = t.as_bytes();
    let fine = !b.is_empty() && b.len() <= 128 && word(b[0]) && b.iter().all(|c| word(*c) || *c == b'.' || *c == b'-');
    if fine {
        Ok(t)
    } else {
        Err("invalid reference format")
    }
}

/// `algorithm:hex`, of a known algorithm and its length.
fn digest(d: &str) -> Result<&str, &'static str> {
    let (algorithm, hex) = d.split_once(':').ok_or("invalid reference format")?;
    let parts_fine = algorithm.split(['-', '_', '+', '.']).all(|p| {
        let b = p.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(|c| c.is_ascii_alphanumeric())
    });
    if !parts_fine || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("invalid reference format");
    }
    let wanted = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("unsupported digest algorithm"),
    };
    if hex.len() != wanted {
        return Err("invalid checksum digest length");
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oci_spec(input: &str) -> Option<String> {
        input.parse::<oci_client::Reference>().ok().map(|r| r.whole())
    }

    fn same(input: &str) {
        assert_eq!(whole(input).ok(), oci_spec(input), "{input:?}");
    }

    #[test]
    fn it_agrees_with_oci_spec_on_a_corpus() {
        let hex = "a".repeat(64);
        for input in [
            "nginx",
            "nginx:1.27",
            "library/nginx",
            "docker.io/nginx",
            "index.docker.io/nginx",
            "docker.io/library/registry:3",
            "localhost/registry-up-test/registry:latest",
            "localhost:5000/a/b:c",
            "registry.lab:8443/mirror/docker.io/library/nginx:1",
            "quay.io/org/app",
            "Foo/bar",
            "foo/Bar",
            "UPPER",
            "a.b/c",
            "a__b/c",
            "a___b/c",
            "a-b--c/d",
            "a._b",
            "a..b",
            "-a",
            "a-",
            "a/",
            "/a",
            "a//b",
            ":tag",
            "a:",
            "a:-x",
            "a:_x",
            "a:.x",
            "host:5000",
            "host:5000/",
            "host:/a",
            "host:x/a",
            "h-.x/a",
            "h.-x/a",
            "1.2.3.4:5000/x",
            "[::1]:5000/x",
            "a@sha256:",
            "a@sha256:abc",
            "a@md5:0123456789abcdef0123456789abcdef",
            "a@sha512:0123",
            "a:b@c",
            "a@b@c",
            "a b",
            "a\tb",
            "é",
        ] {
            same(input);
        }
        same(&format!("nginx@sha256:{hex}"));
        same(&format!("nginx:1@sha256:{hex}"));
        same(&format!("r.io/nginx@sha256:{}", hex.to_uppercase()));
        same(&format!("nginx@sha384:{}", "b".repeat(96)));
        same(&format!("nginx@sha256:{}", "a".repeat(63)));
        same(&format!("nginx:{}", "t".repeat(128)));
        same(&format!("nginx:{}", "t".repeat(129)));
        same(&format!("r.io/{}", "a".repeat(255)));
        same(&format!("r.io/{}", "a".repeat(256)));
        same(&"a".repeat(247));
        same(&"a".repeat(248));
    }

    /// Thousands of strings from the characters that matter, each judged the same by both.
    #[test]
    fn it_agrees_with_oci_spec_on_generated_strings() {
        let alphabet = b"aZ09.-_:/@";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for _ in 0..20_000 {
            let len = 1 + next() % 14;
            let input: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize] as char)
                .collect();
            same(&input);
            accepted += usize::from(whole(&input).is_ok());
        }
        // Both must be tried on acceptances too, not only on rejections (805 of these are references).
        assert!(accepted > 500, "only {accepted} generated strings were references");
    }

    #[test]
    fn a_tag_is_ascii_only() {
        // oci-spec's `\w` takes any Unicode letter; Docker's grammar, and Podman, take ASCII only.
        assert!(oci_spec("nginx:été").is_some());
        assert!(whole("nginx:été").is_err());
    }
}
