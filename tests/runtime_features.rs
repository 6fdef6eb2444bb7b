//! What `Status` tells kubelet about each runtime handler and the runtime
//! itself, through the real daemon: every configured handler listed once
//! ("" and "crius" built in, runc, a runtime whose `features` fails),
//! `recursive_read_only_mounts` true where the kernel has mount_setattr
//! (5.12+) and the runtime lists `rro`, and `supplemental_groups_policy`
//! true (Strict is honoured: tests/containers.rs checks it inside a
//! container). `user_namespaces` is the user-namespace tests' business.

mod common;

use std::path::Path;

use common::Daemon;
use common::containers::RUNC;
use k8s_cri::v1::*;

/// Whether this kernel is at least 5.12 (mount_setattr), from uname.
fn kernel_has_mount_setattr() -> bool {
    let release = nix::sys::utsname::uname()
        .expect("uname")
        .release()
        .to_string_lossy()
        .into_owned();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (5, 12)
}

#[tokio::test]
async fn status_lists_every_handler_with_its_features() {
    assert!(
        Path::new(RUNC).exists(),
        "{RUNC} missing: install Debian's runc package (hack/install-deps.sh)"
    );
    let daemon = Daemon::start(&format!(
        "[runtime.handlers.runc]\nruntime_path = {RUNC:?}\n\
         [runtime.handlers.broken]\nruntime_path = \"/bin/false\"\n"
    ));
    let mut rt = daemon.runtime_client().await;
    let resp = rt
        .status(StatusRequest { verbose: false })
        .await
        .expect("Status")
        .into_inner();
    let names: Vec<&str> = resp
        .runtime_handlers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(names, vec!["", "crius", "broken", "runc"]);
    let rro = kernel_has_mount_setattr();
    assert!(
        rro,
        "this kernel has no mount_setattr (needs Linux 5.12+); recursive read-only mounts cannot work"
    );
    for h in &resp.runtime_handlers {
        let f = h.features.as_ref().expect("features");
        let expected = h.name != "broken";
        assert_eq!(f.recursive_read_only_mounts, expected, "{h:?}");
    }
    assert!(
        resp.features
            .as_ref()
            .is_some_and(|f| f.supplemental_groups_policy),
        "{:?}",
        resp.features
    );
}
