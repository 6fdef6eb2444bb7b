//! ExecSync: one command in a running container, its output captured.
//!
//! The daemon writes the command's OCI `process` (the container's own, with
//! the args replaced, so user, groups, capabilities, seccomp, AppArmor,
//! no_new_privs, env and working dir are the container's) and an
//! [`ExecRequest`] into `<bundle>/exec/`, and has the monitor zygote fork an
//! exec helper (`crate::monitor::exec`) with three pipes: the helper's
//! report, the command's stdout and its stderr. The helper enforces the
//! timeout (it kills the process); the daemon reads both outputs, each
//! capped at [`MAX_OUTPUT`] (the rest is read and dropped, as the CRI asks:
//! CVE-2022-1708, CVE-2022-31030).

use std::os::fd::{AsFd as _, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::net::unix::pipe;

use super::{ContainerManager, blocking};
use crate::monitor::exec::{ExecReport, ExecRequest};
use crate::monitor::now_ns;
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

/// What ExecSync returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

static NEXT_EXEC: AtomicU64 = AtomicU64::new(0);

impl ContainerManager {
    /// Runs `cmd` in the running container `id` and waits for it; after
    /// `timeout` (if any) the process is killed and the call fails.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, ContainerError> {
        let id = self
            .resolve(id)?
            .ok_or_else(|| ContainerError::NotFound(id.to_owned()))?;
        if cmd.is_empty() || cmd[0].is_empty() {
            return Err(ContainerError::Invalid(format!(
                "exec in container {id}: cmd must name a program"
            )));
        }
        self.refresh(&id).await?;
        let rec = self
            .record(&id)
            .ok_or_else(|| ContainerError::NotFound(id.to_string()))?;
        if rec.state != ContainerState::Running {
            return Err(ContainerError::State {
                id,
                what: "container is not running; cannot exec in it".into(),
            });
        }
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
        let mut process = spec
            .get("process")
            .cloned()
            .ok_or_else(|| failed("exec", "the container's spec has no process".into()))?;
        process["args"] = serde_json::json!(cmd);
        process["terminal"] = serde_json::json!(false);
        if let Some(p) = process.as_object_mut() {
            p.remove("consoleSize");
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
            let nnp = process["noNewPrivileges"].as_bool() == Some(true);
            if !nnp {
                drop_caps = borrow_caps(&mut process);
            }
        }
        let dir = bundle.join("exec");
        let n = NEXT_EXEC.fetch_add(1, Ordering::Relaxed);
        let stem = format!("{}-{n}", now_ns());
        let process_path = dir.join(format!("{stem}.process.json"));
        let request_path = dir.join(format!("{stem}.json"));
        let request = ExecRequest {
            id: id.to_string(),
            state_root,
            runtime,
            process: process_path.clone(),
            timeout_ms: timeout.map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            seccomp,
            drop_caps,
        };
        let files = Files(vec![process_path.clone(), request_path.clone()]);
        let process_json = serde_json::to_vec(&process)
            .map_err(|e| ContainerError::Internal(format!("exec process spec: {e}")))?;
        let request_json = serde_json::to_vec(&request)
            .map_err(|e| ContainerError::Internal(format!("exec request: {e}")))?;
        let inner = self.inner.clone();
        let started = blocking(move || -> Result<[OwnedFd; 3], String> {
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
            let (report_r, report_w) = pipe()?;
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            inner.zygote.spawn(
                zygote::Kind::Exec,
                &request_path,
                &[report_w.as_fd(), out_w.as_fd(), err_w.as_fd()],
            )?;
            // Our write ends close here: only the helper and the command
            // hold them now.
            Ok([report_r, out_r, err_r])
        })
        .await?
        .map_err(|e| failed("starting the exec", e))?;
        let [report_r, out_r, err_r] = started;
        let receiver = |fd: OwnedFd| {
            pipe::Receiver::from_owned_fd(fd)
                .map_err(|e| failed("exec", format!("reading the output: {e}")))
        };
        let (report_r, out_r, err_r) = (receiver(report_r)?, receiver(out_r)?, receiver(err_r)?);

        let mut out = tokio::spawn(read_capped(out_r, MAX_OUTPUT));
        let mut err = tokio::spawn(read_capped(err_r, MAX_OUTPUT));
        let report = read_capped(report_r, 64 * 1024).await;
        drop(files);
        let report: ExecReport =
            serde_json::from_slice(report.split(|b| *b == b'\n').next().unwrap_or_default())
                .map_err(|_| failed("exec", "the exec helper exited without a report".into()))?;
        if let Some(e) = report.error {
            out.abort();
            err.abort();
            return Err(failed(&format!("exec {cmd:?}"), e));
        }
        if report.timed_out {
            out.abort();
            err.abort();
            return Err(ContainerError::TimedOut {
                id,
                what: format!(
                    "exec {cmd:?} timed out after {}s and was killed",
                    timeout.unwrap_or_default().as_secs()
                ),
            });
        }
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
            exit_code: report.exit_code,
        })
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
