//! Mounts a read-only overlay of layer directories, the way a container
//! rootfs will see them, so tests check whiteouts by their effect rather than
//! by the on-disk encoding. Needs root; unmounted on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

#[derive(Debug)]
pub struct OverlayMount {
    target: TempDir,
}

impl OverlayMount {
    /// `lowers` bottom first (image layer order); overlayfs wants top first.
    pub fn new(lowers: &[PathBuf]) -> OverlayMount {
        assert!(
            lowers.len() >= 2,
            "an overlay without upperdir needs two lowerdirs"
        );
        let target = tempfile::Builder::new()
            .prefix("crius-overlay-")
            .tempdir()
            .expect("overlay mountpoint");
        let lowerdir: Vec<String> = lowers
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        let out = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!("ro,lowerdir={}", lowerdir.join(":")))
            .arg(target.path())
            .output()
            .expect("running mount(8)");
        assert!(
            out.status.success(),
            "mounting an overlay of the layer dirs failed (needs root and overlayfs): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        OverlayMount { target }
    }

    pub fn path(&self) -> &Path {
        self.target.path()
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.target.path()).status();
    }
}
