//! `berth cluster ...`: the controllers' Raft group.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use berth_proto::v1::lock_client::LockClient;
use berth_proto::v1::{
    ClusterStatusRequest, JoinTokenRequest, MemberRole, RemoveMemberRequest,
    UnlockControllerRequest,
};
use clap::Subcommand;
use serde_json::json;

use crate::client::{Client, explain};
use crate::output::{self, Format};

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Members, their roles, the leader, term and indexes.
    Status {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Remove a member from the Raft group (by id, as `cluster status` shows it).
    Remove { id: u64 },
    /// Print the join token of a role: `berth-agent --token T` or
    /// `berth-controller --join ADDR --token T` use it.
    JoinToken {
        #[arg(value_enum)]
        role: TokenRole,
        /// Make a new token; the old one stops working (joined nodes are unaffected).
        #[arg(long)]
        rotate: bool,
        /// Print only the token.
        #[arg(short, long)]
        quiet: bool,
    },
    /// The cluster's root CA: its digest and any rotation under way; with
    /// --rotate, a new root (cross-signed by the old, so nothing stops): every
    /// node renews onto it and then the old root is dropped. This CLI's own
    /// bundle is renewed at once; other admin bundles need renewing too.
    Ca {
        #[arg(long)]
        rotate: bool,
    },
    /// Change cluster-wide settings (like `docker swarm update`).
    Update(crate::cluster_settings::UpdateArgs),
    /// Show the cluster-wide settings.
    Settings {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Write a consistent backup of the cluster's state to FILE (mode 0600):
    /// every object, secrets still sealed, the root CA and the secrets' key.
    /// `berth-controller --init --restore FILE` starts a cluster from it.
    Backup {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Give a restarted autolocked controller (--controller) its unlock key.
    Unlock {
        /// File holding the key `--init --autolock` printed (default: stdin).
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum TokenRole {
    Agent,
    Controller,
}

/// `cluster ca [--rotate]`.
pub async fn ca(access: &crate::client::Access, rotate: bool) -> Result<()> {
    let mut client = crate::client::connect(access).await?;
    if rotate {
        let answer = client
            .rotate_ca(berth_proto::v1::RotateCaRequest {})
            .await
            .map_err(explain)?
            .into_inner();
        println!("CA rotation started; trust bundle now {}", answer.ca_digest);
        // This CLI's certificate comes from the old root: renew it now, or it
        // is refused once the old root is dropped.
        let dir = access
            .tls_dir
            .clone()
            .unwrap_or_else(crate::client::default_tls_dir);
        let channel = crate::client::channel(access).await?;
        let renewed = berth_pki::enroll::renew(channel, &access.address).await?;
        renewed.bundle.save(&dir)?;
        println!("renewed this CLI's admin bundle in {}", dir.display());
        println!(
            "every node renews onto the new root within seconds; `berth cluster ca` shows the \
             progress. Join tokens change with the CA: print them again."
        );
        return Ok(());
    }
    let status = client
        .cluster_status(ClusterStatusRequest {})
        .await
        .map_err(explain)?
        .into_inner();
    println!("trust bundle: {}", status.ca_digest);
    match status.ca_rotation.as_str() {
        "" => println!("no rotation under way"),
        progress => println!("rotation under way: {progress}"),
    }
    Ok(())
}

/// `cluster unlock`: the key goes to the one controller named by `address`.
pub async fn unlock(access: &crate::client::Access, key_file: Option<&Path>) -> Result<()> {
    let address = &access.address;
    let key = match key_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the unlock key from stdin")?;
            text
        }
    };
    let mut client = LockClient::new(crate::client::channel(access).await?);
    client
        .unlock_controller(UnlockControllerRequest {
            unlock_key: key.trim().to_string(),
        })
        .await
        .map_err(explain)?;
    println!("unlocked the controller at {address}");
    Ok(())
}

fn role_name(role: i32) -> &'static str {
    match MemberRole::try_from(role) {
        Ok(MemberRole::Leader) => "leader",
        Ok(MemberRole::Learner) => "learner",
        Ok(MemberRole::Candidate) => "candidate",
        _ => "follower",
    }
}

pub async fn run(client: &mut Client, cmd: ClusterCmd) -> Result<()> {
    match cmd {
        ClusterCmd::Status { format } => {
            let status = client
                .cluster_status(ClusterStatusRequest {})
                .await
                .map_err(explain)?
                .into_inner();
            match format {
                Format::Json => output::json(&json!({
                    "leader": status.leader_id,
                    "term": status.term,
                    "commit_index": status.commit_index,
                    "applied_index": status.applied_index,
                    "member_id": status.member_id,
                    "certificate_warnings": status.certificate_warnings,
                    "members": status.members.iter().map(|m| json!({
                        "id": m.id,
                        "address": m.address,
                        "role": role_name(m.role),
                    })).collect::<Vec<_>>(),
                })),
                Format::Table => {
                    let rows: Vec<Vec<String>> = status
                        .members
                        .iter()
                        .map(|m| {
                            let me = if m.id == status.member_id { " *" } else { "" };
                            vec![
                                format!("{}{me}", m.id),
                                m.address.clone(),
                                role_name(m.role).into(),
                            ]
                        })
                        .collect();
                    output::table(&["ID", "ADDRESS", "ROLE"], &rows);
                    println!(
                        "\nleader {}  term {}  commit {}  applied {}  (* = answered this request)",
                        status.leader_id, status.term, status.commit_index, status.applied_index
                    );
                    for warning in &status.certificate_warnings {
                        println!("WARNING: {warning}");
                    }
                    Ok(())
                }
            }
        }
        ClusterCmd::Remove { id } => {
            client
                .remove_member(RemoveMemberRequest { id })
                .await
                .map_err(explain)?;
            println!("removed member {id}");
            Ok(())
        }
        ClusterCmd::JoinToken {
            role,
            rotate,
            quiet,
        } => {
            let name = match role {
                TokenRole::Agent => "agent",
                TokenRole::Controller => "controller",
            };
            let token = client
                .join_token(JoinTokenRequest {
                    role: name.to_string(),
                    rotate,
                })
                .await
                .map_err(explain)?
                .into_inner()
                .token;
            if quiet {
                println!("{token}");
            } else {
                if rotate {
                    println!("Rotated the {name} join token; the old one no longer works.\n");
                }
                match role {
                    TokenRole::Agent => println!(
                        "To add a node, run on it:\n\n    berth-agent --data-dir DIR --controller ADDR --token {token}\n"
                    ),
                    TokenRole::Controller => println!(
                        "To add a controller, run:\n\n    berth-controller --data-dir DIR --listen IP:PORT --join ADDR --token {token}\n"
                    ),
                }
                println!("(--token-file FILE keeps the token out of the process list.)");
            }
            Ok(())
        }
        ClusterCmd::Unlock { .. }
        | ClusterCmd::Ca { .. }
        | ClusterCmd::Update(_)
        | ClusterCmd::Settings { .. }
        | ClusterCmd::Backup { .. } => {
            anyhow::bail!("this cluster command is run by main")
        }
    }
}
