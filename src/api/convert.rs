//! CRI message ↔ domain conversions, validating every field on the way in.

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::image::catalog::ImageRecord;
use crate::image::registry::{Credentials, credentials_from_auth};
use crate::image::user::{ImageUser, parse_image_user};

/// The image name of a CRI `ImageSpec`, required and non-blank.
pub fn image_name<'a>(spec: Option<&'a cri::ImageSpec>, rpc: &str) -> Result<&'a str, Status> {
    let name = spec.map(|s| s.image.trim()).unwrap_or("");
    if name.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{rpc}: image.image is empty; give an image reference or id"
        )));
    }
    if name.len() > 4096 {
        return Err(Status::invalid_argument(format!(
            "{rpc}: image.image is {} bytes long; references are at most 4096",
            name.len()
        )));
    }
    Ok(name)
}

pub fn credentials(auth: Option<&cri::AuthConfig>) -> Result<Credentials, Status> {
    let Some(a) = auth else {
        return Ok(Credentials::Anonymous);
    };
    credentials_from_auth(
        &a.username,
        &a.password,
        &a.auth,
        &a.identity_token,
        &a.registry_token,
    )
    .map_err(|e| Status::invalid_argument(format!("PullImage: auth: {e}")))
}

pub fn image(rec: &ImageRecord) -> cri::Image {
    let (uid, username) = match parse_image_user(&rec.user) {
        ImageUser::Unset => (None, String::new()),
        ImageUser::Uid(u) => (
            Some(cri::Int64Value {
                value: i64::from(u),
            }),
            String::new(),
        ),
        ImageUser::Name(n) => (None, n),
    };
    cri::Image {
        id: rec.id.to_string(),
        repo_tags: rec.repo_tags.clone(),
        repo_digests: rec.repo_digests.clone(),
        size: rec.size,
        uid,
        username,
        spec: Some(cri::ImageSpec {
            image: rec.id.to_string(),
            ..Default::default()
        }),
        pinned: false,
    }
}
