//! `berth logs`, `stop`, `kill`, `rm`: Docker's verbs on one task. TASK is a
//! task id or unique prefix, a `run --name`, or `SERVICE.SLOT` (the
//! controller resolves it).

use anyhow::Result;
use berth_proto::v1::{
    KillTaskRequest, RemoveTaskRequest, StopTaskRequest, TaskOutputRequest, task_output,
};
use clap::Args;

use crate::client::{Access, explain};
use crate::run::tasks_client;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the task ends.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The last N lines only ("all", the default, for every line).
    #[arg(long, value_parser = parse_tail, default_value = "all")]
    pub tail: u64,
    /// Prefix each line with the time it was written (RFC 3339).
    #[arg(short = 't', long)]
    pub timestamps: bool,
    pub task: String,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait after the stop signal before SIGKILL (default: the
    /// task's --stop-grace-period, else 10).
    #[arg(short = 't', long = "time", value_name = "SECONDS")]
    pub time: Option<u32>,
    #[arg(required = true)]
    pub tasks: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// The signal: KILL (default), TERM, SIGINT, 9, ...
    #[arg(short = 's', long, default_value = "SIGKILL")]
    pub signal: String,
    #[arg(required = true)]
    pub tasks: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill a running one-off (SIGKILL) and remove it.
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true)]
    pub tasks: Vec<String>,
}

/// `--tail`: "all" (0 to the agent) or a number of lines.
fn parse_tail(s: &str) -> Result<u64, String> {
    if s == "all" {
        return Ok(0);
    }
    s.parse()
        .map_err(|_| format!("--tail {s:?}: a number of lines, or \"all\""))
}

pub async fn logs(access: &Access, args: LogsArgs) -> Result<()> {
    let mut tasks = tasks_client(access).await?;
    let mut output = tasks
        .logs(TaskOutputRequest {
            task: args.task,
            follow: args.follow,
            tail: args.tail,
            wait: false,
        })
        .await
        .map_err(explain)?
        .into_inner();
    while let Some(message) = output.message().await.map_err(explain)? {
        if let Some(task_output::Item::Line(line)) = message.item {
            let mut text = Vec::new();
            if args.timestamps {
                text.extend_from_slice(line.time.as_bytes());
                text.push(b' ');
            }
            text.extend_from_slice(&line.line);
            crate::run::write_line(&text, line.stream == 1);
        }
    }
    Ok(())
}

pub async fn stop(access: &Access, args: StopArgs) -> Result<()> {
    let mut tasks = tasks_client(access).await?;
    let mut failures = Failures::default();
    for task in args.tasks {
        let request = StopTaskRequest {
            task: task.clone(),
            grace_seconds: args.time.unwrap_or(0),
            grace_given: args.time.is_some(),
        };
        let answer = tasks.stop(request).await;
        failures.report(
            &task,
            answer.map(|a| format!("{task}: stopped; {}", a.into_inner().outcome)),
        );
    }
    failures.done()
}

pub async fn kill(access: &Access, args: KillArgs) -> Result<()> {
    let mut tasks = tasks_client(access).await?;
    let mut failures = Failures::default();
    for task in args.tasks {
        let request = KillTaskRequest {
            task: task.clone(),
            signal: args.signal.clone(),
        };
        let answer = tasks.kill(request).await;
        failures.report(&task, answer.map(|_| task.clone()));
    }
    failures.done()
}

pub async fn rm(access: &Access, args: RmArgs) -> Result<()> {
    let mut tasks = tasks_client(access).await?;
    let mut failures = Failures::default();
    for task in args.tasks {
        let request = RemoveTaskRequest {
            task: task.clone(),
            force: args.force,
        };
        let answer = tasks.remove(request).await;
        failures.report(&task, answer.map(|_| task.clone()));
    }
    failures.done()
}

/// The verbs act on each TASK given, as Docker's do: what worked is
/// printed, what failed is said on stderr, and the exit code (1) says
/// something failed.
#[derive(Default)]
struct Failures(usize);

impl Failures {
    fn report(&mut self, task: &str, answer: Result<String, tonic::Status>) {
        match answer {
            Ok(line) => println!("{line}"),
            Err(status) => {
                eprintln!("berth: {task}: {:#}", explain(status));
                self.0 += 1;
            }
        }
    }

    fn done(self) -> Result<()> {
        if self.0 > 0 {
            return Err(crate::exit_code::Exit::code(1));
        }
        Ok(())
    }
}
