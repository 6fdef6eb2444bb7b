//! Pod sandbox benchmark: crius against containerd's CRI (where installed),
//! same tonic client, same CNI conflist (bridge + host-local + portmap).
//! Sequential and concurrent RunPodSandbox → StopPodSandbox →
//! RemovePodSandbox cycles, processes per pod, and PSS with 10 pods.
//! Prints figures; never fails on numbers.
//! Run: `bash hack/bench-pods.sh` (or `cargo bench --bench pods`), as root.

#[path = "../tests/common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "support/host.rs"]
mod host;
#[path = "support/peer.rs"]
mod peer;
#[allow(dead_code)]
#[path = "support/runtimes.rs"]
mod runtimes;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cri::{ImageClient, pull_ok};
use common::pods::{RuntimeClient, kubelet_namespaces, pod_config, remove_pod, run_pod, stop_pod};
use common::*;
use k8s_cri::v1::{ListPodSandboxRequest, PodSandboxConfig, StatusRequest};

/// Sequential cycles measured (after a warm-up).
const SEQUENTIAL: usize = 30;
/// Pods run at once in a concurrent round.
const CONCURRENT: usize = 20;
/// Concurrent rounds.
const ROUNDS: usize = 3;
/// Pods held while processes and memory are counted.
const HELD: usize = 10;

use host::{live_processes, processes, pss_kib, shims_of, start_containerd, tree};
use runtimes::{Res, ms, percentile, settle};

/// A kubelet-like pod: pod-level network and IPC, container-level PID (no
/// shared PID namespace), no log directory (nothing left under /var/log).
fn bench_pod(name: &str) -> PodSandboxConfig {
    let mut c = pod_config(name);
    c.log_directory = String::new();
    kubelet_namespaces(&mut c);
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
