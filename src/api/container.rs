//! CRI container verbs: request validation and conversion, and the handlers'
//! bodies (the trait impl in runtime.rs delegates here).

use std::collections::HashMap;
use std::path::{Component, Path};

use k8s_cri::v1 as cri;
use tonic::{Response, Status};

use super::Cri;
use super::pod::{invalid_in, meta_map, ns_mode, to_map};
use crate::runtime::container::{
    ContainerFilter, ContainerRecord, ContainerResources, ContainerSpec, ContainerState,
    DeviceSpec, MountSpec, Propagation, SecuritySpec,
};
use crate::runtime::sandbox::NsMode;
use crate::runtime::security::Profile;
use crate::runtime::user::GroupsPolicy;

const CREATE: &str = "CreateContainer";

fn invalid(what: &str, why: impl std::fmt::Display) -> Status {
    invalid_in(CREATE, what, why)
}

/// Rejects strings the kernel would truncate at a NUL (paths, argv, env).
fn no_nul(s: &str, what: &str) -> Result<(), Status> {
    if s.contains('\0') {
        return Err(invalid(what, "contains a NUL byte"));
    }
    Ok(())
}

fn absolute(s: &str, what: &str) -> Result<(), Status> {
    if s.is_empty() {
        return Err(invalid(what, "is empty"));
    }
    no_nul(s, what)?;
    if !s.starts_with('/') {
        return Err(invalid(what, format!("{s:?} must be absolute")));
    }
    Ok(())
}

/// Validates a CreateContainer request into the pod id and the domain's
/// `ContainerSpec`.
pub fn container_spec(req: cri::CreateContainerRequest) -> Result<(String, ContainerSpec), Status> {
    if req.pod_sandbox_id.is_empty() {
        return Err(invalid("pod_sandbox_id", "is empty"));
    }
    let cfg = req.config.ok_or_else(|| invalid("config", "missing"))?;
    let md = cfg
        .metadata
        .ok_or_else(|| invalid("config.metadata", "missing"))?;
    if md.name.is_empty() {
        return Err(invalid("config.metadata.name", "is empty"));
    }
    if md.name.len() > 253 || md.name.contains(|c: char| c.is_control() || c == '/') {
        return Err(invalid(
            "config.metadata.name",
            format!("{:?} is not a valid name", md.name),
        ));
    }
    let image = cfg
        .image
        .map(|i| i.image.trim().to_owned())
        .unwrap_or_default();
    if image.is_empty() {
        return Err(invalid("config.image.image", "is empty"));
    }
    if image.len() > 4096 || image.contains(char::is_control) {
        return Err(invalid(
            "config.image.image",
            "is not an image reference or id",
        ));
    }
    for (i, a) in cfg.command.iter().enumerate() {
        no_nul(a, &format!("config.command[{i}]"))?;
    }
    for (i, a) in cfg.args.iter().enumerate() {
        no_nul(a, &format!("config.args[{i}]"))?;
    }
    no_nul(&cfg.working_dir, "config.working_dir")?;
    let mut envs = Vec::with_capacity(cfg.envs.len());
    for (i, kv) in cfg.envs.into_iter().enumerate() {
        let what = format!("config.envs[{i}]");
        if kv.key.is_empty() {
            return Err(invalid(&format!("{what}.key"), "is empty"));
        }
        if kv.key.contains(['=', '\0']) {
            return Err(invalid(
                &format!("{what}.key"),
                format!("{:?} contains '=' or a NUL byte", kv.key),
            ));
        }
        no_nul(&kv.value, &format!("{what}.value"))?;
        envs.push((kv.key, kv.value));
    }
    let mounts = cfg
        .mounts
        .into_iter()
        .enumerate()
        .map(|(i, m)| mount_spec(m, &format!("config.mounts[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut devices = Vec::with_capacity(cfg.devices.len());
    for (i, d) in cfg.devices.into_iter().enumerate() {
        let what = format!("config.devices[{i}]");
        absolute(&d.host_path, &format!("{what}.host_path"))?;
        if !d.container_path.is_empty() {
            absolute(&d.container_path, &format!("{what}.container_path"))?;
        }
        if !d.permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(invalid(
                &format!("{what}.permissions"),
                format!("{:?} may only contain r, w and m", d.permissions),
            ));
        }
        devices.push(DeviceSpec {
            container_path: d.container_path,
            host_path: d.host_path,
            permissions: d.permissions,
        });
    }
    let cdi_devices = cdi_devices(&cfg.cdi_devices, &cfg.annotations)?;
    log_path(&cfg.log_path)?;
    let linux = cfg.linux.unwrap_or_default();
    let resources = match linux.resources {
        Some(r) => resources(r, CREATE, "config.linux.resources")?,
        None => ContainerResources::default(),
    };
    let security = security(linux.security_context.unwrap_or_default())?;
    let spec = ContainerSpec {
        name: md.name,
        attempt: md.attempt,
        image,
        command: cfg.command,
        args: cfg.args,
        working_dir: cfg.working_dir,
        envs,
        mounts,
        devices,
        cdi_devices,
        labels: meta_map(cfg.labels, CREATE, "config.labels")?,
        annotations: meta_map(cfg.annotations, CREATE, "config.annotations")?,
        log_path: cfg.log_path,
        stdin: cfg.stdin,
        stdin_once: cfg.stdin_once,
        tty: cfg.tty,
        resources,
        security,
        // The CRI `stop_signal` field is newer than the API crius serves.
        stop_signal: String::new(),
    };
    Ok((req.pod_sandbox_id, spec))
}

/// CDI device names from `CDI_devices` and kubelet's legacy
/// `cdi.k8s.io/*` annotations (device plugins), checked, without duplicates.
fn cdi_devices(
    list: &[cri::CdiDevice],
    annotations: &std::collections::HashMap<String, String>,
) -> Result<Vec<String>, Status> {
    let mut out: Vec<String> = Vec::new();
    for (i, d) in list.iter().enumerate() {
        crate::runtime::cdi::parse_name(&d.name)
            .map_err(|e| invalid(&format!("config.CDI_devices[{i}].name"), e))?;
        if !out.contains(&d.name) {
            out.push(d.name.clone());
        }
    }
    let mut keys: Vec<_> = annotations.iter().collect();
    keys.sort();
    for (k, v) in keys {
        for name in crate::runtime::cdi::annotation_devices([(k, v)]) {
            crate::runtime::cdi::parse_name(&name)
                .map_err(|e| invalid(&format!("config.annotations[{k:?}]"), e))?;
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    Ok(out)
}

fn mount_spec(m: cri::Mount, what: &str) -> Result<MountSpec, Status> {
    let image = m
        .image
        .as_ref()
        .map(|i| i.image.trim().to_owned())
        .unwrap_or_default();
    absolute(&m.container_path, &format!("{what}.container_path"))?;
    if !image.is_empty() {
        // An image volume: always read-only, no host path (the CRI says the
        // two are mutually exclusive).
        if !m.host_path.is_empty() {
            return Err(invalid(
                &format!("{what}.host_path"),
                "must be empty when image is set (an image volume)",
            ));
        }
        if image.len() > 4096 || image.contains(char::is_control) {
            return Err(invalid(
                &format!("{what}.image.image"),
                "is not an image reference or id",
            ));
        }
        return Ok(MountSpec {
            container_path: m.container_path,
            readonly: true,
            selinux_relabel: m.selinux_relabel,
            image,
            ..Default::default()
        });
    }
    absolute(&m.host_path, &format!("{what}.host_path"))?;
    if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
        return Err(invalid(
            &format!("{what}.uidMappings"),
            "id-mapped mounts are not supported yet",
        ));
    }
    let propagation = match cri::MountPropagation::try_from(m.propagation) {
        Ok(cri::MountPropagation::PropagationPrivate) => Propagation::Private,
        Ok(cri::MountPropagation::PropagationHostToContainer) => Propagation::HostToContainer,
        Ok(cri::MountPropagation::PropagationBidirectional) => Propagation::Bidirectional,
        Err(_) => {
            return Err(invalid(
                &format!("{what}.propagation"),
                format!("unknown propagation {}", m.propagation),
            ));
        }
    };
    if m.recursive_read_only && (!m.readonly || propagation != Propagation::Private) {
        return Err(invalid(
            &format!("{what}.recursive_read_only"),
            "requires readonly to be set and propagation to be PROPAGATION_PRIVATE",
        ));
    }
    Ok(MountSpec {
        container_path: m.container_path,
        host_path: m.host_path,
        readonly: m.readonly,
        recursive_read_only: m.recursive_read_only,
        propagation,
        selinux_relabel: m.selinux_relabel,
        image: String::new(),
    })
}

/// CRI log_path: relative to the pod's log directory, never leaving it.
fn log_path(p: &str) -> Result<(), Status> {
    const WHAT: &str = "config.log_path";
    no_nul(p, WHAT)?;
    if p.starts_with('/') {
        return Err(invalid(
            WHAT,
            format!("{p:?} must be relative to the pod's log_directory"),
        ));
    }
    if Path::new(p)
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(invalid(WHAT, format!("{p:?} must not contain '..'")));
    }
    Ok(())
}

/// LinuxContainerResources → the domain's, validated (CreateContainer and
/// UpdateContainerResources). CRI's 0 means "not set".
fn resources(
    r: cri::LinuxContainerResources,
    rpc: &str,
    what: &str,
) -> Result<ContainerResources, Status> {
    let bad = |field: &str, why: String| invalid_in(rpc, &format!("{what}.{field}"), why);
    for (field, v) in [
        ("cpu_shares", r.cpu_shares),
        ("cpu_period", r.cpu_period),
        ("memory_limit_in_bytes", r.memory_limit_in_bytes),
    ] {
        if v < 0 {
            return Err(bad(field, format!("{v} is negative")));
        }
    }
    if r.cpu_period != 0 && !(1000..=1_000_000).contains(&r.cpu_period) {
        return Err(bad(
            "cpu_period",
            format!(
                "{} is outside the kernel's range 1000..=1000000 µs",
                r.cpu_period
            ),
        ));
    }
    if !(r.cpu_quota == 0 || r.cpu_quota == -1 || r.cpu_quota >= 1000) {
        return Err(bad(
            "cpu_quota",
            format!(
                "{} must be 0 (not set), -1 (unlimited) or at least 1000 µs",
                r.cpu_quota
            ),
        ));
    }
    if r.memory_swap_limit_in_bytes < -1 {
        return Err(bad(
            "memory_swap_limit_in_bytes",
            format!(
                "{} must be -1 (unlimited), 0 (not set) or positive",
                r.memory_swap_limit_in_bytes
            ),
        ));
    }
    if !(-1000..=1000).contains(&r.oom_score_adj) {
        return Err(bad(
            "oom_score_adj",
            format!("{} is outside -1000..=1000", r.oom_score_adj),
        ));
    }
    for (field, v) in [
        ("cpuset_cpus", &r.cpuset_cpus),
        ("cpuset_mems", &r.cpuset_mems),
    ] {
        if !v
            .chars()
            .all(|c| c.is_ascii_digit() || c == ',' || c == '-')
        {
            return Err(bad(field, format!("{v:?} is not a CPU/node list")));
        }
    }
    let mut hugepage_limits = Vec::with_capacity(r.hugepage_limits.len());
    for (i, h) in r.hugepage_limits.into_iter().enumerate() {
        if h.page_size.is_empty() || !h.page_size.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(bad(
                &format!("hugepage_limits[{i}].page_size"),
                format!("{:?} is not a page size such as 2MB", h.page_size),
            ));
        }
        hugepage_limits.push((h.page_size, h.limit));
    }
    for (k, v) in &r.unified {
        if k.is_empty() || k.starts_with('.') || k.contains(['/', '\0']) || v.contains('\0') {
            return Err(bad("unified", format!("{k:?} is not a cgroup file name")));
        }
    }
    Ok(ContainerResources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus,
        cpuset_mems: r.cpuset_mems,
        hugepage_limits,
        unified: r.unified.into_iter().collect(),
    })
}

fn security(sc: cri::LinuxContainerSecurityContext) -> Result<SecuritySpec, Status> {
    const SC: &str = "config.linux.security_context";
    let caps = sc.capabilities.unwrap_or_default();
    if !caps.add_ambient_capabilities.is_empty() {
        return Err(invalid(
            &format!("{SC}.capabilities.add_ambient_capabilities"),
            "ambient capabilities are not supported yet",
        ));
    }
    let run_as_user = sc.run_as_user.map(|v| v.value);
    let run_as_group = sc.run_as_group.map(|v| v.value);
    for (field, v) in [("run_as_user", run_as_user), ("run_as_group", run_as_group)] {
        if v.is_some_and(|v| v < 0) {
            return Err(invalid(&format!("{SC}.{field}"), "is negative"));
        }
    }
    if run_as_group.is_some() && run_as_user.is_none() && sc.run_as_username.is_empty() {
        return Err(invalid(
            &format!("{SC}.run_as_group"),
            "is set without run_as_user or run_as_username",
        ));
    }
    no_nul(&sc.run_as_username, &format!("{SC}.run_as_username"))?;
    let groups_policy = match cri::SupplementalGroupsPolicy::try_from(sc.supplemental_groups_policy)
    {
        Ok(cri::SupplementalGroupsPolicy::Merge) => GroupsPolicy::Merge,
        Ok(cri::SupplementalGroupsPolicy::Strict) => GroupsPolicy::Strict,
        Err(_) => {
            return Err(invalid(
                &format!("{SC}.supplemental_groups_policy"),
                format!("unknown policy {}", sc.supplemental_groups_policy),
            ));
        }
    };
    for (field, paths) in [
        ("masked_paths", &sc.masked_paths),
        ("readonly_paths", &sc.readonly_paths),
    ] {
        for (i, p) in paths.iter().enumerate() {
            absolute(p, &format!("{SC}.{field}[{i}]"))?;
        }
    }
    // The deprecated string forms are the fallback older kubelets send.
    #[allow(deprecated)]
    let (seccomp_str, apparmor_str) = (&sc.seccomp_profile_path, &sc.apparmor_profile);
    let seccomp = match &sc.seccomp {
        Some(p) => profile(p, true, &format!("{SC}.seccomp"))?,
        None => seccomp_path(seccomp_str)?,
    };
    let apparmor = match &sc.apparmor {
        Some(p) => Some(profile(p, false, &format!("{SC}.apparmor"))?),
        None => apparmor_name(apparmor_str)?,
    };
    let ns = sc.namespace_options.unwrap_or_default();
    let ns_what = format!("{SC}.namespace_options");
    // network and ipc are the pod's; kubelet repeats them here.
    ns_mode(ns.network, CREATE, &format!("{ns_what}.network"))?;
    ns_mode(ns.ipc, CREATE, &format!("{ns_what}.ipc"))?;
    let pid = ns_mode(ns.pid, CREATE, &format!("{ns_what}.pid"))?;
    if pid == NsMode::Target && ns.target_id.is_empty() {
        return Err(invalid(
            &format!("{ns_what}.target_id"),
            "is empty but the PID namespace mode is TARGET",
        ));
    }
    // The user namespace is the pod's (kubelet repeats the pod's options
    // here): its containers join it when the pod has one (POD), else run
    // in the host's (NODE).
    if let Some(u) = &ns.userns_options
        && !matches!(
            cri::NamespaceMode::try_from(u.mode),
            Ok(cri::NamespaceMode::Node | cri::NamespaceMode::Pod)
        )
    {
        return Err(invalid(
            &format!("{ns_what}.userns_options.mode"),
            "only POD (the pod's user namespace) or NODE is supported",
        ));
    }
    Ok(SecuritySpec {
        privileged: sc.privileged,
        add_capabilities: caps.add_capabilities,
        drop_capabilities: caps.drop_capabilities,
        run_as_user,
        run_as_group,
        run_as_username: sc.run_as_username,
        readonly_rootfs: sc.readonly_rootfs,
        supplemental_groups: sc.supplemental_groups,
        groups_policy,
        no_new_privs: sc.no_new_privs,
        masked_paths: sc.masked_paths,
        readonly_paths: sc.readonly_paths,
        seccomp,
        apparmor,
        pid,
        target_id: ns.target_id,
    })
}

/// A `SecurityProfile`: for seccomp `localhost_ref` is an absolute path to
/// the profile, for AppArmor a loaded profile's name.
fn profile(p: &cri::SecurityProfile, seccomp: bool, what: &str) -> Result<Profile, Status> {
    let kind = cri::security_profile::ProfileType::try_from(p.profile_type);
    let profile = match kind {
        Ok(cri::security_profile::ProfileType::RuntimeDefault) => Profile::RuntimeDefault,
        Ok(cri::security_profile::ProfileType::Unconfined) => Profile::Unconfined,
        Ok(cri::security_profile::ProfileType::Localhost) => {
            localhost(&p.localhost_ref, seccomp, &format!("{what}.localhost_ref"))?
        }
        Err(_) => {
            return Err(invalid(
                &format!("{what}.profile_type"),
                format!("unknown profile type {}", p.profile_type),
            ));
        }
    };
    if !matches!(profile, Profile::Localhost(_)) && !p.localhost_ref.is_empty() {
        return Err(invalid(
            &format!("{what}.localhost_ref"),
            "must only be set when profile_type is Localhost",
        ));
    }
    Ok(profile)
}

fn localhost(r: &str, seccomp: bool, what: &str) -> Result<Profile, Status> {
    if seccomp {
        absolute(r, what)?;
    } else {
        if r.is_empty() {
            return Err(invalid(what, "is empty"));
        }
        if r.contains(char::is_control) {
            return Err(invalid(what, format!("{r:?} is not a profile name")));
        }
    }
    Ok(Profile::Localhost(r.to_owned()))
}

/// The deprecated `seccomp_profile_path`; empty means unconfined (CRI).
fn seccomp_path(s: &str) -> Result<Profile, Status> {
    const WHAT: &str = "config.linux.security_context.seccomp_profile_path";
    match s {
        "" | "unconfined" => Ok(Profile::Unconfined),
        "runtime/default" | "docker/default" => Ok(Profile::RuntimeDefault),
        _ => match s.strip_prefix("localhost/") {
            Some(path) => localhost(path, true, WHAT),
            None => Err(invalid(
                WHAT,
                format!(
                    "{s:?} is not runtime/default, docker/default, unconfined or localhost/<path>"
                ),
            )),
        },
    }
}

/// The deprecated `apparmor_profile`; empty means not given.
fn apparmor_name(s: &str) -> Result<Option<Profile>, Status> {
    const WHAT: &str = "config.linux.security_context.apparmor_profile";
    match s {
        "" => Ok(None),
        "runtime/default" => Ok(Some(Profile::RuntimeDefault)),
        "unconfined" => Ok(Some(Profile::Unconfined)),
        _ => match s.strip_prefix("localhost/") {
            Some(name) => localhost(name, false, WHAT).map(Some),
            None => Err(invalid(
                WHAT,
                format!("{s:?} is not runtime/default, unconfined or localhost/<name>"),
            )),
        },
    }
}

fn state_in(v: i32, rpc: &str) -> Result<ContainerState, Status> {
    match cri::ContainerState::try_from(v) {
        Ok(cri::ContainerState::ContainerCreated) => Ok(ContainerState::Created),
        Ok(cri::ContainerState::ContainerRunning) => Ok(ContainerState::Running),
        Ok(cri::ContainerState::ContainerExited) => Ok(ContainerState::Exited),
        Ok(cri::ContainerState::ContainerUnknown) => Ok(ContainerState::Unknown),
        Err(_) => Err(invalid_in(
            rpc,
            "filter.state",
            format!("unknown state {v}"),
        )),
    }
}

fn state_out(s: ContainerState) -> i32 {
    (match s {
        ContainerState::Created => cri::ContainerState::ContainerCreated,
        ContainerState::Running => cri::ContainerState::ContainerRunning,
        ContainerState::Exited => cri::ContainerState::ContainerExited,
        ContainerState::Unknown => cri::ContainerState::ContainerUnknown,
    }) as i32
}

/// ListContainers' filter; an unknown state is InvalidArgument.
pub fn container_filter(f: Option<cri::ContainerFilter>) -> Result<ContainerFilter, Status> {
    let f = f.unwrap_or_default();
    Ok(ContainerFilter {
        id: Some(f.id).filter(|s| !s.is_empty()),
        state: f
            .state
            .map(|s| state_in(s.state, "ListContainers"))
            .transpose()?,
        pod_id: Some(f.pod_sandbox_id).filter(|s| !s.is_empty()),
        labels: f.label_selector.into_iter().collect(),
    })
}

pub(super) fn metadata(rec: &ContainerRecord) -> cri::ContainerMetadata {
    cri::ContainerMetadata {
        name: rec.spec.name.clone(),
        attempt: rec.spec.attempt,
    }
}

fn image_spec(rec: &ContainerRecord) -> cri::ImageSpec {
    cri::ImageSpec {
        image: rec.spec.image.clone(),
        ..Default::default()
    }
}

fn mount_out(m: &MountSpec) -> cri::Mount {
    let propagation = match m.propagation {
        Propagation::Private => cri::MountPropagation::PropagationPrivate,
        Propagation::HostToContainer => cri::MountPropagation::PropagationHostToContainer,
        Propagation::Bidirectional => cri::MountPropagation::PropagationBidirectional,
    };
    cri::Mount {
        container_path: m.container_path.clone(),
        host_path: m.host_path.clone(),
        readonly: m.readonly,
        selinux_relabel: m.selinux_relabel,
        propagation: propagation as i32,
        recursive_read_only: m.recursive_read_only,
        image: (!m.image.is_empty()).then(|| cri::ImageSpec {
            image: m.image.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn resources_out(r: &ContainerResources) -> cri::LinuxContainerResources {
    cri::LinuxContainerResources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        hugepage_limits: r
            .hugepage_limits
            .iter()
            .map(|(page_size, limit)| cri::HugepageLimit {
                page_size: page_size.clone(),
                limit: *limit,
            })
            .collect(),
        unified: to_map(&r.unified),
        memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
    }
}

/// A ListContainers item.
pub fn cri_container(rec: &ContainerRecord) -> cri::Container {
    cri::Container {
        id: rec.id.to_string(),
        pod_sandbox_id: rec.pod_id.to_string(),
        metadata: Some(metadata(rec)),
        image: Some(image_spec(rec)),
        image_ref: rec.image_ref.clone(),
        state: state_out(rec.state),
        created_at: rec.created_ns,
        labels: to_map(&rec.spec.labels),
        annotations: to_map(&rec.spec.annotations),
        image_id: rec.image_id.to_string(),
    }
}

/// ContainerStatus' status.
pub fn cri_status(rec: &ContainerRecord) -> cri::ContainerStatus {
    cri::ContainerStatus {
        id: rec.id.to_string(),
        metadata: Some(metadata(rec)),
        state: state_out(rec.state),
        created_at: rec.created_ns,
        started_at: rec.started_ns,
        finished_at: rec.finished_ns,
        exit_code: rec.exit_code,
        image: Some(image_spec(rec)),
        image_ref: rec.image_ref.clone(),
        reason: rec.reason.clone(),
        message: rec.message.clone(),
        labels: to_map(&rec.spec.labels),
        annotations: to_map(&rec.spec.annotations),
        mounts: rec.spec.mounts.iter().map(mount_out).collect(),
        log_path: rec
            .log_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        resources: Some(cri::ContainerResources {
            linux: Some(resources_out(&rec.resources)),
            windows: None,
        }),
        image_id: rec.image_id.to_string(),
        user: Some(cri::ContainerUser {
            linux: Some(cri::LinuxContainerUser {
                uid: i64::from(rec.user.uid),
                gid: i64::from(rec.user.gid),
                supplemental_groups: rec.user.groups.iter().map(|g| i64::from(*g)).collect(),
            }),
        }),
    }
}

/// The container id of a request: required.
pub(super) fn container_id(id: &str, rpc: &str) -> Result<(), Status> {
    tracing::Span::current().record("id", id);
    if id.is_empty() {
        return Err(invalid_in(rpc, "container_id", "is empty"));
    }
    Ok(())
}

impl Cri {
    pub(super) async fn container_create(
        &self,
        req: cri::CreateContainerRequest,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        let (pod_id, spec) = container_spec(req)?;
        let id = self.containers.create(&pod_id, spec).await?;
        tracing::Span::current().record("id", id.as_str());
        Ok(Response::new(cri::CreateContainerResponse {
            container_id: id.to_string(),
        }))
    }

    pub(super) async fn container_start(
        &self,
        req: cri::StartContainerRequest,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        container_id(&req.container_id, "StartContainer")?;
        self.containers.start(&req.container_id).await?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    pub(super) async fn container_stop(
        &self,
        req: cri::StopContainerRequest,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        container_id(&req.container_id, "StopContainer")?;
        self.containers
            .stop(&req.container_id, req.timeout.max(0))
            .await?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    pub(super) async fn container_remove(
        &self,
        req: cri::RemoveContainerRequest,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        container_id(&req.container_id, "RemoveContainer")?;
        self.containers.remove(&req.container_id).await?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    pub(super) async fn containers_list(
        &self,
        req: cri::ListContainersRequest,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        let filter = container_filter(req.filter)?;
        let recs = self.containers.list(&filter).await?;
        Ok(Response::new(cri::ListContainersResponse {
            containers: recs.iter().map(cri_container).collect(),
        }))
    }

    pub(super) async fn container_status_of(
        &self,
        req: cri::ContainerStatusRequest,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        container_id(&req.container_id, "ContainerStatus")?;
        let rec = self
            .containers
            .status(&req.container_id)
            .await?
            .ok_or_else(|| {
                Status::not_found(format!("container {:?} not found", req.container_id))
            })?;
        let mut info = HashMap::new();
        if req.verbose {
            let (m, id) = (self.containers.clone(), rec.id.clone());
            let spec = tokio::task::spawn_blocking(move || m.oci_spec(&id))
                .await
                .ok()
                .flatten();
            let doc = serde_json::json!({
                "pid": rec.pid,
                "runtimeSpec": spec,
                "runtimeHandler": rec.handler,
                "sandboxID": rec.pod_id.as_str(),
            });
            info.insert("info".to_owned(), doc.to_string());
        }
        Ok(Response::new(cri::ContainerStatusResponse {
            status: Some(cri_status(&rec)),
            info,
        }))
    }

    pub(super) async fn container_update(
        &self,
        req: cri::UpdateContainerResourcesRequest,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        const RPC: &str = "UpdateContainerResources";
        container_id(&req.container_id, RPC)?;
        let linux = req
            .linux
            .ok_or_else(|| invalid_in(RPC, "linux", "missing; crius runs Linux containers"))?;
        let r = resources(linux, RPC, "linux")?;
        self.containers
            .update_resources(&req.container_id, r)
            .await?;
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    pub(super) async fn container_reopen_log(
        &self,
        req: cri::ReopenContainerLogRequest,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        container_id(&req.container_id, "ReopenContainerLog")?;
        self.containers.reopen_log(&req.container_id).await?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    pub(super) async fn container_exec(
        &self,
        req: cri::ExecRequest,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        container_id(&req.container_id, "Exec")?;
        exec_cmd(&req.cmd, "Exec")?;
        some_stream(req.stdin, req.stdout, req.stderr, "Exec")?;
        if req.tty && req.stderr {
            return Err(Status::invalid_argument(
                "Exec: tty and stderr cannot both be true (a terminal has one output stream)",
            ));
        }
        // The container must exist and run now; the session checks again.
        let running = self
            .running_container(&req.container_id, "exec in it")
            .await?;
        let server = self.stream_server()?;
        let url = server
            .exec_url(crate::streaming::ExecSpec {
                container_id: running.id.to_string(),
                cmd: req.cmd,
                tty: req.tty,
                stdin: req.stdin,
                stdout: req.stdout,
                stderr: req.stderr,
            })
            .map_err(|e| Status::internal(format!("Exec: making a token: {e}")))?;
        Ok(Response::new(cri::ExecResponse { url }))
    }

    pub(super) async fn container_attach(
        &self,
        req: cri::AttachRequest,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        container_id(&req.container_id, "Attach")?;
        some_stream(req.stdin, req.stdout, req.stderr, "Attach")?;
        let rec = self
            .running_container(&req.container_id, "attach to it")
            .await?;
        if req.stdin && !rec.spec.stdin {
            return Err(Status::invalid_argument(format!(
                "Attach: container {} was not created with stdin",
                rec.id
            )));
        }
        let server = self.stream_server()?;
        // The container's terminal setting decides the streams (the CRI
        // says the request's must match it).
        let url = server
            .attach_url(crate::streaming::AttachSpec {
                container_id: rec.id.to_string(),
                tty: rec.spec.tty,
                stdin: req.stdin,
                stdout: req.stdout,
                stderr: req.stderr && !rec.spec.tty,
            })
            .map_err(|e| Status::internal(format!("Attach: making a token: {e}")))?;
        Ok(Response::new(cri::AttachResponse { url }))
    }

    pub(super) async fn container_exec_sync(
        &self,
        req: cri::ExecSyncRequest,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        container_id(&req.container_id, "ExecSync")?;
        exec_cmd(&req.cmd, "ExecSync")?;
        let timeout = match req.timeout {
            0 => None,
            t if t < 0 => {
                return Err(Status::invalid_argument(format!(
                    "ExecSync: timeout {t} is negative"
                )));
            }
            t => Some(std::time::Duration::from_secs(t.unsigned_abs())),
        };
        let out = self
            .containers
            .exec_sync(&req.container_id, req.cmd, timeout)
            .await?;
        Ok(Response::new(cri::ExecSyncResponse {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.exit_code,
        }))
    }
}

/// The command of Exec/ExecSync: a program is named, no NUL bytes.
fn exec_cmd(cmd: &[String], rpc: &str) -> Result<(), Status> {
    if cmd.first().is_none_or(|c| c.is_empty()) {
        return Err(Status::invalid_argument(format!(
            "{rpc}: cmd must name a program to run"
        )));
    }
    if cmd.iter().any(|a| a.contains('\0')) {
        return Err(Status::invalid_argument(format!(
            "{rpc}: cmd arguments must not contain NUL bytes"
        )));
    }
    Ok(())
}

/// One of stdin/stdout/stderr must be asked for (Exec, Attach).
fn some_stream(stdin: bool, stdout: bool, stderr: bool, rpc: &str) -> Result<(), Status> {
    if stdin || stdout || stderr {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "{rpc}: one of stdin, stdout and stderr must be true"
        )))
    }
}

impl Cri {
    /// The record of a container that must be running for `what`.
    async fn running_container(
        &self,
        id: &str,
        what: &str,
    ) -> Result<crate::runtime::container::ContainerRecord, Status> {
        let rec = self
            .containers
            .status(id)
            .await?
            .ok_or_else(|| Status::not_found(format!("container {id:?} not found")))?;
        if rec.state != crate::runtime::container::ContainerState::Running {
            return Err(Status::failed_precondition(format!(
                "container {} is not running; cannot {what}",
                rec.id
            )));
        }
        Ok(rec)
    }

    /// The streaming server (started with the daemon).
    pub(super) fn stream_server(&self) -> Result<&crate::streaming::StreamServer, Status> {
        self.streaming
            .get()
            .ok_or_else(|| Status::unavailable("the streaming server is not running yet"))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use tonic::Code;

    use super::*;
    use crate::id::{ContainerId, Digest, PodSandboxId};
    use crate::runtime::container::{ContainerError, EffectiveUser};

    const POD: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    fn request() -> cri::CreateContainerRequest {
        cri::CreateContainerRequest {
            pod_sandbox_id: POD.into(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "app".into(),
                    attempt: 2,
                }),
                image: Some(cri::ImageSpec {
                    image: "docker.io/library/busybox:latest".into(),
                    ..Default::default()
                }),
                command: vec!["/bin/sh".into()],
                args: vec!["-c".into(), "sleep 1".into()],
                envs: vec![cri::KeyValue {
                    key: "PATH".into(),
                    value: "/bin".into(),
                }],
                log_path: "app/0.log".into(),
                ..Default::default()
            }),
            sandbox_config: None,
        }
    }

    fn with(f: impl FnOnce(&mut cri::ContainerConfig)) -> cri::CreateContainerRequest {
        let mut r = request();
        if let Some(c) = r.config.as_mut() {
            f(c);
        }
        r
    }

    fn sc(f: impl FnOnce(&mut cri::LinuxContainerSecurityContext)) -> cri::CreateContainerRequest {
        with(|c| {
            let mut s = cri::LinuxContainerSecurityContext::default();
            f(&mut s);
            c.linux = Some(cri::LinuxContainerConfig {
                resources: None,
                security_context: Some(s),
            });
        })
    }

    fn res(f: impl FnOnce(&mut cri::LinuxContainerResources)) -> cri::CreateContainerRequest {
        with(|c| {
            let mut r = cri::LinuxContainerResources::default();
            f(&mut r);
            c.linux = Some(cri::LinuxContainerConfig {
                resources: Some(r),
                security_context: None,
            });
        })
    }

    fn mount() -> cri::Mount {
        cri::Mount {
            container_path: "/data".into(),
            host_path: "/srv/data".into(),
            ..Default::default()
        }
    }

    /// Asserts InvalidArgument with `field` in the message.
    #[track_caller]
    fn rejects(req: cri::CreateContainerRequest, field: &str) {
        match container_spec(req) {
            Ok(s) => panic!("accepted, expected an error naming {field}: {s:?}"),
            Err(e) => {
                assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
                assert!(
                    e.message().starts_with("CreateContainer: ") && e.message().contains(field),
                    "{:?} does not name {field}",
                    e.message()
                );
            }
        }
    }

    fn spec(req: cri::CreateContainerRequest) -> ContainerSpec {
        match container_spec(req) {
            Ok((_, s)) => s,
            Err(e) => panic!("rejected: {}", e.message()),
        }
    }

    #[test]
    fn minimal_request_converts() {
        let (pod, s) = container_spec(request()).unwrap();
        assert_eq!(pod, POD);
        assert_eq!(s.name, "app");
        assert_eq!(s.attempt, 2);
        assert_eq!(s.image, "docker.io/library/busybox:latest");
        assert_eq!(s.command, ["/bin/sh"]);
        assert_eq!(s.args, ["-c", "sleep 1"]);
        assert_eq!(s.envs, [("PATH".to_owned(), "/bin".to_owned())]);
        assert_eq!(s.log_path, "app/0.log");
        assert_eq!(s.resources, ContainerResources::default());
        // No security context: CRI's empty seccomp is unconfined, no AppArmor.
        assert_eq!(s.security.seccomp, Profile::Unconfined);
        assert_eq!(s.security.apparmor, None);
        assert_eq!(s.security.pid, NsMode::Pod);
        assert_eq!(s.stop_signal, "");
    }

    #[test]
    fn full_request_converts() {
        let s = spec(with(|c| {
            c.mounts = vec![cri::Mount {
                readonly: true,
                recursive_read_only: true,
                ..mount()
            }];
            c.devices = vec![cri::Device {
                container_path: "/dev/fuse".into(),
                host_path: "/dev/fuse".into(),
                permissions: "rwm".into(),
            }];
            c.labels = HashMap::from([("a".into(), "b".into())]);
            c.linux = Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources {
                    cpu_quota: -1,
                    cpu_period: 100_000,
                    memory_limit_in_bytes: 1 << 30,
                    hugepage_limits: vec![cri::HugepageLimit {
                        page_size: "2MB".into(),
                        limit: 4096,
                    }],
                    ..Default::default()
                }),
                security_context: Some(cri::LinuxContainerSecurityContext {
                    capabilities: Some(cri::Capability {
                        add_capabilities: vec!["NET_ADMIN".into()],
                        drop_capabilities: vec!["ALL".into()],
                        add_ambient_capabilities: vec![],
                    }),
                    run_as_user: Some(cri::Int64Value { value: 1000 }),
                    run_as_group: Some(cri::Int64Value { value: 0 }),
                    supplemental_groups: vec![5, 6],
                    supplemental_groups_policy: cri::SupplementalGroupsPolicy::Strict as i32,
                    no_new_privs: true,
                    readonly_rootfs: true,
                    seccomp: Some(cri::SecurityProfile {
                        profile_type: cri::security_profile::ProfileType::Localhost as i32,
                        localhost_ref: "/var/lib/kubelet/seccomp/p.json".into(),
                    }),
                    apparmor: Some(cri::SecurityProfile {
                        profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
                        localhost_ref: String::new(),
                    }),
                    namespace_options: Some(cri::NamespaceOption {
                        pid: cri::NamespaceMode::Target as i32,
                        target_id: "abc".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            });
        }));
        assert_eq!(s.mounts[0].propagation, Propagation::Private);
        assert!(s.mounts[0].recursive_read_only);
        assert_eq!(s.devices[0].permissions, "rwm");
        assert_eq!(s.labels["a"], "b");
        assert_eq!(s.resources.cpu_quota, -1);
        assert_eq!(s.resources.hugepage_limits, [("2MB".to_owned(), 4096)]);
        let sec = &s.security;
        assert_eq!(sec.add_capabilities, ["NET_ADMIN"]);
        assert_eq!(sec.drop_capabilities, ["ALL"]);
        assert_eq!(sec.run_as_user, Some(1000));
        assert_eq!(sec.run_as_group, Some(0));
        assert_eq!(sec.supplemental_groups, [5, 6]);
        assert_eq!(sec.groups_policy, GroupsPolicy::Strict);
        assert!(sec.no_new_privs && sec.readonly_rootfs);
        assert_eq!(
            sec.seccomp,
            Profile::Localhost("/var/lib/kubelet/seccomp/p.json".into())
        );
        assert_eq!(sec.apparmor, Some(Profile::RuntimeDefault));
        assert_eq!(sec.pid, NsMode::Target);
        assert_eq!(sec.target_id, "abc");
    }

    #[test]
    fn rejects_missing_and_bad_metadata() {
        rejects(
            cri::CreateContainerRequest {
                pod_sandbox_id: String::new(),
                ..request()
            },
            "pod_sandbox_id",
        );
        rejects(
            cri::CreateContainerRequest {
                config: None,
                ..request()
            },
            "config: missing",
        );
        rejects(with(|c| c.metadata = None), "config.metadata");
        for name in ["", "a/b", "a\nb", &"x".repeat(254)] {
            rejects(
                with(|c| {
                    c.metadata = Some(cri::ContainerMetadata {
                        name: name.into(),
                        attempt: 0,
                    })
                }),
                "config.metadata.name",
            );
        }
        rejects(with(|c| c.image = None), "config.image.image");
        rejects(
            with(|c| {
                c.image = Some(cri::ImageSpec {
                    image: "  ".into(),
                    ..Default::default()
                })
            }),
            "config.image.image",
        );
    }

    #[test]
    fn rejects_bad_envs_and_args() {
        for key in ["", "A=B", "A\0"] {
            rejects(
                with(|c| {
                    c.envs.push(cri::KeyValue {
                        key: key.into(),
                        value: "v".into(),
                    })
                }),
                "config.envs[1].key",
            );
        }
        rejects(with(|c| c.args.push("a\0b".into())), "config.args[2]");
    }

    #[test]
    fn rejects_bad_mounts() {
        let m = |f: fn(&mut cri::Mount)| {
            with(|c| {
                let mut bad = mount();
                f(&mut bad);
                c.mounts = vec![mount(), mount(), bad];
            })
        };
        rejects(
            m(|m| m.container_path = "data".into()),
            "config.mounts[2].container_path",
        );
        rejects(
            m(|m| m.container_path = String::new()),
            "config.mounts[2].container_path",
        );
        rejects(
            m(|m| m.host_path = String::new()),
            "config.mounts[2].host_path",
        );
        rejects(
            m(|m| m.host_path = "srv".into()),
            "config.mounts[2].host_path",
        );
        rejects(m(|m| m.propagation = 7), "config.mounts[2].propagation");
        rejects(
            m(|m| m.recursive_read_only = true),
            "config.mounts[2].recursive_read_only",
        );
        rejects(
            m(|m| {
                m.recursive_read_only = true;
                m.readonly = true;
                m.propagation = cri::MountPropagation::PropagationHostToContainer as i32;
            }),
            "config.mounts[2].recursive_read_only",
        );
        // Image volumes: no host path, always read-only.
        let s = spec(m(|m| {
            m.host_path = String::new();
            m.image = Some(cri::ImageSpec {
                image: "sha256:abc".into(),
                ..Default::default()
            });
        }));
        assert_eq!(s.mounts[2].image, "sha256:abc");
        assert!(s.mounts[2].readonly && s.mounts[2].host_path.is_empty());
        rejects(
            m(|m| {
                m.image = Some(cri::ImageSpec {
                    image: "sha256:abc".into(),
                    ..Default::default()
                })
            }),
            "config.mounts[2].host_path",
        );
        let s = spec(m(|m| {
            m.propagation = cri::MountPropagation::PropagationBidirectional as i32
        }));
        assert_eq!(s.mounts[2].propagation, Propagation::Bidirectional);
    }

    #[test]
    fn cdi_devices_from_the_field_and_annotations() {
        let s = spec(with(|c| {
            c.cdi_devices = vec![
                cri::CdiDevice {
                    name: "vendor.com/gpu=0".into(),
                },
                cri::CdiDevice {
                    name: "vendor.com/gpu=0".into(),
                },
            ];
            c.annotations.insert(
                "cdi.k8s.io/plugin_x".into(),
                "vendor.com/gpu=1,vendor.com/gpu=0".into(),
            );
        }));
        assert_eq!(s.cdi_devices, vec!["vendor.com/gpu=0", "vendor.com/gpu=1"]);
        rejects(
            with(|c| {
                c.cdi_devices = vec![cri::CdiDevice {
                    name: "gpu0".into(),
                }];
            }),
            "config.CDI_devices[0].name",
        );
        rejects(
            with(|c| {
                c.annotations
                    .insert("cdi.k8s.io/p".into(), "vendor.com/gpu".into());
            }),
            "config.annotations[\"cdi.k8s.io/p\"]",
        );
    }

    #[test]
    fn rejects_bad_devices_and_log_path() {
        let d = |container_path: &str, permissions: &str| {
            let (container_path, permissions) = (container_path.to_owned(), permissions.to_owned());
            with(move |c| {
                c.devices = vec![cri::Device {
                    container_path,
                    host_path: "/dev/null".into(),
                    permissions,
                }]
            })
        };
        rejects(d("dev/null", "rw"), "config.devices[0].container_path");
        rejects(d("/dev/null", "rwx"), "config.devices[0].permissions");
        assert_eq!(spec(d("", "r")).devices[0].container_path, "");
        for p in ["/var/log/x.log", "../x.log", "a/../../x.log"] {
            rejects(with(|c| c.log_path = p.into()), "config.log_path");
        }
        assert_eq!(spec(with(|c| c.log_path = String::new())).log_path, "");
    }

    #[test]
    fn rejects_bad_labels() {
        rejects(
            with(|c| c.labels = HashMap::from([(String::new(), "v".into())])),
            "config.labels",
        );
        rejects(
            with(|c| c.annotations = HashMap::from([(String::new(), "v".into())])),
            "config.annotations",
        );
    }

    #[test]
    fn rejects_bad_resources() {
        const R: &str = "config.linux.resources";
        rejects(res(|r| r.cpu_shares = -2), &format!("{R}.cpu_shares"));
        rejects(res(|r| r.cpu_period = -1), &format!("{R}.cpu_period"));
        rejects(
            res(|r| r.memory_limit_in_bytes = -1),
            &format!("{R}.memory_limit_in_bytes"),
        );
        for q in [-2, 1, 999] {
            rejects(res(|r| r.cpu_quota = q), &format!("{R}.cpu_quota"));
        }
        for q in [-1, 0, 1000, 50_000] {
            assert_eq!(spec(res(|r| r.cpu_quota = q)).resources.cpu_quota, q);
        }
        rejects(
            res(|r| {
                r.hugepage_limits = vec![cri::HugepageLimit {
                    page_size: String::new(),
                    limit: 1,
                }]
            }),
            &format!("{R}.hugepage_limits[0].page_size"),
        );
        rejects(
            res(|r| r.unified = HashMap::from([("../x".into(), "1".into())])),
            &format!("{R}.unified"),
        );
    }

    #[test]
    fn rejects_bad_security_context() {
        const S: &str = "config.linux.security_context";
        rejects(
            sc(|s| s.run_as_group = Some(cri::Int64Value { value: 1 })),
            &format!("{S}.run_as_group"),
        );
        let s = spec(sc(|s| {
            s.run_as_group = Some(cri::Int64Value { value: 1 });
            s.run_as_username = "nobody".into();
        }));
        assert_eq!(s.security.run_as_username, "nobody");
        rejects(
            sc(|s| s.supplemental_groups_policy = 9),
            &format!("{S}.supplemental_groups_policy"),
        );
        rejects(
            sc(|s| {
                s.seccomp = Some(cri::SecurityProfile {
                    profile_type: cri::security_profile::ProfileType::Localhost as i32,
                    localhost_ref: "relative.json".into(),
                })
            }),
            &format!("{S}.seccomp.localhost_ref"),
        );
        rejects(
            sc(|s| {
                s.apparmor = Some(cri::SecurityProfile {
                    profile_type: cri::security_profile::ProfileType::Localhost as i32,
                    localhost_ref: String::new(),
                })
            }),
            &format!("{S}.apparmor.localhost_ref"),
        );
        rejects(
            sc(|s| {
                s.seccomp = Some(cri::SecurityProfile {
                    profile_type: 5,
                    localhost_ref: String::new(),
                })
            }),
            &format!("{S}.seccomp.profile_type"),
        );
        rejects(
            sc(|s| {
                s.namespace_options = Some(cri::NamespaceOption {
                    pid: cri::NamespaceMode::Target as i32,
                    ..Default::default()
                })
            }),
            &format!("{S}.namespace_options.target_id"),
        );
        rejects(
            sc(|s| {
                s.namespace_options = Some(cri::NamespaceOption {
                    pid: 9,
                    ..Default::default()
                })
            }),
            &format!("{S}.namespace_options.pid"),
        );
        rejects(
            sc(|s| s.masked_paths = vec!["proc/kcore".into()]),
            &format!("{S}.masked_paths[0]"),
        );
    }

    #[test]
    #[allow(deprecated)]
    fn seccomp_string_fallback() {
        for (path, want) in [
            ("", Profile::Unconfined),
            ("unconfined", Profile::Unconfined),
            ("runtime/default", Profile::RuntimeDefault),
            ("docker/default", Profile::RuntimeDefault),
            (
                "localhost//etc/p.json",
                Profile::Localhost("/etc/p.json".into()),
            ),
        ] {
            let s = spec(sc(|s| s.seccomp_profile_path = path.into()));
            assert_eq!(s.security.seccomp, want, "{path:?}");
        }
        for path in ["localhost/rel.json", "localhost/", "bogus"] {
            rejects(
                sc(|s| s.seccomp_profile_path = path.into()),
                "seccomp_profile_path",
            );
        }
        // The structured field wins over the string.
        let s = spec(sc(|s| {
            s.seccomp_profile_path = "unconfined".into();
            s.seccomp = Some(cri::SecurityProfile::default());
        }));
        assert_eq!(s.security.seccomp, Profile::RuntimeDefault);
    }

    #[test]
    #[allow(deprecated)]
    fn apparmor_string_fallback() {
        for (name, want) in [
            ("", None),
            ("unconfined", Some(Profile::Unconfined)),
            ("runtime/default", Some(Profile::RuntimeDefault)),
            (
                "localhost/my-prof",
                Some(Profile::Localhost("my-prof".into())),
            ),
        ] {
            let s = spec(sc(|s| s.apparmor_profile = name.into()));
            assert_eq!(s.security.apparmor, want, "{name:?}");
        }
        for name in ["localhost/", "docker-default"] {
            rejects(sc(|s| s.apparmor_profile = name.into()), "apparmor_profile");
        }
        let s = spec(sc(|s| {
            s.apparmor_profile = "unconfined".into();
            s.apparmor = Some(cri::SecurityProfile {
                profile_type: cri::security_profile::ProfileType::Localhost as i32,
                localhost_ref: "k8s-prof".into(),
            });
        }));
        assert_eq!(
            s.security.apparmor,
            Some(Profile::Localhost("k8s-prof".into()))
        );
    }

    #[test]
    fn filter_conversion() {
        let f = container_filter(None).unwrap();
        assert!(f.id.is_none() && f.state.is_none() && f.pod_id.is_none());
        assert!(f.labels.is_empty());
        let f = container_filter(Some(cri::ContainerFilter {
            id: "abc".into(),
            state: Some(cri::ContainerStateValue {
                state: cri::ContainerState::ContainerExited as i32,
            }),
            pod_sandbox_id: "def".into(),
            label_selector: HashMap::from([("k".into(), "v".into())]),
        }))
        .unwrap();
        assert_eq!(f.id.as_deref(), Some("abc"));
        assert_eq!(f.state, Some(ContainerState::Exited));
        assert_eq!(f.pod_id.as_deref(), Some("def"));
        assert_eq!(f.labels["k"], "v");
        let e = container_filter(Some(cri::ContainerFilter {
            state: Some(cri::ContainerStateValue { state: 42 }),
            ..Default::default()
        }))
        .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("filter.state"));
    }

    fn record() -> ContainerRecord {
        let s = spec(with(|c| {
            c.mounts = vec![cri::Mount {
                propagation: cri::MountPropagation::PropagationHostToContainer as i32,
                readonly: true,
                ..mount()
            }];
            c.annotations = HashMap::from([("io.kubernetes.x".into(), "y".into())]);
            c.labels = HashMap::from([("app".into(), "web".into())]);
        }));
        ContainerRecord {
            id: ContainerId::parse(&"2".repeat(64)).unwrap(),
            pod_id: PodSandboxId::parse(POD).unwrap(),
            spec: s,
            image_id: Digest::of(b"config"),
            image_ref: "docker.io/library/busybox@sha256:1234".into(),
            chain_ids: vec![],
            image_volumes: vec![],
            handler: String::new(),
            state: ContainerState::Exited,
            created_ns: 10,
            started_ns: 20,
            finished_ns: 30,
            exit_code: 137,
            reason: "OOMKilled".into(),
            message: "out of memory".into(),
            pid: 0,
            log_path: Some(PathBuf::from("/var/log/pods/p/app/0.log")),
            cgroup_path: "/crius/x".into(),
            user: EffectiveUser {
                uid: 1000,
                gid: 1000,
                groups: vec![1000, 5],
            },
            stop_signal: 15,
            resources: ContainerResources {
                cpu_shares: 512,
                memory_limit_in_bytes: 1 << 20,
                unified: [("memory.high".to_owned(), "max".to_owned())].into(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn status_round_trip() {
        let rec = record();
        let st = cri_status(&rec);
        assert_eq!(st.id, rec.id.as_str());
        let md = st.metadata.unwrap();
        assert_eq!((md.name.as_str(), md.attempt), ("app", 2));
        assert_eq!(st.state, cri::ContainerState::ContainerExited as i32);
        assert_eq!((st.created_at, st.started_at, st.finished_at), (10, 20, 30));
        assert_eq!(st.exit_code, 137);
        assert_eq!(st.reason, "OOMKilled");
        assert_eq!(st.message, "out of memory");
        assert_eq!(st.image.unwrap().image, "docker.io/library/busybox:latest");
        assert_eq!(st.image_ref, rec.image_ref);
        assert_eq!(st.image_id, rec.image_id.to_string());
        assert!(st.image_id.starts_with("sha256:"));
        assert_eq!(st.labels["app"], "web");
        assert_eq!(st.annotations["io.kubernetes.x"], "y");
        assert_eq!(st.log_path, "/var/log/pods/p/app/0.log");
        let user = st.user.unwrap().linux.unwrap();
        assert_eq!((user.uid, user.gid), (1000, 1000));
        assert_eq!(user.supplemental_groups, [1000, 5]);
        let r = st.resources.unwrap().linux.unwrap();
        assert_eq!((r.cpu_shares, r.memory_limit_in_bytes), (512, 1 << 20));
        assert_eq!(r.unified["memory.high"], "max");
        // The mounts go back through the same validation unchanged.
        let back = spec(with(|c| c.mounts = st.mounts.clone()));
        assert_eq!(back.mounts, rec.spec.mounts);
        assert_eq!(
            st.mounts[0].propagation,
            cri::MountPropagation::PropagationHostToContainer as i32
        );
        // Resources too.
        let again = resources(r, "UpdateContainerResources", "linux").unwrap();
        assert_eq!(again, rec.resources);

        let c = cri_container(&rec);
        assert_eq!(c.id, rec.id.as_str());
        assert_eq!(c.pod_sandbox_id, POD);
        assert_eq!(c.state, cri::ContainerState::ContainerExited as i32);
        assert_eq!(c.created_at, 10);
        assert_eq!(c.image_id, st.image_id);

        let mut running = rec.clone();
        running.state = ContainerState::Running;
        running.log_path = None;
        let st = cri_status(&running);
        assert_eq!(st.state, cri::ContainerState::ContainerRunning as i32);
        assert_eq!(st.log_path, "");
    }

    #[test]
    fn status_codes() {
        let id = ContainerId::parse(&"3".repeat(64)).unwrap();
        let cases = [
            (ContainerError::Invalid("x".into()), Code::InvalidArgument),
            (ContainerError::NotFound("x".into()), Code::NotFound),
            (ContainerError::PodNotFound("x".into()), Code::NotFound),
            (ContainerError::ImageNotFound("x".into()), Code::NotFound),
            (
                ContainerError::NameReserved {
                    name: "n".into(),
                    id: id.clone(),
                },
                Code::AlreadyExists,
            ),
            (
                ContainerError::State {
                    id,
                    what: "w".into(),
                },
                Code::FailedPrecondition,
            ),
            (ContainerError::Internal("x".into()), Code::Internal),
        ];
        for (e, code) in cases {
            let msg = e.to_string();
            let s = Status::from(e);
            assert_eq!((s.code(), s.message()), (code, msg.as_str()));
        }
    }
}
