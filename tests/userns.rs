//! Pods with a user namespace (CRI `userns_options` mode POD, kubelet's
//! `hostUsers: false`) through the real daemon: root inside is the mapped
//! host range (`id`, `/proc/self/uid_map`), the rootfs and a host-path
//! volume are id-mapped (files keep their image owners inside; a file the
//! container's root writes in the volume lands on the host with the
//! unmapped owner, root, as under containerd; in the writable layer it is
//! owned by the mapped root), a
//! capability that needs the host's user namespace fails (with a host-userns
//! control that succeeds), ExecSync runs in the pod's user namespace with
//! the container's ids and capability sets, bad mappings are refused naming
//! the field, the pod survives a `kill -9` of the daemon, and removal leaves no pin or
//! mount behind. `Status` reports the feature for the built-in handler.

mod common;

use std::os::unix::fs::MetadataExt;

use common::containers::*;
use common::pods::{mounts_below, pod_dir, remove_pod, run_pod, stop_pod};
use k8s_cri::v1::*;

const UID_HOST: u32 = 2_000_000;
const GID_HOST: u32 = 3_000_000;
const LEN: u32 = 65_536;

fn map(container_id: u32, host_id: u32, length: u32) -> IdMapping {
    IdMapping {
        host_id,
        container_id,
        length,
    }
}

fn userns(uids: Vec<IdMapping>, gids: Vec<IdMapping>) -> UserNamespace {
    UserNamespace {
        mode: NamespaceMode::Pod as i32,
        uids,
        gids,
    }
}

fn default_userns() -> UserNamespace {
    userns(vec![map(0, UID_HOST, LEN)], vec![map(0, GID_HOST, LEN)])
}

/// Sets the pod's user namespace options (and the namespace modes kubelet
/// sends with them).
fn with_userns(cfg: &mut PodSandboxConfig, u: Option<UserNamespace>) {
    let sc = cfg
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default);
    sc.namespace_options = Some(NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        target_id: String::new(),
        userns_options: u,
    });
}

/// A container config that repeats the pod's user namespace options, as
/// kubelet does.
fn userns_ctr(name: &str, image: &str, script: &str) -> ContainerConfig {
    let mut cfg = sh(name, image, script);
    security(&mut cfg).namespace_options = Some(NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        target_id: String::new(),
        userns_options: Some(default_userns()),
    });
    cfg
}

/// The pod's root must reach the daemon's run dir (o+x on every directory
/// above it, as /run is on a host); the harness's temp dirs are 0700.
fn searchable_run_dir(env: &Env) {
    use std::os::unix::fs::PermissionsExt as _;
    for a in env.daemon.run_dir().ancestors() {
        let Ok(meta) = std::fs::metadata(a) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o001 == 0 {
            std::fs::set_permissions(a, std::fs::Permissions::from_mode((mode | 0o001) & 0o7777))
                .unwrap_or_else(|e| panic!("chmod o+x {}: {e}", a.display()));
        }
    }
}

async fn userns_pod(env: &mut Env, name: &str) -> (String, PodSandboxConfig) {
    searchable_run_dir(env);
    let mut cfg = env.pod_config(name);
    with_userns(&mut cfg, Some(default_userns()));
    let id = run_pod(&mut env.rt, cfg.clone())
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox with a user namespace: {e:?}"));
    (id, cfg)
}

/// A userns pod with one running `sleep 300` container: (pod, config, container).
async fn userns_sleeper(env: &mut Env, name: &str) -> (String, PodSandboxConfig, String) {
    let (pod, pcfg) = userns_pod(env, name).await;
    let cfg = userns_ctr("sleeper", &env.busybox, "sleep 300");
    let id = env.run(&pod, &pcfg, cfg).await;
    (pod, pcfg, id)
}

/// The kernel's uid_map/gid_map text for one mapping, whitespace-normalised.
fn map_line(c: u32, h: u32, l: u32) -> String {
    format!("{c} {h} {l}")
}

fn normalise(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

/// Whether `Status` reports user namespace support for the default handler.
async fn default_handler_userns(rt: &mut common::pods::RuntimeClient) -> bool {
    let status = rt
        .status(StatusRequest { verbose: false })
        .await
        .expect("Status")
        .into_inner();
    let builtin = status
        .runtime_handlers
        .iter()
        .find(|h| h.name.is_empty())
        .expect("the default handler in Status.runtime_handlers");
    builtin.features.as_ref().is_some_and(|f| f.user_namespaces)
}

#[tokio::test]
async fn userns_pod_maps_root_rootfs_and_volumes() {
    let mut env = Env::new("").await;
    assert!(
        default_handler_userns(&mut env.rt).await,
        "Status must report user_namespaces for the built-in handler on this kernel"
    );

    let (pod, pcfg) = userns_pod(&mut env, "userns-basic").await;
    let ns_dir = pod_dir(env.daemon.run_dir(), &pod).join("ns");
    let user_pin = ns_dir.join("user");
    assert!(
        crius::sys::namespace::is_pinned(&user_pin),
        "{} is not a pinned namespace",
        user_pin.display()
    );

    let st = common::pods::pod_status(&mut env.rt, &pod).await;
    let reported = st
        .status
        .and_then(|s| s.linux)
        .and_then(|l| l.namespaces)
        .and_then(|n| n.options)
        .and_then(|o| o.userns_options);
    assert_eq!(reported, Some(default_userns()), "PodSandboxStatus");
    let vol = tempfile::tempdir().expect("volume dir");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(vol.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let script = "id -u; id -g; cat /proc/self/uid_map; echo --; cat /proc/self/gid_map; echo --; \
         stat -c '%u:%g' /bin/busybox /etc; echo hi > /vol/by-root; \
         echo x > /etc/new-file && stat -c '%u:%g' /etc/new-file; \
         echo y >> /etc/passwd && echo appended; \
         stat -c '%u:%g' /etc/hosts; echo '# x' >> /etc/hosts && echo hosts-ok";
    let mut cfg = userns_ctr("ids", &env.busybox, script);
    cfg.mounts = vec![Mount {
        container_path: "/vol".into(),
        host_path: vol.path().display().to_string(),
        ..Default::default()
    }];
    let (s, out) = env.run_to_exit(&pod, &pcfg, cfg).await;
    assert_eq!(s.exit_code, 0, "container failed: {out}");
    let lines = normalise(&out);
    let parts: Vec<&[String]> = lines.split(|l| l == "--").collect();
    assert_eq!(parts.len(), 3, "unexpected output: {out}");
    assert_eq!(parts[0][0], "0", "id -u inside: {out}");
    assert_eq!(parts[0][1], "0", "id -g inside: {out}");
    assert_eq!(
        parts[0][2..],
        [map_line(0, UID_HOST, LEN)],
        "uid_map: {out}"
    );
    assert_eq!(parts[1], [map_line(0, GID_HOST, LEN)], "gid_map: {out}");
    // Image files (root's on the host) are root's inside, through the
    // id-mapped layers; a new and a copied-up file are root's too.
    assert_eq!(
        parts[2],
        ["0:0", "0:0", "0:0", "appended", "0:0", "hosts-ok"],
        "owners inside: {out}"
    );

    // The volume is an id-mapped mount (as containerd does it): ids pass
    // through the pod's mapping in reverse, so the container's root
    // writes as the host's root and uid 1000 as host uid 1000 — the
    // owners kubelet expects, the same as in a host-userns pod. Without
    // the id-mapping the file would belong to the mapped root
    // ({UID_HOST}:{GID_HOST}).
    let meta = std::fs::metadata(vol.path().join("by-root")).expect("file written in the volume");
    assert_eq!(
        (meta.uid(), meta.gid()),
        (0, 0),
        "owner on the host of the file the container's root wrote"
    );
    let mut cfg = userns_ctr(
        "as-1000",
        &env.busybox,
        "stat -c '%u:%g' /vol; id -u; echo hi > /vol/by-1000",
    );
    security(&mut cfg).run_as_user = Some(Int64Value { value: 1000 });
    security(&mut cfg).run_as_group = Some(Int64Value { value: 1000 });
    cfg.mounts = vec![Mount {
        container_path: "/vol".into(),
        host_path: vol.path().display().to_string(),
        ..Default::default()
    }];
    let (s, out) = env.run_to_exit(&pod, &pcfg, cfg).await;
    assert_eq!(s.exit_code, 0, "container as uid 1000 failed: {out}");
    // The host's root-owned volume dir is root's inside.
    assert_eq!(normalise(&out), ["0:0", "1000"], "{out}");
    let meta = std::fs::metadata(vol.path().join("by-1000")).expect("file written by uid 1000");
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
    // And the rootfs's new file, in the writable layer, too.
    let uppers = env.daemon.state_dir().join("containers");
    let upper = std::fs::read_dir(&uppers)
        .expect("writable layers dir")
        .flatten()
        .map(|e| e.path().join("upper/etc/new-file"))
        .find(|p| p.exists())
        .expect("the new file in a writable layer");
    let meta = std::fs::metadata(&upper).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (UID_HOST, GID_HOST));
    // The image's layer files were not chowned: still the host's root.
    let layers = env.daemon.layers_dir();
    let layer_owners: Vec<u32> = env
        .daemon
        .layer_dirs()
        .iter()
        .filter_map(|d| std::fs::metadata(layers.join(d).join("bin/busybox")).ok())
        .map(|m| m.uid())
        .collect();
    assert!(
        !layer_owners.is_empty() && layer_owners.iter().all(|u| *u == 0),
        "layer files must keep their owners: {layer_owners:?}"
    );
}

#[tokio::test]
async fn userns_root_lacks_host_privilege() {
    let mut env = Env::new("").await;
    // mknod of a block device needs CAP_MKNOD in the host's user namespace.
    let script = "mknod /tmp/blk b 7 0 && echo made || echo refused";
    let (pod, pcfg) = userns_pod(&mut env, "userns-priv").await;
    let (s, out) = env
        .run_to_exit(&pod, &pcfg, userns_ctr("mknod", &env.busybox, script))
        .await;
    assert_eq!(s.exit_code, 0, "{out}");
    assert!(
        out.contains("refused") && out.contains("Operation not permitted"),
        "mknod must fail in a user namespace pod: {out}"
    );
    // Control: the same container in a host-userns pod may mknod (the
    // default capabilities include CAP_MKNOD), so the check above can fail.
    let (hpod, hcfg) = env.pod("host-priv").await;
    let (s, out) = env
        .run_to_exit(&hpod, &hcfg, sh("mknod", &env.busybox, script))
        .await;
    assert_eq!(s.exit_code, 0, "{out}");
    assert!(out.contains("made"), "control mknod failed: {out}");
    // /proc and /sys are mounted (sysfs: the pod's netns is the userns's).
    let (s, out) = env
        .run_to_exit(
            &pod,
            &pcfg,
            userns_ctr(
                "mounts",
                &env.busybox,
                "grep -E ' /(proc|sys) ' /proc/mounts | cut -d' ' -f3 | sort",
            ),
        )
        .await;
    assert_eq!(s.exit_code, 0, "{out}");
    assert_eq!(normalise(&out), ["proc", "sysfs"], "{out}");
}

#[tokio::test]
async fn bad_userns_options_are_refused_naming_the_field() {
    let mut env = Env::new("").await;
    let ok = || vec![map(0, UID_HOST, LEN)];
    let cases: Vec<(UserNamespace, &str)> = vec![
        (userns(vec![], ok()), "userns_options.uids"),
        (userns(ok(), vec![]), "userns_options.gids"),
        (
            userns(vec![map(0, UID_HOST, 0)], ok()),
            "userns_options.uids",
        ),
        (
            userns(vec![map(0, u32::MAX - 10, 100)], ok()),
            "userns_options.uids",
        ),
        (
            userns(ok(), vec![map(0, 100_000, 100), map(100, 100_050, 10)]),
            "userns_options.gids",
        ),
        (
            userns(vec![map(0, 100_000, 100), map(50, 200_000, 100)], ok()),
            "userns_options.uids",
        ),
        (
            UserNamespace {
                mode: NamespaceMode::Container as i32,
                ..default_userns()
            },
            "userns_options.mode",
        ),
        (
            UserNamespace {
                mode: NamespaceMode::Target as i32,
                ..default_userns()
            },
            "userns_options.mode",
        ),
    ];
    for (i, (u, field)) in cases.into_iter().enumerate() {
        let mut cfg = env.pod_config(&format!("bad-{i}"));
        with_userns(&mut cfg, Some(u.clone()));
        let e = run_pod(&mut env.rt, cfg)
            .await
            .expect_err(&format!("{u:?} must be refused"));
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{u:?}: {e:?}");
        assert!(
            e.message().contains(field),
            "{u:?}: message {:?} should name {field}",
            e.message()
        );
    }
    // A user namespace with the host's network is refused too.
    let mut cfg = env.pod_config("bad-hostnet");
    with_userns(&mut cfg, Some(default_userns()));
    if let Some(ns) = cfg
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        ns.network = NamespaceMode::Node as i32;
    }
    let e = run_pod(&mut env.rt, cfg)
        .await
        .expect_err("host network + userns");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("namespace_options.network"), "{e:?}");
    // Nothing was left behind by the refusals.
    assert!(mounts_below(&env.daemon.run_dir().join("pods")).is_empty());
}

/// ExecSync in container `id` of a userns pod runs inside the pod's user
/// namespace with exactly the container's credentials: root is the mapped
/// range, the capability sets are those of the container's own process
/// (pid 1: the test pods keep a PID namespace per container), and a
/// capability that needs the host's user namespace still fails.
async fn exec_in_userns(env: &mut Env, id: &str) {
    let script = "id -u; cat /proc/self/uid_map; \
        for p in self 1; do grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/$p/status | tr '\\n' ' '; echo; done; \
        mknod /tmp/exec-blk b 7 0 2>/dev/null && echo made || echo refused";
    let r = env.exec_sh(id, script).await;
    let out = String::from_utf8_lossy(&r.stdout).into_owned();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.exit_code, 0, "{out}{err}");
    let lines = normalise(&out);
    assert_eq!(lines.len(), 5, "{out}{err}");
    assert_eq!(lines[0], "0", "exec must run as the pod's root: {out}");
    assert_eq!(lines[1], map_line(0, UID_HOST, LEN), "{out}");
    assert_eq!(
        lines[2], lines[3],
        "the exec'd command must have the container's capability sets (self, then pid 1): {out}"
    );
    assert!(lines[2].contains("CapEff"), "{out}");
    assert_eq!(lines[4], "refused", "mknod must fail in exec too: {out}");
}

#[tokio::test]
async fn userns_pod_survives_daemon_kill_and_leaves_nothing_on_removal() {
    let mut env = Env::new("").await;
    let (pod, pcfg, first) = userns_sleeper(&mut env, "userns-restart").await;
    exec_in_userns(&mut env, &first).await;
    // Created before the crash, started after it (the restarted daemon
    // makes its run dir 0700 again; the pod's root must still reach it).
    let pending = env
        .create_ok(&pod, &pcfg, userns_ctr("pending", &env.busybox, "id -u"))
        .await;
    env.daemon.kill9();
    env.daemon.restart();
    env.rt = env.daemon.runtime_client().await;
    env.start_ok(&pending).await;
    let s = env.wait_exited(&pending, 30).await;
    let out = log_text(std::path::Path::new(&s.log_path));
    assert_eq!(
        (s.exit_code, normalise(&out)),
        (0, vec!["0".to_owned()]),
        "{out}"
    );
    let s = env.status(&first).await;
    assert_eq!(s.state, ContainerState::ContainerRunning as i32);
    exec_in_userns(&mut env, &first).await;
    let st = common::pods::pod_status(&mut env.rt, &pod).await;
    assert_eq!(
        st.status.map(|s| s.state),
        Some(PodSandboxState::SandboxReady as i32),
        "the userns pod must stay Ready across a daemon restart"
    );
    let (s, out) = env
        .run_to_exit(
            &pod,
            &pcfg,
            userns_ctr("after", &env.busybox, "id -u; cat /proc/self/uid_map"),
        )
        .await;
    assert_eq!(s.exit_code, 0, "{out}");
    assert_eq!(normalise(&out), ["0", &map_line(0, UID_HOST, LEN)], "{out}");

    let run_dir = env.daemon.run_dir().to_owned();
    let dir = pod_dir(&run_dir, &pod);
    env.stop(&first, 1).await.unwrap();
    for c in env.list(None).await {
        env.remove(&c.id).await.unwrap();
    }
    stop_pod(&mut env.rt, &pod).await.unwrap();
    remove_pod(&mut env.rt, &pod).await.unwrap();
    let left = mounts_below(&run_dir);
    assert!(left.is_empty(), "mounts left after removal: {left:?}");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

/// The helper directly: with a user namespace, every other namespace it
/// pins is owned by it (`nsenter --user --net` enters both as the pod's
/// root, which setns into a host-owned netns would refuse), and a map the
/// kernel refuses (validation bypassed) fails naming the map file and
/// leaves nothing behind.
#[tokio::test]
async fn pinns_makes_the_pod_namespaces_owned_by_its_user_namespace() {
    use crius::sys::namespace::{IdMap, PinRequest, UserNs, pin, unpin};
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_crius"));
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("ns");
    let maps = |len| UserNs {
        uids: vec![IdMap {
            container_id: 0,
            host_id: UID_HOST,
            length: len,
        }],
        gids: vec![IdMap {
            container_id: 0,
            host_id: GID_HOST,
            length: len,
        }],
    };
    let req = PinRequest {
        dir: dir.clone(),
        net: true,
        ipc: true,
        uts: true,
        hostname: Some("userns-pinns".into()),
        userns: Some(maps(LEN)),
        ..PinRequest::default()
    };
    let pinned = pin(exe, &req).await.expect("pin with a user namespace");
    let user = pinned.user.clone().expect("the user namespace pin");
    let out = std::process::Command::new("nsenter")
        .arg(format!("--user={}", user.display()))
        .arg(format!("--net={}", dir.join("net").display()))
        .arg(format!("--uts={}", dir.join("uts").display()))
        .args(["sh", "-c", "id -u; hostname; cat /proc/self/uid_map"])
        .output()
        .expect("nsenter (Debian package util-linux)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "nsenter into the pod's user and net namespaces: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        normalise(&text),
        ["0", "userns-pinns", &map_line(0, UID_HOST, LEN)]
    );
    unpin(&dir).expect("unpin");
    assert!(!dir.exists());

    // Overlapping uid ranges: the kernel refuses the uid_map write.
    let mut bad = maps(LEN);
    bad.uids.push(IdMap {
        container_id: 10,
        host_id: UID_HOST + LEN,
        length: 10,
    });
    let req = PinRequest {
        userns: Some(bad),
        ..req
    };
    let e = pin(exe, &req)
        .await
        .expect_err("overlapping maps")
        .to_string();
    assert!(e.contains("uid_map"), "{e}");
    assert!(!dir.exists(), "a failed pin left {}", dir.display());
}

/// ExecSync as a non-root user of a userns pod: the command takes the
/// container's uid, gid and supplementary groups inside the namespace (not
/// the host ids of the same numbers, which the namespace does not map) and
/// no capabilities.
#[tokio::test]
async fn exec_as_non_root_in_userns_pod() {
    let mut env = Env::new("").await;
    let (pod, pcfg) = userns_pod(&mut env, "userns-nonroot").await;
    let mut cfg = userns_ctr("sleeper", &env.busybox, "sleep 300");
    let sc = security(&mut cfg);
    sc.run_as_user = Some(Int64Value { value: 1000 });
    sc.run_as_group = Some(Int64Value { value: 2000 });
    sc.supplemental_groups = vec![3000];
    let id = env.run(&pod, &pcfg, cfg).await;
    let script = "id -u; id -g; id -G; grep -E '^Cap(Prm|Eff)' /proc/self/status | tr -s '\\t' ' '";
    let r = env.exec_sh(&id, script).await;
    let out = String::from_utf8_lossy(&r.stdout).into_owned();
    assert_eq!(
        (r.exit_code, normalise(&out)),
        (
            0,
            vec![
                "1000".to_owned(),
                "2000".to_owned(),
                "2000 3000".to_owned(),
                "CapPrm: 0000000000000000".to_owned(),
                "CapEff: 0000000000000000".to_owned(),
            ]
        ),
        "{out}{}",
        String::from_utf8_lossy(&r.stderr)
    );
    env.stop(&id, 1).await.unwrap();
}

/// An image volume in a userns pod: its overlay is built on id-mapped
/// layers, so the image's root-owned files are root's inside the pod (not
/// the overflow id an unmapped owner shows as), and it stays read-only.
#[tokio::test]
async fn image_volume_in_userns_pod_keeps_image_owners() {
    let mut env = Env::new("").await;
    let (pod, pcfg) = userns_pod(&mut env, "userns-ivol").await;
    let mut cfg = userns_ctr(
        "ivol",
        &env.busybox,
        "stat -c '%u:%g' /vol/bin/busybox; touch /vol/new 2>&1; \
         stat -c '%u:%g' /bin/busybox",
    );
    cfg.mounts = vec![Mount {
        container_path: "/vol".into(),
        image: Some(ImageSpec {
            image: env.busybox.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }];
    let (s, out) = env.run_to_exit(&pod, &pcfg, cfg).await;
    assert_eq!(s.exit_code, 0, "{out}");
    let lines = normalise(&out);
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], "0:0", "image volume file owners: {out}");
    assert!(lines[1].contains("Read-only file system"), "{out}");
    assert_eq!(lines[2], "0:0", "rootfs file owners (control): {out}");
}

/// A node whose image layers live on a filesystem that cannot be id-mapped
/// (ramfs here; tmpfs before Linux 6.3) cannot run user namespace pods:
/// `Status` says so for the built-in handler, so kubelet does not admit
/// them, and RunPodSandbox refuses one naming the layer store, before
/// anything is made.
#[tokio::test]
async fn userns_refused_where_the_layer_store_cannot_idmap() {
    let mut d = common::daemon::Daemon::configure("");
    let state = d.state_dir().to_owned();
    std::fs::create_dir_all(&state).expect("state dir");
    let ok = std::process::Command::new("mount")
        .args(["-t", "ramfs", "ramfs"])
        .arg(&state)
        .status()
        .expect("running mount (util-linux)");
    assert!(ok.success(), "mounting a ramfs on {}", state.display());
    d.launch();
    let mut rt = d.runtime_client().await;
    assert!(
        !default_handler_userns(&mut rt).await,
        "Status must not report user_namespaces with layers on ramfs"
    );
    let mut cfg = common::pods::pod_config("userns-ramfs");
    with_userns(&mut cfg, Some(default_userns()));
    let e = run_pod(&mut rt, cfg)
        .await
        .expect_err("a userns pod on a node whose layers cannot be id-mapped");
    assert!(
        e.message().contains("cannot be id-mapped") && e.message().contains("layer store"),
        "{e:?}"
    );
    assert!(
        common::pods::list_pods(&mut rt, None).await.is_empty(),
        "the refused pod must leave no record"
    );
}

/// `kubectl exec -it` into a userns pod: the command gets a terminal and
/// runs as the pod's root inside the namespace.
#[tokio::test]
async fn exec_with_a_terminal_in_userns_pod() {
    use common::spdy::{exec_req, session, url};
    let mut env = Env::new("").await;
    let (_pod, _pcfg, id) = userns_sleeper(&mut env, "userns-tty").await;
    let req = exec_req(&id, &["sh"], true, true);
    let u = url(&mut env.rt, req.clone()).await;
    let mut s = session(&u, &req, &["v4.channel.k8s.io"]).await;
    s.send(
        "stdin",
        b"[ -t 0 ] && echo tty-yes; id -u; cat /proc/self/uid_map; exit 3\n",
        false,
    )
    .await;
    let out = s.run(20).await;
    s.close().await;
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(text.contains("tty-yes"), "{text:?}");
    assert!(
        text.contains("\n0\n"),
        "exec must run as the pod's root: {text:?}"
    );
    assert!(
        normalise(&text).contains(&map_line(0, UID_HOST, LEN)),
        "{text:?}"
    );
    assert_eq!(out.status()["details"]["causes"][0]["message"], "3");
    env.stop(&id, 1).await.unwrap();
}
