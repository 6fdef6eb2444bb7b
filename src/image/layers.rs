//! Unpacked layers, one directory per chain id, shared by every image (and
//! later every container rootfs) that stacks the same layers.
//!
//! A layer is downloaded, hashed, decompressed, hashed again and unpacked in
//! one pass into a temp dir; only when both the blob digest and the diff_id
//! match is the dir renamed to `<dir>/<chain id hex>`. So a layer dir that
//! exists is always complete and verified, and a crash leaves only temp dirs,
//! which start-up removes.

use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::unpack::{self, LayerStats, UnpackError};
use crate::id::{ChainId, Digest};

/// What a layer must turn out to be.
#[derive(Debug, Clone)]
pub struct LayerExpect {
    /// Digest of the (compressed) blob, from the manifest.
    pub digest: Digest,
    /// Size of the blob, from the manifest.
    pub size: u64,
    /// Digest of the uncompressed tar, from the image config.
    pub diff_id: Digest,
    pub chain_id: ChainId,
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(
        "layer {layer}: downloaded content has digest {actual}, not the digest the manifest names"
    )]
    DigestMismatch { layer: Digest, actual: Digest },
    #[error("layer {layer}: the manifest says {expected} bytes but the registry sent {actual}{more}", more = if *.more { " or more" } else { "" })]
    SizeMismatch {
        layer: Digest,
        expected: u64,
        actual: u64,
        more: bool,
    },
    #[error(
        "layer {layer}: uncompressed content has digest {actual}, but the image config's diff_id is {expected}"
    )]
    DiffIdMismatch {
        layer: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("layer {layer}: refused: {source}")]
    Unpack { layer: Digest, source: UnpackError },
    #[error("layer {layer}: download failed: {source}")]
    Download { layer: Digest, source: io::Error },
    #[error("layer {layer}: {context}: {source}")]
    Io {
        layer: Digest,
        context: String,
        source: io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct LayerStore {
    dir: PathBuf,
    tmp: PathBuf,
}

impl LayerStore {
    pub fn new(dir: PathBuf, tmp: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        std::fs::create_dir_all(&tmp)?;
        Ok(Self { dir, tmp })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, chain: &ChainId) -> PathBuf {
        self.dir.join(chain.hex())
    }

    /// Blocking. Reads a layer blob from `blob`, verifies it against `want`
    /// and unpacks it to `path(want.chain_id)`. Any failure leaves nothing
    /// behind.
    pub fn unpack_verified(
        &self,
        blob: impl Read,
        want: &LayerExpect,
    ) -> Result<LayerStats, LayerError> {
        let io_err = |context: &str| {
            let layer = want.digest.clone();
            let context = context.to_owned();
            move |source| LayerError::Io {
                layer,
                context,
                source,
            }
        };
        let tmp = tempfile::Builder::new()
            .prefix("layer-")
            .tempdir_in(&self.tmp)
            .map_err(io_err("creating temp dir"))?;
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .map_err(io_err("setting temp dir mode"))?;

        // One byte over the declared size is enough to know the registry lies;
        // reading on would let a hostile registry fill the disk.
        let mut compressed = Hashing::new(blob, want.size.saturating_add(1));
        let result = unpack_stream(&mut compressed, tmp.path());
        // Drain what the decompressor did not need, so the blob digest covers
        // every byte; on an unpack error this tells a corrupted download
        // (report the digest) from a hostile but intact layer (report the entry).
        let drained = io::copy(&mut compressed, &mut io::sink());
        let (actual, n) = compressed.finish();
        if n != want.size {
            return Err(LayerError::SizeMismatch {
                layer: want.digest.clone(),
                expected: want.size,
                actual: n,
                more: n > want.size,
            });
        }
        if actual != want.digest {
            return Err(LayerError::DigestMismatch {
                layer: want.digest.clone(),
                actual,
            });
        }
        if let Err(source) = drained {
            return Err(LayerError::Download {
                layer: want.digest.clone(),
                source,
            });
        }
        let (stats, diff_id) = result.map_err(|e| match e {
            StreamError::Unpack(source) => LayerError::Unpack {
                layer: want.digest.clone(),
                source,
            },
            StreamError::Io(source) => LayerError::Download {
                layer: want.digest.clone(),
                source,
            },
        })?;
        if diff_id != want.diff_id {
            return Err(LayerError::DiffIdMismatch {
                layer: want.digest.clone(),
                expected: want.diff_id.clone(),
                actual: diff_id,
            });
        }
        let target = self.path(&want.chain_id);
        if target.exists() {
            // Another pull finished the same chain first; its copy is as good.
            return Ok(stats);
        }
        let kept = tmp.keep();
        if let Err(e) = std::fs::rename(&kept, &target) {
            let _ = std::fs::remove_dir_all(&kept);
            return Err(io_err("moving layer into place")(e));
        }
        Ok(stats)
    }

    /// Removes a layer dir (idempotent).
    pub fn remove(&self, chain: &ChainId) -> io::Result<()> {
        match std::fs::remove_dir_all(self.path(chain)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Names of the dirs present, for start-up GC.
    pub fn list(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            out.push(e?.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }
}

enum StreamError {
    Unpack(UnpackError),
    Io(io::Error),
}

fn unpack_stream(compressed: impl Read, dest: &Path) -> Result<(LayerStats, Digest), StreamError> {
    let mut buf = BufReader::with_capacity(64 * 1024, compressed);
    let head = buf.fill_buf().map_err(StreamError::Io)?;
    // Sniff instead of trusting the media type: registries and tools mislabel
    // layers, and both containerd and CRI-O sniff too.
    let decoder: Box<dyn Read + '_> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(buf))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(buf).map_err(StreamError::Io)?)
    } else {
        Box::new(buf)
    };
    let mut tar = Hashing::new(decoder, u64::MAX);
    let stats = unpack::apply_layer(&mut tar, dest).map_err(StreamError::Unpack)?;
    // The tar end marker may be followed by padding that the diff_id covers.
    io::copy(&mut tar, &mut io::sink()).map_err(StreamError::Io)?;
    let (diff_id, _) = tar.finish();
    Ok((stats, diff_id))
}

/// A reader that hashes what passes through and stops at a byte limit.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    n: u64,
    limit: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R, limit: u64) -> Self {
        Self {
            inner,
            hash: Sha256::new(),
            n: 0,
            limit,
        }
    }

    fn finish(self) -> (Digest, u64) {
        (Digest::from_hasher(self.hash), self.n)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = self.limit.saturating_sub(self.n);
        if room == 0 {
            return Ok(0);
        }
        let max = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let k = self.inner.read(&mut buf[..max])?;
        self.hash.update(&buf[..k]);
        self.n += k as u64;
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn layer_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "etc/hello", &b"hello"[..]).unwrap();
        b.into_inner().unwrap()
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn setup() -> (tempfile::TempDir, LayerStore) {
        let t = tempfile::tempdir().unwrap();
        let ls = LayerStore::new(t.path().join("layers"), t.path().join("tmp")).unwrap();
        (t, ls)
    }

    fn expect(blob: &[u8], tar: &[u8]) -> LayerExpect {
        let diff = Digest::of(tar);
        LayerExpect {
            digest: Digest::of(blob),
            size: blob.len() as u64,
            diff_id: diff.clone(),
            chain_id: diff,
        }
    }

    #[test]
    fn gzip_zstd_and_plain_unpack() {
        let tar = layer_tar();
        for blob in [
            gz(&tar),
            zstd::encode_all(&tar[..], 1).unwrap(),
            tar.clone(),
        ] {
            let (t, ls) = setup();
            let want = expect(&blob, &tar);
            ls.unpack_verified(&blob[..], &want).unwrap();
            let f = ls.path(&want.chain_id).join("etc/hello");
            assert_eq!(std::fs::read(f).unwrap(), b"hello");
            assert_eq!(std::fs::read_dir(t.path().join("tmp")).unwrap().count(), 0);
        }
    }

    #[test]
    fn corrupted_blob_reports_digest_and_leaves_nothing() {
        let (t, ls) = setup();
        let tar = layer_tar();
        let blob = gz(&tar);
        let want = expect(&blob, &tar);
        let mut bad = blob.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        let err = ls.unpack_verified(&bad[..], &want).unwrap_err();
        assert!(matches!(err, LayerError::DigestMismatch { .. }), "{err}");
        assert!(!ls.path(&want.chain_id).exists());
        assert_eq!(std::fs::read_dir(t.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn oversized_and_short_blobs_are_refused() {
        let (_t, ls) = setup();
        let tar = layer_tar();
        let blob = gz(&tar);
        let mut want = expect(&blob, &tar);
        want.size -= 1;
        assert!(matches!(
            ls.unpack_verified(&blob[..], &want).unwrap_err(),
            LayerError::SizeMismatch { more: true, .. }
        ));
        want.size += 2;
        assert!(matches!(
            ls.unpack_verified(&blob[..], &want).unwrap_err(),
            LayerError::SizeMismatch { more: false, .. }
        ));
    }

    #[test]
    fn wrong_diff_id_is_refused() {
        let (_t, ls) = setup();
        let tar = layer_tar();
        let blob = gz(&tar);
        let mut want = expect(&blob, &tar);
        want.diff_id = Digest::of(b"other");
        assert!(matches!(
            ls.unpack_verified(&blob[..], &want).unwrap_err(),
            LayerError::DiffIdMismatch { .. }
        ));
        assert!(!ls.path(&want.chain_id).exists());
    }
}
