//! A throttling TCP proxy for putting in front of a [`super::Registry`]: it
//! slows registry→client bytes to a rate that can change at run time, counts
//! them, and records the HTTP/1.x request lines clients send, so tests can
//! kill the daemon mid-pull and count blob downloads. Runs on its own thread
//! and tokio runtime so a test blocking its own runtime never stalls it.
//! Owns its listener and connections; all end on drop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Default)]
struct Shared {
    /// Bytes per second registry→client; 0 means unlimited.
    rate: AtomicU64,
    bytes_down: AtomicU64,
    connections: AtomicU64,
    requests: Mutex<Vec<String>>,
}

#[derive(Debug)]
pub struct SlowProxy {
    addr: String,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SlowProxy {
    /// Listens on a free loopback port and forwards every connection to
    /// `target` (`host:port`), at most `bytes_per_sec` downstream (0: unlimited).
    pub fn start(target: &str, bytes_per_sec: u64) -> SlowProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding proxy port");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let shared = Arc::new(Shared::default());
        shared.rate.store(bytes_per_sec, Ordering::SeqCst);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let target = target.to_owned();
        let task_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("slow-proxy".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        _ = accept_loop(listener, target, task_shared) => {}
                        _ = rx => {}
                    }
                });
                // Dropping the runtime cancels every connection task.
            })
            .expect("spawning proxy thread");
        SlowProxy {
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:<port>`: use it as the registry host in image references.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Changes the downstream rate for every connection from the next chunk on (0: unlimited).
    pub fn set_rate(&self, bytes_per_sec: u64) {
        self.shared.rate.store(bytes_per_sec, Ordering::SeqCst);
    }

    /// Bytes forwarded registry→client so far.
    pub fn bytes_down(&self) -> u64 {
        self.shared.bytes_down.load(Ordering::SeqCst)
    }

    /// Client connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Request lines seen, as `"GET /v2/busybox/blobs/sha256:…"` (method and path).
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// How many `GET`s of blob `digest` went through the proxy.
    pub fn blob_gets(&self, digest: &str) -> usize {
        let suffix = format!("/blobs/{digest}");
        self.requests()
            .iter()
            .filter(|r| r.starts_with("GET ") && r.ends_with(&suffix))
            .count()
    }

    /// Waits until at least `n` bytes went downstream; panics after `timeout`
    /// (the daemon never fetched them: nothing to do with speed).
    pub async fn wait_for_bytes(&self, n: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.bytes_down() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} bytes went through the proxy in {timeout:?}; requests: {:?}",
                self.bytes_down(),
                self.requests()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, target: String, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let target = target.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(&target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let up = async {
                let mut lines = RequestLines::default();
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    lines.feed(&buf[..n], &shared);
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = sw.shutdown().await;
            };
            let down = async {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let rate = shared.rate.load(Ordering::SeqCst);
                    // Small chunks when throttled so the rate is smooth (~20 per second).
                    let chunk = if rate == 0 {
                        buf.len()
                    } else {
                        (rate / 20).clamp(1, buf.len() as u64) as usize
                    };
                    let n = match sr.read(&mut buf[..chunk]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    shared.bytes_down.fetch_add(n as u64, Ordering::SeqCst);
                    if let Some(nanos) = (n as u64 * 1_000_000_000).checked_div(rate) {
                        tokio::time::sleep(Duration::from_nanos(nanos)).await;
                    }
                }
                let _ = cw.shutdown().await;
            };
            tokio::join!(up, down);
        });
    }
}

/// Splits the client→server byte stream into lines and keeps those that are
/// HTTP/1.x request lines. Pull traffic has no request bodies, so every
/// request line starts a line of its own.
#[derive(Default)]
struct RequestLines {
    partial: Vec<u8>,
}

impl RequestLines {
    fn feed(&mut self, data: &[u8], shared: &Shared) {
        for &b in data {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.partial).trim_end().to_owned();
                self.partial.clear();
                let parts: Vec<&str> = line.split(' ').collect();
                let is_request = parts.len() == 3
                    && parts[2].starts_with("HTTP/1.")
                    && parts[1].starts_with('/')
                    && !parts[0].is_empty()
                    && parts[0].bytes().all(|c| c.is_ascii_uppercase());
                if is_request {
                    let entry = format!("{} {}", parts[0], parts[1]);
                    shared.requests.lock().unwrap().push(entry);
                }
            } else if self.partial.len() < 16 * 1024 {
                self.partial.push(b);
            }
        }
    }
}
