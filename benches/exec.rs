//! Exec benchmark: crius against containerd's CRI (where installed), same
//! tonic client, CNI conflist and busybox-static image from a loopback
//! docker-registry (the setup of the container benchmark, shared in
//! `support/runtimes.rs`).
//!
//! Each runtime runs one pod with one `sleep 3600` container; then, with the
//! iterations interleaved between the runtimes (alternating which goes
//! first), each iteration times:
//!  - ExecSync `true` (timeout 10 s);
//!  - ExecSync `echo hello`, its output checked;
//!  - Exec `echo hi` over the streaming server: the Exec RPC, dialing the
//!    URL, the SPDY/3.1 upgrade (v4.channel.k8s.io), opening the error and
//!    stdout streams and reading until the output and the exit status have
//!    arrived (both checked) — the round trip to the last byte.
//!
//! The first call of an iteration is the slowest for both runtimes (see
//! `CRIUS_BENCH_VERBOSE`): ExecSync `true` comes first, so it reads higher
//! than `echo hello`.
//!
//! Target (issue 5): ExecSync <= 0.5x containerd.
//! Environment: `CRIUS_BENCH_ITERS` (iterations, default 50),
//! `CRIUS_BENCH_VERBOSE` (also print each iteration's times).
//! Prints figures; never fails on numbers.
//! Run: `bash hack/bench-exec.sh` (or `cargo bench --bench exec`), as root.

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

use k8s_cri::v1::{ExecRequest, ExecSyncRequest};
use runtimes::{Res, Target, env_usize, interleave, ms, settle};

/// Untimed rounds of each exec before timing.
const WARMUP: usize = 3;
/// The streaming protocol kubelet speaks.
const V4: &str = "v4.channel.k8s.io";

#[derive(Default)]
struct Figures {
    /// The exec target: the pod's running container.
    ctr: String,
    /// ExecSync `true`.
    sync_true: Vec<f64>,
    /// ExecSync `echo hello`.
    sync_echo: Vec<f64>,
    /// Exec + SPDY session of `echo hi`, to the last byte.
    stream: Vec<f64>,
}

/// ExecSync `cmd` in `ctr`; its stdout (Err on failure or non-zero exit).
async fn exec_sync(t: &mut Target, ctr: &str, cmd: &[&str]) -> Res<Vec<u8>> {
    let r =
        t.rt.exec_sync(ExecSyncRequest {
            container_id: ctr.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 10,
        })
        .await
        .map_err(|e| format!("ExecSync {cmd:?}: {e:?}"))?
        .into_inner();
    if r.exit_code != 0 {
        return Err(format!(
            "ExecSync {cmd:?}: exit code {}, stderr {:?}",
            r.exit_code,
            String::from_utf8_lossy(&r.stderr)
        ));
    }
    Ok(r.stdout)
}

/// One streamed `echo hi`: Exec, then the SPDY session until its output and
/// its exit status have arrived; the time from the Exec RPC to that last
/// byte (ms).
///
/// The session is read with `Session::next_data` rather than `Session::run`:
/// containerd ends the streams with RST_STREAM (CANCEL), not FIN, which
/// `run` does not accept. The stream ends (FIN/RST) after the status are
/// not awaited, for either runtime.
async fn exec_stream(t: &mut Target, ctr: &str) -> Res<f64> {
    let t0 = Instant::now();
    let url =
        t.rt.exec(ExecRequest {
            container_id: ctr.into(),
            cmd: vec!["echo".into(), "hi".into()],
            tty: false,
            stdin: false,
            stdout: true,
            stderr: false,
        })
        .await
        .map_err(|e| format!("Exec: {e:?}"))?
        .into_inner()
        .url;
    if !url.starts_with("http://") {
        return Err(format!("Exec URL {url:?} is not an absolute http:// URL"));
    }
    // The test client panics on protocol errors: run it as a task so that a
    // panic becomes this runtime's error (and everything is cleaned up).
    let session = tokio::spawn(async move {
        let mut s = common::spdy::connect(&url, &[V4])
            .await
            .map_err(|r| format!("upgrade of {url} refused: {} {}", r.status, r.body))?;
        s.open("error").await;
        s.open("stdout").await;
        let mut stdout = Vec::new();
        while stdout.len() < b"hi\n".len() {
            stdout.extend(s.next_data("stdout", 20).await);
        }
        let error = s.next_data("error", 20).await;
        let took = ms(t0);
        s.close().await;
        Ok::<_, String>((took, stdout, error))
    });
    let (took, stdout, error) = session.await.map_err(|e| format!("SPDY session: {e}"))??;
    if stdout != b"hi\n" {
        return Err(format!("Exec `echo hi`: stdout {stdout:?}"));
    }
    let status: serde_json::Value = serde_json::from_slice(&error).unwrap_or_default();
    if status["status"] != "Success" {
        return Err(format!(
            "Exec `echo hi`: status {}",
            String::from_utf8_lossy(&error)
        ));
    }
    Ok(took)
}

/// The pod and its container, then a few untimed rounds.
async fn set_up(t: &mut Target, f: &mut Figures) -> Res<()> {
    t.wait_network_ready().await?;
    f.ctr = t.up("exec").await?.ctr;
    let ctr = f.ctr.clone();
    for _ in 0..WARMUP {
        exec_sync(t, &ctr, &["true"]).await?;
        exec_sync(t, &ctr, &["echo", "hello"]).await?;
        exec_stream(t, &ctr).await?;
    }
    Ok(())
}

/// One timed iteration: each kind of exec once.
async fn iteration(t: &mut Target, _i: usize, f: &mut Figures) -> Res<()> {
    let ctr = f.ctr.clone();
    let c = Instant::now();
    exec_sync(t, &ctr, &["true"]).await?;
    f.sync_true.push(ms(c));

    let c = Instant::now();
    let out = exec_sync(t, &ctr, &["echo", "hello"]).await?;
    f.sync_echo.push(ms(c));
    if out != b"hello\n" {
        return Err(format!(
            "ExecSync `echo hello`: stdout {:?}",
            String::from_utf8_lossy(&out)
        ));
    }

    f.stream.push(exec_stream(t, &ctr).await?);
    Ok(())
}

#[tokio::main]
async fn main() {
    let iters = env_usize("CRIUS_BENCH_ITERS", 50).max(1);
    let (_net, _registry, mut runners) = runtimes::start_both::<Figures>().await;
    for r in runners.iter_mut() {
        if let Err(e) = set_up(&mut r.t, &mut r.f).await {
            r.fail(e);
        }
    }
    settle().await;
    interleave(&mut runners, iters, iteration).await;
    let (crius_fig, ctd_fig) = runtimes::finish_all(runners).await;
    if std::env::var_os("CRIUS_BENCH_VERBOSE").is_some() {
        for (name, f) in [
            ("crius", Some(&crius_fig)),
            ("containerd", ctd_fig.as_ref()),
        ] {
            if let Some(f) = f {
                eprintln!("{name} per iteration (ms): true / echo / spdy");
                for (i, ((a, b), c)) in f
                    .sync_true
                    .iter()
                    .zip(&f.sync_echo)
                    .zip(&f.stream)
                    .enumerate()
                {
                    eprintln!("  {i:>3} {a:>7.1} {b:>7.1} {c:>7.1}");
                }
            }
        }
    }
    report(iters, &crius_fig, ctd_fig.as_ref());
}

// ---- report -------------------------------------------------------------

const W: usize = 36;

fn report(iters: usize, a: &Figures, b: Option<&Figures>) {
    println!(
        "\nexec benchmark: {iters} iterations, one pod with one `sleep 3600` container; times in ms\n"
    );
    if b.is_none() {
        if peer::binary().is_none() {
            println!(
                "(containerd not measured: install Debian's `containerd` package for the comparison)\n"
            );
        } else {
            println!("(containerd not measured: it failed or did not start, see above)\n");
        }
    }
    peer::header(W);
    let series: [runtimes::Series<Figures>; 3] = [
        ("ExecSync `true`", |f| &f.sync_true, Some(0.5)),
        ("ExecSync `echo hello`", |f| &f.sync_echo, Some(0.5)),
        ("Exec `echo hi` over SPDY", |f| &f.stream, None),
    ];
    runtimes::print_series(W, &series, a, b);
    println!(
        "\nExecSync: the RPC until its response. Exec over SPDY: the Exec RPC, dial, upgrade,\n\
         error+stdout streams opened, read until the output and the status arrived.\n\
         Target (issue 5): ExecSync <= 0.5x containerd."
    );
}
