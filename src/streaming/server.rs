//! The HTTP side of the streaming server: a plain HTTP/1.1 listener (hyper)
//! that answers `/exec/<token>` with an upgrade to SPDY/3.1 after
//! negotiating the remote-command protocol version, and hands the upgraded
//! connection to [`super::remotecommand`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HeaderValue, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::portforward::{self, PortForwardSpec};
use super::remotecommand::{self, AttachSpec, Command, ExecSpec, Timeouts};
use super::tokens::Tokens;
use super::websocket;
use crate::config::StreamingConfig;
use crate::runtime::container::ContainerManager;

/// The remote-command protocols served, most preferred first. v5 only adds
/// a close signal over WebSocket, so over SPDY it is v4.
pub const PROTOCOLS: [&str; 5] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
const PROTOCOL_HEADER: &str = "x-stream-protocol-version";

/// The port-forward protocol.
pub const PORTFORWARD_PROTOCOLS: [&str; 1] = ["portforward.k8s.io"];
/// Port-forward's WebSocket subprotocols.
pub const WS_PORTFORWARD_PROTOCOLS: [&str; 3] = [
    "v4.channel.k8s.io",
    "portforward.k8s.io",
    "v4.base64.channel.k8s.io",
];

/// What a token stands for.
#[derive(Debug)]
enum Pending {
    Remote(Command),
    PortForward(PortForwardSpec),
}

impl Pending {
    /// The first segment of its URL's path.
    fn path(&self) -> &'static str {
        match self {
            Pending::Remote(Command::Exec(_)) => "exec",
            Pending::Remote(Command::Attach(_)) => "attach",
            Pending::PortForward(_) => "portforward",
        }
    }
}

/// The running streaming server.
#[derive(Debug, Clone)]
pub struct StreamServer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    base_url: String,
    tokens: Tokens<Pending>,
    containers: ContainerManager,
    timeouts: Timeouts,
}

impl StreamServer {
    /// Binds `cfg.address:cfg.port` and serves in the background.
    pub async fn start(
        cfg: &StreamingConfig,
        containers: ContainerManager,
    ) -> std::io::Result<Self> {
        let ip: std::net::IpAddr = cfg
            .address
            .parse()
            .map_err(|e| std::io::Error::other(format!("streaming.address: {e}")))?;
        let tls = if cfg.tls_cert_file.as_os_str().is_empty() {
            None
        } else {
            Some(tls_acceptor(&cfg.tls_cert_file, &cfg.tls_key_file)?)
        };
        let listener = TcpListener::bind((ip, cfg.port)).await?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let inner = Arc::new(Inner {
            base_url: format!("{scheme}://{addr}"),
            tokens: Tokens::new(Duration::from_secs(cfg.token_ttl_secs)),
            containers,
            timeouts: Timeouts {
                stream_creation: Duration::from_secs(cfg.stream_creation_timeout_secs),
                idle: Duration::from_secs(cfg.idle_timeout_secs),
            },
        });
        let server = inner.clone();
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "streaming server: accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // Small frames (a status after the last output) must not
                // wait for a delayed ACK (Nagle): 40 ms per exec otherwise.
                let _ = stream.set_nodelay(true);
                let (inner, tls) = (server.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let inner = inner.clone();
                        async move { Ok::<_, Infallible>(handle(inner, req)) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    let served = match tls {
                        None => {
                            http.serve_connection(TokioIo::new(stream), service)
                                .with_upgrades()
                                .await
                        }
                        Some(acceptor) => {
                            let handshake = tokio::time::timeout(
                                Duration::from_secs(10),
                                acceptor.accept(stream),
                            )
                            .await;
                            match handshake {
                                Ok(Ok(s)) => {
                                    http.serve_connection(TokioIo::new(s), service)
                                        .with_upgrades()
                                        .await
                                }
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "streaming TLS handshake");
                                    return;
                                }
                                Err(_) => return,
                            }
                        }
                    };
                    if let Err(e) = served {
                        tracing::debug!(%peer, error = %e, "streaming connection");
                    }
                });
            }
        });
        tracing::info!(%addr, "streaming server listening");
        Ok(StreamServer { inner })
    }

    /// A single-use URL for an exec session.
    pub fn exec_url(&self, spec: ExecSpec) -> std::io::Result<String> {
        self.url(Pending::Remote(Command::Exec(spec)))
    }

    /// A single-use URL for an attach session.
    pub fn attach_url(&self, spec: AttachSpec) -> std::io::Result<String> {
        self.url(Pending::Remote(Command::Attach(spec)))
    }

    /// A single-use URL for a port-forward session.
    pub fn portforward_url(&self, spec: PortForwardSpec) -> std::io::Result<String> {
        self.url(Pending::PortForward(spec))
    }

    fn url(&self, pending: Pending) -> std::io::Result<String> {
        let kind = pending.path();
        let token = self.inner.tokens.insert(pending)?;
        Ok(format!("{}/{kind}/{token}", self.inner.base_url))
    }
}

/// The TLS side of the server from PEM files (ring provider, TLS 1.2 and
/// 1.3, no client certificates).
fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &std::path::Path, e: &dyn std::fmt::Display| {
        std::io::Error::other(format!("streaming TLS: {}: {e}", what.display()))
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, &e))?;
    if certs.is_empty() {
        return Err(bad(cert, &"no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(cert, &e))?
    .with_no_client_auth()
    .with_single_cert(certs, key_der)
    .map_err(|e| bad(key, &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The connection hyper hands over after a 101 (None: the upgrade failed).
async fn upgraded(upgrade: hyper::upgrade::OnUpgrade) -> Option<TokioIo<hyper::upgrade::Upgraded>> {
    match upgrade.await {
        Ok(io) => Some(TokioIo::new(io)),
        Err(e) => {
            tracing::debug!(error = %e, "streaming upgrade failed");
            None
        }
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *r.status_mut() = status;
    r
}

/// All values of the protocol header (repeated, or comma-separated).
fn client_protocols(req: &Request<Incoming>) -> Vec<String> {
    req.headers()
        .get_all(PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The protocol to speak: the first of `ours` the client offers;
/// `Ok(None)` when the client offers none (an old client: no negotiation).
fn negotiate(client: &[String], ours: &[&'static str]) -> Result<Option<&'static str>, String> {
    if client.is_empty() {
        return Ok(None);
    }
    ours.iter()
        .find(|p| client.iter().any(|c| c == *p))
        .map(|p| Some(*p))
        .ok_or_else(|| {
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports {client:?}, server supports {ours:?}"
            )
        })
}

fn handle(inner: Arc<Inner>, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    // `/<kind>/<token>`: the token must have been made for that kind.
    let Some((kind, token)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let pending = match inner.tokens.take(token) {
        Some(p) if p.path() == kind => p,
        _ => return plain(StatusCode::NOT_FOUND, "unknown or expired streaming token"),
    };
    let upgrade_to = |want: &str| {
        req.headers()
            .get(UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(want)))
    };
    if upgrade_to("websocket") {
        return websocket(inner, req, pending);
    }
    if !upgrade_to("SPDY/3.1") {
        return plain(
            StatusCode::BAD_REQUEST,
            "this endpoint needs an upgrade to SPDY/3.1 (or, for exec and attach, WebSocket)",
        );
    }
    let ours: &[&'static str] = match pending {
        Pending::Remote(_) => &PROTOCOLS,
        Pending::PortForward(_) => &PORTFORWARD_PROTOCOLS,
    };
    let protocol = match negotiate(&client_protocols(&req), ours) {
        Ok(p) => p,
        Err(e) => return plain(StatusCode::FORBIDDEN, &e),
    };
    let upgrade = hyper::upgrade::on(&mut req);
    let (containers, timeouts) = (inner.containers.clone(), inner.timeouts);
    tokio::spawn(async move {
        let Some(io) = upgraded(upgrade).await else {
            return;
        };
        match pending {
            Pending::Remote(command) => {
                let session = remotecommand::split_session(io);
                remotecommand::serve(session, command, protocol, containers, timeouts).await
            }
            Pending::PortForward(spec) => portforward::serve_portforward(io, spec, timeouts).await,
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    if let Some(p) = protocol {
        h.insert(PROTOCOL_HEADER, HeaderValue::from_static(p));
    }
    r
}

/// Exec and attach over WebSocket: the subprotocol is negotiated from
/// `Sec-WebSocket-Protocol` (none offered: `channel.k8s.io`).
fn websocket(
    inner: Arc<Inner>,
    mut req: Request<Incoming>,
    pending: Pending,
) -> Response<Full<Bytes>> {
    let Some(key) = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return plain(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing");
    };
    let offered: Vec<String> = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    let ours: &[&'static str] = match pending {
        Pending::PortForward(_) => &WS_PORTFORWARD_PROTOCOLS,
        _ => &websocket::PROTOCOLS,
    };
    let protocol = match negotiate(&offered, ours) {
        Ok(Some(p)) => p,
        Ok(None) => ours[0],
        Err(e) => return plain(StatusCode::FORBIDDEN, &e),
    };
    // Port-forward over WebSocket names its ports in the query.
    let mut ports = Vec::new();
    if let Pending::PortForward(_) = pending {
        for (k, v) in req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|kv| kv.split_once('='))
        {
            if k != "port" {
                continue;
            }
            match v.parse::<u16>() {
                Ok(p) if p > 0 => ports.push(p),
                _ => return plain(StatusCode::BAD_REQUEST, &format!("invalid port {v:?}")),
            }
        }
        if ports.is_empty() || ports.len() > 64 {
            return plain(
                StatusCode::BAD_REQUEST,
                "port-forward over WebSocket needs 1 to 64 port query parameters",
            );
        }
    }
    let upgrade = hyper::upgrade::on(&mut req);
    let (containers, timeouts) = (inner.containers.clone(), inner.timeouts);
    tokio::spawn(async move {
        let Some(io) = upgraded(upgrade).await else {
            return;
        };
        match pending {
            Pending::Remote(command) => {
                // v5 only adds the close signal, which the adapter handles:
                // the session itself speaks v4.
                let session_protocol = match protocol {
                    "v5.channel.k8s.io" | "v4.channel.k8s.io" => "v4.channel.k8s.io",
                    _ => "channel.k8s.io",
                };
                let session = websocket::adapt(io, protocol).await;
                remotecommand::serve(
                    session,
                    command,
                    Some(session_protocol),
                    containers,
                    timeouts,
                )
                .await
            }
            Pending::PortForward(spec) => {
                let base64 = protocol == "v4.base64.channel.k8s.io";
                portforward::serve_portforward_ws(io, spec, ports, base64, timeouts).await
            }
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&websocket::accept_key(&key)) {
        h.insert("sec-websocket-accept", v);
    }
    h.insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_ours_in_order() {
        let c = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            negotiate(&c(&["v2.channel.k8s.io", "v4.channel.k8s.io"]), &PROTOCOLS),
            Ok(Some("v4.channel.k8s.io"))
        );
        assert_eq!(negotiate(&c(&[]), &PROTOCOLS), Ok(None));
        assert!(negotiate(&c(&["v9.channel.k8s.io"]), &PROTOCOLS).is_err());
        assert!(negotiate(&c(&["v4.channel.k8s.io"]), &PORTFORWARD_PROTOCOLS).is_err());
    }
}
