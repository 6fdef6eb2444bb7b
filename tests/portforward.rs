//! PortForward over the streaming server with a SPDY/3.1 client: a
//! connection reaches a busybox httpd inside the pod's network namespace
//! (content checked), a refused port is reported on that request's error
//! stream while the session stays usable, and bad requests are refused.

mod common;

use common::containers::*;
use common::spdy;
use crius::streaming::spdy::HeaderBlock;
use k8s_cri::v1::*;
use tonic::Code;

const PF: &str = "portforward.k8s.io";

fn headers(kind: &str, port: u16, request: u32) -> HeaderBlock {
    HeaderBlock::new()
        .with("streamtype", kind)
        .with("port", port.to_string())
        .with("requestid", request.to_string())
}

#[tokio::test]
async fn port_forward_reaches_the_pod_and_reports_refusals() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("pf").await;
    let web = sh(
        "web",
        &bb,
        "mkdir -p /www && echo hello-from-the-pod > /www/index.html && exec httpd -f -p 8080 -h /www",
    );
    let _web = env.run(&pod, &pcfg, web).await;
    // The server listens only inside the pod's network namespace.
    let url = env
        .rt
        .port_forward(PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![8080],
        })
        .await
        .expect("PortForward")
        .into_inner()
        .url;
    assert!(url.contains("/portforward/"), "{url}");
    let mut s = spdy::connect(&url, &[PF])
        .await
        .unwrap_or_else(|r| panic!("upgrade refused: {} {}", r.status, r.body));
    assert_eq!(s.protocol, PF);

    let get = async |s: &mut spdy::Session, request: u32| {
        let err = s.open_with(headers("error", 8080, request)).await;
        let data = s.open_with(headers("data", 8080, request)).await;
        s.send_to(data, b"GET /index.html HTTP/1.0\r\n\r\n", true)
            .await;
        let got = s.collect(&[data, err], 20).await;
        (
            String::from_utf8_lossy(&got[&data]).into_owned(),
            String::from_utf8_lossy(&got[&err]).into_owned(),
        )
    };
    // httpd may still be starting: retry the first request a few times.
    let mut first = (String::new(), String::new());
    for attempt in 0..20 {
        first = get(&mut s, attempt).await;
        if first.0.contains("hello-from-the-pod") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(first.0.contains("200 OK"), "{first:?}");
    assert!(first.0.contains("hello-from-the-pod"), "{first:?}");
    assert!(first.1.is_empty(), "{first:?}");

    // Nothing listens on 8081: the error stream says so, the data stream
    // ends, and the session goes on.
    let err = s.open_with(headers("error", 8081, 100)).await;
    let data = s.open_with(headers("data", 8081, 100)).await;
    let got = s.collect(&[err, data], 20).await;
    let msg = String::from_utf8_lossy(&got[&err]).into_owned();
    assert!(msg.contains("8081"), "{msg}");
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
    let again = get(&mut s, 101).await;
    assert!(again.0.contains("hello-from-the-pod"), "{again:?}");
    s.close().await;

    // The host itself does not serve 8080, so the answers above came from
    // inside the pod.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", 8080)).is_err(),
        "something on the host listens on 8080; the test cannot tell pod from host"
    );

    // Bad requests.
    let err = env
        .rt
        .port_forward(PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![70000],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = env
        .rt
        .port_forward(PortForwardRequest {
            pod_sandbox_id: "0123456789abcdef".into(),
            port: vec![80],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // The exec protocols are not port-forward's.
    let url = env
        .rt
        .port_forward(PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![8080],
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let r = spdy::connect(&url, &["v4.channel.k8s.io"])
        .await
        .err()
        .expect("refused");
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn port_forward_over_websocket() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("pfws").await;
    let web = sh(
        "web",
        &bb,
        "mkdir -p /www && echo hello-over-ws > /www/index.html && exec httpd -f -p 8080 -h /www",
    );
    let _web = env.run(&pod, &pcfg, web).await;
    let mut got: std::collections::HashMap<u8, Vec<u8>> = Default::default();
    // httpd may still be starting: a fresh URL per attempt.
    for _attempt in 0..20 {
        got.clear();
        let url = env
            .rt
            .port_forward(PortForwardRequest {
                pod_sandbox_id: pod.clone(),
                port: vec![8080, 8081],
            })
            .await
            .expect("PortForward")
            .into_inner()
            .url;
        let addr = url
            .strip_prefix("http://")
            .and_then(|r| r.split('/').next())
            .expect("http URL")
            .to_owned();
        let tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let mut req = format!(
            "{}?port=8080&port=8081",
            url.replacen("http://", "ws://", 1)
        )
        .into_client_request()
        .expect("request");
        req.headers_mut().insert(
            "sec-websocket-protocol",
            "v4.channel.k8s.io".parse().expect("header"),
        );
        let (mut ws, _) = tokio_tungstenite::client_async(req, tcp)
            .await
            .expect("WebSocket handshake");
        ws.send(Message::Binary(
            b"\x00GET /index.html HTTP/1.0\r\n\r\n".to_vec().into(),
        ))
        .await
        .expect("send");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let done = got
                .get(&0)
                .is_some_and(|d| String::from_utf8_lossy(d).contains("hello-over-ws"))
                && got.get(&3).is_some_and(|d| {
                    String::from_utf8_lossy(d)
                        .to_lowercase()
                        .contains("refused")
                });
            // httpd not listening yet: port 8080's error channel says so
            // (beyond its 2-byte port prefix); try again.
            let not_yet = got.get(&1).is_some_and(|d| d.len() > 2);
            if done || not_yet {
                break;
            }
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) if !b.is_empty() => {
                    got.entry(b[0]).or_default().extend_from_slice(&b[1..]);
                }
                Ok(Some(Ok(_))) => {}
                _ => break,
            }
        }
        let _ = ws.close(None).await;
        if got
            .get(&0)
            .is_some_and(|d| String::from_utf8_lossy(d).contains("hello-over-ws"))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Every channel starts with its port, little-endian.
    assert_eq!(got[&0][..2], 8080u16.to_le_bytes(), "{got:?}");
    assert_eq!(got[&1][..2], 8080u16.to_le_bytes());
    assert_eq!(got[&2][..2], 8081u16.to_le_bytes());
    let page = String::from_utf8_lossy(&got[&0][2..]).into_owned();
    assert!(
        page.contains("200 OK") && page.contains("hello-over-ws"),
        "{page}"
    );
    let refused = String::from_utf8_lossy(&got[&3][2..]).into_owned();
    assert!(refused.contains("8081"), "{refused}");
}
