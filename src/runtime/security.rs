//! The security-related parts of a container's OCI runtime spec, built the
//! way containerd's CRI plugin (1.7/2.x) builds them: capabilities, masked
//! and read-only paths, seccomp (moby's default profile or a localhost
//! file), AppArmor, and devices (CRI devices, privileged host devices and
//! the device cgroup rules).
//!
//! Everything here is pure spec construction: nothing is applied to a
//! process. The OCI runtime (youki's libcontainer) enforces the result.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxCapabilities, LinuxDevice, LinuxDeviceCgroup,
    LinuxDeviceType, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};

/// Why a security setting could not be turned into spec; each variant names
/// the offending value.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    #[error("seccomp profile {path:?}: a localhost profile must be an absolute path")]
    SeccompProfileNotAbsolute { path: String },
    #[error("seccomp profile {}: cannot read it: {source}", path.display())]
    SeccompProfileRead { path: PathBuf, source: io::Error },
    #[error("seccomp profile {}: not a valid seccomp profile: {source}", path.display())]
    SeccompProfileParse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("seccomp profile {}: {problem}", path.display())]
    SeccompProfileInvalid { path: PathBuf, problem: String },
    #[error("apparmor profile {profile:?} requested but AppArmor is not enabled on this host")]
    AppArmorNotEnabled { profile: String },
    #[error("apparmor profile \"localhost/\": the profile name is empty")]
    AppArmorEmptyProfile,
    #[error("device {path}: the host path must be absolute")]
    DeviceHostPathNotAbsolute { path: String },
    #[error("device {path}: container path {container_path:?} must be absolute")]
    DeviceContainerPathNotAbsolute {
        path: String,
        container_path: String,
    },
    #[error("device {path}: permissions {permissions:?} are not a subset of \"rwm\"")]
    DevicePermissions { path: String, permissions: String },
    #[error("device {}: {source}", path.display())]
    DeviceIo { path: PathBuf, source: io::Error },
    #[error("device {}: not a character or block device", path.display())]
    NotADevice { path: PathBuf },
}

// ---------------------------------------------------------------------------
// Capabilities
// ---------------------------------------------------------------------------

/// Capability names without the `CAP_` prefix, indexed by capability number
/// (0 = CAP_CHOWN … 40 = CAP_CHECKPOINT_RESTORE).
const CAPABILITY_NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// containerd's default capability set, in containerd's order.
const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// containerd's default capability set (`CAP_` names), in containerd's order.
pub fn default_capabilities() -> Vec<String> {
    DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect()
}

/// Every capability the running kernel knows (0 ..= `cap_last_cap`), as
/// `CAP_` names in capability-number order. Numbers beyond our table (newer
/// kernels) are skipped; if `/proc/sys/kernel/cap_last_cap` cannot be read,
/// the whole table is returned.
///
/// Limited to this process's bounding set, as containerd's
/// `WithAllCurrentCapabilities`: a capability crius itself lacks (here
/// CAP_SYS_RESOURCE) cannot be granted, and asking for it makes capset fail.
pub fn all_capabilities() -> Vec<String> {
    let last = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok());
    let bounding = fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    });
    capabilities_up_to(last)
        .into_iter()
        .enumerate()
        .filter(|(bit, _)| bounding.is_none_or(|b| b & (1u64 << bit) != 0))
        .map(|(_, name)| name)
        .collect()
}

fn capabilities_up_to(last: Option<usize>) -> Vec<String> {
    let count = last.map_or(CAPABILITY_NAMES.len(), |l| {
        l.saturating_add(1).min(CAPABILITY_NAMES.len())
    });
    CAPABILITY_NAMES[..count]
        .iter()
        .map(|n| format!("CAP_{n}"))
        .collect()
}

/// `sys_admin`, `CAP_SYS_ADMIN`, `cap_sys_admin` → `CAP_SYS_ADMIN`.
fn normalize_capability(name: &str) -> Result<String, SecurityError> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if CAPABILITY_NAMES.contains(&bare) {
        Ok(format!("CAP_{bare}"))
    } else {
        Err(SecurityError::UnknownCapability(name.to_string()))
    }
}

fn is_all(name: &str) -> bool {
    name.eq_ignore_ascii_case("ALL")
}

/// The container's final capability list, following containerd's
/// `WithCapabilities`:
///
/// * privileged: every capability the kernel knows; add/drop are ignored
///   (containerd does not apply them to privileged containers);
/// * otherwise start from [`default_capabilities`]; `ALL` in `add` switches to
///   every capability, then `ALL` in `drop` empties the set (so drop-ALL wins
///   over add-ALL), then the individual adds are applied, then the
///   individual drops.
///
/// Names may carry the `CAP_` prefix or not, in any case. An unknown name is
/// an error. The result is sorted by name and free of duplicates.
pub fn capabilities(
    add: &[String],
    drop: &[String],
    privileged: bool,
) -> Result<Vec<String>, SecurityError> {
    if privileged {
        let mut all = all_capabilities();
        all.sort();
        return Ok(all);
    }
    let mut set: BTreeSet<String> = default_capabilities().into_iter().collect();
    if add.iter().any(|n| is_all(n)) {
        set = all_capabilities().into_iter().collect();
    }
    if drop.iter().any(|n| is_all(n)) {
        set.clear();
    }
    for name in add.iter().filter(|n| !is_all(n)) {
        set.insert(normalize_capability(name)?);
    }
    for name in drop.iter().filter(|n| !is_all(n)) {
        set.remove(&normalize_capability(name)?);
    }
    Ok(set.into_iter().collect())
}

/// The OCI capability sets for `caps`: bounding, effective and permitted are
/// the list; inheritable and ambient are empty (containerd clears ambient
/// capabilities, and has kept inheritable empty since 1.6.2, for
/// CVE-2022-24769).
pub fn linux_capabilities(caps: &[String]) -> Result<LinuxCapabilities, SecurityError> {
    let mut set = Capabilities::new();
    for name in caps {
        let norm = normalize_capability(name)?;
        let cap: Capability = serde_json::from_value(serde_json::Value::String(norm))
            .map_err(|_| SecurityError::UnknownCapability(name.clone()))?;
        set.insert(cap);
    }
    let mut out = LinuxCapabilities::default();
    out.set_bounding(Some(set.clone()));
    out.set_effective(Some(set.clone()));
    out.set_permitted(Some(set));
    out.set_inheritable(Some(Capabilities::new()));
    out.set_ambient(Some(Capabilities::new()));
    Ok(out)
}

// ---------------------------------------------------------------------------
// Masked and read-only paths
// ---------------------------------------------------------------------------

/// containerd's default masked paths (cleared for privileged containers).
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

/// containerd's default read-only paths (cleared for privileged containers).
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

// ---------------------------------------------------------------------------
// Seccomp
// ---------------------------------------------------------------------------

/// A CRI `SecurityProfile` as the domain sees it. For seccomp `Localhost`
/// holds the absolute path of the profile file; for AppArmor the profile
/// name (without the `localhost/` prefix).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
pub enum Profile {
    #[default]
    RuntimeDefault,
    Unconfined,
    Localhost(String),
}

/// The seccomp section of the spec: `None` for `Unconfined` or a privileged
/// container; [`default_seccomp`] for `RuntimeDefault`; for `Localhost(path)`
/// the JSON file at that absolute path, in OCI `LinuxSeccomp` form or in
/// Docker's profile form (`archMap`, `name`/`names`, `includes`/`excludes`
/// filtered against `caps`, the host architecture and kernel).
///
/// `caps` is the container's final capability list; the default profile
/// allows extra syscalls for the capabilities held.
pub fn seccomp(
    profile: &Profile,
    privileged: bool,
    caps: &[String],
) -> Result<Option<LinuxSeccomp>, SecurityError> {
    if privileged {
        return Ok(None);
    }
    match profile {
        Profile::Unconfined => Ok(None),
        Profile::RuntimeDefault => Ok(Some(default_seccomp(caps))),
        Profile::Localhost(path) => {
            let path = path.strip_prefix("localhost/").unwrap_or(path);
            if !Path::new(path).is_absolute() {
                return Err(SecurityError::SeccompProfileNotAbsolute {
                    path: path.to_string(),
                });
            }
            load_profile(Path::new(path), &Host::current(caps)).map(Some)
        }
    }
}

/// What a profile's `includes`/`excludes` are checked against.
#[derive(Debug, Clone)]
struct Host {
    /// Normalised `CAP_` names.
    caps: BTreeSet<String>,
    /// The native architecture in moby's naming (`amd64`, `arm64`, …).
    arch: &'static str,
    /// The native architecture as a seccomp architecture, if known.
    scmp_arch: Option<Arch>,
    /// Running kernel (major, minor), if it could be read.
    kernel: Option<(u64, u64)>,
}

impl Host {
    fn current(caps: &[String]) -> Self {
        let (arch, scmp_arch) = native_arch();
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|r| parse_kernel_version(&r));
        Host {
            caps: normalize_caps_lenient(caps),
            arch,
            scmp_arch,
            kernel,
        }
    }

    fn has_cap(&self, cap: &str) -> bool {
        let upper = cap.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        self.caps.contains(&format!("CAP_{bare}"))
    }

    /// moby's filter: every included cap held, the native arch among the
    /// included arches (when any), no excluded cap held, the native arch not
    /// among the excluded arches.
    fn applies<S: AsRef<str>>(&self, inc: Filter<'_, S>, exc: Filter<'_, S>) -> bool {
        if exc.arches.iter().any(|a| a.as_ref() == self.arch) {
            return false;
        }
        if !inc.arches.is_empty() && !inc.arches.iter().any(|a| a.as_ref() == self.arch) {
            return false;
        }
        if exc.caps.iter().any(|c| self.has_cap(c.as_ref())) {
            return false;
        }
        inc.caps.iter().all(|c| self.has_cap(c.as_ref()))
    }
}

#[derive(Debug, Clone, Copy)]
struct Filter<'a, S> {
    caps: &'a [S],
    arches: &'a [S],
}

fn normalize_caps_lenient(caps: &[String]) -> BTreeSet<String> {
    caps.iter()
        .map(|c| {
            let upper = c.trim().to_ascii_uppercase();
            let bare = upper.strip_prefix("CAP_").unwrap_or(&upper).to_string();
            format!("CAP_{bare}")
        })
        .collect()
}

/// The native architecture: moby's name and the seccomp architecture.
fn native_arch() -> (&'static str, Option<Arch>) {
    if cfg!(target_arch = "x86_64") {
        ("amd64", Some(Arch::ScmpArchX86_64))
    } else if cfg!(target_arch = "aarch64") {
        ("arm64", Some(Arch::ScmpArchAarch64))
    } else if cfg!(target_arch = "x86") {
        ("x86", Some(Arch::ScmpArchX86))
    } else if cfg!(target_arch = "arm") {
        ("arm", Some(Arch::ScmpArchArm))
    } else if cfg!(target_arch = "riscv64") {
        ("riscv64", Some(Arch::ScmpArchRiscv64))
    } else if cfg!(target_arch = "s390x") {
        ("s390x", Some(Arch::ScmpArchS390x))
    } else if cfg!(all(target_arch = "powerpc64", target_endian = "little")) {
        ("ppc64le", Some(Arch::ScmpArchPpc64le))
    } else if cfg!(target_arch = "loongarch64") {
        ("loong64", Some(Arch::ScmpArchLoongarch64))
    } else {
        ("", None)
    }
}

/// The architectures of the default profile: the native one plus the
/// compat ones it can run (moby's `archMap`).
fn default_architectures(native: Option<Arch>) -> Vec<Arch> {
    match native {
        Some(Arch::ScmpArchX86_64) => {
            vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
        }
        Some(Arch::ScmpArchAarch64) => vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
        Some(Arch::ScmpArchS390x) => vec![Arch::ScmpArchS390x, Arch::ScmpArchS390],
        Some(other) => vec![other],
        None => Vec::new(),
    }
}

/// `6.8.0-49-generic` → (6, 8); `4.8` → (4, 8).
fn parse_kernel_version(release: &str) -> Option<(u64, u64)> {
    let mut parts = release.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor_digits: String = parts
        .next()
        .unwrap_or("0")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let minor = if minor_digits.is_empty() {
        0
    } else {
        minor_digits.parse().ok()?
    };
    Some((major, minor))
}

/// Syscalls moby's default profile allows unconditionally (sorted).
#[rustfmt::skip]
const DEFAULT_ALLOWED_SYSCALLS: &[&str] = &[
    "_llseek", "_newselect", "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk",
    "capget", "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64",
    "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
    "clock_nanosleep_time64", "close", "close_range", "connect", "copy_file_range", "creat", "dup",
    "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat",
    "exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate",
    "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchown", "fchown32", "fchownat", "fcntl",
    "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr",
    "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate",
    "ftruncate64", "futex", "futex_time64", "futex_waitv", "futimesat", "get_robust_list",
    "get_thread_area", "getcpu", "getcwd", "getdents", "getdents64", "getegid", "getegid32",
    "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getitimer",
    "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom",
    "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit", "getrusage", "getsid",
    "getsockname", "getsockopt", "gettid", "gettimeofday", "getuid", "getuid32", "getxattr",
    "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel",
    "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64", "io_setup", "io_submit",
    "io_uring_enter", "io_uring_register", "io_uring_setup", "ioctl", "ioprio_get", "ioprio_set",
    "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
    "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr",
    "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "madvise", "membarrier",
    "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock",
    "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mq_getsetattr", "mq_notify", "mq_open",
    "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64",
    "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock",
    "munlockall", "munmap", "name_to_handle_at", "nanosleep", "newfstatat", "open", "openat",
    "openat2", "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc",
    "pkey_free", "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv",
    "preadv2", "prlimit64", "process_mrelease", "pselect6", "pselect6_time64", "pwrite64",
    "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "recv",
    "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr",
    "rename", "renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction",
    "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
    "seccomp", "select", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send",
    "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto", "set_robust_list",
    "set_thread_area", "set_tid_address", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32",
    "setgid", "setgid32", "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority",
    "setregid", "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid",
    "setreuid32", "setrlimit", "setsid", "setsockopt", "setuid", "setuid32", "setxattr", "shmat",
    "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4", "sigprocmask",
    "sigreturn", "socketcall", "socketpair", "splice", "stat", "stat64", "statfs", "statfs64",
    "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee",
    "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
    "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create", "timerfd_gettime",
    "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate",
    "truncate64", "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat",
    "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write",
    "writev",
];

/// One conditional rule of the default profile.
#[derive(Debug)]
struct DefaultRule {
    names: &'static [&'static str],
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    /// (index, value, op)
    args: &'static [(usize, u64, LinuxSeccompOperator)],
    includes_caps: &'static [&'static str],
    includes_arches: &'static [&'static str],
    excludes_caps: &'static [&'static str],
    excludes_arches: &'static [&'static str],
}

const fn allow(names: &'static [&'static str]) -> DefaultRule {
    DefaultRule {
        names,
        action: LinuxSeccompAction::ScmpActAllow,
        errno_ret: None,
        args: &[],
        includes_caps: &[],
        includes_arches: &[],
        excludes_caps: &[],
        excludes_arches: &[],
    }
}

const fn allow_with_cap(
    names: &'static [&'static str],
    cap: &'static [&'static str],
) -> DefaultRule {
    DefaultRule {
        includes_caps: cap,
        ..allow(names)
    }
}

const fn allow_on_arches(
    names: &'static [&'static str],
    arches: &'static [&'static str],
) -> DefaultRule {
    DefaultRule {
        includes_arches: arches,
        ..allow(names)
    }
}

const fn allow_personality(args: &'static [(usize, u64, LinuxSeccompOperator)]) -> DefaultRule {
    DefaultRule {
        args,
        ..allow(&["personality"])
    }
}

/// Namespace flags of clone(2): CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC |
/// CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
const AF_VSOCK: u64 = 40;
const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The rest of moby's default profile, in moby's order.
const DEFAULT_RULES: &[DefaultRule] = &[
    // moby gates these on kernel >= 4.8 (where ptrace can no longer bypass
    // seccomp); every kernel crius supports is newer.
    allow(&["process_vm_readv", "process_vm_writev", "ptrace"]),
    DefaultRule {
        args: &[(0, AF_VSOCK, LinuxSeccompOperator::ScmpCmpNe)],
        ..allow(&["socket"])
    },
    allow_personality(&[(0, 0x0, LinuxSeccompOperator::ScmpCmpEq)]),
    allow_personality(&[(0, 0x0008, LinuxSeccompOperator::ScmpCmpEq)]),
    allow_personality(&[(0, 0x20000, LinuxSeccompOperator::ScmpCmpEq)]),
    allow_personality(&[(0, 0x20008, LinuxSeccompOperator::ScmpCmpEq)]),
    allow_personality(&[(0, 0xffff_ffff, LinuxSeccompOperator::ScmpCmpEq)]),
    allow_on_arches(&["sync_file_range2", "swapcontext"], &["ppc64le"]),
    allow_on_arches(
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
        &["arm", "arm64"],
    ),
    allow_on_arches(&["arch_prctl"], &["amd64", "x32"]),
    allow_on_arches(&["modify_ldt"], &["amd64", "x32", "x86"]),
    allow_on_arches(
        &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
        &["s390", "s390x"],
    ),
    allow_on_arches(&["riscv_flush_icache"], &["riscv64"]),
    allow_with_cap(&["open_by_handle_at"], &["CAP_DAC_READ_SEARCH"]),
    allow_with_cap(
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
        &["CAP_SYS_ADMIN"],
    ),
    DefaultRule {
        args: &[(
            0,
            CLONE_NAMESPACE_FLAGS,
            LinuxSeccompOperator::ScmpCmpMaskedEq,
        )],
        excludes_caps: &["CAP_SYS_ADMIN"],
        excludes_arches: &["s390", "s390x"],
        ..allow(&["clone"])
    },
    // s390 passes clone's flags as the second argument.
    DefaultRule {
        args: &[(
            1,
            CLONE_NAMESPACE_FLAGS,
            LinuxSeccompOperator::ScmpCmpMaskedEq,
        )],
        includes_arches: &["s390", "s390x"],
        excludes_caps: &["CAP_SYS_ADMIN"],
        ..allow(&["clone"])
    },
    // clone3's flags live in a struct seccomp cannot inspect: make libc fall
    // back to clone by answering ENOSYS.
    DefaultRule {
        action: LinuxSeccompAction::ScmpActErrno,
        errno_ret: Some(ENOSYS),
        excludes_caps: &["CAP_SYS_ADMIN"],
        ..allow(&["clone3"])
    },
    allow_with_cap(&["reboot"], &["CAP_SYS_BOOT"]),
    allow_with_cap(&["chroot"], &["CAP_SYS_CHROOT"]),
    allow_with_cap(
        &["delete_module", "init_module", "finit_module"],
        &["CAP_SYS_MODULE"],
    ),
    allow_with_cap(&["acct"], &["CAP_SYS_PACCT"]),
    allow_with_cap(
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
        &["CAP_SYS_PTRACE"],
    ),
    allow_with_cap(&["iopl", "ioperm"], &["CAP_SYS_RAWIO"]),
    allow_with_cap(
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
        &["CAP_SYS_TIME"],
    ),
    allow_with_cap(&["vhangup"], &["CAP_SYS_TTY_CONFIG"]),
    allow_with_cap(
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
        &["CAP_SYS_NICE"],
    ),
    allow_with_cap(&["syslog"], &["CAP_SYSLOG"]),
    allow_with_cap(&["bpf"], &["CAP_BPF"]),
    allow_with_cap(&["perf_event_open"], &["CAP_PERFMON"]),
];

fn syscall_rule(
    names: Vec<String>,
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    args: Option<Vec<LinuxSeccompArg>>,
) -> LinuxSyscall {
    let mut rule = LinuxSyscall::default();
    rule.set_names(names);
    rule.set_action(action);
    rule.set_errno_ret(errno_ret);
    rule.set_args(args.filter(|a| !a.is_empty()));
    rule
}

/// `None` only if oci-spec's builder failed, which it cannot: every field is
/// set or defaulted.
fn seccomp_arg(index: usize, value: u64, op: LinuxSeccompOperator) -> Option<LinuxSeccompArg> {
    LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op)
        .build()
        .ok()
}

/// containerd's/moby's default seccomp profile (moby `profiles/seccomp/
/// default.json`, v25–v27): deny with EPERM by default; the native
/// architecture and its compat ones; the allow-list; personality and socket
/// argument filters; clone without namespace flags and clone3 → ENOSYS
/// unless CAP_SYS_ADMIN is held; and the syscall groups each capability in
/// `caps` unlocks.
pub fn default_seccomp(caps: &[String]) -> LinuxSeccomp {
    default_seccomp_for(&Host::current(caps))
}

fn default_seccomp_for(host: &Host) -> LinuxSeccomp {
    let mut syscalls = vec![syscall_rule(
        DEFAULT_ALLOWED_SYSCALLS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        LinuxSeccompAction::ScmpActAllow,
        None,
        None,
    )];
    for rule in DEFAULT_RULES {
        let inc = Filter {
            caps: rule.includes_caps,
            arches: rule.includes_arches,
        };
        let exc = Filter {
            caps: rule.excludes_caps,
            arches: rule.excludes_arches,
        };
        if !host.applies(inc, exc) {
            continue;
        }
        let args: Option<Vec<_>> = rule
            .args
            .iter()
            .map(|&(index, value, op)| seccomp_arg(index, value, op))
            .collect();
        // Unreachable, but fail closed: a rule that cannot be built is left
        // out, which only denies more.
        let Some(args) = args else { continue };
        syscalls.push(syscall_rule(
            rule.names.iter().map(|s| s.to_string()).collect(),
            rule.action,
            rule.errno_ret,
            Some(args),
        ));
    }
    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActErrno);
    profile.set_default_errno_ret(Some(EPERM));
    let arches = default_architectures(host.scmp_arch);
    profile.set_architectures((!arches.is_empty()).then_some(arches));
    profile.set_syscalls(Some(syscalls));
    profile
}

/// A seccomp profile file: the union of the OCI `LinuxSeccomp` form and
/// Docker's form.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileProfile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<Arch>>,
    #[serde(default)]
    arch_map: Option<Vec<FileArchMap>>,
    #[serde(default)]
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    #[serde(default)]
    listener_path: Option<PathBuf>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Option<Vec<FileSyscall>>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileSyscall {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Option<Vec<String>>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: Option<FileFilter>,
    #[serde(default)]
    excludes: Option<FileFilter>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileFilter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

fn load_profile(path: &Path, host: &Host) -> Result<LinuxSeccomp, SecurityError> {
    let bytes = fs::read(path).map_err(|source| SecurityError::SeccompProfileRead {
        path: path.to_path_buf(),
        source,
    })?;
    let file: FileProfile =
        serde_json::from_slice(&bytes).map_err(|source| SecurityError::SeccompProfileParse {
            path: path.to_path_buf(),
            source,
        })?;
    convert_profile(file, host).map_err(|problem| SecurityError::SeccompProfileInvalid {
        path: path.to_path_buf(),
        problem,
    })
}

/// Docker/OCI file form → OCI, filtered for `host` (moby's `setupSeccomp`).
fn convert_profile(file: FileProfile, host: &Host) -> Result<LinuxSeccomp, String> {
    let mut out = LinuxSeccomp::default();
    out.set_default_action(file.default_action);
    out.set_default_errno_ret(file.default_errno_ret);
    out.set_flags(file.flags);
    out.set_listener_path(file.listener_path);
    out.set_listener_metadata(file.listener_metadata);

    let arch_map = file.arch_map.unwrap_or_default();
    let architectures = file.architectures.unwrap_or_default();
    if !arch_map.is_empty() && !architectures.is_empty() {
        return Err("both \"architectures\" and \"archMap\" are set; use one".to_string());
    }
    if !architectures.is_empty() {
        out.set_architectures(Some(architectures));
    } else if let Some(entry) = host
        .scmp_arch
        .and_then(|native| arch_map.into_iter().find(|m| m.architecture == native))
    {
        let mut arches = vec![entry.architecture];
        arches.extend(entry.sub_architectures.unwrap_or_default());
        out.set_architectures(Some(arches));
    }

    let mut syscalls = Vec::new();
    for (i, call) in file.syscalls.unwrap_or_default().into_iter().enumerate() {
        let name = call.name.filter(|n| !n.is_empty());
        let names = call.names.filter(|n| !n.is_empty());
        let names = match (name, names) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "syscalls[{i}]: both \"name\" and \"names\" are set; use one"
                ));
            }
            (Some(name), None) => vec![name],
            (None, Some(names)) => names,
            (None, None) => return Err(format!("syscalls[{i}]: no syscall names")),
        };
        let inc = call.includes.unwrap_or_default();
        let exc = call.excludes.unwrap_or_default();
        if let Some(min) = inc.min_kernel.as_deref().filter(|m| !m.is_empty()) {
            let wanted = parse_kernel_version(min)
                .ok_or_else(|| format!("syscalls[{i}]: invalid includes.minKernel {min:?}"))?;
            if host.kernel.is_some_and(|running| running < wanted) {
                continue;
            }
        }
        let inc_caps = inc.caps.unwrap_or_default();
        let inc_arches = inc.arches.unwrap_or_default();
        let exc_caps = exc.caps.unwrap_or_default();
        let exc_arches = exc.arches.unwrap_or_default();
        let applies = host.applies(
            Filter {
                caps: &inc_caps,
                arches: &inc_arches,
            },
            Filter {
                caps: &exc_caps,
                arches: &exc_arches,
            },
        );
        if applies {
            syscalls.push(syscall_rule(names, call.action, call.errno_ret, call.args));
        }
    }
    out.set_syscalls((!syscalls.is_empty()).then_some(syscalls));
    Ok(out)
}

// ---------------------------------------------------------------------------
// AppArmor
// ---------------------------------------------------------------------------

/// The AppArmor profile for the process, following containerd:
///
/// * `None`: no profile.
/// * `RuntimeDefault`: an error on a host without AppArmor (as containerd).
///   Where AppArmor is enabled containerd would load and apply its default
///   profile (never to a privileged container); crius does not load one yet,
///   so the container runs without one and a warning is logged.
/// * `Unconfined`: no profile.
/// * `Localhost(name)`: the named profile, already loaded on the host; an
///   error when the host has no AppArmor (containerd fails the same way
///   rather than silently running unconfined).
pub fn apparmor(
    profile: Option<&Profile>,
    host_has_apparmor: bool,
    privileged: bool,
) -> Result<Option<String>, SecurityError> {
    match profile {
        None => Ok(None),
        // As containerd: asking for a profile on a host without AppArmor
        // fails loudly rather than running unconfined.
        Some(Profile::RuntimeDefault) if !host_has_apparmor => {
            Err(SecurityError::AppArmorNotEnabled {
                profile: "runtime/default".into(),
            })
        }
        Some(Profile::RuntimeDefault) => {
            if !privileged {
                tracing::warn!(
                    "AppArmor runtime/default requested: crius does not load a default profile yet; the container runs without one"
                );
            }
            Ok(None)
        }
        Some(Profile::Unconfined) => Ok(None),
        Some(Profile::Localhost(name)) => {
            let name = name.strip_prefix("localhost/").unwrap_or(name);
            if !host_has_apparmor {
                return Err(SecurityError::AppArmorNotEnabled {
                    profile: format!("localhost/{name}"),
                });
            }
            if name.is_empty() {
                return Err(SecurityError::AppArmorEmptyProfile);
            }
            Ok(Some(name.to_string()))
        }
    }
}

/// Whether the kernel has AppArmor enabled
/// (`/sys/module/apparmor/parameters/enabled` starts with `Y`).
pub fn host_has_apparmor() -> bool {
    fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim_start().starts_with('Y'))
}

// ---------------------------------------------------------------------------
// Devices
// ---------------------------------------------------------------------------

/// Directories under a device directory that are never walked (containerd's
/// `getDevices`: mounts of their own or LXC/udev internals).
const SKIPPED_DEVICE_DIRS: &[&str] =
    &["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// `""` → `rwm`; otherwise the letters of `permissions`, which must all be
/// `r`, `w` or `m`, in canonical order.
fn device_access(host_path: &str, permissions: &str) -> Result<String, SecurityError> {
    if permissions.is_empty() {
        return Ok("rwm".to_string());
    }
    if !permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(SecurityError::DevicePermissions {
            path: host_path.to_string(),
            permissions: permissions.to_string(),
        });
    }
    Ok("rwm".chars().filter(|c| permissions.contains(*c)).collect())
}

/// The device node at `path` (not following a symlink), or `None` when it is
/// not a character or block device.
fn device_at(path: &Path, container_path: PathBuf) -> Result<Option<LinuxDevice>, SecurityError> {
    let io_err = |source| SecurityError::DeviceIo {
        path: path.to_path_buf(),
        source,
    };
    let meta = fs::symlink_metadata(path).map_err(io_err)?;
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return Ok(None);
    };
    let rdev = meta.rdev();
    let number = |n: u64| {
        i64::try_from(n).map_err(|_| io_err(io::Error::other("device number out of range")))
    };
    let mut dev = LinuxDevice::default();
    dev.set_path(container_path);
    dev.set_typ(typ);
    dev.set_major(number(nix::sys::stat::major(rdev))?);
    dev.set_minor(number(nix::sys::stat::minor(rdev))?);
    dev.set_file_mode(Some(meta.mode() & 0o7777));
    dev.set_uid(Some(meta.uid()));
    dev.set_gid(Some(meta.gid()));
    Ok(Some(dev))
}

/// Every device node under `dir`, recursively, mapped under `container_dir`
/// (containerd's `getDevices`): skips [`SKIPPED_DEVICE_DIRS`], `console`,
/// symlinks, non-devices and entries that vanish meanwhile. Sorted by name.
fn devices_in_dir(
    dir: &Path,
    container_dir: &Path,
    out: &mut Vec<LinuxDevice>,
) -> Result<(), SecurityError> {
    let io_err = |source| SecurityError::DeviceIo {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = fs::read_dir(dir)
        .map_err(io_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let host = entry.path();
        let target = container_dir.join(&name);
        let ft = match entry.file_type() {
            Ok(ft) => ft,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(SecurityError::DeviceIo { path: host, source }),
        };
        if ft.is_dir() {
            if SKIPPED_DEVICE_DIRS.iter().any(|s| name == *s) {
                continue;
            }
            devices_in_dir(&host, &target, out)?;
        } else if name == "console" {
            continue;
        } else {
            match device_at(&host, target) {
                Ok(Some(dev)) => out.push(dev),
                Ok(None) => {}
                Err(SecurityError::DeviceIo { source, .. })
                    if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn allow_rule(dev: &LinuxDevice, access: &str) -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(true);
    rule.set_typ(Some(dev.typ()));
    rule.set_major(Some(dev.major()));
    rule.set_minor(Some(dev.minor()));
    rule.set_access(Some(access.to_string()));
    rule
}

/// A CRI device: the device node(s) to create and the cgroup rules allowing
/// them.
///
/// `host_path` must be absolute; symlinks in it are resolved. It must be a
/// character or block device, or — like containerd — a directory whose
/// device nodes are all added, recursively, under `container_path` (an empty
/// directory gives nothing). `container_path` defaults to `host_path` when
/// empty. `permissions` is a subset of `rwm` (default `rwm`). Node uid, gid
/// and mode are the host node's.
pub fn host_devices(
    host_path: &str,
    container_path: &str,
    permissions: &str,
) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), SecurityError> {
    let access = device_access(host_path, permissions)?;
    if !Path::new(host_path).is_absolute() {
        return Err(SecurityError::DeviceHostPathNotAbsolute {
            path: host_path.to_string(),
        });
    }
    let container_path = if container_path.is_empty() {
        host_path
    } else {
        container_path
    };
    if !Path::new(container_path).is_absolute() {
        return Err(SecurityError::DeviceContainerPathNotAbsolute {
            path: host_path.to_string(),
            container_path: container_path.to_string(),
        });
    }
    let io_err = |source| SecurityError::DeviceIo {
        path: PathBuf::from(host_path),
        source,
    };
    let resolved = fs::canonicalize(host_path).map_err(io_err)?;
    let meta = fs::metadata(&resolved).map_err(io_err)?;
    let mut devices = Vec::new();
    if meta.is_dir() {
        devices_in_dir(&resolved, Path::new(container_path), &mut devices)?;
    } else {
        let dev = device_at(&resolved, PathBuf::from(container_path))?.ok_or_else(|| {
            SecurityError::NotADevice {
                path: PathBuf::from(host_path),
            }
        })?;
        devices.push(dev);
    }
    let rules = devices.iter().map(|d| allow_rule(d, &access)).collect();
    Ok((devices, rules))
}

/// For privileged containers (containerd's `WithHostDevices` +
/// `WithAllDevicesAllowed`): every character and block device under the
/// host's `/dev` at the same path — skipping `/dev/pts`, `/dev/shm`,
/// `/dev/fd`, `/dev/mqueue`, LXC/udev internals, `/dev/console` and
/// symlinks — and one cgroup rule allowing every device (`a *:* rwm`).
pub fn privileged_devices() -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), SecurityError> {
    let mut devices = Vec::new();
    devices_in_dir(Path::new("/dev"), Path::new("/dev"), &mut devices)?;
    let mut all = LinuxDeviceCgroup::default();
    all.set_allow(true);
    all.set_typ(Some(LinuxDeviceType::A));
    all.set_access(Some("rwm".to_string()));
    Ok((devices, vec![all]))
}

/// The device cgroup rules a non-privileged container starts with: only
/// "deny everything" (`a *:* rwm`), to be followed by the CRI devices'
/// allow rules.
///
/// This is all that libcontainer 0.7 leaves missing. Its cgroup managers
/// (libcgroups 0.7, v1 and v2 alike) append, after the spec's rules, allow
/// rules for /dev/null (1:3), zero (1:5), full (1:7), tty (5:0), urandom
/// (1:9), random (1:8), console (5:1), pts (136:*), ptmx (5:2), tun
/// (10:200) and mknod of any device (`c *:* m`, `b *:* m`); and its rootfs
/// setup creates the null, zero, full, tty, urandom and random nodes when
/// the spec does not list them. It never adds a deny rule, so without this
/// one a cgroup v1 container would inherit its parent's (usually
/// allow-all) device access. Note that on cgroup v2 libcgroups enforces
/// device rules only with its `cgroupsv2_devices` feature.
pub fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    let mut deny = LinuxDeviceCgroup::default();
    deny.set_allow(false);
    deny.set_typ(Some(LinuxDeviceType::A));
    deny.set_access(Some("rwm".to_string()));
    vec![deny]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    fn host(caps: &[&str]) -> Host {
        let (arch, scmp_arch) = native_arch();
        Host {
            caps: normalize_caps_lenient(&s(caps)),
            arch,
            scmp_arch,
            kernel: Some((6, 8)),
        }
    }

    /// The action the profile takes for `name` with no argument filters, or
    /// `Some(args)` rules: (action, errno, has_args) of every rule naming it.
    fn rules_for(p: &LinuxSeccomp, name: &str) -> Vec<(LinuxSeccompAction, Option<u32>, bool)> {
        p.syscalls()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|r| r.names().iter().any(|n| n == name))
            .map(|r| (r.action(), r.errno_ret(), r.args().is_some()))
            .collect()
    }

    fn unconditionally_allowed(p: &LinuxSeccomp, name: &str) -> bool {
        rules_for(p, name)
            .iter()
            .any(|&(a, _, args)| a == LinuxSeccompAction::ScmpActAllow && !args)
    }

    #[test]
    fn default_caps_in_containerd_order() {
        let caps = default_capabilities();
        assert_eq!(caps.len(), 14);
        assert_eq!(caps[0], "CAP_CHOWN");
        assert_eq!(caps[13], "CAP_AUDIT_WRITE");
        assert_eq!(
            capabilities(&[], &[], false).unwrap(),
            sorted(default_capabilities())
        );
    }

    #[test]
    fn all_caps_follow_cap_last_cap() {
        assert_eq!(capabilities_up_to(Some(40)).len(), 41);
        assert_eq!(capabilities_up_to(Some(63)).len(), 41);
        assert_eq!(capabilities_up_to(None).len(), 41);
        let upto = capabilities_up_to(Some(37));
        assert_eq!(upto.len(), 38);
        assert_eq!(upto.last().unwrap(), "CAP_AUDIT_READ");
        assert_eq!(capabilities_up_to(Some(0)), s(&["CAP_CHOWN"]));
        assert!(all_capabilities().contains(&"CAP_SYS_ADMIN".to_string()));
        // Every table name is one oci-spec knows.
        linux_capabilities(&capabilities_up_to(None)).unwrap();
    }

    #[test]
    fn add_and_drop_with_prefix_and_case() {
        let caps = capabilities(
            &s(&["sys_admin", "CAP_NET_ADMIN"]),
            &s(&["cap_chown", "KILL"]),
            false,
        )
        .unwrap();
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert!(!caps.contains(&"CAP_KILL".to_string()));
        assert_eq!(caps.len(), 14);
        let mut check = caps.clone();
        check.sort();
        check.dedup();
        assert_eq!(check, caps);
    }

    #[test]
    fn drop_all_then_add() {
        let caps = capabilities(&s(&["NET_BIND_SERVICE"]), &s(&["ALL"]), false).unwrap();
        assert_eq!(caps, s(&["CAP_NET_BIND_SERVICE"]));
        assert!(capabilities(&[], &s(&["all"]), false).unwrap().is_empty());
        // drop ALL wins over add ALL (containerd applies it after).
        assert_eq!(
            capabilities(&s(&["ALL", "KILL"]), &s(&["ALL"]), false).unwrap(),
            s(&["CAP_KILL"])
        );
    }

    #[test]
    fn add_all_then_drop() {
        let caps = capabilities(&s(&["all"]), &s(&["SYS_ADMIN"]), false).unwrap();
        assert_eq!(caps.len(), all_capabilities().len() - 1);
        assert!(!caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(caps.contains(&"CAP_SYS_MODULE".to_string()));
    }

    #[test]
    fn unknown_capability_is_an_error() {
        let err = capabilities(&s(&["CAP_FOO"]), &[], false).unwrap_err();
        assert_eq!(err.to_string(), "unknown capability \"CAP_FOO\"");
        assert!(capabilities(&[], &s(&["BAR"]), false).is_err());
        assert!(linux_capabilities(&s(&["CAP_NOPE"])).is_err());
    }

    #[test]
    fn privileged_gets_all() {
        let caps = capabilities(&[], &s(&["ALL"]), true).unwrap();
        assert_eq!(caps, sorted(all_capabilities()));
    }

    #[test]
    fn oci_capability_sets() {
        let lc = linux_capabilities(&s(&["CAP_KILL", "chown"])).unwrap();
        let want: Capabilities = [Capability::Kill, Capability::Chown].into_iter().collect();
        assert_eq!(lc.bounding().as_ref(), Some(&want));
        assert_eq!(lc.effective().as_ref(), Some(&want));
        assert_eq!(lc.permitted().as_ref(), Some(&want));
        assert!(lc.inheritable().as_ref().is_some_and(|c| c.is_empty()));
        assert!(lc.ambient().as_ref().is_some_and(|c| c.is_empty()));
    }

    #[test]
    fn syscall_list_is_sorted_and_unique() {
        assert!(DEFAULT_ALLOWED_SYSCALLS.windows(2).all(|w| w[0] < w[1]));
        for denied in [
            "unshare",
            "mount",
            "setns",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "ptrace",
            "kexec_load",
            "reboot",
            "init_module",
            "clone",
            "clone3",
            "umount2",
            "open_by_handle_at",
        ] {
            assert!(!DEFAULT_ALLOWED_SYSCALLS.contains(&denied), "{denied}");
        }
    }

    #[test]
    fn default_profile_denies_namespaces_without_sys_admin() {
        let p = default_seccomp_for(&host(&DEFAULT_CAPABILITIES));
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(1));
        for name in [
            "unshare",
            "mount",
            "setns",
            "keyctl",
            "add_key",
            "bpf",
            "kexec_load",
            "reboot",
            "init_module",
            "umount2",
            "syslog",
        ] {
            assert!(rules_for(&p, name).is_empty(), "{name} must not be allowed");
        }
        assert!(unconditionally_allowed(&p, "read"));
        assert!(unconditionally_allowed(&p, "chroot")); // CAP_SYS_CHROOT is default
        // ptrace: moby allows it on kernels >= 4.8
        assert!(unconditionally_allowed(&p, "ptrace"));
        // clone only with namespace flags masked out
        let clone = rules_for(&p, "clone");
        assert!(!clone.is_empty());
        assert!(clone.iter().all(|&(_, _, args)| args));
        // clone3 → ENOSYS
        assert_eq!(
            rules_for(&p, "clone3"),
            vec![(LinuxSeccompAction::ScmpActErrno, Some(38), false)]
        );
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                p.architectures().as_deref(),
                Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
            );
            assert!(unconditionally_allowed(&p, "arch_prctl"));
            assert!(rules_for(&p, "cacheflush").is_empty());
        }
    }

    #[test]
    fn default_profile_with_sys_admin_allows_namespaces() {
        let mut caps: Vec<&str> = DEFAULT_CAPABILITIES.to_vec();
        caps.push("CAP_SYS_ADMIN");
        let p = default_seccomp_for(&host(&caps));
        for name in [
            "unshare", "mount", "setns", "clone", "clone3", "bpf", "umount2",
        ] {
            assert!(unconditionally_allowed(&p, name), "{name}");
        }
        assert!(
            rules_for(&p, "clone3")
                .iter()
                .all(|&(a, _, _)| a == LinuxSeccompAction::ScmpActAllow)
        );
        assert!(rules_for(&p, "clone").iter().all(|&(_, _, args)| !args));
        assert!(rules_for(&p, "keyctl").is_empty());
        assert!(rules_for(&p, "kexec_load").is_empty());
    }

    #[test]
    fn default_profile_capability_groups() {
        let p = default_seccomp_for(&host(&["CAP_SYS_PTRACE", "CAP_SYS_MODULE", "CAP_SYS_BOOT"]));
        for name in [
            "kcmp",
            "pidfd_getfd",
            "init_module",
            "finit_module",
            "reboot",
        ] {
            assert!(unconditionally_allowed(&p, name), "{name}");
        }
        assert!(rules_for(&p, "chroot").is_empty());
        assert!(rules_for(&p, "settimeofday").is_empty());
    }

    #[test]
    fn default_profile_round_trips_through_json() {
        let p = default_seccomp(&default_capabilities());
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"defaultAction\":\"SCMP_ACT_ERRNO\""));
        assert!(json.contains("\"defaultErrnoRet\":1"));
        let back: LinuxSeccomp = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn seccomp_profile_selection() {
        let caps = default_capabilities();
        assert!(
            seccomp(&Profile::Unconfined, false, &caps)
                .unwrap()
                .is_none()
        );
        assert!(
            seccomp(&Profile::RuntimeDefault, true, &caps)
                .unwrap()
                .is_none()
        );
        let p = seccomp(&Profile::RuntimeDefault, false, &caps)
            .unwrap()
            .unwrap();
        assert_eq!(p, default_seccomp(&caps));
        let err =
            seccomp(&Profile::Localhost("rel/profile.json".into()), false, &caps).unwrap_err();
        assert!(err.to_string().contains("rel/profile.json"), "{err}");
    }

    const DOCKER_PROFILE: &str = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
            {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": null}
        ],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": []},
            {"name": "getpid", "action": "SCMP_ACT_ALLOW", "args": null},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
             "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
            {"names": ["futurecall"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
             "comment": "a comment"},
            {"names": ["nowhere"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["nosucharch"]}},
            {"names": ["everywhere_but"], "action": "SCMP_ACT_ALLOW",
             "excludes": {"arches": ["amd64", "arm64", "x86", "arm", "riscv64", "s390x", "ppc64le", "loong64"]}}
        ]
    }"#;

    fn write_profile(dir: &tempfile::TempDir, name: &str, body: &str) -> PathBuf {
        let path = dir.path().join(name);
        fs::write(&path, body).unwrap();
        path
    }

    #[test]
    fn docker_format_profile() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_profile(&dir, "docker.json", DOCKER_PROFILE);
        let p = load_profile(&path, &host(&DEFAULT_CAPABILITIES)).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(1));
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                p.architectures().as_deref(),
                Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
            );
        }
        assert!(unconditionally_allowed(&p, "read"));
        assert!(unconditionally_allowed(&p, "getpid"));
        assert!(unconditionally_allowed(&p, "ptrace"));
        assert!(rules_for(&p, "futurecall").is_empty());
        assert!(rules_for(&p, "mount").is_empty());
        assert!(rules_for(&p, "nowhere").is_empty());
        assert!(rules_for(&p, "everywhere_but").is_empty());
        assert_eq!(
            rules_for(&p, "clone3"),
            vec![(LinuxSeccompAction::ScmpActErrno, Some(38), false)]
        );
        assert_eq!(rules_for(&p, "personality").len(), 1);

        let mut caps = DEFAULT_CAPABILITIES.to_vec();
        caps.push("CAP_SYS_ADMIN");
        let p = load_profile(&path, &host(&caps)).unwrap();
        assert!(unconditionally_allowed(&p, "mount"));
        assert!(rules_for(&p, "clone3").is_empty());

        // Through the public entry point.
        let pub_p = seccomp(
            &Profile::Localhost(path.to_string_lossy().into_owned()),
            false,
            &default_capabilities(),
        )
        .unwrap()
        .unwrap();
        assert!(unconditionally_allowed(&pub_p, "getpid"));
    }

    #[test]
    fn oci_format_profile() {
        let dir = tempfile::tempdir().unwrap();
        let oci = default_seccomp(&default_capabilities());
        let path = write_profile(&dir, "oci.json", &serde_json::to_string(&oci).unwrap());
        let p = seccomp(
            &Profile::Localhost(path.to_string_lossy().into_owned()),
            false,
            &default_capabilities(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p, oci);

        let body = r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
            "flags":["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls":[{"names":["chmod"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#;
        let path = write_profile(&dir, "small.json", body);
        let p = load_profile(&path, &host(&[])).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActAllow);
        assert_eq!(
            p.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64][..])
        );
        assert_eq!(
            p.flags().as_deref(),
            Some(&[LinuxSeccompFilterFlag::SeccompFilterFlagLog][..])
        );
        assert_eq!(
            rules_for(&p, "chmod"),
            vec![(LinuxSeccompAction::ScmpActErrno, Some(13), false)]
        );
    }

    #[test]
    fn bad_profiles_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let caps = default_capabilities();
        let check = |path: &Path| {
            let err = seccomp(
                &Profile::Localhost(path.to_string_lossy().into_owned()),
                false,
                &caps,
            )
            .unwrap_err();
            assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
            err
        };
        let missing = dir.path().join("missing.json");
        assert!(matches!(
            check(&missing),
            SecurityError::SeccompProfileRead { .. }
        ));
        let garbage = write_profile(&dir, "garbage.json", "not json {");
        assert!(matches!(
            check(&garbage),
            SecurityError::SeccompProfileParse { .. }
        ));
        let bad_action = write_profile(&dir, "action.json", r#"{"defaultAction":"SCMP_ACT_NOPE"}"#);
        check(&bad_action);
        let both = write_profile(
            &dir,
            "both.json",
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"name":"a","names":["b"],"action":"SCMP_ACT_ALLOW"}]}"#,
        );
        assert!(matches!(
            check(&both),
            SecurityError::SeccompProfileInvalid { .. }
        ));
        let arches = write_profile(
            &dir,
            "arches.json",
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86"],
                "archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}"#,
        );
        check(&arches);
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("6.8.0-49-generic\n"), Some((6, 8)));
        assert_eq!(parse_kernel_version("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel_version("5"), Some((5, 0)));
        assert_eq!(parse_kernel_version("x.y"), None);
    }

    #[test]
    fn apparmor_cases() {
        let local = Profile::Localhost("my-profile".into());
        assert_eq!(apparmor(None, false, false).unwrap(), None);
        assert_eq!(apparmor(None, true, false).unwrap(), None);
        assert_eq!(
            apparmor(Some(&Profile::RuntimeDefault), true, true).unwrap(),
            None
        );
        let err = apparmor(Some(&Profile::RuntimeDefault), false, false).unwrap_err();
        assert!(err.to_string().contains("runtime/default"), "{err}");
        assert_eq!(
            apparmor(Some(&Profile::Unconfined), false, false).unwrap(),
            None
        );
        assert_eq!(
            apparmor(Some(&local), true, false).unwrap(),
            Some("my-profile".to_string())
        );
        assert_eq!(
            apparmor(Some(&local), true, true).unwrap(),
            Some("my-profile".to_string())
        );
        let err = apparmor(Some(&Profile::Localhost("foo".into())), false, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "apparmor profile \"localhost/foo\" requested but AppArmor is not enabled on this host"
        );
        assert!(apparmor(Some(&Profile::Localhost(String::new())), true, false).is_err());
        // Consistent with the file's presence.
        let _ = host_has_apparmor();
    }

    #[test]
    fn host_device_dev_null() {
        let (devs, rules) = host_devices("/dev/null", "", "").unwrap();
        assert_eq!(devs.len(), 1);
        let d = &devs[0];
        assert_eq!(d.path(), Path::new("/dev/null"));
        assert_eq!(d.typ(), LinuxDeviceType::C);
        assert_eq!((d.major(), d.minor()), (1, 3));
        assert_eq!(rules.len(), 1);
        assert!(rules[0].allow());
        assert_eq!(rules[0].typ(), Some(LinuxDeviceType::C));
        assert_eq!((rules[0].major(), rules[0].minor()), (Some(1), Some(3)));
        assert_eq!(rules[0].access().as_deref(), Some("rwm"));

        let (devs, rules) = host_devices("/dev/null", "/dev/mynull", "wr").unwrap();
        assert_eq!(devs[0].path(), Path::new("/dev/mynull"));
        assert_eq!(rules[0].access().as_deref(), Some("rw"));
    }

    #[test]
    fn host_device_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("regular");
        fs::write(&file, "x").unwrap();
        let file = file.to_string_lossy().into_owned();
        let err = host_devices(&file, "", "rwm").unwrap_err();
        assert!(matches!(err, SecurityError::NotADevice { .. }));
        assert!(err.to_string().contains(&file), "{err}");

        let err = host_devices("/dev/null", "", "rwx").unwrap_err();
        assert!(matches!(err, SecurityError::DevicePermissions { .. }));
        assert!(err.to_string().contains("/dev/null"), "{err}");

        let err = host_devices("/dev/xyz-does-not-exist", "", "").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("device /dev/xyz-does-not-exist:"),
            "{err}"
        );
        assert!(host_devices("dev/null", "", "").is_err());
        assert!(host_devices("/dev/null", "relative", "").is_err());
    }

    #[test]
    fn host_device_directory() {
        use nix::sys::stat::{Mode, SFlag, makedev, mknod};
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("dri");
        fs::create_dir_all(root.join("by-path")).unwrap();
        fs::create_dir_all(root.join("pts")).unwrap();
        let mode = Mode::from_bits_truncate(0o660);
        mknod(&root.join("card0"), SFlag::S_IFCHR, mode, makedev(226, 0)).unwrap();
        mknod(
            &root.join("by-path/disk"),
            SFlag::S_IFBLK,
            mode,
            makedev(7, 42),
        )
        .unwrap();
        mknod(&root.join("pts/0"), SFlag::S_IFCHR, mode, makedev(136, 0)).unwrap();
        mknod(&root.join("console"), SFlag::S_IFCHR, mode, makedev(5, 1)).unwrap();
        fs::set_permissions(root.join("card0"), fs::Permissions::from_mode(0o660)).unwrap();
        fs::write(root.join("readme"), "not a device").unwrap();
        std::os::unix::fs::symlink("card0", root.join("link")).unwrap();

        let host = root.to_string_lossy().into_owned();
        let (devs, rules) = host_devices(&host, "/dev/dri", "rw").unwrap();
        let got: Vec<_> = devs
            .iter()
            .map(|d| (d.path().clone(), d.typ(), d.major(), d.minor()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    PathBuf::from("/dev/dri/by-path/disk"),
                    LinuxDeviceType::B,
                    7,
                    42
                ),
                (PathBuf::from("/dev/dri/card0"), LinuxDeviceType::C, 226, 0),
            ]
        );
        assert_eq!(devs[1].file_mode(), Some(0o660));
        assert_eq!(rules.len(), 2);
        assert!(
            rules
                .iter()
                .all(|r| r.allow() && r.access().as_deref() == Some("rw"))
        );

        // Empty container path: same paths as on the host.
        let (devs, _) = host_devices(&host, "", "").unwrap();
        assert_eq!(devs[1].path(), &root.join("card0"));
    }

    #[test]
    fn privileged_devices_allow_all() {
        let (devs, rules) = privileged_devices().unwrap();
        assert!(devs.iter().any(|d| d.path() == Path::new("/dev/null")));
        assert!(devs.iter().all(|d| !d.path().starts_with("/dev/pts")));
        assert!(devs.iter().all(|d| d.path() != Path::new("/dev/console")));
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].to_string(), "a *:* rwm");
        assert!(rules[0].allow());
    }

    #[test]
    fn default_rules_deny_all() {
        let rules = default_device_rules();
        assert_eq!(rules.len(), 1);
        assert!(!rules[0].allow());
        assert_eq!(rules[0].to_string(), "a *:* rwm");
    }

    #[test]
    fn default_paths() {
        assert_eq!(DEFAULT_MASKED_PATHS.len(), 11);
        assert!(DEFAULT_MASKED_PATHS.contains(&"/proc/kcore"));
        assert_eq!(DEFAULT_READONLY_PATHS.len(), 5);
        assert!(DEFAULT_READONLY_PATHS.contains(&"/proc/sysrq-trigger"));
    }

    #[test]
    fn profile_serde_default() {
        assert_eq!(Profile::default(), Profile::RuntimeDefault);
        let p = Profile::Localhost("/x.json".into());
        let back: Profile = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
