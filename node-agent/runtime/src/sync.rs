//! The channel between the runtime and the processes it forks: a SOCK_SEQPACKET
//! socket pair, one message per datagram. The monitor reports init's host pid,
//! init reports `Ready` when the container is set up, or the error that stopped it.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("failed to create the sync socket pair: {0}")]
    Pair(nix::Error),
    #[error("failed to send on the sync socket: {0}")]
    Send(nix::Error),
    #[error("failed to receive on the sync socket: {0}")]
    Recv(nix::Error),
    #[error("the container's init process exited during setup without a report")]
    Closed,
    #[error("garbled message on the sync socket")]
    Garbled,
    #[error(
        "the container's state is {0} bytes, more than the sync socket carries (annotations too large?)"
    )]
    TooLong(usize),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Msg {
    /// Host pid of init (sent by the monitor).
    Pid(i32),
    /// Init finished setup.
    Ready,
    /// Init failed; the text says why.
    Error(String),
    /// Init made the namespaces and mounts and waits, before pivot_root,
    /// for the runtime's prestart and createRuntime hooks.
    Hooks,
    /// The runtime's answer to `Hooks`: they ran; the container's state JSON
    /// for init's own hooks (createContainer, startContainer).
    State(String),
}

const TAG_PID: u8 = 1;
const TAG_READY: u8 = 2;
const TAG_ERROR: u8 = 3;
const TAG_HOOKS: u8 = 4;
const TAG_STATE: u8 = 5;
/// The most a message carries (one datagram).
const MAX_TEXT: usize = 60_000;

pub fn pair() -> Result<(OwnedFd, OwnedFd), SyncError> {
    socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(SyncError::Pair)
}

pub fn send(fd: &impl AsFd, msg: &Msg) -> Result<(), SyncError> {
    let mut buf = Vec::with_capacity(16);
    match msg {
        Msg::Pid(pid) => {
            buf.push(TAG_PID);
            buf.extend_from_slice(&pid.to_le_bytes());
        }
        Msg::Ready => buf.push(TAG_READY),
        Msg::Error(text) => {
            buf.push(TAG_ERROR);
            // Keep it within one datagram.
            let bytes = text.as_bytes();
            buf.extend_from_slice(&bytes[..bytes.len().min(MAX_TEXT)]);
        }
        Msg::Hooks => buf.push(TAG_HOOKS),
        Msg::State(json) => {
            // Cut JSON is no JSON: refuse instead.
            if json.len() > MAX_TEXT {
                return Err(SyncError::TooLong(json.len()));
            }
            buf.push(TAG_STATE);
            buf.extend_from_slice(json.as_bytes());
        }
    }
    socket::send(fd.as_fd().as_raw_fd(), &buf, socket::MsgFlags::MSG_NOSIGNAL)
        .map(|_| ())
        .map_err(SyncError::Send)
}

pub fn recv(fd: &impl AsFd) -> Result<Msg, SyncError> {
    let mut buf = vec![0u8; 65_536];
    let n = loop {
        match socket::recv(fd.as_fd().as_raw_fd(), &mut buf, socket::MsgFlags::empty()) {
            Err(nix::Error::EINTR) => continue,
            other => break other.map_err(SyncError::Recv)?,
        }
    };
    if n == 0 {
        return Err(SyncError::Closed);
    }
    match buf[0] {
        TAG_PID if n == 5 => Ok(Msg::Pid(i32::from_le_bytes([
            buf[1], buf[2], buf[3], buf[4],
        ]))),
        TAG_READY => Ok(Msg::Ready),
        TAG_ERROR => Ok(Msg::Error(String::from_utf8_lossy(&buf[1..n]).into_owned())),
        TAG_HOOKS => Ok(Msg::Hooks),
        TAG_STATE => Ok(Msg::State(String::from_utf8_lossy(&buf[1..n]).into_owned())),
        _ => Err(SyncError::Garbled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_roundtrip() {
        let (a, b) = pair().expect("pair");
        for msg in [
            Msg::Pid(4242),
            Msg::Ready,
            Msg::Error("no such file".into()),
            Msg::Hooks,
            Msg::State(r#"{"id":"c"}"#.into()),
        ] {
            send(&a, &msg).expect("send");
            assert_eq!(recv(&b).expect("recv"), msg);
        }
        drop(a);
        assert!(matches!(recv(&b), Err(SyncError::Closed)));
    }
}
