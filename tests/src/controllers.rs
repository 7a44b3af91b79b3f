//! A cluster of real `berth-controller` processes on test hosts, with a client
//! host that talks to them over the fabric.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_pki::{Bundle, Credentials, Role, Security};
use berth_proto::v1::cluster_client::ClusterClient;
use berth_proto::v1::{
    ClusterStatusResponse, CreateConfigRequest, GetConfigRequest, MemberRole, UpdateConfigRequest,
};
use tonic::transport::{Channel, Endpoint};

use crate::netruntime::run;
use crate::testnet::TestNet;
use crate::{bin_path, wait_until};

pub const API_PORT: u16 = 7400;
const PROC: &str = "controller";

pub struct Controllers {
    pub net: TestNet,
    /// Hosts that run (or ran) a controller.
    members: Vec<usize>,
    /// Process name per host ("controller", "controller-2" after a wipe, ...).
    procs: BTreeMap<usize, String>,
    /// Index of the host clients run in.
    client_host: usize,
    rt: tokio::runtime::Runtime,
    /// Arguments every controller started from now on gets (a test may drop
    /// one, e.g. `--autolock` before a restore).
    pub extra_args: Vec<String>,
    /// The admin credentials of the cluster (a copy of the first
    /// controller's `<data-dir>/admin`, so wiping that host keeps them).
    security: Option<Security>,
}

/// What a client learned of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Definitely not applied.
    Failed(String),
    /// May or may not have been applied.
    Unknown(String),
}

pub fn address(net: &TestNet, host: usize) -> String {
    format!("{}:{API_PORT}", net.host(host).address())
}

/// A client of the API at `address` with the cluster's admin credentials.
pub async fn connect(address: &str, security: &Security) -> Result<ClusterClient<Channel>> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(8))
        .tcp_nodelay(true);
    let channel = berth_pki::tls::connect(endpoint, security, Role::Controller)
        .await
        .with_context(|| format!("cannot connect to {address}"))?;
    Ok(ClusterClient::new(channel))
}

/// Writes `value` to config `key` (which must exist).
pub async fn write(client: &mut ClusterClient<Channel>, key: &str, value: &str) -> Outcome {
    let request = UpdateConfigRequest {
        config: key.to_string(),
        data: value.as_bytes().to_vec(),
        version: 0,
    };
    match client.update_config(request).await {
        Ok(_) => Outcome::Ok,
        // Refused before anything was proposed.
        Err(s) if s.code() == tonic::Code::NotFound || s.code() == tonic::Code::InvalidArgument => {
            Outcome::Failed(s.message().to_string())
        }
        Err(s) => Outcome::Unknown(format!("{:?}: {}", s.code(), s.message())),
    }
}

/// Reads config `key` linearizably; `Ok(None)` when it does not exist.
pub async fn read(client: &mut ClusterClient<Channel>, key: &str) -> Result<Option<String>> {
    read_with(client, key, false).await
}

pub async fn read_with(
    client: &mut ClusterClient<Channel>,
    key: &str,
    stale: bool,
) -> Result<Option<String>> {
    let request = GetConfigRequest {
        config: key.to_string(),
        stale,
    };
    match client.get_config(request).await {
        Ok(r) => Ok(Some(
            String::from_utf8_lossy(&r.into_inner().data).to_string(),
        )),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => bail!("read of {key} failed: {:?}: {}", s.code(), s.message()),
    }
}

pub async fn create(client: &mut ClusterClient<Channel>, key: &str, value: &str) -> Result<()> {
    client
        .create_config(CreateConfigRequest {
            name: key.to_string(),
            data: value.as_bytes().to_vec(),
            labels: Default::default(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("create of {key} failed: {:?}: {}", s.code(), s.message()))?;
    Ok(())
}

impl Controllers {
    /// `members` controller hosts (h1.. hN) plus one client host, all started
    /// and joined; returns once all members are voters.
    pub fn start(test: &str, members: usize) -> Result<Controllers> {
        Self::start_with(test, members, 0, &[])
    }

    /// As `start`, with `spare` extra hosts (for members added later) and extra
    /// controller arguments.
    pub fn start_with(
        test: &str,
        members: usize,
        spare: usize,
        extra_args: &[&str],
    ) -> Result<Controllers> {
        let net = TestNet::new(test, members + spare + 1)?;
        let client_host = members + spare;
        let rt = net.host(client_host).runtime()?;
        let mut c = Controllers {
            net,
            members: Vec::new(),
            procs: BTreeMap::new(),
            client_host,
            rt,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            security: None,
        };
        berth_pki::install_crypto_provider();
        c.spawn(0, None)?;
        c.take_admin_credentials(0)?;
        c.wait_voters(1)?;
        for host in 1..members {
            c.spawn(host, Some(host - 1))?;
            c.wait_voters(host + 1)?;
        }
        Ok(c)
    }

    pub fn address(&self, host: usize) -> String {
        address(&self.net, host)
    }

    pub fn members(&self) -> &[usize] {
        &self.members
    }

    pub fn client_host(&self) -> usize {
        self.client_host
    }

    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    /// The controller data dir of `host`.
    pub fn data_dir(&self, host: usize) -> std::path::PathBuf {
        self.net.host(host).dir().join("controller")
    }

    /// Where the tests keep the cluster's admin bundle (for the CLI's --tls-dir).
    pub fn admin_dir(&self) -> std::path::PathBuf {
        self.net.workdir().join("admin")
    }

    /// The cluster's admin credentials.
    pub fn security(&self) -> Security {
        self.security
            .clone()
            .expect("the admin credentials are taken when the first controller starts")
    }

    /// Copies the admin bundle `--init` wrote on `host` (waits for it).
    fn take_admin_credentials(&mut self, host: usize) -> Result<()> {
        let source = self.data_dir(host).join("admin");
        wait_until("the admin bundle", Duration::from_secs(20), || {
            Bundle::exists(&source).then_some(())
        })?;
        let bundle = Bundle::load(&source)?;
        bundle.save(&self.admin_dir())?;
        self.security = Some(Security::Tls(Credentials::new(bundle)?));
        Ok(())
    }

    /// Reads the admin bundle in `admin_dir()` again (after the CLI renewed it,
    /// e.g. in a CA rotation): the harness's clients use it from then on.
    pub fn reload_admin_credentials(&self) -> Result<()> {
        if let Some(creds) = self.security().credentials() {
            creds.replace(Bundle::load(&self.admin_dir())?)?;
        }
        Ok(())
    }

    /// The current join token of `role` ("agent" or "controller"), written to
    /// a file for `--token-file`; returns the file.
    pub fn token_file(&self, role: &str) -> Result<std::path::PathBuf> {
        let security = self.security();
        let addresses: Vec<String> = self.members.iter().map(|h| self.address(*h)).collect();
        let request = berth_proto::v1::JoinTokenRequest {
            role: role.to_string(),
            rotate: false,
        };
        let token = self.run(async move {
            let mut last = None;
            for address in addresses {
                match connect(&address, &security).await {
                    Ok(mut client) => match client.join_token(request.clone()).await {
                        Ok(answer) => return Ok(answer.into_inner().token),
                        Err(status) => last = Some(anyhow::anyhow!("{status}")),
                    },
                    Err(err) => last = Some(err),
                }
            }
            Err(last.unwrap_or_else(|| anyhow::anyhow!("no controllers")))
        })?;
        // Replaced atomically: an agent started a moment ago may be reading it.
        let path = self.net.workdir().join(format!("{role}.token"));
        let tmp = self.net.workdir().join(format!("{role}.token.tmp"));
        std::fs::write(&tmp, token)?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// Starts a controller on `host`: `--init` without `join`, else `--join` the
    /// controller on that host.
    pub fn spawn(&mut self, host: usize, join: Option<usize>) -> Result<()> {
        let mut args = Vec::new();
        match join {
            None => args.push("--init".to_string()),
            Some(via) => {
                args.push("--join".into());
                args.push(self.address(via));
                args.push("--token-file".into());
                args.push(self.token_file("controller")?.to_string_lossy().to_string());
            }
        }
        self.spawn_with(host, &args)
    }

    /// Starts a controller on `host` with its data dir, address, the
    /// harness's extra arguments and `args` (e.g. `--init --restore FILE`).
    pub fn spawn_with(&mut self, host: usize, more: &[String]) -> Result<()> {
        let data_dir = self.data_dir(host);
        let mut args = vec![
            "--data-dir".to_string(),
            data_dir.to_string_lossy().to_string(),
            "--listen".to_string(),
            self.address(host),
        ];
        args.extend(more.iter().cloned());
        args.extend(self.extra_args.iter().cloned());
        let program = bin_path("berth-controller");
        let h = self.net.host_mut(host);
        // A host's later controllers (restarts on a new data dir) get names
        // of their own.
        let name = match self.procs.get(&host) {
            None => PROC.to_string(),
            Some(_) => (2..)
                .map(|n| format!("{PROC}-{n}"))
                .find(|name| h.proc(name).is_err())
                .expect("an unused process name"),
        };
        h.spawn(&name, &program, &args)?;
        self.procs.insert(host, name);
        if !self.members.contains(&host) {
            self.members.push(host);
        }
        Ok(())
    }

    /// The controller process on `host`.
    pub fn proc(&mut self, host: usize) -> Result<&mut crate::Proc> {
        let name = self
            .procs
            .get(&host)
            .with_context(|| format!("h{} runs no controller", host + 1))?
            .clone();
        self.net.host_mut(host).proc(&name)
    }

    /// kill -9 of the controller on `host`.
    pub fn kill(&mut self, host: usize) -> Result<()> {
        self.proc(host)?.kill9()
    }

    /// Starts the controller on `host` again on its data dir.
    pub fn restart(&mut self, host: usize) -> Result<()> {
        self.proc(host)?.restart()
    }

    pub fn pause(&mut self, host: usize) -> Result<()> {
        self.proc(host)?.pause()
    }

    pub fn resume(&mut self, host: usize) -> Result<()> {
        self.proc(host)?.resume()
    }

    pub fn is_running(&mut self, host: usize) -> bool {
        self.proc(host).map(|p| p.is_running()).unwrap_or(false)
    }

    /// Stops counting `host` as a member (after `cluster remove`).
    pub fn forget(&mut self, host: usize) {
        self.members.retain(|h| *h != host);
    }

    /// Removes the controller process and its data dir (a wiped machine).
    pub fn wipe(&mut self, host: usize) -> Result<()> {
        self.kill(host)?;
        std::fs::remove_dir_all(self.data_dir(host))
            .with_context(|| format!("failed to wipe h{}", host + 1))?;
        Ok(())
    }

    /// Runs `fut` on the client host.
    pub fn run<F>(&self, fut: F) -> F::Output
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        run(&self.rt, fut)
    }

    /// The status as `host`'s controller answers it (1 s timeout).
    pub fn status(&self, host: usize) -> Result<ClusterStatusResponse> {
        let addr = self.address(host);
        let security = self.security();
        self.run(async move {
            let mut client = connect(&addr, &security).await?;
            let answer = tokio::time::timeout(
                Duration::from_secs(1),
                client.cluster_status(berth_proto::v1::ClusterStatusRequest {}),
            )
            .await
            .context("status timed out")??;
            Ok(answer.into_inner())
        })
    }

    /// Host index of the member with this raft id.
    pub fn host_of(&self, member_id: u64) -> Option<usize> {
        self.members.iter().copied().find(|h| {
            self.status(*h)
                .map(|s| s.member_id == member_id)
                .unwrap_or(false)
        })
    }

    /// Waits until the running members in `among` agree on one leader that is
    /// itself among them; returns its host index.
    pub fn wait_leader_among(&self, among: &[usize], timeout: Duration) -> Result<usize> {
        wait_until("an agreed leader", timeout, || {
            let mut leaders = BTreeMap::new();
            let mut me = BTreeMap::new();
            for h in among {
                let s = self.status(*h).ok()?;
                me.insert(s.member_id, *h);
                leaders.insert(*h, s.leader_id);
            }
            let first = *leaders.values().next()?;
            if first == 0 || leaders.values().any(|l| *l != first) {
                return None;
            }
            me.get(&first).copied()
        })
    }

    pub fn wait_leader(&self, timeout: Duration) -> Result<usize> {
        self.wait_leader_among(&self.members.clone(), timeout)
    }

    /// Waits until the newest member counts `n` voters (no learners left).
    pub fn wait_voters(&self, n: usize) -> Result<()> {
        let host = *self.members.last().context("no members")?;
        self.wait_voters_at(host, n)
    }

    /// Waits until `host` counts `n` voters and no learners.
    pub fn wait_voters_at(&self, host: usize, n: usize) -> Result<()> {
        wait_until(&format!("{n} voters"), Duration::from_secs(20), || {
            let s = self.status(host).ok()?;
            let voters = s
                .members
                .iter()
                .filter(|m| m.role != MemberRole::Learner as i32)
                .count();
            let learners = s.members.len() - voters;
            (voters == n && learners == 0 && s.leader_id != 0).then_some(())
        })
    }

    /// Creates config `key`, retrying through elections for up to 10 s.
    pub fn create(&self, host: usize, key: &str, value: &str) -> Result<()> {
        let addr = self.address(host);
        let (key, value) = (key.to_string(), value.to_string());
        let security = self.security();
        self.run(async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let result = async {
                    let mut client = connect(&addr, &security).await?;
                    create(&mut client, &key, &value).await
                }
                .await;
                match result {
                    Ok(()) => return Ok(()),
                    Err(err) if format!("{err:#}").contains("already") => return Ok(()),
                    Err(err) if Instant::now() > deadline => return Err(err),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })
    }

    /// Linearizable read of `key` through `host`.
    pub fn read(&self, host: usize, key: &str) -> Result<Option<String>> {
        let addr = self.address(host);
        let key = key.to_string();
        let security = self.security();
        self.run(async move {
            let mut client = connect(&addr, &security).await?;
            read(&mut client, &key).await
        })
    }

    /// Read of `key` from `host`'s own applied state (no leader involved).
    pub fn read_local(&self, host: usize, key: &str) -> Result<Option<String>> {
        let addr = self.address(host);
        let key = key.to_string();
        let security = self.security();
        self.run(async move {
            let mut client = connect(&addr, &security).await?;
            read_with(&mut client, &key, true).await
        })
    }

    /// One write through `host`.
    pub fn write(&self, host: usize, key: &str, value: &str) -> Outcome {
        let addr = self.address(host);
        let (key, value) = (key.to_string(), value.to_string());
        let security = self.security();
        self.run(async move {
            match connect(&addr, &security).await {
                Ok(mut client) => write(&mut client, &key, &value).await,
                Err(err) => Outcome::Failed(format!("{err:#}")),
            }
        })
    }
}
