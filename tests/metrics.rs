//! Metrics through the real daemon: the Prometheus endpoint scraped over
//! HTTP and parsed after a pull, a pod and containers ran and calls failed;
//! no endpoint when `metrics.address` is empty; ListMetricDescriptors and
//! ListPodSandboxMetrics with CPU, memory, network and (cgroup v2) PSI.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::Daemon;
use common::containers::*;
use common::cri::pull_err;
use common::pods::RuntimeClient;
use k8s_cri::v1::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// GET `path` over HTTP/1.1: (status, content type, body).
async fn http_get(port: u16, path: &str) -> (u16, String, String) {
    http_get_accept(port, path, "*/*").await
}

async fn http_get_accept(port: u16, path: &str, accept: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("connecting to the metrics endpoint on port {port}: {e}"));
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("sending request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("reading response");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP head");
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, ctype, body.to_owned())
}

/// One sample of the text exposition: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format (the subset the daemon writes:
/// `name{k="v",…} value`, label values without escaped quotes).
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {l:?}"));
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').expect("closing brace");
                    let labels = inner
                        .split("\",")
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| {
                            let (k, v) = kv.split_once("=\"").expect("label k=\"v\"");
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
            };
            Sample {
                name,
                labels,
                value,
            }
        })
        .collect()
}

/// The value of the one sample named `name` whose labels include `want`.
fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let hits: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(
        hits.len() <= 1,
        "several samples match {name} {want:?}: {hits:?}"
    );
    hits.first().map(|s| s.value)
}

async fn scrape(port: u16) -> (String, Vec<Sample>) {
    let (status, ctype, body) = http_get(port, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let samples = parse(&body);
    (body, samples)
}

#[tokio::test]
async fn endpoint_counts_calls_pulls_pods_containers_and_stores() {
    let port = free_port();
    let mut env = Env::new(&format!("[metrics]\naddress = \"127.0.0.1:{port}\"\n")).await;
    let bb = env.busybox.clone();
    // A failing pull (no such repository) and a failing status call.
    let missing = format!("{}/nosuch:latest", env.registry.addr());
    pull_err(&mut env.img, &missing, None).await;
    let err = env
        .rt
        .container_status(ContainerStatusRequest {
            container_id: "0123456789abcdef".into(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let (pod, pcfg) = env.pod("metrics-endpoint").await;
    let c = env
        .run(&pod, &pcfg, ctr("sleeper", &bb, &["sleep", "300"]))
        .await;

    let (text, s) = scrape(port).await;
    for name in [
        "crius_grpc_request_duration_seconds",
        "crius_grpc_requests_total",
        "crius_grpc_errors_total",
        "crius_image_pulls_total",
        "crius_image_pull_bytes_total",
        "crius_image_pull_duration_seconds",
        "crius_pods",
        "crius_containers",
        "crius_monitors_alive",
        "crius_images",
        "crius_layers",
        "crius_image_store_bytes",
        "crius_image_store_inodes",
    ] {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}:\n{text}"
        );
    }
    let ok = |m: &str| {
        value(
            &s,
            "crius_grpc_requests_total",
            &[("method", m), ("code", "OK")],
        )
    };
    assert_eq!(ok("RunPodSandbox"), Some(1.0), "{text}");
    assert_eq!(ok("CreateContainer"), Some(1.0));
    assert_eq!(ok("StartContainer"), Some(1.0));
    assert_eq!(ok("PullImage"), Some(1.0), "Env pulled busybox once");
    let errors = |m: &str, code: &str| {
        value(
            &s,
            "crius_grpc_errors_total",
            &[("method", m), ("code", code)],
        )
    };
    assert_eq!(errors("ContainerStatus", "NotFound"), Some(1.0), "{text}");
    assert_eq!(errors("RunPodSandbox", "NotFound"), None);
    assert!(
        !s.iter()
            .any(|x| x.name == "crius_grpc_errors_total" && x.labels["code"] == "OK"),
        "OK is not an error"
    );
    // The RunPodSandbox histogram: one observation, cumulative buckets.
    let run = [("method", "RunPodSandbox")];
    assert_eq!(
        value(&s, "crius_grpc_request_duration_seconds_count", &run),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "crius_grpc_request_duration_seconds_bucket",
            &[("method", "RunPodSandbox"), ("le", "+Inf")]
        ),
        Some(1.0)
    );
    let mut buckets: Vec<(f64, f64)> = s
        .iter()
        .filter(|x| {
            x.name == "crius_grpc_request_duration_seconds_bucket"
                && x.labels["method"] == "RunPodSandbox"
                && x.labels["le"] != "+Inf"
        })
        .map(|x| (x.labels["le"].parse().expect("le"), x.value))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() >= 10, "{buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    assert!(
        value(&s, "crius_grpc_request_duration_seconds_sum", &run).unwrap() > 0.0,
        "{text}"
    );

    // Pulls: one success (busybox) with its size, one failure.
    assert_eq!(
        value(&s, "crius_image_pulls_total", &[("result", "success")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "crius_image_pulls_total", &[("result", "failure")]),
        Some(1.0)
    );
    assert!(value(&s, "crius_image_pull_bytes_total", &[]).unwrap() > 1000.0);
    assert_eq!(
        value(&s, "crius_image_pull_duration_seconds_count", &[]),
        Some(1.0)
    );

    // Objects by state, the monitor, the stores.
    let pods = |st: &str| value(&s, "crius_pods", &[("state", st)]);
    assert_eq!((pods("ready"), pods("notready")), (Some(1.0), Some(0.0)));
    let ctrs = |s: &[Sample], st: &str| value(s, "crius_containers", &[("state", st)]);
    assert_eq!(ctrs(&s, "running"), Some(1.0), "{text}");
    assert_eq!(ctrs(&s, "exited"), Some(0.0));
    assert_eq!(value(&s, "crius_monitors_alive", &[]), Some(1.0), "{text}");
    assert_eq!(value(&s, "crius_images", &[]), Some(1.0));
    assert!(value(&s, "crius_layers", &[]).unwrap() >= 1.0);
    assert!(value(&s, "crius_image_store_bytes", &[]).unwrap() > 100_000.0);
    assert!(value(&s, "crius_image_store_inodes", &[]).unwrap() > 10.0);

    // Stopping the container: it counts as exited and its monitor is gone.
    env.stop(&c, 0).await.expect("StopContainer");
    let mut after = scrape(port).await.1;
    for _ in 0..100 {
        if value(&after, "crius_monitors_alive", &[]) == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = scrape(port).await.1;
    }
    assert_eq!(ctrs(&after, "running"), Some(0.0));
    assert_eq!(ctrs(&after, "exited"), Some(1.0));
    assert_eq!(value(&after, "crius_monitors_alive", &[]), Some(0.0));
    assert_eq!(
        value(
            &after,
            "crius_grpc_requests_total",
            &[("method", "StopContainer"), ("code", "OK")]
        ),
        Some(1.0)
    );

    // Prometheus asks for OpenMetrics and gets it.
    let (status, ctype, body) = http_get_accept(
        port,
        "/metrics",
        "application/openmetrics-text;version=1.0.0",
    )
    .await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains("crius_monitors_alive 0"), "{body}");

    // Only /metrics is served.
    let (status, _, _) = http_get(port, "/other").await;
    assert_eq!(status, 404);
}

/// Listening TCP sockets the process `pid` holds.
fn listening_tcp_sockets(pid: u32) -> usize {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("reading the daemon's fds")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.display().to_string();
            l.strip_prefix("socket:[")
                .and_then(|x| x.strip_suffix(']'))
                .map(str::to_owned)
        })
        .collect();
    ["tcp", "tcp6"]
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(format!("/proc/{pid}/net/{f}"))
                .unwrap_or_default()
                .lines()
                .skip(1)
                .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        })
        // st 0A = LISTEN; field 9 is the inode.
        .filter(|f| f.get(3).map(String::as_str) == Some("0A"))
        .filter(|f| f.get(9).is_some_and(|i| inodes.contains(i)))
        .count()
}

#[tokio::test]
async fn no_endpoint_when_address_is_empty_and_a_taken_port_is_not_fatal() {
    // Enabled: the streaming server and the metrics endpoint listen.
    let port = free_port();
    let on = Daemon::start(&format!("[metrics]\naddress = \"127.0.0.1:{port}\"\n"));
    // The daemon answers CRI once everything, the endpoint included, is up.
    let mut rt = on.runtime_client().await;
    rt.version(VersionRequest::default())
        .await
        .expect("Version");
    assert_eq!(http_get(port, "/metrics").await.0, 200);
    assert_eq!(listening_tcp_sockets(on.pid().expect("pid")), 2);
    drop(on);

    // Off: only the streaming server.
    let off = Daemon::start("[metrics]\naddress = \"\"\n");
    let mut rt = off.runtime_client().await;
    rt.version(VersionRequest::default())
        .await
        .expect("Version");
    assert_eq!(listening_tcp_sockets(off.pid().expect("pid")), 1);
    assert!(!off.log().contains("Prometheus"), "{}", off.log());
    drop(off);

    // A port someone else holds: logged, and CRI is served all the same.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let d = Daemon::start(&format!("[metrics]\naddress = \"127.0.0.1:{port}\"\n"));
    let mut rt = d.runtime_client().await;
    rt.version(VersionRequest::default())
        .await
        .expect("Version");
    assert!(d.log().contains("cannot serve /metrics"), "{}", d.log());
}

/// The metric `name` (own labels `extra`) of pod `pod` (owner = the pod
/// id) or of its container `owner`.
fn find_metric(
    pods: &[PodSandboxMetrics],
    pod: &str,
    owner: &str,
    name: &str,
    extra: &[&str],
) -> Option<Metric> {
    let p = pods
        .iter()
        .find(|p| p.pod_sandbox_id == pod)
        .expect("our pod");
    let metrics = if owner == pod {
        &p.metrics
    } else {
        &p.container_metrics
            .iter()
            .find(|c| c.container_id == owner)
            .unwrap_or_else(|| panic!("container {owner} in {p:?}"))
            .metrics
    };
    metrics
        .iter()
        .find(|m| m.name == name && m.label_values[6..] == *extra)
        .cloned()
}

/// Whether the container cgroups carry PSI files: cgroup v2 (no v1
/// hierarchies mounted) on a kernel with PSI.
fn cgroup_psi() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        && Path::new("/proc/pressure/cpu").exists()
}

#[tokio::test]
async fn descriptors_and_pod_sandbox_metrics() {
    let mut env = Env::new("").await;
    let descriptors = env
        .rt
        .list_metric_descriptors(ListMetricDescriptorsRequest {})
        .await
        .expect("ListMetricDescriptors")
        .into_inner()
        .descriptors;
    let described = |name: &str| {
        descriptors
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("{name} not described: {descriptors:?}"))
    };
    for name in [
        "container_cpu_usage_seconds_total",
        "container_cpu_user_seconds_total",
        "container_cpu_system_seconds_total",
        "container_memory_working_set_bytes",
        "container_memory_usage_bytes",
        "container_memory_rss",
        "container_memory_cache",
        "container_memory_swap",
        "container_memory_failcnt",
        "container_memory_failures_total",
        "container_spec_memory_limit_bytes",
        "container_oom_events_total",
        "container_processes",
        "container_fs_usage_bytes",
        "container_fs_inodes_total",
        "container_network_receive_bytes_total",
        "container_network_transmit_bytes_total",
        "container_network_receive_errors_total",
        "container_network_transmit_errors_total",
        "container_start_time_seconds",
        "container_last_seen",
        "container_pressure_cpu_waiting_seconds_total",
        "container_pressure_cpu_stalled_seconds_total",
        "container_pressure_memory_waiting_seconds_total",
        "container_pressure_memory_stalled_seconds_total",
        "container_pressure_io_waiting_seconds_total",
        "container_pressure_io_stalled_seconds_total",
    ] {
        let d = described(name);
        assert!(!d.help.is_empty(), "{d:?}");
        assert_eq!(
            &d.label_keys[..6],
            ["container", "id", "image", "name", "namespace", "pod"],
            "{d:?}"
        );
    }
    assert_eq!(
        described("container_network_receive_bytes_total").label_keys[6],
        "interface"
    );
    assert_eq!(
        described("container_cpu_usage_seconds_total").label_keys[6],
        "cpu"
    );

    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("metrics-pod").await;
    let gateway = format!("{}.1", env.net.prefix);
    let busy = env
        .run(&pod, &pcfg, sh("busy", &bb, "while :; do :; done"))
        .await;
    // Another held to a tenth of a core: throttled in nearly every period,
    // however busy the machine is.
    let mut slow_cfg = sh("slow", &bb, "while :; do :; done");
    let r = resources(&mut slow_cfg);
    r.cpu_period = 100_000;
    r.cpu_quota = 10_000;
    let slow = env.run(&pod, &pcfg, slow_cfg).await;
    let hog = env
        .run(
            &pod,
            &pcfg,
            sh(
                "hog",
                &bb,
                &format!(
                    "wget -q -T 2 -O /dev/null http://{gateway}:9/ ; dd if=/dev/zero bs=64M count=1 2>/dev/null | sleep 3600"
                ),
            ),
        )
        .await;

    let list = |rt: &mut RuntimeClient| {
        let mut rt = rt.clone();
        async move {
            rt.list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
                .await
                .expect("ListPodSandboxMetrics")
                .into_inner()
                .pod_metrics
        }
    };
    let find = |pods: &Vec<PodSandboxMetrics>, owner: &str, name: &str, extra: &[&str]| {
        find_metric(pods, &pod, owner, name, extra)
    };
    let val = |m: Option<Metric>| m.and_then(|m| m.value).map(|v| v.value);

    // Every metric is described, with as many label values as keys.
    let first = list(&mut env.rt).await;
    let p = first
        .iter()
        .find(|p| p.pod_sandbox_id == pod)
        .expect("pod listed");
    assert_eq!(p.container_metrics.len(), 3, "{p:?}");
    for m in p
        .metrics
        .iter()
        .chain(p.container_metrics.iter().flat_map(|c| c.metrics.iter()))
    {
        assert_eq!(
            described(&m.name).label_keys.len(),
            m.label_values.len(),
            "{m:?}"
        );
    }

    // Labels as cAdvisor has them.
    let cpu0 = find(
        &first,
        &busy,
        "container_cpu_usage_seconds_total",
        &["total"],
    )
    .expect("cpu of the busy container");
    assert_eq!(cpu0.metric_type, MetricType::Counter as i32);
    assert_eq!(cpu0.timestamp, 0, "gathered live");
    assert_eq!(
        cpu0.label_values[..6],
        [
            "busy",
            busy.as_str(),
            bb.as_str(),
            "busy",
            "default",
            "metrics-pod"
        ]
    );
    let started = val(find(&first, &busy, "container_start_time_seconds", &[])).expect("start");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(started <= now && started + 120 > now, "{started} vs {now}");

    // CPU: whole seconds, so the counter moves once the loop has had a
    // full second of CPU; on a loaded machine that may take a while.
    let c0 = val(Some(cpu0)).unwrap();
    let cpu_now = |pods: &Vec<PodSandboxMetrics>| {
        val(find(
            pods,
            &busy,
            "container_cpu_usage_seconds_total",
            &["total"],
        ))
        .unwrap()
    };
    let slow_throttled = |pods: &Vec<PodSandboxMetrics>| {
        val(find(
            pods,
            &slow,
            "container_cpu_cfs_throttled_periods_total",
            &[],
        ))
        .unwrap_or(0)
    };
    let mut later = list(&mut env.rt).await;
    for _ in 0..60 {
        if cpu_now(&later) > c0 && slow_throttled(&later) >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        later = list(&mut env.rt).await;
    }
    let c1 = cpu_now(&later);
    assert!(c1 > c0, "a busy loop's CPU seconds rise: {c0} -> {c1}");
    let throttled = |name: &str| val(find(&later, &slow, name, &[])).unwrap_or(0);
    assert!(
        throttled("container_cpu_cfs_periods_total") >= 10,
        "{later:?}"
    );
    assert!(
        throttled("container_cpu_cfs_throttled_periods_total") >= 10,
        "{later:?}"
    );
    assert_eq!(
        val(find(
            &later,
            &busy,
            "container_cpu_cfs_throttled_periods_total",
            &[]
        )),
        Some(0),
        "no quota, no throttling"
    );

    // Memory: the hog's 64 MiB in its working set; network: the pod's
    // eth0 sent the connection attempt.
    for _ in 0..50 {
        let ws = val(find(
            &later,
            &hog,
            "container_memory_working_set_bytes",
            &[],
        ));
        let tx = val(find(
            &later,
            &pod,
            "container_network_transmit_bytes_total",
            &["eth0"],
        ));
        if ws.unwrap_or(0) > 60 << 20 && tx.unwrap_or(0) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        later = list(&mut env.rt).await;
    }
    let ws = val(find(
        &later,
        &hog,
        "container_memory_working_set_bytes",
        &[],
    ))
    .unwrap_or(0);
    assert!(ws > 60 << 20 && ws < 300 << 20, "working set {ws}");
    let usage = val(find(&later, &hog, "container_memory_usage_bytes", &[])).unwrap_or(0);
    assert!(usage >= ws, "usage {usage} < working set {ws}");
    let tx = val(find(
        &later,
        &pod,
        "container_network_transmit_bytes_total",
        &["eth0"],
    ));
    assert!(tx.unwrap_or(0) > 0, "{later:?}");
    let rx = find(
        &later,
        &pod,
        "container_network_receive_bytes_total",
        &["eth0"],
    )
    .expect("rx");
    assert_eq!(
        rx.label_values[..6],
        ["", pod.as_str(), "", "", "default", "metrics-pod"]
    );
    assert!(
        find(
            &later,
            &pod,
            "container_network_receive_bytes_total",
            &["lo"]
        )
        .is_none(),
        "loopback is left out"
    );
    assert!(val(find(&later, &busy, "container_processes", &[])).unwrap_or(0) >= 1);
    let fs = later
        .iter()
        .flat_map(|p| p.container_metrics.iter())
        .find(|c| c.container_id == hog)
        .and_then(|c| {
            c.metrics
                .iter()
                .find(|m| m.name == "container_fs_usage_bytes")
        })
        .expect("fs usage");
    assert!(fs.label_values[6].contains(&hog), "{fs:?}");

    // PSI: on cgroup v2 with a PSI kernel the busy loop has pressure
    // figures; cgroup v1 has no pressure files and sends none.
    let psi = later
        .iter()
        .flat_map(|p| p.container_metrics.iter())
        .find(|c| c.container_id == busy)
        .expect("busy")
        .metrics
        .iter()
        .filter(|m| m.name.starts_with("container_pressure_"))
        .map(|m| m.name.clone())
        .collect::<Vec<_>>();
    if cgroup_psi() {
        eprintln!("cgroup v2 with PSI: pressure metrics expected: {psi:?}");
        for r in ["cpu", "memory", "io"] {
            let n = format!("container_pressure_{r}_waiting_seconds_total");
            assert!(psi.contains(&n), "{n} missing: {psi:?}");
        }
    } else {
        eprintln!("no per-cgroup PSI here: no pressure metrics expected");
        assert!(psi.is_empty(), "cgroup v1 has no PSI: {psi:?}");
    }
}
