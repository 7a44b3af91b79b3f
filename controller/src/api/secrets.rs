//! Secrets: created sealed, never shown, immutable, removed only when unused.
//!
//! The value is sealed with the cluster's key (keyring.rs) here, before the
//! write is proposed: the Raft log, snapshots and the state machine's files
//! only ever see the sealed form. Answers carry no data at all.

use berth_proto::store::Expect;
use berth_proto::store::Object;
use berth_proto::store::object::Kind;
use berth_proto::v1::{
    CreateSecretRequest, GetSecretRequest, ListSecretsResponse, RemoveSecretRequest, Secret,
    Timestamps,
};
use tonic::Status;

use super::files::{refuse_while_used, uses_secret};
use super::status::check_name;
use crate::clock::now_ms;
use crate::ids::new_id;
use crate::keyring::Keyring;
use crate::raft::RaftHandle;
use crate::store::commit::commit_one;
use crate::store::view::resolve;
use crate::store::{Table, commit, delete, put};

/// The secret as an answer shows it: without its value.
fn shown(object: Object) -> Result<Secret, Status> {
    match object.kind {
        Some(Kind::Secret(mut s)) => {
            s.data.clear();
            Ok(s)
        }
        _ => Err(Status::internal("the store returned a non-secret object")),
    }
}

pub async fn create(
    raft: &RaftHandle,
    keys: &Keyring,
    req: CreateSecretRequest,
) -> Result<Secret, Status> {
    check_name("secret", &req.name)?;
    crate::keyring::check_value(&req.name, &req.data).map_err(Status::invalid_argument)?;
    let id = new_id();
    let sealed = keys
        .seal(&id, &req.data)
        .map_err(|e| Status::internal(e.to_string()))?;
    let now = now_ms();
    let secret = Secret {
        id,
        name: req.name,
        data: sealed,
        labels: req.labels,
        version: 0,
        timestamps: Some(Timestamps {
            created_ms: now,
            updated_ms: now,
        }),
    };
    let object = Object {
        kind: Some(Kind::Secret(secret)),
    };
    shown(commit_one(raft, put(object, Expect::Absent, 0)).await?)
}

pub async fn get(raft: &RaftHandle, req: GetSecretRequest) -> Result<Secret, Status> {
    raft.read_barrier().await?;
    shown(resolve(raft.state(), Table::Secret, &req.secret)?)
}

pub async fn list(raft: &RaftHandle) -> Result<ListSecretsResponse, Status> {
    raft.read_barrier().await?;
    let secrets = raft
        .state()
        .list(Table::Secret)?
        .into_iter()
        .map(shown)
        .collect::<Result<_, _>>()?;
    Ok(ListSecretsResponse { secrets })
}

pub async fn remove(raft: &RaftHandle, req: RemoveSecretRequest) -> Result<(), Status> {
    let current = shown(resolve(raft.state(), Table::Secret, &req.secret)?)?;
    refuse_while_used(raft, "secret", &current.name, |spec| {
        uses_secret(spec, &current.id)
    })?;
    commit(
        raft,
        vec![delete(
            Table::Secret,
            &current.id,
            Expect::Version,
            current.version,
        )],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use berth_proto::v1::{
        ConfigReference, CreateConfigRequest, CreateServiceRequest, SecretReference, ServiceSpec,
        UpdateConfigRequest,
    };

    use super::*;
    use crate::api::image_pin::pinner;
    use crate::api::{configs, services};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_secret_is_stored_sealed_shown_without_value_and_kept_while_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raft = crate::server::test_leader(dir.path()).await;
        let keys = Keyring::create(dir.path()).expect("keys");
        let created = create(
            &raft,
            &keys,
            CreateSecretRequest {
                name: "pw".into(),
                data: b"hunter2".to_vec(),
                ..Default::default()
            },
        )
        .await
        .expect("create");
        assert!(created.data.is_empty(), "an answer carries no value");
        let Some(Kind::Secret(stored)) = raft
            .state()
            .get(Table::Secret, &created.id)
            .expect("read")
            .and_then(|o| o.kind)
        else {
            panic!("no stored secret");
        };
        assert!(!stored.data.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            keys.open(&stored.id, &stored.data)
                .expect("open")
                .as_bytes(),
            b"hunter2"
        );

        configs::create(
            &raft,
            CreateConfigRequest {
                name: "conf".into(),
                data: b"v1".to_vec(),
                ..Default::default()
            },
        )
        .await
        .expect("config");
        let service = services::create(
            &raft,
            &pinner(&keys),
            CreateServiceRequest {
                spec: Some(ServiceSpec {
                    name: "web".into(),
                    image: "busybox".into(),
                    secrets: vec![SecretReference {
                        secret_name: "pw".into(),
                        ..Default::default()
                    }],
                    configs: vec![ConfigReference {
                        config_name: "conf".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                // Never asks docker.io.
                no_resolve_image: true,
            },
        )
        .await
        .expect("service")
        .service
        .expect("service");
        let spec = service.spec.clone().expect("spec");
        assert_eq!(spec.secrets[0].secret_id, created.id);
        assert_eq!(spec.secrets[0].target, "pw");
        assert_eq!(
            spec.secrets[0].digest,
            crate::digest::sha256_hex(&stored.data),
            "a reference carries the digest of the sealed value"
        );
        assert_eq!(spec.configs[0].target, "/conf");
        assert_eq!(spec.configs[0].digest, crate::digest::sha256_hex(b"v1"));

        let err = remove(
            &raft,
            RemoveSecretRequest {
                secret: "pw".into(),
            },
        )
        .await
        .expect_err("in use");
        assert!(err.message().contains("in use by service web"), "{err:?}");

        // A changed config changes the service's spec and its version.
        configs::update(
            &raft,
            UpdateConfigRequest {
                config: "conf".into(),
                data: b"v2".to_vec(),
                version: 0,
            },
        )
        .await
        .expect("update");
        let after = services::get(&raft, "web").await.expect("web");
        assert_eq!(after.spec_version, service.spec_version + 1);
        let digest = &after.spec.expect("spec").configs[0].digest;
        assert_eq!(digest, &crate::digest::sha256_hex(b"v2"));
    }
}
