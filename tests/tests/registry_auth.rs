//! Registry credentials cluster-wide: with `--with-registry-auth` a service's
//! tasks pull from a registry that requires basic auth on every node, and the
//! credentials appear nowhere else (no file of any host, no log, no inspect,
//! no process's environment or arguments); the secret goes with the service.

use std::time::Duration;

use anyhow::{Context, Result};
use berth_testhost::cluster::Cluster;
use berth_testhost::leaks::{files_holding, processes_holding};
use berth_testhost::private_registry::{self, PrivateCluster};
use berth_testhost::wait_until;
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(60);

/// Names of the cluster's secrets.
fn secret_names(cluster: &Cluster) -> Result<Vec<String>> {
    let out = cluster.berth(&["secret", "ls", "--format", "json"])?;
    let list: Value = serde_json::from_str(&out).context("secret ls JSON")?;
    Ok(list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect())
}

#[test]
fn a_private_registry_with_basic_auth_works_cluster_wide_with_registry_auth() -> Result<()> {
    // Two agents that pull from a private registry with basic auth.
    let PrivateCluster {
        cluster,
        registry: private,
        password,
        image,
    } = private_registry::start("regauth", 2)?;
    let private_address = private.address().to_string();
    let create = |name: &str, extra: &[&str]| {
        let mut args = vec!["service", "create", "--detach", name, "--image", &image];
        args.extend_from_slice(extra);
        args.extend(["--mode", "global", "--", "sleep", "3600"]);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };

    // The registry does require the credentials: without them the pull fails.
    // Nor can the controller pin its image to a digest without them.
    let anon = create("anon", &[]);
    let out = cluster.berth_env(0, &[], &anon.iter().map(String::as_str).collect::<Vec<_>>())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "warning: image {image} is not pinned to a digest: registry {private_address} needs \
             credentials ("
        )),
        "{stderr}"
    );
    let failed = wait_until("a failed pull of anon", CONVERGE, || {
        cluster
            .ps("anon")
            .ok()?
            .into_iter()
            .find(|t| t.state == "failed")
    })?;
    assert!(
        failed.error.contains(&image)
            && (failed.error.contains("401") || failed.error.to_lowercase().contains("auth")),
        "{failed:?}"
    );
    cluster.berth(&["service", "rm", "anon"])?;

    // No credentials for that registry: a clear error, and nothing created.
    let docker = tempfile::tempdir()?;
    let docker_env = format!("DOCKER_CONFIG={}", docker.path().display());
    let web = create("web", &["--with-registry-auth"]);
    let web: Vec<&str> = web.iter().map(String::as_str).collect();
    let out = cluster.berth_env(0, &[&docker_env], &web)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "created without credentials");
    assert!(
        stderr.contains(&format!(
            "no credentials for registry {}",
            private.address()
        )) && stderr.contains(&docker.path().join("config.json").display().to_string()),
        "{stderr}"
    );
    assert!(secret_names(&cluster)?.is_empty());
    assert!(cluster.berth(&["service", "inspect", "web"]).is_err());

    // `docker login`'s file: the tasks pull on both nodes.
    let auth = private_registry::docker_login(docker.path(), &private, &password)?;
    let out = cluster.berth_env(0, &[&docker_env], &web)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The controller pinned the image with the service's credentials.
    assert!(!stderr.contains("warning"), "{stderr}");
    let digest = private.digest(&cluster.c.net, "private/busybox:1")?;
    let inspect: Value = serde_json::from_str(&cluster.berth(&["service", "inspect", "web"])?)?;
    assert_eq!(
        inspect["spec"]["image_digest"],
        digest.as_str(),
        "{inspect}"
    );
    cluster.wait_running("web", 2, CONVERGE)?;
    let per_node = cluster.running_per_node("web")?;
    assert_eq!(per_node.len(), 2, "one task per node: {per_node:?}");
    for (i, row) in cluster
        .ps("web")?
        .into_iter()
        .filter(|t| t.state == "running")
        .enumerate()
    {
        let agent = (0..2)
            .find(|&a| Cluster::agent_name(a) == row.node)
            .with_context(|| format!("task {} on unknown node {}", row.id, row.node))?;
        let out = cluster.exec(agent, &row.id, &["cat", "/etc/base-release"])?;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "base\n",
            "task {i} runs the private image"
        );
        // Never mounted into the container.
        let ls = cluster.exec(agent, &row.id, &["ls", "/run/secrets"])?;
        assert!(!ls.status.success(), "the task has /run/secrets");
    }

    // One secret holds them; the spec only names it.
    let names = secret_names(&cluster)?;
    let [secret] = names.as_slice() else {
        panic!("one secret: {names:?}");
    };
    assert!(secret.starts_with("registry-auth-web-"), "{secret}");
    let inspect = cluster.berth(&["service", "inspect", "web"])?;
    assert!(inspect.contains(secret.as_str()), "{inspect}");

    // Nowhere else: no file of any host (data dirs, logs), no answer, no
    // berth process's environment or arguments.
    for needle in [password.as_bytes(), auth.as_bytes()] {
        let mut found = Vec::new();
        files_holding(cluster.c.net.workdir(), needle, &mut found);
        assert!(found.is_empty(), "the credentials are in {found:?}");
        for args in [
            &["service", "inspect", "web"][..],
            &["secret", "inspect", secret],
            &["service", "ps", "web", "--format", "json"],
        ] {
            let out = cluster.berth(args)?;
            assert!(
                !out.as_bytes().windows(needle.len()).any(|w| w == needle),
                "{args:?} shows them: {out}"
            );
        }
        let (checked, found) = processes_holding(needle);
        assert!(checked >= 3, "only {checked} berth processes seen");
        assert!(found.is_empty(), "the credentials are in {found:?}");
    }

    // Kept while the service pulls with it; removed with the service.
    let err = cluster
        .berth(&["secret", "rm", secret])
        .expect_err("in use");
    assert!(
        format!("{err:#}").contains("in use by service web"),
        "{err:#}"
    );
    cluster.berth(&["service", "rm", "web"])?;
    let left = secret_names(&cluster)?;
    assert!(left.is_empty(), "left over: {left:?}");
    Ok(())
}
