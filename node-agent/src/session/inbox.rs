//! What one message on the session stream means: the assignment set to hand
//! to the runner, nothing, or the end of this session. The controller sends the
//! complete set first and then only what changed; `held` is the set as the
//! messages so far describe it.

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
    held: &mut Option<Assignments>,
    address: &str,
) -> Result<Option<Assignments>, SessionError> {
    match message.message {
        Some(Message::Assignments(mut assignments)) => {
            berth_proto::assignments::unpack(&mut assignments)
                .map_err(|err| undecodable(address, err))?;
            *held = Some(assignments.clone());
            Ok(Some(assignments))
        }
        Some(Message::Delta(delta)) => {
            let Some(set) = held.as_mut() else {
                return Err(SessionError::Unreachable {
                    address: address.to_string(),
                    why: "the controller sent changes before a complete assignment set".into(),
                });
            };
            berth_proto::assignments::apply(set, delta).map_err(|err| undecodable(address, err))?;
            Ok(Some(set.clone()))
        }
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

/// A shared part that does not decode ends the session: the next one starts
/// from a complete set.
fn undecodable(address: &str, err: prost::DecodeError) -> SessionError {
    SessionError::Unreachable {
        address: address.to_string(),
        why: format!("the controller sent an undecodable shared part: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use berth_proto::v1::{AssignmentsDelta, NotLeader, Task};

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
        let mut held = None;
        let got = next_set(
            message(Message::Assignments(set.clone())),
            &mut held,
            "c1:1",
        );
        assert_eq!(got.expect("a set"), Some(set));
        assert_eq!(
            next_set(SessionMessage::default(), &mut held, "c1:1").expect("nothing"),
            None
        );
        let redirect = next_set(
            message(Message::NotLeader(NotLeader {
                leader_address: "c2:1".into(),
            })),
            &mut held,
            "c1:1",
        );
        assert!(
            matches!(redirect, Err(SessionError::Redirect { ref hint }) if hint == "c2:1"),
            "{redirect:?}"
        );
        let lost = next_set(
            message(Message::NotLeader(NotLeader::default())),
            &mut held,
            "c1:1",
        );
        assert!(
            matches!(lost, Err(SessionError::Unreachable { ref address, .. }) if address == "c1:1"),
            "{lost:?}"
        );
    }

    #[test]
    fn a_delta_changes_the_held_set_and_needs_one_first() {
        let delta = |id: &str| {
            message(Message::Delta(AssignmentsDelta {
                revision: 9,
                tasks: vec![Task {
                    id: id.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }))
        };
        let mut held = None;
        let early = next_set(delta("t1"), &mut held, "c1:1");
        assert!(
            matches!(early, Err(SessionError::Unreachable { .. })),
            "{early:?}"
        );
        let set = Assignments {
            node_id: "n1".into(),
            revision: 7,
            ..Default::default()
        };
        next_set(message(Message::Assignments(set)), &mut held, "c1:1").expect("a set");
        let got = next_set(delta("t1"), &mut held, "c1:1")
            .expect("a set")
            .expect("changed");
        assert_eq!(got.tasks.len(), 1);
        assert_eq!(got.revision, 9);
        assert_eq!(held.as_ref().map(|h| h.tasks.len()), Some(1));
    }

    #[test]
    fn the_shared_part_is_unpacked_and_an_undecodable_one_ends_the_session() {
        use prost::Message as _;
        let shared = Assignments {
            nodes: vec![berth_proto::v1::Node {
                id: "n1".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let set = Assignments {
            node_id: "n1".into(),
            shared: shared.encode_to_vec().into(),
            ..Default::default()
        };
        let mut held = None;
        let got = next_set(message(Message::Assignments(set)), &mut held, "c1:1")
            .expect("a set")
            .expect("changed");
        assert_eq!(got.nodes, shared.nodes);
        assert!(got.shared.is_empty() && held.is_some_and(|h| h.shared.is_empty()));

        let mut held = Some(got);
        let broken = message(Message::Delta(AssignmentsDelta {
            shared_changes: vec![prost::bytes::Bytes::from_static(&[0xff])],
            ..Default::default()
        }));
        let err = next_set(broken, &mut held, "c1:1").expect_err("undecodable");
        assert!(err.to_string().contains("undecodable shared part"), "{err}");
    }
}
