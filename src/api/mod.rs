//! The gRPC edge: the only module that sees tonic/prost types. Handlers are
//! thin: validate and convert the request, call the domain, convert back.

mod container;
mod convert;
mod events;
mod image;
mod metrics;
mod pod;
mod runtime;
mod stats;
mod status;

use std::sync::Arc;

use crate::config::Config;
use crate::image::ImageManager;
use crate::runtime::container::ContainerManager;
use crate::runtime::sandbox::SandboxManager;

pub use k8s_cri::v1::image_service_server::ImageServiceServer;
pub use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;

/// Shared state behind both CRI services.
#[derive(Debug, Clone)]
pub struct Cri {
    pub(crate) config: Arc<Config>,
    pub(crate) images: ImageManager,
    pub(crate) sandboxes: SandboxManager,
    pub(crate) containers: ContainerManager,
    /// The pod CIDR kubelet last sent in UpdateRuntimeConfig (shown in
    /// verbose Status; CNI configs carry their own ranges).
    pub(crate) pod_cidr: Arc<std::sync::Mutex<String>>,
    /// The streaming server, once started (by `Server::serve`).
    pub(crate) streaming: Arc<std::sync::OnceLock<crate::streaming::StreamServer>>,
    /// GetContainerEvents' broadcast, once the first subscriber came.
    pub(crate) events: Arc<std::sync::OnceLock<events::EventHub>>,
    /// Prometheus metrics (RPC layer, pulls, /metrics endpoint).
    pub(crate) metrics: crate::metrics::Metrics,
}

impl Cri {
    pub fn new(
        config: Arc<Config>,
        images: ImageManager,
        sandboxes: SandboxManager,
        containers: ContainerManager,
    ) -> Self {
        Self {
            config,
            images,
            sandboxes,
            containers,
            pod_cidr: Arc::default(),
            streaming: Arc::default(),
            events: Arc::default(),
            metrics: Default::default(),
        }
    }

    pub fn runtime_service(&self) -> RuntimeServiceServer<Self> {
        RuntimeServiceServer::new(self.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    pub fn image_service(&self) -> ImageServiceServer<Self> {
        ImageServiceServer::new(self.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }
}

/// kubelet sends and accepts CRI messages up to 16 MiB (its own limit).
const MAX_MESSAGE: usize = 16 << 20;
