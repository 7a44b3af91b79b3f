//! The agent's TLS identity: loaded from its data dir, obtained with a join
//! token when it has none or its certificate expired while it was off (it
//! keeps its node id by proving it holds its old key), and renewed at 50–80 %
//! of each certificate's lifetime.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_pki::enroll::{self, Enrolled};
use berth_pki::renewal::random_renew_at;
use berth_pki::{Bundle, Credentials, JoinToken, PkiError, Role, Security};
use tonic::transport::Endpoint;
use tracing::{info, warn};

/// Where the agent keeps its certificate, key and trusted roots.
pub fn tls_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tls")
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "this agent has no certificate yet: start it with --token TOKEN \
         (`berth cluster join-token agent` prints one)"
    )]
    NoToken,
    #[error(
        "this agent's certificate {why}: start it with --token TOKEN to rejoin \
         (it keeps its node id and its containers)"
    )]
    Unusable { why: String },
    #[error("--token: {0}")]
    BadToken(String),
    #[error("cannot load the agent's credentials: {0}")]
    Pki(#[from] PkiError),
    #[error("cannot join: {0}")]
    Join(String),
    #[error(
        "the token joins as {0}; an agent needs the agent token (`berth cluster join-token agent`)"
    )]
    WrongRole(Role),
}

/// The credentials to run with: the stored ones while valid, else a join.
pub async fn obtain(
    data_dir: &Path,
    controllers: &[String],
    token: Option<&str>,
    node_id: &str,
) -> Result<Arc<Credentials>, CredentialError> {
    let dir = tls_dir(data_dir);
    let stored = if Bundle::exists(&dir) {
        Some(Bundle::load(&dir)?)
    } else {
        None
    };
    let unusable = match &stored {
        Some(bundle) => match bundle.info()?.invalid_at(berth_pki::now_ms()) {
            None => return Ok(Credentials::new(bundle.clone())?),
            Some(why) => Some(why),
        },
        None => None,
    };
    let Some(token) = token else {
        return Err(match unusable {
            Some(why) => CredentialError::Unusable { why },
            None => CredentialError::NoToken,
        });
    };
    if let Some(why) = &unusable {
        warn!(%why, "this agent's certificate is unusable; rejoining with the token");
    }
    let token = JoinToken::parse(token).map_err(|e| CredentialError::BadToken(e.to_string()))?;
    // The old key proves this is the node it was.
    let key = stored.map(|b| b.key_pem);
    let mut last = String::new();
    for address in controllers {
        match enroll::join(address, &token, key.clone(), node_id).await {
            Ok(Enrolled {
                bundle,
                node_id,
                role,
                ..
            }) => {
                if role != Role::Agent {
                    return Err(CredentialError::WrongRole(role));
                }
                bundle.save(&dir)?;
                info!(node = %node_id, controller = %address, "joined the cluster");
                return Ok(Credentials::new(bundle)?);
            }
            Err(err) => {
                warn!(controller = %address, %err, "join failed");
                last = err.to_string();
            }
        }
    }
    Err(CredentialError::Join(last))
}

/// Renews the certificate at its renewal point, or when `now` is notified
/// (the cluster's CA changed), through any controller; retries every 30 s
/// (every second after a CA change) until one answers.
pub async fn renew_forever(
    creds: Arc<Credentials>,
    controllers: Vec<String>,
    dir: PathBuf,
    now: Arc<tokio::sync::Notify>,
) {
    let security = Security::Tls(creds.clone());
    loop {
        let info = creds.info();
        let at = random_renew_at(info.not_before_ms, info.not_after_ms);
        let wait = (at - berth_pki::now_ms()).max(0) as u64;
        let urgent = tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => false,
            _ = now.notified() => true,
        };
        let mut renewed = false;
        for address in &controllers {
            match renew_once(&security, address).await {
                Ok(bundle) => match bundle.save(&dir).and_then(|()| creds.replace(bundle)) {
                    Ok(()) => {
                        info!(
                            controller = %address,
                            expires = %berth_pki::identity::format_ms(creds.info().not_after_ms),
                            "renewed this agent's certificate"
                        );
                        renewed = true;
                        break;
                    }
                    Err(err) => warn!(%err, "cannot keep the renewed certificate"),
                },
                Err(err) => warn!(controller = %address, %err, "certificate renewal failed"),
            }
        }
        if !renewed {
            let retry = if urgent { 1 } else { 30 };
            tokio::time::sleep(Duration::from_secs(retry)).await;
        }
    }
}

async fn renew_once(security: &Security, address: &str) -> Result<Bundle, String> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(3));
    let channel = berth_pki::tls::connect(endpoint, security, Role::Controller)
        .await
        .map_err(|e| berth_pki::explain::error_chain(&e))?;
    enroll::renew(channel, address)
        .await
        .map(|e| e.bundle)
        .map_err(|e| e.to_string())
}
