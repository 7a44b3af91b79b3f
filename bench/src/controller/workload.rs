//! The workload: 256-byte writes, one client for latency, 64 for throughput,
//! and the time from kill -9 of the leader to the next successful write.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::etcd::{PutRequest, PutResponse, RangeRequest, RangeResponse, unary};
use super::{Cluster, Conn};
use crate::stats::percentile;

pub const VALUE_BYTES: usize = 256;

/// One write of `value` to key number `key`.
pub async fn put(conn: &mut Conn, key: usize, value: &[u8]) -> Result<()> {
    match conn {
        Conn::Berth(client) => {
            client
                .update_config(berth_proto::v1::UpdateConfigRequest {
                    config: format!("k{key}"),
                    data: value.to_vec(),
                    version: 0,
                })
                .await?;
        }
        Conn::Etcd(grpc) => {
            let _: PutResponse = unary(
                grpc,
                "/etcdserverpb.KV/Put",
                PutRequest {
                    key: format!("k{key}").into_bytes(),
                    value: value.to_vec(),
                },
            )
            .await?;
        }
    }
    Ok(())
}

/// One read served by the member itself (no Raft round): the fixed cost of a
/// request through the client library, the network stack and the server.
pub async fn local_read(conn: &mut Conn, key: usize) -> Result<()> {
    match conn {
        Conn::Berth(client) => {
            client
                .get_config(berth_proto::v1::GetConfigRequest {
                    config: format!("k{key}"),
                    stale: true,
                })
                .await?;
        }
        Conn::Etcd(grpc) => {
            let _: RangeResponse = unary(
                grpc,
                "/etcdserverpb.KV/Range",
                RangeRequest {
                    key: format!("k{key}").into_bytes(),
                    serializable: true,
                },
            )
            .await?;
        }
    }
    Ok(())
}

/// Sequential local reads from one client through the leader: p50.
pub async fn read_latency(cluster: &Cluster, reads: usize) -> Result<Duration> {
    let leader = cluster.leader().await?;
    let mut conn = cluster.connect(leader).await?;
    let mut samples = Vec::with_capacity(reads);
    for i in 0..reads {
        let start = Instant::now();
        local_read(&mut conn, i % 64).await?;
        samples.push(start.elapsed());
    }
    Ok(percentile(&mut samples, 50.0))
}

/// Sequential writes from one client through the leader: (p50, p99).
pub async fn latency(cluster: &Cluster, writes: usize) -> Result<(Duration, Duration)> {
    let leader = cluster.leader().await?;
    let mut conn = cluster.connect(leader).await?;
    let value = vec![b'x'; VALUE_BYTES];
    for i in 0..writes / 10 {
        put(&mut conn, i % 64, &value).await?;
    }
    let mut samples = Vec::with_capacity(writes);
    for i in 0..writes {
        let start = Instant::now();
        put(&mut conn, i % 64, &value).await?;
        samples.push(start.elapsed());
    }
    Ok((
        percentile(&mut samples, 50.0),
        percentile(&mut samples, 99.0),
    ))
}

/// Writes per second from `clients` concurrent clients over `duration`, each
/// client on its own connection, spread over all members.
pub async fn throughput(cluster: &Cluster, clients: usize, duration: Duration) -> Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let members = cluster.client_addresses().len();
    let mut conns = Vec::new();
    for c in 0..clients {
        conns.push(cluster.connect(c % members).await?);
    }
    let deadline = Instant::now() + duration;
    let start = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(c, mut conn)| {
            let done = done.clone();
            tokio::spawn(async move {
                let value = vec![b'x'; VALUE_BYTES];
                let mut i = 0;
                while Instant::now() < deadline {
                    if put(&mut conn, c, &value).await.is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
                i
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// kill -9 of the leader, then writes through the survivors until one succeeds.
pub async fn failover(cluster: &mut Cluster) -> Result<Duration> {
    let leader = cluster.leader().await?;
    let survivors: Vec<usize> = (0..cluster.client_addresses().len())
        .filter(|m| *m != leader)
        .collect();
    let mut conns = Vec::new();
    for m in &survivors {
        conns.push(cluster.connect(*m).await?);
    }
    let value = vec![b'f'; VALUE_BYTES];
    cluster.kill(leader);
    let killed = Instant::now();
    let mut turn = 0;
    loop {
        let n = conns.len();
        let conn = &mut conns[turn % n];
        turn += 1;
        let attempt = tokio::time::timeout(Duration::from_millis(200), put(conn, 0, &value)).await;
        if let Ok(Ok(())) = attempt {
            let elapsed = killed.elapsed();
            cluster.restart(leader)?;
            return Ok(elapsed);
        }
        anyhow::ensure!(
            killed.elapsed() < Duration::from_secs(30),
            "no write within 30 s"
        );
    }
}
