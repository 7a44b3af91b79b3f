//! `berth service history NAME`: the versions a service keeps, when each was
//! written and what changed.

use anyhow::Result;
use berth_proto::v1::Service;
use serde_json::json;

use crate::client::Client;
use crate::output::{self, Format};

pub async fn show(client: &mut Client, name: &str, format: Format) -> Result<()> {
    let service = super::fetch_service(client, name).await?;
    match format {
        Format::Json => output::json(&serde_json::Value::Array(
            service
                .history
                .iter()
                .map(|v| {
                    json!({
                        "version": v.version,
                        "created_ms": v.created_ms,
                        "current": v.version == service.spec_version,
                        "image": v.spec.as_ref().map(|s| s.image.clone()).unwrap_or_default(),
                        "image_digest": v.spec.as_ref().map(|s| s.image_digest.clone()).unwrap_or_default(),
                        "change": v.change,
                        "restores": v.restores,
                    })
                })
                .collect(),
        ))?,
        Format::Table => output::table(&["VERSION", "CREATED", "IMAGE", "CHANGE"], &rows(&service)),
    }
    Ok(())
}

fn rows(service: &Service) -> Vec<Vec<String>> {
    service
        .history
        .iter()
        .map(|v| {
            let mark = if v.version == service.spec_version {
                " *"
            } else {
                ""
            };
            vec![
                format!("{}{mark}", v.version),
                berth_pki::identity::format_ms(v.created_ms),
                v.spec.as_ref().map(|s| s.image.clone()).unwrap_or_default(),
                v.change.clone(),
            ]
        })
        .collect()
}
