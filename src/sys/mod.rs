//! Syscall layer: namespaces, mounts, cgroups and (later) process
//! creation. Everything here takes its root paths as parameters; nothing here
//! knows about gRPC, the store or the config.
//!
//! This is the only module where `unsafe` is allowed; each block carries a
//! `// SAFETY:` comment. Prefer nix's safe wrappers.
#![allow(unsafe_code)]

pub mod cgroup;
pub mod cgroup_stats;
pub mod fs;
pub mod infra;
pub mod mount;
pub mod namespace;
pub mod netstat;
pub mod process;
