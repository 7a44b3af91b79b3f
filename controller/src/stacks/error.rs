//! Why a stack deploy or removal is refused. A refused deploy writes nothing.

use crate::allocator::new_network::NetworkError;
use crate::keyring::KeyringError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The spec itself is wrong (a name, a label, a reference).
    #[error("stack {stack}: {what}")]
    Invalid { stack: String, what: String },
    /// An object of the file's name exists and is not this stack's: a deploy
    /// never takes over someone else's object.
    #[error(
        "stack {stack}: {kind} {name} already exists and {owner}, not to stack {stack}; \
         rename it in the file or remove the existing one"
    )]
    Foreign {
        stack: String,
        kind: &'static str,
        name: String,
        /// "belongs to stack other" or "belongs to no stack".
        owner: String,
    },
    #[error(
        "stack {stack}: external {kind} {name} does not exist (create it first, or drop \
         `external` to let the stack make it)"
    )]
    MissingExternal {
        stack: String,
        kind: &'static str,
        name: String,
    },
    #[error(
        "stack {stack}: network {name}: networks cannot change in place (subnet {from} to \
         {to}); give it another name, or remove the stack and deploy it again"
    )]
    NetworkChange {
        stack: String,
        name: String,
        from: String,
        to: String,
    },
    /// A removal would leave a service that stays without its object.
    #[error("stack {stack}: {kind} {name} cannot be removed: service {users} still uses it")]
    InUse {
        stack: String,
        kind: &'static str,
        name: String,
        users: String,
    },
    #[error("stack {0} not found")]
    NotFound(String),
    #[error("stack {stack}: network {name}: {source}")]
    Network {
        stack: String,
        name: String,
        source: NetworkError,
    },
    #[error("stack {stack}: {source}")]
    Keyring { stack: String, source: KeyringError },
    #[error(transparent)]
    Store(#[from] StoreError),
}
