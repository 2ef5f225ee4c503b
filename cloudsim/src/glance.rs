//! Glance v2: version discovery (300), schemas, image create/list/show/patch/delete and streamed upload.

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Extension, Json, Router};
use chrono::Utc;
use http_body_util::BodyExt;
use md5::Digest as _;
use serde_json::{Map, Value, json};

use crate::SharedSim;
use crate::keystone::{Caller, require_token};
use crate::nova::{encode_query, page_limit};
use crate::state::{Image, iso};

/// Glance's `limit_param_default` and `api_limit_max`.
const DEFAULT_PAGE: usize = 25;
const MAX_PAGE: usize = 1000;
const DISK_FORMATS: &[&str] = &[
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];
const CONTAINER_FORMATS: &[&str] = &[
    "ami",
    "ari",
    "aki",
    "bare",
    "ovf",
    "ova",
    "docker",
    "compressed",
];
/// Attributes a client may not set.
const READ_ONLY: &[&str] = &[
    "status",
    "size",
    "virtual_size",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "created_at",
    "updated_at",
    "self",
    "file",
    "schema",
    "direct_url",
    "locations",
    "owner",
    "stores",
];
const QCOW2_MAGIC: &[u8] = b"QFI\xfb";

pub fn routes(sim: SharedSim) -> Router {
    let api = Router::new()
        .route("/image/v2/images", get(list_images).post(create_image))
        .route(
            "/image/v2/images/{id}",
            get(show_image).delete(delete_image).patch(patch_image),
        )
        .route("/image/v2/images/{id}/file", put(upload))
        .route("/image/v2/schemas/image", get(schema_image))
        .route("/image/v2/schemas/images", get(schema_images))
        .route_layer(middleware::from_fn_with_state(sim.clone(), require_token));
    Router::new()
        .route("/image", get(versions))
        .route("/image/versions", get(versions_ok))
        .route("/image/v2", get(versions))
        .with_state(sim.clone())
        .merge(api.with_state(sim))
}

/// Glance's (webob's) HTML error page.
pub fn html_error(status: StatusCode, message: &str) -> Response {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let body = format!(
        "<html>\n <head>\n  <title>{title}</title>\n </head>\n <body>\n  <h1>{title}</h1>\n  {}<br /><br />\n\n\n\n </body>\n</html>",
        html_escape(message)
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
        body,
    )
        .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn not_found(id: &str) -> Response {
    html_error(
        StatusCode::NOT_FOUND,
        &format!("No image found with ID {id}"),
    )
}

fn version_list(sim: &SharedSim) -> Value {
    let href = format!("{}/v2/", sim.image_url());
    let versions: Vec<Value> = (0..=17)
        .rev()
        .map(|minor| {
            let status = if minor == 17 { "CURRENT" } else { "SUPPORTED" };
            json!({"id": format!("v2.{minor}"), "status": status, "links": [{"rel": "self", "href": href}]})
        })
        .collect();
    json!({ "versions": versions })
}

async fn versions(State(sim): State<SharedSim>) -> Response {
    (StatusCode::MULTIPLE_CHOICES, Json(version_list(&sim))).into_response()
}

async fn versions_ok(State(sim): State<SharedSim>) -> Response {
    Json(version_list(&sim)).into_response()
}

fn visible(img: &Image, caller: &Caller) -> bool {
    img.owner == caller.project_id || img.visibility == "public" || img.visibility == "community"
}

/// The image as Glance shows it: base attributes plus custom properties at top level.
pub fn image_json(img: &Image) -> Value {
    let active = img.status == "active";
    let mut v = json!({
        "id": img.id, "name": img.name, "status": img.status,
        "disk_format": img.disk_format, "container_format": img.container_format,
        "visibility": img.visibility, "size": img.size,
        "virtual_size": if active { img.properties.get("__virtual_size").cloned().unwrap_or(json!(img.size)) } else { Value::Null },
        "checksum": img.checksum,
        "os_hash_algo": if img.os_hash_value.is_some() { json!("sha512") } else { Value::Null },
        "os_hash_value": img.os_hash_value,
        "protected": img.protected, "min_ram": img.min_ram, "min_disk": img.min_disk,
        "owner": img.owner, "os_hidden": false, "tags": img.tags,
        "created_at": iso(img.created), "updated_at": iso(img.updated),
        "self": format!("/v2/images/{}", img.id), "file": format!("/v2/images/{}/file", img.id),
        "schema": "/v2/schemas/image",
    });
    let m = v.as_object_mut().expect("object");
    if active {
        m.insert("stores".into(), json!("fs"));
    }
    for (k, val) in &img.properties {
        if !k.starts_with("__") {
            m.insert(k.clone(), val.clone());
        }
    }
    v
}

/// The value of attribute `key` as a filterable string.
fn attr_string(img: &Image, key: &str) -> Option<String> {
    let v = match key {
        "name" => img.name.clone()?,
        "status" => img.status.clone(),
        "visibility" => img.visibility.clone(),
        "owner" => img.owner.clone(),
        "id" => img.id.clone(),
        "disk_format" => img.disk_format.clone()?,
        "container_format" => img.container_format.clone()?,
        "protected" => img.protected.to_string(),
        "size" => img.size?.to_string(),
        "checksum" => img.checksum.clone()?,
        "os_hidden" => "false".to_string(),
        _ => match img.properties.get(key)? {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    };
    Some(v)
}

fn matches_filter(img: &Image, key: &str, wanted: &str) -> bool {
    if key == "tag" {
        return img.tags.iter().any(|t| t == wanted);
    }
    if key == "os_hidden" {
        // Nothing is hidden here; os_hidden=true lists hidden images only.
        return !wanted.eq_ignore_ascii_case("true");
    }
    let Some(have) = attr_string(img, key) else {
        return false;
    };
    match wanted.strip_prefix("in:") {
        Some(list) => list.split(',').any(|w| w == have),
        None => have.eq_ignore_ascii_case(wanted) && (key == "protected" || have == wanted),
    }
}

async fn list_images(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let limit = match q.iter().find(|(k, _)| k == "limit") {
        None => DEFAULT_PAGE,
        Some(_) => match page_limit(&q, MAX_PAGE) {
            Ok(l) => l,
            Err(e) => return html_error(StatusCode::BAD_REQUEST, &e),
        },
    };
    let marker = q
        .iter()
        .find(|(k, _)| k == "marker")
        .map(|(_, v)| v.as_str());
    let descending = !q.iter().any(|(k, v)| k == "sort_dir" && v == "asc");
    let filters: Vec<(&str, &str)> = q
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "limit" | "marker" | "sort_key" | "sort_dir" | "sort"
            )
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let store = sim.store();
    let rows = match store.images.page_from(marker, descending) {
        Ok(r) => r,
        Err(_) => {
            return html_error(
                StatusCode::BAD_REQUEST,
                &format!("marker {} could not be found.", marker.unwrap_or_default()),
            );
        }
    };
    let page: Vec<&Image> = rows
        .filter(|i| visible(i, &caller))
        .filter(|i| {
            filters.iter().all(|(k, v)| matches_filter(i, k, v))
                && (filters.iter().any(|(k, _)| *k == "visibility") || i.visibility != "community")
        })
        .take(limit)
        .collect();
    let base: Vec<(String, String)> = q
        .iter()
        .filter(|(k, _)| k != "marker" && k != "limit")
        .cloned()
        .collect();
    let mut first = base.clone();
    first.push(("limit".into(), limit.to_string()));
    let mut body = json!({
        "images": page.iter().map(|i| image_json(i)).collect::<Vec<_>>(),
        "first": format!("/v2/images?{}", encode_query(&first)),
        "schema": "/v2/schemas/images",
    });
    if limit > 0
        && page.len() == limit
        && let Some(last) = page.last()
    {
        let mut next = base;
        next.push(("limit".into(), limit.to_string()));
        next.push(("marker".into(), last.id.clone()));
        body["next"] = json!(format!("/v2/images?{}", encode_query(&next)));
    }
    Json(body).into_response()
}

async fn show_image(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let store = sim.store();
    match store.images.get(&id).filter(|i| visible(i, &caller)) {
        Some(i) => Json(image_json(i)).into_response(),
        None => not_found(&id),
    }
}

fn str_field(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, Response> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(html_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "Provided object does not match schema 'image': {other} is not of type 'string'"
            ),
        )),
    }
}

/// Applies one attribute (base or custom) to an image, as create and PATCH do.
fn set_attr(img: &mut Image, key: &str, value: &Value, creating: bool) -> Result<(), Response> {
    let bad = |m: String| Err(html_error(StatusCode::BAD_REQUEST, &m));
    if READ_ONLY.contains(&key) {
        return Err(html_error(
            StatusCode::FORBIDDEN,
            &format!("Attribute '{key}' is read-only."),
        ));
    }
    match key {
        "id" if creating => match value.as_str().and_then(|s| uuid::Uuid::parse_str(s).ok()) {
            Some(u) => img.id = u.to_string(),
            None => return bad("Provided object does not match schema 'image': 'id' is not a valid UUID".into()),
        },
        "id" => return Err(html_error(StatusCode::FORBIDDEN, "Attribute 'id' is read-only.")),
        "name" => img.name = value.as_str().map(str::to_string),
        "disk_format" | "container_format" => {
            if !creating && img.status != "queued" {
                return Err(html_error(
                    StatusCode::FORBIDDEN,
                    &format!("Attribute {key} can be only replaced for a queued image."),
                ));
            }
            let allowed = if key == "disk_format" { DISK_FORMATS } else { CONTAINER_FORMATS };
            match value.as_str() {
                Some(f) if allowed.contains(&f) => {
                    if key == "disk_format" {
                        img.disk_format = Some(f.to_string());
                    } else {
                        img.container_format = Some(f.to_string());
                    }
                }
                _ => return bad(format!("Invalid value '{value}' for attribute '{key}'")),
            }
        }
        "visibility" => match value.as_str() {
            Some(v @ ("public" | "private" | "shared" | "community")) => img.visibility = v.to_string(),
            _ => return bad(format!("Invalid visibility value: {value}")),
        },
        "protected" => match value.as_bool() {
            Some(b) => img.protected = b,
            None => return bad("Provided object does not match schema 'image': 'protected' is not of type 'boolean'".into()),
        },
        "min_disk" | "min_ram" => match value.as_u64() {
            Some(n) if key == "min_disk" => img.min_disk = n,
            Some(n) => img.min_ram = n,
            None => return bad(format!("Provided object does not match schema 'image': '{key}' is not of type 'integer'")),
        },
        "tags" => match value.as_array() {
            Some(tags) => img.tags = tags.iter().filter_map(|t| t.as_str().map(str::to_string)).collect(),
            None => return bad("Provided object does not match schema 'image': 'tags' is not of type 'array'".into()),
        },
        "os_hidden" => {}
        _ if key.starts_with("__") => return bad(format!("Invalid property name {key}")),
        _ => {
            if !(value.is_string() || value.is_null()) {
                return bad(format!(
                    "Provided object does not match schema 'image': {value} is not of type 'string'"
                ));
            }
            if value.is_null() {
                img.properties.remove(key);
            } else {
                img.properties.insert(key.to_string(), value.clone());
            }
        }
    }
    Ok(())
}

async fn create_image(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    let Some(obj) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.as_object().cloned())
    else {
        return html_error(StatusCode::BAD_REQUEST, "Body expected in request.");
    };
    if let Err(r) = str_field(&obj, "name") {
        return r;
    }
    let mut store = sim.store();
    let now = store.stamp();
    let mut img = Image {
        id: uuid::Uuid::new_v4().to_string(),
        name: None,
        status: "queued".into(),
        disk_format: None,
        container_format: None,
        visibility: "shared".into(),
        owner: caller.project_id.clone(),
        protected: false,
        min_disk: 0,
        min_ram: 0,
        size: None,
        checksum: None,
        os_hash_value: None,
        tags: vec![],
        created: now,
        updated: now,
        properties: Map::new(),
    };
    for (k, v) in &obj {
        if let Err(r) = set_attr(&mut img, k, v, true) {
            return r;
        }
    }
    if store.images.get(&img.id).is_some() {
        return html_error(
            StatusCode::CONFLICT,
            &format!("Image with identifier {} already exists!", img.id),
        );
    }
    let body = image_json(&img);
    let location = format!("{}/v2/images/{}", sim.image_url(), img.id);
    store.images.insert(img);
    let mut r = (StatusCode::CREATED, Json(body)).into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(
        "openstack-image-import-methods",
        HeaderValue::from_static("glance-direct,web-download,copy-image"),
    );
    h.insert("openstack-image-store-ids", HeaderValue::from_static("fs"));
    r
}

async fn patch_image(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Some(ops) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.as_array().cloned())
    else {
        return html_error(
            StatusCode::BAD_REQUEST,
            "Expected a list of JSON patch operations.",
        );
    };
    let mut store = sim.store();
    let Some(current) = store.images.get(&id).filter(|i| visible(i, &caller)) else {
        return not_found(&id);
    };
    if current.owner != caller.project_id {
        return html_error(
            StatusCode::FORBIDDEN,
            "You are not permitted to modify this image.",
        );
    }
    let mut img = current.clone();
    for op in &ops {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or("");
        let Some(key) = op
            .get("path")
            .and_then(Value::as_str)
            .and_then(|p| p.strip_prefix('/'))
        else {
            return html_error(
                StatusCode::BAD_REQUEST,
                "Unable to find 'path' in JSON Schema change",
            );
        };
        let key = key.replace("~1", "/").replace("~0", "~");
        let result = match kind {
            "add" | "replace" => {
                let Some(value) = op.get("value") else {
                    return html_error(
                        StatusCode::BAD_REQUEST,
                        "Unable to find 'value' in JSON Schema change",
                    );
                };
                if kind == "replace" && attr_string(&img, &key).is_none() && !is_base(&key) {
                    return html_error(
                        StatusCode::CONFLICT,
                        &format!("Property {key} does not exist."),
                    );
                }
                set_attr(&mut img, &key, value, false)
            }
            "remove" => {
                if is_base(&key) {
                    Err(html_error(
                        StatusCode::FORBIDDEN,
                        &format!("Attribute '{key}' is read-only."),
                    ))
                } else if img.properties.remove(&key).is_none() {
                    Err(html_error(
                        StatusCode::CONFLICT,
                        &format!("Property {key} does not exist."),
                    ))
                } else {
                    Ok(())
                }
            }
            other => Err(html_error(
                StatusCode::BAD_REQUEST,
                &format!("Invalid operation: `{other}`"),
            )),
        };
        if let Err(r) = result {
            return r;
        }
    }
    img.updated = Utc::now();
    let body = image_json(&img);
    store.images.insert(img);
    Json(body).into_response()
}

fn is_base(key: &str) -> bool {
    matches!(
        key,
        "id" | "name"
            | "disk_format"
            | "container_format"
            | "visibility"
            | "protected"
            | "min_disk"
            | "min_ram"
            | "tags"
            | "os_hidden"
    ) || READ_ONLY.contains(&key)
}

async fn delete_image(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let mut store = sim.store();
    match store.images.get(&id).filter(|i| visible(i, &caller)) {
        None => not_found(&id),
        Some(i) if i.owner != caller.project_id => html_error(
            StatusCode::FORBIDDEN,
            "You are not permitted to delete this image.",
        ),
        Some(i) if i.protected => html_error(
            StatusCode::FORBIDDEN,
            &format!("Image {id} is protected and cannot be deleted."),
        ),
        Some(_) => {
            store.images.remove(&id);
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

/// Streams the upload through md5 + sha512, keeping only the digests and the size.
async fn upload(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let disk_format = {
        let mut store = sim.store();
        let Some(img) = store.images.get_mut(&id).filter(|i| visible(i, &caller)) else {
            return not_found(&id);
        };
        if img.owner != caller.project_id {
            return html_error(
                StatusCode::FORBIDDEN,
                "You are not permitted to upload data for this image.",
            );
        }
        if img.status != "queued" {
            return html_error(
                StatusCode::CONFLICT,
                &format!(
                    "Image status transition from {} to saving is not allowed",
                    img.status
                ),
            );
        }
        if img.disk_format.is_none() || img.container_format.is_none() {
            return html_error(
                StatusCode::BAD_REQUEST,
                "Properties disk_format, container_format must be set prior to saving data.",
            );
        }
        img.status = "saving".into();
        img.disk_format.clone().unwrap_or_default()
    };
    let result = digest_body(req.into_body()).await;
    let mut store = sim.store();
    let Some(img) = store.images.get_mut(&id) else {
        return html_error(StatusCode::GONE, "Image was deleted during upload.");
    };
    let upload = match result {
        Ok(u) => u,
        Err(e) => {
            img.status = "queued".into();
            return html_error(StatusCode::BAD_REQUEST, &format!("Error in upload: {e}"));
        }
    };
    if disk_format == "qcow2" && !upload.head.starts_with(QCOW2_MAGIC) {
        img.status = "queued".into();
        return html_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Image disk_format qcow2 does not match stream data raw",
        );
    }
    let virtual_size = if disk_format == "qcow2" && upload.head.len() >= 32 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&upload.head[24..32]);
        u64::from_be_bytes(b)
    } else {
        upload.size
    };
    img.size = Some(upload.size);
    img.checksum = Some(upload.md5);
    img.os_hash_value = Some(upload.sha512);
    img.properties
        .insert("__virtual_size".into(), json!(virtual_size));
    img.status = "active".into();
    img.updated = Utc::now();
    StatusCode::NO_CONTENT.into_response()
}

/// Size and digests of an upload, plus its first bytes (for format inspection).
pub struct Upload {
    pub size: u64,
    pub md5: String,
    pub sha512: String,
    pub head: Vec<u8>,
}

/// Reads a body chunk by chunk; memory use is one chunk plus 64 header bytes.
pub async fn digest_body(body: Body) -> Result<Upload, axum::Error> {
    let mut body = body;
    let mut md5 = md5::Md5::new();
    let mut sha512 = sha2::Sha512::new();
    let mut size = 0u64;
    let mut head = Vec::with_capacity(64);
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let Ok(data) = frame.into_data() {
            if head.len() < 64 {
                let take = (64 - head.len()).min(data.len());
                head.extend_from_slice(&data[..take]);
            }
            size += data.len() as u64;
            md5.update(&data);
            sha512.update(&data);
        }
    }
    Ok(Upload {
        size,
        md5: hex::encode(md5.finalize()),
        sha512: hex::encode(sha512.finalize()),
        head,
    })
}

fn image_schema() -> Value {
    let string =
        |desc: &str| json!({"type": ["null", "string"], "description": desc, "maxLength": 255});
    json!({
        "name": "image",
        "additionalProperties": {"type": "string"},
        "properties": {
            "id": {"type": "string", "description": "An identifier for the image", "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"},
            "name": string("Descriptive name for the image"),
            "status": {"type": "string", "readOnly": true, "description": "Status of the image",
                       "enum": ["queued", "saving", "active", "killed", "deleted", "uploading", "importing", "pending_delete", "deactivated"]},
            "visibility": {"type": "string", "description": "Scope of image accessibility", "enum": ["community", "public", "private", "shared"]},
            "protected": {"type": "boolean", "description": "If true, image will not be deletable."},
            "os_hidden": {"type": "boolean", "description": "If true, image will not appear in default image list response."},
            "checksum": {"type": ["null", "string"], "readOnly": true, "maxLength": 32, "description": "md5 hash of image contents."},
            "os_hash_algo": {"type": ["null", "string"], "readOnly": true, "maxLength": 64, "description": "Algorithm to calculate the os_hash_value"},
            "os_hash_value": {"type": ["null", "string"], "readOnly": true, "maxLength": 128, "description": "Hexdigest of the image contents using the algorithm specified by the os_hash_algo"},
            "owner": {"type": ["null", "string"], "description": "Owner of the image", "maxLength": 255},
            "size": {"type": ["null", "integer"], "readOnly": true, "description": "Size of image file in bytes"},
            "virtual_size": {"type": ["null", "integer"], "readOnly": true, "description": "Virtual size of image in bytes"},
            "container_format": {"type": ["null", "string"], "description": "Format of the container", "enum": [null, "ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"]},
            "disk_format": {"type": ["null", "string"], "description": "Format of the disk", "enum": [null, "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"]},
            "created_at": {"type": "string", "readOnly": true, "description": "Date and time of image registration"},
            "updated_at": {"type": "string", "readOnly": true, "description": "Date and time of the last image modification"},
            "tags": {"type": "array", "description": "List of strings related to the image", "items": {"type": "string", "maxLength": 255}},
            "direct_url": {"type": "string", "readOnly": true, "description": "URL to access the image file kept in external store"},
            "min_ram": {"type": "integer", "description": "Amount of ram (in MB) required to boot image."},
            "min_disk": {"type": "integer", "description": "Amount of disk space (in GB) required to boot image."},
            "self": {"type": "string", "readOnly": true, "description": "An image self url"},
            "file": {"type": "string", "readOnly": true, "description": "An image file url"},
            "stores": {"type": "string", "readOnly": true, "description": "Store in which image data resides."},
            "schema": {"type": "string", "readOnly": true, "description": "An image schema url"},
            "locations": {"type": "array", "description": "A set of URLs to access the image file kept in external store"}
        },
        "links": [
            {"rel": "self", "href": "{self}"}, {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"}
        ]
    })
}

async fn schema_image() -> Json<Value> {
    Json(image_schema())
}

async fn schema_images() -> Json<Value> {
    Json(json!({
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image_schema()},
            "schema": {"type": "string"}, "first": {"type": "string"}, "next": {"type": "string"}
        },
        "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                  {"rel": "describedby", "href": "{schema}"}]
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn digests_stream_without_buffering_everything() {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            (0..100).map(|i| Ok(vec![i as u8; 10_000])).collect();
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        let u = digest_body(body).await.unwrap();
        assert_eq!(u.size, 1_000_000);
        assert_eq!(u.head.len(), 64);
        let mut all = Vec::new();
        for i in 0..100u8 {
            all.extend(std::iter::repeat_n(i, 10_000));
        }
        assert_eq!(u.md5, hex::encode(md5::Md5::digest(&all)));
        assert_eq!(u.sha512, hex::encode(sha2::Sha512::digest(&all)));
    }

    #[test]
    fn html_errors_look_like_webob() {
        let r = html_error(StatusCode::NOT_FOUND, "No image found with ID x");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=UTF-8"
        );
    }

    #[test]
    fn filters_match_properties_and_in_lists() {
        let mut img = Image {
            id: "i1".into(),
            name: Some("np-img".into()),
            status: "active".into(),
            disk_format: Some("qcow2".into()),
            container_format: Some("bare".into()),
            visibility: "private".into(),
            owner: "p".into(),
            protected: false,
            min_disk: 0,
            min_ram: 0,
            size: Some(1),
            checksum: None,
            os_hash_value: None,
            tags: vec![],
            created: Utc::now(),
            updated: Utc::now(),
            properties: Map::new(),
        };
        img.properties
            .insert("nodepool_build_id".into(), json!("0002"));
        assert!(matches_filter(&img, "nodepool_build_id", "0002"));
        assert!(!matches_filter(&img, "nodepool_build_id", "0003"));
        assert!(matches_filter(&img, "name", "in:other,np-img"));
        assert!(matches_filter(&img, "status", "active"));
        assert!(!matches_filter(&img, "missing", "x"));
        assert!(set_attr(&mut img, "status", &json!("active"), false).is_err());
        assert!(set_attr(&mut img, "disk_format", &json!("exe"), true).is_err());
    }
}
