//! The per-container monitor (`crius monitor <bundle>`): the crius binary
//! re-executed by the daemon at StartContainer, single-threaded, no async
//! runtime. It detaches into its own session, creates and starts the
//! container (youki's `libcontainer`, or an external OCI runtime binary
//! driven through the same bundle), is the parent/subreaper of its process,
//! owns its stdio and writes the CRI log, records the exit atomically in
//! `exit.json`, and answers the daemon on `monitor.sock` (protocol in
//! `proto/monitor.proto`). The daemon may restart at any moment; the
//! monitor does not notice.
//!
//! Files in the bundle dir (`<run_dir>/containers/<id>/`, 0700):
//! `launch.json` (written by the daemon), `config.json` (OCI spec),
//! `rootfs/`, `monitor.sock`, `exit.json`, `monitor.log` (the monitor's own
//! stderr), `console.sock` (transient, tty only), `pid`.

mod attach;
pub mod client;
pub mod exec;
pub mod log;
mod run;
pub mod zygote;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use run::main;

/// Generated from `proto/monitor.proto`.
#[allow(missing_debug_implementations, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/crius.monitor.v1.rs"));
}

/// This build's protocol version (see `proto/monitor.proto`).
pub const PROTOCOL_VERSION: u32 = 2;
/// Upper bound on one framed message; requests and answers are tiny.
pub const MAX_FRAME: usize = 1 << 20;

/// What the daemon tells a monitor to run, as `launch.json` in the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launch {
    pub id: String,
    /// Where the monitor listens (short: unix socket paths are limited to
    /// 108 bytes); its directory is 0700. The terminal's console socket is
    /// the same path with extension `tty`.
    pub socket: PathBuf,
    /// The OCI runtime's state root (`--root`).
    pub state_root: PathBuf,
    /// An external OCI runtime binary (runc, crun, youki); None = the
    /// built-in executor (libcontainer).
    pub runtime: Option<PathBuf>,
    /// The CRI log file; None = output discarded.
    pub log_path: Option<PathBuf>,
    pub max_log_line: usize,
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
    /// The container's cgroup (cgroupfs form), for OOM detection and for
    /// killing what is left when it shares a PID namespace.
    pub cgroup_path: String,
    /// Whether the container has a PID namespace of its own (when it does,
    /// the kernel ends every process in it when the init process exits).
    pub own_pid_ns: bool,
}

impl Launch {
    pub const FILE: &'static str = "launch.json";

    pub fn load(bundle: &Path) -> io::Result<Self> {
        let bytes = std::fs::read(bundle.join(Self::FILE))?;
        serde_json::from_slice(&bytes).map_err(io::Error::other)
    }

    pub fn save(&self, bundle: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        write_atomic(&bundle.join(Self::FILE), &bytes)
    }
}

/// What the monitor prints on its stdout once, for the daemon waiting in
/// StartContainer: the started process, or why it could not start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub started_ns: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `exit.json`: written once, atomically, when the container's process has
/// exited. It outlives the monitor; the daemon reads it after restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit status, or 128 + signal when a signal ended the process.
    pub exit_code: i32,
    #[serde(default)]
    pub signal: i32,
    pub finished_ns: i64,
    #[serde(default)]
    pub oom_killed: bool,
    #[serde(default)]
    pub message: String,
}

impl ExitRecord {
    pub const FILE: &'static str = "exit.json";

    /// The record if the container has exited; None if not (yet).
    pub fn load(bundle: &Path) -> io::Result<Option<Self>> {
        match std::fs::read(bundle.join(Self::FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(io::Error::other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, bundle: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(io::Error::other)?;
        write_atomic(&bundle.join(Self::FILE), &bytes)
    }

    pub fn to_proto(&self) -> proto::Exit {
        proto::Exit {
            exit_code: self.exit_code,
            signal: self.signal,
            finished_ns: self.finished_ns,
            oom_killed: self.oom_killed,
            message: self.message.clone(),
        }
    }

    pub fn from_proto(e: &proto::Exit) -> Self {
        Self {
            exit_code: e.exit_code,
            signal: e.signal,
            finished_ns: e.finished_ns,
            oom_killed: e.oom_killed,
            message: e.message.clone(),
        }
    }
}

/// Writes a temp file and renames it over `path`: a process killed at any
/// point (daemon or monitor) leaves either the old file or the new one,
/// never half of it. No fsync: every file written this way lives in the
/// volatile run dir, which a reboot clears (tmpfs on real nodes), so only
/// process crashes matter, and the page cache outlives those. Durable state
/// is the store's.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
    }
    std::fs::rename(&tmp, path)
}

/// Writes one length-prefixed message.
pub fn write_frame(w: &mut impl Write, msg: &impl prost::Message) -> io::Result<()> {
    let body = msg.encode_to_vec();
    let len = u32::try_from(body.len()).map_err(io::Error::other)?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf)
}

/// Reads one length-prefixed message (at most [`MAX_FRAME`] bytes).
pub fn read_frame<M: prost::Message + Default>(r: &mut impl Read) -> io::Result<M> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("monitor message of {len} bytes is over the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    M::decode(body.as_slice()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Accepts the runtime's connection on a console socket and takes the
/// terminal master it sends (SCM_RIGHTS), as runc's `--console-socket`.
/// Waits at most `wait`; `None` when `abort` (e.g. the exec helper's report
/// pipe) became readable first: whoever was to connect has given up.
pub fn receive_console(
    listener: &std::os::unix::net::UnixListener,
    abort: Option<std::os::fd::BorrowedFd<'_>>,
    wait: std::time::Duration,
) -> io::Result<Option<std::os::fd::OwnedFd>> {
    use std::os::fd::AsFd as _;

    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let deadline = std::time::Instant::now() + wait;
    listener.set_nonblocking(true)?;
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no terminal arrived within {}s", wait.as_secs()),
            ));
        }
        let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        if let Some(a) = abort {
            fds.push(PollFd::new(a, PollFlags::POLLIN));
        }
        let ms =
            PollTimeout::try_from(left.as_millis().min(10_000) as u64).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(io::Error::from(e)),
        }
        let aborted = fds
            .get(1)
            .and_then(|f| f.revents())
            .is_some_and(|r| !r.is_empty());
        if aborted {
            return Ok(None);
        }
    };
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut data = [0u8; 4096];
    let (_, fds) = crate::sys::process::recv_with_fds(stream.as_fd(), &mut data)?;
    if let Some(fd) = fds.into_iter().next() {
        return Ok(Some(fd));
    }
    Err(io::Error::other(
        "no file descriptor in the console message",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_refuse_oversize() {
        let req = proto::Request {
            version: PROTOCOL_VERSION,
            kind: Some(proto::request::Kind::Signal(proto::Signal {
                signal: 15,
                all: true,
            })),
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &req).unwrap();
        let back: proto::Request = read_frame(&mut buf.as_slice()).unwrap();
        assert_eq!(back, req);

        let mut huge = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 8]);
        let err = read_frame::<proto::Request>(&mut huge.as_slice()).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
    }

    #[test]
    fn unknown_request_kinds_decode_as_none() {
        // A newer daemon's request kind (field 99) reaches an older monitor
        // as an empty `kind`, which it answers with an error, not a panic.
        let mut bytes = proto::Request {
            version: 2,
            kind: None,
        }
        .encode_to_vec();
        bytes.extend_from_slice(&[0x9a, 0x06, 0x00]); // field 99, len 0
        let req = <proto::Request as prost::Message>::decode(bytes.as_slice()).unwrap();
        assert_eq!(req.version, 2);
        assert!(req.kind.is_none());
    }

    #[test]
    fn exit_record_is_written_atomically_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ExitRecord::load(dir.path()).unwrap(), None);
        let rec = ExitRecord {
            exit_code: 137,
            signal: 9,
            finished_ns: 5,
            oom_killed: true,
            message: String::new(),
        };
        rec.save(dir.path()).unwrap();
        assert_eq!(ExitRecord::load(dir.path()).unwrap(), Some(rec));
        assert!(!dir.path().join("exit.tmp").exists());
    }

    use prost::Message as _;
}
