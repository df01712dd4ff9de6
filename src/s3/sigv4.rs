//! AWS Signature Version 4 for S3 requests, header form: pure, so it is held to AWS's published examples.
//! Bodies are small here (probes, deletes), so the payload is always hashed and signed.

use ring::{digest, hmac};

/// What is signed: the request as it goes on the wire.
pub struct Request<'a> {
    pub method: &'a str,
    /// `host[:port]`, as the Host header carries it.
    pub host: &'a str,
    /// The path, already percent-encoded as it is sent.
    pub path: &'a str,
    /// Query parameters, not encoded (encoded and sorted here).
    pub query: &'a [(&'a str, &'a str)],
    /// Other headers to sign, beyond host, x-amz-content-sha256 and x-amz-date.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

pub struct Key<'a> {
    pub access_key: &'a str,
    pub secret_key: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

/// The headers to add: `x-amz-date`, `x-amz-content-sha256` and `authorization`. `amz_date` is
/// `YYYYMMDDTHHMMSSZ`.
pub fn sign(request: &Request<'_>, key: &Key<'_>, amz_date: &str) -> Vec<(&'static str, String)> {
    let payload = hex(digest::digest(&digest::SHA256, request.body).as_ref());
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
        .chain([
            ("host".to_string(), request.host.to_string()),
            ("x-amz-content-sha256".to_string(), payload.clone()),
            ("x-amz-date".to_string(), amz_date.to_string()),
        ])
        .collect();
    headers.sort();
    let signed: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    let signed = signed.join(";");
    let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed}\n{payload}",
        request.method,
        request.path,
        canonical_query(request.query)
    );
    let date = &amz_date[..8.min(amz_date.len())];
    let scope = format!("{date}/{}/{}/aws4_request", key.region, key.service);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    );
    let mut k = hmac_sha256(format!("AWS4{}", key.secret_key).as_bytes(), date.as_bytes());
    for part in [key.region, key.service, "aws4_request"] {
        k = hmac_sha256(&k, part.as_bytes());
    }
    let signature = hex(&hmac_sha256(&k, to_sign.as_bytes()));
    vec![
        ("x-amz-date", amz_date.to_string()),
        ("x-amz-content-sha256", payload),
        (
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
                key.access_key
            ),
        ),
    ]
}

/// `YYYYMMDDTHHMMSSZ` of `at`.
pub fn amz_date(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// Percent-encoding as SigV4 wants it: everything but unreserved characters, and `/` when `keep_slash`.
pub fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The query as both the canonical request and the URL carry it: encoded, sorted by name then value.
pub fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (encode(k, false), encode(v, false)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCS_KEY: Key = Key {
        access_key: "AKIAIOSFODNN7EXAMPLE",
        secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        region: "us-east-1",
        service: "s3",
    };

    fn signature(headers: &[(&'static str, String)]) -> String {
        let auth = &headers.iter().find(|(n, _)| *n == "authorization").unwrap().1;
        auth.rsplit("Signature=").next().unwrap().to_string()
    }

    /// The examples of AWS's "Signature Calculations for the Authorization Header" page for S3.
    #[test]
    fn aws_s3_examples() {
        let get = sign(
            &Request {
                method: "GET",
                host: "examplebucket.s3.amazonaws.com",
                path: "/test.txt",
                query: &[],
                headers: &[("Range", "bytes=0-9")],
                body: b"",
            },
            &DOCS_KEY,
            "20130524T000000Z",
        );
        assert_eq!(
            signature(&get),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        let auth = &get[2].1;
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
                 SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature="
            ),
            "{auth}"
        );

        let put = sign(
            &Request {
                method: "PUT",
                host: "examplebucket.s3.amazonaws.com",
                path: &format!("/{}", encode("test$file.text", true)),
                query: &[],
                headers: &[
                    ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                    ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ],
                body: b"Welcome to Amazon S3.",
            },
            &DOCS_KEY,
            "20130524T000000Z",
        );
        assert_eq!(
            signature(&put),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );

        let list = sign(
            &Request {
                method: "GET",
                host: "examplebucket.s3.amazonaws.com",
                path: "/",
                query: &[("prefix", "J"), ("max-keys", "2")],
                headers: &[],
                body: b"",
            },
            &DOCS_KEY,
            "20130524T000000Z",
        );
        assert_eq!(
            signature(&list),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn encoding_and_dates() {
        assert_eq!(encode("a b/c~d*é", true), "a%20b/c~d%2A%C3%A9");
        assert_eq!(encode("a/b", false), "a%2Fb");
        assert_eq!(
            canonical_query(&[("b", "2"), ("a", "x y"), ("a", "1")]),
            "a=1&a=x%20y&b=2"
        );
        let at = time::Date::from_calendar_date(2026, time::Month::December, 2)
            .unwrap()
            .with_hms(9, 5, 7)
            .unwrap()
            .assume_utc();
        assert_eq!(amz_date(at), "20261202T090507Z");
    }
}
