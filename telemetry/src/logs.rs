//! `--log-format text|json` for every daemon. JSON puts an event's fields
//! (task, node, service, member ids...) at the top level of one object per
//! line, beside `timestamp`, `level`, `target` and `message`, so a log
//! pipeline can filter on them without parsing the message.

use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt, layer::SubscriberExt};

use crate::TelemetryError;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    #[default]
    Text,
    /// One JSON object per line, with the event's fields as keys.
    Json,
}

/// A formatting layer writing to `writer` in `format`; `ansi` colors text
/// (JSON never is).
pub fn layer<S, W>(format: LogFormat, writer: W, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Text => fmt::layer().with_writer(writer).with_ansi(ansi).boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
    }
}

/// Parses filter directives ("info,raft=warn"), naming them when invalid.
pub fn filter(directives: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::builder()
        .parse(directives)
        .map_err(|error| TelemetryError::Filter {
            directives: directives.to_string(),
            error,
        })
}

/// A daemon's logging: `format` to stderr, filtered by the environment
/// variable `env_var` when set, else by `default_directives`.
pub fn init_stderr(
    format: LogFormat,
    env_var: &str,
    default_directives: &str,
) -> Result<(), TelemetryError> {
    let directives = std::env::var(env_var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default_directives.to_string());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::registry()
        .with(layer(format, std::io::stderr, ansi).with_filter(filter(&directives)?))
        .try_init()
        .map_err(|e| TelemetryError::Init(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(format: LogFormat) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber =
            tracing_subscriber::registry().with(layer(format, move || writer.clone(), false));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(task = "t-1", node = "n-2", "task started");
        });
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn json_puts_ids_at_the_top_level() {
        let line = logged(LogFormat::Json);
        assert!(line.contains(r#""task":"t-1""#), "{line}");
        assert!(line.contains(r#""node":"n-2""#), "{line}");
        assert!(line.contains(r#""message":"task started""#), "{line}");
        assert!(line.contains(r#""level":"INFO""#), "{line}");
    }

    #[test]
    fn text_stays_one_readable_line() {
        let line = logged(LogFormat::Text);
        assert!(
            line.contains("task started task=\"t-1\" node=\"n-2\""),
            "{line}"
        );
        assert!(!line.contains('{'), "{line}");
    }

    #[test]
    fn a_bad_filter_is_named() {
        let err = filter("info,berth=loud").unwrap_err();
        assert!(err.to_string().contains("berth=loud"), "{err}");
    }
}
