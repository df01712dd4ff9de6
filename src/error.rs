//! One error type for the whole tool: a plain sentence for the user and the exit code it maps to.

use std::fmt;

/// Exit codes, documented in the README. Keep the numbers stable: scripts depend on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// The registry came up but the push/pull verification failed.
    VerifyFailed = 1,
    /// Invalid input or a host precondition that failed before anything was changed.
    Usage = 2,
    /// Something failed while applying files or starting the pod; a re-run after the fix converges.
    Runtime = 3,
}

#[derive(Debug)]
pub struct Error {
    pub code: ExitCode,
    pub message: String,
}

impl Error {
    /// Bad input or an unmet precondition: nothing has been changed.
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: ExitCode::Usage,
            message: message.into(),
        }
    }

    /// A failure while changing the system or starting the pod.
    pub fn runtime(message: impl Into<String>) -> Self {
        Self {
            code: ExitCode::Runtime,
            message: message.into(),
        }
    }

    /// The appliance runs but does not do its job.
    pub fn verify(message: impl Into<String>) -> Self {
        Self {
            code: ExitCode::VerifyFailed,
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
