//! Restore and force-new-cluster on real data dirs (sled, raft-engine).

use berth_pki::{Authority, Bundle, Role};
use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Object, Txn};
use berth_proto::v1::Config;
use prost::Message as _;
use raft::Storage as _;
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, Entry, EntryType, HardState};

use super::force::force_new_cluster;
use super::restore::{RestoreFrom, restore};
use super::{backup, format};
use crate::ca::record;
use crate::datadir::{self, Marker};
use crate::keyring::Keyring;
use crate::raft::storage::LogStorage;
use crate::store::{Table, put_kind};

fn pki_object(cluster_id: &str) -> Object {
    let authority = Authority::create(cluster_id, crate::clock::now_ms()).unwrap();
    let mut pki = record::initial(&authority, std::time::Duration::from_secs(3600));
    pki.version = 1;
    Object {
        kind: Some(Kind::Pki(pki)),
    }
}

fn config(id: &str) -> Kind {
    Kind::Config(Config {
        id: id.into(),
        name: id.into(),
        data: b"v".to_vec(),
        ..Default::default()
    })
}

/// A three-member cluster's data dir of member 1, as a survivor finds it:
/// a config applied, then a config and a conf change only in its log.
fn survivor(dir: &std::path::Path) -> (Marker, sled::Db) {
    let marker = Marker::new("c1".into(), 1);
    let members = [
        (1, "10.0.0.1:7400".to_string()),
        (2, "10.0.0.2:7400".to_string()),
        (3, "10.0.0.3:7400".to_string()),
    ]
    .into();
    let db =
        datadir::create_with(dir, &marker, &members, &[1, 2, 3], vec![pki_object("c1")]).unwrap();
    let (db, sm) = datadir::load(dir, db, &marker).unwrap();
    sm.apply_txn(
        &Txn {
            ops: vec![put_kind(config("applied"), Expect::Absent, 0)],
        },
        1,
        1,
    )
    .unwrap();
    sm.checkpoint().unwrap();
    let mut log = LogStorage::open(&datadir::log_dir(dir), sm).unwrap();
    let txn = Txn {
        ops: vec![put_kind(config("logged"), Expect::Absent, 0)],
    };
    let mut normal = Entry {
        index: 2,
        term: 2,
        ..Default::default()
    };
    normal.set_entry_type(EntryType::EntryNormal);
    normal.set_data(txn.encode_to_vec().into());
    let mut cc = ConfChangeV2::default();
    let mut single = ConfChangeSingle {
        node_id: 4,
        ..Default::default()
    };
    single.set_change_type(ConfChangeType::AddLearnerNode);
    cc.set_changes(vec![single].into());
    let mut conf = Entry {
        index: 3,
        term: 2,
        ..Default::default()
    };
    conf.set_entry_type(EntryType::EntryConfChangeV2);
    conf.set_data(protobuf::Message::write_to_bytes(&cc).unwrap().into());
    // Committed up to 2 only: entry 3 was never known committed here.
    let hs = HardState {
        term: 2,
        vote: 2,
        commit: 2,
        ..Default::default()
    };
    log.append(&[normal, conf], Some(&hs), true).unwrap();
    (marker, db)
}

#[test]
fn force_new_cluster_keeps_the_data_and_leaves_one_voter() {
    let dir = tempfile::tempdir().unwrap();
    let (marker, db) = survivor(dir.path());
    let (db, forced) = force_new_cluster(dir.path(), &marker, db, "").unwrap();
    assert_eq!(forced.removed, vec![2, 3]);
    assert_eq!(forced.index, 3);
    let token = forced.controller_token.expect("a new controller token");

    let (_db, sm) = datadir::load(dir.path(), db, &marker).unwrap();
    for id in ["applied", "logged"] {
        assert!(sm.get(Table::Config, id).unwrap().is_some(), "{id} is lost");
    }
    assert_eq!(
        sm.members().unwrap(),
        [(1, "10.0.0.1:7400".to_string())].into()
    );
    let pki = record::read(&sm).unwrap().unwrap();
    assert_eq!(token.secret, pki.controller_token_secret);
    let now = crate::clock::now_ms();
    assert!(record::is_removed(&pki.removed, "2", now));
    assert!(record::is_removed(&pki.removed, "3", now));
    // Raft restarts from the rewritten state: one voter, the log after it.
    let log = LogStorage::open(&datadir::log_dir(dir.path()), sm.clone()).unwrap();
    let state = log.initial_state().unwrap();
    assert_eq!(state.conf_state.voters, vec![1]);
    assert!(state.conf_state.learners.is_empty());
    assert!(state.hard_state.term >= 2 && state.hard_state.commit >= 3);
    assert_eq!(log.first_index(), 4);
    assert_eq!(sm.applied().unwrap().index, 3);
}

#[test]
fn a_backup_restores_into_a_new_member_of_the_same_cluster() {
    let source = tempfile::tempdir().unwrap();
    let (marker, db) = survivor(source.path());
    let (_db, sm) = datadir::load(source.path(), db, &marker).unwrap();
    let keys = Keyring::create(source.path()).unwrap();
    let taken = backup::take(&sm, &keys).unwrap();
    let summary = backup::summary(&taken, 1);
    assert_eq!(summary.counts["config"], 1);
    assert_eq!(summary.counts["pki"], 1);
    let file = source.path().join("b.bak");
    std::fs::write(&file, format::encode(&taken)).unwrap();

    let target = tempfile::tempdir().unwrap();
    let data_dir = target.path().join("data");
    let restored = restore(&RestoreFrom {
        file: &file,
        unlock_key: None,
        data_dir: &data_dir,
        advertise: "10.0.0.9:7400",
        plaintext: false,
    })
    .unwrap();
    assert_eq!(restored.marker.cluster_id, "c1");
    assert!(![1, 2, 3].contains(&restored.marker.member_id));
    // The same key opens what was sealed before.
    let sealed = keys.seal("s1", b"value").unwrap();
    assert_eq!(
        restored.keys.open("s1", &sealed).unwrap().as_bytes(),
        b"value"
    );

    let (_db, sm2) = datadir::load(&data_dir, restored.db, &restored.marker).unwrap();
    assert!(sm2.get(Table::Config, "applied").unwrap().is_some());
    assert_eq!(sm2.revision().unwrap(), sm.revision().unwrap() + 1);
    assert_eq!(
        sm2.members().unwrap().keys().copied().collect::<Vec<_>>(),
        vec![restored.marker.member_id]
    );
    // Its certificate comes from the backup's CA, for this member.
    let info = Bundle::load(&datadir::tls_dir(&data_dir))
        .unwrap()
        .info()
        .unwrap();
    assert_eq!(info.identity.role, Role::Controller);
    assert_eq!(info.identity.node_id, restored.marker.member_id.to_string());
    assert_eq!(info.identity.cluster_id, "c1");
    let pki = record::read(&sm2).unwrap().unwrap();
    assert_eq!(
        Bundle::load(&datadir::admin_dir(&data_dir)).unwrap().ca_pem,
        pki.ca_pem
    );
    assert!(record::is_removed(
        &pki.removed,
        "1",
        crate::clock::now_ms()
    ));
}

#[test]
fn a_locked_backup_needs_its_unlock_key_and_a_bad_one_writes_nothing() {
    let source = tempfile::tempdir().unwrap();
    let (marker, db) = survivor(source.path());
    let (_db, sm) = datadir::load(source.path(), db, &marker).unwrap();
    let (keys, unlock) = Keyring::create_locked(source.path()).unwrap();
    let taken = backup::take(&sm, &keys).unwrap();
    assert!(backup::summary(&taken, 1).secrets_key_locked);
    let file = source.path().join("b.bak");
    std::fs::write(&file, format::encode(&taken)).unwrap();
    let target = tempfile::tempdir().unwrap();
    let from = |unlock_key| RestoreFrom {
        file: &file,
        unlock_key,
        data_dir: target.path(),
        advertise: "10.0.0.9:7400",
        plaintext: true,
    };
    let err = restore(&from(None)).err().expect("refused");
    assert!(err.to_string().contains("--unlock-key"), "{err}");
    assert!(restore(&from(Some("BERTH-UNLOCK-00"))).is_err());
    assert!(std::fs::read_dir(target.path()).unwrap().next().is_none());
    let restored = restore(&from(Some(unlock.text()))).unwrap();
    let sealed = keys.seal("s", b"x").unwrap();
    assert_eq!(restored.keys.open("s", &sealed).unwrap().as_bytes(), b"x");
}
