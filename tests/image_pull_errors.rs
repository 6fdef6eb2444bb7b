//! CRI PullImage failure and stress paths through the real daemon: corrupted
//! blobs, malicious layers, registry auth, unknown names, unreachable
//! registries, concurrent identical pulls, and a daemon killed mid-pull.
//! Every failure must leave nothing behind. Each test owns its registry and daemon.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use common::cri::*;
use common::*;
use k8s_cri::v1::AuthConfig;
use tonic::Code;

/// After a failed pull nothing may remain: no image, no layer dir, no temp file.
async fn assert_nothing_kept(daemon: &Daemon, client: &mut ImageClient, what: &str) {
    let images = list(client, None).await;
    assert!(
        images.is_empty(),
        "{what}: images listed after a failed pull: {images:?}"
    );
    wait_for(&format!("{what}: layer dirs to be cleaned up"), || {
        daemon.layer_dirs().is_empty()
    })
    .await;
    let leftovers = temp_leftovers(daemon.state_dir());
    assert!(
        leftovers.is_empty(),
        "{what}: temp files left: {leftovers:?}"
    );
}

/// A fresh daemon's pull of `reference` fails naming the digest and keeps nothing.
async fn pull_fails_on_digest(reference: &str, what: &str) {
    let daemon = Daemon::start("");
    let mut client = daemon.image_client().await;
    let err = pull_err(&mut client, reference, None).await;
    assert!(
        err.message().to_lowercase().contains("digest"),
        "error should say the digest did not match: {err:?}"
    );
    assert_nothing_kept(&daemon, &mut client, what).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_layer_blob_fails_with_digest_error_and_keeps_nothing() {
    let registry = Registry::start();
    // Uncompressed, so the corruption (inside file data, past the tar header)
    // still unpacks: only digest verification can notice it.
    let image = single_plain_layer_image(11, 256 * 1024);
    let pushed = push(&registry, "corrupt", "latest", &image).await;
    registry.corrupt_blob(&image.layers[0].digest, 100_000);

    pull_fails_on_digest(&pushed.reference, "corrupted layer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_config_blob_fails_with_digest_error() {
    let registry = Registry::start();
    let image = ImageBuilder::new()
        .label("corrupt-me", "aaaaaaaa")
        .layer(file_layer("f", "f\n", Compression::Gzip))
        .build();
    let pushed = push(&registry, "badconfig", "latest", &image).await;
    // Change a letter inside a JSON string: still valid JSON, wrong digest.
    let offset = image
        .config
        .windows(8)
        .position(|w| w == b"aaaaaaaa")
        .expect("label value in config");
    registry.set_blob_byte(&image.config_digest, offset, b'b');

    pull_fails_on_digest(&pushed.reference, "corrupted config").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malicious_layers_fail_naming_the_entry_and_write_nothing_outside() {
    let registry = Registry::start();
    let outside = tempfile::Builder::new()
        .prefix("crius-outside-")
        .tempdir()
        .unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "original\n").unwrap();
    let cases = malicious_images(outside.path(), &victim);
    let mut refs = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        refs.push(
            push(&registry, &format!("evil{i}"), "latest", &case.image)
                .await
                .reference,
        );
    }

    let daemon = Daemon::start("");
    let mut client = daemon.image_client().await;
    let mut failures = Vec::new();
    for (case, reference) in cases.iter().zip(&refs) {
        match pull(&mut client, reference, None).await {
            Ok(id) => failures.push(format!("{}: pull succeeded ({id})", case.kind)),
            Err(e) if !e.message().contains(&case.entry) => failures.push(format!(
                "{}: error does not name the entry {:?}: {e:?}",
                case.kind, case.entry
            )),
            Err(_) => {}
        }
        let mut present: Vec<String> = std::fs::read_dir(outside.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        present.sort();
        if present != ["victim"] {
            failures.push(format!("{}: written outside: {present:?}", case.kind));
        }
        let meta = std::fs::metadata(&victim).unwrap();
        if meta.nlink() != 1 || std::fs::read_to_string(&victim).unwrap() != "original\n" {
            failures.push(format!(
                "{}: the file outside was linked or changed",
                case.kind
            ));
        }
        let escaped = find_named(daemon.dir(), "escape");
        if !escaped.is_empty() {
            failures.push(format!(
                "{}: escape files in the daemon dir: {escaped:?}",
                case.kind
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "malicious layers:\n{}",
        failures.join("\n")
    );
    assert_nothing_kept(&daemon, &mut client, "malicious layers").await;
}

/// Paths under `root` whose name contains `needle`, outside layer contents.
fn find_named(root: &Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().contains(needle) {
                out.push(e.path());
            }
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(e.path());
            }
        }
    }
    out
}

fn assert_unauthorized(err: &tonic::Status, registry: &Registry, what: &str) {
    assert!(
        matches!(err.code(), Code::Unauthenticated | Code::PermissionDenied),
        "{what}: code should be Unauthenticated (or PermissionDenied): {err:?}"
    );
    let msg = err.message().to_lowercase();
    assert!(
        msg.contains("unauthorized") || msg.contains("authenticat") || msg.contains("credential"),
        "{what}: message should say authentication failed: {err:?}"
    );
    assert!(
        err.message().contains(registry.addr()),
        "{what}: message should name the registry {}: {err:?}",
        registry.addr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_auth_with_username_password_and_auth_field() {
    let registry = Registry::start_with_htpasswd("alice", "s3cret");
    let a = push(&registry, "private/a", "latest", &user_image("1002")).await;
    let b = push(&registry, "private/b", "latest", &user_image("www-data")).await;
    let c = push(&registry, "private/c", "latest", &user_image("1003:1003")).await;
    let daemon = Daemon::start("");
    let mut client = daemon.image_client().await;
    let server = registry.addr();

    let err = pull_err(&mut client, &a.reference, None).await;
    assert_unauthorized(&err, &registry, "no AuthConfig");
    let wrong = basic_auth(server, "alice", "wrong");
    let err = pull_err(&mut client, &c.reference, Some(wrong)).await;
    assert_unauthorized(&err, &registry, "wrong password");
    assert!(list(&mut client, None).await.is_empty());

    let good = basic_auth(server, "alice", "s3cret");
    let id = pull(&mut client, &a.reference, Some(good))
        .await
        .expect("username/password");
    assert_eq!(id, a.image_id);

    let encoded = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
    let auth = AuthConfig {
        auth: encoded,
        server_address: server.into(),
        ..Default::default()
    };
    let id = pull(&mut client, &b.reference, Some(auth))
        .await
        .expect("auth field");
    assert_eq!(id, b.image_id);
    assert_eq!(list(&mut client, None).await.len(), 2);
    assert!(
        !daemon.log().contains("s3cret") && !daemon.log().contains("YWxpY2U6czNjcmV0"),
        "credentials must never be logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tag_repository_and_digest_are_not_found() {
    let registry = Registry::start();
    push(&registry, "busybox", "latest", &busybox_image()).await;
    let daemon = Daemon::start("");
    let mut client = daemon.image_client().await;

    let tag = registry.reference("busybox", "nosuchtag");
    let err = pull_err(&mut client, &tag, None).await;
    assert_eq!(err.code(), Code::NotFound, "unknown tag: {err:?}");
    assert!(
        err.message().contains("nosuchtag"),
        "message names the tag: {err:?}"
    );

    let repo = registry.reference("nosuchrepo", "latest");
    let err_repo = pull_err(&mut client, &repo, None).await;
    assert_eq!(
        err_repo.code(),
        Code::NotFound,
        "unknown repository: {err_repo:?}"
    );
    assert!(err_repo.message().contains("nosuchrepo"), "{err_repo:?}");
    assert!(
        err_repo.message().to_lowercase().contains("repository"),
        "message should say the repository is unknown: {err_repo:?}"
    );
    // Distinct in kind, not only in the names they quote: distribution 2.8
    // answers MANIFEST_UNKNOWN for both, so telling them apart takes a look
    // at the repository (e.g. its tags/list answering NAME_UNKNOWN).
    let shape = |msg: &str, repo: &str, tag: &str| {
        msg.replace(registry.addr(), "<registry>")
            .replace(repo, "<repo>")
            .replace(tag, "<tag>")
    };
    assert_ne!(
        shape(err.message(), "busybox", "nosuchtag"),
        shape(err_repo.message(), "nosuchrepo", "latest"),
        "an unknown repository and an unknown tag need different errors"
    );

    let digest = registry.digest_reference("busybox", &format!("sha256:{}", "ab".repeat(32)));
    let err = pull_err(&mut client, &digest, None).await;
    assert_eq!(err.code(), Code::NotFound, "unknown digest: {err:?}");
    assert!(list(&mut client, None).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_registry_is_a_clear_error() {
    let daemon = Daemon::start("");
    let mut client = daemon.image_client().await;
    // A port nothing listens on: connection refused.
    let addr = format!("127.0.0.1:{}", common::registry::free_port());
    let err = pull_err(&mut client, &format!("{addr}/busybox:latest"), None).await;
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains(&addr),
        "message names the registry: {err:?}"
    );
    assert!(list(&mut client, None).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_pulls_download_each_blob_once() {
    let registry = Registry::start();
    let image = fivelayer_image();
    push(&registry, "fivelayer", "latest", &image).await;
    // Throttled so all five pulls overlap while the first is still downloading.
    let proxy = SlowProxy::start(registry.addr(), 1024 * 1024);
    let reference = format!("{}/fivelayer:latest", proxy.addr());
    let daemon = Daemon::start("");

    let mut tasks = Vec::new();
    for _ in 0..5 {
        let mut client = daemon.image_client().await;
        let reference = reference.clone();
        tasks.push(tokio::spawn(async move {
            pull(&mut client, &reference, None).await
        }));
    }
    for t in tasks {
        let id = t.await.unwrap().expect("concurrent pull");
        assert_eq!(id, image.id());
    }
    let mut client = daemon.image_client().await;
    assert_eq!(list(&mut client, None).await.len(), 1);
    for digest in image.blob_digests() {
        assert_eq!(
            proxy.blob_gets(&digest),
            1,
            "blob {digest} downloaded once; requests: {:#?}",
            proxy.requests()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_pull_then_restart_and_pull_again() {
    let registry = Registry::start();
    let image = big_image(42, 4 * 1024 * 1024);
    push(&registry, "big", "latest", &image).await;
    let proxy = SlowProxy::start(registry.addr(), 512 * 1024);
    let reference = format!("{}/big:latest", proxy.addr());
    let mut daemon = Daemon::start("");

    let mut client = daemon.image_client().await;
    let pulling = {
        let reference = reference.clone();
        tokio::spawn(async move { pull(&mut client, &reference, None).await })
    };
    // Well into the ~5 MiB of blobs, far from the end.
    proxy
        .wait_for_bytes(1536 * 1024, Duration::from_secs(120))
        .await;
    daemon.kill9();
    let interrupted = pulling.await.unwrap();
    assert!(
        interrupted.is_err(),
        "the pull cannot finish after kill -9: {interrupted:?}"
    );

    daemon.restart();
    let mut client = daemon.image_client().await;
    // The store is consistent: the image is absent, or present and complete.
    let images = list(&mut client, None).await;
    assert!(
        images.is_empty() || (images.len() == 1 && images[0].id == image.id()),
        "after restart: {images:?}"
    );
    if !images.is_empty() {
        for c in image.chain_id_hexes() {
            assert!(
                daemon.layers_dir().join(c).is_dir(),
                "listed image has all layers"
            );
        }
    }

    proxy.set_rate(0);
    assert_eq!(pull_ok(&mut client, &reference).await, image.id());
    let img = status_ok(&mut client, &reference).await;
    assert_eq!(img.id, image.id());
    let random = daemon
        .layers_dir()
        .join(&image.chain_id_hexes()[1])
        .join("random.bin");
    assert_eq!(
        std::fs::read(&random).expect("random.bin unpacked"),
        random_bytes(42, 4 * 1024 * 1024),
        "the re-pulled layer is complete"
    );
    let mut want = image.chain_id_hexes();
    want.sort();
    assert_eq!(
        daemon.layer_dirs(),
        want,
        "no half-unpacked layer dirs left"
    );
    let leftovers = temp_leftovers(daemon.state_dir());
    assert!(
        leftovers.is_empty(),
        "temp files left after restart and pull: {leftovers:?}"
    );
}
