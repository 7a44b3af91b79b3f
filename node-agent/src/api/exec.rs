//! `AgentExec`: `berth exec` and `berth attach` on this node, for the
//! controllers that proxy them. The first input message says what; the rest
//! is stdin, resizes and the end of stdin. The work is the supervisor's
//! (`Supervisor::exec`, `Supervisor::attach`); this file maps messages.

use std::pin::Pin;
use std::sync::Arc;

use berth_proto::v1::agent_exec_server::AgentExec;
use berth_proto::v1::{
    AttachInput, ExecInput, ExecOutput, ExecStarted, TerminalSize, attach_input, exec_input,
    exec_output,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::supervisor::{ExecRequest, IoInput, IoOutput, Supervisor, SupervisorError};

pub(super) struct ExecApi {
    pub(super) supervisor: Arc<Supervisor>,
}

type Outputs = Pin<Box<dyn Stream<Item = Result<ExecOutput, Status>> + Send>>;

/// How many messages may wait in each direction.
const BUFFER: usize = 64;

#[tonic::async_trait]
impl AgentExec for ExecApi {
    type ExecStream = Outputs;
    type AttachStream = Outputs;

    async fn exec(
        &self,
        request: Request<Streaming<ExecInput>>,
    ) -> Result<Response<Outputs>, Status> {
        let mut inbound = request.into_inner();
        let start = match inbound.message().await?.and_then(|m| m.input) {
            Some(exec_input::Input::Start(start)) => start,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be `start`",
                ));
            }
        };
        let (in_tx, in_rx) = mpsc::channel(BUFFER);
        let (out_tx, out_rx) = mpsc::channel(BUFFER);
        let req = ExecRequest {
            command: start.command,
            env: start.env,
            user: start.user,
            workdir: start.workdir,
            tty: start.tty,
            stdin: start.stdin,
            size: start.size.as_ref().and_then(size),
        };
        self.supervisor
            .exec(&start.task, req, in_rx, out_tx)
            .await
            .map_err(status)?;
        pump(inbound, in_tx, |msg| match msg.input? {
            exec_input::Input::Stdin(b) => Some(IoInput::Stdin(b)),
            exec_input::Input::Resize(s) => resize(&s),
            exec_input::Input::CloseStdin(_) => Some(IoInput::CloseStdin),
            exec_input::Input::Start(_) => None,
        });
        Ok(Response::new(outputs(start.task, start.tty, out_rx)))
    }

    async fn attach(
        &self,
        request: Request<Streaming<AttachInput>>,
    ) -> Result<Response<Outputs>, Status> {
        let mut inbound = request.into_inner();
        let start = match inbound.message().await?.and_then(|m| m.input) {
            Some(attach_input::Input::Start(start)) => start,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be `start`",
                ));
            }
        };
        let (in_tx, in_rx) = mpsc::channel(BUFFER);
        let (out_tx, out_rx) = mpsc::channel(BUFFER);
        let tty = self
            .supervisor
            .attach(
                &start.task,
                start.stdin,
                start.size.as_ref().and_then(size),
                in_rx,
                out_tx,
            )
            .await
            .map_err(status)?;
        pump(inbound, in_tx, |msg| match msg.input? {
            attach_input::Input::Stdin(b) => Some(IoInput::Stdin(b)),
            attach_input::Input::Resize(s) => resize(&s),
            attach_input::Input::CloseStdin(_) => Some(IoInput::CloseStdin),
            attach_input::Input::Start(_) => None,
        });
        Ok(Response::new(outputs(start.task, tty, out_rx)))
    }
}

/// Passes the caller's messages after the first on as input, until either
/// side is gone; `to_io` drops what is not input.
fn pump<T: Send + 'static>(
    mut inbound: Streaming<T>,
    tx: mpsc::Sender<IoInput>,
    to_io: fn(T) -> Option<IoInput>,
) {
    tokio::spawn(async move {
        while let Ok(Some(msg)) = inbound.message().await {
            if let Some(input) = to_io(msg)
                && tx.send(input).await.is_err()
            {
                return;
            }
        }
    });
}

fn resize(s: &TerminalSize) -> Option<IoInput> {
    size(s).map(|(rows, cols)| IoInput::Resize(rows, cols))
}

/// A size a terminal can take (both non-zero, within u16).
fn size(s: &TerminalSize) -> Option<(u16, u16)> {
    let rows = u16::try_from(s.rows).ok().filter(|r| *r > 0)?;
    let cols = u16::try_from(s.cols).ok().filter(|c| *c > 0)?;
    Some((rows, cols))
}

/// `started`, then the process's output as it comes.
fn outputs(task_id: String, tty: bool, rx: mpsc::Receiver<IoOutput>) -> Outputs {
    let started = ExecOutput {
        output: Some(exec_output::Output::Started(ExecStarted { task_id, tty })),
    };
    let rest = ReceiverStream::new(rx).map(|o| {
        Ok(ExecOutput {
            output: Some(match o {
                IoOutput::Stdout(b) => exec_output::Output::Stdout(b),
                IoOutput::Stderr(b) => exec_output::Output::Stderr(b),
                IoOutput::Exit(code) => exec_output::Output::ExitCode(code),
            }),
        })
    });
    Box::pin(tokio_stream::once(Ok(started)).chain(rest))
}

fn status(e: SupervisorError) -> Status {
    match e {
        SupervisorError::UnknownTask { .. } => Status::not_found(e.to_string()),
        SupervisorError::NotRunning { .. } => Status::failed_precondition(e.to_string()),
        SupervisorError::Task { .. } => Status::invalid_argument(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}
