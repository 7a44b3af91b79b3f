//! berth-runtime: an OCI runtime with runc's command-line surface. Single-threaded
//! by design: it forks its container processes.

mod caps;
mod cgroups;
mod cli;
mod commands;
mod container;
mod init;
mod namespaces;
mod process;
mod rootfs;
mod seccomp;
mod spec;
mod state;
mod sync;

use std::io::Write;

use clap::Parser;

use cli::{Args, Command};
use commands::{exec, lifecycle, query};

fn dispatch(args: &Args) -> anyhow::Result<i32> {
    let root = args.root.as_path();
    match &args.command {
        Command::Create(c) => {
            container::create(root, c, container::CreateMode::Create)?;
        }
        Command::Start { id } => lifecycle::start(root, id)?,
        Command::State { id } => query::state(root, id)?,
        Command::Kill {
            all,
            grace,
            id,
            signal,
        } => lifecycle::kill_cmd(root, id, signal, *all, *grace)?,
        Command::Delete { force, id } => lifecycle::delete(root, id, *force)?,
        Command::Run { create, detach } => return Ok(lifecycle::run(root, create, *detach)?),
        Command::Exec {
            env,
            cwd,
            user,
            id,
            command,
        } => {
            return Ok(exec::exec(
                root,
                id,
                command,
                env,
                cwd.as_deref(),
                user.as_deref(),
            )?);
        }
        Command::Ps { format, id } => query::ps(root, id, format)?,
        Command::List { format, quiet } => query::list(root, format, *quiet)?,
        Command::Events { stats: _, id } => query::stats(root, id)?,
    }
    Ok(0)
}

fn main() {
    let args = Args::parse();
    let code = match dispatch(&args) {
        Ok(code) => code,
        Err(err) => {
            let message = format!("berth-runtime: {err:#}");
            eprintln!("{message}");
            if let Some(log) = &args.log
                && let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
            {
                let _ = writeln!(f, "{message}");
            }
            1
        }
    };
    std::process::exit(code);
}
