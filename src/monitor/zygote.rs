//! The monitor zygote (`crius monitor-zygote`): one single-threaded crius
//! process per daemon that forks a monitor for each StartContainer.
//!
//! Why: crius is a position-independent executable, so every freshly
//! exec'd process relocates ~1 MiB of `.data.rel.ro`/`.got` pages, which
//! become that process's private memory. Monitors forked from one process
//! that did the relocation once share those pages copy-on-write (they are
//! read-only after start-up and never copied), so each monitor's own
//! (private) memory is what it actually allocates. Forking a ready process
//! is also faster than exec plus dynamic loading.
//!
//! Protocol: the daemon spawns the zygote with fd 0 as one end of an
//! `AF_UNIX`/`SOCK_SEQPACKET` socket pair. Each request is one datagram
//! holding the bundle path, with two descriptors attached (`SCM_RIGHTS`):
//! the monitor's stdout (the daemon's report pipe) and stderr
//! (`monitor.log`). The zygote forks; the child becomes exactly what
//! `crius monitor <bundle>` would be (stdin `/dev/null`, stdout and stderr
//! the received descriptors, nothing else open) and runs the monitor, which
//! detaches at once. The zygote reaps that child and answers with one
//! datagram: empty for success, else the error. On end of file (the daemon
//! exited or restarted) the zygote exits; monitors already forked are not
//! affected. When the zygote is unavailable the daemon falls back to
//! exec'ing `crius monitor <bundle>`.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Mutex;

use nix::fcntl::OFlag;
use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, recvmsg, sendmsg, socketpair,
};

use crate::sys::process;

/// Largest request (a bundle path) the zygote accepts.
const MAX_REQUEST: usize = 4096;
/// What a request asks the zygote to fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A container monitor for a bundle; descriptors: stdout (the report
    /// pipe), stderr (`monitor.log`).
    Monitor,
    /// An exec helper ([`super::exec`]) for a request file; descriptors:
    /// the report pipe, the command's stdin, stdout and stderr.
    Exec,
    /// `crius pinns` ([`crate::sys::namespace`]) for a pod's namespace
    /// directory; descriptors: its stdin (the request) and its output
    /// (stdout and stderr). Not detached: the zygote waits for it and
    /// answers with its exit status.
    Pinns,
}

impl Kind {
    fn tag(self) -> u8 {
        match self {
            Kind::Monitor => b'M',
            Kind::Exec => b'X',
            Kind::Pinns => b'P',
        }
    }

    fn from_tag(t: u8) -> Option<Self> {
        match t {
            b'M' => Some(Kind::Monitor),
            b'X' => Some(Kind::Exec),
            b'P' => Some(Kind::Pinns),
            _ => None,
        }
    }

    fn fds(self) -> usize {
        match self {
            Kind::Monitor | Kind::Pinns => 2,
            Kind::Exec => 4,
        }
    }
}

/// Answer: the monitor was forked.
const OK: &[u8] = b"+";
/// Answer prefix: the fork failed; the rest is the error.
const FAILED: &[u8] = b"-";

/// `crius monitor-zygote`: serves fork requests on fd 0 until end of file.
pub fn main() -> ExitCode {
    // Out of the daemon's session: a terminal's signals to the daemon's
    // process group must not reach us (the monitors detach anyway).
    let _ = nix::unistd::setsid();
    // fd 0 is the socket; this process never starts a thread, so forking
    // it is safe (see `process::fork_run`).
    let stdin = std::io::stdin();
    let sock = stdin.as_fd();
    let mut buf = vec![0u8; MAX_REQUEST];
    loop {
        let (kind, path, fds) = match receive(sock, &mut buf) {
            Ok(Some(req)) => req,
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("monitor-zygote: receiving a request: {e}");
                return ExitCode::FAILURE;
            }
        };
        let answer = match kind {
            None => Err("unknown request kind".to_owned()),
            Some(k) if fds.len() != k.fds() => Err(format!(
                "expected {} descriptors with the request, got {}",
                k.fds(),
                fds.len()
            )),
            Some(k) => fork_child(k, &path, fds).and_then(|code| match (k, code) {
                (Kind::Pinns, c) if c != 0 => Err(format!("exit status {c}")),
                _ => Ok(()),
            }),
        };
        let text = match answer {
            Ok(()) => OK.to_vec(),
            Err(e) => [FAILED, e.as_bytes()].concat(),
        };
        let iov = [IoSlice::new(&text)];
        if let Err(e) = sendmsg::<()>(sock.as_raw_fd(), &iov, &[], MsgFlags::MSG_NOSIGNAL, None) {
            eprintln!("monitor-zygote: answering: {e}");
            return ExitCode::FAILURE;
        }
    }
}

/// What one request carries: its kind (`None`: unknown), path and
/// descriptors.
type Received = (Option<Kind>, PathBuf, Vec<OwnedFd>);

/// One request; `None` at end of file.
fn receive(sock: BorrowedFd<'_>, buf: &mut [u8]) -> nix::Result<Option<Received>> {
    let (n, fds) = process::recv_with_fds(sock, buf)?;
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    let msg = &buf[..n];
    let kind = msg.first().copied().and_then(Kind::from_tag);
    let path = std::ffi::OsStr::from_bytes(msg.get(1..).unwrap_or_default());
    Ok(Some((kind, PathBuf::from(path), fds)))
}

/// Forks the monitor, exec helper or pinns for `path` and reaps the fork
/// (monitors and exec helpers detach with a second fork, so this returns as
/// soon as they have; pinns is waited for). The child keeps no descriptor
/// it does not use: `fds` move into it, and the parent's copies close when
/// the closure is dropped unrun. Returns the fork's exit code (128 + the
/// signal when killed).
fn fork_child(kind: Kind, path: &Path, fds: Vec<OwnedFd>) -> Result<i32, String> {
    let child = process::fork_run(move || {
        // Monitor: [stdout, stderr]. Exec: [report → stdout, in, out, err];
        // the helper's own stderr stays the zygote's.
        let mut fds = fds.into_iter();
        let (Some(first), Some(second)) = (fds.next(), fds.next()) else {
            return 1;
        };
        let rest = (fds.next(), fds.next());
        if kind == Kind::Pinns {
            // [stdin (the request), output (stdout and stderr)].
            let redirected = nix::unistd::dup2_stdin(&first)
                .and_then(|()| nix::unistd::dup2_stdout(&second))
                .and_then(|()| nix::unistd::dup2_stderr(&second));
            drop((first, second));
            if let Err(e) = redirected {
                eprintln!("monitor-zygote: setting up pinns' stdio: {e}");
                return 1;
            }
            let _ = nix::sys::prctl::set_name(c"crius-pinns");
            return crate::sys::namespace::pinns_run();
        }
        let null = std::fs::File::open("/dev/null").map_err(|e| e.to_string());
        let redirected = null.and_then(|null| {
            nix::unistd::dup2_stdin(&null)
                .and_then(|()| nix::unistd::dup2_stdout(&first))
                .and_then(|()| match kind {
                    Kind::Monitor => nix::unistd::dup2_stderr(&second),
                    Kind::Exec | Kind::Pinns => Ok(()),
                })
                .map_err(|e| e.to_string())
        });
        drop(first);
        if let Err(e) = redirected {
            eprintln!("monitor-zygote: setting up the child's stdio: {e}");
            return 1;
        }
        match (kind, rest) {
            (Kind::Monitor, _) => {
                drop(second);
                // From here on this process is `crius monitor <bundle>`;
                // `ps` shows the zygote's command line, so name the task.
                let _ = nix::sys::prctl::set_name(c"crius-monitor");
                let _ = crate::monitor::main(path);
                0
            }
            (Kind::Exec, (Some(stdout), Some(stderr))) => {
                let _ = nix::sys::prctl::set_name(c"crius-exec");
                let io = super::exec::Stdio {
                    stdin: second,
                    stdout,
                    stderr,
                };
                super::exec::main(path, io)
            }
            (Kind::Exec | Kind::Pinns, _) => 1,
        }
    })
    .map_err(|e| format!("forking: {e}"))?;
    loop {
        match nix::sys::wait::waitpid(child, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => return Ok(0),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("waiting for the forked monitor: {e}")),
        }
    }
}

/// The daemon's handle on its zygote, started on first use and restarted
/// when it has gone away.
#[derive(Debug)]
pub struct Zygote {
    exe: PathBuf,
    conn: Mutex<Option<(OwnedFd, Child)>>,
}

impl Zygote {
    /// A handle for zygotes run from `exe` (the read-only bind of crius).
    pub fn new(exe: PathBuf) -> Self {
        Zygote {
            exe,
            conn: Mutex::new(None),
        }
    }

    /// Blocking: has the zygote fork a `kind` child for `path` with `fds`
    /// (see [`Kind`]). One retry with a fresh zygote; an error means
    /// nothing was forked (for a monitor the caller may exec it instead).
    pub fn spawn(&self, kind: Kind, path: &Path, fds: &[BorrowedFd<'_>]) -> Result<(), String> {
        let mut conn = crate::runtime::lock(&self.conn);
        let mut last = String::new();
        for _ in 0..2 {
            if conn.is_none() {
                *conn = Some(self.start()?);
            }
            let Some((sock, _)) = conn.as_ref() else {
                continue;
            };
            match request(sock.as_fd(), kind, path, fds) {
                Ok(Ok(())) => return Ok(()),
                // The zygote is fine; the fork itself failed.
                Ok(Err(e)) => return Err(e),
                Err(e) => {
                    last = e;
                    if let Some((sock, mut child)) = conn.take() {
                        drop(sock);
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                }
            }
        }
        Err(last)
    }

    /// The binary the zygote (and exec fallbacks) run from.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// Blocking: runs `crius pinns` for the namespace directory `dir`,
    /// forked from the zygote, with `input` on its stdin. Its output once it
    /// has run: exit status 0 or 1, stdout and stderr both holding what it
    /// wrote to either (the result on success, its error line on failure);
    /// `Err` when the zygote could not run it, so the caller may exec it
    /// instead.
    pub fn run_pinns(&self, dir: &Path, input: &[u8]) -> Result<std::process::Output, String> {
        // The request is written before the fork, so it must fit in a pipe
        // whatever the pipe quota (one page); pod requests are a few hundred
        // bytes.
        if input.len() > 4096 {
            return Err(format!("pinns request of {} bytes", input.len()));
        }
        let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"));
        let (in_r, in_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        match nix::unistd::write(&in_w, input) {
            Ok(n) if n == input.len() => {}
            Ok(n) => return Err(format!("short write of the pinns request: {n} bytes")),
            Err(e) => return Err(format!("writing the pinns request: {e}")),
        }
        drop(in_w);
        let ran = self.spawn(Kind::Pinns, dir, &[in_r.as_fd(), out_w.as_fd()]);
        drop((in_r, out_w));
        // pinns has exited (the zygote answers after reaping it), so what it
        // wrote is in the pipe; non-blocking in case a process it started
        // kept the write end.
        nix::fcntl::fcntl(&out_r, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
            .map_err(|e| format!("pinns output pipe: {e}"))?;
        let mut output = Vec::new();
        let mut buf = [0u8; 4096];
        while output.len() < 64 * 1024 {
            match nix::unistd::read(out_r.as_fd(), &mut buf) {
                Ok(0) | Err(nix::errno::Errno::EAGAIN) => break,
                Ok(n) => output.extend_from_slice(&buf[..n]),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(format!("reading pinns' output: {e}")),
            }
        }
        let success = match ran {
            Ok(()) => true,
            Err(e) if e.starts_with("exit status") || !output.is_empty() => {
                if output.is_empty() {
                    output = e.into_bytes();
                }
                false
            }
            Err(e) => return Err(e),
        };
        use std::os::unix::process::ExitStatusExt as _;
        // A wait status: the exit code in the second byte.
        Ok(std::process::Output {
            status: std::process::ExitStatus::from_raw(if success { 0 } else { 1 << 8 }),
            stdout: output.clone(),
            stderr: output,
        })
    }

    fn start(&self) -> Result<(OwnedFd, Child), String> {
        let _span = tracing::info_span!("monitor.zygote.start").entered();
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| format!("creating the zygote's socket: {e}"))?;
        let child = Command::new(&self.exe)
            .arg("monitor-zygote")
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {} monitor-zygote: {e}", self.exe.display()))?;
        Ok((ours, child))
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        if let Some((sock, mut child)) = crate::runtime::lock(&self.conn).take() {
            // End of file tells the zygote to exit.
            drop(sock);
            let _ = child.wait();
        }
    }
}

/// One request/answer; the outer error is the zygote's (transport), the
/// inner one the fork's.
fn request(
    sock: BorrowedFd<'_>,
    kind: Kind,
    path: &Path,
    fds: &[BorrowedFd<'_>],
) -> Result<Result<(), String>, String> {
    let path_bytes = path.as_os_str().as_bytes();
    if path_bytes.is_empty() || path_bytes.len() >= MAX_REQUEST {
        return Ok(Err(format!("path {} too long", path.display())));
    }
    let msg = [&[kind.tag()], path_bytes].concat();
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let iov = [IoSlice::new(&msg)];
    let cmsg = [ControlMessage::ScmRights(&raw)];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None)
        .map_err(|e| format!("sending to the monitor zygote: {e}"))?;
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let n = loop {
        match recvmsg::<()>(sock.as_raw_fd(), &mut iov, None, MsgFlags::empty()) {
            Ok(msg) => break msg.bytes,
            Err(nix::errno::Errno::EINTR) => continue,
            // Delivered but unanswered: whether a monitor was forked shows
            // in the report pipe, so the caller reads that (no retry, which
            // could start a second monitor).
            Err(e) => {
                tracing::warn!(error = %e, "reading the monitor zygote's answer");
                return Ok(Ok(()));
            }
        }
    };
    let answer = &iov[0][..n];
    if answer == OK {
        Ok(Ok(()))
    } else if let Some(e) = answer.strip_prefix(FAILED) {
        Ok(Err(String::from_utf8_lossy(e).into_owned()))
    } else {
        // End of file (n == 0): the zygote died after taking the request;
        // as above, the report pipe tells.
        tracing::warn!("the monitor zygote hung up without answering");
        Ok(Ok(()))
    }
}
