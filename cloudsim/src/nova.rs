//! Nova v2.1: microversions, servers (create/list/show/delete/actions/metadata), flavors, limits, AZs, keypairs.

use std::collections::HashMap;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::Utc;
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::SharedSim;
use crate::config::QuotaConfig;
use crate::faults::{FaultAction, Phase};
use crate::keystone::{Caller, require_token};
use crate::state::{
    Flavor, NewServer, Server, ServerStatus, StateError, Store, Time, iso, parse_time,
};

pub const PREFIX: &str = "/compute/v2.1";
/// Nova's `max_limit`: the most items one page returns.
pub const MAX_PAGE: usize = 1000;
const NO_VALID_HOST: &str = "No valid host was found. There are not enough hosts available.";

/// A negotiated microversion (major, minor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Microversion(pub u32, pub u32);

impl Microversion {
    pub fn at_least(self, minor: u32) -> bool {
        self >= Microversion(2, minor)
    }
}

impl std::fmt::Display for Microversion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

pub fn parse_microversion(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

pub fn routes(sim: SharedSim) -> Router {
    let api = Router::new()
        .route(&p("/servers"), get(list_servers).post(create_server))
        .route(&p("/servers/detail"), get(list_servers_detail))
        .route(&p("/servers/{id}"), get(show_server).delete(delete_server))
        .route(&p("/servers/{id}/action"), post(server_action))
        .route(
            &p("/servers/{id}/metadata"),
            get(get_metadata)
                .post(update_metadata)
                .put(replace_metadata),
        )
        .route(
            &p("/servers/{id}/metadata/{key}"),
            get(get_meta_item)
                .put(put_meta_item)
                .delete(delete_meta_item),
        )
        .route(&p("/flavors"), get(list_flavors))
        .route(&p("/flavors/detail"), get(list_flavors_detail))
        .route(&p("/flavors/{id}"), get(show_flavor))
        .route(&p("/flavors/{id}/os-extra_specs"), get(flavor_extra_specs))
        .route(&p("/limits"), get(limits))
        .route(&p("/os-availability-zone"), get(availability_zones))
        .route(&p("/os-availability-zone/detail"), get(availability_zones))
        .route(&p("/os-keypairs"), get(list_keypairs).post(create_keypair))
        .route(
            &p("/os-keypairs/{name}"),
            get(show_keypair).delete(delete_keypair),
        )
        .route(&p("/os-quota-sets/{project}"), get(quota_set))
        .route(&p("/os-quota-sets/{project}/detail"), get(quota_set_detail))
        .route_layer(middleware::from_fn_with_state(sim.clone(), require_token))
        .route_layer(middleware::from_fn_with_state(sim.clone(), negotiate));
    Router::new()
        .route("/compute", get(versions))
        .route(PREFIX, get(version))
        .with_state(sim.clone())
        .merge(api.with_state(sim))
}

fn p(path: &str) -> String {
    format!("{PREFIX}{path}")
}

/// Nova's error body `{"<faultName>": {"code": N, "message": ...}}`.
pub fn fault(status: StatusCode, message: &str) -> Response {
    let name = match status.as_u16() {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "badMethod",
        409 => "conflictingRequest",
        413 | 429 => "overLimit",
        415 => "badMediaType",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
    };
    (
        status,
        Json(json!({ name: {"code": status.as_u16(), "message": message} })),
    )
        .into_response()
}

fn bad_request(message: &str) -> Response {
    fault(StatusCode::BAD_REQUEST, message)
}

fn server_not_found(id: &str) -> Response {
    fault(
        StatusCode::NOT_FOUND,
        &format!("Instance {id} could not be found."),
    )
}

/// Reads the requested microversion, refuses unsupported ones, and echoes it on the response.
async fn negotiate(State(sim): State<SharedSim>, mut req: Request, next: Next) -> Response {
    let (max_a, max_b) = sim.max_microversion;
    let max = Microversion(max_a, max_b);
    let header = req
        .headers()
        .get("openstack-api-version")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // "compute 2.79" (possibly among other services, comma separated)
            v.split(',').find_map(|part| {
                let mut it = part.split_whitespace();
                (it.next()? == "compute").then(|| it.next().unwrap_or("").to_string())
            })
        })
        .or_else(|| {
            req.headers()
                .get("x-openstack-nova-api-version")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        });
    let mv = match header.as_deref() {
        None => Microversion(2, 1),
        Some("latest") => max,
        Some(v) => match parse_microversion(v) {
            Some((a, b))
                if Microversion(a, b) >= Microversion(2, 1) && Microversion(a, b) <= max =>
            {
                Microversion(a, b)
            }
            Some(_) => {
                return fault(
                    StatusCode::NOT_ACCEPTABLE,
                    &format!(
                        "Version {v} is not supported by the API. Minimum is 2.1 and maximum is {max}."
                    ),
                );
            }
            None => return bad_request(&format!("Invalid format for API version {v}.")),
        },
    };
    req.extensions_mut().insert(mv);
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("compute {mv}")) {
        h.insert("openstack-api-version", v);
    }
    if let Ok(v) = HeaderValue::from_str(&mv.to_string()) {
        h.insert("x-openstack-nova-api-version", v);
    }
    h.insert(
        "vary",
        HeaderValue::from_static("OpenStack-API-Version, X-OpenStack-Nova-API-Version"),
    );
    r
}

fn version_doc(sim: &SharedSim) -> Value {
    json!({
        "id": "v2.1", "status": "CURRENT", "version": sim.config.max_microversion, "min_version": "2.1",
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{}/", sim.compute_url())}],
    })
}

async fn versions(State(sim): State<SharedSim>) -> Json<Value> {
    let v2 = json!({"id": "v2.0", "status": "DEPRECATED", "version": "", "min_version": "",
                    "updated": "2025-07-04T12:00:00Z",
                    "links": [{"rel": "self", "href": format!("{}/compute/v2/", sim.base_url)}]});
    Json(json!({"versions": [v2, version_doc(&sim)]}))
}

async fn version(State(sim): State<SharedSim>) -> Json<Value> {
    let mut doc = version_doc(&sim);
    doc["media-types"] = json!([{"base": "application/json",
                                 "type": "application/vnd.openstack.compute+json;version=2.1"}]);
    Json(json!({ "version": doc }))
}

type Params = Query<Vec<(String, String)>>;

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `limit` as Nova reads it: capped at [`MAX_PAGE`]; 400 when not a non-negative integer.
pub fn page_limit(q: &[(String, String)], max: usize) -> Result<usize, String> {
    match param(q, "limit") {
        None => Ok(max),
        Some(l) => l
            .parse::<usize>()
            .map(|l| l.min(max))
            .map_err(|_| format!("Invalid limit {l:?}: must be a non-negative integer")),
    }
}

fn links(sim: &SharedSim, kind: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{}/{kind}/{id}", sim.compute_url())},
        {"rel": "bookmark", "href": format!("{}/compute/{kind}/{id}", sim.base_url)}
    ])
}

fn flavor_json(sim: &SharedSim, f: &Flavor, mv: Microversion, detail: bool) -> Value {
    let mut v = json!({"id": f.id, "name": f.name, "links": links(sim, "flavors", &f.id)});
    if !detail {
        if mv.at_least(55) {
            v["description"] = Value::Null;
        }
        return v;
    }
    let swap = if f.swap == 0 && !mv.at_least(75) {
        json!("")
    } else {
        json!(f.swap)
    };
    let m = v.as_object_mut().expect("object");
    m.insert("ram".into(), json!(f.ram));
    m.insert("disk".into(), json!(f.disk));
    m.insert("swap".into(), swap);
    m.insert("vcpus".into(), json!(f.vcpus));
    m.insert("OS-FLV-EXT-DATA:ephemeral".into(), json!(f.ephemeral));
    m.insert("OS-FLV-DISABLED:disabled".into(), json!(false));
    m.insert("os-flavor-access:is_public".into(), json!(true));
    m.insert("rxtx_factor".into(), json!(1.0));
    if mv.at_least(55) {
        m.insert("description".into(), Value::Null);
    }
    if mv.at_least(61) {
        m.insert("extra_specs".into(), json!({}));
    }
    v
}

#[derive(Serialize)]
struct Link {
    rel: &'static str,
    href: String,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ImageRef {
    Image {
        id: String,
        links: [Link; 1],
    },
    /// Booted from a volume: Nova shows `""`.
    None(&'static str),
}

#[derive(Serialize)]
#[serde(untagged)]
enum FlavorRef<'a> {
    Link {
        id: &'a str,
        links: [Link; 1],
    },
    /// Embedded from 2.47 on.
    Embedded {
        vcpus: u32,
        ram: u64,
        disk: u64,
        ephemeral: u64,
        swap: u64,
        original_name: &'a str,
        extra_specs: Map<String, Value>,
    },
}

#[derive(Serialize)]
struct Address<'a> {
    version: u8,
    addr: &'a str,
    #[serde(rename = "OS-EXT-IPS:type")]
    kind: &'static str,
    #[serde(rename = "OS-EXT-IPS-MAC:mac_addr")]
    mac: &'a str,
}

#[derive(Serialize)]
struct Named<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct Volume<'a> {
    id: &'a str,
    delete_on_termination: bool,
}

#[derive(Serialize)]
struct FaultView<'a> {
    code: u16,
    created: String,
    message: &'a str,
    details: &'static str,
}

/// A server as Nova shows it; the microversion-gated keys are `Some` only when present.
#[derive(Serialize)]
pub struct ServerView<'a> {
    id: &'a str,
    name: &'a str,
    status: &'static str,
    tenant_id: &'a str,
    user_id: &'a str,
    metadata: &'a IndexMap<String, String>,
    #[serde(rename = "hostId")]
    host_id: &'a str,
    image: ImageRef,
    flavor: FlavorRef<'a>,
    created: String,
    updated: String,
    addresses: IndexMap<&'a str, Vec<Address<'a>>>,
    #[serde(rename = "accessIPv4")]
    access_ipv4: &'static str,
    #[serde(rename = "accessIPv6")]
    access_ipv6: &'static str,
    links: [Link; 2],
    progress: u8,
    config_drive: &'static str,
    key_name: Option<&'a str>,
    #[serde(rename = "OS-DCF:diskConfig")]
    disk_config: &'static str,
    #[serde(rename = "OS-EXT-AZ:availability_zone")]
    availability_zone: &'a str,
    #[serde(rename = "OS-EXT-STS:vm_state")]
    vm_state: &'static str,
    #[serde(rename = "OS-EXT-STS:task_state")]
    task_state: Option<&'static str>,
    #[serde(rename = "OS-EXT-STS:power_state")]
    power_state: u8,
    #[serde(rename = "OS-SRV-USG:launched_at")]
    launched_at: Option<String>,
    #[serde(rename = "OS-SRV-USG:terminated_at")]
    terminated_at: Option<String>,
    #[serde(rename = "os-extended-volumes:volumes_attached")]
    volumes_attached: Vec<Volume<'a>>,
    security_groups: Vec<Named<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fault: Option<FaultView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    locked: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<[&'a str; 0]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trusted_image_certificates: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_groups: Option<[&'a str; 0]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    locked_reason: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pinned_availability_zone: Option<Option<&'a str>>,
}

fn usage_time(t: Time) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// A server as `GET /servers/{id}` shows it at this microversion. `host_id` is [`host_id`] of
/// its project (computed once per listing).
pub fn server_view<'a>(
    sim: &SharedSim,
    store: &'a Store,
    s: &'a Server,
    mv: Microversion,
    host_id: &'a str,
) -> ServerView<'a> {
    let status = s.status;
    let active = status == ServerStatus::Active;
    let task_state = if s.deleting_until.is_some() {
        Some("deleting")
    } else if status == ServerStatus::Build {
        Some("spawning")
    } else {
        None
    };
    let image = match &s.image_id {
        Some(id) => ImageRef::Image {
            id: id.clone(),
            links: [Link {
                rel: "bookmark",
                href: format!("{}/compute/images/{id}", sim.base_url),
            }],
        },
        None => ImageRef::None(""),
    };
    let flavor = if mv.at_least(47) {
        FlavorRef::Embedded {
            vcpus: s.flavor.vcpus,
            ram: s.flavor.ram,
            disk: s.flavor.disk,
            ephemeral: s.flavor.ephemeral,
            swap: s.flavor.swap,
            original_name: &s.flavor.name,
            extra_specs: Map::new(),
        }
    } else {
        FlavorRef::Link {
            id: &s.flavor.id,
            links: [Link {
                rel: "bookmark",
                href: format!("{}/compute/flavors/{}", sim.base_url, s.flavor.id),
            }],
        }
    };
    let mut addresses: IndexMap<&str, Vec<Address>> = IndexMap::new();
    for pid in &s.port_ids {
        let Some(port) = store.ports.get(pid) else {
            continue;
        };
        let Some(net) = store.network(&port.network_id) else {
            continue;
        };
        let list = addresses.entry(net.name.as_str()).or_default();
        list.push(Address {
            version: 4,
            addr: &port.ip,
            kind: "fixed",
            mac: &port.mac,
        });
        if let Some(f) = store.fip_by_port.get(pid).and_then(|f| store.fips.get(f)) {
            list.push(Address {
                version: 4,
                addr: &f.address,
                kind: "floating",
                mac: &port.mac,
            });
        }
    }
    let gated = |minor: u32| mv.at_least(minor);
    ServerView {
        id: &s.id,
        name: &s.name,
        status: status.as_str(),
        tenant_id: &s.project_id,
        user_id: &s.user_id,
        metadata: &s.metadata,
        host_id: if active { host_id } else { "" },
        image,
        flavor,
        created: iso(s.created),
        updated: iso(s.updated),
        addresses,
        access_ipv4: "",
        access_ipv6: "",
        links: server_links(sim, &s.id),
        progress: if active { 100 } else { 0 },
        config_drive: if s.config_drive { "True" } else { "" },
        key_name: s.key_name.as_deref(),
        disk_config: "MANUAL",
        availability_zone: &s.availability_zone,
        vm_state: status.vm_state(),
        task_state,
        power_state: u8::from(active),
        launched_at: s.launched_at.map(usage_time),
        terminated_at: s.terminated_at.map(usage_time),
        volumes_attached: s
            .volume_ids
            .iter()
            .map(|v| Volume {
                id: v,
                delete_on_termination: true,
            })
            .collect(),
        security_groups: s
            .security_groups
            .iter()
            .map(|g| Named { name: g })
            .collect(),
        fault: s.fault.as_ref().map(|f| FaultView {
            code: f.code,
            created: iso(f.created),
            message: &f.message,
            details: "Simulated by cloudsim",
        }),
        locked: gated(9).then_some(false),
        description: gated(19).then_some(None),
        tags: gated(26).then_some([]),
        trusted_image_certificates: gated(63).then_some(None),
        server_groups: gated(71).then_some([]),
        locked_reason: gated(73).then_some(None),
        pinned_availability_zone: gated(96).then_some(None),
    }
}

fn server_links(sim: &SharedSim, id: &str) -> [Link; 2] {
    [
        Link {
            rel: "self",
            href: format!("{}/servers/{id}", sim.compute_url()),
        },
        Link {
            rel: "bookmark",
            href: format!("{}/compute/servers/{id}", sim.base_url),
        },
    ]
}

/// A JSON response from already serialized bytes.
fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// Nova's hostId: a per-project hash of the host name (sha224 in Nova; any stable hex suffices).
fn host_id(project: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha224::digest(
        format!("{project}simhost1").as_bytes(),
    ))
}

struct ListOptions {
    detail: bool,
}

async fn list_servers(
    State(sim): State<SharedSim>,
    Extension(mv): Extension<Microversion>,
    Extension(caller): Extension<Caller>,
    Query(q): Params,
) -> Response {
    list(&sim, mv, &caller, &q, ListOptions { detail: false })
}

async fn list_servers_detail(
    State(sim): State<SharedSim>,
    Extension(mv): Extension<Microversion>,
    Extension(caller): Extension<Caller>,
    Query(q): Params,
) -> Response {
    list(&sim, mv, &caller, &q, ListOptions { detail: true })
}

fn list(
    sim: &SharedSim,
    mv: Microversion,
    caller: &Caller,
    q: &[(String, String)],
    opts: ListOptions,
) -> Response {
    let limit = match page_limit(q, MAX_PAGE) {
        Ok(l) => l,
        Err(e) => return bad_request(&e),
    };
    let since = match param(q, "changes-since") {
        None => None,
        Some(s) => match parse_time(s) {
            Some(t) => Some(t),
            None => {
                return bad_request(&format!(
                    "Invalid input for query parameters changes-since. Value: {s}."
                ));
            }
        },
    };
    // Nova matches `name` as a regex; an invalid one is taken literally.
    let name_re = param(q, "name").map(|n| {
        regex::Regex::new(n).unwrap_or_else(|_| {
            regex::Regex::new(&regex::escape(n)).expect("escaped regex is valid")
        })
    });
    let status = param(q, "status").map(str::to_uppercase);
    let marker = param(q, "marker");
    let store = sim.store();
    let rows = match store.servers.page_from(marker, true) {
        Ok(r) => r,
        Err(_) => {
            return bad_request(&format!(
                "marker [{}] not found",
                marker.unwrap_or_default()
            ));
        }
    };
    let page: Vec<&Server> = rows
        .filter(|s| s.project_id == caller.project_id)
        .filter(|s| match since {
            Some(t) => s.updated >= t,
            None => s.is_live(),
        })
        .filter(|s| name_re.as_ref().is_none_or(|re| re.is_match(&s.name)))
        .filter(|s| status.as_deref().is_none_or(|st| s.status.as_str() == st))
        .take(limit)
        .collect();
    let next = if limit > 0 && page.len() == limit {
        page.last().map(|last| {
            let path = if opts.detail {
                "servers/detail"
            } else {
                "servers"
            };
            let mut qs: Vec<(String, String)> = q
                .iter()
                .filter(|(k, _)| k != "marker" && k != "limit")
                .cloned()
                .collect();
            qs.push(("limit".into(), limit.to_string()));
            qs.push(("marker".into(), last.id.clone()));
            vec![Link {
                rel: "next",
                href: format!("{}/{path}?{}", sim.compute_url(), encode_query(&qs)),
            }]
        })
    } else {
        None
    };
    #[derive(Serialize)]
    struct Brief<'a> {
        id: &'a str,
        name: &'a str,
        links: [Link; 2],
    }
    #[derive(Serialize)]
    struct Listing<T> {
        servers: Vec<T>,
        #[serde(skip_serializing_if = "Option::is_none")]
        servers_links: Option<Vec<Link>>,
    }
    let hid = host_id(&caller.project_id);
    let body = if opts.detail {
        serde_json::to_vec(&Listing {
            servers: page
                .iter()
                .map(|s| server_view(sim, &store, s, mv, &hid))
                .collect(),
            servers_links: next,
        })
    } else {
        serde_json::to_vec(&Listing {
            servers: page
                .iter()
                .map(|s| Brief {
                    id: &s.id,
                    name: &s.name,
                    links: server_links(sim, &s.id),
                })
                .collect(),
            servers_links: next,
        })
    };
    match body {
        Ok(b) => json_bytes(StatusCode::OK, b),
        Err(e) => fault(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Form-encodes query pairs.
pub fn encode_query(pairs: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter())
        .finish()
}

async fn show_server(
    State(sim): State<SharedSim>,
    Extension(mv): Extension<Microversion>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let store = sim.store();
    match store.servers.get(&id) {
        Some(s) if s.is_live() && s.project_id == caller.project_id => {
            let hid = host_id(&s.project_id);
            Json(json!({"server": server_view(&sim, &store, s, mv, &hid)})).into_response()
        }
        _ => server_not_found(&id),
    }
}

async fn delete_server(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let mut store = sim.store();
    let mine = store
        .servers
        .get(&id)
        .is_some_and(|s| s.project_id == caller.project_id);
    if mine && store.delete_server(&id, Utc::now()) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        server_not_found(&id)
    }
}

async fn server_action(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("Malformed request body");
    };
    let store = sim.store();
    let Some(s) = store
        .servers
        .get(&id)
        .filter(|s| s.is_live() && s.project_id == caller.project_id)
    else {
        return server_not_found(&id);
    };
    let Some((action, args)) = body.as_object().and_then(|o| o.iter().next()) else {
        return bad_request("Malformed request body");
    };
    match action.as_str() {
        "os-getConsoleOutput" => {
            if s.status != ServerStatus::Active {
                return fault(
                    StatusCode::CONFLICT,
                    &format!(
                        "Cannot 'get_console_output' instance {id} while it is in vm_state {}",
                        s.status.vm_state()
                    ),
                );
            }
            let lines = console_lines(s);
            let n = match args.get("length") {
                None | Some(Value::Null) => lines.len(),
                Some(Value::Number(n)) => n.as_i64().map_or(lines.len(), |n| n.max(0) as usize),
                Some(Value::String(n)) => n.parse::<usize>().unwrap_or(lines.len()),
                Some(_) => return bad_request("Invalid input for field/attribute length."),
            };
            let tail = &lines[lines.len().saturating_sub(n)..];
            Json(json!({"output": tail.join("\n")})).into_response()
        }
        other => bad_request(&format!("There is no such action: {other}")),
    }
}

fn console_lines(s: &Server) -> Vec<String> {
    vec![
        "[    0.000000] Linux version 6.1.0-cloudsim (simulated kernel)".to_string(),
        "[    0.912345] Run /sbin/init as init process".to_string(),
        format!("cloud-init: instance {} ({}) booting", s.id, s.name),
        format!("cloud-init: hostname set to {}", s.name),
        "Starting OpenBSD Secure Shell server: sshd.".to_string(),
        format!("{} login: ", s.name),
    ]
}

fn with_server<T>(
    sim: &SharedSim,
    caller: &Caller,
    id: &str,
    f: impl FnOnce(&mut Server) -> T,
) -> Result<T, Response> {
    let mut store = sim.store();
    match store.servers.get_mut(id) {
        Some(s) if s.is_live() && s.project_id == caller.project_id => Ok(f(s)),
        _ => Err(server_not_found(id)),
    }
}

fn metadata_from(body: &Value, key: &str) -> Result<IndexMap<String, String>, Response> {
    let Some(obj) = body.get(key).and_then(Value::as_object) else {
        return Err(bad_request(&format!(
            "Invalid input for field/attribute {key}."
        )));
    };
    obj.iter()
        .map(|(k, v)| match v {
            Value::String(s) if !k.is_empty() && k.len() <= 255 && s.len() <= 255 => Ok((k.clone(), s.clone())),
            _ => Err(bad_request(&format!(
                "Invalid input for field/attribute {key}. Value: {obj:?}. Metadata values must be strings of at most 255 characters"
            ))),
        })
        .collect()
}

async fn get_metadata(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    match with_server(&sim, &caller, &id, |s| s.metadata.clone()) {
        Ok(m) => Json(json!({ "metadata": m })).into_response(),
        Err(r) => r,
    }
}

async fn update_metadata(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let new = match metadata_from(&body, "metadata") {
        Ok(m) => m,
        Err(r) => return r,
    };
    match with_server(&sim, &caller, &id, |s| {
        s.metadata.extend(new);
        s.updated = Utc::now();
        s.metadata.clone()
    }) {
        Ok(m) => Json(json!({ "metadata": m })).into_response(),
        Err(r) => r,
    }
}

async fn replace_metadata(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let new = match metadata_from(&body, "metadata") {
        Ok(m) => m,
        Err(r) => return r,
    };
    match with_server(&sim, &caller, &id, |s| {
        s.metadata = new;
        s.updated = Utc::now();
        s.metadata.clone()
    }) {
        Ok(m) => Json(json!({ "metadata": m })).into_response(),
        Err(r) => r,
    }
}

async fn get_meta_item(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Path((id, key)): Path<(String, String)>,
) -> Response {
    match with_server(&sim, &caller, &id, |s| s.metadata.get(&key).cloned()) {
        Ok(Some(v)) => Json(json!({"meta": { key: v }})).into_response(),
        Ok(None) => fault(StatusCode::NOT_FOUND, "Metadata item was not found"),
        Err(r) => r,
    }
}

async fn put_meta_item(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Path((id, key)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let meta = match metadata_from(&body, "meta") {
        Ok(m) => m,
        Err(r) => return r,
    };
    let Some(value) = meta.get(&key).cloned().filter(|_| meta.len() == 1) else {
        return bad_request("Request body and URI mismatch");
    };
    match with_server(&sim, &caller, &id, |s| {
        s.metadata.insert(key.clone(), value.clone());
        s.updated = Utc::now();
    }) {
        Ok(()) => Json(json!({"meta": { key: value }})).into_response(),
        Err(r) => r,
    }
}

async fn delete_meta_item(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Path((id, key)): Path<(String, String)>,
) -> Response {
    match with_server(&sim, &caller, &id, |s| {
        s.metadata.shift_remove(&key).is_some()
    }) {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => fault(StatusCode::NOT_FOUND, "Metadata item was not found"),
        Err(r) => r,
    }
}

/// The id at the end of a reference that may be a bare id or a link URL.
fn ref_id(v: &str) -> &str {
    v.rsplit('/').next().unwrap_or(v)
}

fn quota_of(sim: &SharedSim, project: &str) -> QuotaConfig {
    sim.identity()
        .project(project)
        .map(|p| p.quota)
        .unwrap_or(sim.config.quota)
}

/// Nova's TooManyInstances message for a refused multi-create of `min..=max` servers.
fn quota_message(
    store: &Store,
    quota: QuotaConfig,
    project: &str,
    flavor: &Flavor,
    min: i64,
    max: i64,
) -> Result<i64, String> {
    let used = store.usage(project);
    let per = [
        ("instances", used.instances, quota.instances, 1i64),
        ("cores", used.cores, quota.cores, i64::from(flavor.vcpus)),
        ("ram", used.ram, quota.ram, flavor.ram as i64),
    ];
    let headroom = per
        .iter()
        .filter(|(_, _, limit, each)| *limit >= 0 && *each > 0)
        .map(|(_, used, limit, each)| (limit - used).max(0) / each)
        .min()
        .unwrap_or(i64::MAX);
    if headroom >= max {
        return Ok(max);
    }
    if headroom >= min {
        return Ok(headroom);
    }
    // Nova lists every exceeded resource, comma separated, in each part of the message.
    let (mut names, mut reqs, mut useds, mut limits) = (vec![], vec![], vec![], vec![]);
    for (name, used, limit, each) in per {
        if limit < 0 || used + max * each <= limit {
            continue;
        }
        names.push(name.to_string());
        reqs.push(if name == "instances" && min != max {
            format!("{min}-{max}")
        } else {
            (max * each).to_string()
        });
        useds.push(used.to_string());
        limits.push(limit.to_string());
    }
    let names = names.join(",");
    Err(format!(
        "Quota exceeded for {names}: Requested {}, but already used {} of {} {names}",
        reqs.join(","),
        useds.join(","),
        limits.join(","),
    ))
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => {
            matches!(s.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on")
        }
        _ => false,
    }
}

fn count_of(v: Option<&Value>, default: i64) -> Result<i64, Response> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|n| *n >= 1)
            .ok_or_else(|| bad_request("count must be >= 1")),
        Some(Value::String(s)) => s
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| bad_request("count must be >= 1")),
        Some(_) => Err(bad_request("count must be an integer")),
    }
}

async fn create_server(
    State(sim): State<SharedSim>,
    Extension(mv): Extension<Microversion>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("Malformed request body");
    };
    let Some(req) = body.get("server").and_then(Value::as_object) else {
        return bad_request(
            "Invalid input for field/attribute server. 'server' is a required property",
        );
    };
    match build_and_create(&sim, mv, &caller, req) {
        Ok(r) | Err(r) => r,
    }
}

fn build_and_create(
    sim: &SharedSim,
    mv: Microversion,
    caller: &Caller,
    req: &Map<String, Value>,
) -> Result<Response, Response> {
    let name = req
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.trim().is_empty() && n.len() <= 255)
        .ok_or_else(|| {
            bad_request("Invalid input for field/attribute name. 'name' is a required property")
        })?
        .to_string();
    let flavor_ref = req
        .get("flavorRef")
        .and_then(|v| {
            v.as_str()
                .map(str::to_string)
                .or_else(|| v.as_i64().map(|n| n.to_string()))
        })
        .ok_or_else(|| {
            bad_request(
                "Invalid input for field/attribute flavorRef. 'flavorRef' is a required property",
            )
        })?;
    let metadata = match req.get("metadata") {
        None => IndexMap::new(),
        Some(_) => metadata_from(&Value::Object(req.clone()), "metadata")?,
    };
    let min = count_of(req.get("min_count"), 1)?;
    let max = count_of(req.get("max_count"), min)?;
    if max < min {
        return Err(bad_request("min_count must be <= max_count"));
    }
    let security_groups: Vec<String> = match req.get("security_groups") {
        None => vec!["default".into()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|g| g.get("name").and_then(Value::as_str).map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| bad_request("Invalid input for field/attribute security_groups."))?,
        Some(_) => {
            return Err(bad_request(
                "Invalid input for field/attribute security_groups.",
            ));
        }
    };
    let az = match req.get("availability_zone").and_then(Value::as_str) {
        None => sim.config.availability_zones[0].clone(),
        Some(a) => {
            let zone = a.split(':').next().unwrap_or(a);
            if !sim.config.availability_zones.iter().any(|z| z == zone) {
                return Err(bad_request(
                    "The requested availability zone is not available",
                ));
            }
            zone.to_string()
        }
    };
    let user_data = req
        .get("user_data")
        .and_then(Value::as_str)
        .map(str::to_string);
    let config_drive = truthy(req.get("config_drive"));
    let key_name = req
        .get("key_name")
        .and_then(Value::as_str)
        .map(str::to_string);

    let mut store = sim.store();
    let flavor = store
        .flavors
        .iter()
        .find(|f| f.id == ref_id(&flavor_ref))
        .cloned()
        .ok_or_else(|| bad_request(&format!("Flavor {flavor_ref} could not be found.")))?;
    if let Some(k) = &key_name
        && !store.keypairs.contains_key(k)
    {
        return Err(bad_request("Invalid key_name provided."));
    }

    // Image, or boot from volume.
    let image_ref = req
        .get("imageRef")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let mut volume_ids = Vec::new();
    let mut bdm_boot = false;
    if let Some(bdms) = req.get("block_device_mapping_v2").and_then(Value::as_array) {
        for bdm in bdms {
            let source = bdm.get("source_type").and_then(Value::as_str).unwrap_or("");
            let dest = bdm
                .get("destination_type")
                .and_then(Value::as_str)
                .unwrap_or("volume");
            let boot_index = bdm
                .get("boot_index")
                .and_then(|b| b.as_i64().or_else(|| b.as_str()?.parse().ok()));
            if boot_index == Some(0) && dest == "volume" {
                bdm_boot = true;
            }
            if source == "image"
                && let Some(uuid) = bdm.get("uuid").and_then(Value::as_str)
                && store.images.get(uuid).is_none_or(|i| i.status != "active")
            {
                return Err(bad_request(&format!("Image {uuid} could not be found.")));
            }
            if dest == "volume" {
                let vol = match (source, bdm.get("uuid").and_then(Value::as_str)) {
                    ("volume", Some(u)) => u.to_string(),
                    _ => uuid::Uuid::new_v4().to_string(),
                };
                volume_ids.push(vol);
            }
        }
    }
    let image_id = match image_ref {
        Some(r) => {
            let id = ref_id(r);
            if store.images.get(id).is_none_or(|i| i.status != "active") {
                return Err(bad_request("Can not find requested image"));
            }
            if bdm_boot { None } else { Some(id.to_string()) }
        }
        None if bdm_boot => None,
        None => return Err(bad_request("Can not find requested image")),
    };

    // Networks.
    let mut network_ids = Vec::new();
    let mut port_ids = Vec::new();
    let auto = |store: &Store, network_ids: &mut Vec<String>| -> Result<(), Response> {
        // "auto": the one usable shared network, as auto-allocated-topology would give.
        let usable: Vec<_> = store
            .networks
            .iter()
            .filter(|n| n.shared && !n.external)
            .collect();
        match usable.as_slice() {
            [] => Ok(()),
            [one] => {
                network_ids.push(one.id.clone());
                Ok(())
            }
            _ => Err(fault(
                StatusCode::CONFLICT,
                "Multiple possible networks found, use a Network ID to be more specific.",
            )),
        }
    };
    match req.get("networks") {
        None if mv.at_least(37) => {
            return Err(bad_request(
                "Invalid input for field/attribute server. 'networks' is a required property",
            ));
        }
        None => auto(&store, &mut network_ids)?,
        Some(Value::String(s)) if s == "auto" => auto(&store, &mut network_ids)?,
        Some(Value::String(s)) if s == "none" => {}
        Some(Value::Array(nets)) => {
            for n in nets {
                if let Some(port) = n.get("port").and_then(Value::as_str) {
                    match store.ports.get(port) {
                        Some(p) if p.device_id.is_empty() => port_ids.push(port.to_string()),
                        Some(_) => {
                            return Err(fault(
                                StatusCode::CONFLICT,
                                &format!("Port {port} is still in use."),
                            ));
                        }
                        None => {
                            return Err(bad_request(&format!(
                                "Port id {port} could not be found."
                            )));
                        }
                    }
                } else if let Some(net) = n.get("uuid").and_then(Value::as_str) {
                    if store.network(net).is_none() {
                        return Err(bad_request(&format!("Network {net} could not be found.")));
                    }
                    network_ids.push(net.to_string());
                } else {
                    return Err(bad_request("Invalid input for field/attribute networks."));
                }
            }
        }
        Some(other) => {
            return Err(bad_request(&format!(
                "Invalid input for field/attribute networks. Value: {other}."
            )));
        }
    }
    if (min > 1 || max > 1) && !port_ids.is_empty() {
        return Err(bad_request(
            "Unable to launch multiple instances with a single configured port ID.",
        ));
    }

    // Quota (possibly overridden by an injected fault), then boot faults.
    let path = p("/servers");
    let injected = sim.fault_set().pick(Phase::ServerCreate, "POST", &path);
    if let Some(FaultAction::QuotaExceeded { resource }) = &injected {
        let u = store.usage(&caller.project_id);
        let used = match resource.as_str() {
            "cores" => u.cores,
            "ram" => u.ram,
            _ => u.instances,
        };
        return Err(fault(
            StatusCode::FORBIDDEN,
            &format!(
                "Quota exceeded for {resource}: Requested 1, but already used {used} of {used} {resource}"
            ),
        ));
    }
    let quota = quota_of(sim, &caller.project_id);
    let count = quota_message(&store, quota, &caller.project_id, &flavor, min, max)
        .map_err(|m| fault(StatusCode::FORBIDDEN, &m))?;
    let boot_error = match injected {
        Some(FaultAction::BootError { message }) => {
            Some(message.unwrap_or_else(|| NO_VALID_HOST.to_string()))
        }
        _ if flavor.vcpus > sim.config.host_vcpus || flavor.ram > sim.config.host_ram_mb => {
            Some(NO_VALID_HOST.to_string())
        }
        _ => None,
    };

    let mut first: Option<String> = None;
    for i in 1..=count {
        let new = NewServer {
            name: if count > 1 {
                format!("{name}-{i}")
            } else {
                name.clone()
            },
            project_id: caller.project_id.clone(),
            user_id: caller.user_id.clone(),
            flavor: flavor.clone(),
            image_id: image_id.clone(),
            network_ids: network_ids.clone(),
            port_ids: port_ids.clone(),
            metadata: metadata.clone(),
            key_name: key_name.clone(),
            availability_zone: az.clone(),
            config_drive,
            user_data: user_data.clone(),
            security_groups: security_groups.clone(),
            volume_ids: volume_ids.clone(),
            boot_error: boot_error.clone(),
            created: None,
            status: None,
        };
        match store.create_server(new) {
            Ok(id) => {
                first.get_or_insert(id);
            }
            Err(StateError::IpExhausted(net)) => {
                return Err(fault(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("No more IP addresses available on network {net}."),
                ));
            }
            Err(e) => return Err(bad_request(&e.to_string())),
        }
    }
    let id = first.unwrap_or_default();
    if truthy(req.get("return_reservation_id")) {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"reservation_id": format!("r-{}", &id[..8])})),
        )
            .into_response());
    }
    let admin_pass = store
        .servers
        .get(&id)
        .map(|s| s.admin_pass.clone())
        .unwrap_or_default();
    let body = json!({"server": {
        "id": id, "links": links(sim, "servers", &id), "OS-DCF:diskConfig": "MANUAL",
        "security_groups": security_groups.iter().map(|g| json!({"name": g})).collect::<Vec<_>>(),
        "adminPass": admin_pass,
    }});
    let mut r = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{}/servers/{id}", sim.compute_url())) {
        r.headers_mut().insert("location", v);
    }
    Ok(r)
}

fn flavor_page(
    sim: &SharedSim,
    mv: Microversion,
    q: &[(String, String)],
    detail: bool,
) -> Response {
    let limit = match page_limit(q, MAX_PAGE) {
        Ok(l) => l,
        Err(e) => return bad_request(&e),
    };
    let store = sim.store();
    let start = match param(q, "marker") {
        None => 0,
        Some(m) => match store.flavors.iter().position(|f| f.id == m) {
            Some(i) => i + 1,
            None => return bad_request(&format!("marker [{m}] not found")),
        },
    };
    let min_ram: u64 = param(q, "minRam").and_then(|v| v.parse().ok()).unwrap_or(0);
    let min_disk: u64 = param(q, "minDisk")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let page: Vec<&Flavor> = store.flavors[start..]
        .iter()
        .filter(|f| f.ram >= min_ram && f.disk >= min_disk)
        .take(limit)
        .collect();
    let mut body = json!({"flavors": page.iter().map(|f| flavor_json(sim, f, mv, detail)).collect::<Vec<_>>()});
    if page.len() == limit
        && let Some(last) = page.last()
    {
        let path = if detail { "flavors/detail" } else { "flavors" };
        body["flavors_links"] = json!([{"rel": "next",
            "href": format!("{}/{path}?limit={limit}&marker={}", sim.compute_url(), last.id)}]);
    }
    Json(body).into_response()
}

async fn list_flavors(
    State(sim): State<SharedSim>,
    Extension(mv): Extension<Microversion>,
    Query(q): Params,
) -> Response {
    flavor_page(&sim, mv, &q, false)
}

async fn list_flavors_detail(
    State(sim): State<SharedSim>,
    Extension(mv): Extension<Microversion>,
    Query(q): Params,
) -> Response {
    flavor_page(&sim, mv, &q, true)
}

async fn show_flavor(
    State(sim): State<SharedSim>,
    Extension(mv): Extension<Microversion>,
    Path(id): Path<String>,
) -> Response {
    let store = sim.store();
    match store.flavors.iter().find(|f| f.id == id) {
        Some(f) => Json(json!({"flavor": flavor_json(&sim, f, mv, true)})).into_response(),
        None => fault(
            StatusCode::NOT_FOUND,
            &format!("Flavor {id} could not be found."),
        ),
    }
}

async fn flavor_extra_specs(State(sim): State<SharedSim>, Path(id): Path<String>) -> Response {
    if sim.store().flavors.iter().any(|f| f.id == id) {
        Json(json!({"extra_specs": {}})).into_response()
    } else {
        fault(
            StatusCode::NOT_FOUND,
            &format!("Flavor {id} could not be found."),
        )
    }
}

async fn limits(
    State(sim): State<SharedSim>,
    Extension(mv): Extension<Microversion>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let quota = quota_of(&sim, &caller.project_id);
    let used = sim.store().usage(&caller.project_id);
    let mut absolute = json!({
        "maxTotalCores": quota.cores, "maxTotalInstances": quota.instances, "maxTotalRAMSize": quota.ram,
        "maxTotalKeypairs": 100, "maxServerMeta": 128, "maxImageMeta": 128,
        "maxServerGroups": 10, "maxServerGroupMembers": 10,
        "totalRAMUsed": used.ram, "totalCoresUsed": used.cores, "totalInstancesUsed": used.instances,
        "totalServerGroupsUsed": 0,
    });
    let m = absolute.as_object_mut().expect("object");
    if !mv.at_least(57) {
        m.insert("maxPersonality".into(), json!(5));
        m.insert("maxPersonalitySize".into(), json!(10240));
    }
    if !mv.at_least(36) {
        for k in [
            "maxTotalFloatingIps",
            "maxSecurityGroups",
            "maxSecurityGroupRules",
        ] {
            m.insert(k.into(), json!(-1));
        }
        for k in ["totalFloatingIpsUsed", "totalSecurityGroupsUsed"] {
            m.insert(k.into(), json!(0));
        }
    }
    Json(json!({"limits": {"rate": [], "absolute": absolute}})).into_response()
}

async fn availability_zones(State(sim): State<SharedSim>) -> Json<Value> {
    let zones: Vec<Value> = sim
        .config
        .availability_zones
        .iter()
        .map(|z| json!({"zoneName": z, "zoneState": {"available": true}, "hosts": null}))
        .collect();
    Json(json!({ "availabilityZoneInfo": zones }))
}

fn keypair_json(k: &crate::state::Keypair) -> Value {
    json!({"name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint, "type": "ssh"})
}

async fn list_keypairs(State(sim): State<SharedSim>) -> Json<Value> {
    let store = sim.store();
    let list: Vec<Value> = store
        .keypairs
        .values()
        .map(|k| json!({"keypair": keypair_json(k)}))
        .collect();
    Json(json!({ "keypairs": list }))
}

async fn show_keypair(State(sim): State<SharedSim>, Path(name): Path<String>) -> Response {
    let store = sim.store();
    match store.keypairs.get(&name) {
        Some(k) => {
            let mut v = keypair_json(k);
            v["user_id"] = json!(k.user_id);
            v["created_at"] = json!(k.created.format("%Y-%m-%dT%H:%M:%S%.6f").to_string());
            v["deleted"] = json!(false);
            v["id"] = json!(1);
            Json(json!({"keypair": v})).into_response()
        }
        None => fault(
            StatusCode::NOT_FOUND,
            &format!("Keypair {name} not found for user"),
        ),
    }
}

async fn create_keypair(
    State(sim): State<SharedSim>,
    Extension(mv): Extension<Microversion>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<Value>,
) -> Response {
    let Some(name) = body
        .pointer("/keypair/name")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return bad_request(
            "Invalid input for field/attribute keypair. 'name' is a required property",
        );
    };
    let given = body
        .pointer("/keypair/public_key")
        .and_then(Value::as_str)
        .map(str::to_string);
    if given.is_none() && mv.at_least(92) {
        return bad_request(
            "Invalid input for field/attribute keypair. 'public_key' is a required property",
        );
    }
    let mut store = sim.store();
    if store.keypairs.contains_key(&name) {
        return fault(
            StatusCode::CONFLICT,
            &format!("Key pair '{name}' already exists."),
        );
    }
    let generated = given.is_none();
    let public_key = given.unwrap_or_else(|| {
        format!(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5{} Generated-by-cloudsim",
            hex::encode(uuid::Uuid::new_v4().as_bytes())
        )
    });
    let k = crate::state::Keypair {
        name: name.clone(),
        fingerprint: crate::state::fingerprint(&public_key),
        public_key,
        user_id: caller.user_id.clone(),
        created: Utc::now(),
    };
    let mut v = keypair_json(&k);
    v["user_id"] = json!(k.user_id);
    if generated {
        v["private_key"] = json!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nc2ltdWxhdGVkIGtleQ==\n-----END OPENSSH PRIVATE KEY-----\n"
        );
    }
    store.keypairs.insert(name, k);
    let status = if mv.at_least(2) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(json!({ "keypair": v }))).into_response()
}

async fn delete_keypair(
    State(sim): State<SharedSim>,
    Extension(mv): Extension<Microversion>,
    Path(name): Path<String>,
) -> Response {
    if sim.store().keypairs.shift_remove(&name).is_none() {
        return fault(
            StatusCode::NOT_FOUND,
            &format!("Keypair {name} not found for user"),
        );
    }
    if mv.at_least(2) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::ACCEPTED
    }
    .into_response()
}

fn quota_items(
    sim: &SharedSim,
    caller: &Caller,
    project: &str,
    detail: bool,
) -> Result<Value, Response> {
    if project != caller.project_id {
        return Err(fault(
            StatusCode::FORBIDDEN,
            "Policy doesn't allow os_compute_api:os-quota-sets:show to be performed.",
        ));
    }
    let q = quota_of(sim, project);
    let u = sim.store().usage(project);
    let item = |limit: i64, used: i64| {
        if detail {
            json!({"limit": limit, "in_use": used, "reserved": 0})
        } else {
            json!(limit)
        }
    };
    let mut out: HashMap<&str, Value> = HashMap::new();
    out.insert("instances", item(q.instances, u.instances));
    out.insert("cores", item(q.cores, u.cores));
    out.insert("ram", item(q.ram, u.ram));
    for (k, v) in [
        ("key_pairs", 100),
        ("metadata_items", 128),
        ("server_groups", 10),
        ("server_group_members", 10),
    ] {
        out.insert(k, item(v, 0));
    }
    let mut v = json!(out);
    v["id"] = json!(project);
    Ok(json!({ "quota_set": v }))
}

async fn quota_set(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
) -> Response {
    match quota_items(&sim, &caller, &project, false) {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

async fn quota_set_detail(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
) -> Response {
    match quota_items(&sim, &caller, &project, true) {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}
