//! Pods and containers: the runtime domain. So far the pure parts of pod
//! sandboxes: sysctl validation and the pod's hostname/resolv.conf/hosts.

pub mod bandwidth;
pub mod container;
pub mod podfiles;
pub mod process;
pub mod sandbox;
pub mod security;
pub mod sysctl;
pub mod user;
