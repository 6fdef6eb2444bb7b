//! CRI container log writer used by the per-container monitor process.
//!
//! The monitor reads the container's stdout and stderr pipes and turns the
//! bytes into the CRI log format that kubelet's log reader and `crictl logs`
//! parse, one record per line:
//!
//! ```text
//! <timestamp RFC3339Nano> <stream> <tag> <content>\n
//! ```
//!
//! * the timestamp is UTC and formatted exactly like Go's `time.RFC3339Nano`
//!   (trailing zeros of the fraction trimmed, no `.` when the fraction is 0);
//! * the stream is `stdout` or `stderr`;
//! * the tag is `F` (full line) or `P` (partial: the line continues in the
//!   next record of the same stream);
//! * the content is the line without its `\n` (a `\r` before it is kept, as
//!   containerd does).
//!
//! Lines longer than the maximum line size are split into `P` records of
//! exactly `max_line` bytes followed by the remainder tagged `F` once its
//! newline arrives. Data without a newline is buffered per stream (stdout and
//! stderr are independent) until a newline, the maximum size or the end of the
//! stream; at the end of a stream the buffered rest is written as an `F`
//! record (containerd's behaviour).
//!
//! The writer is synchronous and keeps no userspace buffering of the file:
//! every [`LogWriter::feed`] call that produces records writes them with one
//! `write(2)` to an `O_APPEND` file, so nothing already fed is lost if the
//! monitor dies afterwards (except a not yet terminated partial line).

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Timelike, Utc};

/// Default maximum size of one log record's content (16 KiB, as containerd).
pub const DEFAULT_MAX_LINE: usize = 16 * 1024;

/// Mode of a log file created by the writer (as containerd, `0640`).
const LOG_FILE_MODE: u32 = 0o640;

/// One of the container's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The container's standard output.
    Stdout,
    /// The container's standard error.
    Stderr,
}

impl Stream {
    /// The stream's name as written in the CRI log (`stdout` / `stderr`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// Writes a container's stdout/stderr to a CRI-format log file.
///
/// Line splitting rules:
///
/// * a line longer than `max_line` bytes is written as `P` records of exactly
///   `max_line` bytes followed by an `F` record with the remainder (which is
///   never empty);
/// * a line of exactly `max_line` bytes followed by `\n` is written as a
///   single `F` record. (containerd's `bufio.Reader.ReadLine` with a buffer of
///   `max_line` bytes would emit a `P` record followed by an empty `F` record;
///   we deliberately emit `F` only.) Consequently, once `max_line` bytes of a
///   line are buffered the writer waits for one more byte (or the end of the
///   stream) to decide between `P` and `F`;
/// * an empty line produces a record with empty content
///   (`... stdout F \n`);
/// * at the end of a stream ([`LogWriter::finish`]) a pending partial line is
///   written as an `F` record.
#[derive(Debug)]
pub struct LogWriter {
    /// Path of the log file; `None` discards everything.
    path: Option<PathBuf>,
    /// The open log file (`None` only when discarding).
    file: Option<File>,
    /// Maximum content size of one record (at least 1).
    max_line: usize,
    /// Pending (not yet newline-terminated) data per stream, indexed by
    /// [`Stream::index`]. Never longer than `max_line`.
    pending: [Vec<u8>; 2],
    /// Reusable buffer holding the records produced by one call.
    buf: Vec<u8>,
    /// Reusable buffer holding the formatted timestamp of one call.
    ts: Vec<u8>,
}

impl LogWriter {
    /// Opens (creating with mode `0640`, appending) the log at `path`.
    ///
    /// `path` `None` discards everything (a container without `log_path`)
    /// but all calls are still accepted. A `max_line` of 0 is treated as 1.
    ///
    /// # Errors
    ///
    /// Returns the error of opening or creating the file.
    pub fn open(path: Option<&Path>, max_line: usize) -> io::Result<Self> {
        let file = match path {
            Some(p) => Some(open_log_file(p)?),
            None => None,
        };
        Ok(Self {
            path: path.map(Path::to_path_buf),
            file,
            max_line: max_line.max(1),
            pending: [Vec::new(), Vec::new()],
            buf: Vec::new(),
            ts: Vec::new(),
        })
    }

    /// The log file path, `None` when discarding.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Feeds bytes read from one stream.
    ///
    /// Complete records are written immediately, all records produced by
    /// this call with one write; they share one timestamp taken now. Bytes
    /// not terminated by a newline stay buffered for the stream.
    ///
    /// # Errors
    ///
    /// Returns the error of writing the file (e.g. `ENOSPC`). The records of
    /// this call are then lost but the writer stays consistent: the caller
    /// may log the error and keep feeding.
    pub fn feed(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        self.ts.clear();
        let max = self.max_line;
        let pending = &mut self.pending[stream.index()];
        let mut rest = data;
        loop {
            let newline = rest.iter().position(|&b| b == b'\n');
            let mut segment = match newline {
                Some(i) => &rest[..i],
                None => rest,
            };
            // Emit P records while the line is longer than max. Invariant:
            // pending.len() <= max, so `take` never underflows.
            while pending.len() + segment.len() > max {
                let take = max - pending.len();
                let (head, tail) = segment.split_at(take);
                push_record(&mut self.buf, &mut self.ts, stream, b'P', pending, head);
                pending.clear();
                segment = tail;
            }
            let Some(i) = newline else {
                pending.extend_from_slice(segment);
                break;
            };
            push_record(&mut self.buf, &mut self.ts, stream, b'F', pending, segment);
            pending.clear();
            rest = &rest[i + 1..];
            if rest.is_empty() {
                break;
            }
        }
        self.write_buf()
    }

    /// End of one stream (pipe EOF): writes its pending partial line, if
    /// any, as an `F` record.
    ///
    /// # Errors
    ///
    /// Returns the error of writing the file; the pending data is dropped.
    pub fn finish(&mut self, stream: Stream) -> io::Result<()> {
        let pending = &mut self.pending[stream.index()];
        if pending.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        self.ts.clear();
        push_record(&mut self.buf, &mut self.ts, stream, b'F', pending, &[]);
        pending.clear();
        self.write_buf()
    }

    /// Reopens the log after kubelet renamed it (log rotation): opens (and
    /// creates) the original path again and closes the old file. Pending
    /// partial data stays buffered and goes to the new file.
    ///
    /// A no-op when discarding.
    ///
    /// # Errors
    ///
    /// Returns the error of opening the new file; the old file is then kept
    /// so that writing can continue (to the renamed file).
    pub fn reopen(&mut self) -> io::Result<()> {
        if let Some(path) = &self.path {
            let file = open_log_file(path)?;
            // Dropping the previous file closes it.
            self.file = Some(file);
        }
        Ok(())
    }

    /// Writes the records in `buf` (if any) to the file with one write.
    fn write_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = match &mut self.file {
            Some(file) => file.write_all(&self.buf),
            None => Ok(()),
        };
        self.buf.clear();
        result
    }
}

/// Appends one record whose content is `a` followed by `b` to `buf`.
///
/// `ts` is the formatted timestamp of the call, computed on first use.
fn push_record(buf: &mut Vec<u8>, ts: &mut Vec<u8>, stream: Stream, tag: u8, a: &[u8], b: &[u8]) {
    if ts.is_empty() {
        format_timestamp(Utc::now(), ts);
    }
    buf.extend_from_slice(ts);
    buf.push(b' ');
    buf.extend_from_slice(stream.as_str().as_bytes());
    buf.push(b' ');
    buf.push(tag);
    buf.push(b' ');
    buf.extend_from_slice(a);
    buf.extend_from_slice(b);
    buf.push(b'\n');
}

/// Opens `path` for appending, creating it with mode `0640` if it does not
/// exist (the mode is forced with `fchmod`, independent of the umask).
fn open_log_file(path: &Path) -> io::Result<File> {
    match OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(LOG_FILE_MODE)
        .open(path)
    {
        Ok(file) => {
            file.set_permissions(Permissions::from_mode(LOG_FILE_MODE))?;
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            OpenOptions::new().append(true).open(path)
        }
        Err(e) => Err(e),
    }
}

/// Appends `t` formatted exactly like Go's `time.RFC3339Nano` in UTC
/// (`2006-01-02T15:04:05.999999999Z`): the fraction has its trailing zeros
/// trimmed and is omitted together with the `.` when zero.
///
/// A leap second (chrono nanoseconds >= 10^9) is clamped to
/// `.999999999` since Go has no leap seconds. Years are written with at
/// least four digits.
pub fn format_timestamp(t: DateTime<Utc>, out: &mut Vec<u8>) {
    let year = t.year();
    if year < 0 {
        out.push(b'-');
    }
    push_digits(out, year.unsigned_abs(), 4);
    out.push(b'-');
    push_digits(out, t.month(), 2);
    out.push(b'-');
    push_digits(out, t.day(), 2);
    out.push(b'T');
    push_digits(out, t.hour(), 2);
    out.push(b':');
    push_digits(out, t.minute(), 2);
    out.push(b':');
    push_digits(out, t.second(), 2);
    let mut nanos = t.nanosecond().min(999_999_999);
    if nanos != 0 {
        let mut width = 9;
        while nanos.is_multiple_of(10) {
            nanos /= 10;
            width -= 1;
        }
        out.push(b'.');
        push_digits(out, nanos, width);
    }
    out.push(b'Z');
}

/// Appends `value` in decimal, zero-padded to at least `width` digits.
fn push_digits(out: &mut Vec<u8>, value: u32, width: usize) {
    let mut digits = [0u8; 10];
    let mut n = value;
    let mut len = 0;
    loop {
        // `n % 10` is below 10, so the cast cannot truncate.
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for _ in len..width {
        out.push(b'0');
    }
    out.extend(digits[..len].iter().rev());
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[derive(Debug, PartialEq, Eq)]
    struct Record {
        stream: String,
        tag: char,
        content: Vec<u8>,
    }

    fn rec(stream: &str, tag: char, content: &[u8]) -> Record {
        Record {
            stream: stream.to_owned(),
            tag,
            content: content.to_vec(),
        }
    }

    /// Parses a CRI log file, checking every timestamp parses back.
    fn parse(path: &Path) -> Vec<Record> {
        let data = std::fs::read(path).unwrap();
        assert!(data.is_empty() || data.ends_with(b"\n"));
        let mut records = Vec::new();
        for line in data.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue; // after the final newline
            }
            let mut parts = line.splitn(4, |&b| b == b' ');
            let ts = std::str::from_utf8(parts.next().unwrap()).unwrap();
            DateTime::parse_from_rfc3339(ts).unwrap();
            assert!(ts.ends_with('Z'), "{ts}");
            let stream = std::str::from_utf8(parts.next().unwrap()).unwrap();
            let tag = parts.next().unwrap();
            assert_eq!(tag.len(), 1);
            let content = parts.next().unwrap();
            records.push(Record {
                stream: stream.to_owned(),
                tag: char::from(tag[0]),
                content: content.to_vec(),
            });
        }
        records
    }

    fn setup(max: usize) -> (tempfile::TempDir, PathBuf, LogWriter) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let w = LogWriter::open(Some(&path), max).unwrap();
        (dir, path, w)
    }

    fn ts(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, ns: u32) -> String {
        let t = Utc
            .with_ymd_and_hms(y, mo, d, h, mi, s)
            .unwrap()
            .with_nanosecond(ns)
            .unwrap();
        let mut out = Vec::new();
        format_timestamp(t, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn timestamp_matches_go_rfc3339nano() {
        assert_eq!(
            ts(2026, 11, 28, 12, 46, 31, 123_456_789),
            "2026-11-28T12:46:31.123456789Z"
        );
        assert_eq!(
            ts(2026, 11, 28, 12, 46, 31, 120_000_000),
            "2026-11-28T12:46:31.12Z"
        );
        assert_eq!(ts(2026, 1, 2, 3, 4, 5, 0), "2026-01-02T03:04:05Z");
        assert_eq!(ts(2026, 1, 2, 3, 4, 5, 1), "2026-01-02T03:04:05.000000001Z");
        assert_eq!(
            ts(999, 12, 31, 23, 59, 59, 500),
            "0999-12-31T23:59:59.0000005Z"
        );
        for s in [
            ts(2026, 11, 28, 12, 46, 31, 123_456_789),
            ts(2026, 11, 28, 12, 46, 31, 120_000_000),
            ts(2026, 1, 2, 3, 4, 5, 0),
        ] {
            let parsed = DateTime::parse_from_rfc3339(&s).unwrap();
            let mut again = Vec::new();
            format_timestamp(parsed.with_timezone(&Utc), &mut again);
            assert_eq!(again, s.as_bytes());
        }
    }

    #[test]
    fn timestamp_of_now_parses_back() {
        let now = Utc::now();
        let mut out = Vec::new();
        format_timestamp(now, &mut out);
        let parsed = DateTime::parse_from_rfc3339(std::str::from_utf8(&out).unwrap()).unwrap();
        assert_eq!(parsed, now);
    }

    #[test]
    fn interleaved_streams() {
        let (_dir, path, mut w) = setup(DEFAULT_MAX_LINE);
        w.feed(Stream::Stdout, b"out1\nout").unwrap();
        w.feed(Stream::Stderr, b"err1\nerr2\n").unwrap();
        w.feed(Stream::Stdout, b"2\n").unwrap();
        w.feed(Stream::Stderr, b"with spaces  \n").unwrap();
        assert_eq!(
            parse(&path),
            vec![
                rec("stdout", 'F', b"out1"),
                rec("stderr", 'F', b"err1"),
                rec("stderr", 'F', b"err2"),
                rec("stdout", 'F', b"out2"),
                rec("stderr", 'F', b"with spaces  "),
            ]
        );
    }

    #[test]
    fn chunk_split_mid_line() {
        let (_dir, path, mut w) = setup(DEFAULT_MAX_LINE);
        w.feed(Stream::Stdout, b"hel").unwrap();
        assert!(parse(&path).is_empty(), "partial line must stay buffered");
        w.feed(Stream::Stdout, b"lo wo").unwrap();
        w.feed(Stream::Stdout, b"rld\nnext").unwrap();
        w.feed(Stream::Stdout, b"\n").unwrap();
        assert_eq!(
            parse(&path),
            vec![
                rec("stdout", 'F', b"hello world"),
                rec("stdout", 'F', b"next")
            ]
        );
    }

    #[test]
    fn long_line_split_at_max() {
        let line: Vec<u8> = (0..40_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let expected = vec![
            rec("stdout", 'P', &line[..16_384]),
            rec("stdout", 'P', &line[16_384..32_768]),
            rec("stdout", 'F', &line[32_768..]),
        ];
        assert_eq!(expected[2].content.len(), 7232);

        // In one feed.
        let (_dir, path, mut w) = setup(16_384);
        let mut data = line.clone();
        data.push(b'\n');
        w.feed(Stream::Stdout, &data).unwrap();
        assert_eq!(parse(&path), expected);

        // In odd-sized chunks.
        let (_dir2, path2, mut w2) = setup(16_384);
        for chunk in data.chunks(4099) {
            w2.feed(Stream::Stdout, chunk).unwrap();
        }
        assert_eq!(parse(&path2), expected);
    }

    #[test]
    fn exact_max_line_is_one_full_record() {
        let (_dir, path, mut w) = setup(8);
        w.feed(Stream::Stdout, b"12345678\n").unwrap();
        w.feed(Stream::Stdout, b"abcdefgh").unwrap();
        assert!(parse(&path).len() == 1, "waits for the byte after max");
        w.feed(Stream::Stdout, b"\n").unwrap();
        w.feed(Stream::Stdout, b"123456789\n").unwrap();
        w.feed(Stream::Stdout, b"1234567812345678\n").unwrap();
        w.feed(Stream::Stdout, b"ABCDEFGH").unwrap();
        w.feed(Stream::Stdout, b"I").unwrap();
        w.finish(Stream::Stdout).unwrap();
        assert_eq!(
            parse(&path),
            vec![
                rec("stdout", 'F', b"12345678"),
                rec("stdout", 'F', b"abcdefgh"),
                rec("stdout", 'P', b"12345678"),
                rec("stdout", 'F', b"9"),
                rec("stdout", 'P', b"12345678"),
                rec("stdout", 'F', b"12345678"),
                rec("stdout", 'P', b"ABCDEFGH"),
                rec("stdout", 'F', b"I"),
            ]
        );
    }

    #[test]
    fn empty_lines_and_crlf() {
        let (_dir, path, mut w) = setup(DEFAULT_MAX_LINE);
        w.feed(Stream::Stdout, b"\n\na\r\n").unwrap();
        w.feed(Stream::Stderr, b"\n").unwrap();
        assert_eq!(
            parse(&path),
            vec![
                rec("stdout", 'F', b""),
                rec("stdout", 'F', b""),
                rec("stdout", 'F', b"a\r"),
                rec("stderr", 'F', b""),
            ]
        );
        let raw = std::fs::read_to_string(&path).unwrap();
        assert!(raw.lines().next().unwrap().ends_with(" stdout F "), "{raw}");
    }

    #[test]
    fn eof_flushes_pending_as_full() {
        let (_dir, path, mut w) = setup(DEFAULT_MAX_LINE);
        w.feed(Stream::Stdout, b"done\nno newline").unwrap();
        w.feed(Stream::Stderr, b"err tail").unwrap();
        w.finish(Stream::Stdout).unwrap();
        // Finishing again, or a stream with nothing pending, writes nothing.
        w.finish(Stream::Stdout).unwrap();
        assert_eq!(
            parse(&path),
            vec![
                rec("stdout", 'F', b"done"),
                rec("stdout", 'F', b"no newline")
            ]
        );
        w.finish(Stream::Stderr).unwrap();
        assert_eq!(parse(&path)[2], rec("stderr", 'F', b"err tail"));
        assert_eq!(parse(&path).len(), 3);
    }

    #[test]
    fn reopen_after_rename() {
        let (dir, path, mut w) = setup(DEFAULT_MAX_LINE);
        w.feed(Stream::Stdout, b"old\npar").unwrap();
        let rotated = dir.path().join("0.log.20261128-124631");
        std::fs::rename(&path, &rotated).unwrap();
        // Before reopen, writing continues to the renamed file.
        w.feed(Stream::Stderr, b"still old\n").unwrap();
        w.reopen().unwrap();
        assert!(path.exists());
        w.feed(Stream::Stdout, b"tial\n").unwrap();
        assert_eq!(
            parse(&rotated),
            vec![rec("stdout", 'F', b"old"), rec("stderr", 'F', b"still old")]
        );
        assert_eq!(parse(&path), vec![rec("stdout", 'F', b"partial")]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
    }

    #[test]
    fn file_mode_and_append() {
        let (_dir, path, mut w) = setup(DEFAULT_MAX_LINE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        w.feed(Stream::Stdout, b"first\n").unwrap();
        drop(w);
        // Reopening an existing log appends and keeps its mode.
        let mut w = LogWriter::open(Some(&path), DEFAULT_MAX_LINE).unwrap();
        assert_eq!(w.path(), Some(path.as_path()));
        w.feed(Stream::Stdout, b"second\n").unwrap();
        assert_eq!(
            parse(&path),
            vec![rec("stdout", 'F', b"first"), rec("stdout", 'F', b"second")]
        );
    }

    #[test]
    fn discard_mode_accepts_everything() {
        let mut w = LogWriter::open(None, DEFAULT_MAX_LINE).unwrap();
        assert_eq!(w.path(), None);
        w.feed(Stream::Stdout, b"hello\npartial").unwrap();
        w.feed(Stream::Stderr, &[b'x'; 40_000]).unwrap();
        w.reopen().unwrap();
        w.finish(Stream::Stdout).unwrap();
        w.finish(Stream::Stderr).unwrap();
    }

    #[test]
    fn write_error_is_returned_and_writer_continues() {
        let path = Path::new("/dev/full");
        if !path.exists() {
            return;
        }
        let mut w = LogWriter::open(Some(path), 4).unwrap();
        let err = w.feed(Stream::Stdout, b"line\nab").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        // Pending data survives; the next feed still works (and fails).
        assert!(w.feed(Stream::Stdout, b"c").is_ok(), "nothing to write yet");
        assert_eq!(w.pending[0], b"abc");
        assert!(w.feed(Stream::Stdout, b"\n").is_err());
        assert!(w.pending[0].is_empty());
        assert!(w.feed(Stream::Stderr, b"x\n").is_err());
    }

    #[test]
    fn zero_max_line_is_clamped() {
        let (_dir, path, mut w) = setup(0);
        w.feed(Stream::Stdout, b"ab\n").unwrap();
        assert_eq!(
            parse(&path),
            vec![rec("stdout", 'P', b"a"), rec("stdout", 'F', b"b")]
        );
    }
}
