//! A throwaway Debian `docker-registry` (distribution 2.8) on a free loopback
//! port, with filesystem storage in a temp dir, optionally behind htpasswd
//! basic auth. Owns that process and dir; killed and removed on drop. Its
//! access log (stdout) lets tests count which blobs were downloaded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const HTPASSWD_BIN: &str = "/usr/bin/htpasswd";

#[derive(Debug)]
pub struct Registry {
    child: Child,
    addr: String,
    dir: TempDir,
    credentials: Option<(String, String)>,
}

impl Registry {
    /// Anonymous registry: pull and push without credentials.
    pub fn start() -> Registry {
        Self::start_inner(None)
    }

    /// Registry answering 401 with `WWW-Authenticate: Basic` unless the
    /// request carries `user`/`pass` (bcrypt htpasswd file).
    pub fn start_with_htpasswd(user: &str, pass: &str) -> Registry {
        Self::start_inner(Some((user.to_owned(), pass.to_owned())))
    }

    fn start_inner(credentials: Option<(String, String)>) -> Registry {
        let dir = registry_dir("crius-registry-");
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).expect("creating registry storage dir");
        let auth = match &credentials {
            None => String::new(),
            Some((user, pass)) => {
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, htpasswd_line(user, pass)).expect("writing htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: crius-test\n    path: {}\n",
                    file.display()
                )
            }
        };

        // Port 0: the kernel picks a free port and the registry keeps it, so
        // parallel tests never race for one; the port is read back from /proc.
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n{auth}",
                storage.display()
            ),
        )
        .expect("writing registry config");
        let mut child = spawn_registry(dir.path(), &config);
        match wait_until_up(&mut child, dir.path(), credentials.is_some()) {
            Ok(addr) => Registry {
                child,
                addr,
                dir,
                credentials,
            },
            Err(log) => panic!("docker-registry did not start: {log}"),
        }
    }

    /// A TLS registry on `ip` (a loopback address) serving the storage of
    /// `storage_of` (push there over plain HTTP; both read the same files).
    /// With `client_ca`, it requires a client certificate signed by it.
    /// [`Registry::url`] and [`Registry::root_dir`] do not apply to it.
    pub fn start_tls_over(
        storage_of: &Registry,
        ip: &str,
        server: &super::tls::CertPair,
        client_ca: Option<&Path>,
    ) -> Registry {
        let dir = registry_dir("crius-registry-tls-");
        let clientcas = client_ca.map_or(String::new(), |ca| {
            format!("    clientcas:\n      - {}\n", ca.display())
        });
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {ip}:0\n  tls:\n    certificate: {}\n    key: {}\n{clientcas}",
                storage_of.root_dir().display(),
                server.cert.display(),
                server.key.display(),
            ),
        )
        .expect("writing registry config");
        let mut child = spawn_registry(dir.path(), &config);
        // Plain GETs do not work against TLS: being connectable is enough.
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = loop {
            if let Some(status) = child.try_wait().expect("polling docker-registry") {
                let log = std::fs::read_to_string(dir.path().join("registry.log"));
                panic!("TLS docker-registry exited with {status}: {log:?}");
            }
            if let Some(port) = listening_port(child.id()) {
                let addr = format!("{ip}:{port}");
                if TcpStream::connect(&addr).is_ok() {
                    break addr;
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("TLS docker-registry not listening after 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Registry {
            child,
            addr,
            dir,
            credentials: None,
        }
    }

    /// `127.0.0.1:<port>`: the registry part of image references.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:<port>/<repo>:<tag>`.
    pub fn reference(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.addr)
    }

    /// `127.0.0.1:<port>/<repo>@<digest>`.
    pub fn digest_reference(&self, repo: &str, digest: &str) -> String {
        format!("{}/{repo}@{digest}", self.addr)
    }

    /// Basic-auth user and password, when started with htpasswd.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The storage driver's root directory.
    pub fn root_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Where the registry keeps the bytes of blob `digest` (`sha256:<hex>`).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.root_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Flips one byte of the stored blob at `offset` (size unchanged), so the
    /// registry serves bytes that no longer match the digest it advertises.
    pub fn corrupt_blob(&self, digest: &str, offset: usize) {
        let path = self.blob_path(digest);
        let mut data = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("reading blob {} to corrupt: {e}", path.display()));
        assert!(offset < data.len(), "offset {offset} past blob end");
        data[offset] ^= 0xff;
        std::fs::write(&path, data).expect("writing corrupted blob");
    }

    /// Sets byte `offset` of the stored blob to `value` (size unchanged): a
    /// corruption that keeps JSON valid when the byte is inside a string.
    pub fn set_blob_byte(&self, digest: &str, offset: usize, value: u8) {
        let path = self.blob_path(digest);
        let mut data = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("reading blob {} to corrupt: {e}", path.display()));
        assert!(offset < data.len(), "offset {offset} past blob end");
        assert_ne!(data[offset], value, "the byte already has that value");
        data[offset] = value;
        std::fs::write(&path, data).expect("writing corrupted blob");
    }

    /// The registry's error log (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Apache combined-format access log (one line per request).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// How many `GET` requests for blob `digest` the registry answered (any repo, any status).
    pub fn blob_gets(&self, digest: &str) -> usize {
        let needle = format!("/blobs/{digest} ");
        self.access_log()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains(&needle))
            .count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- docker-registry {} log ---\n{}", self.addr, self.log());
        }
    }
}

fn htpasswd_line(user: &str, pass: &str) -> Vec<u8> {
    assert!(
        Path::new(HTPASSWD_BIN).exists(),
        "{HTPASSWD_BIN} not found: install Debian's apache2-utils package (hack/install-deps.sh)"
    );
    let out = Command::new(HTPASSWD_BIN)
        .args(["-Bbn", user, pass])
        .output()
        .expect("running htpasswd");
    assert!(
        out.status.success(),
        "htpasswd -Bbn failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Waits for the registry to listen, then polls `GET /v2/` until it answers
/// 200 (or 401 when `auth`); returns its address. On failure the process is
/// gone and the error carries its log.
fn wait_until_up(child: &mut Child, dir: &Path, auth: bool) -> Result<String, String> {
    let log = || std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    let fail = |child: &mut Child, why: String| {
        let _ = child.kill();
        let _ = child.wait();
        Err(format!("{why}:\n{}", log()))
    };
    loop {
        if let Some(status) = child.try_wait().expect("polling docker-registry") {
            return Err(format!("exited with {status}:\n{}", log()));
        }
        if let Some(port) = listening_port(child.id()) {
            let addr = format!("127.0.0.1:{port}");
            match http_status(&addr, "/v2/") {
                Some(200) => return Ok(addr),
                Some(401) if auth => return Ok(addr),
                Some(code) => return fail(child, format!("{addr} answered GET /v2/ with {code}")),
                None => {}
            }
        }
        if Instant::now() > deadline {
            return fail(child, "not serving after 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A temp dir for one registry (its config and logs), after checking the
/// registry binary is installed.
fn registry_dir(prefix: &str) -> tempfile::TempDir {
    assert!(
        Path::new(REGISTRY_BIN).exists(),
        "{REGISTRY_BIN} not found: install Debian's docker-registry package (hack/install-deps.sh)"
    );
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("creating the registry temp dir")
}

/// `docker-registry serve <config>`, access log and error log in `dir`.
fn spawn_registry(dir: &Path, config: &Path) -> Child {
    let access = std::fs::File::create(dir.join("access.log")).expect("access log");
    let errors = std::fs::File::create(dir.join("registry.log")).expect("log");
    Command::new(REGISTRY_BIN)
        .arg("serve")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(access)
        .stderr(errors)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {REGISTRY_BIN}: {e}"))
}

/// The TCP port process `pid` listens on: its socket inodes (from
/// /proc/<pid>/fd) matched against listening sockets in /proc/<pid>/net/tcp.
pub fn listening_port(pid: u32) -> Option<u16> {
    let mut inodes = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                inodes.push(inode.to_owned());
            }
        }
    }
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok()?;
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // f[1] local "ADDR:PORT" (hex), f[3] state (0A = LISTEN), f[9] inode.
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                let port = f[1].rsplit(':').next()?;
                return u16::from_str_radix(port, 16).ok();
            }
        }
    }
    None
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// Status code of a plain `GET path` to `addr`, or None if nothing answers.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}
