//! Containers: CreateContainer prepares the rootfs (overlay of the image's
//! layers + a writable upper dir) and the OCI spec; StartContainer starts a
//! monitor (`crius monitor`) that creates and runs the process; the rest
//! talks to that monitor or reads what it left (`exit.json`).

mod manager;
pub mod spec;
mod types;

pub use manager::{
    ContainerManager, ContainerStats, ExecIo, ExecOutput, ExecStreams, ExecWaiter, PodStats,
    monitor_socket, remove_container_files, stored_layer_pins, unrecorded_containers,
};
pub use types::*;

use crate::id::{ContainerId, IdError, PodSandboxId};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("container config: {0}")]
    Invalid(String),
    #[error("container {0:?} not found")]
    NotFound(String),
    #[error("pod sandbox {0:?} not found")]
    PodNotFound(String),
    #[error("pod sandbox {0} is not ready; containers cannot be created in it")]
    PodNotReady(PodSandboxId),
    #[error("container id prefix {prefix:?} is ambiguous: it matches {count} containers")]
    Ambiguous { prefix: String, count: usize },
    #[error("invalid container id: {0}")]
    Id(#[from] IdError),
    #[error("container name {name:?} is reserved for container {id}; remove that container first")]
    NameReserved { name: String, id: ContainerId },
    #[error("image {0:?} is not present on this node; pull it first")]
    ImageNotFound(String),
    /// The request is valid but the container's state does not allow it.
    #[error("container {id}: {what}")]
    State { id: ContainerId, what: String },
    /// An operation's deadline passed (ExecSync's timeout).
    #[error("container {id}: {what}")]
    TimedOut { id: ContainerId, what: String },
    #[error("container {id}: {context}: {message}")]
    Failed {
        id: ContainerId,
        context: String,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}
