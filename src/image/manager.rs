//! The image service: the catalogue, its persistence, start-up recovery and
//! garbage collection. Pulling lives in `pull.rs`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::OnceCell;

use super::catalog::{Catalog, ImageRecord, LayerRecord, Lookup};
use super::content::ContentStore;
use super::error::ImageError;
use super::layers::LayerStore;
use super::registry::RegistryClient;
use crate::config::ImageConfig;
use crate::id::{ChainId, Digest, ImageId};
use crate::store::{Store, Table, Write};

/// Result of a merged download: every waiter gets the same outcome.
pub(super) type Merged = Arc<OnceCell<Result<(), Arc<ImageError>>>>;

/// What `ImageFsInfo` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsUsage {
    pub mountpoint: PathBuf,
    pub bytes: u64,
    pub inodes: u64,
    pub timestamp_ns: i64,
}

/// An image as the API shows it.
#[derive(Debug, Clone)]
pub struct ImageView {
    pub record: ImageRecord,
    /// Config JSON, only when verbose output was asked for.
    pub config_json: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ImageManager {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) cfg: ImageConfig,
    pub(super) registry: RegistryClient,
    pub(super) store: Arc<Store>,
    pub(super) content: ContentStore,
    pub(super) layers: LayerStore,
    pub(super) catalog: Mutex<Catalog>,
    /// Downloads in progress, keyed by what they produce, so concurrent pulls
    /// of the same blob download it once.
    pub(super) inflight: Mutex<HashMap<String, Merged>>,
    /// Serialises catalogue commits and GC.
    pub(super) commit: tokio::sync::Mutex<()>,
    containers_dir: PathBuf,
}

pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl ImageManager {
    /// Opens the image service over `state_dir`: loads the catalogue, removes
    /// what a crash left half-done (temp files, layers and blobs nothing
    /// refers to). Blocking; call before serving.
    ///
    /// `in_use` are the layers of existing containers: start-up GC keeps
    /// them even when no image names them any more.
    pub fn open(
        cfg: &ImageConfig,
        store: Arc<Store>,
        state_dir: &Path,
        in_use: &[ChainId],
    ) -> Result<Self, ImageError> {
        let tmp = state_dir.join("tmp");
        // Everything in tmp/ belongs to a pull that died with the daemon.
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)
                .map_err(ImageError::io(format!("cleaning {}", tmp.display())))?;
        }
        let content = ContentStore::new(state_dir.join("blobs"), tmp.clone())
            .map_err(ImageError::io("creating the blob store"))?;
        let layers = LayerStore::new(state_dir.join("layers"), tmp)
            .map_err(ImageError::io("creating the layer store"))?;
        let containers_dir = state_dir.join("containers");
        std::fs::create_dir_all(&containers_dir)
            .map_err(ImageError::io("creating the containers dir"))?;
        let registry = RegistryClient::new(cfg).map_err(|source| ImageError::Registry {
            image: "(client set-up)".into(),
            source: Box::new(source),
        })?;
        let mut catalog = Catalog::default();
        for (key, value) in store.scan(Table::Images)? {
            match serde_json::from_slice::<ImageRecord>(&value) {
                Ok(r) => {
                    catalog.images.insert(r.id.clone(), r);
                }
                Err(e) => tracing::error!(key, error = %e, "unreadable image record skipped"),
            }
        }
        for (key, value) in store.scan(Table::Layers)? {
            match serde_json::from_slice::<LayerRecord>(&value) {
                Ok(r) => {
                    catalog.layers.insert(r.chain_id.clone(), r);
                }
                Err(e) => tracing::error!(key, error = %e, "unreadable layer record skipped"),
            }
        }
        let mgr = Self {
            inner: Arc::new(Inner {
                cfg: cfg.clone(),
                registry,
                store,
                content,
                layers,
                catalog: Mutex::new(catalog),
                inflight: Mutex::new(HashMap::new()),
                commit: tokio::sync::Mutex::new(()),
                containers_dir,
            }),
        };
        mgr.catalog().pin(in_use);
        mgr.recover()?;
        Ok(mgr)
    }

    /// The unpacked dirs of an image's layers, bottom first, for a
    /// container's rootfs; the layers are pinned against GC until
    /// [`Self::release_layers`].
    pub fn use_layers(&self, id: &ImageId) -> Result<(ImageRecord, Vec<PathBuf>), ImageError> {
        let mut cat = self.catalog();
        let rec = cat
            .images
            .get(id)
            .cloned()
            .ok_or_else(|| ImageError::Internal(format!("image {id} is not stored")))?;
        if let Some(c) = rec.chain_ids.iter().find(|c| !cat.layers.contains_key(*c)) {
            return Err(ImageError::Internal(format!(
                "image {id}: layer {c} is missing; pull the image again"
            )));
        }
        cat.pin(&rec.chain_ids);
        let dirs = rec
            .chain_ids
            .iter()
            .map(|c| self.inner.layers.path(c))
            .collect();
        Ok((rec, dirs))
    }

    /// Drops a container's hold on layers; layers of images removed in the
    /// meantime are collected.
    pub async fn release_layers(&self, chains: &[ChainId]) {
        let orphaned = {
            let mut cat = self.catalog();
            cat.unpin(chains);
            !cat.unreferenced_layers().is_empty()
        };
        if orphaned {
            let _g = self.inner.commit.lock().await;
            let me = self.clone();
            match tokio::task::spawn_blocking(move || me.gc_blocking()).await {
                Ok(Err(e)) => tracing::warn!(error = %e, "collecting released layers"),
                Err(e) => tracing::warn!(error = %e, "collecting released layers"),
                Ok(Ok(())) => {}
            }
        }
    }

    pub(super) fn catalog(&self) -> MutexGuard<'_, Catalog> {
        // A panic while holding this lock is a bug; the data is still
        // consistent (every mutation is a single insert/remove), so go on.
        self.inner.catalog.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start-up consistency: layer records whose dir vanished are dropped,
    /// dirs and blobs nothing refers to are removed.
    fn recover(&self) -> Result<(), ImageError> {
        let mut writes = Vec::new();
        {
            let mut cat = self.catalog();
            let missing: Vec<_> = cat
                .layers
                .keys()
                .filter(|c| !self.inner.layers.path(c).is_dir())
                .cloned()
                .collect();
            for c in missing {
                tracing::warn!(chain_id = %c, "layer dir missing; record dropped");
                cat.layers.remove(&c);
                writes.push(Write::delete(Table::Layers, c.as_str()));
            }
            for id in cat.images.keys() {
                let img = &cat.images[id];
                if let Some(c) = img.chain_ids.iter().find(|c| !cat.layers.contains_key(*c)) {
                    tracing::warn!(image = %id, chain_id = %c, "image layer missing; pull the image again");
                }
            }
        }
        self.inner.store.apply(&writes)?;
        self.gc_blocking()
    }

    /// Removes unreferenced layers (records and dirs), stray layer dirs and
    /// unreferenced blobs. Blocking.
    fn gc_blocking(&self) -> Result<(), ImageError> {
        let (dead_layers, known, blobs_used) = {
            let cat = self.catalog();
            let dead = cat.unreferenced_layers();
            let known: BTreeSet<String> = cat.layers.keys().map(|c| c.hex().to_owned()).collect();
            let mut blobs: BTreeSet<Digest> = BTreeSet::new();
            for i in cat.images.values() {
                blobs.insert(i.id.clone());
                blobs.insert(i.manifest.clone());
                if let Some(x) = &i.index {
                    blobs.insert(x.clone());
                }
            }
            (dead, known, blobs)
        };
        let writes: Vec<Write> = dead_layers
            .iter()
            .map(|c| Write::delete(Table::Layers, c.as_str()))
            .collect();
        self.inner.store.apply(&writes)?;
        {
            let mut cat = self.catalog();
            for c in &dead_layers {
                cat.layers.remove(c);
            }
        }
        for c in &dead_layers {
            self.inner
                .layers
                .remove(c)
                .map_err(ImageError::io(format!("removing layer {c}")))?;
        }
        // Dirs with no record: a crash between rename and commit.
        let dirs = self
            .inner
            .layers
            .list()
            .map_err(ImageError::io("listing layers"))?;
        for name in dirs {
            if !known.contains(&name) {
                let p = self.inner.layers.dir().join(&name);
                if !self.downloads_in_flight() {
                    tracing::info!(dir = %p.display(), "removing unrecorded layer dir");
                    std::fs::remove_dir_all(&p)
                        .map_err(ImageError::io(format!("removing {}", p.display())))?;
                }
            }
        }
        if !self.downloads_in_flight() {
            for (d, _) in self
                .inner
                .content
                .list()
                .map_err(ImageError::io("listing blobs"))?
            {
                if !blobs_used.contains(&d) {
                    self.inner
                        .content
                        .delete(&d)
                        .map_err(ImageError::io(format!("removing blob {d}")))?;
                }
            }
        }
        Ok(())
    }

    /// Whether any layer or blob download is running: its layer dir may be
    /// in place before its record is, so GC must not judge strays then.
    fn downloads_in_flight(&self) -> bool {
        self.inner
            .inflight
            .lock()
            .map(|m| !m.is_empty())
            .unwrap_or(true)
    }

    /// Resolves an image spec to a stored image (None when absent).
    pub fn resolve(&self, spec: &str) -> Result<Option<ImageId>, ImageError> {
        match self
            .catalog()
            .lookup(spec, &self.inner.cfg.default_registry)?
        {
            Lookup::Found(id) => Ok(Some(id)),
            Lookup::Missing => Ok(None),
        }
    }

    pub fn status(&self, spec: &str, verbose: bool) -> Result<Option<ImageView>, ImageError> {
        let Some(id) = self.resolve(spec)? else {
            return Ok(None);
        };
        let Some(record) = self.catalog().images.get(&id).cloned() else {
            return Ok(None);
        };
        let config_json = if verbose {
            let bytes = self
                .inner
                .content
                .get(&record.id)
                .map_err(ImageError::io(format!(
                    "reading config of image {}",
                    record.id
                )))?;
            Some(String::from_utf8_lossy(&bytes).into_owned())
        } else {
            None
        };
        Ok(Some(ImageView {
            record,
            config_json,
        }))
    }

    /// The image config of a stored image (for containers, later).
    pub fn config_bytes(&self, id: &ImageId) -> Result<Vec<u8>, ImageError> {
        self.inner
            .content
            .get(id)
            .map_err(ImageError::io(format!("reading config of image {id}")))
    }

    pub fn list(&self, filter: Option<&str>) -> Result<Vec<ImageRecord>, ImageError> {
        if let Some(spec) = filter.filter(|s| !s.is_empty()) {
            let Some(id) = self.resolve(spec)? else {
                return Ok(vec![]);
            };
            return Ok(self
                .catalog()
                .images
                .get(&id)
                .cloned()
                .into_iter()
                .collect());
        }
        Ok(self.catalog().images.values().cloned().collect())
    }

    /// Removes an image with all its names; absent is success (CRI says
    /// RemoveImage is idempotent). Layers and blobs nothing else uses go too.
    #[tracing::instrument(skip_all, fields(image = spec))]
    pub async fn remove(&self, spec: &str) -> Result<(), ImageError> {
        let _g = self.inner.commit.lock().await;
        let Some(id) = self.resolve(spec)? else {
            return Ok(());
        };
        let store = self.inner.store.clone();
        let key = id.as_str().to_owned();
        tokio::task::spawn_blocking(move || store.apply(&[Write::delete(Table::Images, key)]))
            .await
            .map_err(|e| ImageError::Internal(e.to_string()))??;
        self.catalog().images.remove(&id);
        tracing::info!(image = %id, "image removed");
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.gc_blocking())
            .await
            .map_err(|e| ImageError::Internal(e.to_string()))?
    }

    /// The dir holding the unpacked layers.
    pub fn layers_dir(&self) -> &Path {
        self.inner.layers.dir()
    }

    /// Bytes and inodes of the layer store (image filesystem).
    pub fn image_fs(&self) -> FsUsage {
        let cat = self.catalog();
        let (bytes, inodes) = cat
            .layers
            .values()
            .fold((0u64, 0u64), |(b, i), l| (b + l.bytes, i + l.inodes));
        drop(cat);
        let (blob_bytes, blob_count) = self
            .inner
            .content
            .list()
            .map(|v| (v.iter().map(|(_, n)| n).sum::<u64>(), v.len() as u64))
            .unwrap_or((0, 0));
        FsUsage {
            mountpoint: self.inner.layers.dir().to_owned(),
            bytes: bytes + blob_bytes,
            inodes: inodes + blob_count,
            timestamp_ns: now_ns(),
        }
    }

    /// Bytes and inodes of container writable layers.
    pub fn container_fs(&self) -> FsUsage {
        let (bytes, inodes) = dir_usage(&self.inner.containers_dir);
        FsUsage {
            mountpoint: self.inner.containers_dir.clone(),
            bytes,
            inodes,
            timestamp_ns: now_ns(),
        }
    }
}

/// Walks a tree summing file sizes and counting inodes (no symlink following).
fn dir_usage(root: &Path) -> (u64, u64) {
    let mut stack = vec![root.to_owned()];
    let (mut bytes, mut inodes) = (0u64, 0u64);
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            inodes += 1;
            if md.is_dir() {
                stack.push(e.path());
            } else {
                bytes += md.len();
            }
        }
    }
    (bytes, inodes)
}
