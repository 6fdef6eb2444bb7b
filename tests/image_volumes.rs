//! Image volumes (CRI `Mount.image`) through the real daemon: a pulled
//! image's merged layers (whiteouts applied) visible read-only at the
//! container path; RemoveImage while a container uses it drops the image
//! but keeps the layers, across a daemon restart, until the container is
//! removed; an image that is not present is refused naming the mount and
//! the image; the same volume under runc.

mod common;

use std::path::Path;

use common::containers::*;
use common::cri::{list, pull_ok, remove, wait_for};
use common::*;
use k8s_cri::v1::*;
use tonic::Code;

fn image_mount(container_path: &str, image: &str) -> Mount {
    Mount {
        container_path: container_path.into(),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn exec(env: &mut Env, id: &str, script: &str) -> (i32, String) {
    let r = env.exec_sh(id, script).await;
    let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
    out.push_str(&String::from_utf8_lossy(&r.stderr));
    (r.exit_code, out)
}

/// Mount points in the host's namespace under `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let d = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&d))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn image_volume_is_read_only_and_outlives_remove_image_until_the_container_goes() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let vol_image = whiteouts_image();
    let name = env.add_image("whiteouts", &vol_image).await;
    // kubelet passes PullImage's image_ref.
    let image_ref = pull_ok(&mut env.img, &name).await;
    // The layers only this image has (busybox's is shared).
    let own_layers: Vec<String> = vol_image.chain_id_hexes()[1..].to_vec();
    let (pod, pcfg) = env.pod("ivol").await;
    let mut c = sh(
        "ivol",
        &bb,
        "cat /vol/data/keep /vol/data/tmp2 /vol/data/added; \
         ls /vol/data/tmp1 2>&1; touch /vol/data/new 2>&1; \
         echo ready; exec sleep 3600",
    );
    c.mounts = vec![image_mount("/vol", &image_ref)];
    let id = env.create_ok(&pod, &pcfg, c).await;
    env.start_ok(&id).await;
    let s = env.status(&id).await;
    let log = Path::new(&s.log_path).to_owned();
    wait_for("the container to report", || {
        log_text(&log).contains("ready")
    })
    .await;
    let out = log_text(&log);
    assert!(out.starts_with("keep\nagain\nadded\n"), "{out}");
    assert!(
        out.contains("/vol/data/tmp1: No such file or directory"),
        "whiteouts not applied: {out}"
    );
    assert!(
        out.contains("/vol/data/new: Read-only file system"),
        "the image volume is writable: {out}"
    );
    // ContainerStatus reports the mount as an image mount.
    let m = s
        .mounts
        .iter()
        .find(|m| m.container_path == "/vol")
        .expect("/vol in ContainerStatus.mounts");
    assert_eq!(
        m.image.as_ref().map(|i| i.image.as_str()),
        Some(image_ref.as_str())
    );
    assert!(m.host_path.is_empty() && m.readonly, "{m:?}");

    // RemoveImage while mounted: the image goes, its layers stay.
    remove(&mut env.img, &image_ref).await.expect("RemoveImage");
    assert!(
        list(&mut env.img, None)
            .await
            .iter()
            .all(|i| !i.repo_tags.contains(&name)),
        "the image is still listed"
    );
    let layers = env.daemon.layer_dirs();
    for l in &own_layers {
        assert!(layers.contains(l), "layer {l} removed while in use");
    }
    let (code, out) = exec(&mut env, &id, "cat /vol/data/keep").await;
    assert_eq!((code, out.as_str()), (0, "keep\n"));

    // A restart keeps them too (start-up GC reads the container records).
    env.daemon.restart();
    env.rt = env.daemon.runtime_client().await;
    env.img = env.daemon.image_client().await;
    let layers = env.daemon.layer_dirs();
    for l in &own_layers {
        assert!(layers.contains(l), "layer {l} removed by start-up GC");
    }
    let (code, out) = exec(&mut env, &id, "cat /vol/data/added").await;
    assert_eq!((code, out.as_str()), (0, "added\n"));

    // Removing the container releases them.
    env.stop(&id, 0).await.expect("StopContainer");
    env.remove(&id).await.expect("RemoveContainer");
    let layers = env.daemon.layer_dirs();
    for l in &own_layers {
        assert!(
            !layers.contains(l),
            "layer {l} kept after its last user went"
        );
    }
    assert!(
        mounts_under(env.daemon.run_dir())
            .iter()
            .all(|m| !m.contains(&id)),
        "mounts of the removed container are left: {:?}",
        mounts_under(env.daemon.run_dir())
    );
    // busybox's layer is busybox's: still there.
    assert!(
        env.daemon
            .layer_dirs()
            .contains(&busybox_image().chain_id_hexes()[0])
    );
}

#[tokio::test]
async fn missing_image_volume_is_refused_naming_mount_and_image() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("ivol-missing").await;
    let missing = format!("{}/not-pulled:latest", env.registry.addr());
    let mut c = sh("missing", &bb, "true");
    c.mounts = vec![image_mount("/vol", &missing)];
    let err = env.create(&pod, &pcfg, c).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("/vol") && err.message().contains(&missing),
        "{}",
        err.message()
    );
    // host_path and image together are refused.
    let mut c = sh("both", &bb, "true");
    let mut m = image_mount("/vol", &bb);
    m.host_path = "/tmp".into();
    c.mounts = vec![m];
    let err = env.create(&pod, &pcfg, c).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("host_path"), "{err:?}");
    // The name is free again and the same image can be both rootfs and
    // volume.
    let mut c = sh("missing", &bb, "ls /vol/bin/busybox");
    c.mounts = vec![image_mount("/vol", &bb)];
    let (s, out) = env.run_to_exit(&pod, &pcfg, c).await;
    assert_eq!(s.exit_code, 0, "{out}");
    assert!(out.contains("/vol/bin/busybox"), "{out}");
}

#[tokio::test]
async fn image_volume_with_runc() {
    let mut env = Env::for_handler("runc").await;
    let bb = env.busybox.clone();
    let name = env.add_image("whiteouts", &whiteouts_image()).await;
    let image_ref = pull_ok(&mut env.img, &name).await;
    let (pod, pcfg) = env.pod_on("ivol-runc", "runc").await;
    let mut c = sh(
        "ivol",
        &bb,
        "cat /vol/data/keep; ls /vol/data/tmp1 2>&1; touch /vol/data/new 2>&1; true",
    );
    c.mounts = vec![image_mount("/vol", &image_ref)];
    let (_, out) = env.run_to_exit(&pod, &pcfg, c).await;
    assert!(out.starts_with("keep\n"), "{out}");
    assert!(
        out.contains("/vol/data/tmp1: No such file or directory"),
        "{out}"
    );
    assert!(
        out.contains("/vol/data/new: Read-only file system"),
        "{out}"
    );
}
