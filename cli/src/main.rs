mod client;
mod closed_stdout;
mod cluster;
mod cluster_backup;
mod cluster_settings;
mod config;
mod dev;
mod dev_log;
mod events;
mod exec;
mod exit_code;
mod file_refs;
mod health;
mod images;
mod mount_flags;
mod network;
mod node;
mod output;
mod ports;
mod ps;
mod registry_auth;
mod removals;
mod run;
mod secret;
mod security_opt;
mod service;
mod stack;
mod system;
mod task_verbs;
mod terminal;
mod units;
mod volume;

use clap::{Parser, Subcommand};

/// The berth command-line interface.
#[derive(Debug, Parser)]
#[command(name = "berth", version = berth_proto::VERSION)]
struct Args {
    /// Controller API address (also BERTH_CONTROLLER).
    #[arg(
        long,
        env = "BERTH_CONTROLLER",
        default_value = "127.0.0.1:7400",
        global = true
    )]
    controller: String,
    /// Directory with ca.pem, cert.pem and key.pem (also BERTH_TLS_DIR;
    /// default ~/.config/berth/tls, where `berth dev` writes its bundle).
    #[arg(long, env = "BERTH_TLS_DIR", global = true)]
    tls_dir: Option<std::path::PathBuf>,
    /// Talk plain text, to a cluster started with --insecure-plaintext.
    #[arg(long, global = true)]
    insecure_plaintext: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The controllers' Raft group: status, membership.
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// Configs: small named blobs of non-secret data.
    #[command(subcommand)]
    Config(config::ConfigCmd),
    /// Secrets: values services get as files in /run/secrets.
    #[command(subcommand)]
    Secret(secret::SecretCmd),
    /// Services: declare them, scale them, see their tasks.
    #[command(subcommand)]
    Service(service::ServiceCmd),
    /// Nodes: list them, drain them, label them.
    #[command(subcommand)]
    Node(node::NodeCmd),
    /// Overlay networks: create, list, remove.
    #[command(subcommand)]
    Network(network::NetworkCmd),
    /// Stacks: Compose files deployed, diffed and pruned as one change.
    #[command(subcommand)]
    Stack(stack::StackCmd),
    /// Named local volumes: create, list with their users, inspect, remove.
    #[command(subcommand)]
    Volume(volume::VolumeCmd),
    /// Run a single-host cluster in this process (controller + agent).
    Dev(dev::DevArgs),
    #[command(flatten)]
    Images(images::ImageVerbs),
    #[command(flatten)]
    System(system::SystemVerbs),
    /// Run a one-off task, as `docker run` (exit code: the task's; 125 berth failed).
    Run(Box<run::RunArgs>),
    /// Tasks across all services, as `docker ps` (running ones; -a all).
    Ps(ps::PsArgs),
    /// A task's output (TASK: id or prefix, a run's name, SERVICE.SLOT).
    Logs(task_verbs::LogsArgs),
    /// The cluster's events as they happen (services, tasks, nodes, rollouts).
    Events(events::EventsArgs),
    /// Stop tasks: the stop signal, then SIGKILL after the grace.
    Stop(task_verbs::StopArgs),
    /// Send a signal to tasks (default SIGKILL).
    Kill(task_verbs::KillArgs),
    /// Remove one-offs that ended (-f: kill and remove running ones).
    Rm(task_verbs::RmArgs),
    /// Run a command in a running task; exits with its status (125: berth failed).
    Exec(exec::ExecArgs),
    /// Attach to a running task's own process (its output; its terminal or stdin).
    Attach(exec::AttachArgs),
}

fn main() {
    berth_pki::install_crypto_provider();
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) => {
            // A bad flag of `run` is berth's failure: Docker's 125.
            let argv: Vec<String> = std::env::args().collect();
            let code = if err.use_stderr() && run::is_run_invocation(&argv) {
                exit_code::BERTH_FAILED
            } else {
                err.exit_code()
            };
            let _ = err.print();
            std::process::exit(code);
        }
    };
    if !matches!(args.command, Command::Dev(_)) {
        closed_stdout::exit_quietly_when_closed();
    }
    // `berth dev` runs a controller and an agent: on one thread every
    // container start would wait for every other's work (as berth-agent,
    // two worker threads). A client command needs one.
    let runtime = match matches!(args.command, Command::Dev(_)) {
        true => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
        false => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("berth: cannot start: {err}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async move {
        if let Command::Dev(dev_args) = args.command {
            return dev::run(dev_args).await;
        }
        let access = client::Access {
            address: args.controller.clone(),
            tls_dir: args.tls_dir.clone(),
            insecure_plaintext: args.insecure_plaintext,
        };
        // A locked controller serves nothing but the unlock call.
        if let Command::Cluster(cluster::ClusterCmd::Unlock { key_file }) = &args.command {
            return cluster::unlock(&access, key_file.as_deref()).await;
        }
        if let Command::Cluster(cluster::ClusterCmd::Backup { file, format }) = &args.command {
            return cluster_backup::run(&access, file, *format).await;
        }
        if let Command::Cluster(cluster::ClusterCmd::Ca { rotate }) = &args.command {
            return cluster::ca(&access, *rotate).await;
        }
        if let Command::Cluster(cluster::ClusterCmd::Update(a)) = &args.command {
            return cluster_settings::update(&access, a).await;
        }
        if let Command::Cluster(cluster::ClusterCmd::Settings { format }) = &args.command {
            return cluster_settings::show(&access, *format).await;
        }
        // The image and system verbs talk to services of their own.
        if let Command::Images(verb) = &args.command {
            return images::run(&access, verb).await;
        }
        if let Command::System(verb) = &args.command {
            return system::run(&access, verb).await;
        }
        match args.command {
            Command::Run(run_args) => return run::run(&access, *run_args).await,
            Command::Logs(a) => return task_verbs::logs(&access, a).await,
            Command::Events(a) => return events::run(&access, a).await,
            Command::Stop(a) => return task_verbs::stop(&access, a).await,
            Command::Kill(a) => return task_verbs::kill(&access, a).await,
            Command::Rm(a) => return task_verbs::rm(&access, a).await,
            Command::Exec(cmd) => terminal::finish(exec::exec(&access, cmd).await),
            Command::Stack(cmd) => return stack::run(&access, cmd).await,
            Command::Attach(cmd) => terminal::finish(exec::attach(&access, cmd).await),
            _ => {}
        }
        let mut client = client::connect(&access).await?;
        match args.command {
            Command::Cluster(cmd) => cluster::run(&mut client, cmd).await,
            Command::Config(cmd) => config::run(&mut client, cmd).await,
            Command::Secret(cmd) => secret::run(&mut client, cmd).await,
            Command::Service(cmd) => service::run(&mut client, cmd).await,
            Command::Node(cmd) => node::run(&mut client, cmd).await,
            Command::Network(cmd) => network::run(&mut client, cmd).await,
            Command::Volume(cmd) => volume::run(&access, cmd).await,
            Command::Ps(a) => ps::run(&mut client, a).await,
            Command::Run(_)
            | Command::Events(_)
            | Command::Logs(_)
            | Command::Stop(_)
            | Command::Kill(_)
            | Command::Rm(_)
            | Command::Stack(_) => unreachable!("handled above"),
            Command::Dev(_) => {
                anyhow::bail!("`berth dev` starts a cluster; it takes no controller")
            }
            Command::Images(_) | Command::System(_) => {
                anyhow::bail!("served above, with their own services")
            }
            Command::Exec(_) | Command::Attach(_) => unreachable!("handled above"),
        }
    });
    if let Err(err) = result {
        // `run`'s own codes: the task's, or 125 when berth failed.
        if let Some(exit) = err.downcast_ref::<exit_code::Exit>() {
            if !exit.message.is_empty() {
                eprintln!("berth: {}", exit.message);
            }
            std::process::exit(exit.code);
        }
        eprintln!("berth: {err:#}");
        // A wait that ended paused, rolled back, ...: its own code.
        let code = err
            .downcast_ref::<service::RolloutEnded>()
            .map_or(1, |ended| ended.code);
        std::process::exit(code);
    }
}
