//! Containers through the real daemon: a registry holding the test images,
//! a CNI test network, a daemon, a pod; short forms of the container calls
//! and readers for CRI log files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::*;
use tonic::Status;
use tonic::transport::Channel;

use super::cri::pull_ok;
use super::daemon::{Daemon, insecure_registries};
use super::fixtures::busybox_image;
use super::image::Image;
use super::net::TestNet;
use super::pods::{RuntimeClient, pod_config, run_pod_ok};
use super::push::push;
use super::registry::Registry;

/// Everything a container test needs, torn down on drop (daemon last).
pub struct Env {
    pub rt: RuntimeClient,
    pub img: ImageServiceClient<Channel>,
    /// `127.0.0.1:<port>/busybox:latest`, pulled.
    pub busybox: String,
    pub daemon: Daemon,
    pub registry: Registry,
    pub net: TestNet,
    pub logs: tempfile::TempDir,
}

impl Env {
    /// Registry with busybox pushed and pulled, test network, daemon with
    /// `extra_toml` added to its config.
    pub async fn new(extra_toml: &str) -> Env {
        let registry = Registry::start();
        push(&registry, "busybox", "latest", &busybox_image()).await;
        let net = TestNet::new();
        let daemon = Daemon::start(&format!(
            "{}\n{}\n{extra_toml}",
            net.toml(),
            insecure_registries(&[registry.addr()])
        ));
        let rt = daemon.runtime_client().await;
        let mut img = daemon.image_client().await;
        let busybox = format!("{}/busybox:latest", registry.addr());
        pull_ok(&mut img, &busybox).await;
        Env {
            rt,
            img,
            busybox,
            daemon,
            registry,
            net,
            logs: tempfile::tempdir().expect("log tempdir"),
        }
    }

    /// Pushes `image` as `<registry>/<repo>:latest` and pulls it.
    pub async fn add_image(&mut self, repo: &str, image: &Image) -> String {
        push(&self.registry, repo, "latest", image).await;
        let name = format!("{}/{repo}:latest", self.registry.addr());
        pull_ok(&mut self.img, &name).await;
        name
    }

    /// A pod config whose logs go to this env's temp dir.
    pub fn pod_config(&self, name: &str) -> PodSandboxConfig {
        let mut p = pod_config(name);
        p.log_directory = self.logs.path().join(name).display().to_string();
        p
    }

    /// Runs a pod with [`Env::pod_config`]; returns (id, config).
    pub async fn pod(&mut self, name: &str) -> (String, PodSandboxConfig) {
        let cfg = self.pod_config(name);
        let id = run_pod_ok(&mut self.rt, cfg.clone()).await;
        (id, cfg)
    }

    pub async fn create(
        &mut self,
        pod: &str,
        pod_cfg: &PodSandboxConfig,
        cfg: ContainerConfig,
    ) -> Result<String, Status> {
        self.rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.into(),
                config: Some(cfg),
                sandbox_config: Some(pod_cfg.clone()),
            })
            .await
            .map(|r| r.into_inner().container_id)
    }

    pub async fn create_ok(
        &mut self,
        pod: &str,
        pod_cfg: &PodSandboxConfig,
        cfg: ContainerConfig,
    ) -> String {
        self.create(pod, pod_cfg, cfg)
            .await
            .unwrap_or_else(|e| panic!("CreateContainer: {e:?}"))
    }

    pub async fn start(&mut self, id: &str) -> Result<(), Status> {
        self.rt
            .start_container(StartContainerRequest {
                container_id: id.into(),
            })
            .await
            .map(drop)
    }

    pub async fn start_ok(&mut self, id: &str) {
        self.start(id)
            .await
            .unwrap_or_else(|e| panic!("StartContainer {id}: {e:?}"));
    }

    /// Create + start; returns the id.
    pub async fn run(
        &mut self,
        pod: &str,
        pod_cfg: &PodSandboxConfig,
        cfg: ContainerConfig,
    ) -> String {
        let id = self.create_ok(pod, pod_cfg, cfg).await;
        self.start_ok(&id).await;
        id
    }

    pub async fn stop(&mut self, id: &str, timeout: i64) -> Result<(), Status> {
        self.rt
            .stop_container(StopContainerRequest {
                container_id: id.into(),
                timeout,
            })
            .await
            .map(drop)
    }

    pub async fn remove(&mut self, id: &str) -> Result<(), Status> {
        self.rt
            .remove_container(RemoveContainerRequest {
                container_id: id.into(),
            })
            .await
            .map(drop)
    }

    pub async fn status(&mut self, id: &str) -> ContainerStatus {
        self.status_full(id, false).await.0
    }

    pub async fn status_full(
        &mut self,
        id: &str,
        verbose: bool,
    ) -> (ContainerStatus, HashMap<String, String>) {
        let r = self
            .rt
            .container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose,
            })
            .await
            .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e:?}"))
            .into_inner();
        (r.status.expect("status"), r.info)
    }

    /// Polls until the container has exited (panics after `secs`).
    pub async fn wait_exited(&mut self, id: &str, secs: u64) -> ContainerStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.status(id).await;
            if s.state == ContainerState::ContainerExited as i32 {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "container {id} still in state {} after {secs}s",
                s.state
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `cmd` in a fresh container of `pod` to its exit; returns the
    /// status and the log's stdout+stderr contents (lines joined).
    pub async fn run_to_exit(
        &mut self,
        pod: &str,
        pod_cfg: &PodSandboxConfig,
        cfg: ContainerConfig,
    ) -> (ContainerStatus, String) {
        let id = self.run(pod, pod_cfg, cfg).await;
        let s = self.wait_exited(&id, 30).await;
        let text = log_text(Path::new(&s.log_path));
        (s, text)
    }

    /// ExecSync `sh -c script` in container `id` (panics if the call fails).
    pub async fn exec_sh(&mut self, id: &str, script: &str) -> ExecSyncResponse {
        self.rt
            .exec_sync(ExecSyncRequest {
                container_id: id.into(),
                cmd: vec!["sh".into(), "-c".into(), script.into()],
                timeout: 20,
            })
            .await
            .unwrap_or_else(|e| panic!("ExecSync {script:?} in {id}: {e:?}"))
            .into_inner()
    }

    pub async fn list(&mut self, filter: Option<ContainerFilter>) -> Vec<Container> {
        self.rt
            .list_containers(ListContainersRequest { filter })
            .await
            .expect("ListContainers")
            .into_inner()
            .containers
    }
}

/// A container config for `image` running `cmd` (empty: the image's).
pub fn ctr(name: &str, image: &str, cmd: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        labels: HashMap::from([("ctr".into(), name.into())]),
        linux: Some(LinuxContainerConfig {
            resources: Some(LinuxContainerResources::default()),
            security_context: Some(LinuxContainerSecurityContext::default()),
        }),
        ..Default::default()
    }
}

/// `sh -c <script>` in busybox.
pub fn sh(name: &str, image: &str, script: &str) -> ContainerConfig {
    ctr(name, image, &["sh", "-c", script])
}

/// The security context of a config, created if missing.
pub fn security(cfg: &mut ContainerConfig) -> &mut LinuxContainerSecurityContext {
    cfg.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}

/// The resources of a config, created if missing.
pub fn resources(cfg: &mut ContainerConfig) -> &mut LinuxContainerResources {
    cfg.linux
        .get_or_insert_with(Default::default)
        .resources
        .get_or_insert_with(Default::default)
}

/// One CRI log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub time: String,
    pub stream: String,
    pub tag: String,
    pub content: String,
}

/// Parses a CRI log file; panics on a malformed record.
pub fn log_records(path: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let mut it = l.splitn(4, ' ');
            let rec = Record {
                time: it.next().unwrap_or_default().into(),
                stream: it.next().unwrap_or_default().into(),
                tag: it.next().unwrap_or_default().into(),
                content: it.next().unwrap_or_default().into(),
            };
            assert!(
                matches!(rec.stream.as_str(), "stdout" | "stderr")
                    && matches!(rec.tag.as_str(), "P" | "F"),
                "malformed log record {l:?} in {}",
                path.display()
            );
            rec
        })
        .collect()
}

/// The log's contents as text: full lines joined with '\n'.
pub fn log_text(path: &Path) -> String {
    let mut out = String::new();
    for r in log_records(path) {
        out.push_str(&r.content);
        if r.tag == "F" {
            out.push('\n');
        }
    }
    out
}

/// `/proc/<pid>/...` helper for a container process.
pub fn proc_path(pid: u32, rest: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{rest}"))
}

/// Debian's runc, the external handler the tests use.
pub const RUNC: &str = "/usr/bin/runc";

impl Env {
    /// An env whose daemon knows `handler` ("" the built-in executor, or
    /// "runc", configured as an external handler).
    pub async fn for_handler(handler: &str) -> Env {
        if handler.is_empty() {
            return Env::new("").await;
        }
        assert_eq!(handler, "runc");
        assert!(
            Path::new(RUNC).exists(),
            "{RUNC} missing: install Debian's runc package (hack/install-deps.sh)"
        );
        Env::new(&format!(
            "[runtime.handlers.runc]\nruntime_path = {RUNC:?}\n"
        ))
        .await
    }

    /// A pod named `name` on runtime `handler`.
    pub async fn pod_on(&mut self, name: &str, handler: &str) -> (String, PodSandboxConfig) {
        let cfg = self.pod_config(name);
        let id = self
            .rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(cfg.clone()),
                runtime_handler: handler.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox ({handler:?}): {e:?}"))
            .into_inner()
            .pod_sandbox_id;
        (id, cfg)
    }
}
