//! OCI distribution client, pull side: manifests and blobs over HTTP(S), with
//! registry auth (Basic, Bearer token service, OAuth2 refresh tokens) and mirrors.
//!
//! Owns talking to registries only. It does not interpret manifests beyond
//! their media type, store content, or verify blob digests (the content store
//! hashes while it writes). Secrets never reach logs, errors or Debug output.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, TryStreamExt};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use tracing::{debug, warn};

mod auth;
mod error;

use auth::*;
pub use auth::{Credentials, credentials_from_auth};
pub use error::RegistryError;

use super::reference::Reference;
use crate::config::ImageConfig;
use crate::id::Digest;

/// Largest manifest or index accepted: real ones are a few KiB, and the body
/// is held in memory before it is hashed.
pub const MANIFEST_SIZE_LIMIT: u64 = 4 << 20;
const ERROR_BODY_LIMIT: u64 = 64 << 10;
const TOKEN_BODY_LIMIT: u64 = 1 << 20;

pub use super::manifest::{
    DOCKER_LIST as DOCKER_MANIFEST_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};
// The same four types as one Accept header (a const can't be built from
// the constants above without a macro).
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
        let resp = match self
            .get(&ep, &ctx, &tail, Some(MANIFEST_ACCEPT), creds)
            .await
        {
            // Registries (distribution among them) answer MANIFEST_UNKNOWN for
            // an unknown repository too; users need to know which name is
            // wrong, and the tag list tells.
            Err(e @ RegistryError::ManifestUnknown { .. }) if expect.is_none() => {
                let probe = Ctx::new(r, &ep, Object::Tags);
                return Err(
                    match self.get(&ep, &probe, "tags/list?n=1", None, creds).await {
                        Err(name @ RegistryError::NameUnknown { .. }) => name,
                        _ => e,
                    },
                );
            }
            other => other?,
        };
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
    /// The tag list, asked only to tell an unknown repository from an unknown tag.
    Tags,
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Manifest(r) => write!(f, "manifest {r}"),
            Self::Blob(d) => write!(f, "blob {d}"),
            Self::Token(realm) => write!(f, "auth token from {realm}"),
            Self::Tags => write!(f, "tag list"),
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
        (StatusCode::NOT_FOUND, Object::Manifest(_) | Object::Blob(_) | Object::Tags)
            if has("NAME_UNKNOWN") =>
        {
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

#[cfg(test)]
mod tests;
