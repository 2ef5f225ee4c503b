//! The daemon's HTTP API (axum): node requests for CI systems, upstream's dashboard lists, status, readiness, metrics and the git push webhook.
//!
//! | route                              | auth   | what                                        |
//! |------------------------------------|--------|---------------------------------------------|
//! | `POST /api/v1/requests`            | bearer | ask for nodes → 201 `{id, state}`           |
//! | `GET /api/v1/requests/{id}`        | bearer | state, nodes, addresses, host keys          |
//! | `POST /api/v1/nodes/{id}/release`  | bearer | the consumer is done: used → deleted        |
//! | `POST /api/v1/nodes/{id}/hold`     | bearer | hold for an operator `{reason, expires}`    |
//! | `GET /node-list` … `/label-list`   | none   | upstream's tables (`?fields=`, `?node_id=`); its objects with `Accept: application/json` |
//! | `GET /status`, `/ready`, `/livez`  | none   | JSON status; 503 until every provider ran   |
//! | `GET /metrics`                     | none   | Prometheus text                             |
//! | `POST /hooks/git`                  | HMAC   | push webhook (`X-Hub-Signature-256`)        |
//!
//! Bearer tokens are compared in constant time; with no token configured every `/api/v1`
//! call is refused. Bodies are limited ([`MAX_BODY_BYTES`], and the webhook's own limit).
//! Errors are JSON `{"error": "..."}` with a fitting status code.

mod listing;

use crate::daemon::Daemon;
use crate::ops::OpError;
use crate::secret::Secret;
use crate::state::{NewRequest, Node, NodeRequest, StateError};
use crate::watch::{self, Trigger, WatchError};
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Largest request body of the `/api/v1` routes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the handlers share.
pub struct ApiState {
    pub daemon: Daemon,
    /// Accepted bearer tokens (empty: the node API refuses everything).
    pub tokens: Vec<Secret>,
    /// The webhook's HMAC secret (`None`: every delivery is refused).
    pub webhook_secret: Option<Secret>,
}

/// Errors as the API reports them.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status(),
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        if matches!(self, ApiError::Unauthorized(_)) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid"));
        }
        response
    }
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError::BadRequest(e.body_text())
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Refused(m) if m.contains("does not exist") => ApiError::NotFound(m),
            OpError::Refused(m) => ApiError::Conflict(m),
            OpError::State(StateError::Invalid(m)) => ApiError::Conflict(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// The router, ready to serve.
pub fn router(state: Arc<ApiState>) -> Router {
    let api = Router::new()
        .route("/api/v1/requests", post(create_request))
        .route("/api/v1/requests/{id}", get(get_request))
        .route("/api/v1/nodes/{id}/release", post(release_node))
        .route("/api/v1/nodes/{id}/hold", post(hold_node))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    let hooks = Router::new()
        .route("/hooks/git", post(git_hook))
        .layer(DefaultBodyLimit::max(watch::MAX_WEBHOOK_BODY_BYTES));
    Router::new()
        .route("/node-list", get(node_list))
        .route("/image-list", get(image_list))
        .route("/dib-image-list", get(dib_image_list))
        .route("/request-list", get(request_list))
        .route("/label-list", get(label_list))
        .route("/status", get(status))
        .route("/ready", get(ready))
        .route("/livez", get(livez))
        .route("/metrics", get(metrics))
        .merge(api)
        .merge(hooks)
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .with_state(state)
}

/// Constant-time equality (the length is not secret).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorize(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    if state.tokens.is_empty() {
        return Err(ApiError::Unauthorized(
            "no API tokens are configured on this daemon (--api-token-file)".into(),
        ));
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::Unauthorized("a bearer token is required".into()))?;
    let mut ok = false;
    for t in &state.tokens {
        ok |= ct_eq(t.expose().as_bytes(), presented.as_bytes());
    }
    if ok {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "the bearer token is not valid".into(),
        ))
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    labels: Vec<String>,
    requestor: String,
    #[serde(default = "default_priority")]
    priority: i64,
    #[serde(default)]
    tenant: Option<String>,
}

/// Upstream's default request priority (lower is served first).
fn default_priority() -> i64 {
    100
}

#[derive(Debug, Serialize)]
struct Created {
    id: String,
    state: String,
}

async fn create_request(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Result<Json<CreateRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    authorize(&state, &headers)?;
    let Json(body) = body?;
    if body.labels.is_empty() {
        return Err(ApiError::BadRequest("labels must not be empty".into()));
    }
    if body.requestor.trim().is_empty() {
        return Err(ApiError::BadRequest("requestor must not be empty".into()));
    }
    let active = state
        .daemon
        .active()
        .ok_or_else(|| ApiError::Unavailable("no valid config has been loaded yet".into()))?;
    let created = {
        let mut store = state.daemon.store();
        crate::ops::nodes::request_in(
            &active.loaded.config,
            &mut store,
            &NewRequest {
                labels: body.labels,
                requestor: body.requestor,
                priority: body.priority,
                tenant: body.tenant,
            },
        )
        .map_err(|e| match e {
            OpError::Refused(m) => ApiError::BadRequest(m),
            other => other.into(),
        })?
    };
    tracing::info!(request = %created.id, labels = ?created.labels, requestor = %created.requestor, "node request created");
    state.daemon.nudge_providers();
    Ok((
        StatusCode::CREATED,
        Json(Created {
            id: created.id,
            state: created.state.to_string(),
        }),
    ))
}

/// A node as a consumer needs it: where and how to connect.
#[derive(Debug, Serialize)]
struct NodeView {
    id: String,
    label: String,
    provider: String,
    pool: String,
    state: String,
    hostname: String,
    interface_ip: Option<String>,
    public_ipv4: Option<String>,
    private_ipv4: Option<String>,
    public_ipv6: Option<String>,
    region: Option<String>,
    az: Option<String>,
    cloud: Option<String>,
    connection_type: Option<String>,
    connection_port: Option<u16>,
    username: Option<String>,
    python_path: Option<String>,
    shell_type: Option<String>,
    host_keys: Vec<String>,
    /// The pool's `node-attributes` at launch.
    attributes: std::collections::BTreeMap<String, serde_json::Value>,
}

impl From<&Node> for NodeView {
    fn from(n: &Node) -> Self {
        let d = &n.details;
        NodeView {
            id: n.id.clone(),
            label: n.label.clone(),
            provider: n.provider.clone(),
            pool: n.pool.clone(),
            state: n.state.to_string(),
            hostname: n.hostname.clone(),
            interface_ip: d.interface_ip.clone(),
            public_ipv4: d.public_ipv4.clone(),
            private_ipv4: d.private_ipv4.clone(),
            public_ipv6: d.public_ipv6.clone(),
            region: d.region.clone(),
            az: d.az.clone(),
            cloud: d.cloud.clone(),
            connection_type: d.connection_type.clone(),
            connection_port: d.connection_port,
            username: d.username.clone(),
            python_path: d.python_path.clone(),
            shell_type: d.shell_type.clone(),
            host_keys: d.host_keys.clone(),
            attributes: d.attributes.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
struct RequestView {
    #[serde(flatten)]
    request: NodeRequest,
    #[serde(rename = "node_details")]
    node_details: Vec<NodeView>,
}

async fn get_request(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<RequestView>, ApiError> {
    authorize(&state, &headers)?;
    let store = state.daemon.store();
    let reader = store.read();
    let request = reader
        .request(&id)?
        .ok_or_else(|| ApiError::NotFound(format!("request {id} does not exist")))?;
    let ids: Vec<&str> = request.nodes.iter().map(String::as_str).collect();
    let nodes = reader.nodes_by_ids(&ids)?;
    Ok(Json(RequestView {
        node_details: nodes.iter().map(NodeView::from).collect(),
        request,
    }))
}

async fn release_node(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<NodeView>, ApiError> {
    authorize(&state, &headers)?;
    let node = crate::ops::nodes::release_in(&mut state.daemon.store(), &id)?;
    tracing::info!(node = %id, "node released");
    state.daemon.nudge_provider(&node.provider);
    Ok(Json(NodeView::from(&node)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldBody {
    #[serde(default)]
    reason: Option<String>,
    /// Seconds the hold lasts (none: until released).
    #[serde(default)]
    expires: Option<i64>,
}

async fn hold_node(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<NodeView>, ApiError> {
    authorize(&state, &headers)?;
    let body: HoldBody = if body.is_empty() {
        HoldBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?
    };
    if body.expires.is_some_and(|e| e <= 0) {
        return Err(ApiError::BadRequest(
            "expires must be a positive number of seconds".into(),
        ));
    }
    let node = crate::ops::nodes::hold_in(
        &mut state.daemon.store(),
        &id,
        body.reason.as_deref(),
        body.expires,
    )?;
    tracing::info!(node = %id, "node held");
    Ok(Json(NodeView::from(&node)))
}

/// Query of upstream's listings: `fields` picks the table's columns, `node_id` one node.
#[derive(Debug, Default, Deserialize)]
struct ListingQuery {
    fields: Option<String>,
    node_id: Option<String>,
}

/// A listing as upstream serves it: its objects for `Accept: application/json`, else its
/// table (with `fields` only, if given).
fn listing(headers: &HeaderMap, q: &ListingQuery, l: &listing::Listing) -> Response {
    if wants_json(headers) {
        return Json(l.json()).into_response();
    }
    let fields: Option<Vec<&str>> = q.fields.as_deref().map(|f| {
        f.split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .collect()
    });
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        l.text(fields.as_deref(), crate::state::now_unix()),
    )
        .into_response()
}

async fn node_list(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<ListingQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let nodes = state.daemon.store().read().nodes()?;
    let l = listing::nodes(&nodes, q.node_id.as_deref(), crate::state::now_unix());
    Ok(listing(&headers, &q, &l))
}

async fn image_list(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<ListingQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let uploads = state.daemon.store().read().uploads()?;
    Ok(listing(&headers, &q, &listing::uploads(&uploads)))
}

async fn dib_image_list(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<ListingQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (builds, pauses) = {
        let store = state.daemon.store();
        let read = store.read();
        (read.builds()?, read.image_pauses()?)
    };
    Ok(listing(&headers, &q, &listing::builds(&builds, &pauses)))
}

async fn request_list(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<ListingQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let requests = state.daemon.store().read().requests()?;
    Ok(listing(&headers, &q, &listing::requests(&requests)))
}

async fn label_list(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<ListingQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let active = state
        .daemon
        .active()
        .ok_or_else(|| ApiError::Unavailable("no valid config has been loaded yet".into()))?;
    let ready: BTreeMap<String, u64> = state
        .daemon
        .store()
        .read()
        .ready_counts_by_label()?
        .into_iter()
        .collect();
    let labels = active.loaded.config.labels.iter().map(|l| {
        let now = ready.get(&l.name).copied().unwrap_or(0);
        (l.name.as_str(), l.min_ready, now)
    });
    Ok(listing(&headers, &q, &listing::labels(labels)))
}

async fn status(State(state): State<Arc<ApiState>>) -> Json<crate::daemon::StatusReport> {
    Json(state.daemon.status())
}

async fn ready(State(state): State<Arc<ApiState>>) -> Response {
    if state.daemon.is_ready() {
        (StatusCode::OK, Json(serde_json::json!({"ready": true}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "ready": false,
                "error": "not every provider has been reconciled yet"
            })),
        )
            .into_response()
    }
}

async fn livez() -> Json<serde_json::Value> {
    Json(serde_json::json!({"alive": true}))
}

async fn metrics(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let text = state
        .daemon
        .render_metrics()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn git_hook(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Some(secret) = &state.webhook_secret else {
        return Err(ApiError::Unauthorized(
            WatchError::WebhookNotConfigured.to_string(),
        ));
    };
    let signature = headers
        .get(watch::trigger::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    let trigger = watch::accept_webhook(secret, &body, signature).map_err(|e| {
        tracing::warn!(error = %e, "webhook refused");
        ApiError::Unauthorized(e.to_string())
    })?;
    if let Trigger::Webhook {
        git_ref: Some(git_ref),
    } = &trigger
        && let Some(branch) = state.daemon.followed_branch()
        && git_ref != &format!("refs/heads/{branch}")
    {
        return Ok((
            StatusCode::ACCEPTED,
            Json(
                serde_json::json!({"triggered": false, "reason": format!("{git_ref} is not the branch followed")}),
            ),
        ));
    }
    tracing::info!(?trigger, "webhook accepted");
    state.daemon.trigger(trigger);
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"triggered": true})),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
        assert!(ct_eq(b"", b""));
    }
}
