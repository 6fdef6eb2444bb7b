//! Container mounts, pod files and PID namespaces through the real daemon:
//! CRI bind mounts (read-write, read-only, missing host path, host file,
//! `recursive_read_only`), mount propagation (private, rslave, rshared,
//! mixed in one container, with the built-in runtime and runc, and the
//! error when the host path cannot propagate), the pod's hostname,
//! resolv.conf, hosts and /dev/shm, the PID namespace modes, and CVE
//! regressions: a symlinked mount target (CVE-2021-30465), a symlinked
//! `/etc/passwd`, and the host crius binary out of reach (CVE-2019-5736).

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::containers::*;
use common::pods::{pod_dir, run_pod_ok};
use common::*;
use k8s_cri::v1::*;
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

/// Mounts made by a test on the host, unmounted (lazily, with everything
/// below them) on drop, newest first, even when the test fails.
struct HostMounts {
    dir: tempfile::TempDir,
    points: Vec<PathBuf>,
}

impl HostMounts {
    fn new() -> HostMounts {
        HostMounts {
            dir: tempfile::Builder::new()
                .prefix("crius-mnt-")
                .tempdir()
                .expect("mount temp dir"),
            points: Vec::new(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A tmpfs at `<dir>/<rel>` (created) with propagation `prop`
    /// (`MS_SHARED`, `MS_PRIVATE`, …).
    fn tmpfs(&mut self, rel: &str, prop: MsFlags) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(&p).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &p,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=16m"),
        )
        .unwrap_or_else(|e| panic!("mounting a tmpfs at {}: {e}", p.display()));
        self.points.push(p.clone());
        self.propagation(&p, prop);
        p
    }

    /// Bind-mounts `src` at `<dir>/<rel>` (created) with propagation `prop`.
    fn bind(&mut self, src: &Path, rel: &str, prop: MsFlags) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(&p).unwrap();
        nix::mount::mount(Some(src), &p, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .unwrap_or_else(|e| panic!("bind-mounting {} at {}: {e}", src.display(), p.display()));
        self.points.push(p.clone());
        self.propagation(&p, prop);
        p
    }

    /// A tmpfs at `path` (anywhere; created), private.
    fn tmpfs_at(&mut self, p: &Path) {
        std::fs::create_dir_all(p).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            p,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=16m"),
        )
        .unwrap_or_else(|e| panic!("mounting a tmpfs at {}: {e}", p.display()));
        self.points.push(p.to_owned());
    }

    fn propagation(&self, p: &Path, prop: MsFlags) {
        nix::mount::mount(None::<&str>, p, None::<&str>, prop, None::<&str>)
            .unwrap_or_else(|e| panic!("setting propagation {prop:?} on {}: {e}", p.display()));
    }
}

impl Drop for HostMounts {
    fn drop(&mut self) {
        for p in self.points.iter().rev() {
            let _ = nix::mount::umount2(p, MntFlags::MNT_DETACH);
        }
        // Mounts propagated here from containers, if any are left.
        unmount_below(self.dir.path());
    }
}

/// Whether `path` is a mount point in the test's (the host's) namespace.
fn is_mount_point(path: &Path) -> bool {
    let p = path.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

fn bind(host: &Path, ctr_path: &str) -> Mount {
    Mount {
        container_path: ctr_path.into(),
        host_path: host.display().to_string(),
        ..Default::default()
    }
}

fn with_propagation(mut m: Mount, p: MountPropagation) -> Mount {
    m.propagation = p as i32;
    m
}

fn pid_mode(cfg: &mut ContainerConfig, mode: NamespaceMode, target: &str) {
    security(cfg).namespace_options = Some(NamespaceOption {
        pid: mode as i32,
        target_id: target.into(),
        ..Default::default()
    });
}

/// Runs a pod whose sandbox PID namespace option is `mode`.
async fn pod_with_pid(
    env: &mut Env,
    name: &str,
    mode: NamespaceMode,
) -> (String, PodSandboxConfig) {
    let mut cfg = env.pod_config(name);
    cfg.linux
        .get_or_insert_with(Default::default)
        .security_context = Some(LinuxSandboxSecurityContext {
        namespace_options: Some(NamespaceOption {
            pid: mode as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = run_pod_ok(&mut env.rt, cfg.clone()).await;
    (id, cfg)
}

async fn wait_log(env: &mut Env, id: &str, text: &str) {
    let path = env.status(id).await.log_path;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = log_text(Path::new(&path));
        if now.contains(text) {
            return;
        }
        let s = env.status(id).await;
        assert!(
            Instant::now() < deadline && s.state != ContainerState::ContainerExited as i32,
            "{text:?} never appeared in the log of {id} (state {}, exit {}): {now:?}",
            s.state,
            s.exit_code
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// The monitor of running container `id`: its process's parent (the
/// monitor is the subreaper the container's process is left with).
async fn monitor_pid(env: &mut Env, id: &str) -> u32 {
    let info = env.status_full(id, true).await.1;
    let doc: serde_json::Value =
        serde_json::from_str(info.get("info").expect("verbose info")).expect("info JSON");
    let pid = doc["pid"].as_u64().expect("pid in the verbose info");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|p| p.trim().parse().ok())
        .expect("PPid")
}

#[tokio::test]
async fn bind_mounts_rw_ro_missing_host_path_and_file() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("binds").await;
    let host = tempfile::tempdir().unwrap();
    let rw = host.path().join("rw");
    let ro = host.path().join("ro");
    std::fs::create_dir(&rw).unwrap();
    std::fs::create_dir(&ro).unwrap();
    std::fs::write(rw.join("in"), "from-host\n").unwrap();
    std::fs::write(ro.join("in"), "ro-host\n").unwrap();
    let missing = host.path().join("missing/deep");
    let file = host.path().join("custom.conf");
    std::fs::write(&file, "file-content\n").unwrap();
    let mut c = sh(
        "binds",
        &bb,
        "cat /rw/in; echo from-ctr > /rw/out; \
         cat /ro/in; touch /ro/x 2>&1; \
         echo made > /missing/made && echo missing-ok; \
         cat /etc/custom.conf; echo appended >> /etc/custom.conf && echo file-ok",
    );
    c.mounts = vec![
        bind(&rw, "/rw"),
        Mount {
            readonly: true,
            ..bind(&ro, "/ro")
        },
        bind(&missing, "/missing"),
        bind(&file, "/etc/custom.conf"),
    ];
    let id = env.create_ok(&pod, &pcfg, c).await;
    // The missing host path is created (as a directory) at create time.
    assert!(missing.is_dir(), "{} not created", missing.display());
    env.start_ok(&id).await;
    let s = env.wait_exited(&id, 30).await;
    let out = log_text(Path::new(&s.log_path));
    assert!(out.starts_with("from-host\n"), "{out}");
    assert_eq!(
        std::fs::read_to_string(rw.join("out")).unwrap(),
        "from-ctr\n"
    );
    assert!(out.contains("ro-host\n"), "{out}");
    assert!(
        out.contains("/ro/x: Read-only file system"),
        "write to a readonly mount: {out}"
    );
    assert!(!ro.join("x").exists(), "the readonly mount was written");
    assert!(out.contains("missing-ok"), "{out}");
    assert_eq!(
        std::fs::read_to_string(missing.join("made")).unwrap(),
        "made\n"
    );
    assert!(out.contains("file-content\n"), "{out}");
    assert!(out.contains("file-ok"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "file-content\nappended\n",
        "the host file is the one bind-mounted"
    );
    // ContainerStatus reports the mounts as requested.
    let ro_status = s
        .mounts
        .iter()
        .find(|m| m.container_path == "/ro")
        .expect("/ro in ContainerStatus.mounts");
    assert!(ro_status.readonly);
    assert_eq!(ro_status.host_path, ro.display().to_string());
}

#[tokio::test]
async fn recursive_read_only_covers_submounts() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("rro").await;
    let mut mounts = HostMounts::new();
    let vol = mounts.tmpfs("vol", MsFlags::MS_PRIVATE);
    mounts.tmpfs_at(&vol.join("sub"));
    // recursive_read_only at /rro; plain readonly of the same dir at /ro,
    // whose submount stays writable (the reason rro exists).
    let mut c = sh(
        "rro",
        &bb,
        "touch /rro/top 2>&1; touch /rro/sub/x 2>&1; touch /ro/top 2>&1; \
         touch /ro/sub/y && echo ro-sub-writable",
    );
    c.mounts = vec![
        Mount {
            readonly: true,
            recursive_read_only: true,
            ..bind(&vol, "/rro")
        },
        Mount {
            readonly: true,
            ..bind(&vol, "/ro")
        },
    ];
    let (_, out) = env.run_to_exit(&pod, &pcfg, c).await;
    assert!(out.contains("/rro/top: Read-only file system"), "{out}");
    assert!(
        out.contains("/rro/sub/x: Read-only file system"),
        "a submount of a recursive_read_only mount is writable: {out}"
    );
    assert!(!vol.join("sub/x").exists());
    assert!(out.contains("/ro/top: Read-only file system"), "{out}");
    assert!(out.contains("ro-sub-writable"), "{out}");
    assert!(vol.join("sub/y").exists());
    // The CRI contract: recursive_read_only needs readonly and PRIVATE.
    for (name, m) in [
        (
            "rro-rw",
            Mount {
                recursive_read_only: true,
                ..bind(&vol, "/rro")
            },
        ),
        (
            "rro-slave",
            Mount {
                readonly: true,
                recursive_read_only: true,
                propagation: MountPropagation::PropagationHostToContainer as i32,
                ..bind(&vol, "/rro")
            },
        ),
    ] {
        let mut c = sh(name, &bb, "true");
        c.mounts = vec![m];
        let err = env.create(&pod, &pcfg, c).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("recursive_read_only"), "{err:?}");
    }
}

#[tokio::test]
async fn propagation_private_and_host_to_container() {
    private_and_host_to_container("").await;
}

#[tokio::test]
async fn propagation_private_and_host_to_container_runc() {
    private_and_host_to_container("runc").await;
}

async fn private_and_host_to_container(handler: &str) {
    let mut env = Env::for_handler(handler).await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod_on("prop", handler).await;
    let mut mounts = HostMounts::new();
    let shared = mounts.tmpfs("shared", MsFlags::MS_SHARED);
    let (vol, priv_) = (shared.join("vol"), shared.join("priv"));
    std::fs::create_dir_all(vol.join("sub")).unwrap();
    std::fs::create_dir_all(priv_.join("sub")).unwrap();
    let script = "echo ready; while [ ! -e /vol/go ]; do sleep 0.05; done; \
                  cat /vol/sub/marker 2>&1; cat /priv/sub/marker 2>&1";
    // rslave at /vol next to a PRIVATE mount at /priv (both host dirs on
    // the shared tmpfs); and a container with PRIVATE mounts only.
    let mut slave = sh("slave", &bb, script);
    slave.mounts = vec![
        with_propagation(
            bind(&vol, "/vol"),
            MountPropagation::PropagationHostToContainer,
        ),
        bind(&priv_, "/priv"),
    ];
    let mut private = sh("private", &bb, script);
    private.mounts = vec![bind(&vol, "/vol"), bind(&priv_, "/priv")];
    let slave = env.run(&pod, &pcfg, slave).await;
    let private = env.run(&pod, &pcfg, private).await;
    wait_log(&mut env, &slave, "ready").await;
    wait_log(&mut env, &private, "ready").await;
    // Mounts made on the host after the containers started.
    mounts.tmpfs_at(&vol.join("sub"));
    mounts.tmpfs_at(&priv_.join("sub"));
    std::fs::write(vol.join("sub/marker"), "propagated\n").unwrap();
    std::fs::write(priv_.join("sub/marker"), "leaked\n").unwrap();
    std::fs::write(vol.join("go"), "").unwrap();
    let s = env.wait_exited(&slave, 20).await;
    let out = log_text(Path::new(&s.log_path));
    assert!(
        out.starts_with("ready\npropagated\n"),
        "HOST_TO_CONTAINER: the host's new mount is not seen: {out}"
    );
    assert!(
        !out.contains("leaked") && out.contains("No such file or directory"),
        "PRIVATE next to HOST_TO_CONTAINER: the host's new mount leaked in: {out}"
    );
    let s = env.wait_exited(&private, 20).await;
    let out = log_text(Path::new(&s.log_path));
    assert!(
        !out.contains("propagated") && !out.contains("leaked"),
        "PRIVATE: the host's new mount leaked in: {out}"
    );
}

#[tokio::test]
async fn propagation_bidirectional_reaches_the_host() {
    bidirectional_reaches_the_host("").await;
}

#[tokio::test]
async fn propagation_bidirectional_reaches_the_host_runc() {
    bidirectional_reaches_the_host("runc").await;
}

async fn bidirectional_reaches_the_host(handler: &str) {
    let mut env = Env::for_handler(handler).await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod_on("bidir", handler).await;
    let mut mounts = HostMounts::new();
    let shared = mounts.tmpfs("shared", MsFlags::MS_SHARED);
    let [vol, priv_, slv] = ["vol", "priv", "slv"].map(|d| shared.join(d));
    for d in [&vol, &priv_, &slv] {
        std::fs::create_dir_all(d.join("sub")).unwrap();
    }
    // rshared at /vol, next to PRIVATE at /priv and rslave at /slv: each
    // keeps its own propagation.
    let mut bidir = sh(
        "bidir",
        &bb,
        "for d in vol priv slv; do mkdir -p /$d/up && mount -t tmpfs tmpfs /$d/up \
           && echo from-ctr > /$d/up/f; done; echo mounted; \
         while [ ! -e /vol/done ]; do sleep 0.05; done; \
         cat /slv/sub/m 2>&1; cat /priv/sub/m 2>&1",
    );
    bidir.mounts = vec![
        with_propagation(
            bind(&vol, "/vol"),
            MountPropagation::PropagationBidirectional,
        ),
        bind(&priv_, "/priv"),
        with_propagation(
            bind(&slv, "/slv"),
            MountPropagation::PropagationHostToContainer,
        ),
    ];
    security(&mut bidir).privileged = true;
    // rslave alone: the container's mount stays in the container.
    let mut slave = sh(
        "slave",
        &bb,
        "mkdir -p /vol/up2 && mount -t tmpfs tmpfs /vol/up2 && echo x > /vol/up2/f \
         && echo mounted; while [ ! -e /vol/done ]; do sleep 0.05; done",
    );
    slave.mounts = vec![with_propagation(
        bind(&vol, "/vol"),
        MountPropagation::PropagationHostToContainer,
    )];
    security(&mut slave).privileged = true;
    let bidir = env.run(&pod, &pcfg, bidir).await;
    let slave = env.run(&pod, &pcfg, slave).await;
    wait_log(&mut env, &bidir, "mounted").await;
    wait_log(&mut env, &slave, "mounted").await;
    let up = vol.join("up");
    assert!(
        is_mount_point(&up),
        "BIDIRECTIONAL: the container's mount at /vol/up is not on the host"
    );
    assert_eq!(
        std::fs::read_to_string(up.join("f")).unwrap_or_default(),
        "from-ctr\n"
    );
    for (what, dir) in [
        ("PRIVATE next to BIDIRECTIONAL", priv_.join("up")),
        ("HOST_TO_CONTAINER next to BIDIRECTIONAL", slv.join("up")),
        ("HOST_TO_CONTAINER", vol.join("up2")),
    ] {
        assert!(
            dir.is_dir(),
            "the container's mkdir {} is not on the host",
            dir.display()
        );
        assert!(
            !is_mount_point(&dir) && !dir.join("f").exists(),
            "{what}: the container's mount {} propagated to the host",
            dir.display()
        );
    }
    // Host to container, next to the rshared mount.
    mounts.tmpfs_at(&slv.join("sub"));
    mounts.tmpfs_at(&priv_.join("sub"));
    std::fs::write(slv.join("sub/m"), "slave-sees\n").unwrap();
    std::fs::write(priv_.join("sub/m"), "leaked\n").unwrap();
    std::fs::write(vol.join("done"), "").unwrap();
    let s = env.wait_exited(&bidir, 20).await;
    let out = log_text(Path::new(&s.log_path));
    assert!(out.contains("slave-sees\n"), "{out}");
    assert!(!out.contains("leaked"), "{out}");
    env.wait_exited(&slave, 20).await;
    // Removing the container leaves no mount behind and the host dirs
    // whole (a runtime deleting its bundle through a bind would not).
    let bundle = env.daemon.run_dir().join("containers").join(&bidir);
    env.remove(&bidir).await.unwrap();
    assert!(!bundle.exists(), "{} left behind", bundle.display());
    assert_eq!(
        common::pods::mounts_below(&bundle),
        Vec::<String>::new(),
        "mounts left behind"
    );
    for f in [priv_.join("sub/m"), slv.join("sub/m"), priv_.join("up")] {
        assert!(f.exists(), "{} was deleted", f.display());
    }
}

#[tokio::test]
async fn propagation_needs_a_host_mount_that_propagates() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("propcheck").await;
    let mut mounts = HostMounts::new();
    let private = mounts.tmpfs("private", MsFlags::MS_PRIVATE);
    let shared = mounts.tmpfs("shared", MsFlags::MS_SHARED);
    let slave = mounts.bind(&shared, "slave", MsFlags::MS_SLAVE);
    let vol = private.join("vol");
    let cases = [
        (
            &private,
            MountPropagation::PropagationHostToContainer,
            "not a shared or slave mount",
        ),
        (
            &private,
            MountPropagation::PropagationBidirectional,
            "not a shared mount",
        ),
        (
            &slave,
            MountPropagation::PropagationBidirectional,
            "not a shared mount",
        ),
    ];
    for (i, (host, prop, want)) in cases.into_iter().enumerate() {
        let path = if host == &private {
            vol.clone()
        } else {
            host.join("vol")
        };
        let mut c = sh(&format!("bad{i}"), &bb, "true");
        c.mounts = vec![with_propagation(bind(&path, "/vol"), prop)];
        let err = env.create(&pod, &pcfg, c).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains(want)
                && err.message().contains(&path.display().to_string())
                && err.message().contains(&host.display().to_string()),
            "{prop:?} on {}: {err:?}",
            host.display()
        );
    }
    // rslave on a slave mount and rshared on a shared one are accepted.
    for (name, host, prop) in [
        (
            "ok-slave",
            &slave,
            MountPropagation::PropagationHostToContainer,
        ),
        (
            "ok-shared",
            &shared,
            MountPropagation::PropagationBidirectional,
        ),
    ] {
        let mut c = sh(name, &bb, "true");
        c.mounts = vec![with_propagation(bind(host, "/vol"), prop)];
        let id = env.create_ok(&pod, &pcfg, c).await;
        env.remove(&id).await.unwrap();
    }
}

#[tokio::test]
async fn pod_files_and_shared_shm() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("podfiles").await;
    let dir = pod_dir(env.daemon.run_dir(), &pod);
    let (s, out) = env
        .run_to_exit(
            &pod,
            &pcfg,
            sh(
                "files",
                &bb,
                "cat /etc/hostname; echo ---; cat /etc/resolv.conf; echo ---; cat /etc/hosts; \
                 echo ---; hostname",
            ),
        )
        .await;
    assert_eq!(s.exit_code, 0, "{out}");
    let host =
        |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("pod's {f}: {e}"));
    let expect = format!(
        "{}---\n{}---\n{}---\npodfiles\n",
        host("hostname"),
        host("resolv.conf"),
        host("hosts")
    );
    assert_eq!(out, expect);
    // Not the image's /etc/hostname ("busybox"): the pod's.
    assert!(out.starts_with("podfiles\n"), "{out}");
    assert!(out.contains("nameserver 10.96.0.10"), "{out}");
    assert!(out.contains("search default.svc.cluster.local"), "{out}");
    // /dev/shm: one tmpfs per pod, shared by its containers.
    let name = format!("shm-{}", &pod[..12]);
    let (s, out) = env
        .run_to_exit(
            &pod,
            &pcfg,
            sh(
                "writer",
                &bb,
                &format!("echo from-writer > /dev/shm/{name}"),
            ),
        )
        .await;
    assert_eq!(s.exit_code, 0, "{out}");
    let (_, out) = env
        .run_to_exit(
            &pod,
            &pcfg,
            sh("reader", &bb, &format!("cat /dev/shm/{name}")),
        )
        .await;
    assert_eq!(out, "from-writer\n");
    assert_eq!(
        std::fs::read_to_string(dir.join("shm").join(&name)).unwrap(),
        "from-writer\n"
    );
    assert!(
        !Path::new("/dev/shm").join(&name).exists(),
        "the pod's /dev/shm is the host's"
    );
    // Another pod does not see it.
    let (pod2, pcfg2) = env.pod("podfiles2").await;
    let (_, out) = env
        .run_to_exit(
            &pod2,
            &pcfg2,
            sh("other", &bb, &format!("cat /dev/shm/{name} 2>&1")),
        )
        .await;
    assert!(out.contains("No such file"), "{out}");
}

#[tokio::test]
async fn pid_namespace_modes() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let daemon_pid = env.daemon.pid().expect("daemon pid");
    // POD: the containers of the pod see each other, not the host.
    let (pod, pcfg) = pod_with_pid(&mut env, "pidpod", NamespaceMode::Pod).await;
    let mut sleeper = ctr("sleeper", &bb, &["sleep", "4321"]);
    pid_mode(&mut sleeper, NamespaceMode::Pod, "");
    let sleeper = env.run(&pod, &pcfg, sleeper).await;
    let mut c = sh("looker", &bb, "ps; echo self=$$");
    pid_mode(&mut c, NamespaceMode::Pod, "");
    let (_, out) = env.run_to_exit(&pod, &pcfg, c).await;
    assert!(
        out.contains("sleep 4321"),
        "POD: the pod's other container is not visible: {out}"
    );
    assert!(!out.contains("self=1\n"), "POD: own PID namespace: {out}");
    assert!(!out.contains("serve"), "POD: host processes visible: {out}");
    // CONTAINER in the same pod: its process is pid 1 and alone.
    let mut c = sh("alone", &bb, "echo self=$$; ps");
    pid_mode(&mut c, NamespaceMode::Container, "");
    let (_, out) = env.run_to_exit(&pod, &pcfg, c).await;
    assert!(out.starts_with("self=1\n"), "CONTAINER: {out}");
    assert!(
        !out.contains("sleep 4321"),
        "CONTAINER: sees the pod: {out}"
    );

    // NODE: host processes (the daemon) are visible.
    let (pod2, pcfg2) = pod_with_pid(&mut env, "pidnode", NamespaceMode::Container).await;
    let mut c = sh(
        "node",
        &bb,
        &format!("echo self=$$; cat /proc/{daemon_pid}/cmdline; echo; ps"),
    );
    pid_mode(&mut c, NamespaceMode::Node, "");
    let (_, out) = env.run_to_exit(&pod2, &pcfg2, c).await;
    assert!(!out.starts_with("self=1\n"), "NODE: {out}");
    assert!(
        out.contains("serve"),
        "NODE: the daemon is not visible: {out}"
    );
    assert!(out.contains("sleep 4321"), "NODE: {out}");

    // TARGET: the target container's PID namespace.
    let mut target = ctr("target", &bb, &["sleep", "8765"]);
    pid_mode(&mut target, NamespaceMode::Container, "");
    let target = env.run(&pod2, &pcfg2, target).await;
    let mut c = sh(
        "targeted",
        &bb,
        "echo self=$$; cat /proc/1/cmdline; echo; ps",
    );
    pid_mode(&mut c, NamespaceMode::Target, &target);
    let (_, out) = env.run_to_exit(&pod2, &pcfg2, c).await;
    assert!(
        out.contains("sleep\u{0}8765"),
        "TARGET: pid 1 is not the target's process: {out:?}"
    );
    assert!(!out.starts_with("self=1\n"), "TARGET: {out}");
    assert!(
        !out.contains("sleep 4321"),
        "TARGET: sees another pod: {out}"
    );
    assert!(!out.contains("serve"), "TARGET: sees the host: {out}");
    // A target that is not a running container of the pod is refused.
    let mut c = sh("badtarget", &bb, "true");
    pid_mode(&mut c, NamespaceMode::Target, &sleeper);
    let err = env.create(&pod2, &pcfg2, c).await.unwrap_err();
    assert!(err.message().contains("target_id"), "{err:?}");
}

#[tokio::test]
async fn cve_2021_30465_symlinked_mount_target_stays_in_rootfs() {
    let mut env = Env::new("").await;
    // Where the symlinks point on the host: must stay untouched.
    let outside = tempfile::tempdir().unwrap();
    let abs_target = outside.path().join("abs-escape");
    let rel_target = format!(
        "{}{}",
        "../".repeat(16),
        outside
            .path()
            .join("rel-escape")
            .display()
            .to_string()
            .trim_start_matches('/')
    );
    let image = ImageBuilder::new()
        .cmd(&["sh"])
        .layer(busybox_layer(Compression::Gzip))
        .layer(
            LayerBuilder::new()
                .dir("mnt", 0o755)
                .symlink("mnt/abs", &abs_target.display().to_string())
                .symlink("mnt/rel", &rel_target)
                .build(Compression::Gzip),
        )
        .build();
    let img = env.add_image("mntlink", &image).await;
    let (pod, pcfg) = env.pod("mntlink").await;
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("marker"), "inside\n").unwrap();
    // One host target missing (a runtime following the symlink out would
    // create it), one present (it would be mounted over, out of sight).
    std::fs::create_dir(outside.path().join("rel-escape")).unwrap();
    for name in ["abs", "rel"] {
        let mut c = sh(
            name,
            &img,
            &format!("cat /mnt/{name}/marker; touch /mnt/{name}/new-{name}"),
        );
        c.mounts = vec![bind(src.path(), &format!("/mnt/{name}"))];
        let result = match env.create(&pod, &pcfg, c).await {
            Err(e) => Err(e.message().to_owned()),
            Ok(id) => match env.start(&id).await {
                Err(e) => Err(e.message().to_owned()),
                Ok(()) => {
                    let s = env.wait_exited(&id, 30).await;
                    Ok(log_text(Path::new(&s.log_path)))
                }
            },
        };
        match result {
            // Refused (libcontainer: the target is not a directory inside
            // the rootfs): clearly, naming the mount.
            Err(msg) => assert!(
                msg.contains(&format!("/mnt/{name}")),
                "unclear refusal: {msg}"
            ),
            // Mounted: inside the rootfs, where the container resolves the
            // symlink, so it reads and writes the host source dir.
            Ok(out) => {
                assert_eq!(out, "inside\n", "{name}");
                assert!(src.path().join(format!("new-{name}")).exists());
            }
        }
    }
    let mut left: Vec<_> = walk(outside.path());
    left.sort();
    assert_eq!(
        left,
        vec![outside.path().join("rel-escape")],
        "the symlinks' host targets were touched"
    );
    assert!(!is_mount_point(&outside.path().join("rel-escape")));
}

/// Every path below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        out.push(e.path());
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

#[tokio::test]
async fn cve_symlinked_etc_passwd_is_resolved_in_the_rootfs() {
    let mut env = Env::new("").await;
    // "sys" is in Debian's /etc/passwd (uid 3), not in the test image's.
    let host_passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    assert!(
        host_passwd.lines().any(|l| l.starts_with("sys:x:3:")),
        "the host's /etc/passwd has no sys user (Debian's base-passwd package)"
    );
    let with = |layer: LayerBuilder| {
        ImageBuilder::new()
            .cmd(&["sh"])
            .layer(busybox_layer(Compression::Gzip))
            .layer(layer.build(Compression::Gzip))
            .build()
    };
    // Absolute and climbing symlinks to /etc/passwd: inside the rootfs
    // both name the symlink itself (a loop); followed on the host they
    // name the host's passwd.
    let abs = env
        .add_image(
            "pwabs",
            &with(
                LayerBuilder::new()
                    .dir("etc", 0o755)
                    .symlink("etc/passwd", "/etc/passwd"),
            ),
        )
        .await;
    let rel = env
        .add_image(
            "pwrel",
            &with(
                LayerBuilder::new()
                    .dir("etc", 0o755)
                    .symlink("etc/passwd", "../../../../../../../../etc/passwd"),
            ),
        )
        .await;
    // A symlink to a file that exists only inside the rootfs.
    let inside = env
        .add_image(
            "pwin",
            &with(
                LayerBuilder::new()
                    .dir("etc", 0o755)
                    .file("etc/real-passwd", "sys:x:4242:4242:sys:/:/bin/sh\n", 0o644)
                    .symlink("etc/passwd", "/etc/real-passwd"),
            ),
        )
        .await;
    let (pod, pcfg) = env.pod("pwlink").await;
    for (name, img) in [("abs", &abs), ("rel", &rel)] {
        let mut c = sh(name, img, "id -u");
        security(&mut c).run_as_username = "sys".into();
        match env.create(&pod, &pcfg, c).await {
            Err(err) => {
                assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
                assert!(
                    err.message().contains("passwd") || err.message().contains("sys"),
                    "{err:?}"
                );
            }
            Ok(id) => {
                env.start_ok(&id).await;
                let s = env.wait_exited(&id, 30).await;
                panic!(
                    "{name}: user sys resolved through a symlink out of the rootfs: {:?}, uid {:?}",
                    log_text(Path::new(&s.log_path)),
                    s.user.and_then(|u| u.linux).map(|l| l.uid)
                );
            }
        }
    }
    let mut c = sh("in", &inside, "id -u");
    security(&mut c).run_as_username = "sys".into();
    let (s, out) = env.run_to_exit(&pod, &pcfg, c).await;
    assert_eq!(out, "4242\n");
    assert_eq!(s.user.and_then(|u| u.linux).map(|l| l.uid), Some(4242));
}

#[tokio::test]
async fn cve_2019_5736_host_binary_is_read_only_to_containers() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let run_dir = env.daemon.run_dir().to_owned();
    let bound = run_dir.join("crius");
    let (pod, pcfg) = env.pod("victim").await;
    let victim = env
        .run(&pod, &pcfg, ctr("victim", &bb, &["sleep", "300"]))
        .await;
    let monitor = monitor_pid(&mut env, &victim).await;
    let exe = PathBuf::from(format!("/proc/{monitor}/exe"));
    assert_eq!(
        std::fs::read_link(&exe).unwrap(),
        bound,
        "the monitor does not run from the read-only bind"
    );
    // What a container reaching /proc/<pid>/exe gets: a read-only mount
    // (access(2) reports the mount; open(2) would say ETXTBSY first).
    assert_eq!(
        nix::unistd::access(&exe, nix::unistd::AccessFlags::W_OK),
        Err(Errno::EROFS),
        "{} is writable through /proc/{monitor}/exe",
        bound.display()
    );
    // The pod's PID namespace holder (pid mode POD) too.
    let (ppod, _) = pod_with_pid(&mut env, "infra", NamespaceMode::Pod).await;
    let ns = std::fs::metadata(pod_dir(&run_dir, &ppod).join("ns/pid"))
        .expect("pinned pid namespace")
        .ino();
    let infra = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .find(|p| {
            std::fs::read_link(format!("/proc/{p}/ns/pid"))
                .is_ok_and(|l| l.to_string_lossy() == format!("pid:[{ns}]"))
        })
        .expect("the pod's infra process");
    let infra_exe = PathBuf::from(format!("/proc/{infra}/exe"));
    assert_eq!(std::fs::read_link(&infra_exe).unwrap(), bound);
    assert_eq!(
        nix::unistd::access(&infra_exe, nix::unistd::AccessFlags::W_OK),
        Err(Errno::EROFS)
    );
    // From a privileged container in the host PID namespace: the exploit's
    // open for writing with O_TRUNC fails on the read-only mount (checked
    // safe above: the binary cannot be truncated).
    let mut c = sh(
        "attacker",
        &bb,
        &format!("printf '' > /proc/{monitor}/exe 2>&1; echo rc=$?"),
    );
    security(&mut c).privileged = true;
    pid_mode(&mut c, NamespaceMode::Node, "");
    let (_, out) = env.run_to_exit(&pod, &pcfg, c).await;
    assert!(
        out.contains("Read-only file system") && !out.contains("rc=0"),
        "{out}"
    );
    let size = std::fs::metadata(&bound).unwrap().len();
    assert!(size > 1_000_000, "crius binary damaged: {size} bytes");
    env.stop(&victim, 0).await.unwrap();
}
