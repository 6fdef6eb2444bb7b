//! CDI devices through the real daemon: spec files written by the test in
//! two `runtime.cdi_spec_dirs` (JSON and YAML), a device node (the host's
//! `/dev/null` under another name), env vars, a bind mount, an additional
//! gid and a hook, all seen from inside a running busybox container; the
//! legacy `cdi.k8s.io/` annotation (built-in executor and runc); an unknown device refused naming it; a
//! malformed spec file reported in the log without breaking the others; a
//! later dir overriding an earlier one.

mod common;

use std::path::Path;

use common::containers::*;
use k8s_cri::v1::*;
use tonic::Code;

/// The spec dirs and a host dir to mount, under one temp dir.
struct Specs {
    dir: tempfile::TempDir,
}

impl Specs {
    fn new() -> Specs {
        let s = Specs {
            dir: tempfile::Builder::new()
                .prefix("crius-cdi-")
                .tempdir()
                .expect("temp dir"),
        };
        for d in ["etc-cdi", "run-cdi", "data"] {
            std::fs::create_dir(s.dir.path().join(d)).unwrap();
        }
        std::fs::write(s.path("data/hello"), "hello from the host\n").unwrap();
        s
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }

    fn toml(&self) -> String {
        format!(
            "[runtime]\ncdi_spec_dirs = [{:?}, {:?}]\n",
            self.path("etc-cdi").display().to_string(),
            self.path("run-cdi").display().to_string()
        )
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path(rel), text).unwrap();
    }
}

fn vendor_json(data: &Path, hook_out: &Path) -> String {
    serde_json::json!({
        "cdiVersion": "0.6.0",
        "kind": "crius.test/dev",
        "containerEdits": {
            "env": ["CDI_SPEC=spec-level"],
            "additionalGids": [4242]
        },
        "devices": [
            {
                "name": "null",
                "containerEdits": {
                    "deviceNodes": [
                        {"path": "/dev/cdi-null", "hostPath": "/dev/null"},
                        // Not in the default device cgroup allow list:
                        // readable only through the CDI rule ("r").
                        {"path": "/dev/cdi-lc", "hostPath": "/dev/loop-control", "permissions": "r"}
                    ],
                    "env": ["CDI_DEV=null"],
                    "mounts": [{
                        "hostPath": data.display().to_string(),
                        "containerPath": "/cdi-data",
                        "options": ["ro", "nosuid", "nodev", "bind"]
                    }],
                    "hooks": [{
                        "hookName": "createRuntime",
                        "path": "/bin/sh",
                        // Does not read the OCI state on its stdin: the
                        // monitor writing it must get EPIPE, not be killed
                        // by SIGPIPE (libcontainer runs createRuntime hooks
                        // in the monitor).
                        "args": ["sh", "-c", format!("echo hook-ran > {}", hook_out.display())]
                    }]
                }
            },
            {
                "name": "overridden",
                "containerEdits": {"env": ["CDI_OVERRIDE=etc"]}
            }
        ]
    })
    .to_string()
}

const RUN_YAML: &str = "\
cdiVersion: 0.5.0
kind: crius.test/dev
devices:
  - name: overridden
    containerEdits:
      env:
        - CDI_OVERRIDE=run
";

const OTHER_YAML: &str = "\
cdiVersion: 0.5.0
kind: crius.test/other
devices:
  - name: one
    containerEdits:
      env: [\"CDI_OTHER=yaml\"]
";

fn cdi(names: &[&str]) -> Vec<CdiDevice> {
    names
        .iter()
        .map(|n| CdiDevice {
            name: n.to_string(),
        })
        .collect()
}

#[tokio::test]
async fn cdi_device_node_env_mount_gid_and_hook_reach_the_container() {
    cdi_edits_reach_the_container("").await;
}

#[tokio::test]
async fn cdi_device_node_env_mount_gid_and_hook_reach_the_container_runc() {
    cdi_edits_reach_the_container("runc").await;
}

async fn cdi_edits_reach_the_container(handler: &str) {
    assert!(
        Path::new("/dev/loop-control").exists(),
        "/dev/loop-control missing: load the loop module (`modprobe loop`, Debian's kmod)"
    );
    let specs = Specs::new();
    let hook_out = specs.path("hook-ran");
    specs.write(
        "etc-cdi/vendor.json",
        &vendor_json(&specs.path("data"), &hook_out),
    );
    // Later dir: overrides crius.test/dev=overridden; another kind in YAML.
    specs.write("run-cdi/override.yaml", RUN_YAML);
    specs.write("run-cdi/other.yml", OTHER_YAML);
    // Malformed files: reported, the rest still resolve.
    specs.write(
        "etc-cdi/broken.json",
        "{\"cdiVersion\": \"0.6.0\", \"kind\": ",
    );
    specs.write(
        "run-cdi/bad-kind.yaml",
        "cdiVersion: 0.6.0\nkind: nokind\ndevices: [{name: x}]\n",
    );
    let mut toml = specs.toml();
    if handler == "runc" {
        assert!(
            Path::new(RUNC).exists(),
            "{RUNC} missing: install Debian's runc package (hack/install-deps.sh)"
        );
        toml.push_str(&format!(
            "\n[runtime.handlers.runc]\nruntime_path = {RUNC:?}\n"
        ));
    }
    let mut env = Env::new(&toml).await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod_on("cdi", handler).await;
    let mut c = sh(
        "cdi",
        &bb,
        "stat -c '%F %t:%T' /dev/cdi-null; \
         echo data > /dev/cdi-null && echo null-writable; \
         (: < /dev/cdi-lc) && echo lc-readable; \
         (: > /dev/cdi-lc) 2>&1 || echo lc-write-denied; \
         cat /cdi-data/hello; touch /cdi-data/x 2>&1; \
         echo \"dev=$CDI_DEV spec=$CDI_SPEC override=$CDI_OVERRIDE other=$CDI_OTHER\"; \
         grep Groups /proc/self/status; grep SigIgn /proc/self/status",
    );
    c.cdi_devices = cdi(&["crius.test/dev=null", "crius.test/dev=overridden"]);
    // The legacy annotation form (device plugins before CDI_devices).
    c.annotations.insert(
        "cdi.k8s.io/test-plugin".into(),
        "crius.test/other=one".into(),
    );
    let (_, out) = env.run_to_exit(&pod, &pcfg, c).await;
    assert!(
        out.contains("character special file 1:3"),
        "the CDI device node is not /dev/null's: {out}"
    );
    assert!(out.contains("null-writable"), "{out}");
    // The container's programs start with SIGPIPE at its default (bit 13 of
    // SigIgn clear), though the monitor ignores it for itself.
    let ignored = out
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no SigIgn line: {out}"));
    assert_eq!(
        ignored & (1 << 12),
        0,
        "SIGPIPE is ignored in the container: {out}"
    );
    assert!(
        out.contains("lc-readable") && out.contains("lc-write-denied"),
        "the CDI device cgroup rule (r only) is not applied: {out}"
    );
    assert!(out.contains("hello from the host"), "CDI mount: {out}");
    assert!(
        out.contains("/cdi-data/x: Read-only file system"),
        "CDI mount options: {out}"
    );
    assert!(!specs.path("data/x").exists());
    assert!(
        out.contains("dev=null spec=spec-level override=run other=yaml"),
        "CDI env (later dir overrides, YAML specs, annotation device): {out}"
    );
    let groups = out
        .lines()
        .find(|l| l.starts_with("Groups:"))
        .unwrap_or_else(|| panic!("no Groups line: {out}"));
    assert!(
        groups.split_whitespace().any(|g| g == "4242"),
        "additionalGids: {groups}"
    );
    assert_eq!(
        std::fs::read_to_string(&hook_out).unwrap_or_default(),
        "hook-ran\n",
        "the createRuntime hook did not run"
    );
    let log = env.daemon.log();
    for bad in ["broken.json", "bad-kind.yaml"] {
        assert!(
            log.lines()
                .any(|l| l.contains("CDI spec file refused") && l.contains(bad)),
            "{bad} not reported in the daemon log"
        );
    }
}

#[tokio::test]
async fn unknown_or_malformed_cdi_devices_are_refused_naming_them() {
    let specs = Specs::new();
    specs.write("run-cdi/other.yaml", OTHER_YAML);
    let mut env = Env::new(&specs.toml()).await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("cdi-bad").await;

    let mut c = sh("unknown", &bb, "true");
    c.cdi_devices = cdi(&["crius.test/other=one", "crius.test/other=two"]);
    let err = env.create(&pod, &pcfg, c).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("crius.test/other=two"),
        "the error does not name the device: {}",
        err.message()
    );
    // The same through the annotation.
    let mut c = sh("unknown-annotation", &bb, "true");
    c.annotations
        .insert("cdi.k8s.io/p".into(), "vendor.example/gpu=0".into());
    let err = env.create(&pod, &pcfg, c).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("vendor.example/gpu=0"), "{err:?}");
    // Not a qualified name at all.
    let mut c = sh("unqualified", &bb, "true");
    c.cdi_devices = cdi(&["gpu0"]);
    let err = env.create(&pod, &pcfg, c).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("CDI_devices[0]"), "{err:?}");
    // A failed create leaves no name reserved: the valid device works.
    let mut c = sh("unknown", &bb, "echo other=$CDI_OTHER");
    c.cdi_devices = cdi(&["crius.test/other=one"]);
    let (_, out) = env.run_to_exit(&pod, &pcfg, c).await;
    assert!(out.contains("other=yaml"), "{out}");
}
