//! Pod networking through CNI plugins: which network config is current, ADD
//! and DEL of a pod's network namespace, and the per-pod cache that makes
//! teardown use the config the pod was set up with.
//!
//! This module owns the conf dir reading, plugin execution and the CNI cache
//! dir. It does not create or pin network namespaces (the caller passes a
//! netns path) and knows nothing of gRPC types.

mod cni;
mod config;
pub mod default_conf;
mod exec;
mod result;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use cni::Cni;

/// The CNI `reason` kubelet expects when no network is configured.
pub const NETWORK_NOT_READY_REASON: &str = "NetworkPluginNotReady";

/// Default time a plugin may run before it is killed.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Where CNI configs, plugins and the per-pod cache live.
#[derive(Debug, Clone)]
pub struct CniSettings {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
    pub cache_dir: PathBuf,
    /// A plugin still running after this long is killed.
    pub plugin_timeout: Duration,
}

impl CniSettings {
    pub fn new(conf_dir: PathBuf, bin_dirs: Vec<PathBuf>, cache_dir: PathBuf) -> Self {
        Self {
            conf_dir,
            bin_dirs,
            cache_dir,
            plugin_timeout: DEFAULT_PLUGIN_TIMEOUT,
        }
    }
}

/// Whether a usable network config exists (the CRI `NetworkReady` condition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkStatus {
    Ready { network: String },
    NotReady { reason: String, message: String },
}

impl NetworkStatus {
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Ready { .. })
    }
}

/// One pod port mapping; only `host_port > 0` ones reach the plugins.
#[derive(Debug, Clone, Default)]
pub struct PortMapping {
    /// `tcp`, `udp` or `sctp` (lowercase, as the portmap plugin expects).
    pub protocol: String,
    pub container_port: u16,
    pub host_port: u16,
    /// Empty means every host address.
    pub host_ip: String,
}

/// What ADD (and DEL, for `CNI_ARGS` and capability args) needs about a pod.
#[derive(Debug, Clone, Default)]
pub struct AttachRequest {
    /// The sandbox id, used as `CNI_CONTAINERID` and as the cache file name.
    pub pod_id: String,
    pub netns: PathBuf,
    /// Interface name inside the pod; empty means `eth0`.
    pub ifname: String,
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    pub port_mappings: Vec<PortMapping>,
    /// The `dns` capability argument (`{servers, searches, options}`).
    pub dns: Option<serde_json::Value>,
    /// The `bandwidth` capability argument (`{ingressRate, ...}`).
    pub bandwidth: Option<serde_json::Value>,
}

/// What ADD gave the pod.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttachResult {
    /// Pod addresses, IPv4 first, in the order the plugin listed them.
    pub ips: Vec<IpAddr>,
    /// Names of the interfaces inside the pod's netns.
    pub interfaces: Vec<String>,
    /// The final plugin's result, verbatim.
    pub raw: serde_json::Value,
}

/// Why a CNI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error(
        "no valid CNI network config in {}{detail}: add a .conflist there (see the CNI spec)",
        dir.display()
    )]
    NoConfig { dir: PathBuf, detail: String },
    #[error("CNI config {} is invalid: {reason}", path.display())]
    InvalidConfig { path: PathBuf, reason: String },
    #[error("pod id {0:?} cannot name a CNI cache file (want [A-Za-z0-9_.-], not \".\" or \"..\")")]
    InvalidPodId(String),
    #[error("network namespace {} of pod {pod_id}: {reason}", path.display())]
    Netns {
        pod_id: String,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "CNI plugin {plugin:?} not found in {}: install it (Debian: containernetworking-plugins) or fix bin dirs",
        display_dirs(dirs)
    )]
    PluginNotFound { plugin: String, dirs: Vec<PathBuf> },
    #[error(
        "CNI plugin {plugin} {command} failed with code {code}: {msg}{}",
        display_details(details)
    )]
    Plugin {
        plugin: String,
        command: &'static str,
        code: u64,
        msg: String,
        details: String,
    },
    #[error("CNI plugin {plugin} {command} exited with {status}: {stderr}")]
    PluginFailed {
        plugin: String,
        command: &'static str,
        status: String,
        stderr: String,
    },
    #[error("CNI plugin {plugin} {command} gave unusable output: {reason}")]
    PluginOutput {
        plugin: String,
        command: &'static str,
        reason: String,
    },
    #[error("CNI plugin {plugin} {command} was killed after {timeout:?}")]
    PluginTimeout {
        plugin: String,
        command: &'static str,
        timeout: Duration,
    },
    #[error("cannot run CNI plugin {} ({plugin})", path.display())]
    PluginSpawn {
        plugin: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CNI cache {}", path.display())]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CNI cache {} is corrupt: {reason}", path.display())]
    CacheCorrupt { path: PathBuf, reason: String },
}

fn display_dirs(dirs: &[PathBuf]) -> String {
    let names: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    format!("[{}]", names.join(", "))
}

fn display_details(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(" ({details})")
    }
}

/// Pod ids become cache file names: a strict check keeps them one component.
fn validate_pod_id(pod_id: &str) -> Result<(), CniError> {
    let ok = !pod_id.is_empty()
        && pod_id != "."
        && pod_id != ".."
        && !pod_id.contains("..")
        && pod_id.len() <= 255
        && pod_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::InvalidPodId(pod_id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_ids_are_single_path_components() {
        for good in ["abc", "a-b_c.d", "0123456789abcdef"] {
            assert!(validate_pod_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a..b", "../x", "a b", "é"] {
            assert!(validate_pod_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plugin_error_message_names_plugin_code_and_details() {
        let e = CniError::Plugin {
            plugin: "bridge".into(),
            command: "ADD",
            code: 11,
            msg: "boom".into(),
            details: "more".into(),
        };
        assert_eq!(
            e.to_string(),
            "CNI plugin bridge ADD failed with code 11: boom (more)"
        );
    }
}
