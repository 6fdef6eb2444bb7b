//! ExecSync: one command in a running container, its output captured.
//!
//! The daemon writes the command's OCI `process` (the container's own, with
//! the args replaced, so user, groups, capabilities, seccomp, AppArmor,
//! no_new_privs, env and working dir are the container's) and an
//! [`ExecRequest`] into `<bundle>/exec/`, and has the monitor zygote fork an
//! exec helper (`crate::monitor::exec`) with three pipes: the helper's
//! report, the command's stdout and its stderr. The helper enforces the
//! timeout (it kills the process); the daemon reads both outputs, each
//! capped at `runtime.exec_output_max_bytes` (16 MiB, the CRI's figure, by
//! default; the rest is read and dropped, as the CRI asks:
//! CVE-2022-1708, CVE-2022-31030).

use std::os::fd::{AsFd as _, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::net::unix::pipe;

use super::{ContainerManager, blocking};
use crate::id::ContainerId;
use crate::monitor::client;
use crate::monitor::exec::{ExecReport, ExecRequest};
use crate::monitor::now_ns;
use crate::monitor::proto::{self, request::Kind};
use crate::monitor::zygote;
use crate::runtime::container::{ContainerError, ContainerState};

/// Cap on each of stdout and stderr (the CRI's 16 MiB).
pub const MAX_OUTPUT: usize = 16 * 1024 * 1024;
/// Cap on both together: kubelet's gRPC client (and our server) refuse
/// messages over 16 MiB, so the response keeps 64 KiB for its framing.
pub const MAX_BOTH: usize = MAX_OUTPUT - 64 * 1024;
/// How long output may still arrive after the command exited (a background
/// process it left may hold the pipes open).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// How long the runtime has to send a terminal's master.
const CONSOLE_WAIT: Duration = Duration::from_secs(30);

/// What ExecSync returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

static NEXT_EXEC: AtomicU64 = AtomicU64::new(0);

/// How an exec's standard streams are set up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecIo {
    /// The caller writes the command's stdin (else it is /dev/null).
    pub stdin: bool,
    /// The command gets a terminal (stdout and stderr are then one stream).
    pub tty: bool,
}

/// A started exec's streams, for the caller to pump.
#[derive(Debug)]
pub struct ExecStreams {
    /// Write end of the command's stdin (with `ExecIo::stdin`, no tty).
    pub stdin: Option<OwnedFd>,
    /// Read ends of its stdout and stderr (no tty).
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// The terminal's master (tty): read for output, write for input,
    /// resize with `sys::process::set_winsize`.
    pub pty: Option<OwnedFd>,
}

/// Waits for a started exec to end.
#[derive(Debug)]
pub struct ExecWaiter {
    id: ContainerId,
    cmd: Vec<String>,
    timeout: Option<Duration>,
    report: OwnedFd,
    _files: Files,
}

impl ExecWaiter {
    /// The command's exit code, or why it could not run / was killed.
    pub async fn wait(self) -> Result<i32, ContainerError> {
        let failed = |context: String, message: String| ContainerError::Failed {
            id: self.id.clone(),
            context,
            message,
        };
        let rx = pipe::Receiver::from_owned_fd(self.report)
            .map_err(|e| failed("exec".into(), format!("reading the report: {e}")))?;
        let report = read_capped(rx, 64 * 1024).await;
        let report: ExecReport =
            serde_json::from_slice(report.split(|b| *b == b'\n').next().unwrap_or_default())
                .map_err(|_| {
                    failed(
                        "exec".into(),
                        "the exec helper exited without a report".into(),
                    )
                })?;
        if let Some(e) = report.error {
            return Err(failed(format!("exec {:?}", self.cmd), e));
        }
        if report.timed_out {
            return Err(ContainerError::TimedOut {
                id: self.id,
                what: format!(
                    "exec {:?} timed out after {}s and was killed",
                    self.cmd,
                    self.timeout.unwrap_or_default().as_secs()
                ),
            });
        }
        Ok(report.exit_code)
    }
}

impl ContainerManager {
    /// Runs `cmd` in the running container `id` and waits for it; after
    /// `timeout` (if any) the process is killed and the call fails.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, ContainerError> {
        let (streams, waiter) = self.start_exec(id, cmd, ExecIo::default(), timeout).await?;
        let id = waiter.id.clone();
        let receiver = |fd: Option<OwnedFd>| {
            fd.ok_or_else(|| ContainerError::Internal("exec output pipe missing".into()))
                .and_then(|fd| {
                    pipe::Receiver::from_owned_fd(fd).map_err(|e| ContainerError::Failed {
                        id: id.clone(),
                        context: "exec".into(),
                        message: format!("reading the output: {e}"),
                    })
                })
        };
        let (out_r, err_r) = (receiver(streams.stdout)?, receiver(streams.stderr)?);
        let cap = self.inner.runtime.exec_output_max_bytes.min(MAX_OUTPUT);
        let mut out = tokio::spawn(read_capped(out_r, cap));
        let mut err = tokio::spawn(read_capped(err_r, cap));
        let exit_code = match waiter.wait().await {
            Ok(code) => code,
            Err(e) => {
                out.abort();
                err.abort();
                return Err(e);
            }
        };
        let drained = tokio::time::timeout(DRAIN_AFTER_EXIT, async {
            let o = (&mut out).await;
            let e = (&mut err).await;
            (o, e)
        })
        .await;
        let (stdout, stderr) = match drained {
            Ok((Ok(o), Ok(e))) => fit(o, e),
            _ => {
                tracing::warn!(container = %id, "exec output still open {DRAIN_AFTER_EXIT:?} after the command exited; returning what arrived");
                out.abort();
                err.abort();
                (Vec::new(), Vec::new())
            }
        };
        Ok(ExecOutput {
            stdout,
            stderr,
            exit_code,
        })
    }

    /// Starts `cmd` in the running container `id` with the container's
    /// process settings; returns its streams and a waiter for its exit.
    pub async fn start_exec(
        &self,
        id: &str,
        cmd: Vec<String>,
        io: ExecIo,
        timeout: Option<Duration>,
    ) -> Result<(ExecStreams, ExecWaiter), ContainerError> {
        if cmd.is_empty() || cmd[0].is_empty() {
            return Err(ContainerError::Invalid(format!(
                "exec in container {id}: cmd must name a program"
            )));
        }
        let (id, rec) = self.running_record(id, "exec in it").await?;
        let (state_root, runtime) = self.state_root(&rec.handler)?;
        let bundle = self.bundle(&id);
        let failed = |context: &str, message: String| ContainerError::Failed {
            id: id.clone(),
            context: context.to_owned(),
            message,
        };

        // The container's process with the command's args.
        let spec: serde_json::Value = std::fs::read(bundle.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| failed("exec", "the container's config.json is unreadable".into()))?;
        // The pod's user namespace, if any: runc enters it itself;
        // libcontainer 0.7's tenant builder does not, so the built-in
        // executor's helper joins it last (`monitor/exec.rs`).
        let userns = spec
            .pointer("/linux/namespaces")
            .and_then(|v| v.as_array())
            .and_then(|a| a.iter().find(|n| n["type"] == "user"))
            .map(|n| n["path"].as_str().map(PathBuf::from));
        let userns = match userns {
            Some(None) => {
                return Err(failed(
                    "exec",
                    "the container's user namespace has no path to join".into(),
                ));
            }
            Some(Some(p)) if runtime.is_none() => Some(p),
            _ => None,
        };
        let mut process = spec
            .get("process")
            .cloned()
            .ok_or_else(|| failed("exec", "the container's spec has no process".into()))?;
        process["args"] = serde_json::json!(cmd);
        process["terminal"] = serde_json::json!(io.tty);
        if let Some(p) = process.as_object_mut() {
            p.remove("consoleSize");
        }
        if io.tty {
            set_env(&mut process, "TERM", "xterm");
        }

        // Built-in executor: the helper loads the filter (libcontainer drops
        // it for exec). Without no_new_privs the kernel wants CAP_SYS_ADMIN
        // for that, so the process borrows it (and CAP_SETPCAP, to give the
        // loans back) and drops both right after, before exec: the command
        // runs with exactly the container's capabilities and filter, and a
        // setuid program still works as it does in the container.
        let mut seccomp = None;
        let mut drop_caps = Vec::new();
        let filter = spec.pointer("/linux/seccomp").filter(|v| !v.is_null());
        if let (None, Some(filter)) = (&runtime, filter) {
            seccomp = Some(filter.clone());
        }
        // Entering a user namespace needs CAP_SYS_ADMIN too, and the helper
        // sets every capability set again inside it.
        let nnp = process["noNewPrivileges"].as_bool() == Some(true);
        if userns.is_some() || (seccomp.is_some() && !nnp) {
            drop_caps = borrow_caps(&mut process);
        }
        let dir = bundle.join("exec");
        let n = NEXT_EXEC.fetch_add(1, Ordering::Relaxed);
        let stem = format!("{}-{n}", now_ns());
        let process_path = dir.join(format!("{stem}.process.json"));
        let request_path = dir.join(format!("{stem}.json"));
        // Unix socket paths are short: the console socket lives in the
        // daemon's socket dir, not the bundle.
        let console = io
            .tty
            .then(|| self.inner.run_dir.join("s").join(format!("x{n}.tty")));
        let request = ExecRequest {
            id: id.to_string(),
            state_root,
            runtime,
            process: process_path.clone(),
            timeout_ms: timeout.map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            seccomp,
            drop_caps,
            console_socket: console.clone(),
            userns,
        };
        let mut paths = vec![process_path.clone(), request_path.clone()];
        paths.extend(console.clone());
        let files = Files(paths);
        let process_json = serde_json::to_vec(&process)
            .map_err(|e| ContainerError::Internal(format!("exec process spec: {e}")))?;
        let request_json = serde_json::to_vec(&request)
            .map_err(|e| ContainerError::Internal(format!("exec request: {e}")))?;
        let inner = self.inner.clone();
        let started = blocking(move || -> Result<(ExecStreams, OwnedFd), String> {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            for (path, bytes) in [
                (&process_path, &process_json),
                (&request_path, &request_json),
            ] {
                crate::monitor::write_atomic(path, bytes)
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
            }
            let pipe = || {
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                    .map_err(|e| format!("creating a pipe: {e}"))
            };
            let null = || {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
                    .map(OwnedFd::from)
                    .map_err(|e| format!("/dev/null: {e}"))
            };
            let (report_r, report_w) = pipe()?;
            let listener = match &console {
                Some(path) => {
                    let _ = std::fs::remove_file(path);
                    Some(
                        std::os::unix::net::UnixListener::bind(path)
                            .map_err(|e| format!("binding {}: {e}", path.display()))?,
                    )
                }
                None => None,
            };
            let mut streams = ExecStreams {
                stdin: None,
                stdout: None,
                stderr: None,
                pty: None,
            };
            // The helper's ends: /dev/null where nothing is wanted (and
            // for all three with a terminal, which replaces them).
            let (in_h, out_h, err_h) = if io.tty {
                (null()?, null()?, null()?)
            } else {
                let in_h = if io.stdin {
                    let (r, w) = pipe()?;
                    streams.stdin = Some(w);
                    r
                } else {
                    null()?
                };
                let (out_r, out_w) = pipe()?;
                let (err_r, err_w) = pipe()?;
                streams.stdout = Some(out_r);
                streams.stderr = Some(err_r);
                (in_h, out_w, err_w)
            };
            inner.zygote.spawn(
                zygote::Kind::Exec,
                &request_path,
                &[report_w.as_fd(), in_h.as_fd(), out_h.as_fd(), err_h.as_fd()],
            )?;
            // Our copies of the helper's ends close here.
            drop((report_w, in_h, out_h, err_h));
            if let Some(l) = listener {
                // None: the helper reported (an error) instead; the waiter
                // returns it.
                streams.pty =
                    crate::monitor::receive_console(&l, Some(report_r.as_fd()), CONSOLE_WAIT)
                        .map_err(|e| format!("receiving the terminal: {e}"))?;
            }
            Ok((streams, report_r))
        })
        .await?
        .map_err(|e| failed("starting the exec", e))?;
        let (streams, report) = started;
        Ok((
            streams,
            ExecWaiter {
                id,
                cmd,
                timeout,
                report,
                _files: files,
            },
        ))
    }
}

impl ContainerManager {
    /// Attaches to the running container's stdio through its monitor; the
    /// connection then carries `AttachFrame`s (see proto/monitor.proto).
    pub async fn attach(
        &self,
        id: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<(ContainerId, tokio::net::UnixStream), ContainerError> {
        let (id, rec) = self.running_record(id, "attach to it").await?;
        if stdin && !rec.spec.stdin {
            return Err(ContainerError::Invalid(format!(
                "container {id} was not created with stdin; cannot attach stdin"
            )));
        }
        let stream = client::attach(
            &self.socket(&id),
            proto::Attach {
                stdin,
                stdout,
                stderr,
            },
        )
        .await
        .map_err(|e| ContainerError::Failed {
            id: id.clone(),
            context: "attaching".into(),
            message: e.to_string(),
        })?;
        Ok((id, stream))
    }

    /// The up-to-date record of `id`, which must be running for `what`.
    async fn running_record(
        &self,
        id: &str,
        what: &str,
    ) -> Result<(ContainerId, crate::runtime::container::ContainerRecord), ContainerError> {
        let id = self
            .resolve(id)?
            .ok_or_else(|| ContainerError::NotFound(id.to_owned()))?;
        self.refresh(&id).await?;
        let rec = self
            .record(&id)
            .ok_or_else(|| ContainerError::NotFound(id.to_string()))?;
        if rec.state != ContainerState::Running {
            return Err(ContainerError::State {
                id,
                what: format!("container is not running; cannot {what}"),
            });
        }
        Ok((id, rec))
    }

    /// Resizes the running container's terminal.
    pub async fn resize(
        &self,
        id: &ContainerId,
        width: u16,
        height: u16,
    ) -> Result<(), ContainerError> {
        client::call(
            &self.socket(id),
            Kind::Resize(proto::Resize {
                width: u32::from(width),
                height: u32::from(height),
            }),
            Some(Duration::from_secs(5)),
        )
        .await
        .map(drop)
        .map_err(|e| ContainerError::Failed {
            id: id.clone(),
            context: "resizing the terminal".into(),
            message: e.to_string(),
        })
    }
}

/// Sets `key` in the process's env (replacing it if present).
fn set_env(process: &mut serde_json::Value, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    let prefix = format!("{key}=");
    match process["env"].as_array_mut() {
        Some(env) => {
            env.retain(|e| !e.as_str().is_some_and(|e| e.starts_with(&prefix)));
            env.push(serde_json::json!(entry));
        }
        None => process["env"] = serde_json::json!([entry]),
    }
}

/// Trims the two outputs to [`MAX_BOTH`] together: each keeps at least
/// half if it has that much, and what one does not use the other may.
fn fit(mut out: Vec<u8>, mut err: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    let keep_err = err
        .len()
        .min((MAX_BOTH / 2).max(MAX_BOTH.saturating_sub(out.len())));
    err.truncate(keep_err);
    out.truncate(MAX_BOTH - keep_err);
    (out, err)
}

/// Adds `CAP_SYS_ADMIN` and `CAP_SETPCAP` to the process's bounding,
/// effective and permitted sets where missing; returns those added, in the
/// order they must be dropped (CAP_SETPCAP last: dropping needs it).
fn borrow_caps(process: &mut serde_json::Value) -> Vec<String> {
    let has = |p: &serde_json::Value, cap: &str| {
        p.pointer("/capabilities/bounding")
            .and_then(|b| b.as_array())
            .is_some_and(|b| b.iter().any(|c| c == cap))
    };
    let mut added = Vec::new();
    for cap in ["CAP_SYS_ADMIN", "CAP_SETPCAP"] {
        if has(process, cap) {
            continue;
        }
        for set in ["bounding", "effective", "permitted"] {
            let list = &mut process["capabilities"][set];
            match list.as_array_mut() {
                Some(a) => a.push(serde_json::json!(cap)),
                None => *list = serde_json::json!([cap]),
            }
        }
        added.push(cap.to_owned());
    }
    added
}

/// Reads to end of file, keeping the first `cap` bytes.
async fn read_capped(mut rx: pipe::Receiver, cap: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// Removes the request files when the exec is over (however it ends).
#[derive(Debug)]
struct Files(Vec<PathBuf>);

impl Drop for Files {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = std::fs::remove_file(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_fit_one_response() {
        let big = || vec![0u8; MAX_OUTPUT];
        let (o, e) = fit(big(), b"done\n".to_vec());
        assert_eq!((o.len(), e.len()), (MAX_BOTH - 5, 5));
        let (o, e) = fit(b"x".to_vec(), big());
        assert_eq!((o.len(), e.len()), (1, MAX_BOTH - 1));
        let (o, e) = fit(big(), big());
        assert_eq!((o.len(), e.len()), (MAX_BOTH - MAX_BOTH / 2, MAX_BOTH / 2));
        let (o, e) = fit(b"a".to_vec(), b"b".to_vec());
        assert_eq!((o, e), (b"a".to_vec(), b"b".to_vec()));
    }

    #[test]
    fn borrowed_caps_are_added_once_in_drop_order() {
        let mut p = serde_json::json!({"capabilities": {
            "bounding": ["CAP_CHOWN", "CAP_SETPCAP"],
            "effective": ["CAP_CHOWN", "CAP_SETPCAP"],
            "permitted": ["CAP_CHOWN", "CAP_SETPCAP"]}});
        assert_eq!(borrow_caps(&mut p), vec!["CAP_SYS_ADMIN".to_owned()]);
        assert_eq!(p["capabilities"]["effective"][2], "CAP_SYS_ADMIN");
        let mut p = serde_json::json!({"capabilities": {}});
        assert_eq!(borrow_caps(&mut p), vec!["CAP_SYS_ADMIN", "CAP_SETPCAP"]);
        assert_eq!(
            p["capabilities"]["bounding"],
            serde_json::json!(["CAP_SYS_ADMIN", "CAP_SETPCAP"])
        );
    }
}
