//! Pod namespace pinning against the real kernel: the `crius pinns` helper,
//! `pin`/`unpin`/`is_pinned`, checked from outside with util-linux `nsenter`
//! and iproute2 `ip`. Needs root (CI is root); never skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use crius::sys::namespace::{
    NsKind, PinRequest, Pinned, is_pinned, pin, pin_path, pinned_kind, unpin,
};

/// The tests count mounts in `/proc/self/mountinfo`; run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "tests/pinns.rs creates namespaces and mounts: run it as root (CI is root)"
    );
}

fn require_tool(tool: &str, package: &str) {
    let found = Command::new(tool).arg("--version").output().is_ok();
    assert!(
        found,
        "`{tool}` not found: install it (apt-get install {package})"
    );
}

fn crius_exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_crius"))
}

fn pin_blocking(req: &PinRequest) -> Result<Pinned, crius::sys::namespace::NamespaceError> {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime")
        .block_on(pin(crius_exe(), req))
}

/// A temp dir under /run (tmpfs on most hosts) or /tmp. On drop (also when
/// an assertion failed half-way) it detaches every mount left under it, so a
/// failing test does not leak pinned namespaces into the host.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for line in mounts_under(self.path()) {
            if let Some(mount_point) = line.split(' ').nth(4) {
                let _ = nix::mount::umount2(mount_point, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

fn tempdir() -> Scratch {
    let base = if Path::new("/run").is_dir() {
        "/run"
    } else {
        "/tmp"
    };
    Scratch(
        tempfile::Builder::new()
            .prefix("crius-pinns-")
            .tempdir_in(base)
            .expect("creating a temp dir"),
    )
}

fn mountinfo() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("reading /proc/self/mountinfo")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Mountinfo lines whose mount point is at or under `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    mountinfo()
        .into_iter()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|mp| mp == dir || mp.starts_with(&format!("{dir}/")))
        })
        .collect()
}

fn full_request(dir: PathBuf) -> PinRequest {
    PinRequest {
        dir,
        net: true,
        ipc: true,
        uts: true,
        hostname: Some("pod-a".into()),
        sysctls: vec![
            ("net.ipv4.ip_unprivileged_port_start".into(), "0".into()),
            ("kernel.shmmax".into(), "68719476736".into()),
        ],
        pid: false,
        userns: None,
    }
}

/// Runs `args` inside the pinned namespaces with nsenter; returns stdout.
fn in_pod(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", pin_path(dir, NsKind::Net).display()))
        .arg(format!("--ipc={}", pin_path(dir, NsKind::Ipc).display()))
        .arg(format!("--uts={}", pin_path(dir, NsKind::Uts).display()))
        .arg("--")
        .args(args)
        .output()
        .expect("running nsenter (install util-linux)");
    assert!(
        out.status.success(),
        "nsenter {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn host(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", out.status);
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn pins_net_ipc_uts_with_hostname_sysctls_and_loopback() {
    let _serial = serial();
    require_root();
    require_tool("nsenter", "util-linux");
    require_tool("ip", "iproute2");
    let tmp = tempdir();
    let dir = tmp.path().join("pods/p1/ns");
    let host_hostname = host(&["hostname"]);
    let host_port_start =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap();
    let host_netns = std::fs::read_link("/proc/self/ns/net").unwrap();

    let pinned = pin_blocking(&full_request(dir.clone())).expect("pin");
    assert_eq!(
        pinned,
        Pinned {
            net: Some(dir.join("net")),
            ipc: Some(dir.join("ipc")),
            uts: Some(dir.join("uts")),
            pid: None,
            infra_pid: None,
            user: None,
        }
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "pin dir mode {mode:o}");
    let mounts = mountinfo().join("\n");
    for kind in NsKind::ALL {
        let path = pin_path(&dir, kind);
        assert!(is_pinned(&path), "{} is not an nsfs mount", path.display());
        assert_eq!(pinned_kind(&path), Some(kind), "{}", path.display());
        assert!(
            mounts.contains(&format!(" {} ", path.display())),
            "{} missing from /proc/self/mountinfo",
            path.display()
        );
    }

    assert_eq!(in_pod(&dir, &["hostname"]), "pod-a");
    assert_eq!(
        in_pod(
            &dir,
            &["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"]
        ),
        "0"
    );
    assert_eq!(
        in_pod(&dir, &["cat", "/proc/sys/kernel/shmmax"]),
        "68719476736"
    );
    let lo = in_pod(&dir, &["ip", "-o", "link", "show", "lo"]);
    let flags = lo
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(flags, _)| flags.split(',').collect::<Vec<_>>())
        .unwrap_or_default();
    assert!(
        flags.contains(&"LOOPBACK") && flags.contains(&"UP"),
        "lo is not up in the pod: {lo}"
    );
    let pod_netns = in_pod(&dir, &["readlink", "/proc/self/ns/net"]);
    assert!(pod_netns.starts_with("net:["), "{pod_netns}");
    assert_ne!(
        Path::new(&pod_netns),
        host_netns,
        "pod shares the host netns"
    );
    for kind in ["ipc", "uts"] {
        let inside = in_pod(&dir, &["readlink", &format!("/proc/self/ns/{kind}")]);
        let outside = std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap();
        assert_ne!(Path::new(&inside), outside, "pod shares the host {kind} ns");
    }

    // The host was not touched.
    assert_eq!(host(&["hostname"]), host_hostname);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap(),
        host_port_start
    );

    unpin(&dir).expect("unpin");
    assert!(
        mounts_under(tmp.path()).is_empty(),
        "{:?}",
        mounts_under(tmp.path())
    );
    for kind in NsKind::ALL {
        let path = pin_path(&dir, kind);
        assert!(!is_pinned(&path));
        assert_eq!(pinned_kind(&path), None);
        assert!(!path.exists(), "{} left behind", path.display());
    }
    assert!(!dir.exists(), "{} left behind", dir.display());
    unpin(&dir).expect("second unpin is a no-op");
}

#[test]
fn only_requested_namespaces_are_pinned() {
    let _serial = serial();
    require_root();
    let tmp = tempdir();
    let dir = tmp.path().join("ns");
    let req = PinRequest {
        dir: dir.clone(),
        net: true,
        ..PinRequest::default()
    };
    let pinned = pin_blocking(&req).expect("pin");
    assert_eq!(
        pinned,
        Pinned {
            net: Some(dir.join("net")),
            ..Pinned::default()
        }
    );
    assert!(is_pinned(&dir.join("net")));
    assert!(!dir.join("ipc").exists());
    assert!(!dir.join("uts").exists());

    // Pinning the same directory again is refused and leaves the first pin.
    let err = pin_blocking(&req).unwrap_err();
    assert!(err.to_string().contains("already"), "{err}");
    assert!(is_pinned(&dir.join("net")));

    unpin(&dir).unwrap();
    assert!(mounts_under(tmp.path()).is_empty());
    assert!(!dir.exists());
}

#[test]
fn failing_sysctl_names_the_key_and_leaves_nothing() {
    let _serial = serial();
    require_root();
    let tmp = tempdir();
    let dir = tmp.path().join("pods/p2/ns");
    let before = mountinfo().len();
    let mut req = full_request(dir.clone());
    req.sysctls
        .push(("net.ipv4.nonexistent_knob".into(), "1".into()));
    let err = pin_blocking(&req).expect_err("pin with a nonexistent sysctl must fail");
    let message = err.to_string();
    assert!(
        message.contains("net.ipv4.nonexistent_knob"),
        "message does not name the key: {message}"
    );
    assert!(
        mounts_under(tmp.path()).is_empty(),
        "{:?}",
        mounts_under(tmp.path())
    );
    assert_eq!(mountinfo().len(), before, "mount count changed");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn fifty_pin_unpin_cycles_leak_no_mounts() {
    let _serial = serial();
    require_root();
    let tmp = tempdir();
    let before = mountinfo().len();
    for i in 0..50 {
        let dir = tmp.path().join(format!("pods/{i}/ns"));
        let pinned =
            pin_blocking(&full_request(dir.clone())).unwrap_or_else(|e| panic!("pin #{i}: {e}"));
        assert!(pinned.net.as_deref().is_some_and(is_pinned));
        unpin(&dir).unwrap_or_else(|e| panic!("unpin #{i}: {e}"));
        assert!(!dir.exists());
    }
    assert!(
        mounts_under(tmp.path()).is_empty(),
        "{:?}",
        mounts_under(tmp.path())
    );
    assert_eq!(mountinfo().len(), before, "mountinfo line count changed");
}

#[test]
fn twenty_concurrent_pins_get_distinct_namespaces() {
    let _serial = serial();
    require_root();
    let tmp = tempdir();
    let before = mountinfo().len();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio runtime");
    let dirs: Vec<PathBuf> = (0..20)
        .map(|i| tmp.path().join(format!("pods/{i}/ns")))
        .collect();
    let results = rt.block_on(async {
        let tasks: Vec<_> = dirs
            .iter()
            .map(|dir| {
                let req = full_request(dir.clone());
                tokio::spawn(async move { pin(crius_exe(), &req).await })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.expect("pin task"));
        }
        results
    });
    let mut inodes = std::collections::HashSet::new();
    for (dir, result) in dirs.iter().zip(results) {
        let pinned = result.unwrap_or_else(|e| panic!("pin {}: {e}", dir.display()));
        let net = pinned.net.expect("net pinned");
        assert_eq!(pinned_kind(&net), Some(NsKind::Net));
        use std::os::unix::fs::MetadataExt;
        inodes.insert(std::fs::metadata(&net).unwrap().ino());
    }
    assert_eq!(inodes.len(), 20, "pods share a network namespace");
    for dir in &dirs {
        unpin(dir).unwrap();
    }
    assert!(mounts_under(tmp.path()).is_empty());
    assert_eq!(mountinfo().len(), before, "mountinfo line count changed");
}

#[test]
fn a_helper_that_cannot_run_leaves_nothing() {
    let _serial = serial();
    let tmp = tempdir();
    let dir = tmp.path().join("ns");
    let req = PinRequest {
        dir: dir.clone(),
        net: true,
        ..PinRequest::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let missing = tmp.path().join("no-such-crius");
    let err = rt.block_on(pin(&missing, &req)).unwrap_err();
    assert!(
        err.to_string().contains("no-such-crius"),
        "error does not name the binary: {err}"
    );
    // A binary that fails silently: the error still says what happened.
    let err = rt.block_on(pin(Path::new("/bin/false"), &req)).unwrap_err();
    assert!(err.to_string().contains("no message on stderr"), "{err}");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn helper_rejects_bad_input_with_one_line_on_stderr() {
    let _serial = serial();
    use std::io::Write;
    let mut child = Command::new(crius_exe())
        .arg("pinns")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"{not json").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.contains("parsing the pin request"), "{stderr}");
}

/// The daemon has the monitor zygote fork `pinns` (no exec): the same
/// pins, the pod's hostname and sysctls inside, a PID infra, and a failure
/// that names the sysctl and leaves nothing behind.
#[test]
fn pinns_forked_by_the_zygote_pins_and_fails_cleanly() {
    let _serial = serial();
    require_root();
    require_tool("nsenter", "util-linux");
    let zygote = std::sync::Arc::new(crius::monitor::zygote::Zygote::new(crius_exe().to_owned()));
    let run = |req: &PinRequest| {
        let z = zygote.clone();
        let dir = req.dir.clone();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("tokio runtime")
            .block_on(crius::sys::namespace::pin_with(req, move |input| {
                Ok(z.run_pinns(&dir, &input)
                    .unwrap_or_else(|e| panic!("the zygote did not run pinns: {e}")))
            }))
    };
    let tmp = tempdir();
    let dir = tmp.path().join("pods/z1/ns");
    let mut req = full_request(dir.clone());
    req.pid = true;
    let pinned = run(&req).expect("pin through the zygote");
    assert_eq!(pinned.net, Some(dir.join("net")));
    assert_eq!(pinned.pid, Some(dir.join("pid")));
    assert_eq!(pinned_kind(&dir.join("net")), Some(NsKind::Net));
    assert_eq!(in_pod(&dir, &["hostname"]), "pod-a");
    assert_eq!(
        in_pod(
            &dir,
            &["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"]
        ),
        "0"
    );
    let infra = pinned.infra_pid.expect("an infra pid for a PID namespace");
    assert!(
        crius::sys::infra::alive(infra, &dir.join("pid")),
        "infra {infra} is not holding the pod's PID namespace"
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(infra as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    unpin(&dir).expect("unpin");
    assert!(mounts_under(tmp.path()).is_empty());

    let dir = tmp.path().join("pods/z2/ns");
    let mut req = full_request(dir.clone());
    req.sysctls
        .push(("net.ipv4.nonexistent_knob".into(), "1".into()));
    let err = run(&req).expect_err("a nonexistent sysctl must fail");
    assert!(
        err.to_string().contains("net.ipv4.nonexistent_knob"),
        "message does not name the key: {err}"
    );
    assert!(
        mounts_under(tmp.path()).is_empty(),
        "{:?}",
        mounts_under(tmp.path())
    );
    assert!(!dir.exists(), "{} left behind", dir.display());
}
