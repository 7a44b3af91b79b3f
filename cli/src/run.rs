//! `berth run`: a one-off task, as `docker run` runs a container. The
//! controller makes it a service of one task marked one-off (restart
//! condition none); without `-d` its output streams here and `berth` exits
//! with its code (125: berth failed, 126: the command cannot be run, 127: not
//! found), and Ctrl-C (SIGINT, SIGTERM) is sent on to the task as Docker's
//! `--sig-proxy` does.
//!
//! Adding flags: a spec flag is a field of [`RunArgs`] (or a flattened
//! group) and one line in [`spec_of`] (`--mount`/`-v` go there); a way of
//! attaching (`-i`/`-t`) is a field and a branch in [`run`] before
//! [`attached`].

use anyhow::{Context, Result, anyhow};
use berth_proto::v1::tasks_client::TasksClient;
use berth_proto::v1::{
    KillTaskRequest, Placement, RunRequest, ServiceSpec, StopTaskRequest, Task, TaskOutputRequest,
    TaskState, task_output,
};
use clap::Args;
use std::io::Write;
use tonic::transport::Channel;

use crate::client::{Access, explain};
use crate::exit_code::Exit;
use crate::service::task_flags::ResourceFlags;

pub type Tasks = TasksClient<Channel>;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Print the task id and return at once (the task runs on).
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Remove the one-off (its service and task) once the task ended; done by
    /// the controller, also with -d.
    #[arg(long)]
    pub rm: bool,
    /// The one-off's name (default: a free adjective_surname); what `logs`,
    /// `stop`, `kill`, `rm` and `ps --filter name=` take.
    #[arg(long)]
    pub name: Option<String>,
    /// The node to run on, by name or id (default: the scheduler picks).
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Keep the task's stdin open and send this terminal's input to it.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Run the task on a terminal (a PTY through its agent; with -i, the
    /// local terminal is raw, the window size follows, Ctrl-C goes to it).
    #[arg(short = 't', long)]
    pub tty: bool,
    #[command(flatten)]
    pub container: ContainerFlags,
    /// Send SIGINT/SIGTERM this process gets on to the task (Docker's default).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub sig_proxy: bool,
    /// Leave the image's tag unpinned (the node resolves it when it pulls).
    #[arg(long)]
    pub no_resolve_image: bool,
    pub image: String,
    /// The command (replaces the image's CMD) and its arguments.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

/// What the container runs with: Docker's `run` flags for the spec.
#[derive(Debug, Args)]
pub struct ContainerFlags {
    /// KEY=VALUE in the environment; repeatable.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Publish a port: PUBLISHED:TARGET[/udp], or
    /// published=P,target=T[,protocol=udp][,mode=host]; repeatable.
    #[arg(short = 'p', long = "publish", value_name = "PORTS")]
    pub publish: Vec<String>,
    /// A network to join (default: the cluster's `berth`); repeatable.
    #[arg(long)]
    pub network: Vec<String>,
    #[command(flatten)]
    pub resources: ResourceFlags,
    #[command(flatten)]
    pub mounts: crate::mount_flags::MountFlags,
    /// KEY=VALUE label of the container (as its annotations; also what `ps
    /// --filter label=` matches); repeatable.
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// A resource limit: NAME=SOFT:HARD, or NAME=N for both (nofile=1024:2048);
    /// repeatable.
    #[arg(long, value_parser = crate::service::settings::parse_ulimit, value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<berth_proto::v1::Ulimit>,
    /// Run an init (tini) as PID 1 that reaps zombies and forwards signals.
    #[arg(long)]
    pub init: bool,
    /// The user to run as: uid[:gid] or name[:group].
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// The working directory inside the container.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Replace the image's ENTRYPOINT.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// The container's hostname.
    #[arg(long)]
    pub hostname: Option<String>,
}

/// The spec the controller turns into a one-off (it sets mode, restart
/// policy and `one_off` itself). Bad input is refused here, before any call.
pub fn spec_of(args: &RunArgs) -> Result<ServiceSpec> {
    let c = &args.container;
    let mut labels = std::collections::BTreeMap::new();
    for label in &c.label {
        let (k, v) = label.split_once('=').unwrap_or((label.as_str(), ""));
        labels.insert(k.to_string(), v.to_string());
    }
    for env in &c.env {
        if !env.contains('=') || env.starts_with('=') {
            return Err(anyhow!("--env {env:?} is not KEY=VALUE"));
        }
    }
    berth_proto::ulimits::check_all(&c.ulimit)?;
    Ok(ServiceSpec {
        name: args.name.clone().unwrap_or_default(),
        image: args.image.clone(),
        command: c.entrypoint.iter().cloned().collect(),
        args: args.command.clone(),
        env: c.env.clone(),
        ports: c
            .publish
            .iter()
            .map(|p| crate::ports::parse_publish(p))
            .collect::<Result<_>>()?,
        networks: c.network.clone(),
        mounts: c.mounts.mounts()?,
        resources: Some(c.resources.apply(None)),
        container_labels: labels.clone(),
        labels,
        ulimits: c.ulimit.clone(),
        init: c.init,
        user: c.user.clone().unwrap_or_default(),
        workdir: c.workdir.clone().unwrap_or_default(),
        hostname: c.hostname.clone().unwrap_or_default(),
        placement: Some(Placement::default()),
        auto_remove: args.rm,
        tty: args.tty,
        open_stdin: args.interactive,
        ..Default::default()
    })
}

/// A client of the controller's `Tasks` service.
pub async fn tasks_client(access: &Access) -> Result<Tasks> {
    Ok(TasksClient::new(crate::client::channel(access).await?)
        .max_decoding_message_size(berth_proto::MAX_MESSAGE_BYTES))
}

pub async fn run(access: &Access, args: RunArgs) -> Result<()> {
    let spec = spec_of(&args).map_err(Exit::berth)?;
    let mut tasks = tasks_client(access).await.map_err(Exit::berth)?;
    let answer = tasks
        .run(RunRequest {
            spec: Some(spec),
            node: args.node.clone().unwrap_or_default(),
            no_resolve_image: args.no_resolve_image,
        })
        .await
        .map_err(|status| Exit::berth(explain(status)))?
        .into_inner();
    for warning in &answer.warnings {
        eprintln!("warning: {warning}");
    }
    let task = answer
        .task
        .ok_or_else(|| Exit::berth(anyhow!("the controller answered without a task")))?;
    if args.detach {
        // As `docker run -d`: back once the task runs (so `exec` works at
        // once), or with its failure if it ended without running.
        if let Started::Ended(Some(ended_task)) =
            wait_running(access, &task.id, &task.service_id).await?
            && ended_task.running_since_ms == 0
        {
            return Err(ended(&ended_task));
        }
        println!("{}", task.id);
        return Ok(());
    }
    if args.interactive || args.tty {
        return interactive(access, &mut tasks, &task.id, &task.service_id, &args).await;
    }
    attached(&mut tasks, &task.id, args.sig_proxy).await
}

/// How a task's start ended: it runs, or it ended first (its record, with
/// its exit code; None when it is gone already, removed by `--rm`).
enum Started {
    Running,
    Ended(Option<Box<Task>>),
}

/// Waits until the task runs or ended without running on.
async fn wait_running(access: &Access, task_id: &str, service_id: &str) -> Result<Started> {
    let mut cluster = crate::client::connect(access).await.map_err(Exit::berth)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let listed = cluster
            .list_tasks(berth_proto::v1::ListTasksRequest {
                service: service_id.to_string(),
                node: String::new(),
            })
            .await
            .map_err(|status| Exit::berth(explain(status)))?
            .into_inner()
            .tasks;
        // The task was written with its service: not listed is removed.
        let Some(task) = listed.into_iter().find(|t| t.id == task_id) else {
            return Ok(Started::Ended(None));
        };
        let state = task
            .status
            .as_ref()
            .map_or(TaskState::New as i32, |s| s.state);
        if state == TaskState::Running as i32 {
            return Ok(Started::Running);
        }
        if state > TaskState::Running as i32 {
            return Ok(Started::Ended(Some(Box::new(task))));
        }
        if std::time::Instant::now() > deadline {
            return Err(Exit::berth(anyhow!(
                "task {task_id} did not start within 5 minutes"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// `-i`/`-t`: the task's own terminal or stdin, through its agent, once it
/// runs; berth exits with the task's code. A task that ended before it could
/// be attached is reported as `attached` reports it (its output, its code).
async fn interactive(
    access: &Access,
    tasks: &mut Tasks,
    task_id: &str,
    service_id: &str,
    args: &RunArgs,
) -> Result<()> {
    // Attach only once it runs: an attach that is refused would have read
    // this terminal's input already.
    if let Started::Ended(_) = wait_running(access, task_id, service_id).await? {
        return attached(tasks, task_id, false).await;
    }
    let channel = crate::client::channel(access).await.map_err(Exit::berth)?;
    match crate::terminal::attach_task(channel, task_id, args.tty, args.interactive).await {
        Ok(code) => Err(Exit::code(code)),
        // It ended between the check and the attach: its output and code.
        Err(err) if format!("{err:#}").contains("is not running") => {
            attached(tasks, task_id, false).await
        }
        Err(err) => Err(Exit::berth(err)),
    }
}

/// Streams the task's output (stdout here to stdout, stderr to stderr) until
/// it ended, then exits with its code.
pub async fn attached(tasks: &mut Tasks, task_id: &str, sig_proxy: bool) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut output = tasks
        .logs(TaskOutputRequest {
            task: task_id.to_string(),
            follow: true,
            tail: 0,
            wait: true,
        })
        .await
        .map_err(|status| Exit::berth(explain(status)))?
        .into_inner();
    let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    loop {
        let proxied = tokio::select! {
            message = output.message() => {
                let item = message
                    .map_err(|status| Exit::berth(explain(status)))?
                    .and_then(|m| m.item);
                match item {
                    Some(task_output::Item::Line(line)) => write_line(&line.line, line.stream == 1),
                    Some(task_output::Item::Exit(task)) => return Err(ended(&task)),
                    None => {
                        return Err(Exit::berth(anyhow!(
                            "the output of task {task_id} ended before the task did"
                        )));
                    }
                }
                None
            }
            _ = interrupt.recv() => Some("SIGINT"),
            _ = terminate.recv() => Some("SIGTERM"),
        };
        if let Some(signal) = proxied {
            if !sig_proxy {
                return Err(Exit::code(130));
            }
            let kill = KillTaskRequest {
                task: task_id.to_string(),
                signal: signal.to_string(),
            };
            match tasks.kill(kill).await {
                Ok(_) => {}
                // Not started yet: nothing to signal; it is stopped instead.
                Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                    let stop = StopTaskRequest {
                        task: task_id.to_string(),
                        ..Default::default()
                    };
                    if let Err(status) = tasks.stop(stop).await {
                        eprintln!("berth: task {task_id} not stopped: {}", status.message());
                    }
                }
                Err(status) => {
                    eprintln!(
                        "berth: {signal} not sent to task {task_id}: {}",
                        status.message()
                    );
                }
            }
        }
    }
}

pub fn write_line(line: &[u8], stderr: bool) {
    let result = if stderr {
        let mut err = std::io::stderr().lock();
        err.write_all(line).and_then(|()| err.write_all(b"\n"))
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(line)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush())
    };
    // A closed stdout (`| head`) is not the task's failure: keep waiting.
    let _ = result;
}

/// How `berth run` exits for the task's final record: its code; or 125,
/// with the reason, when it never ran its command (image, network, node);
/// 126 and 127 say so too (the agent's words for a command that cannot run).
pub fn ended(task: &Task) -> anyhow::Error {
    let status = task.status.clone().unwrap_or_default();
    let why = if status.error.is_empty() {
        status.message.clone()
    } else {
        status.error.clone()
    };
    let never_ran = task.running_since_ms == 0;
    match status.exit_code {
        Some(code) if never_ran && code != 0 => Exit {
            code,
            message: format!("task {}: {why}", task.id),
        }
        .into(),
        Some(code) => Exit::code(code),
        None => {
            let state = TaskState::try_from(status.state).map_or("unknown", |s| s.short_name());
            Exit::berth(anyhow!("task {} {state}: {why}", task.id))
        }
    }
}

/// Whether the command line asks for `run` (its flag errors exit 125 as
/// Docker's do): the first word that is not a global option or its value.
pub fn is_run_invocation(argv: &[String]) -> bool {
    let mut words = argv.iter().skip(1);
    while let Some(word) = words.next() {
        match word.as_str() {
            "--controller" | "--tls-dir" => {
                words.next();
            }
            w if w.starts_with('-') => {}
            w => return w == "run",
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(argv: &[&str]) -> RunArgs {
        Cli::try_parse_from(std::iter::once("run").chain(argv.iter().copied()))
            .expect("parse")
            .run
    }

    #[test]
    fn docker_run_flags_make_the_spec() {
        let args = parse(&[
            "-d",
            "--rm",
            "--name",
            "job",
            "-e",
            "A=1",
            "-p",
            "8080:80",
            "--network",
            "back",
            "--memory",
            "64m",
            "--cpus",
            "0.5",
            "-l",
            "team=x",
            "--ulimit",
            "nofile=123:456",
            "--init",
            "busybox",
            "sh",
            "-c",
            "exit 3",
        ]);
        assert!(args.detach && args.rm);
        let spec = spec_of(&args).expect("spec");
        assert_eq!(spec.name, "job");
        assert_eq!(spec.image, "busybox");
        assert!(spec.command.is_empty(), "the image's entrypoint stays");
        assert_eq!(spec.args, ["sh", "-c", "exit 3"]);
        assert_eq!(spec.env, ["A=1"]);
        assert_eq!(spec.ports[0].published_port, 8080);
        assert_eq!(spec.networks, ["back"]);
        let limits = spec.resources.and_then(|r| r.limits).expect("limits");
        assert_eq!((limits.memory_bytes, limits.milli_cpus), (64 << 20, 500));
        assert_eq!(spec.labels.get("team").map(String::as_str), Some("x"));
        assert_eq!(
            spec.container_labels.get("team").map(String::as_str),
            Some("x")
        );
        assert_eq!(
            spec.ulimits
                .iter()
                .map(berth_proto::ulimits::display)
                .collect::<Vec<_>>(),
            ["nofile=123:456"]
        );
        assert!(spec.init);
        assert!(spec.auto_remove);
        // Flags after the image belong to the command.
        let args = parse(&["busybox", "ls", "-l", "--rm"]);
        assert!(!args.rm);
        assert_eq!(args.command, ["ls", "-l", "--rm"]);
    }

    #[test]
    fn bad_flags_are_refused_before_any_call() {
        let args = parse(&["-p", "99999:80", "busybox"]);
        assert!(spec_of(&args).is_err());
        let args = parse(&["-e", "=x", "busybox"]);
        assert!(spec_of(&args).is_err());
        let args = parse(&["--ulimit", "nofile=1", "--ulimit", "nofile=2", "busybox"]);
        assert!(spec_of(&args).is_err());
        let bad = Cli::try_parse_from(["run", "--ulimit", "files=1", "busybox"])
            .expect_err("unknown ulimit");
        assert!(
            bad.to_string().contains("ulimit files: unknown name"),
            "{bad}"
        );
    }

    #[test]
    fn run_is_told_apart_behind_global_options() {
        let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert!(is_run_invocation(&argv("berth run busybox")));
        assert!(is_run_invocation(&argv(
            "berth --controller 1.2.3.4:7400 run -x"
        )));
        assert!(!is_run_invocation(&argv("berth service create run")));
        assert!(!is_run_invocation(&argv("berth --tls-dir run ps")));
    }

    #[test]
    fn the_exit_code_is_the_tasks_or_125() {
        let task = |code: Option<i32>, ran: bool, state: TaskState| Task {
            id: "t1".into(),
            running_since_ms: if ran { 5 } else { 0 },
            status: Some(berth_proto::v1::TaskStatus {
                state: state as i32,
                exit_code: code,
                error: "why".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let code = |e: anyhow::Error| e.downcast_ref::<Exit>().map(|x| x.code);
        assert_eq!(
            code(ended(&task(Some(0), true, TaskState::Complete))),
            Some(0)
        );
        assert_eq!(
            code(ended(&task(Some(3), true, TaskState::Failed))),
            Some(3)
        );
        let not_found = ended(&task(Some(127), false, TaskState::Failed));
        assert_eq!(code(not_found), Some(127));
        assert_eq!(
            code(ended(&task(None, false, TaskState::Rejected))),
            Some(125)
        );
    }
}
