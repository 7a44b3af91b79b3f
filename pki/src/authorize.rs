//! Who called: the identity in the verified client certificate of a request.

use crate::CertInfo;
use crate::tls::PeerInfo;

/// The caller's certificate, as verified against the CA during the TLS
/// handshake, parsed; `None` when it showed none (or the port is plain text).
pub fn peer_certificate<T>(request: &tonic::Request<T>) -> Option<CertInfo> {
    let peer = request.extensions().get::<PeerInfo>()?;
    peer.cert.as_deref().cloned()
}
