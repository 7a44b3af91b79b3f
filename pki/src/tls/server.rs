//! The listening side: TLS handshakes off the accept loop, and what tonic
//! learns of each connection's peer.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tracing::{debug, info};

use super::verify::{CurrentCert, CurrentClientVerifier};
use super::{Credentials, Security, alpn, provider};
use crate::PkiError;

/// A handshake that has not finished by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An accepted connection, TLS or (opted out) plain.
pub enum ServerStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// The peer of a connection, in every request's extensions (tonic asks for it
/// once per connection and clones it into each request).
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub remote_addr: Option<SocketAddr>,
    /// The client's certificate chain, leaf first; `None` without one.
    pub certs: Option<Arc<Vec<CertificateDer<'static>>>>,
    /// What the leaf says, parsed once per connection.
    pub cert: Option<Arc<crate::CertInfo>>,
}

impl Connected for ServerStream {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        match self {
            ServerStream::Plain(tcp) => PeerInfo {
                remote_addr: tcp.peer_addr().ok(),
                certs: None,
                cert: None,
            },
            ServerStream::Tls(tls) => {
                let (tcp, session) = tls.get_ref();
                let certs = session.peer_certificates().map(|c| Arc::new(c.to_vec()));
                let cert = certs
                    .as_ref()
                    .and_then(|c| c.first())
                    .and_then(|leaf| crate::CertInfo::from_der(leaf).ok())
                    .map(Arc::new);
                PeerInfo {
                    remote_addr: tcp.peer_addr().ok(),
                    certs,
                    cert,
                }
            }
        }
    }
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The server config of `creds`: TLS 1.3, h2, client certificates checked
/// against the current roots — required, or optional when the port also
/// serves the bootstrap RPCs (every other RPC then refuses callers without).
pub fn server_config(
    creds: &Arc<Credentials>,
    client_cert_optional: bool,
) -> Result<Arc<ServerConfig>, PkiError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(CurrentClientVerifier {
            creds: creds.clone(),
            optional: client_cert_optional,
        }))
        .with_cert_resolver(Arc::new(CurrentCert(creds.clone())));
    config.alpn_protocols = alpn();
    Ok(Arc::new(config))
}

/// The connections of `listener` for tonic's `serve_with_incoming*`: each
/// handshake runs in its own task, so a slow or hostile client delays no one.
pub fn incoming(
    listener: TcpListener,
    security: &Security,
    client_cert_optional: bool,
) -> Result<ReceiverStream<std::io::Result<ServerStream>>, PkiError> {
    Ok(incoming_shared(Arc::new(listener), security, client_cert_optional)?.stream)
}

/// Connections of a listener that outlives them, and the task that accepts
/// (abort it, and the listener is the caller's alone again).
pub struct SharedIncoming {
    pub stream: ReceiverStream<std::io::Result<ServerStream>>,
    pub accept: tokio::task::JoinHandle<()>,
}

/// As [`incoming`], for a listener the caller gets back after serving.
pub fn incoming_shared(
    listener: Arc<TcpListener>,
    security: &Security,
    client_cert_optional: bool,
) -> Result<SharedIncoming, PkiError> {
    let acceptor = match security {
        Security::Tls(creds) => Some(tokio_rustls::TlsAcceptor::from(server_config(
            creds,
            client_cert_optional,
        )?)),
        Security::Plaintext => None,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let accept = tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors and the like: wait, go on.
                        debug!(%err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = tx.closed() => return,
            };
            // Small answers must not wait for the client's delayed ACK.
            let _ = tcp.set_nodelay(true);
            let Some(acceptor) = acceptor.clone() else {
                if tx.send(Ok(ServerStream::Plain(tcp))).await.is_err() {
                    return;
                }
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let plain_text = starts_plain_http2(&tcp).await;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(ServerStream::Tls(Box::new(tls)))).await;
                    }
                    Ok(Err(_)) if plain_text => info!(
                        %peer,
                        "refused a plain-text gRPC client: berth speaks TLS only \
                         (the client needs its cluster's certificates)"
                    ),
                    Ok(Err(err)) => info!(%peer, %err, "refused a TLS connection"),
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    Ok(SharedIncoming {
        stream: ReceiverStream::new(rx),
        accept,
    })
}

/// Whether the client opened with the plain HTTP/2 preface instead of a TLS
/// hello (to say so in the log).
async fn starts_plain_http2(tcp: &TcpStream) -> bool {
    let mut head = [0u8; 4];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), tcp.peek(&mut head)).await,
        Ok(Ok(4)) if &head == b"PRI "
    )
}

/// Splits accepted connections by the role of their client certificate:
/// the first stream gets those of `role`, the second all others (and every
/// connection without a certificate). A server can then serve, say, its
/// fellow controllers on a runtime of their own.
pub fn split_by_role(
    mut incoming: ReceiverStream<std::io::Result<ServerStream>>,
    role: crate::Role,
) -> (
    ReceiverStream<std::io::Result<ServerStream>>,
    ReceiverStream<std::io::Result<ServerStream>>,
) {
    use tokio_stream::StreamExt;
    let (of_role, of_role_rx) = tokio::sync::mpsc::channel(64);
    let (others, others_rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(conn) = incoming.next().await {
            let is_role = match &conn {
                Ok(stream) => stream
                    .connect_info()
                    .certs
                    .and_then(|certs| {
                        certs
                            .first()
                            .and_then(|c| crate::CertInfo::from_der(c).ok())
                    })
                    .is_some_and(|info| info.identity.role == role),
                Err(_) => false,
            };
            let target = if is_role { &of_role } else { &others };
            if target.send(conn).await.is_err() {
                return;
            }
        }
    });
    (
        ReceiverStream::new(of_role_rx),
        ReceiverStream::new(others_rx),
    )
}
