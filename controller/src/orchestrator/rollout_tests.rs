//! Rollout scenarios (see `rollout`): the orchestrator, the scheduler and
//! simulated agents against the in-memory store of `tests`.
