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
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Layers downloaded at once per pull.
    pub max_concurrent_downloads: usize,
    /// Seconds to wait for a registry to connect or answer a request.
    pub request_timeout_secs: u64,
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self {
            default_registry: "docker.io".into(),
            insecure_registries: Vec::new(),
            mirrors: BTreeMap::new(),
            max_concurrent_downloads: 4,
            request_timeout_secs: 30,
        }
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
}

impl Default for PodConfig {
    fn default() -> Self {
        Self {
            shm_size_bytes: 64 << 20,
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
        if !self.cni.conf_dir.is_absolute() {
            return invalid("cni.conf_dir", "must be an absolute path");
        }
        if self.cni.bin_dirs.is_empty() || self.cni.bin_dirs.iter().any(|d| !d.is_absolute()) {
            return invalid("cni.bin_dirs", "must list at least one absolute path");
        }
        if self.pod.shm_size_bytes < 4096 {
            return invalid("pod.shm_size_bytes", "must be at least 4096");
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
# Seconds to wait for a registry to connect or answer.
request_timeout_secs = {rto}

# Mirrors per registry, tried in order before the registry itself:
[image.mirrors]
# "docker.io" = ["https://mirror.example.com", "http://127.0.0.1:5001"]

[cni]
# Network configs (.conflist, .conf, .json); the lexically first valid one is used.
conf_dir = {cniconf}
# Plugin binary directories, searched in order.
bin_dirs = [{cnibins}]

[pod]
# Size of each pod's /dev/shm (tmpfs shared by the pod's containers), bytes.
shm_size_bytes = {shm}

[runtime]
# Longest container log record; longer lines become partial (P) records.
max_log_line_bytes = {maxline}
# ExecSync keeps at most this many bytes of each of stdout and stderr.
exec_output_max_bytes = {execmax}
# GetContainerEvents: how many events a subscriber may fall behind by before
# its stream ends with RESOURCE_EXHAUSTED (it then relists).
event_buffer = {evbuf}

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
        cniconf = q(&d.cni.conf_dir),
        cnibins = d
            .cni
            .bin_dirs
            .iter()
            .map(|p| q(p))
            .collect::<Vec<_>>()
            .join(", "),
        shm = d.pod.shm_size_bytes,
        maxline = d.runtime.max_log_line_bytes,
        execmax = d.runtime.exec_output_max_bytes,
        evbuf = d.runtime.event_buffer,
        saddr = toml_str(&d.streaming.address),
        sport = d.streaming.port,
        sttl = d.streaming.token_ttl_secs,
        screate = d.streaming.stream_creation_timeout_secs,
        sidle = d.streaming.idle_timeout_secs,
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
