//! Exec and Attach over the streaming server with a SPDY/3.1 client, as
//! kubelet and kubectl use it: output, stdin, exit status on the error
//! stream (v4 JSON and the older text form), a terminal with resize, 10 MiB
//! of output arriving complete, single-use and expiring URLs, protocol
//! negotiation, request validation, no descriptor leak over many sessions;
//! attach to a printing container (detach leaves it running), to one that
//! reads stdin (stdin_once), and to a terminal with resize.

mod common;

use common::containers::*;
use common::spdy::{self, exec_req, session, url};
use k8s_cri::v1::*;
use tonic::Code;

const V4: &str = "v4.channel.k8s.io";

async fn running(env: &mut Env, name: &str) -> String {
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod(name).await;
    env.run(&pod, &pcfg, ctr("target", &bb, &["sleep", "300"]))
        .await
}

#[tokio::test]
async fn exec_output_stdin_and_exit_status() {
    let mut env = Env::new("").await;
    let id = running(&mut env, "xs").await;

    // stdout, stderr and a non-zero exit as a v4 Status.
    let req = exec_req(
        &id,
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
        false,
        false,
    );
    let u = url(&mut env.rt, req.clone()).await;
    assert!(u.starts_with("http://127.0.0.1:"), "{u}");
    let mut s = session(&u, &req, &[V4, "v3.channel.k8s.io"]).await;
    assert_eq!(s.protocol, V4);
    let out = s.run(20).await;
    s.close().await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let st = out.status();
    assert_eq!(st["status"], "Failure", "{st}");
    assert_eq!(st["reason"], "NonZeroExitCode", "{st}");
    assert_eq!(st["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(st["details"]["causes"][0]["message"], "3");

    // stdin in, through to the end of input; success.
    let req = exec_req(&id, &["sh", "-c", "cat; echo done"], true, false);
    let u = url(&mut env.rt, req.clone()).await;
    let mut s = session(&u, &req, &[V4]).await;
    s.send("stdin", b"hello ", false).await;
    s.send("stdin", b"world\n", true).await;
    let out = s.run(20).await;
    s.close().await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello world\ndone\n");
    assert_eq!(out.status()["status"], "Success");

    // The older protocol: the error stream carries text, only on failure.
    let req = exec_req(&id, &["sh", "-c", "exit 2"], false, false);
    let u = url(&mut env.rt, req.clone()).await;
    let mut s = session(&u, &req, &["v2.channel.k8s.io"]).await;
    assert_eq!(s.protocol, "v2.channel.k8s.io");
    let out = s.run(20).await;
    s.close().await;
    assert!(out.error.contains("exit status 2"), "{out:?}");

    // A program that does not exist: a Failure status naming it.
    let req = exec_req(&id, &["/no/such/program"], false, false);
    let u = url(&mut env.rt, req.clone()).await;
    let mut s = session(&u, &req, &[V4]).await;
    let out = s.run(20).await;
    s.close().await;
    let st = out.status();
    assert_eq!(st["status"], "Failure", "{st}");
    assert!(
        st["message"]
            .as_str()
            .unwrap_or_default()
            .contains("/no/such/program"),
        "{st}"
    );

    // 10 MiB of output arrives complete.
    let req = exec_req(&id, &["head", "-c", "10485760", "/dev/zero"], false, false);
    let u = url(&mut env.rt, req.clone()).await;
    let mut s = session(&u, &req, &[V4]).await;
    let out = s.run(60).await;
    s.close().await;
    assert_eq!(out.stdout.len(), 10 * 1024 * 1024);
    assert_eq!(out.status()["status"], "Success");
}

#[tokio::test]
async fn exec_tty_with_resize() {
    let mut env = Env::new("").await;
    let id = running(&mut env, "xt").await;
    let req = exec_req(&id, &["sh"], true, true);
    let u = url(&mut env.rt, req.clone()).await;
    let mut s = session(&u, &req, &[V4]).await;
    s.send("resize", br#"{"Width":123,"Height":45}"#, false)
        .await;
    s.send(
        "stdin",
        b"[ -t 0 ] && echo tty-yes; echo TERM=$TERM; stty size; exit 4\n",
        false,
    )
    .await;
    let out = s.run(20).await;
    s.close().await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("tty-yes"), "{text:?}");
    assert!(text.contains("TERM=xterm"), "{text:?}");
    assert!(text.contains("45 123"), "{text:?}");
    assert!(out.stderr.is_empty());
    assert_eq!(out.status()["details"]["causes"][0]["message"], "4");

    // A client that hangs up mid-session: the terminal hangs up too, and
    // the command (here sleeping) gets SIGHUP rather than living on.
    let marker = format!("sleep {}", 700 + std::process::id() % 100);
    let script = format!("echo started; exec {marker}");
    let req = exec_req(&id, &["sh", "-c", &script], true, true);
    let u = url(&mut env.rt, req.clone()).await;
    let mut s = session(&u, &req, &[V4]).await;
    let first = s.next_data("stdout", 20).await;
    assert!(String::from_utf8_lossy(&first).contains("started"));
    drop(s);
    let alive = || {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .any(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim_end() == marker)
    };
    let mut gone = false;
    for _ in 0..100 {
        if !alive() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "{marker:?} still runs after the client hung up");
}

#[tokio::test]
async fn urls_are_single_use_expire_and_negotiate() {
    let mut env = Env::new("[streaming]\ntoken_ttl_secs = 1\n").await;
    let id = running(&mut env, "xu").await;
    let req = exec_req(&id, &["true"], false, false);

    // Used once: a second use is 404.
    let u = url(&mut env.rt, req.clone()).await;
    let mut s = session(&u, &req, &[V4]).await;
    let out = s.run(20).await;
    s.close().await;
    assert_eq!(out.status()["status"], "Success");
    let again = spdy::connect(&u, &[V4])
        .await
        .err()
        .expect("second use refused");
    assert_eq!(again.status, 404);

    // Expired after the TTL.
    let u = url(&mut env.rt, req.clone()).await;
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let late = spdy::connect(&u, &[V4])
        .await
        .err()
        .expect("expired URL refused");
    assert_eq!(late.status, 404);

    // No protocol in common: 403, saying so.
    let u = url(&mut env.rt, req.clone()).await;
    let r = spdy::connect(&u, &["v9.channel.k8s.io"])
        .await
        .err()
        .expect("no common protocol");
    assert_eq!(r.status, 403);
    assert!(r.body.contains("negotiate"), "{}", r.body);

    // Requests the CRI forbids, and a stopped container.
    let mut bad = exec_req(&id, &["sh"], false, true);
    bad.stderr = true;
    let err = env.rt.exec(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let mut none = exec_req(&id, &["sh"], false, false);
    none.stdout = false;
    none.stderr = false;
    let err = env.rt.exec(none).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    env.stop(&id, 0).await.unwrap();
    let err = env.rt.exec(req).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
}

#[tokio::test]
async fn a_thousand_sessions_leak_no_descriptors() {
    let mut env = Env::new("").await;
    let id = running(&mut env, "xf").await;
    let pid = env.daemon.pid().expect("daemon pid");
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    // One session first, so lazily created things (the zygote, the
    // listener's connections) exist before counting.
    let req = exec_req(&id, &["echo", "hi"], false, false);
    for _ in 0..3 {
        let u = url(&mut env.rt, req.clone()).await;
        let mut s = session(&u, &req, &[V4]).await;
        s.run(20).await;
        s.close().await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let before = fds();
    for i in 0..1000 {
        let u = url(&mut env.rt, req.clone()).await;
        let mut s = session(&u, &req, &[V4]).await;
        if i % 3 == 0 {
            s.ping(i).await;
        }
        let out = s.run(20).await;
        assert_eq!(out.stdout, b"hi\n");
        if i % 2 == 0 {
            s.close().await;
        } else {
            drop(s); // hang up without GOAWAY
        }
    }
    // Sessions end asynchronously (the server lingers for the client).
    let mut after = fds();
    for _ in 0..80 {
        if after <= before + 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        after = fds();
    }
    assert!(
        after <= before + 2,
        "daemon fds grew from {before} to {after} over 1000 sessions"
    );
}

async fn attach_url(env: &mut Env, id: &str, stdin: bool, stderr: bool) -> String {
    env.rt
        .attach(AttachRequest {
            container_id: id.into(),
            stdin,
            tty: false,
            stdout: true,
            stderr,
        })
        .await
        .unwrap_or_else(|e| panic!("Attach: {e:?}"))
        .into_inner()
        .url
}

#[tokio::test]
async fn attach_follows_output_and_feeds_stdin() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("att").await;

    // A printing container: attach sees new output; detaching leaves it
    // running.
    let ticker = env
        .run(
            &pod,
            &pcfg,
            sh(
                "ticker",
                &bb,
                "i=0; while true; do echo tick $i; echo tock $i >&2; i=$((i+1)); sleep 0.1; done",
            ),
        )
        .await;
    let u = attach_url(&mut env, &ticker, false, true).await;
    assert!(u.contains("/attach/"), "{u}");
    let req = ExecRequest {
        stdin: false,
        stdout: true,
        stderr: true,
        tty: false,
        ..Default::default()
    };
    let mut s = session(&u, &req, &[V4]).await;
    let out = String::from_utf8_lossy(&s.next_data("stdout", 10).await).into_owned();
    assert!(out.contains("tick"), "{out:?}");
    let err = String::from_utf8_lossy(&s.next_data("stderr", 10).await).into_owned();
    assert!(err.contains("tock"), "{err:?}");
    s.close().await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        env.status(&ticker).await.state,
        ContainerState::ContainerRunning as i32,
        "detaching must not stop the container"
    );

    // A container that reads stdin (stdin_once): what the client sends
    // arrives, and when the container exits the session ends with Success.
    let mut c = sh("reader", &bb, "read line; echo got:$line; exit 5");
    c.stdin = true;
    c.stdin_once = true;
    let reader = env.run(&pod, &pcfg, c).await;
    let u = attach_url(&mut env, &reader, true, true).await;
    let req = ExecRequest {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
        ..Default::default()
    };
    let mut s = session(&u, &req, &[V4]).await;
    s.send("stdin", b"hello\n", true).await;
    let out = s.run(20).await;
    s.close().await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got:hello\n");
    assert_eq!(out.status()["status"], "Success");
    let st = env.wait_exited(&reader, 10).await;
    assert_eq!(st.exit_code, 5);
    // Its log has the output too.
    assert_eq!(log_text(std::path::Path::new(&st.log_path)), "got:hello\n");

    // Attaching stdin to a container without stdin is refused.
    let err = env
        .rt
        .attach(AttachRequest {
            container_id: ticker.clone(),
            stdin: true,
            tty: false,
            stdout: true,
            stderr: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
}

#[tokio::test]
async fn attach_to_a_terminal_with_resize() {
    let mut env = Env::new("").await;
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("attty").await;
    let mut c = ctr("shell", &bb, &["sh"]);
    c.stdin = true;
    c.tty = true;
    let id = env.run(&pod, &pcfg, c).await;
    let u = env
        .rt
        .attach(AttachRequest {
            container_id: id.clone(),
            stdin: true,
            tty: true,
            stdout: true,
            stderr: false,
        })
        .await
        .expect("Attach")
        .into_inner()
        .url;
    let req = ExecRequest {
        stdin: true,
        stdout: true,
        stderr: false,
        tty: true,
        ..Default::default()
    };
    let mut s = session(&u, &req, &[V4]).await;
    s.send("resize", br#"{"Width":77,"Height":22}"#, false)
        .await;
    // Give the resize (a separate call to the monitor) a moment.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    s.send("stdin", b"stty size; exit 3\n", false).await;
    let out = s.run(20).await;
    s.close().await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("22 77"), "{text:?}");
    assert_eq!(env.wait_exited(&id, 10).await.exit_code, 3);
}

/// A WebSocket client session: the server's messages by channel until it
/// closes.
async fn ws_session(
    url: &str,
    protocol: &str,
    send: Vec<tokio_tungstenite::tungstenite::Message>,
) -> (String, std::collections::HashMap<u8, Vec<u8>>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let addr = url
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .expect("http URL");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = url
        .replacen("http://", "ws://", 1)
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "sec-websocket-protocol",
        protocol.parse().expect("header value"),
    );
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tcp)
        .await
        .expect("WebSocket handshake");
    let chosen = resp
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    for m in send {
        ws.send(m).await.expect("send");
    }
    let base64 = chosen == "base64.channel.k8s.io";
    let mut got: std::collections::HashMap<u8, Vec<u8>> = Default::default();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("session ends in time");
        match m {
            Some(Ok(Message::Binary(b))) if !b.is_empty() => {
                got.entry(b[0]).or_default().extend_from_slice(&b[1..]);
            }
            Some(Ok(Message::Text(t))) if base64 => {
                use base64::Engine;
                let (ch, data) = t.as_str().split_at(1);
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .expect("base64 data");
                got.entry(ch.parse().expect("channel digit"))
                    .or_default()
                    .extend_from_slice(&bytes);
            }
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("websocket: {e}"),
        }
    }
    (chosen, got)
}

#[tokio::test]
async fn exec_and_attach_over_websocket() {
    use tokio_tungstenite::tungstenite::Message;
    let mut env = Env::new("").await;
    let id = running(&mut env, "ws").await;

    // v5: stdin, then the close signal ends it; stdout, stderr and the
    // status arrive on their channels.
    let req = exec_req(&id, &["sh", "-c", "cat; echo err >&2; exit 2"], true, false);
    let u = url(&mut env.rt, req).await;
    let (chosen, got) = ws_session(
        &u,
        "v5.channel.k8s.io, v4.channel.k8s.io",
        vec![
            Message::Binary(b"\x00hello ws\n".to_vec().into()),
            Message::Binary(vec![255, 0].into()),
        ],
    )
    .await;
    assert_eq!(chosen, "v5.channel.k8s.io");
    assert_eq!(String::from_utf8_lossy(&got[&1]), "hello ws\n");
    assert_eq!(String::from_utf8_lossy(&got[&2]), "err\n");
    let status: serde_json::Value = serde_json::from_slice(&got[&3]).expect("status JSON");
    assert_eq!(status["details"]["causes"][0]["message"], "2", "{status}");

    // base64.channel.k8s.io: text messages, base64 data.
    let req = exec_req(&id, &["echo", "in base64"], false, false);
    let u = url(&mut env.rt, req).await;
    let (chosen, got) = ws_session(&u, "base64.channel.k8s.io", Vec::new()).await;
    assert_eq!(chosen, "base64.channel.k8s.io");
    assert_eq!(String::from_utf8_lossy(&got[&1]), "in base64\n");

    // Attach over WebSocket sees the container's output.
    let bb = env.busybox.clone();
    let (pod, pcfg) = env.pod("wsatt").await;
    let mut c = sh("echoer", &bb, "read line; echo attached:$line");
    c.stdin = true;
    c.stdin_once = true;
    let echoer = env.run(&pod, &pcfg, c).await;
    let u = env
        .rt
        .attach(AttachRequest {
            container_id: echoer.clone(),
            stdin: true,
            tty: false,
            stdout: true,
            stderr: false,
        })
        .await
        .expect("Attach")
        .into_inner()
        .url;
    let (_, got) = ws_session(
        &u,
        "v4.channel.k8s.io",
        vec![Message::Binary(b"\x00x\n".to_vec().into())],
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&got[&1]), "attached:x\n");
}

#[tokio::test]
async fn exec_over_tls() {
    use std::sync::Arc;
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=crius-test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl missing: apt-get install openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut env = Env::new(&format!(
        "[streaming]\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    ))
    .await;
    let id = running(&mut env, "tls").await;
    let req = exec_req(&id, &["echo", "over tls"], false, false);
    let u = url(&mut env.rt, req.clone()).await;
    assert!(u.starts_with("https://127.0.0.1:"), "{u}");

    // A client trusting only that certificate.
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&cert).expect("cert") {
        roots.add(c.expect("cert")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let addr = u
        .strip_prefix("https://")
        .and_then(|r| r.split('/').next())
        .expect("https URL");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let mut s = spdy::connect_over(Box::new(tls), &u, &[V4])
        .await
        .unwrap_or_else(|r| panic!("upgrade refused: {} {}", r.status, r.body));
    s.open("error").await;
    s.open("stdout").await;
    s.open("stderr").await;
    let out = s.run(20).await;
    s.close().await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over tls\n");
    assert_eq!(out.status()["status"], "Success");
}

#[tokio::test]
async fn idle_sessions_close_but_busy_ones_do_not() {
    let mut env = Env::new("[streaming]\nidle_timeout_secs = 2\n").await;
    let id = running(&mut env, "idle").await;
    // Output keeps flowing for 4 s while the client says nothing: the
    // session lives to the end.
    let req = exec_req(
        &id,
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8; do echo $i; sleep 0.5; done",
        ],
        false,
        false,
    );
    let u = url(&mut env.rt, req.clone()).await;
    let mut s = session(&u, &req, &[V4]).await;
    let out = s.run(20).await;
    s.close().await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1\n2\n3\n4\n5\n6\n7\n8\n"
    );
    assert_eq!(out.status()["status"], "Success");
    // Nothing either way: the server closes the session after the idle
    // timeout, without an outcome.
    let req = exec_req(&id, &["sleep", "30"], false, false);
    let u = url(&mut env.rt, req.clone()).await;
    let mut s = session(&u, &req, &[V4]).await;
    let t0 = std::time::Instant::now();
    let out = s.run(20).await;
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(10),
        "closed after {:?}",
        t0.elapsed()
    );
    assert!(out.error.is_empty(), "{out:?}");
}
