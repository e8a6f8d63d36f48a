//! The one error type of `nncert-report`.

use std::path::PathBuf;

/// Why a plan, an evidence file or a signed report could not be read, checked or written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The plan is not valid TOML or does not match the plan's shape.
    #[error("{path}: {message}")]
    PlanSyntax {
        /// The plan file.
        path: PathBuf,
        /// The TOML parser's message (it names line and column).
        message: String,
    },
    /// The plan parses but says something inconsistent; the message says what to change.
    #[error("{path}: {message}")]
    Plan {
        /// The plan file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// An evidence or state file is not what nncert wrote.
    #[error("{path}: {message}")]
    Evidence {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A signed report does not verify: a file changed, the signature is wrong, or the chain is broken.
    #[error("report verification failed: {0}")]
    Tampered(String),
    /// A key file is malformed.
    #[error("{path}: {message}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl ReportError {
    /// An [`ReportError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ReportError::Io {
            path: path.into(),
            source,
        }
    }
}
