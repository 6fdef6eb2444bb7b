//! Kubernetes' remote-command protocol over SPDY/3.1 for Exec: the client
//! opens one stream per channel (`streamtype` header: `error`, `stdin`,
//! `stdout`, `stderr`, `resize`), the server answers each, starts the
//! command once the expected streams are there, copies stdin in and
//! stdout/stderr (or the terminal) out as DATA frames, applies resize
//! messages (`{"Width":…,"Height":…}`) to the terminal, and finally writes
//! the outcome on the error stream: a `metav1.Status` JSON in v4/v5, the
//! error text (only on failure) before that. Then it half-closes every
//! stream and waits for the client to hang up, so no output is cut off.
//!
//! Flow control: SPDY/3.1 windows are not enforced on what we send (Go's
//! spdystream, which kubelet and kubectl use, neither sends WINDOW_UPDATE
//! for its reads nor expects the server to wait); we do send WINDOW_UPDATE
//! for what we read, for clients that enforce windows on their side.

use std::collections::HashMap;
use std::os::fd::{AsFd as _, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt as _};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};

use super::spdy::{
    DataFrame, Frame, GoAway, GoAwayStatus, HeaderBlock, SpdyCodec, SpdyError, SynReply,
    WindowUpdate,
};
use crate::monitor::client::{read_frame, write_frame};
use crate::monitor::proto::AttachFrame;
use crate::runtime::container::{ContainerError, ContainerManager, ExecIo};

/// An Exec request waiting for its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    pub container_id: String,
    pub cmd: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// Session timeouts (from the config).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For the client to open its streams.
    pub stream_creation: Duration,
    /// Without traffic either way.
    pub idle: Duration,
}

/// How long output may still arrive after the command exited.
const DRAIN: Duration = Duration::from_secs(2);
/// How long we wait for the client to hang up after the last frame.
const LINGER: Duration = Duration::from_secs(5);
/// Largest DATA frame we send.
const CHUNK: usize = 32 * 1024;
/// Largest resize message buffered before it is a protocol error.
const MAX_RESIZE_BUFFER: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Channel {
    Error,
    Stdin,
    Stdout,
    Stderr,
    Resize,
}

impl Channel {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "error" => Channel::Error,
            "stdin" => Channel::Stdin,
            "stdout" => Channel::Stdout,
            "stderr" => Channel::Stderr,
            "resize" => Channel::Resize,
            _ => return None,
        })
    }
}

/// The streams a request asks for (exec and attach alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stdio {
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
}

impl From<&ExecSpec> for Stdio {
    fn from(s: &ExecSpec) -> Self {
        Stdio {
            tty: s.tty,
            stdin: s.stdin,
            stdout: s.stdout,
            stderr: s.stderr,
        }
    }
}

impl From<&AttachSpec> for Stdio {
    fn from(s: &AttachSpec) -> Self {
        Stdio {
            tty: s.tty,
            stdin: s.stdin,
            stdout: s.stdout,
            stderr: s.stderr,
        }
    }
}

/// The channels a client must open for `io` under `protocol`.
fn expected(io: Stdio, protocol: Option<&str>) -> Vec<Channel> {
    let mut v = vec![Channel::Error];
    if io.stdin {
        v.push(Channel::Stdin);
    }
    if io.stdout {
        v.push(Channel::Stdout);
    }
    if io.stderr && !io.tty {
        v.push(Channel::Stderr);
    }
    let resize = matches!(
        protocol,
        Some("v3.channel.k8s.io" | "v4.channel.k8s.io" | "v5.channel.k8s.io")
    );
    if io.tty && resize {
        v.push(Channel::Resize);
    }
    v
}

/// Whether the error channel carries a JSON `Status` (v4 and later).
fn json_status(protocol: Option<&str>) -> bool {
    matches!(protocol, Some("v4.channel.k8s.io" | "v5.channel.k8s.io"))
}

/// The error-channel message for an outcome (`None`: nothing to write).
fn status_message(protocol: Option<&str>, outcome: &Result<i32, String>) -> Option<String> {
    if json_status(protocol) {
        let v = match outcome {
            Ok(0) => serde_json::json!({"metadata": {}, "status": "Success"}),
            Ok(code) => serde_json::json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("command terminated with non-zero exit code: exit status {code}"),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            }),
            Err(e) => serde_json::json!({
                "metadata": {},
                "status": "Failure",
                "message": e,
            }),
        };
        return Some(v.to_string());
    }
    match outcome {
        Ok(0) => None,
        Ok(code) => Some(format!(
            "command terminated with non-zero exit code: exit status {code}"
        )),
        Err(e) => Some(e.clone()),
    }
}

/// The terminal master, read and written without blocking a thread.
#[derive(Debug)]
struct Pty(AsyncFd<OwnedFd>);

impl Pty {
    fn new(fd: OwnedFd) -> std::io::Result<Self> {
        let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        Ok(Pty(crate::sys::process::async_fd(fd)?))
    }

    /// 0 at the end (EIO: every process holding the terminal is gone).
    async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut guard = self.0.readable().await?;
            match guard
                .try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(std::io::Error::from))
            {
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(r) => return r,
                Err(_) => continue,
            }
        }
    }

    async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.0.writable().await?;
            match guard
                .try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(std::io::Error::from))
            {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_) => continue,
            }
        }
        Ok(())
    }

    fn resize(&self, width: u16, height: u16) {
        let _ = crate::sys::process::set_winsize(self.0.get_ref().as_fd(), width, height);
    }
}

/// When output last went to the client, so that a session is idle only
/// when nothing moves either way.
#[derive(Debug, Clone)]
struct Activity {
    start: std::time::Instant,
    last_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: std::time::Instant::now(),
            last_ms: Arc::default(),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long since the last output.
    fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(std::sync::atomic::Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Where client stdin goes.
enum Input {
    Pipe(pipe::Sender),
    Pty(Arc<Pty>),
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TermSize {
    width: u16,
    height: u16,
}

/// A session's frame reader, the sender its writer task drains, and that
/// task (see [`finish`]).
pub(super) type Session<F> = (F, mpsc::Sender<Frame>, tokio::task::JoinHandle<()>);

/// Splits an upgraded connection into a frame reader and a writer task fed
/// by a channel (so any task may send frames).
pub(super) fn split_session<IO>(io: IO) -> Session<FramedRead<tokio::io::ReadHalf<IO>, SpdyCodec>>
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let frames = FramedRead::new(rd, SpdyCodec::new());
    let (tx, mut rx) = mpsc::channel::<Frame>(64);
    let writer = tokio::spawn(async move {
        let mut sink = FramedWrite::new(wr, SpdyCodec::new());
        while let Some(f) = rx.recv().await {
            if let Err(e) = sink.send(f).await {
                tracing::debug!(error = %e, "streaming: writing a frame");
                break;
            }
        }
        let _ = SinkExt::<Frame>::close(&mut sink).await;
    });
    (frames, tx, writer)
}

/// The channels' stream ids, and the reverse map.
type Streams = (HashMap<Channel, u32>, HashMap<u32, Channel>);

/// Answers the client's SYN_STREAMs until every channel in `want` is open
/// (`None`: the client gave up, erred or took longer than `timeout`).
async fn open_streams<F>(
    frames: &mut F,
    tx: &mpsc::Sender<Frame>,
    want: &[Channel],
    timeout: Duration,
    container: &str,
) -> Option<Streams>
where
    F: FrameSource,
{
    let mut streams: HashMap<Channel, u32> = HashMap::new();
    let mut by_id: HashMap<u32, Channel> = HashMap::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while !want.iter().all(|c| streams.contains_key(c)) {
        let frame = match tokio::time::timeout_at(deadline, frames.next()).await {
            Ok(Some(Ok(f))) => f,
            Ok(Some(Err(e))) => {
                tracing::debug!(error = %e, "streaming: bad frame while opening streams");
                let _ = tx.send(goaway(GoAwayStatus::ProtocolError)).await;
                return None;
            }
            Ok(None) => return None,
            Err(_) => {
                tracing::info!(
                    container,
                    "streaming: the client did not open its streams in time"
                );
                return None;
            }
        };
        match frame {
            Frame::SynStream(s) => {
                let channel = s.headers.get("streamtype").and_then(Channel::parse);
                reply(tx, s.stream_id).await;
                if let Some(c) = channel {
                    streams.insert(c, s.stream_id);
                    by_id.insert(s.stream_id, c);
                }
            }
            Frame::Ping(p) => {
                let _ = tx.send(Frame::Ping(p)).await;
            }
            _ => {}
        }
    }
    Some((streams, by_id))
}

/// Where a session's client frames come from: a SPDY connection, or a
/// WebSocket adapted to SPDY frames (see [`super::websocket`]).
pub trait FrameSource:
    futures_util::Stream<Item = Result<Frame, SpdyError>> + Unpin + Send
{
}
impl<T> FrameSource for T where
    T: futures_util::Stream<Item = Result<Frame, SpdyError>> + Unpin + Send
{
}

/// What a remote-command session runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Exec(ExecSpec),
    Attach(AttachSpec),
}

/// Runs an exec or attach session on `session` (SPDY, or a WebSocket
/// adapted to SPDY frames).
pub(super) async fn serve<F: FrameSource>(
    session: Session<F>,
    command: Command,
    protocol: Option<&'static str>,
    containers: ContainerManager,
    timeouts: Timeouts,
) {
    let (mut frames, tx, writer) = session;
    let (io, container) = match &command {
        Command::Exec(s) => (Stdio::from(s), s.container_id.clone()),
        Command::Attach(s) => (Stdio::from(s), s.container_id.clone()),
    };
    let want = expected(io, protocol);
    let Some(streams) = open_streams(
        &mut frames,
        &tx,
        &want,
        timeouts.stream_creation,
        &container,
    )
    .await
    else {
        return finish(tx, writer).await;
    };
    let session = (frames, tx, writer);
    match command {
        Command::Exec(spec) => {
            exec_session(session, streams, spec, protocol, containers, timeouts).await
        }
        Command::Attach(spec) => {
            attach_session(session, streams, spec, protocol, containers, timeouts).await
        }
    }
}

/// The exec session; `tx` feeds the writer task.
async fn exec_session<F: FrameSource>(
    (mut frames, tx, writer): Session<F>,
    (streams, by_id): Streams,
    spec: ExecSpec,
    protocol: Option<&'static str>,
    containers: ContainerManager,
    timeouts: Timeouts,
) {
    // 1. The command (the client's streams are open: `serve`).
    let started = containers
        .start_exec(
            &spec.container_id,
            spec.cmd.clone(),
            ExecIo {
                stdin: spec.stdin && !spec.tty,
                tty: spec.tty,
            },
            None,
        )
        .await;
    let (exec, waiter) = match started {
        Ok(x) => x,
        Err(e) => {
            return conclude(frames, tx, writer, &streams, protocol, Err(e.to_string())).await;
        }
    };

    // 2. Output pumps.
    let mut pty = match exec.pty.map(Pty::new).transpose() {
        Ok(p) => p.map(Arc::new),
        Err(e) => {
            tracing::warn!(error = %e, "streaming: terminal");
            None
        }
    };
    let mut pumps = Vec::new();
    let activity = Activity::new();
    let stdout_id = streams.get(&Channel::Stdout).copied();
    if let Some(p) = &pty {
        let (p, tx, activity) = (p.clone(), tx.clone(), activity.clone());
        pumps.push(tokio::spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match p.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        activity.touch();
                        if let Some(id) = stdout_id {
                            let _ = tx
                                .send(data(id, false, Bytes::copy_from_slice(&buf[..n])))
                                .await;
                        }
                    }
                }
            }
        }));
    }
    for (fd, channel) in [
        (exec.stdout, Channel::Stdout),
        (exec.stderr, Channel::Stderr),
    ] {
        let Some(fd) = fd else { continue };
        let Ok(mut rx_pipe) = pipe::Receiver::from_owned_fd(fd) else {
            continue;
        };
        let id = streams.get(&channel).copied();
        let (tx, activity) = (tx.clone(), activity.clone());
        pumps.push(tokio::spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match rx_pipe.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    // Not asked for: read and dropped, so the command
                    // never blocks on a full pipe.
                    Ok(n) => {
                        activity.touch();
                        if let Some(id) = id {
                            let _ = tx
                                .send(data(id, false, Bytes::copy_from_slice(&buf[..n])))
                                .await;
                        }
                    }
                }
            }
        }));
    }
    let mut input = match (&pty, exec.stdin) {
        (Some(p), _) if spec.stdin => Some(Input::Pty(p.clone())),
        (None, Some(fd)) => pipe::Sender::from_owned_fd(fd).ok().map(Input::Pipe),
        _ => None,
    };

    // 3. Client frames until the command exits.
    let mut exit = Box::pin(waiter.wait());
    let mut resize_buf: Vec<u8> = Vec::new();
    let outcome: Result<i32, String> = loop {
        tokio::select! {
            r = &mut exit => break r.map_err(|e: ContainerError| e.to_string()),
            f = tokio::time::timeout(timeouts.idle, frames.next()) => {
                let frame = match f {
                    Ok(Some(Ok(frame))) => frame,
                    Ok(Some(Err(e))) => {
                        tracing::debug!(error = %e, "streaming: bad frame");
                        let _ = tx.send(goaway(GoAwayStatus::ProtocolError)).await;
                        input = None;
                        break (&mut exit).await.map_err(|e| e.to_string());
                    }
                    // Quiet on the client's side, but output still flows.
                    Err(_) if activity.quiet_for() < timeouts.idle => continue,
                    // The client went away (or the session idled out): the
                    // session ends; stdin closes and a terminal hangs up
                    // (its master closes: SIGHUP), as when a terminal
                    // disconnects; the command decides the rest.
                    Ok(None) | Err(_) => {
                        drop(input);
                        drop(pty.take());
                        for p in &pumps {
                            p.abort();
                        }
                        return finish(tx, writer).await;
                    }
                };
                match frame {
                    Frame::Data(d) => {
                        ack(&tx, &d).await;
                        match by_id.get(&d.stream_id) {
                            Some(Channel::Stdin) => {
                                let ok = match &mut input {
                                    Some(Input::Pipe(p)) => p.write_all(&d.data).await.is_ok(),
                                    Some(Input::Pty(p)) => p.write_all(&d.data).await.is_ok(),
                                    None => true,
                                };
                                if d.fin || !ok {
                                    // End of input: close the pipe (a
                                    // terminal has no end; it stays).
                                    if matches!(input, Some(Input::Pipe(_))) {
                                        input = None;
                                    }
                                }
                            }
                            Some(Channel::Resize) => {
                                resize_buf.extend_from_slice(&d.data);
                                apply_resizes(&mut resize_buf, pty.as_deref());
                            }
                            _ => {}
                        }
                    }
                    Frame::Ping(p) => {
                        let _ = tx.send(Frame::Ping(p)).await;
                    }
                    Frame::GoAway(_) => {
                        input = None;
                        break (&mut exit).await.map_err(|e| e.to_string());
                    }
                    _ => {}
                }
            }
        }
    };
    drop(input);

    // 4. The rest of the output, then the outcome, then half-close.
    let drained = tokio::time::timeout(DRAIN, async {
        for p in &mut pumps {
            let _ = p.await;
        }
    })
    .await;
    if drained.is_err() {
        for p in &pumps {
            p.abort();
        }
    }
    conclude(frames, tx, writer, &streams, protocol, outcome).await;
}

/// An Attach request waiting for its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachSpec {
    pub container_id: String,
    /// The container's own setting (a terminal has one output stream).
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// The attach session: the container's output (from its monitor) to the
/// client, the client's stdin and resizes to the container, until the
/// container exits (a Success status) or the client detaches.
async fn attach_session<F: FrameSource>(
    (mut frames, tx, writer): Session<F>,
    (streams, by_id): Streams,
    spec: AttachSpec,
    protocol: Option<&'static str>,
    containers: ContainerManager,
    timeouts: Timeouts,
) {
    let attached = containers
        .attach(
            &spec.container_id,
            spec.stdin,
            spec.stdout,
            spec.stderr && !spec.tty,
        )
        .await;
    let (id, sock) = match attached {
        Ok(x) => x,
        Err(e) => {
            return conclude(frames, tx, writer, &streams, protocol, Err(e.to_string())).await;
        }
    };
    let (mut from_monitor, mut to_monitor) = sock.into_split();
    let (out_id, err_id) = (
        streams.get(&Channel::Stdout).copied(),
        streams.get(&Channel::Stderr).copied(),
    );
    let pump_tx = tx.clone();
    let activity = Activity::new();
    let pump_activity = activity.clone();
    // Ends when the container has exited (true) or the monitor went away.
    let mut pump = tokio::spawn(async move {
        loop {
            match read_frame::<AttachFrame, _>(&mut from_monitor).await {
                Ok(f) if f.close => return true,
                Ok(f) => {
                    pump_activity.touch();
                    let target = match f.stream {
                        1 => out_id,
                        2 => err_id,
                        _ => None,
                    };
                    if let (Some(sid), false) = (target, f.data.is_empty()) {
                        let _ = pump_tx.send(data(sid, false, Bytes::from(f.data))).await;
                    }
                }
                Err(_) => return false,
            }
        }
    });
    let mut resize_buf: Vec<u8> = Vec::new();
    let ended = loop {
        tokio::select! {
            r = &mut pump => break r.unwrap_or(false),
            f = tokio::time::timeout(timeouts.idle, frames.next()) => {
                let frame = match f {
                    Ok(Some(Ok(frame))) => frame,
                    Err(_) if activity.quiet_for() < timeouts.idle => continue,
                    // Detached (or a bad frame, or idle): the container runs on.
                    _ => {
                        pump.abort();
                        drop(to_monitor);
                        return finish(tx, writer).await;
                    }
                };
                match frame {
                    Frame::Data(d) => {
                        ack(&tx, &d).await;
                        match by_id.get(&d.stream_id) {
                            Some(Channel::Stdin) => {
                                let f = AttachFrame {
                                    stream: 0,
                                    data: d.data.to_vec(),
                                    close: d.fin,
                                };
                                if (!f.data.is_empty() || f.close)
                                    && write_frame(&mut to_monitor, &f).await.is_err()
                                {
                                    // The monitor is gone; the pump ends too.
                                }
                            }
                            Some(Channel::Resize) => {
                                resize_buf.extend_from_slice(&d.data);
                                for (w, h) in take_resizes(&mut resize_buf) {
                                    let _ = containers.resize(&id, w, h).await;
                                }
                            }
                            _ => {}
                        }
                    }
                    Frame::Ping(p) => {
                        let _ = tx.send(Frame::Ping(p)).await;
                    }
                    Frame::GoAway(_) => {
                        pump.abort();
                        drop(to_monitor);
                        return finish(tx, writer).await;
                    }
                    _ => {}
                }
            }
        }
    };
    drop(to_monitor);
    let outcome = if ended {
        Ok(0)
    } else {
        Err(format!("lost the connection to container {id}'s monitor"))
    };
    conclude(frames, tx, writer, &streams, protocol, outcome).await;
}

/// Ends a session: the outcome on the error stream, every stream
/// half-closed, the client given time to hang up.
async fn conclude<F: FrameSource>(
    mut frames: F,
    tx: mpsc::Sender<Frame>,
    writer: tokio::task::JoinHandle<()>,
    streams: &HashMap<Channel, u32>,
    protocol: Option<&str>,
    outcome: Result<i32, String>,
) {
    if let (Some(msg), Some(id)) = (
        status_message(protocol, &outcome),
        streams.get(&Channel::Error),
    ) {
        let _ = tx.send(data(*id, false, Bytes::from(msg))).await;
    }
    close_streams(&tx, streams).await;
    linger(&mut frames, &tx).await;
    finish(tx, writer).await;
}

/// A DATA frame.
pub(super) fn data(id: u32, fin: bool, bytes: Bytes) -> Frame {
    Frame::Data(DataFrame {
        stream_id: id,
        fin,
        data: bytes,
    })
}

/// Answers a SYN_STREAM (no headers).
pub(super) async fn reply(tx: &mpsc::Sender<Frame>, stream_id: u32) {
    let _ = tx
        .send(Frame::SynReply(SynReply {
            stream_id,
            fin: false,
            headers: HeaderBlock::new(),
        }))
        .await;
}

/// Returns the window a DATA frame used (for clients that count).
pub(super) async fn ack(tx: &mpsc::Sender<Frame>, d: &DataFrame) {
    if !d.data.is_empty() {
        let _ = tx
            .send(Frame::WindowUpdate(WindowUpdate {
                stream_id: d.stream_id,
                delta: u32::try_from(d.data.len()).unwrap_or(u32::MAX),
            }))
            .await;
    }
}

pub(super) fn goaway(status: GoAwayStatus) -> Frame {
    Frame::GoAway(GoAway {
        last_good_stream_id: 0,
        status,
    })
}

/// Half-closes every stream from our side, the error stream last.
async fn close_streams(tx: &mpsc::Sender<Frame>, streams: &HashMap<Channel, u32>) {
    for c in [
        Channel::Stdout,
        Channel::Stderr,
        Channel::Resize,
        Channel::Stdin,
        Channel::Error,
    ] {
        if let Some(id) = streams.get(&c) {
            let _ = tx
                .send(Frame::Data(DataFrame {
                    stream_id: *id,
                    fin: true,
                    data: Bytes::new(),
                }))
                .await;
        }
    }
}

/// Waits (bounded) for the client to hang up, answering pings.
async fn linger<F>(frames: &mut F, tx: &mpsc::Sender<Frame>)
where
    F: FrameSource,
{
    let end = tokio::time::Instant::now() + LINGER;
    while let Ok(Some(Ok(f))) = tokio::time::timeout_at(end, frames.next()).await {
        match f {
            Frame::Ping(p) => {
                let _ = tx.send(Frame::Ping(p)).await;
            }
            Frame::GoAway(_) => break,
            _ => {}
        }
    }
}

pub(super) async fn finish(tx: mpsc::Sender<Frame>, writer: tokio::task::JoinHandle<()>) {
    drop(tx);
    let _ = writer.await;
}

/// Applies every complete `{"Width":…,"Height":…}` in `buf` to `pty`,
/// keeping an incomplete tail.
fn apply_resizes(buf: &mut Vec<u8>, pty: Option<&Pty>) {
    for (w, h) in take_resizes(buf) {
        if let Some(p) = pty {
            p.resize(w, h);
        }
    }
}

/// Takes every complete `{"Width":…,"Height":…}` out of `buf` (garbage
/// empties it), keeping an incomplete tail; bounded by
/// [`MAX_RESIZE_BUFFER`].
fn take_resizes(buf: &mut Vec<u8>) -> Vec<(u16, u16)> {
    let mut sizes = Vec::new();
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<TermSize>();
    let mut used = 0;
    loop {
        match it.next() {
            Some(Ok(size)) => {
                used = it.byte_offset();
                sizes.push((size.width, size.height));
            }
            Some(Err(e)) if e.is_eof() => break,
            Some(Err(_)) => {
                used = buf.len();
                break;
            }
            None => {
                used = it.byte_offset();
                break;
            }
        }
    }
    buf.drain(..used);
    if buf.len() > MAX_RESIZE_BUFFER {
        buf.clear();
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(tty: bool, stdin: bool, stderr: bool) -> ExecSpec {
        ExecSpec {
            container_id: "c".into(),
            cmd: vec!["sh".into()],
            tty,
            stdin,
            stdout: true,
            stderr,
        }
    }

    #[test]
    fn expected_streams_follow_the_request_and_protocol() {
        let v4 = Some("v4.channel.k8s.io");
        assert_eq!(
            expected(Stdio::from(&spec(false, true, true)), v4),
            vec![
                Channel::Error,
                Channel::Stdin,
                Channel::Stdout,
                Channel::Stderr
            ]
        );
        assert_eq!(
            expected(Stdio::from(&spec(true, true, false)), v4),
            vec![
                Channel::Error,
                Channel::Stdin,
                Channel::Stdout,
                Channel::Resize
            ]
        );
        assert_eq!(
            expected(
                Stdio::from(&spec(true, false, false)),
                Some("v2.channel.k8s.io")
            ),
            vec![Channel::Error, Channel::Stdout]
        );
    }

    #[test]
    fn status_messages() {
        let v4 = Some("v4.channel.k8s.io");
        assert_eq!(
            status_message(v4, &Ok(0)).as_deref(),
            Some(r#"{"metadata":{},"status":"Success"}"#)
        );
        let fail: serde_json::Value =
            serde_json::from_str(&status_message(v4, &Ok(3)).unwrap()).unwrap();
        assert_eq!(fail["reason"], "NonZeroExitCode");
        assert_eq!(fail["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(fail["details"]["causes"][0]["message"], "3");
        assert_eq!(status_message(Some("v2.channel.k8s.io"), &Ok(0)), None);
        assert!(
            status_message(Some("v2.channel.k8s.io"), &Ok(2))
                .unwrap()
                .contains("exit status 2")
        );
    }

    #[test]
    fn resize_messages_split_across_frames() {
        let mut buf = br#"{"Width":80,"Height":24}{"Width":1"#.to_vec();
        apply_resizes(&mut buf, None);
        assert_eq!(buf, br#"{"Width":1"#.to_vec());
        buf.extend_from_slice(br#"00,"Height":50}"#);
        apply_resizes(&mut buf, None);
        assert!(buf.is_empty());
        let mut junk = b"not json".to_vec();
        apply_resizes(&mut junk, None);
        assert!(junk.is_empty());
    }
}
