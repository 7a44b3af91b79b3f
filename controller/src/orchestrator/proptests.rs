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

mod rollouts {
    //! Random rollouts (order, parallelism, canaries, failure action, health
    //! checks) with random failures, promotions and time: every step keeps the
    //! update within its parallelism, every state settles (no pass keeps
    //! rewriting the status), and given time every rollout ends: completed,
    //! paused or rolled back, never left updating.

    use berth_proto::v1::update_status::State;
    use berth_proto::v1::{TaskState, UpdateConfig, UpdateFailureAction, UpdateOrder};
    use proptest::prelude::*;

    use crate::orchestrator::rollout_tests::{
        crash, pass_checks, promote, round, service, state, status, turn_unhealthy, update_image,
        with_check,
    };
    use crate::orchestrator::tests::{Sim, node};

    #[derive(Clone, Debug)]
    enum Step {
        Round,
        PassChecks,
        Crash(usize),
        Unhealthy(usize),
        Promote,
        Update,
        Time(i64),
    }

    fn arb_step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => Just(Step::Round),
            3 => Just(Step::PassChecks),
            1 => (0usize..16).prop_map(Step::Crash),
            1 => (0usize..16).prop_map(Step::Unhealthy),
            1 => Just(Step::Promote),
            1 => Just(Step::Update),
            2 => (1i64..120_000).prop_map(Step::Time),
        ]
    }

    fn arb_config() -> impl Strategy<Value = UpdateConfig> {
        (
            0u64..4,
            prop::sample::select(vec![UpdateOrder::StopFirst, UpdateOrder::StartFirst]),
            prop::sample::select(vec![
                UpdateFailureAction::Pause,
                UpdateFailureAction::Continue,
                UpdateFailureAction::Rollback,
            ]),
            0u64..3,
            any::<bool>(),
            prop::sample::select(vec![0.0f32, 0.5]),
        )
            .prop_map(
                |(parallelism, order, action, canary, auto_promote, ratio)| UpdateConfig {
                    parallelism,
                    order: order as i32,
                    failure_action: action as i32,
                    canary,
                    auto_promote,
                    min_healthy_ms: 1_000,
                    max_failure_ratio: ratio,
                    progress_deadline_ms: 60_000,
                    ..Default::default()
                },
            )
    }

    /// Slots of "web" without a ready task meant to run.
    fn unavailable(sim: &Sim, replicas: u64) -> usize {
        let up: std::collections::BTreeSet<u64> = sim
            .view
            .tasks
            .iter()
            .filter(|t| t.desired_state == TaskState::Running as i32 && t.is_ready())
            .map(|t| t.slot)
            .collect();
        (1..=replicas).filter(|s| !up.contains(s)).count()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

        #[test]
        fn rollouts_stay_within_parallelism_settle_and_end(
            replicas in 1u64..6,
            config in arb_config(),
            checked in any::<bool>(),
            steps in prop::collection::vec(arb_step(), 0..40),
        ) {
            let mut web = service("web", replicas, config);
            if checked {
                web = with_check(web);
            }
            let mut sim = Sim::new(vec![node("a"), node("b")], vec![web]);
            sim.settle();
            pass_checks(&mut sim);
            sim.settle();
            let mut image = 2;
            update_image(&mut sim, "web", &format!("busybox:{image}"));
            let mut failures = false;
            for step in &steps {
                match *step {
                    Step::Round => round(&mut sim),
                    Step::PassChecks => pass_checks(&mut sim),
                    Step::Crash(k) | Step::Unhealthy(k) => {
                        let live: Vec<String> = sim
                            .view
                            .tasks
                            .iter()
                            .filter(|t| t.desired_state == TaskState::Running as i32
                                && observed_running(t))
                            .map(|t| t.id.clone())
                            .collect();
                        if !live.is_empty() {
                            let id = live[k % live.len()].clone();
                            failures = true;
                            if matches!(step, Step::Crash(_)) {
                                crash(&mut sim, &id);
                            } else {
                                turn_unhealthy(&mut sim, &id);
                            }
                        }
                    }
                    Step::Promote => {
                        if status(&sim, "web").awaiting_promotion {
                            promote(&mut sim, "web");
                        }
                    }
                    Step::Update => {
                        image += 1;
                        update_image(&mut sim, "web", &format!("busybox:{image}"));
                    }
                    Step::Time(ms) => sim.now += ms,
                }
                // Stop-first, without failures: the update never takes down
                // more slots than its parallelism.
                if !failures
                    && config.parallelism > 0
                    && config.order == UpdateOrder::StopFirst as i32
                    && config.canary == 0
                {
                    let down = unavailable(&sim, replicas);
                    prop_assert!(
                        down as u64 <= config.parallelism,
                        "{down} slots down, parallelism {}: {:#?}",
                        config.parallelism,
                        sim.view.tasks
                    );
                }
            }
            // Given time (and healthy tasks, and promotions when asked), every
            // rollout ends.
            for _ in 0..30 {
                sim.settle();
                pass_checks(&mut sim);
                sim.settle();
                if status(&sim, "web").awaiting_promotion && !config.auto_promote {
                    promote(&mut sim, "web");
                }
                sim.now += 30_000;
            }
            sim.settle();
            let end = state(&sim, "web");
            prop_assert!(
                matches!(
                    end,
                    State::Completed
                        | State::Paused
                        | State::RollbackCompleted
                        | State::RollbackPaused
                ),
                "still {end:?}: {:#?}",
                status(&sim, "web")
            );
            // A second pass over the settled state writes nothing.
            prop_assert!(sim.orchestrate().is_empty());
        }
    }

    fn observed_running(t: &berth_proto::v1::Task) -> bool {
        t.status.as_ref().map(|s| s.state) == Some(TaskState::Running as i32)
    }
}
