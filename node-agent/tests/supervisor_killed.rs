//! An agent process killed with SIGKILL leaves its containers running: the test
//! re-runs itself as that agent (a child process with its own supervisor), kills
//! it, and adopts the container from the same data dir.

#[path = "support/supervisor.rs"]
mod fixture;
mod support;

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use berth_agent::image::ImageStore;
use berth_agent::supervisor::{Supervisor, SupervisorConfig};
use berth_proto::v1::{Mount, TaskState, mount::Kind};
use fixture::{Env, Rt, Seen, in_private_mounts, is};

const T: Duration = Duration::from_secs(60);
const HELPER: &str = "BERTH_SUPERVISOR_TEST_AGENT";
const TEST: &str = "a_killed_agent_leaves_its_containers_running";

/// What the agent process needs, passed in its environment as JSON.
#[derive(serde::Serialize, serde::Deserialize)]
struct AgentArgs {
    data: PathBuf,
    runtime: PathBuf,
    runtime_root: PathBuf,
    cgroup: String,
    task: Vec<u8>,
}

fn task(env: &Env, ctl: &std::path::Path) -> berth_proto::v1::Task {
    let mut t = env.task(
        "survivor",
        "while [ ! -e /ctl/stop ]; do echo tick; sleep 0.1; done; exit 7",
    );
    if let Some(s) = t.spec.as_mut() {
        // Across mount namespaces, only a bind mount reaches the container.
        s.mounts = vec![Mount {
            kind: Kind::Bind as i32,
            source: ctl.display().to_string(),
            target: "/ctl".into(),
            read_only: true,
            ..Default::default()
        }];
    }
    t
}

/// The agent's part: run the task, say its pid, wait to be killed.
fn agent(args: AgentArgs) -> Result<()> {
    use prost::Message;
    let task = berth_proto::v1::Task::decode(args.task.as_slice())?;
    in_private_mounts(move || async move {
        let mut cfg = SupervisorConfig::new(open_when_free(&args.data).await?);
        cfg.runtime = args.runtime;
        cfg.runtime_root = args.runtime_root;
        cfg.cgroup_parent = args.cgroup;
        cfg.shim = vec![env!("CARGO_BIN_EXE_berth-shim").into()];
        let (sup, rx) = Supervisor::open(&args.data, cfg).await?;
        let mut rx = Seen::new(rx);
        sup.reconcile(vec![task.clone()]);
        let running = rx.until(&task.id, T, is(TaskState::Running)).await?;
        println!("RUNNING {}", running.container_id);
        tokio::time::sleep(Duration::from_secs(600)).await;
        Ok(())
    })
}

/// The store, once the test process's own handle (dropped just before this
/// helper started) has let go of it: the store's lock, then sled's, which
/// it releases asynchronously.
async fn open_when_free(data: &std::path::Path) -> Result<ImageStore> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match ImageStore::open(data) {
            Ok(store) => return Ok(store),
            Err(e)
                if matches!(e, berth_agent::image::ImageError::Locked { .. })
                    || e.to_string().contains("could not acquire lock") =>
            {
                anyhow::ensure!(std::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[test]
fn a_killed_agent_leaves_its_containers_running() -> Result<()> {
    if let Ok(json) = std::env::var(HELPER) {
        return agent(serde_json::from_str(&json)?);
    }
    let mut env = Env::new("killed", Rt::Berth)?;
    let ctl = env.work.join("ctl");
    std::fs::create_dir_all(&ctl)?;
    let task = task(&env, &ctl);
    // The agent process opens the store itself.
    env.images = None;
    let args = AgentArgs {
        data: env.data.clone(),
        runtime: env.runtime.clone(),
        runtime_root: env.runtime_root.clone(),
        cgroup: env.cgroup.clone(),
        task: prost::Message::encode_to_vec(&task),
    };
    let mut agent = Command::new(std::env::current_exe()?)
        .args(["--exact", TEST, "--nocapture"])
        .env(HELPER, serde_json::to_string(&args)?)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let guard = KillOnDrop(agent.id() as i32);
    let stdout = agent.stdout.take().context("stdout")?;
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(stdout);
    while !line.starts_with("RUNNING") {
        line.clear();
        anyhow::ensure!(reader.read_line(&mut line)? > 0, "the agent ended early");
    }
    let before = env.runtime_state(&task.id).context("state")?;
    assert_eq!(before["status"], "running");
    // kill -9 of the agent.
    drop(guard);
    agent.wait()?;
    std::thread::sleep(Duration::from_millis(300));
    let after = env.runtime_state(&task.id).context("state")?;
    assert_eq!(
        after["status"], "running",
        "the container died with the agent"
    );
    assert_eq!(after["pid"], before["pid"]);

    let env = std::sync::Arc::new(env);
    let e = env.clone();
    in_private_mounts(move || async move {
        let (sup, rx) = e.open().await?;
        let mut rx = Seen::new(rx);
        let now = sup.statuses();
        let status = now
            .first()
            .and_then(|u| u.status.clone())
            .context("status")?;
        assert_eq!(status.state, TaskState::Running as i32, "{status:?}");
        assert_eq!(status.container_id, task.id);
        sup.reconcile(vec![task.clone()]);
        std::fs::write(ctl.join("stop"), b"")?;
        let end = rx.end(&task.id, T).await?;
        assert_eq!(end.state, TaskState::Failed as i32, "{end:?}");
        assert_eq!(end.exit_code, Some(7), "{end:?}");
        Ok(())
    })
}

/// SIGKILLs the agent process when dropped (also when the test fails early).
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill with plain integers.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}
