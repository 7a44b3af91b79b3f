//! The cluster's certificate authority as the controllers run it: the CA
//! record in the Raft state (`record`), who gets which certificate (`issue`),
//! who may call what (`gate`), and each controller renewing its own
//! certificate (`renewer`). The crypto lives in `berth-pki`; gRPC in
//! `api/certificates.rs`.

pub mod expiry;
pub mod gate;
pub mod issue;
pub mod record;
pub mod renewer;
pub mod rotation;

pub use gate::Gate;
pub use issue::IssueError;
