//! berth-runtime: an OCI runtime with runc's command-line surface. Single-threaded
//! by design: it forks its container processes. The work is the library's; this
//! binary parses runc's arguments into its typed calls and prints what they return.

mod cli;

use std::io::Write;

use anyhow::{Context, bail};
use berth_runtime::commands::exec::{self, ExecConfig};
use berth_runtime::commands::{lifecycle, query};
use berth_runtime::container::{self, CreateConfig, CreateMode};
use clap::Parser;

use cli::{Args, Command, CreateArgs};

fn create_config(args: &CreateArgs) -> CreateConfig {
    let mut config = CreateConfig::new(&args.id, &args.bundle).preserve_fds(args.preserve_fds);
    if let Some(pid_file) = &args.pid_file {
        config = config.pid_file(pid_file);
    }
    if let Some(socket) = &args.console_socket {
        config = config.console_socket(socket);
    }
    config
}

/// The environment variable with which a caller that is a child subreaper
/// (berth's shim) asks `create` for no monitor: it reaps init itself.
const NO_MONITOR_ENV: &str = "BERTH_RUNTIME_NO_MONITOR";

/// `create`'s mode: a monitor unless the caller asked for none. The variable
/// is taken out of the environment, so hooks do not inherit it.
fn create_mode() -> CreateMode {
    let handoff = std::env::var_os(NO_MONITOR_ENV).is_some_and(|v| v == "1");
    // SAFETY: berth-runtime is single-threaded (it forks containers).
    unsafe { std::env::remove_var(NO_MONITOR_ENV) };
    if handoff {
        CreateMode::Handoff
    } else {
        CreateMode::Create
    }
}

/// `UID` or `UID:GID`.
fn parse_user(user: &str) -> anyhow::Result<(u32, u32)> {
    let parsed = match user.split_once(':') {
        Some((u, g)) => u.parse().ok().zip(g.parse().ok()),
        None => user.parse().ok().map(|u| (u, u)),
    };
    parsed.with_context(|| format!("invalid --user {user:?}: expected UID or UID:GID"))
}

fn list(root: &std::path::Path, format: &str, quiet: bool) -> anyhow::Result<()> {
    let states = query::list(root)?;
    match format {
        _ if quiet => {
            for s in &states {
                println!("{}", s["id"].as_str().unwrap_or(""));
            }
        }
        "json" => println!("{}", serde_json::Value::Array(states)),
        "table" => {
            println!(
                "{:<24} {:<8} {:<8} {:<40} CREATED",
                "ID", "PID", "STATUS", "BUNDLE"
            );
            for s in &states {
                println!(
                    "{:<24} {:<8} {:<8} {:<40} {}",
                    s["id"].as_str().unwrap_or(""),
                    s["pid"],
                    s["status"].as_str().unwrap_or(""),
                    s["bundle"].as_str().unwrap_or(""),
                    s["created"].as_str().unwrap_or(""),
                );
            }
        }
        other => bail!("unknown format {other:?}: use table or json"),
    }
    Ok(())
}

fn ps(root: &std::path::Path, id: &str, format: &str) -> anyhow::Result<()> {
    let pids = query::ps(root, id)?;
    match format {
        "json" => println!("{}", serde_json::to_string(&pids).unwrap_or_default()),
        "table" => {
            println!("{:<8} CMD", "PID");
            for pid in pids {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                println!("{pid:<8} {}", cmd.trim_end());
            }
        }
        other => bail!("unknown format {other:?}: use table or json"),
    }
    Ok(())
}

fn dispatch(args: &Args) -> anyhow::Result<i32> {
    let root = args.root.as_path();
    match &args.command {
        Command::Create(c) => {
            container::create(root, &create_config(c), create_mode())?;
        }
        Command::Start { id } => lifecycle::start(root, id)?,
        Command::State { id } => {
            let state = query::state(root, id)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&state).unwrap_or_default()
            );
        }
        Command::Kill {
            all,
            grace,
            id,
            signal,
        } => lifecycle::kill(root, id, signal, *all, *grace)?,
        Command::Delete { force, id } => lifecycle::delete(root, id, *force)?,
        Command::Run { create, detach } => {
            return Ok(lifecycle::run(root, &create_config(create), *detach)?);
        }
        Command::Exec {
            env,
            cwd,
            user,
            tty,
            console_socket,
            detach,
            pid_file,
            id,
            command,
        } => {
            let config = ExecConfig {
                command: command.clone(),
                env: env.clone(),
                cwd: cwd.clone(),
                user: user.as_deref().map(parse_user).transpose()?,
                tty: *tty,
                console_socket: console_socket.clone(),
                detach: *detach,
                pid_file: pid_file.clone(),
            };
            return Ok(exec::exec(root, id, &config)?);
        }
        Command::Ps { format, id } => ps(root, id, format)?,
        Command::List { format, quiet } => list(root, format, *quiet)?,
        Command::Events { stats: _, id } => {
            let stats = query::stats(root, id)?;
            let event = serde_json::json!({ "type": "stats", "id": id, "data": stats });
            println!("{event}");
        }
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
            let code = err
                .downcast_ref::<berth_runtime::commands::CommandError>()
                .map_or(1, |e| e.exit_code());
            if let Some(log) = &args.log
                && let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
            {
                let _ = writeln!(f, "{message}");
            }
            code
        }
    };
    std::process::exit(code);
}
