//! Stats benchmark: ListContainerStats with many running containers, crius
//! against containerd's CRI (where installed), same tonic client, CNI
//! conflist and busybox image (see `support/runtimes.rs`).
//!
//! Each runtime gets `CRIUS_BENCH_PODS` pods (default 10) of
//! `CRIUS_BENCH_PER_POD` (default 10) running `sleep 3600` containers; then
//! `CRIUS_BENCH_ITERS` (default 50) ListContainerStats calls (no filter)
//! each, interleaved between the runtimes, after a few untimed ones. Every
//! response must list all the containers with CPU and memory figures.
//! kubelet calls this every 10 s; the target is <= 0.5x containerd.
//! Prints median and p90; never fails on numbers.
//! Run: `bash hack/bench-stats.sh` (or `cargo bench --bench stats`), as root.

#[path = "../tests/common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "support/host.rs"]
mod host;
#[allow(dead_code)]
#[path = "support/peer.rs"]
mod peer;
#[allow(dead_code)]
#[path = "support/runtimes.rs"]
mod runtimes;

use std::time::Instant;

use common::containers::ctr;
use common::pods::run_pod;
use k8s_cri::v1::{CreateContainerRequest, ListContainerStatsRequest, StartContainerRequest};
use runtimes::{Res, SLEEP, Target, env_usize, ms, settle};

/// Untimed calls before timing (first CPU samples, caches).
const WARMUP: usize = 3;

#[derive(Default)]
struct Figures {
    list: Vec<f64>,
    /// Time to bring all pods and containers up, ms.
    setup: f64,
}

async fn populate(t: &mut Target, pods: usize, per_pod: usize, f: &mut Figures) -> Res<()> {
    t.wait_network_ready().await?;
    let t0 = Instant::now();
    for p in 0..pods {
        let cfg = runtimes::bench_pod(&t.logs, &format!("stats-{p}"));
        let id = run_pod(&mut t.rt, cfg.clone())
            .await
            .map_err(|e| format!("RunPodSandbox stats-{p}: {e:?}"))?;
        for c in 0..per_pod {
            let ctr_id =
                t.rt.create_container(CreateContainerRequest {
                    pod_sandbox_id: id.clone(),
                    config: Some(ctr(&format!("c{c}"), &t.image, SLEEP)),
                    sandbox_config: Some(cfg.clone()),
                })
                .await
                .map_err(|e| format!("CreateContainer c{c} in stats-{p}: {e:?}"))?
                .into_inner()
                .container_id;
            t.created.push(ctr_id.clone());
            t.rt.start_container(StartContainerRequest {
                container_id: ctr_id.clone(),
            })
            .await
            .map_err(|e| format!("StartContainer {ctr_id}: {e:?}"))?;
        }
    }
    f.setup = ms(t0);
    Ok(())
}

/// One unfiltered ListContainerStats, checked: `want` containers, each
/// with CPU and memory figures.
async fn list(t: &mut Target, want: usize) -> Res<f64> {
    let t0 = Instant::now();
    let stats =
        t.rt.list_container_stats(ListContainerStatsRequest { filter: None })
            .await
            .map_err(|e| format!("ListContainerStats: {e:?}"))?
            .into_inner()
            .stats;
    let took = ms(t0);
    if stats.len() != want {
        return Err(format!(
            "ListContainerStats listed {} containers, want {want}",
            stats.len()
        ));
    }
    let complete = stats.iter().all(|s| {
        s.cpu
            .as_ref()
            .and_then(|c| c.usage_core_nano_seconds.as_ref())
            .is_some()
            && s.memory
                .as_ref()
                .and_then(|m| m.working_set_bytes.as_ref())
                .is_some()
    });
    if !complete {
        return Err("a container's stats lack CPU or memory figures".into());
    }
    Ok(took)
}

#[tokio::main]
async fn main() {
    let pods = env_usize("CRIUS_BENCH_PODS", 10).max(1);
    let per_pod = env_usize("CRIUS_BENCH_PER_POD", 10).max(1);
    let iters = env_usize("CRIUS_BENCH_ITERS", 50).max(1);
    let want = pods * per_pod;
    let (_net, _registry, mut runners) = runtimes::start_both::<Figures>().await;

    for r in runners.iter_mut() {
        let res = populate(&mut r.t, pods, per_pod, &mut r.f).await;
        if let Err(e) = res {
            r.fail(e);
            continue;
        }
        eprintln!(
            "{}: {want} containers in {pods} pods up in {:.1} s",
            r.name,
            r.f.setup / 1e3
        );
        for _ in 0..WARMUP {
            if let Err(e) = list(&mut r.t, want).await {
                r.fail(e);
                break;
            }
        }
    }
    settle().await;
    runtimes::interleave(
        &mut runners,
        iters,
        async |t: &mut Target, _, f: &mut Figures| {
            f.list.push(list(t, want).await?);
            Ok(())
        },
    )
    .await;

    let (a, b) = runtimes::finish_all(runners).await;
    const W: usize = 40;
    println!(
        "\nstats benchmark: ListContainerStats with {want} running containers in {pods} pods, {iters} calls; times in ms\n"
    );
    peer::header(W);
    let series: [runtimes::Series<Figures>; 1] = [("ListContainerStats", |f| &f.list, Some(0.5))];
    runtimes::print_series(W, &series, &a, b.as_ref());
    println!("\nTarget (issue 6): ListContainerStats median <= 0.5x containerd.");
}
