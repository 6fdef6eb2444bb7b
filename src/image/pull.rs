//! PullImage: resolve the manifest (choosing the host platform from an
//! index), fetch and verify the config, then download, verify and unpack
//! every missing layer concurrently while it streams.

use std::sync::{Arc, Mutex};

use futures_util::TryStreamExt;
use tokio::sync::Semaphore;
use tracing::Instrument as _;

use super::catalog::{ImageRecord, LayerRecord};
use super::error::ImageError;
use super::layers::LayerExpect;
use super::manager::{ImageManager, Merged, now_ns};
use super::manifest::{self, Descriptor, ImageConfig, Platform, Served};
use super::reference::Reference;
use super::registry::{Credentials, RegistryError};
use crate::id::{ChainId, Digest, ImageId, chain_id};
use crate::store::{Table, Write};

impl ImageManager {
    /// Pulls `image` and returns its id. Layers already present are reused;
    /// layers and blobs being fetched by another pull are waited for, not
    /// fetched twice. Runs in a `pull` span; each download in a `blob` span
    /// below it, so an exported trace of PullImage shows where time went.
    #[tracing::instrument(name = "pull", skip_all, fields(image = image))]
    pub async fn pull(&self, image: &str, creds: &Credentials) -> Result<ImageId, ImageError> {
        let r = Reference::parse_with_default_registry(image, &self.inner.cfg.default_registry)
            .map_err(Box::new)?;
        let name = r.to_string();
        let reg_err = |source: super::registry::RegistryError| ImageError::Registry {
            image: name.clone(),
            source: Box::new(source),
        };
        let man_err = |source: manifest::ManifestError| ImageError::Manifest {
            image: name.clone(),
            source: Box::new(source),
        };

        let top = self
            .inner
            .registry
            .fetch_manifest(&r, creds)
            .await
            .map_err(reg_err)?;
        let (manifest, manifest_digest, manifest_bytes, index) =
            match manifest::parse_served(&top.bytes, &top.media_type, &top.digest)
                .map_err(man_err)?
            {
                Served::Manifest(m) => (m, top.digest.clone(), top.bytes.clone(), None),
                Served::Index(idx) => {
                    let chosen = manifest::select_platform(&idx, &top.digest, &Platform::host())
                        .map_err(man_err)?
                        .digest
                        .clone();
                    let m = self
                        .inner
                        .registry
                        .fetch_manifest_digest(&r, &chosen, creds)
                        .await
                        .map_err(reg_err)?;
                    match manifest::parse_served(&m.bytes, &m.media_type, &m.digest)
                        .map_err(man_err)?
                    {
                        Served::Manifest(x) => (
                            x,
                            m.digest,
                            m.bytes,
                            Some((top.digest.clone(), top.bytes.clone())),
                        ),
                        Served::Index(_) => {
                            return Err(man_err(manifest::ManifestError::MediaType(
                                "nested image index".into(),
                            )));
                        }
                    }
                }
            };

        let config_bytes = self
            .fetch_config(&r, &name, &manifest.config, creds)
            .await?;
        let config_id = manifest.config.digest.clone();
        let config = ImageConfig::parse(&config_bytes, &config_id, manifest.layers.len())
            .map_err(man_err)?;

        let mut chains: Vec<ChainId> = Vec::with_capacity(manifest.layers.len());
        for diff in &config.rootfs.diff_ids {
            let c = chain_id(chains.last(), diff);
            chains.push(c);
        }
        self.catalog().pin(&chains);
        let result = self
            .fetch_layers(&r, &name, &manifest.layers, &config, &chains, creds)
            .await;
        let committed = match result {
            Ok(()) => {
                self.commit_image(
                    &r,
                    &config_id,
                    &config,
                    &manifest.layers,
                    &manifest.config,
                    &manifest_digest,
                    &manifest_bytes,
                    index,
                    &chains,
                )
                .await
            }
            Err(e) => Err(e),
        };
        self.catalog().unpin(&chains);
        committed?;
        tracing::info!(image = %name, id = %config_id, "image pulled");
        Ok(config_id)
    }

    async fn fetch_config(
        &self,
        r: &Reference,
        name: &str,
        desc: &Descriptor,
        creds: &Credentials,
    ) -> Result<Vec<u8>, ImageError> {
        if desc.size > manifest::MAX_CONFIG_BYTES {
            return Err(ImageError::TooLarge {
                image: name.to_owned(),
                what: "image config",
                digest: desc.digest.clone(),
                size: desc.size,
                limit: manifest::MAX_CONFIG_BYTES,
            });
        }
        if let Ok(b) = self.inner.content.get(&desc.digest) {
            return Ok(b);
        }
        let me = self.clone();
        let (r2, name2, desc2, creds2) = (r.clone(), name.to_owned(), desc.clone(), creds.clone());
        let span = tracing::info_span!("blob", digest = %desc.digest, kind = "config");
        let work = async move {
            let resp = me
                .inner
                .registry
                .fetch_blob(&r2, &desc2.digest, &creds2)
                .await
                .map_err(|source| ImageError::Registry {
                    image: name2.clone(),
                    source: Box::new(source),
                })?;
            let mut buf = Vec::with_capacity(usize::try_from(desc2.size).unwrap_or(0));
            let mut stream = resp.stream;
            while let Some(chunk) =
                stream
                    .try_next()
                    .await
                    .map_err(|source| ImageError::Registry {
                        image: name2.clone(),
                        source: Box::new(source),
                    })?
            {
                if buf.len() as u64 + chunk.len() as u64 > desc2.size {
                    return Err(ImageError::TooLarge {
                        image: name2.clone(),
                        what: "image config",
                        digest: desc2.digest.clone(),
                        size: buf.len() as u64 + chunk.len() as u64,
                        limit: desc2.size,
                    });
                }
                buf.extend_from_slice(&chunk);
            }
            let actual = Digest::of(&buf);
            if actual != desc2.digest {
                return Err(ImageError::DigestMismatch {
                    image: name2,
                    what: "image config",
                    digest: desc2.digest,
                    actual,
                });
            }
            let content = me.inner.content.clone();
            let d = desc2.digest.clone();
            tokio::task::spawn_blocking(move || content.put(&d, &buf))
                .await
                .map_err(|e| ImageError::Internal(e.to_string()))?
                .map_err(ImageError::io(format!("storing config {}", desc2.digest)))
        };
        self.merged(format!("blob:{}", desc.digest), work.instrument(span))
            .await?;
        self.inner
            .content
            .get(&desc.digest)
            .map_err(ImageError::io(format!("reading config {}", desc.digest)))
    }

    async fn fetch_layers(
        &self,
        r: &Reference,
        name: &str,
        layers: &[Descriptor],
        config: &ImageConfig,
        chains: &[ChainId],
        creds: &Credentials,
    ) -> Result<(), ImageError> {
        let sem = Arc::new(Semaphore::new(self.inner.cfg.max_concurrent_downloads));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, desc) in layers.iter().enumerate() {
            let want = LayerExpect {
                digest: desc.digest.clone(),
                size: desc.size,
                diff_id: config.rootfs.diff_ids[i].clone(),
                chain_id: chains[i].clone(),
            };
            let parent = i.checked_sub(1).map(|p| chains[p].clone());
            if self.has_layer(&want.chain_id) {
                continue;
            }
            let me = self.clone();
            let (r, name, creds, sem) = (r.clone(), name.to_owned(), creds.clone(), sem.clone());
            tasks.spawn(
                async move {
                    let _permit = sem.acquire_owned().await;
                    // Made here, not inside fetch_layer: the download runs in
                    // a task of its own and would lose its parent span.
                    let span = tracing::info_span!("blob", digest = %want.digest, kind = "layer");
                    let key = format!("layer:{}", want.chain_id);
                    let work = me.clone().fetch_layer(r, name, want, parent, creds);
                    me.merged(key, work.instrument(span)).await
                }
                .in_current_span(),
            );
        }
        let mut first_err = None;
        while let Some(res) = tasks.join_next().await {
            let res = res
                .map_err(|e| ImageError::Internal(format!("layer task: {e}")))
                .and_then(|x| x);
            if let Err(e) = res
                && first_err.is_none()
            {
                // Stop the other downloads: the pull has failed.
                tasks.abort_all();
                first_err = Some(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn has_layer(&self, c: &ChainId) -> bool {
        self.catalog().layers.contains_key(c) && self.inner.layers.path(c).is_dir()
    }

    async fn fetch_layer(
        self,
        r: Reference,
        name: String,
        want: LayerExpect,
        parent: Option<ChainId>,
        creds: Credentials,
    ) -> Result<(), ImageError> {
        if self.has_layer(&want.chain_id) {
            return Ok(());
        }
        // A dir without a record is a leftover of a crash between rename and
        // commit; its content was verified, but redo it rather than trust it.
        let _ = self.inner.layers.remove(&want.chain_id);
        let resp = self
            .inner
            .registry
            .fetch_blob(&r, &want.digest, &creds)
            .await
            .map_err(|source| ImageError::Registry {
                image: name.clone(),
                source: Box::new(source),
            })?;
        // A transfer that failed (stalled, cut) is the cause of whatever the
        // unpacker then reports (often a short blob), so it is kept aside
        // and reported instead.
        let transfer_error: Arc<Mutex<Option<RegistryError>>> = Arc::default();
        let seen = transfer_error.clone();
        let reader = tokio_util::io::StreamReader::new(resp.stream.map_err(move |e| {
            let io = std::io::Error::other(e.to_string());
            *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            io
        }));
        let bridge = tokio_util::io::SyncIoBridge::new(reader);
        let layers = self.inner.layers.clone();
        let want2 = want.clone();
        let stats = tokio::task::spawn_blocking(move || layers.unpack_verified(bridge, &want2))
            .await
            .map_err(|e| ImageError::Internal(format!("unpack task: {e}")))?
            .map_err(|source| {
                let cause = transfer_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                match cause {
                    Some(e) => ImageError::Registry {
                        image: name,
                        source: Box::new(e),
                    },
                    None => ImageError::Layer {
                        image: name,
                        source: Box::new(source),
                    },
                }
            })?;
        let rec = LayerRecord {
            chain_id: want.chain_id.clone(),
            diff_id: want.diff_id.clone(),
            parent,
            bytes: stats.bytes,
            inodes: stats.inodes,
        };
        let value = serde_json::to_vec(&rec).map_err(|e| ImageError::Internal(e.to_string()))?;
        let store = self.inner.store.clone();
        let key = want.chain_id.as_str().to_owned();
        tokio::task::spawn_blocking(move || store.apply(&[Write::put(Table::Layers, key, value)]))
            .await
            .map_err(|e| ImageError::Internal(e.to_string()))??;
        self.catalog().layers.insert(want.chain_id.clone(), rec);
        tracing::debug!(layer = %want.digest, chain_id = %want.chain_id, bytes = stats.bytes, "layer unpacked");
        Ok(())
    }

    /// Runs `work` once per `key` among concurrent callers; the others wait
    /// for its outcome. The work runs in its own task so a caller that goes
    /// away (kubelet cancelled its RPC) does not abort the others' download.
    async fn merged<F>(&self, key: String, work: F) -> Result<(), ImageError>
    where
        F: std::future::Future<Output = Result<(), ImageError>> + Send + 'static,
    {
        let cell: Merged = {
            let mut m = self
                .inner
                .inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            m.entry(key.clone()).or_default().clone()
        };
        let handle_cell = cell.clone();
        let me = self.clone();
        let key2 = key.clone();
        let out = handle_cell
            .get_or_init(|| async move {
                let res = match tokio::spawn(work).await {
                    Ok(r) => r,
                    Err(e) => Err(ImageError::Internal(format!("download task: {e}"))),
                };
                let mut m = me.inner.inflight.lock().unwrap_or_else(|p| p.into_inner());
                m.remove(&key2);
                res.map_err(Arc::new)
            })
            .await;
        drop(cell);
        out.clone().map_err(ImageError::Shared)
    }

    #[allow(clippy::too_many_arguments)]
    async fn commit_image(
        &self,
        r: &Reference,
        config_id: &ImageId,
        config: &ImageConfig,
        layers: &[Descriptor],
        config_desc: &Descriptor,
        manifest_digest: &Digest,
        manifest_bytes: &[u8],
        index: Option<(Digest, bytes::Bytes)>,
        chains: &[ChainId],
    ) -> Result<(), ImageError> {
        let _g = self.inner.commit.lock().await;
        let content = self.inner.content.clone();
        let (md, mb) = (manifest_digest.clone(), manifest_bytes.to_vec());
        let idx = index.clone();
        tokio::task::spawn_blocking(move || {
            content.put(&md, &mb)?;
            if let Some((d, b)) = idx {
                content.put(&d, &b)?;
            }
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(|e| ImageError::Internal(e.to_string()))?
        .map_err(ImageError::io("storing manifest"))?;

        let repo_digest = r.with_digest(index.as_ref().map_or(manifest_digest, |(d, _)| d));
        let size = manifest_bytes.len() as u64
            + config_desc.size
            + layers.iter().map(|l| l.size).sum::<u64>();
        let rec = ImageRecord {
            id: config_id.clone(),
            repo_tags: r.tagged().into_iter().collect(),
            repo_digests: vec![repo_digest],
            size,
            manifest: manifest_digest.clone(),
            index: index.map(|(d, _)| d),
            chain_ids: chains.to_vec(),
            user: config.user().to_owned(),
            created_ns: now_ns(),
        };
        // The catalogue changes only after the store commits (the commit
        // lock keeps the plan valid until then).
        let changed = self.catalog().plan_add(rec);
        let mut writes = Vec::with_capacity(changed.len());
        for c in &changed {
            let v = serde_json::to_vec(c).map_err(|e| ImageError::Internal(e.to_string()))?;
            writes.push(Write::put(Table::Images, c.id.as_str(), v));
        }
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || store.apply(&writes))
            .await
            .map_err(|e| ImageError::Internal(e.to_string()))??;
        let mut cat = self.catalog();
        for c in changed {
            cat.images.insert(c.id.clone(), c);
        }
        Ok(())
    }
}
