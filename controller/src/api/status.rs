//! Domain errors as gRPC statuses: the one place the API maps what the store,
//! Raft and the dispatcher say to codes a client acts on.

use tonic::{Code, Status};

use crate::dispatcher::DispatchError;
use crate::raft::ProposeError;
use crate::store::view::LookupError;
use crate::store::{CommitError, Refusal, StoreError};

impl From<CommitError> for Status {
    fn from(err: CommitError) -> Status {
        match err {
            CommitError::TooLarge { .. } => Status::invalid_argument(err.to_string()),
            CommitError::Refused { refusal, message } => Status::new(
                match refusal {
                    Refusal::Conflict => Code::Aborted,
                    Refusal::NotFound => Code::NotFound,
                    Refusal::Exists => Code::AlreadyExists,
                    Refusal::Invalid => Code::InvalidArgument,
                },
                message,
            ),
            CommitError::Raft(err) => err.into(),
        }
    }
}

impl From<ProposeError> for Status {
    fn from(err: ProposeError) -> Status {
        match err {
            ProposeError::NotLeader { .. }
            | ProposeError::NoLeader
            | ProposeError::Unknown
            | ProposeError::Unavailable => Status::unavailable(err.to_string()),
            ProposeError::MembershipBusy => Status::failed_precondition(err.to_string()),
            ProposeError::Invalid(msg) => Status::invalid_argument(msg),
        }
    }
}

impl From<StoreError> for Status {
    fn from(err: StoreError) -> Status {
        Status::internal(format!("state store: {err}"))
    }
}

impl From<LookupError> for Status {
    fn from(err: LookupError) -> Status {
        match err {
            LookupError::Empty(_) | LookupError::Ambiguous { .. } => {
                Status::invalid_argument(err.to_string())
            }
            LookupError::NotFound { .. } => Status::not_found(err.to_string()),
            LookupError::Store(err) => err.into(),
        }
    }
}

impl From<DispatchError> for Status {
    fn from(err: DispatchError) -> Status {
        match err {
            DispatchError::NotLeader { ref leader } => {
                let mut status = Status::unavailable(err.to_string());
                if let Some(addr) = leader
                    && let Ok(value) = addr.parse()
                {
                    status
                        .metadata_mut()
                        .insert(berth_proto::LEADER_METADATA, value);
                }
                status
            }
            DispatchError::UnknownSession => Status::not_found(err.to_string()),
            DispatchError::NoName => Status::invalid_argument(err.to_string()),
            DispatchError::NameTaken { .. } => Status::already_exists(err.to_string()),
            DispatchError::Busy => Status::aborted(err.to_string()),
            DispatchError::Commit(err) => err.into(),
            DispatchError::Store(err) => err.into(),
        }
    }
}

/// Names of services, networks and configs: what DNS accepts as a label.
pub fn check_name(what: &str, name: &str) -> Result<(), Status> {
    crate::naming::check_name(what, name).map_err(Status::invalid_argument)
}

impl From<crate::ca::IssueError> for Status {
    fn from(err: crate::ca::IssueError) -> Self {
        use crate::ca::IssueError as E;
        let message = err.to_string();
        match err {
            E::BadToken(_) | E::BadRequest(_) => Status::invalid_argument(message),
            E::OtherCa { .. } | E::WrongToken | E::Removed(_) | E::NotTheNode(_) => {
                Status::permission_denied(message)
            }
            E::NoCa => Status::unavailable(message),
            E::Ca(_) => Status::internal(message),
        }
    }
}
