//! Daemon start-up and the gRPC server: directories, the state lock, the
//! socket, and graceful shutdown.

use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::api::Cri;
use crate::config::Config;
use crate::image::{ImageError, ImageManager};
use crate::network::{Cni, CniSettings};
use crate::runtime::container::{ContainerError, ContainerManager, stored_layer_pins};
use crate::runtime::sandbox::{SandboxError, SandboxManager};
use crate::store::{Store, StoreError};
use crate::sys::mount;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another crius is already running on state dir {state_dir} (lock {lock} is held); stop it first or use another state_dir"
    )]
    Locked { state_dir: PathBuf, lock: PathBuf },
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("socket {0} is in use by a running server; stop it or configure another socket")]
    SocketInUse(PathBuf),
    #[error("cannot listen on {path}: {source}")]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("image service: {0}")]
    Image(#[from] ImageError),
    #[error("pod sandboxes: {0}")]
    Sandbox(#[from] SandboxError),
    #[error("streaming server: {0}")]
    Streaming(std::io::Error),
    #[error("containers: {0}")]
    Container(#[from] ContainerError),
    #[error("gRPC server: {0}")]
    Serve(String),
}

/// Everything the daemon holds for its lifetime.
#[derive(Debug)]
pub struct Daemon {
    cri: Cri,
    _lock: Flock<File>,
}

fn mkdir_private(path: &Path) -> Result<(), ServerError> {
    let err = |source| ServerError::Dir {
        path: path.to_owned(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(err)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(err)
}

impl Daemon {
    /// Prepares directories, takes the state lock and opens the store.
    /// Blocking (file system work); run before serving.
    pub fn open(config: Arc<Config>) -> Result<Self, ServerError> {
        mkdir_private(&config.state_dir)?;
        mkdir_private(&config.run_dir)?;
        if let Some(parent) = config.socket.parent() {
            fs::create_dir_all(parent).map_err(|source| ServerError::Dir {
                path: parent.to_owned(),
                source,
            })?;
        }
        let lock = lock_state(&config.state_dir).map_err(|e| match e {
            StateLock::Held(lock) => ServerError::Locked {
                state_dir: config.state_dir.clone(),
                lock,
            },
            StateLock::Failed(path, source) => ServerError::Lock { path, source },
        })?;
        if config.runtime.cgroup_favor_dynmods {
            match crate::sys::cgroup::favor_dynmods() {
                Ok(crate::sys::cgroup::Dynmods::Enabled(m)) => tracing::info!(
                    mount = %m.display(),
                    "cgroup favordynmods turned on (runtime.cgroup_favor_dynmods)"
                ),
                Ok(crate::sys::cgroup::Dynmods::AlreadyOn(_)) => {}
                Err(e) => tracing::warn!(
                    error = %e,
                    "runtime.cgroup_favor_dynmods: cannot turn on favordynmods; container starts may wait for RCU grace periods"
                ),
            }
        }
        let store = Arc::new(Store::open(&config.store_path())?);
        let in_use = stored_layer_pins(&store);
        let images = ImageManager::open(&config.image, store.clone(), &config.state_dir, &in_use)?;
        let cni = Cni::new(CniSettings::new(
            config.cni.conf_dir.clone(),
            config.cni.bin_dirs.clone(),
            config.state_dir.join("cni"),
        ));
        let exe = std::env::current_exe().map_err(|source| ServerError::Dir {
            path: PathBuf::from("/proc/self/exe"),
            source,
        })?;
        // Helpers and monitors run from a read-only bind of our binary: a
        // container reaching it through /proc/<pid>/exe cannot open it for
        // writing (runc CVE-2019-5736).
        let ro_exe = config.run_dir.join("crius");
        mount::bind_file_readonly(&exe, &ro_exe).map_err(|source| ServerError::Dir {
            path: ro_exe.clone(),
            source,
        })?;
        // One zygote forks monitors, exec helpers and pinns.
        let zygote = Arc::new(crate::monitor::zygote::Zygote::new(ro_exe));
        let sandboxes = SandboxManager::open(
            zygote.clone(),
            &config.run_dir,
            store.clone(),
            cni,
            &config.pod,
            config.runtime.clone(),
        )?;
        let containers = ContainerManager::open(
            zygote,
            &config.run_dir,
            &config.state_dir,
            store,
            images.clone(),
            sandboxes.clone(),
            config.runtime.clone(),
        )?;
        Ok(Self {
            cri: Cri::new(config, images, sandboxes, containers),
            _lock: lock,
        })
    }

    /// Binds the configured socket (replacing a stale one), mode 0660.
    pub async fn bind(&self) -> Result<UnixListener, ServerError> {
        let path = &self.cri.config.socket;
        if path.exists() {
            // A socket file nobody answers on is left by a crashed daemon.
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(ServerError::SocketInUse(path.clone()));
            }
            fs::remove_file(path).map_err(|source| ServerError::Listen {
                path: path.clone(),
                source,
            })?;
        }
        let listener = UnixListener::bind(path).map_err(|source| ServerError::Listen {
            path: path.clone(),
            source,
        })?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o660)).map_err(|source| {
            ServerError::Listen {
                path: path.clone(),
                source,
            }
        })?;
        Ok(listener)
    }

    /// Serves CRI on `listener` until `shutdown` resolves, then lets
    /// in-flight calls finish for at most `shutdown_grace_secs` and removes
    /// the socket.
    pub async fn serve(
        self,
        listener: UnixListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let grace = Duration::from_secs(self.cri.config.shutdown_grace_secs);
        let socket = self.cri.config.socket.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (fired_tx, fired_rx) = tokio::sync::oneshot::channel::<()>();
        let cri = self.cri.clone();
        tokio::spawn(async move {
            shutdown.await;
            // Event streams never end by themselves.
            cri.close_events();
            let _ = fired_tx.send(());
            let _ = tx.send(());
        });
        let server = tonic::transport::Server::builder()
            .trace_fn(crate::telemetry::rpc_span)
            .layer(self.cri.metrics.layer())
            .add_service(self.cri.runtime_service())
            .add_service(self.cri.image_service())
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                let _ = rx.await;
            });
        self.cri
            .sandboxes
            .probe_userns(self.cri.images.layers_dir())
            .await;
        self.cri.sandboxes.fill_pool();
        self.cri.containers.resume().await;
        let streaming = crate::streaming::StreamServer::start(
            &self.cri.config.streaming,
            self.cri.containers.clone(),
        )
        .await
        .map_err(ServerError::Streaming)?;
        let _ = self.cri.streaming.set(streaming);
        let _metrics = self.start_metrics().await;
        tracing::info!(socket = %socket.display(), "crius serving CRI");
        tokio::pin!(server);
        let result = tokio::select! {
            r = &mut server => r.map_err(|e| ServerError::Serve(e.to_string())),
            _ = async {
                let _ = fired_rx.await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(grace_secs = grace.as_secs(), "in-flight calls did not finish in time; exiting");
                Ok(())
            }
        };
        if let Err(e) = fs::remove_file(&socket) {
            tracing::warn!(socket = %socket.display(), error = %e, "removing socket");
        }
        // Nothing will take them: a stopped daemon leaves no idle pins.
        self.cri.sandboxes.drain_pool();
        tracing::info!("crius stopped");
        result
    }
}

impl Daemon {
    /// The Prometheus endpoint, unless `metrics.address` is empty. A port
    /// that cannot be bound is logged, not fatal: kubelet needs the CRI
    /// socket far more than a scraper needs its figures.
    async fn start_metrics(&self) -> Option<crate::metrics::MetricsServer> {
        let cri = &self.cri;
        let address = cri.config.metrics.address.as_str();
        if address.is_empty() {
            return None;
        }
        let sources = crate::metrics::Sources {
            sandboxes: cri.sandboxes.clone(),
            containers: cri.containers.clone(),
            images: cri.images.clone(),
            monitor_sockets: cri.config.run_dir.join("s"),
        };
        match crate::metrics::MetricsServer::start(address, cri.metrics.clone(), sources).await {
            Ok(s) => {
                tracing::info!(address = %s.local_addr(), "serving Prometheus metrics on /metrics");
                Some(s)
            }
            Err(e) => {
                tracing::error!(address, error = %e, "metrics.address: cannot serve /metrics; continuing without it");
                None
            }
        }
    }
}

/// Why [`lock_state`] failed.
#[derive(Debug)]
pub enum StateLock {
    /// Another process (a running daemon) holds the lock file.
    Held(PathBuf),
    Failed(PathBuf, std::io::Error),
}

/// Takes `<state_dir>/crius.lock` (exclusive `flock`, not waiting): one
/// daemon per state dir, and `crius check` only while none runs.
pub fn lock_state(state_dir: &Path) -> Result<Flock<File>, StateLock> {
    let path = state_dir.join("crius.lock");
    let file = match OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) => return Err(StateLock::Failed(path, e)),
    };
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            StateLock::Held(path)
        } else {
            StateLock::Failed(path, errno.into())
        }
    })
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop crius with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
    }
}
