//! A remote-command client over SPDY/3.1, as kubelet/kubectl speak it:
//! HTTP/1.1 upgrade with protocol negotiation, one stream per channel
//! (error, stdin, stdout, stderr, resize), each waited for until the server
//! answers, then data until every stream the server writes has ended.
//! Built on crius's own frame codec (tested separately against the spec).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use crius::streaming::spdy::{
    DataFrame, Frame, GoAway, GoAwayStatus, HeaderBlock, Ping, SpdyCodec, SynStream,
};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use super::pods::RuntimeClient;
use k8s_cri::v1::ExecRequest;

/// What a session produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The error stream's content (a `metav1.Status` JSON in v4).
    pub error: String,
    /// The protocol the server chose.
    pub protocol: String,
}

impl Outcome {
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.error)
            .unwrap_or_else(|e| panic!("error stream {:?} is not JSON: {e}", self.error))
    }
}

/// The HTTP answer to the upgrade request, when it is not 101.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: String,
}

/// A connection the client can speak over (TCP, or TLS over TCP).
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

pub struct Session {
    framed: Framed<Box<dyn Io>, SpdyCodec>,
    pub protocol: String,
    ids: HashMap<&'static str, u32>,
    next_id: u32,
}

/// Splits `http://host:port/path` (or https).
fn split_url(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .expect("http(s):// URL");
    let (host, path) = rest.split_at(rest.find('/').expect("URL has a path"));
    (host.to_owned(), path.to_owned())
}

/// Sends the upgrade request offering `protocols`; Err with the status and
/// body when the server does not switch protocols.
pub async fn connect(url: &str, protocols: &[&str]) -> Result<Session, Refused> {
    let (host, _) = split_url(url);
    let tcp = TcpStream::connect(&host)
        .await
        .expect("connect to the streaming server");
    connect_over(Box::new(tcp), url, protocols).await
}

/// [`connect`] over an established connection (e.g. TLS).
pub async fn connect_over(
    mut tcp: Box<dyn Io>,
    url: &str,
    protocols: &[&str],
) -> Result<Session, Refused> {
    let (host, path) = split_url(url);
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n"
    );
    for p in protocols {
        req.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes())
        .await
        .expect("send the request");
    // Read the response head byte by byte-ish (a BufReader would swallow
    // the first SPDY frames).
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        use tokio::io::AsyncReadExt;
        let n = tcp.read(&mut byte).await.expect("read the response");
        assert!(n == 1, "connection closed in the response head: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    if status != 101 {
        let mut body = String::new();
        let mut r = BufReader::new(tcp);
        let _ = tokio::time::timeout(Duration::from_secs(2), r.read_line(&mut body)).await;
        return Err(Refused { status, body });
    }
    let protocol = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-stream-protocol-version")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    Ok(Session {
        framed: Framed::new(tcp, SpdyCodec::new()),
        protocol,
        ids: HashMap::new(),
        next_id: 1,
    })
}

impl Session {
    /// Opens a stream of `kind` and waits for the server's reply.
    pub async fn open(&mut self, kind: &'static str) {
        let id = self
            .open_with(HeaderBlock::new().with("streamtype", kind))
            .await;
        self.ids.insert(kind, id);
    }

    pub async fn send(&mut self, kind: &str, data: &[u8], fin: bool) {
        let id = self.ids[kind];
        self.framed
            .send(Frame::Data(DataFrame {
                stream_id: id,
                fin,
                data: Bytes::copy_from_slice(data),
            }))
            .await
            .expect("send DATA");
    }

    pub async fn ping(&mut self, id: u32) {
        self.framed
            .send(Frame::Ping(Ping { id }))
            .await
            .expect("send PING");
    }

    /// Reads until every stream the server writes (error, stdout, stderr)
    /// has ended, or the connection closes; `on_data` sees each chunk
    /// (kind, bytes) and may send (e.g. stdin after a prompt).
    pub async fn run(&mut self, secs: u64) -> Outcome {
        let mut out = Outcome {
            protocol: self.protocol.clone(),
            ..Default::default()
        };
        let by_id: HashMap<u32, &'static str> = self.ids.iter().map(|(k, v)| (*v, *k)).collect();
        let mut open: Vec<u32> = ["error", "stdout", "stderr"]
            .iter()
            .filter_map(|k| self.ids.get(k).copied())
            .collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while !open.is_empty() {
            let f = match tokio::time::timeout_at(deadline, self.framed.next()).await {
                Err(_) => panic!("session still open after {secs}s: {out:?}"),
                Ok(None) => break,
                Ok(Some(f)) => f.expect("valid frame from the server"),
            };
            match f {
                Frame::Data(d) => {
                    match by_id.get(&d.stream_id).copied() {
                        Some("stdout") => out.stdout.extend_from_slice(&d.data),
                        Some("stderr") => out.stderr.extend_from_slice(&d.data),
                        Some("error") => out.error.push_str(&String::from_utf8_lossy(&d.data)),
                        _ => {}
                    }
                    if d.fin {
                        open.retain(|i| *i != d.stream_id);
                    }
                }
                // Some servers (containerd) end streams with RST_STREAM.
                Frame::RstStream(r) => open.retain(|i| *i != r.stream_id),
                Frame::Ping(_) | Frame::WindowUpdate(_) | Frame::SynReply(_) => {}
                other => panic!("unexpected frame {other:?}"),
            }
        }
        out
    }

    /// Hangs up politely.
    pub async fn close(mut self) {
        let _ = self
            .framed
            .send(Frame::GoAway(GoAway {
                last_good_stream_id: 0,
                status: GoAwayStatus::Ok,
            }))
            .await;
        let _ = SinkExt::<Frame>::close(&mut self.framed).await;
    }

    /// Waits for the next frame of stream `kind` carrying data.
    pub async fn next_data(&mut self, kind: &str, secs: u64) -> Vec<u8> {
        let id = self.ids[kind];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let f = tokio::time::timeout_at(deadline, self.framed.next())
                .await
                .expect("data in time")
                .expect("connection open")
                .expect("valid frame");
            if let Frame::Data(d) = f
                && d.stream_id == id
                && !d.data.is_empty()
            {
                return d.data.to_vec();
            }
        }
    }

    /// Opens a stream with `headers`, waits for the reply; its id.
    pub async fn open_with(&mut self, headers: HeaderBlock) -> u32 {
        let id = self.next_id;
        self.next_id += 2;
        self.framed
            .send(Frame::SynStream(SynStream {
                stream_id: id,
                associated_stream_id: 0,
                priority: 0,
                slot: 0,
                fin: false,
                unidirectional: false,
                headers,
            }))
            .await
            .expect("send SYN_STREAM");
        loop {
            let f = tokio::time::timeout(Duration::from_secs(10), self.framed.next())
                .await
                .expect("SYN_REPLY in time")
                .expect("connection open")
                .expect("valid frame");
            match f {
                Frame::SynReply(r) if r.stream_id == id => return id,
                Frame::Data(_) | Frame::WindowUpdate(_) | Frame::Ping(_) => {}
                other => panic!("expected SYN_REPLY for {id}, got {other:?}"),
            }
        }
    }

    pub async fn send_to(&mut self, id: u32, data: &[u8], fin: bool) {
        self.framed
            .send(Frame::Data(DataFrame {
                stream_id: id,
                fin,
                data: Bytes::copy_from_slice(data),
            }))
            .await
            .expect("send DATA");
    }

    /// Reads until each of `ids` has ended (FIN); the bytes each carried.
    pub async fn collect(&mut self, ids: &[u32], secs: u64) -> HashMap<u32, Vec<u8>> {
        let mut got: HashMap<u32, Vec<u8>> = ids.iter().map(|i| (*i, Vec::new())).collect();
        let mut open: Vec<u32> = ids.to_vec();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while !open.is_empty() {
            let f = tokio::time::timeout_at(deadline, self.framed.next())
                .await
                .unwrap_or_else(|_| panic!("streams {open:?} still open after {secs}s: {got:?}"))
                .expect("connection open")
                .expect("valid frame");
            if let Frame::Data(d) = f
                && let Some(buf) = got.get_mut(&d.stream_id)
            {
                buf.extend_from_slice(&d.data);
                if d.fin {
                    open.retain(|i| *i != d.stream_id);
                }
            }
        }
        got
    }
}

// ---- exec sessions as kubelet opens them --------------------------------

/// An Exec request for `cmd` in container `id` (stderr only without a terminal).
pub fn exec_req(id: &str, cmd: &[&str], stdin: bool, tty: bool) -> ExecRequest {
    ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        stdout: true,
        stderr: !tty,
    }
}

/// The streaming URL the Exec call returns.
pub async fn url(rt: &mut RuntimeClient, req: ExecRequest) -> String {
    rt.exec(req)
        .await
        .unwrap_or_else(|e| panic!("Exec: {e:?}"))
        .into_inner()
        .url
}

/// Connects and opens the streams a kubelet would for `req`.
pub async fn session(url: &str, req: &ExecRequest, protocols: &[&str]) -> Session {
    let mut s = connect(url, protocols)
        .await
        .unwrap_or_else(|r| panic!("upgrade refused: {} {}", r.status, r.body));
    s.open("error").await;
    if req.stdin {
        s.open("stdin").await;
    }
    s.open("stdout").await;
    if req.stderr {
        s.open("stderr").await;
    }
    if req.tty {
        s.open("resize").await;
    }
    s
}
