//! A randomized fault run (kill -9, pause, cut) under concurrent clients; the
//! recorded history must be linearizable.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use berth_testhost::Cut;
use berth_testhost::controllers::{self, Controllers, Outcome};
use berth_testhost::linearizability::{Action, History, Op};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const KEYS: usize = 3;
const CLIENTS: usize = 4;
const FAULT_RUN: Duration = Duration::from_secs(10);

async fn client_loop(
    client: usize,
    addrs: Vec<String>,
    security: berth_pki::Security,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> History {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut history = History::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let addr = &addrs[rng.gen_range(0..addrs.len())];
        let key = format!("reg-{}", rng.gen_range(0..KEYS));
        let Ok(Ok(mut conn)) = tokio::time::timeout(
            Duration::from_secs(1),
            controllers::connect(addr, &security),
        )
        .await
        else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let invoked = Instant::now();
        if rng.gen_bool(0.5) {
            n += 1;
            let value = format!("c{client}-{n}");
            let outcome = tokio::time::timeout(
                Duration::from_secs(3),
                controllers::write(&mut conn, &key, &value),
            )
            .await
            .unwrap_or_else(|_| Outcome::Unknown("client timeout".into()));
            let returned = match outcome {
                Outcome::Ok => Some(Instant::now()),
                Outcome::Failed(_) => continue,
                Outcome::Unknown(_) => None,
            };
            history.push(Op {
                client,
                key,
                action: Action::Write(value),
                invoked,
                returned,
            });
        } else {
            let read =
                tokio::time::timeout(Duration::from_secs(3), controllers::read(&mut conn, &key))
                    .await;
            if let Ok(Ok(value)) = read {
                history.push(Op {
                    client,
                    key,
                    action: Action::Read(value),
                    invoked,
                    returned: Some(Instant::now()),
                });
            }
        }
    }
    history
}

#[test]
fn a_randomized_fault_run_stays_linearizable() -> Result<()> {
    let seed: u64 = std::env::var("BERTH_NEMESIS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("nemesis seed {seed} (set BERTH_NEMESIS_SEED to replay the fault schedule)");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut c = Controllers::start("linearizable", 3)?;
    let leader = c.wait_leader(Duration::from_secs(10))?;
    let mut initial = BTreeMap::new();
    for k in 0..KEYS {
        let key = format!("reg-{k}");
        c.create(leader, &key, "init")?;
        initial.insert(key, Some("init".to_string()));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let addrs: Vec<String> = c.members().iter().map(|h| c.address(*h)).collect();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            c.runtime().spawn(client_loop(
                i,
                addrs.clone(),
                c.security(),
                seed.wrapping_add(i as u64 + 1),
                stop.clone(),
            ))
        })
        .collect();

    let started = Instant::now();
    let mut faults = Vec::new();
    while started.elapsed() < FAULT_RUN {
        std::thread::sleep(Duration::from_millis(rng.gen_range(200..600)));
        let members = c.members().to_vec();
        let target = members[rng.gen_range(0..members.len())];
        let hold = Duration::from_millis(rng.gen_range(300..1500));
        match rng.gen_range(0..4) {
            0 => {
                faults.push(format!("kill -9 h{}", target + 1));
                c.kill(target)?;
                std::thread::sleep(hold);
                c.restart(target)?;
            }
            1 => {
                faults.push(format!("pause h{} {hold:?}", target + 1));
                c.pause(target)?;
                std::thread::sleep(hold);
                c.resume(target)?;
            }
            2 => {
                faults.push(format!("cut h{} {hold:?}", target + 1));
                c.net.host(target).cut(Cut::Both)?;
                std::thread::sleep(hold);
                c.net.host(target).heal()?;
            }
            _ => {
                faults.push(format!("one-way cut h{} {hold:?}", target + 1));
                c.net.host(target).cut(Cut::Inbound)?;
                std::thread::sleep(hold);
                c.net.host(target).heal()?;
            }
        }
    }
    // Let the clients see a healthy cluster for a while too.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let mut history = History::default();
    for client in clients {
        history.extend(c.runtime().block_on(client)?);
    }
    eprintln!("faults: {faults:?}");
    let completed = history.ops.iter().filter(|o| o.returned.is_some()).count();
    eprintln!(
        "{} operations, {completed} with a known outcome",
        history.ops.len()
    );
    assert!(completed > 50, "too few operations completed: {completed}");
    if let Err(violation) = history.check(&initial) {
        panic!("seed {seed}: {violation}");
    }
    Ok(())
}
