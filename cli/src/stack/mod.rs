//! `berth stack`: Compose files deployed as one declarative change.
//!
//! The files are read here (berth-compose: interpolation, merging, relative
//! paths, the contents of env, config and secret files) into a `StackSpec`;
//! the leader plans and writes the difference (`Stacks.Deploy`, see
//! docs/design/stacks.md). `diff` is the same plan, not written.

mod deploy;
mod files;
mod plan;
mod view;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::client::Access;
use crate::output::Format;

#[derive(Debug, Args)]
pub struct FileArgs {
    /// A Compose file; several are merged in order (relative paths resolve
    /// against the first one's directory, where `.env` is read too).
    #[arg(
        short = 'c',
        long = "compose-file",
        value_name = "FILE",
        required = true
    )]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum StackCmd {
    /// Create or update a stack from Compose files: new objects are created,
    /// changed services roll (their update_config), unchanged ones are left
    /// alone; waits until the services converged (exit 0, else 1).
    Deploy {
        #[command(flatten)]
        files: FileArgs,
        /// Also remove the stack's services, networks, configs and secrets the
        /// files no longer name (never volumes, never other objects).
        #[arg(long)]
        prune: bool,
        /// Return once the change is written, without waiting for the tasks.
        #[arg(long, short = 'd')]
        detach: bool,
        /// Leave image tags unpinned: the agents resolve them when they pull.
        #[arg(long)]
        no_resolve_image: bool,
        /// Print the plan as JSON.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        name: String,
    },
    /// What a deploy would change, field by field (exit 0: nothing, 1:
    /// something would change, 2: an error).
    Diff {
        #[command(flatten)]
        files: FileArgs,
        /// Count what `deploy --prune` would remove as changes.
        #[arg(long)]
        prune: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        name: String,
    },
    /// The merged, interpolated, resolved file, or its errors (file:line:column).
    Config {
        #[command(flatten)]
        files: FileArgs,
    },
    /// Stacks and how many objects each has.
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// A stack's services with their replicas.
    Services {
        name: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// The tasks of a stack's services.
    Ps {
        name: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Remove a stack: its services, then its networks, configs and secrets
    /// (volumes stay).
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub async fn run(access: &Access, cmd: StackCmd) -> Result<()> {
    match cmd {
        StackCmd::Deploy {
            files,
            prune,
            detach,
            no_resolve_image,
            format,
            name,
        } => {
            let options = deploy::DeployOptions {
                prune,
                detach,
                no_resolve_image,
                format,
            };
            deploy::deploy(access, &files.files, &name, options).await
        }
        StackCmd::Diff {
            files,
            prune,
            format,
            name,
        } => deploy::diff(access, &files.files, &name, prune, format).await,
        StackCmd::Config { files } => files::config(&files.files),
        StackCmd::Ls { format } => view::ls(access, format).await,
        StackCmd::Services { name, format } => view::services(access, &name, format).await,
        StackCmd::Ps { name, format } => view::ps(access, &name, format).await,
        StackCmd::Rm { names } => view::rm(access, &names).await,
    }
}
