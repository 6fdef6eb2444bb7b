//! A working pod network out of the box: the default bridge conflist that
//! `crius config cni-default` writes into an empty CNI conf dir, and the
//! CNI part of `crius config check` (which conflist would be used, whether
//! it parses, whether its plugins are installed).
//!
//! Never overwrites or edits an existing config: a conf dir holding any
//! `.conf`, `.conflist` or `.json` file is left alone. Does not run plugins.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::config::{self, NetworkList};
use super::exec;

/// The file written into an empty conf dir.
pub const DEFAULT_CONFLIST: &str = "10-crius-bridge.conflist";
/// The bridge the default network creates on the host.
pub const DEFAULT_BRIDGE: &str = "cni0";
/// Pod addresses of the default network (containerd's and CRI-O's range).
pub const DEFAULT_SUBNET: &str = "10.88.0.0/16";

#[derive(Debug, thiserror::Error)]
pub enum DefaultConfError {
    #[error("CNI conf dir {}: {context}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        context: &'static str,
        source: std::io::Error,
    },
}

/// What `write_default` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Written(PathBuf),
    /// The dir already has configs (these); nothing was written.
    Kept(Vec<PathBuf>),
}

/// The default network: a bridge with host-local addresses and outbound
/// NAT, host ports through portmap (with SNAT so a pod can reach its own
/// host port via the host address), and the firewall plugin when it is
/// installed (it opens the FORWARD chain for pod traffic on hosts whose
/// policy drops it). No loopback plugin: crius brings `lo` up itself.
pub fn default_conflist(bin_dirs: &[PathBuf]) -> Value {
    let mut plugins = vec![
        json!({
            "type": "bridge",
            "bridge": DEFAULT_BRIDGE,
            "isGateway": true,
            "ipMasq": true,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": DEFAULT_SUBNET}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        }),
        json!({
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "snat": true,
        }),
    ];
    if exec::find_plugin("firewall", bin_dirs).is_ok() {
        plugins.push(json!({"type": "firewall"}));
    }
    json!({
        "cniVersion": "1.0.0",
        "name": "crius",
        "plugins": plugins,
    })
}

/// Writes [`DEFAULT_CONFLIST`] into `dir` (created if missing) unless it
/// already holds a config. The file appears whole (written aside, then
/// linked into place, which also refuses to replace a file that appeared
/// meanwhile), so the daemon never reads half of it.
pub fn write_default(dir: &Path, bin_dirs: &[PathBuf]) -> Result<Outcome, DefaultConfError> {
    let io = |context| {
        move |source| DefaultConfError::Io {
            dir: dir.to_owned(),
            context,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io("creating it"))?;
    let (existing, _) = config::scan(dir).map_err(io("listing it"))?;
    if !existing.is_empty() {
        return Ok(Outcome::Kept(existing));
    }
    let text = serde_json::to_string_pretty(&default_conflist(bin_dirs))
        .map_err(|e| io("encoding the conflist")(std::io::Error::other(e)))?;
    let path = dir.join(DEFAULT_CONFLIST);
    // Not a config extension, so a reader of the dir never picks it up.
    let tmp = dir.join(format!(".{DEFAULT_CONFLIST}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, format!("{text}\n")).map_err(io("writing the conflist"))?;
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(Outcome::Written(path)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Outcome::Kept(vec![path])),
        Err(e) => Err(io("putting the conflist in place")(e)),
    }
}

/// Problems with the CNI set-up, one sentence each: no usable config,
/// invalid configs (before the one used), plugins of the config that would
/// be used that are missing from `bin_dirs` (its IPAM plugin included).
pub fn check(dir: &Path, bin_dirs: &[PathBuf]) -> Vec<String> {
    let paths = match config::scan(dir) {
        Ok((paths, _)) => paths,
        Err(e) => {
            return vec![format!(
                "CNI conf dir {} cannot be read ({e}): pods get no network; run `crius config cni-default`",
                dir.display()
            )];
        }
    };
    let (used, invalid) = config::first_valid(&paths);
    let mut problems: Vec<String> = invalid.iter().map(ToString::to_string).collect();
    let Some(list) = used else {
        problems.push(format!(
            "no valid CNI network config in {}: pods get no network; run `crius config cni-default`",
            dir.display()
        ));
        return problems;
    };
    for ty in plugin_types(&list) {
        if let Err(e) = exec::find_plugin(&ty, bin_dirs) {
            problems.push(format!("network {:?}: {e}", list.name));
        }
    }
    problems
}

/// Every binary the list runs: each plugin's `type` and its `ipam.type`.
fn plugin_types(list: &NetworkList) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in &list.plugins {
        let ipam = p
            .get("ipam")
            .and_then(|i| i.get("type"))
            .and_then(Value::as_str);
        for ty in std::iter::once(NetworkList::plugin_type(p)).chain(ipam) {
            // An IPAM type is not validated by the list parser: keep only
            // names that cannot leave the bin dir.
            let plain = !ty.is_empty() && !ty.contains('/') && !ty.starts_with('.');
            if plain && !out.iter().any(|o| o == ty) {
                out.push(ty.to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn fake_plugin(dir: &Path, name: &str) {
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn written_only_into_an_empty_dir_and_parses() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("net.d");
        let bins = tmp.path().join("bin");
        std::fs::create_dir(&bins).unwrap();
        let out = write_default(&dir, std::slice::from_ref(&bins)).unwrap();
        let path = dir.join(DEFAULT_CONFLIST);
        assert_eq!(out, Outcome::Written(path.clone()));
        let list = NetworkList::parse(&path, &std::fs::read(&path).unwrap()).unwrap();
        let types: Vec<&str> = list.plugins.iter().map(NetworkList::plugin_type).collect();
        assert_eq!(types, ["bridge", "portmap"], "no firewall plugin installed");
        // A second run keeps what is there.
        assert_eq!(
            write_default(&dir, std::slice::from_ref(&bins)).unwrap(),
            Outcome::Kept(vec![path.clone()])
        );
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(names.len(), 1, "no temp file left behind");
    }

    #[test]
    fn firewall_only_when_installed() {
        let tmp = tempfile::tempdir().unwrap();
        fake_plugin(tmp.path(), "firewall");
        let v = default_conflist(&[tmp.path().to_owned()]);
        assert_eq!(v["plugins"][2]["type"], "firewall");
    }

    #[test]
    fn check_names_missing_plugins_and_invalid_files() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, bins) = (tmp.path().join("net.d"), tmp.path().join("bin"));
        std::fs::create_dir_all(&bins).unwrap();
        let p = check(&dir, std::slice::from_ref(&bins));
        assert!(p[0].contains("cannot be read"), "{p:?}");
        write_default(&dir, std::slice::from_ref(&bins)).unwrap();
        fake_plugin(&bins, "bridge");
        let p = check(&dir, std::slice::from_ref(&bins));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].contains("\"host-local\"") && p[1].contains("\"portmap\""),
            "{p:?}"
        );
        fake_plugin(&bins, "host-local");
        fake_plugin(&bins, "portmap");
        assert!(check(&dir, std::slice::from_ref(&bins)).is_empty());
        std::fs::write(dir.join("00-broken.conflist"), "{").unwrap();
        let p = check(&dir, std::slice::from_ref(&bins));
        assert!(p.len() == 1 && p[0].contains("00-broken.conflist"), "{p:?}");
    }
}
