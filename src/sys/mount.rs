//! Mounts the runtime makes on the host: the pod's /dev/shm tmpfs.

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

/// Mounts a tmpfs of `size` bytes at `path` (created if missing) for a pod's
/// /dev/shm: world-writable with the sticky bit, like a host's /dev/shm, and
/// nosuid/nodev/noexec as containerd mounts it.
pub fn mount_shm(path: &Path, size: u64) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o755).create(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let data = format!("mode=1777,size={size}");
    nix::mount::mount(
        Some("shm"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(data.as_str()),
    )
    .map_err(io::Error::from)
}

/// Detaches whatever is mounted at `path`; not mounted or missing is fine.
pub fn unmount(path: &Path) -> io::Result<()> {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
