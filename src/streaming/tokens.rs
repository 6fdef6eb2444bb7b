//! Single-use, expiring tokens that name a pending streaming request: the
//! CRI call stores the request and returns a URL with the token; the first
//! HTTP request bearing it takes the request out. A second use, or one
//! after the TTL, finds nothing (404).

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Pending requests by token.
#[derive(Debug)]
pub struct Tokens<T> {
    ttl: Duration,
    pending: Mutex<HashMap<String, (T, Instant)>>,
}

impl<T> Tokens<T> {
    pub fn new(ttl: Duration) -> Self {
        Tokens {
            ttl,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Stores `request` under a fresh random token (128 bits, hex).
    pub fn insert(&self, request: T) -> std::io::Result<String> {
        let mut raw = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
        let token = hex::encode(raw);
        let now = Instant::now();
        let mut pending = crate::runtime::lock(&self.pending);
        // Expired entries go whenever a new one comes, so the map stays
        // as small as the live URLs.
        pending.retain(|_, (_, at)| now.duration_since(*at) < self.ttl);
        pending.insert(token.clone(), (request, now));
        Ok(token)
    }

    /// Takes the request for `token` if it is there and not expired.
    pub fn take(&self, token: &str) -> Option<T> {
        let (request, at) = crate::runtime::lock(&self.pending).remove(token)?;
        (at.elapsed() < self.ttl).then_some(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_use_and_expiry() {
        let t = Tokens::new(Duration::from_millis(50));
        let a = t.insert(1).unwrap();
        let b = t.insert(2).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert_eq!(t.take(&a), Some(1));
        assert_eq!(t.take(&a), None, "second use");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(t.take(&b), None, "expired");
        assert_eq!(t.take("nope"), None);
    }
}
