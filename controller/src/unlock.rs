//! A controller whose secrets key is autolocked waits here, before it joins
//! its Raft group: it serves only `Lock.UnlockController` on its listening
//! address until `berth cluster unlock` gives the unlock key, then hands the
//! opened key and the listener back to `server::run`. An unlocked controller
//! keeps serving `Lock`, answering that it is not locked.

use std::path::Path;
use std::sync::{Arc, Mutex};

use berth_pki::{Role, Security};
use berth_proto::v1::lock_server::{Lock, LockServer};
use berth_proto::v1::{UnlockControllerRequest, UnlockControllerResponse};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::ca::Gate;
use crate::keyring::{KeyFile, Keyring, KeyringError, LockedKey};

#[derive(Debug, thiserror::Error)]
pub enum UnlockError {
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error("serving the unlock API failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("the listener is still in use after the unlock API stopped")]
    Listener,
    #[error("stopped while waiting to be unlocked")]
    Stopped,
    #[error("TLS for the unlock API: {0}")]
    Tls(#[from] berth_pki::PkiError),
}

/// Makes the cluster's key at `--init`; with `autolock`, locked by an unlock
/// key that is printed once, on stdout, and kept nowhere.
pub fn create_key(data_dir: &Path, autolock: bool) -> Result<Keyring, KeyringError> {
    if !autolock {
        return Keyring::create(data_dir);
    }
    let (keys, unlock) = Keyring::create_locked(data_dir)?;
    println!(
        "Secrets are autolocked. A restarted controller waits for this key \
         (`berth --controller ADDR cluster unlock`); keep it somewhere safe, it is shown only now:\n\n    {}\n",
        unlock.text()
    );
    Ok(keys)
}

/// The key of `data_dir` (`created`: the one init just made), after waiting
/// for its unlock key if it is locked; the listener comes back unchanged.
pub async fn load_or_wait(
    data_dir: &Path,
    created: Option<Keyring>,
    listener: TcpListener,
    security: &Security,
    gate: &Gate,
) -> Result<(Keyring, TcpListener), UnlockError> {
    if let Some(keys) = created {
        return Ok((keys, listener));
    }
    let locked = match Keyring::load(data_dir)? {
        KeyFile::Open(keys) => return Ok((keys, listener)),
        KeyFile::Locked(locked) => locked,
    };
    warn!(
        "this controller's secrets key is locked (--autolock): run `berth --controller {} cluster unlock`",
        listener
            .local_addr()
            .map_or_else(|_| "ADDR".to_string(), |a| a.to_string())
    );
    let (opened_tx, opened_rx) = oneshot::channel();
    let waiting = Waiting {
        locked,
        opened: Mutex::new(Some(opened_tx)),
    };
    // The listener outlives this server (it is handed back): accept here,
    // hand the connections (after TLS) to the server through a channel.
    let listener = Arc::new(listener);
    let incoming = berth_pki::tls::incoming_shared(listener.clone(), security, true)?;
    let (stop_tx, stop_rx) = oneshot::channel::<Keyring>();
    // Only an admin may unlock, as on a running controller.
    let server = tonic::transport::Server::builder()
        .add_service(InterceptedService::new(
            LockServer::new(waiting),
            gate.only(&[Role::Admin]),
        ))
        .serve_with_incoming_shutdown(incoming.stream, async move {
            if let Ok(keys) = opened_rx.await {
                let _ = stop_tx.send(keys);
            }
        });
    server.await?;
    incoming.accept.abort();
    let _ = incoming.accept.await;
    let keys = stop_rx.await.map_err(|_| UnlockError::Stopped)?;
    let listener = Arc::try_unwrap(listener).map_err(|_| UnlockError::Listener)?;
    info!("unlocked: the controller starts");
    Ok((keys, listener))
}

struct Waiting {
    locked: LockedKey,
    opened: Mutex<Option<oneshot::Sender<Keyring>>>,
}

#[tonic::async_trait]
impl Lock for Waiting {
    async fn unlock_controller(
        &self,
        request: Request<UnlockControllerRequest>,
    ) -> Result<Response<UnlockControllerResponse>, Status> {
        let keys = self
            .locked
            .unlock(&request.into_inner().unlock_key)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let sender = self.opened.lock().unwrap_or_else(|p| p.into_inner()).take();
        match sender {
            Some(tx) => {
                let _ = tx.send(keys);
                Ok(Response::new(UnlockControllerResponse {}))
            }
            None => Err(Status::failed_precondition("this controller is not locked")),
        }
    }
}

/// `Lock` on a controller that runs: it is not locked.
pub struct Unlocked;

#[tonic::async_trait]
impl Lock for Unlocked {
    async fn unlock_controller(
        &self,
        _: Request<UnlockControllerRequest>,
    ) -> Result<Response<UnlockControllerResponse>, Status> {
        Err(Status::failed_precondition("this controller is not locked"))
    }
}

/// The `Lock` service of a running controller.
pub fn unlocked_service() -> LockServer<Unlocked> {
    LockServer::new(Unlocked)
}
