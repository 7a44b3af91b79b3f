//! runc's console socket: a container process with `process.terminal` (or an
//! `exec --tty`) runs on a new PTY, opened inside the container (its devpts
//! instance, so the process sees its own `/dev/pts/N`); the slave becomes the
//! process's controlling terminal and stdin, stdout and stderr, and the master
//! is sent to the caller over the Unix socket named by `--console-socket`
//! (SCM_RIGHTS, with the master's path as the message, as runc's
//! `utils.SendFile`). A caller receives it with [`recv_master`], the same for
//! berth-runtime and runc.
//!
//! The socket is connected by the runtime before it enters the container (the
//! path is the host's), and the connected fd is handed to the process that
//! opens the PTY.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot connect to the console socket {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to {what}: {source}")]
    Sys { what: &'static str, source: Errno },
    #[error("the console socket sent no file descriptor")]
    NoFd,
}

fn sys(what: &'static str) -> impl FnOnce(Errno) -> ConsoleError {
    move |source| ConsoleError::Sys { what, source }
}

/// Connects to the caller's console socket (call before entering the container).
pub fn connect(path: &Path) -> Result<OwnedFd, ConsoleError> {
    let stream = UnixStream::connect(path).map_err(|source| ConsoleError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    let fd = OwnedFd::from(stream);
    // Inherited by the forked process, never by what it execs.
    nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(sys("mark the console socket close-on-exec"))?;
    Ok(fd)
}

/// A terminal's size in character cells.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

/// Sets the window size of the terminal `fd` (a master or a slave); the
/// session on it gets SIGWINCH.
pub fn resize(fd: &impl AsFd, size: WindowSize) -> Result<(), ConsoleError> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
    let rc = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    Errno::result(rc)
        .map(drop)
        .map_err(sys("set the window size"))
}

/// In the process that is about to exec the container's command, inside the
/// container's mount namespace: opens a PTY, makes its slave the controlling
/// terminal and stdio of a new session, and sends the master over `socket`.
/// `owner` gets the slave (as a login would), `size` is its first window size.
pub fn setup(
    socket: &impl AsFd,
    size: Option<WindowSize>,
    owner: (u32, u32),
) -> Result<(), ConsoleError> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(sys("open /dev/ptmx"))?;
    nix::pty::grantpt(&master).map_err(sys("grant the pty"))?;
    nix::pty::unlockpt(&master).map_err(sys("unlock the pty"))?;
    let name = nix::pty::ptsname_r(&master).map_err(sys("name the pty"))?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(sys("open the pty's slave"))?;
    if let Some(size) = size.filter(|s| s.rows > 0 && s.cols > 0) {
        resize(&slave, size)?;
    }
    nix::unistd::fchown(
        &slave,
        Some(nix::unistd::Uid::from_raw(owner.0)),
        Some(nix::unistd::Gid::from_raw(owner.1)),
    )
    .map_err(sys("give the pty to the process's user"))?;
    // A session leader already (init under `run`) keeps its session.
    match nix::unistd::setsid() {
        Ok(_) | Err(Errno::EPERM) => {}
        Err(e) => return Err(sys("start a session")(e)),
    }
    // SAFETY: TIOCSCTTY takes an integer argument.
    let rc = unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) };
    Errno::result(rc).map_err(sys("make the pty the controlling terminal"))?;
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors.
        let rc = unsafe { libc::dup2(slave.as_raw_fd(), target) };
        Errno::result(rc).map_err(sys("put the pty on stdio"))?;
    }
    drop(slave);
    send_fd(socket, master.as_fd(), "/dev/ptmx")
}

/// Sends `fd` over the Unix socket `socket` with `name` as the message.
pub fn send_fd(socket: &impl AsFd, fd: impl AsFd, name: &str) -> Result<(), ConsoleError> {
    let fds = [fd.as_fd().as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(name.as_bytes())];
    loop {
        match sendmsg::<()>(
            socket.as_fd().as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(Errno::EINTR) => continue,
            other => {
                return other
                    .map(drop)
                    .map_err(sys("send the pty over the console socket"));
            }
        }
    }
}

/// Receives a terminal's master from a connected console socket (berth-runtime
/// and runc send it so); the fd is close-on-exec.
pub fn recv_master(socket: &impl AsFd) -> Result<OwnedFd, ConsoleError> {
    let mut name = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = loop {
        match recvmsg::<()>(
            socket.as_fd().as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            other => break other.map_err(sys("receive from the console socket"))?,
        }
    };
    let mut received: Vec<OwnedFd> = Vec::new();
    for cmsg in msg
        .cmsgs()
        .map_err(sys("read the console socket's message"))?
    {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            // SAFETY: the kernel just installed these fds in this process.
            received.extend(
                fds.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let mut received = received.into_iter();
    received.next().ok_or(ConsoleError::NoFd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_master_goes_through_the_socket() {
        let (a, b) = UnixStream::pair().unwrap();
        let (master, slave) = {
            let pty = nix::pty::openpty(None, None).unwrap();
            (pty.master, pty.slave)
        };
        send_fd(&a, master.as_fd(), "/dev/ptmx").unwrap();
        drop(master);
        let got = recv_master(&b).unwrap();
        resize(
            &got,
            WindowSize {
                rows: 33,
                cols: 101,
            },
        )
        .unwrap();
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes a winsize to a valid pointer.
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        assert_eq!((ws.ws_row, ws.ws_col), (33, 101));
        nix::unistd::write(&got, b"x\n").unwrap();
        let mut buf = [0u8; 8];
        let n = nix::unistd::read(&slave, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"x\n");
    }

    #[test]
    fn no_fd_is_an_error() {
        let (a, b) = UnixStream::pair().unwrap();
        use std::io::Write;
        (&a).write_all(b"nothing").unwrap();
        assert!(matches!(recv_master(&b), Err(ConsoleError::NoFd)));
    }
}
