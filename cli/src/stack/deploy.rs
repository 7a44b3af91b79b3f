//! `stack deploy` and `stack diff`: the files' stack sent to the leader,
//! which plans (and unless it is a diff, writes) the difference; a deploy
//! then waits for the services it created or changed.

use std::path::PathBuf;

use anyhow::Result;
use berth_proto::v1::cluster_client::ClusterClient;
use berth_proto::v1::stacks_client::StacksClient;
use berth_proto::v1::{
    DeployStackRequest, DeployStackResponse, GetServiceRequest, StackAction, StackObjectKind,
};
use tonic::transport::Channel;

use super::files;
use super::plan::{self, Removals};
use crate::client::{self, Access, explain};
use crate::exit_code::Exit;
use crate::output::{self, Format};
use crate::service::progress;
use crate::service::watch::Goal;
use crate::service::written_at;

pub struct DeployOptions {
    pub prune: bool,
    pub detach: bool,
    pub no_resolve_image: bool,
    pub format: Format,
}

pub fn stacks_client(channel: Channel) -> StacksClient<Channel> {
    StacksClient::new(channel).max_decoding_message_size(berth_proto::MAX_MESSAGE_BYTES)
}

async fn send(
    access: &Access,
    request: DeployStackRequest,
) -> Result<(DeployStackResponse, Channel)> {
    let channel = client::channel(access).await?;
    let answer = stacks_client(channel.clone())
        .deploy(request)
        .await
        .map_err(explain)?
        .into_inner();
    Ok((answer, channel))
}

fn print_plan(
    stack: &str,
    answer: &DeployStackResponse,
    removals: Removals,
    applied: bool,
    format: Format,
) -> Result<()> {
    match format {
        Format::Json => output::json(&plan::json(&answer.changes, &answer.warnings))?,
        Format::Table => {
            for warning in &answer.warnings {
                eprintln!("warning: {warning}");
            }
            for line in plan::lines(stack, &answer.changes, removals, applied) {
                println!("{line}");
            }
        }
    }
    Ok(())
}

pub async fn deploy(
    access: &Access,
    files: &[PathBuf],
    stack: &str,
    options: DeployOptions,
) -> Result<()> {
    let spec = files::load(files, stack)?;
    let request = DeployStackRequest {
        stack: Some(spec),
        prune: options.prune,
        dry_run: false,
        no_resolve_image: options.no_resolve_image,
    };
    let (answer, channel) = send(access, request).await?;
    let removals = if options.prune {
        Removals::Done
    } else {
        Removals::Kept
    };
    print_plan(stack, &answer, removals, true, options.format)?;
    if options.detach {
        return Ok(());
    }
    wait_for_services(channel, &answer).await
}

/// Waits for every service the deploy created (until its tasks run) or
/// updated (until its rollout ends), one after the other; the first that
/// did not make it decides the exit code, after all were waited for.
async fn wait_for_services(channel: Channel, answer: &DeployStackResponse) -> Result<()> {
    let mut client =
        ClusterClient::new(channel).max_decoding_message_size(berth_proto::MAX_MESSAGE_BYTES);
    let mut first_failure = None;
    for change in &answer.changes {
        if change.kind != StackObjectKind::Service as i32 {
            continue;
        }
        let created = change.action == StackAction::Create as i32;
        if !created && change.action != StackAction::Update as i32 {
            continue;
        }
        let service = client
            .get_service(GetServiceRequest {
                service: change.name.clone(),
            })
            .await
            .map_err(explain)?
            .into_inner();
        let goal = if created {
            Goal::Converge
        } else {
            Goal::Update {
                version: service.spec_version,
            }
        };
        let waited = progress::wait(&mut client, &change.name, goal, written_at(&service)).await;
        if let Err(err) = waited {
            eprintln!("berth: {err:#}");
            first_failure.get_or_insert(err);
        }
    }
    match first_failure {
        None => Ok(()),
        Some(err) => Err(err),
    }
}

/// `stack diff`: exit 0 when a deploy would change nothing, 1 when it
/// would, 2 when the files or the cluster refuse it.
pub async fn diff(
    access: &Access,
    files: &[PathBuf],
    stack: &str,
    prune: bool,
    format: Format,
) -> Result<()> {
    let planned = async {
        let spec = files::load(files, stack)?;
        // Removals are always asked for, so what the files no longer name
        // shows (as kept, without --prune).
        let request = DeployStackRequest {
            stack: Some(spec),
            prune: true,
            dry_run: true,
            no_resolve_image: false,
        };
        send(access, request).await
    }
    .await;
    let answer = match planned {
        Ok((answer, _)) => answer,
        Err(err) => {
            return Err(Exit {
                code: 2,
                message: format!("{err:#}"),
            }
            .into());
        }
    };
    let removals = if prune {
        Removals::Done
    } else {
        Removals::Kept
    };
    print_plan(stack, &answer, removals, false, format)?;
    if plan::changes_anything(&answer.changes, removals) {
        return Err(Exit::code(1));
    }
    Ok(())
}
