//! Registries behind TLS with a CA the test makes: a certificate the node
//! does not trust is refused with an error naming the registry and the
//! problem; configuring the CA (config or hosts.toml) makes the pull work;
//! a registry that requires a client certificate gets one.
//!
//! The TLS registries listen on 127.0.0.2, which (unlike 127.0.0.1) crius
//! does not treat as plain HTTP, and serve the storage of a plain registry
//! on 127.0.0.1 that the test pushes to.

mod common;

use common::cri::*;
use common::tls::Pki;
use common::*;
use tonic::Code;

fn registry_toml(addr: &str, body: &str) -> String {
    format!("[image.registries.{addr:?}]\n{body}\n")
}

#[tokio::test]
async fn unknown_ca_is_refused_and_a_configured_ca_works() {
    let pki = Pki::new("reg");
    let server = pki.server("server", "IP:127.0.0.2");
    let plain = Registry::start();
    let pushed = push(&plain, "team/app", "v1", &busybox_image()).await;
    let tls = Registry::start_tls_over(&plain, "127.0.0.2", &server, None);
    let image = tls.reference("team/app", "v1");

    // No configuration: the system roots do not know the test CA.
    let daemon = Daemon::start("");
    let mut client = daemon.image_client().await;
    let e = pull_err(&mut client, &image, None).await;
    let msg = e.message();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(
        msg.contains(tls.addr()) && msg.contains("unknown certificate authority"),
        "the error names the registry and the certificate problem: {msg}"
    );
    assert!(
        msg.contains("ca_files"),
        "the error says what to configure: {msg}"
    );
    drop(daemon);

    // The CA in the registry's config entry.
    let ca = pki.ca();
    let daemon = Daemon::start(&registry_toml(
        tls.addr(),
        &format!("ca_files = [{:?}]", ca.display().to_string()),
    ));
    let mut client = daemon.image_client().await;
    assert_eq!(pull_ok(&mut client, &image).await, pushed.image_id);
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused_by_name() {
    let pki = Pki::new("reg");
    let server = pki.server("server", "DNS:registry.other.example");
    let plain = Registry::start();
    push(&plain, "team/app", "v1", &busybox_image()).await;
    let tls = Registry::start_tls_over(&plain, "127.0.0.2", &server, None);
    let daemon = Daemon::start(&registry_toml(
        tls.addr(),
        &format!("ca_files = [{:?}]", pki.ca().display().to_string()),
    ));
    let mut client = daemon.image_client().await;
    let e = pull_err(&mut client, &tls.reference("team/app", "v1"), None).await;
    assert!(
        e.message().contains(tls.addr()) && e.message().contains("not valid for host name"),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_registry_requiring_a_client_certificate_gets_it_from_hosts_toml() {
    let pki = Pki::new("reg");
    let server = pki.server("server", "IP:127.0.0.2");
    let clients = Pki::new("clients");
    let node = clients.client("node");
    let plain = Registry::start();
    let pushed = push(&plain, "team/app", "v1", &busybox_image()).await;
    let tls = Registry::start_tls_over(&plain, "127.0.0.2", &server, Some(&clients.ca()));
    let image = tls.reference("team/app", "v1");

    let hosts = tempfile::tempdir().unwrap();
    let host_dir = hosts.path().join(tls.addr());
    std::fs::create_dir(&host_dir).unwrap();
    // containerd's format; the CA by a path relative to the hosts.toml.
    std::fs::copy(pki.ca(), host_dir.join("ca.pem")).unwrap();
    let hosts_toml = host_dir.join("hosts.toml");
    std::fs::write(&hosts_toml, "ca = \"ca.pem\"\n").unwrap();
    let daemon = Daemon::start(&format!(
        "[image]\nhosts_dir = {:?}\n",
        hosts.path().display().to_string()
    ));
    let mut client = daemon.image_client().await;
    let e = pull_err(&mut client, &image, None).await;
    assert!(
        e.message().contains(tls.addr()) && e.message().contains("client certificate"),
        "{e:?}"
    );

    // The hosts dir is re-read: the next pull presents the certificate.
    std::fs::write(
        &hosts_toml,
        format!(
            "ca = \"ca.pem\"\nclient = [[{:?}, {:?}]]\n",
            node.cert.display().to_string(),
            node.key.display().to_string()
        ),
    )
    .unwrap();
    assert_eq!(pull_ok(&mut client, &image).await, pushed.image_id);
}
