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
    /// CPU time in user and in system mode, ns (v1: cpuacct.stat ticks).
    pub cpu_user_ns: Option<u64>,
    pub cpu_system_ns: Option<u64>,
    /// Page cache (v2 `file`, v1 `total_cache`).
    pub memory_cache: Option<u64>,
    /// Times usage hit the limit (v1 `memory.failcnt`; v2 has no such counter).
    pub memory_failcnt: Option<u64>,
    /// Processes the kernel OOM-killed in the cgroup (`oom_kill` of v2
    /// `memory.events`, v1 `memory.oom_control`, kernel 4.13+).
    pub oom_kills: Option<u64>,
    /// Pressure stall information (v2 `*.pressure`; v1 has none).
    pub psi: Psi,
    /// CFS bandwidth: enforcement periods elapsed, periods throttled, and
    /// time throttled, ns (`cpu.stat`; only with a CPU quota, else 0).
    pub cpu_periods: Option<u64>,
    pub cpu_throttled_periods: Option<u64>,
    pub cpu_throttled_ns: Option<u64>,
}

/// PSI of a cgroup, per resource: None where the file is missing (cgroup
/// v1, a kernel without CONFIG_PSI or booted with psi=0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Psi {
    pub cpu: Option<PsiTotals>,
    pub memory: Option<PsiTotals>,
    pub io: Option<PsiTotals>,
}

/// The `total=` fields of a pressure file, µs: `some` (at least one task
/// stalled: cAdvisor's "waiting") and `full` (all non-idle tasks stalled:
/// "stalled"; absent from cpu.pressure before Linux 5.13).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PsiTotals {
    pub some_us: u64,
    pub full_us: Option<u64>,
}

/// Parses a pressure file (`some avg10=0.00 avg60=0.00 avg300=0.00
/// total=123` and the same for `full`). None without a `some` line.
pub fn parse_psi(text: &str) -> Option<PsiTotals> {
    let total = |kind: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(kind))?
            .split_whitespace()
            .find_map(|f| f.strip_prefix("total="))?
            .parse::<u64>()
            .ok()
    };
    Some(PsiTotals {
        some_us: total("some")?,
        full_us: total("full"),
    })
}

fn psi_v2(dir: &Path) -> Psi {
    let read = |f: &str| parse_psi(&fs::read_to_string(dir.join(f)).ok()?);
    Psi {
        cpu: read("cpu.pressure"),
        memory: read("memory.pressure"),
        io: read("io.pressure"),
    }
}

/// Clock ticks per second, the unit of v1 `cpuacct.stat`.
fn clock_ticks() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        // USER_HZ is 100 on every Linux architecture crius builds for.
        _ => 100,
    }
}

/// The v1 figures `stats_v1` leaves out: user/system split, CFS
/// throttling, cache, failcnt and OOM kills.
fn extras_v1(
    cpuacct: Option<&Path>,
    cpu: Option<&Path>,
    memory: Option<&Path>,
    s: &mut CgroupStats,
) {
    if let Some(d) = cpu {
        let st = flat_keyed(&d.join("cpu.stat"));
        s.cpu_periods = st.get("nr_periods").copied();
        s.cpu_throttled_periods = st.get("nr_throttled").copied();
        s.cpu_throttled_ns = st.get("throttled_time").copied();
    }
    if let Some(d) = cpuacct {
        let st = flat_keyed(&d.join("cpuacct.stat"));
        let tick_ns = 1_000_000_000 / clock_ticks();
        s.cpu_user_ns = st.get("user").map(|t| t.saturating_mul(tick_ns));
        s.cpu_system_ns = st.get("system").map(|t| t.saturating_mul(tick_ns));
    }
    if let Some(d) = memory {
        s.memory_cache = flat_keyed(&d.join("memory.stat"))
            .get("total_cache")
            .copied();
        s.memory_failcnt = number(&d.join("memory.failcnt"));
        s.oom_kills = flat_keyed(&d.join("memory.oom_control"))
            .get("oom_kill")
            .copied();
    }
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
                let (cpuacct, memory) = (dir("cpuacct"), dir("memory"));
                let mut s = stats_v1(
                    cpuacct.as_deref(),
                    memory.as_deref(),
                    dir("pids").as_deref(),
                );
                let cpu = dir("cpu");
                extras_v1(
                    cpuacct.as_deref(),
                    cpu.as_deref(),
                    memory.as_deref(),
                    &mut s,
                );
                s
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
        cpu_user_ns: cpu.get("user_usec").map(|u| u.saturating_mul(1000)),
        cpu_system_ns: cpu.get("system_usec").map(|u| u.saturating_mul(1000)),
        memory_cache: mem.get("file").copied(),
        memory_failcnt: None,
        oom_kills: flat_keyed(&dir.join("memory.events"))
            .get("oom_kill")
            .copied(),
        psi: psi_v2(dir),
        cpu_periods: cpu.get("nr_periods").copied(),
        cpu_throttled_periods: cpu.get("nr_throttled").copied(),
        cpu_throttled_ns: cpu.get("throttled_usec").map(|u| u.saturating_mul(1000)),
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
    fn psi_files_parse() {
        let cpu = "some avg10=1.50 avg60=0.20 avg300=0.05 total=2500000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=700\n";
        assert_eq!(
            parse_psi(cpu),
            Some(PsiTotals {
                some_us: 2_500_000,
                full_us: Some(700)
            })
        );
        // cpu.pressure before Linux 5.13 has no `full` line.
        let old = "some avg10=0.00 avg60=0.00 avg300=0.00 total=42\n";
        assert_eq!(
            parse_psi(old),
            Some(PsiTotals {
                some_us: 42,
                full_us: None
            })
        );
        assert_eq!(parse_psi(""), None);
        assert_eq!(parse_psi("some avg10=x total=notanumber\n"), None);
        assert_eq!(parse_psi("full avg10=0.00 total=5\n"), None, "no some line");

        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("memory.pressure"), cpu).unwrap();
        fs::write(d.path().join("io.pressure"), old).unwrap();
        fs::write(
            d.path().join("memory.events"),
            "low 0\nmax 3\noom 1\noom_kill 2\n",
        )
        .unwrap();
        fs::write(
            d.path().join("cpu.stat"),
            "usage_usec 10\nuser_usec 7\nsystem_usec 3\nnr_periods 5\nnr_throttled 2\nthrottled_usec 1500000\n",
        )
        .unwrap();
        let s = stats_v2(d.path());
        assert_eq!(s.psi.cpu, None, "missing file");
        assert_eq!(s.psi.memory.map(|p| p.some_us), Some(2_500_000));
        assert_eq!(s.psi.io.and_then(|p| p.full_us), None);
        assert_eq!(s.oom_kills, Some(2));
        assert_eq!((s.cpu_user_ns, s.cpu_system_ns), (Some(7000), Some(3000)));
        assert_eq!(
            (s.cpu_periods, s.cpu_throttled_periods, s.cpu_throttled_ns),
            (Some(5), Some(2), Some(1_500_000_000))
        );
    }

    #[test]
    fn v1_extras_parse() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::write(p.join("cpuacct.stat"), "user 200\nsystem 50\n").unwrap();
        fs::write(
            p.join("cpu.stat"),
            "nr_periods 10\nnr_throttled 4\nthrottled_time 2000000000\n",
        )
        .unwrap();
        fs::write(p.join("memory.stat"), "cache 5\ntotal_cache 4096\n").unwrap();
        fs::write(p.join("memory.failcnt"), "3\n").unwrap();
        fs::write(
            p.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        )
        .unwrap();
        let mut s = CgroupStats::default();
        extras_v1(Some(p), Some(p), Some(p), &mut s);
        let tick = 1_000_000_000 / clock_ticks();
        assert_eq!(s.cpu_user_ns, Some(200 * tick));
        assert_eq!(s.cpu_system_ns, Some(50 * tick));
        assert_eq!(s.memory_cache, Some(4096));
        assert_eq!(s.memory_failcnt, Some(3));
        assert_eq!(s.oom_kills, Some(1));
        assert_eq!(
            (s.cpu_periods, s.cpu_throttled_periods, s.cpu_throttled_ns),
            (Some(10), Some(4), Some(2_000_000_000))
        );
        assert_eq!(s.psi, Psi::default(), "v1 has no PSI");
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
