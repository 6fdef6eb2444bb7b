use super::*;
use tar::Header;

/// Builds tars from raw headers, so hostile names (`..`, `/abs`) that
/// `Header::set_path` refuses can be written.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }
    fn raw(
        mut self,
        kind: EntryType,
        path: &str,
        data: &[u8],
        f: impl FnOnce(&mut Header),
    ) -> Self {
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        f(&mut h);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }
    fn file(self, path: &str, data: &[u8]) -> Self {
        self.raw(EntryType::Regular, path, data, |_| {})
    }
    fn dir(self, path: &str) -> Self {
        self.raw(EntryType::Directory, path, b"", |_| {})
    }
    fn link(self, kind: EntryType, path: &str, target: &str) -> Self {
        self.raw(kind, path, b"", |h| {
            h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes())
        })
    }
    /// A PAX `x` header whose records apply to the next entry.
    fn pax(self, records: &[(&str, &[u8])]) -> Self {
        let mut data = Vec::new();
        for (k, v) in records {
            let body = k.len() + v.len() + 3; // space, '=', newline
            let len = body + (body + body.to_string().len()).to_string().len();
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        self.raw(EntryType::XHeader, "PaxHeaders/x", &data, |_| {})
    }
    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// A temp root holding `dest` (the layer) and `outside`, a sentinel that
/// must stay empty whatever the tar says.
struct Fixture(tempfile::TempDir);

impl Fixture {
    fn new() -> Self {
        let root_hint =
            "unpack tests need root (mknod, chown, trusted.* xattrs): run them as root, as CI does";
        assert!(nix::unistd::geteuid().is_root(), "{root_hint}");
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("dest")).unwrap();
        fs::create_dir(root.path().join("outside")).unwrap();
        Self(root)
    }
    fn dest(&self) -> PathBuf {
        self.0.path().join("dest")
    }
    fn outside(&self) -> PathBuf {
        self.0.path().join("outside")
    }
    fn apply(&self, tar: Vec<u8>) -> Result<LayerStats, UnpackError> {
        apply_layer(&tar[..], &self.dest())
    }
    fn assert_contained(&self) {
        let names = |p: &Path| {
            let mut v: Vec<_> = fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            names(self.0.path()),
            ["dest", "outside"],
            "written beside dest"
        );
        assert!(
            names(&self.outside()).is_empty(),
            "written into the sentinel"
        );
    }
}

/// A header tweak setting mode, owner and device numbers.
fn attrs(mode: u32, uid: u64, gid: u64, dev: (u32, u32)) -> impl FnOnce(&mut Header) {
    move |h| {
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_device_major(dev.0).unwrap();
        h.set_device_minor(dev.1).unwrap();
    }
}

fn lstat(p: impl AsRef<Path>) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap()
}

fn mode_owner(p: impl AsRef<Path>) -> (u32, u32, u32) {
    let m = lstat(p);
    (m.mode() & 0o7777, m.uid(), m.gid())
}

#[test]
fn every_kind_with_mode_owner_mtime_and_xattrs() {
    let fx = Fixture::new();
    let tar = Layer::new()
        .raw(EntryType::Directory, "etc/", b"", |h| {
            attrs(0o1750, 12, 34, (0, 0))(h);
            h.set_mtime(1000);
        })
        .pax(&[("SCHILY.xattr.user.note", b"hi"), ("mtime", b"1234.5")])
        .raw(
            EntryType::Regular,
            "etc/su",
            b"#!",
            attrs(0o4755, 1000, 1000, (0, 0)),
        )
        .raw(EntryType::Continuous, "etc/c", b"abc", |_| {})
        .link(EntryType::Symlink, "etc/l", "/nowhere/../at/all")
        .link(EntryType::Link, "etc/h", "etc/su")
        .raw(EntryType::Char, "dev/null", b"", attrs(0o666, 0, 0, (1, 3)))
        .raw(
            EntryType::Block,
            "dev/loop0",
            b"",
            attrs(0o2660, 0, 6, (7, 0)),
        )
        .raw(EntryType::Fifo, "run/fifo", b"", |h| h.set_mode(0o640))
        .pax(&[
            ("SCHILY.xattr.trusted.crius", b"t"),
            ("SCHILY.xattr.trusted.overlay.redirect", b"/x"),
        ])
        .dir("./etc/sub//")
        .bytes();
    let stats = fx.apply(tar).unwrap();
    let d = fx.dest();

    assert!(lstat(d.join("etc")).is_dir());
    assert_eq!(mode_owner(d.join("etc")), (0o1750, 12, 34));
    assert_eq!(
        lstat(d.join("etc")).mtime(),
        1000,
        "dir mtime set after its children"
    );
    // setuid survives: chmod comes after chown.
    assert_eq!(mode_owner(d.join("etc/su")), (0o4755, 1000, 1000));
    let su = lstat(d.join("etc/su"));
    assert_eq!(
        (su.mtime(), su.mtime_nsec(), su.nlink()),
        (1234, 500_000_000, 2)
    );
    assert_eq!(lstat(d.join("etc/h")).ino(), su.ino());
    assert_eq!(
        xattr::get(d.join("etc/su"), "user.note").unwrap().unwrap(),
        b"hi"
    );
    assert_eq!(fs::read(d.join("etc/c")).unwrap(), b"abc");
    let l = lstat(d.join("etc/l"));
    assert!(l.file_type().is_symlink());
    assert_eq!(l.mtime(), 1_600_000_000);
    assert_eq!(
        fs::read_link(d.join("etc/l")).unwrap(),
        Path::new("/nowhere/../at/all")
    );
    let null = lstat(d.join("dev/null"));
    assert!(null.file_type().is_char_device());
    assert_eq!((null.rdev(), null.mode() & 0o7777), (makedev(1, 3), 0o666));
    let lp = lstat(d.join("dev/loop0"));
    assert!(lp.file_type().is_block_device());
    assert_eq!(
        (lp.rdev(), lp.mode() & 0o7777, lp.gid()),
        (makedev(7, 0), 0o2660, 6)
    );
    assert!(lstat(d.join("run/fifo")).file_type().is_fifo());
    assert_eq!(mode_owner(d.join("run/fifo")), (0o640, 0, 0));
    assert_eq!(mode_owner(d.join("dev")), (0o755, 0, 0), "implicit parent");
    assert_eq!(
        xattr::get(d.join("etc/sub"), "trusted.crius")
            .unwrap()
            .unwrap(),
        b"t"
    );
    assert_eq!(
        xattr::get(d.join("etc/sub"), "trusted.overlay.redirect").unwrap(),
        None
    );
    // etc, su (+h), c, l, dev, null, loop0, run, fifo, sub
    assert_eq!(
        stats,
        LayerStats {
            bytes: 5,
            inodes: 10
        }
    );
    fx.assert_contained();
}

#[test]
fn long_names_root_entry_blank_fields_and_metadata_only_headers() {
    let fx = Fixture::new();
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(120));
    let mut b = tar::Builder::new(Vec::new());
    // GNU long name, with uid/gid/mtime left blank as some tools write them.
    let mut h = Header::new_gnu();
    h.set_mode(0o600);
    h.set_size(2);
    b.append_data(&mut h, &long, &b"xy"[..]).unwrap();
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "s", "t".repeat(300)).unwrap();
    let mut tar = b.into_inner().unwrap();
    tar.truncate(tar.len() - 1024); // drop the end marker to append more
    tar.extend(
        Layer::new()
            .raw(
                EntryType::XGlobalHeader,
                "pax_global_header",
                b"22 comment=abcdefghi\n",
                |_| {},
            )
            .pax(&[("path", "p".repeat(200).as_bytes())])
            .file("short", b"pax")
            .raw(EntryType::Directory, "./", b"", |h| {
                h.set_mode(0o750);
                h.set_mtime(77);
            })
            .file(".wh..wh.plnk", b"")
            .raw(EntryType::Regular, "v7dir/", b"", |h| {
                h.as_old_mut().linkflag[0] = 0
            })
            .raw(EntryType::new(b'V'), "volume label", b"", |_| {})
            .bytes(),
    );
    fx.apply(tar).unwrap();
    let d = fx.dest();
    assert_eq!(fs::read(d.join(&long)).unwrap(), b"xy");
    assert_eq!(
        fs::read_link(d.join("s")).unwrap(),
        Path::new(&"t".repeat(300))
    );
    assert_eq!(fs::read(d.join("p".repeat(200))).unwrap(), b"pax");
    assert!(lstat(d.join("v7dir")).is_dir(), "pre-POSIX directory");
    for absent in ["short", "pax_global_header", ".wh..wh.plnk", "volume label"] {
        assert!(!d.join(absent).exists(), "{absent}");
    }
    assert_eq!((lstat(&d).mode() & 0o7777, lstat(&d).mtime()), (0o750, 77));
}

#[test]
fn whiteouts_become_overlay_devices_and_opaque_dirs() {
    let fx = Fixture::new();
    let tar = Layer::new()
        .file("a/.wh.gone", b"")
        .file("b/.wh..wh..opq", b"") // creates b
        .dir("b/")
        .file("b/kept", b"k")
        .file("mine", b"m")
        .file(".wh.mine", b"") // OCI: a whiteout never hides its own layer's files
        .file("d/x", b"")
        .file(".wh.d", b"") // so d stays, and turns opaque to hide the lower d
        .file(".wh.e", b"")
        .dir("e/") // recreated over a whiteout: must hide the lower e/
        .file(".wh.f", b"")
        .file("f", b"new")
        .file(".wh.g", b"")
        .file("g/child", b"") // implicit parent over a whiteout
        .bytes();
    fx.apply(tar).unwrap();
    let d = fx.dest();
    let opaque = |p: &str| xattr::get(d.join(p), OPAQUE_XATTR).unwrap() == Some(b"y".to_vec());
    let m = lstat(d.join("a/gone"));
    assert!(m.file_type().is_char_device() && m.rdev() == 0);
    assert!(!d.join("a/.wh.gone").exists() && !d.join("b/.wh..wh..opq").exists());
    assert!(opaque("b") && opaque("d") && opaque("e") && opaque("g") && !opaque("a"));
    assert!(d.join("b/kept").exists() && d.join("d/x").exists() && d.join("g/child").exists());
    assert_eq!(fs::read(d.join("mine")).unwrap(), b"m");
    assert_eq!(fs::read(d.join("f")).unwrap(), b"new");
    for bad in [".wh.", "x/.wh..", "x/.wh..."] {
        let err = refused(Layer::new().file(bad, b"").bytes(), bad);
        assert!(matches!(err, UnpackError::BadPath { .. }), "{bad}: {err}");
    }
}

#[test]
fn later_entries_replace_earlier_ones() {
    let fx = Fixture::new();
    let tar = Layer::new()
        .file("f2d", b"12345")
        .dir("f2d/")
        .file("d2f/deep/child", b"123")
        .file("d2f", b"1")
        .file("keep/child", b"12")
        .raw(EntryType::Directory, "keep/", b"", |h| h.set_mode(0o700))
        .link(EntryType::Symlink, "s2f", "keep")
        .file("s2f", b"123")
        .file("again", b"long contents")
        .file("again", b"short")
        .bytes();
    let stats = fx.apply(tar).unwrap();
    let d = fx.dest();
    assert!(lstat(d.join("f2d")).is_dir());
    assert_eq!(fs::read(d.join("d2f")).unwrap(), b"1");
    assert_eq!(lstat(d.join("keep")).mode() & 0o7777, 0o700);
    assert!(d.join("keep/child").exists());
    assert!(lstat(d.join("s2f")).is_file());
    assert_eq!(fs::read(d.join("again")).unwrap(), b"short");
    // What is left: f2d, d2f, keep, keep/child, s2f, again.
    assert_eq!(
        stats,
        LayerStats {
            bytes: 1 + 2 + 3 + 5,
            inodes: 6
        }
    );
}

#[test]
fn directory_mtime_is_not_applied_to_its_replacement() {
    let fx = Fixture::new();
    // Were `d/outside`'s mtime kept after `d` is replaced, the final pass
    // would reach the sentinel through the new symlink.
    let tar = Layer::new()
        .raw(EntryType::Directory, "d/", b"", |h| h.set_mtime(5))
        .raw(EntryType::Directory, "d/outside/", b"", |h| h.set_mtime(5))
        .link(EntryType::Symlink, "d", fx.0.path().to_str().unwrap())
        .bytes();
    fx.apply(tar).unwrap();
    assert_ne!(lstat(fx.outside()).mtime(), 5);
    assert_ne!(lstat(fx.dest().join("d")).mtime(), 5);
}

/// Asserts that `tar` fails naming `entry` and nothing left `dest`.
fn refused(tar: Vec<u8>, entry: &str) -> UnpackError {
    let fx = Fixture::new();
    let err = fx.apply(tar).unwrap_err();
    let (UnpackError::BadPath { path, .. } | UnpackError::BadLink { path, .. }) = &err else {
        panic!("{entry}: unexpected error {err}");
    };
    assert_eq!(path, entry);
    assert!(err.to_string().contains(&format!("{entry:?}")), "{err}");
    fx.assert_contained();
    err
}

fn problem(err: &UnpackError) -> Problem {
    match err {
        UnpackError::BadPath { problem, .. } | UnpackError::BadLink { problem, .. } => *problem,
        other => panic!("not a refusal: {other}"),
    }
}

#[test]
fn escaping_paths_are_refused() {
    let fx = Fixture::new();
    let outside = fx.outside();
    let outside = outside.to_str().unwrap();
    let abs = format!("{outside}/abs");
    for (p, want) in [
        ("../x", Problem::ParentComponent),
        ("a/../../x", Problem::ParentComponent),
        ("a/b/../c", Problem::ParentComponent),
        ("..", Problem::ParentComponent),
        (&abs, Problem::Absolute),
        ("", Problem::Empty),
    ] {
        assert_eq!(
            problem(&refused(Layer::new().file(p, b"evil").bytes(), p)),
            want,
            "{p}"
        );
    }
    let evil = |target: &str| Layer::new().link(EntryType::Symlink, "l", target);
    for target in [outside, "..", ".", "../outside"] {
        let err = refused(evil(target).file("l/file", b"evil").bytes(), "l/file");
        assert_eq!(problem(&err), Problem::ThroughSymlink, "{target}");
    }
    refused(evil(outside).dir("l/sub/").bytes(), "l/sub/");
    refused(evil(outside).file("l/.wh.x", b"").bytes(), "l/.wh.x");
    refused(
        evil(outside).file("l/.wh..wh..opq", b"").bytes(),
        "l/.wh..wh..opq",
    );
    let err = refused(Layer::new().file("f", b"").file("f/x", b"").bytes(), "f/x");
    assert_eq!(problem(&err), Problem::ThroughNonDirectory);
    let err = refused(Layer::new().file("./", b"").bytes(), "./");
    assert_eq!(problem(&err), Problem::Root);
}

#[test]
fn hostile_hardlinks_are_refused() {
    for (target, want) in [
        ("../outside/x", Problem::ParentComponent),
        ("/etc/passwd", Problem::Absolute),
        ("l/passwd", Problem::ThroughSymlink),
        ("nothing", Problem::Missing),
        ("f/under-a-file", Problem::ThroughNonDirectory),
        ("dir", Problem::Directory),
        ("./", Problem::Directory),
        ("", Problem::Empty),
    ] {
        let tar = Layer::new()
            .link(EntryType::Symlink, "l", "/etc")
            .file("f", b"")
            .dir("dir/")
            .link(EntryType::Link, "h", target)
            .bytes();
        assert_eq!(problem(&refused(tar, "h")), want, "{target}");
    }
}

#[test]
fn hardlink_to_a_symlink_links_the_symlink_itself() {
    let fx = Fixture::new();
    let tar = Layer::new()
        .link(EntryType::Symlink, "l", "/etc/passwd")
        .link(EntryType::Link, "h", "l")
        .file("self", b"s")
        .link(EntryType::Link, "self", "self")
        .bytes();
    let stats = fx.apply(tar).unwrap();
    let d = fx.dest();
    assert!(lstat(d.join("h")).file_type().is_symlink());
    assert_eq!(lstat(d.join("h")).ino(), lstat(d.join("l")).ino());
    assert_eq!(fs::read(d.join("self")).unwrap(), b"s");
    assert_eq!(
        stats,
        LayerStats {
            bytes: 1,
            inodes: 2
        }
    );
}

#[test]
fn malformed_input_errors_without_panicking() {
    let good = Layer::new().file("a", b"0123456789").bytes();
    let fx = Fixture::new();
    let err = fx.apply(good[..512 + 5].to_vec()).unwrap_err();
    assert!(
        matches!(err, UnpackError::Truncated { ref path, written: 5, .. } if path == "a"),
        "{err}"
    );
    let two = Layer::new().file("a", b"x").file("b", b"y").bytes();
    let err = Fixture::new()
        .apply(two[..1024 + 100].to_vec())
        .unwrap_err();
    assert!(
        matches!(err, UnpackError::Read { ref after, .. } if after == "a"),
        "{err}"
    );
    let mut bad_sum = good.clone();
    bad_sum[0] = b'b';
    for tar in [
        vec![0x5a; 4096],
        bad_sum,
        Layer::new()
            .raw(EntryType::new(b'Z'), "z", b"", |_| {})
            .bytes(),
        Layer::new()
            .raw(EntryType::Regular, "u", b"", |h| h.set_uid(1 << 40))
            .bytes(),
        Layer::new()
            .raw(EntryType::Regular, "m", b"", |h| {
                h.as_old_mut().mtime[0] = b'x'
            })
            .bytes(),
    ] {
        let fx = Fixture::new();
        let err = fx.apply(tar).unwrap_err();
        assert!(!matches!(err, UnpackError::Io { .. }), "{err}");
        fx.assert_contained();
    }
    assert_eq!(
        Fixture::new().apply(Vec::new()).unwrap(),
        LayerStats::default()
    );
}

#[test]
fn mutated_headers_never_panic_or_escape() {
    let tar = Layer::new()
        .file("a", b"hello")
        .dir("d/")
        .link(EntryType::Symlink, "d/l", "x")
        .link(EntryType::Link, "h", "a")
        .raw(EntryType::Char, "c", b"", attrs(0o600, 0, 0, (1, 3)))
        .bytes();
    let headers = [0, 1024, 1536, 2048, 2560];
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..400 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let at = headers[seed as usize % headers.len()];
        let offset = (seed >> 8) as usize % 512;
        if (148..156).contains(&offset) {
            continue;
        }
        let mut mutated = tar.clone();
        let mut h = Header::new_old();
        h.as_mut_bytes().copy_from_slice(&mutated[at..at + 512]);
        h.as_mut_bytes()[offset] = (seed >> 32) as u8;
        h.set_cksum();
        mutated[at..at + 512].copy_from_slice(h.as_bytes());
        let fx = Fixture::new();
        let _ = fx.apply(mutated);
        fx.assert_contained();
    }
}

#[test]
fn pax_times() {
    assert_eq!(parse_pax_time(b"12"), Some((12, 0)));
    assert_eq!(parse_pax_time(b"12.5"), Some((12, 500_000_000)));
    assert_eq!(parse_pax_time(b"1.1234567891"), Some((1, 123_456_789)));
    assert_eq!(parse_pax_time(b"-1.25"), Some((-2, 750_000_000)));
    for bad in [
        &b""[..],
        b".5",
        b"1e3",
        b"--1",
        b"1.-2",
        b"99999999999999999999",
    ] {
        assert_eq!(parse_pax_time(bad), None);
    }
}
