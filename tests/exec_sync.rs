//! ExecSync through the real daemon: the command runs with the container's
//! namespaces, cgroup, user, capabilities, seccomp and env; stdout, stderr
//! and exit code come back; the timeout kills; output is capped at 16 MiB;
//! missing programs and stopped containers are clear errors; the runc
//! handler does the same.

mod common;

use common::containers::*;
use k8s_cri::v1::*;
use tonic::Code;

async fn exec(
    env: &mut Env,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> Result<ExecSyncResponse, tonic::Status> {
    // kubelet's client accepts 16 MiB messages (tonic's default is 4 MiB).
    env.rt
        .clone()
        .max_decoding_message_size(16 * 1024 * 1024)
        .exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout,
        })
        .await
        .map(|r| r.into_inner())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn exec_sync_runs_as_the_container_does() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("exec").await;
    let mut c = ctr("target", &bb, &["sleep", "300"]);
    c.envs = vec![KeyValue {
        key: "GREETING".into(),
        value: "hello".into(),
    }];
    c.working_dir = "/tmp".into();
    security(&mut c).run_as_user = Some(Int64Value { value: 1002 });
    security(&mut c).seccomp = Some(SecurityProfile {
        profile_type: security_profile::ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    });
    let id = env.run(&pod, &pcfg, c).await;
    let pid = env.status_full(&id, true).await.1["info"].clone();
    let pid: serde_json::Value = serde_json::from_str(&pid).expect("info");
    let pid = pid["pid"].as_u64().expect("pid") as u32;

    // Output, streams and exit code.
    let r = exec(
        &mut env,
        &id,
        &["sh", "-c", "echo out; echo err >&2; exit 7"],
        0,
    )
    .await
    .expect("ExecSync");
    assert_eq!(
        (text(&r.stdout), text(&r.stderr), r.exit_code),
        ("out\n".into(), "err\n".into(), 7)
    );
    // Same env, working dir, user; same namespaces and cgroup as the
    // container's process; same capabilities and seccomp.
    let r = exec(
        &mut env,
        &id,
        &[
            "sh",
            "-c",
            "echo $GREETING; pwd; id -u; for n in net mnt pid; do readlink /proc/self/ns/$n; done; \
             cat /proc/self/cgroup | sort; grep -E '^(CapEff|Seccomp):' /proc/self/status",
        ],
        10,
    )
    .await
    .expect("ExecSync");
    let out = text(&r.stdout);
    assert_eq!(r.exit_code, 0, "{out} {}", text(&r.stderr));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("hello"));
    assert_eq!(lines.next(), Some("/tmp"));
    assert_eq!(lines.next(), Some("1002"));
    for ns in ["net", "mnt", "pid"] {
        let want = std::fs::read_link(proc_path(pid, &format!("ns/{ns}"))).expect("container ns");
        assert_eq!(
            lines.next().map(str::to_owned),
            Some(want.display().to_string()),
            "{ns} namespace"
        );
    }
    let mut want_cg: Vec<String> = std::fs::read_to_string(proc_path(pid, "cgroup"))
        .expect("container cgroup")
        .lines()
        .map(str::to_owned)
        .collect();
    want_cg.sort();
    let status = std::fs::read_to_string(proc_path(pid, "status")).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_owned()
    };
    let rest: Vec<&str> = lines.collect();
    let (cg, sec) = rest.split_at(rest.len() - 2);
    assert_eq!(cg, want_cg.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(sec, [field("CapEff:").as_str(), field("Seccomp:").as_str()]);
    assert!(
        sec[1].ends_with('2'),
        "seccomp filter applies to exec: {sec:?}"
    );

    // The timeout kills the command and the call says so.
    let t0 = std::time::Instant::now();
    let err = exec(&mut env, &id, &["sleep", "60"], 1).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(err.message().contains("timed out"), "{err:?}");
    assert!(t0.elapsed().as_secs() < 10, "took {:?}", t0.elapsed());

    // Output beyond what fits one 16 MiB response (kubelet's gRPC limit;
    // the CRI caps each stream at 16 MiB) is dropped, without an error.
    let r = exec(
        &mut env,
        &id,
        &["sh", "-c", "head -c 20000000 /dev/zero; echo done >&2"],
        30,
    )
    .await
    .expect("ExecSync with large output");
    assert!(
        r.stdout.len() >= 16 * 1024 * 1024 - 64 * 1024 - 5 && r.stdout.len() < 16 * 1024 * 1024,
        "{}",
        r.stdout.len()
    );
    assert!(r.stdout.iter().all(|b| *b == 0));
    assert_eq!(text(&r.stderr), "done\n");
    assert_eq!(r.exit_code, 0);

    // A program that does not exist is a clear error.
    let err = exec(&mut env, &id, &["/no/such/program"], 5)
        .await
        .unwrap_err();
    assert!(err.message().contains("/no/such/program"), "{err:?}");
    // Bad requests.
    let err = exec(&mut env, &id, &[], 5).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = exec(&mut env, "0123456789abcdef", &["true"], 5)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    // With no_new_privs the filter is loaded the same way.
    let mut c = ctr("nnp", &bb, &["sleep", "300"]);
    security(&mut c).no_new_privs = true;
    security(&mut c).seccomp = Some(SecurityProfile {
        profile_type: security_profile::ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    });
    let nnp = env.run(&pod, &pcfg, c).await;
    let r = exec(
        &mut env,
        &nnp,
        &[
            "grep",
            "-E",
            "^(CapEff|NoNewPrivs|Seccomp):",
            "/proc/self/status",
        ],
        10,
    )
    .await
    .expect("ExecSync");
    assert_eq!(
        text(&r.stdout),
        "CapEff:\t00000000a80425fb\nNoNewPrivs:\t1\nSeccomp:\t2\n"
    );

    // A stopped container cannot be exec'd into.
    env.stop(&id, 0).await.unwrap();
    let err = exec(&mut env, &id, &["true"], 5).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    // No exec leftovers in the bundle.
    let dir = env
        .daemon
        .run_dir()
        .join("containers")
        .join(&id)
        .join("exec");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", dir.display());
}

#[tokio::test]
async fn exec_sync_with_the_runc_handler() {
    let mut env = Env::for_handler("runc").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod_on("runcexec", "runc").await;
    let id = env
        .run(&pod, &pcfg, ctr("target", &bb, &["sleep", "300"]))
        .await;
    let r = exec(&mut env, &id, &["sh", "-c", "echo via runc; exit 3"], 10)
        .await
        .expect("ExecSync");
    assert_eq!((text(&r.stdout), r.exit_code), ("via runc\n".into(), 3));
    let err = exec(&mut env, &id, &["sleep", "60"], 1).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    let err = exec(&mut env, &id, &["/no/such/program"], 5)
        .await
        .unwrap_err();
    assert!(err.message().contains("/no/such/program"), "{err:?}");
}

#[tokio::test]
async fn exec_sync_output_cap_is_configurable() {
    let mut env = Env::new("[runtime]\nexec_output_max_bytes = 4096\n").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("cap").await;
    let id = env
        .run(&pod, &pcfg, ctr("target", &bb, &["sleep", "300"]))
        .await;
    let r = exec(
        &mut env,
        &id,
        &[
            "sh",
            "-c",
            "head -c 10000 /dev/zero; head -c 5000 /dev/zero >&2; exit 4",
        ],
        10,
    )
    .await
    .expect("ExecSync");
    assert_eq!(
        (r.stdout.len(), r.stderr.len(), r.exit_code),
        (4096, 4096, 4)
    );
}
