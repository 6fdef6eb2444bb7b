//! Short forms of the CRI ImageService calls the tests make, returning the
//! parts tests assert on. gRPC errors come back as `tonic::Status` so tests
//! can check codes and messages.

use std::collections::HashMap;

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::{
    AuthConfig, Image, ImageFilter, ImageFsInfoRequest, ImageFsInfoResponse, ImageSpec,
    ImageStatusRequest, ListImagesRequest, PullImageRequest, RemoveImageRequest,
};
use tonic::Status;
use tonic::transport::Channel;

pub type ImageClient = ImageServiceClient<Channel>;

pub fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.to_owned(),
        ..Default::default()
    })
}

/// AuthConfig with username and password for `server`.
pub fn basic_auth(server: &str, user: &str, pass: &str) -> AuthConfig {
    AuthConfig {
        username: user.into(),
        password: pass.into(),
        server_address: server.into(),
        ..Default::default()
    }
}

/// PullImage; Ok is the response's `image_ref`.
pub async fn pull(
    client: &mut ImageClient,
    image: &str,
    auth: Option<AuthConfig>,
) -> Result<String, Status> {
    client
        .pull_image(PullImageRequest {
            image: spec(image),
            auth,
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

/// PullImage that must succeed.
pub async fn pull_ok(client: &mut ImageClient, image: &str) -> String {
    pull(client, image, None)
        .await
        .unwrap_or_else(|e| panic!("pulling {image}: {e:?}"))
}

/// PullImage that must fail; returns the error.
pub async fn pull_err(client: &mut ImageClient, image: &str, auth: Option<AuthConfig>) -> Status {
    match pull(client, image, auth).await {
        Ok(r) => panic!("pulling {image} succeeded with image_ref {r}; expected an error"),
        Err(e) => e,
    }
}

/// ImageStatus: (image, verbose info).
pub async fn status(
    client: &mut ImageClient,
    image: &str,
    verbose: bool,
) -> (Option<Image>, HashMap<String, String>) {
    let r = client
        .image_status(ImageStatusRequest {
            image: spec(image),
            verbose,
        })
        .await
        .unwrap_or_else(|e| panic!("ImageStatus {image}: {e:?}"))
        .into_inner();
    (r.image, r.info)
}

/// ImageStatus that must find the image.
pub async fn status_ok(client: &mut ImageClient, image: &str) -> Image {
    status(client, image, false)
        .await
        .0
        .unwrap_or_else(|| panic!("ImageStatus {image}: image not found"))
}

pub async fn list(client: &mut ImageClient, filter: Option<&str>) -> Vec<Image> {
    client
        .list_images(ListImagesRequest {
            filter: filter.map(|f| ImageFilter { image: spec(f) }),
        })
        .await
        .unwrap_or_else(|e| panic!("ListImages {filter:?}: {e:?}"))
        .into_inner()
        .images
}

pub async fn remove(client: &mut ImageClient, image: &str) -> Result<(), Status> {
    client
        .remove_image(RemoveImageRequest { image: spec(image) })
        .await
        .map(|_| ())
}

pub async fn fs_info(client: &mut ImageClient) -> ImageFsInfoResponse {
    client
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .expect("ImageFsInfo")
        .into_inner()
}

/// Polls `cond` until it holds; panics naming `what` after 20 s. For effects
/// a daemon may complete in the background (garbage collection), never to
/// measure speed.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what} after 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
