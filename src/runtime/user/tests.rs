use super::*;
use std::fs;
use std::os::unix::fs::symlink;

const PASSWD_TEXT: &str = "\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1000:App:/home/app:/bin/sh
nohome:x:1001:1001::
";

const GROUP_TEXT: &str = "\
root:x:0:
app:x:1000:
audio:x:29:app,other
video:x:44:other, app
staff:x:50:
wheel:x:10:root
";

fn rootfs_with(passwd: Option<&str>, group: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("etc")).unwrap();
    if let Some(p) = passwd {
        fs::write(dir.path().join("etc/passwd"), p).unwrap();
    }
    if let Some(g) = group {
        fs::write(dir.path().join("etc/group"), g).unwrap();
    }
    dir
}

fn std_rootfs() -> tempfile::TempDir {
    rootfs_with(Some(PASSWD_TEXT), Some(GROUP_TEXT))
}

fn image(user: &str) -> UserRequest {
    UserRequest {
        image_user: user.to_owned(),
        ..Default::default()
    }
}

fn user(uid: u32, gid: u32, gids: &[u32], home: &str, name: Option<&str>) -> ResolvedUser {
    ResolvedUser {
        uid,
        gid,
        additional_gids: gids.to_vec(),
        home: home.to_owned(),
        username: name.map(str::to_owned),
    }
}

#[test]
fn empty_image_user_is_root_from_passwd() {
    let r = std_rootfs();
    let got = resolve(r.path(), &image("")).unwrap();
    assert_eq!(got, user(0, 0, &[0, 10], "/root", Some("root")));
}

#[test]
fn numeric_uid_with_entry_takes_gid_home_and_groups() {
    let r = std_rootfs();
    let got = resolve(r.path(), &image("1000")).unwrap();
    assert_eq!(
        got,
        user(1000, 1000, &[1000, 29, 44], "/home/app", Some("app"))
    );
}

#[test]
fn numeric_uid_without_entry_is_gid_zero_home_root() {
    let r = std_rootfs();
    let got = resolve(r.path(), &image("1002")).unwrap();
    assert_eq!(got, user(1002, 0, &[0], "/", None));
}

#[test]
fn name_resolves_from_passwd() {
    let r = std_rootfs();
    let got = resolve(r.path(), &image("app")).unwrap();
    assert_eq!(
        got,
        user(1000, 1000, &[1000, 29, 44], "/home/app", Some("app"))
    );
}

#[test]
fn empty_home_falls_back_to_root_dir() {
    let r = std_rootfs();
    let got = resolve(r.path(), &image("nohome")).unwrap();
    assert_eq!(got.home, "/");
    assert_eq!((got.uid, got.gid), (1001, 1001));
}

#[test]
fn uid_colon_gid() {
    let r = std_rootfs();
    let got = resolve(r.path(), &image("1000:2000")).unwrap();
    assert_eq!(
        got,
        user(1000, 2000, &[2000, 29, 44], "/home/app", Some("app"))
    );
    let got = resolve(r.path(), &image("1234:5678")).unwrap();
    assert_eq!(got, user(1234, 5678, &[5678], "/", None));
}

#[test]
fn name_colon_group_by_name_and_by_number() {
    let r = std_rootfs();
    let got = resolve(r.path(), &image("app:staff")).unwrap();
    assert_eq!((got.uid, got.gid), (1000, 50));
    assert_eq!(got.additional_gids, vec![50, 29, 44]);
    let got = resolve(r.path(), &image("app:44")).unwrap();
    assert_eq!((got.uid, got.gid), (1000, 44));
    assert_eq!(got.additional_gids, vec![44, 29]);
    // A numeric group need not exist.
    let got = resolve(r.path(), &image("daemon:7777")).unwrap();
    assert_eq!((got.uid, got.gid), (1, 7777));
    let got = resolve(r.path(), &image("1002:staff")).unwrap();
    assert_eq!((got.uid, got.gid), (1002, 50));
}

#[test]
fn missing_group_name_is_an_error_naming_it() {
    let r = std_rootfs();
    let err = resolve(r.path(), &image("app:nogroup")).unwrap_err();
    assert!(matches!(&err, UserError::GroupNotFound { name } if name == "nogroup"));
    assert_eq!(
        err.to_string(),
        "group \"nogroup\" not found in the container's /etc/group"
    );
}

#[test]
fn missing_user_name_is_an_error_naming_it() {
    let r = std_rootfs();
    let err = resolve(r.path(), &image("ghost")).unwrap_err();
    assert!(matches!(&err, UserError::UserNotFound { name } if name == "ghost"));
    assert_eq!(
        err.to_string(),
        "user \"ghost\" not found in the container's /etc/passwd"
    );
    let req = UserRequest {
        run_as_username: Some("ghost".into()),
        ..Default::default()
    };
    assert!(matches!(
        resolve(r.path(), &req),
        Err(UserError::UserNotFound { .. })
    ));
}

#[test]
fn run_as_username_beats_run_as_user_beats_image() {
    let r = std_rootfs();
    let req = UserRequest {
        run_as_user: Some(1),
        run_as_username: Some("app".into()),
        image_user: "root".into(),
        ..Default::default()
    };
    assert_eq!(resolve(r.path(), &req).unwrap().uid, 1000);
    let req = UserRequest {
        run_as_username: Some(String::new()),
        ..req
    };
    let got = resolve(r.path(), &req).unwrap();
    assert_eq!((got.uid, got.gid, got.home.as_str()), (1, 1, "/usr/sbin"));
    let req = UserRequest {
        run_as_user: None,
        ..req
    };
    assert_eq!(resolve(r.path(), &req).unwrap().uid, 0);
}

#[test]
fn run_as_group_overrides_every_source() {
    let r = std_rootfs();
    let req = UserRequest {
        run_as_username: Some("app".into()),
        run_as_group: Some(3000),
        ..Default::default()
    };
    let got = resolve(r.path(), &req).unwrap();
    assert_eq!((got.uid, got.gid), (1000, 3000));
    assert_eq!(got.additional_gids, vec![3000, 29, 44]);
    let req = UserRequest {
        run_as_group: Some(3000),
        image_user: "app:nogroup".into(),
        ..Default::default()
    };
    // The image's group is replaced, so it is never looked up.
    assert_eq!(resolve(r.path(), &req).unwrap().gid, 3000);
    let req = UserRequest {
        run_as_user: Some(1002),
        run_as_group: Some(0),
        ..Default::default()
    };
    assert_eq!(resolve(r.path(), &req).unwrap().gid, 0);
}

#[test]
fn supplemental_groups_merge_vs_strict() {
    let r = std_rootfs();
    let mut req = UserRequest {
        run_as_user: Some(1000),
        supplemental_groups: vec![5000, 29, 1000, 5000],
        policy: GroupsPolicy::Merge,
        ..Default::default()
    };
    assert_eq!(
        resolve(r.path(), &req).unwrap().additional_gids,
        vec![1000, 29, 44, 5000]
    );
    req.policy = GroupsPolicy::Strict;
    assert_eq!(
        resolve(r.path(), &req).unwrap().additional_gids,
        vec![1000, 5000, 29]
    );
    // Strict never needs /etc/group, so a broken one does not matter.
    fs::write(r.path().join("etc/group"), vec![b'x'; 5 << 20]).unwrap();
    assert_eq!(
        resolve(r.path(), &req).unwrap().additional_gids,
        vec![1000, 5000, 29]
    );
}

#[test]
fn missing_files_numeric_ids_work_names_fail() {
    let r = rootfs_with(None, None);
    let got = resolve(r.path(), &image("1000:1000")).unwrap();
    assert_eq!(got, user(1000, 1000, &[1000], "/", None));
    assert_eq!(
        resolve(r.path(), &image("")).unwrap(),
        user(0, 0, &[0], "/", None)
    );
    let err = resolve(r.path(), &image("app")).unwrap_err();
    assert!(matches!(err, UserError::NoPasswdFile { .. }), "{err}");
    assert!(err.to_string().contains("no /etc/passwd"), "{err}");
    let err = resolve(r.path(), &image("1000:staff")).unwrap_err();
    assert!(matches!(err, UserError::NoGroupFile { .. }), "{err}");
    // No /etc at all.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(resolve(empty.path(), &image("5")).unwrap().uid, 5);
    // /etc is a file, not a directory.
    fs::write(empty.path().join("etc"), "").unwrap();
    assert_eq!(resolve(empty.path(), &image("5")).unwrap().uid, 5);
}

#[test]
fn out_of_range_and_negative_ids_refused() {
    let r = std_rootfs();
    let big = 1i64 << 40;
    for (req, kind) in [
        (
            UserRequest {
                run_as_user: Some(4294967295),
                ..Default::default()
            },
            IdKind::Uid,
        ),
        (
            UserRequest {
                run_as_user: Some(big),
                ..Default::default()
            },
            IdKind::Uid,
        ),
        (
            UserRequest {
                run_as_group: Some(4294967295),
                ..Default::default()
            },
            IdKind::Gid,
        ),
        (
            UserRequest {
                supplemental_groups: vec![1, big],
                ..Default::default()
            },
            IdKind::Gid,
        ),
        (image("4294967295"), IdKind::Uid),
        (image("4294967296"), IdKind::Uid),
        (image("1099511627776"), IdKind::Uid),
        (image("99999999999999999999999999"), IdKind::Uid),
        (image("1:4294967296"), IdKind::Gid),
    ] {
        match resolve(r.path(), &req) {
            Err(UserError::IdOutOfRange { kind: k, .. }) => assert_eq!(k, kind, "{req:?}"),
            other => panic!("{req:?}: expected out of range, got {other:?}"),
        }
    }
    let err = resolve(
        r.path(),
        &UserRequest {
            run_as_user: Some(4294967295),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "uid 4294967295 (from run_as_user) is out of range (max 4294967294; larger ids would wrap, CVE-2024-40635)"
    );
    for req in [
        UserRequest {
            run_as_user: Some(-1),
            ..Default::default()
        },
        UserRequest {
            run_as_group: Some(-1),
            run_as_user: Some(0),
            ..Default::default()
        },
        UserRequest {
            supplemental_groups: vec![-5],
            ..Default::default()
        },
        image("-1"),
        image("0:-1"),
    ] {
        let err = resolve(r.path(), &req).unwrap_err();
        assert!(
            matches!(err, UserError::NegativeId { .. }),
            "{req:?}: {err}"
        );
    }
    // The largest valid id works.
    assert_eq!(
        resolve(r.path(), &image("4294967294")).unwrap().uid,
        4294967294
    );
}

#[test]
fn out_of_range_ids_in_files_refused_when_selected() {
    let r = rootfs_with(
        Some("evil:x:4294967296:0::/:/bin/sh\nbadgid:x:5:-3::/:\nok:x:7:7::/:\n"),
        Some("big:x:4294967295:ok\n"),
    );
    let err = resolve(r.path(), &image("evil")).unwrap_err();
    assert!(
        matches!(&err, UserError::IdOutOfRange { kind: IdKind::Uid, origin, .. } if origin.contains("evil")),
        "{err}"
    );
    let err = resolve(r.path(), &image("badgid")).unwrap_err();
    assert!(matches!(err, UserError::NegativeId { .. }), "{err}");
    let err = resolve(r.path(), &image("ok:big")).unwrap_err();
    assert!(matches!(err, UserError::IdOutOfRange { .. }), "{err}");
    // Membership in an out-of-range group under Merge is refused, not wrapped.
    let err = resolve(r.path(), &image("ok")).unwrap_err();
    assert!(matches!(err, UserError::IdOutOfRange { .. }), "{err}");
}

#[test]
fn invalid_image_user_specs() {
    let r = std_rootfs();
    for spec in [":", ":1000", "app:", "a:b:c", "1:2:3"] {
        let err = resolve(r.path(), &image(spec)).unwrap_err();
        assert!(
            matches!(&err, UserError::InvalidUserSpec { spec: s } if s == spec),
            "{spec}: {err}"
        );
    }
}

/// A decoy passwd outside the rootfs, as the host's would be.
fn decoy() -> (tempfile::TempDir, PathBuf) {
    let host = tempfile::tempdir().unwrap();
    let path = host.path().join("hostetc/passwd");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, "hostonly:x:4242:4242::/host:/bin/sh\n").unwrap();
    (host, path)
}

#[test]
fn absolute_symlink_is_rerooted_never_read_on_host() {
    let (_host, decoy_path) = decoy();
    let r = rootfs_with(None, None);
    symlink(&decoy_path, r.path().join("etc/passwd")).unwrap();
    let err = resolve(r.path(), &image("hostonly")).unwrap_err();
    assert!(matches!(err, UserError::NoPasswdFile { .. }), "{err}");

    // The same absolute path inside the rootfs is what gets read.
    let inner = r.path().join(decoy_path.strip_prefix("/").unwrap());
    fs::create_dir_all(inner.parent().unwrap()).unwrap();
    fs::write(&inner, "inside:x:77:78::/in:/bin/sh\n").unwrap();
    assert!(matches!(
        resolve(r.path(), &image("hostonly")),
        Err(UserError::UserNotFound { .. })
    ));
    let got = resolve(r.path(), &image("inside")).unwrap();
    assert_eq!(got, user(77, 78, &[78], "/in", Some("inside")));
}

#[test]
fn absolute_symlinked_etc_dir_is_rerooted() {
    let (host, _decoy_path) = decoy();
    let r = tempfile::tempdir().unwrap();
    symlink(host.path().join("hostetc"), r.path().join("etc")).unwrap();
    assert!(resolve(r.path(), &image("hostonly")).is_err());
}

#[test]
fn relative_symlink_cannot_climb_out_of_rootfs() {
    let (host, decoy_path) = decoy();
    // rootfs sits next to the decoy: <host>/rootfs/etc/passwd ->
    // ../../../../hostetc/passwd would reach <host>/hostetc/passwd on a
    // naive open, however deep the host path.
    let root = host.path().join("rootfs");
    fs::create_dir_all(root.join("etc")).unwrap();
    let ups = "../".repeat(decoy_path.components().count() + 4);
    let target = format!("{ups}{}", decoy_path.display());
    symlink(&target, root.join("etc/passwd")).unwrap();
    symlink("../../../../../../hostetc/passwd", root.join("etc/passwd2")).unwrap();
    assert!(matches!(
        resolve(&root, &image("hostonly")),
        Err(UserError::NoPasswdFile { .. })
    ));
    // `..` stops at the rootfs, so the target is <rootfs>/hostetc/passwd.
    fs::remove_file(root.join("etc/passwd")).unwrap();
    fs::rename(root.join("etc/passwd2"), root.join("etc/passwd")).unwrap();
    fs::create_dir_all(root.join("hostetc")).unwrap();
    fs::write(root.join("hostetc/passwd"), "inside:x:9:9::/:\n").unwrap();
    assert!(resolve(&root, &image("hostonly")).is_err());
    assert_eq!(resolve(&root, &image("inside")).unwrap().uid, 9);
}

#[test]
fn symlink_chains_inside_rootfs_work() {
    let r = rootfs_with(None, None);
    fs::create_dir_all(r.path().join("usr/share/base")).unwrap();
    fs::write(r.path().join("usr/share/base/passwd"), PASSWD_TEXT).unwrap();
    symlink("../usr/share/base/pw", r.path().join("etc/passwd")).unwrap();
    symlink("./passwd", r.path().join("usr/share/base/pw")).unwrap();
    symlink("/usr/share/base/../base/passwd", r.path().join("etc/group")).unwrap();
    let got = resolve(r.path(), &image("app")).unwrap();
    assert_eq!((got.uid, got.gid), (1000, 1000));
}

#[test]
fn symlink_loops_error_without_hanging() {
    let r = rootfs_with(None, None);
    symlink("passwd2", r.path().join("etc/passwd")).unwrap();
    symlink("/etc/passwd", r.path().join("etc/passwd2")).unwrap();
    let err = resolve(r.path(), &image("app")).unwrap_err();
    assert!(
        matches!(
            err,
            UserError::TooManySymlinks {
                file: "/etc/passwd"
            }
        ),
        "{err}"
    );
    // A directory loop: /etc -> /etc.
    let r2 = tempfile::tempdir().unwrap();
    symlink("/etc", r2.path().join("etc")).unwrap();
    assert!(matches!(
        resolve(r2.path(), &image("0")),
        Err(UserError::TooManySymlinks { .. })
    ));
}

#[test]
fn non_regular_files_refused() {
    let r = rootfs_with(None, None);
    fs::create_dir(r.path().join("etc/passwd")).unwrap();
    let err = resolve(r.path(), &image("app")).unwrap_err();
    assert!(
        matches!(
            err,
            UserError::NotRegularFile {
                kind: "directory",
                ..
            }
        ),
        "{err}"
    );
    fs::remove_dir(r.path().join("etc/passwd")).unwrap();
    symlink("..", r.path().join("etc/passwd")).unwrap();
    assert!(matches!(
        resolve(r.path(), &image("app")),
        Err(UserError::NotRegularFile { .. })
    ));
    // A fifo must be refused, not block the daemon.
    fs::remove_file(r.path().join("etc/passwd")).unwrap();
    nix::unistd::mkfifo(&r.path().join("etc/passwd"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let err = resolve(r.path(), &image("app")).unwrap_err();
    assert!(
        matches!(err, UserError::NotRegularFile { kind: "fifo", .. }),
        "{err}"
    );
}

#[test]
fn huge_file_refused() {
    let r = rootfs_with(None, None);
    let f = fs::File::create(r.path().join("etc/passwd")).unwrap();
    f.set_len(MAX_FILE_BYTES + 1).unwrap();
    let err = resolve(r.path(), &image("app")).unwrap_err();
    assert!(
        matches!(err, UserError::FileTooLarge { file: "/etc/passwd", size } if size == MAX_FILE_BYTES + 1),
        "{err}"
    );
    // Numeric ids still read passwd (for home), so they fail the same way
    // rather than silently skipping a file an attacker inflated.
    assert!(resolve(r.path(), &image("0")).is_err());
}

#[test]
fn garbage_lines_ignored() {
    let passwd = "\
# comment
   
::::::
noid:x::0::/:
alpha:x:abc:0::/:
+nis::::::
-bad
short:x:5
\u{0}\u{ff}:x:1:1
app:x:1000:1000::/home/app:/bin/sh:extra:fields
  spaced:x:2000:2000::/s:/bin/sh  
";
    let mut bytes = passwd.as_bytes().to_vec();
    bytes.extend_from_slice(b"\xff\xfe:x:3:3::/:\n");
    let r = rootfs_with(None, Some("\n#\nnogid:x:\nbad:x:zz:app\nok:x:60:app,,\n"));
    fs::write(r.path().join("etc/passwd"), bytes).unwrap();
    let got = resolve(r.path(), &image("app")).unwrap();
    assert_eq!(got, user(1000, 1000, &[1000, 60], "/home/app", Some("app")));
    assert_eq!(resolve(r.path(), &image("spaced")).unwrap().uid, 2000);
    for name in ["noid", "alpha", "+nis", "-bad", "short"] {
        assert!(
            matches!(
                resolve(r.path(), &image(name)),
                Err(UserError::UserNotFound { .. })
            ),
            "{name}"
        );
    }
}

#[test]
fn parsers_never_panic_on_arbitrary_bytes() {
    // A cheap deterministic fuzz: xorshift bytes biased towards ':' ',' '\n'.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..300 {
        let mut buf = Vec::new();
        for _ in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.push(match x % 8 {
                0 => b':',
                1 => b'\n',
                2 => b',',
                3 => b'0' + (x >> 8) as u8 % 10,
                4 => b'-',
                _ => (x >> 16) as u8,
            });
        }
        let text = String::from_utf8_lossy(&buf);
        let _ = parse_passwd(&text);
        let _ = parse_group(&text);
    }
}

#[test]
fn missing_rootfs_is_an_io_error_naming_it() {
    let r = tempfile::tempdir().unwrap();
    let gone = r.path().join("gone");
    let err = resolve(&gone, &image("0")).unwrap_err();
    assert!(matches!(err, UserError::Io { .. }), "{err}");
    assert!(
        err.to_string().contains(&gone.display().to_string()),
        "{err}"
    );
}

#[test]
fn error_messages_name_the_object() {
    let r = std_rootfs();
    let err = resolve(
        r.path(),
        &UserRequest {
            supplemental_groups: vec![-1],
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "gid -1 (from supplemental_groups) is negative; ids must be in 0..=4294967294"
    );
    let err = resolve(r.path(), &image("-99999999999999999999999")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("uid -99999999999999999999999 (from image User"),
        "{err}"
    );
    let err = resolve(r.path(), &image("a:b:c")).unwrap_err();
    assert!(err.to_string().contains("\"a:b:c\""), "{err}");
}
