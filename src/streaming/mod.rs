//! The streaming server for Exec, Attach and PortForward is being built
//! here: kubelet dials the URL returned by those CRI calls and speaks
//! SPDY/3.1 (or WebSocket) to it.
//!
//! So far: [`spdy`], the SPDY/3.1 framing codec the server will run on.

pub mod spdy;
