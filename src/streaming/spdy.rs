//! SPDY/3.1 framing: frames, header-block compression, and a
//! `tokio_util` codec.
//!
//! kubelet (through `k8s.io/apimachinery/pkg/util/httpstream/spdy`, i.e.
//! `github.com/moby/spdystream`) speaks SPDY/3.1 to the runtime's streaming
//! server for Exec, Attach and PortForward after an HTTP/1.1 upgrade. This
//! module is only the wire format of the
//! [SPDY/3.1 draft](https://www.chromium.org/spdy/spdy-protocol/spdy-protocol-draft3-1/):
//! the session (stream table, flow control, PING replies, GOAWAY) is built on
//! top of it.
//!
//! # Why this is hand-written
//!
//! No maintained SPDY implementation exists in the Rust ecosystem. The only
//! SPDY/3.1 crate a docs.rs search turned up when this was written is
//! `spdy-mux` 0.1: young, client-side, a multiplexer over WebSocket
//! transports that opens its own stream pairs, with no server side and no
//! frame decoder we could drive from our own session. The framing is small
//! and fully specified, so we own it, with the hard limits an untrusted peer
//! calls for.
//!
//! # Shape
//!
//! - [`Frame`] is one decoded frame; control frames carrying headers hold a
//!   decompressed [`HeaderBlock`].
//! - [`decode_frame`] / [`encode_frame`] are the functions; [`SpdyCodec`]
//!   implements [`Decoder`] and [`Encoder`] for a `Framed` transport and owns
//!   the two per-connection compression contexts ([`HeaderCompressor`] for
//!   what we send, [`HeaderDecompressor`] for what we receive).
//! - Header compression is stateful across the whole connection: frames must
//!   be decoded (and encoded) in wire order by one codec. After any decode
//!   error the decompression context may be out of step with the peer, so
//!   the connection must be torn down (GOAWAY with PROTOCOL_ERROR, close).
//!
//! # Limits
//!
//! [`Limits`] bounds every allocation driven by the peer: the length of a
//! DATA frame and of a control frame (checked from the 8-byte frame header,
//! before the payload is buffered), the decompressed size of a header block
//! (checked while inflating, so a zlib bomb fails after at most that many
//! bytes) and the number of headers in a block.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio_util::codec::{Decoder, Encoder};

/// The SPDY version spoken (SPDY/3.1 keeps the version field at 3).
pub const SPDY_VERSION: u16 = 3;

/// Length of every frame header, control or data.
pub const FRAME_HEADER_LEN: usize = 8;

/// The largest payload the 24-bit length field can describe.
pub const MAX_FRAME_PAYLOAD: usize = 0x00FF_FFFF;

/// Stream ids (and last-good-stream-ids) are 31 bits; the top bit is reserved.
pub const MAX_STREAM_ID: u32 = 0x7FFF_FFFF;

/// Largest window delta in a WINDOW_UPDATE (31 bits).
pub const MAX_WINDOW_DELTA: u32 = 0x7FFF_FFFF;

/// Flag on DATA, SYN_STREAM, SYN_REPLY and HEADERS: the sender half-closes
/// the stream with this frame.
pub const FLAG_FIN: u8 = 0x01;

/// Flag on SYN_STREAM: the stream is unidirectional (the recipient never
/// sends on it; it starts half-closed for the recipient).
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// Flag on SETTINGS: clear all previously persisted settings.
pub const FLAG_SETTINGS_CLEAR_SETTINGS: u8 = 0x01;

/// Per-entry SETTINGS flag: the sender asks the recipient to persist the value.
pub const FLAG_SETTINGS_PERSIST_VALUE: u8 = 0x01;

/// Per-entry SETTINGS flag: the value was persisted and is being returned.
pub const FLAG_SETTINGS_PERSISTED: u8 = 0x02;

/// SETTINGS id: expected upload bandwidth.
pub const SETTINGS_UPLOAD_BANDWIDTH: u32 = 1;
/// SETTINGS id: expected download bandwidth.
pub const SETTINGS_DOWNLOAD_BANDWIDTH: u32 = 2;
/// SETTINGS id: expected round-trip time.
pub const SETTINGS_ROUND_TRIP_TIME: u32 = 3;
/// SETTINGS id: maximum number of concurrent streams the sender allows.
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u32 = 4;
/// SETTINGS id: current TCP congestion window.
pub const SETTINGS_CURRENT_CWND: u32 = 5;
/// SETTINGS id: download retransmission rate.
pub const SETTINGS_DOWNLOAD_RETRANS_RATE: u32 = 6;
/// SETTINGS id: initial per-stream flow-control window of the sender.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;
/// SETTINGS id: client certificate vector size.
pub const SETTINGS_CLIENT_CERTIFICATE_VECTOR_SIZE: u32 = 8;

/// Default initial flow-control window (per stream and per session), 64 KiB.
pub const DEFAULT_INITIAL_WINDOW_SIZE: u32 = 64 * 1024;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// Adler-32 of [`HEADER_DICTIONARY`]: the dictionary id a conforming zlib
/// stream for SPDY/3 headers announces in its header.
pub const HEADER_DICTIONARY_ID: u32 = 0xe3c6_a7c2;

/// The SPDY/3 header compression dictionary (spec section 2.6.10.1), 1423
/// bytes. It must be byte-exact, or the peer's inflate fails with a wrong
/// dictionary id.
#[rustfmt::skip]
pub const HEADER_DICTIONARY: &[u8] = &[
    0x00, 0x00, 0x00, 0x07, 0x6f, 0x70, 0x74, 0x69, 0x6f, 0x6e, 0x73, 0x00, 0x00, 0x00, 0x04, 0x68,
    0x65, 0x61, 0x64, 0x00, 0x00, 0x00, 0x04, 0x70, 0x6f, 0x73, 0x74, 0x00, 0x00, 0x00, 0x03, 0x70,
    0x75, 0x74, 0x00, 0x00, 0x00, 0x06, 0x64, 0x65, 0x6c, 0x65, 0x74, 0x65, 0x00, 0x00, 0x00, 0x05,
    0x74, 0x72, 0x61, 0x63, 0x65, 0x00, 0x00, 0x00, 0x06, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x00,
    0x00, 0x00, 0x0e, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x2d, 0x63, 0x68, 0x61, 0x72, 0x73, 0x65,
    0x74, 0x00, 0x00, 0x00, 0x0f, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x2d, 0x65, 0x6e, 0x63, 0x6f,
    0x64, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x0f, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x2d, 0x6c,
    0x61, 0x6e, 0x67, 0x75, 0x61, 0x67, 0x65, 0x00, 0x00, 0x00, 0x0d, 0x61, 0x63, 0x63, 0x65, 0x70,
    0x74, 0x2d, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x73, 0x00, 0x00, 0x00, 0x03, 0x61, 0x67, 0x65, 0x00,
    0x00, 0x00, 0x05, 0x61, 0x6c, 0x6c, 0x6f, 0x77, 0x00, 0x00, 0x00, 0x0d, 0x61, 0x75, 0x74, 0x68,
    0x6f, 0x72, 0x69, 0x7a, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0d, 0x63, 0x61, 0x63,
    0x68, 0x65, 0x2d, 0x63, 0x6f, 0x6e, 0x74, 0x72, 0x6f, 0x6c, 0x00, 0x00, 0x00, 0x0a, 0x63, 0x6f,
    0x6e, 0x6e, 0x65, 0x63, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0c, 0x63, 0x6f, 0x6e, 0x74,
    0x65, 0x6e, 0x74, 0x2d, 0x62, 0x61, 0x73, 0x65, 0x00, 0x00, 0x00, 0x10, 0x63, 0x6f, 0x6e, 0x74,
    0x65, 0x6e, 0x74, 0x2d, 0x65, 0x6e, 0x63, 0x6f, 0x64, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x10,
    0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x61, 0x6e, 0x67, 0x75, 0x61, 0x67, 0x65,
    0x00, 0x00, 0x00, 0x0e, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x65, 0x6e, 0x67,
    0x74, 0x68, 0x00, 0x00, 0x00, 0x10, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x6f,
    0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0b, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e,
    0x74, 0x2d, 0x6d, 0x64, 0x35, 0x00, 0x00, 0x00, 0x0d, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74,
    0x2d, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x00, 0x00, 0x00, 0x0c, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e,
    0x74, 0x2d, 0x74, 0x79, 0x70, 0x65, 0x00, 0x00, 0x00, 0x04, 0x64, 0x61, 0x74, 0x65, 0x00, 0x00,
    0x00, 0x04, 0x65, 0x74, 0x61, 0x67, 0x00, 0x00, 0x00, 0x06, 0x65, 0x78, 0x70, 0x65, 0x63, 0x74,
    0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x70, 0x69, 0x72, 0x65, 0x73, 0x00, 0x00, 0x00, 0x04, 0x66,
    0x72, 0x6f, 0x6d, 0x00, 0x00, 0x00, 0x04, 0x68, 0x6f, 0x73, 0x74, 0x00, 0x00, 0x00, 0x08, 0x69,
    0x66, 0x2d, 0x6d, 0x61, 0x74, 0x63, 0x68, 0x00, 0x00, 0x00, 0x11, 0x69, 0x66, 0x2d, 0x6d, 0x6f,
    0x64, 0x69, 0x66, 0x69, 0x65, 0x64, 0x2d, 0x73, 0x69, 0x6e, 0x63, 0x65, 0x00, 0x00, 0x00, 0x0d,
    0x69, 0x66, 0x2d, 0x6e, 0x6f, 0x6e, 0x65, 0x2d, 0x6d, 0x61, 0x74, 0x63, 0x68, 0x00, 0x00, 0x00,
    0x08, 0x69, 0x66, 0x2d, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x00, 0x00, 0x00, 0x13, 0x69, 0x66, 0x2d,
    0x75, 0x6e, 0x6d, 0x6f, 0x64, 0x69, 0x66, 0x69, 0x65, 0x64, 0x2d, 0x73, 0x69, 0x6e, 0x63, 0x65,
    0x00, 0x00, 0x00, 0x0d, 0x6c, 0x61, 0x73, 0x74, 0x2d, 0x6d, 0x6f, 0x64, 0x69, 0x66, 0x69, 0x65,
    0x64, 0x00, 0x00, 0x00, 0x08, 0x6c, 0x6f, 0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00,
    0x0c, 0x6d, 0x61, 0x78, 0x2d, 0x66, 0x6f, 0x72, 0x77, 0x61, 0x72, 0x64, 0x73, 0x00, 0x00, 0x00,
    0x06, 0x70, 0x72, 0x61, 0x67, 0x6d, 0x61, 0x00, 0x00, 0x00, 0x12, 0x70, 0x72, 0x6f, 0x78, 0x79,
    0x2d, 0x61, 0x75, 0x74, 0x68, 0x65, 0x6e, 0x74, 0x69, 0x63, 0x61, 0x74, 0x65, 0x00, 0x00, 0x00,
    0x13, 0x70, 0x72, 0x6f, 0x78, 0x79, 0x2d, 0x61, 0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x7a, 0x61,
    0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x05, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x00, 0x00, 0x00,
    0x07, 0x72, 0x65, 0x66, 0x65, 0x72, 0x65, 0x72, 0x00, 0x00, 0x00, 0x0b, 0x72, 0x65, 0x74, 0x72,
    0x79, 0x2d, 0x61, 0x66, 0x74, 0x65, 0x72, 0x00, 0x00, 0x00, 0x06, 0x73, 0x65, 0x72, 0x76, 0x65,
    0x72, 0x00, 0x00, 0x00, 0x02, 0x74, 0x65, 0x00, 0x00, 0x00, 0x07, 0x74, 0x72, 0x61, 0x69, 0x6c,
    0x65, 0x72, 0x00, 0x00, 0x00, 0x11, 0x74, 0x72, 0x61, 0x6e, 0x73, 0x66, 0x65, 0x72, 0x2d, 0x65,
    0x6e, 0x63, 0x6f, 0x64, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x07, 0x75, 0x70, 0x67, 0x72, 0x61,
    0x64, 0x65, 0x00, 0x00, 0x00, 0x0a, 0x75, 0x73, 0x65, 0x72, 0x2d, 0x61, 0x67, 0x65, 0x6e, 0x74,
    0x00, 0x00, 0x00, 0x04, 0x76, 0x61, 0x72, 0x79, 0x00, 0x00, 0x00, 0x03, 0x76, 0x69, 0x61, 0x00,
    0x00, 0x00, 0x07, 0x77, 0x61, 0x72, 0x6e, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x10, 0x77, 0x77,
    0x77, 0x2d, 0x61, 0x75, 0x74, 0x68, 0x65, 0x6e, 0x74, 0x69, 0x63, 0x61, 0x74, 0x65, 0x00, 0x00,
    0x00, 0x06, 0x6d, 0x65, 0x74, 0x68, 0x6f, 0x64, 0x00, 0x00, 0x00, 0x03, 0x67, 0x65, 0x74, 0x00,
    0x00, 0x00, 0x06, 0x73, 0x74, 0x61, 0x74, 0x75, 0x73, 0x00, 0x00, 0x00, 0x06, 0x32, 0x30, 0x30,
    0x20, 0x4f, 0x4b, 0x00, 0x00, 0x00, 0x07, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x00, 0x00,
    0x00, 0x08, 0x48, 0x54, 0x54, 0x50, 0x2f, 0x31, 0x2e, 0x31, 0x00, 0x00, 0x00, 0x03, 0x75, 0x72,
    0x6c, 0x00, 0x00, 0x00, 0x06, 0x70, 0x75, 0x62, 0x6c, 0x69, 0x63, 0x00, 0x00, 0x00, 0x0a, 0x73,
    0x65, 0x74, 0x2d, 0x63, 0x6f, 0x6f, 0x6b, 0x69, 0x65, 0x00, 0x00, 0x00, 0x0a, 0x6b, 0x65, 0x65,
    0x70, 0x2d, 0x61, 0x6c, 0x69, 0x76, 0x65, 0x00, 0x00, 0x00, 0x06, 0x6f, 0x72, 0x69, 0x67, 0x69,
    0x6e, 0x31, 0x30, 0x30, 0x31, 0x30, 0x31, 0x32, 0x30, 0x31, 0x32, 0x30, 0x32, 0x32, 0x30, 0x35,
    0x32, 0x30, 0x36, 0x33, 0x30, 0x30, 0x33, 0x30, 0x32, 0x33, 0x30, 0x33, 0x33, 0x30, 0x34, 0x33,
    0x30, 0x35, 0x33, 0x30, 0x36, 0x33, 0x30, 0x37, 0x34, 0x30, 0x32, 0x34, 0x30, 0x35, 0x34, 0x30,
    0x36, 0x34, 0x30, 0x37, 0x34, 0x30, 0x38, 0x34, 0x30, 0x39, 0x34, 0x31, 0x30, 0x34, 0x31, 0x31,
    0x34, 0x31, 0x32, 0x34, 0x31, 0x33, 0x34, 0x31, 0x34, 0x34, 0x31, 0x35, 0x34, 0x31, 0x36, 0x34,
    0x31, 0x37, 0x35, 0x30, 0x32, 0x35, 0x30, 0x34, 0x35, 0x30, 0x35, 0x32, 0x30, 0x33, 0x20, 0x4e,
    0x6f, 0x6e, 0x2d, 0x41, 0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x74, 0x61, 0x74, 0x69, 0x76, 0x65,
    0x20, 0x49, 0x6e, 0x66, 0x6f, 0x72, 0x6d, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x32, 0x30, 0x34, 0x20,
    0x4e, 0x6f, 0x20, 0x43, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x33, 0x30, 0x31, 0x20, 0x4d, 0x6f,
    0x76, 0x65, 0x64, 0x20, 0x50, 0x65, 0x72, 0x6d, 0x61, 0x6e, 0x65, 0x6e, 0x74, 0x6c, 0x79, 0x34,
    0x30, 0x30, 0x20, 0x42, 0x61, 0x64, 0x20, 0x52, 0x65, 0x71, 0x75, 0x65, 0x73, 0x74, 0x34, 0x30,
    0x31, 0x20, 0x55, 0x6e, 0x61, 0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x7a, 0x65, 0x64, 0x34, 0x30,
    0x33, 0x20, 0x46, 0x6f, 0x72, 0x62, 0x69, 0x64, 0x64, 0x65, 0x6e, 0x34, 0x30, 0x34, 0x20, 0x4e,
    0x6f, 0x74, 0x20, 0x46, 0x6f, 0x75, 0x6e, 0x64, 0x35, 0x30, 0x30, 0x20, 0x49, 0x6e, 0x74, 0x65,
    0x72, 0x6e, 0x61, 0x6c, 0x20, 0x53, 0x65, 0x72, 0x76, 0x65, 0x72, 0x20, 0x45, 0x72, 0x72, 0x6f,
    0x72, 0x35, 0x30, 0x31, 0x20, 0x4e, 0x6f, 0x74, 0x20, 0x49, 0x6d, 0x70, 0x6c, 0x65, 0x6d, 0x65,
    0x6e, 0x74, 0x65, 0x64, 0x35, 0x30, 0x33, 0x20, 0x53, 0x65, 0x72, 0x76, 0x69, 0x63, 0x65, 0x20,
    0x55, 0x6e, 0x61, 0x76, 0x61, 0x69, 0x6c, 0x61, 0x62, 0x6c, 0x65, 0x4a, 0x61, 0x6e, 0x20, 0x46,
    0x65, 0x62, 0x20, 0x4d, 0x61, 0x72, 0x20, 0x41, 0x70, 0x72, 0x20, 0x4d, 0x61, 0x79, 0x20, 0x4a,
    0x75, 0x6e, 0x20, 0x4a, 0x75, 0x6c, 0x20, 0x41, 0x75, 0x67, 0x20, 0x53, 0x65, 0x70, 0x74, 0x20,
    0x4f, 0x63, 0x74, 0x20, 0x4e, 0x6f, 0x76, 0x20, 0x44, 0x65, 0x63, 0x20, 0x30, 0x30, 0x3a, 0x30,
    0x30, 0x3a, 0x30, 0x30, 0x20, 0x4d, 0x6f, 0x6e, 0x2c, 0x20, 0x54, 0x75, 0x65, 0x2c, 0x20, 0x57,
    0x65, 0x64, 0x2c, 0x20, 0x54, 0x68, 0x75, 0x2c, 0x20, 0x46, 0x72, 0x69, 0x2c, 0x20, 0x53, 0x61,
    0x74, 0x2c, 0x20, 0x53, 0x75, 0x6e, 0x2c, 0x20, 0x47, 0x4d, 0x54, 0x63, 0x68, 0x75, 0x6e, 0x6b,
    0x65, 0x64, 0x2c, 0x74, 0x65, 0x78, 0x74, 0x2f, 0x68, 0x74, 0x6d, 0x6c, 0x2c, 0x69, 0x6d, 0x61,
    0x67, 0x65, 0x2f, 0x70, 0x6e, 0x67, 0x2c, 0x69, 0x6d, 0x61, 0x67, 0x65, 0x2f, 0x6a, 0x70, 0x67,
    0x2c, 0x69, 0x6d, 0x61, 0x67, 0x65, 0x2f, 0x67, 0x69, 0x66, 0x2c, 0x61, 0x70, 0x70, 0x6c, 0x69,
    0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x2f, 0x78, 0x6d, 0x6c, 0x2c, 0x61, 0x70, 0x70, 0x6c, 0x69,
    0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x2f, 0x78, 0x68, 0x74, 0x6d, 0x6c, 0x2b, 0x78, 0x6d, 0x6c,
    0x2c, 0x74, 0x65, 0x78, 0x74, 0x2f, 0x70, 0x6c, 0x61, 0x69, 0x6e, 0x2c, 0x74, 0x65, 0x78, 0x74,
    0x2f, 0x6a, 0x61, 0x76, 0x61, 0x73, 0x63, 0x72, 0x69, 0x70, 0x74, 0x2c, 0x70, 0x75, 0x62, 0x6c,
    0x69, 0x63, 0x70, 0x72, 0x69, 0x76, 0x61, 0x74, 0x65, 0x6d, 0x61, 0x78, 0x2d, 0x61, 0x67, 0x65,
    0x3d, 0x67, 0x7a, 0x69, 0x70, 0x2c, 0x64, 0x65, 0x66, 0x6c, 0x61, 0x74, 0x65, 0x2c, 0x73, 0x64,
    0x63, 0x68, 0x63, 0x68, 0x61, 0x72, 0x73, 0x65, 0x74, 0x3d, 0x75, 0x74, 0x66, 0x2d, 0x38, 0x63,
    0x68, 0x61, 0x72, 0x73, 0x65, 0x74, 0x3d, 0x69, 0x73, 0x6f, 0x2d, 0x38, 0x38, 0x35, 0x39, 0x2d,
    0x31, 0x2c, 0x75, 0x74, 0x66, 0x2d, 0x2c, 0x2a, 0x2c, 0x65, 0x6e, 0x71, 0x3d, 0x30, 0x2e,
];

/// Hard limits on what a peer can make us buffer or allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest DATA frame payload accepted (at most [`MAX_FRAME_PAYLOAD`],
    /// which the 24-bit length field cannot exceed anyway).
    pub max_data_payload: usize,
    /// Largest control frame payload accepted, compressed header block included.
    pub max_control_payload: usize,
    /// Largest decompressed header block; inflating stops with an error as
    /// soon as this is exceeded.
    pub max_header_block: usize,
    /// Most name/value pairs one header block may declare.
    pub max_headers: usize,
}

impl Limits {
    /// 16 MiB DATA frames, 1 MiB control frames, 256 KiB decompressed header
    /// blocks, 1024 headers per block.
    pub const DEFAULT: Limits = Limits {
        max_data_payload: MAX_FRAME_PAYLOAD,
        max_control_payload: 1 << 20,
        max_header_block: 256 << 10,
        max_headers: 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Everything that can go wrong reading or writing SPDY frames.
///
/// Every decode error is fatal to the connection: the header decompression
/// context may be out of step with the peer afterwards. Send GOAWAY
/// (PROTOCOL_ERROR) if possible and close.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpdyError {
    /// The transport failed.
    #[error("I/O error on the SPDY connection: {0}")]
    Io(#[from] std::io::Error),
    /// A frame header announced a payload larger than the configured limit.
    #[error("{kind} frame payload of {length} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// "DATA" or "control".
        kind: &'static str,
        /// Payload length announced (or, when encoding, produced).
        length: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A control frame carried a version other than 3.
    #[error("unsupported SPDY version {0} in a control frame (only SPDY/3 is spoken)")]
    UnsupportedVersion(u16),
    /// A frame's fixed layout was violated (wrong length, inconsistent count).
    #[error("malformed {frame} frame: {reason}")]
    MalformedFrame {
        /// Frame type name, e.g. "RST_STREAM".
        frame: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
    /// A stream id that is not allowed for this frame (0 where a stream is
    /// required, or above 2^31-1 when encoding).
    #[error("invalid stream id {id} in {frame} frame")]
    InvalidStreamId {
        /// Frame type name.
        frame: &'static str,
        /// The offending id.
        id: u32,
    },
    /// A field out of its range when encoding (priority, settings id, window delta).
    #[error("{field} value {value} out of range in outgoing {frame} frame")]
    FieldOutOfRange {
        /// Frame type name.
        frame: &'static str,
        /// Field name.
        field: &'static str,
        /// The value given.
        value: u64,
    },
    /// Inflating a header block produced more than `Limits::max_header_block` bytes.
    #[error("decompressed header block exceeds the limit of {limit} bytes")]
    HeaderBlockTooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// A header block declared more name/value pairs than `Limits::max_headers`.
    #[error("header block declares {count} headers, more than the limit of {limit}")]
    TooManyHeaders {
        /// Pairs declared.
        count: u32,
        /// The limit in force.
        limit: usize,
    },
    /// The decompressed header block does not follow the name/value layout.
    #[error("malformed header block: {0}")]
    MalformedHeaderBlock(&'static str),
    /// A header name or value is not acceptable (empty or uppercase name,
    /// NUL in a name or, when encoding, in a value, not UTF-8).
    #[error("invalid header {name:?}: {reason}")]
    InvalidHeader {
        /// The name (cut to 64 characters).
        name: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// The same header name appeared twice in one block (SPDY/3 forbids it:
    /// multiple values go in one NUL-separated value).
    #[error("duplicate header name {0:?} in header block")]
    DuplicateHeader(String),
    /// zlib rejected the peer's compressed header block.
    #[error("header block decompression failed: {0}")]
    Decompress(String),
    /// zlib failed compressing our header block.
    #[error("header block compression failed: {0}")]
    Compress(String),
}

/// A name for error messages: lossy UTF-8, at most 64 characters.
fn shorten(name: &[u8]) -> String {
    String::from_utf8_lossy(name).chars().take(64).collect()
}

/// Name/value pairs of a SYN_STREAM, SYN_REPLY or HEADERS frame.
///
/// Names are lowercase (lowercased on [`append`](Self::append)); a name may
/// carry several values, which travel as one NUL-separated value on the
/// wire and are split again when decoding. Order of first appearance is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderBlock {
    entries: Vec<(String, String)>,
}

impl HeaderBlock {
    /// An empty block.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value for `name` (lowercased), after any value it already has.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let mut name = name.into();
        name.make_ascii_lowercase();
        self.entries.push((name, value.into()));
    }

    /// Builder form of [`append`](Self::append).
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.append(name, value);
        self
    }

    /// The first value of `name` (compared ASCII case-insensitively).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every (name, value) pair, one per value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of (name, value) pairs, one per value.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The uncompressed SPDY/3 layout: a u32 pair count, then per distinct
    /// name a u32-length-prefixed name and a u32-length-prefixed value
    /// (values of one name joined with NUL).
    pub fn to_raw(&self) -> Result<Vec<u8>, SpdyError> {
        let mut names: Vec<&str> = Vec::new();
        for (name, _) in &self.entries {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        let mut out = Vec::with_capacity(
            4 + self
                .entries
                .iter()
                .map(|(n, v)| 9 + n.len() + v.len())
                .sum::<usize>(),
        );
        out.put_u32(len_u32(names.len())?);
        for name in names {
            check_name(name.as_bytes())?;
            let mut joined = String::new();
            for (i, value) in self.get_all(name).enumerate() {
                if value.contains('\0') {
                    return Err(SpdyError::InvalidHeader {
                        name: shorten(name.as_bytes()),
                        reason: "value contains NUL (use one value per append)",
                    });
                }
                if i > 0 {
                    joined.push('\0');
                }
                joined.push_str(value);
            }
            out.put_u32(len_u32(name.len())?);
            out.put_slice(name.as_bytes());
            out.put_u32(len_u32(joined.len())?);
            out.put_slice(joined.as_bytes());
        }
        Ok(out)
    }

    /// Parses the uncompressed SPDY/3 layout, enforcing `limits.max_headers`,
    /// lowercase non-empty names, no duplicate names, and UTF-8.
    pub fn from_raw(raw: &[u8], limits: &Limits) -> Result<Self, SpdyError> {
        let mut r = Reader(raw);
        let count = r.u32().ok_or(SpdyError::MalformedHeaderBlock(
            "shorter than its pair count",
        ))?;
        if u64::from(count) > limits.max_headers as u64 {
            return Err(SpdyError::TooManyHeaders {
                count,
                limit: limits.max_headers,
            });
        }
        // Each pair takes at least 8 bytes: a bad count cannot make us allocate.
        if u64::from(count) * 8 > r.0.len() as u64 {
            return Err(SpdyError::MalformedHeaderBlock(
                "pair count larger than the block can hold",
            ));
        }
        let mut seen: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
        let mut entries = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let name = r
                .chunk()
                .ok_or(SpdyError::MalformedHeaderBlock("truncated header name"))?;
            check_name(name)?;
            if !seen.insert(name) {
                return Err(SpdyError::DuplicateHeader(shorten(name)));
            }
            let value = r
                .chunk()
                .ok_or(SpdyError::MalformedHeaderBlock("truncated header value"))?;
            let name = std::str::from_utf8(name).map_err(|_| SpdyError::InvalidHeader {
                name: shorten(name),
                reason: "name is not UTF-8",
            })?;
            let value = std::str::from_utf8(value).map_err(|_| SpdyError::InvalidHeader {
                name: shorten(name.as_bytes()),
                reason: "value is not UTF-8",
            })?;
            for v in value.split('\0') {
                entries.push((name.to_owned(), v.to_owned()));
            }
        }
        if !r.0.is_empty() {
            return Err(SpdyError::MalformedHeaderBlock(
                "trailing bytes after the last header",
            ));
        }
        Ok(HeaderBlock { entries })
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for HeaderBlock {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut block = HeaderBlock::new();
        for (n, v) in iter {
            block.append(n, v);
        }
        block
    }
}

fn check_name(name: &[u8]) -> Result<(), SpdyError> {
    let reason = if name.is_empty() {
        "empty name"
    } else if name.contains(&0) {
        "name contains NUL"
    } else if name.iter().any(u8::is_ascii_uppercase) {
        "name is not lowercase"
    } else {
        return Ok(());
    };
    Err(SpdyError::InvalidHeader {
        name: shorten(name),
        reason,
    })
}

fn len_u32(len: usize) -> Result<u32, SpdyError> {
    u32::try_from(len)
        .map_err(|_| SpdyError::MalformedHeaderBlock("length does not fit in 32 bits"))
}

/// Bounds-checked big-endian reader over a byte slice: every read returns
/// `None` instead of panicking when the input is short.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        let (&b, tail) = self.0.split_first()?;
        self.0 = tail;
        Some(b)
    }

    fn u32(&mut self) -> Option<u32> {
        let (head, tail) = self.0.split_first_chunk::<4>()?;
        self.0 = tail;
        Some(u32::from_be_bytes(*head))
    }

    /// A u32 length followed by that many bytes.
    fn chunk(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u32()?).ok()?;
        self.take(len)
    }
}

/// The compression context for header blocks we send (one per connection).
///
/// zlib with the SPDY/3 dictionary; each block ends with a sync flush, and
/// the stream is never finished, so later blocks refer back to earlier ones.
#[derive(Debug)]
pub struct HeaderCompressor {
    inner: Compress,
    dictionary_set: bool,
}

impl Default for HeaderCompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderCompressor {
    /// A fresh context (the dictionary is installed before the first block).
    pub fn new() -> Self {
        HeaderCompressor {
            inner: Compress::new(Compression::default(), true),
            dictionary_set: false,
        }
    }

    /// Compresses one header block. The result is what goes in the frame.
    pub fn compress(&mut self, headers: &HeaderBlock) -> Result<Vec<u8>, SpdyError> {
        let raw = headers.to_raw()?;
        self.compress_raw(&raw)
    }

    /// Compresses an already laid-out block (see [`HeaderBlock::to_raw`]).
    pub fn compress_raw(&mut self, raw: &[u8]) -> Result<Vec<u8>, SpdyError> {
        if !self.dictionary_set {
            self.inner
                .set_dictionary(HEADER_DICTIONARY)
                .map_err(|e| SpdyError::Compress(e.to_string()))?;
            self.dictionary_set = true;
        }
        let mut out = Vec::with_capacity(raw.len() / 2 + 64);
        let mut consumed = 0usize;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            }
            let rest = raw.get(consumed..).unwrap_or_default();
            let before = self.inner.total_in();
            let out_before = out.len();
            self.inner
                .compress_vec(rest, &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compress(e.to_string()))?;
            let used = usize::try_from(self.inner.total_in() - before).unwrap_or(usize::MAX);
            consumed = consumed.saturating_add(used);
            let room_left = out.len() < out.capacity();
            // Input all taken and room left over: the sync flush is complete.
            if consumed >= raw.len() && room_left {
                return Ok(out);
            }
            if room_left && used == 0 && out.len() == out_before {
                return Err(SpdyError::Compress("deflate made no progress".into()));
            }
        }
    }
}

/// The decompression context for header blocks we receive (one per
/// connection), with the inflated size bounded per block.
#[derive(Debug)]
pub struct HeaderDecompressor {
    inner: Decompress,
}

impl Default for HeaderDecompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecompressor {
    /// A fresh context (expects a zlib header naming the SPDY/3 dictionary).
    pub fn new() -> Self {
        HeaderDecompressor {
            inner: Decompress::new(true),
        }
    }

    /// Inflates one compressed header block and parses it.
    pub fn decompress(
        &mut self,
        compressed: &[u8],
        limits: &Limits,
    ) -> Result<HeaderBlock, SpdyError> {
        let raw = self.inflate(compressed, limits.max_header_block)?;
        HeaderBlock::from_raw(&raw, limits)
    }

    /// Inflates one compressed block into at most `max` bytes.
    pub fn inflate(&mut self, input: &[u8], max: usize) -> Result<Vec<u8>, SpdyError> {
        // One byte over the limit is how we tell "exactly max" from "more".
        let cap_limit = max.saturating_add(1);
        let mut out = Vec::with_capacity(input.len().saturating_mul(4).max(256).min(cap_limit));
        let mut consumed = 0usize;
        let mut dictionary_set = false;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= cap_limit {
                    return Err(SpdyError::HeaderBlockTooLarge { limit: max });
                }
                let extra = out.capacity().max(256).min(cap_limit - out.len());
                out.reserve_exact(extra);
            }
            let rest = input.get(consumed..).unwrap_or_default();
            let in_before = self.inner.total_in();
            let out_before = out.len();
            let result = self
                .inner
                .decompress_vec(rest, &mut out, FlushDecompress::Sync);
            let used = usize::try_from(self.inner.total_in() - in_before).unwrap_or(usize::MAX);
            consumed = consumed.saturating_add(used);
            if out.len() > max {
                return Err(SpdyError::HeaderBlockTooLarge { limit: max });
            }
            match result {
                Ok(Status::StreamEnd) => {
                    return Err(SpdyError::Decompress(
                        "peer ended the header compression stream".into(),
                    ));
                }
                Ok(Status::Ok | Status::BufError) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(HEADER_DICTIONARY_ID) if !dictionary_set => {
                        self.inner
                            .set_dictionary(HEADER_DICTIONARY)
                            .map_err(|e| SpdyError::Decompress(e.to_string()))?;
                        dictionary_set = true;
                        continue;
                    }
                    Some(id) => {
                        return Err(SpdyError::Decompress(format!(
                            "stream asks for dictionary {id:#010x}, not the SPDY/3 dictionary"
                        )));
                    }
                    None => return Err(SpdyError::Decompress(e.to_string())),
                },
            }
            let room_left = out.len() < out.capacity();
            if consumed >= input.len() && room_left {
                return Ok(out);
            }
            if room_left && used == 0 && out.len() == out_before {
                return Err(SpdyError::Decompress("inflate made no progress".into()));
            }
        }
    }
}

/// Status code of a RST_STREAM frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RstStatus {
    /// 1: generic error, the peer broke the protocol.
    ProtocolError,
    /// 2: frame for a stream that is not active.
    InvalidStream,
    /// 3: stream refused before any processing.
    RefusedStream,
    /// 4: the recipient does not speak the stream's version.
    UnsupportedVersion,
    /// 5: the stream is no longer needed.
    Cancel,
    /// 6: implementation fault.
    InternalError,
    /// 7: flow-control violation.
    FlowControlError,
    /// 8: SYN_STREAM for a stream already open.
    StreamInUse,
    /// 9: data or SYN_REPLY for a half-closed stream.
    StreamAlreadyClosed,
    /// 10: credentials not valid (SPDY/3 CREDENTIAL; unused in practice).
    InvalidCredentials,
    /// 11: a frame too large for the recipient.
    FrameTooLarge,
    /// Any other code, kept verbatim.
    Other(u32),
}

impl From<u32> for RstStatus {
    fn from(code: u32) -> Self {
        match code {
            1 => Self::ProtocolError,
            2 => Self::InvalidStream,
            3 => Self::RefusedStream,
            4 => Self::UnsupportedVersion,
            5 => Self::Cancel,
            6 => Self::InternalError,
            7 => Self::FlowControlError,
            8 => Self::StreamInUse,
            9 => Self::StreamAlreadyClosed,
            10 => Self::InvalidCredentials,
            11 => Self::FrameTooLarge,
            other => Self::Other(other),
        }
    }
}

impl From<RstStatus> for u32 {
    fn from(status: RstStatus) -> u32 {
        match status {
            RstStatus::ProtocolError => 1,
            RstStatus::InvalidStream => 2,
            RstStatus::RefusedStream => 3,
            RstStatus::UnsupportedVersion => 4,
            RstStatus::Cancel => 5,
            RstStatus::InternalError => 6,
            RstStatus::FlowControlError => 7,
            RstStatus::StreamInUse => 8,
            RstStatus::StreamAlreadyClosed => 9,
            RstStatus::InvalidCredentials => 10,
            RstStatus::FrameTooLarge => 11,
            RstStatus::Other(code) => code,
        }
    }
}

/// Status code of a GOAWAY frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GoAwayStatus {
    /// 0: normal teardown.
    Ok,
    /// 1: the peer broke the protocol.
    ProtocolError,
    /// 2: implementation fault.
    InternalError,
    /// Any other code, kept verbatim.
    Other(u32),
}

impl From<u32> for GoAwayStatus {
    fn from(code: u32) -> Self {
        match code {
            0 => Self::Ok,
            1 => Self::ProtocolError,
            2 => Self::InternalError,
            other => Self::Other(other),
        }
    }
}

impl From<GoAwayStatus> for u32 {
    fn from(status: GoAwayStatus) -> u32 {
        match status {
            GoAwayStatus::Ok => 0,
            GoAwayStatus::ProtocolError => 1,
            GoAwayStatus::InternalError => 2,
            GoAwayStatus::Other(code) => code,
        }
    }
}

/// SYN_STREAM: opens a stream (kubelet opens one per channel: error,
/// stdin, stdout, stderr, resize; or data+error per forwarded connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynStream {
    /// New stream id (odd from the client, even from the server), non-zero.
    pub stream_id: u32,
    /// Stream this one is associated with (server push), 0 if none.
    pub associated_stream_id: u32,
    /// Priority 0 (highest) to 7.
    pub priority: u8,
    /// CREDENTIAL slot, 0 if none.
    pub slot: u8,
    /// FLAG_FIN: the sender half-closes right away.
    pub fin: bool,
    /// FLAG_UNIDIRECTIONAL: the recipient must not send on this stream.
    pub unidirectional: bool,
    /// The stream's headers (kubelet: `streamtype`, `port`, `requestid`).
    pub headers: HeaderBlock,
}

/// SYN_REPLY: accepts a stream opened by the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynReply {
    /// The stream being accepted.
    pub stream_id: u32,
    /// FLAG_FIN: the sender half-closes right away.
    pub fin: bool,
    /// Reply headers.
    pub headers: HeaderBlock,
}

/// RST_STREAM: aborts a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RstStream {
    /// The stream aborted, non-zero.
    pub stream_id: u32,
    /// Why.
    pub status: RstStatus,
}

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingsEntry {
    /// `FLAG_SETTINGS_PERSIST_VALUE` / `FLAG_SETTINGS_PERSISTED`.
    pub flags: u8,
    /// 24-bit id, e.g. [`SETTINGS_INITIAL_WINDOW_SIZE`].
    pub id: u32,
    /// The value.
    pub value: u32,
}

/// SETTINGS: connection parameters (e.g. initial window size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// FLAG_SETTINGS_CLEAR_SETTINGS.
    pub clear_settings: bool,
    /// The entries, in wire order.
    pub entries: Vec<SettingsEntry>,
}

/// PING: echo the same id back when it is the peer's (odd ids from the
/// client, even from the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping {
    /// Opaque id.
    pub id: u32,
}

/// GOAWAY: the sender accepts no new streams above `last_good_stream_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoAway {
    /// Last stream id the sender processed.
    pub last_good_stream_id: u32,
    /// Why.
    pub status: GoAwayStatus,
}

/// HEADERS: more headers for an open stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadersFrame {
    /// The stream, non-zero.
    pub stream_id: u32,
    /// FLAG_FIN: the sender half-closes with this frame.
    pub fin: bool,
    /// The headers.
    pub headers: HeaderBlock,
}

/// WINDOW_UPDATE: the recipient may send `delta` more bytes (SPDY/3.1:
/// stream 0 is the session-wide window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowUpdate {
    /// Stream, or 0 for the session.
    pub stream_id: u32,
    /// Window increase, 1 to 2^31-1 (0 decodes as-is; reject it in the session).
    pub delta: u32,
}

/// DATA: stream payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFrame {
    /// The stream, non-zero.
    pub stream_id: u32,
    /// FLAG_FIN: the sender half-closes with this frame.
    pub fin: bool,
    /// Payload (a zero-copy slice of the read buffer when decoded).
    pub data: Bytes,
}

/// A control frame of a type SPDY/3.1 does not define (or NOOP/CREDENTIAL);
/// the spec says to ignore it. Kept so it can be logged or re-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownControl {
    /// The 16-bit type.
    pub frame_type: u16,
    /// Raw flags.
    pub flags: u8,
    /// Raw payload.
    pub payload: Bytes,
}

/// One SPDY/3.1 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// SYN_STREAM (type 1).
    SynStream(SynStream),
    /// SYN_REPLY (type 2).
    SynReply(SynReply),
    /// RST_STREAM (type 3).
    RstStream(RstStream),
    /// SETTINGS (type 4).
    Settings(Settings),
    /// PING (type 6).
    Ping(Ping),
    /// GOAWAY (type 7).
    GoAway(GoAway),
    /// HEADERS (type 8).
    Headers(HeadersFrame),
    /// WINDOW_UPDATE (type 9).
    WindowUpdate(WindowUpdate),
    /// A DATA frame.
    Data(DataFrame),
    /// An unrecognised control frame, to be ignored.
    Unknown(UnknownControl),
}

impl Frame {
    /// The stream the frame belongs to, `None` for connection-level frames
    /// (SETTINGS, PING, GOAWAY, unknown). WINDOW_UPDATE returns its stream id,
    /// which is 0 for the session window.
    pub fn stream_id(&self) -> Option<u32> {
        match self {
            Frame::SynStream(f) => Some(f.stream_id),
            Frame::SynReply(f) => Some(f.stream_id),
            Frame::RstStream(f) => Some(f.stream_id),
            Frame::Headers(f) => Some(f.stream_id),
            Frame::WindowUpdate(f) => Some(f.stream_id),
            Frame::Data(f) => Some(f.stream_id),
            Frame::Settings(_) | Frame::Ping(_) | Frame::GoAway(_) | Frame::Unknown(_) => None,
        }
    }

    /// True if the frame carries FLAG_FIN (half-closes its stream).
    pub fn is_fin(&self) -> bool {
        match self {
            Frame::SynStream(f) => f.fin,
            Frame::SynReply(f) => f.fin,
            Frame::Headers(f) => f.fin,
            Frame::Data(f) => f.fin,
            _ => false,
        }
    }
}

/// The 8-byte header common to all frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameHeader {
    /// Control bit set.
    Control {
        /// Protocol version (3).
        version: u16,
        /// Frame type.
        frame_type: u16,
        /// Flags.
        flags: u8,
        /// Payload length.
        length: usize,
    },
    /// Control bit clear.
    Data {
        /// Stream id (31 bits).
        stream_id: u32,
        /// Flags.
        flags: u8,
        /// Payload length.
        length: usize,
    },
}

impl FrameHeader {
    /// Parses the first 8 bytes of `buf`; `None` if fewer are available.
    pub fn parse(buf: &[u8]) -> Option<FrameHeader> {
        let &[b0, b1, b2, b3, flags, l0, l1, l2] = buf.first_chunk::<FRAME_HEADER_LEN>()?;
        let length = u32::from_be_bytes([0, l0, l1, l2]) as usize;
        Some(if b0 & 0x80 != 0 {
            FrameHeader::Control {
                version: u16::from_be_bytes([b0 & 0x7f, b1]),
                frame_type: u16::from_be_bytes([b2, b3]),
                flags,
                length,
            }
        } else {
            FrameHeader::Data {
                stream_id: u32::from_be_bytes([b0, b1, b2, b3]) & MAX_STREAM_ID,
                flags,
                length,
            }
        })
    }

    /// Payload length announced.
    pub fn length(&self) -> usize {
        match *self {
            FrameHeader::Control { length, .. } | FrameHeader::Data { length, .. } => length,
        }
    }
}

/// Most bytes reserved in the read buffer at once while a frame is
/// incomplete, so a frame header alone cannot make us allocate its full
/// announced length.
const RESERVE_CHUNK: usize = 64 * 1024;

/// Decodes one frame from the front of `src`.
///
/// Returns `Ok(None)` (consuming nothing) until a whole frame is buffered.
/// Length limits and the control-frame version are checked from the frame
/// header alone, before the payload arrives. Header blocks are inflated with
/// `decompressor`, so frames must be decoded in wire order.
pub fn decode_frame(
    src: &mut BytesMut,
    decompressor: &mut HeaderDecompressor,
    limits: &Limits,
) -> Result<Option<Frame>, SpdyError> {
    let Some(header) = FrameHeader::parse(src) else {
        return Ok(None);
    };
    let length = header.length();
    match header {
        FrameHeader::Control { version, .. } => {
            if length > limits.max_control_payload {
                return Err(SpdyError::FrameTooLarge {
                    kind: "control",
                    length,
                    limit: limits.max_control_payload,
                });
            }
            if version != SPDY_VERSION {
                return Err(SpdyError::UnsupportedVersion(version));
            }
        }
        FrameHeader::Data { .. } => {
            if length > limits.max_data_payload {
                return Err(SpdyError::FrameTooLarge {
                    kind: "DATA",
                    length,
                    limit: limits.max_data_payload,
                });
            }
        }
    }
    let total = FRAME_HEADER_LEN + length;
    if src.len() < total {
        src.reserve((total - src.len()).min(RESERVE_CHUNK));
        return Ok(None);
    }
    let mut payload = src.split_to(total).freeze();
    payload.advance(FRAME_HEADER_LEN);
    match header {
        FrameHeader::Data {
            stream_id, flags, ..
        } => {
            if stream_id == 0 {
                return Err(SpdyError::InvalidStreamId {
                    frame: "DATA",
                    id: 0,
                });
            }
            Ok(Some(Frame::Data(DataFrame {
                stream_id,
                fin: flags & FLAG_FIN != 0,
                data: payload,
            })))
        }
        FrameHeader::Control {
            frame_type, flags, ..
        } => decode_control(frame_type, flags, payload, decompressor, limits).map(Some),
    }
}

fn decode_control(
    frame_type: u16,
    flags: u8,
    payload: Bytes,
    decompressor: &mut HeaderDecompressor,
    limits: &Limits,
) -> Result<Frame, SpdyError> {
    let mut r = Reader(&payload);
    let fin = flags & FLAG_FIN != 0;
    let malformed = |frame, reason| SpdyError::MalformedFrame { frame, reason };
    let frame = match frame_type {
        TYPE_SYN_STREAM => {
            const NAME: &str = "SYN_STREAM";
            let (Some(id), Some(assoc), Some(pri), Some(slot)) = (r.u32(), r.u32(), r.u8(), r.u8())
            else {
                return Err(malformed(NAME, "shorter than 10 bytes"));
            };
            let headers = decompressor.decompress(r.0, limits)?;
            Frame::SynStream(SynStream {
                stream_id: nonzero_stream(NAME, id & MAX_STREAM_ID)?,
                associated_stream_id: assoc & MAX_STREAM_ID,
                priority: pri >> 5,
                slot,
                fin,
                unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                headers,
            })
        }
        // SYN_REPLY and HEADERS share one layout: stream id, header block.
        TYPE_SYN_REPLY | TYPE_HEADERS => {
            let name = if frame_type == TYPE_SYN_REPLY {
                "SYN_REPLY"
            } else {
                "HEADERS"
            };
            let id = r.u32().ok_or(malformed(name, "shorter than 4 bytes"))?;
            let headers = decompressor.decompress(r.0, limits)?;
            let stream_id = nonzero_stream(name, id & MAX_STREAM_ID)?;
            if frame_type == TYPE_SYN_REPLY {
                Frame::SynReply(SynReply {
                    stream_id,
                    fin,
                    headers,
                })
            } else {
                Frame::Headers(HeadersFrame {
                    stream_id,
                    fin,
                    headers,
                })
            }
        }
        TYPE_RST_STREAM => {
            const NAME: &str = "RST_STREAM";
            let (8, Some(id), Some(status)) = (payload.len(), r.u32(), r.u32()) else {
                return Err(malformed(NAME, "length is not 8"));
            };
            Frame::RstStream(RstStream {
                stream_id: nonzero_stream(NAME, id & MAX_STREAM_ID)?,
                status: status.into(),
            })
        }
        TYPE_SETTINGS => {
            const NAME: &str = "SETTINGS";
            let count = r.u32().ok_or(malformed(NAME, "shorter than 4 bytes"))?;
            if u64::from(count) * 8 != r.0.len() as u64 {
                return Err(malformed(NAME, "entry count does not match the length"));
            }
            let mut entries = Vec::with_capacity(count as usize);
            while let (Some(flags_id), Some(value)) = (r.u32(), r.u32()) {
                entries.push(SettingsEntry {
                    flags: (flags_id >> 24) as u8,
                    id: flags_id & 0x00FF_FFFF,
                    value,
                });
            }
            Frame::Settings(Settings {
                clear_settings: flags & FLAG_SETTINGS_CLEAR_SETTINGS != 0,
                entries,
            })
        }
        TYPE_PING => {
            let (4, Some(id)) = (payload.len(), r.u32()) else {
                return Err(malformed("PING", "length is not 4"));
            };
            Frame::Ping(Ping { id })
        }
        TYPE_GOAWAY => {
            let (8, Some(last), Some(status)) = (payload.len(), r.u32(), r.u32()) else {
                return Err(malformed("GOAWAY", "length is not 8"));
            };
            Frame::GoAway(GoAway {
                last_good_stream_id: last & MAX_STREAM_ID,
                status: status.into(),
            })
        }
        TYPE_WINDOW_UPDATE => {
            let (8, Some(id), Some(delta)) = (payload.len(), r.u32(), r.u32()) else {
                return Err(malformed("WINDOW_UPDATE", "length is not 8"));
            };
            Frame::WindowUpdate(WindowUpdate {
                stream_id: id & MAX_STREAM_ID,
                delta: delta & MAX_WINDOW_DELTA,
            })
        }
        other => Frame::Unknown(UnknownControl {
            frame_type: other,
            flags,
            payload: payload.clone(),
        }),
    };
    Ok(frame)
}

fn nonzero_stream(frame: &'static str, id: u32) -> Result<u32, SpdyError> {
    if id == 0 {
        Err(SpdyError::InvalidStreamId { frame, id })
    } else {
        Ok(id)
    }
}

fn stream_in_range(frame: &'static str, id: u32, allow_zero: bool) -> Result<u32, SpdyError> {
    if id > MAX_STREAM_ID || (id == 0 && !allow_zero) {
        Err(SpdyError::InvalidStreamId { frame, id })
    } else {
        Ok(id)
    }
}

fn put_control(
    dst: &mut BytesMut,
    frame_type: u16,
    flags: u8,
    payload: &[u8],
) -> Result<(), SpdyError> {
    if payload.len() > MAX_FRAME_PAYLOAD {
        return Err(SpdyError::FrameTooLarge {
            kind: "control",
            length: payload.len(),
            limit: MAX_FRAME_PAYLOAD,
        });
    }
    dst.reserve(FRAME_HEADER_LEN + payload.len());
    dst.put_u16(0x8000 | SPDY_VERSION);
    dst.put_u16(frame_type);
    dst.put_u32((u32::from(flags) << 24) | payload.len() as u32);
    dst.put_slice(payload);
    Ok(())
}

/// Encodes `frame` onto the end of `dst`.
///
/// Fields are validated before anything is written or compressed; header
/// blocks go through `compressor`, so frames must be encoded in the order
/// they are sent. An error after compression (a compressed block over 16 MiB)
/// leaves the compression context ahead of the peer: close the connection.
pub fn encode_frame(
    frame: &Frame,
    compressor: &mut HeaderCompressor,
    dst: &mut BytesMut,
) -> Result<(), SpdyError> {
    match frame {
        Frame::Data(f) => {
            let id = stream_in_range("DATA", f.stream_id, false)?;
            if f.data.len() > MAX_FRAME_PAYLOAD {
                return Err(SpdyError::FrameTooLarge {
                    kind: "DATA",
                    length: f.data.len(),
                    limit: MAX_FRAME_PAYLOAD,
                });
            }
            let flags = if f.fin { FLAG_FIN } else { 0 };
            dst.reserve(FRAME_HEADER_LEN + f.data.len());
            dst.put_u32(id);
            dst.put_u32((u32::from(flags) << 24) | f.data.len() as u32);
            dst.put_slice(&f.data);
            Ok(())
        }
        Frame::SynStream(f) => {
            const NAME: &str = "SYN_STREAM";
            let id = stream_in_range(NAME, f.stream_id, false)?;
            let assoc = stream_in_range(NAME, f.associated_stream_id, true)?;
            if f.priority > 7 {
                return Err(SpdyError::FieldOutOfRange {
                    frame: NAME,
                    field: "priority",
                    value: f.priority.into(),
                });
            }
            let block = compressor.compress(&f.headers)?;
            let mut payload = Vec::with_capacity(10 + block.len());
            payload.put_u32(id);
            payload.put_u32(assoc);
            payload.put_u8(f.priority << 5);
            payload.put_u8(f.slot);
            payload.put_slice(&block);
            let mut flags = if f.fin { FLAG_FIN } else { 0 };
            if f.unidirectional {
                flags |= FLAG_UNIDIRECTIONAL;
            }
            put_control(dst, TYPE_SYN_STREAM, flags, &payload)
        }
        // SYN_REPLY and HEADERS share one layout: stream id, header block.
        Frame::SynReply(SynReply {
            stream_id,
            fin,
            headers,
        })
        | Frame::Headers(HeadersFrame {
            stream_id,
            fin,
            headers,
        }) => {
            let (name, kind) = match frame {
                Frame::SynReply(_) => ("SYN_REPLY", TYPE_SYN_REPLY),
                _ => ("HEADERS", TYPE_HEADERS),
            };
            let id = stream_in_range(name, *stream_id, false)?;
            let block = compressor.compress(headers)?;
            let mut payload = Vec::with_capacity(4 + block.len());
            payload.put_u32(id);
            payload.put_slice(&block);
            put_control(dst, kind, if *fin { FLAG_FIN } else { 0 }, &payload)
        }
        Frame::RstStream(f) => {
            let id = stream_in_range("RST_STREAM", f.stream_id, false)?;
            let mut payload = [0u8; 8];
            let (a, b) = payload.split_at_mut(4);
            a.copy_from_slice(&id.to_be_bytes());
            b.copy_from_slice(&u32::from(f.status).to_be_bytes());
            put_control(dst, TYPE_RST_STREAM, 0, &payload)
        }
        Frame::Settings(f) => {
            let mut payload = Vec::with_capacity(4 + 8 * f.entries.len());
            payload.put_u32(u32::try_from(f.entries.len()).map_err(|_| {
                SpdyError::FieldOutOfRange {
                    frame: "SETTINGS",
                    field: "entry count",
                    value: f.entries.len() as u64,
                }
            })?);
            for e in &f.entries {
                if e.id > 0x00FF_FFFF {
                    return Err(SpdyError::FieldOutOfRange {
                        frame: "SETTINGS",
                        field: "id",
                        value: e.id.into(),
                    });
                }
                payload.put_u32((u32::from(e.flags) << 24) | e.id);
                payload.put_u32(e.value);
            }
            let flags = if f.clear_settings {
                FLAG_SETTINGS_CLEAR_SETTINGS
            } else {
                0
            };
            put_control(dst, TYPE_SETTINGS, flags, &payload)
        }
        Frame::Ping(f) => put_control(dst, TYPE_PING, 0, &f.id.to_be_bytes()),
        Frame::GoAway(f) => {
            let last = stream_in_range("GOAWAY", f.last_good_stream_id, true)?;
            let mut payload = [0u8; 8];
            let (a, b) = payload.split_at_mut(4);
            a.copy_from_slice(&last.to_be_bytes());
            b.copy_from_slice(&u32::from(f.status).to_be_bytes());
            put_control(dst, TYPE_GOAWAY, 0, &payload)
        }
        Frame::WindowUpdate(f) => {
            let id = stream_in_range("WINDOW_UPDATE", f.stream_id, true)?;
            if f.delta == 0 || f.delta > MAX_WINDOW_DELTA {
                return Err(SpdyError::FieldOutOfRange {
                    frame: "WINDOW_UPDATE",
                    field: "delta",
                    value: f.delta.into(),
                });
            }
            let mut payload = [0u8; 8];
            let (a, b) = payload.split_at_mut(4);
            a.copy_from_slice(&id.to_be_bytes());
            b.copy_from_slice(&f.delta.to_be_bytes());
            put_control(dst, TYPE_WINDOW_UPDATE, 0, &payload)
        }
        Frame::Unknown(f) => put_control(dst, f.frame_type, f.flags, &f.payload),
    }
}

/// A [`Decoder`] + [`Encoder`] for SPDY/3.1 frames, owning the connection's
/// two header compression contexts and its [`Limits`].
///
/// Use it with `tokio_util::codec::Framed` on the upgraded connection. The
/// decoder only touches the decompressor and the encoder only the
/// compressor, so a connection split into `FramedRead` + `FramedWrite` can
/// equally use one `SpdyCodec` per half.
#[derive(Debug, Default)]
pub struct SpdyCodec {
    limits: Limits,
    compressor: HeaderCompressor,
    decompressor: HeaderDecompressor,
}

impl SpdyCodec {
    /// A codec with [`Limits::DEFAULT`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A codec with the given limits.
    pub fn with_limits(limits: Limits) -> Self {
        SpdyCodec {
            limits,
            ..Self::default()
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

impl Decoder for SpdyCodec {
    type Item = Frame;
    type Error = SpdyError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        decode_frame(src, &mut self.decompressor, &self.limits)
    }
}

impl Encoder<Frame> for SpdyCodec {
    type Error = SpdyError;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), SpdyError> {
        encode_frame(&item, &mut self.compressor, dst)
    }
}

impl Encoder<&Frame> for SpdyCodec {
    type Error = SpdyError;

    fn encode(&mut self, item: &Frame, dst: &mut BytesMut) -> Result<(), SpdyError> {
        encode_frame(item, &mut self.compressor, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_one(bytes: &[u8]) -> Result<Option<Frame>, SpdyError> {
        let mut codec = SpdyCodec::new();
        let mut buf = BytesMut::from(bytes);
        let frame = codec.decode(&mut buf)?;
        if frame.is_some() {
            assert!(buf.is_empty(), "frame left {} bytes behind", buf.len());
        }
        Ok(frame)
    }

    fn encode_one(frame: Frame) -> Vec<u8> {
        let mut codec = SpdyCodec::new();
        let mut buf = BytesMut::new();
        codec.encode(frame, &mut buf).expect("encode");
        buf.to_vec()
    }

    /// Decodes every whole frame in `buf` with `codec`.
    fn decode_all(codec: &mut SpdyCodec, buf: &mut BytesMut) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = codec.decode(buf).expect("decode") {
            frames.push(frame);
        }
        frames
    }

    /// Checks `bytes` decodes to `frame` and `frame` encodes to `bytes`.
    fn known_answer(bytes: &[u8], frame: Frame) {
        assert_eq!(decode_one(bytes).expect("decode"), Some(frame.clone()));
        assert_eq!(encode_one(frame), bytes);
    }

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in data {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    #[test]
    fn dictionary_is_the_spdy3_one() {
        assert_eq!(HEADER_DICTIONARY.len(), 1423);
        assert_eq!(adler32(HEADER_DICTIONARY), HEADER_DICTIONARY_ID);
        assert!(HEADER_DICTIONARY.starts_with(b"\0\0\0\x07options\0\0\0\x04head"));
        assert!(HEADER_DICTIONARY.ends_with(b",enq=0."));
    }

    #[test]
    fn ping_known_bytes() {
        known_answer(
            &[
                0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01,
            ],
            Frame::Ping(Ping { id: 1 }),
        );
    }

    #[test]
    fn rst_stream_known_bytes() {
        known_answer(
            &[
                0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08, // header
                0x00, 0x00, 0x00, 0x05, // stream 5
                0x00, 0x00, 0x00, 0x05, // CANCEL
            ],
            Frame::RstStream(RstStream {
                stream_id: 5,
                status: RstStatus::Cancel,
            }),
        );
    }

    #[test]
    fn window_update_known_bytes() {
        known_answer(
            &[
                0x80, 0x03, 0x00, 0x09, 0x00, 0x00, 0x00, 0x08, // header
                0x00, 0x00, 0x00, 0x03, // stream 3
                0x00, 0x01, 0x00, 0x00, // +65536
            ],
            Frame::WindowUpdate(WindowUpdate {
                stream_id: 3,
                delta: 65536,
            }),
        );
        // SPDY/3.1 session window: stream 0 is allowed.
        known_answer(
            &[
                0x80, 0x03, 0x00, 0x09, 0x00, 0x00, 0x00, 0x08, //
                0x00, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff,
            ],
            Frame::WindowUpdate(WindowUpdate {
                stream_id: 0,
                delta: MAX_WINDOW_DELTA,
            }),
        );
    }

    #[test]
    fn settings_two_entries_known_bytes() {
        known_answer(
            &[
                0x80, 0x03, 0x00, 0x04, 0x01, 0x00, 0x00, 0x14, // CLEAR_SETTINGS, length 20
                0x00, 0x00, 0x00, 0x02, // 2 entries
                0x01, 0x00, 0x00, 0x04, 0x00, 0x00, 0x03,
                0xe8, // PERSIST_VALUE, MAX_CONCURRENT_STREAMS = 1000
                0x00, 0x00, 0x00, 0x07, 0x00, 0x01, 0x00, 0x00, // INITIAL_WINDOW_SIZE = 65536
            ],
            Frame::Settings(Settings {
                clear_settings: true,
                entries: vec![
                    SettingsEntry {
                        flags: FLAG_SETTINGS_PERSIST_VALUE,
                        id: SETTINGS_MAX_CONCURRENT_STREAMS,
                        value: 1000,
                    },
                    SettingsEntry {
                        flags: 0,
                        id: SETTINGS_INITIAL_WINDOW_SIZE,
                        value: DEFAULT_INITIAL_WINDOW_SIZE,
                    },
                ],
            }),
        );
    }

    #[test]
    fn data_with_fin_known_bytes() {
        known_answer(
            &[
                0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x05, // stream 1, FIN, length 5
                b'h', b'e', b'l', b'l', b'o',
            ],
            Frame::Data(DataFrame {
                stream_id: 1,
                fin: true,
                data: Bytes::from_static(b"hello"),
            }),
        );
        // Empty DATA without FIN.
        known_answer(
            &[0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00],
            Frame::Data(DataFrame {
                stream_id: 2,
                fin: false,
                data: Bytes::new(),
            }),
        );
    }

    #[test]
    fn goaway_known_bytes() {
        known_answer(
            &[
                0x80, 0x03, 0x00, 0x07, 0x00, 0x00, 0x00, 0x08, //
                0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x01,
            ],
            Frame::GoAway(GoAway {
                last_good_stream_id: 7,
                status: GoAwayStatus::ProtocolError,
            }),
        );
    }

    /// Two header blocks compressed by CPython's zlib (level 9, the SPDY/3
    /// dictionary, Z_SYNC_FLUSH after each, one stream): an independent
    /// encoder, so this checks interoperability, not just self-consistency.
    /// The second block only decodes with the context left by the first.
    #[test]
    fn decodes_header_blocks_from_an_independent_zlib() {
        const BLOCK1: &[u8] = &[
            0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2, 0x02, 0x25, 0x3a, 0x48, 0xf9, 0x5b, 0x04, 0x4e,
            0xea, 0x16, 0x06, 0x16, 0x06, 0x40, 0x9a, 0xb3, 0x08, 0x12, 0x5f, 0x99, 0xa0, 0x74,
            0xcc, 0x68, 0x00, 0x4e, 0x89, 0x25, 0x45, 0xa9, 0x89, 0xb9, 0x48, 0x85, 0x4d, 0x22,
            0x00, 0x00, 0x00, 0xff, 0xff,
        ];
        const BLOCK2: &[u8] = &[
            0x02, 0xe5, 0x2c, 0x0c, 0x19, 0xd6, 0x54, 0x50, 0x24, 0x81, 0x92, 0x78, 0x85, 0x6e,
            0x6e, 0x69, 0x4e, 0x49, 0x26, 0xb8, 0xa0, 0x65, 0x48, 0x02, 0x00, 0x00, 0x00, 0xff,
            0xff,
        ];
        let mut wire = Vec::new();
        // SYN_STREAM, stream 1, no flags, priority 0.
        wire.extend_from_slice(&[
            0x80,
            0x03,
            0x00,
            0x01,
            0x00,
            0x00,
            0x00,
            10 + BLOCK1.len() as u8,
        ]);
        wire.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x00, 0x00]);
        wire.extend_from_slice(BLOCK1);
        // SYN_STREAM, stream 3, FIN|UNIDIRECTIONAL, priority 3, associated to 1.
        wire.extend_from_slice(&[
            0x80,
            0x03,
            0x00,
            0x01,
            0x03,
            0x00,
            0x00,
            10 + BLOCK2.len() as u8,
        ]);
        wire.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 1, 0x60, 0x00]);
        wire.extend_from_slice(BLOCK2);

        let mut codec = SpdyCodec::new();
        let frames = decode_all(&mut codec, &mut BytesMut::from(&wire[..]));
        assert_eq!(
            frames,
            vec![
                Frame::SynStream(SynStream {
                    stream_id: 1,
                    associated_stream_id: 0,
                    priority: 0,
                    slot: 0,
                    fin: false,
                    unidirectional: false,
                    headers: HeaderBlock::new()
                        .with("port", "8080")
                        .with("requestid", "0")
                        .with("streamtype", "data"),
                }),
                Frame::SynStream(SynStream {
                    stream_id: 3,
                    associated_stream_id: 1,
                    priority: 3,
                    slot: 0,
                    fin: true,
                    unidirectional: true,
                    headers: HeaderBlock::new()
                        .with("streamtype", "error")
                        .with("x-multi", "a")
                        .with("x-multi", "b"),
                }),
            ]
        );
        let Some(Frame::SynStream(second)) = frames.get(1) else {
            panic!("second frame is not SYN_STREAM");
        };
        assert_eq!(
            second.headers.get_all("x-multi").collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(second.headers.get("StreamType"), Some("error"));
    }

    /// A zlib stream made directly with flate2 (best compression, dictionary)
    /// rather than through `HeaderCompressor`.
    #[test]
    fn decodes_a_fresh_zlib_stream_with_dictionary() {
        let raw = HeaderBlock::new()
            .with("streamtype", "stdout")
            .to_raw()
            .expect("raw");
        let mut z = Compress::new(Compression::best(), true);
        z.set_dictionary(HEADER_DICTIONARY).expect("dictionary");
        let mut compressed = Vec::with_capacity(256);
        z.compress_vec(&raw, &mut compressed, FlushCompress::Sync)
            .expect("compress");
        assert_eq!(
            compressed.get(2..6),
            Some(&HEADER_DICTIONARY_ID.to_be_bytes()[..])
        );
        let headers = HeaderDecompressor::new()
            .decompress(&compressed, &Limits::DEFAULT)
            .expect("decompress");
        assert_eq!(headers.get("streamtype"), Some("stdout"));
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn header_blocks_round_trip_on_one_context() {
        let mut c = HeaderCompressor::new();
        let mut d = HeaderDecompressor::new();
        let first = HeaderBlock::new()
            .with("streamtype", "stdin")
            .with("X-Stream-Protocol-Version", "v4.channel.k8s.io")
            .with("x-multi", "one")
            .with("x-multi", "")
            .with("x-multi", "three");
        let second = first.clone().with("extra", "value");
        let a = c.compress(&first).expect("compress");
        let b = c.compress(&first).expect("compress");
        let e = c.compress(&second).expect("compress");
        // The context carries over: the same headers again cost almost nothing.
        assert!(
            b.len() < a.len() / 2,
            "second block {} vs first {}",
            b.len(),
            a.len()
        );
        assert_eq!(d.decompress(&a, &Limits::DEFAULT).expect("a"), first);
        assert_eq!(d.decompress(&b, &Limits::DEFAULT).expect("b"), first);
        assert_eq!(d.decompress(&e, &Limits::DEFAULT).expect("e"), second);
        assert_eq!(
            first.get("x-stream-protocol-version"),
            Some("v4.channel.k8s.io")
        );
        // Values of one name travel together: interleaved input comes back grouped.
        let interleaved = HeaderBlock::new()
            .with("a", "1")
            .with("b", "2")
            .with("a", "3");
        let grouped = HeaderBlock::new()
            .with("a", "1")
            .with("a", "3")
            .with("b", "2");
        let z = c.compress(&interleaved).expect("compress");
        assert_eq!(d.decompress(&z, &Limits::DEFAULT).expect("z"), grouped);
        // A fresh decompressor cannot read a later block.
        assert!(
            HeaderDecompressor::new()
                .decompress(&b, &Limits::DEFAULT)
                .is_err()
        );
    }

    fn sample_frames() -> Vec<Frame> {
        let headers = HeaderBlock::new()
            .with("streamtype", "stdout")
            .with("port", "80")
            .with("requestid", "1");
        vec![
            Frame::Settings(Settings {
                clear_settings: false,
                entries: vec![SettingsEntry {
                    flags: 0,
                    id: SETTINGS_INITIAL_WINDOW_SIZE,
                    value: 1 << 20,
                }],
            }),
            Frame::SynStream(SynStream {
                stream_id: 1,
                associated_stream_id: 0,
                priority: 7,
                slot: 2,
                fin: false,
                unidirectional: false,
                headers: headers.clone(),
            }),
            Frame::SynReply(SynReply {
                stream_id: 1,
                fin: false,
                headers: HeaderBlock::new(),
            }),
            Frame::SynStream(SynStream {
                stream_id: 3,
                associated_stream_id: 1,
                priority: 0,
                slot: 0,
                fin: true,
                unidirectional: true,
                headers: HeaderBlock::new()
                    .with("streamtype", "error")
                    .with("port", "80")
                    .with("requestid", "1"),
            }),
            Frame::SynReply(SynReply {
                stream_id: 3,
                fin: true,
                headers: headers.clone(),
            }),
            Frame::Headers(HeadersFrame {
                stream_id: 1,
                fin: true,
                headers: HeaderBlock::new().with("status", "done"),
            }),
            Frame::Data(DataFrame {
                stream_id: 1,
                fin: false,
                data: Bytes::from(vec![0xAB; 70_000]),
            }),
            Frame::Data(DataFrame {
                stream_id: MAX_STREAM_ID,
                fin: true,
                data: Bytes::new(),
            }),
            Frame::RstStream(RstStream {
                stream_id: 3,
                status: RstStatus::Other(42),
            }),
            Frame::Ping(Ping { id: 0xFFFF_FFFF }),
            Frame::WindowUpdate(WindowUpdate {
                stream_id: 1,
                delta: 1,
            }),
            Frame::GoAway(GoAway {
                last_good_stream_id: 3,
                status: GoAwayStatus::Ok,
            }),
            Frame::Unknown(UnknownControl {
                frame_type: 5, // NOOP, gone in SPDY/3
                flags: 0,
                payload: Bytes::new(),
            }),
            Frame::Unknown(UnknownControl {
                frame_type: 0x1234,
                flags: 0xff,
                payload: Bytes::from_static(b"ignored"),
            }),
        ]
    }

    #[test]
    fn every_frame_type_round_trips() {
        let frames = sample_frames();
        // Two codecs, like the two ends of a connection.
        let mut client = SpdyCodec::new();
        let mut server = SpdyCodec::new();
        let mut wire = BytesMut::new();
        for frame in &frames {
            client.encode(frame, &mut wire).expect("encode");
        }
        let whole = wire.clone();
        assert_eq!(decode_all(&mut server, &mut wire), frames);
        assert!(wire.is_empty());

        // Byte by byte through a third codec: same frames, no early returns.
        let mut trickle = SpdyCodec::new();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for &byte in whole.iter() {
            buf.put_u8(byte);
            if let Some(frame) = trickle.decode(&mut buf).expect("decode") {
                decoded.push(frame);
            }
        }
        assert_eq!(decoded, frames);
        for frame in &frames {
            let expected_fin = matches!(
                frame,
                Frame::SynStream(SynStream { fin: true, .. })
                    | Frame::SynReply(SynReply { fin: true, .. })
                    | Frame::Headers(HeadersFrame { fin: true, .. })
                    | Frame::Data(DataFrame { fin: true, .. })
            );
            assert_eq!(frame.is_fin(), expected_fin);
        }
        assert_eq!(frames.get(1).and_then(Frame::stream_id), Some(1));
        assert_eq!(frames.first().and_then(Frame::stream_id), None);
    }

    #[test]
    fn truncated_input_needs_more_bytes() {
        let mut wire = BytesMut::new();
        let mut codec = SpdyCodec::new();
        for frame in sample_frames() {
            let start = wire.len();
            codec.encode(frame, &mut wire).expect("encode");
            let one = wire.get(start..).expect("slice").to_vec();
            for cut in 0..one.len() {
                let mut buf = BytesMut::from(one.get(..cut).expect("prefix"));
                let mut fresh = SpdyCodec::new();
                assert!(
                    fresh.decode(&mut buf).expect("prefix decodes").is_none(),
                    "cut {cut}"
                );
                assert_eq!(buf.len(), cut, "a prefix must not be consumed");
            }
        }
        let mut empty = BytesMut::new();
        assert!(
            SpdyCodec::new()
                .decode(&mut empty)
                .expect("empty")
                .is_none()
        );
    }

    fn assert_err(bytes: &[u8], check: impl Fn(&SpdyError) -> bool) {
        match decode_one(bytes) {
            Err(e) => assert!(check(&e), "unexpected error: {e}"),
            Ok(frame) => panic!("expected an error, got {frame:?}"),
        }
    }

    #[test]
    fn oversized_frames_are_rejected_from_the_header() {
        // Control frame announcing 16 MiB - 1: rejected before any payload.
        assert_err(&[0x80, 0x03, 0x00, 0x01, 0x00, 0xff, 0xff, 0xff], |e| {
            matches!(
                e,
                SpdyError::FrameTooLarge {
                    kind: "control",
                    ..
                }
            )
        });
        // DATA over a configured limit.
        let mut codec = SpdyCodec::with_limits(Limits {
            max_data_payload: 1024,
            ..Limits::DEFAULT
        });
        assert_eq!(codec.limits().max_data_payload, 1024);
        let mut buf = BytesMut::from(&[0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x04, 0x01][..]);
        let err = codec.decode(&mut buf).expect_err("too large");
        assert!(matches!(
            err,
            SpdyError::FrameTooLarge {
                kind: "DATA",
                length: 1025,
                limit: 1024
            }
        ));
        assert!(err.to_string().contains("1025"));
        // An incomplete but allowed frame does not reserve its full length.
        let mut buf = BytesMut::from(&[0x00, 0x00, 0x00, 0x01, 0x00, 0xff, 0xff, 0xff][..]);
        assert!(
            SpdyCodec::new()
                .decode(&mut buf)
                .expect("partial")
                .is_none()
        );
        assert!(buf.capacity() < 1 << 20);
    }

    #[test]
    fn malformed_frames_are_errors() {
        // SPDY/2 control frame.
        assert_err(
            &[0x80, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1],
            |e| matches!(e, SpdyError::UnsupportedVersion(2)),
        );
        // PING of 5 bytes.
        assert_err(
            &[
                0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x05, 0, 0, 0, 1, 0,
            ],
            |e| matches!(e, SpdyError::MalformedFrame { frame: "PING", .. }),
        );
        // RST_STREAM of 4 bytes.
        assert_err(
            &[0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1],
            |e| {
                matches!(
                    e,
                    SpdyError::MalformedFrame {
                        frame: "RST_STREAM",
                        ..
                    }
                )
            },
        );
        // RST_STREAM for stream 0.
        assert_err(
            &[
                0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 0, 0, 0, 0, 1,
            ],
            |e| {
                matches!(
                    e,
                    SpdyError::InvalidStreamId {
                        frame: "RST_STREAM",
                        id: 0
                    }
                )
            },
        );
        // SETTINGS claiming 3 entries with room for 1.
        assert_err(
            &[
                0x80, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x0c, 0, 0, 0, 3, 0, 0, 0, 7, 0, 0, 0, 1,
            ],
            |e| {
                matches!(
                    e,
                    SpdyError::MalformedFrame {
                        frame: "SETTINGS",
                        ..
                    }
                )
            },
        );
        // SETTINGS with a huge count and no entries.
        assert_err(
            &[
                0x80, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x04, 0xff, 0xff, 0xff, 0xff,
            ],
            |e| {
                matches!(
                    e,
                    SpdyError::MalformedFrame {
                        frame: "SETTINGS",
                        ..
                    }
                )
            },
        );
        // DATA on stream 0.
        assert_err(
            &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00],
            |e| {
                matches!(
                    e,
                    SpdyError::InvalidStreamId {
                        frame: "DATA",
                        id: 0
                    }
                )
            },
        );
        // SYN_STREAM shorter than its fixed part.
        assert_err(
            &[0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1],
            |e| {
                matches!(
                    e,
                    SpdyError::MalformedFrame {
                        frame: "SYN_STREAM",
                        ..
                    }
                )
            },
        );
        // SYN_STREAM whose header block is not zlib.
        assert_err(
            &[
                0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x0e, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xde,
                0xad, 0xbe, 0xef,
            ],
            |e| matches!(e, SpdyError::Decompress(_)),
        );
        // GOAWAY of SPDY/2 length.
        assert_err(
            &[0x80, 0x03, 0x00, 0x07, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1],
            |e| {
                matches!(
                    e,
                    SpdyError::MalformedFrame {
                        frame: "GOAWAY",
                        ..
                    }
                )
            },
        );
    }

    /// Wraps a compressed block in a SYN_STREAM for stream 1.
    fn syn_stream_with_block(block: &[u8]) -> Vec<u8> {
        let len = 10 + block.len();
        let mut wire = vec![0x80, 0x03, 0x00, 0x01, 0x00];
        wire.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        wire.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        wire.extend_from_slice(block);
        wire
    }

    fn raw_block(pairs: &[Pair]) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.put_u32(pairs.len() as u32);
        for (n, v) in pairs {
            raw.put_u32(n.len() as u32);
            raw.put_slice(n);
            raw.put_u32(v.len() as u32);
            raw.put_slice(v);
        }
        raw
    }

    fn compressed(raw: &[u8]) -> Vec<u8> {
        HeaderCompressor::new().compress_raw(raw).expect("compress")
    }

    type Pair<'a> = (&'a [u8], &'a [u8]);
    type Check = fn(&SpdyError) -> bool;

    #[test]
    fn bad_header_blocks_are_errors() {
        let cases: [(&[Pair], Check); 5] = [
            (&[(b"Upper", b"x")], |e| {
                matches!(e, SpdyError::InvalidHeader { .. })
            }),
            (&[(b"", b"x")], |e| {
                matches!(e, SpdyError::InvalidHeader { .. })
            }),
            (&[(b"a\0b", b"x")], |e| {
                matches!(e, SpdyError::InvalidHeader { .. })
            }),
            (&[(b"a", b"\xff\xfe")], |e| {
                matches!(e, SpdyError::InvalidHeader { .. })
            }),
            (&[(b"dup", b"1"), (b"dup", b"2")], |e| {
                matches!(e, SpdyError::DuplicateHeader(_))
            }),
        ];
        for (pairs, check) in cases {
            assert_err(
                &syn_stream_with_block(&compressed(&raw_block(pairs))),
                check,
            );
        }
        // Trailing garbage after the declared pairs.
        let mut raw = raw_block(&[(b"a", b"b")]);
        raw.push(0);
        assert_err(&syn_stream_with_block(&compressed(&raw)), |e| {
            matches!(e, SpdyError::MalformedHeaderBlock(_))
        });
        // A count that the block cannot hold, and a count above the limit.
        let raw = [0x00, 0x00, 0x00, 0x05, 0, 0, 0, 1, b'a', 0, 0, 0, 0];
        assert_err(&syn_stream_with_block(&compressed(&raw)), |e| {
            matches!(e, SpdyError::MalformedHeaderBlock(_))
        });
        let raw = [0xff, 0xff, 0xff, 0xff];
        assert_err(&syn_stream_with_block(&compressed(&raw)), |e| {
            matches!(
                e,
                SpdyError::TooManyHeaders {
                    count: u32::MAX,
                    ..
                }
            )
        });
        // A name length running past the end.
        let raw = [0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff, b'a'];
        assert_err(&syn_stream_with_block(&compressed(&raw)), |e| {
            matches!(e, SpdyError::MalformedHeaderBlock(_))
        });
        // A zlib stream using some other dictionary.
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(b"not the spdy dictionary")
            .expect("dictionary");
        let mut block = Vec::with_capacity(256);
        z.compress_vec(&raw_block(&[(b"a", b"b")]), &mut block, FlushCompress::Sync)
            .expect("compress");
        assert_err(
            &syn_stream_with_block(&block),
            |e| matches!(e, SpdyError::Decompress(m) if m.contains("dictionary")),
        );
    }

    #[test]
    fn header_bomb_is_rejected_with_bounded_memory() {
        // 64 MiB of value compresses to ~64 KiB: well inside the control limit.
        let value = vec![b'a'; 64 << 20];
        let raw = raw_block(&[(b"bomb", &value)]);
        let block = compressed(&raw);
        drop(raw);
        assert!(block.len() < Limits::DEFAULT.max_control_payload);
        let mut d = HeaderDecompressor::new();
        let err = d.inflate(&block, 256 << 10).expect_err("bomb");
        assert!(matches!(err, SpdyError::HeaderBlockTooLarge { limit } if limit == 256 << 10));
        assert_err(&syn_stream_with_block(&block), |e| {
            matches!(e, SpdyError::HeaderBlockTooLarge { .. })
        });
    }

    #[test]
    fn header_block_limit_boundary() {
        let raw = raw_block(&[(b"k", &[b'v'; 1000])]);
        let block = compressed(&raw);
        let exact = HeaderDecompressor::new()
            .inflate(&block, raw.len())
            .expect("exactly at the limit");
        assert_eq!(exact, raw);
        assert!(
            HeaderDecompressor::new()
                .inflate(&block, raw.len() - 1)
                .is_err()
        );
        // Tiny limits work too (no panic on small buffers).
        for max in [0, 1, 10, 255] {
            assert!(matches!(
                HeaderDecompressor::new().inflate(&block, max),
                Err(SpdyError::HeaderBlockTooLarge { limit }) if limit == max
            ));
        }
        let mut limits = Limits::DEFAULT;
        limits.max_headers = 1;
        let two = compressed(&raw_block(&[(b"a", b"1"), (b"b", b"2")]));
        assert!(matches!(
            HeaderDecompressor::new().decompress(&two, &limits),
            Err(SpdyError::TooManyHeaders { count: 2, limit: 1 })
        ));
    }

    #[test]
    fn invalid_outgoing_frames_are_refused() {
        let mut codec = SpdyCodec::new();
        let mut buf = BytesMut::new();
        let bad = [
            Frame::Data(DataFrame {
                stream_id: MAX_STREAM_ID + 1,
                fin: false,
                data: Bytes::new(),
            }),
            Frame::Data(DataFrame {
                stream_id: 0,
                fin: false,
                data: Bytes::new(),
            }),
            Frame::SynStream(SynStream {
                stream_id: 1,
                associated_stream_id: 0,
                priority: 8,
                slot: 0,
                fin: false,
                unidirectional: false,
                headers: HeaderBlock::new(),
            }),
            Frame::WindowUpdate(WindowUpdate {
                stream_id: 1,
                delta: 0,
            }),
            Frame::Settings(Settings {
                clear_settings: false,
                entries: vec![SettingsEntry {
                    flags: 0,
                    id: 1 << 24,
                    value: 0,
                }],
            }),
            Frame::SynReply(SynReply {
                stream_id: 1,
                fin: false,
                headers: HeaderBlock::new().with("a", "b\0c"),
            }),
            Frame::Headers(HeadersFrame {
                stream_id: 1,
                fin: false,
                headers: HeaderBlock::new().with("", "x"),
            }),
        ];
        for frame in bad {
            assert!(codec.encode(&frame, &mut buf).is_err(), "{frame:?} encoded");
        }
        assert!(buf.is_empty());
    }

    /// xorshift64*: deterministic, dependency-free.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Feeds a codec until it has nothing more to say; errors are fine,
    /// panics and hangs are not.
    fn drain(codec: &mut SpdyCodec, buf: &mut BytesMut) {
        for _ in 0..1000 {
            match codec.decode(buf) {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            }
        }
        panic!("decoder produced 1000 frames from a short input");
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut valid = BytesMut::new();
        let mut encoder = SpdyCodec::new();
        for frame in sample_frames() {
            encoder.encode(frame, &mut valid).expect("encode");
        }
        let small = Limits {
            max_data_payload: 4096,
            max_control_payload: 4096,
            max_header_block: 512,
            max_headers: 8,
        };
        for round in 0..20_000 {
            let mut bytes: Vec<u8> = match round % 4 {
                // Pure noise.
                0 => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
                // A plausible control header followed by noise.
                1 => {
                    let mut v = vec![
                        0x80,
                        0x03,
                        0x00,
                        rng.below(12) as u8,
                        rng.next() as u8,
                        0,
                        0,
                    ];
                    let len = rng.below(48);
                    v.push(len as u8);
                    v.extend((0..len).map(|_| rng.next() as u8));
                    v
                }
                // Valid traffic with a few bytes flipped (reaches inflate).
                _ => {
                    let mut v = valid.to_vec();
                    for _ in 0..=rng.below(4) {
                        let i = rng.below(v.len());
                        if let Some(b) = v.get_mut(i) {
                            *b ^= 1 << rng.below(8);
                        }
                    }
                    v.truncate(rng.below(v.len() + 1));
                    v
                }
            };
            if round % 8 == 7 {
                bytes.reverse();
            }
            let mut codec = if round % 2 == 0 {
                SpdyCodec::new()
            } else {
                SpdyCodec::with_limits(small)
            };
            let mut buf = BytesMut::from(&bytes[..]);
            drain(&mut codec, &mut buf);
        }
    }
}
