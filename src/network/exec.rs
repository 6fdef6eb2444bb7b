//! Running one CNI plugin: binary lookup in the bin dirs, a fully explicit
//! environment, stdin config, capped stdout, a kill on timeout, and the
//! plugin's JSON error turned into a typed error.
//!
//! The daemon is multi-threaded, so the CNI variables go to the child only
//! (`env_clear` + explicit env), never through the process environment.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::CniError;

/// Results are a few KiB; anything bigger is a broken plugin.
const MAX_STDOUT: u64 = 1 << 20;
const MAX_STDERR: u64 = 64 << 10;
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The first `<dir>/<plugin>` that is an executable file.
pub(crate) fn find_plugin(plugin: &str, dirs: &[PathBuf]) -> Result<PathBuf, CniError> {
    use std::os::unix::fs::PermissionsExt;
    dirs.iter()
        .map(|d| d.join(plugin))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| CniError::PluginNotFound {
            plugin: plugin.to_owned(),
            dirs: dirs.to_vec(),
        })
}

/// One plugin invocation.
#[derive(Debug)]
pub(crate) struct Invocation {
    pub plugin: String,
    pub binary: PathBuf,
    pub command: &'static str,
    pub container_id: String,
    /// Empty for a DEL whose netns is gone.
    pub netns: PathBuf,
    pub ifname: String,
    pub cni_path: String,
    pub cni_args: String,
    pub stdin: Vec<u8>,
    pub timeout: Duration,
}

impl Invocation {
    /// Runs the plugin on a blocking thread; returns its parsed stdout
    /// (`Null` when a DEL printed nothing).
    pub async fn run(self) -> Result<Value, CniError> {
        let plugin = self.plugin.clone();
        let command = self.command;
        tokio::task::spawn_blocking(move || self.run_blocking())
            .await
            .unwrap_or_else(|e| {
                Err(CniError::PluginOutput {
                    plugin,
                    command,
                    reason: format!("runner thread failed: {e}"),
                })
            })
    }

    fn run_blocking(self) -> Result<Value, CniError> {
        let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
        let mut cmd = Command::new(&self.binary);
        cmd.env_clear()
            .env("PATH", path)
            .env("CNI_COMMAND", self.command)
            .env("CNI_CONTAINERID", &self.container_id)
            .env("CNI_NETNS", &self.netns)
            .env("CNI_IFNAME", &self.ifname)
            .env("CNI_PATH", &self.cni_path)
            .env("CNI_ARGS", &self.cni_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = spawn(&mut cmd).map_err(|source| CniError::PluginSpawn {
            plugin: self.plugin.clone(),
            path: self.binary.clone(),
            source,
        })?;
        let deadline = Instant::now() + self.timeout;

        // Separate threads so a plugin that writes before reading stdin, or
        // fills stderr, cannot deadlock us.
        if let Some(mut stdin) = child.stdin.take() {
            let data = self.stdin;
            std::thread::spawn(move || {
                // A plugin may exit without reading its config.
                let _ = stdin.write_all(&data);
            });
        }
        let stdout_rx = child.stdout.take().map(|s| read_capped(s, MAX_STDOUT));
        let stderr_rx = child.stderr.take().map(|s| read_capped(s, MAX_STDERR));

        // Stdout reaches EOF when the plugin exits (or closes it early).
        let stdout = match stdout_rx {
            Some(rx) => rx.recv_timeout(deadline.saturating_duration_since(Instant::now())),
            None => Ok((Vec::new(), false)),
        };
        let status = match stdout {
            Ok(_) => crate::sys::process::wait_deadline(&mut child, deadline),
            Err(_) => None,
        };
        let Some(status) = status else {
            // The child is not reaped yet, so its pid (and the group it
            // leads) is still ours to kill; the group takes helpers the
            // plugin started (iptables, a stuck sleep) with it.
            let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
            return Err(CniError::PluginTimeout {
                plugin: self.plugin,
                command: self.command,
                timeout: self.timeout,
            });
        };
        let (out, overflow) = stdout.unwrap_or_default();
        let stderr = stderr_rx
            .and_then(|rx| rx.recv_timeout(Duration::from_secs(1)).ok())
            .map(|(e, _)| String::from_utf8_lossy(&e).trim().to_owned())
            .unwrap_or_default();
        if !stderr.is_empty() {
            tracing::debug!(plugin = %self.plugin, command = self.command, %stderr, "CNI plugin stderr");
        }
        if overflow {
            return Err(CniError::PluginOutput {
                plugin: self.plugin,
                command: self.command,
                reason: format!("stdout larger than {MAX_STDOUT} bytes"),
            });
        }
        if !status.success() {
            return Err(
                plugin_error(&self.plugin, self.command, &out).unwrap_or_else(|| {
                    CniError::PluginFailed {
                        plugin: self.plugin,
                        command: self.command,
                        status: status.to_string(),
                        stderr,
                    }
                }),
            );
        }
        if out.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&out).map_err(|e| CniError::PluginOutput {
            plugin: self.plugin,
            command: self.command,
            reason: format!("stdout is not JSON: {e}"),
        })
    }
}

/// Spawns, retrying ETXTBSY: a binary just written (a plugin upgrade) can
/// still be open for writing in a child another thread forked but has not
/// exec'd yet; that fd closes within moments.
fn spawn(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(5 * tries));
            }
            other => return other,
        }
    }
}

/// Reads up to `cap` bytes, then drains the rest so the writer never blocks.
fn read_capped(mut r: impl Read + Send + 'static, cap: u64) -> mpsc::Receiver<(Vec<u8>, bool)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut r).take(cap + 1).read_to_end(&mut buf);
        let overflow = buf.len() as u64 > cap;
        if overflow {
            buf.truncate(cap as usize);
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        }
        let _ = tx.send((buf, overflow));
    });
    rx
}

/// The spec's error object: `{"code": N, "msg": "...", "details": "..."}`.
fn plugin_error(plugin: &str, command: &'static str, out: &[u8]) -> Option<CniError> {
    let v: Value = serde_json::from_slice(out).ok()?;
    let code = v.get("code")?.as_u64()?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    Some(CniError::Plugin {
        plugin: plugin.to_owned(),
        command,
        code,
        msg: text("msg"),
        details: text("details"),
    })
}

/// `CNI_PATH`: the bin dirs joined with `:`.
pub(crate) fn cni_path(dirs: &[PathBuf]) -> String {
    let parts: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    parts.join(":")
}

/// Whether `path` names a netns file that still exists.
pub(crate) fn netns_exists(path: &Path) -> bool {
    !path.as_os_str().is_empty() && path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_error_object_is_parsed() {
        let out = br#"{"cniVersion":"1.0.0","code":7,"msg":"bad","details":"why"}"#;
        match plugin_error("p", "ADD", out) {
            Some(CniError::Plugin {
                code, msg, details, ..
            }) => assert_eq!((code, msg.as_str(), details.as_str()), (7, "bad", "why")),
            other => panic!("{other:?}"),
        }
        assert!(plugin_error("p", "ADD", b"garbage").is_none());
    }
}
