//! CNI results (addresses and pod interfaces out of the plugin JSON) and the
//! per-pod cache file that remembers the config and result of an ADD.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::config::NetworkList;
use super::{AttachResult, CniError};

impl AttachResult {
    /// Reads addresses from a 0.3.0+ result (`ips[].address`, a CIDR) or a
    /// 0.1/0.2 one (`ip4.ip`, `ip6.ip`); IPv4 first.
    pub(crate) fn from_raw(raw: Value) -> Self {
        let mut ips: Vec<IpAddr> = Vec::new();
        let cidrs = raw
            .get("ips")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|ip| ip.get("address"))
            .chain(["ip4", "ip6"].iter().filter_map(|k| raw.get(k)?.get("ip")));
        for cidr in cidrs.filter_map(Value::as_str) {
            let addr = cidr.split('/').next().unwrap_or(cidr);
            if let Ok(ip) = addr.parse::<IpAddr>()
                && !ips.contains(&ip)
            {
                ips.push(ip);
            }
        }
        ips.sort_by_key(IpAddr::is_ipv6);
        let interfaces = raw
            .get("interfaces")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|i| {
                i.get("sandbox")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
            })
            .filter_map(|i| i.get("name")?.as_str().map(str::to_owned))
            .collect();
        Self {
            ips,
            interfaces,
            raw,
        }
    }
}

/// What DEL needs to undo an ADD exactly, even after the conf dir changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CacheEntry {
    pub pod_id: String,
    pub ifname: String,
    /// The network config list as used, in its JSON form.
    pub config: Value,
    /// Capability args given to the plugins (`portMappings`, `dns`, ...).
    pub capability_args: Map<String, Value>,
    pub cni_args: String,
    /// The final result; `None` while (or if) ADD did not complete.
    pub result: Option<Value>,
}

impl CacheEntry {
    pub fn network(&self, path: &Path) -> Result<NetworkList, CniError> {
        NetworkList::from_value(&self.config).map_err(|reason| CniError::CacheCorrupt {
            path: path.to_owned(),
            reason,
        })
    }
}

pub(crate) fn cache_path(cache_dir: &Path, pod_id: &str) -> PathBuf {
    cache_dir.join(format!("{pod_id}.json"))
}

/// Reads a cache entry; a missing file is `None`.
pub(crate) fn read_cache(path: &Path) -> Result<Option<CacheEntry>, CniError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CniError::Cache {
                path: path.to_owned(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| CniError::CacheCorrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

/// Writes the entry atomically (temp file + rename), mode 0600: results can
/// name addresses and the config can hold credentials of some plugins.
/// Not fsynced, as libcni does not: a `kill -9` of the daemon keeps the
/// page cache, and an entry a power loss cuts short is read as missing
/// (DEL then runs with the current config).
pub(crate) fn write_cache(path: &Path, entry: &CacheEntry) -> Result<(), CniError> {
    let err = |source| CniError::Cache {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(entry).expect("cache entry serializes");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(&bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

pub(crate) fn remove_cache(path: &Path) -> Result<(), CniError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CniError::Cache {
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn v1_result_addresses_are_parsed_ipv4_first() {
        let raw = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "cni0"}, {"name": "eth0", "sandbox": "/run/netns/x"}],
            "ips": [
                {"address": "fd00::5/64", "interface": 1},
                {"address": "10.88.3.4/24", "interface": 1, "gateway": "10.88.3.1"}
            ]
        });
        let r = AttachResult::from_raw(raw);
        assert_eq!(
            r.ips,
            vec![
                "10.88.3.4".parse::<IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
        assert_eq!(r.interfaces, vec!["eth0".to_owned()]);
    }

    #[test]
    fn legacy_result_addresses_are_parsed() {
        let r = AttachResult::from_raw(json!({"ip4": {"ip": "10.1.2.3/16"}}));
        assert_eq!(r.ips, vec!["10.1.2.3".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn cache_round_trips_with_private_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = cache_path(&dir.path().join("cache"), "pod1");
        let entry = CacheEntry {
            pod_id: "pod1".into(),
            ifname: "eth0".into(),
            config: json!({"name": "n", "cniVersion": "1.0.0", "plugins": [{"type": "bridge"}]}),
            capability_args: Map::new(),
            cni_args: String::new(),
            result: Some(json!({"ips": []})),
        };
        write_cache(&path, &entry).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = read_cache(&path).unwrap().unwrap();
        assert_eq!(back.network(&path).unwrap().name, "n");
        remove_cache(&path).unwrap();
        remove_cache(&path).unwrap();
        assert!(read_cache(&path).unwrap().is_none());
    }
}
