//! Image volumes (CRI `Mount.image`, KEP-4639): an image kubelet already
//! pulled, mounted read-only at a container path from its layers.
//!
//! At CreateContainer each image mount is resolved and its layers pinned
//! (`ImageManager::use_layers`, the same hold a rootfs has), and the record
//! keeps what it resolved to (`ContainerRecord::image_volumes`), so the
//! layers stay pinned across daemon restarts (`stored_layer_pins`) and a
//! RemoveImage meanwhile drops only the image record (as containerd): the
//! layers go when the last container using them is removed.
//!
//! Each volume is an overlay of the layers at `<bundle>/image-volumes/<n>`
//! with a scratch upper dir under the container's writable-layer dir, and
//! the container gets a read-only bind of it. The scratch upper means the
//! image's layer dirs are never written even by a privileged container
//! that remounts the bind read-write. Detached by `remove_container_files`.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use super::{ContainerError, ContainerManager};
use crate::id::ChainId;
use crate::runtime::container::{ContainerSpec, ImageVolume, Propagation};
use crate::runtime::userns;
use crate::sys::mount;

/// The bundle's dir of image volume mounts.
pub(super) const IMAGE_VOLUMES: &str = "image-volumes";

/// The layers a container holds: its rootfs's and its image volumes'.
pub(super) fn all_layers<'a>(
    rootfs: &[ChainId],
    volumes: impl IntoIterator<Item = &'a ImageVolume>,
) -> Vec<ChainId> {
    rootfs
        .iter()
        .chain(volumes.into_iter().flat_map(|v| v.chain_ids.iter()))
        .cloned()
        .collect()
}

impl ContainerManager {
    /// Resolves every image mount of `spec` and pins its layers; returns
    /// each volume with its layer dirs (bottom first), in mount order. On
    /// error nothing stays pinned.
    pub(super) async fn pin_image_volumes(
        &self,
        spec: &ContainerSpec,
    ) -> Result<Vec<(ImageVolume, Vec<PathBuf>)>, ContainerError> {
        let mut out: Vec<(ImageVolume, Vec<PathBuf>)> = Vec::new();
        match self.pin_each(spec, &mut out) {
            Ok(()) => Ok(out),
            Err(e) => {
                let chains = all_layers(&[], out.iter().map(|(v, _)| v));
                self.inner.images.release_layers(&chains).await;
                Err(e)
            }
        }
    }

    fn pin_each(
        &self,
        spec: &ContainerSpec,
        out: &mut Vec<(ImageVolume, Vec<PathBuf>)>,
    ) -> Result<(), ContainerError> {
        for m in spec.mounts.iter().filter(|m| !m.image.is_empty()) {
            let fail = |e: &dyn std::fmt::Display| {
                ContainerError::Invalid(format!(
                    "mount {}: image volume {:?}: {e}",
                    m.container_path, m.image
                ))
            };
            let image_id = self
                .inner
                .images
                .resolve(&m.image)
                .map_err(|e| fail(&e))?
                .ok_or_else(|| fail(&"the image is not present on this node; pull it first"))?;
            let (rec, dirs) = self
                .inner
                .images
                .use_layers(&image_id)
                .map_err(|e| fail(&e))?;
            out.push((
                ImageVolume {
                    container_path: m.container_path.clone(),
                    image: m.image.clone(),
                    image_id,
                    chain_ids: rec.chain_ids,
                },
                dirs,
            ));
        }
        Ok(())
    }
}

/// A user namespace pod's pinned namespace and the host uid/gid of its
/// root.
pub(super) type PodUserns<'a> = (&'a Path, (u32, u32));

/// Blocking: mounts each image volume under `<bundle>/image-volumes/<n>`
/// (scratch dirs in `<writable>/volumes/<n>`) and returns `spec` with those
/// mounts' host paths pointing there, read-only and private (None: `spec`
/// has no image volume). In a user namespace pod the overlay's lower dirs
/// are id-mapped clones of the layers, as the rootfs's are (overlayfs
/// itself cannot be id-mapped), and the scratch dirs are the pod root's:
/// the image's files keep their owners inside the pod.
pub(super) fn mount_image_volumes(
    bundle: &Path,
    writable: &Path,
    spec: &ContainerSpec,
    volumes: &[(ImageVolume, Vec<PathBuf>)],
    userns: Option<PodUserns<'_>>,
) -> Result<Option<ContainerSpec>, String> {
    if volumes.is_empty() {
        return Ok(None);
    }
    let mk = |d: &Path, mode: u32| {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(d)
            .map_err(|e| format!("{}: {e}", d.display()))
    };
    let mut out = spec.clone();
    let mut next = volumes.iter().enumerate();
    for m in out.mounts.iter_mut().filter(|m| !m.image.is_empty()) {
        let Some((n, (vol, layers))) = next.next() else {
            return Err(format!(
                "mount {}: image volume not resolved",
                m.container_path
            ));
        };
        let target = bundle.join(IMAGE_VOLUMES).join(n.to_string());
        let scratch = writable.join("volumes").join(n.to_string());
        mk(&target, 0o755)?;
        mk(&scratch.join("upper"), 0o755)?;
        mk(&scratch.join("work"), 0o700)?;
        let failed = |e: &dyn std::fmt::Display| {
            format!(
                "mount {}: image {:?} ({}): {e}",
                m.container_path, vol.image, vol.image_id
            )
        };
        let mut lowers: Vec<&Path> = layers.iter().map(PathBuf::as_path).collect();
        let mut mapped = Vec::new();
        if let Some((ns, root)) = userns {
            userns::own_upper(&scratch.join("upper"), &scratch.join("work"), root)
                .map_err(|e| failed(&e))?;
            let dir = bundle
                .join(super::STAGED_MOUNTS)
                .join(format!("volume-{n}"));
            mapped = userns::idmap_layers(&lowers, &dir, ns).map_err(|e| failed(&e))?;
            lowers = mapped.iter().map(PathBuf::as_path).collect();
        }
        let mounted = mount::mount_overlay(
            &lowers,
            &scratch.join("upper"),
            &scratch.join("work"),
            &target,
        );
        // The overlay holds its own reference to each id-mapped layer.
        userns::release_layers(&mapped);
        mounted.map_err(|e| failed(&e))?;
        m.host_path = target.display().to_string();
        m.readonly = true;
        m.propagation = Propagation::Private;
    }
    Ok(Some(out))
}
