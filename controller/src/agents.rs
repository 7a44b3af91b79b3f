//! Calling the agents of the cluster's nodes from a controller (`berth
//! images`, `pull`, `rmi`, `image prune`, `info`, `version`): which nodes a
//! call is for, a channel to a node's agent API with this controller's
//! certificate, and one call per node in parallel, each node's failure its
//! own.

use std::future::Future;
use std::time::Duration;

use berth_pki::{Role, Security};
use berth_proto::store::object::Kind;
use berth_proto::v1::{Node, NodeRef, NodeSelector, NodeStatus};
use tonic::transport::{Channel, Endpoint};

use crate::store::view::{LookupError, resolve};
use crate::store::{StateMachine, Table};

/// How long dialing an agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("node {name} is {status}: its agent cannot be asked")]
    NotReady { name: String, status: String },
    #[error("node {name} has no agent API address yet (its agent has not registered)")]
    NoAddress { name: String },
    #[error("the cluster has no ready node")]
    NoNodes,
    #[error("the cluster has {count} ready nodes: name one with --node NODE, or pass --all-nodes")]
    WhichNode { count: usize },
}

/// A node whose agent a call goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub node: NodeRef,
    pub api_address: String,
}

/// The nodes a call goes to, and the ones it leaves out because they are
/// not ready (a listing reports those).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Selected {
    pub targets: Vec<Target>,
    pub skipped: Vec<(NodeRef, String)>,
}

/// What a selector without a node and without `all_nodes` means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByDefault {
    /// Every ready node (listings: `berth images`, `info`, `version`).
    AllNodes,
    /// The only ready node; more than one must be chosen (`pull`, `rmi`,
    /// `image prune`: a change on every node is asked for, not assumed).
    OnlyNode,
}

pub fn node_ref(node: &Node) -> NodeRef {
    NodeRef {
        node_id: node.id.clone(),
        node_name: node.name.clone(),
    }
}

/// The nodes `selector` names in the store (a node by id, unique prefix or
/// name; or every ready node), sorted by name.
pub fn select(
    sm: &StateMachine,
    selector: Option<&NodeSelector>,
    by_default: ByDefault,
) -> Result<Selected, SelectError> {
    let named = selector.map(|s| s.node.as_str()).filter(|n| !n.is_empty());
    let nodes = match named {
        Some(key) => match resolve(sm, Table::Node, key)?.kind {
            Some(Kind::Node(node)) => vec![node],
            _ => Vec::new(),
        },
        None => crate::store::view::read_nodes(sm).map_err(LookupError::from)?,
    };
    let all = selector.is_some_and(|s| s.all_nodes);
    choose(nodes, named.is_some(), all, by_default)
}

/// `select` once the nodes are read (pure).
pub fn choose(
    mut nodes: Vec<Node>,
    named: bool,
    all: bool,
    by_default: ByDefault,
) -> Result<Selected, SelectError> {
    nodes.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    let mut selected = Selected::default();
    for node in nodes {
        let status = NodeStatus::try_from(node.status).unwrap_or(NodeStatus::Unknown);
        let why = if status != NodeStatus::Ready {
            Some(SelectError::NotReady {
                name: node.name.clone(),
                status: status.short_name().to_string(),
            })
        } else if node.api_address.is_empty() {
            Some(SelectError::NoAddress {
                name: node.name.clone(),
            })
        } else {
            None
        };
        match why {
            Some(err) if named => return Err(err),
            Some(err) => selected.skipped.push((node_ref(&node), err.to_string())),
            None => selected.targets.push(Target {
                node: node_ref(&node),
                api_address: node.api_address,
            }),
        }
    }
    if named || by_default == ByDefault::AllNodes {
        return Ok(selected);
    }
    if all {
        return match selected.targets.len() {
            0 => Err(SelectError::NoNodes),
            _ => Ok(selected),
        };
    }
    match selected.targets.len() {
        0 => Err(SelectError::NoNodes),
        1 => Ok(selected),
        count => Err(SelectError::WhichNode { count }),
    }
}

/// A channel to `target`'s agent API, as this controller (mutual TLS).
pub async fn channel(security: &Security, target: &Target) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(format!("http://{}", target.api_address))
        .map_err(|e| format!("bad agent address {}: {e}", target.api_address))?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(10));
    berth_pki::tls::connect(endpoint, security, Role::Agent)
        .await
        .map_err(|e| {
            format!(
                "the agent of node {} ({}) does not answer: {}",
                target.node.node_name,
                target.api_address,
                berth_pki::explain::error_chain(&e)
            )
        })
}

/// Runs `call` on every target's agent at once; the answers come back in
/// the targets' order, each with its node, a failure as its message.
pub async fn each<T, F, Fut>(
    security: &Security,
    targets: &[Target],
    call: F,
) -> Vec<(NodeRef, Result<T, String>)>
where
    F: Fn(Channel) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let calls = targets.iter().map(|target| {
        let call = &call;
        async move {
            let answer = match channel(security, target).await {
                Ok(channel) => call(channel).await.map_err(|s| s.message().to_string()),
                Err(e) => Err(e),
            };
            (target.node.clone(), answer)
        }
    });
    futures_util::future::join_all(calls).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, status: NodeStatus, address: &str) -> Node {
        Node {
            id: format!("id-{name}"),
            name: name.into(),
            status: status as i32,
            api_address: address.into(),
            ..Default::default()
        }
    }

    fn names(s: &Selected) -> Vec<&str> {
        s.targets
            .iter()
            .map(|t| t.node.node_name.as_str())
            .collect()
    }

    #[test]
    fn all_nodes_means_the_ready_ones_and_says_which_were_left_out() {
        let nodes = vec![
            node("n3", NodeStatus::Ready, "10.0.0.3:7401"),
            node("n1", NodeStatus::Ready, "10.0.0.1:7401"),
            node("n2", NodeStatus::Down, "10.0.0.2:7401"),
            node("n4", NodeStatus::Ready, ""),
        ];
        let s = choose(nodes.clone(), false, true, ByDefault::OnlyNode).unwrap();
        assert_eq!(names(&s), ["n1", "n3"]);
        assert_eq!(
            s.skipped
                .iter()
                .map(|(n, why)| format!("{}: {why}", n.node_name))
                .collect::<Vec<_>>(),
            [
                "n2: node n2 is down: its agent cannot be asked",
                "n4: node n4 has no agent API address yet (its agent has not registered)"
            ]
        );
        let listing = choose(nodes, false, false, ByDefault::AllNodes).unwrap();
        assert_eq!(names(&listing), ["n1", "n3"]);
    }

    #[test]
    fn a_change_without_a_node_needs_a_one_node_cluster() {
        let one = vec![
            node("n1", NodeStatus::Ready, "10.0.0.1:7401"),
            node("n2", NodeStatus::Down, "10.0.0.2:7401"),
        ];
        let s = choose(one, false, false, ByDefault::OnlyNode).unwrap();
        assert_eq!(names(&s), ["n1"]);
        let two = vec![
            node("n1", NodeStatus::Ready, "10.0.0.1:7401"),
            node("n2", NodeStatus::Ready, "10.0.0.2:7401"),
        ];
        let err = choose(two, false, false, ByDefault::OnlyNode).unwrap_err();
        assert!(
            err.to_string().contains("--node NODE, or pass --all-nodes"),
            "{err}"
        );
        let err = choose(Vec::new(), false, false, ByDefault::OnlyNode).unwrap_err();
        assert!(matches!(err, SelectError::NoNodes));
        let down = vec![node("n2", NodeStatus::Down, "10.0.0.2:7401")];
        let err = choose(down.clone(), false, true, ByDefault::OnlyNode).unwrap_err();
        assert!(
            matches!(err, SelectError::NoNodes),
            "a change asked of no node"
        );
        let listing = choose(down, false, true, ByDefault::AllNodes).unwrap();
        assert!(listing.targets.is_empty() && listing.skipped.len() == 1);
    }

    #[test]
    fn a_named_node_that_is_not_ready_is_an_error() {
        let err = choose(
            vec![node("n2", NodeStatus::Down, "10.0.0.2:7401")],
            true,
            false,
            ByDefault::OnlyNode,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "node n2 is down: its agent cannot be asked"
        );
    }
}
