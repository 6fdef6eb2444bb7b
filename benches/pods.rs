//! Pod sandbox benchmark: crius against containerd's CRI (where installed),
//! same tonic client, same CNI conflist (bridge + host-local + portmap).
//! Sequential and concurrent RunPodSandbox → StopPodSandbox →
//! RemovePodSandbox cycles, processes per pod, and PSS with 10 pods.
//! Prints figures; never fails on numbers.
//! Run: `bash hack/bench-pods.sh` (or `cargo bench --bench pods`), as root.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/peer.rs"]
mod peer;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cri::{ImageClient, pull_ok};
use common::pods::{RuntimeClient, pod_config, remove_pod, run_pod, stop_pod};
use common::*;
use k8s_cri::v1::{
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListPodSandboxRequest, NamespaceMode,
    NamespaceOption, PodSandboxConfig, StatusRequest,
};

/// Sequential cycles measured (after a warm-up).
const SEQUENTIAL: usize = 30;
/// Pods run at once in a concurrent round.
const CONCURRENT: usize = 20;
/// Concurrent rounds.
const ROUNDS: usize = 3;
/// Pods held while processes and memory are counted.
const HELD: usize = 10;

type Res<T> = Result<T, String>;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// A kubelet-like pod: pod-level network and IPC, container-level PID (no
/// shared PID namespace), no log directory (nothing left under /var/log).
fn bench_pod(name: &str) -> PodSandboxConfig {
    let mut c = pod_config(name);
    c.log_directory = String::new();
    c.linux = Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption {
                network: NamespaceMode::Pod as i32,
                pid: NamespaceMode::Container as i32,
                ipc: NamespaceMode::Pod as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    c
}

/// One full cycle: (RunPodSandbox ms, StopPodSandbox + RemovePodSandbox ms).
async fn cycle(c: &mut RuntimeClient, name: &str) -> Res<(f64, f64)> {
    let t = Instant::now();
    let id = run_pod(c, bench_pod(name))
        .await
        .map_err(|e| format!("RunPodSandbox {name}: {e:?}"))?;
    let run = ms(t);
    let t = Instant::now();
    stop_pod(c, &id)
        .await
        .map_err(|e| format!("StopPodSandbox {name}: {e:?}"))?;
    remove_pod(c, &id)
        .await
        .map_err(|e| format!("RemovePodSandbox {name}: {e:?}"))?;
    Ok((run, ms(t)))
}

// ---- host process table -------------------------------------------------

struct Proc {
    ppid: u32,
    /// Exited, not yet reaped (shims re-parented to a lazy init linger so).
    zombie: bool,
    cmdline: String,
}

fn processes() -> HashMap<u32, Proc> {
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
        out.insert(
            pid,
            Proc {
                ppid,
                zombie,
                cmdline,
            },
        );
    }
    out
}

/// Live (non-zombie) processes on the host.
fn live_processes() -> usize {
    processes().values().filter(|p| !p.zombie).count()
}

/// `roots` and all their live descendants.
fn tree(table: &HashMap<u32, Proc>, roots: &[u32]) -> Vec<u32> {
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
fn shims_of(table: &HashMap<u32, Proc>, dir: &Path) -> Vec<u32> {
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

fn pss_kib(pid: u32) -> u64 {
    peer::proc_kib(pid, "smaps_rollup", "Pss")
}

/// The runtime's processes: the daemon, its shims (containerd) and every
/// descendant (pause processes).
fn runtime_procs(daemon: u32, shim_dir: Option<&Path>) -> Vec<u32> {
    let table = processes();
    let mut roots = vec![daemon];
    if let Some(d) = shim_dir {
        roots.extend(shims_of(&table, d));
    }
    tree(&table, &roots)
}

/// Waits for writeback and for short-lived helpers to exit.
async fn settle() {
    let _ = tokio::task::spawn_blocking(|| Command::new("sync").status()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
}

// ---- containerd ---------------------------------------------------------

struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
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

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Shims (and the pause processes below them) outlive containerd:
        // kill the whole tree, children first, so nothing is re-parented.
        let table = processes();
        let shims = shims_of(&table, self.dir.path());
        let mut all = tree(&table, &shims);
        all.retain(|p| !shims.contains(p));
        for pid in all.iter().chain(shims.iter()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if !shims.is_empty() {
            eprintln!("containerd: killed {} leftover shim(s)", shims.len());
            std::thread::sleep(Duration::from_millis(300));
        }
        unmount_below(self.dir.path());
        for d in &self.created {
            // rmdir only: a non-empty directory (or busy cgroup) stays.
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn start_containerd(registry: &str, pause: &str, cni_conf_dir: &Path) -> Option<Containerd> {
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
  # which these machines lack: cap it at containerd's own (runc fails otherwise).
  restrict_oom_score_adj = true
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

// ---- measurement --------------------------------------------------------

#[derive(Default)]
struct Figures {
    seq_run: Vec<f64>,
    seq_sr: Vec<f64>,
    conc_run: Vec<f64>,
    conc_sr: Vec<f64>,
    /// Wall time of a whole concurrent round.
    conc_wall: Vec<f64>,
    /// Host processes per held pod.
    procs_per_pod: f64,
    /// PSS (KiB) and process count of the runtime, idle and with HELD pods.
    idle_pss_kib: u64,
    idle_procs: usize,
    held_pss_kib: u64,
    held_procs: usize,
}

async fn wait_network_ready(c: &mut RuntimeClient) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = c
            .status(StatusRequest { verbose: false })
            .await
            .ok()
            .and_then(|r| r.into_inner().status)
            .map(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.r#type == "NetworkReady" && c.status)
            })
            .unwrap_or(false);
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("NetworkReady did not become true within 20 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn measure(
    name: &str,
    c: &mut RuntimeClient,
    daemon: u32,
    shim_dir: Option<&Path>,
) -> Res<Figures> {
    let mut f = Figures::default();
    wait_network_ready(c).await?;
    for i in 0..3 {
        cycle(c, &format!("warm-{i}")).await?;
    }
    settle().await;

    for i in 0..SEQUENTIAL {
        let (run, sr) = cycle(c, &format!("seq-{i}")).await?;
        f.seq_run.push(run);
        f.seq_sr.push(sr);
    }
    eprintln!("{name}: sequential done");

    for round in 0..ROUNDS {
        settle().await;
        let barrier = Arc::new(tokio::sync::Barrier::new(CONCURRENT));
        let t = Instant::now();
        let tasks: Vec<_> = (0..CONCURRENT)
            .map(|i| {
                let mut c = c.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    cycle(&mut c, &format!("conc-{round}-{i}")).await
                })
            })
            .collect();
        for task in tasks {
            let (run, sr) = task.await.map_err(|e| format!("task: {e}"))??;
            f.conc_run.push(run);
            f.conc_sr.push(sr);
        }
        f.conc_wall.push(ms(t));
    }
    eprintln!("{name}: concurrent done");

    settle().await;
    let before = live_processes();
    let procs = runtime_procs(daemon, shim_dir);
    f.idle_procs = procs.len();
    f.idle_pss_kib = procs.iter().map(|p| pss_kib(*p)).sum();
    let mut held = Vec::new();
    for i in 0..HELD {
        let id = run_pod(c, bench_pod(&format!("held-{i}")))
            .await
            .map_err(|e| format!("RunPodSandbox held-{i}: {e:?}"))?;
        held.push(id);
    }
    settle().await;
    let after = live_processes();
    let procs = runtime_procs(daemon, shim_dir);
    f.held_procs = procs.len();
    f.held_pss_kib = procs.iter().map(|p| pss_kib(*p)).sum();
    f.procs_per_pod = (after as f64 - before as f64) / HELD as f64;
    for id in &held {
        stop_pod(c, id)
            .await
            .map_err(|e| format!("StopPodSandbox {id}: {e:?}"))?;
        remove_pod(c, id)
            .await
            .map_err(|e| format!("RemovePodSandbox {id}: {e:?}"))?;
    }
    eprintln!("{name}: done");
    Ok(f)
}

/// Stops and removes every pod the runtime still lists (after a failure).
async fn remove_all(c: &mut RuntimeClient) {
    let Ok(r) = c
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
    else {
        return;
    };
    for p in r.into_inner().items {
        let _ = stop_pod(c, &p.id).await;
        let _ = remove_pod(c, &p.id).await;
    }
}

/// Config for crius: the harness's paths and the network's `[cni]` table,
/// logging at info (containerd's default), not the harness's debug.
fn crius_daemon(net: &TestNet) -> Daemon {
    let mut d = Daemon::configure_raw(|p| {
        format!(
            "socket = {:?}\nstate_dir = {:?}\nrun_dir = {:?}\n{}\n[log]\nlevel = \"info\"\n",
            p.socket.display().to_string(),
            p.state_dir.display().to_string(),
            p.run_dir.display().to_string(),
            net.toml(),
        )
    });
    d.launch();
    d
}

#[tokio::main]
async fn main() {
    let net = TestNet::new();

    let mut crius = crius_daemon(&net);
    let crius_pid = crius.pid().expect("crius pid");
    let mut client = RuntimeClient::new(crius.channel().await);
    let crius_fig = measure("crius", &mut client, crius_pid, None).await;
    remove_all(&mut client).await;
    drop(client);
    crius.stop();
    drop(crius);
    let crius_fig = crius_fig.unwrap_or_else(|e| panic!("crius: {e}"));

    let mut ctd_fig = None;
    if Path::new("/usr/bin/containerd").exists() || Path::new("/usr/local/bin/containerd").exists()
    {
        let registry = Registry::start();
        let pause = ImageBuilder::new()
            .layer(busybox_layer(Compression::Gzip))
            .entrypoint(&["/bin/busybox", "sleep", "2147483647"])
            .build();
        let pause = push(&registry, "pause", "3.9", &pause).await.reference;
        match start_containerd(registry.addr(), &pause, &net.conf_dir) {
            Some(ctd) => {
                let channel = connect_unix(&ctd.socket).await;
                let mut images = ImageClient::new(channel.clone());
                pull_ok(&mut images, &pause).await;
                let mut client = RuntimeClient::new(channel);
                let r = measure(
                    "containerd",
                    &mut client,
                    ctd.child.id(),
                    Some(ctd.dir.path()),
                )
                .await;
                remove_all(&mut client).await;
                drop(client);
                drop(images);
                match r {
                    Ok(f) => ctd_fig = Some(f),
                    Err(e) => {
                        let log = std::fs::read_to_string(ctd.dir.path().join("containerd.log"))
                            .unwrap_or_default();
                        let lines: Vec<&str> = log.lines().collect();
                        eprintln!(
                            "containerd failed: {e}\n--- containerd log (tail) ---\n{}",
                            lines[lines.len().saturating_sub(40)..].join("\n")
                        );
                    }
                }
                drop(ctd);
            }
            None => eprintln!("containerd did not start: no comparison"),
        }
    } else {
        eprintln!("containerd not installed (apt-get install containerd): no comparison");
    }

    report(&crius_fig, ctd_fig.as_ref());
}

fn report(a: &Figures, b: Option<&Figures>) {
    println!(
        "\npod sandbox benchmark: {SEQUENTIAL} sequential cycles; {ROUNDS} rounds of {CONCURRENT} concurrent cycles; times in ms\n"
    );
    peer::header(40);
    let row = |what: &str, x: f64, y: Option<f64>| peer::row(40, what, x, y);
    type Pick = fn(&Figures) -> &Vec<f64>;
    let series: [(&str, Pick); 5] = [
        ("sequential RunPodSandbox", |f| &f.seq_run),
        ("sequential Stop+RemovePodSandbox", |f| &f.seq_sr),
        ("concurrent RunPodSandbox", |f| &f.conc_run),
        ("concurrent Stop+RemovePodSandbox", |f| &f.conc_sr),
        ("concurrent round (wall)", |f| &f.conc_wall),
    ];
    for (label, pick) in series {
        for (p, tag) in [(0.5, "median"), (0.9, "p90")] {
            row(
                &format!("{label} {tag}"),
                percentile(pick(a), p),
                b.map(|b| percentile(pick(b), p)),
            );
        }
    }
    println!();
    row(
        "host processes per pod (live, all)",
        a.procs_per_pod,
        b.map(|b| b.procs_per_pod),
    );
    let mb = |k: u64| k as f64 / 1024.0;
    row(
        "runtime PSS idle (MiB)",
        mb(a.idle_pss_kib),
        b.map(|b| mb(b.idle_pss_kib)),
    );
    row(
        &format!("runtime PSS with {HELD} pods (MiB)"),
        mb(a.held_pss_kib),
        b.map(|b| mb(b.held_pss_kib)),
    );
    row(
        "runtime processes idle",
        a.idle_procs as f64,
        b.map(|b| b.idle_procs as f64),
    );
    row(
        &format!("runtime processes with {HELD} pods"),
        a.held_procs as f64,
        b.map(|b| b.held_procs as f64),
    );
    println!(
        "\nruntime = crius daemon and its descendants; containerd daemon, its shims and their descendants (pause)"
    );
}
