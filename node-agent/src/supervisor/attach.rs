//! `berth attach` on the agent: a connection to the shim of a running task
//! (`attach.sock`, see `shim_io.rs`), which sends the task's output from now
//! on and takes stdin bytes and window sizes for its terminal or stdin pipe.
//! The connection ends when the task's init has exited.

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::attach_wire::{self, Decoder};
use super::error::{Result, SupervisorError};
use super::exec::{IoInput, IoOutput};
use super::shim_io::ATTACH_SOCKET;
use super::sock_path::ShortDir;

/// Connects to the shim's attach socket; `stdin`: pass input on.
pub(crate) async fn connect(task_id: &str, state_dir: &Path) -> Result<UnixStream> {
    let socket = state_dir.join(ATTACH_SOCKET);
    let dir = ShortDir::open(state_dir).map_err(|e| SupervisorError::io("open", state_dir, e))?;
    UnixStream::connect(dir.path(ATTACH_SOCKET))
        .await
        .map_err(|e| SupervisorError::Task {
            task: task_id.to_string(),
            reason: format!(
                "its shim does not take attaches at {} ({e}): it was restarted, or the task \
                 ended",
                socket.display()
            ),
        })
}

/// Streams between the caller and the shim until the shim closes the
/// connection (the task ended) or the caller goes away.
pub(crate) async fn run(
    conn: UnixStream,
    stdin: bool,
    size: Option<(u16, u16)>,
    mut input: mpsc::Receiver<IoInput>,
    out: mpsc::Sender<IoOutput>,
) {
    let (mut rx, mut tx) = conn.into_split();
    if let Some((rows, cols)) = size {
        let frame =
            attach_wire::encode(attach_wire::RESIZE, &attach_wire::size_payload(rows, cols));
        let _ = tx.write_all(&frame).await;
    }
    let typing = tokio::spawn(async move {
        while let Some(msg) = input.recv().await {
            let frame = match msg {
                IoInput::Stdin(data) if stdin => attach_wire::encode(attach_wire::STDIN, &data),
                IoInput::Stdin(_) => continue,
                IoInput::Resize(rows, cols) => {
                    attach_wire::encode(attach_wire::RESIZE, &attach_wire::size_payload(rows, cols))
                }
                IoInput::CloseStdin if stdin => attach_wire::encode(attach_wire::CLOSE_STDIN, b""),
                IoInput::CloseStdin => continue,
            };
            if tx.write_all(&frame).await.is_err() {
                return;
            }
        }
    });
    let mut decoder = Decoder::default();
    let mut buf = vec![0u8; 32 * 1024];
    'reading: loop {
        let n = tokio::select! {
            n = rx.read(&mut buf) => n,
            _ = out.closed() => break,
        };
        match n {
            Ok(0) | Err(_) => break,
            Ok(n) => decoder.push(&buf[..n]),
        }
        while let Ok(Some((kind, payload))) = decoder.next_frame() {
            let msg = match kind {
                attach_wire::STDERR => IoOutput::Stderr(payload),
                _ => IoOutput::Stdout(payload),
            };
            if out.send(msg).await.is_err() {
                break 'reading;
            }
        }
    }
    typing.abort();
}
