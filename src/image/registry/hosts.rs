//! Which endpoints serve a registry, in order, and how to reach each: from
//! `image.registries` / `image.mirrors` in the config, or from a
//! containerd-style hosts directory that is re-read when a file changes.
//!
//! containerd's `hosts.toml` (in `<hosts_dir>/<host[:port]>/`, else
//! `<hosts_dir>/_default/`) maps onto crius like this:
//!
//! | hosts.toml                   | crius config (`[image.registries."<host>"]`) |
//! | ---------------------------- | -------------------------------------------- |
//! | `server = "<url>"`           | `server`                                     |
//! | `[host."<url>"]`             | `[[….mirrors]] url = "<url>"`                |
//! | `capabilities`               | `capabilities` ("pull", "resolve"; "push" ignored) |
//! | `ca` (path or list)          | `ca_files`                                   |
//! | `client` (path, list, pairs) | `client_cert` + `client_key` (first pair used) |
//! | `skip_verify`                | `skip_verify`                                |
//! | `override_path`              | `override_path`                              |
//! | `header`, `dial_timeout`, `proxy` | not supported: warned and ignored      |
//!
//! Relative paths in a hosts.toml are relative to its directory, as in
//! containerd. The upstream (`server`, else the registry itself) is always
//! tried last and may do everything; a hosts.toml replaces the config's
//! entries for its host. This module reads files and builds URLs; it does
//! no network I/O.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use tracing::{info, warn};

use super::RegistryError;
use super::tls::TlsSettings;
use crate::config::{ImageConfig, RegistryHostConfig};

/// A file's identity and change marks; equal stamps mean "unchanged".
/// `None` when the file does not exist.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Stamp(Option<(u64, u64, i64, i64, u64)>);

impl Stamp {
    pub(super) fn of(path: &Path) -> Self {
        Self(
            std::fs::metadata(path)
                .ok()
                .map(|m| (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.len())),
        )
    }
}

/// One place to fetch from.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct EndpointSpec {
    /// The API root: requests go to `<root>/<repository>/…` (normally ends in `/v2`).
    pub root: Url,
    pub mirror: bool,
    /// May fetch manifests by digest and blobs.
    pub pull: bool,
    /// May turn a tag into a manifest.
    pub resolve: bool,
    pub tls: TlsSettings,
    pub timeout: Duration,
    pub retries: u32,
}

/// The capability a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    Pull,
    Resolve,
}

impl EndpointSpec {
    pub(super) fn can(&self, need: Need) -> bool {
        match need {
            Need::Pull => self.pull,
            Need::Resolve => self.resolve,
        }
    }

    /// `host[:port]` of the endpoint: the key of its node credentials.
    pub(super) fn host_port(&self) -> String {
        let host = self.root.host_str().unwrap_or("");
        match self.root.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        }
    }
}

type Parsed = Arc<Result<HostsFile, String>>;

#[derive(Debug)]
pub(super) struct Hosts {
    dir: Option<PathBuf>,
    registries: BTreeMap<String, RegistryHostConfig>,
    legacy_mirrors: BTreeMap<String, Vec<Url>>,
    insecure: Vec<String>,
    timeout: Duration,
    cache: Mutex<HashMap<PathBuf, (Stamp, Parsed)>>,
}

impl Hosts {
    pub(super) fn new(cfg: &ImageConfig) -> Result<Self, RegistryError> {
        let mut legacy_mirrors = BTreeMap::new();
        for (registry, endpoints) in &cfg.mirrors {
            let mut urls = Vec::new();
            for ep in endpoints {
                match Url::parse(ep) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => urls.push(u),
                    _ => {
                        return Err(RegistryError::InvalidMirror {
                            registry: registry.clone(),
                            endpoint: ep.clone(),
                        });
                    }
                }
            }
            legacy_mirrors.insert(registry.clone(), urls);
        }
        for (registry, r) in &cfg.registries {
            let urls = r
                .mirrors
                .iter()
                .map(|m| &m.url)
                .chain(std::iter::once(&r.server).filter(|s| !s.is_empty()));
            for u in urls {
                if parse_http_url(u).is_none() {
                    return Err(RegistryError::InvalidMirror {
                        registry: registry.clone(),
                        endpoint: u.clone(),
                    });
                }
            }
        }
        Ok(Self {
            dir: (!cfg.hosts_dir.as_os_str().is_empty()).then(|| cfg.hosts_dir.clone()),
            registries: cfg.registries.clone(),
            legacy_mirrors,
            insecure: cfg.insecure_registries.clone(),
            timeout: Duration::from_secs(cfg.request_timeout_secs.max(1)),
            cache: Mutex::default(),
        })
    }

    /// The endpoints of `registry`: mirrors in order, then the upstream.
    pub(super) fn endpoints(&self, registry: &str) -> Result<Vec<EndpointSpec>, RegistryError> {
        let entry = self.registries.get(registry);
        let timeout = entry
            .map(|e| e.request_timeout_secs)
            .filter(|t| *t > 0)
            .map_or(self.timeout, Duration::from_secs);
        let retries = entry.map_or(0, |e| e.retries);
        if let Some(file) = self.hosts_file(registry)? {
            return Ok(self.endpoints_in_file(registry, &file, timeout, retries));
        }
        let mut out = Vec::new();
        let both = |root: Url, tls: TlsSettings| EndpointSpec {
            root,
            mirror: true,
            pull: true,
            resolve: true,
            tls,
            timeout,
            retries,
        };
        if let Some(e) = entry {
            for m in &e.mirrors {
                let Some(url) = parse_http_url(&m.url) else {
                    continue; // checked in new()
                };
                let caps = &m.capabilities;
                out.push(EndpointSpec {
                    pull: caps.is_empty() || caps.iter().any(|c| c == "pull"),
                    resolve: caps.is_empty() || caps.iter().any(|c| c == "resolve"),
                    ..both(
                        api_root(url, m.override_path),
                        tls_settings(&m.ca_files, &m.client_cert, &m.client_key, m.skip_verify),
                    )
                });
            }
        }
        for url in self.legacy_mirrors.get(registry).into_iter().flatten() {
            out.push(both(api_root(url.clone(), false), TlsSettings::default()));
        }
        let server = entry
            .and_then(|e| parse_http_url(&e.server))
            .unwrap_or_else(|| self.default_server(registry, entry.is_some_and(|e| e.plain_http)));
        out.push(EndpointSpec {
            mirror: false,
            ..both(
                api_root(server, false),
                entry.map_or_else(TlsSettings::default, |e| {
                    tls_settings(&e.ca_files, &e.client_cert, &e.client_key, e.skip_verify)
                }),
            )
        });
        Ok(out)
    }

    /// `https://<registry>`, or http:// for loopback and insecure registries;
    /// Docker Hub's API host for docker.io.
    fn default_server(&self, registry: &str, plain_http: bool) -> Url {
        let host = match registry.strip_prefix('[') {
            Some(_) => registry.split_inclusive(']').next().unwrap_or(registry),
            None => registry.split_once(':').map_or(registry, |(h, _)| h),
        };
        // Loopback is plain HTTP as in Docker and containerd: a local
        // registry has no certificate and traffic never leaves the host.
        let plain = plain_http
            || matches!(host, "localhost" | "127.0.0.1" | "[::1]")
            || self.insecure.iter().any(|i| i == registry || i == host);
        let name = if registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            registry
        };
        let text = format!("{}://{name}", if plain { "http" } else { "https" });
        // Reference validated the host; the fallback keeps this infallible.
        Url::parse(&text)
            .unwrap_or_else(|_| Url::parse("https://invalid.invalid").expect("static URL"))
    }

    /// The parsed hosts.toml for `registry` (or `_default`), re-read when
    /// its stamp changes. A broken file fails the pull naming the file.
    fn hosts_file(
        &self,
        registry: &str,
    ) -> Result<Option<(PathBuf, Arc<HostsFile>)>, RegistryError> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        for name in [registry, "_default"] {
            let path = dir.join(name).join("hosts.toml");
            let stamp = Stamp::of(&path);
            if stamp.0.is_none() {
                // containerd's fallback: Docker's certs.d layout in the
                // registry's own directory.
                if name == registry
                    && let Some(f) = docker_certs(&dir.join(name))
                {
                    return Ok(Some((path, Arc::new(f))));
                }
                continue;
            }
            let cached = {
                let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                cache
                    .get(&path)
                    .filter(|(s, _)| *s == stamp)
                    .map(|(_, p)| p.clone())
            };
            let parsed = match cached {
                Some(p) => p,
                None => {
                    let p: Parsed = Arc::new(
                        std::fs::read_to_string(&path)
                            .map_err(|e| format!("cannot read it: {e}"))
                            .and_then(|text| HostsFile::parse(&text)),
                    );
                    match p.as_ref() {
                        Ok(f) => {
                            info!(file = %path.display(), hosts = f.hosts.len(), "registry hosts file loaded")
                        }
                        Err(e) => {
                            warn!(file = %path.display(), error = %e, "invalid registry hosts file")
                        }
                    }
                    let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                    cache.insert(path.clone(), (stamp, p.clone()));
                    p
                }
            };
            return match parsed.as_ref() {
                Ok(f) => Ok(Some((path, Arc::new(f.clone())))),
                Err(e) => Err(RegistryError::Client {
                    cause: format!(
                        "registry hosts file {} (image.hosts_dir): {e}",
                        path.display()
                    ),
                }),
            };
        }
        Ok(None)
    }

    fn endpoints_in_file(
        &self,
        registry: &str,
        (path, file): &(PathBuf, Arc<HostsFile>),
        timeout: Duration,
        retries: u32,
    ) -> Vec<EndpointSpec> {
        let base = path.parent().unwrap_or(Path::new("/"));
        let spec = |url: Url, h: &HostEntry, mirror: bool| {
            let caps = h.capabilities.as_deref();
            EndpointSpec {
                root: api_root(url, h.override_path),
                mirror,
                pull: !mirror || caps.is_none_or(|c| c.iter().any(|c| c == "pull")),
                resolve: !mirror || caps.is_none_or(|c| c.iter().any(|c| c == "resolve")),
                tls: h.tls(base),
                timeout,
                retries,
            }
        };
        let mut out: Vec<EndpointSpec> = file
            .hosts
            .iter()
            .map(|(url, h)| spec(url.clone(), h, true))
            .collect();
        let server = file
            .server
            .clone()
            .unwrap_or_else(|| self.default_server(registry, false));
        out.push(spec(server, &file.top, false));
        out
    }
}

/// Docker's certs.d files in `dir`: `*.crt` are CAs, `<name>.cert` with
/// `<name>.key` a client certificate. None when there are none.
fn docker_certs(dir: &Path) -> Option<HostsFile> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    let cas: Vec<String> = names
        .iter()
        .filter(|n| n.ends_with(".crt"))
        .cloned()
        .collect();
    let pairs: Vec<ClientItem> = names
        .iter()
        .filter_map(|n| n.strip_suffix(".cert"))
        .filter(|stem| names.iter().any(|k| *k == format!("{stem}.key")))
        .map(|stem| ClientItem::Pair(vec![format!("{stem}.cert"), format!("{stem}.key")]))
        .collect();
    if cas.is_empty() && pairs.is_empty() {
        return None;
    }
    Some(HostsFile {
        server: None,
        top: HostEntry {
            ca: Some(OneOrMany::Many(cas)),
            client: Some(Client::Many(pairs)),
            ..HostEntry::default()
        },
        hosts: Vec::new(),
    })
}

/// An http(s) URL with a host; docker.io means Docker Hub's API host.
fn parse_http_url(s: &str) -> Option<Url> {
    let mut u = Url::parse(s).ok()?;
    if !matches!(u.scheme(), "http" | "https") || !u.has_host() {
        return None;
    }
    if u.host_str() == Some("docker.io") {
        u.set_host(Some("registry-1.docker.io")).ok()?;
    }
    Some(u)
}

/// containerd's rule: the API root is `<url path>/v2` unless the path
/// already ends in `/v2` or `override_path` says the path is the root.
fn api_root(mut url: Url, override_path: bool) -> Url {
    let path = url.path().trim_end_matches('/').to_owned();
    if !override_path && !path.ends_with("/v2") {
        url.set_path(&format!("{path}/v2"));
    } else {
        url.set_path(&path);
    }
    url.set_query(None);
    url
}

fn tls_settings(cas: &[PathBuf], cert: &Path, key: &Path, skip_verify: bool) -> TlsSettings {
    TlsSettings {
        ca_files: cas.to_vec(),
        client: (!cert.as_os_str().is_empty()).then(|| (cert.to_owned(), key.to_owned())),
        skip_verify,
    }
}

/// A hosts.toml, in document order.
#[derive(Debug, Clone, Default)]
struct HostsFile {
    server: Option<Url>,
    /// The server's own TLS settings (top-level `ca`, `client`, `skip_verify`).
    top: HostEntry,
    hosts: Vec<(Url, HostEntry)>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct HostEntry {
    capabilities: Option<Vec<String>>,
    ca: Option<OneOrMany>,
    client: Option<Client>,
    #[serde(default)]
    skip_verify: bool,
    #[serde(default)]
    override_path: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Client {
    /// One PEM file holding the certificate and the key.
    Combined(String),
    Many(Vec<ClientItem>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum ClientItem {
    Combined(String),
    /// `[cert, key]`; an empty key means the cert file holds it.
    Pair(Vec<String>),
}

impl HostEntry {
    fn tls(&self, base: &Path) -> TlsSettings {
        let abs = |p: &str| base.join(p);
        let ca_files = match &self.ca {
            None => Vec::new(),
            Some(OneOrMany::One(p)) => vec![abs(p)],
            Some(OneOrMany::Many(ps)) => ps.iter().map(|p| abs(p)).collect(),
        };
        // rustls presents one certificate, so the first pair is the one used.
        let first = match &self.client {
            None => None,
            Some(Client::Combined(p)) => Some((p.clone(), String::new())),
            Some(Client::Many(items)) => items.first().map(|i| match i {
                ClientItem::Combined(p) => (p.clone(), String::new()),
                ClientItem::Pair(v) => (
                    v.first().cloned().unwrap_or_default(),
                    v.get(1).cloned().unwrap_or_default(),
                ),
            }),
        };
        let client = first.filter(|(c, _)| !c.is_empty()).map(|(c, k)| {
            let key = if k.is_empty() { c.clone() } else { k };
            (abs(&c), abs(&key))
        });
        TlsSettings {
            ca_files,
            client,
            skip_verify: self.skip_verify,
        }
    }
}

const KNOWN_KEYS: [&str; 5] = [
    "capabilities",
    "ca",
    "client",
    "skip_verify",
    "override_path",
];

impl HostsFile {
    fn parse(text: &str) -> Result<Self, String> {
        let table: toml::Table = text.parse().map_err(|e| format!("not valid TOML: {e}"))?;
        let entry = |t: &toml::Table, what: &str| -> Result<HostEntry, String> {
            let mut known = toml::Table::new();
            for (k, v) in t {
                if KNOWN_KEYS.contains(&k.as_str()) {
                    known.insert(k.clone(), v.clone());
                } else if !(what == "top level" && matches!(k.as_str(), "server" | "host")) {
                    warn!(key = %k, at = what, "unsupported hosts.toml key ignored");
                }
            }
            let e: HostEntry = known
                .try_into()
                .map_err(|e| format!("{what}: {}", e.message()))?;
            if let Some(c) = e
                .capabilities
                .iter()
                .flatten()
                .find(|c| !matches!(c.as_str(), "pull" | "resolve" | "push"))
            {
                return Err(format!("{what}: unknown capability {c:?}"));
            }
            Ok(e)
        };
        let top = entry(&table, "top level")?;
        let server = match table.get("server") {
            None => None,
            Some(toml::Value::String(s)) => Some(
                parse_http_url(s)
                    .ok_or(format!("server {s:?} is not an http:// or https:// URL"))?,
            ),
            Some(_) => return Err("server must be a string".into()),
        };
        let mut hosts = Vec::new();
        if let Some(h) = table.get("host") {
            let h = h
                .as_table()
                .ok_or("host must be a table of [host.\"<url>\"] entries")?;
            for (url, v) in h {
                let what = format!("[host.{url:?}]");
                let u =
                    parse_http_url(url).ok_or(format!("{what}: not an http:// or https:// URL"))?;
                let t = v.as_table().ok_or(format!("{what} must be a table"))?;
                hosts.push((position_of(text, url), u, entry(t, &what)?));
            }
        }
        // toml's tables are sorted by key; a hosts.toml lists mirrors in
        // the order they are tried, so put them back in document order.
        hosts.sort_by_key(|(pos, _, _)| *pos);
        let hosts = hosts.into_iter().map(|(_, u, e)| (u, e)).collect();
        Ok(Self { server, top, hosts })
    }
}

/// Where the `[host."<url>"]` header naming `key` starts in `text` (the
/// key as written, double- or single-quoted).
fn position_of(text: &str, key: &str) -> usize {
    [format!("\"{key}\""), format!("'{key}'")]
        .iter()
        .filter_map(|c| text.find(c.as_str()))
        .min()
        .unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path) -> ImageConfig {
        ImageConfig {
            hosts_dir: dir.to_owned(),
            ..ImageConfig::default()
        }
    }

    #[test]
    fn hosts_toml_keeps_document_order_and_resolves_paths() {
        let f = HostsFile::parse(
            r#"
server = "https://upstream.example:5000"
ca = "up-ca.pem"
[host."https://z-mirror.example"]
  capabilities = ["pull"]
  ca = ["/abs/ca.pem", "rel.pem"]
  client = [["c.pem", "k.pem"]]
[host."http://a-mirror.example:5001/sub"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
[host."https://odd.example/v2/upstream"]
  override_path = true
  header = { x = "y" }
"#,
        )
        .unwrap();
        let hosts: Vec<&str> = f.hosts.iter().map(|(u, _)| u.host_str().unwrap()).collect();
        assert_eq!(
            hosts,
            ["z-mirror.example", "a-mirror.example", "odd.example"]
        );
        let h = Hosts::new(&cfg(Path::new("/hd"))).unwrap();
        let eps = h.endpoints_in_file(
            "upstream.example:5000",
            &(PathBuf::from("/hd/r/hosts.toml"), Arc::new(f)),
            Duration::from_secs(3),
            0,
        );
        assert_eq!(eps.len(), 4);
        assert_eq!(eps[0].root.as_str(), "https://z-mirror.example/v2");
        assert!(eps[0].pull && !eps[0].resolve && eps[0].mirror);
        assert_eq!(
            eps[0].tls.ca_files,
            [PathBuf::from("/abs/ca.pem"), PathBuf::from("/hd/r/rel.pem")]
        );
        assert_eq!(
            eps[0].tls.client,
            Some((PathBuf::from("/hd/r/c.pem"), PathBuf::from("/hd/r/k.pem")))
        );
        assert_eq!(eps[1].root.as_str(), "http://a-mirror.example:5001/sub/v2");
        assert!(eps[1].tls.skip_verify);
        assert_eq!(eps[2].root.as_str(), "https://odd.example/v2/upstream");
        assert!(!eps[3].mirror && eps[3].pull && eps[3].resolve);
        assert_eq!(eps[3].root.as_str(), "https://upstream.example:5000/v2");
        assert_eq!(eps[3].tls.ca_files, [PathBuf::from("/hd/r/up-ca.pem")]);
    }

    #[test]
    fn docker_certs_d_files_are_used_without_hosts_toml() {
        let dir = tempfile::tempdir().unwrap();
        let reg = dir.path().join("r.example:5000");
        std::fs::create_dir(&reg).unwrap();
        for f in ["ca.crt", "client.cert", "client.key", "lonely.cert"] {
            std::fs::write(reg.join(f), "").unwrap();
        }
        let h = Hosts::new(&cfg(dir.path())).unwrap();
        let eps = h.endpoints("r.example:5000").unwrap();
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].root.as_str(), "https://r.example:5000/v2");
        assert_eq!(eps[0].tls.ca_files, [reg.join("ca.crt")]);
        assert_eq!(
            eps[0].tls.client,
            Some((reg.join("client.cert"), reg.join("client.key")))
        );
    }

    #[test]
    fn config_errors_name_the_registry_key() {
        for (text, key) in [
            (
                "[image]\npull_progress_timeout_secs = 0",
                "image.pull_progress_timeout_secs",
            ),
            ("[image]\nhosts_dir = \"rel\"", "image.hosts_dir"),
            (
                "[image]\ncredentials_file = \"rel.json\"",
                "image.credentials_file",
            ),
            (
                "[image.registries.\"r:1\"]\nserver = \"r:1\"",
                "image.registries.\"r:1\".server",
            ),
            (
                "[image.registries.r]\nclient_cert = \"/c.pem\"",
                "image.registries.\"r\".client_cert",
            ),
            (
                "[[image.registries.r.mirrors]]\nurl = \"https://m\"\ncapabilities = [\"push\"]",
                "image.registries.\"r\".mirrors[0].capabilities",
            ),
            (
                "[[image.registries.r.mirrors]]\nurl = \"m.example\"",
                "image.registries.\"r\".mirrors[0].url",
            ),
        ] {
            let e = crate::config::Config::parse(text, Path::new("c.toml")).unwrap_err();
            assert!(e.to_string().contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn bad_hosts_toml_names_the_problem() {
        assert!(
            HostsFile::parse("server = 3")
                .unwrap_err()
                .contains("server")
        );
        assert!(
            HostsFile::parse("[host.\"ftp://x\"]")
                .unwrap_err()
                .contains("ftp://x")
        );
        let e = HostsFile::parse("[host.\"https://m\"]\ncapabilities = [\"fly\"]").unwrap_err();
        assert!(e.contains("fly"), "{e}");
    }

    #[test]
    fn config_entries_mirrors_then_upstream() {
        let text = r#"
[image]
mirrors = { "r.example" = ["http://legacy.example"] }
[image.registries."r.example"]
server = "http://10.0.0.1:5000"
retries = 2
[[image.registries."r.example".mirrors]]
url = "https://m.example"
capabilities = ["pull"]
ca_files = ["/ca.pem"]
"#;
        let c = crate::config::Config::parse(text, Path::new("t")).unwrap();
        let h = Hosts::new(&ImageConfig {
            hosts_dir: PathBuf::new(),
            ..c.image
        })
        .unwrap();
        let eps = h.endpoints("r.example").unwrap();
        let roots: Vec<&str> = eps.iter().map(|e| e.root.as_str()).collect();
        assert_eq!(
            roots,
            [
                "https://m.example/v2",
                "http://legacy.example/v2",
                "http://10.0.0.1:5000/v2"
            ]
        );
        assert!(!eps[0].resolve && eps[1].resolve);
        assert_eq!(eps[2].retries, 2);
        let hub = h.endpoints("docker.io").unwrap();
        assert_eq!(hub[0].root.as_str(), "https://registry-1.docker.io/v2");
        let local = h.endpoints("127.0.0.1:5000").unwrap();
        assert_eq!(local[0].root.as_str(), "http://127.0.0.1:5000/v2");
    }

    #[test]
    fn hosts_dir_is_reread_when_it_changes_and_default_applies() {
        let dir = tempfile::tempdir().unwrap();
        let h = Hosts::new(&cfg(dir.path())).unwrap();
        assert_eq!(h.endpoints("r.example").unwrap().len(), 1);
        std::fs::create_dir(dir.path().join("_default")).unwrap();
        std::fs::write(
            dir.path().join("_default/hosts.toml"),
            "[host.\"http://one.example\"]\n",
        )
        .unwrap();
        assert_eq!(
            h.endpoints("r.example").unwrap()[0].root.host_str(),
            Some("one.example")
        );
        std::fs::create_dir(dir.path().join("r.example")).unwrap();
        let file = dir.path().join("r.example/hosts.toml");
        std::fs::write(&file, "[host.\"http://two.example\"]\n").unwrap();
        assert_eq!(
            h.endpoints("r.example").unwrap()[0].root.host_str(),
            Some("two.example")
        );
        std::fs::write(&file, "[host.\"http://three.example\"]\n").unwrap();
        assert_eq!(
            h.endpoints("r.example").unwrap()[0].root.host_str(),
            Some("three.example")
        );
        std::fs::write(&file, "server = 1\n").unwrap();
        let e = h.endpoints("r.example").unwrap_err().to_string();
        assert!(e.contains("r.example/hosts.toml"), "{e}");
    }
}
