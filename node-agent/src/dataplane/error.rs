//! Errors of the overlay data plane.

/// Everything the network module can fail with; each message names the object.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("invalid network plan: {0}")]
    Plan(String),
    #[error("netlink {what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Kernel(String),
    /// `nft` failed: what berth asked for and what nft said.
    #[error("nft {what}: {message}")]
    Nft { what: String, message: String },
    /// `conntrack` failed: what berth asked for and what it said.
    #[error("conntrack {what}: {message}")]
    Conntrack { what: String, message: String },
    /// Another VXLAN device (Docker Swarm's ingress, flannel) or another
    /// program holds what the network's device needs: a node condition, not a
    /// task failure (see `NetPlane::dataplane_conflict`).
    #[error("{0}")]
    VxlanConflict(String),
    /// The load balancer could not do `what` (which plan, which backend).
    #[error("load balancer: {what}: {source}")]
    LoadBalancer {
        what: String,
        #[source]
        source: Box<NetworkError>,
    },
}

impl NetworkError {
    pub(crate) fn netlink(
        what: impl Into<String>,
    ) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
        let what = what.into();
        move |source| NetworkError::Netlink { what, source }
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetworkError {
        let what = what.into();
        move |source| NetworkError::Io { what, source }
    }

    pub(crate) fn load_balancer(
        what: impl Into<String>,
    ) -> impl FnOnce(NetworkError) -> NetworkError {
        let what = what.into();
        move |source| NetworkError::LoadBalancer {
            what,
            source: Box::new(source),
        }
    }

    /// A delete that found its object already gone has done its job.
    pub(crate) fn gone_is_done(result: Result<(), NetworkError>) -> Result<(), NetworkError> {
        match result {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }

    /// A delete of something already gone (ENOENT, ESRCH, ENODEV, EADDRNOTAVAIL).
    pub fn is_not_found(&self) -> bool {
        match self {
            NetworkError::Netlink {
                source: rtnetlink::Error::NetlinkError(msg),
                ..
            } => msg.raw_code().checked_neg().is_some_and(|c| {
                [libc::ENOENT, libc::ESRCH, libc::ENODEV, libc::EADDRNOTAVAIL].contains(&c)
            }),
            _ => false,
        }
    }
}
