//! OpenTelemetry export: with an OTLP endpoint configured, each CRI call is
//! exported as an `rpc` span that continues the caller's `traceparent`.
//! The collector is a real OTLP/gRPC server in the test.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use tonic::{Request, Response, Status};

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let spans = req
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans);
        self.0.lock().unwrap().extend(spans);
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

// Multi-threaded: the collector must keep serving while the test thread
// blocks waiting for the daemon to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_spans_continue_the_callers_trace() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let collector = Collector::default();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(collector.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);

    let mut daemon = Daemon::start(&format!(
        "[tracing]\notlp_endpoint = \"http://{addr}\"\nsampling_ratio = 0.0\n"
    ));
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

    let spans = collector.0.lock().unwrap().clone();
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
