//! ContainerStats and ListContainerStats: domain samples to CRI messages.

use k8s_cri::v1 as cri;
use tonic::{Response, Status};

use super::Cri;
use super::container::{container_id, metadata};
use super::pod::to_map;
use crate::runtime::container::{ContainerFilter, ContainerStats, PodStats};
use crate::runtime::sandbox::SandboxFilter;

fn value(v: Option<u64>) -> Option<cri::UInt64Value> {
    v.map(|value| cri::UInt64Value { value })
}

/// One sample as the CRI has it.
pub fn cri_stats(s: &ContainerStats) -> cri::ContainerStats {
    let t = s.timestamp_ns;
    let c = &s.cgroup;
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: s.record.id.to_string(),
            metadata: Some(metadata(&s.record)),
            labels: to_map(&s.record.spec.labels),
            annotations: to_map(&s.record.spec.annotations),
        }),
        cpu: Some(cpu(t, c, s.usage_nano_cores)),
        memory: Some(memory(t, c)),
        writable_layer: Some(cri::FilesystemUsage {
            timestamp: t,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: s.writable_dir.display().to_string(),
            }),
            used_bytes: value(Some(s.writable_bytes)),
            inodes_used: value(Some(s.writable_inodes)),
        }),
        swap: Some(cri::SwapUsage {
            timestamp: t,
            swap_available_bytes: None,
            swap_usage_bytes: value(c.swap_usage),
        }),
    }
}

fn cpu(t: i64, c: &crate::sys::cgroup_stats::CgroupStats, rate: Option<u64>) -> cri::CpuUsage {
    cri::CpuUsage {
        timestamp: t,
        usage_core_nano_seconds: value(c.cpu_usage_ns),
        usage_nano_cores: value(rate),
    }
}

fn memory(t: i64, c: &crate::sys::cgroup_stats::CgroupStats) -> cri::MemoryUsage {
    let available = c
        .memory_limit
        .zip(c.working_set)
        .map(|(limit, ws)| limit.saturating_sub(ws));
    cri::MemoryUsage {
        timestamp: t,
        working_set_bytes: value(c.working_set),
        available_bytes: value(available),
        usage_bytes: value(c.memory_usage),
        rss_bytes: value(c.rss),
        page_faults: value(c.page_faults),
        major_page_faults: value(c.major_page_faults),
    }
}

/// A pod's sample as the CRI has it (`eth0` is the default interface).
pub fn cri_pod_stats(p: &PodStats) -> cri::PodSandboxStats {
    let t = p.timestamp_ns;
    let iface = |i: &crate::sys::netstat::InterfaceStats| cri::NetworkInterfaceUsage {
        name: i.name.clone(),
        rx_bytes: value(Some(i.rx_bytes)),
        rx_errors: value(Some(i.rx_errors)),
        tx_bytes: value(Some(i.tx_bytes)),
        tx_errors: value(Some(i.tx_errors)),
    };
    let interfaces: Vec<cri::NetworkInterfaceUsage> = p.interfaces.iter().map(iface).collect();
    let default_interface = interfaces
        .iter()
        .find(|i| i.name == "eth0")
        .or(interfaces.first())
        .cloned();
    cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: p.record.id.to_string(),
            metadata: Some(super::pod::metadata(&p.record)),
            labels: to_map(&p.record.spec.labels),
            annotations: to_map(&p.record.spec.annotations),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: Some(cpu(t, &p.cgroup, p.usage_nano_cores)),
            memory: Some(memory(t, &p.cgroup)),
            network: Some(cri::NetworkUsage {
                timestamp: t,
                default_interface,
                interfaces,
            }),
            process: Some(cri::ProcessUsage {
                timestamp: t,
                process_count: value(p.cgroup.pids),
            }),
            containers: p.containers.iter().map(cri_stats).collect(),
        }),
        windows: None,
    }
}

impl Cri {
    pub(super) async fn pod_stats_of(
        &self,
        req: cri::PodSandboxStatsRequest,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        if req.pod_sandbox_id.is_empty() {
            return Err(Status::invalid_argument(
                "PodSandboxStats: pod_sandbox_id is required",
            ));
        }
        let id = self
            .sandboxes
            .resolve(&req.pod_sandbox_id)?
            .ok_or_else(|| {
                Status::not_found(format!("pod sandbox {:?} not found", req.pod_sandbox_id))
            })?;
        let mut all = self
            .containers
            .pod_stats(&SandboxFilter {
                id: Some(id.to_string()),
                ..Default::default()
            })
            .await?;
        let p = all
            .pop()
            .ok_or_else(|| Status::not_found(format!("pod sandbox {id} not found")))?;
        Ok(Response::new(cri::PodSandboxStatsResponse {
            stats: Some(cri_pod_stats(&p)),
        }))
    }

    pub(super) async fn pod_stats_list(
        &self,
        req: cri::ListPodSandboxStatsRequest,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        let f = req.filter.unwrap_or_default();
        let pods = self
            .containers
            .pod_stats(&SandboxFilter {
                id: Some(f.id).filter(|s| !s.is_empty()),
                state: None,
                labels: f.label_selector.into_iter().collect(),
            })
            .await?;
        Ok(Response::new(cri::ListPodSandboxStatsResponse {
            stats: pods.iter().map(cri_pod_stats).collect(),
        }))
    }

    pub(super) async fn container_stats_of(
        &self,
        req: cri::ContainerStatsRequest,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        container_id(&req.container_id, "ContainerStats")?;
        let s = self.containers.stats(&req.container_id).await?;
        Ok(Response::new(cri::ContainerStatsResponse {
            stats: Some(cri_stats(&s)),
        }))
    }

    pub(super) async fn container_stats_list(
        &self,
        req: cri::ListContainerStatsRequest,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        let f = req.filter.unwrap_or_default();
        let filter = ContainerFilter {
            id: Some(f.id).filter(|s| !s.is_empty()),
            state: None,
            pod_id: Some(f.pod_sandbox_id).filter(|s| !s.is_empty()),
            labels: f.label_selector.into_iter().collect(),
        };
        let stats = self.containers.list_stats(&filter).await?;
        Ok(Response::new(cri::ListContainerStatsResponse {
            stats: stats.iter().map(cri_stats).collect(),
        }))
    }
}
