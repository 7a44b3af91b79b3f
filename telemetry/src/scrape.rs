//! `GET /metrics` over plain HTTP/1.1 on its own address, served with hyper
//! (already in the tree through tonic): the registry is gathered and encoded
//! in the text format at each scrape, nothing is kept between scrapes.

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;

use crate::TelemetryError;

/// A registry with the process collector (cpu, resident memory, open fds of
/// this process, `process_*`) already in it.
pub fn new_registry() -> Result<Registry, TelemetryError> {
    let registry = Registry::new();
    registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .map_err(|error| TelemetryError::Register {
            what: "process",
            error,
        })?;
    Ok(registry)
}

/// A bound `/metrics` endpoint, not yet serving: binding first lets a daemon
/// refuse a port in use before it starts anything else.
pub struct MetricsServer {
    listener: TcpListener,
    registry: Registry,
}

impl MetricsServer {
    pub async fn bind(addr: SocketAddr, registry: Registry) -> Result<Self, TelemetryError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|error| TelemetryError::Listen { addr, error })?;
        Ok(Self { listener, registry })
    }

    /// The registry it serves, for the daemon to register its metrics in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Where it listens (the port the OS chose for port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until the task is dropped or aborted; a connection's failure
    /// ends only that connection.
    pub async fn serve(self) {
        loop {
            let (stream, _) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of fds, say: wait instead of spinning.
                    tracing::warn!(%err, "metrics endpoint: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
            };
            let registry = self.registry.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let registry = registry.clone();
                    async move { Ok::<_, Infallible>(answer(&registry, &request)) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                // half_close: a client that shuts its write side after the
                // request (nc, some probes) still gets its answer.
                if let Err(err) = hyper::server::conn::http1::Builder::new()
                    .half_close(true)
                    .serve_connection(io, service)
                    .await
                {
                    tracing::debug!(%err, "metrics connection ended");
                }
            });
        }
    }
}

/// The answer to one request: the metrics for `GET /metrics`, 404 or 405 else.
fn answer<B>(registry: &Registry, request: &Request<B>) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *response.status_mut() = status;
        response
    };
    if request.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "only /metrics is served here\n");
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
    }
    match encode(registry) {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            if let Ok(value) = TextEncoder::new().format_type().parse() {
                response
                    .headers_mut()
                    .insert(hyper::header::CONTENT_TYPE, value);
            }
            response
        }
        Err(err) => {
            tracing::warn!(%err, "cannot encode the metrics");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics\n",
            )
        }
    }
}

/// The registry in Prometheus' text format.
pub fn encode(registry: &Registry) -> Result<Vec<u8>, prometheus::Error> {
    let mut body = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut body)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        text
    }

    #[tokio::test]
    async fn metrics_are_served_in_the_text_format_and_other_paths_are_not_found() {
        let registry = new_registry().unwrap();
        let counter = prometheus::IntCounter::new("berth_test_total", "a test counter").unwrap();
        crate::register(&registry, "test", &counter).unwrap();
        counter.inc_by(3);
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap(), registry)
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let serving = tokio::spawn(server.serve());
        let text = get(addr, "/metrics").await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("text/plain; version=0.0.4"), "{text}");
        assert!(text.contains("\nberth_test_total 3\n"), "{text}");
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
        let text = get(addr, "/").await;
        assert!(text.starts_with("HTTP/1.1 404"), "{text}");
        serving.abort();
    }

    #[tokio::test]
    async fn a_client_that_half_closes_after_its_request_gets_the_answer() {
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap(), new_registry().unwrap())
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let serving = tokio::spawn(server.serve());
        for _ in 0..20 {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
                .await
                .unwrap();
            stream.shutdown().await.unwrap();
            let mut text = String::new();
            stream.read_to_string(&mut text).await.unwrap();
            assert!(text.starts_with("HTTP/1.0 200"), "{text}");
        }
        serving.abort();
    }

    #[tokio::test]
    async fn a_port_in_use_is_refused_with_its_address() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let err = MetricsServer::bind(addr, Registry::new())
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
