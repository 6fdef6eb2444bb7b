//! Manifests, indexes and image configs as the registry serves them
//! (OCI and Docker schema2), and platform selection.
//!
//! These are our own minimal serde types rather than a full spec crate: we
//! read only what a runtime acts on, tolerate unknown fields, and keep the raw
//! bytes (the digest covers them) for verbose status output.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::id::Digest;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Largest image config accepted: configs are small JSON documents; a huge
/// one is an attack on the daemon's memory.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{what} is not valid JSON of the expected shape: {source}")]
    Json {
        what: String,
        source: serde_json::Error,
    },
    #[error("manifest media type {0:?} is not supported (Docker schema2 and OCI only)")]
    MediaType(String),
    #[error("image index {digest} has no manifest for platform {platform}")]
    NoPlatform { digest: Digest, platform: String },
    #[error(
        "image config {config} lists {diff_ids} layer diff_ids but the manifest has {layers} layers"
    )]
    LayerCount {
        config: Digest,
        diff_ids: usize,
        layers: usize,
    },
    #[error("image manifest {0} has no layers")]
    NoLayers(Digest),
    #[error("image config {config}: {message}")]
    Config { config: Digest, message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this daemon runs on, in GOARCH terms.
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Self {
            architecture: architecture.into(),
            os: "linux".into(),
            variant: variant.map(str::to_owned),
        }
    }

    fn matches(&self, want: &Platform) -> bool {
        if self.os != want.os || self.architecture != want.architecture {
            return false;
        }
        // arm64 images rarely say "v8"; an absent variant matches the host's
        // default variant, as containerd's platform matcher does.
        match (&self.variant, &want.variant) {
            (None, _) | (_, None) => true,
            (Some(a), Some(b)) => a == b,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// A served manifest, classified.
#[derive(Debug)]
pub enum Served {
    Index(Index),
    Manifest(Manifest),
}

#[derive(Debug, Deserialize)]
struct Probe {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<u32>,
}

/// Parses a manifest or index. The Content-Type header and the body's own
/// `mediaType` may disagree or be missing (OCI made it optional), so the body
/// shape decides.
pub fn parse_served(
    bytes: &[u8],
    content_type: &str,
    digest: &Digest,
) -> Result<Served, ManifestError> {
    let json = |source| ManifestError::Json {
        what: format!("manifest {digest}"),
        source,
    };
    let probe: Probe = serde_json::from_slice(bytes).map_err(json)?;
    let mt = probe
        .media_type
        .clone()
        .unwrap_or_else(|| content_type.to_owned());
    if probe.schema_version == Some(1) || mt.contains("manifest.v1+") && mt.contains("docker") {
        return Err(ManifestError::MediaType(mt));
    }
    if probe.manifests.is_some() || mt == OCI_INDEX || mt == DOCKER_LIST {
        return Ok(Served::Index(serde_json::from_slice(bytes).map_err(json)?));
    }
    if !(mt == OCI_MANIFEST || mt == DOCKER_MANIFEST || mt.is_empty() || mt.contains("json")) {
        return Err(ManifestError::MediaType(mt));
    }
    let m: Manifest = serde_json::from_slice(bytes).map_err(json)?;
    if m.layers.is_empty() {
        return Err(ManifestError::NoLayers(digest.clone()));
    }
    Ok(Served::Manifest(m))
}

/// Chooses the manifest for `want` from an index: exact variant first, then
/// an entry without variant.
pub fn select_platform<'a>(
    index: &'a Index,
    index_digest: &Digest,
    want: &Platform,
) -> Result<&'a Descriptor, ManifestError> {
    let candidates = || {
        index
            .manifests
            .iter()
            .filter(|d| d.platform.as_ref().is_some_and(|p| p.matches(want)))
    };
    candidates()
        .find(|d| d.platform.as_ref().and_then(|p| p.variant.as_ref()) == want.variant.as_ref())
        .or_else(|| candidates().next())
        .ok_or_else(|| ManifestError::NoPlatform {
            digest: index_digest.clone(),
            platform: want.to_string(),
        })
}

/// The parts of an image config the runtime acts on.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

/// The image's default process settings (Docker's capitalised keys).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RunConfig {
    #[serde(rename = "User", default)]
    pub user: Option<String>,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    #[serde(rename = "StopSignal", default)]
    pub stop_signal: Option<String>,
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
}

impl ImageConfig {
    pub fn parse(bytes: &[u8], digest: &Digest, layers: usize) -> Result<Self, ManifestError> {
        let cfg: ImageConfig =
            serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
                what: format!("image config {digest}"),
                source,
            })?;
        if cfg.rootfs.diff_ids.len() != layers {
            return Err(ManifestError::LayerCount {
                config: digest.clone(),
                diff_ids: cfg.rootfs.diff_ids.len(),
                layers,
            });
        }
        if !cfg.os.is_empty() && cfg.os != "linux" {
            return Err(ManifestError::Config {
                config: digest.clone(),
                message: format!("image is for os {:?}; this node runs linux", cfg.os),
            });
        }
        Ok(cfg)
    }

    pub fn user(&self) -> &str {
        self.config
            .as_ref()
            .and_then(|c| c.user.as_deref())
            .unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn index_selects_host_platform_with_variant() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"os":"linux","architecture":"arm","variant":"v6"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"os":"linux","architecture":"arm","variant":"v7"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"os":"windows","architecture":"amd64"}}}}]}}"#,
            d('1'),
            d('2'),
            d('3'),
            d('4')
        );
        let dig = Digest::of(body.as_bytes());
        let Served::Index(idx) = parse_served(body.as_bytes(), "", &dig).unwrap() else {
            panic!("not an index")
        };
        let arm7 = Platform {
            architecture: "arm".into(),
            os: "linux".into(),
            variant: Some("v7".into()),
        };
        assert_eq!(
            select_platform(&idx, &dig, &arm7).unwrap().digest.as_str(),
            d('2')
        );
        let amd = Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
        };
        assert_eq!(
            select_platform(&idx, &dig, &amd).unwrap().digest.as_str(),
            d('3')
        );
        let s390 = Platform {
            architecture: "s390x".into(),
            os: "linux".into(),
            variant: None,
        };
        let err = select_platform(&idx, &dig, &s390).unwrap_err().to_string();
        assert!(err.contains("linux/s390x"), "{err}");
    }

    #[test]
    fn manifest_without_media_type_is_accepted_and_schema1_refused() {
        let body = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":2}},"layers":[{{"digest":"{}","size":3}}]}}"#,
            d('a'),
            d('b')
        );
        let dig = Digest::of(body.as_bytes());
        assert!(matches!(
            parse_served(body.as_bytes(), "", &dig).unwrap(),
            Served::Manifest(_)
        ));
        let v1 = br#"{"schemaVersion":1,"name":"x"}"#;
        assert!(matches!(
            parse_served(v1, "", &dig),
            Err(ManifestError::MediaType(_))
        ));
        assert!(parse_served(b"not json", "", &dig).is_err());
    }

    #[test]
    fn config_layer_count_must_match() {
        let body = format!(
            r#"{{"os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            d('c')
        );
        let dig = Digest::of(body.as_bytes());
        assert!(ImageConfig::parse(body.as_bytes(), &dig, 1).is_ok());
        assert!(ImageConfig::parse(body.as_bytes(), &dig, 2).is_err());
    }
}
