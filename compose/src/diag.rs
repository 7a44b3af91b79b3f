//! Where a value came from (`FILE:LINE:COLUMN`) and what the loader says
//! about it: warnings (a key berth does not honour, an unset variable) and
//! errors (every one found, not just the first).

use std::fmt;
use std::sync::Arc;

/// A place in one of the files: 1-based line and column, the file as the
/// user named it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub fn new(file: &Arc<str>, line: usize, column: usize) -> Pos {
        Pos {
            file: Arc::clone(file),
            line,
            column,
        }
    }

    /// The start of a file (for what has no better place, like a file that
    /// cannot be read).
    pub fn file_start(file: &str) -> Pos {
        Pos {
            file: Arc::from(file),
            line: 1,
            column: 1,
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Something the user should know that does not stop the deploy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Warning {
    pub at: Pos,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// One thing wrong with the files.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Error {
    pub at: Pos,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// Every error found, in file order, one per line when printed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Errors(pub Vec<Error>);

impl Errors {
    pub fn one(at: Pos, message: impl Into<String>) -> Errors {
        Errors(vec![Error {
            at,
            message: message.into(),
        }])
    }
}

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Collects errors and warnings while a pass walks the files, so one run
/// reports all of them.
#[derive(Debug, Default)]
pub struct Diag {
    pub errors: Vec<Error>,
    pub warnings: Vec<Warning>,
}

impl Diag {
    pub fn error(&mut self, at: &Pos, message: impl Into<String>) {
        self.errors.push(Error {
            at: at.clone(),
            message: message.into(),
        });
    }

    pub fn warn(&mut self, at: &Pos, message: impl Into<String>) {
        self.warnings.push(Warning {
            at: at.clone(),
            message: message.into(),
        });
    }

    /// The errors found, sorted by place.
    pub fn into_errors(mut self) -> Errors {
        self.errors.sort();
        self.errors.dedup();
        Errors(self.errors)
    }

    /// The errors, sorted by place, when there are any.
    pub fn into_result(mut self) -> Result<Vec<Warning>, Errors> {
        if self.errors.is_empty() {
            self.warnings.sort();
            self.warnings.dedup();
            Ok(self.warnings)
        } else {
            self.errors.sort();
            self.errors.dedup();
            Err(Errors(self.errors))
        }
    }
}
