//! Container security settings as the process sees them: capabilities and
//! seccomp mode from /proc/self/status, Localhost profile errors, masked
//! paths, and CVE regressions (no leaked descriptors, CVE-2024-21626;
//! a working dir through /proc refused).

mod common;

use common::containers::*;
use k8s_cri::v1::*;

/// `grep <field> /proc/self/status` in a container built from `cfg`.
async fn status_field(
    env: &mut Env,
    pod: &str,
    pcfg: &PodSandboxConfig,
    cfg: ContainerConfig,
) -> String {
    let (s, out) = env.run_to_exit(pod, pcfg, cfg).await;
    assert_eq!(s.exit_code, 0, "{out}");
    out
}

#[tokio::test]
async fn default_capabilities_and_seccomp_profiles() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("sec").await;
    let script = "grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status";
    // containerd's default set.
    let c = sh("default", &bb, script);
    let out = status_field(&mut env, &pod, &pcfg, c).await;
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    // RuntimeDefault: a filter is loaded (mode 2) and it refuses a new user
    // namespace, which no capability is needed for (so only seccomp stops it).
    let probe = format!("{script}; unshare -U true && echo userns-allowed || echo userns-refused");
    let mut c = sh("rtdefault", &bb, &probe);
    security(&mut c).seccomp = Some(SecurityProfile {
        profile_type: security_profile::ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    });
    let out = status_field(&mut env, &pod, &pcfg, c).await;
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(out.contains("NoNewPrivs:\t0"), "{out}");
    assert!(out.contains("userns-refused"), "{out}");
    // The same with no_new_privs (the filter is loaded just before exec).
    let mut c = sh("rtdefault-nnp", &bb, &probe);
    security(&mut c).seccomp = Some(SecurityProfile {
        profile_type: security_profile::ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    });
    security(&mut c).no_new_privs = true;
    let out = status_field(&mut env, &pod, &pcfg, c).await;
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("userns-refused"), "{out}");
    // Dropping ALL leaves no capability at all.
    let mut c = sh("dropall", &bb, script);
    security(&mut c).capabilities = Some(Capability {
        drop_capabilities: vec!["ALL".into()],
        ..Default::default()
    });
    let out = status_field(&mut env, &pod, &pcfg, c).await;
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("CapBnd:\t0000000000000000"), "{out}");
    // Unconfined: no filter.
    let mut c = sh("unconfined", &bb, script);
    security(&mut c).seccomp = Some(SecurityProfile {
        profile_type: security_profile::ProfileType::Unconfined as i32,
        localhost_ref: String::new(),
    });
    let out = status_field(&mut env, &pod, &pcfg, c).await;
    assert!(out.contains("Seccomp:\t0"), "{out}");
    // ... and without a filter the same user-namespace probe succeeds, so the
    // refusal above is seccomp's doing.
    let mut c = sh("unconfined-probe", &bb, &probe);
    security(&mut c).seccomp = Some(SecurityProfile {
        profile_type: security_profile::ProfileType::Unconfined as i32,
        localhost_ref: String::new(),
    });
    let out = status_field(&mut env, &pod, &pcfg, c).await;
    assert!(out.contains("userns-allowed"), "{out}");
    // A missing Localhost profile is a clear error at create.
    let mut c = sh("lh", &bb, "true");
    security(&mut c).seccomp = Some(SecurityProfile {
        profile_type: security_profile::ProfileType::Localhost as i32,
        localhost_ref: "/no/such/profile.json".into(),
    });
    let err = env.create(&pod, &pcfg, c).await.unwrap_err();
    assert!(err.message().contains("/no/such/profile.json"), "{err:?}");
}

#[tokio::test]
async fn masked_paths_and_no_leaked_fds() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("masked").await;
    // Masked: /proc/kcore reads empty, /sys/firmware is an empty dir.
    let (_, out) = env
        .run_to_exit(
            &pod,
            &pcfg,
            sh(
                "masked",
                &bb,
                "wc -c < /proc/timer_list; ls -A /sys/firmware | wc -l",
            ),
        )
        .await;
    assert_eq!(out, "0\n0\n");
    // CVE-2024-21626: the container's process holds only stdio.
    let (_, out) = env
        .run_to_exit(&pod, &pcfg, ctr("fds", &bb, &["ls", "/proc/self/fd"]))
        .await;
    let fds: Vec<&str> = out.split_whitespace().collect();
    // ls itself holds one descriptor for the directory it reads.
    assert!(fds.len() <= 4 && fds[..3] == ["0", "1", "2"], "{fds:?}");
    let mut c = ctr("cwd", &bb, &["true"]);
    c.working_dir = "/proc/self/fd/7".into();
    let err = env.create(&pod, &pcfg, c).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("/proc/self/fd/7"), "{err:?}");
}

#[tokio::test]
async fn readonly_rootfs_keeps_shm_writable() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("ro").await;
    let mut c = sh(
        "ro",
        &bb,
        "touch /newfile 2>&1; echo rc=$?; touch /dev/shm/ok && echo shm-ok",
    );
    security(&mut c).readonly_rootfs = true;
    let (_, out) = env.run_to_exit(&pod, &pcfg, c).await;
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("shm-ok"), "{out}");
}

#[tokio::test]
async fn privileged_gets_our_capabilities_host_devices_and_writable_sys() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("priv").await;
    let mut c = sh(
        "priv",
        &bb,
        "grep -E '^(CapEff|Seccomp):' /proc/self/status; ls /dev/loop-control; grep ' /sys sysfs' /proc/mounts",
    );
    security(&mut c).privileged = true;
    let (s, out) = env.run_to_exit(&pod, &pcfg, c).await;
    assert_eq!(s.exit_code, 0, "{out}");
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    let bnd = ours
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim()
        .to_string();
    assert!(
        out.contains(&format!("CapEff:\t{bnd}")),
        "{out} (ours {bnd})"
    );
    assert!(out.contains("Seccomp:\t0"), "{out}");
    assert!(out.contains("/dev/loop-control"), "{out}");
    assert!(out.contains(" rw,"), "/sys should be read-write: {out}");
}
