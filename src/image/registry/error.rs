//! Errors of the registry client.

use crate::id::Digest;

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
