//! What each runtime handler supports, as CRI `Status` reports it to
//! kubelet (which admits pods by it): recursive read-only mounts need
//! `mount_setattr(2)` (Linux 5.12) and, for an external OCI runtime, its
//! `features` output listing the `rro` mount option (the check the CRI
//! names); user namespace support is `runtime/userns.rs`'s answer.
//!
//! Probed at each call: the probe is one failing syscall plus, per external
//! handler, one short `<runtime> features` run, and kubelet asks every few
//! seconds at most. Blocking.

use std::io::Read as _;
use std::os::fd::AsFd as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::{BUILTIN_HANDLER, RuntimeConfig};

/// How long an external runtime's `features` may take.
const FEATURES_TIMEOUT: Duration = Duration::from_secs(2);

/// One runtime handler and what it supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerFeatures {
    /// "" is the default handler.
    pub name: String,
    pub recursive_read_only_mounts: bool,
    pub user_namespaces: bool,
}

/// Every handler a pod may name: "" and "crius" (built-in), then each
/// configured one, with its features.
pub fn handlers(cfg: &RuntimeConfig) -> Vec<HandlerFeatures> {
    let kernel_rro = kernel_has_mount_setattr();
    let mut out = Vec::new();
    let mut names = vec![String::new(), BUILTIN_HANDLER.to_owned()];
    names.extend(
        cfg.handlers
            .keys()
            .filter(|k| !k.is_empty() && *k != BUILTIN_HANDLER)
            .cloned(),
    );
    for name in names {
        let rro = match cfg.handler(&name) {
            Ok(None) => kernel_rro,
            Ok(Some(runtime)) => kernel_rro && runtime_supports_rro(runtime),
            Err(_) => false,
        };
        out.push(HandlerFeatures {
            user_namespaces: crate::runtime::userns::handler_supported(cfg, &name),
            name,
            recursive_read_only_mounts: rro,
        });
    }
    out
}

/// Whether the kernel has `mount_setattr(2)`: called with flags it must
/// refuse (EINVAL before it looks at anything), so nothing is changed.
/// ENOSYS (old kernel) or EPERM (a seccomp filter) mean no.
pub fn kernel_has_mount_setattr() -> bool {
    use libcontainer::syscall::Syscall as _;
    use libcontainer::syscall::linux::{LinuxSyscall, MountAttr};
    let Ok(root) = std::fs::File::open("/") else {
        return false;
    };
    let attr = MountAttr {
        attr_set: 0,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    match LinuxSyscall.mount_setattr(
        root.as_fd(),
        Path::new(""),
        u32::MAX,
        &attr,
        std::mem::size_of::<MountAttr>(),
    ) {
        Err(libcontainer::syscall::SyscallError::Nix(e)) => e as i32 == libc::EINVAL,
        Err(_) => false,
        Ok(()) => true,
    }
}

/// Whether `<runtime> features` lists the `rro` mount option (runc ≥ 1.1,
/// crun, youki). A runtime without the subcommand, or one that does not
/// answer in time, does not.
fn runtime_supports_rro(runtime: &Path) -> bool {
    let Some(out) = run_features(runtime) else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&out)
        .ok()
        .and_then(|v| {
            v["mountOptions"]
                .as_array()
                .map(|o| o.iter().any(|x| x == "rro"))
        })
        .unwrap_or(false)
}

fn run_features(runtime: &Path) -> Option<Vec<u8>> {
    let mut child = Command::new(runtime)
        .arg("features")
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // Read on a thread so a chatty runtime cannot block on a full pipe
    // while we wait; killing it ends the read.
    let stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.take(1 << 20).read_to_end(&mut out).map(|_| out)
    });
    let deadline = Instant::now() + FEATURES_TIMEOUT;
    let status = crate::sys::process::wait_deadline(&mut child, deadline);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        tracing::warn!(runtime = %runtime.display(), "`features` did not answer in time");
    }
    let out = reader.join().ok()?.ok()?;
    status.filter(|s| s.success()).map(|_| out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HandlerConfig;

    #[test]
    fn every_handler_is_listed_once() {
        let mut cfg = RuntimeConfig::default();
        cfg.handlers.insert(
            "crius".into(),
            HandlerConfig {
                runtime_path: "".into(),
            },
        );
        cfg.handlers.insert(
            "missing".into(),
            HandlerConfig {
                runtime_path: "/nonexistent/runtime".into(),
            },
        );
        let h = handlers(&cfg);
        let names: Vec<&str> = h.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, vec!["", "crius", "missing"]);
        // A runtime that cannot run supports nothing.
        assert!(!h[2].recursive_read_only_mounts);
        assert_eq!(h[0].recursive_read_only_mounts, kernel_has_mount_setattr());
    }
}
