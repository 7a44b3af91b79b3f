//! A service's registry-auth secret: resolved like the others, kept while
//! used, removed with the service it was made for.

use berth_proto::REGISTRY_AUTH_LABEL;
use berth_proto::v1::{
    CreateSecretRequest, CreateServiceRequest, RemoveSecretRequest, SecretReference, ServiceSpec,
    UpdateServiceRequest,
};
use tonic::Code;

use super::image_pin::pinner;
use super::{secrets, services};
use crate::keyring::Keyring;
use crate::raft::RaftHandle;

/// A secret; `for_service` labels it as `--with-registry-auth` does.
async fn secret(
    raft: &RaftHandle,
    keys: &Keyring,
    name: &str,
    for_service: Option<&str>,
) -> String {
    let labels = for_service
        .map(|s| [(REGISTRY_AUTH_LABEL.to_string(), s.to_string())].into())
        .unwrap_or_default();
    secrets::create(
        raft,
        keys,
        CreateSecretRequest {
            name: name.into(),
            data: br#"{"auths":{"10.0.0.5:5000":{"auth":"YTpi"}}}"#.to_vec(),
            labels,
        },
    )
    .await
    .expect("secret")
    .id
}

fn spec(name: &str, registry_auth: &str) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        image: "10.0.0.5:5000/app:1".into(),
        registry_auth: Some(SecretReference {
            secret_name: registry_auth.into(),
            // Meaningless here: cleared, never mounted.
            target: "x".into(),
            mode: 0o400,
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn exists(raft: &RaftHandle, name: &str) -> bool {
    secrets::get(
        raft,
        berth_proto::v1::GetSecretRequest {
            secret: name.into(),
        },
    )
    .await
    .is_ok()
}

async fn remove_secret(raft: &RaftHandle, name: &str) -> tonic::Status {
    secrets::remove(
        raft,
        RemoveSecretRequest {
            secret: name.into(),
        },
    )
    .await
    .expect_err("in use")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_auth_secret_is_resolved_kept_while_used_and_goes_with_its_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raft = crate::server::test_leader(dir.path()).await;
    let keys = Keyring::create(dir.path()).expect("keys");
    let first = secret(&raft, &keys, "registry-auth-web-1", Some("web")).await;
    secret(&raft, &keys, "registry-auth-web-2", Some("web")).await;
    secret(&raft, &keys, "registry-auth-web-3", Some("web")).await;
    secret(&raft, &keys, "shared-creds", None).await;

    let missing = services::create(
        &raft,
        &pinner(&keys),
        CreateServiceRequest {
            spec: Some(spec("web", "nope")),
            // Never asks a registry (10.0.0.5 is not the test's).
            no_resolve_image: true,
        },
    )
    .await
    .expect_err("unknown secret");
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert!(
        missing.message().contains("\"nope\" does not exist"),
        "{missing:?}"
    );

    let web = services::create(
        &raft,
        &pinner(&keys),
        CreateServiceRequest {
            spec: Some(spec("web", "registry-auth-web-1")),
            // Never asks a registry (10.0.0.5 is not the test's).
            no_resolve_image: true,
        },
    )
    .await
    .expect("web")
    .service
    .expect("service");
    let r = web.spec.and_then(|s| s.registry_auth).expect("reference");
    assert_eq!(
        r,
        SecretReference {
            secret_id: first,
            secret_name: "registry-auth-web-1".into(),
            ..Default::default()
        }
    );
    let err = remove_secret(&raft, "registry-auth-web-1").await;
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("in use by service web"), "{err:?}");

    // An update keeps what the previous spec uses (a rollback pulls with it)
    // and drops the older one.
    let update = |auth: &str| UpdateServiceRequest {
        service: "web".into(),
        spec: Some(spec("web", auth)),
        // Never asks a registry (10.0.0.5 is not the test's).
        no_resolve_image: true,
        ..Default::default()
    };
    services::update(&raft, &pinner(&keys), update("registry-auth-web-2"))
        .await
        .expect("update 2");
    assert!(
        exists(&raft, "registry-auth-web-1").await,
        "the previous spec's"
    );
    services::update(&raft, &pinner(&keys), update("registry-auth-web-3"))
        .await
        .expect("update 3");
    assert!(!exists(&raft, "registry-auth-web-1").await);
    assert!(exists(&raft, "registry-auth-web-2").await);

    // Another service uses a shared one: its removal leaves that alone.
    services::create(
        &raft,
        &pinner(&keys),
        CreateServiceRequest {
            spec: Some(spec("api", "shared-creds")),
            // Never asks a registry (10.0.0.5 is not the test's).
            no_resolve_image: true,
        },
    )
    .await
    .expect("api");
    services::remove(&raft, "web").await.expect("rm web");
    assert!(!exists(&raft, "registry-auth-web-2").await);
    assert!(!exists(&raft, "registry-auth-web-3").await);
    services::remove(&raft, "api").await.expect("rm api");
    assert!(exists(&raft, "shared-creds").await, "not made for api");
}
