//! The benchmarks' peer (Debian's containerd) and their shared output:
//! starting containerd with its own config,
//! root, state and socket in a temp dir, waited for until the socket exists.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The containerd binary, if installed.
pub fn binary() -> Option<&'static str> {
    ["/usr/bin/containerd", "/usr/local/bin/containerd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

/// Writes `config` (which must use `dir` for root, state and
/// `dir/containerd.sock` for the socket) and starts containerd; returns the
/// child and the socket once it exists (at most 20 s), logging to
/// `dir/containerd.log`.
pub fn spawn(bin: &str, dir: &Path, config: &str) -> Option<(Child, PathBuf)> {
    let socket = dir.join("containerd.sock");
    std::fs::write(dir.join("config.toml"), config).ok()?;
    let log = std::fs::File::create(dir.join("containerd.log")).ok()?;
    let child = Command::new(bin)
        .arg("--config")
        .arg(dir.join("config.toml"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((child, socket))
}

/// A `<field>: <n> kB` line of `/proc/<pid>/<file>` (e.g. `status`/`VmRSS`,
/// `smaps_rollup`/`Pss`), 0 when the process or line is gone.
pub fn proc_kib(pid: u32, file: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// One table row: crius's figure, the peer's (if it ran) and their ratio.
pub fn row(width: usize, what: &str, ours: f64, peer: Option<f64>) {
    match peer {
        Some(p) => println!("{what:<width$} {ours:>10.1} {p:>12.1} {:>8.2}", ours / p),
        None => println!("{what:<width$} {ours:>10.1} {:>12} {:>8}", "-", "-"),
    }
}

/// The table's header line.
pub fn header(width: usize) {
    println!(
        "{:<width$} {:>10} {:>12} {:>8}",
        "", "crius", "containerd", "ratio"
    );
}
