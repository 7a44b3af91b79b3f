//! The network side of a task, as the supervisor sees it: a namespace made and
//! joined to the task's overlay networks before the runtime starts the
//! container (which joins it by path), released once the container is gone.
//! The agent's network plane implements it; without one, a container gets a
//! fresh loopback-only namespace.

use std::path::PathBuf;

use berth_proto::v1::Task;
use futures_util::future::BoxFuture;

/// A prepared task network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskNet {
    /// The network namespace the container joins.
    pub netns: PathBuf,
    /// Files bind-mounted read-only into the container: (absolute path in the
    /// container, content), e.g. /etc/resolv.conf naming the network's DNS and
    /// /etc/hosts with the container's own name and address.
    pub files: Vec<(String, String)>,
}

pub trait TaskNetwork: Send + Sync + 'static {
    /// Makes the task's namespace and joins it to every network in
    /// `task.addresses`; `None` when the task has no overlay addresses.
    fn prepare<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, Result<Option<TaskNet>, String>>;
    /// Removes what `prepare` made for the task; safe to call for a task that
    /// never had a network, and again.
    fn release<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, ()>;
}
