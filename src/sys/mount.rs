//! Mounts the runtime makes on the host: the pod's /dev/shm tmpfs, container
//! rootfs overlays, staged CRI bind mounts.

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

/// Mounts an overlayfs at `target`: `lowers` bottom layer first (as image
/// chain ids are stored), a writable `upper` and its `work` dir.
///
/// The lower dirs are opened `O_PATH` and named `/proc/self/fd/<n>` in the
/// options, so an image with many layers (up to ~200) fits in the one page
/// the kernel accepts for mount data, without a `chdir` (process-wide in
/// this multi-threaded daemon) or symlink farms.
pub fn mount_overlay(lowers: &[&Path], upper: &Path, work: &Path, target: &Path) -> io::Result<()> {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;
    use std::os::fd::AsRawFd;
    let fds = lowers
        .iter()
        .rev()
        .map(|p| {
            open(
                *p,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let lowerdir = fds
        .iter()
        .map(|fd| format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .collect::<Vec<_>>()
        .join(":");
    let data = format!(
        "lowerdir={lowerdir},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    if data.len() >= 4096 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} image layers are more than one overlay mount can stack",
                lowers.len()
            ),
        ));
    }
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(io::Error::from)
}

/// Bind-mounts the file `src` read-only onto `dst` (created empty when
/// missing). Used for the copy of the crius binary that monitors run from:
/// a container that reaches it through `/proc/<pid>/exe` cannot open it for
/// writing (EROFS), which closes runc's CVE-2019-5736 for us.
pub fn bind_file_readonly(src: &Path, dst: &Path) -> io::Result<()> {
    if !dst.exists() {
        std::fs::File::create(dst)?;
    }
    let _ = unmount(dst);
    nix::mount::mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
    nix::mount::mount(
        None::<&str>,
        dst,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(io::Error::from)
}

/// Bind-mounts `src` and everything mounted below it at `dst` (created: a
/// directory, or an empty file when `src` is not a directory), then makes
/// the new tree rslave (`slave`) or rprivate. For CRI mounts whose
/// propagation differs from the container's rootfs: libcontainer 0.7
/// ignores per-mount propagation options, so its bind mounts keep the
/// propagation their source has, and the source is this staged copy.
pub fn bind_staged(src: &Path, dst: &Path, slave: bool) -> io::Result<()> {
    if std::fs::metadata(src)?.is_dir() {
        match std::fs::DirBuilder::new().mode(0o700).create(dst) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    } else if !dst.exists() {
        std::fs::File::create(dst)?;
    }
    nix::mount::mount(
        Some(src),
        dst,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )?;
    let flag = if slave {
        MsFlags::MS_SLAVE
    } else {
        MsFlags::MS_PRIVATE
    };
    if let Err(e) = nix::mount::mount(
        None::<&str>,
        dst,
        None::<&str>,
        flag | MsFlags::MS_REC,
        None::<&str>,
    ) {
        let _ = unmount(dst);
        return Err(e.into());
    }
    Ok(())
}

/// Detaches the staged mounts in `dir` (see [`bind_staged`]); a missing dir
/// is fine. An error means one may still be mounted: the caller must not
/// delete `dir`, which would delete host files through it.
pub fn unmount_staged(dir: &Path) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in entries {
        let path = e?.path();
        // Detach until nothing is left mounted there (EINVAL).
        let mut clear = false;
        for _ in 0..16 {
            match nix::mount::umount2(&path, MntFlags::MNT_DETACH) {
                Ok(()) => {}
                Err(Errno::EINVAL) | Err(Errno::ENOENT) => {
                    clear = true;
                    break;
                }
                Err(e) => {
                    return Err(io::Error::new(
                        io::Error::from(e).kind(),
                        format!("unmounting {}: {e}", path.display()),
                    ));
                }
            }
        }
        if !clear {
            return Err(io::Error::other(format!(
                "{} is still mounted",
                path.display()
            )));
        }
    }
    Ok(())
}
