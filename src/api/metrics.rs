//! ListMetricDescriptors and ListPodSandboxMetrics: the pod and container
//! samples of `ContainerManager::pod_stats` as the cAdvisor metrics kubelet
//! serves on `/metrics/cadvisor` when it takes them from the runtime
//! (`PodAndContainerStatsFromCRI`).
//!
//! Labels are cAdvisor's: `container`, `id`, `image`, `name`, `namespace`,
//! `pod`, then the metric's own (`cpu`, `interface`, `device`,
//! `failure_type`, `scope`). A pod's own series has empty `container`,
//! `image` and `name`, as cAdvisor's pod cgroup does. CRI values are
//! integers, so seconds are whole seconds (as containerd and CRI-O send
//! them). PSI (`container_pressure_*`) exists on cgroup v2 only, where the
//! kernel has it; cgroup v1 has no pressure files and sends none.

use k8s_cri::v1 as cri;
use tonic::{Response, Status};

use super::Cri;
use crate::runtime::container::{ContainerStats, PodStats};
use crate::sys::cgroup_stats::{CgroupStats, PsiTotals};

const BASE: [&str; 6] = ["container", "id", "image", "name", "namespace", "pod"];

use cri::MetricType::{Counter as C, Gauge as G};

/// (name, help, the metric's own label keys, type). Static for the
/// daemon's life, as the CRI asks.
const DESCRIPTORS: &[(&str, &str, &[&str], cri::MetricType)] = &[
    (
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed in seconds.",
        &["cpu"],
        C,
    ),
    (
        "container_cpu_user_seconds_total",
        "Cumulative user cpu time consumed in seconds.",
        &[],
        C,
    ),
    (
        "container_cpu_system_seconds_total",
        "Cumulative system cpu time consumed in seconds.",
        &[],
        C,
    ),
    (
        "container_cpu_cfs_periods_total",
        "Number of elapsed enforcement period intervals.",
        &[],
        C,
    ),
    (
        "container_cpu_cfs_throttled_periods_total",
        "Number of throttled period intervals.",
        &[],
        C,
    ),
    (
        "container_cpu_cfs_throttled_seconds_total",
        "Total time duration the container has been throttled.",
        &[],
        C,
    ),
    (
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        &[],
        G,
    ),
    (
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        &[],
        G,
    ),
    ("container_memory_rss", "Size of RSS in bytes.", &[], G),
    (
        "container_memory_cache",
        "Number of bytes of page cache memory.",
        &[],
        G,
    ),
    (
        "container_memory_swap",
        "Container swap usage in bytes.",
        &[],
        G,
    ),
    (
        "container_memory_failcnt",
        "Number of memory usage hits limits (cgroup v1 only)",
        &[],
        C,
    ),
    (
        "container_memory_failures_total",
        "Cumulative count of memory allocation failures.",
        &["failure_type", "scope"],
        C,
    ),
    (
        "container_spec_memory_limit_bytes",
        "Memory limit for the container.",
        &[],
        G,
    ),
    (
        "container_oom_events_total",
        "Count of out of memory events observed for the container",
        &[],
        C,
    ),
    (
        "container_processes",
        "Number of processes running inside the container.",
        &[],
        G,
    ),
    (
        "container_fs_usage_bytes",
        "Number of bytes that are consumed by the container on this filesystem.",
        &["device"],
        G,
    ),
    (
        "container_fs_inodes_total",
        "Number of Inodes",
        &["device"],
        G,
    ),
    (
        "container_fs_inodes_free",
        "Number of available Inodes",
        &["device"],
        G,
    ),
    (
        "container_fs_limit_bytes",
        "Number of bytes that can be consumed by the container on this filesystem.",
        &["device"],
        G,
    ),
    (
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received",
        &["interface"],
        C,
    ),
    (
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving",
        &["interface"],
        C,
    ),
    (
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted",
        &["interface"],
        C,
    ),
    (
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting",
        &["interface"],
        C,
    ),
    (
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds.",
        &[],
        G,
    ),
    (
        "container_last_seen",
        "Last time a container was seen by the exporter",
        &[],
        G,
    ),
    (
        "container_pressure_cpu_waiting_seconds_total",
        "Total time duration tasks in the container have waited due to CPU congestion.",
        &[],
        C,
    ),
    (
        "container_pressure_cpu_stalled_seconds_total",
        "Total time duration no tasks in the container could make progress due to CPU congestion.",
        &[],
        C,
    ),
    (
        "container_pressure_memory_waiting_seconds_total",
        "Total time duration tasks in the container have waited due to memory congestion.",
        &[],
        C,
    ),
    (
        "container_pressure_memory_stalled_seconds_total",
        "Total time duration no tasks in the container could make progress due to memory congestion.",
        &[],
        C,
    ),
    (
        "container_pressure_io_waiting_seconds_total",
        "Total time duration tasks in the container have waited due to IO congestion.",
        &[],
        C,
    ),
    (
        "container_pressure_io_stalled_seconds_total",
        "Total time duration no tasks in the container could make progress due to IO congestion.",
        &[],
        C,
    ),
];

/// The descriptors, label keys base first.
pub fn descriptors() -> Vec<cri::MetricDescriptor> {
    DESCRIPTORS
        .iter()
        .map(|(name, help, extra, _)| cri::MetricDescriptor {
            name: (*name).to_owned(),
            help: (*help).to_owned(),
            label_keys: BASE
                .iter()
                .chain(extra.iter())
                .map(|s| (*s).to_owned())
                .collect(),
        })
        .collect()
}

fn kind(name: &str) -> cri::MetricType {
    DESCRIPTORS
        .iter()
        .find(|d| d.0 == name)
        .map(|d| d.3)
        .unwrap_or(G)
}

/// Builds one object's metrics: its base label values, then one call per
/// series.
struct Series {
    base: Vec<String>,
    out: Vec<cri::Metric>,
}

impl Series {
    fn new(base: [&str; 6]) -> Self {
        Self {
            base: base.iter().map(|s| (*s).to_owned()).collect(),
            out: Vec::new(),
        }
    }

    fn put(&mut self, name: &str, extra: &[&str], value: Option<u64>) {
        let Some(value) = value else { return };
        let mut label_values = self.base.clone();
        label_values.extend(extra.iter().map(|s| (*s).to_owned()));
        self.out.push(cri::Metric {
            name: name.to_owned(),
            // Read live at this call: the CRI wants 0 then (a time only
            // for figures served from a cache).
            timestamp: 0,
            metric_type: kind(name) as i32,
            label_values,
            value: Some(cri::UInt64Value { value }),
        });
    }

    /// CPU, memory, processes and PSI of a cgroup.
    fn cgroup(&mut self, c: &CgroupStats) {
        let secs = |ns: Option<u64>| ns.map(|n| n / 1_000_000_000);
        self.put(
            "container_cpu_usage_seconds_total",
            &["total"],
            secs(c.cpu_usage_ns),
        );
        self.put("container_cpu_user_seconds_total", &[], secs(c.cpu_user_ns));
        self.put(
            "container_cpu_system_seconds_total",
            &[],
            secs(c.cpu_system_ns),
        );
        self.put("container_cpu_cfs_periods_total", &[], c.cpu_periods);
        self.put(
            "container_cpu_cfs_throttled_periods_total",
            &[],
            c.cpu_throttled_periods,
        );
        self.put(
            "container_cpu_cfs_throttled_seconds_total",
            &[],
            secs(c.cpu_throttled_ns),
        );
        self.put("container_memory_usage_bytes", &[], c.memory_usage);
        self.put("container_memory_working_set_bytes", &[], c.working_set);
        self.put("container_memory_rss", &[], c.rss);
        self.put("container_memory_cache", &[], c.memory_cache);
        self.put("container_memory_swap", &[], c.swap_usage);
        self.put("container_memory_failcnt", &[], c.memory_failcnt);
        // Our readers take the hierarchical figures (v1 `total_*`, v2's
        // memory.stat is hierarchical), which cAdvisor labels `hierarchy`.
        self.put(
            "container_memory_failures_total",
            &["pgfault", "hierarchy"],
            c.page_faults,
        );
        self.put(
            "container_memory_failures_total",
            &["pgmajfault", "hierarchy"],
            c.major_page_faults,
        );
        if c.memory_usage.is_some() {
            // cAdvisor reports an unlimited container as 0.
            self.put(
                "container_spec_memory_limit_bytes",
                &[],
                Some(c.memory_limit.unwrap_or(0)),
            );
        }
        self.put("container_oom_events_total", &[], c.oom_kills);
        self.put("container_processes", &[], c.pids);
        let psi = |p: Option<PsiTotals>| {
            (
                p.map(|p| p.some_us / 1_000_000),
                p.and_then(|p| p.full_us).map(|us| us / 1_000_000),
            )
        };
        for (res, totals) in [
            ("cpu", c.psi.cpu),
            ("memory", c.psi.memory),
            ("io", c.psi.io),
        ] {
            let (waiting, stalled) = psi(totals);
            self.put(
                &format!("container_pressure_{res}_waiting_seconds_total"),
                &[],
                waiting,
            );
            self.put(
                &format!("container_pressure_{res}_stalled_seconds_total"),
                &[],
                stalled,
            );
        }
    }
}

fn seconds(ns: i64) -> Option<u64> {
    u64::try_from(ns)
        .ok()
        .filter(|s| *s > 0)
        .map(|s| s / 1_000_000_000)
}

fn container_metrics(c: &ContainerStats, pod: &PodStats) -> cri::ContainerMetrics {
    let r = &c.record;
    let id = r.id.to_string();
    let p = &pod.record.spec;
    let mut s = Series::new([
        &r.spec.name,
        &id,
        &r.spec.image,
        &r.spec.name,
        &p.namespace,
        &p.name,
    ]);
    s.cgroup(&c.cgroup);
    let device = c.writable_dir.display().to_string();
    s.put(
        "container_fs_usage_bytes",
        &[&device],
        Some(c.writable_bytes),
    );
    // The filesystem holding the writable layer: its size and inodes.
    if let Ok(fs) = nix::sys::statvfs::statvfs(&c.writable_dir) {
        let frag = fs.fragment_size();
        s.put(
            "container_fs_limit_bytes",
            &[&device],
            Some(fs.blocks().saturating_mul(frag)),
        );
        s.put("container_fs_inodes_total", &[&device], Some(fs.files()));
        s.put(
            "container_fs_inodes_free",
            &[&device],
            Some(fs.files_free()),
        );
    }
    s.put("container_start_time_seconds", &[], seconds(r.started_ns));
    s.put("container_last_seen", &[], seconds(c.timestamp_ns));
    cri::ContainerMetrics {
        container_id: id,
        metrics: s.out,
    }
}

fn pod_metrics(p: &PodStats) -> cri::PodSandboxMetrics {
    let id = p.record.id.to_string();
    let spec = &p.record.spec;
    let mut s = Series::new(["", &id, "", "", &spec.namespace, &spec.name]);
    s.cgroup(&p.cgroup);
    for i in &p.interfaces {
        let n: &[&str] = &[&i.name];
        s.put("container_network_receive_bytes_total", n, Some(i.rx_bytes));
        s.put(
            "container_network_receive_errors_total",
            n,
            Some(i.rx_errors),
        );
        s.put(
            "container_network_transmit_bytes_total",
            n,
            Some(i.tx_bytes),
        );
        s.put(
            "container_network_transmit_errors_total",
            n,
            Some(i.tx_errors),
        );
    }
    s.put(
        "container_start_time_seconds",
        &[],
        seconds(p.record.created_ns),
    );
    s.put("container_last_seen", &[], seconds(p.timestamp_ns));
    cri::PodSandboxMetrics {
        pod_sandbox_id: id,
        metrics: s.out,
        container_metrics: p
            .containers
            .iter()
            .map(|c| container_metrics(c, p))
            .collect(),
    }
}

impl Cri {
    pub(super) fn metric_descriptors(&self) -> Response<cri::ListMetricDescriptorsResponse> {
        Response::new(cri::ListMetricDescriptorsResponse {
            descriptors: descriptors(),
        })
    }

    pub(super) async fn pod_sandbox_metrics(
        &self,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        let pods = self.containers.pod_stats(&Default::default()).await?;
        Ok(Response::new(cri::ListPodSandboxMetricsResponse {
            pod_metrics: pods.iter().map(pod_metrics).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::cgroup_stats::Psi;

    #[test]
    fn descriptors_are_unique_and_every_series_is_described() {
        let d = descriptors();
        let mut names: Vec<&str> = d.iter().map(|d| d.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), d.len(), "duplicate descriptor");

        let c = CgroupStats {
            cpu_usage_ns: Some(2_500_000_000),
            cpu_user_ns: Some(2_000_000_000),
            cpu_system_ns: Some(500_000_000),
            memory_usage: Some(10),
            working_set: Some(8),
            page_faults: Some(3),
            pids: Some(2),
            psi: Psi {
                cpu: Some(PsiTotals {
                    some_us: 3_000_000,
                    full_us: None,
                }),
                memory: None,
                io: Some(PsiTotals {
                    some_us: 7_000_000,
                    full_us: Some(4_000_000),
                }),
            },
            ..Default::default()
        };
        let mut s = Series::new(["c", "id", "img", "c", "ns", "pod"]);
        s.cgroup(&c);
        for m in &s.out {
            let desc = d
                .iter()
                .find(|x| x.name == m.name)
                .unwrap_or_else(|| panic!("{} is not described", m.name));
            assert_eq!(desc.label_keys.len(), m.label_values.len(), "{}", m.name);
        }
        let get = |name: &str| {
            s.out
                .iter()
                .find(|m| m.name == name)
                .and_then(|m| m.value)
                .map(|v| v.value)
        };
        assert_eq!(get("container_cpu_usage_seconds_total"), Some(2));
        assert_eq!(get("container_cpu_user_seconds_total"), Some(2));
        assert_eq!(
            get("container_spec_memory_limit_bytes"),
            Some(0),
            "unlimited"
        );
        assert_eq!(get("container_pressure_cpu_waiting_seconds_total"), Some(3));
        assert_eq!(get("container_pressure_cpu_stalled_seconds_total"), None);
        assert_eq!(get("container_pressure_memory_waiting_seconds_total"), None);
        assert_eq!(get("container_pressure_io_stalled_seconds_total"), Some(4));
        assert_eq!(
            get("container_memory_rss"),
            None,
            "unset figures are left out"
        );
        let cpu = s
            .out
            .iter()
            .find(|m| m.name == "container_cpu_usage_seconds_total")
            .unwrap();
        assert_eq!(cpu.metric_type, cri::MetricType::Counter as i32);
        assert_eq!(cpu.label_values.last().map(String::as_str), Some("total"));
    }
}
