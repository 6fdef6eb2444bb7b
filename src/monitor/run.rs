//! The monitor's body. Single-threaded and synchronous by design: it forks
//! (libcontainer, the external runtime), and it must stay small (it lives as
//! long as its container).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::attach;
use super::log::{LogWriter, Stream};
use super::proto::{self, request::Kind};
use super::{ExitRecord, Launch, PROTOCOL_VERSION, Report, now_ns, read_frame, write_frame};
use crate::sys::cgroup::Cgroups;
use crate::sys::process;

/// `crius monitor <bundle>`.
pub fn main(bundle: &Path) -> ExitCode {
    let launch = match Launch::load(bundle) {
        Ok(l) => l,
        Err(e) => {
            report(&Report {
                pid: 0,
                started_ns: 0,
                error: Some(format!(
                    "reading {}: {e}",
                    bundle.join(Launch::FILE).display()
                )),
            });
            return ExitCode::FAILURE;
        }
    };
    // libcontainer reports the detail of a failed create through `tracing`
    // (the error value keeps only the top message): into monitor.log.
    let _ = tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .try_init();
    if let Err(e) = process::detach() {
        report(&failed(format!("detaching the monitor: {e}")));
        return ExitCode::FAILURE;
    }
    // Orphans of the container (host or pod PID namespace) are ours to reap.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    match Monitor::start(bundle, launch) {
        Ok(mut m) => {
            report(&Report {
                pid: m.pid.as_raw().unsigned_abs(),
                started_ns: m.started_ns,
                error: None,
            });
            // The daemon has its answer; nothing more goes to that pipe.
            if let Ok(null) = std::fs::File::open("/dev/null") {
                let _ = nix::unistd::dup2_stdout(null);
            }
            m.run();
            ExitCode::SUCCESS
        }
        Err(e) => {
            report(&failed(e));
            ExitCode::FAILURE
        }
    }
}

fn failed(error: String) -> Report {
    Report {
        pid: 0,
        started_ns: 0,
        error: Some(error),
    }
}

fn report(r: &Report) {
    let mut out = io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, r);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// How the container was created, so it can be deleted the same way.
enum Executor {
    Builtin(Box<libcontainer::container::Container>),
    External(PathBuf),
}

struct Monitor {
    bundle: PathBuf,
    launch: Launch,
    executor: Executor,
    pid: Pid,
    started_ns: i64,
    listener: UnixListener,
    signals: SignalFd,
    log: LogWriter,
    /// Output sources: (fd, stream); a tty's master is read as stdout.
    outputs: Vec<(OwnedFd, Stream)>,
    /// The terminal master, for resizes (also in `outputs`).
    master: Option<OwnedFd>,
    /// The write end of the container's stdin pipe (non-blocking), held
    /// open so the container does not see EOF until stdin_once says so.
    stdin: Option<OwnedFd>,
    /// Attached clients' stdin not yet taken by the container.
    stdin_pending: Vec<u8>,
    /// stdin_once: close stdin once `stdin_pending` is written.
    stdin_closing: bool,
    /// Attach connections.
    attached: Vec<attach::Client>,
    exit: Option<ExitRecord>,
    waiters: Vec<UnixStream>,
    /// The host's cgroup layout (None without cgroups or a cgroup path).
    cgroups: Option<Cgroups>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("creating a pipe: {e}"))
}

fn set_nonblocking(fd: &OwnedFd) {
    let flags = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_GETFL)
        .map(OFlag::from_bits_truncate)
        .unwrap_or(OFlag::empty());
    let _ = nix::fcntl::fcntl(
        fd.as_fd(),
        nix::fcntl::FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK),
    );
}

impl Monitor {
    fn start(bundle: &Path, launch: Launch) -> Result<Self, String> {
        let log =
            LogWriter::open(launch.log_path.as_deref(), launch.max_log_line).map_err(|e| {
                format!(
                    "opening the log file {}: {e}",
                    launch
                        .log_path
                        .as_deref()
                        .unwrap_or(Path::new(""))
                        .display()
                )
            })?;
        let socket = launch.socket.clone();
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)
            .map_err(|e| format!("binding {}: {e}", socket.display()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("monitor socket: {e}"))?;

        let (stdin_read, stdin_write) = if launch.stdin {
            let (r, w) = pipe()?;
            set_nonblocking(&w);
            (r, Some(w))
        } else {
            let null = std::fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
            (OwnedFd::from(null), None)
        };
        let console = launch.socket.with_extension("tty");
        let (console_listener, out_pipes) = if launch.tty {
            let _ = std::fs::remove_file(&console);
            let l = UnixListener::bind(&console)
                .map_err(|e| format!("binding {}: {e}", console.display()))?;
            (Some(l), None)
        } else {
            (None, Some((pipe()?, pipe()?)))
        };
        let mut outputs = Vec::new();
        let (child_out, child_err) = match out_pipes {
            Some(((out_r, out_w), (err_r, err_w))) => {
                set_nonblocking(&out_r);
                set_nonblocking(&err_r);
                outputs.push((out_r, Stream::Stdout));
                outputs.push((err_r, Stream::Stderr));
                (Some(out_w), Some(err_w))
            }
            None => (None, None),
        };

        // The container's processes are forked from here: they must start
        // with SIGPIPE at its default, the monitor must survive a hook that
        // does not read its stdin (see sys::process).
        process::sigpipe_default_after_exec(true);
        let created = match &launch.runtime {
            None => create_builtin(
                bundle,
                &launch,
                stdin_read,
                child_out,
                child_err,
                console_listener.is_some().then_some(console.as_path()),
            ),
            Some(runtime) => create_external(
                runtime,
                bundle,
                &launch,
                stdin_read,
                child_out,
                child_err,
                console_listener.is_some().then_some(console.as_path()),
            ),
        };
        process::sigpipe_default_after_exec(false);
        let (executor, pid) = match created {
            Ok(c) => c,
            // The runtime's init reports its detail on the container's
            // stderr (its stdio is switched early): add it to the error.
            Err(e) => return Err(with_output(e, &outputs)),
        };
        let started_ns = now_ns();

        let mut master = None;
        if let Some(l) = console_listener {
            let fd = super::receive_console(&l, None, Duration::from_secs(10))
                .and_then(|fd| fd.ok_or_else(|| io::Error::other("no terminal arrived")))
                .map_err(|e| format!("receiving the terminal: {e}"));
            let _ = std::fs::remove_file(&console);
            let fd = fd?;
            set_nonblocking(&fd);
            let dup = fd.try_clone().map_err(|e| format!("terminal fd: {e}"))?;
            outputs.push((dup, Stream::Stdout));
            master = Some(fd);
        }

        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
            .map_err(|e| format!("blocking SIGCHLD: {e}"))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| format!("signalfd: {e}"))?;

        let mut m = Self {
            bundle: bundle.to_path_buf(),
            launch,
            executor,
            pid,
            started_ns,
            listener,
            signals,
            log,
            outputs,
            master,
            stdin: stdin_write,
            stdin_pending: Vec::new(),
            stdin_closing: false,
            attached: Vec::new(),
            exit: None,
            waiters: Vec::new(),
            cgroups: None,
        };
        if !m.launch.cgroup_path.is_empty() {
            m.cgroups = Cgroups::detect(Path::new("/sys/fs/cgroup")).ok();
        }
        // It may have exited before SIGCHLD was routed to the signalfd.
        m.reap();
        Ok(m)
    }

    fn run(&mut self) {
        let mut buf = vec![0u8; 64 * 1024];
        while self.exit.is_none() {
            let n_out = self.outputs.len();
            let n_clients = self.attached.len();
            let read_clients = self.stdin_pending.len() < attach::MAX_STDIN_PENDING;
            let mut fds = vec![
                PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
            ];
            fds.extend(
                self.outputs
                    .iter()
                    .map(|(fd, _)| PollFd::new(fd.as_fd(), PollFlags::POLLIN)),
            );
            fds.extend(self.attached.iter().map(|c| {
                let mut flags = PollFlags::empty();
                if read_clients {
                    flags |= PollFlags::POLLIN;
                }
                if c.wants_write() {
                    flags |= PollFlags::POLLOUT;
                }
                PollFd::new(c.sock.as_fd(), flags)
            }));
            let stdin_fd = self.stdin_target();
            let poll_stdin = !self.stdin_pending.is_empty() && stdin_fd.is_some();
            if let (true, Some(fd)) = (poll_stdin, stdin_fd) {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    eprintln!("monitor: poll: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            // Output first, so that what a process wrote just before it
            // exited is in the log before the exit is recorded.
            let mut closed = Vec::new();
            for i in 0..n_out {
                if ready[2 + i] && !self.pump(i, &mut buf) {
                    closed.push(i);
                }
            }
            for i in closed.into_iter().rev() {
                let (_, stream) = self.outputs.remove(i);
                if let Err(e) = self.log.finish(stream) {
                    eprintln!("monitor: writing the log: {e}");
                }
            }
            for i in 0..n_clients {
                if ready[2 + n_out + i] {
                    self.client_ready(i);
                }
            }
            self.attached.retain(|c| !c.gone);
            self.flush_stdin();
            if ready[1] {
                while let Ok(Some(_)) = self.signals.read_signal() {}
                self.reap();
            }
            if ready[0] {
                self.accept();
            }
        }
        self.finish(&mut buf);
    }

    /// Where attached stdin goes: the pipe, or the terminal (with stdin).
    fn stdin_target(&self) -> Option<&OwnedFd> {
        match &self.master {
            Some(m) if self.launch.stdin => Some(m),
            Some(_) => None,
            None => self.stdin.as_ref(),
        }
    }

    fn client_ready(&mut self, i: usize) {
        let c = &mut self.attached[i];
        c.flush();
        let input = c.read();
        if self.stdin_target().is_some() {
            self.stdin_pending.extend_from_slice(&input.data);
        }
        if input.closed_stdin && self.launch.stdin_once && self.master.is_none() {
            self.stdin_closing = true;
        }
    }

    fn flush_stdin(&mut self) {
        let mut pending = std::mem::take(&mut self.stdin_pending);
        let failed = self
            .stdin_target()
            .is_some_and(|fd| attach::flush_stdin(fd, &mut pending).is_err());
        self.stdin_pending = pending;
        if failed {
            // The container closed its stdin.
            self.stdin_pending.clear();
            if self.master.is_none() {
                self.stdin = None;
            }
        }
        if self.stdin_closing && self.stdin_pending.is_empty() {
            self.stdin = None;
        }
    }

    /// Moves what is readable from output `i` to the log; false at EOF.
    fn pump(&mut self, i: usize, buf: &mut [u8]) -> bool {
        let (fd, stream) = &self.outputs[i];
        let stream = *stream;
        match nix::unistd::read(fd.as_fd(), buf) {
            Ok(0) => false,
            Ok(n) => {
                if let Err(e) = self.log.feed(stream, &buf[..n]) {
                    eprintln!("monitor: writing the log: {e}");
                }
                for c in &mut self.attached {
                    c.output(stream, &buf[..n]);
                }
                true
            }
            Err(Errno::EAGAIN | Errno::EINTR) => true,
            // EIO: the terminal's last holder closed it.
            Err(_) => false,
        }
    }

    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == self.pid => {
                    self.exited(code, 0);
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == self.pid => {
                    self.exited(128 + sig as i32, sig as i32);
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    fn exited(&mut self, exit_code: i32, signal: i32) {
        self.exit = Some(ExitRecord {
            exit_code,
            signal,
            finished_ns: now_ns(),
            oom_killed: false,
            message: String::new(),
        });
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.serve(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    eprintln!("monitor: accept: {e}");
                    break;
                }
            }
        }
    }

    fn serve(&mut self, mut stream: UnixStream) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        let req: proto::Request = match read_frame(&mut stream) {
            Ok(r) => r,
            Err(_) => return,
        };
        let error = match req.kind {
            None => format!(
                "request not understood by this monitor (protocol version {PROTOCOL_VERSION}, \
                 request version {})",
                req.version
            ),
            Some(Kind::Wait(_)) => {
                if self.exit.is_none() {
                    self.waiters.push(stream);
                    return;
                }
                String::new()
            }
            Some(Kind::State(_)) => String::new(),
            Some(Kind::Signal(s)) => self.signal(s.signal, s.all),
            Some(Kind::ReopenLog(_)) => match self.log.reopen() {
                Ok(()) => String::new(),
                Err(e) => format!("reopening the log file: {e}"),
            },
            Some(Kind::Attach(a)) => {
                if a.stdin && !self.launch.stdin {
                    "the container was not created with stdin".to_owned()
                } else {
                    self.answer(&mut stream, String::new());
                    match attach::Client::new(stream, a.stdin, a.stdout, a.stderr) {
                        Ok(c) => self.attached.push(c),
                        Err(e) => eprintln!("monitor: attach: {e}"),
                    }
                    return;
                }
            }
            Some(Kind::Resize(r)) => match &self.master {
                None => "the container has no terminal".to_owned(),
                Some(m) => {
                    let w = u16::try_from(r.width).unwrap_or(u16::MAX);
                    let h = u16::try_from(r.height).unwrap_or(u16::MAX);
                    match process::set_winsize(m.as_fd(), w, h) {
                        Ok(()) => String::new(),
                        Err(e) => format!("resizing the terminal: {e}"),
                    }
                }
            },
        };
        self.answer(&mut stream, error);
    }

    fn answer(&self, stream: &mut UnixStream, error: String) {
        let resp = proto::Response {
            version: PROTOCOL_VERSION,
            error,
            state: Some(proto::ContainerState {
                pid: self.pid.as_raw(),
                started_ns: self.started_ns,
                exit: self.exit.as_ref().map(ExitRecord::to_proto),
            }),
        };
        let _ = write_frame(stream, &resp);
    }

    fn signal(&self, signal: i32, all: bool) -> String {
        if self.exit.is_some() {
            return String::new();
        }
        let sig = match Signal::try_from(signal) {
            Ok(s) => s,
            Err(_) => return format!("invalid signal {signal}"),
        };
        if all && let Some(cg) = &self.cgroups {
            cg.kill_all(&self.launch.cgroup_path, sig);
        }
        match kill(self.pid, sig) {
            Ok(()) | Err(Errno::ESRCH) => String::new(),
            Err(e) => format!("signalling pid {}: {e}", self.pid),
        }
    }

    /// After the container's process exited: collect the rest of its
    /// output, record the exit, answer waiters, remove the runtime state.
    fn finish(&mut self, buf: &mut [u8]) {
        if !self.launch.own_pid_ns {
            // What it left behind in a shared PID namespace dies with it,
            // as containerd's shim does.
            if let Some(cg) = &self.cgroups {
                cg.kill_all(&self.launch.cgroup_path, Signal::SIGKILL);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.outputs.is_empty() && Instant::now() < deadline {
            let mut fds: Vec<PollFd> = self
                .outputs
                .iter()
                .map(|(fd, _)| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
                .collect();
            let _ = poll(&mut fds, PollTimeout::from(100u8));
            drop(fds);
            let mut i = 0;
            while i < self.outputs.len() {
                if self.pump(i, buf) && !self.drained(i) {
                    i += 1;
                } else {
                    let (_, stream) = self.outputs.remove(i);
                    let _ = self.log.finish(stream);
                }
            }
        }
        for (_, stream) in std::mem::take(&mut self.outputs) {
            let _ = self.log.finish(stream);
        }
        let mut exit = self.exit.clone().unwrap_or(ExitRecord {
            exit_code: 255,
            signal: 0,
            finished_ns: now_ns(),
            oom_killed: false,
            message: String::new(),
        });
        exit.oom_killed = oom_killed(self.cgroups.as_ref(), &self.launch.cgroup_path);
        if let Err(e) = exit.save(&self.bundle) {
            eprintln!("monitor: writing exit.json: {e}");
        }
        self.exit = Some(exit);
        for mut w in std::mem::take(&mut self.waiters) {
            self.answer(&mut w, String::new());
        }
        // Attached clients get the rest of the output and the end (bounded).
        for c in &mut self.attached {
            c.closing();
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.attached.iter().any(|c| c.wants_write() && !c.gone) && Instant::now() < deadline
        {
            let mut fds: Vec<PollFd> = self
                .attached
                .iter()
                .map(|c| PollFd::new(c.sock.as_fd(), PollFlags::POLLOUT))
                .collect();
            let _ = poll(&mut fds, PollTimeout::from(100u8));
            drop(fds);
            for c in &mut self.attached {
                c.flush();
            }
        }
        self.attached.clear();
        self.delete();
        let _ = std::fs::remove_file(&self.launch.socket);
    }

    /// Whether output `i` has nothing more to give right now (after the
    /// process exited, EAGAIN means its last writer is gone or stuck).
    fn drained(&self, i: usize) -> bool {
        let mut fds = [PollFd::new(self.outputs[i].0.as_fd(), PollFlags::POLLIN)];
        !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }

    fn delete(&mut self) {
        match &mut self.executor {
            Executor::Builtin(c) => {
                if let Err(e) = c.delete(true) {
                    eprintln!("monitor: deleting the container state: {e}");
                }
            }
            Executor::External(runtime) => {
                let out = Command::new(runtime.as_path())
                    .arg("--root")
                    .arg(&self.launch.state_root)
                    .args(["delete", "--force", &self.launch.id])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .output();
                match out {
                    Ok(o) if !o.status.success() => eprintln!(
                        "monitor: {} delete: {}",
                        runtime.display(),
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                    Err(e) => eprintln!("monitor: {} delete: {e}", runtime.display()),
                    Ok(_) => {}
                }
            }
        }
    }
}

fn create_builtin(
    bundle: &Path,
    launch: &Launch,
    stdin: OwnedFd,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    console: Option<&Path>,
) -> Result<(Executor, Pid), String> {
    use libcontainer::container::builder::ContainerBuilder;
    use libcontainer::syscall::syscall::SyscallType;
    let mut builder = ContainerBuilder::new(launch.id.clone(), SyscallType::default())
        .with_root_path(&launch.state_root)
        .map_err(|e| format!("runtime state dir {}: {e}", launch.state_root.display()))?
        .with_stdin(stdin)
        .with_console_socket(console);
    if let (Some(out), Some(err)) = (stdout, stderr) {
        builder = builder.with_stdout(out).with_stderr(err);
    }
    let mut container = builder
        .as_init(bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| format!("creating the container: {}", error_chain(&e)))?;
    // libcontainer's nix is another version than ours: go through the raw pid.
    let pid = container
        .pid()
        .map(|p| Pid::from_raw(p.as_raw()))
        .ok_or_else(|| "the container has no process after creation".to_owned())?;
    if let Err(e) = container.start() {
        let msg = format!("starting the container: {}", error_chain(&e));
        let _ = container.delete(true);
        return Err(msg);
    }
    Ok((Executor::Builtin(Box::new(container)), pid))
}

/// `error` followed by whatever is waiting in the output pipes (bounded).
fn with_output(error: String, outputs: &[(OwnedFd, Stream)]) -> String {
    let mut detail = String::new();
    let mut buf = [0u8; 4096];
    for (fd, _) in outputs {
        if let Ok(n) = nix::unistd::read(fd.as_fd(), &mut buf) {
            detail.push_str(String::from_utf8_lossy(&buf[..n]).trim());
        }
    }
    if detail.is_empty() {
        error
    } else {
        format!("{error}: {detail}")
    }
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let msg = inner.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = inner.source();
    }
    s
}

fn create_external(
    runtime: &Path,
    bundle: &Path,
    launch: &Launch,
    stdin: OwnedFd,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    console: Option<&Path>,
) -> Result<(Executor, Pid), String> {
    let pid_file = bundle.join("pid");
    let runtime_log = bundle.join("runtime.log");
    let mut cmd = Command::new(runtime);
    cmd.arg("--root")
        .arg(&launch.state_root)
        .arg("--log")
        .arg(&runtime_log)
        .arg("create")
        .arg("--bundle")
        .arg(bundle)
        .arg("--pid-file")
        .arg(&pid_file);
    if let Some(c) = console {
        cmd.arg("--console-socket").arg(c);
    }
    cmd.arg(&launch.id).stdin(Stdio::from(stdin));
    match (stdout, stderr) {
        (Some(o), Some(e)) => {
            cmd.stdout(Stdio::from(o)).stderr(Stdio::from(e));
        }
        _ => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    let status = cmd
        .status()
        .map_err(|e| format!("running {}: {e}", runtime.display()))?;
    // The command dropped its copies of the pipes' write ends; only the
    // container holds them now.
    if !status.success() {
        return Err(format!(
            "{} create failed ({status}): {}",
            runtime.display(),
            last_runtime_error(&runtime_log)
        ));
    }
    let pid = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .ok_or_else(|| format!("{} create wrote no pid file", runtime.display()))?;
    let out = Command::new(runtime)
        .arg("--root")
        .arg(&launch.state_root)
        .arg("--log")
        .arg(&runtime_log)
        .args(["start", &launch.id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("running {}: {e}", runtime.display()))?;
    if !out.success() {
        let msg = format!(
            "{} start failed ({out}): {}",
            runtime.display(),
            last_runtime_error(&runtime_log)
        );
        let _ = Command::new(runtime)
            .arg("--root")
            .arg(&launch.state_root)
            .args(["delete", "--force", &launch.id])
            .status();
        return Err(msg);
    }
    Ok((
        Executor::External(runtime.to_path_buf()),
        Pid::from_raw(pid),
    ))
}

/// The last error message in an OCI runtime's `--log` file (runc writes
/// one JSON object or logfmt line per entry).
pub(super) fn last_runtime_error(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    for line in text.lines().rev() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
            && v.get("level").and_then(|l| l.as_str()) == Some("error")
            && let Some(msg) = v.get("msg").and_then(|m| m.as_str())
        {
            return msg.to_owned();
        }
        if line.contains("level=error") {
            return line.to_owned();
        }
    }
    "no error message in the runtime's log".to_owned()
}

/// Whether the kernel's OOM killer killed a process of this cgroup.
fn oom_killed(cgroups: Option<&Cgroups>, path: &str) -> bool {
    let Some(cg) = cgroups else { return false };
    for dir in cg.dirs(path) {
        for file in ["memory.events", "memory.oom_control"] {
            let mut text = String::new();
            if std::fs::File::open(dir.join(file))
                .and_then(|mut f| f.read_to_string(&mut text))
                .is_err()
            {
                continue;
            }
            return text.lines().any(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            });
        }
    }
    false
}
