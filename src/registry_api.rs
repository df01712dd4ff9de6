//! The distribution API calls registry-up makes itself (blob uploads, manifests), shared by `import` and
//! verify's round trip: plain requests over one kept-alive client, each answer's status checked, and the
//! registry's own error codes kept in the message.

use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};

use crate::oci::MANIFEST_TYPES;
use crate::verify::{chain, Http, Target};

/// How a blob upload started.
pub enum Started {
    /// The registry linked the blob from the other repository (a mount): nothing to send.
    Mounted,
    /// An upload session, at this absolute URL.
    At(String),
}

/// POST of an upload session in `repository`; with `mount` (digest, from), a cross-repository mount.
pub async fn start_upload(
    http: &Http,
    target: &Target,
    repository: &str,
    mount: Option<(&str, &str)>,
) -> Result<Started, String> {
    let path = match mount {
        None => format!("/v2/{repository}/blobs/uploads/"),
        Some((digest, from)) => format!("/v2/{repository}/blobs/uploads/?mount={digest}&from={from}"),
    };
    let resp = http
        .post(&target.url(&path))
        .header(CONTENT_LENGTH, 0)
        .send()
        .await
        .map_err(|e| chain(&e))?;
    match resp.status().as_u16() {
        201 if mount.is_some() => Ok(Started::Mounted),
        202 => next_location(target, &resp).map(Started::At),
        _ => Err(refused(&format!("starting an upload to {repository}"), resp).await),
    }
}

/// PATCH of a chunk of `size` bytes into an upload session; the session's next URL.
pub async fn send_chunk(
    http: &Http,
    target: &Target,
    at: &str,
    body: reqwest::Body,
    size: u64,
) -> Result<String, String> {
    let resp = send_bytes(http.patch(at), body, size).await?;
    match resp.status().as_u16() {
        202 => next_location(target, &resp),
        _ => Err(refused("the upload", resp).await),
    }
}

/// The PUT that ends an upload session as `digest`, with the blob's (last) bytes: the registry checks
/// the whole blob against the digest here (DIGEST_INVALID when it differs).
pub async fn finish_upload(http: &Http, at: &str, digest: &str, body: reqwest::Body, size: u64) -> Result<(), String> {
    let join = if at.contains('?') { '&' } else { '?' };
    let resp = send_bytes(http.put(&format!("{at}{join}digest={digest}")), body, size).await?;
    match resp.status().as_u16() {
        201 => Ok(()),
        _ => Err(refused(&format!("storing {digest}"), resp).await),
    }
}

/// A blob's bytes, `size` of them, as the body of `request`.
async fn send_bytes(
    request: reqwest::RequestBuilder,
    body: reqwest::Body,
    size: u64,
) -> Result<reqwest::Response, String> {
    request
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(CONTENT_LENGTH, size)
        .body(body)
        .send()
        .await
        .map_err(|e| chain(&e))
}

/// PUT of a manifest; the digest the registry says it stored it as (Docker-Content-Digest), if it says.
pub async fn put_manifest(
    http: &Http,
    target: &Target,
    repository: &str,
    reference: &str,
    media_type: &str,
    raw: Vec<u8>,
) -> Result<Option<String>, String> {
    let resp = http
        .put(&target.url(&format!("/v2/{repository}/manifests/{reference}")))
        .header(CONTENT_TYPE, media_type)
        .body(raw)
        .send()
        .await
        .map_err(|e| chain(&e))?;
    let stored = header(&resp, "docker-content-digest");
    match resp.status().as_u16() {
        201 => Ok(stored),
        _ => Err(refused(&format!("storing the manifest {repository}:{reference}"), resp).await),
    }
}

/// GET of a manifest by tag or digest, as a client asks for it: its bytes as served.
pub async fn get_manifest(
    http: &Http,
    target: &Target,
    repository: &str,
    reference: &str,
) -> Result<bytes::Bytes, String> {
    let resp = http
        .get(&target.url(&format!("/v2/{repository}/manifests/{reference}")))
        .header(ACCEPT, MANIFEST_TYPES.join(", "))
        .send()
        .await
        .map_err(|e| chain(&e))?;
    if !resp.status().is_success() {
        return Err(refused(&format!("reading {repository}:{reference}"), resp).await);
    }
    crate::bounded::body(resp, crate::bounded::MANIFEST)
        .await
        .map(bytes::Bytes::from)
        .map_err(|e| format!("reading {repository}:{reference}: {e}"))
}

/// GET of a blob: the answer, its status checked, for the caller to read or stream.
pub async fn get_blob(
    http: &Http,
    target: &Target,
    repository: &str,
    digest: &str,
) -> Result<reqwest::Response, String> {
    let resp = http
        .get(&target.url(&format!("/v2/{repository}/blobs/{digest}")))
        .send()
        .await
        .map_err(|e| chain(&e))?;
    if !resp.status().is_success() {
        return Err(refused(&format!("reading {digest}"), resp).await);
    }
    Ok(resp)
}

/// HEAD of one blob in one repository: whether the registry has it there.
pub async fn has_blob(http: &Http, target: &Target, repository: &str, digest: &str) -> Result<bool, String> {
    let url = target.url(&format!("/v2/{repository}/blobs/{digest}"));
    let resp = http.head(&url).send().await.map_err(|e| chain(&e))?;
    match resp.status().as_u16() {
        200 => Ok(true),
        404 => Ok(false),
        401 | 403 => Err(format!("the registry refused the login (HTTP {})", resp.status())),
        _ => Err(format!("HEAD {url} answered HTTP {}", resp.status())),
    }
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The absolute URL of an upload session's next step: the Location header, read against the URL it
/// answered (absolute, rooted and relative Locations all occur). Credentials go only to the registry.
fn next_location(target: &Target, resp: &reqwest::Response) -> Result<String, String> {
    let location = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or("the registry gave no upload location")?;
    let next = resp
        .url()
        .join(location)
        .map_err(|e| format!("the registry gave an unusable upload location {location:?} ({e})"))?;
    if next.origin() != resp.url().origin() {
        return Err(format!(
            "the registry sent the upload to another host ({next}), which registry-up does not follow with {}'s \
             credentials",
            target.registry()
        ));
    }
    Ok(next.to_string())
}

/// What went wrong with a request the registry answered with an error: the step, the status, and the
/// registry's own codes (DIGEST_INVALID, BLOB_UPLOAD_UNKNOWN, …), which callers may look for.
async fn refused(step: &str, resp: reqwest::Response) -> String {
    let status = resp.status();
    let text = crate::bounded::error_text(resp).await;
    format!("{step} answered HTTP {status}: {}", registry_error(&text))
}

/// The codes and messages of a registry's JSON error body, else the body itself.
pub fn registry_error(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: String,
        message: Option<String>,
    }
    match serde_json::from_str::<Errors>(body) {
        Ok(e) if !e.errors.is_empty() => e
            .errors
            .iter()
            .map(|e| format!("{} ({})", e.code, e.message.as_deref().unwrap_or("no message")))
            .collect::<Vec<_>>()
            .join(", "),
        _ if body.trim().is_empty() => "no details".to_string(),
        // An error page (nginx's, say): its start says enough.
        _ => crate::bundle::printable(&body.trim().chars().take(200).collect::<String>()),
    }
}
