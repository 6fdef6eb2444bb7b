//! The CNI client: current config (cached by conf dir fingerprint), ADD of a
//! plugin chain with rollback, DEL from the per-pod cache, and status.

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tracing::Instrument as _;

use super::config::{self, Fingerprint, NetworkList};
use super::exec::{self, Invocation};
use super::result::{self, CacheEntry};
use super::{
    AttachRequest, AttachResult, CniError, CniSettings, NETWORK_NOT_READY_REASON, NetworkStatus,
    validate_pod_id,
};

/// What the last scan of the conf dir found.
#[derive(Debug, Clone)]
struct Loaded {
    fingerprint: Option<Fingerprint>,
    /// The config, or why there is none (a message for Status and errors).
    network: Result<Arc<NetworkList>, String>,
}

/// CNI plugin runner for pod sandboxes. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Cni {
    settings: CniSettings,
    loaded: Mutex<Option<Loaded>>,
}

impl Cni {
    pub fn new(settings: CniSettings) -> Self {
        Self {
            settings,
            loaded: Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &CniSettings {
        &self.settings
    }

    /// Ready when the conf dir holds a valid config; re-reads the dir only
    /// when its candidate files changed.
    pub fn status(&self) -> NetworkStatus {
        match self.current() {
            Ok(list) => NetworkStatus::Ready {
                network: list.name.clone(),
            },
            Err(e) => NetworkStatus::NotReady {
                reason: NETWORK_NOT_READY_REASON.to_owned(),
                message: e.to_string(),
            },
        }
    }

    fn current(&self) -> Result<Arc<NetworkList>, CniError> {
        let dir = &self.settings.conf_dir;
        let no_config = |detail: String| CniError::NoConfig {
            dir: dir.clone(),
            detail,
        };
        let scanned = config::scan(dir);
        let fingerprint = scanned.as_ref().ok().map(|(_, f)| f.clone());
        let mut guard = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(loaded) = guard.as_ref()
            && loaded.fingerprint.is_some()
            && loaded.fingerprint == fingerprint
        {
            return loaded.network.clone().map_err(no_config);
        }
        let network = match scanned {
            Err(e) => Err(format!(" (cannot read the dir: {e})")),
            Ok((paths, _)) => match config::first_valid(&paths) {
                (Some(list), _) => {
                    tracing::info!(network = %list.name, "CNI network config loaded");
                    Ok(Arc::new(list))
                }
                (None, skipped) if skipped.is_empty() => Err(String::new()),
                (None, skipped) => {
                    let why: Vec<String> = skipped.iter().map(ToString::to_string).collect();
                    Err(format!(" (skipped: {})", why.join("; ")))
                }
            },
        };
        *guard = Some(Loaded {
            fingerprint,
            network: network.clone(),
        });
        network.map_err(no_config)
    }

    /// Runs ADD for every plugin of the current config list, in order, and
    /// caches what DEL will need. On failure the plugins run so far get a
    /// best-effort DEL.
    #[tracing::instrument(name = "pod.network", skip_all, fields(op = "attach", pod_id = %req.pod_id))]
    pub async fn attach(&self, req: &AttachRequest) -> Result<AttachResult, CniError> {
        validate_pod_id(&req.pod_id)?;
        if !exec::netns_exists(&req.netns) {
            return Err(CniError::Netns {
                pod_id: req.pod_id.clone(),
                path: req.netns.clone(),
                reason: "does not exist".into(),
            });
        }
        let network = self.current()?;
        let cache_path = result::cache_path(&self.settings.cache_dir, &req.pod_id);
        let mut entry = CacheEntry {
            pod_id: req.pod_id.clone(),
            ifname: ifname(&req.ifname),
            config: network.to_value(),
            capability_args: capability_args(req),
            cni_args: cni_args(req),
            result: None,
        };
        // Written before ADD so a crash mid-ADD still leaves DEL the config.
        result::write_cache(&cache_path, &entry)?;

        let mut prev: Option<Value> = None;
        for (k, plugin) in network.plugins.iter().enumerate() {
            match self
                .invoke("ADD", &network, plugin, &entry, &req.netns, prev.as_ref())
                .await
            {
                Ok(out) => prev = Some(out),
                Err(e) => {
                    // The failed plugin gets a DEL too: it may have allocated
                    // (an IPAM lease, a veth) before failing.
                    for p in network.plugins[..=k].iter().rev() {
                        if let Err(del) = self
                            .invoke("DEL", &network, p, &entry, &req.netns, prev.as_ref())
                            .await
                        {
                            tracing::warn!(error = %del, "rollback DEL after failed ADD");
                        }
                    }
                    if let Err(rm) = result::remove_cache(&cache_path) {
                        tracing::warn!(error = %rm, "removing CNI cache after failed ADD");
                    }
                    return Err(e);
                }
            }
        }
        let raw = prev.unwrap_or(Value::Null);
        entry.result = Some(raw.clone());
        result::write_cache(&cache_path, &entry)?;
        let res = AttachResult::from_raw(raw);
        tracing::info!(ips = ?res.ips, network = %network.name, "pod network attached");
        Ok(res)
    }

    /// Runs DEL for every plugin in reverse, with the config cached at ADD
    /// (the current one if there is no cache). Idempotent; a vanished netns
    /// is passed as an empty `CNI_NETNS`, which plugins accept for DEL.
    #[tracing::instrument(name = "pod.network", skip_all, fields(op = "detach", pod_id = pod_id))]
    pub async fn detach(
        &self,
        pod_id: &str,
        netns: Option<&Path>,
        req_meta: &AttachRequest,
    ) -> Result<(), CniError> {
        validate_pod_id(pod_id)?;
        let cache_path = result::cache_path(&self.settings.cache_dir, pod_id);
        // A cache that cannot be read back (cut short by a power loss, or
        // edited) must not block the teardown forever: like libcni, DEL
        // then runs with the current config.
        let cached = match result::read_cache(&cache_path) {
            Ok(Some(entry)) => match entry.network(&cache_path) {
                Ok(network) => Some((Arc::new(network), entry)),
                Err(e) => {
                    tracing::warn!(error = %e, "CNI DEL with the current config");
                    None
                }
            },
            Ok(None) => None,
            Err(e @ CniError::CacheCorrupt { .. }) => {
                tracing::warn!(error = %e, "CNI DEL with the current config");
                None
            }
            Err(e) => return Err(e),
        };
        let (network, entry) = match cached {
            Some(cached) => cached,
            None => {
                let Ok(network) = self.current() else {
                    // Never attached by us and nothing to tear down with.
                    return Ok(());
                };
                let mut req = req_meta.clone();
                req.pod_id = pod_id.to_owned();
                let entry = CacheEntry {
                    pod_id: pod_id.to_owned(),
                    ifname: ifname(&req.ifname),
                    config: network.to_value(),
                    capability_args: capability_args(&req),
                    cni_args: cni_args(&req),
                    result: None,
                };
                (network, entry)
            }
        };
        let netns = netns
            .filter(|p| exec::netns_exists(p))
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut first_err = None;
        for plugin in network.plugins.iter().rev() {
            let prev = entry.result.as_ref();
            if let Err(e) = self
                .invoke("DEL", &network, plugin, &entry, &netns, prev)
                .await
            {
                tracing::warn!(error = %e, "CNI DEL failed");
                first_err.get_or_insert(e);
            }
        }
        if let Some(e) = first_err {
            // The cache stays so a retry tears down with the same config.
            return Err(e);
        }
        result::remove_cache(&cache_path)?;
        tracing::info!(network = %network.name, "pod network detached");
        Ok(())
    }

    /// The result cached by a completed ADD, if any.
    pub fn cached_result(&self, pod_id: &str) -> Option<AttachResult> {
        validate_pod_id(pod_id).ok()?;
        let path = result::cache_path(&self.settings.cache_dir, pod_id);
        match result::read_cache(&path) {
            Ok(entry) => entry?.result.map(AttachResult::from_raw),
            Err(e) => {
                tracing::warn!(error = %e, "reading CNI cache");
                None
            }
        }
    }

    async fn invoke(
        &self,
        command: &'static str,
        network: &NetworkList,
        plugin: &Map<String, Value>,
        entry: &CacheEntry,
        netns: &Path,
        prev: Option<&Value>,
    ) -> Result<Value, CniError> {
        let ty = NetworkList::plugin_type(plugin);
        let binary = exec::find_plugin(ty, &self.settings.bin_dirs)?;
        // DEL gets the result only from 0.4.0 on; older plugins reject it.
        let prev = prev.filter(|_| command == "ADD" || del_takes_prev_result(network));
        let stdin = plugin_stdin(network, plugin, &entry.capability_args, prev);
        // One trace span per plugin run, a child of the CRI call's span (the
        // future is instrumented: the plugin runs on a blocking thread).
        let span = tracing::info_span!("cni", command, plugin = ty, network = %network.name);
        Invocation {
            plugin: ty.to_owned(),
            binary,
            command,
            container_id: entry.pod_id.clone(),
            netns: netns.to_path_buf(),
            ifname: entry.ifname.clone(),
            cni_path: exec::cni_path(&self.settings.bin_dirs),
            cni_args: entry.cni_args.clone(),
            stdin: serde_json::to_vec(&stdin).expect("plugin config serializes"),
            timeout: self.settings.plugin_timeout,
        }
        .run()
        .instrument(span)
        .await
    }
}

fn ifname(requested: &str) -> String {
    if requested.is_empty() {
        "eth0".to_owned()
    } else {
        requested.to_owned()
    }
}

fn del_takes_prev_result(network: &NetworkList) -> bool {
    !matches!(
        network.cni_version.as_str(),
        "0.1.0" | "0.2.0" | "0.3.0" | "0.3.1"
    )
}

/// The args kubelet's CNI users (portmap, bandwidth, dns) read from
/// `runtimeConfig`; only `hostPort > 0` mappings are host-visible.
fn capability_args(req: &AttachRequest) -> Map<String, Value> {
    let mut args = Map::new();
    let ports: Vec<Value> = req
        .port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| {
            let protocol = if p.protocol.is_empty() {
                "tcp".to_owned()
            } else {
                p.protocol.to_ascii_lowercase()
            };
            let mut m = serde_json::json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": protocol,
            });
            if !p.host_ip.is_empty() {
                m["hostIP"] = Value::String(p.host_ip.clone());
            }
            m
        })
        .collect();
    if !ports.is_empty() {
        args.insert("portMappings".into(), Value::Array(ports));
    }
    if let Some(dns) = &req.dns {
        args.insert("dns".into(), dns.clone());
    }
    if let Some(bw) = &req.bandwidth {
        args.insert("bandwidth".into(), bw.clone());
    }
    args
}

fn cni_args(req: &AttachRequest) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
        req.pod_namespace, req.pod_name, req.pod_id, req.pod_uid
    )
}

/// A plugin's stdin: its config with the list's name and version, the
/// capability args it declares under `runtimeConfig`, and `prevResult`.
fn plugin_stdin(
    network: &NetworkList,
    plugin: &Map<String, Value>,
    caps: &Map<String, Value>,
    prev: Option<&Value>,
) -> Value {
    let mut conf = plugin.clone();
    conf.insert("name".into(), Value::String(network.name.clone()));
    conf.insert(
        "cniVersion".into(),
        Value::String(network.cni_version.clone()),
    );
    let declared = conf.get("capabilities").and_then(Value::as_object);
    let runtime: Map<String, Value> = caps
        .iter()
        .filter(|(k, _)| declared.and_then(|d| d.get(*k)) == Some(&Value::Bool(true)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !runtime.is_empty() {
        let rc = conf
            .entry("runtimeConfig")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(rc) = rc {
            rc.extend(runtime);
        } else {
            *rc = Value::Object(runtime);
        }
    }
    if let Some(prev) = prev {
        conf.insert("prevResult".into(), prev.clone());
    }
    Value::Object(conf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::PortMapping;
    use serde_json::json;

    fn list() -> NetworkList {
        NetworkList::from_value(&json!({
            "name": "net", "cniVersion": "1.0.0",
            "plugins": [{"type": "bridge"}, {"type": "portmap", "capabilities": {"portMappings": true}}]
        }))
        .unwrap()
    }

    #[test]
    fn only_declared_capabilities_are_injected() {
        let req = AttachRequest {
            pod_id: "p".into(),
            port_mappings: vec![
                PortMapping {
                    protocol: "TCP".into(),
                    container_port: 80,
                    host_port: 8080,
                    host_ip: "127.0.0.1".into(),
                },
                PortMapping {
                    protocol: "udp".into(),
                    container_port: 53,
                    host_port: 0,
                    host_ip: String::new(),
                },
            ],
            dns: Some(json!({"servers": ["1.1.1.1"]})),
            ..Default::default()
        };
        let caps = capability_args(&req);
        let net = list();
        let bridge = plugin_stdin(&net, &net.plugins[0], &caps, None);
        assert!(bridge.get("runtimeConfig").is_none());
        assert_eq!(bridge["name"], "net");
        let prev = json!({"ips": []});
        let pm = plugin_stdin(&net, &net.plugins[1], &caps, Some(&prev));
        assert_eq!(
            pm["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}]})
        );
        assert_eq!(pm["prevResult"], prev);
        assert_eq!(pm["cniVersion"], "1.0.0");
    }

    #[test]
    fn cni_args_carry_the_kubelet_keys() {
        let req = AttachRequest {
            pod_id: "abc".into(),
            pod_name: "web".into(),
            pod_namespace: "default".into(),
            pod_uid: "u-1".into(),
            ..Default::default()
        };
        assert_eq!(
            cni_args(&req),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1"
        );
    }
}
