//! Who may call what, checked on every RPC: the caller's certificate must be
//! of this cluster, of a role the service admits, not of a removed node and
//! not expired (a connection can outlive its certificate). Default deny: a
//! service without a gate is not served.

use std::sync::Arc;

use berth_pki::{Identity, Role};
use tonic::{Request, Status};

use super::record;
use crate::store::StateMachine;

/// The caller, as the gate admitted it (in the request's extensions).
#[derive(Clone, Debug)]
pub struct Caller(pub Identity);

/// The caller of a request that passed a gate; `None` on a plain-text port.
pub fn caller<T>(request: &Request<T>) -> Option<&Identity> {
    request.extensions().get::<Caller>().map(|c| &c.0)
}

#[derive(Clone)]
pub struct Gate {
    /// `None`: plain text (the operator's opt-out), everyone is let through.
    checks: Option<Arc<Checks>>,
}

struct Checks {
    sm: StateMachine,
    cluster_id: String,
    /// The removed nodes as of a store revision: every call reads them, the
    /// CA record changes rarely.
    removed: std::sync::Mutex<Option<(u64, Arc<Removed>)>>,
}

/// Removed node ids and until when their certificates are refused.
type Removed = std::collections::BTreeMap<String, i64>;

impl Checks {
    fn removed(&self) -> Result<Arc<Removed>, Status> {
        let unavailable = |e: crate::store::StoreError| {
            Status::unavailable(format!("cannot read the CA record: {e}"))
        };
        let revision = self.sm.revision().map_err(unavailable)?;
        let mut cached = self.removed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, removed)) = cached.as_ref()
            && *at == revision
        {
            return Ok(removed.clone());
        }
        let removed = Arc::new(
            record::read(&self.sm)
                .map_err(unavailable)?
                .map(|r| r.removed)
                .unwrap_or_default(),
        );
        *cached = Some((revision, removed.clone()));
        Ok(removed)
    }
}

fn names(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

impl Gate {
    pub fn new(sm: StateMachine, cluster_id: String) -> Gate {
        Gate {
            checks: Some(Arc::new(Checks {
                sm,
                cluster_id,
                removed: Default::default(),
            })),
        }
    }

    pub fn plaintext() -> Gate {
        Gate { checks: None }
    }

    /// The caller of `request` when it may call a service open to `roles`.
    pub fn admit<T>(
        &self,
        request: &Request<T>,
        roles: &[Role],
    ) -> Result<Option<Identity>, Status> {
        let Some(checks) = &self.checks else {
            return Ok(None);
        };
        let Some(cert) = berth_pki::authorize::peer_certificate(request) else {
            return Err(Status::unauthenticated(format!(
                "this endpoint needs a {} certificate of the cluster and the caller showed none \
                 (the CLI reads ca.pem, cert.pem and key.pem from --tls-dir, BERTH_TLS_DIR or \
                 ~/.config/berth/tls)",
                names(roles)
            )));
        };
        let identity = cert.identity.clone();
        if identity.cluster_id != checks.cluster_id {
            return Err(Status::permission_denied(format!(
                "the certificate belongs to cluster {}, this is cluster {}",
                identity.cluster_id, checks.cluster_id
            )));
        }
        if !roles.contains(&identity.role) {
            return Err(Status::permission_denied(format!(
                "a certificate of role {} cannot call this endpoint (it is for {})",
                identity.role,
                names(roles)
            )));
        }
        let now = crate::clock::now_ms();
        if let Some(why) = cert.invalid_at(now) {
            return Err(Status::unauthenticated(format!(
                "the caller's certificate {why}"
            )));
        }
        if record::is_removed(&*checks.removed()?, &identity.node_id, now) {
            return Err(Status::permission_denied(format!(
                "{} {} was removed from the cluster",
                identity.role, identity.node_id
            )));
        }
        Ok(Some(identity))
    }

    /// A tonic interceptor admitting `roles`; the admitted caller goes into
    /// the request's extensions (see [`caller`]).
    pub fn only(&self, roles: &'static [Role]) -> Interceptor {
        Interceptor {
            gate: self.clone(),
            roles,
        }
    }
}

/// The gate of one service, as a tonic interceptor.
#[derive(Clone)]
pub struct Interceptor {
    gate: Gate,
    roles: &'static [Role],
}

impl tonic::service::Interceptor for Interceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(identity) = self.gate.admit(&request, self.roles)? {
            request.extensions_mut().insert(Caller(identity));
        }
        Ok(request)
    }
}
