//! The binary's command line: runc's surface (`create`, `start`, `state`, `kill`, `delete`,
//! `run`, `exec`, `ps`, `list`, `events --stats`), so callers can swap runtimes.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BERTH_GIT_COMMIT"),
    ")"
);

/// berth's OCI runtime, with runc's command-line surface.
#[derive(Debug, Parser)]
#[command(name = "berth-runtime", version = VERSION)]
pub struct Args {
    /// Directory for the runtime's container state.
    #[arg(long, global = true, default_value = "/run/berth-runtime")]
    pub root: PathBuf,
    /// Also append error messages to this file (runc compatibility).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Accepted for runc compatibility; errors are always plain text.
    #[arg(long, global = true, hide = true)]
    pub log_format: Option<String>,
    /// Accepted for runc compatibility.
    #[arg(long, global = true, hide = true)]
    pub debug: bool,
    /// Accepted for runc compatibility; berth-runtime manages cgroupfs directly.
    #[arg(long, global = true, hide = true)]
    pub systemd_cgroup: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Path to the bundle (a directory with config.json and the rootfs).
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// Write the container's init pid (host view) to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Pass this many extra file descriptors (3, 4, ...) to the container.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Unix socket that receives the master of the process's terminal
    /// (SCM_RIGHTS, as runc) when config.json has process.terminal.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Accepted for runc compatibility (pivot_root is always used).
    #[arg(long, hide = true)]
    pub no_pivot: bool,
    /// Container id.
    pub id: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container: set everything up, stop just before the user process.
    Create(CreateArgs),
    /// Start the user process of a created container.
    Start { id: String },
    /// Print the container's state as OCI state JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to the container's init process.
    Kill {
        /// Send the signal to every process of the container.
        #[arg(long, short = 'a')]
        all: bool,
        /// After the signal, wait this many seconds for the container to stop,
        /// then SIGKILL every process of it.
        #[arg(long)]
        grace: Option<f64>,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container and everything it owns; succeeds if it is already gone.
    Delete {
        /// Kill the container first if it still runs.
        #[arg(long, short = 'f')]
        force: bool,
        id: String,
    },
    /// Create, start and wait for a container, delete it, exit with its status.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Accepted for runc compatibility: detaching is create + start.
        #[arg(long, short = 'd')]
        detach: bool,
    },
    /// Run a further process inside a running container.
    Exec {
        /// Extra environment variables (KEY=VALUE).
        #[arg(long, short = 'e')]
        env: Vec<String>,
        /// Working directory inside the container.
        #[arg(long)]
        cwd: Option<String>,
        /// UID[:GID] to run as (default: the container process's user).
        #[arg(long, short = 'u')]
        user: Option<String>,
        /// Run the process on a new terminal (its master goes to --console-socket).
        #[arg(long, short = 't')]
        tty: bool,
        /// Unix socket that receives the terminal's master (with --tty).
        #[arg(long)]
        console_socket: Option<PathBuf>,
        /// Do not wait for the process: exit once it runs (as runc's -d).
        #[arg(long, short = 'd')]
        detach: bool,
        /// Write the process's pid (host view) to this file.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        id: String,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// List the processes of a container (host pids).
    Ps {
        #[arg(long, short = 'f', default_value = "table")]
        format: String,
        id: String,
    },
    /// List the containers under --root.
    List {
        #[arg(long, short = 'f', default_value = "table")]
        format: String,
        /// Print only the ids.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Print resource usage (runc's `events --stats` format).
    Events {
        /// Print one stats record and exit (the only mode supported).
        #[arg(long)]
        stats: bool,
        id: String,
    },
}
