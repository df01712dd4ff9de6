//! Every read of input registry-up does not control is bounded: a file someone names (a site file, an S3
//! key, a list), a member of an archive, a password on stdin, the body of an HTTP answer. Each reads at most
//! a size that fits its purpose and says so when there is more, and a file that is not a regular file (a
//! FIFO would hang the run, a device never ends) is refused before a byte is read.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Small files of registry-up's own or the user's: a key, a password, a claim, a site file.
pub const SMALL: u64 = 1 << 20;
/// An error body from a registry or an object store: its start says enough.
pub const ERROR_BODY: usize = 64 << 10;
/// A manifest or index: distribution refuses to store one over 4 MiB.
pub const MANIFEST: usize = 4 << 20;

/// The bytes of the regular file at `path`, at most `limit` of them; Ok(None) when it does not exist. A
/// FIFO, device or folder is refused before a byte is read, and so is a file over `limit`.
pub fn file(path: &Path, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    match open_regular(path) {
        Ok(f) => read_at_most(f, limit).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens the regular file at `path` for reading; a FIFO, device or folder is refused before a byte is read
/// (opening a FIFO does not wait for a writer: O_NONBLOCK, which a regular file ignores).
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = f.metadata()?;
    if meta.is_dir() {
        return Err(std::io::ErrorKind::IsADirectory.into());
    }
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(f)
}

/// At most `limit` bytes of `reader`; an error when it has more.
pub fn read_at_most(reader: impl Read, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("more than the {} registry-up reads of it", indicatif::HumanBytes(limit)),
        ));
    }
    Ok(bytes)
}

/// As `std::fs::read_to_string`, of a regular file of at most `limit` bytes (as [`file`]).
pub fn read_text(path: &Path, limit: u64) -> std::io::Result<String> {
    let bytes = file(path, limit)?.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
    String::from_utf8(bytes).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))
}

/// As [`read_text`], of a file that holds a secret (an S3 key, a site file): one other users can read is
/// read, with a warning that says so and how to close it (the secret may have been read already).
pub fn secret_text(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let text = read_text(path, limit)?;
    let mode = std::fs::metadata(path).map(|m| m.permissions().mode()).unwrap_or(0);
    if mode & 0o044 != 0 {
        eprintln!(
            "warning: {} holds a secret and other users can read it (mode {:o}): chmod 600 it, and consider the \
             secret seen.",
            crate::error::printable(&path.display().to_string(), false),
            mode & 0o777
        );
    }
    Ok(text)
}

/// The text of the regular file at `path` (at most `limit` bytes), or an error (exit 2) naming the file
/// and what to do: it is missing, not a regular file, too large, or not UTF-8.
pub fn text(path: &Path, limit: u64) -> Result<String> {
    read_text(path, limit).map_err(|e| Error::usage(crate::host::io_failed("read", path, &e)))
}

/// The body of an HTTP answer, at most `limit` bytes: Err says what failed, or that there was more.
pub async fn body(mut resp: reqwest::Response, limit: usize) -> std::result::Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| crate::error::chain(&e))? {
        if bytes.len() + chunk.len() > limit {
            return Err(format!(
                "the answer is larger than the {} registry-up reads of it",
                indicatif::HumanBytes(limit as u64)
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The start of an error answer's body, as text (lossy): at most [`ERROR_BODY`] bytes are read, the rest
/// is left unread (the connection is dropped with the answer).
pub async fn error_text(mut resp: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = ERROR_BODY - bytes.len();
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if bytes.len() >= ERROR_BODY {
            break;
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An HTTP server on loopback that answers every request with `status` and an endless chunked body.
    fn endless_server(status: &'static str) -> std::net::SocketAddr {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut tcp = stream;
                    let _ = std::io::Read::read(&mut tcp, &mut [0u8; 4096]);
                    let head = format!("HTTP/1.1 {status}\r\nTransfer-Encoding: chunked\r\n\r\n");
                    if tcp.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    let chunk = format!("{:x}\r\n{}\r\n", 65536, "x".repeat(65536));
                    while tcp.write_all(chunk.as_bytes()).is_ok() {}
                });
            }
        });
        addr
    }

    /// An endless error body (a registry's, an object store's 403) is read to its first 64 KiB and no
    /// further; an endless answer that is to be read whole is refused at its limit, not held in memory.
    #[test]
    fn an_endless_answer_is_cut_at_its_limit() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let addr = endless_server("403 Forbidden");
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::new();
        rt.block_on(async {
            let resp = client.get(format!("http://{addr}/")).send().await.unwrap();
            assert_eq!(error_text(resp).await.len(), ERROR_BODY);
            let resp = client.get(format!("http://{addr}/")).send().await.unwrap();
            let e = body(resp, 1 << 20).await.unwrap_err();
            assert!(e.contains("larger than the 1.00 MiB"), "{e}");
        });
    }

    #[test]
    fn a_fifo_or_an_endless_file_is_refused_without_hanging() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = text(&fifo, SMALL).unwrap_err();
        assert!(e.message.contains("not a regular file"), "{e}");
        let e = text(Path::new("/dev/zero"), SMALL).unwrap_err();
        assert!(e.message.contains("not a regular file"), "{e}");
        let big = tmp.path().join("big");
        std::fs::write(&big, vec![b'a'; 2048]).unwrap();
        let e = text(&big, 1024).unwrap_err();
        assert!(e.message.contains("more than the 1.00 KiB"), "{e}");
        assert_eq!(text(&big, 2048).unwrap().len(), 2048);
        assert!(file(&tmp.path().join("missing"), 1).unwrap().is_none());
        let e = read_at_most(std::io::repeat(0), 4096).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::FileTooLarge);
    }
}
