//! CRI RuntimeService handlers. Verbs of later milestones answer
//! UNIMPLEMENTED with a message naming the RPC, so a client sees exactly what
//! is missing instead of a hang or a panic.

use std::collections::HashMap;
use std::pin::Pin;

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};

use super::Cri;
use super::events::EventStream;
use crate::network::NetworkStatus;

/// CRI API version served.
const RUNTIME_API_VERSION: &str = "v1";

// `#[tonic::async_trait]` rewrites `async fn` before macros expand, so the
// generated methods spell out the boxed-future signature it would produce.
macro_rules! unimplemented_rpcs {
    ($($method:ident($req:ident) -> $resp:ident = $name:literal;)*) => {
        $(
            fn $method<'life0, 'async_trait>(
                &'life0 self,
                _req: Request<cri::$req>,
            ) -> Pin<Box<dyn std::future::Future<Output = Result<Response<cri::$resp>, Status>> + Send + 'async_trait>>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                Box::pin(std::future::ready(Err(Status::unimplemented(concat!(
                    $name,
                    " is not implemented by this version of crius"
                )))))
            }
        )*
    };
}

#[tonic::async_trait]
impl RuntimeService for Cri {
    async fn version(
        &self,
        _req: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        Ok(Response::new(cri::VersionResponse {
            // The kubelet-facing API version of the VersionRequest/Response pair itself.
            version: "0.1.0".into(),
            runtime_name: "crius".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: RUNTIME_API_VERSION.into(),
        }))
    }

    async fn status(
        &self,
        req: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        let verbose = req.into_inner().verbose;
        let conditions = vec![
            cri::RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            match self.sandboxes.network_status() {
                NetworkStatus::Ready { .. } => cri::RuntimeCondition {
                    r#type: "NetworkReady".into(),
                    status: true,
                    reason: String::new(),
                    message: String::new(),
                },
                NetworkStatus::NotReady { reason, message } => cri::RuntimeCondition {
                    r#type: "NetworkReady".into(),
                    status: false,
                    reason,
                    message,
                },
            },
        ];
        let mut info = HashMap::new();
        if verbose {
            let cfg = serde_json::to_string(&*self.config)
                .map_err(|e| Status::internal(format!("Status: encoding config: {e}")))?;
            info.insert("config".to_owned(), cfg);
            let cidr = self
                .pod_cidr
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            info.insert(
                "podCIDR".to_owned(),
                serde_json::Value::String(cidr).to_string(),
            );
        }
        let runtime = self.config.runtime.clone();
        let runtime_handlers =
            tokio::task::spawn_blocking(move || crate::runtime::features::handlers(&runtime))
                .await
                .map_err(|e| Status::internal(format!("Status: probing handler features: {e}")))?
                .into_iter()
                .map(|h| cri::RuntimeHandler {
                    name: h.name,
                    features: Some(cri::RuntimeHandlerFeatures {
                        recursive_read_only_mounts: h.recursive_read_only_mounts,
                        user_namespaces: h.user_namespaces,
                    }),
                })
                .collect();
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus { conditions }),
            info,
            runtime_handlers,
            // SupplementalGroupsPolicy Strict is honoured and the effective
            // ContainerUser is reported (runtime/user, ContainerStatus.user).
            features: Some(cri::RuntimeFeatures {
                supplemental_groups_policy: true,
            }),
        }))
    }

    async fn runtime_config(
        &self,
        _req: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: cri::CgroupDriver::Cgroupfs as i32,
            }),
        }))
    }

    async fn update_runtime_config(
        &self,
        req: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        let cidr = req
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        if !cidr.is_empty() && cidr.split(',').any(|c| !valid_cidr(c.trim())) {
            return Err(Status::invalid_argument(format!(
                "UpdateRuntimeConfig: network_config.pod_cidr {cidr:?} is not a CIDR list"
            )));
        }
        tracing::info!(pod_cidr = %cidr, "runtime config updated");
        *self.pod_cidr.lock().unwrap_or_else(|p| p.into_inner()) = cidr;
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        self.run_pod(req.into_inner()).await
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        let id = req.into_inner().pod_sandbox_id;
        tracing::Span::current().record("id", id.as_str());
        // kubelet stops the containers itself (with their grace periods)
        // before StopPodSandbox; whatever is still running is killed.
        self.containers.stop_pod(&id, 0).await?;
        self.sandboxes.stop(&id).await?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        let id = req.into_inner().pod_sandbox_id;
        tracing::Span::current().record("id", id.as_str());
        self.containers.remove_pod(&id).await?;
        self.sandboxes.remove(&id).await?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        self.pod_status(req.into_inner()).await
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        self.list_pods(req.into_inner()).await
    }

    async fn create_container(
        &self,
        req: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        self.container_create(req.into_inner()).await
    }

    async fn start_container(
        &self,
        req: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        self.container_start(req.into_inner()).await
    }

    async fn stop_container(
        &self,
        req: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        self.container_stop(req.into_inner()).await
    }

    async fn remove_container(
        &self,
        req: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        self.container_remove(req.into_inner()).await
    }

    async fn list_containers(
        &self,
        req: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        self.containers_list(req.into_inner()).await
    }

    async fn container_status(
        &self,
        req: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        self.container_status_of(req.into_inner()).await
    }

    async fn update_container_resources(
        &self,
        req: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        self.container_update(req.into_inner()).await
    }

    async fn reopen_container_log(
        &self,
        req: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        self.container_reopen_log(req.into_inner()).await
    }

    async fn pod_sandbox_stats(
        &self,
        req: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        self.pod_stats_of(req.into_inner()).await
    }

    async fn list_pod_sandbox_stats(
        &self,
        req: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        self.pod_stats_list(req.into_inner()).await
    }

    async fn container_stats(
        &self,
        req: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        self.container_stats_of(req.into_inner()).await
    }

    async fn list_container_stats(
        &self,
        req: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        self.container_stats_list(req.into_inner()).await
    }

    async fn attach(
        &self,
        req: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        self.container_attach(req.into_inner()).await
    }

    async fn port_forward(
        &self,
        req: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        self.pod_port_forward(req.into_inner()).await
    }

    async fn exec(
        &self,
        req: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        self.container_exec(req.into_inner()).await
    }

    async fn exec_sync(
        &self,
        req: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        self.container_exec_sync(req.into_inner()).await
    }

    type GetContainerEventsStream = EventStream;

    async fn get_container_events(
        &self,
        _req: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        Ok(Response::new(self.container_events()))
    }

    async fn list_metric_descriptors(
        &self,
        _req: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        Ok(self.metric_descriptors())
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _req: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        self.pod_sandbox_metrics().await
    }

    unimplemented_rpcs! {
        checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse = "CheckpointContainer";
    }
}

/// `10.244.0.0/24` or `fd00::/64`.
fn valid_cidr(c: &str) -> bool {
    let Some((ip, len)) = c.split_once('/') else {
        return false;
    };
    match (ip.parse::<std::net::IpAddr>(), len.parse::<u8>()) {
        (Ok(std::net::IpAddr::V4(_)), Ok(l)) => l <= 32,
        (Ok(std::net::IpAddr::V6(_)), Ok(l)) => l <= 128,
        _ => false,
    }
}
