//! The agent sessions a leader has accepted: one per node, with the time of its
//! last sign of life. Plain data; the caller passes the clock's reading.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

/// Services and names one session may ask to follow, each (a bound on what
/// an agent can make the leader keep; a cluster with more services follows
/// the first ones, a name beyond it is answered as it stands then and not
/// looked up again).
pub const MAX_ASKED: usize = 65_536;

#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    pub last_heartbeat: Instant,
    /// The newest shared sequence the agent put into its kernel (AckShared).
    pub acked_seq: u64,
    /// Services whose serving tasks the agent asked for (Follow, and what it
    /// followed in its earlier session).
    /// Shared with the messages being built (each build takes a reference,
    /// not a copy; an ask meanwhile copies it once).
    pub asked: Arc<BTreeSet<String>>,
    /// Names its containers looked up (Follow, heads on demand).
    pub asked_names: Arc<BTreeSet<String>>,
    /// The shared sequence of the last message that brought the agent
    /// something of the shared part to put into its kernel.
    pub owed: u64,
    /// The shared sequence the session has passed: changes up to it that it
    /// did not send concerned nothing this node holds.
    pub passed: u64,
}

#[derive(Debug, Default)]
pub struct Sessions {
    by_node: HashMap<String, Session>,
}

impl Sessions {
    /// A node's new session; replaces the one it had.
    pub fn open(&mut self, node_id: &str, session_id: &str, now: Instant) {
        self.by_node.insert(
            node_id.to_string(),
            Session {
                id: session_id.to_string(),
                last_heartbeat: now,
                acked_seq: 0,
                asked: Arc::default(),
                asked_names: Arc::default(),
                owed: 0,
                passed: 0,
            },
        );
    }

    /// How many nodes have a session.
    pub fn len(&self) -> usize {
        self.by_node.len()
    }

    /// True when `session_id` is the node's current session.
    pub fn is_current(&self, node_id: &str, session_id: &str) -> bool {
        self.by_node
            .get(node_id)
            .is_some_and(|s| s.id == session_id)
    }

    /// The node's session when it is `session_id`.
    fn current(&mut self, node_id: &str, session_id: &str) -> Option<&mut Session> {
        self.by_node.get_mut(node_id).filter(|s| s.id == session_id)
    }

    /// The node's session when it is `session_id`, with a sign of life
    /// recorded.
    fn alive(&mut self, node_id: &str, session_id: &str, now: Instant) -> Option<&mut Session> {
        let session = self.current(node_id, session_id)?;
        session.last_heartbeat = now;
        Some(session)
    }

    /// Records a sign of life; false for a session that is not current.
    pub fn touch(&mut self, node_id: &str, session_id: &str, now: Instant) -> bool {
        self.alive(node_id, session_id, now).is_some()
    }

    /// Records that the agent applied the shared part up to `seq` (a sign of
    /// life too); false for a session that is not current.
    pub fn ack(&mut self, node_id: &str, session_id: &str, seq: u64, now: Instant) -> bool {
        let Some(session) = self.alive(node_id, session_id, now) else {
            return false;
        };
        session.acked_seq = seq;
        true
    }

    /// Records that the agent wants the tasks of `services` and of the
    /// services of `names` (a sign of life too); false for a session that is
    /// not current.
    pub fn ask(
        &mut self,
        node_id: &str,
        session_id: &str,
        services: impl IntoIterator<Item = String>,
        names: impl IntoIterator<Item = String>,
        now: Instant,
    ) -> bool {
        let Some(session) = self.alive(node_id, session_id, now) else {
            return false;
        };
        bounded_extend(Arc::make_mut(&mut session.asked), services);
        bounded_extend(Arc::make_mut(&mut session.asked_names), names);
        true
    }

    /// The services and the names the node's current session asked to follow.
    pub fn asked(&self, node_id: &str) -> (Arc<BTreeSet<String>>, Arc<BTreeSet<String>>) {
        self.by_node
            .get(node_id)
            .map(|s| (Arc::clone(&s.asked), Arc::clone(&s.asked_names)))
            .unwrap_or_default()
    }

    /// Records how far the node's session has gone through the shared part:
    /// `owed` is the sequence of its last message with something to put into
    /// the kernel, `passed` the one it has gone past without news for it.
    pub fn progress(&mut self, node_id: &str, session_id: &str, owed: u64, passed: u64) {
        if let Some(session) = self.current(node_id, session_id) {
            session.owed = owed;
            session.passed = passed;
        }
    }

    /// The shared sequence the node has put into its kernel (0: none): what
    /// its session acknowledged, or, once it acknowledged the last message
    /// that brought it something, as far as its session has gone: the
    /// changes since concerned nothing it holds (dispatcher.md, "Endpoints by
    /// interest").
    pub fn acked(&self, node_id: &str) -> u64 {
        self.by_node.get(node_id).map_or(0, |s| {
            if s.acked_seq > 0 && s.acked_seq >= s.owed {
                s.acked_seq.max(s.passed)
            } else {
                s.acked_seq
            }
        })
    }

    pub fn last_heartbeat(&self, node_id: &str) -> Option<Instant> {
        self.by_node.get(node_id).map(|s| s.last_heartbeat)
    }

    /// Ends a node's session: its next heartbeat is refused and it registers
    /// again.
    pub fn close(&mut self, node_id: &str) {
        self.by_node.remove(node_id);
    }

    /// Sessions belong to a leadership: all end when it does.
    pub fn clear(&mut self) {
        self.by_node.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.by_node.is_empty()
    }
}

/// Adds `items` to `set` up to [`MAX_ASKED`].
fn bounded_extend(set: &mut BTreeSet<String>, items: impl IntoIterator<Item = String>) {
    for item in items {
        if set.len() >= MAX_ASKED {
            break;
        }
        set.insert(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_the_current_session_of_a_node_is_touched() {
        let t0 = Instant::now();
        let mut sessions = Sessions::default();
        sessions.open("n1", "s1", t0);
        sessions.open("n1", "s2", t0);
        assert!(
            !sessions.is_current("n1", "s1"),
            "a new session replaces the old"
        );
        assert!(!sessions.touch("n1", "s1", t0 + Duration::from_secs(1)));
        assert!(sessions.touch("n1", "s2", t0 + Duration::from_secs(2)));
        assert_eq!(
            sessions.last_heartbeat("n1"),
            Some(t0 + Duration::from_secs(2))
        );
        assert!(
            !sessions.ack("n1", "s1", 7, t0),
            "an old session acks nothing"
        );
        assert_eq!(sessions.acked("n1"), 0);
        assert!(sessions.ack("n1", "s2", 7, t0 + Duration::from_secs(3)));
        assert_eq!(sessions.acked("n1"), 7);
        assert_eq!(
            sessions.last_heartbeat("n1"),
            Some(t0 + Duration::from_secs(3)),
            "an ack is a sign of life"
        );
        sessions.open("n1", "s3", t0);
        assert_eq!(
            sessions.acked("n1"),
            0,
            "a new session starts unacknowledged"
        );
        let none = Vec::<String>::new;
        assert!(!sessions.ask("n1", "s2", ["web".to_string()], none(), t0));
        assert!(sessions.ask("n1", "s3", ["web".to_string()], none(), t0));
        assert!(sessions.ask("n1", "s3", ["db".to_string()], ["api".to_string()], t0));
        let (ids, names) = sessions.asked("n1");
        assert_eq!(ids.iter().collect::<Vec<_>>(), ["db", "web"]);
        assert_eq!(names.iter().collect::<Vec<_>>(), ["api"]);
        // Passed without news since its last acknowledged message: as far
        // as its session went; with news not yet acknowledged: its ack.
        assert!(sessions.ack("n1", "s3", 7, t0));
        sessions.progress("n1", "s3", 7, 12);
        assert_eq!(sessions.acked("n1"), 12);
        sessions.progress("n1", "s3", 13, 15);
        assert_eq!(sessions.acked("n1"), 7, "13 is not applied yet");
        sessions.progress("n1", "s2", 0, 99);
        assert_eq!(sessions.acked("n1"), 7, "an old session moves nothing");
        sessions.close("n1");
        assert!(!sessions.touch("n1", "s2", t0));
        assert!(sessions.is_empty());
    }
}
