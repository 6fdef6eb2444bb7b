//! The Helm chart (charts/crius) and the systemd unit (hack/crius.service).
//!
//! The chart is rendered by Helm's own engine: charts/render.py calls
//! helm-python-sdk (PyPI), which embeds Helm v4's Go library — values
//! coalescing, values.schema.json validation, the template engine with
//! sprig, and lint. hack/install-deps.sh installs it into
//! /opt/crius-tools/helm-venv (override with CRIUS_HELM_PYTHON). Not covered
//! here: applying the manifests to a cluster (no API server on these
//! machines) and the installer's systemctl calls (no systemd as PID 1).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

const CRIUS: &str = env!("CARGO_BIN_EXE_crius");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn helm_python() -> PathBuf {
    let p = std::env::var_os("CRIUS_HELM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/crius-tools/helm-venv/bin/python"));
    assert!(
        p.exists(),
        "{} is missing: run `bash hack/install-deps.sh` as root (Debian package python3-venv, \
         then PyPI helm-python-sdk and PyYAML in that venv), or set CRIUS_HELM_PYTHON",
        p.display()
    );
    p
}

fn run_render(values: &Value) -> Output {
    Command::new(helm_python())
        .arg(repo().join("charts/render.py"))
        .arg(repo().join("charts/crius"))
        .arg(values.to_string())
        .output()
        .expect("running charts/render.py")
}

/// The chart rendered with `values`: every manifest, parsed.
#[derive(Debug)]
struct Rendered {
    docs: Vec<Value>,
    notes: String,
}

impl Rendered {
    fn of(values: Value) -> Self {
        let out = run_render(&values);
        assert!(
            out.status.success(),
            "rendering the chart with {values} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("render.py prints JSON");
        assert_eq!(
            v["lint"],
            json!([]),
            "helm lint --strict reports problems with {values}"
        );
        let docs = v["manifests"]
            .as_object()
            .expect("manifests")
            .values()
            .flat_map(|d| d.as_array().expect("documents").clone())
            .collect();
        Self {
            docs,
            notes: v["notes"].as_str().unwrap_or_default().to_owned(),
        }
    }

    fn find(&self, kind: &str, name: &str) -> &Value {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} among {:#?}", self.kinds()))
    }

    fn kinds(&self) -> Vec<String> {
        self.docs
            .iter()
            .map(|d| format!("{} {}", d["kind"], d["metadata"]["name"]))
            .collect()
    }

    fn config_toml(&self) -> String {
        self.find("ConfigMap", "crius-config")["data"]["config.toml"]
            .as_str()
            .expect("config.toml in the ConfigMap")
            .to_owned()
    }

    fn pod_spec(&self) -> &Value {
        &self.find("DaemonSet", "crius")["spec"]["template"]["spec"]
    }
}

/// `crius config check` on `text`: Ok(the effective config) or Err(stderr).
fn config_check(text: &str) -> Result<toml::Table, String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).expect("writing config.toml");
    let out = Command::new(CRIUS)
        .args(["config", "check", "--config"])
        .arg(&path)
        .output()
        .expect("running crius config check");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(toml::from_str(&String::from_utf8_lossy(&out.stdout)).expect("config check prints TOML"))
}

fn checked(text: &str) -> toml::Table {
    config_check(text).unwrap_or_else(|e| panic!("crius rejects the rendered config: {e}\n{text}"))
}

fn host_paths(spec: &Value) -> Vec<String> {
    spec["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn chart_renders_with_default_values() {
    let r = Rendered::of(json!({}));
    let spec = r.pod_spec();
    assert_eq!(spec["hostPID"], true, "nsenter -t 1 needs the host's PIDs");
    let paths = host_paths(spec);
    for p in [
        "/var/lib/crius",
        "/run/crius",
        "/var/log/pods",
        "/etc/cni/net.d",
        "/opt/cni/bin",
        "/etc/crius",
        "/usr/local/bin",
        "/etc/systemd/system",
    ] {
        assert!(paths.iter().any(|h| h == p), "no hostPath {p} in {paths:?}");
    }
    let init = &spec["initContainers"][0];
    assert_eq!(init["name"], "install");
    assert_eq!(init["securityContext"]["privileged"], true);
    assert_eq!(init["command"], json!(["/bin/sh", "/scripts/install.sh"]));
    assert_eq!(
        init["image"],
        format!("crius:{}", env!("CARGO_PKG_VERSION")),
        "the tag defaults to Chart.yaml's appVersion, which must follow Cargo.toml's version"
    );
    assert_eq!(init["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        spec["containers"][0]["readinessProbe"]["exec"]["command"],
        json!(["/bin/test", "-S", "/run/crius/crius.sock"])
    );
    assert_eq!(spec["tolerations"], json!([{"operator": "Exists"}]));
    assert_eq!(spec["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
    assert!(
        r.notes
            .contains("--container-runtime-endpoint=unix:///run/crius/crius.sock")
    );

    // The default values render crius's own defaults.
    let text = r.config_toml();
    let cfg = checked(&text);
    let defaults = checked(&String::from_utf8_lossy(
        &Command::new(CRIUS)
            .args(["config", "default"])
            .output()
            .expect("crius config default")
            .stdout,
    ));
    assert_eq!(cfg, defaults, "values.yaml drifted from crius's defaults");
    assert!(!text.contains("[metrics]"), "metrics render only when set");
}

#[test]
fn chart_renders_with_non_default_values() {
    let r = Rendered::of(json!({
        "image": {"repository": "registry.example.com:5000/ops/crius", "tag": "v9", "pullPolicy": "Always"},
        "installer": {"cniDefault": true, "startTimeoutSecs": 5},
        "config": {
            "shutdownGraceSecs": 3,
            "log": {"level": "crius=debug,info", "format": "json"},
            "tracing": {"otlpEndpoint": "http://otel.monitoring:4317", "samplingRatio": 0.25},
            "image": {
                "defaultRegistry": "registry.example.com:5000",
                "insecureRegistries": ["10.0.0.5:5000", "registry.local"],
                "mirrors": {"docker.io": ["https://mirror.example.com", "http://10.0.0.6:5001"]},
                "maxConcurrentDownloads": 8,
                "requestTimeoutSecs": 90
            },
            "cni": {"confDir": "/etc/cni/crius.d", "binDirs": ["/usr/libexec/cni"]},
            "pod": {"shmSizeBytes": 134217728},
            "runtime": {"maxLogLineBytes": 4096, "handlers": {
                "runc": {"runtimePath": "/usr/bin/runc"},
                "crun-1.2": {"runtimePath": "/opt/crun"}
            }},
            "streaming": {"address": "0.0.0.0", "port": 10010}
        },
        "nodeSelector": {"crius.io/runtime": "yes"},
        "tolerations": [],
        "resources": {"requests": {"cpu": "50m"}}
    }));
    let spec = r.pod_spec();
    let init = &spec["initContainers"][0];
    assert_eq!(init["image"], "registry.example.com:5000/ops/crius:v9");
    assert_eq!(init["imagePullPolicy"], "Always");
    let env = init["env"].as_array().expect("env");
    assert!(env.contains(&json!({"name": "CRIUS_CNI_DEFAULT", "value": "true"})));
    assert!(env.contains(&json!({"name": "CRIUS_START_TIMEOUT", "value": "5"})));
    // Helm merges maps (a key is removed by setting it to null) and
    // replaces lists.
    assert_eq!(
        spec["nodeSelector"],
        json!({"crius.io/runtime": "yes", "kubernetes.io/os": "linux"})
    );
    assert!(spec.get("tolerations").is_none_or(Value::is_null));
    assert!(host_paths(spec).contains(&"/etc/cni/crius.d".to_owned()));
    assert_eq!(
        spec["containers"][0]["resources"],
        json!({"requests": {"cpu": "50m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}})
    );

    let cfg = checked(&r.config_toml());
    let get = |path: &str| -> toml::Value {
        let mut v = toml::Value::Table(cfg.clone());
        for k in path.split('/') {
            v = v.get(k).unwrap_or_else(|| panic!("{path} missing")).clone();
        }
        v
    };
    assert_eq!(get("shutdown_grace_secs").as_integer(), Some(3));
    assert_eq!(get("log/level").as_str(), Some("crius=debug,info"));
    assert_eq!(get("log/format").as_str(), Some("json"));
    assert_eq!(
        get("tracing/otlp_endpoint").as_str(),
        Some("http://otel.monitoring:4317")
    );
    assert_eq!(get("tracing/sampling_ratio").as_float(), Some(0.25));
    assert_eq!(
        get("image/default_registry").as_str(),
        Some("registry.example.com:5000")
    );
    assert_eq!(
        get("image/insecure_registries"),
        toml::Value::Array(vec!["10.0.0.5:5000".into(), "registry.local".into()])
    );
    assert_eq!(
        get("image/mirrors/docker.io"),
        toml::Value::Array(vec![
            "https://mirror.example.com".into(),
            "http://10.0.0.6:5001".into()
        ])
    );
    assert_eq!(get("image/max_concurrent_downloads").as_integer(), Some(8));
    assert_eq!(get("image/request_timeout_secs").as_integer(), Some(90));
    assert_eq!(get("cni/conf_dir").as_str(), Some("/etc/cni/crius.d"));
    assert_eq!(
        get("cni/bin_dirs"),
        toml::Value::Array(vec!["/usr/libexec/cni".into()])
    );
    assert_eq!(get("pod/shm_size_bytes").as_integer(), Some(134217728));
    assert_eq!(get("runtime/max_log_line_bytes").as_integer(), Some(4096));
    assert_eq!(
        get("runtime/handlers/runc/runtime_path").as_str(),
        Some("/usr/bin/runc")
    );
    assert_eq!(
        get("runtime/handlers/crun-1.2/runtime_path").as_str(),
        Some("/opt/crun")
    );
    assert_eq!(get("streaming/address").as_str(), Some("0.0.0.0"));
    assert_eq!(get("streaming/port").as_integer(), Some(10010));
}

/// Keys added to crius after the chart (`[metrics]`, `image.hosts_dir`,
/// `image.credentials_file`) render only when their value is a string (null,
/// the default, leaves crius's own default). crius must accept each, or — a
/// binary from before the key existed — reject it naming the key.
#[test]
fn optional_keys_render_only_when_set() {
    let off = Rendered::of(json!({"config": {"metrics": {"address": ""}}})).config_toml();
    assert!(off.contains("[metrics]\naddress = \"\""), "{off}");
    assert!(!off.contains("hosts_dir"), "{off}");
    let r = Rendered::of(json!({"config": {
        "image": {"hostsDir": "/etc/crius/certs.d", "credentialsFile": "/etc/crius/auth.json"},
        "metrics": {"address": "127.0.0.1:9898"},
        "extraToml": "# appended\n"
    }}));
    let text = r.config_toml();
    assert!(
        text.contains("hosts_dir = \"/etc/crius/certs.d\""),
        "{text}"
    );
    assert!(
        text.contains("credentials_file = \"/etc/crius/auth.json\""),
        "{text}"
    );
    assert!(
        text.contains("[metrics]\naddress = \"127.0.0.1:9898\""),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# appended"), "{text}");
    for (key, line) in [
        ("hosts_dir", "[image]\nhosts_dir = \"/etc/crius/certs.d\"\n"),
        (
            "credentials_file",
            "[image]\ncredentials_file = \"/etc/crius/auth.json\"\n",
        ),
        ("metrics", "[metrics]\naddress = \"127.0.0.1:9898\"\n"),
    ] {
        match config_check(line) {
            Ok(_) => println!("crius accepts `{key}`"),
            Err(e) => assert!(
                e.contains(key),
                "crius rejects `{key}` for another reason: {e}"
            ),
        }
    }
}

#[test]
fn uninstall_mode_turns_the_daemonset_into_an_uninstaller() {
    let r = Rendered::of(json!({"mode": "uninstall"}));
    let spec = r.pod_spec();
    let init = &spec["initContainers"][0];
    assert_eq!(init["name"], "uninstall");
    assert_eq!(init["command"], json!(["/bin/sh", "/scripts/uninstall.sh"]));
    assert!(spec["containers"][0].get("readinessProbe").is_none());
    let paths = host_paths(spec);
    assert!(
        !paths
            .iter()
            .any(|p| p == "/var/lib/crius" || p == "/run/crius"),
        "the uninstaller must not re-create crius's state dirs: {paths:?}"
    );
    assert!(r.notes.contains("helm uninstall"), "{}", r.notes);
    let ds = r.find("DaemonSet", "crius");
    assert_eq!(
        ds["spec"]["template"]["metadata"]["annotations"]["crius.io/mode"], "uninstall",
        "switching the mode must roll the pods"
    );
}

#[test]
fn schema_rejects_bad_values() {
    for (values, expect) in [
        (json!({"mode": "remove"}), "/mode"),
        (
            json!({"image": {"pullPolicy": "Sometimes"}}),
            "/image/pullPolicy",
        ),
        (
            json!({"config": {"log": {"format": "xml"}}}),
            "/config/log/format",
        ),
        (json!({"config": {"logLevel": "debug"}}), "logLevel"),
        (
            json!({"config": {"image": {"mirrors": {"docker.io": ["ftp://m"]}}}}),
            "/config/image/mirrors/docker.io/0",
        ),
        (
            json!({"config": {"cni": {"confDir": "relative/dir"}}}),
            "/config/cni/confDir",
        ),
        (
            json!({"config": {"tracing": {"samplingRatio": 2}}}),
            "/config/tracing/samplingRatio",
        ),
        (
            json!({"config": {"streaming": {"port": 70000}}}),
            "/config/streaming/port",
        ),
        (
            json!({"config": {"metrics": {"address": "9898"}}}),
            "/config/metrics/address",
        ),
    ] {
        let out = run_render(&values);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{values} should be rejected by values.schema.json; stderr: {err}"
        );
        assert!(
            err.contains("schema") && err.contains(expect),
            "rejection of {values} does not name {expect}: {err}"
        );
    }
}

#[test]
fn installer_scripts_pass_shellcheck() {
    let r = Rendered::of(json!({}));
    let cm = r.find("ConfigMap", "crius-scripts");
    let dir = tempfile::tempdir().expect("temp dir");
    for name in ["install.sh", "uninstall.sh"] {
        let text = cm["data"][name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} missing from the scripts ConfigMap"));
        assert!(text.starts_with("#!/bin/sh\n"), "{name}: {text}");
        assert!(
            text.contains("nsenter -t 1 -m -u -i -n -p --"),
            "{name} must act through the host's PID 1"
        );
        std::fs::write(dir.path().join(name), text).expect("write script");
    }
    let out = Command::new("shellcheck")
        .args(["--shell=sh", "--severity=style"])
        .arg(dir.path().join("install.sh"))
        .arg(dir.path().join("uninstall.sh"))
        .output()
        .unwrap_or_else(|e| panic!("shellcheck: {e}: install the Debian package shellcheck"));
    assert!(
        out.status.success(),
        "shellcheck: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `systemd-analyze verify` on a copy of `unit` whose ExecStart names the
/// built binary (verify insists the ExecStart binary exists). It exits 0 even
/// for unknown keys and unparsable values, so anything on stderr fails too.
fn verify_unit(unit: &str) -> Result<(), String> {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    assert!(
        analyze.exists(),
        "/usr/bin/systemd-analyze is missing: install the Debian package systemd"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("crius.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/crius", CRIUS)).expect("write unit");
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .expect("running systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() && stderr.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {stderr}", out.status))
    }
}

#[test]
fn unit_file_passes_systemd_analyze_verify() {
    let unit =
        std::fs::read_to_string(repo().join("hack/crius.service")).expect("hack/crius.service");
    verify_unit(&unit).unwrap_or_else(|e| panic!("systemd-analyze verify hack/crius.service: {e}"));
    for line in [
        "ExecStart=/usr/local/bin/crius serve",
        "Delegate=yes",
        "KillMode=process",
        "Restart=always",
        "OOMScoreAdjust=-999",
        "After=network-online.target",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "no {line}");
    }
    assert!(unit.lines().any(|l| l.starts_with("LimitNOFILE=")));
    // The check can fail: a misspelt key and a bad value are both caught.
    let bad = unit.replace("KillMode=process", "KilMode=process");
    assert!(verify_unit(&bad).is_err(), "a misspelt key passed verify");
    let bad = unit.replace("KillMode=process", "KillMode=procs");
    assert!(verify_unit(&bad).is_err(), "a bad KillMode passed verify");
}
