//! Container benchmark: crius against containerd's CRI (where installed),
//! same tonic client, same CNI conflist (bridge + host-local + portmap +
//! bandwidth), same busybox-static image from a loopback docker-registry.
//!
//! Both daemons run side by side; their timed iterations are interleaved
//! (alternating which goes first) so that both see the same load on a shared
//! machine. Times (sequential calls, after a warm-up): RunPodSandbox,
//! CreateContainer, StartContainer, StopContainer, RemoveContainer, the whole
//! RunPodSandbox+CreateContainer+StartContainer, and the whole
//! StopContainer+StopPodSandbox+RemovePodSandbox. Each iteration runs two
//! pods: the first is torn down call by call (Stop/RemoveContainer timed
//! alone), the second as kubelet deletes a pod (stop+remove timed whole).
//! StopContainer uses timeout 0 (the container, `sleep 3600`, is pid 1 of its
//! PID namespace and ignores SIGTERM: both runtimes kill it at once).
//!
//! Memory: pods with one sleeping container each (`sleep 3600`) are held at
//! each configured count; PSS (`/proc/<pid>/smaps_rollup`) of the runtime's
//! processes — crius: the daemon and every process run from its binary
//! (monitors, a monitor zygote where there is one, infra); containerd:
//! the daemon, its shims and the pause processes (the containers' own
//! processes are not counted for either) — and the daemon's RSS.
//!
//! Environment: `CRIUS_BENCH_ITERS` (iterations, default 20),
//! `CRIUS_BENCH_PODS` (pod counts held for memory, default "10,100").
//! Prints figures; never fails on numbers.
//! Run: `bash hack/bench-containers.sh` (or `cargo bench --bench containers`), as root.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/host.rs"]
mod host;
#[path = "support/peer.rs"]
mod peer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::containers::ctr;
use common::cri::{ImageClient, pull_ok};
use common::pods::{RuntimeClient, pod_config, remove_pod, run_pod, stop_pod};
use common::*;
use k8s_cri::v1::{
    ContainerConfig, CreateContainerRequest, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    ListPodSandboxRequest, NamespaceMode, NamespaceOption, PodSandboxConfig,
    RemoveContainerRequest, StartContainerRequest, StatusRequest, StopContainerRequest,
};

type Res<T> = Result<T, String>;

/// Warm-up cycles before timing.
const WARMUP: usize = 2;
/// The sleeping container's command (also how its processes are recognised).
const SLEEP: &[&str] = &["sleep", "3600"];

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: expected a number")),
        Err(_) => default,
    }
}

/// `CRIUS_BENCH_PODS`, e.g. "10,100": ascending, non-zero counts.
fn pod_counts() -> Vec<usize> {
    let text = std::env::var("CRIUS_BENCH_PODS").unwrap_or_else(|_| "10,100".into());
    let mut v: Vec<usize> = text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("CRIUS_BENCH_PODS={text:?}: expected e.g. 10,100"))
        })
        .filter(|n| *n > 0)
        .collect();
    v.sort();
    v.dedup();
    v
}

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

// ---- one runtime under test --------------------------------------------

/// The client and what is needed to find the runtime's processes.
struct Target {
    rt: RuntimeClient,
    /// The daemon's pid.
    daemon: u32,
    /// `Crius(run_dir)` or `Containerd(dir of its socket, shims' -address)`.
    kind: Kind,
    image: String,
    /// Per-pod log directories live here.
    logs: PathBuf,
    /// Every container id created (to look for leftovers afterwards).
    created: Vec<String>,
}

enum Kind {
    Crius(PathBuf),
    Containerd(PathBuf),
}

/// A kubelet-like pod: pod-level network and IPC, container-level PID (no
/// shared PID namespace), a log directory.
fn bench_pod(logs: &Path, name: &str) -> PodSandboxConfig {
    let mut c = pod_config(name);
    c.log_directory = logs.join(name).display().to_string();
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

fn bench_ctr(image: &str) -> ContainerConfig {
    ctr("sleeper", image, SLEEP)
}

/// A running pod with its started container, and how long each step took.
struct Up {
    pod: String,
    ctr: String,
    runp: f64,
    create: f64,
    start: f64,
    whole: f64,
}

impl Target {
    async fn up(&mut self, name: &str) -> Res<Up> {
        let cfg = bench_pod(&self.logs, name);
        let t0 = Instant::now();
        let pod = run_pod(&mut self.rt, cfg.clone())
            .await
            .map_err(|e| format!("RunPodSandbox {name}: {e:?}"))?;
        let runp = ms(t0);
        let t = Instant::now();
        let ctr = self
            .rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(bench_ctr(&self.image)),
                sandbox_config: Some(cfg),
            })
            .await
            .map_err(|e| format!("CreateContainer in {name}: {e:?}"))?
            .into_inner()
            .container_id;
        let create = ms(t);
        self.created.push(ctr.clone());
        let t = Instant::now();
        self.rt
            .start_container(StartContainerRequest {
                container_id: ctr.clone(),
            })
            .await
            .map_err(|e| format!("StartContainer {ctr}: {e:?}"))?;
        let start = ms(t);
        Ok(Up {
            pod,
            ctr,
            runp,
            create,
            start,
            whole: ms(t0),
        })
    }

    async fn stop_ctr(&mut self, id: &str) -> Res<()> {
        self.rt
            .stop_container(StopContainerRequest {
                container_id: id.into(),
                timeout: 0,
            })
            .await
            .map(drop)
            .map_err(|e| format!("StopContainer {id}: {e:?}"))
    }

    async fn remove_ctr(&mut self, id: &str) -> Res<()> {
        self.rt
            .remove_container(RemoveContainerRequest {
                container_id: id.into(),
            })
            .await
            .map(drop)
            .map_err(|e| format!("RemoveContainer {id}: {e:?}"))
    }

    async fn down_pod(&mut self, id: &str) -> Res<()> {
        stop_pod(&mut self.rt, id)
            .await
            .map_err(|e| format!("StopPodSandbox {id}: {e:?}"))?;
        remove_pod(&mut self.rt, id)
            .await
            .map_err(|e| format!("RemovePodSandbox {id}: {e:?}"))
    }

    /// The runtime's own processes (pids): see the module doc.
    fn runtime_procs(&self) -> Vec<u32> {
        let table = host::processes();
        let workload = |pid: &u32| {
            table
                .get(pid)
                .is_some_and(|p| p.cmdline.trim_end() == SLEEP.join(" "))
        };
        let mut v = match &self.kind {
            Kind::Crius(run_dir) => {
                let exe = run_dir.join("crius").display().to_string();
                let run = run_dir.display().to_string();
                let mut roots: Vec<u32> = table
                    .iter()
                    .filter(|(_, p)| {
                        !p.zombie
                            && (p.exe == exe
                                || (p.cmdline.contains("monitor") && p.cmdline.contains(&run)))
                    })
                    .map(|(pid, _)| *pid)
                    .collect();
                roots.push(self.daemon);
                host::tree(&table, &roots)
            }
            Kind::Containerd(dir) => {
                let mut roots = host::shims_of(&table, dir);
                roots.push(self.daemon);
                host::tree(&table, &roots)
            }
        };
        v.retain(|p| !workload(p));
        v
    }

    /// Prints the runtime's processes grouped by command line (with
    /// `CRIUS_BENCH_VERBOSE`): what the memory figures count.
    fn list_procs(&self) {
        let table = host::processes();
        let mut groups: HashMap<String, (usize, u64)> = HashMap::new();
        for pid in self.runtime_procs() {
            let cmd = table
                .get(&pid)
                .map(|p| p.cmdline.clone())
                .unwrap_or_default();
            // Ids and paths vary per pod: keep the first two words.
            let key: Vec<&str> = cmd.split_whitespace().take(2).collect();
            let g = groups.entry(key.join(" ")).or_default();
            g.0 += 1;
            g.1 += host::pss_kib(pid);
        }
        for (cmd, (n, pss)) in groups {
            eprintln!("  {n:>4} x {cmd}  (PSS {pss} KiB in all)");
        }
    }

    fn memory(&self) -> Mem {
        let procs = self.runtime_procs();
        Mem {
            pss_kib: procs.iter().map(|p| host::pss_kib(*p)).sum(),
            daemon_pss_kib: host::pss_kib(self.daemon),
            procs: procs.len(),
            daemon_rss_kib: host::rss_kib(self.daemon),
            host_procs: host::live_processes(),
        }
    }

    /// Stops and removes every pod the runtime still lists (with their
    /// containers), e.g. after a failure.
    async fn remove_all(&mut self) {
        let Ok(r) = self
            .rt
            .list_pod_sandbox(ListPodSandboxRequest { filter: None })
            .await
        else {
            return;
        };
        for p in r.into_inner().items {
            let _ = stop_pod(&mut self.rt, &p.id).await;
            let _ = remove_pod(&mut self.rt, &p.id).await;
        }
    }
}

// ---- measurement --------------------------------------------------------

#[derive(Clone, Copy, Default)]
struct Mem {
    pss_kib: u64,
    daemon_pss_kib: u64,
    procs: usize,
    daemon_rss_kib: u64,
    /// Live processes on the whole host.
    host_procs: usize,
}

#[derive(Default)]
struct Figures {
    runp: Vec<f64>,
    create: Vec<f64>,
    start: Vec<f64>,
    stop: Vec<f64>,
    remove: Vec<f64>,
    /// RunPodSandbox + CreateContainer + StartContainer.
    up: Vec<f64>,
    /// StopContainer + StopPodSandbox + RemovePodSandbox.
    down: Vec<f64>,
    idle: Mem,
    /// (pods held, memory then).
    held: Vec<(usize, Mem)>,
}

/// Waits for writeback and for short-lived helpers to exit.
async fn settle() {
    let _ = tokio::task::spawn_blocking(|| Command::new("sync").status()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
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

/// Warm-up: a few full cycles, untimed.
async fn warm_up(t: &mut Target) -> Res<()> {
    wait_network_ready(&mut t.rt).await?;
    for i in 0..WARMUP {
        let u = t.up(&format!("warm-{i}")).await?;
        t.stop_ctr(&u.ctr).await?;
        t.down_pod(&u.pod).await?;
    }
    Ok(())
}

/// One timed iteration: two pods, the first torn down call by call, the
/// second as kubelet deletes a pod.
async fn iteration(t: &mut Target, i: usize, f: &mut Figures) -> Res<()> {
    let u = t.up(&format!("steps-{i}")).await?;
    f.runp.push(u.runp);
    f.create.push(u.create);
    f.start.push(u.start);
    f.up.push(u.whole);
    let c = Instant::now();
    t.stop_ctr(&u.ctr).await?;
    f.stop.push(ms(c));
    let c = Instant::now();
    t.remove_ctr(&u.ctr).await?;
    f.remove.push(ms(c));
    t.down_pod(&u.pod).await?;

    let u = t.up(&format!("whole-{i}")).await?;
    f.runp.push(u.runp);
    f.create.push(u.create);
    f.start.push(u.start);
    f.up.push(u.whole);
    let c = Instant::now();
    t.stop_ctr(&u.ctr).await?;
    t.down_pod(&u.pod).await?;
    f.down.push(ms(c));
    Ok(())
}

/// Memory idle, then with each count of pods held; the pods are removed
/// afterwards.
async fn hold(name: &str, t: &mut Target, counts: &[usize], f: &mut Figures) -> Res<()> {
    settle().await;
    f.idle = t.memory();
    let mut held: Vec<String> = Vec::new();
    for &n in counts {
        while held.len() < n {
            let u = t.up(&format!("held-{}", held.len())).await?;
            held.push(u.pod);
        }
        settle().await;
        let m = t.memory();
        eprintln!(
            "{name}: {n} pods held: runtime PSS {:.1} MiB in {} processes, daemon RSS {:.1} MiB",
            m.pss_kib as f64 / 1024.0,
            m.procs,
            m.daemon_rss_kib as f64 / 1024.0
        );
        if std::env::var_os("CRIUS_BENCH_VERBOSE").is_some() {
            t.list_procs();
        }
        f.held.push((n, m));
    }
    for id in &held {
        t.down_pod(id).await?;
    }
    Ok(())
}

// ---- the two runtimes ---------------------------------------------------

/// What a runtime under test owns; dropped after its client.
enum Guard {
    Crius(Daemon),
    Containerd(host::Containerd),
}

/// One runtime under test, its figures and its first error.
struct Runner {
    name: &'static str,
    t: Target,
    f: Figures,
    err: Option<String>,
    guard: Guard,
    _logs: tempfile::TempDir,
}

impl Runner {
    /// No step has failed yet.
    fn ok(&self) -> bool {
        self.err.is_none()
    }

    fn fail(&mut self, e: String) {
        eprintln!("{}: failed: {e}", self.name);
        self.err = Some(e);
    }

    /// The daemon's log tail (after a failure).
    fn log_tail(&self) -> String {
        match &self.guard {
            Guard::Crius(d) => {
                let log = d.log();
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(40)..].join("\n")
            }
            Guard::Containerd(c) => c.log_tail(40),
        }
    }

    /// Removes what is left, stops the daemon, reports crius's logged
    /// warnings and leaked cgroups; the figures if the run succeeded.
    async fn finish(mut self) -> Option<Figures> {
        self.t.remove_all().await;
        if let Some(e) = &self.err {
            eprintln!(
                "{} failed: {e}\n--- {} log (tail) ---\n{}",
                self.name,
                self.name,
                self.log_tail()
            );
        }
        let created = std::mem::take(&mut self.t.created);
        let Runner {
            t, f, err, guard, ..
        } = self;
        drop(t);
        match guard {
            Guard::Crius(mut d) => {
                report_crius_log(&d.log());
                d.stop();
                drop(d);
                report_leftover_cgroups(&created);
            }
            Guard::Containerd(c) => drop(c),
        }
        err.is_none().then_some(f)
    }
}

/// Warnings and errors crius logged during the run (a clean run has none):
/// shown, so that a defect does not hide behind figures.
fn report_crius_log(log: &str) {
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    if !bad.is_empty() {
        eprintln!(
            "crius logged {} warning/error line(s), first ones:\n{}",
            bad.len(),
            bad[..bad.len().min(5)].join("\n")
        );
    }
}

/// Config for crius: the harness's paths, the network's `[cni]` table, the
/// registry as insecure, logging at info (containerd's default).
fn crius_daemon(net: &TestNet, registry: &Registry) -> Daemon {
    let mut d = Daemon::configure_raw(|p| {
        format!(
            "socket = {:?}\nstate_dir = {:?}\nrun_dir = {:?}\n{}\n{}\n[log]\nlevel = \"info\"\n",
            p.socket.display().to_string(),
            p.state_dir.display().to_string(),
            p.run_dir.display().to_string(),
            net.toml(),
            insecure_registries(&[registry.addr()]),
        )
    });
    d.launch();
    d
}

fn logs_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("crius-bench-logs-")
        .tempdir()
        .expect("log tempdir")
}

async fn start_crius(net: &TestNet, registry: &Registry, image: &str) -> Runner {
    let logs = logs_dir();
    let crius = crius_daemon(net, registry);
    let daemon = crius.pid().expect("crius pid");
    let channel = crius.channel().await;
    pull_ok(&mut ImageClient::new(channel.clone()), image).await;
    Runner {
        name: "crius",
        t: Target {
            rt: RuntimeClient::new(channel),
            daemon,
            kind: Kind::Crius(crius.run_dir().to_owned()),
            image: image.to_owned(),
            logs: logs.path().to_owned(),
            created: Vec::new(),
        },
        f: Figures::default(),
        err: None,
        guard: Guard::Crius(crius),
        _logs: logs,
    }
}

async fn start_containerd(net: &TestNet, registry: &Registry, image: &str) -> Option<Runner> {
    if peer::binary().is_none() {
        eprintln!("containerd not installed (apt-get install containerd): crius figures only");
        return None;
    }
    let pause = ImageBuilder::new()
        .layer(busybox_layer(Compression::Gzip))
        .entrypoint(&["/bin/busybox", "sleep", "2147483647"])
        .build();
    let pause = push(registry, "pause", "3.9", &pause).await.reference;
    let logs = logs_dir();
    let Some(ctd) = host::start_containerd(registry.addr(), &pause, &net.conf_dir) else {
        eprintln!("containerd did not start: crius figures only");
        return None;
    };
    let channel = connect_unix(&ctd.socket).await;
    let mut images = ImageClient::new(channel.clone());
    pull_ok(&mut images, &pause).await;
    pull_ok(&mut images, image).await;
    Some(Runner {
        name: "containerd",
        t: Target {
            rt: RuntimeClient::new(channel),
            daemon: ctd.child.id(),
            kind: Kind::Containerd(ctd.dir.path().to_owned()),
            image: image.to_owned(),
            logs: logs.path().to_owned(),
            created: Vec::new(),
        },
        f: Figures::default(),
        err: None,
        guard: Guard::Containerd(ctd),
        _logs: logs,
    })
}

/// Container cgroups (`<hierarchy>/crius/<id>`) still present after all
/// pods were removed and the daemon stopped: a leak in crius, reported.
fn report_leftover_cgroups(ids: &[String]) {
    let mut left = Vec::new();
    let roots = std::fs::read_dir("/sys/fs/cgroup")
        // Skip symlinks (`cpu` -> `cpu,cpuacct`): each hierarchy once.
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for id in ids {
        for root in roots
            .iter()
            .chain(std::iter::once(&PathBuf::from("/sys/fs/cgroup")))
        {
            let p = root.join("crius").join(id);
            if p.is_dir() {
                left.push(p);
            }
        }
    }
    if !left.is_empty() {
        eprintln!(
            "crius left {} container cgroup dir(s) after removing its pods, e.g. {}",
            left.len(),
            left[0].display()
        );
    }
}

#[tokio::main]
async fn main() {
    let iters = env_usize("CRIUS_BENCH_ITERS", 20).max(1);
    let counts = pod_counts();
    let net = TestNet::new();
    let registry = Registry::start();
    let image = push(&registry, "busybox", "latest", &busybox_image())
        .await
        .reference;

    let mut runners = vec![start_crius(&net, &registry, &image).await];
    runners.extend(start_containerd(&net, &registry, &image).await);

    for r in runners.iter_mut() {
        if let Err(e) = warm_up(&mut r.t).await {
            r.fail(e);
        }
    }
    settle().await;
    // Interleaved, so that both runtimes see the same load on a shared
    // machine; the order alternates so that neither always goes first.
    for i in 0..iters {
        let n = runners.len();
        for k in 0..n {
            let r = &mut runners[(i + k) % n];
            if r.ok()
                && let Err(e) = iteration(&mut r.t, i, &mut r.f).await
            {
                r.fail(e);
            }
        }
    }
    eprintln!("{iters} iterations timed");
    for r in runners.iter_mut() {
        if r.ok()
            && let Err(e) = hold(r.name, &mut r.t, &counts, &mut r.f).await
        {
            r.fail(e);
        }
    }

    let mut figures = Vec::new();
    for r in runners {
        figures.push(r.finish().await);
    }
    let mut figures = figures.into_iter();
    let crius_fig = figures
        .next()
        .flatten()
        .unwrap_or_else(|| panic!("crius failed (see above)"));
    let ctd_fig = figures.next().flatten();
    report(iters, &crius_fig, ctd_fig.as_ref());
}

// ---- report -------------------------------------------------------------

const W: usize = 46;

fn report(iters: usize, a: &Figures, b: Option<&Figures>) {
    println!(
        "\ncontainer benchmark: {iters} iterations x 2 pods, one `sleep 3600` container each; times in ms\n"
    );
    peer::header(W);
    let row = |what: &str, x: f64, y: Option<f64>| peer::row(W, what, x, y);
    type Pick = fn(&Figures) -> &Vec<f64>;
    let series: [(&str, Pick, Option<f64>); 7] = [
        ("RunPodSandbox", |f| &f.runp, None),
        ("CreateContainer", |f| &f.create, None),
        ("StartContainer", |f| &f.start, None),
        ("StopContainer (timeout 0)", |f| &f.stop, None),
        ("RemoveContainer", |f| &f.remove, None),
        ("runp+create+start", |f| &f.up, Some(0.3)),
        (
            "stop+remove (StopCtr+StopPod+RemovePod)",
            |f| &f.down,
            Some(0.3),
        ),
    ];
    for (label, pick, target) in series {
        for (p, tag) in [(0.5, "median"), (0.9, "p90")] {
            let x = percentile(pick(a), p);
            let y = b.map(|b| percentile(pick(b), p));
            match target {
                Some(t) if p == 0.5 => host::row_target(W, &format!("{label} {tag}"), x, y, t),
                _ => row(&format!("{label} {tag}"), x, y),
            }
        }
    }

    println!("\nmemory (MiB; PSS of the runtime's processes, RSS of the daemon)\n");
    peer::header(W);
    let mb = |k: u64| k as f64 / 1024.0;
    row(
        "runtime PSS, 0 pods",
        mb(a.idle.pss_kib),
        b.map(|b| mb(b.idle.pss_kib)),
    );
    row(
        "daemon RSS, 0 pods",
        mb(a.idle.daemon_rss_kib),
        b.map(|b| mb(b.idle.daemon_rss_kib)),
    );
    let theirs: HashMap<usize, Mem> = b
        .map(|b| b.held.iter().copied().collect())
        .unwrap_or_default();
    for &(n, m) in &a.held {
        let p = theirs.get(&n).copied();
        row(
            &format!("runtime PSS, {n} pods"),
            mb(m.pss_kib),
            p.map(|p| mb(p.pss_kib)),
        );
        let per_pod =
            |m: &Mem, idle: &Mem| (m.pss_kib as f64 - idle.pss_kib as f64) / n as f64 / 1024.0;
        host::row_target(
            W,
            &format!("runtime PSS per pod, {n} pods"),
            per_pod(&m, &a.idle),
            b.zip(p).map(|(b, p)| per_pod(&p, &b.idle)),
            0.2,
        );
        // Growth of the PSS outside the daemon (crius's idle monitor
        // zygote, if any, is in the baseline).
        let others = |m: &Mem, idle: &Mem| {
            let out = |m: &Mem| m.pss_kib as f64 - m.daemon_pss_kib as f64;
            (out(m) - out(idle)) / n as f64 / 1024.0
        };
        row(
            &format!("monitors/shims+pause PSS per pod, {n} pods"),
            others(&m, &a.idle),
            b.zip(p).map(|(b, p)| others(&p, &b.idle)),
        );
        row(
            &format!("daemon RSS, {n} pods"),
            mb(m.daemon_rss_kib),
            p.map(|p| mb(p.daemon_rss_kib)),
        );
        row(
            &format!("runtime processes, {n} pods"),
            m.procs as f64,
            p.map(|p| p.procs as f64),
        );
        let host_per_pod =
            |m: &Mem, idle: &Mem| (m.host_procs as f64 - idle.host_procs as f64) / n as f64;
        row(
            &format!("host processes per pod, {n} pods"),
            host_per_pod(&m, &a.idle),
            b.zip(p).map(|(b, p)| host_per_pod(&p, &b.idle)),
        );
    }
    println!(
        "\nruntime = crius: daemon + monitors (+ zygote) + infra; containerd: daemon + shims + pause.\n\
         The containers' own `sleep 3600` processes are excluded; per pod = (PSS at n - PSS at 0) / n.\n\
         Targets (issue 4): runp+create+start <= 0.3x, stop+remove <= 0.3x, per-pod memory <= 0.2x containerd."
    );
}
