//! Containers through the real daemon, in real pods on a real CNI network,
//! from images the tests build and push to a real registry: lifecycle,
//! process (args, env, working dir, user), logs, stop, exit codes and
//! reasons, idempotence, filters, restart recovery, the runc handler.

mod common;

use std::path::Path;
use std::time::Duration;

use common::containers::*;
use common::*;
use k8s_cri::v1::*;

#[tokio::test]
async fn lifecycle_create_start_exit_remove() {
    let mut env = Env::new("").await;
    let (pod, pcfg) = env.pod("life").await;
    let id = env
        .create_ok(
            &pod,
            &pcfg,
            sh(
                "c1",
                &env.busybox.clone(),
                "echo hello; echo oops >&2; exit 3",
            ),
        )
        .await;
    let s = env.status(&id).await;
    assert_eq!(s.state, ContainerState::ContainerCreated as i32);
    assert!(s.created_at > 0);
    assert_eq!(s.started_at, 0);
    env.start_ok(&id).await;
    let s = env.wait_exited(&id, 20).await;
    assert_eq!(s.exit_code, 3);
    assert_eq!(s.reason, "Error");
    assert!(s.started_at >= s.created_at && s.finished_at >= s.started_at);
    assert_eq!(log_text(Path::new(&s.log_path)), "hello\noops\n");
    let recs = log_records(Path::new(&s.log_path));
    assert_eq!(recs[0].stream, "stdout");
    assert_eq!(recs[1].stream, "stderr");
    assert!(
        chrono_like(&recs[0].time),
        "timestamp {:?} is not RFC3339",
        recs[0].time
    );
    // A second start is refused; the exit stays recorded.
    let err = env.start(&id).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    env.remove(&id).await.unwrap();
    env.remove(&id).await.unwrap();
    env.stop(&id, 0).await.unwrap();
    assert!(env.list(None).await.is_empty());
    let bundle = env.daemon.run_dir().join("containers").join(&id);
    assert!(!bundle.exists(), "bundle {} left behind", bundle.display());
    assert!(
        !env.daemon.state_dir().join("containers").join(&id).exists(),
        "writable layer left behind"
    );
}

/// Adds a host dir mounted at /sig, through which the test tells the
/// container to go on (a file appearing there).
fn with_signal_dir(env: &Env, mut cfg: ContainerConfig) -> (std::path::PathBuf, ContainerConfig) {
    let name = cfg
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let dir = env.logs.path().join(format!("sig-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    cfg.mounts.push(Mount {
        container_path: "/sig".into(),
        host_path: dir.display().to_string(),
        ..Default::default()
    });
    (dir, cfg)
}

fn chrono_like(t: &str) -> bool {
    t.len() >= 20 && t.as_bytes()[4] == b'-' && t.contains('T') && t.ends_with('Z')
}

#[tokio::test]
async fn completed_reason_and_args_env_workdir_from_image_and_cri() {
    let mut env = Env::new("").await;
    let configured = env.add_image("configured", &configured_image()).await;
    let (pod, pcfg) = env.pod("proc").await;
    // Image: Entrypoint [/bin/sh -c], Cmd [echo $GREETING], WorkingDir /tmp.
    let (s, out) = env
        .run_to_exit(&pod, &pcfg, ctr("img", &configured, &[]))
        .await;
    assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"));
    assert_eq!(out, "hello\n");
    // CRI args replace Cmd only.
    let mut c = ctr("args", &configured, &[]);
    c.args = vec!["echo $GREETING $EXTRA; pwd; echo $HOME; echo $HOSTNAME".into()];
    c.envs = vec![
        KeyValue {
            key: "EXTRA".into(),
            value: "world".into(),
        },
        KeyValue {
            key: "GREETING".into(),
            value: "hi".into(),
        },
    ];
    let (_, out) = env.run_to_exit(&pod, &pcfg, c).await;
    assert_eq!(out, "hi world\n/tmp\n/root\nproc\n");
    // CRI command replaces Entrypoint and drops Cmd; working_dir is created.
    let mut c = ctr("cmd", &configured, &["/bin/sh", "-c", "pwd; echo $PATH"]);
    c.working_dir = "/work/dir".into();
    let (_, out) = env.run_to_exit(&pod, &pcfg, c).await;
    assert_eq!(
        out,
        "/work/dir\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
}

#[tokio::test]
async fn users_numeric_named_image_and_groups() {
    let mut env = Env::new("").await;
    let www = env.add_image("www", &user_image("www-data")).await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("users").await;
    let (s, out) = env.run_to_exit(&pod, &pcfg, sh("img", &www, "id")).await;
    assert_eq!(
        out,
        "uid=33(www-data) gid=33(www-data) groups=33(www-data)\n"
    );
    assert_eq!(
        s.user.and_then(|u| u.linux).map(|l| (l.uid, l.gid)),
        Some((33, 33))
    );
    let mut c = sh("num", &bb, "id -u; id -g; id -G");
    security(&mut c).run_as_user = Some(Int64Value { value: 1002 });
    security(&mut c).supplemental_groups = vec![1003, 5000];
    let (_, out) = env.run_to_exit(&pod, &pcfg, c).await;
    assert_eq!(out, "1002\n1002\n1002 1003 5000\n");
    let mut c = sh("named", &bb, "id -un; id -g");
    security(&mut c).run_as_username = "app".into();
    security(&mut c).run_as_group = Some(Int64Value { value: 1003 });
    let (_, out) = env.run_to_exit(&pod, &pcfg, c).await;
    assert_eq!(out, "app\n1003\n");
    // A name the image does not know is an error at create.
    let mut c = sh("ghost", &bb, "true");
    security(&mut c).run_as_username = "ghost".into();
    let err = env.create(&pod, &pcfg, c).await.unwrap_err();
    assert!(err.message().contains("ghost"), "{err:?}");
}

#[tokio::test]
async fn stop_signal_timeout_and_kill() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("stops").await;
    // Traps TERM and exits 7: a graceful stop.
    let graceful = env
        .run(
            &pod,
            &pcfg,
            sh(
                "graceful",
                &bb,
                "trap 'echo term; exit 7' TERM; echo ready; while true; do sleep 0.1; done",
            ),
        )
        .await;
    wait_for_log(&mut env, &graceful, "ready").await;
    env.stop(&graceful, 10).await.unwrap();
    let s = env.status(&graceful).await;
    assert_eq!(s.state, ContainerState::ContainerExited as i32);
    assert_eq!(s.exit_code, 7);
    // Ignores TERM: killed after the timeout.
    let stubborn = env
        .run(
            &pod,
            &pcfg,
            sh(
                "stubborn",
                &bb,
                "trap '' TERM; echo ready; while true; do sleep 0.1; done",
            ),
        )
        .await;
    wait_for_log(&mut env, &stubborn, "ready").await;
    let t = std::time::Instant::now();
    env.stop(&stubborn, 1).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(900));
    let s = env.status(&stubborn).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (137, "Error"));
    // The image's STOPSIGNAL (CRI v1 of this kubelet has no stop_signal).
    let image = ImageBuilder::new()
        .cmd(&["sh"])
        .stop_signal("SIGUSR1")
        .layer(busybox_layer(Compression::Gzip))
        .build();
    let usr1_image = env.add_image("usr1", &image).await;
    let c = sh(
        "usr1",
        &usr1_image,
        "trap 'echo usr1; exit 9' USR1; echo ready; while true; do sleep 0.1; done",
    );
    let usr1 = env.run(&pod, &pcfg, c).await;
    wait_for_log(&mut env, &usr1, "ready").await;
    env.stop(&usr1, 5).await.unwrap();
    assert_eq!(env.status(&usr1).await.exit_code, 9);
    // Stopping again, or an exited container, is fine.
    env.stop(&usr1, 5).await.unwrap();
    env.stop(&"f".repeat(64), 5).await.unwrap();
}

async fn wait_for_log(env: &mut Env, id: &str, text: &str) {
    let s = env.status(id).await;
    let path = s.log_path.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !log_text(Path::new(&path)).contains(text) {
        assert!(
            std::time::Instant::now() < deadline,
            "{text:?} never appeared in {path}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[tokio::test]
async fn long_lines_become_partial_records_and_logs_reopen() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("logs").await;
    // 40000 'a's then newline: two 16 KiB P records and an F.
    let (s, _) = env
        .run_to_exit(
            &pod,
            &pcfg,
            sh("long", &bb, "yes a | head -n 20000 | tr -d '\\n' 2>/dev/null || true; printf 'x%.0s' $(seq 1 40000); echo"),
        )
        .await;
    let recs = log_records(Path::new(&s.log_path));
    let tags: Vec<&str> = recs.iter().map(|r| r.tag.as_str()).collect();
    assert!(tags.windows(3).any(|w| w == ["P", "P", "F"]), "{tags:?}");
    assert!(recs.iter().all(|r| r.content.len() <= 16384));
    // Reopen: the monitor writes to the new file after a rename.
    let (sig, cfg) = with_signal_dir(
        &env,
        sh(
            "rot",
            &bb,
            "echo one; while [ ! -e /sig/go ]; do sleep 0.05; done; echo two; sleep 30",
        ),
    );
    let id = env.run(&pod, &pcfg, cfg).await;
    wait_for_log(&mut env, &id, "one").await;
    let path = env.status(&id).await.log_path;
    std::fs::rename(&path, format!("{path}.1")).unwrap();
    env.rt
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o640);
    std::fs::write(sig.join("go"), "").unwrap();
    wait_for_log(&mut env, &id, "two").await;
    assert_eq!(log_text(Path::new(&format!("{path}.1"))), "one\n");
    assert_eq!(log_text(Path::new(&path)), "two\n");
    env.stop(&id, 0).await.unwrap();
}

#[tokio::test]
async fn names_are_reserved_and_filters_work() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("filters").await;
    let (pod2, pcfg2) = env.pod("filters2").await;
    let a = env.create_ok(&pod, &pcfg, sh("a", &bb, "sleep 30")).await;
    let err = env
        .create(&pod, &pcfg, sh("a", &bb, "true"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains(&a), "{err:?}");
    let b = env.run(&pod, &pcfg, sh("b", &bb, "sleep 30")).await;
    let c = env.create_ok(&pod2, &pcfg2, sh("a", &bb, "true")).await;
    let ids = |v: Vec<Container>| {
        let mut v: Vec<String> = v.into_iter().map(|c| c.id).collect();
        v.sort();
        v
    };
    let mut all = vec![a.clone(), b.clone(), c.clone()];
    all.sort();
    assert_eq!(ids(env.list(None).await), all);
    let by_pod = ContainerFilter {
        pod_sandbox_id: pod2.clone(),
        ..Default::default()
    };
    assert_eq!(ids(env.list(Some(by_pod)).await), vec![c.clone()]);
    let running = ContainerFilter {
        state: Some(ContainerStateValue {
            state: ContainerState::ContainerRunning as i32,
        }),
        ..Default::default()
    };
    assert_eq!(ids(env.list(Some(running)).await), vec![b.clone()]);
    let by_prefix = ContainerFilter {
        id: b[..8].to_string(),
        ..Default::default()
    };
    assert_eq!(ids(env.list(Some(by_prefix)).await), vec![b.clone()]);
    let by_label = ContainerFilter {
        label_selector: [("ctr".to_string(), "b".to_string())].into(),
        ..Default::default()
    };
    assert_eq!(ids(env.list(Some(by_label)).await), vec![b.clone()]);
    // Removing the pod removes its containers and frees the name.
    pods::stop_pod(&mut env.rt, &pod).await.unwrap();
    assert_eq!(
        env.status(&b).await.state,
        ContainerState::ContainerExited as i32
    );
    pods::remove_pod(&mut env.rt, &pod).await.unwrap();
    assert_eq!(ids(env.list(None).await), vec![c]);
    let (pod3, pcfg3) = env.pod("filters").await;
    env.create_ok(&pod3, &pcfg3, sh("a", &bb, "true")).await;
}

#[tokio::test]
async fn missing_image_and_bad_command_are_clear_errors() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("errors").await;
    let err = env
        .create(&pod, &pcfg, ctr("x", "127.0.0.1:1/nope:latest", &["true"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(err.message().contains("nope"), "{err:?}");
    let id = env
        .create_ok(&pod, &pcfg, ctr("nocmd", &bb, &["/no/such/binary"]))
        .await;
    let err = env.start(&id).await.unwrap_err();
    assert!(err.message().contains("/no/such/binary"), "{err:?}");
    let s = env.status(&id).await;
    assert_eq!(s.state, ContainerState::ContainerExited as i32);
    assert_eq!((s.exit_code, s.reason.as_str()), (128, "StartError"));
    assert!(s.message.contains("/no/such/binary"), "{}", s.message);
    let err = env
        .create(&"0".repeat(64), &pcfg, ctr("x", &bb, &["true"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
}

#[tokio::test]
async fn restart_recovery_keeps_running_and_records_exits() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("recover").await;
    let long = env
        .run(&pod, &pcfg, sh("long", &bb, "echo before; sleep 300"))
        .await;
    let (sig, cfg) = with_signal_dir(
        &env,
        sh(
            "short",
            &bb,
            "while [ ! -e /sig/go ]; do sleep 0.05; done; echo bye; exit 42",
        ),
    );
    let short = env.run(&pod, &pcfg, cfg).await;
    wait_for_log(&mut env, &long, "before").await;
    let pid = env.status_full(&long, true).await.1["info"].clone();
    env.daemon.kill9();
    // While the daemon is down, one container exits.
    std::fs::write(sig.join("go"), "").unwrap();
    std::thread::sleep(Duration::from_millis(800));
    env.daemon.restart();
    env.rt = env.daemon.runtime_client().await;
    let s = env.status(&long).await;
    assert_eq!(s.state, ContainerState::ContainerRunning as i32);
    assert_eq!(env.status_full(&long, true).await.1["info"], pid);
    let s = env.wait_exited(&short, 10).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (42, "Error"));
    assert_eq!(log_text(Path::new(&s.log_path)), "bye\n");
    env.stop(&long, 1).await.unwrap();
    let s = env.status(&long).await;
    assert_eq!(s.state, ContainerState::ContainerExited as i32);
    env.remove(&long).await.unwrap();
    env.remove(&short).await.unwrap();
}

#[tokio::test]
async fn runc_handler_runs_the_same_spec() {
    let mut env = Env::for_handler("runc").await;
    let bb = env.busybox.clone();
    let (pod, mut pcfg) = env.pod_on("runc", "runc").await;
    pcfg.hostname = "runc".into();
    let (s, out) = env
        .run_to_exit(
            &pod,
            &pcfg,
            sh("hello", &bb, "echo via runc; hostname; exit 5"),
        )
        .await;
    assert_eq!(out, "via runc\nrunc\n");
    assert_eq!(s.exit_code, 5);
    let id = env.run(&pod, &pcfg, sh("sleeper", &bb, "sleep 300")).await;
    env.stop(&id, 0).await.unwrap();
    assert_eq!(env.status(&id).await.exit_code, 137);
    env.remove(&id).await.unwrap();
    // An unknown handler is refused when the pod is created.
    let err = env
        .rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(env.pod_config("nohandler")),
            runtime_handler: "nosuch".into(),
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("nosuch"), "{err:?}");
}

#[tokio::test]
async fn tty_verbose_info_apparmor_and_devices() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("tty").await;
    // tty: the process's stdio is a terminal, TERM is set, and its output
    // still reaches the log (as stdout records; the pty turns \n into \r\n).
    let mut c = sh(
        "tty",
        &bb,
        "[ -t 0 ] && [ -t 1 ] && echo is-a-tty; echo TERM=$TERM",
    );
    c.tty = true;
    let (s, out) = env.run_to_exit(&pod, &pcfg, c).await;
    assert_eq!(s.exit_code, 0, "{out}");
    assert!(out.contains("is-a-tty"), "{out:?}");
    assert!(out.contains("TERM=xterm"), "{out:?}");
    assert!(
        log_records(Path::new(&s.log_path))
            .iter()
            .all(|r| r.stream == "stdout"),
        "a tty has one stream"
    );
    // Without a tty stdin is /dev/null, and TERM is not set.
    let (_, out) = env
        .run_to_exit(
            &pod,
            &pcfg,
            sh("notty", &bb, "[ -t 1 ] || echo no-tty; echo TERM=$TERM"),
        )
        .await;
    assert_eq!(out, "no-tty\nTERM=\n");

    // Verbose status: the pid, the OCI spec and the runtime handler.
    let id = env.run(&pod, &pcfg, sh("verbose", &bb, "sleep 300")).await;
    let (_, info) = env.status_full(&id, true).await;
    let v: serde_json::Value = serde_json::from_str(&info["info"]).expect("info is JSON");
    let pid = v["pid"].as_u64().expect("pid in info") as u32;
    // StartContainer returns once the process is released to exec; give
    // the exec a moment.
    let mut cmdline = String::new();
    for _ in 0..100 {
        cmdline = std::fs::read_to_string(proc_path(pid, "cmdline")).expect("the pid is alive");
        if cmdline.contains("sleep") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cmdline.contains("sleep"), "{cmdline:?}");
    assert_eq!(v["runtimeSpec"]["process"]["args"][2], "sleep 300", "{v}");
    assert!(v["runtimeHandler"].is_string(), "{v}");
    env.stop(&id, 0).await.unwrap();

    // AppArmor: on a kernel without it, asking for a profile is a clear
    // error at create (with it, runtime/default is accepted); unconfined is
    // accepted either way.
    let has_apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.starts_with('Y'));
    let mut c = sh("aa", &bb, "true");
    security(&mut c).apparmor = Some(SecurityProfile {
        profile_type: security_profile::ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    });
    let created = env.create(&pod, &pcfg, c).await;
    if has_apparmor {
        created.expect("runtime/default accepted where AppArmor is enabled");
    } else {
        let err = created.unwrap_err();
        assert!(err.message().to_lowercase().contains("apparmor"), "{err:?}");
    }
    let mut c = sh("aa-unconfined", &bb, "true");
    security(&mut c).apparmor = Some(SecurityProfile {
        profile_type: security_profile::ProfileType::Unconfined as i32,
        localhost_ref: String::new(),
    });
    let (s, _) = env.run_to_exit(&pod, &pcfg, c).await;
    assert_eq!(s.exit_code, 0);

    // CRI devices: a host device node appears at the container path and is
    // usable with the permissions given; a missing host device is an error.
    let mut c = sh(
        "dev",
        &bb,
        "ls -l /dev/xnull | cut -c1; echo data > /dev/xnull && echo wrote",
    );
    c.devices = vec![Device {
        container_path: "/dev/xnull".into(),
        host_path: "/dev/null".into(),
        permissions: "rw".into(),
    }];
    let (s, out) = env.run_to_exit(&pod, &pcfg, c).await;
    assert_eq!(s.exit_code, 0, "{out}");
    assert_eq!(out, "c\nwrote\n");
    let mut c = sh("nodev", &bb, "true");
    c.devices = vec![Device {
        container_path: "/dev/x".into(),
        host_path: "/dev/no-such-device".into(),
        permissions: "rwm".into(),
    }];
    let err = env.create(&pod, &pcfg, c).await.unwrap_err();
    assert!(err.message().contains("/dev/no-such-device"), "{err:?}");
}

#[tokio::test]
async fn groups_policy_image_references_and_status_fields() {
    let mut env = Env::new("").await;
    // busybox whose /etc/group lists `app` in two more groups.
    let img = ImageBuilder::new()
        .cmd(&["sh"])
        .label("org.crius.test", "groups")
        .layer(busybox_layer(Compression::Gzip))
        .layer(
            LayerBuilder::new()
                .dir("etc", 0o755)
                .file(
                    "etc/group",
                    "root:x:0:\napp:x:1002:\ngrp1003:x:1003:app\ngrp1004:x:1004:other,app\n",
                    0o644,
                )
                .build(Compression::Gzip),
        )
        .build();
    let groups = env.add_image("groups", &img).await;
    let (pod, pcfg) = env.pod("groups").await;
    // Merge (the default): the user's memberships in the image's
    // /etc/group are added to the CRI ones.
    let mut c = sh("merge", &groups, "id -G");
    security(&mut c).run_as_user = Some(Int64Value { value: 1002 });
    security(&mut c).supplemental_groups = vec![5000];
    let (s, out) = env.run_to_exit(&pod, &pcfg, c).await;
    let mut got: Vec<u32> = out
        .split_whitespace()
        .map(|g| g.parse().expect("gid"))
        .collect();
    got.sort();
    assert_eq!(got, vec![1002, 1003, 1004, 5000], "{out}");
    let linux = s
        .user
        .and_then(|u| u.linux)
        .expect("status reports the user");
    let mut reported = linux.supplemental_groups.clone();
    reported.sort();
    assert_eq!((linux.uid, linux.gid), (1002, 1002));
    assert_eq!(reported, vec![1002, 1003, 1004, 5000]);
    // Strict: only the primary group and the CRI list.
    let mut c = sh("strict", &groups, "id -G");
    security(&mut c).run_as_user = Some(Int64Value { value: 1002 });
    security(&mut c).supplemental_groups = vec![5000];
    security(&mut c).supplemental_groups_policy = SupplementalGroupsPolicy::Strict as i32;
    let (_, out) = env.run_to_exit(&pod, &pcfg, c).await;
    assert_eq!(out, "1002 5000\n");

    // The image may be named by tag, by id or by repo@digest; the status
    // reports the spec as given, the image id and the repo digest.
    let id = img.id();
    let digest_ref = {
        let listed = env
            .img
            .image_status(ImageStatusRequest {
                image: Some(ImageSpec {
                    image: groups.clone(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .expect("ImageStatus")
            .into_inner()
            .image
            .expect("image present");
        listed.repo_digests[0].clone()
    };
    for (name, spec) in [("by-id", id.clone()), ("by-digest", digest_ref.clone())] {
        let (s, out) = env
            .run_to_exit(&pod, &pcfg, sh(name, &spec, "echo ran"))
            .await;
        assert_eq!(out, "ran\n", "image {spec}");
        assert_eq!(s.image_id, id, "image_id for {spec}");
        assert_eq!(s.image_ref, digest_ref, "image_ref for {spec}");
        assert_eq!(
            s.image.as_ref().map(|i| i.image.as_str()),
            Some(spec.as_str())
        );
    }
    // A CRI mount is reported in the status as given.
    let host = tempfile::tempdir().expect("tempdir");
    let mut c = sh("mounted", &groups, "cat /data/f");
    std::fs::write(host.path().join("f"), "from host\n").expect("write");
    c.mounts = vec![Mount {
        container_path: "/data".into(),
        host_path: host.path().display().to_string(),
        readonly: true,
        ..Default::default()
    }];
    let (s, out) = env.run_to_exit(&pod, &pcfg, c).await;
    assert_eq!(out, "from host\n");
    assert!(
        s.mounts
            .iter()
            .any(|m| m.container_path == "/data" && m.readonly),
        "{:?}",
        s.mounts
    );
}

/// `kill -9` of the daemon while StartContainers are in flight: after the
/// restart every container is Running or Exited (none is left Created with
/// a process nobody tracks), and stop + remove leaves no process behind.
#[tokio::test]
async fn kill9_during_start_loses_no_container() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("crashstart").await;
    let marker = format!("sleep {}", 3000 + std::process::id() % 1000);
    for (round, delay_ms) in [2u64, 10, 25, 60].into_iter().enumerate() {
        let mut ids = Vec::new();
        for i in 0..4 {
            let c = sh(&format!("c{round}-{i}"), &bb, &format!("exec {marker}"));
            ids.push(env.create_ok(&pod, &pcfg, c).await);
        }
        let mut calls = Vec::new();
        for id in &ids {
            let mut rt = env.rt.clone();
            let id = id.clone();
            calls.push(tokio::spawn(async move {
                rt.start_container(StartContainerRequest { container_id: id })
                    .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        env.daemon.kill9();
        for c in calls {
            let _ = c.await;
        }
        env.daemon.restart();
        env.rt = env.daemon.runtime_client().await;
        for id in &ids {
            let s = env.status(id).await;
            assert_ne!(
                s.state,
                ContainerState::ContainerUnknown as i32,
                "{id} after restart: {s:?}"
            );
            if s.state == ContainerState::ContainerCreated as i32 {
                // Never started: starting it now works.
                env.start_ok(id).await;
            }
            env.stop(id, 0).await.unwrap();
            env.remove(id).await.unwrap();
        }
        // Nothing of these containers runs any more.
        let left: Vec<String> = std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.trim_end() == marker)
            .collect();
        assert!(left.is_empty(), "round {round}: left running: {left:?}");
    }
}

/// `kill -9` of the daemon while CreateContainers are in flight: after the
/// restart each container either exists (and removes cleanly) or left
/// nothing behind: no bundle, rootfs mount or writable layer.
#[tokio::test]
async fn kill9_during_create_leaves_nothing_behind() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("crashcreate").await;
    for (round, delay_ms) in [3u64, 8, 15, 30].into_iter().enumerate() {
        let mut calls = Vec::new();
        for i in 0..4 {
            let mut rt = env.rt.clone();
            let req = CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(sh(&format!("c{round}-{i}"), &bb, "true")),
                sandbox_config: Some(pcfg.clone()),
            };
            calls.push(tokio::spawn(async move { rt.create_container(req).await }));
        }
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        env.daemon.kill9();
        for c in calls {
            let _ = c.await;
        }
        env.daemon.restart();
        env.rt = env.daemon.runtime_client().await;
        for c in env.list(None).await {
            env.remove(&c.id).await.unwrap();
        }
        let run = env.daemon.run_dir().join("containers");
        let state = env.daemon.state_dir().join("containers");
        for dir in [&run, &state] {
            let left: Vec<_> = std::fs::read_dir(dir)
                .map(|d| d.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            assert!(
                left.is_empty(),
                "round {round}: left in {}: {left:?}",
                dir.display()
            );
        }
        let mounts = common::pods::mounts_below(&run);
        assert!(mounts.is_empty(), "round {round}: mounts left: {mounts:?}");
        // The names are free again.
        for i in 0..4 {
            let id = env
                .create_ok(&pod, &pcfg, sh(&format!("c{round}-{i}"), &bb, "true"))
                .await;
            env.remove(&id).await.unwrap();
        }
    }
}
