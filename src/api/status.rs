//! The one place that decides gRPC status codes for domain errors.

use tonic::{Code, Status};

use crate::image::ImageError;
use crate::image::layers::LayerError;
use crate::image::registry::RegistryError;
use crate::runtime::container::ContainerError;
use crate::runtime::sandbox::SandboxError;

impl From<ImageError> for Status {
    fn from(e: ImageError) -> Status {
        let code = image_code(e.root());
        Status::new(code, e.to_string())
    }
}

impl From<SandboxError> for Status {
    fn from(e: SandboxError) -> Status {
        let code = match &e {
            SandboxError::Invalid(_)
            | SandboxError::Id(_)
            | SandboxError::Ambiguous { .. }
            | SandboxError::Sysctl(_)
            | SandboxError::PodFile(_)
            | SandboxError::UnknownHandler { .. } => Code::InvalidArgument,
            SandboxError::NameReserved { .. } => Code::AlreadyExists,
            SandboxError::NotFound(_) => Code::NotFound,
            SandboxError::NoCgroups { .. } => Code::FailedPrecondition,
            SandboxError::Namespace { .. }
            | SandboxError::Cgroup { .. }
            | SandboxError::Network { .. }
            | SandboxError::Io { .. }
            | SandboxError::Store(_)
            | SandboxError::Internal(_) => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

impl From<ContainerError> for Status {
    fn from(e: ContainerError) -> Status {
        let code = match &e {
            ContainerError::Invalid(_)
            | ContainerError::Ambiguous { .. }
            | ContainerError::Id(_) => Code::InvalidArgument,
            ContainerError::NotFound(_)
            | ContainerError::PodNotFound(_)
            | ContainerError::ImageNotFound(_) => Code::NotFound,
            ContainerError::NameReserved { .. } => Code::AlreadyExists,
            ContainerError::PodNotReady(_) | ContainerError::State { .. } => {
                Code::FailedPrecondition
            }
            ContainerError::TimedOut { .. } => Code::DeadlineExceeded,
            ContainerError::Failed { .. } => Code::Unknown,
            ContainerError::Store(_) | ContainerError::Internal(_) => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

fn image_code(e: &ImageError) -> Code {
    match e {
        ImageError::Reference(_) | ImageError::Id(_) | ImageError::Ambiguous { .. } => {
            Code::InvalidArgument
        }
        ImageError::Registry { source, .. } => registry_code(source),
        ImageError::Manifest { .. } | ImageError::TooLarge { .. } => Code::FailedPrecondition,
        ImageError::DigestMismatch { .. } => Code::DataLoss,
        ImageError::Layer { source, .. } => match **source {
            LayerError::DigestMismatch { .. }
            | LayerError::SizeMismatch { .. }
            | LayerError::DiffIdMismatch { .. } => Code::DataLoss,
            LayerError::Unpack { .. } => Code::FailedPrecondition,
            LayerError::Download { .. } => Code::Unavailable,
            LayerError::Io { .. } => Code::Internal,
        },
        ImageError::Io { .. } | ImageError::Store(_) | ImageError::Internal(_) => Code::Internal,
        ImageError::Shared(inner) => image_code(inner),
    }
}

fn registry_code(e: &RegistryError) -> Code {
    match e {
        RegistryError::NameUnknown { .. }
        | RegistryError::ManifestUnknown { .. }
        | RegistryError::BlobUnknown { .. } => Code::NotFound,
        RegistryError::Unauthorized { .. } => Code::Unauthenticated,
        RegistryError::Denied { .. } => Code::PermissionDenied,
        RegistryError::InvalidCredentials { .. } => Code::InvalidArgument,
        RegistryError::Unreachable { .. } | RegistryError::Transfer { .. } => Code::Unavailable,
        RegistryError::DigestMismatch { .. } => Code::DataLoss,
        RegistryError::TooLarge { .. } | RegistryError::InvalidResponse { .. } => {
            Code::FailedPrecondition
        }
        RegistryError::Client { .. } | RegistryError::InvalidMirror { .. } => Code::Internal,
        RegistryError::Http { .. } => Code::Unknown,
    }
}
