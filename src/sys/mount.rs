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
    if data.len() + ",volatile".len() >= 4096 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} image layers are more than one overlay mount can stack",
                lowers.len()
            ),
        ));
    }
    // `volatile` (Linux 5.10): the overlay never syncs its upper
    // filesystem. Without it, unmounting the overlay syncs the whole upper
    // filesystem (measured 8-92 ms per RemoveContainer on a busy disk), and
    // a container's writable layer is worth nothing after a host crash
    // anyway: containers never outlive a reboot, and crius never mounts an
    // upper dir twice (a volatile one cannot be). Older kernels refuse the
    // option: mount without it.
    let mount = |data: &str| {
        nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(data),
        )
    };
    match mount(&format!("{data},volatile")) {
        Err(nix::errno::Errno::EINVAL) => mount(&data),
        other => other,
    }
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

/// Creates `dst` as a mount point for `src`: a directory (0700) when `src`
/// is one, else an empty file; an existing `dst` is fine.
fn mount_point_like(src: &Path, dst: &Path) -> io::Result<()> {
    if std::fs::metadata(src)?.is_dir() {
        match std::fs::DirBuilder::new().mode(0o700).create(dst) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    } else if !dst.exists() {
        std::fs::File::create(dst)?;
    }
    Ok(())
}

/// Bind-mounts `src` and everything mounted below it at `dst` (created: a
/// directory, or an empty file when `src` is not a directory), then makes
/// the new tree rslave (`slave`) or rprivate. For CRI mounts whose
/// propagation differs from the container's rootfs: libcontainer 0.7
/// ignores per-mount propagation options, so its bind mounts keep the
/// propagation their source has, and the source is this staged copy.
pub fn bind_staged(src: &Path, dst: &Path, slave: bool) -> io::Result<()> {
    mount_point_like(src, dst)?;
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

/// Attaches at `dst` (created like [`bind_staged`]) an id-mapped clone of
/// the mount at `src` (`recursive`: with everything mounted below it): files
/// owned by host id H appear owned by the id that H maps to in the user
/// namespace pinned at `userns`, and files created through it by a process
/// of that namespace get the host ids the namespace maps them to. For user
/// namespace pods (`runtime/userns.rs`): their image layers and CRI
/// volumes, with no chowned copy. The kernel (5.12+) refuses with EINVAL
/// when the filesystem cannot id-map (FS_ALLOW_IDMAP) and EPERM when the
/// user namespace is the host's. Hand-written over libc: nix 0.30 has no
/// wrappers for `open_tree`, `mount_setattr` or `move_mount`.
pub fn bind_idmapped(src: &Path, dst: &Path, userns: &Path, recursive: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let c_dst = c_path(dst)?;
    let tree = idmapped_tree(src, userns, recursive)?;
    mount_point_like(src, dst)?;
    // SAFETY: move_mount reads the two NUL-terminated paths we own; the
    // tree descriptor is open.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c_dst.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("move_mount onto {}: {e}", dst.display()),
        ));
    }
    Ok(())
}

/// Whether the filesystem at `src` can be id-mapped into the user
/// namespace pinned at `userns`: [`bind_idmapped`]'s clone is made and
/// id-mapped, then dropped unattached (nothing is mounted).
pub fn can_idmap(src: &Path, userns: &Path) -> io::Result<()> {
    idmapped_tree(src, userns, false).map(drop)
}

fn c_path(p: &Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// A detached, id-mapped clone of the mount at `src` (dropped: unmounted).
fn idmapped_tree(src: &Path, userns: &Path, recursive: bool) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let c_src = c_path(src)?;
    let ns = std::fs::File::open(userns)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", userns.display())))?;
    let rec = if recursive {
        libc::AT_RECURSIVE as libc::c_uint
    } else {
        0
    };
    let step = |what: &str| {
        let e = io::Error::last_os_error();
        io::Error::new(e.kind(), format!("{what}: {e}"))
    };
    // SAFETY: open_tree reads the NUL-terminated path we own and returns a
    // new descriptor (or -1); no memory of ours is written.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c_src.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | rec,
        )
    };
    if fd < 0 {
        return Err(step(&format!("open_tree({})", src.display())));
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("open_tree: fd out of range"))?;
    // SAFETY: `fd` was just returned by open_tree and is owned by nobody else.
    let tree = unsafe { OwnedFd::from_raw_fd(fd) };
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: ns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr reads `attr` (ours, with its exact size) and the
    // empty NUL-terminated path; both outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | rec,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc < 0 {
        return Err(step(&format!(
            "id-mapping a mount of {} (mount_setattr MOUNT_ATTR_IDMAP; the filesystem or \
             kernel may not support id-mapped mounts)",
            src.display()
        )));
    }
    Ok(tree)
}

/// Undoes mountinfo's escapes: space, tab, newline and backslash appear
/// there as `\ooo` (octal); anything else, a malformed escape included, is
/// kept as it is.
pub fn mountinfo_unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|o| o.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|o| {
                let v = o.iter().fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
                u8::try_from(v).ok()
            });
        match (b[i], octal) {
            (b'\\', Some(v)) => {
                out.push(v);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_escapes_are_decoded_and_malformed_ones_kept() {
        for (field, want) in [
            ("/mnt/a\\040b\\134c", "/mnt/a b\\c"),
            ("/plain\\x", "/plain\\x"),
            ("/end\\04", "/end\\04"),
            ("/big\\777", "/big\\777"),
        ] {
            assert_eq!(super::mountinfo_unescape(field), want, "{field}");
        }
    }
}
