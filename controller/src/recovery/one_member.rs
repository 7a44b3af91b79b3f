//! The state of a cluster rewritten for one member: what `--restore` and
//! `--force-new-cluster` both do to the state they start from. Pure functions
//! of the state, so they are tested without a data dir.

use std::time::Duration;

use berth_pki::{JoinToken, Role};
use berth_proto::store::SnapshotData;
use berth_proto::store::object::Kind;
use protobuf::Message as _;
use raft::eraftpb::ConfState;

use super::RecoveryError;
use crate::ca::record;

/// The member that is left (or made) and how its cluster changes.
pub struct OneMember {
    pub member_id: u64,
    /// Where the other members will reach it.
    pub address: String,
    /// A new controller join secret: the old controller token stops working.
    pub rotate_controller_token: bool,
    pub now_ms: i64,
}

/// What the rewrite did.
#[derive(Debug, PartialEq)]
pub struct Rewritten {
    /// Members of the old address book, now on the CA's removed list.
    pub removed: Vec<u64>,
    /// The controller join token after the rewrite (None in plain text: no CA).
    pub controller_token: Option<JoinToken>,
}

/// Makes `state` the state of a one-member cluster of `me`: the address book
/// holds only `me`; every other member goes on the CA record's removed list,
/// so their certificates are refused (they can never come back under their old
/// ids) until they would have expired anyway; with
/// `rotate_controller_token`, the controller join secret is new. One revision
/// is added, and the CA record carries it as its version.
pub fn rewrite(state: &mut SnapshotData, me: &OneMember) -> Result<Rewritten, RecoveryError> {
    let removed: Vec<u64> = state
        .members
        .keys()
        .copied()
        .filter(|id| *id != me.member_id)
        .collect();
    state.members = [(me.member_id, me.address.clone())].into();
    state.revision += 1;
    let revision = state.revision;
    let mut controller_token = None;
    for object in &mut state.objects {
        let Some(Kind::Pki(pki)) = &mut object.kind else {
            continue;
        };
        let lifetime = record::lifetime(pki);
        // Certificates are backdated an hour; a removed member's last one
        // expires at most a lifetime from now.
        let until = me.now_ms
            + i64::try_from((lifetime + Duration::from_secs(3600)).as_millis()).unwrap_or(i64::MAX);
        for id in &removed {
            pki.removed.insert(id.to_string(), until);
        }
        // This member's id may have been removed before (never by us).
        pki.removed.remove(&me.member_id.to_string());
        if me.rotate_controller_token {
            pki.controller_token_secret = berth_pki::token::new_secret();
        }
        pki.version = revision;
        controller_token = record::token(pki, Role::Controller);
    }
    Ok(Rewritten {
        removed,
        controller_token,
    })
}

/// The raft conf state of a one-member cluster: `member_id` the only voter.
pub fn conf_state(member_id: u64) -> ConfState {
    ConfState {
        voters: vec![member_id],
        ..Default::default()
    }
}

/// [`conf_state`] as the state machine stores it.
pub fn conf_state_bytes(member_id: u64) -> Result<Vec<u8>, RecoveryError> {
    conf_state(member_id)
        .write_to_bytes()
        .map_err(|e| RecoveryError::Invalid(format!("encode the conf state: {e}")))
}

#[cfg(test)]
mod tests {
    use berth_proto::store::{ClusterPki, Object};
    use berth_proto::v1::Service;

    use super::*;

    fn state() -> SnapshotData {
        SnapshotData {
            revision: 10,
            members: [
                (1, "10.0.0.1:7400".to_string()),
                (2, "10.0.0.2:7400".to_string()),
                (3, "10.0.0.3:7400".to_string()),
            ]
            .into(),
            objects: vec![
                Object {
                    kind: Some(Kind::Pki(ClusterPki {
                        id: record::PKI_ID.into(),
                        version: 4,
                        ca_pem: "pem".into(),
                        controller_token_secret: "old".into(),
                        agent_token_secret: "agents".into(),
                        cert_lifetime_ms: 60_000,
                        ..Default::default()
                    })),
                },
                Object {
                    kind: Some(Kind::Service(Box::new(Service {
                        id: "s1".into(),
                        version: 9,
                        ..Default::default()
                    }))),
                },
            ],
            cluster_id: "c".into(),
        }
    }

    fn pki(state: &SnapshotData) -> &ClusterPki {
        state
            .objects
            .iter()
            .find_map(|o| match &o.kind {
                Some(Kind::Pki(p)) => Some(p),
                _ => None,
            })
            .expect("a CA record")
    }

    #[test]
    fn the_survivor_stays_alone_and_the_others_are_removed() {
        let mut s = state();
        let me = OneMember {
            member_id: 3,
            address: "10.0.0.3:7400".into(),
            rotate_controller_token: true,
            now_ms: 1_000,
        };
        let done = rewrite(&mut s, &me).unwrap();
        assert_eq!(done.removed, vec![1, 2]);
        assert_eq!(s.members, [(3, "10.0.0.3:7400".to_string())].into());
        assert_eq!(s.revision, 11);
        let p = pki(&s);
        assert_eq!(p.version, 11);
        assert_eq!(
            p.removed.keys().cloned().collect::<Vec<_>>(),
            vec!["1".to_string(), "2".to_string()]
        );
        // Refused until the last certificate they could hold expires.
        assert!(record::is_removed(&p.removed, "1", 1_000 + 60_000));
        assert!(!record::is_removed(&p.removed, "3", 1_000));
        assert_ne!(p.controller_token_secret, "old");
        assert_eq!(p.agent_token_secret, "agents", "agents keep their token");
        let token = done.controller_token.unwrap();
        assert_eq!(token.secret, p.controller_token_secret);
        // Other objects are untouched.
        assert!(s.objects.iter().any(|o| matches!(
            &o.kind,
            Some(Kind::Service(svc)) if svc.id == "s1" && svc.version == 9
        )));
    }

    #[test]
    fn a_restored_member_is_new_and_every_old_member_is_removed() {
        let mut s = state();
        let me = OneMember {
            member_id: 77,
            address: "10.0.0.9:7400".into(),
            rotate_controller_token: false,
            now_ms: 0,
        };
        let done = rewrite(&mut s, &me).unwrap();
        assert_eq!(done.removed, vec![1, 2, 3]);
        assert_eq!(s.members.keys().copied().collect::<Vec<_>>(), vec![77]);
        assert_eq!(pki(&s).controller_token_secret, "old");
    }

    #[test]
    fn the_conf_state_has_one_voter() {
        let bytes = conf_state_bytes(5).unwrap();
        let conf = ConfState::parse_from_bytes(&bytes).unwrap();
        assert_eq!(conf.voters, vec![5]);
        assert!(conf.learners.is_empty() && conf.voters_outgoing.is_empty());
    }
}
