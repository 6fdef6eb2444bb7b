//! Host-side helpers for the container benchmark: the host process table
//! (descendants, containerd shims, PSS/RSS), and containerd run as the peer
//! with its own root, state, socket, CNI conf dir and sandbox (pause) image,
//! killed with its shims and unmounted on drop. Shared by the benchmarks.
//!
//! The including crate must also include `tests/common` as `common` and
//! `support/peer.rs` as `peer`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use crate::common;
use crate::peer;

/// One host process.
#[derive(Debug)]
pub struct Proc {
    pub ppid: u32,
    /// Exited, not yet reaped.
    pub zombie: bool,
    /// Arguments joined by spaces (NULs replaced).
    pub cmdline: String,
    /// Target of `/proc/<pid>/exe` (empty if unreadable).
    pub exe: String,
}

/// Every process on the host.
pub fn processes() -> HashMap<u32, Proc> {
    let mut out = HashMap::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let zombie = fields.next() == Some("Z");
        let Some(ppid) = fields.next().and_then(|p| p.parse().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        out.insert(
            pid,
            Proc {
                ppid,
                zombie,
                cmdline,
                exe,
            },
        );
    }
    out
}

/// Live (non-zombie) processes on the host.
pub fn live_processes() -> usize {
    processes().values().filter(|p| !p.zombie).count()
}

/// `roots` and all their live descendants, sorted.
pub fn tree(table: &HashMap<u32, Proc>, roots: &[u32]) -> Vec<u32> {
    let mut set: HashSet<u32> = roots.iter().copied().collect();
    loop {
        let before = set.len();
        for (pid, p) in table {
            if !p.zombie && set.contains(&p.ppid) {
                set.insert(*pid);
            }
        }
        if set.len() == before {
            break;
        }
    }
    let mut v: Vec<u32> = set.into_iter().collect();
    v.sort();
    v
}

/// containerd shims started for the containerd whose files live under `dir`
/// (their command line carries `-address <dir>/containerd.sock`).
pub fn shims_of(table: &HashMap<u32, Proc>, dir: &Path) -> Vec<u32> {
    let dir = dir.display().to_string();
    let mut v: Vec<u32> = table
        .iter()
        .filter(|(_, p)| {
            !p.zombie && p.cmdline.contains("containerd-shim") && p.cmdline.contains(&dir)
        })
        .map(|(pid, _)| *pid)
        .collect();
    v.sort();
    v
}

/// Proportional set size of a process (KiB), 0 if gone.
pub fn pss_kib(pid: u32) -> u64 {
    peer::proc_kib(pid, "smaps_rollup", "Pss")
}

/// Resident set size of a process (KiB), 0 if gone.
pub fn rss_kib(pid: u32) -> u64 {
    peer::proc_kib(pid, "status", "VmRSS")
}

/// SIGKILL, ignoring errors (the process may be gone).
pub fn kill9(pid: u32) {
    if let Ok(p) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

// ---- containerd ---------------------------------------------------------

/// A running containerd with private root, state and socket.
#[derive(Debug)]
pub struct Containerd {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    /// Host directories containerd creates outside its root and state
    /// (shim socket dir, the `k8s.io` parent cgroups) that did not exist
    /// before it started: removed (when empty) on drop, deepest first.
    created: Vec<PathBuf>,
}

/// Directories a containerd run may leave behind outside its own dirs.
fn host_dirs() -> Vec<PathBuf> {
    let mut v = vec![
        PathBuf::from("/run/containerd/s"),
        PathBuf::from("/run/containerd/runc"),
        PathBuf::from("/run/containerd"),
    ];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            v.push(e.path().join("k8s.io"));
        }
    }
    v.push(PathBuf::from("/sys/fs/cgroup/k8s.io"));
    v
}

impl Containerd {
    /// The last `n` lines of containerd's log.
    pub fn log_tail(&self, n: usize) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Shims (and the pause and container processes below them) outlive
        // containerd: kill the whole tree, children first.
        let table = processes();
        let shims = shims_of(&table, self.dir.path());
        let mut all = tree(&table, &shims);
        all.retain(|p| !shims.contains(p));
        for pid in all.iter().chain(shims.iter()) {
            kill9(*pid);
        }
        if !shims.is_empty() {
            eprintln!("containerd: killed {} leftover shim(s)", shims.len());
            std::thread::sleep(Duration::from_millis(300));
        }
        common::unmount_below(self.dir.path());
        for d in &self.created {
            // rmdir only: a non-empty directory (or busy cgroup) stays.
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Starts containerd (if installed and it comes up) with CRI configured for
/// `registry` over plain HTTP, `pause` as sandbox image and the CNI conflist
/// in `cni_conf_dir`.
pub fn start_containerd(registry: &str, pause: &str, cni_conf_dir: &Path) -> Option<Containerd> {
    let bin = peer::binary()?;
    let dir = tempfile::Builder::new()
        .prefix("crius-bench-containerd-")
        .tempdir()
        .ok()?;
    let d = dir.path();
    let socket = d.join("containerd.sock");
    let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
    let cfg = format!(
        r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[{cri}]
  sandbox_image = "{pause}"
  # The pause container's oom_score_adj -998 needs CAP_SYS_RESOURCE,
  # which these machines may lack: cap it at containerd's own.
  restrict_oom_score_adj = true
  # Exec/Attach URLs: plain HTTP on loopback, a free port
  # (http://127.0.0.1:<port>/exec/<token>).
  enable_tls_streaming = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[{cri}.containerd]
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  Root = "{runc_root}"
[{cri}.cni]
  bin_dir = "{bin_dir}"
  conf_dir = "{conf_dir}"
[{cri}.registry.mirrors."{registry}"]
  endpoint = ["http://{registry}"]
"#,
        root = d.join("root").display(),
        state = d.join("state").display(),
        sock = socket.display(),
        runc_root = d.join("runc").display(),
        bin_dir = common::net::CNI_BIN,
        conf_dir = cni_conf_dir.display(),
    );
    let created = host_dirs().into_iter().filter(|p| !p.exists()).collect();
    let (child, socket) = peer::spawn(bin, d, &cfg)?;
    Some(Containerd {
        child,
        dir,
        socket,
        created,
    })
}

// ---- output -------------------------------------------------------------

/// Like `peer::row`, plus the target ratio (e.g. "<= 0.30") and whether the
/// measured ratio meets it.
pub fn row_target(width: usize, what: &str, ours: f64, peer: Option<f64>, target: f64) {
    match peer {
        Some(p) => {
            let ratio = ours / p;
            let verdict = if ratio <= target { "ok" } else { "MISSED" };
            println!(
                "{what:<width$} {ours:>10.1} {p:>12.1} {ratio:>8.2}   target <= {target:.2} {verdict}"
            )
        }
        None => println!(
            "{what:<width$} {ours:>10.1} {:>12} {:>8}   target <= {target:.2}",
            "-", "-"
        ),
    }
}
