//! The connecting side: channels whose TLS identity follows [`Credentials`],
//! and the two connections a joiner makes before it has any.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::verify::{AnyServer, CurrentCert, CurrentServerVerifier};
use super::{Credentials, Security, alpn, provider};
use crate::{PkiError, Role};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(super) fn client_config(creds: &Arc<Credentials>) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(CurrentServerVerifier(creds.clone())))
        .with_client_cert_resolver(Arc::new(CurrentCert(creds.clone())));
    config.alpn_protocols = alpn();
    Arc::new(config)
}

/// Dials TCP and speaks TLS as `config` says, checking the server's
/// certificate names `server_name` (a role, never an address).
#[derive(Clone)]
struct TlsConnector {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl tower::Service<Uri> for TlsConnector {
    type Response = TokioIo<Prefixed<tokio_rustls::client::TlsStream<TcpStream>>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let server_name = self.server_name.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| format!("no host in {uri}"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().ok_or_else(|| format!("no port in {uri}"))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server_name, tcp).await?;
            Ok(TokioIo::new(first_answer(tls).await?))
        })
    }
}

/// In TLS 1.3 a client finishes its handshake before the server has checked
/// its certificate; a refusal arrives as an alert on the first read, which
/// HTTP/2 would report only as a closed connection. So read the server's
/// first bytes (its HTTP/2 settings, sent at once) here: a refusal becomes this
/// connection's error, with the alert that says why.
async fn first_answer<S>(mut stream: S) -> std::io::Result<Prefixed<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(FIRST_ANSWER, stream.read(&mut buf)).await {
        Ok(Ok(0)) => Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "the server closed the connection right after the TLS handshake",
        )),
        Ok(Ok(n)) => {
            buf.truncate(n);
            Ok(Prefixed::new(buf, stream))
        }
        Ok(Err(err)) => Err(err),
        // A server that says nothing first: let HTTP/2 go on.
        Err(_) => Ok(Prefixed::new(Vec::new(), stream)),
    }
}

/// How long a connection waits for the server's first bytes.
const FIRST_ANSWER: std::time::Duration = std::time::Duration::from_secs(5);

/// A stream whose first bytes were already read: they are read again first.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    offset: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed {
            prefix,
            offset: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.offset < this.prefix.len() {
            let rest = &this.prefix[this.offset..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.offset += n;
            if this.offset == this.prefix.len() {
                this.prefix = Vec::new();
                this.offset = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

fn connector(config: Arc<ClientConfig>, server: Role) -> TlsConnector {
    TlsConnector {
        config,
        server_name: ServerName::try_from(server.server_name())
            .expect("role names are valid DNS names"),
    }
}

/// A connected channel to a server of role `server`. The endpoint's URI is
/// `http://ADDRESS`: TLS is the connector's business, not the URI's.
pub async fn connect(
    endpoint: Endpoint,
    security: &Security,
    server: Role,
) -> Result<Channel, tonic::transport::Error> {
    match security {
        Security::Plaintext => endpoint.connect().await,
        Security::Tls(creds) => {
            endpoint
                .connect_with_connector(connector(client_config(creds), server))
                .await
        }
    }
}

/// A channel that connects on first use (and reconnects after failures).
pub fn connect_lazy(endpoint: Endpoint, security: &Security, server: Role) -> Channel {
    match security {
        Security::Plaintext => endpoint.connect_lazy(),
        Security::Tls(creds) => {
            endpoint.connect_with_connector_lazy(connector(client_config(creds), server))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("cannot reach {address}: {detail}")]
    Connect { address: String, detail: String },
    #[error("{address} did not give its CA: {detail}")]
    NoCa { address: String, detail: String },
    #[error(
        "the CA at {address} does not match the join token (token pins {expected}, the \
         cluster's CA is {found}): the token is for another cluster, or someone is in between"
    )]
    WrongCa {
        address: String,
        expected: String,
        found: String,
    },
    #[error(transparent)]
    Pki(#[from] PkiError),
}

fn endpoint_of(address: &str) -> Result<Endpoint, BootstrapError> {
    Endpoint::from_shared(format!("http://{address}"))
        .map(|e| e.connect_timeout(std::time::Duration::from_secs(5)))
        .map_err(|e| BootstrapError::Connect {
            address: address.to_string(),
            detail: format!("bad address: {e}"),
        })
}

fn connect_error(address: &str) -> impl Fn(tonic::transport::Error) -> BootstrapError + '_ {
    move |err| BootstrapError::Connect {
        address: address.to_string(),
        detail: crate::explain::error_chain(&err),
    }
}

/// Fetches the cluster's CA bundle without trusting anyone, and accepts it
/// only when it hashes to `expected_digest` (from the join token).
pub async fn fetch_root_ca(address: &str, expected_digest: &str) -> Result<String, BootstrapError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(PkiError::from)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider())))
        .with_no_client_auth();
    config.alpn_protocols = alpn();
    let channel = endpoint_of(address)?
        .connect_with_connector(connector(Arc::new(config), Role::Controller))
        .await
        .map_err(connect_error(address))?;
    let mut client = berth_proto::v1::certificates_client::CertificatesClient::new(channel);
    let ca_pem = client
        .get_root_ca(berth_proto::v1::GetRootCaRequest {})
        .await
        .map_err(|status| BootstrapError::NoCa {
            address: address.to_string(),
            detail: status.message().to_string(),
        })?
        .into_inner()
        .ca_pem;
    let found = crate::bundle::ca_digest(&ca_pem);
    if found != expected_digest {
        return Err(BootstrapError::WrongCa {
            address: address.to_string(),
            expected: expected_digest.to_string(),
            found,
        });
    }
    Ok(ca_pem)
}

/// A channel to a controller that trusts only `ca_pem` and shows no
/// certificate: what a joiner sends its token over.
pub async fn pinned_channel(address: &str, ca_pem: &str) -> Result<Channel, BootstrapError> {
    let roots = super::credentials::root_store(ca_pem)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(PkiError::from)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn();
    endpoint_of(address)?
        .connect_with_connector(connector(Arc::new(config), Role::Controller))
        .await
        .map_err(connect_error(address))
}
