//! Compose files (the format `docker stack deploy` takes) read into a berth
//! [`StackSpec`](berth_proto::v1::StackSpec): docs/design/stack-files.md.

mod convert;
pub mod diag;
pub mod dotenv;
pub mod interpolate;
pub mod keys;
mod load;
pub mod merge;
pub mod model;
mod read;
pub mod values;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_proto::v1::StackSpec;

pub use diag::{Error, Errors, Pos, Warning};

/// What to load.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The `-c` files, merged in order; relative paths in them start at the
    /// first one's directory, where `.env` is read too.
    pub files: Vec<PathBuf>,
    /// The process environment (it wins over `.env`).
    pub env: BTreeMap<String, String>,
}

/// Reads, interpolates and merges the files into the typed model. Every
/// error found is returned, each at `FILE:LINE:COLUMN`.
pub fn load(options: &Options) -> Result<Project, Errors> {
    load::load(options)
}

/// The merged, interpolated, typed files.
#[derive(Clone)]
pub struct Project {
    /// Keys berth does not honour, unset variables, dropped options.
    pub warnings: Vec<Warning>,
    pub model: model::Model,
    /// The variables (process environment over `.env`).
    env: BTreeMap<String, String>,
    /// The directory of the first file.
    pub base_dir: PathBuf,
}

/// Without the variables' values (the environment can hold secrets).
impl std::fmt::Debug for Project {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Project")
            .field("warnings", &self.warnings)
            .field("model", &self.model)
            .field("env", &format_args!("{} variables", self.env.len()))
            .field("base_dir", &self.base_dir)
            .finish()
    }
}

impl Project {
    /// `stack config`: the model as YAML, maps in sorted order, paths
    /// absolute, variables replaced.
    pub fn render(&self) -> String {
        serde_saphyr::to_string(&self.model)
            .unwrap_or_else(|e| format!("# cannot print the stack: {e}\n"))
    }

    /// The StackSpec of stack `stack`; reads env_file, config and secret files.
    /// Its secrets carry their values: StackSecret's Debug prints none.
    pub fn to_stack_spec(&self, stack: &str) -> Result<StackSpec, Errors> {
        convert::to_stack_spec(self, stack)
    }
}
