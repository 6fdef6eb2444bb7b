//! The two runtimes under test, side by side, for the container and exec
//! benchmarks: crius on a temp socket and Debian's containerd (where
//! installed) with its own root, state, socket and pause image; the same
//! tonic client, CNI conflist and busybox image from a loopback registry.
//! A `Runner` holds one runtime, its figures and its first error, and
//! removes what is left (pods, daemon, mounts) when it finishes.
//!
//! The including crate must also include `tests/common` as `common`,
//! `support/host.rs` as `host` and `support/peer.rs` as `peer`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::containers::ctr;
use crate::common::cri::{ImageClient, pull_ok};
use crate::common::pods::{
    RuntimeClient, kubelet_namespaces, pod_config, remove_pod, run_pod, stop_pod,
};
use crate::common::*;
use crate::{host, peer};
use k8s_cri::v1::{
    ContainerConfig, CreateContainerRequest, ListPodSandboxRequest, PodSandboxConfig,
    RemoveContainerRequest, StartContainerRequest, StatusRequest, StopContainerRequest,
};

pub type Res<T> = Result<T, String>;

/// The sleeping container's command (also how its processes are recognised).
pub const SLEEP: &[&str] = &["sleep", "3600"];

pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: expected a number")),
        Err(_) => default,
    }
}

pub fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

pub fn percentile(v: &[f64], p: f64) -> f64 {
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
pub struct Target {
    pub rt: RuntimeClient,
    /// The daemon's pid.
    pub daemon: u32,
    /// `Crius(run_dir)` or `Containerd(dir of its socket, shims' -address)`.
    pub kind: Kind,
    pub image: String,
    /// Per-pod log directories live here.
    pub logs: PathBuf,
    /// Every container id created (to look for leftovers afterwards).
    pub created: Vec<String>,
}

pub enum Kind {
    Crius(PathBuf),
    Containerd(PathBuf),
}

/// A kubelet-like pod: pod-level network and IPC, container-level PID (no
/// shared PID namespace), a log directory.
pub fn bench_pod(logs: &Path, name: &str) -> PodSandboxConfig {
    let mut c = pod_config(name);
    c.log_directory = logs.join(name).display().to_string();
    kubelet_namespaces(&mut c);
    c
}

fn bench_ctr(image: &str) -> ContainerConfig {
    ctr("sleeper", image, SLEEP)
}

/// A running pod with its started container, and how long each step took.
pub struct Up {
    pub pod: String,
    pub ctr: String,
    pub runp: f64,
    pub create: f64,
    pub start: f64,
    pub whole: f64,
}

impl Target {
    /// A pod with one started `sleep 3600` container.
    pub async fn up(&mut self, name: &str) -> Res<Up> {
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

    pub async fn stop_ctr(&mut self, id: &str) -> Res<()> {
        self.rt
            .stop_container(StopContainerRequest {
                container_id: id.into(),
                timeout: 0,
            })
            .await
            .map(drop)
            .map_err(|e| format!("StopContainer {id}: {e:?}"))
    }

    pub async fn remove_ctr(&mut self, id: &str) -> Res<()> {
        self.rt
            .remove_container(RemoveContainerRequest {
                container_id: id.into(),
            })
            .await
            .map(drop)
            .map_err(|e| format!("RemoveContainer {id}: {e:?}"))
    }

    pub async fn down_pod(&mut self, id: &str) -> Res<()> {
        stop_pod(&mut self.rt, id)
            .await
            .map_err(|e| format!("StopPodSandbox {id}: {e:?}"))?;
        remove_pod(&mut self.rt, id)
            .await
            .map_err(|e| format!("RemovePodSandbox {id}: {e:?}"))
    }

    /// Stops and removes every pod the runtime still lists (with their
    /// containers), e.g. after a failure.
    pub async fn remove_all(&mut self) {
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

    /// Waits until the runtime reports NetworkReady (at most 20 s).
    pub async fn wait_network_ready(&mut self) -> Res<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = self
                .rt
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
}

/// Waits for writeback and for short-lived helpers to exit.
pub async fn settle() {
    let _ = tokio::task::spawn_blocking(|| Command::new("sync").status()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
}

// ---- the two runtimes ---------------------------------------------------

/// What a runtime under test owns; dropped after its client.
enum Guard {
    Crius(Daemon),
    Containerd(host::Containerd),
}

/// One runtime under test, its figures (`F`) and its first error.
pub struct Runner<F> {
    pub name: &'static str,
    pub t: Target,
    pub f: F,
    err: Option<String>,
    guard: Guard,
    _logs: tempfile::TempDir,
}

impl<F: Default> Runner<F> {
    /// No step has failed yet.
    pub fn ok(&self) -> bool {
        self.err.is_none()
    }

    pub fn fail(&mut self, e: String) {
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
    pub async fn finish(mut self) -> Option<F> {
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

pub async fn start_crius<F: Default>(net: &TestNet, registry: &Registry, image: &str) -> Runner<F> {
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
        f: F::default(),
        err: None,
        guard: Guard::Crius(crius),
        _logs: logs,
    }
}

pub async fn start_containerd<F: Default>(
    net: &TestNet,
    registry: &Registry,
    image: &str,
) -> Option<Runner<F>> {
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
        f: F::default(),
        err: None,
        guard: Guard::Containerd(ctd),
        _logs: logs,
    })
}

/// The test network, the registry with busybox pushed, and a runner for
/// crius and (where installed and it starts) containerd, in that order.
pub async fn start_both<F: Default>() -> (TestNet, Registry, Vec<Runner<F>>) {
    let net = TestNet::new();
    let registry = Registry::start();
    let image = push(&registry, "busybox", "latest", &busybox_image())
        .await
        .reference;
    let mut runners = vec![start_crius(&net, &registry, &image).await];
    runners.extend(start_containerd(&net, &registry, &image).await);
    (net, registry, runners)
}

/// Runs `step` for each runner still without error, `iters` times,
/// interleaved so that both runtimes see the same load on a shared machine;
/// the order alternates so that neither always goes first.
pub async fn interleave<F: Default>(
    runners: &mut [Runner<F>],
    iters: usize,
    mut step: impl AsyncFnMut(&mut Target, usize, &mut F) -> Res<()>,
) {
    let n = runners.len();
    for i in 0..iters {
        for k in 0..n {
            let r = &mut runners[(i + k) % n];
            if r.ok()
                && let Err(e) = step(&mut r.t, i, &mut r.f).await
            {
                r.fail(e);
            }
        }
    }
    eprintln!("{iters} iterations timed");
}

/// Finishes every runner (see `Runner::finish`); crius's figures (panics
/// if crius failed) and containerd's if it ran and succeeded.
pub async fn finish_all<F: Default>(runners: Vec<Runner<F>>) -> (F, Option<F>) {
    let mut figures = Vec::new();
    for r in runners {
        figures.push(r.finish().await);
    }
    let mut figures = figures.into_iter();
    let ours = figures
        .next()
        .flatten()
        .unwrap_or_else(|| panic!("crius failed (see above)"));
    (ours, figures.next().flatten())
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

// ---- output -------------------------------------------------------------

/// One series of a report: label, how to pick it from the figures, and the
/// target ratio of its median, if any.
pub type Series<'a, F> = (&'a str, fn(&F) -> &Vec<f64>, Option<f64>);

/// Median and p90 rows of each series, crius (`a`) against containerd
/// (`b`), with the target next to the median where there is one.
pub fn print_series<F>(width: usize, series: &[Series<'_, F>], a: &F, b: Option<&F>) {
    for (label, pick, target) in series {
        for (p, tag) in [(0.5, "median"), (0.9, "p90")] {
            let what = format!("{label} {tag}");
            let x = percentile(pick(a), p);
            let y = b.map(|b| percentile(pick(b), p));
            match target {
                Some(t) if p == 0.5 => host::row_target(width, &what, x, y, *t),
                _ => peer::row(width, &what, x, y),
            }
        }
    }
}
