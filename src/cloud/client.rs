//! `OpenStackClient`: token lifecycle, rate limit, timeouts, retries and pagination under every API call.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once, Weak};
use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use super::auth::{self, IdentityUrl, Session};
use super::error::{self, CloudError, Operation, Service};
use crate::config::credentials::CloudCredentials;
use crate::secret::Secret;

/// Tuning of one provider's client. `Default` is what a daemon should use.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Whole-request timeout of an ordinary API call (headers and body).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Whole-request timeout of an image upload.
    pub upload_timeout: Duration,
    /// Nodepool's `rate`: the minimum time between two API calls of this provider
    /// (default 1 s; zero disables the limiter).
    pub rate: Duration,
    /// Extra attempts of a retryable call (so `max_retries + 1` attempts in all).
    pub max_retries: u32,
    /// First backoff; doubled per attempt, capped at `backoff_cap`, with jitter.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// A `Retry-After` longer than this is not slept through: the call fails with `RateLimited`.
    pub max_retry_after: Duration,
    /// Nova microversion sent as `OpenStack-API-Version: compute <v>`.
    pub compute_microversion: String,
    /// Renew the token this long before it expires (at most half its lifetime).
    pub token_renew_margin: Duration,
}

/// 2.79 (Train, 2019): `networks` `auto`/`none` (2.37), the flavor embedded in a server (2.47, so
/// quota maths needs no flavor lookups and survives flavor deletion), `changes-since` with
/// `changes-before` (2.66) and the stricter response schemas; the kit's Nova shapes were captured
/// at 2.79. Clouds older than Train answer 406: lower it per provider.
pub const DEFAULT_COMPUTE_MICROVERSION: &str = "2.79";

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            upload_timeout: Duration::from_secs(3 * 3600),
            rate: Duration::from_secs(1),
            max_retries: 3,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            compute_microversion: DEFAULT_COMPUTE_MICROVERSION.into(),
            token_renew_margin: Duration::from_secs(300),
        }
    }
}

impl ClientOptions {
    /// Sets `rate` from the seconds of nodepool's `rate` setting (negative or NaN → 0).
    pub fn with_rate_secs(mut self, secs: f64) -> Self {
        self.rate = if secs.is_finite() && secs > 0.0 {
            Duration::from_secs_f64(secs)
        } else {
            Duration::ZERO
        };
        self
    }
}

/// Whether a call may be sent again after an ambiguous failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// GET, DELETE, PUT of a whole state: repeating it cannot do harm.
    Idempotent,
    /// POST that creates something: resent only when the service provably did not process it
    /// (429/Retry-After, connection never established). A create that timed out may have
    /// happened; the caller (the reconciler, via its journal and server metadata) decides.
    Unsafe,
}

pub(crate) enum Body {
    Empty,
    Json(bytes::Bytes),
    /// Streamed from a file, reopened per attempt; never read whole into memory.
    File(FileBody),
}

pub(crate) struct FileBody {
    pub path: PathBuf,
    pub len: u64,
    pub progress: Option<super::image::ProgressFn>,
}

/// One API call relative to a service's API root.
pub(crate) struct Call<'a> {
    pub service: Service,
    pub method: Method,
    /// Starts with `/`, relative to the API root (`/servers/detail`, `/images/<id>/file`).
    pub path: &'a str,
    pub query: Vec<(String, String)>,
    pub body: Body,
    pub retry: Retry,
}

impl<'a> Call<'a> {
    pub fn get(service: Service, path: &'a str) -> Self {
        Self {
            service,
            method: Method::GET,
            path,
            query: Vec::new(),
            body: Body::Empty,
            retry: Retry::Idempotent,
        }
    }

    pub fn delete(service: Service, path: &'a str) -> Self {
        Self {
            method: Method::DELETE,
            ..Self::get(service, path)
        }
    }

    pub fn json(
        service: Service,
        method: Method,
        path: &'a str,
        body: &serde_json::Value,
        retry: Retry,
    ) -> Self {
        Self {
            service,
            method,
            path,
            query: Vec::new(),
            body: Body::Json(bytes::Bytes::from(body.to_string())),
            retry,
        }
    }

    pub fn query(mut self, query: Vec<(String, String)>) -> Self {
        self.query = query;
        self
    }
}

/// Spaces calls at least `rate` apart: each caller reserves the next free slot, then sleeps until it.
#[derive(Debug)]
struct RateLimiter {
    rate: Duration,
    next_slot: std::sync::Mutex<Option<Instant>>,
}

impl RateLimiter {
    fn new(rate: Duration) -> Self {
        Self {
            rate,
            next_slot: std::sync::Mutex::new(None),
        }
    }

    /// How long to wait for the next slot, reserving it.
    fn reserve(&self, now: Instant) -> Duration {
        if self.rate.is_zero() {
            return Duration::ZERO;
        }
        let mut next = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
        let slot = next.map_or(now, |n| n.max(now));
        *next = Some(slot + self.rate);
        slot - now
    }

    async fn acquire(&self) {
        let wait = self.reserve(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Capped exponential backoff with "equal jitter": between half and all of `base * 2^attempt`.
pub(crate) fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let exp = base
        .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
        .min(cap);
    let half = exp / 2;
    half + half.mul_f64(fastrand::f64())
}

fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only if another provider was installed first, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Path segments kept verbatim in an operation name: the words of the APIs' URL shapes (plus
/// API versions). Every other segment is an id or a name and becomes `{id}`.
const FIXED_SEGMENTS: &[&str] = &[
    // Keystone
    "auth",
    "tokens",
    "projects",
    "users",
    // Nova
    "servers",
    "detail",
    "action",
    "flavors",
    "os-extra_specs",
    "limits",
    "os-availability-zone",
    "os-keypairs",
    "os-quota-sets",
    "metadata",
    "os-interface",
    "os-volume_attachments",
    // Glance
    "images",
    "file",
    "stage",
    "import",
    "members",
    "tags",
    "schemas",
    "image",
    // Neutron
    "networks",
    "subnets",
    "ports",
    "floatingips",
    "routers",
    "security-groups",
    "security-group-rules",
    "quotas",
    "extensions",
];

fn is_version_segment(s: &str) -> bool {
    s.len() > 1
        && s.starts_with('v')
        && s[1..].starts_with(|c: char| c.is_ascii_digit())
        && s[1..].chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// The bounded name of an API call, for metrics: `<service> <METHOD> <path template>`, e.g.
/// `compute GET /servers/detail`, `compute DELETE /servers/{id}`, `image PUT /images/{id}/file`,
/// `identity POST /auth/tokens`, `network GET /floatingips`.
///
/// `path` is relative to the service's API root (the catalog endpoint with its version, so
/// `/v2.1`, `/v2`, `/v2.0`, `/v3` and a project id in the endpoint never appear: the same call
/// has the same name on every cloud). The query string is dropped. A segment is kept when it
/// is one of the APIs' fixed words (`servers`, `detail`, `action`, `file`,
/// `os-availability-zone`, ...) or an API version; every other segment
/// is a resource id, uuid or name and becomes `{id}`. The set of names is therefore bounded
/// by the client's own path shapes, whatever the resources are called.
pub fn operation_name(service: Service, method: &str, path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut out = format!("{service} {method} ");
    let mut any = false;
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        any = true;
        out.push('/');
        if FIXED_SEGMENTS.contains(&seg) || is_version_segment(seg) {
            out.push_str(seg);
        } else {
            out.push_str("{id}");
        }
    }
    if !any {
        out.push('/');
    }
    out
}

/// How one HTTP attempt ended, for the per-call counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallStatus {
    /// The service answered with this status code.
    Http(u16),
    /// No complete answer within the timeout.
    Timeout,
    /// Any other transport failure (connection refused or reset, TLS, DNS, a broken body).
    Error,
}

impl CallStatus {
    fn of(sent: &Result<reqwest::Response, reqwest::Error>) -> Self {
        match sent {
            Ok(resp) => CallStatus::Http(resp.status().as_u16()),
            Err(e) if e.is_timeout() => CallStatus::Timeout,
            Err(_) => CallStatus::Error,
        }
    }
}

impl fmt::Display for CallStatus {
    /// The status code as text (`200`, `404`), or `timeout` / `error`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallStatus::Http(code) => write!(f, "{code}"),
            CallStatus::Timeout => f.write_str("timeout"),
            CallStatus::Error => f.write_str("error"),
        }
    }
}

/// One cell of the per-call counts: an [`operation_name`] and a [`CallStatus`] as text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApiCall {
    pub operation: String,
    pub status: String,
}

/// The call counts of one client (shared by its clones and its [`ApiCallCounter`]s).
#[derive(Debug, Default)]
struct CallCounts {
    /// Every attempt, counted when it is sent.
    total: AtomicU64,
    /// Every attempt by operation and outcome, counted when it ends.
    by_call: std::sync::Mutex<HashMap<(String, CallStatus), u64>>,
}

impl CallCounts {
    fn record(&self, operation: &str, status: CallStatus) {
        let mut map = self.by_call.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(&(operation.to_owned(), status)) {
            Some(n) => *n += 1,
            None => {
                map.insert((operation.to_owned(), status), 1);
            }
        }
    }

    fn snapshot(&self) -> BTreeMap<ApiCall, u64> {
        let map = self.by_call.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|((operation, status), &n)| {
                (
                    ApiCall {
                        operation: operation.clone(),
                        status: status.to_string(),
                    },
                    n,
                )
            })
            .collect()
    }
}

/// A handle on one client's call counts that outlives the client, so a reader (the daemon's
/// metrics) can collect the last calls of a client replaced on a config reload.
pub struct ApiCallCounter {
    counts: Arc<CallCounts>,
    client: Weak<Inner>,
}

impl ApiCallCounter {
    /// Calls by operation and status so far (each attempt once; retries are separate calls).
    pub fn snapshot(&self) -> BTreeMap<ApiCall, u64> {
        self.counts.snapshot()
    }

    /// Every attempt sent so far (the same as [`OpenStackClient::api_calls`]).
    pub fn total(&self) -> u64 {
        self.counts.total.load(Ordering::Relaxed)
    }

    /// False once the client and all its clones are gone: the counts can no longer change.
    pub fn client_alive(&self) -> bool {
        self.client.strong_count() > 0
    }

    /// Whether both handles count the same client.
    pub fn same_client(&self, other: &ApiCallCounter) -> bool {
        Arc::ptr_eq(&self.counts, &other.counts)
    }
}

impl std::fmt::Debug for ApiCallCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiCallCounter")
            .field("total", &self.total())
            .field("client_alive", &self.client_alive())
            .finish()
    }
}

struct Inner {
    creds: CloudCredentials,
    identity: IdentityUrl,
    opts: ClientOptions,
    http: reqwest::Client,
    session: Mutex<Option<Arc<Session>>>,
    limiter: RateLimiter,
    calls: Arc<CallCounts>,
}

/// An authenticated client of one OpenStack account (one nodepool provider). Cheap to clone;
/// clones share the token, the rate limiter and the call counter.
#[derive(Clone)]
pub struct OpenStackClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OpenStackClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenStackClient")
            .field("provider", &self.inner.creds.source)
            .field("identity", &self.inner.identity.v3)
            .finish_non_exhaustive()
    }
}

/// What the current token says about the account (for `doctor` and logs).
#[derive(Clone, Debug, serde::Serialize)]
pub struct TokenInfo {
    pub project_id: Option<String>,
    pub user_id: Option<String>,
    pub roles: Vec<String>,
    pub expires_at: chrono::DateTime<Utc>,
    pub compute_endpoint: Option<String>,
    pub image_endpoint: Option<String>,
    pub network_endpoint: Option<String>,
}

impl OpenStackClient {
    /// Checks the credentials' shape and builds the HTTP client; nothing is sent yet.
    pub fn new(creds: CloudCredentials, opts: ClientOptions) -> Result<Self, CloudError> {
        install_crypto_provider();
        let config_err = |message: String| CloudError::Config {
            provider: creds.source.clone(),
            message,
        };
        let identity = auth::normalize_auth_url(&creds.auth_url).map_err(config_err)?;
        if identity.mapped_from_v2 {
            tracing::warn!(
                provider = %creds.source,
                auth_url = %creds.auth_url,
                using = %identity.v3,
                "Keystone v2.0 was removed upstream (Queens); authenticating with its v3 sibling instead"
            );
        }
        // Validate the auth method now so a broken clouds.yaml fails at start-up, not on first use.
        auth::auth_request_body(&creds.auth).map_err(config_err)?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.request_timeout)
            .user_agent(concat!("nodepool-rs/", env!("CARGO_PKG_VERSION")))
            .tls_backend_rustls();
        if !creds.verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        if let Some(ca) = &creds.cacert {
            let pem = std::fs::read(ca).map_err(|source| CloudError::Io {
                path: ca.clone(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| config_err(format!("cacert {ca}: {e}")))?;
            builder = builder.tls_certs_only(certs);
        }
        let http = builder
            .build()
            .map_err(|e| config_err(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                limiter: RateLimiter::new(opts.rate),
                creds,
                identity,
                opts,
                http,
                session: Mutex::new(None),
                calls: Arc::new(CallCounts::default()),
            }),
        })
    }

    /// Where these credentials came from (`clouds.yaml:mycloud`): the provider in messages.
    pub fn provider(&self) -> &str {
        &self.inner.creds.source
    }

    pub fn credentials(&self) -> &CloudCredentials {
        &self.inner.creds
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// The Keystone v3 URL actually used.
    pub fn identity_url(&self) -> &str {
        &self.inner.identity.v3
    }

    /// HTTP requests sent so far (all attempts, Keystone included).
    pub fn api_calls(&self) -> u64 {
        self.inner.calls.total.load(Ordering::Relaxed)
    }

    /// HTTP requests so far by [`operation_name`] and outcome (all attempts, Keystone
    /// included). An attempt is counted here when it ends, so while calls are in flight the
    /// sum is below [`OpenStackClient::api_calls`].
    pub fn api_call_counts(&self) -> BTreeMap<ApiCall, u64> {
        self.inner.calls.snapshot()
    }

    /// A handle on this client's call counts that stays readable after the client is dropped.
    pub fn call_counter(&self) -> ApiCallCounter {
        ApiCallCounter {
            counts: Arc::clone(&self.inner.calls),
            client: Arc::downgrade(&self.inner),
        }
    }

    /// Authenticates now (if the cached token is not fresh) and describes the token.
    pub async fn authenticate(&self) -> Result<TokenInfo, CloudError> {
        let s = self.session().await?;
        Ok(TokenInfo {
            project_id: s.project_id.clone(),
            user_id: s.user_id.clone(),
            roles: s.roles.clone(),
            expires_at: s.expires_at,
            compute_endpoint: s.compute.clone(),
            image_endpoint: s.image.clone(),
            network_endpoint: s.network.clone(),
        })
    }

    /// Drops the cached token, so the next call authenticates again.
    pub async fn forget_token(&self) {
        *self.inner.session.lock().await = None;
    }

    async fn session(&self) -> Result<Arc<Session>, CloudError> {
        let mut guard = self.inner.session.lock().await;
        if let Some(s) = guard.as_ref()
            && Utc::now() < s.renew_at
        {
            return Ok(s.clone());
        }
        let s = Arc::new(self.issue_token().await?);
        *guard = Some(s.clone());
        Ok(s)
    }

    async fn invalidate(&self, old: &Arc<Session>) {
        let mut guard = self.inner.session.lock().await;
        if guard.as_ref().is_some_and(|s| Arc::ptr_eq(s, old)) {
            *guard = None;
        }
    }

    fn auth_error(&self, message: String) -> CloudError {
        CloudError::Auth {
            provider: self.inner.creds.source.clone(),
            auth_url: self.inner.identity.v3.clone(),
            user: auth::principal(&self.inner.creds.auth),
            message,
        }
    }

    /// `POST /v3/auth/tokens`, retried on transient failures (issuing a token twice is harmless).
    async fn issue_token(&self) -> Result<Session, CloudError> {
        let inner = &*self.inner;
        let url = format!("{}/auth/tokens", inner.identity.v3);
        let op = Operation {
            service: Service::Identity,
            method: "POST".into(),
            path: url_path(&url),
        };
        let op_name = operation_name(Service::Identity, "POST", "/auth/tokens");
        let mut attempt = 0;
        loop {
            let body = auth::auth_request_body(&inner.creds.auth).map_err(|message| {
                CloudError::Config {
                    provider: inner.creds.source.clone(),
                    message,
                }
            })?;
            inner.limiter.acquire().await;
            inner.calls.total.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let sent = inner
                .http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string())
                .send()
                .await;
            drop(body);
            inner.calls.record(&op_name, CallStatus::of(&sent));
            let err = match sent {
                Ok(resp) if resp.status().is_success() => {
                    tracing::debug!(provider = %inner.creds.source, elapsed_ms = started.elapsed().as_millis() as u64, "token issued");
                    return self.session_from(op, resp).await;
                }
                Ok(resp) => {
                    let status = resp.status();
                    let err = error_from_response(op.clone(), resp).await;
                    match err {
                        CloudError::RateLimited { .. } | CloudError::Server { .. } => err,
                        CloudError::NotFound { .. } => {
                            return Err(self.auth_error(
                                "Keystone v3 is not at this URL (HTTP 404); check auth_url".into(),
                            ));
                        }
                        other => {
                            let detail = match other {
                                CloudError::PermissionDenied { message, .. }
                                | CloudError::Rejected { message, .. }
                                | CloudError::Conflict { message, .. }
                                | CloudError::QuotaExceeded { message, .. } => message,
                                e => e.to_string(),
                            };
                            return Err(self.auth_error(format!(
                                "Keystone answered HTTP {}: {detail}",
                                status.as_u16()
                            )));
                        }
                    }
                }
                Err(e) => transport_error(op.clone(), &e, inner.opts.request_timeout),
            };
            if !self.should_retry(&err, Retry::Idempotent, attempt) {
                return Err(err);
            }
            self.pause_before_retry(&err, attempt).await;
            attempt += 1;
        }
    }

    async fn session_from(
        &self,
        op: Operation,
        resp: reqwest::Response,
    ) -> Result<Session, CloudError> {
        let inner = &*self.inner;
        let bad = |message: String| CloudError::BadResponse {
            op: op.clone(),
            message,
        };
        let token = resp
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(Secret::new)
            .ok_or_else(|| bad("no X-Subject-Token header".into()))?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(op.clone(), &e, inner.opts.request_timeout))?;
        let body: auth::TokenResponse =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("token body: {e}")))?;
        let t = body.token;
        let project_id = t.project.as_ref().map(|p| p.id.clone());
        let endpoint = |service: Service| -> Option<String> {
            let url = inner
                .creds
                .endpoint_overrides
                .iter()
                .find(|(ty, _)| ty == service.catalog_type())
                .map(|(_, url)| url.clone())
                .or_else(|| {
                    auth::select_endpoint(
                        &t.catalog,
                        service,
                        inner.creds.region_name.as_deref(),
                        &inner.creds.interface,
                    )
                })?;
            Some(auth::api_root(service, &url, project_id.as_deref()))
        };
        let now = Utc::now();
        let lifetime = (t.expires_at - now).to_std().unwrap_or(Duration::ZERO);
        let margin = inner.opts.token_renew_margin.min(lifetime / 2);
        let renew_at = t.expires_at - chrono::Duration::from_std(margin).unwrap_or_default();
        Ok(Session {
            compute: endpoint(Service::Compute),
            image: endpoint(Service::Image),
            network: endpoint(Service::Network),
            token,
            expires_at: t.expires_at,
            renew_at,
            project_id,
            user_id: t.user.map(|u| u.id),
            roles: t.roles.into_iter().filter_map(|r| r.name).collect(),
        })
    }

    fn should_retry(&self, err: &CloudError, retry: Retry, attempt: u32) -> bool {
        if attempt >= self.inner.opts.max_retries {
            return false;
        }
        if let Some(after) = err.retry_after()
            && after > self.inner.opts.max_retry_after
        {
            return false;
        }
        match retry {
            Retry::Idempotent => err.is_transient(),
            Retry::Unsafe => matches!(
                err,
                CloudError::RateLimited { .. } | CloudError::Transport { connect: true, .. }
            ),
        }
    }

    async fn pause_before_retry(&self, err: &CloudError, attempt: u32) {
        let opts = &self.inner.opts;
        let jittered = backoff(opts.backoff_base, opts.backoff_cap, attempt);
        // Honour Retry-After, plus a little jitter so clients told the same time do not stampede.
        let delay = err.retry_after().map_or(jittered, |ra| {
            ra + opts.backoff_base.mul_f64(fastrand::f64() * 0.5)
        });
        tracing::warn!(provider = %self.inner.creds.source, attempt = attempt + 1, delay_ms = delay.as_millis() as u64, error = %err, "retrying");
        tokio::time::sleep(delay).await;
    }

    /// Sends `call`, re-authenticating once on a 401 and retrying per its [`Retry`] policy.
    /// Returns the successful response (2xx); any other status is a [`CloudError`].
    pub(crate) async fn send(&self, call: Call<'_>) -> Result<reqwest::Response, CloudError> {
        let inner = &*self.inner;
        let op_name = operation_name(call.service, call.method.as_str(), call.path);
        let mut attempt = 0;
        let mut reauthenticated = false;
        loop {
            let session = self.session().await?;
            let root = session
                .endpoint(call.service)
                .ok_or_else(|| CloudError::NoEndpoint {
                    provider: inner.creds.source.clone(),
                    service_type: call.service.catalog_type().into(),
                    region: inner.creds.region_name.clone(),
                    interface: auth::normalize_interface(&inner.creds.interface),
                })?;
            let url = format!("{root}{}", call.path);
            let op = Operation {
                service: call.service,
                method: call.method.as_str().into(),
                path: url_path(&url),
            };
            let mut req = inner
                .http
                .request(call.method.clone(), &url)
                .header("X-Auth-Token", session.token.expose())
                .header(reqwest::header::ACCEPT, "application/json");
            if !call.query.is_empty() {
                req = req.query(&call.query);
            }
            if call.service == Service::Compute {
                let v = &inner.opts.compute_microversion;
                req = req
                    .header("OpenStack-API-Version", format!("compute {v}"))
                    .header("X-OpenStack-Nova-API-Version", v.as_str());
            }
            let mut timeout = inner.opts.request_timeout;
            req = match &call.body {
                Body::Empty => req,
                Body::Json(b) => req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.clone()),
                Body::File(f) => {
                    timeout = inner.opts.upload_timeout;
                    req.header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                        .header(reqwest::header::CONTENT_LENGTH, f.len)
                        .timeout(timeout)
                        .body(super::image::file_body(f).await?)
                }
            };
            inner.limiter.acquire().await;
            inner.calls.total.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let sent = req.send().await;
            inner.calls.record(&op_name, CallStatus::of(&sent));
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let err = match sent {
                Ok(resp) if resp.status().is_success() => {
                    tracing::debug!(provider = %inner.creds.source, %op, status = resp.status().as_u16(), elapsed_ms, "ok");
                    return Ok(resp);
                }
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    tracing::debug!(provider = %inner.creds.source, %op, elapsed_ms, "401: token rejected");
                    self.invalidate(&session).await;
                    if !reauthenticated {
                        reauthenticated = true;
                        continue;
                    }
                    let e = error_from_response(op.clone(), resp).await;
                    return Err(
                        self.auth_error(format!("{op} answered 401 even with a fresh token: {e}"))
                    );
                }
                Ok(resp) => error_from_response(op, resp).await,
                Err(e) => transport_error(op, &e, timeout),
            };
            tracing::debug!(provider = %inner.creds.source, error = %err, elapsed_ms, "failed");
            if !self.should_retry(&err, call.retry, attempt) {
                return Err(err);
            }
            self.pause_before_retry(&err, attempt).await;
            attempt += 1;
        }
    }

    /// Sends `call` and decodes its JSON body.
    pub(crate) async fn send_json<T: DeserializeOwned>(
        &self,
        call: Call<'_>,
    ) -> Result<T, CloudError> {
        let service = call.service;
        let method = call.method.as_str().to_owned();
        let resp = self.send(call).await?;
        let op = Operation {
            service,
            method,
            path: resp.url().path().to_owned(),
        };
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(op.clone(), &e, self.inner.opts.request_timeout))?;
        serde_json::from_slice(&bytes).map_err(|e| CloudError::BadResponse {
            op,
            message: format!("cannot decode the body: {e}"),
        })
    }

    /// Sends `call`, ignoring any body.
    pub(crate) async fn send_empty(&self, call: Call<'_>) -> Result<(), CloudError> {
        self.send(call).await.map(drop)
    }

    /// Follows a collection's pages: `extract` returns a page's items and its `next` link, whose
    /// query (marker, limit, filters) is replayed on our own endpoint: next links can name a host
    /// or path prefix we cannot reach (proxies), so only their query is trusted.
    pub(crate) async fn paginate<P, T>(
        &self,
        service: Service,
        path: &str,
        query: Vec<(String, String)>,
        extract: impl Fn(P) -> (Vec<T>, Option<String>),
    ) -> Result<Vec<T>, CloudError>
    where
        P: DeserializeOwned,
    {
        let mut out = Vec::new();
        let mut query = query;
        let mut seen = std::collections::HashSet::new();
        loop {
            let page: P = self
                .send_json(Call::get(service, path).query(query.clone()))
                .await?;
            let (items, next) = extract(page);
            let empty = items.is_empty();
            out.extend(items);
            let Some(next) = next else { break };
            let next_query = next_link_query(&next).ok_or_else(|| CloudError::BadResponse {
                op: Operation {
                    service,
                    method: "GET".into(),
                    path: path.into(),
                },
                message: format!("unusable next link {next:?}"),
            })?;
            if empty || !seen.insert(next_query.clone()) {
                // A repeated link (or a next link after an empty page) would loop forever.
                break;
            }
            query = next_query;
        }
        Ok(out)
    }
}

/// The query pairs of a pagination link (absolute or relative).
pub(crate) fn next_link_query(href: &str) -> Option<Vec<(String, String)>> {
    let base = reqwest::Url::parse("http://relative.invalid/").ok()?;
    let url = base.join(href).ok()?;
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    (!pairs.is_empty()).then_some(pairs)
}

/// `rel: next` among Nova/Neutron `*_links`.
pub(crate) fn next_of(links: &[Link]) -> Option<String> {
    links
        .iter()
        .find(|l| l.rel == "next")
        .map(|l| l.href.clone())
}

#[derive(Clone, Debug, serde::Deserialize)]
pub(crate) struct Link {
    pub rel: String,
    pub href: String,
}

fn url_path(url: &str) -> String {
    reqwest::Url::parse(url).map_or_else(|_| url.to_owned(), |u| u.path().to_owned())
}

async fn error_from_response(op: Operation, resp: reqwest::Response) -> CloudError {
    let status = resp.status().as_u16();
    let headers = resp.headers();
    let retry_after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| error::parse_retry_after(v, Utc::now()));
    let content_type = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Error bodies are small; a broken one must not hide the status.
    let text = resp.text().await.unwrap_or_default();
    let body = error::parse_error_body(content_type.as_deref(), &text);
    error::classify(op, status, retry_after, body)
}

fn transport_error(op: Operation, e: &reqwest::Error, timeout: Duration) -> CloudError {
    if e.is_timeout() {
        return CloudError::Timeout { op, after: timeout };
    }
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_decode() {
        return CloudError::BadResponse { op, message };
    }
    CloudError::Transport {
        op,
        message,
        connect: e.is_connect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links() {
        let q = next_link_query("http://127.0.0.1:8774/v2.1/servers/detail?limit=1&marker=abc")
            .unwrap();
        assert_eq!(
            q,
            vec![
                ("limit".into(), "1".into()),
                ("marker".into(), "abc".into())
            ]
        );
        let q = next_link_query("/v2/images?limit=1&marker=6491c0b7&name=np%20img").unwrap();
        assert_eq!(q[2], ("name".into(), "np img".into()));
        assert_eq!(next_link_query("/v2/images"), None);
        let links: Vec<Link> = serde_json::from_str(
            r#"[{"rel":"self","href":"x"},{"rel":"next","href":"http://h/v2.1/servers/detail?limit=1&marker=m"}]"#,
        )
        .unwrap();
        assert_eq!(
            next_of(&links).as_deref(),
            Some("http://h/v2.1/servers/detail?limit=1&marker=m")
        );
        assert_eq!(next_of(&links[..1]), None);
    }

    #[test]
    fn operation_names_template_ids_and_keep_api_words() {
        let op = operation_name;
        let uuid = "c510a171-00a9-4d6c-8e3e-0123456789ab";
        // Fixed words stay, whatever their position.
        assert_eq!(
            op(Service::Compute, "GET", "/servers/detail"),
            "compute GET /servers/detail"
        );
        assert_eq!(
            op(Service::Compute, "GET", "/flavors/detail"),
            "compute GET /flavors/detail"
        );
        assert_eq!(
            op(Service::Compute, "GET", "/os-availability-zone"),
            "compute GET /os-availability-zone"
        );
        assert_eq!(
            op(Service::Compute, "GET", "/limits"),
            "compute GET /limits"
        );
        assert_eq!(
            op(Service::Identity, "POST", "/auth/tokens"),
            "identity POST /auth/tokens"
        );
        // Ids (uuids, hex, numbers) become {id}; words after them stay.
        assert_eq!(
            op(Service::Compute, "DELETE", &format!("/servers/{uuid}")),
            "compute DELETE /servers/{id}"
        );
        assert_eq!(
            op(Service::Compute, "POST", &format!("/servers/{uuid}/action")),
            "compute POST /servers/{id}/action"
        );
        assert_eq!(
            op(Service::Image, "PUT", "/images/6491c0b7aaaa/file"),
            "image PUT /images/{id}/file"
        );
        assert_eq!(
            op(Service::Image, "GET", "/images/42"),
            "image GET /images/{id}"
        );
        // Names, with hyphens or not, are ids too (`os-availability-zone` is not a name).
        assert_eq!(
            op(Service::Network, "GET", "/networks/private-net-1"),
            "network GET /networks/{id}"
        );
        assert_eq!(
            op(Service::Network, "GET", "/networks/public"),
            "network GET /networks/{id}"
        );
        // Percent-encoded names (path_id's output) are one segment.
        assert_eq!(
            op(Service::Network, "GET", "/networks/my%20net%2Fx"),
            "network GET /networks/{id}"
        );
        // The query is dropped; an empty path is the root.
        assert_eq!(
            op(Service::Network, "GET", "/floatingips?port_id=abc&limit=5"),
            "network GET /floatingips"
        );
        assert_eq!(
            op(Service::Network, "DELETE", &format!("/ports/{uuid}")),
            "network DELETE /ports/{id}"
        );
        assert_eq!(op(Service::Image, "GET", ""), "image GET /");
        // An explicit version is a word, not an id (not produced by the client's own calls,
        // whose paths are relative to the versioned API root).
        assert_eq!(
            op(Service::Network, "GET", "/v2.0/floatingips"),
            "network GET /v2.0/floatingips"
        );
        assert_eq!(op(Service::Network, "GET", "/vpn-x"), "network GET /{id}");
        // Bounded: whatever the ids, one name per shape.
        let names: std::collections::BTreeSet<String> = (0..1000)
            .map(|i| op(Service::Compute, "DELETE", &format!("/servers/srv-{i}")))
            .collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn call_statuses_as_text() {
        assert_eq!(CallStatus::Http(404).to_string(), "404");
        assert_eq!(CallStatus::Http(503).to_string(), "503");
        assert_eq!(CallStatus::Timeout.to_string(), "timeout");
        assert_eq!(CallStatus::Error.to_string(), "error");
        let c = CallCounts::default();
        c.record("compute GET /limits", CallStatus::Http(200));
        c.record("compute GET /limits", CallStatus::Http(200));
        c.record("compute GET /limits", CallStatus::Timeout);
        let snap = c.snapshot();
        let key = |status: &str| ApiCall {
            operation: "compute GET /limits".into(),
            status: status.into(),
        };
        assert_eq!(snap.get(&key("200")), Some(&2));
        assert_eq!(snap.get(&key("timeout")), Some(&1));
        assert_eq!(snap.len(), 2);
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(1);
        for attempt in 0..40 {
            let exp = (base * 2u32.saturating_pow(attempt.min(20))).min(cap);
            let d = backoff(base, cap, attempt);
            assert!(
                d >= exp / 2 && d <= exp,
                "attempt {attempt}: {d:?} vs {exp:?}"
            );
        }
    }

    #[test]
    fn rate_limiter_spaces_slots() {
        let rl = RateLimiter::new(Duration::from_millis(100));
        let t0 = Instant::now();
        assert_eq!(rl.reserve(t0), Duration::ZERO);
        assert_eq!(rl.reserve(t0), Duration::from_millis(100));
        assert_eq!(
            rl.reserve(t0 + Duration::from_millis(50)),
            Duration::from_millis(150)
        );
        // After a quiet spell the next call goes at once.
        assert_eq!(rl.reserve(t0 + Duration::from_secs(5)), Duration::ZERO);
        let off = RateLimiter::new(Duration::ZERO);
        assert_eq!(off.reserve(t0), Duration::ZERO);
        assert_eq!(off.reserve(t0), Duration::ZERO);
    }

    #[test]
    fn rate_from_seconds() {
        assert_eq!(
            ClientOptions::default().with_rate_secs(0.5).rate,
            Duration::from_millis(500)
        );
        assert_eq!(
            ClientOptions::default().with_rate_secs(-1.0).rate,
            Duration::ZERO
        );
        assert_eq!(
            ClientOptions::default().with_rate_secs(f64::NAN).rate,
            Duration::ZERO
        );
    }
}
