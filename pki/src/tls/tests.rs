//! Handshakes between real rustls ends over loopback TCP.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Credentials, client::client_config, server::server_config};
use crate::{Authority, Bundle, Identity, Role, Validity};

fn bundle(ca: &Authority, role: Role, validity: Validity) -> Bundle {
    ca.issue_bundle(
        &Identity {
            node_id: format!("{role}-1"),
            role,
            cluster_id: "c".into(),
        },
        validity,
    )
    .unwrap()
}

/// Runs one handshake (and one byte each way); returns the client's and the
/// server's outcome.
async fn handshake(
    server: Arc<Credentials>,
    client: Arc<Credentials>,
) -> (Result<(), String>, Result<(), String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(&server, false).unwrap());
    let served = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        tls.write_all(b"s").await.map_err(|e| e.to_string())?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    });
    let connector = tokio_rustls::TlsConnector::from(client_config(&client));
    let tcp = TcpStream::connect(address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("berth-controller").unwrap();
    let client_side = async {
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
        tls.write_all(b"c").await.map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    }
    .await;
    let server_side = tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .unwrap()
        .unwrap();
    (client_side, server_side)
}

#[tokio::test]
async fn a_valid_client_certificate_is_accepted() {
    let now = crate::now_ms();
    let ca = Authority::create("c", now).unwrap();
    let valid = Validity::starting_at(now, Duration::from_secs(600));
    let server = Credentials::new(bundle(&ca, Role::Controller, valid)).unwrap();
    let client = Credentials::new(bundle(&ca, Role::Admin, valid)).unwrap();
    let (c, s) = handshake(server, client).await;
    assert_eq!((c, s), (Ok(()), Ok(())));
}

#[tokio::test]
async fn expired_and_not_yet_valid_client_certificates_are_refused() {
    let now = crate::now_ms();
    let ca = Authority::create("c", now).unwrap();
    let server = Credentials::new(bundle(
        &ca,
        Role::Controller,
        Validity::starting_at(now, Duration::from_secs(600)),
    ))
    .unwrap();
    let expired = Validity {
        not_before_ms: now - 7_200_000,
        not_after_ms: now - 60_000,
    };
    let future = Validity {
        not_before_ms: now + 3_600_000,
        not_after_ms: now + 7_200_000,
    };
    for (validity, why) in [(expired, "expired"), (future, "not valid yet")] {
        let client = Credentials::new(bundle(&ca, Role::Admin, validity)).unwrap();
        let (c, s) = handshake(server.clone(), client).await;
        let s = s.unwrap_err();
        assert!(s.contains(why), "server said {s}");
        assert!(c.is_err(), "the client was served with {why}");
    }
}

#[tokio::test]
async fn a_certificate_renewed_in_place_is_used_by_the_next_handshake() {
    let now = crate::now_ms();
    let ca = Authority::create("c", now).unwrap();
    let valid = Validity::starting_at(now, Duration::from_secs(600));
    let server = Credentials::new(bundle(&ca, Role::Controller, valid)).unwrap();
    let expired = Validity {
        not_before_ms: now - 7_200_000,
        not_after_ms: now - 60_000,
    };
    let client = Credentials::new(bundle(&ca, Role::Admin, expired)).unwrap();
    assert!(handshake(server.clone(), client.clone()).await.1.is_err());
    client.replace(bundle(&ca, Role::Admin, valid)).unwrap();
    assert_eq!(handshake(server, client).await.1, Ok(()));
}
