//! The pod infra process: pid 1 of a pod-level PID namespace.
//!
//! Only pods with `namespace_options.pid == POD` get one. A PID namespace
//! whose init has exited cannot be joined, so something must hold it for
//! the pod's lifetime; it also reaps the zombies of processes the pod's
//! containers orphan. It is started by `crius pinns` (single-threaded,
//! after `unshare(CLONE_NEWPID)`) as `crius infra`, in its own session, with
//! no file descriptors but /dev/null, so daemon restarts never touch it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal, kill as send};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::namespace::NamespaceError;

/// Helper side: moves future children into a new PID namespace and starts
/// the infra there. Returns its host pid.
pub(super) fn spawn() -> Result<u32, NamespaceError> {
    nix::sched::unshare(CloneFlags::CLONE_NEWPID)
        .map_err(|e| NamespaceError::Infra(format!("unshare(CLONE_NEWPID): {e}")))?;
    let child = Command::new("/proc/self/exe")
        .arg("infra")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| NamespaceError::Infra(format!("starting /proc/self/exe infra: {e}")))?;
    // Not waited for: when the helper exits the infra is reparented to the
    // host's init, which reaps it when the pod is stopped.
    Ok(child.id())
}

/// Best-effort SIGKILL of an infra this helper just started.
pub(super) fn kill(pid: u32) {
    if let Ok(p) = i32::try_from(pid) {
        let _ = send(Pid::from_raw(p), Signal::SIGKILL);
    }
}

/// True when `pid` is alive and still the process holding the PID namespace
/// pinned at `pin` (so a recycled pid is never mistaken for it).
pub fn alive(pid: u32, pin: &Path) -> bool {
    // A killed infra stays a zombie until the host's init reaps it (slow on
    // some machines), and a zombie still shows its PID namespace link.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    if stat
        .rsplit_once(") ")
        .is_none_or(|(_, rest)| rest.starts_with(['Z', 'X']))
    {
        return false;
    }
    let (Ok(a), Ok(b)) = (
        std::fs::metadata(format!("/proc/{pid}/ns/pid")),
        std::fs::metadata(pin),
    ) else {
        return false;
    };
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// Kills the pod's infra (and with it every process in the pod's PID
/// namespace) and waits up to 2 s for it to be gone. Idempotent.
pub fn stop(pid: u32, pin: &Path) {
    if !alive(pid, pin) {
        return;
    }
    kill(pid);
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(pid, pin) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `crius infra`: pid 1 of the pod's PID namespace. Reaps children until
/// SIGTERM or SIGINT.
pub fn infra_main() -> ExitCode {
    let _ = nix::unistd::setsid();
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        set.add(s);
    }
    if set.thread_block().is_err() {
        return ExitCode::FAILURE;
    }
    loop {
        match set.wait() {
            Ok(Signal::SIGTERM | Signal::SIGINT) => return ExitCode::SUCCESS,
            Ok(_) => loop {
                match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => continue,
                }
            },
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
