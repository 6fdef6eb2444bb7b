//! Layer applier: turns one uncompressed OCI layer tar into a directory that
//! overlayfs can stack as a lowerdir.
//!
//! Owns tar entry path validation, OCI whiteout translation (`.wh.<name>` →
//! a 0/0 character device, `.wh..wh..opq` → `trusted.overlay.opaque=y`) and
//! restoring mode, owner, mtime and xattrs. It must not touch anything outside
//! `dest`, and knows nothing of compression, digests or where layers are kept
//! (that is `layers.rs`).
//!
//! The tar is hostile: it is applied while it streams, before its digest is
//! known. Every path is checked to be relative and every existing parent is
//! lstat'ed, so neither `../x` nor a symlink planted by an earlier entry can
//! steer a write out of `dest` (the CVE-2018-15664 / CVE-2019-14271 family).

use std::collections::{BTreeMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::fs::{lchown, symlink};
use std::path::{Path, PathBuf};

use nix::fcntl::{AT_FDCWD, AtFlags};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, makedev, mknod, utimensat};
use nix::sys::time::TimeSpec;
use tar::{Entry, EntryType};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// AUFS bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`): meaningless to overlayfs.
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

/// Sizes of what a layer wrote: regular-file bytes and inode count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    pub bytes: u64,
    pub inodes: u64,
}

/// What is wrong with an entry's path or a hardlink's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("is empty")]
    Empty,
    #[error("is absolute")]
    Absolute,
    #[error("contains a `..` component")]
    ParentComponent,
    #[error("is a whiteout that names no file")]
    EmptyWhiteout,
    #[error("goes through a symlink, which could lead outside the layer")]
    ThroughSymlink,
    #[error("goes through something that is not a directory")]
    ThroughNonDirectory,
    #[error("does not exist earlier in this layer")]
    Missing,
    #[error("is a directory")]
    Directory,
    #[error("is the layer root, which can only be a directory")]
    Root,
}

/// A layer that could not be applied. `path` is the entry's name as written
/// in the tar. A failed apply leaves `dest` half-written: the caller deletes it.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer tar is unreadable after entry {after:?} (corrupt or truncated): {source}")]
    Read { after: String, source: io::Error },
    #[error("tar entry {path:?}: bad {field} in header: {source}")]
    Header {
        path: String,
        field: &'static str,
        source: io::Error,
    },
    #[error("tar entry {path:?}: unsupported entry type {kind:?}")]
    UnsupportedType { path: String, kind: char },
    #[error("tar entry {path:?} refused: its path {problem}")]
    BadPath { path: String, problem: Problem },
    #[error("tar entry {path:?} refused: link target {target:?} {problem}")]
    BadLink {
        path: String,
        target: String,
        problem: Problem,
    },
    #[error("tar entry {path:?}: data ends after {written} of {expected} bytes (truncated layer)")]
    Truncated {
        path: String,
        written: u64,
        expected: u64,
    },
    #[error("tar entry {path:?}: {op}: {source}")]
    Io {
        path: String,
        op: &'static str,
        source: io::Error,
    },
    #[error("tar entry {path:?}: setting xattr {name:?}: {source}")]
    Xattr {
        path: String,
        name: OsString,
        source: io::Error,
    },
    #[error("measuring the unpacked layer at {path:?}: {source}")]
    Measure { path: PathBuf, source: io::Error },
}

/// Applies one uncompressed layer tar stream into `dest`, an existing empty
/// directory that will become an overlayfs lowerdir. Returns stats.
pub fn apply_layer<R: Read>(tar: R, dest: &Path) -> Result<LayerStats, UnpackError> {
    let mut archive = tar::Archive::new(tar);
    let mut applier = Applier {
        dest,
        dir_times: BTreeMap::new(),
    };
    let mut last = String::new();
    let read_err = |after: &str, source| UnpackError::Read {
        after: after.into(),
        source,
    };
    for entry in archive.entries().map_err(|e| read_err(&last, e))? {
        let mut entry = entry.map_err(|e| read_err(&last, e))?;
        last = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        applier.apply(&mut entry, &last)?;
    }
    let stats = measure(dest)?;
    // Directory mtimes go last: creating each child bumped its parent's.
    for (rel, (t, name)) in &applier.dir_times {
        utimensat(
            AT_FDCWD,
            &dest.join(rel),
            t,
            t,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(io_err(name, "setting directory mtime"))?;
    }
    Ok(stats)
}

/// Metadata common to all entry kinds, read before the data is consumed.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

/// What `prepare` found at an entry's path.
#[derive(PartialEq, Eq)]
enum Slot {
    Empty,
    KeptDir,
    /// A whiteout of this layer was replaced: a new directory there must be
    /// opaque or overlayfs would merge in the lower directory it was hiding.
    ReplacedWhiteout,
}

struct Applier<'a> {
    dest: &'a Path,
    /// Directory mtimes to set at the end, by path relative to `dest`
    /// (empty = `dest`), with the entry name for errors.
    dir_times: BTreeMap<PathBuf, (TimeSpec, String)>,
}

impl Applier<'_> {
    fn apply<R: Read>(&mut self, entry: &mut Entry<'_, R>, name: &str) -> Result<(), UnpackError> {
        let raw = entry.path_bytes().into_owned();
        let mut kind = entry.header().entry_type();
        let typeflag = entry.header().as_old().linkflag[0];
        match typeflag {
            // PAX records and GNU long names are folded into the next entry by
            // the tar crate; a stray one, a PAX global header or a GNU volume
            // label describes no file.
            b'g' | b'x' | b'L' | b'K' | b'V' => return Ok(()),
            // Pre-POSIX tars mark directories only by a trailing slash.
            0 if raw.ends_with(b"/") => kind = EntryType::Directory,
            _ => {}
        }
        let rel = normalise(&raw).map_err(|problem| bad_path(name, problem))?;
        let meta = read_meta(entry, name)?;

        if let Some(base) = rel.file_name().map(OsStrExt::as_bytes) {
            let parent = rel.parent().unwrap_or(Path::new(""));
            if base == WHITEOUT_OPAQUE {
                self.ensure_dirs(parent, name)?;
                return set_xattr(&self.dest.join(parent), name, OPAQUE_XATTR.as_ref(), b"y");
            }
            if base.starts_with(WHITEOUT_META_PREFIX) {
                return Ok(());
            }
            if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX) {
                return self.whiteout(parent, hidden, name, &meta);
            }
        } else if kind == EntryType::Directory {
            // `./` itself: its metadata belongs to the layer root.
            set_meta(self.dest, name, &meta, false)?;
            self.dir_times.insert(rel, (meta.mtime, name.into()));
            return Ok(());
        } else {
            return Err(bad_path(name, Problem::Root));
        }

        let full = self.dest.join(&rel);
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.prepare(&rel, name, false)?;
                // O_EXCL also refuses to follow a symlink at the final component.
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&full)
                    .map_err(io_err(name, "creating file"))?;
                let expected = entry.size();
                let written = io::copy(entry, &mut file).map_err(io_err(name, "writing file"))?;
                // The tar crate ends a short entry with a quiet EOF.
                if written != expected {
                    return Err(UnpackError::Truncated {
                        path: name.into(),
                        written,
                        expected,
                    });
                }
                drop(file);
                set_meta(&full, name, &meta, false)?;
                set_mtime(&full, name, &meta)
            }
            EntryType::Directory => {
                let slot = self.prepare(&rel, name, true)?;
                if slot != Slot::KeptDir {
                    DirBuilder::new()
                        .mode(0o700)
                        .create(&full)
                        .map_err(io_err(name, "creating directory"))?;
                }
                if slot == Slot::ReplacedWhiteout {
                    set_xattr(&full, name, OPAQUE_XATTR.as_ref(), b"y")?;
                }
                set_meta(&full, name, &meta, false)?;
                self.dir_times.insert(rel, (meta.mtime, name.into()));
                Ok(())
            }
            EntryType::Symlink => {
                // Targets are not checked: they are resolved later, inside the
                // container's root, and nothing here ever follows one.
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                if target.is_empty() {
                    return Err(bad_link(name, &target, Problem::Empty));
                }
                self.prepare(&rel, name, false)?;
                symlink(OsStr::from_bytes(&target), &full)
                    .map_err(io_err(name, "creating symlink"))?;
                set_meta(&full, name, &meta, true)?;
                set_mtime(&full, name, &meta)
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                self.hardlink(&rel, &target, name)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (sflag, dev) = match kind {
                    EntryType::Char => (SFlag::S_IFCHR, device(entry.header(), name)?),
                    EntryType::Block => (SFlag::S_IFBLK, device(entry.header(), name)?),
                    _ => (SFlag::S_IFIFO, 0),
                };
                self.prepare(&rel, name, false)?;
                mknod(&full, sflag, Mode::empty(), dev).map_err(io_err(name, "creating node"))?;
                set_meta(&full, name, &meta, false)?;
                set_mtime(&full, name, &meta)
            }
            other => Err(UnpackError::UnsupportedType {
                path: name.into(),
                kind: other.as_byte().into(),
            }),
        }
    }

    /// Makes every component of `dir` (relative to `dest`) a real directory,
    /// creating missing ones 0755 root-owned.
    ///
    /// Each existing component is lstat'ed because a symlink planted by an
    /// earlier entry (`l -> /etc`) would be followed by any later syscall on
    /// `l/...`. `dest` is private and fresh, so nothing can swap a component
    /// between this check and the write that follows it.
    fn ensure_dirs(&mut self, dir: &Path, name: &str) -> Result<(), UnpackError> {
        let mut cur = self.dest.to_path_buf();
        for comp in dir.components() {
            cur.push(comp);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(bad_path(name, Problem::ThroughSymlink));
                }
                // `.wh.d` then `d/x`: d is new in this layer and hides the lower d.
                Ok(m) if is_whiteout(&m) => {
                    fs::remove_file(&cur).map_err(io_err(name, "removing whiteout"))?;
                    mkdir_implicit(&cur, name)?;
                    set_xattr(&cur, name, OPAQUE_XATTR.as_ref(), b"y")?;
                }
                Ok(_) => return Err(bad_path(name, Problem::ThroughNonDirectory)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => mkdir_implicit(&cur, name)?,
                Err(e) => return Err(io_err(name, "inspecting parent directory")(e)),
            }
        }
        Ok(())
    }

    /// Readies `rel` for a new entry: parents exist, and whatever this layer
    /// put there before is gone, unless it is a directory and so is the new
    /// entry (a directory's entry may follow its children's).
    fn prepare(&mut self, rel: &Path, name: &str, new_is_dir: bool) -> Result<Slot, UnpackError> {
        self.ensure_dirs(rel.parent().unwrap_or(Path::new("")), name)?;
        let full = self.dest.join(rel);
        let m = match fs::symlink_metadata(&full) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Slot::Empty),
            Err(e) => return Err(io_err(name, "inspecting existing entry")(e)),
        };
        if m.is_dir() && new_is_dir {
            return Ok(Slot::KeptDir);
        }
        // remove_dir_all does not follow symlinks inside the tree.
        let removed = if m.is_dir() {
            fs::remove_dir_all(&full)
        } else {
            fs::remove_file(&full)
        };
        removed.map_err(io_err(name, "removing existing entry"))?;
        // Mtimes recorded under a removed directory must not land on whatever
        // replaces it, which may be a symlink pointing out of the layer.
        self.dir_times.retain(|k, _| !k.starts_with(rel));
        Ok(if is_whiteout(&m) && new_is_dir {
            Slot::ReplacedWhiteout
        } else {
            Slot::Empty
        })
    }

    /// Translates `parent/.wh.<hidden>`. The OCI layer spec says a whiteout
    /// hides only *lower* layers' files, never its own layer's: a directory
    /// this layer already wrote stays but turns opaque, and a non-directory
    /// already hides the lower entry by itself.
    fn whiteout(
        &mut self,
        parent: &Path,
        hidden: &[u8],
        name: &str,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        match hidden {
            b"" | b"." => return Err(bad_path(name, Problem::EmptyWhiteout)),
            b".." => return Err(bad_path(name, Problem::ParentComponent)),
            _ => {}
        }
        self.ensure_dirs(parent, name)?;
        let full = self.dest.join(parent).join(OsStr::from_bytes(hidden));
        match fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => set_xattr(&full, name, OPAQUE_XATTR.as_ref(), b"y"),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                mknod(&full, SFlag::S_IFCHR, Mode::empty(), 0)
                    .map_err(io_err(name, "creating whiteout device"))?;
                lchown(&full, Some(meta.uid), Some(meta.gid)).map_err(io_err(name, "chown"))?;
                set_mtime(&full, name, meta)
            }
            Err(e) => Err(io_err(name, "inspecting whiteout target")(e)),
        }
    }

    /// A hardlink target must be a non-directory this layer already wrote,
    /// reached without symlinks: `link(2)` resolves the target's parents, so
    /// `h -> l/passwd` with `l -> /etc` would pull a host inode into the layer.
    fn hardlink(&mut self, rel: &Path, raw_target: &[u8], name: &str) -> Result<(), UnpackError> {
        let fail = |problem| Err(bad_link(name, raw_target, problem));
        let target = match normalise(raw_target) {
            Ok(t) if t.as_os_str().is_empty() => return fail(Problem::Directory),
            Ok(t) => t,
            Err(problem) => return fail(problem),
        };
        let mut cur = self.dest.to_path_buf();
        let mut comps = target.components().peekable();
        while let Some(comp) = comps.next() {
            cur.push(comp);
            let m = match fs::symlink_metadata(&cur) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return fail(Problem::Missing),
                Err(e) => return Err(io_err(name, "inspecting link target")(e)),
            };
            let last = comps.peek().is_none();
            if last && m.is_dir() {
                return fail(Problem::Directory);
            } else if !last && m.file_type().is_symlink() {
                return fail(Problem::ThroughSymlink);
            } else if !last && !m.is_dir() {
                return fail(Problem::ThroughNonDirectory);
            }
        }
        if target == rel {
            // Already in place; removing it first would destroy the target.
            return Ok(());
        }
        self.prepare(rel, name, false)?;
        // Flags 0: a target that is itself a symlink is linked, not followed.
        // The header's metadata is not applied: it would re-chmod the shared
        // inode, which the target's own entry already set.
        let to = self.dest.join(rel);
        nix::unistd::linkat(AT_FDCWD, &cur, AT_FDCWD, &to, AtFlags::empty())
            .map_err(io_err(name, "creating hardlink"))
    }
}

/// Splits a tar path into plain components: `./` prefixes, `.` components
/// and repeated or trailing slashes vanish; an empty result means `dest`.
fn normalise(raw: &[u8]) -> Result<PathBuf, Problem> {
    if raw.is_empty() {
        return Err(Problem::Empty);
    }
    if raw.starts_with(b"/") {
        return Err(Problem::Absolute);
    }
    let mut out = PathBuf::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(Problem::ParentComponent),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

fn read_meta<R: Read>(entry: &mut Entry<'_, R>, name: &str) -> Result<Meta, UnpackError> {
    let (h, old) = (entry.header(), entry.header().as_old());
    let field = |field, source| UnpackError::Header {
        path: name.into(),
        field,
        source,
    };
    let num = |f, v, raw: &[u8]| blank_is_zero(v, raw).map_err(|e| field(f, e));
    let id = |f, v: u64| u32::try_from(v).map_err(|_| field(f, invalid("does not fit in 32 bits")));
    let mode = num("mode", h.mode().map(u64::from), &old.mode)? as u32 & 0o7777;
    let uid = id("uid", num("uid", h.uid(), &old.uid)?)?;
    let gid = id("gid", num("gid", h.gid(), &old.gid)?)?;
    let secs = num("mtime", h.mtime(), &old.mtime)?;
    let mut mtime = (
        i64::try_from(secs).map_err(|_| field("mtime", invalid("out of range")))?,
        0,
    );
    let mut xattrs = Vec::new();
    for ext in entry
        .pax_extensions()
        .map_err(|e| field("pax records", e))?
        .into_iter()
        .flatten()
    {
        let ext = ext.map_err(|e| field("pax records", e))?;
        if let Some(key) = ext.key_bytes().strip_prefix(PAX_XATTR_PREFIX) {
            xattrs.push((
                OsStr::from_bytes(key).to_owned(),
                ext.value_bytes().to_vec(),
            ));
        } else if ext.key_bytes() == b"mtime" {
            // PAX carries sub-second (and beyond-octal-range) mtimes.
            mtime = parse_pax_time(ext.value_bytes()).unwrap_or(mtime);
        }
    }
    let secs =
        libc::time_t::try_from(mtime.0).map_err(|_| field("mtime", invalid("out of range")))?;
    Ok(Meta {
        mode,
        uid,
        gid,
        mtime: TimeSpec::new(secs, mtime.1 as _),
        xattrs,
    })
}

fn device(h: &tar::Header, name: &str) -> Result<libc::dev_t, UnpackError> {
    let (major, minor) = match (h.as_ustar(), h.as_gnu()) {
        (Some(u), _) => (&u.dev_major[..], &u.dev_minor[..]),
        (_, Some(g)) => (&g.dev_major[..], &g.dev_minor[..]),
        _ => (&[][..], &[][..]),
    };
    let num = |field, v, raw| {
        let v: Option<u32> = blank_is_zero(v, raw).map_err(|source| UnpackError::Header {
            path: name.into(),
            field,
            source,
        })?;
        Ok(u64::from(v.unwrap_or_default()))
    };
    Ok(makedev(
        num("device major", h.device_major(), major)?,
        num("device minor", h.device_minor(), minor)?,
    ))
}

/// Go's archive/tar and GNU tar read a blank numeric field as 0, and some
/// image tools write them; the tar crate calls them an error.
fn blank_is_zero<T: Default>(v: io::Result<T>, raw: &[u8]) -> io::Result<T> {
    match v {
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(T::default()),
        v => v,
    }
}

/// Parses a PAX time (`1700000000.5`, `-1.25`) into seconds and nanoseconds.
fn parse_pax_time(v: &[u8]) -> Option<(i64, i64)> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) {
        return None;
    }
    let secs: i64 = int.parse().ok()?;
    let frac = &frac[..frac.len().min(9)];
    let nsec: i64 = format!("{frac:0<9}").parse().ok()?;
    Some(match (neg, nsec) {
        (false, _) => (secs, nsec),
        (true, 0) => (-secs, 0),
        (true, _) => (-secs - 1, 1_000_000_000 - nsec),
    })
}

/// Owner, then mode (chown clears setuid/setgid), then xattrs (chown also
/// drops `security.capability`). Symlinks have no mode of their own on Linux.
fn set_meta(full: &Path, name: &str, meta: &Meta, symlink: bool) -> Result<(), UnpackError> {
    lchown(full, Some(meta.uid), Some(meta.gid)).map_err(io_err(name, "chown"))?;
    if !symlink {
        // Following is safe: `full` was just created or checked as a non-symlink.
        fs::set_permissions(full, Permissions::from_mode(meta.mode))
            .map_err(io_err(name, "chmod"))?;
    }
    for (key, value) in &meta.xattrs {
        // Forged overlayfs metadata (redirect, metacopy, opaque) could make the
        // mount show files other than the ones the layer ships; OCI layers
        // express opacity with `.wh..wh..opq`, handled above.
        if key.as_bytes().starts_with(b"trusted.overlay.") {
            tracing::warn!(entry = name, xattr = ?key, "ignored overlayfs xattr in layer");
            continue;
        }
        match xattr::set(full, key, value) {
            // The layer store's filesystem lacks the namespace, or the kernel
            // refuses user.* on symlinks and devices: containerd drops these too.
            Err(e)
                if e.raw_os_error() == Some(libc::EOPNOTSUPP)
                    || (e.raw_os_error() == Some(libc::EPERM)
                        && key.as_bytes().starts_with(b"user.")) =>
            {
                tracing::warn!(entry = name, xattr = ?key, error = %e, "ignored xattr in layer");
            }
            Err(source) => {
                return Err(UnpackError::Xattr {
                    path: name.into(),
                    name: key.clone(),
                    source,
                });
            }
            Ok(()) => {}
        }
    }
    Ok(())
}

fn set_mtime(full: &Path, name: &str, meta: &Meta) -> Result<(), UnpackError> {
    let t = &meta.mtime;
    utimensat(AT_FDCWD, full, t, t, UtimensatFlags::NoFollowSymlink)
        .map_err(io_err(name, "setting mtime"))
}

fn set_xattr(full: &Path, name: &str, key: &OsStr, value: &[u8]) -> Result<(), UnpackError> {
    xattr::set(full, key, value).map_err(|source| UnpackError::Xattr {
        path: name.into(),
        name: key.to_owned(),
        source,
    })
}

fn mkdir_implicit(full: &Path, name: &str) -> Result<(), UnpackError> {
    DirBuilder::new()
        .mode(0o755)
        .create(full)
        .map_err(io_err(name, "creating parent directory"))?;
    // Explicit: a setgid parent would hand down its group, and umask its mask.
    lchown(full, Some(0), Some(0)).map_err(io_err(name, "chown parent directory"))?;
    fs::set_permissions(full, Permissions::from_mode(0o755))
        .map_err(io_err(name, "chmod parent directory"))
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

/// Counts what ended up in `dest`, so replaced entries are not counted and
/// hardlinks are counted once.
fn measure(dest: &Path) -> Result<LayerStats, UnpackError> {
    let mut stats = LayerStats::default();
    let mut seen = HashSet::new();
    let mut stack = vec![dest.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let err = |source| UnpackError::Measure {
            path: dir.strip_prefix(dest).unwrap_or(&dir).to_path_buf(),
            source,
        };
        for ent in fs::read_dir(&dir).map_err(err)? {
            let ent = ent.map_err(err)?;
            // DirEntry::metadata does not follow symlinks.
            let m = ent.metadata().map_err(err)?;
            if m.nlink() > 1 && !m.is_dir() && !seen.insert(m.ino()) {
                continue;
            }
            stats.inodes += 1;
            if m.is_file() {
                stats.bytes += m.len();
            } else if m.is_dir() {
                stack.push(ent.path());
            }
        }
    }
    Ok(stats)
}

fn io_err<E: Into<io::Error>>(name: &str, op: &'static str) -> impl FnOnce(E) -> UnpackError {
    move |e| UnpackError::Io {
        path: name.into(),
        op,
        source: e.into(),
    }
}

fn bad_path(name: &str, problem: Problem) -> UnpackError {
    UnpackError::BadPath {
        path: name.into(),
        problem,
    }
}

fn bad_link(name: &str, target: &[u8], problem: Problem) -> UnpackError {
    let target = String::from_utf8_lossy(target).into_owned();
    UnpackError::BadLink {
        path: name.into(),
        target,
        problem,
    }
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests;
