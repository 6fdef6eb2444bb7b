//! An in-test OpenTelemetry collector: a real OTLP/gRPC trace server on a
//! free loopback port that keeps every span it is sent.

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use tonic::{Request, Response, Status};

#[derive(Clone, Default)]
pub struct Collector(Arc<Mutex<Vec<Span>>>);

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

impl Collector {
    /// Serves on 127.0.0.1 (on the calling tokio runtime, which must keep
    /// running while the daemon exports: a multi-threaded test). Returns
    /// the collector and the `[tracing]` config section pointing at it with
    /// `sampling_ratio`.
    pub async fn start(sampling_ratio: f64) -> (Collector, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the collector");
        let addr = listener.local_addr().expect("collector address");
        let collector = Collector::default();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(collector.clone()))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let config = format!(
            "[tracing]\notlp_endpoint = \"http://{addr}\"\nsampling_ratio = {sampling_ratio:?}\n"
        );
        (collector, config)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.0.lock().unwrap().clone()
    }
}
