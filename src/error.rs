//! The error type shared by every phase, and the one mapping from a failure to
//! the documented exit code. Printing is left to `main.rs`.

use std::fmt;

/// The class of a failure, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A command line that cannot be parsed (64, EX_USAGE).
    Usage,
    /// A response that is not the expected JSON (65, EX_DATAERR).
    BadResponse,
    /// A requested secret that does not exist (66, EX_NOINPUT).
    NotFound,
    /// The server is unreachable, timed out or failing (69, EX_UNAVAILABLE).
    Unavailable,
    /// A file that cannot be written (73, EX_CANTCREAT).
    CannotWrite,
    /// Credentials or permissions rejected by the server (77, EX_NOPERM).
    Rejected,
    /// Missing or invalid configuration (78, EX_CONFIG).
    Config,
    /// The command could not be executed (126).
    NotExecutable,
    /// The command was not found (127).
    CommandNotFound,
    /// Start-up aborted by this signal number (128 + N).
    Aborted(i32),
}

/// A failure with a one-line, secret-free message.
#[derive(Debug)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
    /// The server rejected the access token (401, or 403 `TokenError`) on a
    /// call other than the login, so a fresh login may help.
    pub token_rejected: bool,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), token_rejected: false }
    }

    pub fn config(message: impl Into<String>) -> Self {
        Error::new(Kind::Config, message)
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Error::new(Kind::Usage, message)
    }

    /// Returns the documented exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self.kind {
            Kind::Usage => 64,
            Kind::BadResponse => 65,
            Kind::NotFound => 66,
            Kind::Unavailable => 69,
            Kind::CannotWrite => 73,
            Kind::Rejected => 77,
            Kind::Config => 78,
            Kind::NotExecutable => 126,
            Kind::CommandNotFound => 127,
            Kind::Aborted(signal) => signal_exit_code(signal),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Returns the shell convention for a death by signal: 128 + N, kept within
/// one byte.
pub fn signal_exit_code(signal: i32) -> u8 {
    u8::try_from(128 + signal).unwrap_or(255)
}

pub type Result<T> = std::result::Result<T, Error>;
