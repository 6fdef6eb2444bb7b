//! ContainerManager: the container verbs, the records in the store, and
//! talking to monitors.
//!
//! Where things live, for container `<id>`:
//! - `<run_dir>/containers/<id>/` (0700): the OCI bundle (`config.json`,
//!   `rootfs/` — the overlay mount), `launch.json`, and what the monitor
//!   keeps there (`monitor.sock`, `exit.json`, `monitor.log`);
//! - `<state_dir>/containers/<id>/{upper,work}`: the writable layer;
//! - `<run_dir>/runtime/<id>` (or `<run_dir>/runtime-<handler>/<id>` for an
//!   external runtime): the OCI runtime's own state.

mod exec;
mod stats;
mod volumes;

pub use exec::{ExecIo, ExecOutput, ExecStreams, ExecWaiter};
pub use stats::{ContainerStats, PodStats};

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::os::fd::AsFd as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::Instrument as _;

use super::spec::{self, SpecInput};
use super::{
    ContainerError, ContainerFilter, ContainerRecord, ContainerResources, ContainerSpec,
    ContainerState, EffectiveUser, ImageVolume, Propagation,
};
use crate::config::RuntimeConfig;
use crate::id::{ChainId, ContainerId, IdPrefix};
use crate::image::ImageManager;
use crate::image::manifest::ImageConfig;
use crate::monitor::client::{self, ClientError};
use crate::monitor::proto::{self, request::Kind};
use crate::monitor::zygote::{self, Zygote};
use crate::monitor::{ExitRecord, Launch, Report, now_ns};
use crate::runtime::cdi;
use crate::runtime::events::{ContainerEvent, EventKind, Events};
use crate::runtime::sandbox::{SandboxManager, SandboxRecord, SandboxState};
use crate::runtime::security;
use crate::runtime::user::{self, UserRequest};
use crate::runtime::{detached, lock, process};
use crate::store::{Store, Table, Write};
use crate::sys::cgroup::{CgroupMode, Cgroups, Created};
use crate::sys::{fs as rootfs_fs, mount};

/// How long StartContainer waits for the monitor to report.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stop waits for the process to die after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct ContainerManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The read-only bind of the crius binary monitors run from.
    exe: PathBuf,
    /// Forks monitors (falls back to exec'ing `exe` when unavailable);
    /// shared with the sandbox manager, which has it fork `pinns`.
    zygote: Arc<Zygote>,
    /// The previous CPU sample of each container, for rates.
    cpu_samples: stats::CpuSamples,
    run_dir: PathBuf,
    bundles: PathBuf,
    uppers: PathBuf,
    store: Arc<Store>,
    images: ImageManager,
    sandboxes: SandboxManager,
    cgroups: Option<Cgroups>,
    runtime: RuntimeConfig,
    own_oom_score_adj: i64,
    host_has_apparmor: bool,
    records: Mutex<BTreeMap<ContainerId, ContainerRecord>>,
    names: Mutex<HashMap<String, ContainerId>>,
    locks: Mutex<HashMap<ContainerId, Arc<tokio::sync::Mutex<()>>>>,
    /// Lifecycle events (GetContainerEvents).
    events: Events,
}

fn name_key(pod: &str, spec: &ContainerSpec) -> String {
    format!("{}_{}_{}", pod, spec.name, spec.attempt)
}

/// The layers existing containers use, read from the store before the
/// image service's start-up GC runs.
pub fn stored_layer_pins(store: &Store) -> Vec<ChainId> {
    #[derive(serde::Deserialize)]
    struct Layers {
        chain_ids: Vec<ChainId>,
        #[serde(default)]
        image_volumes: Vec<ImageVolume>,
    }
    store
        .scan(Table::Containers)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice::<Layers>(&v).ok())
        .flat_map(|l| volumes::all_layers(&l.chain_ids, &l.image_volumes))
        .collect()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ContainerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ContainerError::Internal(e.to_string()))
}

fn exit_reason(e: &ExitRecord) -> &'static str {
    if e.oom_killed {
        "OOMKilled"
    } else if e.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

impl ContainerManager {
    /// Loads the records; containers that exited while the daemon was down
    /// get their exit from `exit.json`. Call [`Self::resume`] once serving.
    pub fn open(
        zygote: Arc<Zygote>,
        run_dir: &Path,
        state_dir: &Path,
        store: Arc<Store>,
        images: ImageManager,
        sandboxes: SandboxManager,
        runtime: RuntimeConfig,
    ) -> Result<Self, ContainerError> {
        let bundles = run_dir.join("containers");
        let uppers = state_dir.join("containers");
        for d in [&bundles, &uppers, &run_dir.join("s")] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d)
                .map_err(|e| ContainerError::Internal(format!("creating {}: {e}", d.display())))?;
        }
        let mut records = BTreeMap::new();
        let mut names = HashMap::new();
        for (key, value) in store.scan(Table::Containers)? {
            match serde_json::from_slice::<ContainerRecord>(&value) {
                Ok(r) => {
                    names.insert(name_key(r.pod_id.as_str(), &r.spec), r.id.clone());
                    records.insert(r.id.clone(), r);
                }
                Err(e) => tracing::error!(key, error = %e, "unreadable container record skipped"),
            }
        }
        let cgroups = Cgroups::detect(Path::new("/sys/fs/cgroup")).ok();
        let own_oom_score_adj = std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        Ok(Self {
            inner: Arc::new(Inner {
                exe: zygote.exe().to_owned(),
                zygote,
                cpu_samples: stats::CpuSamples::default(),
                run_dir: run_dir.to_path_buf(),
                bundles,
                uppers,
                store,
                images,
                sandboxes,
                cgroups,
                events: Events::new(runtime.event_buffer),
                runtime,
                own_oom_score_adj,
                host_has_apparmor: security::host_has_apparmor(),
                records: Mutex::new(records),
                names: Mutex::new(names),
                locks: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Reconciles running containers with their monitors after a restart
    /// and watches the live ones for their exit.
    pub async fn resume(&self) {
        // StartContainers the previous daemon did not see through: the
        // launch file was written, the record still says Created.
        let starting: Vec<ContainerId> = lock(&self.inner.records)
            .values()
            .filter(|r| r.state == ContainerState::Created)
            .filter(|r| self.bundle(&r.id).join(Launch::FILE).exists())
            .map(|r| r.id.clone())
            .collect();
        for id in starting {
            if let Err(e) = self.adopt_interrupted_start(&id).await {
                tracing::warn!(container = %id, error = %e, "recovering an interrupted start");
            }
        }
        // CreateContainers cut short before their record was written: their
        // rootfs mount, bundle and writable layer belong to nobody.
        let me = self.clone();
        let _ = blocking(move || me.collect_orphans()).await;
        let running: Vec<ContainerId> = lock(&self.inner.records)
            .values()
            .filter(|r| r.state == ContainerState::Running)
            .map(|r| r.id.clone())
            .collect();
        for id in running {
            if let Err(e) = self.refresh(&id).await {
                tracing::warn!(container = %id, error = %e, "recovering container state");
            }
            if lock(&self.inner.records)
                .get(&id)
                .is_some_and(|r| r.state == ContainerState::Running)
            {
                self.watch(id);
            }
        }
    }

    /// Blocking: removes bundles and writable layers that no record owns.
    fn collect_orphans(&self) {
        let known: std::collections::HashSet<String> = lock(&self.inner.records)
            .keys()
            .map(|id| id.as_str().to_owned())
            .collect();
        for id in unrecorded_containers(&[&self.inner.bundles, &self.inner.uppers], &known) {
            tracing::info!(container = %id, "removing the remains of an interrupted CreateContainer");
            self.remove_files(&id, None);
        }
    }

    /// A container whose StartContainer was cut short by a daemon crash:
    /// Running if its monitor answers, else Running-then-exited if the
    /// monitor recorded an exit, else a failed start (nothing runs).
    async fn adopt_interrupted_start(&self, id: &ContainerId) -> Result<(), ContainerError> {
        let Some(mut rec) = self.record(id) else {
            return Ok(());
        };
        let bundle = self.bundle(id);
        let state = client::call(
            &self.socket(id),
            Kind::State(proto::State {}),
            Some(Duration::from_secs(5)),
        )
        .await
        .ok()
        .and_then(|r| r.state)
        .filter(|s| s.pid > 0);
        let exit = {
            let b = bundle.clone();
            blocking(move || ExitRecord::load(&b)).await?.ok().flatten()
        };
        if let Some(st) = state {
            rec.state = ContainerState::Running;
            rec.pid = st.pid.unsigned_abs();
            rec.started_ns = st.started_ns;
        } else if let Some(e) = exit {
            // It ran and exited; the start time is the launch file's.
            rec.state = ContainerState::Running;
            rec.started_ns = std::fs::metadata(bundle.join(Launch::FILE))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .and_then(|d| i64::try_from(d.as_nanos()).ok())
                .unwrap_or(e.finished_ns);
        } else {
            rec.state = ContainerState::Exited;
            rec.exit_code = 128;
            rec.reason = "StartError".into();
            rec.message =
                "crius restarted during StartContainer and the container did not start".into();
            rec.finished_ns = now_ns();
        }
        tracing::info!(container = %id, state = ?rec.state, "interrupted start recovered");
        // refresh() (called next for Running records) picks up exit.json.
        self.persist(&rec).await
    }

    fn bundle(&self, id: &ContainerId) -> PathBuf {
        self.inner.bundles.join(id.as_str())
    }

    /// `<run_dir>/s/<id prefix>.sock`: unix socket paths are limited to
    /// 108 bytes, too few for the bundle path; 32 hex digits are unique
    /// enough among one node's containers.
    fn socket(&self, id: &ContainerId) -> PathBuf {
        monitor_socket(&self.inner.run_dir, id)
    }

    fn state_root(&self, handler: &str) -> Result<(PathBuf, Option<PathBuf>), ContainerError> {
        let runtime = self
            .inner
            .runtime
            .handler(handler)
            .map_err(|known| {
                ContainerError::Invalid(format!(
                    "runtime handler {handler:?} is not configured (known: {known})"
                ))
            })?
            .map(Path::to_path_buf);
        let root = match &runtime {
            None => self.inner.run_dir.join("runtime"),
            Some(_) => self.inner.run_dir.join(format!("runtime-{handler}")),
        };
        Ok((root, runtime))
    }

    fn container_lock(&self, id: &ContainerId) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.inner.locks)
            .entry(id.clone())
            .or_default()
            .clone()
    }

    fn resolve(&self, id: &str) -> Result<Option<ContainerId>, ContainerError> {
        let p = IdPrefix::parse(id)?;
        let recs = lock(&self.inner.records);
        let hits: Vec<&ContainerId> = recs
            .keys()
            .filter(|k| k.as_str().starts_with(p.as_str()))
            .collect();
        match hits.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some((*one).clone())),
            many => Err(ContainerError::Ambiguous {
                prefix: id.to_owned(),
                count: many.len(),
            }),
        }
    }

    fn record(&self, id: &ContainerId) -> Option<ContainerRecord> {
        lock(&self.inner.records).get(id).cloned()
    }

    async fn persist(&self, rec: &ContainerRecord) -> Result<(), ContainerError> {
        let value = serde_json::to_vec(rec).map_err(|e| ContainerError::Internal(e.to_string()))?;
        let store = self.inner.store.clone();
        let key = rec.id.as_str().to_owned();
        blocking(move || store.apply(&[Write::put(Table::Containers, key, value)])).await??;
        // Under the records lock, so a state change is announced once.
        let mut records = lock(&self.inner.records);
        let old = records.insert(rec.id.clone(), rec.clone()).map(|o| o.state);
        self.inner.events.changed(old, rec);
        Ok(())
    }

    /// Lifecycle events from now on: created, started, stopped (each
    /// recorded exit, once), deleted. A receiver that falls more than
    /// `runtime.event_buffer` events behind gets `RecvError::Lagged`.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ContainerEvent> {
        self.inner.events.subscribe()
    }

    /// CreateContainer in pod `pod_id` (full id or unique prefix).
    #[tracing::instrument(skip_all, fields(pod = pod_id, container = %spec.name))]
    pub async fn create(
        &self,
        pod_id: &str,
        spec: ContainerSpec,
    ) -> Result<ContainerId, ContainerError> {
        let (me, pod_id) = (self.clone(), pod_id.to_owned());
        detached(
            async move { me.create_inner(&pod_id, spec).await },
            ContainerError::Internal,
        )
        .await
    }

    async fn create_inner(
        &self,
        pod_id: &str,
        spec: ContainerSpec,
    ) -> Result<ContainerId, ContainerError> {
        let pod = self
            .inner
            .sandboxes
            .get(pod_id)
            .map_err(|e| ContainerError::Invalid(e.to_string()))?
            .ok_or_else(|| ContainerError::PodNotFound(pod_id.to_owned()))?;
        if pod.state != SandboxState::Ready {
            return Err(ContainerError::PodNotReady(pod.id));
        }
        let image_id = self
            .inner
            .images
            .resolve(&spec.image)
            .map_err(|e| ContainerError::Invalid(format!("image {:?}: {e}", spec.image)))?
            .ok_or_else(|| ContainerError::ImageNotFound(spec.image.clone()))?;
        let id = ContainerId::random()
            .map_err(|e| ContainerError::Internal(format!("random id: {e}")))?;
        let key = name_key(pod.id.as_str(), &spec);
        {
            let mut names = lock(&self.inner.names);
            if let Some(owner) = names.get(&key) {
                return Err(ContainerError::NameReserved {
                    name: key,
                    id: owner.clone(),
                });
            }
            names.insert(key.clone(), id.clone());
        }
        let guard = self.container_lock(&id);
        let _g = guard.lock().await;
        let (image, layer_dirs) = match self.inner.images.use_layers(&image_id) {
            Ok(x) => x,
            Err(e) => {
                lock(&self.inner.names).remove(&key);
                return Err(ContainerError::Failed {
                    id,
                    context: "image layers".into(),
                    message: e.to_string(),
                });
            }
        };
        let volumes = match self.pin_image_volumes(&spec).await {
            Ok(v) => v,
            Err(e) => {
                self.inner.images.release_layers(&image.chain_ids).await;
                lock(&self.inner.names).remove(&key);
                return Err(e);
            }
        };
        let image_config = self
            .inner
            .images
            .config_bytes(&image_id)
            .ok()
            .and_then(|b| ImageConfig::parse(&b, &image_id, image.chain_ids.len()).ok());
        let me = self.clone();
        let (id2, pod2, spec2) = (id.clone(), pod.clone(), spec.clone());
        let chains = image.chain_ids.clone();
        // Everything pinned for this container: rootfs and image volumes.
        let pinned = volumes::all_layers(&chains, volumes.iter().map(|(v, _)| v));
        let image_volumes: Vec<_> = volumes.iter().map(|(v, _)| v.clone()).collect();
        let image_ref = image
            .repo_digests
            .first()
            .cloned()
            .unwrap_or_else(|| image_id.to_string());
        let built = blocking(move || {
            me.build(
                &id2,
                &pod2,
                &spec2,
                image_config.as_ref(),
                &layer_dirs,
                &volumes,
            )
        })
        .await
        .and_then(|r| r);
        let (cgroup_path, user_out, stop_signal, log_path, resources) = match built {
            Ok(b) => b,
            Err(e) => {
                let me = self.clone();
                let id2 = id.clone();
                let _ = blocking(move || me.remove_files(&id2, None)).await;
                self.inner.images.release_layers(&pinned).await;
                lock(&self.inner.names).remove(&key);
                return Err(e);
            }
        };
        let rec = ContainerRecord {
            id: id.clone(),
            pod_id: pod.id.clone(),
            spec,
            image_id,
            image_ref,
            chain_ids: chains.clone(),
            image_volumes,
            handler: pod.spec.runtime_handler.clone(),
            state: ContainerState::Created,
            created_ns: now_ns(),
            started_ns: 0,
            finished_ns: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            pid: 0,
            log_path,
            cgroup_path,
            user: user_out,
            stop_signal,
            resources,
        };
        if let Err(e) = self.persist(&rec).await {
            let me = self.clone();
            let id2 = id.clone();
            let _ = blocking(move || me.remove_files(&id2, None)).await;
            self.inner.images.release_layers(&pinned).await;
            lock(&self.inner.names).remove(&key);
            return Err(e);
        }
        tracing::info!(container = %id, "container created");
        Ok(id)
    }

    /// Blocking: the bundle, rootfs mount, user, working dir and spec.
    #[allow(clippy::type_complexity)]
    fn build(
        &self,
        id: &ContainerId,
        pod: &SandboxRecord,
        spec: &ContainerSpec,
        image: Option<&ImageConfig>,
        layers: &[PathBuf],
        volumes: &[(ImageVolume, Vec<PathBuf>)],
    ) -> Result<
        (
            String,
            EffectiveUser,
            i32,
            Option<PathBuf>,
            ContainerResources,
        ),
        ContainerError,
    > {
        let fail = |context: &str, message: String| ContainerError::Failed {
            id: id.clone(),
            context: context.to_owned(),
            message,
        };
        let run = image.and_then(|i| i.config.as_ref());
        // Everything that can be refused without touching the disk first.
        let args = process::args(
            &spec.command,
            &spec.args,
            run.and_then(|r| r.entrypoint.as_deref()),
            run.and_then(|r| r.cmd.as_deref()),
        )
        .map_err(|e| ContainerError::Invalid(e.to_string()))?;
        let cwd = process::working_dir(
            &spec.working_dir,
            run.and_then(|r| r.working_dir.as_deref()),
        )
        .map_err(|e| ContainerError::Invalid(e.to_string()))?;
        if cwd == "/proc" || cwd.starts_with("/proc/") || cwd == "/sys" || cwd.starts_with("/sys/")
        {
            // runc CVE-2024-21626: a working dir such as /proc/self/fd/<n>
            // resolves through a descriptor of the runtime.
            return Err(ContainerError::Invalid(format!(
                "working_dir {cwd:?} is inside /proc or /sys; that is not allowed"
            )));
        }
        let stop_signal = process::stop_signal(
            Some(spec.stop_signal.as_str()),
            run.and_then(|r| r.stop_signal.as_deref()),
        )
        .map_err(|e| ContainerError::Invalid(e.to_string()))?;
        self.check_mounts(spec)?;
        // The pod's handler must still be configured (the config may have
        // changed since the pod was made).
        self.state_root(&pod.spec.runtime_handler)?;
        let cdi_edits = if spec.cdi_devices.is_empty() {
            None
        } else {
            let registry = cdi::Registry::load(&self.inner.runtime.cdi_spec_dirs);
            Some(
                registry
                    .resolve(&spec.cdi_devices)
                    .map_err(|e| ContainerError::Invalid(e.to_string()))?,
            )
        };

        // The bundle and the rootfs.
        let bundle = self.bundle(id);
        let upper_dir = self.inner.uppers.join(id.as_str());
        let mk = |d: &Path, mode: u32| {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(d)
                .map_err(|e| fail("creating directories", format!("{}: {e}", d.display())))
        };
        mk(&bundle, 0o700)?;
        mk(&upper_dir, 0o700)?;
        let (upper, work, rootfs) = (
            upper_dir.join("upper"),
            upper_dir.join("work"),
            bundle.join("rootfs"),
        );
        mk(&upper, 0o755)?;
        mk(&work, 0o700)?;
        mk(&rootfs, 0o755)?;
        let lowers: Vec<&Path> = layers.iter().map(PathBuf::as_path).collect();
        let idmapped_layers = userns_layers(pod, &lowers, &bundle, &upper, &work).map_err(|e| {
            fail(
                "id-mapping the image layers into the pod's user namespace",
                e,
            )
        })?;
        let idmapped_lowers: Option<Vec<&Path>> = idmapped_layers
            .as_ref()
            .map(|v| v.iter().map(PathBuf::as_path).collect());
        let mounted = mount::mount_overlay(
            idmapped_lowers.as_deref().unwrap_or(&lowers),
            &upper,
            &work,
            &rootfs,
        );
        if let Some(dirs) = &idmapped_layers {
            crate::runtime::userns::release_layers(dirs);
        }
        mounted.map_err(|e| fail("mounting the rootfs", e.to_string()))?;

        let user = user::resolve(
            &rootfs,
            &UserRequest {
                run_as_user: spec.security.run_as_user,
                run_as_username: Some(spec.security.run_as_username.clone())
                    .filter(|s| !s.is_empty()),
                run_as_group: spec.security.run_as_group,
                image_user: run.and_then(|r| r.user.clone()).unwrap_or_default(),
                supplemental_groups: spec.security.supplemental_groups.clone(),
                policy: spec.security.groups_policy,
            },
        )
        .map_err(|e| ContainerError::Invalid(format!("user: {e}")))?;
        rootfs_fs::mkdir_all_in_root(&rootfs, Path::new(&cwd))
            .map_err(|e| fail("creating the working dir", format!("{cwd}: {e}")))?;

        let pod_dir = self.inner.sandboxes.pod_dir(&pod.id);
        let hostname = std::fs::read_to_string(pod_dir.join("hostname"))
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        let env = process::env(
            run.and_then(|r| r.env.as_deref()).unwrap_or_default(),
            &spec.envs,
            &hostname,
            &user.home,
            spec.tty,
        )
        .map_err(|e| ContainerError::Invalid(e.to_string()))?;

        let cgroup_path = container_cgroup(&pod.spec.cgroup_parent, id);
        let cgroup_v2 = self
            .inner
            .cgroups
            .as_ref()
            .is_some_and(|c| c.mode() == CgroupMode::V2);
        let oom = (spec.resources.oom_score_adj != 0).then(|| {
            let (v, clamped) = spec::restrict_oom_score_adj(
                spec.resources.oom_score_adj,
                self.inner.own_oom_score_adj,
                holds_cap_sys_resource(),
            );
            if clamped {
                tracing::info!(
                    container = %id,
                    requested = spec.resources.oom_score_adj,
                    applied = v,
                    "oom_score_adj raised to the daemon's own (no CAP_SYS_RESOURCE)"
                );
            }
            v
        });
        let target_pid = if spec.security.pid == crate::runtime::sandbox::NsMode::Target {
            self.resolve(&spec.security.target_id)
                .ok()
                .flatten()
                .and_then(|t| self.record(&t))
                .filter(|t| t.pod_id == pod.id && t.state == ContainerState::Running)
                .map(|t| t.pid)
        } else {
            None
        };
        // Image volumes: read-only overlays of their layers in the bundle.
        let pod_userns = pod.pinned.user.as_deref().zip(
            pod.spec
                .userns
                .as_ref()
                .and_then(crate::runtime::userns::mapped_root),
        );
        let with_volumes =
            volumes::mount_image_volumes(&bundle, &upper_dir, spec, volumes, pod_userns)
                .map_err(|e| fail("mounting image volumes", e))?;
        let spec = with_volumes.as_ref().unwrap_or(spec);
        // libcontainer ignores per-mount propagation (see `stage_mounts`).
        let staged = if self.state_root(&pod.spec.runtime_handler)?.1.is_none() {
            stage_mounts(&bundle.join(STAGED_MOUNTS), spec)
                .map_err(|e| fail("staging mounts", e))?
        } else {
            None
        };
        // A user namespace pod: its CRI volumes id-mapped too.
        let spec = staged.as_ref().unwrap_or(spec);
        let idmapped = match pod.pinned.user.as_deref() {
            Some(ns) => crate::runtime::userns::idmap_mounts(&bundle.join(STAGED_MOUNTS), spec, ns)
                .map_err(|e| fail("id-mapping mounts for the pod's user namespace", e))?,
            None => None,
        };
        let oci = spec::build(&SpecInput {
            cdi: cdi_edits.as_deref(),
            spec: idmapped.as_ref().unwrap_or(spec),
            pod,
            pod_dir: &pod_dir,
            user: &user,
            args,
            env,
            cwd,
            cgroup_path: &cgroup_path,
            cgroup_v2,
            target_pid,
            oom_score_adj: oom,
            host_has_apparmor: self.inner.host_has_apparmor,
        })
        .map_err(|e| ContainerError::Invalid(e.to_string()))?;
        let json =
            serde_json::to_vec_pretty(&oci).map_err(|e| ContainerError::Internal(e.to_string()))?;
        std::fs::write(bundle.join("config.json"), json)
            .map_err(|e| fail("writing config.json", e.to_string()))?;

        let log_path = if pod.spec.log_directory.is_empty() || spec.log_path.is_empty() {
            None
        } else {
            let p = Path::new(&pod.spec.log_directory).join(&spec.log_path);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    fail("creating the log dir", format!("{}: {e}", parent.display()))
                })?;
            }
            Some(p)
        };
        let effective = EffectiveUser {
            uid: user.uid,
            gid: user.gid,
            groups: user.additional_gids.clone(),
        };
        Ok((
            cgroup_path,
            effective,
            stop_signal,
            log_path,
            // As applied: the status reports the oom_score_adj the process got.
            ContainerResources {
                oom_score_adj: oom.unwrap_or(spec.resources.oom_score_adj),
                ..spec.resources.clone()
            },
        ))
    }

    /// Host paths of CRI mounts: a missing one is created as a directory
    /// (as containerd and CRI-O do); rshared/rslave need a host mount that
    /// propagates.
    fn check_mounts(&self, spec: &ContainerSpec) -> Result<(), ContainerError> {
        // Image volumes have no host path (see `volumes.rs`).
        for m in spec.mounts.iter().filter(|m| m.image.is_empty()) {
            let host = Path::new(&m.host_path);
            if std::fs::symlink_metadata(host).is_err() {
                std::fs::create_dir_all(host).map_err(|e| {
                    ContainerError::Invalid(format!(
                        "mount {}: creating missing host path {}: {e}",
                        m.container_path, m.host_path
                    ))
                })?;
            }
            if m.propagation != Propagation::Private {
                let (mountpoint, optional) = mount_of(host).map_err(|e| {
                    ContainerError::Invalid(format!("mount {}: {e}", m.container_path))
                })?;
                let shared = optional.iter().any(|o| o.starts_with("shared:"));
                let slave = optional.iter().any(|o| o.starts_with("master:"));
                let ok = match m.propagation {
                    Propagation::Bidirectional => shared,
                    _ => shared || slave,
                };
                if !ok {
                    let want = if m.propagation == Propagation::Bidirectional {
                        "a shared mount"
                    } else {
                        "a shared or slave mount"
                    };
                    return Err(ContainerError::Invalid(format!(
                        "mount {}: host path {} is on mount {} which is not {want}",
                        m.container_path,
                        m.host_path,
                        mountpoint.display()
                    )));
                }
            }
        }
        Ok(())
    }

    /// StartContainer.
    #[tracing::instrument(skip_all, fields(container = id))]
    pub async fn start(&self, id: &str) -> Result<(), ContainerError> {
        let (me, id) = (self.clone(), id.to_owned());
        detached(
            async move { me.start_inner(&id).await },
            ContainerError::Internal,
        )
        .await
    }

    async fn start_inner(&self, id: &str) -> Result<(), ContainerError> {
        let id = self
            .resolve(id)?
            .ok_or_else(|| ContainerError::NotFound(id.to_owned()))?;
        let guard = self.container_lock(&id);
        let _g = guard.lock().await;
        let mut rec = self
            .record(&id)
            .ok_or_else(|| ContainerError::NotFound(id.to_string()))?;
        if rec.state != ContainerState::Created {
            return Err(ContainerError::State {
                id,
                what: format!("cannot start a container in state {:?}", rec.state),
            });
        }
        let Some(pod) = self
            .inner
            .sandboxes
            .get(rec.pod_id.as_str())
            .ok()
            .flatten()
            .filter(|p| p.state == SandboxState::Ready)
        else {
            return Err(ContainerError::PodNotReady(rec.pod_id.clone()));
        };
        let (state_root, runtime) = self.state_root(&rec.handler)?;
        let own_pid_ns = spec::own_pid_ns(&rec.spec, &pod);
        let launch = Launch {
            id: id.to_string(),
            socket: self.socket(&id),
            state_root,
            runtime,
            log_path: rec.log_path.clone(),
            max_log_line: self.inner.runtime.max_log_line_bytes,
            stdin: rec.spec.stdin,
            stdin_once: rec.spec.stdin_once,
            tty: rec.spec.tty,
            cgroup_path: rec.cgroup_path.clone(),
            own_pid_ns,
        };
        let bundle = self.bundle(&id);
        let inner = self.inner.clone();
        // A trace span around the monitor's launch, a child of the CRI
        // call's: entered on the blocking thread too, so the zygote's spans
        // and logs nest under it.
        let span = tracing::info_span!("monitor.start", container = %id);
        let entered = span.clone();
        let report = blocking(move || {
            let _e = entered.enter();
            spawn_monitor(&inner.zygote, &inner.exe, &bundle, &launch)
        })
        .instrument(span)
        .await?;
        match report {
            Ok(r) => {
                rec.state = ContainerState::Running;
                rec.pid = r.pid;
                rec.started_ns = r.started_ns;
                self.persist(&rec).await?;
                self.watch(id.clone());
                tracing::info!(container = %id, pid = r.pid, "container started");
                Ok(())
            }
            Err(message) => {
                rec.state = ContainerState::Exited;
                rec.exit_code = 128;
                rec.reason = "StartError".into();
                rec.message = message.clone();
                rec.finished_ns = now_ns();
                self.persist(&rec).await?;
                Err(ContainerError::Failed {
                    id,
                    context: "starting".into(),
                    message,
                })
            }
        }
    }

    /// Waits (in a task) for the container's exit, then records it.
    fn watch(&self, id: ContainerId) {
        let me = self.clone();
        tokio::spawn(async move {
            let socket = me.socket(&id);
            loop {
                match client::call(&socket, Kind::Wait(proto::Wait {}), None).await {
                    Ok(_) | Err(ClientError::Gone) => break,
                    Err(e) => {
                        tracing::debug!(container = %id, error = %e, "waiting on the monitor");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                if me.record(&id).is_none() {
                    return;
                }
            }
            let guard = me.container_lock(&id);
            let _g = guard.lock().await;
            if let Err(e) = me.refresh(&id).await {
                tracing::warn!(container = %id, error = %e, "recording the container's exit");
            }
        });
    }

    /// Brings a Running record up to date from `exit.json` / the monitor.
    /// Callers hold the container's lock (or are the start-up path).
    async fn refresh(&self, id: &ContainerId) -> Result<(), ContainerError> {
        let Some(mut rec) = self.record(id) else {
            return Ok(());
        };
        if rec.state != ContainerState::Running {
            return Ok(());
        }
        let bundle = self.bundle(id);
        let exit = {
            let b = bundle.clone();
            blocking(move || ExitRecord::load(&b)).await?
        };
        match exit {
            Ok(Some(e)) => {
                rec.state = ContainerState::Exited;
                rec.exit_code = e.exit_code;
                rec.finished_ns = e.finished_ns;
                rec.reason = exit_reason(&e).to_owned();
                rec.message = e.message;
                self.persist(&rec).await?;
                tracing::info!(container = %id, exit_code = rec.exit_code, reason = %rec.reason, "container exited");
            }
            Ok(None) => {
                let state = client::call(
                    &self.socket(id),
                    Kind::State(proto::State {}),
                    Some(Duration::from_secs(5)),
                )
                .await;
                if let Err(ClientError::Gone) = state {
                    {
                        // The monitor wrote exit.json before leaving: look once more.
                        if let Ok(Some(_)) = ExitRecord::load(&bundle) {
                            return Box::pin(self.refresh(id)).await;
                        }
                        rec.state = ContainerState::Unknown;
                        rec.reason = "Unknown".into();
                        rec.message =
                            "the container's monitor exited without recording an exit status"
                                .into();
                        self.persist(&rec).await?;
                        tracing::warn!(container = %id, "monitor gone; container state unknown");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "reading exit.json");
            }
        }
        Ok(())
    }

    /// StopContainer; `timeout_secs` <= 0 kills at once. Unknown id → Ok.
    #[tracing::instrument(skip_all, fields(container = id))]
    pub async fn stop(&self, id: &str, timeout_secs: i64) -> Result<(), ContainerError> {
        let (me, id) = (self.clone(), id.to_owned());
        detached(
            async move { me.stop_inner(&id, timeout_secs).await },
            ContainerError::Internal,
        )
        .await
    }

    async fn stop_inner(&self, id: &str, timeout_secs: i64) -> Result<(), ContainerError> {
        let Some(id) = self.resolve(id)? else {
            return Ok(());
        };
        let guard = self.container_lock(&id);
        let _g = guard.lock().await;
        self.stop_locked(&id, timeout_secs).await
    }

    async fn stop_locked(&self, id: &ContainerId, timeout_secs: i64) -> Result<(), ContainerError> {
        self.refresh(id).await?;
        let Some(mut rec) = self.record(id) else {
            return Ok(());
        };
        match rec.state {
            ContainerState::Created | ContainerState::Exited => return Ok(()),
            ContainerState::Unknown => {
                // No monitor: what is left runs in the container's cgroup.
                let (cg, path) = (self.inner.cgroups.clone(), rec.cgroup_path.clone());
                blocking(move || {
                    if let Some(cg) = cg {
                        cg.kill_all(&path, nix::sys::signal::Signal::SIGKILL);
                    }
                })
                .await?;
                rec.state = ContainerState::Exited;
                rec.exit_code = 137;
                rec.finished_ns = now_ns();
                return self.persist(&rec).await;
            }
            ContainerState::Running => {}
        }
        let socket = self.socket(id);
        let signal = |sig: i32, all: bool| {
            client::call(
                &socket,
                Kind::Signal(proto::Signal { signal: sig, all }),
                Some(Duration::from_secs(5)),
            )
        };
        let wait = |t: Duration| client::call(&socket, Kind::Wait(proto::Wait {}), Some(t));
        let mut exited = false;
        if timeout_secs > 0 {
            match signal(rec.stop_signal, false).await {
                Ok(_) => {}
                Err(ClientError::Gone) => exited = true,
                Err(e) => tracing::warn!(container = %id, error = %e, "stop signal"),
            }
            if !exited {
                let t = Duration::from_secs(timeout_secs.unsigned_abs());
                exited = matches!(wait(t).await, Ok(_) | Err(ClientError::Gone));
            }
        }
        if !exited {
            match signal(libc::SIGKILL, true).await {
                Ok(_) | Err(ClientError::Gone) => {}
                Err(e) => {
                    return Err(ContainerError::Failed {
                        id: id.clone(),
                        context: "killing".into(),
                        message: e.to_string(),
                    });
                }
            }
            match wait(KILL_WAIT).await {
                Ok(_) | Err(ClientError::Gone) => {}
                Err(e) => {
                    return Err(ContainerError::Failed {
                        id: id.clone(),
                        context: "waiting for the killed process".into(),
                        message: e.to_string(),
                    });
                }
            }
        }
        // The monitor writes exit.json before it answers waiters.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            self.refresh(id).await?;
            let state = self.record(id).map(|r| r.state);
            if state != Some(ContainerState::Running) || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// RemoveContainer. Unknown id → Ok.
    #[tracing::instrument(skip_all, fields(container = id))]
    pub async fn remove(&self, id: &str) -> Result<(), ContainerError> {
        let (me, id) = (self.clone(), id.to_owned());
        detached(
            async move { me.remove_inner(&id).await },
            ContainerError::Internal,
        )
        .await
    }

    async fn remove_inner(&self, id: &str) -> Result<(), ContainerError> {
        let Some(id) = self.resolve(id)? else {
            return Ok(());
        };
        let guard = self.container_lock(&id);
        let _g = guard.lock().await;
        let Some(rec) = self.record(&id) else {
            return Ok(());
        };
        if matches!(rec.state, ContainerState::Running | ContainerState::Unknown) {
            self.stop_locked(&id, 0).await?;
        }
        let Some(rec) = self.record(&id) else {
            return Ok(());
        };
        let me = self.clone();
        let r2 = rec.clone();
        blocking(move || me.remove_files(&r2.id, Some(&r2))).await?;
        let store = self.inner.store.clone();
        let key = id.as_str().to_owned();
        blocking(move || store.apply(&[Write::delete(Table::Containers, key)])).await??;
        lock(&self.inner.records).remove(&id);
        self.inner.events.emit(EventKind::Deleted, &id, &rec.pod_id);
        lock(&self.inner.names).remove(&name_key(rec.pod_id.as_str(), &rec.spec));
        lock(&self.inner.locks).remove(&id);
        let pinned = volumes::all_layers(&rec.chain_ids, &rec.image_volumes);
        self.inner.images.release_layers(&pinned).await;
        tracing::info!(container = %id, "container removed");
        Ok(())
    }

    /// Blocking, best effort: everything a container has on disk.
    fn remove_files(&self, id: &ContainerId, rec: Option<&ContainerRecord>) {
        let bundle = self.bundle(id);
        if let Some(rec) = rec {
            if let Ok((root, _)) = self.state_root(&rec.handler) {
                let _ = std::fs::remove_dir_all(root.join(id.as_str()));
            }
            if let Some(cg) = &self.inner.cgroups {
                let created = Created {
                    dirs: cg.dirs(&rec.cgroup_path),
                };
                if let Err(e) = cg.remove(&created) {
                    tracing::warn!(container = %id, error = %e, "removing the cgroup");
                }
            }
        }
        for e in remove_container_files(&self.inner.run_dir, &bundle, &self.inner.uppers, id) {
            tracing::warn!(container = %id, error = %e, "removing the container's files");
        }
    }

    /// The record with its state brought up to date; None if unknown.
    pub async fn status(&self, id: &str) -> Result<Option<ContainerRecord>, ContainerError> {
        let Some(id) = self.resolve(id)? else {
            return Ok(None);
        };
        if self
            .record(&id)
            .is_some_and(|r| r.state == ContainerState::Running)
        {
            let guard = self.container_lock(&id);
            let _g = guard.lock().await;
            self.refresh(&id).await?;
        }
        Ok(self.record(&id))
    }

    /// ListContainers.
    pub async fn list(&self, f: &ContainerFilter) -> Result<Vec<ContainerRecord>, ContainerError> {
        let only = match f.id.as_deref().filter(|s| !s.is_empty()) {
            Some(id) => match self.resolve(id) {
                Ok(Some(id)) => Some(id),
                Ok(None) | Err(ContainerError::Id(_)) => return Ok(vec![]),
                Err(e) => return Err(e),
            },
            None => None,
        };
        let pod = match f.pod_id.as_deref().filter(|s| !s.is_empty()) {
            Some(p) => match self.inner.sandboxes.resolve(p) {
                Ok(Some(p)) => Some(p),
                _ => return Ok(vec![]),
            },
            None => None,
        };
        let recs = lock(&self.inner.records);
        Ok(recs
            .values()
            .filter(|r| only.as_ref().is_none_or(|id| &r.id == id))
            .filter(|r| pod.as_ref().is_none_or(|p| &r.pod_id == p))
            .filter(|r| f.state.is_none_or(|s| r.state == s))
            .filter(|r| {
                f.labels
                    .iter()
                    .all(|(k, v)| r.spec.labels.get(k) == Some(v))
            })
            .cloned()
            .collect())
    }

    /// UpdateContainerResources: all or nothing.
    pub async fn update_resources(
        &self,
        id: &str,
        r: ContainerResources,
    ) -> Result<(), ContainerError> {
        let id = self
            .resolve(id)?
            .ok_or_else(|| ContainerError::NotFound(id.to_owned()))?;
        let guard = self.container_lock(&id);
        let _g = guard.lock().await;
        self.refresh(&id).await?;
        let mut rec = self
            .record(&id)
            .ok_or_else(|| ContainerError::NotFound(id.to_string()))?;
        if !matches!(rec.state, ContainerState::Created | ContainerState::Running) {
            return Err(ContainerError::State {
                id,
                what: format!("cannot update resources in state {:?}", rec.state),
            });
        }
        let v2 = self
            .inner
            .cgroups
            .as_ref()
            .is_some_and(|c| c.mode() == CgroupMode::V2);
        // Validates (unified on v1, …) before anything is written.
        let oci_resources =
            spec::resources(&r, v2).map_err(|e| ContainerError::Invalid(e.to_string()))?;
        if rec.state == ContainerState::Running {
            let Some(cg) = self.inner.cgroups.clone() else {
                return Err(ContainerError::State {
                    id,
                    what: "no cgroup hierarchy on this node".into(),
                });
            };
            let (path, new, old) = (rec.cgroup_path.clone(), r.clone(), rec.resources.clone());
            let result = blocking(move || {
                // All or nothing: what the files held before, including
                // limits the container never had (unset in `old`).
                let keys: Vec<&str> = new.unified.keys().map(String::as_str).collect();
                let saved = cg.snapshot(&path, &keys);
                let res = apply_resources(&cg, &path, &new);
                if res.is_err() {
                    match &saved {
                        Ok(s) => {
                            if let Err(e) = cg.restore(s) {
                                tracing::error!(cgroup = %path, error = %e, "rolling back a failed resource update");
                            }
                        }
                        Err(_) => {
                            let _ = apply_resources(&cg, &path, &old);
                        }
                    }
                }
                res
            })
            .await?;
            result.map_err(|message| ContainerError::Failed {
                id: id.clone(),
                context: "updating resources".into(),
                message,
            })?;
        }
        // Keep config.json in step (a Created container starts with these).
        let cfg = self.bundle(&id).join("config.json");
        if let Ok(bytes) = std::fs::read(&cfg)
            && let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(&bytes)
        {
            let devices = doc["linux"]["resources"]["devices"].take();
            doc["linux"]["resources"] = oci_resources;
            doc["linux"]["resources"]["devices"] = devices;
            if let Ok(b) = serde_json::to_vec_pretty(&doc) {
                let _ = crate::monitor::write_atomic(&cfg, &b);
            }
        }
        rec.resources = r;
        self.persist(&rec).await
    }

    /// ReopenContainerLog.
    pub async fn reopen_log(&self, id: &str) -> Result<(), ContainerError> {
        let id = self
            .resolve(id)?
            .ok_or_else(|| ContainerError::NotFound(id.to_owned()))?;
        let running = self
            .record(&id)
            .is_some_and(|r| r.state == ContainerState::Running);
        if !running {
            return Err(ContainerError::State {
                id,
                what: "container is not running".into(),
            });
        }
        client::call(
            &self.socket(&id),
            Kind::ReopenLog(proto::ReopenLog {}),
            Some(Duration::from_secs(10)),
        )
        .await
        .map(drop)
        .map_err(|e| ContainerError::Failed {
            id,
            context: "reopening the log".into(),
            message: e.to_string(),
        })
    }

    /// The OCI spec (config.json) the container was created with, for
    /// verbose ContainerStatus.
    pub fn oci_spec(&self, id: &ContainerId) -> Option<serde_json::Value> {
        let bytes = std::fs::read(self.bundle(id).join("config.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn pod_containers(&self, pod_id: &str) -> Vec<ContainerId> {
        let Ok(Some(pod)) = self.inner.sandboxes.resolve(pod_id) else {
            return Vec::new();
        };
        lock(&self.inner.records)
            .values()
            .filter(|r| r.pod_id == pod)
            .map(|r| r.id.clone())
            .collect()
    }

    /// Stops every container of a pod (StopPodSandbox), each with `timeout_secs`.
    pub async fn stop_pod(&self, pod_id: &str, timeout_secs: i64) -> Result<(), ContainerError> {
        let ids = self.pod_containers(pod_id);
        let stops = ids.iter().map(|id| self.stop(id.as_str(), timeout_secs));
        for r in futures_util::future::join_all(stops).await {
            r?;
        }
        Ok(())
    }

    /// Removes every container of a pod (RemovePodSandbox).
    pub async fn remove_pod(&self, pod_id: &str) -> Result<(), ContainerError> {
        let ids = self.pod_containers(pod_id);
        let removes = ids.iter().map(|id| self.remove(id.as_str()));
        for r in futures_util::future::join_all(removes).await {
            r?;
        }
        Ok(())
    }
}

/// `<cgroup_parent>/<id>`, or `/crius/<id>` for a pod without a parent.
/// `<run_dir>/s/<id prefix>.sock`: unix socket paths are limited to 108
/// bytes, too few for the bundle path; 32 hex digits are unique enough
/// among one node's containers.
pub fn monitor_socket(run_dir: &Path, id: &ContainerId) -> PathBuf {
    run_dir
        .join("s")
        .join(format!("{}.sock", &id.as_str()[..32]))
}

/// Container ids with an entry in one of `dirs` (bundles, writable layers)
/// that `known` does not hold: what an interrupted CreateContainer or a
/// crash left. Entries that are no container id are logged and left alone.
/// Shared by restart recovery and `crius check`.
pub fn unrecorded_containers(
    dirs: &[&Path],
    known: &std::collections::HashSet<String>,
) -> std::collections::BTreeSet<ContainerId> {
    let mut orphans = std::collections::BTreeSet::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if known.contains(&name) {
                continue;
            }
            match ContainerId::parse(&name) {
                Ok(id) => {
                    orphans.insert(id);
                }
                Err(_) => {
                    tracing::warn!(dir = %dir.display(), entry = %name, "unexpected entry left alone");
                }
            }
        }
    }
    orphans
}

/// Blocking, best effort: the files of container `id` that need no record
/// to find: the rootfs mount, staged mounts, the monitor's sockets, the
/// bundle and the writable layer under `uppers`. Returns what failed.
/// Staged mounts are host dirs: the bundle is kept rather than deleted
/// through one still mounted.
pub fn remove_container_files(
    run_dir: &Path,
    bundle: &Path,
    uppers: &Path,
    id: &ContainerId,
) -> Vec<String> {
    let mut errors = Vec::new();
    let rootfs = bundle.join("rootfs");
    if let Err(e) = mount::unmount(&rootfs) {
        errors.push(format!("unmounting {}: {e}", rootfs.display()));
    }
    let socket = monitor_socket(run_dir, id);
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(socket.with_extension("tty"));
    let mut dirs = vec![];
    // Image volumes are overlays of image layers with their scratch dirs
    // under `uppers`: both are kept while one is still mounted.
    match mount::unmount_staged(&bundle.join(volumes::IMAGE_VOLUMES)) {
        Ok(()) => dirs.push(uppers.join(id.as_str())),
        Err(e) => {
            errors.push(format!("unmounting image volumes (bundle kept): {e}"));
            return errors;
        }
    }
    match mount::unmount_staged(&bundle.join(STAGED_MOUNTS)) {
        Ok(()) => dirs.push(bundle.to_path_buf()),
        Err(e) => errors.push(format!("unmounting staged mounts (bundle kept): {e}")),
    }
    for dir in dirs {
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            errors.push(format!("removing {}: {e}", dir.display()));
        }
    }
    errors
}

fn container_cgroup(parent: &str, id: &ContainerId) -> String {
    let parent = parent.trim_end_matches('/');
    if parent.is_empty() {
        format!("/crius/{id}")
    } else {
        format!("{parent}/{id}")
    }
}

/// Blocking: starts the monitor for `bundle` (forked by the zygote, or
/// `crius monitor <bundle>` exec'd when the zygote is unavailable) and reads
/// its one-line report. The monitor double-forks into its own session; the
/// report comes from the detached monitor through the pipe it inherited.
fn spawn_monitor(
    zygote: &Zygote,
    exe: &Path,
    bundle: &Path,
    launch: &Launch,
) -> Result<Report, String> {
    launch
        .save(bundle)
        .map_err(|e| format!("writing launch.json: {e}"))?;
    let _ = std::fs::remove_file(bundle.join(ExitRecord::FILE));
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(bundle.join("monitor.log"))
        .map_err(|e| format!("opening monitor.log: {e}"))?;
    let (out, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("creating the monitor's report pipe: {e}"))?;
    if let Err(e) = zygote.spawn(
        zygote::Kind::Monitor,
        bundle,
        &[report_w.as_fd(), stderr.as_fd()],
    ) {
        tracing::warn!(error = %e, "monitor zygote unavailable; exec'ing the monitor");
        let mut child = Command::new(exe)
            .arg("monitor")
            .arg(bundle)
            .stdin(Stdio::null())
            .stdout(Stdio::from(report_w))
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("starting the monitor {}: {e}", exe.display()))?;
        let _ = child.wait();
    } else {
        // Only the monitor may hold the write end now, so its exit (or a
        // fork that never happened) reads as end of file.
        drop(report_w);
    }
    let mut out = std::fs::File::from(out);
    let deadline = Instant::now() + START_TIMEOUT;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "the monitor did not report within {}s",
                START_TIMEOUT.as_secs()
            ));
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [nix::poll::PollFd::new(
            out.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(format!("waiting for the monitor: {e}")),
        }
        match out.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.contains(&b'\n') {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the monitor's report: {e}")),
        }
    }
    let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    let report: Report = serde_json::from_slice(line).map_err(|_| {
        let log = std::fs::read_to_string(bundle.join("monitor.log")).unwrap_or_default();
        format!(
            "the monitor exited without a report: {}",
            log.lines().last().unwrap_or("(no output)")
        )
    })?;
    match report.error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// Writes CRI resources into a live cgroup.
/// Whether this process may lower an oom_score_adj below its own
/// (CAP_SYS_RESOURCE, bit 24, in the effective set of /proc/self/status).
fn holds_cap_sys_resource() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

fn apply_resources(cg: &Cgroups, path: &str, r: &ContainerResources) -> Result<(), String> {
    let pos = |v: i64| (v > 0).then_some(v);
    let res = crate::sys::cgroup::Resources {
        cpu_period: pos(r.cpu_period).map(|v| v.unsigned_abs()),
        cpu_quota: (r.cpu_quota != 0).then_some(r.cpu_quota),
        cpu_shares: pos(r.cpu_shares).map(|v| v.unsigned_abs()),
        // With the swap limit below, in an order the kernel accepts.
        memory_limit: None,
        cpuset_cpus: Some(r.cpuset_cpus.clone()).filter(|s| !s.is_empty()),
        cpuset_mems: Some(r.cpuset_mems.clone()).filter(|s| !s.is_empty()),
    };
    cg.apply(path, &res).map_err(|e| e.to_string())?;
    let swap = (r.memory_swap_limit_in_bytes != 0).then_some(r.memory_swap_limit_in_bytes);
    cg.apply_memory(path, pos(r.memory_limit_in_bytes), swap)
        .map_err(|e| e.to_string())?;
    cg.apply_unified(path, &r.unified)
        .map_err(|e| e.to_string())
}

/// For a pod with a user namespace: the image layers id-mapped into it (in
/// the staged mounts dir, see `runtime/userns.rs`) and the fresh upper/work
/// dirs given to the pod's root. None: a host-userns pod.
fn userns_layers(
    pod: &SandboxRecord,
    lowers: &[&Path],
    bundle: &Path,
    upper: &Path,
    work: &Path,
) -> Result<Option<Vec<PathBuf>>, String> {
    use crate::runtime::userns;
    let (Some(ns), Some(maps)) = (pod.pinned.user.as_deref(), pod.spec.userns.as_ref()) else {
        return Ok(None);
    };
    let root = userns::mapped_root(maps).ok_or("the pod's root (id 0) is not mapped")?;
    let staged = bundle.join(STAGED_MOUNTS);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staged)
        .map_err(|e| format!("{}: {e}", staged.display()))?;
    // The run dir too: the daemon makes it 0700 again when it starts.
    let containers = bundle.parent().unwrap_or(bundle);
    let run_dir = containers.parent().unwrap_or(containers);
    userns::make_searchable(&[run_dir, containers, bundle, &staged, &bundle.join("rootfs")])?;
    userns::own_upper(upper, work, root)?;
    userns::idmap_layers(lowers, &bundle.join(STAGED_MOUNTS), ns).map(Some)
}

/// The bundle's dir of staged CRI mounts.
pub(super) const STAGED_MOUNTS: &str = "mounts";

/// libcontainer 0.7 ignores per-mount propagation options: a bind mount
/// keeps the propagation its source has in the container's namespace,
/// which is the rootfs's (rshared with a BIDIRECTIONAL mount, rslave with a
/// HOST_TO_CONTAINER one, else rprivate: see spec.rs). So the mounts that
/// would inherit the wrong one (PRIVATE next to those, HOST_TO_CONTAINER
/// next to BIDIRECTIONAL) are staged in `dir` as rprivate or rslave binds
/// of their host path, and mounted from there. Returns the spec with those
/// sources (None: nothing staged). Unstaged by `remove_files`.
fn stage_mounts(dir: &Path, spec: &ContainerSpec) -> Result<Option<ContainerSpec>, String> {
    let has = |p| spec.mounts.iter().any(|m| m.propagation == p);
    let bidirectional = has(Propagation::Bidirectional);
    if !bidirectional && !has(Propagation::HostToContainer) {
        return Ok(None);
    }
    let mut out = spec.clone();
    let mut any = false;
    for (i, m) in out.mounts.iter_mut().enumerate() {
        let slave = match m.propagation {
            Propagation::Private => false,
            Propagation::HostToContainer if bidirectional => true,
            _ => continue,
        };
        if !any {
            // It exists already for a user namespace pod (`userns_layers`).
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(format!("{}: {e}", dir.display()));
                }
                _ => {}
            }
            any = true;
        }
        let staged = dir.join(i.to_string());
        mount::bind_staged(Path::new(&m.host_path), &staged, slave)
            .map_err(|e| format!("mount {} from {}: {e}", m.container_path, m.host_path))?;
        m.host_path = staged.display().to_string();
    }
    Ok(any.then_some(out))
}

/// The mount point containing `path` and its optional fields (`shared:N`,
/// `master:N`), from /proc/self/mountinfo.
fn mount_of(path: &Path) -> Result<(PathBuf, Vec<String>), String> {
    let real = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("reading mountinfo: {e}"))?;
    let mut best: Option<(PathBuf, Vec<String>)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(mp) = fields.get(4) else { continue };
        let mp = PathBuf::from(mp.replace("\\040", " "));
        if !real.starts_with(&mp) {
            continue;
        }
        let optional: Vec<String> = fields
            .iter()
            .skip(6)
            .take_while(|f| **f != "-")
            .map(|s| s.to_string())
            .collect();
        // Later lines are mounted on top: >= keeps the last of equal length.
        if best
            .as_ref()
            .is_none_or(|(b, _)| mp.components().count() >= b.components().count())
        {
            best = Some((mp, optional));
        }
    }
    best.ok_or_else(|| format!("no mount found for {}", path.display()))
}
