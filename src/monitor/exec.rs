//! The exec helper: runs one command inside a running container for
//! ExecSync. Forked by the monitor zygote (so, like the monitor, it is
//! single-threaded and may use `libcontainer`), it detaches into its own
//! session, starts the process as a tenant of the container — its
//! namespaces, cgroup, user, capabilities, seccomp and the rest, from the
//! process spec the daemon wrote — waits for it (killing it when the
//! timeout expires) and writes one JSON [`ExecReport`] line to its stdout.
//! The command's stdout and stderr go straight to the daemon's pipes.

use std::io::Write as _;
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};

use crate::sys::process;

/// What the daemon asks for, as JSON in the container's bundle dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// The container id (as the OCI runtime knows it).
    pub id: String,
    /// The OCI runtime's state root.
    pub state_root: PathBuf,
    /// External OCI runtime binary; `None` is the built-in executor.
    pub runtime: Option<PathBuf>,
    /// The OCI `process` object to run (JSON file).
    pub process: PathBuf,
    /// Kill the process after this long; 0 = never.
    pub timeout_ms: u64,
    /// Built-in executor only: the container's seccomp filter (the OCI
    /// `linux.seccomp` object). libcontainer 0.7 drops `linux.seccomp` when
    /// it runs a process in an existing container, so the helper loads the
    /// filter itself, just before exec.
    #[serde(default)]
    pub seccomp: Option<serde_json::Value>,
    /// Capabilities the daemon added to the process only so that the
    /// filter can be loaded without no_new_privs (`CAP_SYS_ADMIN`) and the
    /// additions dropped again (`CAP_SETPCAP`): dropped, in this order,
    /// right after the filter is in place.
    #[serde(default)]
    pub drop_caps: Vec<String>,
    /// The process gets a terminal, sent as its master to this socket
    /// (the runtime's console socket; the daemon listens on it).
    #[serde(default)]
    pub console_socket: Option<PathBuf>,
    /// Built-in executor only: the pod's pinned user namespace. libcontainer
    /// 0.7's tenant builder joins every namespace of the container but this
    /// one, so the helper enters it just before exec and sets the process's
    /// user and capabilities again inside it (see [`enter_userns`]). The
    /// daemon then always lends `CAP_SYS_ADMIN` (listed in `drop_caps`),
    /// which setns(2) into a user namespace needs.
    #[serde(default)]
    pub userns: Option<PathBuf>,
}

/// The helper's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecReport {
    /// Exit status, or 128 + signal.
    pub exit_code: i32,
    /// The timeout expired and the process was killed.
    pub timed_out: bool,
    /// The process could not be started.
    pub error: Option<String>,
}

/// The command's standard descriptors (ignored with a terminal).
#[derive(Debug)]
pub struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Runs in the zygote's forked child: stdout is the report pipe; `io`
/// becomes the command's stdin, stdout and stderr.
pub fn main(request: &Path, io: Stdio) -> i32 {
    if let Err(e) = process::detach() {
        report(&failed(format!("detaching the exec helper: {e}")));
        return 1;
    }
    // The tenant (and, with an external runtime, what `runc exec -d`
    // leaves behind) becomes our child to wait for.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let r = match run(request, io) {
        Ok(r) => r,
        Err(e) => failed(e),
    };
    report(&r);
    0
}

fn failed(error: String) -> ExecReport {
    ExecReport {
        exit_code: -1,
        timed_out: false,
        error: Some(error),
    }
}

fn report(r: &ExecReport) {
    let mut stdout = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut stdout, r);
    let _ = stdout.write_all(b"\n");
    let _ = stdout.flush();
}

fn run(request: &Path, io: Stdio) -> Result<ExecReport, String> {
    let bytes =
        std::fs::read(request).map_err(|e| format!("reading {}: {e}", request.display()))?;
    let req: ExecRequest = serde_json::from_slice(&bytes)
        .map_err(|e| format!("parsing {}: {e}", request.display()))?;
    process::sigpipe_default_after_exec(true);
    let pid = match &req.runtime {
        None => start_builtin(&req, io),
        Some(rt) => start_external(rt, &req, io),
    };
    process::sigpipe_default_after_exec(false);
    let pid = pid?;
    // SIGCHLD through a signalfd, blocked only now so that the process does
    // not inherit a blocked SIGCHLD; an exit before this is found by the
    // first `reap` below.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block()
        .map_err(|e| format!("blocking SIGCHLD: {e}"))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| format!("signalfd: {e}"))?;
    let deadline =
        (req.timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(req.timeout_ms));
    let mut timed_out = false;
    loop {
        if let Some(code) = reap(pid) {
            return Ok(ExecReport {
                exit_code: code,
                timed_out,
                error: None,
            });
        }
        let wait = match deadline {
            Some(d) if !timed_out => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    timed_out = true;
                    let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                    continue;
                }
                nix::poll::PollTimeout::try_from(left.as_millis().min(60_000) as i32)
                    .unwrap_or(nix::poll::PollTimeout::MAX)
            }
            _ => nix::poll::PollTimeout::NONE,
        };
        let mut fds = [nix::poll::PollFd::new(
            signals.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, wait) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("waiting for the process: {e}")),
        }
        // Drain the (non-blocking) signalfd; `reap` finds what exited.
        while let Ok(Some(_)) = signals.read_signal() {}
    }
}

/// Reaps every exited child; the exit code of `pid` once it has exited.
fn reap(pid: Pid) -> Option<i32> {
    let mut found = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p == pid => found = Some(code),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => found = Some(128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return found,
            Ok(_) => {}
        }
    }
}

fn start_builtin(req: &ExecRequest, io: Stdio) -> Result<Pid, String> {
    use libcontainer::container::builder::ContainerBuilder;
    use libcontainer::syscall::syscall::SyscallType;
    let seccomp = match &req.seccomp {
        Some(v) => Some(
            serde_json::from_value::<libcontainer::oci_spec::runtime::LinuxSeccomp>(v.clone())
                .map_err(|e| format!("the container's seccomp profile: {e}"))?,
        ),
        None => None,
    };
    let drop_caps = req
        .drop_caps
        .iter()
        .map(|c| {
            c.parse::<caps::Capability>()
                .map_err(|e| format!("capability {c}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let userns = match &req.userns {
        Some(path) => Some(Userns::open(path, &req.process, &drop_caps)?),
        None => None,
    };
    let pid = ContainerBuilder::new(req.id.clone(), SyscallType::default())
        .with_executor(TenantExecutor {
            seccomp,
            drop_caps,
            userns,
        })
        .with_root_path(&req.state_root)
        .map_err(|e| format!("runtime state dir {}: {e}", req.state_root.display()))?
        .with_stdin(io.stdin)
        .with_stdout(io.stdout)
        .with_stderr(io.stderr)
        .with_console_socket(req.console_socket.as_deref())
        .as_tenant()
        .with_process(Some(&req.process))
        .with_detach(true)
        .build()
        .map_err(|e| format!("starting the process: {}", super::run::error_chain(&e)))?;
    // libcontainer's nix is another version than ours: go through the raw pid.
    Ok(Pid::from_raw(pid.as_raw()))
}

/// libcontainer's default executor, preceded by the pod's user namespace
/// (see [`ExecRequest::userns`]) and the container's seccomp filter (see
/// [`ExecRequest::seccomp`]).
#[derive(Clone)]
struct TenantExecutor {
    seccomp: Option<libcontainer::oci_spec::runtime::LinuxSeccomp>,
    drop_caps: Vec<caps::Capability>,
    userns: Option<Userns>,
}

impl Executor for TenantExecutor {
    fn exec(&self, spec: &libcontainer::oci_spec::runtime::Spec) -> Result<(), ExecutorError> {
        if let Some(userns) = &self.userns {
            userns.enter().map_err(ExecutorError::Other)?;
        }
        if let Some(filter) = &self.seccomp {
            libcontainer::seccomp::initialize_seccomp(filter)
                .map_err(|e| ExecutorError::Other(format!("loading the seccomp filter: {e}")))?;
        }
        if let Some(userns) = &self.userns {
            userns.final_caps().map_err(ExecutorError::Other)?;
        } else if self.seccomp.is_some() {
            // Bounding first (needs CAP_SETPCAP, dropped last), then the
            // other sets: the process ends with exactly the container's.
            for set in [
                caps::CapSet::Bounding,
                caps::CapSet::Effective,
                caps::CapSet::Permitted,
                caps::CapSet::Inheritable,
            ] {
                for cap in &self.drop_caps {
                    caps::drop(None, set, *cap).map_err(|e| {
                        ExecutorError::Other(format!("dropping {cap} from {set:?}: {e}"))
                    })?;
                }
            }
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(
        &self,
        spec: &libcontainer::oci_spec::runtime::Spec,
    ) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

/// The pod's user namespace and the credentials the process takes in it.
///
/// libcontainer has already put the process in every other namespace of
/// the container (owned by this user namespace), its cgroup and working
/// directory, with the process's ids and capabilities, but as seen from
/// the host's user namespace. Joining the user namespace last, as host
/// root with `CAP_SYS_ADMIN`, resets the credentials: the kernel grants
/// every capability in the new namespace and a full bounding set, and the
/// ids stay the host's (unmapped inside). So the ids and all five
/// capability sets are set again, in the order runc's exec uses: bounding
/// set, ids (keeping capabilities), then the other sets, with the seccomp
/// filter loaded in between while `CAP_SYS_ADMIN` is still effective.
/// Hand-written: neither libcontainer 0.7 nor the `caps` crate offers
/// "enter a user namespace and reapply a process's credentials".
#[derive(Clone)]
struct Userns {
    /// Opened before libcontainer forks; close-on-exec, so the command
    /// never sees it (libcontainer marks inherited fds the same way).
    fd: std::sync::Arc<OwnedFd>,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    bounding: caps::CapsHashSet,
    effective: caps::CapsHashSet,
    permitted: caps::CapsHashSet,
    inheritable: caps::CapsHashSet,
    ambient: caps::CapsHashSet,
}

impl Userns {
    /// Opens the namespace and reads the process's user and capabilities
    /// from its spec, less the capabilities lent for the helper's own use.
    fn open(path: &Path, process: &Path, lent: &[caps::Capability]) -> Result<Self, String> {
        let fd = std::fs::File::open(path)
            .map(OwnedFd::from)
            .map_err(|e| format!("opening the pod's user namespace {}: {e}", path.display()))?;
        let bytes =
            std::fs::read(process).map_err(|e| format!("reading {}: {e}", process.display()))?;
        let p: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("parsing {}: {e}", process.display()))?;
        let id = |ptr: &str| -> Result<u32, String> {
            match p.pointer(ptr) {
                None => Ok(0),
                Some(v) => v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| format!("process{ptr} is not a 32-bit id: {v}")),
            }
        };
        let groups = match p.pointer("/user/additionalGids").and_then(|v| v.as_array()) {
            None => Vec::new(),
            Some(a) => a
                .iter()
                .map(|v| {
                    v.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| format!("process additional gid {v} is not a 32-bit id"))
                })
                .collect::<Result<_, _>>()?,
        };
        let set = |name: &str| -> Result<caps::CapsHashSet, String> {
            let mut out = caps::CapsHashSet::new();
            let names = p
                .pointer(&format!("/capabilities/{name}"))
                .and_then(|v| v.as_array());
            for n in names.into_iter().flatten() {
                let text = n.as_str().unwrap_or_default();
                let cap = text
                    .parse::<caps::Capability>()
                    .map_err(|e| format!("capability {n} in the {name} set: {e}"))?;
                if !lent.contains(&cap) {
                    out.insert(cap);
                }
            }
            Ok(out)
        };
        Ok(Self {
            fd: std::sync::Arc::new(fd),
            uid: id("/user/uid")?,
            gid: id("/user/gid")?,
            groups,
            bounding: set("bounding")?,
            effective: set("effective")?,
            permitted: set("permitted")?,
            inheritable: set("inheritable")?,
            ambient: set("ambient")?,
        })
    }

    /// Joins the namespace and takes the process's ids in it; every
    /// capability of the namespace stays effective (for the filter).
    fn enter(&self) -> Result<(), String> {
        use nix::unistd::{Gid, Uid};
        nix::sched::setns(self.fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWUSER)
            .map_err(|e| format!("entering the pod's user namespace: {e}"))?;
        // Only what this kernel knows: dropping an unknown one is EINVAL.
        for cap in caps::runtime::thread_all_supported() {
            if !self.bounding.contains(&cap) {
                caps::drop(None, caps::CapSet::Bounding, cap)
                    .map_err(|e| format!("dropping {cap} from the bounding set: {e}"))?;
            }
        }
        nix::sys::prctl::set_keepcaps(true).map_err(|e| format!("PR_SET_KEEPCAPS: {e}"))?;
        let groups: Vec<Gid> = self.groups.iter().map(|g| Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&groups).map_err(|e| {
            format!(
                "setgroups({:?}) in the pod's user namespace: {e}",
                self.groups
            )
        })?;
        let (uid, gid) = (Uid::from_raw(self.uid), Gid::from_raw(self.gid));
        nix::unistd::setresgid(gid, gid, gid)
            .map_err(|e| format!("setgid({}) in the pod's user namespace: {e}", self.gid))?;
        nix::unistd::setresuid(uid, uid, uid)
            .map_err(|e| format!("setuid({}) in the pod's user namespace: {e}", self.uid))?;
        nix::sys::prctl::set_keepcaps(false).map_err(|e| format!("PR_SET_KEEPCAPS: {e}"))?;
        let permitted = caps::read(None, caps::CapSet::Permitted)
            .map_err(|e| format!("reading the permitted capabilities: {e}"))?;
        caps::set(None, caps::CapSet::Effective, &permitted)
            .map_err(|e| format!("raising the effective capabilities: {e}"))
    }

    /// Sets the process's own capability sets (inheritable while
    /// `CAP_SETPCAP` is effective, permitted after effective, ambient last).
    fn final_caps(&self) -> Result<(), String> {
        for (set, caps) in [
            (caps::CapSet::Inheritable, &self.inheritable),
            (caps::CapSet::Effective, &self.effective),
            (caps::CapSet::Permitted, &self.permitted),
            (caps::CapSet::Ambient, &self.ambient),
        ] {
            caps::set(None, set, caps).map_err(|e| format!("setting the {set:?} set: {e}"))?;
        }
        Ok(())
    }
}

fn start_external(runtime: &Path, req: &ExecRequest, io: Stdio) -> Result<Pid, String> {
    let dir = req.process.parent().unwrap_or(Path::new("/"));
    let stem = req
        .process
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pid_file = dir.join(format!("{stem}.pid"));
    let log = dir.join(format!("{stem}.runtime.log"));
    // `--detach`: the runtime exits once the process runs, and the process
    // is re-parented to us (subreaper) to wait for and to kill on timeout.
    let mut cmd = Command::new(runtime);
    cmd.arg("--root")
        .arg(&req.state_root)
        .arg("--log")
        .arg(&log)
        .arg("exec")
        .arg("--detach")
        .arg("--process")
        .arg(&req.process)
        .arg("--pid-file")
        .arg(&pid_file);
    if let Some(c) = &req.console_socket {
        cmd.arg("--tty").arg("--console-socket").arg(c);
    }
    let status = cmd
        .arg(&req.id)
        .stdin(std::process::Stdio::from(io.stdin))
        .stdout(std::process::Stdio::from(io.stdout))
        .stderr(std::process::Stdio::from(io.stderr))
        .status()
        .map_err(|e| format!("running {}: {e}", runtime.display()))?;
    let result = if status.success() {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .map(Pid::from_raw)
            .ok_or_else(|| format!("{} exec wrote no pid file", runtime.display()))
    } else {
        Err(format!(
            "{} exec failed ({status}): {}",
            runtime.display(),
            super::run::last_runtime_error(&log)
        ))
    };
    let _ = std::fs::remove_file(&pid_file);
    let _ = std::fs::remove_file(&log);
    result
}
