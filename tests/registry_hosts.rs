//! Operator registry configuration through the real daemon: a containerd
//! hosts directory (mirror order, capabilities, fallback to the upstream,
//! re-read when hosts.toml changes), node credentials for a mirror from a
//! Docker config.json, the pull progress timeout against a registry that
//! stalls in the middle of a blob, and the pull's spans in an OTLP trace.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::cri::*;
use common::*;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Writes `<hosts_dir>/<registry>/hosts.toml`.
fn write_hosts_toml(hosts_dir: &Path, registry: &str, text: &str) {
    let dir = hosts_dir.join(registry);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hosts.toml"), text).unwrap();
}

fn hosts_dir_toml(dir: &Path) -> String {
    format!("[image]\nhosts_dir = {:?}\n", dir.display().to_string())
}

/// GETs `registry` answered for `path` (a substring of the request line).
fn gets(registry: &Registry, path: &str) -> usize {
    registry
        .access_log()
        .lines()
        .filter(|l| l.contains("\"GET /v2/") && l.contains(path))
        .count()
}

#[tokio::test]
async fn mirrors_in_order_with_capabilities_then_the_upstream() {
    let upstream = Registry::start();
    let pull_only = Registry::start();
    let image = busybox_image();
    let pushed = push(&upstream, "team/app", "v1", &image).await;
    // The pull-only mirror has the image too, but may not resolve the tag.
    push(&pull_only, "team/app", "v1", &image).await;
    let hosts = tempfile::tempdir().unwrap();
    write_hosts_toml(
        hosts.path(),
        upstream.addr(),
        &format!(
            "server = \"http://{up}\"\n\
             [host.\"http://127.0.0.1:9\"]\n  capabilities = [\"pull\", \"resolve\"]\n\
             [host.\"http://{m}\"]\n  capabilities = [\"pull\"]\n",
            up = upstream.addr(),
            m = pull_only.addr()
        ),
    );
    let daemon = Daemon::start(&hosts_dir_toml(hosts.path()));
    let mut client = daemon.image_client().await;
    assert_eq!(
        pull_ok(&mut client, &pushed.reference).await,
        pushed.image_id
    );
    assert_eq!(
        gets(&pull_only, "/manifests/v1 "),
        0,
        "a pull-only mirror never resolves a tag"
    );
    assert_eq!(
        gets(&upstream, "/manifests/v1 "),
        1,
        "the upstream resolved it"
    );
    for d in image.blob_digests() {
        assert_eq!(pull_only.blob_gets(&d), 1, "blob {d} from the mirror");
        assert_eq!(upstream.blob_gets(&d), 0, "blob {d} not from the upstream");
    }
}

#[tokio::test]
async fn the_upstream_serves_what_the_mirror_lacks() {
    let upstream = Registry::start();
    let empty_mirror = Registry::start();
    let pushed = push(&upstream, "team/app", "v1", &busybox_image()).await;
    let hosts = tempfile::tempdir().unwrap();
    write_hosts_toml(
        hosts.path(),
        upstream.addr(),
        &format!("[host.\"http://{}\"]\n", empty_mirror.addr()),
    );
    let daemon = Daemon::start(&hosts_dir_toml(hosts.path()));
    let mut client = daemon.image_client().await;
    assert_eq!(
        pull_ok(&mut client, &pushed.reference).await,
        pushed.image_id
    );
    assert_eq!(
        gets(&empty_mirror, "/v2/team/app/manifests/v1 "),
        1,
        "the mirror was asked first"
    );
}

#[tokio::test]
async fn the_hosts_dir_is_reread_between_pulls() {
    let first = Registry::start();
    let second = Registry::start();
    let a = push(&first, "team/app", "a", &busybox_image()).await;
    let b = push(&second, "team/app", "b", &user_image("1000")).await;
    // A registry name nobody serves: only the mirrors can answer.
    let name = "registry.crius.invalid:5000";
    let hosts = tempfile::tempdir().unwrap();
    let mirror_toml = |r: &Registry| {
        format!(
            "server = \"http://127.0.0.1:9\"\n[host.\"http://{}\"]\n",
            r.addr()
        )
    };
    write_hosts_toml(hosts.path(), name, &mirror_toml(&first));
    let daemon = Daemon::start(&hosts_dir_toml(hosts.path()));
    let mut client = daemon.image_client().await;
    assert_eq!(
        pull_ok(&mut client, &format!("{name}/team/app:a")).await,
        a.image_id
    );
    let e = pull_err(&mut client, &format!("{name}/team/app:b"), None).await;
    assert!(e.message().contains(name), "{e:?}");

    write_hosts_toml(hosts.path(), name, &mirror_toml(&second));
    assert_eq!(
        pull_ok(&mut client, &format!("{name}/team/app:b")).await,
        b.image_id,
        "the changed hosts.toml is used without a restart"
    );

    // A broken file is reported by name rather than ignored.
    write_hosts_toml(hosts.path(), name, "server = 1\n");
    let e = pull_err(&mut client, &format!("{name}/team/app:a"), None).await;
    assert!(e.message().contains("hosts.toml"), "{e:?}");
}

#[tokio::test]
async fn a_mirror_gets_its_own_credentials_from_the_credentials_file() {
    let upstream = Registry::start();
    let (user, pass) = ("mirror-user", "mirror-secret-3141");
    let mirror = Registry::start_with_htpasswd(user, pass);
    let pushed_on_mirror = push(&mirror, "team/app", "v1", &busybox_image()).await;
    let wanted = upstream.reference("team/app", "v1");
    let mirror_cfg = |extra: &str| {
        format!(
            "[image]\n{extra}\n[image.registries.{up:?}]\n\
             [[image.registries.{up:?}.mirrors]]\nurl = \"http://{m}\"\n",
            up = upstream.addr(),
            m = mirror.addr()
        )
    };

    // Without node credentials the mirror refuses, and the upstream lacks it.
    let daemon = Daemon::start(&mirror_cfg(""));
    let mut client = daemon.image_client().await;
    pull_err(&mut client, &wanted, None).await;
    drop(daemon);

    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("config.json");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    std::fs::write(
        &creds,
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            mirror.addr()
        ),
    )
    .unwrap();
    // Group-readable: works, with a warning.
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o640)).unwrap();
    let daemon = Daemon::start(&mirror_cfg(&format!(
        "credentials_file = {:?}",
        creds.display().to_string()
    )));
    let mut client = daemon.image_client().await;
    assert_eq!(
        pull_ok(&mut client, &wanted).await,
        pushed_on_mirror.image_id
    );
    let log = daemon.log();
    assert!(
        log.contains("readable by group or others"),
        "a group-readable credentials file is warned about:\n{log}"
    );
    assert!(
        !log.contains(pass) && !log.contains(&auth),
        "secrets never reach the log"
    );
}

/// A registry that serves `image` as `stall/app:v1` but sends only the first
/// half of its layer and then goes silent, keeping the connection open.
async fn stalling_registry(image: Image) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let image = image.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req);
                let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                let layer = &image.layers[0];
                let (ctype, body, stall) = if path == "/v2/stall/app/manifests/v1" {
                    (image.manifest_media_type, image.manifest.clone(), false)
                } else if path == format!("/v2/stall/app/blobs/{}", image.config_digest) {
                    ("application/octet-stream", image.config.clone(), false)
                } else if path == format!("/v2/stall/app/blobs/{}", layer.digest) {
                    ("application/octet-stream", layer.data.clone(), true)
                } else {
                    let _ = s
                        .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                    return;
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let sent = if stall { body.len() / 2 } else { body.len() };
                let _ = s.write_all(&body[..sent]).await;
                if stall {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_stalls_is_cancelled_naming_image_and_blob() {
    let image = single_plain_layer_image(7, 256 << 10);
    let layer = image.layers[0].digest.clone();
    let (addr, task) = stalling_registry(image).await;
    let daemon = Daemon::start("[image]\npull_progress_timeout_secs = 2\n");
    let mut client = daemon.image_client().await;
    let reference = format!("{addr}/stall/app:v1");
    let started = Instant::now();
    let e = pull_err(&mut client, &reference, None).await;
    let took = started.elapsed();
    task.abort();
    let msg = e.message();
    assert!(
        msg.contains(&reference) && msg.contains(&layer),
        "the error names the image and the blob: {msg}"
    );
    assert!(
        msg.contains("pull_progress_timeout_secs"),
        "the error names the setting: {msg}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(20),
        "cancelled after about 2 s of silence, not {took:?}"
    );
    let leftovers = temp_leftovers(daemon.state_dir());
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

// Multi-threaded: the collector keeps serving while the test thread waits
// for the daemon to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_of_a_pull_has_a_pull_span_and_a_span_per_blob() {
    let (collector, tracing) = common::otlp::Collector::start(1.0).await;
    let registry = Registry::start();
    let image = fivelayer_image();
    let pushed = push(&registry, "team/app", "v1", &image).await;
    let mut daemon = Daemon::start(&tracing);
    let mut client = daemon.image_client().await;
    pull_ok(&mut client, &pushed.reference).await;
    drop(client);
    // SIGTERM flushes the batch exporter.
    let status = tokio::task::block_in_place(|| daemon.stop());
    assert!(status.success(), "log:\n{}", daemon.log());

    let spans = collector.spans();
    let pull = spans
        .iter()
        .find(|s| s.name == "pull")
        .unwrap_or_else(|| panic!("no pull span exported: {spans:?}"));
    let blobs: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "blob" && s.parent_span_id == pull.span_id)
        .collect();
    assert_eq!(
        blobs.len(),
        image.blob_digests().len(),
        "one blob span per config and layer, each a child of the pull span: {spans:?}"
    );
    for d in image.blob_digests() {
        assert!(
            blobs
                .iter()
                .any(|s| format!("{:?}", s.attributes).contains(&d)),
            "a blob span names {d}"
        );
    }
}
