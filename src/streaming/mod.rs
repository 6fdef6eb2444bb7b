//! The streaming server for Exec, Attach and PortForward: the CRI
//! call stores the request under a single-use token and returns a URL;
//! kubelet (or crictl) dials it and upgrades the HTTP connection to
//! SPDY/3.1, over which Kubernetes' remote-command protocol runs.
//!
//! * [`spdy`]: the SPDY/3.1 framing codec.
//! * [`server`]: the HTTP listener, tokens, protocol negotiation, upgrade.
//! * [`remotecommand`]: exec and attach sessions (streams, stdin/stdout/
//!   stderr, terminal and resize, the exit status on the error stream).
//! * [`portforward`]: port-forward sessions (connections into the pod's
//!   network namespace).
//! * [`websocket`]: exec and attach over WebSocket, adapted to the same
//!   sessions.

pub mod portforward;
pub mod remotecommand;
pub mod server;
pub mod spdy;
mod tokens;
pub mod websocket;

pub use portforward::PortForwardSpec;
pub use remotecommand::{AttachSpec, ExecSpec};
pub use server::StreamServer;
