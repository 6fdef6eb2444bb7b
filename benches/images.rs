//! Image pull benchmark: crius against containerd (where installed), same
//! CRI client, same loopback registry. Prints medians and ratios; never
//! fails on numbers. Run: `bash hack/bench-images.sh` (or `cargo bench --bench images`).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/peer.rs"]
mod peer;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::cri::{ImageClient, pull_ok, remove};
use common::*;

const ROUNDS: usize = 7;

struct Peer {
    name: &'static str,
    client: ImageClient,
    pid: u32,
}

fn rss_kib(pid: u32) -> u64 {
    peer::proc_kib(pid, "status", "VmRSS")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// busybox with a file unique to `round`, so every round's layer is new
/// content for the runtime (a cold pull never reuses a layer).
fn busybox_round(round: u64) -> Image {
    let layer = busybox_layer_builder()
        .file("etc/bench-round", format!("{round}\n"), 0o644)
        .build(Compression::Gzip);
    ImageBuilder::new().layer(layer).build()
}

/// A realistic five-layer image: busybox, then four layers each with many
/// small files and one large incompressible file; unique per `round`.
fn five_layer_image(round: u64) -> Image {
    let mut b = ImageBuilder::new().layer(
        busybox_layer_builder()
            .file("etc/bench-round", format!("{round}\n"), 0o644)
            .build(Compression::Gzip),
    );
    for i in 0..4u64 {
        let mut l = LayerBuilder::new();
        for f in 0..300 {
            l = l.file(
                &format!("usr/share/bench{i}/f{f}.txt"),
                format!("round {round} layer {i} file {f}\n").repeat(60),
                0o644,
            );
        }
        l = l.file(
            &format!("usr/lib/bench{i}.bin"),
            random_bytes(round * 16 + i + 1, 6 << 20),
            0o755,
        );
        b = b.layer(l.build(Compression::Gzip));
    }
    b.build()
}

struct Containerd {
    child: Child,
    _dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_containerd(registry: &str) -> Option<Containerd> {
    let bin = peer::binary()?;
    let dir = tempfile::tempdir().ok()?;
    let d = dir.path();
    let cfg = format!(
        r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{sock}"
[plugins."io.containerd.grpc.v1.cri".registry.mirrors."{registry}"]
  endpoint = ["http://{registry}"]
"#,
        root = d.join("root").display(),
        state = d.join("state").display(),
        sock = d.join("containerd.sock").display(),
    );
    let (child, socket) = peer::spawn(bin, d, &cfg)?;
    Some(Containerd {
        child,
        _dir: dir,
        socket,
    })
}

/// Flushes dirty pages (the registry's pushes, the previous round's
/// unpacking) so writeback does not land inside a timed pull.
async fn settle() {
    let _ = tokio::task::spawn_blocking(|| Command::new("sync").status()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
}

struct Figures {
    idle_rss_kib: u64,
    after_rss_kib: u64,
    cold: Vec<(String, f64)>,
    warm: Vec<(String, f64)>,
}

/// Cold: the first pull of an image whose layers the runtime has never
/// seen (a fresh image per round, so no delete/re-create cycle of the same
/// files skews either runtime). Warm: the same pull again.
async fn measure(peer: &mut Peer, images: &[(&str, Vec<String>)]) -> Figures {
    settle().await;
    let idle_rss_kib = rss_kib(peer.pid);
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for (label, rounds) in images {
        let mut c = Vec::new();
        let mut w = Vec::new();
        for image in rounds {
            settle().await;
            let t = Instant::now();
            pull_ok(&mut peer.client, image).await;
            c.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            pull_ok(&mut peer.client, image).await;
            w.push(t.elapsed().as_secs_f64() * 1e3);
        }
        for image in rounds {
            let _ = remove(&mut peer.client, image).await;
        }
        cold.push((label.to_string(), median(c)));
        warm.push((label.to_string(), median(w)));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_rss_kib = rss_kib(peer.pid);
    eprintln!("{}: done", peer.name);
    Figures {
        idle_rss_kib,
        after_rss_kib,
        cold,
        warm,
    }
}

#[tokio::main]
async fn main() {
    let registry = Registry::start();
    let (mut small, mut five) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS as u64 {
        let tag = round.to_string();
        small.push(
            push(&registry, "bench/busybox", &tag, &busybox_round(round))
                .await
                .reference,
        );
        five.push(
            push(&registry, "bench/five", &tag, &five_layer_image(round))
                .await
                .reference,
        );
    }
    let images = [("busybox (1 layer)", small), ("five layers (~25 MB)", five)];

    let mut crius = Daemon::start("");
    let mut peer = Peer {
        name: "crius",
        client: crius.image_client().await,
        pid: crius.pid().expect("crius pid"),
    };
    let crius_fig = measure(&mut peer, &images).await;
    crius.stop();

    let ctd = start_containerd(registry.addr());
    let ctd_fig = match &ctd {
        Some(c) => {
            let mut peer = Peer {
                name: "containerd",
                client: ImageClient::new(connect_unix(&c.socket).await),
                pid: c.child.id(),
            };
            Some(measure(&mut peer, &images).await)
        }
        None => {
            eprintln!("containerd not installed (apt-get install containerd): no comparison");
            None
        }
    };

    println!("\nimage pull benchmark: median of {ROUNDS} rounds, loopback registry, times in ms\n");
    peer::header(26);
    let row = |what: &str, a: f64, b: Option<f64>| peer::row(26, what, a, b);
    for (i, (label, ms)) in crius_fig.cold.iter().enumerate() {
        row(
            &format!("cold {label}"),
            *ms,
            ctd_fig.as_ref().map(|f| f.cold[i].1),
        );
    }
    for (i, (label, ms)) in crius_fig.warm.iter().enumerate() {
        row(
            &format!("warm {label}"),
            *ms,
            ctd_fig.as_ref().map(|f| f.warm[i].1),
        );
    }
    let mb = |k: u64| k as f64 / 1024.0;
    row(
        "idle RSS (MiB)",
        mb(crius_fig.idle_rss_kib),
        ctd_fig.as_ref().map(|f| mb(f.idle_rss_kib)),
    );
    row(
        "RSS after pulls (MiB)",
        mb(crius_fig.after_rss_kib),
        ctd_fig.as_ref().map(|f| mb(f.after_rss_kib)),
    );
}
