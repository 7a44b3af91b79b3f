//! The frames on a shim's attach socket (`attach.sock` in the task's state
//! directory): one byte of kind, a big-endian u32 length, the payload. The
//! agent sends stdin bytes, window sizes and the end of stdin; the shim sends
//! the container's output, and closes the connection when init has exited.

/// Agent → shim: bytes for the process's stdin (or its terminal).
pub(crate) const STDIN: u8 = 1;
/// Agent → shim: a window size, rows then cols, each a big-endian u16.
pub(crate) const RESIZE: u8 = 2;
/// Agent → shim: the end of stdin (ignored under a terminal).
pub(crate) const CLOSE_STDIN: u8 = 3;
/// Shim → agent: the process's stdout (everything, under a terminal).
pub(crate) const STDOUT: u8 = 1;
/// Shim → agent: the process's stderr.
pub(crate) const STDERR: u8 = 2;

/// The largest payload a frame carries; a longer one is a broken peer.
pub(crate) const MAX_FRAME: usize = 1 << 20;

/// One frame's bytes.
pub(crate) fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A resize frame's payload.
pub(crate) fn size_payload(rows: u16, cols: u16) -> [u8; 4] {
    let [r0, r1] = rows.to_be_bytes();
    let [c0, c1] = cols.to_be_bytes();
    [r0, r1, c0, c1]
}

/// Rows and cols from a resize payload.
pub(crate) fn parse_size(payload: &[u8]) -> Option<(u16, u16)> {
    match payload {
        [r0, r1, c0, c1] => Some((
            u16::from_be_bytes([*r0, *r1]),
            u16::from_be_bytes([*c0, *c1]),
        )),
        _ => None,
    }
}

/// Frames out of a byte stream that arrives in pieces.
#[derive(Default)]
pub(crate) struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame; `Err` when the peer sent an oversized one.
    pub(crate) fn next_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, usize> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_FRAME {
            return Err(len);
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let kind = self.buf[0];
        let payload = self.buf[5..5 + len].to_vec();
        self.buf.drain(..5 + len);
        Ok(Some((kind, payload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere_come_out_whole() {
        let mut bytes = encode(STDIN, b"hello");
        bytes.extend(encode(RESIZE, &size_payload(24, 80)));
        bytes.extend(encode(CLOSE_STDIN, b""));
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for chunk in bytes.chunks(3) {
            d.push(chunk);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got[0], (STDIN, b"hello".to_vec()));
        assert_eq!(parse_size(&got[1].1), Some((24, 80)));
        assert_eq!(got[2], (CLOSE_STDIN, Vec::new()));
        let mut d = Decoder::default();
        d.push(&[STDIN, 0xff, 0xff, 0xff, 0xff]);
        assert!(d.next_frame().is_err());
    }
}
