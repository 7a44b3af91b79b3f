//! Random histories of scaling, failures, node trouble, updates and removals:
//! once things settle, every replicated service holds exactly its slots, no
//! task is meant to run on a node that is down or drained, removed services
//! leave nothing meant to run, and history stays bounded.

use std::collections::{BTreeMap, HashSet};

use berth_proto::v1::service_spec::Mode;
use berth_proto::v1::{NodeAvailability, NodeStatus, ReplicatedMode, RestartCondition, TaskState};
use proptest::prelude::*;

use super::task::{is_terminal, observed};
use super::tests::{Sim, node, replicated};

#[derive(Clone, Debug)]
enum Event {
    Scale(usize, u64),
    Fail(usize, bool),
    Node(usize, NodeStatus, NodeAvailability),
    Update(usize),
    Remove(usize),
    Time(i64),
}

fn arb_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (0usize..2, 0u64..6).prop_map(|(s, r)| Event::Scale(s, r)),
        (0usize..8, any::<bool>()).prop_map(|(k, clean)| Event::Fail(k, clean)),
        (
            0usize..3,
            prop::sample::select(vec![NodeStatus::Ready, NodeStatus::Down]),
            prop::sample::select(vec![
                NodeAvailability::Active,
                NodeAvailability::Pause,
                NodeAvailability::Drain,
            ]),
        )
            .prop_map(|(n, s, a)| Event::Node(n, s, a)),
        (0usize..2).prop_map(Event::Update),
        (0usize..2).prop_map(Event::Remove),
        (1i64..20_000).prop_map(Event::Time),
    ]
}

fn apply(sim: &mut Sim, event: &Event) {
    match *event {
        Event::Scale(s, replicas) => {
            if let Some(svc) = sim
                .view
                .services
                .iter_mut()
                .find(|x| x.id == format!("s{s}"))
            {
                svc.spec_version += 1;
                if let Some(spec) = svc.spec.as_mut() {
                    spec.mode = Some(Mode::Replicated(ReplicatedMode { replicas }));
                }
            }
        }
        Event::Fail(k, clean) => {
            let live: Vec<String> = sim
                .view
                .tasks
                .iter()
                .filter(|t| t.desired_state == TaskState::Running as i32 && !t.node_id.is_empty())
                .map(|t| t.id.clone())
                .collect();
            if !live.is_empty() {
                let id = live[k % live.len()].clone();
                if clean {
                    sim.end(&id, TaskState::Complete, Some(0));
                } else {
                    sim.end(&id, TaskState::Failed, Some(1));
                }
            }
        }
        Event::Node(n, status, availability) => {
            sim.view.nodes[n].status = status as i32;
            sim.view.nodes[n].availability = availability as i32;
        }
        Event::Update(s) => {
            if let Some(svc) = sim
                .view
                .services
                .iter_mut()
                .find(|x| x.id == format!("s{s}"))
            {
                svc.spec_version += 1;
                if let Some(spec) = svc.spec.as_mut() {
                    spec.image = format!("busybox:{}", svc.spec_version);
                }
            }
        }
        Event::Remove(s) => sim.view.services.retain(|x| x.id != format!("s{s}")),
        Event::Time(ms) => sim.now += ms,
    }
}

fn check(sim: &Sim) -> Result<(), TestCaseError> {
    let nodes: BTreeMap<&str, &berth_proto::v1::Node> =
        sim.view.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let services: HashSet<&str> = sim.view.services.iter().map(|s| s.id.as_str()).collect();
    for svc in &sim.view.services {
        let Some(Mode::Replicated(r)) = svc.spec.as_ref().and_then(|s| s.mode.as_ref()) else {
            continue;
        };
        let mut slots: Vec<u64> = sim
            .view
            .tasks
            .iter()
            .filter(|t| t.service_id == svc.id && t.desired_state <= TaskState::Complete as i32)
            .map(|t| t.slot)
            .collect();
        slots.sort();
        let want: Vec<u64> = (1..=r.replicas).collect();
        prop_assert_eq!(&slots, &want, "slots of {}", svc.id);
    }
    let mut history: BTreeMap<(&str, u64), usize> = BTreeMap::new();
    for t in &sim.view.tasks {
        if !services.contains(t.service_id.as_str()) {
            prop_assert!(
                t.desired_state == TaskState::Shutdown as i32,
                "task {} of a removed service still meant to run",
                t.id
            );
        }
        if t.desired_state == TaskState::Running as i32 {
            if t.node_id.is_empty() {
                let status = t.status.as_ref().expect("status");
                prop_assert_eq!(status.state, TaskState::Pending as i32);
                prop_assert!(!status.message.is_empty());
                prop_assert!(
                    !sim.view
                        .nodes
                        .iter()
                        .any(|n| n.status == NodeStatus::Ready as i32
                            && n.availability == NodeAvailability::Active as i32),
                    "{} pending though a node is ready",
                    t.id
                );
            } else {
                let n = nodes.get(t.node_id.as_str()).expect("node exists");
                prop_assert_eq!(
                    n.status,
                    NodeStatus::Ready as i32,
                    "{} on a down node",
                    t.id
                );
                prop_assert!(
                    n.availability != NodeAvailability::Drain as i32,
                    "{} on a drained node",
                    t.id
                );
            }
        }
        if t.desired_state == TaskState::Shutdown as i32 && is_terminal(observed(t)) {
            *history.entry((t.service_id.as_str(), t.slot)).or_default() += 1;
        }
    }
    for (key, n) in history {
        prop_assert!(n <= 5, "{key:?} keeps {n} finished tasks");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_history_settles_into_the_slot_invariants(
        events in prop::collection::vec(arb_event(), 0..12),
        conditions in prop::collection::vec(
            prop::sample::select(vec![
                RestartCondition::Any,
                RestartCondition::OnFailure,
                RestartCondition::None,
            ]),
            2,
        ),
    ) {
        let mut services = vec![replicated("s0", 2), replicated("s1", 3)];
        for (svc, condition) in services.iter_mut().zip(&conditions) {
            if let Some(p) = svc.spec.as_mut().and_then(|s| s.restart_policy.as_mut()) {
                p.condition = *condition as i32;
            }
        }
        let mut sim = Sim::new(vec![node("a"), node("b"), node("c")], services);
        sim.settle();
        check(&sim)?;
        for event in &events {
            apply(&mut sim, event);
            sim.settle();
            check(&sim)?;
        }
    }
}
