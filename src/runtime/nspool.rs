//! A few pod namespace sets made ahead of time.
//!
//! Most pods kubelet runs want exactly a new network, IPC and UTS
//! namespace (no shared PID namespace, no user namespace, no sysctls).
//! Making them is the one step of RunPodSandbox besides CNI that costs
//! milliseconds: `crius pinns` forked by the zygote, `unshare(2)` of the
//! three (a network namespace alone is about 0.7 ms here), loopback up,
//! three pin mounts. So the daemon keeps `pod.namespace_pool` such sets
//! ready under `<run_dir>/nspool/<n>` (made by the same pinns, without a
//! hostname), and RunPodSandbox renames one into the pod's `ns` dir (the
//! pin mounts move with it), sets the pod's hostname in its UTS namespace
//! and refills the pool in the background. Anything else (or an empty
//! pool) goes through pinns as before.
//!
//! The sets are fresh: nothing ever ran in them. A daemon that stops
//! gracefully unpins its pool; one killed leaves it behind, and the next
//! one unpins that at start-up, before making its own (`crius check`
//! leaves `nspool/` alone: it is never a pod's).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::sys::namespace::{self, PinRequest, Pinned};

/// The pool's dir under the run dir.
pub const DIR: &str = "nspool";

/// How long after a RunPodSandbox the pool is refilled.
pub const REFILL_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

#[derive(Debug)]
pub struct NsPool {
    dir: PathBuf,
    size: usize,
    ready: Mutex<Vec<PathBuf>>,
    /// One refill at a time.
    filling: AtomicBool,
    next: AtomicU64,
}

impl NsPool {
    /// A pool of `size` sets under `<run_dir>/nspool`, empty: what a
    /// previous daemon left there is unpinned first. Blocking.
    pub fn new(run_dir: &Path, size: usize) -> Self {
        let dir = run_dir.join(DIR);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if let Err(e) = namespace::unpin(&e.path()) {
                    tracing::warn!(error = %e, "removing a namespace set left by the last daemon");
                }
            }
        }
        Self {
            dir,
            size,
            ready: Mutex::new(Vec::new()),
            filling: AtomicBool::new(false),
            next: AtomicU64::new(0),
        }
    }

    /// Whether a pod with these namespaces can take a pooled set: new
    /// network, IPC and UTS namespaces and nothing else to set up in them
    /// but the hostname. A request pinns would refuse (a bad hostname)
    /// goes to pinns, for its error.
    pub fn fits(&self, req: &PinRequest) -> bool {
        self.size > 0
            && namespace::validate(req).is_ok()
            && req.net
            && req.ipc
            && req.uts
            && !req.pid
            && req.userns.is_none()
            && req.sysctls.is_empty()
    }

    /// Moves a ready set to `req.dir` and sets `req.hostname` in it. None
    /// when the pool is empty or the set could not be used (it is then
    /// unpinned, and the caller makes the namespaces itself). Blocking.
    pub fn take(&self, req: &PinRequest) -> Option<Pinned> {
        let set = crate::runtime::lock(&self.ready).pop()?;
        let pinned = Pinned {
            net: Some(namespace::pin_path(&req.dir, namespace::NsKind::Net)),
            ipc: Some(namespace::pin_path(&req.dir, namespace::NsKind::Ipc)),
            uts: Some(namespace::pin_path(&req.dir, namespace::NsKind::Uts)),
            ..Pinned::default()
        };
        let used = std::fs::rename(&set, &req.dir)
            .map_err(|e| format!("moving {} to {}: {e}", set.display(), req.dir.display()))
            .and_then(|()| match (&req.hostname, &pinned.uts) {
                (Some(h), Some(uts)) => set_hostname(uts, h),
                _ => Ok(()),
            });
        match used {
            Ok(()) => Some(pinned),
            Err(e) => {
                tracing::warn!(error = %e, "pooled namespaces unusable; making new ones");
                for d in [&set, &req.dir] {
                    if d.exists() {
                        let _ = namespace::unpin(d);
                    }
                }
                None
            }
        }
    }

    /// Claims the refill; false when one is already running or the pool is
    /// full.
    pub fn start_fill(&self) -> bool {
        if self.size == 0 || crate::runtime::lock(&self.ready).len() >= self.size {
            return false;
        }
        self.filling
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The next set to make, while the pool is short of one.
    pub fn next_request(&self) -> Option<PinRequest> {
        if crate::runtime::lock(&self.ready).len() >= self.size {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Some(PinRequest {
            dir: self.dir.join(n.to_string()),
            net: true,
            ipc: true,
            uts: true,
            hostname: None,
            sysctls: Vec::new(),
            pid: false,
            userns: None,
        })
    }

    /// A set made for the pool is ready.
    pub fn add(&self, dir: PathBuf) {
        crate::runtime::lock(&self.ready).push(dir);
    }

    /// Ends the refill [`NsPool::start_fill`] claimed.
    pub fn end_fill(&self) {
        self.filling.store(false, Ordering::Release);
    }

    /// Unpins every ready set. Blocking.
    pub fn drain(&self) {
        let sets = std::mem::take(&mut *crate::runtime::lock(&self.ready));
        for set in sets {
            if let Err(e) = namespace::unpin(&set) {
                tracing::warn!(error = %e, "removing a pooled namespace set");
            }
        }
    }
}

/// Sets the hostname of the UTS namespace pinned at `uts`, from a thread of
/// its own: setns(2) moves only the calling thread, which then ends, so no
/// thread of the daemon is left in the pod's namespace. Hand-written: no
/// crate does "run this in that namespace" without forking.
fn set_hostname(uts: &Path, hostname: &str) -> Result<(), String> {
    let uts = uts.to_owned();
    let hostname = hostname.to_owned();
    std::thread::Builder::new()
        .name("crius-uts".into())
        .spawn(move || -> Result<(), String> {
            let f = std::fs::File::open(&uts).map_err(|e| format!("{}: {e}", uts.display()))?;
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWUTS)
                .map_err(|e| format!("entering {}: {e}", uts.display()))?;
            nix::unistd::sethostname(&hostname)
                .map_err(|e| format!("setting the hostname {hostname:?}: {e}"))
        })
        .map_err(|e| format!("starting a thread: {e}"))?
        .join()
        .map_err(|_| "the hostname thread panicked".to_owned())?
}
