//! `berth service update NAME [flags]`: the flags of `service create`, with
//! Docker's `-add`/`-rm` forms for lists, applied to the service's current
//! spec. Only what a flag names changes.

use anyhow::{Context, Result, bail};
use berth_proto::v1::service_spec::Mode;
use berth_proto::v1::{HealthCheck, PortProtocol, ServiceSpec};
use clap::Args;

use super::rollout_flags::{RollbackFlags, UpdateFlags};
use super::task_flags::{ResourceFlags, RestartFlags, StopFlags};
use crate::health::{HealthArgs, health_check_of};

#[derive(Debug, Args)]
pub struct UpdateArgs {
    pub name: String,
    /// A new image reference (a new tag, or the same tag: it is resolved to
    /// its digest again and rolls out when that changed).
    #[arg(long)]
    pub image: Option<String>,
    /// The command's arguments, replacing the current ones ("-c 'sleep 5'":
    /// split as a shell would).
    #[arg(long, allow_hyphen_values = true)]
    pub args: Option<String>,
    /// Tasks to run (replicated services).
    #[arg(long)]
    pub replicas: Option<u64>,
    /// Add or change KEY=VALUE; repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub env_add: Vec<String>,
    /// Remove the variable KEY; repeatable.
    #[arg(long, value_name = "KEY")]
    pub env_rm: Vec<String>,
    /// Publish a port (as `create --publish`); repeatable.
    #[arg(long, value_name = "PORT")]
    pub publish_add: Vec<String>,
    /// Stop publishing PUBLISHED[/udp]; repeatable.
    #[arg(long, value_name = "PUBLISHED[/PROTOCOL]")]
    pub publish_rm: Vec<String>,
    /// Add a placement constraint; repeatable.
    #[arg(long)]
    pub constraint_add: Vec<String>,
    /// Remove a placement constraint (as written when added); repeatable.
    #[arg(long)]
    pub constraint_rm: Vec<String>,
    /// Attach the tasks to a network; repeatable.
    #[arg(long)]
    pub network_add: Vec<String>,
    /// Detach the tasks from a network; repeatable.
    #[arg(long)]
    pub network_rm: Vec<String>,
    /// Add or change a KEY=VALUE label of the service; repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub label_add: Vec<String>,
    /// Remove the label KEY; repeatable.
    #[arg(long, value_name = "KEY")]
    pub label_rm: Vec<String>,
    /// Give the tasks a secret (as `create --secret`); repeatable.
    #[arg(long)]
    pub secret_add: Vec<String>,
    /// Take the secret NAME away; repeatable.
    #[arg(long, value_name = "NAME")]
    pub secret_rm: Vec<String>,
    /// Give the tasks a config (as `create --config`); repeatable.
    #[arg(long)]
    pub config_add: Vec<String>,
    /// Take the config NAME away; repeatable.
    #[arg(long, value_name = "NAME")]
    pub config_rm: Vec<String>,
    /// Add a mount (as `create --mount`), replacing one at the same target;
    /// repeatable.
    #[arg(long, value_name = "type=...,target=...")]
    pub mount_add: Vec<String>,
    /// Remove the mount at TARGET; repeatable.
    #[arg(long, value_name = "TARGET")]
    pub mount_rm: Vec<String>,
    #[command(flatten)]
    pub resources: ResourceFlags,
    #[command(flatten)]
    pub restart: RestartFlags,
    #[command(flatten)]
    pub stop: StopFlags,
    #[command(flatten)]
    pub settings: super::settings::SettingsUpdateFlags,
    /// User the tasks run as.
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Add a capability; repeatable.
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop a capability; repeatable.
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Mount the root filesystem read-only (or not: --read-only=false).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true, value_name = "BOOL")]
    pub read_only: Option<bool>,
    #[command(flatten)]
    pub health: HealthArgs,
    #[command(flatten)]
    pub update: UpdateFlags,
    #[command(flatten)]
    pub rollback: RollbackFlags,
    /// Replace every task even when the spec is unchanged.
    #[arg(long)]
    pub force: bool,
    /// Leave the image's tag unpinned: the nodes resolve it when they pull.
    #[arg(long)]
    pub no_resolve_image: bool,
    /// Send this client's registry credentials for the image's registry (as
    /// `create --with-registry-auth`).
    #[arg(long)]
    pub with_registry_auth: bool,
    /// Return at once instead of waiting for the rollout (--detach=false waits).
    #[arg(long, short = 'd', num_args = 0..=1, default_missing_value = "true", require_equals = true, value_name = "BOOL")]
    pub detach: Option<bool>,
}

/// `spec` with the flags of `args` applied.
pub fn apply(mut spec: ServiceSpec, args: &UpdateArgs) -> Result<ServiceSpec> {
    if let Some(image) = &args.image {
        spec.image = image.clone();
        // A new tag: the controller resolves its digest afresh.
        spec.image_digest.clear();
    }
    if let Some(text) = &args.args {
        spec.args =
            shlex::split(text).with_context(|| format!("--args {text:?}: unbalanced quotes"))?;
    }
    if let Some(n) = args.replicas {
        match spec.mode.as_mut() {
            Some(Mode::Replicated(r)) => r.replicas = n,
            _ => bail!(
                "service {} is global: it runs one task per node and has no replica count",
                spec.name
            ),
        }
    }
    apply_lists(&mut spec, args)?;
    if !args.resources.is_empty() {
        spec.resources = Some(args.resources.apply(spec.resources.take()));
    }
    if !args.restart.is_empty() {
        spec.restart_policy = Some(args.restart.apply(spec.restart_policy.take()));
    }
    args.stop.apply(&mut spec);
    args.settings.apply(&mut spec)?;
    if let Some(user) = &args.user {
        spec.user = user.clone();
    }
    add_all(&mut spec.cap_add, &args.cap_add);
    add_all(&mut spec.cap_drop, &args.cap_drop);
    if let Some(ro) = args.read_only {
        spec.read_only_rootfs = ro;
    }
    spec.healthcheck = apply_health(spec.healthcheck.take(), &args.health)?;
    spec.update_config = args.update.apply(spec.update_config.take());
    spec.rollback_config = args.rollback.apply(spec.rollback_config.take());
    if args.force {
        spec.force_update += 1;
    }
    Ok(spec)
}

fn apply_lists(spec: &mut ServiceSpec, args: &UpdateArgs) -> Result<()> {
    for key in &args.env_rm {
        spec.env.retain(|e| env_key(e) != key);
    }
    for entry in &args.env_add {
        if !entry.contains('=') {
            bail!("--env-add {entry:?} is not KEY=VALUE");
        }
        let key = env_key(entry).to_string();
        spec.env.retain(|e| env_key(e) != key);
        spec.env.push(entry.clone());
    }
    for port in &args.publish_rm {
        let (number, protocol) = published_key(port)?;
        spec.ports
            .retain(|p| (p.published_port, p.protocol) != (number, protocol));
    }
    for text in &args.publish_add {
        let port = crate::ports::parse_publish(text)?;
        spec.ports
            .retain(|p| (p.published_port, p.protocol) != (port.published_port, port.protocol));
        spec.ports.push(port);
    }
    if !args.constraint_rm.is_empty() || !args.constraint_add.is_empty() {
        let placement = spec.placement.get_or_insert_with(Default::default);
        placement
            .constraints
            .retain(|c| !args.constraint_rm.contains(c));
        add_all(&mut placement.constraints, &args.constraint_add);
    }
    spec.networks.retain(|n| !args.network_rm.contains(n));
    add_all(&mut spec.networks, &args.network_add);
    for key in &args.label_rm {
        spec.labels.remove(key);
    }
    for entry in &args.label_add {
        let Some((k, v)) = entry.split_once('=') else {
            bail!("--label-add {entry:?} is not KEY=VALUE");
        };
        spec.labels.insert(k.to_string(), v.to_string());
    }
    spec.secrets
        .retain(|s| !args.secret_rm.contains(&s.secret_name));
    for text in &args.secret_add {
        let secret = crate::file_refs::secret(text)?;
        spec.secrets.retain(|s| s.secret_name != secret.secret_name);
        spec.secrets.push(secret);
    }
    spec.configs
        .retain(|c| !args.config_rm.contains(&c.config_name));
    for text in &args.config_add {
        let config = crate::file_refs::config(text)?;
        spec.configs.retain(|c| c.config_name != config.config_name);
        spec.configs.push(config);
    }
    apply_mounts(spec, args)
}

/// `--mount-rm TARGET` then `--mount-add` (which replaces a mount at the same
/// target, as Docker's does).
fn apply_mounts(spec: &mut ServiceSpec, args: &UpdateArgs) -> Result<()> {
    use berth_proto::mounts::same_target;
    for target in &args.mount_rm {
        let before = spec.mounts.len();
        spec.mounts.retain(|m| !same_target(&m.target, target));
        if spec.mounts.len() == before {
            bail!(
                "--mount-rm {target:?}: service {} has no mount at that target",
                spec.name
            );
        }
    }
    for text in &args.mount_add {
        let mount = crate::mount_flags::parse_mount(text)?;
        spec.mounts
            .retain(|m| !same_target(&m.target, &mount.target));
        spec.mounts.push(mount);
    }
    Ok(())
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// `80`, `80/udp` or a whole `--publish` form: the published port and protocol.
fn published_key(text: &str) -> Result<(u32, i32)> {
    if let Ok(port) = crate::ports::parse_publish(text) {
        return Ok((port.published_port, port.protocol));
    }
    let (number, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
    let protocol = match protocol {
        "tcp" => PortProtocol::Tcp,
        "udp" => PortProtocol::Udp,
        _ => bail!("--publish-rm {text:?}: the protocol is tcp or udp"),
    };
    match number.parse::<u16>() {
        Ok(n) if n > 0 => Ok((u32::from(n), protocol as i32)),
        _ => bail!("--publish-rm {text:?}: expected PUBLISHED[/tcp|/udp] with a port of 1-65535"),
    }
}

fn add_all(list: &mut Vec<String>, items: &[String]) {
    for item in items {
        if !list.contains(item) {
            list.push(item.clone());
        }
    }
}

/// The health check after the flags: a probe flag replaces the probe, a timing
/// flag that timing; `--no-healthcheck` turns every check off.
fn apply_health(current: Option<HealthCheck>, flags: &HealthArgs) -> Result<Option<HealthCheck>> {
    let Some(given) = health_check_of(flags)? else {
        return Ok(current);
    };
    if given.disable {
        return Ok(Some(given));
    }
    let mut check = current.filter(|c| !c.disable).unwrap_or_default();
    if given.probe.is_some() {
        check.probe = given.probe;
    }
    for (mine, theirs) in [
        (&mut check.interval_ms, given.interval_ms),
        (&mut check.timeout_ms, given.timeout_ms),
        (&mut check.start_period_ms, given.start_period_ms),
    ] {
        if theirs != 0 {
            *mine = theirs;
        }
    }
    if given.retries != 0 {
        check.retries = given.retries;
    }
    Ok(Some(check))
}

#[cfg(test)]
mod tests {
    use berth_proto::v1::{ReplicatedMode, SecretReference};
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: UpdateArgs,
    }

    fn update(spec: ServiceSpec, argv: &[&str]) -> Result<ServiceSpec> {
        let cli = Cli::try_parse_from(["update"].iter().chain(argv)).expect("parse");
        apply(spec, &cli.args)
    }

    fn web() -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            image: "web:1".into(),
            image_digest: "sha256:aa".into(),
            env: vec!["A=1".into(), "B=2".into()],
            mode: Some(Mode::Replicated(ReplicatedMode { replicas: 3 })),
            ports: vec![crate::ports::parse_publish("8080:80").expect("port")],
            secrets: vec![SecretReference {
                secret_name: "pw".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn lists_take_add_and_rm() {
        let spec = update(
            web(),
            &[
                "web",
                "--env-rm",
                "A",
                "--env-add",
                "B=3",
                "--env-add",
                "C=4",
                "--publish-rm",
                "8080",
                "--publish-add",
                "9090:90/udp",
                "--label-add",
                "team=a",
                "--secret-rm",
                "pw",
                "--constraint-add",
                "node.labels.zone==a",
                "--network-add",
                "back",
            ],
        )
        .expect("update");
        assert_eq!(spec.env, vec!["B=3", "C=4"]);
        assert_eq!(spec.ports.len(), 1);
        assert_eq!(spec.ports[0].published_port, 9090);
        assert_eq!(spec.ports[0].protocol, PortProtocol::Udp as i32);
        assert_eq!(spec.labels.get("team").map(String::as_str), Some("a"));
        assert!(spec.secrets.is_empty());
        assert_eq!(
            spec.placement.map(|p| p.constraints),
            Some(vec!["node.labels.zone==a".to_string()])
        );
        assert_eq!(spec.networks, vec!["back"]);
    }

    #[test]
    fn only_what_a_flag_names_changes() {
        let same = update(web(), &["web"]).expect("update");
        assert_eq!(same, web());
        let image = update(web(), &["web", "--image", "web:2"]).expect("update");
        assert_eq!(image.image, "web:2");
        assert!(
            image.image_digest.is_empty(),
            "a new tag is resolved afresh"
        );
        let forced = update(web(), &["web", "--force", "--replicas", "5"]).expect("update");
        assert_eq!(forced.force_update, 1);
        assert_eq!(
            forced.mode,
            Some(Mode::Replicated(ReplicatedMode { replicas: 5 }))
        );
        let stop = update(
            web(),
            &[
                "web",
                "--stop-signal",
                "SIGQUIT",
                "--stop-grace-period",
                "1m",
            ],
        )
        .expect("update");
        assert_eq!(
            (stop.stop_signal.as_str(), stop.stop_grace_seconds),
            ("SIGQUIT", 60)
        );
        let args = update(web(), &["web", "--args", "-c 'sleep 5'"]).expect("update");
        assert_eq!(args.args, vec!["-c", "sleep 5"]);
        let rollout = update(
            web(),
            &[
                "web",
                "--update-parallelism",
                "2",
                "--update-order",
                "start-first",
                "--update-monitor",
                "1s",
                "--rollback-parallelism",
                "0",
            ],
        )
        .expect("update");
        let config = rollout.update_config.expect("config");
        assert_eq!((config.parallelism, config.monitor_ms), (2, 1_000));
        assert_eq!(rollout.rollback_config.map(|c| c.parallelism), Some(0));
    }

    #[test]
    fn health_flags_change_what_they_name() {
        let checked = update(
            web(),
            &["web", "--health-cmd", "true", "--health-retries", "2"],
        )
        .expect("update");
        let check = checked.healthcheck.clone().expect("check");
        assert_eq!(check.retries, 2);
        let retimed = update(checked, &["web", "--health-interval", "2s"]).expect("update");
        let check = retimed.healthcheck.clone().expect("check");
        assert_eq!((check.retries, check.interval_ms), (2, 2_000));
        assert!(check.probe.is_some());
        let off = update(retimed, &["web", "--no-healthcheck"]).expect("update");
        assert!(off.healthcheck.expect("check").disable);
    }

    #[test]
    fn bad_flags_name_what_is_wrong() {
        let err = update(web(), &["web", "--env-add", "NOPE"]).expect_err("bad env");
        assert!(err.to_string().contains("--env-add \"NOPE\""), "{err}");
        let global = ServiceSpec {
            mode: Some(Mode::Global(Default::default())),
            ..web()
        };
        let err = update(global, &["web", "--replicas", "2"]).expect_err("global");
        assert!(err.to_string().contains("is global"), "{err}");
        let err = update(web(), &["web", "--args", "'open"]).expect_err("quotes");
        assert!(err.to_string().contains("unbalanced"), "{err}");
    }

    #[test]
    fn detach_takes_dockers_spellings() {
        for (argv, want) in [
            (&["web"][..], None),
            (&["web", "--detach"][..], Some(true)),
            (&["web", "-d"][..], Some(true)),
            (&["web", "--detach=false"][..], Some(false)),
            (&["--detach", "web"][..], Some(true)),
        ] {
            let cli = Cli::try_parse_from(["update"].iter().chain(argv)).expect("parse");
            assert_eq!(cli.args.detach, want, "{argv:?}");
        }
    }

    #[test]
    fn mounts_are_added_replaced_and_removed_by_target() {
        let spec = update(
            web(),
            &["web", "--mount-add", "type=volume,src=data,dst=/data"],
        )
        .expect("add");
        assert_eq!(spec.mounts.len(), 1);
        let spec = update(
            spec,
            &[
                "web",
                "--mount-add",
                "type=tmpfs,dst=/data/",
                "--mount-add",
                "src=logs,dst=/logs",
            ],
        )
        .expect("replace");
        let targets: Vec<&str> = spec.mounts.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(targets, ["/data/", "/logs"]);
        let spec = update(spec, &["web", "--mount-rm", "/data"]).expect("rm");
        assert_eq!(spec.mounts.len(), 1);
        let err = update(spec, &["web", "--mount-rm", "/nope"]).expect_err("no such mount");
        assert!(
            err.to_string().contains("has no mount at that target"),
            "{err}"
        );
    }
}
