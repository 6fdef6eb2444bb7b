use std::net::SocketAddr;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::sync::Mutex;

const MANIFEST: &[u8] = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;

/// A request as the test server saw it; header names lowercase.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    target: String,
    headers: HashMap<String, String>,
    body: String,
}

impl Req {
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
    fn query(&self, key: &str) -> Vec<String> {
        let u = Url::parse(&format!("http://x{}", self.target)).unwrap();
        u.query_pairs()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
            .collect()
    }
}

struct Res {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    length: bool,
}

fn res(status: u16, body: impl Into<Vec<u8>>) -> Res {
    Res {
        status,
        headers: Vec::new(),
        body: body.into(),
        length: true,
    }
}

impl Res {
    fn header(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.headers.push((k, v.into()));
        self
    }
}

fn manifest_ok() -> Res {
    res(200, MANIFEST).header("content-type", OCI_MANIFEST)
}

fn errors(status: u16, code: &str) -> Res {
    res(
        status,
        format!(r#"{{"errors":[{{"code":"{code}","message":"m-{code}"}}]}}"#),
    )
}

type Handler = dyn Fn(&Req, &str) -> Res + Send + Sync;

/// A minimal HTTP/1.1 server: one request per connection, then close.
/// The handler gets the request and the server's own base URL.
struct Server {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Req>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(handler: impl Fn(&Req, &str) -> Res + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let (log2, base) = (log.clone(), format!("http://{addr}"));
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (h, log, base) = (handler.clone(), log2.clone(), base.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 8192];
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i;
                        }
                        match s.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let mut lines = head.split("\r\n");
                    let mut first = lines.next().unwrap().split(' ');
                    let (method, target) = (first.next().unwrap(), first.next().unwrap());
                    let headers: HashMap<String, String> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .collect();
                    let len: usize = headers
                        .get("content-length")
                        .map_or(0, |l| l.parse().unwrap());
                    let mut body = buf[end + 4..].to_vec();
                    while body.len() < len {
                        let n = s.read(&mut tmp).await.unwrap();
                        body.extend_from_slice(&tmp[..n]);
                    }
                    let req = Req {
                        method: method.into(),
                        target: target.into(),
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    };
                    let r = h(&req, &base);
                    log.lock().unwrap().push(req);
                    let mut out = format!("HTTP/1.1 {} X\r\nconnection: close\r\n", r.status);
                    if r.length {
                        out += &format!("content-length: {}\r\n", r.body.len());
                    }
                    for (k, v) in &r.headers {
                        out += &format!("{k}: {v}\r\n");
                    }
                    out += "\r\n";
                    let _ = s.write_all(out.as_bytes()).await;
                    let _ = s.write_all(&r.body).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Self { addr, log, task }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn reqs(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }

    fn hits(&self, path: &str) -> usize {
        self.reqs().iter().filter(|r| r.path() == path).count()
    }

    fn reference(&self, rest: &str) -> Reference {
        Reference::parse(&format!("{}/{rest}", self.addr)).unwrap()
    }
}

fn client(mirrors: &[(&Server, Vec<String>)]) -> RegistryClient {
    let mut cfg = ImageConfig {
        request_timeout_secs: 5,
        ..ImageConfig::default()
    };
    for (upstream, eps) in mirrors {
        cfg.mirrors.insert(upstream.addr.to_string(), eps.clone());
    }
    RegistryClient::new(&cfg).unwrap()
}

fn basic_creds(u: &str, p: &str) -> Credentials {
    Credentials::Basic {
        username: u.into(),
        password: p.into(),
    }
}

fn basic_value(u: &str, p: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{u}:{p}")))
}

async fn collect(b: BlobResponse) -> Vec<u8> {
    let chunks: Vec<Bytes> = b.stream.map(|c| c.unwrap()).collect().await;
    chunks.concat()
}

#[tokio::test]
async fn anonymous_manifest_fetch() {
    let srv = Server::start(|r, _| match r.path() {
        "/v2/library/busybox/manifests/latest" => manifest_ok(),
        _ => res(404, ""),
    })
    .await;
    let m = client(&[])
        .fetch_manifest(&srv.reference("library/busybox"), &Credentials::Anonymous)
        .await
        .unwrap();
    assert_eq!(m.digest, Digest::of(MANIFEST));
    assert_eq!(m.media_type, OCI_MANIFEST);
    assert_eq!(&m.bytes[..], MANIFEST);
    let req = &srv.reqs()[0];
    assert_eq!(req.method, "GET");
    let accept = req.header("accept").unwrap();
    for t in [
        OCI_INDEX,
        OCI_MANIFEST,
        DOCKER_MANIFEST_LIST,
        DOCKER_MANIFEST,
    ] {
        assert!(accept.contains(t), "{accept}");
    }
    assert_eq!(req.header("authorization"), None);
    assert!(req.header("user-agent").unwrap().starts_with("crius/"));
}

#[tokio::test]
async fn basic_challenge_is_answered_and_remembered() {
    let srv = Server::start(|r, _| match r.header("authorization") {
        Some(a) if a == basic_value("u", "p") => manifest_ok(),
        _ => res(401, "").header("www-authenticate", r#"Basic realm="test""#),
    })
    .await;
    let c = client(&[]);
    let r = srv.reference("app:1");
    c.fetch_manifest(&r, &basic_creds("u", "p")).await.unwrap();
    c.fetch_manifest(&r, &basic_creds("u", "p")).await.unwrap();
    assert_eq!(srv.reqs().len(), 3, "the second fetch sends Basic at once");

    let e = c
        .fetch_manifest(&r, &Credentials::Anonymous)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("no pull secret"), "{e}");
    let e = c
        .fetch_manifest(&r, &basic_creds("u", "wrong"))
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("credentials are wrong"), "{e}");
}

/// A registry with a token service at /token: Basic u:p gets "t-basic",
/// anonymous gets "t-anon" (as `access_token`), wrong credentials a 401.
async fn bearer_registry() -> Server {
    Server::start(|r, base| {
        if r.path() == "/token" {
            assert_eq!(r.query("service"), ["reg.test"]);
            assert_eq!(r.query("scope"), ["repository:library/busybox:pull"]);
            return match r.header("authorization") {
                None => res(200, r#"{"access_token":"t-anon"}"#),
                Some(a) if a == basic_value("u", "p") => {
                    assert_eq!(r.query("account"), ["u"]);
                    res(200, r#"{"token":"t-basic","expires_in":300}"#)
                }
                Some(_) => errors(401, "UNAUTHORIZED"),
            };
        }
        match r.header("authorization") {
            Some("Bearer t-basic" | "Bearer t-anon") if r.path().contains("/blobs/") => res(200, "layer"),
            Some("Bearer t-basic" | "Bearer t-anon") => manifest_ok(),
            _ => res(401, "").header(
                "www-authenticate",
                format!(r#"Bearer realm="{base}/token",service="reg.test",scope="repository:library/busybox:pull""#),
            ),
        }
    })
    .await
}

#[tokio::test]
async fn bearer_token_is_fetched_once_per_credentials() {
    let srv = bearer_registry().await;
    let c = client(&[]);
    let r = srv.reference("library/busybox");
    let creds = basic_creds("u", "p");
    c.fetch_manifest(&r, &creds).await.unwrap();
    let blob = c
        .fetch_blob(&r, &Digest::of(b"layer"), &creds)
        .await
        .unwrap();
    assert_eq!(blob.size, Some(5));
    assert_eq!(collect(blob).await, b"layer");
    assert_eq!(
        srv.hits("/token"),
        1,
        "token cached across manifest and blob"
    );

    // Another pod's anonymous pull must not reuse the credentialed token.
    c.fetch_manifest(&r, &Credentials::Anonymous).await.unwrap();
    assert_eq!(srv.hits("/token"), 2);

    let e = c
        .fetch_manifest(&r, &basic_creds("u", "bad"))
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("m-UNAUTHORIZED"), "{e}");
}

#[tokio::test]
async fn identity_token_uses_oauth2_refresh_grant() {
    let srv = Server::start(|r, base| match (r.method.as_str(), r.path()) {
        ("POST", "/token") => {
            let form: HashMap<String, String> = Url::parse(&format!("http://x/?{}", r.body))
                .unwrap()
                .query_pairs()
                .into_owned()
                .collect();
            assert_eq!(form["grant_type"], "refresh_token");
            assert_eq!(form["refresh_token"], "r&t/=x");
            assert_eq!(form["client_id"], "crius");
            assert_eq!(form["service"], "svc");
            assert_eq!(form["scope"], "repository:a/b:pull");
            res(200, r#"{"access_token":"t-oauth"}"#)
        }
        _ if r.header("authorization") == Some("Bearer t-oauth") => manifest_ok(),
        _ => res(401, "").header(
            "www-authenticate",
            format!(r#"Bearer realm="{base}/token",service="svc""#),
        ),
    })
    .await;
    let creds = Credentials::IdentityToken("r&t/=x".into());
    client(&[])
        .fetch_manifest(&srv.reference("a/b"), &creds)
        .await
        .unwrap();
}

#[tokio::test]
async fn registry_token_is_sent_directly() {
    let srv = Server::start(|r, base| match r.header("authorization") {
        Some("Bearer direct") => manifest_ok(),
        _ => res(401, "").header(
            "www-authenticate",
            format!(r#"Bearer realm="{base}/token""#),
        ),
    })
    .await;
    let c = client(&[]);
    let r = srv.reference("x");
    c.fetch_manifest(&r, &Credentials::RegistryToken("direct".into()))
        .await
        .unwrap();
    assert_eq!(srv.reqs().len(), 1);
    let e = c
        .fetch_manifest(&r, &Credentials::RegistryToken("stale".into()))
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e}");
    assert_eq!(srv.hits("/token"), 0, "a registry token is never exchanged");
}

#[tokio::test]
async fn errors_tell_what_was_not_found() {
    let srv = Server::start(|r, _| match r.path() {
        "/v2/library/busybox/manifests/nope" => errors(404, "MANIFEST_UNKNOWN"),
        "/v2/library/ghost/manifests/latest" => errors(404, "NAME_UNKNOWN"),
        "/v2/library/busybox/manifests/bare" => res(404, ""),
        p if p.starts_with("/v2/library/busybox/blobs/") => errors(404, "BLOB_UNKNOWN"),
        "/v2/library/private/manifests/latest" => errors(403, "DENIED"),
        _ => res(503, "<html>down for maintenance</html>"),
    })
    .await;
    let (c, anon) = (client(&[]), Credentials::Anonymous);
    let e = c
        .fetch_manifest(&srv.reference("library/busybox:nope"), &anon)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RegistryError::ManifestUnknown { reference, .. } if reference == "nope"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("MANIFEST_UNKNOWN: m-MANIFEST_UNKNOWN"),
        "{e}"
    );
    let e = c
        .fetch_manifest(&srv.reference("library/ghost"), &anon)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::NameUnknown { .. }), "{e}");
    let e = c
        .fetch_manifest(&srv.reference("library/busybox:bare"), &anon)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::ManifestUnknown { .. }), "{e}");
    let d = Digest::of(b"x");
    let e = c
        .fetch_blob(&srv.reference("library/busybox"), &d, &anon)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RegistryError::BlobUnknown { digest, .. } if *digest == d),
        "{e}"
    );
    let e = c
        .fetch_manifest(&srv.reference("library/private"), &anon)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Denied { .. }), "{e}");
    let e = c
        .fetch_manifest(&srv.reference("other"), &anon)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Http { status: 503, .. }), "{e}");
    assert!(e.to_string().contains("down for maintenance"), "{e}");
}

#[tokio::test]
async fn mirrors_are_tried_first_and_fall_back() {
    let upstream = Server::start(|r, _| match r.path() {
        p if p.contains("/blobs/") => res(200, "up-blob"),
        _ => manifest_ok(),
    })
    .await;
    let mirror = Server::start(|r, _| match r.path() {
        "/v2/library/busybox/manifests/cached" => manifest_ok(),
        p if p.contains("/blobs/") => res(500, ""),
        _ => errors(404, "MANIFEST_UNKNOWN"),
    })
    .await;
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let c = client(&[(&upstream, vec![format!("http://{dead}"), mirror.base()])]);
    let anon = Credentials::Anonymous;

    c.fetch_manifest(&upstream.reference("library/busybox:cached"), &anon)
        .await
        .unwrap();
    assert_eq!(upstream.reqs().len(), 0, "a mirror hit stops the search");
    c.fetch_manifest(&upstream.reference("library/busybox:latest"), &anon)
        .await
        .unwrap();
    assert_eq!(mirror.hits("/v2/library/busybox/manifests/latest"), 1);
    assert_eq!(
        upstream.hits("/v2/library/busybox/manifests/latest"),
        1,
        "404 falls back"
    );
    let blob = c
        .fetch_blob(
            &upstream.reference("library/busybox"),
            &Digest::of(b"up-blob"),
            &anon,
        )
        .await
        .unwrap();
    assert_eq!(collect(blob).await, b"up-blob", "5xx falls back");

    // Upstream unreachable (air-gapped): the mirror's answer is reported.
    let c = client(&[]);
    let mut cfg = ImageConfig::default();
    cfg.mirrors.insert(dead.to_string(), vec![mirror.base()]);
    let c2 = RegistryClient::new(&cfg).unwrap();
    let r = Reference::parse(&format!("{dead}/library/busybox:gone")).unwrap();
    let e = c2.fetch_manifest(&r, &anon).await.unwrap_err();
    assert!(matches!(e, RegistryError::ManifestUnknown { .. }), "{e}");
    assert!(e.to_string().contains("mirror"), "{e}");
    let e = c.fetch_manifest(&r, &anon).await.unwrap_err();
    assert!(
        matches!(&e, RegistryError::Unreachable { url, .. } if url.contains(&dead.to_string())),
        "{e}"
    );
}

#[tokio::test]
async fn blob_redirect_does_not_forward_authorization() {
    let storage = Server::start(|_, _| res(200, "blobdata")).await;
    let target = format!("{}/store/blob?sig=secret", storage.base());
    let srv = Server::start(move |r, _| match r.header("authorization") {
        Some("Bearer direct") => res(307, "").header("location", target.clone()),
        _ => res(401, ""),
    })
    .await;
    let creds = Credentials::RegistryToken("direct".into());
    let blob = client(&[])
        .fetch_blob(&srv.reference("x"), &Digest::of(b"blobdata"), &creds)
        .await
        .unwrap();
    assert_eq!(collect(blob).await, b"blobdata");
    let got = storage.reqs();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].target, "/store/blob?sig=secret");
    assert_eq!(got[0].header("authorization"), None);
}

#[tokio::test]
async fn oversized_manifests_are_refused() {
    let big = vec![b' '; MANIFEST_SIZE_LIMIT as usize + 1];
    let srv = Server::start(move |r, _| {
        let mut res = res(200, big.clone()).header("content-type", OCI_MANIFEST);
        res.length = r.path().ends_with("/declared");
        res
    })
    .await;
    let c = client(&[]);
    for tag in ["declared", "streamed"] {
        let e = c
            .fetch_manifest(&srv.reference(&format!("x:{tag}")), &Credentials::Anonymous)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                RegistryError::TooLarge {
                    limit: MANIFEST_SIZE_LIMIT,
                    ..
                }
            ),
            "{tag}: {e}"
        );
    }
}

#[tokio::test]
async fn manifest_by_digest_is_verified() {
    let srv =
        Server::start(|_, _| res(200, MANIFEST).header("content-type", "application/json")).await;
    let (c, anon) = (client(&[]), Credentials::Anonymous);
    let good = Digest::of(MANIFEST);
    let r = srv.reference(&format!("x@{good}"));
    let m = c.fetch_manifest(&r, &anon).await.unwrap();
    assert_eq!(m.digest, good);
    assert_eq!(m.media_type, OCI_MANIFEST, "inferred from the body");
    assert_eq!(srv.reqs()[0].path(), format!("/v2/x/manifests/{good}"));

    let other = Digest::of(b"other");
    let e = c
        .fetch_manifest_digest(&srv.reference("x"), &other, &anon)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RegistryError::DigestMismatch { expected, actual, .. } if *expected == other && *actual == good),
        "{e}"
    );
}

#[test]
fn media_type_sources() {
    let docker = format!(r#"{{"mediaType":"{DOCKER_MANIFEST}"}}"#);
    assert_eq!(
        manifest_media_type(Some("application/json"), docker.as_bytes()).as_deref(),
        Some(DOCKER_MANIFEST)
    );
    let ct = format!("{OCI_INDEX}; charset=utf-8");
    assert_eq!(
        manifest_media_type(Some(&ct), b"{}").as_deref(),
        Some(OCI_INDEX)
    );
    assert_eq!(
        manifest_media_type(None, br#"{"manifests":[]}"#).as_deref(),
        Some(OCI_INDEX)
    );
    assert_eq!(manifest_media_type(Some("text/plain"), b"not json"), None);
}

#[test]
fn credentials_from_cri_auth_config() {
    let b64 = STANDARD.encode("alice:s3cr:et");
    let cases = [
        (["", "", "", "", ""], Credentials::Anonymous),
        (["u", "p", "", "", ""], basic_creds("u", "p")),
        (["", "", &b64, "", ""], basic_creds("alice", "s3cr:et")),
        (
            ["", "", b64.trim_end_matches('='), "", ""],
            basic_creds("alice", "s3cr:et"),
        ),
        (["u", "p", &b64, "", ""], basic_creds("u", "p")),
        (
            ["<token>", "", "", "idt", ""],
            Credentials::IdentityToken("idt".into()),
        ),
        (
            ["u", "p", "", "idt", "rt"],
            Credentials::RegistryToken("rt".into()),
        ),
    ];
    for ([u, p, a, i, r], want) in cases {
        assert_eq!(
            credentials_from_auth(u, p, a, i, r).unwrap(),
            want,
            "{u} {a} {i} {r}"
        );
    }
    for bad in [
        "!!!not-base64",
        &STANDARD.encode("nocolon"),
        &STANDARD.encode(":pw"),
    ] {
        let e = credentials_from_auth("", "", bad, "", "").unwrap_err();
        assert!(
            matches!(e, RegistryError::InvalidCredentials { field: "auth", .. }),
            "{e}"
        );
        assert!(!e.to_string().contains(bad), "the secret is echoed: {e}");
    }
}

#[test]
fn debug_redacts_secrets() {
    for c in [
        basic_creds("alice", "hunter2"),
        Credentials::IdentityToken("hunter2".into()),
        Credentials::RegistryToken("hunter2".into()),
    ] {
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2") && s.contains("redacted"), "{s}");
    }
    let cache = AuthCache::default();
    let key = AuthKey {
        origin: "o".into(),
        scope: "s".into(),
        creds: Digest::of(b""),
    };
    cache.put(key.clone(), basic("alice", "hunter2"), BASIC_TTL);
    assert!(cache.get(&key).is_some());
    let s = format!("{:?}", client(&[]));
    assert!(
        !s.contains("hunter2") && !s.contains(&STANDARD.encode("alice:hunter2")),
        "{s}"
    );
}

#[test]
fn www_authenticate_parsing() {
    let c = parse_challenges(
        r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push""#,
    );
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].scheme, "bearer");
    assert_eq!(c[0].params["realm"], "https://auth.docker.io/token");
    assert_eq!(c[0].params["scope"], "repository:a/b:pull,push");
    let c = parse_challenges(
        r#"Basic realm="a \"q\" b", BEARER Realm=https://x/t , error=insufficient_scope"#,
    );
    assert_eq!(c.len(), 2);
    assert_eq!(
        (c[0].scheme.as_str(), c[0].params["realm"].as_str()),
        ("basic", r#"a "q" b"#)
    );
    assert_eq!(c[1].params["realm"], "https://x/t");
    assert_eq!(c[1].params["error"], "insufficient_scope");
    assert!(parse_challenges("").is_empty());
    assert_eq!(
        parse_challenges(r#"Bearer realm="unterminated"#)[0].params["realm"],
        "unterminated"
    );
}

#[test]
fn endpoint_selection() {
    let cfg = ImageConfig {
        insecure_registries: vec!["reg.local:5000".into(), "plainhost".into()],
        ..ImageConfig::default()
    };
    let c = RegistryClient::new(&cfg).unwrap();
    for (registry, want) in [
        ("docker.io", "https://registry-1.docker.io/v2"),
        ("quay.io", "https://quay.io/v2"),
        ("localhost", "http://localhost/v2"),
        ("localhost:5000", "http://localhost:5000/v2"),
        ("127.0.0.1:5000", "http://127.0.0.1:5000/v2"),
        ("[::1]:5000", "http://[::1]:5000/v2"),
        ("reg.local:5000", "http://reg.local:5000/v2"),
        ("reg.local:6000", "https://reg.local:6000/v2"),
        ("plainhost:99", "http://plainhost:99/v2"),
    ] {
        let eps = c.hosts.endpoints(registry).unwrap();
        assert_eq!(eps.last().unwrap().root.as_str(), want, "{registry}");
    }
    let mut cfg = ImageConfig::default();
    cfg.mirrors
        .insert("docker.io".into(), vec!["ftp://m".into()]);
    let e = RegistryClient::new(&cfg).unwrap_err();
    assert!(matches!(e, RegistryError::InvalidMirror { .. }), "{e}");
}

#[tokio::test]
async fn other_hosts_get_tls_and_handshake_failures_are_unreachable() {
    // 127.0.0.2 is loopback but not on the plain-HTTP list, so the client
    // speaks TLS (through the preconfigured ring provider) to a server
    // that answers in plain HTTP.
    let listener = TcpListener::bind("127.0.0.2:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let r = Reference::parse(&format!("{addr}/x")).unwrap();
    let e = client(&[])
        .fetch_manifest(&r, &Credentials::Anonymous)
        .await
        .unwrap_err();
    task.abort();
    assert!(
        matches!(&e, RegistryError::Unreachable { url, .. } if url.starts_with("https://127.0.0.2:")),
        "{e}"
    );
}

#[test]
fn request_futures_are_send() {
    fn send<T: Send>(_: T) {}
    let (c, r, d) = (client(&[]), Reference::parse("x").unwrap(), Digest::of(b""));
    let creds = Credentials::Anonymous;
    send(c.fetch_manifest(&r, &creds));
    send(c.fetch_manifest_digest(&r, &d, &creds));
    send(c.fetch_blob(&r, &d, &creds));
}

#[tokio::test]
async fn transient_failures_are_retried_when_configured() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c2 = calls.clone();
    let flaky = Server::start(move |_, _| {
        if c2.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            res(503, "busy")
        } else {
            manifest_ok()
        }
    })
    .await;
    let r = flaky.reference("a/b:t");
    let anon = Credentials::Anonymous;
    let e = client(&[]).fetch_manifest(&r, &anon).await.unwrap_err();
    assert!(
        matches!(e, RegistryError::Http { status: 503, .. }),
        "no retries by default: {e}"
    );
    let mut cfg = ImageConfig {
        hosts_dir: std::path::PathBuf::new(),
        ..ImageConfig::default()
    };
    cfg.registries.insert(
        flaky.addr.to_string(),
        crate::config::RegistryHostConfig {
            retries: 1,
            ..Default::default()
        },
    );
    calls.store(0, std::sync::atomic::Ordering::SeqCst);
    RegistryClient::new(&cfg)
        .unwrap()
        .fetch_manifest(&r, &anon)
        .await
        .unwrap();
    assert_eq!(flaky.hits("/v2/a/b/manifests/t"), 3);
}

#[tokio::test]
async fn node_credentials_are_used_only_without_kubelet_credentials() {
    let server = Server::start(|r, _| match r.header("authorization") {
        Some(h) if h == format!("Basic {}", STANDARD.encode("node:pw")) => manifest_ok(),
        _ => res(401, "").header("www-authenticate", "Basic realm=\"x\""),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.json");
    std::fs::write(
        &file,
        format!(
            r#"{{"auths":{{"{}":{{"username":"node","password":"pw"}}}}}}"#,
            server.addr
        ),
    )
    .unwrap();
    let c = RegistryClient::new(&ImageConfig {
        credentials_file: file,
        hosts_dir: std::path::PathBuf::new(),
        ..ImageConfig::default()
    })
    .unwrap();
    let r = server.reference("a/b:t");
    c.fetch_manifest(&r, &Credentials::Anonymous).await.unwrap();
    let e = c
        .fetch_manifest(&r, &basic_creds("kubelet", "other"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, RegistryError::Unauthorized { .. }),
        "kubelet's credentials win: {e}"
    );
}

#[tokio::test]
async fn a_silent_server_is_bounded_by_the_request_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let c = RegistryClient::new(&ImageConfig {
        request_timeout_secs: 1,
        ..ImageConfig::default()
    })
    .unwrap();
    let r = Reference::parse(&format!("{addr}/a/b:t")).unwrap();
    let e = c
        .fetch_manifest(&r, &Credentials::Anonymous)
        .await
        .unwrap_err();
    task.abort();
    assert!(
        e.to_string().contains("request_timeout_secs"),
        "the error names the setting: {e}"
    );
}
