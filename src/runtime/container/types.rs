//! Container domain types: the validated CreateContainer request, the
//! stored record, filters. No tonic/prost here (see `api/container.rs`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::id::{ChainId, ContainerId, ImageId, PodSandboxId};
use crate::runtime::sandbox::NsMode;
use crate::runtime::security::Profile;
use crate::runtime::user::GroupsPolicy;

/// CRI mount propagation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Propagation {
    #[default]
    Private,
    /// rslave: host mounts appear in the container.
    HostToContainer,
    /// rshared: both ways.
    Bidirectional,
}

/// One CRI mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MountSpec {
    pub container_path: String,
    pub host_path: String,
    pub readonly: bool,
    pub recursive_read_only: bool,
    pub propagation: Propagation,
    /// Accepted and ignored: SELinux is off on the nodes crius supports.
    pub selinux_relabel: bool,
    /// An image volume (CRI `Mount.image`): the image as kubelet named it,
    /// mounted read-only from its layers; `host_path` is then empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
}

/// An image mounted as a volume by a container: its layers are pinned
/// against image GC (even after RemoveImage) until the container is removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageVolume {
    pub container_path: String,
    /// The image as the mount named it, and what it resolved to.
    pub image: String,
    pub image_id: ImageId,
    pub chain_ids: Vec<ChainId>,
}

/// One CRI device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeviceSpec {
    pub container_path: String,
    pub host_path: String,
    pub permissions: String,
}

/// CRI LinuxContainerResources; zero means "not set" as in CRI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ContainerResources {
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpu_shares: i64,
    pub memory_limit_in_bytes: i64,
    pub memory_swap_limit_in_bytes: i64,
    pub oom_score_adj: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    /// (page size such as "2MB", limit in bytes).
    pub hugepage_limits: Vec<(String, u64)>,
    /// cgroup v2 files → values (v2 only).
    pub unified: BTreeMap<String, String>,
}

/// CRI LinuxContainerSecurityContext, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SecuritySpec {
    pub privileged: bool,
    pub add_capabilities: Vec<String>,
    pub drop_capabilities: Vec<String>,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_username: String,
    pub readonly_rootfs: bool,
    pub supplemental_groups: Vec<i64>,
    pub groups_policy: GroupsPolicy,
    pub no_new_privs: bool,
    /// Empty = the defaults (as containerd: an empty list cannot be told
    /// from an absent one on the wire).
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub seccomp: Profile,
    /// None = not given (runtime default).
    pub apparmor: Option<Profile>,
    pub pid: NsMode,
    /// The container whose PID namespace to join (pid == Target).
    pub target_id: String,
}

/// A validated CreateContainer request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub attempt: u32,
    /// The image as the request named it (tag, digest or id).
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub working_dir: String,
    pub envs: Vec<(String, String)>,
    pub mounts: Vec<MountSpec>,
    pub devices: Vec<DeviceSpec>,
    /// Fully-qualified CDI device names (`vendor.com/class=name`), from
    /// `CDI_devices` and the `cdi.k8s.io/` annotations, without duplicates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cdi_devices: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Relative to the pod's log_directory; empty = no log.
    pub log_path: String,
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
    pub resources: ContainerResources,
    pub security: SecuritySpec,
    /// CRI stop_signal (a signal name), empty = not given.
    pub stop_signal: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// The effective user, reported in ContainerStatus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EffectiveUser {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// One container as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: ContainerId,
    pub pod_id: PodSandboxId,
    pub spec: ContainerSpec,
    pub image_id: ImageId,
    /// The repo digest (or the id) of the image used, CRI's image_ref.
    pub image_ref: String,
    /// The layers the rootfs stacks (pinned against image GC while the
    /// container exists).
    pub chain_ids: Vec<ChainId>,
    /// Images mounted as volumes; their layers are pinned like `chain_ids`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_volumes: Vec<ImageVolume>,
    /// The pod's runtime handler at creation.
    pub handler: String,
    pub state: ContainerState,
    pub created_ns: i64,
    pub started_ns: i64,
    pub finished_ns: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub pid: u32,
    /// Absolute CRI log path; None when the container has no log.
    pub log_path: Option<PathBuf>,
    /// cgroupfs path of the container's cgroup.
    pub cgroup_path: String,
    pub user: EffectiveUser,
    /// The stop signal number resolved at creation (CRI, image, SIGTERM).
    pub stop_signal: i32,
    /// Resources as last applied (CreateContainer, UpdateContainerResources).
    pub resources: ContainerResources,
}

/// ListContainers filter.
#[derive(Debug, Clone, Default)]
pub struct ContainerFilter {
    pub id: Option<String>,
    pub state: Option<ContainerState>,
    pub pod_id: Option<String>,
    pub labels: BTreeMap<String, String>,
}
