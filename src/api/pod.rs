//! CRI pod sandbox verbs: request validation and conversion, and the
//! handlers' bodies (the trait impl in runtime.rs delegates here).

use std::collections::{BTreeMap, HashMap};

use k8s_cri::v1 as cri;
use tonic::{Response, Status};

use super::Cri;
use crate::runtime::sandbox::{
    DnsSpec, NsMode, PodSpec, PortSpec, SandboxFilter, SandboxRecord, SandboxState,
};
use crate::runtime::{podfiles, sysctl, userns};
use crate::sys::cgroup::Resources;

/// Longest label/annotation key or value we store (kubelet's own limits are
/// lower; this only keeps a hostile client from bloating the store).
const MAX_META: usize = 64 << 10;

fn invalid(what: &str, why: impl std::fmt::Display) -> Status {
    invalid_in("RunPodSandbox", what, why)
}

/// InvalidArgument naming the RPC and the field: `RPC: field: why`.
pub(super) fn invalid_in(rpc: &str, what: &str, why: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{rpc}: {what}: {why}"))
}

pub(super) fn ns_mode(v: i32, rpc: &str, what: &str) -> Result<NsMode, Status> {
    match cri::NamespaceMode::try_from(v) {
        Ok(cri::NamespaceMode::Pod) => Ok(NsMode::Pod),
        Ok(cri::NamespaceMode::Container) => Ok(NsMode::Container),
        Ok(cri::NamespaceMode::Node) => Ok(NsMode::Node),
        Ok(cri::NamespaceMode::Target) => Ok(NsMode::Target),
        Err(_) => Err(invalid_in(rpc, what, format!("unknown namespace mode {v}"))),
    }
}

fn ns_mode_out(m: NsMode) -> i32 {
    match m {
        NsMode::Pod => cri::NamespaceMode::Pod as i32,
        NsMode::Container => cri::NamespaceMode::Container as i32,
        NsMode::Node => cri::NamespaceMode::Node as i32,
        NsMode::Target => cri::NamespaceMode::Target as i32,
    }
}

pub(super) fn meta_map(
    m: HashMap<String, String>,
    rpc: &str,
    what: &str,
) -> Result<BTreeMap<String, String>, Status> {
    for (k, v) in &m {
        if k.is_empty() || k.len() > MAX_META || v.len() > MAX_META {
            return Err(invalid_in(
                rpc,
                what,
                format!("key {k:?} is empty or too long"),
            ));
        }
    }
    Ok(m.into_iter().collect())
}

/// Validates a RunPodSandbox request into the domain's `PodSpec`.
pub fn pod_spec(req: cri::RunPodSandboxRequest) -> Result<PodSpec, Status> {
    let cfg = req.config.ok_or_else(|| invalid("config", "missing"))?;
    let md = cfg
        .metadata
        .ok_or_else(|| invalid("config.metadata", "missing"))?;
    for (what, v) in [
        ("metadata.name", &md.name),
        ("metadata.namespace", &md.namespace),
        ("metadata.uid", &md.uid),
    ] {
        if v.is_empty() {
            return Err(invalid(what, "is empty"));
        }
        if v.len() > 253 || v.contains(|c: char| c.is_control() || c == '/') {
            return Err(invalid(what, format!("{v:?} is not a valid name")));
        }
    }
    if !cfg.hostname.is_empty() {
        podfiles::validate_hostname(&cfg.hostname).map_err(|e| invalid("hostname", e))?;
    }
    let linux = cfg.linux.unwrap_or_default();
    let ns = linux
        .security_context
        .as_ref()
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default();
    let network = ns_mode(ns.network, "RunPodSandbox", "namespace_options.network")?;
    let pid = ns_mode(ns.pid, "RunPodSandbox", "namespace_options.pid")?;
    let ipc = ns_mode(ns.ipc, "RunPodSandbox", "namespace_options.ipc")?;
    for (what, m) in [("network", network), ("ipc", ipc)] {
        if !matches!(m, NsMode::Pod | NsMode::Node) {
            return Err(invalid(
                &format!("namespace_options.{what}"),
                "a pod's namespace mode must be POD or NODE",
            ));
        }
    }
    let userns = pod_userns(ns.userns_options.as_ref())?;
    if userns.is_some() {
        for (what, m) in [("network", network), ("pid", pid), ("ipc", ipc)] {
            if m == NsMode::Node {
                return Err(invalid(
                    &format!("namespace_options.{what}"),
                    "NODE cannot be combined with a pod user namespace \
                     (userns_options.mode POD): the host's namespaces are not owned by it",
                ));
            }
        }
    }
    let sysctls = sysctl::validate(&linux.sysctls, network == NsMode::Node, ipc == NsMode::Node)
        .map_err(|e| invalid("linux.sysctls", e))?;
    if linux.cgroup_parent.contains("..") || linux.cgroup_parent.contains('\0') {
        return Err(invalid(
            "linux.cgroup_parent",
            format!("{:?} escapes the cgroup root", linux.cgroup_parent),
        ));
    }
    let annotations = meta_map(cfg.annotations, "RunPodSandbox", "annotations")?;
    crate::runtime::bandwidth::from_annotations(&annotations)
        .map_err(|e| invalid("annotations", e))?;
    let mut ports = Vec::with_capacity(cfg.port_mappings.len());
    for p in cfg.port_mappings {
        let port = |v: i32, what: &str| {
            u16::try_from(v).map_err(|_| invalid(what, format!("{v} is not a port number")))
        };
        let protocol = match cri::Protocol::try_from(p.protocol) {
            Ok(cri::Protocol::Tcp) => "tcp",
            Ok(cri::Protocol::Udp) => "udp",
            Ok(cri::Protocol::Sctp) => "sctp",
            Err(_) => return Err(invalid("port_mappings.protocol", p.protocol)),
        };
        if !p.host_ip.is_empty() && p.host_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid(
                "port_mappings.host_ip",
                format!("{:?} is not an IP", p.host_ip),
            ));
        }
        ports.push(PortSpec {
            protocol: protocol.into(),
            container_port: port(p.container_port, "port_mappings.container_port")?,
            host_port: port(p.host_port, "port_mappings.host_port")?,
            host_ip: p.host_ip,
        });
    }
    Ok(PodSpec {
        name: md.name,
        uid: md.uid,
        namespace: md.namespace,
        attempt: md.attempt,
        hostname: cfg.hostname,
        log_directory: cfg.log_directory,
        dns: cfg.dns_config.map(|d| DnsSpec {
            servers: d.servers,
            searches: d.searches,
            options: d.options,
        }),
        port_mappings: ports,
        labels: meta_map(cfg.labels, "RunPodSandbox", "labels")?,
        annotations,
        cgroup_parent: linux.cgroup_parent,
        sysctls,
        network,
        pid,
        ipc,
        runtime_handler: req.runtime_handler,
        resources: pod_resources(linux.resources.as_ref(), linux.overhead.as_ref()),
        userns,
    })
}

/// The pod's user namespace as PodSandboxStatus reports it.
fn userns_out(u: &userns::UserNs) -> cri::UserNamespace {
    let maps = |v: &[userns::IdMap]| {
        v.iter()
            .map(|m| cri::IdMapping {
                host_id: m.host_id,
                container_id: m.container_id,
                length: m.length,
            })
            .collect()
    };
    cri::UserNamespace {
        mode: cri::NamespaceMode::Pod as i32,
        uids: maps(&u.uids),
        gids: maps(&u.gids),
    }
}

/// `namespace_options.userns_options`: absent or NODE is the host's user
/// namespace (containerd and CRI-O read an absent struct the same way,
/// whatever the proto comment says about POD); POD needs valid mappings;
/// CONTAINER and TARGET are not user namespace modes crius runs.
fn pod_userns(u: Option<&cri::UserNamespace>) -> Result<Option<userns::UserNs>, Status> {
    const W: &str = "namespace_options.userns_options";
    let Some(u) = u else { return Ok(None) };
    let maps = |v: &[cri::IdMapping]| {
        v.iter()
            .map(|m| userns::IdMap {
                container_id: m.container_id,
                host_id: m.host_id,
                length: m.length,
            })
            .collect::<Vec<_>>()
    };
    match cri::NamespaceMode::try_from(u.mode) {
        Ok(cri::NamespaceMode::Node) => Ok(None),
        Ok(cri::NamespaceMode::Pod) => {
            let spec = userns::UserNs {
                uids: maps(&u.uids),
                gids: maps(&u.gids),
            };
            userns::validate(&spec)
                .map_err(|(field, why)| invalid(&format!("{W}.{field}"), why))?;
            Ok(Some(spec))
        }
        Ok(cri::NamespaceMode::Container) => Err(invalid(
            &format!("{W}.mode"),
            "CONTAINER (a user namespace per container) is not supported; use POD or NODE",
        )),
        Ok(cri::NamespaceMode::Target) => Err(invalid(
            &format!("{W}.mode"),
            "TARGET is not a valid user namespace mode (POD or NODE)",
        )),
        Err(_) => Err(invalid(
            &format!("{W}.mode"),
            format!("unknown namespace mode {}", u.mode),
        )),
    }
}

/// Pod cgroup limits: the pod's resources plus the runtime class overhead
/// (kubelet sizes the pod as their sum). CRI's 0 means "not set".
fn pod_resources(
    r: Option<&cri::LinuxContainerResources>,
    overhead: Option<&cri::LinuxContainerResources>,
) -> Option<Resources> {
    let r = r?;
    let o = overhead.cloned().unwrap_or_default();
    let pos = |v: i64| (v > 0).then_some(v);
    let out = Resources {
        cpu_period: pos(r.cpu_period).and_then(|v| u64::try_from(v).ok()),
        cpu_quota: pos(r.cpu_quota).map(|q| q + o.cpu_quota.max(0)),
        cpu_shares: pos(r.cpu_shares).and_then(|v| u64::try_from(v + o.cpu_shares.max(0)).ok()),
        memory_limit: pos(r.memory_limit_in_bytes).map(|m| m + o.memory_limit_in_bytes.max(0)),
        cpuset_cpus: Some(r.cpuset_cpus.clone()).filter(|s| !s.is_empty()),
        cpuset_mems: Some(r.cpuset_mems.clone()).filter(|s| !s.is_empty()),
    };
    (out != Resources::default()).then_some(out)
}

fn state_out(s: SandboxState) -> i32 {
    match s {
        SandboxState::Ready => cri::PodSandboxState::SandboxReady as i32,
        SandboxState::NotReady => cri::PodSandboxState::SandboxNotready as i32,
    }
}

pub(super) fn metadata(r: &SandboxRecord) -> cri::PodSandboxMetadata {
    cri::PodSandboxMetadata {
        name: r.spec.name.clone(),
        uid: r.spec.uid.clone(),
        namespace: r.spec.namespace.clone(),
        attempt: r.spec.attempt,
    }
}

pub(super) fn to_map(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub fn sandbox_status(r: &SandboxRecord) -> cri::PodSandboxStatus {
    let mut ips = r.ips.iter().map(|ip| ip.to_string());
    let network = if r.host_network() {
        None
    } else {
        Some(cri::PodSandboxNetworkStatus {
            ip: ips.next().unwrap_or_default(),
            additional_ips: ips.map(|ip| cri::PodIp { ip }).collect(),
        })
    };
    cri::PodSandboxStatus {
        id: r.id.to_string(),
        metadata: Some(metadata(r)),
        state: state_out(r.state),
        created_at: r.created_ns,
        network,
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(cri::NamespaceOption {
                    network: ns_mode_out(r.spec.network),
                    pid: ns_mode_out(r.spec.pid),
                    ipc: ns_mode_out(r.spec.ipc),
                    userns_options: r.spec.userns.as_ref().map(userns_out),
                    ..Default::default()
                }),
            }),
        }),
        labels: to_map(&r.spec.labels),
        annotations: to_map(&r.spec.annotations),
        runtime_handler: r.spec.runtime_handler.clone(),
    }
}

pub fn sandbox_item(r: &SandboxRecord) -> cri::PodSandbox {
    cri::PodSandbox {
        id: r.id.to_string(),
        metadata: Some(metadata(r)),
        state: state_out(r.state),
        created_at: r.created_ns,
        labels: to_map(&r.spec.labels),
        annotations: to_map(&r.spec.annotations),
        runtime_handler: r.spec.runtime_handler.clone(),
    }
}

impl Cri {
    pub(super) async fn pod_port_forward(
        &self,
        req: cri::PortForwardRequest,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        if req.pod_sandbox_id.is_empty() {
            return Err(Status::invalid_argument(
                "PortForward: pod_sandbox_id is required",
            ));
        }
        if let Some(p) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
            return Err(Status::invalid_argument(format!(
                "PortForward: port {p} is out of range (1-65535)"
            )));
        }
        let rec = self.sandboxes.get(&req.pod_sandbox_id)?.ok_or_else(|| {
            Status::not_found(format!("pod sandbox {:?} not found", req.pod_sandbox_id))
        })?;
        if rec.state != crate::runtime::sandbox::SandboxState::Ready {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {} is not ready; cannot forward ports to it",
                rec.id
            )));
        }
        let url = self
            .stream_server()?
            .portforward_url(crate::streaming::PortForwardSpec {
                pod_id: rec.id.to_string(),
                netns: rec.pinned.net.clone(),
            })
            .map_err(|e| Status::internal(format!("PortForward: making a token: {e}")))?;
        Ok(Response::new(cri::PortForwardResponse { url }))
    }
    pub(super) async fn run_pod(
        &self,
        req: cri::RunPodSandboxRequest,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        let spec = pod_spec(req)?;
        let id = self.sandboxes.run(spec).await?;
        tracing::Span::current().record("id", id.as_str());
        Ok(Response::new(cri::RunPodSandboxResponse {
            pod_sandbox_id: id.to_string(),
        }))
    }

    pub(super) async fn pod_status(
        &self,
        req: cri::PodSandboxStatusRequest,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        tracing::Span::current().record("id", req.pod_sandbox_id.as_str());
        let rec = self.sandboxes.get(&req.pod_sandbox_id)?.ok_or_else(|| {
            Status::not_found(format!("pod sandbox {:?} not found", req.pod_sandbox_id))
        })?;
        let mut info = HashMap::new();
        if req.verbose {
            let doc = serde_json::json!({
                "pid": rec.pinned.infra_pid.unwrap_or(0),
                "netns": rec.pinned.net,
                "ipcns": rec.pinned.ipc,
                "utsns": rec.pinned.uts,
                "ips": rec.ips,
                "cni": self.sandboxes.cni_result(rec.id.as_str()),
                "runtimeHandler": rec.spec.runtime_handler,
            });
            info.insert("info".to_owned(), doc.to_string());
        }
        Ok(Response::new(cri::PodSandboxStatusResponse {
            status: Some(sandbox_status(&rec)),
            info,
            containers_statuses: vec![],
            timestamp: crate::image::manager::now_ns(),
        }))
    }

    pub(super) async fn list_pods(
        &self,
        req: cri::ListPodSandboxRequest,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        let f = req.filter.unwrap_or_default();
        let state = match f.state {
            None => None,
            Some(s) => match cri::PodSandboxState::try_from(s.state) {
                Ok(cri::PodSandboxState::SandboxReady) => Some(SandboxState::Ready),
                Ok(cri::PodSandboxState::SandboxNotready) => Some(SandboxState::NotReady),
                Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "ListPodSandbox: filter.state: unknown state {}",
                        s.state
                    )));
                }
            },
        };
        let filter = SandboxFilter {
            id: Some(f.id).filter(|s| !s.is_empty()),
            state,
            labels: f.label_selector.into_iter().collect(),
        };
        let items = self.sandboxes.list(&filter)?;
        Ok(Response::new(cri::ListPodSandboxResponse {
            items: items.iter().map(sandbox_item).collect(),
        }))
    }
}
