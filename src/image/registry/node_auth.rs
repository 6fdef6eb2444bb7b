//! Node credentials: a Docker `config.json` (`{"auths": {"<host>": {"auth":
//! base64("user:pass")} or {"username", "password"}}}`) read when a pull
//! needs it and re-read when the file changes.
//!
//! Owns that file only. Kubelet's AuthConfig always wins; the caller decides
//! that. Secrets never reach logs or errors: problems name the file and the
//! entry's host, never a value.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tracing::{info, warn};

use super::RegistryError;
use super::auth::{Credentials, credentials_from_auth};
use super::hosts::Stamp;

type Table = Arc<HashMap<String, Credentials>>;

/// The credentials file and its last parse.
#[derive(Debug)]
pub(super) struct NodeAuth {
    path: Option<PathBuf>,
    cache: Mutex<Option<(Stamp, Table)>>,
}

impl NodeAuth {
    /// `path` empty: no node credentials.
    pub(super) fn new(path: &Path) -> Self {
        let me = Self {
            path: (!path.as_os_str().is_empty()).then(|| path.to_owned()),
            cache: Mutex::new(None),
        };
        // Read once at start so a broken or exposed file is reported early;
        // pulls report it again if it is still broken then.
        if me.path.is_some()
            && let Err(e) = me.table()
        {
            warn!(error = %e, "node credentials file unusable");
        }
        me
    }

    /// The credentials for `host` (a registry name such as `docker.io`, or
    /// an endpoint's `host[:port]`), if the file has them.
    pub(super) fn lookup(&self, host: &str) -> Result<Option<Credentials>, RegistryError> {
        if self.path.is_none() {
            return Ok(None);
        }
        let table = self.table()?;
        let found = aliases(host).iter().find_map(|h| table.get(*h).cloned());
        Ok(found)
    }

    fn table(&self) -> Result<Table, RegistryError> {
        let Some(path) = &self.path else {
            return Ok(Arc::default());
        };
        let stamp = Stamp::of(path);
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((s, t)) = cache.as_ref()
                && *s == stamp
            {
                return Ok(t.clone());
            }
        }
        let table: Table = match std::fs::metadata(path) {
            // A file that is not there (yet) is no credentials, not an error:
            // it may be provisioned after the daemon starts.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Arc::default(),
            Err(e) => return Err(bad(path, format!("cannot read it: {e}"))),
            Ok(meta) => {
                if meta.mode() & 0o077 != 0 {
                    warn!(
                        file = %path.display(),
                        mode = format!("{:o}", meta.mode() & 0o7777),
                        "node credentials file is readable by group or others; chmod 600 it"
                    );
                }
                let bytes =
                    std::fs::read(path).map_err(|e| bad(path, format!("cannot read it: {e}")))?;
                let t = parse(&bytes).map_err(|m| bad(path, m))?;
                info!(file = %path.display(), entries = t.len(), "node credentials loaded");
                Arc::new(t)
            }
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        *cache = Some((stamp, table.clone()));
        Ok(table)
    }
}

fn bad(path: &Path, message: String) -> RegistryError {
    RegistryError::Client {
        cause: format!(
            "node credentials file {} (image.credentials_file): {message}",
            path.display()
        ),
    }
}

/// Docker's hub has several names; a config.json written by `docker login`
/// keys it as "https://index.docker.io/v1/".
fn aliases(host: &str) -> Vec<&str> {
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            vec!["docker.io", "index.docker.io", "registry-1.docker.io"]
        }
        h => vec![h],
    }
}

/// Keys as people write them: "host", "host:port", "https://host/v1/".
fn normalise_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k).to_ascii_lowercase()
}

fn parse(bytes: &[u8]) -> Result<HashMap<String, Credentials>, String> {
    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        auths: HashMap<String, Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        auth: String,
        #[serde(default)]
        username: String,
        #[serde(default)]
        password: String,
        #[serde(default)]
        identitytoken: String,
        #[serde(default)]
        registrytoken: String,
    }
    // serde_json's message gives line and column, never the text around it.
    let f: File = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let mut out = HashMap::new();
    for (key, e) in f.auths {
        let creds = credentials_from_auth(
            &e.username,
            &e.password,
            &e.auth,
            &e.identitytoken,
            &e.registrytoken,
        )
        .map_err(|err| format!("entry {key:?}: {err}"))?;
        if creds != Credentials::Anonymous {
            out.insert(normalise_key(&key), creds);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_auth_and_username_password_entries() {
        let t = parse(
            br#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"},
                "mirror.example:5000": {"username": "m", "password": "p"},
                "empty.example": {}
            }}"#,
        )
        .unwrap();
        assert_eq!(
            t["index.docker.io"],
            Credentials::Basic {
                username: "user".into(),
                password: "pass".into()
            }
        );
        assert_eq!(
            t["mirror.example:5000"],
            Credentials::Basic {
                username: "m".into(),
                password: "p".into()
            }
        );
        assert!(!t.contains_key("empty.example"));
    }

    #[test]
    fn errors_name_the_entry_not_the_secret() {
        let e = parse(br#"{"auths": {"r.example": {"auth": "c2VjcmV0"}}}"#).unwrap_err();
        assert!(e.contains("r.example"), "{e}");
        assert!(!e.contains("c2VjcmV0") && !e.contains("secret"), "{e}");
    }

    #[test]
    fn file_is_reread_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let na = NodeAuth::new(&path);
        assert_eq!(na.lookup("r.example").unwrap(), None);
        std::fs::write(
            &path,
            br#"{"auths":{"r.example":{"username":"a","password":"b"}}}"#,
        )
        .unwrap();
        assert!(na.lookup("r.example").unwrap().is_some());
        assert!(na.lookup("docker.io").unwrap().is_none());
        std::fs::write(
            &path,
            br#"{"auths":{"https://index.docker.io/v1/":{"username":"a","password":"bb"}}}"#,
        )
        .unwrap();
        assert!(na.lookup("r.example").unwrap().is_none());
        assert!(na.lookup("docker.io").unwrap().is_some());
    }
}
