//! The client side of a process with remote stdio, for `berth exec`,
//! `berth attach` and `berth run -i -t`: the local terminal in raw mode under a
//! remote terminal (restored on every exit path), the window size sent at
//! start and on every SIGWINCH, stdin forwarded (its EOF closes the remote
//! stdin), output written to stdout and stderr as it comes, and the remote
//! exit status returned. Berth's own failures exit 125, as Docker's do
//! ([`finish`]).

mod raw;

use std::io::Write;

use anyhow::{Context, Result, bail};
use berth_proto::v1::exec_client::ExecClient;
use berth_proto::v1::{
    AttachInput, AttachStart, ExecInput, ExecOutput, ExecStart, StdinClose, TerminalSize,
    attach_input, exec_input, exec_output,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

pub use raw::{RawMode, window_size};

/// The exit status for berth's own failures (Docker's 125).
pub const BERTH_FAILED: i32 = 125;

/// Ends the process with the remote status, or with 125 and the error on
/// stderr when berth itself failed.
pub fn finish(result: Result<i32>) -> ! {
    match result {
        Ok(code) => {
            let _ = std::io::stdout().flush();
            std::process::exit(code)
        }
        Err(err) => {
            eprintln!("berth: {err:#}");
            std::process::exit(BERTH_FAILED)
        }
    }
}

/// Local input, whichever call carries it.
enum Io {
    Stdin(Vec<u8>),
    Resize(TerminalSize),
    Close,
}

fn exec_input(io: Io) -> ExecInput {
    ExecInput {
        input: Some(match io {
            Io::Stdin(b) => exec_input::Input::Stdin(b),
            Io::Resize(s) => exec_input::Input::Resize(s),
            Io::Close => exec_input::Input::CloseStdin(StdinClose {}),
        }),
    }
}

fn attach_input(io: Io) -> AttachInput {
    AttachInput {
        input: Some(match io {
            Io::Stdin(b) => attach_input::Input::Stdin(b),
            Io::Resize(s) => attach_input::Input::Resize(s),
            Io::Close => attach_input::Input::CloseStdin(StdinClose {}),
        }),
    }
}

/// Runs `start` in its task (`berth exec`); the process's exit status.
pub async fn exec_task(channel: Channel, mut start: ExecStart) -> Result<i32> {
    if start.tty {
        start.size = window_size();
    }
    let (stdin, tty) = (start.stdin, start.tty);
    let first = ExecInput {
        input: Some(exec_input::Input::Start(start)),
    };
    let (inputs, io) = inputs(first, stdin, exec_input);
    let outputs = ExecClient::new(channel)
        .exec(inputs)
        .await
        .map_err(crate::client::explain)?
        .into_inner();
    let code = session(outputs, stdin, tty).await;
    io.abort();
    code
}

/// Attaches to the running task `task` (TASK, SERVICE.SLOT or SERVICE): its
/// output from now on, with `stdin` the local stdin into its terminal
/// (`tty`) or its open stdin; returns its exit status once it ended. The
/// terminal goes raw when the task runs on one (`tty`, or as the task says).
pub async fn attach_task(channel: Channel, task: &str, tty: bool, stdin: bool) -> Result<i32> {
    let start = AttachStart {
        task: task.to_string(),
        stdin,
        size: window_size(),
    };
    let first = AttachInput {
        input: Some(attach_input::Input::Start(start)),
    };
    let (inputs, io) = inputs(first, stdin, attach_input);
    let outputs = ExecClient::new(channel)
        .attach(inputs)
        .await
        .map_err(crate::client::explain)?
        .into_inner();
    let code = session(outputs, stdin, tty).await;
    io.abort();
    code
}

/// Writes outputs as they come until the exit status. The local terminal
/// goes raw, with stdin forwarded, under a remote terminal: known before
/// (`tty`) or as the remote side says in `started`.
async fn session(mut outputs: tonic::Streaming<ExecOutput>, stdin: bool, tty: bool) -> Result<i32> {
    // Restored when dropped: on every return below, error or not.
    let mut raw = (tty && stdin).then(RawMode::enter).flatten();
    loop {
        let Some(msg) = outputs.message().await.map_err(crate::client::explain)? else {
            bail!("the connection ended before the process's exit status came");
        };
        match msg.output {
            Some(exec_output::Output::Started(s)) if s.tty && stdin && raw.is_none() => {
                raw = RawMode::enter();
            }
            Some(exec_output::Output::Stdout(b)) => {
                let mut out = std::io::stdout().lock();
                out.write_all(&b).context("writing stdout")?;
                out.flush().context("writing stdout")?;
            }
            Some(exec_output::Output::Stderr(b)) => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(&b);
                let _ = err.flush();
            }
            Some(exec_output::Output::ExitCode(code)) => return Ok(code),
            Some(exec_output::Output::Started(_)) | None => {}
        }
    }
}

/// The stream of input messages: `first`, then window changes and stdin
/// (see [`forward_input`]); abort the handle when done.
fn inputs<T: Send + 'static>(
    first: T,
    stdin: bool,
    wrap: fn(Io) -> T,
) -> (ReceiverStream<T>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(64);
    // A new channel has room for one message.
    let _ = tx.try_send(first);
    let io = forward_input(tx, stdin, wrap);
    (ReceiverStream::new(rx), io)
}

/// Sends window changes and (with `stdin`) the local stdin, its EOF as the
/// end of stdin. Stdin is read on a thread of its own (a blocking read that
/// nothing needs to join: the process exits when the session ends).
fn forward_input<T: Send + 'static>(
    tx: mpsc::Sender<T>,
    stdin: bool,
    wrap: fn(Io) -> T,
) -> tokio::task::JoinHandle<()> {
    if stdin {
        let tx = tx.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            let mut input = std::io::stdin().lock();
            loop {
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = tx.blocking_send(wrap(Io::Close));
                        return;
                    }
                    Ok(n) => {
                        if tx
                            .blocking_send(wrap(Io::Stdin(buf[..n].to_vec())))
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
    }
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut changes) = signal(SignalKind::window_change()) else {
            // Without the signal the size stays what it was at start.
            tx.closed().await;
            return;
        };
        while changes.recv().await.is_some() {
            if let Some(size) = window_size()
                && tx.send(wrap(Io::Resize(size))).await.is_err()
            {
                return;
            }
        }
    })
}
