//! The daemon's configuration: one TOML file, every key with a default.
//!
//! `deny_unknown_fields` everywhere so a typo is an error naming the key, and
//! `validate()` checks what serde cannot. Every path the daemon touches comes
//! from here, so tests run a whole daemon inside a temp dir.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where `crius serve` looks when `--config` is not given. A missing file at
/// this path means built-in defaults; a missing file given explicitly is an error.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/crius/config.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Unix socket serving CRI RuntimeService and ImageService.
    pub socket: PathBuf,
    /// Persistent state: metadata store, content blobs, unpacked layers.
    pub state_dir: PathBuf,
    /// Volatile state (cleared on reboot): lock file, pod and container runtime files.
    pub run_dir: PathBuf,
    /// Seconds to let in-flight RPCs finish after SIGTERM/SIGINT.
    pub shutdown_grace_secs: u64,
    pub log: LogConfig,
    pub tracing: TracingConfig,
    pub image: ImageConfig,
    pub cni: CniConfig,
    pub pod: PodConfig,
    pub runtime: RuntimeConfig,
    pub streaming: StreamingConfig,
    pub metrics: MetricsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/crius/crius.sock"),
            state_dir: PathBuf::from("/var/lib/crius"),
            run_dir: PathBuf::from("/run/crius"),
            shutdown_grace_secs: 10,
            log: LogConfig::default(),
            tracing: TracingConfig::default(),
            image: ImageConfig::default(),
            cni: CniConfig::default(),
            pod: PodConfig::default(),
            runtime: RuntimeConfig::default(),
            streaming: StreamingConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// trace, debug, info, warn or error (or a tracing filter directive).
    pub level: String,
    /// "text" or "json".
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// OTLP/gRPC endpoint (e.g. "http://127.0.0.1:4317"). Empty: use the
    /// standard OTEL_EXPORTER_OTLP_ENDPOINT variable; if that is unset too,
    /// tracing export is off.
    pub otlp_endpoint: String,
    /// Fraction of root traces sampled (0.0..=1.0); a sampled parent from
    /// kubelet's `traceparent` is always followed.
    pub sampling_ratio: f64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            sampling_ratio: 1.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ImageConfig {
    /// Registry that short names (`busybox`) resolve to.
    pub default_registry: String,
    /// Registries (host or host:port) spoken to over plain HTTP. `localhost`
    /// and `127.0.0.1` are always plain HTTP, as in containerd and Docker.
    pub insecure_registries: Vec<String>,
    /// Mirrors per registry host, tried in order before the registry itself.
    /// Values are endpoints such as "https://mirror.example" or "http://127.0.0.1:5001".
    /// Shorthand for `registries.<host>.mirrors` with both capabilities; they
    /// come after those, and a hosts.toml for the host replaces both.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Layers downloaded at once per pull.
    pub max_concurrent_downloads: usize,
    /// Seconds to wait for a registry to connect and answer a request (up
    /// to the response headers; bodies are governed by the progress timeout).
    pub request_timeout_secs: u64,
    /// A download that receives no bytes for this many seconds is cancelled
    /// and the pull fails naming the image and the blob.
    pub pull_progress_timeout_secs: u64,
    /// containerd-style hosts directory: `<hosts_dir>/<host[:port]>/hosts.toml`
    /// (containerd's format: `server`, `[host."<url>"]` with `capabilities`,
    /// `ca`, `client`, `skip_verify`, `override_path`), re-read when it
    /// changes. `_default/hosts.toml` applies to hosts without a directory.
    /// A hosts.toml replaces the `registries` and `mirrors` entries of its
    /// host. A missing directory is fine. Empty: not used.
    pub hosts_dir: PathBuf,
    /// Node credentials in Docker's `config.json` format (`auths` keyed by
    /// registry or mirror host, each with `auth` = base64 "user:pass" or
    /// `username`/`password`), used when kubelet sends no AuthConfig.
    /// Re-read when it changes. Should be mode 0600. Empty: none.
    pub credentials_file: PathBuf,
    /// Settings per registry host (`"host:port"`, `"docker.io"`).
    pub registries: BTreeMap<String, RegistryHostConfig>,
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self {
            default_registry: "docker.io".into(),
            insecure_registries: Vec::new(),
            mirrors: BTreeMap::new(),
            max_concurrent_downloads: 4,
            request_timeout_secs: 30,
            pull_progress_timeout_secs: 60,
            hosts_dir: PathBuf::from("/etc/crius/certs.d"),
            credentials_file: PathBuf::new(),
            registries: BTreeMap::new(),
        }
    }
}

/// One registry's settings (`[image.registries."host:port"]`). Every field
/// has a containerd hosts.toml counterpart; see docs/registries.md.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryHostConfig {
    /// URL of the registry itself (containerd's `server`), e.g.
    /// "https://registry-1.docker.io" or "http://10.0.0.5:5000". Empty:
    /// https://<host> (http:// for loopback, `insecure_registries` or `plain_http`).
    pub server: String,
    /// Reach the registry over plain HTTP (when `server` is empty).
    pub plain_http: bool,
    /// PEM CA bundles trusted for the registry, besides the system roots.
    pub ca_files: Vec<PathBuf>,
    /// PEM client certificate (chain) and key presented to the registry.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// Do not verify the registry's certificate (testing only).
    pub skip_verify: bool,
    /// Overrides `image.request_timeout_secs` for this registry and its
    /// mirrors; 0: the global value.
    pub request_timeout_secs: u64,
    /// Extra attempts per endpoint after a connection error, HTTP 429 or 5xx.
    pub retries: u32,
    /// Mirrors tried in order before the registry.
    pub mirrors: Vec<MirrorConfig>,
}

/// A mirror of a registry (`[[image.registries."host".mirrors]]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MirrorConfig {
    /// "https://mirror.example" or "http://127.0.0.1:5001" (`/v2` is added
    /// unless `override_path`).
    pub url: String,
    /// "pull" (fetch blobs and manifests by digest) and/or "resolve" (tags
    /// to digests). Empty: both.
    pub capabilities: Vec<String>,
    /// PEM CA bundles trusted for this mirror, besides the system roots.
    pub ca_files: Vec<PathBuf>,
    /// PEM client certificate and key presented to this mirror.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// Do not verify the mirror's certificate (testing only).
    pub skip_verify: bool,
    /// `url` already holds the API root (as `.../v2`): append nothing.
    pub override_path: bool,
}

impl ImageConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| Err(ConfigError::Invalid { key, message });
        if self.pull_progress_timeout_secs == 0 {
            return invalid(
                "image.pull_progress_timeout_secs".into(),
                "must be at least 1".into(),
            );
        }
        for (key, p) in [
            ("image.hosts_dir", &self.hosts_dir),
            ("image.credentials_file", &self.credentials_file),
        ] {
            if !p.as_os_str().is_empty() && !p.is_absolute() {
                return invalid(key.into(), "must be an absolute path".into());
            }
        }
        let url_ok = |u: &str| {
            let rest = u
                .strip_prefix("https://")
                .or_else(|| u.strip_prefix("http://"));
            rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
        };
        let tls_ok = |key: &str, cas: &[PathBuf], cert: &PathBuf, k: &PathBuf| {
            if cas.iter().any(|c| !c.is_absolute()) {
                return invalid(format!("{key}.ca_files"), "must be absolute paths".into());
            }
            if cert.as_os_str().is_empty() != k.as_os_str().is_empty() {
                return invalid(
                    format!("{key}.client_cert"),
                    "client_cert and client_key must be set together".into(),
                );
            }
            if [cert, k]
                .iter()
                .any(|p| !p.as_os_str().is_empty() && !p.is_absolute())
            {
                return invalid(
                    format!("{key}.client_cert"),
                    "client_cert and client_key must be absolute paths".into(),
                );
            }
            Ok(())
        };
        for (host, r) in &self.registries {
            let key = format!("image.registries.\"{host}\"");
            if host.is_empty() || host.contains('/') {
                return invalid(key, "must be a registry host such as docker.io".into());
            }
            if !r.server.is_empty() && !url_ok(&r.server) {
                return invalid(
                    format!("{key}.server"),
                    format!("{:?} must be an http:// or https:// URL", r.server),
                );
            }
            tls_ok(&key, &r.ca_files, &r.client_cert, &r.client_key)?;
            for (i, m) in r.mirrors.iter().enumerate() {
                let mkey = format!("{key}.mirrors[{i}]");
                if !url_ok(&m.url) {
                    return invalid(
                        format!("{mkey}.url"),
                        format!("{:?} must be an http:// or https:// URL", m.url),
                    );
                }
                if let Some(c) = m
                    .capabilities
                    .iter()
                    .find(|c| !matches!(c.as_str(), "pull" | "resolve"))
                {
                    return invalid(
                        format!("{mkey}.capabilities"),
                        format!("{c:?} is not \"pull\" or \"resolve\""),
                    );
                }
                tls_ok(&mkey, &m.ca_files, &m.client_cert, &m.client_key)?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CniConfig {
    /// Directory of network configs; the lexically first valid one is used.
    pub conf_dir: PathBuf,
    /// Directories searched for plugin binaries, in order.
    pub bin_dirs: Vec<PathBuf>,
}

impl Default for CniConfig {
    fn default() -> Self {
        Self {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PodConfig {
    /// Size of each pod's /dev/shm tmpfs, in bytes.
    pub shm_size_bytes: u64,
    /// Sets of network, IPC and UTS namespaces kept ready for pods that
    /// need just those (most do): RunPodSandbox then skips making them.
    /// 0 turns the pool off.
    pub namespace_pool: usize,
}

impl Default for PodConfig {
    fn default() -> Self {
        Self {
            shm_size_bytes: 64 << 20,
            namespace_pool: 2,
        }
    }
}

/// The streaming server for Exec, Attach and PortForward.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StreamingConfig {
    /// Address the server binds (kubelet dials the returned URL).
    pub address: String,
    /// TCP port; 0 picks a free one at start.
    pub port: u16,
    /// How long a URL returned by Exec/Attach/PortForward stays valid.
    pub token_ttl_secs: u64,
    /// How long the client has to open the session's streams.
    pub stream_creation_timeout_secs: u64,
    /// A session with no traffic either way for this long is closed.
    pub idle_timeout_secs: u64,
    /// PEM certificate chain and key: with both set the server speaks
    /// HTTPS and returns https:// URLs; empty: plain HTTP.
    pub tls_cert_file: PathBuf,
    pub tls_key_file: PathBuf,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        Self {
            address: "127.0.0.1".into(),
            port: 0,
            token_ttl_secs: 60,
            stream_creation_timeout_secs: 30,
            idle_timeout_secs: 4 * 3600,
            tls_cert_file: PathBuf::new(),
            tls_key_file: PathBuf::new(),
        }
    }
}

/// The Prometheus `/metrics` endpoint (plain HTTP).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `ip:port` the endpoint listens on; empty: no endpoint. The default,
    /// 127.0.0.1:9898, is loopback only and clear of kubelet (10248,
    /// 10250), containerd (1338) and CRI-O (9090, 9537).
    pub address: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:9898".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Longest CRI log record; longer lines are split into partial records.
    pub max_log_line_bytes: usize,
    /// ExecSync keeps at most this much of each of stdout and stderr (at
    /// most 16 MiB: kubelet's gRPC message limit).
    pub exec_output_max_bytes: usize,
    /// GetContainerEvents: events a subscriber may fall behind by before
    /// its stream is ended with RESOURCE_EXHAUSTED.
    pub event_buffer: usize,
    /// At start, remount the host's cgroup2 mount with the kernel's
    /// `favordynmods` option (Linux >= 6.0): moving a container's first
    /// process into its cgroup then no longer waits for an RCU grace period
    /// (5-30 ms on some kernels), at the cost of slightly slower forks and
    /// exits host-wide. Every other mount option is kept; a failure is only
    /// logged. false: leave the host's cgroup mounts alone.
    pub cgroup_favor_dynmods: bool,
    /// Directories of CDI spec files (`*.json`, `*.yaml`, `*.yml`) that
    /// CreateContainer's `CDI_devices` resolve against; a device defined in
    /// a later directory overrides the same device in an earlier one.
    pub cdi_spec_dirs: Vec<PathBuf>,
    /// Runtime handlers by name (the pod's `runtime_handler`). "" and
    /// "crius" always mean the built-in executor.
    pub handlers: BTreeMap<String, HandlerConfig>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_log_line_bytes: 16 * 1024,
            exec_output_max_bytes: 16 << 20,
            event_buffer: 1024,
            cgroup_favor_dynmods: true,
            cdi_spec_dirs: vec![PathBuf::from("/etc/cdi"), PathBuf::from("/var/run/cdi")],
            handlers: BTreeMap::new(),
        }
    }
}

/// One runtime handler.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct HandlerConfig {
    /// An OCI runtime binary (runc, crun, youki) driven with the same spec
    /// and monitor; empty = the built-in executor.
    pub runtime_path: PathBuf,
}

impl RuntimeConfig {
    /// The external runtime of `handler` (None = built-in); Err if the
    /// handler is not configured.
    pub fn handler(&self, handler: &str) -> Result<Option<&Path>, String> {
        if handler.is_empty() || handler == BUILTIN_HANDLER {
            return Ok(None);
        }
        match self.handlers.get(handler) {
            Some(h) if h.runtime_path.as_os_str().is_empty() => Ok(None),
            Some(h) => Ok(Some(&h.runtime_path)),
            None => {
                let mut known = vec!["\"\"".to_owned(), format!("{BUILTIN_HANDLER:?}")];
                known.extend(self.handlers.keys().map(|k| format!("{k:?}")));
                Err(known.join(", "))
            }
        }
    }
}

/// The name of the built-in handler.
pub const BUILTIN_HANDLER: &str = "crius";

impl Config {
    /// Loads `path`. `explicit` says the user named the file: then a missing
    /// file is an error, otherwise it means built-in defaults.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Self::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| {
            Err(ConfigError::Invalid {
                key: key.into(),
                message: message.into(),
            })
        };
        for (key, p) in [
            ("socket", &self.socket),
            ("state_dir", &self.state_dir),
            ("run_dir", &self.run_dir),
        ] {
            if !p.is_absolute() {
                return invalid(key, "must be an absolute path");
            }
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return invalid("log.format", "must be \"text\" or \"json\"");
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return invalid("log.level", "is not a level or tracing filter directive");
        }
        if !(0.0..=1.0).contains(&self.tracing.sampling_ratio) {
            return invalid("tracing.sampling_ratio", "must be between 0.0 and 1.0");
        }
        if self.image.default_registry.is_empty() || self.image.default_registry.contains('/') {
            return invalid(
                "image.default_registry",
                "must be a registry host such as docker.io",
            );
        }
        if self.image.max_concurrent_downloads == 0 {
            return invalid("image.max_concurrent_downloads", "must be at least 1");
        }
        if self.image.request_timeout_secs == 0 {
            return invalid("image.request_timeout_secs", "must be at least 1");
        }
        self.image.validate()?;
        if !self.cni.conf_dir.is_absolute() {
            return invalid("cni.conf_dir", "must be an absolute path");
        }
        if self.cni.bin_dirs.is_empty() || self.cni.bin_dirs.iter().any(|d| !d.is_absolute()) {
            return invalid("cni.bin_dirs", "must list at least one absolute path");
        }
        if self.pod.shm_size_bytes < 4096 {
            return invalid("pod.shm_size_bytes", "must be at least 4096");
        }
        if self.pod.namespace_pool > 64 {
            return invalid("pod.namespace_pool", "must be at most 64");
        }
        let (cert, key) = (&self.streaming.tls_cert_file, &self.streaming.tls_key_file);
        if cert.as_os_str().is_empty() != key.as_os_str().is_empty() {
            return invalid(
                "streaming.tls_cert_file",
                "tls_cert_file and tls_key_file must be set together",
            );
        }
        for (k, p) in [
            ("streaming.tls_cert_file", cert),
            ("streaming.tls_key_file", key),
        ] {
            if !p.as_os_str().is_empty() && !p.is_absolute() {
                return invalid(k, "must be an absolute path");
            }
        }
        if self.streaming.address.parse::<std::net::IpAddr>().is_err() {
            return invalid("streaming.address", "must be an IP address");
        }
        for (key, v) in [
            ("streaming.token_ttl_secs", self.streaming.token_ttl_secs),
            (
                "streaming.stream_creation_timeout_secs",
                self.streaming.stream_creation_timeout_secs,
            ),
            (
                "streaming.idle_timeout_secs",
                self.streaming.idle_timeout_secs,
            ),
        ] {
            if v == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        if !self.metrics.address.is_empty()
            && self
                .metrics
                .address
                .parse::<std::net::SocketAddr>()
                .is_err()
        {
            return invalid(
                "metrics.address",
                "must be ip:port (such as 127.0.0.1:9898) or empty for no endpoint",
            );
        }
        if !(1024..=16 << 20).contains(&self.runtime.exec_output_max_bytes) {
            return invalid(
                "runtime.exec_output_max_bytes",
                "must be between 1024 and 16777216",
            );
        }
        if self.runtime.max_log_line_bytes < 256 {
            return invalid("runtime.max_log_line_bytes", "must be at least 256");
        }
        if !(1..=1 << 20).contains(&self.runtime.event_buffer) {
            return invalid("runtime.event_buffer", "must be between 1 and 1048576");
        }
        if let Some(d) = self.runtime.cdi_spec_dirs.iter().find(|d| !d.is_absolute()) {
            return invalid(
                "runtime.cdi_spec_dirs",
                &format!("{} must be an absolute path", d.display()),
            );
        }
        for (name, h) in &self.runtime.handlers {
            if !h.runtime_path.as_os_str().is_empty() && !h.runtime_path.is_absolute() {
                return invalid(
                    &format!("runtime.handlers.\"{name}\".runtime_path"),
                    "must be an absolute path",
                );
            }
        }
        for (host, endpoints) in &self.image.mirrors {
            for ep in endpoints {
                if !(ep.starts_with("http://") || ep.starts_with("https://")) {
                    return invalid(
                        &format!("image.mirrors.\"{host}\""),
                        &format!("endpoint {ep:?} must start with http:// or https://"),
                    );
                }
            }
        }
        Ok(())
    }

    /// Directory of the metadata store, blobs and layers.
    pub fn store_path(&self) -> PathBuf {
        self.state_dir.join("meta.redb")
    }
}

/// The default configuration as commented TOML, for `crius config default`.
pub fn default_toml() -> String {
    let d = Config::default();
    let q = |p: &Path| toml_str(&p.display().to_string());
    format!(
        r#"# crius configuration. Every key is optional; these are the defaults.

# Unix socket serving CRI RuntimeService and ImageService (mode 0660).
socket = {socket}
# Persistent state: metadata store, content blobs, unpacked layers (mode 0700).
state_dir = {state}
# Volatile runtime state: lock file, pod and container files (mode 0700).
run_dir = {run}
# Seconds in-flight RPCs may take to finish after SIGTERM or SIGINT.
shutdown_grace_secs = {grace}

[log]
# trace, debug, info, warn, error, or a tracing filter such as "crius=debug,info".
level = {level}
# "text" or "json".
format = {format}

[tracing]
# OTLP/gRPC endpoint for trace export. Empty: OTEL_EXPORTER_OTLP_ENDPOINT, else off.
otlp_endpoint = ""
# Fraction of root traces sampled; kubelet's sampled traceparent is always followed.
sampling_ratio = {ratio:?}

[image]
# Registry that short image names resolve to.
default_registry = {defreg}
# Registries (host or host:port) reached over plain HTTP. localhost and
# 127.0.0.1 are always plain HTTP.
insecure_registries = []
# Layers downloaded concurrently per pull.
max_concurrent_downloads = {mcd}
# Seconds to wait for a registry to connect and answer a request.
request_timeout_secs = {rto}
# A download receiving no bytes for this many seconds fails the pull.
pull_progress_timeout_secs = {ppt}
# containerd-style hosts directory: <dir>/<host[:port]>/hosts.toml (server,
# [host."<url>"] capabilities, ca, client, skip_verify, override_path),
# re-read when changed. See docs/registries.md.
hosts_dir = {hostsdir}
# Docker config.json credentials (auths per registry or mirror host), used
# when kubelet sends none. Keep it mode 0600. Empty: none.
credentials_file = ""

# Mirrors per registry, tried in order before the registry itself:
[image.mirrors]
# "docker.io" = ["https://mirror.example.com", "http://127.0.0.1:5001"]

# Per-registry settings (all optional):
# [image.registries."registry.example.com:5000"]
# server = "https://registry.example.com:5000"   # or http:// for plain HTTP
# plain_http = false
# ca_files = ["/etc/crius/certs/example-ca.pem"]
# client_cert = "/etc/crius/certs/client.pem"
# client_key = "/etc/crius/certs/client-key.pem"
# skip_verify = false
# request_timeout_secs = 0   # 0: image.request_timeout_secs
# retries = 0
# [[image.registries."registry.example.com:5000".mirrors]]
# url = "https://mirror.example.com"
# capabilities = ["pull", "resolve"]
# ca_files = []
# override_path = false

[cni]
# Network configs (.conflist, .conf, .json); the lexically first valid one is used.
conf_dir = {cniconf}
# Plugin binary directories, searched in order.
bin_dirs = [{cnibins}]

[pod]
# Size of each pod's /dev/shm (tmpfs shared by the pod's containers), bytes.
shm_size_bytes = {shm}
# Sets of network, IPC and UTS namespaces kept ready for pods that need just
# those; RunPodSandbox then skips making them. 0 turns the pool off.
namespace_pool = {nspool}

[runtime]
# Longest container log record; longer lines become partial (P) records.
max_log_line_bytes = {maxline}
# ExecSync keeps at most this many bytes of each of stdout and stderr.
exec_output_max_bytes = {execmax}
# GetContainerEvents: how many events a subscriber may fall behind by before
# its stream ends with RESOURCE_EXHAUSTED (it then relists).
event_buffer = {evbuf}
# Remount the host's cgroup2 mount with the kernel's favordynmods option at
# start (every other option kept): a container's first move into its cgroup
# then skips an RCU grace period (5-30 ms on some kernels); forks and exits
# get slightly slower host-wide. false: leave the host's cgroup mounts alone.
cgroup_favor_dynmods = {dynmods}
# CDI spec dirs (JSON or YAML specs) for CreateContainer's CDI devices; a
# device in a later dir overrides the same device in an earlier one.
cdi_spec_dirs = [{cdidirs}]

# Runtime handlers (a pod's runtime_handler). "" and "crius" are the
# built-in executor; others may name an OCI runtime binary:
[runtime.handlers]
# runc = {{ runtime_path = "/usr/bin/runc" }}

[streaming]
# Exec, Attach and PortForward URLs point at this server (plain HTTP).
address = {saddr}
# 0: a free port chosen at start.
port = {sport}
# Seconds a returned URL stays valid (it is also single-use).
token_ttl_secs = {sttl}
# Seconds the client has to open a session's streams.
stream_creation_timeout_secs = {screate}
# Seconds without traffic after which a session is closed.
idle_timeout_secs = {sidle}
# PEM certificate chain and private key: both set = HTTPS (https:// URLs).
tls_cert_file = ""
tls_key_file = ""

[metrics]
# Prometheus /metrics over plain HTTP on ip:port; "" turns it off.
address = {maddr}
"#,
        socket = q(&d.socket),
        state = q(&d.state_dir),
        run = q(&d.run_dir),
        grace = d.shutdown_grace_secs,
        level = toml_str(&d.log.level),
        format = toml_str(&d.log.format),
        ratio = d.tracing.sampling_ratio,
        defreg = toml_str(&d.image.default_registry),
        mcd = d.image.max_concurrent_downloads,
        rto = d.image.request_timeout_secs,
        ppt = d.image.pull_progress_timeout_secs,
        hostsdir = q(&d.image.hosts_dir),
        cniconf = q(&d.cni.conf_dir),
        cnibins = d
            .cni
            .bin_dirs
            .iter()
            .map(|p| q(p))
            .collect::<Vec<_>>()
            .join(", "),
        shm = d.pod.shm_size_bytes,
        nspool = d.pod.namespace_pool,
        maxline = d.runtime.max_log_line_bytes,
        execmax = d.runtime.exec_output_max_bytes,
        evbuf = d.runtime.event_buffer,
        dynmods = d.runtime.cgroup_favor_dynmods,
        cdidirs = d
            .runtime
            .cdi_spec_dirs
            .iter()
            .map(|p| q(p))
            .collect::<Vec<_>>()
            .join(", "),
        saddr = toml_str(&d.streaming.address),
        sport = d.streaming.port,
        sttl = d.streaming.token_ttl_secs,
        screate = d.streaming.stream_creation_timeout_secs,
        sidle = d.streaming.idle_timeout_secs,
        maddr = toml_str(&d.metrics.address),
    )
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_toml_parses_to_default() {
        let cfg = Config::parse(&default_toml(), Path::new("default")).unwrap();
        assert_eq!(cfg, Config::default());
    }

    /// `crius config default` (and so docs/configuration.md) names every
    /// key the config has: a key added to a struct but not to the text
    /// fails here.
    #[test]
    fn default_toml_names_every_key() {
        fn leaves(prefix: &str, v: &toml::Value, out: &mut Vec<(String, String)>) {
            if let toml::Value::Table(t) = v {
                for (k, v) in t {
                    match v {
                        toml::Value::Table(inner) if !inner.is_empty() => {
                            leaves(&format!("{prefix}{k}."), v, out)
                        }
                        _ => out.push((prefix.to_owned(), k.clone())),
                    }
                }
            }
        }
        let text = default_toml();
        let lines: Vec<&str> = text
            .lines()
            .map(|l| l.trim_start_matches(['#', ' ']))
            .collect();
        let mut keys = Vec::new();
        leaves(
            "",
            &toml::Value::try_from(Config::default()).unwrap(),
            &mut keys,
        );
        for (section, key) in keys {
            let named = lines.iter().any(|l| {
                l.starts_with(&format!("{key} ="))
                    || *l == format!("[{section}{key}]")
                    || l.starts_with(&format!("[{section}{key}."))
            });
            assert!(named, "`crius config default` does not name {section}{key}");
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("sockett = \"/x\"", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("sockett"), "{err}");
        let err = Config::parse("[image]\nmirror = {}", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("mirror"), "{err}");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let err = Config::parse("state_dir = \"rel\"", Path::new("c")).unwrap_err();
        assert!(err.to_string().contains("`state_dir`"), "{err}");
        let err = Config::parse("[log]\nformat = \"xml\"", Path::new("c")).unwrap_err();
        assert!(err.to_string().contains("log.format"), "{err}");
        let err = Config::parse("[runtime]\nevent_buffer = 0", Path::new("c")).unwrap_err();
        assert!(err.to_string().contains("runtime.event_buffer"), "{err}");
        let err = Config::parse("[pod]\nnamespace_pool = 65", Path::new("c")).unwrap_err();
        assert!(err.to_string().contains("pod.namespace_pool"), "{err}");
        let err = Config::parse("[metrics]\naddress = \"9898\"", Path::new("c")).unwrap_err();
        assert!(err.to_string().contains("metrics.address"), "{err}");
        let off = Config::parse("[metrics]\naddress = \"\"", Path::new("c")).unwrap();
        assert!(off.metrics.address.is_empty());
        let err = Config::parse(
            "[image.mirrors]\n\"docker.io\" = [\"ftp://x\"]",
            Path::new("c"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("image.mirrors"), "{err}");
    }

    #[test]
    fn missing_default_file_means_defaults_but_explicit_is_error() {
        let p = Path::new("/nonexistent/crius.toml");
        assert_eq!(Config::load(p, false).unwrap(), Config::default());
        assert!(Config::load(p, true).is_err());
    }
}
