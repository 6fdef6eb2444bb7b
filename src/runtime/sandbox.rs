//! Pod sandboxes: pinned network/IPC/UTS namespaces (no process), CNI
//! networking, the pod's hostname/resolv.conf/hosts and /dev/shm, and their
//! records in the store. Containers (a later milestone) join what this
//! builds.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::podfiles::{self, DnsConfig, PodFileError};
use super::sysctl::SysctlError;
use super::{detached, lock};
use crate::id::{IdError, IdPrefix, PodSandboxId};
use crate::monitor::zygote::Zygote;
use crate::network::{AttachRequest, AttachResult, Cni, CniError, NetworkStatus, PortMapping};
use crate::store::{Store, StoreError, Table, Write};
use crate::sys::cgroup::{CgroupError, Cgroups, Created, Resources};
use crate::sys::namespace::{self, NamespaceError, PinRequest, Pinned};
use crate::sys::{infra, mount};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("pod sandbox config: {0}")]
    Invalid(String),
    #[error("pod sandbox name {name:?} is reserved for pod {id}; remove that pod first")]
    NameReserved { name: String, id: PodSandboxId },
    #[error("runtime handler {handler:?} is not configured (known: {known})")]
    UnknownHandler { handler: String, known: String },
    #[error("pod sandbox {0:?} not found")]
    NotFound(String),
    #[error("pod sandbox id prefix {prefix:?} is ambiguous: it matches {count} pods")]
    Ambiguous { prefix: String, count: usize },
    #[error("invalid pod sandbox id: {0}")]
    Id(#[from] IdError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error(transparent)]
    PodFile(#[from] PodFileError),
    #[error("pod {id}: namespaces: {source}")]
    Namespace {
        id: PodSandboxId,
        source: NamespaceError,
    },
    #[error("pod {id}: cgroup: {source}")]
    Cgroup {
        id: PodSandboxId,
        source: CgroupError,
    },
    #[error(
        "pod {id}: cgroup_parent {parent:?} given but no cgroup hierarchy was found at start-up"
    )]
    NoCgroups { id: PodSandboxId, parent: String },
    #[error("pod {id}: network: {source}")]
    Network { id: PodSandboxId, source: CniError },
    #[error("pod {id}: {context}: {source}")]
    Io {
        id: PodSandboxId,
        context: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// NamespaceOption modes as the domain sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum NsMode {
    #[default]
    Pod,
    Container,
    Node,
    Target,
}

/// A validated RunPodSandbox request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSpec {
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub attempt: u32,
    pub hostname: String,
    pub log_directory: String,
    pub dns: Option<DnsSpec>,
    pub port_mappings: Vec<PortSpec>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub cgroup_parent: String,
    pub sysctls: Vec<(String, String)>,
    pub network: NsMode,
    pub pid: NsMode,
    pub ipc: NsMode,
    pub runtime_handler: String,
    /// Pod-level limits (resources + overhead) for the pod cgroup.
    #[serde(default)]
    pub resources: Option<Resources>,
    /// The pod's user namespace mappings (CRI userns mode POD); `None`: the
    /// host's user namespace (NODE). See `runtime/userns.rs`.
    #[serde(default)]
    pub userns: Option<namespace::UserNs>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsSpec {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    pub protocol: String,
    pub container_port: u16,
    pub host_port: u16,
    pub host_ip: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    Ready,
    NotReady,
}

/// One pod as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: PodSandboxId,
    pub spec: PodSpec,
    pub state: SandboxState,
    pub created_ns: i64,
    pub pinned: Pinned,
    pub ips: Vec<IpAddr>,
    /// Whether CNI ADD succeeded and DEL has not run yet.
    pub network_attached: bool,
    pub shm: Option<PathBuf>,
    /// The cgroup dirs crius created for `cgroup_parent` (removed with the pod).
    #[serde(default)]
    pub cgroup: Option<Created>,
}

impl SandboxRecord {
    pub fn host_network(&self) -> bool {
        self.spec.network == NsMode::Node
    }
}

/// ListPodSandbox filter.
#[derive(Debug, Clone, Default)]
pub struct SandboxFilter {
    pub id: Option<String>,
    pub state: Option<SandboxState>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct SandboxManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    exe: PathBuf,
    /// Forks `pinns` (exec'd from `exe` when the zygote is unavailable).
    zygote: Arc<Zygote>,
    pods_dir: PathBuf,
    store: Arc<Store>,
    cni: Cni,
    cgroups: Option<Cgroups>,
    shm_size: u64,
    /// Namespace sets made ahead for the common pod (`nspool.rs`).
    pool: super::nspool::NsPool,
    runtime: crate::config::RuntimeConfig,
    host_resolv: PathBuf,
    pods: Mutex<BTreeMap<PodSandboxId, SandboxRecord>>,
    /// name key → id, held from RunPodSandbox until RemovePodSandbox.
    names: Mutex<HashMap<String, PodSandboxId>>,
    /// Serialises lifecycle verbs per pod (RunPodSandbox of one pod never
    /// waits for another).
    locks: Mutex<HashMap<PodSandboxId, Arc<tokio::sync::Mutex<()>>>>,
}

/// The pod's netns path if it is still a live pinned namespace. A pin that
/// vanished (reboot, manual cleanup) is handed to CNI DEL as no netns, which
/// plugins accept and still release addresses and rules.
fn live_netns(rec: &SandboxRecord) -> Option<&Path> {
    rec.pinned
        .net
        .as_deref()
        .filter(|p| namespace::is_pinned(p))
}

/// A pod with a PID namespace whose infra process is gone: the namespace
/// can no longer be joined.
fn infra_dead(rec: &SandboxRecord) -> bool {
    match (rec.pinned.infra_pid, &rec.pinned.pid) {
        (Some(pid), Some(pin)) => !infra::alive(pid, pin),
        _ => false,
    }
}

fn stop_infra(rec: &SandboxRecord) {
    if let (Some(pid), Some(pin)) = (rec.pinned.infra_pid, &rec.pinned.pid) {
        infra::stop(pid, pin);
    }
}

fn name_key(s: &PodSpec) -> String {
    format!("{}_{}_{}_{}", s.name, s.namespace, s.uid, s.attempt)
}

impl SandboxManager {
    /// Loads pods from the store. A Ready pod whose pinned network namespace
    /// vanished (reboot, manual cleanup) is reported NotReady.
    pub fn open(
        zygote: Arc<Zygote>,
        run_dir: &Path,
        store: Arc<Store>,
        cni: Cni,
        pod: &crate::config::PodConfig,
        runtime: crate::config::RuntimeConfig,
    ) -> Result<Self, SandboxError> {
        let pods_dir = run_dir.join("pods");
        std::fs::create_dir_all(&pods_dir)
            .map_err(|e| SandboxError::Internal(format!("creating {}: {e}", pods_dir.display())))?;
        let mut pods = BTreeMap::new();
        let mut names = HashMap::new();
        for (key, value) in store.scan(Table::Sandboxes)? {
            match serde_json::from_slice::<SandboxRecord>(&value) {
                Ok(mut r) => {
                    let ns_gone = [
                        &r.pinned.net,
                        &r.pinned.ipc,
                        &r.pinned.uts,
                        &r.pinned.pid,
                        &r.pinned.user,
                    ]
                    .into_iter()
                    .flatten()
                    .any(|p| !namespace::is_pinned(p))
                        || infra_dead(&r);
                    if r.state == SandboxState::Ready && ns_gone {
                        tracing::warn!(pod = %r.id, "pinned namespace missing; pod is NotReady");
                        r.state = SandboxState::NotReady;
                    }
                    names.insert(name_key(&r.spec), r.id.clone());
                    pods.insert(r.id.clone(), r);
                }
                Err(e) => tracing::error!(key, error = %e, "unreadable pod record skipped"),
            }
        }
        // Start-up made the run dir 0700 again; user namespace pods' roots
        // must still reach their containers (`userns::make_searchable`).
        if pods
            .values()
            .any(|r: &SandboxRecord| r.pinned.user.is_some())
            && let Err(e) = super::userns::make_searchable(&[run_dir])
        {
            tracing::warn!(error = %e, "user namespace pods cannot reach the run dir");
        }
        let cgroups = match Cgroups::detect(Path::new("/sys/fs/cgroup")) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "no usable cgroup hierarchy; pods with a cgroup_parent will fail");
                None
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                exe: zygote.exe().to_owned(),
                zygote,
                pods_dir,
                store,
                cni,
                cgroups,
                shm_size: pod.shm_size_bytes,
                pool: super::nspool::NsPool::new(run_dir, pod.namespace_pool),
                runtime,
                host_resolv: PathBuf::from("/etc/resolv.conf"),
                pods: Mutex::new(pods),
                names: Mutex::new(names),
                locks: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn network_status(&self) -> NetworkStatus {
        self.inner.cni.status()
    }

    fn pod_lock(&self, id: &PodSandboxId) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.inner.locks)
            .entry(id.clone())
            .or_default()
            .clone()
    }

    async fn persist(&self, rec: &SandboxRecord) -> Result<(), SandboxError> {
        let value = serde_json::to_vec(rec).map_err(|e| SandboxError::Internal(e.to_string()))?;
        let store = self.inner.store.clone();
        let key = rec.id.as_str().to_owned();
        tokio::task::spawn_blocking(move || {
            store.apply(&[Write::put(Table::Sandboxes, key, value)])
        })
        .await
        .map_err(|e| SandboxError::Internal(e.to_string()))??;
        lock(&self.inner.pods).insert(rec.id.clone(), rec.clone());
        Ok(())
    }

    /// Resolves a full id or unique prefix.
    pub fn resolve(&self, id: &str) -> Result<Option<PodSandboxId>, SandboxError> {
        let p = IdPrefix::parse(id)?;
        let pods = lock(&self.inner.pods);
        let hits: Vec<&PodSandboxId> = pods
            .keys()
            .filter(|k| k.as_str().starts_with(p.as_str()))
            .collect();
        match hits.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some((*one).clone())),
            many => Err(SandboxError::Ambiguous {
                prefix: id.to_owned(),
                count: many.len(),
            }),
        }
    }

    pub fn get(&self, id: &str) -> Result<Option<SandboxRecord>, SandboxError> {
        Ok(self
            .resolve(id)?
            .and_then(|id| lock(&self.inner.pods).get(&id).cloned()))
    }

    pub fn list(&self, f: &SandboxFilter) -> Result<Vec<SandboxRecord>, SandboxError> {
        let only = match f.id.as_deref().filter(|s| !s.is_empty()) {
            Some(id) => match self.resolve(id) {
                Ok(Some(id)) => Some(id),
                // An unknown or malformed id filter matches nothing.
                Ok(None) | Err(SandboxError::Id(_)) => return Ok(vec![]),
                Err(e) => return Err(e),
            },
            None => None,
        };
        let pods = lock(&self.inner.pods);
        Ok(pods
            .values()
            .filter(|p| only.as_ref().is_none_or(|id| &p.id == id))
            .filter(|p| f.state.is_none_or(|s| p.state == s))
            .filter(|p| {
                f.labels
                    .iter()
                    .all(|(k, v)| p.spec.labels.get(k) == Some(v))
            })
            .cloned()
            .collect())
    }

    /// RunPodSandbox. Everything built is undone if a later step fails.
    #[tracing::instrument(skip_all, fields(pod = %spec.name, namespace = %spec.namespace))]
    pub async fn run(&self, spec: PodSpec) -> Result<PodSandboxId, SandboxError> {
        let me = self.clone();
        detached(
            async move { me.run_inner(spec).await },
            SandboxError::Internal,
        )
        .await
    }

    async fn run_inner(&self, spec: PodSpec) -> Result<PodSandboxId, SandboxError> {
        if let Err(known) = self.inner.runtime.handler(&spec.runtime_handler) {
            return Err(SandboxError::UnknownHandler {
                handler: spec.runtime_handler,
                known,
            });
        }
        let id = PodSandboxId::random()
            .map_err(|e| SandboxError::Internal(format!("random id: {e}")))?;
        let key = name_key(&spec);
        {
            let mut names = lock(&self.inner.names);
            if let Some(owner) = names.get(&key) {
                return Err(SandboxError::NameReserved {
                    name: key,
                    id: owner.clone(),
                });
            }
            names.insert(key.clone(), id.clone());
        }
        let guard = self.pod_lock(&id);
        let _g = guard.lock().await;
        let result = self.build(&id, spec).await;
        self.fill_pool();
        match result {
            Ok(rec) => {
                tracing::info!(pod = %id, ips = ?rec.ips, "pod sandbox ready");
                Ok(id)
            }
            Err((e, partial)) => {
                self.teardown(&partial).await;
                lock(&self.inner.names).remove(&key);
                Err(e)
            }
        }
    }

    /// Tops the namespace pool up in the background, shortly after (one
    /// refill at a time; a failure is logged and ends it).
    pub fn fill_pool(&self) {
        if !self.inner.pool.start_fill() {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            // Not in the middle of the pod's own start: CreateContainer and
            // StartContainer usually follow at once, and the refill's
            // mounts would contend with theirs.
            tokio::time::sleep(super::nspool::REFILL_DELAY).await;
            let pool = &me.inner.pool;
            while let Some(req) = pool.next_request() {
                match namespace::pin_with(&req, me.pinns_runner()).await {
                    Ok(_) => pool.add(req.dir),
                    Err(e) => {
                        tracing::warn!(error = %e, "making pooled pod namespaces");
                        let _ = namespace::unpin(&req.dir);
                        break;
                    }
                }
            }
            pool.end_fill();
        });
    }

    /// Unpins every ready set of the namespace pool (at shutdown).
    pub fn drain_pool(&self) {
        self.inner.pool.drain();
    }

    /// Runs `pinns` forked by the monitor zygote (no exec: a few
    /// milliseconds less per pod), or exec'd when the zygote cannot.
    fn pinns_runner(
        &self,
    ) -> impl FnOnce(Vec<u8>) -> Result<std::process::Output, NamespaceError> + Send + 'static {
        let inner = self.inner.clone();
        move |input| {
            inner
                .zygote
                .run_pinns(&inner.pods_dir, &input)
                .or_else(|e| {
                    tracing::warn!(error = %e, "monitor zygote unavailable; exec'ing pinns");
                    namespace::exec_helper(&inner.exe, &input)
                })
        }
    }

    /// Start-up: whether this node's image layers can be id-mapped for
    /// user namespace pods (`userns::layer_store_idmaps`), tried with a
    /// throw-away user namespace pinned by pinns, as a pod's would be.
    /// Skipped where the kernel cannot run such pods anyway.
    pub async fn probe_userns(&self, layers: &Path) {
        use super::userns::{self, IdMap, UserNs};
        if !userns::kernel_supported() {
            return;
        }
        let run_dir = self.inner.pods_dir.parent().unwrap_or(&self.inner.pods_dir);
        let dir = run_dir.join("userns-probe");
        // What a daemon killed during its probe left.
        let _ = namespace::unpin(&dir);
        // A mapping of one id is enough to id-map a mount.
        let one = vec![IdMap {
            container_id: 0,
            host_id: 65534,
            length: 1,
        }];
        let req = PinRequest {
            dir: dir.clone(),
            net: false,
            ipc: false,
            uts: false,
            hostname: None,
            sysctls: Vec::new(),
            pid: false,
            userns: Some(UserNs {
                uids: one.clone(),
                gids: one,
            }),
        };
        let result = match namespace::pin_with(&req, self.pinns_runner()).await {
            Ok(Pinned { user: Some(ns), .. }) => {
                let layers = layers.to_owned();
                let dir2 = dir.clone();
                tokio::task::spawn_blocking(move || {
                    let r = userns::layer_store_idmaps(&layers, &ns);
                    if let Err(e) = namespace::unpin(&dir2) {
                        tracing::warn!(error = %e, "removing the user namespace probe");
                    }
                    r
                })
                .await
                .unwrap_or_else(|e| Err(format!("the probe task: {e}")))
            }
            Ok(_) => {
                let _ = namespace::unpin(&dir);
                Err("pinns made no user namespace".to_owned())
            }
            Err(e) => Err(format!("making a user namespace: {e}")),
        };
        if let Err(e) = &result {
            tracing::warn!(error = %e, "user namespace pods are not supported on this node");
        }
        userns::record_layer_store_probe(result);
    }

    pub fn pod_dir(&self, id: &PodSandboxId) -> PathBuf {
        self.inner.pods_dir.join(id.as_str())
    }

    async fn build(
        &self,
        id: &PodSandboxId,
        spec: PodSpec,
    ) -> Result<SandboxRecord, (SandboxError, SandboxRecord)> {
        let mut rec = SandboxRecord {
            id: id.clone(),
            spec,
            state: SandboxState::NotReady,
            created_ns: crate::image::manager::now_ns(),
            pinned: Pinned::default(),
            ips: vec![],
            network_attached: false,
            shm: None,
            cgroup: None,
        };
        macro_rules! tryb {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) => return Err((e, rec)),
                }
            };
        }
        let dir = self.pod_dir(id);
        let io = |context: &str| {
            let id = id.clone();
            let context = context.to_owned();
            move |source| SandboxError::Io {
                id,
                context,
                source,
            }
        };
        tryb!(std::fs::create_dir_all(&dir).map_err(io("creating the pod dir")));
        let host_net = rec.spec.network == NsMode::Node;
        let host_ipc = rec.spec.ipc == NsMode::Node;
        let hostname = if rec.spec.hostname.is_empty() {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            rec.spec.hostname.clone()
        };
        let host_resolv = std::fs::read_to_string(&self.inner.host_resolv).unwrap_or_default();
        let dns = rec.spec.dns.as_ref().map(|d| DnsConfig {
            servers: d.servers.clone(),
            searches: d.searches.clone(),
            options: d.options.clone(),
        });
        let resolv =
            tryb!(podfiles::resolv_conf(dns.as_ref(), &host_resolv).map_err(SandboxError::from));
        tryb!(
            std::fs::write(dir.join("hostname"), format!("{hostname}\n"))
                .map_err(io("writing hostname"))
        );
        tryb!(std::fs::write(dir.join("resolv.conf"), resolv).map_err(io("writing resolv.conf")));
        if !rec.spec.cgroup_parent.is_empty() {
            let parent = rec.spec.cgroup_parent.clone();
            let Some(cg) = &self.inner.cgroups else {
                let e = SandboxError::NoCgroups {
                    id: id.clone(),
                    parent,
                };
                return Err((e, rec));
            };
            let cg_err = |source| SandboxError::Cgroup {
                id: id.clone(),
                source,
            };
            rec.cgroup = Some(tryb!(cg.create(&parent).map_err(cg_err)));
            if let Some(r) = &rec.spec.resources {
                tryb!(cg.apply(&parent, r).map_err(cg_err));
            }
        }
        if !host_ipc {
            let shm = dir.join("shm");
            tryb!(
                mount::mount_shm(&shm, self.inner.shm_size).map_err(io("mounting /dev/shm tmpfs"))
            );
            rec.shm = Some(shm);
        }
        let req = PinRequest {
            dir: dir.join("ns"),
            net: !host_net,
            ipc: !host_ipc,
            uts: !host_net,
            hostname: (!host_net).then(|| hostname.clone()),
            sysctls: rec.spec.sysctls.clone(),
            pid: rec.spec.pid == NsMode::Pod,
            userns: rec.spec.userns.clone(),
        };
        if rec.spec.userns.is_some() {
            tryb!(
                super::userns::check_pod(&rec.spec, &self.inner.runtime).map_err(|e| {
                    SandboxError::Namespace {
                        id: id.clone(),
                        source: NamespaceError::Userns(e),
                    }
                })
            );
        }
        let pooled = if self.inner.pool.fits(&req) {
            self.inner.pool.take(&req)
        } else {
            None
        };
        if let Some(pinned) = pooled {
            rec.pinned = pinned;
        } else if req.net || req.ipc || req.uts || req.pid || req.userns.is_some() {
            rec.pinned = tryb!(
                namespace::pin_with(&req, self.pinns_runner())
                    .await
                    .map_err(|source| {
                        SandboxError::Namespace {
                            id: id.clone(),
                            source,
                        }
                    })
            );
        }
        if rec.pinned.user.is_some() {
            let ns_dir = dir.join("ns");
            tryb!(
                super::userns::make_searchable(&[
                    self.inner.pods_dir.parent().unwrap_or(&self.inner.pods_dir),
                    &self.inner.pods_dir,
                    &dir,
                    &ns_dir
                ])
                .map_err(|e| SandboxError::Namespace {
                    id: id.clone(),
                    source: NamespaceError::Userns(e),
                })
            );
        }
        if let Some(netns) = rec.pinned.net.clone() {
            let attach = self.attach_request(&rec, netns);
            let result: AttachResult =
                tryb!(self.inner.cni.attach(&attach).await.map_err(|source| {
                    SandboxError::Network {
                        id: id.clone(),
                        source,
                    }
                }));
            rec.network_attached = true;
            rec.ips = result.ips;
        }
        // A host-network pod sees the node's names, as under containerd.
        let hosts = if host_net {
            std::fs::read_to_string("/etc/hosts")
                .unwrap_or_else(|_| podfiles::hosts(&hostname, &[]))
        } else {
            podfiles::hosts(&hostname, &rec.ips)
        };
        tryb!(std::fs::write(dir.join("hosts"), hosts).map_err(io("writing hosts")));
        // The pod's root owns its hostname, resolv.conf and hosts (bound
        // read-write into its containers), as it would in a host-userns pod.
        if let Some(root) = rec
            .spec
            .userns
            .as_ref()
            .and_then(super::userns::mapped_root)
        {
            for f in ["hostname", "resolv.conf", "hosts"] {
                tryb!(
                    nix::unistd::chown(
                        &dir.join(f),
                        Some(nix::unistd::Uid::from_raw(root.0)),
                        Some(nix::unistd::Gid::from_raw(root.1)),
                    )
                    .map_err(|e| io("giving the pod files to the pod's root")(e.into()))
                );
            }
        }
        rec.state = SandboxState::Ready;
        tryb!(self.persist(&rec).await);
        Ok(rec)
    }

    fn attach_request(&self, rec: &SandboxRecord, netns: PathBuf) -> AttachRequest {
        AttachRequest {
            pod_id: rec.id.to_string(),
            netns,
            ifname: "eth0".into(),
            pod_name: rec.spec.name.clone(),
            pod_namespace: rec.spec.namespace.clone(),
            pod_uid: rec.spec.uid.clone(),
            port_mappings: rec
                .spec
                .port_mappings
                .iter()
                .map(|p| PortMapping {
                    protocol: p.protocol.clone(),
                    container_port: p.container_port,
                    host_port: p.host_port,
                    host_ip: p.host_ip.clone(),
                })
                .collect(),
            dns: rec.spec.dns.as_ref().map(|d| {
                serde_json::json!({"servers": d.servers, "searches": d.searches, "options": d.options})
            }),
            // Validated in the API layer; an unparsable value cannot get here.
            bandwidth: super::bandwidth::from_annotations(&rec.spec.annotations)
                .ok()
                .flatten(),
        }
    }

    /// Undoes everything `build` may have done; best effort, logs failures.
    async fn teardown(&self, rec: &SandboxRecord) {
        let r = rec.clone();
        let _ = tokio::task::spawn_blocking(move || stop_infra(&r)).await;
        if rec.network_attached
            && let Err(e) = self
                .inner
                .cni
                .detach(
                    rec.id.as_str(),
                    rec.pinned.net.as_deref(),
                    &self.attach_request(rec, rec.pinned.net.clone().unwrap_or_default()),
                )
                .await
        {
            tracing::warn!(pod = %rec.id, error = %e, "CNI DEL during cleanup");
        }
        if let (Some(created), Some(cg)) = (&rec.cgroup, &self.inner.cgroups)
            && let Err(e) = cg.remove(created)
        {
            tracing::warn!(pod = %rec.id, error = %e, "removing the pod cgroup");
        }
        let dir = self.pod_dir(&rec.id);
        if let Err(e) = namespace::unpin(&dir.join("ns")) {
            tracing::warn!(pod = %rec.id, error = %e, "unpinning namespaces during cleanup");
        }
        if let Some(shm) = &rec.shm
            && let Err(e) = mount::unmount(shm)
        {
            tracing::warn!(pod = %rec.id, error = %e, "unmounting shm during cleanup");
        }
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(pod = %rec.id, error = %e, "removing pod dir during cleanup");
        }
    }

    /// StopPodSandbox: tears the network down and marks the pod NotReady.
    /// Unknown pods are success (CRI: idempotent).
    #[tracing::instrument(skip_all, fields(pod = id))]
    pub async fn stop(&self, id: &str) -> Result<(), SandboxError> {
        let (me, id) = (self.clone(), id.to_owned());
        detached(
            async move { me.stop_inner(&id).await },
            SandboxError::Internal,
        )
        .await
    }

    async fn stop_inner(&self, id: &str) -> Result<(), SandboxError> {
        let Some(id) = self.resolve(id)? else {
            return Ok(());
        };
        let guard = self.pod_lock(&id);
        let _g = guard.lock().await;
        let Some(mut rec) = lock(&self.inner.pods).get(&id).cloned() else {
            return Ok(());
        };
        let mut changed = false;
        if rec.pinned.infra_pid.is_some() && !infra_dead(&rec) {
            let r = rec.clone();
            tokio::task::spawn_blocking(move || stop_infra(&r))
                .await
                .map_err(|e| SandboxError::Internal(e.to_string()))?;
            changed = true;
        }
        if rec.network_attached {
            changed = true;
            let req = self.attach_request(&rec, rec.pinned.net.clone().unwrap_or_default());
            self.inner
                .cni
                .detach(id.as_str(), live_netns(&rec), &req)
                .await
                .map_err(|source| SandboxError::Network {
                    id: id.clone(),
                    source,
                })?;
            rec.network_attached = false;
        }
        if rec.state != SandboxState::NotReady || changed {
            rec.state = SandboxState::NotReady;
            self.persist(&rec).await?;
        }
        Ok(())
    }

    /// RemovePodSandbox: stops if needed, then removes namespaces, files and
    /// the record, and frees the name. Unknown pods are success.
    #[tracing::instrument(skip_all, fields(pod = id))]
    pub async fn remove(&self, id: &str) -> Result<(), SandboxError> {
        let (me, id) = (self.clone(), id.to_owned());
        detached(
            async move { me.remove_inner(&id).await },
            SandboxError::Internal,
        )
        .await
    }

    async fn remove_inner(&self, id: &str) -> Result<(), SandboxError> {
        let Some(pid) = self.resolve(id)? else {
            return Ok(());
        };
        self.stop_inner(pid.as_str()).await?;
        let guard = self.pod_lock(&pid);
        let _g = guard.lock().await;
        let Some(rec) = lock(&self.inner.pods).get(&pid).cloned() else {
            return Ok(());
        };
        self.teardown(&rec).await;
        let store = self.inner.store.clone();
        let key = pid.as_str().to_owned();
        tokio::task::spawn_blocking(move || store.apply(&[Write::delete(Table::Sandboxes, key)]))
            .await
            .map_err(|e| SandboxError::Internal(e.to_string()))??;
        lock(&self.inner.pods).remove(&pid);
        lock(&self.inner.names).remove(&name_key(&rec.spec));
        lock(&self.inner.locks).remove(&pid);
        tracing::info!(pod = %pid, "pod sandbox removed");
        Ok(())
    }
}

impl SandboxManager {
    /// The CNI result cached for a pod, for verbose status.
    pub fn cni_result(&self, id: &str) -> Option<serde_json::Value> {
        self.inner.cni.cached_result(id).map(|r| r.raw)
    }
}
