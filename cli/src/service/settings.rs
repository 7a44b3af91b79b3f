//! The rest of what a Compose service says, as `docker service create` and
//! `update` spell it: `--ulimit`, `--init`, `--container-label`,
//! `--endpoint-mode`, `--placement-pref` and `--replicas-max-per-node`, and
//! how `inspect`/`ls --format json` show them.

use anyhow::{Result, bail};
use berth_proto::v1::{EndpointMode, PlacementPreference, ServiceSpec, Ulimit};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EndpointModeArg {
    /// One virtual IP that balances over the tasks (the default).
    Vip,
    /// No virtual IP: the name answers the tasks' own addresses, rotated.
    Dnsrr,
}

impl From<EndpointModeArg> for EndpointMode {
    fn from(mode: EndpointModeArg) -> Self {
        match mode {
            EndpointModeArg::Vip => EndpointMode::Vip,
            EndpointModeArg::Dnsrr => EndpointMode::Dnsrr,
        }
    }
}

/// `--ulimit`: NAME=N or NAME=SOFT:HARD, checked as the controller will.
pub fn parse_ulimit(text: &str) -> Result<Ulimit, String> {
    berth_proto::ulimits::parse(text).map_err(|e| e.to_string())
}

/// `--placement-pref spread=node.labels.LABEL`.
fn parse_preference(text: &str) -> Result<PlacementPreference, String> {
    match text.trim().split_once('=') {
        Some(("spread", target))
            if target
                .strip_prefix("node.labels.")
                .is_some_and(|label| !label.is_empty()) =>
        {
            Ok(PlacementPreference {
                spread: target.to_string(),
            })
        }
        _ => Err(format!(
            "placement preference {text:?} is not spread=node.labels.LABEL"
        )),
    }
}

/// Flags of `service create`.
#[derive(Debug, Default, Args)]
pub struct SettingsFlags {
    /// A resource limit of the tasks' processes: NAME=SOFT:HARD, or NAME=N for
    /// both (nofile=1024:2048; -1: unlimited); repeatable.
    #[arg(long, value_parser = parse_ulimit, value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<Ulimit>,
    /// Run an init (tini) as PID 1 that reaps zombies and forwards signals.
    #[arg(long)]
    pub init: bool,
    /// KEY=VALUE label of the tasks' containers; repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub container_label: Vec<String>,
    /// vip (a virtual IP balances over the tasks) or dnsrr (the name answers
    /// the tasks' addresses; publishes only in mode=host).
    #[arg(long, value_enum)]
    pub endpoint_mode: Option<EndpointModeArg>,
    /// Spread the tasks evenly over the values of a node label:
    /// spread=node.labels.LABEL; repeatable (in order).
    #[arg(long, value_parser = parse_preference, value_name = "spread=node.labels.LABEL")]
    pub placement_pref: Vec<PlacementPreference>,
    /// At most N of the service's tasks on one node (0: no limit).
    #[arg(long, value_name = "N")]
    pub replicas_max_per_node: Option<u64>,
}

impl SettingsFlags {
    /// Sets what the flags say in a new spec.
    pub fn apply(&self, spec: &mut ServiceSpec) -> Result<()> {
        spec.ulimits = self.ulimit.clone();
        berth_proto::ulimits::check_all(&spec.ulimits)?;
        spec.init = self.init;
        spec.container_labels = super::key_values(&self.container_label, "--container-label")?
            .into_iter()
            .collect();
        if let Some(mode) = self.endpoint_mode {
            spec.endpoint_mode = EndpointMode::from(mode) as i32;
        }
        let placement = spec.placement.get_or_insert_with(Default::default);
        placement.preferences = self.placement_pref.clone();
        placement.max_replicas_per_node = self.replicas_max_per_node.unwrap_or(0);
        Ok(())
    }
}

/// Flags of `service update`: Docker's `-add`/`-rm` forms.
#[derive(Debug, Default, Args)]
pub struct SettingsUpdateFlags {
    /// Add or replace a resource limit (as `create --ulimit`); repeatable.
    #[arg(long, value_parser = parse_ulimit, value_name = "NAME=SOFT[:HARD]")]
    pub ulimit_add: Vec<Ulimit>,
    /// Remove the limit NAME; repeatable.
    #[arg(long, value_name = "NAME")]
    pub ulimit_rm: Vec<String>,
    /// Run an init (tini) as PID 1.
    #[arg(long, conflicts_with = "no_init")]
    pub init: bool,
    /// Run the command as PID 1 again (no init of the service's own).
    #[arg(long)]
    pub no_init: bool,
    /// Add or change a KEY=VALUE container label; repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub container_label_add: Vec<String>,
    /// Remove the container label KEY; repeatable.
    #[arg(long, value_name = "KEY")]
    pub container_label_rm: Vec<String>,
    /// vip or dnsrr (the service's VIP is freed or allocated).
    #[arg(long, value_enum)]
    pub endpoint_mode: Option<EndpointModeArg>,
    /// Add a placement preference (spread=node.labels.LABEL), after the
    /// others; repeatable.
    #[arg(long, value_parser = parse_preference, value_name = "spread=node.labels.LABEL")]
    pub placement_pref_add: Vec<PlacementPreference>,
    /// Remove a placement preference (spread=node.labels.LABEL); repeatable.
    #[arg(long, value_parser = parse_preference, value_name = "spread=node.labels.LABEL")]
    pub placement_pref_rm: Vec<PlacementPreference>,
    /// At most N of the service's tasks on one node (0: no limit).
    #[arg(long, value_name = "N")]
    pub replicas_max_per_node: Option<u64>,
}

impl SettingsUpdateFlags {
    /// Changes what the flags name in `spec`.
    pub fn apply(&self, spec: &mut ServiceSpec) -> Result<()> {
        for name in &self.ulimit_rm {
            let name = name.trim().to_ascii_lowercase();
            let before = spec.ulimits.len();
            spec.ulimits.retain(|u| u.name != name);
            if spec.ulimits.len() == before {
                bail!(
                    "--ulimit-rm {name}: service {} has no such ulimit",
                    spec.name
                );
            }
        }
        for ulimit in &self.ulimit_add {
            spec.ulimits.retain(|u| u.name != ulimit.name);
            spec.ulimits.push(ulimit.clone());
        }
        berth_proto::ulimits::check_all(&spec.ulimits)?;
        if self.init {
            spec.init = true;
        }
        if self.no_init {
            spec.init = false;
        }
        for key in &self.container_label_rm {
            spec.container_labels.remove(key);
        }
        for (k, v) in super::key_values(&self.container_label_add, "--container-label-add")? {
            spec.container_labels.insert(k, v);
        }
        if let Some(mode) = self.endpoint_mode {
            spec.endpoint_mode = EndpointMode::from(mode) as i32;
        }
        if !self.placement_pref_rm.is_empty()
            || !self.placement_pref_add.is_empty()
            || self.replicas_max_per_node.is_some()
        {
            let placement = spec.placement.get_or_insert_with(Default::default);
            for pref in &self.placement_pref_rm {
                if !placement.preferences.contains(pref) {
                    bail!(
                        "--placement-pref-rm spread={}: service {} has no such preference",
                        pref.spread,
                        spec.name
                    );
                }
                placement.preferences.retain(|p| p != pref);
            }
            for pref in &self.placement_pref_add {
                if !placement.preferences.contains(pref) {
                    placement.preferences.push(pref.clone());
                }
            }
            if let Some(n) = self.replicas_max_per_node {
                placement.max_replicas_per_node = n;
            }
        }
        Ok(())
    }
}

/// "vip" or "dnsrr".
pub fn endpoint_mode_name(mode: i32) -> &'static str {
    match EndpointMode::try_from(mode) {
        Ok(EndpointMode::Dnsrr) => "dnsrr",
        _ => "vip",
    }
}

/// The settings as `ls --format json` shows them, as the flags write them.
pub fn json_of(spec: &ServiceSpec) -> Value {
    let placement = spec.placement.clone().unwrap_or_default();
    json!({
        "endpoint_mode": endpoint_mode_name(spec.endpoint_mode),
        "init": spec.init,
        "ulimits": spec.ulimits.iter().map(berth_proto::ulimits::display).collect::<Vec<_>>(),
        "container_labels": spec.container_labels,
        "placement_preferences": placement
            .preferences
            .iter()
            .map(|p| format!("spread={}", p.spread))
            .collect::<Vec<_>>(),
        "max_replicas_per_node": placement.max_replicas_per_node,
    })
}

/// In a spec as JSON (`inspect`): the endpoint mode by name.
pub fn name_enums(spec: &mut Value) {
    if let Some(mode) = spec.get_mut("endpoint_mode")
        && let Some(n) = mode.as_i64().and_then(|n| i32::try_from(n).ok())
    {
        *mode = json!(endpoint_mode_name(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Create {
        #[command(flatten)]
        flags: SettingsFlags,
    }

    #[derive(Debug, Parser)]
    struct Update {
        #[command(flatten)]
        flags: SettingsUpdateFlags,
    }

    fn create(argv: &[&str]) -> Result<ServiceSpec> {
        let cli = Create::try_parse_from(["create"].iter().chain(argv))?;
        let mut spec = ServiceSpec::default();
        cli.flags.apply(&mut spec)?;
        Ok(spec)
    }

    fn update(spec: ServiceSpec, argv: &[&str]) -> Result<ServiceSpec> {
        let cli = Update::try_parse_from(["update"].iter().chain(argv))?;
        let mut spec = spec;
        cli.flags.apply(&mut spec)?;
        Ok(spec)
    }

    #[test]
    fn create_flags_set_the_spec() {
        let spec = create(&[
            "--ulimit",
            "nofile=123:456",
            "--ulimit",
            "nproc=50",
            "--init",
            "--container-label",
            "team=a",
            "--endpoint-mode",
            "dnsrr",
            "--placement-pref",
            "spread=node.labels.zone",
            "--replicas-max-per-node",
            "2",
        ])
        .expect("create");
        let shown = json_of(&spec);
        assert_eq!(shown["ulimits"], json!(["nofile=123:456", "nproc=50:50"]));
        assert_eq!(shown["init"], json!(true));
        assert_eq!(shown["container_labels"], json!({"team": "a"}));
        assert_eq!(shown["endpoint_mode"], json!("dnsrr"));
        assert_eq!(
            shown["placement_preferences"],
            json!(["spread=node.labels.zone"])
        );
        assert_eq!(shown["max_replicas_per_node"], json!(2));
        let plain = create(&[]).expect("no flags");
        assert_eq!(json_of(&plain)["endpoint_mode"], json!("vip"));
    }

    #[test]
    fn bad_values_name_what_is_wrong() {
        let err = |argv: &[&str]| create(argv).expect_err("refused").to_string();
        assert!(
            err(&["--ulimit", "nofile=2:1"])
                .contains("ulimit nofile: the soft limit 2 is above the hard limit 1"),
            "{}",
            err(&["--ulimit", "nofile=2:1"])
        );
        assert!(err(&["--ulimit", "nofile=1", "--ulimit", "nofile=2"]).contains("given twice"));
        assert!(
            err(&["--placement-pref", "zone"])
                .contains("placement preference \"zone\" is not spread=node.labels.LABEL")
        );
        assert!(err(&["--container-label", "x"]).contains("is not KEY=VALUE"));
        assert!(err(&["--endpoint-mode", "rr"]).contains("invalid value"));
    }

    #[test]
    fn update_flags_add_remove_and_toggle() {
        let spec = create(&[
            "--ulimit",
            "nofile=1:2",
            "--container-label",
            "a=1",
            "--placement-pref",
            "spread=node.labels.zone",
        ])
        .expect("create");
        let same = update(spec.clone(), &[]).expect("no flags");
        assert_eq!(same, spec);
        let spec = update(
            spec,
            &[
                "--ulimit-add",
                "nofile=3:4",
                "--ulimit-add",
                "core=0",
                "--init",
                "--container-label-rm",
                "a",
                "--container-label-add",
                "b=2",
                "--endpoint-mode",
                "dnsrr",
                "--placement-pref-add",
                "spread=node.labels.rack",
                "--placement-pref-rm",
                "spread=node.labels.zone",
                "--replicas-max-per-node",
                "3",
            ],
        )
        .expect("update");
        let shown = json_of(&spec);
        assert_eq!(shown["ulimits"], json!(["nofile=3:4", "core=0:0"]));
        assert_eq!(shown["init"], json!(true));
        assert_eq!(shown["container_labels"], json!({"b": "2"}));
        assert_eq!(shown["endpoint_mode"], json!("dnsrr"));
        assert_eq!(
            shown["placement_preferences"],
            json!(["spread=node.labels.rack"])
        );
        assert_eq!(shown["max_replicas_per_node"], json!(3));
        let spec = update(spec, &["--no-init", "--ulimit-rm", "core"]).expect("update");
        assert!(!spec.init);
        assert_eq!(spec.ulimits.len(), 1);
        let err = update(spec.clone(), &["--ulimit-rm", "nproc"]).expect_err("no such");
        assert!(err.to_string().contains("has no such ulimit"), "{err}");
        assert!(update(spec, &["--init", "--no-init"]).is_err());
    }

    #[test]
    fn inspect_names_the_endpoint_mode() {
        let mut spec = json!({"endpoint_mode": 1});
        name_enums(&mut spec);
        assert_eq!(spec["endpoint_mode"], json!("dnsrr"));
    }
}
