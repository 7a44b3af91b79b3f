//! Container logs: size-capped rotating files in the CRI log format
//! (`2026-11-22T07:20:15.123456789Z stdout F text`), written by the shim and
//! read back here for `berth service logs [-f]`.
//!
//! Files of a container, newest first: `container.log`, `container.log.1`, ...
//! `container.log.<max_files-1>`. The shim writes a `closed` marker next to them
//! when the container's output has ended, which ends a follow.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::error::{Result, SupervisorError};

pub(crate) const CURRENT: &str = "container.log";
pub(crate) const CLOSED: &str = "closed";
/// Longer lines are split into partial (`P`) records of this size.
const MAX_LINE: usize = 16 * 1024;

/// Which output of the container a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    fn name(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// One line of a container's output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// RFC 3339 UTC time the shim read it, nanoseconds.
    pub time: String,
    pub stream: LogStream,
    /// False for the leading pieces of a line longer than 16 KiB.
    pub complete: bool,
    pub text: String,
}

impl LogLine {
    /// Parses one record of a log file.
    pub fn parse(record: &str) -> Option<LogLine> {
        let mut parts = record.splitn(4, ' ');
        let time = parts.next()?.to_string();
        let stream = match parts.next()? {
            "stdout" => LogStream::Stdout,
            "stderr" => LogStream::Stderr,
            _ => return None,
        };
        let complete = match parts.next()? {
            "F" => true,
            "P" => false,
            _ => return None,
        };
        let text = parts.next().unwrap_or("").to_string();
        Some(LogLine {
            time,
            stream,
            complete,
            text,
        })
    }
}

/// Size limits of a container's log files.
#[derive(Clone, Copy, Debug)]
pub struct LogLimits {
    /// Bytes per file before it is rotated.
    pub max_bytes: u64,
    /// Files kept, the current one included (at least 1).
    pub max_files: u32,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            max_bytes: 10 * 1024 * 1024,
            max_files: 3,
        }
    }
}

/// Appends records to `dir/container.log`, rotating at the size cap.
pub struct LogWriter {
    dir: PathBuf,
    limits: LogLimits,
    file: File,
    size: u64,
    /// Bytes of an unfinished line, per stream.
    pending: [Vec<u8>; 2],
}

impl LogWriter {
    pub fn open(dir: &Path, limits: LogLimits) -> Result<LogWriter> {
        std::fs::create_dir_all(dir).map_err(|e| SupervisorError::io("create", dir, e))?;
        let path = dir.join(CURRENT);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| SupervisorError::io("open", &path, e))?;
        let size = file
            .metadata()
            .map_err(|e| SupervisorError::io("stat", &path, e))?
            .len();
        Ok(LogWriter {
            dir: dir.to_path_buf(),
            limits,
            file,
            size,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Takes bytes the container wrote; whole lines become records.
    pub fn write(&mut self, stream: LogStream, data: &[u8]) -> Result<()> {
        let i = stream as usize;
        let mut buf = std::mem::take(&mut self.pending[i]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
            let line = buf[start..start + nl].to_vec();
            self.record(stream, &line, true)?;
            start += nl + 1;
        }
        let mut rest = buf.split_off(start);
        while rest.len() >= MAX_LINE {
            let tail = rest.split_off(MAX_LINE);
            self.record(stream, &rest, false)?;
            rest = tail;
        }
        self.pending[i] = rest;
        Ok(())
    }

    /// Writes what is left of unfinished lines (at the end of the output).
    pub fn flush_partial(&mut self) -> Result<()> {
        for stream in [LogStream::Stdout, LogStream::Stderr] {
            let rest = std::mem::take(&mut self.pending[stream as usize]);
            if !rest.is_empty() {
                self.record(stream, &rest, true)?;
            }
        }
        Ok(())
    }

    fn record(&mut self, stream: LogStream, line: &[u8], complete: bool) -> Result<()> {
        let text = String::from_utf8_lossy(line);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        let rec = format!(
            "{} {} {} {text}\n",
            rfc3339_now(),
            stream.name(),
            if complete { "F" } else { "P" }
        );
        if self.size > 0 && self.size + rec.len() as u64 > self.limits.max_bytes {
            self.rotate()?;
        }
        let path = self.dir.join(CURRENT);
        self.file
            .write_all(rec.as_bytes())
            .map_err(|e| SupervisorError::io("write", &path, e))?;
        self.size += rec.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        let keep = self.limits.max_files.max(1);
        let name = |n: u32| {
            if n == 0 {
                self.dir.join(CURRENT)
            } else {
                self.dir.join(format!("{CURRENT}.{n}"))
            }
        };
        if keep == 1 {
            let p = name(0);
            self.file
                .set_len(0)
                .map_err(|e| SupervisorError::io("truncate", &p, e))?;
            self.size = 0;
            return Ok(());
        }
        for n in (0..keep - 1).rev() {
            let (from, to) = (name(n), name(n + 1));
            match std::fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(SupervisorError::io("rotate", from, e)),
            }
        }
        let p = name(0);
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(|e| SupervisorError::io("open", &p, e))?;
        self.size = 0;
        Ok(())
    }
}

/// The log files of `dir`, oldest first.
fn files_oldest_first(dir: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix(&format!("{CURRENT}."))?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    files.push(dir.join(CURRENT));
    files
}

/// Every record in `dir`'s files, oldest first, the last `tail` of them if set,
/// and the position reached in the current file (for following).
pub(crate) fn read_all(dir: &Path, tail: Option<usize>) -> Result<(Vec<LogLine>, Cursor)> {
    let mut lines = std::collections::VecDeque::new();
    let mut cursor = Cursor::default();
    for path in files_oldest_first(dir) {
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(SupervisorError::io("open", &path, e)),
        };
        let is_current = path.ends_with(CURRENT);
        let mut reader = BufReader::new(file);
        let mut read = 0u64;
        loop {
            let mut buf = String::new();
            let n = reader
                .read_line(&mut buf)
                .map_err(|e| SupervisorError::io("read", &path, e))?;
            if n == 0 || !buf.ends_with('\n') {
                break;
            }
            read += n as u64;
            if let Some(l) = LogLine::parse(buf.trim_end_matches('\n')) {
                lines.push_back(l);
                if tail.is_some_and(|t| lines.len() > t) {
                    lines.pop_front();
                }
            }
        }
        if is_current {
            cursor = Cursor {
                ino: inode(&path),
                offset: read,
            };
        }
    }
    Ok((lines.into(), cursor))
}

/// Where a follower is in the current file.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Cursor {
    ino: Option<u64>,
    offset: u64,
}

fn inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// New records since `cursor`; after a rotation, the rest of the rotated file
/// first, then the new current file from its start.
pub(crate) fn read_new(dir: &Path, cursor: &mut Cursor) -> Result<Vec<LogLine>> {
    let current = dir.join(CURRENT);
    let mut out = Vec::new();
    let now = inode(&current);
    if cursor.ino.is_some() && now != cursor.ino {
        // Rotated: finish the old file, which is now container.log.1.
        let old = dir.join(format!("{CURRENT}.1"));
        if inode(&old) == cursor.ino {
            read_from(&old, cursor.offset, &mut out)?;
        }
        *cursor = Cursor {
            ino: now,
            offset: 0,
        };
    } else if cursor.ino.is_none() {
        cursor.ino = now;
    }
    cursor.offset = read_from(&current, cursor.offset, &mut out)?;
    Ok(out)
}

/// Reads whole records from `offset`; returns the offset after the last one.
fn read_from(path: &Path, offset: u64, out: &mut Vec<LogLine>) -> Result<u64> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(offset),
        Err(e) => return Err(SupervisorError::io("open", path, e)),
    };
    let len = file
        .metadata()
        .map_err(|e| SupervisorError::io("stat", path, e))?
        .len();
    let offset = if len < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| SupervisorError::io("seek", path, e))?;
    let mut data = Vec::new();
    file.read_to_end(&mut data)
        .map_err(|e| SupervisorError::io("read", path, e))?;
    let whole = data.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    for rec in String::from_utf8_lossy(&data[..whole]).lines() {
        if let Some(l) = LogLine::parse(rec) {
            out.push(l);
        }
    }
    Ok(offset + whole as u64)
}

/// Follows `dir` after `cursor`, sending records until the output is closed
/// (and drained) or the receiver is gone.
pub(crate) async fn follow(
    dir: PathBuf,
    mut cursor: Cursor,
    tx: tokio::sync::mpsc::Sender<Result<LogLine>>,
) {
    loop {
        let closed = dir.join(CLOSED).exists();
        let d = dir.clone();
        let mut c = cursor;
        let batch = tokio::task::spawn_blocking(move || read_new(&d, &mut c).map(|l| (l, c))).await;
        let lines = match batch {
            Ok(Ok((lines, c))) => {
                cursor = c;
                lines
            }
            Ok(Err(e)) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
            Err(_) => return,
        };
        for l in lines {
            if tx.send(Ok(l)).await.is_err() {
                return;
            }
        }
        if closed {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = tx.closed() => return,
        }
    }
}

/// The last stderr line of the current file (at most 200 characters), for a
/// failed task's error message.
pub(crate) fn last_stderr(dir: &Path) -> Option<String> {
    let (lines, _) = read_all(dir, Some(50)).ok()?;
    let line = lines
        .iter()
        .rev()
        .find(|l| l.stream == LogStream::Stderr && !l.text.trim().is_empty())?;
    Some(line.text.trim().chars().take(200).collect())
}

/// Now as RFC 3339 UTC with nanoseconds (the CRI log format).
pub(crate) fn rfc3339_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[cfg(test)]
fn rfc3339(secs: i64, nanos: u32) -> String {
    chrono::DateTime::from_timestamp(secs, nanos)
        .expect("a time in range")
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_795_000_000, 5), "2026-11-18T11:06:40.000000005Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn lines_are_recorded_split_and_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let limits = LogLimits {
            max_bytes: 200,
            max_files: 3,
        };
        let mut w = LogWriter::open(dir.path(), limits).unwrap();
        w.write(LogStream::Stdout, b"hel").unwrap();
        w.write(LogStream::Stderr, b"oops\n").unwrap();
        w.write(LogStream::Stdout, b"lo\nworld").unwrap();
        w.flush_partial().unwrap();
        let (lines, _) = read_all(dir.path(), None).unwrap();
        let got: Vec<_> = lines.iter().map(|l| (l.stream, l.text.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (LogStream::Stderr, "oops"),
                (LogStream::Stdout, "hello"),
                (LogStream::Stdout, "world")
            ]
        );
        for i in 0..100 {
            w.write(LogStream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        let files = files_oldest_first(dir.path());
        assert_eq!(files.len(), 3, "{files:?}");
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() <= 200);
        }
        let (lines, _) = read_all(dir.path(), Some(2)).unwrap();
        let texts: Vec<_> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, vec!["line 98", "line 99"]);
        let long = vec![b'x'; MAX_LINE + 10];
        let mut w = LogWriter::open(
            dir.path(),
            LogLimits {
                max_bytes: 1 << 20,
                max_files: 2,
            },
        )
        .unwrap();
        w.write(LogStream::Stdout, &long).unwrap();
        w.write(LogStream::Stdout, b"\n").unwrap();
        let (lines, _) = read_all(dir.path(), Some(2)).unwrap();
        assert!(!lines[0].complete && lines[0].text.len() == MAX_LINE);
        assert!(lines[1].complete && lines[1].text.len() == 10);
    }

    #[test]
    fn a_follower_crosses_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let limits = LogLimits {
            max_bytes: 150,
            max_files: 2,
        };
        let mut w = LogWriter::open(dir.path(), limits).unwrap();
        w.write(LogStream::Stdout, b"a\n").unwrap();
        let (lines, mut cursor) = read_all(dir.path(), None).unwrap();
        assert_eq!(lines.len(), 1);
        let mut seen = Vec::new();
        for i in 0..3 {
            w.write(LogStream::Stdout, format!("n{i}\n").as_bytes())
                .unwrap();
            seen.extend(read_new(dir.path(), &mut cursor).unwrap());
        }
        let texts: Vec<_> = seen.iter().map(|l| l.text.clone()).collect();
        assert_eq!(texts, vec!["n0", "n1", "n2"]);
    }
}
