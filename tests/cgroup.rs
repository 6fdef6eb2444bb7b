//! Pod cgroups against the real cgroupfs at /sys/fs/cgroup: create, apply,
//! place a process, remove. The same binary runs on this cgroup v1 (hybrid)
//! host and, through hack/test-cgroup-v2.sh, in a pure cgroup v2 guest; the
//! tests branch on `mode()` for file names. Needs root (CI is root); never
//! skips.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crius::sys::cgroup::{CgroupError, CgroupMode, Cgroups, Created, Resources};

const ROOT: &str = "/sys/fs/cgroup";

fn cgroups() -> Cgroups {
    assert!(
        nix::unistd::geteuid().is_root(),
        "tests/cgroup.rs writes to /sys/fs/cgroup: run it as root (CI is root)"
    );
    Cgroups::detect(Path::new(ROOT)).expect("detect the host's cgroup layout")
}

/// A fresh top-level name per test, so tests run in parallel and a crashed
/// run never collides with the next one.
fn unique_top() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "/crius-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes what a test created even when an assertion fails midway.
struct Cleanup<'a> {
    cg: &'a Cgroups,
    created: Created,
    child: Option<Child>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.cg.remove(&self.created);
    }
}

fn read(file: &Path) -> String {
    std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("read {}: {e}", file.display()))
        .trim()
        .to_string()
}

/// The directory among `dirs` that carries `file` (on v1, the hierarchy of
/// that controller, whatever its mount is named).
fn dir_with(dirs: &[PathBuf], file: &str) -> PathBuf {
    dirs.iter()
        .find(|d| d.join(file).exists())
        .unwrap_or_else(|| panic!("no dir among {dirs:?} has {file}"))
        .clone()
}

/// Starts `sleep` after it has put itself into every dir's cgroup.procs;
/// returns once the shell has done so (it says "in" on stdout).
fn sleeper_in(dirs: &[PathBuf]) -> Child {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"for d; do echo $$ > "$d/cgroup.procs" || exit 1; done; echo in; exec sleep 60"#)
        .arg("sh")
        .args(dirs)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sh (busybox or dash)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.trim() != "in" {
        let status = child.wait().unwrap();
        panic!("could not place a process into {dirs:?}: sh exited {status}");
    }
    child
}

#[test]
fn mode_matches_the_mounted_root() {
    let cg = cgroups();
    // Only a cgroup2 root has cgroup.controllers at its top.
    let unified = Path::new(ROOT).join("cgroup.controllers").exists();
    let want = if unified {
        CgroupMode::V2
    } else {
        CgroupMode::V1
    };
    assert_eq!(cg.mode(), want);
    // hack/test-cgroup-v2.sh sets this so a guest that came up with v1
    // cannot pass for a v2 run.
    if let Ok(expected) = std::env::var("CRIUS_EXPECT_CGROUP_MODE") {
        assert_eq!(format!("{:?}", cg.mode()).to_lowercase(), expected);
    }
}

#[test]
fn create_reports_both_levels_and_remove_is_idempotent() {
    let cg = cgroups();
    let top = unique_top();
    let path = format!("{top}/podX");
    let created = cg.create(&path).unwrap();
    let mut guard = Cleanup {
        cg: &cg,
        created: created.clone(),
        child: None,
    };

    let dirs = cg.dirs(&path);
    let tops = cg.dirs(&top);
    let mut expected: Vec<PathBuf> = tops.iter().chain(&dirs).cloned().collect();
    expected.sort();
    let mut got = created.dirs.clone();
    got.sort();
    assert_eq!(got, expected, "both levels in every hierarchy are ours");
    for d in &dirs {
        assert!(d.is_dir(), "{} missing", d.display());
    }
    match cg.mode() {
        CgroupMode::V1 => {
            for file in ["memory.limit_in_bytes", "cpu.shares", "pids.max"] {
                dir_with(&dirs, file);
            }
        }
        CgroupMode::V2 => {
            assert_eq!(dirs, [Path::new(ROOT).join(path.trim_start_matches('/'))]);
            for file in ["memory.max", "cpu.max", "pids.max"] {
                dir_with(&dirs, file);
            }
        }
    }

    // Creating again finds everything existing: nothing new is ours.
    assert_eq!(cg.create(&path).unwrap(), Created::default());

    cg.remove(&created).unwrap();
    for d in created.dirs.iter() {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    cg.remove(&created).expect("a second remove is fine");
    guard.created = Created::default();
}

#[test]
fn apply_writes_cpu_and_memory_limits() {
    let cg = cgroups();
    let path = format!("{}/podX", unique_top());
    let created = cg.create(&path).unwrap();
    let _guard = Cleanup {
        cg: &cg,
        created,
        child: None,
    };
    let r = Resources {
        cpu_period: Some(100_000),
        cpu_quota: Some(50_000),
        cpu_shares: Some(512),
        memory_limit: Some(64 << 20),
        ..Resources::default()
    };
    cg.apply(&path, &r).unwrap();
    let dirs = cg.dirs(&path);
    match cg.mode() {
        CgroupMode::V1 => {
            let cpu = dir_with(&dirs, "cpu.cfs_quota_us");
            assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
            assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
            assert_eq!(read(&cpu.join("cpu.shares")), "512");
            let mem = dir_with(&dirs, "memory.limit_in_bytes");
            assert_eq!(read(&mem.join("memory.limit_in_bytes")), "67108864");
        }
        CgroupMode::V2 => {
            let d = &dirs[0];
            assert_eq!(read(&d.join("cpu.max")), "50000 100000");
            assert_eq!(read(&d.join("cpu.weight")), "59");
            assert_eq!(read(&d.join("memory.max")), "67108864");
        }
    }

    // Unset fields are left alone; a period alone keeps the quota.
    let period_only = Resources {
        cpu_period: Some(200_000),
        ..Resources::default()
    };
    cg.apply(&path, &period_only).unwrap();
    match cg.mode() {
        CgroupMode::V1 => {
            let cpu = dir_with(&dirs, "cpu.cfs_quota_us");
            assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
            assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "200000");
            assert_eq!(read(&cpu.join("cpu.shares")), "512");
        }
        CgroupMode::V2 => {
            assert_eq!(read(&dirs[0].join("cpu.max")), "50000 200000");
            assert_eq!(read(&dirs[0].join("cpu.weight")), "59");
        }
    }

    // Unlimited again.
    let unlimited = Resources {
        cpu_quota: Some(-1),
        memory_limit: Some(-1),
        ..Resources::default()
    };
    cg.apply(&path, &unlimited).unwrap();
    match cg.mode() {
        CgroupMode::V1 => {
            let cpu = dir_with(&dirs, "cpu.cfs_quota_us");
            assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "-1");
        }
        CgroupMode::V2 => {
            assert_eq!(read(&dirs[0].join("cpu.max")), "max 200000");
            assert_eq!(read(&dirs[0].join("memory.max")), "max");
        }
    }
}

#[test]
fn cpuset_is_usable_and_applies() {
    let cg = cgroups();
    let path = format!("{}/podX", unique_top());
    let created = cg.create(&path).unwrap();
    let mut guard = Cleanup {
        cg: &cg,
        created,
        child: None,
    };
    let dirs = cg.dirs(&path);
    let cpuset = dir_with(&dirs, "cpuset.cpus");
    let effective = match cg.mode() {
        // v1: create copied the parent's, or no task could join.
        CgroupMode::V1 => read(&cpuset.join("cpuset.cpus")),
        CgroupMode::V2 => read(&cpuset.join("cpuset.cpus.effective")),
    };
    assert!(!effective.is_empty(), "{} has no cpus", cpuset.display());
    let child = sleeper_in(std::slice::from_ref(&cpuset));
    let pid = child.id().to_string();
    guard.child = Some(child);
    let procs = read(&cpuset.join("cgroup.procs"));
    assert!(procs.lines().any(|l| l == pid), "{pid} not in {procs}");

    let r = Resources {
        cpuset_cpus: Some("0".into()),
        cpuset_mems: Some("0".into()),
        ..Resources::default()
    };
    cg.apply(&path, &r).unwrap();
    assert_eq!(read(&cpuset.join("cpuset.cpus")), "0");
    assert_eq!(read(&cpuset.join("cpuset.mems")), "0");
}

#[test]
fn busy_cgroup_is_reported_then_removed_after_kill() {
    let cg = cgroups();
    let path = format!("{}/podX", unique_top());
    let created = cg.create(&path).unwrap();
    let dirs = cg.dirs(&path);
    let mut guard = Cleanup {
        cg: &cg,
        created: created.clone(),
        child: None,
    };
    let child = sleeper_in(&dirs);
    guard.child = Some(child);

    let err = cg.remove(&created).unwrap_err();
    let CgroupError::Busy { path: busy } = &err else {
        panic!("expected Busy, got {err}");
    };
    assert!(dirs.contains(busy), "{busy:?} is not one of {dirs:?}");
    let message = err.to_string();
    assert!(
        message.contains(&busy.display().to_string()),
        "{message} does not name the cgroup"
    );

    let mut child = guard.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    cg.remove(&created).unwrap();
    for d in &created.dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[test]
fn paths_escaping_the_tree_are_refused() {
    let cg = cgroups();
    for bad in ["/kubepods/../../etc", "/a/..", "/a\0b", "/"] {
        let err = cg.create(bad).unwrap_err();
        assert!(
            matches!(err, CgroupError::InvalidPath { .. }),
            "{bad:?}: {err}"
        );
        assert!(matches!(
            cg.apply(bad, &Resources::default()),
            Err(CgroupError::InvalidPath { .. })
        ));
        assert!(cg.dirs(bad).is_empty());
    }
}

#[test]
fn apply_to_a_missing_cgroup_names_it() {
    let cg = cgroups();
    let path = format!("{}/never-created", unique_top());
    let r = Resources {
        memory_limit: Some(64 << 20),
        ..Resources::default()
    };
    let err = cg.apply(&path, &r).unwrap_err();
    assert!(matches!(err, CgroupError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("never-created"), "{err}");
}

#[test]
fn a_created_parent_shared_with_another_pod_is_left_to_it() {
    let cg = cgroups();
    let top = unique_top();
    let a = cg.create(&format!("{top}/podA")).unwrap();
    let b = cg.create(&format!("{top}/podB")).unwrap();
    let _guard = Cleanup {
        cg: &cg,
        created: Created {
            dirs: a.dirs.iter().chain(&b.dirs).cloned().collect(),
        },
        child: None,
    };
    // Only podB's own dirs are B's: the parent already existed.
    assert_eq!(b.dirs, cg.dirs(&format!("{top}/podB")));

    // Removing A leaves the parent it made, since B lives below it.
    cg.remove(&a).unwrap();
    for d in cg.dirs(&format!("{top}/podA")) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    for d in cg.dirs(&top) {
        assert!(d.is_dir(), "{} removed under podB", d.display());
    }
    cg.remove(&b).unwrap();
}

/// The first cgroup2 mount in mountinfo: mount point, per-mount options,
/// superblock options.
fn cgroup2_mount() -> (String, Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("reading mountinfo");
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if post.first() == Some(&"cgroup2") {
            let split = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
            return (pre[4].to_owned(), split(pre[5]), split(post[2]));
        }
    }
    panic!("no cgroup2 mount on this host (a hybrid host mounts one at /sys/fs/cgroup/unified)");
}

/// `runtime.cgroup_favor_dynmods`: the kernel option is on afterwards
/// (Linux >= 6.0) and every other option of the mount is as it was.
#[test]
fn favordynmods_is_turned_on_keeping_the_other_options() {
    use crius::sys::cgroup::{Dynmods, favor_dynmods};
    let _ = cgroups();
    let (mount_point, mount_opts, super_opts) = cgroup2_mount();
    let done = favor_dynmods().expect("turning on favordynmods (needs Linux >= 6.0)");
    let (after_point, after_mount, after_super) = cgroup2_mount();
    assert_eq!(after_point, mount_point);
    assert!(
        after_super.iter().any(|o| o == "favordynmods"),
        "favordynmods not on after {done:?}: {after_super:?}"
    );
    for o in super_opts.iter().filter(|o| *o != "favordynmods") {
        assert!(after_super.contains(o), "option {o} lost: {after_super:?}");
    }
    assert_eq!(after_mount, mount_opts, "per-mount options changed");
    assert_eq!(
        favor_dynmods(),
        Ok(Dynmods::AlreadyOn(PathBuf::from(&mount_point)))
    );
}
