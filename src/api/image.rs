//! CRI ImageService handlers.

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService;
use tonic::{Request, Response, Status};

use super::Cri;
use super::convert;
use crate::image::manager::FsUsage;

#[tonic::async_trait]
impl ImageService for Cri {
    async fn list_images(
        &self,
        req: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        let req = req.into_inner();
        let filter = req
            .filter
            .as_ref()
            .and_then(|f| f.image.as_ref())
            .map(|s| s.image.as_str());
        let images = self.images.list(filter)?;
        Ok(Response::new(cri::ListImagesResponse {
            images: images.iter().map(convert::image).collect(),
        }))
    }

    async fn image_status(
        &self,
        req: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let req = req.into_inner();
        let name = convert::image_name(req.image.as_ref(), "ImageStatus")?;
        tracing::Span::current().record("id", name);
        let view = self.images.status(name, req.verbose)?;
        let mut info = HashMap::new();
        if let Some(v) = &view
            && let Some(cfg) = &v.config_json
        {
            let doc = serde_json::json!({
                "id": v.record.id,
                "manifestDigest": v.record.manifest,
                "chainIds": v.record.chain_ids,
                "imageSpec": serde_json::from_str::<serde_json::Value>(cfg)
                    .unwrap_or(serde_json::Value::Null),
            });
            info.insert("info".to_owned(), doc.to_string());
        }
        Ok(Response::new(cri::ImageStatusResponse {
            image: view.map(|v| convert::image(&v.record)),
            info,
        }))
    }

    async fn pull_image(
        &self,
        req: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        let req = req.into_inner();
        let name = convert::image_name(req.image.as_ref(), "PullImage")?;
        tracing::Span::current().record("id", name);
        let creds = convert::credentials(req.auth.as_ref())?;
        let started = std::time::Instant::now();
        let pulled = self.images.pull(name, &creds).await;
        let size = pulled.as_ref().map_err(drop).map(|id| {
            self.images
                .status(id.as_str(), false)
                .ok()
                .flatten()
                .map_or(0, |v| v.record.size)
        });
        self.metrics.pull_done(size, started.elapsed());
        let id = pulled?;
        Ok(Response::new(cri::PullImageResponse {
            image_ref: id.to_string(),
        }))
    }

    async fn remove_image(
        &self,
        req: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        let req = req.into_inner();
        let name = convert::image_name(req.image.as_ref(), "RemoveImage")?;
        tracing::Span::current().record("id", name);
        self.images.remove(name).await?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _req: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        let images = self.images.clone();
        let (img, ctr) =
            tokio::task::spawn_blocking(move || (images.image_fs(), images.container_fs()))
                .await
                .map_err(|e| Status::internal(format!("ImageFsInfo: {e}")))?;
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![fs_usage(img)],
            container_filesystems: vec![fs_usage(ctr)],
        }))
    }
}

fn fs_usage(u: FsUsage) -> cri::FilesystemUsage {
    cri::FilesystemUsage {
        timestamp: u.timestamp_ns,
        fs_id: Some(cri::FilesystemIdentifier {
            mountpoint: u.mountpoint.display().to_string(),
        }),
        used_bytes: Some(cri::UInt64Value { value: u.bytes }),
        inodes_used: Some(cri::UInt64Value { value: u.inodes }),
    }
}
