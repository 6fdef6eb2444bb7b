//! Content-addressed blob store for manifests, indexes and image configs.
//!
//! Layer blobs are not kept: they are unpacked while they stream (see
//! `layers`), which halves disk writes per pull, as CRI-O does. Every blob is
//! verified before it lands, written to a temp file in the state dir's `tmp/`
//! and renamed into place, so a crash never leaves a partial blob under its
//! digest.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::id::Digest;

#[derive(Debug, Clone)]
pub struct ContentStore {
    dir: PathBuf,
    tmp: PathBuf,
}

impl ContentStore {
    /// `dir` holds blobs as `<dir>/sha256/<hex>`; `tmp` is on the same
    /// filesystem and is wiped at start-up.
    pub fn new(dir: PathBuf, tmp: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.join("sha256"))?;
        std::fs::create_dir_all(&tmp)?;
        Ok(Self { dir, tmp })
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.dir.join("sha256").join(d.hex())
    }

    /// Stores `data` under `d`. The caller has verified the digest.
    pub fn put(&self, d: &Digest, data: &[u8]) -> std::io::Result<()> {
        let target = self.path(d);
        if target.exists() {
            return Ok(());
        }
        let mut f = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&self.tmp)?;
        f.write_all(data)?;
        f.as_file().sync_all()?;
        f.persist(&target).map_err(|e| e.error)?;
        Ok(())
    }

    pub fn get(&self, d: &Digest) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.path(d))
    }

    pub fn delete(&self, d: &Digest) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(d)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every stored digest and its size (for GC and ImageFsInfo).
    pub fn list(&self) -> std::io::Result<Vec<(Digest, u64)>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.dir.join("sha256"))? {
            let e = e?;
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Ok(d) = Digest::parse(&format!("sha256:{name}")) {
                out.push((d, e.metadata()?.len()));
            }
        }
        Ok(out)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_delete() {
        let t = tempfile::tempdir().unwrap();
        let cs = ContentStore::new(t.path().join("blobs"), t.path().join("tmp")).unwrap();
        let d = Digest::of(b"hello");
        cs.put(&d, b"hello").unwrap();
        cs.put(&d, b"hello").unwrap();
        assert_eq!(cs.get(&d).unwrap(), b"hello");
        assert_eq!(cs.list().unwrap(), vec![(d.clone(), 5)]);
        cs.delete(&d).unwrap();
        cs.delete(&d).unwrap();
        assert!(cs.list().unwrap().is_empty());
        assert_eq!(std::fs::read_dir(t.path().join("tmp")).unwrap().count(), 0);
    }
}
