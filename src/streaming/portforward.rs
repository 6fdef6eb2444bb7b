//! Kubernetes' port-forward protocol (`portforward.k8s.io`) over SPDY/3.1:
//! for each forwarded connection the client opens an `error` and a `data`
//! stream carrying the same `requestid` and the target `port`. Once both
//! are there the server connects to `localhost:<port>` inside the pod's
//! network namespace (a host-network pod: the host's) and copies bytes
//! both ways; a failed connect is reported on that request's error stream
//! and the session stays open for the next one.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::AsFd as _;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::mpsc;

use super::remotecommand::{Timeouts, ack, data, finish, goaway, reply, split_session};
use super::spdy::{Frame, GoAwayStatus};

/// A PortForward request waiting for its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForwardSpec {
    pub pod_id: String,
    /// The pod's pinned network namespace; `None` for a host-network pod.
    pub netns: Option<PathBuf>,
}

/// How long a connect inside the pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CHUNK: usize = 32 * 1024;

/// One forwarded connection as its streams arrive.
#[derive(Debug, Default)]
struct Request {
    error: Option<u32>,
    data: Option<u32>,
    /// To the target connection's writer; dropped at the end of input.
    to_target: Option<mpsc::Sender<Bytes>>,
}

/// Connects to `localhost:port` from inside `netns` (on a thread of its
/// own: `setns` changes only the calling thread, and a tokio thread must
/// never change namespace).
async fn connect_in(netns: Option<PathBuf>, port: u16) -> std::io::Result<TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = (|| {
            if let Some(ns) = &netns {
                let f = std::fs::File::open(ns)?;
                nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
            }
            let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT)
                .or_else(|e| TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|_| e))
        })();
        let _ = tx.send(result);
    });
    rx.await
        .map_err(|_| std::io::Error::other("the connecting thread died"))?
}

/// Connects to `localhost:port` in `netns` and copies both ways: bytes
/// from `from_client` to the target (its closing ends the target's input),
/// the target's bytes through `send` (false: stop). Err: the connect
/// failed; the message is for the client's error stream.
async fn forward<S, Fut>(
    netns: Option<PathBuf>,
    port: u16,
    pod: &str,
    mut from_client: mpsc::Receiver<Bytes>,
    mut send: S,
) -> Result<(), String>
where
    S: FnMut(Bytes) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let conn = connect_in(netns, port).await.and_then(|c| {
        c.set_nonblocking(true)?;
        tokio::net::TcpStream::from_std(c)
    });
    let conn = conn.map_err(|e| format!("error forwarding port {port} to pod {pod}: {e}"))?;
    let (mut rd, mut wr) = conn.into_split();
    let inbound = async move {
        while let Some(bytes) = from_client.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let outbound = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !send(Bytes::copy_from_slice(&buf[..n])).await {
                        break;
                    }
                }
            }
        }
    };
    tokio::join!(inbound, outbound);
    Ok(())
}

/// Runs one port-forward session on an upgraded connection.
pub async fn serve_portforward<IO>(io: IO, spec: PortForwardSpec, timeouts: Timeouts)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut frames, tx, writer) = split_session(io);
    let mut requests: HashMap<String, Request> = HashMap::new();
    // Stream id → (request id, is the data stream).
    let mut streams: HashMap<u32, (String, bool)> = HashMap::new();
    let mut tasks = Vec::new();
    loop {
        let frame = match tokio::time::timeout(timeouts.idle, frames.next()).await {
            Ok(Some(Ok(f))) => f,
            Ok(Some(Err(e))) => {
                tracing::debug!(error = %e, "port-forward: bad frame");
                let _ = tx.send(goaway(GoAwayStatus::ProtocolError)).await;
                break;
            }
            Ok(None) | Err(_) => break,
        };
        match frame {
            Frame::SynStream(s) => {
                reply(&tx, s.stream_id).await;
                let kind = s.headers.get("streamtype").unwrap_or_default();
                let request_id = s.headers.get("requestid").unwrap_or_default().to_owned();
                let port = s.headers.get("port").and_then(|p| p.parse::<u16>().ok());
                let is_data = match kind {
                    "data" => true,
                    "error" => false,
                    _ => continue,
                };
                let r = requests.entry(request_id.clone()).or_default();
                if is_data {
                    r.data = Some(s.stream_id);
                } else {
                    r.error = Some(s.stream_id);
                }
                streams.insert(s.stream_id, (request_id.clone(), is_data));
                let (Some(error_id), Some(data_id)) = (r.error, r.data) else {
                    continue;
                };
                let Some(port) = port.filter(|p| *p > 0) else {
                    let msg = format!(
                        "invalid port {:?} for request {request_id:?}",
                        s.headers.get("port").unwrap_or_default()
                    );
                    let _ = tx.send(data(error_id, true, Bytes::from(msg))).await;
                    let _ = tx.send(data(data_id, true, Bytes::new())).await;
                    continue;
                };
                let (to_target, from_client) = mpsc::channel::<Bytes>(16);
                r.to_target = Some(to_target);
                let (tx, netns, pod) = (tx.clone(), spec.netns.clone(), spec.pod_id.clone());
                tasks.push(tokio::spawn(async move {
                    let sent = |chunk| {
                        let tx = tx.clone();
                        async move { tx.send(data(data_id, false, chunk)).await.is_ok() }
                    };
                    let result = forward(netns, port, &pod, from_client, sent).await;
                    if let Err(msg) = result {
                        let _ = tx.send(data(error_id, true, Bytes::from(msg))).await;
                        let _ = tx.send(data(data_id, true, Bytes::new())).await;
                        return;
                    }
                    let _ = tx.send(data(data_id, true, Bytes::new())).await;
                    let _ = tx.send(data(error_id, true, Bytes::new())).await;
                }));
            }
            Frame::Data(d) => {
                ack(&tx, &d).await;
                let Some((request_id, true)) = streams.get(&d.stream_id) else {
                    continue;
                };
                let Some(r) = requests.get_mut(request_id) else {
                    continue;
                };
                if let Some(to) = &r.to_target
                    && !d.data.is_empty()
                {
                    let _ = to.send(d.data.clone()).await;
                }
                if d.fin {
                    // Dropping the sender ends the target's input.
                    r.to_target = None;
                }
            }
            Frame::RstStream(r) => {
                // The client gave up on one connection: stop feeding it.
                if let Some((request_id, _)) = streams.get(&r.stream_id)
                    && let Some(req) = requests.get_mut(request_id)
                {
                    req.to_target = None;
                }
            }
            Frame::Ping(p) => {
                let _ = tx.send(Frame::Ping(p)).await;
            }
            Frame::GoAway(_) => break,
            _ => {}
        }
    }
    for t in &tasks {
        t.abort();
    }
    finish(tx, writer).await;
}

/// Port-forward over WebSocket (`v4.channel.k8s.io`, or its base64 text
/// form): the ports come from the URL's `port` query parameters; port `i`
/// has data channel `2i` and error channel `2i+1`; the server first sends
/// the port number (u16, little-endian) on both, then copies bytes on the
/// data channel; a failed connect is written on the error channel.
pub async fn serve_portforward_ws<IO>(
    io: IO,
    spec: PortForwardSpec,
    ports: Vec<u16>,
    base64: bool,
    timeouts: Timeouts,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use base64::Engine as _;
    use futures_util::SinkExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        io,
        tokio_tungstenite::tungstenite::protocol::Role::Server,
        None,
    )
    .await;
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<(u8, Bytes)>(64);
    let writer = tokio::spawn(async move {
        while let Some((channel, data)) = rx.recv().await {
            let msg = if base64 {
                let mut t = char::from(b'0' + channel % 10).to_string();
                t.push_str(&base64::engine::general_purpose::STANDARD.encode(&data));
                Message::Text(t.into())
            } else {
                let mut b = Vec::with_capacity(1 + data.len());
                b.push(channel);
                b.extend_from_slice(&data);
                Message::Binary(b.into())
            };
            if sink.send(msg).await.is_err() {
                break;
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    });
    let mut targets: Vec<Option<mpsc::Sender<Bytes>>> = Vec::new();
    let mut tasks = Vec::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let (Ok(data_ch), Ok(err_ch)) = (u8::try_from(2 * i), u8::try_from(2 * i + 1)) else {
            break;
        };
        let prefix = Bytes::copy_from_slice(&port.to_le_bytes());
        let _ = tx.send((data_ch, prefix.clone())).await;
        let _ = tx.send((err_ch, prefix)).await;
        let (to_target, from_client) = mpsc::channel::<Bytes>(16);
        targets.push(Some(to_target));
        let (tx, netns, pod) = (tx.clone(), spec.netns.clone(), spec.pod_id.clone());
        tasks.push(tokio::spawn(async move {
            let sent = |chunk| {
                let tx = tx.clone();
                async move { tx.send((data_ch, chunk)).await.is_ok() }
            };
            if let Err(msg) = forward(netns, port, &pod, from_client, sent).await {
                let _ = tx.send((err_ch, Bytes::from(msg))).await;
            }
        }));
    }
    loop {
        let msg = match tokio::time::timeout(timeouts.idle, stream.next()).await {
            Ok(Some(Ok(m))) => m,
            _ => break,
        };
        let (channel, data) = match msg {
            Message::Binary(b) if !base64 => match b.split_first() {
                Some((c, rest)) => (*c, Bytes::copy_from_slice(rest)),
                None => continue,
            },
            Message::Text(t) if base64 => {
                let mut chars = t.as_str().chars();
                let Some(c) = chars.next().and_then(|c| c.to_digit(10)) else {
                    continue;
                };
                match base64::engine::general_purpose::STANDARD.decode(chars.as_str()) {
                    Ok(d) => (c as u8, Bytes::from(d)),
                    Err(_) => continue,
                }
            }
            Message::Close(_) => break,
            _ => continue,
        };
        // Only data channels carry client bytes.
        if channel % 2 == 0
            && let Some(Some(t)) = targets.get(usize::from(channel / 2))
            && !data.is_empty()
        {
            let _ = t.send(data).await;
        }
    }
    targets.clear();
    for t in &tasks {
        t.abort();
    }
    drop(tx);
    let _ = writer.await;
}
