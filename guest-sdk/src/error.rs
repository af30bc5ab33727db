use std::fmt::Display;

/// Why a transform refused a webhook. Either way the host sends the webhook
/// to the dead letters with this reason; the variant tells an operator
/// whether to look at the sender (`InvalidInput`) or at the transform
/// (`Failed`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input is not what this transform can read (e.g. not JSON).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid_input(reason: impl Display) -> Self {
        Error::InvalidInput(reason.to_string())
    }

    /// Shorthand for [`Error::Failed`].
    pub fn failed(reason: impl Display) -> Self {
        Error::Failed(reason.to_string())
    }
}

/// `?` on a serde_json result is almost always parsing the webhook body, so a
/// malformed or mis-shaped document is the sender's fault. Only I/O errors,
/// which cannot come from the input bytes, count as a transform failure.
/// Where the distinction matters (e.g. serialising output), map explicitly.
impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        match e.classify() {
            serde_json::error::Category::Io => Error::Failed(e.to_string()),
            _ => Error::InvalidInput(e.to_string()),
        }
    }
}

/// Shorthand used throughout transforms.
pub type Result<T, E = Error> = std::result::Result<T, E>;
