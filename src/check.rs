//! `crius check [--repair]`: finds what belongs to no recorded pod,
//! container or image — monitors, container cgroups, mounts (rootfs
//! overlays, pinned namespaces, shm), bundles, writable layers, pod dirs,
//! OCI runtime state, monitor sockets, CNI caches, layer dirs, blobs, temp
//! files — and with `--repair` removes it.
//!
//! It takes the daemon's state lock (`<state_dir>/crius.lock`) for the
//! whole run: the store (redb) cannot be opened while the daemon holds it,
//! and a daemon starting mid-repair would race us. So it refuses while the
//! daemon runs. What is recorded is never touched; what looks like another
//! crius's (a monitor whose bundle is in another run dir, and the cgroup of
//! its container) is left alone.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::Flock;
use nix::mount::MntFlags;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::config::Config;
use crate::id::{ChainId, ContainerId, Digest, PodSandboxId};
use crate::image::catalog::{ImageRecord, LayerRecord};
use crate::runtime::container::{remove_container_files, unrecorded_containers};
use crate::store::{Store, StoreError, Table, Write};
use crate::sys::cgroup::{Cgroups, Created};
use crate::sys::{mount, namespace};

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(
        "crius is running on state dir {state_dir} (lock {lock} is held); stop it before `crius check`: the daemon holds the metadata store open"
    )]
    Running { state_dir: PathBuf, lock: PathBuf },
    #[error("no crius state at {0}: nothing to check (is state_dir right?)")]
    NoState(PathBuf),
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a leak is, in the order `--repair` handles them: processes first
/// (they hold cgroups and mounts), mounts before the dirs below them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LeakKind {
    Monitor,
    Cgroup,
    Mount,
    Namespace,
    Shm,
    Bundle,
    WritableLayer,
    PodDir,
    RuntimeState,
    Socket,
    CniCache,
    Layer,
    LayerDir,
    Blob,
    Temp,
}

impl LeakKind {
    pub fn name(self) -> &'static str {
        match self {
            LeakKind::Monitor => "monitor",
            LeakKind::Cgroup => "cgroup",
            LeakKind::Mount => "mount",
            LeakKind::Namespace => "namespace",
            LeakKind::Shm => "shm",
            LeakKind::Bundle => "bundle",
            LeakKind::WritableLayer => "writable-layer",
            LeakKind::PodDir => "pod-dir",
            LeakKind::RuntimeState => "runtime-state",
            LeakKind::Socket => "socket",
            LeakKind::CniCache => "cni-cache",
            LeakKind::Layer => "layer",
            LeakKind::LayerDir => "layer-dir",
            LeakKind::Blob => "blob",
            LeakKind::Temp => "temp",
        }
    }
}

/// How a leak is removed.
#[derive(Debug, Clone)]
enum Fix {
    /// SIGKILL the monitor's children (the container's init), then it.
    Monitor(i32),
    /// Kill what is left in the cgroup (relative path), remove its dirs.
    Cgroup(String),
    /// Detach the mount (and any stacked on it).
    Unmount,
    /// The bundle and writable layer of an unrecorded container.
    Container(ContainerId),
    /// Unpin, unmount shm, then delete the pod dir.
    PodDir,
    RemoveDir,
    RemoveFile,
    /// A recorded layer no image or container uses: record and dir.
    Layer(ChainId),
}

/// One thing that belongs to nothing recorded.
#[derive(Debug, Clone)]
pub struct Leak {
    pub kind: LeakKind,
    pub path: PathBuf,
    pub detail: String,
    fix: Fix,
}

impl std::fmt::Display for Leak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:<14} {}", self.kind.name(), self.path.display())?;
        if !self.detail.is_empty() {
            write!(f, "  ({})", self.detail)?;
        }
        Ok(())
    }
}

/// What the store records.
#[derive(Debug, Default)]
struct Recorded {
    pods: HashSet<String>,
    /// Pod cgroup parents (kubelet's), where container cgroups live too.
    pod_cgroups: BTreeSet<String>,
    containers: HashSet<String>,
    /// Chain ids (hex) of layer records.
    layers: HashMap<String, ChainId>,
    /// Chain ids (hex) images or containers use.
    layers_used: HashSet<String>,
    blobs_used: HashSet<String>,
}

/// A checked state dir, locked against the daemon until dropped.
#[derive(Debug)]
pub struct Check {
    _lock: Flock<File>,
    store: Option<Store>,
    run_dir: PathBuf,
    state_dir: PathBuf,
    pub leaks: Vec<Leak>,
}

impl Check {
    /// Takes the state lock and walks everything. Blocking.
    pub fn run(config: &Config) -> Result<Self, CheckError> {
        let state_dir = &config.state_dir;
        if !state_dir.is_dir() {
            return Err(CheckError::NoState(state_dir.clone()));
        }
        // The same lock `server::Daemon::open` takes.
        let lock = crate::server::lock_state(state_dir).map_err(|e| match e {
            crate::server::StateLock::Held(lock) => CheckError::Running {
                state_dir: state_dir.clone(),
                lock,
            },
            crate::server::StateLock::Failed(path, source) => CheckError::Lock { path, source },
        })?;
        // A state dir without a store records nothing; do not create one.
        let store_path = config.store_path();
        let store = if store_path.exists() {
            Some(Store::open(&store_path)?)
        } else {
            None
        };
        let rec = match &store {
            Some(s) => recorded(s)?,
            None => Recorded::default(),
        };
        let walk = Walk {
            run_dir: &config.run_dir,
            state_dir,
            rec: &rec,
        };
        let mut leaks = Vec::new();
        walk.monitors(&mut leaks);
        walk.cgroups(&mut leaks);
        walk.mounts(&mut leaks);
        walk.container_dirs(&mut leaks);
        walk.pod_dirs(&mut leaks);
        walk.runtime_state(&mut leaks);
        walk.sockets(&mut leaks);
        walk.files(&state_dir.join("cni"), LeakKind::CniCache, &mut leaks);
        walk.layers(&mut leaks);
        walk.blobs(&mut leaks);
        walk.files(&state_dir.join("tmp"), LeakKind::Temp, &mut leaks);
        leaks.sort_by(|a, b| {
            let depth = |p: &Path| std::cmp::Reverse(p.components().count());
            (a.kind, depth(&a.path), &a.path).cmp(&(b.kind, depth(&b.path), &b.path))
        });
        Ok(Self {
            _lock: lock,
            store,
            run_dir: config.run_dir.clone(),
            state_dir: state_dir.clone(),
            leaks,
        })
    }

    /// Removes every leak found, in kind order; each with its outcome.
    pub fn repair(&self) -> Vec<(&Leak, Result<(), String>)> {
        let cgroups = Cgroups::detect(Path::new("/sys/fs/cgroup")).ok();
        self.leaks
            .iter()
            .map(|l| (l, self.fix(l, cgroups.as_ref())))
            .collect()
    }

    fn fix(&self, leak: &Leak, cgroups: Option<&Cgroups>) -> Result<(), String> {
        let path = &leak.path;
        let rm_dir = |p: &Path| match fs::remove_dir_all(p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("removing {}: {e}", p.display()))
            }
            _ => Ok(()),
        };
        match &leak.fix {
            Fix::Monitor(pid) => kill_monitor(*pid),
            Fix::Cgroup(rel) => {
                let cg = cgroups.ok_or("no cgroup hierarchy found")?;
                remove_cgroup(cg, rel)
            }
            Fix::Unmount => detach(path),
            Fix::Container(id) => {
                // Bundle and writable layer go together (the second leak of
                // the pair then finds nothing left).
                let bundle = self.run_dir.join("containers").join(id.as_str());
                let uppers = self.state_dir.join("containers");
                let errors = remove_container_files(&self.run_dir, &bundle, &uppers, id);
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(errors.join("; "))
                }
            }
            Fix::PodDir => {
                namespace::unpin(&path.join("ns")).map_err(|e| e.to_string())?;
                mount::unmount(&path.join("shm"))
                    .map_err(|e| format!("unmounting {}/shm: {e}", path.display()))?;
                // Never delete through a mount that is still there.
                if let Some(m) = mount_points().iter().find(|m| m.starts_with(path)) {
                    return Err(format!("{} is still mounted; pod dir kept", m.display()));
                }
                rm_dir(path)
            }
            Fix::RemoveDir => rm_dir(path),
            Fix::RemoveFile => match fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(format!("removing {}: {e}", path.display()))
                }
                _ => Ok(()),
            },
            Fix::Layer(chain) => {
                let store = self.store.as_ref().ok_or("no metadata store")?;
                store
                    .apply(&[Write::delete(Table::Layers, chain.as_str())])
                    .map_err(|e| e.to_string())?;
                rm_dir(path)
            }
        }
    }
}

fn recorded(store: &Store) -> Result<Recorded, CheckError> {
    // Only the fields the walk needs, so that a record this crius cannot
    // fully read still counts as recorded (its key is its id).
    #[derive(serde::Deserialize)]
    struct Pod {
        spec: PodSpec,
    }
    #[derive(serde::Deserialize)]
    struct PodSpec {
        #[serde(default)]
        cgroup_parent: String,
    }
    #[derive(serde::Deserialize)]
    struct Container {
        #[serde(default)]
        chain_ids: Vec<ChainId>,
    }
    let mut r = Recorded::default();
    for (key, value) in store.scan(Table::Sandboxes)? {
        if let Ok(p) = serde_json::from_slice::<Pod>(&value)
            && !p.spec.cgroup_parent.is_empty()
        {
            r.pod_cgroups.insert(p.spec.cgroup_parent);
        }
        r.pods.insert(key);
    }
    for (key, value) in store.scan(Table::Containers)? {
        if let Ok(c) = serde_json::from_slice::<Container>(&value) {
            r.layers_used
                .extend(c.chain_ids.iter().map(|c| c.hex().to_owned()));
        }
        r.containers.insert(key);
    }
    for (key, value) in store.scan(Table::Layers)? {
        match serde_json::from_slice::<LayerRecord>(&value) {
            Ok(l) => {
                r.layers.insert(l.chain_id.hex().to_owned(), l.chain_id);
            }
            // Unreadable: its dir counts as recorded, it is never removed.
            Err(_) => {
                let hex = key.strip_prefix("sha256:").unwrap_or(&key).to_owned();
                r.layers_used.insert(hex.clone());
                if let Ok(d) = Digest::parse(&key) {
                    r.layers.insert(hex, d);
                }
            }
        }
    }
    for (_, value) in store.scan(Table::Images)? {
        let Ok(i) = serde_json::from_slice::<ImageRecord>(&value) else {
            // An unreadable image may use any blob or layer: judge none.
            r.blobs_used.insert("*".into());
            r.layers_used.insert("*".into());
            continue;
        };
        r.layers_used
            .extend(i.chain_ids.iter().map(|c| c.hex().to_owned()));
        r.blobs_used.insert(i.id.hex().to_owned());
        r.blobs_used.insert(i.manifest.hex().to_owned());
        if let Some(x) = &i.index {
            r.blobs_used.insert(x.hex().to_owned());
        }
    }
    Ok(r)
}

struct Walk<'a> {
    run_dir: &'a Path,
    state_dir: &'a Path,
    rec: &'a Recorded,
}

fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<(String, PathBuf)> = rd
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    v.sort();
    v
}

impl Walk<'_> {
    fn bundles(&self) -> PathBuf {
        self.run_dir.join("containers")
    }

    /// Live monitors (forked by the zygote: task name `crius-monitor`;
    /// exec'd: `crius monitor <bundle>`) whose bundle is in our run dir and
    /// whose container is not recorded. The bundle is the exec'd monitor's
    /// argument, or the dir of the `monitor.log` its stderr is.
    fn monitors(&self, out: &mut Vec<Leak>) {
        let bundles = self.bundles();
        for m in monitor_processes() {
            if m.bundle.parent() != Some(bundles.as_path()) {
                continue;
            }
            let Some(id) = m.bundle.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !self.rec.containers.contains(id) {
                out.push(Leak {
                    kind: LeakKind::Monitor,
                    path: m.bundle.clone(),
                    detail: format!("pid {}, container not recorded", m.pid),
                    fix: Fix::Monitor(m.pid),
                });
            }
        }
    }

    /// Container cgroups (`<parent>/<64 hex>`) under `/crius` and under the
    /// recorded pods' cgroup parents, in every hierarchy, that no record
    /// owns. A cgroup whose id a monitor of another run dir serves belongs
    /// to another crius and is skipped.
    fn cgroups(&self, out: &mut Vec<Leak>) {
        let Ok(cg) = Cgroups::detect(Path::new("/sys/fs/cgroup")) else {
            return;
        };
        let bundles = self.bundles();
        let others: HashSet<String> = monitor_processes()
            .into_iter()
            .filter(|m| m.bundle.parent() != Some(bundles.as_path()))
            .filter_map(|m| Some(m.bundle.file_name()?.to_str()?.to_owned()))
            .collect();
        let mut parents: BTreeSet<String> = self.rec.pod_cgroups.clone();
        parents.insert("/crius".into());
        let mut seen = HashSet::new();
        for parent in parents {
            for dir in cg.dirs(&parent) {
                for (name, path) in entries(&dir) {
                    if ContainerId::parse(&name).is_err()
                        || self.rec.containers.contains(&name)
                        || others.contains(&name)
                        || !path.is_dir()
                    {
                        continue;
                    }
                    let rel = format!("{}/{name}", parent.trim_end_matches('/'));
                    if seen.insert(rel.clone()) {
                        out.push(Leak {
                            kind: LeakKind::Cgroup,
                            path,
                            detail: format!("container cgroup {rel}, not recorded"),
                            fix: Fix::Cgroup(rel),
                        });
                    }
                }
            }
        }
    }

    /// Mounts below `<run_dir>/containers/<id>` and `<run_dir>/pods/<id>`
    /// whose container or pod is not recorded.
    fn mounts(&self, out: &mut Vec<Leak>) {
        let bundles = self.bundles();
        let pods = self.run_dir.join("pods");
        for m in mount_points() {
            let (id, rest, recorded) = if let Ok(rest) = m.strip_prefix(&bundles) {
                let id = first(rest);
                (
                    id.clone(),
                    rest.to_owned(),
                    self.rec.containers.contains(&id),
                )
            } else if let Ok(rest) = m.strip_prefix(&pods) {
                let id = first(rest);
                (id.clone(), rest.to_owned(), self.rec.pods.contains(&id))
            } else {
                continue;
            };
            if recorded || id.is_empty() {
                continue;
            }
            let sub: Vec<String> = rest
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let (kind, what) = match sub.get(1).map(String::as_str) {
                Some("ns") => (LeakKind::Namespace, "pinned namespace of an unrecorded pod"),
                Some("shm") => (LeakKind::Shm, "shm of an unrecorded pod"),
                Some("rootfs") => (LeakKind::Mount, "rootfs of an unrecorded container"),
                _ => (LeakKind::Mount, "mount of an unrecorded pod or container"),
            };
            out.push(Leak {
                kind,
                path: m,
                detail: what.into(),
                fix: Fix::Unmount,
            });
        }
    }

    /// Bundles and writable layers without a record (the same judgement
    /// restart recovery makes).
    fn container_dirs(&self, out: &mut Vec<Leak>) {
        let bundles = self.bundles();
        let uppers = self.state_dir.join("containers");
        for id in unrecorded_containers(&[&bundles, &uppers], &self.rec.containers) {
            for (kind, dir) in [
                (LeakKind::Bundle, bundles.join(id.as_str())),
                (LeakKind::WritableLayer, uppers.join(id.as_str())),
            ] {
                if dir.exists() {
                    out.push(Leak {
                        kind,
                        path: dir,
                        detail: "container not recorded".into(),
                        fix: Fix::Container(id.clone()),
                    });
                }
            }
        }
    }

    fn pod_dirs(&self, out: &mut Vec<Leak>) {
        for (name, path) in entries(&self.run_dir.join("pods")) {
            if PodSandboxId::parse(&name).is_ok() && !self.rec.pods.contains(&name) {
                out.push(Leak {
                    kind: LeakKind::PodDir,
                    path,
                    detail: "pod not recorded".into(),
                    fix: Fix::PodDir,
                });
            }
        }
    }

    /// `<run_dir>/runtime/<id>` and `<run_dir>/runtime-<handler>/<id>`.
    fn runtime_state(&self, out: &mut Vec<Leak>) {
        for (root, root_path) in entries(self.run_dir) {
            if root != "runtime" && !root.starts_with("runtime-") {
                continue;
            }
            for (name, path) in entries(&root_path) {
                if ContainerId::parse(&name).is_ok() && !self.rec.containers.contains(&name) {
                    out.push(Leak {
                        kind: LeakKind::RuntimeState,
                        path,
                        detail: "OCI runtime state of an unrecorded container".into(),
                        fix: Fix::RemoveDir,
                    });
                }
            }
        }
    }

    /// Monitor sockets `<run_dir>/s/<id[..32]>.{sock,tty}`.
    fn sockets(&self, out: &mut Vec<Leak>) {
        let prefixes: HashSet<&str> = self
            .rec
            .containers
            .iter()
            .filter_map(|c| c.get(..32))
            .collect();
        for (name, path) in entries(&self.run_dir.join("s")) {
            let Some((stem, ext)) = name.split_once('.') else {
                continue;
            };
            if (ext == "sock" || ext == "tty")
                && stem.len() == 32
                && stem.bytes().all(|b| b.is_ascii_hexdigit())
                && !prefixes.contains(stem)
            {
                out.push(Leak {
                    kind: LeakKind::Socket,
                    path,
                    detail: "monitor socket of an unrecorded container".into(),
                    fix: Fix::RemoveFile,
                });
            }
        }
    }

    /// `cni/<pod id>.json` of unrecorded pods, or anything in `tmp/`.
    fn files(&self, dir: &Path, kind: LeakKind, out: &mut Vec<Leak>) {
        for (name, path) in entries(dir) {
            let (leaked, detail) = match kind {
                LeakKind::CniCache => {
                    let pod = name.strip_suffix(".json").unwrap_or(&name);
                    (
                        PodSandboxId::parse(pod).is_ok() && !self.rec.pods.contains(pod),
                        "CNI result of an unrecorded pod (its addresses were not released by a DEL)",
                    )
                }
                _ => (true, "left by an interrupted pull"),
            };
            if leaked {
                let fix = if path.is_dir() {
                    Fix::RemoveDir
                } else {
                    Fix::RemoveFile
                };
                out.push(Leak {
                    kind,
                    path,
                    detail: detail.into(),
                    fix,
                });
            }
        }
    }

    /// Layer dirs without a record, and recorded layers no image or
    /// container uses (what the daemon's start-up GC would remove).
    fn layers(&self, out: &mut Vec<Leak>) {
        let used = &self.rec.layers_used;
        for (name, path) in entries(&self.state_dir.join("layers")) {
            match self.rec.layers.get(&name) {
                None => out.push(Leak {
                    kind: LeakKind::LayerDir,
                    path,
                    detail: "unpacked layer without a record".into(),
                    fix: Fix::RemoveDir,
                }),
                Some(chain) if !used.contains(&name) && !used.contains("*") => out.push(Leak {
                    kind: LeakKind::Layer,
                    path,
                    detail: "recorded layer no image or container uses".into(),
                    fix: Fix::Layer(chain.clone()),
                }),
                Some(_) => {}
            }
        }
    }

    fn blobs(&self, out: &mut Vec<Leak>) {
        if self.rec.blobs_used.contains("*") {
            return;
        }
        for (name, path) in entries(&self.state_dir.join("blobs").join("sha256")) {
            if !self.rec.blobs_used.contains(&name) {
                out.push(Leak {
                    kind: LeakKind::Blob,
                    path,
                    detail: "blob no image refers to".into(),
                    fix: Fix::RemoveFile,
                });
            }
        }
    }
}

/// The first component of `p`, as a string.
fn first(p: &Path) -> String {
    p.components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Mount points of our mount namespace (`/proc/self/mountinfo`, field 5,
/// octal escapes undone).
fn mount_points() -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(crate::sys::mount::mountinfo_unescape(m)))
        .collect()
}

/// Detaches everything stacked at `path` (not following a symlink there).
fn detach(path: &Path) -> Result<(), String> {
    for _ in 0..16 {
        match nix::mount::umount2(path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(format!("unmounting {}: {e}", path.display())),
        }
    }
    Err(format!("{}: more than 16 mounts stacked", path.display()))
}

/// A live monitor process and its bundle.
#[derive(Debug)]
struct MonitorProc {
    pid: i32,
    bundle: PathBuf,
}

fn monitor_processes() -> Vec<MonitorProc> {
    let mut out = Vec::new();
    for (name, path) in entries(Path::new("/proc")) {
        let Ok(pid) = name.parse::<i32>() else {
            continue;
        };
        if let Some(bundle) = monitor_bundle(&path) {
            out.push(MonitorProc { pid, bundle });
        }
    }
    out
}

/// The bundle of the monitor at `/proc/<pid>`, if it is one.
fn monitor_bundle(proc_dir: &Path) -> Option<PathBuf> {
    let comm = fs::read_to_string(proc_dir.join("comm")).ok()?;
    let cmdline = fs::read(proc_dir.join("cmdline")).ok()?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let exec_d = args.len() >= 3
        && args[1] == "monitor"
        && Path::new(&args[0])
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("crius"));
    if exec_d {
        return Some(PathBuf::from(&args[2]));
    }
    if comm.trim() != "crius-monitor" {
        return None;
    }
    let log = fs::read_link(proc_dir.join("fd").join("2")).ok()?;
    let log = log.to_string_lossy();
    let log = log.strip_suffix(" (deleted)").unwrap_or(&log);
    let log = Path::new(log);
    (log.file_name()? == "monitor.log").then(|| log.parent().map(Path::to_path_buf))?
}

/// SIGKILL the monitor's children (the container's init; in its own PID
/// namespace that ends the container), then the monitor. Checked again
/// just before: a pid may have been reused since the walk.
fn kill_monitor(pid: i32) -> Result<(), String> {
    let dir = PathBuf::from(format!("/proc/{pid}"));
    if monitor_bundle(&dir).is_none() {
        return Ok(());
    }
    let children = fs::read_to_string(dir.join("task").join(pid.to_string()).join("children"))
        .unwrap_or_default();
    for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
        let _ = kill(Pid::from_raw(c), Signal::SIGKILL);
    }
    match kill(Pid::from_raw(pid), Signal::SIGKILL) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(format!("killing monitor {pid}: {e}")),
    }
}

/// Kills what is left in the (unrecorded) container cgroup `rel`, waits
/// for it to empty, and removes its dirs (sub-cgroups first).
fn remove_cgroup(cg: &Cgroups, rel: &str) -> Result<(), String> {
    let dirs = cg.dirs(rel);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let busy = dirs.iter().any(|d| {
            fs::read_to_string(d.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty())
        });
        if !busy {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("processes of cgroup {rel} did not exit"));
        }
        cg.kill_all(rel, Signal::SIGKILL);
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut all = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.into_iter().filter(|d| d.is_dir()).collect();
    while let Some(d) = stack.pop() {
        stack.extend(
            entries(&d)
                .into_iter()
                .map(|(_, p)| p)
                .filter(|p| p.is_dir()),
        );
        all.push(d);
    }
    cg.remove(&Created { dirs: all })
        .map_err(|e| format!("removing cgroup {rel}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaks_sort_processes_first_and_deep_mounts_first() {
        let leak = |kind, p: &str| Leak {
            kind,
            path: PathBuf::from(p),
            detail: String::new(),
            fix: Fix::Unmount,
        };
        let mut v = [
            leak(LeakKind::LayerDir, "/s/layers/x"),
            leak(LeakKind::Mount, "/r/containers/a"),
            leak(LeakKind::Mount, "/r/containers/a/rootfs"),
            leak(LeakKind::Monitor, "/r/containers/a"),
        ];
        v.sort_by(|a, b| {
            let depth = |p: &Path| std::cmp::Reverse(p.components().count());
            (a.kind, depth(&a.path), &a.path).cmp(&(b.kind, depth(&b.path), &b.path))
        });
        let order: Vec<String> = v.iter().map(|l| l.to_string()).collect();
        assert_eq!(
            order,
            [
                "monitor        /r/containers/a",
                "mount          /r/containers/a/rootfs",
                "mount          /r/containers/a",
                "layer-dir      /s/layers/x",
            ]
        );
    }

    #[test]
    fn a_monitor_is_found_by_its_log_or_argument() {
        // This test process is neither.
        assert_eq!(monitor_bundle(Path::new("/proc/self")), None);
    }
}
