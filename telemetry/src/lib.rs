//! What berth's daemons show operators: Prometheus metrics served on an
//! address of their own (`--metrics-listen`), and the log format
//! (`--log-format text|json`). The metric definitions live with each daemon
//! (controller/src/metrics.rs, node-agent/src/metrics.rs); this crate only
//! serves a registry and sets up logging, so both daemons do it alike.

pub mod define;
pub mod logs;
pub mod scrape;

pub use logs::LogFormat;
pub use prometheus;
pub use scrape::{MetricsServer, new_registry};

/// The cause is in each message (and not a `source`, which callers printing
/// the chain would show twice).
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot listen on {addr} for /metrics: {error}")]
    Listen {
        addr: std::net::SocketAddr,
        error: std::io::Error,
    },
    #[error("cannot register the {what} metrics: {error}")]
    Register {
        what: &'static str,
        error: prometheus::Error,
    },
    #[error("invalid log filter {directives:?}: {error}")]
    Filter {
        directives: String,
        error: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot set up logging: {0}")]
    Init(String),
}

/// Registers `collector` in `registry`, naming `what` on failure (a name
/// registered twice is a programming error, but it must not panic a daemon).
pub fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &prometheus::Registry,
    what: &'static str,
    collector: &C,
) -> Result<(), TelemetryError> {
    registry
        .register(Box::new(collector.clone()))
        .map_err(|error| TelemetryError::Register { what, error })
}
