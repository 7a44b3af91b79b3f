//! The image verbs, `info` and `version` on a running cluster (#14): three
//! controllers, three agents and a registry on test hosts. Everything goes
//! through the running agents (their image stores are locked by them), while
//! a global service's tasks run on every node.

use std::time::Duration;

use anyhow::{Context, Result};
use berth_testhost::cluster::Cluster;
use berth_testhost::images::layout_with_file;
use berth_testhost::{bin_path, wait_until};
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(60);

/// `berth ARGS` as the test's admin; its output whatever its exit.
fn berth(cluster: &Cluster, args: &[&str]) -> Result<std::process::Output> {
    cluster.berth_env(0, &[], args)
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).to_string()
}

/// `berth images --format json [--node N]`: (node, name) of every row.
fn listed(cluster: &Cluster, node: Option<&str>) -> Result<Vec<(String, Value)>> {
    let mut args = vec!["images", "--format", "json"];
    if let Some(node) = node {
        args.extend(["--node", node]);
    }
    let out = cluster.berth(&args)?;
    let rows: Vec<Value> = serde_json::from_str(&out).context("images JSON")?;
    Ok(rows
        .into_iter()
        .map(|r| (r["node"].as_str().unwrap_or_default().to_string(), r))
        .collect())
}

/// The nodes that list an image named `name`.
fn nodes_with(cluster: &Cluster, name: &str) -> Result<Vec<String>> {
    let mut nodes: Vec<String> = listed(cluster, None)?
        .into_iter()
        .filter(|(_, r)| r["name"] == name)
        .map(|(n, _)| n)
        .collect();
    nodes.sort();
    Ok(nodes)
}

fn blobs_of(cluster: &Cluster, agent: usize) -> Result<usize> {
    let dir = cluster.agent_dir(agent).join("images/blobs/sha256");
    Ok(std::fs::read_dir(dir)?.count())
}

#[test]
fn images_pull_rmi_prune_info_and_version_through_the_running_agents() -> Result<()> {
    let mut cluster = Cluster::start("images", 3, 3, 0)?;
    let all = ["n1", "n2", "n3"];
    let work = cluster.c.net.workdir().join("image");
    let layout = cluster.image_layout();
    layout_with_file(&work, &layout, "1", "web", "/etc/web", "web\n")?;
    let web = cluster
        .registry
        .push(&cluster.c.net, &layout, "web", "web:1")?;

    // A task on every node: its image is pulled pinned to its digest.
    cluster.create_service("sleeper", &["--mode", "global"], &["sleep", "3600"])?;
    cluster.wait_running("sleeper", 3, CONVERGE)?;
    let rows = listed(&cluster, None)?;
    let pinned: Vec<&Value> = rows
        .iter()
        .map(|(_, r)| r)
        .filter(|r| r["repository"].as_str() == cluster.image.strip_suffix(":1"))
        .collect();
    assert_eq!(pinned.len(), 3, "{rows:?}");
    let pinned_name = pinned[0]["name"].as_str().unwrap_or_default().to_string();
    assert!(pinned_name.contains("@sha256:"), "{pinned_name}");
    assert_eq!(pinned[0]["tag"], "", "a name by digest has no tag");
    assert_eq!(pinned[0]["used_by"].as_array().map(Vec::len), Some(1));
    let table = text(&berth(&cluster, &["images"])?.stdout);
    for want in [
        "REPOSITORY",
        "TAG",
        "DIGEST",
        "IMAGE ID",
        "CREATED",
        "SIZE",
        "NODE",
        "<none>",
    ] {
        assert!(table.contains(want), "{want} not in\n{table}");
    }
    let ids = text(&berth(&cluster, &["image", "ls", "-q"])?.stdout);
    assert_eq!(ids.lines().count(), 1, "one image id on every node: {ids}");

    // rmi of the image the tasks run: refused on every node, naming the
    // task, forced or not.
    let tasks = cluster.ps("sleeper")?;
    for force in [false, true] {
        let mut args = vec!["rmi", pinned_name.as_str(), "--all-nodes"];
        if force {
            args.push("-f");
        }
        let out = berth(&cluster, &args)?;
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "removed an image in use");
        assert!(stderr.contains("is using it"), "{stderr}");
        assert!(
            tasks
                .iter()
                .all(|t| stderr.contains(&format!("task {}", t.id))),
            "{stderr}"
        );
    }
    assert_eq!(nodes_with(&cluster, &pinned_name)?, all);
    // pull --all-nodes: every node then lists it; a line per step, not a terminal.
    let out = berth(&cluster, &["pull", &web, "--all-nodes"])?;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for node in all {
        assert!(
            stdout.contains(&format!("{node}: Pulling {web}")),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("{node}: Digest: sha256:")),
            "{stdout}"
        );
    }
    assert!(stdout.contains("Pull complete"), "{stdout}");
    assert_eq!(nodes_with(&cluster, &web)?, all);

    // pull --node: that node only.
    let out = berth(&cluster, &["pull", &cluster.image, "--node", "n2"])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(nodes_with(&cluster, &cluster.image)?, ["n2"]);
    let n2: Vec<String> = listed(&cluster, Some("n2"))?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(n2.iter().all(|n| n == "n2") && n2.len() == 3, "{n2:?}");

    // A change without --node on a cluster of three says to choose.
    let out = berth(&cluster, &["pull", &web])?;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--all-nodes"),
        "{}",
        text(&out.stderr)
    );

    // The tag of that image on n2 is another name of it: only untagged.
    let out = berth(&cluster, &["rmi", &cluster.image, "--node", "n2"])?;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("n2: Untagged: {}", cluster.image)),
        "{stdout}"
    );
    assert!(!stdout.contains("Deleted"), "{stdout}");

    // rmi of an unused image: gone from every node with its content.
    let blobs_before = blobs_of(&cluster, 0)?;
    let out = berth(&cluster, &["rmi", &web, "--all-nodes"])?;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for node in all {
        assert!(
            stdout.contains(&format!("{node}: Untagged: {web}")),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("{node}: Deleted: sha256:")),
            "{stdout}"
        );
    }
    assert!(nodes_with(&cluster, &web)?.is_empty());
    assert!(
        blobs_of(&cluster, 0)? < blobs_before,
        "the content went too"
    );
    let out = berth(&cluster, &["rmi", &web, "--all-nodes"])?;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("No such image"),
        "{}",
        text(&out.stderr)
    );

    // prune: dangling content only, named images stay; -a takes every
    // image no task uses, and spares the one the task runs.
    let out = berth(&cluster, &["pull", &web, "--node", "n1", "-q"])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = berth(&cluster, &["image", "prune", "-f", "--all-nodes"])?;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("Total reclaimed space"), "{stdout}");
    assert_eq!(nodes_with(&cluster, &web)?, ["n1"]);
    let out = berth(&cluster, &["image", "prune", "-a", "-f", "--node", "n1"])?;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains(&format!("n1: untagged: {web}")), "{stdout}");
    assert!(stdout.contains("n1: deleted: sha256:"), "{stdout}");
    assert!(nodes_with(&cluster, &web)?.is_empty());
    assert_eq!(nodes_with(&cluster, &pinned_name)?, all);
    // Without -f it asks, and a "no" (here: no answer) leaves everything.
    let out = berth(&cluster, &["image", "prune", "-a", "--node", "n1"])?;
    assert!(
        text(&out.stdout).contains("Are you sure"),
        "{}",
        text(&out.stdout)
    );
    assert!(!text(&out.stdout).contains("reclaimed"));

    // A pull of an image that does not exist: a clear error per node, and
    // nothing left of it on any node.
    let blobs_before: Vec<usize> = (0..3)
        .map(|i| blobs_of(&cluster, i))
        .collect::<Result<_>>()?;
    let missing = format!("{}/nothere:1", cluster.registry.address());
    let out = berth(&cluster, &["pull", &missing, "--all-nodes"])?;
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "pulled an image that does not exist");
    for node in all {
        assert!(
            stderr.contains(&format!("node {node}: pull of {missing}")),
            "{stderr}"
        );
    }
    assert!(stderr.contains("failed on 3 of 3 nodes"), "{stderr}");
    assert!(nodes_with(&cluster, &missing)?.is_empty());
    for (i, before) in blobs_before.iter().enumerate() {
        assert_eq!(blobs_of(&cluster, i)?, *before, "agent {i} kept something");
        let ingest = cluster.agent_dir(i).join("images/ingest");
        assert_eq!(std::fs::read_dir(ingest)?.count(), 0);
    }

    // info: the cluster and every node's host.
    let info: Value = serde_json::from_str(&cluster.berth(&["info", "--format", "json"])?)?;
    let controllers = info["controllers"].as_array().context("controllers")?;
    assert_eq!(controllers.len(), 3, "{info}");
    assert_eq!(
        controllers.iter().filter(|c| c["role"] == "leader").count(),
        1,
        "{info}"
    );
    assert!(info["term"].as_u64() >= Some(1), "{info}");
    assert_eq!(info["nodes_by_status"]["ready"], 3, "{info}");
    assert_eq!(info["services"], 1, "{info}");
    assert!(
        info["tasks_by_state"]["running"].as_u64() >= Some(3),
        "{info}"
    );
    let nodes = info["nodes"].as_array().context("nodes")?;
    assert_eq!(nodes.len(), 3);
    for node in nodes {
        let agent = &node["agent"];
        assert_eq!(agent["storage"], "overlayfs", "{node}");
        assert!(["v1", "v2"].contains(&agent["cgroup_version"].as_str().unwrap_or("")));
        assert!(!agent["kernel"].as_str().unwrap_or("").is_empty(), "{node}");
        assert!(
            agent["runtime_version"]
                .as_str()
                .unwrap_or("")
                .starts_with("berth-runtime"),
            "{node}"
        );
        assert_eq!(agent["containers"]["running"], 1, "{node}");
        assert!(agent["images"].as_u64() >= Some(1), "{node}");
        assert!(agent["cpus"].as_u64() >= Some(1), "{node}");
    }
    let table = cluster.berth(&["info"])?;
    for want in [
        "Storage Driver: overlayfs",
        "Cgroup Version: v",
        "Kernel Version:",
    ] {
        assert!(table.contains(want), "{want} not in\n{table}");
    }

    // version: the client first, then every controller and agent.
    // Each part says the version and commit its binary was built with (what
    // its `--version` prints).
    let built = |bin: &str| -> Result<String> {
        let out = std::process::Command::new(bin_path(bin))
            .arg("--version")
            .output()?;
        Ok(text(&out.stdout))
    };
    let says = |part: &Value, built: &str| {
        let (version, commit) = (part["version"].as_str(), part["commit"].as_str());
        assert_eq!(part["error"], "", "{part}");
        assert!(
            version.is_some_and(|v| !v.is_empty() && built.contains(v))
                && commit
                    .is_some_and(|c| !c.is_empty() && built.contains(&format!("(commit {c})"))),
            "{part} is not {built}"
        );
    };
    let version: Value = serde_json::from_str(&cluster.berth(&["version", "--format", "json"])?)?;
    says(&version["client"], &built("berth")?);
    let server = &version["server"];
    let controller = built("berth-controller")?;
    says(&server["serving"], &controller);
    let others = server["controllers"].as_array().context("controllers")?;
    assert_eq!(others.len(), 2, "{version}");
    others.iter().for_each(|c| says(c, &controller));
    let agents = server["agents"].as_array().context("agents")?;
    assert_eq!(agents.len(), 3, "{version}");
    let agent = built("berth-agent")?;
    agents.iter().for_each(|a| says(a, &agent));
    let table = cluster.berth(&["version"])?;
    assert!(table.starts_with("Client:"), "{table}");
    assert!(table.contains("Agent n3:"), "{table}");

    // berth-agent image: refused while the agent holds its store, saying
    // what to use; it works again once the agent is gone.
    let agent_bin = bin_path("berth-agent");
    let data = cluster.agent_dir(2).display().to_string();
    let ls = || {
        std::process::Command::new(&agent_bin)
            .args(["image", "ls", "--data-dir", &data])
            .output()
    };
    let out = ls()?;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("in use by another process") && stderr.contains("berth images"),
        "{stderr}"
    );
    cluster.agent(2)?.terminate(Duration::from_secs(10))?;
    let out = wait_until("berth-agent image ls without the agent", CONVERGE, || {
        ls().ok().filter(|o| o.status.success())
    })?;
    assert!(
        text(&out.stdout).contains(&pinned_name),
        "{}",
        text(&out.stdout)
    );
    Ok(())
}

#[test]
fn berth_pull_uses_the_users_registry_login_and_keeps_it_nowhere() -> Result<()> {
    use berth_testhost::leaks::files_holding;
    use berth_testhost::private_registry::{self, PrivateCluster};
    // One node, pulling from a private registry with basic auth.
    let PrivateCluster {
        cluster,
        registry: private,
        password,
        image,
    } = private_registry::start("imgauth", 1)?;

    // No login: the registry refuses, and the node says so.
    let docker = tempfile::tempdir()?;
    let docker_env = format!("DOCKER_CONFIG={}", docker.path().display());
    let out = cluster.berth_env(0, &[&docker_env], &["pull", &image])?;
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "pulled without credentials");
    assert!(
        stderr.contains(&format!("node n1: pull of {image}")),
        "{stderr}"
    );
    assert!(nodes_with(&cluster, &image)?.is_empty());

    // `docker login`'s file: the one node of the cluster pulls with it.
    let auth = private_registry::docker_login(docker.path(), &private, &password)?;
    let out = cluster.berth_env(0, &[&docker_env], &["pull", &image])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(nodes_with(&cluster, &image)?, ["n1"]);

    // Held in memory on the way: in no file of any host (data dirs, logs).
    for needle in [password.as_bytes(), auth.as_bytes()] {
        let mut found = Vec::new();
        files_holding(cluster.c.net.workdir(), needle, &mut found);
        assert!(found.is_empty(), "the credentials are in {found:?}");
    }
    Ok(())
}

/// `berth version | head -0`: the reader went away before the first line.
/// The CLI ends quietly with the shell's SIGPIPE status, not with a panic, and
/// (SIGPIPE stays ignored) a socket closed under it is an error it reports,
/// never a silent death.
#[test]
fn a_closed_stdout_ends_the_cli_quietly() -> Result<()> {
    let (reader, writer) = std::io::pipe()?;
    drop(reader);
    let out = std::process::Command::new(bin_path("berth"))
        .args(["--controller", "127.0.0.1:1", "version"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()?;
    assert_eq!(out.status.code(), Some(141), "{out:?}");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    Ok(())
}
