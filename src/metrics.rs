//! Prometheus metrics: the registry, the tower layer that times every CRI
//! call, the pull counters, and the `/metrics` endpoint (hyper, plain
//! HTTP/1.1) whose pod, container, monitor and store gauges are computed
//! from the managers at scrape time, so they cannot drift from the records.
//!
//! Knows neither tonic nor CRI types: the layer reads the gRPC path and the
//! `grpc-status` header of the response. Nothing global: one [`Metrics`]
//! per daemon, cloned into the layer, the API and the endpoint.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::image::ImageManager;
use crate::runtime::container::{ContainerManager, ContainerState};
use crate::runtime::sandbox::{SandboxManager, SandboxState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

type HistogramFamily = Family<MethodLabel, Histogram, fn() -> Histogram>;

/// 0.5 ms to about 65 s: a List call takes well under a millisecond, a
/// StopContainer may wait out its timeout.
fn rpc_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// Distinct methods recorded at most; beyond that (a client calling made-up
/// paths) the method is `other`, so the label set stays bounded.
const MAX_METHODS: usize = 128;

/// The daemon's metrics. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    rpc_seconds: HistogramFamily,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_errors: Family<RpcLabels, Counter>,
    pulls: Family<ResultLabel, Counter>,
    pull_bytes: Counter,
    pull_seconds: Histogram,
    pods: Family<StateLabel, Gauge>,
    containers: Family<StateLabel, Gauge>,
    monitors: Gauge,
    images: Gauge,
    layers: Gauge,
    image_store_bytes: Gauge,
    image_store_inodes: Gauge,
    /// Methods recorded so far (at most `MAX_METHODS`).
    methods: std::sync::Mutex<std::collections::HashSet<String>>,
    /// One scrape at a time: the scrape-time gauges are reset and refilled.
    scrape: tokio::sync::Mutex<()>,
}

impl Default for Inner {
    fn default() -> Self {
        let mut registry = Registry::default();
        let rpc_seconds = HistogramFamily::new_with_constructor(rpc_histogram);
        let rpc_requests = Family::<RpcLabels, Counter>::default();
        let rpc_errors = Family::<RpcLabels, Counter>::default();
        let pulls = Family::<ResultLabel, Counter>::default();
        let pull_bytes = Counter::default();
        let pull_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 14));
        let pods = Family::<StateLabel, Gauge>::default();
        let containers = Family::<StateLabel, Gauge>::default();
        let (monitors, images, layers) = (Gauge::default(), Gauge::default(), Gauge::default());
        let (image_store_bytes, image_store_inodes) = (Gauge::default(), Gauge::default());
        registry.register(
            "crius_grpc_request_duration_seconds",
            "Time to answer a CRI call (to the response headers), by method",
            rpc_seconds.clone(),
        );
        registry.register(
            "crius_grpc_requests",
            "CRI calls answered, by method and gRPC code",
            rpc_requests.clone(),
        );
        registry.register(
            "crius_grpc_errors",
            "CRI calls answered with a gRPC code other than OK, by method and code",
            rpc_errors.clone(),
        );
        registry.register(
            "crius_image_pulls",
            "PullImage calls finished, by result (success or failure)",
            pulls.clone(),
        );
        registry.register(
            "crius_image_pull_bytes",
            "Size of the images pulled successfully (manifest, config and compressed layers, as ImageStatus reports; layers already present count too)",
            pull_bytes.clone(),
        );
        registry.register(
            "crius_image_pull_duration_seconds",
            "Time a successful PullImage took",
            pull_seconds.clone(),
        );
        registry.register(
            "crius_pods",
            "Pod sandboxes by state (ready, notready)",
            pods.clone(),
        );
        registry.register(
            "crius_containers",
            "Containers by state (created, running, exited, unknown)",
            containers.clone(),
        );
        registry.register(
            "crius_monitors_alive",
            "Container monitors listening on their socket",
            monitors.clone(),
        );
        registry.register("crius_images", "Images in the store", images.clone());
        registry.register(
            "crius_layers",
            "Unpacked layers in the store",
            layers.clone(),
        );
        registry.register(
            "crius_image_store_bytes",
            "Bytes of the image store: unpacked layers and content blobs (manifests, configs)",
            image_store_bytes.clone(),
        );
        registry.register(
            "crius_image_store_inodes",
            "Inodes of the image store: unpacked layers and content blobs",
            image_store_inodes.clone(),
        );
        Self {
            registry,
            rpc_seconds,
            rpc_requests,
            rpc_errors,
            pulls,
            pull_bytes,
            pull_seconds,
            pods,
            containers,
            monitors,
            images,
            layers,
            image_store_bytes,
            image_store_inodes,
            methods: Default::default(),
            scrape: tokio::sync::Mutex::new(()),
        }
    }
}

/// The gRPC status codes by number (the gRPC spec's fixed list, named as
/// grpc-go and tonic name them), so this module needs no tonic.
const CODES: [&str; 17] = [
    "OK",
    "Cancelled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

fn code_name(code: u32) -> &'static str {
    CODES.get(code as usize).copied().unwrap_or("Unknown")
}

/// `/runtime.v1.RuntimeService/ListContainers` → `ListContainers`; paths of
/// other services → `other`.
fn method_of(path: &str) -> &str {
    let Some(rest) = path
        .strip_prefix("/runtime.v1.RuntimeService/")
        .or_else(|| path.strip_prefix("/runtime.v1.ImageService/"))
    else {
        return "other";
    };
    if rest.is_empty() || rest.len() > 64 || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return "other";
    }
    rest
}

impl Metrics {
    /// Records one CRI call: its path, gRPC code and time.
    pub fn observe_rpc(&self, path: &str, code: u32, elapsed: Duration) {
        let i = &self.inner;
        let mut method = method_of(path).to_owned();
        let labels = |method: &str| RpcLabels {
            method: method.to_owned(),
            code: code_name(code).to_owned(),
        };
        {
            let mut seen = crate::runtime::lock(&i.methods);
            if !seen.contains(&method) {
                if seen.len() >= MAX_METHODS {
                    method = "other".into();
                } else {
                    seen.insert(method.clone());
                }
            }
        }
        i.rpc_seconds
            .get_or_create(&MethodLabel {
                method: method.clone(),
            })
            .observe(elapsed.as_secs_f64());
        i.rpc_requests.get_or_create(&labels(&method)).inc();
        if code != 0 {
            i.rpc_errors.get_or_create(&labels(&method)).inc();
        }
    }

    /// Records a finished PullImage: the image's size when it succeeded.
    pub fn pull_done(&self, result: Result<u64, ()>, elapsed: Duration) {
        let i = &self.inner;
        let name = if result.is_ok() { "success" } else { "failure" };
        i.pulls
            .get_or_create(&ResultLabel {
                result: name.into(),
            })
            .inc();
        if let Ok(bytes) = result {
            i.pull_bytes.inc_by(bytes);
            i.pull_seconds.observe(elapsed.as_secs_f64());
        }
    }

    /// The tower layer timing every call of the gRPC server.
    pub fn layer(&self) -> RpcLayer {
        RpcLayer {
            metrics: self.clone(),
        }
    }

    /// Refreshes the scrape-time gauges from `sources` and encodes
    /// everything (OpenMetrics text, or Prometheus text 0.0.4).
    pub async fn scrape(&self, sources: &Sources, openmetrics: bool) -> String {
        let i = &self.inner;
        let _one = i.scrape.lock().await;
        set_states(
            &i.pods,
            &["ready", "notready"],
            sources
                .sandboxes
                .list(&Default::default())
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "metrics: listing pods");
                    Vec::new()
                })
                .iter()
                .map(|p| match p.state {
                    SandboxState::Ready => "ready",
                    SandboxState::NotReady => "notready",
                }),
        );
        let containers = sources
            .containers
            .list(&Default::default())
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "metrics: listing containers");
                Vec::new()
            });
        set_states(
            &i.containers,
            &["created", "running", "exited", "unknown"],
            containers.iter().map(|c| match c.state {
                ContainerState::Created => "created",
                ContainerState::Running => "running",
                ContainerState::Exited => "exited",
                ContainerState::Unknown => "unknown",
            }),
        );
        let images = sources.images.clone();
        let sockets = sources.monitor_sockets.clone();
        let store = tokio::task::spawn_blocking(move || {
            let fs = images.image_fs();
            let layers = count_dirs(&fs.mountpoint);
            let image_count = images.list(None).map(|v| v.len()).unwrap_or(0);
            let monitors = std::fs::read_to_string("/proc/net/unix")
                .map(|t| listening_sockets(&t, &sockets))
                .unwrap_or(0);
            (fs, layers, image_count, monitors)
        })
        .await;
        match store {
            Ok((fs, layers, image_count, monitors)) => {
                i.image_store_bytes.set(gauge(fs.bytes));
                i.image_store_inodes.set(gauge(fs.inodes));
                i.layers.set(gauge(layers));
                i.images.set(gauge(image_count as u64));
                i.monitors.set(gauge(monitors));
            }
            Err(e) => tracing::warn!(error = %e, "metrics: reading the stores"),
        }
        let mut out = String::new();
        let encoded = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &i.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &i.registry)
        };
        if let Err(e) = encoded {
            tracing::warn!(error = %e, "metrics: encoding");
        }
        out
    }
}

fn gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Sets `family` to the count of each of `states` in `seen` (0 included,
/// so a state that empties shows 0 rather than vanishing).
fn set_states<'a>(
    family: &Family<StateLabel, Gauge>,
    states: &[&str],
    seen: impl Iterator<Item = &'a str>,
) {
    let mut counts: Vec<i64> = vec![0; states.len()];
    for s in seen {
        if let Some(n) = states.iter().position(|x| *x == s) {
            counts[n] += 1;
        }
    }
    for (state, n) in states.iter().zip(counts) {
        family
            .get_or_create(&StateLabel {
                state: (*state).to_owned(),
            })
            .set(n);
    }
}

fn count_dirs(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .count() as u64
        })
        .unwrap_or(0)
}

/// Listening unix sockets bound at `<dir>/*.sock`, from `/proc/net/unix`
/// (`Num RefCount Protocol Flags Type St Inode Path`; flag 0x10000 is
/// `__SO_ACCEPTCON`, a listening socket). A monitor listens for its whole
/// life, so this counts live monitors without connecting to any: a probe
/// connection would wake each single-threaded monitor at every scrape.
fn listening_sockets(proc_net_unix: &str, dir: &Path) -> u64 {
    proc_net_unix
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let listening = f
                .get(3)
                .and_then(|x| u32::from_str_radix(x, 16).ok())
                .is_some_and(|flags| flags & 0x10000 != 0);
            let path = f.get(7).map(Path::new);
            listening
                && path.is_some_and(|p| {
                    p.parent() == Some(dir) && p.extension().is_some_and(|e| e == "sock")
                })
        })
        .count() as u64
}

/// What the scrape-time gauges are computed from.
#[derive(Debug, Clone)]
pub struct Sources {
    pub sandboxes: SandboxManager,
    pub containers: ContainerManager,
    pub images: ImageManager,
    /// Where monitors listen (`<run_dir>/s`).
    pub monitor_sockets: PathBuf,
}

/// Tower layer recording [`Metrics::observe_rpc`] for each call.
#[derive(Debug, Clone)]
pub struct RpcLayer {
    metrics: Metrics,
}

impl<S> tower::Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RpcService<S> {
    inner: S,
    metrics: Metrics,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> tower::Service<Request<B>> for RpcService<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<RB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let path = req.uri().path().to_owned();
        let start = Instant::now();
        let fut = self.inner.call(req);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let r = fut.await;
            // A unary call that fails is answered "trailers-only": the
            // status is in the headers. No grpc-status header means the
            // call succeeded (the OK status follows in the trailers).
            let code = match &r {
                Ok(resp) if resp.status() == StatusCode::OK => resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                _ => 2,
            };
            metrics.observe_rpc(&path, code, start.elapsed());
            r
        })
    }
}

/// The `/metrics` endpoint, stopped when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MetricsServer {
    /// Listens on `address` (`ip:port`) and serves `GET /metrics`.
    pub async fn start(
        address: &str,
        metrics: Metrics,
        sources: Sources,
    ) -> std::io::Result<MetricsServer> {
        let addr: SocketAddr = address.parse().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("metrics.address {address:?}: {e}"),
            )
        })?;
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new((metrics, sources));
        let task = tokio::spawn(async move {
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics endpoint: accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state.0, &state.1, req).await) }
                    });
                    let served = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "metrics endpoint connection");
                    }
                });
            }
        });
        Ok(MetricsServer { addr, task })
    }

    /// The bound address (the port chosen when `:0` was configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn handle(
    metrics: &Metrics,
    sources: &Sources,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, ctype: &'static str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
        r
    };
    if req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "only /metrics is served\n".into(),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "use GET\n".into(),
        );
    }
    // Prometheus asks for OpenMetrics in its Accept header; anything else
    // (curl, older scrapers) gets the classic text format.
    let openmetrics = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let body = metrics.scrape(sources, openmetrics).await;
    let ctype = if openmetrics {
        OPENMETRICS
    } else {
        PROMETHEUS_TEXT
    };
    reply(StatusCode::OK, ctype, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_codes() {
        assert_eq!(
            method_of("/runtime.v1.RuntimeService/ListContainers"),
            "ListContainers"
        );
        assert_eq!(method_of("/runtime.v1.ImageService/PullImage"), "PullImage");
        assert_eq!(method_of("/grpc.health.v1.Health/Check"), "other");
        assert_eq!(method_of("/runtime.v1.ImageService/a/../b"), "other");
        assert_eq!(code_name(5), "NotFound");
        assert_eq!(code_name(99), "Unknown");
    }

    #[test]
    fn rpc_counts_errors_and_bounded_methods() {
        let m = Metrics::default();
        m.observe_rpc(
            "/runtime.v1.RuntimeService/Version",
            0,
            Duration::from_millis(3),
        );
        m.observe_rpc(
            "/runtime.v1.RuntimeService/ContainerStatus",
            5,
            Duration::from_millis(1),
        );
        for n in 0..200 {
            m.observe_rpc(
                &format!("/runtime.v1.RuntimeService/Made{n}"),
                12,
                Duration::ZERO,
            );
        }
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &m.inner.registry).unwrap();
        assert!(
            out.contains(r#"crius_grpc_requests_total{method="Version",code="OK"} 1"#),
            "{out}"
        );
        assert!(
            out.contains(r#"crius_grpc_errors_total{method="ContainerStatus",code="NotFound"} 1"#),
            "{out}"
        );
        assert!(!out.contains(r#"crius_grpc_errors_total{method="Version""#));
        // 3 ms: above the 2 ms bucket, within the 4 ms one.
        for (le, n) in [("0.002", 0), ("0.004", 1), ("+Inf", 1)] {
            let line = format!(
                r#"crius_grpc_request_duration_seconds_bucket{{method="Version",le="{le}"}} {n}"#
            );
            assert!(out.contains(&line), "{line} in {out}");
        }
        assert_eq!(crate::runtime::lock(&m.inner.methods).len(), MAX_METHODS);
        assert!(
            out.contains(r#"method="other",code="Unimplemented""#),
            "{out}"
        );
    }

    #[test]
    fn listening_monitor_sockets() {
        let text = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 100 /run/crius/s/abc.sock
0000000000000000: 00000002 00000000 00010000 0001 01 101 /run/crius/s/x1.tty
0000000000000000: 00000003 00000000 00000000 0001 03 102 /run/crius/s/def.sock
0000000000000000: 00000002 00000000 00010000 0001 01 103 /run/other/s/ghi.sock
0000000000000000: 00000002 00000000 00010000 0001 01 104
";
        assert_eq!(listening_sockets(text, Path::new("/run/crius/s")), 1);
    }
}
