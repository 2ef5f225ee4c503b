//! Glance (image v2): create with properties, streamed upload from a file, list/get/delete.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::client::{Body, Call, FileBody, OpenStackClient, Retry};
use super::compute::path_id;
use super::error::{CloudError, Service};

/// Bytes sent so far of an upload, and the file's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadProgress {
    pub sent: u64,
    pub total: u64,
}

/// Called as upload chunks go out (e.g. to move an indicatif bar). Must be cheap.
pub type ProgressFn = Arc<dyn Fn(UploadProgress) + Send + Sync>;

wire_status! {
    /// Glance's image status.
    pub enum ImageStatus {
        Queued = "queued",
        Saving = "saving",
        Uploading = "uploading",
        Importing = "importing",
        Active = "active",
        Killed = "killed",
        Deleted = "deleted",
        PendingDelete = "pending_delete",
        Deactivated = "deactivated",
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Image {
    pub id: String,
    pub name: Option<String>,
    pub status: ImageStatus,
    pub visibility: Option<String>,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub size: Option<u64>,
    /// MD5 hex of the data (Glance's legacy `checksum`).
    pub checksum: Option<String>,
    pub owner: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    /// Every attribute that is not one of Glance's own: the custom properties (string-valued in
    /// Glance; anything else is kept as its JSON text).
    pub properties: BTreeMap<String, String>,
}

/// The image schema's own attributes; everything else in an image object is a custom property.
const BASE_ATTRIBUTES: &[&str] = &[
    "id",
    "name",
    "status",
    "visibility",
    "protected",
    "os_hidden",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "owner",
    "size",
    "virtual_size",
    "min_ram",
    "min_disk",
    "disk_format",
    "container_format",
    "created_at",
    "updated_at",
    "tags",
    "locations",
    "direct_url",
    "self",
    "file",
    "schema",
    "stores",
];

fn image_from(v: Value) -> Option<Image> {
    let Value::Object(mut o) = v else { return None };
    let mut take_str = |k: &str| match o.remove(k) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let id = take_str("id")?;
    let name = take_str("name");
    let status = ImageStatus::from(take_str("status").unwrap_or_default().as_str());
    let visibility = take_str("visibility");
    let disk_format = take_str("disk_format");
    let container_format = take_str("container_format");
    let checksum = take_str("checksum");
    let owner = take_str("owner");
    let time = |s: Option<String>| {
        s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let created_at = time(take_str("created_at"));
    let updated_at = time(take_str("updated_at"));
    let size = o.get("size").and_then(Value::as_u64);
    let properties = o
        .into_iter()
        .filter(|(k, _)| !BASE_ATTRIBUTES.contains(&k.as_str()))
        .map(|(k, v)| match v {
            Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect();
    Some(Image {
        id,
        name,
        status,
        visibility,
        disk_format,
        container_format,
        size,
        checksum,
        owner,
        created_at,
        updated_at,
        properties,
    })
}

fn decode_image(v: Value) -> Result<Image, CloudError> {
    image_from(v).ok_or_else(|| CloudError::BadResponse {
        op: super::error::Operation {
            service: Service::Image,
            method: "GET".into(),
            path: "/v2/images".into(),
        },
        message: "an image without an id".into(),
    })
}

/// `POST /v2/images`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateImage {
    pub name: String,
    /// `qcow2`, `raw`, `vhd`, ...
    pub disk_format: String,
    /// Usually `bare`.
    pub container_format: String,
    /// `private` unless set.
    pub visibility: Option<String>,
    /// Custom string properties (e.g. `nodepool_build_id`); may not reuse a base attribute name.
    pub properties: BTreeMap<String, String>,
}

impl CreateImage {
    pub fn new(name: impl Into<String>, disk_format: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            disk_format: disk_format.into(),
            container_format: "bare".into(),
            visibility: None,
            properties: BTreeMap::new(),
        }
    }

    fn to_json(&self) -> Result<Value, CloudError> {
        let mut o = serde_json::Map::new();
        o.insert("name".into(), json!(self.name));
        o.insert("disk_format".into(), json!(self.disk_format));
        o.insert("container_format".into(), json!(self.container_format));
        o.insert(
            "visibility".into(),
            json!(self.visibility.as_deref().unwrap_or("private")),
        );
        for (k, v) in &self.properties {
            if BASE_ATTRIBUTES.contains(&k.as_str()) {
                return Err(CloudError::InvalidRequest {
                    message: format!(
                        "image property {k:?} is a Glance attribute, not a custom property"
                    ),
                });
            }
            o.insert(k.clone(), json!(v));
        }
        Ok(Value::Object(o))
    }
}

/// Filters of `GET /v2/images`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageQuery {
    pub name: Option<String>,
    pub status: Option<String>,
    /// `private`, `public`, `shared`, `community` or `all`.
    pub visibility: Option<String>,
    /// Exact-match filters on custom properties.
    pub properties: BTreeMap<String, String>,
    pub page_size: Option<u32>,
}

#[derive(Deserialize)]
struct ImagesPage {
    images: Vec<Value>,
    #[serde(default)]
    next: Option<String>,
}

/// The upload body: the file as a stream of 256 KiB chunks, reporting progress per chunk.
pub(crate) async fn file_body(f: &FileBody) -> Result<reqwest::Body, CloudError> {
    Ok(reqwest::Body::wrap_stream(file_stream(f).await?))
}

async fn file_stream(
    f: &FileBody,
) -> Result<
    impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    CloudError,
> {
    let file = tokio::fs::File::open(&f.path)
        .await
        .map_err(|source| CloudError::Io {
            path: f.path.display().to_string(),
            source,
        })?;
    let total = f.len;
    let progress = f.progress.clone();
    if let Some(p) = &progress {
        p(UploadProgress { sent: 0, total });
    }
    let mut sent = 0u64;
    let stream =
        tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).inspect(move |chunk| {
            if let (Ok(c), Some(p)) = (chunk, &progress) {
                sent += c.len() as u64;
                p(UploadProgress { sent, total });
            }
        });
    Ok(stream)
}

impl OpenStackClient {
    /// Creates an image record (status `queued`); upload its data with [`Self::upload_image`].
    /// Not retried after an ambiguous failure: that could leave two records; callers find
    /// strays by their properties.
    pub async fn create_image(&self, req: &CreateImage) -> Result<Image, CloudError> {
        let body = req.to_json()?;
        let v: Value = self
            .send_json(Call::json(
                Service::Image,
                Method::POST,
                "/images",
                &body,
                Retry::Unsafe,
            ))
            .await?;
        decode_image(v)
    }

    /// `PUT /v2/images/{id}/file`, streaming the file (never read whole into memory). Retried
    /// only when Glance provably did not take the data (429, connection refused): a failed
    /// upload may leave the image `killed`, and the caller then deletes and recreates it.
    pub async fn upload_image(
        &self,
        id: &str,
        file: &Path,
        progress: Option<ProgressFn>,
    ) -> Result<(), CloudError> {
        let len = tokio::fs::metadata(file)
            .await
            .map_err(|source| CloudError::Io {
                path: file.display().to_string(),
                source,
            })?
            .len();
        let path = format!("/images/{}/file", path_id(id)?);
        self.send_empty(Call {
            service: Service::Image,
            method: Method::PUT,
            path: &path,
            query: Vec::new(),
            body: Body::File(FileBody {
                path: file.to_owned(),
                len,
                progress,
            }),
            retry: Retry::Unsafe,
        })
        .await
    }

    pub async fn get_image(&self, id: &str) -> Result<Image, CloudError> {
        let path = format!("/images/{}", path_id(id)?);
        let v: Value = self.send_json(Call::get(Service::Image, &path)).await?;
        decode_image(v)
    }

    /// `GET /v2/images` with filters, every page (following `next`).
    pub async fn list_images(&self, q: &ImageQuery) -> Result<Vec<Image>, CloudError> {
        let mut query: Vec<(String, String)> = Vec::new();
        for (k, v) in [
            ("name", &q.name),
            ("status", &q.status),
            ("visibility", &q.visibility),
        ] {
            if let Some(v) = v {
                query.push((k.into(), v.clone()));
            }
        }
        for (k, v) in &q.properties {
            query.push((k.clone(), v.clone()));
        }
        if let Some(l) = q.page_size {
            query.push(("limit".into(), l.to_string()));
        }
        let raw = self
            .paginate(Service::Image, "/images", query, |p: ImagesPage| {
                (p.images, p.next)
            })
            .await?;
        raw.into_iter().map(decode_image).collect()
    }

    /// `DELETE /v2/images/{id}`; `NotFound` means it is already gone.
    pub async fn delete_image(&self, id: &str) -> Result<(), CloudError> {
        let path = format!("/images/{}", path_id(id)?);
        self.send_empty(Call::delete(Service::Image, &path)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// api-surface.md §3, the 201 body of POST /v2/images.
    const CREATED: &str = r#"{"id": "6491c0b7-aaaa", "name": "np-img-0001", "status": "queued", "disk_format": "qcow2", "container_format": "bare",
     "visibility": "private", "size": null, "virtual_size": null, "checksum": null, "os_hash_algo": null, "os_hash_value": null,
     "protected": false, "min_ram": 0, "min_disk": 0, "owner": "4c1a", "os_hidden": false, "tags": [],
     "created_at": "2026-11-23T23:11:54Z", "updated_at": "2026-11-23T23:11:54Z",
     "self": "/v2/images/6491c0b7-aaaa", "file": "/v2/images/6491c0b7-aaaa/file", "schema": "/v2/schemas/image",
     "nodepool_build_id": "0001", "nodepool_upload_id": "0001", "nodepool_provider_name": "p1"}"#;

    #[test]
    fn image_properties_are_split_from_attributes() {
        let img = image_from(serde_json::from_str(CREATED).unwrap()).unwrap();
        assert_eq!(img.status, ImageStatus::Queued);
        assert_eq!(img.size, None);
        assert_eq!(
            img.created_at.unwrap().to_rfc3339(),
            "2026-11-23T23:11:54+00:00"
        );
        assert_eq!(
            img.properties.keys().collect::<Vec<_>>(),
            [
                "nodepool_build_id",
                "nodepool_provider_name",
                "nodepool_upload_id"
            ]
        );
        let active = image_from(
            json!({"id": "i", "status": "active", "size": 200704, "checksum": "abc",
            "stores": "fs", "os_hash_algo": "sha512", "hw_disk_bus": "scsi", "n": 5}),
        )
        .unwrap();
        assert_eq!(active.status, ImageStatus::Active);
        assert_eq!(active.size, Some(200704));
        assert_eq!(active.properties["hw_disk_bus"], "scsi");
        assert_eq!(active.properties["n"], "5");
        assert!(!active.properties.contains_key("stores"));
        assert!(image_from(json!({"name": "no id"})).is_none());
    }

    #[test]
    fn images_page_next() {
        let p: ImagesPage = serde_json::from_str(&format!(
            r#"{{"images": [{CREATED}], "first": "/v2/images?limit=1", "schema": "/v2/schemas/images", "next": "/v2/images?limit=1&marker=6491c0b7-aaaa"}}"#
        ))
        .unwrap();
        assert_eq!(
            p.next.as_deref(),
            Some("/v2/images?limit=1&marker=6491c0b7-aaaa")
        );
        let last: ImagesPage =
            serde_json::from_str(r#"{"images": [], "first": "/v2/images"}"#).unwrap();
        assert!(last.next.is_none());
    }

    #[test]
    fn create_body() {
        let mut req = CreateImage::new("np-img-0001", "qcow2");
        req.properties
            .insert("nodepool_build_id".into(), "0001".into());
        assert_eq!(
            req.to_json().unwrap(),
            json!({"name": "np-img-0001", "disk_format": "qcow2", "container_format": "bare",
                   "visibility": "private", "nodepool_build_id": "0001"})
        );
        req.properties.insert("status".into(), "active".into());
        assert!(matches!(
            req.to_json(),
            Err(CloudError::InvalidRequest { .. })
        ));
    }

    #[tokio::test]
    async fn file_stream_chunks_with_progress() {
        use std::sync::Mutex;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let mut stream = Box::pin(
            file_stream(&FileBody {
                path: path.clone(),
                len: data.len() as u64,
                progress: Some(Arc::new(move |p| s2.lock().unwrap().push(p))),
            })
            .await
            .unwrap(),
        );
        let mut got = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            assert!(chunk.len() <= 256 * 1024);
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, data);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen.first(),
            Some(&UploadProgress {
                sent: 0,
                total: 700_000
            })
        );
        assert_eq!(
            seen.last(),
            Some(&UploadProgress {
                sent: 700_000,
                total: 700_000
            })
        );
        assert!(seen.len() >= 4, "progress per chunk: {seen:?}");
        let missing = file_stream(&FileBody {
            path: dir.path().join("nope"),
            len: 0,
            progress: None,
        })
        .await;
        assert!(matches!(missing, Err(CloudError::Io { .. })));
    }
}
