//! Exec and Attach over WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`,
//! `channel.k8s.io`, `base64.channel.k8s.io`). Rather than a second copy of
//! the session logic, the WebSocket is adapted to the SPDY session model:
//! every channel is a stream that exists from the start (ids `2n + 1` for
//! channel `n`: stdin 0, stdout 1, stderr 2, error 3, resize 4), each
//! message is DATA on its channel's stream, v5's close signal (`255, n`) is
//! a FIN, and the session's FIN on the error stream closes the WebSocket.
//! Binary messages carry the channel in their first byte; with
//! `base64.channel.k8s.io`, text messages carry it as an ASCII digit before
//! base64 data.

use base64::Engine as _;
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::spdy::{DataFrame, Frame, HeaderBlock, SpdyError, SynStream};

/// The WebSocket subprotocols served for exec and attach, most preferred
/// first.
pub const PROTOCOLS: [&str; 4] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];

/// v5's close signal: `[CLOSE, channel]` ends that channel.
const CLOSE: u8 = 255;
const ERROR_CHANNEL: u32 = 3;
/// Largest message accepted from the client.
const MAX_MESSAGE: usize = 1 << 20;

const CHANNELS: [&str; 5] = ["stdin", "stdout", "stderr", "error", "resize"];

fn stream_id(channel: u8) -> u32 {
    u32::from(channel) * 2 + 1
}

/// The `Sec-WebSocket-Accept` value for a client's key.
pub fn accept_key(key: &str) -> String {
    tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes())
}

/// Adapts an upgraded WebSocket: a stream of SPDY frames (the channels'
/// SYN_STREAMs first), the sender a session writes frames to, and the
/// writer task that turns them into messages.
pub async fn adapt<IO>(
    io: IO,
    protocol: &'static str,
) -> (
    impl futures_util::Stream<Item = Result<Frame, SpdyError>> + Unpin + Send,
    mpsc::Sender<Frame>,
    tokio::task::JoinHandle<()>,
)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let ws = WebSocketStream::from_raw_socket(
        io,
        tokio_tungstenite::tungstenite::protocol::Role::Server,
        Some(config),
    )
    .await;
    let (mut sink, stream) = ws.split();
    let base64 = protocol == "base64.channel.k8s.io";

    let opened = futures_util::stream::iter((0u8..5).map(|c| {
        Ok(Frame::SynStream(SynStream {
            stream_id: stream_id(c),
            associated_stream_id: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers: HeaderBlock::new().with("streamtype", CHANNELS[usize::from(c)]),
        }))
    }));
    let inbound = stream
        .take_while(|m| {
            let go = !matches!(m, Ok(Message::Close(_)) | Err(_));
            async move { go }
        })
        .filter_map(move |m| async move {
            let frame = match m {
                Ok(Message::Binary(b)) if !base64 => binary_frame(&b),
                Ok(Message::Text(t)) if base64 => text_frame(t.as_str()),
                Ok(_) => None,
                Err(_) => None,
            };
            frame.map(Ok)
        });
    let frames = Box::pin(opened.chain(inbound));

    let (tx, mut rx) = mpsc::channel::<Frame>(64);
    let writer = tokio::spawn(async move {
        while let Some(f) = rx.recv().await {
            let Frame::Data(d) = f else { continue };
            let channel = u8::try_from((d.stream_id.saturating_sub(1)) / 2).unwrap_or(0);
            if !d.data.is_empty() {
                let msg = if base64 {
                    let mut t = char::from(b'0' + channel).to_string();
                    t.push_str(&base64::engine::general_purpose::STANDARD.encode(&d.data));
                    Message::Text(t.into())
                } else {
                    let mut b = Vec::with_capacity(1 + d.data.len());
                    b.push(channel);
                    b.extend_from_slice(&d.data);
                    Message::Binary(b.into())
                };
                if sink.send(msg).await.is_err() {
                    break;
                }
            }
            if d.fin && d.stream_id == ERROR_CHANNEL * 2 + 1 {
                // The outcome is out: the session is over.
                let _ = sink.send(Message::Close(None)).await;
                break;
            }
        }
        let _ = sink.close().await;
    });
    (frames, tx, writer)
}

fn binary_frame(b: &[u8]) -> Option<Frame> {
    let (&channel, rest) = b.split_first()?;
    if channel == CLOSE {
        let &closed = rest.first()?;
        return Some(data(closed, Bytes::new(), true));
    }
    Some(data(channel, Bytes::copy_from_slice(rest), false))
}

fn text_frame(t: &str) -> Option<Frame> {
    let mut chars = t.chars();
    let channel = u8::try_from(chars.next()?.to_digit(10)?).ok()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(chars.as_str())
        .ok()?;
    Some(data(channel, Bytes::from(bytes), false))
}

fn data(channel: u8, bytes: Bytes, fin: bool) -> Frame {
    Frame::Data(DataFrame {
        stream_id: stream_id(channel),
        fin,
        data: bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_map_to_channel_streams() {
        let Some(Frame::Data(d)) = binary_frame(b"\x00hello") else {
            panic!("stdin data")
        };
        assert_eq!((d.stream_id, &d.data[..], d.fin), (1, &b"hello"[..], false));
        let Some(Frame::Data(d)) = binary_frame(&[255, 0]) else {
            panic!("close signal")
        };
        assert_eq!((d.stream_id, d.fin), (1, true));
        assert!(binary_frame(b"").is_none());
        assert!(binary_frame(&[255]).is_none());
        let Some(Frame::Data(d)) = text_frame("4eyJXaWR0aCI6MX0=") else {
            panic!("base64 resize")
        };
        assert_eq!((d.stream_id, &d.data[..]), (9, &br#"{"Width":1}"#[..]));
        assert!(text_frame("x!!").is_none());
    }
}
