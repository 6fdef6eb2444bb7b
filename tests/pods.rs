//! Pod sandboxes through the real daemon: pinned namespaces, real CNI
//! plugins (bridge, host-local, portmap) on a private test network, pod
//! files, sysctls, idempotence, name reservation, filters, restart recovery
//! and leaks over many cycles.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};

use common::pods::*;
use common::*;
use k8s_cri::v1::*;

/// GET /index.html over a plain TcpStream (busybox wget crashes on this
/// machine); returns the whole response or the error text.
fn http_get(addr: &str) -> String {
    use std::io::{Read, Write};
    let Ok(sock) = addr.parse::<std::net::SocketAddr>() else {
        return format!("bad address {addr}");
    };
    match std::net::TcpStream::connect_timeout(&sock, std::time::Duration::from_secs(3)) {
        Ok(mut s) => {
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(3)));
            let _ = s.write_all(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        }
        Err(e) => format!("connect {addr}: {e}"),
    }
}

async fn setup() -> (TestNet, Daemon, RuntimeClient) {
    let net = TestNet::new();
    let daemon = Daemon::start(&net.toml());
    let client = daemon.runtime_client().await;
    (net, daemon, client)
}

fn network_ready(s: &StatusResponse) -> (bool, String, String) {
    let c = s
        .status
        .as_ref()
        .and_then(|st| st.conditions.iter().find(|c| c.r#type == "NetworkReady"))
        .expect("NetworkReady condition");
    (c.status, c.reason.clone(), c.message.clone())
}

#[tokio::test]
async fn network_ready_follows_the_conf_dir() {
    let net = TestNet::new();
    std::fs::remove_file(net.conf_dir.join("10-test.conflist")).unwrap();
    let daemon = Daemon::start(&net.toml());
    let mut c = daemon.runtime_client().await;
    let st = c
        .status(StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let (ready, reason, message) = network_ready(&st);
    assert!(!ready);
    assert_eq!(reason, "NetworkPluginNotReady");
    assert!(!message.is_empty());
    net.write_conflist("10-test.conflist");
    let st = c
        .status(StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    assert!(
        network_ready(&st).0,
        "NetworkReady after a conflist appears: {st:?}"
    );
}

#[tokio::test]
async fn pods_get_ips_the_host_and_each_other_reach() {
    let (net, daemon, mut c) = setup().await;
    let a = run_pod_ok(&mut c, pod_config("net-a")).await;
    let b = run_pod_ok(&mut c, pod_config("net-b")).await;
    let ip_a = pod_ip(&mut c, &a).await;
    let ip_b = pod_ip(&mut c, &b).await;
    assert!(ip_a.starts_with(&format!("{}.", net.prefix)), "{ip_a}");
    assert!(ip_b.starts_with(&format!("{}.", net.prefix)), "{ip_b}");
    assert_ne!(ip_a, ip_b);
    let ping = Command::new("/bin/busybox")
        .args(&ping_cmd(&ip_a)[1..])
        .output()
        .unwrap();
    assert!(ping.status.success(), "host pings pod: {ping:?}");
    let cmd = ping_cmd(&ip_b);
    let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let o = in_pod(daemon.run_dir(), &a, &refs);
    assert!(o.status.success(), "pod a pings pod b: {o:?}");
    let lo = in_pod(daemon.run_dir(), &a, &["ip", "-o", "link", "show", "lo"]);
    assert!(
        stdout(&lo).contains("UP"),
        "lo is up in the pod: {}",
        stdout(&lo)
    );
    for id in [&a, &b] {
        stop_pod(&mut c, id).await.unwrap();
        remove_pod(&mut c, id).await.unwrap();
    }
    let left: Vec<_> = std::fs::read_dir(net.ipam_dir())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.iter()
            .all(|n| !n.to_string_lossy().starts_with(&net.prefix)),
        "host-local released the IPs: {left:?}"
    );
}

#[tokio::test]
async fn pod_serves_on_its_ip_and_its_mapped_host_port() {
    let (_net, daemon, mut c) = setup().await;
    let host_port = 20000 + (std::process::id() % 20000) as i32;
    let mut cfg = pod_config("web");
    cfg.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 8080,
        host_port,
        host_ip: "127.0.0.1".into(),
    }];
    let id = run_pod_ok(&mut c, cfg).await;
    let ip = pod_ip(&mut c, &id).await;
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "hello from the pod\n").unwrap();
    let ns = pod_dir(daemon.run_dir(), &id).join("ns/net");
    let mut httpd = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["/bin/busybox", "httpd", "-f", "-p", "8080", "-h"])
        .arg(www.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nsenter busybox httpd");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let direct = http_get(&format!("{ip}:8080"));
    let mapped = http_get(&format!("127.0.0.1:{host_port}"));
    let _ = httpd.kill();
    let _ = httpd.wait();
    assert!(
        direct.ends_with("hello from the pod\n"),
        "via pod IP: {direct:?}"
    );
    assert!(
        mapped.ends_with("hello from the pod\n"),
        "via host port {host_port}: {mapped:?}"
    );
    remove_pod(&mut c, &id).await.unwrap();
}

#[tokio::test]
async fn pod_files_hostname_resolv_hosts_and_shm() {
    let (_net, daemon, mut c) = setup().await;
    let id = run_pod_ok(&mut c, pod_config("files")).await;
    let ip = pod_ip(&mut c, &id).await;
    let dir = pod_dir(daemon.run_dir(), &id);
    assert_eq!(
        std::fs::read_to_string(dir.join("hostname")).unwrap(),
        "files\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("resolv.conf")).unwrap(),
        "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    );
    let hosts = std::fs::read_to_string(dir.join("hosts")).unwrap();
    assert!(hosts.contains("127.0.0.1\tlocalhost"), "{hosts}");
    assert!(hosts.contains(&format!("{ip}\tfiles")), "{hosts}");
    let uts = in_pod(daemon.run_dir(), &id, &["hostname"]);
    assert_eq!(stdout(&uts), "files", "hostname in the pod's UTS namespace");
    let shm = dir.join("shm");
    let mounts = mounts_below(&shm);
    assert_eq!(mounts.len(), 1, "shm tmpfs mounted: {mounts:?}");
    let df = Command::new("/bin/busybox")
        .args(["df", "-k"])
        .arg(&shm)
        .output()
        .unwrap();
    assert!(stdout(&df).contains("65536"), "64 MiB shm: {}", stdout(&df));
    remove_pod(&mut c, &id).await.unwrap();
    assert!(!dir.exists(), "pod dir removed");
    assert!(mounts_below(&dir).is_empty());
}

#[tokio::test]
async fn sysctls_are_applied_and_injection_is_refused() {
    let (_net, daemon, mut c) = setup().await;
    let mut cfg = pod_config("sysctl");
    cfg.linux = Some(LinuxPodSandboxConfig {
        sysctls: HashMap::from([
            ("net.ipv4.ip_unprivileged_port_start".into(), "80".into()),
            ("kernel.shmmni".into(), "1234".into()),
        ]),
        ..Default::default()
    });
    let id = run_pod_ok(&mut c, cfg).await;
    let port = in_pod(
        daemon.run_dir(),
        &id,
        &["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"],
    );
    assert_eq!(stdout(&port), "80");
    let shm = in_pod(daemon.run_dir(), &id, &["cat", "/proc/sys/kernel/shmmni"]);
    assert_eq!(stdout(&shm), "1234");
    let host = std::fs::read_to_string("/proc/sys/kernel/shmmni").unwrap();
    assert_ne!(host.trim(), "1234", "host value untouched");
    remove_pod(&mut c, &id).await.unwrap();

    for (k, v, why) in [
        ("kernel.core_pattern", "x", "not namespaced"),
        ("kernel.shmmax", "1+kernel.core_pattern=|/tmp/x", "'+'"),
        (
            "net.ipv4.ip_forward",
            "1\nkernel.core_pattern=x",
            "line break",
        ),
    ] {
        let mut cfg = pod_config(&format!("bad-{}", k.len() + v.len()));
        cfg.linux = Some(LinuxPodSandboxConfig {
            sysctls: HashMap::from([(k.into(), v.into())]),
            ..Default::default()
        });
        let err = run_pod(&mut c, cfg).await.expect_err("refused");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains(k) && err.message().contains(why),
            "{}",
            err.message()
        );
    }
    assert!(
        list_pods(&mut c, None).await.is_empty(),
        "refused pods leave nothing"
    );
}

#[tokio::test]
async fn stop_and_remove_are_idempotent_and_names_are_reserved() {
    let (_net, _daemon, mut c) = setup().await;
    let id = run_pod_ok(&mut c, pod_config("dup")).await;
    let err = run_pod(&mut c, pod_config("dup"))
        .await
        .expect_err("name reserved");
    assert!(
        err.message().contains(&id),
        "names the owner: {}",
        err.message()
    );
    stop_pod(&mut c, &id).await.unwrap();
    stop_pod(&mut c, &id).await.unwrap();
    let st = pod_status(&mut c, &id).await.status.unwrap();
    assert_eq!(st.state, PodSandboxState::SandboxNotready as i32);
    // Still reserved while stopped.
    assert!(run_pod(&mut c, pod_config("dup")).await.is_err());
    remove_pod(&mut c, &id).await.unwrap();
    remove_pod(&mut c, &id).await.unwrap();
    let unknown = "f".repeat(64);
    stop_pod(&mut c, &unknown).await.unwrap();
    remove_pod(&mut c, &unknown).await.unwrap();
    let again = run_pod_ok(&mut c, pod_config("dup")).await;
    remove_pod(&mut c, &again).await.unwrap();
}

#[tokio::test]
async fn list_filters_by_id_prefix_state_and_labels() {
    let (_net, _daemon, mut c) = setup().await;
    let a = run_pod_ok(&mut c, pod_config("list-a")).await;
    let b = run_pod_ok(&mut c, pod_config("list-b")).await;
    stop_pod(&mut c, &b).await.unwrap();
    assert_eq!(list_pods(&mut c, None).await.len(), 2);
    let by_id = list_pods(
        &mut c,
        Some(PodSandboxFilter {
            id: a[..12].to_owned(),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(
        by_id.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        vec![a.as_str()]
    );
    let ready = list_pods(
        &mut c,
        Some(PodSandboxFilter {
            state: Some(PodSandboxStateValue {
                state: PodSandboxState::SandboxReady as i32,
            }),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].id, a);
    let labelled = list_pods(
        &mut c,
        Some(PodSandboxFilter {
            label_selector: HashMap::from([("app".into(), "list-b".into())]),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(labelled.len(), 1);
    assert_eq!(labelled[0].id, b);
    assert_eq!(
        labelled[0]
            .annotations
            .get("crius.test/anno")
            .map(String::as_str),
        Some("yes")
    );
    for id in [a, b] {
        remove_pod(&mut c, &id).await.unwrap();
    }
}

#[tokio::test]
async fn host_network_pod_uses_no_cni_and_no_netns() {
    let (_net, daemon, mut c) = setup().await;
    let mut cfg = pod_config("hostnet");
    cfg.linux = Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption {
                network: NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = run_pod_ok(&mut c, cfg).await;
    assert!(!pod_dir(daemon.run_dir(), &id).join("ns/net").exists());
    assert_eq!(
        std::fs::read_to_string(pod_dir(daemon.run_dir(), &id).join("hosts")).unwrap(),
        std::fs::read_to_string("/etc/hosts").unwrap(),
        "host-network pods get the node's hosts file"
    );
    let st = pod_status(&mut c, &id).await.status.unwrap();
    assert_eq!(st.state, PodSandboxState::SandboxReady as i32);
    remove_pod(&mut c, &id).await.unwrap();
}

#[tokio::test]
async fn pods_survive_kill9_and_a_vanished_netns_is_notready() {
    let (_net, mut daemon, mut c) = setup().await;
    let a = run_pod_ok(&mut c, pod_config("keep-a")).await;
    let b = run_pod_ok(&mut c, pod_config("keep-b")).await;
    let ip_a = pod_ip(&mut c, &a).await;
    daemon.kill9();
    // Simulate a lost namespace (e.g. a manual cleanup while crius was down).
    let netns_b = pod_dir(daemon.run_dir(), &b).join("ns/net");
    nix::mount::umount2(&netns_b, nix::mount::MntFlags::MNT_DETACH).unwrap();
    daemon.restart();
    let mut c = daemon.runtime_client().await;
    assert_eq!(pod_ip(&mut c, &a).await, ip_a, "same IP after restart");
    let sa = pod_status(&mut c, &a).await.status.unwrap();
    assert_eq!(sa.state, PodSandboxState::SandboxReady as i32);
    let sb = pod_status(&mut c, &b).await.status.unwrap();
    assert_eq!(sb.state, PodSandboxState::SandboxNotready as i32);
    let ping = Command::new("/bin/busybox")
        .args(&ping_cmd(&ip_a)[1..])
        .output()
        .unwrap();
    assert!(ping.status.success(), "pod a still reachable: {ping:?}");
    for id in [a, b] {
        stop_pod(&mut c, &id).await.unwrap();
        remove_pod(&mut c, &id).await.unwrap();
    }
}

/// Host ends of pod veths: enslaved to this test's bridge (other tests run
/// in parallel, so global counts would race).
fn veths(bridge: &str) -> usize {
    let o = Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
        .unwrap();
    stdout(&o).lines().count()
}

#[tokio::test]
async fn hundred_cycles_leak_nothing() {
    let (net, daemon, mut c) = setup().await;
    // Warm up once so lazily created state (bridge, iptables chains) exists.
    let id = run_pod_ok(&mut c, pod_config("cycle-warm")).await;
    remove_pod(&mut c, &id).await.unwrap();
    let links = veths(&net.bridge);
    let cg_top = format!("crius-test-cycles-{}", std::process::id());
    for i in 0..100 {
        let mut cfg = pod_config(&format!("cycle-{i}"));
        cfg.linux = Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("/{cg_top}/pod-{i}"),
            ..Default::default()
        });
        let id = run_pod_ok(&mut c, cfg).await;
        stop_pod(&mut c, &id).await.unwrap();
        remove_pod(&mut c, &id).await.unwrap();
    }
    assert_eq!(veths(&net.bridge), links, "veths leaked");
    let cg_dir = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        format!("/sys/fs/cgroup/{cg_top}")
    } else {
        format!("/sys/fs/cgroup/memory/{cg_top}")
    };
    assert!(
        !std::path::Path::new(&cg_dir).exists(),
        "cgroup dirs leaked: {cg_dir}"
    );
    let pods = std::fs::read_dir(daemon.run_dir().join("pods"))
        .unwrap()
        .count();
    assert_eq!(pods, 0, "pod dirs leaked under the run dir");
    assert!(
        mounts_below(daemon.run_dir()).is_empty(),
        "mounts leaked: {:?}",
        mounts_below(daemon.run_dir())
    );
}

fn infra_pid(st: &PodSandboxStatusResponse) -> u32 {
    let info: serde_json::Value =
        serde_json::from_str(st.info.get("info").expect("verbose info")).unwrap();
    info["pid"].as_u64().unwrap_or(0) as u32
}

#[tokio::test]
async fn pod_pid_namespace_is_held_by_an_infra_process_only_when_shared() {
    let (_net, daemon, mut c) = setup().await;
    // namespace_options.pid = POD: an infra process holds the namespace.
    let shared = run_pod_ok(&mut c, pod_config("pid-pod")).await;
    let pid = infra_pid(&pod_status(&mut c, &shared).await);
    assert!(pid > 0, "infra pid reported");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("infra"),
        "{pid} is the infra: {cmdline:?}"
    );
    let pin = pod_dir(daemon.run_dir(), &shared).join("ns/pid");
    let joined = Command::new("nsenter")
        .arg(format!("--pid={}", pin.display()))
        // util-linux nsenter forks by itself when entering a PID namespace.
        .args(["/bin/busybox", "sh", "-c", "echo $$"])
        .output()
        .unwrap();
    let inner: u32 = stdout(&joined).parse().unwrap_or(0);
    assert!(
        inner > 1,
        "a process joining the pod PID namespace is not pid 1 there: {joined:?}"
    );
    stop_pod(&mut c, &shared).await.unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z"),
        "infra {pid} gone after StopPodSandbox"
    );
    remove_pod(&mut c, &shared).await.unwrap();

    // pid = CONTAINER: no process at all for the pod.
    let mut cfg = pod_config("pid-container");
    cfg.linux = Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption {
                pid: NamespaceMode::Container as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let own = run_pod_ok(&mut c, cfg).await;
    assert_eq!(
        infra_pid(&pod_status(&mut c, &own).await),
        0,
        "no infra process"
    );
    assert!(!pod_dir(daemon.run_dir(), &own).join("ns/pid").exists());
    remove_pod(&mut c, &own).await.unwrap();
}

#[tokio::test]
async fn pod_cgroup_is_created_limited_and_removed() {
    let (_net, _daemon, mut c) = setup().await;
    let top = format!("crius-test-pods-{}", std::process::id());
    let parent = format!("/{top}/pod-cg");
    let mut cfg = pod_config("cgroup");
    cfg.linux = Some(LinuxPodSandboxConfig {
        cgroup_parent: parent.clone(),
        resources: Some(LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            memory_limit_in_bytes: 64 << 20,
            ..Default::default()
        }),
        overhead: Some(LinuxContainerResources {
            memory_limit_in_bytes: 16 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = run_pod_ok(&mut c, cfg).await;
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let read = |rel: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{rel}"))
            .unwrap_or_else(|e| panic!("{rel}: {e}"))
            .trim()
            .to_owned()
    };
    let (mem_dir, cpu_dir) = if v2 {
        (format!("{top}/pod-cg"), format!("{top}/pod-cg"))
    } else {
        (format!("memory/{top}/pod-cg"), format!("cpu/{top}/pod-cg"))
    };
    if v2 {
        assert_eq!(
            read(&format!("{mem_dir}/memory.max")),
            (80u64 << 20).to_string()
        );
        assert_eq!(read(&format!("{cpu_dir}/cpu.max")), "50000 100000");
    } else {
        assert_eq!(
            read(&format!("{mem_dir}/memory.limit_in_bytes")),
            (80u64 << 20).to_string(),
            "resources + overhead"
        );
        assert_eq!(read(&format!("{cpu_dir}/cpu.cfs_quota_us")), "50000");
    }
    remove_pod(&mut c, &id).await.unwrap();
    let top_dir = if v2 {
        format!("/sys/fs/cgroup/{top}")
    } else {
        format!("/sys/fs/cgroup/memory/{top}")
    };
    assert!(
        !std::path::Path::new(&top_dir).exists(),
        "cgroup dirs crius created are removed with the pod ({top_dir})"
    );
}

#[tokio::test]
async fn bandwidth_annotations_shape_the_pod_veth() {
    let (net, _daemon, mut c) = setup().await;
    let mut cfg = pod_config("shaped");
    cfg.annotations
        .insert("kubernetes.io/ingress-bandwidth".into(), "10M".into());
    let id = run_pod_ok(&mut c, cfg).await;
    let links = Command::new("ip")
        .args(["-o", "link", "show", "master", &net.bridge])
        .output()
        .unwrap();
    let veth = stdout(&links)
        .split(':')
        .nth(1)
        .map(|s| s.trim().split('@').next().unwrap_or("").to_owned())
        .unwrap_or_default();
    let tc = Command::new("tc")
        .args(["qdisc", "show", "dev", &veth])
        .output()
        .unwrap();
    assert!(
        stdout(&tc).contains("tbf") && stdout(&tc).contains("10Mbit"),
        "tbf 10Mbit on the pod's host veth {veth}: {}",
        stdout(&tc)
    );
    remove_pod(&mut c, &id).await.unwrap();

    let mut bad = pod_config("badly-shaped");
    bad.annotations
        .insert("kubernetes.io/egress-bandwidth".into(), "fast".into());
    let err = run_pod(&mut c, bad)
        .await
        .expect_err("bad quantity refused");
    assert!(
        err.message().contains("egress-bandwidth"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn update_runtime_config_stores_the_pod_cidr() {
    let (_net, _daemon, mut c) = setup().await;
    let update = |cidr: &str| UpdateRuntimeConfigRequest {
        runtime_config: Some(RuntimeConfig {
            network_config: Some(NetworkConfig {
                pod_cidr: cidr.into(),
            }),
        }),
    };
    c.update_runtime_config(update("10.244.1.0/24"))
        .await
        .unwrap();
    let st = c
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        st.info.get("podCIDR").map(String::as_str),
        Some("\"10.244.1.0/24\"")
    );
    let err = c
        .update_runtime_config(update("10.244.1.0"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

/// Inode numbers of the namespaces pinned under `dir` (recursively).
fn pinned_inodes(dir: &std::path::Path) -> Vec<u64> {
    use std::os::unix::fs::MetadataExt as _;
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(pinned_inodes(&p));
        } else if crius::sys::namespace::is_pinned(&p) {
            out.push(std::fs::metadata(&p).map(|m| m.ino()).unwrap_or(0));
        }
    }
    out.sort();
    out
}

async fn wait_pool(daemon: &Daemon, sets: usize) -> Vec<u64> {
    let pool = daemon.run_dir().join("nspool");
    for _ in 0..100 {
        let inodes = pinned_inodes(&pool);
        if inodes.len() == 3 * sets {
            return inodes;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "the namespace pool did not reach {sets} sets: {:?}",
        pinned_inodes(&pool)
    );
}

/// The pool of ready namespaces (`pod.namespace_pool`): a plain pod takes
/// a pooled set (its net, IPC and UTS namespaces are ones made before it
/// was asked for) with its own hostname set, and the pool is refilled; a
/// pod with sysctls gets namespaces of its own; a daemon killed and
/// restarted drops the old pool and makes a new one, leaving no pin behind.
// Multi-threaded: the client's connection must see the server's GOAWAY
// while this thread waits for the daemon to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_take_ready_namespaces_from_the_pool() {
    let net = TestNet::new();
    let mut daemon = Daemon::start(&format!("{}\n[pod]\nnamespace_pool = 2\n", net.toml()));
    let mut c = daemon.runtime_client().await;
    let before = wait_pool(&daemon, 2).await;

    // Kubelet's usual pod: a PID namespace per container, no infra.
    let plain = |name: &str, sysctls: HashMap<String, String>| {
        let mut cfg = pod_config(name);
        cfg.linux = Some(LinuxPodSandboxConfig {
            sysctls,
            ..Default::default()
        });
        kubelet_namespaces(&mut cfg);
        cfg
    };
    let mut cfg = plain("pooled", HashMap::new());
    cfg.hostname = "pooled-host".into();
    let id = run_pod_ok(&mut c, cfg).await;
    let own = pinned_inodes(&pod_dir(daemon.run_dir(), &id).join("ns"));
    assert_eq!(own.len(), 3, "{own:?}");
    assert!(
        own.iter().all(|i| before.contains(i)),
        "the pod's namespaces {own:?} must come from the pool {before:?}"
    );
    let uts = in_pod(daemon.run_dir(), &id, &["hostname"]);
    assert_eq!(stdout(&uts), "pooled-host");
    let lo = in_pod(daemon.run_dir(), &id, &["ip", "-o", "link", "show", "lo"]);
    assert!(stdout(&lo).contains("UP"), "{}", stdout(&lo));
    let ip = pod_ip(&mut c, &id).await;
    let ping = Command::new("/bin/busybox")
        .args(&ping_cmd(&ip)[1..])
        .output()
        .expect("busybox ping");
    assert!(ping.status.success(), "the pooled pod's IP {ip}: {ping:?}");
    let refilled = wait_pool(&daemon, 2).await;
    assert!(
        refilled.iter().all(|i| !own.contains(i)),
        "a taken set must not stay in the pool"
    );

    // Sysctls are applied by pinns inside new namespaces: no pooled set.
    let cfg = plain(
        "own-ns",
        [("net.ipv4.ip_forward".to_owned(), "1".to_owned())].into(),
    );
    let other = run_pod_ok(&mut c, cfg).await;
    let theirs = pinned_inodes(&pod_dir(daemon.run_dir(), &other).join("ns"));
    assert!(
        theirs.iter().all(|i| !refilled.contains(i)),
        "a pod with sysctls must not take pooled namespaces"
    );

    // Marked, so that a set the next daemon kept would show. (Namespace
    // inode numbers are reused once freed: they cannot tell.)
    let uts_pins = |daemon: &Daemon| {
        let pool = daemon.run_dir().join("nspool");
        std::fs::read_dir(&pool)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path().join("uts"))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let hostname_in = |uts: &std::path::Path, set: Option<&str>| {
        let o = Command::new("nsenter")
            .arg(format!("--uts={}", uts.display()))
            .args(["hostname"])
            .args(set)
            .output()
            .expect("nsenter (util-linux)");
        assert!(o.status.success(), "{o:?}");
        stdout(&o)
    };
    for uts in uts_pins(&daemon) {
        hostname_in(&uts, Some("old-pool"));
    }
    daemon.kill9();
    daemon.restart();
    let mut c = daemon.runtime_client().await;
    wait_pool(&daemon, 2).await;
    for uts in uts_pins(&daemon) {
        assert_ne!(
            hostname_in(&uts, None),
            "old-pool",
            "the restarted daemon must drop the old pool"
        );
    }
    for p in [&id, &other] {
        stop_pod(&mut c, p).await.unwrap();
        remove_pod(&mut c, p).await.unwrap();
    }
    assert!(
        mounts_below(daemon.run_dir()).is_empty(),
        "{:?}",
        mounts_below(daemon.run_dir())
    );
    // A graceful stop leaves no idle pins either.
    drop(c);
    daemon.stop();
    let left = pinned_inodes(&daemon.run_dir().join("nspool"));
    assert!(left.is_empty(), "pool pins left after a stop: {left:?}");
}
