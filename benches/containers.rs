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
#[path = "support/runtimes.rs"]
mod runtimes;

use std::collections::HashMap;
use std::time::Instant;

use runtimes::{Kind, Res, SLEEP, Target, env_usize, interleave, ms, settle};

/// Warm-up cycles before timing.
const WARMUP: usize = 2;

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

// ---- memory of one runtime -------------------------------------------

impl Target {
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

/// Warm-up: a few full cycles, untimed.
async fn warm_up(t: &mut Target) -> Res<()> {
    t.wait_network_ready().await?;
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

#[tokio::main]
async fn main() {
    let iters = env_usize("CRIUS_BENCH_ITERS", 20).max(1);
    let counts = pod_counts();
    let (_net, _registry, mut runners) = runtimes::start_both::<Figures>().await;

    for r in runners.iter_mut() {
        if let Err(e) = warm_up(&mut r.t).await {
            r.fail(e);
        }
    }
    settle().await;
    interleave(&mut runners, iters, iteration).await;
    for r in runners.iter_mut() {
        if r.ok()
            && let Err(e) = hold(r.name, &mut r.t, &counts, &mut r.f).await
        {
            r.fail(e);
        }
    }

    let (crius_fig, ctd_fig) = runtimes::finish_all(runners).await;
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
    let series: [runtimes::Series<Figures>; 7] = [
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
    runtimes::print_series(W, &series, a, b);

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
