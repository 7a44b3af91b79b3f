//! A service's image pinned to the digest its tag names when the spec is
//! written (Swarm's `--resolve-image`): `spec.image` stays as the user wrote
//! it, `spec.image_digest` says what the tasks run, so pushing a new image
//! under the same tag and updating rolls it out. The registry is asked
//! before anything is committed (the lookup may take up to its deadline),
//! and a failed lookup never stops the write: the tag stays unpinned (or, on
//! an update of the same image, keeps its digest) and a warning says why.

use std::time::Duration;

use berth_proto::store::object::Kind;
use berth_proto::v1::ServiceSpec;
use berth_registry::{Digest, RegistryCredentials, ResolveError, ResolveOptions, reference};
use tonic::Status;
use tracing::{info, warn};

use crate::keyring::Keyring;
use crate::raft::RaftHandle;
use crate::store::Table;

/// How a controller reaches registries to pin images.
#[derive(Clone, Debug)]
pub struct PinSettings {
    /// Registries (`HOST[:PORT]`) asked over plain HTTP (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
    /// A lookup's whole deadline: a create or update waits at most this long
    /// for an unreachable registry.
    pub timeout: Duration,
}

impl Default for PinSettings {
    fn default() -> Self {
        PinSettings {
            insecure_registries: Vec::new(),
            timeout: Duration::from_secs(3),
        }
    }
}

/// What the registry said about a spec's image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Not asked (`--no-resolve-image`).
    Skipped,
    Found(Digest),
    /// Why the tag is not pinned, for the warning.
    Failed(String),
    /// The registry answered that it has no such image (`berth run` refuses
    /// it; a service is written with a warning, as for `Failed`).
    Missing(String),
}

/// Pins images: the settings and the cluster's key (a service's registry
/// credentials are a sealed secret).
#[derive(Clone)]
pub struct Pinner {
    settings: PinSettings,
    keys: Keyring,
}

impl Pinner {
    pub fn new(settings: PinSettings, keys: Keyring) -> Pinner {
        Pinner { settings, keys }
    }

    /// The digest `spec.image` names now: written in the reference (no
    /// lookup), or asked of its registry with the service's registry
    /// credentials, if it has any (`spec.registry_auth` resolved to an id).
    /// Only an invalid reference is an error.
    pub async fn look_up(
        &self,
        raft: &RaftHandle,
        spec: &ServiceSpec,
        skip: bool,
    ) -> Result<Lookup, Status> {
        if skip {
            return Ok(Lookup::Skipped);
        }
        let invalid = |e: &dyn std::fmt::Display| {
            Status::invalid_argument(format!("service {}: {e}", spec.name))
        };
        if let Some(digest) = reference::digest_of(&spec.image).map_err(|e| invalid(&e))? {
            return Ok(Lookup::Found(digest));
        }
        let credentials = match self.credentials(raft, spec) {
            Ok(credentials) => credentials,
            Err(why) => return Ok(Lookup::Failed(why)),
        };
        let opts = ResolveOptions {
            insecure_registries: self.settings.insecure_registries.clone(),
            timeout: self.settings.timeout,
            credentials,
        };
        match berth_registry::resolve_digest(&spec.image, &opts).await {
            Ok(digest) => {
                info!(service = %spec.name, image = %spec.image, %digest, "image pinned");
                Ok(Lookup::Found(digest))
            }
            Err(ResolveError::Reference(e)) => Err(invalid(&e)),
            Err(e @ ResolveError::NotFound { .. }) => {
                warn!(service = %spec.name, image = %spec.image, error = %e, "no such image");
                Ok(Lookup::Missing(e.to_string()))
            }
            Err(e) => {
                warn!(service = %spec.name, image = %spec.image, error = %e, "image not pinned");
                Ok(Lookup::Failed(e.to_string()))
            }
        }
    }

    /// The service's registry credentials, opened; `Err` says why they
    /// cannot be used.
    fn credentials(
        &self,
        raft: &RaftHandle,
        spec: &ServiceSpec,
    ) -> Result<Option<RegistryCredentials>, String> {
        let Some(r) = spec
            .registry_auth
            .as_ref()
            .filter(|r| !r.secret_id.is_empty())
        else {
            return Ok(None);
        };
        let what = format!("registry credentials secret {}", r.secret_name);
        let secret = match raft.state().get(Table::Secret, &r.secret_id) {
            Ok(Some(object)) => match object.kind {
                Some(Kind::Secret(s)) => s,
                _ => return Err(format!("the {what} is not a secret")),
            },
            Ok(None) => return Err(format!("the {what} does not exist")),
            Err(e) => return Err(format!("the {what} cannot be read: {e}")),
        };
        let value = self
            .keys
            .open(&secret.id, &secret.data)
            .map_err(|e| format!("the {what} cannot be opened: {e}"))?;
        Ok(Some(RegistryCredentials::new(what, value.0)))
    }
}

/// Sets `spec.image_digest` from `lookup` (whatever the caller sent: the
/// digest is the controller's to write) and returns the warnings. On an
/// update (`previous`) of the same image whose lookup failed, the previous
/// digest stays: the tasks keep running what they run.
pub fn apply(
    lookup: Lookup,
    spec: &mut ServiceSpec,
    previous: Option<&ServiceSpec>,
) -> Vec<String> {
    match lookup {
        Lookup::Skipped => {
            spec.image_digest.clear();
            Vec::new()
        }
        Lookup::Found(digest) => {
            spec.image_digest = digest.to_string();
            Vec::new()
        }
        Lookup::Failed(why) | Lookup::Missing(why) => {
            let kept = previous
                .filter(|p| p.image == spec.image && !p.image_digest.is_empty())
                .map(|p| p.image_digest.clone());
            match kept {
                Some(old) => {
                    let warning = format!(
                        "image {} is not pinned to a new digest: {why}; it stays pinned to {old}",
                        spec.image
                    );
                    spec.image_digest = old;
                    vec![warning]
                }
                None => {
                    spec.image_digest.clear();
                    vec![format!(
                        "image {} is not pinned to a digest: {why}; the nodes resolve the tag \
                         when they pull",
                        spec.image
                    )]
                }
            }
        }
    }
}

/// A pinner with the default settings (tests: their requests set
/// `no_resolve_image` unless a test registry runs on loopback).
#[cfg(test)]
pub(crate) fn pinner(keys: &Keyring) -> Pinner {
    Pinner::new(PinSettings::default(), keys.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(image: &str, digest: &str) -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            image: image.into(),
            image_digest: digest.into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_digest_is_the_controllers_to_write() {
        let d = Digest::of(b"new");
        let stale = Digest::of(b"stale").to_string();
        let mut s = spec("r:5000/web:1", &stale);
        assert!(apply(Lookup::Found(d.clone()), &mut s, None).is_empty());
        assert_eq!(s.image_digest, d.to_string());
        let mut s = spec("r:5000/web:1", &stale);
        assert!(apply(Lookup::Skipped, &mut s, None).is_empty());
        assert_eq!(s.image_digest, "", "--no-resolve-image clears it");
    }

    #[test]
    fn a_failed_lookup_warns_and_keeps_the_old_digest_only_for_the_same_image() {
        let old = Digest::of(b"old").to_string();
        let why = "registry r:5000 is unreachable (connection refused)";
        let before = spec("r:5000/web:1", &old);

        let mut same = spec("r:5000/web:1", "");
        let warnings = apply(Lookup::Failed(why.into()), &mut same, Some(&before));
        assert_eq!(same.image_digest, old);
        assert_eq!(
            warnings,
            [format!(
                "image r:5000/web:1 is not pinned to a new digest: {why}; it stays pinned to {old}"
            )]
        );

        let mut other = spec("r:5000/web:2", &old);
        let warnings = apply(Lookup::Failed(why.into()), &mut other, Some(&before));
        assert_eq!(other.image_digest, "");
        assert_eq!(
            warnings,
            [format!(
                "image r:5000/web:2 is not pinned to a digest: {why}; the nodes resolve the tag \
                 when they pull"
            )]
        );

        let mut created = spec("r:5000/web:1", "");
        let warnings = apply(Lookup::Failed(why.into()), &mut created, None);
        assert_eq!(created.image_digest, "");
        assert!(
            warnings[0].starts_with(
                "image r:5000/web:1 is not pinned to a digest: registry r:5000 is unreachable ("
            ),
            "{warnings:?}"
        );
    }
}
