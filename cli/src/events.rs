//! `berth events`: the cluster's event stream, like `docker events` — one
//! line per event (or one JSON object with `--format json`), replayed from
//! `--since` and followed live until `--until` or Ctrl-C.

use anyhow::{Context, Result, bail};
use berth_proto::v1::events_client::EventsClient;
use berth_proto::v1::{Event, EventType, EventsHistoryGap, EventsRequest, events_response::Item};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use crate::client::{Access, explain};
use crate::output::Format;

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Replay events from this time on, as far as the controller still holds
    /// them: a duration back from now (10m, 1h30m), an RFC 3339 time
    /// (2026-12-04T10:00:00Z) or Unix seconds.
    #[arg(long, value_name = "D|TIME")]
    since: Option<String>,
    /// Stop at this time (same forms as --since); without it, follow until
    /// interrupted.
    #[arg(long, value_name = "D|TIME")]
    until: Option<String>,
    /// type=service|task|node|rollout or service=NAME (repeatable; the same
    /// key repeated means either).
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    filters: Vec<String>,
    /// `table`: one line per event; `json`: one JSON object per line.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub async fn run(access: &Access, args: EventsArgs) -> Result<()> {
    let now_ms = Utc::now().timestamp_millis();
    let mut request = EventsRequest {
        since_ms: match &args.since {
            Some(s) => parse_time(s, now_ms).context("--since")?,
            None => 0,
        },
        until_ms: match &args.until {
            Some(s) => parse_time(s, now_ms).context("--until")?,
            None => 0,
        },
        ..Default::default()
    };
    for filter in &args.filters {
        add_filter(&mut request, filter)?;
    }
    let mut client = EventsClient::new(crate::client::channel(access).await?)
        .max_decoding_message_size(berth_proto::MAX_MESSAGE_BYTES);
    let mut stream = client.events(request).await.map_err(explain)?.into_inner();
    while let Some(item) = stream.message().await.map_err(explain)? {
        match item.item {
            Some(Item::Event(event)) => match args.format {
                Format::Json => println!("{}", to_json(&event)),
                Format::Table => println!("{}", to_line(&event)),
            },
            Some(Item::Gap(gap)) => eprintln!("{}", gap_warning(&gap)),
            None => {}
        }
    }
    Ok(())
}

/// A duration back from `now_ms`, an RFC 3339 time or Unix seconds (a bare
/// number, as Docker reads it) -> ms since the epoch.
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            bail!("invalid time {t:?}");
        }
        return Ok((secs * 1000.0) as i64);
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(at.timestamp_millis());
    }
    match berth_proto::units::parse_duration_ms(t) {
        Ok(ms) => Ok(now_ms.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX))),
        Err(_) => bail!(
            "invalid time {t:?}: expected a duration (10m, 1h30m), an RFC 3339 time \
             (2026-12-04T10:00:00Z) or Unix seconds"
        ),
    }
}

fn add_filter(request: &mut EventsRequest, filter: &str) -> Result<()> {
    let Some((key, value)) = filter.split_once('=') else {
        bail!("invalid filter {filter:?}: expected KEY=VALUE (type=task, service=web)");
    };
    match key {
        "type" => {
            let kind = match value {
                "service" => EventType::Service,
                "task" => EventType::Task,
                "node" => EventType::Node,
                "rollout" => EventType::Rollout,
                other => {
                    bail!("invalid filter type={other:?}: expected service, task, node or rollout")
                }
            };
            request.types.push(kind as i32);
        }
        "service" if !value.is_empty() => request.services.push(value.to_string()),
        "service" => bail!("invalid filter {filter:?}: service= needs a name or id"),
        other => bail!("invalid filter key {other:?}: expected type or service"),
    }
    Ok(())
}

fn type_name(event: &Event) -> &'static str {
    match EventType::try_from(event.r#type) {
        Ok(EventType::Service) => "service",
        Ok(EventType::Task) => "task",
        Ok(EventType::Node) => "node",
        Ok(EventType::Rollout) => "rollout",
        _ => "unknown",
    }
}

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// `TIME TYPE ACTION ID (name=NAME, key=value, ...)`, as `docker events`.
pub fn to_line(event: &Event) -> String {
    let mut attributes = vec![format!("name={}", event.name)];
    attributes.extend(event.attributes.iter().map(|(k, v)| format!("{k}={v}")));
    format!(
        "{} {} {} {} ({})",
        rfc3339(event.time_ms),
        type_name(event),
        event.action,
        event.id,
        attributes.join(", ")
    )
}

pub fn to_json(event: &Event) -> serde_json::Value {
    json!({
        "time": rfc3339(event.time_ms),
        "time_ms": event.time_ms,
        "revision": event.revision,
        "type": type_name(event),
        "action": event.action,
        "id": event.id,
        "name": event.name,
        "attributes": event.attributes,
    })
}

fn gap_warning(gap: &EventsHistoryGap) -> String {
    if gap.oldest_ms > 0 {
        format!(
            "warning: --since reaches further back than the controller's event history, which \
             starts at {} (revision {}): replaying from there",
            rfc3339(gap.oldest_ms),
            gap.oldest_revision
        )
    } else {
        format!(
            "warning: --since reaches further back than the controller's event history, which \
             holds nothing before revision {}: nothing to replay",
            gap.oldest_revision
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_durations_rfc3339_or_unix_seconds() {
        let now = 10_000_000;
        assert_eq!(parse_time("10m", now).unwrap(), now - 600_000);
        assert_eq!(parse_time("1h30m", now).unwrap(), now - 5_400_000);
        assert_eq!(parse_time("1700000000", now).unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_time("2026-12-04T00:00:00Z", now).unwrap(),
            1_796_342_400_000
        );
        let err = parse_time("yesterday", now).unwrap_err().to_string();
        assert!(err.contains("invalid time \"yesterday\""), "{err}");
    }

    #[test]
    fn filters_are_checked() {
        let mut r = EventsRequest::default();
        add_filter(&mut r, "type=task").unwrap();
        add_filter(&mut r, "type=node").unwrap();
        add_filter(&mut r, "service=web").unwrap();
        assert_eq!(r.types, [EventType::Task as i32, EventType::Node as i32]);
        assert_eq!(r.services, ["web"]);
        for bad in ["type=container", "image=x", "service=", "type"] {
            assert!(add_filter(&mut r, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_line_reads_like_docker_events() {
        let mut event = Event {
            time_ms: 1_796_342_400_000,
            r#type: EventType::Task as i32,
            action: "running".into(),
            id: "t1".into(),
            name: "web.1".into(),
            ..Default::default()
        };
        event.attributes.insert("service".into(), "web".into());
        assert_eq!(
            to_line(&event),
            "2026-12-04T00:00:00.000Z task running t1 (name=web.1, service=web)"
        );
        assert_eq!(to_json(&event)["type"], "task");
        assert_eq!(to_json(&event)["attributes"]["service"], "web");
    }
}
