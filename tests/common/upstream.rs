//! What upstream Nodepool leaves in a cloud, for the switch-over tests (`image-adopt`).

#![allow(dead_code)]

use nodepool::cloud::CreateImage;

/// An image record as upstream names and marks its uploads: `{image_name}-{timestamp}` and its
/// ownership properties (provider, build id, upload id). Raw, so any bytes are valid data.
pub fn image(name: &str, provider: &str, build_id: &str, upload_id: &str) -> CreateImage {
    let mut req = CreateImage::new(name, "raw");
    req.properties = [
        ("nodepool_provider_name", provider),
        ("nodepool_build_id", build_id),
        ("nodepool_upload_id", upload_id),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    req
}
