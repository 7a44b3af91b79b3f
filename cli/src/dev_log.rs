//! Where `berth dev`'s daemons log: everything to a file in the data dir, and
//! to the terminal only errors (all of it with `-v`), so the user's terminal
//! stays readable.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use berth_telemetry::LogFormat;
use berth_telemetry::logs::layer;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// What is logged when neither --log-level nor RUST_LOG says otherwise. Raft,
/// HTTP/2 and the DNS server are chatty at info.
const DEFAULT_FILTER: &str = "info,raft=warn,h2=warn,tower=warn,hickory_server=warn";

/// The filter directives: --log-level, else RUST_LOG, else the default.
fn directives(log_level: Option<&str>) -> String {
    log_level
        .map(str::to_string)
        .or_else(|| std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| DEFAULT_FILTER.to_string())
}

fn filter(directives: &str) -> Result<EnvFilter> {
    EnvFilter::builder()
        .parse(directives)
        .with_context(|| format!("invalid --log-level {directives:?}"))
}

/// Logs to `file` (appending) at `log_level`; the terminal (stderr) gets
/// errors only, or everything the file gets when `verbose`.
pub fn init(file: &Path, log_level: Option<&str>, verbose: bool, format: LogFormat) -> Result<()> {
    let directives = directives(log_level);
    let file_filter = filter(&directives)?;
    let terminal_filter = if verbose {
        filter(&directives)?
    } else {
        EnvFilter::new("error")
    };
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .with_context(|| format!("cannot open the log file {}", file.display()))?;
    tracing_subscriber::registry()
        .with(layer(format, Arc::new(log), false).with_filter(file_filter))
        .with(
            layer(
                format,
                std::io::stderr,
                std::io::IsTerminal::is_terminal(&std::io::stderr()),
            )
            .with_filter(terminal_filter),
        )
        .try_init()
        .context("cannot set up logging")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_level_comes_before_the_environment_and_the_default() {
        assert_eq!(directives(Some("debug")), "debug");
        assert_eq!(
            directives(Some("info,berth_agent=trace")),
            "info,berth_agent=trace"
        );
    }

    #[test]
    fn an_invalid_log_level_is_refused_with_its_text() {
        let err = filter("info,berth_agent=loud").unwrap_err();
        assert!(format!("{err:#}").contains("berth_agent=loud"), "{err:#}");
        assert!(filter(DEFAULT_FILTER).is_ok());
    }

    #[test]
    fn the_log_goes_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth-dev.log");
        init(&path, Some("info"), false, LogFormat::Text).unwrap();
        tracing::info!(answer = 42, "written to the file");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("written to the file answer=42"), "{text}");
    }
}
