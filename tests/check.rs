//! `crius check [--repair]` against a real daemon's state: it refuses while
//! the daemon runs, finds nothing in a clean state, finds leaks the test
//! plants (a stray rootfs mount with its bundle, a writable layer, a pinned
//! network namespace in a pod dir, a container cgroup holding a process, a
//! monitor, runtime state, a monitor socket, a CNI cache, a layer dir and a
//! blob, none recorded), removes them with `--repair` (killing the
//! processes), and never touches the recorded pod and its running
//! container.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::containers::*;
use common::run_crius;
use k8s_cri::v1::*;

const LEAKED_CTR: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";
const LEAKED_UPPER: &str = "beef0000beef0000beef0000beef0000beef0000beef0000beef0000beef0000";
const LEAKED_POD: &str = "0dd0dd000dd0dd000dd0dd000dd0dd000dd0dd000dd0dd000dd0dd000dd0dd00";
const LEAKED_CG: &str = "cafe0000cafe0000cafe0000cafe0000cafe0000cafe0000cafe0000cafe0000";
const LEAKED_LAYER: &str = "1a1e0000aaaa0000bbbb0000cccc0000dddd0000eeee0000ffff000011110000";
const LEAKED_MON: &str = "5a5a0000aaaa0000bbbb0000cccc0000dddd0000eeee0000ffff000011110000";
const LEAKED_BLOB: &str = "b10b0000aaaa0000bbbb0000cccc0000dddd0000eeee0000ffff000011110000";

fn check(config: &Path, repair: bool) -> (Output, String) {
    let cfg = config.display().to_string();
    let mut args = vec!["check", "--config", cfg.as_str()];
    if repair {
        args.push("--repair");
    }
    let out = run_crius(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

fn mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let p = path.display().to_string();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

fn run(cmd: &mut Command) {
    let st = cmd
        .status()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e} (apt-get install util-linux)"));
    assert!(st.success(), "{cmd:?}: {st}");
}

/// The cgroup v1 memory hierarchy, or the v2 root.
fn cgroup_base() -> PathBuf {
    let v1 = PathBuf::from("/sys/fs/cgroup/memory");
    if v1.is_dir() {
        v1
    } else {
        PathBuf::from("/sys/fs/cgroup")
    }
}

fn alive(pid: u32) -> bool {
    // A zombie (not reaped yet by this test) counts as dead.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_finds_and_repairs_planted_leaks_and_keeps_recorded_objects() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("kept").await;
    let ctr_id = env
        .run(&pod, &pcfg, ctr("kept", &bb, &["sleep", "3600"]))
        .await;
    let config = env.daemon.config_path().to_owned();
    let run_dir = env.daemon.run_dir().to_owned();
    let state_dir = env.daemon.state_dir().to_owned();

    // While the daemon runs, the store is its: refused, with the reason.
    let (out, text) = check(&config, true);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("running"), "{text}");

    let status = tokio::task::block_in_place(|| env.daemon.stop());
    assert!(status.success(), "log:\n{}", env.daemon.log());

    // A daemon's own state is not a leak.
    let (out, text) = check(&config, false);
    assert!(out.status.success(), "clean state reported leaks:\n{text}");
    assert!(text.contains("no leaks"), "{text}");

    // Plant leaks.
    let bundle = run_dir.join("containers").join(LEAKED_CTR);
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(bundle.join("config.json"), "{}").unwrap();
    run(Command::new("mount").args(["-t", "tmpfs", "leak", rootfs.to_str().unwrap()]));
    let upper = state_dir.join("containers").join(LEAKED_UPPER);
    std::fs::create_dir_all(upper.join("upper")).unwrap();
    std::fs::write(upper.join("upper/file"), "x").unwrap();
    let pod_dir = run_dir.join("pods").join(LEAKED_POD);
    let pin = pod_dir.join("ns").join("net");
    std::fs::create_dir_all(pin.parent().unwrap()).unwrap();
    std::fs::write(&pin, "").unwrap();
    run(Command::new("mount").args(["--bind", "/proc/self/ns/net", pin.to_str().unwrap()]));
    let cg = cgroup_base().join("crius").join(LEAKED_CG);
    std::fs::create_dir_all(&cg).unwrap_or_else(|e| panic!("creating {}: {e}", cg.display()));
    let mut sleeper = Command::new("sleep").arg("600").spawn().expect("sleep");
    std::fs::write(cg.join("cgroup.procs"), sleeper.id().to_string()).unwrap();
    let layer = state_dir.join("layers").join(LEAKED_LAYER);
    std::fs::create_dir_all(layer.join("etc")).unwrap();
    let blob = state_dir.join("blobs/sha256").join(LEAKED_BLOB);
    std::fs::write(&blob, "{}").unwrap();
    let runtime_state = run_dir.join("runtime").join(LEAKED_CTR);
    std::fs::create_dir_all(&runtime_state).unwrap();
    let socket = run_dir
        .join("s")
        .join(format!("{}.sock", &LEAKED_CTR[..32]));
    std::fs::write(&socket, "").unwrap();
    let cni_cache = state_dir.join("cni").join(format!("{LEAKED_POD}.json"));
    std::fs::create_dir_all(cni_cache.parent().unwrap()).unwrap();
    std::fs::write(&cni_cache, "{}").unwrap();
    // A monitor of an unrecorded container, as the zygote forks them: task
    // name `crius-monitor` (a copy of sleep so named), stderr its bundle's
    // monitor.log.
    let mon_bundle = run_dir.join("containers").join(LEAKED_MON);
    std::fs::create_dir_all(&mon_bundle).unwrap();
    let fake = env.daemon.dir().join("crius-monitor");
    std::fs::copy("/bin/sleep", &fake).expect("copying /bin/sleep (apt-get install coreutils)");
    let mut monitor = Command::new(&fake)
        .arg("600")
        .stderr(std::fs::File::create(mon_bundle.join("monitor.log")).unwrap())
        .spawn()
        .expect("fake monitor");

    let (out, text) = check(&config, false);
    assert_eq!(out.status.code(), Some(1), "leaks exit non-zero:\n{text}");
    for (kind, path) in [
        ("mount", &rootfs),
        ("bundle", &bundle),
        ("writable-layer", &upper),
        ("namespace", &pin),
        ("pod-dir", &pod_dir),
        ("cgroup", &cg),
        ("layer-dir", &layer),
        ("blob", &blob),
        ("runtime-state", &runtime_state),
        ("socket", &socket),
        ("cni-cache", &cni_cache),
        ("monitor", &mon_bundle),
    ] {
        let line = format!("{kind:<14} {}", path.display());
        assert!(text.contains(&line), "missing {line:?} in:\n{text}");
    }
    assert!(
        !text.contains(&ctr_id) && !text.contains(&pod),
        "recorded objects reported:\n{text}"
    );
    // Reporting changed nothing.
    assert!(mounted(&rootfs) && mounted(&pin) && cg.is_dir() && alive(sleeper.id()));
    assert!(alive(monitor.id()));

    let (out, text) = check(&config, true);
    assert!(out.status.success(), "repair:\n{text}");
    let _ = sleeper.wait();
    let _ = monitor.wait();
    assert!(!mounted(&rootfs) && !mounted(&pin), "{text}");
    for p in [
        &bundle,
        &upper,
        &pod_dir,
        &cg,
        &layer,
        &blob,
        &runtime_state,
        &socket,
        &cni_cache,
        &mon_bundle,
    ] {
        assert!(
            !p.exists(),
            "{} still there after repair:\n{text}",
            p.display()
        );
    }

    let (out, text) = check(&config, false);
    assert!(out.status.success(), "second check not clean:\n{text}");

    // The recorded pod and container were left as they were: the daemon
    // comes back with the container running and its rootfs mounted.
    assert!(mounted(
        &run_dir.join("containers").join(&ctr_id).join("rootfs")
    ));
    env.daemon.launch();
    env.rt = env.daemon.runtime_client().await;
    let st = env.status(&ctr_id).await;
    assert_eq!(st.state, ContainerState::ContainerRunning as i32, "{st:?}");
    let p = env
        .rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner()
        .status
        .expect("status");
    assert_eq!(p.state, PodSandboxState::SandboxReady as i32, "{p:?}");
}
