//! Process plumbing for the per-container monitor: detaching from the
//! daemon, signal dispositions around container creation, terminal size.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::sys::signal::{SigHandler, Signal};
use nix::unistd::{ForkResult, fork, setsid};

/// Double-fork step: the calling (single-threaded) process forks; the
/// parent exits at once with status 0, so whoever spawned it can reap it
/// immediately; the child starts a new session (no controlling terminal,
/// out of the daemon's process group) and carries on. When the daemon
/// dies, the child is re-parented to init, not killed.
pub fn detach() -> nix::Result<()> {
    // SAFETY: the monitor calls this first thing, while it is still
    // single-threaded (no async runtime, no threads), so the child may run
    // any code after fork.
    match unsafe { fork() }? {
        ForkResult::Parent { .. } => std::process::exit(0),
        ForkResult::Child => {
            setsid()?;
            Ok(())
        }
    }
}

/// Forks the calling process, which must be single-threaded (the monitor
/// zygote). The child runs `child` and exits with the status it returns;
/// the parent gets the child's pid.
pub fn fork_run(child: impl FnOnce() -> i32) -> nix::Result<nix::unistd::Pid> {
    // SAFETY: the only caller is the monitor zygote, which never starts a
    // thread, so the child may run any code after fork.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => std::process::exit(child()),
    }
}

/// While the container's processes are forked (`true`): SIGPIPE runs a
/// handler that does nothing; afterwards (`false`): ignored again.
///
/// The Rust runtime ignores SIGPIPE, and an ignored signal survives fork and
/// exec, so `yes | head` would never end inside the container. A handled
/// signal is reset to its default action by exec: the container's programs
/// start with SIGPIPE at its default, while this process, which meanwhile
/// writes the state to OCI hooks' stdin (libcontainer runs createRuntime
/// hooks here), gets EPIPE from a hook that exits without reading instead
/// of being killed.
pub fn sigpipe_default_after_exec(on: bool) {
    extern "C" fn nothing(_: libc::c_int) {}
    let handler = if on {
        SigHandler::Handler(nothing)
    } else {
        SigHandler::SigIgn
    };
    // SAFETY: the handler does nothing, so it is async-signal-safe; SigIgn
    // installs no function at all.
    let _ = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, handler) };
}

nix::ioctl_write_ptr_bad!(tiocswinsz, libc::TIOCSWINSZ, libc::winsize);

/// Sets the window size of the terminal whose master side is `fd`.
pub fn set_winsize(fd: BorrowedFd<'_>, width: u16, height: u16) -> nix::Result<()> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: `fd` is a live descriptor for the duration of the call and
    // `ws` is a valid winsize the kernel only reads.
    unsafe { tiocswinsz(fd.as_raw_fd(), &ws) }.map(drop)
}

/// Receives one message into `buf` with up to 8 descriptors attached
/// (SCM_RIGHTS, close-on-exec); retried on EINTR. The bytes received and
/// the descriptors, owned.
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
) -> nix::Result<(usize, Vec<std::os::fd::OwnedFd>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 8]);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut fds = Vec::new();
                for c in msg.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(raw) = c {
                        fds.extend(raw.into_iter().map(received_fd));
                    }
                }
                return Ok((msg.bytes, fds));
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Takes ownership of a descriptor the kernel just installed in this
/// process from an SCM_RIGHTS message.
pub fn received_fd(fd: std::os::fd::RawFd) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd as _;
    // SAFETY: recvmsg installed `fd` for this process and returned it to
    // the caller only; nothing else owns or closes it.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

/// Registers an owned descriptor (set non-blocking by the caller) with
/// tokio's reactor.
pub fn async_fd(
    fd: std::os::fd::OwnedFd,
) -> std::io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    // SAFETY: an OwnedFd is open and owned by us until it is dropped, which
    // happens only when the AsyncFd (which then holds it) is dropped; its
    // as_raw_fd never changes.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(std::io::Error::from)
}

/// Waits for `child` until `deadline`: its exit status, or `None` when it
/// is still running then (not reaped: its pid is still the caller's to
/// kill). Blocking. Wakes the moment the child exits, through a pidfd
/// (Linux 5.3); std has no stable wait with a timeout, and polling
/// `try_wait` with sleeps cost up to a few milliseconds per CNI plugin
/// run. Falls back to polling where `pidfd_open` is unavailable.
pub fn wait_deadline(
    child: &mut std::process::Child,
    deadline: std::time::Instant,
) -> Option<std::process::ExitStatus> {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::time::{Duration, Instant};
    let pid = child.id() as libc::pid_t;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; it touches no memory of ours.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let pidfd = (raw >= 0).then(|| {
        // SAFETY: a non-negative return is a descriptor we now own.
        unsafe { OwnedFd::from_raw_fd(raw as std::os::fd::RawFd) }
    });
    let mut pause = Duration::from_micros(200);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(_) => return None,
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        match &pidfd {
            // Readable once the process has exited.
            Some(fd) => {
                let mut fds = [nix::poll::PollFd::new(
                    std::os::fd::AsFd::as_fd(fd),
                    nix::poll::PollFlags::POLLIN,
                )];
                let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
            }
            None => {
                std::thread::sleep(pause.min(left));
                pause = (pause * 2).min(Duration::from_millis(20));
            }
        }
    }
}
