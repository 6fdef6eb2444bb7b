//! Image references: parsing and Docker-style normalisation.
//!
//! Owns the grammar of `[registry/]repository[:tag][@digest]` (the
//! distribution/reference grammar) and the Docker Hub rules kubelet and users
//! expect (`busybox` is `docker.io/library/busybox:latest`). It does not look
//! anything up: image ids are resolved by the caller before a string gets here.

use std::fmt;
use std::str::FromStr;

use crate::id::{Digest, is_hex64};

/// Docker Hub's canonical name; `index.docker.io` is an alias of it.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// Single-component Hub names live under `library/` (the "official images").
const OFFICIAL_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
/// distribution/reference `NameTotalLengthMax`.
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference. Every message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid image reference: the reference is empty")]
    Empty,
    #[error("invalid image reference {reference:?}: contains whitespace or control characters")]
    Whitespace { reference: String },
    #[error(
        "invalid image reference {reference:?}: this is an image id, not a reference; \
         use an existing image's id or a name such as busybox:latest"
    )]
    ImageId { reference: String },
    #[error(
        "invalid image reference {reference:?}: digest {digest:?} is not of the form \
         sha256:<64 lowercase hex>"
    )]
    Digest { reference: String, digest: String },
    #[error(
        "invalid image reference {reference:?}: tag {tag:?} must be 1 to 128 characters of \
         letters, digits, '_', '.' or '-', not starting with '.' or '-'"
    )]
    Tag { reference: String, tag: String },
    #[error(
        "invalid image reference {reference:?}: registry {registry:?} is not a host name, \
         IPv4 address or [IPv6] address with an optional :port"
    )]
    Registry { reference: String, registry: String },
    #[error("invalid image reference {reference:?}: repository name must be lowercase")]
    Uppercase { reference: String },
    #[error(
        "invalid image reference {reference:?}: repository path component {component:?} must be \
         lowercase letters and digits separated by '.', '_', '__' or '-'"
    )]
    Component {
        reference: String,
        component: String,
    },
    #[error("invalid image reference {reference:?}: repository name is longer than 255 characters")]
    TooLong { reference: String },
}

impl Reference {
    /// Parses `s` with Docker Hub as the registry for short names.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        Self::parse_with_default_registry(s, DOCKER_HUB)
    }

    /// Parses and normalises like Docker and containerd. The first path
    /// component is a registry only if it contains '.' or ':' or is
    /// `localhost`; otherwise `default_registry` is used. `latest` is the tag
    /// only when neither a tag nor a digest is given.
    pub fn parse_with_default_registry(
        s: &str,
        default_registry: &str,
    ) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let reference = || s.to_owned();
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ReferenceError::Whitespace {
                reference: reference(),
            });
        }
        // A bare id (or `sha256:<id>`, which would otherwise parse as repository
        // "sha256" with the id as tag) would silently pull from Docker Hub;
        // Docker refuses it for the same reason.
        if is_hex64(s) || s.strip_prefix("sha256:").is_some_and(is_hex64) {
            return Err(ReferenceError::ImageId {
                reference: reference(),
            });
        }

        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                let digest = Digest::parse(d).map_err(|_| ReferenceError::Digest {
                    reference: reference(),
                    digest: d.to_owned(),
                })?;
                (rest, Some(digest))
            }
            None => (s, None),
        };

        // The tag follows the last ':' only if no '/' comes after it, so
        // `localhost:5000/x` has a port and no tag.
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(ReferenceError::Tag {
                reference: reference(),
                tag: t.to_owned(),
            });
        }

        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains(['.', ':']) || first == "localhost" || first.starts_with('[') =>
            {
                if !valid_registry(first) {
                    return Err(ReferenceError::Registry {
                        reference: reference(),
                        registry: first.to_owned(),
                    });
                }
                (first, path)
            }
            _ => (default_registry, name),
        };
        let registry = if registry == DOCKER_HUB_LEGACY {
            DOCKER_HUB
        } else {
            registry
        };

        validate_path(path, s)?;
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("{OFFICIAL_PREFIX}{path}")
        } else {
            path.to_owned()
        };
        if registry.len() + 1 + repository.len() > NAME_MAX {
            return Err(ReferenceError::TooLong {
                reference: reference(),
            });
        }

        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Self {
            registry: registry.to_owned(),
            repository,
            tag,
            digest,
        })
    }

    /// The registry host, with port if any: `docker.io`, `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path within the registry: `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `name:tag` when there is a tag: what CRI reports as a repo tag.
    pub fn tagged(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name()))
    }

    /// `name@digest` without the tag: what CRI reports as a repo digest.
    pub fn with_digest(&self, d: &Digest) -> String {
        format!("{}@{d}", self.name())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, ReferenceError> {
        Self::parse(s)
    }
}

/// `[\w][\w.-]{0,127}`.
fn valid_tag(t: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    match t.as_bytes().split_first() {
        Some((first, rest)) => {
            t.len() <= TAG_MAX
                && word(*first)
                && rest.iter().all(|&c| word(c) || c == b'.' || c == b'-')
        }
        None => false,
    }
}

/// `host[:port]` where host is a DNS name, an IPv4 address or `[IPv6]`.
fn valid_registry(r: &str) -> bool {
    let (host, port) = if let Some(after) = r.strip_prefix('[') {
        let Some((v6, tail)) = after.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match tail {
            "" => return true,
            t => match t.strip_prefix(':') {
                Some(p) => (None, Some(p)),
                None => return false,
            },
        }
    } else {
        match r.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(r), None),
        }
    };
    // Ports are digits only (not "5000x"); u16 also rejects out-of-range values.
    let port_ok =
        port.is_none_or(|p| p.bytes().all(|c| c.is_ascii_digit()) && p.parse::<u16>().is_ok());
    // DNS labels: alphanumerics with inner hyphens. Uppercase is allowed in
    // hosts (DNS is case-insensitive), unlike in repository paths.
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        match (b.first(), b.last()) {
            (Some(f), Some(e)) => {
                f.is_ascii_alphanumeric()
                    && e.is_ascii_alphanumeric()
                    && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            }
            _ => false,
        }
    };
    port_ok && host.is_none_or(|h| h.split('.').all(label_ok))
}

/// `path-component ('/' path-component)*`, each component
/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`.
fn validate_path(path: &str, reference: &str) -> Result<(), ReferenceError> {
    if path.bytes().any(|c| c.is_ascii_uppercase()) {
        // Docker's own wording: users search for it.
        return Err(ReferenceError::Uppercase {
            reference: reference.to_owned(),
        });
    }
    for component in path.split('/') {
        if !valid_component(component) {
            return Err(ReferenceError::Component {
                reference: reference.to_owned(),
                component: component.to_owned(),
            });
        }
    }
    Ok(())
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !(b.first().is_some_and(alnum) && b.last().is_some_and(alnum)) {
        return false;
    }
    // Every run of separators between alphanumerics must be ".", "_", "__" or
    // any number of "-".
    let mut i = 0;
    while i < b.len() {
        if alnum(&b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(&b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(c: char) -> String {
        c.to_string().repeat(64)
    }

    /// (input, Display of the parsed reference).
    #[test]
    fn normalises_like_docker() {
        let d = format!("sha256:{}", hex('a'));
        let cases: Vec<(String, String)> = vec![
            ("busybox".into(), "docker.io/library/busybox:latest".into()),
            (
                "busybox:1.36".into(),
                "docker.io/library/busybox:1.36".into(),
            ),
            ("user/app".into(), "docker.io/user/app:latest".into()),
            (
                "docker.io/busybox".into(),
                "docker.io/library/busybox:latest".into(),
            ),
            (
                "index.docker.io/library/busybox".into(),
                "docker.io/library/busybox:latest".into(),
            ),
            (
                "index.docker.io/busybox:1".into(),
                "docker.io/library/busybox:1".into(),
            ),
            (
                "docker.io/user/app:v2".into(),
                "docker.io/user/app:v2".into(),
            ),
            ("localhost/app".into(), "localhost/app:latest".into()),
            (
                "localhost:5000/a/b".into(),
                "localhost:5000/a/b:latest".into(),
            ),
            ("localhost:5000/x:1".into(), "localhost:5000/x:1".into()),
            // Without a '/', "localhost" is a repository and 5000 a tag (as in Docker).
            (
                "localhost:5000".into(),
                "docker.io/library/localhost:5000".into(),
            ),
            ("127.0.0.1:5000/x".into(), "127.0.0.1:5000/x:latest".into()),
            ("[::1]:5000/x".into(), "[::1]:5000/x:latest".into()),
            ("[fe80::1]/x:t".into(), "[fe80::1]/x:t".into()),
            ("a:b".into(), "docker.io/library/a:b".into()),
            ("quay.io/a/b/c:x".into(), "quay.io/a/b/c:x".into()),
            (
                "Registry.Example.com/app".into(),
                "Registry.Example.com/app:latest".into(),
            ),
            (
                "ghcr.io/o/a-b__c.d_e---f".into(),
                "ghcr.io/o/a-b__c.d_e---f:latest".into(),
            ),
            (
                format!("busybox@{d}"),
                format!("docker.io/library/busybox@{d}"),
            ),
            (
                format!("busybox:1.36@{d}"),
                format!("docker.io/library/busybox:1.36@{d}"),
            ),
            (
                format!("localhost:5000/x@{d}"),
                format!("localhost:5000/x@{d}"),
            ),
            (
                "app:V1_x-y.z".into(),
                "docker.io/library/app:V1_x-y.z".into(),
            ),
            (
                "docker.io".into(),
                "docker.io/library/docker.io:latest".into(),
            ),
        ];
        for (input, want) in cases {
            let r = Reference::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), want, "{input}");
            assert_eq!(
                r.to_string().parse::<Reference>().as_ref(),
                Ok(&r),
                "{input} round trip"
            );
        }
    }

    #[test]
    fn rejects_what_docker_rejects() {
        let d = format!("sha256:{}", hex('a'));
        let long_component = "a".repeat(250);
        let cases: Vec<String> = vec![
            "".into(),
            " busybox".into(),
            "busy box".into(),
            "busybox\n".into(),
            "Busybox".into(),
            "user/App".into(),
            "localhost:5000/App".into(),
            "busybox:".into(),
            "busybox:.x".into(),
            "busybox:-x".into(),
            format!("busybox:{}", "t".repeat(129)),
            "busybox:a/b".into(),
            "a//b".into(),
            "/busybox".into(),
            "busybox/".into(),
            "localhost:5000/".into(),
            "busybox@".into(),
            "busybox@sha256:abc".into(),
            format!("busybox@sha256:{}", "a".repeat(63)),
            format!("busybox@sha256:{}", "A".repeat(64)),
            format!("busybox@sha512:{}", "a".repeat(128)),
            format!("busybox@{d}@{d}"),
            hex('b'),
            format!("sha256:{}", hex('b')),
            format!("docker.io/{long_component}/x"),
            "a..b".into(),
            "a___b".into(),
            "-a".into(),
            "a-".into(),
            "a.".into(),
            "reg:99999/x".into(),
            "reg:5x/x".into(),
            "reg-.io/x".into(),
            "[::1/x".into(),
            "[zz::1]:5000/x".into(),
            "[::1]x/y".into(),
            ":tag".into(),
            "@".into(),
        ];
        for input in cases {
            assert!(Reference::parse(&input).is_err(), "{input:?} accepted");
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = Reference::parse("user/App").unwrap_err();
        assert_eq!(
            e,
            ReferenceError::Uppercase {
                reference: "user/App".into()
            }
        );
        assert!(e.to_string().contains("must be lowercase"), "{e}");
        assert!(e.to_string().contains("user/App"), "{e}");
        let e = Reference::parse("busybox:").unwrap_err();
        assert!(matches!(e, ReferenceError::Tag { .. }), "{e}");
        let e = Reference::parse("a//b").unwrap_err();
        assert!(
            matches!(e, ReferenceError::Component { ref component, .. } if component.is_empty()),
            "{e}"
        );
        let e = Reference::parse("busybox@").unwrap_err();
        assert!(matches!(e, ReferenceError::Digest { .. }), "{e}");
        let e = Reference::parse(&hex('c')).unwrap_err();
        assert!(e.to_string().contains("image id"), "{e}");
        let e = Reference::parse(&format!("a/{}", "b".repeat(300))).unwrap_err();
        assert!(matches!(e, ReferenceError::TooLong { .. }), "{e}");
        let e = Reference::parse("reg:99999/x").unwrap_err();
        assert!(matches!(e, ReferenceError::Registry { .. }), "{e}");
        assert_eq!(Reference::parse(""), Err(ReferenceError::Empty));
    }

    #[test]
    fn length_limit_counts_the_normalised_name() {
        // "docker.io/library/" is 18 characters: 237 + 18 = 255 fits, 238 does not.
        assert!(Reference::parse(&"a".repeat(237)).is_ok());
        assert!(Reference::parse(&"a".repeat(238)).is_err());
    }

    #[test]
    fn accessors_and_cri_forms() {
        let d = Digest::parse(&format!("sha256:{}", hex('e'))).unwrap();
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "library/busybox");
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(r.digest(), None);
        assert_eq!(r.name(), "docker.io/library/busybox");
        assert_eq!(
            r.tagged().as_deref(),
            Some("docker.io/library/busybox:latest")
        );
        assert_eq!(r.with_digest(&d), format!("docker.io/library/busybox@{d}"));

        let r = Reference::parse(&format!("localhost:5000/a/b@{d}")).unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "a/b");
        assert_eq!(r.tag(), None, "no default tag with a digest");
        assert_eq!(r.digest(), Some(&d));
        assert_eq!(r.tagged(), None);

        let r = Reference::parse(&format!("x:1@{d}")).unwrap();
        assert_eq!((r.tag(), r.digest()), (Some("1"), Some(&d)));
    }

    #[test]
    fn default_registry_applies_to_short_names_only() {
        let r = Reference::parse_with_default_registry("busybox", "registry.example:5000").unwrap();
        assert_eq!(r.to_string(), "registry.example:5000/busybox:latest");
        let r = Reference::parse_with_default_registry("quay.io/x/y", "registry.example").unwrap();
        assert_eq!(r.registry(), "quay.io");
        let r = Reference::parse_with_default_registry("busybox", "docker.io").unwrap();
        assert_eq!(r.repository(), "library/busybox");
    }
}
