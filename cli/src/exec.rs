//! `berth exec [-i] [-t] [-e K=V]... [-u USER] [-w DIR] TASK CMD...` and
//! `berth attach TASK`: a process in a running task, or the task's own
//! process, with the local terminal (see `terminal/`). berth exits with the
//! process's status; its own failures exit 125.

use anyhow::Result;
use berth_proto::v1::ExecStart;

use crate::client::{self, Access};
use crate::terminal;

/// Run a command in a running task (its namespaces and cgroup, on its node).
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Keep stdin open and send it to the process.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Run the process on a terminal (put the local one in raw mode).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set an environment variable (KEY=VALUE); repeatable.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Run as this user: uid[:gid] or a name from the image's /etc/passwd.
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// The task: its id (or a unique prefix), SERVICE.SLOT or SERVICE.
    pub task: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Attach to a running task's own process: its output, and with a terminal
/// or open stdin its input.
#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// Do not send the local stdin to the task.
    #[arg(long)]
    pub no_stdin: bool,
    /// The task: its id (or a unique prefix), SERVICE.SLOT or SERVICE.
    pub task: String,
}

pub async fn exec(access: &Access, args: ExecArgs) -> Result<i32> {
    for e in &args.env {
        if !e.contains('=') || e.starts_with('=') {
            anyhow::bail!("-e {e:?}: expected KEY=VALUE");
        }
    }
    let channel = client::channel(access).await?;
    let start = ExecStart {
        task: args.task,
        command: args.command,
        env: args.env,
        user: args.user.unwrap_or_default(),
        workdir: args.workdir.unwrap_or_default(),
        tty: args.tty,
        stdin: args.interactive,
        size: None,
    };
    terminal::exec_task(channel, start).await
}

pub async fn attach(access: &Access, args: AttachArgs) -> Result<i32> {
    let channel = client::channel(access).await?;
    let stdin = !args.no_stdin;
    terminal::attach_task(channel, &args.task, false, stdin).await
}
