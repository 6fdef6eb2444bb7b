//! OCI distribution client, pull side: manifests and blobs over HTTP(S), with
//! registry auth (Basic, Bearer token service, OAuth2 refresh tokens), mirrors
//! with capabilities, per-endpoint TLS (CAs, client certificates) and node
//! credentials.
//!
//! Owns talking to registries only. It does not interpret manifests beyond
//! their media type, store content, or verify blob digests (the content store
//! hashes while it writes). Secrets never reach logs, errors or Debug output.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use tracing::debug;

mod auth;
mod error;
mod hosts;
mod node_auth;
mod response;
mod tls;

use auth::*;
pub use auth::{Credentials, credentials_from_auth};
pub use error::RegistryError;
use hosts::{EndpointSpec, Hosts, Need, Stamp};
use node_auth::NodeAuth;
use response::*;
use tls::TlsSettings;

use super::reference::Reference;
use crate::config::ImageConfig;
use crate::id::Digest;

/// Largest manifest or index accepted: real ones are a few KiB, and the body
/// is held in memory before it is hashed.
pub const MANIFEST_SIZE_LIMIT: u64 = 4 << 20;
pub(super) const ERROR_BODY_LIMIT: u64 = 64 << 10;
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
    hosts: Arc<Hosts>,
    node_auth: Arc<NodeAuth>,
    /// One HTTP client per distinct TLS set-up and timeout; the files'
    /// stamps are part of the key so a renewed CA or certificate is read.
    clients: Arc<Mutex<HashMap<ClientKey, reqwest::Client>>>,
    /// No body bytes for this long: the transfer fails.
    stall: Duration,
    auth: Arc<AuthCache>,
}

type ClientKey = (TlsSettings, Duration, Vec<Stamp>);

impl RegistryClient {
    pub fn new(cfg: &ImageConfig) -> Result<Self, RegistryError> {
        let me = Self {
            hosts: Arc::new(Hosts::new(cfg)?),
            node_auth: Arc::new(NodeAuth::new(&cfg.credentials_file)),
            clients: Arc::default(),
            stall: Duration::from_secs(cfg.pull_progress_timeout_secs.max(1)),
            auth: Arc::default(),
        };
        // Fail at start-up, not at the first pull, when even the default
        // TLS set-up cannot be built.
        me.http(
            "(default)",
            &TlsSettings::default(),
            Duration::from_secs(cfg.request_timeout_secs.max(1)),
        )?;
        Ok(me)
    }

    /// The HTTP client for endpoints with these TLS settings and timeout.
    fn http(
        &self,
        registry: &str,
        tls: &TlsSettings,
        timeout: Duration,
    ) -> Result<reqwest::Client, RegistryError> {
        let files = tls
            .ca_files
            .iter()
            .chain(tls.client.iter().flat_map(|(c, k)| [c, k]));
        let key = (tls.clone(), timeout, files.map(|f| Stamp::of(f)).collect());
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls::client_config(tls, registry)?)
            .user_agent(USER_AGENT)
            // Connect only: waiting for an answer is bounded per request
            // (`send` below) and bodies by the progress timeout, so a slow
            // multi-GiB layer that keeps moving is never cut off.
            .connect_timeout(timeout)
            // reqwest drops Authorization (and cookies) whenever a redirect
            // changes scheme, host or port, so registry credentials never reach
            // the blob storage that registries redirect to.
            .redirect(reqwest::redirect::Policy::limited(10))
            .build()
            .map_err(|e| RegistryError::Client {
                cause: error_chain(&e),
            })?;
        // Settings that changed leave old clients behind; a handful at most.
        clients.retain(|(t, d, _), _| !(t == &key.0 && *d == key.1));
        clients.insert(key, http.clone());
        Ok(http)
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
                self.over_endpoints(r.registry(), Need::Resolve, creds, move |ep| {
                    self.manifest_from(ep, r, tag, None)
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
        self.over_endpoints(r.registry(), Need::Pull, creds, move |ep| {
            self.manifest_from(ep, r, digest.as_str(), Some(digest))
        })
        .await
    }

    /// GETs blob `digest` in `r`'s repository as a stream. The stream fails
    /// when no bytes arrive for `image.pull_progress_timeout_secs`.
    pub async fn fetch_blob(
        &self,
        r: &Reference,
        digest: &Digest,
        creds: &Credentials,
    ) -> Result<BlobResponse, RegistryError> {
        self.over_endpoints(r.registry(), Need::Pull, creds, move |ep| {
            self.blob_from(ep, r, digest)
        })
        .await
    }

    /// The endpoint to try: its HTTP client, and the credentials it gets.
    /// Kubelet's credentials win; without them the node credentials file
    /// is asked for the mirror's own host, or for the registry.
    fn endpoint(
        &self,
        registry: &str,
        spec: &EndpointSpec,
        creds: &Credentials,
    ) -> Result<Endpoint, RegistryError> {
        let host = spec.host_port();
        let creds = match creds {
            Credentials::Anonymous => {
                let by_name = if spec.mirror {
                    None
                } else {
                    self.node_auth.lookup(registry)?
                };
                match by_name {
                    Some(c) => c,
                    None => self
                        .node_auth
                        .lookup(&host)?
                        .unwrap_or(Credentials::Anonymous),
                }
            }
            given => given.clone(),
        };
        Ok(Endpoint {
            root: spec.root.clone(),
            mirror: spec.mirror,
            http: self.http(registry, &spec.tls, spec.timeout)?,
            timeout: spec.timeout,
            creds,
        })
    }

    /// Tries each mirror able to do `need`, then the registry. A mirror is
    /// an optimisation and the registry the authority, so any mirror failure
    /// (unreachable, 404, 5xx, but also auth, TLS or bad content) falls
    /// through to the next endpoint. Connection errors, 429 and 5xx are
    /// retried on the same endpoint `retries` times first.
    async fn over_endpoints<T, F, Fut>(
        &self,
        registry: &str,
        need: Need,
        creds: &Credentials,
        mut attempt: F,
    ) -> Result<T, RegistryError>
    where
        F: FnMut(Endpoint) -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let specs = self.hosts.endpoints(registry)?;
        let mut mirror_errors = Vec::new();
        let mut last = None;
        for spec in specs.iter().filter(|s| s.can(need)) {
            let mut result = match self.endpoint(registry, spec, creds) {
                Ok(ep) => attempt(ep).await,
                Err(e) => Err(e),
            };
            let mut tries = 0;
            while let Err(e) = &result
                && tries < spec.retries
                && retryable(e)
            {
                tries += 1;
                let pause = Duration::from_millis(250 << tries.min(4));
                debug!(endpoint = %spec.root, error = %e, attempt = tries, "retrying registry request");
                tokio::time::sleep(pause).await;
                result = match self.endpoint(registry, spec, creds) {
                    Ok(ep) => attempt(ep).await,
                    Err(e) => Err(e),
                };
            }
            match result {
                Ok(v) => return Ok(v),
                Err(e) if spec.mirror => {
                    debug!(mirror = %spec.root, error = %e, "mirror failed, trying the next endpoint");
                    mirror_errors.push(e);
                }
                Err(e) => last = Some(e),
            }
        }
        match last {
            // On an air-gapped node the registry is unreachable by design and
            // the mirror's answer is the one worth reporting.
            Some(e @ RegistryError::Unreachable { .. }) => Err(mirror_errors
                .into_iter()
                .find(|m| !matches!(m, RegistryError::Unreachable { .. }))
                .unwrap_or(e)),
            Some(e) => Err(e),
            // The upstream can do everything, so it was tried.
            None => Err(mirror_errors.pop().unwrap_or(RegistryError::Client {
                cause: format!("no endpoint configured for registry {registry}"),
            })),
        }
    }

    async fn manifest_from(
        &self,
        ep: Endpoint,
        r: &Reference,
        reference: &str,
        expect: Option<&Digest>,
    ) -> Result<FetchedManifest, RegistryError> {
        let ctx = Ctx::new(r, &ep, Object::Manifest(reference.to_owned()));
        let tail = format!("manifests/{reference}");
        let resp = match self.get(&ep, &ctx, &tail, Some(MANIFEST_ACCEPT)).await {
            // Registries (distribution among them) answer MANIFEST_UNKNOWN for
            // an unknown repository too; users need to know which name is
            // wrong, and the tag list tells.
            Err(e @ RegistryError::ManifestUnknown { .. }) if expect.is_none() => {
                let probe = Ctx::new(r, &ep, Object::Tags);
                return Err(match self.get(&ep, &probe, "tags/list?n=1", None).await {
                    Err(name @ RegistryError::NameUnknown { .. }) => name,
                    _ => e,
                });
            }
            other => other?,
        };
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = read_limited(resp, MANIFEST_SIZE_LIMIT, self.stall)
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
    ) -> Result<BlobResponse, RegistryError> {
        let ctx = Ctx::new(r, &ep, Object::Blob(digest.clone()));
        let resp = self
            .get(&ep, &ctx, &format!("blobs/{digest}"), None)
            .await?;
        let size = resp.content_length();
        let stall = self.stall;
        // Each chunk must come within `stall`; after an error the stream ends.
        let stream = futures_util::stream::unfold(
            Some((resp.bytes_stream(), ctx)),
            move |state| async move {
                let (mut body, ctx) = state?;
                match tokio::time::timeout(stall, body.next()).await {
                    Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some((body, ctx)))),
                    Ok(Some(Err(e))) => Some((Err(ctx.transfer(e)), None)),
                    Ok(None) => None,
                    Err(_) => Some((Err(ctx.stalled(stall)), None)),
                }
            },
        );
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
    ) -> Result<reqwest::Response, RegistryError> {
        let creds = &ep.creds;
        let url_str = format!(
            "{}/{}/{tail}",
            ep.root.as_str().trim_end_matches('/'),
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
            let mut req = ep.http.get(url.clone());
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            if let Some(h) = &auth {
                req = req.header(AUTHORIZATION, h.clone());
            }
            let resp = send(req, ep.timeout, ctx, &url).await?;
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
                let (header, ttl) = self.authenticate(ep, &resp, ctx, &scope).await?;
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
        ep: &Endpoint,
        resp: &reqwest::Response,
        ctx: &Ctx,
        scope: &str,
    ) -> Result<(HeaderValue, Duration), RegistryError> {
        let creds = &ep.creds;
        let challenges: Vec<Challenge> = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .collect();
        if let Some(c) = challenges.iter().find(|c| c.scheme == "bearer") {
            return self.fetch_token(ep, c, resp.url(), ctx, scope).await;
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
        ep: &Endpoint,
        challenge: &Challenge,
        registry_url: &Url,
        ctx: &Ctx,
        scope: &str,
    ) -> Result<(HeaderValue, Duration), RegistryError> {
        let creds = &ep.creds;
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
            ep.http
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
            let req = ep.http.get(u);
            match creds {
                Credentials::Basic { username, password } => {
                    req.header(AUTHORIZATION, basic(username, password))
                }
                _ => req,
            }
        };
        let resp = send(req, ep.timeout, &tctx, &realm).await?;
        debug!(realm = %realm, status = resp.status().as_u16(), "registry token request");
        if !resp.status().is_success() {
            return Err(status_error(resp, &tctx, creds).await);
        }
        let body = read_limited(resp, TOKEN_BODY_LIMIT, self.stall)
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

/// Sends `req`, waiting at most `timeout` for the response headers.
async fn send(
    req: reqwest::RequestBuilder,
    timeout: Duration,
    ctx: &Ctx,
    url: &Url,
) -> Result<reqwest::Response, RegistryError> {
    match tokio::time::timeout(timeout, req.send()).await {
        Ok(r) => r.map_err(|e| ctx.unreachable(url, e)),
        Err(_) => Err(ctx.unreachable_because(
            url,
            format!(
                "no answer within {} s (image.request_timeout_secs)",
                timeout.as_secs()
            ),
        )),
    }
}

/// Worth another try on the same endpoint: the failure may be transient.
fn retryable(e: &RegistryError) -> bool {
    match e {
        RegistryError::Unreachable { .. } => true,
        RegistryError::Http { status, .. } => *status == 429 || *status >= 500,
        _ => false,
    }
}

/// Where and how one request is made.
#[derive(Debug, Clone)]
struct Endpoint {
    /// The API root (`…/v2`).
    root: Url,
    mirror: bool,
    http: reqwest::Client,
    timeout: Duration,
    creds: Credentials,
}

#[cfg(test)]
mod tests;
