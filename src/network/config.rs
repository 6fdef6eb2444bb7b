//! Reading the CNI conf dir: the lexically first valid network config list,
//! and a cheap fingerprint (names, sizes, mtimes) to know when to re-read.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Map, Value};

use super::CniError;

const EXTENSIONS: [&str; 3] = ["conflist", "conf", "json"];

/// A network config list: the config every plugin of a pod is run with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NetworkList {
    pub name: String,
    pub cni_version: String,
    /// Plugin configs, each an object with a validated `type`.
    pub plugins: Vec<Map<String, Value>>,
}

impl NetworkList {
    /// Parses a `.conflist` (or a `.conf` / `.json`, which is one plugin
    /// config wrapped as a list, unless it itself holds `plugins`).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, CniError> {
        let invalid = |reason: String| CniError::InvalidConfig {
            path: path.to_owned(),
            reason,
        };
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
        let is_list_file = path.extension().is_some_and(|e| e == "conflist");
        let obj = value
            .as_object()
            .ok_or_else(|| invalid("not a JSON object".into()))?;
        if is_list_file || obj.contains_key("plugins") {
            Self::from_value(&value).map_err(invalid)
        } else {
            let name = obj.get("name").cloned().unwrap_or(Value::Null);
            let version = obj.get("cniVersion").cloned().unwrap_or(Value::Null);
            let list = serde_json::json!({"name": name, "cniVersion": version, "plugins": [value]});
            Self::from_value(&list).map_err(invalid)
        }
    }

    /// Validates a list in its JSON form (as written in a conf file or cache).
    pub fn from_value(value: &Value) -> Result<Self, String> {
        let name = value
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or("\"name\" is missing or not a non-empty string")?;
        let cni_version = value
            .get("cniVersion")
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .ok_or("\"cniVersion\" is missing or not a non-empty string")?;
        let plugins = value
            .get("plugins")
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty())
            .ok_or("\"plugins\" is missing or empty")?;
        let plugins = plugins
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let obj = p
                    .as_object()
                    .ok_or_else(|| format!("plugin {i} is not an object"))?;
                let ty = obj.get("type").and_then(Value::as_str).unwrap_or("");
                // The type names a binary in the bin dirs: it must stay one
                // path component or a conf file could run any program.
                if !valid_plugin_type(ty) {
                    return Err(format!("plugin {i} has no valid \"type\" (got {ty:?})"));
                }
                Ok(obj.clone())
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            name: name.to_owned(),
            cni_version: cni_version.to_owned(),
            plugins,
        })
    }

    pub fn to_value(&self) -> Value {
        serde_json::json!({
            "name": self.name,
            "cniVersion": self.cni_version,
            "plugins": self.plugins,
        })
    }

    pub fn plugin_type(plugin: &Map<String, Value>) -> &str {
        plugin.get("type").and_then(Value::as_str).unwrap_or("")
    }
}

fn valid_plugin_type(ty: &str) -> bool {
    !ty.is_empty()
        && !ty.starts_with('.')
        && ty
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Names, sizes and mtimes of the candidate files: equal fingerprints mean
/// the parsed config can be reused.
pub(crate) type Fingerprint = Vec<(OsString, u64, Option<SystemTime>)>;

/// Candidate config files, sorted by name, with the fingerprint.
pub(crate) fn scan(dir: &Path) -> std::io::Result<(Vec<PathBuf>, Fingerprint)> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e));
        if !wanted {
            continue;
        }
        // Follow symlinks: conf dirs are often populated by links.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        entries.push((entry.file_name(), meta.len(), meta.modified().ok()));
    }
    entries.sort();
    let paths = entries.iter().map(|(n, _, _)| dir.join(n)).collect();
    Ok((paths, entries))
}

/// The lexically first valid config among `paths`; the invalid ones before
/// it are returned so callers can report them.
pub(crate) fn first_valid(paths: &[PathBuf]) -> (Option<NetworkList>, Vec<CniError>) {
    let mut skipped = Vec::new();
    for path in paths {
        let parsed = std::fs::read(path)
            .map_err(|e| CniError::InvalidConfig {
                path: path.clone(),
                reason: format!("unreadable: {e}"),
            })
            .and_then(|bytes| NetworkList::parse(path, &bytes));
        match parsed {
            Ok(list) => return (Some(list), skipped),
            Err(e) => {
                tracing::warn!(error = %e, "skipping CNI config");
                skipped.push(e);
            }
        }
    }
    (None, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_is_wrapped_as_a_list() {
        let conf = br#"{"cniVersion":"1.0.0","name":"n","type":"bridge","bridge":"b0"}"#;
        let list = NetworkList::parse(Path::new("/x/10.conf"), conf).unwrap();
        assert_eq!(list.name, "n");
        assert_eq!(list.cni_version, "1.0.0");
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(list.plugins[0]["bridge"], "b0");
    }

    #[test]
    fn invalid_lists_name_the_file_and_the_problem() {
        let cases: [(&[u8], &str); 4] = [
            (b"{", "not JSON"),
            (
                br#"{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}"#,
                "\"name\"",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#,
                "\"plugins\"",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../../bin/sh"}]}"#,
                "\"type\"",
            ),
        ];
        for (bytes, want) in cases {
            let err = NetworkList::parse(Path::new("/d/00.conflist"), bytes).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("/d/00.conflist") && msg.contains(want),
                "{msg}"
            );
        }
    }
}
