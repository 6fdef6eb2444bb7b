//! OCI distribution client, pull side: manifests and blobs over HTTP(S), with
//! registry auth (Basic, Bearer token service, OAuth2 refresh tokens) and mirrors.
//!
//! Owns talking to registries only. It does not interpret manifests beyond
//! their media type, store content, or verify blob digests (the content store
//! hashes while it writes). Secrets never reach logs, errors or Debug output.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, TryStreamExt};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use tracing::{debug, warn};

use super::reference::Reference;
use crate::config::ImageConfig;
use crate::id::Digest;

/// Largest manifest or index accepted: real ones are a few KiB, and the body
/// is held in memory before it is hashed.
pub const MANIFEST_SIZE_LIMIT: u64 = 4 << 20;
const ERROR_BODY_LIMIT: u64 = 64 << 10;
const TOKEN_BODY_LIMIT: u64 = 1 << 20;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

const USER_AGENT: &str = concat!("crius/", env!("CARGO_PKG_VERSION"));
/// Token lifetime when the token service omits `expires_in` (the distribution
/// token spec's default).
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(60);
/// Renew a little early so a token does not expire between check and use.
const TOKEN_MARGIN: Duration = Duration::from_secs(5);
/// How long to remember that an endpoint takes Basic auth (saves a 401 round trip per blob).
const BASIC_TTL: Duration = Duration::from_secs(600);

/// Registry credentials from a CRI `AuthConfig`. Debug redacts the secrets.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (Docker's `identitytoken`).
    IdentityToken(String),
    /// A bearer token sent to the registry as is.
    RegistryToken(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Self::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
            Self::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
        }
    }
}

impl Credentials {
    /// Part of the auth cache key: a token obtained with one pod's pull secret
    /// must never serve a pull made with other (or no) credentials.
    fn fingerprint(&self) -> Digest {
        let s = match self {
            Self::Anonymous => "anonymous".to_owned(),
            Self::Basic { username, password } => format!("basic\0{username}\0{password}"),
            Self::IdentityToken(t) => format!("identity\0{t}"),
            Self::RegistryToken(t) => format!("registry\0{t}"),
        };
        Digest::of(s.as_bytes())
    }
}

/// Builds credentials from CRI `AuthConfig` fields. A registry token wins, then
/// an identity token (username ignored, as Docker sets it to a placeholder),
/// then username/password, then `auth` (base64 of `user:pass`).
pub fn credentials_from_auth(
    username: &str,
    password: &str,
    auth: &str,
    identity_token: &str,
    registry_token: &str,
) -> Result<Credentials, RegistryError> {
    if !registry_token.is_empty() {
        return Ok(Credentials::RegistryToken(registry_token.to_owned()));
    }
    if !identity_token.is_empty() {
        return Ok(Credentials::IdentityToken(identity_token.to_owned()));
    }
    if !username.is_empty() {
        return Ok(Credentials::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        });
    }
    if auth.is_empty() {
        return Ok(Credentials::Anonymous);
    }
    // The errors name the field, never the value: it is a password.
    let bad = |problem| RegistryError::InvalidCredentials {
        field: "auth",
        problem,
    };
    let raw = auth.trim();
    let decoded = STANDARD
        .decode(raw)
        .or_else(|_| STANDARD_NO_PAD.decode(raw))
        .map_err(|_| bad("is not valid base64"))?;
    let text = String::from_utf8(decoded).map_err(|_| bad("does not decode to text"))?;
    match text.split_once(':') {
        Some((u, p)) if !u.is_empty() => Ok(Credentials::Basic {
            username: u.to_owned(),
            password: p.to_owned(),
        }),
        _ => Err(bad("does not decode to \"username:password\"")),
    }
}

/// What went wrong talking to a registry. `registry` names the registry and,
/// when a mirror answered, the mirror.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot set up the registry HTTP client: {cause}")]
    Client { cause: String },
    #[error(
        "mirror endpoint {endpoint:?} for registry {registry} is not an http:// or https:// URL"
    )]
    InvalidMirror { registry: String, endpoint: String },
    #[error("invalid registry credentials: AuthConfig.{field} {problem}")]
    InvalidCredentials {
        field: &'static str,
        problem: &'static str,
    },
    #[error("registry {registry} is unreachable at {url}: {cause}")]
    Unreachable {
        registry: String,
        url: String,
        cause: String,
    },
    #[error("repository {repository} not found on registry {registry}: {message}")]
    NameUnknown {
        registry: String,
        repository: String,
        message: String,
    },
    #[error(
        "manifest {reference} not found in repository {repository} on registry {registry}: {message}"
    )]
    ManifestUnknown {
        registry: String,
        repository: String,
        reference: String,
        message: String,
    },
    #[error("blob {digest} not found in repository {repository} on registry {registry}: {message}")]
    BlobUnknown {
        registry: String,
        repository: String,
        digest: Digest,
        message: String,
    },
    #[error("registry {registry} refused access to repository {repository} ({message}); {hint}")]
    Unauthorized {
        registry: String,
        repository: String,
        message: String,
        hint: &'static str,
    },
    #[error("registry {registry} denied access to repository {repository}: {message}")]
    Denied {
        registry: String,
        repository: String,
        message: String,
    },
    #[error(
        "{object} in repository {repository} on registry {registry} exceeds the {limit}-byte limit"
    )]
    TooLarge {
        registry: String,
        repository: String,
        object: String,
        limit: u64,
    },
    #[error(
        "registry {registry} answered HTTP {status} for {object} in repository {repository}: {message}"
    )]
    Http {
        registry: String,
        repository: String,
        object: String,
        status: u16,
        message: String,
    },
    #[error(
        "registry {registry} sent an invalid response for {object} in repository {repository}: {reason}"
    )]
    InvalidResponse {
        registry: String,
        repository: String,
        object: String,
        reason: String,
    },
    #[error(
        "registry {registry} served content with digest {actual} for manifest {expected} in \
         repository {repository}; refusing it"
    )]
    DigestMismatch {
        registry: String,
        repository: String,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "download of {object} from repository {repository} on registry {registry} failed: {cause}"
    )]
    Transfer {
        registry: String,
        repository: String,
        object: String,
        cause: String,
    },
}

/// A manifest or index as the registry sent it.
#[derive(Debug)]
pub struct FetchedManifest {
    pub bytes: Bytes,
    pub media_type: String,
    /// sha256 of `bytes`: computed here, never taken from Docker-Content-Digest.
    pub digest: Digest,
}

/// A blob body being streamed. The caller verifies the digest.
pub struct BlobResponse {
    /// Content-Length, when the registry sent one.
    pub size: Option<u64>,
    pub stream: Pin<Box<dyn Stream<Item = Result<Bytes, RegistryError>> + Send>>,
}

impl fmt::Debug for BlobResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobResponse")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// A registry client. Cheap to clone; clones share connections and tokens.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    insecure: Vec<String>,
    mirrors: HashMap<String, Vec<Url>>,
    auth: Arc<AuthCache>,
}

impl RegistryClient {
    pub fn new(cfg: &ImageConfig) -> Result<Self, RegistryError> {
        let timeout = Duration::from_secs(cfg.request_timeout_secs.max(1));
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config()?)
            .user_agent(USER_AGENT)
            // Connect and per-read only: an overall timeout would cut off
            // multi-GiB layers on slow links.
            .connect_timeout(timeout)
            .read_timeout(timeout)
            // reqwest drops Authorization (and cookies) whenever a redirect
            // changes scheme, host or port, so registry credentials never reach
            // the blob storage that registries redirect to.
            .redirect(reqwest::redirect::Policy::limited(10))
            .build()
            .map_err(|e| RegistryError::Client {
                cause: error_chain(&e),
            })?;
        let mut mirrors = HashMap::new();
        for (registry, endpoints) in &cfg.mirrors {
            let mut urls = Vec::new();
            for ep in endpoints {
                match Url::parse(ep) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => urls.push(u),
                    _ => {
                        return Err(RegistryError::InvalidMirror {
                            registry: registry.clone(),
                            endpoint: ep.clone(),
                        });
                    }
                }
            }
            mirrors.insert(registry.clone(), urls);
        }
        Ok(Self {
            http,
            insecure: cfg.insecure_registries.clone(),
            mirrors,
            auth: Arc::default(),
        })
    }

    /// GETs the manifest named by `r`: by digest if it has one, else by tag.
    pub async fn fetch_manifest(
        &self,
        r: &Reference,
        creds: &Credentials,
    ) -> Result<FetchedManifest, RegistryError> {
        match r.digest() {
            Some(d) => self.fetch_manifest_digest(r, d, creds).await,
            // A Reference always has a tag or a digest.
            None => {
                let tag = r.tag().unwrap_or("latest");
                self.over_endpoints(r.registry(), move |ep| {
                    self.manifest_from(ep, r, tag, None, creds)
                })
                .await
            }
        }
    }

    /// GETs the manifest `digest` in `r`'s repository and checks the body hashes to it.
    pub async fn fetch_manifest_digest(
        &self,
        r: &Reference,
        digest: &Digest,
        creds: &Credentials,
    ) -> Result<FetchedManifest, RegistryError> {
        self.over_endpoints(r.registry(), move |ep| {
            self.manifest_from(ep, r, digest.as_str(), Some(digest), creds)
        })
        .await
    }

    /// GETs blob `digest` in `r`'s repository as a stream.
    pub async fn fetch_blob(
        &self,
        r: &Reference,
        digest: &Digest,
        creds: &Credentials,
    ) -> Result<BlobResponse, RegistryError> {
        self.over_endpoints(r.registry(), move |ep| self.blob_from(ep, r, digest, creds))
            .await
    }

    /// Tries each mirror, then the registry. A mirror is an optimisation and
    /// the registry the authority, so any mirror failure (unreachable, 404,
    /// 5xx, but also auth or bad content) falls through to the next endpoint.
    async fn over_endpoints<T, F, Fut>(
        &self,
        registry: &str,
        mut attempt: F,
    ) -> Result<T, RegistryError>
    where
        F: FnMut(Endpoint) -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let mut mirror_errors = Vec::new();
        for base in self.mirrors.get(registry).into_iter().flatten() {
            let ep = Endpoint {
                base: base.clone(),
                mirror: true,
            };
            match attempt(ep).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    debug!(mirror = %base, error = %e, "mirror failed, trying the next endpoint");
                    mirror_errors.push(e);
                }
            }
        }
        match attempt(self.upstream(registry)?).await {
            Ok(v) => Ok(v),
            // On an air-gapped node the registry is unreachable by design and
            // the mirror's answer is the one worth reporting.
            Err(e @ RegistryError::Unreachable { .. }) => Err(mirror_errors
                .into_iter()
                .find(|m| !matches!(m, RegistryError::Unreachable { .. }))
                .unwrap_or(e)),
            Err(e) => Err(e),
        }
    }

    fn upstream(&self, registry: &str) -> Result<Endpoint, RegistryError> {
        let base = if registry == "docker.io" {
            "https://registry-1.docker.io".to_owned()
        } else {
            let host = match registry.strip_prefix('[') {
                Some(_) => registry.split_inclusive(']').next().unwrap_or(registry),
                None => registry.split_once(':').map_or(registry, |(h, _)| h),
            };
            // Loopback is plain HTTP as in Docker and containerd: a local
            // registry has no certificate and traffic never leaves the host.
            let plain = matches!(host, "localhost" | "127.0.0.1" | "[::1]")
                || self.insecure.iter().any(|i| i == registry || i == host);
            format!("{}://{registry}", if plain { "http" } else { "https" })
        };
        match Url::parse(&base) {
            Ok(base) => Ok(Endpoint {
                base,
                mirror: false,
            }),
            // Reference validated the host, so this is not expected.
            Err(e) => Err(RegistryError::Unreachable {
                registry: registry.to_owned(),
                url: base,
                cause: e.to_string(),
            }),
        }
    }

    async fn manifest_from(
        &self,
        ep: Endpoint,
        r: &Reference,
        reference: &str,
        expect: Option<&Digest>,
        creds: &Credentials,
    ) -> Result<FetchedManifest, RegistryError> {
        let ctx = Ctx::new(r, &ep, Object::Manifest(reference.to_owned()));
        let tail = format!("manifests/{reference}");
        let resp = self
            .get(&ep, &ctx, &tail, Some(MANIFEST_ACCEPT), creds)
            .await?;
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = read_limited(resp, MANIFEST_SIZE_LIMIT)
            .await
            .map_err(|e| ctx.read_error(e, MANIFEST_SIZE_LIMIT))?;
        let digest = Digest::of(&bytes);
        if let Some(expected) = expect
            && *expected != digest
        {
            return Err(RegistryError::DigestMismatch {
                registry: ctx.registry,
                repository: ctx.repository,
                expected: expected.clone(),
                actual: digest,
            });
        }
        let media_type = manifest_media_type(content_type.as_deref(), &bytes).ok_or_else(|| {
            ctx.invalid("no manifest media type in Content-Type or body, and the body is not a JSON manifest or index")
        })?;
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    async fn blob_from(
        &self,
        ep: Endpoint,
        r: &Reference,
        digest: &Digest,
        creds: &Credentials,
    ) -> Result<BlobResponse, RegistryError> {
        let ctx = Ctx::new(r, &ep, Object::Blob(digest.clone()));
        let resp = self
            .get(&ep, &ctx, &format!("blobs/{digest}"), None, creds)
            .await?;
        let size = resp.content_length();
        let stream = resp.bytes_stream().map_err(move |e| ctx.transfer(e));
        Ok(BlobResponse {
            size,
            stream: Box::pin(stream),
        })
    }

    /// One GET against one endpoint, answering a 401 challenge once.
    async fn get(
        &self,
        ep: &Endpoint,
        ctx: &Ctx,
        tail: &str,
        accept: Option<&str>,
        creds: &Credentials,
    ) -> Result<reqwest::Response, RegistryError> {
        let url_str = format!(
            "{}/v2/{}/{tail}",
            ep.base.as_str().trim_end_matches('/'),
            ctx.repository
        );
        let url = Url::parse(&url_str).map_err(|e| RegistryError::Unreachable {
            registry: ctx.registry.clone(),
            url: url_str.clone(),
            cause: e.to_string(),
        })?;
        let scope = format!("repository:{}:pull", ctx.repository);
        let key = AuthKey {
            origin: url.origin().ascii_serialization(),
            scope: scope.clone(),
            creds: creds.fingerprint(),
        };
        let mut auth = match creds {
            Credentials::RegistryToken(t) => Some(bearer(t).ok_or_else(|| {
                ctx.unauthorized(
                    creds,
                    "the registry token is not a valid HTTP header value".into(),
                )
            })?),
            _ => self.auth.get(&key),
        };
        let mut challenged = false;
        loop {
            let mut req = self.http.get(url.clone());
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            if let Some(h) = &auth {
                req = req.header(AUTHORIZATION, h.clone());
            }
            let resp = req.send().await.map_err(|e| ctx.unreachable(&url, e))?;
            let status = resp.status();
            // Query strings are left out: redirect targets carry signatures.
            debug!(url = %url, status = status.as_u16(), served_by = resp.url().host_str().unwrap_or(""), "registry GET");
            let from_registry = resp.url().origin() == url.origin();
            if status == StatusCode::UNAUTHORIZED
                && from_registry
                && !challenged
                && !matches!(creds, Credentials::RegistryToken(_))
            {
                challenged = true;
                self.auth.forget(&key);
                let (header, ttl) = self.authenticate(&resp, ctx, &scope, creds).await?;
                self.auth.put(key.clone(), header.clone(), ttl);
                auth = Some(header);
                continue;
            }
            if status.is_success() {
                return Ok(resp);
            }
            return Err(status_error(resp, ctx, creds).await);
        }
    }

    /// Answers a 401: the Authorization header to retry with, and how long it lasts.
    async fn authenticate(
        &self,
        resp: &reqwest::Response,
        ctx: &Ctx,
        scope: &str,
        creds: &Credentials,
    ) -> Result<(HeaderValue, Duration), RegistryError> {
        let challenges: Vec<Challenge> = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .collect();
        if let Some(c) = challenges.iter().find(|c| c.scheme == "bearer") {
            return self.fetch_token(c, resp.url(), ctx, scope, creds).await;
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            return match creds {
                Credentials::Basic { username, password } => {
                    Ok((basic(username, password), BASIC_TTL))
                }
                _ => Err(ctx.unauthorized(
                    creds,
                    "the registry requires a username and password".into(),
                )),
            };
        }
        Err(ctx.unauthorized(creds, "HTTP 401 without a Basic or Bearer challenge".into()))
    }

    /// Gets a bearer token from the challenge's realm (distribution token
    /// spec; OAuth2 refresh-token grant for identity tokens).
    async fn fetch_token(
        &self,
        challenge: &Challenge,
        registry_url: &Url,
        ctx: &Ctx,
        scope: &str,
        creds: &Credentials,
    ) -> Result<(HeaderValue, Duration), RegistryError> {
        let realm = challenge
            .params
            .get("realm")
            .and_then(|r| registry_url.join(r).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| ctx.invalid("the Bearer challenge has no usable realm URL"))?;
        let mut tctx = ctx.clone();
        tctx.object = Object::Token(format!(
            "{}{}",
            realm.origin().ascii_serialization(),
            realm.path()
        ));
        // Our own scope always; the challenge's too if it differs.
        let mut scopes = vec![scope.to_owned()];
        if let Some(s) = challenge.params.get("scope").filter(|s| *s != scope) {
            scopes.push(s.clone());
        }
        let service = challenge.params.get("service").map(String::as_str);
        let req = if let Credentials::IdentityToken(refresh) = creds {
            let joined = scopes.join(" ");
            let mut pairs = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
                ("client_id", "crius"),
                ("scope", joined.as_str()),
            ];
            pairs.extend(service.map(|s| ("service", s)));
            // url's form encoder, reached through a throwaway URL (reqwest's
            // `form` feature is off).
            let body = Url::parse_with_params("http://form.invalid/", &pairs)
                .ok()
                .and_then(|u| u.query().map(str::to_owned))
                .unwrap_or_default();
            self.http
                .post(realm.clone())
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body)
        } else {
            let mut u = realm.clone();
            {
                let mut q = u.query_pairs_mut();
                if let Some(s) = service {
                    q.append_pair("service", s);
                }
                for s in &scopes {
                    q.append_pair("scope", s);
                }
                if let Credentials::Basic { username, .. } = creds {
                    q.append_pair("account", username);
                }
            }
            let req = self.http.get(u);
            match creds {
                Credentials::Basic { username, password } => {
                    req.header(AUTHORIZATION, basic(username, password))
                }
                _ => req,
            }
        };
        let resp = req.send().await.map_err(|e| tctx.unreachable(&realm, e))?;
        debug!(realm = %realm, status = resp.status().as_u16(), "registry token request");
        if !resp.status().is_success() {
            return Err(status_error(resp, &tctx, creds).await);
        }
        let body = read_limited(resp, TOKEN_BODY_LIMIT)
            .await
            .map_err(|e| tctx.read_error(e, TOKEN_BODY_LIMIT))?;
        #[derive(Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            // Some token services send a float.
            expires_in: Option<f64>,
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| tctx.invalid(&format!("token response is not JSON: {e}")))?;
        let token = [parsed.token, parsed.access_token]
            .into_iter()
            .flatten()
            .find(|t| !t.is_empty())
            .ok_or_else(|| tctx.invalid("token response has neither token nor access_token"))?;
        let header =
            bearer(&token).ok_or_else(|| tctx.invalid("token is not a valid HTTP header value"))?;
        let ttl = parsed
            .expires_in
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_TOKEN_TTL)
            .saturating_sub(TOKEN_MARGIN);
        Ok((header, ttl))
    }
}

/// TLS with the ring provider passed explicitly, so no process-wide default
/// provider has to be installed, and the system roots (as reqwest would use).
fn tls_config() -> Result<rustls::ClientConfig, RegistryError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| RegistryError::Client {
            cause: e.to_string(),
        })?;
    let mut tls = match rustls_platform_verifier::Verifier::new(provider) {
        Ok(v) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(v))
            .with_no_client_auth(),
        Err(e) => {
            // Still start: a node pulling only from plain-HTTP registries works,
            // and HTTPS pulls fail with an unknown-issuer error.
            warn!(error = %e, "no system CA certificates: HTTPS registries will fail verification; install ca-certificates");
            builder
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        }
    };
    // reqwest is built without http2.
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

fn bearer(token: &str) -> Option<HeaderValue> {
    let mut h = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    h.set_sensitive(true);
    Some(h)
}

fn basic(username: &str, password: &str) -> HeaderValue {
    let encoded = STANDARD.encode(format!("{username}:{password}"));
    // base64 output is always a valid header value.
    let mut h =
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap_or(HeaderValue::from_static(""));
    h.set_sensitive(true);
    h
}

#[derive(Debug, Clone)]
struct Endpoint {
    base: Url,
    mirror: bool,
}

#[derive(Debug, Clone)]
enum Object {
    Manifest(String),
    Blob(Digest),
    Token(String),
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Manifest(r) => write!(f, "manifest {r}"),
            Self::Blob(d) => write!(f, "blob {d}"),
            Self::Token(realm) => write!(f, "auth token from {realm}"),
        }
    }
}

/// What a request acts on, for error messages.
#[derive(Debug, Clone)]
struct Ctx {
    registry: String,
    repository: String,
    object: Object,
}

impl Ctx {
    fn new(r: &Reference, ep: &Endpoint, object: Object) -> Self {
        let registry = if ep.mirror {
            format!("{} (mirror {})", r.registry(), ep.base)
        } else {
            r.registry().to_owned()
        };
        Self {
            registry,
            repository: r.repository().to_owned(),
            object,
        }
    }

    fn unreachable(&self, url: &Url, e: reqwest::Error) -> RegistryError {
        let mut url = url.clone();
        url.set_query(None);
        RegistryError::Unreachable {
            registry: self.registry.clone(),
            url: url.to_string(),
            cause: error_chain(&e.without_url()),
        }
    }

    fn transfer(&self, e: reqwest::Error) -> RegistryError {
        RegistryError::Transfer {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            object: self.object.to_string(),
            cause: error_chain(&e.without_url()),
        }
    }

    fn read_error(&self, e: ReadError, limit: u64) -> RegistryError {
        match e {
            ReadError::TooLarge => RegistryError::TooLarge {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                object: self.object.to_string(),
                limit,
            },
            ReadError::Transport(e) => self.transfer(e),
        }
    }

    fn invalid(&self, reason: &str) -> RegistryError {
        RegistryError::InvalidResponse {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            object: self.object.to_string(),
            reason: reason.to_owned(),
        }
    }

    fn unauthorized(&self, creds: &Credentials, message: String) -> RegistryError {
        let hint = match creds {
            Credentials::Anonymous => {
                "the repository does not exist or needs credentials, and no pull secret was given"
            }
            _ => "the repository does not exist or the pull secret's credentials are wrong",
        };
        RegistryError::Unauthorized {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            message,
            hint,
        }
    }
}

/// Maps a non-2xx response to an error, using the distribution error body
/// (`{"errors":[{"code":…,"message":…}]}`) to tell what was not found.
async fn status_error(resp: reqwest::Response, ctx: &Ctx, creds: &Credentials) -> RegistryError {
    let status = resp.status();
    let body = read_prefix(resp, ERROR_BODY_LIMIT).await;
    #[derive(Deserialize)]
    struct Body {
        errors: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let entries = serde_json::from_slice::<Body>(&body)
        .map(|b| b.errors)
        .unwrap_or_default();
    let message = if entries.is_empty() {
        let text: String = String::from_utf8_lossy(&body)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        match text.chars().count() {
            0 => status.canonical_reason().unwrap_or("no message").to_owned(),
            n if n > 200 => format!("{}…", text.chars().take(200).collect::<String>()),
            _ => text,
        }
    } else {
        let parts: Vec<String> = entries
            .iter()
            .map(|e| match e.message.as_str() {
                "" => e.code.clone(),
                m => format!("{}: {m}", e.code),
            })
            .collect();
        parts.join("; ")
    };
    let has = |code: &str| entries.iter().any(|e| e.code == code);
    let (registry, repository) = (ctx.registry.clone(), ctx.repository.clone());
    match (status, &ctx.object) {
        (StatusCode::UNAUTHORIZED, _) => ctx.unauthorized(creds, message),
        (StatusCode::FORBIDDEN, _) => RegistryError::Denied {
            registry,
            repository,
            message,
        },
        (StatusCode::NOT_FOUND, Object::Manifest(_) | Object::Blob(_)) if has("NAME_UNKNOWN") => {
            RegistryError::NameUnknown {
                registry,
                repository,
                message,
            }
        }
        (StatusCode::NOT_FOUND, Object::Manifest(reference)) => RegistryError::ManifestUnknown {
            registry,
            repository,
            reference: reference.clone(),
            message,
        },
        (StatusCode::NOT_FOUND, Object::Blob(digest)) => RegistryError::BlobUnknown {
            registry,
            repository,
            digest: digest.clone(),
            message,
        },
        _ => RegistryError::Http {
            registry,
            repository,
            object: ctx.object.to_string(),
            status: status.as_u16(),
            message,
        },
    }
}

#[derive(Debug)]
enum ReadError {
    TooLarge,
    Transport(reqwest::Error),
}

/// Reads a whole body, refusing more than `limit` bytes whether or not the
/// server declared a Content-Length.
async fn read_limited(mut resp: reqwest::Response, limit: u64) -> Result<Bytes, ReadError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(ReadError::TooLarge);
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Transport)? {
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(ReadError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Up to `limit` bytes of an error body; a broken body just ends the message.
async fn read_prefix(mut resp: reqwest::Response, limit: u64) -> Bytes {
    let mut buf = BytesMut::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = (limit as usize).saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() as u64 >= limit {
            break;
        }
    }
    buf.freeze()
}

/// The manifest's media type: a vendor Content-Type, else the body's
/// `mediaType`, else inferred from its shape (OCI makes `mediaType` optional
/// and some registries serve `application/json`).
fn manifest_media_type(content_type: Option<&str>, body: &[u8]) -> Option<String> {
    let ct = content_type.map(|c| c.split(';').next().unwrap_or("").trim());
    if let Some(ct) = ct.filter(|c| c.starts_with("application/vnd.")) {
        return Some(ct.to_owned());
    }
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(body).ok()?;
    match p.media_type.filter(|m| !m.is_empty()) {
        Some(m) => Some(m),
        None if p.manifests.is_some() => Some(OCI_INDEX.to_owned()),
        None if p.config.is_some() => Some(OCI_MANIFEST.to_owned()),
        None => None,
    }
}

/// An error and its causes, so "connection refused" or "UnknownIssuer" reach the CRI client.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[derive(Debug, PartialEq)]
struct Challenge {
    /// Lowercase: `basic`, `bearer`.
    scheme: String,
    /// Lowercase names.
    params: HashMap<String, String>,
}

/// Parses a WWW-Authenticate value (RFC 7235): one or more challenges, each a
/// scheme and comma-separated `name=value` or `name="quoted"` parameters.
/// Quoted values may hold commas (`scope="repository:a:pull,push"`).
fn parse_challenges(header: &str) -> Vec<Challenge> {
    let b = header.as_bytes();
    let tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    let skip = |i: &mut usize, set: &[u8]| {
        while *i < b.len() && set.contains(&b[*i]) {
            *i += 1;
        }
    };
    // Stops only at ASCII bytes, so slices stay on char boundaries.
    let take = |i: &mut usize, f: &dyn Fn(u8) -> bool| {
        let start = *i;
        while *i < b.len() && f(b[*i]) {
            *i += 1;
        }
        &header[start..*i]
    };
    let mut i = 0;
    let mut out = Vec::new();
    loop {
        skip(&mut i, b", \t");
        let scheme = take(&mut i, &tchar);
        if scheme.is_empty() {
            break;
        }
        let mut params = HashMap::new();
        loop {
            skip(&mut i, b", \t");
            let start = i;
            let name = take(&mut i, &tchar);
            skip(&mut i, b" \t");
            if name.is_empty() || b.get(i) != Some(&b'=') {
                // Not a parameter: the next challenge's scheme (or the end).
                i = start;
                break;
            }
            i += 1;
            skip(&mut i, b" \t");
            let value = if b.get(i) == Some(&b'"') {
                i += 1;
                let mut v = Vec::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    v.push(b[i]);
                    i += 1;
                }
                if i < b.len() {
                    i += 1;
                }
                String::from_utf8_lossy(&v).into_owned()
            } else {
                take(&mut i, &|c| c != b',' && !c.is_ascii_whitespace()).to_owned()
            };
            params.insert(name.to_ascii_lowercase(), value);
        }
        out.push(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        });
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AuthKey {
    origin: String,
    scope: String,
    creds: Digest,
}

/// Authorization headers per (endpoint, scope, credentials) until they expire.
/// A std Mutex: held only for a map lookup, never across an await.
#[derive(Default)]
struct AuthCache(Mutex<HashMap<AuthKey, (HeaderValue, Instant)>>);

impl fmt::Debug for AuthCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the tokens themselves.
        let n = self.0.lock().map_or(0, |m| m.len());
        f.debug_struct("AuthCache").field("entries", &n).finish()
    }
}

impl AuthCache {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<AuthKey, (HeaderValue, Instant)>> {
        // A panic elsewhere while holding the lock leaves a valid map.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, key: &AuthKey) -> Option<HeaderValue> {
        let map = self.map();
        map.get(key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(h, _)| h.clone())
    }

    fn put(&self, key: AuthKey, header: HeaderValue, ttl: Duration) {
        let now = Instant::now();
        let mut map = self.map();
        map.retain(|_, (_, until)| *until > now);
        map.insert(key, (header, now + ttl));
    }

    fn forget(&self, key: &AuthKey) {
        self.map().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use futures_util::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

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
            Server::start(|_, _| res(200, MANIFEST).header("content-type", "application/json"))
                .await;
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
            ("docker.io", "https://registry-1.docker.io/"),
            ("quay.io", "https://quay.io/"),
            ("localhost", "http://localhost/"),
            ("localhost:5000", "http://localhost:5000/"),
            ("127.0.0.1:5000", "http://127.0.0.1:5000/"),
            ("[::1]:5000", "http://[::1]:5000/"),
            ("reg.local:5000", "http://reg.local:5000/"),
            ("reg.local:6000", "https://reg.local:6000/"),
            ("plainhost:99", "http://plainhost:99/"),
        ] {
            assert_eq!(
                c.upstream(registry).unwrap().base.as_str(),
                want,
                "{registry}"
            );
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
}
