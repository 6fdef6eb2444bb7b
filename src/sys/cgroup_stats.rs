//! Reading a cgroup's CPU and memory figures, cgroup v1 and v2 behind one
//! function, the way kubelet/cAdvisor read them: CPU usage in nanoseconds,
//! memory usage, working set (usage minus inactive file), RSS, page
//! faults, swap, the limit. Missing files leave their figure unset.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use super::cgroup::{CgroupMode, Cgroups};

/// One sample of a cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Total CPU time, ns.
    pub cpu_usage_ns: Option<u64>,
    pub memory_usage: Option<u64>,
    pub working_set: Option<u64>,
    pub rss: Option<u64>,
    pub page_faults: Option<u64>,
    pub major_page_faults: Option<u64>,
    pub swap_usage: Option<u64>,
    /// The memory limit, if there is one.
    pub memory_limit: Option<u64>,
    /// Processes in the cgroup.
    pub pids: Option<u64>,
}

/// `key value` lines (memory.stat, cpu.stat).
fn flat_keyed(file: &Path) -> HashMap<String, u64> {
    fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

fn number(file: &Path) -> Option<u64> {
    fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// A limit file: "max" (v2) or a huge value (v1's unlimited) is none.
fn limit(file: &Path) -> Option<u64> {
    let v = fs::read_to_string(file).ok()?;
    let v = v.trim();
    if v == "max" {
        return None;
    }
    let n: u64 = v.parse().ok()?;
    // v1 reports "unlimited" as a page-rounded i64::MAX.
    (n < (1u64 << 62)).then_some(n)
}

impl Cgroups {
    /// The figures of the cgroup at `path` (relative to the hierarchy
    /// roots, as given to `create`). A cgroup that does not exist reads as
    /// all-unset.
    pub fn stats(&self, path: &str) -> CgroupStats {
        match self.mode() {
            CgroupMode::V2 => self
                .dirs(path)
                .first()
                .map(|d| stats_v2(d))
                .unwrap_or_default(),
            CgroupMode::V1 => {
                let dir = |controller: &str| self.controller_dir(path, controller);
                stats_v1(
                    dir("cpuacct").as_deref(),
                    dir("memory").as_deref(),
                    dir("pids").as_deref(),
                )
            }
        }
    }
}

fn stats_v2(dir: &Path) -> CgroupStats {
    let cpu = flat_keyed(&dir.join("cpu.stat"));
    let mem = flat_keyed(&dir.join("memory.stat"));
    let usage = number(&dir.join("memory.current"));
    let inactive = mem.get("inactive_file").copied().unwrap_or(0);
    CgroupStats {
        cpu_usage_ns: cpu.get("usage_usec").map(|u| u.saturating_mul(1000)),
        memory_usage: usage,
        working_set: usage.map(|u| u.saturating_sub(inactive)),
        rss: mem.get("anon").copied(),
        page_faults: mem.get("pgfault").copied(),
        major_page_faults: mem.get("pgmajfault").copied(),
        swap_usage: number(&dir.join("memory.swap.current")),
        memory_limit: limit(&dir.join("memory.max")),
        pids: number(&dir.join("pids.current")),
    }
}

fn stats_v1(cpuacct: Option<&Path>, memory: Option<&Path>, pids: Option<&Path>) -> CgroupStats {
    let mut s = CgroupStats {
        cpu_usage_ns: cpuacct.and_then(|d| number(&d.join("cpuacct.usage"))),
        pids: pids.and_then(|d| number(&d.join("pids.current"))),
        ..Default::default()
    };
    if let Some(d) = memory {
        let mem = flat_keyed(&d.join("memory.stat"));
        let usage = number(&d.join("memory.usage_in_bytes"));
        let inactive = mem.get("total_inactive_file").copied().unwrap_or(0);
        s.memory_usage = usage;
        s.working_set = usage.map(|u| u.saturating_sub(inactive));
        s.rss = mem.get("total_rss").copied();
        s.page_faults = mem.get("total_pgfault").copied();
        s.major_page_faults = mem.get("total_pgmajfault").copied();
        s.swap_usage = number(&d.join("memory.memsw.usage_in_bytes"))
            .zip(usage)
            .map(|(both, mem)| both.saturating_sub(mem));
        s.memory_limit = limit(&d.join("memory.limit_in_bytes"));
    }
    s
}

/// Bytes and inodes used below `dir` (a writable layer), not following
/// symlinks or crossing into other filesystems.
pub fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(root) = fs::symlink_metadata(dir) else {
        return (0, 0);
    };
    let dev = root.dev();
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != dev {
                continue;
            }
            inodes += 1;
            // Allocated blocks (512-byte units), as du counts.
            bytes += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_and_v1_files_parse() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::write(p.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").unwrap();
        fs::write(
            p.join("memory.stat"),
            "anon 4096\ninactive_file 1000\npgfault 7\npgmajfault 1\n",
        )
        .unwrap();
        fs::write(p.join("memory.current"), "5000\n").unwrap();
        fs::write(p.join("memory.max"), "max\n").unwrap();
        let s = stats_v2(p);
        assert_eq!(s.cpu_usage_ns, Some(1_500_000));
        assert_eq!(s.working_set, Some(4000));
        assert_eq!(s.rss, Some(4096));
        assert_eq!((s.page_faults, s.major_page_faults), (Some(7), Some(1)));
        assert_eq!(s.memory_limit, None);

        let m = tempfile::tempdir().unwrap();
        fs::write(m.path().join("memory.usage_in_bytes"), "9000\n").unwrap();
        fs::write(
            m.path().join("memory.stat"),
            "total_rss 100\ntotal_inactive_file 10000\n",
        )
        .unwrap();
        fs::write(
            m.path().join("memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        let s = stats_v1(None, Some(m.path()), None);
        assert_eq!(s.working_set, Some(0), "never negative");
        assert_eq!(s.memory_limit, None, "v1 unlimited");
        assert_eq!(s.cpu_usage_ns, None);
    }

    #[test]
    fn disk_usage_counts_files_and_dirs() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("a")).unwrap();
        fs::write(d.path().join("a/f"), vec![1u8; 10000]).unwrap();
        let (bytes, inodes) = disk_usage(d.path());
        assert_eq!(inodes, 2);
        assert!(bytes >= 10000, "{bytes}");
        assert_eq!(disk_usage(Path::new("/no/such/dir")), (0, 0));
    }
}
