//! Container stats: the container cgroup's CPU and memory figures, the CPU
//! rate since the previous sample of the same container, and the writable
//! layer's usage.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use super::{ContainerManager, blocking};
use crate::monitor::now_ns;
use crate::runtime::container::{ContainerError, ContainerFilter, ContainerRecord, ContainerState};
use crate::runtime::lock;
use crate::runtime::sandbox::{SandboxFilter, SandboxRecord, SandboxState};
use crate::sys::cgroup_stats::{CgroupStats, disk_usage};
use crate::sys::netstat::InterfaceStats;

/// One container's figures.
#[derive(Debug, Clone)]
pub struct ContainerStats {
    pub record: ContainerRecord,
    /// When the sample was taken, ns since the epoch.
    pub timestamp_ns: i64,
    pub cgroup: CgroupStats,
    /// CPU use since the previous sample, in nanocores (None on the first).
    pub usage_nano_cores: Option<u64>,
    /// The writable layer (upper dir).
    pub writable_dir: PathBuf,
    pub writable_bytes: u64,
    pub writable_inodes: u64,
}

/// The previous CPU sample per container: (time ns, usage ns). Kept with
/// the manager for the daemon's life; entries of removed containers go at
/// the next listing.
#[derive(Debug, Default)]
pub(super) struct CpuSamples(Mutex<HashMap<String, (i64, u64)>>);

impl CpuSamples {
    /// Records `usage` of container or pod `id` at `now`; the rate since
    /// the last sample.
    fn rate(&self, id: &str, now: i64, usage: u64) -> Option<u64> {
        let prev = lock(&self.0).insert(id.to_owned(), (now, usage));
        let (t0, u0) = prev?;
        let dt = u64::try_from(now.checked_sub(t0)?)
            .ok()
            .filter(|d| *d > 0)?;
        let du = usage.checked_sub(u0)?;
        // nanocores = CPU-ns per wall-ns × 1e9.
        u64::try_from(u128::from(du) * 1_000_000_000 / u128::from(dt)).ok()
    }

    fn keep_only(&self, ids: &[String]) {
        lock(&self.0).retain(|k, _| ids.contains(k));
    }
}

/// A pod's figures: its cgroup, its network namespace's interfaces, and
/// its containers.
#[derive(Debug, Clone)]
pub struct PodStats {
    pub record: SandboxRecord,
    pub timestamp_ns: i64,
    pub cgroup: CgroupStats,
    pub usage_nano_cores: Option<u64>,
    /// Interfaces of the pod's network namespace (loopback left out); the
    /// host's for a host-network pod.
    pub interfaces: Vec<InterfaceStats>,
    pub containers: Vec<ContainerStats>,
}

impl ContainerManager {
    /// Stats of the pods `filter` selects, with their containers'.
    pub async fn pod_stats(&self, filter: &SandboxFilter) -> Result<Vec<PodStats>, ContainerError> {
        let pods = self
            .inner
            .sandboxes
            .list(filter)
            .map_err(|e| ContainerError::Internal(e.to_string()))?;
        self.forget_gone_samples();
        let mut out = Vec::with_capacity(pods.len());
        for record in pods {
            let recs = self
                .list(&ContainerFilter {
                    pod_id: Some(record.id.to_string()),
                    ..Default::default()
                })
                .await?;
            let containers = self.sample(recs).await?;
            let me = self.clone();
            let pod = record.clone();
            let (cgroup, interfaces, now) = blocking(move || {
                let now = now_ns();
                let cgroup = match (&me.inner.cgroups, pod.state == SandboxState::Ready) {
                    (Some(cg), true) if !pod.spec.cgroup_parent.is_empty() => {
                        cg.stats(&pod.spec.cgroup_parent)
                    }
                    _ => CgroupStats::default(),
                };
                let netns = pod.pinned.net.clone();
                let interfaces = if pod.state == SandboxState::Ready
                    && (netns.is_some() || pod.host_network())
                {
                    crate::sys::netstat::interfaces(netns).unwrap_or_default()
                } else {
                    Vec::new()
                };
                (cgroup, interfaces, now)
            })
            .await?;
            let usage_nano_cores = cgroup
                .cpu_usage_ns
                .and_then(|u| self.inner.cpu_samples.rate(record.id.as_str(), now, u));
            out.push(PodStats {
                record,
                timestamp_ns: now,
                cgroup,
                usage_nano_cores,
                interfaces: interfaces.into_iter().filter(|i| i.name != "lo").collect(),
                containers,
            });
        }
        Ok(out)
    }

    /// Stats of one container (Unknown id: NotFound).
    pub async fn stats(&self, id: &str) -> Result<ContainerStats, ContainerError> {
        let id = self
            .resolve(id)?
            .ok_or_else(|| ContainerError::NotFound(id.to_owned()))?;
        let rec = self
            .record(&id)
            .ok_or_else(|| ContainerError::NotFound(id.to_string()))?;
        let mut all = self.sample(vec![rec]).await?;
        all.pop()
            .ok_or_else(|| ContainerError::Internal("no sample taken".into()))
    }

    /// Stats of the containers `filter` selects.
    pub async fn list_stats(
        &self,
        filter: &ContainerFilter,
    ) -> Result<Vec<ContainerStats>, ContainerError> {
        self.forget_gone_samples();
        let recs = self.list(filter).await?;
        self.sample(recs).await
    }

    /// Drops the CPU samples of containers and pods that no longer exist.
    fn forget_gone_samples(&self) {
        let mut known: Vec<String> = lock(&self.inner.records)
            .keys()
            .map(|k| k.as_str().to_owned())
            .collect();
        known.extend(
            self.inner
                .sandboxes
                .list(&Default::default())
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.id.to_string()),
        );
        self.inner.cpu_samples.keep_only(&known);
    }

    async fn sample(
        &self,
        recs: Vec<ContainerRecord>,
    ) -> Result<Vec<ContainerStats>, ContainerError> {
        let me = self.clone();
        blocking(move || {
            recs.into_iter()
                .map(|record| {
                    let now = now_ns();
                    let running = record.state == ContainerState::Running;
                    let cgroup = match (&me.inner.cgroups, running) {
                        (Some(cg), true) => cg.stats(&record.cgroup_path),
                        _ => CgroupStats::default(),
                    };
                    let usage_nano_cores = cgroup
                        .cpu_usage_ns
                        .and_then(|u| me.inner.cpu_samples.rate(record.id.as_str(), now, u));
                    let writable_dir = me.inner.uppers.join(record.id.as_str()).join("upper");
                    let (writable_bytes, writable_inodes) = disk_usage(&writable_dir);
                    ContainerStats {
                        record,
                        timestamp_ns: now,
                        cgroup,
                        usage_nano_cores,
                        writable_dir,
                        writable_bytes,
                        writable_inodes,
                    }
                })
                .collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_rate_from_consecutive_samples() {
        let s = CpuSamples::default();
        let id = "a".repeat(64);
        assert_eq!(s.rate(&id, 1_000_000_000, 5_000_000), None, "first sample");
        // Half a core over one second.
        assert_eq!(s.rate(&id, 2_000_000_000, 505_000_000), Some(500_000_000));
        // A counter that went backwards (a new cgroup) gives no rate.
        assert_eq!(s.rate(&id, 3_000_000_000, 1), None);
        s.keep_only(&[]);
        assert_eq!(s.rate(&id, 4_000_000_000, 10), None, "forgotten");
    }
}
