//! Pods and containers: the runtime domain.

pub mod bandwidth;
pub mod cdi;
pub mod container;
pub mod events;
pub mod features;
pub mod nspool;
pub mod podfiles;
pub mod process;
pub mod sandbox;
pub mod security;
pub mod sysctl;
pub mod user;
pub mod userns;

use std::sync::{Mutex, MutexGuard};

/// Locks a std mutex, going on after a panic elsewhere poisoned it (every
/// guarded mutation here is a single insert or remove).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs a lifecycle verb in its own task: if kubelet gives up on the RPC
/// (its future is dropped), the verb still finishes or rolls back instead
/// of stopping half-way. `internal` wraps a panicked task's message.
pub(crate) async fn detached<T: Send + 'static, E: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, E>> + Send + 'static,
    internal: fn(String) -> E,
) -> Result<T, E> {
    use tracing::Instrument as _;
    tokio::spawn(work.in_current_span())
        .await
        .map_err(|e| internal(format!("runtime task: {e}")))?
}
