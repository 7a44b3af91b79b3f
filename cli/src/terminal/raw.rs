//! The local terminal: raw mode while a remote terminal is attached (every
//! key goes through as typed, Ctrl-C included; restored when the guard is
//! dropped, on every way out), and its window size.

use std::os::fd::AsFd;

use berth_proto::v1::TerminalSize;
use nix::sys::termios::{self, SetArg, Termios};

/// Puts stdin's terminal in raw mode until dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Raw mode on stdin's terminal; None when stdin is not a terminal.
    pub fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// The window size of the terminal on stdout (else stdin), if any.
pub fn window_size() -> Option<TerminalSize> {
    use std::os::fd::AsRawFd;
    for fd in [std::io::stdout().as_raw_fd(), std::io::stdin().as_raw_fd()] {
        let mut ws = libc_winsize();
        // SAFETY: TIOCGWINSZ writes a winsize to a valid pointer.
        let rc = unsafe { nix::libc::ioctl(fd, nix::libc::TIOCGWINSZ, &mut ws) };
        if rc == 0 && ws.ws_row > 0 && ws.ws_col > 0 {
            return Some(TerminalSize {
                rows: u32::from(ws.ws_row),
                cols: u32::from(ws.ws_col),
            });
        }
    }
    None
}

fn libc_winsize() -> nix::libc::winsize {
    nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}
