//! Pod namespace pinning. A pod's network, IPC and UTS namespaces are created
//! by a short-lived helper (`crius pinns`, forked by the monitor zygote or
//! exec'd) and kept alive by bind-mounting `/proc/<helper>/ns/<kind>` onto
//! files in the pod's run directory, so a pod costs no process.
//!
//! The daemon side ([`pin`], [`unpin`], [`is_pinned`]) never calls unshare or
//! setns: the daemon is multi-threaded and those act on the calling thread
//! only. [`pinns_run`] is the helper's body and runs only in a
//! single-threaded process: freshly exec'd, or forked from the zygote. This
//! module does not choose paths (the caller passes the directory) and does
//! not decide which sysctls a pod may set (the caller's policy); it only
//! refuses requests that would escape `/proc/sys` or change the host instead
//! of the pod.

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::socket::{AddressFamily, SockFlag, SockType};
use serde::{Deserialize, Serialize};

/// The namespaces a pod can own and pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NsKind {
    Net,
    Ipc,
    Uts,
}

impl NsKind {
    pub const ALL: [NsKind; 3] = [NsKind::Net, NsKind::Ipc, NsKind::Uts];

    /// The name under `/proc/<pid>/ns/`, also the pin file's name.
    pub fn name(self) -> &'static str {
        match self {
            NsKind::Net => "net",
            NsKind::Ipc => "ipc",
            NsKind::Uts => "uts",
        }
    }

    fn clone_flag(self) -> CloneFlags {
        match self {
            NsKind::Net => CloneFlags::CLONE_NEWNET,
            NsKind::Ipc => CloneFlags::CLONE_NEWIPC,
            NsKind::Uts => CloneFlags::CLONE_NEWUTS,
        }
    }
}

impl fmt::Display for NsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the helper is asked to create. Sent to it as JSON on stdin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinRequest {
    /// Where the pin files go, e.g. `<run_dir>/pods/<id>/ns`; created 0700
    /// if missing. Must be absolute.
    pub dir: PathBuf,
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
    /// Set inside the new UTS namespace (requires `uts`).
    pub hostname: Option<String>,
    /// Already validated by the caller; written to `/proc/sys/<key with . → />`
    /// inside the new namespaces.
    pub sysctls: Vec<(String, String)>,
    /// A pod-level PID namespace: held by an infra process (pid 1 there),
    /// since a PID namespace without an init cannot be joined.
    #[serde(default)]
    pub pid: bool,
    /// A pod user namespace with these mappings: made first, and the other
    /// namespaces are created inside it (owned by it), so the pod's
    /// containers, which join it first, hold privilege over them.
    #[serde(default)]
    pub userns: Option<UserNs>,
}

/// One range of a user namespace's uid or gid map: `length` ids from
/// `container_id` inside map to ids from `host_id` outside (a line of
/// `/proc/<pid>/uid_map`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub container_id: u32,
    pub host_id: u32,
    pub length: u32,
}

/// The uid and gid maps of a pod's user namespace (validated by the
/// caller; the kernel checks them again when they are written).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNs {
    pub uids: Vec<IdMap>,
    pub gids: Vec<IdMap>,
}

impl PinRequest {
    /// The requested namespaces, in a fixed order.
    pub fn kinds(&self) -> Vec<NsKind> {
        NsKind::ALL
            .into_iter()
            .filter(|k| match k {
                NsKind::Net => self.net,
                NsKind::Ipc => self.ipc,
                NsKind::Uts => self.uts,
            })
            .collect()
    }
}

/// The pin files the helper bind-mounted, one per requested namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pinned {
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    /// `<dir>/pid`, bound to the infra process's PID namespace.
    #[serde(default)]
    pub pid: Option<PathBuf>,
    /// The infra process (host pid), when `pid` was requested.
    #[serde(default)]
    pub infra_pid: Option<u32>,
    /// `<dir>/user`, the pod's user namespace, when `userns` was requested.
    #[serde(default)]
    pub user: Option<PathBuf>,
}

impl Pinned {
    pub fn get(&self, kind: NsKind) -> Option<&Path> {
        match kind {
            NsKind::Net => self.net.as_deref(),
            NsKind::Ipc => self.ipc.as_deref(),
            NsKind::Uts => self.uts.as_deref(),
        }
    }

    fn set(&mut self, kind: NsKind, path: PathBuf) {
        match kind {
            NsKind::Net => self.net = Some(path),
            NsKind::Ipc => self.ipc = Some(path),
            NsKind::Uts => self.uts = Some(path),
        }
    }
}

/// The name of the user namespace's pin file under the pin directory.
pub const USER_PIN: &str = "user";

/// The pin file of `kind` under `dir`.
pub fn pin_path(dir: &Path, kind: NsKind) -> PathBuf {
    dir.join(kind.name())
}

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("cannot bind-mount the {what} namespace onto {path}: {source}")]
    MountOther {
        what: String,
        path: PathBuf,
        source: Errno,
    },
    #[error("cannot start the pod's infra process (PID namespace holder): {0}")]
    Infra(String),
    #[error("user namespace: {0}")]
    Userns(String),
    #[error("pin directory {dir} must be an absolute path")]
    RelativeDir { dir: PathBuf },
    #[error("hostname {hostname:?} for {dir}: {reason}")]
    InvalidHostname {
        dir: PathBuf,
        hostname: String,
        reason: &'static str,
    },
    #[error("invalid sysctl key {key:?}: {reason}")]
    InvalidSysctlKey { key: String, reason: &'static str },
    #[error(
        "sysctl {key} is not namespaced by a namespace this pod owns (needs {needs}); \
         refusing to change the host's value"
    )]
    SysctlOutsidePod { key: String, needs: &'static str },
    #[error(
        "{path} already exists: the {kind} namespace is already pinned there \
         (unpin the directory first)"
    )]
    AlreadyPinned { kind: NsKind, path: PathBuf },
    #[error("creating pin directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("unsharing the {kinds} namespaces: {source}")]
    Unshare { kinds: String, source: Errno },
    #[error("setting hostname {hostname:?} in the new UTS namespace: {source}")]
    SetHostname { hostname: String, source: Errno },
    #[error("bringing up loopback interface lo in the new network namespace: {step}: {source}")]
    Loopback { step: &'static str, source: Errno },
    #[error("writing sysctl {key}={value:?} to {path}: {source}")]
    Sysctl {
        key: String,
        value: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("creating pin file {path}: {source}")]
    CreatePinFile { path: PathBuf, source: io::Error },
    #[error("bind-mounting the {kind} namespace onto {path}: {source}")]
    Mount {
        kind: NsKind,
        path: PathBuf,
        source: Errno,
    },
    #[error("unmounting pinned namespace {path}: {source}")]
    Unmount { path: PathBuf, source: Errno },
    #[error("removing {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
    #[error("reading the pin request from stdin: {0}")]
    ReadRequest(io::Error),
    #[error("parsing the pin request: {0}")]
    ParseRequest(serde_json::Error),
    #[error("encoding the pin request: {0}")]
    EncodeRequest(serde_json::Error),
    #[error("writing the pin result to stdout: {0}")]
    WriteResult(io::Error),
    #[error("starting the namespace helper `{exe} pinns`: {source}")]
    Spawn { exe: PathBuf, source: io::Error },
    #[error("namespace helper task for {dir} did not finish: {source}")]
    HelperTask {
        dir: PathBuf,
        source: tokio::task::JoinError,
    },
    #[error("namespace helper for {dir} failed ({status}): {message}")]
    Helper {
        dir: PathBuf,
        status: ExitStatus,
        message: String,
    },
    #[error("namespace helper for {dir} printed an unreadable result {output:?}: {source}")]
    HelperOutput {
        dir: PathBuf,
        output: String,
        source: serde_json::Error,
    },
}

/// Maps a dotted sysctl key to its file: `net.ipv4.ip_forward` →
/// `/proc/sys/net/ipv4/ip_forward`. The caller already rejects keys with
/// `/`; this check is repeated because a key is about to become a path that
/// root writes to.
pub fn sysctl_path(key: &str) -> Result<PathBuf, NamespaceError> {
    let invalid = |reason| NamespaceError::InvalidSysctlKey {
        key: key.to_owned(),
        reason,
    };
    if key.is_empty() {
        return Err(invalid("empty key"));
    }
    let mut path = PathBuf::from("/proc/sys");
    for component in key.split('.') {
        if component.is_empty() {
            return Err(invalid(
                "empty component (leading, trailing or doubled '.')",
            ));
        }
        if component.contains('/') {
            return Err(invalid("contains '/'"));
        }
        if component.contains('\0') {
            return Err(invalid("contains a NUL byte"));
        }
        path.push(component);
    }
    Ok(path)
}

/// Which namespace a sysctl belongs to, or `None` when it is global (a write
/// would change the host). The list matches what the kernel namespaces and
/// what kubelet calls "safe/namespaced" sysctls.
pub fn sysctl_namespace(key: &str) -> Option<NsKind> {
    if key.starts_with("net.") {
        Some(NsKind::Net)
    } else if key.starts_with("kernel.shm")
        || key.starts_with("kernel.msg")
        || key == "kernel.sem"
        || key.starts_with("fs.mqueue.")
    {
        Some(NsKind::Ipc)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some(NsKind::Uts)
    } else {
        None
    }
}

/// Checks a request before any process or namespace exists. Both sides run
/// it: the daemon to fail fast, the helper because it must never change the
/// host's hostname or sysctls when a namespace was not requested.
pub fn validate(req: &PinRequest) -> Result<(), NamespaceError> {
    if !req.dir.is_absolute() {
        return Err(NamespaceError::RelativeDir {
            dir: req.dir.clone(),
        });
    }
    if let Some(hostname) = &req.hostname {
        let reason = if !req.uts {
            Some("a hostname needs the pod's own UTS namespace (uts = false)")
        } else if hostname.is_empty() {
            Some("empty")
        } else if hostname.len() > 64 {
            Some("longer than 64 bytes")
        } else if hostname.contains('\0') {
            Some("contains a NUL byte")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(NamespaceError::InvalidHostname {
                dir: req.dir.clone(),
                hostname: hostname.clone(),
                reason,
            });
        }
    }
    let kinds = req.kinds();
    for (key, _) in &req.sysctls {
        sysctl_path(key)?;
        match sysctl_namespace(key) {
            Some(kind) if kinds.contains(&kind) => {}
            Some(kind) => {
                return Err(NamespaceError::SysctlOutsidePod {
                    key: key.clone(),
                    needs: kind.name(),
                });
            }
            None => {
                return Err(NamespaceError::SysctlOutsidePod {
                    key: key.clone(),
                    needs: "a namespaced sysctl: net.*, kernel.shm*, kernel.msg*, \
                            kernel.sem, fs.mqueue.*",
                });
            }
        }
    }
    Ok(())
}

/// Daemon side: runs `<exe> pinns` with `req` as JSON on stdin and returns the
/// pins it made. The helper undoes its own work when it fails; this also
/// removes any pin file it may have left (e.g. killed by a signal) and the
/// directory if this call created it. One pin per directory at a time: the
/// caller serialises per pod. If the returned future is dropped (a cancelled
/// CRI call), the helper still runs to completion and its pins stay: the
/// caller's failure path must [`unpin`] the directory.
pub async fn pin(exe: &Path, req: &PinRequest) -> Result<Pinned, NamespaceError> {
    let exe = exe.to_owned();
    pin_with(req, move |input| exec_helper(&exe, &input)).await
}

/// [`pin`] with the helper run by `run`: given the request bytes, it returns
/// the helper's exit status and output ([`exec_helper`], or a fork of the
/// monitor zygote). It is called on a blocking thread.
pub async fn pin_with<F>(req: &PinRequest, run: F) -> Result<Pinned, NamespaceError>
where
    F: FnOnce(Vec<u8>) -> Result<std::process::Output, NamespaceError> + Send + 'static,
{
    validate(req)?;
    for kind in req.kinds() {
        let path = pin_path(&req.dir, kind);
        if path.symlink_metadata().is_ok() {
            return Err(NamespaceError::AlreadyPinned { kind, path });
        }
    }
    if req.userns.is_some() && req.dir.join(USER_PIN).symlink_metadata().is_ok() {
        return Err(NamespaceError::Userns(format!(
            "{} already exists (unpin the directory first)",
            req.dir.join(USER_PIN).display()
        )));
    }
    let dir_existed = req.dir.symlink_metadata().is_ok();
    let input = serde_json::to_vec(req).map_err(NamespaceError::EncodeRequest)?;
    let result = match tokio::task::spawn_blocking(move || run(input)).await {
        Err(source) => Err(NamespaceError::HelperTask {
            dir: req.dir.clone(),
            source,
        }),
        Ok(Err(e)) => Err(e),
        Ok(Ok(output)) => helper_result(&req.dir, &output),
    };
    if result.is_err() {
        // Best effort: the error that matters is the helper's.
        for kind in req.kinds() {
            let _ = remove_pin(&pin_path(&req.dir, kind));
        }
        if req.userns.is_some() {
            let _ = remove_pin(&req.dir.join(USER_PIN));
        }
        if !dir_existed {
            let _ = fs::remove_dir(&req.dir);
        }
    }
    result
}

/// Reads the helper's verdict: the `Pinned` JSON on success, its stderr line
/// on failure.
fn helper_result(dir: &Path, output: &std::process::Output) -> Result<Pinned, NamespaceError> {
    if output.status.success() {
        let stdout = String::from_utf8_lossy(&output.stdout);
        return serde_json::from_str::<Pinned>(stdout.trim()).map_err(|source| {
            NamespaceError::HelperOutput {
                dir: dir.to_owned(),
                output: stdout.trim().to_owned(),
                source,
            }
        });
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut message = stderr.trim();
    if message.is_empty() {
        message = "no message on stderr";
    }
    // Bounded: a panicking helper prints a backtrace, a client wants a line.
    let mut end = message.len().min(4096);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    Err(NamespaceError::Helper {
        dir: dir.to_owned(),
        status: output.status,
        message: message[..end].to_owned(),
    })
}

/// Runs `<exe> pinns` with `input` on its stdin. Blocking. std::process:
/// spawning is fork+exec (posix_spawn), the child runs no Rust code before
/// exec, so this is safe from the multi-threaded daemon; the namespace work
/// happens in the new process.
pub fn exec_helper(exe: &Path, input: &[u8]) -> Result<std::process::Output, NamespaceError> {
    let spawn_err = |source| NamespaceError::Spawn {
        exe: exe.to_owned(),
        source,
    };
    let mut child = Command::new(exe)
        .arg("pinns")
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    // The helper reads all of stdin before it writes anything, so writing
    // first cannot deadlock. A write error (the helper died early) is
    // reported through its exit status and stderr instead.
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(input))
        .unwrap_or(Ok(()));
    let output = child.wait_with_output().map_err(spawn_err)?;
    if output.status.success() {
        written.map_err(spawn_err)?;
    }
    Ok(output)
}

/// Unmounts (lazily) and removes the pin files under `dir`, then `dir`
/// itself. Idempotent: missing files, a missing directory or files that are
/// not mounted are fine.
pub fn unpin(dir: &Path) -> Result<(), NamespaceError> {
    for kind in NsKind::ALL {
        remove_pin(&pin_path(dir, kind))?;
    }
    remove_pin(&dir.join("pid"))?;
    remove_pin(&dir.join(USER_PIN))?;
    match fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(NamespaceError::Remove {
            path: dir.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// How many mounts stacked on one pin file we peel off; more than one only
/// happens after a crash between two pins of the same directory.
const MAX_STACKED_MOUNTS: usize = 16;

fn remove_pin(path: &Path) -> Result<(), NamespaceError> {
    for _ in 0..MAX_STACKED_MOUNTS {
        // NOFOLLOW: a symlink planted at a pin path must not make us unmount
        // something else.
        match nix::mount::umount2(path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => continue,
            // EINVAL: not a mount point (any more); ENOENT: no such file.
            Err(Errno::EINVAL | Errno::ENOENT) => break,
            Err(source) => {
                return Err(NamespaceError::Unmount {
                    path: path.to_owned(),
                    source,
                });
            }
        }
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(NamespaceError::Remove {
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// True when `path` is a live pinned namespace: an nsfs bind mount (statfs
/// magic `NSFS_MAGIC`), not a symlink. Used by restart recovery.
pub fn is_pinned(path: &Path) -> bool {
    let Ok(meta) = path.symlink_metadata() else {
        return false;
    };
    if meta.file_type().is_symlink() {
        return false;
    }
    matches!(
        nix::sys::statfs::statfs(path),
        Ok(s) if s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC
    )
}

mod ioctl {
    // NS_GET_NSTYPE (linux/nsfs.h): _IO(0xb7, 0x3), returns the CLONE_NEW*
    // flag of the namespace an nsfs file refers to. In a private module: the
    // macro makes a `pub unsafe fn`.
    nix::ioctl_none!(ns_get_nstype, 0xb7, 0x3);
}

/// The kind of the live pinned namespace at `path`, or `None` when it is not
/// a pinned namespace. Restart recovery uses it to check that `<dir>/net`
/// really holds a network namespace.
pub fn pinned_kind(path: &Path) -> Option<NsKind> {
    if !is_pinned(path) {
        return None;
    }
    let file = fs::File::open(path).ok()?;
    // SAFETY: NS_GET_NSTYPE takes no argument and only returns a value; the
    // fd stays open for the duration of the call.
    let ty = unsafe { ioctl::ns_get_nstype(file.as_raw_fd()) }.ok()?;
    NsKind::ALL
        .into_iter()
        .find(|k| k.clone_flag().bits() == ty)
}

/// The helper process's body (`crius pinns`). Must run in a single-threaded
/// process (freshly exec'd, or forked from the single-threaded zygote):
/// unshare changes only the calling thread, and `/proc/self` names the
/// thread-group leader, so the namespaces must be the main thread's. Prints the [`Pinned`] JSON on stdout; on
/// failure undoes its mounts and prints one line on stderr.
pub fn pinns_main() -> ExitCode {
    ExitCode::from(pinns_run() as u8)
}

/// [`pinns_main`]'s body, also run by the monitor zygote in a forked
/// (single-threaded) child with stdin and stdout/stderr redirected: 0 on
/// success, 1 on failure.
pub fn pinns_run() -> i32 {
    match helper_body() {
        Ok(()) => 0,
        Err(e) => {
            let message = e.to_string().replace('\n', " ");
            // Not eprintln!: it panics when stderr is gone.
            let _ = writeln!(io::stderr(), "crius pinns: {message}");
            1
        }
    }
}

fn helper_body() -> Result<(), NamespaceError> {
    let mut input = String::new();
    io::stdin()
        .read_to_string(&mut input)
        .map_err(NamespaceError::ReadRequest)?;
    let req: PinRequest = serde_json::from_str(&input).map_err(NamespaceError::ParseRequest)?;
    validate(&req)?;
    let mut pins = Pins::create(&req.dir)?;
    match &req.userns {
        None => {
            let infra = enter_pod_namespaces(&req)?;
            pin_all(&req, &mut pins, "self", infra)?;
        }
        Some(userns) => userns_pod(&req, userns, &mut pins)?,
    }

    let mut out =
        serde_json::to_string(&pins.pinned).map_err(|e| NamespaceError::WriteResult(e.into()))?;
    out.push('\n');
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(NamespaceError::WriteResult)?;
    pins.keep();
    Ok(())
}

/// Unshares the pod's namespaces in the calling process, configures them
/// (hostname, `lo`, sysctls) and starts the infra when a PID namespace is
/// asked for; returns the infra's host pid.
fn enter_pod_namespaces(req: &PinRequest) -> Result<Option<u32>, NamespaceError> {
    let kinds = req.kinds();
    let flags = kinds
        .iter()
        .fold(CloneFlags::empty(), |f, k| f | k.clone_flag());
    if !flags.is_empty() {
        nix::sched::unshare(flags).map_err(|source| NamespaceError::Unshare {
            kinds: kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join("+"),
            source,
        })?;
    }
    if let Some(hostname) = &req.hostname {
        nix::unistd::sethostname(hostname).map_err(|source| NamespaceError::SetHostname {
            hostname: hostname.clone(),
            source,
        })?;
    }
    if req.net {
        loopback_up()?;
    }
    for (key, value) in &req.sysctls {
        write_sysctl(key, value)?;
    }
    if req.pid {
        return Ok(Some(super::infra::spawn()?));
    }
    Ok(None)
}

/// Bind-mounts the namespaces of `/proc/<proc>/ns/*` (and the infra's PID
/// namespace) onto the pin files. Kills the infra when a pin fails.
fn pin_all(
    req: &PinRequest,
    pins: &mut Pins,
    proc: &str,
    infra: Option<u32>,
) -> Result<(), NamespaceError> {
    let result = (|| {
        for kind in req.kinds() {
            pins.bind(proc, kind)?;
        }
        if let Some(infra) = infra {
            let path = req.dir.join("pid");
            pins.bind_file(&path, &format!("/proc/{infra}/ns/pid"), "pid")?;
            pins.pinned.pid = Some(path);
            pins.pinned.infra_pid = Some(infra);
        }
        Ok(())
    })();
    if result.is_err()
        && let Some(infra) = infra
    {
        super::infra::kill(infra);
    }
    result
}

/// A pod with its own user namespace. A child process unshares the user
/// namespace; this process (root in the host's namespace, which the map
/// files require) writes its uid and gid maps; the child then becomes root
/// inside and creates the other namespaces there, so they are owned by the
/// pod's user namespace, as the kernel requires for the pod's containers
/// to act on them (setns, mounting sysfs and mqueue, sysctls). This process
/// pins them from `/proc/<child>/ns/*`: the child has no privilege over the
/// host's mount namespace. `setgroups` stays allowed (no `deny`): the map
/// is written by a privileged process, and containers need setgroups(2).
fn userns_pod(req: &PinRequest, userns: &UserNs, pins: &mut Pins) -> Result<(), NamespaceError> {
    use std::io::{BufRead as _, BufReader};
    use std::os::unix::net::UnixStream;
    let err = |what: &str, e: &dyn fmt::Display| NamespaceError::Userns(format!("{what}: {e}"));
    let (parent_end, child_end) =
        UnixStream::pair().map_err(|e| err("creating the socket pair", &e))?;
    // SAFETY: this process is single-threaded (see `pinns_main`), so the
    // child may run any code; it leaves through `_exit` and never returns
    // into the caller's frames.
    let fork = unsafe { nix::unistd::fork() }.map_err(|e| err("fork", &e))?;
    let child = match fork {
        nix::unistd::ForkResult::Child => {
            drop(parent_end);
            let code = userns_child(req, child_end);
            // SAFETY: `_exit` ends the process without running the parent's
            // atexit handlers or destructors twice.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(child_end);
    let reap = |kill: bool| {
        if kill {
            let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = nix::sys::wait::waitpid(child, None);
    };
    let mut reader = match parent_end.try_clone() {
        Ok(r) => BufReader::new(r),
        Err(e) => {
            reap(true);
            return Err(err("cloning the socket", &e));
        }
    };
    let mut writer = parent_end;
    let mut line = String::new();
    let mut next_line = |line: &mut String| -> Result<(), NamespaceError> {
        line.clear();
        reader
            .read_line(line)
            .map_err(|e| err("reading from the namespace child", &e))?;
        match line.trim_end().strip_prefix("err ") {
            Some(message) => Err(NamespaceError::Userns(message.to_owned())),
            None if line.is_empty() => Err(NamespaceError::Userns(
                "the namespace child exited without an answer".into(),
            )),
            None => Ok(()),
        }
    };
    let result = (|| {
        next_line(&mut line)?;
        write_id_map(child.as_raw(), "uid_map", &userns.uids)?;
        write_id_map(child.as_raw(), "gid_map", &userns.gids)?;
        writer
            .write_all(b"m")
            .map_err(|e| err("signalling the namespace child", &e))?;
        next_line(&mut line)?;
        let infra = match line.trim_end().strip_prefix("ok ") {
            Some("0") => None,
            Some(pid) => Some(
                pid.parse::<u32>()
                    .map_err(|e| err(&format!("infra pid {pid:?} from the namespace child"), &e))?,
            ),
            None => return Err(err("namespace child", &format!("said {line:?}"))),
        };
        let path = req.dir.join(USER_PIN);
        let source = format!("/proc/{}/ns/user", child.as_raw());
        if let Err(e) = pins.bind_file(&path, &source, "user") {
            if let Some(infra) = infra {
                super::infra::kill(infra);
            }
            return Err(e);
        }
        pins.pinned.user = Some(path);
        pin_all(req, pins, &child.as_raw().to_string(), infra)
    })();
    // EOF tells the child to exit (shutdown, not drop: `reader` holds a
    // duplicate of the socket).
    let _ = writer.shutdown(std::net::Shutdown::Both);
    reap(result.is_err());
    result
}

/// The child's side of [`userns_pod`]: one line back per step, `err <why>`
/// on failure. Returns its exit code.
fn userns_child(req: &PinRequest, mut sock: std::os::unix::net::UnixStream) -> i32 {
    let step = |what: &str, e: &dyn fmt::Display| format!("{what}: {e}");
    let unshared = nix::sched::unshare(CloneFlags::CLONE_NEWUSER)
        .map_err(|e| step("unshare(CLONE_NEWUSER)", &e));
    let answer = match &unshared {
        Ok(()) => "unshared\n".to_owned(),
        Err(e) => format!("err {}\n", e.replace('\n', " ")),
    };
    if sock.write_all(answer.as_bytes()).is_err() || unshared.is_err() {
        return 1;
    }
    let mut go = [0u8; 1];
    if !matches!(sock.read(&mut go), Ok(1)) || go[0] != b'm' {
        return 1;
    }
    let result = (|| -> Result<Option<u32>, String> {
        // Root inside: files this process creates (none today) and the
        // credentials its children inherit are the pod's mapped root.
        let root_gid = nix::unistd::Gid::from_raw(0);
        let root_uid = nix::unistd::Uid::from_raw(0);
        nix::unistd::setresgid(root_gid, root_gid, root_gid)
            .map_err(|e| step("setresgid(0)", &e))?;
        nix::unistd::setgroups(&[]).map_err(|e| step("setgroups([])", &e))?;
        nix::unistd::setresuid(root_uid, root_uid, root_uid)
            .map_err(|e| step("setresuid(0)", &e))?;
        enter_pod_namespaces(req).map_err(|e| e.to_string())
    })();
    let answer = match result {
        Ok(infra) => format!("ok {}\n", infra.unwrap_or(0)),
        Err(e) => format!("err {}\n", e.replace('\n', " ")),
    };
    if sock.write_all(answer.as_bytes()).is_err() {
        return 1;
    }
    // Stay alive (our /proc/<pid>/ns/* are being pinned) until the parent
    // closes its end.
    let _ = sock.read(&mut go);
    0
}

/// Writes a user namespace's `uid_map` or `gid_map` in one write(2), as the
/// kernel requires.
fn write_id_map(pid: i32, file: &str, maps: &[IdMap]) -> Result<(), NamespaceError> {
    let text: String = maps
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.length))
        .collect();
    let path = format!("/proc/{pid}/{file}");
    let err = |e: io::Error| NamespaceError::Userns(format!("writing {text:?} to {path}: {e}"));
    let mut f = OpenOptions::new().write(true).open(&path).map_err(err)?;
    let n = f.write(text.as_bytes()).map_err(err)?;
    if n != text.len() {
        return Err(err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write: {n} of {} bytes", text.len()),
        )));
    }
    Ok(())
}

fn write_sysctl(key: &str, value: &str) -> Result<(), NamespaceError> {
    let path = sysctl_path(key)?;
    let err = |source| NamespaceError::Sysctl {
        key: key.to_owned(),
        value: value.to_owned(),
        path: path.clone(),
        source,
    };
    // One write(2): procfs sysctl handlers parse each write separately.
    let mut file = OpenOptions::new().write(true).open(&path).map_err(err)?;
    let n = file.write(value.as_bytes()).map_err(err)?;
    if n != value.len() {
        return Err(err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write: {n} of {} bytes", value.len()),
        )));
    }
    Ok(())
}

/// A new network namespace starts with `lo` down; pods (and CNI's loopback
/// plugin expectations) need it up.
fn loopback_up() -> Result<(), NamespaceError> {
    let err = |step| move |source| NamespaceError::Loopback { step, source };
    let sock = nix::sys::socket::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(err("socket"))?;
    // SAFETY: ifreq is plain data (arrays, integers and a raw pointer in a
    // union); all-zero bytes are a valid value of it.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads ifr_name and writes ifr_ifru.ifru_flags of
    // the ifreq we own, which outlives the call; the fd is an open socket.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut ifr) };
    Errno::result(rc).map_err(err("SIOCGIFFLAGS"))?;
    // SAFETY: SIOCGIFFLAGS succeeded, so ifru_flags is the initialised union
    // member; any bit pattern is a valid c_short.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    ifr.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS only reads the ifreq we own, which outlives the
    // call; the fd is an open socket.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &ifr) };
    Errno::result(rc).map_err(err("SIOCSIFFLAGS"))?;
    Ok(())
}

/// The helper's undo log: every file it created and mount it made is undone
/// on drop unless [`Pins::keep`] was called.
struct Pins {
    dir: PathBuf,
    created_dir: bool,
    files: Vec<PathBuf>,
    mounts: Vec<PathBuf>,
    pinned: Pinned,
    keep: bool,
}

impl Pins {
    fn create(dir: &Path) -> Result<Pins, NamespaceError> {
        let created_dir = dir.symlink_metadata().is_err();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| NamespaceError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        Ok(Pins {
            dir: dir.to_owned(),
            created_dir,
            files: Vec::new(),
            mounts: Vec::new(),
            pinned: Pinned::default(),
            keep: false,
        })
    }

    /// Bind-mounts `source` (a `/proc/<pid>/ns/*` file) onto a new file
    /// `path`, recording both for undo.
    fn bind_file(&mut self, path: &Path, source: &str, what: &str) -> Result<(), NamespaceError> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(path)
            .map_err(|source| NamespaceError::CreatePinFile {
                path: path.to_owned(),
                source,
            })?;
        self.files.push(path.to_owned());
        nix::mount::mount(
            Some(source),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|source| NamespaceError::MountOther {
            what: what.to_owned(),
            path: path.to_owned(),
            source,
        })?;
        self.mounts.push(path.to_owned());
        Ok(())
    }

    /// Pins `/proc/<proc>/ns/<kind>` (`proc` is `self` or a pid).
    fn bind(&mut self, proc: &str, kind: NsKind) -> Result<(), NamespaceError> {
        let path = pin_path(&self.dir, kind);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&path)
            .map_err(|source| {
                if source.kind() == io::ErrorKind::AlreadyExists {
                    NamespaceError::AlreadyPinned {
                        kind,
                        path: path.clone(),
                    }
                } else {
                    NamespaceError::CreatePinFile {
                        path: path.clone(),
                        source,
                    }
                }
            })?;
        self.files.push(path.clone());
        // No mount namespace is unshared: the mount lands in the daemon's
        // (host) mount namespace, where the pod's containers will find it.
        let source = format!("/proc/{proc}/ns/{}", kind.name());
        nix::mount::mount(
            Some(source.as_str()),
            &path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|source| NamespaceError::Mount {
            kind,
            path: path.clone(),
            source,
        })?;
        self.mounts.push(path.clone());
        self.pinned.set(kind, path);
        Ok(())
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for path in &self.mounts {
            let _ = nix::mount::umount2(
                path.as_path(),
                MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW,
            );
        }
        for path in &self.files {
            let _ = fs::remove_file(path);
        }
        if self.created_dir {
            let _ = fs::remove_dir(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests;
