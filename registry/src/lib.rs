//! What berth's agent and controller both need of OCI registries: image
//! references and their pinned form, sha256 digests, credentials in Docker's
//! `config.json` format, one way to make a registry client (ring for TLS,
//! plain HTTP only for registries named insecure), and resolving a tag to
//! the digest it names now (the controller pins specs with it; the agent
//! pulls what they pin).

pub mod auth;
pub mod client;
pub mod digest;
pub mod reference;
pub mod resolve;

pub use auth::{AuthError, BasicCredentials, DockerConfig, RegistryCredentials};
pub use client::{ClientSettings, describe};
pub use digest::{Digest, DigestError};
pub use reference::{ReferenceError, pinned, registry_of};
pub use resolve::{ResolveError, ResolveOptions, resolve_digest};
