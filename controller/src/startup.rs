//! How a controller comes to have a data dir and credentials: a new cluster
//! (`--init`: the CA, this member's and the admin's certificates), a join
//! (`--join ADDR --token T`: a certificate from the cluster, then Raft
//! membership), or a restart (what the data dir holds). Nothing is written
//! locally before the cluster said yes.

use std::time::Duration;

use berth_pki::enroll::{self, Enrolled};
use berth_pki::{Authority, Bundle, Credentials, Identity, JoinToken, Role, Security, Validity};
use berth_proto::store::Object;
use berth_proto::store::object::Kind;
use berth_proto::v1::JoinRequest;
use tracing::{info, warn};

use crate::datadir::{self, DataDirError, Existing, Marker};
use crate::raft::transport::{peer_channel, peer_client};
use crate::recovery::{Recover, RecoveryError};
use crate::server::{ControllerOptions, ServerError};

/// An opened data dir and how this member talks.
pub struct Prepared {
    pub marker: Marker,
    pub db: sled::Db,
    pub security: Security,
    /// At init: the secrets key just made (a restart or join loads it).
    pub created: Option<crate::keyring::Keyring>,
}

/// Asks an existing member to add us; nothing is written locally before it says yes.
async fn join_cluster(
    via: &str,
    advertise: &str,
    member_id: u64,
    security: &Security,
) -> Result<berth_proto::v1::JoinResponse, ServerError> {
    let join_err = |why: String| ServerError::Join {
        via: via.to_string(),
        why,
    };
    let channel = peer_channel(via, security).map_err(|e| join_err(format!("bad address: {e}")))?;
    let mut client = peer_client(channel);
    let mut last = String::new();
    // A freshly started cluster may still be electing: retry unavailable answers.
    for _ in 0..20 {
        let request = JoinRequest {
            address: advertise.to_string(),
            member_id,
        };
        match tokio::time::timeout(Duration::from_secs(10), client.join(request)).await {
            Ok(Ok(response)) => return Ok(response.into_inner()),
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                last = berth_pki::explain::tls_failure(&status, "the controller")
                    .unwrap_or_else(|| status.message().to_string());
                if last.contains("tcp connect error") || last.contains("error trying to connect") {
                    return Err(join_err(format!("no controller answers there ({last})")));
                }
            }
            Ok(Err(status)) => return Err(join_err(status.message().to_string())),
            Err(_) => return Err(join_err("no answer within 10 s".to_string())),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(join_err(format!("the cluster stayed unavailable: {last}")))
}

fn pki_error(what: &'static str) -> impl Fn(berth_pki::PkiError) -> ServerError {
    move |source| ServerError::Pki { what, source }
}

/// A new cluster's CA record and the bundles of its first member and admin.
fn new_cluster_pki(
    cluster_id: &str,
    member_id: u64,
    cert_expiry: Duration,
) -> Result<(Object, Bundle, Bundle), ServerError> {
    let now = crate::clock::now_ms();
    let authority = Authority::create(cluster_id, now).map_err(pki_error("create the root CA"))?;
    let mut record = crate::ca::record::initial(&authority, cert_expiry);
    record.version = 1;
    let validity = Validity::starting_at(now, cert_expiry);
    let identity = |node_id: String, role| Identity {
        node_id,
        role,
        cluster_id: cluster_id.to_string(),
    };
    let member = authority
        .issue_bundle(&identity(member_id.to_string(), Role::Controller), validity)
        .map_err(pki_error("issue this controller's certificate"))?;
    let admin_id = format!("admin-{}", crate::ids::new_id());
    let admin_validity = Validity::starting_at(now, berth_pki::ca::ADMIN_LIFETIME);
    let admin = authority
        .issue_bundle(&identity(admin_id, Role::Admin), admin_validity)
        .map_err(pki_error("issue the admin certificate"))?;
    let object = Object {
        kind: Some(Kind::Pki(record)),
    };
    Ok((object, member, admin))
}

/// The credentials of an existing member's data dir.
fn load_security(opts: &ControllerOptions) -> Result<Security, ServerError> {
    if opts.insecure_plaintext {
        warn!(
            "serving PLAIN TEXT without authentication (--insecure-plaintext): anyone who reaches this port controls the cluster"
        );
        return Ok(Security::Plaintext);
    }
    let dir = datadir::tls_dir(&opts.data_dir);
    if !Bundle::exists(&dir) {
        return Err(ServerError::NoCredentials { dir });
    }
    let bundle = Bundle::load(&dir).map_err(pki_error("load this controller's credentials"))?;
    let creds =
        Credentials::new(bundle).map_err(pki_error("load this controller's credentials"))?;
    Ok(Security::Tls(creds))
}

/// Decides init / join / restart; returns who this member is, its database
/// and its credentials.
pub async fn prepare_data_dir(
    opts: &ControllerOptions,
    advertise: &str,
) -> Result<Prepared, ServerError> {
    match datadir::inspect(&opts.data_dir)? {
        Existing::Member(marker) => {
            if let Recover::Restore { .. } = opts.recover {
                return Err(RecoveryError::Invalid(format!(
                    "--restore needs an empty data dir; {} holds member {} of cluster {}",
                    opts.data_dir.display(),
                    marker.member_id,
                    marker.cluster_id
                ))
                .into());
            }
            if opts.init || opts.join.is_some() {
                warn!(
                    data_dir = %opts.data_dir.display(),
                    "data dir already holds member {}; ignoring --init/--join", marker.member_id
                );
            }
            let security = load_security(opts)?;
            let mut db = datadir::open_db(&opts.data_dir)?;
            if let Recover::ForceNewCluster = opts.recover {
                db = force_new_cluster(opts, &marker, db, advertise)?;
            }
            Ok(Prepared {
                marker,
                db,
                security,
                created: None,
            })
        }
        Existing::Empty if matches!(opts.recover, Recover::ForceNewCluster) => {
            Err(RecoveryError::Invalid(format!(
                "--force-new-cluster needs the data dir of a surviving member; {} holds none",
                opts.data_dir.display()
            ))
            .into())
        }
        Existing::Empty if opts.init && matches!(opts.recover, Recover::Restore { .. }) => {
            restore(opts, advertise)
        }
        Existing::Empty if opts.init => {
            let marker = Marker::new(datadir::new_cluster_id(), datadir::new_member_id());
            let (record, member, admin) =
                new_cluster_pki(&marker.cluster_id, marker.member_id, opts.cert_expiry)?;
            // Credentials first: the marker, written last by create, means complete.
            member
                .save(&datadir::tls_dir(&opts.data_dir))
                .map_err(pki_error("save this controller's credentials"))?;
            let admin_dir = datadir::admin_dir(&opts.data_dir);
            admin
                .save(&admin_dir)
                .map_err(pki_error("save the admin credentials"))?;
            let keys = crate::unlock::create_key(&opts.data_dir, opts.autolock)?;
            let members = [(marker.member_id, advertise.to_string())].into();
            let db = datadir::create_with(
                &opts.data_dir,
                &marker,
                &members,
                &[marker.member_id],
                vec![
                    record,
                    crate::cluster_settings::initial(
                        opts.task_history_limit,
                        crate::clock::now_ms(),
                    ),
                ],
            )?;
            info!(
                cluster = %marker.cluster_id,
                member = marker.member_id,
                admin_credentials = %admin_dir.display(),
                "initialized a new cluster"
            );
            let security = load_security(opts)?;
            Ok(Prepared {
                marker,
                db,
                security,
                created: Some(keys),
            })
        }
        Existing::Empty => {
            let Some(via) = &opts.join else {
                return Err(DataDirError::Uninitialized {
                    path: opts.data_dir.clone(),
                }
                .into());
            };
            let (member_id, security, bundle) = if opts.insecure_plaintext {
                (0, Security::Plaintext, None)
            } else {
                let text = opts.token.as_deref().ok_or(ServerError::NoToken)?;
                let token = JoinToken::parse(text).map_err(pki_error("read the join token"))?;
                let Enrolled {
                    bundle,
                    node_id,
                    role,
                    ..
                } = enroll::join(via, &token, None, "")
                    .await
                    .map_err(|e| ServerError::Join {
                        via: via.clone(),
                        why: e.to_string(),
                    })?;
                if role != Role::Controller {
                    return Err(ServerError::Join {
                        via: via.clone(),
                        why: format!(
                            "the token joins as {role}; a controller needs the controller token \
                             (`berth cluster join-token controller`)"
                        ),
                    });
                }
                let member_id = node_id.parse().map_err(|_| ServerError::Join {
                    via: via.clone(),
                    why: format!("the cluster gave a non-numeric member id {node_id:?}"),
                })?;
                let creds = Credentials::new(bundle.clone())
                    .map_err(pki_error("load the new credentials"))?;
                (member_id, Security::Tls(creds), Some(bundle))
            };
            let response = join_cluster(via, advertise, member_id, &security).await?;
            let marker = Marker::new(response.cluster_id, response.member_id);
            if let Some(bundle) = bundle {
                bundle
                    .save(&datadir::tls_dir(&opts.data_dir))
                    .map_err(pki_error("save this controller's credentials"))?;
            }
            crate::keyring::Keyring::store_joined(&opts.data_dir, &response.secrets_key)?;
            let db = datadir::create(&opts.data_dir, &marker, &response.members, &[])?;
            info!(cluster = %marker.cluster_id, member = marker.member_id, "joined the cluster as a learner");
            Ok(Prepared {
                marker,
                db,
                security,
                created: None,
            })
        }
    }
}

/// `--init --restore FILE`: a new one-member cluster from a backup.
fn restore(opts: &ControllerOptions, advertise: &str) -> Result<Prepared, ServerError> {
    let Recover::Restore { file, unlock_key } = &opts.recover else {
        return Err(RecoveryError::Invalid("no backup to restore".into()).into());
    };
    let restored = crate::recovery::restore::restore(&crate::recovery::restore::RestoreFrom {
        file,
        unlock_key: unlock_key.as_deref(),
        data_dir: &opts.data_dir,
        advertise,
        plaintext: opts.insecure_plaintext,
    })?;
    let security = load_security(opts)?;
    Ok(Prepared {
        marker: restored.marker,
        db: restored.db,
        security,
        created: Some(restored.keys),
    })
}

/// `--force-new-cluster`: this member alone, on its own data; prints the new
/// controller join token.
fn force_new_cluster(
    opts: &ControllerOptions,
    marker: &Marker,
    db: sled::Db,
    advertise: &str,
) -> Result<sled::Db, ServerError> {
    let (db, forced) =
        crate::recovery::force::force_new_cluster(&opts.data_dir, marker, db, advertise)?;
    warn!(
        removed = ?forced.removed,
        "--force-new-cluster: this member now forms the cluster alone; start it without \
         the flag from now on"
    );
    if let Some(token) = forced.controller_token {
        println!(
            "This controller is now a one-member cluster (the removed members can never \
             rejoin under their old ids). The controller join token was rotated; new \
             controllers join with:\n\n    {token}\n"
        );
    }
    Ok(db)
}
