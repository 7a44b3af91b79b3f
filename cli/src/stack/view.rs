//! `stack ls`, `services`, `ps` and `rm`: a stack is the objects that carry
//! its label (berth_proto::stacks::STACK_LABEL).

use anyhow::{Result, bail};
use berth_proto::stacks::stack_of;
use berth_proto::v1::{
    ListServicesRequest, ListStacksRequest, ListTasksRequest, RemoveStackRequest, Service,
};
use serde_json::json;

use super::deploy::stacks_client;
use super::plan::kind_name;
use crate::client::{self, Access, Client, explain};
use crate::output::{self, Format};
use crate::ps::ports_text;
use crate::service::{node_names, print_tasks, replicas_of, running_counts};

pub async fn ls(access: &Access, format: Format) -> Result<()> {
    let channel = client::channel(access).await?;
    let stacks = stacks_client(channel)
        .list(ListStacksRequest {})
        .await
        .map_err(explain)?
        .into_inner()
        .stacks;
    match format {
        Format::Json => output::json(&serde_json::to_value(&stacks)?),
        Format::Table => {
            output::table(
                &["NAME", "SERVICES", "NETWORKS", "CONFIGS", "SECRETS"],
                &stacks
                    .iter()
                    .map(|s| {
                        vec![
                            s.name.clone(),
                            s.services.to_string(),
                            s.networks.to_string(),
                            s.configs.to_string(),
                            s.secrets.to_string(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            Ok(())
        }
    }
}

/// The stack's services, by name; an error when it has none.
async fn services_of(client: &mut Client, stack: &str) -> Result<Vec<Service>> {
    let mut services: Vec<Service> = client
        .list_services(ListServicesRequest {})
        .await
        .map_err(explain)?
        .into_inner()
        .services
        .into_iter()
        .filter(|s| {
            s.spec
                .as_ref()
                .is_some_and(|spec| stack_of(&spec.labels) == Some(stack))
        })
        .collect();
    if services.is_empty() {
        bail!("stack {stack} has no services (see `berth stack ls`)");
    }
    services.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    Ok(services)
}

fn name_of(service: &Service) -> &str {
    service.spec.as_ref().map_or("", |s| s.name.as_str())
}

pub async fn services(access: &Access, stack: &str, format: Format) -> Result<()> {
    let mut client = client::connect(access).await?;
    let services = services_of(&mut client, stack).await?;
    let running = running_counts(&mut client).await?;
    let running = |id: &str| running.get(id).copied().unwrap_or(0);
    match format {
        Format::Json => output::json(&serde_json::Value::Array(
            services
                .iter()
                .map(|s| {
                    let spec = s.spec.clone().unwrap_or_default();
                    json!({
                        "id": s.id,
                        "name": spec.name,
                        "replicas": replicas_of(s),
                        "running": running(&s.id),
                        "image": spec.image,
                        "ports": ports_text(&spec.ports),
                        "version": s.spec_version,
                    })
                })
                .collect(),
        )),
        Format::Table => {
            output::table(
                &["ID", "NAME", "REPLICAS", "IMAGE", "PORTS"],
                &services
                    .iter()
                    .map(|s| {
                        let spec = s.spec.clone().unwrap_or_default();
                        vec![
                            s.id.clone(),
                            spec.name,
                            format!("{}/{}", running(&s.id), replicas_of(s)),
                            spec.image,
                            ports_text(&spec.ports),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            Ok(())
        }
    }
}

pub async fn ps(access: &Access, stack: &str, format: Format) -> Result<()> {
    let mut client = client::connect(access).await?;
    let services = services_of(&mut client, stack).await?;
    let mut tasks = Vec::new();
    for service in &services {
        tasks.extend(
            client
                .list_tasks(ListTasksRequest {
                    service: service.id.clone(),
                    node: String::new(),
                })
                .await
                .map_err(explain)?
                .into_inner()
                .tasks,
        );
    }
    let nodes = node_names(&mut client).await?;
    print_tasks(&tasks, &nodes, format, true)
}

pub async fn rm(access: &Access, stacks: &[String]) -> Result<()> {
    let channel = client::channel(access).await?;
    let mut client = stacks_client(channel);
    let mut failed = Vec::new();
    for stack in stacks {
        match client
            .remove(RemoveStackRequest {
                name: stack.clone(),
            })
            .await
        {
            Ok(answer) => {
                for removed in answer.into_inner().removed {
                    println!("Removing {} {}", kind_name(removed.kind), removed.name);
                }
            }
            Err(status) => {
                eprintln!("berth: stack {stack}: {:#}", explain(status));
                failed.push(stack.as_str());
            }
        }
    }
    if !failed.is_empty() {
        bail!("could not remove {}", failed.join(", "));
    }
    Ok(())
}
