//! The `Certificates` service (the CA's bootstrap and renewal RPCs) and the
//! join-token RPC of the CLI API.

use berth_pki::{Identity, Role};
use berth_proto::store::ClusterPki;
use berth_proto::store::Expect;
use berth_proto::store::object::Kind;
use berth_proto::v1::certificates_server::Certificates;
use berth_proto::v1::{
    GetRootCaRequest, GetRootCaResponse, IssueCertificateRequest, IssueCertificateResponse,
    JoinTokenRequest, JoinTokenResponse, Node, RenewCertificateRequest, RotateCaResponse,
};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::ca::issue::{Applicant, join_identity, request_key, sign};
use crate::ca::{Gate, IssueError, record};
use crate::raft::RaftHandle;
use crate::store::commit::commit;
use crate::store::put_kind;
use crate::store::view::read_node;

pub struct CertificatesApi {
    raft: RaftHandle,
    gate: Gate,
    cluster_id: String,
}

impl CertificatesApi {
    pub fn new(raft: RaftHandle, gate: Gate, cluster_id: String) -> Self {
        CertificatesApi {
            raft,
            gate,
            cluster_id,
        }
    }
}

/// The CA record as of now (linearizable: a rotated token is refused at once
/// on every controller).
async fn current_record(raft: &RaftHandle) -> Result<ClusterPki, Status> {
    raft.read_barrier().await?;
    record::read(raft.state())?.ok_or_else(|| IssueError::NoCa.into())
}

fn answer(record: &ClusterPki, identity: &Identity, cert_pem: String) -> IssueCertificateResponse {
    IssueCertificateResponse {
        cert_pem,
        ca_pem: record.ca_pem.clone(),
        node_id: identity.node_id.clone(),
        role: identity.role.to_string(),
        cluster_id: identity.cluster_id.clone(),
    }
}

/// Records an agent's new certificate on its node (expiry for `node ls`, the
/// key for a later rejoin). The node may not exist yet: registration records
/// it then.
pub async fn record_node_certificate(
    raft: &RaftHandle,
    node_id: &str,
    cert: &berth_pki::CertInfo,
) -> Result<(), Status> {
    for _ in 0..3 {
        let Some(mut node): Option<Node> = read_node(raft.state(), node_id)? else {
            return Ok(());
        };
        let version = node.version;
        node.cert_not_after_ms = cert.not_after_ms;
        node.cert_key_sha256 = cert.public_key_sha256.clone();
        node.cert_authority_key_id = cert.authority_key_id.clone();
        let op = put_kind(Kind::Node(node), Expect::Version, version);
        match commit(raft, vec![op]).await {
            Ok(_) => return Ok(()),
            Err(err) if err.is_conflict() => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(Status::aborted(format!(
        "node {node_id} kept changing; its certificate is issued but not recorded"
    )))
}

#[tonic::async_trait]
impl Certificates for CertificatesApi {
    async fn get_root_ca(
        &self,
        _: Request<GetRootCaRequest>,
    ) -> Result<Response<GetRootCaResponse>, Status> {
        let record = record::read(self.raft.state())?.ok_or(IssueError::NoCa)?;
        Ok(Response::new(GetRootCaResponse {
            ca_pem: record.ca_pem,
        }))
    }

    async fn issue_certificate(
        &self,
        request: Request<IssueCertificateRequest>,
    ) -> Result<Response<IssueCertificateResponse>, Status> {
        let peer = request
            .extensions()
            .get::<berth_pki::tls::PeerInfo>()
            .and_then(|p| p.remote_addr);
        let req = request.into_inner();
        let record = current_record(&self.raft).await?;
        let key = request_key(&req.csr)?;
        let node = match req.node_id.as_str() {
            "" => None,
            id => read_node(self.raft.state(), id)?,
        };
        let applicant = Applicant {
            token: &req.token,
            node_id: &req.node_id,
            node: node.as_ref(),
            key_sha256: &key,
        };
        let now = crate::clock::now_ms();
        let identity =
            join_identity(
                &record,
                &self.cluster_id,
                &applicant,
                now,
                &mut |role| match role {
                    Role::Controller => crate::datadir::new_member_id().to_string(),
                    _ => crate::ids::new_id(),
                },
            )
            .inspect_err(|err| warn!(peer = ?peer, %err, "refused a join"))?;
        let issued = sign(&record, &req.csr, &identity, now)?;
        info!(peer = ?peer, node = %identity.node_id, role = %identity.role, "issued a certificate for a join");
        Ok(Response::new(answer(&record, &identity, issued.cert_pem)))
    }

    async fn renew_certificate(
        &self,
        request: Request<RenewCertificateRequest>,
    ) -> Result<Response<IssueCertificateResponse>, Status> {
        let Some(identity) = self.gate.admit(&request, &Role::ALL)? else {
            return Err(Status::failed_precondition(
                "this cluster runs in plain text: there are no certificates to renew",
            ));
        };
        let req = request.into_inner();
        let record = current_record(&self.raft).await?;
        let issued = sign(&record, &req.csr, &identity, crate::clock::now_ms())?;
        if identity.role == Role::Agent {
            record_node_certificate(&self.raft, &identity.node_id, &issued.info).await?;
        }
        info!(node = %identity.node_id, role = %identity.role, "renewed a certificate");
        Ok(Response::new(answer(&record, &identity, issued.cert_pem)))
    }
}

/// Starts a root rotation: a new root signs from now on, both are trusted,
/// and every node renews (agents learn of it from their next heartbeat).
pub async fn rotate_ca(raft: &RaftHandle) -> Result<RotateCaResponse, Status> {
    let current = current_record(raft).await?;
    if record::rotating(&current) {
        let nodes = crate::store::view::read_nodes(raft.state())?;
        let (renewed, ready) = crate::ca::rotation::progress(&current, &nodes).unwrap_or((0, 0));
        return Err(Status::failed_precondition(format!(
            "a CA rotation is already under way ({renewed} of {ready} ready nodes on the new \
             root); see `berth cluster status`"
        )));
    }
    let cluster_id = raft.status().get().cluster_id;
    let next = record::begin_rotation(&current, &cluster_id, crate::clock::now_ms())
        .map_err(|e| Status::internal(format!("cannot make the new root: {e}")))?;
    let digest = berth_pki::bundle::ca_digest(&next.ca_pem);
    commit(raft, vec![record::put(next)]).await?;
    info!(ca = %digest, "CA rotation started: a new root signs, both roots are trusted until every node renewed");
    Ok(RotateCaResponse { ca_digest: digest })
}

/// The join token of a role, rotated first when asked.
pub async fn join_token(
    raft: &RaftHandle,
    req: JoinTokenRequest,
) -> Result<JoinTokenResponse, Status> {
    let role = match Role::parse(&req.role) {
        Some(role @ (Role::Agent | Role::Controller)) => role,
        _ => {
            return Err(Status::invalid_argument(format!(
                "unknown role {:?}: join tokens exist for \"agent\" and \"controller\"",
                req.role
            )));
        }
    };
    // Printing the token reads this member's state; rotating it writes
    // through the leader.
    let mut record = if req.rotate {
        current_record(raft).await?
    } else {
        record::read(raft.state())?.ok_or(IssueError::NoCa)?
    };
    if req.rotate {
        let secret = berth_pki::token::new_secret();
        match role {
            Role::Agent => record.agent_token_secret = secret,
            _ => record.controller_token_secret = secret,
        }
        let result = commit(raft, vec![record::put(record.clone())]).await?;
        info!(%role, "rotated the join token; nodes that joined before are unaffected");
        if let Some(Kind::Pki(stored)) = result.objects.into_iter().next().and_then(|o| o.kind) {
            record = stored;
        }
    }
    let token = record::token(&record, role).ok_or(IssueError::NoCa)?;
    Ok(JoinTokenResponse {
        token: token.to_string(),
    })
}
