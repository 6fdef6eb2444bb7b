//! A private CNI network for one test: a conflist (bridge + host-local +
//! portmap) in a temp conf dir, a bridge and a /24 no other test uses, and
//! host-local's state in the temp dir. The bridge is deleted on drop.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use tempfile::TempDir;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Debian's containernetworking-plugins install here.
pub const CNI_BIN: &str = "/usr/lib/cni";

#[derive(Debug)]
pub struct TestNet {
    dir: TempDir,
    pub conf_dir: PathBuf,
    pub bridge: String,
    /// First three octets, e.g. "10.89.17".
    pub prefix: String,
    pub name: String,
}

impl TestNet {
    pub fn new() -> TestNet {
        for plugin in ["bridge", "host-local", "portmap", "bandwidth"] {
            assert!(
                std::path::Path::new(CNI_BIN).join(plugin).exists(),
                "CNI plugin {plugin} missing in {CNI_BIN}: install Debian's containernetworking-plugins (hack/install-deps.sh)"
            );
        }
        let pid = std::process::id();
        // Unique within this test binary (counter); binaries run one at a
        // time. A /24 the host already routes (a bridge a killed run left
        // behind) is skipped: traffic to the pod would go there instead.
        let mut n = NEXT.fetch_add(1, Ordering::SeqCst);
        let mut octet = (pid % 200 + n) % 250 + 1;
        for _ in 0..250 {
            if !routed(&format!("10.89.{octet}.0/24")) {
                break;
            }
            n = NEXT.fetch_add(1, Ordering::SeqCst);
            octet = (pid % 200 + n) % 250 + 1;
        }
        let bridge = format!("crt{}x{n}", pid % 10000);
        let name = format!("crius-test-{pid}-{n}");
        let dir = tempfile::tempdir().expect("tempdir");
        let conf_dir = dir.path().join("net.d");
        std::fs::create_dir_all(&conf_dir).unwrap();
        let prefix = format!("10.89.{octet}");
        let net = TestNet {
            conf_dir,
            bridge,
            prefix,
            name,
            dir,
        };
        net.write_conflist("10-test.conflist");
        net
    }

    /// Writes the network config under `file_name` in the conf dir.
    pub fn write_conflist(&self, file_name: &str) {
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": self.name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": format!("{}.0/24", self.prefix)}]],
                        "dataDir": self.dir.path().join("ipam"),
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}},
                {"type": "bandwidth", "capabilities": {"bandwidth": true}}
            ]
        });
        std::fs::write(self.conf_dir.join(file_name), conf.to_string()).unwrap();
    }

    /// `[cni]` config table for the daemon.
    pub fn toml(&self) -> String {
        format!(
            "[cni]\nconf_dir = {:?}\nbin_dirs = [{CNI_BIN:?}]\n",
            self.conf_dir.display().to_string()
        )
    }

    /// host-local's record of allocated IPs.
    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam").join(&self.name)
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Whether the host has a route for exactly `net` (iproute2).
fn routed(net: &str) -> bool {
    std::process::Command::new("ip")
        .args(["-4", "route", "show", "exact", net])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty())
}
