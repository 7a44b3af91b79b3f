//! What one message on the session stream means: the assignment set to hand
//! to the runner, nothing, or the end of this session.

use berth_proto::v1::session_message::Message;
use berth_proto::v1::{Assignments, SessionMessage};

use super::SessionError;

/// The node's next complete assignment set from one message of the stream of
/// controller `address` (`None`: the message changes nothing), or why the
/// session ends: another controller leads (a redirect), or none is known.
/// Every kind of message the stream carries is turned into a set here, and
/// only here.
pub(super) fn next_set(
    message: SessionMessage,
    address: &str,
) -> Result<Option<Assignments>, SessionError> {
    match message.message {
        Some(Message::Assignments(assignments)) => Ok(Some(assignments)),
        Some(Message::NotLeader(not_leader)) if not_leader.leader_address.is_empty() => {
            Err(SessionError::Unreachable {
                address: address.to_string(),
                why: "the controller lost leadership".into(),
            })
        }
        Some(Message::NotLeader(not_leader)) => Err(SessionError::Redirect {
            hint: not_leader.leader_address,
        }),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use berth_proto::v1::NotLeader;

    use super::*;

    fn message(message: Message) -> SessionMessage {
        SessionMessage {
            message: Some(message),
        }
    }

    #[test]
    fn assignments_are_the_set_and_not_leader_ends_the_session() {
        let set = Assignments {
            node_id: "n1".into(),
            revision: 7,
            ..Default::default()
        };
        let got = next_set(message(Message::Assignments(set.clone())), "c1:1");
        assert_eq!(got.expect("a set"), Some(set));
        assert_eq!(
            next_set(SessionMessage::default(), "c1:1").expect("nothing"),
            None
        );
        let redirect = next_set(
            message(Message::NotLeader(NotLeader {
                leader_address: "c2:1".into(),
            })),
            "c1:1",
        );
        assert!(
            matches!(redirect, Err(SessionError::Redirect { ref hint }) if hint == "c2:1"),
            "{redirect:?}"
        );
        let lost = next_set(message(Message::NotLeader(NotLeader::default())), "c1:1");
        assert!(
            matches!(lost, Err(SessionError::Unreachable { ref address, .. }) if address == "c1:1"),
            "{lost:?}"
        );
    }
}
