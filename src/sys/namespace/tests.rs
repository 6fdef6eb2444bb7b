//! Unit tests of request validation and sysctl path mapping; the real
//! kernel tests are in tests/pinns.rs (they need the crius binary).

use super::*;

fn req(net: bool, ipc: bool, uts: bool) -> PinRequest {
    PinRequest {
        dir: PathBuf::from("/run/crius/pods/x/ns"),
        net,
        ipc,
        uts,
        ..PinRequest::default()
    }
}

#[test]
fn sysctl_keys_map_to_proc_sys_paths() {
    assert_eq!(
        sysctl_path("net.ipv4.ip_forward").unwrap(),
        PathBuf::from("/proc/sys/net/ipv4/ip_forward")
    );
    assert_eq!(
        sysctl_path("kernel.shmmax").unwrap(),
        PathBuf::from("/proc/sys/kernel/shmmax")
    );
    assert_eq!(
        sysctl_path("fs.mqueue.msg_max").unwrap(),
        PathBuf::from("/proc/sys/fs/mqueue/msg_max")
    );
}

#[test]
fn sysctl_keys_that_could_escape_proc_sys_are_refused() {
    for key in [
        "",
        ".",
        "..",
        "net..ipv4",
        ".net.ipv4",
        "net.ipv4.",
        "net/ipv4/ip_forward",
        "net.ipv4./../../etc/passwd",
        "net.ipv4.a\0b",
    ] {
        let err = sysctl_path(key).unwrap_err();
        assert!(
            matches!(&err, NamespaceError::InvalidSysctlKey { key: k, .. } if k == key),
            "{key:?}: {err}"
        );
    }
}

#[test]
fn sysctls_map_to_their_namespace() {
    assert_eq!(sysctl_namespace("net.core.somaxconn"), Some(NsKind::Net));
    assert_eq!(sysctl_namespace("kernel.shmmax"), Some(NsKind::Ipc));
    assert_eq!(sysctl_namespace("kernel.msgmax"), Some(NsKind::Ipc));
    assert_eq!(sysctl_namespace("kernel.sem"), Some(NsKind::Ipc));
    assert_eq!(sysctl_namespace("fs.mqueue.queues_max"), Some(NsKind::Ipc));
    assert_eq!(sysctl_namespace("kernel.domainname"), Some(NsKind::Uts));
    assert_eq!(sysctl_namespace("kernel.panic"), None);
    assert_eq!(sysctl_namespace("vm.overcommit_memory"), None);
    assert_eq!(sysctl_namespace("kernel.semx"), None);
}

#[test]
fn validate_refuses_host_changes() {
    // A hostname without a UTS namespace would rename the node.
    let mut r = req(true, true, false);
    r.hostname = Some("pod-a".into());
    let err = validate(&r).unwrap_err();
    assert!(
        matches!(err, NamespaceError::InvalidHostname { .. }),
        "{err}"
    );

    // A net sysctl without a network namespace would change the host.
    let mut r = req(false, true, true);
    r.sysctls = vec![("net.ipv4.ip_forward".into(), "1".into())];
    let err = validate(&r).unwrap_err();
    assert!(
        err.to_string().contains("net.ipv4.ip_forward") && err.to_string().contains("net"),
        "{err}"
    );

    let mut r = req(true, true, true);
    r.sysctls = vec![("kernel.panic".into(), "1".into())];
    assert!(matches!(
        validate(&r).unwrap_err(),
        NamespaceError::SysctlOutsidePod { .. }
    ));

    let mut r = req(true, true, true);
    r.dir = PathBuf::from("relative/ns");
    assert!(matches!(
        validate(&r).unwrap_err(),
        NamespaceError::RelativeDir { .. }
    ));
}

#[test]
fn validate_accepts_namespaced_requests() {
    let mut r = req(true, true, true);
    r.hostname = Some("pod-a".into());
    r.sysctls = vec![
        ("net.ipv4.ip_unprivileged_port_start".into(), "0".into()),
        ("kernel.shmmax".into(), "68719476736".into()),
    ];
    validate(&r).unwrap();
    assert_eq!(r.kinds(), vec![NsKind::Net, NsKind::Ipc, NsKind::Uts]);
    assert_eq!(req(false, true, false).kinds(), vec![NsKind::Ipc]);
}

#[test]
fn unpin_of_a_missing_directory_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("never-created");
    unpin(&dir).unwrap();
    unpin(&dir).unwrap();
    assert!(!is_pinned(&pin_path(&dir, NsKind::Net)));
}

#[test]
fn plain_files_are_not_pinned_and_unpin_removes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ns");
    fs::create_dir(&dir).unwrap();
    fs::write(pin_path(&dir, NsKind::Net), b"").unwrap();
    assert!(!is_pinned(&pin_path(&dir, NsKind::Net)));
    unpin(&dir).unwrap();
    assert!(!dir.exists());
}

#[test]
fn helper_failure_message_is_bounded_on_a_char_boundary() {
    use std::os::unix::process::ExitStatusExt;
    let output = std::process::Output {
        status: ExitStatus::from_raw(1 << 8),
        stdout: Vec::new(),
        stderr: "é".repeat(5000).into_bytes(),
    };
    let err = helper_result(Path::new("/d"), &output).unwrap_err();
    let NamespaceError::Helper { message, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(message.len(), 4096);

    let output = std::process::Output {
        status: ExitStatus::from_raw(0),
        stdout: br#"{"net":"/d/net","ipc":null,"uts":null}"#.to_vec(),
        stderr: Vec::new(),
    };
    let pinned = helper_result(Path::new("/d"), &output).unwrap();
    assert_eq!(pinned.get(NsKind::Net), Some(Path::new("/d/net")));
    assert_eq!(pinned.get(NsKind::Ipc), None);
}
