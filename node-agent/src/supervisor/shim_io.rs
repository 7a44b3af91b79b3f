//! What a shim holds for `berth attach`: the master of a tty task's terminal
//! (received on `console.sock` from the runtime's `create --console-socket`),
//! the write end of an `open_stdin` task's stdin pipe, and the attach socket
//! (`attach.sock`) the agent connects to. Each attached connection gets the
//! container's output from then on; its stdin frames go to the terminal or the
//! pipe, its resize frames to the terminal. All of it is non-blocking, driven by
//! the shim's one poll loop.
//!
//! Only this shim holds the master and the pipe's write end. If it dies, the
//! terminal hangs up (the task's session gets SIGHUP) and the task's stdin
//! reads EOF; a shim started to re-adopt the container has neither, so an
//! attach to it sees no output and cannot type.

use std::io::{ErrorKind, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use super::attach_wire::{self, Decoder};
use super::sock_path::ShortDir;

pub(crate) const ATTACH_SOCKET: &str = "attach.sock";
pub(crate) const CONSOLE_SOCKET: &str = "console.sock";
/// The bundle annotation that says the task's stdin stays open (`open_stdin`).
pub(crate) const OPEN_STDIN_ANNOTATION: &str = "run.berth.open-stdin";

/// How long a slow attached client may hold up the output before it is dropped.
const CLIENT_SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// What the bundle asks of the container's stdio: (terminal, open stdin).
pub(crate) fn bundle_stdio(bundle: &Path) -> (bool, bool) {
    let Ok(text) = std::fs::read(bundle.join("config.json")) else {
        return (false, false);
    };
    let Ok(spec) = serde_json::from_slice::<serde_json::Value>(&text) else {
        return (false, false);
    };
    let tty = spec["process"]["terminal"].as_bool().unwrap_or(false);
    let stdin = spec["annotations"][OPEN_STDIN_ANNOTATION].as_str() == Some("true");
    (tty, stdin)
}

/// Receives the terminal's master the runtime sent to `listener` during
/// `create` (it is queued by then), waiting at most `max`.
pub(crate) fn receive_master(listener: &UnixListener, max: Duration) -> Result<OwnedFd, String> {
    let mut fds = [libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: a valid array of one pollfd.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, max.as_millis() as i32) };
    if ready <= 0 {
        return Err(format!(
            "the runtime sent no terminal to {CONSOLE_SOCKET} within {max:?}"
        ));
    }
    let (conn, _) = listener
        .accept()
        .map_err(|e| format!("accept on {CONSOLE_SOCKET}: {e}"))?;
    let master = berth_runtime::console::recv_master(&conn).map_err(|e| e.to_string())?;
    set_nonblocking(&master).map_err(|e| format!("terminal: {e}"))?;
    Ok(master)
}

pub(crate) fn set_nonblocking(fd: &impl AsFd) -> nix::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(drop)
}

/// Where attached stdin goes, with what it could not take yet.
struct Input {
    fd: OwnedFd,
    pending: Vec<u8>,
    tty: bool,
}

struct Client {
    stream: UnixStream,
    decoder: Decoder,
}

/// The attach side of a shim.
pub(crate) struct Attach {
    /// Keeps the short path of the listener valid.
    _dir: Option<ShortDir>,
    listener: Option<UnixListener>,
    clients: Vec<Client>,
    input: Option<Input>,
    /// The terminal's master, for resizes (a tty task only).
    terminal: Option<OwnedFd>,
}

impl Attach {
    /// Listens on `state_dir/attach.sock`; `terminal` (a tty task's master)
    /// or `stdin` (the write end of an open_stdin task's pipe) takes input.
    pub(crate) fn open(
        state_dir: &Path,
        terminal: Option<&OwnedFd>,
        stdin: Option<OwnedFd>,
    ) -> Attach {
        let _ = std::fs::remove_file(state_dir.join(ATTACH_SOCKET));
        let dir = ShortDir::open(state_dir).ok();
        let path = dir
            .as_ref()
            .map_or_else(|| state_dir.join(ATTACH_SOCKET), |d| d.path(ATTACH_SOCKET));
        let listener = match UnixListener::bind(&path) {
            Ok(l) => {
                let _ = l.set_nonblocking(true);
                Some(l)
            }
            Err(e) => {
                eprintln!("berth shim: cannot listen on {}: {e}", path.display());
                None
            }
        };
        let terminal = terminal.and_then(|t| t.try_clone().ok());
        let input = match (&terminal, stdin) {
            (Some(t), _) => t.try_clone().ok().map(|fd| Input {
                fd,
                pending: Vec::new(),
                tty: true,
            }),
            (None, Some(fd)) => {
                let _ = set_nonblocking(&fd);
                Some(Input {
                    fd,
                    pending: Vec::new(),
                    tty: false,
                })
            }
            (None, None) => None,
        };
        Attach {
            _dir: dir,
            listener,
            clients: Vec::new(),
            input,
            terminal,
        }
    }

    /// The fds the poll loop waits on for this side, with their events.
    pub(crate) fn poll_fds(&self) -> Vec<(RawFd, i16)> {
        let mut out = Vec::new();
        if let Some(l) = &self.listener {
            out.push((l.as_raw_fd(), libc::POLLIN));
        }
        for c in &self.clients {
            out.push((c.stream.as_raw_fd(), libc::POLLIN));
        }
        if let Some(i) = &self.input
            && !i.pending.is_empty()
        {
            out.push((i.fd.as_raw_fd(), libc::POLLOUT));
        }
        out
    }

    /// Accepts new clients, reads what clients sent, writes pending input.
    pub(crate) fn service(&mut self) {
        if let Some(listener) = &self.listener {
            while let Ok((stream, _)) = listener.accept() {
                // Blocking writes bounded by a timeout; reads never block
                // (MSG_DONTWAIT below).
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_write_timeout(Some(CLIENT_SEND_TIMEOUT));
                self.clients.push(Client {
                    stream,
                    decoder: Decoder::default(),
                });
            }
        }
        let mut frames = Vec::new();
        self.clients.retain_mut(|c| {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match nix::sys::socket::recv(
                    c.stream.as_raw_fd(),
                    &mut buf,
                    nix::sys::socket::MsgFlags::MSG_DONTWAIT,
                ) {
                    Ok(0) => return false,
                    Ok(n) => c.decoder.push(&buf[..n]),
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(nix::errno::Errno::EAGAIN) => break,
                    Err(_) => return false,
                }
            }
            loop {
                match c.decoder.next_frame() {
                    Ok(Some(f)) => frames.push(f),
                    Ok(None) => return true,
                    Err(_) => return false,
                }
            }
        });
        for (kind, payload) in frames {
            self.apply(kind, &payload);
        }
        self.flush();
    }

    fn apply(&mut self, kind: u8, payload: &[u8]) {
        match kind {
            attach_wire::STDIN => {
                if let Some(i) = &mut self.input {
                    i.pending.extend_from_slice(payload);
                }
            }
            attach_wire::RESIZE => {
                if let (Some(t), Some((rows, cols))) =
                    (&self.terminal, attach_wire::parse_size(payload))
                {
                    let size = berth_runtime::console::WindowSize { rows, cols };
                    let _ = berth_runtime::console::resize(t, size);
                }
            }
            // A terminal has no end of input short of hanging up.
            attach_wire::CLOSE_STDIN if self.input.as_ref().is_some_and(|i| !i.tty) => {
                self.flush();
                self.input = None;
            }
            _ => {}
        }
    }

    /// Writes what the input can take now.
    fn flush(&mut self) {
        let Some(i) = &mut self.input else {
            return;
        };
        while !i.pending.is_empty() {
            match nix::unistd::write(&i.fd, &i.pending) {
                Ok(n) => {
                    i.pending.drain(..n);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(_) => {
                    // The reader is gone: nothing will read input any more.
                    i.pending.clear();
                    return;
                }
            }
        }
    }

    /// Sends output to every attached client; a client that cannot take it
    /// within the timeout is dropped.
    pub(crate) fn broadcast(&mut self, kind: u8, data: &[u8]) {
        if self.clients.is_empty() {
            return;
        }
        let frame = attach_wire::encode(kind, data);
        self.clients
            .retain_mut(|c| match c.stream.write_all(&frame) {
                Ok(()) => true,
                Err(e) if e.kind() == ErrorKind::Interrupted => true,
                Err(_) => false,
            });
    }
}

/// Reads what `fd` has, for the log and attached clients; true at its end
/// (no writer left; for a terminal's master, EIO once the slave is closed).
pub(crate) fn read_available(fd: &OwnedFd, mut sink: impl FnMut(&[u8])) -> bool {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match nix::unistd::read(fd.as_fd(), &mut buf) {
            Ok(0) => return true,
            Ok(n) => sink(&buf[..n]),
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => return false,
            // EIO: the terminal's slave side is closed.
            Err(_) => return true,
        }
    }
}
