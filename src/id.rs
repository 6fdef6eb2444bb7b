//! Identifier newtypes, parsed once at the edge.
//!
//! IDs become path components (layer dirs, blob files, later pod and
//! container dirs), so every constructor validates shape strictly: a value of
//! these types is always safe to join onto a directory.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("digest {0:?} is not of the form sha256:<64 lowercase hex>")]
    Digest(String),
    #[error("id {0:?} is not 64 lowercase hex characters")]
    Hex(String),
    #[error("id prefix {0:?} is empty or not lowercase hex")]
    Prefix(String),
}

/// A content digest, `sha256:<64 hex>`. Only sha256 is accepted: it is what
/// every registry serves, and a single algorithm keeps blob paths simple.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        match s.strip_prefix("sha256:") {
            Some(h) if is_hex64(h) => Ok(Self(s.to_owned())),
            _ => Err(IdError::Digest(s.to_owned())),
        }
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(data))
    }

    /// Finishes a running sha256.
    pub fn from_hasher(h: Sha256) -> Self {
        Self(format!("sha256:{}", hex::encode(h.finalize())))
    }

    /// The 64 hex characters, safe as a file name.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.0)
    }
}

impl FromStr for Digest {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Digest {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

/// An image id: the digest of the image config blob, as CRI reports it
/// (`sha256:<hex>`).
pub type ImageId = Digest;

/// A layer chain id (OCI image spec): identifies a layer *with* its parents,
/// so a layer directory keyed by it can be shared by every image with the
/// same layer stack.
pub type ChainId = Digest;

/// Computes the chain id of `diff_id` stacked on `parent`.
pub fn chain_id(parent: Option<&ChainId>, diff_id: &Digest) -> ChainId {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::of(format!("{p} {diff_id}").as_bytes()),
    }
}

/// Defines a random 64-hex-character object id (pods, containers): parsed
/// once, safe as a path component, serialised as its string.
macro_rules! random_hex_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, IdError> {
                if is_hex64(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(IdError::Hex(s.to_owned()))
                }
            }

            /// A fresh random id (256 bits from the kernel's CSPRNG).
            pub fn random() -> std::io::Result<Self> {
                let mut b = [0u8; 32];
                std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut b)?;
                Ok(Self(hex::encode(b)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(d: $name) -> String {
                d.0
            }
        }
    };
}

random_hex_id!(
    /// A pod sandbox id: 64 lowercase hex characters, random.
    PodSandboxId
);
random_hex_id!(
    /// A container id: 64 lowercase hex characters, random.
    ContainerId
);

/// A lookup key typed by a user: a full id or a unique prefix of one
/// (crictl accepts short ids). Lowercase hex only, 1..=64 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPrefix(String);

impl IdPrefix {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let s = s.strip_prefix("sha256:").unwrap_or(s);
        if !s.is_empty() && s.len() <= 64 && s.bytes().all(is_lower_hex) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::Prefix(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

pub fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(is_lower_hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_parse_rejects_bad_shapes() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert!(Digest::parse(&good).is_ok());
        for bad in [
            "",
            "sha256:",
            "sha512:aa",
            &format!("sha256:{}", "A".repeat(64)),
            &format!("sha256:{}", "a".repeat(63)),
            &format!("sha256:{}/..", "a".repeat(61)),
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn chain_id_matches_oci_definition() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        assert_eq!(chain_id(None, &a), a);
        let c = chain_id(Some(&a), &b);
        assert_eq!(c, Digest::of(format!("{a} {b}").as_bytes()));
    }

    #[test]
    fn prefix_accepts_short_and_prefixed() {
        assert_eq!(IdPrefix::parse("sha256:ab").unwrap().as_str(), "ab");
        assert!(IdPrefix::parse("xyz").is_err());
        assert!(IdPrefix::parse("").is_err());
    }
}
