//! Runs the real `crius serve` binary inside a temp dir (config, socket,
//! state and run dirs, log file) and hands out tonic clients over its unix
//! socket. Owns that process and dir: killed and removed on drop, with the
//! daemon's log printed when the test is failing.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;
use tonic::transport::{Channel, Endpoint};

/// The daemon binary cargo built for this test run.
pub const CRIUS: &str = env!("CARGO_BIN_EXE_crius");

/// How long the daemon may take to accept connections (or to exit).
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Paths a config is written for.
#[derive(Debug, Clone)]
pub struct DaemonPaths {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
}

#[derive(Debug)]
pub struct Daemon {
    dir: TempDir,
    paths: DaemonPaths,
    config_path: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
}

/// The harness's config: the three paths, `extra` (top-level keys and/or
/// tables such as `[image]`), then `[log] level = "debug"`.
pub fn default_config_text(paths: &DaemonPaths, extra: &str) -> String {
    format!(
        "socket = {:?}\nstate_dir = {:?}\nrun_dir = {:?}\n{extra}\n\n[log]\nlevel = \"debug\"\n",
        paths.socket.display().to_string(),
        paths.state_dir.display().to_string(),
        paths.run_dir.display().to_string(),
    )
}

/// `[image]` table listing `addrs` as insecure (plain HTTP) registries.
pub fn insecure_registries(addrs: &[&str]) -> String {
    let list: Vec<String> = addrs.iter().map(|a| format!("{a:?}")).collect();
    format!("[image]\ninsecure_registries = [{}]\n", list.join(", "))
}

impl Daemon {
    /// Writes a config (see [`default_config_text`]) and starts the daemon.
    pub fn start(extra_toml: &str) -> Daemon {
        let mut d = Self::configure(extra_toml);
        d.launch();
        d
    }

    /// Writes the config but does not start the daemon (see [`Daemon::launch`]).
    /// The state and run dirs are not created: the daemon must create them.
    pub fn configure(extra_toml: &str) -> Daemon {
        Self::configure_raw(|p| default_config_text(p, extra_toml))
    }

    /// Like [`Daemon::configure`], but `state_dir` / `run_dir` may point at
    /// another daemon's (to test the lock).
    pub fn configure_sharing(
        extra: &str,
        state_dir: Option<&Path>,
        run_dir: Option<&Path>,
    ) -> Daemon {
        Self::configure_raw(|p| {
            let mut p = p.clone();
            if let Some(s) = state_dir {
                p.state_dir = s.to_owned();
            }
            if let Some(r) = run_dir {
                p.run_dir = r.to_owned();
            }
            default_config_text(&p, extra)
        })
    }

    /// Writes whatever config `text` returns for this daemon's temp paths.
    /// If the text uses other paths, [`Daemon::socket`] etc. are still the temp ones.
    pub fn configure_raw(text: impl FnOnce(&DaemonPaths) -> String) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("crius-test-")
            .tempdir()
            .expect("creating daemon temp dir");
        let paths = DaemonPaths {
            socket: dir.path().join("crius.sock"),
            state_dir: dir.path().join("state"),
            run_dir: dir.path().join("run"),
        };
        let config_path = dir.path().join("config.toml");
        let text = text(&paths);
        std::fs::write(&config_path, &text).expect("writing daemon config");
        // Read the paths back from the config in case the caller changed them.
        let paths = match text.parse::<toml::Table>() {
            Ok(t) => {
                let get = |k: &str, d: &PathBuf| {
                    t.get(k)
                        .and_then(|v| v.as_str())
                        .map(PathBuf::from)
                        .unwrap_or_else(|| d.clone())
                };
                DaemonPaths {
                    socket: get("socket", &paths.socket),
                    state_dir: get("state_dir", &paths.state_dir),
                    run_dir: get("run_dir", &paths.run_dir),
                }
            }
            Err(_) => paths,
        };
        Daemon {
            log_path: dir.path().join("crius.log"),
            config_path,
            paths,
            dir,
            child: None,
        }
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("opening daemon log");
        writeln!(
            log,
            "=== harness: {CRIUS} serve --config {}",
            self.config_path.display()
        )
        .expect("writing daemon log");
        let child = Command::new(CRIUS)
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {CRIUS}: {e}"));
        self.child = Some(child);
    }

    /// Starts the daemon and waits until its socket accepts a connection.
    pub fn launch(&mut self) {
        self.spawn();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child_mut().try_wait().expect("polling crius") {
                self.child = None;
                panic!(
                    "crius exited with {status} before serving on {}:\n{}",
                    self.paths.socket.display(),
                    self.log()
                );
            }
            if std::os::unix::net::UnixStream::connect(&self.paths.socket).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "crius did not accept connections on {} within {START_TIMEOUT:?}:\n{}",
                    self.paths.socket.display(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Starts the daemon expecting it to refuse to run: returns its exit
    /// status; panics if it is still running after [`START_TIMEOUT`].
    pub fn launch_expecting_exit(&mut self) -> ExitStatus {
        self.spawn();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child_mut().try_wait().expect("polling crius") {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "crius was expected to exit but still runs after {START_TIMEOUT:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("daemon is not running")
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => c.try_wait().expect("polling crius").is_none(),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL, as a crash would, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child.wait().expect("reaping crius");
        }
    }

    /// SIGTERM, then wait (up to 30 s) for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon is not running");
        let pid = Pid::from_raw(child.id() as i32);
        kill(pid, Signal::SIGTERM).expect("sending SIGTERM to crius");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("polling crius") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("crius did not exit within 30 s of SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Stops the daemon if running (SIGTERM) and starts it again on the same
    /// config, state and run dirs.
    pub fn restart(&mut self) {
        if self.is_running() {
            let status = self.stop();
            assert!(
                status.success(),
                "crius exited with {status} on SIGTERM:\n{}",
                self.log()
            );
        } else {
            self.child = None;
        }
        self.launch();
    }

    /// Everything the daemon wrote to stdout and stderr, across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn socket(&self) -> &Path {
        &self.paths.socket
    }

    pub fn state_dir(&self) -> &Path {
        &self.paths.state_dir
    }

    pub fn run_dir(&self) -> &Path {
        &self.paths.run_dir
    }

    /// `<state_dir>/layers`: one directory per chain id (hex), the layer's root.
    pub fn layers_dir(&self) -> PathBuf {
        self.paths.state_dir.join("layers")
    }

    /// Names of the layer directories (chain id hexes), sorted; empty if none.
    pub fn layer_dirs(&self) -> Vec<String> {
        let mut v: Vec<String> = match std::fs::read_dir(self.layers_dir()) {
            Ok(rd) => rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        v.sort();
        v
    }

    pub async fn channel(&self) -> Channel {
        connect_unix(&self.paths.socket).await
    }

    pub async fn image_client(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel().await)
    }

    pub async fn runtime_client(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel().await)
    }
}

/// Lazily unmounts every mount point at or below `dir` (deepest first), so a
/// test that failed half-way leaves no pinned namespaces or tmpfs behind.
pub fn unmount_below(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.display().to_string();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Kills what containers of a test daemon left running: their processes
/// (by cgroup) and their monitors (by command line naming the run dir).
pub fn kill_containers(run_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(run_dir.join("containers")) else {
        return;
    };
    let mut cgroups = Vec::new();
    for e in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path().join("launch.json")) else {
            continue;
        };
        let Ok(launch) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let Some(cg) = launch["cgroup_path"].as_str() else {
            continue;
        };
        cgroups.push(cg.to_owned());
        for base in [
            "/sys/fs/cgroup/memory",
            "/sys/fs/cgroup/pids",
            "/sys/fs/cgroup",
        ] {
            let procs = format!("{base}{cg}/cgroup.procs");
            if let Ok(list) = std::fs::read_to_string(&procs) {
                for pid in list.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
    // Monitors (forked by the zygote) see their container die, record the
    // exit, delete its cgroup and remove their socket: wait for that, then
    // remove whatever cgroup directory is still there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let sockets = || {
        std::fs::read_dir(run_dir.join("s"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "sock"))
                    .count()
            })
            .unwrap_or(0)
    };
    while sockets() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for cg in &cgroups {
        let mut bases = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
        if let Ok(d) = std::fs::read_dir("/sys/fs/cgroup") {
            bases.extend(d.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        for base in bases {
            let _ = std::fs::remove_dir(format!("{}{cg}", base.display()));
        }
    }
    let needle = run_dir.join("containers").display().to_string();
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.contains("\0monitor\0") && cmd.contains(&needle) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Kills the infra processes of the test daemon's pods (pid 1 of a pod PID
/// namespace, pinned at `<run_dir>/pods/<id>/ns/pid`): each also holds its
/// pod's network namespace, so one left running keeps a veth on the host.
pub fn kill_infras(run_dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(pods) = std::fs::read_dir(run_dir.join("pods")) else {
        return;
    };
    let namespaces: Vec<u64> = pods
        .flatten()
        .filter_map(|p| std::fs::metadata(p.path().join("ns/pid")).ok())
        .filter(|m| m.dev() != 0 && m.size() == 0)
        .map(|m| m.ino())
        .collect();
    if namespaces.is_empty() {
        return;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::metadata(p.path().join("ns/pid")).is_ok_and(|m| namespaces.contains(&m.ino())) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        kill_containers(&self.paths.run_dir);
        kill_infras(&self.paths.run_dir);
        unmount_below(self.dir.path());
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(400)..];
            eprintln!(
                "--- crius log (last {} lines) ---\n{}",
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

/// A tonic channel over the unix socket at `path` (the URI is a placeholder).
pub async fn connect_unix(path: &Path) -> Channel {
    let path = path.to_owned();
    let shown = path.display().to_string();
    Endpoint::try_from("http://[::]:50051")
        .expect("static endpoint")
        .connect_with_connector(tower::service_fn(move |_| {
            let p = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(p).await?,
                ))
            }
        }))
        .await
        .unwrap_or_else(|e| panic!("connecting to crius at {shown}: {e}"))
}

/// Runs `crius <args>` to completion (at most 60 s) and returns its output.
pub fn run_crius(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir for output");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(CRIUS)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {CRIUS}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("polling crius") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`crius {}` did not exit within 60 s", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: std::fs::read(out_path).unwrap_or_default(),
        stderr: std::fs::read(err_path).unwrap_or_default(),
    }
}

/// Entries under a state dir that look like leftovers of an interrupted
/// write: names starting with `tmp`/`.tmp` or containing `partial`/`.temp`,
/// and anything inside a directory so named (an empty such directory is fine).
/// The contents of finished layer directories (`layers/<chain id>/`) are
/// image data (busybox has a `/tmp`) and are not looked into; a temp-named
/// directory directly under `layers/` is itself a leftover.
pub fn temp_leftovers(state_dir: &Path) -> Vec<PathBuf> {
    fn is_temp_name(name: &str) -> bool {
        let n = name.to_ascii_lowercase();
        n.starts_with("tmp")
            || n.starts_with(".tmp")
            || n.contains("partial")
            || n.contains(".temp")
            || n.ends_with(".tmp")
    }
    fn walk(dir: &Path, inside_temp: bool, layers: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            let temp = is_temp_name(&name);
            if dir == layers {
                if temp {
                    out.push(path);
                }
                continue;
            }
            if inside_temp || (temp && !is_dir) {
                out.push(path.clone());
            }
            if is_dir {
                walk(&path, inside_temp || temp, layers, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(state_dir, false, &state_dir.join("layers"), &mut out);
    out
}
