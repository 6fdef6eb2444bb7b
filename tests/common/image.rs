//! Builds image configs, manifests and multi-platform indexes (OCI and Docker
//! schema2) as the bytes a registry stores, with their digests, so tests can
//! assert ids and digests the daemon reports. Knows nothing about registries.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::layer::{Layer, sha256_digest};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Which manifest family an image or index is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Oci,
    Docker,
}

/// os / architecture / variant of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Self {
            os: os.into(),
            architecture: architecture.into(),
            variant: variant.map(Into::into),
        }
    }

    /// The platform of the machine running the tests, in OCI spelling.
    pub fn host() -> Self {
        match std::env::consts::ARCH {
            "x86_64" => Self::new("linux", "amd64", None),
            "aarch64" => Self::new("linux", "arm64", Some("v8")),
            "arm" => Self::new("linux", "arm", Some("v7")),
            "x86" => Self::new("linux", "386", None),
            other => Self::new("linux", other, None),
        }
    }

    fn to_json(&self) -> Value {
        let mut p = json!({ "os": self.os, "architecture": self.architecture });
        if let Some(v) = &self.variant {
            p["variant"] = json!(v);
        }
        p
    }
}

/// Assembles an image: layers (bottom first), config fields, platform, format.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    layers: Vec<Layer>,
    format: Format,
    platform: Platform,
    user: Option<String>,
    env: Vec<String>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    working_dir: Option<String>,
    stop_signal: Option<String>,
    labels: BTreeMap<String, String>,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        Self {
            layers: Vec::new(),
            format: Format::Oci,
            platform: Platform::host(),
            user: None,
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            entrypoint: None,
            cmd: None,
            working_dir: None,
            stop_signal: None,
            labels: BTreeMap::new(),
        }
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl ImageBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn layer(mut self, layer: Layer) -> Self {
        self.layers.push(layer);
        self
    }

    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    pub fn platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self
    }

    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.into());
        self
    }

    pub fn env(mut self, kv: &str) -> Self {
        self.env.push(kv.into());
        self
    }

    pub fn entrypoint(mut self, args: &[&str]) -> Self {
        self.entrypoint = Some(strings(args));
        self
    }

    pub fn cmd(mut self, args: &[&str]) -> Self {
        self.cmd = Some(strings(args));
        self
    }

    pub fn working_dir(mut self, dir: &str) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    pub fn stop_signal(mut self, signal: &str) -> Self {
        self.stop_signal = Some(signal.into());
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    fn config_json(&self) -> Value {
        let mut config = serde_json::Map::new();
        if let Some(u) = &self.user {
            config.insert("User".into(), json!(u));
        }
        config.insert("Env".into(), json!(self.env));
        if let Some(e) = &self.entrypoint {
            config.insert("Entrypoint".into(), json!(e));
        }
        if let Some(c) = &self.cmd {
            config.insert("Cmd".into(), json!(c));
        }
        if let Some(w) = &self.working_dir {
            config.insert("WorkingDir".into(), json!(w));
        }
        if let Some(s) = &self.stop_signal {
            config.insert("StopSignal".into(), json!(s));
        }
        if !self.labels.is_empty() {
            config.insert("Labels".into(), json!(self.labels));
        }
        let diff_ids: Vec<&str> = self.layers.iter().map(|l| l.diff_id.as_str()).collect();
        let history: Vec<Value> = self
            .layers
            .iter()
            .enumerate()
            .map(|(i, _)| json!({ "created": "2024-01-01T00:00:00Z", "created_by": format!("crius test layer {i}") }))
            .collect();
        let mut v = json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": self.platform.architecture,
            "os": self.platform.os,
            "config": Value::Object(config),
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "history": history,
        });
        if let Some(variant) = &self.platform.variant {
            v["variant"] = json!(variant);
        }
        v
    }

    pub fn build(self) -> Image {
        assert!(!self.layers.is_empty(), "an image needs at least one layer");
        let config = serde_json::to_vec(&self.config_json()).expect("config to JSON");
        let config_digest = sha256_digest(&config);
        let (manifest_type, config_type) = match self.format {
            Format::Oci => (OCI_MANIFEST, OCI_CONFIG),
            Format::Docker => (DOCKER_MANIFEST, DOCKER_CONFIG),
        };
        let layers: Vec<Value> = self
            .layers
            .iter()
            .map(|l| {
                let media_type = match self.format {
                    Format::Oci => l.oci_media_type(),
                    Format::Docker => l.docker_media_type(),
                };
                json!({ "mediaType": media_type, "digest": l.digest, "size": l.size() })
            })
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": { "mediaType": config_type, "digest": config_digest, "size": config.len() },
            "layers": layers,
        });
        let manifest = serde_json::to_vec_pretty(&manifest).expect("manifest to JSON");
        Image {
            manifest_digest: sha256_digest(&manifest),
            manifest_media_type: manifest_type,
            manifest,
            config_digest,
            config,
            layers: self.layers,
            platform: self.platform,
            format: self.format,
        }
    }
}

/// A single-platform image as stored in a registry.
#[derive(Debug, Clone)]
pub struct Image {
    pub layers: Vec<Layer>,
    pub config: Vec<u8>,
    /// `sha256:<hex>` of `config`; the image id is this digest.
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub manifest_media_type: &'static str,
    pub platform: Platform,
    pub format: Format,
}

impl Image {
    /// The CRI image id and `PullImageResponse.image_ref`: `sha256:<config digest hex>`.
    pub fn id(&self) -> String {
        self.config_digest.clone()
    }

    /// Hex part of the image id.
    pub fn id_hex(&self) -> &str {
        self.config_digest.trim_start_matches("sha256:")
    }

    pub fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    /// Chain ids bottom first, as `sha256:<hex>` (OCI image spec: the first is
    /// the first diff_id, then sha256("<chain(n-1)> <diff_id(n)>")).
    pub fn chain_ids(&self) -> Vec<String> {
        chain_ids(&self.diff_ids())
    }

    /// Hex parts of [`Image::chain_ids`]: the daemon's layer directory names.
    pub fn chain_id_hexes(&self) -> Vec<String> {
        self.chain_ids()
            .iter()
            .map(|c| c.trim_start_matches("sha256:").to_owned())
            .collect()
    }

    /// The config as JSON.
    pub fn config_value(&self) -> Value {
        serde_json::from_slice(&self.config).expect("config is JSON")
    }

    /// Every blob of the image: config first, then layers.
    pub fn blob_digests(&self) -> Vec<String> {
        let mut v = vec![self.config_digest.clone()];
        v.extend(self.layers.iter().map(|l| l.digest.clone()));
        v
    }
}

/// Chain ids for `diff_ids` (bottom first).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{prev} {d}").as_bytes()))
            ),
        };
        out.push(next);
    }
    out
}

/// A multi-platform index (OCI image index or Docker manifest list).
#[derive(Debug, Clone)]
pub struct Index {
    pub images: Vec<Image>,
    pub format: Format,
    pub manifest: Vec<u8>,
    pub digest: String,
    pub media_type: &'static str,
}

impl Index {
    /// Each image's manifest is listed with that image's platform, in order.
    pub fn new(format: Format, images: Vec<Image>) -> Self {
        let (media_type, entry_type) = match format {
            Format::Oci => (OCI_INDEX, OCI_MANIFEST),
            Format::Docker => (DOCKER_LIST, DOCKER_MANIFEST),
        };
        let manifests: Vec<Value> = images
            .iter()
            .map(|img| {
                assert_eq!(
                    img.manifest_media_type, entry_type,
                    "index entries must use the index's manifest format"
                );
                json!({
                    "mediaType": img.manifest_media_type,
                    "digest": img.manifest_digest,
                    "size": img.manifest.len(),
                    "platform": img.platform.to_json(),
                })
            })
            .collect();
        let manifest =
            json!({ "schemaVersion": 2, "mediaType": media_type, "manifests": manifests });
        let manifest = serde_json::to_vec_pretty(&manifest).expect("index to JSON");
        Self {
            digest: sha256_digest(&manifest),
            manifest,
            images,
            format,
            media_type,
        }
    }

    /// The entry a runtime on this machine must choose.
    pub fn host_image(&self) -> &Image {
        let host = Platform::host();
        self.images
            .iter()
            .find(|i| i.platform.os == host.os && i.platform.architecture == host.architecture)
            .unwrap_or_else(|| panic!("index has no entry for the host platform {host:?}"))
    }
}
