//! Builds image layers: tar archives written entry by entry, then compressed.
//!
//! Headers are written by hand rather than through `tar::Builder::append_data`
//! because the tests need exactly the names that builder refuses (`../x`,
//! `/abs`, links pointing outside): the daemon's unpacker is what must reject
//! them. Owns nothing outside the bytes it returns.

use std::io::Write;

use sha2::{Digest as _, Sha256};

/// Fixed mtime for every entry so a layer's digest depends on its content only.
pub const MTIME: u64 = 1_700_000_000;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

/// A finished layer blob.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The blob as pushed to the registry (compressed unless `Compression::None`).
    pub data: Vec<u8>,
    pub compression: Compression,
    /// `sha256:<hex>` of `data`: the blob digest in the manifest.
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar: the config's `rootfs.diff_ids` entry.
    pub diff_id: String,
}

impl Layer {
    /// Media type in an OCI image manifest.
    pub fn oci_media_type(&self) -> &'static str {
        match self.compression {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
        }
    }

    /// Media type in a Docker schema2 manifest. Docker has no zstd type of its
    /// own; images built by Docker with zstd carry the OCI one.
    pub fn docker_media_type(&self) -> &'static str {
        match self.compression {
            Compression::Gzip => "application/vnd.docker.image.rootfs.diff.tar.gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::None => "application/vnd.docker.image.rootfs.diff.tar",
        }
    }

    pub fn size(&self) -> usize {
        self.data.len()
    }

    /// Hex part of the blob digest.
    pub fn digest_hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

#[derive(Debug, Clone)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(Vec<u8>),
    Hardlink(Vec<u8>),
    Fifo,
    CharDevice(u32, u32),
}

#[derive(Debug, Clone)]
struct Entry {
    /// Raw header name, written as given (no normalisation, no checks).
    name: Vec<u8>,
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
}

/// Collects tar entries in order and writes them as one layer.
///
/// Paths are given the way `docker save` writes them: relative, no leading
/// `./` or `/` (`"bin/sh"`); directories need not be listed before their
/// children, but [`crate::common::busybox_layer`] lists them as real images do.
#[derive(Debug, Clone, Default)]
pub struct LayerBuilder {
    entries: Vec<Entry>,
}

impl LayerBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(mut self, name: &[u8], kind: Kind, mode: u32, uid: u64, gid: u64) -> Self {
        self.entries.push(Entry {
            name: name.to_vec(),
            kind,
            mode,
            uid,
            gid,
        });
        self
    }

    /// Regular file owned by root.
    pub fn file(self, path: &str, content: impl AsRef<[u8]>, mode: u32) -> Self {
        self.file_owned(path, content, mode, 0, 0)
    }

    /// Regular file with an owner.
    pub fn file_owned(
        self,
        path: &str,
        content: impl AsRef<[u8]>,
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> Self {
        let kind = Kind::File(content.as_ref().to_vec());
        self.push(path.as_bytes(), kind, mode, uid, gid)
    }

    pub fn dir(self, path: &str, mode: u32) -> Self {
        self.dir_owned(path, mode, 0, 0)
    }

    pub fn dir_owned(self, path: &str, mode: u32, uid: u64, gid: u64) -> Self {
        let name = format!("{}/", path.trim_end_matches('/'));
        self.push(name.as_bytes(), Kind::Dir, mode, uid, gid)
    }

    pub fn symlink(self, path: &str, target: &str) -> Self {
        let kind = Kind::Symlink(target.as_bytes().to_vec());
        self.push(path.as_bytes(), kind, 0o777, 0, 0)
    }

    /// Hard link `path` to `target` (a path inside the archive, as tar stores it).
    pub fn hardlink(self, path: &str, target: &str) -> Self {
        let kind = Kind::Hardlink(target.as_bytes().to_vec());
        self.push(path.as_bytes(), kind, 0o644, 0, 0)
    }

    pub fn fifo(self, path: &str, mode: u32) -> Self {
        self.push(path.as_bytes(), Kind::Fifo, mode, 0, 0)
    }

    pub fn char_device(self, path: &str, major: u32, minor: u32, mode: u32) -> Self {
        let kind = Kind::CharDevice(major, minor);
        self.push(path.as_bytes(), kind, mode, 0, 0)
    }

    /// OCI whiteout: deletes `path` (file or whole directory) of lower layers.
    pub fn whiteout(self, path: &str) -> Self {
        let (parent, name) = match path.trim_end_matches('/').rsplit_once('/') {
            Some((p, n)) => (format!("{p}/"), n),
            None => (String::new(), path.trim_end_matches('/')),
        };
        self.file(&format!("{parent}.wh.{name}"), b"", 0o644)
    }

    /// OCI opaque marker: hides everything lower layers have under `dir`.
    pub fn opaque(self, dir: &str) -> Self {
        let dir = dir.trim_end_matches('/');
        self.file(&format!("{dir}/.wh..wh..opq"), b"", 0o644)
    }

    /// A regular file whose header name is written byte for byte (`../x`, `/abs`).
    pub fn raw_file(self, name: &str, content: impl AsRef<[u8]>) -> Self {
        let kind = Kind::File(content.as_ref().to_vec());
        self.push(name.as_bytes(), kind, 0o644, 0, 0)
    }

    /// A symlink whose header name and target are written byte for byte.
    pub fn raw_symlink(self, name: &str, target: &str) -> Self {
        let kind = Kind::Symlink(target.as_bytes().to_vec());
        self.push(name.as_bytes(), kind, 0o777, 0, 0)
    }

    /// A hard link whose header name and target are written byte for byte
    /// (`/etc/passwd`, `../../outside`).
    pub fn raw_hardlink(self, name: &str, target: &str) -> Self {
        let kind = Kind::Hardlink(target.as_bytes().to_vec());
        self.push(name.as_bytes(), kind, 0o644, 0, 0)
    }

    /// The uncompressed tar archive.
    pub fn tar(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for entry in &self.entries {
            append_entry(&mut builder, entry).expect("writing a tar entry to memory");
        }
        builder.into_inner().expect("finishing the tar archive")
    }

    /// The layer blob with its digests.
    pub fn build(&self, compression: Compression) -> Layer {
        let tar = self.tar();
        let diff_id = sha256_digest(&tar);
        let data = compress(&tar, compression);
        Layer {
            digest: sha256_digest(&data),
            data,
            compression,
            diff_id,
        }
    }
}

/// Compresses `data`; gzip with a zero mtime so output is deterministic.
pub fn compress(data: &[u8], compression: Compression) -> Vec<u8> {
    match compression {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(data).expect("gzip to memory");
            enc.finish().expect("gzip to memory")
        }
        Compression::Zstd => zstd::encode_all(data, 3).expect("zstd to memory"),
    }
}

const NAME_LEN: usize = 100;

fn append_entry(builder: &mut tar::Builder<Vec<u8>>, entry: &Entry) -> std::io::Result<()> {
    // Names and link targets longer than the 100-byte header fields go into
    // GNU long-name/long-link records, which every tar reader understands.
    if entry.name.len() > NAME_LEN {
        append_long(builder, tar::EntryType::GNULongName, &entry.name)?;
    }
    let link = match &entry.kind {
        Kind::Symlink(t) | Kind::Hardlink(t) => Some(t.as_slice()),
        _ => None,
    };
    if let Some(link) = link.filter(|l| l.len() > NAME_LEN) {
        append_long(builder, tar::EntryType::GNULongLink, link)?;
    }

    let mut header = tar::Header::new_gnu();
    set_field(&mut header.as_old_mut().name, &entry.name);
    if let Some(link) = link {
        set_field(&mut header.as_old_mut().linkname, link);
    }
    header.set_mode(entry.mode);
    header.set_uid(entry.uid);
    header.set_gid(entry.gid);
    header.set_mtime(MTIME);
    let data: &[u8] = match &entry.kind {
        Kind::File(content) => {
            header.set_entry_type(tar::EntryType::Regular);
            content
        }
        Kind::Dir => {
            header.set_entry_type(tar::EntryType::Directory);
            &[]
        }
        Kind::Symlink(_) => {
            header.set_entry_type(tar::EntryType::Symlink);
            &[]
        }
        Kind::Hardlink(_) => {
            header.set_entry_type(tar::EntryType::Link);
            &[]
        }
        Kind::Fifo => {
            header.set_entry_type(tar::EntryType::Fifo);
            &[]
        }
        Kind::CharDevice(major, minor) => {
            header.set_entry_type(tar::EntryType::Char);
            header.set_device_major(*major)?;
            header.set_device_minor(*minor)?;
            &[]
        }
    };
    header.set_size(data.len() as u64);
    header.set_cksum();
    builder.append(&header, data)
}

fn append_long(
    builder: &mut tar::Builder<Vec<u8>>,
    kind: tar::EntryType,
    value: &[u8],
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    set_field(&mut header.as_old_mut().name, b"././@LongLink");
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(kind);
    let mut data = value.to_vec();
    data.push(0);
    header.set_size(data.len() as u64);
    header.set_cksum();
    builder.append(&header, data.as_slice())
}

/// Copies `value` into a NUL-padded header field, truncating past its length
/// (the full value is then in a GNU long record).
fn set_field(field: &mut [u8], value: &[u8]) {
    field.fill(0);
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}
