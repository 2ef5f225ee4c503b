//! The listener: accept loop, router assembly, per-request counters and HTTP-level fault injection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

use crate::config::{ConfigError, SimConfig};
use crate::counters::CounterSnapshot;
use crate::faults::{FaultAction, FaultError, FaultRule, Phase};
use crate::{SharedSim, Sim, admin, glance, keystone, neutron, nova};

/// Errors starting a simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Fault(#[from] FaultError),
}

/// Starts simulators.
pub struct Simulator;

impl Simulator {
    /// Starts a simulator on 127.0.0.1 with an ephemeral port.
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a simulator on the given address (port 0 picks a free one).
    pub async fn start_on(config: SimConfig, addr: SocketAddr) -> Result<SimHandle, SimError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| SimError::Bind { addr, source })?;
        let sim = Arc::new(Sim::new(config, local)?);
        let app = router(sim.clone());
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, app, stop_rx));
        Ok(SimHandle {
            sim,
            stop: stop_tx,
            task: Some(task),
        })
    }
}

/// A running simulator. Dropping it stops the listener too.
pub struct SimHandle {
    sim: SharedSim,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> &str {
        &self.sim.base_url
    }
    /// The Keystone v3 URL to put in clouds.yaml.
    pub fn auth_url(&self) -> String {
        self.sim.identity_url()
    }
    /// The shared state, for in-process inspection and seeding (see also [`crate::admin`]).
    pub fn sim(&self) -> &SharedSim {
        &self.sim
    }
    pub fn counters(&self) -> CounterSnapshot {
        self.sim.counters.snapshot()
    }
    pub fn reset_counters(&self) {
        self.sim.counters.reset();
    }
    pub fn add_fault(&self, rule: FaultRule) -> Result<u64, FaultError> {
        self.sim.fault_set().add(rule)
    }
    pub fn clear_faults(&self) {
        self.sim.fault_set().clear();
    }
    /// Seeds a server as `POST /_sim/servers` does; returns its id.
    pub fn seed_server(&self, seed: admin::SeedServer) -> Result<String, admin::SeedError> {
        admin::seed_server(&self.sim, seed)
    }
    pub fn seed_image(&self, seed: admin::SeedImage) -> Result<String, admin::SeedError> {
        admin::seed_image(&self.sim, seed)
    }
    pub fn seed_port(&self, seed: admin::SeedPort) -> Result<String, admin::SeedError> {
        admin::seed_port(&self.sim, seed)
    }
    pub fn seed_floating_ip(
        &self,
        seed: admin::SeedFloatingIp,
    ) -> Result<String, admin::SeedError> {
        admin::seed_floating_ip(&self.sim, seed)
    }
    /// A clouds.yaml declaring this simulator as cloud `name` with the first configured user.
    pub fn clouds_yaml(&self, name: &str) -> String {
        admin::clouds_yaml(&self.sim, name)
    }
    /// Stops accepting and closes every connection.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Per-connection control: lets a fault close the socket without answering.
#[derive(Clone)]
pub(crate) struct ConnControl {
    kill: Arc<Notify>,
}

async fn accept_loop(listener: TcpListener, app: Router, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(_) => { tokio::time::sleep(Duration::from_millis(10)).await; continue; }
            },
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let ctl = ConnControl {
                kill: Arc::new(Notify::new()),
            };
            let kill = ctl.kill.clone();
            let svc = tower::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ctl.clone());
                trim_trailing_slash(req.uri_mut());
                app.clone().oneshot(req.map(Body::new))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
            tokio::select! {
                _ = conn => {}
                _ = kill.notified() => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// `/v3/` and `/v3` are the same resource to OpenStack services.
fn trim_trailing_slash(uri: &mut Uri) {
    let path = uri.path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let pq = match uri.query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_string(),
        };
        if let Ok(new) = Uri::builder().path_and_query(pq).build() {
            *uri = new;
        }
    }
}

fn router(sim: SharedSim) -> Router {
    Router::new()
        .merge(keystone::routes(sim.clone()))
        .merge(nova::routes(sim.clone()))
        .merge(glance::routes(sim.clone()))
        .merge(neutron::routes(sim.clone()))
        .merge(admin::routes(sim.clone()))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(sim, observe))
}

async fn not_found(uri: Uri) -> Response {
    error_for_path(
        uri.path(),
        StatusCode::NOT_FOUND,
        "The resource could not be found.",
    )
}

/// The error body the service owning `path` would send.
pub(crate) fn error_for_path(path: &str, status: StatusCode, message: &str) -> Response {
    if path.starts_with("/compute") {
        nova::fault(status, message)
    } else if path.starts_with("/image") {
        glance::html_error(status, message)
    } else if path.starts_with("/network") {
        neutron::error(status, neutron::error_type(status), message)
    } else {
        keystone::error(status, message)
    }
}

/// Counts the call, injects HTTP-level faults, and adds request-id headers.
async fn observe(State(sim): State<SharedSim>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let admin = path.starts_with("/_sim");
    let fault = if admin {
        None
    } else {
        sim.fault_set().pick(Phase::Http, &method, &path)
    };
    let ctl = req.extensions().get::<ConnControl>().cloned();
    let mut response = match fault {
        None => next.run(req).await,
        Some(FaultAction::Delay { ms }) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            next.run(req).await
        }
        Some(FaultAction::Error { status, message }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = message.unwrap_or_else(|| default_fault_message(status).to_string());
            error_for_path(&path, status, &message)
        }
        Some(FaultAction::RateLimit { retry_after }) => rate_limited(&path, retry_after),
        Some(FaultAction::Drop) => {
            sim.counters.record(&method, &route, 0);
            return drop_connection(ctl).await;
        }
        Some(FaultAction::Hang { max_ms }) => {
            sim.counters.record(&method, &route, 0);
            tokio::time::sleep(Duration::from_millis(max_ms.unwrap_or(600_000))).await;
            return drop_connection(ctl).await;
        }
        Some(FaultAction::BootError { .. } | FaultAction::QuotaExceeded { .. }) => {
            next.run(req).await
        }
    };
    if !admin {
        sim.counters
            .record(&method, &route, response.status().as_u16());
    }
    let rid = HeaderValue::from_str(&format!("req-{}", uuid::Uuid::new_v4())).ok();
    if let Some(rid) = rid {
        if path.starts_with("/compute") {
            response
                .headers_mut()
                .insert("x-compute-request-id", rid.clone());
        }
        response.headers_mut().insert("x-openstack-request-id", rid);
    }
    response
}

fn default_fault_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        500 => {
            "Unexpected API Error. Please report this at http://bugs.launchpad.net/nova/ and attach the Nova API log if possible."
        }
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}

fn rate_limited(path: &str, retry_after: u64) -> Response {
    let message = "This request was rate-limited.";
    let mut r = if path.starts_with("/compute") {
        let body = serde_json::json!({"overLimit": {"code": 429, "message": message, "retryAfter": retry_after.to_string()}});
        (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response()
    } else {
        error_for_path(path, StatusCode::TOO_MANY_REQUESTS, message)
    };
    if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
        r.headers_mut().insert("retry-after", v);
    }
    r
}

/// Asks the connection task to drop the socket, then never completes.
async fn drop_connection(ctl: Option<ConnControl>) -> Response {
    if let Some(ctl) = ctl {
        ctl.kill.notify_one();
        std::future::pending::<()>().await;
    }
    // Only reachable when served outside the accept loop (unit tests with oneshot).
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

#[cfg(test)]
pub(crate) fn test_router(config: SimConfig) -> (Router, SharedSim) {
    let sim = Arc::new(Sim::new(config, SocketAddr::from(([127, 0, 0, 1], 9))).expect("config"));
    (router(sim.clone()), sim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_slashes_but_not_root() {
        let mut u: Uri = "/identity/v3/?x=1".parse().unwrap();
        trim_trailing_slash(&mut u);
        assert_eq!(u.to_string(), "/identity/v3?x=1");
        let mut root: Uri = "/".parse().unwrap();
        trim_trailing_slash(&mut root);
        assert_eq!(root.to_string(), "/");
    }
}
