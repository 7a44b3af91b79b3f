//! A tag resolved to the digest of what it names now (Swarm's
//! `--resolve-image`): one manifest HEAD (a GET where the registry gives no
//! digest header), under one short deadline, and a failure that says why in
//! words a user can act on.

use std::time::Duration;

use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::{Reference, RegistryOperation};

use crate::auth::{self, AuthError, RegistryCredentials};
use crate::client::{ClientSettings, client, describe};
use crate::digest::Digest;
use crate::reference::{self, ReferenceError};

/// How to resolve.
#[derive(Clone, Debug)]
pub struct ResolveOptions {
    /// Registries reached over plain HTTP (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
    /// The whole lookup's limit: connect, authenticate, ask.
    pub timeout: Duration,
    /// The service's registry credentials, if it has any.
    pub credentials: Option<RegistryCredentials>,
}

/// Why a tag could not be resolved. Every message names the registry and
/// says what went wrong in a way that fits after "not pinned to a digest: ".
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Credentials(#[from] AuthError),
    #[error("registry {registry} is unreachable ({reason})")]
    Unreachable { registry: String, reason: String },
    #[error(
        "registry {registry} does not answer over HTTPS ({reason}); if it serves plain HTTP, \
         start the controllers with --insecure-registry {registry}"
    )]
    NotHttps { registry: String, reason: String },
    #[error("registry {registry}: TLS failed ({reason})")]
    Tls { registry: String, reason: String },
    #[error("registry {registry} needs credentials ({reason})")]
    NeedsCredentials { registry: String, reason: String },
    #[error("registry {registry} refused the credentials of {whose} ({reason})")]
    Refused {
        registry: String,
        whose: String,
        reason: String,
    },
    #[error("registry {registry} has no image {reference} ({reason})")]
    NotFound {
        registry: String,
        reference: String,
        reason: String,
    },
    #[error("registry {registry} did not give the digest of {reference}: {reason}")]
    Failed {
        registry: String,
        reference: String,
        reason: String,
    },
}

/// The digest `image` names now: the one written in it (no lookup), or the
/// one its registry gives for its tag (the image index's, for a
/// multi-platform image: each agent then picks its own platform).
pub async fn resolve_digest(image: &str, opts: &ResolveOptions) -> Result<Digest, ResolveError> {
    if let Some(digest) = reference::digest_of(image)? {
        return Ok(digest);
    }
    let parsed = reference::parse(image)?;
    let registry = parsed.registry().to_string();
    let whole = parsed.whole();
    let lookup = ask(&parsed, opts);
    let found = match tokio::time::timeout(opts.timeout, lookup).await {
        Ok(found) => found,
        Err(_) => {
            return Err(ResolveError::Unreachable {
                registry,
                reason: format!("no answer within {}", duration_text(opts.timeout)),
            });
        }
    };
    let digest = found.map_err(|e| classify(&registry, &whole, opts, e))?;
    Digest::parse(&digest).map_err(|e| ResolveError::Failed {
        registry,
        reference: whole,
        reason: e.to_string(),
    })
}

async fn ask(reference: &Reference, opts: &ResolveOptions) -> Result<String, Lookup> {
    let settings = ClientSettings {
        insecure_registries: opts.insecure_registries.clone(),
        connect_timeout: opts.timeout,
        read_timeout: opts.timeout,
        max_concurrent_download: 1,
    };
    let client = client(&settings).map_err(Lookup::Registry)?;
    let auth = auth::credentials(opts.credentials.as_ref(), None, reference.registry())
        .map_err(Lookup::Credentials)?;
    client
        .auth(reference, &auth, RegistryOperation::Pull)
        .await
        .map_err(Lookup::Registry)?;
    client
        .fetch_manifest_digest(reference, &auth)
        .await
        .map_err(Lookup::Registry)
}

enum Lookup {
    Credentials(AuthError),
    Registry(OciDistributionError),
}

fn duration_text(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// What went wrong, from the error's kind, status and causes.
fn classify(registry: &str, reference: &str, opts: &ResolveOptions, e: Lookup) -> ResolveError {
    let registry = registry.to_string();
    let e = match e {
        Lookup::Credentials(e) => return ResolveError::Credentials(e),
        Lookup::Registry(e) => e,
    };
    let unauthorized = |reason: String| match &opts.credentials {
        Some(creds) => ResolveError::Refused {
            registry: registry.clone(),
            whose: creds.what().to_string(),
            reason,
        },
        None => ResolveError::NeedsCredentials {
            registry: registry.clone(),
            reason,
        },
    };
    let not_found = |reason: String| ResolveError::NotFound {
        registry: registry.clone(),
        reference: reference.to_string(),
        reason,
    };
    match &e {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => return unauthorized(e.to_string()),
        OciDistributionError::ServerError {
            code: 401 | 403, ..
        } => {
            return unauthorized(e.to_string());
        }
        OciDistributionError::ServerError { code: 404, .. }
        | OciDistributionError::ImageManifestNotFoundError(_) => return not_found(e.to_string()),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let reason = envelope
                .errors
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; ");
            if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                return unauthorized(reason);
            }
            if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                return not_found(reason);
            }
        }
        OciDistributionError::RequestError(request) => {
            let cause = innermost(request);
            match rustls_cause(request) {
                Some(rustls::Error::InvalidMessage(_)) => {
                    return ResolveError::NotHttps {
                        registry,
                        reason: cause,
                    };
                }
                Some(_) => {
                    return ResolveError::Tls {
                        registry,
                        reason: cause,
                    };
                }
                None => {}
            }
            if request.is_timeout() {
                return ResolveError::Unreachable {
                    registry,
                    reason: format!("no answer within {}", duration_text(opts.timeout)),
                };
            }
            if request.is_connect() {
                return ResolveError::Unreachable {
                    registry,
                    reason: cause,
                };
            }
        }
        _ => {}
    }
    ResolveError::Failed {
        registry,
        reference: reference.to_string(),
        reason: describe(&e),
    }
}

/// The last cause in `e`'s chain (say, "Connection refused (os error 111)").
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// The TLS error behind `e`, if there is one. (An `io::Error`'s `source`
/// skips the error it wraps, and reqwest wraps io errors in io errors, so
/// each `io::Error` is looked into.)
fn rustls_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(timeout_ms: u64) -> ResolveOptions {
        ResolveOptions {
            insecure_registries: Vec::new(),
            timeout: Duration::from_millis(timeout_ms),
            credentials: None,
        }
    }

    #[tokio::test]
    async fn a_written_digest_needs_no_registry() {
        let d = Digest::of(b"m");
        // Nothing listens on port 1: a lookup would fail.
        let image = format!("127.0.0.1:1/web:1@{d}");
        assert_eq!(resolve_digest(&image, &opts(100)).await.unwrap(), d);
        let err = resolve_digest("127.0.0.1:1/web@sha256:abc", &opts(100))
            .await
            .unwrap_err();
        assert!(matches!(err, ResolveError::Reference(_)), "{err}");
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_and_says_so() {
        // Bound but not listening: connections are refused at once.
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        drop(socket);
        for insecure in [false, true] {
            let mut o = opts(3000);
            if insecure {
                o.insecure_registries = vec![format!("127.0.0.1:{port}")];
            }
            let err = resolve_digest(&format!("127.0.0.1:{port}/web:1"), &o)
                .await
                .unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(err, ResolveError::Unreachable { .. })
                    && text.starts_with(&format!("registry 127.0.0.1:{port} is unreachable (")),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn a_silent_registry_is_unreachable_after_the_timeout() {
        // Accepts connections (the kernel does) and never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let started = std::time::Instant::now();
        let mut o = opts(300);
        o.insecure_registries = vec![addr.to_string()];
        let err = resolve_digest(&format!("{addr}/web:1"), &o)
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(
            err.to_string(),
            format!("registry {addr} is unreachable (no answer within 300ms)")
        );
        drop(listener);
    }

    #[tokio::test]
    async fn plain_http_asked_over_https_says_to_name_it_insecure() {
        // A plain HTTP server that answers anything with a 400, as Go's does
        // to a TLS hello.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                let _ = conn
                    .write_all(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    .await;
            }
        });
        let err = resolve_digest(&format!("{addr}/web:1"), &opts(3000))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, ResolveError::NotHttps { .. })
                && text.contains(&format!("--insecure-registry {addr}")),
            "{text}"
        );
        server.abort();
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_text(Duration::from_secs(3)), "3s");
        assert_eq!(duration_text(Duration::from_millis(2500)), "2500ms");
    }
}
