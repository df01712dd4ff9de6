//! S3 storage for the registry (`--storage s3`): where the bucket is, the key, and the few requests
//! registry-up itself makes there (SigV4 by hand, see sigv4.rs): a probe before anything is written,
//! verification's removal of its own blobs, and the site's records (replicas, gc's hold: src/site_gc.rs).
//! The registry's driver does the rest.

pub mod credentials;
pub mod sigv4;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use credentials::Credentials;

use crate::error::{Error, Result};

/// Where the registry's objects live: the store's endpoint, the bucket and the region it signs for. Kept as
/// it is in state.json and site files (written only after `parse` accepted it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Location {
    /// `http(s)://host[:port]`, no path.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
}

/// The region S3 clients sign for when none is given (Garage's own default is "garage": give --s3-region).
pub const DEFAULT_REGION: &str = "us-east-1";

/// The most registry-up reads of an answer from the object store: a listing page (1 000 keys) or a small
/// record of its own; more is an error, not a memory to fill.
const LISTING: usize = 16 << 20;

impl Location {
    /// Checks the three settings (pure): an endpoint URL without path, an S3 bucket name, a region name.
    pub fn parse(endpoint: &str, bucket: &str, region: &str) -> Result<Self> {
        let url = reqwest::Url::parse(endpoint.trim()).ok().filter(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.username().is_empty()
                && u.password().is_none()
                && u.path() == "/"
                && u.query().is_none()
                && u.fragment().is_none()
        });
        let Some(url) = url else {
            return Err(Error::usage(format!(
                "The S3 endpoint '{endpoint}' is not a URL of the form http://HOST:PORT or https://HOST: give \
                 --s3-endpoint the object store's S3 address, without a path (the bucket goes in --s3-bucket)."
            )));
        };
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && bucket.as_bytes()[0].is_ascii_alphanumeric()
            && bucket.as_bytes()[bucket.len() - 1].is_ascii_alphanumeric();
        if !valid_bucket {
            return Err(Error::usage(format!(
                "The bucket name '{bucket}' is not a valid S3 bucket name: give --s3-bucket 3 to 63 lowercase \
                 letters, digits, dots and hyphens, starting and ending with a letter or digit."
            )));
        }
        let valid_region = !region.is_empty()
            && region.len() <= 64
            && region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_region {
            return Err(Error::usage(format!(
                "The region '{region}' is not a region name: give --s3-region the region the store signs for \
                 (Garage: s3_region in garage.toml, \"garage\" in its examples)."
            )));
        }
        let endpoint = url.as_str().trim_end_matches('/').to_string();
        Ok(Location {
            endpoint,
            bucket: bucket.to_string(),
            region: region.to_string(),
        })
    }

    /// The sentence for this bucket answering a request of registry-up's wrongly or not at all.
    pub fn unanswered(&self, why: &str) -> Error {
        Error::runtime(format!(
            "The {} did not answer as expected ({why}): check the S3 store, then run this again.",
            self.describe()
        ))
    }

    /// "bucket B at ENDPOINT", for reports.
    pub fn describe(&self) -> String {
        format!("S3 bucket {} at {}", self.bucket, self.endpoint)
    }
}

/// The S3 key: from the file `given` on this run, else the copy kept in config folder `dir`; with the
/// path it was read from.
pub fn read_key(given: Option<&Path>, dir: &Path) -> Result<(Credentials, PathBuf)> {
    let path = given
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join(crate::layout::S3_CREDENTIALS));
    let text = crate::bounded::secret_text(&path, crate::bounded::SMALL).map_err(|e| {
        let fix = match given {
            Some(_) => "give --s3-credentials a file this user can read".to_string(),
            None => "give the key again with --s3-credentials FILE".to_string(),
        };
        Error::usage(format!("Cannot read the S3 key from {} ({e}): {fix}.", path.display()))
    })?;
    let key = Credentials::parse(&text).map_err(|why| {
        Error::usage(format!(
            "The S3 key in {} cannot be used: {why}. Write it as {}.",
            path.display(),
            credentials::EXPECTED
        ))
    })?;
    Ok((key, path))
}

/// A bucket registry-up talks to with the registry's key.
pub struct Bucket<'a> {
    pub location: &'a Location,
    credentials: &'a Credentials,
    client: reqwest::Client,
}

/// An answer: status, body, and the length it announced.
struct Answer {
    status: u16,
    body: String,
    length: u64,
}

impl Answer {
    /// The text of element `name` of an S3 error document.
    fn field(&self, name: &str) -> Option<String> {
        element(&self.body, name).map(|t| t.trim().to_string())
    }

    /// `Code` and `Message` of an S3 error document, as "Code: Message".
    fn error(&self) -> String {
        match (self.code(), self.field("Message")) {
            (Some(code), Some(message)) if !message.is_empty() => format!("{code}: {message}"),
            (Some(code), _) => code,
            _ => format!("HTTP {}", self.status),
        }
    }

    fn code(&self) -> Option<String> {
        self.field("Code")
    }
}

impl<'a> Bucket<'a> {
    pub fn new(location: &'a Location, credentials: &'a Credentials, timeout: Duration) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            // The store's answer is wanted, not one from wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            // The registry reaches the store directly (its container has none of this host's proxy
            // variables): so must the probe, or it would prove another path.
            .no_proxy()
            .build()
            .map_err(|e| {
                Error::usage(format!(
                    "Could not set up the client for {} ({}): for an https endpoint, install the system's CA \
                     certificates (ca-certificates).",
                    location.endpoint,
                    crate::error::chain(&e)
                ))
            })?;
        Ok(Bucket {
            location,
            credentials,
            client,
        })
    }

    /// Sends a signed request for `key` (empty: the bucket itself); Err is a transport failure.
    async fn send(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        body: &[u8],
    ) -> std::result::Result<Answer, String> {
        let path = format!(
            "/{}/{}",
            sigv4::encode(&self.location.bucket, false),
            sigv4::encode(key, true)
        );
        let path = if key.is_empty() {
            path.trim_end_matches('/').to_string()
        } else {
            path
        };
        let base = reqwest::Url::parse(&self.location.endpoint).map_err(|e| e.to_string())?;
        // As the Host header will carry it: the port only when it is not the scheme's own.
        let host = match (base.host_str(), base.port()) {
            (Some(h), Some(port)) => format!("{h}:{port}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(format!("{} has no host", self.location.endpoint)),
        };
        let query_text = sigv4::canonical_query(query);
        let url = match query_text.is_empty() {
            true => format!("{}{path}", self.location.endpoint),
            false => format!("{}{path}?{query_text}", self.location.endpoint),
        };
        let headers = sigv4::sign(
            &sigv4::Request {
                method,
                host: &host,
                path: &path,
                query,
                headers: &[],
                body,
            },
            &sigv4::Key {
                access_key: &self.credentials.access_key,
                secret_key: &self.credentials.secret_key,
                region: &self.location.region,
                service: "s3",
            },
            &sigv4::amz_date(time::OffsetDateTime::now_utc()),
        );
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut request = self.client.request(method, &url).body(body.to_vec());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| crate::error::chain(&e))?;
        let status = response.status().as_u16();
        let length = response
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        // A listing is a page of at most 1 000 keys; an endless body (an error page, say) is cut short.
        let body = crate::bounded::body(response, LISTING).await?;
        let body = String::from_utf8_lossy(&body).into_owned();
        Ok(Answer { status, body, length })
    }

    /// Proves the bucket is there and the key may list it and (`write`) write and delete in it, with one
    /// small object written and removed. Err (exit 2) names which of endpoint, key, bucket or permission
    /// is wrong; `key_file` is where the key was read from, for the message.
    pub async fn probe(&self, key_file: &str, write: bool) -> Result<()> {
        let at = &self.location.endpoint;
        let unreachable = |why: String| {
            Error::usage(format!(
                "The S3 endpoint {at} cannot be reached ({why}): check --s3-endpoint, and that the object store \
                 runs and this host can reach it."
            ))
        };
        let list = self
            .send("GET", "", &[("list-type", "2"), ("max-keys", "1")], b"")
            .await
            .map_err(unreachable)?;
        if list.status != 200 {
            return Err(self.refused(&list, key_file, "list"));
        }
        if !write {
            return Ok(());
        }
        let probe = format!("registry-up-probe/{}", crate::digest::random_hex(8));
        let put = self
            .send("PUT", &probe, &[], b"registry-up checks it may write here\n")
            .await
            .map_err(unreachable)?;
        if put.status != 200 {
            return Err(self.refused(&put, key_file, "write to"));
        }
        let delete = self.send("DELETE", &probe, &[], b"").await.map_err(unreachable)?;
        if !matches!(delete.status, 200 | 204) {
            return Err(self.refused(&delete, key_file, "delete in"));
        }
        Ok(())
    }

    /// The sentence for an answer that refused `what` (list, write to, delete in).
    fn refused(&self, answer: &Answer, key_file: &str, what: &str) -> Error {
        let (at, bucket, region) = (&self.location.endpoint, &self.location.bucket, &self.location.region);
        let said = answer.error();
        let key = &self.credentials.access_key;
        // Garage answers a wrong secret or an unknown key with AccessDenied too, saying so in the message.
        let lower = said.to_ascii_lowercase();
        let key_refused = ["signature", "no such key", "invalid key", "access key"]
            .iter()
            .any(|w| lower.contains(w));
        let clock = ["skew", "date", "time", "expired"].iter().any(|w| lower.contains(w));
        let code = match answer.code() {
            Some(c) if c == "RequestTimeTooSkewed" || (c == "AccessDenied" && clock) => {
                Some("RequestTimeTooSkewed".to_string())
            }
            Some(c) if c == "AccessDenied" && key_refused => Some("InvalidAccessKeyId".to_string()),
            other => other,
        };
        Error::usage(match code.as_deref() {
            Some("RequestTimeTooSkewed") => format!(
                "The S3 store at {at} refuses this host's requests for their time ({said}): set this host's clock \
                 (timedatectl, or chrony against a time source on the site); requests are signed with it."
            ),
            Some("NoSuchBucket") => format!(
                "The bucket {bucket} does not exist at {at} ({said}): create it and allow the key on it (Garage: \
                 garage bucket create {bucket}; garage bucket allow --read --write {bucket} --key {key}), or give \
                 --s3-bucket an existing bucket."
            ),
            Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidSignature") => format!(
                "The S3 store at {at} refuses the key in {key_file} ({said}): check the access key ID and secret \
                 there (Garage: garage key info --show-secret {key})."
            ),
            Some("AuthorizationHeaderMalformed") => format!(
                "The S3 store at {at} does not accept requests signed for region {region} ({said}): give \
                 --s3-region the store's region (Garage: s3_region in garage.toml)."
            ),
            Some("AccessDenied") => format!(
                "The key in {key_file} may not {what} bucket {bucket} at {at} ({said}): allow it to read and write \
                 there (Garage: garage bucket allow --read --write {bucket} --key {key})."
            ),
            _ if answer.status == 403 => format!(
                "The S3 store at {at} refuses the key in {key_file} ({said}): check the access key ID and secret \
                 there, and that the key may read and write bucket {bucket}."
            ),
            _ => format!(
                "The S3 store at {at} answered {said} when registry-up tried to {what} bucket {bucket}: check \
                 --s3-endpoint (is it the S3 API's address?), --s3-region and the store's log."
            ),
        })
    }

    /// The size of object `key`, None when there is none.
    pub async fn size(&self, key: &str) -> std::result::Result<Option<u64>, String> {
        let answer = self.send("HEAD", key, &[], b"").await?;
        match answer.status {
            200 => Ok(Some(answer.length)),
            404 => Ok(None),
            _ => Err(format!("{key}: {}", answer.error())),
        }
    }

    /// Writes object `key` (small: the site's records).
    pub async fn put(&self, key: &str, body: &[u8]) -> std::result::Result<(), String> {
        let answer = self
            .send("PUT", key, &[], body)
            .await
            .map_err(|e| format!("{key}: {e}"))?;
        match answer.status {
            200 => Ok(()),
            _ => Err(format!("{key}: {}", answer.error())),
        }
    }

    /// Object `key` as text, None when there is none.
    pub async fn get(&self, key: &str) -> std::result::Result<Option<String>, String> {
        let answer = self
            .send("GET", key, &[], b"")
            .await
            .map_err(|e| format!("{key}: {e}"))?;
        match answer.status {
            200 => Ok(Some(answer.body)),
            404 => Ok(None),
            _ => Err(format!("{key}: {}", answer.error())),
        }
    }

    /// Every object whose key starts with `prefix`, with its size (all pages of ListObjectsV2).
    pub async fn list(&self, prefix: &str) -> std::result::Result<Vec<Object>, String> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type", "2"), ("prefix", prefix)];
            if let Some(t) = &token {
                query.push(("continuation-token", t));
            }
            let answer = self.send("GET", "", &query, b"").await?;
            if answer.status != 200 {
                return Err(format!("listing {prefix}: {}", answer.error()));
            }
            let page = ListPage::parse(&answer.body)?;
            objects.extend(page.objects);
            match page.next {
                Some(next) => token = Some(next),
                None => return Ok(objects),
            }
        }
    }

    /// Deletes the objects `keys`; Err names the first that could not be deleted.
    pub async fn delete(&self, keys: &[String]) -> std::result::Result<(), String> {
        for key in keys {
            match self.send("DELETE", key, &[], b"").await {
                Ok(a) if matches!(a.status, 200 | 204) => {}
                Ok(a) => return Err(format!("{key}: {}", a.error())),
                Err(e) => return Err(format!("{key}: {e}")),
            }
        }
        Ok(())
    }
}

/// An object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub size: u64,
}

/// One page of a ListObjectsV2 answer.
struct ListPage {
    objects: Vec<Object>,
    /// The continuation token when the listing is truncated.
    next: Option<String>,
}

impl ListPage {
    fn parse(xml: &str) -> std::result::Result<Self, String> {
        let mut objects = Vec::new();
        for part in xml.split("<Contents>").skip(1) {
            let entry = part.split("</Contents>").next().unwrap_or_default();
            let (Some(key), Some(size)) = (element(entry, "Key"), element(entry, "Size")) else {
                return Err(format!("a listing entry without key or size: {entry}"));
            };
            let size = size
                .parse()
                .map_err(|_| format!("a listing entry with size '{size}'"))?;
            objects.push(Object { key, size });
        }
        let truncated = element(xml, "IsTruncated").is_some_and(|t| t == "true");
        let next = match truncated {
            true => {
                Some(element(xml, "NextContinuationToken").ok_or("a truncated listing without a continuation token")?)
            }
            false => None,
        };
        Ok(ListPage { objects, next })
    }
}

/// The text of the first element `name` in `xml`, its entities decoded.
fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(
        xml[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_checked() {
        let l = Location::parse("http://10.0.0.5:3900/", "registry", "garage").unwrap();
        assert_eq!(l.endpoint, "http://10.0.0.5:3900");
        assert_eq!(l.describe(), "S3 bucket registry at http://10.0.0.5:3900");
        assert_eq!(
            Location::parse("https://[fd00::1]:3900", "a.b-c", "us-east-1")
                .unwrap()
                .endpoint,
            "https://[fd00::1]:3900"
        );
        for bad in [
            "10.0.0.5:3900",
            "ftp://h",
            "http://h/bucket",
            "http://u:p@h",
            "http://h?x=1",
            "",
        ] {
            let e = Location::parse(bad, "registry", "garage").unwrap_err();
            assert!(e.message.contains("--s3-endpoint"), "{bad}: {e}");
        }
        for bad in ["ab", "Registry", "-reg", "reg_1", &"a".repeat(64)] {
            let e = Location::parse("http://h", bad, "garage").unwrap_err();
            assert!(e.message.contains("--s3-bucket"), "{bad}: {e}");
        }
        let e = Location::parse("http://h", "registry", "us east").unwrap_err();
        assert!(e.message.contains("--s3-region"), "{e}");
    }

    #[test]
    fn listings_are_read_page_by_page() {
        let page = ListPage::parse(
            "<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>a/b&amp;c</Key><LastModified>x\
             </LastModified><Size>12</Size></Contents><Contents><Key>a/d</Key><Size>0</Size></Contents>\
             <NextContinuationToken>tok/1=</NextContinuationToken></ListBucketResult>",
        )
        .unwrap();
        assert_eq!(
            page.objects,
            vec![
                Object {
                    key: "a/b&c".into(),
                    size: 12
                },
                Object {
                    key: "a/d".into(),
                    size: 0
                }
            ]
        );
        assert_eq!(page.next.as_deref(), Some("tok/1="));
        let last = ListPage::parse("<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>").unwrap();
        assert!(last.objects.is_empty() && last.next.is_none());
        assert!(ListPage::parse("<IsTruncated>true</IsTruncated>").is_err());
        assert!(ListPage::parse("<Contents><Key>k</Key><Size>big</Size></Contents>").is_err());
    }

    #[test]
    fn error_documents_are_read() {
        let a = Answer {
            length: 0,
            status: 404,
            body:
                "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>Bucket not found: x</Message></Error>"
                    .into(),
        };
        assert_eq!(a.error(), "NoSuchBucket: Bucket not found: x");
        assert_eq!(a.code().as_deref(), Some("NoSuchBucket"));
        let b = Answer {
            status: 502,
            body: "<html>bad gateway</html>".into(),
            length: 0,
        };
        assert_eq!((b.error(), b.code()), ("HTTP 502".to_string(), None));
    }
}
