//! The CNI client against Debian's real plugins (bridge, host-local,
//! portmap) in real network namespaces, plus fake shell-script plugins for
//! error paths. Needs root (CI is root).
//!
//! Every test owns its namespaces, a bridge, a private /24 in 10.88.0.0/16
//! used only on that bridge, and a tempdir holding the conf dir, the cache
//! dir and host-local's dataDir, so tests run in parallel and nothing
//! touches /var/lib/cni. Guards remove namespaces, bridges, processes and
//! portmap rules even when an assertion fails.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crius::network::{
    AttachRequest, AttachResult, Cni, CniError, CniSettings, NetworkStatus, PortMapping,
};
use serde_json::{Value, json};

const PLUGIN_DIR: &str = "/usr/lib/cni";
const NETWORK: &str = "crius-test";

fn unique() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish()
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

/// Real-plugin tests need root and these packages; say how to get them.
fn require_prerequisites() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the CNI tests need root (network namespaces, bridges, iptables)"
    );
    for plugin in ["bridge", "host-local", "portmap"] {
        let p = Path::new(PLUGIN_DIR).join(plugin);
        assert!(
            p.is_file(),
            "{} missing: apt-get install containernetworking-plugins",
            p.display()
        );
    }
    for (bin, pkg) in [
        ("ip", "iproute2"),
        ("iptables", "iptables"),
        ("busybox", "busybox-static"),
    ] {
        assert!(on_path(bin), "{bin} not found: apt-get install {pkg}");
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"))
}

fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A named network namespace, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Self {
        let name = format!("crius-cni-{:012x}", unique() & 0xffff_ffff_ffff);
        run_ok(&["ip", "netns", "add", &name]);
        Self { name }
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        run(&all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// /24s taken by this process; `ip route` catches other users.
static SUBNETS: Mutex<Option<HashSet<u8>>> = Mutex::new(None);

fn pick_subnet() -> u8 {
    for _ in 0..1000 {
        let octet = 16 + (unique() % 230) as u8;
        let mut used = SUBNETS.lock().unwrap();
        let used = used.get_or_insert_with(HashSet::new);
        if used.contains(&octet) {
            continue;
        }
        let cidr = format!("10.88.{octet}.0/24");
        let routes = run_ok(&["ip", "-4", "route", "show", "match", &cidr]);
        let addrs = run_ok(&["ip", "-4", "-o", "addr", "show", "to", &cidr]);
        if routes.contains(&format!("10.88.{octet}.")) || !addrs.trim().is_empty() {
            continue;
        }
        used.insert(octet);
        return octet;
    }
    panic!("no free 10.88.x.0/24 test subnet");
}

/// One test's CNI world: tempdir, subnet, bridge, the client, and the pods
/// to detach on drop.
struct Env {
    dir: tempfile::TempDir,
    octet: u8,
    bridge: String,
    cni: Arc<Cni>,
    pods: Mutex<Vec<String>>,
}

impl Env {
    /// With the standard bridge + portmap conflist written.
    fn new() -> Self {
        let env = Self::empty();
        env.write_conf("10-crius-test.conflist", &env.conflist());
        env
    }

    /// With an empty conf dir.
    fn empty() -> Self {
        require_prerequisites();
        Self::with_bin_dirs(vec![PathBuf::from(PLUGIN_DIR)], Duration::from_secs(60))
    }

    /// Empty `bin_dirs` means a fresh `bin/` in the tempdir, for fakes, and
    /// no subnet or bridge.
    fn with_bin_dirs(mut bin_dirs: Vec<PathBuf>, timeout: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf")).unwrap();
        let real = !bin_dirs.is_empty();
        if !real {
            let bin = dir.path().join("bin");
            std::fs::create_dir(&bin).unwrap();
            bin_dirs.push(bin);
        }
        let mut settings =
            CniSettings::new(dir.path().join("conf"), bin_dirs, dir.path().join("cache"));
        settings.plugin_timeout = timeout;
        let octet = if real { pick_subnet() } else { 0 };
        Self {
            octet,
            bridge: format!("crb{:08x}", unique() as u32),
            cni: Arc::new(Cni::new(settings)),
            pods: Mutex::new(Vec::new()),
            dir,
        }
    }

    fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("conf")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    fn cache_file(&self, pod_id: &str) -> PathBuf {
        self.dir.path().join("cache").join(format!("{pod_id}.json"))
    }

    fn lease_file(&self, ip: IpAddr) -> PathBuf {
        self.data_dir().join(NETWORK).join(ip.to_string())
    }

    fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 88, self.octet, 1)
    }

    fn conflist(&self) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": self.data_dir(),
                        "ranges": [[{"subnet": format!("10.88.{}.0/24", self.octet)}]],
                        "routes": [{"dst": format!("10.88.{}.0/24", self.octet)}]
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        })
    }

    fn write_conf(&self, name: &str, value: &Value) {
        let tmp = self.conf_dir().join(".tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(value).unwrap()).unwrap();
        std::fs::rename(tmp, self.conf_dir().join(name)).unwrap();
    }

    fn request(&self, ns_path: PathBuf) -> AttachRequest {
        let pod_id = format!("pod-{:016x}", unique());
        self.pods.lock().unwrap().push(pod_id.clone());
        AttachRequest {
            pod_id,
            netns: ns_path,
            ifname: "eth0".into(),
            pod_name: "web".into(),
            pod_namespace: "default".into(),
            pod_uid: "uid-1".into(),
            ..Default::default()
        }
    }

    async fn attach(&self, ns: &Netns) -> (AttachRequest, AttachResult) {
        let req = self.request(ns.path());
        let res = self.cni.attach(&req).await.expect("attach");
        (req, res)
    }

    fn ipv4(&self, res: &AttachResult) -> Ipv4Addr {
        match res.ips.first() {
            Some(IpAddr::V4(ip)) => *ip,
            other => panic!("no IPv4 in {res:?}: {other:?}"),
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Detach on a thread with its own runtime: drop runs inside the
        // test's runtime, which cannot be blocked on from within.
        let pods = std::mem::take(&mut *self.pods.lock().unwrap());
        let cni = self.cni.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            for pod in pods {
                let meta = AttachRequest::default();
                if let Err(e) = rt.block_on(cni.detach(&pod, None, &meta)) {
                    eprintln!("cleanup detach {pod}: {e}");
                }
            }
        })
        .join();
        if self.octet != 0 {
            let _ = run(&["ip", "link", "del", &self.bridge]);
        }
    }
}

fn ping(args_prefix: &[&str], ip: Ipv4Addr) -> Output {
    let ip = ip.to_string();
    let mut args = args_prefix.to_vec();
    args.extend_from_slice(&["busybox", "ping", "-c1", "-W2", &ip]);
    run(&args)
}

#[tokio::test]
async fn status_follows_the_conf_dir() {
    let env = Env::empty();
    match env.cni.status() {
        NetworkStatus::NotReady { reason, message } => {
            assert_eq!(reason, "NetworkPluginNotReady");
            assert!(
                message.contains(&env.conf_dir().display().to_string()),
                "{message}"
            );
        }
        ready => panic!("ready with an empty conf dir: {ready:?}"),
    }

    env.write_conf("00-bad.conflist", &json!({"cniVersion": "1.0.0"}));
    match env.cni.status() {
        NetworkStatus::NotReady { message, .. } => {
            assert!(message.contains("00-bad.conflist"), "{message}")
        }
        ready => panic!("ready with only a bad conflist: {ready:?}"),
    }

    env.write_conf("10-crius-test.conflist", &env.conflist());
    assert_eq!(
        env.cni.status(),
        NetworkStatus::Ready {
            network: NETWORK.into()
        }
    );

    // The lexically first valid file wins; a single-plugin .conf is a list.
    env.write_conf(
        "05-single.conf",
        &json!({"cniVersion": "1.0.0", "name": "single", "type": "loopback"}),
    );
    assert_eq!(
        env.cni.status(),
        NetworkStatus::Ready {
            network: "single".into()
        }
    );
    std::fs::remove_file(env.conf_dir().join("05-single.conf")).unwrap();
    assert!(env.cni.status().is_ready());
}

#[tokio::test]
async fn pods_get_reachable_ips_and_reach_each_other() {
    let env = Env::new();
    let ns1 = Netns::new();
    let ns2 = Netns::new();
    let (req1, res1) = env.attach(&ns1).await;
    let (_req2, res2) = env.attach(&ns2).await;
    let ip1 = env.ipv4(&res1);
    let ip2 = env.ipv4(&res2);
    assert_ne!(ip1, ip2);
    for ip in [ip1, ip2] {
        assert_eq!(
            ip.octets()[..3],
            [10, 88, env.octet],
            "{ip} outside the test subnet"
        );
    }
    assert_eq!(res1.interfaces, vec!["eth0".to_owned()]);
    assert_eq!(res1.raw["cniVersion"], "1.0.0");

    let addr = String::from_utf8_lossy(&ns1.exec(&["ip", "-o", "addr", "show", "eth0"]).stdout)
        .into_owned();
    assert!(addr.contains(&format!("inet {ip1}/24")), "{addr}");

    let out = ping(&[], ip1);
    assert!(out.status.success(), "host cannot ping {ip1}: {out:?}");
    let out = ping(&["ip", "netns", "exec", &ns1.name], env.gateway());
    assert!(
        out.status.success(),
        "pod 1 cannot ping its gateway: {out:?}"
    );
    let out = ping(&["ip", "netns", "exec", &ns1.name], ip2);
    assert!(
        out.status.success(),
        "pod 1 cannot ping pod 2 {ip2}: {out:?}"
    );

    assert_eq!(env.cni.cached_result(&req1.pod_id), Some(res1.clone()));
    let mode = std::fs::metadata(env.cache_file(&req1.pod_id))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(env.lease_file(IpAddr::V4(ip1)).is_file());
}

/// Reads `GET /` from `addr`, retrying while the server starts.
fn http_get(addr: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        })();
        match attempt {
            Ok(body) if !body.is_empty() => return body,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("GET http://{addr}/ failed: {other:?}"),
        }
    }
}

#[tokio::test]
async fn host_port_on_loopback_reaches_httpd_in_the_pod() {
    let env = Env::new();
    let ns = Netns::new();
    let host_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut req = env.request(ns.path());
    req.port_mappings = vec![PortMapping {
        protocol: "tcp".into(),
        container_port: 8080,
        host_port,
        host_ip: "127.0.0.1".into(),
    }];
    let res = env
        .cni
        .attach(&req)
        .await
        .expect("attach with port mapping");
    let ip = env.ipv4(&res);

    let www = env.dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let token = format!("crius-{:x}", unique());
    std::fs::write(www.join("index.html"), &token).unwrap();
    let _httpd = Proc(
        Command::new("ip")
            .args([
                "netns", "exec", &ns.name, "busybox", "httpd", "-f", "-p", "8080", "-h",
            ])
            .arg(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start busybox httpd in the pod netns"),
    );

    assert!(http_get(&format!("{ip}:8080")).contains(&token), "pod IP");
    assert!(
        http_get(&format!("127.0.0.1:{host_port}")).contains(&token),
        "mapped host port on loopback"
    );
    let rules = run_ok(&["iptables", "-t", "nat", "-S"]);
    let dnat = format!("--dport {host_port} -j DNAT --to-destination {ip}:8080");
    assert!(rules.contains(&dnat), "no {dnat:?} in\n{rules}");

    env.cni
        .detach(&req.pod_id, Some(&ns.path()), &req)
        .await
        .expect("detach");
    let rules = run_ok(&["iptables", "-t", "nat", "-S"]);
    assert!(!rules.contains(&dnat), "portmap rule left after detach");
}

#[tokio::test]
async fn detach_releases_the_ip_is_idempotent_and_survives_a_deleted_netns() {
    let env = Env::new();
    let ns = Netns::new();
    let (req, res) = env.attach(&ns).await;
    let lease = env.lease_file(res.ips[0]);
    assert!(
        lease.is_file(),
        "host-local lease {} missing",
        lease.display()
    );

    let ns_path = ns.path();
    drop(ns);
    assert!(!ns_path.exists());
    env.cni
        .detach(&req.pod_id, Some(&ns_path), &req)
        .await
        .expect("detach after the netns is gone");
    assert!(!lease.exists(), "lease {} kept", lease.display());
    assert!(!env.cache_file(&req.pod_id).exists());
    assert_eq!(env.cni.cached_result(&req.pod_id), None);
    env.cni
        .detach(&req.pod_id, Some(&ns_path), &req)
        .await
        .expect("second detach");

    // A cache cut short (a power loss before the page cache reached the
    // disk): DEL still runs, with the current config, and releases the IP.
    let ns = Netns::new();
    let (req, res) = env.attach(&ns).await;
    let lease = env.lease_file(res.ips[0]);
    std::fs::write(env.cache_file(&req.pod_id), b"{\"podId\": ").unwrap();
    env.cni
        .detach(&req.pod_id, Some(&ns.path()), &req)
        .await
        .expect("detach with a corrupt cache");
    assert!(!lease.exists(), "lease {} kept", lease.display());
    assert!(!env.cache_file(&req.pod_id).exists());

    // Nothing cached and no config: nothing to do.
    let empty = Env::empty();
    empty
        .cni
        .detach("never-attached", None, &AttachRequest::default())
        .await
        .expect("detach without config");
}

#[tokio::test]
async fn a_missing_plugin_is_named_with_the_dirs_searched_and_rolled_back() {
    let env = Env::empty();
    let mut list = env.conflist();
    list["plugins"][1] = json!({"type": "crius-no-such-plugin"});
    env.write_conf("10-broken.conflist", &list);
    let ns = Netns::new();
    let req = env.request(ns.path());
    let err = env.cni.attach(&req).await.expect_err("attach must fail");
    let msg = err.to_string();
    assert!(
        matches!(&err, CniError::PluginNotFound { plugin, .. } if plugin == "crius-no-such-plugin"),
        "{err:?}"
    );
    assert!(
        msg.contains("crius-no-such-plugin") && msg.contains(PLUGIN_DIR),
        "{msg}"
    );

    // The bridge ADD before it was undone: no lease, no cache.
    let leases: Vec<_> = std::fs::read_dir(env.data_dir().join(NETWORK))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.parse::<IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(leases.is_empty(), "leases left: {leases:?}");
    assert!(!env.cache_file(&req.pod_id).exists());
}

#[tokio::test]
async fn detach_uses_the_cached_config_after_the_conf_dir_changed() {
    let env = Env::new();
    let ns = Netns::new();
    let (req, res) = env.attach(&ns).await;
    let lease = env.lease_file(res.ips[0]);
    assert!(lease.is_file());

    // A list that could not tear this pod down, now first in the dir.
    env.write_conf(
        "00-other.conflist",
        &json!({"cniVersion": "1.0.0", "name": "other", "plugins": [{"type": "crius-no-such-plugin"}]}),
    );
    assert_eq!(
        env.cni.status(),
        NetworkStatus::Ready {
            network: "other".into()
        }
    );
    env.cni
        .detach(&req.pod_id, Some(&ns.path()), &req)
        .await
        .expect("detach with the cached config");
    assert!(!lease.exists());
}

/// Fake plugins: `ok` logs its command, env and stdin and returns an IP;
/// `fail` returns a spec error; `hang` sleeps on ADD.
fn fake_plugins(bin: &Path, log: &Path) {
    let log = log.display();
    write_executable(
        &bin.join("ok"),
        &format!(
            r#"#!/bin/sh
input=$(cat)
echo "$CNI_COMMAND $CNI_CONTAINERID ifname=$CNI_IFNAME home=${{HOME-unset}} args=$CNI_ARGS" >> {log}
echo "$input" >> {log}
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{{"cniVersion":"1.0.0","interfaces":[{{"name":"eth0","sandbox":"'"$CNI_NETNS"'"}}],"ips":[{{"address":"10.99.0.5/24","interface":0}},{{"address":"fd99::5/64","interface":0}}]}}'
fi
"#
        ),
    );
    write_executable(
        &bin.join("fail"),
        &format!(
            r#"#!/bin/sh
cat > /dev/null
echo "$CNI_COMMAND fail" >> {log}
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{{"cniVersion":"1.0.0","code":7,"msg":"no luck","details":"try again"}}'
  exit 1
fi
"#
        ),
    );
    write_executable(
        &bin.join("hang"),
        &format!(
            "#!/bin/sh\n[ \"$CNI_COMMAND\" = ADD ] || exit 0\nsleep 30 &\necho $! > {log}.sleep\nwait\n"
        ),
    );
}

fn fake_env(plugins: Value, timeout: Duration) -> (Env, PathBuf, PathBuf) {
    let env = Env::with_bin_dirs(Vec::new(), timeout);
    let log = env.dir.path().join("calls.log");
    fake_plugins(&env.dir.path().join("bin"), &log);
    env.write_conf(
        "10-fake.conflist",
        &json!({"cniVersion": "1.0.0", "name": "fake", "plugins": plugins}),
    );
    // The fakes never enter the netns; any existing file will do.
    let netns = env.dir.path().join("netns");
    std::fs::write(&netns, "").unwrap();
    (env, log, netns)
}

#[tokio::test]
async fn fake_plugins_chain_results_and_errors_roll_back() {
    let (env, log, netns) = fake_env(
        json!([{"type": "ok"}, {"type": "ok", "capabilities": {"dns": true}}]),
        Duration::from_secs(60),
    );
    let mut req = env.request(netns.clone());
    req.dns = Some(json!({"servers": ["10.99.0.10"]}));
    let res = env.cni.attach(&req).await.expect("fake attach");
    assert_eq!(
        res.ips,
        vec![
            "10.99.0.5".parse::<IpAddr>().unwrap(),
            "fd99::5".parse().unwrap()
        ]
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = calls.lines().collect();
    let first: Value = serde_json::from_str(lines[1]).unwrap();
    let second: Value = serde_json::from_str(lines[3]).unwrap();
    assert!(first.get("prevResult").is_none() && first.get("runtimeConfig").is_none());
    assert_eq!(first["name"], "fake");
    assert_eq!(second["prevResult"]["ips"][0]["address"], "10.99.0.5/24");
    assert_eq!(second["runtimeConfig"]["dns"]["servers"][0], "10.99.0.10");
    assert!(
        lines[0].starts_with(&format!("ADD {} ifname=eth0 home=unset ", req.pod_id)),
        "environment not explicit: {}",
        lines[0]
    );
    assert!(lines[0].contains(&format!(
        "args=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID=uid-1",
        req.pod_id
    )));

    env.cni
        .detach(&req.pod_id, Some(&netns), &req)
        .await
        .unwrap();
    let calls = std::fs::read_to_string(&log).unwrap();
    let dels: Vec<&str> = calls.lines().filter(|l| l.starts_with("DEL ")).collect();
    assert_eq!(dels.len(), 2, "{calls}");
    let del_stdin: Value = serde_json::from_str(calls.lines().last().unwrap()).unwrap();
    assert_eq!(del_stdin["prevResult"]["ips"][0]["address"], "10.99.0.5/24");

    // A failing second plugin: its code and message, and the first is DEL'd.
    std::fs::write(&log, "").unwrap();
    env.write_conf(
        "10-fake.conflist",
        &json!({"cniVersion": "1.0.0", "name": "fake", "plugins": [{"type": "ok"}, {"type": "fail"}]}),
    );
    let req = env.request(netns);
    let err = env.cni.attach(&req).await.expect_err("fail plugin");
    match &err {
        CniError::Plugin {
            plugin,
            command,
            code,
            msg,
            details,
        } => assert_eq!(
            (
                plugin.as_str(),
                *command,
                *code,
                msg.as_str(),
                details.as_str()
            ),
            ("fail", "ADD", 7, "no luck", "try again")
        ),
        other => panic!("{other:?}"),
    }
    let calls = std::fs::read_to_string(&log).unwrap();
    let order: Vec<String> = calls
        .lines()
        .filter(|l| l.starts_with("ADD ") || l.starts_with("DEL "))
        .map(|l| {
            let mut words = l.split(' ');
            let cmd = words.next().unwrap();
            let who = if words.next() == Some("fail") {
                "fail"
            } else {
                "ok"
            };
            format!("{cmd} {who}")
        })
        .collect();
    assert_eq!(
        order,
        ["ADD ok", "ADD fail", "DEL fail", "DEL ok"],
        "{calls}"
    );
    assert!(!env.cache_file(&req.pod_id).exists());
    assert_eq!(env.cni.cached_result(&req.pod_id), None);
}

#[tokio::test]
async fn a_hung_plugin_is_killed_after_the_timeout() {
    let (env, log, netns) = fake_env(json!([{"type": "hang"}]), Duration::from_secs(1));
    let req = env.request(netns);
    let started = Instant::now();
    let err = env.cni.attach(&req).await.expect_err("hang must time out");
    assert!(
        matches!(err, CniError::PluginTimeout { ref plugin, .. } if plugin == "hang"),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // The plugin's own children die with it.
    let pid = std::fs::read_to_string(format!("{}.sleep", log.display())).unwrap();
    // Dead means gone or a zombie: the orphan's reaper (pid 1) may be slow.
    let stat = PathBuf::from(format!("/proc/{}/stat", pid.trim()));
    let alive = || {
        std::fs::read_to_string(&stat)
            .is_ok_and(|s| s.rsplit(") ").next().is_some_and(|st| !st.starts_with('Z')))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(), "plugin child {} still running", pid.trim());
}

#[tokio::test]
async fn bad_pod_ids_and_missing_netns_are_refused() {
    let (env, _log, netns) = fake_env(json!([{"type": "ok"}]), Duration::from_secs(60));
    let mut req = env.request(netns);
    req.pod_id = "../escape".into();
    assert!(matches!(
        env.cni.attach(&req).await,
        Err(CniError::InvalidPodId(_))
    ));
    assert!(matches!(
        env.cni.detach("a/b", None, &req).await,
        Err(CniError::InvalidPodId(_))
    ));
    let mut req = env.request(env.dir.path().join("no-such-netns"));
    req.ifname = String::new();
    let err = env.cni.attach(&req).await.expect_err("missing netns");
    assert!(err.to_string().contains("no-such-netns"), "{err}");
}
