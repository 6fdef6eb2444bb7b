//! User namespaces for pods (CRI `NamespaceOption.userns_options`, mode
//! POD, kubelet's `hostUsers: false`): the mapping rules, the kernel probe
//! `Status` reports, and the id-mapped mounts that present a container's
//! image layers and CRI volumes to the pod's user namespace.
//!
//! The namespace itself is made and pinned by `crius pinns`
//! (`sys/namespace.rs`, `<pod>/ns/user`), the other pod namespaces inside
//! it; containers join it by path (`container/spec.rs`). Like containerd
//! 2.x, the rootfs is an overlay whose lower dirs are id-mapped bind mounts
//! of the shared layer dirs (detached again once the overlay holds them),
//! with a fresh upper dir owned by the pod's mapped root: copy-up keeps the
//! mapped owners, and nothing is chowned. This module owns no syscalls
//! (those are in `sys/`) and no request parsing (that is `api/`).

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

pub use crate::sys::namespace::{IdMap, UserNs};

use crate::config::RuntimeConfig;
use crate::runtime::container::ContainerSpec;
use crate::runtime::sandbox::PodSpec;
use crate::sys::mount;

/// Most lines a uid_map/gid_map takes (Linux 4.15+).
pub const MAX_MAPS: usize = 340;

/// Why one side's mappings are invalid, or `Ok`.
pub fn check_maps(maps: &[IdMap]) -> Result<(), String> {
    if maps.is_empty() {
        return Err("mode POD needs at least one mapping".into());
    }
    if maps.len() > MAX_MAPS {
        return Err(format!(
            "{} mappings; the kernel takes at most {MAX_MAPS}",
            maps.len()
        ));
    }
    const LIMIT: u64 = 1 << 32;
    for (i, m) in maps.iter().enumerate() {
        if m.length == 0 {
            return Err(format!("mapping {i}: length is 0"));
        }
        for (side, start) in [("container_id", m.container_id), ("host_id", m.host_id)] {
            if u64::from(start) + u64::from(m.length) > LIMIT {
                return Err(format!(
                    "mapping {i}: {side} {start} + length {} exceeds the 32-bit id range",
                    m.length
                ));
            }
        }
    }
    for (side, start) in [
        (
            "container_id",
            (|m: &IdMap| m.container_id) as fn(&IdMap) -> u32,
        ),
        ("host_id", |m: &IdMap| m.host_id),
    ] {
        let mut ranges: Vec<(u64, u64, usize)> = maps
            .iter()
            .enumerate()
            .map(|(i, m)| {
                (
                    u64::from(start(m)),
                    u64::from(start(m)) + u64::from(m.length),
                    i,
                )
            })
            .collect();
        ranges.sort();
        for w in ranges.windows(2) {
            if w[1].0 < w[0].1 {
                return Err(format!(
                    "mappings {} and {} overlap on the {side} side",
                    w[0].2, w[1].2
                ));
            }
        }
    }
    Ok(())
}

/// Validates a pod's mappings; the error names the CRI field (`uids` or
/// `gids`) and says why.
pub fn validate(u: &UserNs) -> Result<(), (&'static str, String)> {
    for (what, maps) in [("uids", &u.uids), ("gids", &u.gids)] {
        check_maps(maps).map_err(|e| (what, e))?;
        if to_host(maps, 0).is_none() {
            return Err((
                what,
                "container id 0 is not mapped: the pod's root must be mapped".into(),
            ));
        }
    }
    Ok(())
}

/// The host id that `id` inside maps to.
pub fn to_host(maps: &[IdMap], id: u32) -> Option<u32> {
    maps.iter().find_map(|m| {
        let off = id.checked_sub(m.container_id)?;
        (off < m.length).then(|| m.host_id + off)
    })
}

/// The host uid and gid of the pod's root.
pub fn mapped_root(u: &UserNs) -> Option<(u32, u32)> {
    Some((to_host(&u.uids, 0)?, to_host(&u.gids, 0)?))
}

/// Whether this kernel can run user namespace pods: `mount_setattr(2)`
/// (id-mapped mounts, 5.12) and overlayfs over id-mapped lower layers
/// (5.19). Whether the filesystem holding the layers can id-map is only
/// known when a pod tries; that fails with a clear error.
pub fn kernel_supported() -> bool {
    kernel_at_least(5, 19) && crate::runtime::features::kernel_has_mount_setattr()
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let Ok(uts) = nix::sys::utsname::uname() else {
        return false;
    };
    let release = uts.release().to_string_lossy().into_owned();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// What the start-up probe found (see [`layer_store_idmaps`]): whether
/// the image layer store's filesystem can be id-mapped (tmpfs before Linux
/// 6.3, for one, cannot). Unset until the probe ran.
static LAYER_STORE_IDMAP: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();

/// Whether the layer store at `layers` can be id-mapped into the user
/// namespace pinned at `userns` (a throw-away one).
pub fn layer_store_idmaps(layers: &Path, userns: &Path) -> Result<(), String> {
    mount::can_idmap(layers, userns)
        .map_err(|e| format!("the image layer store {}: {e}", layers.display()))
}

/// Records the probe's answer for `Status` and RunPodSandbox (the first
/// answer stays).
pub fn record_layer_store_probe(r: Result<(), String>) {
    let _ = LAYER_STORE_IDMAP.set(r);
}

/// The probe's failure, if it failed.
fn layer_store_refusal() -> Option<&'static str> {
    LAYER_STORE_IDMAP.get()?.as_ref().err().map(String::as_str)
}

/// Whether the handler supports user namespace pods: only the built-in
/// runtime has been verified (external runtimes are not tested with a
/// pod user namespace and id-mapped mounts here), on a kernel that can and
/// a layer store that id-maps.
pub fn handler_supported(cfg: &RuntimeConfig, handler: &str) -> bool {
    matches!(cfg.handler(handler), Ok(None))
        && kernel_supported()
        && layer_store_refusal().is_none()
}

/// RunPodSandbox's check for a userns pod, before anything is made.
pub fn check_pod(spec: &PodSpec, cfg: &RuntimeConfig) -> Result<(), String> {
    if !matches!(cfg.handler(&spec.runtime_handler), Ok(None)) {
        return Err(format!(
            "runtime handler {:?} does not support user namespaces (only the built-in one does)",
            spec.runtime_handler
        ));
    }
    if !kernel_supported() {
        return Err(
            "this kernel cannot run user namespace pods: id-mapped mounts \
                    (mount_setattr, Linux 5.12) and overlayfs over id-mapped layers \
                    (Linux 5.19) are needed"
                .into(),
        );
    }
    if let Some(e) = layer_store_refusal() {
        return Err(format!(
            "this node cannot run user namespace pods: its image layers cannot be \
             id-mapped ({e})"
        ));
    }
    Ok(())
}

/// Id-maps each lower layer dir at `<dir>/layer-<n>` (bottom layer first,
/// as given). The caller mounts its overlay on the returned dirs and then
/// calls [`release_layers`]: the overlay keeps its own reference to each
/// layer mount.
pub fn idmap_layers(lowers: &[&Path], dir: &Path, userns: &Path) -> Result<Vec<PathBuf>, String> {
    make_dir(dir)?;
    let mut out = Vec::with_capacity(lowers.len());
    for (i, lower) in lowers.iter().enumerate() {
        let dst = dir.join(format!("layer-{i}"));
        if let Err(e) = mount::bind_idmapped(lower, &dst, userns, false) {
            release_layers(&out);
            return Err(format!("image layer {}: {e}", lower.display()));
        }
        out.push(dst);
    }
    Ok(out)
}

/// Detaches and removes the layer mounts of [`idmap_layers`]; best effort
/// (what is left is detached with the bundle's staged mounts).
pub fn release_layers(dirs: &[PathBuf]) {
    for d in dirs {
        if mount::unmount(d).is_ok() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Makes the fresh upper and work dirs the pod's root's, so the overlay's
/// root directory is root's inside the pod (the lower layers' files keep
/// their mapped owners through copy-up).
pub fn own_upper(upper: &Path, work: &Path, root: (u32, u32)) -> Result<(), String> {
    let (uid, gid) = (
        Some(nix::unistd::Uid::from_raw(root.0)),
        Some(nix::unistd::Gid::from_raw(root.1)),
    );
    for d in [upper, work] {
        nix::unistd::chown(d, uid, gid).map_err(|e| format!("chown {}: {e}", d.display()))?;
    }
    Ok(())
}

/// Id-mapped copies of the CRI mounts' host paths (recursive, at
/// `<dir>/idmap-<n>`), so what the pod's root writes there is owned on the
/// host by its mapped uid. Returns the spec with those sources (None when
/// there is no host-path mount). Image volumes are left as they are
/// (read-only overlays: overlayfs itself cannot be id-mapped). The mounts
/// are detached with the bundle's staged mounts when the container goes.
pub fn idmap_mounts(
    dir: &Path,
    spec: &ContainerSpec,
    userns: &Path,
) -> Result<Option<ContainerSpec>, String> {
    if spec.mounts.iter().all(|m| m.host_path.is_empty()) {
        return Ok(None);
    }
    make_dir(dir)?;
    let mut out = spec.clone();
    for (i, m) in out.mounts.iter_mut().enumerate() {
        if m.host_path.is_empty() || !m.image.is_empty() {
            continue;
        }
        let dst = dir.join(format!("idmap-{i}"));
        mount::bind_idmapped(Path::new(&m.host_path), &dst, userns, true)
            .map_err(|e| format!("mount {} from {}: {e}", m.container_path, m.host_path))?;
        m.host_path = dst.display().to_string();
    }
    Ok(Some(out))
}

/// Lets the pod's root reach the paths its runtime opens after joining the
/// user namespace (pinned namespaces, the rootfs, pod files, id-mapped
/// volumes): `dirs` get o+x (search, not read: names stay unlisted, and
/// every name below is a random id), and every directory above them must
/// already be searchable. The pod's root is an unmapped "other" to these
/// host-root dirs, and libcontainer 0.7 opens them only once inside the
/// namespace (containerd makes its state dirs 0711 for the same reason).
pub fn make_searchable(dirs: &[&Path]) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(first) = dirs.first() else {
        return Ok(());
    };
    for a in first.ancestors().skip(1) {
        if a.as_os_str().is_empty() {
            continue;
        }
        let mode = std::fs::metadata(a)
            .map_err(|e| format!("{}: {e}", a.display()))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            return Err(format!(
                "{} (mode {:o}) is not searchable by others; a user namespace pod's root \
                 must be able to reach {} (chmod o+x the directory)",
                a.display(),
                mode & 0o7777,
                first.display()
            ));
        }
    }
    for d in dirs {
        let meta = std::fs::symlink_metadata(d).map_err(|e| format!("{}: {e}", d.display()))?;
        let mode = meta.permissions().mode();
        if meta.is_dir() && mode & 0o001 == 0 {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode((mode | 0o001) & 0o7777))
                .map_err(|e| format!("chmod o+x {}: {e}", d.display()))?;
        }
    }
    Ok(())
}

fn make_dir(dir: &Path) -> Result<(), String> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(format!("{}: {e}", dir.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(container_id: u32, host_id: u32, length: u32) -> IdMap {
        IdMap {
            container_id,
            host_id,
            length,
        }
    }

    #[test]
    fn valid_mappings_pass_and_map_ids() {
        let u = UserNs {
            uids: vec![m(0, 100_000, 65_536)],
            gids: vec![m(0, 200_000, 1), m(1, 300_000, 10)],
        };
        validate(&u).unwrap();
        assert_eq!(mapped_root(&u), Some((100_000, 200_000)));
        assert_eq!(to_host(&u.gids, 5), Some(300_004));
        assert_eq!(to_host(&u.uids, 65_536), None);
    }

    #[test]
    fn bad_mappings_name_the_field() {
        let ok = vec![m(0, 100_000, 10)];
        let cases = [
            (vec![], ok.clone(), "uids", "at least one"),
            (ok.clone(), vec![m(0, 1, 0)], "gids", "length is 0"),
            (vec![m(0, u32::MAX, 2)], ok.clone(), "uids", "32-bit"),
            (vec![m(u32::MAX, 5, 2)], ok.clone(), "uids", "32-bit"),
            (
                vec![m(0, 100, 10), m(10, 105, 10)],
                ok.clone(),
                "uids",
                "overlap on the host_id side",
            ),
            (
                ok.clone(),
                vec![m(0, 100, 10), m(5, 500, 10)],
                "gids",
                "overlap on the container_id side",
            ),
            (
                vec![m(1, 100, 10)],
                ok.clone(),
                "uids",
                "id 0 is not mapped",
            ),
        ];
        for (uids, gids, field, why) in cases {
            let (f, e) = validate(&UserNs { uids, gids }).unwrap_err();
            assert_eq!(f, field, "{e}");
            assert!(e.contains(why), "{e:?} should say {why:?}");
        }
        // Adjacent ranges are fine; the full 32-bit range end is allowed.
        check_maps(&[m(0, 100, 10), m(10, 110, 10), m(20, u32::MAX - 9, 10)]).unwrap();
        assert!(check_maps(&vec![m(0, 0, 1); MAX_MAPS + 1]).is_err());
    }
}
