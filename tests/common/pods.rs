//! Short forms of the CRI pod sandbox calls and host-side checks of a pod's
//! network namespace.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::Status;
use tonic::transport::Channel;

pub type RuntimeClient = RuntimeServiceClient<Channel>;

/// The namespaces kubelet asks for a pod without `shareProcessNamespace`
/// (most pods): network and IPC of the pod, a PID namespace per container.
pub fn kubelet_namespaces(cfg: &mut PodSandboxConfig) {
    cfg.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
        .namespace_options = Some(NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    });
}

/// A minimal kubelet-like pod config.
pub fn pod_config(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: format!("/var/log/pods/default_{name}"),
        dns_config: Some(DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        }),
        labels: HashMap::from([("app".into(), name.into())]),
        annotations: HashMap::from([("crius.test/anno".into(), "yes".into())]),
        linux: Some(LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

pub async fn run_pod(c: &mut RuntimeClient, config: PodSandboxConfig) -> Result<String, Status> {
    c.run_pod_sandbox(RunPodSandboxRequest {
        config: Some(config),
        runtime_handler: String::new(),
    })
    .await
    .map(|r| r.into_inner().pod_sandbox_id)
}

pub async fn run_pod_ok(c: &mut RuntimeClient, config: PodSandboxConfig) -> String {
    run_pod(c, config)
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e:?}"))
}

pub async fn stop_pod(c: &mut RuntimeClient, id: &str) -> Result<(), Status> {
    c.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: id.into(),
    })
    .await
    .map(|_| ())
}

pub async fn remove_pod(c: &mut RuntimeClient, id: &str) -> Result<(), Status> {
    c.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: id.into(),
    })
    .await
    .map(|_| ())
}

pub async fn pod_status(c: &mut RuntimeClient, id: &str) -> PodSandboxStatusResponse {
    c.pod_sandbox_status(PodSandboxStatusRequest {
        pod_sandbox_id: id.into(),
        verbose: true,
    })
    .await
    .unwrap_or_else(|e| panic!("PodSandboxStatus {id}: {e:?}"))
    .into_inner()
}

pub async fn pod_ip(c: &mut RuntimeClient, id: &str) -> String {
    pod_status(c, id)
        .await
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default()
}

pub async fn list_pods(c: &mut RuntimeClient, filter: Option<PodSandboxFilter>) -> Vec<PodSandbox> {
    c.list_pod_sandbox(ListPodSandboxRequest { filter })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items
}

/// `<run_dir>/pods/<id>`.
pub fn pod_dir(run_dir: &Path, id: &str) -> PathBuf {
    run_dir.join("pods").join(id)
}

/// Runs `cmd` inside the pod's pinned network (and UTS/IPC) namespaces.
pub fn in_pod(run_dir: &Path, id: &str, cmd: &[&str]) -> Output {
    let ns = pod_dir(run_dir, id).join("ns");
    Command::new("nsenter")
        .arg(format!("--net={}", ns.join("net").display()))
        .arg(format!("--uts={}", ns.join("uts").display()))
        .arg(format!("--ipc={}", ns.join("ipc").display()))
        .args(cmd)
        .output()
        .expect("nsenter (util-linux)")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// busybox ping, one packet, 2 s.
pub fn ping_cmd(ip: &str) -> Vec<String> {
    ["/bin/busybox", "ping", "-c", "1", "-W", "2", ip]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Mounts below `dir`, except what a daemon keeps for its lifetime when
/// `dir` is its run dir: the read-only bind of its own binary
/// (`<run_dir>/crius`) and its pool of ready pod namespaces (`nspool/`).
pub fn mounts_below(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    let exe = dir.join("crius").display().to_string();
    let pool = format!("{}/", dir.join("nspool").display());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix) && *p != exe && !p.starts_with(&pool))
        .map(str::to_owned)
        .collect()
}
