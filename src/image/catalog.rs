//! The image catalogue in memory: records, name lookup and reference
//! counting. Pure data; `manager` persists every change through the store.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::error::ImageError;
use super::reference::Reference;
use crate::id::{ChainId, Digest, IdPrefix, ImageId, is_hex64};

/// One image as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// `sha256:<config digest>`.
    pub id: ImageId,
    /// `registry/repo:tag`, each owned by exactly one image.
    pub repo_tags: Vec<String>,
    /// `registry/repo@sha256:…` of the pulled manifest (or index).
    pub repo_digests: Vec<String>,
    /// Manifest + config + compressed layer sizes, as containerd reports.
    pub size: u64,
    /// The platform manifest's digest.
    pub manifest: Digest,
    /// The index the manifest was chosen from, if any.
    pub index: Option<Digest>,
    /// Layer stack, bottom first.
    pub chain_ids: Vec<ChainId>,
    /// Image config `User`, verbatim.
    pub user: String,
    /// Nanoseconds since the epoch when first pulled.
    pub created_ns: i64,
}

/// One unpacked layer as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub chain_id: ChainId,
    pub diff_id: Digest,
    pub parent: Option<ChainId>,
    pub bytes: u64,
    pub inodes: u64,
}

#[derive(Debug, Default)]
pub struct Catalog {
    pub images: BTreeMap<ImageId, ImageRecord>,
    pub layers: HashMap<ChainId, LayerRecord>,
    /// Chain ids held by pulls in progress (or, later, by containers): GC
    /// must not take them even when no image names them yet.
    pins: HashMap<ChainId, usize>,
}

/// What a user asked for, resolved against the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(ImageId),
    Missing,
}

impl Catalog {
    /// Resolves what CRI calls an image spec: an id (full, `sha256:`-prefixed
    /// or a unique prefix), a tag reference or a digest reference.
    pub fn lookup(&self, spec: &str, default_registry: &str) -> Result<Lookup, ImageError> {
        let spec = spec.trim();
        let bare = spec.strip_prefix("sha256:");
        if bare.is_some() || is_hex64(spec) {
            return self.lookup_prefix(spec);
        }
        match Reference::parse_with_default_registry(spec, default_registry) {
            Ok(r) => {
                if let Some(found) = self.lookup_reference(&r) {
                    return Ok(Lookup::Found(found));
                }
                // A short hex string is both a valid repository name and an
                // id prefix; Docker tries the name first, then the id.
                if IdPrefix::parse(spec).is_ok() && !spec.contains([':', '/', '@']) {
                    return self.lookup_prefix(spec);
                }
                Ok(Lookup::Missing)
            }
            Err(e) => {
                if IdPrefix::parse(spec).is_ok() {
                    return self.lookup_prefix(spec);
                }
                Err(Box::new(e).into())
            }
        }
    }

    fn lookup_reference(&self, r: &Reference) -> Option<ImageId> {
        if let Some(d) = r.digest() {
            let want = r.with_digest(d);
            let name = r.name();
            return self
                .images
                .values()
                .find(|i| {
                    // Pulled through an index, the image is recorded under the
                    // index digest; its platform manifest's digest names it too.
                    i.repo_digests.contains(&want)
                        || (i.manifest == *d
                            && i.repo_digests
                                .iter()
                                .any(|x| x.split_once('@').map(|(n, _)| n) == Some(name.as_str())))
                })
                .map(|i| i.id.clone());
        }
        let tagged = r.tagged()?;
        self.images
            .values()
            .find(|i| i.repo_tags.contains(&tagged))
            .map(|i| i.id.clone())
    }

    fn lookup_prefix(&self, spec: &str) -> Result<Lookup, ImageError> {
        let p = IdPrefix::parse(spec)?;
        let hits: Vec<&ImageId> = self
            .images
            .keys()
            .filter(|id| id.hex().starts_with(p.as_str()))
            .collect();
        match hits.as_slice() {
            [] => Ok(Lookup::Missing),
            [one] => Ok(Lookup::Found((*one).clone())),
            many => Err(ImageError::Ambiguous {
                prefix: p.as_str().to_owned(),
                count: many.len(),
            }),
        }
    }

    /// Adds (or merges) a pulled image; a tag moves from whatever image held
    /// it. Returns every record that changed, to persist.
    pub fn add(&mut self, rec: ImageRecord) -> Vec<ImageRecord> {
        let changed = self.plan_add(rec);
        for c in &changed {
            self.images.insert(c.id.clone(), c.clone());
        }
        changed
    }

    /// The records `add` would write, without changing the catalogue (the
    /// caller persists them first, then inserts them).
    pub fn plan_add(&self, mut rec: ImageRecord) -> Vec<ImageRecord> {
        let mut changed = Vec::new();
        for other in self.images.values() {
            if other.id == rec.id || !other.repo_tags.iter().any(|t| rec.repo_tags.contains(t)) {
                continue;
            }
            let mut other = other.clone();
            other.repo_tags.retain(|t| !rec.repo_tags.contains(t));
            changed.push(other);
        }
        if let Some(old) = self.images.get(&rec.id) {
            rec.created_ns = old.created_ns;
            for t in &old.repo_tags {
                if !rec.repo_tags.contains(t) {
                    rec.repo_tags.push(t.clone());
                }
            }
            for d in &old.repo_digests {
                if !rec.repo_digests.contains(d) {
                    rec.repo_digests.push(d.clone());
                }
            }
        }
        rec.repo_tags.sort();
        rec.repo_digests.sort();
        changed.push(rec);
        changed
    }

    pub fn pin(&mut self, chains: &[ChainId]) {
        for c in chains {
            *self.pins.entry(c.clone()).or_default() += 1;
        }
    }

    pub fn unpin(&mut self, chains: &[ChainId]) {
        for c in chains {
            if let Some(n) = self.pins.get_mut(c) {
                *n -= 1;
                if *n == 0 {
                    self.pins.remove(c);
                }
            }
        }
    }

    /// Layers no image or pin refers to.
    pub fn unreferenced_layers(&self) -> Vec<ChainId> {
        let used: BTreeSet<&ChainId> = self
            .images
            .values()
            .flat_map(|i| i.chain_ids.iter())
            .chain(self.pins.keys())
            .collect();
        self.layers
            .keys()
            .filter(|c| !used.contains(c))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(c: char, tags: &[&str]) -> ImageRecord {
        ImageRecord {
            id: Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap(),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: vec![],
            size: 1,
            manifest: Digest::of(&[c as u8]),
            index: None,
            chain_ids: vec![Digest::of(b"layer")],
            user: String::new(),
            created_ns: 0,
        }
    }

    #[test]
    fn tag_moves_between_images() {
        let mut c = Catalog::default();
        c.add(rec('a', &["docker.io/library/busybox:latest"]));
        let changed = c.add(rec('b', &["docker.io/library/busybox:latest"]));
        assert_eq!(changed.len(), 2);
        let a = &c.images[&rec('a', &[]).id];
        assert!(a.repo_tags.is_empty());
        assert_eq!(
            c.lookup("busybox", "docker.io").unwrap(),
            Lookup::Found(rec('b', &[]).id)
        );
    }

    #[test]
    fn prefix_lookup_and_ambiguity() {
        let mut c = Catalog::default();
        c.add(rec('a', &[]));
        c.add(rec('b', &[]));
        assert_eq!(
            c.lookup("aaaa", "docker.io").unwrap(),
            Lookup::Found(rec('a', &[]).id)
        );
        assert_eq!(
            c.lookup("sha256:bb", "docker.io").unwrap(),
            Lookup::Found(rec('b', &[]).id)
        );
        assert_eq!(c.lookup("cc", "docker.io").unwrap(), Lookup::Missing);
        let mut r = rec('a', &[]);
        r.id = Digest::parse(&format!("sha256:a{}", "b".repeat(63))).unwrap();
        c.add(r);
        assert!(matches!(
            c.lookup("a", "docker.io"),
            Err(ImageError::Ambiguous { count: 2, .. })
        ));
    }

    #[test]
    fn pins_keep_layers() {
        let mut c = Catalog::default();
        let l = Digest::of(b"x");
        c.layers.insert(
            l.clone(),
            LayerRecord {
                chain_id: l.clone(),
                diff_id: l.clone(),
                parent: None,
                bytes: 0,
                inodes: 0,
            },
        );
        assert_eq!(c.unreferenced_layers(), vec![l.clone()]);
        c.pin(std::slice::from_ref(&l));
        assert!(c.unreferenced_layers().is_empty());
        c.unpin(std::slice::from_ref(&l));
        assert_eq!(c.unreferenced_layers(), vec![l]);
    }
}
