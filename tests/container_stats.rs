//! ContainerStats and ListContainerStats through the real daemon: CPU
//! time rising and a plausible rate for a busy loop, memory near what a
//! process holds, writable-layer bytes after writing a file, filters.

mod common;

use std::time::Duration;

use common::containers::*;
use k8s_cri::v1::*;
use tonic::Code;

async fn stats(env: &mut Env, id: &str) -> ContainerStats {
    env.rt
        .container_stats(ContainerStatsRequest {
            container_id: id.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("ContainerStats {id}: {e:?}"))
        .into_inner()
        .stats
        .expect("stats")
}

fn v(x: &Option<UInt64Value>) -> u64 {
    x.as_ref().map(|v| v.value).unwrap_or(0)
}

#[tokio::test]
async fn cpu_memory_writable_layer_and_filters() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("stats").await;
    let busy = env
        .run(&pod, &pcfg, sh("busy", &bb, "while :; do :; done"))
        .await;
    // dd holds its 64 MiB buffer (read from /dev/zero, so touched) while
    // blocked writing into a pipe nobody reads.
    let hog = env
        .run(
            &pod,
            &pcfg,
            sh(
                "hog",
                &bb,
                "dd if=/dev/zero of=/big bs=1M count=8 2>/dev/null; dd if=/dev/zero bs=64M count=1 2>/dev/null | sleep 3600",
            ),
        )
        .await;

    // CPU: the counter rises; the rate (from the second sample on) is near
    // one core.
    let first = stats(&mut env, &busy).await;
    let cpu0 = first.cpu.expect("cpu");
    assert!(v(&cpu0.usage_core_nano_seconds) > 0, "{cpu0:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = stats(&mut env, &busy).await;
    let cpu1 = second.cpu.expect("cpu");
    assert!(
        v(&cpu1.usage_core_nano_seconds) > v(&cpu0.usage_core_nano_seconds) + 300_000_000,
        "{cpu0:?} -> {cpu1:?}"
    );
    let cores = v(&cpu1.usage_nano_cores);
    assert!(
        (300_000_000..=2_200_000_000).contains(&cores),
        "a busy loop uses about a core: {cores} nanocores"
    );
    assert!(cpu1.timestamp > cpu0.timestamp);
    let attrs = second.attributes.expect("attributes");
    assert_eq!(attrs.id, busy);
    assert_eq!(attrs.metadata.expect("metadata").name, "busy");
    assert_eq!(attrs.labels["ctr"], "busy");

    // Memory: the hog's 64 MiB show in the working set; the writable layer
    // holds its 8 MiB file.
    let mut hog_stats = stats(&mut env, &hog).await;
    for _ in 0..50 {
        if v(&hog_stats.memory.as_ref().expect("memory").working_set_bytes) > 60 << 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        hog_stats = stats(&mut env, &hog).await;
    }
    let mem = hog_stats.memory.expect("memory");
    let ws = v(&mem.working_set_bytes);
    assert!(ws > 60 << 20 && ws < 200 << 20, "working set {ws}");
    assert!(v(&mem.usage_bytes) >= ws, "{mem:?}");
    assert!(v(&mem.rss_bytes) > 32 << 20, "{mem:?}");
    let fs = hog_stats.writable_layer.expect("writable layer");
    assert!(v(&fs.used_bytes) >= 8 << 20, "{fs:?}");
    assert!(v(&fs.inodes_used) >= 1, "{fs:?}");
    assert!(!fs.fs_id.expect("fs id").mountpoint.is_empty());
    // The busy loop wrote nothing.
    let busy_fs = second.writable_layer.expect("writable layer");
    assert!(v(&busy_fs.used_bytes) < 1 << 20, "{busy_fs:?}");

    // Filters: pod, label, id prefix; another pod's containers are not
    // listed.
    let (other_pod, other_cfg) = env.pod("other").await;
    let other = env
        .run(&other_pod, &other_cfg, ctr("idle", &bb, &["sleep", "300"]))
        .await;
    let list = |f: ContainerStatsFilter| {
        let mut rt = env.rt.clone();
        async move {
            let mut ids: Vec<String> = rt
                .list_container_stats(ListContainerStatsRequest { filter: Some(f) })
                .await
                .expect("ListContainerStats")
                .into_inner()
                .stats
                .into_iter()
                .filter_map(|s| s.attributes.map(|a| a.id))
                .collect();
            ids.sort();
            ids
        }
    };
    let mut both = vec![busy.clone(), hog.clone()];
    both.sort();
    assert_eq!(
        list(ContainerStatsFilter {
            pod_sandbox_id: pod.clone(),
            ..Default::default()
        })
        .await,
        both
    );
    assert_eq!(
        list(ContainerStatsFilter {
            label_selector: [("ctr".to_string(), "hog".to_string())].into(),
            ..Default::default()
        })
        .await,
        vec![hog.clone()]
    );
    assert_eq!(
        list(ContainerStatsFilter {
            id: other[..12].to_string(),
            ..Default::default()
        })
        .await,
        vec![other.clone()]
    );
    assert_eq!(list(ContainerStatsFilter::default()).await.len(), 3);

    // A stopped container has no CPU or memory figures; unknown ids are
    // NotFound.
    env.stop(&busy, 0).await.unwrap();
    let s = stats(&mut env, &busy).await;
    assert_eq!(v(&s.cpu.expect("cpu").usage_core_nano_seconds), 0);
    let err = env
        .rt
        .container_stats(ContainerStatsRequest {
            container_id: "0123456789abcdef".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
}

#[tokio::test]
async fn pod_stats_network_processes_and_containers() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("podstats").await;
    let gateway = format!("{}.1", env.net.prefix);
    // Some traffic out of the pod: a connection attempt to the gateway.
    let c = env
        .run(
            &pod,
            &pcfg,
            sh(
                "talker",
                &bb,
                &format!("wget -q -T 2 -O /dev/null http://{gateway}:9/ ; sleep 300"),
            ),
        )
        .await;
    let get = |id: String| pod_stats(env.rt.clone(), id);
    let mut s = get(pod.clone()).await;
    for _ in 0..50 {
        let tx = s
            .linux
            .as_ref()
            .and_then(|l| l.network.as_ref())
            .and_then(|n| n.default_interface.as_ref())
            .map(|i| v(&i.tx_bytes))
            .unwrap_or(0);
        if tx > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        s = get(pod.clone()).await;
    }
    assert_eq!(s.attributes.as_ref().expect("attributes").id, pod);
    let linux = s.linux.expect("linux stats");
    let net = linux.network.expect("network");
    let eth0 = net.default_interface.expect("default interface");
    assert_eq!(eth0.name, "eth0");
    assert!(v(&eth0.tx_bytes) > 0 && v(&eth0.rx_bytes) > 0, "{eth0:?}");
    assert!(
        net.interfaces.iter().all(|i| i.name != "lo"),
        "{:?}",
        net.interfaces
    );
    let ids: Vec<String> = linux
        .containers
        .iter()
        .filter_map(|c| c.attributes.as_ref().map(|a| a.id.clone()))
        .collect();
    assert_eq!(ids, vec![c.clone()]);
    // Listing by label finds the pod; an unknown pod is NotFound.
    let listed = env
        .rt
        .list_pod_sandbox_stats(ListPodSandboxStatsRequest {
            filter: Some(PodSandboxStatsFilter {
                id: pod[..12].to_string(),
                ..Default::default()
            }),
        })
        .await
        .expect("ListPodSandboxStats")
        .into_inner()
        .stats;
    assert_eq!(listed.len(), 1);
    let err = env
        .rt
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: "0123456789abcdef".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
}

/// The pod's private cgroup parent, removed (children first) in every
/// hierarchy on drop if a failed test left it; declared before the `Env`,
/// so it runs after the daemon and its containers are gone.
struct ParentCgroup(String);

impl Drop for ParentCgroup {
    fn drop(&mut self) {
        let mut bases = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
        if let Ok(d) = std::fs::read_dir("/sys/fs/cgroup") {
            bases.extend(d.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        for base in bases {
            let top = base.join(self.0.trim_start_matches('/'));
            if let Ok(d) = std::fs::read_dir(&top) {
                for e in d.flatten().filter(|e| e.path().is_dir()) {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
            let _ = std::fs::remove_dir(&top);
        }
    }
}

fn pod_id_list(stats: Vec<PodSandboxStats>) -> Vec<String> {
    let mut ids: Vec<String> = stats
        .into_iter()
        .filter_map(|s| s.attributes.map(|a| a.id))
        .collect();
    ids.sort();
    ids
}

// A pod with a kubelet-style cgroup parent running a CPU loop, a memory
// hog and a pinger: the pod cgroup's CPU rises at about a core, its memory
// holds the hog's 64 MiB, its process count covers the containers', the
// pod's eth0 counted the pings both ways; ListPodSandboxStats and
// ListContainerStats filter by id, pod and labels.
#[tokio::test]
async fn pod_cgroup_cpu_memory_processes_ping_and_list_filters() {
    let parent = ParentCgroup(format!("/crius-stats-{}", std::process::id()));
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let mut pcfg = env.pod_config("podcg");
    pcfg.linux
        .get_or_insert_with(Default::default)
        .cgroup_parent = parent.0.clone();
    let pod = common::pods::run_pod_ok(&mut env.rt, pcfg.clone()).await;
    let gateway = format!("{}.1", env.net.prefix);
    env.run(&pod, &pcfg, sh("busy", &bb, "while :; do :; done"))
        .await;
    let hog = env
        .run(
            &pod,
            &pcfg,
            sh(
                "hog",
                &bb,
                "dd if=/dev/zero bs=64M count=1 2>/dev/null | sleep 3600",
            ),
        )
        .await;
    let pinger = env
        .run(
            &pod,
            &pcfg,
            sh(
                "pinger",
                &bb,
                &format!("ping -c 10 -i 0.2 -s 1000 {gateway} >/dev/null; sleep 3600"),
            ),
        )
        .await;
    let (other_pod, other_cfg) = env.pod("quiet").await;
    env.run(&other_pod, &other_cfg, ctr("idle", &bb, &["sleep", "300"]))
        .await;

    let get = |id: String| {
        let rt = env.rt.clone();
        async move { pod_stats(rt, id).await.linux.expect("linux stats") }
    };
    // Wait for the hog's buffer and the ten pings and their replies (1042
    // bytes a frame: 1000 of payload, ICMP, IP and Ethernet headers).
    const PINGED: u64 = 10 * 1042;
    let mut s = get(pod.clone()).await;
    for _ in 0..100 {
        let ws = v(&s.memory.as_ref().expect("memory").working_set_bytes);
        let (rx, tx) = s
            .network
            .as_ref()
            .and_then(|n| n.default_interface.as_ref())
            .map(|i| (v(&i.rx_bytes), v(&i.tx_bytes)))
            .unwrap_or_default();
        if ws > 60 << 20 && rx >= PINGED && tx >= PINGED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        s = get(pod.clone()).await;
    }
    let mem = s.memory.expect("memory");
    let ws = v(&mem.working_set_bytes);
    assert!(ws > 60 << 20 && ws < 300 << 20, "pod working set {ws}");
    assert!(v(&mem.usage_bytes) >= ws, "{mem:?}");
    let eth0 = s
        .network
        .clone()
        .and_then(|n| n.default_interface)
        .expect("eth0");
    assert_eq!(eth0.name, "eth0");
    assert!(
        v(&eth0.tx_bytes) >= PINGED && v(&eth0.rx_bytes) >= PINGED,
        "ten 1 KiB pings out and back: {eth0:?}"
    );
    assert_eq!(v(&eth0.rx_errors) + v(&eth0.tx_errors), 0, "{eth0:?}");
    // sh (loop), dd, sleep (hog), sh or sleep (pinger): at least 4.
    let procs = v(&s.process.as_ref().expect("process").process_count);
    assert!((4..100).contains(&procs), "pod process count {procs}");
    assert_eq!(s.containers.len(), 3, "{:?}", s.containers);

    // CPU: the pod cgroup's counter rises by about a core's worth.
    let cpu0 = s.cpu.expect("cpu");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cpu1 = get(pod.clone()).await.cpu.expect("cpu");
    let used = v(&cpu1.usage_core_nano_seconds) - v(&cpu0.usage_core_nano_seconds);
    let wall = u64::try_from(cpu1.timestamp - cpu0.timestamp).expect("timestamps rise");
    assert!(
        used > wall / 4 && used < wall * 5 / 2,
        "pod CPU {used} ns in {wall} ns"
    );
    let cores = v(&cpu1.usage_nano_cores);
    assert!(
        (300_000_000..=2_200_000_000).contains(&cores),
        "pod nanocores {cores}"
    );

    // ListPodSandboxStats filters: id prefix, labels, none.
    let list = |f: Option<PodSandboxStatsFilter>| {
        let mut rt = env.rt.clone();
        async move {
            pod_id_list(
                rt.list_pod_sandbox_stats(ListPodSandboxStatsRequest { filter: f })
                    .await
                    .expect("ListPodSandboxStats")
                    .into_inner()
                    .stats,
            )
        }
    };
    let mut both = vec![pod.clone(), other_pod.clone()];
    both.sort();
    assert_eq!(list(None).await, both);
    let by_label = |k: &str, val: &str| PodSandboxStatsFilter {
        label_selector: [(k.to_string(), val.to_string())].into(),
        ..Default::default()
    };
    assert_eq!(
        list(Some(by_label("app", "quiet"))).await,
        vec![other_pod.clone()]
    );
    assert_eq!(
        list(Some(by_label("app", "nosuch"))).await,
        Vec::<String>::new()
    );
    assert_eq!(
        list(Some(PodSandboxStatsFilter {
            id: pod[..10].to_string(),
            ..Default::default()
        }))
        .await,
        vec![pod.clone()]
    );

    // ListContainerStats: pod and label together; an unknown pod lists none.
    let ids = |f: ContainerStatsFilter| {
        let mut rt = env.rt.clone();
        async move {
            rt.list_container_stats(ListContainerStatsRequest { filter: Some(f) })
                .await
                .expect("ListContainerStats")
                .into_inner()
                .stats
                .into_iter()
                .filter_map(|s| s.attributes.map(|a| a.id))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        ids(ContainerStatsFilter {
            pod_sandbox_id: pod.clone(),
            label_selector: [("ctr".to_string(), "pinger".to_string())].into(),
            ..Default::default()
        })
        .await,
        vec![pinger.clone()]
    );
    assert_eq!(
        ids(ContainerStatsFilter {
            pod_sandbox_id: other_pod.clone(),
            id: hog.clone(),
            ..Default::default()
        })
        .await,
        Vec::<String>::new()
    );

    // Removing the pod removes the cgroup parent crius created.
    for p in [&pod, &other_pod] {
        common::pods::stop_pod(&mut env.rt, p).await.expect("stop");
        common::pods::remove_pod(&mut env.rt, p)
            .await
            .expect("remove");
    }
    let base = if std::path::Path::new("/sys/fs/cgroup/memory").is_dir() {
        "/sys/fs/cgroup/memory"
    } else {
        "/sys/fs/cgroup"
    };
    let dir = format!("{base}{}", parent.0);
    assert!(!std::path::Path::new(&dir).exists(), "{dir} left");
}

/// PodSandboxStats of `id`.
async fn pod_stats(mut rt: common::pods::RuntimeClient, id: String) -> PodSandboxStats {
    rt.pod_sandbox_stats(PodSandboxStatsRequest { pod_sandbox_id: id })
        .await
        .expect("PodSandboxStats")
        .into_inner()
        .stats
        .expect("stats")
}
