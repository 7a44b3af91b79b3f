//! Exit codes other than 1, as Docker's `run` gives them: the container's own
//! code, or 125 when berth itself failed (bad flag, no such image, no node).

/// Ends `berth` with `code`; the message (if any) goes to stderr first.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: i32,
    pub message: String,
}

/// Berth's own failure in `run`: Docker's 125.
pub const BERTH_FAILED: i32 = 125;

impl Exit {
    /// The container's code, nothing printed.
    pub fn code(code: i32) -> anyhow::Error {
        Exit {
            code,
            message: String::new(),
        }
        .into()
    }

    /// `err` as berth's own failure (125).
    pub fn berth(err: anyhow::Error) -> anyhow::Error {
        Exit {
            code: BERTH_FAILED,
            message: format!("{err:#}"),
        }
        .into()
    }
}
