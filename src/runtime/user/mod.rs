//! The container's user: CRI `run_as_user`/`run_as_username`/`run_as_group`
//! and the image `User`, resolved against the container rootfs's
//! `/etc/passwd` and `/etc/group` the way runc and containerd do.
//!
//! This module only reads those two files, and only inside the rootfs: it
//! never follows a symlink out of it (a layer may ship `/etc/passwd` as a
//! symlink to the host's `/etc/shadow` or to `/etc/passwd`, which a naive
//! open would resolve on the host). It sets no ids and touches no process.
//!
//! Every id is checked against `0..=4294967294` before use: containerd
//! parsed ids into a wider integer and truncated, so a uid of 2^32 became
//! root (CVE-2024-40635); `u32::MAX` is `(uid_t)-1`, "no change" to the
//! kernel's set*id calls.

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

/// The largest uid/gid a container may run as; `u32::MAX` is reserved.
pub const MAX_ID: u32 = u32::MAX - 1;

/// `/etc/passwd` or `/etc/group` larger than this is refused rather than
/// read into the daemon's memory.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// Symlinks followed while resolving one path, as Linux's MAXSYMLINKS.
pub const MAX_SYMLINK_HOPS: u32 = 40;

const PASSWD: &str = "/etc/passwd";
const GROUP: &str = "/etc/group";

/// The user a container's process runs as.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// The process's supplementary groups. Always starts with the primary
    /// gid (containerd does the same since CVE-2023-25173, so that dropping
    /// the primary group with setgid cannot shed a group-based restriction),
    /// then groups from `/etc/group` (Merge only), then CRI
    /// `supplemental_groups`, without duplicates, in that order.
    pub additional_gids: Vec<u32>,
    /// From the passwd entry, else `/`.
    pub home: String,
    /// The passwd entry's name, when the user has one.
    pub username: Option<String>,
}

/// CRI `SupplementalGroupsPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum GroupsPolicy {
    /// Groups listing the user in the image's `/etc/group`, plus CRI
    /// `supplemental_groups` (Kubernetes' default).
    #[default]
    Merge,
    /// Only CRI `supplemental_groups` (and the primary gid).
    Strict,
}

/// What CRI and the image ask for. Precedence: `run_as_username`, else
/// `run_as_user` (uid), else the image `User`; `run_as_group` overrides the
/// gid whichever of those named the user.
#[derive(Debug, Clone, Default)]
pub struct UserRequest {
    pub run_as_user: Option<i64>,
    /// An empty string counts as unset (proto3 has no absent strings).
    pub run_as_username: Option<String>,
    pub run_as_group: Option<i64>,
    /// The image config's `User`: "", "1002", "name", "uid:gid",
    /// "name:group", "uid:group", "name:gid". Empty means root.
    pub image_user: String,
    pub supplemental_groups: Vec<i64>,
    pub policy: GroupsPolicy,
}

/// uid or gid, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Uid,
    Gid,
}

impl std::fmt::Display for IdKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IdKind::Uid => "uid",
            IdKind::Gid => "gid",
        })
    }
}

/// Why the user could not be resolved; each names the user, group, id or
/// file it acted on.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(
        "{kind} {value} (from {origin}) is out of range (max {MAX_ID}; larger ids would wrap, CVE-2024-40635)"
    )]
    IdOutOfRange {
        kind: IdKind,
        value: String,
        origin: String,
    },
    #[error("{kind} {value} (from {origin}) is negative; ids must be in 0..={MAX_ID}")]
    NegativeId {
        kind: IdKind,
        value: String,
        origin: String,
    },
    #[error(
        "image User {spec:?} is invalid: expected \"user\", \"uid\", \"user:group\" or \"uid:gid\""
    )]
    InvalidUserSpec { spec: String },
    #[error("user {name:?} not found in the container's /etc/passwd")]
    UserNotFound { name: String },
    #[error(
        "user {name:?} not found: the container has no /etc/passwd (use a numeric uid, or add the user to the image)"
    )]
    NoPasswdFile { name: String },
    #[error("group {name:?} not found in the container's /etc/group")]
    GroupNotFound { name: String },
    #[error(
        "group {name:?} not found: the container has no /etc/group (use a numeric gid, or add the group to the image)"
    )]
    NoGroupFile { name: String },
    #[error("the container's {file} is {size} bytes, over the {MAX_FILE_BYTES}-byte limit")]
    FileTooLarge { file: &'static str, size: u64 },
    #[error("the container's {file} is a {kind}, not a regular file")]
    NotRegularFile {
        file: &'static str,
        kind: &'static str,
    },
    #[error(
        "resolving the container's {file} followed more than {MAX_SYMLINK_HOPS} symlinks (a symlink loop?)"
    )]
    TooManySymlinks { file: &'static str },
    #[error("reading the container's {file} under rootfs {}: {err}", rootfs.display())]
    Io {
        file: &'static str,
        rootfs: PathBuf,
        #[source]
        err: std::io::Error,
    },
}

/// One usable `/etc/passwd` line. `uid`/`gid` are `None` when the field is
/// numeric but out of range; selecting such an entry is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: Option<u32>,
    uid_raw: String,
    gid: Option<u32>,
    gid_raw: String,
    home: String,
}

/// One usable `/etc/group` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: Option<u32>,
    gid_raw: String,
    members: Vec<String>,
}

/// A parsed id field: text (a name), or a number in range, too large, or
/// negative.
enum Numeric {
    Text,
    InRange(u32),
    OutOfRange,
    Negative,
}

fn parse_numeric(s: &str) -> Numeric {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Numeric::Text;
    }
    if neg && digits.bytes().any(|b| b != b'0') {
        return Numeric::Negative;
    }
    // Any digit string too long for u64 is out of range too: never wrap.
    match digits.parse::<u64>() {
        Ok(v) if v <= u64::from(MAX_ID) => Numeric::InRange(v as u32),
        _ => Numeric::OutOfRange,
    }
}

/// Checks a CRI integer id.
fn check_i64(kind: IdKind, value: i64, origin: &str) -> Result<u32, UserError> {
    if value < 0 {
        return Err(UserError::NegativeId {
            kind,
            value: value.to_string(),
            origin: origin.to_owned(),
        });
    }
    match u32::try_from(value) {
        Ok(v) if v <= MAX_ID => Ok(v),
        _ => Err(UserError::IdOutOfRange {
            kind,
            value: value.to_string(),
            origin: origin.to_owned(),
        }),
    }
}

/// An id field from a file entry, already known numeric.
fn entry_id(kind: IdKind, id: Option<u32>, raw: &str, origin: String) -> Result<u32, UserError> {
    id.ok_or_else(|| {
        let value = raw.to_owned();
        if raw.starts_with('-') {
            UserError::NegativeId {
                kind,
                value,
                origin,
            }
        } else {
            UserError::IdOutOfRange {
                kind,
                value,
                origin,
            }
        }
    })
}

/// Parses an id field of a passwd/group line: `None` skips the line
/// (not numeric), `Some(None)` keeps it as out of range.
fn id_field(s: &str) -> Option<Option<u32>> {
    match parse_numeric(s) {
        Numeric::Text => None,
        Numeric::InRange(v) => Some(Some(v)),
        Numeric::OutOfRange | Numeric::Negative => Some(None),
    }
}

/// Lines worth parsing: trimmed, not blank, not comments. NIS `+`/`-`
/// lines fall out later because their id fields are not numeric.
fn content_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// `name:password:uid:gid:gecos:home:shell`; lines without a name or with
/// non-numeric ids are skipped, missing trailing fields are empty.
fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    content_lines(text)
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let name = *f.first()?;
            if name.is_empty() || f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: name.to_owned(),
                uid: id_field(f[2])?,
                uid_raw: f[2].to_owned(),
                gid: id_field(f[3])?,
                gid_raw: f[3].to_owned(),
                home: f.get(5).copied().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

/// `name:password:gid:member,member`.
fn parse_group(text: &str) -> Vec<GroupEntry> {
    content_lines(text)
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let name = *f.first()?;
            if name.is_empty() || f.len() < 3 {
                return None;
            }
            let members = f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            Some(GroupEntry {
                name: name.to_owned(),
                gid: id_field(f[2])?,
                gid_raw: f[2].to_owned(),
                members,
            })
        })
        .collect()
}

/// Who the request names, before any file is read.
enum UserSpec {
    Name(String),
    Uid(u32),
}

enum GroupSpec {
    Name(String),
    Gid(u32),
}

/// A user or group part of the image `User`.
fn image_part(kind: IdKind, part: &str, spec: &str) -> Result<Result<u32, String>, UserError> {
    let origin = || format!("image User {spec:?}");
    match parse_numeric(part) {
        Numeric::InRange(v) => Ok(Ok(v)),
        Numeric::OutOfRange => Err(UserError::IdOutOfRange {
            kind,
            value: part.to_owned(),
            origin: origin(),
        }),
        Numeric::Negative => Err(UserError::NegativeId {
            kind,
            value: part.to_owned(),
            origin: origin(),
        }),
        Numeric::Text => Ok(Err(part.to_owned())),
    }
}

/// Splits the request into a user and an optional group, validating every
/// number given directly.
fn request_specs(req: &UserRequest) -> Result<(UserSpec, Option<GroupSpec>), UserError> {
    let mut group = match req.run_as_group {
        Some(g) => Some(GroupSpec::Gid(check_i64(IdKind::Gid, g, "run_as_group")?)),
        None => None,
    };
    let user = match (req.run_as_username.as_deref(), req.run_as_user) {
        (Some(name), _) if !name.is_empty() => UserSpec::Name(name.to_owned()),
        (_, Some(uid)) => UserSpec::Uid(check_i64(IdKind::Uid, uid, "run_as_user")?),
        _ => {
            let spec = req.image_user.as_str();
            if spec.is_empty() {
                UserSpec::Uid(0)
            } else {
                let invalid = || UserError::InvalidUserSpec {
                    spec: spec.to_owned(),
                };
                let (u, g) = match spec.split_once(':') {
                    Some((u, g)) => (u, Some(g)),
                    None => (spec, None),
                };
                if u.is_empty() || g.is_some_and(|g| g.is_empty() || g.contains(':')) {
                    return Err(invalid());
                }
                if let Some(g) = g
                    && group.is_none()
                {
                    group = Some(match image_part(IdKind::Gid, g, spec)? {
                        Ok(gid) => GroupSpec::Gid(gid),
                        Err(name) => GroupSpec::Name(name),
                    });
                }
                match image_part(IdKind::Uid, u, spec)? {
                    Ok(uid) => UserSpec::Uid(uid),
                    Err(name) => UserSpec::Name(name),
                }
            }
        }
    };
    Ok((user, group))
}

/// Resolves the container's user inside `rootfs`. Missing `/etc/passwd` or
/// `/etc/group` are fine for numeric ids; names then fail.
pub fn resolve(rootfs: &Path, req: &UserRequest) -> Result<ResolvedUser, UserError> {
    let (user_spec, group_spec) = request_specs(req)?;
    // Validate CRI supplemental groups before any file is read.
    let supplemental = req
        .supplemental_groups
        .iter()
        .map(|&g| check_i64(IdKind::Gid, g, "supplemental_groups"))
        .collect::<Result<Vec<u32>, _>>()?;

    let passwd = read_in_root(rootfs, PASSWD)?.map(|t| parse_passwd(&t));
    let entry = match &user_spec {
        UserSpec::Name(name) => {
            let Some(entries) = &passwd else {
                return Err(UserError::NoPasswdFile { name: name.clone() });
            };
            let found = entries.iter().find(|e| &e.name == name);
            Some(found.ok_or_else(|| UserError::UserNotFound { name: name.clone() })?)
        }
        UserSpec::Uid(uid) => passwd.iter().flatten().find(|e| e.uid == Some(*uid)),
    };
    let uid = match (&user_spec, entry) {
        (UserSpec::Uid(uid), _) => *uid,
        (UserSpec::Name(_), Some(e)) => entry_id(
            IdKind::Uid,
            e.uid,
            &e.uid_raw,
            format!("the /etc/passwd entry for {:?}", e.name),
        )?,
        (UserSpec::Name(name), None) => {
            return Err(UserError::UserNotFound { name: name.clone() });
        }
    };

    let needs_group_file = matches!(group_spec, Some(GroupSpec::Name(_)))
        || (req.policy == GroupsPolicy::Merge && entry.is_some());
    let groups = if needs_group_file {
        read_in_root(rootfs, GROUP)?.map(|t| parse_group(&t))
    } else {
        None
    };

    let gid = match &group_spec {
        Some(GroupSpec::Gid(gid)) => *gid,
        Some(GroupSpec::Name(name)) => {
            let Some(entries) = &groups else {
                return Err(UserError::NoGroupFile { name: name.clone() });
            };
            let g = entries
                .iter()
                .find(|g| &g.name == name)
                .ok_or_else(|| UserError::GroupNotFound { name: name.clone() })?;
            entry_id(
                IdKind::Gid,
                g.gid,
                &g.gid_raw,
                format!("the /etc/group entry for {:?}", g.name),
            )?
        }
        None => match entry {
            Some(e) => entry_id(
                IdKind::Gid,
                e.gid,
                &e.gid_raw,
                format!("the /etc/passwd entry for {:?}", e.name),
            )?,
            None => 0,
        },
    };

    let mut additional_gids = vec![gid];
    // A set, not Vec::contains: a hostile 4 MiB /etc/group can list the
    // user in ~100k groups, and a quadratic dedup would stall the daemon.
    let mut seen = std::collections::HashSet::from([gid]);
    let mut push = |g: u32| {
        if seen.insert(g) {
            additional_gids.push(g);
        }
    };
    if let (GroupsPolicy::Merge, Some(e), Some(groups)) = (req.policy, entry, &groups) {
        for g in groups.iter().filter(|g| g.members.contains(&e.name)) {
            push(entry_id(
                IdKind::Gid,
                g.gid,
                &g.gid_raw,
                format!("the /etc/group entry for {:?}", g.name),
            )?);
        }
    }
    for g in supplemental {
        push(g);
    }

    let home = match entry {
        Some(e) if !e.home.is_empty() => e.home.clone(),
        _ => "/".to_owned(),
    };
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
        username: entry.map(|e| e.name.clone()),
    })
}

/// Reads `file` (absolute, inside the container) under `rootfs`, resolving
/// every component by hand from a directory fd, as openat2's
/// `RESOLVE_IN_ROOT` would (which needs Linux 5.6): a symlink's absolute
/// target restarts at the rootfs, `..` stops at it, and each step opens
/// with `O_NOFOLLOW` so a component swapped for a symlink after the lstat
/// fails instead of escaping. `Ok(None)` when the file does not exist.
fn read_in_root(rootfs: &Path, file: &'static str) -> Result<Option<String>, UserError> {
    use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
    use nix::sys::stat::{Mode, fstat, fstatat};
    use std::collections::VecDeque;
    use std::ffi::OsString;
    use std::io::Read;
    use std::os::fd::OwnedFd;
    use std::path::Component;

    let io = |err: std::io::Error| UserError::Io {
        file,
        rootfs: rootfs.to_path_buf(),
        err,
    };
    let kind_of = |mode: u32| match mode & libc::S_IFMT {
        libc::S_IFDIR => "directory",
        libc::S_IFREG => "regular file",
        libc::S_IFLNK => "symlink",
        libc::S_IFIFO => "fifo",
        libc::S_IFSOCK => "socket",
        libc::S_IFCHR => "character device",
        libc::S_IFBLK => "block device",
        _ => "special file",
    };
    fn push_components(queue: &mut VecDeque<OsString>, path: &Path) -> bool {
        let mut absolute = false;
        for c in path.components().rev() {
            match c {
                Component::RootDir | Component::Prefix(_) => absolute = true,
                Component::CurDir => {}
                Component::ParentDir => queue.push_front("..".into()),
                Component::Normal(s) => queue.push_front(s.to_owned()),
            }
        }
        absolute
    }

    let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let root =
        openat(nix::fcntl::AT_FDCWD, rootfs, dir_flags, Mode::empty()).map_err(|e| io(e.into()))?;
    let mut stack: Vec<OwnedFd> = vec![root];
    let mut queue = VecDeque::new();
    push_components(&mut queue, Path::new(file));
    let mut hops = 0;

    while let Some(name) = queue.pop_front() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let dir = stack.last().expect("the root fd is never popped");
        let st = match fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => return Ok(None),
            Err(e) => return Err(io(e.into())),
        };
        let last = queue.is_empty();
        match st.st_mode & libc::S_IFMT {
            libc::S_IFLNK => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(UserError::TooManySymlinks { file });
                }
                let target = readlinkat(dir, name.as_os_str()).map_err(|e| io(e.into()))?;
                if push_components(&mut queue, Path::new(&target)) {
                    stack.truncate(1);
                }
            }
            libc::S_IFDIR if !last => {
                let fd = match openat(
                    dir,
                    name.as_os_str(),
                    dir_flags | OFlag::O_NOFOLLOW,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(nix::errno::Errno::ENOENT) => return Ok(None),
                    Err(e) => return Err(io(e.into())),
                };
                stack.push(fd);
            }
            // A file where a directory was expected: the path does not exist.
            _ if !last => return Ok(None),
            libc::S_IFREG => {
                // O_NONBLOCK: never hang on a fifo swapped in after the lstat.
                let flags = OFlag::O_RDONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_NONBLOCK
                    | OFlag::O_NOCTTY
                    | OFlag::O_CLOEXEC;
                let fd = match openat(dir, name.as_os_str(), flags, Mode::empty()) {
                    Ok(fd) => fd,
                    Err(nix::errno::Errno::ENOENT) => return Ok(None),
                    Err(e) => return Err(io(e.into())),
                };
                let st = fstat(&fd).map_err(|e| io(e.into()))?;
                if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                    return Err(UserError::NotRegularFile {
                        file,
                        kind: kind_of(st.st_mode),
                    });
                }
                let size = u64::try_from(st.st_size).unwrap_or(0);
                if size > MAX_FILE_BYTES {
                    return Err(UserError::FileTooLarge { file, size });
                }
                let mut buf = Vec::with_capacity(size as usize);
                // take(): the file may grow between fstat and read.
                std::fs::File::from(fd)
                    .take(MAX_FILE_BYTES + 1)
                    .read_to_end(&mut buf)
                    .map_err(io)?;
                if buf.len() as u64 > MAX_FILE_BYTES {
                    return Err(UserError::FileTooLarge {
                        file,
                        size: buf.len() as u64,
                    });
                }
                return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
            }
            mode => {
                return Err(UserError::NotRegularFile {
                    file,
                    kind: kind_of(mode),
                });
            }
        }
    }
    // The path ended on `..` or a symlink to a directory.
    Err(UserError::NotRegularFile {
        file,
        kind: "directory",
    })
}
