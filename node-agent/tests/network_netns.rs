//! The agent-made container namespace: `create_netns` bind-mounts a fresh network
//! namespace at a path (as the agent does before the runtime starts a
//! container), is idempotent, and the namespace carries traffic once attached;
//! `remove_netns` undoes the mount. The mounts happen in a private mount
//! namespace of a test thread, never in the machine's.

#[path = "support/network.rs"]
mod network;

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;

use anyhow::{Context, Result};
use berth_agent::dataplane::{create_netns, remove_netns};
use berth_testhost::TestNet;
use network::{Agent, Container, plan_for, probe};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

#[test]
fn an_agent_made_namespace_is_idempotent_carries_traffic_and_is_removed() -> Result<()> {
    let net = TestNet::new("overlay_netns", 2)?;
    let path = net.workdir().join("netns").join("task-1");
    let dir = path.clone();
    let ns = std::thread::spawn(move || -> Result<File> {
        unshare(CloneFlags::CLONE_NEWNS).context("unshare a mount namespace")?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .context("make / private")?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(create_netns(&dir))?;
        let ns = File::open(&dir)?;
        let own = std::fs::metadata("/proc/thread-self/ns/net")?;
        assert_ne!(ns.metadata()?.ino(), own.ino(), "not a new namespace");
        // Again: the same namespace stays.
        rt.block_on(create_netns(&dir))?;
        assert_eq!(File::open(&dir)?.metadata()?.ino(), ns.metadata()?.ino());
        remove_netns(&dir)?;
        assert!(!dir.exists(), "{} still there", dir.display());
        remove_netns(&dir)?;
        Ok(ns)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("mount thread panicked"))??;

    // The namespace (held by our fd now) becomes a container on h1.
    let members = [0, 1];
    let agents = members
        .iter()
        .map(|&i| {
            let agent = Agent::start(net.host(i))?;
            agent.reconcile(&plan_for(&net, i, &members))?;
            Ok(agent)
        })
        .collect::<Result<Vec<_>>>()?;
    let c1 = Container {
        id: "task-1".into(),
        ns,
        ip: Ipv4Addr::new(10, 20, 1, 10),
    };
    let c2 = Container::new("task-2", Ipv4Addr::new(10, 20, 2, 10))?;
    agents[0].attach(c1.request(0))?;
    agents[1].attach(c2.request(1))?;
    probe(&c1, &c2, 1450 - 28)?;
    probe(&c2, &c1, 64)?;
    assert!(!path.exists());
    Ok(())
}
