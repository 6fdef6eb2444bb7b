//! Registry mirrors from config: tried in order before the registry itself,
//! falling back to the registry when a mirror lacks the image or is down.
//! Names stay those of the registry the user asked for.

mod common;

use common::cri::*;
use common::*;

fn mirrors_toml(upstream: &str, mirrors: &[String]) -> String {
    let list: Vec<String> = mirrors.iter().map(|m| format!("{m:?}")).collect();
    format!("[image.mirrors]\n{upstream:?} = [{}]\n", list.join(", "))
}

#[tokio::test]
async fn pull_is_served_by_the_first_working_mirror() {
    let upstream = Registry::start();
    let mirror = Registry::start();
    let image = busybox_image();
    // The image exists only on the mirror: a pull that works came from it.
    let on_mirror = push(&mirror, "team/app", "v1", &image).await;
    // A dead mirror first: order is kept and a dead endpoint is skipped.
    let daemon = Daemon::start(&mirrors_toml(
        upstream.addr(),
        &[
            "http://127.0.0.1:9".to_owned(),
            format!("http://{}", mirror.addr()),
        ],
    ));
    let mut client = daemon.image_client().await;
    let wanted = upstream.reference("team/app", "v1");
    let id = pull_ok(&mut client, &wanted).await;
    assert_eq!(id, on_mirror.image_id);
    let img = status_ok(&mut client, &wanted).await;
    assert_eq!(
        img.repo_tags,
        vec![wanted.clone()],
        "tags name the registry asked for, not the mirror"
    );
    for d in image.blob_digests() {
        assert_eq!(
            mirror.blob_gets(&d),
            1,
            "blob {d} fetched once from the mirror"
        );
        assert_eq!(
            upstream.blob_gets(&d),
            0,
            "blob {d} not fetched from upstream"
        );
    }
}

#[tokio::test]
async fn pull_falls_back_to_upstream_when_the_mirror_lacks_the_image() {
    let upstream = Registry::start();
    let mirror = Registry::start();
    let image = busybox_image();
    let pushed = push(&upstream, "team/app", "v2", &image).await;
    let daemon = Daemon::start(&mirrors_toml(
        upstream.addr(),
        &[format!("http://{}", mirror.addr())],
    ));
    let mut client = daemon.image_client().await;
    let id = pull_ok(&mut client, &pushed.reference).await;
    assert_eq!(id, pushed.image_id);
    assert!(
        mirror.access_log().contains("/v2/team/app/manifests/v2"),
        "the mirror was asked first; its log:\n{}",
        mirror.access_log()
    );
}

#[tokio::test]
async fn config_rejects_a_mirror_without_scheme() {
    let upstream = Registry::start();
    let mut daemon = Daemon::configure(&mirrors_toml(
        upstream.addr(),
        &["mirror.example".to_owned()],
    ));
    let status = daemon.launch_expecting_exit();
    assert!(!status.success(), "daemon must refuse the config");
    assert!(
        daemon.log().contains("image.mirrors"),
        "error names the key; log:\n{}",
        daemon.log()
    );
}
