//! What a request concerns (for error messages), and turning responses and
//! transport failures into [`RegistryError`]s: distribution error bodies,
//! size-capped reads that give up when bytes stop coming, TLS failures in
//! words.

use std::fmt;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::auth::Credentials;
use super::error::RegistryError;
use super::{ERROR_BODY_LIMIT, Endpoint, OCI_INDEX, OCI_MANIFEST, tls};
use crate::id::Digest;
use crate::image::reference::Reference;

#[derive(Debug, Clone)]
pub(super) enum Object {
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
pub(super) struct Ctx {
    pub(super) registry: String,
    pub(super) repository: String,
    pub(super) object: Object,
}

impl Ctx {
    pub(super) fn new(r: &Reference, ep: &Endpoint, object: Object) -> Self {
        let registry = if ep.mirror {
            format!("{} (mirror {})", r.registry(), ep.root)
        } else {
            r.registry().to_owned()
        };
        Self {
            registry,
            repository: r.repository().to_owned(),
            object,
        }
    }

    pub(super) fn unreachable(&self, url: &Url, e: reqwest::Error) -> RegistryError {
        let e = e.without_url();
        // A certificate problem in words, with rustls's own term after it.
        let cause = match tls::describe(&e) {
            Some(words) => format!("{words} [{}]", error_chain(&e)),
            None => error_chain(&e),
        };
        self.unreachable_because(url, cause)
    }

    pub(super) fn unreachable_because(&self, url: &Url, cause: String) -> RegistryError {
        let mut url = url.clone();
        url.set_query(None);
        RegistryError::Unreachable {
            registry: self.registry.clone(),
            url: url.to_string(),
            cause,
        }
    }

    /// No bytes arrived for `after`: `image.pull_progress_timeout_secs`.
    pub(super) fn stalled(&self, after: Duration) -> RegistryError {
        RegistryError::Transfer {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            object: self.object.to_string(),
            cause: format!(
                "no data received for {} s (image.pull_progress_timeout_secs); the download was cancelled",
                after.as_secs()
            ),
        }
    }

    pub(super) fn transfer(&self, e: reqwest::Error) -> RegistryError {
        RegistryError::Transfer {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            object: self.object.to_string(),
            cause: error_chain(&e.without_url()),
        }
    }

    pub(super) fn read_error(&self, e: ReadError, limit: u64) -> RegistryError {
        match e {
            ReadError::TooLarge => RegistryError::TooLarge {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                object: self.object.to_string(),
                limit,
            },
            ReadError::Transport(e) => self.transfer(e),
            ReadError::Stalled(d) => self.stalled(d),
        }
    }

    pub(super) fn invalid(&self, reason: &str) -> RegistryError {
        RegistryError::InvalidResponse {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            object: self.object.to_string(),
            reason: reason.to_owned(),
        }
    }

    pub(super) fn unauthorized(&self, creds: &Credentials, message: String) -> RegistryError {
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
pub(super) async fn status_error(
    resp: reqwest::Response,
    ctx: &Ctx,
    creds: &Credentials,
) -> RegistryError {
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
pub(super) enum ReadError {
    TooLarge,
    Transport(reqwest::Error),
    Stalled(Duration),
}

/// Reads a whole body, refusing more than `limit` bytes whether or not the
/// server declared a Content-Length, and giving up when no bytes come for `stall`.
pub(super) async fn read_limited(
    mut resp: reqwest::Response,
    limit: u64,
    stall: Duration,
) -> Result<Bytes, ReadError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(ReadError::TooLarge);
    }
    let mut buf = BytesMut::new();
    loop {
        let chunk = tokio::time::timeout(stall, resp.chunk())
            .await
            .map_err(|_| ReadError::Stalled(stall))?
            .map_err(ReadError::Transport)?;
        let Some(chunk) = chunk else { break };
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(ReadError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Up to `limit` bytes of an error body; a broken body just ends the message.
pub(super) async fn read_prefix(mut resp: reqwest::Response, limit: u64) -> Bytes {
    let mut buf = BytesMut::new();
    // An error body that stalls is not worth waiting long for.
    while let Ok(Ok(Some(chunk))) =
        tokio::time::timeout(Duration::from_secs(10), resp.chunk()).await
    {
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
pub(super) fn manifest_media_type(content_type: Option<&str>, body: &[u8]) -> Option<String> {
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
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
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
