//! The stack engine end to end (#15), through the `Stacks` API the CLI's
//! `stack deploy/diff/rm` call: real controller, agent and registry. A
//! redeploy of the same spec restarts nothing; a tag pushed again is a
//! change (shown as both digests), and it rolls only its service; a replica
//! count moves without replacing running tasks; a changed config rolls the
//! service that mounts it, whose new task reads the new content.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use berth_pki::Role;
use berth_proto::stacks::{STACK_LABEL, scoped_name};
use berth_proto::v1::stacks_client::StacksClient;
use berth_proto::v1::{
    ConfigReference, DeployStackRequest, DeployStackResponse, FieldChange, ListTasksRequest,
    RemoveStackRequest, ReplicatedMode, ServiceSpec, StackAction, StackConfig, StackSpec, Task,
    TaskState, service_spec::Mode,
};
use berth_testhost::cluster::Cluster;
use berth_testhost::controllers;
use berth_testhost::images::layout_with_file;
use berth_testhost::wait_until;
use tonic::transport::{Channel, Endpoint};

const CONVERGE: Duration = Duration::from_secs(60);
const VERSION_FILE: &str = "/etc/web-version";
const CONF: &str = "/etc/app.conf";

/// A `Stacks` client of controller 0, on the client host's runtime.
fn stacks<T, F, Fut>(cluster: &Cluster, call: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(StacksClient<Channel>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>> + Send,
{
    let addr = cluster.c.address(0);
    let security = cluster.c.security();
    cluster.c.run(async move {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(30));
        let channel = berth_pki::tls::connect(endpoint, &security, Role::Controller).await?;
        Ok(call(StacksClient::new(channel)).await?.into_inner())
    })
}

fn deploy(cluster: &Cluster, stack: &StackSpec, dry_run: bool) -> Result<DeployStackResponse> {
    let request = DeployStackRequest {
        stack: Some(stack.clone()),
        prune: false,
        dry_run,
        no_resolve_image: false,
    };
    stacks(cluster, |mut c| async move { c.deploy(request).await })
}

/// The running tasks of `name` (those that run and should).
fn running(cluster: &Cluster, name: &str) -> Result<Vec<Task>> {
    let addr = cluster.c.address(0);
    let security = cluster.c.security();
    let service = name.to_string();
    let tasks = cluster.c.run(async move {
        let mut client = controllers::connect(&addr, &security).await?;
        let request = ListTasksRequest {
            service,
            ..Default::default()
        };
        anyhow::Ok(client.list_tasks(request).await?.into_inner().tasks)
    })?;
    Ok(tasks
        .into_iter()
        .filter(|t| {
            t.desired_state == TaskState::Running as i32
                && t.status.as_ref().map(|s| s.state) == Some(TaskState::Running as i32)
        })
        .collect())
}

fn ids(tasks: &[Task]) -> Vec<String> {
    let mut ids: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
    ids.sort();
    ids
}

/// What `cat FILE` prints in the one running task of `name`.
fn read_in_task(cluster: &Cluster, name: &str, file: &str) -> Option<(String, Task)> {
    let tasks = running(cluster, name).ok()?;
    let [task] = tasks.as_slice() else {
        return None;
    };
    let out = cluster.exec(0, &task.id, &["cat", file]).ok()?;
    Some((
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        task.clone(),
    ))
}

fn labels() -> BTreeMap<String, String> {
    [(STACK_LABEL.to_string(), "demo".to_string())].into()
}

fn service(key: &str, image: &str, replicas: u64) -> ServiceSpec {
    ServiceSpec {
        name: scoped_name("demo", key),
        image: image.into(),
        args: vec!["sleep".into(), "3600".into()],
        labels: labels(),
        mode: Some(Mode::Replicated(ReplicatedMode { replicas })),
        ..Default::default()
    }
}

fn actions(reply: &DeployStackResponse) -> Vec<(String, StackAction)> {
    reply
        .changes
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                StackAction::try_from(c.action).unwrap_or(StackAction::Unchanged),
            )
        })
        .collect()
}

fn changed(reply: &DeployStackResponse) -> Vec<String> {
    actions(reply)
        .into_iter()
        .filter(|(_, a)| *a != StackAction::Unchanged)
        .map(|(n, _)| n)
        .collect()
}

#[test]
fn a_redeploy_restarts_only_what_changed() -> Result<()> {
    let cluster = Cluster::start("stackeng", 1, 1, 0)?;
    let work = cluster.c.net.workdir().join("image");
    let layout = cluster.image_layout();
    layout_with_file(&work, &layout, "1", "v1", VERSION_FILE, "v1\n")?;
    layout_with_file(&work, &layout, "1", "v2", VERSION_FILE, "v2\n")?;
    let web_image = cluster
        .registry
        .push(&cluster.c.net, &layout, "v1", "web:1")?;
    let d1 = cluster.registry.digest(&cluster.c.net, "web:1")?;

    let mut web = service("web", &web_image, 1);
    web.configs = vec![ConfigReference {
        config_name: "demo_conf".into(),
        target: CONF.into(),
        ..Default::default()
    }];
    let mut stack = StackSpec {
        name: "demo".into(),
        configs: vec![StackConfig {
            name: "demo_conf".into(),
            data: b"port=80".to_vec(),
            labels: labels(),
            external: false,
        }],
        services: vec![web, service("cache", &cluster.image, 1)],
        ..Default::default()
    };
    let created = deploy(&cluster, &stack, false)?;
    assert_eq!(changed(&created), ["demo_conf", "demo_web", "demo_cache"]);
    assert!(created.warnings.is_empty(), "{:?}", created.warnings);
    let (version, web_task) = wait_until("web to run v1", CONVERGE, || {
        read_in_task(&cluster, "demo_web", VERSION_FILE)
    })?;
    assert_eq!(version, "v1");
    assert_eq!(
        web_task.spec.as_ref().map(|s| s.image_digest.as_str()),
        Some(d1.as_str())
    );
    let cache = wait_until("cache to run", CONVERGE, || {
        running(&cluster, "demo_cache")
            .ok()
            .filter(|t| t.len() == 1)
    })?;

    // The same spec again: nothing written, nothing restarted.
    let again = deploy(&cluster, &stack, false)?;
    assert_eq!(again.revision, 0);
    assert!(changed(&again).is_empty(), "{:?}", actions(&again));
    assert_eq!(
        ids(&running(&cluster, "demo_web")?),
        ids(std::slice::from_ref(&web_task))
    );
    assert_eq!(ids(&running(&cluster, "demo_cache")?), ids(&cache));

    // The tag pushed again: the same text, another digest — a change of web
    // only, shown with both digests; the dry run says what the deploy does.
    cluster
        .registry
        .push(&cluster.c.net, &layout, "v2", "web:1")?;
    let d2 = cluster.registry.digest(&cluster.c.net, "web:1")?;
    let diff = deploy(&cluster, &stack, true)?;
    assert_eq!(diff.revision, 0);
    assert_eq!(changed(&diff), ["demo_web"]);
    let web_fields: &[FieldChange] = &diff
        .changes
        .iter()
        .find(|c| c.name == "demo_web")
        .context("web in the plan")?
        .fields;
    assert_eq!(
        web_fields,
        [FieldChange {
            field: "image_digest".into(),
            from: d1.clone(),
            to: d2.clone(),
        }]
    );
    let rolled = deploy(&cluster, &stack, false)?;
    assert_eq!(rolled.changes, diff.changes);
    let (version, _) = wait_until("web to run v2", CONVERGE, || {
        read_in_task(&cluster, "demo_web", VERSION_FILE).filter(|(v, _)| v == "v2")
    })?;
    assert_eq!(version, "v2");
    assert_eq!(ids(&running(&cluster, "demo_cache")?), ids(&cache));

    // More replicas: a task more, the running one stays.
    stack.services[1].mode = Some(Mode::Replicated(ReplicatedMode { replicas: 2 }));
    let scaled = deploy(&cluster, &stack, false)?;
    assert_eq!(changed(&scaled), ["demo_cache"]);
    let two = wait_until("two cache tasks", CONVERGE, || {
        running(&cluster, "demo_cache")
            .ok()
            .filter(|t| t.len() == 2)
    })?;
    assert!(ids(&two).contains(&cache[0].id), "the running task stays");

    // The config's content: web rolls onto it, cache does not.
    let (_, web_before) = read_in_task(&cluster, "demo_web", CONF).context("web")?;
    stack.configs[0].data = b"port=8080".to_vec();
    let reconfigured = deploy(&cluster, &stack, false)?;
    assert_eq!(changed(&reconfigured), ["demo_conf", "demo_web"]);
    let (conf, web_after) = wait_until("web to read the new config", CONVERGE, || {
        read_in_task(&cluster, "demo_web", CONF).filter(|(c, _)| c == "port=8080")
    })?;
    assert_eq!(conf, "port=8080");
    assert_ne!(web_after.id, web_before.id);
    assert_eq!(ids(&running(&cluster, "demo_cache")?), ids(&two));

    let removed = stacks(&cluster, |mut c| async move {
        c.remove(RemoveStackRequest {
            name: "demo".into(),
        })
        .await
    })?;
    let names: Vec<&str> = removed.removed.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["demo_cache", "demo_web", "demo_conf"]);
    Ok(())
}
