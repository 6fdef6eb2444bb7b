//! Registry credentials and the auth plumbing: CRI AuthConfig decoding,
//! WWW-Authenticate parsing and the per-endpoint token cache.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use reqwest::header::HeaderValue;

use super::RegistryError;
use crate::id::Digest;

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
    pub(super) fn fingerprint(&self) -> Digest {
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

pub(super) fn bearer(token: &str) -> Option<HeaderValue> {
    let mut h = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    h.set_sensitive(true);
    Some(h)
}

pub(super) fn basic(username: &str, password: &str) -> HeaderValue {
    let encoded = STANDARD.encode(format!("{username}:{password}"));
    // base64 output is always a valid header value.
    let mut h =
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap_or(HeaderValue::from_static(""));
    h.set_sensitive(true);
    h
}

#[derive(Debug, PartialEq)]
pub(super) struct Challenge {
    /// Lowercase: `basic`, `bearer`.
    pub(super) scheme: String,
    /// Lowercase names.
    pub(super) params: HashMap<String, String>,
}

/// Parses a WWW-Authenticate value (RFC 7235): one or more challenges, each a
/// scheme and comma-separated `name=value` or `name="quoted"` parameters.
/// Quoted values may hold commas (`scope="repository:a:pull,push"`).
pub(super) fn parse_challenges(header: &str) -> Vec<Challenge> {
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
pub(super) struct AuthKey {
    pub(super) origin: String,
    pub(super) scope: String,
    pub(super) creds: Digest,
}

/// Authorization headers per (endpoint, scope, credentials) until they expire.
/// A std Mutex: held only for a map lookup, never across an await.
#[derive(Default)]
pub(super) struct AuthCache(Mutex<HashMap<AuthKey, (HeaderValue, Instant)>>);

impl fmt::Debug for AuthCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the tokens themselves.
        let n = self.0.lock().map_or(0, |m| m.len());
        f.debug_struct("AuthCache").field("entries", &n).finish()
    }
}

impl AuthCache {
    pub(super) fn map(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<AuthKey, (HeaderValue, Instant)>> {
        // A panic elsewhere while holding the lock leaves a valid map.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get(&self, key: &AuthKey) -> Option<HeaderValue> {
        let map = self.map();
        map.get(key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(h, _)| h.clone())
    }

    pub(super) fn put(&self, key: AuthKey, header: HeaderValue, ttl: Duration) {
        let now = Instant::now();
        let mut map = self.map();
        map.retain(|_, (_, until)| *until > now);
        map.insert(key, (header, now + ttl));
    }

    pub(super) fn forget(&self, key: &AuthKey) {
        self.map().remove(key);
    }
}
