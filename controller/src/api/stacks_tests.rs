//! Stack deploys against a real single-member Raft: what is written, what is
//! not, and what the plan says.

use std::collections::BTreeMap;

use berth_proto::stacks::{STACK_LABEL, scoped_name};
use berth_proto::v1::service_spec::Mode;
use berth_proto::v1::update_status::State as UpdateState;
use berth_proto::v1::{
    ConfigReference, CreateConfigRequest, CreateNetworkRequest, CreateServiceRequest, FieldChange,
    GetConfigRequest, Mount, PortConfig, ReplicatedMode, SecretReference, StackConfig,
    StackNetwork, StackSecret, StackVolume, mount,
};
use tonic::Code;

use super::*;
use crate::api::image_pin::pinner;
use crate::api::{configs, networks, services};
use crate::store::Table;

struct Env {
    _dir: tempfile::TempDir,
    raft: RaftHandle,
    keys: Keyring,
    pinner: Pinner,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let raft = crate::server::test_leader(dir.path()).await;
    let keys = Keyring::create(dir.path()).expect("keys");
    let pinner = pinner(&keys);
    Env {
        _dir: dir,
        raft,
        keys,
        pinner,
    }
}

impl Env {
    async fn deploy_with(
        &self,
        stack: &StackSpec,
        prune: bool,
        dry_run: bool,
    ) -> Result<DeployStackResponse, Status> {
        let req = DeployStackRequest {
            stack: Some(stack.clone()),
            prune,
            dry_run,
            // Never asks docker.io.
            no_resolve_image: true,
        };
        deploy(&self.raft, &self.keys, &self.pinner, req).await
    }

    async fn deploy(&self, stack: &StackSpec) -> DeployStackResponse {
        self.deploy_with(stack, false, false)
            .await
            .unwrap_or_else(|e| panic!("deploy {}: {}", stack.name, e.message()))
    }

    fn revision(&self) -> u64 {
        self.raft.state().revision().expect("revision")
    }

    async fn service(&self, name: &str) -> Service {
        services::get(&self.raft, name).await.expect(name)
    }

    /// Every service's name → (store version, spec version).
    fn versions(&self) -> BTreeMap<String, (u64, u64)> {
        let current = Current::read(self.raft.state()).expect("read");
        current
            .services
            .iter()
            .map(|s| {
                let name = s.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default();
                (name, (s.version, s.spec_version))
            })
            .collect()
    }

    /// A service outside any stack that mounts `config`.
    async fn reader_of(&self, config: &str) {
        let spec = ServiceSpec {
            name: "reader".into(),
            image: "busybox".into(),
            configs: vec![ConfigReference {
                config_name: config.into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let req = CreateServiceRequest {
            spec: Some(spec),
            no_resolve_image: true,
        };
        services::create(&self.raft, &self.pinner, req)
            .await
            .expect("reader");
    }

    fn names(&self, table: Table) -> Vec<String> {
        let mut names: Vec<String> = self
            .raft
            .state()
            .list(table)
            .expect("list")
            .iter()
            .filter_map(|o| crate::store::ObjectExt::unique_name(o).map(str::to_string))
            .collect();
        names.sort();
        names
    }
}

fn labels(stack: &str) -> BTreeMap<String, String> {
    [(STACK_LABEL.to_string(), stack.to_string())].into()
}

fn service(stack: &str, key: &str, image: &str) -> ServiceSpec {
    ServiceSpec {
        name: scoped_name(stack, key),
        image: image.into(),
        labels: labels(stack),
        mode: Some(Mode::Replicated(ReplicatedMode { replicas: 1 })),
        ..Default::default()
    }
}

/// A stack like the web app: a network, a volume, a config, a
/// secret, and three services (web uses the config, db the secret and the
/// volume, cache nothing).
fn demo(stack: &str) -> StackSpec {
    let n = |key| scoped_name(stack, key);
    let mut web = service(stack, "web", "nginx:1");
    web.networks = vec![n("net")];
    web.env = vec!["MODE=prod".into()];
    web.configs = vec![ConfigReference {
        config_name: n("conf"),
        target: "/etc/web.conf".into(),
        ..Default::default()
    }];
    let mut db = service(stack, "db", "postgres:16");
    db.networks = vec![n("net")];
    db.secrets = vec![SecretReference {
        secret_name: n("pw"),
        target: "pw".into(),
        ..Default::default()
    }];
    db.mounts = vec![Mount {
        kind: mount::Kind::Volume as i32,
        source: n("data"),
        target: "/var/lib/postgresql/data".into(),
        ..Default::default()
    }];
    let cache = service(stack, "cache", "redis:7");
    StackSpec {
        name: stack.into(),
        networks: vec![StackNetwork {
            name: n("net"),
            labels: labels(stack),
            ..Default::default()
        }],
        volumes: vec![StackVolume {
            name: n("data"),
            labels: labels(stack),
            external: false,
        }],
        configs: vec![StackConfig {
            name: n("conf"),
            data: b"listen 80".to_vec(),
            labels: labels(stack),
            external: false,
        }],
        secrets: vec![StackSecret {
            name: n("pw"),
            data: b"hunter2".to_vec(),
            labels: labels(stack),
            external: false,
        }],
        services: vec![web, db, cache],
    }
}

/// The plan as (kind, name, action) lines.
fn lines(reply: &DeployStackResponse) -> Vec<(StackObjectKind, String, StackAction)> {
    reply
        .changes
        .iter()
        .map(|c| {
            (
                StackObjectKind::try_from(c.kind).expect("kind"),
                c.name.clone(),
                StackAction::try_from(c.action).expect("action"),
            )
        })
        .collect()
}

fn action_of(reply: &DeployStackResponse, name: &str) -> StackAction {
    lines(reply)
        .into_iter()
        .find(|(_, n, _)| n == name)
        .map(|(_, _, a)| a)
        .unwrap_or_else(|| panic!("{name} is not in the plan"))
}

fn fields_of<'a>(reply: &'a DeployStackResponse, name: &str) -> &'a [FieldChange] {
    &reply
        .changes
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the plan"))
        .fields
}

fn updated(reply: &DeployStackResponse) -> Vec<String> {
    lines(reply)
        .into_iter()
        .filter(|(_, _, a)| *a != StackAction::Unchanged)
        .map(|(_, n, _)| n)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_is_created_in_order_and_an_unchanged_redeploy_writes_nothing() {
    use StackAction::{Create, Unchanged};
    use StackObjectKind::{Config, Network, Secret, Service as Svc, Volume};
    let env = env().await;
    let created = env.deploy(&demo("demo")).await;
    let s = |n: &str| n.to_string();
    assert_eq!(
        lines(&created),
        vec![
            (Network, s("demo_net"), Create),
            (Volume, s("demo_data"), Create),
            (Config, s("demo_conf"), Create),
            (Secret, s("demo_pw"), Create),
            (Svc, s("demo_web"), Create),
            (Svc, s("demo_db"), Create),
            (Svc, s("demo_cache"), Create),
        ]
    );
    assert!(created.revision > 0);
    assert_eq!(env.revision(), created.revision, "one transaction");
    let web = env.service("demo_web").await;
    let spec = web.spec.clone().expect("spec");
    assert_eq!(
        spec.configs[0].digest,
        crate::digest::sha256_hex(b"listen 80")
    );
    let db = env.service("demo_db").await.spec.expect("spec");
    assert_eq!(
        db.secrets[0].digest.len(),
        64,
        "a secret reference has a digest"
    );

    let versions = env.versions();
    let again = env.deploy(&demo("demo")).await;
    assert_eq!(again.revision, 0, "nothing written");
    assert_eq!(env.revision(), created.revision);
    assert_eq!(env.versions(), versions);
    assert!(
        lines(&again).iter().all(|(_, _, a)| *a == Unchanged),
        "{:?}",
        lines(&again)
    );
    assert_eq!(lines(&again).len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_image_or_replicas_change_only_their_service() {
    let env = env().await;
    let mut stack = demo("demo");
    env.deploy(&stack).await;

    let before = env.versions();
    stack.services[0].env.push("DEBUG=1".into());
    let reply = env.deploy(&stack).await;
    assert_eq!(updated(&reply), ["demo_web"]);
    let env_field = &fields_of(&reply, "demo_web")[0];
    assert_eq!(
        (
            env_field.field.as_str(),
            env_field.from.as_str(),
            env_field.to.as_str()
        ),
        ("env", "MODE=prod", "DEBUG=1, MODE=prod")
    );
    let after = env.versions();
    assert_eq!(after["demo_web"].1, before["demo_web"].1 + 1);
    assert_eq!(after["demo_db"], before["demo_db"]);
    assert_eq!(after["demo_cache"], before["demo_cache"]);
    let web = env.service("demo_web").await;
    assert_eq!(
        web.update_status.as_ref().map(|s| s.state),
        Some(UpdateState::Updating as i32),
        "an env change is a rolling update"
    );

    let before = env.versions();
    stack.services[1].image = "postgres:17".into();
    let reply = env.deploy(&stack).await;
    assert_eq!(updated(&reply), ["demo_db"]);
    assert_eq!(
        fields_of(&reply, "demo_db"),
        [FieldChange {
            field: "image".into(),
            from: "postgres:16".into(),
            to: "postgres:17".into(),
        }]
    );
    let after = env.versions();
    assert_eq!(after["demo_web"], before["demo_web"]);
    assert_eq!(after["demo_cache"], before["demo_cache"]);

    let before = env.versions();
    stack.services[2].mode = Some(Mode::Replicated(ReplicatedMode { replicas: 3 }));
    let reply = env.deploy(&stack).await;
    assert_eq!(updated(&reply), ["demo_cache"]);
    assert_eq!(
        fields_of(&reply, "demo_cache"),
        [FieldChange {
            field: "replicas".into(),
            from: "1".into(),
            to: "3".into(),
        }]
    );
    let after = env.versions();
    assert_eq!(after["demo_web"], before["demo_web"]);
    assert_eq!(after["demo_db"], before["demo_db"]);
    let cache = env.service("demo_cache").await;
    assert_eq!(cache.update_status, None, "a scale is no rollout");

    // `service scale` drifts; the file's count wins and the diff shows it.
    services::scale(
        &env.raft,
        berth_proto::v1::ScaleServiceRequest {
            service: "demo_cache".into(),
            replicas: 5,
        },
    )
    .await
    .expect("scale");
    let diff = env.deploy_with(&stack, false, true).await.expect("diff");
    assert_eq!(updated(&diff), ["demo_cache"]);
    assert_eq!(fields_of(&diff, "demo_cache")[0].from, "5");
    env.deploy(&stack).await;
    let cache = env.service("demo_cache").await.spec.expect("spec");
    assert_eq!(
        cache.mode,
        Some(Mode::Replicated(ReplicatedMode { replicas: 3 }))
    );

    // `update --force` is kept, never counted.
    let mut forced = env.service("demo_web").await;
    let version = forced.version;
    if let Some(spec) = forced.spec.as_mut() {
        spec.force_update += 1;
    }
    commit(&env.raft, vec![put(wrap(forced), Expect::Version, version)])
        .await
        .expect("force");
    assert_eq!(env.deploy(&stack).await.revision, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_removes_only_what_the_stack_no_longer_names() {
    let env = env().await;
    env.deploy(&demo("demo")).await;
    env.deploy(&demo("other")).await;
    services::create(
        &env.raft,
        &env.pinner,
        CreateServiceRequest {
            spec: Some(ServiceSpec {
                name: "plain".into(),
                image: "busybox".into(),
                ..Default::default()
            }),
            no_resolve_image: true,
        },
    )
    .await
    .expect("plain");

    let mut smaller = demo("demo");
    smaller.services.retain(|s| s.name != "demo_cache");
    smaller.services[0].configs.clear();
    smaller.configs.clear();
    smaller.volumes.clear();
    // Without --prune nothing goes.
    let kept = env.deploy(&smaller).await;
    assert_eq!(updated(&kept), ["demo_web"]);
    assert!(
        env.names(Table::Service)
            .contains(&"demo_cache".to_string())
    );
    assert!(env.names(Table::Config).contains(&"demo_conf".to_string()));

    let pruned = env.deploy_with(&smaller, true, false).await.expect("prune");
    let removed: Vec<_> = lines(&pruned)
        .into_iter()
        .filter(|(_, _, a)| *a == StackAction::Remove)
        .map(|(k, n, _)| (k, n))
        .collect();
    assert_eq!(
        removed,
        vec![
            (StackObjectKind::Service, "demo_cache".to_string()),
            (StackObjectKind::Config, "demo_conf".to_string()),
        ]
    );
    assert_eq!(
        env.names(Table::Service),
        [
            "demo_db",
            "demo_web",
            "other_cache",
            "other_db",
            "other_web",
            "plain"
        ]
    );
    assert_eq!(env.names(Table::Config), ["other_conf"]);
    assert!(
        env.names(Table::Volume).contains(&"demo_data".to_string()),
        "volumes are never pruned"
    );
    // A pruned config that a service outside the stack still mounts
    // refuses the deploy, naming the service; nothing is written.
    let mut with_conf = smaller.clone();
    with_conf.configs = demo("demo").configs;
    env.deploy(&with_conf).await;
    env.reader_of("demo_conf").await;
    let revision = env.revision();
    let err = env
        .deploy_with(&smaller, true, false)
        .await
        .expect_err("in use");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        err.message(),
        "stack demo: config demo_conf cannot be removed: service reader still uses it"
    );
    assert_eq!(env.revision(), revision);
    services::remove(&env.raft, "reader")
        .await
        .expect("rm reader");
    env.deploy_with(&smaller, true, false).await.expect("prune");
    // A second prune has nothing left to do.
    assert_eq!(
        env.deploy_with(&smaller, true, false)
            .await
            .expect("again")
            .revision,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_object_with_the_same_name_refuses_the_deploy_and_nothing_is_written() {
    let env = env().await;
    configs::create(
        &env.raft,
        CreateConfigRequest {
            name: "demo_conf".into(),
            data: b"mine".to_vec(),
            ..Default::default()
        },
    )
    .await
    .expect("config");
    let revision = env.revision();
    let err = env
        .deploy_with(&demo("demo"), false, false)
        .await
        .expect_err("foreign config");
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(
        err.message(),
        "stack demo: config demo_conf already exists and belongs to no stack, not to stack demo; \
         rename it in the file or remove the existing one"
    );
    assert_eq!(env.revision(), revision, "nothing written");
    assert!(env.names(Table::Service).is_empty());

    // Another stack's service of the same name.
    let mut clean = demo("demo");
    clean.configs[0].name = "demo_conf2".into();
    clean.services[0].configs[0].config_name = "demo_conf2".into();
    env.deploy(&clean).await;
    let mut other = demo("other");
    other.services[2].name = "demo_cache".into();
    let revision = env.revision();
    let err = env
        .deploy_with(&other, false, false)
        .await
        .expect_err("taken");
    assert_eq!(
        err.message(),
        "stack other: service demo_cache already exists and belongs to stack demo, not to stack \
         other; rename it in the file or remove the existing one"
    );
    assert_eq!(env.revision(), revision);
    let config = configs::get(
        &env.raft,
        GetConfigRequest {
            config: "demo_conf".into(),
            stale: false,
        },
    )
    .await
    .expect("config");
    assert_eq!(config.data, b"mine", "never taken over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_config_or_secret_content_rolls_exactly_the_services_using_it() {
    let env = env().await;
    let mut stack = demo("demo");
    env.deploy(&stack).await;
    // A service outside the stack that mounts the stack's config rolls too.
    env.reader_of("demo_conf").await;

    let before = env.versions();
    stack.configs[0].data = b"listen 8080".to_vec();
    // web also changes its env: still one new version.
    stack.services[0].env.push("DEBUG=1".into());
    let reply = env.deploy(&stack).await;
    assert_eq!(updated(&reply), ["demo_conf", "demo_web"]);
    let fields: Vec<&str> = fields_of(&reply, "demo_web")
        .iter()
        .map(|f| f.field.as_str())
        .collect();
    assert_eq!(fields, ["configs[0].digest", "env"]);
    let after = env.versions();
    assert_eq!(after["demo_web"].1, before["demo_web"].1 + 1, "one version");
    assert_eq!(after["reader"].1, before["reader"].1 + 1);
    assert_eq!(after["demo_db"], before["demo_db"]);
    assert_eq!(after["demo_cache"], before["demo_cache"]);
    let reader = env.service("reader").await.spec.expect("spec");
    assert_eq!(
        reader.configs[0].digest,
        crate::digest::sha256_hex(b"listen 8080")
    );

    let before = env.versions();
    let secret_id = env.service("demo_db").await.spec.expect("spec").secrets[0]
        .secret_id
        .clone();
    stack.secrets[0].data = b"correct horse".to_vec();
    let reply = env.deploy(&stack).await;
    assert_eq!(updated(&reply), ["demo_pw", "demo_db"]);
    assert_eq!(
        fields_of(&reply, "demo_pw"),
        [FieldChange {
            field: "data".into(),
            from: String::new(),
            to: "(changed)".into(),
        }]
    );
    let shown = format!("{:?}", reply.changes);
    assert!(
        !shown.contains("horse") && !shown.contains("hunter2"),
        "{shown}"
    );
    let after = env.versions();
    assert_eq!(after["demo_db"].1, before["demo_db"].1 + 1);
    assert_eq!(after["demo_web"], before["demo_web"]);
    assert_eq!(after["reader"], before["reader"]);
    let db = env.service("demo_db").await;
    assert_eq!(
        db.spec.as_ref().expect("spec").secrets[0].secret_id,
        secret_id
    );
    assert_eq!(
        db.update_status.map(|s| s.state),
        Some(UpdateState::Updating as i32)
    );
    let Some(Kind::Secret(stored)) = env
        .raft
        .state()
        .get(Table::Secret, &secret_id)
        .expect("read")
        .and_then(|o| o.kind)
    else {
        panic!("the secret keeps its id");
    };
    assert_eq!(
        env.keys
            .open(&stored.id, &stored.data)
            .expect("open")
            .as_bytes(),
        b"correct horse"
    );
    // The same values again: nothing.
    assert_eq!(env.deploy(&stack).await.revision, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_writes_nothing_and_its_plan_is_what_the_deploy_does() {
    let env = env().await;
    let first = demo("demo");
    let revision = env.revision();
    let diff = env.deploy_with(&first, false, true).await.expect("diff");
    assert_eq!(diff.revision, 0);
    assert_eq!(env.revision(), revision);
    assert!(env.names(Table::Service).is_empty());
    let real = env.deploy(&first).await;
    assert_eq!(diff.changes, real.changes);

    let mut next = first.clone();
    next.services[0].image = "nginx:2".into();
    next.services[1].mode = Some(Mode::Replicated(ReplicatedMode { replicas: 2 }));
    next.services[2].ports = vec![PortConfig {
        published_port: 6379,
        target_port: 6379,
        ..Default::default()
    }];
    next.configs[0].data = b"listen 81".to_vec();
    next.services.remove(1);
    let revision = env.revision();
    let diff = env.deploy_with(&next, true, true).await.expect("diff");
    assert_eq!(env.revision(), revision, "a dry run writes nothing");
    let real = env.deploy_with(&next, true, false).await.expect("deploy");
    assert_eq!(diff.changes, real.changes);
    assert_eq!(action_of(&real, "demo_db"), StackAction::Remove);
    assert_eq!(action_of(&real, "demo_cache"), StackAction::Update);
    assert_eq!(fields_of(&real, "demo_cache")[0].field, "ports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_objects_must_exist_and_are_never_changed_or_removed() {
    let env = env().await;
    let mut stack = demo("demo");
    stack.networks.push(StackNetwork {
        name: "shared".into(),
        external: true,
        ..Default::default()
    });
    stack.services[2].networks = vec!["shared".into()];
    let err = env
        .deploy_with(&stack, false, false)
        .await
        .expect_err("missing");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message()
            .contains("external network shared does not exist"),
        "{}",
        err.message()
    );
    assert!(env.names(Table::Service).is_empty());
    networks::create(
        &env.raft,
        CreateNetworkRequest {
            name: "shared".into(),
            ..Default::default()
        },
    )
    .await
    .expect("network");
    let reply = env.deploy(&stack).await;
    assert_eq!(action_of(&reply, "shared"), StackAction::Unchanged);
    remove(&env.raft, "demo").await.expect("rm");
    assert!(env.names(Table::Network).contains(&"shared".to_string()));

    // A reference to nothing at all names it.
    let mut dangling = demo("demo");
    dangling.services[0].networks = vec!["nowhere".into()];
    let err = env
        .deploy_with(&dangling, false, false)
        .await
        .expect_err("dangling");
    assert_eq!(
        err.message(),
        "stack demo: service demo_web: network nowhere is neither in the stack nor in the cluster"
    );
    // An object without the stack's label is refused.
    let mut unlabelled = demo("demo");
    unlabelled.services[0].labels.clear();
    let err = env
        .deploy_with(&unlabelled, false, false)
        .await
        .expect_err("unlabelled");
    assert!(
        err.message()
            .contains("service demo_web does not carry the label com.docker.stack.namespace=demo"),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_networks_subnet_never_changes_in_place() {
    let env = env().await;
    let mut stack = demo("demo");
    stack.networks[0].subnet = "10.200.0.0/16".into();
    env.deploy(&stack).await;
    stack.networks[0].subnet = "10.201.0.0/16".into();
    let revision = env.revision();
    let err = env
        .deploy_with(&stack, false, false)
        .await
        .expect_err("moved");
    assert!(
        err.message().contains("networks cannot change in place"),
        "{}",
        err.message()
    );
    assert_eq!(env.revision(), revision);
    stack.networks[0].subnet = "10.200.0.0/16".into();
    stack.networks[0]
        .labels
        .insert("tier".into(), "front".into());
    let reply = env.deploy(&stack).await;
    assert_eq!(
        fields_of(&reply, "demo_net"),
        [FieldChange {
            field: "labels.tier".into(),
            from: String::new(),
            to: "front".into(),
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_rm_removes_services_first_and_leaves_volumes() {
    let env = env().await;
    env.deploy(&demo("demo")).await;
    env.deploy(&demo("other")).await;
    let listed = list(&env.raft).await.expect("ls");
    assert_eq!(listed.stacks.len(), 2);
    assert_eq!(
        (
            listed.stacks[0].name.as_str(),
            listed.stacks[0].services,
            listed.stacks[0].networks,
            listed.stacks[0].configs,
            listed.stacks[0].secrets
        ),
        ("demo", 3, 1, 1, 1)
    );
    let removed = remove(&env.raft, "demo").await.expect("rm");
    let kinds: Vec<StackObjectKind> = removed
        .removed
        .iter()
        .map(|c| StackObjectKind::try_from(c.kind).expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        [
            StackObjectKind::Service,
            StackObjectKind::Service,
            StackObjectKind::Service,
            StackObjectKind::Network,
            StackObjectKind::Config,
            StackObjectKind::Secret,
        ]
    );
    assert_eq!(
        env.names(Table::Service),
        ["other_cache", "other_db", "other_web"]
    );
    let networks = env.names(Table::Network);
    assert!(!networks.contains(&"demo_net".to_string()), "{networks:?}");
    assert!(networks.contains(&"other_net".to_string()), "{networks:?}");
    assert_eq!(env.names(Table::Volume), ["demo_data", "other_data"]);
    let err = remove(&env.raft, "demo").await.expect_err("gone");
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "stack demo not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_keeps_its_pin_when_the_registry_cannot_be_asked() {
    let env = env().await;
    let mut stack = demo("demo");
    // Nothing listens on port 1: the lookup fails at once.
    stack.services[2].image = "127.0.0.1:1/cache:7".into();
    let asking = |stack: &StackSpec| DeployStackRequest {
        stack: Some(stack.clone()),
        ..Default::default()
    };
    let reply = deploy(&env.raft, &env.keys, &env.pinner, asking(&stack))
        .await
        .expect("deploy");
    assert!(
        reply
            .warnings
            .iter()
            .any(|w| w.starts_with("image 127.0.0.1:1/cache:7 is not pinned to a digest")),
        "{:?}",
        reply.warnings
    );
    // As if it had been pinned when it was written.
    let pin = berth_registry::Digest::of(b"cache 7").to_string();
    let mut cache = env.service("demo_cache").await;
    let version = cache.version;
    if let Some(spec) = cache.spec.as_mut() {
        spec.image_digest = pin.clone();
    }
    commit(&env.raft, vec![put(wrap(cache), Expect::Version, version)])
        .await
        .expect("pin");
    let reply = deploy(&env.raft, &env.keys, &env.pinner, asking(&stack))
        .await
        .expect("redeploy");
    assert_eq!(reply.revision, 0, "an unreachable registry changes nothing");
    assert!(
        reply
            .warnings
            .iter()
            .any(|w| w.contains(&format!("it stays pinned to {pin}"))),
        "{:?}",
        reply.warnings
    );
    // A digest written in the reference is its own pin; written again, no change.
    let digest = berth_registry::Digest::of(b"web").to_string();
    stack.services[0].image = format!("127.0.0.1:1/web@{digest}");
    let reply = deploy(&env.raft, &env.keys, &env.pinner, asking(&stack))
        .await
        .expect("digest");
    assert_eq!(updated(&reply), ["demo_web"]);
    let web = env.service("demo_web").await.spec.expect("spec");
    assert_eq!(web.image_digest, digest);
    let reply = deploy(&env.raft, &env.keys, &env.pinner, asking(&stack))
        .await
        .expect("again");
    assert_eq!(reply.revision, 0);
}
