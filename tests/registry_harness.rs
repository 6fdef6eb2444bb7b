//! Checks the test harness itself against a real docker-registry: every
//! standard image pushes, and what the registry serves back is what was built.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

async fn check_image(registry: &Registry, repo: &str, pushed: &Pushed, image: &Image) {
    assert_eq!(pushed.manifest_digest, image.manifest_digest);
    assert_eq!(pushed.image_id, image.config_digest);
    let tag = pushed.reference.rsplit(':').next().unwrap();
    let (ctype, digest, body) = get_manifest(registry, repo, tag).await;
    assert_eq!(ctype, image.manifest_media_type, "{repo}:{tag}");
    assert_eq!(digest, image.manifest_digest, "{repo}:{tag}");
    assert_eq!(body, image.manifest, "{repo}:{tag}");
    let manifest = json(&body);
    assert_eq!(manifest["config"]["digest"], image.config_digest.as_str());
    let config = get_blob(registry, repo, &image.config_digest).await;
    assert_eq!(sha256_digest(&config), image.config_digest);
    let config = json(&config);
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(diff_ids, image.diff_ids());
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), image.layers.len());
    for (entry, layer) in layers.iter().zip(&image.layers) {
        assert_eq!(entry["digest"], layer.digest.as_str());
        assert_eq!(entry["size"], layer.data.len());
        let blob = get_blob(registry, repo, &layer.digest).await;
        assert_eq!(sha256_digest(&blob), layer.digest);
        let tar = match layer.compression {
            Compression::None => blob,
            Compression::Gzip => {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&blob[..]), &mut out)
                    .unwrap();
                out
            }
            Compression::Zstd => zstd::decode_all(&blob[..]).unwrap(),
        };
        assert_eq!(
            sha256_digest(&tar),
            layer.diff_id,
            "diff_id of a {repo} layer"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_and_serves_every_standard_image() {
    let registry = Registry::start();
    let pushed = push_standard_images(&registry).await;

    check_image(&registry, "busybox", &pushed.busybox, &busybox_image()).await;
    check_image(
        &registry,
        "busybox-docker",
        &pushed.busybox_docker,
        &busybox_docker_image(),
    )
    .await;
    check_image(
        &registry,
        "fivelayer",
        &pushed.fivelayer,
        &fivelayer_image(),
    )
    .await;
    check_image(&registry, "zstd", &pushed.zstd, &zstd_image()).await;
    check_image(
        &registry,
        "uncompressed",
        &pushed.uncompressed,
        &uncompressed_image(),
    )
    .await;
    check_image(
        &registry,
        "whiteouts",
        &pushed.whiteouts,
        &whiteouts_image(),
    )
    .await;
    check_image(&registry, "users", &pushed.user_1002, &user_image("1002")).await;
    check_image(
        &registry,
        "users",
        &pushed.user_www_data,
        &user_image("www-data"),
    )
    .await;
    check_image(
        &registry,
        "users",
        &pushed.user_1003,
        &user_image("1003:1003"),
    )
    .await;
    assert_eq!(
        user_image("www-data").config_value()["config"]["User"],
        "www-data"
    );
    assert_eq!(fivelayer_image().layers.len(), 5);

    for (tag, format, pushed_index) in [
        ("oci", Format::Oci, &pushed.multi_oci),
        ("docker", Format::Docker, &pushed.multi_docker),
    ] {
        let index = multiplatform_index(format);
        let (ctype, digest, body) = get_manifest(&registry, "multi", tag).await;
        assert_eq!(ctype, index.media_type);
        assert_eq!(digest, index.digest);
        assert_eq!(pushed_index.index_digest, index.digest);
        let entries = json(&body)["manifests"].as_array().unwrap().clone();
        assert_eq!(entries.len(), 4);
        assert_eq!(pushed_index.entries.len(), 4);
        let arches: Vec<&str> = entries
            .iter()
            .map(|e| e["platform"]["architecture"].as_str().unwrap())
            .collect();
        assert_eq!(arches, ["arm64", "arm", "amd64", "ppc64le"]);
        assert_eq!(entries[1]["platform"]["variant"], "v7");
        for (entry, image) in entries.iter().zip(&index.images) {
            let d = entry["digest"].as_str().unwrap();
            let (ctype, _, body) = get_manifest(&registry, "multi", d).await;
            assert_eq!(ctype, image.manifest_media_type);
            assert_eq!(body, image.manifest);
        }
        let host = index.host_image();
        assert_eq!(host.platform.architecture, Platform::host().architecture);
        assert_eq!(host.layers.len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_registry_requires_credentials() {
    let registry = Registry::start_with_htpasswd("alice", "s3cret");
    let anonymous = http_client()
        .get(format!("{}/v2/", registry.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let challenge = anonymous.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Basic"), "{challenge}");

    let image = busybox_image();
    let pushed = push(&registry, "private/busybox", "latest", &image).await;
    check_image(&registry, "private/busybox", &pushed, &image).await;

    let wrong = http_client()
        .get(format!(
            "{}/v2/private/busybox/manifests/latest",
            registry.url()
        ))
        .basic_auth("alice", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_counts_blob_downloads_and_corruption_keeps_size() {
    let registry = Registry::start();
    let image = single_plain_layer_image(7, 64 * 1024);
    push(&registry, "plain", "latest", &image).await;
    let layer = &image.layers[0];
    assert_eq!(
        registry.blob_gets(&layer.digest),
        0,
        "pushing downloads nothing"
    );

    let blob = get_blob(&registry, "plain", &layer.digest).await;
    assert_eq!(blob, layer.data);
    wait_until(|| registry.blob_gets(&layer.digest) >= 1).await;
    assert_eq!(
        registry.blob_gets(&layer.digest),
        1,
        "{}",
        registry.access_log()
    );

    registry.corrupt_blob(&layer.digest, 4096);
    let served = get_blob(&registry, "plain", &layer.digest).await;
    assert_eq!(served.len(), layer.data.len());
    assert_ne!(
        sha256_digest(&served),
        layer.digest,
        "corruption must change the digest"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_proxy_forwards_throttles_and_records_requests() {
    let registry = Registry::start();
    let image = big_image(3, 256 * 1024);
    push(&registry, "big", "latest", &image).await;
    let proxy = SlowProxy::start(registry.addr(), 128 * 1024);
    let through = format!("http://{}", proxy.addr());
    let layer = &image.layers[1];

    let fetch = tokio::spawn({
        let url = format!("{through}/v2/big/blobs/{}", layer.digest);
        async move {
            http_client()
                .get(url)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        }
    });
    proxy
        .wait_for_bytes(64 * 1024, Duration::from_secs(60))
        .await;
    assert!(
        !fetch.is_finished(),
        "a 256 KiB blob at 128 KiB/s is still in flight"
    );
    proxy.set_rate(0);
    let body = fetch.await.unwrap();
    assert_eq!(sha256_digest(&body), layer.digest);
    assert_eq!(proxy.blob_gets(&layer.digest), 1, "{:?}", proxy.requests());
    assert!(proxy.bytes_down() >= layer.data.len() as u64);
    assert_eq!(proxy.connections(), 1);
}

#[test]
fn layers_and_chain_ids_are_what_the_spec_says() {
    let d = vec!["sha256:aa".to_string(), "sha256:bb".to_string()];
    let c = chain_ids(&d);
    assert_eq!(c[0], "sha256:aa");
    assert_eq!(c[1], sha256_digest(b"sha256:aa sha256:bb"));

    // Raw names survive as written, including long ones (GNU long-name records).
    let long = format!("{}escape", "../".repeat(60));
    let tar = LayerBuilder::new()
        .raw_file(&long, "x")
        .raw_file("/abs", "y")
        .whiteout("a/b")
        .opaque("c")
        .raw_hardlink("h", "/etc/passwd")
        .tar();
    let mut archive = tar::Archive::new(&tar[..]);
    let names: Vec<(String, Option<String>)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().to_vec()).unwrap();
            let link = e
                .link_name_bytes()
                .map(|l| String::from_utf8(l.to_vec()).unwrap());
            (name, link)
        })
        .collect();
    assert_eq!(names[0].0, long);
    assert_eq!(names[1].0, "/abs");
    assert_eq!(names[2].0, "a/.wh.b");
    assert_eq!(names[3].0, "c/.wh..wh..opq");
    assert_eq!(names[4], ("h".into(), Some("/etc/passwd".into())));
}

async fn wait_until(mut cond: impl FnMut() -> bool) {
    for _ in 0..250 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
