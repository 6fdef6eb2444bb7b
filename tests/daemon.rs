//! The daemon as a process: the Version/Status/RuntimeConfig basics, RPCs not
//! built yet, the state-dir lock, stale sockets, SIGTERM, file modes and the
//! `crius config` commands. Each test owns its daemon and temp dir.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use common::*;
use k8s_cri::v1::{
    CgroupDriver, CheckpointContainerRequest, RuntimeConfigRequest, StatusRequest, VersionRequest,
};
use tonic::Code;

async fn version_works(daemon: &Daemon) {
    let v = daemon
        .runtime_client()
        .await
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("Version: {e:?}"))
        .into_inner();
    assert_eq!(v.runtime_name, "crius");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_status_and_runtime_config() {
    let daemon = Daemon::start("");
    let mut rt = daemon.runtime_client().await;

    let v = rt
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .expect("Version")
        .into_inner();
    assert_eq!(v.runtime_name, "crius");
    assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(v.runtime_api_version, "v1");
    assert!(!v.version.is_empty());

    let s = rt
        .status(StatusRequest { verbose: false })
        .await
        .expect("Status")
        .into_inner();
    let conditions = s.status.expect("status set").conditions;
    let cond = |t: &str| {
        conditions
            .iter()
            .find(|c| c.r#type == t)
            .unwrap_or_else(|| panic!("no {t} condition in {conditions:?}"))
            .clone()
    };
    assert!(cond("RuntimeReady").status, "RuntimeReady");
    let net = cond("NetworkReady");
    assert!(
        !net.status,
        "NetworkReady is false until pod networking lands"
    );
    assert!(
        !net.reason.is_empty(),
        "NetworkReady=false needs a reason: {net:?}"
    );

    let verbose = rt
        .status(StatusRequest { verbose: true })
        .await
        .expect("Status verbose")
        .into_inner();
    let state_dir = daemon.state_dir().display().to_string();
    let has_config = verbose
        .info
        .values()
        .any(|v| serde_json::from_str::<serde_json::Value>(v).is_ok() && v.contains(&state_dir));
    assert!(
        has_config,
        "verbose Status info holds the config as JSON: {:?}",
        verbose.info
    );

    let rc = rt
        .runtime_config(RuntimeConfigRequest {})
        .await
        .expect("RuntimeConfig")
        .into_inner();
    let linux = rc.linux.expect("linux runtime config");
    assert_eq!(linux.cgroup_driver, CgroupDriver::Cgroupfs as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpcs_not_built_yet_answer_unimplemented() {
    let daemon = Daemon::start("");
    let mut rt = daemon.runtime_client().await;
    let err = rt
        .checkpoint_container(CheckpointContainerRequest {
            container_id: "c".into(),
            location: "/tmp/c.tar".into(),
            timeout: 10,
        })
        .await
        .expect_err("CheckpointContainer is not built yet");
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    assert!(
        err.message().contains("CheckpointContainer"),
        "message names the RPC: {err:?}"
    );
    // Still serving.
    version_works(&daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_daemon_on_the_same_state_dir_refuses_to_start() {
    let first = Daemon::start("");

    // Same state dir, own socket and run dir.
    let mut second = Daemon::configure_sharing("", Some(first.state_dir()), None);
    let status = second.launch_expecting_exit();
    assert!(!status.success(), "second daemon exited with {status}");
    assert!(
        second.log().to_lowercase().contains("lock"),
        "the refusal should mention the lock:\n{}",
        second.log()
    );

    // Same state dir and run dir too.
    let mut third = Daemon::configure_sharing("", Some(first.state_dir()), Some(first.run_dir()));
    let status = third.launch_expecting_exit();
    assert!(!status.success(), "third daemon exited with {status}");
    assert!(
        third.log().to_lowercase().contains("lock"),
        "{}",
        third.log()
    );

    // The first is untouched and still serving.
    assert!(first.socket().exists());
    version_works(&first).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_socket_from_a_crashed_daemon_is_replaced() {
    let mut daemon = Daemon::configure("");
    // A socket file nobody listens on, as a kill -9 leaves behind.
    drop(std::os::unix::net::UnixListener::bind(daemon.socket()).unwrap());
    assert!(daemon.socket().exists());
    daemon.launch();
    version_works(&daemon).await;

    // And the same after a real crash.
    daemon.kill9();
    assert!(daemon.socket().exists(), "kill -9 leaves the socket file");
    daemon.launch();
    version_works(&daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_and_removes_the_socket() {
    let mut daemon = Daemon::start("");
    version_works(&daemon).await;
    let status = daemon.stop();
    assert!(
        status.success(),
        "exit status after SIGTERM: {status}\n{}",
        daemon.log()
    );
    assert!(!daemon.socket().exists(), "socket removed on shutdown");
    // Restart on the same dirs works.
    daemon.launch();
    version_works(&daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_is_0660_and_state_dirs_0700() {
    let daemon = Daemon::start("");
    let meta = std::fs::metadata(daemon.socket()).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660, "socket mode");
    for dir in [daemon.state_dir(), daemon.run_dir()] {
        let meta = std::fs::metadata(dir)
            .unwrap_or_else(|e| panic!("the daemon should create {}: {e}", dir.display()));
        assert!(meta.is_dir());
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o700,
            "{} mode",
            dir.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_default_is_valid_and_serves() {
    let out = run_crius(&["config", "default"]);
    assert!(out.status.success(), "crius config default: {out:?}");
    let text = String::from_utf8(out.stdout).expect("UTF-8 config");
    assert!(text.contains('#'), "the default config is commented");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("default.toml");
    std::fs::write(&file, &text).unwrap();
    let check = run_crius(&["config", "check", "--config", file.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "crius config check on the default: {check:?}"
    );

    // The same config, with its paths moved into a temp dir, runs a daemon.
    let mut daemon = Daemon::configure_raw(|paths| {
        let mut table: toml::Table = text.parse().expect("default config is TOML");
        for (key, value) in [
            ("socket", &paths.socket),
            ("state_dir", &paths.state_dir),
            ("run_dir", &paths.run_dir),
        ] {
            assert!(table.contains_key(key), "default config lists `{key}`");
            table.insert(key.into(), toml::Value::String(value.display().to_string()));
        }
        table.to_string()
    });
    daemon.launch();
    version_works(&daemon).await;
}

#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "sockett = \"/tmp/x.sock\"\n").unwrap();
    let check = run_crius(&["config", "check", "--config", file.to_str().unwrap()]);
    assert!(
        !check.status.success(),
        "config check accepts an unknown key"
    );
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(stderr.contains("sockett"), "error names the key: {stderr}");

    let mut daemon = Daemon::configure_raw(|p| {
        format!(
            "{}\n[image]\nmax_concurrent_downloads = 0\n",
            default_config_text(p, "").replace("[log]\nlevel = \"debug\"\n", "")
        )
    });
    let status = daemon.launch_expecting_exit();
    assert!(!status.success(), "serve accepts an invalid value");
    assert!(
        daemon.log().contains("image.max_concurrent_downloads"),
        "error names the key:\n{}",
        daemon.log()
    );
}
