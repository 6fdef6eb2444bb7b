//! Errors of the image service, each naming the object it concerns.

use std::sync::Arc;

use super::layers::LayerError;
use super::manifest::ManifestError;
use super::reference::ReferenceError;
use super::registry::RegistryError;
use crate::id::{Digest, IdError};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference: {0}")]
    Reference(#[from] Box<ReferenceError>),
    #[error("invalid image id: {0}")]
    Id(#[from] IdError),
    #[error(
        "image id prefix {prefix:?} is ambiguous: it matches {count} images; give more characters"
    )]
    Ambiguous { prefix: String, count: usize },
    #[error("pulling {image}: {source}")]
    Registry {
        image: String,
        source: Box<RegistryError>,
    },
    #[error("pulling {image}: {source}")]
    Manifest {
        image: String,
        source: Box<ManifestError>,
    },
    #[error("pulling {image}: {source}")]
    Layer {
        image: String,
        source: Box<LayerError>,
    },
    #[error("pulling {image}: {what} {digest} has digest {actual}")]
    DigestMismatch {
        image: String,
        what: &'static str,
        digest: Digest,
        actual: Digest,
    },
    #[error(
        "pulling {image}: {what} {digest} is {size} bytes, more than the {limit} bytes allowed"
    )]
    TooLarge {
        image: String,
        what: &'static str,
        digest: Digest,
        size: u64,
        limit: u64,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A failure of a merged download, shared by every pull that waited on it.
    #[error("{0}")]
    Shared(Arc<ImageError>),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ImageError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
        let context = context.into();
        move |source| ImageError::Io { context, source }
    }

    /// The error a merged download's waiters see, unwrapped to its root.
    pub fn root(&self) -> &ImageError {
        match self {
            ImageError::Shared(inner) => inner.root(),
            other => other,
        }
    }
}
