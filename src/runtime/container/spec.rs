//! The OCI runtime spec (`config.json`) of a container, built the way
//! containerd's CRI plugin builds it: its default mounts, namespaces joined
//! from the pod, security settings, resources.
//!
//! The spec is assembled as JSON in OCI field names and then parsed into
//! `oci_spec::runtime::Spec`, so what reaches the executor has the shape
//! the OCI types demand (and the code stays as short as the spec reads).

use std::path::Path;

use serde_json::{Value, json};

use super::types::{ContainerResources, ContainerSpec, Propagation};
use crate::runtime::cdi;
use crate::runtime::sandbox::{NsMode, SandboxRecord};
use crate::runtime::security::{self, SecurityError};
use crate::runtime::user::ResolvedUser;

/// Everything the spec is made of, resolved by the caller.
#[derive(Debug)]
pub struct SpecInput<'a> {
    pub spec: &'a ContainerSpec,
    pub pod: &'a SandboxRecord,
    /// The pod's run dir, holding hostname, resolv.conf, hosts.
    pub pod_dir: &'a Path,
    pub user: &'a ResolvedUser,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub cgroup_path: &'a str,
    pub cgroup_v2: bool,
    /// PID of the target container's process (pid mode TARGET).
    pub target_pid: Option<u32>,
    /// Already limited to what this process may set.
    pub oom_score_adj: Option<i64>,
    pub host_has_apparmor: bool,
    /// Resolved CDI edits, applied last (`runtime/cdi.rs`).
    pub cdi: Option<&'a [cdi::ContainerEdits]>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(transparent)]
    Security(#[from] SecurityError),
    #[error("{0}")]
    Invalid(String),
    #[error("the generated OCI spec does not parse: {0}")]
    Oci(String),
}

const MOUNT_DEFAULTS: [&str; 3] = ["nosuid", "noexec", "nodev"];

/// Builds the OCI spec.
pub fn build(input: &SpecInput<'_>) -> Result<oci_spec::runtime::Spec, SpecError> {
    let spec = input.spec;
    let sec = &spec.security;
    let privileged = sec.privileged;

    let caps = security::capabilities(&sec.add_capabilities, &sec.drop_capabilities, privileged)?;
    let seccomp = security::seccomp(&sec.seccomp, privileged, &caps)?;
    let apparmor = security::apparmor(sec.apparmor.as_ref(), input.host_has_apparmor, privileged)?;

    let mut process = json!({
        "terminal": spec.tty,
        "user": {
            "uid": input.user.uid,
            "gid": input.user.gid,
            "additionalGids": input.user.additional_gids,
        },
        "args": input.args,
        "env": input.env,
        "cwd": input.cwd,
        "capabilities": security::linux_capabilities(&caps)?,
    });
    // libcontainer tests `noNewPrivileges.is_some()`, not its value: an
    // explicit `false` would make it load seccomp after dropping
    // CAP_SYS_ADMIN without no_new_privs, which the kernel refuses. So the
    // field is present only when true (absent means false in the OCI spec).
    if sec.no_new_privs {
        process["noNewPrivileges"] = json!(true);
    }
    if let Some(adj) = input.oom_score_adj {
        process["oomScoreAdj"] = json!(adj);
    }
    if let Some(profile) = apparmor {
        process["apparmorProfile"] = json!(profile);
    }

    let mut linux = json!({
        "namespaces": namespaces(input)?,
        "cgroupsPath": input.cgroup_path,
        "resources": resources(&spec.resources, input.cgroup_v2)?,
    });
    if privileged {
        let (devices, rules) = security::privileged_devices()?;
        linux["devices"] = json!(devices);
        linux["resources"]["devices"] = json!(rules);
    } else {
        let mut devices = Vec::new();
        let mut rules = security::default_device_rules();
        for d in &spec.devices {
            let (nodes, allow) =
                security::host_devices(&d.host_path, &d.container_path, &d.permissions)?;
            devices.extend(nodes);
            rules.extend(allow);
        }
        linux["devices"] = json!(devices);
        linux["resources"]["devices"] = json!(rules);
        let masked: Vec<String> = if sec.masked_paths.is_empty() {
            security::DEFAULT_MASKED_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            sec.masked_paths.clone()
        };
        let readonly: Vec<String> = if sec.readonly_paths.is_empty() {
            security::DEFAULT_READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            sec.readonly_paths.clone()
        };
        linux["maskedPaths"] = json!(masked);
        linux["readonlyPaths"] = json!(readonly);
    }
    // Propagation to or from the host needs a rootfs mount that is not
    // private (containerd sets the same). The OCI values, not runc's
    // `rshared`/`rslave`: libcontainer refuses those (and applies these
    // recursively); runc accepts both. libcontainer 0.7 also ignores the
    // per-mount propagation options (its bind mounts keep the propagation
    // of their source in the container's namespace, rslave by default), so
    // without propagating mounts the tree is made private: CRI's PRIVATE.
    let props = spec.mounts.iter().map(|m| m.propagation);
    if props.clone().any(|p| p == Propagation::Bidirectional) {
        linux["rootfsPropagation"] = json!("shared");
    } else if props.clone().any(|p| p == Propagation::HostToContainer) {
        linux["rootfsPropagation"] = json!("slave");
    } else {
        linux["rootfsPropagation"] = json!("private");
    }
    if let Some(s) = seccomp {
        linux["seccomp"] = serde_json::to_value(s).map_err(|e| SpecError::Oci(e.to_string()))?;
    }

    let mut doc = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": { "path": "rootfs", "readonly": sec.readonly_rootfs },
        "mounts": mounts(input)?,
        "linux": linux,
        "annotations": spec.annotations,
    });
    if let Some(edits) = input.cdi {
        cdi::apply(&mut doc, edits);
    }
    serde_json::from_value(doc).map_err(|e| SpecError::Oci(e.to_string()))
}

fn ns(kind: &str, path: Option<&Path>) -> Value {
    match path {
        Some(p) => json!({"type": kind, "path": p}),
        None => json!({"type": kind}),
    }
}

fn namespaces(input: &SpecInput<'_>) -> Result<Vec<Value>, SpecError> {
    let pinned = &input.pod.pinned;
    // Joined pod namespaces; a host namespace (NODE) is simply not listed.
    let mut out = vec![ns("mount", None)];
    out.extend(user_namespace(input.pod));
    if let Some(p) = &pinned.net {
        out.push(ns("network", Some(p)));
    }
    if let Some(p) = &pinned.ipc {
        out.push(ns("ipc", Some(p)));
    }
    if let Some(p) = &pinned.uts {
        out.push(ns("uts", Some(p)));
    }
    match input.spec.security.pid {
        NsMode::Container => out.push(ns("pid", None)),
        NsMode::Node => {}
        NsMode::Pod => match &pinned.pid {
            Some(p) => out.push(ns("pid", Some(p))),
            // The pod has no shared PID namespace: each container its own.
            None => out.push(ns("pid", None)),
        },
        NsMode::Target => {
            let pid = input.target_pid.ok_or_else(|| {
                SpecError::Invalid(format!(
                    "namespace_options.target_id {:?} names no running container of this pod",
                    input.spec.security.target_id
                ))
            })?;
            out.push(ns("pid", Some(Path::new(&format!("/proc/{pid}/ns/pid")))));
        }
    }
    if input.cgroup_v2 {
        out.push(ns("cgroup", None));
    }
    Ok(out)
}

/// The pod's user namespace (`runtime/userns.rs`), joined by path. The
/// executor joins it before the others, which the pod's pinns created
/// inside it. No `uidMappings`/`gidMappings`: they describe a namespace
/// the runtime creates, and libcontainer 0.7 reads none when joining.
fn user_namespace(pod: &SandboxRecord) -> Option<Value> {
    pod.pinned.user.as_deref().map(|p| ns("user", Some(p)))
}

/// Whether the container gets a PID namespace of its own.
pub fn own_pid_ns(spec: &ContainerSpec, pod: &SandboxRecord) -> bool {
    match spec.security.pid {
        NsMode::Container => true,
        NsMode::Pod => pod.pinned.pid.is_none(),
        NsMode::Node | NsMode::Target => false,
    }
}

fn mounts(input: &SpecInput<'_>) -> Result<Vec<Value>, SpecError> {
    let spec = input.spec;
    let privileged = spec.security.privileged;
    let user_dests: Vec<&str> = spec
        .mounts
        .iter()
        .map(|m| m.container_path.trim_end_matches('/'))
        .collect();
    let taken = |dest: &str| user_dests.contains(&dest);
    let mut out = Vec::new();
    let mut add = |dest: &str, kind: &str, source: &str, options: Vec<&str>| {
        if !taken(dest) {
            out.push(
                json!({"destination": dest, "type": kind, "source": source, "options": options}),
            );
        }
    };
    add("/proc", "proc", "proc", MOUNT_DEFAULTS.to_vec());
    add(
        "/dev",
        "tmpfs",
        "tmpfs",
        vec!["nosuid", "strictatime", "mode=755", "size=65536k"],
    );
    add(
        "/dev/pts",
        "devpts",
        "devpts",
        vec![
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ],
    );
    add("/dev/mqueue", "mqueue", "mqueue", MOUNT_DEFAULTS.to_vec());
    let ro_unless_privileged = |mut o: Vec<&'static str>| {
        o.push(if privileged { "rw" } else { "ro" });
        o
    };
    add(
        "/sys",
        "sysfs",
        "sysfs",
        ro_unless_privileged(MOUNT_DEFAULTS.to_vec()),
    );
    if input.cgroup_v2 {
        add(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            ro_unless_privileged(vec!["nosuid", "noexec", "nodev", "relatime"]),
        );
    } else {
        // cgroup v1: libcontainer 0.7 builds the per-controller view from
        // /proc/<its parent>, which has often exited by then, so container
        // starts failed at random ("procfs … NotFound"). Until that is
        // fixed, v1 containers get an empty read-only /sys/fs/cgroup.
        add(
            "/sys/fs/cgroup",
            "tmpfs",
            "tmpfs",
            vec!["nosuid", "noexec", "nodev", "mode=755", "size=4k", "ro"],
        );
    }
    // The pod's files; read-only when the rootfs is (as containerd).
    let rw = if spec.security.readonly_rootfs {
        "ro"
    } else {
        "rw"
    };
    for (dest, file) in [
        ("/etc/hostname", "hostname"),
        ("/etc/resolv.conf", "resolv.conf"),
        ("/etc/hosts", "hosts"),
    ] {
        let src = input.pod_dir.join(file);
        if src.exists() {
            let src = src.display().to_string();
            add(dest, "bind", &src, vec!["rbind", "rprivate", rw]);
        }
    }
    let shm = match &input.pod.shm {
        Some(p) => p.display().to_string(),
        // Host IPC: the host's /dev/shm.
        None => "/dev/shm".to_owned(),
    };
    add(
        "/dev/shm",
        "bind",
        &shm,
        vec!["rbind", "rprivate", "nosuid", "nodev", "noexec", "rw"],
    );

    // CRI mounts, parents before children (containerd sorts the same way).
    let mut user: Vec<_> = spec.mounts.iter().collect();
    user.sort_by_key(|m| Path::new(&m.container_path).components().count());
    for m in user {
        let mut options = vec!["rbind"];
        options.push(match m.propagation {
            Propagation::Private => "rprivate",
            Propagation::HostToContainer => "rslave",
            Propagation::Bidirectional => "rshared",
        });
        options.push(if m.readonly { "ro" } else { "rw" });
        if m.recursive_read_only {
            options.push("rro");
        }
        out.push(json!({
            "destination": m.container_path,
            "type": "bind",
            "source": m.host_path,
            "options": options,
        }));
    }
    Ok(out)
}

/// CRI resources → OCI `linux.resources` (without devices).
pub fn resources(r: &ContainerResources, v2: bool) -> Result<Value, SpecError> {
    let mut out = json!({});
    let mut memory = json!({});
    if r.memory_limit_in_bytes > 0 {
        memory["limit"] = json!(r.memory_limit_in_bytes);
    }
    if r.memory_swap_limit_in_bytes > 0 {
        memory["swap"] = json!(r.memory_swap_limit_in_bytes);
    }
    if memory.as_object().is_some_and(|o| !o.is_empty()) {
        out["memory"] = memory;
    }
    let mut cpu = json!({});
    if r.cpu_shares > 0 {
        cpu["shares"] = json!(r.cpu_shares);
    }
    if r.cpu_quota != 0 {
        cpu["quota"] = json!(r.cpu_quota);
    }
    if r.cpu_period > 0 {
        cpu["period"] = json!(r.cpu_period);
    }
    if !r.cpuset_cpus.is_empty() {
        cpu["cpus"] = json!(r.cpuset_cpus);
    }
    if !r.cpuset_mems.is_empty() {
        cpu["mems"] = json!(r.cpuset_mems);
    }
    if cpu.as_object().is_some_and(|o| !o.is_empty()) {
        out["cpu"] = cpu;
    }
    if !r.hugepage_limits.is_empty() {
        out["hugepageLimits"] = json!(
            r.hugepage_limits
                .iter()
                .map(|(size, limit)| json!({"pageSize": size, "limit": limit}))
                .collect::<Vec<_>>()
        );
    }
    if !r.unified.is_empty() {
        if !v2 {
            return Err(SpecError::Invalid(
                "resources.unified needs cgroup v2; this node runs cgroup v1".to_owned(),
            ));
        }
        out["unified"] = json!(r.unified);
    }
    Ok(out)
}

/// `oom_score_adj` as this process may set it: without CAP_SYS_RESOURCE a
/// value below our own is refused by the kernel, so it is raised to ours
/// (containerd's `restrict_oom_score_adj`). Returns (value, clamped).
pub fn restrict_oom_score_adj(requested: i64, own: i64, can_lower: bool) -> (i64, bool) {
    let requested = requested.clamp(-1000, 1000);
    if !can_lower && requested < own {
        (own, true)
    } else {
        (requested, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_score_adj_is_raised_to_our_own_without_cap_sys_resource() {
        assert_eq!(restrict_oom_score_adj(-998, 0, false), (0, true));
        assert_eq!(restrict_oom_score_adj(-998, 0, true), (-998, false));
        assert_eq!(restrict_oom_score_adj(1000, 0, false), (1000, false));
        assert_eq!(restrict_oom_score_adj(5000, 0, false), (1000, false));
    }

    #[test]
    fn resources_map_cri_fields_and_refuse_unified_on_v1() {
        let r = ContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 64 << 20,
            cpuset_cpus: "0".into(),
            hugepage_limits: vec![("2MB".into(), 0)],
            ..Default::default()
        };
        let v = resources(&r, false).unwrap();
        assert_eq!(v["cpu"]["quota"], 50_000);
        assert_eq!(v["cpu"]["period"], 100_000);
        assert_eq!(v["cpu"]["shares"], 512);
        assert_eq!(v["memory"]["limit"], 64 << 20);
        assert_eq!(v["hugepageLimits"][0]["pageSize"], "2MB");
        let unified = ContainerResources {
            unified: [("memory.high".to_string(), "1M".to_string())].into(),
            ..Default::default()
        };
        assert!(resources(&unified, false).is_err());
        assert_eq!(
            resources(&unified, true).unwrap()["unified"]["memory.high"],
            "1M"
        );
    }
}
