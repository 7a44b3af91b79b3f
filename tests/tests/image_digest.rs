//! Images by digest (#13, Swarm's `--resolve-image`): the controller pins a
//! service's tag to the digest its registry gives, tasks run exactly that
//! image, a new push under the same tag rolls out with a forced update, an
//! unreachable registry leaves the tag unpinned (or keeps the old digest)
//! with a warning and the nodes resolve it once the registry is back, and
//! `--no-resolve-image` skips the lookup.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_proto::v1::cluster_client::ClusterClient;
use berth_proto::v1::{
    CreateServiceRequest, GetServiceRequest, ListTasksRequest, ReplicatedMode, Service,
    ServiceSpec, Task, TaskState, UpdateServiceRequest, service_spec::Mode,
};
use berth_testhost::cluster::Cluster;
use berth_testhost::controllers;
use berth_testhost::images::layout_with_file;
use berth_testhost::wait_until;
use tonic::transport::Channel;

const CONVERGE: Duration = Duration::from_secs(60);
const VERSION_FILE: &str = "/etc/web-version";

/// Runs `call` with an API client of controller 0 on the client host's
/// runtime, whose threads are in that test host's network namespace.
fn api<T, F, Fut>(cluster: &Cluster, call: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(ClusterClient<Channel>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>> + Send,
{
    let addr = cluster.c.address(0);
    let security = cluster.c.security();
    cluster.c.run(async move {
        let client = controllers::connect(&addr, &security).await?;
        Ok(call(client).await?.into_inner())
    })
}

fn get(cluster: &Cluster, name: &str) -> Result<Service> {
    let service = name.to_string();
    api(cluster, |mut c| async move {
        c.get_service(GetServiceRequest { service }).await
    })
}

fn spec_of(service: &Service) -> ServiceSpec {
    service.spec.clone().unwrap_or_default()
}

/// The service's tasks that run and should.
fn running_tasks(cluster: &Cluster, name: &str) -> Result<Vec<Task>> {
    let service = name.to_string();
    let tasks = api(cluster, |mut c| async move {
        c.list_tasks(ListTasksRequest {
            service,
            ..Default::default()
        })
        .await
    })?;
    Ok(tasks
        .tasks
        .into_iter()
        .filter(|t| {
            t.desired_state == TaskState::Running as i32
                && t.status.as_ref().map(|s| s.state) == Some(TaskState::Running as i32)
        })
        .collect())
}

/// What `cat VERSION_FILE` prints in the one running task of `name` (on
/// agent 0), and that task.
fn served_version(cluster: &Cluster, name: &str) -> Option<(String, Task)> {
    let tasks = running_tasks(cluster, name).ok()?;
    let [task] = tasks.as_slice() else {
        return None;
    };
    let out = cluster.exec(0, &task.id, &["cat", VERSION_FILE]).ok()?;
    Some((
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        task.clone(),
    ))
}

fn web_spec(name: &str, image: &str) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        image: image.into(),
        args: vec!["sleep".into(), "3600".into()],
        mode: Some(Mode::Replicated(ReplicatedMode { replicas: 1 })),
        ..Default::default()
    }
}

/// A forced update of `name` through the API with its spec as stored (what
/// `service update --force` sends).
fn force_update(cluster: &Cluster, name: &str) -> Result<(Service, Vec<String>)> {
    let current = get(cluster, name)?;
    let mut spec = spec_of(&current);
    spec.force_update += 1;
    let service = name.to_string();
    let answer = api(cluster, |mut c| async move {
        c.update_service(UpdateServiceRequest {
            service,
            spec: Some(spec),
            ..Default::default()
        })
        .await
    })?;
    Ok((answer.service.context("no service")?, answer.warnings))
}

#[test]
fn a_tag_is_pinned_to_its_digest_rolls_out_when_pushed_again_and_survives_a_registry_outage()
-> Result<()> {
    let mut cluster = Cluster::start("imgdigest", 1, 1, 0)?;
    let work = cluster.c.net.workdir().join("image");
    let layout = cluster.image_layout();
    layout_with_file(&work, &layout, "1", "v1", VERSION_FILE, "v1\n")?;
    layout_with_file(&work, &layout, "1", "v2", VERSION_FILE, "v2\n")?;
    let image = cluster
        .registry
        .push(&cluster.c.net, &layout, "v1", "web:1")?;
    let d1 = cluster.registry.digest(&cluster.c.net, "web:1")?;
    // A tag no node has pulled yet, for the registry's outage.
    let unpulled = cluster
        .registry
        .push(&cluster.c.net, &layout, "v1", "web:2")?;

    // Created from the tag: pinned to what the tag names, without a word.
    let out = cluster.berth_env(
        0,
        &[],
        &[
            "service", "create", "web", "--image", &image, "--", "sleep", "3600",
        ],
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let web = get(&cluster, "web")?;
    assert_eq!(spec_of(&web).image, image, "inspect keeps the tag");
    assert_eq!(spec_of(&web).image_digest, d1);
    let inspect = cluster.berth(&["service", "inspect", "web"])?;
    assert!(
        inspect.contains(&image) && inspect.contains(&d1),
        "{inspect}"
    );
    let (version, task) = wait_until("web to run v1", CONVERGE, || {
        served_version(&cluster, "web").filter(|(v, _)| v == "v1")
    })?;
    assert_eq!(version, "v1");
    assert_eq!(
        task.spec.as_ref().map(|s| s.image_digest.as_str()),
        Some(d1.as_str()),
        "the task's spec is pinned"
    );

    // The same tag pushed again: a forced update with the same spec pins
    // the new digest and rolls it out.
    cluster
        .registry
        .push(&cluster.c.net, &layout, "v2", "web:1")?;
    let d2 = cluster.registry.digest(&cluster.c.net, "web:1")?;
    assert_ne!(d1, d2);
    // `service update --force` as a pipeline runs it: it waits for the
    // rollout and exits 0, without a warning.
    let out = cluster.berth_env(0, &[], &["service", "update", "web", "--force"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let updated = get(&cluster, "web")?;
    assert_eq!(spec_of(&updated).image, image);
    assert_eq!(spec_of(&updated).image_digest, d2);
    let (_, task) = wait_until("web to run v2", CONVERGE, || {
        served_version(&cluster, "web").filter(|(v, _)| v == "v2")
    })?;
    assert_eq!(
        task.spec.as_ref().map(|s| s.image_digest.as_str()),
        Some(d2.as_str())
    );

    // --no-resolve-image: no lookup, no warning, the tag as written; the
    // node resolves it (to v2, what the tag names now).
    let out = cluster.berth_env(
        0,
        &[],
        &[
            "service",
            "create",
            "loose",
            "--image",
            &image,
            "--no-resolve-image",
            "--",
            "sleep",
            "3600",
        ],
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_eq!(spec_of(&get(&cluster, "loose")?).image_digest, "");
    let (version, task) = wait_until("loose to run", CONVERGE, || {
        served_version(&cluster, "loose")
    })?;
    assert_eq!(version, "v2");
    assert_eq!(
        task.spec.as_ref().map(|s| s.image_digest.as_str()),
        Some("")
    );

    // The registry down: a create still succeeds, unpinned, and says why
    // (within the controller's short deadline); an update of the same image
    // keeps its digest.
    cluster.registry.stop(&mut cluster.c.net)?;
    let started = std::time::Instant::now();
    let spec = web_spec("down", &unpulled);
    let created = api(&cluster, |mut c| async move {
        c.create_service(CreateServiceRequest {
            spec: Some(spec),
            no_resolve_image: false,
        })
        .await
    })?;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let registry = cluster.registry.address().to_string();
    let [warning] = created.warnings.as_slice() else {
        bail!("one warning expected: {:?}", created.warnings);
    };
    assert!(
        warning.starts_with(&format!(
            "image {unpulled} is not pinned to a digest: registry {registry} is unreachable ("
        )),
        "{warning}"
    );
    assert_eq!(
        spec_of(created.service.as_ref().context("service")?).image_digest,
        ""
    );
    let (kept, warnings) = force_update(&cluster, "web")?;
    assert_eq!(spec_of(&kept).image_digest, d2, "the old digest stays");
    let [warning] = warnings.as_slice() else {
        bail!("one warning expected: {warnings:?}");
    };
    assert!(
        warning.starts_with(&format!(
            "image {image} is not pinned to a new digest: registry {registry} is unreachable"
        )) && warning.ends_with(&format!("it stays pinned to {d2}")),
        "{warning}"
    );

    // Back up: the node resolves the unpinned tag when it pulls (its pulls
    // failed while the registry was down).
    cluster.registry.restart(&mut cluster.c.net)?;
    let (version, _) = wait_until("down to run once the registry is back", CONVERGE, || {
        served_version(&cluster, "down")
    })?;
    assert_eq!(version, "v1");
    let (version, _) = wait_until("web to run v2 again", CONVERGE, || {
        served_version(&cluster, "web")
            .filter(|(v, task)| v == "v2" && task.spec_version == kept.spec_version)
    })?;
    assert_eq!(version, "v2");
    Ok(())
}
