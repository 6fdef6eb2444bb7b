//! Container resources through the real daemon, read back from the real
//! cgroupfs: memory limit → OOMKilled, CPU and memory limits in the
//! container's cgroup (under the pod's `cgroup_parent`), UpdateContainerResources
//! (applied, reported, all or nothing, NotFound), oom_score_adj and the v2-only
//! `unified` map. The same binary runs on this cgroup v1 (hybrid) host and,
//! through hack/test-cgroup-v2.sh, in a pure cgroup v2 guest; the tests
//! branch on the mounted layout for file names and never skip.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::containers::*;
use common::pods::remove_pod;
use k8s_cri::v1::*;

const MIB: i64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    V1,
    V2,
}

/// The host's cgroup layout: only a cgroup2 root has cgroup.controllers.
fn layout() -> Layout {
    assert!(
        nix::unistd::geteuid().is_root(),
        "tests/container_resources.rs runs containers and reads cgroupfs: run it as root (CI is root)"
    );
    let got = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        Layout::V2
    } else {
        Layout::V1
    };
    // hack/test-cgroup-v2.sh sets this so a guest that came up with v1
    // cannot pass for a v2 run.
    if let Ok(want) = std::env::var("CRIUS_EXPECT_CGROUP_MODE") {
        assert_eq!(format!("{got:?}").to_lowercase(), want, "cgroup layout");
    }
    got
}

/// Where a cgroup's control file lives on the host: v2 `/sys/fs/cgroup/<path>`,
/// v1 the mount of the hierarchy that carries `controller` (from mountinfo,
/// whatever its directory is named).
fn cg_dir(l: Layout, controller: &str, path: &str) -> PathBuf {
    let rel = path.trim_start_matches('/');
    match l {
        Layout::V2 => Path::new("/sys/fs/cgroup").join(rel),
        Layout::V1 => {
            let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            let mount = info
                .lines()
                .find_map(|line| {
                    let (left, right) = line.split_once(" - ")?;
                    let mut r = right.split(' ');
                    if r.next()? != "cgroup" {
                        return None;
                    }
                    let opts = r.nth(1)?;
                    opts.split(',')
                        .any(|o| o == controller)
                        .then(|| left.split(' ').nth(4).map(str::to_owned))?
                })
                .unwrap_or_else(|| {
                    panic!("no cgroup v1 hierarchy with the {controller} controller is mounted")
                });
            Path::new(&mount).join(rel)
        }
    }
}

fn read_cg(l: Layout, controller: &str, path: &str, file: &str) -> String {
    let f = cg_dir(l, controller, path).join(file);
    std::fs::read_to_string(&f)
        .unwrap_or_else(|e| panic!("read {}: {e}", f.display()))
        .trim()
        .to_owned()
}

/// CPU shares → v2 `cpu.weight` as runc (opencontainers/cgroups ≥ 0.0.5),
/// youki's libcgroups and kubelet convert them (1024 → 100, the v2 default).
fn weight_of(shares: u64) -> u64 {
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

/// The CPUs online on this machine (`0-1`, `0`), from sysfs.
fn online_cpus() -> String {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .unwrap()
        .trim()
        .to_owned()
}

/// The cgroup parent of the test's pod `name`: unique per test process.
fn parent_path(name: &str) -> String {
    format!("/crius-res-{}-{name}", std::process::id())
}

/// Removes a pod's cgroup parent (and the container cgroups in it) if a
/// failed test left them behind; declared before the [`Env`], so it runs
/// after the daemon and its containers are gone. A passing test has
/// removed its pod already and this finds nothing.
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        let rel = self.0.trim_start_matches('/');
        let roots: Vec<PathBuf> = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            vec![PathBuf::from("/sys/fs/cgroup")]
        } else {
            std::fs::read_dir("/sys/fs/cgroup")
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default()
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        for root in roots {
            let top = root.join(rel);
            while top.exists() && Instant::now() < deadline {
                let children: Vec<PathBuf> = std::fs::read_dir(&top)
                    .map(|d| {
                        d.flatten()
                            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                            .map(|e| e.path())
                            .collect()
                    })
                    .unwrap_or_default();
                for c in &children {
                    let _ = std::fs::remove_dir(c);
                }
                if std::fs::remove_dir(&top).is_err() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

/// A pod config whose cgroup_parent is a fresh, test-private cgroup.
fn pod_with_parent(env: &Env, name: &str) -> PodSandboxConfig {
    let mut cfg = env.pod_config(name);
    cfg.linux.get_or_insert_with(Default::default).cgroup_parent = parent_path(name);
    cfg
}

async fn run_pod_with_parent(env: &mut Env, name: &str) -> (String, PodSandboxConfig) {
    let cfg = pod_with_parent(env, name);
    let id = common::pods::run_pod_ok(&mut env.rt, cfg.clone()).await;
    (id, cfg)
}

/// The container's pid (host) and cgroup path, from verbose ContainerStatus;
/// the path is checked against the process's own /proc/<pid>/cgroup and must
/// sit under the pod's cgroup_parent.
async fn pid_and_cgroup(
    env: &mut Env,
    id: &str,
    pod_cfg: &PodSandboxConfig,
    l: Layout,
) -> (u32, String) {
    let (s, info) = env.status_full(id, true).await;
    assert_eq!(
        s.state,
        ContainerState::ContainerRunning as i32,
        "container {id} is not running: {s:?}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(info.get("info").expect("verbose info")).unwrap();
    let pid = doc["pid"].as_u64().expect("pid in verbose info") as u32;
    let path = doc["runtimeSpec"]["linux"]["cgroupsPath"]
        .as_str()
        .expect("cgroupsPath in the runtime spec")
        .to_owned();
    let parent = &pod_cfg.linux.as_ref().unwrap().cgroup_parent;
    assert_eq!(
        path,
        format!("{parent}/{id}"),
        "container cgroup is not <pod cgroup_parent>/<id>"
    );
    // Where the kernel says the process is.
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let inside = |line: &str| {
        let mut f = line.splitn(3, ':');
        let (ctrls, p) = (f.nth(1).unwrap_or(""), f.next().unwrap_or(""));
        p == path
            && match l {
                // v2: the one "0::<path>" line.
                Layout::V2 => ctrls.is_empty(),
                Layout::V1 => ctrls.split(',').any(|c| c == "memory"),
            }
    };
    assert!(
        own.lines().any(inside),
        "/proc/{pid}/cgroup = {own:?}, want the process in {path} ({l:?})"
    );
    (pid, path)
}

/// Waits for `text` to show up in the container's log.
async fn wait_log(env: &mut Env, id: &str, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = env.status(id).await;
        let log = log_text(Path::new(&s.log_path));
        if log.contains(text) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "{text:?} not in the log of {id} after 30s; state {}, log {log:?}",
            s.state
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The resources ContainerStatus reports.
async fn reported(env: &mut Env, id: &str) -> LinuxContainerResources {
    env.status(id)
        .await
        .resources
        .and_then(|r| r.linux)
        .expect("ContainerStatus.resources.linux")
}

async fn update(env: &mut Env, id: &str, r: LinuxContainerResources) -> Result<(), tonic::Status> {
    env.rt
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: id.into(),
            linux: Some(r),
            windows: None,
            annotations: Default::default(),
        })
        .await
        .map(drop)
}

async fn cleanup(env: &mut Env, pod: &str) {
    remove_pod(&mut env.rt, pod)
        .await
        .unwrap_or_else(|e| panic!("RemovePodSandbox {pod}: {e:?}"));
}

/// The limits a test sets, as the files on the host should show them.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    quota_period: String,
    weight_or_shares: String,
    cpus: String,
    memory: String,
    swap: String,
}

fn seen(l: Layout, path: &str) -> Seen {
    match l {
        Layout::V1 => Seen {
            quota_period: format!(
                "{} {}",
                read_cg(l, "cpu", path, "cpu.cfs_quota_us"),
                read_cg(l, "cpu", path, "cpu.cfs_period_us")
            ),
            weight_or_shares: read_cg(l, "cpu", path, "cpu.shares"),
            cpus: read_cg(l, "cpuset", path, "cpuset.cpus"),
            memory: read_cg(l, "memory", path, "memory.limit_in_bytes"),
            swap: read_cg(l, "memory", path, "memory.memsw.limit_in_bytes"),
        },
        Layout::V2 => Seen {
            quota_period: read_cg(l, "cpu", path, "cpu.max"),
            weight_or_shares: read_cg(l, "cpu", path, "cpu.weight"),
            cpus: read_cg(l, "cpuset", path, "cpuset.cpus"),
            memory: read_cg(l, "memory", path, "memory.max"),
            swap: read_cg(l, "memory", path, "memory.swap.max"),
        },
    }
}

/// What [`seen`] should read for CRI resources `r` (all fields set).
fn expected(l: Layout, r: &LinuxContainerResources) -> Seen {
    match l {
        Layout::V1 => Seen {
            quota_period: format!("{} {}", r.cpu_quota, r.cpu_period),
            weight_or_shares: r.cpu_shares.to_string(),
            cpus: r.cpuset_cpus.clone(),
            memory: r.memory_limit_in_bytes.to_string(),
            swap: r.memory_swap_limit_in_bytes.to_string(),
        },
        Layout::V2 => Seen {
            quota_period: format!("{} {}", r.cpu_quota, r.cpu_period),
            weight_or_shares: weight_of(r.cpu_shares as u64).to_string(),
            cpus: r.cpuset_cpus.clone(),
            memory: r.memory_limit_in_bytes.to_string(),
            // v2 swap is separate from memory; CRI's (like v1's) is the sum.
            swap: (r.memory_swap_limit_in_bytes - r.memory_limit_in_bytes).to_string(),
        },
    }
}

/// v1 needs swap accounting for memsw files; fail naming the fix, not skip.
fn need_swap_accounting(l: Layout) {
    if l == Layout::V1 {
        let f = cg_dir(l, "memory", "/").join("memory.memsw.limit_in_bytes");
        assert!(
            f.exists(),
            "{} missing: boot the kernel with swapaccount=1 (memory_swap_limit_in_bytes needs it)",
            f.display()
        );
    }
}

fn limits(quota: i64, period: i64, shares: i64, cpus: &str, mem: i64) -> LinuxContainerResources {
    LinuxContainerResources {
        cpu_period: period,
        cpu_quota: quota,
        cpu_shares: shares,
        cpuset_cpus: cpus.into(),
        memory_limit_in_bytes: mem,
        memory_swap_limit_in_bytes: mem * 2,
        ..Default::default()
    }
}

#[tokio::test]
async fn memory_limit_oom_kills_with_reason_oomkilled() {
    let l = layout();
    let _leftovers = Leftovers(parent_path("oom"));
    let mut env = Env::new("").await;
    let (pod, pcfg) = run_pod_with_parent(&mut env, "oom").await;
    // dd's one 256 MiB block buffer is filled from /dev/zero: 256 MiB of
    // anonymous memory against a 32 MiB limit with no swap.
    let mut cfg = sh(
        "hog",
        &env.busybox.clone(),
        "exec dd if=/dev/zero of=/dev/null bs=256M count=4",
    );
    let r = resources(&mut cfg);
    r.memory_limit_in_bytes = 32 * MIB;
    r.memory_swap_limit_in_bytes = 32 * MIB;
    let (s, log) = env.run_to_exit(&pod, &pcfg, cfg).await;
    assert_eq!(s.exit_code, 137, "status {s:?}, log {log:?} ({l:?})");
    assert_eq!(s.reason, "OOMKilled", "status {s:?}, log {log:?}");

    // The same work without a limit completes: the kill above was the limit.
    let cfg = sh(
        "fits",
        &env.busybox.clone(),
        "dd if=/dev/zero of=/dev/null bs=1M count=64 2>/dev/null; echo survived",
    );
    let (s, log) = env.run_to_exit(&pod, &pcfg, cfg).await;
    assert_eq!(
        (s.exit_code, s.reason.as_str()),
        (0, "Completed"),
        "{log:?}"
    );
    // A plain non-zero exit is not taken for an OOM kill.
    let (s, _) = env
        .run_to_exit(&pod, &pcfg, sh("die", &env.busybox.clone(), "kill -9 $$"))
        .await;
    assert_eq!((s.exit_code, s.reason.as_str()), (137, "Error"));
    cleanup(&mut env, &pod).await;
}

#[tokio::test]
async fn cpu_and_memory_limits_are_in_the_container_cgroup() {
    let l = layout();
    need_swap_accounting(l);
    let _leftovers = Leftovers(parent_path("limits"));
    let mut env = Env::new("").await;
    let (pod, pcfg) = run_pod_with_parent(&mut env, "limits").await;
    let want = limits(50_000, 100_000, 512, "0", 64 * MIB);
    // On v2 the container sees its own cgroup at /sys/fs/cgroup (cgroup
    // namespace); on v1 crius mounts an empty tmpfs there (docs), so the
    // host side is the check.
    let script = match l {
        Layout::V2 => {
            "cd /sys/fs/cgroup && for f in cpu.max cpu.weight cpuset.cpus memory.max memory.swap.max; do echo \"$f=$(cat $f)\"; done; echo ready; exec sleep 3600"
        }
        Layout::V1 => "echo ready; exec sleep 3600",
    };
    let mut cfg = sh("limited", &env.busybox.clone(), script);
    *resources(&mut cfg) = want.clone();
    let id = env.run(&pod, &pcfg, cfg).await;
    let log = wait_log(&mut env, &id, "ready").await;
    let (_, path) = pid_and_cgroup(&mut env, &id, &pcfg, l).await;
    let exp = expected(l, &want);
    assert_eq!(seen(l, &path), exp, "host side of {path}");
    if l == Layout::V2 {
        for (file, value) in [
            ("cpu.max", &exp.quota_period),
            ("cpu.weight", &exp.weight_or_shares),
            ("cpuset.cpus", &exp.cpus),
            ("memory.max", &exp.memory),
            ("memory.swap.max", &exp.swap),
        ] {
            let line = format!("{file}={value}\n");
            assert!(log.contains(&line), "inside: want {line:?} in {log:?}");
        }
    }
    let r = reported(&mut env, &id).await;
    assert_eq!(r, want, "ContainerStatus.resources");

    // Unset fields are left unlimited / inherited.
    let id2 = env
        .run(
            &pod,
            &pcfg,
            sh("free", &env.busybox.clone(), "echo ready; exec sleep 3600"),
        )
        .await;
    wait_log(&mut env, &id2, "ready").await;
    let (_, path2) = pid_and_cgroup(&mut env, &id2, &pcfg, l).await;
    let s = seen(l, &path2);
    match l {
        Layout::V1 => {
            assert!(s.quota_period.starts_with("-1 "), "{s:?}");
            assert_eq!(s.weight_or_shares, "1024");
            assert!(s.memory.parse::<u64>().unwrap() > 1 << 40, "{s:?}");
        }
        Layout::V2 => {
            assert!(s.quota_period.starts_with("max "), "{s:?}");
            assert_eq!(s.weight_or_shares, "100");
            assert_eq!(s.memory, "max");
        }
    }
    env.stop(&id, 0).await.unwrap();
    env.stop(&id2, 0).await.unwrap();
    cleanup(&mut env, &pod).await;
}

#[tokio::test]
async fn update_resources_applies_reports_and_is_all_or_nothing() {
    let l = layout();
    need_swap_accounting(l);
    let _leftovers = Leftovers(parent_path("upd"));
    let mut env = Env::new("").await;
    let (pod, pcfg) = run_pod_with_parent(&mut env, "upd").await;
    let first = limits(50_000, 100_000, 512, "0", 64 * MIB);
    let mut cfg = sh("upd", &env.busybox.clone(), "echo ready; exec sleep 3600");
    *resources(&mut cfg) = first.clone();
    let id = env.run(&pod, &pcfg, cfg).await;
    wait_log(&mut env, &id, "ready").await;
    let (pid, path) = pid_and_cgroup(&mut env, &id, &pcfg, l).await;
    assert_eq!(seen(l, &path), expected(l, &first));

    // Every field changes, the memory limit upwards past the old swap
    // limit (v1 has to write memsw first).
    let second = limits(20_000, 50_000, 256, &online_cpus(), 160 * MIB);
    update(&mut env, &id, second.clone())
        .await
        .unwrap_or_else(|e| panic!("UpdateContainerResources: {e:?}"));
    assert_eq!(seen(l, &path), expected(l, &second), "after the update");
    assert_eq!(reported(&mut env, &id).await, second);
    // And back down (v1: memory before memsw).
    let third = limits(30_000, 100_000, 2048, "0", 48 * MIB);
    update(&mut env, &id, third.clone())
        .await
        .unwrap_or_else(|e| panic!("UpdateContainerResources down: {e:?}"));
    assert_eq!(
        seen(l, &path),
        expected(l, &third),
        "after the second update"
    );
    assert_eq!(reported(&mut env, &id).await, third);

    // A CPU this machine does not have: the kernel refuses the cpuset,
    // which crius writes last; the other values must not stay changed.
    let bad = LinuxContainerResources {
        cpuset_cpus: "1023".into(),
        ..limits(70_000, 200_000, 4096, "", 96 * MIB)
    };
    let err = update(&mut env, &id, bad).await.unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);
    assert!(
        err.message().contains("cpuset.cpus") && err.message().contains("1023"),
        "error should name the file and value: {err:?}"
    );
    assert_eq!(
        seen(l, &path),
        expected(l, &third),
        "a failed update changed values"
    );
    assert_eq!(reported(&mut env, &id).await, third);
    // The container still runs in the same cgroup.
    assert_eq!(
        pid_and_cgroup(&mut env, &id, &pcfg, l).await,
        (pid, path.clone())
    );

    // A partial update of a container created without some limits must
    // also roll back the ones it never had.
    let id2 = env
        .run(
            &pod,
            &pcfg,
            sh("bare", &env.busybox.clone(), "echo ready; exec sleep 3600"),
        )
        .await;
    wait_log(&mut env, &id2, "ready").await;
    let (_, path2) = pid_and_cgroup(&mut env, &id2, &pcfg, l).await;
    let before = seen(l, &path2);
    let bad = LinuxContainerResources {
        cpuset_cpus: "1023".into(),
        ..limits(70_000, 200_000, 4096, "", 96 * MIB)
    };
    update(&mut env, &id2, bad).await.unwrap_err();
    assert_eq!(
        seen(l, &path2),
        before,
        "a failed update changed unset values"
    );
    assert_eq!(
        reported(&mut env, &id2).await,
        LinuxContainerResources::default()
    );

    // Invalid values are refused before anything is written.
    let err = update(
        &mut env,
        &id,
        LinuxContainerResources {
            cpu_period: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert_eq!(seen(l, &path), expected(l, &third));

    // Unknown container.
    let err = update(&mut env, &"f".repeat(64), third.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");

    env.stop(&id, 0).await.unwrap();
    env.stop(&id2, 0).await.unwrap();
    cleanup(&mut env, &pod).await;
}

/// On v1 the kernel refuses a memory limit below what the cgroup holds and
/// cannot reclaim (no swap); on v2 the same write OOM-kills instead, so
/// this is a v1 check and on v2 the update must have killed the container.
#[tokio::test]
async fn update_below_usage() {
    let l = layout();
    let _leftovers = Leftovers(parent_path("usage"));
    let mut env = Env::new("").await;
    let (pod, pcfg) = run_pod_with_parent(&mut env, "usage").await;
    // 24 MB of shell variable, resident, no swap to move it to.
    let mut cfg = sh(
        "holder",
        &env.busybox.clone(),
        "x=$(head -c 24000000 /dev/zero | tr '\\0' a); echo ready; sleep 3600; echo ${#x}",
    );
    let start = LinuxContainerResources {
        memory_limit_in_bytes: 128 * MIB,
        memory_swap_limit_in_bytes: 128 * MIB,
        cpu_quota: 40_000,
        cpu_period: 100_000,
        ..Default::default()
    };
    *resources(&mut cfg) = start.clone();
    let id = env.run(&pod, &pcfg, cfg).await;
    wait_log(&mut env, &id, "ready").await;
    let (_, path) = pid_and_cgroup(&mut env, &id, &pcfg, l).await;
    let low = LinuxContainerResources {
        memory_limit_in_bytes: 4 * MIB,
        memory_swap_limit_in_bytes: 4 * MIB,
        cpu_quota: 80_000,
        cpu_period: 100_000,
        ..Default::default()
    };
    let usage_file = match l {
        Layout::V1 => "memory.usage_in_bytes",
        Layout::V2 => "memory.current",
    };
    let usage: i64 = read_cg(l, "memory", &path, usage_file).parse().unwrap();
    assert!(usage > 20_000_000, "the holder uses only {usage} bytes");
    let res = update(&mut env, &id, low).await;
    match l {
        Layout::V1 => {
            let err = res.err().unwrap_or_else(|| {
                panic!(
                    "a limit below {usage} bytes in use was taken; now {} in use",
                    read_cg(l, "memory", &path, usage_file)
                )
            });
            assert!(
                err.message().contains("memory"),
                "error should name the memory file: {err:?}"
            );
            assert_eq!(
                read_cg(l, "memory", &path, "memory.limit_in_bytes"),
                (128 * MIB).to_string()
            );
            assert_eq!(
                read_cg(l, "cpu", &path, "cpu.cfs_quota_us"),
                "40000",
                "the CPU quota written before the refused memory limit stayed"
            );
            assert_eq!(reported(&mut env, &id).await, start);
            let s = env.status(&id).await;
            assert_eq!(s.state, ContainerState::ContainerRunning as i32);
        }
        Layout::V2 => {
            // The kernel takes the limit and OOM-kills the holder.
            res.unwrap_or_else(|e| panic!("v2 memory.max below usage: {e:?}"));
            let s = env.wait_exited(&id, 30).await;
            assert_eq!((s.exit_code, s.reason.as_str()), (137, "OOMKilled"));
        }
    }
    env.stop(&id, 0).await.unwrap();
    cleanup(&mut env, &pod).await;
}

/// Whether `pid` has CAP_SYS_RESOURCE (bit 24) in its effective set.
fn has_sys_resource(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .expect("CapEff")
        .trim();
    u64::from_str_radix(hex, 16).unwrap() & (1 << 24) != 0
}

fn oom_score_adj(pid: u32) -> i64 {
    std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn oom_score_adj_below_our_own_is_clamped_above_is_applied() {
    let l = layout();
    // Give the daemon (which inherits it) a positive oom_score_adj, so a
    // lower request is distinguishable from "not applied". Raising is
    // always allowed; the other tests of this binary do not care.
    if oom_score_adj(std::process::id()) < 100 {
        std::fs::write("/proc/self/oom_score_adj", "100").unwrap();
    }
    let _leftovers = Leftovers(parent_path("oomadj"));
    let mut env = Env::new("").await;
    let daemon = env.daemon.pid().expect("daemon pid");
    let own = oom_score_adj(daemon);
    assert!(own >= 100, "daemon oom_score_adj {own}");
    let privileged = has_sys_resource(daemon);
    let (pod, pcfg) = run_pod_with_parent(&mut env, "oomadj").await;

    let mut low = sh("low", &env.busybox.clone(), "echo ready; exec sleep 3600");
    resources(&mut low).oom_score_adj = own - 90;
    let low = env.run(&pod, &pcfg, low).await;
    let mut high = sh("high", &env.busybox.clone(), "echo ready; exec sleep 3600");
    resources(&mut high).oom_score_adj = 777;
    let high = env.run(&pod, &pcfg, high).await;
    let (pl, _) = pid_and_cgroup(&mut env, &low, &pcfg, l).await;
    let (ph, _) = pid_and_cgroup(&mut env, &high, &pcfg, l).await;
    let want_low = if privileged { own - 90 } else { own };
    assert_eq!(
        oom_score_adj(pl),
        want_low,
        "requested {} with daemon at {own} (CAP_SYS_RESOURCE: {privileged})",
        own - 90
    );
    assert_eq!(oom_score_adj(ph), 777);
    // Neither is an error: both run, and the status reports what applies.
    for (id, want) in [(&low, want_low), (&high, 777)] {
        let s = env.status(id).await;
        assert_eq!(s.state, ContainerState::ContainerRunning as i32);
        let reported = s.resources.and_then(|r| r.linux).map(|l| l.oom_score_adj);
        assert_eq!(reported, Some(want), "reported oom_score_adj");
    }
    env.stop(&low, 0).await.unwrap();
    env.stop(&high, 0).await.unwrap();
    cleanup(&mut env, &pod).await;
}

#[tokio::test]
async fn unified_is_v2_only() {
    let l = layout();
    let _leftovers = Leftovers(parent_path("unified"));
    let mut env = Env::new("").await;
    let (pod, pcfg) = run_pod_with_parent(&mut env, "unified").await;
    let mut cfg = sh("uni", &env.busybox.clone(), "echo ready; exec sleep 3600");
    resources(&mut cfg)
        .unified
        .insert("memory.high".into(), (40 * MIB).to_string());
    match l {
        Layout::V1 => {
            let err = env.create(&pod, &pcfg, cfg).await.unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
            assert!(
                err.message().contains("unified") && err.message().contains("v2"),
                "{err:?}"
            );
            // Nor may an update bring it in.
            let id = env
                .run(
                    &pod,
                    &pcfg,
                    sh("plain", &env.busybox.clone(), "echo ready; exec sleep 3600"),
                )
                .await;
            wait_log(&mut env, &id, "ready").await;
            let err = update(
                &mut env,
                &id,
                LinuxContainerResources {
                    unified: [("memory.high".to_string(), "1000000".to_string())].into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
            assert!(err.message().contains("unified"), "{err:?}");
            env.stop(&id, 0).await.unwrap();
        }
        Layout::V2 => {
            let id = env.run(&pod, &pcfg, cfg).await;
            wait_log(&mut env, &id, "ready").await;
            let (_, path) = pid_and_cgroup(&mut env, &id, &pcfg, l).await;
            assert_eq!(
                read_cg(l, "memory", &path, "memory.high"),
                (40 * MIB).to_string()
            );
            update(
                &mut env,
                &id,
                LinuxContainerResources {
                    unified: [("memory.high".to_string(), (24 * MIB).to_string())].into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("update unified: {e:?}"));
            assert_eq!(
                read_cg(l, "memory", &path, "memory.high"),
                (24 * MIB).to_string()
            );
            assert_eq!(
                reported(&mut env, &id).await.unified.get("memory.high"),
                Some(&(24 * MIB).to_string())
            );
            env.stop(&id, 0).await.unwrap();
        }
    }
    cleanup(&mut env, &pod).await;
}
