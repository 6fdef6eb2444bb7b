//! CRI ImageService through the real daemon, happy paths: pulls of every
//! reference form, compression and manifest format, platform choice,
//! ListImages, ImageStatus, RemoveImage, ImageFsInfo and layer unpacking
//! (whiteouts checked through a real overlay mount). Failure paths are in
//! `image_pull_errors.rs`. Each test owns its registry and daemon.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use common::cri::*;
use common::*;

/// A registry with `image` pushed as `<repo>:<tag>` and a fresh daemon.
async fn setup(repo: &str, tag: &str, image: &Image) -> (Registry, Daemon, Pushed, ImageClient) {
    let registry = Registry::start();
    let pushed = push(&registry, repo, tag, image).await;
    let daemon = Daemon::start("");
    let client = daemon.image_client().await;
    (registry, daemon, pushed, client)
}

/// The layer dirs of `image`, bottom first.
fn layer_paths(daemon: &Daemon, image: &Image) -> Vec<PathBuf> {
    image
        .chain_id_hexes()
        .iter()
        .map(|c| daemon.layers_dir().join(c))
        .collect()
}

fn assert_layers_unpacked(daemon: &Daemon, image: &Image) {
    for (i, dir) in layer_paths(daemon, image).iter().enumerate() {
        assert!(
            dir.is_dir(),
            "layer {i} of the image should be unpacked at {} (<state_dir>/layers/<chain id hex>); have {:?}",
            dir.display(),
            daemon.layer_dirs()
        );
    }
}

fn assert_busybox_layer(dir: &std::path::Path) {
    let host = std::fs::read("/bin/busybox").expect("host busybox");
    let unpacked = dir.join("bin/busybox");
    assert_eq!(
        std::fs::read(&unpacked).unwrap_or_else(|e| panic!("{}: {e}", unpacked.display())),
        host,
        "bin/busybox content"
    );
    let meta = std::fs::metadata(&unpacked).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o755,
        "bin/busybox mode"
    );
    assert_eq!(
        meta.mtime(),
        common::layer::MTIME as i64,
        "bin/busybox mtime"
    );
    assert_eq!(
        std::fs::read_link(dir.join("bin/sh")).unwrap().to_str(),
        Some("busybox")
    );
    let tmp = std::fs::metadata(dir.join("tmp")).unwrap();
    assert_eq!(
        tmp.permissions().mode() & 0o7777,
        0o1777,
        "tmp keeps its sticky bit"
    );
    let home = std::fs::metadata(dir.join("home/app")).unwrap();
    assert_eq!((home.uid(), home.gid()), (1002, 1002), "home/app owner");
    assert!(
        std::fs::read_to_string(dir.join("etc/passwd"))
            .unwrap()
            .contains("www-data:x:33:33")
    );
}

/// Pulls `<repo>:latest` and checks the response, ListImages and the layers.
async fn pull_and_check(repo: &str, image: Image) -> (Registry, Daemon, ImageClient) {
    let (registry, daemon, pushed, mut client) = setup(repo, "latest", &image).await;
    let image_ref = pull_ok(&mut client, &pushed.reference).await;
    assert_eq!(image_ref, image.id(), "image_ref is sha256:<config digest>");
    let images = list(&mut client, None).await;
    assert_eq!(images.len(), 1, "{images:?}");
    let listed = &images[0];
    assert_eq!(listed.id, image.id());
    assert_eq!(listed.repo_tags, vec![pushed.reference.clone()]);
    let digest_ref = registry.digest_reference(repo, &image.manifest_digest);
    assert_eq!(listed.repo_digests, vec![digest_ref]);
    assert!(listed.size > 0, "size of {repo}");
    assert!(!listed.pinned);
    assert_layers_unpacked(&daemon, &image);
    (registry, daemon, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_gzip_oci_busybox() {
    let image = busybox_image();
    let (_r, daemon, _c) = pull_and_check("busybox", image.clone()).await;
    assert_busybox_layer(&layer_paths(&daemon, &image)[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_docker_schema2() {
    let image = busybox_docker_image();
    let (_r, daemon, _c) = pull_and_check("busybox-docker", image.clone()).await;
    assert_busybox_layer(&layer_paths(&daemon, &image)[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_zstd_layers() {
    let image = zstd_image();
    let (_r, daemon, _c) = pull_and_check("zstd", image.clone()).await;
    let layers = layer_paths(&daemon, &image);
    assert_busybox_layer(&layers[0]);
    assert_eq!(
        std::fs::read_to_string(layers[1].join("zstd")).unwrap(),
        "zstd\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_uncompressed_layers() {
    let image = uncompressed_image();
    let (_r, daemon, _c) = pull_and_check("uncompressed", image.clone()).await;
    let layers = layer_paths(&daemon, &image);
    assert_busybox_layer(&layers[0]);
    assert_eq!(
        std::fs::read_to_string(layers[1].join("plain")).unwrap(),
        "plain\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_five_layers() {
    let image = fivelayer_image();
    let (_r, daemon, _c) = pull_and_check("fivelayer", image.clone()).await;
    let layers = layer_paths(&daemon, &image);
    assert_eq!(layers.len(), 5);
    for (i, dir) in layers.iter().enumerate().skip(1) {
        let content = std::fs::read_to_string(dir.join(format!("layer-{i}"))).unwrap();
        assert_eq!(content, format!("layer {i}\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulled_images_survive_restart_and_kill9() {
    let image = busybox_image();
    let (_registry, mut daemon, pushed, mut client) = setup("busybox", "latest", &image).await;
    pull_ok(&mut client, &pushed.reference).await;
    daemon.restart();
    let mut client = daemon.image_client().await;
    assert_eq!(
        status_ok(&mut client, &pushed.reference).await.id,
        image.id()
    );
    daemon.kill9();
    daemon.launch();
    let mut client = daemon.image_client().await;
    let images = list(&mut client, None).await;
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0].repo_tags, vec![pushed.reference.clone()]);
    assert_layers_unpacked(&daemon, &image);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_by_digest_and_by_tag_at_digest() {
    let image = busybox_image();
    let (registry, _daemon, _pushed, mut client) = setup("busybox", "latest", &image).await;
    let by_digest = registry.digest_reference("busybox", &image.manifest_digest);
    assert_eq!(pull_ok(&mut client, &by_digest).await, image.id());
    let img = status_ok(&mut client, &by_digest).await;
    assert_eq!(img.id, image.id());
    assert!(img.repo_digests.contains(&by_digest), "{img:?}");

    // name:tag@digest: the digest decides what is pulled.
    let tag_at_digest = format!(
        "{}/busybox:latest@{}",
        registry.addr(),
        image.manifest_digest
    );
    assert_eq!(pull_ok(&mut client, &tag_at_digest).await, image.id());
    assert_eq!(list(&mut client, None).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_normalises_missing_tag_to_latest() {
    let image = busybox_image();
    let (registry, _daemon, pushed, mut client) = setup("library/busybox", "latest", &image).await;
    let short = format!("{}/library/busybox", registry.addr());
    assert_eq!(pull_ok(&mut client, &short).await, image.id());
    let img = status_ok(&mut client, &short).await;
    assert_eq!(
        img.repo_tags,
        vec![pushed.reference.clone()],
        "normalised tag"
    );
    // Pulling again is a no-op that answers the same id.
    assert_eq!(pull_ok(&mut client, &pushed.reference).await, image.id());
    assert_eq!(list(&mut client, None).await.len(), 1);
}

async fn check_index(format: Format) {
    let registry = Registry::start();
    let index = multiplatform_index(format);
    let pushed = push_index(&registry, "multi", "latest", &index).await;
    let daemon = Daemon::start("");
    let mut client = daemon.image_client().await;
    let host = index.host_image();
    assert_eq!(
        pull_ok(&mut client, &pushed.reference).await,
        host.id(),
        "the {:?} entry for this host's platform",
        host.platform
    );
    let img = status_ok(&mut client, &pushed.reference).await;
    let index_ref = registry.digest_reference("multi", &index.digest);
    assert!(
        img.repo_digests.contains(&index_ref),
        "repo_digests {:?} should name the index digest {index_ref}",
        img.repo_digests
    );
    assert_layers_unpacked(&daemon, host);
    let others: Vec<&Image> = index
        .images
        .iter()
        .filter(|i| i.id() != host.id())
        .collect();
    for other in others {
        let (found, _) = status(&mut client, &other.id(), false).await;
        assert!(found.is_none(), "{:?} must not be pulled", other.platform);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_oci_index_picks_host_platform() {
    check_index(Format::Oci).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_docker_manifest_list_picks_host_platform() {
    check_index(Format::Docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_status_finds_by_id_prefix_tag_and_digest() {
    let image = configured_image();
    let (registry, _daemon, pushed, mut client) = setup("configured", "v1", &image).await;
    pull_ok(&mut client, &pushed.reference).await;
    let hex = image.id_hex().to_owned();
    let digest_ref = registry.digest_reference("configured", &image.manifest_digest);
    for query in [
        image.id(),
        hex.clone(),
        hex[..12].to_owned(),
        pushed.reference.clone(),
        digest_ref.clone(),
    ] {
        let img = status_ok(&mut client, &query).await;
        assert_eq!(img.id, image.id(), "ImageStatus {query}");
        assert_eq!(
            img.repo_tags,
            vec![pushed.reference.clone()],
            "ImageStatus {query}"
        );
        assert_eq!(
            img.repo_digests,
            vec![digest_ref.clone()],
            "ImageStatus {query}"
        );
        assert!(img.size > 0);
        assert_eq!(img.uid, None, "no User in config");
        assert_eq!(img.username, "");
    }

    let (img, info) = status(&mut client, &pushed.reference, true).await;
    assert!(img.is_some());
    let config = info.values().find_map(|v| {
        let json: serde_json::Value = serde_json::from_str(v).ok()?;
        let text = json.to_string();
        (text.contains("GREETING=hello") && text.contains("SIGQUIT")).then_some(json)
    });
    assert!(
        config.is_some(),
        "verbose ImageStatus info should hold the image config as JSON: {info:?}"
    );

    let (img, info) = status(&mut client, &pushed.reference, false).await;
    assert!(img.is_some());
    assert!(info.is_empty(), "info only when verbose: {info:?}");

    for unknown in [
        registry.reference("configured", "nope"),
        registry.reference("nothere", "latest"),
        format!("sha256:{}", "0".repeat(64)),
        "ffffffffffff".to_owned(),
    ] {
        let (img, _) = status(&mut client, &unknown, false).await;
        assert!(
            img.is_none(),
            "ImageStatus {unknown} should find nothing: {img:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_status_reports_user_as_uid_or_username() {
    let registry = Registry::start();
    let cases = [
        ("1002", "1002", Some(1002), ""),
        ("www-data", "www-data", None, "www-data"),
        ("1003:1003", "1003-1003", Some(1003), ""),
    ];
    let mut refs = Vec::new();
    for (user, tag, _, _) in &cases {
        refs.push(
            push(&registry, "users", tag, &user_image(user))
                .await
                .reference,
        );
    }
    let daemon = Daemon::start("");
    let mut client = daemon.image_client().await;
    for ((user, _, uid, username), reference) in cases.iter().zip(&refs) {
        pull_ok(&mut client, reference).await;
        let img = status_ok(&mut client, reference).await;
        assert_eq!(img.uid.map(|u| u.value), *uid, "User {user:?}: uid");
        assert_eq!(img.username, *username, "User {user:?}: username");
    }
    assert_eq!(list(&mut client, None).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_images_with_filter() {
    let registry = Registry::start();
    let busybox = push(&registry, "busybox", "latest", &busybox_image()).await;
    let five = push(&registry, "fivelayer", "latest", &fivelayer_image()).await;
    let daemon = Daemon::start("");
    let mut client = daemon.image_client().await;
    assert!(list(&mut client, None).await.is_empty());
    pull_ok(&mut client, &busybox.reference).await;
    pull_ok(&mut client, &five.reference).await;

    let mut ids: Vec<String> = list(&mut client, None)
        .await
        .into_iter()
        .map(|i| i.id)
        .collect();
    ids.sort();
    let mut want = vec![busybox.image_id.clone(), five.image_id.clone()];
    want.sort();
    assert_eq!(ids, want);

    let filtered = list(&mut client, Some(&busybox.reference)).await;
    assert_eq!(filtered.len(), 1, "{filtered:?}");
    assert_eq!(filtered[0].id, busybox.image_id);
    let by_id = list(&mut client, Some(&five.image_id)).await;
    assert_eq!(by_id.len(), 1, "{by_id:?}");
    assert_eq!(by_id[0].id, five.image_id);
    let none = list(&mut client, Some(&registry.reference("nothere", "latest"))).await;
    assert!(none.is_empty(), "{none:?}");
}

/// Pushes busybox under three names, pulls all three, removes by `how`.
async fn remove_with(how: &str) {
    let image = busybox_image();
    let registry = Registry::start();
    let latest = push(&registry, "busybox", "latest", &image).await;
    let v2 = push(&registry, "busybox", "v2", &image).await;
    let alias = push(&registry, "alias", "1", &image).await;
    let daemon = Daemon::start("");
    let mut client = daemon.image_client().await;
    for p in [&latest, &v2, &alias] {
        assert_eq!(pull_ok(&mut client, &p.reference).await, image.id());
    }
    let img = status_ok(&mut client, &image.id()).await;
    let mut tags = img.repo_tags.clone();
    tags.sort();
    let mut want = vec![
        latest.reference.clone(),
        v2.reference.clone(),
        alias.reference.clone(),
    ];
    want.sort();
    assert_eq!(tags, want, "one image, three tags");
    assert_eq!(list(&mut client, None).await.len(), 1);

    let target = match how {
        "tag" => v2.reference.clone(),
        "id" => image.id(),
        "digest" => registry.digest_reference("busybox", &image.manifest_digest),
        _ => unreachable!(),
    };
    remove(&mut client, &target)
        .await
        .unwrap_or_else(|e| panic!("RemoveImage by {how} {target}: {e:?}"));
    for q in [
        &latest.reference,
        &v2.reference,
        &alias.reference,
        &image.id(),
    ] {
        let (found, _) = status(&mut client, q, false).await;
        assert!(
            found.is_none(),
            "after RemoveImage by {how}, {q} still resolves: {found:?}"
        );
    }
    assert!(list(&mut client, None).await.is_empty());
    wait_for("unreferenced layer dirs to be deleted", || {
        daemon.layer_dirs().is_empty()
    })
    .await;
    // Idempotent: removing again, by any name, succeeds.
    remove(&mut client, &target)
        .await
        .expect("second RemoveImage");
    remove(&mut client, &latest.reference)
        .await
        .expect("RemoveImage of a removed tag");
    remove(&mut client, &registry.reference("never", "pulled"))
        .await
        .expect("RemoveImage of an unknown image");

    // And it can be pulled again.
    assert_eq!(pull_ok(&mut client, &alias.reference).await, image.id());
    assert_layers_unpacked(&daemon, &image);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_by_tag_removes_every_tag_of_the_image() {
    remove_with("tag").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_by_id() {
    remove_with("id").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_by_digest_reference() {
    remove_with("digest").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_keeps_layers_shared_with_another_image() {
    let registry = Registry::start();
    let busybox = busybox_image();
    let five = fivelayer_image();
    assert_eq!(
        busybox.chain_ids()[0],
        five.chain_ids()[0],
        "fixtures share the busybox layer"
    );
    let b = push(&registry, "busybox", "latest", &busybox).await;
    let f = push(&registry, "fivelayer", "latest", &five).await;
    let daemon = Daemon::start("");
    let mut client = daemon.image_client().await;
    pull_ok(&mut client, &b.reference).await;
    pull_ok(&mut client, &f.reference).await;

    remove(&mut client, &f.reference)
        .await
        .expect("RemoveImage fivelayer");
    assert_eq!(
        daemon.layer_dirs(),
        busybox.chain_id_hexes(),
        "only busybox's layer is left"
    );
    assert_busybox_layer(&layer_paths(&daemon, &busybox)[0]);
    let left = list(&mut client, None).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, busybox.id());

    remove(&mut client, &b.reference)
        .await
        .expect("RemoveImage busybox");
    assert!(daemon.layer_dirs().is_empty(), "{:?}", daemon.layer_dirs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_fs_info_counts_pulled_layers() {
    let image = fivelayer_image();
    let (_registry, daemon, pushed, mut client) = setup("fivelayer", "latest", &image).await;
    pull_ok(&mut client, &pushed.reference).await;
    let info = fs_info(&mut client).await;
    let fs = info
        .image_filesystems
        .first()
        .unwrap_or_else(|| panic!("no image_filesystems: {info:?}"));
    assert!(fs.timestamp > 0, "timestamp set: {fs:?}");
    let mountpoint = &fs.fs_id.as_ref().expect("fs_id").mountpoint;
    assert!(!mountpoint.is_empty(), "mountpoint set: {fs:?}");
    let used = fs.used_bytes.as_ref().expect("used_bytes").value;
    let busybox_size = std::fs::metadata("/bin/busybox").unwrap().len();
    assert!(
        used >= busybox_size,
        "used_bytes {used} covers the unpacked busybox ({busybox_size})"
    );
    let inodes = fs.inodes_used.as_ref().expect("inodes_used").value;
    assert!(inodes >= APPLETS.len() as u64, "inodes_used {inodes}");
    let container = info
        .container_filesystems
        .first()
        .unwrap_or_else(|| panic!("no container_filesystems: {info:?}"));
    assert!(container.timestamp > 0, "{container:?}");
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whiteouts_and_opaque_dirs_become_overlay_whiteouts() {
    let image = whiteouts_image();
    let (_registry, daemon, pushed, mut client) = setup("whiteouts", "latest", &image).await;
    pull_ok(&mut client, &pushed.reference).await;
    let layers = layer_paths(&daemon, &image);
    assert_eq!(layers.len(), 4);

    // On disk: overlayfs encoding in the deleting layer (index 2).
    let deletes = &layers[2];
    for gone in ["data/tmp1", "data/tmp2", "gone-dir", "etc/motd"] {
        let meta = std::fs::symlink_metadata(deletes.join(gone))
            .unwrap_or_else(|e| panic!("whiteout for {gone} missing in layer 2: {e}"));
        use std::os::unix::fs::FileTypeExt;
        assert!(meta.file_type().is_char_device(), "{gone} is a char device");
        assert_eq!(meta.rdev(), 0, "{gone} is device 0:0");
    }
    let opaque = xattr::get(deletes.join("olddir"), "trusted.overlay.opaque")
        .expect("reading trusted.overlay.opaque");
    assert_eq!(opaque.as_deref(), Some(&b"y"[..]), "olddir is opaque");
    let mut stray = Vec::new();
    for dir in &layers {
        find_wh_files(dir, &mut stray);
    }
    assert!(
        stray.is_empty(),
        ".wh. entries must not be unpacked as files: {stray:?}"
    );

    // In effect: the merged view a container would get.
    let merged = OverlayMount::new(&layers);
    let root = merged.path();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).ok();
    assert_eq!(read("data/keep").as_deref(), Some("keep\n"));
    assert_eq!(read("data/added").as_deref(), Some("added\n"));
    assert_eq!(
        read("data/tmp2").as_deref(),
        Some("again\n"),
        "re-added after whiteout"
    );
    assert!(!root.join("data/tmp1").exists(), "data/tmp1 deleted");
    assert!(!root.join("gone-dir").exists(), "gone-dir deleted");
    assert!(!root.join("etc/motd").exists(), "etc/motd deleted");
    assert!(
        root.join("etc/passwd").exists(),
        "etc/passwd from busybox survives"
    );
    let mut olddir: Vec<String> = std::fs::read_dir(root.join("olddir"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    olddir.sort();
    assert_eq!(olddir, ["new"], "opaque olddir hides a, b and sub");
    assert!(root.join("bin/busybox").is_file());
}

fn find_wh_files(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with(".wh.") {
            out.push(e.path());
        }
        if e.file_type().unwrap().is_dir() {
            find_wh_files(&e.path(), out);
        }
    }
}
