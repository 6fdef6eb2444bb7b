//! Pod cgroups through plain cgroupfs file operations, on cgroup v1 (one
//! directory per controller hierarchy, as this machine's hybrid layout) and
//! v2 (the unified tree): create a cgroup parent the way kubelet's cgroupfs
//! driver names it, apply CPU/memory/cpuset limits, remove what we created.
//!
//! It owns only the directories `create` reports; it never moves processes,
//! never touches systemd (there is none here) and needs no capability beyond
//! write access to cgroupfs (CAP_SYS_RESOURCE is absent on these machines).

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, statfs};
use serde::{Deserialize, Serialize};

/// Controllers a pod cgroup needs on v2, enabled in each parent's
/// `cgroup.subtree_control` when the parent offers them. hugetlb is there
/// because kubelet sets hugepage limits at pod level.
const V2_CONTROLLERS: &[&str] = &["cpu", "cpuset", "io", "memory", "pids", "hugetlb"];

/// v1 controllers whose hierarchies hold a pod's cgroup. A hierarchy with
/// none of these (`name=systemd`, anything named) is not ours to populate.
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// How long `remove` waits for a cgroup to empty: a killed process stays in
/// its cgroup until it has fully exited.
const REMOVE_ATTEMPTS: u32 = 10;
const REMOVE_INTERVAL: Duration = Duration::from_millis(20);

/// Which cgroup layout the host mounts at the cgroup root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// Legacy or hybrid: one hierarchy per controller set under the root.
    V1,
    /// Unified: the root itself is a cgroup2 mount.
    V2,
}

/// Resource limits for one cgroup; `None` leaves the current value alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// CFS period in microseconds.
    pub cpu_period: Option<u64>,
    /// CFS quota in microseconds per period; negative means unlimited.
    pub cpu_quota: Option<i64>,
    /// v1 shares (2..=262144); converted to `cpu.weight` on v2.
    pub cpu_shares: Option<u64>,
    /// Bytes; negative means unlimited. CRI's 0 ("not set") must arrive as `None`.
    pub memory_limit: Option<i64>,
    /// A cpu list such as `0-1,3`.
    pub cpuset_cpus: Option<String>,
    /// A memory node list such as `0`.
    pub cpuset_mems: Option<String>,
}

/// The directories `create` made (absolute, in creation order), kept in the
/// pod record so removal deletes exactly these and nothing it found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    pub dirs: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("invalid cgroup path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("cannot inspect cgroup root {root}: {source}")]
    Root { root: PathBuf, source: io::Error },
    #[error(
        "no cgroup v1 controller hierarchy is mounted under {root} and it is not a cgroup2 mount; mount cgroupfs there"
    )]
    NoHierarchies { root: PathBuf },
    #[error("cannot read {file}: {source}")]
    Read { file: PathBuf, source: io::Error },
    #[error("cannot write {value:?} to {file}: {source}")]
    Write {
        file: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("cannot create cgroup {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cgroup {path} does not exist; create it before applying resources")]
    NotFound { path: PathBuf },
    #[error("controller {controller} is not available for cgroup {path}")]
    ControllerUnavailable {
        controller: &'static str,
        path: PathBuf,
    },
    #[error("cgroup {path} still holds processes; stop them and remove again")]
    Busy { path: PathBuf },
    #[error("cannot remove cgroup {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
}

/// One mounted v1 hierarchy: its directory and the controllers it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hierarchy {
    dir: PathBuf,
    controllers: Vec<String>,
}

impl Hierarchy {
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The host's cgroup layout, found once by `detect`.
#[derive(Debug, Clone)]
pub struct Cgroups {
    root: PathBuf,
    mode: CgroupMode,
    /// v1 only; empty on v2.
    hierarchies: Vec<Hierarchy>,
}

impl Cgroups {
    /// Finds the layout under `root` (normally `/sys/fs/cgroup`). A cgroup2
    /// root is v2; anything else is v1, whose hierarchies come from
    /// `/proc/self/mountinfo`. A hybrid host's `unified` mount is ignored:
    /// its controllers are all bound to v1 hierarchies.
    pub fn detect(root: &Path) -> Result<Self, CgroupError> {
        let root_err = |source| CgroupError::Root {
            root: root.to_path_buf(),
            source,
        };
        let fs = statfs(root).map_err(|e| root_err(e.into()))?;
        if fs.filesystem_type() == CGROUP2_SUPER_MAGIC {
            return Ok(Self {
                root: root.to_path_buf(),
                mode: CgroupMode::V2,
                hierarchies: Vec::new(),
            });
        }
        let mountinfo = Path::new("/proc/self/mountinfo");
        let text = fs::read_to_string(mountinfo).map_err(|source| CgroupError::Read {
            file: mountinfo.to_path_buf(),
            source,
        })?;
        let hierarchies = v1_hierarchies(&text, root);
        if hierarchies.is_empty() {
            return Err(CgroupError::NoHierarchies {
                root: root.to_path_buf(),
            });
        }
        Ok(Self {
            root: root.to_path_buf(),
            mode: CgroupMode::V1,
            hierarchies,
        })
    }

    pub fn mode(&self) -> CgroupMode {
        self.mode
    }

    /// The absolute directories of `path`: one per v1 hierarchy, one on v2.
    /// An invalid path has none.
    pub fn dirs(&self, path: &str) -> Vec<PathBuf> {
        match components(path) {
            Ok(parts) => self
                .bases()
                .into_iter()
                .map(|base| join(base, &parts))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The directory of `path` in the hierarchy holding `controller` (v2:
    /// the one directory); None if no hierarchy has it or the path is
    /// invalid.
    pub fn controller_dir(&self, path: &str, controller: &str) -> Option<PathBuf> {
        let parts = components(path).ok()?;
        match self.mode {
            CgroupMode::V2 => Some(join(&self.root, &parts)),
            CgroupMode::V1 => self
                .hierarchies
                .iter()
                .find(|h| h.has(controller))
                .map(|h| join(&h.dir, &parts)),
        }
    }

    /// Sends `sig` to every process in the cgroup at `path` (the first
    /// hierarchy's `cgroup.procs` lists them all). Best effort: processes
    /// that exit meanwhile are fine.
    pub fn kill_all(&self, path: &str, sig: nix::sys::signal::Signal) {
        for dir in self.dirs(path) {
            if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
                }
                return;
            }
        }
    }

    /// Creates `path` (kubelet's cgroupfs form, "/kubepods/besteffort/pod…")
    /// in every hierarchy, and reports the directories it made; ancestors
    /// that already existed are not ours and are never removed. On error,
    /// whatever this call made is removed again.
    pub fn create(&self, path: &str) -> Result<Created, CgroupError> {
        let parts = components(path)?;
        let mut created = Created::default();
        let result = self.bases().into_iter().try_for_each(|base| {
            let hierarchy = self.hierarchies.iter().find(|h| h.dir == base);
            let cpuset = hierarchy.is_some_and(|h| h.has("cpuset"));
            let mut dir = base.to_path_buf();
            for part in &parts {
                if self.mode == CgroupMode::V2 {
                    enable_controllers(&dir)?;
                }
                let parent = dir.clone();
                dir.push(part);
                if make_dir(&dir)? {
                    created.dirs.push(dir.clone());
                }
                if cpuset {
                    // A new v1 cpuset has empty cpus/mems and refuses tasks
                    // until they are set; clone_children is off by default.
                    inherit_cpuset(&parent, &dir)?;
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(created),
            Err(e) => {
                // Best effort: the original error is the one worth reporting.
                let _ = self.remove(&created);
                Err(e)
            }
        }
    }

    /// Writes the set fields of `r` into `path`'s control files.
    pub fn apply(&self, path: &str, r: &Resources) -> Result<(), CgroupError> {
        let parts = components(path)?;
        match self.mode {
            CgroupMode::V1 => self.apply_v1(&parts, r),
            CgroupMode::V2 => apply_v2(&join(&self.root, &parts), r),
        }
    }

    fn apply_v1(&self, parts: &[&str], r: &Resources) -> Result<(), CgroupError> {
        let dir_of = |controller: &'static str| -> Result<PathBuf, CgroupError> {
            let h = self.hierarchies.iter().find(|h| h.has(controller));
            let h = h.ok_or_else(|| CgroupError::ControllerUnavailable {
                controller,
                path: join(&self.root, parts),
            })?;
            existing(join(&h.dir, parts))
        };
        if r.cpu_period.is_some() || r.cpu_quota.is_some() || r.cpu_shares.is_some() {
            let dir = dir_of("cpu")?;
            if let Some(shares) = r.cpu_shares {
                write(&dir.join("cpu.shares"), &shares.to_string())?;
            }
            set_cfs_v1(&dir, r.cpu_period, r.cpu_quota)?;
        }
        if let Some(limit) = r.memory_limit {
            let value = if limit < 0 { -1 } else { limit };
            let dir = dir_of("memory")?;
            write(&dir.join("memory.limit_in_bytes"), &value.to_string())?;
        }
        if r.cpuset_cpus.is_some() || r.cpuset_mems.is_some() {
            let dir = dir_of("cpuset")?;
            // mems before cpus as runc does; each is checked against the parent.
            if let Some(mems) = &r.cpuset_mems {
                write(&dir.join("cpuset.mems"), mems)?;
            }
            if let Some(cpus) = &r.cpuset_cpus {
                write(&dir.join("cpuset.cpus"), cpus)?;
            }
        }
        Ok(())
    }

    /// Removes the directories `create` made, deepest first. A directory
    /// still holding processes is retried briefly, then reported; one that
    /// is already gone is fine, so removal can be repeated.
    pub fn remove(&self, created: &Created) -> Result<(), CgroupError> {
        let mut pending: Vec<PathBuf> = created.dirs.clone();
        pending.sort_by(|a, b| {
            let depth = |d: &Path| d.components().count();
            depth(b).cmp(&depth(a)).then_with(|| a.cmp(b))
        });
        pending.dedup();
        for attempt in 0..REMOVE_ATTEMPTS {
            if attempt > 0 {
                thread::sleep(REMOVE_INTERVAL);
            }
            let mut busy = Vec::new();
            for dir in pending {
                match fs::remove_dir(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => busy.push(dir),
                    Err(source) => return Err(CgroupError::Remove { path: dir, source }),
                }
            }
            // A busy dir whose only children are cgroups we did not make is
            // now shared (another pod created below it): leave it to them.
            pending = busy
                .iter()
                .filter(|dir| {
                    let ours_below = busy.iter().any(|d| d != *dir && d.starts_with(dir));
                    ours_below || !has_child_cgroups(dir)
                })
                .cloned()
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
        }
        Err(CgroupError::Busy {
            path: pending.swap_remove(0),
        })
    }

    /// Where `path` hangs: each v1 hierarchy, or the v2 root.
    fn bases(&self) -> Vec<&Path> {
        match self.mode {
            CgroupMode::V1 => self.hierarchies.iter().map(|h| h.dir.as_path()).collect(),
            CgroupMode::V2 => vec![self.root.as_path()],
        }
    }
}

/// The limit files a container update may write, and what they held
/// before: [`Cgroups::restore`] puts them back when an update fails halfway
/// (fields the update sets that the container never had included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    files: Vec<(PathBuf, String)>,
}

/// Per v1 controller, the limit files [`Cgroups::snapshot`] saves.
const V1_LIMIT_FILES: &[(&str, &[&str])] = &[
    (
        "cpu",
        &["cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us"],
    ),
    (
        "memory",
        &["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"],
    ),
    ("cpuset", &["cpuset.mems", "cpuset.cpus"]),
];

/// The v2 limit files [`Cgroups::snapshot`] saves (plus `unified` keys).
const V2_LIMIT_FILES: &[&str] = &[
    "cpu.max",
    "cpu.weight",
    "memory.max",
    "memory.swap.max",
    "cpuset.mems",
    "cpuset.cpus",
];

impl Cgroups {
    /// Memory limit and CRI's memory+swap limit together (both in bytes,
    /// negative = unlimited). v1 keeps `memsw >= limit` at every step, so
    /// memsw goes first when it grows and last when it shrinks; v2's
    /// `memory.swap.max` is the swap alone (memsw - limit), as runc and
    /// youki convert it.
    pub fn apply_memory(
        &self,
        path: &str,
        limit: Option<i64>,
        memsw: Option<i64>,
    ) -> Result<(), CgroupError> {
        let parts = components(path)?;
        let v1 = |x: i64| {
            if x < 0 {
                "-1".to_string()
            } else {
                x.to_string()
            }
        };
        match self.mode {
            CgroupMode::V1 => {
                if limit.is_none() && memsw.is_none() {
                    return Ok(());
                }
                let h = self.hierarchies.iter().find(|h| h.has("memory"));
                let h = h.ok_or_else(|| CgroupError::ControllerUnavailable {
                    controller: "memory",
                    path: join(&self.root, &parts),
                })?;
                let dir = existing(join(&h.dir, &parts))?;
                let limit_file = dir.join("memory.limit_in_bytes");
                let swap_file = dir.join("memory.memsw.limit_in_bytes");
                let Some(s) = memsw else {
                    return limit.map_or(Ok(()), |l| write(&limit_file, &v1(l)));
                };
                if !swap_file.exists() {
                    return Err(CgroupError::ControllerUnavailable {
                        controller: "memory swap accounting (boot with swapaccount=1)",
                        path: dir,
                    });
                }
                match limit {
                    None => write(&swap_file, &v1(s)),
                    Some(l) => match write(&swap_file, &v1(s)) {
                        Ok(()) => write(&limit_file, &v1(l)),
                        // memsw below the current limit: limit first.
                        Err(_) => {
                            write(&limit_file, &v1(l))?;
                            write(&swap_file, &v1(s))
                        }
                    },
                }
            }
            CgroupMode::V2 => {
                let dir = existing(join(&self.root, &parts))?;
                let max = dir.join("memory.max");
                if let Some(l) = limit {
                    let value = if l < 0 {
                        "max".to_string()
                    } else {
                        l.to_string()
                    };
                    write(&max, &value)?;
                }
                let Some(s) = memsw else { return Ok(()) };
                let swap_file = dir.join("memory.swap.max");
                let current = match limit {
                    Some(l) => (l >= 0).then_some(l),
                    None => read(&max)?.parse::<i64>().ok(),
                };
                let swap = match current {
                    Some(l) if s >= 0 => {
                        if s < l {
                            return Err(CgroupError::Write {
                                file: swap_file,
                                value: format!("{s} - {l}"),
                                source: io::Error::new(
                                    io::ErrorKind::InvalidInput,
                                    "the memory+swap limit is below the memory limit",
                                ),
                            });
                        }
                        (s - l).to_string()
                    }
                    _ => "max".to_string(),
                };
                write(&swap_file, &swap).map_err(|e| match e {
                    CgroupError::Write { source, .. }
                        if source.kind() == io::ErrorKind::NotFound =>
                    {
                        CgroupError::ControllerUnavailable {
                            controller: "memory swap accounting",
                            path: dir.clone(),
                        }
                    }
                    e => e,
                })
            }
        }
    }

    /// Writes CRI `unified` entries (v2 file name → value) into `path`.
    /// Names are plain control files of the cgroup; on v1 there is none.
    pub fn apply_unified<'a>(
        &self,
        path: &str,
        entries: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<(), CgroupError> {
        let parts = components(path)?;
        let dir = join(&self.root, &parts);
        let mut entries = entries.into_iter().peekable();
        if entries.peek().is_none() {
            return Ok(());
        }
        if self.mode != CgroupMode::V2 {
            return Err(CgroupError::ControllerUnavailable {
                controller: "unified (cgroup v2 only)",
                path: dir,
            });
        }
        let dir = existing(dir)?;
        for (name, value) in entries {
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                return Err(CgroupError::InvalidPath {
                    path: name.clone(),
                    reason: "a unified key must be a control file name",
                });
            }
            write(&dir.join(name), value)?;
        }
        Ok(())
    }

    /// Saves the limit files of `path` (and the v2 files named in `extra`)
    /// that exist, for [`Cgroups::restore`].
    pub fn snapshot(&self, path: &str, extra: &[&str]) -> Result<Snapshot, CgroupError> {
        let parts = components(path)?;
        let mut wanted: Vec<PathBuf> = Vec::new();
        match self.mode {
            CgroupMode::V1 => {
                for (controller, files) in V1_LIMIT_FILES {
                    if let Some(h) = self.hierarchies.iter().find(|h| h.has(controller)) {
                        let dir = existing(join(&h.dir, &parts))?;
                        wanted.extend(files.iter().map(|f| dir.join(f)));
                    }
                }
            }
            CgroupMode::V2 => {
                let dir = existing(join(&self.root, &parts))?;
                wanted.extend(V2_LIMIT_FILES.iter().map(|f| dir.join(f)));
                wanted.extend(
                    extra
                        .iter()
                        .filter(|f| !f.is_empty() && !f.contains('/') && !f.starts_with('.'))
                        .map(|f| dir.join(f)),
                );
            }
        }
        let mut files = Vec::new();
        for file in wanted {
            match fs::read_to_string(&file) {
                Ok(v) => files.push((file, v.trim().to_string())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(CgroupError::Read { file, source }),
            }
        }
        Ok(Snapshot { files })
    }

    /// Writes back what `snapshot` saw, where it changed. Pairs the kernel
    /// checks against each other (memory/memsw, quota/period) may refuse
    /// one order, so failed writes are retried after the others.
    pub fn restore(&self, snapshot: &Snapshot) -> Result<(), CgroupError> {
        let mut pending: Vec<&(PathBuf, String)> = snapshot
            .files
            .iter()
            .filter(|(file, value)| read(file).ok().as_deref() != Some(value.as_str()))
            .collect();
        let mut last = None;
        for _ in 0..3 {
            let mut failed = Vec::new();
            for entry in pending {
                // An empty write is no write at all; cgroupfs takes "\n"
                // as the empty value (v2 cpuset: inherit the parent's).
                let value = if entry.1.is_empty() { "\n" } else { &entry.1 };
                if let Err(e) = write(&entry.0, value) {
                    failed.push(entry);
                    last = Some(e);
                }
            }
            if failed.is_empty() {
                return Ok(());
            }
            pending = failed;
        }
        Err(last.expect("a failed write was recorded"))
    }
}

/// Splits a cgroup parent into its components, refusing anything that could
/// leave the cgroup tree: `..` would let a pod spec reach a sibling's or the
/// host's cgroup, a NUL would truncate the path in the kernel.
fn components(path: &str) -> Result<Vec<&str>, CgroupError> {
    let invalid = |reason| CgroupError::InvalidPath {
        path: path.to_string(),
        reason,
    };
    if path.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == ".." || *p == ".") {
        return Err(invalid("contains a '.' or '..' component"));
    }
    if parts.is_empty() {
        return Err(invalid("names the root cgroup"));
    }
    Ok(parts)
}

fn join(base: &Path, parts: &[&str]) -> PathBuf {
    let mut dir = base.to_path_buf();
    dir.extend(parts);
    dir
}

fn existing(dir: PathBuf) -> Result<PathBuf, CgroupError> {
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(CgroupError::NotFound { path: dir })
    }
}

/// `true` when this call made the directory.
fn make_dir(dir: &Path) -> Result<bool, CgroupError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(false),
        Err(source) => Err(CgroupError::Create {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

fn has_child_cgroups(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_type().is_ok_and(|t| t.is_dir()))
    })
}

fn read(file: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(file)
        .map(|s| s.trim().to_string())
        .map_err(|source| CgroupError::Read {
            file: file.to_path_buf(),
            source,
        })
}

/// One write(2) of the whole value: cgroupfs parses each write on its own.
/// No O_CREAT: a missing control file is an error, not a new regular file.
fn write(file: &Path, value: &str) -> Result<(), CgroupError> {
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(file)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| CgroupError::Write {
            file: file.to_path_buf(),
            value: value.to_string(),
            source,
        })
}

/// Copies the parent's cpus/mems into `dir` where they are still empty.
fn inherit_cpuset(parent: &Path, dir: &Path) -> Result<(), CgroupError> {
    for name in ["cpuset.cpus", "cpuset.mems"] {
        if read(&dir.join(name))?.is_empty() {
            write(&dir.join(name), &read(&parent.join(name))?)?;
        }
    }
    Ok(())
}

/// v1 CFS limits. The kernel checks quota/period against the parent's and
/// rejects a combination that is transiently invalid, so when the period
/// cannot go first, set the quota first and retry the period (as runc does).
fn set_cfs_v1(dir: &Path, period: Option<u64>, quota: Option<i64>) -> Result<(), CgroupError> {
    let period_file = dir.join("cpu.cfs_period_us");
    let quota_file = dir.join("cpu.cfs_quota_us");
    let quota = quota.map(|q| if q < 0 { -1 } else { q }.to_string());
    match period.map(|p| p.to_string()) {
        Some(p) => match write(&period_file, &p) {
            Ok(()) => quota.map_or(Ok(()), |q| write(&quota_file, &q)),
            Err(first) => match quota {
                Some(q) => {
                    write(&quota_file, &q)?;
                    write(&period_file, &p)
                }
                None => Err(first),
            },
        },
        None => quota.map_or(Ok(()), |q| write(&quota_file, &q)),
    }
}

fn apply_v2(dir: &Path, r: &Resources) -> Result<(), CgroupError> {
    let dir = existing(dir.to_path_buf())?;
    // A control file is missing when its controller is not enabled in the
    // parent's subtree_control (or not compiled into the kernel).
    let unavailable = |controller: &'static str, e: CgroupError| match e {
        CgroupError::Write { source, .. } | CgroupError::Read { source, .. }
            if source.kind() == io::ErrorKind::NotFound =>
        {
            CgroupError::ControllerUnavailable {
                controller,
                path: dir.clone(),
            }
        }
        e => e,
    };
    let cpu_max = dir.join("cpu.max");
    let max = match (r.cpu_quota, r.cpu_period) {
        (None, None) => None,
        (Some(q), None) => Some(quota_v2(q)),
        (Some(q), Some(p)) => Some(format!("{} {p}", quota_v2(q))),
        (None, Some(p)) => {
            // cpu.max takes "quota period" together: keep the current quota.
            let current = read(&cpu_max).map_err(|e| unavailable("cpu", e))?;
            let quota = current.split_whitespace().next().unwrap_or("max");
            Some(format!("{quota} {p}"))
        }
    };
    if let Some(max) = max {
        write(&cpu_max, &max).map_err(|e| unavailable("cpu", e))?;
    }
    if let Some(shares) = r.cpu_shares {
        let weight = shares_to_weight(shares).to_string();
        write(&dir.join("cpu.weight"), &weight).map_err(|e| unavailable("cpu", e))?;
    }
    if let Some(limit) = r.memory_limit {
        let value = if limit < 0 {
            "max".to_string()
        } else {
            limit.to_string()
        };
        write(&dir.join("memory.max"), &value).map_err(|e| unavailable("memory", e))?;
    }
    if let Some(mems) = &r.cpuset_mems {
        write(&dir.join("cpuset.mems"), mems).map_err(|e| unavailable("cpuset", e))?;
    }
    if let Some(cpus) = &r.cpuset_cpus {
        write(&dir.join("cpuset.cpus"), cpus).map_err(|e| unavailable("cpuset", e))?;
    }
    Ok(())
}

fn quota_v2(quota: i64) -> String {
    if quota <= 0 {
        "max".to_string()
    } else {
        quota.to_string()
    }
}

/// v1 shares [2, 262144] onto v2 weight [1, 10000] as runc
/// (opencontainers/cgroups >= 0.0.5), youki's libcgroups (which creates
/// container cgroups, so an update must agree with it) and kubelet map
/// them: the default 1024 shares become the default weight 100.
fn shares_to_weight(shares: u64) -> u64 {
    if shares <= 2 {
        return 1;
    }
    if shares >= 262_144 {
        return 10_000;
    }
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    (10f64.powf(exponent).ceil() as u64).clamp(1, 10_000)
}

/// Enables the pod controllers in `dir`'s `cgroup.subtree_control`, so its
/// children get their control files. Only missing ones are written: a
/// parent that holds processes may not enable new controllers (the v2
/// no-internal-processes rule), but it is fine if they are already on.
fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let offered = read(&dir.join("cgroup.controllers"))?;
    let control = dir.join("cgroup.subtree_control");
    let enabled = read(&control)?;
    let enabled: HashSet<&str> = enabled.split_whitespace().collect();
    let offered: HashSet<&str> = offered.split_whitespace().collect();
    for c in V2_CONTROLLERS {
        if offered.contains(c) && !enabled.contains(c) {
            write(&control, &format!("+{c}"))?;
        }
    }
    Ok(())
}

/// The v1 hierarchies mounted directly under `root`, from mountinfo text;
/// one per hierarchy (a hierarchy mounted twice shares its device number).
fn v1_hierarchies(mountinfo: &str, root: &Path) -> Vec<Hierarchy> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (Some(dev), Some(mount_point), Some(&"cgroup"), Some(options)) =
            (pre.get(2), pre.get(4), post.first(), post.get(2))
        else {
            continue;
        };
        let dir = PathBuf::from(super::mount::mountinfo_unescape(mount_point));
        if dir.parent() != Some(root) {
            continue;
        }
        let controllers: Vec<String> = options
            .split(',')
            .filter(|o| V1_CONTROLLERS.contains(o))
            .map(str::to_string)
            .collect();
        if controllers.is_empty() || !seen.insert(dev.to_string()) {
            continue;
        }
        out.push(Hierarchy { dir, controllers });
    }
    out
}

/// What [`favor_dynmods`] found or did, naming the cgroup2 mount.
#[derive(Debug, PartialEq, Eq)]
pub enum Dynmods {
    AlreadyOn(PathBuf),
    Enabled(PathBuf),
}

/// Turns on the kernel's `favordynmods` (Linux >= 6.0) by remounting the
/// first cgroup2 mount with that option added and every other option kept.
///
/// Why: each write to `cgroup.procs` (one per container start, in v1 and v2)
/// takes the global `cgroup_threadgroup_rwsem` for writing, which, unless a
/// migration happened within the last RCU grace period, first waits for a
/// grace period: 5-30 ms on some kernels, the largest single cost of
/// StartContainer. With the option the rwsem stays ready for writers and
/// forks and exits take a slightly slower read path instead (the trade-off
/// the kernel documents for hosts with frequent migrations). The rwsem is
/// one for every hierarchy, so one cgroup2 mount (a hybrid host's
/// `unified` too) sets it for all. Neither containerd nor CRI-O does this;
/// it is configurable (`runtime.cgroup_favor_dynmods`).
pub fn favor_dynmods() -> Result<Dynmods, String> {
    let text = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("reading /proc/self/mountinfo: {e}"))?;
    let plan = dynmods_remount(&text).ok_or("no cgroup2 mount")?;
    let (mount_point, flags, data) = match plan {
        Err(mount_point) => return Ok(Dynmods::AlreadyOn(mount_point)),
        Ok(plan) => plan,
    };
    nix::mount::mount(
        None::<&str>,
        &mount_point,
        None::<&str>,
        nix::mount::MsFlags::MS_REMOUNT | flags,
        Some(data.as_str()),
    )
    .map_err(|e| format!("remounting {} with {data}: {e}", mount_point.display()))?;
    Ok(Dynmods::Enabled(mount_point))
}

/// Mount point, per-mount flags and option string of a remount.
type Remount = (PathBuf, nix::mount::MsFlags, String);

/// The remount that adds `favordynmods` to the first cgroup2 mount in
/// `mountinfo`: its mount point, per-mount flags (kept: a remount resets
/// those not given) and option string (every superblock option but rw/ro,
/// which a cgroup2 reconfiguration would otherwise clear). `Err(mount
/// point)` when the option is on already; `None` without a cgroup2 mount.
fn dynmods_remount(mountinfo: &str) -> Option<Result<Remount, PathBuf>> {
    use nix::mount::MsFlags;
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (Some(mount_point), Some(mount_opts), Some(&"cgroup2"), Some(super_opts)) =
            (pre.get(4), pre.get(5), post.first(), post.get(2))
        else {
            continue;
        };
        let mount_point = PathBuf::from(super::mount::mountinfo_unescape(mount_point));
        let mut opts: Vec<&str> = super_opts
            .split(',')
            .filter(|o| !matches!(*o, "rw" | "ro" | ""))
            .collect();
        if opts.contains(&"favordynmods") {
            return Some(Err(mount_point));
        }
        opts.push("favordynmods");
        let flags = mount_opts
            .split(',')
            .fold(MsFlags::empty(), |f, o| match o {
                "ro" => f | MsFlags::MS_RDONLY,
                "nosuid" => f | MsFlags::MS_NOSUID,
                "nodev" => f | MsFlags::MS_NODEV,
                "noexec" => f | MsFlags::MS_NOEXEC,
                "noatime" => f | MsFlags::MS_NOATIME,
                "nodiratime" => f | MsFlags::MS_NODIRATIME,
                "relatime" => f | MsFlags::MS_RELATIME,
                "strictatime" => f | MsFlags::MS_STRICTATIME,
                _ => f,
            });
        return Some(Ok((mount_point, flags, opts.join(","))));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
25 1 0:22 / /sys rw - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
34 30 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
35 30 0:31 / /sys/fs/cgroup/net_cls,net_prio rw shared:9 - cgroup cgroup rw,net_cls,net_prio
36 1 0:28 / /mnt/memory\\040again rw - cgroup cgroup rw,memory
37 30 0:28 / /sys/fs/cgroup/memory2 rw - cgroup cgroup rw,memory
";

    #[test]
    fn hierarchies_skip_named_unified_elsewhere_and_duplicates() {
        let found = v1_hierarchies(MOUNTINFO, Path::new("/sys/fs/cgroup"));
        let dirs: Vec<_> = found.iter().map(|h| h.dir.to_str().unwrap()).collect();
        assert_eq!(
            dirs,
            [
                "/sys/fs/cgroup/cpu",
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/net_cls,net_prio"
            ]
        );
        assert_eq!(found[2].controllers, ["net_cls", "net_prio"]);
    }

    #[test]
    fn escaped_hierarchy_paths_are_decoded() {
        let found = v1_hierarchies(MOUNTINFO, Path::new("/mnt"));
        assert_eq!(found[0].dir, Path::new("/mnt/memory again"));
    }

    #[test]
    fn paths_that_leave_the_tree_are_refused() {
        for bad in ["/kubepods/../x", "..", "/a/./b", "/a\0b", "", "/", "//"] {
            assert!(
                matches!(components(bad), Err(CgroupError::InvalidPath { .. })),
                "{bad:?} accepted"
            );
        }
        assert_eq!(
            components("/kubepods//besteffort/pod1/").unwrap(),
            ["kubepods", "besteffort", "pod1"]
        );
        assert_eq!(components("kubepods").unwrap(), ["kubepods"]);
    }

    #[test]
    fn shares_map_to_weight_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(0), 1);
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(512), 59);
        assert_eq!(shares_to_weight(256), 35);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(u64::MAX), 10_000);
    }

    #[test]
    fn quota_zero_or_negative_is_unlimited() {
        assert_eq!(quota_v2(-1), "max");
        assert_eq!(quota_v2(0), "max");
        assert_eq!(quota_v2(50_000), "50000");
    }

    #[test]
    fn created_round_trips_through_json() {
        let c = Created {
            dirs: vec![PathBuf::from("/sys/fs/cgroup/cpu/kubepods")],
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Created>(&json).unwrap(), c);
    }

    #[test]
    fn dynmods_remount_keeps_every_option() {
        use nix::mount::MsFlags;
        let systemd = "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        let (mp, flags, data) = dynmods_remount(systemd).unwrap().unwrap();
        assert_eq!(mp, PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(
            flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME
        );
        assert_eq!(data, "nsdelegate,memory_recursiveprot,favordynmods");
        let hybrid = "30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                      31 25 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        let (mp, _, data) = dynmods_remount(hybrid).unwrap().unwrap();
        assert_eq!(mp, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(data, "favordynmods");
        let on = "31 25 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,favordynmods\n";
        assert_eq!(
            dynmods_remount(on),
            Some(Err(PathBuf::from("/sys/fs/cgroup")))
        );
        assert_eq!(
            dynmods_remount("30 25 0:26 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"),
            None
        );
    }
}
