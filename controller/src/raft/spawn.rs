//! Starts a member: its mailbox, its transport built around that mailbox and
//! its loop on a thread of its own.

use std::sync::mpsc::{SyncSender, sync_channel};

use tokio::sync::oneshot;

use super::config::RaftSettings;
use super::handle::RaftHandle;
use super::mailbox::Msg;
use super::member::{MemberError, RaftMember};
use super::status::SharedStatus;
use super::storage::LogStorage;
use super::transport::Transport;
use crate::store::StateMachine;

/// Messages the loop may have queued before senders are turned away.
const MAILBOX: usize = 8192;

/// What resolves when a member loop stops, with how it ended.
pub type Stopped = oneshot::Receiver<Result<(), MemberError>>;

/// Starts member `id` on `storage` and `sm`. `transport` gets the member's
/// mailbox (for its reports, and in-process deliveries) and status. `keep` is
/// held by the loop's thread until the loop ends (the database under `sm`).
pub fn spawn_member<T: Transport>(
    id: u64,
    storage: LogStorage,
    sm: StateMachine,
    settings: RaftSettings,
    transport: impl FnOnce(SyncSender<Msg>, SharedStatus) -> T,
    keep: impl Send + 'static,
) -> Result<(RaftHandle, Stopped), MemberError> {
    let (mailbox, mailbox_rx) = sync_channel(MAILBOX);
    let status = SharedStatus::default();
    let transport = transport(mailbox.clone(), status.clone());
    let metrics = settings.metrics.clone();
    let member = RaftMember::new(id, storage, sm.clone(), transport, settings, status.clone())?;
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || {
            let _keep = keep;
            let _ = done_tx.send(member.run(mailbox_rx));
        })
        .map_err(|source| MemberError::Thread { id, source })?;
    Ok((RaftHandle::new(mailbox, status, sm, metrics), done_rx))
}
