//! One exit status for every command, and one error type: a plain sentence for the user (ending with
//! what to do) and the status it maps to.

use std::fmt;

/// How a run of registry-up ended, documented in the README's table. Keep the numbers stable: scripts
/// depend on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Done: up and verified, every check passed, healthy, nothing wrong.
    Success = 0,
    /// It runs but does not do its job: a verification or check failed, `status` is degraded, `doctor`
    /// found problems.
    Failed = 1,
    /// Invalid input or a host precondition that failed before anything was changed.
    Usage = 2,
    /// Something failed while applying files or starting the pod; a re-run after the fix converges.
    Runtime = 3,
    /// No appliance is installed in the config folder the command was given.
    NotInstalled = 4,
}

impl ExitStatus {
    /// Success when `ok`, else Failed: for commands whose result is a verdict.
    pub fn verdict(ok: bool) -> Self {
        if ok {
            ExitStatus::Success
        } else {
            ExitStatus::Failed
        }
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status as u8)
    }
}

#[derive(Debug)]
pub struct Error {
    pub status: ExitStatus,
    pub message: String,
}

impl Error {
    /// Bad input or an unmet precondition: nothing has been changed.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::with(ExitStatus::Usage, message)
    }

    /// A failure while changing the system or starting the pod.
    pub fn runtime(message: impl Into<String>) -> Self {
        Self::with(ExitStatus::Runtime, message)
    }

    /// The appliance runs but does not do its job.
    pub fn verify(message: impl Into<String>) -> Self {
        Self::with(ExitStatus::Failed, message)
    }

    /// The command needs an installed appliance and there is none.
    pub fn not_installed(message: impl Into<String>) -> Self {
        Self::with(ExitStatus::NotInstalled, message)
    }

    pub fn with(status: ExitStatus, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `text` with control characters escaped, so a crafted name in an error cannot drive the terminal (an
/// escape sequence that sets its title, say); line breaks stay when `keep_lines`, for messages of several
/// lines.
pub fn printable(text: &str, keep_lines: bool) -> String {
    text.chars()
        .map(|c| match c {
            '\n' if keep_lines => c.to_string(),
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// An error with its causes, which is where reqwest and rustls put the useful part.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let s = cause.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod printable_tests {
    #[test]
    fn control_characters_are_escaped_and_lines_kept_when_asked() {
        let hostile = "a\u{1b}]0;pwned\u{7}b.test\nnext";
        assert_eq!(super::printable(hostile, true), "a\\u{1b}]0;pwned\\u{7}b.test\nnext");
        assert_eq!(super::printable(hostile, false), "a\\u{1b}]0;pwned\\u{7}b.test\\nnext");
    }
}
