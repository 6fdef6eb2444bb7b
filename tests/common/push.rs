//! Pushes built images and indexes to a [`Registry`] through the distribution
//! API (monolithic blob uploads, manifests by digest and by tag) and reads
//! manifests back. Plain HTTP to loopback only; basic auth when the registry
//! was started with htpasswd.

use reqwest::{Client, RequestBuilder, StatusCode};

use super::image::{Image, Index};
use super::registry::Registry;

/// What the registry stored for a pushed image.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `127.0.0.1:<port>/<repo>:<tag>`.
    pub reference: String,
    /// Digest of the manifest, as the registry reported it.
    pub manifest_digest: String,
    /// `sha256:<hex>` of the config blob.
    pub config_digest: String,
    /// The image id the daemon must report (= `config_digest`).
    pub image_id: String,
}

/// What the registry stored for a pushed index.
#[derive(Debug, Clone)]
pub struct PushedIndex {
    pub reference: String,
    /// Digest of the index / manifest list itself.
    pub index_digest: String,
    /// One entry per platform, in index order.
    pub entries: Vec<Pushed>,
}

/// A reqwest client for plain HTTP. reqwest is built with
/// `rustls-no-provider`, which panics unless a crypto provider is installed,
/// even when no TLS is spoken.
pub fn http_client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder().build().expect("building reqwest client")
}

fn with_auth(req: RequestBuilder, registry: &Registry) -> RequestBuilder {
    match registry.credentials() {
        Some((user, pass)) => req.basic_auth(user, Some(pass)),
        None => req,
    }
}

/// Uploads `data` as blob `digest` into `repo` unless the registry has it.
pub async fn push_blob(
    client: &Client,
    registry: &Registry,
    repo: &str,
    digest: &str,
    data: &[u8],
) {
    let base = registry.url();
    let head = with_auth(
        client.head(format!("{base}/v2/{repo}/blobs/{digest}")),
        registry,
    )
    .send()
    .await
    .unwrap_or_else(|e| panic!("HEAD blob {digest} on {base}: {e}"));
    if head.status() == StatusCode::OK {
        return;
    }
    let start = with_auth(
        client.post(format!("{base}/v2/{repo}/blobs/uploads/")),
        registry,
    )
    .send()
    .await
    .unwrap_or_else(|e| panic!("starting blob upload to {base}/{repo}: {e}"));
    assert_eq!(
        start.status(),
        StatusCode::ACCEPTED,
        "POST blob upload to {repo}: {:?}",
        start.text().await
    );
    let location = start
        .headers()
        .get("location")
        .expect("upload response without Location")
        .to_str()
        .expect("Location is ASCII")
        .to_owned();
    let location = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = with_auth(
        client.put(format!("{location}{sep}digest={digest}")),
        registry,
    )
    .header("content-type", "application/octet-stream")
    .body(data.to_vec())
    .send()
    .await
    .unwrap_or_else(|e| panic!("uploading blob {digest}: {e}"));
    let status = put.status();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "PUT blob {digest} into {repo}: {:?}",
        put.text().await
    );
}

/// PUTs a manifest under `reference` (tag or digest); returns the registry's
/// `Docker-Content-Digest`.
pub async fn push_manifest(
    client: &Client,
    registry: &Registry,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> String {
    let url = format!("{}/v2/{repo}/manifests/{reference}", registry.url());
    let resp = with_auth(client.put(&url), registry)
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
    let status = resp.status();
    let digest = resp
        .headers()
        .get("docker-content-digest")
        .map(|v| v.to_str().expect("ASCII digest").to_owned());
    assert_eq!(
        status,
        StatusCode::CREATED,
        "PUT {url}: {:?}",
        resp.text().await
    );
    digest.expect("manifest PUT answered without Docker-Content-Digest")
}

async fn push_image_blobs(client: &Client, registry: &Registry, repo: &str, image: &Image) {
    for layer in &image.layers {
        push_blob(client, registry, repo, &layer.digest, &layer.data).await;
    }
    push_blob(client, registry, repo, &image.config_digest, &image.config).await;
}

/// Pushes `image` as `<repo>:<tag>`.
pub async fn push(registry: &Registry, repo: &str, tag: &str, image: &Image) -> Pushed {
    let client = http_client();
    push_image_blobs(&client, registry, repo, image).await;
    let digest = push_manifest(
        &client,
        registry,
        repo,
        tag,
        image.manifest_media_type,
        &image.manifest,
    )
    .await;
    assert_eq!(
        digest, image.manifest_digest,
        "registry computed another manifest digest"
    );
    Pushed {
        reference: registry.reference(repo, tag),
        manifest_digest: digest,
        config_digest: image.config_digest.clone(),
        image_id: image.id(),
    }
}

/// Pushes every platform image of `index` by digest, then the index as `<repo>:<tag>`.
pub async fn push_index(registry: &Registry, repo: &str, tag: &str, index: &Index) -> PushedIndex {
    let client = http_client();
    let mut entries = Vec::new();
    for image in &index.images {
        push_image_blobs(&client, registry, repo, image).await;
        let digest = push_manifest(
            &client,
            registry,
            repo,
            &image.manifest_digest,
            image.manifest_media_type,
            &image.manifest,
        )
        .await;
        entries.push(Pushed {
            reference: registry.digest_reference(repo, &digest),
            manifest_digest: digest,
            config_digest: image.config_digest.clone(),
            image_id: image.id(),
        });
    }
    let digest = push_manifest(
        &client,
        registry,
        repo,
        tag,
        index.media_type,
        &index.manifest,
    )
    .await;
    assert_eq!(
        digest, index.digest,
        "registry computed another index digest"
    );
    PushedIndex {
        reference: registry.reference(repo, tag),
        index_digest: digest,
        entries,
    }
}

/// A manifest as the registry serves it: (Content-Type, Docker-Content-Digest, body).
pub async fn get_manifest(
    registry: &Registry,
    repo: &str,
    reference: &str,
) -> (String, String, Vec<u8>) {
    let url = format!("{}/v2/{repo}/manifests/{reference}", registry.url());
    let accept = [
        super::image::OCI_MANIFEST,
        super::image::OCI_INDEX,
        super::image::DOCKER_MANIFEST,
        super::image::DOCKER_LIST,
    ]
    .join(", ");
    let resp = with_auth(http_client().get(&url), registry)
        .header("accept", accept)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(resp.status(), StatusCode::OK, "GET {url}");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().expect("ASCII header").to_owned())
            .unwrap_or_default()
    };
    let content_type = header("content-type");
    let digest = header("docker-content-digest");
    let body = resp.bytes().await.expect("manifest body").to_vec();
    (content_type, digest, body)
}

/// A blob's bytes as the registry serves them.
pub async fn get_blob(registry: &Registry, repo: &str, digest: &str) -> Vec<u8> {
    let url = format!("{}/v2/{repo}/blobs/{digest}", registry.url());
    let resp = with_auth(http_client().get(&url), registry)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(resp.status(), StatusCode::OK, "GET {url}");
    resp.bytes().await.expect("blob body").to_vec()
}
