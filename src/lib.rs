//! crius: a Kubernetes container runtime serving CRI v1 over a unix socket.
//!
//! Layers: `api` (tonic/prost only here) → domain (`image`, later `runtime`,
//! `network`, `streaming`) → `sys` (syscalls). See docs/architecture.md.

pub mod api;
pub mod check;
pub mod config;
pub mod id;
pub mod image;
pub mod metrics;
pub mod monitor;
pub mod network;
pub mod runtime;
pub mod server;
pub mod store;
pub mod streaming;
pub mod sys;
pub mod telemetry;
