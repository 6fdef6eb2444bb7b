//! OpenTelemetry export: with an OTLP endpoint configured, each CRI call is
//! exported as an `rpc` span that continues the caller's `traceparent`.
//! The collector is a real OTLP/gRPC server in the test.

mod common;

use common::otlp::Collector;
use common::*;
use opentelemetry_proto::tonic::trace::v1::Span;
use tonic::Request;

// Multi-threaded: the collector must keep serving while the test thread
// blocks waiting for the daemon to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_spans_continue_the_callers_trace() {
    let (collector, tracing) = Collector::start(0.0).await;
    let mut daemon = Daemon::start(&tracing);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let mut client = daemon.runtime_client().await;
    let mut req = Request::new(k8s_cri::v1::VersionRequest::default());
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_id}-01").parse().unwrap(),
    );
    client.version(req).await.expect("Version");
    drop(client);
    // SIGTERM flushes the batch exporter.
    let status = tokio::task::block_in_place(|| daemon.stop());
    assert!(status.success(), "log:\n{}", daemon.log());

    let spans = collector.spans();
    let rpc = spans.iter().find(|s| s.name == "rpc").unwrap_or_else(|| {
        panic!(
            "no rpc span exported; got {spans:?}\nlog:\n{}",
            daemon.log()
        )
    });
    assert_eq!(hex::encode(&rpc.trace_id), trace_id, "trace id continued");
    assert_eq!(
        hex::encode(&rpc.parent_span_id),
        parent_id,
        "parent is the caller's span (sampled parent followed despite ratio 0)"
    );
    let method = rpc
        .attributes
        .iter()
        .find(|a| a.key == "method")
        .and_then(|a| a.value.as_ref())
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    assert!(method.contains("Version"), "method attribute: {method}");
}

/// A `traceparent` header for `trace_id` with a sampled caller span.
fn traced<T>(msg: T, trace_id: &str) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    req
}

/// The spans of one trace; the `rpc` span among them; `name`'s span and
/// whether its chain of parents reaches that `rpc` span.
fn child_of_rpc<'a>(spans: &'a [Span], trace_id: &str, name: &str) -> Option<(&'a Span, bool)> {
    let trace: Vec<&Span> = spans
        .iter()
        .filter(|s| hex::encode(&s.trace_id) == trace_id)
        .collect();
    let rpc = trace.iter().find(|s| s.name == "rpc")?;
    let child = trace.iter().find(|s| s.name == name)?;
    let mut cur = *child;
    for _ in 0..16 {
        if cur.parent_span_id == rpc.span_id {
            return Some((child, true));
        }
        match trace.iter().find(|s| s.span_id == cur.parent_span_id) {
            Some(p) => cur = p,
            None => break,
        }
    }
    Some((child, false))
}

fn names(spans: &[Span], trace_id: &str) -> Vec<String> {
    spans
        .iter()
        .filter(|s| hex::encode(&s.trace_id) == trace_id)
        .map(|s| s.name.clone())
        .collect()
}

// RunPodSandbox's trace holds the CNI plugin runs, StartContainer's the
// monitor's start, each below the call's `rpc` span and in the trace the
// caller's traceparent named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cni_and_monitor_spans_are_children_of_the_rpc_span() {
    use common::containers::{Env, ctr};
    use k8s_cri::v1::{CreateContainerRequest, RunPodSandboxRequest, StartContainerRequest};

    let (collector, tracing) = Collector::start(0.0).await;
    let mut env = Env::new(&tracing).await;
    let run_trace = "11111111111111111111111111111111";
    let start_trace = "22222222222222222222222222222222";
    let pcfg = env.pod_config("traced");
    let pod = env
        .rt
        .run_pod_sandbox(traced(
            RunPodSandboxRequest {
                config: Some(pcfg.clone()),
                runtime_handler: String::new(),
            },
            run_trace,
        ))
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    let id = env
        .rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod,
            config: Some(ctr("sleeper", &env.busybox, &["sleep", "300"])),
            sandbox_config: Some(pcfg),
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    env.rt
        .start_container(traced(
            StartContainerRequest { container_id: id },
            start_trace,
        ))
        .await
        .expect("StartContainer");
    // SIGTERM flushes the batch exporter.
    let status = tokio::task::block_in_place(|| env.daemon.stop());
    assert!(status.success(), "log:\n{}", env.daemon.log());

    let spans = collector.spans();
    for (trace, name) in [
        (run_trace, "cni"),
        (run_trace, "pod.network"),
        (start_trace, "monitor.start"),
    ] {
        let (span, below) = child_of_rpc(&spans, trace, name).unwrap_or_else(|| {
            panic!(
                "trace {trace}: no rpc span or no {name:?} span; its spans: {:?}",
                names(&spans, trace)
            )
        });
        assert!(
            below,
            "{name:?} span {span:?} is not below the rpc span of trace {trace}"
        );
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    }
    // One cni span per plugin of the test network's chain, each naming its
    // command.
    let cni: Vec<&Span> = spans
        .iter()
        .filter(|s| hex::encode(&s.trace_id) == run_trace && s.name == "cni")
        .collect();
    assert!(
        cni.iter().all(|s| {
            s.attributes
                .iter()
                .any(|a| a.key == "command" && format!("{:?}", a.value).contains("ADD"))
        }),
        "{cni:?}"
    );
}
