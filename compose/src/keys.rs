//! Every key of the Compose spec (compose-spec/compose-spec,
//! schema/compose-spec.json) at the levels berth reads, and what berth does
//! with it: honoured, or named in a warning that says what berth does
//! instead. A key in none of these tables is not Compose, and an error.

/// What berth does with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    Honoured,
    /// Accepted and ignored without a word (`version`).
    Silent,
    /// Ignored; the text says what berth does instead.
    Warn(&'static str),
}

use Handling::{Honoured, Silent, Warn};

pub type Table = &'static [(&'static str, Handling)];

pub const TOP: Table = &[
    ("version", Silent),
    ("name", Warn("the stack is named on the command line")),
    ("services", Honoured),
    ("networks", Honoured),
    ("volumes", Honoured),
    ("configs", Honoured),
    ("secrets", Honoured),
    (
        "include",
        Warn("included files are not read: pass each file with -c"),
    ),
    ("models", Warn("berth runs containers only, no AI models")),
];

const CPU_FLAGS: &str = "berth limits CPUs with deploy.resources.limits.cpus";
const NAMESPACES: &str = "tasks get their own namespaces";
const DNS: &str = "tasks resolve names with berth's embedded DNS";

pub const SERVICE: Table = &[
    ("image", Honoured),
    ("command", Honoured),
    ("entrypoint", Honoured),
    ("environment", Honoured),
    ("env_file", Honoured),
    ("ports", Honoured),
    ("networks", Honoured),
    ("volumes", Honoured),
    ("tmpfs", Honoured),
    ("healthcheck", Honoured),
    ("configs", Honoured),
    ("secrets", Honoured),
    ("labels", Honoured),
    ("hostname", Honoured),
    ("user", Honoured),
    ("working_dir", Honoured),
    ("stop_grace_period", Honoured),
    ("stop_signal", Honoured),
    ("ulimits", Honoured),
    ("init", Honoured),
    ("read_only", Honoured),
    ("cap_add", Honoured),
    ("cap_drop", Honoured),
    ("tty", Honoured),
    ("stdin_open", Honoured),
    ("restart", Honoured),
    ("deploy", Honoured),
    (
        "annotations",
        Warn("container annotations are not set; use labels"),
    ),
    (
        "attach",
        Warn("every task's output is kept: berth service logs"),
    ),
    (
        "blkio_config",
        Warn("berth sets no block I/O weights or limits"),
    ),
    (
        "build",
        Warn("berth deploys images: build and push it, then name it in image"),
    ),
    ("cgroup", Warn("tasks run in their own cgroup namespace")),
    ("cgroup_parent", Warn("tasks run in berth's own cgroups")),
    ("container_name", Warn("tasks are named SERVICE.SLOT")),
    ("cpu_count", Warn(CPU_FLAGS)),
    ("cpu_percent", Warn(CPU_FLAGS)),
    ("cpu_period", Warn(CPU_FLAGS)),
    ("cpu_quota", Warn(CPU_FLAGS)),
    ("cpu_rt_period", Warn(CPU_FLAGS)),
    ("cpu_rt_runtime", Warn(CPU_FLAGS)),
    ("cpu_shares", Warn(CPU_FLAGS)),
    ("cpus", Warn(CPU_FLAGS)),
    ("cpuset", Warn(CPU_FLAGS)),
    (
        "credential_spec",
        Warn("credential specs are for Windows containers"),
    ),
    (
        "depends_on",
        Warn("services start together; readiness comes from healthchecks"),
    ),
    (
        "develop",
        Warn("compose watch is for development; berth deploys images"),
    ),
    ("device_cgroup_rules", Warn("tasks get no host devices")),
    ("devices", Warn("tasks get no host devices")),
    ("dns", Warn(DNS)),
    ("dns_opt", Warn(DNS)),
    ("dns_search", Warn(DNS)),
    ("domainname", Warn(DNS)),
    (
        "expose",
        Warn("every port of a task is reachable on its networks; publish with ports"),
    ),
    (
        "extends",
        Warn("the service is not extended: write it out (YAML anchors and << merge keys work)"),
    ),
    (
        "external_links",
        Warn("services find each other by name on their networks"),
    ),
    ("extra_hosts", Warn(DNS)),
    ("gpus", Warn("berth schedules no GPUs")),
    (
        "group_add",
        Warn("no supplementary groups are added; use user"),
    ),
    ("ipc", Warn(NAMESPACES)),
    (
        "isolation",
        Warn("isolation modes are for Windows containers"),
    ),
    (
        "label_file",
        Warn("label files are not read; write the labels under labels"),
    ),
    (
        "links",
        Warn("services find each other by name on their networks"),
    ),
    (
        "logging",
        Warn("berth keeps task output itself (berth service logs)"),
    ),
    ("mac_address", Warn("berth assigns overlay addresses")),
    (
        "mem_limit",
        Warn("berth limits memory with deploy.resources.limits.memory"),
    ),
    (
        "mem_reservation",
        Warn("berth reserves memory with deploy.resources.reservations.memory"),
    ),
    ("mem_swappiness", Warn("berth sets no swappiness")),
    (
        "memswap_limit",
        Warn("berth limits memory with deploy.resources.limits.memory"),
    ),
    ("models", Warn("berth runs containers only, no AI models")),
    (
        "network_mode",
        Warn("tasks join the stack's overlay networks"),
    ),
    ("oom_kill_disable", Warn("the OOM killer stays on")),
    ("oom_score_adj", Warn("berth sets no OOM score")),
    ("pid", Warn(NAMESPACES)),
    (
        "pids_limit",
        Warn("berth limits processes with deploy.resources.limits.pids"),
    ),
    (
        "platform",
        Warn("nodes pull the image for their own platform"),
    ),
    ("post_start", Warn("lifecycle hooks are not run")),
    (
        "pre_stop",
        Warn("lifecycle hooks are not run; tasks get stop_signal"),
    ),
    (
        "privileged",
        Warn("tasks are never privileged; add capabilities with cap_add"),
    ),
    ("profiles", Warn("deployed regardless of profiles")),
    ("provider", Warn("berth runs containers only")),
    (
        "pull_policy",
        Warn("nodes pull the image when they do not have it"),
    ),
    (
        "pull_refresh_after",
        Warn("nodes pull the image when they do not have it"),
    ),
    ("runtime", Warn("tasks run with berth-runtime")),
    ("scale", Warn("the task count is deploy.replicas")),
    (
        "security_opt",
        Warn("tasks run with berth's default seccomp profile"),
    ),
    ("shm_size", Warn("/dev/shm keeps its default size")),
    ("storage_opt", Warn("berth sets no storage driver options")),
    ("sysctls", Warn("berth sets no sysctls")),
    (
        "use_api_socket",
        Warn("berth exposes no engine socket to tasks"),
    ),
    ("userns_mode", Warn(NAMESPACES)),
    ("uts", Warn(NAMESPACES)),
    ("volumes_from", Warn("share a named volume instead")),
];

pub const DEPLOY: Table = &[
    ("mode", Honoured),
    ("replicas", Honoured),
    ("resources", Honoured),
    ("placement", Honoured),
    ("restart_policy", Honoured),
    ("update_config", Honoured),
    ("rollback_config", Honoured),
    ("labels", Honoured),
    ("endpoint_mode", Honoured),
];

pub const RESOURCES: Table = &[("limits", Honoured), ("reservations", Honoured)];
pub const LIMITS: Table = &[("cpus", Honoured), ("memory", Honoured), ("pids", Honoured)];
pub const RESERVATIONS: Table = &[
    ("cpus", Honoured),
    ("memory", Honoured),
    (
        "generic_resources",
        Warn("berth schedules on CPUs and memory only"),
    ),
    ("devices", Warn("berth reserves no devices")),
];
pub const PLACEMENT: Table = &[
    ("constraints", Honoured),
    ("preferences", Honoured),
    ("max_replicas_per_node", Honoured),
];
pub const PREFERENCE: Table = &[("spread", Honoured)];
pub const RESTART_POLICY: Table = &[
    ("condition", Honoured),
    ("delay", Honoured),
    ("max_attempts", Honoured),
    ("window", Honoured),
];
pub const UPDATE_CONFIG: Table = &[
    ("parallelism", Honoured),
    ("delay", Honoured),
    ("failure_action", Honoured),
    ("monitor", Honoured),
    ("max_failure_ratio", Honoured),
    ("order", Honoured),
];
pub const HEALTHCHECK: Table = &[
    ("test", Honoured),
    ("interval", Honoured),
    ("timeout", Honoured),
    ("retries", Honoured),
    ("start_period", Honoured),
    ("disable", Honoured),
    (
        "start_interval",
        Warn("checks run every interval, also in the start period"),
    ),
];
pub const PORT: Table = &[
    ("target", Honoured),
    ("published", Honoured),
    ("protocol", Honoured),
    ("mode", Honoured),
    (
        "host_ip",
        Warn("published ports answer on every address of the node"),
    ),
    ("name", Warn("port names are not kept")),
    ("app_protocol", Warn("the application protocol is not kept")),
];
pub const VOLUME_MOUNT: Table = &[
    ("type", Honoured),
    ("source", Honoured),
    ("target", Honoured),
    ("read_only", Honoured),
    ("tmpfs", Honoured),
    ("bind", Honoured),
    ("volume", Honoured),
    ("consistency", Warn("mounts have the host's consistency")),
    ("image", Warn("image mounts are not supported")),
];
pub const BIND: Table = &[
    ("propagation", Warn("binds are private (rprivate)")),
    (
        "create_host_path",
        Warn("a bind source must exist on the node"),
    ),
    ("recursive", Warn("binds are recursive")),
    ("selinux", Warn("berth does not relabel bind sources")),
];
pub const VOLUME_OPTIONS: Table = &[
    ("nocopy", Warn("a new volume starts empty")),
    ("labels", Warn("the top-level volume's labels apply")),
    ("subpath", Warn("the whole volume is mounted")),
];
pub const TMPFS: Table = &[("size", Honoured), ("mode", Honoured)];
pub const SERVICE_NETWORK: Table = &[
    ("aliases", Warn("a service is reached by its name only")),
    ("ipv4_address", Warn("berth assigns overlay addresses")),
    ("ipv6_address", Warn("berth assigns overlay addresses")),
    ("link_local_ips", Warn("berth assigns overlay addresses")),
    ("mac_address", Warn("berth assigns overlay addresses")),
    ("interface_name", Warn("berth names the interfaces")),
    (
        "driver_opts",
        Warn("overlay networks take no driver options"),
    ),
    ("priority", Warn("networks have no priority")),
    ("gw_priority", Warn("networks have no priority")),
];
pub const FILE_REFERENCE: Table = &[
    ("source", Honoured),
    ("target", Honoured),
    ("uid", Honoured),
    ("gid", Honoured),
    ("mode", Honoured),
];
pub const ULIMIT: Table = &[("soft", Honoured), ("hard", Honoured)];
pub const NETWORK: Table = &[
    ("name", Honoured),
    ("driver", Honoured),
    ("external", Honoured),
    ("ipam", Honoured),
    ("labels", Honoured),
    (
        "attachable",
        Warn("berth run and services attach to any network"),
    ),
    (
        "driver_opts",
        Warn("overlay networks take no driver options"),
    ),
    ("internal", Warn("overlay networks are not internal")),
    ("enable_ipv4", Warn("overlay networks are IPv4")),
    ("enable_ipv6", Warn("overlay networks are IPv4")),
];
pub const IPAM: Table = &[
    ("config", Honoured),
    ("driver", Warn("berth allocates overlay addresses itself")),
    ("options", Warn("berth allocates overlay addresses itself")),
];
pub const IPAM_CONFIG: Table = &[
    ("subnet", Honoured),
    (
        "ip_range",
        Warn("tasks get addresses from the whole subnet"),
    ),
    ("gateway", Warn("berth picks the gateway")),
    (
        "aux_addresses",
        Warn("berth allocates overlay addresses itself"),
    ),
];
pub const EXTERNAL: Table = &[("name", Honoured)];
pub const VOLUME: Table = &[
    ("name", Honoured),
    ("driver", Honoured),
    ("external", Honoured),
    ("labels", Honoured),
    ("driver_opts", Warn("local volumes take no driver options")),
];
pub const CONFIG: Table = &[
    ("name", Honoured),
    ("file", Honoured),
    ("content", Honoured),
    ("environment", Honoured),
    ("external", Honoured),
    ("labels", Honoured),
    ("template_driver", Warn("the content is used as it is")),
];
pub const SECRET: Table = &[
    ("name", Honoured),
    ("file", Honoured),
    ("environment", Honoured),
    ("external", Honoured),
    ("labels", Honoured),
    ("driver", Warn("secrets are kept in berth's own store")),
    ("driver_opts", Warn("secrets are kept in berth's own store")),
    ("template_driver", Warn("the content is used as it is")),
];

/// How a table treats `key`; None: not a key of the Compose spec here.
pub fn handling(table: Table, key: &str) -> Option<Handling> {
    table.iter().find(|(k, _)| *k == key).map(|(_, h)| *h)
}

/// The key of `table` closest to a misspelt one.
pub fn closest(table: Table, key: &str) -> Option<&'static str> {
    table
        .iter()
        .map(|(k, _)| (strsim::damerau_levenshtein(k, key), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min()
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelt_keys_find_the_closest() {
        assert_eq!(closest(SERVICE, "imgae"), Some("image"));
        assert_eq!(closest(SERVICE, "enviroment"), Some("environment"));
        assert_eq!(closest(DEPLOY, "replica"), Some("replicas"));
        assert_eq!(closest(DEPLOY, "zzzzzz"), None);
    }

    #[test]
    fn the_service_table_has_each_key_once() {
        for table in [
            TOP,
            SERVICE,
            DEPLOY,
            NETWORK,
            VOLUME,
            CONFIG,
            SECRET,
            HEALTHCHECK,
        ] {
            for (i, (k, _)) in table.iter().enumerate() {
                assert!(!table[i + 1..].iter().any(|(o, _)| o == k), "{k} twice");
            }
        }
    }
}
