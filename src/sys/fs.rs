//! Path handling inside a container's rootfs: every lookup is resolved as
//! if the rootfs were `/` (`openat2` with `RESOLVE_IN_ROOT`), so a symlink
//! in an image (`/etc -> /host/etc`, `/data -> ../../..`) can never lead a
//! runtime operation out of the rootfs (CVE-2021-30465 class).

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat2};
use nix::sys::stat::{Mode, mkdirat};

fn in_root() -> ResolveFlag {
    ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

fn open_dir_in(root: &OwnedFd, rel: &Path) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(in_root());
    openat2(
        root,
        if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        },
        how,
    )
}

/// Creates directory `path` (absolute, as seen in the container) and its
/// missing parents inside `rootfs`, mode 0755, resolving each component
/// inside the rootfs. An existing non-directory on the way is an error.
pub fn mkdir_all_in_root(rootfs: &Path, path: &Path) -> io::Result<()> {
    let root = open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut rel = std::path::PathBuf::new();
    for c in path.components() {
        let Component::Normal(name) = c else {
            continue;
        };
        let parent = open_dir_in(&root, &rel)?;
        rel.push(name);
        match mkdirat(&parent, name, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
        // Whatever is there now must be a directory inside the rootfs.
        open_dir_in(&root, &rel).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!(
                    "{} is not a directory inside the container ({e})",
                    rel.display()
                ),
            )
        })?;
    }
    Ok(())
}
