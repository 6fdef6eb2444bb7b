//! Shared harness for the integration tests (each `tests/*.rs` says `mod common;`):
//! a throwaway docker-registry, image and layer builders with a pusher, the
//! standard test images, the crius daemon on a temp socket, and a throttling
//! proxy. Each test owns its own registry, daemon and temp dirs, so tests run
//! in parallel. Missing prerequisites panic with how to install them.

// Each test binary uses a different part of the harness.
#![allow(dead_code, unused_imports)]

pub mod containers;
pub mod cri;
pub mod daemon;
pub mod fixtures;
pub mod image;
pub mod layer;
pub mod net;
pub mod otlp;
pub mod overlay;
pub mod pods;
pub mod proxy;
pub mod push;
pub mod registry;
pub mod spdy;
pub mod tls;

pub use daemon::{
    CRIUS, Daemon, DaemonPaths, connect_unix, default_config_text, insecure_registries, run_crius,
    temp_leftovers, unmount_below,
};
pub use fixtures::*;
pub use image::{Format, Image, ImageBuilder, Index, Platform, chain_ids};
pub use layer::{Compression, Layer, LayerBuilder, sha256_digest};
pub use net::TestNet;
pub use overlay::OverlayMount;
pub use proxy::SlowProxy;
pub use push::{Pushed, PushedIndex, get_blob, get_manifest, http_client, push, push_index};
pub use registry::Registry;
