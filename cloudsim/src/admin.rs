//! Token-less admin API under `/_sim`: counters, faults, reset, quota override, seeding, clouds.yaml.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::SharedSim;
use crate::config::QuotaConfig;
use crate::faults::FaultRule;
use crate::state::{Image, NewServer, ServerStatus, Store, parse_time};

/// Why a seed request was refused.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("unknown {kind} {name:?}")]
    Unknown { kind: &'static str, name: String },
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// A server to put in the cloud directly (e.g. a leaked or unmanaged one), no quota check.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeedServer {
    pub name: String,
    /// Project name or id; the first configured project by default.
    pub project: Option<String>,
    /// Flavor name or id; the first flavor by default.
    pub flavor: Option<String>,
    /// Image name or id.
    pub image: Option<String>,
    /// Network name or id to give the server a port on.
    pub network: Option<String>,
    /// ACTIVE (default), BUILD or ERROR.
    pub status: Option<String>,
    /// Fault message for ERROR servers.
    pub fault: Option<String>,
    pub metadata: IndexMap<String, String>,
    /// ISO 8601 creation time (default now).
    pub created: Option<String>,
    pub availability_zone: Option<String>,
    pub key_name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeedImage {
    pub name: String,
    pub project: Option<String>,
    /// active (default) or queued.
    pub status: Option<String>,
    pub visibility: Option<String>,
    pub disk_format: Option<String>,
    pub size: Option<u64>,
    pub created: Option<String>,
    pub properties: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeedPort {
    pub name: String,
    pub project: Option<String>,
    /// Network name or id; the first non-external network by default.
    pub network: Option<String>,
    pub device_id: String,
    pub device_owner: String,
    /// DOWN (default) or ACTIVE.
    pub status: Option<String>,
    pub created: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeedFloatingIp {
    pub project: Option<String>,
    /// External network name or id; the first external network by default.
    pub network: Option<String>,
    /// Port to attach to (makes it ACTIVE).
    pub port_id: Option<String>,
    pub address: Option<String>,
    pub created: Option<String>,
}

fn project_id(sim: &SharedSim, p: Option<&str>) -> Result<String, SeedError> {
    let identity = sim.identity();
    match p {
        None => identity.projects.first().map(|p| p.id.clone()),
        Some(p) => identity
            .projects
            .iter()
            .find(|x| x.id == p || x.name == p)
            .map(|x| x.id.clone()),
    }
    .ok_or_else(|| SeedError::Unknown {
        kind: "project",
        name: p.unwrap_or_default().to_string(),
    })
}

fn created(s: Option<&str>) -> Result<Option<crate::state::Time>, SeedError> {
    match s {
        None => Ok(None),
        Some(t) => parse_time(t).map(Some).ok_or_else(|| SeedError::Invalid {
            field: "created",
            message: format!("{t:?} is not an ISO 8601 time"),
        }),
    }
}

fn network_id(store: &Store, n: Option<&str>, external: bool) -> Result<String, SeedError> {
    match n {
        None => store
            .networks
            .iter()
            .find(|x| x.external == external)
            .map(|x| x.id.clone()),
        Some(n) => store
            .networks
            .iter()
            .find(|x| x.id == n || x.name == n)
            .map(|x| x.id.clone()),
    }
    .ok_or_else(|| SeedError::Unknown {
        kind: "network",
        name: n.unwrap_or_default().to_string(),
    })
}

pub fn seed_server(sim: &SharedSim, seed: SeedServer) -> Result<String, SeedError> {
    let project = project_id(sim, seed.project.as_deref())?;
    let user_id = sim
        .identity()
        .users
        .first()
        .map(|u| u.id.clone())
        .unwrap_or_default();
    let created = created(seed.created.as_deref())?;
    let status = match seed.status.as_deref().map(str::to_uppercase).as_deref() {
        None | Some("ACTIVE") => ServerStatus::Active,
        Some("BUILD") => ServerStatus::Build,
        Some("ERROR") => ServerStatus::Error,
        Some(other) => {
            return Err(SeedError::Invalid {
                field: "status",
                message: format!("{other} (expected ACTIVE, BUILD or ERROR)"),
            });
        }
    };
    let mut store = sim.store();
    let flavor = match seed.flavor.as_deref() {
        None => store.flavors.first().cloned(),
        Some(f) => store.flavor(f).cloned(),
    }
    .ok_or_else(|| SeedError::Unknown {
        kind: "flavor",
        name: seed.flavor.clone().unwrap_or_default(),
    })?;
    let image_id = match seed.image.as_deref() {
        None => None,
        Some(i) => Some(
            store
                .images
                .values()
                .find(|x| x.id == i || x.name.as_deref() == Some(i))
                .map(|x| x.id.clone())
                .ok_or_else(|| SeedError::Unknown {
                    kind: "image",
                    name: i.to_string(),
                })?,
        ),
    };
    let network_ids = match seed.network.as_deref() {
        None => vec![],
        Some(n) => vec![network_id(&store, Some(n), false)?],
    };
    let new = NewServer {
        name: seed.name,
        project_id: project,
        user_id,
        flavor,
        image_id,
        network_ids,
        port_ids: vec![],
        metadata: seed.metadata,
        key_name: seed.key_name,
        availability_zone: seed
            .availability_zone
            .unwrap_or_else(|| sim.config.availability_zones[0].clone()),
        config_drive: false,
        user_data: None,
        security_groups: vec!["default".into()],
        volume_ids: vec![],
        boot_error: seed.fault,
        created,
        status: Some(status),
    };
    Ok(store.create_server(new)?)
}

pub fn seed_image(sim: &SharedSim, seed: SeedImage) -> Result<String, SeedError> {
    let owner = project_id(sim, seed.project.as_deref())?;
    let mut store = sim.store();
    let created = match created(seed.created.as_deref())? {
        Some(t) => t,
        None => store.stamp(),
    };
    let status = seed.status.unwrap_or_else(|| "active".into());
    let active = status == "active";
    let id = uuid::Uuid::new_v4().to_string();
    store.images.insert(Image {
        name: Some(seed.name),
        status,
        disk_format: Some(seed.disk_format.unwrap_or_else(|| "qcow2".into())),
        container_format: Some("bare".into()),
        visibility: seed.visibility.unwrap_or_else(|| "private".into()),
        owner,
        protected: false,
        min_disk: 0,
        min_ram: 0,
        size: active.then(|| seed.size.unwrap_or(0)),
        checksum: active.then(|| hex::encode(crate::state::md5_of(id.as_bytes()))),
        os_hash_value: None,
        tags: vec![],
        created,
        updated: created,
        properties: seed.properties,
        id: id.clone(),
    });
    Ok(id)
}

pub fn seed_port(sim: &SharedSim, seed: SeedPort) -> Result<String, SeedError> {
    let project = project_id(sim, seed.project.as_deref())?;
    let created = created(seed.created.as_deref())?;
    let active = match seed.status.as_deref() {
        None | Some("DOWN") => false,
        Some("ACTIVE") => true,
        Some(other) => {
            return Err(SeedError::Invalid {
                field: "status",
                message: format!("{other} (expected DOWN or ACTIVE)"),
            });
        }
    };
    let mut store = sim.store();
    let net = network_id(&store, seed.network.as_deref(), false)?;
    let id = store.create_port(&net, &project, None, |p| {
        p.name = seed.name;
        p.device_id = seed.device_id;
        p.device_owner = seed.device_owner;
        if active {
            p.status = "ACTIVE".into();
            p.binding_host = "simhost1".into();
        }
    })?;
    if let Some(t) = created
        && let Some(mut port) = store.ports.remove(&id)
    {
        port.created = t;
        port.updated = t;
        store.ports.insert(port);
    }
    Ok(id)
}

pub fn seed_floating_ip(sim: &SharedSim, seed: SeedFloatingIp) -> Result<String, SeedError> {
    let project = project_id(sim, seed.project.as_deref())?;
    let created = created(seed.created.as_deref())?;
    let mut store = sim.store();
    let net = network_id(&store, seed.network.as_deref(), true)?;
    let id = crate::neutron::allocate_fip(
        &mut store,
        &project,
        &net,
        seed.address.as_deref(),
        seed.port_id.as_deref(),
    )
    .map_err(|_| SeedError::Invalid {
        field: "floating ip",
        message: "cannot allocate (unknown port, address taken or pool exhausted)".into(),
    })?;
    if let Some(t) = created
        && let Some(mut f) = store.fips.remove(&id)
    {
        f.created = t;
        f.updated = t;
        store.fips.insert(f);
    }
    Ok(id)
}

/// A clouds.yaml naming this simulator `name`, authenticating as the first configured user.
pub fn clouds_yaml(sim: &SharedSim, name: &str) -> String {
    let identity = sim.identity();
    let user = identity.users.first();
    let project = user
        .and_then(|u| u.project_ids.first())
        .and_then(|p| identity.project(p));
    let domain = |id: &str| {
        identity
            .domain(id)
            .map(|d| d.name.clone())
            .unwrap_or_default()
    };
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    format!(
        "clouds:\n  {name}:\n    auth:\n      auth_url: {}\n      username: {}\n      password: {}\n      project_name: {}\n      user_domain_name: {}\n      project_domain_name: {}\n    region_name: {}\n    identity_api_version: 3\n    interface: public\n",
        q(&sim.identity_url()),
        q(user.map(|u| u.name.as_str()).unwrap_or_default()),
        q(user.map(|u| u.password.as_str()).unwrap_or_default()),
        q(project.map(|p| p.name.as_str()).unwrap_or_default()),
        q(&user.map(|u| domain(&u.domain_id)).unwrap_or_default()),
        q(&project.map(|p| domain(&p.domain_id)).unwrap_or_default()),
        q(&sim.config.region),
    )
}

pub fn routes(sim: SharedSim) -> Router {
    Router::new()
        .route("/_sim/counters", get(counters).delete(reset_counters))
        .route(
            "/_sim/faults",
            get(list_faults).post(add_faults).delete(clear_faults),
        )
        .route("/_sim/faults/{id}", delete(remove_fault))
        .route("/_sim/reset", post(reset))
        .route("/_sim/quota/{project}", put(set_quota))
        .route("/_sim/servers", post(seed_servers))
        .route("/_sim/images", post(seed_images))
        .route("/_sim/ports", post(seed_ports))
        .route("/_sim/floatingips", post(seed_fips))
        .route("/_sim/state", get(summary))
        .route("/_sim/clouds.yaml", get(clouds))
        .with_state(sim)
}

fn admin_error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

/// Accepts one object or an array of them.
fn one_or_many<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<Vec<T>, Response> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| admin_error(StatusCode::BAD_REQUEST, e.to_string()))?;
    let items = match v {
        Value::Array(a) => a,
        other => vec![other],
    };
    items
        .into_iter()
        .map(|i| {
            serde_json::from_value(i)
                .map_err(|e| admin_error(StatusCode::BAD_REQUEST, e.to_string()))
        })
        .collect()
}

async fn counters(State(sim): State<SharedSim>) -> Response {
    Json(sim.counters.snapshot()).into_response()
}

async fn reset_counters(State(sim): State<SharedSim>) -> StatusCode {
    sim.counters.reset();
    StatusCode::NO_CONTENT
}

async fn list_faults(State(sim): State<SharedSim>) -> Response {
    Json(json!({"faults": sim.fault_set().list()})).into_response()
}

async fn add_faults(State(sim): State<SharedSim>, body: axum::body::Bytes) -> Response {
    let rules: Vec<FaultRule> = match one_or_many(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut set = sim.fault_set();
    let mut ids = Vec::new();
    for rule in rules {
        match set.add(rule) {
            Ok(id) => ids.push(id),
            Err(e) => return admin_error(StatusCode::BAD_REQUEST, e.to_string()),
        }
    }
    (StatusCode::CREATED, Json(json!({ "ids": ids }))).into_response()
}

async fn clear_faults(State(sim): State<SharedSim>) -> StatusCode {
    sim.fault_set().clear();
    StatusCode::NO_CONTENT
}

async fn remove_fault(State(sim): State<SharedSim>, Path(id): Path<u64>) -> StatusCode {
    if sim.fault_set().remove(id) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn reset(State(sim): State<SharedSim>) -> StatusCode {
    sim.reset_state();
    sim.counters.reset();
    StatusCode::NO_CONTENT
}

async fn set_quota(
    State(sim): State<SharedSim>,
    Path(project): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let q: QuotaConfig = match serde_json::from_slice(&body) {
        Ok(q) => q,
        Err(e) => return admin_error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let mut identity = sim.identity_mut();
    match identity
        .projects
        .iter_mut()
        .find(|p| p.id == project || p.name == project)
    {
        Some(p) => {
            p.quota = q;
            Json(json!({"project": p.id, "quota": q})).into_response()
        }
        None => admin_error(StatusCode::NOT_FOUND, format!("unknown project {project}")),
    }
}

fn seeded<T: for<'de> Deserialize<'de>>(
    sim: &SharedSim,
    body: &[u8],
    f: fn(&SharedSim, T) -> Result<String, SeedError>,
) -> Response {
    let items: Vec<T> = match one_or_many(body) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        match f(sim, item) {
            Ok(id) => ids.push(id),
            Err(e) => return admin_error(StatusCode::BAD_REQUEST, e.to_string()),
        }
    }
    (StatusCode::CREATED, Json(json!({ "ids": ids }))).into_response()
}

async fn seed_servers(State(sim): State<SharedSim>, body: axum::body::Bytes) -> Response {
    seeded(&sim, &body, seed_server)
}

async fn seed_images(State(sim): State<SharedSim>, body: axum::body::Bytes) -> Response {
    seeded(&sim, &body, seed_image)
}

async fn seed_ports(State(sim): State<SharedSim>, body: axum::body::Bytes) -> Response {
    seeded(&sim, &body, seed_port)
}

async fn seed_fips(State(sim): State<SharedSim>, body: axum::body::Bytes) -> Response {
    seeded(&sim, &body, seed_floating_ip)
}

async fn summary(State(sim): State<SharedSim>) -> Json<Value> {
    let store = sim.store();
    let live = store.servers.values().filter(|s| s.is_live()).count();
    let tokens = sim.identity().tokens.len();
    Json(json!({
        "servers": live, "deleted_servers": store.servers.len() - live,
        "images": store.images.len(), "ports": store.ports.len(), "floatingips": store.fips.len(),
        "tokens": tokens, "faults": sim.fault_set().list().len(),
    }))
}

async fn clouds(State(sim): State<SharedSim>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/yaml")],
        clouds_yaml(&sim, "cloudsim"),
    )
        .into_response()
}
